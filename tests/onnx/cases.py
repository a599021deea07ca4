"""Small networks covering every layer x attribute combination the core tests, for export parity."""

from __future__ import annotations

import numpy as np

import cnnkit
from cnnkit.attrs import parse_attrs
from cnnkit.plugins import registry


def chain(name: str, input_shape: list[int], *layers: dict, head: int = 3) -> dict:
    """A spec dict: the given layers, then flatten and a linear head (unless the last is already flat)."""
    items = [dict(layer, name=layer.get("name", f"l{i}")) for i, layer in enumerate(layers)]
    items += [{"name": "flat", "type": "flatten"}, {"name": "head", "type": "linear", "units": head}]
    return {"name": name, "input": input_shape, "layers": items}


CONV = {"type": "conv2d", "filters": 4, "kernel": 3}
CASES = {
    "conv_valid": chain("conv_valid", [3, 9, 9], CONV, {"type": "relu"}),
    "conv_same_stride2": chain("conv_same_stride2", [3, 10, 9], dict(CONV, padding="same", stride=2)),
    "conv_asym_pad": chain("conv_asym_pad", [2, 7, 8], dict(CONV, padding=[0, 1, 2, 1], bias=False)),
    "conv_dilation": chain("conv_dilation", [2, 11, 11], dict(CONV, dilation=2, stride=[1, 2])),
    "conv_groups": chain("conv_groups", [4, 8, 8], dict(CONV, groups=2, kernel=[3, 1], padding=1)),
    "conv_depthwise": chain("conv_depthwise", [4, 8, 8], dict(CONV, filters=8, groups=4, padding="same")),
    "max_pool_ceil_pad": chain("max_pool_ceil_pad", [2, 9, 9],
                               {"type": "max_pool2d", "kernel": 3, "stride": 2, "padding": 1,
                                "ceil_mode": True}),
    "max_pool_2x2": chain("max_pool_2x2", [3, 8, 6], {"type": "max_pool2d", "kernel": 2}),
    "avg_pool_include_pad": chain("avg_pool_include_pad", [2, 9, 9],
                                  {"type": "avg_pool2d", "kernel": 3, "stride": 2, "padding": 1,
                                   "count_include_pad": True}),
    "avg_pool_exclude_pad_ceil": chain("avg_pool_exclude_pad_ceil", [2, 8, 8],
                                       {"type": "avg_pool2d", "kernel": 3, "stride": 2, "padding": 1,
                                        "ceil_mode": True, "count_include_pad": False}),
    "global_avg": {"name": "global_avg", "input": [3, 6, 5], "layers": [
        dict(CONV, name="c"), {"name": "g", "type": "global_avg_pool2d"},
        {"name": "head", "type": "linear", "units": 2}]},
    "activations": chain("activations", [2, 6, 6], dict(CONV, name="c1"),
                         {"type": "leaky_relu", "alpha": 0.2},
                         dict(CONV, name="c2", padding=1), {"type": "sigmoid"},
                         dict(CONV, name="c3", padding=1), {"type": "tanh"}, {"type": "softmax"}),
    "batch_norm_dropout": chain("batch_norm_dropout", [3, 8, 8], dict(CONV, name="c", bias=False),
                                {"name": "bn", "type": "batch_norm2d"}, {"type": "relu"},
                                {"type": "dropout", "rate": 0.3}),
    "residual_concat": {"name": "residual_concat", "input": [3, 8, 8], "layers": [
        dict(CONV, name="stem", padding=1),
        {"name": "bn1", "type": "batch_norm2d"},
        {"name": "r1", "type": "relu"},
        dict(CONV, name="branch", padding=1),
        {"name": "sum", "type": "add", "inputs": ["r1", "branch"]},
        dict(CONV, name="side", filters=2, kernel=1, inputs=["stem"]),
        {"name": "cat", "type": "concat", "inputs": ["sum", "side"]},
        {"name": "pool", "type": "max_pool2d", "kernel": 2},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 8},
        {"name": "bn2", "type": "batch_norm2d"},
        {"name": "head", "type": "linear", "units": 3}]},
}


def trained(net: cnnkit.Network, steps: int = 3, seed: int = 0) -> cnnkit.Network:
    """A few SGD steps on random data so weights and batch-norm statistics are no longer the init."""
    reg = registry()
    loss = reg.loss("cross_entropy").make(**parse_attrs(reg.loss("cross_entropy").attrs, {}))
    sgd = reg.optimizer("sgd")
    optimizer = sgd.make(net.params, net.grads, **parse_attrs(sgd.attrs, {"lr": 0.05, "momentum": 0.9}))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((16, *net.input_shape)).astype(net.dtype)
        y = rng.integers(0, net.output_shape[0], size=16)
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        optimizer.step(0.05)
    return net
