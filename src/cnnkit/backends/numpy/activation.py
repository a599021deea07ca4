"""NumPy kernels for activations: one elementwise op for relu, leaky_relu, sigmoid and tanh; softmax.

Every kernel writes into buffers it allocated once (out=), so a training step allocates nothing here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


@dataclass(frozen=True)
class Pointwise:
    """y = f(x) and dx = f'(x) * dy, each written into preallocated arrays.

    forward(x, y, scratch) fills y; backward(x, y, dy, dx, scratch) fills dx and may use y = f(x).
    scratch is a spare array of x's shape and dtype.
    """

    forward: Callable[[np.ndarray, np.ndarray, np.ndarray], Any]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]


def _relu_backward(x, y, dy, dx, scratch):
    np.greater(x, 0, out=scratch)
    np.multiply(dy, scratch, out=dx)


RELU = Pointwise(forward=lambda x, y, scratch: np.maximum(x, 0, out=y), backward=_relu_backward)


def leaky_relu(alpha: float) -> Pointwise:
    # max(x, alpha x) picks x for x > 0 when alpha <= 1; for alpha > 1 min() does.
    pick = np.maximum if alpha <= 1 else np.minimum

    def forward(x, y, scratch):
        np.multiply(x, alpha, out=y)
        pick(x, y, out=y)

    def backward(x, y, dy, dx, scratch):
        np.greater(x, 0, out=scratch)
        np.multiply(scratch, 1 - alpha, out=scratch)
        np.add(scratch, alpha, out=scratch)
        np.multiply(dy, scratch, out=dx)

    return Pointwise(forward, backward)


def _sigmoid_forward(x, y, scratch):
    """sigmoid(x) = exp(min(x, 0)) / (1 + exp(-|x|)): both exponents are <= 0, so nothing overflows."""
    np.minimum(x, 0, out=y)
    np.exp(y, out=y)
    np.abs(x, out=scratch)
    np.negative(scratch, out=scratch)
    np.exp(scratch, out=scratch)
    scratch += 1
    y /= scratch


def _sigmoid_backward(x, y, dy, dx, scratch):
    np.subtract(1, y, out=scratch)
    scratch *= y
    np.multiply(dy, scratch, out=dx)


def _tanh_backward(x, y, dy, dx, scratch):
    np.multiply(y, y, out=scratch)
    np.subtract(1, scratch, out=scratch)
    np.multiply(dy, scratch, out=dx)


SIGMOID = Pointwise(_sigmoid_forward, _sigmoid_backward)
TANH = Pointwise(forward=lambda x, y, scratch: np.tanh(x, out=y), backward=_tanh_backward)

POINTWISE: dict[str, Callable[[Mapping[str, Any]], Pointwise]] = {
    "relu": lambda attrs: RELU,
    "leaky_relu": lambda attrs: leaky_relu(attrs["alpha"]),
    "sigmoid": lambda attrs: SIGMOID,
    "tanh": lambda attrs: TANH,
}
"""Layer type -> its pointwise function for the layer's attributes."""


class Elementwise:
    """Any Pointwise function as an op: output, input-gradient and scratch buffers allocated once."""

    def __init__(self, setup: OpSetup, pointwise: Callable[[Mapping[str, Any]], Pointwise]) -> None:
        self.fn = pointwise(setup.attrs)
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype)
        self.scratch = np.empty(setup.in_shapes[0], setup.dtype)
        self.x: np.ndarray | None = None

    def forward(self, inputs, params, buffers, training):
        (self.x,) = inputs
        self.fn.forward(self.x, self.out, self.scratch)
        return self.out

    def backward(self, grad_out, params, grads):
        self.fn.backward(self.x, self.out, grad_out, self.grad_x, self.scratch)
        return [self.grad_x]


class Softmax:
    """y = exp(x - max x) / sum exp(x - max x) along one axis; dx = y * (dy - sum(dy * y))."""

    def __init__(self, setup: OpSetup) -> None:
        shape = setup.out_shape
        self.axis = setup.attrs["axis"] % len(shape)  # the layer checked it is a non-batch axis
        self.out = np.empty(shape, setup.dtype)
        self.grad_x = np.empty(shape, setup.dtype)
        self.reduced = np.empty(shape[:self.axis] + (1,) + shape[self.axis + 1:], setup.dtype)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        np.max(x, axis=self.axis, keepdims=True, out=self.reduced)
        np.subtract(x, self.reduced, out=self.out)
        np.exp(self.out, out=self.out)
        np.sum(self.out, axis=self.axis, keepdims=True, out=self.reduced)
        self.out /= self.reduced
        return self.out

    def backward(self, grad_out, params, grads):
        np.multiply(grad_out, self.out, out=self.grad_x)
        np.sum(self.grad_x, axis=self.axis, keepdims=True, out=self.reduced)
        np.subtract(grad_out, self.reduced, out=self.grad_x)
        self.grad_x *= self.out
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    for layer, pointwise in POINTWISE.items():
        make = functools.partial(Elementwise, pointwise=pointwise)
        register(Kernel(layer=layer, backend="numpy", make=make))
    register(Kernel(layer="softmax", backend="numpy", make=Softmax))
