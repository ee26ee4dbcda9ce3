/* test_network_run.c -- forward, predict, losses and training of the
 * network against independent truths:
 *  - a double-precision reference forward written here from the parameter
 *    blocks, task by task (the library fuses the heads' first layers);
 *  - hand-computed losses with missing labels, masks and sample weights;
 *  - exactly zero head gradients for tasks without labels;
 *  - bitwise determinism (same seed; 1 vs 2 threads);
 *  - batch-1 / chunked / concurrent predict agreeing with batched predict;
 *  - the "done when": a trunk + regression, binary and 3-class
 *    heads trained with plain SGD on a synthetic problem, losses falling;
 *  - bad arguments to predict, the workspace and the trainer. */
#include <pthread.h>

#include "test_network_common.h"

enum { RN_IN = 5, RN_TW = 5, RN_OW = 7 }; /* targets r0 r1 b c s; outputs r0 r1 b c0 c1 c2 s */

/* trunk 5 -> 8 relu -> 6 tanh+norm;  r: regression 2 (hidden 5 gelu+norm, 3 softplus);
 * b: binary 1 (no hidden);  c: 3 classes (hidden 4 leaky);  s: regression 1 (hidden 1 sigmoid) */
static mtl_model *rn_model(mtl_context *ctx, float dropout)
{
    mtl_model *m = NULL;
    int64_t t;
    mtl_status s = mtl_model_create(&m, ctx, RN_IN);
    if (s != MTL_OK) return NULL;
    s |= mtl_model_add_trunk_layer(m, 8, MTL_ACT_RELU, dropout, 0);
    s |= mtl_model_add_trunk_layer(m, 6, MTL_ACT_TANH, 0.0f, MTL_LAYER_NORM);
    s |= mtl_model_add_task(m, "r", MTL_TASK_REGRESSION, 2, &t);
    s |= mtl_model_add_head_layer(m, t, 5, MTL_ACT_GELU, dropout, MTL_LAYER_NORM);
    s |= mtl_model_add_head_layer(m, t, 3, MTL_ACT_SOFTPLUS, 0.0f, 0);
    s |= mtl_model_add_task(m, "b", MTL_TASK_BINARY, 1, &t);
    s |= mtl_model_add_task(m, "c", MTL_TASK_MULTICLASS, 3, &t);
    s |= mtl_model_add_head_layer(m, t, 4, MTL_ACT_LEAKY_RELU, 0.0f, 0);
    s |= mtl_model_add_task(m, "s", MTL_TASK_REGRESSION, 1, &t);
    s |= mtl_model_add_head_layer(m, t, 1, MTL_ACT_SIGMOID, 0.0f, 0);
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* ---- the reference forward (double, one task at a time) ------------------------ */

static double ref_act(mtl_activation act, double u)
{
    switch (act) {
    case MTL_ACT_RELU: return u > 0 ? u : 0;
    case MTL_ACT_LEAKY_RELU: return u > 0 ? u : 0.01 * u;
    case MTL_ACT_TANH: return tanh(u);
    case MTL_ACT_SIGMOID: return 1.0 / (1.0 + exp(-u));
    case MTL_ACT_GELU: return 0.5 * u * (1.0 + tanh(sqrt(2.0 / M_PI) * (u + 0.044715 * u * u * u)));
    case MTL_ACT_SOFTPLUS: return log1p(exp(u));
    default: return u;
    }
}

/* One dense layer on one row.  `prefix` names its blocks; `transposed`:
 * the weight block is fan_out x fan_in (a head's first layer). */
static int ref_layer(const mtl_model *m, const float *p, const char *prefix, int transposed, int64_t fan_in,
                     int64_t fan_out, mtl_activation act, int norm, const double *in, double *out)
{
    char name[128];
    int64_t r, c;
    snprintf(name, sizeof name, "%s.weight", prefix);
    const int64_t w = tn_block(m, name, &r, &c);
    ASSERT(w >= 0);
    ASSERT_EQ_INT(r, transposed ? fan_out : fan_in);
    ASSERT_EQ_INT(c, transposed ? fan_in : fan_out);
    snprintf(name, sizeof name, "%s.bias", prefix);
    const int64_t b = tn_block(m, name, NULL, NULL);
    ASSERT(b >= 0);
    for (int64_t j = 0; j < fan_out; j++) {
        double s = p[b + j];
        for (int64_t k = 0; k < fan_in; k++) s += in[k] * p[w + (transposed ? j * fan_in + k : k * fan_out + j)];
        out[j] = s;
    }
    if (norm) {
        snprintf(name, sizeof name, "%s.norm.gain", prefix);
        const int64_t g = tn_block(m, name, NULL, NULL);
        snprintf(name, sizeof name, "%s.norm.shift", prefix);
        const int64_t sh = tn_block(m, name, NULL, NULL);
        ASSERT(g >= 0 && sh >= 0);
        double mu = 0, var = 0;
        for (int64_t j = 0; j < fan_out; j++) mu += out[j] / (double)fan_out;
        for (int64_t j = 0; j < fan_out; j++) var += (out[j] - mu) * (out[j] - mu) / (double)fan_out;
        for (int64_t j = 0; j < fan_out; j++) out[j] = p[g + j] * (out[j] - mu) / sqrt(var + 1e-5) + p[sh + j];
    }
    for (int64_t j = 0; j < fan_out; j++) out[j] = ref_act(act, out[j]);
    return 0;
}

/* Embedding z[6] and outputs o[RN_OW] (probabilities) of one row. */
static int ref_forward(const mtl_model *m, const float *p, const float *x, double *z, double *o)
{
    double in[RN_IN], h1[8], a[8], b2[8];
    for (int k = 0; k < RN_IN; k++) in[k] = x[k];
    ASSERT(ref_layer(m, p, "trunk.0", 0, RN_IN, 8, MTL_ACT_RELU, 0, in, h1) == 0);
    ASSERT(ref_layer(m, p, "trunk.1", 0, 8, 6, MTL_ACT_TANH, 1, h1, z) == 0);
    /* r */
    ASSERT(ref_layer(m, p, "task.r.hidden.0", 1, 6, 5, MTL_ACT_GELU, 1, z, a) == 0);
    ASSERT(ref_layer(m, p, "task.r.hidden.1", 0, 5, 3, MTL_ACT_SOFTPLUS, 0, a, b2) == 0);
    ASSERT(ref_layer(m, p, "task.r.out", 0, 3, 2, MTL_ACT_IDENTITY, 0, b2, o) == 0);
    /* b */
    ASSERT(ref_layer(m, p, "task.b.out", 1, 6, 1, MTL_ACT_IDENTITY, 0, z, a) == 0);
    o[2] = 1.0 / (1.0 + exp(-a[0]));
    /* c */
    ASSERT(ref_layer(m, p, "task.c.hidden.0", 1, 6, 4, MTL_ACT_LEAKY_RELU, 0, z, a) == 0);
    ASSERT(ref_layer(m, p, "task.c.out", 0, 4, 3, MTL_ACT_IDENTITY, 0, a, b2) == 0);
    double mx = fmax(b2[0], fmax(b2[1], b2[2])), s = 0;
    for (int j = 0; j < 3; j++) s += exp(b2[j] - mx);
    for (int j = 0; j < 3; j++) o[3 + j] = exp(b2[j] - mx) / s;
    /* s */
    ASSERT(ref_layer(m, p, "task.s.hidden.0", 1, 6, 1, MTL_ACT_SIGMOID, 0, z, a) == 0);
    ASSERT(ref_layer(m, p, "task.s.out", 0, 1, 1, MTL_ACT_IDENTITY, 0, a, b2) == 0);
    o[6] = b2[0];
    return 0;
}

/* Biases start at 0 and norm gains at 1: perturb every parameter so the
 * reference also exercises them. */
static int jitter_params(mtl_model *m, uint64_t seed)
{
    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p);
    ASSERT(p);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    uint64_t rng = seed;
    for (int64_t i = 0; i < np; i++) p[i] += (float)(0.2 * tn_normal(&rng));
    ASSERT_OK(mtl_model_set_params(m, p, np));
    free(p);
    return 0;
}

TEST(fused_heads_match_separate_reference)
{
    mtl_model *m = rn_model(NULL, 0.0f);
    ASSERT(m);
    ASSERT(jitter_params(m, 5) == 0);
    enum { N = 13 };
    float x[N * RN_IN], out[N * RN_OW], emb[N * 6];
    uint64_t rng = 77;
    tn_inputs(N, RN_IN, x, RN_IN, &rng);
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, N));
    ASSERT_OK(mtl_model_predict(m, ws, N, x, RN_IN, out, RN_OW));
    ASSERT_OK(mtl_model_embed(m, ws, N, x, RN_IN, emb, 6));
    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p);
    ASSERT(p);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    for (int i = 0; i < N; i++) {
        double z[6], o[RN_OW];
        ASSERT(ref_forward(m, p, x + i * RN_IN, z, o) == 0);
        for (int j = 0; j < 6; j++) ASSERT_NEAR(emb[i * 6 + j], z[j], 1e-5, 1e-6);
        for (int j = 0; j < RN_OW; j++) ASSERT_NEAR(out[i * RN_OW + j], o[j], 1e-5, 1e-6);
    }
    free(p);
    mtl_workspace_destroy(ws);
    mtl_model_destroy(m);
    return 0;
}

/* ---- losses by hand ---------------------------------------------------------------- */

/* No trunk, no hidden layers, zero weights: every logit equals its bias,
 * so each loss has a closed form in the biases and targets. */
TEST(losses_by_hand)
{
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_OK(mtl_model_create(&m, NULL, 2));
    ASSERT_OK(mtl_model_add_task(m, "r", MTL_TASK_REGRESSION, 2, &t));
    ASSERT_OK(mtl_model_add_task(m, "b", MTL_TASK_BINARY, 1, &t));
    ASSERT_OK(mtl_model_add_task(m, "c", MTL_TASK_MULTICLASS, 3, &t));
    ASSERT_OK(mtl_model_finalize(m));
    ASSERT_EQ_INT(mtl_model_embedding_width(m), 2);
    const int64_t np = mtl_model_param_count(m);
    float p[64] = { 0 };
    ASSERT(np <= 64);
    const double br[2] = { 0.5, -1.0 }, bb = 0.3, bc[3] = { 0.1, 0.2, -0.3 };
    int64_t off = tn_block(m, "task.r.out.bias", NULL, NULL);
    p[off] = (float)br[0];
    p[off + 1] = (float)br[1];
    p[tn_block(m, "task.b.out.bias", NULL, NULL)] = (float)bb;
    off = tn_block(m, "task.c.out.bias", NULL, NULL);
    for (int j = 0; j < 3; j++) p[off + j] = (float)bc[j];
    ASSERT_OK(mtl_model_set_params(m, p, np));

    /* rows: targets r0 r1 b c; NaN = missing; mask hides row 2's r0 */
    const float x[6] = { 1, 2, -1, 0.5f, 3, 3 };
    const float y[3 * 4] = { 1.0f, NAN, 1.0f, 2.0f, /**/ -2.0f, 0.0f, NAN, 0.0f, /**/ 7.0f, 0.5f, 0.0f, NAN };
    const uint8_t mask[3 * 4] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1 };
    const float w[3] = { 1.0f, 2.0f, 0.5f };
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 3));
    double L[3];
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 3, x, 2, y, 4, mask, 4, w, L));
    /* regression, MSE: observed (row, col, w): (0,0,1) (1,0,2) (1,1,2) (2,1,0.5) */
    double sq = 1 * pow(br[0] - 1, 2) + 2 * pow(br[0] + 2, 2) + 2 * pow(br[1] - 0, 2) + 0.5 * pow(br[1] - 0.5, 2);
    ASSERT_NEAR(L[0], sq / 5.5, 1e-6, 0);
    /* binary: rows 0 (y=1, w 1) and 2 (y=0, w 0.5); BCE = softplus(b) - b y */
    double bce = 1 * (log1p(exp(bb)) - bb) + 0.5 * log1p(exp(bb));
    ASSERT_NEAR(L[1], bce / 1.5, 1e-6, 0);
    /* multiclass: rows 0 (class 2, w 1) and 1 (class 0, w 2) */
    double lse = log(exp(bc[0]) + exp(bc[1]) + exp(bc[2]));
    ASSERT_NEAR(L[2], (1 * (lse - bc[2]) + 2 * (lse - bc[0])) / 3.0, 1e-6, 0);

    /* MAE and Huber (delta 1.2) on the same labels */
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_MAE));
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 3, x, 2, y, 4, mask, 4, w, L));
    double ab = 1 * fabs(br[0] - 1) + 2 * fabs(br[0] + 2) + 2 * fabs(br[1]) + 0.5 * fabs(br[1] - 0.5);
    ASSERT_NEAR(L[0], ab / 5.5, 1e-6, 0);
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_HUBER));
    ASSERT_OK(mtl_model_set_task_f64(m, 0, MTL_TASK_OPT_HUBER_DELTA, 1.2));
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 3, x, 2, y, 4, mask, 4, w, L));
    /* residuals: -0.5 (quadratic), 2.5 (linear), -1 (quadratic), -1.5 (linear) */
    double hu = 1 * 0.5 * 0.25 + 2 * 1.2 * (2.5 - 0.6) + 2 * 0.5 * 1.0 + 0.5 * 1.2 * (1.5 - 0.6);
    ASSERT_NEAR(L[0], hu / 5.5, 1e-6, 0);

    /* no mask, no weights: plain means over non-NaN labels */
    ASSERT_OK(mtl_model_set_task_i64(m, 0, MTL_TASK_OPT_LOSS, MTL_LOSS_MSE));
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 3, x, 2, y, 4, NULL, 0, NULL, L));
    sq = pow(br[0] - 1, 2) + pow(br[0] + 2, 2) + pow(br[0] - 7, 2) + pow(br[1], 2) + pow(br[1] - 0.5, 2);
    ASSERT_NEAR(L[0], sq / 5, 1e-6, 0);

    /* a task without any label contributes 0, and its head gets exactly 0 */
    const float y2[3 * 4] = { 1, 1, NAN, 1, 1, 1, NAN, 1, 1, 1, NAN, 1 };
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 3, x, 2, y2, 4, NULL, 0, NULL, L));
    ASSERT(L[1] == 0.0);
    float g[64];
    ASSERT_OK(mtl_trainer_get_gradients(tr, g, np));
    off = tn_block(m, "task.b.out.weight", NULL, NULL);
    ASSERT(g[off] == 0.0f && g[off + 1] == 0.0f);
    ASSERT(g[tn_block(m, "task.b.out.bias", NULL, NULL)] == 0.0f);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* ---- masked tasks --------------------------------------------------------------------- */

static int grads_for(mtl_model *m, const float *x, const float *y, const uint8_t *mask, int n, float *g, double *L)
{
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, n));
    ASSERT_OK(mtl_trainer_compute_gradients(tr, n, x, RN_IN, y, RN_TW, mask, RN_TW, NULL, L));
    ASSERT_OK(mtl_trainer_get_gradients(tr, g, mtl_model_param_count(m)));
    mtl_trainer_destroy(tr);
    return 0;
}

TEST(masked_task_gets_exactly_zero_head_gradient)
{
    mtl_model *m = rn_model(NULL, 0.0f);
    ASSERT(m);
    ASSERT(jitter_params(m, 9) == 0);
    enum { N = 10 };
    float x[N * RN_IN], y[N * (RN_TW)];
    uint8_t mask[N * (RN_TW)];
    uint64_t rng = 3;
    tn_inputs(N, RN_IN, x, RN_IN, &rng);
    tn_targets(m, N, y, RN_TW, &rng, 0);
    memset(mask, 1, sizeof mask);
    for (int i = 0; i < N; i++) mask[i * (RN_TW) + 3] = 0; /* task c: every label masked */
    const int64_t np = mtl_model_param_count(m);
    float *g1 = malloc((size_t)np * sizeof(float)), *g2 = malloc((size_t)np * sizeof(float));
    ASSERT(g1 && g2);
    double L[4];
    ASSERT(grads_for(m, x, y, mask, N, g1, L) == 0);
    ASSERT(L[2] == 0.0);
    ASSERT(L[0] > 0.0 && L[1] > 0.0 && L[3] > 0.0);
    int zeros = 0;
    for (int64_t b = 0; b < mtl_model_param_block_count(m); b++) {
        const char *name;
        int64_t off, r, c, ld;
        ASSERT_OK(mtl_model_param_block(m, b, &name, &off, &r, &c, &ld));
        const int is_c = strncmp(name, "task.c.", 7) == 0;
        int64_t nz = 0;
        for (int64_t i = 0; i < r * c; i++) nz += g1[off + i] != 0.0f;
        if (is_c && nz) FAILF("block %s of the masked task has %lld non-zero gradients", name, (long long)nz);
        if (!is_c && strstr(name, "weight") && nz == 0) FAILF("block %s has an all-zero gradient", name);
        zeros += is_c;
    }
    ASSERT(zeros == 4);
    /* masking every label of c == giving c loss weight 0: same gradient, bit for bit */
    ASSERT_OK(mtl_model_set_task_f64(m, 2, MTL_TASK_OPT_LOSS_WEIGHT, 0.0));
    ASSERT(grads_for(m, x, y, NULL, N, g2, L) == 0);
    ASSERT(memcmp(g1, g2, (size_t)np * sizeof(float)) == 0);
    /* NaN labels instead of the mask: same again */
    ASSERT_OK(mtl_model_set_task_f64(m, 2, MTL_TASK_OPT_LOSS_WEIGHT, 1.0));
    for (int i = 0; i < N; i++) y[i * (RN_TW) + 3] = NAN;
    ASSERT(grads_for(m, x, y, NULL, N, g2, L) == 0);
    ASSERT(memcmp(g1, g2, (size_t)np * sizeof(float)) == 0);
    free(g1);
    free(g2);
    mtl_model_destroy(m);
    return 0;
}

/* ---- determinism --------------------------------------------------------------------- */

/* A wider model (so BLIS has something to split over threads), dropout
 * everywhere, a few SGD steps; returns params and predictions. */
static int run_steps(int64_t seed, int64_t threads, float *params, int64_t *np, float *pred)
{
    mtl_context *ctx = tn_context(seed, threads);
    ASSERT(ctx);
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_OK(mtl_model_create(&m, ctx, 40));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 160, MTL_ACT_RELU, 0.2f, 0));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 128, MTL_ACT_GELU, 0.1f, MTL_LAYER_NORM));
    ASSERT_OK(mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 96, MTL_ACT_RELU, 0.1f, 0));
    ASSERT_OK(mtl_model_add_task(m, "b", MTL_TASK_MULTICLASS, 4, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 64, MTL_ACT_TANH, 0.0f, MTL_LAYER_NORM));
    ASSERT_OK(mtl_model_finalize(m));
    mtl_context_destroy(ctx);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 96));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAM));
    enum { N = 96 };
    static float x[N * 40], y[N * 2];
    uint64_t rng = 1234;
    for (int s = 0; s < 4; s++) {
        tn_inputs(N, 40, x, 40, &rng);
        tn_targets(m, N, y, 2, &rng, 1);
        ASSERT_OK(mtl_trainer_step(tr, N, x, 40, y, 2, NULL, 0, NULL, NULL));
    }
    *np = mtl_model_param_count(m);
    ASSERT_OK(mtl_model_get_params(m, params, *np));
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, N));
    ASSERT_OK(mtl_model_predict(m, ws, N, x, 40, pred, 5));
    mtl_workspace_destroy(ws);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(bitwise_determinism_seeds_and_threads)
{
    enum { CAP = 60000 };
    float *a = malloc(CAP * sizeof(float)), *b = malloc(CAP * sizeof(float)), *c = malloc(CAP * sizeof(float));
    float *d = malloc(CAP * sizeof(float));
    float pa[96 * 5], pb[96 * 5], pc[96 * 5], pd[96 * 5];
    int64_t na, nb, nc, nd;
    ASSERT(a && b && c && d);
    ASSERT(run_steps(5, 1, a, &na, pa) == 0);
    ASSERT(na <= CAP);
    ASSERT(run_steps(5, 1, b, &nb, pb) == 0);
    ASSERT(run_steps(5, 2, c, &nc, pc) == 0);
    ASSERT(run_steps(6, 1, d, &nd, pd) == 0);
    ASSERT(memcmp(a, b, (size_t)na * sizeof(float)) == 0);
    ASSERT(memcmp(pa, pb, sizeof pa) == 0);
    /* two BLIS threads (every GEMM threaded: PARALLEL_MIN_FLOPS 0) */
    ASSERT(memcmp(a, c, (size_t)na * sizeof(float)) == 0);
    ASSERT(memcmp(pa, pc, sizeof pa) == 0);
    /* another seed: other initial weights and dropout masks */
    ASSERT(memcmp(a, d, (size_t)na * sizeof(float)) != 0);
    free(a);
    free(b);
    free(c);
    free(d);
    return 0;
}

/* ---- predict paths ---------------------------------------------------------------------- */

TEST(predict_paths_agree)
{
    mtl_model *m = rn_model(NULL, 0.3f); /* dropout must not act in predict */
    ASSERT(m);
    ASSERT(jitter_params(m, 21) == 0);
    enum { N = 23 };
    float x[N * RN_IN], full[N * RN_OW], one[RN_OW], chunked[N * (RN_OW + 2)], lab[N * RN_TW], emb[N * 6];
    uint64_t rng = 99;
    tn_inputs(N, RN_IN, x, RN_IN, &rng);
    mtl_workspace *big = NULL, *small = NULL, *single = NULL;
    ASSERT_OK(mtl_workspace_create(&big, m, 64));
    ASSERT_OK(mtl_workspace_create(&small, m, 5));
    ASSERT_OK(mtl_workspace_create(&single, m, 1));
    ASSERT_OK(mtl_model_predict(m, big, N, x, RN_IN, full, RN_OW));
    /* chunks of 5 into a wider out matrix */
    ASSERT_OK(mtl_model_predict(m, small, N, x, RN_IN, chunked, RN_OW + 2));
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < RN_OW; j++) ASSERT_NEAR(chunked[i * (RN_OW + 2) + j], full[i * RN_OW + j], 1e-6, 1e-7);
        /* batch 1: gemv per layer instead of GEMM; same values up to rounding */
        ASSERT_OK(mtl_model_predict(m, single, 1, x + i * RN_IN, RN_IN, one, RN_OW));
        for (int j = 0; j < RN_OW; j++) ASSERT_NEAR(one[j], full[i * RN_OW + j], 1e-5, 1e-6);
        /* probabilities are probabilities */
        ASSERT(full[i * RN_OW + 2] > 0.0f && full[i * RN_OW + 2] < 1.0f);
        ASSERT_NEAR(full[i * RN_OW + 3] + full[i * RN_OW + 4] + full[i * RN_OW + 5], 1.0, 1e-6, 0);
    }
    ASSERT_OK(mtl_model_predict_labels(m, small, N, x, RN_IN, lab, RN_TW));
    ASSERT_OK(mtl_model_embed(m, small, N, x, RN_IN, emb, 6));
    for (int i = 0; i < N; i++) {
        const float *o = full + i * RN_OW, *l = lab + i * RN_TW;
        ASSERT(l[0] == chunked[i * (RN_OW + 2)] && l[1] == chunked[i * (RN_OW + 2) + 1]);
        ASSERT(l[2] == (o[2] > 0.5f ? 1.0f : 0.0f));
        int best = 0;
        for (int j = 1; j < 3; j++)
            if (o[3 + j] > o[3 + best]) best = j;
        ASSERT(l[3] == (float)best);
        ASSERT(l[4] == o[6]);
    }
    /* n = 0 is a no-op */
    ASSERT_OK(mtl_model_predict(m, big, 0, NULL, RN_IN, NULL, RN_OW));
    mtl_workspace_destroy(big);
    mtl_workspace_destroy(small);
    mtl_workspace_destroy(single);
    mtl_model_destroy(m);
    return 0;
}

typedef struct predict_job {
    const mtl_model *m;
    const float *x;
    const float *expect;
    int n, ok;
} predict_job;

static void *predict_thread(void *arg)
{
    predict_job *j = arg;
    mtl_workspace *ws = NULL;
    float out[32 * RN_OW];
    j->ok = mtl_workspace_create(&ws, j->m, 8) == MTL_OK;
    for (int rep = 0; rep < 200 && j->ok; rep++) {
        j->ok = mtl_model_predict(j->m, ws, j->n, j->x, RN_IN, out, RN_OW) == MTL_OK &&
                memcmp(out, j->expect, (size_t)j->n * RN_OW * sizeof(float)) == 0;
    }
    mtl_workspace_destroy(ws);
    return NULL;
}

TEST(concurrent_predict_on_a_const_model)
{
    mtl_model *m = rn_model(NULL, 0.0f);
    ASSERT(m);
    enum { N = 32, THREADS = 4 };
    float x[N * RN_IN], expect[N * RN_OW];
    uint64_t rng = 5;
    tn_inputs(N, RN_IN, x, RN_IN, &rng);
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 8));
    ASSERT_OK(mtl_model_predict(m, ws, N, x, RN_IN, expect, RN_OW));
    mtl_workspace_destroy(ws);
    pthread_t th[THREADS];
    predict_job jobs[THREADS];
    for (int k = 0; k < THREADS; k++) {
        jobs[k] = (predict_job){ m, x, expect, N, 0 };
        ASSERT(pthread_create(&th[k], NULL, predict_thread, &jobs[k]) == 0);
    }
    for (int k = 0; k < THREADS; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < THREADS; k++) ASSERT(jobs[k].ok);
    mtl_model_destroy(m);
    return 0;
}

/* ---- done when: training on a synthetic problem ------------------------------------------ */

/* Targets: a smooth regression function, a linear-threshold binary label,
 * and a 3-class label from the larger of two projections; ~15% of labels
 * missing.  x ~ N(0, 1), 8 features. */
static void synth(int n, float *x, float *y, uint64_t *rng)
{
    tn_inputs(n, 8, x, 8, rng);
    for (int i = 0; i < n; i++) {
        const float *r = x + i * 8;
        float *t = y + i * 3;
        t[0] = (float)(sin(r[0]) + 0.5 * r[1] * r[2]);
        t[1] = r[3] + 0.5f * r[4] > 0.0f ? 1.0f : 0.0f;
        const double a = r[5] + r[6], b = r[6] - r[7];
        t[2] = a > 0.7 ? 2.0f : (b > 0 ? 1.0f : 0.0f);
        for (int j = 0; j < 3; j++)
            if (tn_uniform(rng) < 0.15) t[j] = NAN;
    }
}

TEST(training_reduces_every_task_loss)
{
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_OK(mtl_model_create(&m, NULL, 8));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 32, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 32, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "energy", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 16, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "fast", MTL_TASK_BINARY, 1, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 16, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "mechanism", MTL_TASK_MULTICLASS, 3, &t));
    ASSERT_OK(mtl_model_add_head_layer(m, t, 16, MTL_ACT_RELU, 0.0f, 0));
    ASSERT_OK(mtl_model_finalize(m));
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 256));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD)); /* plain gradient descent */
    ASSERT_OK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 0.1));
    static float xv[256 * 8], yv[256 * 3], xb[32 * 8], yb[32 * 3];
    uint64_t rng = 2024;
    synth(256, xv, yv, &rng); /* a fixed validation batch */
    double before[3], after[3], L[3];
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 256, xv, 8, yv, 3, NULL, 0, NULL, before));
    for (int s = 0; s < 1500; s++) {
        synth(32, xb, yb, &rng);
        ASSERT_OK(mtl_trainer_step(tr, 32, xb, 8, yb, 3, NULL, 0, NULL, L));
    }
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 256, xv, 8, yv, 3, NULL, 0, NULL, after));
    printf("  losses before %.4f %.4f %.4f, after %.4f %.4f %.4f\n", before[0], before[1], before[2], after[0],
           after[1], after[2]);
    ASSERT(after[0] < 0.5 * before[0]);
    ASSERT(after[1] < 0.5 * before[1]);
    ASSERT(after[2] < 0.6 * before[2]);
    /* and the predictions are better than chance */
    mtl_workspace *ws = NULL;
    float lab[256 * 3];
    ASSERT_OK(mtl_workspace_create(&ws, m, 64));
    ASSERT_OK(mtl_model_predict_labels(m, ws, 256, xv, 8, lab, 3));
    int right[3] = { 0 }, seen[3] = { 0 };
    for (int i = 0; i < 256; i++)
        for (int j = 1; j < 3; j++)
            if (!isnan(yv[i * 3 + j])) {
                seen[j]++;
                right[j] += lab[i * 3 + j] == yv[i * 3 + j];
            }
    ASSERT(right[1] > 0.85 * seen[1]);
    ASSERT(right[2] > 0.75 * seen[2]);
    mtl_workspace_destroy(ws);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* ---- bad input ---------------------------------------------------------------------------- */

TEST(predict_bad_input)
{
    mtl_model *m = rn_model(NULL, 0.0f), *other = rn_model(NULL, 0.0f);
    ASSERT(m && other);
    mtl_workspace *ws = NULL, *wo = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 4));
    ASSERT_OK(mtl_workspace_create(&wo, other, 4));
    float x[3 * RN_IN] = { 0 }, out[3 * RN_OW];
    for (int i = 0; i < 3 * RN_OW; i++) out[i] = 42.0f;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(NULL, ws, 3, x, RN_IN, out, RN_OW));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(m, NULL, 3, x, RN_IN, out, RN_OW));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(m, wo, 3, x, RN_IN, out, RN_OW));
    ASSERT_MSG_HAS("another model");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(m, ws, -1, x, RN_IN, out, RN_OW));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(m, ws, 3, NULL, RN_IN, out, RN_OW));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_predict(m, ws, 3, x, RN_IN, NULL, RN_OW));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_predict(m, ws, 3, x, RN_IN - 1, out, RN_OW));
    ASSERT_MSG_HAS("ldx");
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_predict(m, ws, 3, x, RN_IN, out, RN_OW - 1));
    ASSERT_MSG_HAS("ldout");
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_predict_labels(m, ws, 3, x, RN_IN, out, RN_TW - 1));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_model_embed(m, ws, 3, x, RN_IN, out, 5));
    x[1 * RN_IN + 2] = NAN;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_predict(m, ws, 3, x, RN_IN, out, RN_OW));
    ASSERT_MSG_HAS("row 1, column 2");
    x[1 * RN_IN + 2] = -INFINITY;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_predict_labels(m, ws, 3, x, RN_IN, out, RN_OW));
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_embed(m, ws, 3, x, RN_IN, out, RN_OW));
    for (int i = 0; i < 3 * RN_OW; i++) ASSERT(out[i] == 42.0f); /* untouched by every failure */
    mtl_workspace_destroy(ws);
    mtl_workspace_destroy(wo);
    mtl_model_destroy(m);
    mtl_model_destroy(other);
    return 0;
}

TEST(trainer_bad_input)
{
    mtl_model *m = rn_model(NULL, 0.0f);
    ASSERT(m);
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 4));
    float x[4 * RN_IN] = { 0 }, w[4] = { 1, 1, 1, 1 };
    float y[4 * RN_TW] = { 0.5f, -1, 1, 2, 0.1f, 0, 0, 0, 1, 0.2f, 1, 1, 1, 0, 0.3f, 3, 3, 0, 2, 0.4f };
    const int64_t np = mtl_model_param_count(m);
    float *g = malloc((size_t)np * sizeof *g);
    ASSERT(g);
    ASSERT_STATUS(MTL_ERR_STATE, mtl_trainer_get_gradients(tr, g, np));
    ASSERT_MSG_HAS("no gradient");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(NULL, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_step(tr, 5, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("max_batch");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 0, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, NULL, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, x, RN_IN, NULL, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_step(tr, 4, x, RN_IN - 1, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW - 1, NULL, 0, NULL, NULL));
    uint8_t mask[4 * RN_TW];
    memset(mask, 1, sizeof mask);
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, mask, 2, NULL, NULL));
    ASSERT_MSG_HAS("ldmask");
    x[2 * RN_IN + 3] = NAN;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("row 2, column 3");
    x[2 * RN_IN + 3] = 0;
    y[1 * RN_TW + 0] = INFINITY;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_compute_gradients(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("task 'r'");
    y[1 * RN_TW + 0] = 0;
    y[2 * RN_TW + 3] = 3; /* class 3 of K = 3 */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("task 'c', row 2");
    y[2 * RN_TW + 3] = 1.5f;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("class label 1.5");
    mask[2 * RN_TW + 3] = 0; /* a masked label is missing: its value does not matter */
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 4, x, RN_IN, y, RN_TW, mask, RN_TW, NULL, NULL));
    y[2 * RN_TW + 3] = 1;
    y[3 * RN_TW + 2] = 2; /* binary label 2 */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, NULL, NULL));
    ASSERT_MSG_HAS("task 'b'");
    y[3 * RN_TW + 2] = 1;
    w[1] = -1;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, w, NULL));
    ASSERT_MSG_HAS("row 1");
    w[1] = NAN;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, w, NULL));
    w[1] = 1;
    ASSERT_EQ_INT(mtl_trainer_step_count(tr), 0); /* nothing above took a step */

    /* a non-finite loss: the step fails, naming the task, parameters unchanged */
    float *p = malloc((size_t)np * sizeof *p), *q = malloc((size_t)np * sizeof *q);
    ASSERT(p && q);
    for (int64_t i = 0; i < np; i++) p[i] = 3e18f;
    ASSERT_OK(mtl_model_set_params(m, p, np));
    for (int i = 0; i < 4 * RN_IN; i++) x[i] = 1e6f;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, 4, x, RN_IN, y, RN_TW, NULL, 0, w, NULL));
    ASSERT_MSG_HAS("task '");
    ASSERT_OK(mtl_model_get_params(m, q, np));
    ASSERT(memcmp(p, q, (size_t)np * sizeof *p) == 0);
    ASSERT_EQ_INT(mtl_trainer_step_count(tr), 0);

    ASSERT_OK(mtl_model_get_params(m, p, np));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_gradients(NULL, g, np));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_trainer_get_gradients(tr, NULL, np));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_trainer_get_gradients(tr, g, np - 1));
    free(p);
    free(q);
    free(g);
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

/* A finite loss whose gradient overflows: the output weights are the
 * largest float and the representation is exactly 0 (zero weights and
 * biases before tanh), so logits = bias are finite but dz = dY·W is Inf.
 * With a hidden head layer the overflow lands in that task's head. */
static int overflow_step(int hidden, const char *expect)
{
    mtl_model *m = NULL;
    int64_t t;
    ASSERT_OK(mtl_model_create(&m, NULL, 3));
    ASSERT_OK(mtl_model_add_trunk_layer(m, 4, MTL_ACT_TANH, 0.0f, 0));
    ASSERT_OK(mtl_model_add_task(m, "quiet", MTL_TASK_REGRESSION, 1, &t));
    ASSERT_OK(mtl_model_add_task(m, "loud", MTL_TASK_REGRESSION, 1, &t));
    if (hidden) ASSERT_OK(mtl_model_add_head_layer(m, t, 2, MTL_ACT_TANH, 0.0f, 0));
    ASSERT_OK(mtl_model_finalize(m));
    const int64_t np = mtl_model_param_count(m);
    float p[64] = { 0 }, q[64];
    ASSERT(np <= 64);
    ASSERT_OK(mtl_model_get_params(m, p, np));
    int64_t r = 0, c = 0, off;
    off = tn_block(m, "trunk.0.weight", &r, &c);
    for (int64_t i = 0; i < r * c; i++) p[off + i] = 0.0f; /* z is the same for every row */
    if (hidden) { /* the head's hidden layer sees z; the output layer is huge */
        off = tn_block(m, "task.loud.hidden.0.weight", &r, &c);
        for (int64_t i = 0; i < r * c; i++) p[off + i] = 0.5f;
        off = tn_block(m, "trunk.0.bias", &r, &c);
        for (int64_t i = 0; i < c; i++) p[off + i] = 0.3f; /* z != 0, so dW of the hidden layer overflows */
        off = tn_block(m, "task.loud.hidden.0.bias", &r, &c);
        for (int64_t i = 0; i < c; i++) p[off + i] = -0.5f * 4 * tanhf(0.3f); /* hidden pre-activation exactly ~0 */
        off = tn_block(m, "task.loud.out.weight", &r, &c);
        for (int64_t i = 0; i < r * c; i++) p[off + i] = 3e38f;
    } else {
        off = tn_block(m, "trunk.0.bias", &r, &c);
        for (int64_t i = 0; i < c; i++) p[off + i] = 0.0f;
        off = tn_block(m, "task.loud.out.weight", &r, &c);
        for (int64_t i = 0; i < r * c; i++) p[off + i] = 3e38f;
    }
    ASSERT_OK(mtl_model_set_params(m, p, np));
    mtl_trainer *tr = NULL;
    ASSERT_OK(mtl_trainer_create(&tr, m, 2));
    ASSERT_OK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_SGD));
    const float x[6] = { 1, -2, 0.5f, 0.25f, 1, -1 }, y[4] = { 0.1f, 10.0f, -0.3f, 20.0f }; /* |dY| > 1 for "loud" */
    double L[2] = { -1, -1 };
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_step(tr, 2, x, 3, y, 2, NULL, 0, NULL, L));
    ASSERT_MSG_HAS(expect);
    ASSERT(L[0] == -1); /* task_losses untouched on failure */
    ASSERT_OK(mtl_model_get_params(m, q, np));
    ASSERT(memcmp(p, q, (size_t)np * sizeof(float)) == 0);
    ASSERT_EQ_INT(mtl_trainer_step_count(tr), 0);
    /* the losses themselves were finite */
    ASSERT_OK(mtl_trainer_compute_gradients(tr, 2, x, 3, y, 2, NULL, 0, NULL, L));
    ASSERT(isfinite(L[0]) && isfinite(L[1]));
    mtl_trainer_destroy(tr);
    mtl_model_destroy(m);
    return 0;
}

TEST(non_finite_gradient_names_its_source)
{
    if (overflow_step(0, "gradient of the shared trunk")) return 1;
    return overflow_step(1, "gradient of task 'loud'");
}

TEST_MAIN(TEST_ENTRY(fused_heads_match_separate_reference), TEST_ENTRY(non_finite_gradient_names_its_source), TEST_ENTRY(losses_by_hand),
          TEST_ENTRY(masked_task_gets_exactly_zero_head_gradient), TEST_ENTRY(bitwise_determinism_seeds_and_threads),
          TEST_ENTRY(predict_paths_agree), TEST_ENTRY(concurrent_predict_on_a_const_model),
          TEST_ENTRY(training_reduces_every_task_loss), TEST_ENTRY(predict_bad_input), TEST_ENTRY(trainer_bad_input))
