from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit.errors import ShapeError, SpecError
from cnnkit.plugins import registry
from tests.layers.harness import BACKENDS, backends, check_gradients, check_parity, make_run, noncontiguous
from tests.oracles import require_torch

ADD_SHAPES = [[(2, 3, 4, 4)] * 2, [(3, 5)] * 3, [(2, 2, 3)] * 4]
CONCAT_CASES = [
    ({}, [(2, 3, 4, 4), (2, 5, 4, 4)]),
    ({}, [(3, 2), (3, 4), (3, 1)]),
    ({"axis": 2}, [(2, 3, 1, 4), (2, 3, 2, 4)]),
    ({"axis": 3}, [(2, 3, 4, 2), (2, 3, 4, 3)]),
    ({"axis": -1}, [(2, 3, 4, 2), (2, 3, 4, 1)]),
    ({"axis": -2}, [(2, 3, 2), (2, 1, 2)]),
]


def arrays(shapes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def concat_loops(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """Every value of every input copied to its place: input k starts after inputs 0..k-1 along `axis`."""
    axis %= xs[0].ndim
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    out = np.full(shape, np.nan)
    offset = 0
    for x in xs:
        for index in np.ndindex(x.shape):
            target = list(index)
            target[axis] += offset
            out[tuple(target)] = x[index]
        offset += x.shape[axis]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shapes", ADD_SHAPES, ids=lambda s: f"{len(s)}x{'x'.join(map(str, s[0]))}")
def test_add_forward_and_backward(backend, shapes):
    xs = arrays(shapes, 0)
    run = make_run("add", {}, shapes, backend, np.float64)
    expected = np.zeros(shapes[0])
    for index in np.ndindex(shapes[0]):
        expected[index] = sum(x[index] for x in xs)
    np.testing.assert_allclose(run.forward(xs), expected, rtol=1e-15)
    check_gradients("add", {}, xs, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attrs,shapes", CONCAT_CASES, ids=[str(i) for i in range(len(CONCAT_CASES))])
def test_concat_forward_and_backward(backend, attrs, shapes):
    xs = arrays(shapes, 1)
    run = make_run("concat", attrs, shapes, backend, np.float64)
    np.testing.assert_array_equal(run.forward(xs), concat_loops(xs, run.attrs["axis"]))
    check_gradients("concat", attrs, xs, backend)
    grads = run.op.backward(np.ones(run.out_shape), run.params, run.grads)
    assert all(g.shape == x.shape and g.flags.c_contiguous for g, x in zip(grads, xs))


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("add", np.float32))
@pytest.mark.parametrize("layer,attrs,shapes", [("add", {}, s) for s in ADD_SHAPES]
                         + [("concat", a, s) for a, s in CONCAT_CASES])
def test_matches_torch(backend, layer, attrs, shapes):
    torch = require_torch()
    xs = [x.astype(np.float32) for x in arrays(shapes, 2)]
    run = make_run(layer, attrs, shapes, backend, np.float32)
    grad_out = np.random.default_rng(3).standard_normal(run.out_shape).astype(np.float32)
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    ty = sum(txs[1:], txs[0]) if layer == "add" else torch.cat(txs, dim=attrs.get("axis", 1))
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(run.forward(xs), ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    for grad, tx in zip(run.backward(grad_out), txs):
        np.testing.assert_array_equal(grad, tx.grad.numpy())


@pytest.mark.parametrize("layer,attrs,shapes", [
    ("add", {}, [(3, 4, 4), (3, 4, 5)]),
    ("add", {}, [(6,), (6,), (7,)]),
    ("add", {}, [(6,), (1, 6)]),
    ("concat", {"axis": 1}, [(3, 4, 4), (2, 4, 5)]),
    ("concat", {"axis": 2}, [(3, 4, 4), (2, 4, 4)]),
    ("concat", {"axis": 1}, [(3, 4, 4), (3, 4)]),
    ("concat", {"axis": 4}, [(3, 4, 4), (3, 4, 4)]),
    ("concat", {"axis": 0}, [(3, 4, 4), (3, 4, 4)]),
    ("concat", {"axis": 1}, [(3, 4, 4)]),
])
def test_mismatched_shapes_are_shape_errors_naming_every_shape(layer, attrs, shapes):
    with pytest.raises(ShapeError) as error:
        registry().layer(layer).infer_shape(attrs, shapes)
    for shape in shapes:
        assert "x".join(map(str, shape)) in str(error.value)


def test_a_spec_with_mismatched_add_points_at_the_layer():
    spec = {"name": "bad", "input": [6], "layers": [
        {"name": "a", "type": "linear", "units": 4},
        {"name": "b", "type": "linear", "units": 5, "inputs": ["input"]},
        {"name": "sum", "type": "add", "inputs": ["a", "b"]},
    ]}
    with pytest.raises(SpecError, match=r"layer 'sum':.*4, 5"):
        cnnkit.build(spec)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=3),
       st.lists(st.integers(1, 9), min_size=2, max_size=4), st.data())
def test_concat_shape_sums_the_axis_and_keeps_the_rest(base, sizes, data):
    axis = data.draw(st.integers(1, len(base)))
    shapes = [tuple(base[:axis - 1] + [size] + base[axis:]) for size in sizes]
    out = registry().layer("concat").infer_shape({"axis": axis}, shapes)
    assert out == tuple(base[:axis - 1] + [sum(sizes)] + base[axis:])
    negative = registry().layer("concat").infer_shape({"axis": axis - len(base) - 1}, shapes)
    assert negative == out


@pytest.mark.parametrize("backend", backends("add", np.float32, exclude=["numpy"]))
@pytest.mark.parametrize("layer,attrs,shapes", [("add", {}, s) for s in ADD_SHAPES]
                         + [("concat", a, s) for a, s in CONCAT_CASES]
                         + [("add", {}, [(5, 7, 33, 31)] * 3),
                            ("concat", {}, [(5, 3, 33, 31), (5, 6, 33, 31)])])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_matches_the_numpy_reference(backend, layer, attrs, shapes, layout):
    """The cases above, larger odd-sized ones (several chunks) and non-contiguous views of every input."""
    xs = [x.astype(np.float32) for x in arrays(shapes, 4)]
    check_parity(layer, attrs, [noncontiguous(x) for x in xs] if layout == "noncontiguous" else xs, backend)
