"""The shipped specs on backend "c": every layer runs in C, and results match the NumPy backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.plugins import registry
from cnnkit.train import from_section, on_backend
from cnnkit.train.trainer import load_data
from tests.backends.c.conftest import assert_networks_agree

SPECS = Path(__file__).resolve().parents[3] / "specs"
NAMES = ["lenet5", "resnet_small"]


def batch(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, 3, 32, 32)).astype(np.float32), rng.integers(0, 4, size)


@pytest.mark.parametrize("name", NAMES)
def test_every_layer_runs_in_c_and_matches_numpy_forward_and_backward(lib, name):
    nets = {backend: cnnkit.build(SPECS / f"{name}.yaml", backend=backend, seed=1)
            for backend in ("numpy", "c")}
    assert {k.backend for k in nets["c"].kernels} == {"c"}
    x, _ = batch(6, 0)
    assert_networks_agree(nets, x)
    evals = {backend: net.forward(x, training=False) for backend, net in nets.items()}
    np.testing.assert_allclose(evals["c"], evals["numpy"], rtol=1e-4, atol=1e-5)


LR = 0.01
"""The specs' rate (0.05 with momentum 0.9) makes resnet_small's steps chaotic: float32 rounding alone
(NumPy float32 vs float64) moves its 20th loss by 1e-3, on random batches and on its own data alike, and C
vs NumPy moves it as much (vgg_small at its 0.02 likewise). At 0.01 both backends stay within 2e-7."""


def train_losses(name: str, backend: str, steps: int) -> list[float]:
    """`steps` steps of the spec's own loss and optimizer (at learning rate LR) on random batches; on "c",
    the C backend's cross-entropy and SGD."""
    net = cnnkit.build(SPECS / f"{name}.yaml", backend=backend, seed=2)
    recipe = net.spec.train
    loss = from_section(on_backend(registry().loss, net), recipe.loss)
    optimizer = from_section(on_backend(registry().optimizer, net), recipe.optimizer, net.params, net.grads)
    expected_module = "cnnkit.backends.c" if backend == "c" else "cnnkit.train"
    assert type(loss).__module__.startswith(expected_module)
    assert type(optimizer).__module__.startswith(expected_module)
    losses = []
    for step in range(steps):
        x, y = batch(8, seed=100 + step)
        losses.append(loss.forward(net.forward(x, training=True), y))
        net.backward(loss.backward())
        optimizer.step(LR)
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_training_20_steps_gives_the_numpy_losses(lib, name):
    expected = train_losses(name, "numpy", 20)
    np.testing.assert_allclose(train_losses(name, "c", 20), expected, rtol=1e-4)


def recipe_losses(name: str, backend: str, steps: int) -> list[float]:
    """`steps` steps of the spec's whole recipe (its data, batch size, loss, optimizer and learning rate)."""
    net = cnnkit.build(SPECS / f"{name}.yaml", backend=backend, seed=2)
    recipe = net.spec.train
    data, _ = load_data(net)
    loss = from_section(on_backend(registry().loss, net), recipe.loss)
    optimizer = from_section(on_backend(registry().optimizer, net), recipe.optimizer, net.params, net.grads)
    size, losses = recipe.batch_size, []
    for step in range(steps):
        x, y = data.x[step * size:(step + 1) * size], data.y[step * size:(step + 1) * size]
        losses.append(loss.forward(net.forward(x, training=True), y))
        net.backward(loss.backward())
        optimizer.step(recipe.optimizer["lr"])
    return losses


@pytest.mark.parametrize("name", ["lenet5", "seed_convnet"])
def test_the_specs_own_recipe_gives_the_numpy_losses_for_20_steps(lib, name):
    expected = recipe_losses(name, "numpy", 20)
    np.testing.assert_allclose(recipe_losses(name, "c", 20), expected, rtol=1e-5)
