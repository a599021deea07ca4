from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError
from cnnkit.plugins import registry
from cnnkit.train import from_section
from tests.oracles import require_torch

SECTIONS = [
    {"type": "cross_entropy", "label_smoothing": 0.0},
    {"type": "cross_entropy", "label_smoothing": 0.1},
    {"type": "cross_entropy", "label_smoothing": 0.5},
    {"type": "mse"},
]


def make(section):
    return from_section(registry().loss, section)


def batch(dtype, n=6, k=4, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, k)) * scale).astype(dtype), rng.integers(0, k, n).astype(np.int64)


def torch_loss(torch, section, logits, labels):
    import torch.nn.functional as F

    z = torch.tensor(logits, requires_grad=True)
    y = torch.tensor(labels)
    if section["type"] == "mse":
        value = F.mse_loss(z, F.one_hot(y, logits.shape[1]).to(z.dtype))
    else:
        value = F.cross_entropy(z, y, label_smoothing=section["label_smoothing"])
    value.backward()
    return value.item(), z.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_matches_torch(section, dtype, rtol):
    torch = require_torch()
    logits, labels = batch(dtype)
    loss = make(section)
    value = loss.forward(logits, labels)
    grad = loss.backward()
    expected_value, expected_grad = torch_loss(torch, section, logits, labels)
    assert grad.dtype == dtype
    np.testing.assert_allclose(value, expected_value, rtol=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: "-".join(map(str, s.values())))
def test_gradient_matches_finite_differences(section):
    logits, labels = batch(np.float64, seed=1)
    loss = make(section)
    loss.forward(logits, labels)
    analytic = loss.backward().copy()
    numeric = np.zeros_like(logits)
    eps = 1e-6
    for index in np.ndindex(logits.shape):
        keep = logits[index]
        logits[index] = keep + eps
        up = loss.forward(logits, labels)
        logits[index] = keep - eps
        down = loss.forward(logits, labels)
        logits[index] = keep
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_is_stable_for_huge_logits(smoothing):
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]], np.float32)
    loss = make({"type": "cross_entropy", "label_smoothing": smoothing})
    value = loss.forward(logits, np.array([0, 0], np.int64))
    assert np.isfinite(value) and np.all(np.isfinite(loss.backward()))
    # log-probabilities: [0, -2e4, -1e4] and [-6e4, 0, 1 - 3e4]; q = (1 - s) onehot(0) + s / 3
    first = smoothing * (2e4 + 1e4) / 3
    second = (1 - smoothing) * 6e4 + smoothing * (6e4 + 3e4 - 1) / 3
    assert value == pytest.approx((first + second) / 2, rel=1e-6)


def test_uniform_logits_give_log_k():
    loss = make({"type": "cross_entropy", "label_smoothing": 0.0})
    assert loss.forward(np.zeros((5, 10)), np.arange(5, dtype=np.int64)) == pytest.approx(np.log(10))


@pytest.mark.parametrize("section", SECTIONS[1:], ids=lambda s: s["type"])
def test_backward_reuses_its_buffer(section):
    loss = make(section)
    logits, labels = batch(np.float32)
    loss.forward(logits, labels)
    first = loss.backward()
    loss.forward(logits * 2, labels)
    assert loss.backward() is first


@pytest.mark.parametrize("section", SECTIONS[::3], ids=lambda s: s["type"])
def test_rejects_non_flat_logits(section):
    with pytest.raises(ShapeError, match="logits"):
        make(section).forward(np.zeros((2, 3, 4)), np.zeros(2, np.int64))
