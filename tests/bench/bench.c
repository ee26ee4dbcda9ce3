/* bench.c -- libmtl against its BLIS GEMM floor (issue 9, docs/performance.md).
 *
 * For each workload (W1/W2/W3) and thread count (1, 2) this program times,
 * in one process and interleaved sample by sample:
 *   - the floor: every matrix product of the work, called alone through BLIS
 *     (bli_sgemm_ex / bli_sgemv_ex / bli_sger_ex with our own rntm_t), and
 *   - libmtl doing the same work through its public API,
 * and prints both, their ratio, a table and one JSON line per figure.
 *
 * Figures (`measure`):
 *   train_step        one mtl_trainer_step: zero grads + forward + backward +
 *                     Adam, MSE on every task; µs per step.
 *   infer_rows_per_s  mtl_model_predict over 65,536 rows with a workspace of
 *                     8,192 rows (the library chunks); ratio = libmtl / floor.
 *   predict_b1        mtl_model_predict of one row; µs per call.
 *   memory_bytes      bytes held by model + trainer + workspace (counted
 *                     through the context's allocator hook) against the
 *                     minimum: parameters, gradients, two Adam moments and
 *                     one batch's layer outputs.
 *
 * The floor of one training step (trunk d -> h1 -> h2, T heads of h units
 * fused into one layer of T*h units, T 1-wide outputs, batch B):
 *   forward   X·W1 (B,h1,d)   H1·W2 (B,h2,h1)   Z·Whᵀ (B,T*h,h2)
 *   backward  dWhᵀ = dAᵀ·Z (T*h,h2,B)  dZ = dA·Wh (B,h2,T*h)
 *             dW2 = H1ᵀ·dH2 (h1,h2,B)  dH1 = dH2·W2ᵀ (B,h1,h2)
 *             dW1 = Xᵀ·dH1 (d,h1,B)    (no dX for the input layer)
 *             (m,n,k) of each product; the fused head weights Wh are stored
 *             transposed, T*h x h2, as libmtl stores them.
 *   outputs   per task, the 1-wide layer's three products at BLAS level 2:
 *             y = A_t·w_t (sgemv), dw_t = A_tᵀ·dy_t (sgemv), dA_t = dy_t·w_tᵀ
 *             (sger).  A 1-wide layer is not a GEMM worth calling (BLIS
 *             pays ~1 µs per sgemm call), so the floor counts the cheapest
 *             BLIS call that does its product; `floor_gemm` in the JSON is
 *             the 8 GEMMs alone.
 * With 2 threads each GEMM of the floor is timed on 1 and on 2 threads and
 * the faster counts (a perfect size-based choice); level-2 calls run on one.
 * Bias, activations, loss and Adam are not in the floor: they are the
 * library's overhead, which the ratio measures.
 *
 * Timing: per item, warm up and calibrate a repetition count, then take
 * --samples samples (default 5), each >= --min-ms (default 25) ms of
 * back-to-back calls; the figure is the median time per call.  Items of one
 * figure are sampled round-robin so drift hits floor and libmtl alike.
 *
 * Usage: bench [--workload W1,W2,W3] [--threads 1,2] [--measure a,b]
 *              [--samples N] [--min-ms MS] [--clock wall|cpu] [--json-only] [--quiet]
 *        --clock cpu times 1-thread figures in the thread's CPU time (for a
 *        busy machine; the figures are wall time, the default).
 *        bench --profile MEASURE --workload W --threads N [--seconds S | --calls N]
 *              (libmtl alone in a loop, for perf / callgrind)
 * Environment: BENCH_ALLOC_LOG=1 prints every allocation libmtl makes
 * through the counting allocator (for memory breakdowns).
 */
#include <blis.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mtl.h"

/* ---- options --------------------------------------------------------------- */

enum { M_TRAIN = 1, M_INFER = 2, M_PREDICT1 = 4, M_MEMORY = 8, M_ALL = 15 };

typedef struct config {
    unsigned workloads; /* bit w = W(w+1) */
    int threads[4];
    int n_threads;
    unsigned measures;
    int samples;
    double min_s;
    bool json_only;
    bool quiet;
    bool cpu_clock; /* --clock cpu */
    const char *profile; /* measure name, or NULL */
    double profile_seconds;
    long profile_calls;  /* > 0: this many calls instead of seconds */
} config;

static config g_cfg;

#define MAX_SAMPLES 64
#define INFER_ROWS 65536
#define INFER_CHUNK 8192

typedef struct workload {
    const char *name;
    int64_t d, h1, h2, tasks, head, batch;
} workload;

static const workload WORKLOADS[] = {
    { "W1", 16, 64, 64, 3, 32, 64 },
    { "W2", 256, 512, 512, 4, 128, 256 },
    { "W3", 2048, 1024, 1024, 2, 256, 512 },
};
#define N_WORKLOADS ((int)(sizeof WORKLOADS / sizeof WORKLOADS[0]))

static void die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(2);
}

static void check(mtl_status s, const char *call)
{
    if (s != MTL_OK) {
        fprintf(stderr, "bench: %s failed: %s: %s\n", call, mtl_status_string(s), mtl_last_error_message());
        exit(1);
    }
}
#define CHECK(call) check((call), #call)

/* ---- clocks and CPU load ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The clock samples are timed with: wall time, or with --clock cpu this
 * thread's CPU time (1-thread figures only), which leaves out the time
 * the thread waits for a CPU on a busy machine (caches and memory are
 * still shared, so it is not a cure). */
static bool g_cpu_clock;

static double sample_clock(void)
{
    if (!g_cpu_clock) return now_s();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Machine-wide busy/total jiffies from /proc/stat and this process's own CPU
 * time: foreign load = what other processes used while we ran. */
typedef struct load_mark {
    double busy, total; /* jiffies, all CPUs */
    double self_s;      /* this process, user + system, all threads */
    double wall;
} load_mark;

static long g_ncpu = 1;

static load_mark load_now(void)
{
    load_mark m = { 0, 0, 0, now_s() };
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[10] = { 0 };
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
            /* user nice system idle iowait irq softirq steal (guest is in user) */
            double idle = (double)(v[3] + v[4]);
            double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
            m.busy = busy;
            m.total = busy + idle;
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        m.self_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                   (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    return m;
}

/* Foreign load in CPUs (0 = idle machine apart from us), or -1 if unknown. */
static double foreign_cpus(load_mark a, load_mark b)
{
    double dt = b.total - a.total;
    if (dt <= 0) return -1.0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    double busy_cpus = (b.busy - a.busy) / dt * (double)g_ncpu;
    double self_cpus = (b.self_s - a.self_s) * hz / dt * (double)g_ncpu;
    double f = busy_cpus - self_cpus;
    return f < 0 ? 0 : f;
}

/* ---- timed items ---------------------------------------------------------------- */

typedef struct item {
    char name[96];
    void (*fn)(void *arg);
    void *arg;
    double count;       /* how many times it counts in its figure */
    int group;          /* which figure part it belongs to */
    bool alt;           /* another way to do the previous item: the faster counts */
    bool naive_too;     /* also part of the naive reference (trunk GEMMs, 1 thread) */
    long reps;
    double sample[MAX_SAMPLES]; /* seconds per call */
    double median;      /* seconds per call */
    double best;        /* fastest sample: robust to a busy machine */
} item;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(const double *v, int n)
{
    double tmp[MAX_SAMPLES];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* Warm up and choose a repetition count that fills min_s. */
static void calibrate(item *it)
{
    long reps = 1;
    for (;;) {
        double t0 = sample_clock();
        for (long r = 0; r < reps; r++) it->fn(it->arg);
        double t = sample_clock() - t0;
        if (t >= g_cfg.min_s) break;
        double grow = t > 0 ? g_cfg.min_s * 1.25 / t : 100.0;
        if (grow < 2) grow = 2;
        if (grow > 100) grow = 100;
        reps = (long)ceil((double)reps * grow);
    }
    it->reps = reps;
}

/* One sample: back-to-back calls for at least min_s; seconds per call. */
static double sample_once(item *it)
{
    long done = 0;
    double t0 = sample_clock(), t;
    do {
        for (long r = 0; r < it->reps; r++) it->fn(it->arg);
        done += it->reps;
        t = sample_clock() - t0;
    } while (t < g_cfg.min_s);
    return t / (double)done;
}

static void run_items(item *items, int n)
{
    for (int i = 0; i < n; i++) calibrate(&items[i]);
    for (int s = 0; s < g_cfg.samples; s++)
        for (int i = 0; i < n; i++) items[i].sample[s] = sample_once(&items[i]);
    for (int i = 0; i < n; i++) {
        items[i].median = median_of(items[i].sample, g_cfg.samples);
        items[i].best = items[i].sample[0];
        for (int s = 1; s < g_cfg.samples; s++)
            if (items[i].sample[s] < items[i].best) items[i].best = items[i].sample[s];
    }
}

/* ---- buffers -------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float rand_sym(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static float *new_buf(size_t n, bool fill)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) die("out of memory");
    for (size_t i = 0; i < n; i++) p[i] = fill ? 0.1f * rand_sym() : 0.0f;
    return p;
}

/* ---- floor: BLIS calls ------------------------------------------------------------- */

typedef enum { K_GEMM, K_GEMV, K_GER } call_kind;

typedef struct blis_call {
    call_kind kind;
    trans_t ta, tb;
    dim_t m, n, k;
    float *a, *b, *c;
    inc_t lda, ldb, ldc;
    rntm_t rntm;
} blis_call;

static void run_blis_call(void *arg)
{
    blis_call *c = arg;
    float one = 1.0f, zero = 0.0f;
    switch (c->kind) {
    case K_GEMM: /* row-major C[m x n] = op(A) op(B) */
        bli_sgemm_ex(c->ta, c->tb, c->m, c->n, c->k, &one, c->a, c->lda, 1, c->b, c->ldb, 1, &zero, c->c,
                     c->ldc, 1, NULL, &c->rntm);
        break;
    case K_GEMV: /* y = op(A) x, A stored m x n row-major */
        bli_sgemv_ex(c->ta, BLIS_NO_CONJUGATE, c->m, c->n, &one, c->a, c->lda, 1, c->b, 1, &zero, c->c, 1,
                     NULL, &c->rntm);
        break;
    case K_GER: /* A[m x n] += x yᵀ, A row-major with stride ldc */
        bli_sger_ex(BLIS_NO_CONJUGATE, BLIS_NO_CONJUGATE, c->m, c->n, &one, c->a, 1, c->b, 1, c->c, c->ldc,
                    1, NULL, &c->rntm);
        break;
    }
}

static rntm_t rntm_threads(int nt)
{
    rntm_t r = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nt, &r);
    return r;
}

/* Row-major C[m x n] = op(A)[m x k] · op(B)[k x n] with fresh operands. */
static blis_call *new_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int nt)
{
    blis_call *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->kind = K_GEMM;
    c->ta = ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    c->tb = tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    c->m = m, c->n = n, c->k = k;
    c->lda = ta ? m : k; /* stored k x m or m x k */
    c->ldb = tb ? k : n; /* stored n x k or k x n */
    c->ldc = n;
    c->a = new_buf((size_t)(m * k), true);
    c->b = new_buf((size_t)(k * n), true);
    c->c = new_buf((size_t)(m * n), false);
    c->rntm = rntm_threads(nt);
    return c;
}

/* y = op(A) x with A stored rows x cols (row stride ld >= cols). */
static blis_call *new_gemv(bool ta, int64_t rows, int64_t cols, int64_t ld)
{
    blis_call *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->kind = K_GEMV;
    c->ta = ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    c->m = rows, c->n = cols, c->lda = ld;
    c->a = new_buf((size_t)(rows * ld), true);
    c->b = new_buf((size_t)(ta ? rows : cols), true);
    c->c = new_buf((size_t)(ta ? cols : rows), false);
    c->rntm = rntm_threads(1);
    return c;
}

/* A[rows x cols] (row stride ld) += x yᵀ. */
static blis_call *new_ger(int64_t rows, int64_t cols, int64_t ld)
{
    blis_call *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->kind = K_GER;
    c->m = rows, c->n = cols, c->ldc = ld;
    c->a = new_buf((size_t)rows, true);
    c->b = new_buf((size_t)cols, true);
    c->c = new_buf((size_t)(rows * ld), true);
    c->rntm = rntm_threads(1);
    return c;
}

static void free_call(blis_call *c)
{
    if (!c) return;
    free(c->a);
    free(c->b);
    free(c->c);
    free(c);
}

/* ---- the figure being built --------------------------------------------------------- */

/* G_NAIVE: the head layers as a naive BLIS user would call them (one GEMM
 * per head, 1-wide output GEMMs); reported for reference, not in the floor. */
enum { G_LIBMTL = 0, G_GEMM = 1, G_LEVEL2 = 2, G_NAIVE = 3 };

typedef struct figure {
    item items[48];
    blis_call *calls[48];
    int n;
} figure;

static item *fig_add(figure *f, const char *name, void (*fn)(void *), void *arg, double count, int group)
{
    if (f->n >= 48) die("too many items");
    item *it = &f->items[f->n];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->fn = fn;
    it->arg = arg;
    it->count = count;
    it->group = group;
    f->calls[f->n] = NULL;
    f->n++;
    return it;
}

static void fig_add_call(figure *f, const char *name, blis_call *c, double count, int group)
{
    fig_add(f, name, run_blis_call, c, count, group);
    f->calls[f->n - 1] = c;
}

/* A GEMM of the floor; with nt > 1 also its 1-thread twin, the faster counts. */
static void fig_add_gemm_g(figure *f, const char *what, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                           double count, int nt, int group)
{
    char name[96];
    snprintf(name, sizeof name, "gemm %-9s %c%c %5lldx%-5lldx%-5lld 1t", what, ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)m, (long long)n, (long long)k);
    fig_add_call(f, name, new_gemm(ta, tb, m, n, k, 1), count, group);
    if (nt > 1) {
        snprintf(name, sizeof name, "gemm %-9s %c%c %5lldx%-5lldx%-5lld %dt", what, ta ? 'T' : 'N',
                 tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, nt);
        fig_add_call(f, name, new_gemm(ta, tb, m, n, k, nt), count, G_GEMM);
        f->items[f->n - 1].alt = true;
    }
}

static void fig_add_gemm(figure *f, const char *what, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         double count, int nt)
{
    fig_add_gemm_g(f, what, ta, tb, m, n, k, count, nt, G_GEMM);
}

static void fig_free(figure *f)
{
    for (int i = 0; i < f->n; i++) free_call(f->calls[i]);
    f->n = 0;
}

/* An item's time per call: the median, or the fastest sample. */
static double item_s(const item *it, bool fastest)
{
    return fastest ? it->best : it->median;
}

/* Floor parts in seconds: GEMMs (per shape the faster of its 1t/nt items)
 * and level-2 calls. */
static void fig_floor(const figure *f, bool fastest, double *gemm_s, double *level2_s)
{
    *gemm_s = *level2_s = 0;
    for (int i = 0; i < f->n; i++) {
        const item *it = &f->items[i];
        if (it->group == G_LEVEL2) *level2_s += it->count * item_s(it, fastest);
        if (it->group != G_GEMM) continue;
        double best = item_s(it, fastest);
        for (; i + 1 < f->n && f->items[i + 1].alt; i++)
            if (item_s(&f->items[i + 1], fastest) < best) best = item_s(&f->items[i + 1], fastest);
        *gemm_s += it->count * best;
    }
}

/* Seconds of the naive reference: per-head calls + the trunk GEMMs. */
static double fig_naive(const figure *f)
{
    double t = 0;
    for (int i = 0; i < f->n; i++)
        if (f->items[i].group == G_NAIVE || f->items[i].naive_too) t += f->items[i].count * f->items[i].median;
    return t;
}

static double fig_libmtl(const figure *f, bool fastest)
{
    for (int i = 0; i < f->n; i++)
        if (f->items[i].group == G_LIBMTL) return item_s(&f->items[i], fastest);
    return NAN;
}

/* libmtl / floor from the fastest samples: > 0 adds "ratio_best" to the
 * next JSON line (a busy machine only ever adds time, so the fastest
 * samples are the better estimate there). */
static double g_ratio_best;
static void fig_ratio_best(const figure *f)
{
    double g, l2;
    fig_floor(f, true, &g, &l2);
    g_ratio_best = fig_libmtl(f, true) / (g + l2);
}

static void fig_print_parts(const figure *f, double scale, const char *unit)
{
    if (g_cfg.json_only || g_cfg.quiet) return;
    for (int i = 0; i < f->n; i++) {
        const item *it = &f->items[i];
        if (it->group == G_LIBMTL) continue;
        printf("      %-44s x%-5g %10.2f %s\n", it->name, it->count, it->median * scale, unit);
    }
}

/* ---- counting allocator (memory figure) --------------------------------------------- */

typedef struct counter {
    size_t live, peak;
    long calls;
} counter;

static counter g_count;
static bool g_alloc_log; /* BENCH_ALLOC_LOG=1: print every allocation (memory breakdowns) */

/* Header before each block: [pad ... | offset | size] then the user block. */
static void *count_alloc(void *user, size_t size, size_t alignment)
{
    counter *c = user;
    size_t hdr = alignment < 16 ? 16 : alignment;
    void *raw = NULL;
    if (posix_memalign(&raw, hdr, hdr + size) != 0) return NULL;
    unsigned char *p = (unsigned char *)raw + hdr;
    ((size_t *)p)[-1] = size;
    ((size_t *)p)[-2] = hdr;
    c->live += size;
    if (c->live > c->peak) c->peak = c->live;
    c->calls++;
    if (g_alloc_log) fprintf(stderr, "bench: alloc %zu bytes (live %zu)\n", size, c->live);
    return p;
}

static void count_free(void *user, void *ptr)
{
    counter *c = user;
    if (!ptr) return;
    unsigned char *p = ptr;
    size_t size = ((size_t *)p)[-1], hdr = ((size_t *)p)[-2];
    c->live -= size;
    free(p - hdr);
}

/* ---- libmtl side ------------------------------------------------------------------- */

typedef struct net {
    const workload *w;
    mtl_context *ctx;
    mtl_model *model;
    mtl_trainer *trainer;
    mtl_workspace *ws_train;   /* batch rows: the memory figure */
    mtl_workspace *ws_infer;   /* INFER_CHUNK rows */
    mtl_workspace *ws_one;     /* 1 row */
    float *x, *y;              /* one batch */
    float *xi, *out_i;         /* inference rows and outputs */
    size_t bytes_after_create; /* model + trainer + ws_train */
    size_t bytes_model, bytes_trainer, bytes_ws; /* the parts */
} net;

static void net_build(net *n, const workload *w, int nt, unsigned measures)
{
    memset(n, 0, sizeof *n);
    n->w = w;
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    a.alloc = count_alloc;
    a.free = count_free;
    a.user = &g_count;
    CHECK(mtl_context_create(&n->ctx, &a));
    CHECK(mtl_context_set_i64(n->ctx, MTL_OPT_NUM_THREADS, nt));
    CHECK(mtl_context_set_i64(n->ctx, MTL_OPT_SEED, 7));
    size_t live0 = g_count.live;
    CHECK(mtl_model_create(&n->model, n->ctx, w->d));
    CHECK(mtl_model_add_trunk_layer(n->model, w->h1, MTL_ACT_RELU, 0.0f, 0));
    CHECK(mtl_model_add_trunk_layer(n->model, w->h2, MTL_ACT_RELU, 0.0f, 0));
    for (int64_t t = 0; t < w->tasks; t++) {
        char name[32];
        int64_t idx = -1;
        snprintf(name, sizeof name, "task%lld", (long long)t);
        CHECK(mtl_model_add_task(n->model, name, MTL_TASK_REGRESSION, 1, &idx));
        CHECK(mtl_model_set_task_i64(n->model, idx, MTL_TASK_OPT_LOSS, MTL_LOSS_MSE));
        CHECK(mtl_model_add_head_layer(n->model, idx, w->head, MTL_ACT_RELU, 0.0f, 0));
    }
    CHECK(mtl_model_finalize(n->model));
    n->bytes_model = g_count.live - live0;
    if (measures & (M_TRAIN | M_MEMORY)) {
        size_t live1 = g_count.live;
        CHECK(mtl_trainer_create(&n->trainer, n->model, w->batch));
        CHECK(mtl_trainer_set_i64(n->trainer, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
        CHECK(mtl_trainer_set_f64(n->trainer, MTL_OPT_LEARNING_RATE, 1e-3));
        n->bytes_trainer = g_count.live - live1;
        live1 = g_count.live;
        CHECK(mtl_workspace_create(&n->ws_train, n->model, w->batch));
        n->bytes_ws = g_count.live - live1;
    }
    n->bytes_after_create = g_count.live - live0;
    if (measures & M_INFER) CHECK(mtl_workspace_create(&n->ws_infer, n->model, INFER_CHUNK));
    if (measures & M_PREDICT1) CHECK(mtl_workspace_create(&n->ws_one, n->model, 1));

    n->x = new_buf((size_t)(w->batch * w->d), true);
    n->y = new_buf((size_t)(w->batch * w->tasks), true);
    if (measures & M_INFER) {
        n->xi = new_buf((size_t)INFER_ROWS * (size_t)w->d, true);
        n->out_i = new_buf((size_t)INFER_ROWS * (size_t)w->tasks, false);
    } else {
        n->out_i = new_buf((size_t)w->tasks, false);
    }
}

static void net_free(net *n)
{
    mtl_workspace_destroy(n->ws_one);
    mtl_workspace_destroy(n->ws_infer);
    mtl_workspace_destroy(n->ws_train);
    mtl_trainer_destroy(n->trainer);
    mtl_model_destroy(n->model);
    mtl_context_destroy(n->ctx);
    free(n->x);
    free(n->y);
    free(n->xi);
    free(n->out_i);
    memset(n, 0, sizeof *n);
}

static void run_train_step(void *arg)
{
    net *n = arg;
    const workload *w = n->w;
    CHECK(mtl_trainer_step(n->trainer, w->batch, n->x, w->d, n->y, w->tasks, NULL, 0, NULL, NULL));
}

static void run_infer(void *arg)
{
    net *n = arg;
    const workload *w = n->w;
    CHECK(mtl_model_predict(n->model, n->ws_infer, INFER_ROWS, n->xi, w->d, n->out_i, w->tasks));
}

static void run_predict1(void *arg)
{
    net *n = arg;
    const workload *w = n->w;
    CHECK(mtl_model_predict(n->model, n->ws_one, 1, n->x, w->d, n->out_i, w->tasks));
}

/* ---- output -------------------------------------------------------------------------- */

static const char *g_arch = "?";
static int g_arch_id = -1;
static double g_naive_us; /* > 0: add "floor_naive" to the next JSON line */

static void emit(const workload *w, int nt, const char *measure, const char *unit, double lib, double floor,
                 double floor_gemm, double foreign)
{
    double ratio = floor > 0 ? lib / floor : NAN;
    if (!g_cfg.json_only)
        printf("  %-3s %dt %-17s libmtl %12.2f %-6s floor %12.2f %-6s ratio %6.3f\n", w->name, nt, measure, lib,
               unit, floor, unit, ratio);
    printf("{\"workload\":\"%s\",\"threads\":%d,\"measure\":\"%s\",\"libmtl\":%.6g,\"floor\":%.6g,"
           "\"ratio\":%.4f,\"unit\":\"%s\",\"floor_gemm\":%.6g,\"foreign_load_cpus\":%.3f,"
           "\"blis_arch\":\"%s\",\"small_kernels\":\"%s\"",
           w->name, nt, measure, lib, floor, ratio, unit, floor_gemm, foreign, g_arch, mtl_small_kernels());
    printf(",\"clock\":\"%s\"", g_cpu_clock ? "cpu" : "wall");
    if (g_naive_us > 0) printf(",\"floor_naive\":%.6g", g_naive_us);
    if (g_ratio_best > 0) printf(",\"ratio_best\":%.4f", g_ratio_best);
    g_ratio_best = 0;
    printf("}\n");
    fflush(stdout);
}

/* ---- figures ------------------------------------------------------------------------- */

static void figure_train(const workload *w, int nt, net *n)
{
    figure f = { .n = 0 };
    const int64_t B = w->batch, th = w->tasks * w->head;
    fig_add(&f, "libmtl mtl_trainer_step", run_train_step, n, 1, G_LIBMTL);
    fig_add_gemm(&f, "fwd L1", false, false, B, w->h1, w->d, 1, nt);
    fig_add_gemm(&f, "fwd L2", false, false, B, w->h2, w->h1, 1, nt);
    /* the fused head weights are stored transposed (T*h x h2), as libmtl does */
    fig_add_gemm(&f, "fwd heads", false, true, B, th, w->h2, 1, nt);
    fig_add_gemm(&f, "dW heads", true, false, th, w->h2, B, 1, nt);
    fig_add_gemm(&f, "dX heads", false, false, B, w->h2, th, 1, nt);
    fig_add_gemm(&f, "dW L2", true, false, w->h1, w->h2, B, 1, nt);
    fig_add_gemm(&f, "dX L2", false, true, B, w->h1, w->h2, 1, nt);
    fig_add_gemm(&f, "dW L1", true, false, w->d, w->h1, B, 1, nt);
    for (int i = 0; i < f.n; i++)
        f.items[i].naive_too = f.items[i].group == G_GEMM && !f.items[i].alt && strstr(f.items[i].name, " L");
    char name[96];
    snprintf(name, sizeof name, "gemv out fwd   N  %5lldx%-5lld", (long long)B, (long long)w->head);
    fig_add_call(&f, name, new_gemv(false, B, w->head, th), (double)w->tasks, G_LEVEL2);
    snprintf(name, sizeof name, "gemv out dW    T  %5lldx%-5lld", (long long)B, (long long)w->head);
    fig_add_call(&f, name, new_gemv(true, B, w->head, th), (double)w->tasks, G_LEVEL2);
    snprintf(name, sizeof name, "ger  out dX       %5lldx%-5lld", (long long)B, (long long)w->head);
    fig_add_call(&f, name, new_ger(B, w->head, th), (double)w->tasks, G_LEVEL2);
    /* reference only: per-head GEMMs and 1-wide output GEMMs, one thread */
    const double T = (double)w->tasks;
    fig_add_gemm_g(&f, "naive hd", false, true, B, w->head, w->h2, T, 1, G_NAIVE);
    fig_add_gemm_g(&f, "naive hdW", true, false, w->head, w->h2, B, T, 1, G_NAIVE);
    fig_add_gemm_g(&f, "naive hdX", false, false, B, w->h2, w->head, T, 1, G_NAIVE);
    fig_add_gemm_g(&f, "naive out", false, false, B, 1, w->head, T, 1, G_NAIVE);
    fig_add_gemm_g(&f, "naive odW", true, false, w->head, 1, B, T, 1, G_NAIVE);
    fig_add_gemm_g(&f, "naive odX", false, true, B, w->head, 1, T, 1, G_NAIVE);

    load_mark a = load_now();
    long calls0 = g_count.calls;
    run_items(f.items, f.n);
    long step_allocs = g_count.calls - calls0;
    double foreign = foreign_cpus(a, load_now());
    double gemm_s, l2_s;
    fig_floor(&f, false, &gemm_s, &l2_s);
    fig_ratio_best(&f);
    const double naive = fig_naive(&f);
    g_naive_us = naive * 1e6;
    emit(w, nt, "train_step", "us", fig_libmtl(&f, false) * 1e6, (gemm_s + l2_s) * 1e6, gemm_s * 1e6, foreign);
    g_naive_us = 0;
    fig_print_parts(&f, 1e6, "us");
    if (!g_cfg.json_only && !g_cfg.quiet)
        printf("      floor = %.2f us GEMM + %.2f us level-2 (naive per-head BLIS calls: %.2f us); allocations "
               "during steps: %ld; foreign load %.2f CPU\n",
               gemm_s * 1e6, l2_s * 1e6, naive * 1e6, step_allocs, foreign);
    fig_free(&f);
}

static void figure_infer(const workload *w, int nt, net *n)
{
    figure f = { .n = 0 };
    const int64_t R = INFER_CHUNK, th = w->tasks * w->head;
    const double chunks = (double)INFER_ROWS / INFER_CHUNK;
    fig_add(&f, "libmtl mtl_model_predict 65536 rows", run_infer, n, 1, G_LIBMTL);
    fig_add_gemm(&f, "fwd L1", false, false, R, w->h1, w->d, chunks, nt);
    fig_add_gemm(&f, "fwd L2", false, false, R, w->h2, w->h1, chunks, nt);
    fig_add_gemm(&f, "fwd heads", false, true, R, th, w->h2, chunks, nt);
    char name[96];
    snprintf(name, sizeof name, "gemv out fwd   N  %5lldx%-5lld", (long long)R, (long long)w->head);
    fig_add_call(&f, name, new_gemv(false, R, w->head, th), chunks * (double)w->tasks, G_LEVEL2);

    load_mark a = load_now();
    run_items(f.items, f.n);
    double foreign = foreign_cpus(a, load_now());
    double gemm_s, l2_s;
    fig_floor(&f, false, &gemm_s, &l2_s);
    fig_ratio_best(&f);
    g_ratio_best = 1.0 / g_ratio_best; /* rows/s: libmtl / floor */
    double lib_rows = INFER_ROWS / fig_libmtl(&f, false);
    emit(w, nt, "infer_rows_per_s", "rows/s", lib_rows, INFER_ROWS / (gemm_s + l2_s), INFER_ROWS / gemm_s,
         foreign);
    fig_print_parts(&f, 1e3, "ms");
    fig_free(&f);
}

static void figure_predict1(const workload *w, int nt, net *n)
{
    figure f = { .n = 0 };
    const int64_t th = w->tasks * w->head;
    fig_add(&f, "libmtl mtl_model_predict 1 row", run_predict1, n, 1, G_LIBMTL);
    /* one sgemv per layer: y = Wᵀ x with W stored fan_in x fan_out */
    fig_add_call(&f, "gemv L1", new_gemv(true, w->d, w->h1, w->h1), 1, G_LEVEL2);
    fig_add_call(&f, "gemv L2", new_gemv(true, w->h1, w->h2, w->h2), 1, G_LEVEL2);
    fig_add_call(&f, "gemv heads (fused)", new_gemv(true, w->h2, th, th), 1, G_LEVEL2);
    fig_add_call(&f, "gemv out (per task)", new_gemv(true, w->head, 1, 1), (double)w->tasks, G_LEVEL2);

    load_mark a = load_now();
    run_items(f.items, f.n);
    double foreign = foreign_cpus(a, load_now());
    double gemm_s, l2_s;
    fig_floor(&f, false, &gemm_s, &l2_s);
    fig_ratio_best(&f);
    emit(w, nt, "predict_b1", "us", fig_libmtl(&f, false) * 1e6, l2_s * 1e6, 0.0, foreign);
    fig_print_parts(&f, 1e6, "us");
    fig_free(&f);
}

static void figure_memory(const workload *w, net *n)
{
    const int64_t th = w->tasks * w->head;
    int64_t P = mtl_model_param_count(n->model);
    int64_t expect_p = w->d * w->h1 + w->h1 + w->h1 * w->h2 + w->h2 + w->h2 * th + th + th + w->tasks;
    if (P != expect_p) fprintf(stderr, "bench: %s has %lld parameters, expected %lld\n", w->name,
                               (long long)P, (long long)expect_p);
    double min_bytes = 4.0 * (4.0 * (double)P + (double)w->batch * (double)(w->h1 + w->h2 + th + w->tasks));
    emit(w, 1, "memory_bytes", "bytes", (double)n->bytes_after_create, min_bytes, 0.0, 0.0);
    if (!g_cfg.json_only && !g_cfg.quiet)
        printf("      minimum = 4 x %lld params x 4 B + batch %lld x %lld outputs x 4 B; libmtl: model %zu, "
               "trainer %zu, workspace(%lld rows) %zu\n", (long long)P, (long long)w->batch,
               (long long)(w->h1 + w->h2 + th + w->tasks), n->bytes_model, n->bytes_trainer, (long long)w->batch,
               n->bytes_ws);
}

/* ---- profile mode: libmtl alone, for perf and callgrind -------------------------------- */

static int profile(const workload *w, int nt)
{
    unsigned m = strcmp(g_cfg.profile, "train_step") == 0         ? M_TRAIN
                 : strcmp(g_cfg.profile, "infer_rows_per_s") == 0 ? M_INFER
                 : strcmp(g_cfg.profile, "predict_b1") == 0       ? M_PREDICT1
                                                                   : 0;
    if (!m) die("--profile takes train_step, infer_rows_per_s or predict_b1");
    net n;
    net_build(&n, w, nt, m);
    void (*fn)(void *) = m == M_TRAIN ? run_train_step : m == M_INFER ? run_infer : run_predict1;
    fn(&n); /* warm-up */
    long calls = 0;
    double t0 = now_s(), t;
    if (g_cfg.profile_calls > 0) {
        for (; calls < g_cfg.profile_calls; calls++) fn(&n);
        t = now_s() - t0;
    } else {
        do {
            for (int r = 0; r < 16; r++) fn(&n);
            calls += 16;
            t = now_s() - t0;
        } while (t < g_cfg.profile_seconds);
    }
    printf("profile %s %s %dt: %ld calls, %.3f us per call\n", w->name, g_cfg.profile, nt, calls,
           t / (double)calls * 1e6);
    net_free(&n);
    return 0;
}

/* ---- command line --------------------------------------------------------------------- */

static unsigned parse_measures(const char *s)
{
    unsigned m = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "train_step")) m |= M_TRAIN;
        else if (!strcmp(tok, "infer_rows_per_s")) m |= M_INFER;
        else if (!strcmp(tok, "predict_b1")) m |= M_PREDICT1;
        else if (!strcmp(tok, "memory_bytes")) m |= M_MEMORY;
        else die("unknown measure (train_step, infer_rows_per_s, predict_b1, memory_bytes)");
    }
    return m;
}

static void parse_args(int argc, char **argv)
{
    g_cfg = (config){ .workloads = 7, .threads = { 1, 2 }, .n_threads = 2, .measures = M_ALL,
                      .samples = 5, .min_s = 0.025, .profile_seconds = 5.0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json-only")) { g_cfg.json_only = true; continue; }
        if (!strcmp(a, "--quiet")) { g_cfg.quiet = true; continue; }
        if (!v) die("missing value after an option (see the comment at the top of bench.c)");
        i++;
        if (!strcmp(a, "--workload")) {
            g_cfg.workloads = 0;
            for (int k = 0; k < N_WORKLOADS; k++)
                if (strstr(v, WORKLOADS[k].name)) g_cfg.workloads |= 1u << k;
        } else if (!strcmp(a, "--threads")) {
            g_cfg.n_threads = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok && g_cfg.n_threads < 4; tok = strtok(NULL, ","))
                g_cfg.threads[g_cfg.n_threads++] = atoi(tok);
        } else if (!strcmp(a, "--measure")) {
            g_cfg.measures = parse_measures(v);
        } else if (!strcmp(a, "--clock")) {
            if (strcmp(v, "wall") && strcmp(v, "cpu")) die("--clock takes wall or cpu");
            g_cfg.cpu_clock = !strcmp(v, "cpu");
        } else if (!strcmp(a, "--samples")) {
            g_cfg.samples = atoi(v);
        } else if (!strcmp(a, "--min-ms")) {
            g_cfg.min_s = atof(v) * 1e-3;
        } else if (!strcmp(a, "--profile")) {
            g_cfg.profile = v;
        } else if (!strcmp(a, "--seconds")) {
            g_cfg.profile_seconds = atof(v);
        } else if (!strcmp(a, "--calls")) {
            g_cfg.profile_calls = atol(v);
        } else {
            die("unknown option (see the comment at the top of bench.c)");
        }
    }
    if (g_cfg.samples < 1 || g_cfg.samples > MAX_SAMPLES) die("--samples must be 1..64");
    if (g_cfg.min_s <= 0) die("--min-ms must be > 0");
    for (int i = 0; i < g_cfg.n_threads; i++)
        if (g_cfg.threads[i] < 1 || g_cfg.threads[i] > 256) die("--threads takes counts 1..256");
    if (!g_cfg.workloads || !g_cfg.n_threads || !g_cfg.measures) die("nothing to run");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    g_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g_alloc_log = getenv("BENCH_ALLOC_LOG") && atoi(getenv("BENCH_ALLOC_LOG")) > 0;
    if (g_ncpu < 1) g_ncpu = 1;

    /* Best kernels first, before anything initialises BLIS; floor and libmtl
     * then share them (one process, one BLIS context). */
    const char *chosen = NULL;
    if (mtl_blis_select_best_arch(&chosen) != MTL_OK)
        fprintf(stderr, "bench: note: %s\n", mtl_last_error_message());
    g_arch = mtl_blis_arch();
    g_arch_id = (int)bli_arch_query_id();

    if (g_cfg.profile) {
        for (int k = 0; k < N_WORKLOADS; k++)
            if (g_cfg.workloads & (1u << k)) return profile(&WORKLOADS[k], g_cfg.threads[0]);
        return 2;
    }

    const char *env_arch = getenv("BLIS_ARCH_TYPE");
    if (!g_cfg.json_only) {
        printf("libmtl %s, BLIS %s, kernels '%s'%s, threading %s, libmtl small kernels %s, %ld CPUs online\n",
               mtl_version_string(), mtl_blis_version(), g_arch,
               mtl_blis_is_fallback() ? " (GENERIC FALLBACK: slow)" : "", mtl_blis_threading(), mtl_small_kernels(),
               g_ncpu);
        printf("samples %d x >= %.0f ms each, median per call, %s clock\n", g_cfg.samples, g_cfg.min_s * 1e3,
               g_cfg.cpu_clock ? "thread CPU (1 thread; wall for more)" : "wall");
    }
    printf("{\"blis_arch\":\"%s\",\"blis_arch_id\":%d,\"blis_version\":\"%s\",\"blis_arch_type_env\":\"%s\","
           "\"small_kernels\":\"%s\",\"cpus\":%ld,\"samples\":%d,\"min_ms\":%.0f}\n",
           g_arch, g_arch_id, mtl_blis_version(), env_arch ? env_arch : "", mtl_small_kernels(), g_ncpu,
           g_cfg.samples, g_cfg.min_s * 1e3);
    fflush(stdout);

    load_mark start = load_now();
    for (int k = 0; k < N_WORKLOADS; k++) {
        if (!(g_cfg.workloads & (1u << k))) continue;
        const workload *w = &WORKLOADS[k];
        if (!g_cfg.json_only)
            printf("\n%s: %lld inputs, trunk %lld-%lld, %lld x (%lld -> 1) heads, batch %lld\n", w->name,
                   (long long)w->d, (long long)w->h1, (long long)w->h2, (long long)w->tasks,
                   (long long)w->head, (long long)w->batch);
        for (int ti = 0; ti < g_cfg.n_threads; ti++) {
            int nt = g_cfg.threads[ti];
            g_cpu_clock = g_cfg.cpu_clock && nt == 1; /* CPU time of one thread */
            net n;
            net_build(&n, w, nt, g_cfg.measures);
            if ((g_cfg.measures & M_MEMORY) && ti == 0) figure_memory(w, &n);
            if (g_cfg.measures & M_TRAIN) figure_train(w, nt, &n);
            if (g_cfg.measures & M_INFER) figure_infer(w, nt, &n);
            if (g_cfg.measures & M_PREDICT1) figure_predict1(w, nt, &n);
            net_free(&n);
        }
    }
    double foreign = foreign_cpus(start, load_now());
    if (!g_cfg.json_only)
        printf("\nforeign CPU load over the run: %.2f of %ld CPUs%s\n", foreign, g_ncpu,
               foreign > 0.2 ? " (the machine was busy: 2-thread figures are unreliable)" : "");
    printf("{\"foreign_load_cpus\":%.3f,\"cpus\":%ld}\n", foreign, g_ncpu);
    return 0;
}
