"""C kernels for activations: one pass forward and one backward (csrc/activation.c)."""

from __future__ import annotations

import functools
import math

from cnnkit.backends.c.checks import OneInputBuffers
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup

KINDS = {"relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3}
"""Layer type -> enum cnk_activation (csrc/activation.h)."""


class Elementwise(OneInputBuffers):
    """relu, leaky_relu, sigmoid or tanh: output and input gradient made once; C fills them."""

    def __init__(self, setup: OpSetup, layer: str) -> None:
        super().__init__(setup)
        self.lib = load()
        self.kind, self.alpha = KINDS[layer], float(setup.attrs.get("alpha", 0.0))
        self.size = math.prod(setup.in_shapes[0])

    def forward(self, inputs, params, buffers, training):
        self.lib.activation_forward(self.kind, self.alpha, self.size, self.x.address(inputs[0]),
                                    self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        self.lib.activation_backward(self.kind, self.alpha, self.size, self.x.current, self.out_address,
                                     self.grad_out.address(grad_out), self.grad_x_address)
        return [self.grad_x]


class Softmax(OneInputBuffers):
    """Softmax along the layer's axis, as (outer, axis, inner) for C."""

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup)
        self.lib = load()
        shape = setup.out_shape
        axis = setup.attrs["axis"] % len(shape)
        self.sizes = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))

    def forward(self, inputs, params, buffers, training):
        self.lib.softmax_forward(*self.sizes, self.x.address(inputs[0]), self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        self.lib.softmax_backward(*self.sizes, self.out_address, self.grad_out.address(grad_out),
                                  self.grad_x_address)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    for layer in KINDS:
        register(Kernel(layer=layer, backend="c", make=functools.partial(Elementwise, layer=layer)))
    register(Kernel(layer="softmax", backend="c", make=Softmax))
