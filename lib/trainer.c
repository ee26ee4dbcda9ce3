/* trainer.c -- the trainer handle, batch validation, gradients and the
 * optimiser step.
 *
 * One step:  validate ─▶ scale inputs/targets ─▶ forward (dropout on) ─▶
 * per-task losses ─▶ loss weighting (rep/head weights) ─▶ backward ─▶
 * gradient norm (non-finite check, optional clipping) ─▶ optimiser update
 * over the flat buffer ─▶ learning-rate schedule.  Nothing allocates. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic") /* let the gradient loops vectorise at -O2 */
#endif

#include "engine.h"
#include "mtl_internal.h"

#include <math.h>
#include <string.h>

/* ---- batch validation -------------------------------------------------------------- */

mtl_status mtli_check_batch(const mtl_model *m, int64_t n, const float *x, int64_t ldx, const float *y, int64_t ldy,
                            const uint8_t *mask, int64_t ldmask, const float *sample_weight)
{
    if (n < 1) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "batch of n = %lld rows: need at least one", (long long)n);
    if (!x) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "inputs x are NULL");
    if (!y) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "targets y are NULL (training needs targets)");
    if (ldx < m->n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "ldx = %lld is less than the model's %lld inputs", (long long)ldx,
                         (long long)m->n_inputs);
    if (ldy < m->target_width)
        return mtli_fail(MTL_ERR_SHAPE, "ldy = %lld is less than the model's %lld target columns", (long long)ldy,
                         (long long)m->target_width);
    if (mask && ldmask < m->target_width)
        return mtli_fail(MTL_ERR_SHAPE, "ldmask = %lld is less than the model's %lld target columns",
                         (long long)ldmask, (long long)m->target_width);
    /* The inputs are the batch's biggest array (4 MB at W3): a vectorised
     * bit test first (the gradient check's kernel), on the trainer's
     * threads when big, and the scalar scan only to name the cell. */
    int64_t bad_row, bad_col;
    if (mtli_find_non_finite(x, n, m->n_inputs, ldx, m->settings.num_threads, &bad_row, &bad_col))
        return mtli_fail(MTL_ERR_NON_FINITE, "input row %lld, column %lld is %g", (long long)bad_row,
                         (long long)bad_col, (double)x[bad_row * ldx + bad_col]);
    if (sample_weight)
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(sample_weight[i]))
                return mtli_fail(MTL_ERR_NON_FINITE, "sample weight of row %lld is %g", (long long)i,
                                 (double)sample_weight[i]);
            if (sample_weight[i] < 0.0f)
                return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "sample weight of row %lld is %g < 0", (long long)i,
                                 (double)sample_weight[i]);
        }
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < task->n_targets; j++) {
                const int64_t c = task->target_col + j;
                const float v = y[i * ldy + c];
                if (isinf(v)) /* NaN means "missing"; Inf is always an error */
                    return mtli_fail(MTL_ERR_NON_FINITE, "target row %lld, column %lld (task '%s') is %g", (long long)i,
                                     (long long)c, task->name, (double)v);
                if (!mtli_label_is_observed(mask, ldmask, y, ldy, i, c)) continue;
                if (task->type == MTL_TASK_MULTICLASS && !mtli_is_class_index(v, task->n_outputs))
                    return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                                     "task '%s', row %lld: class label %g is not an integer in [0, %lld)", task->name,
                                     (long long)i, (double)v, (long long)task->n_outputs);
                if (task->type == MTL_TASK_BINARY && !(v >= 0.0f && v <= 1.0f))
                    return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "task '%s', row %lld, column %lld: binary label %g outside [0, 1]",
                                     task->name, (long long)i, (long long)c, (double)v);
            }
    }
    return MTL_OK;
}

/* ---- create / destroy ---------------------------------------------------------------- */

void mtl_trainer_destroy(mtl_trainer *t)
{
    if (!t) return;
    const mtli_settings s = t->settings;
    mtli_trainer_training_free(t);
    mtli_trainer_weighting_free(t); /* loss weighting (trainer_weighting.c) */
    mtl_workspace_destroy(t->eval_ws);
    mtli_engine_destroy(t->engine);
    mtli_free(&s, t->grads);
    mtli_free(&s, t->last_losses);
    mtli_free(&s, t->rep_weights);
    mtli_free(&s, t->head_weights);
    mtli_free(&s, t->has_label);
    mtli_free(&s, t);
}

mtl_status mtl_trainer_create(mtl_trainer **out, mtl_model *model, int64_t max_batch)
{
    static const char fn[] = "mtl_trainer_create";
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    MTLI_CHECK_ARG(model, "%s: model is NULL", fn);
    if (!model->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is not finalized (call mtl_model_finalize first)", fn);
    const mtli_settings *s = &model->settings;
    mtl_trainer *t = mtli_calloc(s, 1, sizeof *t);
    if (!t) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate the trainer", fn);
    t->model = model;
    t->settings = *s;
    mtli_blas_init(&t->blas, s);
    t->max_batch = max_batch;
    t->n_tasks = model->n_tasks;

    mtl_status st = mtli_engine_create(&t->engine, model, s, max_batch);
    if (st != MTL_OK) {
        mtli_free(s, t);
        return mtli_fail_prefix(st, "%s: ", fn);
    }
    const size_t T = (size_t)model->n_tasks;
    t->grads = mtli_calloc(s, (size_t)model->n_params, sizeof(float));
    t->last_losses = mtli_calloc(s, T, sizeof(double));
    t->rep_weights = mtli_calloc(s, T, sizeof(double));
    t->head_weights = mtli_calloc(s, T, sizeof(double));
    t->has_label = mtli_calloc(s, T, sizeof(bool));
    if (!t->grads || !t->last_losses || !t->rep_weights || !t->head_weights || !t->has_label) {
        mtl_trainer_destroy(t);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate gradients for %lld parameters", fn,
                         (long long)model->n_params);
    }
    st = mtli_trainer_training_init(t); /* options, ranges, optimiser and fit state (fit.c) */
    if (st != MTL_OK) {
        mtl_trainer_destroy(t);
        return mtli_fail_prefix(st, "%s: ", fn);
    }
    /* ---- loss weighting (weighting area: trainer_weighting.c) ---- */
    st = mtli_trainer_weighting_init(t); /* after the options: reads weighting_params */
    if (st != MTL_OK) {
        mtl_trainer_destroy(t);
        return mtli_fail_prefix(st, "%s: ", fn);
    }
    /* ---- end loss weighting ---- */
    *out = t;
    return MTL_OK;
}

/* ---- gradients ---------------------------------------------------------------------------- */

static mtl_status check_trainer_batch(const mtl_trainer *t, int64_t n, const char *fn)
{
    MTLI_CHECK_ARG(t, "%s: trainer is NULL", fn);
    if (n > t->max_batch)
        return mtli_fail(MTL_ERR_SHAPE, "%s: batch of %lld rows exceeds the trainer's max_batch %lld", fn,
                         (long long)n, (long long)t->max_batch);
    return MTL_OK;
}

/* Forward, losses and backward of one validated batch into t->grads;
 * losses into t->last_losses.  Dropout masks are keyed by step_count. */
static mtl_status gradient_pass(mtl_trainer *t, int64_t n, const float *x, int64_t ldx, const float *y, int64_t ldy,
                                const uint8_t *mask, int64_t ldmask, const float *sw, bool step, const char *fn)
{
    mtl_model *m = t->model;
    mtli_engine *e = t->engine;
    const float *xin = x;
    int64_t ldxin = ldx;
    if (m->scalers.fitted) {
        /* the engine's scaled-input copy: made here, once, if the scalers
         * were fitted after the trainer (nothing has changed yet if it fails) */
        mtl_status sx = mtli_engine_scaled_inputs(e);
        if (sx != MTL_OK) return mtli_fail_prefix(sx, "%s: ", fn);
        mtli_scale_inputs(m, n, x, ldx, e->xs, m->n_inputs);
        xin = e->xs;
        ldxin = m->n_inputs;
    }
    mtl_status st = mtli_scale_targets(m, n, y, ldy, mask, ldmask, e->ys, m->target_width);
    if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", fn);
    /* The forward pass follows the last step's optimiser pass, which has
     * streamed the weights out of the caches: its GEMMs warm their weights
     * first (mtli_gemm).  The backward pass's operands are warm already. */
    mtli_blas warm = t->blas;
    warm.warm_weights = true;
    MTLI_TRY(mtli_engine_forward(e, m, &warm, n, xin, ldxin, true, (uint64_t)t->settings.seed, t->step_count));
    mtli_engine_losses(e, m, e->ys, m->target_width, mask, ldmask, sw, t->last_losses, t->has_label);
    for (int64_t k = 0; k < m->n_tasks; k++)
        if (!isfinite(t->last_losses[k]))
            return mtli_fail(MTL_ERR_NON_FINITE, "%s: the loss of task '%s' is %g (step %lld)", fn, m->tasks[k].name,
                             t->last_losses[k], (long long)t->step_count);
    /* The batch passed every check on the user's data: from here t->grads
     * is overwritten (until then a failed call keeps the last gradient). */
    t->grads_valid = false;
    /* ---- loss weighting (weighting area: trainer_weighting.c): rep/head
     * weights from the configured method, then backward.  Nothing learned
     * moves here: mtl_trainer_step commits once the gradient is finite. */
    MTLI_TRY(mtli_trainer_weighted_backward(t, step, mask, ldmask, sw));
    /* ---- end loss weighting ---- */
    t->grads_valid = true;
    return MTL_OK;
}

mtl_status mtl_trainer_compute_gradients(mtl_trainer *t, int64_t n, const float *x, int64_t ldx, const float *y,
                                         int64_t ldy, const uint8_t *mask, int64_t ldmask, const float *sample_weight,
                                         double *task_losses)
{
    static const char fn[] = "mtl_trainer_compute_gradients";
    MTLI_TRY(check_trainer_batch(t, n, fn));
    mtl_status st = mtli_check_batch(t->model, n, x, ldx, y, ldy, mask, ldmask, sample_weight);
    if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", fn);
    MTLI_TRY(gradient_pass(t, n, x, ldx, y, ldy, mask, ldmask, sample_weight, false, fn));
    if (task_losses) memcpy(task_losses, t->last_losses, (size_t)t->n_tasks * sizeof(double));
    return MTL_OK;
}

mtl_status mtl_trainer_get_gradients(const mtl_trainer *t, float *out, int64_t n)
{
    static const char fn[] = "mtl_trainer_get_gradients";
    MTLI_CHECK_ARG(t, "%s: trainer is NULL", fn);
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    if (n != t->model->n_params)
        return mtli_fail(MTL_ERR_SHAPE, "%s: n = %lld, the model has %lld parameters", fn, (long long)n,
                         (long long)t->model->n_params);
    if (!t->grads_valid)
        return mtli_fail(MTL_ERR_STATE, "%s: no gradient yet (call mtl_trainer_compute_gradients or a step)", fn);
    memcpy(out, t->grads, (size_t)n * sizeof(float));
    return MTL_OK;
}

/* ---- the step ---------------------------------------------------------------------------- */

/* Is every element finite?  Tested on the bit pattern (exponent all ones
 * means Inf or NaN) by the optimiser's vector kernels (optim_kernels.c):
 * one pass, no branch per element, cannot overflow (a float sum of squares
 * could on finite values; clipping's is summed in double, which cannot).
 * Only when that fails is it asked again per span. */
static bool span_finite(const float *g, int64_t begin, int64_t end)
{
    return mtli_all_finite(g + begin, end - begin, mtli_optim_best_isa(), 1);
}

/* Name what made the gradient non-finite: a task's head, or the trunk. */
static mtl_status non_finite_gradient(const mtl_trainer *t, const char *fn)
{
    const mtl_model *m = t->model;
    for (int64_t k = 0; k < m->n_tasks; k++) {
        int64_t sp[2][2];
        mtli_task_param_spans(m, k, sp);
        if (!span_finite(t->grads, sp[0][0], sp[0][1]) || !span_finite(t->grads, sp[1][0], sp[1][1]))
            return mtli_fail(MTL_ERR_NON_FINITE, "%s: the gradient of task '%s' is not finite (step %lld); "
                             "parameters unchanged", fn, m->tasks[k].name, (long long)t->step_count);
    }
    return mtli_fail(MTL_ERR_NON_FINITE, "%s: the gradient of the shared trunk is not finite (step %lld); "
                     "parameters unchanged", fn, (long long)t->step_count);
}

mtl_status mtl_trainer_step(mtl_trainer *t, int64_t n, const float *x, int64_t ldx, const float *y, int64_t ldy,
                            const uint8_t *mask, int64_t ldmask, const float *sample_weight, double *task_losses)
{
    static const char fn[] = "mtl_trainer_step";
    MTLI_TRY(check_trainer_batch(t, n, fn));
    mtl_status st = mtli_check_batch(t->model, n, x, ldx, y, ldy, mask, ldmask, sample_weight);
    if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", fn);
    MTLI_TRY(gradient_pass(t, n, x, ldx, y, ldy, mask, ldmask, sample_weight, true, fn));

    mtl_model *m = t->model;
    const int isa = mtli_optim_best_isa();
    const int64_t pass_threads = mtli_pass_threads(m->n_params, t->settings.num_threads);
    /* Global-norm clipping: its sum of squares is the finite check too
     * (NaN or Inf exactly when some element is), so no second pass. */
    const bool clip = t->clip_norm > 0.0;
    const double sumsq = clip ? mtli_sum_squares(t->grads, m->n_params, isa, pass_threads) : 0.0;
    if (clip ? !isfinite(sumsq) : !mtli_all_finite(t->grads, m->n_params, isa, pass_threads))
        return non_finite_gradient(t, fn);
    MTLI_TRY(mtli_trainer_weighting_commit(t)); /* learned weights, diagnostics: only for a good step */
    /* The update takes the clipped gradient as c * g (t->grads keeps g). */
    const double norm = sqrt(sumsq);
    const float c = clip && norm > t->clip_norm ? (float)(t->clip_norm / norm) : 1.0f;
    mtli_optim_update_par(&t->optim, &t->opt_state, m->params, t->grads, t->lr_now, t->ranges, t->n_ranges, isa,
                          pass_threads, c);
    mtli_schedule_after_step(t);
    if (task_losses) memcpy(task_losses, t->last_losses, (size_t)t->n_tasks * sizeof(double));
    return MTL_OK;
}
