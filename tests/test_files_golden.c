/* test_files_golden.c -- files committed under tests/golden/ (written by
 * tests/golden/make_golden.c with format 1.0) must keep loading, predict
 * what they predicted then, and -- while the library still writes format
 * 1.0 -- save back to the very same bytes.  This catches accidental format
 * changes on either side. */
#include "harness.h"
#include "files_common.h"

static char *golden_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    const char *root = getenv("MTL_SOURCE_ROOT");
    snprintf(buf[k], sizeof buf[k], "%s/tests/golden/%s", root ? root : ".", name);
    return buf[k];
}

typedef struct expected {
    int rows, inputs, outputs, targets;
    float *x, *out, *labels;
} expected;

static float from_bits(unsigned long u)
{
    uint32_t b = (uint32_t)u;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Parse a .expected file: hex words, so strtoul (no locale involved). */
static int read_expected(const char *path, expected *e)
{
    FILE *f = fopen(path, "r");
    if (!f) FAILF("cannot open %s", path);
    char line[4096];
    memset(e, 0, sizeof *e);
    int row = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (strncmp(line, "rows", 4) == 0) {
            if (sscanf(line, "rows %d inputs %d outputs %d targets %d", &e->rows, &e->inputs, &e->outputs,
                       &e->targets) != 4)
                break;
            e->x = calloc((size_t)(e->rows * e->inputs), 4);
            e->out = calloc((size_t)(e->rows * e->outputs), 4);
            e->labels = calloc((size_t)(e->rows * e->targets), 4);
            continue;
        }
        if (!e->x || row >= e->rows) break;
        char *p = line;
        for (int j = 0; j < e->inputs + e->outputs + e->targets; j++) {
            char *end;
            unsigned long u = strtoul(p, &end, 16);
            if (end == p) {
                fclose(f);
                FAILF("%s: row %d is short", path, row);
            }
            p = end;
            float v = from_bits(u);
            if (j < e->inputs)
                e->x[row * e->inputs + j] = v;
            else if (j < e->inputs + e->outputs)
                e->out[row * e->outputs + j - e->inputs] = v;
            else
                e->labels[row * e->targets + j - e->inputs - e->outputs] = v;
        }
        row++;
    }
    fclose(f);
    if (!e->x || row != e->rows) FAILF("%s: malformed (%d of %d rows)", path, row, e->rows);
    return 0;
}

static void free_expected(expected *e)
{
    free(e->x);
    free(e->out);
    free(e->labels);
}

/* Predictions of m against the stored ones.  BLIS kernels differ between
 * CPUs (and sum in a different order), so this allows float rounding; on
 * the machine that wrote the files they agree bitwise. */
static int check_predictions(const mtl_model *m, const expected *e)
{
    ASSERT_EQ_INT(mtl_model_input_count(m), e->inputs);
    ASSERT_EQ_INT(mtl_model_output_width(m), e->outputs);
    ASSERT_EQ_INT(mtl_model_target_width(m), e->targets);
    float *out = malloc(sizeof(float) * (size_t)(e->rows * e->outputs));
    float *labels = malloc(sizeof(float) * (size_t)(e->rows * e->targets));
    mtl_workspace *ws = NULL;
    ASSERT(out && labels);
    ASSERT_OK(mtl_workspace_create(&ws, m, e->rows));
    ASSERT_OK(mtl_model_predict(m, ws, e->rows, e->x, e->inputs, out, e->outputs));
    ASSERT_OK(mtl_model_predict_labels(m, ws, e->rows, e->x, e->inputs, labels, e->targets));
    mtl_workspace_destroy(ws);
    double worst = 0;
    for (int i = 0; i < e->rows * e->outputs; i++) {
        ASSERT_NEAR(out[i], e->out[i], 1e-5, 1e-6);
        double d = fabs((double)out[i] - (double)e->out[i]);
        if (d > worst) worst = d;
    }
    /* labels: regression columns within rounding, class labels exactly
     * (unless a probability sits on a tie, which these data avoid) */
    for (int i = 0; i < e->rows * e->targets; i++) ASSERT_NEAR(labels[i], e->labels[i], 1e-5, 1e-6);
    printf("  %d rows: largest output difference %.3g%s\n", e->rows, worst,
           worst == 0 ? " (bitwise equal)" : "");
    free(out);
    free(labels);
    return 0;
}

/* If this library writes the golden file's format version, it must write
 * exactly the golden bytes. */
static int check_same_bytes(const unsigned char *golden, size_t golden_size, const unsigned char *now,
                            size_t now_size, const char *what)
{
    if (memcmp(golden + 8, now + 8, 4) != 0) {
        printf("  %s: this library writes another format version; byte comparison skipped\n", what);
        return 0;
    }
    ASSERT_EQ_INT(now_size, golden_size);
    for (size_t i = 0; i < now_size; i++)
        if (now[i] != golden[i])
            FAILF("%s: re-saved byte %zu is 0x%02x, golden 0x%02x: the format changed (bump the version and "
                  "regenerate with tests/golden/make_golden.c only if that was intended)",
                  what, i, now[i], golden[i]);
    return 0;
}

TEST(golden_model)
{
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_load(&m, NULL, golden_path("model_v1_0.mtl")));
    /* what the generator put in */
    const char *s;
    ASSERT_EQ_INT(mtl_model_task_count(m), 3);
    ASSERT_OK(mtl_model_task_name(m, 2, &s));
    ASSERT(strcmp(s, "channel") == 0);
    ASSERT_OK(mtl_model_get_metadata(m, "dataset", &s));
    ASSERT(strcmp(s, "rxn-2024 (v3)") == 0);
    ASSERT_OK(mtl_model_get_feature_name(m, 1, &s));
    ASSERT(strcmp(s, "p / bar") == 0);
    const char *unit, *desc;
    ASSERT_OK(mtl_model_get_task_text(m, 0, &unit, &desc));
    ASSERT(strcmp(unit, "kJ/mol") == 0 && strncmp(desc, "free-energy barrier, \xc3\xa9", 23) == 0);
    double hd;
    ASSERT_OK(mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, &hd));
    ASSERT(hd == 0.5);
    int64_t logt;
    ASSERT_OK(mtl_model_get_task_i64(m, 0, MTL_TASK_OPT_LOG_TARGET, &logt));
    ASSERT_EQ_INT(logt, 1);

    expected e;
    if (read_expected(golden_path("model_v1_0.expected"), &e)) return 1;
    int r = check_predictions(m, &e);
    free_expected(&e);
    if (r) return r;

    size_t gsize = 0, nsize = 0;
    unsigned char *golden = read_all(golden_path("model_v1_0.mtl"), &gsize), *now = NULL;
    ASSERT(golden);
    ASSERT_OK(save_to_malloc(m, &now, &nsize));
    r = check_same_bytes(golden, gsize, now, nsize, "model_v1_0.mtl");
    free(golden);
    free(now);
    mtl_model_destroy(m);
    return r;
}

TEST(golden_checkpoint)
{
    mtl_trainer *t = NULL;
    mtl_model *m = NULL;
    ASSERT_OK(mtl_trainer_load_checkpoint(&t, &m, NULL, golden_path("checkpoint_v1_0.mtlc")));
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 5);
    int64_t v;
    double d;
    ASSERT_OK(mtl_trainer_get_i64(t, MTL_OPT_SEED, &v));
    ASSERT_EQ_INT(v, 99);
    ASSERT_OK(mtl_trainer_get_i64(t, MTL_OPT_OPTIMIZER, &v));
    ASSERT_EQ_INT(v, MTL_OPTIMIZER_ADAM);
    ASSERT_OK(mtl_trainer_get_i64(t, MTL_OPT_EPOCHS, &v));
    ASSERT_EQ_INT(v, 7);
    ASSERT_OK(mtl_trainer_get_i64(t, MTL_OPT_WARMUP_STEPS, &v));
    ASSERT_EQ_INT(v, 10);
    ASSERT_OK(mtl_trainer_get_task_f64(t, 2, MTL_TASK_OPT_LR_MULTIPLIER, &d));
    ASSERT(d == 2.0);
    /* warm-up: the next (6th) step uses 0.01 * 6 / 10 */
    ASSERT_NEAR(mtl_trainer_learning_rate(t), 0.006, 1e-12, 0);

    expected e;
    if (read_expected(golden_path("checkpoint_v1_0.expected"), &e)) return 1;
    int r = check_predictions(m, &e);
    free_expected(&e);
    if (r) return r;

    size_t gsize = 0, nsize = 0;
    unsigned char *golden = read_all(golden_path("checkpoint_v1_0.mtlc"), &gsize);
    ASSERT(golden);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &nsize));
    unsigned char *now = malloc(nsize);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, now, nsize, &nsize));
    r = check_same_bytes(golden, gsize, now, nsize, "checkpoint_v1_0.mtlc");
    free(golden);
    free(now);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return r;
}

TEST_MAIN(TEST_ENTRY(golden_model), TEST_ENTRY(golden_checkpoint))
