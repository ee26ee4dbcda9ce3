/* losses.c -- MSE, MAE, Huber, BCE on logits, softmax cross-entropy; masks,
 * NaN = missing, sample weights, the per-task mean over observed labels.
 *
 * Loss values are computed and summed in double, rows in order (fixed
 * order: bitwise reproducible).  Stable forms: BCE on logits as
 * max(p,0) - p y + log1p(exp(-|p|)); cross-entropy as logsumexp(p) - p_c
 * with the maximum subtracted first. */
#include "losses.h"

#include <math.h>
#include <string.h>

double mtli_element_loss(mtl_loss loss, double delta, double p, double y, double *grad)
{
    const double r = p - y;
    switch (loss) {
    case MTL_LOSS_MAE:
        *grad = (r > 0.0) - (r < 0.0);
        return fabs(r);
    case MTL_LOSS_HUBER:
        if (fabs(r) <= delta) {
            *grad = r;
            return 0.5 * r * r;
        }
        *grad = r > 0.0 ? delta : -delta;
        return delta * (fabs(r) - 0.5 * delta);
    case MTL_LOSS_BCE: {
        const double e = exp(-fabs(p));
        *grad = (p >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e)) - y; /* sigmoid(p) - y */
        return fmax(p, 0.0) - p * y + log1p(e);
    }
    default: /* MSE */
        *grad = 2.0 * r;
        return r * r;
    }
}

/* Softmax cross-entropy of one row; writes scale * (softmax - onehot(c)) into g. */
static double row_cross_entropy(const float *p, int64_t k, int64_t c, float *g, double scale)
{
    double mx = p[0];
    for (int64_t j = 1; j < k; j++) mx = fmax(mx, p[j]);
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) s += exp((double)p[j] - mx);
    const double lse = mx + log(s);
    for (int64_t j = 0; j < k; j++) g[j] = (float)(scale * (exp((double)p[j] - lse) - (j == c)));
    return lse - p[c];
}

double mtli_task_loss(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, const float *y,
                      int64_t ldy, const uint8_t *mask, int64_t ldmask, const float *sw, float *dy,
                      int64_t lddy, double *wsum)
{
    const int64_t k = t->n_outputs, cols = t->n_targets;
    /* Pass 1: the normaliser, total weight of observed labels. */
    double W = 0.0;
    for (int64_t i = 0; i < m; i++) {
        const double w = sw ? (double)sw[i] : 1.0;
        for (int64_t j = 0; j < cols; j++)
            if (mtli_label_is_observed(mask, ldmask, y, ldy, i, j)) W += w;
    }
    *wsum = W;
    if (!(W > 0.0)) {
        for (int64_t i = 0; i < m; i++) memset(dy + i * lddy, 0, (size_t)k * sizeof(float));
        return 0.0;
    }
    /* Pass 2: loss and gradient, w_i / W per label. */
    const double inv = 1.0 / W;
    double sum = 0.0;
    for (int64_t i = 0; i < m; i++) {
        const double w = sw ? (double)sw[i] : 1.0;
        const float *p = logits + i * ldl;
        float *g = dy + i * lddy;
        if (t->type == MTL_TASK_MULTICLASS) {
            if (!mtli_label_is_observed(mask, ldmask, y, ldy, i, 0) || w == 0.0) {
                memset(g, 0, (size_t)k * sizeof(float));
                continue;
            }
            const int64_t c = (int64_t)y[i * ldy];
            sum += w * row_cross_entropy(p, k, c, g, w * inv);
            continue;
        }
        for (int64_t j = 0; j < k; j++) {
            if (!mtli_label_is_observed(mask, ldmask, y, ldy, i, j)) {
                g[j] = 0.0f;
                continue;
            }
            double grad;
            const double l = mtli_element_loss(t->loss, t->huber_delta, p[j], y[i * ldy + j], &grad);
            sum += w * l;
            g[j] = (float)(w * inv * grad);
        }
    }
    return sum * inv;
}

/* ---- predict transforms -------------------------------------------------------- */

static void softmax_row(const float *p, int64_t k, float *out)
{
    float mx = p[0];
    for (int64_t j = 1; j < k; j++) mx = fmaxf(mx, p[j]);
    float s = 0.0f;
    for (int64_t j = 0; j < k; j++) {
        out[j] = expf(p[j] - mx);
        s += out[j];
    }
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < k; j++) out[j] *= inv;
}

void mtli_task_outputs(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, float *out, int64_t ldo)
{
    const int64_t k = t->n_outputs;
    for (int64_t i = 0; i < m; i++) {
        const float *p = logits + i * ldl;
        float *o = out + i * ldo;
        switch (t->type) {
        case MTL_TASK_BINARY:
            for (int64_t j = 0; j < k; j++) o[j] = mtli_sigmoidf(p[j]);
            break;
        case MTL_TASK_MULTICLASS:
            softmax_row(p, k, o);
            break;
        default:
            memcpy(o, p, (size_t)k * sizeof(float));
            break;
        }
    }
}

void mtli_task_labels(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, float *out, int64_t ldo)
{
    const int64_t k = t->n_outputs;
    for (int64_t i = 0; i < m; i++) {
        const float *p = logits + i * ldl;
        float *o = out + i * ldo;
        switch (t->type) {
        case MTL_TASK_BINARY: /* sigmoid(p) > 0.5  <=>  p > 0 */
            for (int64_t j = 0; j < k; j++) o[j] = p[j] > 0.0f ? 1.0f : 0.0f;
            break;
        case MTL_TASK_MULTICLASS: {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (p[j] > p[best]) best = j;
            o[0] = (float)best;
            break;
        }
        default:
            memcpy(o, p, (size_t)k * sizeof(float));
            break;
        }
    }
}
