"""swish: y = x * sigmoid(beta * x), a cnnkit layer type that lives in its own package.

beta = 1 is SiLU (torch.nn.SiLU); as beta grows, swish approaches ReLU; beta = 0 gives x / 2. The layer
type says what swish is (its attribute, shape and ONNX rule); the kernel says how the NumPy backend
computes it and its gradient. Both reach cnnkit through the hooks below, found through the entry point
`swish = "cnnkit_swish"` in this package's pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnkit import hookimpl
from cnnkit.attrs import Attr
from cnnkit.registry import Kernel, LayerType, OpSetup, Shape

__version__ = "0.1.0"


def infer_shape(attrs: Mapping[str, Any], shapes: Sequence[Shape]) -> Shape:
    """Elementwise: the output has the input's shape, whatever its rank."""
    (shape,) = shapes
    return shape


def to_onnx(ctx: Any) -> None:
    """x * Sigmoid(x), or x * Sigmoid(beta * x): standard operators that every ONNX runtime has."""
    (x,) = ctx.inputs
    gate_input = x
    if ctx.attrs["beta"] != 1.0:
        gate_input = ctx.temp("scaled")
        ctx.node("Mul", [x, ctx.constant("beta", np.array(ctx.attrs["beta"]))], [gate_input])
    gate = ctx.temp("sigmoid")
    ctx.node("Sigmoid", [gate_input], [gate])
    ctx.node("Mul", [x, gate])


SWISH = LayerType(
    name="swish",
    attrs=(Attr("beta", "float", 1.0, doc="sharpness: x * sigmoid(beta * x); 1 is SiLU", minimum=0),),
    infer_shape=infer_shape,
    to_onnx=to_onnx,
    macs=lambda attrs, shapes, out: 0,
    doc="x * sigmoid(beta * x), elementwise (beta = 1: SiLU).",
)


def sigmoid(z: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) as exp(min(z, 0)) / (1 + exp(-|z|)): no exponent is > 0, so nothing overflows."""
    np.minimum(z, 0, out=out)
    np.exp(out, out=out)
    np.abs(z, out=scratch)
    np.negative(scratch, out=scratch)
    np.exp(scratch, out=scratch)
    scratch += 1
    out /= scratch
    return out


class Swish:
    """y = x s with s = sigmoid(beta x); dy/dx = s + beta x s (1 - s) = s (1 + beta x (1 - s)).

    One op per (network, batch size): every array is allocated here, once; forward keeps x and s for
    backward.
    """

    def __init__(self, setup: OpSetup) -> None:
        self.beta = setup.attrs["beta"]
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.gate = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype)
        self.x: np.ndarray | None = None

    def forward(self, inputs, params, buffers, training):
        (self.x,) = inputs
        np.multiply(self.x, self.beta, out=self.out)  # beta x, held in the output buffer for a moment
        sigmoid(self.out, out=self.gate, scratch=self.grad_x)  # grad_x is free until backward
        np.multiply(self.x, self.gate, out=self.out)
        return self.out

    def backward(self, grad_out, params, grads):
        g = self.grad_x
        np.subtract(1, self.gate, out=g)
        g *= self.x
        g *= self.beta
        g += 1
        g *= self.gate
        g *= grad_out
        return [g]


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(SWISH)


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="swish", backend="numpy", make=Swish))
