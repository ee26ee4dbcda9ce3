/* scalers.c -- input and target standardisation, log targets, and the
 * training-data domain.
 *
 * Fitted once on the training set (Welford's algorithm in double, so a
 * large mean does not swamp a small variance), stored in the model and
 * applied inside train and predict: callers always see original units.
 *   inputs:  x' = (x - mean) / scale            scale = population std
 *   targets: y' = (f(y) - mean) / scale         f = ln for log-target tasks
 * A column whose standard deviation is zero (or negligible next to its
 * mean) gets scale 1, so constant features become 0 instead of NaN.
 * Only regression targets are standardised (tasks with standardize on);
 * class labels pass through unchanged. */
#include "mtl_internal.h"

#include <math.h>
#include <string.h>

/* Running mean and sum of squared deviations (Welford 1962). */
typedef struct mtli_welford {
    double n, mean, m2;
} mtli_welford;

static void mtli_welford_add(mtli_welford *w, double x)
{
    w->n += 1.0;
    double d = x - w->mean;
    w->mean += d / w->n;
    w->m2 += d * (x - w->mean);
}

/* Mean and scale of a finished column; scale 1 when the spread is zero
 * or below float resolution of the mean (dividing by it would only
 * amplify rounding noise). */
static void mtli_welford_result(const mtli_welford *w, float *mean, float *scale)
{
    if (w->n <= 0.0) {
        *mean = 0.0f;
        *scale = 1.0f;
        return;
    }
    double sd = sqrt(w->m2 / w->n);
    *mean = (float)w->mean;
    *scale = sd > 1e-7 * fmax(1.0, fabs(w->mean)) ? (float)sd : 1.0f;
}

void mtli_scalers_free(mtl_model *m)
{
    if (!m) return;
    mtli_scalers *sc = &m->scalers;
    mtli_free(&m->settings, sc->x_mean);
    mtli_free(&m->settings, sc->x_scale);
    mtli_free(&m->settings, sc->x_min);
    mtli_free(&m->settings, sc->x_max);
    mtli_free(&m->settings, sc->y_mean);
    mtli_free(&m->settings, sc->y_scale);
    memset(sc, 0, sizeof *sc);
}

/* Fill the target statistics; fails on a non-positive label of a
 * log-target task. */
static mtl_status mtli_fit_targets(const mtl_model *m, const mtl_dataset *ds, mtli_welford *w,
                                   float *y_mean, float *y_scale)
{
    const mtli_dataset_store *st = ds->store;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        const bool regression = task->type == MTL_TASK_REGRESSION;
        for (int64_t j = 0; j < task->n_targets; j++) {
            const int64_t c = task->target_col + j;
            y_mean[c] = 0.0f;
            y_scale[c] = 1.0f;
            if (!regression || !st->y) continue;
            memset(&w[c], 0, sizeof w[c]);
            for (int64_t r = 0; r < ds->n_rows; r++) {
                const int64_t row = mtli_dataset_row(ds, r);
                const float y = st->y[row * st->ldy + c];
                if (!mtli_label_is_observed(st->mask, st->ldmask, st->y, st->ldy, row, c)) continue;
                if (task->log_target && !(y > 0.0f)) return mtli_fail_log_target(task, r, c, y);
                mtli_welford_add(&w[c], task->log_target ? log((double)y) : (double)y);
            }
            if (task->standardize) mtli_welford_result(&w[c], &y_mean[c], &y_scale[c]);
        }
    }
    return MTL_OK;
}

mtl_status mtl_model_fit_scalers(mtl_model *m, const mtl_dataset *train)
{
    MTLI_CHECK_ARG(m && train, "mtl_model_fit_scalers: model and data set must not be NULL");
    if (!m->finalized)
        return mtli_fail(MTL_ERR_STATE, "mtl_model_fit_scalers: finalize the model first");
    const mtli_dataset_store *st = train->store;
    if (st->n_inputs != m->n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_model_fit_scalers: data set has %lld inputs, model %lld",
                         (long long)st->n_inputs, (long long)m->n_inputs);
    if (st->y && st->n_targets != m->target_width)
        return mtli_fail(MTL_ERR_SHAPE,
                         "mtl_model_fit_scalers: data set has %lld target columns, model %lld",
                         (long long)st->n_targets, (long long)m->target_width);
    if (train->n_rows < 1)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "mtl_model_fit_scalers: the data set has no rows");

    const mtli_settings *s = &m->settings;
    const size_t d = (size_t)m->n_inputs, k = (size_t)m->target_width;
    mtli_scalers nw = { .fitted = true };
    nw.x_mean = mtli_alloc(s, d * sizeof(float));
    nw.x_scale = mtli_alloc(s, d * sizeof(float));
    nw.x_min = mtli_alloc(s, d * sizeof(float));
    nw.x_max = mtli_alloc(s, d * sizeof(float));
    nw.y_mean = mtli_alloc(s, k * sizeof(float));
    nw.y_scale = mtli_alloc(s, k * sizeof(float));
    mtli_welford *w = mtli_calloc(s, d > k ? d : k, sizeof *w);
    mtl_status status = MTL_OK;
    if (!nw.x_mean || !nw.x_scale || !nw.x_min || !nw.x_max || !nw.y_mean || !nw.y_scale || !w) {
        status = mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_model_fit_scalers: scalers for %lld inputs, "
                           "%lld targets", (long long)d, (long long)k);
        goto done;
    }

    status = mtli_fit_targets(m, train, w, nw.y_mean, nw.y_scale);
    if (status != MTL_OK) goto done;

    /* Inputs: row by row (the storage order), every column at once. */
    memset(w, 0, d * sizeof *w);
    for (int64_t r = 0; r < train->n_rows; r++) {
        const float *x = st->x + mtli_dataset_row(train, r) * st->ldx;
        for (size_t j = 0; j < d; j++) {
            mtli_welford_add(&w[j], (double)x[j]);
            if (r == 0 || x[j] < nw.x_min[j]) nw.x_min[j] = x[j];
            if (r == 0 || x[j] > nw.x_max[j]) nw.x_max[j] = x[j];
        }
    }
    for (size_t j = 0; j < d; j++) mtli_welford_result(&w[j], &nw.x_mean[j], &nw.x_scale[j]);

    mtli_scalers_free(m); /* the old ones, if any */
    m->scalers = nw;
    memset(&nw, 0, sizeof nw);
done:
    mtli_free(s, nw.x_mean);
    mtli_free(s, nw.x_scale);
    mtli_free(s, nw.x_min);
    mtli_free(s, nw.x_max);
    mtli_free(s, nw.y_mean);
    mtli_free(s, nw.y_scale);
    mtli_free(s, w);
    return status;
}

/* ---- applying them ------------------------------------------------------------ */

mtl_status mtli_fail_log_target(const mtli_task *task, int64_t row, int64_t col, double y)
{
    return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                     "task '%s' has a log target, but row %lld (target column %lld) is %g: log targets need y > 0",
                     task->name, (long long)row, (long long)col, y);
}

void mtli_scale_inputs(const mtl_model *m, int64_t n, const float *x, int64_t ldx, float *out,
                       int64_t ldo)
{
    const int64_t d = m->n_inputs;
    const mtli_scalers *sc = &m->scalers;
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        float *oi = out + i * ldo;
        if (!sc->fitted) {
            if (oi != xi) memcpy(oi, xi, (size_t)d * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < d; j++) oi[j] = (xi[j] - sc->x_mean[j]) / sc->x_scale[j];
    }
}

mtl_status mtli_scale_targets(const mtl_model *m, int64_t n, const float *y, int64_t ldy, const uint8_t *mask,
                              int64_t ldmask, float *out, int64_t ldo)
{
    const mtli_scalers *sc = &m->scalers;
    for (int64_t i = 0; i < n; i++) {
        const float *yi = y + i * ldy;
        float *oi = out + i * ldo;
        for (int64_t t = 0; t < m->n_tasks; t++) {
            const mtli_task *task = &m->tasks[t];
            if (task->type != MTL_TASK_REGRESSION) { /* labels as given (no memcpy call per row: W1 has 3 columns) */
                for (int64_t c = task->target_col; c < task->target_col + task->n_targets; c++) oi[c] = yi[c];
                continue;
            }
            for (int64_t c = task->target_col; c < task->target_col + task->n_targets; c++) {
                float v = yi[c];
                if (!mtli_label_is_observed(mask, ldmask, y, ldy, i, c)) { /* missing, as the losses see it */
                    oi[c] = NAN;
                    continue;
                }
                if (task->log_target) {
                    if (!(v > 0.0f)) return mtli_fail_log_target(task, i, c, v);
                    v = logf(v);
                }
                oi[c] = sc->fitted ? (v - sc->y_mean[c]) / sc->y_scale[c] : v;
            }
        }
    }
    return MTL_OK;
}

void mtli_unscale_outputs(const mtl_model *m, int64_t n, float *out, int64_t ldo)
{
    const mtli_scalers *sc = &m->scalers;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        if (task->type != MTL_TASK_REGRESSION) continue;
        if (!sc->fitted && !task->log_target) continue;
        for (int64_t j = 0; j < task->n_outputs; j++) {
            const int64_t oc = task->output_col + j, tc = task->target_col + j;
            const float mean = sc->fitted ? sc->y_mean[tc] : 0.0f;
            const float scale = sc->fitted ? sc->y_scale[tc] : 1.0f;
            for (int64_t i = 0; i < n; i++) {
                float v = out[i * ldo + oc] * scale + mean;
                out[i * ldo + oc] = task->log_target ? expf(v) : v;
            }
        }
    }
}

/* ---- domain -------------------------------------------------------------------- */

mtl_status mtl_model_check_domain(const mtl_model *m, int64_t n, const float *x, int64_t ldx,
                                  int64_t *out)
{
    MTLI_CHECK_ARG(m, "mtl_model_check_domain: model is NULL");
    MTLI_CHECK_ARG(n >= 0, "mtl_model_check_domain: n = %lld", (long long)n);
    if (n == 0) return MTL_OK;
    MTLI_CHECK_ARG(x && out, "mtl_model_check_domain: x and out must not be NULL");
    if (ldx < m->n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_model_check_domain: ldx %lld < %lld inputs",
                         (long long)ldx, (long long)m->n_inputs);
    if (!m->scalers.fitted)
        return mtli_fail(MTL_ERR_STATE,
                         "mtl_model_check_domain: no training-data domain (call mtl_model_fit_scalers)");
    const float *lo = m->scalers.x_min, *hi = m->scalers.x_max;
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        int64_t outside = 0;
        /* NaN is outside every domain. */
        for (int64_t j = 0; j < m->n_inputs; j++) outside += !(xi[j] >= lo[j] && xi[j] <= hi[j]);
        out[i] = outside;
    }
    return MTL_OK;
}
