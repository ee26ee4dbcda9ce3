/* fuzz_checkpoint.c -- mtl_trainer_load_checkpoint_buffer on the input,
 * size field and checksum repaired.  A checkpoint that loads must: save
 * and load back to the same bytes, take a training step, and run one
 * epoch of fit with validation (the restored schedule, early-stopping and
 * loss-weighting state in use).  Its model must also load through
 * mtl_model_load_buffer (a checkpoint is a model file too). */
#include "fuzz_common.h"

/* Two rows whose targets are valid for every task type: 1.0 is a
 * positive regression value (log targets), a binary label and a class
 * index below every K >= 2. */
static mtl_dataset *fuzz_dataset(const mtl_model *m, int64_t rows, float **x, float **y)
{
    int64_t d = mtl_model_input_count(m), tw = mtl_model_target_width(m);
    *x = malloc(sizeof(float) * (size_t)(rows * d));
    *y = malloc(sizeof(float) * (size_t)(rows * tw));
    FUZZ_CHECK(*x && *y, "malloc");
    fuzz_inputs(*x, rows * d);
    for (int64_t i = 0; i < rows * tw; i++) (*y)[i] = 1.0f;
    mtl_dataset *ds = NULL;
    mtl_status st = mtl_dataset_create(&ds, fuzz_context(), rows, d, tw, *x, d, *y, tw, NULL, 0, NULL, 0);
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_OUT_OF_MEMORY, "dataset_create gave %d", (int)st);
    return ds;
}

static void round_trip(const mtl_trainer *t)
{
    size_t n1 = 0, n2 = 0;
    mtl_status st = mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n1);
    FUZZ_CHECK(st == MTL_OK, "measuring a loaded checkpoint gave %d", (int)st);
    uint8_t *a = malloc(n1), *b = malloc(n1);
    FUZZ_CHECK(a && b, "malloc");
    FUZZ_CHECK(mtl_trainer_save_checkpoint_buffer(t, a, n1, &n2) == MTL_OK && n2 == n1, "save");
    mtl_trainer *t2 = NULL;
    mtl_model *m2 = NULL;
    st = mtl_trainer_load_checkpoint_buffer(&t2, &m2, fuzz_context(), a, n1);
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_OUT_OF_MEMORY, "a saved checkpoint does not load back: %d", (int)st);
    if (st == MTL_OK) {
        FUZZ_CHECK(mtl_trainer_save_checkpoint_buffer(t2, b, n1, &n2) == MTL_OK && n2 == n1, "second save");
        FUZZ_CHECK(memcmp(a, b, n1) == 0, "save(load(save(t))) != save(t)");
        mtl_trainer_destroy(t2);
        mtl_model_destroy(m2);
    }
    free(a);
    free(b);
}

static void train(mtl_trainer *t, mtl_model *m)
{
    /* bound the work a hostile file can ask for */
    if (mtl_model_param_count(m) > 100000 || mtl_model_input_count(m) > 4096) return;
    float *x = NULL, *y = NULL;
    mtl_dataset *ds = fuzz_dataset(m, 4, &x, &y);
    if (ds) {
        int64_t d = mtl_model_input_count(m), tw = mtl_model_target_width(m);
        /* the step may only refuse what the options make impossible */
        mtl_status st = mtl_trainer_step(t, 1, x, d, y, tw, NULL, 0, NULL, NULL);
        FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_NON_FINITE || st == MTL_ERR_OUT_OF_MEMORY, "step gave %d", (int)st);
        int64_t epoch = mtl_trainer_epoch(t); /* one more epoch (the option's bounds permitting) */
        if (epoch < INT64_MAX && mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, epoch + 1) == MTL_OK &&
            mtl_trainer_set_i64(t, MTL_OPT_CALLBACK_EVERY_STEPS, 0) == MTL_OK) {
            st = mtl_trainer_fit(t, ds, ds, NULL, NULL);
            FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_NON_FINITE || st == MTL_ERR_OUT_OF_MEMORY, "fit gave %d",
                       (int)st);
        }
        mtl_dataset_destroy(ds);
    }
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf, "malloc");
    memcpy(buf, data, size);
    fuzz_repair_frame(buf, size);

    mtl_trainer *t = NULL;
    mtl_model *m = NULL;
    mtl_status st = mtl_trainer_load_checkpoint_buffer(&t, &m, fuzz_context(), buf, size);
    FUZZ_CHECK(fuzz_load_status_ok(st), "load_checkpoint gave %d", (int)st);
    FUZZ_CHECK((st == MTL_OK) == (t != NULL) && (t != NULL) == (m != NULL), "out parameters on status %d", (int)st);
    if (st == MTL_OK) {
        round_trip(t);
        train(t, m);
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
    }
    /* the model sections alone, through the model loader */
    mtl_model *only = NULL;
    st = mtl_model_load_buffer(&only, fuzz_context(), buf, size);
    FUZZ_CHECK(fuzz_load_status_ok(st), "model_load_buffer gave %d", (int)st);
    mtl_model_destroy(only);
    free(buf);
    return 0;
}
