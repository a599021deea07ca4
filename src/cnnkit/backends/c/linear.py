"""C kernels for linear: our SGEMM forward and backward, one C call per pass (csrc/linear.c)."""

from __future__ import annotations

from cnnkit.backends.c import checks
from cnnkit.backends.c.checks import OneInputBuffers, Operand
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Linear(OneInputBuffers):
    """Owns its output and input gradient, made once; C fills them on each call."""

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup, input_grad=setup.needs_input_grad)
        self.lib = load()
        (batch, features), (_, units) = setup.in_shapes[0], setup.out_shape
        self.sizes = (batch, features, units)
        checks.check_sizes(f"layer '{setup.name}': the weight", (units, features))
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
