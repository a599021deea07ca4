#include "activation.h"

#include <math.h>

#include "threadpool.h"

#define BLOCK 16384
/* Softmax chunks hold whole rows of the outer axis, about this many floats. */
#define SOFTMAX_FLOATS 16384

typedef struct {
    int kind;
    float alpha;
    int64_t n;
    const float *x, *out, *grad_out;
    float *y, *grad_x;
} pointwise_ctx;

static float sigmoid(float x)
{
    /* exp(min(x, 0)) / (1 + exp(-|x|)): both exponents are <= 0, so nothing overflows. */
    return expf(fminf(x, 0.0f)) / (1.0f + expf(-fabsf(x)));
}

static int forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const pointwise_ctx *c = ctx_;
    int64_t i0 = chunk * BLOCK, i1 = cnk_min(c->n, i0 + BLOCK);
    const float *x = c->x;
    float *y = c->y, alpha = c->alpha;
    switch (c->kind) {
    case CNK_RELU:
        for (int64_t i = i0; i < i1; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case CNK_LEAKY_RELU:
        for (int64_t i = i0; i < i1; i++)
            y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case CNK_SIGMOID:
        for (int64_t i = i0; i < i1; i++)
            y[i] = sigmoid(x[i]);
        break;
    default:
        for (int64_t i = i0; i < i1; i++)
            y[i] = tanhf(x[i]);
    }
    return CNK_OK;
}

static int backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const pointwise_ctx *c = ctx_;
    int64_t i0 = chunk * BLOCK, i1 = cnk_min(c->n, i0 + BLOCK);
    const float *x = c->x, *y = c->out, *dy = c->grad_out;
    float *dx = c->grad_x, alpha = c->alpha;
    switch (c->kind) {
    case CNK_RELU:
        for (int64_t i = i0; i < i1; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case CNK_LEAKY_RELU:
        for (int64_t i = i0; i < i1; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
        break;
    case CNK_SIGMOID:
        for (int64_t i = i0; i < i1; i++)
            dx[i] = dy[i] * ((1.0f - y[i]) * y[i]);
        break;
    default:
        for (int64_t i = i0; i < i1; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
    }
    return CNK_OK;
}

static int kind_ok(int kind) { return kind >= CNK_RELU && kind <= CNK_TANH; }

int cnk_activation_forward(int kind, float alpha, int64_t n, const float *x, float *out)
{
    if (!kind_ok(kind) || !cnk_size_ok(n) || x == NULL || out == NULL)
        return CNK_EINVAL;
    pointwise_ctx c = {.kind = kind, .alpha = alpha, .n = n, .x = x, .y = out};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), forward_chunk, &c);
}

int cnk_activation_backward(int kind, float alpha, int64_t n, const float *x, const float *out,
                            const float *grad_out, float *grad_x)
{
    int needs_x = kind == CNK_RELU || kind == CNK_LEAKY_RELU;
    if (!kind_ok(kind) || !cnk_size_ok(n) || (needs_x ? x == NULL : out == NULL) || grad_out == NULL ||
        grad_x == NULL)
        return CNK_EINVAL;
    pointwise_ctx c = {.kind = kind, .alpha = alpha, .n = n, .x = x, .out = out, .grad_out = grad_out,
                       .grad_x = grad_x};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), backward_chunk, &c);
}

typedef struct {
    int64_t outer, size, inner, per_chunk;
    const float *a, *b;
    float *out;
} softmax_ctx;

/* One (size, inner) slab: running per-inner maxima and sums in the worker's scratch. */
static int softmax_forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const softmax_ctx *c = ctx_;
    int64_t size = c->size, inner = c->inner;
    float *max = cnk_scratch(worker, CNK_SCRATCH_KERNEL, 2 * (size_t)inner * sizeof(float));
    if (max == NULL)
        return CNK_ENOMEM;
    float *sum = max + inner;
    for (int64_t o = chunk * c->per_chunk; o < cnk_min(c->outer, (chunk + 1) * c->per_chunk); o++) {
        const float *x = c->a + o * size * inner;
        float *y = c->out + o * size * inner;
        for (int64_t i = 0; i < inner; i++)
            max[i] = x[i], sum[i] = 0.0f;
        for (int64_t j = 1; j < size; j++)
            for (int64_t i = 0; i < inner; i++)
                max[i] = fmaxf(max[i], x[j * inner + i]);
        for (int64_t j = 0; j < size; j++)
            for (int64_t i = 0; i < inner; i++) {
                float e = expf(x[j * inner + i] - max[i]);
                y[j * inner + i] = e;
                sum[i] += e;
            }
        for (int64_t i = 0; i < inner; i++)
            sum[i] = 1.0f / sum[i];
        for (int64_t j = 0; j < size; j++)
            for (int64_t i = 0; i < inner; i++)
                y[j * inner + i] *= sum[i];
    }
    return CNK_OK;
}

static int softmax_backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    const softmax_ctx *c = ctx_;
    int64_t size = c->size, inner = c->inner;
    float *dot = cnk_scratch(worker, CNK_SCRATCH_KERNEL, (size_t)inner * sizeof(float));
    if (dot == NULL)
        return CNK_ENOMEM;
    for (int64_t o = chunk * c->per_chunk; o < cnk_min(c->outer, (chunk + 1) * c->per_chunk); o++) {
        const float *y = c->a + o * size * inner, *dy = c->b + o * size * inner;
        float *dx = c->out + o * size * inner;
        for (int64_t i = 0; i < inner; i++)
            dot[i] = 0.0f;
        for (int64_t j = 0; j < size; j++)
            for (int64_t i = 0; i < inner; i++)
                dot[i] += dy[j * inner + i] * y[j * inner + i];
        for (int64_t j = 0; j < size; j++)
            for (int64_t i = 0; i < inner; i++)
                dx[j * inner + i] = y[j * inner + i] * (dy[j * inner + i] - dot[i]);
    }
    return CNK_OK;
}

static int softmax_run(int64_t outer, int64_t size, int64_t inner, const float *a, const float *b, float *out,
                       cnk_chunk_fn fn)
{
    if (!cnk_size_ok(outer) || !cnk_size_ok(size) || !cnk_size_ok(inner) ||
        !cnk_product_ok(outer, size, inner, 1) || a == NULL || b == NULL || out == NULL)
        return CNK_EINVAL;
    softmax_ctx c = {outer, size, inner, cnk_max(1, SOFTMAX_FLOATS / (size * inner)), a, b, out};
    return cnk_parallel_for(cnk_ceil_div(outer, c.per_chunk), fn, &c);
}

int cnk_softmax_forward(int64_t outer, int64_t size, int64_t inner, const float *x, float *out)
{
    return softmax_run(outer, size, inner, x, x, out, softmax_forward_chunk);
}

int cnk_softmax_backward(int64_t outer, int64_t size, int64_t inner, const float *out, const float *grad_out,
                         float *grad_x)
{
    return softmax_run(outer, size, inner, out, grad_out, grad_x, softmax_backward_chunk);
}
