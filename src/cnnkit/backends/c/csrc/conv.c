#include "conv.h"

#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "gemm.h"
#include "reduce.h"
#include "threadpool.h"

/* Forward runs one chunk per (image, block of output rows, block of filters), each row block about this
 * many output pixels wide: enough columns for the GEMM. Filters are split only when there are fewer than
 * CHUNKS_PER_THREAD (image, row block) pairs per thread, so that small batches still give every thread
 * work: every chunk then packs the same columns again, which one thread need not pay for. The split may
 * depend on the thread count because it changes no result: each output is the same chain of FMAs in any
 * block (csrc/gemm.h). */
#define FORWARD_BLOCK_PIXELS 256
#define CHUNKS_PER_THREAD 2
/* Backward sums weight and bias gradients over at most this many fixed groups of images. */
#define BACKWARD_GROUPS 8
/* Stride-1 backward computes dW with direct_weight_gradient (AVX-512 builds) when the padded wide rows are
 * at least this long, else with GEMM on the columns. */
#if defined(__AVX512F__)
#define DIRECT_DW 1
#else
#define DIRECT_DW 0
#endif
#define DIRECT_DW_MIN_ROW 128
/* Stride-1 backward computes the input gradient as a conv (see transposed_shape) when each group has at
 * least this many input channels (its GEMM's rows); for fewer, GEMM into columns and col2im is faster. */
#define TRANSPOSED_MIN_CHANNELS 16
/* Stride-1 forward skips the padding columns of wide rows from this many filters per group on. */
#define COMPACT_FILTERS 32

/* Derived sizes, all from the shape alone. */
typedef struct {
    const cnk_conv2d_shape *s;
    int64_t image;  /* C * H * W */
    int64_t pixels; /* out_h * out_w */
    int64_t taps;   /* C / G * kh * kw: rows of a group's columns */
    int64_t per_group_filters;
    int64_t weights; /* F * taps */
    int direct;
} geometry;

static int shape_ok(const cnk_conv2d_shape *s)
{
    const int64_t sizes[] = {s->batch,    s->channels, s->height,     s->width,      s->filters,
                             s->groups,   s->kernel_h, s->kernel_w,   s->stride_h,   s->stride_w,
                             s->dilation_h, s->dilation_w, s->out_h, s->out_w};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!cnk_size_ok(sizes[i]))
            return 0;
    return s->pad_top >= 0 && s->pad_top <= CNK_MAX_SIZE && s->pad_left >= 0 && s->pad_left <= CNK_MAX_SIZE &&
           s->channels % s->groups == 0 && s->filters % s->groups == 0 &&
           cnk_product_ok(s->batch, s->channels, s->height, s->width) &&
           cnk_product_ok(s->batch, s->filters, s->out_h, s->out_w) &&
           cnk_product_ok(s->batch, s->channels * s->kernel_h, s->kernel_w, s->out_h * s->out_w) &&
           cnk_product_ok(s->filters, s->channels, s->kernel_h, s->kernel_w);
}

static geometry geometry_of(const cnk_conv2d_shape *s)
{
    geometry g = {s, s->channels * s->height * s->width, s->out_h * s->out_w,
                  s->channels / s->groups * s->kernel_h * s->kernel_w, s->filters / s->groups,
                  s->filters * (s->channels / s->groups) * s->kernel_h * s->kernel_w, 0};
    g.direct = s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_top == 0 &&
               s->pad_left == 0 && s->out_h == s->height && s->out_w == s->width;
    return g;
}

static int64_t backward_groups(const cnk_conv2d_shape *s) { return cnk_min(s->batch, BACKWARD_GROUPS); }

int cnk_conv2d_workspace(const cnk_conv2d_shape *s, int64_t *floats)
{
    if (s == NULL || floats == NULL || !shape_ok(s))
        return CNK_EINVAL;
    geometry g = geometry_of(s);
    /* backward: per-chunk partial sums, then the flipped weights and their packed copy; forward packs the
     * weights at the start */
    *floats = backward_groups(s) * (g.weights + s->filters) + 2 * g.weights;
    return CNK_OK;
}

/* Output positions [lo, hi) along one axis whose tap at `offset` (tap * dilation - pad) reads inside the
 * input [0, size); the others read padding. */
static void valid_range(int64_t size, int64_t offset, int64_t stride, int64_t out, int64_t *lo, int64_t *hi)
{
    int64_t first = offset >= 0 ? 0 : cnk_ceil_div(-offset, stride);
    int64_t last = size - 1 - offset;
    int64_t stop = last < 0 ? 0 : last / stride + 1;
    *lo = cnk_min(first, out);
    *hi = cnk_max(*lo, cnk_min(stop, out));
}

/* dst[k] for k in [0, n) = row[s0 + k * stride] where that index lies in [0, width), else 0 (all 0 when row
 * is NULL). The valid k form one range [lo, hi); with stride 1 the AVX-512 build copies and zero-fills in
 * one masked load and store per 16 values (lanes outside [lo, hi) are never read). */
static inline void gather_run(float *restrict dst, const float *restrict row, int64_t s0, int64_t stride,
                              int64_t width, int64_t n)
{
    int64_t lo = 0, hi = 0;
    if (row != NULL && stride == 1) { /* the common case, without divisions */
        lo = s0 < 0 ? cnk_min(-s0, n) : 0;
        hi = cnk_max(lo, cnk_min(n, width - s0));
    } else if (row != NULL) {
        valid_range(width, s0, stride, n, &lo, &hi);
    }
#if defined(__AVX512F__)
    if (stride == 1) {
        for (int64_t k = 0; k < n; k += 16) {
            int64_t a = cnk_max(0, cnk_min(16, lo - k)), b = cnk_max(0, cnk_min(16, hi - k));
            __mmask16 valid = b > a ? (__mmask16)((((uint32_t)1 << b) - 1) & ~(((uint32_t)1 << a) - 1)) : 0;
            __mmask16 store = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)(((uint32_t)1 << (n - k)) - 1);
            __m512 v = valid ? _mm512_maskz_loadu_ps(valid, row + s0 + k) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(dst + k, store, v);
        }
        return;
    }
#endif
    for (int64_t k = 0; k < lo; k++)
        dst[k] = 0.0f;
    if (stride == 1)
        for (int64_t k = lo; k < hi; k++)
            dst[k] = row[s0 + k];
    else
        for (int64_t k = lo; k < hi; k++)
            dst[k] = row[s0 + k * stride];
    for (int64_t k = hi; k < n; k++)
        dst[k] = 0.0f;
}

/* One row of columns: out[k] for the `count` output pixels from (oh, ow) on, in row-major order, of the tap
 * (i, j) on one input plane (H x W): plane[r, q] with r = oh * stride_h + i * dilation_h - pad_top (q
 * likewise), or 0 where (r, q) is padding. */
static void fill_pixels(const cnk_conv2d_shape *s, const float *plane, int64_t i, int64_t j, int64_t oh,
                        int64_t ow, int64_t count, float *out)
{
    int64_t row_offset = i * s->dilation_h - s->pad_top, col_offset = j * s->dilation_w - s->pad_left;
    for (int64_t done = 0; done < count; oh++, ow = 0) {
        int64_t run = cnk_min(s->out_w - ow, count - done);
        int64_t r = oh * s->stride_h + row_offset;
        const float *row = r >= 0 && r < s->height ? plane + r * s->width : NULL;
        gather_run(out + done, row, ow * s->stride_w + col_offset, s->stride_w, s->width, run);
        done += run;
    }
}

/* Columns of one image (or of one group's channels of it): cols[(c, i, j), oh * out_w + ow] for `channels`
 * input planes starting at x. */
static void im2col(const cnk_conv2d_shape *s, const geometry *g, const float *x, int64_t channels, float *cols)
{
    int64_t taps = s->kernel_h * s->kernel_w;
    for (int64_t t = 0; t < channels * taps; t++)
        fill_pixels(s, x + t / taps * s->height * s->width, t % taps / s->kernel_w, t % s->kernel_w, 0, 0,
                    g->pixels, cols + t * g->pixels);
}

/* Implicit im2col: the GEMM's B panels packed straight from the input, never storing the columns. */
typedef struct {
    const cnk_conv2d_shape *s;
    const float *x; /* the first input plane of the image (and group) */
    int64_t q0;     /* the pixel that column 0 is */
} column_source;

/* At most this many runs of pixels per panel (a panel is nr <= 32 columns, each run at least one). */
#define MAX_RUNS 64

static void pack_columns(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                         float *dst)
{
    const column_source *c = ctx;
    const cnk_conv2d_shape *s = c->s;
    int64_t plane = s->height * s->width;
    for (int64_t jp = 0; jp * nr < cols; jp++) {
        float *panel = dst + jp * kc * nr;
        int64_t width = cnk_min(nr, cols - jp * nr), q = c->q0 + j0 + jp * nr;
        /* The panel's columns as runs along output rows: (first input row, first input column, length). */
        int64_t run_r[MAX_RUNS], run_q[MAX_RUNS], run_len[MAX_RUNS], runs = 0;
        for (int64_t oh = q / s->out_w, ow = q % s->out_w, done = 0; done < width && runs < MAX_RUNS;
             oh++, ow = 0, runs++) {
            run_len[runs] = cnk_min(s->out_w - ow, width - done);
            run_r[runs] = oh * s->stride_h - s->pad_top;
            run_q[runs] = ow * s->stride_w - s->pad_left;
            done += run_len[runs];
        }
        int64_t t = p0, ch = t / (s->kernel_h * s->kernel_w);
        int64_t i = t % (s->kernel_h * s->kernel_w) / s->kernel_w, j = t % s->kernel_w;
        for (int64_t p = 0; p < kc; p++) {
            float *out = panel + p * nr;
            const float *x = c->x + ch * plane;
            int64_t row_offset = i * s->dilation_h, col_offset = j * s->dilation_w, done = 0;
            for (int64_t run = 0; run < runs; run++) {
                int64_t r = run_r[run] + row_offset;
                const float *row = r >= 0 && r < s->height ? x + r * s->width : NULL;
                gather_run(out + done, row, run_q[run] + col_offset, s->stride_w, s->width, run_len[run]);
                done += run_len[run];
            }
            for (int64_t k = width; k < nr; k++)
                out[k] = 0.0f;
            if (++j == s->kernel_w) {
                j = 0;
                if (++i == s->kernel_h) {
                    i = 0;
                    ch++;
                }
            }
        }
    }
}

/* dx (one image) = the sum, over taps, of each tap's columns added back where im2col read them. */
static void col2im(const cnk_conv2d_shape *s, const geometry *g, const float *cols, float *dx)
{
    memset(dx, 0, sizeof(float) * (size_t)g->image);
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t i = 0; i < s->kernel_h; i++) {
            int64_t rlo, rhi, row_offset = i * s->dilation_h - s->pad_top;
            valid_range(s->height, row_offset, s->stride_h, s->out_h, &rlo, &rhi);
            for (int64_t j = 0; j < s->kernel_w; j++) {
                int64_t qlo, qhi, col_offset = j * s->dilation_w - s->pad_left;
                valid_range(s->width, col_offset, s->stride_w, s->out_w, &qlo, &qhi);
                const float *tap = cols + ((c * s->kernel_h + i) * s->kernel_w + j) * g->pixels;
                for (int64_t oh = rlo; oh < rhi; oh++) {
                    const float *src = tap + oh * s->out_w + qlo;
                    float *dst = dx + (c * s->height + oh * s->stride_h + row_offset) * s->width +
                                 qlo * s->stride_w + col_offset;
                    for (int64_t q = 0; q < qhi - qlo; q++)
                        dst[q * s->stride_w] += src[q];
                }
            }
        }
}

/* Stride-1 convs run forward on "wide" rows: the chunk's input rows are copied, zero-padded, into a local
 * buffer of width Wp = out_w + (kw - 1) * dilation_w. Output pixel (oh, ow)'s column of tap (c, i, j) is then
 * local[c][oh + i * dilation_h][ow + j * dilation_w]: a row of a tap's columns is out_w contiguous floats of
 * `local`, so the B panels are packed with plain copies of runs, with no bounds checks (see forward_wide
 * for when the GEMM's columns are these runs and when whole wide rows). */
typedef struct {
    const float *local;
    int64_t plane, wp; /* floats per channel of `local`, and per row */
    int64_t out_w;     /* the GEMM's columns per row: out_w, or all of a chunk's wide rows as one row */
    int64_t kernel_h, kernel_w, dilation_h, dilation_w;
} wide_source;

/* dst[k] = src[k] for k < n: short runs, in masked vector copies where there are any. gather_run with no
 * padding does the same, but computing its bounds per run made packing 8x8 and 16x16 convs 4% slower. */
static inline void copy_floats(float *restrict dst, const float *restrict src, int64_t n)
{
#if defined(__AVX512F__)
    for (int64_t k = 0; k < n; k += 16) {
        __mmask16 lanes = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)(((uint32_t)1 << (n - k)) - 1);
        _mm512_mask_storeu_ps(dst + k, lanes, _mm512_maskz_loadu_ps(lanes, src + k));
    }
#else
    for (int64_t k = 0; k < n; k++)
        dst[k] = src[k];
#endif
}

/* One panel of `width` columns (of nr) that are one run: row p is local[row[p] + at ...]. Kept apart from
 * pack_runs_panel: one loop serving both compiled to a copy 20% slower for LeNet's packing-bound convs. */
static void pack_run_panel(const float *local, const int64_t *row, int64_t kc, int64_t at, int64_t width,
                           int64_t nr, float *panel)
{
    for (int64_t p = 0; p < kc; p++) {
        const float *src = local + row[p] + at;
        float *out = panel + p * nr;
        if (width == nr) {
            for (int64_t k = 0; k < nr; k++)
                out[k] = src[k];
        } else {
            for (int64_t k = 0; k < width; k++)
                out[k] = src[k];
            for (int64_t k = width; k < nr; k++)
                out[k] = 0.0f;
        }
    }
}

/* One panel of `width` columns (of nr) made of several runs (where each starts after row[p], and how long
 * it is). */
static void pack_runs_panel(const float *local, const int64_t *row, int64_t kc, const int64_t *run_at,
                            const int64_t *run_len, int64_t runs, int64_t width, int64_t nr, float *panel)
{
    for (int64_t p = 0; p < kc; p++) {
        const float *src = local + row[p];
        float *out = panel + p * nr;
        for (int64_t run = 0, done = 0; run < runs; done += run_len[run], run++)
            copy_floats(out + done, src + run_at[run], run_len[run]);
        for (int64_t k = width; k < nr; k++)
            out[k] = 0.0f;
    }
}

static void pack_wide(const void *ctx, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr, float *dst)
{
    const wide_source *w = ctx;
    /* where row p (tap p0 + p: channel, kernel row, kernel column) starts in `local` */
    int64_t row[kc];
    int64_t taps = w->kernel_h * w->kernel_w;
    for (int64_t p = 0, ch = p0 / taps, i = p0 % taps / w->kernel_w, j = p0 % w->kernel_w; p < kc; p++) {
        row[p] = ch * w->plane + i * w->dilation_h * w->wp + j * w->dilation_w;
        if (++j == w->kernel_w) {
            j = 0;
            if (++i == w->kernel_h) {
                i = 0;
                ch++;
            }
        }
    }
    for (int64_t jp = 0; jp * nr < cols; jp++) {
        int64_t width = cnk_min(nr, cols - jp * nr), q = j0 + jp * nr;
        /* The panel's columns as runs along output rows (at most nr of them). */
        int64_t run_at[MAX_RUNS], run_len[MAX_RUNS], runs = 0;
        for (int64_t oh = q / w->out_w, ow = q % w->out_w, done = 0; done < width; oh++, ow = 0, runs++) {
            run_at[runs] = oh * w->wp + ow;
            run_len[runs] = cnk_min(w->out_w - ow, width - done);
            done += run_len[runs];
        }
        float *panel = dst + jp * kc * nr;
        if (runs == 1)
            pack_run_panel(w->local, row, kc, run_at[0], width, nr, panel);
        else
            pack_runs_panel(w->local, row, kc, run_at, run_len, runs, width, nr, panel);
    }
}

/* Output rows [oh0, oh1) of filters [f0, f1) of each group, of one image. With at least COMPACT_FILTERS
 * filters per group the multiply-adds dominate and the GEMM computes just the out_w outputs per row, its
 * panels packed from several runs; with fewer, packing dominates and the GEMM computes all Wp columns of
 * each wide row (one run per panel), of which out_w are copied out. */
static int forward_wide(const cnk_conv2d_shape *s, const geometry *g, const float *x, const float *weight,
                        const float *packed, const float *bias, float *out, int64_t oh0, int64_t oh1, int64_t f0,
                        int64_t f1, int worker)
{
    int64_t kh1 = (s->kernel_h - 1) * s->dilation_h, kw1 = (s->kernel_w - 1) * s->dilation_w;
    int64_t rows = oh1 - oh0, local_rows = rows + kh1, wp = s->out_w + kw1, plane = local_rows * wp;
    int64_t group_channels = s->channels / s->groups, fg = g->per_group_filters, wide = rows * wp;
    int compact = fg >= COMPACT_FILTERS;
    /* slack: the wide GEMM's last tap reads kw1 floats past the last plane */
    int64_t local_floats = cnk_ceil_div(group_channels * plane + kw1, 16) * 16;
    float *local = cnk_scratch(worker, CNK_SCRATCH_KERNEL,
                               sizeof(float) * (size_t)(local_floats + (compact ? 0 : fg * wide)));
    if (local == NULL)
        return CNK_ENOMEM;
    float *wide_out = local + local_floats;
    for (int64_t group = 0; group < s->groups; group++) {
        const float *xg = x + group * group_channels * s->height * s->width;
        for (int64_t c = 0; c < group_channels; c++)
            for (int64_t rho = 0; rho < local_rows; rho++) {
                int64_t r = oh0 - s->pad_top + rho;
                const float *row = r >= 0 && r < s->height ? xg + (c * s->height + r) * s->width : NULL;
                gather_run(local + c * plane + rho * wp, row, -s->pad_left, 1, s->width, wp);
            }
        for (int64_t k = group_channels * plane; k < local_floats; k++)
            local[k] = 0.0f;
        /* the wide GEMM's columns are one run: all rows of `local` back to back */
        wide_source source = {local, plane, wp, compact ? s->out_w : wide, s->kernel_h, s->kernel_w, s->dilation_h,
                              s->dilation_w};
        cnk_gemm_args gemm = {
            .m = fg, .n = compact ? rows * s->out_w : wide, .k = g->taps, .a = weight + group * fg * g->taps,
            .lda = g->taps, .packed_a = packed + group * fg * g->taps, .pack_b = pack_wide, .pack_b_ctx = &source,
            .c = compact ? out + group * fg * g->pixels + oh0 * s->out_w : wide_out,
            .ldc = compact ? g->pixels : wide, .bias_rows = bias != NULL ? bias + group * fg : NULL,
        };
        int status = cnk_gemm_serial_rows(&gemm, f0, f1, worker);
        if (status != CNK_OK)
            return status;
        for (int64_t f = f0; f < f1 && !compact; f++)
            for (int64_t oh = 0; oh < rows; oh++)
                memcpy(out + (group * fg + f) * g->pixels + (oh0 + oh) * s->out_w, wide_out + f * wide + oh * wp,
                       sizeof(float) * (size_t)s->out_w);
    }
    return CNK_OK;
}

typedef struct {
    geometry g;
    int64_t block_rows, blocks;
    int64_t filter_rows, filter_blocks; /* filters per block (a multiple of the GEMM's row step), blocks */
    const float *x, *weight, *bias;
    const float *packed; /* the weights as cnk_gemm_pack_a packs them, per group */
    float *out;
} forward_ctx;

static int forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const forward_ctx *f = ctx_;
    const cnk_conv2d_shape *s = f->g.s;
    int64_t fg = f->g.per_group_filters;
    int64_t f0 = chunk % f->filter_blocks * f->filter_rows, f1 = cnk_min(fg, f0 + f->filter_rows);
    chunk /= f->filter_blocks;
    int64_t n = chunk / f->blocks;
    int64_t oh0 = chunk % f->blocks * f->block_rows, oh1 = cnk_min(s->out_h, oh0 + f->block_rows);
    const float *x = f->x + n * f->g.image;
    if (!f->g.direct && s->stride_h == 1 && s->stride_w == 1)
        return forward_wide(s, &f->g, x, f->weight, f->packed, f->bias, f->out + n * s->filters * f->g.pixels, oh0, oh1,
                            f0, f1, worker);
    int64_t group_channels = s->channels / s->groups;
    for (int64_t group = 0; group < s->groups; group++) {
        column_source source = {s, x + group * group_channels * s->height * s->width, oh0 * s->out_w};
        cnk_gemm_args gemm = {
            .m = fg, .n = (oh1 - oh0) * s->out_w, .k = f->g.taps,
            .a = f->weight + group * fg * f->g.taps, .lda = f->g.taps,
            .packed_a = f->packed + group * fg * f->g.taps,
            /* a direct conv's columns are x itself */
            .b = x + group * f->g.taps * f->g.pixels + oh0 * s->out_w, .ldb = f->g.pixels,
            .pack_b = f->g.direct ? NULL : pack_columns, .pack_b_ctx = &source,
            .c = f->out + (n * s->filters + group * fg) * f->g.pixels + oh0 * s->out_w, .ldc = f->g.pixels,
            .bias_rows = f->bias != NULL ? f->bias + group * fg : NULL,
        };
        int status = cnk_gemm_serial_rows(&gemm, f0, f1, worker);
        if (status != CNK_OK)
            return status;
    }
    return CNK_OK;
}

/* Blocks of filters (per group) for `pairs` chunks of other work: one block when the pairs give each thread
 * CHUNKS_PER_THREAD, else enough blocks to, each a multiple of the GEMM's row step. */
static void split_filters(int64_t filters, int64_t pairs, int64_t *rows, int64_t *blocks)
{
    int64_t step = cnk_gemm_row_step(), threads = cnk_get_num_threads();
    int64_t wanted = threads == 1 ? 1 : cnk_max(1, cnk_ceil_div(CHUNKS_PER_THREAD * threads, pairs));
    *rows = cnk_min(filters, cnk_ceil_div(cnk_ceil_div(filters, wanted), step) * step);
    *blocks = cnk_ceil_div(filters, *rows);
}

/* The forward pass with the weights packed into `packed` (weights floats) first. */
static int forward(const cnk_conv2d_shape *s, const float *x, const float *weight, const float *bias, float *packed,
                   float *out)
{
    forward_ctx f = {.g = geometry_of(s), .x = x, .weight = weight, .bias = bias, .packed = packed, .out = out};
    f.block_rows = cnk_min(s->out_h, cnk_ceil_div(FORWARD_BLOCK_PIXELS, s->out_w));
    f.blocks = cnk_ceil_div(s->out_h, f.block_rows);
    split_filters(f.g.per_group_filters, s->batch * f.blocks, &f.filter_rows, &f.filter_blocks);
    /* Every chunk multiplies by the same weights: pack them for the GEMM once, not once per chunk. */
    int64_t fg = f.g.per_group_filters;
    for (int64_t group = 0; group < s->groups; group++) {
        cnk_gemm_args a = {.m = fg, .k = f.g.taps, .a = weight + group * fg * f.g.taps, .lda = f.g.taps};
        cnk_gemm_pack_a(&a, packed + group * fg * f.g.taps);
    }
    double fmas = (double)s->batch * s->filters * f.g.taps * f.g.pixels;
    return cnk_parallel_for_work(s->batch * f.blocks * f.filter_blocks, cnk_fma_work(fmas), forward_chunk, &f);
}

int cnk_conv2d_forward(const cnk_conv2d_shape *s, const float *x, const float *weight, const float *bias,
                       float *workspace, float *out)
{
    if (s == NULL || !shape_ok(s) || x == NULL || weight == NULL || workspace == NULL || out == NULL)
        return CNK_EINVAL;
    return forward(s, x, weight, bias, workspace, out);
}

typedef struct {
    geometry g;
    int64_t groups; /* of images */
    int64_t filter_rows, filter_blocks; /* as forward's: split only when grad_x is not computed here */
    const float *grad_out, *weight, *x;
    float *partials, *grad_bias, *grad_x;
} backward_ctx;

/* db for filters [f0, f1) of each group from one image's output gradient g (rows `ld` floats apart, each
 * `pixels` long), into (or, with accumulate, added to) the partial sums after the weights'. */
static void bias_gradient(const backward_ctx *b, const float *g, int64_t ld, int accumulate, float *partial,
                          int64_t f0, int64_t f1)
{
    if (b->grad_bias == NULL)
        return;
    float *bias = partial + b->g.weights;
    int64_t fg = b->g.per_group_filters;
    for (int64_t group = 0; group < b->g.s->groups; group++)
        for (int64_t f = group * fg + f0; f < group * fg + f1; f++) {
            float sum = cnk_sum(g + f * ld, b->g.pixels);
            bias[f] = accumulate ? bias[f] + sum : sum;
        }
}

/* Rows [f0, f1) (of each group's filters) of dW_n = g_n cols_n^T, summed over this group's images into its
 * partials (then db likewise). */
static int weight_gradient(const backward_ctx *b, int64_t n, const float *cols, int accumulate, float *partial,
                           int64_t f0, int64_t f1, int worker)
{
    const cnk_conv2d_shape *s = b->g.s;
    const float *g = b->grad_out + n * s->filters * b->g.pixels;
    int64_t fg = b->g.per_group_filters;
    for (int64_t group = 0; group < s->groups; group++) {
        cnk_gemm_args gemm = {
            .trans_b = 1, .m = fg, .n = b->g.taps, .k = b->g.pixels,
            .a = g + group * fg * b->g.pixels, .lda = b->g.pixels,
            .b = cols + group * b->g.taps * b->g.pixels, .ldb = b->g.pixels,
            .c = partial + group * fg * b->g.taps, .ldc = b->g.taps, .accumulate = accumulate,
        };
        int status = cnk_gemm_serial_rows(&gemm, f0, f1, worker);
        if (status != CNK_OK)
            return status;
    }
    bias_gradient(b, g, b->g.pixels, accumulate, partial, f0, f1);
    return CNK_OK;
}

/* dx_n = col2im(W^T g_n), the columns in `dcols`; for a direct conv W^T g_n is dx_n itself. */
static int input_gradient(const backward_ctx *b, int64_t n, float *dcols, int worker)
{
    const cnk_conv2d_shape *s = b->g.s;
    float *dx = b->grad_x + n * b->g.image;
    if (b->g.direct)
        dcols = dx;
    int64_t fg = b->g.per_group_filters;
    for (int64_t group = 0; group < s->groups; group++) {
        cnk_gemm_args gemm = {
            .trans_a = 1, .m = b->g.taps, .n = b->g.pixels, .k = fg,
            .a = b->weight + group * fg * b->g.taps, .lda = b->g.taps,
            .b = b->grad_out + (n * s->filters + group * fg) * b->g.pixels, .ldb = b->g.pixels,
            .c = dcols + group * b->g.taps * b->g.pixels, .ldc = b->g.pixels,
        };
        int status = cnk_gemm_serial(&gemm, worker);
        if (status != CNK_OK)
            return status;
    }
    if (!b->g.direct)
        col2im(s, &b->g, dcols, dx);
    return CNK_OK;
}

/* Backward of one image of a stride-1 conv on wide rows (see forward_wide): the image, zero-padded, in a
 * local buffer of rows out_h + (kh - 1) * dilation_h by Wp; its columns (taps x out_h * Wp) are contiguous
 * runs of that buffer; the output gradient gets zeros in the Wp - out_w extra columns of each row, so
 * they add nothing to dW, give zero input-gradient columns, and col2im is one contiguous add per tap. */
typedef struct {
    int64_t wp, local_rows, plane, local_floats, wide; /* wide = out_h * wp */
    int64_t gw; /* wide rounded up to 16: the row length of the padded output gradient */
    int direct_dw; /* dW by direct_weight_gradient (no columns), else by GEMM on stored columns */
} wide_geometry;

static wide_geometry wide_geometry_of(const cnk_conv2d_shape *s)
{
    wide_geometry w;
    int64_t kh1 = (s->kernel_h - 1) * s->dilation_h, kw1 = (s->kernel_w - 1) * s->dilation_w;
    w.wp = s->out_w + kw1;
    w.local_rows = s->out_h + kh1;
    w.plane = w.local_rows * w.wp;
    w.wide = s->out_h * w.wp;
    w.gw = cnk_ceil_div(w.wide, 16) * 16;
    /* slack: the last tap's run reads kw1 floats past the last plane, the direct dW kernel gw - wide more */
    w.local_floats = cnk_ceil_div(s->channels * w.plane + kw1 + 16, 16) * 16;
    /* Short rows leave the direct kernel's final reductions as costly as its multiply-adds. */
    w.direct_dw = DIRECT_DW && w.gw >= DIRECT_DW_MIN_ROW;
    return w;
}

#if defined(__AVX512F__)
/* dW on wide rows without columns: dW[f][t] = sum_q g_wide[f][q] * local[offset(t) + q], in blocks of
 * filters x taps of up to 24 zmm accumulators along q, each reduced in a fixed order at the end; with the
 * block's output-gradient vectors and one input vector that fills the 32 registers. A layer uses 6 x 4 or
 * 4 x 6 blocks, whichever needs fewer (6 filters x 75 taps: 6 x 4; 32 x 288: 4 x 6). */
#define DW_FB 6
#define DW_TB 6
#define DW_ACCUMULATORS 24

static inline __attribute__((always_inline)) void dw_block(const float *g, int64_t gw, const float *const *src,
                                                           float *out, int64_t ldo, int accumulate, const int fb,
                                                           const int tb)
{
    __m512 acc[DW_FB][DW_TB];
#pragma GCC unroll 8
    for (int a = 0; a < DW_FB; a++)
#pragma GCC unroll 8
        for (int b = 0; b < DW_TB; b++)
            acc[a][b] = _mm512_setzero_ps();
    for (int64_t q = 0; q < gw; q += 16) {
        __m512 gv[DW_FB];
#pragma GCC unroll 8
        for (int a = 0; a < DW_FB; a++)
            if (a < fb)
                gv[a] = _mm512_loadu_ps(g + a * gw + q);
#pragma GCC unroll 8
        for (int b = 0; b < DW_TB; b++)
            if (b < tb) {
                __m512 xv = _mm512_loadu_ps(src[b] + q);
#pragma GCC unroll 8
                for (int a = 0; a < DW_FB; a++)
                    if (a < fb)
                        acc[a][b] = _mm512_fmadd_ps(gv[a], xv, acc[a][b]);
            }
    }
#pragma GCC unroll 8
    for (int a = 0; a < DW_FB; a++)
#pragma GCC unroll 8
        for (int b = 0; b < DW_TB; b++)
            if (a < fb && b < tb) {
                float sum = _mm512_reduce_add_ps(acc[a][b]);
                out[a * ldo + b] = accumulate ? out[a * ldo + b] + sum : sum;
            }
}

typedef void (*dw_fn)(const float *g, int64_t gw, const float *const *src, float *out, int64_t ldo,
                      int accumulate);
#define DW(F, T)                                                                                           \
    static void dw_##F##_##T(const float *g, int64_t gw, const float *const *src, float *out, int64_t ldo,  \
                             int accumulate)                                                               \
    {                                                                                                      \
        dw_block(g, gw, src, out, ldo, accumulate, F, T);                                                  \
    }
#define DW_ROW(F) DW(F, 1) DW(F, 2) DW(F, 3) DW(F, 4) DW(F, 5) DW(F, 6)
DW_ROW(1) DW_ROW(2) DW_ROW(3) DW_ROW(4) DW(5, 1) DW(5, 2) DW(5, 3) DW(5, 4) DW(6, 1) DW(6, 2) DW(6, 3) DW(6, 4)
#define DW_ENTRY(F) {dw_##F##_1, dw_##F##_2, dw_##F##_3, dw_##F##_4, dw_##F##_5, dw_##F##_6},
/* [filters - 1][taps - 1] of a block; NULL past DW_ACCUMULATORS */
static const dw_fn dw_table[DW_FB][DW_TB] = {
    DW_ENTRY(1) DW_ENTRY(2) DW_ENTRY(3) DW_ENTRY(4) {dw_5_1, dw_5_2, dw_5_3, dw_5_4, NULL, NULL},
    {dw_6_1, dw_6_2, dw_6_3, dw_6_4, NULL, NULL}};

static void direct_weight_gradient(const cnk_conv2d_shape *s, const geometry *geo, const wide_geometry *w,
                                   const float *g_wide, const float *local, float *partial, int accumulate,
                                   int64_t f0, int64_t f1)
{
    int64_t taps = s->kernel_h * s->kernel_w, fg = geo->per_group_filters, gtaps = geo->taps;
    int64_t group_channels = s->channels / s->groups;
    int64_t wide_blocks = cnk_ceil_div(f1 - f0, 6) * cnk_ceil_div(gtaps, 4);
    int64_t tall_blocks = cnk_ceil_div(f1 - f0, 4) * cnk_ceil_div(gtaps, 6);
    int64_t block_f = wide_blocks <= tall_blocks ? 6 : 4, block_t = DW_ACCUMULATORS / block_f;
    for (int64_t group = 0; group < s->groups; group++)
        for (int64_t t0 = 0; t0 < gtaps; t0 += block_t) {
            int tb = (int)cnk_min(block_t, gtaps - t0);
            const float *src[DW_TB];
            for (int b = 0; b < tb; b++) {
                int64_t t = t0 + b, c = group * group_channels + t / taps;
                src[b] = local + c * w->plane + t % taps / s->kernel_w * s->dilation_h * w->wp +
                         t % s->kernel_w * s->dilation_w;
            }
            for (int64_t f = f0; f < f1; f += block_f) {
                int fb = (int)cnk_min(block_f, f1 - f);
                dw_table[fb - 1][tb - 1](g_wide + (group * fg + f) * w->gw, w->gw, src,
                                         partial + (group * fg + f) * gtaps + t0, gtaps, accumulate);
            }
        }
}
#else
static void direct_weight_gradient(const cnk_conv2d_shape *s, const geometry *geo, const wide_geometry *w,
                                   const float *g_wide, const float *local, float *partial, int accumulate,
                                   int64_t f0, int64_t f1)
{
    (void)s, (void)geo, (void)w, (void)g_wide, (void)local, (void)partial, (void)accumulate, (void)f0, (void)f1;
}
#endif

/* Filters [f0, f1) of each group (all of them when grad_x is computed here). */
static int backward_wide(const backward_ctx *b, const wide_geometry *w, int64_t n, int accumulate,
                         float *partial, float *scratch, int64_t f0, int64_t f1, int worker)
{
    const cnk_conv2d_shape *s = b->g.s;
    int64_t all_taps = s->channels * s->kernel_h * s->kernel_w, fg = b->g.per_group_filters;
    float *local = scratch, *cols = local + w->local_floats, *g_wide = cols + (w->direct_dw ? 0 : all_taps * w->wide);
    float *dcols = g_wide + s->filters * w->gw;
    const float *x = b->x + n * b->g.image, *g = b->grad_out + n * s->filters * b->g.pixels;
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t rho = 0; rho < w->local_rows; rho++) {
            int64_t r = rho - s->pad_top;
            const float *row = r >= 0 && r < s->height ? x + (c * s->height + r) * s->width : NULL;
            gather_run(local + c * w->plane + rho * w->wp, row, -s->pad_left, 1, s->width, w->wp);
        }
    for (int64_t k = s->channels * w->plane; k < w->local_floats; k++)
        local[k] = 0.0f;
    int64_t taps = s->kernel_h * s->kernel_w;
    /* the output gradient in rows of Wp, for the direct dW and for the input gradient's columns */
    for (int64_t group = 0; group < s->groups && (w->direct_dw || b->grad_x != NULL); group++)
        for (int64_t f = group * fg + f0; f < group * fg + f1; f++) {
            for (int64_t oh = 0; oh < s->out_h; oh++) {
                float *dst = g_wide + f * w->gw + oh * w->wp;
                memcpy(dst, g + f * b->g.pixels + oh * s->out_w, sizeof(float) * (size_t)s->out_w);
                for (int64_t k = s->out_w; k < w->wp; k++)
                    dst[k] = 0.0f;
            }
            for (int64_t k = w->wide; k < w->gw; k++)
                g_wide[f * w->gw + k] = 0.0f;
        }
    int status = CNK_OK;
    if (w->direct_dw) {
        direct_weight_gradient(s, &b->g, w, g_wide, local, partial, accumulate, f0, f1);
        bias_gradient(b, g, b->g.pixels, accumulate, partial, f0, f1);
    } else { /* by GEMM on the image's columns, copied from `local` without the padding columns */
        for (int64_t t = 0; t < all_taps; t++) {
            const float *src = local + t / taps * w->plane + t % taps / s->kernel_w * s->dilation_h * w->wp +
                               t % s->kernel_w * s->dilation_w;
            for (int64_t oh = 0; oh < s->out_h; oh++)
                memcpy(cols + t * b->g.pixels + oh * s->out_w, src + oh * w->wp, sizeof(float) * (size_t)s->out_w);
        }
        status = weight_gradient(b, n, cols, accumulate, partial, f0, f1, worker);
    }
    if (status != CNK_OK || b->grad_x == NULL)
        return status;
    for (int64_t group = 0; group < s->groups; group++) {
        cnk_gemm_args gemm = {
            .trans_a = 1, .m = b->g.taps, .n = w->wide, .k = fg,
            .a = b->weight + group * fg * b->g.taps, .lda = b->g.taps,
            .b = g_wide + group * fg * w->gw, .ldb = w->gw,
            .c = dcols + group * b->g.taps * w->wide, .ldc = w->wide,
        };
        status = cnk_gemm_serial(&gemm, worker);
        if (status != CNK_OK)
            return status;
    }
    memset(local, 0, sizeof(float) * (size_t)w->local_floats);
    for (int64_t t = 0; t < all_taps; t++) {
        float *dst = local + t / taps * w->plane + t % taps / s->kernel_w * s->dilation_h * w->wp +
                     t % s->kernel_w * s->dilation_w;
        const float *src = dcols + t * w->wide;
        for (int64_t k = 0; k < w->wide; k++)
            dst[k] += src[k];
    }
    float *dx = b->grad_x + n * b->g.image;
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t r = 0; r < s->height; r++) {
            float *dst = dx + (c * s->height + r) * s->width;
            int64_t rho = r + s->pad_top;
            const float *row = rho < w->local_rows ? local + c * w->plane + rho * w->wp : NULL;
            gather_run(dst, row, s->pad_left, 1, w->wp, s->width);
        }
    return CNK_OK;
}

static int backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const backward_ctx *b = ctx_;
    int64_t f0 = chunk % b->filter_blocks * b->filter_rows, f1 = cnk_min(b->g.per_group_filters, f0 + b->filter_rows);
    chunk /= b->filter_blocks;
    int64_t batch = b->g.s->batch;
    int64_t n0 = chunk * batch / b->groups, n1 = (chunk + 1) * batch / b->groups;
    const cnk_conv2d_shape *s = b->g.s;
    float *partial = b->partials + chunk * (b->g.weights + s->filters);
    /* The columns are rebuilt per image into this worker's scratch (cache-resident, unlike a stored copy
     * of the whole batch's), followed by room for the input gradient's columns. */
    float *cols = NULL, *dcols = NULL;
    if (!b->g.direct && s->stride_h == 1 && s->stride_w == 1) {
        wide_geometry w = wide_geometry_of(s);
        int64_t all_taps = s->channels * s->kernel_h * s->kernel_w;
        size_t size = (size_t)(w.local_floats + all_taps * w.wide * ((b->grad_x != NULL) + !w.direct_dw) +
                               s->filters * w.gw);
        float *scratch = cnk_scratch(worker, CNK_SCRATCH_KERNEL, sizeof(float) * size);
        if (scratch == NULL)
            return CNK_ENOMEM;
        for (int64_t n = n0; n < n1; n++) {
            int status = backward_wide(b, &w, n, n > n0, partial, scratch, f0, f1, worker);
            if (status != CNK_OK)
                return status;
        }
        return CNK_OK;
    }
    if (!b->g.direct) {
        size_t size = (size_t)(s->channels * s->kernel_h * s->kernel_w * b->g.pixels);
        cols = cnk_scratch(worker, CNK_SCRATCH_KERNEL, sizeof(float) * size * (b->grad_x != NULL ? 2 : 1));
        if (cols == NULL)
            return CNK_ENOMEM;
        dcols = cols + size;
    }
    for (int64_t n = n0; n < n1; n++) {
        const float *x = b->x + n * b->g.image;
        if (!b->g.direct)
            im2col(s, &b->g, x, s->channels, cols);
        int status = weight_gradient(b, n, b->g.direct ? x : cols, n > n0, partial, f0, f1, worker);
        if (status == CNK_OK && b->grad_x != NULL)
            status = input_gradient(b, n, dcols, worker);
        if (status != CNK_OK)
            return status;
    }
    return CNK_OK;
}

/* The input gradient of a stride-1 conv is itself a stride-1 conv (run by forward's fast wide path): of
 * grad_out padded by (k - 1) * dilation - pad, with each filter flipped in space and the filter and
 * channel axes swapped. Says whether that applies, and fills its shape. */
static int transposed_shape(const cnk_conv2d_shape *s, cnk_conv2d_shape *t)
{
    int64_t kh1 = (s->kernel_h - 1) * s->dilation_h, kw1 = (s->kernel_w - 1) * s->dilation_w;
    if (s->stride_h != 1 || s->stride_w != 1 || s->pad_top > kh1 || s->pad_left > kw1 ||
        s->channels / s->groups < TRANSPOSED_MIN_CHANNELS)
        return 0;
    *t = *s;
    t->channels = s->filters;
    t->height = s->out_h;
    t->width = s->out_w;
    t->filters = s->channels;
    t->pad_top = kh1 - s->pad_top;
    t->pad_left = kw1 - s->pad_left;
    t->out_h = s->height;
    t->out_w = s->width;
    return shape_ok(t) && !geometry_of(t).direct;
}

/* flipped (C, F/G, kh, kw)[c][f][i][j] = weight (F, C/G, kh, kw)[f'][c'][kh-1-i][kw-1-j] within each group. */
static void flip_weights(const cnk_conv2d_shape *s, const float *weight, float *flipped)
{
    int64_t cg = s->channels / s->groups, fg = s->filters / s->groups, kk = s->kernel_h * s->kernel_w;
    for (int64_t group = 0; group < s->groups; group++)
        for (int64_t c = 0; c < cg; c++)
            for (int64_t f = 0; f < fg; f++) {
                const float *src = weight + ((group * fg + f) * cg + c) * kk;
                float *dst = flipped + ((group * cg + c) * fg + f) * kk;
                for (int64_t k = 0; k < kk; k++)
                    dst[k] = src[kk - 1 - k];
            }
}

int cnk_conv2d_backward(const cnk_conv2d_shape *s, const float *grad_out, const float *weight,
                        const float *x, float *workspace, float *grad_weight, float *grad_bias, float *grad_x)
{
    if (s == NULL || !shape_ok(s) || grad_out == NULL || weight == NULL || x == NULL || workspace == NULL ||
        grad_weight == NULL)
        return CNK_EINVAL;
    float *partials = workspace;
    backward_ctx b = {.g = geometry_of(s), .groups = backward_groups(s), .grad_out = grad_out,
                      .weight = weight, .x = x, .partials = partials, .grad_bias = grad_bias,
                      .grad_x = grad_x};
    cnk_conv2d_shape t;
    int dx_as_conv = grad_x != NULL && !b.g.direct && transposed_shape(s, &t);
    if (dx_as_conv)
        b.grad_x = NULL; /* weight and bias gradients only; the input gradient below */
    /* A chunk that computes grad_x needs every filter's gradient; otherwise filters may be split. */
    split_filters(b.g.per_group_filters, b.grad_x != NULL ? INT32_MAX : b.groups, &b.filter_rows,
                  &b.filter_blocks);
    double fmas = (double)s->batch * s->filters * b.g.taps * b.g.pixels * (b.grad_x != NULL ? 2 : 1);
    int status = cnk_parallel_for_work(b.groups * b.filter_blocks, cnk_fma_work(fmas), backward_chunk, &b);
    int64_t stride = b.g.weights + s->filters;
    if (status == CNK_OK)
        status = cnk_reduce_partials(partials, b.groups, stride, b.g.weights, grad_weight);
    if (status == CNK_OK && grad_bias != NULL)
        status = cnk_reduce_partials(partials + b.g.weights, b.groups, stride, s->filters, grad_bias);
    if (status == CNK_OK && dx_as_conv) {
        float *flipped = partials + b.groups * stride;
        flip_weights(s, weight, flipped);
        status = forward(&t, grad_out, flipped, NULL, flipped + b.g.weights, grad_x);
    }
    return status;
}
