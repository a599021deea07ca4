"""The thread pool: its size, fork, interpreter exit, and kernels called from several Python threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from functools import partial

import numpy as np
import pytest

import cnnkit
from cnnkit.backends.c import gemm, library
from cnnkit.errors import BackendError
from tests.backends.c.conftest import (
    assert_python_threads_get_the_serial_results,
    assert_same_bits_for_thread_counts,
)
from tests.layers.harness import make_run


def run_python(code: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def test_set_and_get_num_threads(lib):
    for count in (3, 1, 4):
        cnnkit.set_num_threads(count)
        assert cnnkit.get_num_threads() == count == lib.get_num_threads()


@pytest.mark.parametrize("count", [0, 257, 2.5, True, "2", None])
def test_bad_thread_counts_are_refused(lib, count):
    with pytest.raises(BackendError, match="whole number from 1 to 256"):
        cnnkit.set_num_threads(count)


def test_cnnkit_num_threads_sets_the_default(lib):
    done = run_python("import cnnkit; cnnkit.build('''name: t\ninput: [1, 4, 4]\nlayers:\n"
                      "  - {name: fc, type: flatten}''', backend='c'); print(cnnkit.get_num_threads())",
                      CNNKIT_NUM_THREADS="3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3"]


def test_a_bad_cnnkit_num_threads_makes_the_backend_unavailable_and_says_why(lib):
    done = run_python("""
        import cnnkit
        from cnnkit.errors import BackendError
        spec = "name: t\\ninput: [1, 4, 4]\\nlayers:\\n  - {name: fc, type: flatten}"
        cnnkit.build(spec)  # numpy still works
        try:
            cnnkit.build(spec, backend="c")
        except BackendError as error:
            print(error)
        """, CNNKIT_NUM_THREADS="lots")
    assert done.returncode == 0, done.stderr
    assert "backend 'c' is not available: CNNKIT_NUM_THREADS='lots': expected a whole number" in done.stdout


def test_a_forked_child_runs_kernels(lib):
    """fork() while the pool's workers exist: the child starts its own pool and gets the same bits."""
    lib.set_num_threads(4)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((150, 200)).astype(np.float32)
    b = rng.standard_normal((200, 170)).astype(np.float32)
    expected = gemm(a, b)
    pid = os.fork()
    if pid == 0:  # the child: any failure must end the process, never return into pytest
        status = 1
        try:
            status = 0 if all(np.array_equal(gemm(a, b), expected) for _ in range(3)) else 2
        finally:
            os._exit(status)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if waited == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    np.testing.assert_array_equal(gemm(a, b), expected)  # and the parent's pool still works


def test_interpreter_exit_does_not_wait_for_the_pool(lib):
    """Exit right after kernels, and while a daemon thread is inside one: both end promptly."""
    done = run_python("""
        import threading
        import numpy as np
        import cnnkit
        from cnnkit.backends.c import gemm
        cnnkit.set_num_threads(4)
        a = np.ones((300, 300), np.float32)
        gemm(a, a)
        def forever():
            while True:
                gemm(a, a)
        threading.Thread(target=forever, daemon=True).start()
        print("bye")
        """, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bye"


def conv_run(seed: int, batch: int = 6):
    x = np.random.default_rng(seed).standard_normal((batch, 8, 13, 11)).astype(np.float32)
    run = make_run("conv2d", {"filters": 12, "kernel": 3, "padding": 1, "stride": [1, 2]}, [x.shape], "c",
                   np.float32, seed=seed)
    grad_out = np.random.default_rng(seed + 100).standard_normal(run.out_shape).astype(np.float32)
    return run, x, grad_out


def conv_results(run, x, grad_out):
    out = run.forward([x])
    (grad_x,) = run.backward(grad_out)
    return [out, grad_x, *(g.copy() for g in run.grads.values())]


def test_four_python_threads_running_convs_get_the_serial_results(lib):
    lib.set_num_threads(2)
    computations = [partial(conv_results, *conv_run(seed)) for seed in range(4)]
    assert_python_threads_get_the_serial_results(computations, repeats=5)


@pytest.mark.parametrize("batch", [6, 1], ids=["parallel regions", "regions small enough to run inline"])
def test_conv_results_are_bitwise_equal_for_1_to_4_threads(lib, batch):
    assert_same_bits_for_thread_counts(partial(conv_results, *conv_run(7, batch)), (1, 2, 3, 4, 2))


def test_train_and_eval_take_threads(lib):
    from cnnkit.cli import _use_threads, make_parser

    for command in (["train", "spec.yaml", "-o", "run"], ["eval", "run"]):
        args = make_parser().parse_args([*command, "--backend", "c", "--threads", "3"])
        assert args.threads == 3
        _use_threads(args)
        assert cnnkit.get_num_threads() == 3
        library.set_num_threads(1)
