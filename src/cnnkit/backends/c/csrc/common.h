/* What every C kernel of cnnkit shares: export marker, status codes, size limits, the variant's ISA.
 *
 * Conventions (read this before adding a kernel):
 * - An entry point is `CNK_API int cnk_<layer>_<what>(...)` taking plain pointers, int64_t sizes and, for
 *   layers with many attributes, a pointer to a shape struct declared in the layer's header. It returns
 *   CNK_OK or a cnk_status; it never prints, aborts or keeps hidden state between calls (workspaces
 *   aside, see threadpool.h). Python (backends/c/library.py) declares its argtypes once and turns a
 *   non-zero status into BackendError; Python checks every argument first, C re-checks sizes cheaply.
 * - Arrays are float32, C-contiguous, NCHW (images) or row-major (matrices); the caller owns them.
 * - Work is split with cnk_parallel_for into chunks that do not depend on the thread count (see
 *   threadpool.h for the one exception), and every reduction adds its chunks in index order: results are
 *   bitwise equal for 1 or 64 threads.
 * - Only CNK_API symbols are exported (the library is compiled with -fvisibility=hidden).
 */
#ifndef CNK_COMMON_H
#define CNK_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CNK_API __attribute__((visibility("default")))

enum cnk_status {
    CNK_OK = 0,
    CNK_EINVAL = 1,  /* an argument C can see is wrong (Python should have caught it first) */
    CNK_ENOMEM = 2,  /* a workspace could not be allocated */
};

/* Every size C indexes with must be below this, so no product of two of them overflows int64_t. */
#define CNK_MAX_SIZE INT32_MAX

/* Cache-line alignment of workspaces (and of packed GEMM panels, which aligned vector loads read). */
#define CNK_ALIGN 64

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#define CNK_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define CNK_ISA "avx2"
#else
#define CNK_ISA "portable"
#endif

static inline int64_t cnk_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t cnk_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t cnk_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int cnk_size_ok(int64_t n) { return n >= 1 && n <= CNK_MAX_SIZE; }

/* Whether a * b * c * d (each in [1, CNK_MAX_SIZE]) is at most CNK_MAX_SIZE, without overflowing. */
static inline int cnk_product_ok(int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t p = a * b;
    if (p > CNK_MAX_SIZE)
        return 0;
    p *= c;
    if (p > CNK_MAX_SIZE)
        return 0;
    return p * d <= CNK_MAX_SIZE;
}

/* The message for a status, for Python's exception text. */
CNK_API const char *cnk_status_message(int status);

#endif
