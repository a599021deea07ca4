"""NumPy kernel for flatten: a view forward and a view backward, so nothing is copied."""

from __future__ import annotations

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Flatten:
    """Returns views of its input and of the incoming gradient; they live as long as those arrays do."""

    def __init__(self, setup: OpSetup) -> None:
        self.in_shape = setup.in_shapes[0]
        self.out_shape = setup.out_shape

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        return x.reshape(self.out_shape)

    def backward(self, grad_out, params, grads):
        return [grad_out.reshape(self.in_shape)]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="flatten", backend="numpy", make=Flatten))
