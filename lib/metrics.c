/* metrics.c -- per-task metrics on a data set, and the multi-task gain.
 *
 * Everything is computed from predictions in the output layout (what
 * mtl_model_predict returns: regression values in original units, class
 * probabilities), accumulated in double, in row order (deterministic).
 * Missing labels (NaN, or mask 0) are skipped.  Sample weights enter only
 * MTL_METRIC_LOSS (as they enter the training loss); the other metrics are
 * the plain per-label statistics a paper would report.
 *
 *   MAE, RMSE            mean |e|, sqrt(mean e^2) over observed labels
 *   R2                   1 - SSE / SST (SST about the observed labels' mean;
 *                        NaN when SST = 0)
 *   ACCURACY             binary: (p >= 0.5) == label; multiclass: the
 *                        first argmax == label
 *   CROSS_ENTROPY        binary: -[y ln p + (1-y) ln(1-p)]; multiclass:
 *                        -ln p_label; p clamped to [1e-12, 1 - 1e-12]
 *   ROC_AUC              binary: Mann-Whitney rank statistic with average
 *                        ranks for tied scores (equals the trapezoidal
 *                        ROC area); NaN without both classes
 *   LOSS                 the task's training loss in scaled units (see
 *                        mtli_metric_compute)
 * Multi-output tasks average the metric over their outputs. */
#include "losses.h" /* mtli_element_loss */
#include "mtl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MTLI_P_CLAMP 1e-12

static bool mtli_observed(const mtli_eval_arrays *a, int64_t i, int64_t c)
{
    return mtli_label_is_observed(a->mask, a->ldmask, a->y, a->ldy, i, c);
}

static double mtli_clamp_p(double p)
{
    return p < MTLI_P_CLAMP ? MTLI_P_CLAMP : p > 1.0 - MTLI_P_CLAMP ? 1.0 - MTLI_P_CLAMP : p;
}

/* ---- regression ---------------------------------------------------------- */

static double mtli_regression_column(const mtli_eval_arrays *a, int64_t pc, int64_t tc,
                                     mtl_metric metric)
{
    double n = 0, sum_abs = 0, sse = 0, mean = 0, m2 = 0;
    for (int64_t i = 0; i < a->n; i++) {
        if (!mtli_observed(a, i, tc)) continue;
        const double y = a->y[i * a->ldy + tc], e = (double)a->pred[i * a->ldp + pc] - y;
        n += 1;
        sum_abs += fabs(e);
        sse += e * e;
        const double d = y - mean; /* Welford for SST */
        mean += d / n;
        m2 += d * (y - mean);
    }
    if (n == 0) return NAN;
    switch (metric) {
    case MTL_METRIC_MAE: return sum_abs / n;
    case MTL_METRIC_RMSE: return sqrt(sse / n);
    case MTL_METRIC_R2: return m2 > 0 ? 1.0 - sse / m2 : NAN;
    default: return NAN;
    }
}

/* ---- binary ------------------------------------------------------------------ */

typedef struct mtli_scored {
    double score;
    int label;
} mtli_scored;

static int mtli_scored_cmp(const void *a, const void *b)
{
    double x = ((const mtli_scored *)a)->score, y = ((const mtli_scored *)b)->score;
    return (x > y) - (x < y);
}

/* Mann-Whitney U / (n_pos n_neg), ties sharing their average rank. */
static double mtli_auc(mtli_scored *s, int64_t n)
{
    /* A NaN score (a diverged model) has no rank, so there is no AUC; it
     * would also break the sort's order and stall the tie loop below. */
    for (int64_t i = 0; i < n; i++)
        if (isnan(s[i].score)) return NAN;
    qsort(s, (size_t)n, sizeof *s, mtli_scored_cmp);
    double n_pos = 0, rank_sum = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double pos_in_tie = 0;
        while (j < n && s[j].score == s[i].score) pos_in_tie += s[j++].label;
        const double avg_rank = 0.5 * (double)(i + 1 + j); /* ranks i+1 .. j */
        rank_sum += pos_in_tie * avg_rank;
        n_pos += pos_in_tie;
        i = j;
    }
    const double n_neg = (double)n - n_pos;
    if (n_pos == 0 || n_neg == 0) return NAN;
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg);
}

static double mtli_binary_column(const mtli_eval_arrays *a, int64_t pc, int64_t tc,
                                 mtl_metric metric, mtli_scored *scratch)
{
    double n = 0, correct = 0, ce = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < a->n; i++) {
        if (!mtli_observed(a, i, tc)) continue;
        const double p = a->pred[i * a->ldp + pc];
        const int label = a->y[i * a->ldy + tc] >= 0.5f;
        n += 1;
        correct += (p >= 0.5) == label;
        const double pc_ = mtli_clamp_p(p);
        ce -= label ? log(pc_) : log(1.0 - pc_);
        if (scratch) scratch[k++] = (mtli_scored){ p, label };
    }
    if (n == 0) return NAN;
    switch (metric) {
    case MTL_METRIC_ACCURACY: return correct / n;
    case MTL_METRIC_CROSS_ENTROPY: return ce / n;
    case MTL_METRIC_ROC_AUC: return mtli_auc(scratch, k);
    default: return NAN;
    }
}

/* ---- multiclass -------------------------------------------------------------- */

static mtl_status mtli_multiclass(const mtli_eval_arrays *a, const mtli_task *task,
                                  mtl_metric metric, double *out)
{
    const int64_t K = task->n_outputs, tc = task->target_col;
    double n = 0, correct = 0, ce = 0;
    for (int64_t i = 0; i < a->n; i++) {
        if (!mtli_observed(a, i, tc)) continue;
        const float yv = a->y[i * a->ldy + tc];
        if (!mtli_is_class_index(yv, K))
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                             "task '%s': row %lld has label %g, not a class index in [0, %lld)",
                             task->name, (long long)i, (double)yv, (long long)K);
        const int64_t label = (int64_t)yv;
        const float *p = a->pred + i * a->ldp + task->output_col;
        int64_t arg = 0;
        for (int64_t c = 1; c < K; c++)
            if (p[c] > p[arg]) arg = c;
        n += 1;
        correct += arg == label;
        ce -= log(mtli_clamp_p(p[label]));
    }
    *out = n == 0 ? NAN : metric == MTL_METRIC_ACCURACY ? correct / n : ce / n;
    return MTL_OK;
}

/* ---- loss (scaled units, as in training) ------------------------------------- */

static mtl_status scaled_task_loss(const mtl_model *m, const mtli_eval_arrays *a, const mtli_task *task,
                                 double *out)
{
    const mtli_scalers *sc = &m->scalers;
    double wsum = 0, lsum = 0;
    for (int64_t i = 0; i < a->n; i++) {
        const double w = a->w ? a->w[i] : 1.0;
        const float *p = a->pred + i * a->ldp + task->output_col;
        if (task->type == MTL_TASK_MULTICLASS) {
            const int64_t tc = task->target_col;
            if (!mtli_observed(a, i, tc)) continue;
            const float yv = a->y[i * a->ldy + tc];
            if (!mtli_is_class_index(yv, task->n_outputs))
                return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                                 "task '%s': row %lld has label %g, not a class index in [0, %lld)",
                                 task->name, (long long)i, (double)yv, (long long)task->n_outputs);
            lsum -= w * log(mtli_clamp_p(p[(int64_t)yv]));
            wsum += w;
            continue;
        }
        for (int64_t j = 0; j < task->n_outputs; j++) {
            const int64_t tc = task->target_col + j;
            if (!mtli_observed(a, i, tc)) continue;
            double y = a->y[i * a->ldy + tc], v = p[j], l;
            if (task->type == MTL_TASK_BINARY) {
                const double pc_ = mtli_clamp_p(v);
                l = y >= 0.5 ? -log(pc_) : -log(1.0 - pc_);
            } else {
                /* Back to the units the network is trained in. */
                if (task->log_target) {
                    if (!(y > 0)) return mtli_fail_log_target(task, i, tc, y);
                    y = log(y);
                    v = log(fmax(v, 1e-300));
                }
                if (sc->fitted) {
                    y = (y - sc->y_mean[tc]) / sc->y_scale[tc];
                    v = (v - sc->y_mean[tc]) / sc->y_scale[tc];
                }
                double unused_grad;
                l = mtli_element_loss(task->loss, task->huber_delta, v, y, &unused_grad);
            }
            lsum += w * l;
            wsum += w;
        }
    }
    *out = wsum > 0 ? lsum / wsum : NAN;
    return MTL_OK;
}

/* ---- the dispatcher ------------------------------------------------------------ */

static bool mtli_metric_applies(mtl_task_type type, mtl_metric metric)
{
    switch (metric) {
    case MTL_METRIC_LOSS: return true;
    case MTL_METRIC_MAE:
    case MTL_METRIC_RMSE:
    case MTL_METRIC_R2: return type == MTL_TASK_REGRESSION;
    case MTL_METRIC_ACCURACY:
    case MTL_METRIC_CROSS_ENTROPY: return type != MTL_TASK_REGRESSION;
    case MTL_METRIC_ROC_AUC: return type == MTL_TASK_BINARY;
    default: return false;
    }
}

mtl_status mtli_metric_compute(const mtl_model *m, const mtli_eval_arrays *a, mtl_metric metric,
                               void *scratch, double *out)
{
    if (metric < MTL_METRIC_LOSS || metric > MTL_METRIC_ROC_AUC)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "unknown metric %d", (int)metric);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        double v = NAN;
        if (!mtli_metric_applies(task->type, metric)) {
            /* NaN: the metric does not apply to this task */
        } else if (metric == MTL_METRIC_LOSS) {
            MTLI_TRY(scaled_task_loss(m, a, task, &v));
        } else if (task->type == MTL_TASK_MULTICLASS) {
            MTLI_TRY(mtli_multiclass(a, task, metric, &v));
        } else {
            /* Average over outputs that have labels. */
            double sum = 0;
            int64_t used = 0;
            for (int64_t j = 0; j < task->n_outputs; j++) {
                const int64_t pc = task->output_col + j, tc = task->target_col + j;
                const double c = task->type == MTL_TASK_REGRESSION
                                     ? mtli_regression_column(a, pc, tc, metric)
                                     : mtli_binary_column(a, pc, tc, metric, scratch);
                if (!isnan(c)) {
                    sum += c;
                    used++;
                }
            }
            v = used ? sum / (double)used : NAN;
        }
        out[t] = v;
    }
    return MTL_OK;
}

/* ---- the multi-task gain --------------------------------------------------------- */

mtl_status mtl_delta_m(int64_t n_tasks, const double *multi, const double *single,
                       const int *higher_is_better, double *out)
{
    MTLI_CHECK_ARG(n_tasks >= 1, "mtl_delta_m: n_tasks = %lld (need >= 1)", (long long)n_tasks);
    MTLI_CHECK_ARG(multi && single && out, "mtl_delta_m: multi, single and out must not be NULL");
    double sum = 0;
    for (int64_t t = 0; t < n_tasks; t++) {
        if (!isfinite(multi[t]) || !isfinite(single[t]))
            return mtli_fail(MTL_ERR_NON_FINITE, "mtl_delta_m: task %lld: multi %g, single %g",
                             (long long)t, multi[t], single[t]);
        if (single[t] == 0)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                             "mtl_delta_m: task %lld: the single-task value is 0 (relative change "
                             "undefined)", (long long)t);
        const double sign = higher_is_better && higher_is_better[t] ? -1.0 : 1.0;
        sum += sign * (single[t] - multi[t]) / single[t];
    }
    *out = 100.0 * sum / (double)n_tasks;
    return MTL_OK;
}
/* ---- evaluating a model on a data set ----------------------------------------- */

#define MTLI_EVAL_CHUNK 256 /* rows gathered per predict call for row views */

struct mtli_evaluator {
    mtli_settings settings;
    int64_t cap;            /* rows the buffers hold */
    int64_t d, k, w_out;    /* inputs, target columns, output columns */
    float *x;               /* MTLI_EVAL_CHUNK x d: gathered inputs of a view */
    float *pred;            /* cap x w_out */
    float *y;               /* cap x k */
    uint8_t *mask;          /* cap x k (only if the data set has one) */
    float *w;               /* cap (only if the data set has sample weights) */
    void *scratch;          /* cap x 16 bytes (ROC-AUC) */
    mtli_eval_arrays a;     /* the last run */
};

void mtli_evaluator_destroy(mtli_evaluator *ev)
{
    if (!ev) return;
    const mtli_settings s = ev->settings;
    mtli_free(&s, ev->x);
    mtli_free(&s, ev->pred);
    mtli_free(&s, ev->y);
    mtli_free(&s, ev->mask);
    mtli_free(&s, ev->w);
    mtli_free(&s, ev->scratch);
    mtli_free(&s, ev);
}

mtl_status mtli_evaluator_create(mtli_evaluator **out, const mtl_model *m, const mtl_dataset *ds)
{
    const mtli_settings *s = &m->settings;
    const mtli_dataset_store *st = ds->store;
    const size_t n = (size_t)ds->n_rows;
    mtli_evaluator *ev = mtli_calloc(s, 1, sizeof *ev);
    if (!ev) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "evaluation buffers");
    ev->settings = *s;
    ev->cap = ds->n_rows;
    ev->d = m->n_inputs;
    ev->k = m->target_width;
    ev->w_out = m->output_width;
    ev->x = mtli_alloc(s, (size_t)MTLI_EVAL_CHUNK * (size_t)ev->d * sizeof(float));
    ev->pred = mtli_calloc(s, n * (size_t)ev->w_out, sizeof(float));
    ev->y = mtli_calloc(s, n * (size_t)ev->k, sizeof(float));
    ev->mask = st->mask ? mtli_calloc(s, n * (size_t)ev->k, 1) : NULL;
    ev->w = st->sample_weight ? mtli_calloc(s, n, sizeof(float)) : NULL;
    ev->scratch = mtli_calloc(s, n, 16);
    if (!ev->x || !ev->pred || !ev->y || (st->mask && !ev->mask) || (st->sample_weight && !ev->w) ||
        !ev->scratch) {
        mtli_evaluator_destroy(ev);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "evaluation buffers for %lld rows",
                         (long long)ds->n_rows);
    }
    *out = ev;
    return MTL_OK;
}

mtl_status mtli_evaluator_run(mtli_evaluator *ev, const mtl_model *m, mtl_workspace *ws,
                              const mtl_dataset *ds)
{
    const mtli_dataset_store *st = ds->store;
    const int64_t n = ds->n_rows, d = ev->d, k = ev->k;
    if (n > ev->cap || (st->mask && !ev->mask) || (st->sample_weight && !ev->w))
        return mtli_fail(MTL_ERR_INTERNAL, "evaluator built for another data set");
    if (!ds->rows) {
        /* The whole store in order: predict straight from the host array. */
        MTLI_TRY(mtl_model_predict(m, ws, n, st->x, st->ldx, ev->pred, ev->w_out));
    } else {
        for (int64_t first = 0; first < n; first += MTLI_EVAL_CHUNK) {
            const int64_t c = n - first < MTLI_EVAL_CHUNK ? n - first : MTLI_EVAL_CHUNK;
            for (int64_t i = 0; i < c; i++)
                memcpy(ev->x + i * d, st->x + mtli_dataset_row(ds, first + i) * st->ldx,
                       (size_t)d * sizeof(float));
            MTLI_TRY(mtl_model_predict(m, ws, c, ev->x, d, ev->pred + first * ev->w_out, ev->w_out));
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const int64_t row = mtli_dataset_row(ds, i);
        memcpy(ev->y + i * k, st->y + row * st->ldy, (size_t)k * sizeof(float));
        if (ev->mask) memcpy(ev->mask + i * k, st->mask + row * st->ldmask, (size_t)k);
        if (ev->w) ev->w[i] = st->sample_weight[row];
    }
    ev->a = (mtli_eval_arrays){ .n = n, .pred = ev->pred, .ldp = ev->w_out, .y = ev->y, .ldy = k,
                                .mask = ev->mask, .ldmask = k, .w = ev->w };
    return MTL_OK;
}

mtl_status mtli_evaluator_metric(const mtli_evaluator *ev, const mtl_model *m, mtl_metric metric,
                                 double *out)
{
    return mtli_metric_compute(m, &ev->a, metric, ev->scratch, out);
}

mtl_status mtli_check_dataset(const mtl_model *m, const mtl_dataset *ds, bool need_targets,
                              const char *fn)
{
    MTLI_CHECK_ARG(ds, "%s: data set is NULL", fn);
    const mtli_dataset_store *st = ds->store;
    if (st->n_inputs != m->n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "%s: data set has %lld inputs, the model %lld", fn,
                         (long long)st->n_inputs, (long long)m->n_inputs);
    if (need_targets && !st->y)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: the data set has no targets", fn);
    if (st->y && st->n_targets != m->target_width)
        return mtli_fail(MTL_ERR_SHAPE, "%s: data set has %lld target columns, the model %lld", fn,
                         (long long)st->n_targets, (long long)m->target_width);
    return MTL_OK;
}

mtl_status mtl_model_evaluate(const mtl_model *m, mtl_workspace *ws, const mtl_dataset *data,
                              mtl_metric metric, double *out)
{
    MTLI_CHECK_ARG(m && ws && out, "mtl_model_evaluate: model, workspace and out must not be NULL");
    if (!m->finalized) return mtli_fail(MTL_ERR_STATE, "mtl_model_evaluate: the model is not finalized");
    MTLI_TRY(mtli_check_dataset(m, data, true, "mtl_model_evaluate"));
    if (metric < MTL_METRIC_LOSS || metric > MTL_METRIC_ROC_AUC)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "mtl_model_evaluate: unknown metric %d", (int)metric);
    mtli_evaluator *ev = NULL;
    MTLI_TRY(mtli_evaluator_create(&ev, m, data));
    double *tmp = mtli_calloc(&m->settings, (size_t)m->n_tasks, sizeof(double));
    mtl_status s = tmp ? MTL_OK : mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_model_evaluate: %lld results",
                                            (long long)m->n_tasks);
    if (s == MTL_OK) s = mtli_evaluator_run(ev, m, ws, data);
    if (s == MTL_OK) s = mtli_evaluator_metric(ev, m, metric, tmp);
    if (s == MTL_OK) memcpy(out, tmp, (size_t)m->n_tasks * sizeof(double)); /* out untouched on failure */
    mtli_free(&m->settings, tmp);
    mtli_evaluator_destroy(ev);
    return s;
}
