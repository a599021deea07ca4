/* linear: y = x W^T + b over a batch of feature vectors, on our GEMM (dot products for tiny batches). */
#ifndef CNK_LINEAR_H
#define CNK_LINEAR_H

#include "common.h"

/* out (batch, units) = x (batch, features) times weight (units, features) transposed, + bias (or NULL). */
CNK_API int cnk_linear_forward(int64_t batch, int64_t features, int64_t units, const float *x,
                               const float *weight, const float *bias, float *out);

/* grad_weight = grad_out^T x, grad_bias = column sums of grad_out (NULL: none), grad_x = grad_out weight
 * (NULL: not needed). */
CNK_API int cnk_linear_backward(int64_t batch, int64_t features, int64_t units, const float *x,
                                const float *weight, const float *grad_out, float *grad_weight,
                                float *grad_bias, float *grad_x);

#endif
