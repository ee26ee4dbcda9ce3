/* model.c -- defining a model (trunk, tasks, heads, task options), its
 * read-back, finalize (parameter layout and initialisation) and access to
 * the flat parameter buffer.
 *
 * Layout (see mtli_task_param_spans in mtl_internal.h): trunk layers, then
 * the first layer of every head stored transposed and side by side (one
 * fused matrix, so the heads' first layers run as ONE GEMM over the trunk
 * output and each task's rows stay contiguous), then each task's remaining
 * head parameters.  Every task therefore owns exactly two contiguous spans,
 * which keeps per-task learning-rate ranges few. */
#include "io_buf.h" /* mtli_utf8_valid: the same rule as names read from files */
#include "mtl_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- small checks ----------------------------------------------------------- */

static mtl_status check_model(const mtl_model *m, const char *fn)
{
    if (!m) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    return MTL_OK;
}

static mtl_status check_defining(const mtl_model *m, const char *fn)
{
    MTLI_TRY(check_model(m, fn));
    if (m->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is finalized; define it before mtl_model_finalize",
                         fn);
    return MTL_OK;
}

static mtl_status check_finalized(const mtl_model *m, const char *fn)
{
    MTLI_TRY(check_model(m, fn));
    if (!m->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is not finalized (call mtl_model_finalize first)", fn);
    return MTL_OK;
}

static mtl_status check_task(const mtl_model *m, int64_t task, const char *fn)
{
    MTLI_TRY(check_model(m, fn));
    if (task < 0 || task >= m->n_tasks)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task %lld outside [0, %lld)", fn, (long long)task,
                         (long long)m->n_tasks);
    return MTL_OK;
}

static bool activation_valid(mtl_activation act)
{
    return (int)act >= MTL_ACT_IDENTITY && (int)act <= MTL_ACT_SOFTPLUS;
}

/* Shared by trunk and head layers; `what` names the layer in messages. */
static mtl_status check_layer_spec(int64_t units, mtl_activation act, float dropout, unsigned flags,
                                   const char *fn, const char *what)
{
    if (units < 1 || units > MTLI_MAX_UNITS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s: units %lld outside [1, %lld]", fn, what,
                         (long long)units, (long long)MTLI_MAX_UNITS);
    if (!activation_valid(act))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s: activation %d is not an mtl_activation", fn,
                         what, (int)act);
    if (!(dropout >= 0.0f && dropout < 1.0f)) /* also rejects NaN */
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s: dropout %g outside [0, 1)", fn, what,
                         (double)dropout);
    if (flags & ~MTL_LAYER_NORM)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s: unknown layer flags %#x", fn, what,
                         flags & ~MTL_LAYER_NORM);
    return MTL_OK;
}

/* ---- create / destroy ----------------------------------------------------- */

mtl_status mtl_model_create(mtl_model **out, const mtl_context *ctx, int64_t n_inputs)
{
    MTLI_CHECK_ARG(out, "mtl_model_create: out is NULL");
    if (n_inputs < 1 || n_inputs > MTLI_MAX_UNITS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "mtl_model_create: n_inputs %lld outside [1, %lld]",
                         (long long)n_inputs, (long long)MTLI_MAX_UNITS);
    mtli_settings s;
    mtli_settings_from(&s, ctx);
    mtl_model *m = mtli_calloc(&s, 1, sizeof *m);
    if (!m) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_model_create: cannot allocate the model");
    /* The definition tables (trunk layers, tasks, each task's hidden layers)
     * grow as they are defined (mtli_reserve): a full-capacity task table
     * alone was 35 KB, most of a small model's overhead. */
    m->settings = s;
    mtli_blas_init(&m->blas, &s);
    m->n_inputs = n_inputs;
    m->init = MTL_INIT_HE_GLOROT;
    m->serial = mtli_next_serial();
    m->embed_width = n_inputs;
    *out = m;
    return MTL_OK;
}

/* Free what finalize allocated and return the model to "defining". */
static void model_unfinalize(mtl_model *m)
{
    const mtli_settings *s = &m->settings;
    mtli_free(s, m->params);
    mtli_free(s, m->trunk);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        mtli_free(s, m->tasks[t].layers);
        m->tasks[t].layers = NULL;
    }
    if (m->blocks)
        for (int64_t i = 0; i < m->n_blocks; i++) mtli_free(s, m->blocks[i].name);
    mtli_free(s, m->blocks);
    m->params = NULL;
    m->trunk = NULL;
    m->blocks = NULL;
    m->n_blocks = 0;
    m->n_params = 0;
    m->finalized = false;
}

void mtl_model_destroy(mtl_model *m)
{
    if (!m) return;
    const mtli_settings s = m->settings;
    model_unfinalize(m);
    mtli_metadata_free(m); /* metadata, feature names, task texts (metadata.c); leaves NULLs */
    mtli_scalers_free(m);  /* fitted scalers (scalers.c) */
    for (int64_t t = 0; t < m->n_tasks; t++) {
        mtli_free(&s, m->tasks[t].name);
        mtli_free(&s, m->tasks[t].hidden_spec);
    }
    mtli_free(&s, m->tasks);
    mtli_free(&s, m->trunk_spec);
    mtli_free(&s, m);
}

/* ---- definition ------------------------------------------------------------ */

mtl_status mtl_model_add_trunk_layer(mtl_model *m, int64_t units, mtl_activation act, float dropout,
                                     unsigned flags)
{
    static const char fn[] = "mtl_model_add_trunk_layer";
    MTLI_TRY(check_defining(m, fn));
    char what[48];
    snprintf(what, sizeof what, "trunk layer %lld", (long long)m->n_trunk);
    MTLI_TRY(check_layer_spec(units, act, dropout, flags, fn, what));
    if (m->n_trunk >= MTLI_MAX_LAYERS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: the trunk already has the maximum of %d layers", fn,
                         MTLI_MAX_LAYERS);
    mtli_layer_spec *specs = mtli_reserve(&m->settings, m->trunk_spec, &m->trunk_cap, m->n_trunk + 1, sizeof *specs);
    if (!specs) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot grow the trunk table for %s", fn, what);
    m->trunk_spec = specs;
    m->trunk_spec[m->n_trunk++] = (mtli_layer_spec){ units, act, dropout, flags };
    m->embed_width = units;
    return MTL_OK;
}

static mtl_loss default_loss(mtl_task_type type)
{
    switch (type) {
    case MTL_TASK_BINARY: return MTL_LOSS_BCE;
    case MTL_TASK_MULTICLASS: return MTL_LOSS_CROSS_ENTROPY;
    default: return MTL_LOSS_MSE;
    }
}

mtl_status mtl_model_add_task(mtl_model *m, const char *name, mtl_task_type type, int64_t n_outputs,
                              int64_t *task_index)
{
    static const char fn[] = "mtl_model_add_task";
    MTLI_TRY(check_defining(m, fn));
    MTLI_CHECK_ARG(name, "%s: name is NULL", fn);
    size_t len = strlen(name);
    if (len == 0) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: the task name is empty", fn);
    if (len > MTLI_MAX_NAME)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task name of %zu bytes exceeds %d bytes", fn, len,
                         MTLI_MAX_NAME);
    if (!mtli_utf8_valid(name, strlen(name)))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task name is not valid UTF-8", fn);
    for (int64_t t = 0; t < m->n_tasks; t++)
        if (strcmp(m->tasks[t].name, name) == 0)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task name '%s' is already used by task %lld", fn,
                             name, (long long)t);
    if (type != MTL_TASK_REGRESSION && type != MTL_TASK_BINARY && type != MTL_TASK_MULTICLASS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s': type %d is not an mtl_task_type", fn, name,
                         (int)type);
    if (type == MTL_TASK_MULTICLASS && (n_outputs < 2 || n_outputs > MTLI_MAX_UNITS))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s': a multiclass task needs K in [2, %lld] classes, got %lld",
                         fn, name, (long long)MTLI_MAX_UNITS, (long long)n_outputs);
    if (n_outputs < 1 || n_outputs > MTLI_MAX_UNITS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s': n_outputs %lld outside [1, %lld]", fn, name,
                         (long long)n_outputs, (long long)MTLI_MAX_UNITS);
    if (m->n_tasks >= MTLI_MAX_TASKS)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: the model already has the maximum of %d tasks", fn,
                         MTLI_MAX_TASKS);

    mtli_task task;
    memset(&task, 0, sizeof task);
    task.name = mtli_strdup(&m->settings, name);
    mtli_task *tasks = task.name ? mtli_reserve(&m->settings, m->tasks, &m->task_cap, m->n_tasks + 1, sizeof *tasks)
                                 : NULL;
    if (!tasks) {
        mtli_free(&m->settings, task.name);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: task '%s': cannot allocate its definition", fn, name);
    }
    m->tasks = tasks;
    task.type = type;
    task.loss = default_loss(type);
    task.n_outputs = n_outputs;
    task.n_targets = type == MTL_TASK_MULTICLASS ? 1 : n_outputs;
    task.target_col = m->target_width;
    task.output_col = m->output_width;
    task.loss_weight = 1.0;
    task.huber_delta = 1.0;
    task.standardize = type == MTL_TASK_REGRESSION;
    task.log_target = false;
    m->tasks[m->n_tasks] = task;
    m->target_width += task.n_targets;
    m->output_width += task.n_outputs;
    if (task_index) *task_index = m->n_tasks;
    m->n_tasks++;
    return MTL_OK;
}

mtl_status mtl_model_add_head_layer(mtl_model *m, int64_t task, int64_t units, mtl_activation act,
                                    float dropout, unsigned flags)
{
    static const char fn[] = "mtl_model_add_head_layer";
    MTLI_TRY(check_defining(m, fn));
    MTLI_TRY(check_task(m, task, fn));
    mtli_task *t = &m->tasks[task];
    char what[MTLI_MAX_NAME + 48];
    snprintf(what, sizeof what, "task '%s' hidden layer %lld", t->name, (long long)t->n_hidden);
    MTLI_TRY(check_layer_spec(units, act, dropout, flags, fn, what));
    if (t->n_hidden >= MTLI_MAX_LAYERS - 1) /* the output layer takes the last place */
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s' already has the maximum of %d hidden layers",
                         fn, t->name, MTLI_MAX_LAYERS - 1);
    mtli_layer_spec *specs = mtli_reserve(&m->settings, t->hidden_spec, &t->hidden_cap, t->n_hidden + 1, sizeof *specs);
    if (!specs) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot grow the layer table for %s", fn, what);
    t->hidden_spec = specs;
    t->hidden_spec[t->n_hidden++] = (mtli_layer_spec){ units, act, dropout, flags };
    return MTL_OK;
}

/* ---- per-task options -------------------------------------------------------- */

static const char *loss_name(mtl_loss loss)
{
    switch (loss) {
    case MTL_LOSS_MSE: return "MSE";
    case MTL_LOSS_MAE: return "MAE";
    case MTL_LOSS_HUBER: return "Huber";
    case MTL_LOSS_BCE: return "BCE";
    case MTL_LOSS_CROSS_ENTROPY: return "cross-entropy";
    }
    return "?";
}

static mtl_status reject_trainer_option(int option, const char *fn)
{
    if (option == MTL_TASK_OPT_LR_MULTIPLIER)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                         "%s: MTL_TASK_OPT_LR_MULTIPLIER is a trainer option (use mtl_trainer_set_task_f64)", fn);
    return MTL_OK;
}

mtl_status mtl_model_set_task_f64(mtl_model *m, int64_t task, int option, double value)
{
    static const char fn[] = "mtl_model_set_task_f64";
    MTLI_TRY(check_task(m, task, fn));
    MTLI_TRY(reject_trainer_option(option, fn));
    MTLI_TRY(mtli_option_check_f64(option, true, value));
    mtli_task *t = &m->tasks[task];
    /* Loss weight and Huber delta are training hyper-parameters: they may
     * change at any time, also between steps of a trainer. */
    switch (option) {
    case MTL_TASK_OPT_LOSS_WEIGHT: t->loss_weight = value; return MTL_OK;
    case MTL_TASK_OPT_HUBER_DELTA: t->huber_delta = value; return MTL_OK;
    default: return mtli_fail(MTL_ERR_INTERNAL, "%s: option %#x has no model field", fn, (unsigned)option);
    }
}

mtl_status mtl_model_set_task_i64(mtl_model *m, int64_t task, int option, int64_t value)
{
    static const char fn[] = "mtl_model_set_task_i64";
    MTLI_TRY(check_task(m, task, fn));
    MTLI_TRY(reject_trainer_option(option, fn));
    MTLI_TRY(mtli_option_check_i64(option, true, value));
    mtli_task *t = &m->tasks[task];
    switch (option) {
    case MTL_TASK_OPT_LOSS: {
        mtl_loss loss = (mtl_loss)value;
        bool ok = t->type == MTL_TASK_REGRESSION
                      ? (loss == MTL_LOSS_MSE || loss == MTL_LOSS_MAE || loss == MTL_LOSS_HUBER)
                      : loss == default_loss(t->type);
        if (!ok)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s': loss %s does not fit a %s task", fn,
                             t->name, loss_name(loss),
                             t->type == MTL_TASK_REGRESSION ? "regression"
                             : t->type == MTL_TASK_BINARY   ? "binary (BCE only)"
                                                            : "multiclass (cross-entropy only)");
        t->loss = loss;
        return MTL_OK;
    }
    case MTL_TASK_OPT_STANDARDIZE:
    case MTL_TASK_OPT_LOG_TARGET: {
        const char *name = option == MTL_TASK_OPT_STANDARDIZE ? "MTL_TASK_OPT_STANDARDIZE" : "MTL_TASK_OPT_LOG_TARGET";
        if (value && t->type != MTL_TASK_REGRESSION)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: task '%s': %s applies to regression targets only, "
                             "not class labels", fn, t->name, name);
        /* The fitted scalers were computed under the old transform. */
        if (m->scalers.fitted)
            return mtli_fail(MTL_ERR_STATE, "%s: task '%s': %s cannot change after mtl_model_fit_scalers", fn,
                             t->name, name);
        if (option == MTL_TASK_OPT_STANDARDIZE)
            t->standardize = value != 0;
        else
            t->log_target = value != 0;
        return MTL_OK;
    }
    default: return mtli_fail(MTL_ERR_INTERNAL, "%s: option %#x has no model field", fn, (unsigned)option);
    }
}

mtl_status mtl_model_get_task_f64(const mtl_model *m, int64_t task, int option, double *value)
{
    static const char fn[] = "mtl_model_get_task_f64";
    MTLI_TRY(check_task(m, task, fn));
    MTLI_CHECK_ARG(value, "%s: value is NULL", fn);
    MTLI_TRY(reject_trainer_option(option, fn));
    MTLI_TRY(mtli_option_check_f64(option, true, 1.0)); /* unknown option or wrong type */
    const mtli_task *t = &m->tasks[task];
    *value = option == MTL_TASK_OPT_LOSS_WEIGHT ? t->loss_weight : t->huber_delta;
    return MTL_OK;
}

mtl_status mtl_model_get_task_i64(const mtl_model *m, int64_t task, int option, int64_t *value)
{
    static const char fn[] = "mtl_model_get_task_i64";
    MTLI_TRY(check_task(m, task, fn));
    MTLI_CHECK_ARG(value, "%s: value is NULL", fn);
    MTLI_TRY(mtli_option_check_i64(option, true, MTL_LOSS_MSE)); /* in range for all three */
    const mtli_task *t = &m->tasks[task];
    switch (option) {
    case MTL_TASK_OPT_LOSS: *value = t->loss; break;
    case MTL_TASK_OPT_STANDARDIZE: *value = t->standardize; break;
    default: *value = t->log_target; break;
    }
    return MTL_OK;
}

/* ---- finalize: layout -------------------------------------------------------- */

/* Width of the first head layer of a task (its output layer if it has no
 * hidden layer). */
static int64_t first_head_width(const mtli_task *t)
{
    return t->n_hidden > 0 ? t->hidden_spec[0].units : t->n_outputs;
}

static mtli_layer layer_from_spec(int64_t fan_in, const mtli_layer_spec *spec)
{
    mtli_layer L;
    memset(&L, 0, sizeof L);
    L.fan_in = fan_in;
    L.fan_out = spec->units;
    L.act = spec->act;
    L.dropout = spec->dropout;
    L.layer_norm = (spec->flags & MTL_LAYER_NORM) != 0;
    return L;
}

/* Layer j of task t (j == n_hidden: the output layer: identity, no norm,
 * no dropout: it produces the logits). */
static mtli_layer head_layer(const mtli_task *t, int64_t j, int64_t fan_in)
{
    if (j < t->n_hidden) return layer_from_spec(fan_in, &t->hidden_spec[j]);
    mtli_layer_spec out = { t->n_outputs, MTL_ACT_IDENTITY, 0.0f, 0 };
    return layer_from_spec(fan_in, &out);
}

/* A pass over the layout that either counts blocks (blocks == NULL) or
 * fills them, so counting and filling cannot disagree. */
typedef struct layout_pass {
    mtli_param_block *blocks; /* NULL: count only */
    int64_t n_blocks;
    int64_t off;
    const mtli_settings *s;
    bool oom;
} layout_pass;

static int64_t add_block(layout_pass *p, const char *prefix, const char *suffix, int64_t rows, int64_t cols)
{
    int64_t off = p->off;
    if (p->blocks) {
        mtli_param_block *b = &p->blocks[p->n_blocks];
        size_t need = strlen(prefix) + strlen(suffix) + 2;
        b->name = mtli_alloc(p->s, need);
        if (!b->name)
            p->oom = true;
        else
            snprintf(b->name, need, "%s.%s", prefix, suffix);
        b->offset = off;
        b->rows = rows;
        b->cols = cols;
        b->ld = cols;
    }
    p->n_blocks++;
    p->off += rows * cols;
    return off;
}

/* bias and optional norm parameters of a layer */
static void add_vectors(layout_pass *p, const char *prefix, mtli_layer *L)
{
    L->b_off = add_block(p, prefix, "bias", 1, L->fan_out);
    if (L->layer_norm) {
        L->gain_off = add_block(p, prefix, "norm.gain", 1, L->fan_out);
        L->shift_off = add_block(p, prefix, "norm.shift", 1, L->fan_out);
    }
}

static void head_prefix(char *buf, size_t cap, const mtli_task *t, int64_t j)
{
    if (j < t->n_hidden)
        snprintf(buf, cap, "task.%s.hidden.%lld", t->name, (long long)j);
    else
        snprintf(buf, cap, "task.%s.out", t->name);
}

/* Lay out every parameter.  trunk: n_trunk layers; layers[t]: n_hidden+1
 * layers per task (both may be NULL when only counting). */
static void layout(const mtl_model *m, layout_pass *p, mtli_layer *trunk, mtli_layer **layers,
                   int64_t *fused_w_off, int64_t *task_info /* T x 3: fused_col, head_begin, head_end */)
{
    char prefix[MTLI_MAX_NAME + 64];
    int64_t fan_in = m->n_inputs;
    for (int64_t i = 0; i < m->n_trunk; i++) {
        mtli_layer L = layer_from_spec(fan_in, &m->trunk_spec[i]);
        snprintf(prefix, sizeof prefix, "trunk.%lld", (long long)i);
        L.w_off = add_block(p, prefix, "weight", L.fan_in, L.fan_out);
        L.ldw = L.fan_out;
        add_vectors(p, prefix, &L);
        if (trunk) trunk[i] = L;
        fan_in = L.fan_out;
    }
    const int64_t E = fan_in;

    /* The fused block: every task's first head layer, transposed. */
    *fused_w_off = p->off;
    int64_t col = 0;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        mtli_layer L = head_layer(task, 0, E);
        head_prefix(prefix, sizeof prefix, task, 0);
        L.w_off = add_block(p, prefix, "weight", L.fan_out, L.fan_in);
        L.ldw = L.fan_in;
        L.w_trans = true;
        if (layers) layers[t][0] = L;
        if (task_info) task_info[3 * t] = col;
        col += L.fan_out;
    }

    /* The rest of every head, task by task. */
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        if (task_info) task_info[3 * t + 1] = p->off;
        int64_t prev = first_head_width(task);
        for (int64_t j = 0; j <= task->n_hidden; j++) {
            head_prefix(prefix, sizeof prefix, task, j);
            if (j == 0) {
                /* weight already placed in the fused block */
                mtli_layer L0 = layers ? layers[t][0] : head_layer(task, 0, E);
                add_vectors(p, prefix, &L0);
                if (layers) layers[t][0] = L0;
                continue;
            }
            mtli_layer L = head_layer(task, j, prev);
            L.w_off = add_block(p, prefix, "weight", L.fan_in, L.fan_out);
            L.ldw = L.fan_out;
            add_vectors(p, prefix, &L);
            if (layers) layers[t][j] = L;
            prev = L.fan_out;
        }
        if (task_info) task_info[3 * t + 2] = p->off;
    }
}

/* ---- finalize: initialisation -------------------------------------------------- */

static bool relu_family(mtl_activation act)
{
    /* GELU and softplus behave like ReLU (linear for x > 0, ~0 below), so
     * they get He's variance too. */
    return act == MTL_ACT_RELU || act == MTL_ACT_LEAKY_RELU || act == MTL_ACT_GELU || act == MTL_ACT_SOFTPLUS;
}

/* Fill x[0..count) uniformly in +-bound.  Element e of block b is a pure
 * function of (seed, INIT + b, e). */
static void draw_uniform(float *x, int64_t count, double bound, uint64_t seed, int64_t block)
{
    const uint64_t stream = (uint64_t)MTLI_STREAM_INIT + (uint64_t)block;
    for (int64_t e = 0; e < count; e++)
        x[e] = (float)(bound * (2.0 * mtli_rng_uniform(seed, stream, (uint64_t)e) - 1.0));
}

/* MTL_INIT_HE_GLOROT's weight block: He normal (std sqrt(2 / fan_in)) for
 * the ReLU family, Glorot uniform (+-sqrt(6 / (fan_in + fan_out)))
 * otherwise.  Element e of block b is a pure function of (seed, INIT + b, e). */
static void draw_he_glorot(float *w, int64_t count, const mtli_layer *L, uint64_t seed, int64_t block)
{
    if (relu_family(L->act)) {
        const uint64_t stream = (uint64_t)MTLI_STREAM_INIT + (uint64_t)block;
        const double sd = sqrt(2.0 / (double)L->fan_in);
        for (int64_t e = 0; e < count; e++) w[e] = (float)(sd * mtli_rng_normal(seed, stream, (uint64_t)e));
    } else {
        draw_uniform(w, count, sqrt(6.0 / (double)(L->fan_in + L->fan_out)), seed, block);
    }
}

/* Index of the block starting at `offset` (blocks are in buffer order). */
static int64_t block_at(const mtl_model *m, int64_t offset)
{
    int64_t lo = 0, hi = m->n_blocks - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (m->blocks[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Draw one layer's weight and bias as m->init says; every block (the
 * bias too) has its own stream, so draws do not depend on the order. */
static void init_layer(mtl_model *m, const mtli_layer *L)
{
    const uint64_t seed = (uint64_t)m->settings.seed;
    float *w = m->params + L->w_off, *b = m->params + L->b_off;
    const int64_t n_w = L->fan_in * L->fan_out;
    if (m->init == MTL_INIT_UNIFORM_FAN_IN) {
        /* PyTorch's nn.Linear: weight and bias in +-1/sqrt(fan_in). */
        const double bound = 1.0 / sqrt((double)L->fan_in);
        draw_uniform(w, n_w, bound, seed, block_at(m, L->w_off));
        draw_uniform(b, L->fan_out, bound, seed, block_at(m, L->b_off));
    } else {
        draw_he_glorot(w, n_w, L, seed, block_at(m, L->w_off));
        memset(b, 0, (size_t)L->fan_out * sizeof(float));
    }
    if (L->layer_norm) {
        for (int64_t j = 0; j < L->fan_out; j++) m->params[L->gain_off + j] = 1.0f;
        memset(m->params + L->shift_off, 0, (size_t)L->fan_out * sizeof(float));
    }
}

mtl_status mtl_model_set_init(mtl_model *m, mtl_init init)
{
    static const char fn[] = "mtl_model_set_init";
    MTLI_TRY(check_defining(m, fn));
    if (init != MTL_INIT_HE_GLOROT && init != MTL_INIT_UNIFORM_FAN_IN)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                         "%s: unknown initialisation %d (MTL_INIT_HE_GLOROT or MTL_INIT_UNIFORM_FAN_IN)", fn,
                         (int)init);
    m->init = init;
    return MTL_OK;
}

mtl_status mtl_model_finalize(mtl_model *m)
{
    return mtli_model_finalize(m, true);
}

/* The loader passes initialise = false: it overwrites every parameter, and
 * drawing millions of normals first made loading 3-4x slower. */
mtl_status mtli_model_finalize(mtl_model *m, bool initialise)
{
    static const char fn[] = "mtl_model_finalize";
    MTLI_TRY(check_defining(m, fn));
    if (m->n_tasks == 0)
        return mtli_fail(MTL_ERR_STATE, "%s: the model has no task (add one with mtl_model_add_task)", fn);

    /* Count first: sizes of every array. */
    layout_pass count = { NULL, 0, 0, &m->settings, false };
    int64_t fused_off = 0;
    layout(m, &count, NULL, NULL, &fused_off, NULL);
    const int64_t n_params = count.off;
    size_t bytes;
    if (n_params <= 0 || !mtli_mul_size((size_t)n_params, sizeof(float), &bytes))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %lld parameters are too many", fn, (long long)n_params);

    const mtli_settings *s = &m->settings;
    float *params = mtli_alloc(s, bytes);
    mtli_layer *trunk = m->n_trunk ? mtli_calloc(s, (size_t)m->n_trunk, sizeof *trunk) : NULL;
    mtli_param_block *blocks = mtli_calloc(s, (size_t)count.n_blocks, sizeof *blocks);
    mtli_layer *layers[MTLI_MAX_TASKS] = { NULL };
    int64_t *info = mtli_calloc(s, (size_t)m->n_tasks * 3, sizeof *info);
    bool oom = !params || (m->n_trunk && !trunk) || !blocks || !info;
    for (int64_t t = 0; t < m->n_tasks && !oom; t++) {
        layers[t] = mtli_calloc(s, (size_t)m->tasks[t].n_hidden + 1, sizeof(mtli_layer));
        oom = !layers[t];
    }
    layout_pass fill = { blocks, 0, 0, s, false };
    if (!oom) {
        layout(m, &fill, trunk, layers, &fused_off, info);
        oom = fill.oom;
    }
    if (oom) {
        if (blocks)
            for (int64_t i = 0; i < count.n_blocks; i++) mtli_free(s, blocks[i].name);
        for (int64_t t = 0; t < m->n_tasks; t++) mtli_free(s, layers[t]);
        mtli_free(s, blocks);
        mtli_free(s, trunk);
        mtli_free(s, params);
        mtli_free(s, info);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %lld parameters and their layout", fn,
                         (long long)n_params);
    }

    /* Commit. */
    m->params = params;
    m->n_params = n_params;
    m->trunk = trunk;
    m->blocks = blocks;
    m->n_blocks = count.n_blocks;
    m->fused_w_off = fused_off;
    m->fused_width = 0;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        mtli_task *task = &m->tasks[t];
        task->layers = layers[t];
        task->fused_col = info[3 * t];
        task->head_begin = info[3 * t + 1];
        task->head_end = info[3 * t + 2];
        m->fused_width += task->layers[0].fan_out;
    }
    mtli_free(s, info);
    m->embed_width = m->n_trunk ? m->trunk[m->n_trunk - 1].fan_out : m->n_inputs;
    m->finalized = true;

    if (!initialise) {
        memset(m->params, 0, bytes);
        return MTL_OK;
    }
    for (int64_t i = 0; i < m->n_trunk; i++) init_layer(m, &m->trunk[i]);
    for (int64_t t = 0; t < m->n_tasks; t++)
        for (int64_t j = 0; j <= m->tasks[t].n_hidden; j++) init_layer(m, &m->tasks[t].layers[j]);
    return MTL_OK;
}

int64_t mtli_task_param_spans(const mtl_model *m, int64_t task, int64_t spans[2][2])
{
    const mtli_task *t = &m->tasks[task];
    const mtli_layer *L0 = &t->layers[0];
    spans[0][0] = L0->w_off;
    spans[0][1] = L0->w_off + L0->fan_in * L0->fan_out;
    spans[1][0] = t->head_begin;
    spans[1][1] = t->head_end;
    return 2;
}

/* ---- read-back ----------------------------------------------------------------- */

int64_t mtl_model_input_count(const mtl_model *m)
{
    return m ? m->n_inputs : 0;
}

int64_t mtl_model_task_count(const mtl_model *m)
{
    return m ? m->n_tasks : 0;
}

int64_t mtl_model_layer_count(const mtl_model *m)
{
    if (!m) return 0;
    int64_t n = m->n_trunk;
    for (int64_t t = 0; t < m->n_tasks; t++) n += m->tasks[t].n_hidden + 1;
    return n;
}

int64_t mtl_model_param_count(const mtl_model *m)
{
    return m && m->finalized ? m->n_params : 0;
}

int64_t mtl_model_embedding_width(const mtl_model *m)
{
    return m ? m->embed_width : 0;
}

int64_t mtl_model_target_width(const mtl_model *m)
{
    return m ? m->target_width : 0;
}

int64_t mtl_model_output_width(const mtl_model *m)
{
    return m ? m->output_width : 0;
}

int mtl_model_is_finalized(const mtl_model *m)
{
    return m && m->finalized ? 1 : 0;
}

mtl_status mtl_model_task_name(const mtl_model *m, int64_t task, const char **name)
{
    MTLI_TRY(check_task(m, task, "mtl_model_task_name"));
    MTLI_CHECK_ARG(name, "mtl_model_task_name: name is NULL");
    *name = m->tasks[task].name;
    return MTL_OK;
}

mtl_status mtl_model_task_type(const mtl_model *m, int64_t task, mtl_task_type *type)
{
    MTLI_TRY(check_task(m, task, "mtl_model_task_type"));
    MTLI_CHECK_ARG(type, "mtl_model_task_type: type is NULL");
    *type = m->tasks[task].type;
    return MTL_OK;
}

mtl_status mtl_model_task_outputs(const mtl_model *m, int64_t task, int64_t *n_outputs)
{
    MTLI_TRY(check_task(m, task, "mtl_model_task_outputs"));
    MTLI_CHECK_ARG(n_outputs, "mtl_model_task_outputs: n_outputs is NULL");
    *n_outputs = m->tasks[task].n_outputs;
    return MTL_OK;
}

mtl_status mtl_model_task_columns(const mtl_model *m, int64_t task, int64_t *target_col, int64_t *output_col)
{
    MTLI_TRY(check_task(m, task, "mtl_model_task_columns"));
    MTLI_CHECK_ARG(target_col || output_col, "mtl_model_task_columns: target_col and output_col are both NULL");
    if (target_col) *target_col = m->tasks[task].target_col;
    if (output_col) *output_col = m->tasks[task].output_col;
    return MTL_OK;
}

mtl_status mtl_model_find_task(const mtl_model *m, const char *name, int64_t *task)
{
    MTLI_TRY(check_model(m, "mtl_model_find_task"));
    MTLI_CHECK_ARG(name && task, "mtl_model_find_task: name and task must not be NULL");
    for (int64_t t = 0; t < m->n_tasks; t++)
        if (strcmp(m->tasks[t].name, name) == 0) {
            *task = t;
            return MTL_OK;
        }
    return mtli_fail(MTL_ERR_NOT_FOUND, "mtl_model_find_task: no task named '%s'", name);
}

/* ---- parameters ---------------------------------------------------------------- */

mtl_status mtl_model_get_params(const mtl_model *m, float *out, int64_t n)
{
    static const char fn[] = "mtl_model_get_params";
    MTLI_TRY(check_finalized(m, fn));
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    if (n != m->n_params)
        return mtli_fail(MTL_ERR_SHAPE, "%s: n = %lld, the model has %lld parameters", fn, (long long)n,
                         (long long)m->n_params);
    memcpy(out, m->params, (size_t)n * sizeof(float));
    return MTL_OK;
}

mtl_status mtl_model_set_params(mtl_model *m, const float *params, int64_t n)
{
    static const char fn[] = "mtl_model_set_params";
    MTLI_TRY(check_finalized(m, fn));
    MTLI_CHECK_ARG(params, "%s: params is NULL", fn);
    if (n != m->n_params)
        return mtli_fail(MTL_ERR_SHAPE, "%s: n = %lld, the model has %lld parameters", fn, (long long)n,
                         (long long)m->n_params);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(params[i])) {
            const mtli_param_block *b = &m->blocks[block_at(m, i)];
            if (b->offset > i) b--; /* block_at finds the first block starting at or after i */
            return mtli_fail(MTL_ERR_NON_FINITE, "%s: params[%lld] (%s, element %lld) is %g", fn, (long long)i,
                             b->name, (long long)(i - b->offset), (double)params[i]);
        }
    memcpy(m->params, params, (size_t)n * sizeof(float));
    return MTL_OK;
}

int64_t mtl_model_param_block_count(const mtl_model *m)
{
    return m && m->finalized ? m->n_blocks : 0;
}

mtl_status mtl_model_param_block(const mtl_model *m, int64_t i, const char **name, int64_t *offset,
                                 int64_t *rows, int64_t *cols, int64_t *ld)
{
    static const char fn[] = "mtl_model_param_block";
    MTLI_TRY(check_finalized(m, fn));
    if (i < 0 || i >= m->n_blocks)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: block %lld outside [0, %lld)", fn, (long long)i,
                         (long long)m->n_blocks);
    const mtli_param_block *b = &m->blocks[i];
    if (name) *name = b->name;
    if (offset) *offset = b->offset;
    if (rows) *rows = b->rows;
    if (cols) *cols = b->cols;
    if (ld) *ld = b->ld;
    return MTL_OK;
}
