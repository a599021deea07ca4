"""add and concat: layers that merge two or more values, listed in the spec as `inputs: [a, b, ...]`.

add sums values of one shape (residual connections); concat joins values along one axis (channels by
default, as in Inception and DenseNet blocks). Axes count the batch dimension as 0, as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import LayerType, Shape


def _shapes(shapes: Sequence[Shape]) -> str:
    return ", ".join("x".join(map(str, shape)) for shape in shapes)


def _at_least_two(layer: str, shapes: Sequence[Shape]) -> None:
    if len(shapes) < 2:
        raise ShapeError(f"{layer} takes two or more inputs (inputs: [a, b]), got {len(shapes)}: "
                         f"{_shapes(shapes)}")


def add_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    _at_least_two("add", shapes)
    if any(shape != shapes[0] for shape in shapes):
        raise ShapeError(f"add needs inputs of one shape, got {_shapes(shapes)}")
    return shapes[0]


def concat_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    _at_least_two("concat", shapes)
    axis, rank = attrs["axis"], len(shapes[0])
    if any(len(shape) != rank for shape in shapes):
        raise ShapeError(f"concat needs inputs with the same number of dimensions, got {_shapes(shapes)}")
    if axis == 0 or not -rank <= axis <= rank:
        raise ShapeError(f"concat axis {axis} does not fit inputs {_shapes(shapes)}: axis 0 is the batch, "
                         f"so choose 1..{rank} (or -{rank}..-1, counting from the end)")
    i = axis % (rank + 1) - 1
    others = {shape[:i] + shape[i + 1:] for shape in shapes}
    if len(others) > 1:
        raise ShapeError(f"concat along axis {axis} needs every other dimension to match, got "
                         f"{_shapes(shapes)}")
    first = shapes[0]
    return first[:i] + (sum(shape[i] for shape in shapes),) + first[i + 1:]


ADD = LayerType(
    name="add",
    attrs=(),
    infer_shape=add_shape,
    to_onnx=lambda ctx: ctx.node("Sum", ctx.inputs),
    macs=lambda attrs, shapes, out: 0,
    arity=(2, None),
    doc="Elementwise sum of two or more values of one shape (residual connections).",
)

CONCAT = LayerType(
    name="concat",
    attrs=(Attr("axis", "int", 1, doc="axis to join along; 0 is the batch, 1 the channels, negative "
                "counts from the end"),),
    infer_shape=concat_shape,
    to_onnx=lambda ctx: ctx.node("Concat", ctx.inputs, axis=ctx.attrs["axis"]),
    macs=lambda attrs, shapes, out: 0,
    arity=(2, None),
    doc="Joins two or more values along one axis; every other dimension must match.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(ADD)
    register(CONCAT)
