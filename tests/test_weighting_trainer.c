/* test_weighting_trainer.c -- the loss-weighting stage inside the trainer,
 * against independent truths:
 *  - the Gram matrix of the per-task representation gradients against
 *    central finite differences of each task's loss in z;
 *  - linearity: the step's gradient equals sum_t rep_t (trunk gradient of
 *    task t alone) on the trunk and head_t (head gradient of task t alone)
 *    on each head, the single-task gradients taken with one-hot weights;
 *  - the lookahead affinity against its first-order Taylor expansion;
 *  - epoch diagnostics equal to the mean of the step diagnostics of a fit;
 *  - checkpoint resume with learned weighting state is bitwise exact. */
#include "engine.h"
#include "harness.h"
#include "mtl_internal.h"

#include <stdlib.h>

enum { NIN = 4, NROW = 8 };

/* trunk 4 -> 6 tanh; a: regression 1 (hidden 4 tanh); b: regression 2;
 * c: binary 1 (hidden 3 sigmoid).  Smooth everywhere (finite differences). */
static mtl_model *make_model(uint64_t seed)
{
    mtl_context *ctx = NULL;
    mtl_model *m = NULL;
    int64_t t;
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return NULL;
    mtl_status s = mtl_context_set_i64(ctx, MTL_OPT_SEED, (int64_t)seed);
    s |= mtl_model_create(&m, ctx, NIN);
    mtl_context_destroy(ctx);
    if (s != MTL_OK) return NULL;
    s |= mtl_model_add_trunk_layer(m, 6, MTL_ACT_TANH, 0.0f, 0);
    s |= mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t);
    s |= mtl_model_add_head_layer(m, t, 4, MTL_ACT_TANH, 0.0f, 0);
    s |= mtl_model_add_task(m, "b", MTL_TASK_REGRESSION, 2, &t);
    s |= mtl_model_add_task(m, "c", MTL_TASK_BINARY, 1, &t);
    s |= mtl_model_add_head_layer(m, t, 3, MTL_ACT_SIGMOID, 0.0f, 0);
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Targets a (1), b (2), c (1): related but not identical functions of x. */
static void make_data(int64_t n, float *x, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < NIN; j++) x[i * NIN + j] = (float)sin(0.7 * (double)i + 1.3 * j);
        const float *r = x + i * NIN;
        y[i * 4 + 0] = r[0] + 0.5f * r[1];
        y[i * 4 + 1] = r[0] - r[2];
        y[i * 4 + 2] = -r[0] + 0.3f * r[3];
        y[i * 4 + 3] = r[1] + r[3] > 0 ? 1.0f : 0.0f;
    }
}

/* Is parameter i in task t's head (its two spans)? */
static int head_of(const mtl_model *m, int64_t i)
{
    for (int64_t t = 0; t < m->n_tasks; t++) {
        int64_t sp[2][2];
        mtli_task_param_spans(m, t, sp);
        if ((i >= sp[0][0] && i < sp[0][1]) || (i >= sp[1][0] && i < sp[1][1])) return (int)t;
    }
    return -1;
}

TEST(gram_matches_finite_differences_in_z)
{
    mtl_model *m = make_model(3);
    ASSERT(m);
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, NROW));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_WEIGHTING, MTL_WEIGHTING_MGDA));
    double L[3];
    ASSERT_OK(mtl_trainer_compute_gradients(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, L));
    /* dL_t/dz by central differences, re-running the heads on a perturbed z. */
    mtli_engine *e = tr->engine;
    const int64_t E = m->embed_width, T = 3;
    float z[NROW * 6], zp[NROW * 6];
    double fd[3][NROW * 6], lp[3], lm[3];
    ASSERT(E == 6);
    for (int64_t r = 0; r < NROW; r++)
        for (int64_t c = 0; c < E; c++) z[r * E + c] = e->z[r * e->ldz + c];
    const float h = 1e-2f;
    for (int64_t k = 0; k < NROW * E; k++) {
        const float up = z[k] + h, down = z[k] - h; /* the steps actually taken, in float */
        memcpy(zp, z, sizeof z);
        zp[k] = up;
        ASSERT_OK(mtli_forward_heads(m, &tr->blas, &e->plan, NROW, zp, E, false, 0, 0));
        mtli_engine_losses(e, m, e->ys, m->target_width, NULL, 0, NULL, lp, NULL);
        zp[k] = down;
        ASSERT_OK(mtli_forward_heads(m, &tr->blas, &e->plan, NROW, zp, E, false, 0, 0));
        mtli_engine_losses(e, m, e->ys, m->target_width, NULL, 0, NULL, lm, NULL);
        for (int t = 0; t < T; t++) fd[t][k] = (lp[t] - lm[t]) / ((double)up - (double)down);
    }
    double scale = 0;
    for (int t = 0; t < T; t++) scale = fmax(scale, tr->step_gram[t * T + t]);
    ASSERT(scale > 0);
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            double g = 0;
            for (int64_t k = 0; k < NROW * E; k++) g += fd[i][k] * fd[j][k];
            ASSERT_NEAR(tr->step_gram[i * T + j], g, 0, 2e-3 * scale);
        }
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(step_gradient_is_the_weighted_sum_of_task_gradients)
{
    mtl_model *m = make_model(5);
    ASSERT(m);
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    /* Make a conflict: task b's second target opposes task a. */
    for (int i = 0; i < NROW; i++) y[i * 4 + 2] = -3.0f * y[i * 4 + 0];
    const int64_t np = m->n_params, T = 3;
    float *single = malloc((size_t)(T * np) * sizeof *single), *g = malloc((size_t)np * sizeof *g);
    ASSERT(single && g);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, NROW));
    /* Each task alone: FIXED with one-hot loss weights. */
    for (int t = 0; t < T; t++) {
        for (int u = 0; u < T; u++) ASSERT_OK(mtl_model_set_task_f64(m, u, MTL_TASK_OPT_LOSS_WEIGHT, u == t));
        ASSERT_OK(mtl_trainer_compute_gradients(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
        ASSERT_OK(mtl_trainer_get_gradients(tr, single + t * np, np));
    }
    for (int u = 0; u < T; u++) ASSERT_OK(mtl_model_set_task_f64(m, u, MTL_TASK_OPT_LOSS_WEIGHT, 1.0));
    for (int method = MTL_WEIGHTING_FIXED; method <= MTL_WEIGHTING_UPGRAD; method++) {
        ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_WEIGHTING, method));
        ASSERT_OK(mtl_trainer_compute_gradients(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
        ASSERT_OK(mtl_trainer_get_gradients(tr, g, np));
        const double *rep = tr->rep_weights, *head = tr->head_weights;
        double gmax = 0;
        for (int64_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g[i]));
        for (int64_t i = 0; i < np; i++) {
            int owner = head_of(m, i);
            double expect = 0;
            if (owner < 0)
                for (int t = 0; t < T; t++) expect += rep[t] * single[t * np + i];
            else
                expect = head[owner] * single[owner * np + i];
            if (!(fabs(g[i] - expect) <= 1e-5 * gmax))
                FAILF("method %d, parameter %lld (%s): %g, expected %g", method, (long long)i,
                      owner < 0 ? "trunk" : "head", g[i], expect);
        }
        if (method == MTL_WEIGHTING_UPGRAD) /* the paper's guarantee, on the step's Gram */
            for (int i = 0; i < T; i++) {
                double ip = 0;
                for (int j = 0; j < T; j++) ip += tr->step_gram[i * T + j] * rep[j];
                ASSERT(ip >= -1e-9 * tr->step_gram[i * T + i]);
            }
    }
    ASSERT(mtli_diag_conflicts(T, tr->step_gram) >= 1); /* the case does conflict */
    free(single);
    free(g);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(affinity_matches_first_order_lookahead)
{
    mtl_model *m = make_model(7);
    ASSERT(m);
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, NROW));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 2e-3));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_AFFINITY, 1));
    double L[3], aff[9], cos[9], norms[3];
    ASSERT_OK(mtl_trainer_step(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, L));
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_AFFINITY, MTL_SCOPE_STEP, aff, 9));
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, cos, 9));
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_NORMS, MTL_SCOPE_STEP, norms, 3));
    /* L_j(z - eta n g_i) ~ L_j - eta n <g_i, g_j>:  Z_ij ~ eta n G_ij / L_j. */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double first = 2e-3 * NROW * cos[i * 3 + j] * norms[i] * norms[j] / L[j];
            ASSERT_NEAR(aff[i * 3 + j], first, 0.05, 2e-4 * fabs(aff[i * 3 + i]) + 1e-7);
        }
    ASSERT(aff[0] > 0 && aff[4] > 0 && aff[8] > 0); /* a task's own step helps it */
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* ---- a fit: epoch means of the step diagnostics -------------------------- */

typedef struct fit_log {
    double cos_sum[9], conflict_sum, weight_sum[3];
    int steps, checked_epochs, failures;
} fit_log;

static int on_progress(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    fit_log *log = user;
    double cos[9], c, w[3];
    (void)epoch;
    if (step >= 0) {
        if (mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, cos, 9) != MTL_OK ||
            mtl_trainer_diagnostic(tr, MTL_DIAG_CONFLICTS, MTL_SCOPE_STEP, &c, 1) != MTL_OK ||
            mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, w, 3) != MTL_OK) {
            log->failures++;
            return 1;
        }
        for (int k = 0; k < 9; k++) log->cos_sum[k] += cos[k];
        for (int k = 0; k < 3; k++) log->weight_sum[k] += w[k];
        log->conflict_sum += c;
        log->steps++;
        return 0;
    }
    if (mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_EPOCH, cos, 9) != MTL_OK ||
        mtl_trainer_diagnostic(tr, MTL_DIAG_CONFLICTS, MTL_SCOPE_EPOCH, &c, 1) != MTL_OK ||
        mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, w, 3) != MTL_OK || log->steps == 0) {
        log->failures++;
        return 1;
    }
    for (int k = 0; k < 9; k++)
        if (fabs(cos[k] - log->cos_sum[k] / log->steps) > 1e-12) log->failures++;
    for (int k = 0; k < 3; k++)
        if (fabs(w[k] - log->weight_sum[k] / log->steps) > 1e-12) log->failures++;
    if (fabs(c - log->conflict_sum / log->steps) > 1e-12) log->failures++;
    memset(log, 0, offsetof(fit_log, checked_epochs));
    log->checked_epochs++;
    return 0;
}

TEST(epoch_diagnostics_are_means_over_the_fit_steps)
{
    mtl_model *m = make_model(11);
    ASSERT(m);
    enum { N = 40 };
    float x[N * NIN], y[N * 4];
    make_data(N, x, y);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, N, NIN, 4, x, NIN, y, 4, NULL, 0, NULL, 0));
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 8));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_BATCH_SIZE, 8));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_EPOCHS, 3));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_CALLBACK_EVERY_STEPS, 1));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_WEIGHTING, MTL_WEIGHTING_DWA));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_DIAGNOSTICS, 1));
    fit_log log;
    memset(&log, 0, sizeof log);
    ASSERT_OK(mtl_trainer_fit(tr, ds, NULL, on_progress, &log));
    ASSERT_EQ_INT(log.failures, 0);
    ASSERT_EQ_INT(log.checked_epochs, 3);
    /* DWA: epochs 1 and 2 have equal weights, epoch 3 the softmax of loss ratios. */
    double w[3];
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, w, 3));
    ASSERT_NEAR(w[0] + w[1] + w[2], 3.0, 1e-12, 0);
    ASSERT(w[0] != 1.0);
    mtl_trainer_destroy(tr);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    return 0;
}

/* ---- checkpoints ----------------------------------------------------------- */

static int resume_is_exact(mtl_weighting method)
{
    enum { N = 32 };
    float x[N * NIN], y[N * 4];
    make_data(N, x, y);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, N, NIN, 4, x, NIN, y, 4, NULL, 0, NULL, 0));
    mtl_model *m = make_model(13), *m2 = NULL;
    ASSERT(m);
    mtl_trainer *tr = NULL, *tr2 = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 8));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_BATCH_SIZE, 8));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_WEIGHTING, method));
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_WEIGHTING_LR, 0.2)); /* learned state moves a lot */
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_EPOCHS, 3));
    ASSERT_OK(mtl_trainer_fit(tr, ds, NULL, NULL, NULL));
    size_t size = 0;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(tr, NULL, 0, &size)); /* size query */
    void *buf = malloc(size);
    ASSERT(buf);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(tr, buf, size, &size));
    ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&tr2, &m2, NULL, buf, size));
    free(buf);
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_EPOCHS, 6));
    ASSERT_OK(mtl_trainer_set_i64(tr2, MTL_OPT_EPOCHS, 6));
    ASSERT_OK(mtl_trainer_fit(tr, ds, NULL, NULL, NULL));
    ASSERT_OK(mtl_trainer_fit(tr2, ds, NULL, NULL, NULL));
    ASSERT_EQ_INT(m->n_params, m2->n_params);
    ASSERT(memcmp(m->params, m2->params, (size_t)m->n_params * sizeof(float)) == 0);
    mtl_trainer_destroy(tr2);
    mtl_model_destroy(m2);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(checkpoint_resume_keeps_learned_weighting_state)
{
    const mtl_weighting methods[] = { MTL_WEIGHTING_UNCERTAINTY, MTL_WEIGHTING_GRADNORM,
                                      MTL_WEIGHTING_DWA, MTL_WEIGHTING_PCGRAD };
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (resume_is_exact(methods[k])) FAILF("method %d", (int)methods[k]);
    return 0;
}

TEST(same_seed_same_training)
{
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    const mtl_weighting methods[] = { MTL_WEIGHTING_FIXED, MTL_WEIGHTING_UNCERTAINTY, MTL_WEIGHTING_RLW,
                                      MTL_WEIGHTING_PCGRAD, MTL_WEIGHTING_CAGRAD };
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        mtl_model *a = make_model(17), *b = make_model(17);
        ASSERT(a && b);
        mtl_trainer *ta = NULL, *tb = NULL;
        ASSERT_OK(mtl_trainer_create(&ta, a, NROW));
        ASSERT_OK(mtl_trainer_create(&tb, b, NROW));
        ASSERT_OK(mtl_trainer_set_i64(ta, MTL_OPT_WEIGHTING, methods[k]));
        ASSERT_OK(mtl_trainer_set_i64(tb, MTL_OPT_WEIGHTING, methods[k]));
        ASSERT_OK(mtl_trainer_set_i64(tb, MTL_OPT_DIAGNOSTICS, 1)); /* observing changes nothing, */
        ASSERT_OK(mtl_trainer_set_i64(tb, MTL_OPT_AFFINITY, 1));    /* not even a bit */
        for (int s = 0; s < 20; s++) {
            ASSERT_OK(mtl_trainer_step(ta, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
            ASSERT_OK(mtl_trainer_step(tb, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
        }
        ASSERT(memcmp(a->params, b->params, (size_t)a->n_params * sizeof(float)) == 0);
        mtl_trainer_destroy(ta);
        mtl_trainer_destroy(tb);
        mtl_model_destroy(a);
        mtl_model_destroy(b);
    }
    return 0;
}

TEST(diagnostics_need_their_options)
{
    mtl_model *m = make_model(19);
    ASSERT(m);
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, NROW));
    double v[9];
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, v, 3));
    ASSERT_OK(mtl_trainer_step(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, v, 3));
    ASSERT_NEAR(v[0], 1.0, 0, 0); /* FIXED: the loss weights */
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, v, 9));
    ASSERT_MSG_HAS("MTL_OPT_DIAGNOSTICS");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, v, 3));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_WEIGHTING, MTL_WEIGHTING_IMTL_G)); /* computes the Gram */
    ASSERT_OK(mtl_trainer_step(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, v, 9));
    ASSERT_NEAR(v[0], 1.0, 1e-12, 0);
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_diagnostic(tr, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, v, 8));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_AFFINITY, MTL_SCOPE_STEP, v, 9));
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* A step that fails (non-finite gradient) changes nothing: not the learned
 * weighting state, not the diagnostics, not a byte of the checkpoint; a
 * retry after repairing the parameters matches a fresh trainer (regression:
 * the learned state used to move before the finiteness check). */
static int save_checkpoint(const mtl_trainer *tr, uint8_t **buf, size_t *size)
{
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(tr, NULL, 0, size));
    *buf = malloc(*size);
    ASSERT(*buf);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(tr, *buf, *size, size));
    return 0;
}

static int failed_step_changes_nothing(mtl_weighting method)
{
    float x[NROW * NIN], y[NROW * 4];
    make_data(NROW, x, y);
    mtl_model *m = make_model(23), *fresh = make_model(23);
    ASSERT(m && fresh);
    mtl_trainer *tr = NULL, *tf = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, NROW));
    ASSERT_OK(mtl_trainer_create(&tf, fresh, NROW));
    mtl_trainer *both[2] = { tr, tf };
    mtl_model *models[2] = { m, fresh };
    for (int k = 0; k < 2; k++) {
        /* A large loss weight: a huge but finite loss gives a gradient
         * beyond FLT_MAX (the method's own weight alone could not). */
        ASSERT_OK(mtl_model_set_task_f64(models[k], 0, MTL_TASK_OPT_LOSS_WEIGHT, 100.0));
        ASSERT_OK(mtl_trainer_set_i64(both[k], MTL_OPT_WEIGHTING, method));
        ASSERT_OK(mtl_trainer_set_f64(both[k], MTL_OPT_WEIGHTING_LR, 0.2));
    }
    const int64_t np = m->n_params;
    float *good = malloc((size_t)np * sizeof(float)), *bad = malloc((size_t)np * sizeof(float));
    ASSERT(good && bad);
    ASSERT_OK(mtl_model_get_params(m, good, np));
    memcpy(bad, good, (size_t)np * sizeof(float));
    for (int64_t k = 0; k < 2; k++) { /* the two regression tasks' output biases */
        const mtli_task *task = &m->tasks[k];
        const mtli_layer *out = &task->layers[task->n_hidden];
        for (int64_t j = 0; j < out->fan_out; j++) bad[out->b_off + j] = 3e38f;
    }
    ASSERT_OK(mtl_model_set_params(m, bad, np));

    uint8_t *before = NULL, *after = NULL;
    size_t n_before = 0, n_after = 0;
    if (save_checkpoint(tr, &before, &n_before)) return 1;
    double v[3];
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, v, 3));
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("parameters unchanged");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, v, 3));
    if (save_checkpoint(tr, &after, &n_after)) return 1;
    ASSERT_EQ_INT((int64_t)n_after, (int64_t)n_before);
    ASSERT(memcmp(before, after, n_before) == 0);

    /* Repaired: three steps give what a fresh trainer's three steps give
     * (the learned weights of step 1 enter the gradients of steps 2, 3). */
    ASSERT_OK(mtl_model_set_params(m, good, np));
    for (int k = 0; k < 3; k++) {
        ASSERT_OK(mtl_trainer_step(tr, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
        ASSERT_OK(mtl_trainer_step(tf, NROW, x, NIN, y, 4, NULL, 0, NULL, NULL));
    }
    ASSERT(memcmp(m->params, fresh->params, (size_t)np * sizeof(float)) == 0);
    double w1[3], w2[3];
    ASSERT_OK(mtl_trainer_diagnostic(tr, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, w1, 3));
    ASSERT_OK(mtl_trainer_diagnostic(tf, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, w2, 3));
    ASSERT(memcmp(w1, w2, sizeof w1) == 0);
    free(before);
    free(after);
    free(good);
    free(bad);
    mtl_trainer_destroy(tr);
    mtl_trainer_destroy(tf);
    mtl_model_destroy(m);
    mtl_model_destroy(fresh);
    return 0;
}

TEST(failed_step_leaves_learned_state_and_diagnostics)
{
    const mtl_weighting methods[] = { MTL_WEIGHTING_UNCERTAINTY, MTL_WEIGHTING_GRADNORM };
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++)
        if (failed_step_changes_nothing(methods[k])) FAILF("method %d", (int)methods[k]);
    return 0;
}

TEST_MAIN(TEST_ENTRY(gram_matches_finite_differences_in_z),
          TEST_ENTRY(step_gradient_is_the_weighted_sum_of_task_gradients),
          TEST_ENTRY(affinity_matches_first_order_lookahead),
          TEST_ENTRY(epoch_diagnostics_are_means_over_the_fit_steps),
          TEST_ENTRY(checkpoint_resume_keeps_learned_weighting_state),
          TEST_ENTRY(same_seed_same_training),
          TEST_ENTRY(diagnostics_need_their_options),
          TEST_ENTRY(failed_step_leaves_learned_state_and_diagnostics))
