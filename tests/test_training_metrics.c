/* test_training_metrics.c -- metrics on arrays against values computed by
 * hand (in the comments) or by an independent method (AUC by counting
 * pairs), with missing labels, masks, ties and sample weights. */
#include "harness.h"
#include "mtl_internal.h"

#define N 6

/* Tasks: 0 regression (target col 0, output col 0), 1 binary (col 1,
 * output 1), 2 multiclass K = 3 (target col 2, outputs 2..4). */
typedef struct fake {
    mtl_model m;
    mtli_task tasks[3];
    float y_mean[3], y_scale[3];
} fake;

static void fake_model(fake *f)
{
    memset(f, 0, sizeof *f);
    mtli_settings_defaults(&f->m.settings);
    f->m.finalized = true;
    f->m.n_tasks = 3;
    f->m.tasks = f->tasks;
    f->m.target_width = 3;
    f->m.output_width = 5;
    f->tasks[0] = (mtli_task){ .name = "reg", .type = MTL_TASK_REGRESSION, .loss = MTL_LOSS_MSE,
                               .n_outputs = 1, .n_targets = 1, .target_col = 0, .output_col = 0,
                               .huber_delta = 1.0 };
    f->tasks[1] = (mtli_task){ .name = "bin", .type = MTL_TASK_BINARY, .loss = MTL_LOSS_BCE,
                               .n_outputs = 1, .n_targets = 1, .target_col = 1, .output_col = 1 };
    f->tasks[2] = (mtli_task){ .name = "cls", .type = MTL_TASK_MULTICLASS,
                               .loss = MTL_LOSS_CROSS_ENTROPY, .n_outputs = 3, .n_targets = 1,
                               .target_col = 2, .output_col = 2 };
}

/* targets: reg, bin, cls */
static const float Y[N * 3] = {
    1, 1, 0,
    2, 0, 2,
    NAN, 1, 1,
    4, 0, NAN,
    NAN, NAN, 2,
    NAN, 1, 0,
};
/* predictions: reg, p(bin), p(cls = 0, 1, 2) */
static const float P[N * 5] = {
    1.5f, 0.8f, 0.7f, 0.2f, 0.1f,
    1.0f, 0.8f, 0.4f, 0.4f, 0.2f,
    100.f, 0.3f, 0.1f, 0.6f, 0.3f,
    5.0f, 0.1f, 0.3f, 0.3f, 0.4f,
    0.0f, 0.9f, 0.3f, 0.3f, 0.4f,
    0.0f, 0.8f, 0.2f, 0.5f, 0.3f,
};

static mtli_eval_arrays arrays(void)
{
    return (mtli_eval_arrays){ .n = N, .pred = P, .ldp = 5, .y = Y, .ldy = 3 };
}

TEST(regression_metrics)
{
    fake f;
    fake_model(&f);
    mtli_eval_arrays a = arrays();
    double out[3];
    /* observed rows 0, 1, 3: errors 0.5, -1, 1 */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_MAE, NULL, out));
    ASSERT_NEAR(out[0], 2.5 / 3, 1e-12, 0);
    ASSERT(isnan(out[1]) && isnan(out[2])); /* does not apply */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_RMSE, NULL, out));
    ASSERT_NEAR(out[0], sqrt(2.25 / 3), 1e-12, 0);
    /* mean y = 7/3, SST = 42/9, SSE = 2.25 */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_R2, NULL, out));
    ASSERT_NEAR(out[0], 1 - 2.25 / (42.0 / 9), 1e-12, 0);

    /* A mask hides row 0 as well: errors -1, 1. */
    uint8_t mask[N * 3];
    memset(mask, 1, sizeof mask);
    mask[0] = 0;
    a.mask = mask;
    a.ldmask = 3;
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_MAE, NULL, out));
    ASSERT_NEAR(out[0], 1.0, 1e-12, 0);
    return 0;
}

/* AUC by the definition: P(score_pos > score_neg) + 0.5 P(equal). */
static double auc_pairs(void)
{
    double num = 0, den = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            if (isnan(Y[i * 3 + 1]) || isnan(Y[j * 3 + 1])) continue;
            if (!(Y[i * 3 + 1] == 1 && Y[j * 3 + 1] == 0)) continue;
            double si = P[i * 5 + 1], sj = P[j * 5 + 1];
            num += si > sj ? 1.0 : si == sj ? 0.5 : 0.0;
            den += 1;
        }
    return num / den;
}

TEST(binary_metrics)
{
    fake f;
    fake_model(&f);
    mtli_eval_arrays a = arrays();
    double out[3];
    char scratch[N * 16];
    /* observed rows 0 1 2 3 5: labels 1 0 1 0 1, predicted 1 1 0 0 1 */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_ACCURACY, NULL, out));
    ASSERT_NEAR(out[1], 3.0 / 5, 1e-12, 0);
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_CROSS_ENTROPY, NULL, out));
    ASSERT_NEAR(out[1], -(log(0.8) + log(0.2) + log(0.3) + log(0.9) + log(0.8)) / 5, 1e-7, 0);
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_ROC_AUC, scratch, out));
    /* positives {.8, .3, .8}, negatives {.8, .1}: (0.5 + 1 + 0 + 1 + 0.5 + 1) / 6 */
    ASSERT_NEAR(out[1], 4.0 / 6, 1e-12, 0);
    ASSERT_NEAR(out[1], auc_pairs(), 1e-12, 0);
    ASSERT(isnan(out[0]) && isnan(out[2]));
    return 0;
}

TEST(auc_one_class_is_nan)
{
    fake f;
    fake_model(&f);
    float y[N * 3];
    memcpy(y, Y, sizeof y);
    for (int i = 0; i < N; i++) y[i * 3 + 1] = 1;
    mtli_eval_arrays a = arrays();
    a.y = y;
    double out[3];
    char scratch[N * 16];
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_ROC_AUC, scratch, out));
    ASSERT(isnan(out[1]));
    return 0;
}

TEST(multiclass_metrics)
{
    fake f;
    fake_model(&f);
    mtli_eval_arrays a = arrays();
    double out[3];
    /* rows 0 1 2 4 5, labels 0 2 1 2 0; argmax 0 0(first of a tie) 1 2 1 */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_ACCURACY, NULL, out));
    ASSERT_NEAR(out[2], 3.0 / 5, 1e-12, 0);
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_CROSS_ENTROPY, NULL, out));
    ASSERT_NEAR(out[2], -(log(0.7) + log(0.2) + log(0.6) + log(0.4) + log(0.2)) / 5, 1e-7, 0);

    float y[N * 3];
    memcpy(y, Y, sizeof y);
    y[5 * 3 + 2] = 3; /* not a class */
    a.y = y;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_metric_compute(&f.m, &a, MTL_METRIC_ACCURACY, NULL, out));
    ASSERT_MSG_HAS("task 'cls'");
    ASSERT_MSG_HAS("row 5");
    return 0;
}

TEST(loss_metric_scaled_and_weighted)
{
    fake f;
    fake_model(&f);
    f.y_mean[0] = 2.0f;
    f.y_scale[0] = 2.0f;
    f.y_scale[1] = f.y_scale[2] = 1.0f;
    f.m.scalers.fitted = true;
    f.m.scalers.y_mean = f.y_mean;
    f.m.scalers.y_scale = f.y_scale;
    mtli_eval_arrays a = arrays();
    double out[3];
    /* scaled errors 0.25, -0.5, 0.5: MSE = (0.0625 + 0.25 + 0.25) / 3 */
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_LOSS, NULL, out));
    ASSERT_NEAR(out[0], 0.5625 / 3, 1e-12, 0);
    ASSERT_NEAR(out[1], -(log(0.8) + log(0.2) + log(0.3) + log(0.9) + log(0.8)) / 5, 1e-7, 0);
    ASSERT_NEAR(out[2], -(log(0.7) + log(0.2) + log(0.6) + log(0.4) + log(0.2)) / 5, 1e-7, 0);
    /* weights 1 2 1 1 1 1: (0.0625 + 2 * 0.25 + 0.25) / 4 */
    const float w[N] = { 1, 2, 1, 1, 1, 1 };
    a.w = w;
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_LOSS, NULL, out));
    ASSERT_NEAR(out[0], 0.8125 / 4, 1e-12, 0);
    /* MAE and Huber (delta 0.4): |e| = .25 .5 .5 -> Huber .03125, .3*.. */
    a.w = NULL;
    f.tasks[0].loss = MTL_LOSS_MAE;
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_LOSS, NULL, out));
    ASSERT_NEAR(out[0], 1.25 / 3, 1e-12, 0);
    f.tasks[0].loss = MTL_LOSS_HUBER;
    f.tasks[0].huber_delta = 0.4;
    ASSERT_OK(mtli_metric_compute(&f.m, &a, MTL_METRIC_LOSS, NULL, out));
    /* 0.5 * 0.25^2 = 0.03125; 0.4 * (0.5 - 0.2) = 0.12 (twice) */
    ASSERT_NEAR(out[0], (0.03125 + 0.24) / 3, 1e-12, 0);
    return 0;
}

TEST(delta_m)
{
    const double multi[2] = { 3.5, 0.9 }, single[2] = { 4.0, 0.8 };
    const int hib[2] = { 0, 1 }; /* MAE lower is better, accuracy higher */
    double d = 0;
    ASSERT_OK(mtl_delta_m(2, multi, single, hib, &d));
    /* (0.5 / 4 + 0.1 / 0.8) / 2 * 100 */
    ASSERT_NEAR(d, 12.5, 1e-12, 0);
    ASSERT_OK(mtl_delta_m(2, multi, single, NULL, &d)); /* NULL: all lower-is-better */
    ASSERT_NEAR(d, (0.125 - 0.125) / 2 * 100, 1e-12, 1e-12);
    const double zero[2] = { 0, 1 };
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_delta_m(2, multi, zero, hib, &d));
    const double bad[2] = { NAN, 1 };
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_delta_m(2, bad, single, hib, &d));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_delta_m(0, multi, single, hib, &d));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_delta_m(2, multi, single, hib, NULL));
    return 0;
}

TEST(unknown_metric)
{
    fake f;
    fake_model(&f);
    mtli_eval_arrays a = arrays();
    double out[3];
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_metric_compute(&f.m, &a, (mtl_metric)99, NULL, out));
    return 0;
}

TEST_MAIN(TEST_ENTRY(regression_metrics), TEST_ENTRY(binary_metrics), TEST_ENTRY(auc_one_class_is_nan),
          TEST_ENTRY(multiclass_metrics), TEST_ENTRY(loss_metric_scaled_and_weighted),
          TEST_ENTRY(delta_m), TEST_ENTRY(unknown_metric))
