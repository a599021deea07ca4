#include "conv.h"

#include <string.h>

#include "gemm.h"
#include "reduce.h"
#include "threadpool.h"

/* Forward runs one chunk per (image, block of output rows), each block about this many output pixels
 * wide: enough columns for the GEMM, and work for every thread even at batch 1. */
#define FORWARD_BLOCK_PIXELS 256
/* Backward sums weight and bias gradients over at most this many fixed groups of images. */
#define BACKWARD_GROUPS 8

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

int cnk_conv2d_workspace(const cnk_conv2d_shape *s, int64_t *cols, int64_t *partials)
{
    if (s == NULL || cols == NULL || partials == NULL || !shape_ok(s))
        return CNK_EINVAL;
    geometry g = geometry_of(s);
    *cols = g.direct ? 0 : s->batch * s->channels * s->kernel_h * s->kernel_w * g.pixels;
    *partials = backward_groups(s) * (g.weights + s->filters);
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

/* Columns of one image for output rows [oh0, oh1): cols[(c, i, j), oh * out_w + ow] = x[c, r, q], where
 * r = oh * stride_h + i * dilation_h - pad_top (q likewise), or 0 where (r, q) is padding. */
static void im2col(const cnk_conv2d_shape *s, const geometry *g, const float *x, float *cols, int64_t oh0,
                   int64_t oh1)
{
    for (int64_t c = 0; c < s->channels; c++)
        for (int64_t i = 0; i < s->kernel_h; i++) {
            int64_t rlo, rhi, row_offset = i * s->dilation_h - s->pad_top;
            valid_range(s->height, row_offset, s->stride_h, s->out_h, &rlo, &rhi);
            for (int64_t j = 0; j < s->kernel_w; j++) {
                int64_t qlo, qhi, col_offset = j * s->dilation_w - s->pad_left;
                valid_range(s->width, col_offset, s->stride_w, s->out_w, &qlo, &qhi);
                float *tap = cols + ((c * s->kernel_h + i) * s->kernel_w + j) * g->pixels;
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    float *dst = tap + oh * s->out_w;
                    if (oh < rlo || oh >= rhi || qlo >= qhi) {
                        memset(dst, 0, sizeof(float) * (size_t)s->out_w);
                        continue;
                    }
                    const float *src = x + (c * s->height + oh * s->stride_h + row_offset) * s->width +
                                       qlo * s->stride_w + col_offset;
                    memset(dst, 0, sizeof(float) * (size_t)qlo);
                    if (s->stride_w == 1)
                        memcpy(dst + qlo, src, sizeof(float) * (size_t)(qhi - qlo));
                    else
                        for (int64_t q = 0; q < qhi - qlo; q++)
                            dst[qlo + q] = src[q * s->stride_w];
                    memset(dst + qhi, 0, sizeof(float) * (size_t)(s->out_w - qhi));
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

typedef struct {
    geometry g;
    int64_t block_rows, blocks;
    const float *x, *weight, *bias;
    float *cols, *out;
} forward_ctx;

static int forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const forward_ctx *f = ctx_;
    const cnk_conv2d_shape *s = f->g.s;
    int64_t n = chunk / f->blocks;
    int64_t oh0 = chunk % f->blocks * f->block_rows, oh1 = cnk_min(s->out_h, oh0 + f->block_rows);
    const float *cols = f->x + n * f->g.image;
    if (!f->g.direct) {
        im2col(s, &f->g, cols, f->cols + n * s->channels * s->kernel_h * s->kernel_w * f->g.pixels, oh0, oh1);
        cols = f->cols + n * s->channels * s->kernel_h * s->kernel_w * f->g.pixels;
    }
    for (int64_t group = 0; group < s->groups; group++) {
        int64_t fg = f->g.per_group_filters;
        cnk_gemm_args gemm = {
            .m = fg, .n = (oh1 - oh0) * s->out_w, .k = f->g.taps,
            .a = f->weight + group * fg * f->g.taps, .lda = f->g.taps,
            .b = cols + group * f->g.taps * f->g.pixels + oh0 * s->out_w, .ldb = f->g.pixels,
            .c = f->out + (n * s->filters + group * fg) * f->g.pixels + oh0 * s->out_w, .ldc = f->g.pixels,
            .bias_rows = f->bias != NULL ? f->bias + group * fg : NULL,
        };
        int status = cnk_gemm_serial(&gemm, worker);
        if (status != CNK_OK)
            return status;
    }
    return CNK_OK;
}

int cnk_conv2d_forward(const cnk_conv2d_shape *s, const float *x, const float *weight, const float *bias,
                       float *cols, float *out)
{
    if (s == NULL || !shape_ok(s) || x == NULL || weight == NULL || out == NULL)
        return CNK_EINVAL;
    forward_ctx f = {.g = geometry_of(s), .x = x, .weight = weight, .bias = bias, .cols = cols, .out = out};
    if (!f.g.direct && cols == NULL)
        return CNK_EINVAL;
    f.block_rows = cnk_min(s->out_h, cnk_ceil_div(FORWARD_BLOCK_PIXELS, s->out_w));
    f.blocks = cnk_ceil_div(s->out_h, f.block_rows);
    return cnk_parallel_for(s->batch * f.blocks, forward_chunk, &f);
}

typedef struct {
    geometry g;
    int64_t groups; /* of images */
    const float *grad_out, *weight, *cols;
    float *partials, *grad_bias, *grad_x;
} backward_ctx;

/* dW_n = g_n cols_n^T, summed over this group's images into its partials (then db likewise). */
static int weight_gradient(const backward_ctx *b, int64_t n, int accumulate, float *partial, int worker)
{
    const cnk_conv2d_shape *s = b->g.s;
    const float *g = b->grad_out + n * s->filters * b->g.pixels;
    const float *cols = b->cols + n * s->channels * s->kernel_h * s->kernel_w * b->g.pixels;
    int64_t fg = b->g.per_group_filters;
    for (int64_t group = 0; group < s->groups; group++) {
        cnk_gemm_args gemm = {
            .trans_b = 1, .m = fg, .n = b->g.taps, .k = b->g.pixels,
            .a = g + group * fg * b->g.pixels, .lda = b->g.pixels,
            .b = cols + group * b->g.taps * b->g.pixels, .ldb = b->g.pixels,
            .c = partial + group * fg * b->g.taps, .ldc = b->g.taps, .accumulate = accumulate,
        };
        int status = cnk_gemm_serial(&gemm, worker);
        if (status != CNK_OK)
            return status;
    }
    if (b->grad_bias != NULL) {
        float *bias = partial + b->g.weights;
        for (int64_t f = 0; f < s->filters; f++) {
            float sum = cnk_sum(g + f * b->g.pixels, b->g.pixels);
            bias[f] = accumulate ? bias[f] + sum : sum;
        }
    }
    return CNK_OK;
}

/* dx_n = col2im(W^T g_n); for a direct conv W^T g_n is dx_n itself. */
static int input_gradient(const backward_ctx *b, int64_t n, int worker)
{
    const cnk_conv2d_shape *s = b->g.s;
    float *dx = b->grad_x + n * b->g.image;
    float *dcols = dx;
    if (!b->g.direct) {
        size_t bytes = sizeof(float) * (size_t)(s->channels * s->kernel_h * s->kernel_w * b->g.pixels);
        dcols = cnk_scratch(worker, CNK_SCRATCH_KERNEL, bytes);
        if (dcols == NULL)
            return CNK_ENOMEM;
    }
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

static int backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const backward_ctx *b = ctx_;
    int64_t batch = b->g.s->batch;
    int64_t n0 = chunk * batch / b->groups, n1 = (chunk + 1) * batch / b->groups;
    float *partial = b->partials + chunk * (b->g.weights + b->g.s->filters);
    for (int64_t n = n0; n < n1; n++) {
        int status = weight_gradient(b, n, n > n0, partial, worker);
        if (status == CNK_OK && b->grad_x != NULL)
            status = input_gradient(b, n, worker);
        if (status != CNK_OK)
            return status;
    }
    return CNK_OK;
}

int cnk_conv2d_backward(const cnk_conv2d_shape *s, const float *grad_out, const float *weight,
                        const float *cols, float *partials, float *grad_weight, float *grad_bias, float *grad_x)
{
    if (s == NULL || !shape_ok(s) || grad_out == NULL || weight == NULL || cols == NULL || partials == NULL ||
        grad_weight == NULL)
        return CNK_EINVAL;
    backward_ctx b = {.g = geometry_of(s), .groups = backward_groups(s), .grad_out = grad_out,
                      .weight = weight, .cols = cols, .partials = partials, .grad_bias = grad_bias,
                      .grad_x = grad_x};
    int status = cnk_parallel_for(b.groups, backward_chunk, &b);
    int64_t stride = b.g.weights + s->filters;
    if (status == CNK_OK)
        status = cnk_reduce_partials(partials, b.groups, stride, b.g.weights, grad_weight);
    if (status == CNK_OK && grad_bias != NULL)
        status = cnk_reduce_partials(partials + b.g.weights, b.groups, stride, s->filters, grad_bias);
    return status;
}
