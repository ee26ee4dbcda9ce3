/* optim.c -- optimiser updates over the flat parameter buffer.
 *
 * Parameters, gradients and both moments share one layout, so every
 * optimiser is an elementwise loop over [begin, end) ranges (one range per
 * per-task learning-rate multiplier).  This file computes the per-step
 * scalars (bias corrections, step sizes: once per range, in double),
 * walks the ranges and splits the work across threads; the loops
 * themselves, one per instruction set, are in optim_kernels.c.
 *
 * Formulas (PyTorch's conventions, so results can be compared with it):
 *   SGD:   g' = g + wd*p;  v = mu*v + g';  d = nesterov ? g' + mu*v : v
 *          (d = g' when mu = 0);  p -= lr*d
 *   Adam:  g' = g + wd*p (L2 in the gradient);  m = b1*m + (1-b1)*g';
 *          v = b2*v + (1-b2)*g'^2;  p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
 *   AdamW: as Adam with g' = g, and first p *= 1 - lr*wd (decoupled decay)
 *   with bc1 = 1 - b1^t, bc2 = 1 - b2^t, t = updates applied so far + 1.
 * g is the gradient times grad_scale (float multiply; 1 = as is): global-
 * norm clipping is applied here, inside the update, rather than by a pass
 * of its own over the gradient (trainer.c).
 * Adam moments smaller than 1e-30 in magnitude are set to zero.
 * A parameter whose gradient is exactly zero (a dead ReLU unit) would
 * otherwise keep a subnormal first moment forever (0.9 times the smallest
 * subnormal rounds back to it), and subnormal arithmetic is slow on x86:
 * with 10% of W1's 11,587 parameters in that state the update took 6.3 µs
 * instead of 3.0 µs (docs/performance.md).  The update such a moment would
 * make is below lr * 1e-22, far under float resolution of any parameter.
 *
 * Threads (docs/threading.md): every update is elementwise, so any split
 * of the elements gives bitwise the same result; with OpenMP, passes over
 * at least 2 x MTLI_PASS_MIN_PER_THREAD elements run on the handle's
 * threads, each on one contiguous slice.  Without OpenMP, on one. */
#if defined(__clang__)
#pragma clang fp contract(off) /* as in optim_kernels.c: no fused multiply-add */
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "mtl_internal.h"
#include "optim_kernels.h"

#include <math.h>

mtl_status mtli_optim_state_create(mtli_optim_state *st, const mtli_settings *s, int64_t n_params)
{
    if (n_params <= 0)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "optimiser state: %lld parameters",
                         (long long)n_params);
    /* Both moments always exist, so the optimiser kind may be chosen after
     * the trainer is created without allocating. */
    float *m = mtli_calloc(s, (size_t)n_params, sizeof(float));
    float *v = mtli_calloc(s, (size_t)n_params, sizeof(float));
    if (!m || !v) {
        mtli_free(s, m);
        mtli_free(s, v);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "optimiser state: %lld parameters x 2 moments",
                         (long long)n_params);
    }
    st->m = m;
    st->v = v;
    st->t = 0;
    return MTL_OK;
}

void mtli_optim_state_destroy(mtli_optim_state *st, const mtli_settings *s)
{
    if (!st) return;
    mtli_free(s, st->m);
    mtli_free(s, st->v);
    st->m = st->v = NULL;
    st->t = 0;
}

/* ---- the update ----------------------------------------------------------- */

typedef struct update_job {
    const mtli_optim_config *cfg;
    float *params, *m, *v;
    const float *grads;
    double lr, bc1, bc2;
    float grad_scale;
    const mtli_range *ranges;
    int64_t n_ranges;
    int isa;
} update_job;

/* n elements of range r from flat index b (one slice's part of r). */
static void update_span(const update_job *j, int64_t r, int64_t b, int64_t n)
{
    const mtli_optim_config *cfg = j->cfg;
    const double lr_r = j->lr * (double)j->ranges[r].lr_scale;
    switch (cfg->kind) {
    case MTL_OPTIMIZER_SGD: {
        const mtli_sgd_coef c = {
            .gscale = j->grad_scale,
            .lr = (float)lr_r,
            .wd = (float)cfg->weight_decay,
            .mu = (float)cfg->momentum,
            .momentum = cfg->momentum > 0.0,
            .nesterov = cfg->nesterov,
        };
        mtli_sgd_kernel(j->params + b, j->grads + b, j->m + b, n, &c);
        break;
    }
    case MTL_OPTIMIZER_ADAM:
    case MTL_OPTIMIZER_ADAMW: {
        const bool decoupled = cfg->kind == MTL_OPTIMIZER_ADAMW;
        const mtli_adam_coef c = {
            .gscale = j->grad_scale,
            .b1 = (float)cfg->beta1,
            .one_minus_b1 = (float)(1.0 - cfg->beta1),
            .b2 = (float)cfg->beta2,
            .one_minus_b2 = (float)(1.0 - cfg->beta2),
            .step = (float)(lr_r / j->bc1),
            .inv_sqrt_bc2 = (float)(1.0 / sqrt(j->bc2)),
            .eps = (float)cfg->eps,
            .l2 = decoupled ? 0.0f : (float)cfg->weight_decay,
            .keep = decoupled ? (float)(1.0 - lr_r * cfg->weight_decay) : 1.0f,
        };
        mtli_adam_kernel(j->params + b, j->grads + b, j->m + b, j->v + b, n, &c, j->isa);
        break;
    }
    }
}

/* Elements [lo, hi) of the ranges laid end to end. */
static void update_slice(void *ctx, int64_t lo, int64_t hi)
{
    const update_job *j = ctx;
    int64_t start = 0; /* where range r begins in that concatenation */
    for (int64_t r = 0; r < j->n_ranges && start < hi; r++) {
        const int64_t n = j->ranges[r].end - j->ranges[r].begin;
        if (n <= 0) continue;
        const int64_t a = lo > start ? lo : start, b = hi < start + n ? hi : start + n;
        if (a < b) update_span(j, r, j->ranges[r].begin + (a - start), b - a);
        start += n;
    }
}

void mtli_optim_update(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                       const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges)
{
    mtli_optim_update_par(cfg, st, params, grads, lr, ranges, n_ranges, mtli_optim_best_isa(), 1, 1.0f);
}

void mtli_optim_update_isa(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                           const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges,
                           int isa)
{
    mtli_optim_update_par(cfg, st, params, grads, lr, ranges, n_ranges, isa, 1, 1.0f);
}

void mtli_optim_update_par(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                           const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges,
                           int isa, int64_t n_threads, float grad_scale)
{
    st->t++;
    const double t = (double)st->t;
    update_job j = {
        .cfg = cfg,
        .params = params,
        .m = st->m,
        .v = st->v,
        .grads = grads,
        .lr = lr,
        .grad_scale = grad_scale,
        /* Bias corrections once per step, in double (b^t underflows gracefully). */
        .bc1 = 1.0 - pow(cfg->beta1, t),
        .bc2 = 1.0 - pow(cfg->beta2, t),
        .ranges = ranges,
        .n_ranges = n_ranges,
        .isa = isa,
    };
    int64_t total = 0;
    for (int64_t r = 0; r < n_ranges; r++)
        if (ranges[r].end > ranges[r].begin) total += ranges[r].end - ranges[r].begin;
    mtli_run_slices(update_slice, &j, total, n_threads);
}

/* ---- gradient clipping: the sum of squares ---------------------------------- */

/* The sum runs over blocks whose size depends on n only (at least
 * SUMSQ_MIN_BLOCK elements, at most SUMSQ_MAX_BLOCKS blocks): each thread
 * sums whole blocks with the kernel, and the block sums are added in block
 * order afterwards, so the result is the same bits on any number of
 * threads and on every instruction set. */
#define SUMSQ_MIN_BLOCK ((int64_t)1 << 15)
#define SUMSQ_MAX_BLOCKS 1024

typedef struct sumsq_job {
    const float *x;
    int64_t n, block;
    int isa;
    double *sums;
} sumsq_job;

static void sumsq_part(void *ctx, int64_t k, int64_t lo, int64_t hi)
{
    (void)k;
    const sumsq_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        const int64_t begin = b * j->block, len = j->n - begin < j->block ? j->n - begin : j->block;
        j->sums[b] = mtli_sumsq_kernel(j->x + begin, len, j->isa);
    }
}

double mtli_sum_squares(const float *x, int64_t n, int isa, int64_t n_threads)
{
    int64_t block = SUMSQ_MIN_BLOCK;
    if (n > block * SUMSQ_MAX_BLOCKS) block = ((n + SUMSQ_MAX_BLOCKS - 1) / SUMSQ_MAX_BLOCKS + 31) & ~(int64_t)31;
    const int64_t nb = n > 0 ? (n + block - 1) / block : 0;
    double sums[SUMSQ_MAX_BLOCKS];
    sumsq_job j = { .x = x, .n = n, .block = block, .isa = isa, .sums = sums };
    mtli_run_parts(sumsq_part, &j, nb, n_threads);
    double s = 0.0;
    for (int64_t b = 0; b < nb; b++) s += sums[b];
    return s;
}

/* ---- the finite check ----------------------------------------------------- */

typedef struct finite_job {
    const float *x;
    int isa;
    int bad; /* some slice saw a non-finite value (written only as 1) */
} finite_job;

static void finite_slice(void *ctx, int64_t lo, int64_t hi)
{
    finite_job *j = ctx;
    if (!mtli_finite_kernel(j->x + lo, hi - lo, j->isa)) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
        j->bad = 1;
    }
}

bool mtli_all_finite(const float *x, int64_t n, int isa, int64_t n_threads)
{
    finite_job j = { .x = x, .isa = isa, .bad = 0 };
    mtli_run_slices(finite_slice, &j, n, n_threads);
    return j.bad == 0;
}

bool mtli_find_non_finite(const float *x, int64_t rows, int64_t cols, int64_t ld, int64_t num_threads,
                          int64_t *row, int64_t *col)
{
    const int isa = mtli_optim_best_isa();
    bool finite = true;
    if (ld == cols)
        finite = mtli_all_finite(x, rows * cols, isa, mtli_pass_threads(rows * cols, num_threads));
    else
        for (int64_t i = 0; i < rows && finite; i++) finite = mtli_all_finite(x + i * ld, cols, isa, 1);
    if (finite) return false;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (!isfinite(x[i * ld + j])) {
                *row = i;
                *col = j;
                return true;
            }
    return false; /* not reached: the vector pass and this scan agree */
}
