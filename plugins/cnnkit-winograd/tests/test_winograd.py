"""The winograd backend against cnnkit's NumPy reference: forward, backward, whole networks.

These tests build their own registry from the module, so they run whether or not the package is
installed: `pytest` in this folder, or from a cnnkit checkout as part of its suite.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit_winograd
from cnnkit.backends.numpy.conv import Conv2d
from cnnkit.graph import Network
from cnnkit.spec import load_spec
from cnnkit.testing import check_gradients, make_run, plugin_registry
from cnnkit_winograd.conv import WinogradConv2d

REGISTRY = plugin_registry(cnnkit_winograd)

WINOGRAD_CASES = [
    ({"filters": 5, "kernel": 3}, (2, 3, 8, 8)),
    ({"filters": 4, "kernel": 3, "padding": "same"}, (3, 2, 7, 9)),
    ({"filters": 4, "kernel": 3, "padding": 1, "bias": False}, (1, 1, 3, 3)),
    ({"filters": 6, "kernel": 3, "padding": [0, 1, 2, 0]}, (2, 4, 5, 6)),
    ({"filters": 3, "kernel": [3, 3], "padding": 2}, (1, 3, 4, 10)),
]
REFERENCE_CASES = [  # attributes F(2x2, 3x3) does not cover: the kernel hands them to the reference
    ({"filters": 4, "kernel": 3, "stride": 2}, (2, 3, 9, 9)),
    ({"filters": 4, "kernel": 3, "dilation": 2, "padding": "same"}, (2, 3, 9, 9)),
    ({"filters": 4, "kernel": 3, "groups": 2}, (2, 4, 6, 6)),
    ({"filters": 4, "kernel": 5}, (2, 3, 7, 7)),
    ({"filters": 4, "kernel": [3, 1]}, (2, 3, 7, 7)),
]


def compare(attrs, shape, dtype, rtol, needs_input_grad=True):
    """Run both kernels with the same weights on the same input and gradient; assert they agree."""
    rng = np.random.default_rng(0)
    ref = make_run("conv2d", attrs, [shape], "numpy", dtype, registry=REGISTRY,
                   needs_input_grad=needs_input_grad)
    if "bias" in ref.params:  # initialised to zeros: make it count
        ref.params["bias"][:] = rng.standard_normal(ref.params["bias"].shape)
    win = make_run("conv2d", attrs, [shape], "winograd", dtype, registry=REGISTRY, params=ref.params,
                   needs_input_grad=needs_input_grad)
    x = rng.standard_normal(shape).astype(dtype)
    expected, got = ref.forward([x]), win.forward([x])
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    pairs = [(expected, got), *zip(ref.backward(grad_out), win.backward(grad_out))]
    pairs += [(ref.grads[k], win.grads[k]) for k in ref.grads]
    for a, b in pairs:
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * float(np.abs(a).max()))
    return win


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-4), (np.float64, 1e-12)])
@pytest.mark.parametrize(("attrs", "shape"), WINOGRAD_CASES)
def test_matches_the_reference_forward_and_backward(attrs, shape, dtype, rtol):
    win = compare(attrs, shape, dtype, rtol)
    assert isinstance(win.op, WinogradConv2d)


@pytest.mark.parametrize(("attrs", "shape"), REFERENCE_CASES)
def test_other_convolutions_run_on_the_reference_kernel(attrs, shape):
    win = compare(attrs, shape, np.float32, 1e-6)
    assert type(win.op) is Conv2d


def test_skips_the_input_gradient_when_nobody_needs_it():
    win = compare({"filters": 4, "kernel": 3, "padding": 1}, (2, 3, 6, 6), np.float32, 1e-4,
                  needs_input_grad=False)
    assert win.op.grad_x is None


def test_backward_matches_finite_differences():
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 7))
    check_gradients("conv2d", {"filters": 3, "kernel": 3, "padding": [1, 0, 0, 1]}, [x], backend="winograd",
                    registry=REGISTRY)


def test_a_network_on_winograd_matches_the_same_network_on_numpy():
    spec = load_spec({"name": "n", "input": [3, 12, 12], "layers": [
        {"name": "conv1", "type": "conv2d", "filters": 8, "kernel": 3, "padding": "same"},
        {"name": "relu1", "type": "relu"},
        {"name": "conv2", "type": "conv2d", "filters": 8, "kernel": 3, "stride": 2},
        {"name": "pool", "type": "global_avg_pool2d"},
        {"name": "fc", "type": "linear", "units": 4}]}, REGISTRY)
    x = np.random.default_rng(4).standard_normal((5, 3, 12, 12)).astype(np.float32)
    grad = np.random.default_rng(5).standard_normal((5, 4)).astype(np.float32)
    results = []
    for backend in ("numpy", "winograd"):
        net = Network(spec, REGISTRY, backend=backend, seed=1)
        out = net.forward(x, training=True).copy()
        grads = {k: v.copy() for k, v in net.backward(grad).items()}
        results.append((out, grads))
    (out_a, grads_a), (out_b, grads_b) = results
    np.testing.assert_allclose(out_b, out_a, rtol=1e-4, atol=1e-5)
    for key, expected in grads_a.items():
        np.testing.assert_allclose(grads_b[key], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
