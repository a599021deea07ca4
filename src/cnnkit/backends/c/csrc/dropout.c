#include "dropout.h"

#include "threadpool.h"

#define BLOCK 16384

typedef struct {
    int64_t n;
    float rate, scale;
    const float *x, *keep; /* keep: the finished mask, for backward */
    float *mask, *out;
} dropout_ctx;

static int forward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const dropout_ctx *c = ctx_;
    int64_t i1 = cnk_min(c->n, (chunk + 1) * BLOCK);
    for (int64_t i = chunk * BLOCK; i < i1; i++) {
        float m = c->mask[i] >= c->rate ? c->scale : 0.0f;
        c->mask[i] = m;
        c->out[i] = c->x[i] * m;
    }
    return CNK_OK;
}

static int backward_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const dropout_ctx *c = ctx_;
    int64_t i1 = cnk_min(c->n, (chunk + 1) * BLOCK);
    for (int64_t i = chunk * BLOCK; i < i1; i++)
        c->out[i] = c->x[i] * c->keep[i];
    return CNK_OK;
}

int cnk_dropout_forward(int64_t n, double rate, const float *x, float *mask, float *out)
{
    if (!cnk_size_ok(n) || !(rate >= 0.0 && rate < 1.0) || x == NULL || mask == NULL || out == NULL)
        return CNK_EINVAL;
    /* NumPy compares float32 draws with the rate as float32 (NEP 50) and scales by float32(1 / (1 - rate)). */
    dropout_ctx c = {n, (float)rate, (float)(1.0 / (1.0 - rate)), x, NULL, mask, out};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), forward_chunk, &c);
}

int cnk_dropout_backward(int64_t n, const float *mask, const float *grad_out, float *grad_x)
{
    if (!cnk_size_ok(n) || mask == NULL || grad_out == NULL || grad_x == NULL)
        return CNK_EINVAL;
    dropout_ctx c = {.n = n, .x = grad_out, .keep = mask, .out = grad_x};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), backward_chunk, &c);
}
