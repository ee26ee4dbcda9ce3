/* make_golden.c -- writes the golden files of tests/test_files_golden.c.
 *
 * Run by hand, only when the file format changes ON PURPOSE (then bump the
 * format version, and keep the old golden files so the old version stays
 * readable):
 *
 *     ninja -C build && ./build/tests/make_golden tests/golden
 *
 * It writes
 *   model_v1_0.mtl          the sample model of tests/files_common.h
 *   model_v1_0.expected     inputs and the outputs a load of it predicts
 *   checkpoint_v1_0.mtlc    that model after 5 training steps, as a checkpoint
 *   checkpoint_v1_0.expected  the same for the checkpoint's model
 * Outputs are float32 bit patterns in hex: exact, and parsed without the
 * C locale. */
#include "../files_common.h"

#define CHECK(x)                                                                              \
    do {                                                                                      \
        mtl_status s_ = (x);                                                                  \
        if (s_ != MTL_OK) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, mtl_status_string(s_),      \
                    mtl_last_error_message());                                                \
            return 1;                                                                         \
        }                                                                                     \
    } while (0)

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Load `file` back and write what it predicts for the sample inputs. */
static int write_expected(const char *dir, const char *file, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mtl_model *m = NULL;
    CHECK(mtl_model_load(&m, NULL, path));
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    float out[SAMPLE_ROWS * SAMPLE_OUTPUTS], labels[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    mtl_workspace *ws = NULL;
    CHECK(mtl_workspace_create(&ws, m, SAMPLE_ROWS));
    CHECK(mtl_model_predict(m, ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, out, SAMPLE_OUTPUTS));
    CHECK(mtl_model_predict_labels(m, ws, SAMPLE_ROWS, x, SAMPLE_INPUTS, labels, SAMPLE_TARGETS));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "# libmtl golden outputs of %s, written by tests/golden/make_golden.c\n", file);
    fprintf(f, "# per row: inputs, mtl_model_predict outputs, mtl_model_predict_labels labels;\n");
    fprintf(f, "# each value a float32 bit pattern in hex\n");
    fprintf(f, "rows %d inputs %d outputs %d targets %d\n", SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_OUTPUTS,
            SAMPLE_TARGETS);
    for (int r = 0; r < SAMPLE_ROWS; r++) {
        for (int j = 0; j < SAMPLE_INPUTS; j++) fprintf(f, "%08x ", bits(x[r * SAMPLE_INPUTS + j]));
        for (int j = 0; j < SAMPLE_OUTPUTS; j++) fprintf(f, "%08x ", bits(out[r * SAMPLE_OUTPUTS + j]));
        for (int j = 0; j < SAMPLE_TARGETS; j++)
            fprintf(f, "%08x%s", bits(labels[r * SAMPLE_TARGETS + j]), j + 1 < SAMPLE_TARGETS ? " " : "\n");
    }
    fclose(f);
    mtl_workspace_destroy(ws);
    mtl_model_destroy(m);
    printf("wrote %s\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR (normally tests/golden)\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char path[1024];

    mtl_model *m = NULL;
    CHECK(sample_model(&m, NULL, 1));
    snprintf(path, sizeof path, "%s/model_v1_0.mtl", dir);
    CHECK(mtl_model_save(m, path));
    printf("wrote %s\n", path);
    if (write_expected(dir, "model_v1_0.mtl", "model_v1_0.expected")) return 1;

    /* Five steps of training, fixed batches: a checkpoint with moments,
     * counters, schedule state and non-default options. */
    mtl_trainer *t = NULL;
    CHECK(mtl_trainer_create(&t, m, 8));
    CHECK(mtl_trainer_set_i64(t, MTL_OPT_SEED, 99));
    CHECK(mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
    CHECK(mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.01));
    CHECK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE));
    CHECK(mtl_trainer_set_i64(t, MTL_OPT_WARMUP_STEPS, 10));
    CHECK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 7));
    CHECK(mtl_trainer_set_task_f64(t, 2, MTL_TASK_OPT_LR_MULTIPLIER, 2.0));
    float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
    sample_data(x, y);
    for (int s = 0; s < 5; s++)
        CHECK(mtl_trainer_step(t, 8, x + 8 * (s % 3) * SAMPLE_INPUTS, SAMPLE_INPUTS, y + 8 * (s % 3) * SAMPLE_TARGETS,
                               SAMPLE_TARGETS, NULL, 0, NULL, NULL));
    snprintf(path, sizeof path, "%s/checkpoint_v1_0.mtlc", dir);
    CHECK(mtl_trainer_save_checkpoint(t, path));
    printf("wrote %s (step %lld, learning rate %.17g)\n", path, (long long)mtl_trainer_step_count(t),
           mtl_trainer_learning_rate(t));
    if (write_expected(dir, "checkpoint_v1_0.mtlc", "checkpoint_v1_0.expected")) return 1;
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return 0;
}
