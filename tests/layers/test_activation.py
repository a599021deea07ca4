from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.attrs import parse_attrs
from cnnkit.errors import ShapeError
from cnnkit.plugins import registry
from tests.layers.harness import (
    TOLERANCE,
    away_from_zero,
    backends,
    check_gradients,
    check_parity,
    exact_dtype,
    make_run,
    noncontiguous,
)
from tests.oracles import require_torch

ELEMENTWISE = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": 0.3}),
    ("leaky_relu", {"alpha": 2.0}),
    ("sigmoid", {}),
    ("tanh", {}),
]
SOFTMAX = [
    ({}, (2, 3, 4, 5)),
    ({}, (3, 7)),
    ({"axis": 2}, (2, 3, 4, 5)),
    ({"axis": -1}, (2, 3, 4, 5)),
    ({"axis": -1}, (3, 7)),
]
CASES = [(layer, attrs, shape) for layer, attrs in ELEMENTWISE for shape in [(2, 3, 4, 5), (3, 7)]]
CASES += [("softmax", attrs, shape) for attrs, shape in SOFTMAX]
IDS = [f"{layer}-{attrs}-{'x'.join(map(str, shape))}" for layer, attrs, shape in CASES]

SCALAR = {
    "relu": lambda v, attrs: max(v, 0.0),
    "leaky_relu": lambda v, attrs: v if v > 0 else attrs["alpha"] * v,
    "sigmoid": lambda v, attrs: 1 / (1 + math.exp(-v)),
    "tanh": lambda v, attrs: math.tanh(v),
}


def softmax_loops(x: np.ndarray, axis: int) -> np.ndarray:
    """exp(v) / sum(exp(v)) for every line of x along `axis`, with Python floats."""
    out = np.empty_like(x)
    lines, out_lines = np.moveaxis(x, axis, -1), np.moveaxis(out, axis, -1)
    for index in np.ndindex(lines.shape[:-1]):
        exps = [math.exp(v) for v in lines[index]]
        out_lines[index] = [e / sum(exps) for e in exps]
    return out


def reference(layer: str, attrs: dict, x: np.ndarray) -> np.ndarray:
    if layer == "softmax":
        return softmax_loops(x, attrs["axis"])
    return np.array([SCALAR[layer](float(v), attrs) for v in x.reshape(-1)]).reshape(x.shape)


def torch_activation(torch, layer: str, attrs: dict, x):
    functional = torch.nn.functional
    return {
        "relu": lambda: functional.relu(x),
        "leaky_relu": lambda: functional.leaky_relu(x, attrs.get("alpha", 0.01)),
        "sigmoid": lambda: torch.sigmoid(x),
        "tanh": lambda: torch.tanh(x),
        "softmax": lambda: functional.softmax(x, dim=attrs.get("axis", 1)),
    }[layer]()


@pytest.mark.parametrize("backend", backends("relu"))
@pytest.mark.parametrize("layer,attrs,shape", CASES, ids=IDS)
def test_forward_matches_textbook(backend, layer, attrs, shape):
    dtype = exact_dtype(backend)
    x = (away_from_zero(shape, np.random.default_rng(0)) * 2).astype(dtype)
    run = make_run(layer, attrs, [shape], backend, dtype)
    tolerance = {"rtol": 1e-12, "atol": 1e-15} if dtype == np.float64 else TOLERANCE[dtype]
    expected = reference(layer, run.attrs, x.astype(np.float64))
    np.testing.assert_allclose(run.forward([x]), expected, **tolerance)


@pytest.mark.parametrize("backend", backends("relu", np.float64))
@pytest.mark.parametrize("layer,attrs,shape", CASES, ids=IDS)
def test_backward_matches_finite_differences(backend, layer, attrs, shape):
    x = away_from_zero(shape, np.random.default_rng(1))
    check_gradients(layer, attrs, [x], backend)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("relu", np.float32))
@pytest.mark.parametrize("layer,attrs,shape", CASES, ids=IDS)
def test_matches_torch(backend, layer, attrs, shape):
    torch = require_torch()
    x = (away_from_zero(shape, np.random.default_rng(2)) * 3).astype(np.float32)
    grad_out = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    run = make_run(layer, attrs, [shape], backend, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_activation(torch, layer, attrs, tx)
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(run.forward([x]), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    (grad_x,) = run.backward(grad_out)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("backend", "dtype"), [
    pytest.param("numpy", np.float64, id="numpy-float64"),
    *[pytest.param(b.values[0], np.float32, marks=b.marks, id=f"{b.id}-float32")
      for b in backends("relu", np.float32)],
])
@pytest.mark.parametrize("layer", ["sigmoid", "tanh", "softmax"])
def test_extreme_inputs_neither_overflow_nor_lose_the_tails(backend, layer, dtype):
    x = np.array([[-1000.0, -100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0, 1000.0]], dtype=dtype)
    run = make_run(layer, {}, [x.shape], backend, dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = run.forward([x])
        run.backward(np.ones_like(x))
    low = -1 if layer == "tanh" else 0
    assert np.all(np.isfinite(y)) and np.all((y >= low) & (y <= 1))
    if layer == "sigmoid" and dtype == np.float64:
        exact = [math.exp(v) / (1 + math.exp(v)) if v < 0 else 1 / (1 + math.exp(-v)) for v in x[0]]
        np.testing.assert_allclose(y[0], exact, rtol=1e-14)
    if layer == "softmax":
        assert y[0, -1] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", backends("relu", np.float32))
@pytest.mark.parametrize("layer,attrs,shape", CASES, ids=IDS)
def test_forward_and_backward_reuse_their_buffers(backend, layer, attrs, shape):
    shape = (2**16 // math.prod(shape[1:]), *shape[1:])  # large enough that ufunc cast buffers do not count
    run = make_run(layer, attrs, [shape], backend, np.float32)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    first = run.op.forward([x], run.params, run.buffers, True)
    (first_grad,) = run.op.backward(x, run.params, run.grads)
    tracemalloc.start()
    try:
        assert run.op.forward([x], run.params, run.buffers, True) is first
        assert run.op.backward(x, run.params, run.grads)[0] is first_grad
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 4, f"{layer} allocated {peak} bytes per step for a {x.nbytes}-byte input"


@pytest.mark.parametrize("axis,shape", [(3, (4, 5)), (0, (4, 5)), (-3, (4, 5)), (2, (10,))])
def test_softmax_axis_out_of_range_is_a_shape_error(axis, shape):
    layer = registry().layer("softmax")
    with pytest.raises(ShapeError, match="x".join(map(str, shape))):
        layer.infer_shape({"axis": axis}, [shape])


def test_leaky_relu_rejects_a_negative_slope():
    with pytest.raises(ValueError, match=">= 0"):
        parse_attrs(registry().layer("leaky_relu").attrs, {"alpha": -0.1})


@pytest.mark.parametrize("backend", backends("relu", np.float32, exclude=["numpy"]))
@pytest.mark.parametrize("layer,attrs,shape", CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_matches_the_numpy_reference(backend, layer, attrs, shape, layout):
    """The test shapes, an odd-sized larger batch (several chunks), and non-contiguous views."""
    for size in (shape, (37, *shape[1:]) if len(shape) == 2 else (37, 5, 9, 7)):
        x = (away_from_zero(size, np.random.default_rng(5)) * 3).astype(np.float32)
        check_parity(layer, attrs, [noncontiguous(x) if layout == "noncontiguous" else x], backend)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), data=st.data(),
       layer=st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "softmax"]))
def test_random_shapes_match_the_numpy_reference(shape, data, layer):
    """Any shape, and for softmax any non-batch axis (counted from either end)."""
    attrs = {}
    if layer == "softmax":
        axis = data.draw(st.integers(1, len(shape) - 1))
        attrs = {"axis": data.draw(st.sampled_from([axis, axis - len(shape)]))}
    elif layer == "leaky_relu":
        attrs = {"alpha": data.draw(st.floats(0.0, 3.0))}
    x = (away_from_zero(tuple(shape), np.random.default_rng(6)) * 3).astype(np.float32)
    for param in backends("relu", np.float32, exclude=["numpy"]):
        if not param.marks:
            check_parity(layer, attrs, [x], param.values[0])
