"""flatten: everything after the batch dimension as one axis, in C order ((C, H, W) -> (C*H*W,)).

The same as torch.flatten(x, 1) and ONNX Flatten with axis=1, so a linear layer after it sees the weights'
columns in the order PyTorch and ONNX use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import LayerType, Shape


def infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    return (math.prod(shape),)


def to_onnx(ctx) -> None:
    ctx.node("Flatten", ctx.inputs, axis=1)


FLATTEN = LayerType(
    name="flatten",
    attrs=(),
    infer_shape=infer_shape,
    to_onnx=to_onnx,
    macs=lambda attrs, shapes, out: 0,
    doc="(C, H, W) -> (C*H*W,) in C order, as torch.flatten(x, 1); no copy.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(FLATTEN)
