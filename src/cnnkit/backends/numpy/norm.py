"""NumPy kernel for batch_norm2d, on the input viewed as (N, C, M) with M = H*W (1 for features).

Statistics are summed in float64 and the variance is taken about the mean (two passes), so float32
inputs with a large mean keep their accuracy; x - mean is needed for x_hat anyway.
"""

from __future__ import annotations

import math

import numpy as np

from cnnkit.errors import ShapeError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel, OpSetup

REDUCE = (0, 2)
"""The axes of the (N, C, M) view that statistics run over: every axis but the channels."""


class BatchNorm:
    """y = x_hat * weight + bias with x_hat = (x - mean) / sqrt(var + eps) per channel.

    Training uses the batch's mean and biased variance and updates the running statistics in `buffers`;
    eval uses the running statistics, which makes the layer a fixed per-channel affine map.
    """

    def __init__(self, setup: OpSetup) -> None:
        n, c, *rest = setup.in_shapes[0]
        self.view = (n, c, math.prod(rest))
        self.count = n * self.view[2]
        self.momentum = setup.attrs["momentum"]
        self.eps = setup.attrs["eps"]
        self.dtype = setup.dtype
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype)
        self.x_hat = np.empty(self.view, setup.dtype)
        self.inv_std = np.ones(c)
        self.training = False

    def per_channel(self, values: np.ndarray) -> np.ndarray:
        """(C,) values in this op's dtype, shaped to broadcast over the (N, C, M) view."""
        return values.astype(self.dtype, copy=False).reshape(1, -1, 1)

    def channel_sums(self, values: np.ndarray) -> np.ndarray:
        return np.sum(values, axis=REDUCE, dtype=np.float64)

    def forward(self, inputs, params, buffers, training):
        x = inputs[0].reshape(self.view)
        self.training = training
        out = self.out.reshape(self.view)
        if training:
            if self.count < 2:
                raise ShapeError(f"batch_norm2d needs more than one value per channel to train, got input "
                                 f"{tuple(inputs[0].shape)}; use a batch of at least 2")
            mean = self.channel_sums(x) / self.count
            np.subtract(x, self.per_channel(mean), out=self.x_hat)
            np.square(self.x_hat, out=out)
            var = self.channel_sums(out) / self.count
            self.update_running(buffers, mean, var)
        else:
            var = buffers["running_var"].astype(np.float64)
            np.subtract(x, self.per_channel(buffers["running_mean"]), out=self.x_hat)
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat *= self.per_channel(self.inv_std)
        if "weight" in params:
            np.multiply(self.x_hat, self.per_channel(params["weight"]), out=out)
            out += self.per_channel(params["bias"])
        else:
            np.copyto(out, self.x_hat)
        return self.out

    def update_running(self, buffers, mean: np.ndarray, var: np.ndarray) -> None:
        m = self.momentum
        unbiased = var * (self.count / (self.count - 1))
        for key, batch_value in (("running_mean", mean), ("running_var", unbiased)):
            running = buffers[key]
            running[:] = (1 - m) * running.astype(np.float64) + m * batch_value

    def backward(self, grad_out, params, grads):
        g = grad_out.reshape(self.view)
        grad_x = self.grad_x.reshape(self.view)
        sum_g = self.channel_sums(g)
        np.multiply(g, self.x_hat, out=grad_x)
        sum_g_x_hat = self.channel_sums(grad_x)
        if "weight" in grads:
            grads["weight"][:] = sum_g_x_hat
            grads["bias"][:] = sum_g
        scale = self.inv_std * params["weight"] if "weight" in params else self.inv_std
        if self.training:
            # dx = weight * inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), means per channel
            np.multiply(self.x_hat, self.per_channel(sum_g_x_hat / self.count), out=grad_x)
            np.subtract(g, grad_x, out=grad_x)
            grad_x -= self.per_channel(sum_g / self.count)
            grad_x *= self.per_channel(scale)
        else:
            np.multiply(g, self.per_channel(scale), out=grad_x)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="batch_norm2d", backend="numpy", make=BatchNorm))
