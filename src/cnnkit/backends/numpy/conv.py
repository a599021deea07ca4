"""NumPy kernels for conv2d: im2col into per-image columns, then one matmul per image (output is NCHW).

Columns are laid out (N, C*kh*kw, Ho*Wo): for each kernel tap (i, j) the input pixels it reads are
copied as one strided block, so W (F, C*kh*kw) @ cols[n] is image n's output (F, Ho*Wo). Taps that fall
in the zero padding are never written, so padding costs no copy of the input: those column entries are
zeroed once, when the buffer is made. Backward is dW = sum_n g[n] @ cols[n]^T, dcols = W^T @ g, and col2im
adds each tap's block back into the input gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.hookspecs import hookimpl
from cnnkit.layers.conv import Window, conv_window
from cnnkit.registry import Kernel, OpSetup


@dataclass(frozen=True)
class Tap:
    """Kernel tap (i, j): the output positions whose window reads an input pixel (not padding) through it,
    and those input pixels, as (rows, columns) slices of the output and of the input."""

    i: int
    j: int
    out: tuple[slice, slice]
    inp: tuple[slice, slice]


def _axis(size: int, pad: int, offset: int, stride: int, out: int) -> tuple[slice, slice] | None:
    """Output positions o with 0 <= o * stride + offset - pad < size, and the input positions they read."""
    first = max(0, -((offset - pad) // stride))
    stop = min(out, (size - 1 + pad - offset) // stride + 1)
    if stop <= first:
        return None
    start = first * stride + offset - pad
    return slice(first, stop), slice(start, start + (stop - first - 1) * stride + 1, stride)


def taps(window: Window) -> list[Tap]:
    """The taps of `window` that read the input somewhere, in row-major order (padding-only taps left out)."""
    found = []
    for i, j in window.offsets:
        rows = _axis(window.in_hw[0], window.pads[0], i * window.dilation[0], window.stride[0],
                     window.out_hw[0])
        cols = _axis(window.in_hw[1], window.pads[1], j * window.dilation[1], window.stride[1],
                     window.out_hw[1])
        if rows is not None and cols is not None:
            found.append(Tap(i, j, (rows[0], cols[0]), (rows[1], cols[1])))
    return found


class Conv2d:
    def __init__(self, setup: OpSetup) -> None:
        n, c, h, w = setup.in_shapes[0]
        attrs, dtype = setup.attrs, setup.dtype
        window = conv_window(attrs, (c, h, w))
        filters, groups = attrs["filters"], attrs["groups"]
        (kh, kw), (ho, wo) = window.kernel, window.out_hw
        # Shapes of the views: weight (G, F/G, C/G*kh*kw); columns (N, G, C/G*kh*kw, Ho*Wo) and, by
        # tap, (N, C, kh, kw, Ho, Wo); output and its gradient (N, G, F/G, Ho*Wo).
        self.group_shape = (groups, filters // groups, c // groups * kh * kw)
        self.cols_shape = (n, groups, c // groups * kh * kw, ho * wo)
        self.tap_view = (n, c, kh, kw, ho, wo)
        self.grouped = (n, groups, filters // groups, ho * wo)
        self.taps = taps(window)
        # col2im starts from a tap that reads every input pixel (the centre of a "same" 3x3), if any,
        # copying it instead of zeroing the gradient and adding.
        self.whole_input = (slice(0, h, 1), slice(0, w, 1))
        self.col2im_order = sorted(self.taps, key=lambda tap: tap.inp != self.whole_input)
        # A 1x1, stride-1, unpadded conv reads x itself as its columns.
        self.direct = (kh, kw) == (1, 1) and window.stride == (1, 1) and window.pads == (0, 0, 0, 0)
        self.needs_input_grad = setup.needs_input_grad
        self.cols = None if self.direct else np.zeros(self.cols_shape, dtype)
        with_grad_cols = setup.needs_input_grad and not self.direct
        self.grad_cols = np.empty(self.cols_shape, dtype) if with_grad_cols else None
        self.cols_in_use: np.ndarray | None = None
        self.out = np.empty(setup.out_shape, dtype)
        self.grad_x = np.empty(setup.in_shapes[0], dtype) if setup.needs_input_grad else None
        self.dw_per_image = np.empty((n, *self.group_shape), dtype)

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        cols = self.im2col(x)
        self.cols_in_use = cols
        weight = params["weight"].reshape(self.group_shape)
        np.matmul(weight, cols, out=self.out.reshape(self.grouped))
        if "bias" in params:
            np.add(self.out, params["bias"][:, None, None], out=self.out)
        return self.out

    def im2col(self, x: np.ndarray) -> np.ndarray:
        """(N, G, C/G*kh*kw, Ho*Wo) columns of x: x itself for a direct conv, else the filled buffer."""
        if self.direct:
            return x.reshape(self.cols_shape)
        blocks = self.cols.reshape(self.tap_view)
        for tap in self.taps:
            np.copyto(blocks[:, :, tap.i, tap.j, tap.out[0], tap.out[1]], x[:, :, tap.inp[0], tap.inp[1]])
        return self.cols

    def backward(self, grad_out, params, grads):
        cols = self.cols_in_use
        g = grad_out.reshape(self.grouped)
        np.matmul(g, cols.transpose(0, 1, 3, 2), out=self.dw_per_image)
        np.sum(self.dw_per_image, axis=0, out=grads["weight"].reshape(self.group_shape))
        if "bias" in grads:
            np.sum(grad_out, axis=(0, 2, 3), out=grads["bias"])
        if not self.needs_input_grad:
            return [None]
        weight_t = params["weight"].reshape(self.group_shape).transpose(0, 2, 1)
        if self.direct:
            np.matmul(weight_t, g, out=self.grad_x.reshape(self.cols_shape))
            return [self.grad_x]
        np.matmul(weight_t, g, out=self.grad_cols)
        self.col2im(self.grad_cols)
        return [self.grad_x]

    def col2im(self, grad_cols: np.ndarray) -> None:
        """grad_x = the sum, over taps, of each tap's column block added back where it was read."""
        blocks = grad_cols.reshape(self.tap_view)
        order = self.col2im_order
        if order and order[0].inp == self.whole_input:
            first, order = order[0], order[1:]
            np.copyto(self.grad_x, blocks[:, :, first.i, first.j, first.out[0], first.out[1]])
        else:
            self.grad_x.fill(0)
        for tap in order:
            dst = self.grad_x[:, :, tap.inp[0], tap.inp[1]]
            np.add(dst, blocks[:, :, tap.i, tap.j, tap.out[0], tap.out[1]], out=dst)


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="conv2d", backend="numpy", make=Conv2d))
