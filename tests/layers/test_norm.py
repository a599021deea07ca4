from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.attrs import parse_attrs
from cnnkit.errors import ShapeError
from cnnkit.plugins import registry
from tests.layers.harness import BACKENDS, backends, check_gradients, make_run, noncontiguous
from tests.oracles import require_torch

SHAPES = [(4, 3, 5, 5), (6, 4), (5, 3, 7)]
"""(C, H, W) as BatchNorm2d; (F,) and (C, L) as BatchNorm1d."""
ATTRS = [{}, {"affine": False}, {"momentum": 0.3, "eps": 1e-3}, {"momentum": 0.0}, {"momentum": 1.0}]
CASES = [(shape, attrs) for shape in SHAPES for attrs in ATTRS]
IDS = [f"{'x'.join(map(str, shape))}-{attrs}" for shape, attrs in CASES]
GRADIENT_CASES = [(shape, attrs) for shape, attrs in CASES if "momentum" not in attrs or "eps" in attrs]
"""Momentum changes only the running statistics, never a gradient."""
GRADIENT_IDS = [IDS[CASES.index(case)] for case in GRADIENT_CASES]


def random_params(attrs: dict, channels: int, seed: int) -> dict[str, np.ndarray]:
    if attrs.get("affine") is False:
        return {}
    rng = np.random.default_rng(seed)
    return {"weight": rng.uniform(0.5, 2.0, channels), "bias": rng.standard_normal(channels)}


def channel_values(x: np.ndarray, c: int) -> list[float]:
    return x[:, c].reshape(-1).tolist()


def reference(x: np.ndarray, params: dict, eps: float, mean=None, var=None) -> np.ndarray:
    """Channel by channel: (x - mean) / sqrt(var + eps) * weight + bias, batch statistics by default."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        values = channel_values(x, c)
        m = statistics.fmean(values) if mean is None else mean[c]
        v = statistics.pvariance(values, m) if var is None else var[c]
        w, b = (params["weight"][c], params["bias"][c]) if params else (1.0, 0.0)
        out[:, c] = (x[:, c] - m) / math.sqrt(v + eps) * w + b
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,attrs", CASES, ids=IDS)
def test_training_forward_and_running_statistics_match_textbook(backend, shape, attrs):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(shape) * 3 + 1 for _ in range(2)]
    params = random_params(attrs, shape[1], seed=1)
    run = make_run("batch_norm2d", attrs, [shape], backend, np.float64, params=params)
    momentum, eps = run.attrs["momentum"], run.attrs["eps"]
    running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
    for x in xs:
        np.testing.assert_allclose(run.forward([x], training=True), reference(x, params, eps), rtol=1e-12,
                                   atol=1e-12)
        batch_mean = [statistics.fmean(channel_values(x, c)) for c in range(shape[1])]
        batch_var = [statistics.variance(channel_values(x, c)) for c in range(shape[1])]
        running_mean = (1 - momentum) * running_mean + momentum * np.array(batch_mean)
        running_var = (1 - momentum) * running_var + momentum * np.array(batch_var)
    np.testing.assert_allclose(run.buffers["running_mean"], running_mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(run.buffers["running_var"], running_var, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,attrs", CASES, ids=IDS)
def test_eval_forward_and_backward_are_the_running_affine_map(backend, shape, attrs):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    params = random_params(attrs, shape[1], seed=3)
    run = make_run("batch_norm2d", attrs, [shape], backend, np.float64, params=params)
    mean, var = rng.standard_normal(shape[1]), rng.uniform(0.2, 3.0, shape[1])
    run.buffers["running_mean"][:], run.buffers["running_var"][:] = mean, var
    eps = run.attrs["eps"]
    np.testing.assert_allclose(run.forward([x], training=False), reference(x, params, eps, mean, var),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(run.buffers["running_mean"], mean)
    grad_out = rng.standard_normal(shape)
    (grad_x,) = run.backward(grad_out)
    broadcast = (1, -1) + (1,) * (len(shape) - 2)
    scale = (params["weight"] if params else 1.0) / np.sqrt(var + eps)
    np.testing.assert_allclose(grad_x, grad_out * scale.reshape(broadcast), rtol=1e-12)
    if params:
        axes = (0, *range(2, len(shape)))
        x_hat = (x - mean.reshape(broadcast)) / np.sqrt(var + eps).reshape(broadcast)
        np.testing.assert_allclose(run.grads["weight"], np.sum(grad_out * x_hat, axis=axes), rtol=1e-10)
        np.testing.assert_allclose(run.grads["bias"], np.sum(grad_out, axis=axes), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape,attrs", GRADIENT_CASES, ids=GRADIENT_IDS)
def test_backward_matches_finite_differences(backend, shape, attrs, training):
    x = np.random.default_rng(4).standard_normal(shape) * 2 + 0.5
    check_gradients("batch_norm2d", attrs, [x], backend, training=training,
                    params=random_params(attrs, shape[1], seed=5))


def torch_batch_norm(torch, shape, attrs):
    parsed = parse_attrs(registry().layer("batch_norm2d").attrs, attrs)
    module = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d
    return module(shape[1], eps=parsed["eps"], momentum=parsed["momentum"], affine=parsed["affine"])


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("batch_norm2d", np.float32))
@pytest.mark.parametrize("shape,attrs", CASES, ids=IDS)
def test_matches_torch_in_training_and_eval(backend, shape, attrs):
    torch = require_torch()
    rng = np.random.default_rng(6)
    params = {k: v.astype(np.float32) for k, v in random_params(attrs, shape[1], seed=7).items()}
    run = make_run("batch_norm2d", attrs, [shape], backend, np.float32, params=params)
    module = torch_batch_norm(torch, shape, attrs)
    if params:
        with torch.no_grad():
            module.weight.copy_(torch.tensor(params["weight"]))
            module.bias.copy_(torch.tensor(params["bias"]))
    for training in (True, True, True, False):
        module.train(training)
        module.zero_grad()
        x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
        grad_out = rng.standard_normal(shape).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        ty = module(tx)
        ty.backward(torch.tensor(grad_out))
        np.testing.assert_allclose(run.forward([x], training), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(run.backward(grad_out)[0], tx.grad.numpy(), rtol=1e-4, atol=1e-5)
        if params:
            np.testing.assert_allclose(run.grads["weight"], module.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(run.grads["bias"], module.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(run.buffers["running_mean"], module.running_mean.numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(run.buffers["running_var"], module.running_var.numpy(), rtol=1e-5)


@pytest.mark.parametrize("backend", backends("batch_norm2d", np.float32))
def test_float32_statistics_keep_their_accuracy_far_from_zero(backend):
    x = (1000 + np.random.default_rng(8).standard_normal((64, 2, 8, 8)) * 0.01).astype(np.float32)
    run = make_run("batch_norm2d", {"momentum": 1.0}, [x.shape], backend, np.float32)
    y = run.forward([x], training=True)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(run.buffers["running_mean"], exact.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(run.buffers["running_var"], exact.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    # float32 resolves values near 1000 to 6e-5, i.e. 6e-3 of a standard deviation here: x_hat's limit
    np.testing.assert_allclose(y, reference(exact, {}, 1e-5), atol=6e-3)


@pytest.mark.parametrize("backend", backends("batch_norm2d", np.float32))
def test_training_needs_two_values_per_channel(backend):
    run = make_run("batch_norm2d", {}, [(1, 4)], backend, np.float32)
    with pytest.raises(ShapeError, match=r"\(1, 4\)"):
        run.forward([np.ones((1, 4), np.float32)], training=True)
    y = run.forward([np.ones((1, 4), np.float32)], training=False)
    np.testing.assert_allclose(y, 1 / np.sqrt(1 + 1e-5))


def assert_runs_agree(runs, x, grad_out, training: bool) -> None:
    """The reference run and the other backend's give the same output, input gradient, parameter gradients
    and running statistics (rtol 1e-4, atol 1e-5)."""
    close = {"rtol": 1e-4, "atol": 1e-5}
    want, got = (run.forward([x], training) for run in runs)
    np.testing.assert_allclose(got, want, **close)
    want, got = (run.backward(grad_out)[0] for run in runs)
    np.testing.assert_allclose(got, want, **close)
    for key in (*runs[0].grads, "running_mean", "running_var"):
        want, got = (run.grads[key] if key in run.grads else run.buffers[key] for run in runs)
        np.testing.assert_allclose(got, want, err_msg=key, **close)


@pytest.mark.parametrize("backend", backends("batch_norm2d", np.float32, exclude=["numpy"]))
@pytest.mark.parametrize("shape,attrs", [*CASES, ((9, 5, 11, 13), {}), ((33, 7), {"affine": False})],
                         ids=[*IDS, "9x5x11x13", "33x7-no-affine"])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_matches_the_numpy_reference(backend, shape, attrs, layout):
    """Three training steps and one in eval: outputs, gradients and running statistics (rtol 1e-4)."""
    rng = np.random.default_rng(9)
    params = {k: v.astype(np.float32) for k, v in random_params(attrs, shape[1], seed=10).items()}
    runs = [make_run("batch_norm2d", attrs, [shape], b, np.float32, params=params)
            for b in ("numpy", backend)]
    for training in (True, True, True, False):
        x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
        x = noncontiguous(x) if layout == "noncontiguous" else x
        grad_out = rng.standard_normal(shape).astype(np.float32)
        assert_runs_agree(runs, x, grad_out, training)


def test_initial_state():
    layer = registry().layer("batch_norm2d")
    attrs = parse_attrs(layer.attrs, {})
    assert attrs == {"momentum": 0.1, "eps": 1e-5, "affine": True}
    params = layer.init_params(attrs, [(3, 4, 4)], np.random.default_rng(0), np.float32)
    buffers = layer.init_buffers(attrs, [(3, 4, 4)], np.float32)
    np.testing.assert_array_equal(params["weight"], np.ones(3))
    np.testing.assert_array_equal(params["bias"], np.zeros(3))
    np.testing.assert_array_equal(buffers["running_mean"], np.zeros(3))
    np.testing.assert_array_equal(buffers["running_var"], np.ones(3))
    assert layer.init_params({**attrs, "affine": False}, [(3,)], np.random.default_rng(0), np.float32) == {}


@pytest.mark.parametrize("values", [{"momentum": 1.5}, {"momentum": -0.1}, {"eps": 0.0}, {"eps": -1e-5}])
def test_rejects_out_of_range_attributes(values):
    with pytest.raises(ValueError, match="expected a number"):
        parse_attrs(registry().layer("batch_norm2d").attrs, values)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), affine=st.booleans(),
       momentum=st.floats(0.0, 1.0), training=st.booleans())
def test_random_shapes_match_the_numpy_reference(shape, affine, momentum, training):
    shape = (max(shape[0], 2), *shape[1:])  # training needs two values per channel
    attrs = {"affine": affine, "momentum": momentum}
    x = (np.random.default_rng(11).standard_normal(shape) * 2 + 1).astype(np.float32)
    grad_out = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    for param in backends("batch_norm2d", np.float32, exclude=["numpy"]):
        if param.marks:
            continue
        runs = [make_run("batch_norm2d", attrs, [shape], b, np.float32) for b in ("numpy", param.values[0])]
        assert_runs_agree(runs, x, grad_out, training)
