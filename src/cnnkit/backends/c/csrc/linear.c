#include "linear.h"

#include "gemm.h"

static int sizes_ok(int64_t batch, int64_t features, int64_t units)
{
    return cnk_size_ok(batch) && cnk_size_ok(features) && cnk_size_ok(units) &&
           cnk_product_ok(batch, features, 1, 1) && cnk_product_ok(batch, units, 1, 1) &&
           cnk_product_ok(units, features, 1, 1);
}

int cnk_linear_forward(int64_t batch, int64_t features, int64_t units, const float *x, const float *weight,
                       const float *bias, float *out)
{
    if (!sizes_ok(batch, features, units) || x == NULL || weight == NULL || out == NULL)
        return CNK_EINVAL;
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
