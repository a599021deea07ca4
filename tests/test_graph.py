"""Whole networks: Network.backward against finite differences of Network.forward, through merges."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit

RESIDUAL = {
    "name": "residual",
    "input": [2, 2, 3],
    "layers": [
        {"name": "bn0", "type": "batch_norm2d"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 5},
        {"name": "act", "type": "relu"},
        {"name": "fc2", "type": "linear", "units": 5, "inputs": ["fc"]},
        {"name": "sum", "type": "add", "inputs": ["act", "fc2"]},
        {"name": "cat", "type": "concat", "inputs": ["sum", "fc", "act"]},
        {"name": "bn1", "type": "batch_norm2d", "momentum": 0.5},
        {"name": "out", "type": "linear", "units": 3},
    ],
}
"""fc feeds three layers and act two, so backward sums gradients for both (the 2-way and n-way paths)."""


def randomise(net: cnnkit.Network, seed: int) -> None:
    """Non-trivial batch-norm scales and shifts and non-zero biases, so no gradient is trivially zero."""
    rng = np.random.default_rng(seed)
    for key, value in net.params.items():
        if not key.endswith(".weight") or key.startswith("bn"):
            value[:] = rng.uniform(0.5, 1.5, value.shape) if key.startswith("bn") else rng.standard_normal(
                value.shape) * 0.5


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_parameter_gradients_match_finite_differences(training):
    net = cnnkit.build(RESIDUAL, dtype=np.float64, seed=1)
    randomise(net, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 2, 3)) * 2 + 1
    for _ in range(3):
        net.forward(rng.standard_normal(x.shape) * 2 + 1, training=True)
    weights = rng.standard_normal((5, 3))

    def loss() -> float:
        return float(np.sum(net.forward(x, training=training) * weights))

    loss()
    analytic = {key: grad.copy() for key, grad in net.backward(weights).items()}
    numeric = {key: numeric_gradient(loss, param) for key, param in net.params.items()}
    flat_analytic = np.concatenate([analytic[key].ravel() for key in net.params])
    flat_numeric = np.concatenate([numeric[key].ravel() for key in net.params])
    error = np.linalg.norm(flat_analytic - flat_numeric) / np.linalg.norm(flat_numeric)
    assert error < 1e-6, f"relative error {error:.2e}"
    for key in net.params:
        np.testing.assert_allclose(analytic[key], numeric[key], rtol=1e-5, atol=1e-7, err_msg=key)


def numeric_gradient(loss, param: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of loss() for every entry of `param`, changed in place and restored."""
    numeric = np.empty_like(param)
    for i in np.ndindex(param.shape):
        keep = param[i]
        param[i] = keep + eps
        up = loss()
        param[i] = keep - eps
        down = loss()
        param[i] = keep
        numeric[i] = (up - down) / (2 * eps)
    return numeric

def test_running_statistics_move_only_in_training():
    net = cnnkit.build(RESIDUAL, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((4, 2, 2, 3))
    before = {key: value.copy() for key, value in net.buffers.items()}
    net.forward(x, training=False)
    assert all(np.array_equal(net.buffers[key], value) for key, value in before.items())
    net.forward(x, training=True)
    assert not np.array_equal(net.buffers["bn0.running_mean"], before["bn0.running_mean"])


ONNX_SPECS = {
    "activations": [{"name": "a", "type": "leaky_relu", "alpha": 0.2}, {"name": "b", "type": "sigmoid"},
                    {"name": "c", "type": "tanh"}, {"name": "d", "type": "relu"},
                    {"name": "e", "type": "softmax", "axis": 2}],
    "dropout_flatten": [{"name": "a", "type": "dropout", "rate": 0.3}, {"name": "b", "type": "flatten"},
                        {"name": "c", "type": "softmax"}],
    "merges": [{"name": "a", "type": "relu"}, {"name": "b", "type": "tanh", "inputs": ["input"]},
               {"name": "c", "type": "add", "inputs": ["a", "b", "input"]},
               {"name": "d", "type": "concat", "axis": -1, "inputs": ["c", "a"]}],
    "batch_norm": [{"name": "a", "type": "batch_norm2d"}, {"name": "b", "type": "batch_norm2d",
                                                            "affine": False}],
    "batch_norm_features": [{"name": "a", "type": "flatten"}, {"name": "b", "type": "batch_norm2d"}],
}


@pytest.mark.parametrize("layers", ONNX_SPECS.values(), ids=ONNX_SPECS.keys())
def test_layers_export_to_onnx_and_run_identically(layers, tmp_path):
    pytest.importorskip("onnxruntime")
    from cnnkit.onnx import export_onnx, verify_onnx

    net = cnnkit.build({"name": "layers", "input": [3, 4, 5], "layers": layers})
    rng = np.random.default_rng(5)
    for _ in range(2):
        net.forward(rng.standard_normal((8, 3, 4, 5)) + 1, training=True)
    for value in net.params.values():
        value[:] = rng.uniform(0.5, 1.5, value.shape)
    report = verify_onnx(net, export_onnx(net, tmp_path / "net.onnx"), batch_sizes=(1, 5))
    assert report.passed, str(report)
