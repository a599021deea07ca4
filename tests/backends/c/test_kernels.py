"""The C kernels beyond conv and linear (pooling, activations, batch norm, add, concat, dropout): the same
bits for 1 to 4 threads, and bad arguments refused with BackendError before or inside C."""

from __future__ import annotations

import ctypes
from functools import partial

import numpy as np
import pytest

from cnnkit.backends.c.library import Pool2dShape
from cnnkit.errors import BackendError
from cnnkit.plugins import registry
from tests.backends.c.conftest import (
    assert_python_threads_get_the_serial_results,
    assert_same_bits_for_thread_counts,
)
from tests.backends.c.test_network import setup
from tests.layers.harness import make_run

BIG = (6, 10, 37, 35)
"""Several chunks of every kernel, with odd sizes."""
CASES = [
    ("max_pool2d", {"kernel": 2}, [BIG]),
    ("max_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [BIG]),
    ("avg_pool2d", {"kernel": 2}, [BIG]),
    ("avg_pool2d", {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True}, [BIG]),
    ("global_avg_pool2d", {}, [BIG]),
    ("relu", {}, [BIG]),
    ("leaky_relu", {"alpha": 0.2}, [BIG]),
    ("sigmoid", {}, [BIG]),
    ("tanh", {}, [BIG]),
    ("softmax", {}, [BIG]),
    ("softmax", {"axis": -1}, [(300, 70)]),
    ("batch_norm2d", {}, [BIG]),
    ("batch_norm2d", {"affine": False}, [(301, 17)]),
    ("add", {}, [BIG] * 3),
    ("concat", {}, [BIG, (6, 3, 37, 35)]),
    ("dropout", {"rate": 0.3}, [BIG]),
]
IDS = [f"{layer}-{attrs}" for layer, attrs, _ in CASES]


def results(layer: str, attrs: dict, shapes: list) -> list[np.ndarray]:
    """Forward, input and parameter gradients and buffers after two training steps of a fresh run."""
    rng = np.random.default_rng(0)
    run = make_run(layer, attrs, shapes, "c", np.float32)
    out = []
    for _ in range(2):
        xs = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
        out.append(run.forward(xs, training=True))
        grad_out = rng.standard_normal(run.out_shape).astype(np.float32)
        out += [g for g in run.backward(grad_out) if g is not None]
    return out + [g.copy() for g in run.grads.values()] + [b.copy() for b in run.buffers.values()]


@pytest.mark.parametrize("layer,attrs,shapes", CASES, ids=IDS)
def test_results_are_bitwise_equal_for_1_to_4_threads(lib, layer, attrs, shapes):
    assert_same_bits_for_thread_counts(partial(results, layer, attrs, shapes), (1, 2, 3, 4))


def pool_shape(**changes: int) -> Pool2dShape:
    values = {"batch": 2, "channels": 3, "height": 7, "width": 7, "kernel_h": 2, "kernel_w": 2, "stride_h": 2,
              "stride_w": 2, "pad_top": 0, "pad_left": 0, "pad_bottom": 0, "pad_right": 0, "out_h": 3,
              "out_w": 3, "count_include_pad": 0}
    return Pool2dShape(**{**values, **changes})


BUFFER = np.zeros(4096, np.float32)
P = BUFFER.ctypes.data
BAD_C_CALLS = {
    "pool: pad as large as the kernel": lambda lib: lib.max_pool2d_forward(pool_shape(pad_top=2), P, P),
    "pool: a window past the input": lambda lib: lib.avg_pool2d_forward(pool_shape(out_h=5), P, P),
    "pool: zero channels": lambda lib: lib.max_pool2d_backward(pool_shape(channels=0), P, P, P),
    "pool: null output": lambda lib: lib.avg_pool2d_backward(pool_shape(), P, None),
    "pool: over 2**31 values": lambda lib: lib.max_pool2d_forward(pool_shape(batch=2**16, channels=2**16),
                                                                  P, P),
    "global pool: zero size": lambda lib: lib.global_avg_pool2d_forward(4, 0, P, P),
    "activation: unknown kind": lambda lib: lib.activation_forward(7, 0.0, 16, P, P),
    "activation: negative size": lambda lib: lib.activation_backward(0, 0.0, -1, P, P, P, P),
    "softmax: over 2**31 values": lambda lib: lib.softmax_forward(2**20, 2**10, 2**2, P, P),
    "batch norm: eps 0": lambda lib: lib.batch_norm_forward(2, 3, 4, P, None, None, P, P, 0.1, 0.0, 1, P, P,
                                                            P),
    "batch norm: weight without bias": lambda lib: lib.batch_norm_forward(2, 3, 4, P, P, None, P, P, 0.1,
                                                                          1e-5, 1, P, P, P),
    "batch norm: one value per channel": lambda lib: lib.batch_norm_forward(1, 3, 1, P, None, None, P, P, 0.1,
                                                                            1e-5, 1, P, P, P),
    "add: output is b": lambda lib: lib.add_forward(16, P, P, P),
    "concat: a zero-sized input": lambda lib: lib.concat_forward(2, 2, (ctypes.c_int64 * 2)(3, 0),
                                                                 (ctypes.c_void_p * 2)(P, P), P),
    "dropout: rate 1": lambda lib: lib.dropout_forward(16, 1.0, P, P, P),
}


@pytest.mark.parametrize("case", BAD_C_CALLS, ids=list(BAD_C_CALLS))
def test_c_refuses_what_python_should_have_caught(lib, case):
    with pytest.raises(BackendError, match="failed: "):
        BAD_C_CALLS[case](lib)


def test_ops_refuse_float64_and_sizes_over_2_31_when_made(lib):
    for layer, attrs in (("max_pool2d", {"kernel": 2}), ("relu", {}), ("batch_norm2d", {}), ("dropout", {}),
                         ("global_avg_pool2d", {}), ("softmax", {})):
        kernel = registry().kernel(layer, "c")
        with pytest.raises(BackendError, match="computes in float32 only"):
            kernel.make(setup(layer, attrs, (2, 3, 4, 4), (2, 3, 2, 2) if "pool" in layer else (2, 3, 4, 4),
                              np.float64))
        with pytest.raises(BackendError, match="fewer than 2\\*\\*31"):
            kernel.make(setup(layer, attrs, (2**12, 2**10, 2**5, 2**5),
                              (2**12, 2**10, 2**4, 2**4) if "pool" in layer else (2**12, 2**10, 2**5, 2**5)))


def test_bad_arrays_passed_to_ops_raise_backend_error(lib):
    x = np.ones((2, 3, 4, 4), np.float32)
    pool = make_run("max_pool2d", {"kernel": 2}, [x.shape], "c", np.float32)
    with pytest.raises(BackendError, match="input must be an array of shape \\(2, 3, 4, 4\\), got "
                                           "\\(3, 4, 4\\)"):
        pool.op.forward([x[0]], {}, {}, True)
    with pytest.raises(BackendError, match="must hold real numbers"):
        pool.op.forward([x.astype(complex)], {}, {}, True)
    pool.op.forward([x], {}, {}, True)
    with pytest.raises(BackendError, match="output gradient must be an array of shape \\(2, 3, 2, 2\\)"):
        pool.op.backward(x, {}, {})
    norm = make_run("batch_norm2d", {}, [x.shape], "c", np.float32)
    read_only = np.zeros(3, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(BackendError, match="running_mean is read-only"):
        norm.op.forward([x], norm.params, {**norm.buffers, "running_mean": read_only}, True)
    with pytest.raises(BackendError, match="running_var must be float32"):
        norm.op.forward([x], norm.params, {**norm.buffers, "running_var": np.ones(3)}, True)
    norm.op.forward([x], norm.params, norm.buffers, True)
    with pytest.raises(BackendError, match="weight gradient must be C-contiguous"):
        norm.op.backward(x, norm.params, {**norm.grads, "weight": np.zeros(6, np.float32)[::2]})


def test_inputs_that_alias_the_output_are_copied_first(lib):
    """relu fed its own output (an in-place call) still reads the input it was given."""
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    run = make_run("tanh", {}, [x.shape], "c", np.float32)
    expected = run.forward([x])
    out = run.op.forward([x], {}, {}, True)
    out[...] = x
    np.testing.assert_array_equal(run.op.forward([out], {}, {}, True), expected)


def test_four_python_threads_running_these_kernels_get_the_serial_results(lib):
    """Pooling, batch norm, softmax and dropout from four Python threads at once (ctypes releases the GIL)."""
    cases = [CASES[1], CASES[10], CASES[11], CASES[15]]
    assert_python_threads_get_the_serial_results([partial(results, *case) for case in cases], repeats=3)
