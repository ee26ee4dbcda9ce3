/* small_gemm.c -- GEMM and dot-product kernels for small products (AVX-512).
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
 *   op(B) = Bᵀ: 64 x 64 panels of Bᵀ are first copied (16 x 16 register
 *              transposes) to a 16 KB stack buffer in the layout the tile
 *              kernel reads.
 * Each C element is a single fused multiply-add chain over k in order
 * (for k > 64 with op(B) = Bᵀ, one chain per 64-wide slice, added to C in
 * order), so results are deterministic and independent of thread count;
 * a layer's bias and ReLU can be applied as a tile is stored (the
 * epilogue), with the bits of a separate pass, or each finished tile can
 * be handed to a callback instead of being stored (mtli_small_gemm_tiles:
 * the training engine's backward pass needs no scratch matrix for dX).
 * Dot products (1-wide layers, one row through transposed weights) use
 * 16-lane partial sums.
 * Compiled for AVX-512F through a target attribute and chosen at run time;
 * other CPUs and compilers keep using BLIS. */
#include "small_gemm.h"

#define KC 64 /* k slice of a packed Bᵀ panel */

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

/* Lane mask for columns [j, j + 16) of an n-wide row. */
static inline __mmask16 lanes(int64_t j, int64_t n)
{
    const int64_t w = n - j;
    return w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
}

/* What is done to a finished accumulator before it is stored:
 *   c = act(alpha * acc + beta * c + bias),  act = ReLU or identity.
 * With beta == 0, c is not read (it may hold anything, even NaN), as in
 * BLIS; bias (one per column, indexed like c's columns) may be NULL. */
typedef struct epilogue {
    float alpha, beta;
    const float *bias;
    bool relu;
} epilogue;

MTLI_AVX512 static inline void store_vec(float *c, const float *bias, __mmask16 mk, __m512 acc, const epilogue *e)
{
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(e->alpha), acc);
    if (e->beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(e->beta), _mm512_maskz_loadu_ps(mk, c)));
    if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, bias));
    if (e->relu) r = _mm512_max_ps(r, _mm512_setzero_ps()); /* as u > 0 ? u : 0, also for -0 and NaN */
    _mm512_mask_storeu_ps(c, mk, r);
}

/* One tile: rows [i, i + R) x NV vectors of columns from j, stored from
 * ct (the tile's first element; row stride ldc).  R and NV are constants
 * in every call, so after unrolling the accumulators live in registers.
 * Rows past m re-read row i (valid memory) and are not stored; columns
 * past n are masked. */
MTLI_AVX512 __attribute__((always_inline)) static inline void
tile(const int R, const int NV, int64_t i, int64_t j, int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
     int64_t csa, const float *b, int64_t ldb, const epilogue *e, float *ct, int64_t ldc)
{
    const float *ar[MR];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ar[r] = a + (i + r < m ? i + r : i) * rsa;
    __mmask16 mk[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) mk[v] = lanes(j + 16 * v, n);
    __m512 acc[MR][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    const float *bp = b + j;
    for (int64_t p = 0; p < k; p++, bp += ldb) {
        __m512 bv[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(mk[v], bp + 16 * v);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(ar[r][p * csa]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        if (i + r >= m) break;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            store_vec(ct + r * ldc + 16 * v, e->bias ? e->bias + j + 16 * v : NULL, mk[v], acc[r][v], e);
    }
}

/* tile() for nv (1 to 4) vectors of columns, each count a constant. */
MTLI_AVX512 __attribute__((always_inline)) static inline void
tile_nv(const int R, int64_t nv, int64_t i, int64_t j, int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
        int64_t csa, const float *b, int64_t ldb, const epilogue *e, float *ct, int64_t ldc)
{
    if (nv >= 4)
        tile(R, 4, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
    else if (nv == 3)
        tile(R, 3, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
    else if (nv == 2)
        tile(R, 2, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
    else
        tile(R, 1, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
}

/* Tiles of R rows over all of [0, m) for columns [j, j + 16 nv). */
MTLI_AVX512 __attribute__((always_inline)) static inline void
tiles(const int R, int64_t nv, int64_t j, int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
      const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i += R) tile_nv(R, nv, i, j, m, n, k, a, rsa, csa, b, ldb, e, c + i * ldc + j, ldc);
}

/* C = epilogue(A·B) with A(i, p) = a[i*rsa + p*csa] and B rows
 * contiguous, B(p, j) = b[p*ldb + j]. */
MTLI_AVX512 static void gemm_rows(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                                  const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += NW) {
        const int64_t nv = (n - j + 15) / 16;
        if (m == 1) /* one row (batch-1 predict): no wasted rows */
            tiles(1, nv, j, m, n, k, a, rsa, csa, b, ldb, e, c, ldc);
        else
            tiles(MR, nv, j, m, n, k, a, rsa, csa, b, ldb, e, c, ldc);
    }
}

/* dst (16 x 16, row stride ldd) = transpose of src (16 x 16, row stride
 * lds), in registers: 32-bit, 64-bit, then two 128-bit lane shuffles. */
MTLI_AVX512 __attribute__((always_inline)) static inline void transpose16(const float *src, int64_t lds, float *dst,
                                                                         int64_t ldd)
{
    __m512 r[16], t[16];
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    /* t[i], t[i+1] (i even), lane L: rows i, i+1 interleaved at columns 4L..4L+3 */
    _Pragma("GCC unroll 8") for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[i + c] (i = 0, 4, 8, 12; c < 4), lane L: rows i..i+3 of column 4L + c */
    _Pragma("GCC unroll 4") for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* t[q] = rows 0-3 | 0-3 | 4-7 | 4-7 of columns q, q+8, q, q+8 (q+4: columns
     * q+4, q+12); t[q+8], t[q+12]: the same for rows 8-15. */
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
        t[q] = _mm512_shuffle_f32x4(r[q], r[q + 4], 0x88);
        t[q + 4] = _mm512_shuffle_f32x4(r[q], r[q + 4], 0xdd);
        t[q + 8] = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0x88);
        t[q + 12] = _mm512_shuffle_f32x4(r[q + 8], r[q + 12], 0xdd);
    }
    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
        _mm512_storeu_ps(dst + q * ldd, _mm512_shuffle_f32x4(t[q], t[q + 8], 0x88));
        _mm512_storeu_ps(dst + (q + 8) * ldd, _mm512_shuffle_f32x4(t[q], t[q + 8], 0xdd));
        _mm512_storeu_ps(dst + (q + 4) * ldd, _mm512_shuffle_f32x4(t[q + 4], t[q + 12], 0x88));
        _mm512_storeu_ps(dst + (q + 12) * ldd, _mm512_shuffle_f32x4(t[q + 4], t[q + 12], 0xdd));
    }
}

/* pack[p * NW + jj] = B(j + jj, p0 + p) for jj < w, p < kc (B stored n x k). */
MTLI_AVX512 __attribute__((always_inline)) static inline void pack_bt(const float *b, int64_t ldb, int64_t j,
                                                                     int64_t w, int64_t p0, int64_t kc, float *pack)
{
    const int64_t w16 = w & ~(int64_t)15, k16 = kc & ~(int64_t)15;
    for (int64_t jj = 0; jj < w16; jj += 16)
        for (int64_t p = 0; p < k16; p += 16) transpose16(b + (j + jj) * ldb + p0 + p, ldb, pack + p * NW + jj, NW);
    for (int64_t jj = 0; jj < w; jj++) { /* the edges: columns past w16, rows past k16 */
        const float *src = b + (j + jj) * ldb + p0;
        for (int64_t p = jj < w16 ? k16 : 0; p < kc; p++) pack[p * NW + jj] = src[p];
    }
}

/* C = alpha * A·Bᵀ + beta * C (+ epilogue), B stored n x k: Bᵀ panels of
 * NW columns x KC rows are copied to a stack buffer, then multiplied as
 * above; slices after the first add to C, and only the last one applies
 * the bias and activation. */
MTLI_AVX512 static void gemm_bt(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                                const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    float pack[KC * NW] __attribute__((aligned(64)));
    for (int64_t j = 0; j < n; j += NW) {
        const int64_t w = n - j < NW ? n - j : NW;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            const int64_t kc = k - p0 < KC ? k - p0 : KC;
            const bool last = p0 + kc == k;
            const epilogue slice = { e->alpha, p0 == 0 ? e->beta : 1.0f, last && e->bias ? e->bias + j : NULL,
                                     last && e->relu };
            pack_bt(b, ldb, j, w, p0, kc, pack);
            gemm_rows(m, w, kc, a + p0 * csa, rsa, csa, pack, NW, &slice, c + j, ldc);
        }
    }
}

/* C = A·op(B) (A row-major, lda), computed tile by tile and handed to
 * done() instead of being stored: panels of NW columns in order, and in
 * each blocks of BR rows in order, each in a stack buffer (a few tiles per
 * call keep the callback's per-call cost small).  With op(B) = Bᵀ,
 * k <= KC: one packed panel serves every row block, and each element is
 * the single chain over k that gemm_bt computes. */
#define BR (4 * MR)
MTLI_AVX512 static void gemm_tiles(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                   const float *bm, int64_t ldb, mtli_tile_fn done, void *ctx)
{
    float pack[KC * NW] __attribute__((aligned(64)));
    float blk[BR * NW] __attribute__((aligned(64)));
    const epilogue e = { 1.0f, 0.0f, NULL, false };
    for (int64_t j = 0; j < n; j += NW) {
        const int64_t w = n - j < NW ? n - j : NW, nv = (w + 15) / 16;
        const float *b = bm + j;
        int64_t ldp = ldb;
        if (trans_b) {
            pack_bt(bm, ldb, j, w, 0, k, pack);
            b = pack;
            ldp = NW;
        }
        for (int64_t i0 = 0; i0 < m; i0 += BR) {
            const int64_t rows = m - i0 < BR ? m - i0 : BR;
            for (int64_t i = i0; i < i0 + rows; i += MR)
                tile_nv(MR, nv, i, 0, m, w, k, a, lda, 1, b, ldp, &e, blk + (i - i0) * NW, NW);
            done(ctx, i0, rows, j, w, blk, NW);
        }
    }
}

/* y[i * incy] = a_i · x for rows a_i = a + i*lda of length k: 4 rows at a
 * time, 16-lane partial sums over k, then one fixed reduction each. */
MTLI_AVX512 static void dots(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y,
                             int64_t incy)
{
    for (int64_t i = 0; i < m; i += 4) {
        const float *a0 = a + i * lda;
        const float *a1 = i + 1 < m ? a0 + lda : a0;
        const float *a2 = i + 2 < m ? a0 + 2 * lda : a0;
        const float *a3 = i + 3 < m ? a0 + 3 * lda : a0;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t p = 0; p < k; p += 16) {
            const __mmask16 mk = lanes(p, k);
            const __m512 xv = _mm512_maskz_loadu_ps(mk, x + p);
            s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a0 + p), xv, s0);
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a1 + p), xv, s1);
            s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a2 + p), xv, s2);
            s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a3 + p), xv, s3);
        }
        y[i * incy] = _mm512_reduce_add_ps(s0);
        if (i + 1 < m) y[(i + 1) * incy] = _mm512_reduce_add_ps(s1);
        if (i + 2 < m) y[(i + 2) * incy] = _mm512_reduce_add_ps(s2);
        if (i + 3 < m) y[(i + 3) * incy] = _mm512_reduce_add_ps(s3);
    }
}

static bool cpu_has_avx512(void)
{
    __builtin_cpu_init(); /* idempotent; needed when called from a constructor */
    return __builtin_cpu_supports("avx512f");
}

#endif /* MTLI_SMALL_GEMM_AVX512 */

bool mtli_small_gemm_available(void)
{
#if MTLI_SMALL_GEMM_AVX512
    return cpu_has_avx512();
#else
    return false;
#endif
}

/* Shapes and strides the kernel takes (anything odd goes to mtli_gemm,
 * which reports it). */
static bool small_ok(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                     const float *bm, int64_t ldb, const float *c, int64_t ldc)
{
    if (m < 1 || n < 1 || k < 1 || (trans_a && trans_b)) return false;
    if (2.0 * (double)m * (double)n * (double)k > MTLI_SMALL_GEMM_MAX_FLOPS) return false;
    if (!a || !bm || !c || ldc < n || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return false;
    return mtli_small_gemm_available();
}

#if MTLI_SMALL_GEMM_AVX512
static void run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                const float *bm, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    if (trans_b)
        gemm_bt(m, n, k, a, rsa, csa, bm, ldb, e, c, ldc);
    else
        gemm_rows(m, n, k, a, rsa, csa, bm, ldb, e, c, ldc);
}
#endif

bool mtli_small_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *bm, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (!small_ok(trans_a, trans_b, m, n, k, a, lda, bm, ldb, c, ldc)) return false;
#if MTLI_SMALL_GEMM_AVX512
    const epilogue e = { alpha, beta, NULL, false };
    run(trans_a, trans_b, m, n, k, a, lda, bm, ldb, &e, c, ldc);
    return true;
#else
    (void)alpha, (void)beta;
    return false;
#endif
}

bool mtli_small_gemm_bias_act(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const float *bm, int64_t ldb, const float *bias, bool relu, float *c, int64_t ldc)
{
    if (!bias || !small_ok(false, trans_b, m, n, k, a, lda, bm, ldb, c, ldc)) return false;
#if MTLI_SMALL_GEMM_AVX512
    const epilogue e = { 1.0f, 0.0f, bias, relu };
    run(false, trans_b, m, n, k, a, lda, bm, ldb, &e, c, ldc);
    return true;
#else
    (void)relu;
    return false;
#endif
}

bool mtli_small_gemm_tiles_fit(bool trans_b, int64_t m, int64_t n, int64_t k)
{
    if (m < 1 || n < 1 || k < 1 || (trans_b && k > KC)) return false;
    if (2.0 * (double)m * (double)n * (double)k > MTLI_SMALL_GEMM_MAX_FLOPS) return false;
    return mtli_small_gemm_available();
}

bool mtli_small_gemm_tiles(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                           const float *bm, int64_t ldb, mtli_tile_fn done, void *ctx)
{
    if (!mtli_small_gemm_tiles_fit(trans_b, m, n, k) || !a || !bm || !done || lda < k || ldb < (trans_b ? k : n))
        return false;
#if MTLI_SMALL_GEMM_AVX512
    gemm_tiles(trans_b, m, n, k, a, lda, bm, ldb, done, ctx);
    return true;
#else
    (void)ctx;
    return false;
#endif
}

bool mtli_small_dots(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y, int64_t incy)
{
    if (m < 1 || k < 1 || !a || !x || !y || lda < k || incy < 1 || !mtli_small_gemm_available()) return false;
#if MTLI_SMALL_GEMM_AVX512
    dots(m, k, a, lda, x, y, incy);
    return true;
#else
    return false;
#endif
}
