/* diagnostics.c -- task-conflict diagnostics as plain arrays: effective
 * task weights, the norms of the task gradients on the shared
 * representation, their cosine matrix and the number of conflicting pairs,
 * all read off the T x T Gram matrix, plus the lookahead task affinity when
 * the trainer computes it.  Per step and averaged per epoch.
 *
 * Record layout (doubles; see mtl_internal.h):
 *   [0] steps with weights  [1] steps with gradient statistics
 *   [2] steps with affinity [3] epoch tag, weights[T], norms[T],
 *   cosines[T*T], conflicts[1], affinity[T*T].
 *
 * Epochs are closed lazily, so the fit loop needs no hook: the running
 * sums carry the trainer's epoch count from when they began; once
 * trainer->epoch has moved on, they are a finished epoch (read directly
 * from the sums until the next step turns them into the means block). */
#include "mtl_internal.h"

#include <math.h>
#include <string.h>

enum { MTLI_DIAG_HEADER = 4, MTLI_DIAG_EPOCH_TAG = 3 };

static size_t mtli_diag_offset(mtl_diagnostic kind, int64_t n)
{
    size_t t = (size_t)n, off = MTLI_DIAG_HEADER;
    switch (kind) {
    case MTL_DIAG_TASK_WEIGHTS: return off;
    case MTL_DIAG_GRAD_NORMS: return off + t;
    case MTL_DIAG_GRAD_COSINE: return off + 2 * t;
    case MTL_DIAG_CONFLICTS: return off + 2 * t + t * t;
    case MTL_DIAG_AFFINITY: return off + 2 * t + t * t + 1;
    }
    return 0;
}

/* Values in a diagnostic of this kind (0 for an unknown kind). */
static size_t mtli_diag_length(mtl_diagnostic kind, int64_t n)
{
    size_t t = (size_t)n;
    switch (kind) {
    case MTL_DIAG_TASK_WEIGHTS:
    case MTL_DIAG_GRAD_NORMS: return t;
    case MTL_DIAG_GRAD_COSINE:
    case MTL_DIAG_AFFINITY: return t * t;
    case MTL_DIAG_CONFLICTS: return 1;
    }
    return 0;
}

/* Which header count says whether a kind was computed. */
static size_t mtli_diag_counter(mtl_diagnostic kind)
{
    switch (kind) {
    case MTL_DIAG_TASK_WEIGHTS: return 0;
    case MTL_DIAG_AFFINITY: return 2;
    default: return 1;
    }
}

size_t mtli_diag_record_size(int64_t n_tasks)
{
    return mtli_diag_offset(MTL_DIAG_AFFINITY, n_tasks) + (size_t)n_tasks * (size_t)n_tasks;
}

mtl_status mtli_diag_create(mtl_trainer *t)
{
    size_t size = mtli_diag_record_size(t->n_tasks);
    double *step = mtli_calloc(&t->settings, size, sizeof(double));
    double *epoch = mtli_calloc(&t->settings, 2 * size, sizeof(double));
    if (!step || !epoch) {
        mtli_free(&t->settings, step);
        mtli_free(&t->settings, epoch);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "trainer: out of memory for diagnostics of %lld tasks",
                         (long long)t->n_tasks);
    }
    t->diag_step = step;
    t->diag_epoch = epoch;
    return MTL_OK;
}

void mtli_diag_destroy(mtl_trainer *t)
{
    mtli_free(&t->settings, t->diag_step);
    mtli_free(&t->settings, t->diag_epoch);
    t->diag_step = NULL;
    t->diag_epoch = NULL;
}

void mtli_diag_cosine(int64_t n, const double *gram, double *cos)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double d = sqrt(gram[i * n + i]) * sqrt(gram[j * n + j]);
            double c = d > 0.0 ? gram[i * n + j] / d : 0.0;
            /* Rounding may push |c| a hair past 1. */
            cos[i * n + j] = i == j ? (d > 0.0 ? 1.0 : 0.0) : fmax(-1.0, fmin(1.0, c));
        }
}

int64_t mtli_diag_conflicts(int64_t n, const double *gram)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            if (gram[i * n + i] > 0.0 && gram[j * n + j] > 0.0 && gram[i * n + j] < 0.0) k++;
    return k;
}

/* The running sums become the finished epoch's means. */
static void mtli_diag_close_epoch(const double *acc, double *mean, int64_t n)
{
    static const mtl_diagnostic kinds[] = { MTL_DIAG_TASK_WEIGHTS, MTL_DIAG_GRAD_NORMS,
                                            MTL_DIAG_GRAD_COSINE, MTL_DIAG_CONFLICTS,
                                            MTL_DIAG_AFFINITY };
    memset(mean, 0, mtli_diag_record_size(n) * sizeof *mean);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        double count = acc[mtli_diag_counter(kinds[k])];
        size_t off = mtli_diag_offset(kinds[k], n), len = mtli_diag_length(kinds[k], n);
        if (count > 0.0)
            for (size_t i = 0; i < len; i++) mean[off + i] = acc[off + i] / count;
    }
    memcpy(mean, acc, MTLI_DIAG_HEADER * sizeof *mean);
}

void mtli_diag_record_step(mtl_trainer *t, const double *weights, const double *gram,
                           const double *affinity)
{
    double *rec = t->diag_step, *acc = t->diag_epoch;
    if (!rec || !acc) return;
    int64_t n = t->n_tasks;
    size_t size = mtli_diag_record_size(n);
    memset(rec, 0, size * sizeof *rec);
    rec[MTLI_DIAG_EPOCH_TAG] = (double)t->epoch;
    if (weights) {
        rec[0] = 1.0;
        memcpy(rec + mtli_diag_offset(MTL_DIAG_TASK_WEIGHTS, n), weights, (size_t)n * sizeof *weights);
    }
    if (gram) {
        rec[1] = 1.0;
        double *norms = rec + mtli_diag_offset(MTL_DIAG_GRAD_NORMS, n);
        for (int64_t i = 0; i < n; i++) norms[i] = sqrt(fmax(gram[i * n + i], 0.0));
        mtli_diag_cosine(n, gram, rec + mtli_diag_offset(MTL_DIAG_GRAD_COSINE, n));
        rec[mtli_diag_offset(MTL_DIAG_CONFLICTS, n)] = (double)mtli_diag_conflicts(n, gram);
    }
    if (affinity) {
        rec[2] = 1.0;
        memcpy(rec + mtli_diag_offset(MTL_DIAG_AFFINITY, n), affinity, (size_t)(n * n) * sizeof *affinity);
    }
    /* A new epoch began since the running sums started: close them. */
    if (acc[MTLI_DIAG_EPOCH_TAG] != (double)t->epoch) {
        if (acc[0] > 0.0) mtli_diag_close_epoch(acc, acc + size, n);
        memset(acc, 0, size * sizeof *acc);
        acc[MTLI_DIAG_EPOCH_TAG] = (double)t->epoch;
    }
    /* Running sums of the epoch, in step order (deterministic). */
    for (size_t i = 0; i < size; i++)
        if (i != MTLI_DIAG_EPOCH_TAG) acc[i] += rec[i];
}

mtl_status mtl_trainer_diagnostic(const mtl_trainer *trainer, mtl_diagnostic kind, mtl_scope scope,
                                  double *out, int64_t cap)
{
    MTLI_CHECK_ARG(trainer && out, "mtl_trainer_diagnostic: trainer and out must not be NULL");
    MTLI_CHECK_ARG(scope == MTL_SCOPE_STEP || scope == MTL_SCOPE_EPOCH,
                   "mtl_trainer_diagnostic: unknown scope %d", (int)scope);
    int64_t n = trainer->n_tasks;
    size_t len = mtli_diag_length(kind, n);
    MTLI_CHECK_ARG(len > 0, "mtl_trainer_diagnostic: unknown diagnostic %d", (int)kind);
    if (cap < 0 || (uint64_t)cap < (uint64_t)len)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_trainer_diagnostic: needs %zu values, out holds %lld", len,
                         (long long)cap);
    const double *rec = trainer->diag_step;
    bool from_sums = false;
    if (scope == MTL_SCOPE_EPOCH) {
        const double *acc = trainer->diag_epoch;
        /* The running sums are a finished epoch once the epoch count moved. */
        from_sums = acc && acc[0] > 0.0 && acc[MTLI_DIAG_EPOCH_TAG] < (double)trainer->epoch;
        rec = !acc ? NULL : from_sums ? acc : acc + mtli_diag_record_size(n);
    }
    if (!rec || !(rec[mtli_diag_counter(kind)] > 0.0)) {
        const char *how = kind == MTL_DIAG_AFFINITY ? "set MTL_OPT_AFFINITY"
                        : kind == MTL_DIAG_TASK_WEIGHTS ? "train a step"
                        : "set MTL_OPT_DIAGNOSTICS (or use a gradient-based weighting)";
        return mtli_fail(MTL_ERR_STATE, "mtl_trainer_diagnostic: not computed yet for this %s (%s%s)",
                         scope == MTL_SCOPE_STEP ? "step" : "epoch", how,
                         scope == MTL_SCOPE_EPOCH ? ", then finish an epoch of mtl_trainer_fit" : "");
    }
    const double *src = rec + mtli_diag_offset(kind, n);
    double count = from_sums ? rec[mtli_diag_counter(kind)] : 1.0;
    for (size_t i = 0; i < len; i++) out[i] = src[i] / count;
    return MTL_OK;
}
