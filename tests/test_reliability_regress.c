/* test_reliability_regress.c -- direct regression tests for bugs the
 * reliability suite found (docs/testing.md lists them).  The fuzz inputs
 * that found them replay in fuzz_replay_*; these tests name the bug and
 * fail fast instead of by a timeout. */
#include "harness.h"
#include "files_common.h"

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ROC-AUC looped forever on a NaN score (mtli_auc's tie loop never moved
 * past it).  A model whose trunk overflows to infinity, normalised, gives
 * NaN probabilities; the AUC of NaN scores is NaN. */
TEST(auc_of_nan_predictions_is_nan)
{
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, 2));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 4, MTL_ACT_IDENTITY, 0.0f, MTL_LAYER_NORM));
    ASSERT_OK(mtl_model_add_task(m, "b", MTL_TASK_BINARY, 1, NULL));
    ASSERT_OK(mtl_model_finalize(m));
    int64_t n = mtl_model_param_count(m);
    float *p = malloc(sizeof(float) * (size_t)n);
    ASSERT(p);
    for (int64_t i = 0; i < n; i++) p[i] = 1e30f; /* finite, but x W overflows */
    ASSERT_OK(mtl_model_set_params(m, p, n));
    free(p);
    float x[8] = { 1e30f, 1e30f, 2e30f, 1e30f, 1e30f, 3e30f, 2e30f, 2e30f }, y[4] = { 0, 1, 0, 1 }, out[4];
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 4));
    ASSERT_OK(mtl_model_predict(m, ws, 4, x, 2, out, 1));
    ASSERT(isnan(out[0])); /* the premise: NaN scores */
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 4, 2, 1, x, 2, y, 1, NULL, 0, NULL, 0));
    double auc = 0;
    ASSERT_OK(mtl_model_evaluate(m, ws, ds, MTL_METRIC_ROC_AUC, &auc));
    ASSERT(isnan(auc));
    mtl_dataset_destroy(ds);
    mtl_workspace_destroy(ws);
    mtl_model_destroy(m);
    return 0;
}

/* A checkpoint claiming 2^52 optimiser steps loaded, then no step could be
 * taken (the weighting refuses steps >= 2^47), and counters near INT64_MAX
 * would overflow when counted on.  Loading refuses counters above 2^47 (a
 * trainer's last step is number 2^47 - 1, after which its count is 2^47)
 * with the byte offset; 2^47 - 1 loads and takes its last step. */
TEST(checkpoint_counters_bounded)
{
    mtl_model *m = NULL;
    mtl_trainer *t = NULL;
    ASSERT_OK(sample_model(&m, NULL, 1));
    ASSERT_OK(mtl_trainer_create(&t, m, 8));
    size_t n = 0;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n));
    unsigned char *buf = malloc(n);
    ASSERT(buf);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, buf, n, &n));
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    /* PROGRESS (id 18) starts with the step count */
    size_t step_at = 0;
    for (size_t pos = 24; pos + 12 <= n - 4; pos += 12 + (size_t)get64(buf + pos + 4))
        if (buf[pos] == 18 && buf[pos + 1] == 0 && buf[pos + 2] == 0 && buf[pos + 3] == 0) step_at = pos + 12;
    ASSERT(step_at > 0);
    const uint64_t counts[3] = { (uint64_t)1 << 52, ((uint64_t)1 << 47) + 1, ((uint64_t)1 << 47) - 1 };
    for (int k = 0; k < 3; k++) {
        put64(buf + step_at, counts[k]);
        uint32_t c = crc32c(buf, n - 4);
        for (int i = 0; i < 4; i++) buf[n - 4 + i] = (unsigned char)(c >> (8 * i));
        mtl_status st = mtl_trainer_load_checkpoint_buffer(&t, &m, NULL, buf, n);
        if (k < 2) {
            ASSERT_EQ_INT(st, MTL_ERR_FORMAT);
            ASSERT_MSG_HAS("step count");
            char where[32];
            snprintf(where, sizeof where, "byte %zu", step_at);
            ASSERT_MSG_HAS(where);
            continue;
        }
        ASSERT_OK(st);
        ASSERT_EQ_INT(mtl_trainer_step_count(t), ((int64_t)1 << 47) - 1);
        float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
        sample_data(x, y);
        ASSERT_OK(mtl_trainer_step(t, 4, x, SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, NULL));
        ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, /* the limit */
                      mtl_trainer_step(t, 4, x, SAMPLE_INPUTS, y, SAMPLE_TARGETS, NULL, 0, NULL, NULL));
        /* and a checkpoint of the trainer at the limit loads */
        size_t n2 = 0;
        ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &n2));
        unsigned char *b2 = malloc(n2);
        ASSERT(b2);
        ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, b2, n2, &n2));
        mtl_trainer *t2 = NULL;
        mtl_model *m2 = NULL;
        ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, NULL, b2, n2));
        ASSERT_EQ_INT(mtl_trainer_step_count(t2), (int64_t)1 << 47);
        free(b2);
        mtl_trainer_destroy(t2);
        mtl_model_destroy(m2);
        mtl_trainer_destroy(t);
        mtl_model_destroy(m);
    }
    free(buf);
    return 0;
}

TEST_MAIN(TEST_ENTRY(auc_of_nan_predictions_is_nan), TEST_ENTRY(checkpoint_counters_bounded))
