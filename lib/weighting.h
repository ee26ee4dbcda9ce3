/*
 * weighting.h -- internals of the loss-weighting module (not installed):
 * the small dense solvers that gradient-based methods run on the T x T
 * Gram matrix of the task gradients (weighting_solvers.c).
 *
 * Every routine works in double on row-major n x n matrices, allocates
 * nothing (the caller passes `scratch` of MTLI_WSOLVE_SCRATCH(n)
 * doubles), runs a fixed sequence of operations (bitwise deterministic)
 * and stops at a documented iteration cap.  They never fail: on a
 * degenerate input they return a documented fallback.
 */
#ifndef MTL_WEIGHTING_H
#define MTL_WEIGHTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Doubles of scratch any solver below needs for n tasks. */
#define MTLI_WSOLVE_SCRATCH(n) ((size_t)(n) * (size_t)(n) + 8 * (size_t)(n))

/* Largest diagonal entry of G (the squared norm of the longest gradient):
 * the scale that relative tolerances refer to. */
double mtli_gram_scale(int64_t n, const double *g);

/* Cholesky factorisation in place (lower triangle of the n x n matrix a,
 * leading dimension lda).  Returns false if a pivot is <= 1e-12 * the
 * largest diagonal entry (not numerically positive definite). */
bool mtli_cholesky_factor(int64_t n, double *a, int64_t lda);
/* Solve L L^T x = b in place (b becomes x), L from mtli_cholesky_factor. */
void mtli_cholesky_solve(int64_t n, const double *l, int64_t lda, double *b);

/* The point gamma a1 + (1 - gamma) a2 of the segment between two vectors
 * closest to the origin, from their Gram entries <a1,a1> = g11,
 * <a1,a2> = g12, <a2,a2> = g22 (Sener & Koltun 2018, Alg. 1).  Returns
 * gamma in [0, 1] (0.5 when the two vectors coincide). */
double mtli_minnorm_segment(double g11, double g12, double g22);

/* MGDA: alpha = argmin alpha^T G alpha over the probability simplex.
 * Start from the best pair (exact two-task solution, which is already the
 * answer for n = 2), then Frank-Wolfe with away steps and exact line
 * search (linear convergence on this problem), stopped when the duality
 * gap is <= 1e-12 * scale or after MTLI_FW_MAX_ITER iterations; finally an
 * active-set polish: on the support found, solve the equality-constrained
 * problem exactly (Cholesky) and keep it if it is feasible, satisfies the
 * optimality conditions and is no worse.  Returns the iterations used. */
#define MTLI_FW_MAX_ITER 1000
int64_t mtli_minnorm_simplex(int64_t n, const double *g, double *alpha, double *scratch);

/* CAGrad's dual over the simplex (Liu et al. 2021):
 *   w = argmin_w  w^T G b + c sqrt(b^T G b) sqrt(w^T G w),  b = 1/n,
 * by Frank-Wolfe with away steps and an exact line search (the stationary
 * point of the convex 1-D objective in closed form, compared with the end
 * points), stopped when the gap is <= 1e-12 * scale or after
 * MTLI_FW_MAX_ITER iterations.  Returns the iterations used. */
int64_t mtli_cagrad_dual(int64_t n, const double *g, double c, double *w, double *scratch);

/* Bound-constrained QP  v = argmin v^T G v  subject to v >= lower, for a
 * symmetric positive definite G (UPGrad's projection onto the dual cone,
 * Quinton & Rey 2024, Prop. 1).  Primal active-set method (Nocedal &
 * Wright, Alg. 16.3) from the feasible start v = lower: finite and exact
 * up to rounding; capped at MTLI_ACTIVE_SET_MAX_ITER(n) iterations.
 * Returns the iterations used, or -1 if a Cholesky factorisation failed
 * (v then holds the last feasible iterate). */
#define MTLI_ACTIVE_SET_MAX_ITER(n) (10 * (n) + 100)
int64_t mtli_box_qp(int64_t n, const double *g, const double *lower, double *v, double *scratch);

#endif /* MTL_WEIGHTING_H */
