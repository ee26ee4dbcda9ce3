/* optim_kernels.h -- the elementwise loops of the optimiser step, one per
 * instruction set (optim_kernels.c).  optim.c computes the per-step
 * scalars, walks the learning-rate ranges and splits the work across
 * threads; these kernels only see one contiguous span. */
#ifndef MTL_OPTIM_KERNELS_H
#define MTL_OPTIM_KERNELS_H

#include "mtl_internal.h"

/* Per-range scalars of one SGD update (formulas: optim.c). */
typedef struct mtli_sgd_coef {
    float gscale;        /* the gradient is gscale * g (clipping; 1 = none) */
    float lr, wd;
    float mu;
    bool momentum; /* false: plain SGD (vel unused) */
    bool nesterov;
} mtli_sgd_coef;

/* Per-range scalars of one Adam/AdamW update. */
typedef struct mtli_adam_coef {
    float gscale;        /* the gradient is gscale * g (clipping; 1 = none) */
    float b1, one_minus_b1, b2, one_minus_b2;
    float step;          /* lr / bc1 */
    float inv_sqrt_bc2;  /* 1 / sqrt(bc2) */
    float eps;
    float l2;            /* Adam: weight decay added to the gradient */
    float keep;          /* AdamW: 1 - lr * wd (decoupled decay) */
} mtli_adam_coef;

/* n elements from p, g, vel (vel unused without momentum). */
void mtli_sgd_kernel(float *restrict p, const float *restrict g, float *restrict vel, int64_t n,
                     const mtli_sgd_coef *c);
/* n elements; isa: an MTLI_ISA_* this CPU has (at most mtli_optim_best_isa()).
 * Every isa gives bitwise the same p, m and v. */
void mtli_adam_kernel(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                      int64_t n, const mtli_adam_coef *c, int isa);
/* Is every one of x[0..n) finite (neither Inf nor NaN)? */
bool mtli_finite_kernel(const float *x, int64_t n, int isa);
/* Sum of x[i]^2 in double, in one fixed order whatever the isa (32 lanes,
 * optim_kernels.c); NaN or Inf exactly when some x[i] is not finite. */
double mtli_sumsq_kernel(const float *x, int64_t n, int isa);

#endif
