/* small_gemm.c -- GEMM and dot-product kernels for small products
 * (AVX-512, or AVX2 + FMA).
 *
 * At the sizes of a small network (64 x 64 x 64) BLIS spends more time
 * setting a call up than multiplying: measured on Zen 5 with the skx
 * kernels, 6.3 µs per 64 x 64 x 64 product, of which ~2 µs is arithmetic.
 * Small operands fit in L1/L2, so no packing or cache blocking is needed:
 * a register tile (AVX-512: 4 rows x 64 columns, 16 zmm accumulators;
 * AVX2: 6 rows x 16 columns, 12 ymm) reads B rows straight from memory
 * and broadcasts A elements, and reaches ~250 GFLOP/s on one Zen 5 core
 * for these sizes (docs/performance.md).
 *
 *   op(B) = B  (B rows contiguous): the tile kernel directly; op(A) = Aᵀ
 *              only changes A's strides (broadcasts need no contiguity).
 *   op(B) = Bᵀ: panels of Bᵀ (a tile's columns x 64 rows) are first copied
 *              (register transposes) to a stack buffer in the layout the
 *              tile kernel reads.
 * Each C element is a single fused multiply-add chain over k in order
 * (for k > 64 with op(B) = Bᵀ, one chain per 64-wide slice, added to C in
 * order), so results are deterministic, independent of thread count, and
 * the same with either instruction set; a layer's bias and ReLU can be
 * applied as a tile is stored (the epilogue), with the bits of a separate
 * pass, or each finished tile can be handed to a callback instead of being
 * stored (mtli_small_gemm_tiles: the training engine's backward pass needs
 * no scratch matrix for dX).  Dot products (1-wide layers, one row through
 * transposed weights) use 16 partial sums (one zmm, or two ymm) and one
 * fixed reduction.  The kernels are written once (small_gemm_kernels.h)
 * and compiled for each instruction set through target attributes; the
 * best one the CPU has is chosen at run time (MTL_SMALL_KERNEL overrides:
 * small_isa).  Other CPUs and compilers use BLIS. */
#include "small_gemm.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KC 64 /* k slice of a packed Bᵀ panel */

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MTLI_SMALL_GEMM_X86 1
#include <immintrin.h>
#else
#define MTLI_SMALL_GEMM_X86 0
#endif

#if MTLI_SMALL_GEMM_X86

/* What is done to a finished accumulator before it is stored:
 *   c = act(alpha * acc + beta * c + bias),  act = ReLU or identity.
 * With beta == 0, c is not read (it may hold anything, even NaN), as in
 * BLIS; bias (one per column, indexed like c's columns) may be NULL. */
typedef struct epilogue {
    float alpha, beta;
    const float *bias;
    bool relu;
} epilogue;

/* ---- AVX-512 ------------------------------------------------------------------------ */

#define SG512 __attribute__((target("avx512f")))

/* Lane mask for columns [j, j + 16) of an n-wide row. */
static inline __mmask16 mask_avx512(int64_t j, int64_t n)
{
    const int64_t w = n - j;
    return w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
}

/* dst (16 x 16, row stride ldd) = transpose of src (16 x 16, row stride
 * lds), in registers: 32-bit, 64-bit, then two 128-bit lane shuffles. */
SG512 __attribute__((always_inline)) static inline void transpose_avx512(const float *src, int64_t lds, float *dst,
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

#define SG(name) name##_avx512
#define SG_ATTR SG512
#define SG_V __m512
#define SG_M __mmask16
#define SG_LANES 16
#define SG_MR 4
#define SG_NV 4
#define SG_ZERO() _mm512_setzero_ps()
#define SG_SET1(x) _mm512_set1_ps(x)
#define SG_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SG_MUL(a, b) _mm512_mul_ps(a, b)
#define SG_ADD(a, b) _mm512_add_ps(a, b)
#define SG_MAX(a, b) _mm512_max_ps(a, b)
#define SG_MASK(j, n) mask_avx512(j, n)
#define SG_LOAD(mk, p) _mm512_maskz_loadu_ps(mk, p)
#define SG_STORE(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#include "small_gemm_kernels.h" /* (it #undefs these) */

/* y[i * incy] = a_i · x for rows a_i = a + i*lda of length k: 4 rows at a
 * time, 16-lane partial sums over k, then one fixed reduction each. */
SG512 static void dots_avx512(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y,
                             int64_t incy)
{
    for (int64_t i = 0; i < m; i += 4) {
        const float *a0 = a + i * lda;
        const float *a1 = i + 1 < m ? a0 + lda : a0;
        const float *a2 = i + 2 < m ? a0 + 2 * lda : a0;
        const float *a3 = i + 3 < m ? a0 + 3 * lda : a0;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t p = 0; p < k; p += 16) {
            const __mmask16 mk = mask_avx512(p, k);
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

/* ---- AVX2 + FMA ---------------------------------------------------------------------- */

#define SG256 __attribute__((target("avx2,fma")))

/* Lane mask (all bits of a lane set) for columns [j, j + 8) of an n-wide row. */
SG256 static inline __m256i mask_avx2(int64_t j, int64_t n)
{
    const int64_t w = n - j;
    const int c = w >= 8 ? 8 : w <= 0 ? 0 : (int)w;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* dst (8 x 8, row stride ldd) = transpose of src (8 x 8, row stride lds). */
SG256 __attribute__((always_inline)) static inline void transpose_avx2(const float *src, int64_t lds, float *dst,
                                                                       int64_t ldd)
{
    __m256 r[8], t[8];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    _Pragma("GCC unroll 4") for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[q + c]: rows q..q+3 of columns c, c+4 (q = 0, 4), as two 128-bit halves */
    _Pragma("GCC unroll 2") for (int q = 0; q < 8; q += 4) {
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
    }
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
    }
}

#define SG(name) name##_avx2
#define SG_ATTR SG256
#define SG_V __m256
#define SG_M __m256i
#define SG_LANES 8
#define SG_MR 6
#define SG_NV 2
#define SG_ZERO() _mm256_setzero_ps()
#define SG_SET1(x) _mm256_set1_ps(x)
#define SG_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SG_MUL(a, b) _mm256_mul_ps(a, b)
#define SG_ADD(a, b) _mm256_add_ps(a, b)
#define SG_MAX(a, b) _mm256_max_ps(a, b)
#define SG_MASK(j, n) mask_avx2(j, n)
#define SG_LOAD(mk, p) _mm256_maskload_ps(p, mk)
#define SG_STORE(p, mk, v) _mm256_maskstore_ps(p, mk, v)
#include "small_gemm_kernels.h" /* (it #undefs these) */

/* The 16 partial sums of dots_avx512 as two 8-lane halves (lo: lanes
 * 0-7), reduced in the order GCC's _mm512_reduce_add_ps uses: halves,
 * then 128-bit halves, then lanes (0+2, 1+3), then the two.  So both
 * instruction sets give the same dot products. */
SG256 static inline float reduce16_avx2(__m256 lo, __m256 hi)
{
    const __m256 s8 = _mm256_add_ps(hi, lo);
    const __m128 s4 = _mm_add_ps(_mm256_extractf128_ps(s8, 1), _mm256_castps256_ps128(s8));
    const __m128 s2 = _mm_add_ps(s4, _mm_shuffle_ps(s4, s4, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(s2) + _mm_cvtss_f32(_mm_shuffle_ps(s2, s2, _MM_SHUFFLE(1, 1, 1, 1)));
}

/* dots_avx512 with each 16-lane partial sum kept as two ymm. */
SG256 static void dots_avx2(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y, int64_t incy)
{
    for (int64_t i = 0; i < m; i += 2) {
        const float *a0 = a + i * lda;
        const float *a1 = i + 1 < m ? a0 + lda : a0;
        __m256 s0l = _mm256_setzero_ps(), s0h = s0l, s1l = s0l, s1h = s0l;
        for (int64_t p = 0; p < k; p += 16) {
            const __m256i ml = mask_avx2(p, k), mh = mask_avx2(p + 8, k);
            const __m256 xl = _mm256_maskload_ps(x + p, ml), xh = _mm256_maskload_ps(x + p + 8, mh);
            s0l = _mm256_fmadd_ps(_mm256_maskload_ps(a0 + p, ml), xl, s0l);
            s0h = _mm256_fmadd_ps(_mm256_maskload_ps(a0 + p + 8, mh), xh, s0h);
            s1l = _mm256_fmadd_ps(_mm256_maskload_ps(a1 + p, ml), xl, s1l);
            s1h = _mm256_fmadd_ps(_mm256_maskload_ps(a1 + p + 8, mh), xh, s1h);
        }
        y[i * incy] = reduce16_avx2(s0l, s0h);
        if (i + 1 < m) y[(i + 1) * incy] = reduce16_avx2(s1l, s1h);
    }
}

#endif /* MTLI_SMALL_GEMM_X86 */

/* ---- the instruction set ------------------------------------------------------------ */

/* The kernels named `want` ("avx512", "avx2", "off"; NULL: the best) if
 * this CPU has them, else none. */
static int isa_for(const char *want)
{
#if MTLI_SMALL_GEMM_X86
    __builtin_cpu_init(); /* idempotent; needed when called from a constructor */
    const bool avx512 = __builtin_cpu_supports("avx512f");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && !strcmp(want, "off")) return MTLI_ISA_BASELINE;
    if (want && !strcmp(want, "avx2")) return avx2 ? MTLI_ISA_AVX2 : MTLI_ISA_BASELINE;
    if (want && !strcmp(want, "avx512")) return avx512 ? MTLI_ISA_AVX512 : MTLI_ISA_BASELINE;
    return avx512 ? MTLI_ISA_AVX512 : avx2 ? MTLI_ISA_AVX2 : MTLI_ISA_BASELINE;
#else
    (void)want;
    return MTLI_ISA_BASELINE;
#endif
}

/* The kernels in use: the best the CPU has, unless the environment
 * variable MTL_SMALL_KERNEL says "avx2" or "off" (BLIS for everything), a
 * diagnostic switch read once; tests run the AVX2 kernels on AVX-512
 * machines with it.  Any thread may be first: each computes the same. */
static atomic_int g_isa = -1;

static int small_isa(void)
{
    int v = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (v < 0) {
        v = isa_for(getenv("MTL_SMALL_KERNEL"));
        atomic_store_explicit(&g_isa, v, memory_order_relaxed);
    }
    return v;
}

bool mtli_small_gemm_select(const char *name)
{
    const int v = isa_for(name);
    if (name && strcmp(name, "off") && v == MTLI_ISA_BASELINE) return false;
    atomic_store_explicit(&g_isa, v, memory_order_relaxed);
    return true;
}

bool mtli_small_gemm_available(void)
{
    return small_isa() != MTLI_ISA_BASELINE;
}

const char *mtli_small_gemm_isa_name(void)
{
    static const char *const names[] = { "none", "avx2", "avx512" };
    return names[small_isa()];
}

const char *mtl_small_kernels(void)
{
    return mtli_small_gemm_isa_name();
}

/* Shapes and strides the kernel takes (anything odd goes to mtli_gemm,
 * which reports it). */
/* A small product (at most MTLI_SMALL_GEMM_MAX_FLOPS) on a CPU with the kernels. */
static bool small_shape(int64_t m, int64_t n, int64_t k)
{
    if (m < 1 || n < 1 || k < 1) return false;
    if (2.0 * (double)m * (double)n * (double)k > MTLI_SMALL_GEMM_MAX_FLOPS) return false;
    return mtli_small_gemm_available();
}

static bool small_ok(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                     const float *bm, int64_t ldb, const float *c, int64_t ldc)
{
    if (trans_a && trans_b) return false;
    if (!a || !bm || !c || ldc < n || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return false;
    return small_shape(m, n, k);
}

#if MTLI_SMALL_GEMM_X86
static void run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                const float *bm, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    if (small_isa() == MTLI_ISA_AVX512)
        run_avx512(trans_a, trans_b, m, n, k, a, lda, bm, ldb, e, c, ldc);
    else
        run_avx2(trans_a, trans_b, m, n, k, a, lda, bm, ldb, e, c, ldc);
}
#endif

bool mtli_small_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *bm, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (!small_ok(trans_a, trans_b, m, n, k, a, lda, bm, ldb, c, ldc)) return false;
#if MTLI_SMALL_GEMM_X86
    const epilogue e = { alpha, beta, NULL, false };
    run(trans_a, trans_b, m, n, k, a, lda, bm, ldb, &e, c, ldc);
    return true;
#else
    (void)alpha, (void)beta;
    return false;
#endif
}

bool mtli_small_bias_act_row(int64_t n, const float *bias, bool relu, float *c)
{
#if MTLI_SMALL_GEMM_X86
    const int isa = small_isa();
    if (isa == MTLI_ISA_AVX512) bias_act_row_avx512(n, bias, relu, c);
    else if (isa == MTLI_ISA_AVX2) bias_act_row_avx2(n, bias, relu, c);
    return isa != MTLI_ISA_BASELINE;
#else
    (void)n, (void)bias, (void)relu, (void)c;
    return false;
#endif
}

bool mtli_small_gemm_bias_act(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const float *bm, int64_t ldb, const float *bias, bool relu, float *c, int64_t ldc)
{
    if (!bias || !small_ok(false, trans_b, m, n, k, a, lda, bm, ldb, c, ldc)) return false;
#if MTLI_SMALL_GEMM_X86
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
    return !(trans_b && k > KC) && small_shape(m, n, k);
}

bool mtli_small_gemm_tiles(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                           const float *bm, int64_t ldb, mtli_tile_fn done, void *ctx)
{
    if (!mtli_small_gemm_tiles_fit(trans_b, m, n, k) || !a || !bm || !done || lda < k || ldb < (trans_b ? k : n))
        return false;
#if MTLI_SMALL_GEMM_X86
    if (small_isa() == MTLI_ISA_AVX512)
        gemm_tiles_avx512(trans_b, m, n, k, a, lda, bm, ldb, done, ctx);
    else
        gemm_tiles_avx2(trans_b, m, n, k, a, lda, bm, ldb, done, ctx);
    return true;
#else
    (void)ctx;
    return false;
#endif
}

bool mtli_small_dots(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y, int64_t incy)
{
    if (m < 1 || k < 1 || !a || !x || !y || lda < k || incy < 1 || !mtli_small_gemm_available()) return false;
#if MTLI_SMALL_GEMM_X86
    if (small_isa() == MTLI_ISA_AVX512)
        dots_avx512(m, k, a, lda, x, y, incy);
    else
        dots_avx2(m, k, a, lda, x, y, incy);
    return true;
#else
    return false;
#endif
}
