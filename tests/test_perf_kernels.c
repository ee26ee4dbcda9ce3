/* test_perf_kernels.c -- the code written for speed (docs/performance.md):
 * the small-GEMM kernels against a double-precision product computed here
 * (and the AVX2 ones against the AVX-512 ones, bitwise),
 * the Adam moment flush against the update written out by hand, and the
 * warming of GEMM operands against the same product without it.
 * Unit test: it links the library's objects and calls internals. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* feenableexcept */
#endif
#include "harness.h"
#include "mtl_internal.h"
#include "small_gemm.h"

#include <fenv.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_state = 0x2545f4914f6cdd1dull;

static float rnd(void) /* uniform in [-1, 1) */
{
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return (float)((double)(g_state >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* Should the small kernels run here?  Their contract, restated: on a CPU
 * with AVX-512F, or with AVX2 and FMA, unless MTL_SMALL_KERNEL=off (or
 * =avx2 on a CPU without it). */
static bool cpu_has(const char *feature)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (!strcmp(feature, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(feature, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    (void)feature;
    return false;
}

static bool kernels_expected(void)
{
    const char *want = getenv("MTL_SMALL_KERNEL");
    if (want && !strcmp(want, "off")) return false;
    if (want && !strcmp(want, "avx2")) return cpu_has("avx2");
    return cpu_has("avx512f") || cpu_has("avx2");
}

/* One product through mtli_small_gemm against a double reference.  A and B
 * are stored as op() says, with leading dimensions padded by `pad`; C has
 * a padded border that must stay untouched.  Returns 0 if it matches. */
static int check_product(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, int64_t pad)
{
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, lda = a_cols + pad;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_cols + pad;
    const int64_t ldc = n + pad;
    float *a = malloc(sizeof(float) * (size_t)(a_rows * lda));
    float *b = malloc(sizeof(float) * (size_t)(b_rows * ldb));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc));
    float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
    ASSERT(a && b && c && c0);
    for (int64_t i = 0; i < a_rows * lda; i++) a[i] = rnd();
    for (int64_t i = 0; i < b_rows * ldb; i++) b[i] = rnd();
    for (int64_t i = 0; i < m * ldc; i++) c0[i] = rnd();
    for (int64_t i = 0; i < m; i++) /* beta == 0: C must be overwritten, never read */
        for (int64_t j = 0; j < ldc; j++) c[i * ldc + j] = (beta == 0.0f && j < n) ? NAN : c0[i * ldc + j];

    const bool done = mtli_small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    const bool expect =
        kernels_expected() && !(ta && tb) && 2.0 * (double)m * (double)n * (double)k <= MTLI_SMALL_GEMM_MAX_FLOPS;
    if (done != expect) FAILF("m=%lld n=%lld k=%lld ta=%d tb=%d: returned %d", (long long)m, (long long)n, (long long)k, ta, tb, done);
    int bad = 0;
    for (int64_t i = 0; i < m && done; i++)
        for (int64_t j = 0; j < ldc; j++) {
            const float got = c[i * ldc + j];
            if (j >= n) { /* padding */
                bad += got != c0[i * ldc + j];
                continue;
            }
            double s = 0.0, mag = 0.0;
            for (int64_t p = 0; p < k; p++) {
                const double x = ta ? a[p * lda + i] : a[i * lda + p];
                const double y = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += x * y;
                mag += fabs(x * y);
            }
            const double want = alpha * s + beta * c0[i * ldc + j];
            /* float rounding of a k-term sum: |error| <= k eps sum|x y| (plus the beta term) */
            const double tol = (double)(k + 2) * FLT_EPSILON * (fabs(alpha) * mag + fabs(beta * c0[i * ldc + j]));
            if (!(fabs(got - want) <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  m=%lld n=%lld k=%lld ta=%d tb=%d: C[%lld][%lld] = %.9g, want %.9g\n",
                            (long long)m, (long long)n, (long long)k, ta, tb, (long long)i, (long long)j, got, want);
                bad++;
            }
        }
    free(a), free(b), free(c), free(c0);
    ASSERT_EQ_INT(bad, 0);
    return 0;
}

TEST(small_gemm_matches_double_reference)
{
    /* the W1 shapes, edges of the 4 x 64 tile and the 16 x 16 transpose,
     * k above the 64-wide slices of a packed Bᵀ, and one row */
    static const int64_t shapes[][3] = { { 64, 64, 16 }, { 64, 96, 64 }, { 96, 64, 64 }, { 16, 64, 64 },
                                         { 1, 64, 64 },  { 1, 9, 16 },   { 3, 17, 5 },   { 5, 130, 33 },
                                         { 7, 1, 3 },    { 1, 1, 1 },    { 33, 65, 129 }, { 4, 48, 200 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 3; t++) { /* NN, TN, NT */
            const bool ta = t == 1, tb = t == 2;
            const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            ASSERT(check_product(ta, tb, m, n, k, 1.0f, 0.0f, 0) == 0);
            ASSERT(check_product(ta, tb, m, n, k, 0.5f, 0.75f, 3) == 0);
        }
    for (int r = 0; r < 200; r++) { /* random shapes, strides and scalars */
        const int t = (int)((rnd() + 1.0f) * 1.5f);
        const int64_t m = 1 + (int64_t)((rnd() + 1.0f) * 35), n = 1 + (int64_t)((rnd() + 1.0f) * 70);
        const int64_t k = 1 + (int64_t)((rnd() + 1.0f) * 50), pad = (int64_t)((rnd() + 1.0f) * 2);
        const float beta = rnd() > 0.0f ? 0.0f : rnd();
        ASSERT(check_product(t == 1, t == 2, m, n, k, rnd(), beta, pad) == 0);
    }
    return 0;
}

TEST(small_gemm_declines)
{
    float a[4] = { 1, 2, 3, 4 }, c[4] = { 0 };
    /* both operands transposed: not a shape libmtl uses */
    ASSERT(!mtli_small_gemm(true, true, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2));
    /* too big for it (BLIS blocks for the caches): nothing is read */
    ASSERT(!mtli_small_gemm(false, false, 1024, 1024, 1024, 1.0f, a, 1024, a, 1024, 0.0f, c, 1024));
    /* bad strides are left to mtli_gemm, which reports them */
    ASSERT(!mtli_small_gemm(false, false, 2, 2, 2, 1.0f, a, 1, a, 2, 0.0f, c, 2));
    ASSERT(c[0] == 0.0f && c[3] == 0.0f);
    return 0;
}

/* Each element is one multiply-add chain over k: a row computed alone has
 * the same bits as within a block of rows (for op(B) = B and Bᵀ). */
TEST(small_gemm_rows_independent)
{
    if (!kernels_expected()) return 0;
    enum { M = 7, N = 70, K = 100 };
    static float a[M * K], b[K * N], c[M * N], row[N];
    for (int i = 0; i < M * K; i++) a[i] = rnd();
    for (int i = 0; i < K * N; i++) b[i] = rnd();
    for (int tb = 0; tb < 2; tb++) {
        ASSERT(mtli_small_gemm(false, tb, M, N, K, 1.0f, a, K, b, tb ? K : N, 0.0f, c, N));
        for (int i = 0; i < M; i++) {
            ASSERT(mtli_small_gemm(false, tb, 1, N, K, 1.0f, a + i * K, K, b, tb ? K : N, 0.0f, row, N));
            ASSERT(memcmp(row, c + i * N, sizeof row) == 0);
        }
    }
    return 0;
}

/* The fused epilogue gives the bits of the product followed by the layer's
 * separate bias-and-activation pass (layers.c: u = c + b; c = u > 0 ? u : 0). */
TEST(small_gemm_bias_act_equals_two_passes)
{
    if (!kernels_expected()) return 0;
    static const int64_t shapes[][3] = { { 64, 96, 64 }, { 5, 33, 130 }, { 1, 20, 7 }, { 9, 64, 200 } };
    for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
        for (int tb = 0; tb < 2; tb++)
            for (int relu = 0; relu < 2; relu++) {
                const int64_t m = shapes[q][0], n = shapes[q][1], k = shapes[q][2], ldc = n + 2;
                float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(n * k));
                float *bias = malloc(sizeof(float) * (size_t)n), *c1 = malloc(sizeof(float) * (size_t)(m * ldc));
                float *c2 = malloc(sizeof(float) * (size_t)(m * ldc));
                ASSERT(a && b && bias && c1 && c2);
                for (int64_t i = 0; i < m * k; i++) a[i] = rnd();
                for (int64_t i = 0; i < n * k; i++) b[i] = rnd();
                for (int64_t j = 0; j < n; j++) bias[j] = rnd();
                for (int64_t i = 0; i < m * ldc; i++) c1[i] = c2[i] = NAN;
                ASSERT(mtli_small_gemm(false, tb, m, n, k, 1.0f, a, k, b, tb ? k : n, 0.0f, c1, ldc));
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        const float u = c1[i * ldc + j] + bias[j];
                        c1[i * ldc + j] = relu ? (u > 0.0f ? u : 0.0f) : u;
                    }
                ASSERT(mtli_small_gemm_bias_act(tb, m, n, k, a, k, b, tb ? k : n, bias, relu, c2, ldc));
                for (int64_t i = 0; i < m; i++) ASSERT(memcmp(c1 + i * ldc, c2 + i * ldc, (size_t)n * sizeof(float)) == 0);
                ASSERT(isnan(c2[ldc - 1])); /* padding untouched */
                free(a), free(b), free(bias), free(c1), free(c2);
            }
    return 0;
}

/* Dot products (1-wide layers, one row through transposed weights) against
 * a double reference. */
TEST(small_dots_match_double_reference)
{
    static const int64_t shapes[][2] = { { 1, 1 }, { 1, 64 }, { 64, 32 }, { 7, 17 }, { 3, 300 }, { 96, 64 } };
    for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
        const int64_t m = shapes[q][0], k = shapes[q][1], lda = k + 3, incy = 2;
        float *a = malloc(sizeof(float) * (size_t)(m * lda)), *x = malloc(sizeof(float) * (size_t)k);
        float *y = malloc(sizeof(float) * (size_t)(m * incy));
        ASSERT(a && x && y);
        for (int64_t i = 0; i < m * lda; i++) a[i] = rnd();
        for (int64_t p = 0; p < k; p++) x[p] = rnd();
        for (int64_t i = 0; i < m * incy; i++) y[i] = 7.0f;
        const bool done = mtli_small_dots(m, k, a, lda, x, y, incy);
        ASSERT(done == kernels_expected());
        for (int64_t i = 0; i < m && done; i++) {
            double s = 0.0, mag = 0.0;
            for (int64_t p = 0; p < k; p++) s += (double)a[i * lda + p] * x[p], mag += fabs((double)a[i * lda + p] * x[p]);
            ASSERT_NEAR(y[i * incy], s, 0.0, (double)(k + 1) * FLT_EPSILON * mag);
            ASSERT(y[i * incy + 1] == 7.0f); /* between the strided outputs: untouched */
        }
        free(a), free(x), free(y);
    }
    return 0;
}

/* Both instruction sets compute every element as the same chain (and the
 * dot products with the same 16 partial sums and reduction), so they give
 * the same bits: products both ways, k over one 64-wide slice, alpha and
 * beta, the bias/ReLU epilogue, tiles handed over, dot products.  Run
 * only on a CPU with both (the test selects each in turn). */
typedef struct tile_copy {
    float *c;
    int64_t ldc;
} tile_copy;

static void copy_tile(void *ctx, int64_t i, int64_t rows, int64_t j, int64_t cols, float *t, int64_t ldt)
{
    const tile_copy *tc = ctx;
    for (int64_t r = 0; r < rows; r++) memcpy(tc->c + (i + r) * tc->ldc + j, t + r * ldt, (size_t)cols * sizeof(float));
}

/* Everything the kernels compute for one shape, into out (m*n*4 + m floats). */
static int all_products(int64_t m, int64_t n, int64_t k, const float *a, const float *b, const float *bias, float *out)
{
    const int64_t mn = m * n;
    for (int tb = 0; tb < 2; tb++) {
        float *c = out + tb * 2 * mn;
        for (int64_t i = 0; i < mn; i++) c[i] = 0.5f;
        ASSERT(mtli_small_gemm(false, tb, m, n, k, 0.75f, a, k, b, tb ? k : n, 1.25f, c, n));
        ASSERT(mtli_small_gemm_bias_act(tb, m, n, k, a, k, b, tb ? k : n, bias, true, c + mn, n));
    }
    float *t = out + 4 * mn;
    if (k <= 64) {
        tile_copy tc = { t, n };
        ASSERT(mtli_small_gemm_tiles(true, m, n, k, a, k, b, k, copy_tile, &tc));
    }
    ASSERT(mtli_small_dots(m, k, a, k, b, t + mn, 1));
    return 0;
}

/* The epilogue alone (mtli_small_bias_act_row, the forward pass of layers
 * BLIS computed): on each kernel set the CPU has, bitwise the scalar
 * `u = c + bias; c = u > 0 ? u : 0` (or c + bias without ReLU) for every
 * row length around the vector widths, with NaN, -0, +0 and infinities
 * among the inputs, and nothing written past the row. */
TEST(small_bias_act_row_equals_scalar)
{
    static const char *const sets[] = { "avx512", "avx2" };
    const float special[] = { NAN, -0.0f, 0.0f, -INFINITY, INFINITY, -1e-30f, 3.5f };
    enum { MAXN = 1003 };
    static float c[MAXN + 1], want[MAXN + 1], bias[MAXN];
    for (size_t s = 0; s < 2; s++) {
        if (!mtli_small_gemm_select(sets[s])) continue; /* this CPU has not got them */
        for (int64_t n = 1; n <= MAXN; n += n < 70 ? 1 : 311)
            for (int relu = 0; relu <= 1; relu++) {
                for (int64_t j = 0; j < n; j++) {
                    c[j] = j % 5 == 2 ? special[j % 7] : rnd();
                    bias[j] = j % 11 == 4 ? special[(j + 3) % 7] : rnd();
                    if (j % 13 == 6) c[j] = bias[j] = -0.0f; /* -0 + -0 is -0, +0 + -0 is +0 */
                    const float u = c[j] + bias[j];
                    want[j] = relu ? (u > 0.0f ? u : 0.0f) : u;
                }
                c[n] = want[n] = 42.0f; /* the guard past the row */
                ASSERT(mtli_small_bias_act_row(n, bias, relu, c));
                if (memcmp(c, want, (size_t)(n + 1) * sizeof(float)))
                    FAILF("%s, n = %lld, relu %d: differs from the scalar loop", sets[s], (long long)n, relu);
            }
    }
    ASSERT(mtli_small_gemm_select("off"));
    ASSERT(!mtli_small_bias_act_row(4, bias, true, c)); /* no kernels: the caller's loop */
    ASSERT(mtli_small_gemm_select(getenv("MTL_SMALL_KERNEL"))); /* back to what the process had */
    return 0;
}

TEST(small_kernels_avx2_equals_avx512)
{
    if (!cpu_has("avx512f") || !cpu_has("avx2")) return 0;
    static const int64_t shapes[][3] = { { 64, 96, 64 }, { 5, 33, 130 }, { 1, 20, 7 }, { 9, 64, 200 }, { 37, 17, 64 } };
    for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
        const int64_t m = shapes[q][0], n = shapes[q][1], k = shapes[q][2], size = m * n * 5 + m;
        float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(n * k));
        float *bias = malloc(sizeof(float) * (size_t)n);
        float *o512 = calloc((size_t)size, sizeof(float)), *o2 = calloc((size_t)size, sizeof(float));
        ASSERT(a && b && bias && o512 && o2);
        for (int64_t i = 0; i < m * k; i++) a[i] = rnd();
        for (int64_t i = 0; i < n * k; i++) b[i] = rnd();
        for (int64_t j = 0; j < n; j++) bias[j] = rnd();
        ASSERT(mtli_small_gemm_select("avx512"));
        const int r512 = all_products(m, n, k, a, b, bias, o512);
        ASSERT(mtli_small_gemm_select("avx2"));
        ASSERT(strcmp(mtli_small_gemm_isa_name(), "avx2") == 0);
        const int r2 = all_products(m, n, k, a, b, bias, o2);
        ASSERT(mtli_small_gemm_select(getenv("MTL_SMALL_KERNEL"))); /* back to what the process had */
        ASSERT(r512 == 0 && r2 == 0);
        for (int64_t i = 0; i < size; i++)
            if (memcmp(o512 + i, o2 + i, sizeof(float)))
                FAILF("shape %lld x %lld x %lld: element %lld differs (%a vs %a)", (long long)m, (long long)n,
                      (long long)k, (long long)i, (double)o512[i], (double)o2[i]);
        free(a), free(b), free(bias), free(o512), free(o2);
    }
    return 0;
}

/* Adam with a moment that would become subnormal: flushed to zero, while
 * normal moments follow the formula of lib/optim.c exactly. */
TEST(adam_flushes_tiny_moments)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    enum { NP = 21 }; /* vector blocks and a scalar tail */
    mtli_optim_state st;
    ASSERT_OK(mtli_optim_state_create(&st, &s, NP));
    float p[NP], g[NP];
    for (int i = 0; i < NP; i++) {
        p[i] = 0.1f * (float)i;
        g[i] = i % 3 == 0 ? 0.0f : 0.01f * (float)(i - 10); /* every third: a dead unit */
        st.m[i] = i % 3 == 0 ? 1e-38f : 1e-3f;              /* 0.9 * 1e-38 is subnormal */
        st.v[i] = i % 3 == 0 ? 1e-44f : 1e-6f;              /* already subnormal */
    }
    float p0[NP], m0[NP], v0[NP];
    memcpy(p0, p, sizeof p), memcpy(m0, st.m, sizeof m0), memcpy(v0, st.v, sizeof v0);
    mtli_optim_config cfg = { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
    mtli_range r = { 0, NP, 1.0f };
    const double lr = 1e-3;
    mtli_optim_update(&cfg, &st, p, g, lr, &r, 1);
    const float step = (float)(lr / (1.0 - 0.9)), isb = (float)(1.0 / sqrt(1.0 - 0.999));
    for (int i = 0; i < NP; i++) {
        if (i % 3 == 0) {
            ASSERT(st.m[i] == 0.0f && st.v[i] == 0.0f);
            ASSERT(p[i] == p0[i]); /* zero moment: no move */
            continue;
        }
        const float mi = 0.9f * m0[i] + 0.1f * g[i], vi = 0.999f * v0[i] + (float)(1.0 - 0.999) * (g[i] * g[i]);
        ASSERT(st.m[i] == mi);
        ASSERT_NEAR(st.v[i], vi, 1e-6, 0);
        ASSERT_NEAR(p[i], p0[i] - step * mi / (sqrtf(vi) * isb + 1e-8f), 1e-6, 1e-9);
    }
    mtli_optim_state_destroy(&st, &s);
    return 0;
}

/* Warming (blis_glue.c) only reads a training forward pass's GEMM weights
 * (operand B) before BLIS packs them: C must be bitwise what it is without,
 * on one thread and two, and the operands must be untouched.  The rows'
 * padding, inside the extent the warm pass reads but never read by BLIS,
 * holds a signalling NaN, and with the invalid-operation trap on (glibc,
 * not under valgrind) the test would die of SIGFPE if warming loaded
 * those words as floats. */
TEST(gemm_warm_weights_change_nothing)
{
    /* A 72 x 4096 and B 4096 x 72 (or 72 x 4096), 1.2-1.4 MB with padding:
     * above the 64 KB warming threshold, with a long k so the product
     * stays small (42 MFLOP: seconds, not minutes, under valgrind). */
    const int64_t m = 72, k = 4096, n = 72, pad = 16;
    const uint32_t snan_bits = 0x7fa00000u;
    float snan;
    memcpy(&snan, &snan_bits, sizeof snan);
    for (int tb = 0; tb <= 1; tb++) {
        const int64_t lda = k + pad, b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_cols + pad;
        float *a = malloc((size_t)(m * lda) * sizeof(float)), *b = malloc((size_t)(b_rows * ldb) * sizeof(float));
        float *a0 = malloc((size_t)(m * lda) * sizeof(float)), *b0 = malloc((size_t)(b_rows * ldb) * sizeof(float));
        float *c_cold = malloc((size_t)(m * n) * sizeof(float)), *c_warm = malloc((size_t)(m * n) * sizeof(float));
        ASSERT(a && b && a0 && b0 && c_cold && c_warm);
        for (int64_t i = 0; i < m * lda; i++) a[i] = i % lda < k ? rnd() : snan;
        for (int64_t i = 0; i < b_rows * ldb; i++) b[i] = i % ldb < b_cols ? rnd() : snan;
        memcpy(a0, a, (size_t)(m * lda) * sizeof(float));
        memcpy(b0, b, (size_t)(b_rows * ldb) * sizeof(float));
        /* Not on 2 threads under valgrind: it runs threads one at a time,
         * and BLIS's spinning barriers then take minutes. */
        const int64_t most_threads = UNDER_VALGRIND ? 1 : 2;
        for (int64_t threads = 1; threads <= most_threads; threads++) {
            mtli_settings s;
            mtli_settings_defaults(&s);
            s.num_threads = threads;
            mtli_blas cold;
            mtli_blas_init(&cold, &s);
            ASSERT(!cold.warm_weights);
            mtli_blas warm = cold;
            warm.warm_weights = true;
            ASSERT_EQ_INT(mtli_gemm(&cold, false, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c_cold, n), MTL_OK);
#if defined(__GLIBC__) && defined(FE_INVALID)
            const bool trap = !UNDER_VALGRIND && feenableexcept(FE_INVALID) != -1;
#endif
            ASSERT_EQ_INT(mtli_gemm(&warm, false, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c_warm, n), MTL_OK);
#if defined(__GLIBC__) && defined(FE_INVALID)
            if (trap) fedisableexcept(FE_INVALID);
#endif
            ASSERT(memcmp(c_cold, c_warm, (size_t)(m * n) * sizeof(float)) == 0);
            ASSERT(memcmp(a, a0, (size_t)(m * lda) * sizeof(float)) == 0);
            ASSERT(memcmp(b, b0, (size_t)(b_rows * ldb) * sizeof(float)) == 0);
        }
        free(a), free(b), free(a0), free(b0), free(c_cold), free(c_warm);
    }
    return 0;
}

TEST_MAIN(TEST_ENTRY(small_gemm_matches_double_reference), TEST_ENTRY(small_gemm_declines),
          TEST_ENTRY(small_gemm_rows_independent), TEST_ENTRY(small_gemm_bias_act_equals_two_passes),
          TEST_ENTRY(small_dots_match_double_reference), TEST_ENTRY(small_bias_act_row_equals_scalar),
          TEST_ENTRY(small_kernels_avx2_equals_avx512),
          TEST_ENTRY(adam_flushes_tiny_moments),
          TEST_ENTRY(gemm_warm_weights_change_nothing))
