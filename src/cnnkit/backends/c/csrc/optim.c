#include "optim.h"

#include <math.h>

#include "threadpool.h"

#define BLOCK 16384

/* Python's float scalars meet float32 arrays as float32 (NumPy's NEP 50): the same here. */
typedef struct {
    int64_t n;
    float *p, *buf, *m, *v;
    const float *g;
    float lr, momentum, weight_decay, keep1, beta2, keep2, eps, decay, step_size, bc2;
    int nesterov, first, decoupled;
} optim_ctx;

static int sgd_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const optim_ctx *c = ctx_;
    int64_t i1 = cnk_min(c->n, (chunk + 1) * BLOCK);
    for (int64_t i = chunk * BLOCK; i < i1; i++) {
        float d = c->weight_decay != 0.0f ? c->p[i] * c->weight_decay + c->g[i] : c->g[i];
        if (c->buf != NULL) {
            float b = c->first ? d : c->buf[i] * c->momentum + d;
            c->buf[i] = b;
            d = c->nesterov ? d + b * c->momentum : b;
        }
        c->p[i] -= d * c->lr;
    }
    return CNK_OK;
}

static int adam_chunk(void *ctx_, int64_t chunk, int worker)
{
    (void)worker;
    const optim_ctx *c = ctx_;
    int64_t i1 = cnk_min(c->n, (chunk + 1) * BLOCK);
    for (int64_t i = chunk * BLOCK; i < i1; i++) {
        float g = c->g[i];
        if (c->weight_decay != 0.0f && c->decoupled)
            c->p[i] *= c->decay;
        else if (c->weight_decay != 0.0f)
            g = c->p[i] * c->weight_decay + g;
        c->m[i] += (g - c->m[i]) * c->keep1;
        c->v[i] = c->v[i] * c->beta2 + g * g * c->keep2;
        float denom = sqrtf(c->v[i]) / c->bc2 + c->eps;
        c->p[i] -= c->m[i] / denom * c->step_size;
    }
    return CNK_OK;
}

int cnk_sgd_step(int64_t n, float *param, const float *grad, float *buf, double lr, double momentum,
                 double weight_decay, int nesterov, int first)
{
    if (!cnk_size_ok(n) || param == NULL || grad == NULL || (momentum != 0.0) != (buf != NULL) ||
        (nesterov && buf == NULL))
        return CNK_EINVAL;
    optim_ctx c = {.n = n, .p = param, .g = grad, .buf = buf, .lr = (float)lr, .momentum = (float)momentum,
                   .weight_decay = (float)weight_decay, .nesterov = nesterov, .first = first};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), sgd_chunk, &c);
}

int cnk_adam_step(int64_t n, float *param, const float *grad, float *exp_avg, float *exp_avg_sq, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int decoupled, double step_size,
                  double bias_correction2_sqrt)
{
    if (!cnk_size_ok(n) || param == NULL || grad == NULL || exp_avg == NULL || exp_avg_sq == NULL ||
        !(bias_correction2_sqrt > 0.0))
        return CNK_EINVAL;
    optim_ctx c = {.n = n, .p = param, .g = grad, .m = exp_avg, .v = exp_avg_sq,
                   .weight_decay = (float)weight_decay, .keep1 = (float)(1.0 - beta1), .beta2 = (float)beta2,
                   .keep2 = (float)(1.0 - beta2), .eps = (float)eps,
                   .decay = (float)(1.0 - lr * weight_decay), .step_size = (float)step_size,
                   .bc2 = (float)bias_correction2_sqrt, .decoupled = decoupled};
    return cnk_parallel_for(cnk_ceil_div(n, BLOCK), adam_chunk, &c);
}
