/* SGEMM: C = op(A) op(B) (+ C) (+ bias), row-major, packed and cache-blocked, our own micro-kernels.
 *
 * op(A) is m x k: A itself (a[i*lda + p]) or, with trans_a, the transpose of a stored k x m matrix
 * (a[p*lda + i]); op(B) is k x n likewise. C is m x n (c[i*ldc + j]). With `accumulate` the product is
 * added to C, else it replaces C. bias_rows (m values, added to every row i's entries) and bias_cols
 * (n values) may be NULL.
 *
 * Every entry of C is computed by one thread as the same sequence of fused multiply-adds over k (in
 * blocks of KC, in order), whatever the tiling or the thread count: results are bitwise reproducible.
 */
#ifndef CNK_GEMM_H
#define CNK_GEMM_H

#include "common.h"

typedef struct {
    int trans_a, trans_b;
    int64_t m, n, k;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    const float *bias_rows;
    const float *bias_cols;
    int accumulate;
} cnk_gemm_args;

/* On the calling thread, using `worker`'s scratch: for use inside a cnk_parallel_for chunk. */
int cnk_gemm_serial(const cnk_gemm_args *g, int worker);

/* Split into a fixed grid of blocks of C and run on the thread pool. */
int cnk_gemm_parallel(const cnk_gemm_args *g);

/* The exported entry point (Python: cnnkit.backends.c.gemm). Sizes >= 1; leading dimensions >= the row
 * length they describe. */
CNK_API int cnk_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, const float *bias_rows,
                      const float *bias_cols, int accumulate);

#endif
