"""conv2d: 2-D convolution over (C, H, W) images, with stride, padding, dilation and groups.

Also the window geometry that pooling shares: `resolve_padding`, `conv_output_size` and `sliding_window`
are the one place where padding and output sizes are worked out, for every layer that slides a window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.init import INITIALISERS, initial_weights
from cnnkit.registry import LayerType, Shape

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]
"""Padding as (top, left, bottom, right)."""


def resolve_padding(padding: str | Pads, in_hw: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
    """Explicit (top, left, bottom, right) pads; "same" follows ONNX SAME_UPPER.

    SAME_UPPER: out = ceil(in / stride), total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in,
    0), top/left = total // 2 and bottom/right get the rest (the extra pixel goes at the end).
    """
    if padding != "same":
        return tuple(padding)  # type: ignore[return-value]
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int,
                     ceil_mode: bool = False) -> int:
    """Number of window positions along one axis (PyTorch/ONNX rule).

    With ceil_mode a last, partial window is kept only if it starts inside the input or its left/top
    padding, never in the right/bottom padding alone.
    """
    span = size + pad_begin + pad_end - (kernel - 1) * dilation - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


@dataclass(frozen=True)
class Window:
    """How a window slides over an image: per axis (height, width), pads as (top, left, bottom, right)."""

    in_hw: Pair
    kernel: Pair
    stride: Pair
    dilation: Pair
    pads: Pads
    out_hw: Pair

    @property
    def offsets(self) -> list[Pair]:
        """The window's taps (i, j) in row-major order: the order in which ties are broken."""
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]


def sliding_window(layer: str, shape: Shape, kernel: Pair, stride: Pair, padding: str | Pads,
                   dilation: Pair = (1, 1), ceil_mode: bool = False) -> Window:
    """The geometry of a window over a (C, H, W) input, or a ShapeError naming the shapes involved."""
    if len(shape) != 3:
        raise ShapeError(f"{layer} takes an input of shape (channels, height, width), got "
                         f"{_fmt(shape)}")
    in_hw = (shape[1], shape[2])
    pads = resolve_padding(padding, in_hw, kernel, stride, dilation)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    padded = (in_hw[0] + pads[0] + pads[2], in_hw[1] + pads[1] + pads[3])
    if span[0] > padded[0] or span[1] > padded[1]:
        dilated = " dilated" if dilation != (1, 1) else ""
        raise ShapeError(f"{layer}:{dilated} kernel {_fmt(span)} is larger than the padded input "
                         f"{_fmt(padded)} (input {_fmt(shape)}, padding {pads} as top, left, bottom, "
                         f"right)")
    out_hw = tuple(conv_output_size(in_hw[a], kernel[a], stride[a], dilation[a], pads[a], pads[a + 2],
                                    ceil_mode) for a in (0, 1))
    return Window(in_hw, kernel, stride, dilation, pads, out_hw)  # type: ignore[arg-type]


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def conv_window(attrs: Mapping[str, Any], shape: Shape) -> Window:
    """The window of a conv2d layer with these attributes over a (C, H, W) input."""
    return sliding_window("conv2d", shape, attrs["kernel"], attrs["stride"], attrs["padding"],
                          attrs["dilation"])


def infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    (shape,) = shapes
    window = conv_window(attrs, shape)
    groups, filters = attrs["groups"], attrs["filters"]
    if shape[0] % groups or filters % groups:
        raise ShapeError(f"conv2d with groups={groups} needs input channels and filters divisible by "
                         f"{groups}; got input {_fmt(shape)} ({shape[0]} channels) and {filters} filters")
    return (filters, *window.out_hw)


def weight_shape(attrs: Mapping[str, Any], shape: Shape) -> Shape:
    """(filters, channels / groups, kernel height, kernel width), as in PyTorch and ONNX."""
    return (attrs["filters"], shape[0] // attrs["groups"], *attrs["kernel"])


def init_params(attrs: Mapping[str, Any], shapes: Sequence[Shape], rng: np.random.Generator,
                dtype: np.dtype) -> dict[str, np.ndarray]:
    filters, per_group, kh, kw = weight_shape(attrs, shapes[0])
    fan_in, fan_out = per_group * kh * kw, filters * kh * kw
    params = {"weight": initial_weights(attrs["init"], (filters, per_group, kh, kw), fan_in, fan_out, rng,
                                        dtype)}
    if attrs["bias"]:
        params["bias"] = np.zeros(filters, dtype=dtype)
    return params


def to_onnx(ctx) -> None:
    """Conv with explicit pads ("same" resolved for the known input size), weight as is."""
    window = conv_window(ctx.attrs, ctx.in_shapes[0])
    inputs = [ctx.inputs[0], ctx.weight("weight")]
    if "bias" in ctx.params:
        inputs.append(ctx.weight("bias"))
    ctx.node("Conv", inputs, kernel_shape=list(window.kernel), strides=list(window.stride),
             pads=list(window.pads), dilations=list(window.dilation), group=ctx.attrs["groups"])


def macs(attrs: Mapping[str, Any], shapes: Sequence[Shape], out: Shape) -> int:
    return math.prod(out) * math.prod(weight_shape(attrs, shapes[0])[1:])


CONV2D = LayerType(
    name="conv2d",
    attrs=(
        Attr("filters", "int", doc="number of output channels", minimum=1),
        Attr("kernel", "pair", doc="kernel size: k or [height, width]", minimum=1),
        Attr("stride", "pair", (1, 1), doc="step between windows: s or [height, width]", minimum=1),
        Attr("padding", "padding", (0, 0, 0, 0),
             doc="zeros added around the input; 'same' keeps ceil(size / stride) (ONNX SAME_UPPER: an odd "
                 "extra pixel goes at the bottom/right)"),
        Attr("dilation", "pair", (1, 1), doc="spacing between kernel taps: d or [height, width]", minimum=1),
        Attr("groups", "int", 1, doc="split channels into groups (groups = channels is depthwise)",
             minimum=1),
        Attr("bias", "bool", True, doc="add a learned bias per filter"),
        Attr("init", "choice", "he", doc="weight initialiser (fan_in = channels / groups x kernel area)",
             choices=INITIALISERS),
    ),
    infer_shape=infer_shape,
    init_params=init_params,
    to_onnx=to_onnx,
    macs=macs,
    doc="2-D convolution (cross-correlation, as in PyTorch and ONNX); weight shape "
        "filters x channels/groups x kernel height x kernel width.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(CONV2D)
