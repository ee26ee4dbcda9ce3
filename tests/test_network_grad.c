/* test_network_grad.c -- gradients of the whole network against central
 * finite differences of the loss, for every activation, every loss and
 * task type, layer norm, dropout, missing labels (NaN and mask) and sample
 * weights.
 *
 * The objective is J(θ) = Σ_t w_t L_t(θ) (FIXED weighting, loss weights
 * w_t), read from mtl_trainer_compute_gradients' per-task losses (double);
 * θ is perturbed through mtl_model_set_params.  The library computes in
 * float, so J carries rounding noise η ≈ 1e-6·(1 + |J|) (logits are sums of
 * a few dozen float products: ~10 ulp of 6e-8).  A fourth-order central
 * difference (8(J(h) - J(-h)) - (J(2h) - J(-2h))) / 12h has truncation
 * error O(h⁴) (negligible at h = 2^-7) and noise error ≤ 3η/(2h) ≈ 2e-4·(1 +
 * |J|) for h = 2^-8; we allow 4e-4·(1 + |J|) + 1e-2·|g|.
 * Piecewise-linear functions (ReLU, leaky ReLU, MAE) have kinks where a
 * finite difference is meaningless; a parameter whose differences at h and
 * h/2 disagree is skipped as "at a kink", and at most a quarter of the
 * parameters may be (none for smooth configurations but a few leeway). */
#include "test_network_common.h"

typedef struct gc_config {
    mtl_activation act;
    mtl_loss reg_loss;
    int labels; /* 0: all observed; 1: NaN + mask + sample weights (one weight 0) */
    float dropout;
    int norm;
} gc_config;

enum { GC_IN = 4, GC_N = 7, GC_TW = 6 };
static const double gc_weights[4] = { 0.7, 1.3, 0.5, 1.0 };

static mtl_model *gc_build(const gc_config *c, mtl_context *ctx)
{
    mtl_model *m = NULL;
    unsigned ln = c->norm ? MTL_LAYER_NORM : 0;
    int64_t t;
    if (mtl_model_create(&m, ctx, GC_IN) != MTL_OK) return NULL;
    mtl_status s = MTL_OK;
    s |= mtl_model_add_trunk_layer(m, 5, c->act, c->dropout, 0);
    s |= mtl_model_add_trunk_layer(m, 4, c->act, 0.0f, ln);
    s |= mtl_model_add_task(m, "reg", MTL_TASK_REGRESSION, 2, &t);
    s |= mtl_model_add_head_layer(m, t, 3, c->act, c->dropout, 0);
    s |= mtl_model_set_task_i64(m, t, MTL_TASK_OPT_LOSS, c->reg_loss);
    s |= mtl_model_set_task_f64(m, t, MTL_TASK_OPT_HUBER_DELTA, 0.3);
    s |= mtl_model_add_task(m, "bin", MTL_TASK_BINARY, 1, &t);
    s |= mtl_model_add_task(m, "mc", MTL_TASK_MULTICLASS, 3, &t);
    s |= mtl_model_add_head_layer(m, t, 4, c->act, 0.0f, ln);
    s |= mtl_model_add_head_layer(m, t, 3, c->act, c->dropout, ln);
    s |= mtl_model_add_task(m, "bin2", MTL_TASK_BINARY, 2, &t);
    s |= mtl_model_add_head_layer(m, t, 1, c->act, 0.0f, 0); /* a 1-unit hidden layer: gemv paths */
    for (int64_t k = 0; k < 4; k++) s |= mtl_model_set_task_f64(m, k, MTL_TASK_OPT_LOSS_WEIGHT, gc_weights[k]);
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

typedef struct gc_data {
    float x[GC_N * GC_IN];
    float y[GC_N * GC_TW];
    uint8_t mask[GC_N * GC_TW];
    float w[GC_N];
    int labels;
} gc_data;

static double gc_objective(mtl_trainer *tr, const gc_data *d)
{
    double L[4];
    if (mtl_trainer_compute_gradients(tr, GC_N, d->x, GC_IN, d->y, GC_TW, d->labels ? d->mask : NULL, GC_TW,
                                      d->labels ? d->w : NULL, L) != MTL_OK)
        return NAN;
    return gc_weights[0] * L[0] + gc_weights[1] * L[1] + gc_weights[2] * L[2] + gc_weights[3] * L[3];
}

/* Derivative estimates along parameter i with step h: [0] fourth-order
 * central, [1] second-order forward, [2] second-order backward.  Near a
 * kink one of the one-sided ones stays exact (J is piecewise smooth). */
static void gc_fd(mtl_model *m, mtl_trainer *tr, const gc_data *d, float *p, int64_t np, int64_t i, double h,
                  double J0, double out[3])
{
    const float p0 = p[i];
    double J[4];
    const double steps[4] = { h, -h, 2 * h, -2 * h };
    for (int k = 0; k < 4; k++) {
        p[i] = (float)(p0 + steps[k]);
        mtl_model_set_params(m, p, np);
        J[k] = gc_objective(tr, d);
    }
    p[i] = p0;
    mtl_model_set_params(m, p, np);
    out[0] = (8.0 * (J[0] - J[1]) - (J[2] - J[3])) / (12.0 * h);
    out[1] = (-3.0 * J0 + 4.0 * J[0] - J[2]) / (2.0 * h);
    out[2] = (3.0 * J0 - 4.0 * J[1] + J[3]) / (2.0 * h);
}

static const char *gc_block_of(const mtl_model *m, int64_t i)
{
    const char *best = "?";
    for (int64_t b = 0; b < mtl_model_param_block_count(m); b++) {
        const char *name;
        int64_t off, r, c, ld;
        mtl_model_param_block(m, b, &name, &off, &r, &c, &ld);
        if (off <= i && i < off + r * c) best = name;
    }
    return best;
}

/* Returns 0 if every non-kink parameter agrees. */
static int gc_run(const gc_config *c, uint64_t seed)
{
    mtl_context *ctx = tn_context(11, 1);
    mtl_model *m = gc_build(c, ctx);
    mtl_trainer *tr = NULL;
    ASSERT(m);
    ASSERT_OK(mtl_trainer_create(&tr, m, GC_N));
    gc_data d;
    memset(&d, 0, sizeof d);
    uint64_t rng = seed;
    tn_inputs(GC_N, GC_IN, d.x, GC_IN, &rng);
    tn_targets(m, GC_N, d.y, GC_TW, &rng, c->labels);
    d.labels = c->labels;
    for (int i = 0; i < GC_N * GC_TW; i++) d.mask[i] = tn_uniform(&rng) < 0.1 ? 0 : 1;
    for (int i = 0; i < GC_N; i++) d.w[i] = (float)(0.2 + 1.8 * tn_uniform(&rng));
    d.w[2] = 0.0f;
    /* Make sure the multiclass and 'bin' tasks keep labels when masked. */
    d.y[0 * GC_TW + 3] = 2.0f;
    d.mask[0 * GC_TW + 3] = 1;
    d.y[1 * GC_TW + 2] = 1.0f;
    d.mask[1 * GC_TW + 2] = 1;

    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p), *g = malloc((size_t)np * sizeof *g);
    ASSERT(p && g);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    /* Biases start at exactly 0: a ReLU unit whose inputs are all 0 in a row
     * would sit exactly on its kink (and a normalised row of equal values
     * on layer norm's singular point), where no finite difference means
     * anything.  Jitter every parameter so no value sits on a kink. */
    for (int64_t i = 0; i < np; i++) p[i] += (float)(0.1 * tn_normal(&rng));
    ASSERT_OK(mtl_model_set_params(m, p, np));
    double J0 = gc_objective(tr, &d);
    ASSERT(isfinite(J0));
    ASSERT_OK(mtl_trainer_get_gradients(tr, g, np));

    const double h = 1.0 / 128.0;
    const double atol = 4e-4 * (1.0 + fabs(J0));
    int64_t kinks = 0, bad = 0;
    for (int64_t i = 0; i < np; i++) {
        /* A kink (ReLU, MAE) within 2h of θ makes the central difference
         * meaningless; the one-sided difference on the kink-free side stays
         * exact.  Accept the central estimate at h/2 or either one-sided one;
         * if none matches and the estimates at h and h/2 disagree, θ sits
         * among kinks: skip the parameter (counted). */
        double e1[3], e2[3];
        gc_fd(m, tr, &d, p, np, i, h, J0, e1);
        gc_fd(m, tr, &d, p, np, i, h / 2, J0, e2);
        const double tol_c = atol + 1e-2 * fabs(e2[0]), tol_s = 3 * atol + 1e-2 * fabs(e2[0]);
        if (fabs(g[i] - e2[0]) <= tol_c || fabs(g[i] - e2[1]) <= tol_s || fabs(g[i] - e2[2]) <= tol_s) continue;
        if (fabs(e1[0] - e2[0]) > tol_c) {
            kinks++;
            continue;
        }
        if (bad < 5)
            fprintf(stderr, "  act %d loss %d labels %d dropout %.1f norm %d: param %lld (%s): grad %.7g, fd %.7g\n",
                    (int)c->act, (int)c->reg_loss, c->labels, (double)c->dropout, c->norm, (long long)i,
                    gc_block_of(m, i), (double)g[i], e2[0]);
        bad++;
    }
    const bool piecewise = c->act == MTL_ACT_RELU || c->act == MTL_ACT_LEAKY_RELU || c->reg_loss == MTL_LOSS_MAE;
    if (kinks > (piecewise ? np / 4 : np / 50))
        fprintf(stderr, "  act %d loss %d: %lld of %lld parameters at kinks\n", (int)c->act, (int)c->reg_loss,
                (long long)kinks, (long long)np);
    int ok = bad == 0 && kinks <= (piecewise ? np / 4 : np / 50);
    free(p);
    free(g);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    ASSERT(ok);
    return 0;
}

TEST(every_activation)
{
    for (int act = MTL_ACT_IDENTITY; act <= MTL_ACT_SOFTPLUS; act++) {
        gc_config c = { (mtl_activation)act, MTL_LOSS_MSE, 0, 0.0f, 0 };
        if (gc_run(&c, 1000 + (uint64_t)act)) return 1;
    }
    return 0;
}

TEST(every_activation_with_layer_norm)
{
    for (int act = MTL_ACT_IDENTITY; act <= MTL_ACT_SOFTPLUS; act++) {
        gc_config c = { (mtl_activation)act, MTL_LOSS_MSE, 0, 0.0f, 1 };
        if (gc_run(&c, 2000 + (uint64_t)act)) return 1;
    }
    return 0;
}

TEST(regression_losses)
{
    const mtl_loss losses[3] = { MTL_LOSS_MSE, MTL_LOSS_MAE, MTL_LOSS_HUBER };
    for (int k = 0; k < 3; k++) {
        gc_config c = { MTL_ACT_TANH, losses[k], 0, 0.0f, 0 };
        if (gc_run(&c, 3000 + (uint64_t)k)) return 1;
    }
    return 0;
}

TEST(missing_labels_mask_and_weights)
{
    const mtl_loss losses[3] = { MTL_LOSS_MSE, MTL_LOSS_MAE, MTL_LOSS_HUBER };
    for (int k = 0; k < 3; k++) {
        gc_config c = { MTL_ACT_GELU, losses[k], 1, 0.0f, 1 };
        if (gc_run(&c, 4000 + (uint64_t)k)) return 1;
    }
    gc_config r = { MTL_ACT_RELU, MTL_LOSS_MSE, 1, 0.0f, 0 };
    return gc_run(&r, 4100);
}

/* Masks are fixed between steps, so the loss is a smooth function of θ
 * and the gradient through dropout must match too. */
TEST(dropout)
{
    gc_config c = { MTL_ACT_SIGMOID, MTL_LOSS_MSE, 1, 0.3f, 1 };
    if (gc_run(&c, 5000)) return 1;
    gc_config r = { MTL_ACT_RELU, MTL_LOSS_HUBER, 0, 0.3f, 0 };
    return gc_run(&r, 5001);
}

TEST_MAIN(TEST_ENTRY(every_activation), TEST_ENTRY(every_activation_with_layer_norm), TEST_ENTRY(regression_losses),
          TEST_ENTRY(missing_labels_mask_and_weights), TEST_ENTRY(dropout))
