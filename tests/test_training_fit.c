/* test_training_fit.c -- the fit loop and evaluation through the public API:
 * early stopping restores the best weights, seeded shuffling, the progress
 * callback, non-finite losses, scalers seen through predict, evaluate on
 * a model with known weights, and per-task learning-rate multipliers. */
#include "harness.h"

#include <stdint.h>

#define D 6 /* inputs */

/* Deterministic pseudo-random numbers for the synthetic data (LCG). */
static uint64_t lcg_state;
static double urand(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) * (1.0 / 9007199254740992.0);
}

/* Two regression targets of the same inputs, with noise; one column of
 * inputs is constant (zero variance).  Some labels of target 1 missing. */
typedef struct synth {
    int64_t n;
    float *x, *y;
} synth;

static void make_synth(synth *s, int64_t n, uint64_t seed, double noise)
{
    lcg_state = seed;
    s->n = n;
    s->x = malloc((size_t)n * D * sizeof(float));
    s->y = malloc((size_t)n * 2 * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        float *x = s->x + i * D;
        for (int j = 0; j < D; j++) x[j] = (float)(2 * urand() - 1);
        x[D - 1] = 3.0f; /* constant column */
        double a = sin(2 * x[0]) + x[1] * x[2], b = x[0] - 0.5 * x[3] * x[3] + 0.3 * x[4];
        s->y[i * 2 + 0] = (float)(100 + 20 * (a + noise * (2 * urand() - 1)));
        s->y[i * 2 + 1] = (i % 5 == 3) ? NAN : (float)(-5 + 0.1 * (b + noise * (2 * urand() - 1)));
    }
}

static void free_synth(synth *s)
{
    free(s->x);
    free(s->y);
}

static mtl_model *make_model(int64_t seed, int64_t hidden, float dropout)
{
    mtl_context *ctx = NULL;
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return NULL;
    mtl_context_set_i64(ctx, MTL_OPT_SEED, seed);
    mtl_model *m = NULL;
    mtl_status s = mtl_model_create(&m, ctx, D);
    mtl_context_destroy(ctx);
    if (s != MTL_OK) return NULL;
    int64_t t;
    if (mtl_model_add_trunk_layer(m, hidden, MTL_ACT_TANH, dropout, 0) != MTL_OK ||
        mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t) != MTL_OK ||
        mtl_model_add_head_layer(m, t, 8, MTL_ACT_RELU, 0.0f, 0) != MTL_OK ||
        mtl_model_add_task(m, "b", MTL_TASK_REGRESSION, 1, &t) != MTL_OK ||
        mtl_model_finalize(m) != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

static float *params_of(const mtl_model *m)
{
    int64_t n = mtl_model_param_count(m);
    float *p = malloc((size_t)n * sizeof(float));
    if (p && mtl_model_get_params(m, p, n) != MTL_OK) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- early stopping ---------------------------------------------------------- */

typedef struct history {
    int64_t epochs;
    double val[64][2];
    double weighted[64];
} history;

static int record(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    history *h = user;
    if (step != -1 || epoch > 64) return 0;
    double v[2];
    if (mtl_trainer_epoch_losses(tr, MTL_SPLIT_VALIDATION, v) != MTL_OK) return 1;
    h->val[epoch - 1][0] = v[0];
    h->val[epoch - 1][1] = v[1];
    h->weighted[epoch - 1] = v[0] + v[1]; /* loss weights 1 */
    h->epochs = epoch;
    return 0;
}

TEST(early_stopping_restores_best)
{
    synth tr, va;
    make_synth(&tr, 48, 1, 0.5); /* few noisy rows, a big learning rate: overfits fast */
    make_synth(&va, 40, 2, 0.5);
    mtl_model *m = make_model(7, 32, 0.0f);
    ASSERT(m);
    mtl_dataset *dtr = NULL, *dva = NULL;
    ASSERT_OK(mtl_dataset_create(&dtr, NULL, tr.n, D, 2, tr.x, D, tr.y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_dataset_create(&dva, NULL, va.n, D, 2, va.x, D, va.y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_model_fit_scalers(m, dtr));
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 16));
    ASSERT_OK(mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 0.02));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 60));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EARLY_STOP_PATIENCE, 5));
    history h = { 0 };
    ASSERT_OK(mtl_trainer_fit(t, dtr, dva, record, &h));

    /* Independent truth: the epoch with the lowest recorded weighted loss. */
    int64_t best = 1;
    for (int64_t e = 2; e <= h.epochs; e++)
        if (h.weighted[e - 1] < h.weighted[best - 1]) best = e;
    int64_t got_epoch;
    double got_loss;
    ASSERT_OK(mtl_trainer_best_epoch(t, -1, &got_epoch, &got_loss));
    ASSERT_EQ_INT(got_epoch, best);
    ASSERT_EQ_INT(mtl_trainer_epoch(t), h.epochs);
    ASSERT(h.epochs < 60);                  /* it did stop early ... */
    ASSERT_EQ_INT(h.epochs, best + 5);      /* ... patience epochs after the best */
    ASSERT(got_loss == h.weighted[best - 1]);

    /* The model now holds the best epoch's weights: its validation loss is the best one. */
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 8));
    double loss[2];
    ASSERT_OK(mtl_model_evaluate(m, ws, dva, MTL_METRIC_LOSS, loss));
    ASSERT_NEAR(loss[0] + loss[1], h.weighted[best - 1], 1e-12, 0);

    /* Per-task best epochs: each task's own minimum. */
    for (int64_t k = 0; k < 2; k++) {
        int64_t bk = 1;
        for (int64_t e = 2; e <= h.epochs; e++)
            if (h.val[e - 1][k] < h.val[bk - 1][k]) bk = e;
        ASSERT_OK(mtl_trainer_best_epoch(t, k, &got_epoch, &got_loss));
        ASSERT_EQ_INT(got_epoch, bk);
        ASSERT(got_loss == h.val[bk - 1][k]);
    }
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_best_epoch(t, 2, &got_epoch, NULL));

    mtl_workspace_destroy(ws);
    mtl_trainer_destroy(t);
    mtl_dataset_destroy(dtr);
    mtl_dataset_destroy(dva);
    mtl_model_destroy(m);
    free_synth(&tr);
    free_synth(&va);
    return 0;
}

/* ---- seeded shuffling ---------------------------------------------------------- */

/* Fit a fresh model (same initial weights) with trainer seed `seed`. */
static float *fit_params(const synth *s, int64_t seed, float dropout)
{
    mtl_model *m = make_model(3, 16, dropout);
    if (!m) return NULL;
    mtl_dataset *ds = NULL;
    mtl_trainer *t = NULL;
    float *p = NULL;
    if (mtl_dataset_create(&ds, NULL, s->n, D, 2, s->x, D, s->y, 2, NULL, 0, NULL, 0) == MTL_OK &&
        mtl_model_fit_scalers(m, ds) == MTL_OK && mtl_trainer_create(&t, m, 8) == MTL_OK &&
        mtl_trainer_set_i64(t, MTL_OPT_SEED, seed) == MTL_OK &&
        mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 8) == MTL_OK &&
        mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 4) == MTL_OK &&
        mtl_trainer_fit(t, ds, NULL, NULL, NULL) == MTL_OK)
        p = params_of(m);
    mtl_trainer_destroy(t);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    return p;
}

TEST(seeded_shuffling)
{
    synth s;
    make_synth(&s, 50, 5, 0.1);
    mtl_model *m = make_model(3, 16, 0.0f);
    ASSERT(m);
    const size_t bytes = (size_t)mtl_model_param_count(m) * sizeof(float);
    mtl_model_destroy(m);
    /* No dropout: the seed only changes the order of the rows. */
    float *a = fit_params(&s, 11, 0.0f), *b = fit_params(&s, 11, 0.0f), *c = fit_params(&s, 12, 0.0f);
    ASSERT(a && b && c);
    ASSERT(memcmp(a, b, bytes) == 0);
    ASSERT(memcmp(a, c, bytes) != 0);
    free(a);
    free(b);
    free(c);
    /* With dropout too. */
    a = fit_params(&s, 11, 0.2f);
    b = fit_params(&s, 11, 0.2f);
    ASSERT(a && b);
    ASSERT(memcmp(a, b, bytes) == 0);
    free(a);
    free(b);
    free_synth(&s);
    return 0;
}

/* ---- the callback -------------------------------------------------------------------- */

typedef struct calls {
    int epoch_calls, step_calls;
    int64_t stop_at_epoch;
    int64_t last_step;
    double last_elapsed;
    int bad;
} calls;

static int count_calls(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    calls *c = user;
    if (mtl_trainer_elapsed_seconds(tr) < c->last_elapsed) c->bad = 1;
    c->last_elapsed = mtl_trainer_elapsed_seconds(tr);
    if (step >= 0) {
        c->step_calls++;
        if (step != mtl_trainer_step_count(tr) || step % 3 != 0 || step <= c->last_step) c->bad = 2;
        c->last_step = step;
        return 0;
    }
    c->epoch_calls++;
    if (epoch != mtl_trainer_epoch(tr)) c->bad = 3;
    double tr_loss[2], mae[2];
    if (mtl_trainer_epoch_losses(tr, MTL_SPLIT_TRAIN, tr_loss) != MTL_OK || !isfinite(tr_loss[0]) ||
        !isfinite(tr_loss[1]))
        c->bad = 4;
    /* Training-set metrics are computed on request inside the callback. */
    if (mtl_trainer_epoch_metric(tr, MTL_SPLIT_TRAIN, MTL_METRIC_MAE, mae) != MTL_OK || !(mae[0] > 0))
        c->bad = 5;
    if (mtl_trainer_epoch_metric(tr, MTL_SPLIT_VALIDATION, MTL_METRIC_MAE, mae) != MTL_ERR_STATE)
        c->bad = 6; /* no validation set */
    return epoch == c->stop_at_epoch;
}

TEST(callback_stops_training)
{
    synth s;
    make_synth(&s, 40, 9, 0.1);
    mtl_model *m = make_model(1, 8, 0.0f);
    ASSERT(m);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, s.n, D, 2, s.x, D, s.y, 2, NULL, 0, NULL, 0));
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 10));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 10)); /* 4 steps per epoch */
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 50));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_CALLBACK_EVERY_STEPS, 3));
    calls c = { .stop_at_epoch = 3, .last_step = 0 };
    ASSERT_OK(mtl_trainer_fit(t, ds, NULL, count_calls, &c));
    ASSERT_EQ_INT(c.bad, 0);
    ASSERT_EQ_INT(c.epoch_calls, 3);
    ASSERT_EQ_INT(mtl_trainer_epoch(t), 3);
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 12);
    ASSERT_EQ_INT(c.step_calls, 4); /* steps 3, 6, 9, 12 */
    ASSERT(mtl_trainer_elapsed_seconds(t) > 0);

    /* Epoch counters continue across fit calls: MTL_OPT_EPOCHS is the total. */
    c.stop_at_epoch = -1;
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 5));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_CALLBACK_EVERY_STEPS, 0));
    ASSERT_OK(mtl_trainer_fit(t, ds, NULL, count_calls, &c));
    ASSERT_EQ_INT(mtl_trainer_epoch(t), 5);
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 20);
    ASSERT_EQ_INT(c.epoch_calls, 5);
    /* After fit, training-set metrics are no longer available; losses are. */
    double v[2];
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_epoch_metric(t, MTL_SPLIT_TRAIN, MTL_METRIC_MAE, v));
    ASSERT_OK(mtl_trainer_epoch_metric(t, MTL_SPLIT_TRAIN, MTL_METRIC_LOSS, v));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_best_epoch(t, -1, NULL, NULL)); /* no validation */

    mtl_trainer_destroy(t);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    free_synth(&s);
    return 0;
}

/* ---- a non-finite loss ----------------------------------------------------------------- */

typedef struct snapshot {
    const mtl_model *m;
    float *p;
} snapshot;

static int save_params(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    (void)tr;
    (void)epoch;
    (void)step;
    snapshot *s = user;
    return mtl_model_get_params(s->m, s->p, mtl_model_param_count(s->m)) != MTL_OK;
}

TEST(exploding_learning_rate)
{
    synth s;
    make_synth(&s, 64, 4, 0.1);
    for (int64_t i = 0; i < s.n; i++) s.y[i * 2] *= 1e4f; /* large targets, no scalers */
    mtl_model *m = make_model(2, 16, 0.0f);
    ASSERT(m);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, s.n, D, 2, s.x, D, s.y, 2, NULL, 0, NULL, 0));
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 8));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
    ASSERT_OK(mtl_trainer_set_f64(t, MTL_OPT_LEARNING_RATE, 10.0));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 8));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 100));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_CALLBACK_EVERY_STEPS, 1));
    const int64_t np = mtl_model_param_count(m);
    snapshot snap = { m, malloc((size_t)np * sizeof(float)) };
    ASSERT(snap.p);
    ASSERT_OK(mtl_model_get_params(m, snap.p, np));
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_fit(t, ds, NULL, save_params, &snap));
    ASSERT_MSG_HAS("epoch ");
    ASSERT_MSG_HAS("task 'a'");
    /* The weights are those after the last good step, all finite. */
    float *now = params_of(m);
    ASSERT(now);
    for (int64_t i = 0; i < np; i++) ASSERT(isfinite(now[i]));
    ASSERT(memcmp(now, snap.p, (size_t)np * sizeof(float)) == 0);
    /* The message names the epoch in which it happened. */
    char want[32];
    snprintf(want, sizeof want, "epoch %lld:", (long long)mtl_trainer_epoch(t) + 1);
    ASSERT_MSG_HAS(want);
    free(now);
    free(snap.p);
    mtl_trainer_destroy(t);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    free_synth(&s);
    return 0;
}

/* ---- scalers seen through predict, evaluate with known weights ---------------------------- */

/* A model with no trunk and linear single-output heads is y' = w.x' + b in
 * scaled units.  Choosing w, b from the fitted scalers so that the network
 * is exactly y = 1000 + 50 x0 (task a) and y = exp(0.5 x1) (task b, log
 * target) checks that predict maps scaled outputs back to original units. */
TEST(scalers_round_trip_through_predict)
{
    enum { N = 32 };
    float x[N * D], y[N * 2];
    lcg_state = 77;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(4 * urand() - 2);
        x[i * D + 5] = -1.0f; /* zero variance */
        y[i * 2 + 0] = 1000.0f + 50.0f * x[i * D];
        y[i * 2 + 1] = expf(0.5f * x[i * D + 1]);
    }
    y[3 * 2 + 0] = NAN; /* a missing label */
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, D));
    int64_t ta, tb;
    ASSERT_OK(mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &ta));
    ASSERT_OK(mtl_model_add_task(m, "b", MTL_TASK_REGRESSION, 1, &tb));
    ASSERT_OK(mtl_model_set_task_i64(m, tb, MTL_TASK_OPT_LOG_TARGET, 1));
    ASSERT_OK(mtl_model_finalize(m));
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, N, D, 2, x, D, y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_model_fit_scalers(m, ds));

    /* The scalers' statistics, computed here in double. */
    double mx[D] = { 0 }, sx[D] = { 0 }, my[2] = { 0 }, sy[2] = { 0 }, ny[2] = { 0 };
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) mx[j] += x[i * D + j] / (double)N;
        if (!isnan(y[i * 2])) {
            my[0] += y[i * 2];
            ny[0]++;
        }
        my[1] += log(y[i * 2 + 1]);
        ny[1]++;
    }
    my[0] /= ny[0];
    my[1] /= ny[1];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) sx[j] += pow(x[i * D + j] - mx[j], 2) / N;
        if (!isnan(y[i * 2])) sy[0] += pow(y[i * 2] - my[0], 2) / ny[0];
        sy[1] += pow(log(y[i * 2 + 1]) - my[1], 2) / ny[1];
    }
    for (int j = 0; j < D; j++) sx[j] = sqrt(sx[j]);
    sy[0] = sqrt(sy[0]);
    sy[1] = sqrt(sy[1]);

    /* y' = (c sx / sy) x' + (a + c mx - my) / sy for y = a + c x_j. */
    const int64_t np = mtl_model_param_count(m);
    float *p = calloc((size_t)np, sizeof(float));
    ASSERT(p);
    for (int64_t bi = 0; bi < mtl_model_param_block_count(m); bi++) {
        const char *name;
        int64_t off, rows, cols, ld;
        ASSERT_OK(mtl_model_param_block(m, bi, &name, &off, &rows, &cols, &ld));
        const int task = strstr(name, "task.a.") ? 0 : 1;
        const int j = task == 0 ? 0 : 1;
        const double c = task == 0 ? 50.0 : 0.5, a = task == 0 ? 1000.0 : 0.0;
        if (strstr(name, "weight")) {
            ASSERT(rows * cols == D);
            p[off + j] = (float)(c * sx[j] / sy[task]); /* a 1 x D or D x 1 block */
        } else {
            p[off] = (float)((a + c * mx[j] - my[task]) / sy[task]);
        }
    }
    ASSERT_OK(mtl_model_set_params(m, p, np));
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 5)); /* smaller than N: chunks */
    float out[N * 2];
    ASSERT_OK(mtl_model_predict(m, ws, N, x, D, out, 2));
    for (int i = 0; i < N; i++) {
        ASSERT_NEAR(out[i * 2], 1000.0 + 50.0 * x[i * D], 2e-5, 1e-3);
        ASSERT_NEAR(out[i * 2 + 1], exp(0.5 * x[i * D + 1]), 1e-4, 1e-5);
    }

    /* evaluate = hand computation from these predictions (missing label skipped). */
    double mae[2], want_mae[2] = { 0, 0 };
    for (int i = 0; i < N; i++) {
        if (i != 3) want_mae[0] += fabs((double)out[i * 2] - y[i * 2]) / (N - 1);
        want_mae[1] += fabs((double)out[i * 2 + 1] - y[i * 2 + 1]) / N;
    }
    ASSERT_OK(mtl_model_evaluate(m, ws, ds, MTL_METRIC_MAE, mae));
    ASSERT_NEAR(mae[0], want_mae[0], 1e-9, 1e-12);
    ASSERT_NEAR(mae[1], want_mae[1], 1e-9, 1e-12);
    /* The same through a view with reordered rows. */
    int64_t rows[N];
    for (int i = 0; i < N; i++) rows[i] = N - 1 - i;
    mtl_dataset *v = NULL;
    ASSERT_OK(mtl_dataset_view(&v, ds, N, rows));
    double mae_v[2];
    ASSERT_OK(mtl_model_evaluate(m, ws, v, MTL_METRIC_MAE, mae_v));
    ASSERT_NEAR(mae_v[0], mae[0], 1e-12, 0);
    double r2[2];
    ASSERT_OK(mtl_model_evaluate(m, ws, ds, MTL_METRIC_R2, r2));
    ASSERT(r2[0] > 0.999999 && r2[1] > 0.999999);
    double acc[2];
    ASSERT_OK(mtl_model_evaluate(m, ws, ds, MTL_METRIC_ACCURACY, acc));
    ASSERT(isnan(acc[0]) && isnan(acc[1])); /* does not apply to regression */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_evaluate(m, ws, ds, (mtl_metric)0, acc));

    /* Domain: inside for the training rows, outside for a far point. */
    int64_t outside[1];
    float far[D] = { 10, 0, 0, 0, 0, -1 };
    ASSERT_OK(mtl_model_check_domain(m, 1, far, D, outside));
    ASSERT_EQ_INT(outside[0], 1);

    mtl_dataset_destroy(v);
    mtl_workspace_destroy(ws);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    free(p);
    return 0;
}

/* ---- learning-rate multipliers and argument checks ------------------------------------------ */

TEST(lr_multiplier_freezes_a_head)
{
    synth s;
    make_synth(&s, 16, 3, 0.1);
    mtl_model *m = make_model(5, 8, 0.0f);
    ASSERT(m);
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 16));
    ASSERT_OK(mtl_trainer_set_task_f64(t, 0, MTL_TASK_OPT_LR_MULTIPLIER, 0.0));
    float *before = params_of(m);
    ASSERT(before);
    double losses[2];
    ASSERT_OK(mtl_trainer_step(t, 16, s.x, D, s.y, 2, NULL, 0, NULL, losses));
    float *after = params_of(m);
    ASSERT(after);
    int changed_a = 0, changed_b = 0, changed_trunk = 0;
    for (int64_t bi = 0; bi < mtl_model_param_block_count(m); bi++) {
        const char *name;
        int64_t off, rows, cols, ld;
        ASSERT_OK(mtl_model_param_block(m, bi, &name, &off, &rows, &cols, &ld));
        int diff = memcmp(before + off, after + off, (size_t)(rows * cols) * sizeof(float)) != 0;
        if (strstr(name, "task.a.")) changed_a |= diff;
        else if (strstr(name, "task.b.")) changed_b |= diff;
        else changed_trunk |= diff;
    }
    ASSERT(!changed_a && changed_b && changed_trunk);
    free(before);
    free(after);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    free_synth(&s);
    return 0;
}

TEST(fit_argument_errors)
{
    synth s;
    make_synth(&s, 16, 3, 0.1);
    mtl_model *m = make_model(5, 8, 0.0f);
    ASSERT(m);
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 16));
    mtl_dataset *ds = NULL, *narrow = NULL, *noy = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, s.n, D, 2, s.x, D, s.y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_dataset_create(&narrow, NULL, s.n, D - 1, 2, s.x, D, s.y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_dataset_create(&noy, NULL, s.n, D, 0, s.x, D, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_fit(NULL, ds, NULL, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_fit(t, NULL, NULL, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_fit(t, narrow, NULL, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_fit(t, ds, narrow, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_fit(t, noy, NULL, NULL, NULL));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EARLY_STOP_PATIENCE, 3));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_fit(t, ds, NULL, NULL, NULL));
    ASSERT_MSG_HAS("validation set");
    ASSERT_EQ_INT(mtl_trainer_epoch(t), 0);
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 0);
    double v[2];
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_epoch_losses(t, (mtl_split)2, v));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_epoch_metric(t, MTL_SPLIT_TRAIN, (mtl_metric)9, v));
    ASSERT_OK(mtl_trainer_epoch_losses(t, MTL_SPLIT_TRAIN, v));
    ASSERT(isnan(v[0]) && isnan(v[1])); /* no epoch yet */
    mtl_dataset_destroy(ds);
    mtl_dataset_destroy(narrow);
    mtl_dataset_destroy(noy);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    free_synth(&s);
    return 0;
}

/* ---- regressions: masked log targets, failed calls, huge epoch counts ----------- */

/* A log-target task: a non-positive value is an error only where the label
 * is observed; with mask byte 0 it is absent (as fit_scalers and evaluate
 * see it).  A call that fails on the user's data keeps the last gradient. */
TEST(masked_log_target_and_failed_call_keeps_gradient)
{
    synth s;
    make_synth(&s, 8, 21, 0.1);
    for (int64_t i = 0; i < s.n; i++) s.y[i * 2 + 0] = (float)(1 + i); /* task a: y > 0 */
    mtl_model *m = make_model(3, 8, 0.0f);
    ASSERT(m);
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOG_TARGET, 1));
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 8));
    const int64_t np = mtl_model_param_count(m);
    float *g0 = malloc((size_t)np * sizeof(float)), *g1 = malloc((size_t)np * sizeof(float));
    ASSERT(g0 && g1);
    uint8_t mask[8 * 2];
    memset(mask, 1, sizeof mask);
    ASSERT_OK(mtl_trainer_compute_gradients(t, s.n, s.x, D, s.y, 2, mask, 2, NULL, NULL));
    ASSERT_OK(mtl_trainer_get_gradients(t, g0, np));

    s.y[5 * 2 + 0] = -3.0f; /* observed: refused, and the last gradient stays */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_compute_gradients(t, s.n, s.x, D, s.y, 2, mask, 2, NULL, NULL));
    ASSERT_MSG_HAS("log target");
    ASSERT_OK(mtl_trainer_get_gradients(t, g1, np));
    ASSERT(memcmp(g0, g1, (size_t)np * sizeof(float)) == 0);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(t, s.n, s.x, D, s.y, 2, mask, 2, NULL, NULL));
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 0);

    /* Masked out: accepted, and the same gradient as with the cell NaN. */
    mask[5 * 2 + 0] = 0;
    ASSERT_OK(mtl_trainer_compute_gradients(t, s.n, s.x, D, s.y, 2, mask, 2, NULL, NULL));
    ASSERT_OK(mtl_trainer_get_gradients(t, g0, np));
    s.y[5 * 2 + 0] = NAN;
    ASSERT_OK(mtl_trainer_compute_gradients(t, s.n, s.x, D, s.y, 2, NULL, 0, NULL, NULL));
    ASSERT_OK(mtl_trainer_get_gradients(t, g1, np));
    ASSERT(memcmp(g0, g1, (size_t)np * sizeof(float)) == 0);
    s.y[5 * 2 + 0] = -3.0f;
    ASSERT_OK(mtl_trainer_step(t, s.n, s.x, D, s.y, 2, mask, 2, NULL, NULL));
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 1);
    /* fit and evaluate agree with the step (one data set, one convention). */
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, s.n, D, 2, s.x, D, s.y, 2, mask, 2, NULL, 0));
    ASSERT_OK(mtl_model_fit_scalers(m, ds));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 2));
    ASSERT_OK(mtl_trainer_fit(t, ds, NULL, NULL, NULL));
    ASSERT_EQ_INT(mtl_trainer_epoch(t), 2);

    free(g0);
    free(g1);
    mtl_dataset_destroy(ds);
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    free_synth(&s);
    return 0;
}

static int stop_at_first_step(void *user, const mtl_trainer *tr, int64_t epoch, int64_t step)
{
    (void)user;
    (void)tr;
    (void)epoch;
    return step >= 1;
}

/* MTL_OPT_EPOCHS = 1e9 on a data set of more than 2^47 / 1e9 batches: the
 * cosine schedule's step count is capped, so the checkpoint still loads
 * (the loader refuses counters >= 2^47). */
TEST(huge_epoch_count_checkpoint_loads)
{
    enum { N = 150000 }; /* 1e9 * 150000 steps > 2^47 = 1.4e14 */
    float *x = calloc((size_t)N * D, sizeof(float)), *y = malloc((size_t)N * 2 * sizeof(float));
    ASSERT(x && y);
    for (int64_t i = 0; i < N; i++) {
        x[i * D] = (float)(i % 7) * 0.1f;
        y[i * 2] = y[i * 2 + 1] = 0.5f;
    }
    mtl_model *m = make_model(4, 4, 0.0f), *m2 = NULL;
    ASSERT(m);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, N, D, 2, x, D, y, 2, NULL, 0, NULL, 0));
    mtl_trainer *t = NULL, *t2 = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 1));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_BATCH_SIZE, 1));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_EPOCHS, 1000000000));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE));
    ASSERT_OK(mtl_trainer_set_i64(t, MTL_OPT_CALLBACK_EVERY_STEPS, 1));
    ASSERT_OK(mtl_trainer_fit(t, ds, NULL, stop_at_first_step, NULL));
    ASSERT_EQ_INT(mtl_trainer_step_count(t), 1);
    size_t size = 0;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &size));
    void *buf = malloc(size);
    ASSERT(buf);
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, buf, size, &size));
    ASSERT_OK(mtl_trainer_load_checkpoint_buffer(&t2, &m2, NULL, buf, size));
    ASSERT_EQ_INT(mtl_trainer_step_count(t2), 1);
    ASSERT(mtl_trainer_learning_rate(t2) == mtl_trainer_learning_rate(t));
    free(buf);
    mtl_trainer_destroy(t2);
    mtl_model_destroy(m2);
    mtl_trainer_destroy(t);
    mtl_dataset_destroy(ds);
    mtl_model_destroy(m);
    free(x);
    free(y);
    return 0;
}

TEST_MAIN(TEST_ENTRY(early_stopping_restores_best), TEST_ENTRY(seeded_shuffling),
          TEST_ENTRY(callback_stops_training), TEST_ENTRY(exploding_learning_rate),
          TEST_ENTRY(scalers_round_trip_through_predict), TEST_ENTRY(lr_multiplier_freezes_a_head),
          TEST_ENTRY(fit_argument_errors), TEST_ENTRY(masked_log_target_and_failed_call_keeps_gradient),
          TEST_ENTRY(huge_epoch_count_checkpoint_loads))
