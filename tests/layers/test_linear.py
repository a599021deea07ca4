from __future__ import annotations

import numpy as np
import pytest

from tests.layers.harness import (
    TOLERANCE,
    backends,
    check_gradients,
    check_parity,
    exact_dtype,
    make_run,
    noncontiguous,
)
from tests.oracles import require_torch

CASES = [
    {"units": 4},
    {"units": 1, "bias": False},
    {"units": 7, "init": "xavier"},
]


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y[n, u] = sum_f x[n, f] w[u, f] + b[u], as plain loops."""
    out = np.zeros((x.shape[0], weight.shape[0]))
    for n in range(x.shape[0]):
        for u in range(weight.shape[0]):
            out[n, u] = sum(x[n, f] * weight[u, f] for f in range(x.shape[1]))
            if bias is not None:
                out[n, u] += bias[u]
    return out


@pytest.mark.parametrize("backend", backends("linear"))
@pytest.mark.parametrize("attrs", CASES)
def test_forward_matches_loops(backend, attrs):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(dtype)
    run = make_run("linear", attrs, [x.shape], backend, dtype)
    bias = run.params.get("bias")
    if bias is not None:
        bias[:] = np.arange(bias.size) * 0.5
    expected = reference(x.astype(np.float64), run.params["weight"].astype(np.float64), bias)
    np.testing.assert_allclose(run.forward([x]), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", backends("linear", np.float64))
@pytest.mark.parametrize("attrs", CASES)
def test_backward_matches_finite_differences(backend, attrs):
    x = np.random.default_rng(1).standard_normal((4, 6))
    check_gradients("linear", attrs, [x], backend)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("linear", np.float32))
def test_matches_torch(backend):
    torch = require_torch()
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    run = make_run("linear", {"units": 3}, [x.shape], backend, np.float32)
    run.params["bias"][:] = [0.1, -0.2, 0.3]
    grad_out = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(run.params["weight"], requires_grad=True)
    tb = torch.tensor(run.params["bias"], requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(run.forward([x]), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    (grad_x,) = run.backward(grad_out)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.grads["weight"], tw.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.grads["bias"], tb.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", backends("linear", np.float32, exclude=["numpy"]))
# batches below 4 take C's dot-product path (130 units: several chunks of it), larger ones its GEMM
@pytest.mark.parametrize(("batch", "features", "units"), [(1, 1, 1), (5, 29, 37), (64, 400, 120),
                                                           (3, 2048, 10), (2, 37, 130)])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_numpy_reference(backend, batch, features, units, layout, bias):
    x = np.random.default_rng(4).standard_normal((batch, features)).astype(np.float32)
    check_parity("linear", {"units": units, "bias": bias},
                 [noncontiguous(x) if layout == "noncontiguous" else x], backend)


@pytest.mark.parametrize("backend", backends("linear", np.float32, exclude=["numpy"]))
def test_first_layer_skips_the_input_gradient(backend):
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    check_parity("linear", {"units": 3}, [x], backend, needs_input_grad=False)
    run = make_run("linear", {"units": 3}, [x.shape], backend, np.float32, needs_input_grad=False)
    run.forward([x])
    assert run.backward(np.ones((4, 3), np.float32)) == [None]
