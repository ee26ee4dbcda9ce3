/* small_gemm.c -- a GEMM kernel for small products (AVX-512).
 *
 * At the sizes of a small network (64 x 64 x 64) BLIS spends more time
 * setting a call up than multiplying: measured on Zen 5 with the skx
 * kernels, 6.3 µs per 64 x 64 x 64 product, of which ~2 µs is arithmetic.
 * Small operands fit in L1/L2, so no packing or cache blocking is needed:
 * a 4-row x 64-column register tile (16 zmm accumulators) reads B rows
 * straight from memory and broadcasts A elements, and reaches ~250
 * GFLOP/s on one core for these sizes (docs/performance.md).
 *
 *   op(B) = B  (B rows contiguous): the tile kernel directly; op(A) = Aᵀ
 *              only changes A's strides (broadcasts need no contiguity).
 *   op(B) = Bᵀ: 64 x 64 panels of Bᵀ are first copied to a 16 KB stack
 *              buffer in the layout the tile kernel reads.
 * Each C element is a single fused multiply-add chain over k in order
 * (for k > 64 with op(B) = Bᵀ, one chain per 64-wide slice, added to C in
 * order), so results are deterministic and independent of thread count.
 * Compiled for AVX-512F through a target attribute and chosen at run time;
 * other CPUs and compilers keep using BLIS. */
#include "small_gemm.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MTLI_SMALL_GEMM_AVX512 1
#include <immintrin.h>
#else
#define MTLI_SMALL_GEMM_AVX512 0
#endif

#if MTLI_SMALL_GEMM_AVX512

#define MTLI_AVX512 __attribute__((target("avx512f")))
#define MR 4  /* rows per tile */
#define NW 64 /* columns per tile: 4 vectors of 16 */
#define KC 64 /* k slice of a packed Bᵀ panel */

/* Lane mask for columns [j, j + 16) of an n-wide row. */
static inline __mmask16 lanes(int64_t j, int64_t n)
{
    const int64_t w = n - j;
    return w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
}

/* c[lanes] = alpha * acc + beta * c; with beta == 0, c is not read (it
 * may hold anything, even NaN), as in BLIS. */
MTLI_AVX512 static inline void store_vec(float *c, __mmask16 mk, __m512 acc, float alpha, float beta)
{
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(alpha), acc);
    if (beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk, c)));
    _mm512_mask_storeu_ps(c, mk, r);
}

/* One tile: rows [i, i + MR) x NV vectors of columns from j.  NV is a
 * constant in every call, so after unrolling the accumulators live in
 * registers.  Rows past m re-read row i (valid memory) and are not stored;
 * columns past n are masked. */
MTLI_AVX512 __attribute__((always_inline)) static inline void
tile(const int NV, int64_t i, int64_t j, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rsa,
     int64_t csa, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    const float *ar[MR];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) ar[r] = a + (i + r < m ? i + r : i) * rsa;
    __mmask16 mk[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) mk[v] = lanes(j + 16 * v, n);
    __m512 acc[MR][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    const float *bp = b + j;
    for (int64_t p = 0; p < k; p++, bp += ldb) {
        __m512 bv[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(mk[v], bp + 16 * v);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(ar[r][p * csa]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) {
        if (i + r >= m) break;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            store_vec(c + (i + r) * ldc + j + 16 * v, mk[v], acc[r][v], alpha, beta);
    }
}

/* C = alpha * A·B + beta * C with A(i, p) = a[i*rsa + p*csa] and B rows
 * contiguous, B(p, j) = b[p*ldb + j]. */
MTLI_AVX512 static void gemm_rows(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rsa,
                                  int64_t csa, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += NW) {
        const int64_t nv = (n - j + 15) / 16;
        for (int64_t i = 0; i < m; i += MR) {
            if (nv >= 4)
                tile(4, i, j, m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
            else if (nv == 3)
                tile(3, i, j, m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
            else if (nv == 2)
                tile(2, i, j, m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
            else
                tile(1, i, j, m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
        }
    }
}

/* C = alpha * A·Bᵀ + beta * C, B stored n x k: Bᵀ panels of NW columns x
 * KC rows are copied to a stack buffer, then multiplied as above. */
MTLI_AVX512 static void gemm_bt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rsa,
                                int64_t csa, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    float pack[KC * NW] __attribute__((aligned(64)));
    for (int64_t j = 0; j < n; j += NW) {
        const int64_t w = n - j < NW ? n - j : NW;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            const int64_t kc = k - p0 < KC ? k - p0 : KC;
            for (int64_t jj = 0; jj < w; jj++) {
                const float *src = b + (j + jj) * ldb + p0;
                for (int64_t p = 0; p < kc; p++) pack[p * NW + jj] = src[p];
            }
            gemm_rows(m, w, kc, alpha, a + p0 * csa, rsa, csa, pack, NW, p0 == 0 ? beta : 1.0f, c + j, ldc);
        }
    }
}

static bool cpu_has_avx512(void)
{
    __builtin_cpu_init(); /* idempotent; needed when called from a constructor */
    return __builtin_cpu_supports("avx512f");
}

#endif /* MTLI_SMALL_GEMM_AVX512 */

bool mtli_small_gemm(const mtli_blas *b, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *bm, int64_t ldb, float beta, float *c, int64_t ldc)
{
#if MTLI_SMALL_GEMM_AVX512
    const double flops = 2.0 * (double)m * (double)n * (double)k;
    if (m < 1 || n < 1 || k < 1 || (trans_a && trans_b)) return false;
    if (flops > MTLI_SMALL_GEMM_MAX_FLOPS || flops >= (double)b->parallel_min_flops) return false;
    /* Strides as mtli_gemm checks them; anything odd goes there. */
    if (!a || !bm || !c || ldc < n || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return false;
    if (!cpu_has_avx512()) return false;
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    if (trans_b)
        gemm_bt(m, n, k, alpha, a, rsa, csa, bm, ldb, beta, c, ldc);
    else
        gemm_rows(m, n, k, alpha, a, rsa, csa, bm, ldb, beta, c, ldc);
    return true;
#else
    (void)b, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda;
    (void)bm, (void)ldb, (void)beta, (void)c, (void)ldc;
    return false;
#endif
}
