/* test_network_common.h -- helpers shared by the network tests: small
 * models, deterministic test data, parameter blocks by name. */
#ifndef MTL_TEST_NETWORK_COMMON_H
#define MTL_TEST_NETWORK_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"

/* xorshift-style generator for test data (independent of libmtl's RNG). */
static inline double tn_uniform(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static inline double tn_normal(uint64_t *s)
{
    double u1 = tn_uniform(s), u2 = tn_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A context with one thread (or `threads`) and a seed. */
static inline mtl_context *tn_context(int64_t seed, int64_t threads)
{
    mtl_context *ctx = NULL;
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return NULL;
    mtl_context_set_i64(ctx, MTL_OPT_SEED, seed);
    mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, threads);
    if (threads > 1) mtl_context_set_i64(ctx, MTL_OPT_PARALLEL_MIN_FLOPS, 0);
    return ctx;
}

/* The mixed model's layers on a freshly created 6-input model: trunk
 * 16 ReLU (dropout 0.1) -> 8 tanh + norm; "barrier" (regression, 2
 * outputs, a GELU layer of 5), "fast" (binary, no hidden layer), "class"
 * (3 classes, ReLU 4 + norm -> sigmoid 3). */
static inline void tn_define_mixed(mtl_model *m)
{
    int64_t t;
    mtl_model_add_trunk_layer(m, 16, MTL_ACT_RELU, 0.1f, 0);
    mtl_model_add_trunk_layer(m, 8, MTL_ACT_TANH, 0.0f, MTL_LAYER_NORM);
    mtl_model_add_task(m, "barrier", MTL_TASK_REGRESSION, 2, &t);
    mtl_model_add_head_layer(m, t, 5, MTL_ACT_GELU, 0.0f, 0);
    mtl_model_add_task(m, "fast", MTL_TASK_BINARY, 1, &t);
    mtl_model_add_task(m, "class", MTL_TASK_MULTICLASS, 3, &t);
    mtl_model_add_head_layer(m, t, 4, MTL_ACT_RELU, 0.0f, MTL_LAYER_NORM);
    mtl_model_add_head_layer(m, t, 3, MTL_ACT_SIGMOID, 0.0f, 0);
}

/* Offset, rows, cols of the block named `name` (-1 if absent). */
static inline int64_t tn_block(const mtl_model *m, const char *name, int64_t *rows, int64_t *cols)
{
    int64_t nb = mtl_model_param_block_count(m);
    for (int64_t i = 0; i < nb; i++) {
        const char *bn;
        int64_t off, r, c, ld;
        if (mtl_model_param_block(m, i, &bn, &off, &r, &c, &ld) != MTL_OK) return -1;
        if (strcmp(bn, name) == 0) {
            if (rows) *rows = r;
            if (cols) *cols = c;
            return off;
        }
    }
    return -1;
}

/* Fill targets of a model's target layout: regression N(0,1), binary 0/1,
 * multiclass class index.  With `missing`, about 20% become NaN. */
static inline void tn_targets(const mtl_model *m, int64_t n, float *y, int64_t ldy, uint64_t *rng, int missing)
{
    for (int64_t t = 0; t < mtl_model_task_count(m); t++) {
        mtl_task_type type;
        int64_t k, tc;
        mtl_model_task_type(m, t, &type);
        mtl_model_task_outputs(m, t, &k);
        mtl_model_task_columns(m, t, &tc, NULL);
        int64_t cols = type == MTL_TASK_MULTICLASS ? 1 : k;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < cols; j++) {
                float v;
                if (type == MTL_TASK_REGRESSION)
                    v = (float)tn_normal(rng);
                else if (type == MTL_TASK_BINARY)
                    v = tn_uniform(rng) < 0.5 ? 0.0f : 1.0f;
                else
                    v = (float)(int)(tn_uniform(rng) * (double)k);
                if (missing && tn_uniform(rng) < 0.2) v = NAN;
                y[i * ldy + tc + j] = v;
            }
    }
}

static inline void tn_inputs(int64_t n, int64_t d, float *x, int64_t ldx, uint64_t *rng)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) x[i * ldx + j] = (float)tn_normal(rng);
}

#endif
