/* simulator.c -- a trained multi-task model as the rate law inside an ODE solver.
 *
 * The chemistry: a batch reactor with three first-order steps,
 *
 *     A -> B  (k1)     B -> C  (k2)     A -> D  (k3, a side reaction)
 *
 * heated along a linear temperature ramp T(t).  Each rate constant follows
 * an Arrhenius law, shifted by two made-up descriptors of the reaction
 * conditions (a solvent polarity and a catalyst loading):
 *
 *     ln k_i = ln A_i - Ea_i / (R T) + s_i * polarity + n_i * ln(cat)
 *
 * What the example does, in the order a real host would:
 *   1. offline: generate (T, 1000/T, polarity, cat) -> ln k_i training data
 *      from those laws (with 20% of the labels missing, as in real data sets
 *      where not every step is measured in every experiment), train one
 *      model with one regression task per reaction step, save it;
 *   2. host start-up: mtl_blis_select_best_arch(), load the model once (with
 *      a counting allocator hook), find each step's task by name, check the
 *      runs lie inside the training domain, create one workspace per thread;
 *   3. integrate the concentrations with fixed-step RK4 on several threads,
 *      the model predicting ln k at batch size 1 inside the rate function,
 *      and check that no allocation happened meanwhile;
 *   4. compare with the same RK4 using the exact Arrhenius rates; report
 *      the largest concentration error and the cost of one predict call;
 *   5. feed a NaN temperature (a sensor glitch): predict fails with
 *      MTL_ERR_NON_FINITE, the host logs it and falls back to the last good
 *      rate constants, and the run finishes normally.
 *
 * Why the tasks predict ln k rather than k (MTL_TASK_OPT_LOG_TARGET):
 * the solver needs k, and either choice trains on ln k.  Predicting ln k
 * directly keeps the model's outputs, its metrics and the error we report
 * in the units that matter for rates (an error of 0.01 in ln k is a 1%
 * error in k at any temperature), and lets the host take exp() in double.
 * LOG_TARGET is the convenient choice when the data hold k itself, as in
 * examples/lab.c.  See docs/choosing-tasks.md.
 *
 *   simulator [--quick] [--threads N] [--train-steps N] [--seed N]
 *             [--model FILE] [--max-error X]      (--help lists them)
 *
 * Exit status 0 only if the error is below --max-error, no allocation
 * happened during integration or the timing loop, the reloaded model
 * predicts bitwise like the trained one, a run repeated on one thread gives
 * bitwise the same trajectory, and the glitch was handled.  The test suite
 * runs --quick (3,000 training steps, bound 0.02 mol/L; measured 4.6e-3).
 * The full run (12,000 steps, bound 0.005 mol/L) measured 1.0e-3.
 */
#include <mtl.h>

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                                          \
    do {                                                                                     \
        mtl_status s_ = (call);                                                              \
        if (s_ != MTL_OK) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, mtl_status_string(s_),  \
                    mtl_last_error_message());                                               \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* ---- the chemistry ------------------------------------------------------------------ */

#define N_STEPS 3    /* reaction steps = tasks */
#define N_SPECIES 4  /* A, B, C, D */
#define N_FEATURES 4 /* T, 1000/T, polarity, catalyst loading */
#define GAS_R 8.314462618 /* J / (mol K) */

enum { SP_A, SP_B, SP_C, SP_D };

typedef struct arrhenius_law {
    const char *name;     /* task name */
    const char *reaction;
    double ln_a;          /* ln of the pre-exponential factor, ln(1/s) */
    double ea;            /* activation energy, J/mol */
    double polarity_slope; /* d ln k / d polarity */
    double cat_order;     /* d ln k / d ln(cat) */
} arrhenius_law;

static const arrhenius_law laws[N_STEPS] = {
    { "lnk_AB", "A -> B", 25.0, 85.0e3, 1.0, 1.0 },
    { "lnk_BC", "B -> C", 20.0, 75.0e3, -0.5, 0.5 },
    { "lnk_AD", "A -> D", 30.0, 105.0e3, 0.3, 0.0 },
};
static const char *const feature_names[N_FEATURES] = { "T_K", "inv_T_1000_per_K", "polarity",
                                                       "cat_mol_percent" };

/* The training-data domain: every run below stays inside it. */
#define T_LO 300.0
#define T_HI 420.0
#define POL_LO 0.0
#define POL_HI 1.0
#define CAT_LO 0.5
#define CAT_HI 5.0

static double ln_k_exact(int step, double T, double polarity, double cat)
{
    const arrhenius_law *l = &laws[step];
    return l->ln_a - l->ea / (GAS_R * T) + l->polarity_slope * polarity + l->cat_order * log(cat);
}

/* The model's input row.  1000/T is given beside T because ln k is linear
 * in it: the network then only has to learn the descriptor effects. */
static void features(double T, double polarity, double cat, float x[N_FEATURES])
{
    x[0] = (float)T;
    x[1] = (float)(1000.0 / T);
    x[2] = (float)polarity;
    x[3] = (float)cat;
}

/* One batch-reactor run: conditions, ramp, and (optionally) a window in
 * which the temperature sensor reads NaN. */
typedef struct reactor_run {
    double polarity, cat;    /* conditions */
    double T0, T1, t_end;    /* the ramp T0 -> T1 K over t_end seconds */
    double glitch_from, glitch_to; /* sensor reads NaN for t in [from, to) */
} reactor_run;

static const reactor_run runs[] = {
    { 0.50, 1.0, 330.0, 400.0, 900.0, 0, 0 },
    { 0.20, 0.8, 320.0, 410.0, 900.0, 0, 0 },
    { 0.80, 2.5, 310.0, 380.0, 900.0, 0, 0 },
    { 0.35, 4.0, 305.0, 360.0, 900.0, 0, 0 },
};
#define N_RUNS ((int)(sizeof runs / sizeof runs[0]))
/* The glitch demonstration: run 0 with a sensor failure between 300 and 310 s. */
static const reactor_run glitch_run = { 0.50, 1.0, 330.0, 400.0, 900.0, 300.0, 310.0 };

static double true_temperature(const reactor_run *r, double t)
{
    return r->T0 + (r->T1 - r->T0) * t / r->t_end;
}

static double sensor_temperature(const reactor_run *r, double t)
{
    if (t >= r->glitch_from && t < r->glitch_to) return NAN;
    return true_temperature(r, t);
}

/* ---- fixed-step RK4 ------------------------------------------------------------------ */

/* A rate function fills k[] (1/s) at time t. */
typedef void (*rate_fn)(void *user, double t, double k[N_STEPS]);

static void derivatives(const double k[N_STEPS], const double c[N_SPECIES], double dc[N_SPECIES])
{
    const double r1 = k[0] * c[SP_A], r2 = k[1] * c[SP_B], r3 = k[2] * c[SP_A];
    dc[SP_A] = -r1 - r3;
    dc[SP_B] = r1 - r2;
    dc[SP_C] = r2;
    dc[SP_D] = r3;
}

/* Integrate from c(0) = (1, 0, 0, 0) mol/L over [0, t_end] in n steps;
 * traj receives (n + 1) x N_SPECIES concentrations. */
static void rk4(rate_fn rates, void *user, double t_end, int64_t n, double *traj)
{
    const double h = t_end / (double)n;
    double c[N_SPECIES] = { 1.0, 0.0, 0.0, 0.0 };
    memcpy(traj, c, sizeof c);
    for (int64_t s = 0; s < n; s++) {
        const double t = (double)s * h;
        double k[N_STEPS], k1[N_SPECIES], k2[N_SPECIES], k3[N_SPECIES], k4[N_SPECIES], tmp[N_SPECIES];
        rates(user, t, k);
        derivatives(k, c, k1);
        rates(user, t + 0.5 * h, k); /* the same k serves both midpoint stages */
        for (int j = 0; j < N_SPECIES; j++) tmp[j] = c[j] + 0.5 * h * k1[j];
        derivatives(k, tmp, k2);
        for (int j = 0; j < N_SPECIES; j++) tmp[j] = c[j] + 0.5 * h * k2[j];
        derivatives(k, tmp, k3);
        rates(user, t + h, k);
        for (int j = 0; j < N_SPECIES; j++) tmp[j] = c[j] + h * k3[j];
        derivatives(k, tmp, k4);
        for (int j = 0; j < N_SPECIES; j++) c[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
        memcpy(traj + (s + 1) * N_SPECIES, c, sizeof c);
    }
}

/* The closed-form rate law: the reference. */
static void exact_rates(void *user, double t, double k[N_STEPS])
{
    const reactor_run *r = user;
    const double T = true_temperature(r, t);
    for (int i = 0; i < N_STEPS; i++) k[i] = exp(ln_k_exact(i, T, r->polarity, r->cat));
}

/* The surrogate: one per thread, holding that thread's workspace. */
typedef struct surrogate {
    const mtl_model *model;    /* shared, const: many threads predict from it */
    mtl_workspace *ws;         /* this thread's own scratch, created once */
    const reactor_run *run;
    int64_t col[N_STEPS];      /* output column of each step's task */
    double last_k[N_STEPS];    /* last good rate constants: the fallback */
    bool have_last;
    int64_t calls, failures;
    mtl_status first_failure;
    double first_failure_t;
} surrogate;

static void model_rates(void *user, double t, double k[N_STEPS])
{
    surrogate *s = user;
    const reactor_run *r = s->run;
    float x[N_FEATURES], ln_k[N_STEPS];
    features(sensor_temperature(r, t), r->polarity, r->cat, x);
    s->calls++;
    mtl_status st = mtl_model_predict(s->model, s->ws, 1, x, N_FEATURES, ln_k, N_STEPS);
    if (st == MTL_OK) {
        for (int i = 0; i < N_STEPS; i++) k[i] = s->last_k[i] = exp((double)ln_k[s->col[i]]);
        s->have_last = true;
        return;
    }
    /* A failed call changes nothing (ln_k untouched, model and workspace
     * usable): log the first failure of a burst and fall back to the last
     * good values.  A real host might also stop the run or alert. */
    if (s->failures++ == 0) {
        s->first_failure = st;
        s->first_failure_t = t;
        fprintf(stderr, "  [host] t = %.1f s: predict failed (%s: %s); using the last good rate constants\n",
                t, mtl_status_string(st), mtl_last_error_message());
    }
    for (int i = 0; i < N_STEPS; i++) k[i] = s->have_last ? s->last_k[i] : 0.0;
}

/* ---- a counting allocator hook ----------------------------------------------------- */

static atomic_long n_allocs;

static void *counting_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    atomic_fetch_add(&n_allocs, 1);
    void *p = NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void counting_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

/* ---- small helpers --------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64: the example's own data RNG (seeded, reproducible). */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* ---- settings ------------------------------------------------------------------ */

typedef struct config {
    bool quick;
    int threads;
    int64_t train_steps, batch, rk4_steps, timing_calls;
    int64_t seed;
    double missing;     /* fraction of training labels left out (NaN) */
    double max_error;   /* pass/fail bound on the concentration error, mol/L */
    const char *model_path;
} config;

static void usage(void)
{
    printf("usage: simulator [options]\n"
           "  --quick           small settings for the test suite (fewer training steps)\n"
           "  --threads N       integration threads, one workspace each [2]\n"
           "  --train-steps N   optimiser steps [12000; --quick 3000]\n"
           "  --rk4-steps N     RK4 steps per run [900]\n"
           "  --seed N          seed of the data and of the model [1]\n"
           "  --model FILE      where to save the model (kept) [a temporary file, removed]\n"
           "  --max-error X     fail if the concentration error exceeds X mol/L [0.005; --quick 0.02]\n");
}

static config parse_args(int argc, char **argv)
{
    config c = { .threads = 2, .train_steps = 12000, .batch = 64, .rk4_steps = 900,
                 .timing_calls = 200000, .seed = 1, .missing = 0.2, .max_error = 0.005 };
    bool steps_given = false, bound_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            usage();
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            c.quick = true;
            continue;
        } else if (!v) {
            fprintf(stderr, "unknown option or missing value: %s (try --help)\n", a);
            exit(2);
        } else if (!strcmp(a, "--threads")) c.threads = atoi(v);
        else if (!strcmp(a, "--train-steps")) c.train_steps = atoll(v), steps_given = true;
        else if (!strcmp(a, "--rk4-steps")) c.rk4_steps = atoll(v);
        else if (!strcmp(a, "--seed")) c.seed = atoll(v);
        else if (!strcmp(a, "--model")) c.model_path = v;
        else if (!strcmp(a, "--max-error")) c.max_error = atof(v), bound_given = true;
        else {
            fprintf(stderr, "unknown option: %s (try --help)\n", a);
            exit(2);
        }
        i++;
    }
    if (c.quick) {
        if (!steps_given) c.train_steps = 3000;
        if (!bound_given) c.max_error = 0.02;
        c.timing_calls = 20000;
    }
    if (c.threads < 1 || c.threads > 64 || c.train_steps < 1 || c.rk4_steps < 1 || c.seed < 0 ||
        !(c.max_error > 0.0)) {
        fprintf(stderr, "bad option value (try --help)\n");
        exit(2);
    }
    return c;
}

/* ---- 1. offline: train and save -------------------------------------------------- */

/* Fill n rows of inputs and ln k labels drawn uniformly over the domain
 * (T uniform in 1/T); each label is left out (NaN) with probability
 * `missing`. */
static void generate(uint64_t *rng, int64_t n, double missing, float *x, float *y)
{
    for (int64_t r = 0; r < n; r++) {
        const double T = 1.0 / rng_uniform(rng, 1.0 / T_HI, 1.0 / T_LO);
        const double pol = rng_uniform(rng, POL_LO, POL_HI);
        const double cat = rng_uniform(rng, CAT_LO, CAT_HI);
        features(T, pol, cat, x + r * N_FEATURES);
        for (int i = 0; i < N_STEPS; i++) {
            const bool drop = rng_uniform(rng, 0.0, 1.0) < missing;
            y[r * N_STEPS + i] = drop ? NAN : (float)ln_k_exact(i, T, pol, cat);
        }
    }
    /* Pin the domain's corners into the data so the scalers' min/max
     * (the domain check) cover the whole box the generator samples. */
    if (n >= 2) {
        features(T_LO, POL_LO, CAT_LO, x);
        features(T_HI, POL_HI, CAT_HI, x + N_FEATURES);
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < N_STEPS; i++) {
                const float *xr = x + r * N_FEATURES;
                y[r * N_STEPS + i] = (float)ln_k_exact(i, xr[0], xr[2], xr[3]);
            }
    }
}

/* Probe rows predicted by the trained model and again after reloading:
 * the two must agree bitwise. */
#define N_PROBE 8

static void train_and_save(const config *c, const char *path, float probe_x[N_PROBE * N_FEATURES],
                           float probe_y[N_PROBE * N_STEPS])
{
    mtl_context *ctx = NULL;
    CHECK(mtl_context_create(&ctx, NULL));
    CHECK(mtl_context_set_i64(ctx, MTL_OPT_SEED, c->seed));

    /* A shared trunk learns the temperature dependence all steps have in
     * common; a small head per step learns its own descriptor effects. */
    mtl_model *m = NULL;
    CHECK(mtl_model_create(&m, ctx, N_FEATURES));
    CHECK(mtl_model_add_trunk_layer(m, 64, MTL_ACT_TANH, 0.0f, 0));
    CHECK(mtl_model_add_trunk_layer(m, 64, MTL_ACT_TANH, 0.0f, 0));
    for (int i = 0; i < N_STEPS; i++) {
        int64_t t;
        CHECK(mtl_model_add_task(m, laws[i].name, MTL_TASK_REGRESSION, 1, &t));
        CHECK(mtl_model_add_head_layer(m, t, 16, MTL_ACT_TANH, 0.0f, 0));
    }
    CHECK(mtl_model_finalize(m));
    for (int i = 0; i < N_FEATURES; i++) CHECK(mtl_model_set_feature_name(m, i, feature_names[i]));
    for (int i = 0; i < N_STEPS; i++) {
        char desc[128];
        snprintf(desc, sizeof desc, "ln k of %s (first order)", laws[i].reaction);
        CHECK(mtl_model_set_task_text(m, i, "ln(1/s)", desc));
    }
    CHECK(mtl_model_set_metadata(m, "description", "batch reactor A->B->C, A->D: ln k per step"));
    CHECK(mtl_model_set_metadata(m, "provenance", "examples/simulator.c, synthetic Arrhenius data"));

    /* Scalers (and the training domain) from a large sample of the data. */
    uint64_t rng = (uint64_t)c->seed * 0x2545F4914F6CDD1Dull + 1;
    const int64_t n_fit = 4096, B = c->batch;
    float *x = xmalloc((size_t)n_fit * N_FEATURES * sizeof(float));
    float *y = xmalloc((size_t)n_fit * N_STEPS * sizeof(float));
    generate(&rng, n_fit, c->missing, x, y);
    mtl_dataset *fit_set = NULL;
    CHECK(mtl_dataset_create(&fit_set, ctx, n_fit, N_FEATURES, N_STEPS, x, N_FEATURES, y, N_STEPS,
                             NULL, 0, NULL, 0));
    CHECK(mtl_model_fit_scalers(m, fit_set));
    mtl_dataset_destroy(fit_set);

    /* The generator can draw as much data as we like, so the host loop
     * feeds a fresh batch to every step (no epochs, no overfitting) and
     * runs its own cosine learning-rate decay. */
    mtl_trainer *tr = NULL;
    CHECK(mtl_trainer_create(&tr, m, B));
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW));
    const double lr0 = 1e-2, lr_min = 1e-4;
    const double t0 = now_seconds();
    double losses[N_STEPS];
    for (int64_t s = 0; s < c->train_steps; s++) {
        const double p = (double)s / (double)c->train_steps;
        CHECK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE,
                                  lr_min + (lr0 - lr_min) * 0.5 * (1.0 + cos(3.14159265358979 * p))));
        generate(&rng, B, c->missing, x, y);
        CHECK(mtl_trainer_step(tr, B, x, N_FEATURES, y, N_STEPS, NULL, 0, NULL, losses));
    }
    const double train_s = now_seconds() - t0;
    mtl_trainer_destroy(tr);

    /* Validation on fresh, fully labelled rows, in ln k units. */
    const int64_t n_val = 2048;
    generate(&rng, n_val, 0.0, x, y);
    mtl_workspace *ws = NULL;
    CHECK(mtl_workspace_create(&ws, m, 256));
    float *pred = xmalloc((size_t)n_val * N_STEPS * sizeof(float));
    CHECK(mtl_model_predict(m, ws, n_val, x, N_FEATURES, pred, N_STEPS));
    printf("trained %lld steps of %lld rows in %.2f s (%lld parameters); validation MAE of ln k:",
           (long long)c->train_steps, (long long)B, train_s, (long long)mtl_model_param_count(m));
    for (int i = 0; i < N_STEPS; i++) {
        double mae = 0.0;
        for (int64_t r = 0; r < n_val; r++) mae += fabs((double)pred[r * N_STEPS + i] - y[r * N_STEPS + i]);
        printf(" %s %.4f", laws[i].name, mae / (double)n_val);
    }
    printf("\n");

    memcpy(probe_x, x, N_PROBE * N_FEATURES * sizeof(float));
    CHECK(mtl_model_predict(m, ws, N_PROBE, probe_x, N_FEATURES, probe_y, N_STEPS));
    CHECK(mtl_model_save(m, path));
    free(pred);
    free(x);
    free(y);
    mtl_workspace_destroy(ws);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
}

/* ---- 2. host start-up: load once, check what was loaded ------------------------------- */

static mtl_model *load_model(const char *path)
{
    mtl_allocator counting = MTL_ALLOCATOR_INIT;
    counting.alloc = counting_alloc;
    counting.free = counting_free;
    mtl_context *ctx = NULL;
    CHECK(mtl_context_create(&ctx, &counting));
    CHECK(mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, 1)); /* the host runs its own threads */
    mtl_model *model = NULL;
    CHECK(mtl_model_load(&model, ctx, path));
    mtl_context_destroy(ctx); /* handles copied its settings */

    const char *desc = "";
    CHECK(mtl_model_get_metadata(model, "description", &desc));
    printf("loaded '%s': %s; %lld tasks:", path, desc, (long long)mtl_model_task_count(model));
    for (int64_t t = 0; t < mtl_model_task_count(model); t++) {
        const char *name, *unit, *tdesc;
        CHECK(mtl_model_task_name(model, t, &name));
        CHECK(mtl_model_get_task_text(model, t, &unit, &tdesc));
        printf(" %s [%s]", name, unit);
    }
    printf("\n");
    return model;
}

/* The output column of each reaction step's task, found by name (a
 * retrained model may order its tasks differently).  Returns the number
 * of problems. */
static int check_layout(const mtl_model *model, int64_t col[N_STEPS])
{
    if (mtl_model_input_count(model) != N_FEATURES || mtl_model_output_width(model) != N_STEPS) {
        printf("the model has %lld inputs and %lld outputs; this host needs %d and %d\n",
               (long long)mtl_model_input_count(model), (long long)mtl_model_output_width(model), N_FEATURES,
               N_STEPS);
        return 1;
    }
    for (int i = 0; i < N_STEPS; i++) {
        int64_t task;
        if (mtl_model_find_task(model, laws[i].name, &task) != MTL_OK ||
            mtl_model_task_columns(model, task, NULL, &col[i]) != MTL_OK) {
            printf("the model has no usable task '%s': %s\n", laws[i].name, mtl_last_error_message());
            return 1;
        }
    }
    return 0;
}

/* The reloaded model predicts exactly what the trained one did. */
static int check_reload(const mtl_model *model, const float probe_x[N_PROBE * N_FEATURES],
                        const float probe_y[N_PROBE * N_STEPS])
{
    mtl_workspace *ws = NULL;
    float again[N_PROBE * N_STEPS];
    CHECK(mtl_workspace_create(&ws, model, N_PROBE));
    CHECK(mtl_model_predict(model, ws, N_PROBE, probe_x, N_FEATURES, again, N_STEPS));
    mtl_workspace_destroy(ws);
    const bool same = memcmp(again, probe_y, sizeof again) == 0;
    printf("reload: predictions %s the trained model's\n", same ? "bitwise equal to" : "DIFFER from");
    return same ? 0 : 1;
}

/* Every run's conditions must lie inside the training data (the ramp is
 * linear, so its two ends suffice). */
static int check_domains(const mtl_model *model)
{
    int problems = 0;
    for (int r = 0; r < N_RUNS; r++) {
        float ends[2 * N_FEATURES];
        int64_t outside[2];
        features(runs[r].T0, runs[r].polarity, runs[r].cat, ends);
        features(runs[r].T1, runs[r].polarity, runs[r].cat, ends + N_FEATURES);
        CHECK(mtl_model_check_domain(model, 2, ends, N_FEATURES, outside));
        if (outside[0] || outside[1]) {
            printf("run %d leaves the training domain: the surrogate would extrapolate\n", r);
            problems++;
        }
    }
    return problems;
}

/* ---- 3. integrate on several threads ------------------------------------------------ */

typedef struct worker {
    pthread_t thread;
    surrogate sur;       /* its workspace is created before the thread starts */
    int first_run, stride;
    int64_t rk4_steps;
    double *traj;        /* N_RUNS trajectories of (rk4_steps + 1) x N_SPECIES */
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    const size_t points = (size_t)(w->rk4_steps + 1) * N_SPECIES;
    for (int r = w->first_run; r < N_RUNS; r += w->stride) {
        w->sur.run = &runs[r];
        rk4(model_rates, &w->sur, runs[r].t_end, w->rk4_steps, w->traj + (size_t)r * points);
    }
    return NULL;
}

/* Integrate every run with the model as rate law; the allocation counter
 * must not move while the threads run.  Returns the number of problems. */
static int integrate_with_model(const config *c, worker *workers, int n_workers, double *traj)
{
    const long allocs_before = atomic_load(&n_allocs);
    const double t0 = now_seconds();
    for (int i = 0; i < n_workers; i++) {
        workers[i].first_run = i;
        workers[i].stride = n_workers;
        workers[i].rk4_steps = c->rk4_steps;
        workers[i].traj = traj;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    int64_t calls = 0, failures = 0;
    for (int i = 0; i < n_workers; i++) {
        pthread_join(workers[i].thread, NULL);
        calls += workers[i].sur.calls;
        failures += workers[i].sur.failures;
    }
    const double seconds = now_seconds() - t0;
    const long allocs = atomic_load(&n_allocs) - allocs_before;
    printf("integrated %d runs x %lld RK4 steps on %d thread%s: %lld predict calls in %.3f s, "
           "%ld allocations during integration\n",
           N_RUNS, (long long)c->rk4_steps, n_workers, n_workers == 1 ? "" : "s", (long long)calls, seconds,
           allocs);
    return (allocs != 0) + (failures != 0);
}

/* Run the last reactor again on this thread alone: with its own workspace
 * each thread gets exactly the numbers a single thread would. */
static int check_thread_independence(const config *c, surrogate *s, const double *traj_model)
{
    const size_t points = (size_t)(c->rk4_steps + 1) * N_SPECIES;
    double *again = xmalloc(points * sizeof(double));
    s->run = &runs[N_RUNS - 1];
    rk4(model_rates, s, runs[N_RUNS - 1].t_end, c->rk4_steps, again);
    const bool same = memcmp(again, traj_model + (N_RUNS - 1) * points, points * sizeof(double)) == 0;
    printf("run %d again on one thread: %s\n", N_RUNS - 1, same ? "bitwise identical" : "DIFFERENT");
    free(again);
    return same ? 0 : 1;
}

static double max_abs_diff(const double *a, const double *b, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as the maximum */
    }
    return m;
}

/* ---- 4. compare with the exact rate law; measure the cost ----------------------------- */

static int compare_with_exact(const config *c, const double *traj_model, double *traj_exact)
{
    const int64_t points = (c->rk4_steps + 1) * N_SPECIES;
    double worst = 0.0;
    for (int r = 0; r < N_RUNS; r++) {
        const double *m = traj_model + r * points;
        double *e = traj_exact + r * points;
        rk4(exact_rates, (void *)&runs[r], runs[r].t_end, c->rk4_steps, e);
        const double err = max_abs_diff(m, e, points);
        const double *end = e + c->rk4_steps * N_SPECIES;
        printf("  run %d (polarity %.2f, cat %.1f mol%%, %.0f -> %.0f K): final A %.3f B %.3f C %.3f "
               "D %.3f mol/L; max |error| %.2e mol/L\n",
               r, runs[r].polarity, runs[r].cat, runs[r].T0, runs[r].T1, end[SP_A], end[SP_B], end[SP_C],
               end[SP_D], err);
        if (!(err <= worst)) worst = err;
    }
    printf("max concentration error over all runs, species and times: %.2e mol/L (bound %.2e)\n", worst,
           c->max_error);

    /* For scale: RK4's own step error, exact rates at h against h/10 (run 0). */
    double *fine = xmalloc((size_t)(10 * c->rk4_steps + 1) * N_SPECIES * sizeof(double));
    rk4(exact_rates, (void *)&runs[0], runs[0].t_end, 10 * c->rk4_steps, fine);
    double step_err = 0.0;
    for (int64_t s = 0; s <= c->rk4_steps; s++)
        step_err = fmax(step_err, max_abs_diff(traj_exact + s * N_SPECIES, fine + 10 * s * N_SPECIES, N_SPECIES));
    printf("(RK4's own step error at h = %.2g s, run 0: %.1e mol/L)\n", runs[0].t_end / (double)c->rk4_steps,
           step_err);
    free(fine);
    return worst <= c->max_error ? 0 : 1;
}

/* The cost of one call: batch size 1, one thread, changing inputs.  Also
 * checks that neither the hook nor glibc's heap saw an allocation. */
static int time_predict(const config *c, const mtl_model *model, mtl_workspace *ws)
{
    float x[N_FEATURES], ln_k[N_STEPS];
    double sink = 0.0, ksum = 0.0;
    const long allocs0 = atomic_load(&n_allocs);
    const size_t heap0 = mallinfo2().uordblks;
    const double ts = now_seconds();
    for (int64_t i = 0; i < c->timing_calls; i++) {
        features(T_LO + (T_HI - T_LO) * (double)(i % 1000) / 1000.0, 0.5, 1.0, x);
        CHECK(mtl_model_predict(model, ws, 1, x, N_FEATURES, ln_k, N_STEPS));
        sink += ln_k[0];
    }
    const double ns = 1e9 * (now_seconds() - ts) / (double)c->timing_calls;
    const long allocs = atomic_load(&n_allocs) - allocs0;
    const bool heap_same = mallinfo2().uordblks == heap0;
    const double te = now_seconds();
    for (int64_t i = 0; i < c->timing_calls; i++) {
        double k[N_STEPS];
        exact_rates((void *)&runs[0], (double)(i % 1000), k);
        ksum += k[0];
    }
    const double ns_exact = 1e9 * (now_seconds() - te) / (double)c->timing_calls;
    printf("predict at batch 1: %.0f ns per call (%lld calls; the closed-form law: %.0f ns); "
           "allocations: %ld hook, heap %s  [checksums %.4g %.4g]\n",
           ns, (long long)c->timing_calls, ns_exact, allocs, heap_same ? "unchanged" : "CHANGED", sink, ksum);
    return allocs == 0 && heap_same ? 0 : 1;
}

/* ---- 5. a sensor glitch ----------------------------------------------------------------- */

/* NaN temperatures for 10 s: predict fails, the host logs the first
 * failure and holds the last good rate constants; the model and the
 * workspace stay usable, so the run simply continues. */
static int glitch_demo(const config *c, surrogate *s, double *traj_model, double *traj_exact)
{
    s->run = &glitch_run;
    s->calls = s->failures = 0;
    s->have_last = false;
    s->first_failure = MTL_OK;
    printf("glitch run (sensor reads NaN for %.0f <= t < %.0f s):\n", glitch_run.glitch_from, glitch_run.glitch_to);
    rk4(model_rates, s, glitch_run.t_end, c->rk4_steps, traj_model);
    rk4(exact_rates, (void *)&glitch_run, glitch_run.t_end, c->rk4_steps, traj_exact);
    const double err = max_abs_diff(traj_model, traj_exact, (c->rk4_steps + 1) * N_SPECIES);
    printf("  %lld of %lld predict calls failed with %s; the run finished, max |error| %.2e mol/L\n",
           (long long)s->failures, (long long)s->calls, mtl_status_string(s->first_failure), err);
    return s->failures > 0 && s->first_failure == MTL_ERR_NON_FINITE && err <= c->max_error ? 0 : 1;
}

static int host(const config *c, const char *path, const float probe_x[N_PROBE * N_FEATURES],
                const float probe_y[N_PROBE * N_STEPS])
{
    mtl_model *model = load_model(path);
    int64_t col[N_STEPS];
    if (check_layout(model, col) != 0) {
        mtl_model_destroy(model);
        return 1;
    }
    int failures = check_reload(model, probe_x, probe_y) + check_domains(model);

    /* One workspace per thread, batch size 1, created before the threads start. */
    const int n_workers = c->threads < N_RUNS ? c->threads : N_RUNS;
    const size_t points = (size_t)(c->rk4_steps + 1) * N_SPECIES;
    worker *workers = calloc((size_t)n_workers, sizeof *workers);
    double *traj_model = xmalloc(N_RUNS * points * sizeof(double));
    double *traj_exact = xmalloc(N_RUNS * points * sizeof(double));
    if (!workers) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int i = 0; i < n_workers; i++) {
        workers[i].sur.model = model;
        memcpy(workers[i].sur.col, col, sizeof col);
        CHECK(mtl_workspace_create(&workers[i].sur.ws, model, 1));
    }

    failures += integrate_with_model(c, workers, n_workers, traj_model);
    failures += check_thread_independence(c, &workers[0].sur, traj_model);
    failures += compare_with_exact(c, traj_model, traj_exact);
    failures += time_predict(c, model, workers[0].sur.ws);
    failures += glitch_demo(c, &workers[0].sur, traj_model, traj_exact);

    for (int i = 0; i < n_workers; i++) mtl_workspace_destroy(workers[i].sur.ws);
    free(workers);
    free(traj_model);
    free(traj_exact);
    mtl_model_destroy(model);
    return failures;
}

int main(int argc, char **argv)
{
    const config c = parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and the host's stderr log in order */

    /* Process-wide, before any thread uses BLIS. */
    const char *arch = NULL;
    if (mtl_blis_select_best_arch(&arch) != MTL_OK) fprintf(stderr, "note: %s\n", mtl_last_error_message());
    printf("libmtl %s, BLIS %s, kernels '%s'%s\n", mtl_version_string(), mtl_blis_version(),
           arch ? arch : mtl_blis_arch(), mtl_blis_is_fallback() ? " (generic fallback: slow)" : "");

    /* The model file: --model, or a temporary file removed at the end. */
    char tmp_path[4096];
    const char *path = c.model_path;
    if (!path) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp_path, sizeof tmp_path, "%s/simulator-model-XXXXXX", dir && *dir ? dir : "/tmp");
        const int fd = mkstemp(tmp_path);
        if (fd < 0) {
            perror(tmp_path);
            return 1;
        }
        close(fd);
        path = tmp_path;
    }

    float probe_x[N_PROBE * N_FEATURES], probe_y[N_PROBE * N_STEPS];
    train_and_save(&c, path, probe_x, probe_y);
    const int failures = host(&c, path, probe_x, probe_y);
    if (!c.model_path) remove(path);

    printf("%s\n", failures == 0 ? "simulator: PASS" : "simulator: FAIL");
    return failures == 0 ? 0 : 1;
}
