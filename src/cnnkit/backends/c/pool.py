"""C kernels for pooling: one pass over the input per call, a fast path for 2x2 / 2 (csrc/pool.c)."""

from __future__ import annotations

import ctypes

from cnnkit.backends.c.checks import OneInputBuffers
from cnnkit.backends.c.library import Pool2dShape, load
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.pool import pool_window
from cnnkit.registry import Kernel, OpSetup


class Pool2d(OneInputBuffers):
    """What max and average pooling share: the window passed to C, the output and input gradient (none for
    the network's input: backward then returns [None] and computes nothing)."""

    layer = ""

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup, input_grad=setup.needs_input_grad)
        self.lib = load()
        n, c, h, w = setup.in_shapes[0]
        window = pool_window(self.layer, setup.attrs, (c, h, w))
        self.shape = Pool2dShape(n, c, h, w, *window.kernel, *window.stride, *window.pads, *window.out_hw,
                                 int(bool(setup.attrs.get("count_include_pad", False))))
        self.shape_ref = ctypes.byref(self.shape)


class MaxPool2d(Pool2d):
    layer = "max_pool2d"

    def forward(self, inputs, params, buffers, training):
        self.lib.max_pool2d_forward(self.shape_ref, self.x.address(inputs[0]), self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        if self.grad_x is None:
            return [None]
        self.lib.max_pool2d_backward(self.shape_ref, self.x.current, self.grad_out.address(grad_out),
                                     self.grad_x_address)
        return [self.grad_x]


class AvgPool2d(Pool2d):
    layer = "avg_pool2d"

    def forward(self, inputs, params, buffers, training):
        self.lib.avg_pool2d_forward(self.shape_ref, self.x.address(inputs[0]), self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        if self.grad_x is None:
            return [None]
        self.lib.avg_pool2d_backward(self.shape_ref, self.grad_out.address(grad_out), self.grad_x_address)
        return [self.grad_x]


class GlobalAvgPool2d(OneInputBuffers):
    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup, input_grad=setup.needs_input_grad)
        self.lib = load()
        n, c, h, w = setup.in_shapes[0]
        self.sizes = (n * c, h * w)

    def forward(self, inputs, params, buffers, training):
        self.lib.global_avg_pool2d_forward(*self.sizes, self.x.address(inputs[0]), self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        if self.grad_x is None:
            return [None]
        self.lib.global_avg_pool2d_backward(*self.sizes, self.grad_out.address(grad_out), self.grad_x_address)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    for layer, make in (("max_pool2d", MaxPool2d), ("avg_pool2d", AvgPool2d),
                        ("global_avg_pool2d", GlobalAvgPool2d)):
        register(Kernel(layer=layer, backend="c", make=make))
