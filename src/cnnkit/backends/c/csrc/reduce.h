/* Deterministic float sums: the same bits for the same input, whatever the thread count.
 *
 * cnk_sum adds n floats in 16 interleaved lanes and then adds the lanes pairwise: vectorised, more
 * accurate than one running sum, and always the same order; cnk_dot does the same for products. cnk_reduce_partials adds per-chunk partial
 * results (see threadpool.h) in chunk order.
 */
#ifndef CNK_REDUCE_H
#define CNK_REDUCE_H

#include "common.h"

#define CNK_SUM_LANES 16

static inline float cnk_sum(const float *x, int64_t n)
{
    float lane[CNK_SUM_LANES] = {0.0f};
    int64_t i = 0;
    for (; i + CNK_SUM_LANES <= n; i += CNK_SUM_LANES)
        for (int l = 0; l < CNK_SUM_LANES; l++)
            lane[l] += x[i + l];
    for (int l = 0; i < n; i++, l++)
        lane[l] += x[i];
    for (int width = CNK_SUM_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            lane[l] += lane[l + width];
    return lane[0];
}

/* x . y over n floats, in the same 16 lanes and order as cnk_sum. */
static inline float cnk_dot(const float *x, const float *y, int64_t n)
{
    float lane[CNK_SUM_LANES] = {0.0f};
    int64_t i = 0;
    for (; i + CNK_SUM_LANES <= n; i += CNK_SUM_LANES)
        for (int l = 0; l < CNK_SUM_LANES; l++)
            lane[l] += x[i + l] * y[i + l];
    for (int l = 0; i < n; i++, l++)
        lane[l] += x[i] * y[i];
    for (int width = CNK_SUM_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            lane[l] += lane[l + width];
    return lane[0];
}

/* out[e] = partials[0 * stride + e] + partials[1 * stride + e] + ... (count terms, in that order), for
 * e in [0, size); on the thread pool. */
int cnk_reduce_partials(const float *partials, int64_t count, int64_t stride, int64_t size, float *out);

#endif
