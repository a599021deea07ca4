"""How far Winograd convolution in float32 lands from the exact result, on vgg_small's 3x3 conv shapes.

Winograd's F(m x m, 3x3) computes an m x m output tile with (m + 2)^2 multiplies instead of 9 m^2: 2.25x
fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3). It is the only way a C backend could do a vgg_small
training step in fewer multiply-adds than the direct method (see bench.py's ceiling); this script measures
what it costs in accuracy. Each shape is run on ReLU'd random inputs with He-scaled weights (as in a
trained network's middle layers), in float32, against a float64 direct convolution:

- max |error|: the largest absolute deviation from float64;
- outside tolerance: how many outputs break the C backend's parity tolerance against the NumPy backend
  (rtol 1e-4, atol 1e-5), which the direct method meets.

    .venv/bin/python benchmarks/winograd_error.py [--batch 8] [--seed 0]

The transforms are Lavin & Gray's (arXiv:1509.09308), with points 0, +-1, +-2 for F(4x4, 3x3).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

# Y = A^T [(G g G^T) * (B^T d B)] A for a tile d of (m + 2) x (m + 2) inputs and a 3x3 filter g.
TRANSFORMS = {
    "F(2x2,3x3)": (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    "F(4x4,3x3)": (
        np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                 np.float64),
    ),
}
SHAPES = {"conv1b": (32, 32, 32), "conv2a": (32, 64, 16), "conv2b": (64, 64, 16), "conv3": (64, 128, 8)}
"""vgg_small's 3x3 convs after the first: (input channels, filters, image size), padding 1."""


def direct(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3x3 convolution with padding 1, as nine shifted products summed (in x's dtype)."""
    _, _, h, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], w.shape[0], h, width), x.dtype)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,kc->nkhw", padded[:, :, i:i + h, j:j + width], w[:, :, i, j])
    return out


def winograd(x: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
    """3x3 convolution with padding 1 by Winograd's F(m x m, 3x3), every step in x's dtype."""
    bt, g, at = (t.astype(x.dtype) for t in TRANSFORMS[name])
    m, size = at.shape[0], bt.shape[0]
    n, c, h, width = x.shape
    tiles_h, tiles_w = -(-h // m), -(-width // m)
    padded = np.zeros((n, c, m * tiles_h + 2, m * tiles_w + 2), x.dtype)
    padded[:, :, 1:h + 1, 1:width + 1] = x
    tiles = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(2, 3))[:, :, ::m, ::m]
    v = np.einsum("ab,ncijbe,fe->afncij", bt, tiles, bt)
    u = np.einsum("ab,kcbe,fe->afkc", g, w, g)
    products = np.einsum("afkc,afncij->afnkij", u, v)
    y = np.einsum("pa,afnkij,qf->nkipjq", at, products, at).reshape(n, w.shape[0], m * tiles_h, m * tiles_w)
    return y[:, :, :h, :width]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="images per shape (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print("| layer | method | max abs error vs float64 | outside rtol 1e-4, atol 1e-5 |")
    print("|---|---|---:|---:|")
    for layer, (channels, filters, size) in SHAPES.items():
        x = np.maximum(rng.standard_normal((args.batch, channels, size, size)), 0.0)
        w = rng.standard_normal((filters, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        exact = direct(x, w)
        x32, w32 = x.astype(np.float32), w.astype(np.float32)
        results = {"direct": direct(x32, w32), **{name: winograd(x32, w32, name) for name in TRANSFORMS}}
        for method, got in results.items():
            error = np.abs(got - exact)
            outside = int(np.count_nonzero(error > 1e-5 + 1e-4 * np.abs(exact)))
            print(f"| {layer} | {method} | {error.max():.1e} | {outside} of {error.size:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
