/* parallel.c -- libmtl's own passes over big arrays on the handle's threads.
 *
 * The optimiser update, the gradient finite check, the layers' bias /
 * activation passes (layers.c) and the warming of GEMM operands
 * (blis_glue.c) are elementwise, read-only, or sum in an order no split
 * changes, so any split gives bitwise the same result: each thread takes
 * one contiguous slice.  With
 * OpenMP (meson option `openmp`) they run on an OpenMP team, the one BLIS
 * uses too when it is built with OpenMP, so no second pool of threads
 * spins beside BLIS's; without it, on the calling thread
 * (docs/threading.md). */
#include "mtl_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads for a pass over n elements: num_threads, but no more than leave
 * every thread at least min_per_thread elements (1 without OpenMP). */
static int64_t threads_for(int64_t n, int64_t num_threads, int64_t min_per_thread)
{
#ifdef _OPENMP
    const int64_t most = n / min_per_thread;
    int64_t nt = num_threads > 1 ? num_threads : 1;
    if (nt > most) nt = most > 1 ? most : 1;
    return nt;
#else
    (void)n, (void)num_threads, (void)min_per_thread;
    return 1;
#endif
}

int64_t mtli_pass_threads(int64_t n, int64_t num_threads)
{
    return threads_for(n, num_threads, MTLI_PASS_MIN_PER_THREAD);
}

int64_t mtli_elementwise_threads(int64_t n, int64_t num_threads)
{
    return threads_for(n, num_threads, MTLI_ELEMENTWISE_MIN_PER_THREAD);
}

#ifdef _OPENMP
/* Start of slice k of nt over n elements: an even split, rounded down to
 * a multiple of 16 floats, so with the trainer's ranges (adjacent, from
 * the aligned start of the buffer) two threads never write one line. */
static int64_t slice_start(int64_t n, int64_t k, int64_t nt)
{
    return k >= nt ? n : (n / nt * k) & ~(int64_t)15;
}
#endif

void mtli_run_slices(mtli_slice_fn body, void *ctx, int64_t n, int64_t n_threads)
{
#ifdef _OPENMP
    if (n_threads > 1) {
#pragma omp parallel num_threads((int)n_threads)
        {
            const int64_t k = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t lo = slice_start(n, k, nt), hi = slice_start(n, k + 1, nt);
            if (lo < hi) body(ctx, lo, hi);
        }
        return;
    }
#endif
    (void)n_threads;
    body(ctx, 0, n);
}

int64_t mtli_task_threads(int64_t n_tasks, int64_t num_threads)
{
    return threads_for(n_tasks, num_threads, 1);
}

void mtli_run_parts(mtli_part_fn body, void *ctx, int64_t n, int64_t n_threads)
{
#ifdef _OPENMP
    if (n_threads > 1 && n > 1) {
#pragma omp parallel num_threads((int)(n_threads < n ? n_threads : n))
        {
            const int64_t k = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t lo = n * k / nt, hi = n * (k + 1) / nt;
            if (lo < hi) body(ctx, k, lo, hi);
        }
        return;
    }
#endif
    (void)n_threads;
    if (n > 0) body(ctx, 0, 0, n);
}
