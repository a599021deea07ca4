#include "norm.h"

#include <math.h>
#include <string.h>

#include "reduce.h"
#include "threadpool.h"

/* Each (image, channel) segment is summed in CNK_SUM_LANES float lanes (vectorised, a fixed order), and
 * the segments' sums are added in double: a serial double sum would cost a 4-cycle add per value. */
static float squared_deviations(const float *x, int64_t m, float mean)
{
    float lane[CNK_SUM_LANES] = {0.0f};
    int64_t i = 0;
    for (; i + CNK_SUM_LANES <= m; i += CNK_SUM_LANES)
        for (int l = 0; l < CNK_SUM_LANES; l++)
            lane[l] += (x[i + l] - mean) * (x[i + l] - mean);
    for (int l = 0; i < m; i++, l++)
        lane[l] += (x[i] - mean) * (x[i] - mean);
    for (int width = CNK_SUM_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            lane[l] += lane[l + width];
    return lane[0];
}

/* sum(g) and sum(g * x_hat) over one segment, x_hat = (x - mean) * inv_std. */
static void gradient_sums(const float *g, const float *x, int64_t m, float mean, float inv_std, float *sum_g,
                          float *sum_g_x_hat)
{
    /* GCC's vector extension: left to itself, GCC keeps these two lane arrays on the stack. */
    typedef float lanes __attribute__((vector_size(CNK_SUM_LANES * sizeof(float))));
    lanes acc_g = {0.0f}, acc_h = {0.0f};
    int64_t i = 0;
    for (; i + CNK_SUM_LANES <= m; i += CNK_SUM_LANES) {
        lanes gv, xv;
        memcpy(&gv, g + i, sizeof gv);
        memcpy(&xv, x + i, sizeof xv);
        acc_g += gv;
        acc_h += gv * ((xv - mean) * inv_std);
    }
    float lane_g[CNK_SUM_LANES], lane_h[CNK_SUM_LANES];
    memcpy(lane_g, &acc_g, sizeof lane_g);
    memcpy(lane_h, &acc_h, sizeof lane_h);
    for (int l = 0; i < m; i++, l++) {
        lane_g[l] += g[i];
        lane_h[l] += g[i] * ((x[i] - mean) * inv_std);
    }
    for (int width = CNK_SUM_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++) {
            lane_g[l] += lane_g[l + width];
            lane_h[l] += lane_h[l + width];
        }
    *sum_g = lane_g[0];
    *sum_g_x_hat = lane_h[0];
}

typedef struct {
    int64_t batch, channels, size;
    const float *x, *grad_out, *weight, *bias;
    float *running_mean, *running_var;
    double momentum, eps;
    int training;
    double *mean, *inv_std;
    const double *saved_mean, *saved_inv_std;
    float *out, *grad_weight, *grad_bias, *grad_x;
} norm_ctx;

static int forward_channel(void *ctx_, int64_t c, int worker)
{
    (void)worker;
    const norm_ctx *k = ctx_;
    int64_t size = k->size, stride = k->channels * size;
    const float *x = k->x + c * size;
    double mean, var;
    if (k->training) {
        double sum = 0.0, squares = 0.0;
        for (int64_t n = 0; n < k->batch; n++)
            sum += cnk_sum(x + n * stride, size);
        int64_t count = k->batch * size;
        mean = sum / (double)count;
        for (int64_t n = 0; n < k->batch; n++)
            squares += squared_deviations(x + n * stride, size, (float)mean);
        var = squares / (double)count;
        double m = k->momentum;
        k->running_mean[c] = (float)((1.0 - m) * k->running_mean[c] + m * mean);
        k->running_var[c] = (float)((1.0 - m) * k->running_var[c] + m * var * ((double)count / (count - 1)));
    } else {
        mean = k->running_mean[c];
        var = k->running_var[c];
    }
    double inv_std = 1.0 / sqrt(var + k->eps);
    k->mean[c] = mean;
    k->inv_std[c] = inv_std;
    float mu = (float)mean, scale = (float)inv_std, w = k->weight ? k->weight[c] : 1.0f,
          b = k->bias ? k->bias[c] : 0.0f;
    for (int64_t n = 0; n < k->batch; n++) {
        const float *xn = x + n * stride;
        float *out = k->out + n * stride + c * size;
        for (int64_t i = 0; i < size; i++)
            out[i] = (xn[i] - mu) * scale * w + b;
    }
    return CNK_OK;
}

static int backward_channel(void *ctx_, int64_t c, int worker)
{
    (void)worker;
    const norm_ctx *k = ctx_;
    int64_t size = k->size, stride = k->channels * size, count = k->batch * size;
    const float *x = k->x + c * size, *g = k->grad_out + c * size;
    float mu = (float)k->saved_mean[c], inv_std = (float)k->saved_inv_std[c];
    float scale = k->weight ? (float)(k->saved_inv_std[c] * k->weight[c]) : inv_std;
    double sum_g = 0.0, sum_g_x_hat = 0.0;
    if (k->training || k->weight) {
        for (int64_t n = 0; n < k->batch; n++) {
            float segment_g, segment_g_x_hat;
            gradient_sums(g + n * stride, x + n * stride, size, mu, inv_std, &segment_g, &segment_g_x_hat);
            sum_g += segment_g;
            sum_g_x_hat += segment_g_x_hat;
        }
    }
    if (k->weight) {
        k->grad_weight[c] = (float)sum_g_x_hat;
        k->grad_bias[c] = (float)sum_g;
    }
    if (k->grad_x == NULL)
        return CNK_OK;
    float mean_g = (float)(sum_g / (double)count), mean_g_x_hat = (float)(sum_g_x_hat / (double)count);
    for (int64_t n = 0; n < k->batch; n++) {
        const float *xn = x + n * stride, *gn = g + n * stride;
        float *dx = k->grad_x + n * stride + c * size;
        if (k->training)
            for (int64_t i = 0; i < size; i++)
                dx[i] = (gn[i] - (xn[i] - mu) * inv_std * mean_g_x_hat - mean_g) * scale;
        else
            for (int64_t i = 0; i < size; i++)
                dx[i] = gn[i] * scale;
    }
    return CNK_OK;
}

static int sizes_ok(int64_t batch, int64_t channels, int64_t size)
{
    return cnk_size_ok(batch) && cnk_size_ok(channels) && cnk_size_ok(size) &&
           cnk_product_ok(batch, channels, size, 1);
}

int cnk_batch_norm_forward(int64_t batch, int64_t channels, int64_t size, const float *x, const float *weight,
                           const float *bias, float *running_mean, float *running_var, double momentum,
                           double eps, int training, double *mean, double *inv_std, float *out)
{
    if (!sizes_ok(batch, channels, size) || x == NULL || (weight == NULL) != (bias == NULL) ||
        running_mean == NULL || running_var == NULL || mean == NULL || inv_std == NULL || out == NULL ||
        !(eps > 0.0) || !(momentum >= 0.0 && momentum <= 1.0) || (training && batch * size < 2))
        return CNK_EINVAL;
    norm_ctx k = {.batch = batch, .channels = channels, .size = size, .x = x, .weight = weight, .bias = bias,
                  .running_mean = running_mean, .running_var = running_var, .momentum = momentum, .eps = eps,
                  .training = training, .mean = mean, .inv_std = inv_std, .out = out};
    return cnk_parallel_for_work(channels, 2 * batch * channels * size * CNK_WORK_PER_FLOAT, forward_channel, &k);
}

int cnk_batch_norm_backward(int64_t batch, int64_t channels, int64_t size, const float *x, const float *grad_out,
                            const float *weight, const double *mean, const double *inv_std, int training,
                            float *grad_weight, float *grad_bias, float *grad_x)
{
    if (!sizes_ok(batch, channels, size) || x == NULL || grad_out == NULL || mean == NULL || inv_std == NULL ||
        (weight != NULL && (grad_weight == NULL || grad_bias == NULL)))
        return CNK_EINVAL;
    norm_ctx k = {.batch = batch, .channels = channels, .size = size, .x = x, .grad_out = grad_out,
                  .weight = weight, .training = training, .saved_mean = mean, .saved_inv_std = inv_std,
                  .grad_weight = grad_weight, .grad_bias = grad_bias, .grad_x = grad_x};
    return cnk_parallel_for_work(channels, 3 * batch * channels * size * CNK_WORK_PER_FLOAT, backward_channel, &k);
}
