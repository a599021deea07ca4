from __future__ import annotations

import numpy as np
import pytest

from cnnkit.attrs import parse_attrs
from cnnkit.plugins import registry
from tests.layers.harness import BACKENDS, backends, check_gradients, make_run, noncontiguous
from tests.oracles import require_torch

RATES = [0.0, 0.1, 0.5, 0.9]
STAT_SHAPE = (64, 8, 16, 16)
"""131,072 values: the fraction dropped is within 0.005 of the rate (> 3.6 standard deviations)."""


def masked_reference(x: np.ndarray, dropped: np.ndarray, rate: float) -> np.ndarray:
    """Zero where dropped, x / (1 - rate) elsewhere, value by value."""
    out = np.empty_like(x)
    for i in np.ndindex(x.shape):
        out[i] = 0.0 if dropped[i] else x[i] / (1 - rate)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", RATES)
def test_training_forward_zeroes_or_scales_each_value(backend, rate):
    x = np.random.default_rng(0).uniform(0.5, 2.0, (4, 3, 5))
    run = make_run("dropout", {"rate": rate}, [x.shape], backend, np.float64)
    y = run.forward([x], training=True)
    np.testing.assert_allclose(y, masked_reference(x, y == 0, rate), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", RATES)
def test_eval_is_the_identity(backend, rate):
    x = np.random.default_rng(1).standard_normal((4, 6))
    run = make_run("dropout", {"rate": rate}, [x.shape], backend, np.float64)
    np.testing.assert_array_equal(run.forward([x], training=False), x)
    grad_out = np.random.default_rng(2).standard_normal(x.shape)
    np.testing.assert_array_equal(run.backward(grad_out)[0], grad_out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", RATES)
def test_backward_matches_finite_differences(backend, rate):
    x = np.random.default_rng(3).standard_normal((4, 2, 3, 3))
    check_gradients("dropout", {"rate": rate}, [x], backend)


@pytest.mark.parametrize("backend", backends("dropout", np.float32))
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_statistics_and_gradient_use_the_same_mask(backend, rate):
    x = np.ones(STAT_SHAPE, np.float32)
    run = make_run("dropout", {"rate": rate}, [x.shape], backend, np.float32)
    y = run.forward([x])
    assert abs(np.mean(y == 0) - rate) < 0.005
    assert abs(np.mean(y, dtype=np.float64) - 1.0) < 0.01 * (1 + rate / (1 - rate))
    grad_out = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    (grad_x,) = run.backward(grad_out)
    np.testing.assert_allclose(grad_x, grad_out * y, rtol=1e-6)


@pytest.mark.parametrize("backend", backends("dropout", np.float32))
def test_each_training_forward_draws_a_new_mask_from_the_setup_generator(backend):
    x = np.ones((8, 32), np.float32)
    runs = [make_run("dropout", {}, [x.shape], backend, np.float32, seed=5) for _ in range(2)]
    first = [run.op.forward([x], {}, {}, True).copy() for run in runs]
    second = runs[0].op.forward([x], {}, {}, True).copy()
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], second)


@pytest.mark.torch
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_statistics_match_torch(backend, rate):
    torch = require_torch()
    torch.manual_seed(0)
    x = np.random.default_rng(6).uniform(1.0, 3.0, STAT_SHAPE).astype(np.float32)
    run = make_run("dropout", {"rate": rate}, [x.shape], backend, np.float32)
    y = run.forward([x])
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.dropout(tx, rate, training=True)
    ty.backward(torch.ones_like(tx))
    expected = ty.detach().numpy()
    assert np.mean(y == 0) == pytest.approx(np.mean(expected == 0), abs=0.01)
    assert np.mean(y, dtype=np.float64) == pytest.approx(np.mean(expected, dtype=np.float64), rel=0.01)
    assert np.mean(y, dtype=np.float64) == pytest.approx(np.mean(x, dtype=np.float64), rel=0.01)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(run.backward(np.ones_like(x))[0], kept / np.float32(1 - rate), rtol=1e-6)
    np.testing.assert_allclose(tx.grad.numpy(), (expected != 0) / np.float32(1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(torch.nn.functional.dropout(tx, rate, training=False).detach().numpy(),
                                  run.forward([x], training=False))


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_rate_must_be_in_zero_to_one(rate):
    with pytest.raises(ValueError, match="< 1"):
        parse_attrs(registry().layer("dropout").attrs, {"rate": rate})


@pytest.mark.parametrize("backend", backends("dropout", np.float32, exclude=["numpy"]))
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_drops_the_same_values_as_the_numpy_backend_bitwise(backend, rate, layout):
    """The mask comes from the same Generator draws: outputs and gradients are equal bit for bit, in
    training (two steps, so the second draw matches too) and in eval."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3, 17, 9)).astype(np.float32)
    x = noncontiguous(x) if layout == "noncontiguous" else x
    runs = [make_run("dropout", {"rate": rate}, [x.shape], b, np.float32, seed=8) for b in ("numpy", backend)]
    for training in (True, True, False):
        grad_out = rng.standard_normal(x.shape).astype(np.float32)
        want, got = (run.op.forward([x], {}, {}, training).copy() for run in runs)
        np.testing.assert_array_equal(got, want)
        want, got = (run.op.backward(grad_out, {}, {})[0].copy() for run in runs)
        np.testing.assert_array_equal(got, want)
