"""One battery for every layer on every backend: run a kernel alone, check it against finite differences.

Layer tests call these with their own attributes and a plain-loop (or PyTorch) oracle, so a new backend
only has to be added to BACKENDS to get the whole battery. The helpers live in cnnkit.testing, where
plugins' tests find them too.

Backends that implement some layers only (the C backend) or compute in float32 only: a test
parametrised with `backends(layer, dtype)` runs on every backend that has a kernel for the layer (and
computes in that dtype), skipping one that is unavailable here and saying why; `exact_dtype(backend)`
and TOLERANCE let a loop-oracle test run each backend in its most precise dtype; `check_parity` compares
a backend with the NumPy reference in float32, forward and backward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from cnnkit.plugins import registry
from cnnkit.testing import (  # noqa: F401  (re-exported for the layer tests)
    LayerRun,
    away_from_zero,
    check_gradients,
    distinct_values,
    make_run,
    numeric_gradients,
)

BACKENDS = ["numpy"]

TOLERANCE = {np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-12},
             np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5}}
"""Agreement expected with a float64 loop oracle, by the dtype a backend computed in."""


def backends(layer: str, dtype: Any = None, exclude: Sequence[str] = ()) -> list:
    """pytest params: the backends with a kernel for `layer` that compute in `dtype` (None: any), but not
    those in `exclude`; one that is not available here is skipped with its reason."""
    reg = registry()
    params = []
    for name, backend in reg.backends.items():
        if reg.kernel(layer, name) is None or name in exclude:
            continue
        if dtype is not None and backend.dtypes is not None and np.dtype(dtype).name not in backend.dtypes:
            continue
        reason = backend.unavailable()
        marks = [pytest.mark.skip(reason=f"backend '{name}' is not available: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def exact_dtype(backend: str) -> np.dtype:
    """float64 where the backend computes in it, else the first dtype it computes in."""
    dtypes = registry().backend(backend).dtypes
    return np.dtype(np.float64 if dtypes is None or "float64" in dtypes else dtypes[0])


def noncontiguous(x: np.ndarray) -> np.ndarray:
    """The same values as a view with gaps between the elements of its last axis."""
    spread = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), x.dtype)
    spread[..., ::2] = x
    return spread[..., ::2]


def check_parity(layer_type: str, attrs: Mapping[str, Any], inputs: Sequence[np.ndarray], backend: str,
                 reference: str = "numpy", training: bool = True, needs_input_grad: bool = True,
                 seed: int = 0, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """`backend` against `reference` in float32: the same random parameters and inputs (passed as they are,
    so a non-contiguous view stays one), then forward output, input gradients and parameter gradients.

    Two float32 sums of many terms in different orders differ by a multiple of the terms' size, so atol
    is scaled by each array's largest magnitude where that exceeds 1."""
    rng = np.random.default_rng(seed)
    shapes = [np.shape(x) for x in inputs]
    ref = make_run(layer_type, attrs, shapes, reference, np.float32, needs_input_grad=needs_input_grad)
    params = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.5 for k, v in ref.params.items()}
    ref.params.update(params)
    run = make_run(layer_type, attrs, shapes, backend, np.float32, params=params,
                   needs_input_grad=needs_input_grad)

    def close(got: np.ndarray, want: np.ndarray, what: str) -> None:
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)

    expected = ref.forward(inputs, training)
    close(run.forward(inputs, training), expected, "output")
    grad_out = rng.standard_normal(expected.shape).astype(np.float32)
    for i, (got, want) in enumerate(zip(run.backward(grad_out), ref.backward(grad_out), strict=True)):
        assert (got is None) == (want is None) or not needs_input_grad
        if got is not None and want is not None:
            close(got, want, f"gradient of input {i}")
    for key, want in ref.grads.items():
        close(run.grads[key], want, f"gradient of {key}")
