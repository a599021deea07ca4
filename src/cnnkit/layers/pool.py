"""Pooling over (C, H, W) images: max_pool2d, avg_pool2d and global_avg_pool2d.

The window geometry (padding, "same", ceil_mode, output sizes) is conv2d's: cnnkit.layers.conv.
An omitted stride equals the kernel (non-overlapping windows). Every window must overlap the input, so
each pad is smaller than the kernel along its axis; max pooling treats padding as -inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.conv import Window, sliding_window
from cnnkit.registry import LayerType, Shape


def pool_window(layer: str, attrs: Mapping[str, Any], shape: Shape) -> Window:
    """The window of a max_pool2d/avg_pool2d layer over a (C, H, W) input; stride None means the kernel."""
    kernel = attrs["kernel"]
    stride = attrs["stride"] or kernel
    window = sliding_window(layer, shape, kernel, stride, attrs["padding"], ceil_mode=attrs["ceil_mode"])
    top, left, bottom, right = window.pads
    if max(top, bottom) >= kernel[0] or max(left, right) >= kernel[1]:
        raise ShapeError(f"{layer}: padding {window.pads} (top, left, bottom, right) on input "
                         f"{'x'.join(map(str, shape))} must be smaller than the kernel "
                         f"{kernel[0]}x{kernel[1]} on each side, so that every window overlaps the input")
    return window


def _infer_shape(layer: str):
    def infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
        (shape,) = shapes
        return (shape[0], *pool_window(layer, attrs, shape).out_hw)

    return infer_shape


def _to_onnx(layer: str, op_type: str):
    def to_onnx(ctx) -> None:
        """ONNX pooling with explicit pads (ONNX pads are top, left, bottom, right, as here)."""
        window = pool_window(layer, ctx.attrs, ctx.in_shapes[0])
        extra = {"count_include_pad": int(ctx.attrs["count_include_pad"])} if layer == "avg_pool2d" else {}
        ctx.node(op_type, ctx.inputs, kernel_shape=list(window.kernel), strides=list(window.stride),
                 pads=list(window.pads), ceil_mode=int(ctx.attrs["ceil_mode"]), **extra)

    return to_onnx


def global_to_onnx(ctx) -> None:
    if not ctx.attrs["keepdims"]:
        pooled = ctx.temp("pooled")
        ctx.node("GlobalAveragePool", ctx.inputs, [pooled])
        ctx.node("Flatten", [pooled], axis=1)
    else:
        ctx.node("GlobalAveragePool", ctx.inputs)


def window_macs(attrs: Mapping[str, Any], shapes: Sequence[Shape], out: Shape) -> int:
    """Pooling multiplies nothing; count one operation per window element read."""
    return math.prod(out) * math.prod(attrs["kernel"])


def global_infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    if len(shape) != 3:
        raise ShapeError(f"global_avg_pool2d takes an input of shape (channels, height, width), got "
                         f"{'x'.join(map(str, shape))}")
    return (shape[0], 1, 1) if attrs["keepdims"] else (shape[0],)


WINDOW_ATTRS = (
    Attr("kernel", "pair", doc="window size: k or [height, width]", minimum=1),
    Attr("stride", "pair", None, doc="step between windows: s or [height, width]; omitted: the kernel size",
         minimum=1),
    Attr("padding", "padding", (0, 0, 0, 0),
         doc="padding around the input, each side smaller than the kernel; 'same' keeps ceil(size / stride) "
             "(ONNX SAME_UPPER)"),
    Attr("ceil_mode", "bool", False,
         doc="round the output size up, keeping a last partial window if it starts inside the input or the "
             "top/left padding (PyTorch and ONNX rule)"),
)

MAX_POOL2D = LayerType(
    name="max_pool2d",
    attrs=WINDOW_ATTRS,
    infer_shape=_infer_shape("max_pool2d"),
    to_onnx=_to_onnx("max_pool2d", "MaxPool"),
    macs=window_macs,
    doc="Maximum over each window, per channel; padding counts as -inf. The gradient goes to the first "
        "maximal element of each window in row-major order (PyTorch's rule for ties).",
)

AVG_POOL2D = LayerType(
    name="avg_pool2d",
    attrs=(*WINDOW_ATTRS,
           Attr("count_include_pad", "bool", False,
                doc="divide by the window's positions inside the padded input (true) or inside the input "
                    "only (false, the ONNX default); ceil_mode's overhang is never counted")),
    infer_shape=_infer_shape("avg_pool2d"),
    to_onnx=_to_onnx("avg_pool2d", "AveragePool"),
    macs=window_macs,
    doc="Mean over each window, per channel.",
)

GLOBAL_AVG_POOL2D = LayerType(
    name="global_avg_pool2d",
    attrs=(Attr("keepdims", "bool", False, doc="output (C, 1, 1) instead of (C,)"),),
    infer_shape=global_infer_shape,
    to_onnx=global_to_onnx,
    macs=lambda attrs, shapes, out: math.prod(shapes[0]),
    doc="Mean over all of each channel: (C, H, W) -> (C,), or (C, 1, 1) with keepdims.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    for layer in (MAX_POOL2D, AVG_POOL2D, GLOBAL_AVG_POOL2D):
        register(layer)
