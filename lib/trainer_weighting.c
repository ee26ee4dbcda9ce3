/* trainer_weighting.c -- the loss-weighting stage of a training step: it
 * turns the per-task losses (and, for gradient-based methods or
 * diagnostics, the per-task gradients on the shared representation z) into
 * rep/head weights and runs the backward pass with them.
 *
 *   loss-only methods:  weights from the losses ─▶ dY_t *= w_t ─▶ backward
 *   Gram path:          backward through the heads (dY unscaled)
 *                       ─▶ dz_t for every task ─▶ G_ij = <dz_i, dz_j>
 *                       ─▶ weights ─▶ head gradients *= head_w
 *                       ─▶ fused weight gradient ─▶ dz = Σ rep_w dz_t ─▶ trunk
 *
 * Loss-only methods always take the first path; with diagnostics or the
 * affinity lookahead on (a real step only) the task gradients are computed
 * on the side, from the weighted dY, so observing never changes training. */
#include "engine.h"
#include "mtl_internal.h"

#include <math.h>
#include <string.h>

mtl_status mtli_trainer_weighting_init(mtl_trainer *t)
{
    const mtli_settings *s = &t->settings;
    const mtl_model *m = t->model;
    const size_t T = (size_t)t->n_tasks;
    double *lw = mtli_calloc(s, T, sizeof *lw);
    t->step_gram = mtli_calloc(s, T * T, sizeof(double));
    t->step_affinity = mtli_calloc(s, T * T, sizeof(double));
    t->lookahead_losses = mtli_calloc(s, T, sizeof(double));
    t->lookahead_labels = mtli_calloc(s, T, sizeof(bool));
    if (!lw || !t->step_gram || !t->step_affinity || !t->lookahead_losses || !t->lookahead_labels) {
        mtli_free(s, lw);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "loss weighting: scratch for %lld tasks", (long long)T);
    }
    for (size_t k = 0; k < T; k++) lw[k] = m->tasks[k].loss_weight;
    mtl_status st = mtli_weighting_create(&t->weighting, s, &t->weighting_params, t->n_tasks, lw);
    mtli_free(s, lw);
    MTLI_TRY(st);
    for (int64_t k = 0; k < t->n_tasks; k++)
        MTLI_TRY(mtli_weighting_set_classification(t->weighting, k, m->tasks[k].type != MTL_TASK_REGRESSION));
    return mtli_diag_create(t);
}

void mtli_trainer_weighting_free(mtl_trainer *t)
{
    const mtli_settings *s = &t->settings;
    mtli_weighting_destroy(t->weighting, s);
    mtli_diag_destroy(t);
    mtli_free(s, t->step_gram);
    mtli_free(s, t->step_affinity);
    mtli_free(s, t->lookahead_losses);
    mtli_free(s, t->lookahead_labels);
    mtli_free(s, t->lookahead_z);
    t->weighting = NULL;
    t->step_gram = t->step_affinity = t->lookahead_losses = NULL;
    t->lookahead_labels = NULL;
    t->lookahead_z = NULL;
}

/* Bring the weighting up to date with the trainer's options and the
 * model's loss weights (both may change between steps). */
static mtl_status mtli_weighting_sync(mtl_trainer *t)
{
    const mtl_model *m = t->model;
    MTLI_TRY(mtli_weighting_set_params(t->weighting, &t->weighting_params));
    double *lw = t->lookahead_losses; /* scratch until the lookahead */
    for (int64_t k = 0; k < t->n_tasks; k++) lw[k] = m->tasks[k].loss_weight;
    return mtli_weighting_set_loss_weights(t->weighting, lw);
}

/* The buffers the step needs: per-task representation gradients, and the
 * lookahead's representation.  Allocated once, at the first step that needs
 * them (a gradient-based method, diagnostics or affinity switched on);
 * later steps allocate nothing. */
static mtl_status mtli_weighting_buffers(mtl_trainer *t, bool task_grads, bool affinity)
{
    if (task_grads) MTLI_TRY(mtli_engine_enable_task_grads(t->engine));
    if (affinity && !t->lookahead_z) {
        const int64_t E = t->model->embed_width;
        t->lookahead_z = mtli_calloc(&t->settings, (size_t)(t->max_batch * E), sizeof(float));
        if (!t->lookahead_z)
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "affinity lookahead: %lld x %lld representation buffer",
                             (long long)t->max_batch, (long long)E);
    }
    return MTL_OK;
}

mtl_status mtli_trainer_step_buffers(mtl_trainer *t)
{
    /* Buffers first (from the options, not the weighting's own copy of the
     * method), then the sync: a failed allocation changes no state. */
    const bool affinity = t->affinity_on && t->model->n_tasks > 1;
    const bool gram = mtli_weighting_method_needs_gram(t->weighting_params.method);
    MTLI_TRY(mtli_weighting_buffers(t, gram || t->diagnostics_on || affinity, affinity));
    return mtli_weighting_sync(t);
}

/* G_ij = <dz_i, dz_j> over the batch, in double: four lanes over a fixed
 * stride, combined in a fixed order (deterministic whatever the threads). */
static double mtli_dot_f32(const float *a, const float *b, int64_t len)
{
    double acc[4] = { 0.0, 0.0, 0.0, 0.0 };
    int64_t i = 0;
    for (; i + 4 <= len; i += 4)
        for (int k = 0; k < 4; k++) acc[k] += (double)a[i + k] * (double)b[i + k];
    for (; i < len; i++) acc[i & 3] += (double)a[i] * (double)b[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* unscale: the task gradients were computed from dY_t already multiplied
 * by head_weights[t] (loss-only methods); divide that back out so the
 * diagnostics describe the tasks' own losses. */
static void mtli_step_gram(mtl_trainer *t, bool unscale)
{
    const mtli_engine *e = t->engine;
    const int64_t T = t->n_tasks, len = e->n * t->model->embed_width;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = i; j < T; j++) {
            double g = (e->active[i] && e->active[j])
                           ? mtli_dot_f32(mtli_engine_task_grad(e, i), mtli_engine_task_grad(e, j), len)
                           : 0.0;
            if (unscale && g != 0.0) g /= t->head_weights[i] * t->head_weights[j];
            t->step_gram[i * T + j] = t->step_gram[j * T + i] = g;
        }
}

/* Lookahead task affinity (Fifty et al. 2021) on the representation:
 * Z_ij = 1 - L_j(z - lr n dz_i) / L_j(z), every row moving by one step of
 * the current learning rate on its own share of task i's loss, the heads
 * re-run on the same batch with the same dropout masks.  Runs after the
 * backward pass (it reuses the head activations' buffers).  0 where task i
 * has no labels or L_j is 0 or task j has no labels. */
static mtl_status mtli_step_affinity(mtl_trainer *t, bool unscale, const uint8_t *mask, int64_t ldmask,
                                     const float *sw)
{
    mtl_model *m = t->model;
    mtli_engine *e = t->engine;
    const int64_t T = t->n_tasks, n = e->n, E = m->embed_width;
    const float eta = (float)(t->lr_now * (double)n);
    float *zp = t->lookahead_z;
    for (int64_t i = 0; i < T * T; i++) t->step_affinity[i] = 0.0;
    for (int64_t i = 0; i < T; i++) {
        if (!t->has_label[i] || (unscale && t->head_weights[i] == 0.0)) continue;
        const float *dz = mtli_engine_task_grad(e, i);
        const float step = unscale ? eta / (float)t->head_weights[i] : eta;
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < E; c++) zp[r * E + c] = e->z[r * e->ldz + c] - step * dz[r * E + c];
        MTLI_TRY(mtli_forward_heads(m, &t->blas, &e->plan, n, zp, E, e->dropout_on,
                                    (uint64_t)t->settings.seed, t->step_count));
        mtli_engine_losses(e, m, e->ys, m->target_width, mask, ldmask, sw, t->lookahead_losses,
                           t->lookahead_labels);
        for (int64_t j = 0; j < T; j++)
            if (t->has_label[j] && t->last_losses[j] > 0.0)
                t->step_affinity[i * T + j] = 1.0 - t->lookahead_losses[j] / t->last_losses[j];
    }
    return MTL_OK;
}

mtl_status mtli_trainer_weighted_backward(mtl_trainer *t, bool step, const uint8_t *mask,
                                          int64_t ldmask, const float *sw)
{
    mtl_model *m = t->model;
    mtli_engine *e = t->engine;
    MTLI_TRY(mtli_weighting_sync(t));
    const bool method_gram = mtli_weighting_needs_gram(t->weighting);
    const bool affinity = step && t->affinity_on && m->n_tasks > 1;
    const bool observe = step && (t->diagnostics_on || affinity);
    MTLI_TRY(mtli_weighting_buffers(t, method_gram || observe, affinity));
    /* Only a peek: the learned weights move and the diagnostics are recorded
     * in mtli_trainer_weighting_commit, once the step is known to succeed. */
    if (method_gram) {
        MTLI_TRY(mtli_engine_backward_heads(e, m, &t->blas, t->grads));
        MTLI_TRY(mtli_engine_task_rep_grads(e, m, &t->blas));
        mtli_step_gram(t, false);
        MTLI_TRY(mtli_weighting_peek(t->weighting, t->step_count, t->last_losses, t->step_gram, t->has_label,
                                     t->rep_weights, t->head_weights));
        mtli_engine_scale_head_grads(e, m, t->grads, t->head_weights);
        MTLI_TRY(mtli_engine_backward_fused(e, m, &t->blas, t->grads));
        MTLI_TRY(mtli_engine_backward_trunk(e, m, &t->blas, t->grads, t->rep_weights));
    } else {
        /* Loss-only methods weight dY (head = rep) and run the ordinary
         * backward; observing them only adds the task gradients on the side,
         * so diagnostics never change a bit of the training. */
        MTLI_TRY(mtli_weighting_peek(t->weighting, t->step_count, t->last_losses, NULL, t->has_label,
                                     t->rep_weights, t->head_weights));
        mtli_engine_scale_dy(e, m, t->head_weights);
        MTLI_TRY(mtli_engine_backward_heads(e, m, &t->blas, t->grads));
        if (observe) {
            MTLI_TRY(mtli_engine_task_rep_grads(e, m, &t->blas));
            mtli_step_gram(t, true);
        }
        MTLI_TRY(mtli_engine_backward_fused(e, m, &t->blas, t->grads));
        MTLI_TRY(mtli_engine_backward_trunk(e, m, &t->blas, t->grads, NULL));
    }
    if (affinity) MTLI_TRY(mtli_step_affinity(t, !method_gram, mask, ldmask, sw)); /* scratch only */
    return MTL_OK;
}

mtl_status mtli_trainer_weighting_commit(mtl_trainer *t)
{
    const bool method_gram = mtli_weighting_needs_gram(t->weighting);
    const bool affinity = t->affinity_on && t->model->n_tasks > 1;
    const bool observe = t->diagnostics_on || affinity;
    MTLI_TRY(mtli_weighting_commit(t->weighting, t->last_losses, t->step_gram, t->has_label));
    mtli_diag_record_step(t, t->rep_weights, method_gram || observe ? t->step_gram : NULL,
                          affinity ? t->step_affinity : NULL);
    return MTL_OK;
}
