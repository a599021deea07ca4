"""C kernel for batch_norm2d: statistics in double per channel, backward recomputes x_hat (csrc/norm.c)."""

from __future__ import annotations

import math

import numpy as np

from cnnkit.backends.c.checks import OneInputBuffers, Operand
from cnnkit.backends.c.library import load
from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class BatchNorm(OneInputBuffers):
    """Owns its output, input gradient and the per-channel mean and 1/std forward used; C fills them."""

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup, input_grad=setup.needs_input_grad)
        self.lib = load()
        n, c, *rest = setup.in_shapes[0]
        self.sizes = (n, c, math.prod(rest))
        self.momentum, self.eps = float(setup.attrs["momentum"]), float(setup.attrs["eps"])
        self.mean, self.inv_std = np.zeros(c), np.ones(c)
        self.addresses = (self.mean.ctypes.data, self.inv_std.ctypes.data, self.out_address,
                          self.grad_x_address)
        name = f"layer '{setup.name}'"
        self.weight, self.bias = Operand(f"{name}: weight", (c,)), Operand(f"{name}: bias", (c,))
        self.running_mean = Operand(f"{name}: running_mean", (c,), output=True)
        self.running_var = Operand(f"{name}: running_var", (c,), output=True)
        self.grad_weight = Operand(f"{name}: weight gradient", (c,), output=True)
        self.grad_bias = Operand(f"{name}: bias gradient", (c,), output=True)
        self.training = False

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        if training and self.sizes[0] * self.sizes[2] < 2:
            raise ShapeError(f"batch_norm2d needs more than one value per channel to train, got input "
                             f"{tuple(x.shape)}; use a batch of at least 2")
        self.training = training
        affine = "weight" in params
        mean, inv_std, out, _ = self.addresses
        self.lib.batch_norm_forward(
            *self.sizes, self.x.address(x), self.weight.address(params["weight"]) if affine else None,
            self.bias.address(params["bias"]) if affine else None,
            self.running_mean.address(buffers["running_mean"]),
            self.running_var.address(buffers["running_var"]),
            self.momentum, self.eps, int(training), mean, inv_std, out)
        return self.out

    def backward(self, grad_out, params, grads):
        affine = "weight" in params
        mean, inv_std, _, grad_x = self.addresses
        self.lib.batch_norm_backward(
            *self.sizes, self.x.current, self.grad_out.address(grad_out),
            self.weight.address(params["weight"]) if affine else None, mean, inv_std, int(self.training),
            self.grad_weight.address(grads["weight"]) if affine else None,
            self.grad_bias.address(grads["bias"]) if affine else None, grad_x)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="batch_norm2d", backend="c", make=BatchNorm))
