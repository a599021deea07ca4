"""The C backend: our own multithreaded float32 kernels in C, called through ctypes.

Layout: csrc/ holds the C (common.h states its conventions; threadpool.c, gemm.c, then one file per layer
family, conv.c, linear.c ...); library.py finds the compiled library and declares every function it
exports; checks.py verifies every argument before C sees it; one module per layer family (conv.py,
linear.py ...) holds the Op classes, mirroring backends/numpy/. A layer without a C kernel runs on the
NumPy reference.

Adding a kernel for a layer family `x`:
1. csrc/x.h declares `CNK_API int cnk_<layer>_forward(...)` / `_backward(...)` (pointers, int64_t sizes or
   a shape struct); csrc/x.c checks the sizes it can see (cnk_size_ok, cnk_product_ok: CNK_EINVAL), splits
   the work with cnk_parallel_for into chunks fixed by the shape, reduces per-chunk partials in chunk
   order (cnk_reduce_partials, cnk_sum), and takes workspaces from cnk_scratch(worker, ...).
2. library.py: one SIGNATURES line per function (and a ctypes.Structure mirroring a shape struct); the
   tests check it against the headers and the library's exports.
3. x.py: an Op class that calls checks.require_float32(setup) and load(), checks sizes, allocates its
   buffers and takes their addresses in __init__, and passes every per-call array through a
   checks.Operand; register it with Kernel(layer, "c", make) and add the module to DEFAULT_PLUGINS.
4. Tests: parametrise the layer's tests with tests.layers.harness.backends(layer) and add check_parity
   cases; every test that runs backend "c" is marked `sanitize` (scripts/sanitize.sh) automatically.
"""

from __future__ import annotations

from cnnkit.backends.c.gemm import gemm
from cnnkit.backends.c.library import get_num_threads, load, set_num_threads, unavailable
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Backend

__all__ = ["backend_info", "gemm", "get_num_threads", "load", "set_num_threads", "unavailable"]


def backend_info() -> str | None:
    """The instruction set chosen and the thread count, for `cnnkit backends`; None when unavailable."""
    if unavailable() is not None:
        return None
    library = load()
    return f"instruction set {library.variant} ({library.path.name}), {get_num_threads()} threads"


@hookimpl
def cnnkit_register_backends(register) -> None:
    register(Backend(name="c", description="our own multithreaded C kernels (float32), packed SGEMM with "
                                           "AVX-512, AVX2 or portable micro-kernels",
                     unavailable=unavailable, dtypes=("float32",), details=backend_info))
