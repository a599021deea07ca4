/* Pooling over NCHW planes: max_pool2d, avg_pool2d (forward and backward) and global_avg_pool2d.
 *
 * Windows are clipped to the input, so padding is never read: for max pooling it counts as -inf, for
 * average pooling it only changes the divisor (count_include_pad). Every window overlaps the input
 * (Python checks that each pad is smaller than the kernel). Work is split into chunks of whole planes
 * (image, channel), so no chunk touches another's memory and results do not depend on the thread count.
 */
#ifndef CNK_POOL_H
#define CNK_POOL_H

#include "common.h"

/* Geometry of one max_pool2d / avg_pool2d bound to a batch size. pad_bottom and pad_right only matter
 * for count_include_pad: a window's positions inside the padded input count, its ceil_mode overhang not. */
typedef struct {
    int64_t batch, channels, height, width;
    int64_t kernel_h, kernel_w, stride_h, stride_w;
    int64_t pad_top, pad_left, pad_bottom, pad_right;
    int64_t out_h, out_w;
    int64_t count_include_pad;
} cnk_pool2d_shape;

/* out (N, C, out_h, out_w) = the maximum of each window. */
CNK_API int cnk_max_pool2d_forward(const cnk_pool2d_shape *s, const float *x, float *out);

/* grad_x (N, C, H, W) = grad_out routed to the first maximal element of each window (row-major order,
 * PyTorch's rule for ties), recomputed from x; pixels no window picks get 0. */
CNK_API int cnk_max_pool2d_backward(const cnk_pool2d_shape *s, const float *x, const float *grad_out,
                                    float *grad_x);

/* out = the mean of each window (divisor per count_include_pad). */
CNK_API int cnk_avg_pool2d_forward(const cnk_pool2d_shape *s, const float *x, float *out);

/* grad_x = each window's grad_out / divisor, added to every input pixel the window reads. */
CNK_API int cnk_avg_pool2d_backward(const cnk_pool2d_shape *s, const float *grad_out, float *grad_x);

/* out (planes) = the mean of each of `planes` planes of `size` floats; grad_x = grad_out / size spread. */
CNK_API int cnk_global_avg_pool2d_forward(int64_t planes, int64_t size, const float *x, float *out);
CNK_API int cnk_global_avg_pool2d_backward(int64_t planes, int64_t size, const float *grad_out, float *grad_x);

#endif
