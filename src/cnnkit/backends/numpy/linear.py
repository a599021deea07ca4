"""NumPy kernels for linear: two matmuls forward-and-back, written into buffers owned by the op."""

from __future__ import annotations

import numpy as np

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup


class Linear:
    def __init__(self, setup: OpSetup) -> None:
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype)
        self.x: np.ndarray | None = None

    def forward(self, inputs, params, buffers, training):
        (self.x,) = inputs
        np.matmul(self.x, params["weight"].T, out=self.out)
        if "bias" in params:
            self.out += params["bias"]
        return self.out

    def backward(self, grad_out, params, grads):
        np.matmul(grad_out.T, self.x, out=grads["weight"])
        if "bias" in grads:
            np.sum(grad_out, axis=0, out=grads["bias"])
        np.matmul(grad_out, params["weight"], out=self.grad_x)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="linear", backend="numpy", make=Linear))
