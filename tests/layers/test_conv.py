from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnkit import build, load_spec
from cnnkit.attrs import parse_attrs
from cnnkit.errors import ShapeError, SpecError
from cnnkit.layers.conv import CONV2D, conv_output_size, resolve_padding
from cnnkit.spec import dump_spec
from tests.layers.harness import (
    TOLERANCE,
    backends,
    check_gradients,
    check_parity,
    exact_dtype,
    make_run,
    noncontiguous,
)
from tests.oracles import require_torch

X_SHAPE = (2, 4, 7, 6)

CASES = [
    {"filters": 3, "kernel": 3},
    {"filters": 2, "kernel": [3, 2], "stride": 2},
    {"filters": 4, "kernel": 3, "padding": [0, 1, 2, 1], "bias": False},
    {"filters": 3, "kernel": 3, "padding": "same", "stride": 2},
    {"filters": 2, "kernel": 2, "padding": "same", "dilation": 2},
    {"filters": 4, "kernel": [2, 3], "dilation": [2, 1], "padding": 1, "groups": 2},
    {"filters": 4, "kernel": 3, "padding": 1, "groups": 4},
    {"filters": 8, "kernel": 3, "stride": [1, 2], "groups": 4, "init": "xavier"},
    {"filters": 5, "kernel": 1},
    {"filters": 3, "kernel": 1, "stride": 2, "padding": [1, 0, 0, 1]},
    {"filters": 2, "kernel": 2, "stride": 2, "padding": [3, 0, 0, 2]},
]


def explicit_pads(attrs: dict, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    parsed = parse_attrs(CONV2D.attrs, attrs)
    return resolve_padding(parsed["padding"], hw, parsed["kernel"], parsed["stride"], parsed["dilation"])


def reference(x, weight, bias, stride, pads, dilation, groups):
    """out[n, f, oh, ow] = b[f] + sum over the channels c of f's group and taps (i, j) of
    w[f, c, i, j] * x[n, c, oh * sh + i * dh - top, ow * sw + j * dw - left], reading zero outside x."""
    n_images, channels, height, width = x.shape
    filters, per_group, kh, kw = weight.shape
    (sh, sw), (dh, dw), (top, left, bottom, right) = stride, dilation, pads
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n_images, filters, out_h, out_w))
    for n in range(n_images):
        for f in range(filters):
            group = f // (filters // groups)
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0.0 if bias is None else bias[f]
                    for c in range(per_group):
                        for i in range(kh):
                            for j in range(kw):
                                r, q = oh * sh + i * dh - top, ow * sw + j * dw - left
                                if 0 <= r < height and 0 <= q < width:
                                    total += weight[f, c, i, j] * x[n, group * per_group + c, r, q]
                    out[n, f, oh, ow] = total
    return out


def run_with_bias(backend, attrs, dtype):
    run = make_run("conv2d", attrs, [X_SHAPE], backend, dtype)
    if "bias" in run.params:
        run.params["bias"][:] = np.linspace(-1, 1, run.params["bias"].size)
    return run


@pytest.mark.parametrize("backend", backends("conv2d"))
@pytest.mark.parametrize("attrs", CASES)
def test_forward_matches_loops(backend, attrs):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(dtype)
    run = run_with_bias(backend, attrs, dtype)
    a = run.attrs
    expected = reference(x.astype(np.float64), run.params["weight"].astype(np.float64),
                         run.params.get("bias"), a["stride"], explicit_pads(attrs, X_SHAPE[2:]),
                         a["dilation"], a["groups"])
    np.testing.assert_allclose(run.forward([x]), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", backends("conv2d", np.float64))
@pytest.mark.parametrize("attrs", CASES)
def test_backward_matches_finite_differences(backend, attrs):
    x = np.random.default_rng(1).standard_normal(X_SHAPE)
    check_gradients("conv2d", attrs, [x], backend)


@pytest.mark.parametrize("backend", backends("conv2d"))
def test_buffers_are_reused_and_backward_can_be_repeated(backend):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(2).standard_normal(X_SHAPE).astype(dtype)
    run = make_run("conv2d", CASES[5], [X_SHAPE], backend, dtype)
    out = run.op.forward([x], run.params, run.buffers, True)
    assert run.op.forward([x], run.params, run.buffers, True) is out
    grad_out = np.ones(out.shape, dtype)
    first = [g.copy() for g in run.op.backward(grad_out, run.params, run.grads)]
    weight_grad = run.grads["weight"].copy()
    second = run.op.backward(grad_out, run.params, run.grads)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(weight_grad, run.grads["weight"])


@pytest.mark.parametrize("backend", backends("conv2d"))
def test_windows_that_only_see_padding_give_the_bias(backend):
    x = np.ones((2, 1, 1, 1), exact_dtype(backend))
    run = make_run("conv2d", {"filters": 2, "kernel": 1, "stride": 5, "padding": 2}, [x.shape], backend,
                   exact_dtype(backend))
    run.params["bias"][:] = [0.5, -1.0]
    np.testing.assert_array_equal(run.forward([x]), [[[[0.5]], [[-1.0]]]] * 2)
    np.testing.assert_array_equal(run.backward(np.ones((2, 2, 1, 1)))[0], np.zeros_like(x))
    np.testing.assert_array_equal(run.grads["weight"], 0.0)


def torch_conv(torch, x, weight, bias, attrs):
    """PyTorch's conv2d on an explicitly padded input (it only pads symmetrically itself)."""
    top, left, bottom, right = explicit_pads(attrs, X_SHAPE[2:])
    a = parse_attrs(CONV2D.attrs, attrs)
    padded = torch.nn.functional.pad(x, (left, right, top, bottom))
    return torch.nn.functional.conv2d(padded, weight, bias, a["stride"], 0, a["dilation"], a["groups"])


@pytest.mark.torch
@pytest.mark.parametrize("backend", backends("conv2d", np.float32))
@pytest.mark.parametrize("attrs", CASES)
def test_matches_torch(backend, attrs):
    torch = require_torch()
    rng = np.random.default_rng(3)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    run = run_with_bias(backend, attrs, np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(run.params["weight"], requires_grad=True)
    tb = torch.tensor(run.params["bias"], requires_grad=True) if "bias" in run.params else None
    ty = torch_conv(torch, tx, tw, tb, attrs)
    grad_out = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(grad_out))
    close = {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(run.forward([x]), ty.detach().numpy(), **close)
    (grad_x,) = run.backward(grad_out)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), **close)
    np.testing.assert_allclose(run.grads["weight"], tw.grad.numpy(), **close)
    if tb is not None:
        np.testing.assert_allclose(run.grads["bias"], tb.grad.numpy(), **close)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("kernel", "dilation"), [(3, 1), (4, 1), ([2, 3], [3, 2])])
def test_same_padding_matches_torch_same(kernel, dilation):
    torch = require_torch()
    x = np.random.default_rng(4).standard_normal(X_SHAPE).astype(np.float32)
    attrs = {"filters": 2, "kernel": kernel, "dilation": dilation, "padding": "same"}
    run = run_with_bias("numpy", attrs, np.float32)
    a = run.attrs
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(run.params["weight"]),
                                          torch.tensor(run.params["bias"]), padding="same",
                                          dilation=a["dilation"])
    np.testing.assert_allclose(run.forward([x]), expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("in_hw", "kernel", "stride", "dilation", "pads"),
    [
        ((5, 5), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # out 3: total 2
        ((6, 6), (3, 3), (2, 2), (1, 1), (0, 0, 1, 1)),  # out 3: total 1, the extra pixel at the end
        ((6, 7), (4, 1), (1, 3), (1, 1), (1, 0, 2, 0)),  # even kernel; stride 3 over 7 needs none
        ((5, 5), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),  # dilated span 5
        ((4, 4), (1, 1), (4, 4), (1, 1), (0, 0, 0, 0)),
    ],
)
def test_same_padding_is_onnx_same_upper(in_hw, kernel, stride, dilation, pads):
    assert resolve_padding("same", in_hw, kernel, stride, dilation) == pads
    assert resolve_padding((1, 2, 3, 4), in_hw, kernel, stride, dilation) == (1, 2, 3, 4)


def formula(size, kernel, stride, dilation, begin, end, ceil_mode=False):
    """PyTorch's documented output size, then its rule that the last window starts before the end pad."""
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding((size + begin + end - dilation * (kernel - 1) - 1) / stride) + 1
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1
    return out


sizes, kernels, strides, dilations, pads = (st.integers(1, 20), st.integers(1, 6), st.integers(1, 4),
                                            st.integers(1, 3), st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(h=sizes, w=sizes, kh=kernels, kw=kernels, sh=strides, sw=strides, dh=dilations, dw=dilations,
       p=st.tuples(pads, pads, pads, pads), ceil_mode=st.booleans())
def test_output_size_formula(h, w, kh, kw, sh, sw, dh, dw, p, ceil_mode):
    assume(h + p[0] + p[2] >= dh * (kh - 1) + 1)
    assert conv_output_size(h, kh, sh, dh, p[0], p[2], ceil_mode) == formula(h, kh, sh, dh, p[0], p[2],
                                                                             ceil_mode)
    for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)):
        begin, _, end, _ = resolve_padding("same", (size, size), (k, k), (s, s), (d, d))
        assert 0 <= end - begin <= 1
        assert conv_output_size(size, k, s, d, begin, end) == -(-size // s)
        if begin + end > 0:  # the least padding that gives that size
            assert conv_output_size(size, k, s, d, 0, begin + end - 1) < -(-size // s)


@settings(max_examples=150, deadline=None)
@given(c=st.integers(1, 3), groups=st.integers(1, 3), f=st.integers(1, 3), h=sizes, w=sizes, kh=kernels,
       kw=kernels, sh=strides, sw=strides, dh=dilations, dw=dilations, p=st.tuples(pads, pads, pads, pads))
def test_infer_shape_matches_formula_and_torch(c, groups, f, h, w, kh, kw, sh, sw, dh, dw, p):
    assume(h + p[0] + p[2] >= dh * (kh - 1) + 1 and w + p[1] + p[3] >= dw * (kw - 1) + 1)
    attrs = parse_attrs(CONV2D.attrs, {"filters": f * groups, "kernel": [kh, kw], "stride": [sh, sw],
                                       "dilation": [dh, dw], "padding": list(p), "groups": groups})
    shape = CONV2D.infer_shape(attrs, [(c * groups, h, w)])
    assert shape == (f * groups, formula(h, kh, sh, dh, p[0], p[2]), formula(w, kw, sw, dw, p[1], p[3]))
    assert CONV2D.macs(attrs, [(c * groups, h, w)], shape) == math.prod(shape) * c * kh * kw
    try:
        import torch
    except ImportError:
        return
    x = torch.empty((1, c * groups, h + p[0] + p[2], w + p[1] + p[3]), device="meta")
    weight = torch.empty((f * groups, c, kh, kw), device="meta")
    y = torch.nn.functional.conv2d(x, weight, stride=(sh, sw), dilation=(dh, dw), groups=groups)
    assert tuple(y.shape[1:]) == shape


@pytest.mark.parametrize(
    ("attrs", "shape", "message"),
    [
        ({"filters": 2, "kernel": 3}, (4, 7), "takes an input of shape (channels, height, width), got 4x7"),
        ({"filters": 4, "kernel": 1, "groups": 4}, (6, 5, 5), "got input 6x5x5 (6 channels) and 4 filters"),
        ({"filters": 6, "kernel": 1, "groups": 4}, (4, 5, 5), "got input 4x5x5 (4 channels) and 6 filters"),
        ({"filters": 2, "kernel": 5}, (3, 4, 4), "kernel 5x5 is larger than the padded input 4x4"),
        ({"filters": 2, "kernel": [3, 2], "padding": [0, 1, 0, 1], "dilation": 3}, (3, 6, 2),
         "dilated kernel 7x4 is larger than the padded input 6x4 (input 3x6x2"),
    ],
)
def test_shape_errors_name_the_shapes(attrs, shape, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CONV2D.infer_shape(parse_attrs(CONV2D.attrs, attrs), [shape])


SPEC = """
name: tiny
input: [3, 9, 8]
layers:
  - {name: conv, type: conv2d, filters: 4, kernel: 3, padding: same}
  - {name: pool, type: max_pool2d, kernel: 2}
  - {name: gap, type: global_avg_pool2d}
"""


def test_spec_round_trips_and_runs():
    spec = load_spec(SPEC)
    assert load_spec(dump_spec(spec)) == spec
    assert spec.layers[1].attrs["stride"] is None
    net = build(spec, dtype=np.float64)
    assert [node.out_shape for node in net.nodes] == [(4, 9, 8), (4, 4, 4), (4,)]
    out = net.forward(np.random.default_rng(5).standard_normal((2, 3, 9, 8)))
    assert out.shape == (2, 4)
    net.backward(np.ones_like(out))
    assert net.grads["conv.weight"].shape == (4, 3, 3, 3) and np.abs(net.grads["conv.weight"]).sum() > 0


def test_shape_error_in_a_spec_names_the_layer():
    with pytest.raises(SpecError, match="layer 'conv': conv2d: kernel 9x9 is larger than the padded input"):
        build(SPEC.replace("kernel: 3, padding: same", "kernel: 9"))


@pytest.mark.parametrize("backend", backends("conv2d"))
@pytest.mark.parametrize("attrs", [{"filters": 4, "kernel": 3, "padding": "same"},
                                   {"filters": 4, "kernel": 1}])
def test_first_layer_skips_the_input_gradient_but_not_the_weight_gradients(backend, attrs):
    dtype = exact_dtype(backend)
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 5)).astype(dtype)
    grad_out = None
    results = []
    for needs in (True, False):
        run = make_run("conv2d", attrs, [x.shape], backend, dtype, needs_input_grad=needs)
        out = run.forward([x])
        grad_out = np.random.default_rng(8).standard_normal(out.shape).astype(dtype) if grad_out is None \
            else grad_out
        grad_inputs = run.backward(grad_out)
        results.append((grad_inputs, {k: v.copy() for k, v in run.grads.items()}))
    assert results[0][0][0] is not None and results[1][0] == [None]
    for key, value in results[0][1].items():
        np.testing.assert_array_equal(value, results[1][1][key])


PARITY_BACKENDS = backends("conv2d", np.float32, exclude=["numpy"])


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("attrs", CASES)
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_matches_the_numpy_reference(backend, attrs, layout):
    """Odd sizes (3 images of 4x9x7) and, as a view with gaps, a non-contiguous input."""
    x = np.random.default_rng(9).standard_normal((3, 4, 9, 7)).astype(np.float32)
    check_parity("conv2d", attrs, [noncontiguous(x) if layout == "noncontiguous" else x], backend)


@pytest.mark.parametrize("backend", PARITY_BACKENDS)
@pytest.mark.parametrize("needs_input_grad", [True, False])
def test_matches_the_numpy_reference_on_a_larger_layer(backend, needs_input_grad):
    """Big enough for several GEMM blocks per image, several image groups, and every thread busy."""
    x = np.random.default_rng(10).standard_normal((10, 24, 17, 19)).astype(np.float32)
    check_parity("conv2d", {"filters": 40, "kernel": 3, "padding": 1}, [x], backend,
                 needs_input_grad=needs_input_grad)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), per_group=st.integers(1, 3), groups=st.integers(1, 3),
       filters_per_group=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kernel=st.tuples(kernels, kernels), stride=st.tuples(strides, strides),
       dilation=st.tuples(dilations, dilations), pads=st.tuples(pads, pads, pads, pads), bias=st.booleans())
def test_random_layers_match_the_numpy_reference(batch, per_group, groups, filters_per_group, h, w,
                                                 kernel, stride, dilation, pads, bias):
    assume(h + pads[0] + pads[2] >= dilation[0] * (kernel[0] - 1) + 1)
    assume(w + pads[1] + pads[3] >= dilation[1] * (kernel[1] - 1) + 1)
    attrs = {"filters": filters_per_group * groups, "kernel": list(kernel), "stride": list(stride),
             "dilation": list(dilation), "padding": list(pads), "groups": groups, "bias": bias}
    x = np.random.default_rng(11).standard_normal((batch, per_group * groups, h, w)).astype(np.float32)
    for param in PARITY_BACKENDS:
        if not param.marks:
            check_parity("conv2d", attrs, [x], param.values[0])
