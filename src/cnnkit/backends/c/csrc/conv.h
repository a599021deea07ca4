/* conv2d: im2col-style GEMMs (see backends/numpy/conv.py for the same method), columns never stored.
 *
 * An image's columns are laid out (channels * kernel_h * kernel_w, out_h * out_w): W (F, C/G*kh*kw) times
 * them is that image's output, already NCHW. No column buffer exists for the batch (conv.c says how):
 * - stride 1: "wide rows". A chunk's input rows are copied, zero-padded, into a per-thread buffer of row
 *   length Wp = out_w + (kw - 1) * dilation_w; every row of a tap's columns is then a contiguous run of it,
 *   so the GEMM's B panels are plain copies of runs. With >= 32 filters per group the GEMM computes only
 *   the out_w outputs of each row, in place; with fewer (where packing costs more than multiplying) it
 *   computes all Wp and keeps out_w.
 *   Backward: dW directly from that buffer and the output gradient zero-extended to rows of Wp (AVX-512,
 *   rows of >= 128 wide pixels), or by GEMM on per-image columns without the padding columns; dx as the
 *   forward conv of grad_out with the flipped, transposed filters when a group has >= 16 input channels,
 *   else GEMM into per-image wide columns and col2im.
 * - other strides: the B panels are gathered straight from x (implicit im2col); backward rebuilds one
 *   image's columns at a time in per-thread scratch.
 * A 1x1 conv with stride 1 and no padding is "direct": x itself is its columns.
 * The weights are packed for the GEMM once per call, not once per chunk, into the caller's workspace.
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

/* The size in floats of the one workspace the caller allocates per shape (so that no call allocates) and
 * passes to forward and backward; its contents do not survive a call. */
CNK_API int cnk_conv2d_workspace(const cnk_conv2d_shape *s, int64_t *floats);

/* out (N, F, out_h, out_w) = conv(x (N, C, H, W), weight (F, C/G, kh, kw)) + bias (F, or NULL). */
CNK_API int cnk_conv2d_forward(const cnk_conv2d_shape *s, const float *x, const float *weight, const float *bias,
                               float *workspace, float *out);

/* From grad_out (N, F, out_h, out_w) and forward's input x (N, C, H, W): grad_weight,
 * grad_bias (NULL: none) and grad_x (NULL: not needed). Weight and bias gradients are sums over fixed
 * groups of images (partial sums in the workspace) added in group order. */
CNK_API int cnk_conv2d_backward(const cnk_conv2d_shape *s, const float *grad_out, const float *weight,
                                const float *x, float *workspace, float *grad_weight, float *grad_bias,
                                float *grad_x);

#endif
