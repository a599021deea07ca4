"""NumPy kernels for pooling: one strided block per window tap, combined with maximum or add.

The taps are conv2d's (cnnkit.backends.numpy.conv.taps): tap (i, j) reads, for every output position
whose window puts it inside the input, one input pixel, so a whole tap is one strided view. Padding
is never materialised. When windows do not overlap (stride >= kernel, e.g. 2x2 / 2), each input pixel
is read by at most one tap and the backward pass writes instead of accumulating.
"""

from __future__ import annotations

import numpy as np

from cnnkit.backends.numpy.conv import Tap, taps
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.conv import Window
from cnnkit.layers.pool import pool_window
from cnnkit.registry import Kernel, OpSetup


class Pool2d:
    """What max and average pooling share: the taps, and how their blocks cover the input."""

    layer = ""

    def __init__(self, setup: OpSetup) -> None:
        n, c, h, w = setup.in_shapes[0]
        self.window = pool_window(self.layer, setup.attrs, (c, h, w))
        self.taps = taps(self.window)
        self.out = np.empty(setup.out_shape, setup.dtype)
        # The network's input needs no gradient: backward then returns [None] and computes nothing.
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype) if setup.needs_input_grad else None
        every_output = (slice(0, self.window.out_hw[0]), slice(0, self.window.out_hw[1]))
        # The first tap reaches every output unless the top/left padding hides it from some.
        self.first_fills = self.taps[0].out == every_output
        self.disjoint = all(s >= k for s, k in zip(self.window.stride, self.window.kernel))
        read = np.zeros((h, w), bool)
        for tap in self.taps:
            read[tap.inp] = True
        # Accumulating needs a zeroed gradient; so do pixels that no window reads.
        self.zero_grad = not (self.disjoint and read.all())
        self.x: np.ndarray | None = None

    @staticmethod
    def block(array: np.ndarray, where: tuple[slice, slice]) -> np.ndarray:
        return array[:, :, where[0], where[1]]


class MaxPool2d(Pool2d):
    layer = "max_pool2d"

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup)
        self.hit = np.empty(setup.out_shape, bool)
        self.free = np.empty(setup.out_shape, bool)
        self.routed = np.empty(setup.out_shape, setup.dtype)

    def forward(self, inputs, params, buffers, training):
        (self.x,) = inputs
        first, *rest = self.taps
        if self.first_fills:
            np.copyto(self.out, self.block(self.x, first.inp))
        else:
            self.out.fill(-np.inf)
            rest.insert(0, first)
        for tap in rest:
            out = self.block(self.out, tap.out)
            np.maximum(out, self.block(self.x, tap.inp), out=out)
        return self.out

    def backward(self, grad_out, params, grads):
        """Each window's gradient goes to its first maximal element, taps taken in row-major order.

        `free` marks the windows whose maximum has not been met yet; a tap's `hit` is where it reads the
        maximum of a still-free window.
        """
        if self.grad_x is None:
            return [None]
        if self.zero_grad:
            self.grad_x.fill(0)
        self.free.fill(True)
        for k, tap in enumerate(self.taps):
            hit, free = self.block(self.hit, tap.out), self.block(self.free, tap.out)
            np.equal(self.block(self.x, tap.inp), self.block(self.out, tap.out), out=hit)
            if k:
                np.logical_and(hit, free, out=hit)
            if k < len(self.taps) - 1:
                np.logical_xor(free, hit, out=free)
            grad_x = self.block(self.grad_x, tap.inp)
            if self.disjoint:
                np.multiply(hit, self.block(grad_out, tap.out), out=grad_x)
            else:
                routed = self.block(self.routed, tap.out)
                np.multiply(hit, self.block(grad_out, tap.out), out=routed)
                np.add(grad_x, routed, out=grad_x)
        return [self.grad_x]


class AvgPool2d(Pool2d):
    layer = "avg_pool2d"

    def __init__(self, setup: OpSetup) -> None:
        super().__init__(setup)
        counts = window_counts(self.window, self.taps, setup.attrs["count_include_pad"])
        self.scale = (1.0 / counts).astype(setup.dtype)
        self.scaled_grad = np.empty(setup.out_shape, setup.dtype)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        first, *rest = self.taps
        if self.first_fills:
            np.copyto(self.out, self.block(x, first.inp))
        else:
            self.out.fill(0)
            rest.insert(0, first)
        for tap in rest:
            out = self.block(self.out, tap.out)
            np.add(out, self.block(x, tap.inp), out=out)
        np.multiply(self.out, self.scale, out=self.out)
        return self.out

    def backward(self, grad_out, params, grads):
        if self.grad_x is None:
            return [None]
        np.multiply(grad_out, self.scale, out=self.scaled_grad)
        if self.zero_grad:
            self.grad_x.fill(0)
        for tap in self.taps:
            grad_x, grad = self.block(self.grad_x, tap.inp), self.block(self.scaled_grad, tap.out)
            if self.disjoint:
                np.copyto(grad_x, grad)
            else:
                np.add(grad_x, grad, out=grad_x)
        return [self.grad_x]


def window_counts(window: Window, window_taps: list[Tap], include_pad: bool) -> np.ndarray:
    """(Ho, Wo): how many positions of each window count for its mean.

    Without padding counted, the input pixels the window reads; with it, the window's positions inside
    the padded input (a ceil_mode window's overhang past the bottom/right padding is never counted).
    """
    if not include_pad:
        counts = np.zeros(window.out_hw)
        for tap in window_taps:
            counts[tap.out] += 1
        return counts
    per_axis = []
    for axis in (0, 1):
        size = window.in_hw[axis] + window.pads[axis] + window.pads[axis + 2]
        starts = np.arange(window.out_hw[axis]) * window.stride[axis]
        per_axis.append(np.minimum(starts + window.kernel[axis], size) - starts)
    return np.outer(*per_axis).astype(float)


class GlobalAvgPool2d:
    def __init__(self, setup: OpSetup) -> None:
        n, c, h, w = setup.in_shapes[0]
        self.out = np.empty(setup.out_shape, setup.dtype)
        self.grad_x = np.empty(setup.in_shapes[0], setup.dtype) if setup.needs_input_grad else None
        self.flat = (n, c, h * w)
        self.scale = 1.0 / (h * w)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        np.mean(x.reshape(self.flat), axis=2, out=self.out.reshape(self.flat[:2]))
        return self.out

    def backward(self, grad_out, params, grads):
        if self.grad_x is None:
            return [None]
        grad = grad_out.reshape(*self.flat[:2], 1)
        np.multiply(grad, self.scale, out=self.grad_x.reshape(self.flat))
        return [self.grad_x]


@hookimpl
def cnnkit_register_kernels(register) -> None:
    for layer, make in (("max_pool2d", MaxPool2d), ("avg_pool2d", AvgPool2d),
                        ("global_avg_pool2d", GlobalAvgPool2d)):
        register(Kernel(layer=layer, backend="numpy", make=make))
