/* optim_kernels.c -- the elementwise loops of the optimiser step: SGD,
 * Adam/AdamW, the gradient finite check and the gradient's sum of squares
 * (clipping), over one contiguous span.
 * The formulas are in optim.c's header comment.
 *
 * Adam and the finite check have one version per instruction set, chosen
 * at run time (AVX-512F, AVX2, then 4-wide GCC vectors with a scalar
 * tail).  Every version of Adam does the same IEEE operations in the same
 * order, so a parameter's update is bitwise the same whichever CPU, thread
 * or vector lane did it (sqrt and division are correctly rounded on every
 * path).  That also means no multiply-add may be fused: GCC fuses a*b + c
 * even across intrinsics in its GNU modes (-ffp-contract=fast) once the
 * target has FMA, as AVX-512F does, hence the pragma below.  (Clang honours
 * its pragma except under -ffp-contract=fast; the tests would catch it.) */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "optim_kernels.h"

#include <math.h>
#include <string.h>

/* Adam moments smaller than this in magnitude are set to zero (optim.c). */
#define MTLI_ADAM_TINY 1e-30f

/* Moments are always finite here (a non-finite gradient never reaches the
 * update), so the vector forms need only |x| >= TINY as a lane mask. */
static inline float mtli_flush(float x)
{
    return fabsf(x) >= MTLI_ADAM_TINY ? x : 0.0f;
}

/* Four-wide blocks with GCC/Clang vector extensions.  At -O2 GCC 12 only
 * auto-vectorises loops whose trip count it knows, and never a loop calling
 * sqrtf while errno must be kept (-fmath-errno, the default), so the
 * update loops state their vector width themselves; a scalar tail handles
 * the last n % 4 elements with the same operations in the same order. */
#if defined(__GNUC__)
#define MTLI_HAVE_F4 1
#if defined(__SSE__)
#include <xmmintrin.h>
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#endif
typedef float mtli_f4 __attribute__((vector_size(16)));
typedef int32_t mtli_i4 __attribute__((vector_size(16)));

static inline mtli_f4 f4_load(const float *p)
{
    mtli_f4 v;
    memcpy(&v, p, sizeof v); /* unaligned load: ranges start anywhere */
    return v;
}

static inline void f4_store(float *p, mtli_f4 v) { memcpy(p, &v, sizeof v); }

static inline mtli_f4 f4_sqrt(mtli_f4 x)
{
#if defined(__SSE__)
    return (mtli_f4)_mm_sqrt_ps((__m128)x);
#elif defined(__ARM_NEON) && defined(__aarch64__)
    return (mtli_f4)vsqrtq_f32((float32x4_t)x);
#else
    mtli_f4 r;
    for (int k = 0; k < 4; k++) r[k] = sqrtf(x[k]);
    return r;
#endif
}

/* Zero the lanes where |x| < MTLI_ADAM_TINY, as mtli_flush does. */
static inline mtli_f4 f4_flush(mtli_f4 x)
{
    const mtli_f4 ax = (mtli_f4)((mtli_i4)x & 0x7fffffff);
    return (mtli_f4)((mtli_i4)x & (ax >= MTLI_ADAM_TINY));
}
#else
#define MTLI_HAVE_F4 0
#endif

/* x86-64 machines get AVX2 and AVX-512F versions, chosen at run time. */
#if defined(__GNUC__) && defined(__x86_64__)
#define MTLI_HAVE_X86 1
#include <immintrin.h>
#define MTLI_AVX2 __attribute__((target("avx2")))
#define MTLI_AVX512 __attribute__((target("avx512f")))
#else
#define MTLI_HAVE_X86 0
#endif

int mtli_optim_best_isa(void)
{
#if MTLI_HAVE_X86
    /* Both also check that the OS saves the wide registers (XCR0). */
    if (__builtin_cpu_supports("avx512f")) return MTLI_ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return MTLI_ISA_AVX2;
#endif
    return MTLI_ISA_BASELINE;
}

/* ---- SGD ------------------------------------------------------------------ */

static void mtli_sgd_plain(float *restrict p, const float *restrict g, int64_t n, float gs, float lr, float wd)
{
    int64_t i = 0;
#if MTLI_HAVE_F4
    for (; i + 4 <= n; i += 4) {
        mtli_f4 pi = f4_load(p + i);
        f4_store(p + i, pi - lr * (gs * f4_load(g + i) + wd * pi));
    }
#endif
    for (; i < n; i++) p[i] -= lr * (gs * g[i] + wd * p[i]);
}

static void mtli_sgd_momentum(float *restrict p, const float *restrict g, float *restrict vel,
                              int64_t n, float gs, float lr, float wd, float mu, bool nesterov)
{
    /* Nesterov: d = g' + mu*v (after the velocity update); classic: d = v. */
    const float look = nesterov ? mu : 0.0f, keep_g = nesterov ? 1.0f : 0.0f;
    const float keep_v = nesterov ? 0.0f : 1.0f;
    int64_t i = 0;
#if MTLI_HAVE_F4
    for (; i + 4 <= n; i += 4) {
        mtli_f4 pi = f4_load(p + i);
        mtli_f4 gi = gs * f4_load(g + i) + wd * pi;
        mtli_f4 vi = mu * f4_load(vel + i) + gi;
        f4_store(vel + i, vi);
        f4_store(p + i, pi - lr * (keep_g * gi + (look + keep_v) * vi));
    }
#endif
    for (; i < n; i++) {
        float gi = gs * g[i] + wd * p[i];
        float vi = mu * vel[i] + gi;
        vel[i] = vi;
        p[i] -= lr * (keep_g * gi + (look + keep_v) * vi);
    }
}

void mtli_sgd_kernel(float *restrict p, const float *restrict g, float *restrict vel, int64_t n,
                     const mtli_sgd_coef *c)
{
    if (c->momentum)
        mtli_sgd_momentum(p, g, vel, n, c->gscale, c->lr, c->wd, c->mu, c->nesterov);
    else
        mtli_sgd_plain(p, g, n, c->gscale, c->lr, c->wd);
}

/* ---- Adam / AdamW --------------------------------------------------------- */

/* One element at a time: the reference, and the tail of the vector versions. */
static void mtli_adam_scalar(float *restrict p, const float *restrict g, float *restrict m,
                             float *restrict v, int64_t n, const mtli_adam_coef *c)
{
    const float b1 = c->b1, a1 = c->one_minus_b1, b2 = c->b2, a2 = c->one_minus_b2;
    const float step = c->step, isb = c->inv_sqrt_bc2, eps = c->eps, l2 = c->l2, keep = c->keep;
    const float gs = c->gscale;
    for (int64_t i = 0; i < n; i++) {
        float p0 = p[i];
        float gi = gs * g[i] + l2 * p0;
        float mi = mtli_flush(b1 * m[i] + a1 * gi);
        float vi = mtli_flush(b2 * v[i] + a2 * (gi * gi));
        m[i] = mi;
        v[i] = vi;
        p[i] = p0 * keep - step * mi / (sqrtf(vi) * isb + eps);
    }
}

/* The same operations in the same order on whole vectors; each returns
 * how many elements it did (the scalar loop does the rest). */
#if MTLI_HAVE_F4
static int64_t mtli_adam_f4(float *restrict p, const float *restrict g, float *restrict m,
                            float *restrict v, int64_t n, const mtli_adam_coef *c)
{
    const float b1 = c->b1, a1 = c->one_minus_b1, b2 = c->b2, a2 = c->one_minus_b2;
    const float step = c->step, isb = c->inv_sqrt_bc2, eps = c->eps, l2 = c->l2, keep = c->keep;
    const float gs = c->gscale;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        mtli_f4 p0 = f4_load(p + i);
        mtli_f4 gi = gs * f4_load(g + i) + l2 * p0;
        mtli_f4 mi = f4_flush(b1 * f4_load(m + i) + a1 * gi);
        mtli_f4 vi = f4_flush(b2 * f4_load(v + i) + a2 * (gi * gi));
        f4_store(m + i, mi);
        f4_store(v + i, vi);
        f4_store(p + i, p0 * keep - step * mi / (f4_sqrt(vi) * isb + eps));
    }
    return i;
}
#endif

#if MTLI_HAVE_X86
/* Eight lanes, sixteen lanes: on a 657k-parameter model with the data in
 * cache 348 µs (four lanes), 189 µs (AVX2), 113 µs (AVX-512): bound by
 * division and square-root throughput.  Streamed from memory (as in a
 * training step) all take ~300 µs (docs/performance.md). */
typedef float mtli_f8 __attribute__((vector_size(32)));
typedef int32_t mtli_i8 __attribute__((vector_size(32)));

MTLI_AVX2 static inline mtli_f8 f8_flush(mtli_f8 x)
{
    const mtli_f8 ax = (mtli_f8)((mtli_i8)x & 0x7fffffff);
    return (mtli_f8)((mtli_i8)x & (ax >= MTLI_ADAM_TINY));
}

MTLI_AVX2 static int64_t mtli_adam_f8(float *restrict p, const float *restrict g, float *restrict m,
                                      float *restrict v, int64_t n, const mtli_adam_coef *c)
{
    const float b1 = c->b1, a1 = c->one_minus_b1, b2 = c->b2, a2 = c->one_minus_b2;
    const float step = c->step, isb = c->inv_sqrt_bc2, eps = c->eps, l2 = c->l2, keep = c->keep;
    const float gs = c->gscale;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        mtli_f8 p0, gi, mi, vi;
        memcpy(&p0, p + i, sizeof p0);
        memcpy(&gi, g + i, sizeof gi);
        memcpy(&mi, m + i, sizeof mi);
        memcpy(&vi, v + i, sizeof vi);
        gi = gs * gi + l2 * p0;
        mi = f8_flush(b1 * mi + a1 * gi);
        vi = f8_flush(b2 * vi + a2 * (gi * gi));
        memcpy(m + i, &mi, sizeof mi);
        memcpy(v + i, &vi, sizeof vi);
        const mtli_f8 root = (mtli_f8)_mm256_sqrt_ps((__m256)vi);
        p0 = p0 * keep - step * mi / (root * isb + eps);
        memcpy(p + i, &p0, sizeof p0);
    }
    return i;
}

/* Sixteen lanes, and the last n % 16 elements through a lane mask, so no
 * scalar tail.  Intrinsics rather than vector extensions: a comparison
 * gives a mask register, which `? :` on vectors would not use. */
typedef struct z16_coef {
    __m512 gs, b1, a1, b2, a2, step, isb, eps, l2, keep, tiny;
} z16_coef;

MTLI_AVX512 static inline __m512 z16_flush(__m512 x, __m512 tiny)
{
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(x), tiny, _CMP_GE_OQ);
    return _mm512_maskz_mov_ps(big, x);
}

/* Lanes outside `k` are neither read nor written (their arithmetic on
 * zeros is discarded). */
MTLI_AVX512 static inline void z16_block(float *p, const float *g, float *m, float *v, __mmask16 k,
                                         const z16_coef *c)
{
    const __m512 p0 = _mm512_maskz_loadu_ps(k, p);
    const __m512 gi = _mm512_add_ps(_mm512_mul_ps(c->gs, _mm512_maskz_loadu_ps(k, g)), _mm512_mul_ps(c->l2, p0));
    const __m512 mi = z16_flush(
        _mm512_add_ps(_mm512_mul_ps(c->b1, _mm512_maskz_loadu_ps(k, m)), _mm512_mul_ps(c->a1, gi)), c->tiny);
    const __m512 vi = z16_flush(_mm512_add_ps(_mm512_mul_ps(c->b2, _mm512_maskz_loadu_ps(k, v)),
                                              _mm512_mul_ps(c->a2, _mm512_mul_ps(gi, gi))),
                                c->tiny);
    _mm512_mask_storeu_ps(m, k, mi);
    _mm512_mask_storeu_ps(v, k, vi);
    /* p0 * keep - step * mi / (sqrt(vi) * isb + eps) */
    const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), c->isb), c->eps);
    const __m512 upd = _mm512_div_ps(_mm512_mul_ps(c->step, mi), den);
    _mm512_mask_storeu_ps(p, k, _mm512_sub_ps(_mm512_mul_ps(p0, c->keep), upd));
}

MTLI_AVX512 static void mtli_adam_z16(float *restrict p, const float *restrict g, float *restrict m,
                                      float *restrict v, int64_t n, const mtli_adam_coef *c)
{
    const z16_coef z = {
        .gs = _mm512_set1_ps(c->gscale),
        .b1 = _mm512_set1_ps(c->b1),
        .a1 = _mm512_set1_ps(c->one_minus_b1),
        .b2 = _mm512_set1_ps(c->b2),
        .a2 = _mm512_set1_ps(c->one_minus_b2),
        .step = _mm512_set1_ps(c->step),
        .isb = _mm512_set1_ps(c->inv_sqrt_bc2),
        .eps = _mm512_set1_ps(c->eps),
        .l2 = _mm512_set1_ps(c->l2),
        .keep = _mm512_set1_ps(c->keep),
        .tiny = _mm512_set1_ps(MTLI_ADAM_TINY),
    };
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) z16_block(p + i, g + i, m + i, v + i, (__mmask16)0xffff, &z);
    if (i < n) z16_block(p + i, g + i, m + i, v + i, (__mmask16)((1u << (n - i)) - 1), &z);
}
#endif

void mtli_adam_kernel(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                      int64_t n, const mtli_adam_coef *c, int isa)
{
    int64_t done = 0;
#if MTLI_HAVE_X86
    if (isa == MTLI_ISA_AVX512) {
        mtli_adam_z16(p, g, m, v, n, c);
        return;
    }
    if (isa == MTLI_ISA_AVX2) done = mtli_adam_f8(p, g, m, v, n, c);
#endif
#if MTLI_HAVE_F4
    done += mtli_adam_f4(p + done, g + done, m + done, v + done, n - done, c);
#endif
    (void)isa;
    mtli_adam_scalar(p + done, g + done, m + done, v + done, n - done, c);
}

/* ---- the finite check ----------------------------------------------------- */

/* A float is Inf or NaN when its exponent bits are all ones, i.e. when its
 * bits without the sign are >= those of +Inf.  The vector versions keep
 * the largest such value per lane in several accumulators (independent
 * chains, so loads overlap) and compare once at the end: two integer
 * operations per vector, no branch, nothing that can overflow. */
#define MTLI_ABS_BITS 0x7fffffffu
#define MTLI_INF_BITS 0x7f800000u

static bool finite_scalar(const float *x, int64_t n)
{
    uint32_t worst = 0;
    int64_t i = 0;
#if MTLI_HAVE_F4
    mtli_i4 acc = { 0, 0, 0, 0 };
    for (; i + 4 <= n; i += 4) {
        mtli_i4 u;
        memcpy(&u, x + i, sizeof u);
        acc |= (u & (int32_t)MTLI_INF_BITS) == (int32_t)MTLI_INF_BITS; /* -1 in a non-finite lane */
    }
    worst = (uint32_t)(acc[0] | acc[1] | acc[2] | acc[3]);
#endif
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        worst |= (u & MTLI_INF_BITS) == MTLI_INF_BITS;
    }
    return worst == 0;
}

#if MTLI_HAVE_X86
MTLI_AVX2 static bool finite_avx2(const float *x, int64_t n)
{
    const __m256i abs = _mm256_set1_epi32((int)MTLI_ABS_BITS);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_max_epu32(a0, _mm256_and_si256(abs, _mm256_loadu_si256((const __m256i *)(x + i))));
        a1 = _mm256_max_epu32(a1, _mm256_and_si256(abs, _mm256_loadu_si256((const __m256i *)(x + i + 8))));
        a2 = _mm256_max_epu32(a2, _mm256_and_si256(abs, _mm256_loadu_si256((const __m256i *)(x + i + 16))));
        a3 = _mm256_max_epu32(a3, _mm256_and_si256(abs, _mm256_loadu_si256((const __m256i *)(x + i + 24))));
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_max_epu32(a0, _mm256_and_si256(abs, _mm256_loadu_si256((const __m256i *)(x + i))));
    a0 = _mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3));
    /* Some lane >= Inf's bits: max(lane, INF) == lane somewhere. */
    const __m256i inf = _mm256_set1_epi32((int)MTLI_INF_BITS);
    const bool bad = _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_max_epu32(a0, inf), a0)) != 0;
    return !bad && finite_scalar(x + i, n - i);
}

MTLI_AVX512 static bool finite_avx512(const float *x, int64_t n)
{
    const __m512i abs = _mm512_set1_epi32((int)MTLI_ABS_BITS);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_max_epu32(a0, _mm512_and_si512(abs, _mm512_loadu_si512(x + i)));
        a1 = _mm512_max_epu32(a1, _mm512_and_si512(abs, _mm512_loadu_si512(x + i + 16)));
        a2 = _mm512_max_epu32(a2, _mm512_and_si512(abs, _mm512_loadu_si512(x + i + 32)));
        a3 = _mm512_max_epu32(a3, _mm512_and_si512(abs, _mm512_loadu_si512(x + i + 48)));
    }
    for (; i < n; i += 16) { /* the rest, the last block through a lane mask */
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_max_epu32(a0, _mm512_and_si512(abs, _mm512_maskz_loadu_epi32(k, x + i)));
    }
    a0 = _mm512_max_epu32(_mm512_max_epu32(a0, a1), _mm512_max_epu32(a2, a3));
    return _mm512_cmpge_epu32_mask(a0, _mm512_set1_epi32((int)MTLI_INF_BITS)) == 0;
}
#endif

bool mtli_finite_kernel(const float *x, int64_t n, int isa)
{
#if MTLI_HAVE_X86
    if (isa == MTLI_ISA_AVX512) return finite_avx512(x, n);
    if (isa == MTLI_ISA_AVX2) return finite_avx2(x, n);
#endif
    (void)isa;
    return finite_scalar(x, n);
}

/* ---- the sum of squares (gradient clipping) -------------------------------- */

/* Defined as 32 lanes: lane k sums x[i]^2 for i = k mod 32 in order, in
 * double, then the lanes are combined by one fixed tree (lane_tree).  Each
 * square of a float is exact in double, so multiply-then-add and a fused
 * multiply-add give the same bits, and every version below gives the same
 * result; missing elements of the last 32 count as +0, which adds nothing.
 * A NaN or Inf anywhere makes the sum NaN or Inf, and finite floats cannot
 * overflow it (n * FLT_MAX^2 < DBL_MAX for any n a model can have): the sum
 * is also the finite check. */
enum { SQ_LANES = 32 };

/* ((l[k] + l[k+16]) + (l[k+8] + l[k+24])) for k < 8, then the same halving
 * over 4, 2 and 1. */
static double lane_tree(const double *l)
{
    double u[8], h[4];
    for (int k = 0; k < 8; k++) u[k] = (l[k] + l[k + 16]) + (l[k + 8] + l[k + 24]);
    for (int k = 0; k < 4; k++) h[k] = u[k] + u[k + 4];
    return (h[0] + h[2]) + (h[1] + h[3]);
}

static double sumsq_scalar(const float *x, int64_t n)
{
    double l[SQ_LANES] = { 0 };
    int64_t i = 0;
    for (; i + SQ_LANES <= n; i += SQ_LANES)
        for (int k = 0; k < SQ_LANES; k++) l[k] += (double)x[i + k] * (double)x[i + k];
    for (int k = 0; i < n; i++, k++) l[k] += (double)x[i] * (double)x[i];
    return lane_tree(l);
}

#if MTLI_HAVE_X86
/* acc + p[0..3]^2 in double. */
MTLI_AVX2 static inline __m256d sq4(__m256d acc, const float *p)
{
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(p));
    return _mm256_add_pd(acc, _mm256_mul_pd(v, v));
}

MTLI_AVX2 static double sumsq_avx2(const float *x, int64_t n)
{
    /* aj holds lanes 4j .. 4j+3, in named registers (GCC kept an array of
     * accumulators in memory, a store-to-load chain per add). */
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t i = 0;
    for (; i + SQ_LANES <= n; i += SQ_LANES) {
        a0 = sq4(a0, x + i), a1 = sq4(a1, x + i + 4), a2 = sq4(a2, x + i + 8), a3 = sq4(a3, x + i + 12);
        a4 = sq4(a4, x + i + 16), a5 = sq4(a5, x + i + 20), a6 = sq4(a6, x + i + 24), a7 = sq4(a7, x + i + 28);
    }
    double l[SQ_LANES];
    _mm256_storeu_pd(l, a0), _mm256_storeu_pd(l + 4, a1), _mm256_storeu_pd(l + 8, a2);
    _mm256_storeu_pd(l + 12, a3), _mm256_storeu_pd(l + 16, a4), _mm256_storeu_pd(l + 20, a5);
    _mm256_storeu_pd(l + 24, a6), _mm256_storeu_pd(l + 28, a7);
    for (int k = 0; i < n; i++, k++) l[k] += (double)x[i] * (double)x[i];
    return lane_tree(l);
}

/* acc + p[0..7]^2 in double. */
MTLI_AVX512 static inline __m512d sq8(__m512d acc, const float *p)
{
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(p));
    return _mm512_add_pd(acc, _mm512_mul_pd(v, v));
}

MTLI_AVX512 static double sumsq_avx512(const float *x, int64_t n)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0; /* aj: lanes 8j .. 8j+7 */
    int64_t i = 0;
    for (; i + SQ_LANES <= n; i += SQ_LANES)
        a0 = sq8(a0, x + i), a1 = sq8(a1, x + i + 8), a2 = sq8(a2, x + i + 16), a3 = sq8(a3, x + i + 24);
    double l[SQ_LANES];
    _mm512_storeu_pd(l, a0), _mm512_storeu_pd(l + 8, a1), _mm512_storeu_pd(l + 16, a2);
    _mm512_storeu_pd(l + 24, a3);
    for (int k = 0; i < n; i++, k++) l[k] += (double)x[i] * (double)x[i];
    return lane_tree(l);
}
#endif

double mtli_sumsq_kernel(const float *x, int64_t n, int isa)
{
#if MTLI_HAVE_X86
    if (isa == MTLI_ISA_AVX512) return sumsq_avx512(x, n);
    if (isa == MTLI_ISA_AVX2) return sumsq_avx2(x, n);
#endif
    (void)isa;
    return sumsq_scalar(x, n);
}
