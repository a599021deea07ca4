"""C kernels for linear: our SGEMM forward and backward, one C call per pass (csrc/linear.c)."""

from __future__ import annotations

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.checks import FLOAT32, Operand
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Linear:
    """Owns its output and input gradient, made once; C fills them on each call."""

    def __init__(self, setup: OpSetup) -> None:
        checks.require_float32(setup)
        self.lib = load()
        (batch, features), (_, units) = setup.in_shapes[0], setup.out_shape
        self.sizes = (batch, features, units)
        for what, shape in (("the input", (batch, features)), ("the weight", (units, features))):
            checks.check_sizes(f"layer '{setup.name}': {what}", shape)
        self.out = np.empty((batch, units), FLOAT32)
        self.grad_x = np.empty((batch, features), FLOAT32) if setup.needs_input_grad else None
        self.out_address = self.out.ctypes.data
        self.grad_x_address = None if self.grad_x is None else self.grad_x.ctypes.data
        self.x = Operand(f"layer '{setup.name}': input", (batch, features), avoid=(self.out,))
        self.grad_out = Operand(f"layer '{setup.name}': output gradient", (batch, units),
                                avoid=() if self.grad_x is None else (self.grad_x,))
        self.weight = Operand(f"layer '{setup.name}': weight", (units, features))
        self.bias = Operand(f"layer '{setup.name}': bias", (units,))
        self.grad_weight = Operand(f"layer '{setup.name}': weight gradient", (units, features), output=True)
        self.grad_bias = Operand(f"layer '{setup.name}': bias gradient", (units,), output=True)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        bias = self.bias.address(params["bias"]) if "bias" in params else None
        self.lib.linear_forward(*self.sizes, self.x.address(x), self.weight.address(params["weight"]), bias,
                                self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        grad_bias = self.grad_bias.address(grads["bias"]) if "bias" in grads else None
        self.lib.linear_backward(*self.sizes, self.x.current, self.weight.address(params["weight"]),
                                 self.grad_out.address(grad_out), self.grad_weight.address(grads["weight"]),
                                 grad_bias, self.grad_x_address)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="linear", backend="c", make=Linear))
