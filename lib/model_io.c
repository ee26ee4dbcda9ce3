/* model_io.c -- saving and loading inference models (docs/file-format.md).
 *
 * Loading never trusts the file: the framing is verified first (magic,
 * version, size, CRC-32C), then every count is bounded before anything is
 * sized by it.  The model is rebuilt through the public definition API
 * (create, add_*, set_task_*, finalize), so a loaded model is built exactly
 * like one a host defines, and only then are the parameters, scalers and
 * texts filled in.  The parameter count the architecture implies must match
 * the file before finalize allocates anything, so a hostile file cannot
 * make us allocate much more than its own size. */
#include "model_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Per-item minimum sizes, used to bound counts by the bytes left. */
#define MTLI_LAYER_SPEC_BYTES 20 /* u64 units, u32 act, f32 dropout, u32 flags */
#define MTLI_TASK_MIN_BYTES 54   /* every fixed field of a task record */

/* ---- canonical walk over a parameter-layout vector ---------------------------- */

/* Visits `n` elements at off, off + stride, ... in canonical order. */
typedef void (*mtli_span_fn)(void *ctx, int64_t off, int64_t n, int64_t stride);

static void mtli_visit_layer(const mtli_layer *L, mtli_span_fn fn, void *ctx)
{
    /* Canonical weight: fan_in rows of fan_out.  The first layer of each
     * head is stored transposed in the model (fan_out x fan_in), so its
     * canonical rows are its stored columns. */
    for (int64_t i = 0; i < L->fan_in; i++) {
        if (L->w_trans)
            fn(ctx, L->w_off + i, L->fan_out, L->ldw);
        else
            fn(ctx, L->w_off + i * L->ldw, L->fan_out, 1);
    }
    fn(ctx, L->b_off, L->fan_out, 1);
    if (L->layer_norm) {
        fn(ctx, L->gain_off, L->fan_out, 1);
        fn(ctx, L->shift_off, L->fan_out, 1);
    }
}

static void mtli_visit_params(const mtl_model *m, mtli_span_fn fn, void *ctx)
{
    for (int64_t i = 0; i < m->n_trunk; i++) mtli_visit_layer(&m->trunk[i], fn, ctx);
    for (int64_t t = 0; t < m->n_tasks; t++)
        for (int64_t j = 0; j <= m->tasks[t].n_hidden; j++) mtli_visit_layer(&m->tasks[t].layers[j], fn, ctx);
}

typedef struct mtli_vec_writer {
    mtli_writer *w;
    const float *v;
} mtli_vec_writer;

static void mtli_write_span(void *ctx, int64_t off, int64_t n, int64_t stride)
{
    mtli_vec_writer *c = ctx;
    if (stride == 1) {
        mtli_w_f32s(c->w, c->v + off, (size_t)n);
        return;
    }
    for (int64_t k = 0; k < n; k++) mtli_w_f32(c->w, c->v[off + k * stride]);
}

void mtli_w_param_vector(mtli_writer *w, const mtl_model *m, const float *v)
{
    mtli_w_u64(w, (uint64_t)m->n_params);
    mtli_vec_writer c = { w, v };
    mtli_visit_params(m, mtli_write_span, &c);
}

typedef struct mtli_vec_reader {
    mtli_reader *r;
    float *v;
    const char *field;
    int64_t index; /* canonical index of the next value */
    mtl_status status;
} mtli_vec_reader;

int64_t mtli_first_non_finite(const float *v, int64_t n)
{
    float acc = 0.0f;
    for (int64_t k = 0; k < n; k++) acc += v[k] * 0.0f; /* NaN iff some v[k] is NaN or Inf */
    if (acc == 0.0f) return n;
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(v[k])) return k;
    return n;
}

static void mtli_read_span(void *ctx, int64_t off, int64_t n, int64_t stride)
{
    mtli_vec_reader *c = ctx;
    if (c->status != MTL_OK) return;
    if (stride == 1) { /* contiguous: one bounds-checked copy, then one scan */
        size_t at = c->r->pos;
        c->status = mtli_r_f32s(c->r, c->field, c->v + off, (size_t)n);
        if (c->status != MTL_OK) return;
        int64_t bad = mtli_first_non_finite(c->v + off, n);
        if (bad < n) {
            mtli_reader here = *c->r;
            here.pos = at + 4 * (size_t)bad;
            c->status = mtli_r_fail(&here, "%s value %lld is %g (must be finite)", c->field,
                                    (long long)(c->index + bad), (double)c->v[off + bad]);
        }
        c->index += n;
        return;
    }
    for (int64_t k = 0; k < n && c->status == MTL_OK; k++, c->index++) {
        float x;
        size_t at = c->r->pos;
        c->status = mtli_r_f32(c->r, c->field, &x);
        if (c->status == MTL_OK && !isfinite(x)) {
            mtli_reader here = *c->r;
            here.pos = at;
            c->status = mtli_r_fail(&here, "%s value %lld is %g (must be finite)", c->field,
                                    (long long)c->index, (double)x);
        }
        if (c->status == MTL_OK) c->v[off + k * stride] = x;
    }
}

mtl_status mtli_r_param_vector(mtli_reader *r, const mtl_model *m, const char *field, float *v)
{
    uint64_t n;
    MTLI_TRY(mtli_r_count(r, field, (uint64_t)m->n_params, 4, &n));
    if (n != (uint64_t)m->n_params)
        return mtli_r_fail(r, "%s holds %llu values, the architecture has %lld parameters", field,
                           (unsigned long long)n, (long long)m->n_params);
    mtli_vec_reader c = { r, v, field, 0, MTL_OK };
    mtli_visit_params(m, mtli_read_span, &c);
    return c.status;
}

/* ---- writing ------------------------------------------------------------------- */

static void mtli_w_layer_spec(mtli_writer *w, const mtli_layer_spec *L)
{
    mtli_w_u64(w, (uint64_t)L->units);
    mtli_w_u32(w, (uint32_t)L->act);
    mtli_w_f32(w, L->dropout);
    mtli_w_u32(w, L->flags);
}

static void mtli_write_arch(mtli_writer *w, const void *arg)
{
    const mtl_model *m = arg;
    mtli_w_u64(w, (uint64_t)m->n_inputs);
    mtli_w_u64(w, (uint64_t)m->n_trunk);
    for (int64_t i = 0; i < m->n_trunk; i++) mtli_w_layer_spec(w, &m->trunk_spec[i]);
    mtli_w_u64(w, (uint64_t)m->n_tasks);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        mtli_w_str(w, task->name);
        mtli_w_u32(w, (uint32_t)task->type);
        mtli_w_u64(w, (uint64_t)task->n_outputs);
        mtli_w_u32(w, (uint32_t)task->loss);
        mtli_w_f64(w, task->loss_weight);
        mtli_w_f64(w, task->huber_delta);
        mtli_w_u8(w, task->standardize);
        mtli_w_u8(w, task->log_target);
        mtli_w_str(w, task->unit);
        mtli_w_str(w, task->description);
        mtli_w_u64(w, (uint64_t)task->n_hidden);
        for (int64_t j = 0; j < task->n_hidden; j++) mtli_w_layer_spec(w, &task->hidden_spec[j]);
    }
}

static void mtli_write_params(mtli_writer *w, const void *arg)
{
    const mtl_model *m = arg;
    mtli_w_param_vector(w, m, m->params);
}

static void mtli_write_scalers(mtli_writer *w, const void *arg)
{
    const mtl_model *m = arg;
    const mtli_scalers *sc = &m->scalers;
    size_t d = (size_t)m->n_inputs, k = (size_t)m->target_width;
    mtli_w_u64(w, d);
    mtli_w_u64(w, k);
    mtli_w_f32s(w, sc->x_mean, d);
    mtli_w_f32s(w, sc->x_scale, d);
    mtli_w_f32s(w, sc->x_min, d);
    mtli_w_f32s(w, sc->x_max, d);
    mtli_w_f32s(w, sc->y_mean, k);
    mtli_w_f32s(w, sc->y_scale, k);
}

static void mtli_write_features(mtli_writer *w, const void *arg)
{
    const mtl_model *m = arg;
    mtli_w_u64(w, (uint64_t)m->n_inputs);
    for (int64_t i = 0; i < m->n_inputs; i++) mtli_w_str(w, m->feature_names[i]);
}

static void mtli_write_metadata(mtli_writer *w, const void *arg)
{
    const mtl_model *m = arg;
    mtli_w_u64(w, (uint64_t)m->n_meta);
    for (int64_t i = 0; i < m->n_meta; i++) {
        mtli_w_str(w, m->meta[i].key);
        mtli_w_str(w, m->meta[i].value);
    }
}

void mtli_model_write_sections(mtli_writer *w, const mtl_model *m)
{
    mtli_w_section(w, MTLI_SEC_ARCH, mtli_write_arch, m);
    mtli_w_section(w, MTLI_SEC_PARAMS, mtli_write_params, m);
    if (m->scalers.fitted) mtli_w_section(w, MTLI_SEC_SCALERS, mtli_write_scalers, m);
    bool any_name = false;
    for (int64_t i = 0; m->feature_names && i < m->n_inputs && !any_name; i++) any_name = m->feature_names[i];
    if (any_name) mtli_w_section(w, MTLI_SEC_FEATURES, mtli_write_features, m);
    if (m->n_meta > 0) mtli_w_section(w, MTLI_SEC_METADATA, mtli_write_metadata, m);
}

/* ---- reading -------------------------------------------------------------------- */

/* A definition call rejected what the file says: report it as a format
 * error at the record's offset (a version error if a newer minor version
 * wrote the file: it may use ids this library does not know). */
mtl_status mtli_file_value_check(mtl_status st, const mtli_file *f, const mtli_reader *r, size_t at,
                                 const char *what)
{
    if (st == MTL_OK || st == MTL_ERR_OUT_OF_MEMORY) return st;
    char msg[768];
    snprintf(msg, sizeof msg, "%s", mtl_last_error_message());
    mtli_reader here = *r;
    here.pos = at;
    if (f->newer_minor)
        return mtli_fail(MTL_ERR_VERSION, "byte %zu (%s): %s: %s (the file was written by format %u.%u; this "
                         "library reads up to %u.%u)", at, r->where, what, msg, f->major, f->minor,
                         MTLI_FORMAT_MAJOR, MTLI_FORMAT_MINOR);
    return mtli_r_fail(&here, "%s: %s", what, msg);
}

typedef struct mtli_spec_in {
    int64_t units;
    uint32_t act, flags;
    float dropout;
} mtli_spec_in;

static mtl_status mtli_r_layer_spec(mtli_reader *r, mtli_spec_in *L)
{
    uint64_t units;
    MTLI_TRY(mtli_r_u64(r, "layer units", &units));
    MTLI_TRY(mtli_r_u32(r, "layer activation", &L->act));
    MTLI_TRY(mtli_r_f32(r, "layer dropout", &L->dropout));
    MTLI_TRY(mtli_r_u32(r, "layer flags", &L->flags));
    /* Anything above the limit becomes -1, which the API rejects. */
    L->units = units > (uint64_t)MTLI_MAX_UNITS ? -1 : (int64_t)units;
    return MTL_OK;
}

/* Task options differ from the defaults add_task chose: set only those, so
 * a default never meets a setter that does not apply to the task type. */
static mtl_status mtli_set_task_options(mtl_model *m, int64_t t, uint32_t loss, double lw, double hd,
                                        bool standardize, bool log_target)
{
    const mtli_task *task = &m->tasks[t];
    if ((uint32_t)task->loss != loss) MTLI_TRY(mtl_model_set_task_i64(m, t, MTL_TASK_OPT_LOSS, loss));
    if (task->loss_weight != lw || signbit(lw) != signbit(task->loss_weight))
        MTLI_TRY(mtl_model_set_task_f64(m, t, MTL_TASK_OPT_LOSS_WEIGHT, lw));
    if (task->huber_delta != hd) MTLI_TRY(mtl_model_set_task_f64(m, t, MTL_TASK_OPT_HUBER_DELTA, hd));
    if (task->standardize != standardize)
        MTLI_TRY(mtl_model_set_task_i64(m, t, MTL_TASK_OPT_STANDARDIZE, standardize));
    if (task->log_target != log_target)
        MTLI_TRY(mtl_model_set_task_i64(m, t, MTL_TASK_OPT_LOG_TARGET, log_target));
    return MTL_OK;
}

static mtl_status mtli_read_task(mtl_model *m, const mtli_file *f, mtli_reader *r, int64_t t)
{
    const mtli_settings *s = &m->settings;
    size_t at = r->pos;
    char *name = NULL, *unit = NULL, *desc = NULL;
    uint32_t type = 0, loss = 0;
    uint64_t n_outputs = 0, n_hidden = 0;
    double lw = 0, hd = 0;
    bool standardize = false, log_target = false;
    char what[64];
    snprintf(what, sizeof what, "task %lld", (long long)t);

    mtl_status st = mtli_r_str(r, "task name", s, MTLI_MAX_NAME, false, &name);
    if (st == MTL_OK) st = mtli_r_u32(r, "task type", &type);
    if (st == MTL_OK) st = mtli_r_u64(r, "task outputs", &n_outputs);
    if (st == MTL_OK) st = mtli_r_u32(r, "task loss", &loss);
    if (st == MTL_OK) st = mtli_r_f64(r, "task loss weight", &lw);
    if (st == MTL_OK) st = mtli_r_f64(r, "task Huber delta", &hd);
    if (st == MTL_OK) st = mtli_r_bool(r, "task standardize flag", &standardize);
    if (st == MTL_OK) st = mtli_r_bool(r, "task log-target flag", &log_target);
    if (st == MTL_OK) st = mtli_r_str(r, "task unit", s, MTLI_MAX_STRING_BYTES, true, &unit);
    if (st == MTL_OK) st = mtli_r_str(r, "task description", s, MTLI_MAX_STRING_BYTES, true, &desc);
    if (st == MTL_OK) {
        int64_t outs = n_outputs > (uint64_t)MTLI_MAX_UNITS ? -1 : (int64_t)n_outputs;
        st = mtli_file_value_check(mtl_model_add_task(m, name, (mtl_task_type)type, outs, NULL), f, r, at, what);
    }
    if (st == MTL_OK)
        st = mtli_file_value_check(mtli_set_task_options(m, t, loss, lw, hd, standardize, log_target), f, r, at, what);
    if (st == MTL_OK) st = mtli_file_value_check(mtl_model_set_task_text(m, t, unit, desc), f, r, at, what);
    mtli_free(s, name);
    mtli_free(s, unit);
    mtli_free(s, desc);
    if (st == MTL_OK)
        st = mtli_r_count(r, "head layer count", MTLI_MAX_LAYERS - 1, MTLI_LAYER_SPEC_BYTES, &n_hidden);
    for (uint64_t j = 0; j < n_hidden && st == MTL_OK; j++) {
        mtli_spec_in L;
        size_t lat = r->pos;
        st = mtli_r_layer_spec(r, &L);
        if (st == MTL_OK)
            st = mtli_file_value_check(mtl_model_add_head_layer(m, t, L.units, (mtl_activation)L.act, L.dropout, L.flags),
                                f, r, lat, what);
    }
    return st;
}

static mtl_status mtli_read_arch(mtl_model **out, const mtl_context *ctx, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_ARCH, &r))
        return mtli_fail(MTL_ERR_FORMAT, "byte %d: the file has no ARCH section", MTLI_HEADER_BYTES);
    uint64_t n_inputs, n_trunk = 0, n_tasks = 0; /* read by the loop tests even when a count failed */
    size_t at = r.pos;
    MTLI_TRY(mtli_r_u64(&r, "input count", &n_inputs));
    mtl_model *m = NULL;
    int64_t inputs = n_inputs > (uint64_t)MTLI_MAX_UNITS ? -1 : (int64_t)n_inputs;
    MTLI_TRY(mtli_file_value_check(mtl_model_create(&m, ctx, inputs), f, &r, at, "inputs"));

    mtl_status st = mtli_r_count(&r, "trunk layer count", MTLI_MAX_LAYERS, MTLI_LAYER_SPEC_BYTES, &n_trunk);
    for (uint64_t i = 0; i < n_trunk && st == MTL_OK; i++) {
        mtli_spec_in L;
        at = r.pos;
        st = mtli_r_layer_spec(&r, &L);
        if (st == MTL_OK)
            st = mtli_file_value_check(mtl_model_add_trunk_layer(m, L.units, (mtl_activation)L.act, L.dropout, L.flags),
                                f, &r, at, "trunk layer");
    }
    if (st == MTL_OK) st = mtli_r_count(&r, "task count", MTLI_MAX_TASKS, MTLI_TASK_MIN_BYTES, &n_tasks);
    if (st == MTL_OK && n_tasks == 0) st = mtli_r_fail(&r, "the model has no task");
    for (uint64_t t = 0; t < n_tasks && st == MTL_OK; t++) st = mtli_read_task(m, f, &r, (int64_t)t);
    if (st == MTL_OK) st = mtli_file_section_done(f, &r);
    if (st != MTL_OK) {
        mtl_model_destroy(m);
        return st;
    }
    *out = m;
    return MTL_OK;
}

/* Parameters the definition implies, counted like the canonical walk:
 * per layer fan_in * fan_out + fan_out (bias) [+ 2 fan_out (norm)].
 * False if the count does not fit comfortably in an int64. */
static bool mtli_implied_params(const mtl_model *m, int64_t *out)
{
    const int64_t limit = INT64_MAX / 8;
    int64_t total = 0, fan_in = m->n_inputs;
    /* units <= 2^24 keeps each product below 2^48; the sum is checked. */
#define MTLI_ADD_LAYER(in, units, norm)                                                   \
    do {                                                                                  \
        int64_t n_ = (in) * (units) + (units) * ((norm) ? 3 : 1);                         \
        if (n_ > limit - total) return false;                                             \
        total += n_;                                                                      \
    } while (0)
    for (int64_t i = 0; i < m->n_trunk; i++) {
        MTLI_ADD_LAYER(fan_in, m->trunk_spec[i].units, m->trunk_spec[i].flags & MTL_LAYER_NORM);
        fan_in = m->trunk_spec[i].units;
    }
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        int64_t prev = fan_in;
        for (int64_t j = 0; j < task->n_hidden; j++) {
            MTLI_ADD_LAYER(prev, task->hidden_spec[j].units, task->hidden_spec[j].flags & MTL_LAYER_NORM);
            prev = task->hidden_spec[j].units;
        }
        MTLI_ADD_LAYER(prev, task->n_outputs, 0);
    }
#undef MTLI_ADD_LAYER
    *out = total;
    return true;
}

static mtl_status mtli_read_params(mtl_model *m, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_PARAMS, &r))
        return mtli_fail(MTL_ERR_FORMAT, "byte %d: the file has no PARAMS section", MTLI_HEADER_BYTES);
    int64_t implied;
    if (!mtli_implied_params(m, &implied))
        return mtli_r_fail(&r, "the architecture implies an absurd number of parameters");
    /* Check the count against the architecture and the bytes present
     * before finalize allocates the buffer. */
    mtli_reader peek = r;
    uint64_t n;
    MTLI_TRY(mtli_r_count(&peek, "parameter count", (uint64_t)implied, 4, &n));
    if (n != (uint64_t)implied)
        return mtli_r_fail(&r, "parameter count %llu, but the architecture has %lld parameters",
                           (unsigned long long)n, (long long)implied);
    MTLI_TRY(mtli_file_value_check(mtli_model_finalize(m, false), f, &r, r.pos, "finalize"));
    if (m->n_params != implied)
        return mtli_fail(MTL_ERR_INTERNAL, "model has %lld parameters, the file layout %lld", (long long)m->n_params,
                         (long long)implied);
    MTLI_TRY(mtli_r_param_vector(&r, m, "parameter", m->params));
    return mtli_file_section_done(f, &r);
}

/* n floats into a new allocation; each must be finite (and > 0 if
 * `positive`). */
static mtl_status mtli_r_scaler(mtli_reader *r, const mtli_settings *s, const char *field, size_t n,
                                bool positive, float **out)
{
    if (n > mtli_r_left(r) / 4) return mtli_r_fail(r, "%s needs %zu values, the section is shorter", field, n);
    float *v = mtli_alloc(s, n * sizeof(float));
    if (!v) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for %s", n * sizeof(float), field);
    size_t at = r->pos;
    mtl_status st = mtli_r_f32s(r, field, v, n);
    for (size_t i = 0; i < n && st == MTL_OK; i++)
        if (!isfinite(v[i]) || (positive && !(v[i] > 0.0f))) {
            mtli_reader here = *r;
            here.pos = at + 4 * i;
            st = mtli_r_fail(&here, "%s %zu is %g (must be finite%s)", field, i, (double)v[i],
                             positive ? " and > 0" : "");
        }
    if (st != MTL_OK) {
        mtli_free(s, v);
        return st;
    }
    *out = v;
    return MTL_OK;
}

static mtl_status mtli_read_scalers(mtl_model *m, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_SCALERS, &r)) return MTL_OK;
    uint64_t d, k;
    MTLI_TRY(mtli_r_u64(&r, "scaler input count", &d));
    if (d != (uint64_t)m->n_inputs)
        return mtli_r_fail(&r, "scalers for %llu inputs, the model has %lld", (unsigned long long)d,
                           (long long)m->n_inputs);
    MTLI_TRY(mtli_r_u64(&r, "scaler target count", &k));
    if (k != (uint64_t)m->target_width)
        return mtli_r_fail(&r, "scalers for %llu target columns, the model has %lld", (unsigned long long)k,
                           (long long)m->target_width);
    const mtli_settings *s = &m->settings;
    mtli_scalers sc = { .fitted = true };
    mtl_status st = mtli_r_scaler(&r, s, "input mean", d, false, &sc.x_mean);
    if (st == MTL_OK) st = mtli_r_scaler(&r, s, "input scale", d, true, &sc.x_scale);
    if (st == MTL_OK) st = mtli_r_scaler(&r, s, "input minimum", d, false, &sc.x_min);
    if (st == MTL_OK) st = mtli_r_scaler(&r, s, "input maximum", d, false, &sc.x_max);
    if (st == MTL_OK) st = mtli_r_scaler(&r, s, "target mean", k, false, &sc.y_mean);
    if (st == MTL_OK) st = mtli_r_scaler(&r, s, "target scale", k, true, &sc.y_scale);
    for (size_t j = 0; j < d && st == MTL_OK; j++)
        if (sc.x_min[j] > sc.x_max[j])
            st = mtli_r_fail(&r, "input %zu: domain minimum %g is above its maximum %g", j, (double)sc.x_min[j],
                             (double)sc.x_max[j]);
    if (st == MTL_OK) st = mtli_file_section_done(f, &r);
    if (st != MTL_OK) {
        mtli_free(s, sc.x_mean);
        mtli_free(s, sc.x_scale);
        mtli_free(s, sc.x_min);
        mtli_free(s, sc.x_max);
        mtli_free(s, sc.y_mean);
        mtli_free(s, sc.y_scale);
        return st;
    }
    mtli_scalers_free(m);
    m->scalers = sc;
    return MTL_OK;
}

static mtl_status mtli_read_features(mtl_model *m, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_FEATURES, &r)) return MTL_OK;
    uint64_t n;
    MTLI_TRY(mtli_r_count(&r, "feature name count", (uint64_t)m->n_inputs, 4, &n));
    if (n != (uint64_t)m->n_inputs)
        return mtli_r_fail(&r, "%llu feature names for %lld inputs", (unsigned long long)n, (long long)m->n_inputs);
    for (uint64_t i = 0; i < n; i++) {
        char *name = NULL;
        size_t at = r.pos;
        MTLI_TRY(mtli_r_str(&r, "feature name", &m->settings, MTLI_MAX_STRING_BYTES, true, &name));
        if (!name) continue;
        mtl_status st = mtl_model_set_feature_name(m, (int64_t)i, name);
        mtli_free(&m->settings, name);
        MTLI_TRY(mtli_file_value_check(st, f, &r, at, "feature name"));
    }
    return mtli_file_section_done(f, &r);
}

static mtl_status mtli_read_metadata(mtl_model *m, const mtli_file *f)
{
    mtli_reader r;
    if (!mtli_file_section_reader(f, MTLI_SEC_METADATA, &r)) return MTL_OK;
    uint64_t n;
    MTLI_TRY(mtli_r_count(&r, "metadata count", 4096, 8, &n));
    const mtli_settings *s = &m->settings;
    for (uint64_t i = 0; i < n; i++) {
        char *key = NULL, *value = NULL;
        const char *old;
        size_t at = r.pos;
        mtl_status st = mtli_r_str(&r, "metadata key", s, MTLI_MAX_STRING_BYTES, false, &key);
        if (st == MTL_OK) st = mtli_r_str(&r, "metadata value", s, MTLI_MAX_STRING_BYTES, false, &value);
        if (st == MTL_OK && mtl_model_get_metadata(m, key, &old) == MTL_OK) {
            mtli_reader here = r;
            here.pos = at;
            st = mtli_r_fail(&here, "metadata key '%.100s' appears twice", key);
        }
        if (st == MTL_OK) st = mtli_file_value_check(mtl_model_set_metadata(m, key, value), f, &r, at, "metadata");
        mtli_free(s, key);
        mtli_free(s, value);
        MTLI_TRY(st);
    }
    return mtli_file_section_done(f, &r);
}

mtl_status mtli_model_read_sections(mtl_model **out, const mtl_context *ctx, const mtli_file *f)
{
    mtl_model *m = NULL;
    MTLI_TRY(mtli_read_arch(&m, ctx, f));
    mtl_status st = mtli_read_params(m, f);
    if (st == MTL_OK) st = mtli_read_scalers(m, f);
    if (st == MTL_OK) st = mtli_read_features(m, f);
    if (st == MTL_OK) st = mtli_read_metadata(m, f);
    if (st != MTL_OK) {
        mtl_model_destroy(m);
        return st;
    }
    *out = m;
    return MTL_OK;
}

/* ---- public API ------------------------------------------------------------------ */

static void mtli_model_body(mtli_writer *w, const void *arg)
{
    mtli_model_write_sections(w, arg);
}

mtl_status mtli_check_saveable(const mtl_model *model, const char *fn)
{
    MTLI_CHECK_ARG(model, "%s: model must not be NULL", fn);
    if (!model->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is not finalized (call mtl_model_finalize first)", fn);
    /* A loader refuses non-finite parameters, so never write them. */
    int64_t bad = mtli_first_non_finite(model->params, model->n_params);
    if (bad < model->n_params)
        return mtli_fail(MTL_ERR_NON_FINITE, "%s: parameter %lld is %g; nothing was written", fn, (long long)bad,
                         (double)model->params[bad]);
    return MTL_OK;
}

mtl_status mtl_model_save(const mtl_model *model, const char *path)
{
    MTLI_TRY(mtli_check_saveable(model, "mtl_model_save"));
    MTLI_CHECK_ARG(path && path[0], "mtl_model_save: path must be a non-empty string");
    return mtli_file_save_path(&model->settings, path, MTLI_FILE_MODEL, mtli_model_body, model);
}

mtl_status mtl_model_save_buffer(const mtl_model *model, void *buf, size_t cap, size_t *size)
{
    MTLI_TRY(mtli_check_saveable(model, "mtl_model_save_buffer"));
    MTLI_CHECK_ARG(size, "mtl_model_save_buffer: size must not be NULL");
    mtl_status st = mtli_file_save_buffer(MTLI_FILE_MODEL, mtli_model_body, model, buf, cap, size);
    if (st != MTL_OK) mtli_fail_prefix(st, "mtl_model_save_buffer: ");
    return st;
}

mtl_status mtl_model_load_buffer(mtl_model **out, const mtl_context *ctx, const void *buf, size_t size)
{
    MTLI_CHECK_ARG(out, "mtl_model_load_buffer: out must not be NULL");
    MTLI_CHECK_ARG(buf || size == 0, "mtl_model_load_buffer: buf is NULL");
    /* Any valid file holds a model: a checkpoint's training state is
     * simply skipped. */
    mtli_file f;
    uint8_t empty = 0;
    MTLI_TRY(mtli_file_parse(&f, buf ? buf : &empty, size));
    return mtli_model_read_sections(out, ctx, &f);
}

mtl_status mtl_model_load(mtl_model **out, const mtl_context *ctx, const char *path)
{
    MTLI_CHECK_ARG(out, "mtl_model_load: out must not be NULL");
    MTLI_CHECK_ARG(path && path[0], "mtl_model_load: path must be a non-empty string");
    mtli_settings s;
    mtli_settings_from(&s, ctx);
    uint8_t *data = NULL;
    size_t size = 0;
    MTLI_TRY(mtli_file_read_path(&s, path, &data, &size));
    mtl_status st = mtl_model_load_buffer(out, ctx, data, size);
    mtli_free(&s, data);
    if (st != MTL_OK) mtli_fail_prefix(st, "loading '%s': ", path);
    return st;
}
