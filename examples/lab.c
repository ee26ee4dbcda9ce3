/* lab.c -- train a multi-task model from a lab's CSV table, use it later.
 *
 *     lab train DATA.csv MODEL.mtl [--epochs N] [--seed N]
 *     lab predict MODEL.mtl NEW.csv
 *     lab info MODEL.mtl
 *
 * `train` reads the columns named in the tables below (edit them for your
 * own data), trains one regression task per target column on a shared
 * trunk, and saves the model with its metadata: units and descriptions of
 * every input and task, where the data came from, when, and how well the
 * model did on held-out rows.  `predict` is meant to run later, in another
 * process: it loads the model, reads the input columns the model asks for
 * (by the names stored in it) from a new table, prints each row's
 * predictions with task names and units, and flags rows whose conditions lie
 * outside the data the model was trained on.  `info` prints the metadata.
 *
 * The example data (examples/data/arrhenius_*.csv, written by
 * make_arrhenius_csv.py) are rate constants of three first-order steps
 * measured at different temperatures, solvents and catalyst loadings, with
 * some steps not measured in some experiments (empty cells).  Rate constants
 * span orders of magnitude, so each task learns ln k
 * (MTL_TASK_OPT_LOG_TARGET) while the table and the predictions stay in 1/s.
 * See docs/csv-and-data.md and docs/choosing-tasks.md.
 */
#include <mtl.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- what a lab edits: the columns and what they mean ------------------------------ */

typedef struct column_spec {
    const char *name;        /* the CSV header */
    const char *unit;
    const char *description;
} column_spec;

static const column_spec input_columns[] = {
    { "T_K", "K", "reactor temperature" },
    { "polarity", "E_T^N", "solvent polarity, normalised Reichardt parameter" },
    { "cat_mol_percent", "mol%", "catalyst loading" },
};
static const column_spec target_columns[] = {
    { "k_AB", "1/s", "first-order rate constant of A -> B" },
    { "k_BC", "1/s", "first-order rate constant of B -> C" },
    { "k_AD", "1/s", "first-order rate constant of the side reaction A -> D" },
};
#define N_IN ((int64_t)(sizeof input_columns / sizeof input_columns[0]))
#define N_OUT ((int64_t)(sizeof target_columns / sizeof target_columns[0]))
#define MODEL_DESCRIPTION "rate constants of A -> B, B -> C and A -> D vs temperature, solvent, catalyst"

/* ---- helpers --------------------------------------------------------------------- */

/* Report a failed call with the library's message and leave. */
static void die(mtl_status st, const char *what)
{
    fprintf(stderr, "lab: %s: %s: %s\n", what, mtl_status_string(st), mtl_last_error_message());
    exit(1);
}
#define CHECK(call, what)                      \
    do {                                       \
        mtl_status s_ = (call);                \
        if (s_ != MTL_OK) die(s_, what);       \
    } while (0)

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "lab: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *metadata_or(const mtl_model *m, const char *key, const char *fallback)
{
    const char *v;
    return mtl_model_get_metadata(m, key, &v) == MTL_OK ? v : fallback;
}

static void set_metadata(mtl_model *m, const char *key, const char *value)
{
    CHECK(mtl_model_set_metadata(m, key, value), "storing metadata");
}

/* ---- lab train ----------------------------------------------------------------- */

typedef struct train_options {
    int64_t epochs, seed;
} train_options;

/* Printed after every 25th epoch (step == -1 means "an epoch ended"). */
static int progress(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    (void)user;
    if (step != -1 || epoch % 25 != 0) return 0;
    double train[N_OUT], val[N_OUT], sum_t = 0, sum_v = 0;
    if (mtl_trainer_epoch_losses(tr, MTL_SPLIT_TRAIN, train) != MTL_OK ||
        mtl_trainer_epoch_losses(tr, MTL_SPLIT_VALIDATION, val) != MTL_OK)
        return 0;
    for (int64_t t = 0; t < N_OUT; t++) sum_t += train[t], sum_v += val[t];
    printf("  epoch %4lld  loss: training %.4f  validation %.4f  (lr %.2g)\n", (long long)epoch, sum_t,
           sum_v, mtl_trainer_learning_rate(tr));
    return 0;
}

/* Mean |ln predicted - ln measured| of each task over the labelled rows of
 * `ds`: for rate constants, the typical relative error. */
static void log_errors(const mtl_model *m, const mtl_dataset *ds, double err[N_OUT], int64_t count[N_OUT])
{
    const int64_t n = mtl_dataset_row_count(ds);
    float *x = xmalloc((size_t)n * N_IN * sizeof(float));
    float *y = xmalloc((size_t)n * N_OUT * sizeof(float));
    float *p = xmalloc((size_t)n * N_OUT * sizeof(float));
    mtl_workspace *ws = NULL;
    CHECK(mtl_dataset_get_inputs(ds, 0, n, x, N_IN), "reading the validation rows");
    CHECK(mtl_dataset_get_targets(ds, 0, n, y, N_OUT), "reading the validation rows");
    CHECK(mtl_workspace_create(&ws, m, 256), "creating a workspace");
    CHECK(mtl_model_predict(m, ws, n, x, N_IN, p, N_OUT), "predicting the validation rows");
    for (int64_t t = 0; t < N_OUT; t++) {
        err[t] = 0.0;
        count[t] = 0;
        for (int64_t r = 0; r < n; r++) {
            const float v = y[r * N_OUT + t];
            if (isnan(v)) continue; /* not measured */
            err[t] += fabs(log((double)p[r * N_OUT + t]) - log((double)v));
            count[t]++;
        }
        err[t] = count[t] ? err[t] / (double)count[t] : NAN;
    }
    mtl_workspace_destroy(ws);
    free(x);
    free(y);
    free(p);
}

static int cmd_train(const char *csv_path, const char *model_path, const train_options *o)
{
    const char *in_names[N_IN], *out_names[N_OUT];
    for (int64_t j = 0; j < N_IN; j++) in_names[j] = input_columns[j].name;
    for (int64_t t = 0; t < N_OUT; t++) out_names[t] = target_columns[t].name;

    mtl_context *ctx = NULL;
    CHECK(mtl_context_create(&ctx, NULL), "creating a context");
    CHECK(mtl_context_set_i64(ctx, MTL_OPT_SEED, o->seed), "setting the seed");

    /* An empty target cell is a missing label; an empty input cell is an
     * error naming its line (pass MTL_CSV_DROP_INCOMPLETE to skip such rows). */
    mtl_dataset *all = NULL;
    CHECK(mtl_dataset_load_csv(&all, ctx, csv_path, in_names, N_IN, out_names, N_OUT, 0), "reading the data");
    const int64_t n = mtl_dataset_row_count(all);
    if (n < 10) {
        fprintf(stderr, "lab: '%s' has only %lld rows; too few to train and validate\n", csv_path, (long long)n);
        return 1;
    }

    /* A seeded 80/20 split into training and validation rows (views share
     * the parsed arrays). */
    int64_t *perm = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    uint64_t rng = (uint64_t)o->seed;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(splitmix64(&rng) % (uint64_t)(i + 1));
        const int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    const int64_t n_val = n / 5, n_train = n - n_val;
    mtl_dataset *train = NULL, *val = NULL;
    CHECK(mtl_dataset_view(&train, all, n_train, perm), "splitting the data");
    CHECK(mtl_dataset_view(&val, all, n_val, perm + n_train), "splitting the data");
    free(perm);

    /* Labels per task: a task with few labels is still trained on all rows
     * that have one, and shares the trunk with the others. */
    {
        float *y = xmalloc((size_t)n * N_OUT * sizeof(float));
        CHECK(mtl_dataset_get_targets(all, 0, n, y, N_OUT), "reading the targets");
        printf("read %lld rows from '%s'; labels:", (long long)n, csv_path);
        for (int64_t t = 0; t < N_OUT; t++) {
            int64_t c = 0;
            for (int64_t r = 0; r < n; r++) c += !isnan(y[r * N_OUT + t]);
            printf(" %s %lld", target_columns[t].name, (long long)c);
        }
        printf("; training %lld rows, validation %lld\n", (long long)n_train, (long long)n_val);
        free(y);
    }

    /* The model: a shared trunk, one small head per rate constant, each
     * learning ln k (LOG_TARGET) on its own standardised scale. */
    mtl_model *m = NULL;
    CHECK(mtl_model_create(&m, ctx, N_IN), "creating the model");
    CHECK(mtl_model_add_trunk_layer(m, 64, MTL_ACT_TANH, 0.0f, 0), "defining the model");
    CHECK(mtl_model_add_trunk_layer(m, 64, MTL_ACT_TANH, 0.0f, 0), "defining the model");
    for (int64_t t = 0; t < N_OUT; t++) {
        int64_t task;
        CHECK(mtl_model_add_task(m, target_columns[t].name, MTL_TASK_REGRESSION, 1, &task), "adding a task");
        CHECK(mtl_model_add_head_layer(m, task, 16, MTL_ACT_TANH, 0.0f, 0), "adding a head layer");
        CHECK(mtl_model_set_task_i64(m, task, MTL_TASK_OPT_LOG_TARGET, 1), "setting LOG_TARGET");
    }
    CHECK(mtl_model_finalize(m), "finalizing the model");
    CHECK(mtl_model_fit_scalers(m, train), "fitting the scalers");

    mtl_trainer *tr = NULL;
    CHECK(mtl_trainer_create(&tr, m, 32), "creating the trainer");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW), "setting the optimiser");
    CHECK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 3e-3), "setting the learning rate");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_BATCH_SIZE, 32), "setting the batch size");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_EPOCHS, o->epochs), "setting the epochs");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_SCHEDULE, MTL_SCHEDULE_PLATEAU), "setting the schedule");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_PLATEAU_PATIENCE, 10), "setting the schedule");
    CHECK(mtl_trainer_set_f64(tr, MTL_OPT_SCHEDULE_GAMMA, 0.5), "setting the schedule");
    CHECK(mtl_trainer_set_f64(tr, MTL_OPT_MIN_LEARNING_RATE, 1e-5), "setting the schedule");
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_EARLY_STOP_PATIENCE, 40), "setting early stopping");
    CHECK(mtl_trainer_fit(tr, train, val, progress, NULL), "training");
    int64_t best_epoch = 0;
    double best_loss = 0.0;
    CHECK(mtl_trainer_best_epoch(tr, -1, &best_epoch, &best_loss), "reading the best epoch");
    printf("trained %lld epochs in %.1f s; best validation loss %.4f at epoch %lld (weights kept)\n",
           (long long)mtl_trainer_epoch(tr), mtl_trainer_elapsed_seconds(tr), best_loss, (long long)best_epoch);
    mtl_trainer_destroy(tr);

    double err[N_OUT];
    int64_t count[N_OUT];
    log_errors(m, val, err, count);

    /* Metadata: everything someone needs to use the file a year from now. */
    char buf[1024];
    for (int64_t j = 0; j < N_IN; j++) {
        CHECK(mtl_model_set_feature_name(m, j, input_columns[j].name), "naming a feature");
        snprintf(buf, sizeof buf, "input.%s.unit", input_columns[j].name);
        set_metadata(m, buf, input_columns[j].unit);
        snprintf(buf, sizeof buf, "input.%s.description", input_columns[j].name);
        set_metadata(m, buf, input_columns[j].description);
    }
    {   /* The training range of each input, for naming the culprit when
         * mtl_model_check_domain flags a row (the library only counts). */
        float *x = xmalloc((size_t)n_train * N_IN * sizeof(float));
        CHECK(mtl_dataset_get_inputs(train, 0, n_train, x, N_IN), "reading the inputs");
        for (int64_t j = 0; j < N_IN; j++) {
            float lo = x[j], hi = x[j];
            for (int64_t r = 1; r < n_train; r++) {
                lo = fminf(lo, x[r * N_IN + j]);
                hi = fmaxf(hi, x[r * N_IN + j]);
            }
            char key[256], range[128];
            snprintf(key, sizeof key, "input.%s.range", input_columns[j].name);
            snprintf(range, sizeof range, "%.9g %.9g", (double)lo, (double)hi);
            set_metadata(m, key, range);
        }
        free(x);
    }
    for (int64_t t = 0; t < N_OUT; t++) {
        CHECK(mtl_model_set_task_text(m, t, target_columns[t].unit, target_columns[t].description),
              "describing a task");
        char key[256], value[256];
        snprintf(key, sizeof key, "validation.%s", target_columns[t].name);
        snprintf(value, sizeof value, "mean |ln k error| %.4f over %lld held-out labels", err[t],
                 (long long)count[t]);
        set_metadata(m, key, value);
        printf("  %-6s validation: mean |ln error| %.4f (typical error %.1f%%) over %lld labels\n",
               target_columns[t].name, err[t], 100.0 * (exp(err[t]) - 1.0), (long long)count[t]);
    }
    set_metadata(m, "description", MODEL_DESCRIPTION);
    snprintf(buf, sizeof buf, "trained by examples/lab.c (libmtl %s) from '%s': %lld rows, %lld for "
             "training, seed %lld, %lld epochs at most", mtl_version_string(), csv_path, (long long)n,
             (long long)n_train, (long long)o->seed, (long long)o->epochs);
    set_metadata(m, "provenance", buf);
    {
        const time_t now = time(NULL);
        struct tm utc;
        gmtime_r(&now, &utc);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
        set_metadata(m, "created", buf);
    }

    CHECK(mtl_model_save(m, model_path), "saving the model");
    printf("saved '%s'\n", model_path);
    mtl_dataset_destroy(train);
    mtl_dataset_destroy(val);
    mtl_dataset_destroy(all);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

/* ---- lab predict / info ------------------------------------------------------------- */

static void print_info(const mtl_model *m, const char *path)
{
    printf("model '%s': %s\n", path, metadata_or(m, "description", "(no description)"));
    printf("  provenance: %s\n", metadata_or(m, "provenance", "(unknown)"));
    printf("  created:    %s\n", metadata_or(m, "created", "(unknown)"));
}

/* Name the inputs of row x that lie outside the recorded training range. */
static void describe_outside(const mtl_model *m, const float *x, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int64_t j = 0; j < mtl_model_input_count(m); j++) {
        const char *name = NULL, *range;
        char key[256];
        double lo, hi;
        if (mtl_model_get_feature_name(m, j, &name) != MTL_OK || !name) continue;
        snprintf(key, sizeof key, "input.%s.range", name);
        if (mtl_model_get_metadata(m, key, &range) != MTL_OK || sscanf(range, "%lf %lf", &lo, &hi) != 2)
            continue;
        if (x[j] >= lo && x[j] <= hi) continue;
        int w = snprintf(out + used, cap - used, "%s%s = %g (trained %g .. %g)", used ? ", " : "", name,
                         (double)x[j], lo, hi);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
}

static int cmd_predict(const char *model_path, const char *csv_path)
{
    /* In a long-running host this happens once, at start-up. */
    mtl_model *m = NULL;
    CHECK(mtl_model_load(&m, NULL, model_path), "loading the model");
    print_info(m, model_path);

    /* The model knows which columns it needs: read them by name. */
    const int64_t d = mtl_model_input_count(m), T = mtl_model_task_count(m), W = mtl_model_output_width(m);
    const char **names = xmalloc((size_t)d * sizeof *names);
    for (int64_t j = 0; j < d; j++) {
        CHECK(mtl_model_get_feature_name(m, j, &names[j]), "reading the feature names");
        if (!names[j]) {
            fprintf(stderr, "lab: the model does not name its input %lld; it was not saved by 'lab train'\n",
                    (long long)j);
            return 1;
        }
    }
    mtl_dataset *ds = NULL;
    CHECK(mtl_dataset_load_csv(&ds, NULL, csv_path, names, d, NULL, 0, 0), "reading the new rows");
    const int64_t n = mtl_dataset_row_count(ds);
    float *x = xmalloc((size_t)n * (size_t)d * sizeof(float));
    float *y = xmalloc((size_t)n * (size_t)W * sizeof(float));
    int64_t *outside = xmalloc((size_t)n * sizeof(int64_t));
    CHECK(mtl_dataset_get_inputs(ds, 0, n, x, d), "reading the new rows");

    mtl_workspace *ws = NULL;
    CHECK(mtl_workspace_create(&ws, m, n < 256 ? n : 256), "creating a workspace");
    CHECK(mtl_model_predict(m, ws, n, x, d, y, W), "predicting");
    CHECK(mtl_model_check_domain(m, n, x, d, outside), "checking the training domain");

    /* The table: inputs with their units, then each task with its unit. */
    char buf[512];
    printf("%lld rows from '%s':\n%4s", (long long)n, csv_path, "row");
    for (int64_t j = 0; j < d; j++) {
        char key[256];
        snprintf(key, sizeof key, "input.%s.unit", names[j]);
        snprintf(buf, sizeof buf, "%s [%s]", names[j], metadata_or(m, key, "?"));
        printf("  %14s", buf);
    }
    for (int64_t t = 0; t < T; t++) {
        const char *name, *unit, *desc;
        CHECK(mtl_model_task_name(m, t, &name), "reading a task name");
        CHECK(mtl_model_get_task_text(m, t, &unit, &desc), "reading a task unit");
        snprintf(buf, sizeof buf, "%s [%s]", name, unit && *unit ? unit : "-");
        printf("  %12s", buf);
    }
    printf("  training domain\n");
    int64_t n_outside = 0;
    for (int64_t r = 0; r < n; r++) {
        printf("%4lld", (long long)(r + 1));
        for (int64_t j = 0; j < d; j++) printf("  %14.4g", (double)x[r * d + j]);
        for (int64_t t = 0; t < T; t++) {
            int64_t col;
            CHECK(mtl_model_task_columns(m, t, NULL, &col), "reading a task column");
            printf("  %12.4e", (double)y[r * W + col]);
        }
        if (outside[r]) {
            describe_outside(m, x + r * d, buf, sizeof buf);
            printf("  OUTSIDE (%lld input%s): %s\n", (long long)outside[r], outside[r] == 1 ? "" : "s",
                   *buf ? buf : "see the model's input ranges");
            n_outside++;
        } else {
            printf("  inside\n");
        }
    }
    if (n_outside)
        printf("%lld of %lld rows lie outside the training data: their predictions are extrapolations\n",
               (long long)n_outside, (long long)n);

    mtl_workspace_destroy(ws);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    free(names);
    free(x);
    free(y);
    free(outside);
    return 0;
}

static int cmd_info(const char *model_path)
{
    mtl_model *m = NULL;
    CHECK(mtl_model_load(&m, NULL, model_path), "loading the model");
    print_info(m, model_path);
    printf("  %lld inputs, %lld tasks, %lld parameters; all metadata:\n", (long long)mtl_model_input_count(m),
           (long long)mtl_model_task_count(m), (long long)mtl_model_param_count(m));
    for (int64_t i = 0; i < mtl_model_metadata_count(m); i++) {
        const char *key, *value;
        CHECK(mtl_model_metadata_at(m, i, &key, &value), "reading metadata");
        printf("    %s: %s\n", key, value);
    }
    mtl_model_destroy(m);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lab train DATA.csv MODEL.mtl [--epochs N] [--seed N]\n"
               "       lab predict MODEL.mtl NEW.csv\n"
               "       lab info MODEL.mtl\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    mtl_blis_select_best_arch(NULL); /* process-wide; a failure only means slower kernels */

    if (!strcmp(argv[1], "train") && argc >= 4) {
        train_options o = { .epochs = 400, .seed = 1 };
        for (int i = 4; i < argc; i++) {
            if (i + 1 < argc && !strcmp(argv[i], "--epochs")) o.epochs = atoll(argv[++i]);
            else if (i + 1 < argc && !strcmp(argv[i], "--seed")) o.seed = atoll(argv[++i]);
            else {
                usage(stderr);
                return 2;
            }
        }
        if (o.epochs < 1 || o.seed < 0) {
            usage(stderr);
            return 2;
        }
        return cmd_train(argv[2], argv[3], &o);
    }
    if (!strcmp(argv[1], "predict") && argc == 4) return cmd_predict(argv[2], argv[3]);
    if (!strcmp(argv[1], "info") && argc == 3) return cmd_info(argv[2]);
    usage(stderr);
    return 2;
}
