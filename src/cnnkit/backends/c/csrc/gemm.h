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

/* Packs rows [p0, p0 + kc) and columns [j0, j0 + cols) of op(B) as ceil(cols / nr) panels of kc x nr
 * (panel jp at dst + jp * kc * nr, row p of it at + p * nr), the columns past `cols` zero: for operands
 * that are never stored whole (conv's implicit im2col). */
typedef void (*cnk_pack_b_fn)(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                              float *dst);

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
    cnk_pack_b_fn pack_b; /* when not NULL, op(B) comes from pack_b(pack_b_ctx, ...) and b, ldb, trans_b
                             are ignored */
    const void *pack_b_ctx;
    const float *packed_a; /* when not NULL, op(A) as cnk_gemm_pack_a packed it (a, lda, trans_a ignored) */
} cnk_gemm_args;

/* op(A) of `g` (m x k) packed once into dst (m * k floats), for several GEMMs with the same A: set
 * packed_a to it. */
void cnk_gemm_pack_a(const cnk_gemm_args *g, float *dst);

/* On the calling thread, using `worker`'s scratch: for use inside a cnk_parallel_for chunk. */
int cnk_gemm_serial(const cnk_gemm_args *g, int worker);

/* As cnk_gemm_serial, but only rows [i0, i1) of C; i0 a multiple of cnk_gemm_row_step(). Each entry is the
 * same chain of FMAs as in the whole product, so a kernel may split C's rows among chunks freely. */
int cnk_gemm_serial_rows(const cnk_gemm_args *g, int64_t i0, int64_t i1, int worker);

/* The rows of the micro-kernel's tile (MR): row splits of C start at multiples of it. */
int64_t cnk_gemm_row_step(void);

/* Split into a fixed grid of blocks of C and run on the thread pool. */
int cnk_gemm_parallel(const cnk_gemm_args *g);

/* The exported entry point (Python: cnnkit.backends.c.gemm). Sizes >= 1; leading dimensions >= the row
 * length they describe. */
CNK_API int cnk_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, const float *bias_rows,
                      const float *bias_cols, int accumulate);

#endif
