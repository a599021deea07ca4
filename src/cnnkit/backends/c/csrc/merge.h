/* add and concat: elementwise sums and block copies, split into fixed chunks. */
#ifndef CNK_MERGE_H
#define CNK_MERGE_H

#include "common.h"

/* out[i] = a[i] + b[i] for i < n; out may be a (to add a third input to a sum), never b. */
CNK_API int cnk_add_forward(int64_t n, const float *a, const float *b, float *out);

/* Concatenation along an axis, with each array viewed as (outer, inner): input k is (outer, inner[k])
 * and out is (outer, sum of inner). forward copies the inputs into out; backward copies out's blocks
 * (there: the output gradient) back into the inputs' arrays (there: their gradients). */
CNK_API int cnk_concat_forward(int64_t outer, int64_t count, const int64_t *inner, const float *const *inputs,
                               float *out);
CNK_API int cnk_concat_backward(int64_t outer, int64_t count, const int64_t *inner, const float *grad_out,
                                float *const *grad_inputs);

#endif
