/* SGEMM in the BLIS style, row-major.
 *
 * Loops, outermost first (C is split into blocks of at most NC columns):
 *   p0 over k in steps of KC:    pack op(B)[p0:p0+KC, block] into NR-wide panels (stays in L2)
 *   i over rows in steps of MR:  pack op(A)[i:i+MR, p0:p0+KC] into one panel (stays in L1)
 *   j over the block's panels:   micro-kernel: an MR x NR tile of C in registers, then written out
 * The micro-kernel keeps MR x NR accumulators in vector registers: per step of k it loads NR/VEC vectors
 * of B and broadcasts MR values of A. Tiles at the edges of C use a kernel specialised for their row
 * count (and for one vector of columns when that suffices), reading zero-padded B panels, and only their
 * valid part is written; every entry is still the same chain of FMAs, so results do not depend on where
 * a block boundary falls.
 */
#include "gemm.h"

#include <string.h>

#include "threadpool.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>
/* 12 x 32: 24 zmm accumulators, 2 for B, 1 broadcast (of 32 registers). */
#define MR 12
#define VEC 16
#define KC 384
#define NC 512
typedef __m512 vec;
static inline vec vzero(void) { return _mm512_setzero_ps(); }
static inline vec vload(const float *p) { return _mm512_load_ps(p); }
static inline vec vbroadcast(const float *p) { return _mm512_set1_ps(*p); }
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline void vstore(float *p, vec v) { _mm512_store_ps(p, v); }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* 6 x 16: 12 ymm accumulators, 2 for B, 1 broadcast (of 16 registers), as BLIS and OpenBLAS on Haswell. */
#define MR 6
#define VEC 8
#define KC 256
#define NC 384
typedef __m256 vec;
static inline vec vzero(void) { return _mm256_setzero_ps(); }
static inline vec vload(const float *p) { return _mm256_load_ps(p); }
static inline vec vbroadcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline void vstore(float *p, vec v) { _mm256_store_ps(p, v); }
#else
/* 4 x 8 with GCC vector extensions (SSE on x86-64, NEON on arm64): 8 accumulators, no FMA. */
#define MR 4
#define VEC 4
#define KC 256
#define NC 256
typedef float vec __attribute__((vector_size(16)));
static inline vec vzero(void) { return (vec){0.0f, 0.0f, 0.0f, 0.0f}; }
static inline vec vload(const float *p) { return *(const vec *)p; }
static inline vec vbroadcast(const float *p) { return (vec){*p, *p, *p, *p}; }
static inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
static inline void vstore(float *p, vec v) { *(vec *)p = v; }
#endif

#define NV 2 /* vectors per row of a tile */
#define NR (NV * VEC)
_Static_assert(MR <= 12, "the micro-kernel names 12 rows of accumulators");

/* Below this many multiply-adds per chunk, threads cost more than they save. */
#define MIN_CHUNK_FMAS ((int64_t)1 << 20)
/* cnk_gemm_parallel splits C into about this many blocks (enough to balance 2-4 threads). */
#define MAX_CHUNKS 8

/* tile (rows x NR, of which the first nv vectors per row are computed) = A panel (kc x rows) times B
 * panel (kc x NR). The accumulators are named variables, not an array: GCC keeps an array of vectors in
 * memory, which costs a store per FMA. Rows past `rows` and the second vector when nv == 1 are dead code
 * once this is inlined with constant rows and nv. */
#define ACC_DECLARE(i) vec c##i##_0 = vzero(), c##i##_1 = vzero();
#define ACC_STEP(i)                                                                                        \
    if (i < rows) {                                                                                        \
        vec ai = vbroadcast(a + i);                                                                        \
        c##i##_0 = vfma(ai, b0, c##i##_0);                                                                 \
        if (nv > 1)                                                                                        \
            c##i##_1 = vfma(ai, b1, c##i##_1);                                                             \
    }
#define ACC_STORE(i)                                                                                       \
    if (i < rows) {                                                                                        \
        vstore(tile + i * NR, c##i##_0);                                                                   \
        if (nv > 1)                                                                                        \
            vstore(tile + i * NR + VEC, c##i##_1);                                                         \
    }
#define ACC_ALL(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static inline __attribute__((always_inline)) void micro_body(int64_t kc, const float *restrict a,
                                                             const float *restrict b, float *restrict tile,
                                                             const int rows, const int nv)
{
    ACC_ALL(ACC_DECLARE)
    for (int64_t p = 0; p < kc; p++) {
        vec b0 = vload(b), b1 = nv > 1 ? vload(b + VEC) : b0;
        ACC_ALL(ACC_STEP)
        a += rows;
        b += NR;
    }
    ACC_ALL(ACC_STORE)
}

typedef void (*micro_fn)(int64_t kc, const float *a, const float *b, float *tile);

#define MICRO(R, V)                                                                                        \
    static void micro_##R##_##V(int64_t kc, const float *a, const float *b, float *tile)                  \
    {                                                                                                      \
        micro_body(kc, a, b, tile, R, V);                                                                  \
    }
#define MICRO_ROWS(R) MICRO(R, 1) MICRO(R, 2)
#define ENTRY(R) {micro_##R##_1, micro_##R##_2},

MICRO_ROWS(1) MICRO_ROWS(2) MICRO_ROWS(3) MICRO_ROWS(4)
#if MR >= 6
MICRO_ROWS(5) MICRO_ROWS(6)
#endif
#if MR >= 12
MICRO_ROWS(7) MICRO_ROWS(8) MICRO_ROWS(9) MICRO_ROWS(10) MICRO_ROWS(11) MICRO_ROWS(12)
#endif

/* micro[rows - 1][vectors - 1] */
static const micro_fn micro[MR][NV] = {
    ENTRY(1) ENTRY(2) ENTRY(3) ENTRY(4)
#if MR >= 6
    ENTRY(5) ENTRY(6)
#endif
#if MR >= 12
    ENTRY(7) ENTRY(8) ENTRY(9) ENTRY(10) ENTRY(11) ENTRY(12)
#endif
};

#if defined(__AVX2__)
/* dst (8 x 8, leading dimension ldd) = the transpose of src (8 x 8, leading dimension lds). */
static inline void transpose8x8(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}
#define TRANSPOSE_BLOCK 8
#else
#define TRANSPOSE_BLOCK 1
#endif

/* panel (kc x NR) = rows [0, kc) of a transposed operand: panel[p][j] = src[j * ld + p] for j < width,
 * zero for the columns past `width`. */
static void pack_transposed(const float *restrict src, int64_t ld, int64_t kc, int64_t width,
                            float *restrict panel)
{
    int64_t j = 0;
#if TRANSPOSE_BLOCK > 1
    /* groups of 8 columns by 8x8 transposes (a partial panel too: its full groups), then the rest */
    for (; j + TRANSPOSE_BLOCK <= width; j += TRANSPOSE_BLOCK) {
        int64_t p = 0;
        for (; p + TRANSPOSE_BLOCK <= kc; p += TRANSPOSE_BLOCK)
            transpose8x8(src + j * ld + p, ld, panel + p * NR + j, NR);
        for (; p < kc; p++)
            for (int64_t jj = j; jj < j + TRANSPOSE_BLOCK; jj++)
                panel[p * NR + jj] = src[jj * ld + p];
    }
#endif
    for (; j < width; j++)
        for (int64_t q = 0; q < kc; q++)
            panel[q * NR + j] = src[j * ld + q];
    if (width < NR)
        for (int64_t q = 0; q < kc; q++)
            for (int64_t jj = width; jj < NR; jj++)
                panel[q * NR + jj] = 0.0f;
}

/* Rows [p0, p0 + kc) and columns [j0, j0 + cols) of op(B) as ceil(cols / NR) panels of kc x NR, the
 * columns past `cols` zero. */
static void pack_b(const cnk_gemm_args *g, int64_t p0, int64_t kc, int64_t j0, int64_t cols,
                   float *restrict dst)
{
    int64_t panels = cnk_ceil_div(cols, NR);
    for (int64_t jp = 0; jp < panels; jp++) {
        float *restrict panel = dst + jp * kc * NR;
        int64_t width = cnk_min(NR, cols - jp * NR);
        if (g->trans_b) {
            pack_transposed(g->b + (j0 + jp * NR) * g->ldb + p0, g->ldb, kc, width, panel);
            continue;
        }
        const float *src = g->b + p0 * g->ldb + j0 + jp * NR;
        for (int64_t p = 0; p < kc; p++) {
            if (width == NR) {
                memcpy(panel + p * NR, src + p * g->ldb, sizeof(float) * NR);
            } else {
                memcpy(panel + p * NR, src + p * g->ldb, sizeof(float) * (size_t)width);
                memset(panel + p * NR + width, 0, sizeof(float) * (size_t)(NR - width));
            }
        }
    }
}

/* Rows [i0, i0 + rows) and columns [p0, p0 + kc) of op(A) as one kc x rows panel. */
static void pack_a(const cnk_gemm_args *g, int64_t i0, int rows, int64_t p0, int64_t kc, float *restrict dst)
{
    if (!g->trans_a) {
        for (int i = 0; i < rows; i++) {
            const float *src = g->a + (i0 + i) * g->lda + p0;
            for (int64_t p = 0; p < kc; p++)
                dst[p * rows + i] = src[p];
        }
    } else {
        for (int64_t p = 0; p < kc; p++) {
            const float *src = g->a + (p0 + p) * g->lda + i0;
            for (int i = 0; i < rows; i++)
                dst[p * rows + i] = src[i];
        }
    }
}

/* c (rows x cols, leading dimension ldc) = tile, or c + tile; then + bias_rows[i], + bias_cols[j]. */
static void write_tile(const float *restrict tile, float *restrict c, int64_t ldc, int rows, int cols, int add,
                       const float *bias_rows, const float *bias_cols)
{
    for (int i = 0; i < rows; i++) {
        float *restrict row = c + i * ldc;
        const float *restrict t = tile + i * NR;
        if (add)
            for (int j = 0; j < cols; j++)
                row[j] = row[j] + t[j];
        else
            for (int j = 0; j < cols; j++)
                row[j] = t[j];
        if (bias_rows != NULL)
            for (int j = 0; j < cols; j++)
                row[j] = row[j] + bias_rows[i];
        if (bias_cols != NULL)
            for (int j = 0; j < cols; j++)
                row[j] = row[j] + bias_cols[j];
    }
}

/* Rows [i0, i1) and columns [j0, j1) of C, j1 - j0 <= NC. */
static int gemm_block(const cnk_gemm_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int worker)
{
    int64_t panels = cnk_ceil_div(j1 - j0, NR);
    int64_t kc_max = cnk_min(KC, g->k);
    float *b_panels = cnk_scratch(worker, CNK_SCRATCH_GEMM_B, sizeof(float) * (size_t)(kc_max * panels * NR));
    float *a_panel = cnk_scratch(worker, CNK_SCRATCH_GEMM_A, sizeof(float) * (size_t)(kc_max * MR));
    if (b_panels == NULL || a_panel == NULL)
        return CNK_ENOMEM;
    float tile[MR * NR] __attribute__((aligned(CNK_ALIGN)));
    for (int64_t p0 = 0; p0 < g->k; p0 += KC) {
        int64_t kc = cnk_min(KC, g->k - p0);
        int first = p0 == 0;
        if (g->pack_b != NULL)
            g->pack_b(g->pack_b_ctx, p0, kc, j0, j1 - j0, NR, b_panels);
        else
            pack_b(g, p0, kc, j0, j1 - j0, b_panels);
        for (int64_t i = i0; i < i1; i += MR) {
            int rows = (int)cnk_min(MR, i1 - i);
            const float *a = a_panel;
            if (g->packed_a != NULL) /* the panels of earlier blocks of k hold p0 * m floats */
                a = g->packed_a + p0 * g->m + kc * i;
            else
                pack_a(g, i, rows, p0, kc, a_panel);
            for (int64_t jp = 0; jp < panels; jp++) {
                int64_t j = j0 + jp * NR;
                int cols = (int)cnk_min(NR, j1 - j);
                micro[rows - 1][(cols - 1) / VEC](kc, a, b_panels + jp * kc * NR, tile);
                write_tile(tile, g->c + i * g->ldc + j, g->ldc, rows, cols, !first || g->accumulate,
                           first && g->bias_rows != NULL ? g->bias_rows + i : NULL,
                           first && g->bias_cols != NULL ? g->bias_cols + j : NULL);
            }
        }
    }
    return CNK_OK;
}

void cnk_gemm_pack_a(const cnk_gemm_args *g, float *dst)
{
    for (int64_t p0 = 0; p0 < g->k; p0 += KC) {
        int64_t kc = cnk_min(KC, g->k - p0);
        for (int64_t i = 0; i < g->m; i += MR)
            pack_a(g, i, (int)cnk_min(MR, g->m - i), p0, kc, dst + p0 * g->m + kc * i);
    }
}

int cnk_gemm_serial_rows(const cnk_gemm_args *g, int64_t i0, int64_t i1, int worker)
{
    if (i0 % MR != 0 || i0 < 0 || i1 > g->m)
        return CNK_EINVAL;
    for (int64_t j0 = 0; j0 < g->n; j0 += NC) {
        int status = gemm_block(g, i0, i1, j0, cnk_min(g->n, j0 + NC), worker);
        if (status != CNK_OK)
            return status;
    }
    return CNK_OK;
}

int cnk_gemm_serial(const cnk_gemm_args *g, int worker) { return cnk_gemm_serial_rows(g, 0, g->m, worker); }

int64_t cnk_gemm_row_step(void) { return MR; }

/* A grid of blocks of C chosen from the problem's shape alone: about `wanted` blocks (fewer for small
 * problems), columns in blocks of at most NC. Each block packs its own rows of A and columns of B, so the
 * split that packs the least (row blocks x n + column blocks x m) wins. */
typedef struct {
    const cnk_gemm_args *g;
    int64_t row_step, col_step, col_blocks;
} gemm_grid;

static gemm_grid make_grid(const cnk_gemm_args *g)
{
    int64_t by_work = cnk_max(1, g->m * g->n / cnk_max(1, MIN_CHUNK_FMAS / g->k));
    int64_t wanted = cnk_min(MAX_CHUNKS, by_work);
    int64_t fewest_cols = cnk_ceil_div(g->n, NC);
    int64_t most_cols = cnk_max(fewest_cols, cnk_min(wanted, cnk_ceil_div(g->n, NR)));
    gemm_grid best = {g, 0, 0, 0};
    int64_t best_cost = -1;
    for (int64_t cols = fewest_cols; cols <= most_cols; cols++) {
        int64_t col_step = cnk_ceil_div(cnk_ceil_div(g->n, cols), NR) * NR;
        int64_t rows = cnk_min(cnk_ceil_div(g->m, MR), cnk_ceil_div(wanted, cols));
        int64_t row_step = cnk_ceil_div(cnk_ceil_div(g->m, rows), MR) * MR;
        int64_t cost = cnk_ceil_div(g->m, row_step) * g->n + cnk_ceil_div(g->n, col_step) * g->m;
        if (best_cost < 0 || cost < best_cost) {
            best = (gemm_grid){g, row_step, col_step, cnk_ceil_div(g->n, col_step)};
            best_cost = cost;
        }
    }
    return best;
}

static int grid_chunk(void *ctx, int64_t chunk, int worker)
{
    const gemm_grid *grid = ctx;
    const cnk_gemm_args *g = grid->g;
    int64_t i0 = chunk / grid->col_blocks * grid->row_step;
    int64_t j0 = chunk % grid->col_blocks * grid->col_step;
    return gemm_block(g, i0, cnk_min(g->m, i0 + grid->row_step), j0, cnk_min(g->n, j0 + grid->col_step),
                      worker);
}

int cnk_gemm_parallel(const cnk_gemm_args *g)
{
    gemm_grid grid = make_grid(g);
    int64_t chunks = cnk_ceil_div(g->m, grid.row_step) * grid.col_blocks;
    return cnk_parallel_for_work(chunks, cnk_fma_work((double)g->m * g->n * g->k), grid_chunk, &grid);
}

int cnk_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
              const float *b, int64_t ldb, float *c, int64_t ldc, const float *bias_rows,
              const float *bias_cols, int accumulate)
{
    if (!cnk_size_ok(m) || !cnk_size_ok(n) || !cnk_size_ok(k) || a == NULL || b == NULL || c == NULL ||
        lda < (trans_a ? m : k) || ldb < (trans_b ? k : n) || ldc < n || lda > CNK_MAX_SIZE ||
        ldb > CNK_MAX_SIZE || ldc > CNK_MAX_SIZE)
        return CNK_EINVAL;
    cnk_gemm_args g = {trans_a != 0, trans_b != 0, m, n, k, a, lda, b, ldb, c, ldc, bias_rows, bias_cols,
                       accumulate != 0, NULL, NULL, NULL};
    return cnk_gemm_parallel(&g);
}
