/* weighting_solvers.c -- the small dense problems of gradient-based loss
 * weighting, solved on the T x T Gram matrix G (G_ij = <g_i, g_j>) in
 * plain C: Cholesky solves, MGDA's min-norm point (Frank-Wolfe),
 * CAGrad's dual (Frank-Wolfe) and UPGrad's bound-constrained QPs (active
 * set).  T is small (2..256), so clarity beats blocking; every loop runs in
 * a fixed order, so results are bitwise reproducible. */
#include "weighting.h"

#include <math.h>
#include <string.h>

/* Relative tolerances, as fractions of mtli_gram_scale (see weighting.h). */
#define MTLI_GAP_TOL 1e-12  /* Frank-Wolfe duality gap */
#define MTLI_KKT_TOL 1e-12  /* multiplier sign tests */

double mtli_gram_scale(int64_t n, const double *g)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (g[i * n + i] > s) s = g[i * n + i];
    return s;
}

/* y = G x for an n x n row-major G. */
static void mtli_symv(int64_t n, const double *g, const double *x, double *y)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += g[i * n + j] * x[j];
        y[i] = s;
    }
}

static double mtli_dot(int64_t n, const double *a, const double *b)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- linear solves ------------------------------------------------------- */

bool mtli_cholesky_factor(int64_t n, double *a, int64_t lda)
{
    double max_diag = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (a[i * lda + i] > max_diag) max_diag = a[i * lda + i];
    if (!(max_diag > 0.0) || !isfinite(max_diag)) return false;
    double tiny = 1e-12 * max_diag; /* pivots below: condition number > ~1e12 */
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * lda + j];
        for (int64_t k = 0; k < j; k++) d -= a[j * lda + k] * a[j * lda + k];
        if (!(d > tiny)) return false;
        d = sqrt(d);
        a[j * lda + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double s = a[i * lda + j];
            for (int64_t k = 0; k < j; k++) s -= a[i * lda + k] * a[j * lda + k];
            a[i * lda + j] = s / d;
        }
    }
    return true;
}

void mtli_cholesky_solve(int64_t n, const double *l, int64_t lda, double *b)
{
    for (int64_t i = 0; i < n; i++) { /* L y = b */
        double s = b[i];
        for (int64_t k = 0; k < i; k++) s -= l[i * lda + k] * b[k];
        b[i] = s / l[i * lda + i];
    }
    for (int64_t i = n - 1; i >= 0; i--) { /* L^T x = y */
        double s = b[i];
        for (int64_t k = i + 1; k < n; k++) s -= l[k * lda + i] * b[k];
        b[i] = s / l[i * lda + i];
    }
}

/* ---- MGDA: min-norm point of the convex hull ----------------------------- */

double mtli_minnorm_segment(double g11, double g12, double g22)
{
    /* d/dgamma |gamma a1 + (1-gamma) a2|^2 = 0  =>
     * gamma = <a2, a2 - a1> / |a1 - a2|^2, clipped to the segment. */
    double denom = g11 + g22 - 2.0 * g12;
    if (!(denom > 1e-14 * fmax(g11, g22))) return 0.5;
    double gamma = (g22 - g12) / denom;
    if (gamma < 0.0) return 0.0;
    if (gamma > 1.0) return 1.0;
    return gamma;
}

/* Keep the Frank-Wolfe answer unless the exact solution on its support is
 * feasible, optimal (KKT: (G a)_j >= a^T G a off the support) and no worse. */
static void mtli_minnorm_polish(int64_t n, const double *g, double *alpha, double *scratch)
{
    double *a = scratch;       /* m x m */
    double *x = a + n * n;     /* n */
    double *cand = x + n;      /* n */
    double *h = cand + n;      /* n */
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (alpha[i] <= 0.0) continue;
        int64_t mj = 0;
        for (int64_t j = 0; j < n; j++)
            if (alpha[j] > 0.0) a[m * n + mj++] = g[i * n + j];
        x[m++] = 1.0;
    }
    if (!mtli_cholesky_factor(m, a, n)) return;
    mtli_cholesky_solve(m, a, n, x);
    double sum = 0.0;
    for (int64_t k = 0; k < m; k++) {
        if (!(x[k] > 0.0)) return; /* the support is not the optimal one */
        sum += x[k];
    }
    for (int64_t i = 0, k = 0; i < n; i++) cand[i] = alpha[i] > 0.0 ? x[k++] / sum : 0.0;

    double scale = mtli_gram_scale(n, g), tol = MTLI_KKT_TOL * scale;
    mtli_symv(n, g, cand, h);
    double f_new = mtli_dot(n, cand, h);
    for (int64_t j = 0; j < n; j++)
        if (cand[j] == 0.0 && h[j] < f_new - tol) return;
    mtli_symv(n, g, alpha, h);
    if (f_new > mtli_dot(n, alpha, h) + tol) return;
    memcpy(alpha, cand, (size_t)n * sizeof *alpha);
}

/* Move w along the Frank-Wolfe direction e_k - w (away = false) or the
 * away direction w - e_k (away = true) by gamma <= gmax.  An away step that
 * reaches gmax, or leaves a rounding residue, drops vertex k exactly; the
 * weights are then renormalised so rounding never leaves the simplex. */
static void mtli_fw_move(int64_t n, double *w, bool away, int64_t k, double gamma, double gmax)
{
    if (!away) {
        for (int64_t i = 0; i < n; i++) w[i] *= 1.0 - gamma;
        w[k] += gamma;
    } else {
        for (int64_t i = 0; i < n; i++) w[i] *= 1.0 + gamma;
        w[k] -= gamma;
        if (gamma >= gmax * (1.0 - 1e-12) || w[k] < 1e-15) w[k] = 0.0;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (w[i] < 0.0) w[i] = 0.0;
        sum += w[i];
    }
    for (int64_t i = 0; i < n; i++) w[i] /= sum;
}

/* The Frank-Wolfe vertex (smallest gradient entry) and the away vertex
 * (largest gradient entry on the support); the first index on ties. */
static void mtli_fw_vertices(int64_t n, const double *grad, const double *w, int64_t *s, int64_t *v)
{
    *s = 0;
    *v = -1;
    for (int64_t i = 1; i < n; i++)
        if (grad[i] < grad[*s]) *s = i;
    for (int64_t i = 0; i < n; i++)
        if (w[i] > 0.0 && (*v < 0 || grad[i] > grad[*v])) *v = i;
}

/* Exact line search of alpha^T G alpha along a direction (see mtli_fw_move):
 * f + 2 gamma dh + gamma^2 dgd on [0, gmax]. */
static double mtli_minnorm_line(int64_t n, const double *g, const double *alpha, const double *h,
                                double f, bool away, int64_t k, double *gmax)
{
    double dh, dgd;
    if (!away) {
        dh = h[k] - f;
        dgd = g[k * n + k] - 2.0 * h[k] + f;
        *gmax = 1.0;
    } else {
        if (!(alpha[k] < 1.0)) return 0.0; /* a vertex has no away direction */
        dh = f - h[k];
        dgd = f - 2.0 * h[k] + g[k * n + k];
        *gmax = alpha[k] / (1.0 - alpha[k]);
    }
    if (!(dh < 0.0)) return 0.0; /* not a descent direction */
    double gamma = dgd > 0.0 ? -dh / dgd : *gmax;
    return fmin(gamma, *gmax);
}

int64_t mtli_minnorm_simplex(int64_t n, const double *g, double *alpha, double *scratch)
{
    if (n == 1) {
        alpha[0] = 1.0;
        return 0;
    }
    /* Start at the best pair (exact for n = 2). */
    int64_t bi = 0, bj = 1;
    double best_gamma = 0.5, best_cost = INFINITY;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double gii = g[i * n + i], gij = g[i * n + j], gjj = g[j * n + j];
            double gm = mtli_minnorm_segment(gii, gij, gjj);
            double cost = gm * gm * gii + 2.0 * gm * (1.0 - gm) * gij + (1.0 - gm) * (1.0 - gm) * gjj;
            if (cost < best_cost) {
                best_cost = cost;
                bi = i;
                bj = j;
                best_gamma = gm;
            }
        }
    for (int64_t i = 0; i < n; i++) alpha[i] = 0.0;
    alpha[bi] = best_gamma;
    alpha[bj] = 1.0 - best_gamma;
    if (n == 2) return 0;

    double tol = MTLI_GAP_TOL * mtli_gram_scale(n, g);
    double *h = scratch; /* G alpha */
    int64_t it = 0;
    for (; it < MTLI_FW_MAX_ITER; it++) {
        mtli_symv(n, g, alpha, h);
        double f = mtli_dot(n, alpha, h);
        int64_t s, v;
        mtli_fw_vertices(n, h, alpha, &s, &v);
        double gap_fw = f - h[s], gap_away = h[v] - f;
        if (gap_fw <= tol) break; /* f - f* <= gap_fw: optimal to tolerance */
        /* The direction with the larger gap first; the other if it stalls. */
        bool away = gap_away > gap_fw;
        double gmax = 0.0;
        double gamma = mtli_minnorm_line(n, g, alpha, h, f, away, away ? v : s, &gmax);
        if (!(gamma > 0.0)) {
            away = !away;
            gamma = mtli_minnorm_line(n, g, alpha, h, f, away, away ? v : s, &gmax);
        }
        if (!(gamma > 0.0)) break;
        mtli_fw_move(n, alpha, away, away ? v : s, gamma, gmax);
    }
    mtli_minnorm_polish(n, g, alpha, scratch);
    return it;
}

/* ---- CAGrad's dual ------------------------------------------------------- */

/* The dual objective along a direction d from w:
 * phi(gamma) = w.p + gamma d.p + c_eff sqrt(q + 2 gamma dh + gamma^2 dgd + eps). */
typedef struct mtli_cagrad_line {
    double wp, dp;       /* w.p and d.p */
    double q, dh, dgd;   /* w^T G w, d^T G w, d^T G d */
    double c_eff, eps;   /* c |g0|, smoothing of the square root at 0 */
} mtli_cagrad_line;

static double mtli_cagrad_phi(const mtli_cagrad_line *l, double gamma)
{
    double quad = l->q + 2.0 * gamma * l->dh + gamma * gamma * l->dgd;
    if (quad < 0.0) quad = 0.0;
    return l->wp + gamma * l->dp + l->c_eff * sqrt(quad + l->eps);
}

/* Exact minimiser of the convex phi on [0, gmax].  phi'(gamma) = 0 means
 * (dh + gamma dgd) / sqrt(Q) = k with k = -dp / c_eff; squaring gives
 * (dgd - k^2) (dgd gamma^2 + 2 dh gamma) + dh^2 - k^2 (q + eps) = 0.  The
 * candidates (its roots in range, and the end points) are compared by
 * value, which also discards the root squaring may have added. */
static double mtli_cagrad_line_search(const mtli_cagrad_line *l, double gmax)
{
    double cand[4];
    int nc = 0;
    cand[nc++] = 0.0;
    cand[nc++] = gmax;
    double k = -l->dp / l->c_eff, k2 = k * k, e = l->dgd - k2;
    double qa = e * l->dgd, qb = e * l->dh, qc = l->dh * l->dh - k2 * (l->q + l->eps);
    if (fabs(qa) > 0.0) {
        double disc = qb * qb - qa * qc;
        if (disc >= 0.0) {
            double r = sqrt(disc);
            cand[nc++] = (-qb + r) / qa;
            cand[nc++] = (-qb - r) / qa;
        }
    } else if (fabs(qb) > 0.0) {
        cand[nc++] = -qc / (2.0 * qb);
    }
    double best = 0.0, fbest = mtli_cagrad_phi(l, 0.0);
    for (int i = 1; i < nc; i++) {
        if (!(cand[i] > 0.0 && cand[i] <= gmax)) continue;
        double f = mtli_cagrad_phi(l, cand[i]);
        if (f < fbest) {
            fbest = f;
            best = cand[i];
        }
    }
    return best;
}

/* Fill the line for the FW (toward k) or away (from k) direction. */
static void mtli_cagrad_direction(int64_t n, const double *g, const double *w, const double *p,
                                  const double *h, bool away, int64_t k, mtli_cagrad_line *l,
                                  double *gmax)
{
    if (!away) { /* d = e_k - w */
        l->dp = p[k] - l->wp;
        l->dh = h[k] - l->q;
        l->dgd = g[k * n + k] - 2.0 * h[k] + l->q;
        *gmax = 1.0;
    } else { /* d = w - e_k */
        l->dp = l->wp - p[k];
        l->dh = l->q - h[k];
        l->dgd = l->q - 2.0 * h[k] + g[k * n + k];
        *gmax = w[k] < 1.0 ? w[k] / (1.0 - w[k]) : 0.0;
    }
}

int64_t mtli_cagrad_dual(int64_t n, const double *g, double c, double *w, double *scratch)
{
    double *p = scratch;    /* G b: gradient of the linear term */
    double *h = p + n;      /* G w */
    double *grad = h + n;   /* gradient of the objective */
    double scale = mtli_gram_scale(n, g);
    for (int64_t i = 0; i < n; i++) w[i] = 1.0 / (double)n;
    mtli_symv(n, g, w, p);  /* w = b here */
    mtli_cagrad_line l;
    l.c_eff = c * sqrt(fmax(mtli_dot(n, w, p), 0.0));
    l.eps = 1e-20 * scale;
    if (n == 1 || l.c_eff == 0.0) return 0; /* c = 0: any w; the update is g0 */

    double tol = MTLI_GAP_TOL * scale;
    int64_t it = 0;
    for (; it < MTLI_FW_MAX_ITER; it++) {
        mtli_symv(n, g, w, h);
        l.q = fmax(mtli_dot(n, w, h), 0.0);
        l.wp = mtli_dot(n, w, p);
        double root = sqrt(l.q + l.eps);
        for (int64_t i = 0; i < n; i++) grad[i] = p[i] + l.c_eff * h[i] / root;
        double gw = mtli_dot(n, grad, w);
        int64_t s, v;
        mtli_fw_vertices(n, grad, w, &s, &v);
        double gap_fw = gw - grad[s], gap_away = grad[v] - gw;
        if (gap_fw <= tol) break;
        bool away = gap_away > gap_fw;
        double gmax = 0.0;
        mtli_cagrad_direction(n, g, w, p, h, away, away ? v : s, &l, &gmax);
        double gamma = mtli_cagrad_line_search(&l, gmax);
        if (!(gamma > 0.0)) {
            away = !away;
            mtli_cagrad_direction(n, g, w, p, h, away, away ? v : s, &l, &gmax);
            gamma = mtli_cagrad_line_search(&l, gmax);
        }
        if (!(gamma > 0.0)) break;
        mtli_fw_move(n, w, away, away ? v : s, gamma, gmax);
    }
    return it;
}

/* ---- UPGrad: bound-constrained QP by a primal active-set method ---------- */

int64_t mtli_box_qp(int64_t n, const double *g, const double *lower, double *v, double *scratch)
{
    double *a = scratch;       /* free-set block of G, factored */
    double *x = a + n * n;     /* minimiser on the free set */
    double *grad = x + n;      /* G v: the multipliers of the bound set */
    double *at_bound = grad + n; /* 1.0 = constraint v_i >= lower_i in the working set */
    double tol = MTLI_KKT_TOL * mtli_gram_scale(n, g);

    /* Feasible start with every bound active. */
    for (int64_t i = 0; i < n; i++) {
        v[i] = lower[i];
        at_bound[i] = 1.0;
    }
    int64_t cap = MTLI_ACTIVE_SET_MAX_ITER(n);
    for (int64_t it = 0; it < cap; it++) {
        /* Minimise over the free variables with the bound ones fixed:
         * G_FF x_F = -G_FB lower_B. */
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (at_bound[i] != 0.0) continue;
            double r = 0.0;
            int64_t mj = 0;
            for (int64_t j = 0; j < n; j++) {
                if (at_bound[j] != 0.0)
                    r -= g[i * n + j] * lower[j];
                else
                    a[m * n + mj++] = g[i * n + j];
            }
            x[m++] = r;
        }
        if (m > 0) {
            if (!mtli_cholesky_factor(m, a, n)) return -1;
            mtli_cholesky_solve(m, a, n, x);
        }
        /* Step from v toward x; stop at the first bound crossed. */
        double t = 1.0;
        int64_t blocking = -1;
        for (int64_t i = 0, k = 0; i < n; i++) {
            if (at_bound[i] != 0.0) continue;
            double xi = x[k++];
            if (xi < lower[i] && v[i] > xi) {
                double ti = (v[i] - lower[i]) / (v[i] - xi);
                if (ti < t) {
                    t = ti;
                    blocking = i;
                }
            }
        }
        for (int64_t i = 0, k = 0; i < n; i++) {
            if (at_bound[i] != 0.0) continue;
            v[i] += t * (x[k++] - v[i]);
        }
        if (blocking >= 0) {
            v[blocking] = lower[blocking];
            at_bound[blocking] = 1.0;
            continue;
        }
        /* At the working-set minimiser: release the most negative multiplier. */
        mtli_symv(n, g, v, grad);
        int64_t release = -1;
        for (int64_t i = 0; i < n; i++)
            if (at_bound[i] != 0.0 && grad[i] < -tol && (release < 0 || grad[i] < grad[release]))
                release = i;
        if (release < 0) return it + 1; /* KKT holds: optimal */
        at_bound[release] = 0.0;
    }
    return cap;
}
