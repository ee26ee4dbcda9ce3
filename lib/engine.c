/* engine.c -- the network's forward and backward passes over a batch, with
 * every activation buffer carved out of one arena at creation.  See
 * engine.h for the data path and the loss-weighting hooks. */
#include "engine.h"

#include "losses.h"

#include <string.h>

#define MTLI_MAX_BATCH ((int64_t)1 << 24)

/* ---- shared forward (also predict's) --------------------------------------------- */

mtli_layer mtli_fused_layer(const mtl_model *m)
{
    mtli_layer F;
    memset(&F, 0, sizeof F);
    F.fan_in = m->embed_width;
    F.fan_out = m->fused_width;
    F.act = MTL_ACT_IDENTITY;
    F.w_off = m->fused_w_off;
    F.ldw = m->embed_width;
    F.w_trans = true;
    return F;
}

/* Task t's columns of the fused layer end here. */
static int64_t fused_col_end(const mtl_model *m, int64_t t)
{
    return m->tasks[t].fused_col + m->tasks[t].layers[0].fan_out;
}

mtli_layer mtli_fused_layer_of(const mtl_model *m, int64_t t0, int64_t t1)
{
    mtli_layer F = mtli_fused_layer(m);
    const int64_t col0 = m->tasks[t0].fused_col;
    F.fan_out = fused_col_end(m, t1 - 1) - col0;
    F.w_off += col0 * F.ldw; /* stored transposed: one row per column */
    return F;
}

int64_t mtli_plan_group_end(const mtl_model *m, int64_t fused_ld, int64_t t0)
{
    const int64_t col0 = m->tasks[t0].fused_col;
    int64_t t1 = t0 + 1;
    while (t1 < m->n_tasks && fused_col_end(m, t1) - col0 <= fused_ld) t1++;
    return t1;
}

int64_t mtli_layer_id(int64_t task, int64_t j)
{
    return task < 0 ? j : MTLI_MAX_LAYERS * (1 + task) + j;
}

static uint64_t key_for(const mtli_layer *L, bool dropout_on, uint64_t seed, int64_t step, int64_t id)
{
    return dropout_on && L->dropout > 0.0f ? mtli_dropout_key(seed, step, id) : 0;
}

mtl_status mtli_forward_trunk(const mtl_model *m, const mtli_blas *b, const mtli_plan *p, int64_t n,
                              const float *x, int64_t ldx, bool dropout_on, uint64_t seed, int64_t step,
                              const float **z, int64_t *ldz)
{
    const float *in = x;
    int64_t ldin = ldx;
    for (int64_t i = 0; i < m->n_trunk; i++) {
        const mtli_layer *L = &m->trunk[i];
        const mtli_slot *s = &p->trunk[i];
        MTLI_TRY(mtli_dense_forward(b, L, m->params, n, in, ldin, s, dropout_on,
                                    key_for(L, dropout_on, seed, step, mtli_layer_id(-1, i))));
        in = mtli_slot_output(L, s, dropout_on);
        ldin = s->ld;
    }
    *z = in;
    *ldz = ldin;
    return MTL_OK;
}

/* Tasks [t0, t1): their first layers as one GEMM over the trunk output
 * (with the biases and activation applied as it is stored, when the small
 * kernel can), then each task's own bias, norm and activation, then the
 * rest of each head. */
static mtl_status forward_head_group(const mtl_model *m, const mtli_blas *b, const mtli_plan *p, int64_t t0,
                                     int64_t t1, int64_t n, const float *z, int64_t ldz, bool dropout_on,
                                     uint64_t seed, int64_t step)
{
    const mtli_layer F = mtli_fused_layer_of(m, t0, t1);
    const bool finished = mtli_fused_forward_small(m, &F, t0, t1, n, z, ldz, p->fused, p->fused_pre, p->fused_ld);
    if (!finished) MTLI_TRY(mtli_dense_matmul(b, &F, m->params, n, z, ldz, p->fused_pre, p->fused_ld));
    for (int64_t t = t0; t < t1; t++) {
        const mtli_layer *L0 = &m->tasks[t].layers[0];
        const uint64_t key = key_for(L0, dropout_on, seed, step, mtli_layer_id(t, 0));
        if (!finished)
            mtli_dense_finish(L0, m->params, n, &p->fused[t], dropout_on, key, b->num_threads);
        else if (dropout_on && L0->dropout > 0.0f)
            mtli_dense_dropout(L0, n, &p->fused[t], key);
    }
    for (int64_t t = t0; t < t1; t++) {
        const mtli_task *task = &m->tasks[t];
        const float *in = mtli_slot_output(&task->layers[0], &p->fused[t], dropout_on);
        int64_t ldin = p->fused[t].ld;
        for (int64_t j = 1; j <= task->n_hidden; j++) {
            const mtli_layer *L = &task->layers[j];
            const mtli_slot *s = &p->head[p->head_first[t] + j - 1];
            MTLI_TRY(mtli_dense_forward(b, L, m->params, n, in, ldin, s, dropout_on,
                                        key_for(L, dropout_on, seed, step, mtli_layer_id(t, j))));
            in = mtli_slot_output(L, s, dropout_on);
            ldin = s->ld;
        }
    }
    return MTL_OK;
}

mtl_status mtli_forward_heads(const mtl_model *m, const mtli_blas *b, const mtli_plan *p, int64_t n,
                              const float *z, int64_t ldz, bool dropout_on, uint64_t seed, int64_t step)
{
    for (int64_t t0 = 0, t1; t0 < m->n_tasks; t0 = t1) {
        t1 = mtli_plan_group_end(m, p->fused_ld, t0);
        MTLI_TRY(forward_head_group(m, b, p, t0, t1, n, z, ldz, dropout_on, seed, step));
    }
    return MTL_OK;
}

void mtli_plan_logits(const mtl_model *m, const mtli_plan *p, int64_t t, const float **ptr, int64_t *ld)
{
    const mtli_task *task = &m->tasks[t];
    /* The output layer has no norm, activation or dropout: its logits are
     * its pre-activation buffer. */
    const mtli_slot *s = task->n_hidden == 0 ? &p->fused[t] : &p->head[p->head_first[t] + task->n_hidden - 1];
    *ptr = s->pre;
    *ld = s->ld;
}

/* ---- the arena ---------------------------------------------------------------------- */

/* A training slot: pre always; post, out, rstd, mask when the layer needs them. */
static void carve_slot(mtli_carver *c, const mtli_layer *L, size_t B, int64_t ld, mtli_slot *s)
{
    s->ld = ld;
    s->pre = mtli_carve(c, B * (size_t)ld, sizeof(float));
    s->post = mtli_layer_needs_post(L) ? mtli_carve(c, B * (size_t)ld, sizeof(float)) : s->pre;
    s->out = L->dropout > 0.0f ? mtli_carve(c, B * (size_t)ld, sizeof(float)) : s->post;
    s->rstd = L->layer_norm ? mtli_carve(c, B, sizeof(float)) : NULL;
    s->mask = L->dropout > 0.0f ? mtli_carve(c, B * (size_t)ld, 1) : NULL;
}

/* Widen *w to below's width when the input gradient of L (the layer
 * above `below`) cannot go straight into below's gradient for B rows
 * (mtli_dense_input_grad_fuses) and so needs the scratch matrix. */
static void scratch_for(int64_t *w, const mtli_layer *L, const mtli_layer *below, int64_t B)
{
    if (!mtli_dense_input_grad_fuses(L, below, B) && below->fan_out > *w) *w = below->fan_out;
}

/* The arena: the activations of one batch (each layer's slot), the loss
 * gradients, and one scratch matrix for the backward pass as wide as the
 * widest layer whose input gradient cannot be finished tile by tile
 * (scratch_for; none at all for a small model on an AVX2 or AVX-512 CPU).  The
 * scaled-input copy only when the scalers are fitted now. */
static void engine_plan(mtli_engine *e, const mtl_model *m, mtli_carver *c)
{
    const size_t B = (size_t)e->max_batch, T = (size_t)m->n_tasks;
    const int64_t Fw = m->fused_width;
    mtli_plan *p = &e->plan;
    mtli_slot tmp;

    e->xs = m->scalers.fitted ? mtli_carve(c, B * (size_t)m->n_inputs, sizeof(float)) : NULL;
    e->ys = mtli_carve(c, B * (size_t)m->target_width, sizeof(float));

    p->trunk = mtli_carve(c, (size_t)m->n_trunk, sizeof(mtli_slot));
    int64_t scratch_w = 0;
    for (int64_t i = 0; i < m->n_trunk; i++) {
        const mtli_layer *L = &m->trunk[i];
        carve_slot(c, L, B, L->fan_out, p->trunk ? &p->trunk[i] : &tmp);
        if (i > 0) scratch_for(&scratch_w, L, &m->trunk[i - 1], e->max_batch);
    }
    if (m->n_trunk > 0) {
        const mtli_layer F = mtli_fused_layer(m);
        scratch_for(&scratch_w, &F, &m->trunk[m->n_trunk - 1], e->max_batch);
    }

    /* The fused layer: shared buffers, per-task views. */
    bool any_post = false, any_drop = false;
    for (size_t t = 0; t < T; t++) {
        any_post |= mtli_layer_needs_post(&m->tasks[t].layers[0]);
        any_drop |= m->tasks[t].layers[0].dropout > 0.0f;
    }
    p->fused_pre = mtli_carve(c, B * (size_t)Fw, sizeof(float));
    p->fused_ld = Fw;
    float *post = any_post ? mtli_carve(c, B * (size_t)Fw, sizeof(float)) : NULL;
    float *out = any_drop ? mtli_carve(c, B * (size_t)Fw, sizeof(float)) : NULL;
    uint8_t *mask = any_drop ? mtli_carve(c, B * (size_t)Fw, 1) : NULL;
    p->fused = mtli_carve(c, T, sizeof(mtli_slot));
    for (size_t t = 0; t < T; t++) {
        const mtli_layer *L = &m->tasks[t].layers[0];
        const int64_t col = m->tasks[t].fused_col;
        mtli_slot *s = p->fused ? &p->fused[t] : &tmp;
        s->ld = Fw;
        s->pre = p->fused_pre ? p->fused_pre + col : NULL;
        s->post = mtli_layer_needs_post(L) && post ? post + col : s->pre;
        s->out = L->dropout > 0.0f && out ? out + col : s->post;
        s->mask = L->dropout > 0.0f && mask ? mask + col : NULL;
        s->rstd = L->layer_norm ? mtli_carve(c, B, sizeof(float)) : NULL;
    }

    /* Remaining head layers, each with its own buffers. */
    int64_t n_head = 0;
    for (size_t t = 0; t < T; t++) n_head += m->tasks[t].n_hidden;
    p->head = mtli_carve(c, (size_t)n_head, sizeof(mtli_slot));
    p->head_first = mtli_carve(c, T, sizeof(int64_t));
    int64_t k = 0;
    for (size_t t = 0; t < T; t++) {
        const mtli_task *task = &m->tasks[t];
        if (p->head_first) p->head_first[t] = k;
        for (int64_t j = 0; j <= task->n_hidden; j++) {
            const mtli_layer *L = &task->layers[j];
            if (j == 0) continue; /* its block of the fused layer, above */
            scratch_for(&scratch_w, L, &task->layers[j - 1], e->max_batch);
            carve_slot(c, L, B, L->fan_out, p->head ? &p->head[k] : &tmp);
            k++;
        }
    }

    e->dlogits = mtli_carve(c, B * (size_t)m->output_width, sizeof(float));
    e->dy = mtli_carve(c, T, sizeof(float *));
    e->lddy = mtli_carve(c, T, sizeof(int64_t));
    e->loss = mtli_carve(c, T, sizeof(double));
    e->wsum = mtli_carve(c, T, sizeof(double));
    e->active = mtli_carve(c, T, sizeof(bool));
    e->dscratch = scratch_w > 0 ? mtli_carve(c, B * (size_t)scratch_w, sizeof(float)) : NULL;
    e->scratch_width = scratch_w;
    e->dfused = p->fused_pre;
}

mtl_status mtli_engine_create(mtli_engine **out, const mtl_model *m, const mtli_settings *s, int64_t max_batch)
{
    if (max_batch < 1 || max_batch > MTLI_MAX_BATCH)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "max_batch %lld outside [1, %lld]", (long long)max_batch,
                         (long long)MTLI_MAX_BATCH);
    mtli_engine *e = mtli_calloc(s, 1, sizeof *e);
    if (!e) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate the training engine");
    e->settings = *s;
    e->max_batch = max_batch;
    e->n_tasks = m->n_tasks;
    e->n_trunk = m->n_trunk;
    e->n_inputs = m->n_inputs;
    e->embed_width = m->embed_width;
    e->fused_width = m->fused_width;

    mtli_carver count = { NULL, 0, false };
    engine_plan(e, m, &count);
    if (!count.overflow) e->arena = mtli_alloc(s, count.off);
    if (!e->arena) {
        mtli_free(s, e);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of activations for batches of %lld rows",
                         count.off, (long long)max_batch);
    }
    e->arena_bytes = count.off;
    mtli_carver fill = { e->arena, 0, false };
    engine_plan(e, m, &fill);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        e->dy[t] = e->dlogits + m->tasks[t].output_col;
        e->lddy[t] = m->output_width;
    }
    *out = e;
    return MTL_OK;
}

void mtli_engine_destroy(mtli_engine *e)
{
    if (!e) return;
    const mtli_settings s = e->settings;
    if (e->xs_allocated) mtli_free(&s, e->xs);
    mtli_free(&s, e->dz_task);
    mtli_free(&s, e->arena);
    mtli_free(&s, e);
}

/* Blocks of max_batch x E floats made by mtli_engine_enable_task_grads:
 * one per task, and dz_top when there is a trunk. */
static int64_t task_grad_blocks(const mtli_engine *e)
{
    return e->n_tasks + (e->n_trunk > 0);
}

size_t mtli_engine_bytes(const mtli_engine *e)
{
    size_t n = sizeof *e + e->arena_bytes;
    if (e->dz_task) n += (size_t)(task_grad_blocks(e) * e->max_batch * e->embed_width) * sizeof(float);
    if (e->xs_allocated) n += (size_t)e->max_batch * (size_t)e->n_inputs * sizeof(float);
    return n;
}

mtl_status mtli_engine_scaled_inputs(mtli_engine *e)
{
    if (e->xs) return MTL_OK;
    /* Scalers fitted after this engine was made: the copy the arena left
     * out (it costs max_batch x n_inputs floats, 4 MB at W3, for every
     * model trained on raw inputs). */
    float *xs = mtli_calloc(&e->settings, (size_t)e->max_batch, (size_t)e->n_inputs * sizeof(float));
    if (!xs)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY,
                         "cannot allocate the scaled-input buffer (%lld rows x %lld inputs) for scalers fitted "
                         "after the trainer was created", (long long)e->max_batch, (long long)e->n_inputs);
    e->xs = xs;
    e->xs_allocated = true;
    return MTL_OK;
}

mtl_status mtli_engine_enable_task_grads(mtli_engine *e)
{
    if (e->dz_task) return MTL_OK;
    const int64_t blocks = task_grad_blocks(e);
    e->dz_task = mtli_calloc(&e->settings, (size_t)(blocks * e->max_batch), (size_t)e->embed_width * sizeof(float));
    if (!e->dz_task)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %lld per-task representation gradients",
                         (long long)e->n_tasks);
    if (e->n_trunk > 0) e->dz_top = e->dz_task + e->n_tasks * e->max_batch * e->embed_width;
    return MTL_OK;
}

/* ---- forward and losses ------------------------------------------------------------- */

mtl_status mtli_engine_forward(mtli_engine *e, const mtl_model *m, const mtli_blas *b, int64_t n,
                               const float *x, int64_t ldx, bool dropout_on, uint64_t seed, int64_t step)
{
    if (n < 1 || n > e->max_batch)
        return mtli_fail(MTL_ERR_INTERNAL, "engine: batch of %lld rows, capacity %lld", (long long)n,
                         (long long)e->max_batch);
    e->n = n;
    e->dropout_on = dropout_on;
    e->x = x;
    e->ldx = ldx;
    MTLI_TRY(mtli_forward_trunk(m, b, &e->plan, n, x, ldx, dropout_on, seed, step, &e->z, &e->ldz));
    return mtli_forward_heads(m, b, &e->plan, n, e->z, e->ldz, dropout_on, seed, step);
}

void mtli_engine_losses(mtli_engine *e, const mtl_model *m, const float *y, int64_t ldy, const uint8_t *mask,
                        int64_t ldmask, const float *sw, double *losses, bool *has_label)
{
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        const float *logits;
        int64_t ldl;
        mtli_plan_logits(m, &e->plan, t, &logits, &ldl);
        e->loss[t] = mtli_task_loss(task, e->n, logits, ldl, y + task->target_col, ldy,
                                    mask ? mask + task->target_col : NULL, ldmask, sw, e->dy[t], e->lddy[t],
                                    &e->wsum[t]);
        e->active[t] = e->wsum[t] > 0.0;
        if (losses) losses[t] = e->loss[t];
        if (has_label) has_label[t] = e->active[t];
    }
}

static void scale_block(float *a, int64_t rows, int64_t cols, int64_t ld, float w)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) a[i * ld + j] *= w;
}

void mtli_engine_scale_dy(mtli_engine *e, const mtl_model *m, const double *head_w)
{
    for (int64_t t = 0; t < m->n_tasks; t++) {
        if (!e->active[t]) continue;
        if (head_w[t] == 0.0) {
            e->active[t] = false; /* its gradient is zero: skip its backward */
            continue;
        }
        if (head_w[t] != 1.0) scale_block(e->dy[t], e->n, m->tasks[t].n_outputs, e->lddy[t], (float)head_w[t]);
    }
}

/* ---- backward ----------------------------------------------------------------------- */

/* From dL/d(pre) of layer L (d), the layer below it gets its own dL/d(pre)
 * in dz: in one pass without the scratch matrix when the shapes allow,
 * else the input gradient into the scratch and then below's epilogue. */
static mtl_status backward_into(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads,
                                const mtli_layer *L, const float *d, int64_t ldd, const mtli_layer *below,
                                const mtli_slot *s, float *dz, int64_t lddz)
{
    const int64_t n = e->n, w = below->fan_out;
    if (mtli_dense_input_grad_finish(L, m->params, n, d, ldd, below, grads, s, e->dropout_on, dz, lddz))
        return MTL_OK;
    if (!e->dscratch || w > e->scratch_width)
        return mtli_fail(MTL_ERR_INTERNAL, "engine: no scratch for the input gradient of a layer %lld wide",
                         (long long)w);
    MTLI_TRY(mtli_dense_input_grad(b, L, m->params, n, d, ldd, 1.0f, 0.0f, e->dscratch, w));
    mtli_dense_finish_backward_to(below, m->params, grads, n, s, e->dropout_on, e->dscratch, w, dz, lddz,
                                  b->num_threads);
    return MTL_OK;
}

mtl_status mtli_engine_backward_heads(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads)
{
    const int64_t n = e->n, Fw = m->fused_width;
    const mtli_plan *p = &e->plan;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        float *dblock = e->dfused + task->fused_col; /* over its block of the fused pre-activations */
        if (!e->active[t]) {
            /* No label (or zero weight): exactly zero head gradients; the fused
             * weight rows follow from the zero block in backward_fused. */
            memset(grads + task->head_begin, 0, (size_t)(task->head_end - task->head_begin) * sizeof(float));
            mtli_zero_rows(dblock, n, task->layers[0].fan_out, Fw);
            continue;
        }
        const int64_t top = task->n_hidden;
        float *dy = e->dy[t];
        const int64_t lddy = e->lddy[t];
        if (top == 0) { /* the fused block is the output layer */
            mtli_dense_finish_backward_to(&task->layers[0], m->params, grads, n, &p->fused[t], e->dropout_on, dy,
                                          lddy, dblock, Fw, b->num_threads);
            continue;
        }
        /* The output layer's dL/d(pre) is dY itself (finished in place);
         * every layer below gets its own over its pre buffer. */
        mtli_dense_finish_backward_to(&task->layers[top], m->params, grads, n, &p->head[p->head_first[t] + top - 1],
                                      e->dropout_on, dy, lddy, dy, lddy, b->num_threads);
        for (int64_t j = top; j >= 1; j--) {
            const mtli_layer *L = &task->layers[j], *Lin = &task->layers[j - 1];
            const mtli_slot *s = &p->head[p->head_first[t] + j - 1];
            const mtli_slot *sin = j == 1 ? &p->fused[t] : &p->head[p->head_first[t] + j - 2];
            const float *dz = j == top ? dy : s->pre;
            const int64_t lddz = j == top ? lddy : s->ld;
            MTLI_TRY(mtli_dense_weight_grad(b, L, grads, n, mtli_slot_output(Lin, sin, e->dropout_on), sin->ld, dz,
                                            lddz));
            MTLI_TRY(backward_into(e, m, b, grads, L, dz, lddz, Lin, sin, j == 1 ? dblock : sin->pre, sin->ld));
        }
    }
    return MTL_OK;
}

mtl_status mtli_engine_backward_fused(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads)
{
    const mtli_layer F = mtli_fused_layer(m);
    return mtli_dense_weight_grad(b, &F, grads, e->n, e->z, e->ldz, e->dfused, m->fused_width);
}

mtl_status mtli_engine_backward_trunk(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads,
                                      const double *rep_w)
{
    if (m->n_trunk == 0) return MTL_OK;
    const int64_t n = e->n, E = m->embed_width, top = m->n_trunk - 1;
    const mtli_layer *Ltop = &m->trunk[top];
    const mtli_slot *stop = &e->plan.trunk[top];
    /* The top layer's dL/d(pre): over its pre buffer, or dz_top (z may be
     * that buffer, and per-task gradients need z after the backward pass). */
    float *dz_top = e->dz_top ? e->dz_top : stop->pre;
    if (!rep_w) {
        const mtli_layer F = mtli_fused_layer(m);
        MTLI_TRY(backward_into(e, m, b, grads, &F, e->dfused, m->fused_width, Ltop, stop, dz_top, E));
    } else {
        /* dz = Σ_t rep_w[t] dz_t, tasks in order (fixed summation order),
         * then the top layer's epilogue in place. */
        if (!e->dz_top) return mtli_fail(MTL_ERR_INTERNAL, "engine: per-task gradients were not enabled");
        memset(dz_top, 0, (size_t)(n * E) * sizeof(float));
        for (int64_t t = 0; t < m->n_tasks; t++) {
            if (!e->active[t] || rep_w[t] == 0.0) continue;
            const float w = (float)rep_w[t];
            const float *restrict g = mtli_engine_task_grad(e, t);
            for (int64_t i = 0; i < n * E; i++) dz_top[i] += w * g[i];
        }
        mtli_dense_finish_backward_to(Ltop, m->params, grads, n, stop, e->dropout_on, dz_top, E, dz_top, E,
                                      b->num_threads);
    }
    for (int64_t i = top; i >= 0; i--) {
        const mtli_layer *L = &m->trunk[i];
        const float *dz = i == top ? dz_top : e->plan.trunk[i].pre;
        const float *x = e->x;
        int64_t ldx = e->ldx;
        if (i > 0) {
            x = mtli_slot_output(&m->trunk[i - 1], &e->plan.trunk[i - 1], e->dropout_on);
            ldx = e->plan.trunk[i - 1].ld;
        }
        MTLI_TRY(mtli_dense_weight_grad(b, L, grads, n, x, ldx, dz, L->fan_out));
        if (i > 0) { /* the input layer's dX is never needed */
            const mtli_slot *below = &e->plan.trunk[i - 1];
            MTLI_TRY(backward_into(e, m, b, grads, L, dz, L->fan_out, &m->trunk[i - 1], below, below->pre, below->ld));
        }
    }
    return MTL_OK;
}

mtl_status mtli_engine_backward(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads)
{
    MTLI_TRY(mtli_engine_backward_heads(e, m, b, grads));
    MTLI_TRY(mtli_engine_backward_fused(e, m, b, grads));
    return mtli_engine_backward_trunk(e, m, b, grads, NULL);
}

mtl_status mtli_engine_task_rep_grads(mtli_engine *e, const mtl_model *m, const mtli_blas *b)
{
    if (!e->dz_task) return mtli_fail(MTL_ERR_INTERNAL, "engine: per-task gradients were not enabled");
    const int64_t n = e->n, E = m->embed_width;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        float *dz = mtli_engine_task_grad(e, t);
        if (!e->active[t]) {
            memset(dz, 0, (size_t)(n * E) * sizeof(float));
            continue;
        }
        const mtli_task *task = &m->tasks[t];
        MTLI_TRY(mtli_dense_input_grad(b, &task->layers[0], m->params, n, e->dfused + task->fused_col,
                                       m->fused_width, 1.0f, 0.0f, dz, E));
    }
    return MTL_OK;
}

void mtli_engine_scale_head_grads(mtli_engine *e, const mtl_model *m, float *grads, const double *head_w)
{
    for (int64_t t = 0; t < m->n_tasks; t++) {
        if (head_w[t] == 1.0 || !e->active[t]) continue;
        const mtli_task *task = &m->tasks[t];
        const float w = (float)head_w[t];
        for (int64_t i = task->head_begin; i < task->head_end; i++) grads[i] *= w;
        scale_block(e->dfused + task->fused_col, e->n, task->layers[0].fan_out, m->fused_width, w);
    }
}
