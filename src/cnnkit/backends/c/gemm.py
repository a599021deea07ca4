"""SGEMM from Python: the C backend's matrix product, for tests, benchmarks and plugins."""

from __future__ import annotations

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.library import Library, load
from cnnkit.errors import BackendError


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, *, trans_a: bool = False,
         trans_b: bool = False, accumulate: bool = False, bias_rows: np.ndarray | None = None,
         bias_cols: np.ndarray | None = None, library: Library | None = None) -> np.ndarray:
    """out = op(a) @ op(b) (+ out with accumulate) (+ bias_rows[:, None]) (+ bias_cols), in float32.

    op(x) is x, or x.T with trans_a / trans_b. Matrices are float32 with contiguous rows (C-contiguous,
    or a block of rows and columns of such an array); out must not overlap the inputs. Results are
    bitwise the same for every thread count.
    """
    lib = library or load()
    lda, ldb = checks.rows("a", a), checks.rows("b", b)
    m, k = a.shape[::-1] if trans_a else a.shape
    k_b, n = b.shape[::-1] if trans_b else b.shape
    if k != k_b:
        raise BackendError(f"gemm: op(a) is {m}x{k} and op(b) is {k_b}x{n}; the inner sizes must agree")
    if out is None:
        if accumulate:
            raise BackendError("gemm: accumulate=True adds to `out`, so pass out")
        out = np.empty((m, n), np.float32)
    elif not isinstance(out, np.ndarray) or out.shape != (m, n):
        raise BackendError(f"gemm: out must be an array of shape ({m}, {n}), got "
                           f"{getattr(out, 'shape', type(out).__name__)}")
    ldc = checks.rows("out", out, writable=True)
    vectors = {"bias_rows": (bias_rows, m), "bias_cols": (bias_cols, n)}
    for name, (vector, size) in vectors.items():
        if vector is not None:
            checks.array(name, vector, (size,))
    checks.no_overlap("out", out, a=a, b=b, bias_rows=bias_rows, bias_cols=bias_cols)
    lib.sgemm(int(trans_a), int(trans_b), m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data,
              ldc, None if bias_rows is None else bias_rows.ctypes.data,
              None if bias_cols is None else bias_cols.ctypes.data, int(accumulate))
    return out
