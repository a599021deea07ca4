"""linear: a fully connected layer, y = x W^T + b, on a flat (F,) input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.init import INITIALISERS, initial_weights
from cnnkit.registry import LayerType, Shape


def infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    if len(shape) != 1:
        raise ShapeError(f"linear takes a flat input of shape (features,), got "
                         f"{'x'.join(map(str, shape))}; put a flatten layer before it")
    return (attrs["units"],)


def init_params(attrs: Mapping[str, Any], shapes: Sequence[Shape], rng: np.random.Generator,
                dtype: np.dtype) -> dict[str, np.ndarray]:
    (features,) = shapes[0]
    units = attrs["units"]
    params = {"weight": initial_weights(attrs["init"], (units, features), features, units, rng, dtype)}
    if attrs["bias"]:
        params["bias"] = np.zeros(units, dtype=dtype)
    return params


def to_onnx(ctx) -> None:
    """Gemm with transB=1: the weight keeps cnnkit's (units, features) layout."""
    inputs = [ctx.inputs[0], ctx.weight("weight")]
    if "bias" in ctx.params:
        inputs.append(ctx.weight("bias"))
    ctx.node("Gemm", inputs, transB=1)


LINEAR = LayerType(
    name="linear",
    attrs=(
        Attr("units", "int", doc="number of outputs", minimum=1),
        Attr("bias", "bool", True, doc="add a learned bias"),
        Attr("init", "choice", "he", doc="weight initialiser", choices=INITIALISERS),
    ),
    infer_shape=infer_shape,
    init_params=init_params,
    to_onnx=to_onnx,
    macs=lambda attrs, shapes, out: shapes[0][0] * out[0],
    doc="Fully connected layer: every output sees every input (weight shape units x features).",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(LINEAR)
