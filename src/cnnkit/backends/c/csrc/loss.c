#include "loss.h"

#include <math.h>

#include "threadpool.h"

#define ROWS_FLOATS 16384

typedef struct {
    int64_t n, k, rows;
    const float *logits;
    const int64_t *labels;
    float smoothing;
    double *row_loss;
    float *grad;
} ce_ctx;

static int ce_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const ce_ctx *c = ctx_;
    int64_t k = c->k;
    float keep = 1.0f - c->smoothing, spread = c->smoothing / (float)k, inv_n = 1.0f / (float)c->n;
    for (int64_t i = chunk * c->rows; i < cnk_min(c->n, (chunk + 1) * c->rows); i++) {
        const float *z = c->logits + i * k;
        float *g = c->grad + i * k;
        float max = z[0];
        for (int64_t j = 1; j < k; j++)
            max = fmaxf(max, z[j]);
        float sum = 0.0f, shifted_sum = 0.0f;
        for (int64_t j = 0; j < k; j++) {
            float shifted = z[j] - max;
            g[j] = expf(shifted);
            sum += g[j];
            shifted_sum += shifted;
        }
        int64_t label = c->labels[i];
        float lse = logf(sum), inv_sum = 1.0f / sum;
        c->row_loss[i] = (double)lse - (double)keep * (z[label] - max) - (double)spread * shifted_sum;
        for (int64_t j = 0; j < k; j++)
            g[j] = (g[j] * inv_sum - spread) * inv_n;
        g[label] -= keep * inv_n;
    }
    return CNK_OK;
}

typedef struct {
    int64_t n, k, rows;
    const float *logits;
    const int64_t *labels;
    float scale;
    double *row_loss;
    float *grad;
} mse_ctx;

static int mse_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const mse_ctx *c = ctx_;
    int64_t k = c->k;
    for (int64_t i = chunk * c->rows; i < cnk_min(c->n, (chunk + 1) * c->rows); i++) {
        const float *z = c->logits + i * k;
        float *g = c->grad + i * k;
        int64_t label = c->labels[i];
        double sum = 0.0;
        for (int64_t j = 0; j < k; j++) {
            float d = j == label ? z[j] - 1.0f : z[j];
            sum += (double)d * (double)d;
            g[j] = d * c->scale;
        }
        c->row_loss[i] = sum;
    }
    return CNK_OK;
}

/* Whether the arguments every fused loss takes are usable, labels included (each in [0, k)). */
static int loss_args_ok(int64_t n, int64_t k, const float *logits, const int64_t *labels, const double *row_loss,
                        const float *grad, const double *loss)
{
    if (!cnk_size_ok(n) || !cnk_size_ok(k) || !cnk_product_ok(n, k, 1, 1) || logits == NULL || labels == NULL ||
        row_loss == NULL || grad == NULL || loss == NULL)
        return 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return 0;
    return 1;
}

/* The rows' losses added in row order, so the total does not depend on the thread count. */
static double sum_rows(const double *row_loss, int64_t n)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++)
        total += row_loss[i];
    return total;
}

int cnk_mse_forward(int64_t n, int64_t k, const float *logits, const int64_t *labels, double *row_loss,
                    float *grad, double *loss)
{
    if (!loss_args_ok(n, k, logits, labels, row_loss, grad, loss))
        return CNK_EINVAL;
    double size = (double)n * (double)k;
    mse_ctx c = {n, k, cnk_max(1, ROWS_FLOATS / k), logits, labels, (float)(2.0 / size), row_loss, grad};
    int status = cnk_parallel_for_work(cnk_ceil_div(n, c.rows), n * k * CNK_WORK_PER_FLOAT, mse_chunk, &c);
    if (status != CNK_OK)
        return status;
    *loss = sum_rows(row_loss, n) / size;
    return CNK_OK;
}

int cnk_cross_entropy_forward(int64_t n, int64_t k, const float *logits, const int64_t *labels, double smoothing,
                              double *row_loss, float *grad, double *loss)
{
    if (!loss_args_ok(n, k, logits, labels, row_loss, grad, loss) || !(smoothing >= 0.0 && smoothing < 1.0))
        return CNK_EINVAL;
    ce_ctx c = {n, k, cnk_max(1, ROWS_FLOATS / k), logits, labels, (float)smoothing, row_loss, grad};
    int status = cnk_parallel_for_work(cnk_ceil_div(n, c.rows), 4 * n * k * CNK_WORK_PER_FLOAT, ce_chunk, &c);
    if (status != CNK_OK)
        return status;
    *loss = sum_rows(row_loss, n) / (double)n;
    return CNK_OK;
}
