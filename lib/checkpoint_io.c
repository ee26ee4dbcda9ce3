/* checkpoint_io.c -- checkpoints: a model file plus everything a trainer
 * needs to continue bitwise identically (docs/file-format.md).
 *
 * Random numbers are counter-based (a pure function of seed, stream and
 * step or epoch counters), so the RNG "state" is the seed (a trainer
 * option) and the counters (PROGRESS); nothing else needs saving.
 *
 * Loading rebuilds the model (model_io.c), creates a trainer through
 * mtl_trainer_create, applies the saved options through the public
 * setters, and only then overwrites the state: optimiser moments,
 * counters, schedule, early stopping, loss-weighting state. */
#include "model_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Every trainer option, in the order written.  New options are appended;
 * the file stores each with its stable id, so order does not matter to
 * readers. */
static const int mtli_ckpt_options[] = {
    MTL_OPT_SEED, MTL_OPT_OPTIMIZER, MTL_OPT_LEARNING_RATE, MTL_OPT_MOMENTUM, MTL_OPT_NESTEROV,
    MTL_OPT_BETA1, MTL_OPT_BETA2, MTL_OPT_EPSILON, MTL_OPT_WEIGHT_DECAY, MTL_OPT_CLIP_NORM,
    MTL_OPT_SCHEDULE, MTL_OPT_SCHEDULE_STEP_EPOCHS, MTL_OPT_SCHEDULE_GAMMA, MTL_OPT_WARMUP_STEPS,
    MTL_OPT_MIN_LEARNING_RATE, MTL_OPT_PLATEAU_PATIENCE, MTL_OPT_BATCH_SIZE, MTL_OPT_EPOCHS,
    MTL_OPT_EARLY_STOP_PATIENCE, MTL_OPT_EARLY_STOP_MIN_DELTA, MTL_OPT_CALLBACK_EVERY_STEPS,
    MTL_OPT_WEIGHTING, MTL_OPT_DWA_TEMPERATURE, MTL_OPT_GRADNORM_ALPHA, MTL_OPT_CAGRAD_C,
    MTL_OPT_WEIGHTING_LR, MTL_OPT_DIAGNOSTICS, MTL_OPT_AFFINITY,
};
#define MTLI_CKPT_N_OPTIONS ((int)(sizeof mtli_ckpt_options / sizeof mtli_ckpt_options[0]))
#define MTLI_CKPT_MAX_OPTIONS 1024
/* Activation memory a checkpoint may ask a trainer to allocate. */
#define MTLI_CKPT_MAX_ACTIVATION_BYTES ((double)((uint64_t)1 << 34))

/* ---- writing ----------------------------------------------------------------- */

static void mtli_write_options(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    mtli_w_u64(w, (uint64_t)t->max_batch);
    /* Count first: a getter that fails (it should not) drops its entry. */
    uint64_t n = 0;
    for (int i = 0; i < MTLI_CKPT_N_OPTIONS; i++) {
        int64_t iv;
        double dv;
        int id = mtli_ckpt_options[i];
        if ((id & MTL_OPTTYPE_I64) ? mtl_trainer_get_i64(t, id, &iv) == MTL_OK : mtl_trainer_get_f64(t, id, &dv) == MTL_OK)
            n++;
    }
    mtli_w_u64(w, n);
    for (int i = 0; i < MTLI_CKPT_N_OPTIONS; i++) {
        int id = mtli_ckpt_options[i];
        int64_t iv;
        double dv;
        if (id & MTL_OPTTYPE_I64) {
            if (mtl_trainer_get_i64(t, id, &iv) != MTL_OK) continue;
            mtli_w_u32(w, (uint32_t)id);
            mtli_w_i64(w, iv);
        } else {
            if (mtl_trainer_get_f64(t, id, &dv) != MTL_OK) continue;
            mtli_w_u32(w, (uint32_t)id);
            mtli_w_f64(w, dv);
        }
    }
    mtli_w_u64(w, (uint64_t)t->n_tasks);
    mtli_w_f64s(w, t->task_lr_mult, (size_t)t->n_tasks);
}

/* Which moments the optimiser reads (the others stay zero). */
static bool mtli_uses_m(const mtl_trainer *t)
{
    return t->optim.kind != MTL_OPTIMIZER_SGD || t->optim.momentum > 0.0;
}

static bool mtli_uses_v(const mtl_trainer *t)
{
    return t->optim.kind != MTL_OPTIMIZER_SGD;
}

static void mtli_write_optimizer(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    mtli_w_u32(w, (uint32_t)t->optim.kind);
    mtli_w_i64(w, t->opt_state.t);
    bool has_m = t->opt_state.m && mtli_uses_m(t), has_v = t->opt_state.v && mtli_uses_v(t);
    mtli_w_u8(w, has_m);
    if (has_m) mtli_w_param_vector(w, t->model, t->opt_state.m);
    mtli_w_u8(w, has_v);
    if (has_v) mtli_w_param_vector(w, t->model, t->opt_state.v);
}

static void mtli_write_progress(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    mtli_w_i64(w, t->step_count);
    mtli_w_i64(w, t->epoch);
    mtli_w_f64(w, t->lr_now);
    mtli_w_f64(w, t->plateau_best);
    mtli_w_i64(w, t->plateau_bad_epochs);
    mtli_w_f64(w, t->lr_plateau_scale);
    mtli_w_i64(w, t->total_steps_hint);
    mtli_w_f64(w, t->elapsed_seconds);
    mtli_w_u64(w, (uint64_t)t->n_tasks);
    mtli_w_f64s(w, t->epoch_losses[MTL_SPLIT_TRAIN], (size_t)t->n_tasks);
    mtli_w_f64s(w, t->epoch_losses[MTL_SPLIT_VALIDATION], (size_t)t->n_tasks);
}

static void mtli_write_early_stop(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    mtli_w_i64(w, t->best_epoch);
    mtli_w_f64(w, t->best_loss);
    mtli_w_i64(w, t->bad_epochs);
    mtli_w_u64(w, (uint64_t)t->n_tasks);
    for (int64_t k = 0; k < t->n_tasks; k++) {
        mtli_w_i64(w, t->task_best_epoch[k]);
        mtli_w_f64(w, t->task_best_loss[k]);
    }
    /* The best weights matter only once an epoch was the best (before the
     * first fit there is no copy: best_params is NULL, best_epoch 0). */
    bool has_best = t->best_params && t->best_epoch > 0;
    mtli_w_u8(w, has_best);
    if (has_best) mtli_w_param_vector(w, t->model, t->best_params);
}

static void mtli_write_weighting(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    size_t n = mtli_weighting_state_size(t->weighting);
    mtli_w_u32(w, (uint32_t)t->weighting_params.method);
    mtli_w_u64(w, n);
    /* The module serialises into a buffer; a small stack one covers
     * typical task counts, larger states go piecewise through it. */
    uint8_t small[4096] = { 0 };
    if (n <= sizeof small) {
        if (w->sink != MTLI_SINK_MEASURE && mtli_weighting_save(t->weighting, small, sizeof small) != MTL_OK) {
            w->status = mtli_fail_prefix(MTL_ERR_INTERNAL, "saving the loss-weighting state: ");
            return;
        }
        mtli_w_bytes(w, small, n);
        return;
    }
    if (w->sink == MTLI_SINK_MEASURE) {
        w->pos += n;
        return;
    }
    uint8_t *big = mtli_alloc(&t->settings, n);
    if (!big || mtli_weighting_save(t->weighting, big, n) != MTL_OK) {
        mtli_free(&t->settings, big);
        w->status = mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot serialise %zu bytes of loss-weighting state", n);
        return;
    }
    mtli_w_bytes(w, big, n);
    mtli_free(&t->settings, big);
}

static void mtli_checkpoint_body(mtli_writer *w, const void *arg)
{
    const mtl_trainer *t = arg;
    mtli_model_write_sections(w, t->model);
    mtli_w_section(w, MTLI_SEC_TRAINER_OPTIONS, mtli_write_options, t);
    mtli_w_section(w, MTLI_SEC_OPTIMIZER, mtli_write_optimizer, t);
    mtli_w_section(w, MTLI_SEC_PROGRESS, mtli_write_progress, t);
    mtli_w_section(w, MTLI_SEC_EARLY_STOP, mtli_write_early_stop, t);
    if (t->weighting) mtli_w_section(w, MTLI_SEC_WEIGHTING, mtli_write_weighting, t);
}

/* Everything the loader will insist on being finite is finite. */
static mtl_status mtli_check_trainer_saveable(const mtl_trainer *t, const char *fn)
{
    MTLI_TRY(mtli_check_saveable(t->model, fn));
    const int64_t n = t->model->n_params;
    const float *vecs[3] = { t->opt_state.m, t->opt_state.v, t->best_epoch > 0 ? t->best_params : NULL };
    static const char *const names[3] = { "first moment", "second moment", "best-parameter copy" };
    for (int k = 0; k < 3; k++)
        if (vecs[k] && mtli_first_non_finite(vecs[k], n) < n)
            return mtli_fail(MTL_ERR_NON_FINITE, "%s: the trainer's %s holds a non-finite value; nothing was "
                             "written", fn, names[k]);
    return MTL_OK;
}

mtl_status mtl_trainer_save_checkpoint(const mtl_trainer *trainer, const char *path)
{
    MTLI_CHECK_ARG(trainer, "mtl_trainer_save_checkpoint: trainer must not be NULL");
    MTLI_CHECK_ARG(path && path[0], "mtl_trainer_save_checkpoint: path must be a non-empty string");
    MTLI_TRY(mtli_check_trainer_saveable(trainer, "mtl_trainer_save_checkpoint"));
    return mtli_file_save_path(&trainer->settings, path, MTLI_FILE_CHECKPOINT, mtli_checkpoint_body, trainer);
}

mtl_status mtl_trainer_save_checkpoint_buffer(const mtl_trainer *trainer, void *buf, size_t cap, size_t *size)
{
    MTLI_CHECK_ARG(trainer && size, "mtl_trainer_save_checkpoint_buffer: trainer and size must not be NULL");
    MTLI_TRY(mtli_check_trainer_saveable(trainer, "mtl_trainer_save_checkpoint_buffer"));
    mtl_status st = mtli_file_save_buffer(MTLI_FILE_CHECKPOINT, mtli_checkpoint_body, trainer, buf, cap, size);
    if (st != MTL_OK) mtli_fail_prefix(st, "mtl_trainer_save_checkpoint_buffer: ");
    return st;
}

/* ---- reading ------------------------------------------------------------------ */

static mtl_status mtli_require(const mtli_file *f, uint32_t id, mtli_reader *r)
{
    if (!mtli_file_section_reader(f, id, r))
        return mtli_fail(MTL_ERR_FORMAT, "byte %d: the checkpoint has no %s", MTLI_HEADER_BYTES, mtli_section_name(id));
    return MTL_OK;
}

/* Rough activation memory of a trainer: every layer keeps a few buffers
 * of max_batch x width floats. */
static double mtli_activation_bytes(const mtl_model *m, uint64_t max_batch)
{
    double widths = (double)(m->n_inputs + m->target_width + m->output_width);
    for (int64_t i = 0; i < m->n_trunk; i++) widths += 4.0 * (double)m->trunk[i].fan_out;
    for (int64_t t = 0; t < m->n_tasks; t++)
        for (int64_t j = 0; j <= m->tasks[t].n_hidden; j++) widths += 4.0 * (double)m->tasks[t].layers[j].fan_out;
    return (double)max_batch * widths * 4.0;
}

/* TRAINER_OPTIONS: creates the trainer. */
static mtl_status mtli_read_options(mtl_trainer **out, mtl_model *m, const mtli_file *f)
{
    mtli_reader r;
    MTLI_TRY(mtli_require(f, MTLI_SEC_TRAINER_OPTIONS, &r));
    uint64_t max_batch, n = 0; /* n: read by the loop test even when the count failed */
    size_t at = r.pos;
    MTLI_TRY(mtli_r_u64(&r, "max_batch", &max_batch));
    if (max_batch == 0 || max_batch > ((uint64_t)1 << 24) ||
        mtli_activation_bytes(m, max_batch) > MTLI_CKPT_MAX_ACTIVATION_BYTES) {
        r.pos = at;
        return mtli_r_fail(&r, "max_batch %llu: out of range, or its activations would exceed %.0f GiB",
                           (unsigned long long)max_batch, MTLI_CKPT_MAX_ACTIVATION_BYTES / 1073741824.0);
    }
    mtl_trainer *t = NULL;
    MTLI_TRY(mtli_file_value_check(mtl_trainer_create(&t, m, (int64_t)max_batch), f, &r, at, "max_batch"));

    mtl_status st = mtli_r_count(&r, "option count", MTLI_CKPT_MAX_OPTIONS, 12, &n);
    for (uint64_t i = 0; i < n && st == MTL_OK; i++) {
        uint32_t id;
        at = r.pos;
        st = mtli_r_u32(&r, "option id", &id);
        if (st != MTL_OK) break;
        char what[48];
        snprintf(what, sizeof what, "option %#x", (unsigned)id);
        if ((id & (MTL_OPTTYPE_I64 | MTL_OPTTYPE_F64)) == MTL_OPTTYPE_I64) {
            int64_t v;
            st = mtli_r_i64(&r, "option value", &v);
            if (st == MTL_OK) st = mtli_file_value_check(mtl_trainer_set_i64(t, (int)id, v), f, &r, at, what);
        } else if ((id & (MTL_OPTTYPE_I64 | MTL_OPTTYPE_F64)) == MTL_OPTTYPE_F64) {
            double v;
            st = mtli_r_f64(&r, "option value", &v);
            if (st == MTL_OK) st = mtli_file_value_check(mtl_trainer_set_f64(t, (int)id, v), f, &r, at, what);
        } else {
            r.pos = at;
            st = mtli_r_fail(&r, "option id %#x has no value type", (unsigned)id);
        }
    }
    uint64_t T = 0;
    if (st == MTL_OK) st = mtli_r_count(&r, "task count", MTLI_MAX_TASKS, 8, &T);
    if (st == MTL_OK && T != (uint64_t)m->n_tasks)
        st = mtli_r_fail(&r, "learning-rate multipliers for %llu tasks, the model has %lld", (unsigned long long)T,
                         (long long)m->n_tasks);
    for (uint64_t k = 0; k < T && st == MTL_OK; k++) {
        double v;
        at = r.pos;
        st = mtli_r_f64(&r, "learning-rate multiplier", &v);
        if (st == MTL_OK)
            st = mtli_file_value_check(mtl_trainer_set_task_f64(t, (int64_t)k, MTL_TASK_OPT_LR_MULTIPLIER, v), f, &r, at,
                                 "learning-rate multiplier");
    }
    if (st == MTL_OK) st = mtli_file_section_done(f, &r);
    if (st != MTL_OK) {
        mtl_trainer_destroy(t);
        return st;
    }
    *out = t;
    return MTL_OK;
}

/* A value that must be finite (or +inf if allowed: "no best yet"). */
static mtl_status mtli_r_real(mtli_reader *r, const char *field, bool allow_inf, bool allow_nan, double lo,
                              double *v)
{
    size_t at = r->pos;
    MTLI_TRY(mtli_r_f64(r, field, v));
    bool ok = (isfinite(*v) && *v >= lo) || (allow_inf && *v == INFINITY) || (allow_nan && isnan(*v));
    if (!ok) {
        mtli_reader here = *r;
        here.pos = at;
        return mtli_r_fail(&here, "%s is %g", field, *v);
    }
    return MTL_OK;
}

static mtl_status mtli_r_counter(mtli_reader *r, const char *field, int64_t *v)
{
    size_t at = r->pos;
    MTLI_TRY(mtli_r_i64(r, field, v));
    /* A trainer can reach MTLI_MAX_STEPS steps (its last allowed step is
     * MTLI_MAX_STEPS - 1); larger counters could overflow when counted on. */
    if (*v < 0 || *v > MTLI_MAX_STEPS) {
        mtli_reader here = *r;
        here.pos = at;
        return mtli_r_fail(&here, "%s is %lld (must be in [0, 2^47])", field, (long long)*v);
    }
    return MTL_OK;
}

static mtl_status mtli_read_optimizer(mtl_trainer *t, const mtli_file *f)
{
    mtli_reader r;
    MTLI_TRY(mtli_require(f, MTLI_SEC_OPTIMIZER, &r));
    uint32_t kind;
    MTLI_TRY(mtli_r_u32(&r, "optimiser", &kind));
    if (kind != (uint32_t)t->optim.kind)
        return mtli_r_fail(&r, "moments of optimiser %u, the options say %d", (unsigned)kind, (int)t->optim.kind);
    MTLI_TRY(mtli_r_counter(&r, "optimiser step count", &t->opt_state.t));
    bool has;
    MTLI_TRY(mtli_r_bool(&r, "first-moment flag", &has));
    if (has) MTLI_TRY(mtli_r_param_vector(&r, t->model, "first moment", t->opt_state.m));
    MTLI_TRY(mtli_r_bool(&r, "second-moment flag", &has));
    if (has) MTLI_TRY(mtli_r_param_vector(&r, t->model, "second moment", t->opt_state.v));
    return mtli_file_section_done(f, &r);
}

static mtl_status mtli_read_task_count(mtli_reader *r, const mtl_trainer *t)
{
    uint64_t T;
    MTLI_TRY(mtli_r_count(r, "task count", MTLI_MAX_TASKS, 8, &T));
    if (T != (uint64_t)t->n_tasks)
        return mtli_r_fail(r, "state for %llu tasks, the model has %lld", (unsigned long long)T, (long long)t->n_tasks);
    return MTL_OK;
}

static mtl_status mtli_read_progress(mtl_trainer *t, const mtli_file *f)
{
    mtli_reader r;
    MTLI_TRY(mtli_require(f, MTLI_SEC_PROGRESS, &r));
    MTLI_TRY(mtli_r_counter(&r, "step count", &t->step_count));
    MTLI_TRY(mtli_r_counter(&r, "epoch", &t->epoch));
    MTLI_TRY(mtli_r_real(&r, "current learning rate", false, false, 0.0, &t->lr_now));
    MTLI_TRY(mtli_r_real(&r, "plateau best loss", true, false, -INFINITY, &t->plateau_best));
    MTLI_TRY(mtli_r_counter(&r, "plateau bad epochs", &t->plateau_bad_epochs));
    MTLI_TRY(mtli_r_real(&r, "plateau scale", false, false, 0.0, &t->lr_plateau_scale));
    MTLI_TRY(mtli_r_counter(&r, "total-steps hint", &t->total_steps_hint));
    MTLI_TRY(mtli_r_real(&r, "elapsed seconds", false, false, 0.0, &t->elapsed_seconds));
    MTLI_TRY(mtli_read_task_count(&r, t));
    for (int split = 0; split < 2; split++)
        for (int64_t k = 0; k < t->n_tasks; k++)
            MTLI_TRY(mtli_r_real(&r, "epoch loss", false, true, -INFINITY, &t->epoch_losses[split][k]));
    return mtli_file_section_done(f, &r);
}

static mtl_status mtli_read_early_stop(mtl_trainer *t, const mtli_file *f)
{
    mtli_reader r;
    MTLI_TRY(mtli_require(f, MTLI_SEC_EARLY_STOP, &r));
    MTLI_TRY(mtli_r_counter(&r, "best epoch", &t->best_epoch));
    MTLI_TRY(mtli_r_real(&r, "best loss", true, false, -INFINITY, &t->best_loss));
    MTLI_TRY(mtli_r_counter(&r, "epochs without improvement", &t->bad_epochs));
    MTLI_TRY(mtli_read_task_count(&r, t));
    for (int64_t k = 0; k < t->n_tasks; k++) {
        MTLI_TRY(mtli_r_counter(&r, "task best epoch", &t->task_best_epoch[k]));
        MTLI_TRY(mtli_r_real(&r, "task best loss", true, false, -INFINITY, &t->task_best_loss[k]));
    }
    bool has;
    MTLI_TRY(mtli_r_bool(&r, "best-parameters flag", &has));
    if (has) {
        /* The trainer was just made: its fit buffers do not exist yet. */
        MTLI_TRY(mtli_trainer_best_params_alloc(t));
        MTLI_TRY(mtli_r_param_vector(&r, t->model, "best parameters", t->best_params));
    }
    return mtli_file_section_done(f, &r);
}

static mtl_status mtli_read_weighting(mtl_trainer *t, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_WEIGHTING, &r)) return MTL_OK;
    uint32_t method;
    uint64_t n;
    MTLI_TRY(mtli_r_u32(&r, "weighting method", &method));
    if (method != (uint32_t)t->weighting_params.method)
        return mtli_r_fail(&r, "state of weighting method %u, the options say %d", (unsigned)method,
                           (int)t->weighting_params.method);
    size_t at = r.pos;
    MTLI_TRY(mtli_r_count(&r, "weighting state size", (uint64_t)1 << 32, 1, &n));
    if (!t->weighting)
        return mtli_r_fail(&r, "the trainer has no loss-weighting state to restore (%llu bytes saved)",
                           (unsigned long long)n);
    mtl_status st = mtli_weighting_load(t->weighting, r.base + r.pos, (size_t)n);
    if (st != MTL_OK) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", mtl_last_error_message());
        r.pos = at;
        return st == MTL_ERR_OUT_OF_MEMORY ? st : mtli_r_fail(&r, "%s", msg);
    }
    r.pos += (size_t)n;
    return mtli_file_section_done(f, &r);
}

mtl_status mtl_trainer_load_checkpoint_buffer(mtl_trainer **out, mtl_model **model_out, const mtl_context *ctx,
                                              const void *buf, size_t size)
{
    static const char fn[] = "mtl_trainer_load_checkpoint_buffer";
    MTLI_CHECK_ARG(out && model_out, "%s: out and model_out must not be NULL", fn);
    MTLI_CHECK_ARG(buf || size == 0, "%s: buf is NULL", fn);
    mtli_file f;
    uint8_t empty = 0;
    MTLI_TRY(mtli_file_parse(&f, buf ? buf : &empty, size));
    if (f.kind != MTLI_FILE_CHECKPOINT)
        return mtli_fail(MTL_ERR_FORMAT, "byte 12: this is an inference model file, not a checkpoint "
                         "(load it with mtl_model_load)");
    mtl_model *m = NULL;
    mtl_trainer *t = NULL;
    MTLI_TRY(mtli_model_read_sections(&m, ctx, &f));
    mtl_status st = mtli_read_options(&t, m, &f);
    if (st == MTL_OK) st = mtli_read_optimizer(t, &f);
    if (st == MTL_OK) st = mtli_read_progress(t, &f);
    if (st == MTL_OK) st = mtli_read_early_stop(t, &f);
    if (st == MTL_OK) st = mtli_read_weighting(t, &f);
    if (st != MTL_OK) {
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
        return st;
    }
    *out = t;
    *model_out = m;
    return MTL_OK;
}

mtl_status mtl_trainer_load_checkpoint(mtl_trainer **out, mtl_model **model_out, const mtl_context *ctx,
                                       const char *path)
{
    static const char fn[] = "mtl_trainer_load_checkpoint";
    MTLI_CHECK_ARG(out && model_out, "%s: out and model_out must not be NULL", fn);
    MTLI_CHECK_ARG(path && path[0], "%s: path must be a non-empty string", fn);
    mtli_settings s;
    mtli_settings_from(&s, ctx);
    uint8_t *data = NULL;
    size_t size = 0;
    MTLI_TRY(mtli_file_read_path(&s, path, &data, &size));
    mtl_status st = mtl_trainer_load_checkpoint_buffer(out, model_out, ctx, data, size);
    mtli_free(&s, data);
    if (st != MTL_OK) mtli_fail_prefix(st, "loading checkpoint '%s': ", path);
    return st;
}
