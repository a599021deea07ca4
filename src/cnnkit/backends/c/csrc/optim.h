/* Optimizer update steps over one parameter array of n floats, PyTorch's rules (as train/optimizers.py),
 * elementwise in fixed blocks: in place, bitwise the same for any thread count. */
#ifndef CNK_OPTIM_H
#define CNK_OPTIM_H

#include "common.h"

/* torch.optim.SGD (dampening 0): d = grad + weight_decay p; with momentum (buf not NULL) buf = d on the
 * first step, else momentum buf + d, and d = d + momentum buf (nesterov) or buf; p -= lr d. */
CNK_API int cnk_sgd_step(int64_t n, float *param, const float *grad, float *buf, double lr, double momentum,
                         double weight_decay, int nesterov, int first);

/* torch.optim.Adam / AdamW for step t: g = grad (+ weight_decay p unless decoupled; decoupled: p *= 1 - lr
 * weight_decay); m += (1 - beta1) (g - m); v = beta2 v + (1 - beta2) g^2;
 * p -= step_size m / (sqrt(v) / bias_correction2_sqrt + eps), with step_size = lr / (1 - beta1^t). */
CNK_API int cnk_adam_step(int64_t n, float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                          double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled,
                          double step_size, double bias_correction2_sqrt);

#endif
