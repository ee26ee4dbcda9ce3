/* test_network_numpy.c -- writes a small model's definition, parameters
 * (block by block, via mtl_model_param_block), a batch and everything the
 * library computes on it (predictions, embedding, per-task losses, the
 * gradient) into a directory, for tests/numpy_reference.py to recompute
 * independently with numpy.  Usage: test_network_numpy DIR
 *
 * Two scenarios: "plain" (NaN labels only) and "masked" (NaN labels, a
 * mask and sample weights, one of them zero). */
#include "test_network_common.h"

enum { NP_IN = 6, NP_N = 9 };

typedef struct np_task {
    const char *name;
    mtl_task_type type;
    int64_t n_outputs;
    mtl_loss loss;
    double weight, delta;
    int n_hidden;
    int64_t units[2];
    mtl_activation act[2];
    int norm[2];
} np_task;

static const np_task np_tasks[] = {
    { "energy", MTL_TASK_REGRESSION, 2, MTL_LOSS_MSE, 0.7, 1.0, 2, { 5, 3 }, { MTL_ACT_GELU, MTL_ACT_SOFTPLUS }, { 1, 0 } },
    { "fast", MTL_TASK_BINARY, 1, MTL_LOSS_BCE, 1.3, 1.0, 0, { 0 }, { 0 }, { 0 } },
    { "mech", MTL_TASK_MULTICLASS, 3, MTL_LOSS_CROSS_ENTROPY, 0.5, 1.0, 1, { 4 }, { MTL_ACT_LEAKY_RELU }, { 0 } },
    { "rate", MTL_TASK_REGRESSION, 1, MTL_LOSS_HUBER, 1.0, 0.4, 1, { 1 }, { MTL_ACT_SIGMOID }, { 0 } },
    { "flags", MTL_TASK_BINARY, 2, MTL_LOSS_BCE, 0.9, 1.0, 1, { 3 }, { MTL_ACT_TANH }, { 1 } },
    { "width", MTL_TASK_REGRESSION, 1, MTL_LOSS_MAE, 1.1, 1.0, 0, { 0 }, { 0 }, { 0 } },
};
enum { NP_TASKS = sizeof np_tasks / sizeof np_tasks[0] };

static const struct {
    int64_t units;
    mtl_activation act;
    int norm;
} np_trunk[] = { { 8, MTL_ACT_RELU, 0 }, { 7, MTL_ACT_TANH, 1 } };

static int write_file(const char *dir, const char *name, const void *data, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    size_t w = fwrite(data, 1, bytes, f);
    return fclose(f) != 0 || w != bytes;
}

static mtl_model *np_build(void)
{
    mtl_model *m = NULL;
    mtl_status s = mtl_model_create(&m, NULL, NP_IN);
    for (int i = 0; i < 2; i++)
        s |= mtl_model_add_trunk_layer(m, np_trunk[i].units, np_trunk[i].act, 0.0f, np_trunk[i].norm ? MTL_LAYER_NORM : 0);
    for (int t = 0; t < NP_TASKS; t++) {
        const np_task *k = &np_tasks[t];
        int64_t id;
        s |= mtl_model_add_task(m, k->name, k->type, k->n_outputs, &id);
        for (int j = 0; j < k->n_hidden; j++)
            s |= mtl_model_add_head_layer(m, id, k->units[j], k->act[j], 0.0f, k->norm[j] ? MTL_LAYER_NORM : 0);
        if (k->type == MTL_TASK_REGRESSION) s |= mtl_model_set_task_i64(m, id, MTL_TASK_OPT_LOSS, k->loss);
        s |= mtl_model_set_task_f64(m, id, MTL_TASK_OPT_LOSS_WEIGHT, k->weight);
        s |= mtl_model_set_task_f64(m, id, MTL_TASK_OPT_HUBER_DELTA, k->delta);
    }
    s |= mtl_model_finalize(m);
    if (s != MTL_OK) {
        fprintf(stderr, "building the model failed: %s\n", mtl_last_error_message());
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

static int write_spec(const char *dir, const mtl_model *m)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/spec.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "inputs %d\nrows %d\n", NP_IN, NP_N);
    for (int i = 0; i < 2; i++) fprintf(f, "trunk %lld %d %d\n", (long long)np_trunk[i].units, (int)np_trunk[i].act, np_trunk[i].norm);
    for (int t = 0; t < NP_TASKS; t++) {
        const np_task *k = &np_tasks[t];
        int64_t tc, oc;
        mtl_model_task_columns(m, t, &tc, &oc);
        fprintf(f, "task %s %d %lld %d %.17g %.17g %lld %lld\n", k->name, (int)k->type, (long long)k->n_outputs,
                (int)k->loss, k->weight, k->delta, (long long)tc, (long long)oc);
        for (int j = 0; j < k->n_hidden; j++)
            fprintf(f, "head %lld %d %d\n", (long long)k->units[j], (int)k->act[j], k->norm[j]);
    }
    for (int64_t b = 0; b < mtl_model_param_block_count(m); b++) {
        const char *name;
        int64_t off, r, c, ld;
        if (mtl_model_param_block(m, b, &name, &off, &r, &c, &ld) != MTL_OK) return 1;
        fprintf(f, "block %s %lld %lld %lld %lld\n", name, (long long)off, (long long)r, (long long)c, (long long)ld);
    }
    fprintf(f, "targets %lld\noutputs %lld\nparams %lld\nembedding %lld\n", (long long)mtl_model_target_width(m),
            (long long)mtl_model_output_width(m), (long long)mtl_model_param_count(m),
            (long long)mtl_model_embedding_width(m));
    return fclose(f) != 0;
}

static int scenario(const char *dir, mtl_model *m, int masked, uint64_t seed)
{
    const int64_t TW = mtl_model_target_width(m), OW = mtl_model_output_width(m), E = mtl_model_embedding_width(m);
    const int64_t np = mtl_model_param_count(m);
    float x[NP_N * NP_IN], y[NP_N * 16], w[NP_N], out[NP_N * 16], emb[NP_N * 16];
    uint8_t mask[NP_N * 16];
    double losses[NP_TASKS];
    uint64_t rng = seed;
    tn_inputs(NP_N, NP_IN, x, NP_IN, &rng);
    tn_targets(m, NP_N, y, TW, &rng, 1);
    for (int i = 0; i < NP_N * TW; i++) mask[i] = masked && tn_uniform(&rng) < 0.15 ? 0 : 1;
    for (int i = 0; i < NP_N; i++) w[i] = masked ? (float)(0.25 + 1.5 * tn_uniform(&rng)) : 1.0f;
    if (masked) w[4] = 0.0f;
    mtl_trainer *tr = NULL;
    mtl_workspace *ws = NULL;
    float *g = malloc((size_t)np * sizeof *g);
    if (!g || mtl_trainer_create(&tr, m, NP_N) != MTL_OK || mtl_workspace_create(&ws, m, 4) != MTL_OK ||
        mtl_trainer_compute_gradients(tr, NP_N, x, NP_IN, y, TW, masked ? mask : NULL, TW, masked ? w : NULL, losses) !=
            MTL_OK ||
        mtl_trainer_get_gradients(tr, g, np) != MTL_OK || mtl_model_predict(m, ws, NP_N, x, NP_IN, out, OW) != MTL_OK ||
        mtl_model_embed(m, ws, NP_N, x, NP_IN, emb, E) != MTL_OK) {
        fprintf(stderr, "libmtl failed: %s\n", mtl_last_error_message());
        return 1;
    }
    const char *sfx = masked ? "masked" : "plain";
    char name[64];
    int bad = 0;
#define W(base, ptr, bytes)                                   \
    snprintf(name, sizeof name, "%s.%s", base, sfx);          \
    bad |= write_file(dir, name, ptr, bytes)
    W("x", x, sizeof x);
    W("y", y, (size_t)(NP_N * TW) * sizeof(float));
    W("mask", mask, (size_t)(NP_N * TW));
    W("w", w, sizeof w);
    W("out", out, (size_t)(NP_N * OW) * sizeof(float));
    W("emb", emb, (size_t)(NP_N * E) * sizeof(float));
    W("losses", losses, sizeof losses);
    W("grads", g, (size_t)np * sizeof(float));
#undef W
    free(g);
    mtl_workspace_destroy(ws);
    mtl_trainer_destroy(tr);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    mtl_model *m = np_build();
    if (!m) return 1;
    /* Parameters as initialised, then jittered so that biases, norm gains
     * and shifts are not the trivial 0 / 1. */
    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p);
    uint64_t rng = 4242;
    if (!p || mtl_model_get_params(m, p, np) != MTL_OK) return 1;
    for (int64_t i = 0; i < np; i++) p[i] += (float)(0.2 * tn_normal(&rng));
    if (mtl_model_set_params(m, p, np) != MTL_OK) return 1;
    int bad = write_spec(argv[1], m) || write_file(argv[1], "params.f32", p, (size_t)np * sizeof *p) ||
              scenario(argv[1], m, 0, 17) || scenario(argv[1], m, 1, 18);
    free(p);
    mtl_model_destroy(m);
    return bad;
}
