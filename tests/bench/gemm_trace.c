/* gemm_trace.c -- an LD_PRELOAD interposer that times every bli_sgemm_ex
 * call by shape and by caller (libmtl, or anything else: the benchmark's
 * floor), and prints the table at exit.  It answers "are the step's GEMMs
 * slower than the same shapes timed alone?" (docs/performance.md):
 *
 *   LD_PRELOAD=build/tests/libgemm_trace.so \
 *     build/tests/bench --workload W3 --threads 1 --measure train_step
 *
 * GEMM_TRACE_CLOCK=cpu times in the calling thread's CPU time (1-thread
 * runs on a busy machine); the default is wall time (needed when BLIS
 * runs a call on several threads).  Single-threaded bookkeeping: trace a
 * program that calls BLIS from one thread at a time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr, RTLD_NEXT */
#endif
#include <blis.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*sgemm_ex_fn)(trans_t, trans_t, dim_t, dim_t, dim_t, float *, float *, inc_t, inc_t, float *, inc_t,
                            inc_t, float *, float *, inc_t, inc_t, cntx_t *, rntm_t *);

typedef struct shape_stats {
    bool from_libmtl;
    bool ta, tb;
    dim_t m, n, k;
    long calls;
    double seconds;
} shape_stats;

enum { MAX_SHAPES = 128 };
static shape_stats g_shapes[MAX_SHAPES];
static int g_n_shapes;
static long g_untracked; /* calls past MAX_SHAPES shapes */

static double now_s(void)
{
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("GEMM_TRACE_CLOCK") && strcmp(getenv("GEMM_TRACE_CLOCK"), "cpu") == 0;
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool called_from_libmtl(const void *return_address)
{
    Dl_info info;
    return dladdr(return_address, &info) && info.dli_fname && strstr(info.dli_fname, "libmtl");
}

static shape_stats *stats_for(bool lib, bool ta, bool tb, dim_t m, dim_t n, dim_t k)
{
    for (int i = 0; i < g_n_shapes; i++) {
        shape_stats *s = &g_shapes[i];
        if (s->from_libmtl == lib && s->ta == ta && s->tb == tb && s->m == m && s->n == n && s->k == k) return s;
    }
    if (g_n_shapes == MAX_SHAPES) return NULL;
    g_shapes[g_n_shapes] = (shape_stats){ lib, ta, tb, m, n, k, 0, 0.0 };
    return &g_shapes[g_n_shapes++];
}

void bli_sgemm_ex(trans_t transa, trans_t transb, dim_t m, dim_t n, dim_t k, float *alpha, float *a, inc_t rsa,
                  inc_t csa, float *b, inc_t rsb, inc_t csb, float *beta, float *c, inc_t rsc, inc_t csc,
                  cntx_t *cntx, rntm_t *rntm)
{
    static sgemm_ex_fn real;
    if (!real) real = (sgemm_ex_fn)dlsym(RTLD_NEXT, "bli_sgemm_ex");
    const bool lib = called_from_libmtl(__builtin_return_address(0));
    const double t0 = now_s();
    real(transa, transb, m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, cntx, rntm);
    const double t1 = now_s();
    shape_stats *s = stats_for(lib, transa != BLIS_NO_TRANSPOSE, transb != BLIS_NO_TRANSPOSE, m, n, k);
    if (!s) {
        g_untracked++;
        return;
    }
    s->calls++;
    s->seconds += t1 - t0;
}

__attribute__((destructor)) static void print_table(void)
{
    fprintf(stderr, "gemm_trace: caller  op  m x n x k  calls  us/call\n");
    for (int i = 0; i < g_n_shapes; i++) {
        const shape_stats *s = &g_shapes[i];
        fprintf(stderr, "gemm_trace: %-7s %c%c %5ldx%-5ld x%-5ld %7ld %10.2f\n", s->from_libmtl ? "libmtl" : "other",
                s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long)s->m, (long)s->n, (long)s->k, s->calls,
                1e6 * s->seconds / (double)s->calls);
    }
    if (g_untracked) fprintf(stderr, "gemm_trace: %ld calls of further shapes not tracked\n", g_untracked);
}
