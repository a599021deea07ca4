#include "linear.h"

#include "gemm.h"
#include "reduce.h"
#include "threadpool.h"

static int sizes_ok(int64_t batch, int64_t features, int64_t units)
{
    return cnk_size_ok(batch) && cnk_size_ok(features) && cnk_size_ok(units) &&
           cnk_product_ok(batch, features, 1, 1) && cnk_product_ok(batch, units, 1, 1) &&
           cnk_product_ok(units, features, 1, 1);
}

/* Below this batch size the forward pass is dot products of weight rows with the inputs: a GEMM would
 * spend more time packing the weights than multiplying (batch-1 inference). */
#define DOT_BATCH 4
/* Units per chunk of the dot-product path. */
#define DOT_UNITS 64

typedef struct {
    int64_t batch, features, units;
    const float *x, *weight, *bias;
    float *out;
} dot_ctx;

static int dot_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const dot_ctx *d = ctx_;
    int64_t u0 = chunk * DOT_UNITS, u1 = cnk_min(d->units, u0 + DOT_UNITS);
    for (int64_t n = 0; n < d->batch; n++)
        for (int64_t u = u0; u < u1; u++) {
            float dot = cnk_dot(d->x + n * d->features, d->weight + u * d->features, d->features);
            d->out[n * d->units + u] = d->bias != NULL ? dot + d->bias[u] : dot;
        }
    return CNK_OK;
}

int cnk_linear_forward(int64_t batch, int64_t features, int64_t units, const float *x, const float *weight,
                       const float *bias, float *out)
{
    if (!sizes_ok(batch, features, units) || x == NULL || weight == NULL || out == NULL)
        return CNK_EINVAL;
    if (batch < DOT_BATCH) {
        dot_ctx d = {batch, features, units, x, weight, bias, out};
        return cnk_parallel_for_work(cnk_ceil_div(units, DOT_UNITS), cnk_fma_work((double)batch * units * features),
                                     dot_chunk, &d);
    }
    cnk_gemm_args gemm = {.trans_b = 1, .m = batch, .n = units, .k = features, .a = x, .lda = features,
                          .b = weight, .ldb = features, .c = out, .ldc = units, .bias_cols = bias};
    return cnk_gemm_parallel(&gemm);
}

int cnk_linear_backward(int64_t batch, int64_t features, int64_t units, const float *x, const float *weight,
                        const float *grad_out, float *grad_weight, float *grad_bias, float *grad_x)
{
    if (!sizes_ok(batch, features, units) || x == NULL || weight == NULL || grad_out == NULL ||
        grad_weight == NULL)
        return CNK_EINVAL;
    cnk_gemm_args dw = {.trans_a = 1, .m = units, .n = features, .k = batch, .a = grad_out, .lda = units,
                        .b = x, .ldb = features, .c = grad_weight, .ldc = features};
    int status = cnk_gemm_parallel(&dw);
    if (status == CNK_OK && grad_bias != NULL) {
        /* Column sums, one row at a time: each sum runs over the batch in order. */
        for (int64_t u = 0; u < units; u++)
            grad_bias[u] = grad_out[u];
        for (int64_t n = 1; n < batch; n++)
            for (int64_t u = 0; u < units; u++)
                grad_bias[u] += grad_out[n * units + u];
    }
    if (status == CNK_OK && grad_x != NULL) {
        cnk_gemm_args dx = {.m = batch, .n = features, .k = units, .a = grad_out, .lda = units, .b = weight,
                            .ldb = features, .c = grad_x, .ldc = features};
        status = cnk_gemm_parallel(&dx);
    }
    return status;
}
