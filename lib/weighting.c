/* weighting.c -- loss weighting and gradient surgery in coefficient space.
 *
 * Every method returns two coefficients per task (see mtl_internal.h):
 * rep_weights[t] multiplies task t's gradient on the shared representation
 * z, head_weights[t] the gradient reaching task t's own head.  Loss-based
 * methods weight the whole loss (head = rep); gradient-surgery methods
 * (PCGrad, MGDA, CAGrad, IMTL-G, UPGrad) change only how the shared trunk
 * mixes the task gradients, and every head keeps its own loss's gradient.
 * The gradient-based methods all produce linear combinations of the task
 * gradients, so they run on the T x T Gram matrix alone.
 *
 * Conventions (docs/loss-weighting.md):
 * - The tasks' loss weights scale each loss before the method sees it
 *   (L'_t = w_t L_t, g'_t = w_t g_t); a task with weight 0, or without
 *   labels in the batch, gets coefficients 0.
 * - Weights are on the scale of equal weighting: a method that sees no
 *   reason to prefer a task gives each active task 1 (sum = number of
 *   active tasks).  Uncertainty weighting keeps the paper's 1/(2 sigma^2).
 */
#include "mtl_internal.h"
#include "bytes.h"
#include "weighting.h"

#include <math.h>
#include <string.h>

#define MTLI_LOGVAR_LIMIT 20.0      /* |s_t| clamp: weights stay within e^+-20 */
#define MTLI_GLS_LOSS_FLOOR 1e-12   /* GLS: losses below this count as this */
#define MTLI_GRADNORM_FLOOR 1e-3    /* GradNorm weights stay above this */
#define MTLI_UPGRAD_REG 1e-10       /* UPGrad: first ridge tried on a singular Gram */
#define MTLI_WSTATE_MAGIC 0x574c544du /* "MTLW" little-endian */
#define MTLI_WSTATE_VERSION 1u
#define MTLI_WSTATE_HEADER 32u        /* magic, version, method, reserved, n, epochs */
#define MTLI_WSTATE_ARRAYS 5u         /* doubles per task in the state */

struct mtli_weighting {
    mtli_weighting_params p;
    int64_t n; /* tasks */

    /* configuration */
    double *loss_weight;       /* n: applied to each loss before the method */
    int64_t *classification;   /* n: 0/1, selects uncertainty weighting's variant */

    /* learned state, saved in checkpoints (mtli_weighting_save) */
    double *log_var;           /* n: uncertainty s_t = log sigma_t^2 */
    double *gn_weight;         /* n: GradNorm weights, sum n */
    double *gn_initial_loss;   /* n: GradNorm L_t(0), NaN until recorded */
    double *dwa_older;         /* n: mean losses of the epoch before last */
    double *dwa_newer;         /* n: mean losses of the last epoch */
    int64_t epochs_seen;

    /* scratch sized at creation: a step allocates nothing */
    int64_t *active;           /* n: tasks that take part in this step */
    int64_t *order;            /* n: PCGrad's projection order */
    double *gram;              /* n x n: the active tasks' Gram, pre-scaled */
    double *loss;              /* n: the active tasks' losses, pre-scaled */
    double *coef;              /* n: rep coefficients of the active tasks */
    double *vec;               /* 5 n: per-method working vectors */
    double *mat;               /* n x n: per-method working matrix */
    double *solver;            /* MTLI_WSOLVE_SCRATCH(n) */

    double *dmem;              /* one block behind every double array */
    int64_t *imem;             /* one block behind every int64 array */
};

static const char *mtli_weighting_name(mtl_weighting m)
{
    switch (m) {
    case MTL_WEIGHTING_FIXED: return "FIXED";
    case MTL_WEIGHTING_UNCERTAINTY: return "UNCERTAINTY";
    case MTL_WEIGHTING_DWA: return "DWA";
    case MTL_WEIGHTING_GLS: return "GLS";
    case MTL_WEIGHTING_RLW: return "RLW";
    case MTL_WEIGHTING_GRADNORM: return "GRADNORM";
    case MTL_WEIGHTING_PCGRAD: return "PCGRAD";
    case MTL_WEIGHTING_MGDA: return "MGDA";
    case MTL_WEIGHTING_CAGRAD: return "CAGRAD";
    case MTL_WEIGHTING_IMTL_G: return "IMTL_G";
    case MTL_WEIGHTING_UPGRAD: return "UPGRAD";
    }
    return "unknown";
}

/* ---- creation ------------------------------------------------------------ */

static mtl_status mtli_weighting_check_params(const mtli_weighting_params *p)
{
    MTLI_CHECK_ARG(p->method >= MTL_WEIGHTING_FIXED && p->method <= MTL_WEIGHTING_UPGRAD,
                   "loss weighting: unknown method %d", (int)p->method);
    MTLI_CHECK_ARG(isfinite(p->dwa_temperature) && p->dwa_temperature > 0.0,
                   "loss weighting: DWA temperature %g must be > 0", p->dwa_temperature);
    MTLI_CHECK_ARG(isfinite(p->gradnorm_alpha) && p->gradnorm_alpha >= 0.0,
                   "loss weighting: GradNorm alpha %g must be >= 0", p->gradnorm_alpha);
    MTLI_CHECK_ARG(isfinite(p->cagrad_c) && p->cagrad_c >= 0.0,
                   "loss weighting: CAGrad c %g must be >= 0", p->cagrad_c);
    MTLI_CHECK_ARG(isfinite(p->learning_rate) && p->learning_rate > 0.0,
                   "loss weighting: learning rate %g must be > 0", p->learning_rate);
    return MTL_OK;
}

static mtl_status mtli_check_loss_weights(int64_t n, const double *lw)
{
    for (int64_t t = 0; t < n; t++)
        MTLI_CHECK_ARG(isfinite(lw[t]) && lw[t] >= 0.0,
                       "loss weighting: task %lld has loss weight %g (must be finite and >= 0)",
                       (long long)t, lw[t]);
    return MTL_OK;
}

mtl_status mtli_weighting_create(mtli_weighting **out, const mtli_settings *s,
                                 const mtli_weighting_params *p, int64_t n_tasks,
                                 const double *loss_weights)
{
    MTLI_CHECK_ARG(out && s && p, "mtli_weighting_create: out, settings and params must not be NULL");
    MTLI_CHECK_ARG(n_tasks >= 1 && n_tasks <= MTLI_MAX_TASKS,
                   "loss weighting: %lld tasks (need 1..%d)", (long long)n_tasks, MTLI_MAX_TASKS);
    MTLI_TRY(mtli_weighting_check_params(p));
    if (loss_weights) MTLI_TRY(mtli_check_loss_weights(n_tasks, loss_weights));

    size_t n = (size_t)n_tasks;
    /* 7 vectors of n + 2 matrices of n x n + the solver scratch. */
    size_t n_doubles = 13 * n + 2 * n * n + MTLI_WSOLVE_SCRATCH(n);
    size_t n_ints = 3 * n;
    mtli_weighting *w = mtli_calloc(s, 1, sizeof *w);
    if (!w) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "loss weighting: out of memory for the state");
    w->dmem = mtli_calloc(s, n_doubles, sizeof(double));
    w->imem = mtli_calloc(s, n_ints, sizeof(int64_t));
    if (!w->dmem || !w->imem) {
        mtli_weighting_destroy(w, s);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "loss weighting: out of memory for %lld tasks",
                         (long long)n_tasks);
    }
    w->p = *p;
    w->n = n_tasks;
    double *d = w->dmem;
    w->loss_weight = d; d += n;
    w->log_var = d; d += n;
    w->gn_weight = d; d += n;
    w->gn_initial_loss = d; d += n;
    w->dwa_older = d; d += n;
    w->dwa_newer = d; d += n;
    w->loss = d; d += n;
    w->coef = d; d += n;
    w->vec = d; d += 5 * n; /* room for the methods that need several vectors */
    w->gram = d; d += n * n;
    w->mat = d; d += n * n;
    w->solver = d;
    w->classification = w->imem;
    w->active = w->imem + n;
    w->order = w->imem + 2 * n;

    for (size_t t = 0; t < n; t++) {
        w->loss_weight[t] = loss_weights ? loss_weights[t] : 1.0;
        w->gn_weight[t] = 1.0;
        w->gn_initial_loss[t] = NAN;
        w->dwa_older[t] = NAN;
        w->dwa_newer[t] = NAN;
    }
    *out = w;
    return MTL_OK;
}

void mtli_weighting_destroy(mtli_weighting *w, const mtli_settings *s)
{
    if (!w) return;
    mtli_free(s, w->dmem);
    mtli_free(s, w->imem);
    mtli_free(s, w);
}

bool mtli_weighting_method_needs_gram(mtl_weighting method)
{
    return method >= MTL_WEIGHTING_GRADNORM; /* GradNorm and the gradient-surgery methods */
}

bool mtli_weighting_needs_gram(const mtli_weighting *w)
{
    return w && mtli_weighting_method_needs_gram(w->p.method);
}

mtl_status mtli_weighting_set_params(mtli_weighting *w, const mtli_weighting_params *p)
{
    MTLI_CHECK_ARG(w && p, "mtli_weighting_set_params: NULL argument");
    MTLI_TRY(mtli_weighting_check_params(p));
    w->p = *p;
    return MTL_OK;
}

mtl_status mtli_weighting_set_loss_weights(mtli_weighting *w, const double *loss_weights)
{
    MTLI_CHECK_ARG(w && loss_weights, "mtli_weighting_set_loss_weights: NULL argument");
    MTLI_TRY(mtli_check_loss_weights(w->n, loss_weights));
    memcpy(w->loss_weight, loss_weights, (size_t)w->n * sizeof *loss_weights);
    return MTL_OK;
}

mtl_status mtli_weighting_set_classification(mtli_weighting *w, int64_t task, bool classification)
{
    MTLI_CHECK_ARG(w && task >= 0 && task < w->n, "mtli_weighting_set_classification: bad task %lld",
                   (long long)task);
    w->classification[task] = classification ? 1 : 0;
    return MTL_OK;
}

/* ---- loss-based methods -------------------------------------------------- */

/* coef = m * softmax(x) over m entries (max subtracted: no overflow). */
static void mtli_scaled_softmax(int64_t m, const double *x, double *coef)
{
    double mx = x[0], sum = 0.0;
    for (int64_t a = 1; a < m; a++)
        if (x[a] > mx) mx = x[a];
    for (int64_t a = 0; a < m; a++) {
        coef[a] = exp(x[a] - mx);
        sum += coef[a];
    }
    for (int64_t a = 0; a < m; a++) coef[a] *= (double)m / sum;
}

/* Kendall et al. 2018: regression L e^{-s}/2 + s/2 (weight e^{-s}/2),
 * classification L e^{-s} + s/2 (weight e^{-s}). */
static void mtli_uncertainty_weights(const mtli_weighting *w, int64_t m, double *coef)
{
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        double e = exp(-w->log_var[t]);
        coef[a] = w->classification[t] ? e : 0.5 * e;
    }
}

/* One gradient step on s_t for the objective above, with the current loss:
 * regression d/ds = (1 - L e^{-s})/2, classification 1/2 - L e^{-s};
 * both vanish at the optimum (s = log L, resp. log 2L). */
static void mtli_uncertainty_update(mtli_weighting *w, int64_t m)
{
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        double le = w->loss[a] * exp(-w->log_var[t]);
        double grad = w->classification[t] ? 0.5 - le : 0.5 * (1.0 - le);
        double s = w->log_var[t] - w->p.learning_rate * grad;
        w->log_var[t] = fmin(fmax(s, -MTLI_LOGVAR_LIMIT), MTLI_LOGVAR_LIMIT);
    }
}

/* Liu et al. 2019: coef = m softmax(r / T), r_t = L_t(e-1) / L_t(e-2), and
 * equal weights for the first two epochs.  A ratio that is undefined (a
 * task without labels in an epoch) counts as 1. */
static void mtli_dwa_weights(const mtli_weighting *w, int64_t m, double *coef)
{
    if (w->epochs_seen < 2) {
        for (int64_t a = 0; a < m; a++) coef[a] = 1.0;
        return;
    }
    double *x = w->vec;
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        double r = w->dwa_newer[t] / w->dwa_older[t];
        if (!isfinite(r) || !(w->dwa_older[t] > 0.0)) r = 1.0;
        x[a] = r / w->p.dwa_temperature;
    }
    mtli_scaled_softmax(m, x, coef);
}

/* Geometric mean of the losses, GM = (prod L)^(1/m): its gradient weights
 * the tasks by GM / (m L_t); times m for the equal-weighting scale. */
static void mtli_gls_weights(const mtli_weighting *w, int64_t m, double *coef)
{
    double mean_log = 0.0;
    for (int64_t a = 0; a < m; a++) mean_log += log(fmax(w->loss[a], MTLI_GLS_LOSS_FLOOR));
    mean_log /= (double)m;
    for (int64_t a = 0; a < m; a++)
        coef[a] = exp(mean_log - log(fmax(w->loss[a], MTLI_GLS_LOSS_FLOOR)));
}

/* Lin et al. 2022: softmax of standard normal draws, scaled to sum m.  The
 * draws are a pure function of (seed, step, task). */
static void mtli_rlw_weights(const mtli_weighting *w, int64_t step, int64_t m, double *coef)
{
    double *x = w->vec;
    for (int64_t a = 0; a < m; a++)
        x[a] = mtli_rng_normal(w->p.seed, MTLI_STREAM_WEIGHTING,
                               ((uint64_t)step << 16) | (uint64_t)w->active[a]);
    mtli_scaled_softmax(m, x, coef);
}

/* ---- GradNorm (Chen et al. 2018) ----------------------------------------- */

static void mtli_gradnorm_weights(const mtli_weighting *w, int64_t m, double *coef)
{
    for (int64_t a = 0; a < m; a++) coef[a] = w->gn_weight[w->active[a]];
}

/* One step on the weights for L_grad = sum_t |G_t - Gbar r_t^alpha| with
 * G_t = w_t |g_t| (|g_t| = sqrt(G_tt)), r_t = (L_t/L_t(0)) / mean ratio and
 * the target Gbar r_t^alpha held constant (as in the paper): the gradient
 * is sign(G_t - target_t) |g_t|.  It is divided by the mean norm, so the
 * learning rate does not depend on the gradients' scale (batch size,
 * target units).  Then floor and renormalise to sum n. */
static void mtli_gradnorm_update(mtli_weighting *w, int64_t m, const double *raw_losses)
{
    double *norm = w->vec, *ratio = w->vec + w->n;
    int64_t k = 0; /* tasks with a recorded initial loss */
    double sum_g = 0.0, sum_ratio = 0.0, sum_norm = 0.0;
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        if (isnan(w->gn_initial_loss[t])) {
            if (raw_losses[t] > 0.0) w->gn_initial_loss[t] = raw_losses[t];
            else continue;
        }
        norm[a] = sqrt(w->gram[a * m + a]);
        ratio[a] = raw_losses[t] / w->gn_initial_loss[t];
        sum_g += w->gn_weight[t] * norm[a];
        sum_ratio += ratio[a];
        sum_norm += norm[a];
        k++;
    }
    if (k < 2 || !(sum_norm > 0.0) || !(sum_ratio > 0.0)) return;
    double g_bar = sum_g / (double)k, mean_ratio = sum_ratio / (double)k;
    double mean_norm = sum_norm / (double)k;
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        if (isnan(w->gn_initial_loss[t])) continue;
        double target = g_bar * pow(ratio[a] / mean_ratio, w->p.gradnorm_alpha);
        double diff = w->gn_weight[t] * norm[a] - target;
        double sign = diff > 0.0 ? 1.0 : diff < 0.0 ? -1.0 : 0.0;
        double nw = w->gn_weight[t] - w->p.learning_rate * sign * norm[a] / mean_norm;
        w->gn_weight[t] = fmax(nw, MTLI_GRADNORM_FLOOR);
    }
    double total = 0.0;
    for (int64_t t = 0; t < w->n; t++) total += w->gn_weight[t];
    for (int64_t t = 0; t < w->n; t++) w->gn_weight[t] *= (double)w->n / total;
}

/* ---- gradient surgery on the Gram matrix --------------------------------- */

/* Yu et al. 2020.  Each task's gradient g_i, starting as itself, is
 * projected in a random order onto the normal plane of every other task's
 * (original) gradient it conflicts with; the update is the sum.  Tracked as
 * coefficient vectors c_i: <c_i . g, g_j> = (G c_i)_j. */
static void mtli_pcgrad(const mtli_weighting *w, int64_t step, int64_t m, double *coef)
{
    const double *g = w->gram;
    double *c = w->vec;
    int64_t *order = w->order;
    for (int64_t a = 0; a < m; a++) coef[a] = 0.0;
    for (int64_t i = 0; i < m; i++) {
        /* Fisher-Yates over the other tasks, draws keyed by (step, i, k). */
        int64_t k_n = 0;
        for (int64_t j = 0; j < m; j++)
            if (j != i) order[k_n++] = j;
        for (int64_t k = k_n - 1; k > 0; k--) {
            uint64_t ctr = ((uint64_t)step << 16) | ((uint64_t)w->active[i] << 8) | (uint64_t)k;
            int64_t r = (int64_t)(mtli_rng_uniform(w->p.seed, MTLI_STREAM_WEIGHTING, ctr) * (double)(k + 1));
            if (r > k) r = k;
            int64_t tmp = order[k];
            order[k] = order[r];
            order[r] = tmp;
        }
        for (int64_t a = 0; a < m; a++) c[a] = a == i ? 1.0 : 0.0;
        for (int64_t k = 0; k < k_n; k++) {
            int64_t j = order[k];
            double dot = 0.0;
            for (int64_t a = 0; a < m; a++) dot += g[j * m + a] * c[a];
            if (dot < 0.0 && g[j * m + j] > 0.0) c[j] -= dot / g[j * m + j];
        }
        for (int64_t a = 0; a < m; a++) coef[a] += c[a];
    }
}

/* Sener & Koltun 2018: the min-norm point of the convex hull. */
static void mtli_mgda(const mtli_weighting *w, int64_t m, double *coef)
{
    mtli_minnorm_simplex(m, w->gram, coef, w->solver);
    for (int64_t a = 0; a < m; a++) coef[a] *= (double)m;
}

/* Liu et al. 2021: d = g0 + (c |g0| / |g_w|) g_w with w from the dual,
 * g0 the mean gradient, rescaled by 1/(1 + c^2) as the authors' code. */
static void mtli_cagrad(const mtli_weighting *w, int64_t m, double *coef)
{
    double c = w->p.cagrad_c;
    double *wt = w->vec, *h = w->vec + w->n;
    mtli_cagrad_dual(m, w->gram, c, wt, w->solver);
    double g0_sq = 0.0;
    for (int64_t a = 0; a < m; a++)
        for (int64_t b = 0; b < m; b++) g0_sq += w->gram[a * m + b];
    g0_sq /= (double)(m * m);
    for (int64_t a = 0; a < m; a++) {
        h[a] = 0.0;
        for (int64_t b = 0; b < m; b++) h[a] += w->gram[a * m + b] * wt[b];
    }
    double gw_sq = 0.0;
    for (int64_t a = 0; a < m; a++) gw_sq += wt[a] * h[a];
    double gw = sqrt(fmax(gw_sq, 0.0));
    /* g_w = 0: the mean gradient is already conflict-averse; no push. */
    double lambda = gw > 1e-12 * sqrt(mtli_gram_scale(m, w->gram)) ? c * sqrt(fmax(g0_sq, 0.0)) / gw : 0.0;
    for (int64_t a = 0; a < m; a++)
        coef[a] = (double)m * (1.0 / (double)m + lambda * wt[a]) / (1.0 + c * c);
}

/* Liu et al. 2021 (IMTL-G): the combination g = sum alpha_t g_t, sum alpha
 * = 1, whose projections on every unit task gradient u_t = g_t/|g_t| are
 * equal.  <g, u_t> = (G alpha)_t / |g_t| = s for all t; with the cosine
 * matrix C = N^{-1} G N^{-1} (N = diag |g_t|) that is C (N alpha) = s 1, so
 * alpha = N^{-1} C^{-1} 1, normalised to sum 1: one Cholesky solve on a
 * unit-diagonal matrix (the same alpha as the paper's (T-1)-dimensional
 * system).  A singular C (collinear gradients) gets a ridge of 1e-10, then
 * 1e-6; if that fails too, alpha_t proportional to 1/|g_t|. */
static void mtli_imtl_g(const mtli_weighting *w, int64_t m, double *coef)
{
    static const double ridges[] = { 0.0, 1e-10, 1e-6 };
    const double *g = w->gram;
    double *norm = w->vec, *x = w->vec + w->n, *a = w->mat;
    for (int64_t t = 0; t < m; t++) norm[t] = sqrt(g[t * m + t]);
    for (size_t r = 0; r < sizeof ridges / sizeof ridges[0]; r++) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < m; j++)
                a[i * m + j] = (i == j ? 1.0 + ridges[r] : g[i * m + j] / (norm[i] * norm[j]));
        if (!mtli_cholesky_factor(m, a, m)) continue;
        for (int64_t t = 0; t < m; t++) x[t] = 1.0;
        mtli_cholesky_solve(m, a, m, x);
        double sum = 0.0;
        for (int64_t t = 0; t < m; t++) {
            x[t] /= norm[t];
            sum += x[t];
        }
        if (!(fabs(sum) > 0.0) || !isfinite(sum)) continue;
        for (int64_t t = 0; t < m; t++) coef[t] = (double)m * x[t] / sum;
        return;
    }
    double sum = 0.0;
    for (int64_t t = 0; t < m; t++) sum += 1.0 / norm[t];
    for (int64_t t = 0; t < m; t++) coef[t] = (double)m * (1.0 / norm[t]) / sum;
}

/* Quinton & Rey 2024 (UPGrad): project each g_i onto the dual cone of the
 * task gradients and average.  Projection i is J^T v with
 * v = argmin v^T G v s.t. v >= e_i/m (Prop. 1), solved on the
 * trace-normalised Gram.  torchjd always adds a ridge (1e-4) because its
 * float32 Gram may be slightly indefinite; ours is accumulated in double,
 * so the ridge is added only if a factorisation fails (collinear or more
 * tasks than dimensions), first MTLI_UPGRAD_REG, then 1e-4: the result is
 * then exactly non-conflicting up to rounding.  Times m for the EW scale. */
static void mtli_upgrad(const mtli_weighting *w, int64_t m, double *coef)
{
    static const double ridges[] = { 0.0, MTLI_UPGRAD_REG, 1e-4 };
    double *gn = w->mat, *lower = w->vec, *v = w->vec + w->n;
    double trace = 0.0;
    for (int64_t a = 0; a < m; a++) trace += w->gram[a * m + a];
    for (int64_t a = 0; a < m * m; a++) gn[a] = w->gram[a] / trace;
    for (int64_t a = 0; a < m; a++) coef[a] = 0.0;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t a = 0; a < m; a++) lower[a] = a == i ? 1.0 / (double)m : 0.0;
        double added = 0.0;
        for (size_t r = 0; r < sizeof ridges / sizeof ridges[0]; r++) {
            for (int64_t a = 0; a < m; a++) gn[a * m + a] += ridges[r] - added;
            added = ridges[r];
            if (mtli_box_qp(m, gn, lower, v, w->solver) >= 0) break;
            /* else v is the last feasible iterate: kept if every ridge fails */
        }
        for (int64_t a = 0; a < m; a++) gn[a * m + a] -= added;
        for (int64_t a = 0; a < m; a++) coef[a] += (double)m * v[a];
    }
}

/* ---- the step ------------------------------------------------------------ */

/* Gather the tasks taking part (labels present, weight > 0; for surgery
 * methods also a non-zero gradient), with losses and Gram pre-scaled by the
 * loss weights.  Validates what it reads. */
static mtl_status mtli_weighting_gather(mtli_weighting *w, const double *losses, const double *gram,
                                        const bool *has_label, bool surgery, int64_t *m_out)
{
    int64_t n = w->n, m = 0;
    for (int64_t t = 0; t < n; t++) {
        if (!has_label[t] || !(w->loss_weight[t] > 0.0)) continue;
        if (!isfinite(losses[t]))
            return mtli_fail(MTL_ERR_NON_FINITE, "loss weighting: task %lld has loss %g",
                             (long long)t, losses[t]);
        if (gram) {
            for (int64_t u = 0; u < n; u++)
                if (!isfinite(gram[t * n + u]))
                    return mtli_fail(MTL_ERR_NON_FINITE,
                                     "loss weighting: gradient Gram entry (%lld, %lld) is %g",
                                     (long long)t, (long long)u, gram[t * n + u]);
            if (gram[t * n + t] < 0.0)
                return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                                 "loss weighting: task %lld has squared gradient norm %g < 0",
                                 (long long)t, gram[t * n + t]);
            if (surgery && gram[t * n + t] == 0.0) continue;
        }
        w->active[m++] = t;
    }
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        w->loss[a] = w->loss_weight[t] * losses[t];
        if (!gram) continue;
        for (int64_t b = 0; b < m; b++) {
            int64_t u = w->active[b];
            w->gram[a * m + b] = w->loss_weight[t] * w->loss_weight[u] * gram[t * n + u];
        }
    }
    *m_out = m;
    return MTL_OK;
}

/* Move the learned state (uncertainty, GradNorm) with the tasks gathered
 * for a step; the other methods learn nothing per step. */
static void mtli_weighting_learn(mtli_weighting *w, int64_t m, const double *losses)
{
    if (w->p.method == MTL_WEIGHTING_UNCERTAINTY) mtli_uncertainty_update(w, m);
    if (w->p.method == MTL_WEIGHTING_GRADNORM) mtli_gradnorm_update(w, m, losses);
}

/* The weights of one step; update: also move the learned state. */
static mtl_status mtli_weighting_run(mtli_weighting *w, int64_t step, const double *losses,
                                     const double *gram, const bool *has_label, double *rep_weights,
                                     double *head_weights, bool update)
{
    MTLI_CHECK_ARG(w && losses && has_label && rep_weights && head_weights,
                   "mtli_weighting_step: NULL argument");
    MTLI_CHECK_ARG(step >= 0 && step < MTLI_MAX_STEPS, "loss weighting: step %lld out of range",
                   (long long)step);
    mtl_weighting method = w->p.method;
    bool surgery = method >= MTL_WEIGHTING_PCGRAD;
    if (mtli_weighting_needs_gram(w) && !gram)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                         "loss weighting: method %s needs the task-gradient Gram matrix",
                         mtli_weighting_name(method));
    int64_t m = 0;
    MTLI_TRY(mtli_weighting_gather(w, losses, mtli_weighting_needs_gram(w) ? gram : NULL,
                                   has_label, surgery, &m));

    double *coef = w->coef;
    if (m > 0) {
        switch (method) {
        case MTL_WEIGHTING_FIXED:
            for (int64_t a = 0; a < m; a++) coef[a] = 1.0;
            break;
        case MTL_WEIGHTING_UNCERTAINTY: mtli_uncertainty_weights(w, m, coef); break;
        case MTL_WEIGHTING_DWA: mtli_dwa_weights(w, m, coef); break;
        case MTL_WEIGHTING_GLS: mtli_gls_weights(w, m, coef); break;
        case MTL_WEIGHTING_RLW: mtli_rlw_weights(w, step, m, coef); break;
        case MTL_WEIGHTING_GRADNORM: mtli_gradnorm_weights(w, m, coef); break;
        case MTL_WEIGHTING_PCGRAD: mtli_pcgrad(w, step, m, coef); break;
        case MTL_WEIGHTING_MGDA: mtli_mgda(w, m, coef); break;
        case MTL_WEIGHTING_CAGRAD: mtli_cagrad(w, m, coef); break;
        case MTL_WEIGHTING_IMTL_G: mtli_imtl_g(w, m, coef); break;
        case MTL_WEIGHTING_UPGRAD: mtli_upgrad(w, m, coef); break;
        }
        for (int64_t a = 0; a < m; a++)
            if (!isfinite(coef[a]))
                return mtli_fail(MTL_ERR_NON_FINITE, "loss weighting: method %s gave weight %g to task %lld",
                                 mtli_weighting_name(method), coef[a], (long long)w->active[a]);
    }

    /* Coefficients on the unweighted task gradients: times the loss weight. */
    for (int64_t t = 0; t < w->n; t++) {
        rep_weights[t] = 0.0;
        /* Surgery methods leave heads alone: every labelled head keeps its loss. */
        head_weights[t] = surgery && has_label[t] ? w->loss_weight[t] : 0.0;
    }
    for (int64_t a = 0; a < m; a++) {
        int64_t t = w->active[a];
        rep_weights[t] = coef[a] * w->loss_weight[t];
        if (!surgery) head_weights[t] = rep_weights[t];
    }

    /* Learned weights move after they were used (as in both papers). */
    if (update) mtli_weighting_learn(w, m, losses);
    return MTL_OK;
}

mtl_status mtli_weighting_step(mtli_weighting *w, int64_t step, const double *losses,
                               const double *gram, const bool *has_label, double *rep_weights,
                               double *head_weights)
{
    return mtli_weighting_run(w, step, losses, gram, has_label, rep_weights, head_weights, true);
}

mtl_status mtli_weighting_peek(mtli_weighting *w, int64_t step, const double *losses,
                               const double *gram, const bool *has_label, double *rep_weights,
                               double *head_weights)
{
    return mtli_weighting_run(w, step, losses, gram, has_label, rep_weights, head_weights, false);
}

mtl_status mtli_weighting_commit(mtli_weighting *w, const double *losses, const double *gram,
                                 const bool *has_label)
{
    MTLI_CHECK_ARG(w && losses && has_label, "mtli_weighting_commit: NULL argument");
    if (w->p.method != MTL_WEIGHTING_UNCERTAINTY && w->p.method != MTL_WEIGHTING_GRADNORM) return MTL_OK;
    if (mtli_weighting_needs_gram(w) && !gram)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "loss weighting: method %s needs the task-gradient Gram matrix",
                         mtli_weighting_name(w->p.method));
    int64_t m = 0; /* gather again: the scratch may have been used since the peek */
    MTLI_TRY(mtli_weighting_gather(w, losses, mtli_weighting_needs_gram(w) ? gram : NULL, has_label, false, &m));
    mtli_weighting_learn(w, m, losses);
    return MTL_OK;
}



void mtli_weighting_epoch_end(mtli_weighting *w, const double *epoch_losses)
{
    if (!w || !epoch_losses) return;
    memcpy(w->dwa_older, w->dwa_newer, (size_t)w->n * sizeof(double));
    memcpy(w->dwa_newer, epoch_losses, (size_t)w->n * sizeof(double));
    w->epochs_seen++;
}

/* ---- state for checkpoints ----------------------------------------------
 * Little-endian, fixed width (docs/loss-weighting.md):
 *   u32 magic "MTLW", u32 version 1, u32 method (when saved; every
 *   method's state is kept, so loading does not depend on it), u32 reserved 0,
 *   i64 n_tasks, i64 epochs_seen,
 *   f64[n] log_var, f64[n] gradnorm weight, f64[n] gradnorm initial loss
 *   (NaN = not yet recorded), f64[n] DWA older, f64[n] DWA newer. */

size_t mtli_weighting_state_size(const mtli_weighting *w)
{
    return w ? MTLI_WSTATE_HEADER + MTLI_WSTATE_ARRAYS * 8u * (size_t)w->n : 0;
}

/* The state arrays in file order. */
static void mtli_weighting_arrays(const mtli_weighting *w, double *arrays[MTLI_WSTATE_ARRAYS])
{
    arrays[0] = w->log_var;
    arrays[1] = w->gn_weight;
    arrays[2] = w->gn_initial_loss;
    arrays[3] = w->dwa_older;
    arrays[4] = w->dwa_newer;
}

mtl_status mtli_weighting_save(const mtli_weighting *w, uint8_t *buf, size_t cap)
{
    MTLI_CHECK_ARG(w && buf, "mtli_weighting_save: NULL argument");
    size_t size = mtli_weighting_state_size(w);
    if (cap < size)
        return mtli_fail(MTL_ERR_SHAPE, "loss-weighting state needs %zu bytes, buffer has %zu", size, cap);
    mtli_put_u32(buf, MTLI_WSTATE_MAGIC);
    mtli_put_u32(buf + 4, MTLI_WSTATE_VERSION);
    mtli_put_u32(buf + 8, (uint32_t)w->p.method);
    mtli_put_u32(buf + 12, 0);
    mtli_put_i64(buf + 16, w->n);
    mtli_put_i64(buf + 24, w->epochs_seen);
    double *arrays[MTLI_WSTATE_ARRAYS];
    mtli_weighting_arrays(w, arrays);
    uint8_t *p = buf + MTLI_WSTATE_HEADER;
    for (unsigned k = 0; k < MTLI_WSTATE_ARRAYS; k++)
        for (int64_t t = 0; t < w->n; t++, p += 8) mtli_put_f64(p, arrays[k][t]);
    return MTL_OK;
}

/* Is value x acceptable for state array k?  (NaN marks "not yet".) */
static bool mtli_weighting_value_ok(unsigned k, double x)
{
    switch (k) {
    case 0: return isfinite(x) && fabs(x) <= MTLI_LOGVAR_LIMIT;
    case 1: return isfinite(x) && x > 0.0;
    case 2: return isnan(x) || (isfinite(x) && x > 0.0);
    default: return isnan(x) || isfinite(x);
    }
}

mtl_status mtli_weighting_load(mtli_weighting *w, const uint8_t *buf, size_t n)
{
    static const char *const names[MTLI_WSTATE_ARRAYS] = {
        "uncertainty log-variance", "GradNorm weight", "GradNorm initial loss", "DWA loss",
        "DWA loss"
    };
    MTLI_CHECK_ARG(w && buf, "mtli_weighting_load: NULL argument");
    size_t size = mtli_weighting_state_size(w);
    if (n < MTLI_WSTATE_HEADER || mtli_get_u32(buf) != MTLI_WSTATE_MAGIC)
        return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state: bad magic or truncated header");
    uint32_t version = mtli_get_u32(buf + 4);
    if (version != MTLI_WSTATE_VERSION)
        return mtli_fail(MTL_ERR_VERSION, "loss-weighting state: version %u not supported (this build reads %u)",
                         version, MTLI_WSTATE_VERSION);
    uint32_t method = mtli_get_u32(buf + 8);
    if (method < MTL_WEIGHTING_FIXED || method > MTL_WEIGHTING_UPGRAD)
        return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state: unknown method id %u", method);
    int64_t n_tasks = mtli_get_i64(buf + 16);
    if (n_tasks != w->n)
        return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state has %lld tasks, the model %lld",
                         (long long)n_tasks, (long long)w->n);
    if (n != size)
        return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state is %zu bytes, expected %zu", n, size);
    int64_t epochs = mtli_get_i64(buf + 24);
    if (epochs < 0 || mtli_get_u32(buf + 12) != 0)
        return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state: bad header fields");
    /* Validate everything before changing anything. */
    const uint8_t *p = buf + MTLI_WSTATE_HEADER;
    for (unsigned k = 0; k < MTLI_WSTATE_ARRAYS; k++)
        for (int64_t t = 0; t < w->n; t++, p += 8)
            if (!mtli_weighting_value_ok(k, mtli_get_f64(p)))
                return mtli_fail(MTL_ERR_FORMAT, "loss-weighting state: task %lld has %s %g",
                                 (long long)t, names[k], mtli_get_f64(p));
    double *arrays[MTLI_WSTATE_ARRAYS];
    mtli_weighting_arrays(w, arrays);
    p = buf + MTLI_WSTATE_HEADER;
    for (unsigned k = 0; k < MTLI_WSTATE_ARRAYS; k++)
        for (int64_t t = 0; t < w->n; t++, p += 8) arrays[k][t] = mtli_get_f64(p);
    w->epochs_seen = epochs;
    return MTL_OK;
}
