/* predict.c -- inference: the workspace, predict, predict_labels, embed.
 *
 * A workspace holds every buffer a forward pass needs for up to max_batch
 * rows, so predict allocates nothing and a const model can serve many
 * threads at once, each with its own workspace.  Layers reuse two
 * ping-pong buffers (inference keeps no activations for a backward pass),
 * layer norm and activations run in place, and at one row every layer is
 * a gemv (mtli_dense_matmul picks it), never a GEMM. */
#include "engine.h"
#include "losses.h"
#include "mtl_internal.h"
#include "small_gemm.h"

#include <math.h>
#include <string.h>

#define MTLI_MAX_WS_BATCH ((int64_t)1 << 24)

struct mtl_workspace {
    mtli_settings settings;
    const mtl_model *model; /* the model it was sized for */
    uint64_t model_serial;  /* ...and its serial: a new model at a freed one's address differs */
    int64_t max_batch;
    int64_t pass_rows; /* rows per pass through the layers (<= max_batch) */
    void *arena;
    size_t bytes;
    float *xs;      /* max_batch x n_inputs: scaled inputs */
    float *logits;  /* max_batch x output_width: output layers of tasks with hidden layers */
    float *outbuf;  /* max_batch x output_width: outputs before the label transform */
    mtli_plan plan;
};

/* ---- create / destroy ------------------------------------------------------------------ */

static void inference_slot(mtli_slot *s, float *buf, int64_t ld)
{
    s->pre = s->post = s->out = buf;
    s->rstd = NULL;
    s->mask = NULL;
    s->ld = ld;
}

/* Same code for sizing (base NULL) and carving. */
static void ws_plan(mtl_workspace *ws, const mtl_model *m, mtli_carver *c)
{
    const size_t B = (size_t)ws->max_batch, T = (size_t)m->n_tasks;
    mtli_plan *p = &ws->plan;
    int64_t trunk_max = 0, inner_max = 0, n_head = 0;
    for (int64_t i = 0; i < m->n_trunk; i++)
        if (m->trunk[i].fan_out > trunk_max) trunk_max = m->trunk[i].fan_out;
    for (size_t t = 0; t < T; t++) {
        const mtli_task *task = &m->tasks[t];
        n_head += task->n_hidden;
        for (int64_t j = 1; j < task->n_hidden; j++)
            if (task->layers[j].fan_out > inner_max) inner_max = task->layers[j].fan_out;
    }
    ws->xs = mtli_carve(c, B * (size_t)m->n_inputs, sizeof(float));
    ws->logits = mtli_carve(c, B * (size_t)m->output_width, sizeof(float));
    ws->outbuf = mtli_carve(c, B * (size_t)m->output_width, sizeof(float));
    float *tbuf[2], *hbuf[2];
    tbuf[0] = mtli_carve(c, B * (size_t)trunk_max, sizeof(float));
    tbuf[1] = mtli_carve(c, B * (size_t)trunk_max, sizeof(float));
    hbuf[0] = mtli_carve(c, B * (size_t)inner_max, sizeof(float));
    hbuf[1] = mtli_carve(c, B * (size_t)inner_max, sizeof(float));
    p->fused_pre = mtli_carve(c, B * (size_t)m->fused_width, sizeof(float));
    p->trunk = mtli_carve(c, (size_t)m->n_trunk, sizeof(mtli_slot));
    p->fused = mtli_carve(c, T, sizeof(mtli_slot));
    p->head = mtli_carve(c, (size_t)n_head, sizeof(mtli_slot));
    p->head_first = mtli_carve(c, T, sizeof(int64_t));
    if (!c->base) return;

    for (int64_t i = 0; i < m->n_trunk; i++) inference_slot(&p->trunk[i], tbuf[i % 2], m->trunk[i].fan_out);
    int64_t k = 0;
    for (size_t t = 0; t < T; t++) {
        const mtli_task *task = &m->tasks[t];
        inference_slot(&p->fused[t], p->fused_pre + task->fused_col, m->fused_width);
        p->head_first[t] = k;
        for (int64_t j = 1; j <= task->n_hidden; j++, k++) {
            if (j == task->n_hidden) /* output layer: its own columns of the logits */
                inference_slot(&p->head[k], ws->logits + task->output_col, m->output_width);
            else
                inference_slot(&p->head[k], hbuf[j % 2], task->layers[j].fan_out);
        }
    }
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
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m->n_inputs; j++)
            if (!isfinite(x[i * ldx + j]))
                return mtli_fail(MTL_ERR_NON_FINITE, "%s: input row %lld, column %lld is %g", fn, (long long)i,
                                 (long long)j, (double)x[i * ldx + j]);
    return MTL_OK;
}

/* Trunk forward of rows [0, c) of x: the representation. */
static mtl_status chunk_trunk(const mtl_model *m, mtl_workspace *ws, int64_t c, const float *x, int64_t ldx,
                              const float **z, int64_t *ldz)
{
    if (m->scalers.fitted) {
        mtli_scale_inputs(m, c, x, ldx, ws->xs, m->n_inputs);
        x = ws->xs;
        ldx = m->n_inputs;
    }
    return mtli_forward_trunk(m, &m->blas, &ws->plan, c, x, ldx, false, 0, 0, z, ldz);
}

/* Outputs (output layout, original units) of rows [0, c) into out. */
static mtl_status chunk_outputs(const mtl_model *m, mtl_workspace *ws, int64_t c, const float *x, int64_t ldx,
                                float *out, int64_t ldout)
{
    const float *z;
    int64_t ldz;
    MTLI_TRY(chunk_trunk(m, ws, c, x, ldx, &z, &ldz));
    MTLI_TRY(mtli_forward_heads(m, &m->blas, &ws->plan, c, z, ldz, false, 0, 0));
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const float *logits;
        int64_t ldl;
        mtli_plan_logits(m, &ws->plan, t, &logits, &ldl);
        mtli_task_outputs(&m->tasks[t], c, logits, ldl, out + m->tasks[t].output_col, ldout);
    }
    mtli_unscale_outputs(m, c, out, ldout);
    return MTL_OK;
}

mtl_status mtl_model_predict(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                             float *out, int64_t ldout)
{
    static const char fn[] = "mtl_model_predict";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->output_width : 0, fn));
    for (int64_t r = 0; r < n; r += ws->pass_rows) {
        const int64_t c = n - r < ws->pass_rows ? n - r : ws->pass_rows;
        MTLI_TRY(chunk_outputs(m, ws, c, x + r * ldx, ldx, out + r * ldout, ldout));
    }
    return MTL_OK;
}

mtl_status mtl_model_predict_labels(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx,
                                    float *out, int64_t ldout)
{
    static const char fn[] = "mtl_model_predict_labels";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->target_width : 0, fn));
    const int64_t W = m->output_width;
    for (int64_t r = 0; r < n; r += ws->pass_rows) {
        const int64_t c = n - r < ws->pass_rows ? n - r : ws->pass_rows;
        MTLI_TRY(chunk_outputs(m, ws, c, x + r * ldx, ldx, ws->outbuf, W));
        float *o = out + r * ldout;
        for (int64_t t = 0; t < m->n_tasks; t++) {
            const mtli_task *task = &m->tasks[t];
            if (task->type == MTL_TASK_REGRESSION) { /* unscaled values, moved to the target layout */
                for (int64_t i = 0; i < c; i++)
                    memcpy(o + i * ldout + task->target_col, ws->outbuf + i * W + task->output_col,
                           (size_t)task->n_outputs * sizeof(float));
                continue;
            }
            const float *logits;
            int64_t ldl;
            mtli_plan_logits(m, &ws->plan, t, &logits, &ldl);
            mtli_task_labels(task, c, logits, ldl, o + task->target_col, ldout);
        }
    }
    return MTL_OK;
}

mtl_status mtl_model_embed(const mtl_model *m, mtl_workspace *ws, int64_t n, const float *x, int64_t ldx, float *out,
                           int64_t ldout)
{
    static const char fn[] = "mtl_model_embed";
    MTLI_TRY(check_predict(m, ws, n, x, ldx, out, ldout, m ? m->embed_width : 0, fn));
    const int64_t E = m->embed_width;
    for (int64_t r = 0; r < n; r += ws->pass_rows) {
        const int64_t c = n - r < ws->pass_rows ? n - r : ws->pass_rows;
        const float *z;
        int64_t ldz;
        MTLI_TRY(chunk_trunk(m, ws, c, x + r * ldx, ldx, &z, &ldz));
        for (int64_t i = 0; i < c; i++) memcpy(out + (r + i) * ldout, z + i * ldz, (size_t)E * sizeof(float));
    }
    return MTL_OK;
}
