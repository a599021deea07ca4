"""Finds and loads the C library, and declares every function it exports: the one place that does either.

setup.py compiles the sources in csrc/ into libcnnkit_<variant>.so next to this file, one file per
instruction-set variant. `load()` asks the portable variant what the CPU supports (cnk_cpu_level) and
loads the best variant that runs here; CNNKIT_C_VARIANT=avx2 (say) forces one, and CNNKIT_C_LIBRARY=path
loads that file instead (scripts/sanitize.sh points it at an AddressSanitizer build).

Every exported function is listed in SIGNATURES with its argument and result types, mirroring the
headers in csrc/. A function whose result is STATUS returns a cnk_status: a non-zero one raises
BackendError naming the function and the problem. A Library exposes the functions without their `cnk_`
prefix: `library.load().sgemm(...)`.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int64, c_void_p
from pathlib import Path
from typing import Any

from cnnkit.errors import BackendError

HERE = Path(__file__).resolve().parent
VARIANTS = {"avx512": 2, "avx2": 1, "portable": 0}
"""Variant -> the cnk_cpu_level() it needs, best first."""
BUILD_STATUS = HERE / "c-build.json"
LIBRARY_ENV = "CNNKIT_C_LIBRARY"
VARIANT_ENV = "CNNKIT_C_VARIANT"
THREADS_ENV = "CNNKIT_NUM_THREADS"
MAX_THREADS = 256
"""CNK_MAX_THREADS in csrc/threadpool.h."""


class Conv2dShape(ctypes.Structure):
    """cnk_conv2d_shape (csrc/conv.h)."""

    _fields_ = [(name, c_int64) for name in (
        "batch", "channels", "height", "width", "filters", "groups", "kernel_h", "kernel_w", "stride_h",
        "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left", "out_h", "out_w")]


class Pool2dShape(ctypes.Structure):
    """cnk_pool2d_shape (csrc/pool.h)."""

    _fields_ = [(name, c_int64) for name in (
        "batch", "channels", "height", "width", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top",
        "pad_left", "pad_bottom", "pad_right", "out_h", "out_w", "count_include_pad")]


STATUS = "status"
"""Result type of functions that return a cnk_status (a C int), checked after every call."""

_P = c_void_p  # float arrays: passed as addresses taken once per buffer (see checks.Operand)
_I = c_int64

SIGNATURES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    # cpu.h
    "cnk_isa": (c_char_p, ()),
    "cnk_cpu_level": (c_int, ()),
    "cnk_status_message": (c_char_p, (c_int,)),
    # threadpool.h
    "cnk_set_num_threads": (STATUS, (c_int,)),
    "cnk_get_num_threads": (c_int, ()),
    # gemm.h: trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, bias_rows, bias_cols, accumulate
    "cnk_sgemm": (STATUS, (c_int, c_int, _I, _I, _I, _P, _I, _P, _I, _P, _I, _P, _P, c_int)),
    # conv.h
    "cnk_conv2d_workspace": (STATUS, (POINTER(Conv2dShape), POINTER(c_int64))),
    "cnk_conv2d_forward": (STATUS, (POINTER(Conv2dShape), _P, _P, _P, _P, _P)),
    "cnk_conv2d_backward": (STATUS, (POINTER(Conv2dShape), _P, _P, _P, _P, _P, _P, _P)),
    # linear.h: batch, features, units, then the arrays
    "cnk_linear_forward": (STATUS, (_I, _I, _I, _P, _P, _P, _P)),
    "cnk_linear_backward": (STATUS, (_I, _I, _I, _P, _P, _P, _P, _P, _P)),
    # pool.h
    "cnk_max_pool2d_forward": (STATUS, (POINTER(Pool2dShape), _P, _P)),
    "cnk_max_pool2d_backward": (STATUS, (POINTER(Pool2dShape), _P, _P, _P)),
    "cnk_avg_pool2d_forward": (STATUS, (POINTER(Pool2dShape), _P, _P)),
    "cnk_avg_pool2d_backward": (STATUS, (POINTER(Pool2dShape), _P, _P)),
    "cnk_global_avg_pool2d_forward": (STATUS, (_I, _I, _P, _P)),
    "cnk_global_avg_pool2d_backward": (STATUS, (_I, _I, _P, _P)),
    # activation.h: kind, alpha, n, then the arrays; softmax: outer, size, inner, then the arrays
    "cnk_activation_forward": (STATUS, (c_int, c_float, _I, _P, _P)),
    "cnk_activation_backward": (STATUS, (c_int, c_float, _I, _P, _P, _P, _P)),
    "cnk_softmax_forward": (STATUS, (_I, _I, _I, _P, _P)),
    "cnk_softmax_backward": (STATUS, (_I, _I, _I, _P, _P, _P)),
    # norm.h: batch, channels, size, then arrays, momentum, eps, training ...
    "cnk_batch_norm_forward": (STATUS, (_I, _I, _I, _P, _P, _P, _P, _P, c_double, c_double, c_int, _P, _P,
                                        _P)),
    "cnk_batch_norm_backward": (STATUS, (_I, _I, _I, _P, _P, _P, _P, _P, c_int, _P, _P, _P)),
    # merge.h: add n, a, b, out; concat outer, count, inner sizes, arrays
    "cnk_add_forward": (STATUS, (_I, _P, _P, _P)),
    "cnk_concat_forward": (STATUS, (_I, _I, POINTER(c_int64), POINTER(c_void_p), _P)),
    "cnk_concat_backward": (STATUS, (_I, _I, POINTER(c_int64), _P, POINTER(c_void_p))),
    # dropout.h
    "cnk_dropout_forward": (STATUS, (_I, c_double, _P, _P, _P)),
    "cnk_dropout_backward": (STATUS, (_I, _P, _P, _P)),
    # loss.h: n, k, logits, labels, smoothing, row_loss, grad, loss
    "cnk_cross_entropy_forward": (STATUS, (_I, _I, _P, _P, c_double, _P, _P, POINTER(c_double))),
    # n, k, logits, labels, row_loss, grad, loss
    "cnk_mse_forward": (STATUS, (_I, _I, _P, _P, _P, _P, POINTER(c_double))),
    # optim.h
    "cnk_sgd_step": (STATUS, (_I, _P, _P, _P, c_double, c_double, c_double, c_int, c_int)),
    "cnk_adam_step": (STATUS, (_I, _P, _P, _P, _P, c_double, c_double, c_double, c_double, c_double, c_int,
                               c_double, c_double)),
}


class Library:
    """One loaded copy of the C library, its functions declared: `lib.sgemm(...)` calls cnk_sgemm."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.cdll = ctypes.CDLL(str(self.path))
        except OSError as error:
            raise BackendError(f"cannot load the C library {self.path}: {error}") from None
        for name, (restype, argtypes) in SIGNATURES.items():
            function = getattr(self.cdll, name, None)
            if function is None:
                raise BackendError(f"the C library {self.path} has no function {name}: it was built from "
                                   f"other sources than this cnnkit; reinstall cnnkit to rebuild it")
            function.argtypes = argtypes
            if restype == STATUS:
                function.restype = c_int
                function.errcheck = self._check
            else:
                function.restype = restype
            setattr(self, name.removeprefix("cnk_"), function)
        self.variant = self.isa().decode()

    def _check(self, status: int, function: Any, arguments: tuple) -> int:
        if status != 0:
            message = self.status_message(status).decode()
            raise BackendError(f"C backend: {function.__name__} failed: {message}")
        return status

    def __repr__(self) -> str:
        return f"<cnnkit C library {self.variant} at {self.path}>"


def variant_path(variant: str, folder: Path | None = None) -> Path:
    """Where a variant's library is: next to this file, or in `folder` (e.g. a sanitizer build)."""
    return Path(folder or HERE) / f"libcnnkit_{variant}.so"


def built_variants(folder: Path | None = None) -> list[str]:
    """The variants whose library file exists, best first."""
    return [variant for variant in VARIANTS if variant_path(variant, folder).exists()]


def runnable_variants(folder: Path | None = None) -> list[str]:
    """The built variants this CPU can run, best first (the portable variant says what the CPU has)."""
    built = built_variants(folder)
    if not built:
        raise BackendError(_not_built())
    if "portable" not in built:
        raise BackendError(f"the portable variant of the C library, which every CPU runs and which checks "
                           f"the CPU for the others, was not built ({_not_built()})")
    level = Library(variant_path("portable", folder)).cpu_level()
    return [variant for variant in built if VARIANTS[variant] <= level]


def _not_built() -> str:
    """Why the library files are missing, from what setup.py recorded when cnnkit was installed."""
    try:
        failed = json.loads(BUILD_STATUS.read_text()).get("failed", {})
    except (OSError, ValueError):
        return (f"the C library was not built (no libcnnkit_*.so in {HERE}); reinstall cnnkit with "
                f"`pip install .` on a machine with gcc")
    by_reason: dict[str, list[str]] = {}
    for variant, reason in failed.items():
        by_reason.setdefault(reason, []).append(variant)
    reasons = "; ".join(f"{', '.join(variants)}: {reason}" for reason, variants in by_reason.items())
    return f"the C library was not built when cnnkit was installed ({reasons or 'no variant was built'})"


def _open() -> Library:
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        library = Library(Path(explicit))
        needs = VARIANTS.get(library.variant, 0)
        if library.cpu_level() < needs:
            raise BackendError(f"{LIBRARY_ENV}={explicit} is a {library.variant} build, which this CPU "
                               f"cannot run")
        return library
    runnable = runnable_variants()
    forced = os.environ.get(VARIANT_ENV)
    if forced:
        if forced not in runnable:
            raise BackendError(f"{VARIANT_ENV}={forced!r}: this machine can run the variants "
                               f"{', '.join(runnable) or 'none'} (built: {', '.join(built_variants())})")
        return Library(variant_path(forced))
    if not runnable:
        raise BackendError(_not_built())
    return Library(variant_path(runnable[0]))


_lock = threading.Lock()
_loaded: Library | None = None
_failure: BackendError | None = None
_threads: int | None = None


def load() -> Library:
    """The process's C library (loaded once, with its thread count set), or BackendError saying why not."""
    global _loaded, _failure
    with _lock:
        if _loaded is None and _failure is None:
            try:
                library = _open()
                library.set_num_threads(_threads or default_threads())
                _loaded = library
            except BackendError as error:
                _failure = error
        if _failure is not None:
            raise _failure
        return _loaded  # type: ignore[return-value]


def unavailable() -> str | None:
    """Why the C backend cannot run here, or None when it can."""
    try:
        load()
    except BackendError as error:
        return str(error)
    return None


def default_threads() -> int:
    """CNNKIT_NUM_THREADS if set, else the number of CPUs this process may run on."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return min(MAX_THREADS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    try:
        return _valid_threads(int(text))
    except (ValueError, BackendError):
        raise BackendError(f"{THREADS_ENV}={text!r}: expected a whole number from 1 to "
                           f"{MAX_THREADS}") from None


def _valid_threads(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_THREADS:
        raise BackendError(f"the thread count must be a whole number from 1 to {MAX_THREADS}, got {count!r}")
    return count


def set_num_threads(count: int) -> None:
    """Size the C backend's thread pool (applied now if the library is loaded, else when it loads)."""
    global _threads
    count = _valid_threads(count)
    with _lock:
        _threads = count
        if _loaded is not None:
            _loaded.set_num_threads(count)


def get_num_threads() -> int:
    """The C backend's thread count: what set_num_threads set, else CNNKIT_NUM_THREADS, else the CPUs."""
    with _lock:
        if _loaded is not None:
            return int(_loaded.get_num_threads())
        return _threads or default_threads()
