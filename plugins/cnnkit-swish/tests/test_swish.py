"""The swish layer: values, gradients (finite differences), large inputs, specs and ONNX export.

These tests build their own registry from the module, so they run whether or not the package is
installed: `pytest` in this folder, or from a cnnkit checkout as part of its suite.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit_swish
from cnnkit.errors import SpecError
from cnnkit.graph import Network
from cnnkit.onnx import export_onnx, verify_onnx
from cnnkit.spec import load_spec
from cnnkit.testing import check_gradients, make_run, plugin_registry

REGISTRY = plugin_registry(cnnkit_swish)
BETAS = [0.0, 0.5, 1.0, 2.5]


def reference(x: np.ndarray, beta: float) -> np.ndarray:
    return x / (1 + np.exp(-beta * x))


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 7)])
def test_forward_is_x_times_sigmoid_of_beta_x(beta, shape):
    x = np.random.default_rng(0).standard_normal(shape) * 3
    run = make_run("swish", {"beta": beta}, [shape], registry=REGISTRY)
    np.testing.assert_allclose(run.forward([x]), reference(x, beta), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("beta", BETAS)
def test_backward_matches_finite_differences(beta):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)) * 2
    check_gradients("swish", {"beta": beta}, [x], registry=REGISTRY)


def test_large_inputs_neither_overflow_nor_lose_the_tails():
    x = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]], dtype=np.float32)
    run = make_run("swish", {}, [x.shape], dtype=np.float32, registry=REGISTRY)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = run.forward([x])
        dx = run.backward(np.ones_like(x))[0]
    np.testing.assert_allclose(y, [[0.0, -30 * np.exp(-30.0), 0.0, 30.0, 1000.0]], rtol=1e-6)
    np.testing.assert_allclose(dx, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_beta_is_validated_like_any_attribute():
    spec = {"name": "s", "input": [4], "layers": [{"name": "act", "type": "swish", "bta": 2}]}
    with pytest.raises(SpecError, match="did you mean 'beta'"):
        load_spec(spec, REGISTRY)
    spec["layers"][0] = {"name": "act", "type": "swish", "beta": -1}
    with pytest.raises(SpecError, match="attribute 'beta'"):
        load_spec(spec, REGISTRY)


@pytest.mark.parametrize("beta", [1.0, 1.7])
def test_exports_to_standard_onnx_operators(tmp_path, beta):
    spec = load_spec({"name": "s", "input": [2, 6, 6], "layers": [
        {"name": "conv", "type": "conv2d", "filters": 3, "kernel": 3},
        {"name": "act", "type": "swish", "beta": beta},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 2}]}, REGISTRY)
    net = Network(spec, REGISTRY)
    path = export_onnx(net, tmp_path / "swish.onnx")
    report = verify_onnx(net, path)
    assert report.passed, report
