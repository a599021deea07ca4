"""conv2d by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016).

Each 2x2 block of outputs is computed from a 4x4 tile of the padded input (tiles overlap by 2), after
transforming the tile and the 3x3 filter:

    Y = A^T [ (G g G^T) * (B^T d B) ] A            (* elementwise, summed over input channels)

so a block costs 16 multiplications per (filter, channel) instead of 36. Flattening a 4x4 tile row by row
turns each transform into one matrix: vec(B^T d B) = (B^T kron B^T) vec(d), and likewise for G and A^T.
So the layer is three small matrix products around a batched one:

    U = FILTER @ g          (16, F, C)   the filters, transformed once per forward
    V = INPUT @ d           (16, C, P)   the P input tiles
    M = U @ V               (16, F, P)   16 independent (F x C) @ (C x P) products
    Y = OUTPUT @ M          (4, F, P)    the 2x2 output blocks

Backward is the adjoint of each step (transposed matrices, in reverse order), so dW and dX are computed in
the Winograd domain too: dM = OUTPUT^T dY, dU = dM V^T, dg = FILTER^T dU, dV = U^T dM, dd = INPUT^T dV,
and overlapping tiles add their gradients back into the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnkit.backends.numpy.conv import Conv2d
from cnnkit.layers.conv import conv_window
from cnnkit.registry import Op, OpSetup

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)

FILTER = np.kron(G, G)
"""(16, 9): a 3x3 filter, flattened, to its 4x4 transform G g G^T, flattened."""
INPUT = np.kron(BT, BT)
"""(16, 16): a 4x4 input tile to B^T d B."""
OUTPUT = np.kron(AT, AT)
"""(4, 16): a 4x4 product tile to its 2x2 output block A^T m A."""


def fits(attrs: Mapping[str, Any]) -> bool:
    """Whether F(2x2, 3x3) computes this conv2d: 3x3 kernel, stride 1, dilation 1, one group."""
    return (attrs["kernel"] == (3, 3) and attrs["stride"] == (1, 1) and attrs["dilation"] == (1, 1)
            and attrs["groups"] == 1)


def make_conv2d(setup: OpSetup) -> Op:
    """The Winograd op where it applies; any other conv2d runs on cnnkit's reference kernel."""
    return WinogradConv2d(setup) if fits(setup.attrs) else Conv2d(setup)


class WinogradConv2d:
    """One conv2d bound to a batch size; every array is allocated here, once.

    Tiles are numbered p = (image, tile row, tile column); arrays keep the 16 tile positions first, so
    each product above is one matmul over contiguous memory.
    """

    def __init__(self, setup: OpSetup) -> None:
        n, c, h, w = setup.in_shapes[0]
        window = conv_window(setup.attrs, (c, h, w))
        f, dtype = setup.attrs["filters"], setup.dtype
        (ho, wo), (top, left) = window.out_hw, window.pads[:2]
        th, tw = -(-ho // 2), -(-wo // 2)  # tiles down and across: the last block may stick out
        p = n * th * tw
        self.shapes = (n, c, f, th, tw, p)
        self.filter, self.input, self.output = (m.astype(dtype) for m in (FILTER, INPUT, OUTPUT))
        # The input sits inside zeros: the padding, and a last row/column when the output size is odd.
        self.padded = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), dtype)
        self.inside = (slice(None), slice(None), slice(top, top + h), slice(left, left + w))
        self.tile_view = sliding_window_view(self.padded, (4, 4), axis=(2, 3))[:, :, ::2, ::2]
        self.tiles = np.empty((4, 4, c, n, th, tw), dtype)  # d; its gradient in backward
        self.v = np.empty((16, c, p), dtype)
        self.u = np.empty((16, f, c), dtype)
        self.m = np.empty((16, f, p), dtype)  # M; its gradient in backward
        self.blocks = np.empty((2, 2, f, n, th, tw), dtype)  # Y; its gradient in backward
        self.out = np.empty(setup.out_shape, dtype)
        self.whole = (slice(None), slice(None), slice(0, ho), slice(0, wo))
        even = (2 * th, 2 * tw) == (ho, wo)
        self.full = self.out if even else np.empty((n, f, 2 * th, 2 * tw), dtype)
        self.grad_full = None if even else np.zeros((n, f, 2 * th, 2 * tw), dtype)
        self.du = np.empty((16, f, c), dtype)
        self.needs_input_grad = setup.needs_input_grad
        self.dv = np.empty((16, c, p), dtype) if setup.needs_input_grad else None
        self.grad_padded = np.empty_like(self.padded) if setup.needs_input_grad else None
        self.grad_x = np.empty(setup.in_shapes[0], dtype) if setup.needs_input_grad else None

    def forward(self, inputs, params, buffers, training):
        (x,) = inputs
        n, c, f, th, tw, p = self.shapes
        np.copyto(self.padded[self.inside], x)
        np.copyto(self.tiles, self.tile_view.transpose(4, 5, 1, 0, 2, 3))
        np.matmul(self.input, self.tiles.reshape(16, c * p), out=self.v.reshape(16, c * p))
        np.matmul(self.filter, params["weight"].reshape(f * c, 9).T, out=self.u.reshape(16, f * c))
        np.matmul(self.u, self.v, out=self.m)
        np.matmul(self.output, self.m.reshape(16, f * p), out=self.blocks.reshape(4, f * p))
        np.copyto(self.full.reshape(n, f, th, 2, tw, 2), self.blocks.transpose(3, 2, 4, 0, 5, 1))
        if self.full is not self.out:
            np.copyto(self.out, self.full[self.whole])
        if "bias" in params:
            self.out += params["bias"][:, None, None]
        return self.out

    def backward(self, grad_out, params, grads):
        n, c, f, th, tw, p = self.shapes
        grad_full = grad_out
        if self.grad_full is not None:  # the outputs that stick out get zero gradient (set at allocation)
            np.copyto(self.grad_full[self.whole], grad_out)
            grad_full = self.grad_full
        np.copyto(self.blocks, grad_full.reshape(n, f, th, 2, tw, 2).transpose(3, 5, 1, 0, 2, 4))
        dm = self.m
        np.matmul(self.output.T, self.blocks.reshape(4, f * p), out=dm.reshape(16, f * p))
        np.matmul(dm, self.v.transpose(0, 2, 1), out=self.du)
        np.matmul(self.du.reshape(16, f * c).T, self.filter, out=grads["weight"].reshape(f * c, 9))
        if "bias" in grads:
            np.sum(grad_out, axis=(0, 2, 3), out=grads["bias"])
        if not self.needs_input_grad:
            return [None]
        np.matmul(self.u.transpose(0, 2, 1), dm, out=self.dv)
        np.matmul(self.input.T, self.dv.reshape(16, c * p), out=self.tiles.reshape(16, c * p))
        self.add_tiles_back(self.tiles)
        np.copyto(self.grad_x, self.grad_padded[self.inside])
        return [self.grad_x]

    def add_tiles_back(self, grad_tiles: np.ndarray) -> None:
        """grad_padded = the sum of every tile's gradient where the tile was read.

        Tiles step by 2 and are 4 wide, so each tile is four 2x2 quarters, and quarter (a, b) of tile
        (t, s) is block (t + a, s + b) of the padded input: four strided adds cover every overlap.
        """
        n, c, f, th, tw, p = self.shapes
        blocks = self.grad_padded.reshape(n, c, th + 1, 2, tw + 1, 2)
        quarters = grad_tiles.reshape(2, 2, 2, 2, c, n, th, tw)  # (a, row in quarter, b, column, ...)
        self.grad_padded.fill(0)
        for a in (0, 1):
            for b in (0, 1):
                target = blocks[:, :, a:a + th, :, b:b + tw, :]
                np.add(target, quarters[a, :, b, :].transpose(3, 2, 4, 0, 5, 1), out=target)
