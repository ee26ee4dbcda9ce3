/* trainer_options.c -- the trainer's typed options: defaults, setters,
 * getters, per-task learning-rate multipliers and the parameter ranges
 * they turn into.
 *
 * Bounds live in options.c (one table for every handle); this file only
 * maps option numbers to trainer fields and adds the checks that depend on
 * the trainer (batch size <= max_batch, no optimiser change mid-run). */
#include "mtl_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mtli_trainer_options_defaults(mtl_trainer *t)
{
    t->optim.kind = MTL_OPTIMIZER_ADAMW;
    t->optim.momentum = 0.0;
    t->optim.nesterov = false;
    t->optim.beta1 = 0.9;
    t->optim.beta2 = 0.999;
    t->optim.eps = 1e-8;
    t->optim.weight_decay = 0.0;
    t->learning_rate = 1e-3;
    t->clip_norm = 0.0;

    t->schedule = MTL_SCHEDULE_CONSTANT;
    t->schedule_step_epochs = 30; /* PyTorch StepLR has no default; 30 is its documented example */
    t->schedule_gamma = 0.1;      /* PyTorch StepLR / ReduceLROnPlateau default */
    t->warmup_steps = 0;
    t->min_learning_rate = 0.0;
    t->plateau_patience = 10;     /* PyTorch ReduceLROnPlateau default */

    t->batch_size = t->max_batch < 32 ? t->max_batch : 32;
    t->epochs = 100;
    t->early_stop_patience = 0;
    t->early_stop_min_delta = 0.0;
    t->callback_every_steps = 0;

    t->weighting_params.method = MTL_WEIGHTING_FIXED;
    t->weighting_params.dwa_temperature = 2.0;
    t->weighting_params.gradnorm_alpha = 1.5;
    t->weighting_params.cagrad_c = 0.4;
    t->weighting_params.learning_rate = 0.025;
    t->weighting_params.seed = (uint64_t)t->settings.seed;
    t->diagnostics_on = false;
    t->affinity_on = false;

    t->lr_now = t->learning_rate;
    t->lr_plateau_scale = 1.0;
    t->plateau_best = INFINITY;
    t->plateau_bad_epochs = 0;
}

/* ---- per-task learning-rate ranges ----------------------------------------- */

/* The spans of every task whose multiplier is not 1 (out == NULL: count). */
static int64_t mtli_head_spans(const mtl_model *m, const double *mult, mtli_range *out)
{
    int64_t n = 0;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        if (mult[t] == 1.0) continue;
        int64_t spans[2][2];
        const int64_t k = mtli_task_param_spans(m, t, spans);
        for (int64_t i = 0; i < k; i++, n++)
            if (out) out[n] = (mtli_range){ spans[i][0], spans[i][1], (float)mult[t] };
    }
    return n;
}

static int mtli_range_cmp(const void *a, const void *b)
{
    int64_t x = ((const mtli_range *)a)->begin, y = ((const mtli_range *)b)->begin;
    return (x > y) - (x < y);
}

/* Cover [0, n_params) with ranges: the head spans of tasks whose multiplier
 * is not 1, and scale-1 ranges in the gaps; adjacent ranges of equal scale
 * merge, so with every multiplier at 1 there is a single range. */
mtl_status mtli_trainer_build_ranges(mtl_trainer *t)
{
    const mtl_model *m = t->model;
    const int64_t n_spans = mtli_head_spans(m, t->task_lr_mult, NULL);
    const int64_t cap = 2 * n_spans + 1; /* spans + a gap before each + the tail */
    mtli_range *r = mtli_calloc(&t->settings, (size_t)cap, sizeof *r);
    mtli_range *spans = n_spans ? mtli_calloc(&t->settings, (size_t)n_spans, sizeof *spans) : NULL;
    if (!r || (n_spans && !spans)) {
        mtli_free(&t->settings, r);
        mtli_free(&t->settings, spans);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "trainer: %lld learning-rate ranges",
                         (long long)cap);
    }
    if (n_spans) {
        mtli_head_spans(m, t->task_lr_mult, spans);
        qsort(spans, (size_t)n_spans, sizeof *spans, mtli_range_cmp);
    }

    int64_t n = 0, pos = 0;
    for (int64_t i = 0; i <= n_spans; i++) {
        const bool tail = i == n_spans;
        const mtli_range s = tail ? (mtli_range){ m->n_params, m->n_params, 1.0f } : spans[i];
        if (s.begin > pos) { /* a gap: trunk (or unscaled head) parameters */
            if (n > 0 && r[n - 1].lr_scale == 1.0f && r[n - 1].end == pos)
                r[n - 1].end = s.begin;
            else
                r[n++] = (mtli_range){ pos, s.begin, 1.0f };
        }
        if (tail) break;
        if (n > 0 && r[n - 1].lr_scale == s.lr_scale && r[n - 1].end == s.begin)
            r[n - 1].end = s.end;
        else
            r[n++] = s;
        pos = s.end;
    }
    mtli_free(&t->settings, spans);
    mtli_free(&t->settings, t->ranges);
    t->ranges = r;
    t->n_ranges = n;
    return MTL_OK;
}

/* ---- setters and getters ----------------------------------------------------- */

static mtl_status mtli_check_trainer(const mtl_trainer *t, const char *fn)
{
    if (!t) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: trainer is NULL", fn);
    return MTL_OK;
}

mtl_status mtl_trainer_set_i64(mtl_trainer *t, int option, int64_t value)
{
    MTLI_TRY(mtli_check_trainer(t, "mtl_trainer_set_i64"));
    MTLI_TRY(mtli_option_check_i64(option, false, value));
    switch (option) {
    case MTL_OPT_SEED:
        t->settings.seed = value;
        t->weighting_params.seed = (uint64_t)value;
        return MTL_OK;
    case MTL_OPT_OPTIMIZER:
        /* The moments of one optimiser mean nothing to another. */
        if (t->step_count > 0 && (mtl_optimizer)value != t->optim.kind)
            return mtli_fail(MTL_ERR_STATE,
                             "MTL_OPT_OPTIMIZER: cannot change the optimiser after %lld steps "
                             "(create a new trainer)", (long long)t->step_count);
        t->optim.kind = (mtl_optimizer)value;
        return MTL_OK;
    case MTL_OPT_NESTEROV: t->optim.nesterov = value != 0; return MTL_OK;
    case MTL_OPT_SCHEDULE:
        t->schedule = (mtl_schedule)value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_SCHEDULE_STEP_EPOCHS:
        t->schedule_step_epochs = value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_WARMUP_STEPS:
        t->warmup_steps = value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_PLATEAU_PATIENCE: t->plateau_patience = value; return MTL_OK;
    case MTL_OPT_BATCH_SIZE:
        if (value > t->max_batch)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                             "MTL_OPT_BATCH_SIZE: %lld exceeds the trainer's max_batch %lld",
                             (long long)value, (long long)t->max_batch);
        t->batch_size = value;
        return MTL_OK;
    case MTL_OPT_EPOCHS: t->epochs = value; return MTL_OK;
    case MTL_OPT_EARLY_STOP_PATIENCE: t->early_stop_patience = value; return MTL_OK;
    case MTL_OPT_CALLBACK_EVERY_STEPS: t->callback_every_steps = value; return MTL_OK;
    case MTL_OPT_WEIGHTING:
    case MTL_OPT_DIAGNOSTICS:
    case MTL_OPT_AFFINITY: {
        /* These may need per-task gradient buffers: allocate them here, so
         * that a step never allocates; on failure the option keeps its value. */
        mtl_weighting old_method = t->weighting_params.method;
        bool old_diag = t->diagnostics_on, old_aff = t->affinity_on;
        if (option == MTL_OPT_WEIGHTING) t->weighting_params.method = (mtl_weighting)value;
        if (option == MTL_OPT_DIAGNOSTICS) t->diagnostics_on = value != 0;
        if (option == MTL_OPT_AFFINITY) t->affinity_on = value != 0;
        mtl_status st = mtli_trainer_step_buffers(t);
        if (st != MTL_OK) {
            t->weighting_params.method = old_method;
            t->diagnostics_on = old_diag;
            t->affinity_on = old_aff;
        }
        return st;
    }
    default:
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not a trainer option",
                         (unsigned)option);
    }
}

mtl_status mtl_trainer_set_f64(mtl_trainer *t, int option, double value)
{
    MTLI_TRY(mtli_check_trainer(t, "mtl_trainer_set_f64"));
    MTLI_TRY(mtli_option_check_f64(option, false, value));
    switch (option) {
    case MTL_OPT_LEARNING_RATE:
        t->learning_rate = value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_MOMENTUM: t->optim.momentum = value; return MTL_OK;
    case MTL_OPT_BETA1: t->optim.beta1 = value; return MTL_OK;
    case MTL_OPT_BETA2: t->optim.beta2 = value; return MTL_OK;
    case MTL_OPT_EPSILON: t->optim.eps = value; return MTL_OK;
    case MTL_OPT_WEIGHT_DECAY: t->optim.weight_decay = value; return MTL_OK;
    case MTL_OPT_CLIP_NORM: t->clip_norm = value; return MTL_OK;
    case MTL_OPT_SCHEDULE_GAMMA:
        t->schedule_gamma = value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_MIN_LEARNING_RATE:
        t->min_learning_rate = value;
        mtli_schedule_refresh(t);
        return MTL_OK;
    case MTL_OPT_EARLY_STOP_MIN_DELTA: t->early_stop_min_delta = value; return MTL_OK;
    case MTL_OPT_DWA_TEMPERATURE: t->weighting_params.dwa_temperature = value; return MTL_OK;
    case MTL_OPT_GRADNORM_ALPHA: t->weighting_params.gradnorm_alpha = value; return MTL_OK;
    case MTL_OPT_CAGRAD_C: t->weighting_params.cagrad_c = value; return MTL_OK;
    case MTL_OPT_WEIGHTING_LR: t->weighting_params.learning_rate = value; return MTL_OK;
    default:
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not a trainer option",
                         (unsigned)option);
    }
}

mtl_status mtl_trainer_get_i64(const mtl_trainer *t, int option, int64_t *value)
{
    MTLI_TRY(mtli_check_trainer(t, "mtl_trainer_get_i64"));
    MTLI_CHECK_ARG(value, "mtl_trainer_get_i64: value is NULL");
    /* Validate the option number and type with a value always in range. */
    int64_t v;
    switch (option) {
    case MTL_OPT_SEED: v = t->settings.seed; break;
    case MTL_OPT_OPTIMIZER: v = t->optim.kind; break;
    case MTL_OPT_NESTEROV: v = t->optim.nesterov; break;
    case MTL_OPT_SCHEDULE: v = t->schedule; break;
    case MTL_OPT_SCHEDULE_STEP_EPOCHS: v = t->schedule_step_epochs; break;
    case MTL_OPT_WARMUP_STEPS: v = t->warmup_steps; break;
    case MTL_OPT_PLATEAU_PATIENCE: v = t->plateau_patience; break;
    case MTL_OPT_BATCH_SIZE: v = t->batch_size; break;
    case MTL_OPT_EPOCHS: v = t->epochs; break;
    case MTL_OPT_EARLY_STOP_PATIENCE: v = t->early_stop_patience; break;
    case MTL_OPT_CALLBACK_EVERY_STEPS: v = t->callback_every_steps; break;
    case MTL_OPT_WEIGHTING: v = t->weighting_params.method; break;
    case MTL_OPT_DIAGNOSTICS: v = t->diagnostics_on; break;
    case MTL_OPT_AFFINITY: v = t->affinity_on; break;
    default: {
        /* Name a type or family error, checked with a value in the option's
         * range (lo stays 0 for an unknown or double option: then the check
         * fails on the option itself, never on the value). */
        int64_t lo = 0, hi = 0;
        (void)mtl_option_bounds_i64(option, &lo, &hi);
        MTLI_TRY(mtli_option_check_i64(option, false, lo));
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not a trainer option",
                         (unsigned)option);
    }
    }
    *value = v;
    return MTL_OK;
}

mtl_status mtl_trainer_get_f64(const mtl_trainer *t, int option, double *value)
{
    MTLI_TRY(mtli_check_trainer(t, "mtl_trainer_get_f64"));
    MTLI_CHECK_ARG(value, "mtl_trainer_get_f64: value is NULL");
    double v;
    switch (option) {
    case MTL_OPT_LEARNING_RATE: v = t->learning_rate; break;
    case MTL_OPT_MOMENTUM: v = t->optim.momentum; break;
    case MTL_OPT_BETA1: v = t->optim.beta1; break;
    case MTL_OPT_BETA2: v = t->optim.beta2; break;
    case MTL_OPT_EPSILON: v = t->optim.eps; break;
    case MTL_OPT_WEIGHT_DECAY: v = t->optim.weight_decay; break;
    case MTL_OPT_CLIP_NORM: v = t->clip_norm; break;
    case MTL_OPT_SCHEDULE_GAMMA: v = t->schedule_gamma; break;
    case MTL_OPT_MIN_LEARNING_RATE: v = t->min_learning_rate; break;
    case MTL_OPT_EARLY_STOP_MIN_DELTA: v = t->early_stop_min_delta; break;
    case MTL_OPT_DWA_TEMPERATURE: v = t->weighting_params.dwa_temperature; break;
    case MTL_OPT_GRADNORM_ALPHA: v = t->weighting_params.gradnorm_alpha; break;
    case MTL_OPT_CAGRAD_C: v = t->weighting_params.cagrad_c; break;
    case MTL_OPT_WEIGHTING_LR: v = t->weighting_params.learning_rate; break;
    default:
        MTLI_TRY(mtli_option_check_f64(option, false, 0.5)); /* names a type or family error */
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not a trainer option",
                         (unsigned)option);
    }
    *value = v;
    return MTL_OK;
}

/* ---- per-task options ----------------------------------------------------- */

static mtl_status mtli_check_task_option(const mtl_trainer *t, int64_t task, int option,
                                         const char *fn)
{
    MTLI_TRY(mtli_check_trainer(t, fn));
    if (task < 0 || task >= t->n_tasks)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task %lld outside [0, %lld)", fn,
                         (long long)task, (long long)t->n_tasks);
    if (option != MTL_TASK_OPT_LR_MULTIPLIER) {
        MTLI_TRY(mtli_option_check_f64(option, true, 1.0)); /* unknown or wrong type */
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                         "%s: option %#x is a model option: use mtl_model_set_task_* / get_task_*",
                         fn, (unsigned)option);
    }
    return MTL_OK;
}

mtl_status mtl_trainer_set_task_f64(mtl_trainer *t, int64_t task, int option, double value)
{
    MTLI_TRY(mtli_check_task_option(t, task, option, "mtl_trainer_set_task_f64"));
    MTLI_TRY(mtli_option_check_f64(option, true, value));
    const double old = t->task_lr_mult[task];
    if (old == value) return MTL_OK;
    t->task_lr_mult[task] = value;
    mtl_status s = mtli_trainer_build_ranges(t);
    if (s != MTL_OK) t->task_lr_mult[task] = old; /* ranges unchanged */
    return s;
}

mtl_status mtl_trainer_get_task_f64(const mtl_trainer *t, int64_t task, int option, double *value)
{
    MTLI_TRY(mtli_check_task_option(t, task, option, "mtl_trainer_get_task_f64"));
    MTLI_CHECK_ARG(value, "mtl_trainer_get_task_f64: value is NULL");
    *value = t->task_lr_mult[task];
    return MTL_OK;
}
