from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.attrs import parse_attrs
from cnnkit.errors import ShapeError
from cnnkit.layers.conv import resolve_padding
from cnnkit.layers.pool import AVG_POOL2D, GLOBAL_AVG_POOL2D, MAX_POOL2D
from tests.layers.harness import (
    TOLERANCE,
    backends,
    check_gradients,
    check_parity,
    distinct_values,
    exact_dtype,
    make_run,
    noncontiguous,
)
from tests.layers.test_conv import formula
from tests.oracles import require_torch

X_SHAPE = (2, 3, 7, 6)
LAYERS = {"max_pool2d": MAX_POOL2D, "avg_pool2d": AVG_POOL2D}

WINDOWS = [
    {"kernel": 2},
    {"kernel": 2, "ceil_mode": True},
    {"kernel": 3, "stride": 2, "padding": 1},
    {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel": [3, 2], "stride": [1, 2], "padding": [1, 0]},
    {"kernel": 3, "stride": 2, "padding": [0, 1, 2, 1], "ceil_mode": True},
    {"kernel": 3, "stride": 2, "padding": "same"},
    {"kernel": 2, "stride": 3},
    {"kernel": [2, 3], "stride": 1, "padding": [1, 2, 0, 1]},
]
CASES = [("max_pool2d", attrs) for attrs in WINDOWS] + [
    ("avg_pool2d", {**attrs, "count_include_pad": include}) for attrs in WINDOWS for include in (False, True)]


def geometry(layer: str, attrs: dict) -> tuple:
    """kernel, stride, (top, left, bottom, right) and ceil_mode of a pooling layer over X_SHAPE."""
    a = parse_attrs(LAYERS[layer].attrs, attrs)
    stride = a["stride"] or a["kernel"]
    return a["kernel"], stride, resolve_padding(a["padding"], X_SHAPE[2:], a["kernel"], stride, (1, 1)), \
        a["ceil_mode"]


def reference(x, layer, kernel, stride, pads, ceil_mode, count_include_pad=False):
    """Max or mean of the input pixels each window covers; with count_include_pad the mean divides by
    the window's positions inside the padded input."""
    n_images, channels, height, width = x.shape
    (kh, kw), (sh, sw), (top, left, bottom, right) = kernel, stride, pads
    out_h = formula(height, kh, sh, 1, top, bottom, ceil_mode)
    out_w = formula(width, kw, sw, 1, left, right, ceil_mode)
    out = np.zeros((n_images, channels, out_h, out_w))
    for n in range(n_images):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    values, padded_positions = [], 0
                    for i in range(kh):
                        for j in range(kw):
                            r, q = oh * sh + i - top, ow * sw + j - left
                            if r < height + bottom and q < width + right:
                                padded_positions += 1
                            if 0 <= r < height and 0 <= q < width:
                                values.append(x[n, c, r, q])
                    if layer == "max_pool2d":
                        out[n, c, oh, ow] = max(values)
                    else:
                        out[n, c, oh, ow] = sum(values) / (padded_positions if count_include_pad
                                                           else len(values))
    return out


def inputs(layer: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return distinct_values(X_SHAPE, rng) if layer == "max_pool2d" else rng.standard_normal(X_SHAPE)


@pytest.mark.parametrize("backend", backends("max_pool2d"))
@pytest.mark.parametrize(("layer", "attrs"), CASES)
def test_forward_matches_loops(backend, layer, attrs):
    dtype = exact_dtype(backend)
    x = inputs(layer, 0)
    run = make_run(layer, attrs, [X_SHAPE], backend, dtype)
    expected = reference(x, layer, *geometry(layer, attrs), attrs.get("count_include_pad", False))
    np.testing.assert_allclose(run.forward([x.astype(dtype)]), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", backends("max_pool2d", np.float64))
@pytest.mark.parametrize(("layer", "attrs"), CASES)
def test_backward_matches_finite_differences(backend, layer, attrs):
    check_gradients(layer, attrs, [inputs(layer, 1)], backend)


def torch_pool(torch, layer, x, attrs, out_hw):
    """PyTorch's pooling; padding it cannot take itself (asymmetric, or over half the kernel) is added
    explicitly, with room for a ceil_mode window, and the mean is then a windowed sum over a count."""
    fn = torch.nn.functional
    kernel, stride, (top, left, bottom, right), ceil_mode = geometry(layer, attrs)
    include_pad = attrs.get("count_include_pad", False)
    if top == bottom <= kernel[0] // 2 and left == right <= kernel[1] // 2:
        if layer == "max_pool2d":
            return fn.max_pool2d(x, kernel, stride, (top, left), ceil_mode=ceil_mode)
        return fn.avg_pool2d(x, kernel, stride, (top, left), ceil_mode, include_pad)
    height, width = X_SHAPE[2:]
    extra_h = max(0, (out_hw[0] - 1) * stride[0] + kernel[0] - (height + top + bottom))
    extra_w = max(0, (out_hw[1] - 1) * stride[1] + kernel[1] - (width + left + right))
    pads = (left, right + extra_w, top, bottom + extra_h)
    if layer == "max_pool2d":
        return fn.max_pool2d(fn.pad(x, pads, value=-np.inf), kernel, stride)
    total = fn.avg_pool2d(fn.pad(x, pads), kernel, stride, divisor_override=1)
    ones = torch.ones((1, 1, height, width), dtype=x.dtype)
    if include_pad:
        inside = fn.pad(fn.pad(ones, (left, right, top, bottom), value=1.0), (0, extra_w, 0, extra_h))
    else:
        inside = fn.pad(ones, pads)
    return total / fn.avg_pool2d(inside, kernel, stride, divisor_override=1)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("max_pool2d", np.float32))
@pytest.mark.parametrize(("layer", "attrs"), CASES)
def test_matches_torch(backend, layer, attrs):
    torch = require_torch()
    x = inputs(layer, 2).astype(np.float32)
    run = make_run(layer, attrs, [X_SHAPE], backend, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_pool(torch, layer, tx, attrs, run.out_shape[2:])
    grad_out = np.random.default_rng(3).standard_normal(run.out_shape).astype(np.float32)
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(run.forward([x]), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run.backward(grad_out)[0], tx.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("max_pool2d", np.float32))
@pytest.mark.parametrize("attrs", [{"kernel": 2}, {"kernel": 3, "stride": 1, "padding": 1},
                                   {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}])
def test_max_pool_ties_go_to_the_first_maximum_like_torch(backend, attrs):
    torch = require_torch()
    x = np.random.default_rng(4).integers(0, 3, X_SHAPE).astype(np.float32)
    x[0] = 1.0
    run = make_run("max_pool2d", attrs, [X_SHAPE], backend, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_pool(torch, "max_pool2d", tx, attrs, run.out_shape[2:])
    grad_out = np.random.default_rng(5).standard_normal(run.out_shape).astype(np.float32)
    ty.backward(torch.tensor(grad_out))
    run.forward([x])
    np.testing.assert_allclose(run.backward(grad_out)[0], tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", backends("global_avg_pool2d"))
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_pool(backend, keepdims):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(6).standard_normal(X_SHAPE).astype(dtype)
    run = make_run("global_avg_pool2d", {"keepdims": keepdims}, [X_SHAPE], backend, dtype)
    expected = np.zeros(X_SHAPE[:2])
    for n in range(X_SHAPE[0]):
        for c in range(X_SHAPE[1]):
            expected[n, c] = sum(x[n, c, r, q] for r in range(X_SHAPE[2]) for q in range(X_SHAPE[3])) / 42
    out = run.forward([x])
    assert out.shape == ((2, 3, 1, 1) if keepdims else (2, 3))
    np.testing.assert_allclose(out.reshape(2, 3), expected, **TOLERANCE[dtype])
    if dtype == np.float64:
        check_gradients("global_avg_pool2d", {"keepdims": keepdims}, [x], backend)


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("global_avg_pool2d", np.float32))
def test_global_avg_pool_matches_torch(backend):
    torch = require_torch()
    x = np.random.default_rng(7).standard_normal(X_SHAPE).astype(np.float32)
    run = make_run("global_avg_pool2d", {"keepdims": True}, [X_SHAPE], backend, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1)
    grad_out = np.random.default_rng(8).standard_normal(run.out_shape).astype(np.float32)
    ty.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(run.forward([x]), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.backward(grad_out)[0], tx.grad.numpy(), rtol=1e-5, atol=1e-6)


PARITY_BACKENDS = backends("max_pool2d", np.float32, exclude=["numpy"])


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize(("layer", "attrs"), CASES)
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_matches_the_numpy_reference(backend, layer, attrs, layout):
    """Odd sizes (3 images of 5x9x7) and, as a view with gaps, a non-contiguous input."""
    rng = np.random.default_rng(12)
    x = (distinct_values((3, 5, 9, 7), rng) if layer == "max_pool2d" else rng.standard_normal((3, 5, 9, 7)))
    x = x.astype(np.float32)
    check_parity(layer, attrs, [noncontiguous(x) if layout == "noncontiguous" else x], backend)


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("layer", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("shape", [(4, 16, 32, 32), (3, 5, 11, 13)])
def test_the_2x2_fast_path_matches_the_numpy_reference(backend, layer, shape):
    """2x2 / 2 without padding, on even sizes and on odd ones (whose last row and column no window reads);
    ties (small integers) go to the first maximum."""
    x = np.random.default_rng(13).integers(0, 4, shape).astype(np.float32)
    check_parity(layer, {"kernel": 2}, [x], backend)


@pytest.mark.parametrize("backend", backends("global_avg_pool2d", np.float32, exclude=["numpy"]))
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_global_avg_pool_matches_the_numpy_reference(backend, keepdims, layout):
    x = np.random.default_rng(14).standard_normal((3, 5, 9, 7)).astype(np.float32)
    check_parity("global_avg_pool2d", {"keepdims": keepdims},
                 [noncontiguous(x) if layout == "noncontiguous" else x], backend)


@settings(max_examples=40, deadline=None)
@given(windows=st.deferred(lambda: windows()), layer=st.sampled_from(["max_pool2d", "avg_pool2d"]),
       include_pad=st.booleans(), batch=st.integers(1, 3))
def test_random_windows_match_the_numpy_reference(windows, layer, include_pad, batch):
    shape, attrs = windows
    if layer == "avg_pool2d":
        attrs = {**attrs, "count_include_pad": include_pad}
    rng = np.random.default_rng(15)
    x = distinct_values((batch, *shape), rng).astype(np.float32)
    for param in PARITY_BACKENDS:
        if not param.marks:
            check_parity(layer, attrs, [x], param.values[0])


@st.composite
def windows(draw):
    """A pooling window over a random input: pads smaller than the kernel, stride maybe omitted."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h, w = draw(st.integers(kh, 20)), draw(st.integers(kw, 20))
    pads = [draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
    attrs = {"kernel": [kh, kw], "padding": pads, "ceil_mode": draw(st.booleans())}
    if draw(st.booleans()):
        attrs["stride"] = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    return (3, h, w), attrs


@settings(max_examples=150, deadline=None)
@given(windows())
def test_infer_shape_matches_formula_and_torch(window):
    shape, attrs = window
    (kh, kw), (sh, sw) = attrs["kernel"], attrs.get("stride", attrs["kernel"])
    top, left, bottom, right = attrs["padding"]
    ceil_mode = attrs["ceil_mode"]
    expected = (3, formula(shape[1], kh, sh, 1, top, bottom, ceil_mode),
                formula(shape[2], kw, sw, 1, left, right, ceil_mode))
    for layer in (MAX_POOL2D, AVG_POOL2D):
        parsed = parse_attrs(layer.attrs, attrs)
        assert layer.infer_shape(parsed, [shape]) == expected
        assert layer.macs(parsed, [shape], expected) == 3 * expected[1] * expected[2] * kh * kw
    if not (top == bottom <= kh // 2 and left == right <= kw // 2):
        return  # padding PyTorch does not take
    try:
        import torch
    except ImportError:
        return
    x = torch.empty((1, *shape), device="meta")
    for fn in (torch.nn.functional.max_pool2d, torch.nn.functional.avg_pool2d):
        assert tuple(fn(x, (kh, kw), (sh, sw), (top, left), ceil_mode=ceil_mode).shape[1:]) == expected


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 5), st.integers(1, 4))
def test_same_padding_keeps_ceil_of_size_over_stride(h, w, kernel, stride):
    attrs = parse_attrs(MAX_POOL2D.attrs, {"kernel": kernel, "stride": stride, "padding": "same",
                                           "ceil_mode": True})
    assert MAX_POOL2D.infer_shape(attrs, [(2, h, w)]) == (2, -(-h // stride), -(-w // stride))


def test_omitted_stride_is_the_kernel():
    attrs = parse_attrs(MAX_POOL2D.attrs, {"kernel": [3, 2]})
    assert attrs["stride"] is None
    assert MAX_POOL2D.infer_shape(attrs, [(4, 9, 8)]) == (4, 3, 4)
    stride = next(a for a in MAX_POOL2D.attrs if a.name == "stride")
    assert stride.parse(None) is None and stride.parse(2) == (2, 2)
    with pytest.raises(ValueError, match="an integer >= 1"):
        stride.parse(0)
    assert {"type": "null"} in stride.json_schema()["anyOf"]


@pytest.mark.parametrize(
    ("layer", "attrs", "shape", "message"),
    [
        (MAX_POOL2D, {"kernel": 2, "padding": 2}, (3, 8, 8),
         "padding (2, 2, 2, 2) (top, left, bottom, right) on input 3x8x8 must be smaller than the kernel "
         "2x2"),
        (AVG_POOL2D, {"kernel": [3, 1], "padding": [0, 1]}, (3, 8, 8), "smaller than the kernel 3x1"),
        (MAX_POOL2D, {"kernel": 5}, (3, 4, 4), "kernel 5x5 is larger than the padded input 4x4"),
        (AVG_POOL2D, {"kernel": 2}, (8, 8), "avg_pool2d takes an input of shape (channels, height, width), "
                                            "got 8x8"),
        (GLOBAL_AVG_POOL2D, {}, (5,), "global_avg_pool2d takes an input of shape (channels, height, width), "
                                      "got 5"),
    ],
)
def test_shape_errors_name_the_shapes(layer, attrs, shape, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer.infer_shape(parse_attrs(layer.attrs, attrs), [shape])


@pytest.mark.parametrize("backend", backends("max_pool2d"))
@pytest.mark.parametrize(("layer", "attrs"), [("max_pool2d", {"kernel": 2}), ("avg_pool2d", {"kernel": 2}),
                                              ("max_pool2d", {"kernel": 3, "stride": 2, "padding": 1}),
                                              ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": 1}),
                                              ("global_avg_pool2d", {})])
def test_first_layer_skips_the_input_gradient(backend, layer, attrs):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(7).standard_normal(X_SHAPE).astype(dtype)
    outs = []
    for needs in (True, False):
        run = make_run(layer, attrs, [x.shape], backend, dtype, needs_input_grad=needs)
        outs.append(run.forward([x]).copy())
        grad_out = np.random.default_rng(8).standard_normal(outs[-1].shape).astype(dtype)
        grad_inputs = run.backward(grad_out)
        assert len(grad_inputs) == 1
        assert (grad_inputs[0] is None) == (not needs)
        assert not needs or grad_inputs[0].shape == x.shape
    np.testing.assert_array_equal(outs[0], outs[1])
