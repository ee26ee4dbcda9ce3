/* test_optim_paths.c -- the optimiser step's vector kernels and threads
 * (lib/optim.c, lib/optim_kernels.c): every instruction-set path and every
 * thread count gives bitwise the same Adam/SGD update as the scalar path
 * on one thread, Adam matches a float64 closed form, the finite check
 * finds a non-finite value wherever it is (block tails, slice edges, the
 * last element), and through the trainer: 1 and 2 threads give the same
 * bits on a model large enough to split the update, and a non-finite
 * gradient leaves parameters and optimiser state unchanged.
 * Unit test: it links the library's objects and calls internals. */
#include "harness.h"
#include "mtl_internal.h"
#include "test_network_common.h"
#include "optim_kernels.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t g_state = 0x9e3779b97f4a7c15ull;

static double rnd(void) /* uniform in [-1, 1) */
{
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return (double)(g_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static const char *const isa_name[] = { "baseline", "avx2", "avx512" };

/* Ranges over n parameters as the trainer makes them: different lr
 * multipliers, odd offsets, a gap (untouched parameters), an empty range
 * and a one-element range at the end (when n allows). */
static int64_t make_ranges(int64_t n, mtli_range *r)
{
    if (n < 8) {
        r[0] = (mtli_range){ 0, n, 0.5f };
        return 1;
    }
    r[0] = (mtli_range){ 1, n / 3, 1.0f };
    r[1] = (mtli_range){ n / 3, n / 3, 7.0f }; /* empty */
    r[2] = (mtli_range){ n / 3 + 2, n - 1, 0.25f };
    r[3] = (mtli_range){ n - 1, n, 3.0f };
    return 4;
}

static void fill_grads(float *g, int64_t n, int step)
{
    for (int64_t i = 0; i < n; i++) /* magnitudes 1e-4 .. 10, and dead units (exactly 0) */
        g[i] = i % 11 == 3 ? 0.0f : (float)(rnd() * pow(10.0, (double)((i + step) % 6) - 4.0));
}

typedef struct run {
    float *p, *g;
    mtli_optim_state st;
} run;

static int run_init(run *r, const mtli_settings *s, int64_t n)
{
    r->p = malloc((size_t)n * sizeof(float));
    r->g = malloc((size_t)n * sizeof(float));
    ASSERT(r->p && r->g);
    ASSERT_OK(mtli_optim_state_create(&r->st, s, n));
    for (int64_t i = 0; i < n; i++) {
        r->p[i] = (float)sin(0.37 * (double)i);
        /* some moments start tiny: the flush to zero must agree too */
        r->st.m[i] = i % 13 == 5 ? 2e-30f : 0.0f;
        r->st.v[i] = i % 13 == 5 ? 1e-31f : 0.0f;
    }
    return 0;
}

static void run_free(run *r, const mtli_settings *s)
{
    free(r->p);
    free(r->g);
    mtli_optim_state_destroy(&r->st, s);
}

static int same_bits(const run *a, const run *b, int64_t n)
{
    ASSERT(memcmp(a->p, b->p, (size_t)n * sizeof(float)) == 0);
    ASSERT(memcmp(a->st.m, b->st.m, (size_t)n * sizeof(float)) == 0);
    ASSERT(memcmp(a->st.v, b->st.v, (size_t)n * sizeof(float)) == 0);
    ASSERT_EQ_INT(a->st.t, b->st.t);
    return 0;
}

/* `steps` updates of cfg on every path (isa x threads) against the
 * baseline on one thread; all must agree bit for bit. */
static int check_paths(const mtli_optim_config *cfg, int64_t n, int steps)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_range ranges[4];
    const int64_t nr = make_ranges(n, ranges);
    const int best = mtli_optim_best_isa();
    run ref, alt;
    if (run_init(&ref, &s, n)) return 1;
    float *p0 = malloc((size_t)n * sizeof(float));
    ASSERT(p0);
    memcpy(p0, ref.p, (size_t)n * sizeof(float));
    for (int step = 1; step <= steps; step++) {
        fill_grads(ref.g, n, step);
        mtli_optim_update_par(cfg, &ref.st, ref.p, ref.g, 1e-3, ranges, nr, MTLI_ISA_BASELINE, 1, 1.0f);
    }
    if (nr == 4) { /* outside every range: untouched */
        ASSERT(ref.p[0] == p0[0] && ref.p[n / 3] == p0[n / 3] && ref.p[n / 3 + 1] == p0[n / 3 + 1]);
        ASSERT(ref.p[n - 1] != p0[n - 1]); /* the one-element range moved */
    }
    for (int isa = MTLI_ISA_BASELINE; isa <= best; isa++)
        for (int64_t threads = 1; threads <= 3; threads++) {
            if (run_init(&alt, &s, n)) return 1;
            g_state = 0x9e3779b97f4a7c15ull; /* the same gradients */
            for (int step = 1; step <= steps; step++) {
                fill_grads(alt.g, n, step);
                mtli_optim_update_par(cfg, &alt.st, alt.p, alt.g, 1e-3, ranges, nr, isa, threads, 1.0f);
            }
            if (same_bits(&ref, &alt, n)) FAILF("n = %lld, %s, %lld threads differ from the baseline", (long long)n,
                                                isa_name[isa], (long long)threads);
            run_free(&alt, &s);
        }
    g_state = 0x9e3779b97f4a7c15ull;
    free(p0);
    run_free(&ref, &s);
    return 0;
}

/* Sizes around every vector width (4, 8, 16) and thread slice (16). */
static const int64_t sizes[] = { 1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1003, 40009 };

TEST(adam_paths_and_threads_bitwise_equal)
{
    const mtli_optim_config adam = { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                                     .weight_decay = 0.1 };
    const mtli_optim_config adamw = { .kind = MTL_OPTIMIZER_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                      .weight_decay = 0.01 };
    printf("  best path on this CPU: %s\n", isa_name[mtli_optim_best_isa()]);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        g_state = 0x9e3779b97f4a7c15ull;
        if (check_paths(&adam, sizes[k], 4)) return 1;
        g_state = 0x9e3779b97f4a7c15ull;
        if (check_paths(&adamw, sizes[k], 4)) return 1;
    }
    return 0;
}

TEST(sgd_threads_bitwise_equal)
{
    const mtli_optim_config cfgs[3] = {
        { .kind = MTL_OPTIMIZER_SGD, .weight_decay = 0.01 },
        { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.9, .weight_decay = 0.001 },
        { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.8, .nesterov = true },
    };
    for (int c = 0; c < 3; c++) {
        g_state = 0x9e3779b97f4a7c15ull;
        if (check_paths(&cfgs[c], 1003, 3)) return 1;
        g_state = 0x9e3779b97f4a7c15ull;
        if (check_paths(&cfgs[c], 17, 3)) return 1;
    }
    return 0;
}

/* Adam and AdamW on the fastest path, split over 3 threads, against the
 * update written out in double precision, range by range. */
TEST(adam_matches_float64_closed_form)
{
    enum { N = 1003, STEPS = 7 };
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_range ranges[4];
    const int64_t nr = make_ranges(N, ranges);
    const mtli_optim_config cfgs[2] = {
        { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.05 },
        { .kind = MTL_OPTIMIZER_ADAMW, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1 },
    };
    static float p[N], g[N];
    static double pd[N], md[N], vd[N], scale[N];
    for (int c = 0; c < 2; c++) {
        const mtli_optim_config *cfg = &cfgs[c];
        mtli_optim_state st;
        ASSERT_OK(mtli_optim_state_create(&st, &s, N));
        for (int i = 0; i < N; i++) {
            p[i] = (float)sin(0.37 * i);
            pd[i] = p[i];
            md[i] = vd[i] = 0.0;
            scale[i] = 0.0; /* lr multiplier of i's range; 0 = outside every range */
        }
        for (int64_t r = 0; r < nr; r++)
            for (int64_t i = ranges[r].begin; i < ranges[r].end; i++) scale[i] = ranges[r].lr_scale;
        const double lr = 1e-2;
        for (int k = 1; k <= STEPS; k++) {
            for (int i = 0; i < N; i++) g[i] = (float)(cos(0.11 * i * k) * pow(10.0, (i % 5) - 3));
            mtli_optim_update_par(cfg, &st, p, g, lr, ranges, nr, mtli_optim_best_isa(), 3, 1.0f);
            for (int i = 0; i < N; i++) {
                if (scale[i] == 0.0) continue;
                const double lr_i = lr * scale[i], wd = cfg->weight_decay;
                double gi = g[i];
                if (cfg->kind == MTL_OPTIMIZER_ADAM)
                    gi += wd * pd[i];
                else
                    pd[i] *= 1.0 - lr_i * wd;
                md[i] = cfg->beta1 * md[i] + (1 - cfg->beta1) * gi;
                vd[i] = cfg->beta2 * vd[i] + (1 - cfg->beta2) * gi * gi;
                const double mhat = md[i] / (1 - pow(cfg->beta1, k)), vhat = vd[i] / (1 - pow(cfg->beta2, k));
                pd[i] -= lr_i * mhat / (sqrt(vhat) + cfg->eps);
            }
        }
        for (int i = 0; i < N; i++) {
            ASSERT_NEAR(p[i], pd[i], 2e-6, 2e-7);
            if (scale[i] == 0.0) ASSERT(p[i] == (float)sin(0.37 * i));
            else /* m sums terms of up to |g| + wd|p| that cancel: float rounding of each (~6e-8
                  * relative) accumulates over the steps, so the tolerance scales with them */
                ASSERT_NEAR(st.m[i], md[i], 1e-5, 1e-6 * (pow(10.0, (i % 5) - 3) + 0.1));
        }
        mtli_optim_state_destroy(&st, &s);
    }
    return 0;
}

/* The update's grad_scale (clipping) is the gradient multiplied first:
 * every optimiser, path and thread count gives bitwise what the baseline
 * gives on a gradient scaled beforehand. */
TEST(grad_scale_equals_prescaled_gradient)
{
    const mtli_optim_config cfgs[] = {
        { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1 },
        { .kind = MTL_OPTIMIZER_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01 },
        { .kind = MTL_OPTIMIZER_SGD, .weight_decay = 0.01 },
        { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.9 },
        { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.5, .nesterov = true, .weight_decay = 0.001 },
    };
    enum { N = 1003 };
    const float c = 0.37f;
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_range ranges[4];
    const int64_t nr = make_ranges(N, ranges);
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        run ref, alt;
        if (run_init(&ref, &s, N)) return 1;
        g_state = 0x9e3779b97f4a7c15ull;
        for (int step = 1; step <= 3; step++) {
            fill_grads(ref.g, N, step);
            for (int64_t i = 0; i < N; i++) ref.g[i] *= c;
            mtli_optim_update_par(&cfgs[k], &ref.st, ref.p, ref.g, 1e-3, ranges, nr, MTLI_ISA_BASELINE, 1, 1.0f);
        }
        for (int isa = MTLI_ISA_BASELINE; isa <= mtli_optim_best_isa(); isa++)
            for (int64_t threads = 1; threads <= 2; threads++) {
                if (run_init(&alt, &s, N)) return 1;
                g_state = 0x9e3779b97f4a7c15ull;
                for (int step = 1; step <= 3; step++) {
                    fill_grads(alt.g, N, step);
                    mtli_optim_update_par(&cfgs[k], &alt.st, alt.p, alt.g, 1e-3, ranges, nr, isa, threads, c);
                }
                if (same_bits(&ref, &alt, N))
                    FAILF("optimiser %zu, %s, %lld threads: grad_scale differs from a pre-scaled gradient", k,
                          isa_name[isa], (long long)threads);
                run_free(&alt, &s);
            }
        run_free(&ref, &s);
    }
    g_state = 0x9e3779b97f4a7c15ull;
    return 0;
}

/* ---- the finite check ------------------------------------------------------------ */

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* All paths and thread counts must return `want` for x[0..n). */
static int check_finite(const float *x, int64_t n, bool want, int64_t max_threads, int64_t where)
{
    for (int isa = MTLI_ISA_BASELINE; isa <= mtli_optim_best_isa(); isa++)
        for (int64_t t = 1; t <= max_threads; t++)
            if (mtli_all_finite(x, n, isa, t) != want)
                FAILF("n = %lld, bad value at %lld, %s, %lld threads: returned %d", (long long)n, (long long)where,
                      isa_name[isa], (long long)t, !want);
    return 0;
}

TEST(finite_check_finds_every_position)
{
    /* Inf, -Inf, quiet NaN, negative NaN, a signalling NaN, the largest NaN payload */
    const uint32_t bad[] = { 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu };
    /* finite values whose bits come closest: FLT_MAX, -FLT_MAX, subnormal, -0 */
    const uint32_t good[] = { 0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u };
    enum { SMALL = 70 };
    float x[SMALL];
    for (int64_t n = 1; n <= SMALL; n++) { /* every position of every short length, one thread */
        for (int64_t i = 0; i < n; i++) x[i] = bits_float(good[i % 4]);
        if (check_finite(x, n, true, 1, -1)) return 1;
        for (int64_t pos = 0; pos < n; pos++) {
            const float keep = x[pos];
            x[pos] = bits_float(bad[pos % 6]);
            if (check_finite(x, n, false, 1, pos)) return 1;
            x[pos] = keep;
        }
    }
    /* Long buffers on 1-3 threads: the ends, the slice edges (multiples
     * of 16 near n/2 and n/3, n*2/3) and the last element. */
    const int64_t longs[] = { 1003, 300007 };
    for (int k = 0; k < 2; k++) {
        const int64_t n = longs[k];
        float *y = malloc((size_t)n * sizeof(float));
        ASSERT(y);
        for (int64_t i = 0; i < n; i++) y[i] = (float)(rnd() * 1e30);
        if (check_finite(y, n, true, 3, -1)) return 1;
        const int64_t edges[] = { 0, 1, 15, 16, n / 2 / 16 * 16 - 1, n / 2 / 16 * 16, n / 3 / 16 * 16 - 1,
                                  n / 3 / 16 * 16, n / 3 * 2 / 16 * 16 - 1, n / 3 * 2 / 16 * 16, n / 2 + 5, n - 2,
                                  n - 1 };
        for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
            const float keep = y[edges[e]];
            y[edges[e]] = bits_float(bad[e % 6]);
            if (check_finite(y, n, false, 3, edges[e])) return 1;
            y[edges[e]] = keep;
        }
        free(y);
    }
    return 0;
}

/* ---- the sum of squares (clipping) ---------------------------------------------- */

/* Every instruction set and thread count gives the baseline's bits on one
 * thread; that agrees with a long-double sum; a NaN or Inf anywhere (lane
 * tails, block edges, the last element) makes it non-finite, and the
 * largest floats do not overflow it. */
TEST(sum_squares_paths_threads_and_reference)
{
    const int64_t sizes_sq[] = { 0, 1, 31, 32, 33, 100, 1003, 3 * 32768 + 17, 300007 };
    for (size_t k = 0; k < sizeof sizes_sq / sizeof sizes_sq[0]; k++) {
        const int64_t n = sizes_sq[k];
        float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        ASSERT(x);
        long double want = 0.0L;
        for (int64_t i = 0; i < n; i++) { /* magnitudes 1e-6 .. 1e6 */
            x[i] = (float)(rnd() * pow(10.0, (double)(i % 13) - 6.0));
            want += (long double)x[i] * (long double)x[i];
        }
        const double base = mtli_sum_squares(x, n, MTLI_ISA_BASELINE, 1);
        const double kbase = mtli_sumsq_kernel(x, n, MTLI_ISA_BASELINE);
        ASSERT_NEAR(base, (double)want, 1e-12, 0.0);
        for (int isa = MTLI_ISA_BASELINE; isa <= mtli_optim_best_isa(); isa++) {
            const double kern = mtli_sumsq_kernel(x, n, isa);
            if (memcmp(&kern, &kbase, sizeof kern) != 0)
                FAILF("n = %lld: the %s kernel differs from the baseline", (long long)n, isa_name[isa]);
            for (int64_t t = 1; t <= 3; t++) {
                const double got = mtli_sum_squares(x, n, isa, t);
                if (memcmp(&got, &base, sizeof got) != 0)
                    FAILF("n = %lld, %s, %lld threads: %.17g, baseline %.17g", (long long)n, isa_name[isa],
                          (long long)t, got, base);
            }
        }
        const int64_t edges[] = { 0, 31, 32, 32767, 32768, n / 2, n - 1 };
        const uint32_t bad[] = { 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu };
        for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
            if (edges[e] < 0 || edges[e] >= n) continue;
            const float keep = x[edges[e]];
            x[edges[e]] = bits_float(bad[e % 6]);
            for (int isa = MTLI_ISA_BASELINE; isa <= mtli_optim_best_isa(); isa++)
                for (int64_t t = 1; t <= 3; t++)
                    if (isfinite(mtli_sum_squares(x, n, isa, t)))
                        FAILF("n = %lld, bad value at %lld, %s, %lld threads: finite sum", (long long)n,
                              (long long)edges[e], isa_name[isa], (long long)t);
            x[edges[e]] = keep;
        }
        for (int64_t i = 0; i < n; i++) x[i] = i % 2 ? FLT_MAX : -FLT_MAX;
        ASSERT(isfinite(mtli_sum_squares(x, n, mtli_optim_best_isa(), 2)));
        free(x);
    }
    return 0;
}

TEST(pass_threads_by_size)
{
    const int64_t min = MTLI_PASS_MIN_PER_THREAD;
    ASSERT_EQ_INT(mtli_pass_threads(100 * min, 1), 1);
    ASSERT_EQ_INT(mtli_pass_threads(2 * min - 1, 2), 1); /* too small to pay for a second thread */
    ASSERT_EQ_INT(mtli_pass_threads(0, 4), 1);
#ifdef _OPENMP
    ASSERT_EQ_INT(mtli_pass_threads(2 * min, 2), 2);
    ASSERT_EQ_INT(mtli_pass_threads(100 * min, 2), 2);
    ASSERT_EQ_INT(mtli_pass_threads(3 * min + 5, 8), 3); /* every slice at least min long */
#else
    printf("  (built without OpenMP: every pass on one thread)\n");
    ASSERT_EQ_INT(mtli_pass_threads(100 * min, 2), 1);
#endif
    return 0;
}

/* mtli_find_non_finite (batch validation, predict, datasets) against a
 * naive scan written here: the first bad cell in row order, padding
 * beyond cols ignored, big contiguous matrices on 2 threads. */
static int check_find(const float *x, int64_t rows, int64_t cols, int64_t ld, int64_t threads)
{
    int64_t want_r = -1, want_c = -1;
    for (int64_t i = 0; i < rows && want_r < 0; i++)
        for (int64_t j = 0; j < cols; j++)
            if (!isfinite(x[i * ld + j])) {
                want_r = i, want_c = j;
                break;
            }
    int64_t r = -7, c = -7;
    const bool found = mtli_find_non_finite(x, rows, cols, ld, threads, &r, &c);
    if (found != (want_r >= 0)) FAILF("%lld x %lld (ld %lld): found %d, expected %d", (long long)rows,
                                      (long long)cols, (long long)ld, found, want_r >= 0);
    if (found && (r != want_r || c != want_c))
        FAILF("found (%lld, %lld), expected (%lld, %lld)", (long long)r, (long long)c, (long long)want_r,
              (long long)want_c);
    if (!found && (r != -7 || c != -7)) FAILF("row/col written although nothing was found");
    return 0;
}

TEST(find_non_finite_names_the_first_cell)
{
    const int64_t shapes[][3] = { { 7, 5, 5 }, { 7, 5, 9 }, { 33, 17, 17 }, { 33, 17, 20 }, { 600, 512, 512 } };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t rows = shapes[k][0], cols = shapes[k][1], ld = shapes[k][2];
        float *x = malloc((size_t)(rows * ld) * sizeof(float));
        ASSERT(x);
        for (int64_t i = 0; i < rows * ld; i++) x[i] = i % ld < cols ? (float)rnd() : NAN; /* NaN padding */
        for (int64_t threads = 1; threads <= 2; threads++) {
            if (check_find(x, rows, cols, ld, threads)) return 1;
            const int64_t cells[][2] = { { 0, 0 }, { 0, cols - 1 }, { rows / 2, cols / 3 }, { rows - 1, cols - 1 } };
            for (size_t c = 0; c < 4; c++) {
                float *p = x + cells[c][0] * ld + cells[c][1];
                const float keep = *p;
                *p = c % 2 ? -INFINITY : NAN;
                if (check_find(x, rows, cols, ld, threads)) return 1;
                /* and a second bad cell after it: the first is still named */
                float *q = x + (rows - 1) * ld + cols - 1;
                const float keep_q = *q;
                if (q != p) *q = INFINITY;
                if (check_find(x, rows, cols, ld, threads)) return 1;
                *q = keep_q;
                *p = keep;
            }
        }
        free(x);
    }
    return 0;
}

/* Run by meson with BLIS_ARCH_TYPE = 3 (haswell) or 6 (zen3) too: those
 * kernel sets need AVX2 and FMA, and BLIS would die of SIGILL without them,
 * so the whole program is skipped (77) first. */
TEST(blis_kernel_set_runs_here)
{
    const char *arch = getenv("BLIS_ARCH_TYPE");
    if (!arch || (strcmp(arch, "3") != 0 && strcmp(arch, "6") != 0)) return 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 0;
#endif
    printf("skip: BLIS_ARCH_TYPE=%s needs AVX2 and FMA\n", arch);
    exit(77);
}

/* ---- through the trainer ----------------------------------------------------------- */

enum { TIN = 3, TRUNK = 512, HIDDEN = 512 };

/* A fresh model of n_inputs inputs whose handles use `threads` threads
 * (NULL on failure). */
static mtl_model *model_on_threads(int64_t threads, int64_t n_inputs)
{
    mtl_context *ctx = NULL;
    mtl_model *m = NULL;
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return NULL;
    mtl_status s = mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, threads);
    s |= mtl_model_create(&m, ctx, n_inputs);
    mtl_context_destroy(ctx);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Trunk TIN -> 512 (tanh); task "quiet": 1 output; task "loud": a 512-unit
 * tanh layer, then 1 output: ~266k parameters, above the threshold that
 * splits the optimiser step on 2 threads. */
static mtl_model *big_model(int64_t threads)
{
    mtl_model *m = model_on_threads(threads, TIN);
    int64_t t;
    if (!m) return NULL;
    mtl_status s = mtl_model_add_trunk_layer(m, TRUNK, MTL_ACT_TANH, 0.0f, 0);
    s |= mtl_model_add_task(m, "quiet", MTL_TASK_REGRESSION, 1, &t);
    s |= mtl_model_add_task(m, "loud", MTL_TASK_REGRESSION, 1, &t);
    s |= mtl_model_add_head_layer(m, t, HIDDEN, MTL_ACT_TANH, 0.0f, 0);
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Parameters of big_model (0 if it cannot be built). */
static int64_t big_model_param_count(void)
{
    mtl_model *m = big_model(1);
    const int64_t np = m ? mtl_model_param_count(m) : 0;
    mtl_model_destroy(m);
    return np;
}

static const float tx[2 * TIN] = { 1, -2, 0.5f, 0.25f, 1, -1 };
static const float ty[2 * 2] = { 0.1f, 10.0f, -0.3f, 20.0f };

/* Steps of AdamW with per-task lr multipliers (several ranges). */
static int train(int64_t threads, int steps, float *params, int64_t np)
{
    mtl_model *m = big_model(threads);
    ASSERT(m);
    ASSERT_EQ_INT(mtl_model_param_count(m), np);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 2));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW));
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_WEIGHT_DECAY, 0.01));
    ASSERT_OK(mtl_trainer_set_task_f64(tr, 0, MTL_TASK_OPT_LR_MULTIPLIER, 0.5));
    ASSERT_OK(mtl_trainer_set_task_f64(tr, 1, MTL_TASK_OPT_LR_MULTIPLIER, 3.0));
    ASSERT(tr->n_ranges >= 2);
    for (int k = 0; k < steps; k++) ASSERT_OK(mtl_trainer_step(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_model_get_params(m, params, np));
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(trainer_one_and_two_threads_bitwise_equal)
{
    const int64_t np = big_model_param_count();
    ASSERT(np > 0);
#ifdef _OPENMP
    ASSERT_EQ_INT(mtli_pass_threads(np, 2), 2); /* the test is about the split step */
#endif
    float *a = malloc((size_t)np * sizeof(float)), *b = malloc((size_t)np * sizeof(float));
    float *c = malloc((size_t)np * sizeof(float));
    ASSERT(a && b && c);
    ASSERT(train(1, 4, a, np) == 0);
    ASSERT(train(2, 4, b, np) == 0);
    ASSERT(train(1, 3, c, np) == 0);
    ASSERT(memcmp(a, b, (size_t)np * sizeof(float)) == 0);
    ASSERT(memcmp(a, c, (size_t)np * sizeof(float)) != 0); /* the fourth step moved something */
    free(a), free(b), free(c);
    return 0;
}

/* A finite loss whose gradient overflows in the last unit of "loud"'s
 * hidden layer (as in test_network_run.c: hidden activations exactly 0,
 * that unit's output weight the largest float, so its backward signal is
 * Inf): on 2 threads the step fails naming the task, and parameters,
 * moments and the step count are as before. */
TEST(trainer_non_finite_gradient_threaded)
{
    mtl_model *m = big_model(2);
    ASSERT(m);
    const int64_t np = mtl_model_param_count(m);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 2));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
    for (int k = 0; k < 2; k++) ASSERT_OK(mtl_trainer_step(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));

    float *p = malloc((size_t)np * sizeof(float)), *q = malloc((size_t)np * sizeof(float));
    float *m0 = malloc((size_t)np * sizeof(float)), *v0 = malloc((size_t)np * sizeof(float));
    float *g = malloc((size_t)np * sizeof(float));
    ASSERT(p && q && m0 && v0 && g);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    int64_t r = 0, c = 0, off;
    off = tn_block(m, "trunk.0.bias", &r, &c);
    for (int64_t i = 0; i < c; i++) p[off + i] = 0.3f; /* z = tanh(0.3 + W x) != 0 */
    off = tn_block(m, "task.loud.hidden.0.weight", &r, &c);
    ASSERT(off >= 0);
    for (int64_t i = 0; i < r * c; i++) p[off + i] = 0.0f;
    off = tn_block(m, "task.loud.hidden.0.bias", &r, &c);
    for (int64_t i = 0; i < c; i++) p[off + i] = 0.0f; /* hidden activations exactly 0 */
    off = tn_block(m, "task.loud.out.weight", &r, &c);
    ASSERT(r * c == HIDDEN);
    for (int64_t i = 0; i < r * c; i++) p[off + i] = 0.0f;
    p[off + r * c - 1] = 3e38f;
    ASSERT_OK(mtl_model_set_params(m, p, np));

    /* the gradient is non-finite, and only in "loud"'s head and the trunk */
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_trainer_get_gradients(tr, g, np));
    int64_t sp[2][2];
    mtli_task_param_spans(m, 0, sp);
    for (int s = 0; s < 2; s++)
        for (int64_t i = sp[s][0]; i < sp[s][1]; i++) ASSERT(isfinite(g[i]));
    ASSERT(!mtli_all_finite(g, np, mtli_optim_best_isa(), 2));

    memcpy(m0, tr->opt_state.m, (size_t)np * sizeof(float));
    memcpy(v0, tr->opt_state.v, (size_t)np * sizeof(float));
    const int64_t t0 = tr->opt_state.t;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("gradient of task 'loud'");
    ASSERT_MSG_HAS("parameters unchanged");
    ASSERT_OK(mtl_model_get_params(m, q, np));
    ASSERT(memcmp(p, q, (size_t)np * sizeof(float)) == 0);
    ASSERT(memcmp(m0, tr->opt_state.m, (size_t)np * sizeof(float)) == 0);
    ASSERT(memcmp(v0, tr->opt_state.v, (size_t)np * sizeof(float)) == 0);
    ASSERT_EQ_INT(tr->opt_state.t, t0);
    ASSERT_EQ_INT(mtl_trainer_step_count(tr), 2);
    free(p), free(q), free(m0), free(v0), free(g);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* The layers' bias / activation passes split across threads (rows
 * forward, columns backward) once a layer has 2 x
 * MTLI_ELEMENTWISE_MIN_PER_THREAD elements.  Every activation, dropout and
 * a normalised layer (which stays on one thread), 1,024 rows x 64 units:
 * three steps on 1 and 2 threads give the same losses and parameters. */
enum { EW_IN = 8, EW_UNITS = 64, EW_ROWS = 1024 };

static mtl_model *elementwise_model(int64_t threads)
{
    mtl_model *m = model_on_threads(threads, EW_IN);
    int64_t t0, t1, t2;
    if (!m) return NULL;
    mtl_status s = mtl_model_add_trunk_layer(m, EW_UNITS, MTL_ACT_RELU, 0.1f, 0);
    s |= mtl_model_add_trunk_layer(m, EW_UNITS, MTL_ACT_GELU, 0.0f, 0);
    s |= mtl_model_add_trunk_layer(m, EW_UNITS, MTL_ACT_TANH, 0.0f, MTL_LAYER_NORM);
    s |= mtl_model_add_trunk_layer(m, EW_UNITS, MTL_ACT_SIGMOID, 0.0f, 0);
    s |= mtl_model_add_trunk_layer(m, EW_UNITS, MTL_ACT_SOFTPLUS, 0.2f, 0);
    s |= mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t0);
    s |= mtl_model_add_head_layer(m, t0, EW_UNITS, MTL_ACT_LEAKY_RELU, 0.2f, 0);
    s |= mtl_model_add_head_layer(m, t0, EW_UNITS, MTL_ACT_IDENTITY, 0.0f, 0);
    s |= mtl_model_add_task(m, "b", MTL_TASK_REGRESSION, 1, &t1);
    s |= mtl_model_add_head_layer(m, t1, EW_UNITS, MTL_ACT_LEAKY_RELU, 0.0f, 0);
    s |= mtl_model_add_task(m, "c", MTL_TASK_REGRESSION, 1, &t2);
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

static int train_elementwise(int64_t threads, float *params, int64_t np, double *losses)
{
    mtl_model *m = elementwise_model(threads);
    ASSERT(m);
    ASSERT_EQ_INT(mtl_model_param_count(m), np);
    float *x = malloc(sizeof(float) * EW_ROWS * EW_IN), *y = malloc(sizeof(float) * EW_ROWS * 3);
    ASSERT(x && y);
    for (int64_t i = 0; i < EW_ROWS; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < EW_IN; j++) {
            x[i * EW_IN + j] = (float)sin(0.37 * (double)(i * EW_IN + j));
            s += x[i * EW_IN + j];
        }
        y[i * 3 + 0] = (float)s, y[i * 3 + 1] = (float)(s * s), y[i * 3 + 2] = (float)cos(s);
    }
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, EW_ROWS));
    for (int k = 0; k < 3; k++) ASSERT_OK(mtl_trainer_step(tr, EW_ROWS, x, EW_IN, y, 3, NULL, 0, NULL, losses + 3 * k));
    ASSERT_OK(mtl_model_get_params(m, params, np));
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    free(x), free(y);
    return 0;
}

/* Global-norm clipping through the trainer, against the gradient read
 * back and a norm computed here in long double: plain SGD moves each
 * parameter by lr * (clip / |g|) * g when |g| > clip and by lr * g when
 * not; the gradient read back after the step is the unclipped one (the
 * update applies the factor); 1 and 2 threads (the sum of squares and the
 * update split) give the same bits. */
static int clipped_step(int64_t threads, double clip_over_norm, float *after, float *g, double *norm)
{
    mtl_model *m = big_model(threads);
    ASSERT(m);
    const int64_t np = mtl_model_param_count(m);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 2));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 0.1));
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_trainer_get_gradients(tr, g, np));
    long double ss = 0.0L;
    for (int64_t i = 0; i < np; i++) ss += (long double)g[i] * (long double)g[i];
    *norm = sqrt((double)ss);
    ASSERT(*norm > 0.0);
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_CLIP_NORM, clip_over_norm * *norm));
    float *before = malloc((size_t)np * sizeof(float)), *g_after = malloc((size_t)np * sizeof(float));
    ASSERT(before && g_after);
    ASSERT_OK(mtl_model_get_params(m, before, np));
    ASSERT_OK(mtl_trainer_step(tr, 2, tx, TIN, ty, 2, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_model_get_params(m, after, np));
    ASSERT_OK(mtl_trainer_get_gradients(tr, g_after, np));
    ASSERT(memcmp(g, g_after, (size_t)np * sizeof(float)) == 0);
    const double c = clip_over_norm < 1.0 ? clip_over_norm : 1.0;
    int64_t moved = 0;
    for (int64_t i = 0; i < np; i++) {
        ASSERT_NEAR(after[i], (double)before[i] - 0.1 * c * (double)g[i], 1e-6, 1e-7);
        moved += after[i] != before[i];
    }
    ASSERT(moved > np / 2);
    free(before), free(g_after);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(trainer_clipping_matches_closed_form)
{
    const int64_t np = big_model_param_count();
    ASSERT(np > 0);
    float *a = malloc((size_t)np * sizeof(float)), *b = malloc((size_t)np * sizeof(float));
    float *g = malloc((size_t)np * sizeof(float));
    ASSERT(a && b && g);
    double norm1, norm2;
    ASSERT(clipped_step(1, 0.25, a, g, &norm1) == 0); /* clipped to a quarter */
    ASSERT(clipped_step(2, 0.25, b, g, &norm2) == 0);
    ASSERT(norm1 == norm2);
    ASSERT(memcmp(a, b, (size_t)np * sizeof(float)) == 0);
    ASSERT(clipped_step(2, 4.0, b, g, &norm2) == 0); /* above the norm: no clipping */
    ASSERT(memcmp(a, b, (size_t)np * sizeof(float)) != 0);
    free(a), free(b), free(g);
    return 0;
}

TEST(trainer_elementwise_split_bitwise_equal)
{
    /* Valgrind runs threads one at a time, and the 2-thread GEMMs' spinning
     * barriers then took 1.5 to 10 minutes; the native, ASan and
     * 'determinism' runs check this. */
    if (UNDER_VALGRIND) return 0;
#ifdef _OPENMP
    ASSERT_EQ_INT(mtli_elementwise_threads(EW_ROWS * EW_UNITS, 2), 2); /* the test is about the split */
#endif
    mtl_model *m = elementwise_model(1);
    ASSERT(m);
    const int64_t np = mtl_model_param_count(m);
    float *init = malloc((size_t)np * sizeof(float));
    ASSERT(init);
    ASSERT_OK(mtl_model_get_params(m, init, np));
    mtl_model_destroy(m);
    float *a = malloc((size_t)np * sizeof(float)), *b = malloc((size_t)np * sizeof(float));
    ASSERT(a && b);
    double la[9], lb[9];
    ASSERT(train_elementwise(1, a, np, la) == 0);
    ASSERT(train_elementwise(2, b, np, lb) == 0);
    ASSERT(memcmp(la, lb, sizeof la) == 0);
    ASSERT(memcmp(a, b, (size_t)np * sizeof(float)) == 0);
    ASSERT(memcmp(a, init, (size_t)np * sizeof(float)) != 0); /* the steps moved something */
    free(init), free(a), free(b);
    return 0;
}

/* Batch validation scans big inputs on the trainer's threads: a NaN in
 * either thread's slice is found and named by row and column, and the
 * parameters are unchanged. */
TEST(trainer_threaded_input_scan_names_the_cell)
{
    enum { WIDE = 4096, ROWS = 64 }; /* 262,144 inputs: split on 2 threads */
#ifdef _OPENMP
    ASSERT_EQ_INT(mtli_pass_threads(WIDE * ROWS, 2), 2);
#endif
    mtl_model *m = model_on_threads(2, WIDE);
    int64_t t;
    ASSERT(m);
    ASSERT_OK(mtl_model_add_trunk_layer(m, 16, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "r", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_OK(mtl_model_finalize(m));
    const int64_t np = mtl_model_param_count(m);
    float *x = calloc((size_t)WIDE * ROWS, sizeof(float)), *y = calloc(ROWS, sizeof(float));
    float *p0 = malloc((size_t)np * sizeof(float)), *p1 = malloc((size_t)np * sizeof(float));
    ASSERT(x && y && p0 && p1);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, ROWS));
    ASSERT_OK(mtl_trainer_step(tr, ROWS, x, WIDE, y, 1, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_model_get_params(m, p0, np));
    const int64_t cells[2][2] = { { 0, 1 }, { 50, 4000 } }; /* first slice, second slice */
    for (int c = 0; c < 2; c++) {
        const int64_t at = cells[c][0] * WIDE + cells[c][1];
        x[at] = NAN;
        ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, ROWS, x, WIDE, y, 1, NULL, 0, NULL, NULL));
        char want[64];
        snprintf(want, sizeof want, "input row %lld, column %lld", (long long)cells[c][0], (long long)cells[c][1]);
        ASSERT_MSG_HAS(want);
        x[at] = 0.0f;
    }
    ASSERT_OK(mtl_model_get_params(m, p1, np));
    ASSERT(memcmp(p0, p1, (size_t)np * sizeof(float)) == 0);
    ASSERT_EQ_INT(mtl_trainer_step_count(tr), 1);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    free(x), free(y), free(p0), free(p1);
    return 0;
}

TEST_MAIN(TEST_ENTRY(blis_kernel_set_runs_here), TEST_ENTRY(adam_paths_and_threads_bitwise_equal), TEST_ENTRY(sgd_threads_bitwise_equal),
          TEST_ENTRY(adam_matches_float64_closed_form), TEST_ENTRY(grad_scale_equals_prescaled_gradient),
          TEST_ENTRY(finite_check_finds_every_position), TEST_ENTRY(sum_squares_paths_threads_and_reference),
          TEST_ENTRY(find_non_finite_names_the_first_cell),
          TEST_ENTRY(pass_threads_by_size), TEST_ENTRY(trainer_one_and_two_threads_bitwise_equal),
          TEST_ENTRY(trainer_non_finite_gradient_threaded), TEST_ENTRY(trainer_clipping_matches_closed_form),
          TEST_ENTRY(trainer_elementwise_split_bitwise_equal),
          TEST_ENTRY(trainer_threaded_input_scan_names_the_cell))
