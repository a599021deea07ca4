from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.plugins import registry
from tests.layers.harness import BACKENDS, backends, check_gradients, make_run
from tests.oracles import require_torch

SHAPES = [(2, 3, 4, 5), (3, 1, 1, 6), (4, 7), (2, 3, 5)]


def flatten_loops(x: np.ndarray) -> np.ndarray:
    """out[n, (c * H + h) * W + w] = x[n, c, h, w]: C order, the last axis fastest."""
    out = np.empty((x.shape[0], x[0].size))
    for n in range(x.shape[0]):
        for i, index in enumerate(np.ndindex(x.shape[1:])):
            out[n, i] = x[(n, *index)]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_loops(backend, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    run = make_run("flatten", {}, [shape], backend, np.float64)
    np.testing.assert_array_equal(run.forward([x]), flatten_loops(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_finite_differences(backend, shape):
    check_gradients("flatten", {}, [np.random.default_rng(1).standard_normal(shape)], backend)


@pytest.mark.parametrize("backend", backends("flatten", np.float32))
def test_forward_and_backward_are_views(backend):
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    run = make_run("flatten", {}, [x.shape], backend, np.float32)
    y = run.op.forward([x], run.params, run.buffers, True)
    assert y.shape == (2, 60) and np.shares_memory(y, x)
    grad_out = np.ones((2, 60), np.float32)
    (grad_x,) = run.op.backward(grad_out, run.params, run.grads)
    assert grad_x.shape == x.shape and np.shares_memory(grad_x, grad_out)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("flatten", np.float32))
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(backend, shape):
    torch = require_torch()
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    grad_out = np.random.default_rng(4).standard_normal((shape[0], x[0].size)).astype(np.float32)
    run = make_run("flatten", {}, [shape], backend, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.flatten(tx, 1)
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(run.forward([x]), ty.detach().numpy())
    np.testing.assert_array_equal(run.backward(grad_out)[0], tx.grad.numpy())


@given(st.lists(st.integers(1, 64), min_size=1, max_size=3))
def test_shape_is_the_product_of_every_dimension(shape):
    assert registry().layer("flatten").infer_shape({}, [tuple(shape)]) == (int(np.prod(shape)),)
