/* test_training_unit.c -- optimisers, schedules, learning-rate ranges,
 * trainer options and scalers, tested on internals against closed forms
 * computed here in double precision. */
#include "harness.h"
#include "mtl_internal.h"

#include <stdint.h>
#include <stdlib.h>

#define NP 11 /* not a multiple of 4: vector blocks and the scalar tail */

static void fill_grads(int step, float *g)
{
    for (int i = 0; i < NP; i++) g[i] = (float)(0.3 * sin(1.7 * i + 0.9 * step) + 0.05 * (i - 5));
}

static void init_params(float *p, double *pd)
{
    for (int i = 0; i < NP; i++) {
        p[i] = (float)(0.5 - 0.1 * i);
        pd[i] = p[i];
    }
}

/* Run `steps` updates of cfg with lr and compare with the closed-form
 * reference written out below for each optimiser. */
static int check_optimizer(const mtli_optim_config *cfg, double lr, int steps)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_optim_state st = { 0 };
    ASSERT_OK(mtli_optim_state_create(&st, &s, NP));
    float p[NP], g[NP];
    double pd[NP], m[NP] = { 0 }, v[NP] = { 0 };
    init_params(p, pd);
    mtli_range all = { 0, NP, 1.0f };
    for (int k = 1; k <= steps; k++) {
        fill_grads(k, g);
        mtli_optim_update(cfg, &st, p, g, lr, &all, 1);
        for (int i = 0; i < NP; i++) {
            double gi = g[i], wd = cfg->weight_decay;
            switch (cfg->kind) {
            case MTL_OPTIMIZER_SGD: {
                gi += wd * pd[i];
                if (cfg->momentum == 0) {
                    pd[i] -= lr * gi;
                } else {
                    m[i] = cfg->momentum * m[i] + gi;
                    double d = cfg->nesterov ? gi + cfg->momentum * m[i] : m[i];
                    pd[i] -= lr * d;
                }
                break;
            }
            case MTL_OPTIMIZER_ADAM:
            case MTL_OPTIMIZER_ADAMW: {
                if (cfg->kind == MTL_OPTIMIZER_ADAM)
                    gi += wd * pd[i];
                else
                    pd[i] *= 1.0 - lr * wd;
                m[i] = cfg->beta1 * m[i] + (1 - cfg->beta1) * gi;
                v[i] = cfg->beta2 * v[i] + (1 - cfg->beta2) * gi * gi;
                double mhat = m[i] / (1 - pow(cfg->beta1, k));
                double vhat = v[i] / (1 - pow(cfg->beta2, k));
                pd[i] -= lr * mhat / (sqrt(vhat) + cfg->eps);
                break;
            }
            }
        }
    }
    for (int i = 0; i < NP; i++) ASSERT_NEAR(p[i], pd[i], 2e-6, 2e-7);
    ASSERT_EQ_INT(st.t, steps);
    mtli_optim_state_destroy(&st, &s);
    return 0;
}

TEST(sgd_plain)
{
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_SGD };
    if (check_optimizer(&c, 0.1, 5)) return 1;
    c.weight_decay = 0.01;
    return check_optimizer(&c, 0.1, 5);
}

TEST(sgd_momentum)
{
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.9, .weight_decay = 0.001 };
    return check_optimizer(&c, 0.05, 6);
}

TEST(sgd_nesterov)
{
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_SGD, .momentum = 0.8, .nesterov = true };
    return check_optimizer(&c, 0.05, 6);
}

TEST(adam)
{
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
    if (check_optimizer(&c, 1e-2, 7)) return 1;
    c.weight_decay = 0.05; /* L2 added to the gradient */
    return check_optimizer(&c, 1e-2, 7);
}

TEST(adamw)
{
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_ADAMW, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                            .weight_decay = 0.1 };
    return check_optimizer(&c, 3e-2, 7);
}

/* First Adam step, by hand: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2,
 * so p1 = p0 - lr * g / (|g| + eps) = p0 - lr * sign(g) (for |g| >> eps). */
TEST(adam_first_step_is_sign)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_optim_state st = { 0 };
    ASSERT_OK(mtli_optim_state_create(&st, &s, 5));
    float p[5] = { 1, 2, 3, 4, 5 }, g[5] = { 0.5f, -2.0f, 1e-3f, -7.0f, 3.0f };
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
    mtli_range r = { 0, 5, 1.0f };
    mtli_optim_update(&c, &st, p, g, 0.01, &r, 1);
    const float want[5] = { 0.99f, 2.01f, 2.99f, 4.01f, 4.99f };
    for (int i = 0; i < 5; i++) ASSERT_NEAR(p[i], want[i], 1e-6, 1e-6);
    mtli_optim_state_destroy(&st, &s);
    return 0;
}

/* Every instruction-set path gives bitwise the same parameters and moments
 * (same operations in the same order; no fused multiply-add). */
TEST(isa_paths_bitwise_equal)
{
    enum { N = 1003 };
    if (mtli_optim_best_isa() < MTLI_ISA_AVX2) { /* AVX-512 CPUs have AVX2 too */
        printf("  (no AVX2 on this CPU: one path only)\n");
        return 0;
    }
    mtli_settings s;
    mtli_settings_defaults(&s);
    const mtli_optim_config cfgs[2] = {
        { .kind = MTL_OPTIMIZER_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01 },
        { .kind = MTL_OPTIMIZER_ADAM, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1 },
    };
    static float p[2][N], g[N];
    for (int c = 0; c < 2; c++) {
        mtli_optim_state st[2] = { { 0 }, { 0 } };
        for (int k = 0; k < 2; k++) {
            ASSERT_OK(mtli_optim_state_create(&st[k], &s, N));
            for (int i = 0; i < N; i++) p[k][i] = (float)sin(0.37 * i);
        }
        const mtli_range r[2] = { { 1, 500, 1.0f }, { 500, N, 0.5f } }; /* odd offsets */
        for (int step = 1; step <= 5; step++) {
            for (int i = 0; i < N; i++) g[i] = (float)(cos(0.11 * i * step) * pow(10.0, (i % 7) - 3));
            mtli_optim_update_isa(&cfgs[c], &st[0], p[0], g, 1e-3, r, 2, MTLI_ISA_BASELINE);
            mtli_optim_update_isa(&cfgs[c], &st[1], p[1], g, 1e-3, r, 2, MTLI_ISA_AVX2);
        }
        ASSERT(memcmp(p[0], p[1], sizeof p[0]) == 0);
        ASSERT(memcmp(st[0].m, st[1].m, N * sizeof(float)) == 0);
        ASSERT(memcmp(st[0].v, st[1].v, N * sizeof(float)) == 0);
        ASSERT(p[0][0] == (float)sin(0.0)); /* outside every range: untouched */
        for (int k = 0; k < 2; k++) mtli_optim_state_destroy(&st[k], &s);
    }
    return 0;
}

/* Ranges: a parameter outside every range is untouched; a range with
 * lr_scale 2 moves exactly like lr 2x (plain SGD). */
TEST(ranges_scale_learning_rate)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_optim_state st = { 0 };
    ASSERT_OK(mtli_optim_state_create(&st, &s, NP));
    float p[NP], g[NP];
    double pd[NP];
    init_params(p, pd);
    fill_grads(1, g);
    mtli_range r[2] = { { 0, 3, 1.0f }, { 5, NP, 2.0f } };
    mtli_optim_config c = { .kind = MTL_OPTIMIZER_SGD };
    mtli_optim_update(&c, &st, p, g, 0.1, r, 2);
    for (int i = 0; i < NP; i++) {
        double lr = i < 3 ? 0.1 : i < 5 ? 0.0 : 0.2;
        ASSERT_NEAR(p[i], pd[i] - lr * g[i], 1e-6, 1e-7);
    }
    mtli_optim_state_destroy(&st, &s);
    return 0;
}

/* ---- a fake finalized model: trunk 3 -> 4, two tasks with heads ------------- */

typedef struct fake {
    mtl_model m;
    mtli_task tasks[2];
    mtli_layer layers0[2], layers1[1];
    mtli_layer trunk[1];
    char name0[8], name1[8];
} fake;

/* Layout (as the network code stores it: the first head layers of all
 * tasks transposed side by side, then the rest of each head):
 *  trunk W 3x4 @0, b @12                        -> [0, 16)
 *  task0 hidden W^T 2x4 @16, task1 out W^T 1x4 @24  (fused block [16, 28))
 *  task0: hidden b @28 (2), out W 2x1 @30, b @32 -> head [28, 33)
 *  task1: out b @33                              -> head [33, 34) */
static void fake_model(fake *f, int64_t n_inputs)
{
    memset(f, 0, sizeof *f);
    mtl_model *m = &f->m;
    mtli_settings_defaults(&m->settings);
    m->finalized = true;
    m->n_inputs = n_inputs;
    m->n_trunk = 1;
    m->trunk = f->trunk;
    f->trunk[0] = (mtli_layer){ .fan_in = 3, .fan_out = 4, .w_off = 0, .ldw = 4, .b_off = 12 };
    m->n_tasks = 2;
    m->tasks = f->tasks;
    strcpy(f->name0, "a");
    strcpy(f->name1, "b");
    f->tasks[0] = (mtli_task){ .name = f->name0, .type = MTL_TASK_REGRESSION, .n_outputs = 1,
                               .n_targets = 1, .target_col = 0, .output_col = 0, .standardize = true,
                               .n_hidden = 1, .layers = f->layers0, .head_begin = 28, .head_end = 33 };
    f->layers0[0] = (mtli_layer){ .fan_in = 4, .fan_out = 2, .w_off = 16, .ldw = 4, .b_off = 28,
                                  .w_trans = true };
    f->layers0[1] = (mtli_layer){ .fan_in = 2, .fan_out = 1, .w_off = 30, .ldw = 1, .b_off = 32 };
    f->tasks[1] = (mtli_task){ .name = f->name1, .type = MTL_TASK_REGRESSION, .n_outputs = 1,
                               .n_targets = 1, .target_col = 1, .output_col = 1, .standardize = true,
                               .n_hidden = 0, .layers = f->layers1, .head_begin = 33, .head_end = 34 };
    f->layers1[0] = (mtli_layer){ .fan_in = 4, .fan_out = 1, .w_off = 24, .ldw = 4, .b_off = 33,
                                  .w_trans = true };
    m->n_params = 34;
    m->target_width = m->output_width = 2;
}

static int make_trainer(mtl_trainer *t, fake *f, int64_t max_batch)
{
    memset(t, 0, sizeof *t);
    t->model = &f->m;
    t->settings = f->m.settings;
    t->max_batch = max_batch;
    t->n_tasks = f->m.n_tasks;
    ASSERT_OK(mtli_trainer_training_init(t));
    return 0;
}

TEST(lr_multiplier_ranges)
{
    fake f;
    fake_model(&f, 3);
    mtl_trainer t;
    if (make_trainer(&t, &f, 8)) return 1;
    ASSERT_EQ_INT(t.n_ranges, 1);
    ASSERT(t.ranges[0].begin == 0 && t.ranges[0].end == 34 && t.ranges[0].lr_scale == 1.0f);

    ASSERT_OK(mtl_trainer_set_task_f64(&t, 0, MTL_TASK_OPT_LR_MULTIPLIER, 3.0));
    double v = 0;
    ASSERT_OK(mtl_trainer_get_task_f64(&t, 0, MTL_TASK_OPT_LR_MULTIPLIER, &v));
    ASSERT(v == 3.0);
    /* Expected scale of every parameter, from the layout above. */
    float want[34];
    for (int i = 0; i < 34; i++) want[i] = 1.0f;
    for (int i = 16; i < 24; i++) want[i] = 3.0f;
    for (int i = 28; i < 33; i++) want[i] = 3.0f;
    float got[34];
    int64_t covered = 0;
    for (int64_t k = 0; k < t.n_ranges; k++) {
        ASSERT(t.ranges[k].begin == covered); /* sorted, contiguous, no overlap */
        for (int64_t i = t.ranges[k].begin; i < t.ranges[k].end; i++) got[i] = t.ranges[k].lr_scale;
        covered = t.ranges[k].end;
        if (k > 0) ASSERT(t.ranges[k].lr_scale != t.ranges[k - 1].lr_scale); /* merged */
    }
    ASSERT_EQ_INT(covered, 34);
    for (int i = 0; i < 34; i++) ASSERT(got[i] == want[i]);

    /* Back to 1: one range again. */
    ASSERT_OK(mtl_trainer_set_task_f64(&t, 0, MTL_TASK_OPT_LR_MULTIPLIER, 1.0));
    ASSERT_EQ_INT(t.n_ranges, 1);

    /* Errors: bad task, model option, wrong family, bad value. */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT,
                  mtl_trainer_set_task_f64(&t, 2, MTL_TASK_OPT_LR_MULTIPLIER, 1.0));
    ASSERT_MSG_HAS("task 2");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT,
                  mtl_trainer_set_task_f64(&t, 0, MTL_TASK_OPT_LOSS_WEIGHT, 1.0));
    ASSERT_MSG_HAS("model option");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT,
                  mtl_trainer_set_task_f64(&t, 0, MTL_TASK_OPT_LR_MULTIPLIER, -1.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT,
                  mtl_trainer_set_task_f64(&t, 0, MTL_TASK_OPT_LR_MULTIPLIER, NAN));
    mtli_trainer_training_free(&t);
    return 0;
}

TEST(trainer_option_defaults_and_bounds)
{
    fake f;
    fake_model(&f, 3);
    mtl_trainer t;
    if (make_trainer(&t, &f, 16)) return 1;
    int64_t i;
    double d;
    ASSERT_OK(mtl_trainer_get_i64(&t, MTL_OPT_OPTIMIZER, &i));
    ASSERT_EQ_INT(i, MTL_OPTIMIZER_ADAMW);
    ASSERT_OK(mtl_trainer_get_i64(&t, MTL_OPT_BATCH_SIZE, &i));
    ASSERT_EQ_INT(i, 16); /* min(32, max_batch) */
    ASSERT_OK(mtl_trainer_get_i64(&t, MTL_OPT_EPOCHS, &i));
    ASSERT_EQ_INT(i, 100);
    ASSERT_OK(mtl_trainer_get_f64(&t, MTL_OPT_LEARNING_RATE, &d));
    ASSERT(d == 1e-3);
    ASSERT_OK(mtl_trainer_get_f64(&t, MTL_OPT_BETA2, &d));
    ASSERT(d == 0.999);
    ASSERT_OK(mtl_trainer_get_f64(&t, MTL_OPT_EPSILON, &d));
    ASSERT(d == 1e-8);
    ASSERT(mtl_trainer_learning_rate(&t) == 1e-3);

    /* Round trips. */
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_WEIGHT_DECAY, 0.25));
    ASSERT_OK(mtl_trainer_get_f64(&t, MTL_OPT_WEIGHT_DECAY, &d));
    ASSERT(d == 0.25);
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_BATCH_SIZE, 16));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_NESTEROV, 1));
    ASSERT_OK(mtl_trainer_get_i64(&t, MTL_OPT_NESTEROV, &i));
    ASSERT_EQ_INT(i, 1);
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, 0.5));
    ASSERT(mtl_trainer_learning_rate(&t) == 0.5);

    /* Bounds and types. */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, MTL_OPT_BATCH_SIZE, 17));
    ASSERT_MSG_HAS("max_batch 16");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, MTL_OPT_BATCH_SIZE, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, 0.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, 11.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_f64(&t, MTL_OPT_BETA1, 1.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_f64(&t, MTL_OPT_MOMENTUM, NAN));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, MTL_OPT_OPTIMIZER, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, MTL_OPT_LEARNING_RATE, 1));
    ASSERT_MSG_HAS("_f64");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_f64(&t, MTL_OPT_EPOCHS, 1.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_f64(&t, MTL_OPT_EPOCHS, &d));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, MTL_OPT_NUM_THREADS, 2));
    ASSERT_MSG_HAS("not a trainer option");
    /* A context option read from a trainer: named as such, not as a value
     * (0) outside its range [1, 256] (regression). */
    i = -7;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_i64(&t, MTL_OPT_NUM_THREADS, &i));
    ASSERT_MSG_HAS("not a trainer option");
    ASSERT_EQ_INT(i, -7);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_i64(&t, MTL_OPT_PARALLEL_MIN_FLOPS, &i));
    ASSERT_MSG_HAS("not a trainer option");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_i64(&t, MTL_OPT_LEARNING_RATE, &i));
    ASSERT_MSG_HAS("_f64"); /* wrong type still named */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_i64(&t, 0x10000 | 999, &i));
    ASSERT_MSG_HAS("unknown option");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(&t, 0x10000 | 999, 1));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_set_i64(NULL, MTL_OPT_EPOCHS, 1));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_i64(&t, MTL_OPT_EPOCHS, NULL));
    /* Failed setters changed nothing. */
    ASSERT_OK(mtl_trainer_get_i64(&t, MTL_OPT_BATCH_SIZE, &i));
    ASSERT_EQ_INT(i, 16);

    /* Optimiser changes are refused once steps were taken. */
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
    t.step_count = 3;
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_set_i64(&t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD)); /* same: fine */
    mtli_trainer_training_free(&t);
    return 0;
}

/* ---- schedules vs closed form ------------------------------------------------ */

TEST(schedule_step)
{
    fake f;
    fake_model(&f, 3);
    mtl_trainer t;
    if (make_trainer(&t, &f, 8)) return 1;
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, 0.2));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_STEP));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_SCHEDULE_STEP_EPOCHS, 3));
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_SCHEDULE_GAMMA, 0.5));
    for (int e = 0; e < 10; e++) {
        ASSERT_NEAR(mtl_trainer_learning_rate(&t), 0.2 * pow(0.5, e / 3), 1e-15, 0);
        mtli_schedule_after_step(&t);
        ASSERT_NEAR(mtl_trainer_learning_rate(&t), 0.2 * pow(0.5, e / 3), 1e-15, 0);
        t.epoch++;
        mtli_schedule_after_epoch(&t, 1.0);
    }
    ASSERT_EQ_INT(t.step_count, 10);
    mtli_trainer_training_free(&t);
    return 0;
}

TEST(schedule_cosine_warmup)
{
    fake f;
    fake_model(&f, 3);
    mtl_trainer t;
    if (make_trainer(&t, &f, 8)) return 1;
    const double base = 0.1, floor_lr = 0.01;
    const int W = 4, total = 20;
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, base));
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_MIN_LEARNING_RATE, floor_lr));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_COSINE));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_WARMUP_STEPS, W));
    t.total_steps_hint = total;
    mtli_schedule_refresh(&t);
    for (int s = 0; s < 25; s++) {
        double want;
        if (s < W)
            want = base * (s + 1) / W;
        else {
            double p = fmin(1.0, (double)(s - W) / (total - W));
            want = floor_lr + (base - floor_lr) * 0.5 * (1 + cos(M_PI * p));
        }
        ASSERT_NEAR(mtl_trainer_learning_rate(&t), want, 1e-14, 1e-17);
        mtli_schedule_after_step(&t);
    }
    ASSERT_NEAR(mtl_trainer_learning_rate(&t), floor_lr, 1e-14, 0);
    mtli_trainer_training_free(&t);
    return 0;
}

TEST(schedule_plateau)
{
    fake f;
    fake_model(&f, 3);
    mtl_trainer t;
    if (make_trainer(&t, &f, 8)) return 1;
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_LEARNING_RATE, 1.0));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_SCHEDULE, MTL_SCHEDULE_PLATEAU));
    ASSERT_OK(mtl_trainer_set_i64(&t, MTL_OPT_PLATEAU_PATIENCE, 2));
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_SCHEDULE_GAMMA, 0.5));
    ASSERT_OK(mtl_trainer_set_f64(&t, MTL_OPT_MIN_LEARNING_RATE, 0.2));
    /* losses:      5    4    4    4    4    3    3    3    3    3    3    3 */
    const double loss[] = { 5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3 };
    /* bad epochs:  0    0    1    2    3->cut 0 ...                            */
    const double want[] = { 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2 };
    for (int e = 0; e < 12; e++) {
        t.epoch++;
        mtli_schedule_after_epoch(&t, loss[e]);
        ASSERT_NEAR(mtl_trainer_learning_rate(&t), want[e], 1e-15, 0);
    }
    /* NaN (no information) changes nothing. */
    mtli_schedule_after_epoch(&t, NAN);
    ASSERT_NEAR(mtl_trainer_learning_rate(&t), 0.2, 1e-15, 0);
    mtli_trainer_training_free(&t);
    return 0;
}

/* ---- scalers on the fake model ---------------------------------------------- */

TEST(scalers_fit_and_round_trip)
{
    fake f;
    fake_model(&f, 3);
    mtl_model *m = &f.m;
    /* column 0: 1..5, column 1: constant 7 (zero variance), column 2: 1e6 + small */
    float x[5 * 3], y[5 * 2];
    for (int r = 0; r < 5; r++) {
        x[r * 3 + 0] = (float)(r + 1);
        x[r * 3 + 1] = 7.0f;
        x[r * 3 + 2] = 1000.0f + 0.5f * (float)r;
        y[r * 2 + 0] = (float)(10 * r);
        y[r * 2 + 1] = (float)exp(r); /* log target below */
    }
    y[2 * 2 + 0] = NAN; /* a missing label */
    f.tasks[1].log_target = true;
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 5, 3, 2, x, 3, y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_model_fit_scalers(m, ds));
    const mtli_scalers *sc = &m->scalers;
    ASSERT(sc->fitted);
    ASSERT_NEAR(sc->x_mean[0], 3.0, 1e-7, 0);
    ASSERT_NEAR(sc->x_scale[0], sqrt(2.0), 1e-6, 0); /* population std of 1..5 */
    ASSERT(sc->x_mean[1] == 7.0f && sc->x_scale[1] == 1.0f);
    ASSERT_NEAR(sc->x_mean[2], 1001.0, 1e-7, 0);
    ASSERT_NEAR(sc->x_scale[2], sqrt(0.5), 1e-5, 0);
    ASSERT(sc->x_min[0] == 1.0f && sc->x_max[0] == 5.0f && sc->x_min[2] == 1000.0f);
    /* target 0: labels 0, 10, 30, 40 (row 2 missing): mean 20, var 250 */
    ASSERT_NEAR(sc->y_mean[0], 20.0, 1e-7, 0);
    ASSERT_NEAR(sc->y_scale[0], sqrt(250.0), 1e-6, 0);
    /* target 1: ln y = 0..4: mean 2, std sqrt 2 */
    ASSERT_NEAR(sc->y_mean[1], 2.0, 1e-6, 0);
    ASSERT_NEAR(sc->y_scale[1], sqrt(2.0), 1e-6, 0);

    float xs[5 * 3];
    mtli_scale_inputs(m, 5, x, 3, xs, 3);
    for (int r = 0; r < 5; r++) {
        ASSERT(isfinite(xs[r * 3 + 1]) && xs[r * 3 + 1] == 0.0f);
        ASSERT_NEAR(xs[r * 3 + 0], (r + 1 - 3.0) / sqrt(2.0), 1e-6, 1e-6);
    }
    float ys[5 * 2];
    ASSERT_OK(mtli_scale_targets(m, 5, y, 2, NULL, 0, ys, 2));
    ASSERT(isnan(ys[2 * 2 + 0]));
    ASSERT_NEAR(ys[4 * 2 + 1], (4.0 - 2.0) / sqrt(2.0), 1e-6, 1e-6);
    /* outputs = scaled targets -> unscale gives the targets back */
    mtli_unscale_outputs(m, 5, ys, 2);
    for (int r = 0; r < 5; r++) {
        if (r != 2) ASSERT_NEAR(ys[r * 2 + 0], y[r * 2 + 0], 1e-5, 1e-5);
        ASSERT_NEAR(ys[r * 2 + 1], y[r * 2 + 1], 1e-5, 1e-6);
    }

    /* Domain: row inside, row with two features outside, NaN outside. */
    float probe[2 * 3] = { 2, 7, 1001, 6, 7.5f, NAN };
    int64_t outside[2];
    ASSERT_OK(mtl_model_check_domain(m, 2, probe, 3, outside));
    ASSERT_EQ_INT(outside[0], 0);
    ASSERT_EQ_INT(outside[1], 3);

    /* A non-positive label of a log task is named, and the old scalers stay. */
    y[3 * 2 + 1] = -1.0f;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_fit_scalers(m, ds));
    ASSERT_MSG_HAS("task 'b'");
    ASSERT_MSG_HAS("row 3");
    ASSERT_NEAR(m->scalers.y_mean[1], 2.0, 1e-6, 0);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtli_scale_targets(m, 5, y, 2, NULL, 0, ys, 2));
    ASSERT_MSG_HAS("row 3");
    /* ... unless its mask byte is 0: an absent label, missing (NaN) like a
     * NaN label, as the losses and fit_scalers see it (regression check). */
    uint8_t ymask[5 * 3];
    memset(ymask, 1, sizeof ymask);
    ymask[3 * 3 + 1] = 0; /* ldmask 3 > the 2 target columns */
    ASSERT_OK(mtli_scale_targets(m, 5, y, 2, ymask, 3, ys, 2));
    ASSERT(isnan(ys[3 * 2 + 1]));
    ASSERT_NEAR(ys[4 * 2 + 1], (4.0 - 2.0) / sqrt(2.0), 1e-6, 1e-6); /* observed cells unchanged */
    ASSERT_NEAR(ys[3 * 2 + 0], (30.0 - 20.0) / sqrt(250.0), 1e-6, 1e-6);

    /* standardize off: identity (mean 0, scale 1) for that task. */
    y[3 * 2 + 1] = 1.0f;
    f.tasks[0].standardize = false;
    ASSERT_OK(mtl_model_fit_scalers(m, ds));
    ASSERT(m->scalers.y_mean[0] == 0.0f && m->scalers.y_scale[0] == 1.0f);

    mtl_dataset_destroy(ds);
    mtli_scalers_free(m);
    return 0;
}

TEST(scalers_view_and_errors)
{
    fake f;
    fake_model(&f, 3);
    mtl_model *m = &f.m;
    float x[4 * 3] = { 0, 0, 0, 100, 100, 100, 2, 4, 6, 4, 8, 12 };
    float y[4 * 2] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    mtl_dataset *ds = NULL, *v = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 4, 3, 2, x, 3, y, 2, NULL, 0, NULL, 0));
    int64_t rows[2] = { 2, 3 };
    ASSERT_OK(mtl_dataset_view(&v, ds, 2, rows));
    ASSERT_OK(mtl_model_fit_scalers(m, v)); /* only rows 2 and 3 */
    ASSERT_NEAR(m->scalers.x_mean[1], 6.0, 1e-7, 0);
    ASSERT_NEAR(m->scalers.x_scale[2], 3.0, 1e-6, 0);
    ASSERT(m->scalers.y_scale[0] == 1.0f); /* constant target */

    mtl_dataset *wrong = NULL;
    ASSERT_OK(mtl_dataset_create(&wrong, NULL, 4, 2, 0, x, 3, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_fit_scalers(m, wrong));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_fit_scalers(NULL, v));
    m->finalized = false;
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_fit_scalers(m, v));
    m->finalized = true;
    int64_t o;
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_check_domain(m, 1, x, 2, &o));
    mtl_dataset_destroy(wrong);
    mtl_dataset_destroy(ds);
    mtl_dataset_destroy(v);
    mtli_scalers_free(m);
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_check_domain(m, 1, x, 3, &o));
    return 0;
}

TEST_MAIN(TEST_ENTRY(sgd_plain), TEST_ENTRY(sgd_momentum), TEST_ENTRY(sgd_nesterov),
          TEST_ENTRY(adam), TEST_ENTRY(adamw), TEST_ENTRY(adam_first_step_is_sign), TEST_ENTRY(isa_paths_bitwise_equal),
          TEST_ENTRY(ranges_scale_learning_rate), TEST_ENTRY(lr_multiplier_ranges),
          TEST_ENTRY(trainer_option_defaults_and_bounds), TEST_ENTRY(schedule_step),
          TEST_ENTRY(schedule_cosine_warmup), TEST_ENTRY(schedule_plateau),
          TEST_ENTRY(scalers_fit_and_round_trip), TEST_ENTRY(scalers_view_and_errors))
