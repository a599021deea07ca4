/* Activations: relu, leaky_relu, sigmoid, tanh (elementwise, one pass each way) and softmax along an axis.
 *
 * Elementwise kernels split the array into fixed blocks; softmax works on (outer, axis, inner) views of
 * a C-contiguous array, one chunk per block of outer indices, so results do not depend on the threads.
 */
#ifndef CNK_ACTIVATION_H
#define CNK_ACTIVATION_H

#include "common.h"

enum cnk_activation { CNK_RELU = 0, CNK_LEAKY_RELU = 1, CNK_SIGMOID = 2, CNK_TANH = 3 };

/* out[i] = f(x[i]) for i < n; alpha is leaky_relu's slope (ignored by the others). */
CNK_API int cnk_activation_forward(int kind, float alpha, int64_t n, const float *x, float *out);

/* grad_x[i] = f'(x[i]) * grad_out[i], using x (relu, leaky_relu) or out = f(x) (sigmoid, tanh). */
CNK_API int cnk_activation_backward(int kind, float alpha, int64_t n, const float *x, const float *out,
                                    const float *grad_out, float *grad_x);

/* out = exp(x - max) / sum exp(x - max) along the middle axis of x viewed as (outer, size, inner). */
CNK_API int cnk_softmax_forward(int64_t outer, int64_t size, int64_t inner, const float *x, float *out);

/* grad_x = out * (grad_out - sum(grad_out * out)) along the same axis. */
CNK_API int cnk_softmax_backward(int64_t outer, int64_t size, int64_t inner, const float *out,
                                 const float *grad_out, float *grad_x);

#endif
