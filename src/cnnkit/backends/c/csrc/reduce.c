#include "reduce.h"

#include "threadpool.h"

#define BLOCK 4096

typedef struct {
    const float *partials;
    int64_t count, stride, size;
    float *out;
} reduce_ctx;

static int reduce_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const reduce_ctx *r = ctx_;
    int64_t e0 = chunk * BLOCK, e1 = cnk_min(r->size, e0 + BLOCK);
    for (int64_t e = e0; e < e1; e++)
        r->out[e] = r->partials[e];
    for (int64_t c = 1; c < r->count; c++) {
        const float *part = r->partials + c * r->stride;
        for (int64_t e = e0; e < e1; e++)
            r->out[e] += part[e];
    }
    return CNK_OK;
}

int cnk_reduce_partials(const float *partials, int64_t count, int64_t stride, int64_t size, float *out)
{
    reduce_ctx r = {partials, count, stride, size, out};
    return cnk_parallel_for_work(cnk_ceil_div(size, BLOCK), count * size * CNK_WORK_PER_FLOAT, reduce_chunk, &r);
}
