/* test_reliability_soak.c -- a long run, as a host that keeps libmtl for a
 * week would: 10^6 training steps on a tiny model (with a fit, a
 * checkpoint round trip and option changes every 10^5 steps), then 10^7
 * rows predicted.  Memory must stay flat once warmed up:
 *   - libmtl's own memory, counted exactly through the allocator hook:
 *     the same number of blocks and bytes live at every sample point;
 *   - the process's resident set (/proc/self/statm, BLIS included): no
 *     more than 4 MiB above its level at the end of the warm-up.
 * Registered only with -Dlong_tests=true (suite 'long'); MTL_SOAK_STEPS and
 * MTL_SOAK_ROWS shorten it. */
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct {
    long live;
    long long bytes; /* live bytes (requested sizes) */
} g_mem;

typedef struct block_header {
    size_t size, pad;
} block_header;

/* Each block carries its size in front, in an alignment-sized pad (so the
 * pointer returned keeps the requested alignment). */
static void *count_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    size_t pad = alignment;
    while (pad < sizeof(block_header)) pad *= 2;
    void *p = NULL;
    if (posix_memalign(&p, alignment, pad + size) != 0) return NULL;
    block_header *h = (block_header *)((char *)p + pad) - 1;
    h->size = size;
    h->pad = pad;
    g_mem.live++;
    g_mem.bytes += (long long)size;
    return (char *)p + pad;
}

static void count_free(void *user, void *p)
{
    (void)user;
    const block_header *h = (const block_header *)p - 1;
    g_mem.live--;
    g_mem.bytes -= (long long)h->size;
    free((char *)p - h->pad);
}

static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long long env_count(const char *name, long long dflt)
{
    const char *s = getenv(name);
    long long v = s ? atoll(s) : dflt;
    return v > 0 ? v : dflt;
}

enum { IN = 4, TW = 3, DATA_ROWS = 4096, BATCH = 32, PRED_BATCH = 256 };

static uint64_t g_rs = 77;
static float rnd(void)
{
    g_rs = g_rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_rs >> 40) / 16777216.0 - 0.5);
}

typedef struct memory_track {
    long rss_warm, rss_max, rss_end;
    long live_warm;
    long long bytes_warm;
    int samples;
    int drift; /* a sample where libmtl's live memory differed */
} memory_track;

static void sample(memory_track *t, int warm)
{
    long rss = resident_kib();
    if (warm) {
        t->rss_warm = t->rss_max = rss;
        t->live_warm = g_mem.live;
        t->bytes_warm = g_mem.bytes;
        return;
    }
    if (rss > t->rss_max) t->rss_max = rss;
    t->rss_end = rss;
    t->samples++;
    if (g_mem.live != t->live_warm || g_mem.bytes != t->bytes_warm) t->drift++;
}

TEST(soak)
{
    const long long steps = env_count("MTL_SOAK_STEPS", 1000000), rows = env_count("MTL_SOAK_ROWS", 10000000);
    const long long every = steps / 10 > 0 ? steps / 10 : 1, warm_steps = every;
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    a.alloc = count_alloc;
    a.free = count_free;
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, ctx, IN));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 16, MTL_ACT_TANH, 0.1f, MTL_LAYER_NORM));
    ASSERT_OK(mtl_model_add_task(m, "k", MTL_TASK_REGRESSION, 2, NULL));
    ASSERT_OK(mtl_model_add_head_layer(m, 0, 8, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "fast", MTL_TASK_BINARY, 1, NULL));
    ASSERT_OK(mtl_model_finalize(m));

    /* y = smooth functions of x, some labels missing */
    static float x[DATA_ROWS * IN], y[DATA_ROWS * TW];
    for (int i = 0; i < DATA_ROWS; i++) {
        float *xi = x + i * IN, *yi = y + i * TW;
        for (int j = 0; j < IN; j++) xi[j] = 2.0f * rnd();
        yi[0] = xi[0] * xi[1] + 0.5f * xi[2];
        yi[1] = i % 7 == 0 ? NAN : xi[3] - xi[0];
        yi[2] = xi[0] + xi[2] > 0.0f;
    }
    mtl_dataset *ds = NULL, *val = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, ctx, DATA_ROWS, IN, TW, x, IN, y, TW, NULL, 0, NULL, 0));
    int64_t val_rows[256];
    for (int i = 0; i < 256; i++) val_rows[i] = i * 16;
    ASSERT_OK(mtl_dataset_view(&val, ds, 256, val_rows));
    ASSERT_OK(mtl_model_fit_scalers(m, ds));
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, BATCH));
    ASSERT_OK(mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 3e-3));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_DIAGNOSTICS, 1));

    memory_track mt = { 0 };
    const double t0 = now_seconds();
    double first_loss = NAN, last_loss = NAN;
    for (long long s = 0; s < steps; s++) {
        const int64_t r0 = (s * BATCH) % (DATA_ROWS - BATCH);
        double losses[2];
        mtl_status st = mtl_trainer_step(t, BATCH, x + r0 * IN, IN, y + r0 * TW, TW, NULL, 0, NULL, losses);
        if (st != MTL_OK) FAILF("step %lld: %s", s, mtl_last_error_message());
        if (s == 0) first_loss = losses[0];
        if ((s + 1) % every == 0) {
            /* the occasional heavier calls a host makes: a short fit with
             * validation, a checkpoint round trip, an option change */
            ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, mtl_trainer_epoch(t) + 1));
            ASSERT_OK(mtl_trainer_fit(t, ds, val, NULL, NULL));
            size_t n = 0;
            ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n));
            unsigned char *buf = malloc(n);
            ASSERT(buf);
            ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, buf, n, &n));
            mtl_trainer *t2 = NULL;
            mtl_model *m2 = NULL;
            ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, ctx, buf, n));
            mtl_trainer_destroy(t2);
            mtl_model_destroy(m2);
            free(buf);
            ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_WEIGHTING,
                                          (s / every) % 2 ? MTL_WEIGHTING_UNCERTAINTY : MTL_WEIGHTING_FIXED));
            sample(&mt, s + 1 == warm_steps);
            last_loss = losses[0];
        }
    }
    const double t_train = now_seconds() - t0;

    mtl_workspace *ws = NULL;
    const long live0 = g_mem.live;
    const long long bytes0 = g_mem.bytes;
    ASSERT_OK(mtl_workspace_create(&ws, m, PRED_BATCH));
    mt.live_warm += g_mem.live - live0; /* the workspace is part of the baseline from here */
    mt.bytes_warm += g_mem.bytes - bytes0;
    static float out[PRED_BATCH * 4];
    long long done = 0, calls = 0;
    const double t1 = now_seconds();
    int nonfinite = 0;
    while (done < rows) {
        const int64_t r0 = (calls * 97) % (DATA_ROWS - PRED_BATCH);
        const int64_t n = rows - done < PRED_BATCH ? rows - done : PRED_BATCH;
        mtl_status st = calls % 2 ? mtl_model_predict(m, ws, n, x + r0 * IN, IN, out, 3)
                                  : mtl_model_predict_labels(m, ws, n, x + r0 * IN, IN, out, 3);
        if (st != MTL_OK) FAILF("predict call %lld: %s", calls, mtl_last_error_message());
        for (int64_t i = 0; i < n * 3; i++) nonfinite += !isfinite(out[i]);
        done += n;
        if (++calls % 4000 == 0) sample(&mt, 0);
    }
    const double t_pred = now_seconds() - t1;
    sample(&mt, 0);

    printf("  %lld steps in %.1f s (%.1f us/step), %lld rows predicted in %.1f s (%.2f us/row)\n", steps, t_train,
           1e6 * t_train / (double)steps, rows, t_pred, 1e6 * t_pred / (double)rows);
    printf("  loss of task 0: %.4g at the first step, %.4g late\n", first_loss, last_loss);
    printf("  resident memory: %ld KiB after warm-up (%lld steps), max %ld KiB, at the end %ld KiB (%d samples)\n",
           mt.rss_warm, warm_steps, mt.rss_max, mt.rss_end, mt.samples);
    printf("  libmtl memory: %ld blocks, %lld bytes live after warm-up; %d of %d samples differed\n", mt.live_warm,
           mt.bytes_warm, mt.drift, mt.samples);

    mtl_workspace_destroy(ws);
    mtl_trainer_destroy(t);
    mtl_dataset_destroy(val);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    ASSERT_EQ_INT(g_mem.live, 0);
    ASSERT_EQ_INT(g_mem.bytes, 0);
    ASSERT_EQ_INT(nonfinite, 0);
    ASSERT(last_loss < first_loss); /* it did learn */
    ASSERT_EQ_INT(mt.drift, 0);
    ASSERT(mt.rss_max - mt.rss_warm <= 4096);
    return 0;
}

TEST_MAIN(TEST_ENTRY(soak))
