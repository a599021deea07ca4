"""Activations: relu, leaky_relu, sigmoid and tanh (elementwise) and softmax (along one axis).

Every activation keeps its input's shape. Axes count the batch dimension as 0, as in PyTorch and ONNX, so
softmax's default axis 1 is the channels of a (C, H, W) value or the features of an (F,) one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import LayerType, Shape


def same_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    return shape


def softmax_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    axis, rank = attrs["axis"], len(shape)
    if axis == 0 or not -rank <= axis <= rank:
        raise ShapeError(f"softmax axis {axis} does not fit input {'x'.join(map(str, shape))}: axis 0 is "
                         f"the batch, so choose 1..{rank} (or -{rank}..-1, counting from the end)")
    return shape


def one_onnx_node(op_type: str, attrs: tuple[Attr, ...]):
    """An export rule emitting one ONNX operator whose attributes have the same names as ours."""
    def to_onnx(ctx) -> None:
        ctx.node(op_type, ctx.inputs, **{attr.name: ctx.attrs[attr.name] for attr in attrs})
    return to_onnx


def activation(name: str, onnx_op: str, doc: str, attrs: tuple[Attr, ...] = (),
               infer_shape=same_shape) -> LayerType:
    return LayerType(name=name, attrs=attrs, infer_shape=infer_shape, to_onnx=one_onnx_node(onnx_op, attrs),
                     macs=lambda attrs, shapes, out: 0, doc=doc)


ACTIVATIONS = (
    activation("relu", "Relu", "max(x, 0), elementwise."),
    activation("leaky_relu", "LeakyRelu", "x where x > 0, alpha * x elsewhere.",
               (Attr("alpha", "float", 0.01, doc="slope for x <= 0", minimum=0),)),
    activation("sigmoid", "Sigmoid", "1 / (1 + exp(-x)), elementwise, computed without overflow."),
    activation("tanh", "Tanh", "tanh(x), elementwise."),
    activation("softmax", "Softmax", "exp(x) / sum(exp(x)) along one axis (max-subtracted, so stable).",
               (Attr("axis", "int", 1, doc="axis to normalise over; 0 is the batch, 1 the channels or "
                     "features, negative counts from the end"),), softmax_shape),
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    for layer in ACTIVATIONS:
        register(layer)
