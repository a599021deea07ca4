"""C kernels for conv2d: implicit im2col and our SGEMM, one C call per pass (csrc/conv.c)."""

from __future__ import annotations

import ctypes

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.checks import FLOAT32, OneInputBuffers, Operand
from cnnkit.backends.c.library import Conv2dShape, load
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.conv import conv_window
from cnnkit.registry import Kernel, OpSetup


class Conv2d(OneInputBuffers):
    """Owns its output, input gradient and workspace, made once; C fills them on each call."""

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup, input_grad=setup.needs_input_grad)
        self.lib = load()
        n, c, h, w = setup.in_shapes[0]
        attrs = setup.attrs
        window = conv_window(attrs, (c, h, w))
        weight_shape = (attrs["filters"], c // attrs["groups"], *window.kernel)
        cols_shape = (n, c * window.kernel[0] * window.kernel[1], window.out_hw[0] * window.out_hw[1])
        for what, shape in (("the weight", weight_shape), ("the im2col columns", cols_shape)):
            checks.check_sizes(f"layer '{setup.name}': {what}", shape)
        self.shape = Conv2dShape(n, c, h, w, attrs["filters"], attrs["groups"], *window.kernel,
                                 *window.stride, *window.dilation, window.pads[0], window.pads[1],
                                 *window.out_hw)
        floats = ctypes.c_int64()
        self.lib.conv2d_workspace(self.shape, floats)
        self.workspace = np.empty(floats.value, FLOAT32)
        self.workspace_address = self.workspace.ctypes.data
        self.weight = Operand(f"layer '{setup.name}': weight", weight_shape)
        self.bias = Operand(f"layer '{setup.name}': bias", (attrs["filters"],))
        self.grad_weight = Operand(f"layer '{setup.name}': weight gradient", weight_shape, output=True)
        self.grad_bias = Operand(f"layer '{setup.name}': bias gradient", (attrs["filters"],), output=True)
        self.shape_ref = ctypes.byref(self.shape)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        bias = self.bias.address(params["bias"]) if "bias" in params else None
        self.lib.conv2d_forward(self.shape_ref, self.x.address(x), self.weight.address(params["weight"]),
                                bias, self.workspace_address, self.out_address)
        return self.out

    def backward(self, grad_out, params, grads):
        grad_bias = self.grad_bias.address(grads["bias"]) if "bias" in grads else None
        self.lib.conv2d_backward(self.shape_ref, self.grad_out.address(grad_out),
                                 self.weight.address(params["weight"]), self.x.current,
                                 self.workspace_address,
                                 self.grad_weight.address(grads["weight"]), grad_bias,
                                 self.grad_x_address)
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="conv2d", backend="c", make=Conv2d))
