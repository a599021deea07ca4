#include "merge.h"

#include <string.h>

#include "threadpool.h"

#define BLOCK 16384

typedef struct {
    int64_t n;
    const float *a, *b;
    float *out;
} add_ctx;

static int add_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const add_ctx *c = ctx_;
    int64_t i1 = cnk_min(c->n, (chunk + 1) * BLOCK);
    for (int64_t i = chunk * BLOCK; i < i1; i++)
        c->out[i] = c->a[i] + c->b[i];
    return CNK_OK;
}

int cnk_add_forward(int64_t n, const float *a, const float *b, float *out)
{
    if (!cnk_size_ok(n) || a == NULL || b == NULL || out == NULL || out == b)
        return CNK_EINVAL;
    add_ctx c = {n, a, b, out};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), add_chunk, &c);
}

typedef struct {
    int64_t outer, count, total, rows;
    const int64_t *inner;
    const float *const *parts_in;
    float *const *parts_out;
    const float *whole_in;
    float *whole_out;
} concat_ctx;

/* Rows [chunk * rows, ...) of the outer axis: each input's block of a row is one memcpy. */
static int concat_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const concat_ctx *c = ctx_;
    for (int64_t o = chunk * c->rows; o < cnk_min(c->outer, (chunk + 1) * c->rows); o++) {
        int64_t offset = o * c->total;
        for (int64_t k = 0; k < c->count; k++) {
            size_t bytes = (size_t)c->inner[k] * sizeof(float);
            if (c->whole_out)
                memcpy(c->whole_out + offset, c->parts_in[k] + o * c->inner[k], bytes);
            else
                memcpy(c->parts_out[k] + o * c->inner[k], c->whole_in + offset, bytes);
            offset += c->inner[k];
        }
    }
    return CNK_OK;
}

static int concat_run(concat_ctx *c, const void *const *parts)
{
    if (!cnk_size_ok(c->outer) || !cnk_size_ok(c->count) || c->inner == NULL || parts == NULL)
        return CNK_EINVAL;
    c->total = 0;
    for (int64_t k = 0; k < c->count; k++) {
        if (!cnk_size_ok(c->inner[k]) || parts[k] == NULL)
            return CNK_EINVAL;
        c->total += c->inner[k];
        if (c->total > CNK_MAX_SIZE)
            return CNK_EINVAL;
    }
    if (!cnk_product_ok(c->outer, c->total, 1, 1))
        return CNK_EINVAL;
    c->rows = cnk_max(1, BLOCK / c->total);
    return cnk_parallel_for(cnk_ceil_div(c->outer, c->rows), concat_chunk, c);
}

int cnk_concat_forward(int64_t outer, int64_t count, const int64_t *inner, const float *const *inputs, float *out)
{
    if (out == NULL)
        return CNK_EINVAL;
    concat_ctx c = {.outer = outer, .count = count, .inner = inner, .parts_in = inputs, .whole_out = out};
    return concat_run(&c, (const void *const *)inputs);
}

int cnk_concat_backward(int64_t outer, int64_t count, const int64_t *inner, const float *grad_out,
                        float *const *grad_inputs)
{
    if (grad_out == NULL)
        return CNK_EINVAL;
    concat_ctx c = {.outer = outer, .count = count, .inner = inner, .parts_out = grad_inputs,
                    .whole_in = grad_out};
    return concat_run(&c, (const void *const *)grad_inputs);
}
