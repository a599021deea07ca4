"""C kernel for dropout: the uniform draws come from setup.rng exactly as in the NumPy backend, so both
backends drop the same values; C turns them into the scaled mask and applies it (csrc/dropout.c)."""

from __future__ import annotations

import math

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.checks import FLOAT32, Operand
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Dropout:
    """mask = (u >= rate) / (1 - rate) with u ~ U[0, 1) from setup.rng; y = x * mask, dx = dy * mask."""

    def __init__(self, setup: OpSetup) -> None:
        checks.require_float32(setup)
        self.lib = load()
        shape = setup.in_shapes[0]
        checks.check_sizes(f"layer '{setup.name}': the input", shape)
        self.rate, self.rng, self.size = float(setup.attrs["rate"]), setup.rng, math.prod(shape)
        self.out = np.empty(shape, FLOAT32)
        self.grad_x = np.empty(shape, FLOAT32)
        self.mask = np.empty(shape, FLOAT32)
        self.addresses = (self.mask.ctypes.data, self.out.ctypes.data, self.grad_x.ctypes.data)
        self.x = Operand(f"layer '{setup.name}': input", shape, avoid=(self.out, self.mask))
        self.grad_out = Operand(f"layer '{setup.name}': output gradient", shape, avoid=(self.grad_x,))
        self.training = False

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        self.training = training
        if not training:
            np.copyto(self.out, x)
            return self.out
        mask, out, _ = self.addresses
        self.rng.random(dtype=FLOAT32, out=self.mask)
        self.lib.dropout_forward(self.size, self.rate, self.x.address(x), mask, out)
        return self.out

    def backward(self, grad_out, params, grads):
        if not self.training:
            return [grad_out]
        mask, _, grad_x = self.addresses
        self.lib.dropout_backward(self.size, mask, self.grad_out.address(grad_out), grad_x)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="dropout", backend="c", make=Dropout))
