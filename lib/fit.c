/* fit.c -- the training modules' share of a trainer, the fit loop and the
 * progress queries.
 *
 * The per-task state (per-epoch losses, metrics, best epochs) is allocated
 * with the trainer.  The buffers only fit uses (the best and epoch-start
 * weights, the gathered mini-batch: two parameter copies and a batch) are
 * allocated by the first fit call and kept until the trainer is destroyed,
 * so a host that only calls mtl_trainer_step never pays for them.  An epoch
 * allocates nothing; a fit call allocates only the row permutation of its
 * data set (and, the first time, the fit buffers) before training. */
#include "mtl_internal.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define MTLI_N_METRICS 8 /* metric ids 1..7; slot 0 unused */

/* The cached per-task values of one metric on one split. */
static double *mtli_metric_slot(const mtl_trainer *t, mtl_split split, mtl_metric metric)
{
    return t->epoch_metrics + ((size_t)split * MTLI_N_METRICS + (size_t)metric) * (size_t)t->n_tasks;
}

mtl_status mtli_trainer_training_init(mtl_trainer *t)
{
    const mtli_settings *s = &t->settings;
    const mtl_model *m = t->model;
    const size_t T = (size_t)t->n_tasks;
    mtli_trainer_options_defaults(t);

    t->task_lr_mult = mtli_calloc(s, T, sizeof(double));
    t->epoch_losses[0] = mtli_calloc(s, T, sizeof(double));
    t->epoch_losses[1] = mtli_calloc(s, T, sizeof(double));
    t->epoch_metrics = mtli_calloc(s, 2 * MTLI_N_METRICS * T, sizeof(double));
    t->task_best_epoch = mtli_calloc(s, T, sizeof(int64_t));
    t->task_best_loss = mtli_calloc(s, T, sizeof(double));
    if (!t->task_lr_mult || !t->epoch_losses[0] || !t->epoch_losses[1] || !t->epoch_metrics ||
        !t->task_best_epoch || !t->task_best_loss) {
        mtli_trainer_training_free(t);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "trainer: training state for %lld tasks", (long long)T);
    }
    for (size_t i = 0; i < T; i++) {
        t->task_lr_mult[i] = 1.0;
        t->epoch_losses[0][i] = t->epoch_losses[1][i] = NAN;
        t->task_best_loss[i] = INFINITY;
    }
    t->best_epoch = 0;
    t->best_loss = INFINITY;
    t->metrics_epoch[0] = t->metrics_epoch[1] = -1;

    mtl_status st = mtli_trainer_build_ranges(t);
    if (st == MTL_OK) st = mtli_optim_state_create(&t->opt_state, s, m->n_params);
    if (st != MTL_OK) {
        mtli_trainer_training_free(t);
        return st;
    }
    return MTL_OK;
}

mtl_status mtli_trainer_best_params_alloc(mtl_trainer *t)
{
    if (t->best_params) return MTL_OK;
    t->best_params = mtli_calloc(&t->settings, (size_t)t->model->n_params, sizeof(float));
    if (!t->best_params)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "trainer: best-weights copy of %lld parameters",
                         (long long)t->model->n_params);
    return MTL_OK;
}

/* The fit-only buffers, made by the first fit call (kept until the trainer
 * is destroyed).  All or nothing: on failure the trainer is unchanged. */
static mtl_status mtli_fit_buffers(mtl_trainer *t)
{
    if (t->epoch_params) return MTL_OK; /* made together: one stands for all */
    const mtli_settings *s = &t->settings;
    const mtl_model *m = t->model;
    const size_t P = (size_t)m->n_params, B = (size_t)t->max_batch, K = (size_t)m->target_width;
    /* best_params may exist already (a checkpoint with best weights was loaded). */
    float *best = t->best_params ? NULL : mtli_calloc(s, P, sizeof(float));
    float *epoch = mtli_calloc(s, P, sizeof(float));
    float *x = mtli_calloc(s, B * (size_t)m->n_inputs, sizeof(float));
    float *y = mtli_calloc(s, B * K, sizeof(float));
    uint8_t *mask = mtli_calloc(s, B * K, sizeof(uint8_t));
    float *w = mtli_calloc(s, B, sizeof(float));
    if ((!best && !t->best_params) || !epoch || !x || !y || !mask || !w) {
        mtli_free(s, best);
        mtli_free(s, epoch);
        mtli_free(s, x);
        mtli_free(s, y);
        mtli_free(s, mask);
        mtli_free(s, w);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_trainer_fit: fit buffers for %lld parameters, "
                         "batches of %lld rows", (long long)m->n_params, (long long)t->max_batch);
    }
    if (best) t->best_params = best;
    t->epoch_params = epoch;
    t->batch_x = x;
    t->batch_y = y;
    t->batch_mask = mask;
    t->batch_w = w;
    return MTL_OK;
}

void mtli_trainer_training_free(mtl_trainer *t)
{
    if (!t) return;
    const mtli_settings *s = &t->settings;
    mtli_optim_state_destroy(&t->opt_state, s);
    mtli_free(s, t->ranges);
    mtli_free(s, t->task_lr_mult);
    mtli_free(s, t->epoch_losses[0]);
    mtli_free(s, t->epoch_losses[1]);
    mtli_free(s, t->epoch_metrics);
    mtli_free(s, t->task_best_epoch);
    mtli_free(s, t->task_best_loss);
    mtli_free(s, t->best_params);
    mtli_free(s, t->epoch_params);
    mtli_free(s, t->batch_x);
    mtli_free(s, t->batch_y);
    mtli_free(s, t->batch_mask);
    mtli_free(s, t->batch_w);
    t->ranges = NULL;
    t->n_ranges = 0;
    t->task_lr_mult = NULL;
    t->epoch_losses[0] = t->epoch_losses[1] = NULL;
    t->epoch_metrics = NULL;
    t->task_best_epoch = NULL;
    t->task_best_loss = NULL;
    t->best_params = t->epoch_params = NULL;
    t->batch_x = t->batch_y = t->batch_w = NULL;
    t->batch_mask = NULL;
}

/* ---- the fit loop ------------------------------------------------------------- */

static double mtli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fisher-Yates on 0..n-1; draw i is a pure function of (seed, epoch, i),
 * so an epoch's order does not depend on what ran before it (a resumed
 * checkpoint shuffles exactly as the uninterrupted run). */
static void mtli_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const uint64_t r = mtli_rng_u64(seed, MTLI_STREAM_SHUFFLE, ((uint64_t)epoch << 32) | (uint64_t)i);
        const int64_t j = (int64_t)(r % (uint64_t)(i + 1)); /* bias < n / 2^64 */
        const int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* Copy rows perm[0..nb) of the data set into the trainer's batch buffers
 * and count each task's observed labels (the epoch mean's weights). */
static void mtli_gather_batch(mtl_trainer *t, const mtl_dataset *ds, const int64_t *perm, int64_t nb,
                              double *labels)
{
    const mtl_model *m = t->model;
    const mtli_dataset_store *st = ds->store;
    const int64_t d = m->n_inputs, k = m->target_width;
    for (int64_t tk = 0; tk < m->n_tasks; tk++) labels[tk] = 0;
    for (int64_t i = 0; i < nb; i++) {
        const int64_t row = mtli_dataset_row(ds, perm[i]);
        memcpy(t->batch_x + i * d, st->x + row * st->ldx, (size_t)d * sizeof(float));
        const float *y = st->y + row * st->ldy;
        memcpy(t->batch_y + i * k, y, (size_t)k * sizeof(float));
        const uint8_t *mk = st->mask ? st->mask + row * st->ldmask : NULL;
        if (mk) memcpy(t->batch_mask + i * k, mk, (size_t)k);
        if (st->sample_weight) t->batch_w[i] = st->sample_weight[row];
        for (int64_t tk = 0; tk < m->n_tasks; tk++) {
            const mtli_task *task = &m->tasks[tk];
            for (int64_t c = task->target_col; c < task->target_col + task->n_targets; c++)
                labels[tk] += mtli_label_is_observed(st->mask, st->ldmask, st->y, st->ldy, row, c);
        }
    }
}

/* The weighted validation loss: sum of loss_weight * loss over tasks that
 * have labels (the fixed weights of the model, whatever weighting method
 * trains it, so the criterion does not move with learned weights). */
static double mtli_weighted_loss(const mtl_model *m, const double *losses)
{
    double sum = 0;
    for (int64_t tk = 0; tk < m->n_tasks; tk++)
        if (!isnan(losses[tk])) sum += m->tasks[tk].loss_weight * losses[tk];
    return sum;
}

/* Put the best (or last good) weights back. */
static void mtli_restore(mtl_trainer *t, const float *params)
{
    memcpy(t->model->params, params, (size_t)t->model->n_params * sizeof(float));
}

static bool mtli_params_finite(const mtl_model *m)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < m->n_params; i++) acc += m->params[i] * 0.0f; /* NaN/Inf propagate */
    return acc == 0.0f;
}

typedef struct mtli_fit_run {
    mtl_trainer *t;
    const mtl_dataset *train, *val;
    mtl_progress_fn progress;
    void *user;
    int64_t *perm;
    double *sum_loss, *sum_labels, *batch_labels, *step_losses; /* T each */
    mtli_evaluator *val_eval;
    double t0, elapsed0;
} mtli_fit_run;

/* After a failure in an epoch: leave the model at its last good weights.
 * A step never applies a non-finite update, but an enormous finite one can
 * overflow the parameters, and weights whose validation loss is not finite
 * are not good either; then go back to the weights the epoch started from. */
static mtl_status mtli_fit_fail(mtli_fit_run *r, mtl_status s, int64_t epoch, bool weights_bad)
{
    if (weights_bad || !mtli_params_finite(r->t->model)) mtli_restore(r->t, r->t->epoch_params);
    return mtli_fail_prefix(s, "epoch %lld: ", (long long)epoch);
}

/* Validation after an epoch: losses, metrics cache, best epochs. */
static mtl_status mtli_fit_validate(mtli_fit_run *r, int64_t epoch, double *weighted)
{
    mtl_trainer *t = r->t;
    const mtl_model *m = t->model;
    MTLI_TRY(mtli_evaluator_run(r->val_eval, m, t->eval_ws, r->val));
    for (int metric = MTL_METRIC_LOSS; metric <= MTL_METRIC_ROC_AUC; metric++)
        MTLI_TRY(mtli_evaluator_metric(r->val_eval, m, (mtl_metric)metric,
                                       mtli_metric_slot(t, MTL_SPLIT_VALIDATION, (mtl_metric)metric)));
    t->metrics_epoch[MTL_SPLIT_VALIDATION] = epoch;
    double *loss = t->epoch_losses[MTL_SPLIT_VALIDATION];
    memcpy(loss, mtli_metric_slot(t, MTL_SPLIT_VALIDATION, MTL_METRIC_LOSS),
           (size_t)t->n_tasks * sizeof(double));
    for (int64_t tk = 0; tk < t->n_tasks; tk++) {
        if (!isnan(loss[tk]) && !isfinite(loss[tk]))
            return mtli_fail(MTL_ERR_NON_FINITE, "task '%s': validation loss is %g",
                             m->tasks[tk].name, loss[tk]);
        if (loss[tk] < t->task_best_loss[tk]) {
            t->task_best_loss[tk] = loss[tk];
            t->task_best_epoch[tk] = epoch;
        }
    }
    *weighted = mtli_weighted_loss(m, loss);
    return MTL_OK;
}

/* One epoch of steps.  *stop is set when the callback asks to stop. */
static mtl_status mtli_fit_epoch(mtli_fit_run *r, int64_t epoch_index, bool *stop)
{
    mtl_trainer *t = r->t;
    const mtl_model *m = t->model;
    const int64_t n = r->train->n_rows, B = t->batch_size, T = t->n_tasks;
    const mtli_dataset_store *st = r->train->store;
    mtli_shuffle(r->perm, n, (uint64_t)t->settings.seed, epoch_index);
    for (int64_t tk = 0; tk < T; tk++) r->sum_loss[tk] = r->sum_labels[tk] = 0;

    for (int64_t first = 0; first < n; first += B) {
        const int64_t nb = n - first < B ? n - first : B;
        mtli_gather_batch(t, r->train, r->perm + first, nb, r->batch_labels);
        MTLI_TRY(mtl_trainer_step(t, nb, t->batch_x, m->n_inputs, t->batch_y, m->target_width,
                                  st->mask ? t->batch_mask : NULL, m->target_width,
                                  st->sample_weight ? t->batch_w : NULL, r->step_losses));
        for (int64_t tk = 0; tk < T; tk++) {
            r->sum_loss[tk] += r->step_losses[tk] * r->batch_labels[tk];
            r->sum_labels[tk] += r->batch_labels[tk];
        }
        if (r->progress && t->callback_every_steps > 0 && t->step_count % t->callback_every_steps == 0) {
            t->elapsed_seconds = r->elapsed0 + (mtli_now() - r->t0);
            if (r->progress(r->user, t, epoch_index + 1, t->step_count) != 0) {
                *stop = true;
                return MTL_OK;
            }
        }
    }
    for (int64_t tk = 0; tk < T; tk++)
        t->epoch_losses[MTL_SPLIT_TRAIN][tk] =
            r->sum_labels[tk] > 0 ? r->sum_loss[tk] / r->sum_labels[tk] : NAN;
    return MTL_OK;
}

static mtl_status mtli_fit_loop(mtli_fit_run *r)
{
    mtl_trainer *t = r->t;
    const mtl_model *m = t->model;
    const bool early = t->early_stop_patience > 0;
    bool ran = false;
    while (t->epoch < t->epochs) {
        const int64_t epoch = t->epoch + 1; /* 1-based, as reported */
        memcpy(t->epoch_params, m->params, (size_t)m->n_params * sizeof(float));
        bool stop = false;
        mtl_status s = mtli_fit_epoch(r, t->epoch, &stop);
        if (s != MTL_OK) return mtli_fit_fail(r, s, epoch, false);
        if (stop) break; /* asked by the callback mid-epoch: the epoch is not counted */
        t->epoch = epoch;
        ran = true;
        for (int64_t tk = 0; tk < t->n_tasks; tk++)
            if (!isnan(t->epoch_losses[MTL_SPLIT_TRAIN][tk]) &&
                !isfinite(t->epoch_losses[MTL_SPLIT_TRAIN][tk]))
                return mtli_fit_fail(r, mtli_fail(MTL_ERR_NON_FINITE, "task '%s': training loss is %g",
                                                  m->tasks[tk].name, t->epoch_losses[MTL_SPLIT_TRAIN][tk]),
                                     epoch, true);

        double monitored = mtli_weighted_loss(m, t->epoch_losses[MTL_SPLIT_TRAIN]);
        if (r->val) {
            s = mtli_fit_validate(r, epoch, &monitored);
            if (s != MTL_OK) return mtli_fit_fail(r, s, epoch, s == MTL_ERR_NON_FINITE);
            if (monitored < t->best_loss - t->early_stop_min_delta) {
                t->best_loss = monitored;
                t->best_epoch = epoch;
                t->bad_epochs = 0;
                memcpy(t->best_params, m->params, (size_t)m->n_params * sizeof(float));
            } else {
                t->bad_epochs++;
            }
        }
        if (t->weighting) mtli_weighting_epoch_end(t->weighting, t->epoch_losses[MTL_SPLIT_TRAIN]);
        mtli_schedule_after_epoch(t, monitored);
        t->elapsed_seconds = r->elapsed0 + (mtli_now() - r->t0);
        if (r->progress && r->progress(r->user, t, epoch, -1) != 0) break;
        if (early && t->bad_epochs >= t->early_stop_patience) {
            t->bad_epochs = 0; /* a later fit call may continue from the best weights */
            break;
        }
    }
    /* Early stopping hands back the best epoch's weights (also when the
     * epochs ran out or the callback stopped training). */
    if (early && ran && t->best_epoch > 0) mtli_restore(t, t->best_params);
    return MTL_OK;
}

static mtl_status mtli_fit_prepare(mtli_fit_run *r)
{
    mtl_trainer *t = r->t;
    const mtli_settings *s = &t->settings;
    const size_t T = (size_t)t->n_tasks;
    MTLI_TRY(mtli_fit_buffers(t)); /* first fit only; before anything else changes */
    r->perm = mtli_alloc(s, (size_t)r->train->n_rows * sizeof(int64_t));
    r->sum_loss = mtli_calloc(s, 4 * T, sizeof(double));
    if (!r->perm || !r->sum_loss)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_trainer_fit: permutation of %lld rows",
                         (long long)r->train->n_rows);
    r->sum_labels = r->sum_loss + T;
    r->batch_labels = r->sum_loss + 2 * T;
    r->step_losses = r->sum_loss + 3 * T;
    if (!t->eval_ws) MTLI_TRY(mtl_workspace_create(&t->eval_ws, t->model, t->max_batch));
    if (r->val) MTLI_TRY(mtli_evaluator_create(&r->val_eval, t->model, r->val));
    return mtli_trainer_step_buffers(t); /* the steps then allocate nothing */
}

static void mtli_fit_release(mtli_fit_run *r)
{
    const mtli_settings *s = &r->t->settings;
    mtli_free(s, r->perm);
    mtli_free(s, r->sum_loss);
    mtli_evaluator_destroy(r->val_eval);
}

mtl_status mtl_trainer_fit(mtl_trainer *t, const mtl_dataset *train, const mtl_dataset *val,
                           mtl_progress_fn progress, void *user)
{
    MTLI_CHECK_ARG(t && train, "mtl_trainer_fit: trainer and training set must not be NULL");
    MTLI_TRY(mtli_check_dataset(t->model, train, true, "mtl_trainer_fit (training set)"));
    if (val) MTLI_TRY(mtli_check_dataset(t->model, val, true, "mtl_trainer_fit (validation set)"));
    if (t->early_stop_patience > 0 && !val)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                         "mtl_trainer_fit: early stopping (patience %lld) needs a validation set",
                         (long long)t->early_stop_patience);

    mtli_fit_run r = { .t = t, .train = train, .val = val, .progress = progress, .user = user };
    r.t0 = mtli_now();
    r.elapsed0 = t->elapsed_seconds;

    mtl_status s = mtli_fit_prepare(&r);
    if (s == MTL_OK) {
        /* The cosine schedule spans every epoch of the run at this batch
         * size.  Set once preparing cannot fail: a failed fit changes nothing. */
        const int64_t steps_per_epoch = (train->n_rows + t->batch_size - 1) / t->batch_size;
        /* Capped below the counter limit (no overflow; a checkpoint of this
         * trainer must load, and the loader refuses counters >= the limit). */
        t->total_steps_hint = steps_per_epoch > (MTLI_MAX_STEPS - 1) / t->epochs
                                  ? MTLI_MAX_STEPS - 1
                                  : t->epochs * steps_per_epoch;
        mtli_schedule_refresh(t);
        t->fit_data[MTL_SPLIT_TRAIN] = train;
        t->fit_data[MTL_SPLIT_VALIDATION] = val;
        s = mtli_fit_loop(&r);
        t->fit_data[MTL_SPLIT_TRAIN] = t->fit_data[MTL_SPLIT_VALIDATION] = NULL;
    }
    t->elapsed_seconds = r.elapsed0 + (mtli_now() - r.t0);
    mtli_fit_release(&r);
    return s;
}

/* ---- metrics of the last epoch ----------------------------------------------------- */

mtl_status mtl_trainer_epoch_metric(const mtl_trainer *t, mtl_split split, mtl_metric metric,
                                    double *out)
{
    MTLI_CHECK_ARG(t && out, "mtl_trainer_epoch_metric: trainer and out must not be NULL");
    MTLI_CHECK_ARG(split == MTL_SPLIT_TRAIN || split == MTL_SPLIT_VALIDATION,
                   "mtl_trainer_epoch_metric: split %d is neither TRAIN (0) nor VALIDATION (1)",
                   (int)split);
    if (metric < MTL_METRIC_LOSS || metric > MTL_METRIC_ROC_AUC)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "mtl_trainer_epoch_metric: unknown metric %d",
                         (int)metric);
    if (split == MTL_SPLIT_TRAIN && metric == MTL_METRIC_LOSS) return mtl_trainer_epoch_losses(t, split, out);
    if (t->metrics_epoch[split] == t->epoch && t->epoch > 0) {
        memcpy(out, mtli_metric_slot(t, split, metric), (size_t)t->n_tasks * sizeof(double));
        return MTL_OK;
    }
    const mtl_dataset *ds = t->fit_data[split];
    if (split == MTL_SPLIT_VALIDATION || !ds)
        return mtli_fail(MTL_ERR_STATE, "mtl_trainer_epoch_metric: no %s metrics for epoch %lld (%s)",
                         split == MTL_SPLIT_TRAIN ? "training" : "validation", (long long)t->epoch,
                         split == MTL_SPLIT_TRAIN
                             ? "training-set metrics are computed on request inside the progress callback"
                             : "fit without a validation set");
    /* Training-set metrics: one evaluation pass, on request (costly). */
    return mtl_model_evaluate(t->model, t->eval_ws, ds, metric, out);
}

/* ---- progress queries ------------------------------------------------------- */

int64_t mtl_trainer_epoch(const mtl_trainer *t) { return t ? t->epoch : 0; }
int64_t mtl_trainer_step_count(const mtl_trainer *t) { return t ? t->step_count : 0; }
double mtl_trainer_learning_rate(const mtl_trainer *t) { return t ? t->lr_now : NAN; }
double mtl_trainer_elapsed_seconds(const mtl_trainer *t) { return t ? t->elapsed_seconds : 0.0; }

mtl_status mtl_trainer_epoch_losses(const mtl_trainer *t, mtl_split split, double *out)
{
    MTLI_CHECK_ARG(t && out, "mtl_trainer_epoch_losses: trainer and out must not be NULL");
    MTLI_CHECK_ARG(split == MTL_SPLIT_TRAIN || split == MTL_SPLIT_VALIDATION,
                   "mtl_trainer_epoch_losses: split %d is neither TRAIN (0) nor VALIDATION (1)",
                   (int)split);
    memcpy(out, t->epoch_losses[split], (size_t)t->n_tasks * sizeof(double));
    return MTL_OK;
}

mtl_status mtl_trainer_best_epoch(const mtl_trainer *t, int64_t task, int64_t *epoch, double *loss)
{
    MTLI_CHECK_ARG(t, "mtl_trainer_best_epoch: trainer is NULL");
    MTLI_CHECK_ARG(task >= -1 && task < t->n_tasks,
                   "mtl_trainer_best_epoch: task %lld outside [-1, %lld)", (long long)task,
                   (long long)t->n_tasks);
    const int64_t e = task < 0 ? t->best_epoch : t->task_best_epoch[task];
    const double l = task < 0 ? t->best_loss : t->task_best_loss[task];
    if (e <= 0)
        return mtli_fail(MTL_ERR_STATE, "mtl_trainer_best_epoch: no epoch with a validation loss yet "
                         "(fit with a validation set first)");
    if (epoch) *epoch = e;
    if (loss) *loss = l;
    return MTL_OK;
}
