/* batch_norm2d on the input viewed as (batch, channels, size), size = H * W (1 for features).
 *
 * Statistics are summed in double per channel, in a fixed order (two passes: the mean, then the squares
 * about it), one chunk per channel: results do not depend on the thread count. Backward recomputes
 * x_hat from x and the saved per-channel mean and 1/std instead of storing it.
 */
#ifndef CNK_NORM_H
#define CNK_NORM_H

#include "common.h"

/* out = (x - mean) * inv_std * weight + bias per channel (weight and bias NULL: no affine). Training
 * uses the batch's mean and biased variance and updates running_mean and running_var in place
 * (running = (1 - momentum) running + momentum batch, unbiased variance); eval uses the running ones.
 * Either way the mean and inv_std used are written to mean[channels] and inv_std[channels]. */
CNK_API int cnk_batch_norm_forward(int64_t batch, int64_t channels, int64_t size, const float *x,
                                   const float *weight, const float *bias, float *running_mean,
                                   float *running_var, double momentum, double eps, int training,
                                   double *mean, double *inv_std, float *out);

/* grad_x from grad_out, x and forward's mean and inv_std (the three-term formula in training, a
 * per-channel scale in eval); grad_weight = sum(grad_out * x_hat), grad_bias = sum(grad_out) per channel
 * when weight is not NULL. */
CNK_API int cnk_batch_norm_backward(int64_t batch, int64_t channels, int64_t size, const float *x,
                                    const float *grad_out, const float *weight, const double *mean,
                                    const double *inv_std, int training, float *grad_weight,
                                    float *grad_bias, float *grad_x);

#endif
