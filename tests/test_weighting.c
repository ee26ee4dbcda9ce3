/* test_weighting.c -- loss weighting, gradient surgery and diagnostics on
 * internals, each against an independent truth: closed forms worked by hand,
 * explicit vector-space computations, brute force over a fine grid. */
#include "harness.h"
#include "mtl_internal.h"
#include "weighting.h"

#include <stdint.h>
#include <stdlib.h>

#define MAXT 8
#define MAXD 8

static mtli_weighting_params params(mtl_weighting method)
{
    mtli_weighting_params p = { method, 2.0, 1.5, 0.4, 0.025, 42 };
    return p;
}

/* G = V V^T for t vectors of dimension d (row-major t x d). */
static void gram_of(int t, int d, const double *v, double *g)
{
    for (int i = 0; i < t; i++)
        for (int j = 0; j < t; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += v[i * d + k] * v[j * d + k];
            g[i * t + j] = s;
        }
}

/* out = sum_t coef[t] v_t */
static void combine(int t, int d, const double *v, const double *coef, double *out)
{
    for (int k = 0; k < d; k++) {
        out[k] = 0;
        for (int i = 0; i < t; i++) out[k] += coef[i] * v[i * d + k];
    }
}

static double dotd(int d, const double *a, const double *b)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += a[k] * b[k];
    return s;
}

/* One step of `method` on vectors v (t x d) with all labels present. */
static int run_method(mtli_weighting_params p, int t, int d, const double *v, const double *losses,
                      double *rep, double *head)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting *w = NULL;
    double g[MAXT * MAXT], ones[MAXT];
    bool lab[MAXT];
    for (int i = 0; i < t; i++) {
        lab[i] = true;
        ones[i] = 1.0;
    }
    gram_of(t, d, v, g);
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, t, NULL));
    mtl_status st = mtli_weighting_step(w, 0, losses ? losses : ones, g, lab, rep, head);
    mtli_weighting_destroy(w, &s);
    ASSERT_OK(st);
    return 0;
}

static const mtl_weighting surgery_methods[] = { MTL_WEIGHTING_PCGRAD, MTL_WEIGHTING_MGDA,
                                                 MTL_WEIGHTING_CAGRAD, MTL_WEIGHTING_IMTL_G,
                                                 MTL_WEIGHTING_UPGRAD };
#define N_SURGERY 5

/* ---- hand-worked cases ----------------------------------------------------- */

TEST(orthogonal_equal_norms_give_equal_weights)
{
    /* By symmetry every gradient method weights two orthogonal gradients of
     * equal norm equally; on the equal-weighting scale that is 1 each. */
    const double v[] = { 3, 0, 0, 0, 3, 0 };
    for (int k = 0; k < N_SURGERY; k++) {
        double rep[2], head[2];
        mtli_weighting_params p = params(surgery_methods[k]);
        if (run_method(p, 2, 3, v, NULL, rep, head)) return 1;
        /* CAGrad: w = (1/2, 1/2) by symmetry, so g_w = g0, lambda = c and
         * coef = T (1/T + c/T) / (1 + c^2) = (1 + c) / (1 + c^2). */
        double expect = surgery_methods[k] == MTL_WEIGHTING_CAGRAD
                            ? (1 + p.cagrad_c) / (1 + p.cagrad_c * p.cagrad_c) : 1.0;
        ASSERT_NEAR(rep[0], expect, 1e-9, 1e-12);
        ASSERT_NEAR(rep[1], expect, 1e-9, 1e-12);
        ASSERT_NEAR(head[0], 1.0, 0, 0); /* heads keep their own loss */
        ASSERT_NEAR(head[1], 1.0, 0, 0);
    }
    return 0;
}

TEST(mgda_orthogonal_unequal_norms)
{
    /* min |a (2,0) + (1-a)(0,1)|^2 = 4a^2 + (1-a)^2  =>  a = 1/5. */
    const double v[] = { 2, 0, 0, 1 };
    double rep[2], head[2];
    if (run_method(params(MTL_WEIGHTING_MGDA), 2, 2, v, NULL, rep, head)) return 1;
    ASSERT_NEAR(rep[0], 2 * 0.2, 1e-12, 1e-15);
    ASSERT_NEAR(rep[1], 2 * 0.8, 1e-12, 1e-15);
    return 0;
}

TEST(pcgrad_leaves_orthogonal_gradients_unchanged)
{
    const double v[] = { 2, 0, 0, 0, 1, 0, 0, 0, 5 };
    for (int64_t step = 0; step < 5; step++) {
        mtli_weighting_params p = params(MTL_WEIGHTING_PCGRAD);
        p.seed = 100 + (uint64_t)step;
        double rep[3], head[3];
        if (run_method(p, 3, 3, v, NULL, rep, head)) return 1;
        for (int i = 0; i < 3; i++) ASSERT_NEAR(rep[i], 1.0, 0, 0);
    }
    return 0;
}

TEST(pcgrad_opposed_pair_closed_form)
{
    /* g1 = (1,0), g2 = (-2,1): <g1,g2> = -2.
     * g1' = g1 - (-2/5) g2 = (0.2, 0.4);  g2' = g2 - (-2/1) g1 = (0, 1). */
    const double v[] = { 1, 0, -2, 1 };
    double rep[2], head[2], sum[2];
    if (run_method(params(MTL_WEIGHTING_PCGRAD), 2, 2, v, NULL, rep, head)) return 1;
    combine(2, 2, v, rep, sum);
    ASSERT_NEAR(sum[0], 0.2, 1e-12, 1e-14);
    ASSERT_NEAR(sum[1], 1.4, 1e-12, 1e-14);
    ASSERT_NEAR(rep[0], 3.0, 1e-12, 0); /* 1 - G12/G11 */
    ASSERT_NEAR(rep[1], 1.4, 1e-12, 0); /* 1 - G12/G22 */
    return 0;
}

/* PCGrad in vector space for one choice of projection orders: task i
 * projects against the other two in order (first, second) or reversed. */
static void pcgrad_reference(const double *v, int d, unsigned orders, double *out)
{
    for (int k = 0; k < d; k++) out[k] = 0;
    for (int i = 0; i < 3; i++) {
        int others[2], n = 0;
        for (int j = 0; j < 3; j++)
            if (j != i) others[n++] = j;
        if (orders & (1u << i)) {
            int tmp = others[0];
            others[0] = others[1];
            others[1] = tmp;
        }
        double gi[MAXD];
        memcpy(gi, v + i * d, (size_t)d * sizeof *gi);
        for (int q = 0; q < 2; q++) {
            const double *gj = v + others[q] * d;
            double dp = dotd(d, gi, gj);
            if (dp < 0)
                for (int k = 0; k < d; k++) gi[k] -= dp / dotd(d, gj, gj) * gj[k];
        }
        for (int k = 0; k < d; k++) out[k] += gi[k];
    }
}

TEST(pcgrad_three_tasks_matches_a_random_order)
{
    const double v[] = { 1, 0.2, 0, -0.8, 1, 0.3, -0.5, -0.9, 1 };
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_PCGRAD);
    mtli_weighting *w = NULL;
    double g[9], losses[3] = { 1, 1, 1 };
    bool lab[3] = { true, true, true };
    gram_of(3, 3, v, g);
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 3, NULL));
    unsigned seen = 0;
    for (int64_t step = 0; step < 64; step++) {
        double rep[3], head[3], again[3], sum[3];
        ASSERT_OK(mtli_weighting_step(w, step, losses, g, lab, rep, head));
        ASSERT_OK(mtli_weighting_step(w, step, losses, g, lab, again, head));
        ASSERT(memcmp(rep, again, sizeof rep) == 0); /* a pure function of (seed, step) */
        combine(3, 3, v, rep, sum);
        int match = -1;
        for (unsigned o = 0; o < 8 && match < 0; o++) {
            double ref[3];
            pcgrad_reference(v, 3, o, ref);
            if (fabs(ref[0] - sum[0]) + fabs(ref[1] - sum[1]) + fabs(ref[2] - sum[2]) < 1e-12)
                match = (int)o;
        }
        ASSERT(match >= 0);
        seen |= 1u << match;
    }
    mtli_weighting_destroy(w, &s);
    /* Different steps draw different orders, and they change the result. */
    int distinct = 0;
    for (int o = 0; o < 8; o++) distinct += (seen >> o) & 1;
    ASSERT(distinct >= 2);
    return 0;
}

TEST(dwa_from_loss_history)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_DWA); /* temperature 2 */
    mtli_weighting *w = NULL;
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, NULL));
    double losses[2] = { 0.7, 0.7 }, rep[2], head[2];
    bool lab[2] = { true, true };
    const double e1[2] = { 1.0, 2.0 }, e2[2] = { 0.5, 1.8 }, e3[2] = { 0.45, 0.9 };
    /* First two epochs: equal weights. */
    ASSERT_OK(mtli_weighting_step(w, 0, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 1, 0, 0);
    mtli_weighting_epoch_end(w, e1);
    ASSERT_OK(mtli_weighting_step(w, 1, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[1], 1, 0, 0);
    mtli_weighting_epoch_end(w, e2);
    /* r = (0.5, 0.9); w = 2 softmax(r / 2) = (0.900330..., 1.099669...) */
    ASSERT_OK(mtli_weighting_step(w, 2, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 0.9003320053750442, 1e-12, 0);
    ASSERT_NEAR(rep[1], 1.0996679946249558, 1e-12, 0);
    ASSERT_NEAR(head[0], rep[0], 0, 0); /* loss-based: the whole loss is weighted */
    /* Only the last two epochs count: r = (0.9, 0.5). */
    mtli_weighting_epoch_end(w, e3);
    ASSERT_OK(mtli_weighting_step(w, 3, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 1.0996679946249558, 1e-12, 0);
    mtli_weighting_destroy(w, &s);
    return 0;
}

TEST(uncertainty_converges_to_log_loss)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_UNCERTAINTY);
    p.learning_rate = 0.1;
    mtli_weighting *w = NULL;
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 3, NULL));
    ASSERT_OK(mtli_weighting_set_classification(w, 2, true));
    const double losses[3] = { 0.3, 2.0, 0.8 };
    bool lab[3] = { true, true, true };
    double rep[3], head[3];
    ASSERT_OK(mtli_weighting_step(w, 0, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 0.5, 0, 0); /* s = 0: regression weight e^0 / 2 */
    ASSERT_NEAR(rep[2], 1.0, 0, 0); /* classification weight e^0 */
    for (int64_t k = 1; k < 3000; k++) ASSERT_OK(mtli_weighting_step(w, k, losses, NULL, lab, rep, head));
    /* Regression: d/ds (L e^-s / 2 + s / 2) = 0 at s = log L, weight 1/(2L).
     * Classification: d/ds (L e^-s + s / 2) = 0 at s = log 2L, weight 1/(2L). */
    ASSERT_NEAR(-log(2 * rep[0]), log(0.3), 0, 1e-9);
    ASSERT_NEAR(-log(2 * rep[1]), log(2.0), 0, 1e-9);
    ASSERT_NEAR(-log(rep[2]), log(2 * 0.8), 0, 1e-9);
    mtli_weighting_destroy(w, &s);
    return 0;
}

TEST(gls_and_fixed_closed_form)
{
    /* GLS: geometric mean of (1, 4) is 2; weights GM / L_t = (2, 0.5). */
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_GLS);
    mtli_weighting *w = NULL;
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, NULL));
    const double losses[2] = { 1.0, 4.0 };
    bool lab[2] = { true, true };
    double rep[2], head[2];
    ASSERT_OK(mtli_weighting_step(w, 0, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 2.0, 1e-14, 0);
    ASSERT_NEAR(rep[1], 0.5, 1e-14, 0);
    mtli_weighting_destroy(w, &s);

    /* FIXED: the loss weights themselves. */
    const double lw[2] = { 2.0, 0.5 };
    p = params(MTL_WEIGHTING_FIXED);
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, lw));
    ASSERT_OK(mtli_weighting_step(w, 0, losses, NULL, lab, rep, head));
    ASSERT_NEAR(rep[0], 2.0, 0, 0);
    ASSERT_NEAR(head[1], 0.5, 0, 0);
    mtli_weighting_destroy(w, &s);
    return 0;
}

TEST(rlw_seeded_random_weights)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_RLW);
    mtli_weighting *w = NULL, *w2 = NULL;
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 3, NULL));
    ASSERT_OK(mtli_weighting_create(&w2, &s, &p, 3, NULL));
    const double losses[3] = { 1, 2, 3 };
    bool lab[3] = { true, true, true };
    double mean[3] = { 0 }, prev[3] = { 0 };
    int changed = 0;
    for (int64_t k = 0; k < 4000; k++) {
        double rep[3], head[3], rep2[3];
        ASSERT_OK(mtli_weighting_step(w, k, losses, NULL, lab, rep, head));
        ASSERT_OK(mtli_weighting_step(w2, k, losses, NULL, lab, rep2, head));
        ASSERT(memcmp(rep, rep2, sizeof rep) == 0);
        ASSERT_NEAR(rep[0] + rep[1] + rep[2], 3.0, 1e-14, 0);
        for (int i = 0; i < 3; i++) {
            ASSERT(rep[i] > 0);
            mean[i] += rep[i] / 4000;
            changed += rep[i] != prev[i];
            prev[i] = rep[i];
        }
    }
    ASSERT(changed > 3000);
    /* Exchangeable draws: each task averages weight 1. */
    for (int i = 0; i < 3; i++) ASSERT_NEAR(mean[i], 1.0, 0, 0.05);
    mtli_weighting_destroy(w, &s);
    mtli_weighting_destroy(w2, &s);
    return 0;
}

TEST(gradnorm_moves_weights_in_documented_direction)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_GRADNORM);
    p.learning_rate = 0.1;
    mtli_weighting *w = NULL;
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, NULL));
    bool lab[2] = { true, true };
    double rep[2], head[2];
    /* Equal loss ratios, norms 2 and 1: the larger gradient loses weight.
     * G = (2, 1), target = mean = 1.5: w0 -= 0.1*2/1.5, w1 += 0.1*1/1.5,
     * then renormalised to sum 2. */
    const double g1[4] = { 4, 0, 0, 1 }, l1[2] = { 1, 1 };
    ASSERT_OK(mtli_weighting_step(w, 0, l1, g1, lab, rep, head));
    ASSERT_NEAR(rep[0], 1.0, 0, 0); /* weights are used, then updated */
    ASSERT_OK(mtli_weighting_step(w, 1, l1, g1, lab, rep, head));
    double a = 1 - 0.1 * 2 / 1.5, b = 1 + 0.1 * 1 / 1.5;
    ASSERT_NEAR(rep[0], 2 * a / (a + b), 1e-12, 0);
    ASSERT_NEAR(rep[1], 2 * b / (a + b), 1e-12, 0);
    ASSERT_NEAR(head[0], rep[0], 0, 0);
    mtli_weighting_destroy(w, &s);

    /* Equal norms, task 0 trains faster (lower loss ratio): its target
     * falls below its gradient norm, so its weight goes down. */
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, NULL));
    const double g2[4] = { 1, 0.2, 0.2, 1 }, l0[2] = { 1, 1 }, lb[2] = { 0.5, 1.0 };
    ASSERT_OK(mtli_weighting_step(w, 0, l0, g2, lab, rep, head)); /* records L(0) */
    ASSERT_OK(mtli_weighting_step(w, 1, lb, g2, lab, rep, head));
    ASSERT_NEAR(rep[0], 1.0, 0, 1e-15); /* no change yet: equal norms, equal ratios */
    ASSERT_OK(mtli_weighting_step(w, 2, lb, g2, lab, rep, head));
    ASSERT(rep[0] < 1.0 && rep[1] > 1.0);
    ASSERT_NEAR(rep[0] + rep[1], 2.0, 1e-14, 0);
    mtli_weighting_destroy(w, &s);
    return 0;
}

/* ---- MGDA against brute force ------------------------------------------------ */

static double quad3(const double *g, const double *a)
{
    double f = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) f += a[i] * g[i * 3 + j] * a[j];
    return f;
}

TEST(mgda_is_min_norm_point_vs_grid)
{
    static const double cases[][12] = {
        { 1, 0.2, 0, 0.1, -0.3, 1, 0.4, 0, 0.2, -0.4, 0.9, 0.5 }, /* interior */
        { 1, 0, 0, 0, 0.9, 0.5, 0, 0, 3, 3, 0, 0 },               /* on an edge */
        { 1, 0, 0, 0, 2, 0.1, 0, 0, 2, -0.1, 0, 0 },              /* a vertex */
        { 1, 0, 0, 0, 0, 1, 0, 0, -1, -1, 0, 0 },                 /* 0 in the hull */
        { 0.3, 1, -0.2, 0.5, 1.1, 0.1, 0.7, -0.2, -0.6, 0.4, 0.3, 0.9 },
    };
    const int grid = 1000;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double g[9], rep[3], head[3], alpha[3];
        gram_of(3, 4, cases[c], g);
        if (run_method(params(MTL_WEIGHTING_MGDA), 3, 4, cases[c], NULL, rep, head)) return 1;
        for (int i = 0; i < 3; i++) alpha[i] = rep[i] / 3;
        ASSERT_NEAR(alpha[0] + alpha[1] + alpha[2], 1.0, 1e-12, 0);
        for (int i = 0; i < 3; i++) ASSERT(alpha[i] >= 0);
        double best = INFINITY, best_a[3] = { 0 };
        for (int i = 0; i <= grid; i++)
            for (int j = 0; j <= grid - i; j++) {
                double a[3] = { (double)i / grid, (double)j / grid, (double)(grid - i - j) / grid };
                double f = quad3(g, a);
                if (f < best) {
                    best = f;
                    memcpy(best_a, a, sizeof a);
                }
            }
        double f = quad3(g, alpha);
        if (!(f <= best + 1e-13)) FAILF("case %zu: |d|^2 = %.15g above the grid's %.15g", c, f, best);
        if (c != 3) /* unique minimiser: within a grid cell of the grid's */
            for (int i = 0; i < 3; i++) ASSERT_NEAR(alpha[i], best_a[i], 0, 2.0 / grid);
        else
            for (int i = 0; i < 3; i++) ASSERT_NEAR(alpha[i], 1.0 / 3, 0, 1e-9);
    }
    return 0;
}

/* ---- CAGrad, IMTL-G, UPGrad: properties from their papers ------------------ */

TEST(cagrad_maximises_worst_task_improvement_in_ball)
{
    /* Three gradients in the plane, two conflicting.  CAGrad's d maximises
     * min_i <g_i, d> over the ball |d - g0| <= c |g0|: compare with a polar
     * grid of the ball.  coef = T (1/T + lambda w) / (1 + c^2), so the raw
     * direction is sum (coef (1 + c^2) / T) g_i. */
    const double v[] = { 1, 0.1, -0.6, 1, 0.2, -0.9 };
    const double cs[] = { 0.0, 0.2, 0.5, 1.0 };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        mtli_weighting_params p = params(MTL_WEIGHTING_CAGRAD);
        p.cagrad_c = cs[k];
        double rep[3], head[3], d[2], raw[3], g0[2] = { 0, 0 };
        if (run_method(p, 3, 2, v, NULL, rep, head)) return 1;
        if (cs[k] == 0.0) /* c = 0: the mean gradient, i.e. equal weighting */
            for (int i = 0; i < 3; i++) ASSERT_NEAR(rep[i], 1.0, 1e-15, 0);
        for (int i = 0; i < 3; i++) raw[i] = rep[i] * (1 + cs[k] * cs[k]) / 3;
        combine(3, 2, v, raw, d);
        for (int i = 0; i < 3; i++) {
            g0[0] += v[2 * i] / 3;
            g0[1] += v[2 * i + 1] / 3;
        }
        double radius = cs[k] * sqrt(dotd(2, g0, g0));
        double off[2] = { d[0] - g0[0], d[1] - g0[1] };
        ASSERT(sqrt(dotd(2, off, off)) <= radius * (1 + 1e-9) + 1e-15);
        double ours = INFINITY, grid_best = -INFINITY;
        for (int i = 0; i < 3; i++) ours = fmin(ours, dotd(2, v + 2 * i, d));
        for (int r = 0; r <= 200; r++)
            for (int a = 0; a < 3600; a++) {
                double rr = radius * r / 200.0, th = 6.283185307179586 * a / 3600;
                double e[2] = { g0[0] + rr * cos(th), g0[1] + rr * sin(th) };
                double worst = INFINITY;
                for (int i = 0; i < 3; i++) worst = fmin(worst, dotd(2, v + 2 * i, e));
                grid_best = fmax(grid_best, worst);
            }
        if (!(ours >= grid_best - 1e-6)) FAILF("c = %g: min_i <g_i, d> = %.12g, grid finds %.12g", cs[k], ours, grid_best);
    }
    return 0;
}

TEST(imtl_g_equal_projections_on_unit_gradients)
{
    const double v[] = { 1, 0.3, -0.2, 0.5, -0.4, 2, 0.1, 0.3, 0.2, -0.5, 0.8, -1 };
    double rep[3], head[3], d[4];
    if (run_method(params(MTL_WEIGHTING_IMTL_G), 3, 4, v, NULL, rep, head)) return 1;
    ASSERT_NEAR(rep[0] + rep[1] + rep[2], 3.0, 1e-12, 0);
    combine(3, 4, v, rep, d);
    double proj[3];
    for (int i = 0; i < 3; i++) proj[i] = dotd(4, d, v + 4 * i) / sqrt(dotd(4, v + 4 * i, v + 4 * i));
    ASSERT_NEAR(proj[1], proj[0], 1e-10, 0);
    ASSERT_NEAR(proj[2], proj[0], 1e-10, 0);
    ASSERT(proj[0] > 0);

    /* Two tasks: alpha = (|g2|, |g1|) / (|g1| + |g2|), whatever the angle
     * (from the paper's form alpha_2 = <g1, u1 - u2> / <g1 - g2, u1 - u2>). */
    const double v2[] = { 3, 0, -1, 1 };
    if (run_method(params(MTL_WEIGHTING_IMTL_G), 2, 2, v2, NULL, rep, head)) return 1;
    double n1 = 3, n2 = sqrt(2.0);
    ASSERT_NEAR(rep[0], 2 * n2 / (n1 + n2), 1e-12, 0);
    ASSERT_NEAR(rep[1], 2 * n1 / (n1 + n2), 1e-12, 0);
    /* Collinear pair pointing the same way (singular G): any combination
     * has equal projections on u1 = u2; the ridge path must stay finite. */
    const double v3[] = { 1, 2, 0, 3, 6, 0, 0.5, -1, 2 };
    if (run_method(params(MTL_WEIGHTING_IMTL_G), 3, 3, v3, NULL, rep, head)) return 1;
    ASSERT_NEAR(rep[0] + rep[1] + rep[2], 3.0, 1e-9, 0);
    combine(3, 3, v3, rep, d);
    for (int i = 0; i < 3; i++) proj[i] = dotd(3, d, v3 + 3 * i) / sqrt(dotd(3, v3 + 3 * i, v3 + 3 * i));
    ASSERT_NEAR(proj[1], proj[0], 1e-6, 0);
    ASSERT_NEAR(proj[2], proj[0], 1e-6, 0);
    return 0;
}

TEST(upgrad_result_does_not_conflict_with_any_task)
{
    const double v[] = { 1, 0.2, 0.1, -0.9, 1, 0.3, -0.6, -0.7, 0.4, 0.2, 0.1, -1 };
    double rep[4], head[4], d[3], g[16];
    if (run_method(params(MTL_WEIGHTING_UPGRAD), 4, 3, v, NULL, rep, head)) return 1;
    gram_of(4, 3, v, g);
    ASSERT(mtli_diag_conflicts(4, g) >= 3); /* the case does conflict */
    combine(4, 3, v, rep, d);
    for (int i = 0; i < 4; i++) {
        double ip = dotd(3, d, v + 3 * i);
        if (!(ip >= -1e-12)) FAILF("<d, g_%d> = %g < 0", i, ip);
    }
    /* Non-conflicting gradients: UPGrad is equal weighting. */
    const double nc[] = { 1, 0.2, 0, 0.3, 1, 0, 0.1, 0.1, 1 };
    if (run_method(params(MTL_WEIGHTING_UPGRAD), 3, 3, nc, NULL, rep, head)) return 1;
    for (int i = 0; i < 3; i++) ASSERT_NEAR(rep[i], 1.0, 1e-12, 0);
    /* Two tasks: projecting g_i onto the dual cone {x: <g1,x> >= 0, <g2,x> >= 0}
     * removes its component along the other gradient, exactly PCGrad's
     * projection; the average times T equals PCGrad's sum. */
    const double op[] = { 1, 0, -2, 1 };
    double pc[2];
    if (run_method(params(MTL_WEIGHTING_PCGRAD), 2, 2, op, NULL, pc, head)) return 1;
    if (run_method(params(MTL_WEIGHTING_UPGRAD), 2, 2, op, NULL, rep, head)) return 1;
    ASSERT_NEAR(rep[0], pc[0], 1e-12, 0);
    ASSERT_NEAR(rep[1], pc[1], 1e-12, 0);
    /* Collinear gradients (a singular Gram) take the ridge path: still
     * finite and non-conflicting. */
    const double col[] = { 1, 2, 2, 4, -1, -2 };
    if (run_method(params(MTL_WEIGHTING_UPGRAD), 3, 2, col, NULL, rep, head)) return 1;
    combine(3, 2, col, rep, d);
    for (int i = 0; i < 3; i++) ASSERT(isfinite(rep[i]) && dotd(2, d, col + 2 * i) >= -1e-3);
    return 0;
}

/* ---- masks, loss weights, errors ------------------------------------------- */

TEST(missing_labels_and_zero_weights_drop_tasks)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    const double v[] = { 1, 0, 0, 0, 5, 0, 0, 0, 1 };
    double g[9];
    gram_of(3, 3, v, g);
    const double losses[3] = { 1, 1, 1 };
    bool lab[3] = { true, false, true };
    double rep[3], head[3];
    for (int m = MTL_WEIGHTING_FIXED; m <= MTL_WEIGHTING_UPGRAD; m++) {
        mtli_weighting_params p = params((mtl_weighting)m);
        mtli_weighting *w = NULL;
        ASSERT_OK(mtli_weighting_create(&w, &s, &p, 3, NULL));
        ASSERT_OK(mtli_weighting_step(w, 0, losses, g, lab, rep, head));
        ASSERT_EQ_INT(rep[1] == 0.0 && head[1] == 0.0, 1);
        ASSERT(rep[0] > 0 && rep[2] > 0 && head[0] > 0 && head[2] > 0);
        if (m != MTL_WEIGHTING_UNCERTAINTY && m != MTL_WEIGHTING_RLW) /* symmetric pair left */
            ASSERT_NEAR(rep[0], rep[2], 1e-9, 0);
        mtli_weighting_destroy(w, &s);
    }
    /* Loss weight 0 removes a task; other weights scale the loss first:
     * MGDA on {2 g1, g2} = {(2,0), (0,1)} gives 2 * 0.2 (2,0) + 2 * 0.8 (0,1)
     * = (0.8, 1.6), i.e. coefficients (0.8, 1.6) on the raw g1 = (1,0), g2. */
    const double lw[3] = { 2, 1, 0 };
    mtli_weighting_params p = params(MTL_WEIGHTING_MGDA);
    mtli_weighting *w = NULL;
    const double v2[] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 };
    bool all[3] = { true, true, true };
    gram_of(3, 3, v2, g);
    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 3, lw));
    ASSERT_OK(mtli_weighting_step(w, 0, losses, g, all, rep, head));
    ASSERT_NEAR(rep[0], 0.8, 1e-12, 0);
    ASSERT_NEAR(rep[1], 1.6, 1e-12, 0);
    ASSERT_NEAR(rep[2], 0.0, 0, 0);
    ASSERT_NEAR(head[0], 2.0, 0, 0);
    ASSERT_NEAR(head[2], 0.0, 0, 0);
    mtli_weighting_destroy(w, &s);
    return 0;
}

TEST(invalid_input_leaves_outputs_and_state_untouched)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting *w = NULL;
    mtli_weighting_params p = params(MTL_WEIGHTING_UPGRAD);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_create(&w, &s, &p, 0, NULL));
    p.dwa_temperature = 0;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_create(&w, &s, &p, 2, NULL));
    ASSERT_MSG_HAS("temperature");
    p = params((mtl_weighting)99);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_create(&w, &s, &p, 2, NULL));
    p = params(MTL_WEIGHTING_MGDA);
    const double bad_lw[2] = { 1, -1 };
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_create(&w, &s, &p, 2, bad_lw));
    ASSERT(w == NULL);

    ASSERT_OK(mtli_weighting_create(&w, &s, &p, 2, NULL));
    double rep[2] = { 7, 7 }, head[2] = { 7, 7 }, g[4] = { 1, 0, 0, 1 };
    double losses[2] = { 1, NAN };
    bool lab[2] = { true, true };
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtli_weighting_step(w, 0, losses, g, lab, rep, head));
    ASSERT_MSG_HAS("task 1");
    ASSERT(rep[0] == 7 && head[1] == 7);
    losses[1] = 1;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_step(w, 0, losses, NULL, lab, rep, head));
    ASSERT_MSG_HAS("MGDA");
    g[1] = INFINITY;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtli_weighting_step(w, 0, losses, g, lab, rep, head));
    ASSERT(rep[1] == 7);
    g[1] = 0;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_weighting_step(w, -1, losses, g, lab, rep, head));
    ASSERT_OK(mtli_weighting_step(w, 0, losses, g, lab, rep, head));
    ASSERT_NEAR(rep[0], 1.0, 1e-12, 0);
    mtli_weighting_destroy(w, &s);
    mtli_weighting_destroy(NULL, &s);
    return 0;
}

/* Fails the allocation numbered `fail_at` (1-based), counting all calls. */
static int alloc_calls, alloc_fail_at;
static void *failing_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (++alloc_calls == alloc_fail_at) return NULL;
    void *p = NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}
static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

TEST(allocation_failures_leak_nothing)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    s.allocator.alloc = failing_alloc;
    s.allocator.free = plain_free;
    mtli_weighting_params p = params(MTL_WEIGHTING_CAGRAD);
    int failures = 0;
    for (alloc_fail_at = 1;; alloc_fail_at++) {
        alloc_calls = 0;
        mtli_weighting *w = NULL;
        mtl_status st = mtli_weighting_create(&w, &s, &p, 4, NULL);
        if (st == MTL_OK) {
            mtli_weighting_destroy(w, &s);
            break;
        }
        ASSERT_EQ_INT(st, MTL_ERR_OUT_OF_MEMORY);
        ASSERT(w == NULL);
        failures++;
    }
    ASSERT_EQ_INT(failures, 3);
    return 0;
}

/* ---- save / load ------------------------------------------------------------- */

/* Drive a method through some steps and epochs with varying inputs. */
static int drive(mtli_weighting *w, int64_t first, int64_t steps, double *rep, double *head)
{
    const double v[] = { 1, 0.2, -0.3, -0.5, 1, 0.1, 0.2, -0.7, 1 };
    double g[9];
    gram_of(3, 3, v, g);
    bool lab[3] = { true, true, true };
    for (int64_t k = first; k < first + steps; k++) {
        double losses[3] = { 1.0 / (1 + 0.1 * k), 2.0 / (1 + 0.05 * k), 0.5 + 0.01 * k };
        g[0] = 1 + 0.01 * k;
        ASSERT_OK(mtli_weighting_step(w, k, losses, g, lab, rep, head));
        if (k % 4 == 3) mtli_weighting_epoch_end(w, losses);
    }
    return 0;
}

TEST(save_load_round_trip_resumes_exactly)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    const mtl_weighting methods[] = { MTL_WEIGHTING_UNCERTAINTY, MTL_WEIGHTING_DWA,
                                      MTL_WEIGHTING_GRADNORM, MTL_WEIGHTING_RLW,
                                      MTL_WEIGHTING_PCGRAD };
    for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
        mtli_weighting_params p = params(methods[k]);
        mtli_weighting *a = NULL, *b = NULL;
        ASSERT_OK(mtli_weighting_create(&a, &s, &p, 3, NULL));
        ASSERT_OK(mtli_weighting_create(&b, &s, &p, 3, NULL));
        double ra[3], ha[3], rb[3], hb[3];
        if (drive(a, 0, 13, ra, ha)) return 1;
        size_t size = mtli_weighting_state_size(a);
        ASSERT_EQ_INT(size, 32 + 5 * 8 * 3);
        uint8_t buf[256];
        ASSERT_STATUS(MTL_ERR_SHAPE, mtli_weighting_save(a, buf, size - 1));
        ASSERT_OK(mtli_weighting_save(a, buf, sizeof buf));
        ASSERT_OK(mtli_weighting_load(b, buf, size));
        /* The continuation is bitwise identical. */
        if (drive(a, 13, 9, ra, ha)) return 1;
        if (drive(b, 13, 9, rb, hb)) return 1;
        ASSERT(memcmp(ra, rb, sizeof ra) == 0 && memcmp(ha, hb, sizeof ha) == 0);
        mtli_weighting_destroy(a, &s);
        mtli_weighting_destroy(b, &s);
    }
    return 0;
}

TEST(load_rejects_corrupt_state)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_weighting_params p = params(MTL_WEIGHTING_UNCERTAINTY);
    mtli_weighting *a = NULL, *b = NULL;
    ASSERT_OK(mtli_weighting_create(&a, &s, &p, 2, NULL));
    uint8_t buf[128], bad[128];
    size_t size = mtli_weighting_state_size(a);
    ASSERT_OK(mtli_weighting_save(a, buf, sizeof buf));
    ASSERT_EQ_INT(buf[0], 'M'); /* little-endian magic "MTLW" */
    ASSERT_EQ_INT(buf[3], 'W');
    ASSERT_EQ_INT(buf[8], MTL_WEIGHTING_UNCERTAINTY);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(a, buf, size - 8));
    memcpy(bad, buf, size);
    bad[0] ^= 1;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(a, bad, size));
    memcpy(bad, buf, size);
    bad[4] = 9;
    ASSERT_STATUS(MTL_ERR_VERSION, mtli_weighting_load(a, bad, size));
    memcpy(bad, buf, size);
    bad[16] = 3; /* three tasks */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(a, bad, size));
    memcpy(bad, buf, size);
    double nan = NAN;
    memcpy(bad + 32, &nan, 8); /* log-variance of task 0 (host is little-endian here) */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(a, bad, size));
    ASSERT_MSG_HAS("log-variance");
    memcpy(bad, buf, size);
    bad[8] = 77; /* no such method */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(a, bad, size));
    ASSERT_MSG_HAS("method");
    /* Every method's state is kept, so a state saved under another method
     * loads: a GradNorm object takes the uncertainty state and, switched to
     * UNCERTAINTY, continues from the saved s. */
    p = params(MTL_WEIGHTING_GRADNORM);
    ASSERT_OK(mtli_weighting_create(&b, &s, &p, 2, NULL));
    mtli_weighting_params pu = params(MTL_WEIGHTING_UNCERTAINTY);
    pu.learning_rate = 0.5;
    ASSERT_OK(mtli_weighting_set_params(a, &pu));
    double l2[2] = { 4, 4 }, r2[2], h2[2];
    bool both[2] = { true, true };
    ASSERT_OK(mtli_weighting_step(a, 0, l2, NULL, both, r2, h2)); /* s = -0.5 (1 - 4) / 2 = 0.75 */
    ASSERT_OK(mtli_weighting_save(a, buf, sizeof buf));
    ASSERT_OK(mtli_weighting_load(b, buf, size));
    ASSERT_OK(mtli_weighting_set_params(b, &pu));
    ASSERT_OK(mtli_weighting_peek(b, 1, l2, NULL, both, r2, h2));
    ASSERT_NEAR(r2[0], 0.5 * exp(-0.75), 1e-15, 0);
    /* peek moves nothing: the same weights twice */
    double r3[2];
    ASSERT_OK(mtli_weighting_peek(b, 1, l2, NULL, both, r3, h2));
    ASSERT(memcmp(r2, r3, sizeof r2) == 0);
    /* Nothing changed after the failed loads: b still has the loaded s. */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_weighting_load(b, bad, size));
    ASSERT_OK(mtli_weighting_peek(b, 1, l2, NULL, both, r3, h2));
    ASSERT(memcmp(r2, r3, sizeof r2) == 0);
    mtli_weighting_destroy(a, &s);
    mtli_weighting_destroy(b, &s);
    return 0;
}

/* ---- diagnostics ------------------------------------------------------------- */

TEST(cosine_matrix_and_conflicts_of_known_gradients)
{
    /* g1 = (1,0), g2 = (1,1), g3 = (-1,0.5), g4 = 0. */
    const double v[] = { 1, 0, 1, 1, -1, 0.5, 0, 0 };
    double g[16], c[16];
    gram_of(4, 2, v, g);
    mtli_diag_cosine(4, g, c);
    ASSERT_NEAR(c[0 * 4 + 1], 1 / sqrt(2.0), 1e-15, 0);
    ASSERT_NEAR(c[0 * 4 + 2], -1 / sqrt(1.25), 1e-15, 0);
    ASSERT_NEAR(c[1 * 4 + 2], -0.5 / (sqrt(2.0) * sqrt(1.25)), 1e-15, 0);
    ASSERT_NEAR(c[2 * 4 + 1], c[1 * 4 + 2], 0, 0);
    ASSERT_NEAR(c[0], 1, 0, 0);
    ASSERT_NEAR(c[3 * 4 + 3], 0, 0, 0); /* zero gradient: cosines 0 */
    ASSERT_NEAR(c[0 * 4 + 3], 0, 0, 0);
    ASSERT_EQ_INT(mtli_diag_conflicts(4, g), 2);
    return 0;
}

TEST(diagnostic_records_step_and_epoch_means)
{
    mtl_trainer t;
    memset(&t, 0, sizeof t);
    t.n_tasks = 2;
    mtli_settings_defaults(&t.settings);
    double out[4];
    /* No buffers yet: not computed. */
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_STEP, out, 4));
    ASSERT_OK(mtli_diag_create(&t));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, out, 4));
    const double g1[4] = { 4, -2, -2, 4 }, w1[2] = { 1, 3 };  /* cos -1/2, a conflict */
    const double g2[4] = { 1, 0.5, 0.5, 4 }, w2[2] = { 2, 1 }; /* cos 1/4 */
    mtli_diag_record_step(&t, w1, g1, NULL);
    ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, out, 4));
    ASSERT_NEAR(out[1], -0.5, 1e-15, 0);
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_AFFINITY, MTL_SCOPE_STEP, out, 4));
    ASSERT_MSG_HAS("MTL_OPT_AFFINITY");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_CONFLICTS, MTL_SCOPE_EPOCH, out, 4));
    mtli_diag_record_step(&t, w2, g2, NULL);
    ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_NORMS, MTL_SCOPE_STEP, out, 2));
    ASSERT_NEAR(out[0], 1, 0, 0);
    ASSERT_NEAR(out[1], 2, 0, 0);
    /* Epoch 1 is not finished yet. */
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, out, 2));
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: right after the fit loop counts the epoch (the progress
         * callback); pass 1: after the next epoch's first step. */
        if (pass == 0) t.epoch = 1;
        if (pass == 1) mtli_diag_record_step(&t, w1, NULL, NULL);
        ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, out, 2));
        ASSERT_NEAR(out[0], 1.5, 0, 0);
        ASSERT_NEAR(out[1], 2.0, 0, 0);
        ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_EPOCH, out, 4));
        ASSERT_NEAR(out[1], (-0.5 + 0.25) / 2, 1e-15, 0);
        ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_CONFLICTS, MTL_SCOPE_EPOCH, out, 1));
        ASSERT_NEAR(out[0], 0.5, 0, 0); /* one conflicting pair in one step of two */
    }
    /* The step record of a step without a Gram has weights only. */
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_NORMS, MTL_SCOPE_STEP, out, 2));
    /* Epoch 2 (one step, weights w1) closes when the epoch count moves again. */
    t.epoch = 2;
    ASSERT_OK(mtl_trainer_diagnostic(&t, MTL_DIAG_TASK_WEIGHTS, MTL_SCOPE_EPOCH, out, 2));
    ASSERT_NEAR(out[1], 3.0, 0, 0);
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_EPOCH, out, 4));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_diagnostic(&t, MTL_DIAG_GRAD_COSINE, MTL_SCOPE_STEP, out, 3));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_diagnostic(&t, (mtl_diagnostic)42, MTL_SCOPE_STEP, out, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_diagnostic(&t, MTL_DIAG_CONFLICTS, (mtl_scope)5, out, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_diagnostic(NULL, MTL_DIAG_CONFLICTS, MTL_SCOPE_STEP, out, 4));
    mtli_diag_destroy(&t);
    return 0;
}

/* ---- the solvers directly ------------------------------------------------------ */

TEST(small_dense_solvers)
{
    /* Cholesky: A = [[4,2,0],[2,5,1],[0,1,3]], x = (1,-1,2) => b = A x. */
    double a[9] = { 4, 2, 0, 2, 5, 1, 0, 1, 3 }, b[3] = { 2, -1, 5 };
    ASSERT(mtli_cholesky_factor(3, a, 3));
    mtli_cholesky_solve(3, a, 3, b);
    ASSERT_NEAR(b[0], 1, 1e-14, 1e-14);
    ASSERT_NEAR(b[1], -1, 1e-14, 1e-14);
    ASSERT_NEAR(b[2], 2, 1e-14, 1e-14);
    double sing[4] = { 1, 1, 1, 1 };
    ASSERT(!mtli_cholesky_factor(2, sing, 2));
    /* Box QP against brute force: min v^T G v s.t. v >= l, 2 variables. */
    const double g[4] = { 2, -1.5, -1.5, 2 }, lo[2] = { 0.5, -1 };
    double v[2], scratch[MTLI_WSOLVE_SCRATCH(2)];
    ASSERT(mtli_box_qp(2, g, lo, v, scratch) > 0);
    double best = INFINITY, bv[2] = { 0, 0 };
    for (int i = 0; i <= 2000; i++)
        for (int j = 0; j <= 2000; j++) {
            double x[2] = { 0.5 + i * 0.001, -1 + j * 0.001 };
            double f = g[0] * x[0] * x[0] + 2 * g[1] * x[0] * x[1] + g[3] * x[1] * x[1];
            if (f < best) {
                best = f;
                bv[0] = x[0];
                bv[1] = x[1];
            }
        }
    ASSERT_NEAR(v[0], bv[0], 0, 1e-3);
    ASSERT_NEAR(v[1], bv[1], 0, 1e-3);
    ASSERT_NEAR(v[0], 0.5, 0, 1e-15);        /* the bound is active ... */
    ASSERT_NEAR(v[1], 0.5 * 1.5 / 2, 1e-14, 0); /* ... and v2 = -G21 v1 / G22 */
    return 0;
}

TEST(every_method_is_deterministic)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    for (int m = MTL_WEIGHTING_FIXED; m <= MTL_WEIGHTING_UPGRAD; m++) {
        mtli_weighting_params p = params((mtl_weighting)m);
        mtli_weighting *a = NULL, *b = NULL;
        ASSERT_OK(mtli_weighting_create(&a, &s, &p, 3, NULL));
        ASSERT_OK(mtli_weighting_create(&b, &s, &p, 3, NULL));
        double ra[3], ha[3], rb[3], hb[3];
        if (drive(a, 0, 11, ra, ha) || drive(b, 0, 11, rb, hb)) return 1;
        ASSERT(memcmp(ra, rb, sizeof ra) == 0 && memcmp(ha, hb, sizeof ha) == 0);
        for (int i = 0; i < 3; i++) ASSERT(isfinite(ra[i]) && ra[i] >= -1e-12);
        mtli_weighting_destroy(a, &s);
        mtli_weighting_destroy(b, &s);
    }
    return 0;
}

TEST_MAIN(TEST_ENTRY(orthogonal_equal_norms_give_equal_weights),
          TEST_ENTRY(mgda_orthogonal_unequal_norms),
          TEST_ENTRY(pcgrad_leaves_orthogonal_gradients_unchanged),
          TEST_ENTRY(pcgrad_opposed_pair_closed_form),
          TEST_ENTRY(pcgrad_three_tasks_matches_a_random_order),
          TEST_ENTRY(dwa_from_loss_history),
          TEST_ENTRY(uncertainty_converges_to_log_loss),
          TEST_ENTRY(gls_and_fixed_closed_form),
          TEST_ENTRY(rlw_seeded_random_weights),
          TEST_ENTRY(gradnorm_moves_weights_in_documented_direction),
          TEST_ENTRY(mgda_is_min_norm_point_vs_grid),
          TEST_ENTRY(cagrad_maximises_worst_task_improvement_in_ball),
          TEST_ENTRY(imtl_g_equal_projections_on_unit_gradients),
          TEST_ENTRY(upgrad_result_does_not_conflict_with_any_task),
          TEST_ENTRY(missing_labels_and_zero_weights_drop_tasks),
          TEST_ENTRY(invalid_input_leaves_outputs_and_state_untouched),
          TEST_ENTRY(allocation_failures_leak_nothing),
          TEST_ENTRY(save_load_round_trip_resumes_exactly),
          TEST_ENTRY(load_rejects_corrupt_state),
          TEST_ENTRY(cosine_matrix_and_conflicts_of_known_gradients),
          TEST_ENTRY(diagnostic_records_step_and_epoch_means),
          TEST_ENTRY(small_dense_solvers),
          TEST_ENTRY(every_method_is_deterministic))
