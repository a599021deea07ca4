/* dropout: the mask comes from Python's random draws (the NumPy backend's Generator), C applies it. */
#ifndef CNK_DROPOUT_H
#define CNK_DROPOUT_H

#include "common.h"

/* mask[i] = (mask[i] >= rate) * (float)(1 / (1 - rate)) in place, where mask holds uniform draws in [0, 1);
 * out[i] = x[i] * mask[i]. 0 <= rate < 1. */
CNK_API int cnk_dropout_forward(int64_t n, double rate, const float *x, float *mask, float *out);

/* grad_x[i] = grad_out[i] * mask[i]. */
CNK_API int cnk_dropout_backward(int64_t n, const float *mask, const float *grad_out, float *grad_x);

#endif
