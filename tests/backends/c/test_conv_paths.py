"""conv2d on the C backend through each of its code paths (csrc/conv.h): stride-1 "wide rows" with the direct
weight gradient (rows of >= 128 wide pixels) or the GEMM one, the input gradient as a transposed conv (>= 16
input channels per group) or by col2im, strided implicit im2col, and direct 1x1 convs; at batch 1 most of
them also split their filters into blocks; each against the NumPy backend, and bitwise equal for 1 to 4
threads."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.attrs import parse_attrs
from cnnkit.backends.c import library
from cnnkit.plugins import registry
from cnnkit.registry import OpSetup

CASES = {
    "lenet conv1: wide, direct dW, col2im": ((3, 32, 32), dict(filters=6, kernel=5)),
    "lenet conv2: wide, direct dW, col2im": ((6, 14, 14), dict(filters=16, kernel=5)),
    "same pad: wide, direct dW, transposed dx": ((32, 16, 16), dict(filters=20, kernel=3, padding="same")),
    "small image: wide, GEMM dW, transposed dx": ((24, 8, 8), dict(filters=40, kernel=3, padding="same")),
    "groups and dilation, transposed dx": ((32, 20, 23), dict(filters=12, kernel=3, padding=2, dilation=2,
                                                               groups=2)),
    "groups and dilation, col2im": ((8, 20, 23), dict(filters=12, kernel=3, padding=2, dilation=2, groups=2)),
    "no padding, transposed dx": ((16, 12, 13), dict(filters=8, kernel=3)),
    "padding of k - 1": ((16, 7, 7), dict(filters=5, kernel=5, padding=4)),
    "rectangular kernel": ((4, 40, 37), dict(filters=7, kernel=(3, 5), padding=(1, 2))),
    "even kernel, uneven pads": ((20, 9, 11), dict(filters=6, kernel=(2, 4), padding=(1, 1))),
    "stride 2: implicit im2col": ((6, 33, 35), dict(filters=10, kernel=3, stride=2, padding=1)),
    "1x1: direct": ((4, 12, 50), dict(filters=8, kernel=1)),
    "no bias": ((5, 30, 30), dict(filters=9, kernel=4, bias=False)),
    "32 filters per group: compact columns, blocks at batch 1": ((32, 10, 10), dict(filters=64, kernel=3,
                                                                                    padding=1, groups=2)),
}


def bound(backend: str, shape, batch: int, attrs: dict):
    layer = registry().layer("conv2d")
    attrs = parse_attrs(layer.attrs, attrs)
    out = tuple(layer.infer_shape(attrs, [shape]))
    setup = OpSetup(name="conv", attrs=attrs, in_shapes=((batch, *shape),), out_shape=(batch, *out),
                    dtype=np.dtype(np.float32), rng=np.random.default_rng(0))
    return registry().kernel("conv2d", backend).make(setup), attrs, out


def run(op, x, params, grad_out):
    out = op.forward([x], params, {}, True).copy()
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    grad_x = op.backward(grad_out, params, grads)[0].copy()
    return [out, grad_x] + [grads[k] for k in sorted(grads)]


@pytest.mark.parametrize("batch", [1, 11])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_paths_match_numpy_and_do_not_depend_on_threads(lib, case, batch):
    shape, attrs = CASES[case]
    c_op, attrs, out_shape = bound("c", shape, batch, attrs)
    numpy_op, _, _ = bound("numpy", shape, batch, attrs)
    rng = np.random.default_rng(batch)
    kernel = attrs["kernel"] if isinstance(attrs["kernel"], (tuple, list)) else (attrs["kernel"],) * 2
    params = {"weight": rng.standard_normal((attrs["filters"], shape[0] // attrs["groups"], *kernel),
                                            dtype=np.float32)}
    if attrs["bias"]:
        params["bias"] = rng.standard_normal(attrs["filters"], dtype=np.float32)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    grad_out = rng.standard_normal((batch, *out_shape), dtype=np.float32)
    expected = run(numpy_op, x, params, grad_out)
    first = None
    for threads in (1, 2, 3, 4):
        library.set_num_threads(threads)
        got = run(c_op, x, params, grad_out)
        if first is None:
            first = got
            for have, want in zip(got, expected, strict=True):
                np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-3)
        for have, want in zip(got, first, strict=True):
            np.testing.assert_array_equal(have, want)
