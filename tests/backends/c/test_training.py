"""The C backend's cross-entropy and optimizer steps: the reference's results and state, any thread count."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import BackendError, PluginError
from cnnkit.plugins import registry
from cnnkit.registry import Kernel
from cnnkit.train import from_section, on_backend
from tests.backends.c.conftest import assert_same_bits_for_thread_counts
from tests.layers.harness import noncontiguous


def losses(section: dict):
    """The reference loss and the C backend's, made from the same recipe section."""
    reg = registry()
    return from_section(reg.loss, section), from_section(lambda name: reg.on_backend(reg.loss(name), "c"),
                                                         section)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(37, 11), (1, 2), (300, 100)])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_cross_entropy_matches_the_reference(lib, smoothing, shape, layout):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(shape) * 4).astype(np.float32)
    logits = noncontiguous(logits) if layout == "noncontiguous" else logits
    labels = rng.integers(0, shape[1], shape[0])
    reference, fused = losses({"type": "cross_entropy", "label_smoothing": smoothing})
    assert type(fused).__module__ == "cnnkit.backends.c.losses"
    assert fused.forward(logits, labels) == pytest.approx(reference.forward(logits, labels), rel=1e-5)
    np.testing.assert_allclose(fused.backward(), reference.backward(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("shape", [(37, 11), (1, 2), (300, 100)])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_mse_matches_the_reference(lib, shape, layout):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(shape).astype(np.float32)
    logits = noncontiguous(logits) if layout == "noncontiguous" else logits
    labels = rng.integers(0, shape[1], shape[0])
    reference, fused = losses({"type": "mse"})
    assert type(fused).__module__ == "cnnkit.backends.c.losses"
    for _ in range(2):  # a second call reuses the buffers
        assert fused.forward(logits, labels) == pytest.approx(reference.forward(logits, labels), rel=1e-5)
        np.testing.assert_allclose(fused.backward(), reference.backward(), rtol=1e-5, atol=1e-9)


def test_mse_is_bitwise_equal_for_1_and_2_threads(lib):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2000, 30)).astype(np.float32)
    labels = rng.integers(0, 30, 2000)
    _, fused = losses({"type": "mse"})

    def loss_and_gradient() -> list:
        return [fused.forward(logits, labels), fused.backward().copy()]

    assert_same_bits_for_thread_counts(loss_and_gradient, (1, 2))


C_ARGS_AFTER_LABELS = {"cross_entropy": [0.0], "mse": []}
"""What each loss's C function takes after the labels: the label smoothing, for cross-entropy only."""


@pytest.mark.parametrize("loss", C_ARGS_AFTER_LABELS)
def test_losses_refuse_bad_labels_and_shapes(lib, loss):
    _, fused = losses({"type": loss})
    with pytest.raises(cnnkit.errors.ShapeError, match="backward\\(\\) needs a forward\\(\\) first"):
        fused.backward()
    logits = np.zeros((3, 4), np.float32)
    for labels in ([0, 1, 4], [-1, 0, 0]):
        with pytest.raises(BackendError, match="labels must be class indices from 0 to 3"):
            fused.forward(logits, np.array(labels))
    with pytest.raises(cnnkit.errors.ShapeError, match="logits \\(N, classes\\) and labels \\(N,\\)"):
        fused.forward(logits, np.array([0, 1]))
    bad_label, rows, grad, total = np.array([7]), np.zeros(1), np.zeros(4, np.float32), ctypes.c_double()
    rest = (*C_ARGS_AFTER_LABELS[loss], rows.ctypes.data, grad.ctypes.data, ctypes.byref(total))
    with pytest.raises(BackendError, match="failed: "):
        getattr(lib, f"{loss}_forward")(1, 4, logits.ctypes.data, bad_label.ctypes.data, *rest)


OPTIMIZERS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    {"type": "adam", "lr": 0.01},
    {"type": "adam", "lr": 0.01, "weight_decay": 0.01},
    {"type": "adamw", "lr": 0.01},
]
SHAPES = {"conv.weight": (8, 3, 5, 5), "conv.bias": (8,), "fc.weight": (130, 301)}


def run_optimizer(section: dict, backend: str, steps: int = 5):
    rng = np.random.default_rng(1)
    params = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    reg = registry()
    optimizer = from_section(lambda name: reg.on_backend(reg.optimizer(name), backend), section, params,
                             grads)
    for step in range(steps):
        for g in grads.values():
            g[...] = rng.standard_normal(g.shape)
        optimizer.step(section["lr"] * (1 - step / 10))
    return optimizer, params


@pytest.mark.parametrize("section", OPTIMIZERS, ids=[str(s) for s in OPTIMIZERS])
def test_optimizer_steps_match_the_reference_and_keep_its_state(lib, section):
    reference, expected = run_optimizer(section, "numpy")
    fused, got = run_optimizer(section, "c")
    assert type(fused).__module__ == "cnnkit.backends.c.optimizers"
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    own, theirs = fused.state(), reference.state()
    assert {k: v.shape for k, v in own.items()} == {k: v.shape for k, v in theirs.items()}
    for key, value in theirs.items():
        np.testing.assert_allclose(own[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    fresh, _ = run_optimizer(section, "c", steps=0)
    fresh.load_state(theirs)  # a NumPy checkpoint resumes on C
    for key, value in theirs.items():
        np.testing.assert_array_equal(fresh.state()[key], value)


@pytest.mark.parametrize("section", [OPTIMIZERS[2], OPTIMIZERS[4]], ids=["sgd", "adam"])
def test_optimizer_steps_are_bitwise_equal_for_1_to_4_threads(lib, section):
    assert_same_bits_for_thread_counts(lambda: list(run_optimizer(section, "c")[1].values()), (1, 2, 3, 4))


def test_a_c_optimizer_refuses_parameters_c_cannot_update(lib):
    params = {"w": np.zeros(8, np.float32)[::2]}
    grads = {"w": np.zeros(4, np.float32)}
    with pytest.raises(BackendError, match="parameter 'w' must be C-contiguous"):
        registry().on_backend(registry().optimizer("sgd"), "c").make(params, grads)


def test_networks_train_with_their_backends_loss_and_optimizer(lib):
    spec = "name: t\ninput: [6]\nlayers:\n  - {name: fc, type: linear, units: 3}"
    reg = registry()
    for backend, module in (("numpy", "cnnkit.train"), ("c", "cnnkit.backends.c")):
        net = cnnkit.build(spec, backend=backend)
        loss = from_section(on_backend(reg.loss, net), {"type": "cross_entropy"})
        mse = from_section(on_backend(reg.loss, net), {"type": "mse"})
        sgd = from_section(on_backend(reg.optimizer, net), {"type": "sgd"}, net.params, net.grads)
        for made in (loss, mse, sgd):
            assert type(made).__module__.startswith(module)


def test_a_training_kernel_still_needs_a_registered_backend():
    with pytest.raises(PluginError, match="no plugin registers the backend 'cuda'"):
        registry().add(Kernel(layer="loss/cross_entropy", backend="cuda", make=lambda: None, plugin="p"))
