/* test_network_model.c -- defining a model, read-back, finalize, parameter
 * layout and initialisation, and every definition/parameter function with
 * bad arguments (right status, message naming the culprit). */
#include "test_network_common.h"

static mtl_model *three_task_model(mtl_context *ctx)
{
    mtl_model *m = NULL;
    if (mtl_model_create(&m, ctx, 6) != MTL_OK) return NULL;
    tn_define_mixed(m);
    return m;
}

TEST(define_and_read_back)
{
    mtl_model *m = three_task_model(NULL);
    ASSERT(m);
    ASSERT_EQ_INT(mtl_model_input_count(m), 6);
    ASSERT_EQ_INT(mtl_model_task_count(m), 3);
    ASSERT_EQ_INT(mtl_model_layer_count(m), 2 + 2 + 1 + 3);
    ASSERT_EQ_INT(mtl_model_embedding_width(m), 8);
    ASSERT_EQ_INT(mtl_model_target_width(m), 2 + 1 + 1);
    ASSERT_EQ_INT(mtl_model_output_width(m), 2 + 1 + 3);
    ASSERT_EQ_INT(mtl_model_param_count(m), 0);
    ASSERT_EQ_INT(mtl_model_is_finalized(m), 0);
    const char *name;
    ASSERT_OK(mtl_model_task_name(m, 2, &name));
    ASSERT(strcmp(name, "class") == 0);
    mtl_task_type type;
    ASSERT_OK(mtl_model_task_type(m, 1, &type));
    ASSERT_EQ_INT(type, MTL_TASK_BINARY);
    int64_t k, tc, oc, idx;
    ASSERT_OK(mtl_model_task_outputs(m, 2, &k));
    ASSERT_EQ_INT(k, 3);
    ASSERT_OK(mtl_model_task_columns(m, 2, &tc, &oc));
    ASSERT_EQ_INT(tc, 3);
    ASSERT_EQ_INT(oc, 3);
    ASSERT_OK(mtl_model_task_columns(m, 1, &tc, &oc));
    ASSERT_EQ_INT(tc, 2);
    ASSERT_EQ_INT(oc, 2);
    ASSERT_OK(mtl_model_find_task(m, "fast", &idx));
    ASSERT_EQ_INT(idx, 1);
    ASSERT_STATUS(MTL_ERR_NOT_FOUND, mtl_model_find_task(m, "slow", &idx));
    ASSERT_MSG_HAS("slow");

    /* defaults of task options */
    double v;
    int64_t iv;
    ASSERT_OK(mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_LOSS_WEIGHT, &v));
    ASSERT(v == 1.0);
    ASSERT_OK(mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, &v));
    ASSERT(v == 1.0);
    ASSERT_OK(mtl_model_get_task_i64(m, 0, MTL_TASK_OPT_LOSS, &iv));
    ASSERT_EQ_INT(iv, MTL_LOSS_MSE);
    ASSERT_OK(mtl_model_get_task_i64(m, 1, MTL_TASK_OPT_LOSS, &iv));
    ASSERT_EQ_INT(iv, MTL_LOSS_BCE);
    ASSERT_OK(mtl_model_get_task_i64(m, 2, MTL_TASK_OPT_LOSS, &iv));
    ASSERT_EQ_INT(iv, MTL_LOSS_CROSS_ENTROPY);
    ASSERT_OK(mtl_model_get_task_i64(m, 0, MTL_TASK_OPT_STANDARDIZE, &iv));
    ASSERT_EQ_INT(iv, 1);
    ASSERT_OK(mtl_model_get_task_i64(m, 1, MTL_TASK_OPT_STANDARDIZE, &iv));
    ASSERT_EQ_INT(iv, 0);
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_HUBER));
    ASSERT_OK(mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, 0.25));
    ASSERT_OK(mtl_model_set_task_f64(m, 2, MTL_TASK_OPT_LOSS_WEIGHT, 2.5));
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOG_TARGET, 1));
    ASSERT_OK(mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, &v));
    ASSERT(v == 0.25);
    ASSERT_OK(mtl_model_get_task_f64(m, 2, MTL_TASK_OPT_LOSS_WEIGHT, &v));
    ASSERT(v == 2.5);
    ASSERT_OK(mtl_model_get_task_i64(m, 0, MTL_TASK_OPT_LOG_TARGET, &iv));
    ASSERT_EQ_INT(iv, 1);

    ASSERT_OK(mtl_model_finalize(m));
    ASSERT_EQ_INT(mtl_model_is_finalized(m), 1);
    /* parameters: trunk 6*16+16, 16*8+8+16; fused (5+1+4) x 8; barrier: 5 bias, 5*2+2;
     * fast: 1 bias; class: 4 bias + 8 norm, 4*3+3, out 3*3+3 */
    int64_t expect = (6 * 16 + 16) + (16 * 8 + 8 + 16) + 10 * 8 + (5 + 5 * 2 + 2) + 1 + (4 + 8 + 4 * 3 + 3 + 3 * 3 + 3);
    ASSERT_EQ_INT(mtl_model_param_count(m), expect);
    /* options that may change after finalize */
    ASSERT_OK(mtl_model_set_task_f64(m, 1, MTL_TASK_OPT_LOSS_WEIGHT, 0.5));
    mtl_model_destroy(m);
    return 0;
}

TEST(param_blocks_tile_the_buffer)
{
    mtl_model *m = three_task_model(NULL);
    ASSERT(m);
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_param_block(m, 0, NULL, NULL, NULL, NULL, NULL));
    ASSERT_EQ_INT(mtl_model_param_block_count(m), 0);
    ASSERT_OK(mtl_model_finalize(m));
    static const char *const names[] = {
        "trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias", "trunk.1.norm.gain",
        "trunk.1.norm.shift", "task.barrier.hidden.0.weight", "task.fast.out.weight", "task.class.hidden.0.weight",
        "task.barrier.hidden.0.bias", "task.barrier.out.weight", "task.barrier.out.bias", "task.fast.out.bias",
        "task.class.hidden.0.bias", "task.class.hidden.0.norm.gain", "task.class.hidden.0.norm.shift",
        "task.class.hidden.1.weight", "task.class.hidden.1.bias", "task.class.out.weight", "task.class.out.bias",
    };
    /* rows x cols: trunk weights fan_in x fan_out; the first head layers
     * (fused) fan_out x fan_in */
    static const int64_t shapes[][2] = { { 6, 16 }, { 1, 16 }, { 16, 8 }, { 1, 8 }, { 1, 8 }, { 1, 8 }, { 5, 8 },
                                         { 1, 8 },  { 4, 8 },  { 1, 5 },  { 5, 2 }, { 1, 2 }, { 1, 1 }, { 1, 4 },
                                         { 1, 4 },  { 1, 4 },  { 4, 3 },  { 1, 3 }, { 3, 3 }, { 1, 3 } };
    const int64_t nb = mtl_model_param_block_count(m);
    ASSERT_EQ_INT(nb, (int64_t)(sizeof names / sizeof names[0]));
    int64_t next = 0;
    for (int64_t i = 0; i < nb; i++) {
        const char *name;
        int64_t off, r, c, ld;
        ASSERT_OK(mtl_model_param_block(m, i, &name, &off, &r, &c, &ld));
        if (strcmp(name, names[i]) != 0) FAILF("block %lld is '%s', expected '%s'", (long long)i, name, names[i]);
        ASSERT_EQ_INT(off, next);
        ASSERT_EQ_INT(r, shapes[i][0]);
        ASSERT_EQ_INT(c, shapes[i][1]);
        ASSERT_EQ_INT(ld, c);
        next = off + r * c;
    }
    ASSERT_EQ_INT(next, mtl_model_param_count(m));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_param_block(m, nb, NULL, NULL, NULL, NULL, NULL));
    ASSERT_MSG_HAS("block");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_param_block(m, -1, NULL, NULL, NULL, NULL, NULL));
    mtl_model_destroy(m);
    return 0;
}

/* He normal for the ReLU family, Glorot uniform otherwise; biases 0; norm
 * gain 1 and shift 0.  Checked on sample moments of large blocks. */
TEST(initialisation)
{
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_OK(mtl_model_create(&m, NULL, 200));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 100, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 80, MTL_ACT_TANH, 0.0f, MTL_LAYER_NORM));
    ASSERT_OK(mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 60, MTL_ACT_GELU, 0.0f, 0));
    ASSERT_OK(mtl_model_finalize(m));
    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p);
    ASSERT(p);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    struct {
        const char *name;
        int normal;
        double sd;
    } checks[] = {
        { "trunk.0.weight", 1, sqrt(2.0 / 200) },        /* He: fan_in 200 */
        { "trunk.1.weight", 0, sqrt(2.0 / (100 + 80)) }, /* Glorot uniform: var = a^2/3 = 2/(in+out) */
        { "task.a.hidden.0.weight", 1, sqrt(2.0 / 80) },
        { "task.a.out.weight", 0, sqrt(2.0 / (60 + 1)) },
    };
    for (int c = 0; c < 4; c++) {
        int64_t r, cols, off = tn_block(m, checks[c].name, &r, &cols);
        ASSERT(off >= 0);
        double s = 0, s2 = 0, mx = 0;
        for (int64_t i = 0; i < r * cols; i++) {
            s += p[off + i];
            s2 += (double)p[off + i] * p[off + i];
            mx = fmax(mx, fabs(p[off + i]));
        }
        const double n = (double)(r * cols), mean = s / n, sd = sqrt(s2 / n - mean * mean);
        /* standard error of the sd estimate ~ sd / sqrt(2n): allow 5 of them (n >= 60) */
        ASSERT_NEAR(sd, checks[c].sd, 5.0 / sqrt(2.0 * n), 0);
        ASSERT(fabs(mean) < 5.0 * checks[c].sd / sqrt(n));
        if (!checks[c].normal) ASSERT(mx <= checks[c].sd * sqrt(3.0) + 1e-6); /* uniform bound a */
        else ASSERT(mx > checks[c].sd * sqrt(3.0));                           /* normal tails exceed it */
    }
    int64_t r = 0, cols = 0, off;
    off = tn_block(m, "trunk.0.bias", &r, &cols);
    for (int64_t i = 0; i < cols; i++) ASSERT(p[off + i] == 0.0f);
    off = tn_block(m, "trunk.1.norm.gain", &r, &cols);
    for (int64_t i = 0; i < cols; i++) ASSERT(p[off + i] == 1.0f);
    off = tn_block(m, "trunk.1.norm.shift", &r, &cols);
    for (int64_t i = 0; i < cols; i++) ASSERT(p[off + i] == 0.0f);
    free(p);
    mtl_model_destroy(m);
    return 0;
}

static int params_of_seed(int64_t seed, float *out, int64_t cap, int64_t *np)
{
    mtl_context *ctx = tn_context(seed, 1);
    mtl_model *m = three_task_model(ctx);
    mtl_context_destroy(ctx); /* the model keeps a copy of the settings */
    ASSERT(m);
    ASSERT_OK(mtl_model_finalize(m));
    *np = mtl_model_param_count(m);
    ASSERT(*np <= cap);
    ASSERT_OK(mtl_model_get_params(m, out, *np));
    mtl_model_destroy(m);
    return 0;
}

TEST(seeded_initialisation_is_reproducible)
{
    static float a[4096], b[4096], c[4096];
    int64_t na, nb, nc;
    ASSERT(params_of_seed(7, a, 4096, &na) == 0);
    ASSERT(params_of_seed(7, b, 4096, &nb) == 0);
    ASSERT(params_of_seed(8, c, 4096, &nc) == 0);
    ASSERT_EQ_INT(na, nb);
    ASSERT(memcmp(a, b, (size_t)na * sizeof(float)) == 0);
    ASSERT(memcmp(a, c, (size_t)na * sizeof(float)) != 0);
    return 0;
}

TEST(get_set_params)
{
    mtl_model *m = three_task_model(NULL);
    ASSERT(m);
    float buf[2048];
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_get_params(m, buf, 10));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_set_params(m, buf, 10));
    ASSERT_OK(mtl_model_finalize(m));
    const int64_t np = mtl_model_param_count(m);
    ASSERT(np <= 2048);
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_get_params(m, buf, np - 1));
    ASSERT_MSG_HAS("parameters");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_params(m, NULL, np));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_params(NULL, buf, np));
    for (int64_t i = 0; i < np; i++) buf[i] = (float)i * 0.001f;
    ASSERT_OK(mtl_model_set_params(m, buf, np));
    float back[2048];
    ASSERT_OK(mtl_model_get_params(m, back, np));
    ASSERT(memcmp(buf, back, (size_t)np * sizeof(float)) == 0);
    /* a NaN is refused, naming its block; nothing changes */
    int64_t off = tn_block(m, "task.fast.out.bias", NULL, NULL);
    buf[off] = NAN;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_set_params(m, buf, np));
    ASSERT_MSG_HAS("task.fast.out.bias");
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_set_params(m, buf, np + 1));
    ASSERT_OK(mtl_model_get_params(m, back, np));
    ASSERT(back[off] == (float)off * 0.001f);
    mtl_model_destroy(m);
    return 0;
}

TEST(bad_definitions)
{
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_create(NULL, NULL, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_create(&m, NULL, 0));
    ASSERT_MSG_HAS("n_inputs");
    ASSERT(m == NULL);
    ASSERT_OK(mtl_model_create(&m, NULL, 4));

    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(NULL, 4, MTL_ACT_RELU, 0, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 0, MTL_ACT_RELU, 0, 0));
    ASSERT_MSG_HAS("units");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, (mtl_activation)7, 0, 0));
    ASSERT_MSG_HAS("activation");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, (mtl_activation)-1, 0, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, MTL_ACT_RELU, 1.0f, 0));
    ASSERT_MSG_HAS("dropout");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, MTL_ACT_RELU, -0.1f, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, MTL_ACT_RELU, NAN, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_trunk_layer(m, 4, MTL_ACT_RELU, 0, 2u));
    ASSERT_MSG_HAS("flags");
    ASSERT_EQ_INT(mtl_model_layer_count(m), 0); /* nothing was added */

    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, NULL, MTL_TASK_REGRESSION, 1, &t));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "", MTL_TASK_REGRESSION, 1, &t));
    char longname[300];
    memset(longname, 'a', sizeof longname);
    longname[256] = '\0';
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, longname, MTL_TASK_REGRESSION, 1, &t));
    ASSERT_MSG_HAS("255");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "bad\xc3(", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_MSG_HAS("UTF-8");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "x", (mtl_task_type)4, 1, &t));
    ASSERT_MSG_HAS("type");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "x", MTL_TASK_MULTICLASS, 1, &t));
    ASSERT_MSG_HAS("K");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "x", MTL_TASK_REGRESSION, 0, &t));
    ASSERT_MSG_HAS("n_outputs");
    ASSERT_OK(mtl_model_add_task(m, "k\xc3\xa9", MTL_TASK_REGRESSION, 1, &t)); /* "ké" */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_task(m, "k\xc3\xa9", MTL_TASK_BINARY, 1, &t));
    ASSERT_MSG_HAS("already used");
    ASSERT_EQ_INT(mtl_model_task_count(m), 1);

    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_head_layer(m, 1, 4, MTL_ACT_RELU, 0, 0));
    ASSERT_MSG_HAS("task 1");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_head_layer(m, -1, 4, MTL_ACT_RELU, 0, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_add_head_layer(m, 0, 0, MTL_ACT_RELU, 0, 0));
    ASSERT_MSG_HAS("units");

    /* task options */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_LR_MULTIPLIER, 2.0));
    ASSERT_MSG_HAS("trainer");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_LOSS_WEIGHT, -1.0));
    ASSERT_MSG_HAS("MTL_TASK_OPT_LOSS_WEIGHT");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_LOSS_WEIGHT, NAN));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, 0.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_LOSS, 1.0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_BCE));
    ASSERT_MSG_HAS("BCE");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, 99));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, 3, MTL_TASK_OPT_LOSS, MTL_LOSS_MSE));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, 0, 12345, 1));
    ASSERT_OK(mtl_model_add_task(m, "b", MTL_TASK_BINARY, 1, &t));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, t, MTL_TASK_OPT_LOSS, MTL_LOSS_MSE));
    ASSERT_MSG_HAS("'b'");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, t, MTL_TASK_OPT_STANDARDIZE, 1));
    ASSERT_MSG_HAS("regression");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_task_i64(m, t, MTL_TASK_OPT_LOG_TARGET, 1));
    ASSERT_OK(mtl_model_set_task_i64(m, t, MTL_TASK_OPT_STANDARDIZE, 0));
    double v;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_LR_MULTIPLIER, &v));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_task_f64(m, 0, MTL_TASK_OPT_LOSS_WEIGHT, NULL));
    int64_t iv;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_task_i64(m, 0, MTL_TASK_OPT_LOSS_WEIGHT, &iv));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_get_task_i64(NULL, 0, MTL_TASK_OPT_LOSS, &iv));

    /* read-back with bad arguments */
    const char *name;
    mtl_task_type type;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_task_name(m, 5, &name));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_task_name(m, 0, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_task_type(NULL, 0, &type));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_task_outputs(m, 0, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_task_columns(m, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_find_task(m, NULL, &iv));
    ASSERT_EQ_INT(mtl_model_task_count(NULL), 0);
    ASSERT_EQ_INT(mtl_model_param_count(NULL), 0);
    ASSERT_EQ_INT(mtl_model_is_finalized(NULL), 0);

    /* wrong state */
    ASSERT_OK(mtl_model_finalize(m));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_finalize(m));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_add_trunk_layer(m, 4, MTL_ACT_RELU, 0, 0));
    ASSERT_MSG_HAS("finalized");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_add_task(m, "c", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_add_head_layer(m, 0, 4, MTL_ACT_RELU, 0, 0));
    mtl_model_destroy(m);

    /* no task */
    ASSERT_OK(mtl_model_create(&m, NULL, 4));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_finalize(m));
    ASSERT_MSG_HAS("no task");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_finalize(NULL));
    mtl_model_destroy(m);
    mtl_model_destroy(NULL);
    return 0;
}

TEST(wrong_state_handles)
{
    mtl_model *m = three_task_model(NULL);
    ASSERT(m);
    mtl_workspace *ws = NULL;
    mtl_trainer *tr = NULL;
    float x[6] = { 0 }, out[6];
    ASSERT_STATUS(MTL_ERR_STATE, mtl_workspace_create(&ws, m, 4));
    ASSERT_MSG_HAS("finalized");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_create(&tr, m, 4));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_predict(m, ws, 1, x, 6, out, 6));
    ASSERT(ws == NULL && tr == NULL);
    ASSERT_OK(mtl_model_finalize(m));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_workspace_create(&ws, m, 0));
    ASSERT_MSG_HAS("max_batch");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_workspace_create(NULL, m, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_workspace_create(&ws, NULL, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_create(&tr, m, 0));
    ASSERT_MSG_HAS("max_batch");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_create(&tr, NULL, 4));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_create(NULL, m, 4));
    ASSERT(ws == NULL && tr == NULL);
    mtl_workspace_destroy(NULL);
    mtl_trainer_destroy(NULL);
    mtl_model_destroy(m);
    return 0;
}

/* An allocator that fails the n-th allocation (and counts live blocks). */
typedef struct fail_alloc {
    long countdown; /* allocations left before one fails; < 0: never */
    long live;
} fail_alloc;

static void *fa_alloc(void *user, size_t size, size_t alignment)
{
    fail_alloc *f = user;
    if (f->countdown == 0) return NULL;
    if (f->countdown > 0) f->countdown--;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    f->live++;
    return p;
}

static void fa_free(void *user, void *p)
{
    fail_alloc *f = user;
    f->live--;
    free(p);
}

/* Build model, workspace and trainer, failing each allocation in turn:
 * every failure must be MTL_ERR_OUT_OF_MEMORY, leave no handle and leak
 * nothing (the live count returns to zero). */
TEST(allocation_failures_are_clean)
{
    int completed = 0;
    for (long k = 0; k < 400 && !completed; k++) {
        fail_alloc fa = { k, 0 };
        mtl_allocator al = MTL_ALLOCATOR_INIT;
        al.alloc = fa_alloc;
        al.free = fa_free;
        al.user = &fa;
        mtl_context *ctx = NULL;
        fa.countdown = -1;
        ASSERT_OK(mtl_context_create(&ctx, &al));
        fa.countdown = k;
        mtl_model *m = NULL;
        mtl_workspace *ws = NULL;
        mtl_trainer *tr = NULL;
        int64_t t;
        mtl_status s = mtl_model_create(&m, ctx, 5);
        if (s == MTL_OK) s = mtl_model_add_trunk_layer(m, 8, MTL_ACT_RELU, 0.1f, MTL_LAYER_NORM);
        if (s == MTL_OK) s = mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 2, &t);
        if (s == MTL_OK) s = mtl_model_add_head_layer(m, t, 4, MTL_ACT_GELU, 0.2f, MTL_LAYER_NORM);
        if (s == MTL_OK) s = mtl_model_add_task(m, "b", MTL_TASK_MULTICLASS, 3, &t);
        if (s == MTL_OK) s = mtl_model_finalize(m);
        if (s == MTL_OK) s = mtl_workspace_create(&ws, m, 4);
        if (s == MTL_OK) s = mtl_trainer_create(&tr, m, 4);
        if (s == MTL_OK) {
            float x[2 * 5] = { 1, 2, 3, 4, 5, 5, 4, 3, 2, 1 }, y[2 * 3] = { 0.5f, -1, 2, NAN, 1, 0 }, out[2 * 5];
            s = mtl_trainer_step(tr, 2, x, 5, y, 3, NULL, 0, NULL, NULL);
            if (s == MTL_OK) s = mtl_model_predict(m, ws, 2, x, 5, out, 5);
            if (s == MTL_OK) completed = 1;
        }
        if (s != MTL_OK && s != MTL_ERR_OUT_OF_MEMORY)
            FAILF("allocation %ld failing gave %s: %s", k, mtl_status_string(s), mtl_last_error_message());
        if (s != MTL_OK) ASSERT(ws == NULL || tr == NULL);
        mtl_trainer_destroy(tr);
        mtl_workspace_destroy(ws);
        mtl_model_destroy(m);
        mtl_context_destroy(ctx);
        if (fa.live != 0) FAILF("allocation %ld failing leaked %ld blocks", k, fa.live);
    }
    ASSERT(completed);
    return 0;
}

TEST_MAIN(TEST_ENTRY(define_and_read_back), TEST_ENTRY(param_blocks_tile_the_buffer), TEST_ENTRY(initialisation),
          TEST_ENTRY(seeded_initialisation_is_reproducible), TEST_ENTRY(get_set_params), TEST_ENTRY(bad_definitions),
          TEST_ENTRY(wrong_state_handles), TEST_ENTRY(allocation_failures_are_clean))
