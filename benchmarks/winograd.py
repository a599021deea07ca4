"""Winograd convolution on vgg_small's 3x3 conv shapes: how far float32 lands from the exact result, and
how long its GEMMs alone take on our SGEMM next to the C backend's whole direct convolution.

Winograd's F(m x m, 3x3) computes an m x m output tile with (m + 2)^2 multiplies instead of 9 m^2: 2.25x
fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3). It is the only way a C backend could do a vgg_small
training step in fewer multiply-adds than the direct method (see bench.py's ceiling); this script measures
what it would cost.

Accuracy (always): each shape on ReLU'd random inputs with He-scaled weights (as in a trained network's
middle layers), in float32, against a float64 direct convolution: the largest absolute deviation, and how
many outputs break the C backend's parity tolerance against the NumPy backend (rtol 1e-4, atol 1e-5),
which the direct method meets.

Time (`--time`, needs the C backend): a training step's Winograd GEMMs per layer at batch 64 (the (m+2)^2
products of the forward pass, of the input gradient and of the weight gradient, each a GEMM of the
transformed tiles) on our SGEMM, against the C backend's conv2d forward and backward for the same layer.
The transforms, which Winograd needs on top, are not timed: the GEMMs alone are a lower bound.

    .venv/bin/python benchmarks/winograd.py [--batch 8] [--seed 0] [--time [--threads 2]]

The transforms are Lavin & Gray's (arXiv:1509.09308), with points 0, +-1, +-2 for F(4x4, 3x3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

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


def accuracy(batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print("| layer | method | max abs error vs float64 | outside rtol 1e-4, atol 1e-5 |")
    print("|---|---|---:|---:|")
    for layer, (channels, filters, size) in SHAPES.items():
        x = np.maximum(rng.standard_normal((batch, channels, size, size)), 0.0)
        w = rng.standard_normal((filters, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        exact = direct(x, w)
        x32, w32 = x.astype(np.float32), w.astype(np.float32)
        results = {"direct": direct(x32, w32), **{name: winograd(x32, w32, name) for name in TRANSFORMS}}
        for method, got in results.items():
            error = np.abs(got - exact)
            outside = int(np.count_nonzero(error > 1e-5 + 1e-4 * np.abs(exact)))
            print(f"| {layer} | {method} | {error.max():.1e} | {outside} of {error.size:,} |")


def median_ms(run: Callable[[], object], repeats: int = 7) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def winograd_gemms(channels: int, filters: int, size: int, name: str, batch: int) -> Callable[[], None]:
    """A training step's GEMMs of F(m x m, 3x3) on one layer: per transformed position, U V (forward),
    U^T dM (input gradient) and dM V^T (weight gradient), over all batch * tiles tiles."""
    from cnnkit.backends.c import gemm

    points, m = TRANSFORMS[name][0].shape[0] ** 2, TRANSFORMS[name][2].shape[0]
    tiles = batch * (-(-size // m)) ** 2
    rng = np.random.default_rng(0)
    u = rng.standard_normal((points, filters, channels), dtype=np.float32)
    v = rng.standard_normal((points, channels, tiles), dtype=np.float32)
    products = np.empty((points, filters, tiles), np.float32)
    grad_v, grad_u = np.empty_like(v), np.empty_like(u)

    def run() -> None:
        for p in range(points):
            gemm(u[p], v[p], products[p])
            gemm(u[p], products[p], grad_v[p], trans_a=True)
            gemm(products[p], v[p], grad_u[p], trans_b=True)

    return run


def direct_conv_step(channels: int, filters: int, size: int, batch: int) -> Callable[[], None]:
    """The C backend's conv2d kernel, forward then backward (weight, bias and input gradients), on one
    layer: bound as inside a network where the layer is not the first."""
    from cnnkit.attrs import parse_attrs
    from cnnkit.plugins import registry
    from cnnkit.registry import OpSetup

    layer = registry().layer("conv2d")
    attrs = parse_attrs(layer.attrs, {"filters": filters, "kernel": 3, "padding": "same"})
    setup = OpSetup(name="conv", attrs=attrs, in_shapes=((batch, channels, size, size),),
                    out_shape=(batch, filters, size, size), dtype=np.dtype(np.float32),
                    rng=np.random.default_rng(0), needs_input_grad=True)
    op = registry().kernel("conv2d", "c").make(setup)
    rng = np.random.default_rng(0)
    params = {"weight": rng.standard_normal((filters, channels, 3, 3), dtype=np.float32),
              "bias": np.zeros(filters, np.float32)}
    grads = {key: np.empty_like(value) for key, value in params.items()}
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    grad_out = rng.standard_normal((batch, filters, size, size), dtype=np.float32)

    def run() -> None:
        op.forward([x], params, {}, True)
        op.backward(grad_out, params, grads)

    return run


def gemm_time(threads: int, batch: int = 64) -> None:
    import cnnkit

    cnnkit.set_num_threads(threads)
    print(f"\nbatch {batch}, {threads} threads, ms (median of 7); Winograd: its GEMMs only")
    methods = " | ".join(f"{name} GEMMs" for name in TRANSFORMS)
    print(f"| layer | direct conv fwd+bwd (C backend) | {methods} |")
    print("|---|---:|" + "---:|" * len(TRANSFORMS))
    totals = [0.0] * (1 + len(TRANSFORMS))
    for layer, (channels, filters, size) in SHAPES.items():
        times = [median_ms(direct_conv_step(channels, filters, size, batch))]
        times += [median_ms(winograd_gemms(channels, filters, size, n, batch)) for n in TRANSFORMS]
        totals = [a + b for a, b in zip(totals, times, strict=True)]
        print(f"| {layer} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
    print("| all four | " + " | ".join(f"{t:.1f}" for t in totals) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="images per shape for the accuracy (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time", action="store_true", help="also time the GEMMs (needs the C backend)")
    parser.add_argument("--threads", type=int, default=2, help="threads for --time (default 2)")
    args = parser.parse_args(argv)
    accuracy(args.batch, args.seed)
    if args.time:
        gemm_time(args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
