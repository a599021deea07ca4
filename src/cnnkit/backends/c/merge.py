"""C kernels for add and concat: elementwise sums and block copies (csrc/merge.c)."""

from __future__ import annotations

import ctypes
import math

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.checks import FLOAT32, Operand
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Add:
    """y = sum of the inputs, added pairwise into the output; every input's gradient is grad_out itself."""

    def __init__(self, setup: OpSetup) -> None:
        checks.require_float32(setup)
        self.lib = load()
        checks.check_sizes(f"layer '{setup.name}': the output", setup.out_shape)
        self.size = math.prod(setup.out_shape)
        self.out = np.empty(setup.out_shape, FLOAT32)
        self.out_address = self.out.ctypes.data
        self.inputs = [Operand(f"layer '{setup.name}': input {k}", shape, avoid=(self.out,))
                       for k, shape in enumerate(setup.in_shapes)]

    def forward(self, inputs, params, buffers, training):
        first, second, *rest = (operand.address(x) for operand, x in zip(self.inputs, inputs, strict=True))
        self.lib.add_forward(self.size, first, second, self.out_address)
        for address in rest:
            self.lib.add_forward(self.size, self.out_address, address, self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        return [grad_out] * len(self.inputs)


class Concat:
    """y = the inputs joined along one axis, as (outer, inner) blocks; gradients are copied back out."""

    def __init__(self, setup: OpSetup) -> None:
        checks.require_float32(setup)
        self.lib = load()
        axis = setup.attrs["axis"] % len(setup.out_shape)
        checks.check_sizes(f"layer '{setup.name}': the output", setup.out_shape)
        self.outer = math.prod(setup.out_shape[:axis])
        count = len(setup.in_shapes)
        self.inner = (ctypes.c_int64 * count)(*(math.prod(shape[axis:]) for shape in setup.in_shapes))
        self.out = np.empty(setup.out_shape, FLOAT32)
        self.grads = [np.empty(shape, FLOAT32) for shape in setup.in_shapes]
        self.out_address = self.out.ctypes.data
        self.grad_addresses = (ctypes.c_void_p * count)(*(g.ctypes.data for g in self.grads))
        self.input_addresses = (ctypes.c_void_p * count)()
        self.inputs = [Operand(f"layer '{setup.name}': input {k}", shape, avoid=(self.out,))
                       for k, shape in enumerate(setup.in_shapes)]
        self.grad_out = Operand(f"layer '{setup.name}': output gradient", setup.out_shape, avoid=self.grads)

    def forward(self, inputs, params, buffers, training):
        for k, (operand, x) in enumerate(zip(self.inputs, inputs, strict=True)):
            self.input_addresses[k] = operand.address(x)
        self.lib.concat_forward(self.outer, len(self.inputs), self.inner, self.input_addresses,
                                self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        self.lib.concat_backward(self.outer, len(self.inputs), self.inner, self.grad_out.address(grad_out),
                                 self.grad_addresses)
        return self.grads


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="add", backend="c", make=Add))
    register(Kernel(layer="concat", backend="c", make=Concat))
