"""Our SGEMM against NumPy: edge sizes around every blocking constant, random shapes, every variant, bitwise
reproducibility across thread counts and Python threads, and every bad argument refused cleanly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit.backends.c import gemm
from cnnkit.errors import BackendError

EPS = np.finfo(np.float32).eps

# Around the register tiles (MR 12/6/4, NR 32/16/8), KC (384/256) and NC (512/384/256) of the variants.
EDGE_SIZES = [(1, 1, 1), (1, 33, 1), (13, 1, 7), (12, 32, 384), (13, 33, 385), (6, 16, 256), (25, 65, 257),
              (5, 17, 3), (7, 513, 3), (3, 385, 9), (100, 70, 500), (64, 288, 1024)]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


def operands(rng, m, n, k, trans_a=False, trans_b=False):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def check_product(out, a, b, trans_a=False, trans_b=False, before=None, bias_rows=None, bias_cols=None):
    """out == op(a) op(b) (+ before + biases) within the float32 error bound of a k-term dot product."""
    a64, b64 = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
    expected = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    for extra in (before, None if bias_rows is None else bias_rows[:, None], bias_cols):
        if extra is not None:
            expected = expected + extra
            scale = scale + np.abs(extra)
    bound = 2 * (a64.shape[1] + 3) * EPS * scale + 1e-30
    assert np.all(np.abs(out - expected) <= bound), float(np.max(np.abs(out - expected) / bound))


@pytest.mark.parametrize(("trans_a", "trans_b"), TRANSPOSES)
@pytest.mark.parametrize(("m", "n", "k"), EDGE_SIZES)
def test_edge_sizes_on_every_variant(variant, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 10000 + n * 100 + k)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    bias_rows = rng.standard_normal(m).astype(np.float32)
    bias_cols = rng.standard_normal(n).astype(np.float32)
    check_product(gemm(a, b, trans_a=trans_a, trans_b=trans_b, library=variant), a, b, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    before = out.astype(np.float64)
    gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=True, bias_rows=bias_rows,
         bias_cols=bias_cols, library=variant)
    check_product(out, a, b, trans_a, trans_b, before, bias_rows, bias_cols)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 70), trans_a=st.booleans(),
       trans_b=st.booleans(), accumulate=st.booleans(), with_bias_rows=st.booleans(),
       with_bias_cols=st.booleans(), seed=st.integers(0, 2**16))
def test_random_shapes_match_numpy(lib, m, n, k, trans_a, trans_b, accumulate, with_bias_rows, with_bias_cols,
                                   seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    bias_rows = rng.standard_normal(m).astype(np.float32) if with_bias_rows else None
    bias_cols = rng.standard_normal(n).astype(np.float32) if with_bias_cols else None
    out = rng.standard_normal((m, n)).astype(np.float32)
    before = out.astype(np.float64) if accumulate else None
    gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, bias_rows=bias_rows,
         bias_cols=bias_cols)
    check_product(out, a, b, trans_a, trans_b, before, bias_rows, bias_cols)


def test_blocks_of_larger_matrices_use_their_leading_dimension(lib):
    rng = np.random.default_rng(1)
    big_a = rng.standard_normal((40, 50)).astype(np.float32)
    big_b = rng.standard_normal((60, 70)).astype(np.float32)
    big_out = np.zeros((30, 90), np.float32)
    a, b, out = big_a[3:23, 5:41], big_b[7:43, 2:35], big_out[4:24, 10:43]
    gemm(a, b, out)
    check_product(out, a, b)
    assert not big_out[:4].any() and not big_out[:, :10].any() and not big_out[:, 43:].any()


def test_bitwise_equal_across_thread_counts_and_repeats(variant):
    rng = np.random.default_rng(2)
    a, b = operands(rng, 203, 301, 517, trans_b=True)
    results = []
    for threads in (1, 2, 3, 4, 1, 4):
        variant.set_num_threads(threads)
        results.append(gemm(a, b, trans_b=True, library=variant))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_four_python_threads_get_the_serial_results(lib):
    lib.set_num_threads(2)
    rng = np.random.default_rng(3)
    problems = [operands(rng, 97 + i, 130 - i, 211) for i in range(4)]
    serial = [gemm(a, b) for a, b in problems]
    outs = [[np.empty_like(s) for _ in range(15)] for s in serial]

    def work(i: int) -> None:
        for out in outs[i]:
            gemm(*problems[i], out)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for expected, got in zip(serial, outs):
        for out in got:
            np.testing.assert_array_equal(out, expected)


def huge(shape):
    """A read-only view of that shape over one float: a size test that allocates nothing."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=shape, strides=(0,) * len(shape))


A = np.ones((4, 5), np.float32)
B = np.ones((5, 3), np.float32)
SQUARE = np.ones((4, 4), np.float32)
BAD_CALLS = {
    "not an array": (lambda: gemm([[1.0]], B), "a must be a NumPy array"),
    "float64": (lambda: gemm(A.astype(np.float64), B), "a must be float32, got float64"),
    "3-D": (lambda: gemm(A, np.ones((5, 3, 1), np.float32)), "b must have 2 dimensions"),
    "inner sizes": (lambda: gemm(A, B.T.copy()), "op\\(a\\) is 4x5 and op\\(b\\) is 3x5"),
    "column stride": (lambda: gemm(np.ones((4, 10), np.float32)[:, ::2], B), "a must have contiguous rows"),
    "reversed rows": (lambda: gemm(A[::-1], B), "a must have contiguous rows"),
    "empty": (lambda: gemm(np.ones((0, 5), np.float32), B), "every size >= 1"),
    "over 2**31 elements": (lambda: gemm(huge((2**16, 2**16)), huge((2**16, 3))), "fewer than 2\\*\\*31"),
    "out shape": (lambda: gemm(A, B, np.empty((3, 4), np.float32)),
                  "out must be an array of shape \\(4, 3\\)"),
    "out dtype": (lambda: gemm(A, B, np.empty((4, 3))), "out must be float32"),
    "out read-only": (lambda: _read_only((4, 3)), "out is read-only"),
    "out aliases a": (lambda: gemm(SQUARE, np.ones((4, 4), np.float32), SQUARE), "out overlaps a"),
    "out overlaps bias": (lambda: _overlapping_bias(), "out overlaps bias_cols"),
    "accumulate without out": (lambda: gemm(A, B, accumulate=True), "pass out"),
    "bias shape": (lambda: gemm(A, B, bias_rows=np.ones(3, np.float32)),
                   "bias_rows must have shape \\(4,\\)"),
    "bias dtype": (lambda: gemm(A, B, bias_cols=np.ones(3)), "bias_cols must be float32"),
    "non-contiguous bias": (lambda: gemm(A, B, bias_cols=np.ones(6, np.float32)[::2]), "C-contiguous"),
}


def _read_only(shape):
    out = np.empty(shape, np.float32)
    out.setflags(write=False)
    return gemm(A, B, out)


def _overlapping_bias():
    buffer = np.zeros(15, np.float32)
    return gemm(A, B, buffer[:12].reshape(4, 3), bias_cols=buffer[10:13])


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_arguments_raise_backend_error(lib, case):
    call, message = BAD_CALLS[case]
    with pytest.raises(BackendError, match=message):
        call()


def test_the_c_entry_point_checks_sizes_too(lib):
    """C re-checks what it can see; a non-zero status becomes a BackendError naming the function."""
    with pytest.raises(BackendError, match="cnk_sgemm failed: invalid argument"):
        lib.sgemm(0, 0, 0, 1, 1, A.ctypes.data, 5, B.ctypes.data, 3, A.ctypes.data, 3, None, None, 0)
    with pytest.raises(BackendError, match="cnk_sgemm failed"):
        lib.sgemm(0, 0, 4, 3, 5, A.ctypes.data, 4, B.ctypes.data, 3, A.ctypes.data, 3, None, None, 0)
