/* mtl_pyhelper.c -- the C side of the Python interoperability tests.
 *
 *   mtl_pyhelper predict MODEL X.f32 N MAX_BATCH OUT.f32
 *       load MODEL, predict the N rows of X (raw float32, N x n_inputs) with
 *       a workspace of MAX_BATCH rows, write N x output_width raw float32.
 *   mtl_pyhelper train X.f32 Y.f32 N D MODEL_OUT PRED_OUT.f32
 *       build the reference model below on D inputs, train it on (X, Y)
 *       (Y: N x 2, NaN = no label), save it, and write its predictions on X
 *       (workspace of N rows).  tests/python/test_interop.py builds the same
 *       model through the Python binding and expects identical bytes.
 *
 * Any failure prints the libmtl message and exits 1. */
#include <mtl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        mtl_status s_ = (call);                                                       \
        if (s_ != MTL_OK) {                                                           \
            fprintf(stderr, "%s: %s: %s\n", #call, mtl_status_string(s_),             \
                    mtl_last_error_message());                                        \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static float *read_floats(const char *path, size_t count)
{
    float *buf = malloc(count * sizeof *buf + 1);
    FILE *f = fopen(path, "rb");
    if (!buf || !f || fread(buf, sizeof *buf, count, f) != count) {
        fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
        exit(1);
    }
    fclose(f);
    return buf;
}

static void write_floats(const char *path, const float *buf, size_t count)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, sizeof *buf, count, f) != count || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void predict_to_file(const mtl_model *m, int64_t n, const float *x, int64_t max_batch,
                            const char *out_path)
{
    int64_t d = mtl_model_input_count(m), w = mtl_model_output_width(m);
    float *out = malloc((size_t)(n * w) * sizeof *out + 1);
    mtl_workspace *ws = NULL;
    if (!out) exit(1);
    CHECK(mtl_workspace_create(&ws, m, max_batch));
    CHECK(mtl_model_predict(m, ws, n, x, d, out, w));
    write_floats(out_path, out, (size_t)(n * w));
    mtl_workspace_destroy(ws);
    free(out);
}

static int cmd_predict(char **argv)
{
    int64_t n = atoll(argv[3]), max_batch = atoll(argv[4]);
    mtl_model *m = NULL;
    CHECK(mtl_model_load(&m, NULL, argv[1]));
    float *x = read_floats(argv[2], (size_t)(n * mtl_model_input_count(m)));
    predict_to_file(m, n, x, max_batch, argv[5]);
    free(x);
    mtl_model_destroy(m);
    return 0;
}

/* The reference model and training run; keep in step with
 * reference_training() in test_interop.py. */
static int cmd_train(char **argv)
{
    int64_t n = atoll(argv[3]), d = atoll(argv[4]);
    float *x = read_floats(argv[1], (size_t)(n * d));
    float *y = read_floats(argv[2], (size_t)(n * 2));

    mtl_context *ctx = NULL;
    CHECK(mtl_context_create(&ctx, NULL));
    CHECK(mtl_context_set_i64(ctx, MTL_OPT_SEED, 1234));
    mtl_model *m = NULL;
    int64_t ta, tb;
    CHECK(mtl_model_create(&m, ctx, d));
    CHECK(mtl_model_add_trunk_layer(m, 16, MTL_ACT_TANH, 0.0f, 0));
    CHECK(mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &ta));
    CHECK(mtl_model_add_head_layer(m, ta, 8, MTL_ACT_RELU, 0.0f, 0));
    CHECK(mtl_model_add_task(m, "b", MTL_TASK_REGRESSION, 1, &tb));
    CHECK(mtl_model_set_task_f64(m, tb, MTL_TASK_OPT_LOSS_WEIGHT, 0.5));
    CHECK(mtl_model_finalize(m));
    CHECK(mtl_model_set_metadata(m, "made_by", "mtl_pyhelper"));

    mtl_dataset *train = NULL;
    CHECK(mtl_dataset_create(&train, ctx, n, d, 2, x, d, y, 2, NULL, 0, NULL, 0));
    CHECK(mtl_model_fit_scalers(m, train));

    mtl_trainer *tr = NULL;
    CHECK(mtl_trainer_create(&tr, m, 16));
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
    CHECK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 0.01));
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_BATCH_SIZE, 16));
    CHECK(mtl_trainer_set_i64(tr, MTL_OPT_EPOCHS, 5));
    CHECK(mtl_trainer_fit(tr, train, NULL, NULL, NULL));
    CHECK(mtl_model_save(m, argv[5]));
    predict_to_file(m, n, x, n, argv[6]);

    mtl_trainer_destroy(tr);
    mtl_dataset_destroy(train);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    free(x);
    free(y);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "predict") == 0) return cmd_predict(argv + 1);
    if (argc == 8 && strcmp(argv[1], "train") == 0) return cmd_train(argv + 1);
    fprintf(stderr, "usage: mtl_pyhelper predict MODEL X.f32 N MAX_BATCH OUT.f32\n"
                    "       mtl_pyhelper train X.f32 Y.f32 N D MODEL_OUT PRED_OUT.f32\n");
    return 2;
}
