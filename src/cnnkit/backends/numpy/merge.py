"""NumPy kernels for add and concat."""

from __future__ import annotations

import numpy as np

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Add:
    """y = sum of the inputs; every input's gradient is grad_out itself (the same array, not a copy)."""

    def __init__(self, setup: OpSetup) -> None:
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.arity = len(setup.in_shapes)

    def forward(self, inputs, params, buffers, training):
        np.add(inputs[0], inputs[1], out=self.out)
        for x in inputs[2:]:
            self.out += x
        return self.out

    def backward(self, grad_out, params, grads):
        return [grad_out] * self.arity


class Concat:
    """y = the inputs joined along one axis; each input's gradient is its slice, copied contiguous."""

    def __init__(self, setup: OpSetup) -> None:
        self.axis = setup.attrs["axis"] % len(setup.out_shape)  # the layer checked it is a non-batch axis
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grads = [np.empty(shape, setup.dtype) for shape in setup.in_shapes]
        self.slices = []
        start = 0
        for shape in setup.in_shapes:
            stop = start + shape[self.axis]
            self.slices.append((slice(None),) * self.axis + (slice(start, stop),))
            start = stop

    def forward(self, inputs, params, buffers, training):
        np.concatenate(inputs, axis=self.axis, out=self.out)
        return self.out

    def backward(self, grad_out, params, grads):
        for grad, where in zip(self.grads, self.slices):
            np.copyto(grad, grad_out[where])
        return self.grads


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="add", backend="numpy", make=Add))
    register(Kernel(layer="concat", backend="numpy", make=Concat))
