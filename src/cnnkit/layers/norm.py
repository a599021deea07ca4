"""batch_norm2d: normalise each channel by batch statistics in training and by running averages in eval.

The channel axis is the first non-batch axis; statistics cover every other axis: (N, H, W) for (C, H, W)
values (BatchNorm2d), N alone for (F,) features and (N, L) for (C, L) values (BatchNorm1d). Running
statistics follow PyTorch: running = (1 - momentum) * running + momentum * batch_statistic, with the
unbiased batch variance, so weights move between the two frameworks unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.activation import same_shape
from cnnkit.registry import LayerType, Shape


def init_params(attrs: Mapping[str, Any], shapes: Sequence[Shape], rng: np.random.Generator,
                dtype: np.dtype) -> dict[str, np.ndarray]:
    if not attrs["affine"]:
        return {}
    channels = shapes[0][0]
    return {"weight": np.ones(channels, dtype), "bias": np.zeros(channels, dtype)}


def init_buffers(attrs: Mapping[str, Any], shapes: Sequence[Shape], dtype: np.dtype) -> dict[str, np.ndarray]:
    channels = shapes[0][0]
    return {"running_mean": np.zeros(channels, dtype), "running_var": np.ones(channels, dtype)}


def to_onnx(ctx) -> None:
    """ONNX BatchNormalization in inference mode; it needs scale and bias even without affine."""
    channels = ctx.in_shapes[0][0]
    scale = ctx.weight("weight") if "weight" in ctx.params else ctx.constant("weight", np.ones(channels))
    bias = ctx.weight("bias") if "bias" in ctx.params else ctx.constant("bias", np.zeros(channels))
    ctx.node("BatchNormalization", [ctx.inputs[0], scale, bias, ctx.weight("running_mean"),
                                    ctx.weight("running_var")], epsilon=ctx.attrs["eps"])


BATCH_NORM2D = LayerType(
    name="batch_norm2d",
    attrs=(
        Attr("momentum", "float", 0.1, doc="weight of the newest batch in the running statistics",
             minimum=0, maximum=1),
        Attr("eps", "float", 1e-5, doc="added to the variance before the square root",
             minimum=0, exclusive_min=True),
        Attr("affine", "bool", True, doc="learn a per-channel scale ('weight') and shift ('bias')"),
    ),
    infer_shape=same_shape,
    init_params=init_params,
    init_buffers=init_buffers,
    to_onnx=to_onnx,
    macs=lambda attrs, shapes, out: math.prod(out),
    doc="Batch normalisation over the channel axis (axis 1), with running mean and variance for eval.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(BATCH_NORM2D)
