/* test_reliability_alloc.c -- allocation-failure torture (curl's torture
 * mode, SQLite's OOM simulation) through the mtl_allocator hook.
 *
 * For each scenario: run it once counting its allocations (N), then run it
 * N more times, failing allocation 0, 1, ..., N-1.  Every failing run must
 *   - return MTL_ERR_OUT_OF_MEMORY (or succeed, when the failed allocation
 *     was optional: counted and reported),
 *   - leave out parameters NULL and change nothing observable: the bytes
 *     of the model (and of the trainer's checkpoint), its predictions, a
 *     file on disk (no half-written file, no temporary file left),
 *   - leave every handle usable: the same call, retried without failures,
 *     succeeds and gives bitwise the result of a run that never failed,
 *   - leak nothing: the blocks live through the hook return to their count
 *     (LeakSanitizer checks the rest in the ASan build).
 * Model loading and CSV loading from buffers and gzip are tortured in
 * test_files.c (load_allocation_failures) and test_csv.c
 * (allocation_failures); this file covers every other scenario. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "files_common.h"

/* ---- the hook: counts calls and live blocks, fails call number fail_at ---- */

static struct {
    long calls, fail_at, live;
} g_hook = { 0, -1, 0 };

/* Allocations of g_big_size bytes, or up to 63 more (the library rounds
 * to cache lines; 0: not counted): which calls make parameter-sized
 * vectors (fit_buffers_made_by_the_first_fit). */
static size_t g_big_size;
static long g_big;

static void *hook_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (g_big_size && size >= g_big_size && size < g_big_size + 64) g_big++;
    if (g_hook.calls++ == g_hook.fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    g_hook.live++;
    return p;
}

static void hook_free(void *user, void *p)
{
    (void)user;
    g_hook.live--;
    free(p);
}

static const mtl_allocator g_allocator = { sizeof(mtl_allocator), hook_alloc, hook_free, NULL };
static mtl_context *g_ctx; /* every handle of this file allocates through the hook */
static char g_dir[64];
static long g_points, g_optional; /* totals for the report */

/* ---- helpers ---------------------------------------------------------------- */

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* A growable byte string: the "signature" of a state, compared bitwise. */
typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

static void bytes_add(bytes *b, const void *data, size_t n)
{
    unsigned char *q = realloc(b->p, b->n + n + 1);
    if (!q) abort(); /* the test's own memory, not libmtl's */
    memcpy(q + b->n, data, n);
    b->p = q;
    b->n += n;
}

static int bytes_equal(const bytes *a, const bytes *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

/* Where two signatures first differ (for the failure message). */
static size_t bytes_first_difference(const bytes *a, const bytes *b)
{
    size_t i = 0;
    while (i < a->n && i < b->n && a->p[i] == b->p[i]) i++;
    return i;
}

static void bytes_free(bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* The model file bytes and the predictions on the sample inputs. */
static void sign_model(bytes *b, const mtl_model *m)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    if (save_to_malloc(m, &buf, &n) != MTL_OK) abort();
    bytes_add(b, buf, n);
    free(buf);
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS], out[SAMPLE_ROWS * SAMPLE_OUTPUTS];
    sample_data(x, y);
    mtl_workspace *ws = NULL;
    if (mtl_workspace_create(&ws, m, 5) != MTL_OK) abort();
    if (mtl_model_predict(m, ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, SAMPLE_OUTPUTS) != MTL_OK) abort();
    mtl_workspace_destroy(ws);
    bytes_add(b, out, sizeof out);
}

/* The trainer's checkpoint bytes with the wall-clock field (PROGRESS,
 * elapsed seconds) and the checksum zeroed: everything else is state. */
static void sign_trainer(bytes *b, const mtl_trainer *t)
{
    size_t n = 0;
    if (mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n) != MTL_OK) abort();
    unsigned char *buf = malloc(n);
    if (!buf || mtl_trainer_save_checkpoint_buffer(t, buf, n, &n) != MTL_OK) abort();
    for (size_t pos = 24; pos + 12 <= n - 4;) {
        uint32_t id = 0;
        uint64_t len = 0;
        for (int i = 0; i < 4; i++) id |= (uint32_t)buf[pos + i] << (8 * i);
        for (int i = 0; i < 8; i++) len |= (uint64_t)buf[pos + 4 + i] << (8 * i);
        if (id == 18 && len >= 64) memset(buf + pos + 12 + 56, 0, 8); /* PROGRESS: elapsed seconds */
        pos += 12 + (size_t)len;
    }
    memset(buf + n - 4, 0, 4);
    bytes_add(b, buf, n);
    free(buf);
}

/* ---- the driver ----------------------------------------------------------------
 * A scenario is a list of steps run in order on a fixture; a run fails at
 * some step (the failing allocation).  After a failure the state must equal
 * the state before that step; then the failed step and the rest are
 * retried without failures and the final signature must equal the
 * reference.  Single-step scenarios are the common case. */

typedef struct fixture {
    mtl_model *m;
    mtl_trainer *t;
    mtl_dataset *train, *val;
    mtl_workspace *ws;
    mtl_context *ctx; /* made by the context scenario */
    int64_t task;
} fixture;

typedef mtl_status (*step_fn)(fixture *f);

typedef struct scenario {
    const char *name;
    int (*setup)(fixture *f);        /* pre-existing handles (no failures) */
    const step_fn *steps;            /* NULL-terminated */
    void (*sign)(bytes *b, const fixture *f); /* observable state */
    int (*check_unchanged)(const fixture *f); /* extra checks after a failure (files), may be NULL */
} scenario;

static void teardown(fixture *f)
{
    mtl_workspace_destroy(f->ws);
    mtl_trainer_destroy(f->t);
    mtl_dataset_destroy(f->val);
    mtl_dataset_destroy(f->train);
    mtl_model_destroy(f->m);
    mtl_context_destroy(f->ctx);
    memset(f, 0, sizeof *f);
}

/* Run steps from `first`; returns the index of the failed step or -1. */
static int run_steps(const scenario *sc, fixture *f, int first, mtl_status *st)
{
    for (int i = first; sc->steps[i]; i++) {
        *st = sc->steps[i](f);
        if (*st != MTL_OK) return i;
    }
    *st = MTL_OK;
    return -1;
}

static int torture(const scenario *sc)
{
    fixture f = { 0 };
    bytes ref = { 0 };
    mtl_status st;
    long live0 = g_hook.live;

    /* the reference run, counting allocations */
    if (sc->setup && sc->setup(&f)) FAILF("%s: setup failed", sc->name);
    g_hook.calls = 0;
    g_hook.fail_at = -1;
    int bad = run_steps(sc, &f, 0, &st);
    long n = g_hook.calls;
    if (bad >= 0) FAILF("%s: step %d failed without injected failures: %s", sc->name, bad, mtl_last_error_message());
    sc->sign(&ref, &f);
    teardown(&f);
    if (g_hook.live != live0) FAILF("%s: %ld blocks leaked by a successful run", sc->name, g_hook.live - live0);

    long optional = 0;
    for (long k = 0; k < n; k++) {
        if (sc->setup && sc->setup(&f)) FAILF("%s: setup failed", sc->name);
        /* run until the failing allocation, remembering the state before each step */
        bytes before = { 0 }, after = { 0 };
        g_hook.calls = 0;
        g_hook.fail_at = k;
        int failed_step = -1;
        for (int i = 0; sc->steps[i]; i++) {
            bytes_free(&before);
            long calls = g_hook.calls;
            g_hook.fail_at = -1; /* the signature itself allocates */
            sc->sign(&before, &f);
            g_hook.calls = calls;
            g_hook.fail_at = k;
            st = sc->steps[i](&f);
            if (st != MTL_OK) {
                failed_step = i;
                break;
            }
        }
        g_hook.fail_at = -1;
        if (failed_step < 0) {
            optional++; /* the failed allocation was not needed */
        } else {
            if (st != MTL_ERR_OUT_OF_MEMORY)
                FAILF("%s: allocation %ld of %ld failing: step %d returned %d (%s)", sc->name, k, n, failed_step,
                      (int)st, mtl_last_error_message());
            if (!mtl_last_error_message()[0])
                FAILF("%s: allocation %ld: no error message", sc->name, k);
            sc->sign(&after, &f);
            if (!bytes_equal(&before, &after))
                FAILF("%s: allocation %ld failing changed the state (step %d; signature byte %zu of %zu)", sc->name,
                      k, failed_step, bytes_first_difference(&before, &after), before.n);
            if (sc->check_unchanged && sc->check_unchanged(&f))
                FAILF("%s: allocation %ld failing: file check failed", sc->name, k);
            /* usable: retry the failed step and the rest, no failures */
            int again = run_steps(sc, &f, failed_step, &st);
            if (again >= 0)
                FAILF("%s: after allocation %ld failed, retrying step %d gave %d (%s)", sc->name, k, again, (int)st,
                      mtl_last_error_message());
        }
        bytes_free(&after);
        sc->sign(&after, &f);
        if (!bytes_equal(&ref, &after))
            FAILF("%s: allocation %ld failing: the final state differs from the reference (byte %zu of %zu)",
                  sc->name, k, bytes_first_difference(&ref, &after), ref.n);
        bytes_free(&before);
        bytes_free(&after);
        teardown(&f);
        if (g_hook.live != live0)
            FAILF("%s: allocation %ld failing leaked %ld blocks", sc->name, k, g_hook.live - live0);
    }
    printf("  %-22s %4ld allocations, each failed once: all MTL_ERR_OUT_OF_MEMORY%s", sc->name, n,
           optional ? "" : ", none optional\n");
    if (optional) printf(" except %ld optional (the call succeeded)\n", optional);
    g_points += n;
    g_optional += optional;
    bytes_free(&ref);
    return 0;
}

/* ---- scenario: context ---------------------------------------------------------- */

static mtl_status st_context_create(fixture *f)
{
    mtl_context *c = (mtl_context *)&g_hook; /* must come back untouched on failure */
    mtl_status st = mtl_context_create(&c, &g_allocator);
    if (st != MTL_OK) return c == (mtl_context *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->ctx = c;
    return mtl_context_set_i64(c, MTL_OPT_SEED, 7);
}

static void sign_context(bytes *b, const fixture *f)
{
    int64_t seed = -1;
    if (f->ctx && mtl_context_get_i64(f->ctx, MTL_OPT_SEED, &seed) != MTL_OK) abort();
    bytes_add(b, &seed, sizeof seed);
}

static const step_fn context_steps[] = { st_context_create, NULL };

/* ---- scenario: define, finalize and decorate a model ----------------------------- */

static mtl_status md_create(fixture *f) { return mtl_model_create(&f->m, g_ctx, SAMPLE_INPUTS); }
static mtl_status md_trunk0(fixture *f) { return mtl_model_add_trunk_layer(f->m, 8, MTL_ACT_TANH, 0.1f, MTL_LAYER_NORM); }
static mtl_status md_trunk1(fixture *f) { return mtl_model_add_trunk_layer(f->m, 6, MTL_ACT_RELU, 0.0f, 0); }
static mtl_status md_task0(fixture *f) { return mtl_model_add_task(f->m, "G_act", MTL_TASK_REGRESSION, 2, &f->task); }
static mtl_status md_head0(fixture *f) { return mtl_model_add_head_layer(f->m, 0, 4, MTL_ACT_GELU, 0.05f, 0); }
static mtl_status md_opts0(fixture *f)
{
    mtl_status st = mtl_model_set_task_i64(f->m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_HUBER);
    if (st == MTL_OK) st = mtl_model_set_task_f64(f->m, 0, MTL_TASK_OPT_LOSS_WEIGHT, 2.0);
    if (st == MTL_OK) st = mtl_model_set_task_i64(f->m, 0, MTL_TASK_OPT_LOG_TARGET, 1);
    return st;
}
static mtl_status md_task1(fixture *f) { return mtl_model_add_task(f->m, "is_fast", MTL_TASK_BINARY, 1, NULL); }
static mtl_status md_task2(fixture *f) { return mtl_model_add_task(f->m, "channel", MTL_TASK_MULTICLASS, 3, NULL); }
static mtl_status md_head2(fixture *f) { return mtl_model_add_head_layer(f->m, 2, 5, MTL_ACT_SIGMOID, 0.0f, MTL_LAYER_NORM); }
static mtl_status md_finalize(fixture *f) { return mtl_model_finalize(f->m); }
static mtl_status md_text(fixture *f) { return mtl_model_set_task_text(f->m, 0, "kJ/mol", "free-energy barrier"); }
static mtl_status md_feature(fixture *f) { return mtl_model_set_feature_name(f->m, 0, "T / K"); }
static mtl_status md_meta0(fixture *f) { return mtl_model_set_metadata(f->m, "author", "Ada"); }
static mtl_status md_meta1(fixture *f) { return mtl_model_set_metadata(f->m, "dataset", "rxn-2024"); }
static mtl_status md_meta2(fixture *f) { return mtl_model_set_metadata(f->m, "author", "Grace Hopper"); } /* replace */
static mtl_status md_scalers(fixture *f)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    mtl_dataset *ds = NULL;
    mtl_status st = mtl_dataset_create(&ds, g_ctx, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x, SAMPLE_INPUTS, y,
                                       SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY);
    if (st != MTL_OK) return st;
    st = mtl_model_fit_scalers(f->m, ds);
    mtl_dataset_destroy(ds);
    return st;
}

/* Before finalize there is no file to compare: the definition as read back. */
static void sign_definition(bytes *b, const fixture *f)
{
    if (!f->m) {
        bytes_add(b, "none", 4);
        return;
    }
    if (mtl_model_is_finalized(f->m)) {
        sign_model(b, f->m);
        return;
    }
    int64_t v[4] = { mtl_model_input_count(f->m), mtl_model_task_count(f->m), mtl_model_layer_count(f->m),
                     mtl_model_output_width(f->m) };
    bytes_add(b, v, sizeof v);
    for (int64_t t = 0; t < v[1]; t++) {
        const char *name;
        int64_t loss, log_target;
        double w;
        if (mtl_model_task_name(f->m, t, &name) || mtl_model_get_task_i64(f->m, t, MTL_TASK_OPT_LOSS, &loss) ||
            mtl_model_get_task_i64(f->m, t, MTL_TASK_OPT_LOG_TARGET, &log_target) ||
            mtl_model_get_task_f64(f->m, t, MTL_TASK_OPT_LOSS_WEIGHT, &w))
            abort();
        bytes_add(b, name, strlen(name) + 1);
        bytes_add(b, &loss, sizeof loss);
        bytes_add(b, &log_target, sizeof log_target);
        bytes_add(b, &w, sizeof w);
    }
}

static const step_fn define_steps[] = { md_create, md_trunk0, md_trunk1, md_task0, md_head0, md_opts0, md_task1,
                                        md_task2, md_head2, md_finalize, md_text, md_feature, md_meta0, md_meta1,
                                        md_meta2, md_scalers, NULL };

/* ---- fixtures with a model ----------------------------------------------------------- */

static int setup_model(fixture *f)
{
    return sample_model(&f->m, g_ctx, 1) != MTL_OK;
}

static int setup_data(fixture *f)
{
    if (setup_model(f)) return 1;
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    int64_t val_rows[6] = { 1, 5, 9, 13, 17, 21 };
    return mtl_dataset_create(&f->train, g_ctx, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x, SAMPLE_INPUTS, y,
                              SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY) != MTL_OK ||
           mtl_dataset_view(&f->val, f->train, 6, val_rows) != MTL_OK;
}

/* ---- scenario: trainer creation and options ------------------------------------------ */

static mtl_status tr_create(fixture *f)
{
    mtl_trainer *t = (mtl_trainer *)&g_hook;
    mtl_status st = mtl_trainer_create(&t, f->m, 8);
    if (st != MTL_OK) return t == (mtl_trainer *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->t = t;
    return MTL_OK;
}
static mtl_status tr_gradnorm(fixture *f) { return mtl_trainer_set_i64(f->t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_GRADNORM); }
static mtl_status tr_diag(fixture *f) { return mtl_trainer_set_i64(f->t, MTL_OPT_DIAGNOSTICS, 1); }
static mtl_status tr_affinity(fixture *f) { return mtl_trainer_set_i64(f->t, MTL_OPT_AFFINITY, 1); }
static mtl_status tr_cagrad(fixture *f) { return mtl_trainer_set_i64(f->t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_CAGRAD); }
static mtl_status tr_lr_mult(fixture *f) { return mtl_trainer_set_task_f64(f->t, 2, MTL_TASK_OPT_LR_MULTIPLIER, 0.5); }

static void sign_trainer_fx(bytes *b, const fixture *f)
{
    sign_model(b, f->m);
    if (f->t) sign_trainer(b, f->t);
}

static const step_fn trainer_steps[] = { tr_create, tr_gradnorm, tr_diag, tr_affinity, tr_cagrad, tr_lr_mult, NULL };

/* ---- scenario: fit a few epochs -------------------------------------------------------- */

static int setup_trainer(fixture *f)
{
    if (setup_data(f) || mtl_trainer_create(&f->t, f->m, 8) != MTL_OK) return 1;
    return mtl_trainer_set_i64(f->t, MTL_OPT_EPOCHS, 3) || mtl_trainer_set_i64(f->t, MTL_OPT_BATCH_SIZE, 7) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_EARLY_STOP_PATIENCE, 2) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_DWA) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_DIAGNOSTICS, 1);
}

static mtl_status fit_run(fixture *f) { return mtl_trainer_fit(f->t, f->train, f->val, NULL, NULL); }

/* A gradient-based method with the affinity lookahead, SGD with momentum
 * and a cosine schedule: the most buffers a fit can need. */
static int setup_trainer_gradnorm(fixture *f)
{
    return setup_trainer(f) || mtl_trainer_set_i64(f->t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_GRADNORM) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_AFFINITY, 1) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD) ||
           mtl_trainer_set_f64(f->t, MTL_OPT_MOMENTUM, 0.5) ||
           mtl_trainer_set_i64(f->t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE);
}

static const step_fn fit_steps[] = { fit_run, NULL };

static mtl_status step_run(fixture *f)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    return mtl_trainer_step(f->t, 8, x, SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, NULL);
}

/* ---- scenario: scalers fitted after the trainer --------------------------------------------
 * The engine keeps a scaled-input copy only when the model's scalers are
 * fitted at mtl_trainer_create; fitted later, the next step allocates it
 * (once, then kept), and must fail cleanly when it cannot. */

static int setup_unfitted_trainer(fixture *f)
{
    return sample_model(&f->m, g_ctx, 0) != MTL_OK || mtl_trainer_create(&f->t, f->m, 8) != MTL_OK;
}

static const step_fn late_scaler_steps[] = { md_scalers, step_run, step_run, NULL };

/* ---- scenario: evaluate ------------------------------------------------------------------ */

static int setup_eval(fixture *f)
{
    return setup_data(f) || mtl_workspace_create(&f->ws, f->m, 4) != MTL_OK;
}

static double g_eval[3];
static mtl_status eval_run(fixture *f)
{
    return mtl_model_evaluate(f->m, f->ws, f->train, MTL_METRIC_ROC_AUC, g_eval);
}

static void sign_eval(bytes *b, const fixture *f)
{
    sign_model(b, f->m);
    bytes_add(b, g_eval, sizeof g_eval);
}

static const step_fn eval_steps[] = { eval_run, NULL };

/* ---- scenario: workspaces ------------------------------------------------------------------ */

static mtl_status ws_create(fixture *f)
{
    mtl_workspace *ws = (mtl_workspace *)&g_hook;
    mtl_status st = mtl_workspace_create(&ws, f->m, 16);
    if (st != MTL_OK) return ws == (mtl_workspace *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->ws = ws;
    return MTL_OK;
}

/* The new workspace predicts what any other does. */
static void sign_ws(bytes *b, const fixture *f)
{
    sign_model(b, f->m);
    if (!f->ws) return;
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS], out[SAMPLE_ROWS * SAMPLE_OUTPUTS];
    sample_data(x, y);
    if (mtl_model_predict(f->m, f->ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, SAMPLE_OUTPUTS) != MTL_OK) abort();
    bytes_add(b, out, sizeof out);
}

static const step_fn ws_steps[] = { ws_create, NULL };

/* ---- scenario: data sets ------------------------------------------------------------------- */

static float g_dx[SAMPLE_ROWS * SAMPLE_INPUTS], g_dy[SAMPLE_ROWS * SAMPLE_TARGETS];
static mtl_status ds_copy(fixture *f)
{
    sample_data(g_dx, g_dy);
    mtl_dataset *ds = (mtl_dataset *)&g_hook;
    mtl_status st = mtl_dataset_create(&ds, g_ctx, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, g_dx, SAMPLE_INPUTS,
                                       g_dy, SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY);
    if (st != MTL_OK) return ds == (mtl_dataset *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->train = ds;
    return MTL_OK;
}
static mtl_status ds_view(fixture *f)
{
    mtl_dataset *v = (mtl_dataset *)&g_hook;
    mtl_status st = mtl_dataset_view(&v, f->train, 3, (const int64_t[]){ 4, 4, 0 });
    if (st != MTL_OK) return v == (mtl_dataset *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->val = v;
    return MTL_OK;
}

static void sign_datasets(bytes *b, const fixture *f)
{
    const mtl_dataset *ds[2] = { f->train, f->val };
    for (int k = 0; k < 2; k++) {
        if (!ds[k]) continue;
        int64_t n = mtl_dataset_row_count(ds[k]), d = mtl_dataset_input_count(ds[k]),
                tw = mtl_dataset_target_count(ds[k]);
        float *x = malloc(sizeof(float) * (size_t)(n * d)), *y = malloc(sizeof(float) * (size_t)(n * tw));
        if (!x || !y || mtl_dataset_get_inputs(ds[k], 0, n, x, d) != MTL_OK ||
            mtl_dataset_get_targets(ds[k], 0, n, y, tw) != MTL_OK)
            abort();
        bytes_add(b, x, sizeof(float) * (size_t)(n * d));
        bytes_add(b, y, sizeof(float) * (size_t)(n * tw));
        free(x);
        free(y);
    }
}

static const step_fn ds_steps[] = { ds_copy, ds_view, NULL };

/* ---- scenarios: saving (path and checkpoint) -------------------------------------------------- */

static bytes g_old_file; /* what the target path held before the save */

static int setup_save(fixture *f)
{
    mtl_model *other = NULL;
    if (setup_model(f) || sample_model(&other, NULL, 0) != MTL_OK) return 1;
    mtl_status st = mtl_model_save(other, tmp_path("target.mtl"));
    mtl_model_destroy(other);
    bytes_free(&g_old_file);
    size_t n = 0;
    unsigned char *old = read_all(tmp_path("target.mtl"), &n);
    if (st != MTL_OK || !old) return 1;
    bytes_add(&g_old_file, old, n);
    free(old);
    return 0;
}

static mtl_status save_run(fixture *f) { return mtl_model_save(f->m, tmp_path("target.mtl")); }

static void sign_saved(bytes *b, const fixture *f)
{
    sign_model(b, f->m);
    size_t n = 0;
    unsigned char *now = read_all(tmp_path("target.mtl"), &n);
    if (!now) abort();
    bytes_add(b, now, n);
    free(now);
}

/* No half-written file: the old bytes are intact and no temporary file is left. */
static int old_file_intact(const fixture *f)
{
    (void)f;
    size_t n = 0;
    unsigned char *now = read_all(tmp_path("target.mtl"), &n);
    ASSERT(now);
    int same = n == g_old_file.n && memcmp(now, g_old_file.p, n) == 0;
    free(now);
    ASSERT(same);
    ASSERT_EQ_INT(count_temp_files(g_dir), 0);
    return 0;
}

static const step_fn save_steps[] = { save_run, NULL };

static int setup_ckpt_save(fixture *f)
{
    if (setup_save(f) || mtl_trainer_create(&f->t, f->m, 8) != MTL_OK ||
        mtl_trainer_set_i64(f->t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_UNCERTAINTY) != MTL_OK)
        return 1;
    return step_run(f) != MTL_OK;
}

static mtl_status ckpt_save_run(fixture *f) { return mtl_trainer_save_checkpoint(f->t, tmp_path("target.mtl")); }

static const step_fn ckpt_save_steps[] = { ckpt_save_run, NULL };

/* ---- scenario: loading a checkpoint (path) ------------------------------------------------------- */

static int setup_ckpt_file(fixture *f)
{
    fixture g = { 0 };
    if (setup_ckpt_save(&g) || mtl_trainer_save_checkpoint(g.t, tmp_path("ckpt.mtlc")) != MTL_OK) return 1;
    teardown(&g);
    (void)f;
    return 0;
}

static mtl_status ckpt_load_run(fixture *f)
{
    mtl_trainer *t = (mtl_trainer *)&g_hook;
    mtl_model *m = (mtl_model *)&g_hook;
    mtl_status st = mtl_trainer_load_checkpoint(&t, &m, g_ctx, tmp_path("ckpt.mtlc"));
    if (st != MTL_OK) return t == (mtl_trainer *)&g_hook && m == (mtl_model *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->t = t;
    f->m = m;
    return MTL_OK;
}

static void sign_loaded(bytes *b, const fixture *f)
{
    if (f->m) sign_trainer_fx(b, f);
}

static const step_fn ckpt_load_steps[] = { ckpt_load_run, NULL };

/* ---- scenario: a plain CSV file (buffers and gzip: test_csv.c) --------------------------------------- */

static int setup_csv(fixture *f)
{
    (void)f;
    FILE *fp = fopen(tmp_path("data.csv"), "w");
    if (!fp) return 1;
    fputs("T,p,\"label, quoted\",y\n", fp);
    for (int r = 0; r < 300; r++) fprintf(fp, "%d.5,%d,%s,%d\n", 300 + r, r % 7, r % 3 ? "1" : "", r % 11);
    return fclose(fp) != 0;
}

static mtl_status csv_run(fixture *f)
{
    static const char *const in[] = { "y", "T" }, *const tg[] = { "label, quoted", "p" };
    mtl_dataset *ds = (mtl_dataset *)&g_hook;
    mtl_status st = mtl_dataset_load_csv(&ds, g_ctx, tmp_path("data.csv"), in, 2, tg, 2, 0);
    if (st != MTL_OK) return ds == (mtl_dataset *)&g_hook ? st : MTL_ERR_INTERNAL;
    f->train = ds;
    return MTL_OK;
}

static const step_fn csv_steps[] = { csv_run, NULL };

/* ---- tests ---------------------------------------------------------------------------------------- */

#define TORTURE(sc_name, setup_fn, steps_arr, sign_fn, check_fn)                                   \
    TEST(sc_name)                                                                                  \
    {                                                                                              \
        static const scenario sc = { #sc_name, setup_fn, steps_arr, sign_fn, check_fn };           \
        return torture(&sc);                                                                       \
    }

TORTURE(context_create, NULL, context_steps, sign_context, NULL)
TORTURE(model_define, NULL, define_steps, sign_definition, NULL)
TORTURE(trainer_create, setup_model, trainer_steps, sign_trainer_fx, NULL)
TORTURE(trainer_fit, setup_trainer, fit_steps, sign_trainer_fx, NULL)
TORTURE(scalers_after_trainer, setup_unfitted_trainer, late_scaler_steps, sign_trainer_fx, NULL)
TORTURE(trainer_fit_gradnorm, setup_trainer_gradnorm, fit_steps, sign_trainer_fx, NULL)
TORTURE(evaluate, setup_eval, eval_steps, sign_eval, NULL)
TORTURE(workspace_create, setup_model, ws_steps, sign_ws, NULL)
TORTURE(dataset_copy_view, NULL, ds_steps, sign_datasets, NULL)
TORTURE(model_save, setup_save, save_steps, sign_saved, old_file_intact)
TORTURE(checkpoint_save, setup_ckpt_save, ckpt_save_steps, sign_saved, old_file_intact)
TORTURE(checkpoint_load, setup_ckpt_file, ckpt_load_steps, sign_loaded, NULL)
TORTURE(csv_file, setup_csv, csv_steps, sign_datasets, NULL)

/* Promised to allocate nothing (mtl.h): predict, predict_labels, embed and
 * training steps, from the first step on, whatever the options (the
 * buffers of diagnostics, affinity and gradient-based weighting are made
 * when those options are set: trainer_create above tortures that). */
static int no_allocations(fixture *f, int steps)
{
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS], out[SAMPLE_ROWS * SAMPLE_OUTPUTS];
    sample_data(x, y);
    g_hook.calls = 0;
    g_hook.fail_at = 0; /* any allocation would fail the call */
    for (int k = 0; k < 3; k++) {
        ASSERT_OK(mtl_model_predict(f->m, f->ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, SAMPLE_OUTPUTS));
        ASSERT_OK(mtl_model_predict_labels(f->m, f->ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, SAMPLE_TARGETS));
        ASSERT_OK(mtl_model_embed(f->m, f->ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, mtl_model_embedding_width(f->m)));
        if (!steps) continue;
        ASSERT_OK(mtl_trainer_step(f->t, 8, x, SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, NULL));
        ASSERT_OK(mtl_trainer_compute_gradients(f->t, 8, x, SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, NULL));
    }
    g_hook.fail_at = -1;
    ASSERT_EQ_INT(g_hook.calls, 0);
    return 0;
}

TEST(hot_paths_allocate_nothing)
{
    fixture f = { 0 };
    ASSERT(setup_data(&f) == 0);
    ASSERT_OK(mtl_trainer_create(&f.t, f.m, 8));
    ASSERT_OK(mtl_workspace_create(&f.ws, f.m, 5));
    int r = no_allocations(&f, 1); /* default options, from the first step */
    teardown(&f);
    if (r) return r;
    ASSERT(setup_trainer_gradnorm(&f) == 0);
    ASSERT_OK(mtl_trainer_set_i64(f.t, MTL_OPT_WEIGHTING, MTL_WEIGHTING_PCGRAD));
    ASSERT_OK(mtl_workspace_create(&f.ws, f.m, 5));
    r = no_allocations(&f, 1);
    teardown(&f);
    return r;
}

/* Scalers fitted after mtl_trainer_create: the first step makes the
 * engine's scaled-input copy (one allocation), later steps none, and the
 * training is bitwise that of a trainer created after the fit. */
TEST(scaled_inputs_made_by_the_first_step_after_late_scalers)
{
    fixture a = { 0 }, b = { 0 };
    ASSERT_OK(sample_model(&a.m, g_ctx, 1));
    ASSERT_OK(mtl_trainer_create(&a.t, a.m, 8));
    ASSERT(setup_unfitted_trainer(&b) == 0);
    ASSERT_OK(md_scalers(&b));
    for (int k = 0; k < 3; k++) {
        g_hook.calls = 0;
        ASSERT_OK(step_run(&a));
        ASSERT_EQ_INT(g_hook.calls, 0);
        ASSERT_OK(step_run(&b));
        ASSERT_EQ_INT(g_hook.calls, k == 0 ? 1 : 0);
    }
    bytes sa = { 0 }, sb = { 0 };
    sign_trainer_fx(&sa, &a);
    sign_trainer_fx(&sb, &b);
    const int same = bytes_equal(&sa, &sb);
    bytes_free(&sa);
    bytes_free(&sb);
    teardown(&a);
    teardown(&b);
    ASSERT(same);
    return 0;
}

/* The fit-only buffers (best and epoch-start weights: two parameter
 * copies, and the gathered batch) are made by the first fit, not by
 * mtl_trainer_create or the steps, and kept: a second fit copies no
 * parameters.  A checkpoint saved before any fit loads, and one holding
 * best weights loads them (the loader makes the copy). */
TEST(fit_buffers_made_by_the_first_fit)
{
    fixture f = { 0 };
    ASSERT(setup_data(&f) == 0);
    const int64_t P = mtl_model_param_count(f.m);
    g_big_size = (size_t)P * sizeof(float);
    g_big = 0;
    ASSERT_OK(mtl_trainer_create(&f.t, f.m, 8));
    const long at_create = g_big;
    ASSERT(at_create >= 3); /* gradients and Adam's two moments, at least */
    ASSERT(step_run(&f) == MTL_OK);
    ASSERT_EQ_INT(g_big, at_create); /* steps make no copy either */
    ASSERT_OK(mtl_trainer_set_i64(f.t, MTL_OPT_EPOCHS, 2));
    ASSERT_OK(mtl_trainer_set_i64(f.t, MTL_OPT_EARLY_STOP_PATIENCE, 1));

    /* a checkpoint of a trainer that never fitted: saves and loads */
    size_t n = 0;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(f.t, NULL, 0, &n));
    unsigned char *buf = malloc(n);
    ASSERT(buf != NULL);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(f.t, buf, n, &n));
    mtl_trainer *t2 = NULL;
    mtl_model *m2 = NULL;
    g_big = 0;
    ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, g_ctx, buf, n));
    const long at_load_unfitted = g_big; /* model, trainer and the loader's own scratch: no best copy */
    mtl_trainer_destroy(t2);
    mtl_model_destroy(m2);
    free(buf);

    g_big = 0;
    ASSERT_OK(mtl_trainer_fit(f.t, f.train, f.val, NULL, NULL));
    ASSERT_EQ_INT(g_big, 2); /* best and epoch-start weights */
    g_big = 0;
    ASSERT_OK(mtl_trainer_fit(f.t, f.train, f.val, NULL, NULL));
    ASSERT_EQ_INT(g_big, 0); /* kept from the first fit */
    int64_t best = 0;
    ASSERT_OK(mtl_trainer_best_epoch(f.t, -1, &best, NULL));
    ASSERT(best > 0);

    /* a checkpoint holding best weights: the loader makes the copy, and a
     * fit of the loaded trainer then makes only the epoch-start copy */
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(f.t, NULL, 0, &n));
    buf = malloc(n);
    ASSERT(buf != NULL);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(f.t, buf, n, &n));
    g_big = 0;
    ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, g_ctx, buf, n));
    ASSERT_EQ_INT(g_big, at_load_unfitted + 1);
    size_t n2 = 0;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t2, NULL, 0, &n2));
    ASSERT_EQ_INT((long)n2, (long)n); /* the best weights made it through */
    ASSERT_OK(mtl_trainer_set_i64(t2, MTL_OPT_EPOCHS, 3));
    g_big = 0;
    ASSERT_OK(mtl_trainer_fit(t2, f.train, f.val, NULL, NULL));
    ASSERT_EQ_INT(g_big, 1);
    g_big_size = 0;
    mtl_trainer_destroy(t2);
    mtl_model_destroy(m2);
    free(buf);
    teardown(&f);
    return 0;
}

TEST(summary)
{
    printf("  %ld allocation points tortured in this file (%ld optional)\n", g_points, g_optional);
    return 0;
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/mtl-rel-alloc-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (mtl_context_create(&g_ctx, &g_allocator) != MTL_OK) return 1;
    static const test_case tests[] = {
        TEST_ENTRY(context_create), TEST_ENTRY(model_define), TEST_ENTRY(trainer_create),
        TEST_ENTRY(trainer_fit), TEST_ENTRY(trainer_fit_gradnorm), TEST_ENTRY(scalers_after_trainer),
        TEST_ENTRY(scaled_inputs_made_by_the_first_step_after_late_scalers),
        TEST_ENTRY(fit_buffers_made_by_the_first_fit), TEST_ENTRY(evaluate),
        TEST_ENTRY(workspace_create), TEST_ENTRY(dataset_copy_view), TEST_ENTRY(model_save),
        TEST_ENTRY(checkpoint_save), TEST_ENTRY(checkpoint_load), TEST_ENTRY(csv_file),
        TEST_ENTRY(hot_paths_allocate_nothing), TEST_ENTRY(summary),
    };
    int r = test_main(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
    mtl_context_destroy(g_ctx);
    bytes_free(&g_old_file);
    if (g_hook.live != 0) {
        printf("%ld blocks still live at exit\n", g_hook.live);
        r = 1;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return r;
}
