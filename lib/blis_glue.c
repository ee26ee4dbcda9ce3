/* blis_glue.c -- every BLIS call in libmtl goes through here.
 *
 * BLIS aborts the process on bad arguments, and libmtl must never abort
 * its host, so each wrapper validates dimensions, strides and pointers
 * first.  The thread count reaches BLIS through a per-call rntm_t built
 * from the calling handle's settings: never bli_thread_set_num_threads(),
 * which is process-global and would fight a host that uses BLIS too. */
#include "mtl_internal.h"

#include <blis.h>
#include <string.h>
#include <threads.h>

static once_flag mtli_blis_once = ONCE_FLAG_INIT;
static void mtli_blis_init_once(void)
{
    bli_init();
}

void mtli_blis_ensure_init(void)
{
    call_once(&mtli_blis_once, mtli_blis_init_once);
}

void mtli_blas_init(mtli_blas *b, const mtli_settings *s)
{
    b->num_threads = s->num_threads;
    b->parallel_min_flops = s->parallel_min_flops;
    b->warm_weights = false;
}

/* Thread only GEMMs big enough to profit (decided by size, never by data,
 * so results stay bitwise equal: BLIS's conventional path never splits k
 * across threads).  BLIS's small/unpacked ("sup") path is turned off: in
 * BLIS 0.9 the kernel sets that have sup kernels (haswell, zen, zen2,
 * zen3: what Zen 2-4 and AVX2 Intel CPUs run) give skinny products whose
 * last bits depend on the thread count (unit_optim_paths on
 * BLIS_ARCH_TYPE=3 and 6 failed with it on).  The skx and generic sets
 * have no sup kernels, so on them nothing changes. */
static void mtli_rntm_for(const mtli_blas *b, double flops, rntm_t *r)
{
    rntm_t init = BLIS_RNTM_INITIALIZER;
    *r = init;
    dim_t nt = (b->num_threads > 1 && flops >= (double)b->parallel_min_flops) ? (dim_t)b->num_threads : 1;
    bli_rntm_set_num_threads(nt, r);
    bli_rntm_disable_l3_sup(r);
}

/* Weights worth warming: 64 KB and up (smaller ones are a few µs of
 * BLIS time, or go to libmtl's own kernels), and small enough to stay in
 * a shared L3 beside the other operand (16 MB: half of a Zen CCD's L3). */
#define MTLI_WARM_MIN_BYTES ((size_t)64 << 10)
#define MTLI_WARM_MAX_BYTES ((size_t)16 << 20)

/* Warming: read one 4-byte word per 64-byte line of a GEMM's B operand,
 * in address order, before BLIS packs it.
 * Why: a training step's optimiser pass streams every parameter, gradient
 * and Adam moment through the caches, so the next forward pass finds its
 * weights in L3 or memory.  BLIS packs them in KC x NR slivers, row by row
 * with a large stride, and those reads wait on latency: the step's GEMMs
 * ran 4-6 % (W3) and 5-8 % (W2) slower than the same shapes with warm
 * operands (docs/performance.md).  A sequential read brings a matrix into
 * L2/L3 at full bandwidth (the hardware prefetchers follow it) for a
 * fraction of that.  Only B: in the forward pass it is always the layer's
 * weights, while A, the layer's input, was just read (the batch check) or
 * just written (the layer below's epilogue).  Words are read as integers
 * (no floating-point operation, so a NaN raises no trap a host may have
 * enabled) into four independent xors, and a volatile store keeps the
 * loads.  The words are split across the GEMM's threads. */

static uint32_t warm_words(const uint32_t *w, int64_t lo, int64_t hi)
{
    uint32_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
    for (int64_t i = lo; i + 64 <= hi; i += 64) {
        x0 ^= w[i];
        x1 ^= w[i + 16];
        x2 ^= w[i + 32];
        x3 ^= w[i + 48];
    }
    return (x0 ^ x1) ^ (x2 ^ x3);
}

static void warm_slice(void *ctx, int64_t lo, int64_t hi)
{
    volatile uint32_t sink = warm_words(*(const uint32_t **)ctx, lo, hi);
    (void)sink;
}

/* Words of a stored rows x cols matrix (row stride ld) worth warming: its
 * whole extent when its size is in the range above, else 0. */
static int64_t warm_extent(int64_t rows, int64_t cols, int64_t ld)
{
    const size_t n = (size_t)(rows - 1) * (size_t)ld + (size_t)cols;
    return n * sizeof(float) > MTLI_WARM_MIN_BYTES && n * sizeof(float) <= MTLI_WARM_MAX_BYTES ? (int64_t)n : 0;
}

static void warm_matrix(const float *bm, int64_t b_rows, int64_t b_cols, int64_t ldb, int64_t n_threads)
{
    const int64_t nb = warm_extent(b_rows, b_cols, ldb);
    const uint32_t *words = (const uint32_t *)(const void *)bm;
    if (nb > 0) mtli_run_slices(warm_slice, &words, nb, n_threads);
}

static bool mtli_stride_ok(int64_t rows, int64_t cols, int64_t ld)
{
    (void)rows;
    return ld >= (cols > 1 ? cols : 1);
}

mtl_status mtli_gemm(const mtli_blas *b, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, const float *bm, int64_t ldb,
                     float beta, float *c, int64_t ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return mtli_fail(MTL_ERR_INTERNAL, "gemm: negative dimension m=%lld n=%lld k=%lld",
                         (long long)m, (long long)n, (long long)k);
    if (m == 0 || n == 0) return MTL_OK;
    /* Stored shapes: A is m x k (or k x m transposed), B is k x n (or n x k). */
    int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    if (!c || !mtli_stride_ok(m, n, ldc))
        return mtli_fail(MTL_ERR_INTERNAL, "gemm: bad C (ldc=%lld for %lld columns)", (long long)ldc, (long long)n);
    if (k == 0) {
        /* C = beta * C; BLIS is not asked to handle the empty product. */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return MTL_OK;
    }
    if (!a || !mtli_stride_ok(a_rows, a_cols, lda))
        return mtli_fail(MTL_ERR_INTERNAL, "gemm: bad A (lda=%lld for %lld columns)", (long long)lda, (long long)a_cols);
    if (!bm || !mtli_stride_ok(b_rows, b_cols, ldb))
        return mtli_fail(MTL_ERR_INTERNAL, "gemm: bad B (ldb=%lld for %lld columns)", (long long)ldb, (long long)b_cols);
    mtli_blis_ensure_init();
    rntm_t r;
    mtli_rntm_for(b, 2.0 * (double)m * (double)n * (double)k, &r);
    if (b->warm_weights) warm_matrix(bm, b_rows, b_cols, ldb, bli_rntm_num_threads(&r));
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &alpha, (float *)a, (inc_t)lda, 1, (float *)bm, (inc_t)ldb, 1,
                 &beta, c, (inc_t)ldc, 1, NULL, &r);
    return MTL_OK;
}

mtl_status mtli_gemv(const mtli_blas *b, bool trans_a, int64_t m, int64_t n, float alpha,
                     const float *a, int64_t lda, const float *x, int64_t incx, float beta,
                     float *y, int64_t incy)
{
    /* A is stored m x n; op(A) is m x n or n x m. */
    if (m < 0 || n < 0)
        return mtli_fail(MTL_ERR_INTERNAL, "gemv: negative dimension m=%lld n=%lld", (long long)m, (long long)n);
    int64_t ylen = trans_a ? n : m, xlen = trans_a ? m : n;
    if (ylen == 0) return MTL_OK;
    if (!y || incy < 1) return mtli_fail(MTL_ERR_INTERNAL, "gemv: bad y");
    if (xlen == 0) {
        for (int64_t i = 0; i < ylen; i++) y[i * incy] = beta == 0.0f ? 0.0f : beta * y[i * incy];
        return MTL_OK;
    }
    if (!a || !mtli_stride_ok(m, n, lda) || !x || incx < 1)
        return mtli_fail(MTL_ERR_INTERNAL, "gemv: bad A (lda=%lld for %lld columns) or x", (long long)lda, (long long)n);
    mtli_blis_ensure_init();
    rntm_t r;
    mtli_rntm_for(b, 0.0, &r); /* level-2: always one thread */
    bli_sgemv_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, (dim_t)m, (dim_t)n, &alpha,
                 (float *)a, (inc_t)lda, 1, (float *)x, (inc_t)incx, &beta, y, (inc_t)incy, NULL, &r);
    return MTL_OK;
}
