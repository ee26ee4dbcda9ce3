/* test_reliability_threads.c -- libmtl used from many threads at once, as
 * docs/threading.md promises:
 *   - 8 threads share one const model, each with its own workspace, and
 *     predict different rows (predict, predict_labels, embed, the domain
 *     check) for ~2 s (MTL_REL_SECONDS): every result bitwise equal to the
 *     same call made serially beforehand;
 *   - two independent models trained in two threads at once end bitwise
 *     equal to the same training run serially;
 *   - threads saving, loading and CSV-parsing independent handles at once.
 * The ThreadSanitizer build of CI (build-tsan) runs this file; the
 * contexts use one BLIS thread per handle (the default), so BLIS's OpenMP
 * runtime, which TSan cannot see into, starts no threads of its own. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "files_common.h"

enum { N_THREADS = 8, ROWS = 2048, IN = 12, CHUNK = 37 /* rows per call: not a multiple of anything */ };

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double run_seconds(void)
{
    const char *s = getenv("MTL_REL_SECONDS");
    double v = s ? atof(s) : 2.0;
    return v > 0 ? v : 2.0;
}

/* BLIS threads per handle: 1 (the default) unless MTL_REL_BLIS_THREADS
 * says otherwise (then every GEMM is split, however small). */
static mtl_status set_blis_threads(mtl_context *ctx)
{
    const char *s = getenv("MTL_REL_BLIS_THREADS");
    int64_t n = s ? atoi(s) : 1;
    if (n <= 1) return MTL_OK;
    mtl_status st = mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, n);
    return st ? st : mtl_context_set_i64(ctx, MTL_OPT_PARALLEL_MIN_FLOPS, 0);
}

static uint64_t g_rng_state = 12345;
static float rnd(void)
{
    return sample_rand(&g_rng_state);
}

/* A model big enough for real GEMMs in every layer: layer norm, dropout
 * (inactive in predict), three task types, fitted scalers and domain. */
static mtl_model *predict_model(void)
{
    mtl_model *m = NULL;
    mtl_context *ctx = NULL;
    if (mtl_context_create(&ctx, NULL) || mtl_context_set_i64(ctx, MTL_OPT_SEED, 11) || set_blis_threads(ctx)) {
        mtl_context_destroy(ctx);
        return NULL;
    }
    mtl_status st = mtl_model_create(&m, ctx, IN);
    mtl_context_destroy(ctx);
    int64_t t = 0;
    if (st == MTL_OK) st = mtl_model_add_trunk_layer(m, 64, MTL_ACT_GELU, 0.1f, MTL_LAYER_NORM);
    if (st == MTL_OK) st = mtl_model_add_trunk_layer(m, 48, MTL_ACT_RELU, 0.0f, 0);
    if (st == MTL_OK) st = mtl_model_add_task(m, "E", MTL_TASK_REGRESSION, 2, &t);
    if (st == MTL_OK) st = mtl_model_add_head_layer(m, t, 16, MTL_ACT_TANH, 0.0f, 0);
    if (st == MTL_OK) st = mtl_model_add_task(m, "fast", MTL_TASK_BINARY, 1, &t);
    if (st == MTL_OK) st = mtl_model_add_task(m, "path", MTL_TASK_MULTICLASS, 4, &t);
    if (st == MTL_OK) st = mtl_model_add_head_layer(m, t, 8, MTL_ACT_SIGMOID, 0.0f, MTL_LAYER_NORM);
    if (st == MTL_OK) st = mtl_model_finalize(m);
    float *x = malloc(sizeof(float) * 256 * IN), *y = malloc(sizeof(float) * 256 * 4);
    if (st == MTL_OK && x && y) {
        for (int i = 0; i < 256 * IN; i++) x[i] = 3.0f * rnd();
        for (int i = 0; i < 256; i++) {
            y[i * 4 + 0] = rnd(), y[i * 4 + 1] = 10 * rnd(), y[i * 4 + 2] = rnd() > 0, y[i * 4 + 3] = (float)(i % 4);
        }
        mtl_dataset *ds = NULL;
        st = mtl_dataset_create(&ds, NULL, 256, IN, 4, x, IN, y, 4, NULL, 0, NULL, 0);
        if (st == MTL_OK) st = mtl_model_fit_scalers(m, ds);
        mtl_dataset_destroy(ds);
    }
    free(x);
    free(y);
    if (st != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* What one call returns: predict, labels, embedding, domain; per chunk. */
typedef struct results {
    float *out, *labels, *embed;
    int64_t *domain;
} results;

typedef struct predict_job {
    const mtl_model *m; /* shared, const */
    const float *x;
    const results *ref; /* the serial run */
    int first_chunk;    /* each thread starts elsewhere: different rows at any moment */
    double until;
    long calls;
    int failed;
    char why[256];
} predict_job;

static int64_t n_chunks(void)
{
    return (ROWS + CHUNK - 1) / CHUNK;
}

/* One chunk's calls; compare with ref if given, else fill it. */
static int chunk_calls(const mtl_model *m, mtl_workspace *ws, const float *x, int64_t c, const results *ref,
                       results *scratch, char *why, size_t cap)
{
    const int64_t ow = mtl_model_output_width(m), tw = mtl_model_target_width(m), ew = mtl_model_embedding_width(m);
    const int64_t r0 = c * CHUNK, n = r0 + CHUNK <= ROWS ? CHUNK : ROWS - r0;
    const float *xc = x + r0 * IN;
    float *o = scratch->out + r0 * ow, *l = scratch->labels + r0 * tw, *e = scratch->embed + r0 * ew;
    int64_t *d = scratch->domain + r0;
    if (mtl_model_predict(m, ws, n, xc, IN, o, ow) || mtl_model_predict_labels(m, ws, n, xc, IN, l, tw) ||
        mtl_model_embed(m, ws, n, xc, IN, e, ew) || mtl_model_check_domain(m, n, xc, IN, d)) {
        snprintf(why, cap, "chunk %lld: %s", (long long)c, mtl_last_error_message());
        return 1;
    }
    if (ref && (memcmp(o, ref->out + r0 * ow, sizeof(float) * (size_t)(n * ow)) ||
                memcmp(l, ref->labels + r0 * tw, sizeof(float) * (size_t)(n * tw)) ||
                memcmp(e, ref->embed + r0 * ew, sizeof(float) * (size_t)(n * ew)) ||
                memcmp(d, ref->domain + r0, sizeof(int64_t) * (size_t)n))) {
        snprintf(why, cap, "chunk %lld (rows %lld..%lld) differs from the serial run", (long long)c,
                 (long long)r0, (long long)(r0 + n - 1));
        return 1;
    }
    return 0;
}

static int results_alloc(results *r, const mtl_model *m)
{
    r->out = malloc(sizeof(float) * ROWS * (size_t)mtl_model_output_width(m));
    r->labels = malloc(sizeof(float) * ROWS * (size_t)mtl_model_target_width(m));
    r->embed = malloc(sizeof(float) * ROWS * (size_t)mtl_model_embedding_width(m));
    r->domain = malloc(sizeof(int64_t) * ROWS);
    return !(r->out && r->labels && r->embed && r->domain);
}

static void results_free(results *r)
{
    free(r->out);
    free(r->labels);
    free(r->embed);
    free(r->domain);
}

static void *predict_thread(void *arg)
{
    predict_job *j = arg;
    mtl_workspace *ws = NULL;
    results mine;
    if (results_alloc(&mine, j->m) || mtl_workspace_create(&ws, j->m, 16)) { /* 37 rows: chunks of 16, 16, 5 */
        j->failed = 1;
        snprintf(j->why, sizeof j->why, "setup: %s", mtl_last_error_message());
        results_free(&mine);
        return NULL;
    }
    const int64_t nc = n_chunks();
    for (int64_t k = 0; !j->failed; k++) {
        int64_t c = (j->first_chunk + k) % nc;
        j->failed = chunk_calls(j->m, ws, j->x, c, j->ref, &mine, j->why, sizeof j->why);
        j->calls++;
        if (j->calls >= nc && now_seconds() > j->until) break; /* at least one whole pass */
    }
    mtl_workspace_destroy(ws);
    results_free(&mine);
    return NULL;
}

TEST(concurrent_predict_const_model)
{
    mtl_model *model = predict_model();
    ASSERT(model);
    const mtl_model *m = model;
    float *x = malloc(sizeof(float) * ROWS * IN);
    ASSERT(x);
    for (int i = 0; i < ROWS * IN; i++) x[i] = 4.0f * rnd(); /* some rows outside the domain */
    /* the serial reference: the same calls, one thread */
    results ref;
    ASSERT(results_alloc(&ref, m) == 0);
    mtl_workspace *ws = NULL;
    char why[256] = "";
    ASSERT_OK(mtl_workspace_create(&ws, m, 16));
    for (int64_t c = 0; c < n_chunks(); c++)
        if (chunk_calls(m, ws, x, c, NULL, &ref, why, sizeof why)) FAILF("serial run: %s", why);
    mtl_workspace_destroy(ws);

    pthread_t th[N_THREADS];
    predict_job jobs[N_THREADS];
    const double seconds = run_seconds(), t0 = now_seconds();
    for (int k = 0; k < N_THREADS; k++) {
        jobs[k] = (predict_job){ m, x, &ref, (int)(k * n_chunks() / N_THREADS), t0 + seconds, 0, 0, "" };
        ASSERT(pthread_create(&th[k], NULL, predict_thread, &jobs[k]) == 0);
    }
    long calls = 0;
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        if (jobs[k].failed) FAILF("thread %d: %s", k, jobs[k].why);
        ASSERT(jobs[k].calls >= n_chunks()); /* at least one whole pass each */
        calls += jobs[k].calls;
    }
    printf("  %d threads, %.1f s: %ld chunk calls (x4 entry points), %ld rows, all bitwise equal to the serial run\n",
           N_THREADS, now_seconds() - t0, calls, calls * CHUNK);
    results_free(&ref);
    free(x);
    mtl_model_destroy(model);
    return 0;
}

/* ---- two models trained at once ------------------------------------------------- */

typedef struct train_job {
    int which;
    float *params; /* out: the trained parameters */
    int64_t n_params;
    double loss;
    mtl_status st;
    char why[256];
} train_job;

/* Model `which` (0 or 1, different architectures, seeds and optimisers),
 * trained for 4 epochs with validation, early stopping and a loss
 * weighting method, then saved to a buffer and reloaded. */
static void *train_thread(void *arg)
{
    train_job *j = arg;
    mtl_context *ctx = NULL;
    mtl_model *m = NULL;
    mtl_trainer *t = NULL;
    mtl_dataset *all = NULL, *val = NULL;
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    int64_t val_rows[6] = { 2, 6, 10, 14, 18, 22 };
    mtl_status st = mtl_context_create(&ctx, NULL);
    if (st == MTL_OK) st = mtl_context_set_i64(ctx, MTL_OPT_SEED, 100 + j->which);
    if (st == MTL_OK) st = set_blis_threads(ctx);
    if (st == MTL_OK) st = sample_model(&m, ctx, 1);
    if (st == MTL_OK && j->which == 1) st = mtl_model_set_task_f64(m, 1, MTL_TASK_OPT_LOSS_WEIGHT, 3.0);
    if (st == MTL_OK) st = mtl_trainer_create(&t, m, 8);
    if (st == MTL_OK) st = mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 4);
    if (st == MTL_OK) st = mtl_trainer_set_i64(t, MTL_OPT_EARLY_STOP_PATIENCE, 3);
    if (st == MTL_OK && j->which == 0) st = mtl_trainer_set_i64(t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_UNCERTAINTY);
    if (st == MTL_OK && j->which == 1) st = mtl_trainer_set_i64(t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_PCGRAD);
    if (st == MTL_OK && j->which == 1) st = mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD);
    if (st == MTL_OK && j->which == 1) st = mtl_trainer_set_f64(t, MTL_OPT_MOMENTUM, 0.9);
    if (st == MTL_OK) st = mtl_trainer_set_i64(t, MTL_OPT_DIAGNOSTICS, 1);
    if (st == MTL_OK) st = mtl_dataset_create(&all, ctx, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x,
                                              SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY);
    if (st == MTL_OK) st = mtl_dataset_view(&val, all, 6, val_rows);
    for (int k = 0; k < 3 && st == MTL_OK; k++) { /* three fits: the later ones continue */
        if (st == MTL_OK) st = mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 4 * (k + 1));
        if (st == MTL_OK) st = mtl_trainer_fit(t, all, val, NULL, NULL);
    }
    double losses[3] = { 0 };
    if (st == MTL_OK) st = mtl_trainer_epoch_losses(t, MTL_SPLIT_VALIDATION, losses);
    j->loss = losses[0] + losses[1] + losses[2];
    /* through a checkpoint buffer and back */
    unsigned char *buf = NULL;
    size_t n = 0;
    mtl_trainer *t2 = NULL;
    mtl_model *m2 = NULL;
    if (st == MTL_OK) st = mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n);
    if (st == MTL_OK && !(buf = malloc(n))) st = MTL_ERR_OUT_OF_MEMORY;
    if (st == MTL_OK) st = mtl_trainer_save_checkpoint_buffer(t, buf, n, &n);
    if (st == MTL_OK) st = mtl_trainer_load_checkpoint_buffer(&t2, &m2, ctx, buf, n);
    if (st == MTL_OK) {
        j->n_params = mtl_model_param_count(m2);
        j->params = malloc(sizeof(float) * (size_t)j->n_params);
        st = j->params ? mtl_model_get_params(m2, j->params, j->n_params) : MTL_ERR_OUT_OF_MEMORY;
    }
    if (st != MTL_OK) snprintf(j->why, sizeof j->why, "%s", mtl_last_error_message());
    j->st = st;
    free(buf);
    mtl_trainer_destroy(t2);
    mtl_model_destroy(m2);
    mtl_dataset_destroy(val);
    mtl_dataset_destroy(all);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return NULL;
}

TEST(two_models_trained_at_once)
{
    train_job serial[2] = { { .which = 0 }, { .which = 1 } }, par[2] = { { .which = 0 }, { .which = 1 } };
    for (int k = 0; k < 2; k++) {
        train_thread(&serial[k]);
        if (serial[k].st != MTL_OK) FAILF("serial model %d: %s", k, serial[k].why);
    }
    ASSERT(serial[0].n_params == serial[1].n_params);
    ASSERT(memcmp(serial[0].params, serial[1].params, sizeof(float) * (size_t)serial[0].n_params) != 0);
    int rounds = 3;
    for (int r = 0; r < rounds; r++) {
        pthread_t th[2];
        for (int k = 0; k < 2; k++) ASSERT(pthread_create(&th[k], NULL, train_thread, &par[k]) == 0);
        for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
        for (int k = 0; k < 2; k++) {
            if (par[k].st != MTL_OK) FAILF("concurrent model %d: %s", k, par[k].why);
            ASSERT_EQ_INT(par[k].n_params, serial[k].n_params);
            if (memcmp(par[k].params, serial[k].params, sizeof(float) * (size_t)serial[k].n_params) != 0)
                FAILF("round %d: model %d trained concurrently differs from its serial run", r, k);
            ASSERT(memcmp(&par[k].loss, &serial[k].loss, sizeof(double)) == 0);
            free(par[k].params);
            par[k].params = NULL;
        }
    }
    printf("  2 models x %d rounds of 12 epochs at once: bitwise equal to serial training\n", rounds);
    for (int k = 0; k < 2; k++) free(serial[k].params);
    return 0;
}

/* ---- files and CSV from many threads -------------------------------------------- */

static char g_dir[64];

typedef struct io_job {
    int which;
    int rounds;
    int failed;
    char why[320];
} io_job;

/* Save a model to this thread's own path in a shared directory (the
 * temporary names must not collide), load it back, parse a CSV. */
static void *io_thread(void *arg)
{
    io_job *j = arg;
    char path[128], csv[4096];
    snprintf(path, sizeof path, "%s/model-%d.mtl", g_dir, j->which);
    int len = snprintf(csv, sizeof csv, "a,b,\"y, %d\"\n", j->which);
    for (int r = 0; r < 40; r++) len += snprintf(csv + len, sizeof csv - (size_t)len, "%d.25,%de-1,%d\n", r, j->which, r % 3);
    static const char *const in[] = { "b", "a" };
    char yname[16];
    snprintf(yname, sizeof yname, "y, %d", j->which);
    const char *tg[] = { yname };
    mtl_model *m = NULL;
    mtl_status st = sample_model(&m, NULL, j->which % 2);
    if (st == MTL_OK) st = mtl_model_set_metadata(m, "thread", path);
    for (int r = 0; r < j->rounds && st == MTL_OK; r++) {
        mtl_model *back = NULL;
        mtl_dataset *ds = NULL;
        st = mtl_model_save(m, path);
        if (st == MTL_OK) st = mtl_model_load(&back, NULL, path);
        const char *v = NULL;
        if (st == MTL_OK) st = mtl_model_get_metadata(back, "thread", &v);
        if (st == MTL_OK && strcmp(v, path) != 0) st = MTL_ERR_INTERNAL;
        if (st == MTL_OK) st = mtl_dataset_load_csv_buffer(&ds, NULL, csv, (size_t)len, in, 2, tg, 1, 0);
        float row[3];
        if (st == MTL_OK) st = mtl_dataset_get_inputs(ds, 7, 1, row, 2);
        if (st == MTL_OK) st = mtl_dataset_get_targets(ds, 7, 1, row + 2, 1);
        if (st == MTL_OK && (row[0] != (float)j->which * 0.1f || row[1] != 7.25f || row[2] != 1.0f))
            st = MTL_ERR_INTERNAL;
        mtl_dataset_destroy(ds);
        mtl_model_destroy(back);
    }
    if (st != MTL_OK) {
        j->failed = 1;
        snprintf(j->why, sizeof j->why, "%s (%s)", mtl_status_string(st), mtl_last_error_message());
    }
    mtl_model_destroy(m);
    return NULL;
}

TEST(files_and_csv_from_many_threads)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/mtl-rel-threads-XXXXXX");
    ASSERT(mkdtemp(g_dir));
    pthread_t th[N_THREADS];
    io_job jobs[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        jobs[k] = (io_job){ k, 25, 0, "" };
        ASSERT(pthread_create(&th[k], NULL, io_thread, &jobs[k]) == 0);
    }
    int failed = 0;
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        if (jobs[k].failed) {
            printf("  thread %d: %s\n", k, jobs[k].why);
            failed = 1;
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("  could not remove %s\n", g_dir);
    ASSERT(!failed);
    printf("  %d threads x 25 rounds of save, load and CSV parse into one directory: all consistent\n", N_THREADS);
    return 0;
}

TEST_MAIN(TEST_ENTRY(concurrent_predict_const_model), TEST_ENTRY(two_models_trained_at_once),
          TEST_ENTRY(files_and_csv_from_many_threads))
