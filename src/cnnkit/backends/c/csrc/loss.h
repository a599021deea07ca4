/* Classification losses, fused: one pass per row gives the row's loss and its gradient. */
#ifndef CNK_LOSS_H
#define CNK_LOSS_H

#include "common.h"

/* For logits (n, k) and labels (n,) in [0, k): row_loss[i] = logsumexp(z_i) - sum_j q_ij z_ij with
 * q = (1 - smoothing) onehot + smoothing / k, and grad (n, k) = (softmax(z) - q) / n. *loss = the mean of
 * row_loss, summed in row order in double (the same bits for any thread count). */
CNK_API int cnk_cross_entropy_forward(int64_t n, int64_t k, const float *logits, const int64_t *labels,
                                      double smoothing, double *row_loss, float *grad, double *loss);

/* Mean squared error against one-hot labels, for logits (n, k) and labels (n,) in [0, k): with
 * d = z - onehot(labels), row_loss[i] = sum_j d_ij^2 (in double), grad (n, k) = d * 2 / (n k) and *loss =
 * the sum of row_loss in row order over n k (the same bits for any thread count). */
CNK_API int cnk_mse_forward(int64_t n, int64_t k, const float *logits, const int64_t *labels, double *row_loss,
                            float *grad, double *loss);

#endif
