"""The README's examples work as written."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np

from cnnkit.graph import Network
from cnnkit.onnx import export_onnx, verify_onnx
from cnnkit.plugins import collect, make_plugin_manager
from cnnkit.spec import load_spec

README = (Path(__file__).parents[1] / "README.md").read_text()


def code_block(starting_with: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.S):
        if block.startswith(starting_with):
            return block
    raise AssertionError(f"no python block starting with {starting_with!r} in the README")


def test_plugin_example_registers_trains_and_exports(tmp_path):
    module = types.ModuleType("my_swish")
    exec(compile(code_block("# my_swish/__init__.py"), "README.md", "exec"), module.__dict__)
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(module, name="my_swish")
    registry = collect(pm)
    assert registry.layer("swish").plugin == "my_swish"
    spec = load_spec({"name": "s", "input": [2, 6, 6], "layers": [
        {"name": "conv", "type": "conv2d", "filters": 3, "kernel": 3},
        {"name": "act", "type": "swish"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 2}]}, registry)
    net = Network(spec, registry, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6))
    weights = np.random.default_rng(1).standard_normal((3, 2))
    net.forward(x, training=True)
    analytic = net.backward(weights)["conv.weight"].copy()
    flat, eps = net.params["conv.weight"].reshape(-1), 1e-6
    for i in range(0, flat.size, 7):
        keep = flat[i]
        flat[i] = keep + eps
        up = float(np.sum(net.forward(x) * weights))
        flat[i] = keep - eps
        down = float(np.sum(net.forward(x) * weights))
        flat[i] = keep
        assert abs((up - down) / (2 * eps) - analytic.reshape(-1)[i]) < 1e-6
    net32 = Network(spec, registry)
    path = export_onnx(net32, tmp_path / "swish.onnx")
    assert verify_onnx(net32, path).passed
