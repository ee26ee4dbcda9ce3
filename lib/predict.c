/* predict.c -- inference: the workspace, predict, predict_labels, embed.
 *
 * A workspace holds every buffer a forward pass needs, so predict
 * allocates nothing and a const model can serve many threads at once, each
 * with its own workspace.  Rows go through the network in passes
 * (pass_rows) and a long pass in parts (next_part) that give the same bits;
 * a small model's passes run on the handle's threads, each thread in a
 * lane of buffers of its own (ws_lane).
 * Inference keeps no activations for a backward pass: layers take turns
 * in two ping-pong buffers (ws_widths), layer norm and activations run in
 * place, and at one row every layer is a gemv or dot products
 * (mtli_dense_matmul picks them), never a GEMM. */
#include "engine.h"
#include "losses.h"
#include "mtl_internal.h"
#include "small_gemm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MTLI_MAX_WS_BATCH ((int64_t)1 << 24)

/* Rows of a part of a long pass: at most MTLI_PART_ROWS (see
 * buffer_rows), at least MTLI_MIN_PART_ROWS.  BLIS's kernels for skinny
 * products ("sup") take products of fewer rows than that on every x86
 * kernel set of BLIS 0.9 (201 to 512 rows), so a part never runs on other
 * BLIS kernels than the whole pass would. */
#define MTLI_PART_ROWS 1024
#define MTLI_MIN_PART_ROWS 512

static void widen(int64_t *w, int64_t width)
{
    if (width > *w) *w = width;
}

/* One set of pass buffers.  A workspace whose passes run on libmtl's own
 * kernel, one thread each (a small model: pass_rows), has one lane per
 * thread that may run passes at once; any other has one, and BLIS threads
 * its GEMMs. */
typedef struct ws_lane {
    float *act[2];     /* the ping-pong buffers (see ws_widths), rows x act_width[i] floats */
    float *xs;         /* rows x n_inputs: scaled inputs (in act[1] or xs_late; NULL until needed) */
    float *xs_late;    /* made by the first predict after mtl_model_fit_scalers, when act[1] is too narrow */
    float *logits;     /* rows x output_width: output layers of tasks with hidden layers */
    float *outbuf;     /* rows x output_width: predict_labels' outputs (in act[Z]) */
    mtli_plan plan;
    mtl_status status; /* of the passes this lane ran in the last call (threaded calls) */
    char msg[256];     /* ...and the error message its thread set */
} ws_lane;

struct mtl_workspace {
    mtli_settings settings;
    const mtl_model *model; /* the model it was sized for */
    uint64_t model_serial;  /* ...and its serial: a new model at a freed one's address differs */
    int64_t max_batch;
    int64_t pass_rows;    /* rows per pass (<= max_batch): each layer's kernel is picked for a pass */
    int64_t rows;         /* rows the buffers hold (<= pass_rows): a longer pass runs in parts */
    int64_t min_part;     /* fewest rows of a part (see min_part_rows) */
    int64_t act_width[2]; /* every lane's act[i] is rows x act_width[i] floats */
    int64_t n_lanes;
    ws_lane *lane;        /* n_lanes */
    void *arena;
    size_t bytes;
};

/* ---- create / destroy ------------------------------------------------------------------ */

/* Which buffer holds what during a pass.  Inference keeps no activations
 * for a backward pass, so layers take turns in two buffers, act[0] and
 * act[1], each as wide as the widest thing it holds:
 *     scaled inputs        act[1]      read only by trunk layer 0 (it writes act[0])
 *     trunk layer i        act[i % 2]  the last one's output, z, ends in act[Z]
 *     fused first layers   act[F]      F = n_trunk % 2: the buffer z is not in; in
 *                                      groups of tasks when that saves memory (fused_ld)
 *     head layer j >= 1    act[Z] for odd j, head_mid for even j (the fused
 *                          block stays: the other tasks still read theirs)
 *     output layers        logits      (a task without hidden layers: in act[F])
 *     predict_labels' outputs act[Z]   written once every head is done
 * Without a trunk z is the input itself, scaled in act[1] = act[Z]. */
typedef struct ws_widths {
    int64_t act[2], head_mid, logits;
    int64_t fused_ld; /* row stride of the fused layer's buffer */
    bool xs;
} ws_widths;

/* A workspace runs the fused first layers in groups of tasks when that
 * saves at least this many bytes. */
#define MTLI_GROUP_MIN_SAVING 4096

/* Row stride of the fused layer in act[F], which already holds `have`
 * floats a row.  The whole layer needs fused_width.  Groups of tasks
 * (mtli_plan_group_end) can take turns in `have` columns, when
 *  - every head is one hidden layer and its output layer: the outputs go
 *    to the logits, and nothing else is written over z until the last
 *    group has read it;
 *  - the small kernel takes the whole fused product at these rows (and so
 *    each group's, and at one row both are dot products): each element
 *    is then computed alone, and groups give the bits of the whole;
 *  - it saves MTLI_GROUP_MIN_SAVING bytes or more.
 * At W1 (3 heads of 32, trunk of 64) a 64-row workspace saves 8 KB. */
static int64_t fused_ld(const mtl_model *m, int64_t rows, int64_t have)
{
    const int64_t whole = m->fused_width;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        if (m->tasks[t].n_hidden != 1) return whole;
        widen(&have, m->tasks[t].layers[0].fan_out);
    }
    if (have >= whole || !mtli_small_gemm_available()) return whole;
    if (2.0 * (double)rows * (double)whole * (double)m->embed_width > MTLI_SMALL_GEMM_MAX_FLOPS) return whole;
    if ((double)(whole - have) * (double)rows * sizeof(float) < MTLI_GROUP_MIN_SAVING) return whole;
    return have;
}

static ws_widths buffer_widths(const mtl_model *m, int64_t rows)
{
    ws_widths w = { { 0, 0 }, 0, 0, 0, m->scalers.fitted };
    const int64_t F = m->n_trunk % 2, Z = 1 - F;
    for (int64_t i = 0; i < m->n_trunk; i++) widen(&w.act[i % 2], m->trunk[i].fan_out);
    if (w.xs) widen(&w.act[1], m->n_inputs);
    w.fused_ld = fused_ld(m, rows, w.act[F]);
    widen(&w.act[F], w.fused_ld);
    widen(&w.act[Z], m->output_width);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        for (int64_t j = 1; j < task->n_hidden; j++) widen(j % 2 ? &w.act[Z] : &w.head_mid, task->layers[j].fan_out);
        if (task->n_hidden > 0) w.logits = m->output_width;
    }
    return w;
}

static void inference_slot(mtli_slot *s, float *buf, int64_t ld)
{
    s->pre = s->post = s->out = buf;
    s->rstd = NULL;
    s->mask = NULL;
    s->ld = ld;
}

/* One lane's buffers and plan; the same code sizes (base NULL, lane NULL)
 * and carves. */
static void lane_plan(const mtl_workspace *ws, const mtl_model *m, const ws_widths *w, mtli_carver *c,
                      ws_lane *lane)
{
    const size_t R = (size_t)ws->rows, T = (size_t)m->n_tasks;
    const int64_t F = m->n_trunk % 2, Z = 1 - F;
    int64_t n_head = 0;
    for (size_t t = 0; t < T; t++) n_head += m->tasks[t].n_hidden;
    float *act[2];
    act[0] = mtli_carve(c, R, (size_t)w->act[0] * sizeof(float));
    act[1] = mtli_carve(c, R, (size_t)w->act[1] * sizeof(float));
    float *head_mid = mtli_carve(c, R, (size_t)w->head_mid * sizeof(float));
    float *logits = mtli_carve(c, R, (size_t)w->logits * sizeof(float));
    mtli_plan p;
    memset(&p, 0, sizeof p);
    p.trunk = mtli_carve(c, (size_t)m->n_trunk, sizeof(mtli_slot));
    p.fused = mtli_carve(c, T, sizeof(mtli_slot));
    p.head = mtli_carve(c, (size_t)n_head, sizeof(mtli_slot));
    p.head_first = mtli_carve(c, T, sizeof(int64_t));
    if (!c->base) return;

    memset(lane, 0, sizeof *lane); /* the arena is not zeroed */
    lane->act[0] = act[0];
    lane->act[1] = act[1];
    lane->logits = logits;
    lane->xs = w->xs ? act[1] : NULL;
    lane->outbuf = act[Z];
    p.fused_pre = act[F];
    p.fused_ld = w->fused_ld;
    for (int64_t i = 0; i < m->n_trunk; i++) inference_slot(&p.trunk[i], act[i % 2], m->trunk[i].fan_out);
    /* each group of tasks from column 0 of the fused buffer */
    for (int64_t t0 = 0, t1; t0 < m->n_tasks; t0 = t1) {
        t1 = mtli_plan_group_end(m, w->fused_ld, t0);
        for (int64_t t = t0; t < t1; t++)
            inference_slot(&p.fused[t], p.fused_pre + m->tasks[t].fused_col - m->tasks[t0].fused_col, w->fused_ld);
    }
    int64_t k = 0;
    for (size_t t = 0; t < T; t++) {
        const mtli_task *task = &m->tasks[t];
        p.head_first[t] = k;
        for (int64_t j = 1; j <= task->n_hidden; j++, k++) {
            if (j == task->n_hidden) /* output layer: its own columns of the logits */
                inference_slot(&p.head[k], logits + task->output_col, m->output_width);
            else
                inference_slot(&p.head[k], j % 2 ? act[Z] : head_mid, task->layers[j].fan_out);
        }
    }
    lane->plan = p;
}

/* Same code for sizing (base NULL) and carving. */
static void ws_plan(mtl_workspace *ws, const mtl_model *m, mtli_carver *c)
{
    const ws_widths w = buffer_widths(m, ws->rows);
    ws->act_width[0] = w.act[0];
    ws->act_width[1] = w.act[1];
    ws->lane = mtli_carve(c, (size_t)ws->n_lanes, sizeof(ws_lane));
    for (int64_t l = 0; l < ws->n_lanes; l++) lane_plan(ws, m, &w, c, c->base ? &ws->lane[l] : NULL);
}

/* Rows per pass through the network.  Passes as large as the workspace
 * keep BLIS's GEMMs large and efficient.  But when every layer is small
 * enough that libmtl's own kernel takes a few hundred rows at once
 * (small_gemm.c), passes of that many rows run there instead, and each
 * layer's output is still in the core's cache when the bias and activation
 * pass reads it: at W1, 8,192-row passes spent a quarter of their time in
 * that pass alone (docs/performance.md). */
static int64_t pass_rows(const mtl_model *m, int64_t max_batch)
{
    if (!mtli_small_gemm_available()) return max_batch;
    double widest = (double)m->embed_width * (double)m->fused_width; /* fan_in x fan_out */
    for (int64_t i = 0; i < m->n_trunk; i++) {
        const double nk = (double)m->trunk[i].fan_in * (double)m->trunk[i].fan_out;
        if (m->trunk[i].fan_out > 1 && nk > widest) widest = nk;
    }
    for (int64_t t = 0; t < m->n_tasks; t++)
        for (int64_t j = 1; j <= m->tasks[t].n_hidden; j++) {
            const mtli_layer *L = &m->tasks[t].layers[j];
            const double nk = (double)L->fan_in * (double)L->fan_out;
            if (L->fan_out > 1 && nk > widest) widest = nk;
        }
    const double rows = MTLI_SMALL_GEMM_MAX_FLOPS / (2.0 * widest);
    if (rows < 64.0) return max_batch; /* a big layer: BLIS on big passes is faster */
    const int64_t r = (int64_t)rows & ~(int64_t)15;
    return r < max_batch ? r : max_batch;
}

/* The most rows for which a layer of fan_in x fan_out still takes the
 * small kernel (0: never). */
static int64_t small_kernel_rows(int64_t fan_in, int64_t fan_out)
{
    if (fan_out < 2 || !mtli_small_gemm_available()) return 0;
    return (int64_t)(MTLI_SMALL_GEMM_MAX_FLOPS / (2.0 * (double)fan_in * (double)fan_out));
}

/* A pass's rows decide each layer's kernel in two ways only: one row or
 * more, and whether the product is small enough for libmtl's own kernel
 * (layers.c, small_gemm.c).  Within a kernel a row's bits do not depend
 * on the other rows (BLIS never splits k; the small kernel sums each
 * element over k in order).  So a pass cut into parts computes exactly
 * what it would have whole, provided every part has more rows than any
 * small-kernel limit the whole pass exceeds: the fewest rows a part may
 * have is one more than the largest limit below pass_rows, and at least
 * MTLI_MIN_PART_ROWS, rounded up to a multiple of 64. */
static int64_t min_part_rows(const mtl_model *m, int64_t pass)
{
    int64_t limit = MTLI_MIN_PART_ROWS - 1;
    const int64_t fused = small_kernel_rows(m->embed_width, m->fused_width);
    if (fused < pass) widen(&limit, fused);
    for (int64_t i = 0; i < m->n_trunk; i++) {
        const int64_t r = small_kernel_rows(m->trunk[i].fan_in, m->trunk[i].fan_out);
        if (r < pass) widen(&limit, r);
    }
    for (int64_t t = 0; t < m->n_tasks; t++)
        for (int64_t j = 1; j <= m->tasks[t].n_hidden; j++) {
            const int64_t r = small_kernel_rows(m->tasks[t].layers[j].fan_in, m->tasks[t].layers[j].fan_out);
            if (r < pass) widen(&limit, r);
        }
    return (limit + 1 + 63) & ~(int64_t)63;
}

/* Rows the buffers hold.  Passes of BLIS-sized layers run in parts of at
 * most MTLI_PART_ROWS: BLIS packs the weights once per part, which costs
 * little at that size, and the bias and activation pass then reads each
 * layer's output while it is still in L2/L3.  Room for two parts of the
 * fewest rows (next_part needs it). */
static int64_t buffer_rows(int64_t pass, int64_t min_part)
{
    if (pass <= MTLI_PART_ROWS) return pass;
    int64_t rows = 2 * min_part;
    widen(&rows, MTLI_PART_ROWS);
    return rows < pass ? rows : pass;
}

/* Rows of the next part of a pass with `left` rows still to go: all of
 * them if they fit, else ws->rows (a multiple of 64, so parts start where
 * the whole pass's 64-row blocks do), or half of them when ws->rows would
 * leave fewer than min_part.  Every part then has >= min_part rows: as
 * rows >= 2 min_part and min_part is a multiple of 64 (>= 128), half of
 * left (> rows) rounded down to 64 is >= min_part, and it leaves
 * < (rows + min_part)/2 + 64 <= rows: the part after it is the last. */
static int64_t next_part(const mtl_workspace *ws, int64_t left)
{
    if (left <= ws->rows) return left;
    if (left - ws->rows >= ws->min_part) return ws->rows;
    return (left / 2) & ~(int64_t)63;
}

mtl_status mtl_workspace_create(mtl_workspace **out, const mtl_model *model, int64_t max_batch)
{
    static const char fn[] = "mtl_workspace_create";
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    MTLI_CHECK_ARG(model, "%s: model is NULL", fn);
    if (!model->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is not finalized (call mtl_model_finalize first)", fn);
    if (max_batch < 1 || max_batch > MTLI_MAX_WS_BATCH)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: max_batch %lld outside [1, %lld]", fn, (long long)max_batch,
                         (long long)MTLI_MAX_WS_BATCH);
    const mtli_settings *s = &model->settings;
    mtl_workspace *ws = mtli_calloc(s, 1, sizeof *ws);
    if (!ws) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate the workspace", fn);
    ws->settings = *s;
    ws->model = model;
    ws->model_serial = model->serial;
    ws->max_batch = max_batch;
    ws->pass_rows = pass_rows(model, max_batch);
    ws->min_part = min_part_rows(model, ws->pass_rows);
    ws->rows = buffer_rows(ws->pass_rows, ws->min_part);
    /* Passes of a small model run on one thread each: a lane per thread
     * (never more lanes than a full call has passes). */
    ws->n_lanes = ws->pass_rows < max_batch
                      ? mtli_task_threads((max_batch + ws->pass_rows - 1) / ws->pass_rows, s->num_threads)
                      : 1;
    mtli_carver count = { NULL, 0, false };
    ws_plan(ws, model, &count);
    if (!count.overflow) ws->arena = mtli_alloc(s, count.off);
    if (!ws->arena) {
        mtli_free(s, ws);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for batches of %lld rows", fn,
                         count.off, (long long)max_batch);
    }
    ws->bytes = count.off;
    mtli_carver fill = { ws->arena, 0, false };
    ws_plan(ws, model, &fill);
    *out = ws;
    return MTL_OK;
}

void mtl_workspace_destroy(mtl_workspace *ws)
{
    if (!ws) return;
    const mtli_settings s = ws->settings;
    for (int64_t l = 0; ws->lane && l < ws->n_lanes; l++) mtli_free(&s, ws->lane[l].xs_late);
    mtli_free(&s, ws->arena);
    mtli_free(&s, ws);
}

/* ---- predict ------------------------------------------------------------------------------- */

static mtl_status check_predict(const mtl_model *m, const mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                                const float *out, int64_t ldout, int64_t out_width, const char *fn)
{
    MTLI_CHECK_ARG(m, "%s: model is NULL", fn);
    if (!m->finalized)
        return mtli_fail(MTL_ERR_STATE, "%s: the model is not finalized (call mtl_model_finalize first)", fn);
    MTLI_CHECK_ARG(ws, "%s: workspace is NULL", fn);
    MTLI_CHECK_ARG(ws->model == m && ws->model_serial == m->serial,
                   "%s: the workspace was created for another model", fn);
    MTLI_CHECK_ARG(n >= 0, "%s: n = %lld rows", fn, (long long)n);
    if (n == 0) return MTL_OK;
    MTLI_CHECK_ARG(x, "%s: x is NULL", fn);
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    if (ldx < m->n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "%s: ldx = %lld is less than the model's %lld inputs", fn, (long long)ldx,
                         (long long)m->n_inputs);
    if (ldout < out_width)
        return mtli_fail(MTL_ERR_SHAPE, "%s: ldout = %lld is less than the %lld output columns", fn, (long long)ldout,
                         (long long)out_width);
    /* Checked before anything is written: on failure `out` is untouched. */
    int64_t bad_row, bad_col;
    if (mtli_find_non_finite(x, n, m->n_inputs, ldx, m->settings.num_threads, &bad_row, &bad_col))
        return mtli_fail(MTL_ERR_NON_FINITE, "%s: input row %lld, column %lld is %g", fn, (long long)bad_row,
                         (long long)bad_col, (double)x[bad_row * ldx + bad_col]);
    return MTL_OK;
}

/* The workspace has room for scaled inputs only if the scalers were fitted
 * when it was made (or if act[1] is wide enough anyway).  Fitted later:
 * room of their own in every lane, allocated once, by the first predict
 * that needs it. */
static mtl_status scaled_inputs_room(const mtl_model *m, mtl_workspace *ws, const char *fn)
{
    if (!m->scalers.fitted) return MTL_OK;
    for (int64_t l = 0; l < ws->n_lanes; l++) {
        ws_lane *lane = &ws->lane[l];
        if (lane->xs) continue;
        if (m->n_inputs <= ws->act_width[1]) {
            lane->xs = lane->act[1];
            continue;
        }
        size_t bytes = 0;
        if (mtli_mul_size((size_t)ws->rows * sizeof(float), (size_t)m->n_inputs, &bytes))
            lane->xs_late = mtli_alloc(&ws->settings, bytes);
        if (!lane->xs_late)
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY,
                             "%s: cannot allocate room for %lld x %lld scaled inputs (the model's scalers were fitted "
                             "after the workspace was created)", fn, (long long)ws->rows, (long long)m->n_inputs);
        lane->xs = lane->xs_late;
        ws->bytes += bytes;
    }
    return MTL_OK;
}

/* Trunk forward of rows [0, c) of x: the representation. */
static mtl_status part_trunk(const mtl_model *m, ws_lane *lane, int64_t c, const float *x, int64_t ldx,
                             const float **z, int64_t *ldz)
{
    if (m->scalers.fitted) {
        mtli_scale_inputs(m, c, x, ldx, lane->xs, m->n_inputs);
        x = lane->xs;
        ldx = m->n_inputs;
    }
    return mtli_forward_trunk(m, &m->blas, &lane->plan, c, x, ldx, false, 0, 0, z, ldz);
}

/* Outputs (output layout, original units) of rows [0, c) into out. */
static mtl_status part_outputs(const mtl_model *m, ws_lane *lane, int64_t c, const float *x, int64_t ldx,
                               float *out, int64_t ldout)
{
    const float *z;
    int64_t ldz;
    MTLI_TRY(part_trunk(m, lane, c, x, ldx, &z, &ldz));
    MTLI_TRY(mtli_forward_heads(m, &m->blas, &lane->plan, c, z, ldz, false, 0, 0));
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const float *logits;
        int64_t ldl;
        mtli_plan_logits(m, &lane->plan, t, &logits, &ldl);
        mtli_task_outputs(&m->tasks[t], c, logits, ldl, out + m->tasks[t].output_col, ldout);
    }
    mtli_unscale_outputs(m, c, out, ldout);
    return MTL_OK;
}

/* Labels (target layout) of rows [0, c) into out. */
static mtl_status part_labels(const mtl_model *m, ws_lane *lane, int64_t c, const float *x, int64_t ldx,
                              float *out, int64_t ldout)
{
    const int64_t W = m->output_width;
    MTLI_TRY(part_outputs(m, lane, c, x, ldx, lane->outbuf, W));
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        if (task->type == MTL_TASK_REGRESSION) { /* unscaled values, moved to the target layout */
            for (int64_t i = 0; i < c; i++)
                memcpy(out + i * ldout + task->target_col, lane->outbuf + i * W + task->output_col,
                       (size_t)task->n_outputs * sizeof(float));
            continue;
        }
        const float *logits;
        int64_t ldl;
        mtli_plan_logits(m, &lane->plan, t, &logits, &ldl);
        mtli_task_labels(task, c, logits, ldl, out + task->target_col, ldout);
    }
    return MTL_OK;
}

/* The representation of rows [0, c) into out. */
static mtl_status part_embed(const mtl_model *m, ws_lane *lane, int64_t c, const float *x, int64_t ldx,
                             float *out, int64_t ldout)
{
    const float *z;
    int64_t ldz;
    MTLI_TRY(part_trunk(m, lane, c, x, ldx, &z, &ldz));
    for (int64_t i = 0; i < c; i++) memcpy(out + i * ldout, z + i * ldz, (size_t)m->embed_width * sizeof(float));
    return MTL_OK;
}

typedef mtl_status (*part_fn)(const mtl_model *m, ws_lane *lane, int64_t c, const float *x, int64_t ldx, float *out,
                              int64_t ldout);

/* One call: n rows in passes of ws->pass_rows, each in parts the buffers
 * hold. */
typedef struct pass_job {
    const mtl_model *m;
    mtl_workspace *ws;
    int64_t n;
    const float *x;
    int64_t ldx;
    float *out;
    int64_t ldout;
    part_fn part;
} pass_job;

/* Passes [p0, p1) of the call, on one lane's buffers. */
static mtl_status run_pass_range(const pass_job *j, ws_lane *lane, int64_t p0, int64_t p1)
{
    const mtl_workspace *ws = j->ws;
    for (int64_t p = p0; p < p1; p++) {
        int64_t r = p * ws->pass_rows;
        const int64_t end = j->n - r < ws->pass_rows ? j->n : r + ws->pass_rows;
        while (r < end) {
            const int64_t c = next_part(ws, end - r);
            MTLI_TRY(j->part(j->m, lane, c, j->x + r * j->ldx, j->ldx, j->out + r * j->ldout, j->ldout));
            r += c;
        }
    }
    return MTL_OK;
}

/* Thread k's passes, on lane k.  Its error message is thread-local: kept
 * for the calling thread to report. */
static void pass_lane(void *ctx, int64_t k, int64_t p0, int64_t p1)
{
    const pass_job *j = ctx;
    ws_lane *lane = &j->ws->lane[k];
    lane->status = run_pass_range(j, lane, p0, p1);
    if (lane->status != MTL_OK) snprintf(lane->msg, sizeof lane->msg, "%s", mtl_last_error_message());
}

/* Passes are the same whatever the thread count, and a row's bits depend
 * only on its pass and part: threads change which lane computes a pass,
 * never its result. */
static mtl_status run_passes(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                             float *out, int64_t ldout, part_fn part, const char *fn)
{
    if (n <= 0) return MTL_OK;
    MTLI_TRY(scaled_inputs_room(m, ws, fn));
    const pass_job job = { m, ws, n, x, ldx, out, ldout, part };
    const int64_t passes = (n + ws->pass_rows - 1) / ws->pass_rows;
    const int64_t nt = passes < ws->n_lanes ? passes : ws->n_lanes;
    if (nt <= 1) return run_pass_range(&job, &ws->lane[0], 0, passes);
    for (int64_t k = 0; k < nt; k++) ws->lane[k].status = MTL_OK;
    mtli_run_parts(pass_lane, (void *)&job, passes, nt);
    for (int64_t k = 0; k < nt; k++)
        if (ws->lane[k].status != MTL_OK) return mtli_fail(ws->lane[k].status, "%s", ws->lane[k].msg);
    return MTL_OK;
}

mtl_status mtl_model_predict(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                             float *out, int64_t ldout)
{
    static const char fn[] = "mtl_model_predict";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->output_width : 0, fn));
    return run_passes(m, ws, n, x, ldx, out, ldout, part_outputs, fn);
}

mtl_status mtl_model_predict_labels(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                                    float *out, int64_t ldout)
{
    static const char fn[] = "mtl_model_predict_labels";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->target_width : 0, fn));
    return run_passes(m, ws, n, x, ldx, out, ldout, part_labels, fn);
}

mtl_status mtl_model_embed(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx, float *out,
                           int64_t ldout)
{
    static const char fn[] = "mtl_model_embed";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->embed_width : 0, fn));
    return run_passes(m, ws, n, x, ldx, out, ldout, part_embed, fn);
}
