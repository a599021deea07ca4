"""NumPy kernel for dropout: one uniform draw per value and training forward, kept as the scaled mask."""

from __future__ import annotations

import numpy as np

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Dropout:
    """mask = (u >= rate) / (1 - rate) with u ~ U[0, 1) from setup.rng; y = x * mask, dx = dy * mask."""

    def __init__(self, setup: OpSetup) -> None:
        self.rate = setup.attrs["rate"]
        self.rng = setup.rng
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype)
        self.mask = np.empty(setup.in_shapes[0], setup.dtype)
        self.training = False

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        self.training = training
        if not training:
            np.copyto(self.out, x)
            return self.out
        self.rng.random(dtype=self.mask.dtype, out=self.mask)
        np.greater_equal(self.mask, self.rate, out=self.mask)
        self.mask *= 1 / (1 - self.rate)
        np.multiply(x, self.mask, out=self.out)
        return self.out

    def backward(self, grad_out, params, grads):
        if not self.training:
            return [grad_out]
        np.multiply(grad_out, self.mask, out=self.grad_x)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="dropout", backend="numpy", make=Dropout))
