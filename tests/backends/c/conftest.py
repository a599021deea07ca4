"""Fixtures for the C backend's tests: the library (skipped, with the reason, where it is unavailable) and
each instruction-set variant this CPU can run; and the determinism checks the tests share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pytest

from cnnkit.backends.c import library
from cnnkit.errors import BackendError


def variant_names() -> list[str]:
    """The variants to test: each one this CPU runs, or only the library CNNKIT_C_LIBRARY names."""
    if os.environ.get(library.LIBRARY_ENV):
        return ["loaded"]
    try:
        return library.runnable_variants() or ["loaded"]
    except BackendError:
        return ["loaded"]


@pytest.fixture(scope="session")
def lib() -> library.Library:
    reason = library.unavailable()
    if reason is not None:
        pytest.skip(f"the C backend is not available: {reason}")
    return library.load()


@pytest.fixture(params=variant_names())
def variant(request, lib) -> library.Library:
    """Each runnable variant's library (a variant already loaded shares its state, thread pool included)."""
    if request.param == "loaded":
        return lib
    return library.Library(library.variant_path(request.param))


@pytest.fixture(autouse=True)
def keep_thread_count():
    """Tests change the thread count; put it back."""
    count = library.get_num_threads()
    yield
    library.set_num_threads(count)


Results = Callable[[], Sequence[np.ndarray]]
"""Computes something on the C backend and returns every array it produced."""


def assert_same_bits(want: Sequence[np.ndarray], have: Sequence[np.ndarray]) -> None:
    """`have` holds as many arrays as `want`, each equal to its partner element for element."""
    for expected, got in zip(want, have, strict=True):
        np.testing.assert_array_equal(got, expected)


def assert_same_bits_for_thread_counts(compute: Results, counts: Iterable[int]) -> None:
    """compute() gives the same results with the thread pool set to each of `counts` in turn."""
    results = []
    for count in counts:
        library.set_num_threads(count)
        results.append(compute())
    first, *others = results
    for other in others:
        assert_same_bits(first, other)


def assert_python_threads_get_the_serial_results(computations: Sequence[Results], repeats: int) -> None:
    """Each computation, repeated in its own Python thread while the others run, gives what it gave alone."""
    serial = [compute() for compute in computations]
    got: dict[int, list] = {}

    def work(i: int) -> None:
        got[i] = [computations[i]() for _ in range(repeats)]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(computations))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i, expected in enumerate(serial):
        for results in got[i]:
            assert_same_bits(expected, results)


def assert_networks_agree(nets: dict, x: np.ndarray) -> None:
    """The "c" network gives the "numpy" one's training-mode output and, for the same output gradient,
    its parameter gradients (rtol 1e-4, atol 1e-5)."""
    outs = {backend: net.forward(x, training=True).copy() for backend, net in nets.items()}
    np.testing.assert_allclose(outs["c"], outs["numpy"], rtol=1e-4, atol=1e-5)
    grad = np.random.default_rng(1).standard_normal(outs["c"].shape).astype(np.float32)
    grads = {backend: net.backward(grad) for backend, net in nets.items()}
    for key, expected in grads["numpy"].items():
        np.testing.assert_allclose(grads["c"][key], expected, rtol=1e-4, atol=1e-5, err_msg=key)
