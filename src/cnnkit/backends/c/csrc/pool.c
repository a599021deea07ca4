#include "pool.h"

#include <string.h>

#include "reduce.h"
#include "threadpool.h"

/* A chunk holds whole planes, about this many input floats: enough to amortise the dispatch. */
#define CHUNK_FLOATS 32768

/* What a pass does to one plane: read x (the input) and/or g (the output's gradient), write y (the output
 * or the input's gradient). Each points to the plane, or is NULL if the pass does not use it. */
typedef void (*plane_fn)(const cnk_pool2d_shape *s, const float *x, const float *g, float *y);

/* A pass over all planes: x, g and y as above but for the whole batch, y in planes of y_plane floats. */
typedef struct {
    const cnk_pool2d_shape *s;
    plane_fn plane;
    const float *x, *g;
    float *y;
    int64_t y_plane, planes, per_chunk;
} pool_ctx;

static int shape_ok(const cnk_pool2d_shape *s)
{
    const int64_t sizes[] = {s->batch,    s->channels, s->height, s->width, s->kernel_h,
                             s->kernel_w, s->stride_h, s->stride_w, s->out_h, s->out_w};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (!cnk_size_ok(sizes[i]))
            return 0;
    const int64_t pads[] = {s->pad_top, s->pad_left, s->pad_bottom, s->pad_right};
    for (int i = 0; i < 4; i++)
        if (pads[i] < 0 || pads[i] >= (i % 2 ? s->kernel_w : s->kernel_h))
            return 0;
    /* Every window starts inside the input or its top/left padding, so it overlaps the input. */
    return (s->out_h - 1) * s->stride_h - s->pad_top < s->height &&
           (s->out_w - 1) * s->stride_w - s->pad_left < s->width &&
           cnk_product_ok(s->batch, s->channels, s->height, s->width) &&
           cnk_product_ok(s->batch, s->channels, s->out_h, s->out_w);
}

/* 2x2 windows with stride 2 and no padding: the fast path (PERF-NOTES: C wins outright here). */
static int is_2x2(const cnk_pool2d_shape *s)
{
    return s->kernel_h == 2 && s->kernel_w == 2 && s->stride_h == 2 && s->stride_w == 2 && s->pad_top == 0 &&
           s->pad_left == 0 && 2 * s->out_h <= s->height && 2 * s->out_w <= s->width;
}

/* Plane p of an array of planes of `size` floats, or NULL for an array the pass does not use. */
static const float *plane_at(const float *planes, int64_t p, int64_t size)
{
    return planes == NULL ? NULL : planes + p * size;
}

static int pool_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const pool_ctx *c = ctx_;
    const cnk_pool2d_shape *s = c->s;
    int64_t in_plane = s->height * s->width, out_plane = s->out_h * s->out_w;
    for (int64_t p = chunk * c->per_chunk; p < cnk_min(c->planes, (chunk + 1) * c->per_chunk); p++)
        c->plane(s, plane_at(c->x, p, in_plane), plane_at(c->g, p, out_plane), c->y + p * c->y_plane);
    return CNK_OK;
}

/* The pass `fast_2x2` (for 2x2 windows, stride 2, no padding) or else `general` on every plane. */
static int run_planes(const cnk_pool2d_shape *s, pool_ctx *ctx, plane_fn fast_2x2, plane_fn general)
{
    ctx->s = s;
    ctx->plane = is_2x2(s) ? fast_2x2 : general;
    ctx->planes = s->batch * s->channels;
    ctx->per_chunk = cnk_max(1, CHUNK_FLOATS / (s->height * s->width));
    int64_t work = ctx->planes * s->height * s->width * CNK_WORK_PER_FLOAT;
    return cnk_parallel_for_work(cnk_ceil_div(ctx->planes, ctx->per_chunk), work, pool_chunk, ctx);
}

/* Window [r0, r1) x [q0, q1) of output (oh, ow), clipped to the input. */
typedef struct {
    int64_t r0, r1, q0, q1;
} span;

static span window_of(const cnk_pool2d_shape *s, int64_t oh, int64_t ow)
{
    int64_t r = oh * s->stride_h - s->pad_top, q = ow * s->stride_w - s->pad_left;
    span w = {cnk_max(r, 0), cnk_min(r + s->kernel_h, s->height), cnk_max(q, 0), cnk_min(q + s->kernel_w, s->width)};
    return w;
}

/* Index in the plane of the first maximal element of a window (strictly greater replaces). */
static int64_t argmax_of(const cnk_pool2d_shape *s, const float *x, span w)
{
    int64_t best = w.r0 * s->width + w.q0;
    for (int64_t r = w.r0; r < w.r1; r++)
        for (int64_t q = w.q0; q < w.q1; q++)
            if (x[r * s->width + q] > x[best])
                best = r * s->width + q;
    return best;
}

static void max_2x2_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *out)
{
    (void)g;
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        const float *a = x + 2 * oh * s->width, *b = a + s->width;
        float *o = out + oh * s->out_w;
        for (int64_t ow = 0; ow < s->out_w; ow++) {
            float top = a[2 * ow] > a[2 * ow + 1] ? a[2 * ow] : a[2 * ow + 1];
            float bottom = b[2 * ow] > b[2 * ow + 1] ? b[2 * ow] : b[2 * ow + 1];
            o[ow] = top > bottom ? top : bottom;
        }
    }
}

/* Zeroes what no 2x2 window reads: the last column and row of an odd-sized plane. */
static void zero_2x2_rest(const cnk_pool2d_shape *s, float *gx)
{
    for (int64_t r = 0; r < 2 * s->out_h; r++)
        for (int64_t q = 2 * s->out_w; q < s->width; q++)
            gx[r * s->width + q] = 0.0f;
    if (2 * s->out_h < s->height)
        memset(gx + 2 * s->out_h * s->width, 0, (size_t)((s->height - 2 * s->out_h) * s->width) * sizeof *gx);
}

/* v where cond (0 or 1), else 0, without a branch. */
static inline float keep_if(int cond, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits &= (uint32_t)0 - (uint32_t)cond;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Each window's gradient to its first maximum (strictly greater replaces, in row-major order). */
static void max_2x2_backward_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *gx)
{
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        const float *a = x + 2 * oh * s->width, *b = a + s->width, *go = g + oh * s->out_w;
        float *ga = gx + 2 * oh * s->width, *gb = ga + s->width;
        for (int64_t ow = 0; ow < s->out_w; ow++) {
            /* Branch-free (random data mispredicts branches): the first maximum of each row, then the
             * bottom row's only if strictly greater. */
            float a0 = a[2 * ow], a1 = a[2 * ow + 1], b0 = b[2 * ow], b1 = b[2 * ow + 1], v = go[ow];
            int right_a = a1 > a0, right_b = b1 > b0;
            int bottom = (right_b ? b1 : b0) > (right_a ? a1 : a0);
            ga[2 * ow] = keep_if((!right_a) & (!bottom), v);
            ga[2 * ow + 1] = keep_if(right_a & (!bottom), v);
            gb[2 * ow] = keep_if((!right_b) & bottom, v);
            gb[2 * ow + 1] = keep_if(right_b & bottom, v);
        }
    }
    zero_2x2_rest(s, gx);
}

static void avg_2x2_backward_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *gx)
{
    (void)x;
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        const float *go = g + oh * s->out_w;
        float *ga = gx + 2 * oh * s->width, *gb = ga + s->width;
        for (int64_t ow = 0; ow < s->out_w; ow++) {
            float v = go[ow] * 0.25f;
            ga[2 * ow] = ga[2 * ow + 1] = gb[2 * ow] = gb[2 * ow + 1] = v;
        }
    }
    zero_2x2_rest(s, gx);
}

static void max_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *out)
{
    (void)g;
    for (int64_t oh = 0; oh < s->out_h; oh++)
        for (int64_t ow = 0; ow < s->out_w; ow++)
            out[oh * s->out_w + ow] = x[argmax_of(s, x, window_of(s, oh, ow))];
}

static void max_backward_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *gx)
{
    memset(gx, 0, (size_t)(s->height * s->width) * sizeof *gx);
    for (int64_t oh = 0; oh < s->out_h; oh++)
        for (int64_t ow = 0; ow < s->out_w; ow++)
            gx[argmax_of(s, x, window_of(s, oh, ow))] += g[oh * s->out_w + ow];
}

/* The divisor of output (oh, ow): positions inside the input, or inside the padded input. */
static float divisor_of(const cnk_pool2d_shape *s, int64_t oh, int64_t ow, span w)
{
    if (!s->count_include_pad)
        return (float)((w.r1 - w.r0) * (w.q1 - w.q0));
    int64_t r = oh * s->stride_h - s->pad_top, q = ow * s->stride_w - s->pad_left;
    int64_t rows = cnk_min(r + s->kernel_h, s->height + s->pad_bottom) - r;
    int64_t cols = cnk_min(q + s->kernel_w, s->width + s->pad_right) - q;
    return (float)(rows * cols);
}

static void avg_2x2_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *out)
{
    (void)g;
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        const float *a = x + 2 * oh * s->width, *b = a + s->width;
        float *o = out + oh * s->out_w;
        for (int64_t ow = 0; ow < s->out_w; ow++)
            o[ow] = (a[2 * ow] + a[2 * ow + 1] + b[2 * ow] + b[2 * ow + 1]) * 0.25f;
    }
}

static void avg_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *out)
{
    (void)g;
    for (int64_t oh = 0; oh < s->out_h; oh++)
        for (int64_t ow = 0; ow < s->out_w; ow++) {
            span w = window_of(s, oh, ow);
            float sum = 0.0f;
            for (int64_t r = w.r0; r < w.r1; r++)
                for (int64_t q = w.q0; q < w.q1; q++)
                    sum += x[r * s->width + q];
            out[oh * s->out_w + ow] = sum * (1.0f / divisor_of(s, oh, ow, w));
        }
}

static void avg_backward_plane(const cnk_pool2d_shape *s, const float *x, const float *g, float *gx)
{
    (void)x;
    memset(gx, 0, (size_t)(s->height * s->width) * sizeof *gx);
    for (int64_t oh = 0; oh < s->out_h; oh++)
        for (int64_t ow = 0; ow < s->out_w; ow++) {
            span w = window_of(s, oh, ow);
            float share = g[oh * s->out_w + ow] * (1.0f / divisor_of(s, oh, ow, w));
            for (int64_t r = w.r0; r < w.r1; r++)
                for (int64_t q = w.q0; q < w.q1; q++)
                    gx[r * s->width + q] += share;
        }
}

int cnk_max_pool2d_forward(const cnk_pool2d_shape *s, const float *x, float *out)
{
    if (s == NULL || x == NULL || out == NULL || !shape_ok(s))
        return CNK_EINVAL;
    pool_ctx c = {.x = x, .y = out, .y_plane = s->out_h * s->out_w};
    return run_planes(s, &c, max_2x2_plane, max_plane);
}

int cnk_max_pool2d_backward(const cnk_pool2d_shape *s, const float *x, const float *grad_out, float *grad_x)
{
    if (s == NULL || x == NULL || grad_out == NULL || grad_x == NULL || !shape_ok(s))
        return CNK_EINVAL;
    pool_ctx c = {.x = x, .g = grad_out, .y = grad_x, .y_plane = s->height * s->width};
    return run_planes(s, &c, max_2x2_backward_plane, max_backward_plane);
}

int cnk_avg_pool2d_forward(const cnk_pool2d_shape *s, const float *x, float *out)
{
    if (s == NULL || x == NULL || out == NULL || !shape_ok(s))
        return CNK_EINVAL;
    pool_ctx c = {.x = x, .y = out, .y_plane = s->out_h * s->out_w};
    return run_planes(s, &c, avg_2x2_plane, avg_plane);
}

int cnk_avg_pool2d_backward(const cnk_pool2d_shape *s, const float *grad_out, float *grad_x)
{
    if (s == NULL || grad_out == NULL || grad_x == NULL || !shape_ok(s))
        return CNK_EINVAL;
    pool_ctx c = {.g = grad_out, .y = grad_x, .y_plane = s->height * s->width};
    return run_planes(s, &c, avg_2x2_backward_plane, avg_backward_plane);
}

typedef struct {
    int64_t planes, size, per_chunk;
    const float *in;
    float *out;
} global_ctx;

static int global_forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const global_ctx *c = ctx_;
    float scale = 1.0f / (float)c->size;
    for (int64_t p = chunk * c->per_chunk; p < cnk_min(c->planes, (chunk + 1) * c->per_chunk); p++)
        c->out[p] = cnk_sum(c->in + p * c->size, c->size) * scale;
    return CNK_OK;
}

static int global_backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const global_ctx *c = ctx_;
    float scale = 1.0f / (float)c->size;
    for (int64_t p = chunk * c->per_chunk; p < cnk_min(c->planes, (chunk + 1) * c->per_chunk); p++) {
        float share = c->in[p] * scale;
        float *gx = c->out + p * c->size;
        for (int64_t i = 0; i < c->size; i++)
            gx[i] = share;
    }
    return CNK_OK;
}

static int global_run(int64_t planes, int64_t size, const float *in, float *out, cnk_chunk_fn fn)
{
    if (!cnk_size_ok(planes) || !cnk_size_ok(size) || !cnk_product_ok(planes, size, 1, 1) || in == NULL ||
        out == NULL)
        return CNK_EINVAL;
    global_ctx c = {planes, size, cnk_max(1, CHUNK_FLOATS / size), in, out};
    return cnk_parallel_for_work(cnk_ceil_div(planes, c.per_chunk), planes * size * CNK_WORK_PER_FLOAT, fn, &c);
}

int cnk_global_avg_pool2d_forward(int64_t planes, int64_t size, const float *x, float *out)
{
    return global_run(planes, size, x, out, global_forward_chunk);
}

int cnk_global_avg_pool2d_backward(int64_t planes, int64_t size, const float *grad_out, float *grad_x)
{
    return global_run(planes, size, grad_out, grad_x, global_backward_chunk);
}
