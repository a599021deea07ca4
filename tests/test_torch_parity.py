"""Whole networks against PyTorch: the same weights give the same outputs, gradients and training losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.attrs import parse_attrs
from cnnkit.plugins import registry
from tests.oracles import require_torch
from tests.torch_mirror import as_numpy, torch_forward, torch_parameters

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))
pytestmark = pytest.mark.torch


def make_optimizer(net, **attrs):
    record = registry().optimizer("sgd")
    return record.make(net.params, net.grads, **parse_attrs(record.attrs, attrs))


def make_loss(**attrs):
    record = registry().loss("cross_entropy")
    return record.make(**parse_attrs(record.attrs, attrs))


def batch_for(net, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.output_shape[0], size=size).astype(np.int64)
    return x, y


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_forward_and_gradients_match_torch(spec_path):
    torch = require_torch()
    net = cnnkit.build(spec_path, seed=3)
    x, y = batch_for(net, 8, seed=4)
    params = torch_parameters(net, torch)
    expected = torch_forward(net, torch.tensor(x), params, torch, training=True)
    loss_t = torch.nn.functional.cross_entropy(expected, torch.tensor(y))
    loss_t.backward()
    loss = make_loss()
    logits = net.forward(x, training=True)
    np.testing.assert_allclose(logits, as_numpy(expected), rtol=1e-4, atol=1e-5)
    assert loss.forward(logits, y) == pytest.approx(loss_t.item(), rel=1e-5)
    net.backward(loss.backward())
    for key, grad in net.grads.items():
        np.testing.assert_allclose(grad, params[key].grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=key)


def test_lenet5_twenty_sgd_steps_give_torch_losses():
    torch = require_torch()
    net = cnnkit.build(Path(__file__).parent.parent / "specs" / "lenet5.yaml", seed=0)
    params = torch_parameters(net, torch)
    trainable = [params[k] for k in net.params]
    torch_opt = torch.optim.SGD(trainable, lr=0.05, momentum=0.9, weight_decay=5e-4)
    optimizer = make_optimizer(net, lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss = make_loss()
    batches = [batch_for(net, 16, seed=100 + i) for i in range(4)]
    ours, theirs = [], []
    for step in range(20):
        x, y = batches[step % len(batches)]
        ours.append(loss.forward(net.forward(x, training=True), y))
        net.backward(loss.backward())
        optimizer.step(0.05)
        torch_opt.zero_grad()
        loss_t = torch.nn.functional.cross_entropy(
            torch_forward(net, torch.tensor(x), params, torch, training=True), torch.tensor(y))
        loss_t.backward()
        torch_opt.step()
        theirs.append(loss_t.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert np.mean(ours[-4:]) < np.mean(ours[:4])
