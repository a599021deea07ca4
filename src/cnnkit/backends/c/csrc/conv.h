/* conv2d: im2col into per-image columns, then our GEMM (see backends/numpy/conv.py for the same method).
 *
 * Columns are laid out (batch, channels * kernel_h * kernel_w, out_h * out_w): W (F, C/G*kh*kw) times an
 * image's columns is that image's output, already NCHW. A 1x1 conv with stride 1 and no padding is
 * "direct": x itself is its columns, and no column buffer is used.
 */
#ifndef CNK_CONV_H
#define CNK_CONV_H

#include "common.h"

/* Geometry of one conv2d bound to a batch size; pads are the top and left ones (windows that reach into
 * the bottom/right padding read zeros, so those pads are implied by out_h and out_w). */
typedef struct {
    int64_t batch, channels, height, width;
    int64_t filters, groups;
    int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int64_t pad_top, pad_left;
    int64_t out_h, out_w;
} cnk_conv2d_shape;

/* The workspaces the caller allocates once: `cols` floats for the columns (0 for a direct conv, which
 * then passes x wherever columns are asked for), `partials` floats for backward's per-chunk sums. */
CNK_API int cnk_conv2d_workspace(const cnk_conv2d_shape *s, int64_t *cols, int64_t *partials);

/* out (N, F, out_h, out_w) = conv(x (N, C, H, W), weight (F, C/G, kh, kw)) + bias (F, or NULL). Fills
 * cols (for backward) unless the conv is direct (cols may then be NULL). */
CNK_API int cnk_conv2d_forward(const cnk_conv2d_shape *s, const float *x, const float *weight, const float *bias,
                               float *cols, float *out);

/* From grad_out (N, F, out_h, out_w) and the columns forward filled (x for a direct conv): grad_weight,
 * grad_bias (NULL: none) and grad_x (NULL: not needed). Weight and bias gradients are sums over fixed
 * groups of images (into `partials`) added in group order. */
CNK_API int cnk_conv2d_backward(const cnk_conv2d_shape *s, const float *grad_out, const float *weight,
                                const float *cols, float *partials, float *grad_weight, float *grad_bias,
                                float *grad_x);

#endif
