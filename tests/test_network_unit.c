/* test_network_unit.c -- internals of the network: dropout masks (rate,
 * inverted scaling, reproducibility, independence of the row stride),
 * the layout spans of mtli_task_param_spans, the engine's per-task
 * representation gradients (Σ_t dz_t equals the fused dz), and the fused
 * backward step (input gradient + the layer below's epilogue) against its
 * two-pass definition. */
#include "engine.h"
#include "harness.h"
#include "mtl_internal.h"
#include "small_gemm.h"

#include <stdlib.h>

enum { DM = 200, DN = 50 };

/* An identity layer with dropout p on DM x DN ones (bias 0). */
static int run_dropout(float p, uint64_t key, int64_t ld, float *out, uint8_t *mask)
{
    mtli_layer L;
    memset(&L, 0, sizeof L);
    L.fan_in = 1;
    L.fan_out = DN;
    L.act = MTL_ACT_IDENTITY;
    L.dropout = p;
    L.b_off = 0;
    float params[DN] = { 0 };
    float *pre = malloc((size_t)(DM * ld) * sizeof(float));
    ASSERT(pre);
    for (int64_t i = 0; i < DM * ld; i++) pre[i] = 1.0f;
    mtli_slot s = { pre, pre, out, NULL, mask, ld };
    mtli_dense_finish(&L, params, DM, &s, true, key, 1);
    free(pre);
    return 0;
}

TEST(dropout_masks)
{
    static float out[DM * (DN + 7)], out2[DM * (DN + 7)];
    static uint8_t mask[DM * (DN + 7)], mask2[DM * (DN + 7)];
    const float p = 0.3f;
    const uint64_t key = mtli_dropout_key(42, 5, 3);
    ASSERT(run_dropout(p, key, DN, out, mask) == 0);
    /* kept fraction ~ 0.7 (4 standard deviations of a binomial proportion) */
    long kept = 0;
    double sum = 0.0;
    const double scale = 65536.0 / floor(0.7 * 65536.0 + 0.5);
    for (int i = 0; i < DM * DN; i++) {
        kept += mask[i];
        sum += out[i];
        ASSERT(out[i] == (mask[i] ? (float)scale : 0.0f));
    }
    const double frac = (double)kept / (DM * DN);
    ASSERT(fabs(frac - 0.7) < 4.0 * sqrt(0.21 / (DM * DN)));
    /* inverted dropout: the mean output stays ~1 */
    ASSERT(fabs(sum / (DM * DN) - 1.0) < 4.0 * sqrt(0.21 / (DM * DN)) * scale);
    /* the same key gives the same mask, whatever the row stride */
    ASSERT(run_dropout(p, key, DN + 7, out2, mask2) == 0);
    for (int i = 0; i < DM; i++)
        for (int j = 0; j < DN; j++) ASSERT(mask2[i * (DN + 7) + j] == mask[i * DN + j]);
    /* another step, layer or seed: another mask */
    const uint64_t others[3] = { mtli_dropout_key(42, 6, 3), mtli_dropout_key(42, 5, 4), mtli_dropout_key(43, 5, 3) };
    for (int k = 0; k < 3; k++) {
        ASSERT(run_dropout(p, others[k], DN, out2, mask2) == 0);
        ASSERT(memcmp(mask, mask2, DM * DN) != 0);
    }
    /* the backward pass uses the same mask and scale: d = 1 becomes mask * scale */
    mtli_layer L;
    memset(&L, 0, sizeof L);
    L.fan_out = DN;
    L.act = MTL_ACT_IDENTITY;
    L.dropout = p;
    L.b_off = 0;
    static float d[DM * DN], pre[DM * DN];
    float grads[DN];
    for (int i = 0; i < DM * DN; i++) d[i] = 1.0f;
    mtli_slot s = { pre, pre, out, NULL, mask, DN };
    mtli_dense_finish_backward_to(&L, NULL, grads, DM, &s, true, d, DN, d, DN, 1);
    double colsum = 0.0;
    for (int i = 0; i < DM; i++) colsum += mask[i * DN] ? scale : 0.0;
    for (int i = 0; i < DM * DN; i++) ASSERT(d[i] == out[i]);
    ASSERT_NEAR(grads[0], colsum, 1e-6, 0);
    return 0;
}

static mtl_model *small_model(void)
{
    mtl_model *m = NULL;
    int64_t t;
    if (mtl_model_create(&m, NULL, 3) != MTL_OK) return NULL;
    mtl_model_add_trunk_layer(m, 6, MTL_ACT_TANH, 0.0f, 0);
    mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t);
    mtl_model_add_head_layer(m, t, 4, MTL_ACT_RELU, 0.0f, MTL_LAYER_NORM);
    mtl_model_add_task(m, "b", MTL_TASK_BINARY, 2, &t);
    mtl_model_add_task(m, "c", MTL_TASK_MULTICLASS, 3, &t);
    mtl_model_add_head_layer(m, t, 5, MTL_ACT_SIGMOID, 0.0f, 0);
    if (mtl_model_finalize(m) != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Each task's two spans cover exactly its blocks; together with the trunk
 * they tile the buffer without overlap. */
TEST(task_param_spans)
{
    mtl_model *m = small_model();
    ASSERT(m);
    char *owner = calloc((size_t)m->n_params, 1);
    ASSERT(owner);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        int64_t sp[2][2];
        ASSERT_EQ_INT(mtli_task_param_spans(m, t, sp), 2);
        for (int k = 0; k < 2; k++)
            for (int64_t i = sp[k][0]; i < sp[k][1]; i++) {
                ASSERT(owner[i] == 0);
                owner[i] = (char)('a' + t);
            }
    }
    for (int64_t b = 0; b < m->n_blocks; b++) {
        const mtli_param_block *blk = &m->blocks[b];
        char want = strncmp(blk->name, "task.", 5) == 0 ? blk->name[5] : 0;
        for (int64_t i = blk->offset; i < blk->offset + blk->rows * blk->cols; i++)
            if (owner[i] != want) FAILF("element %lld of %s owned by '%c'", (long long)i, blk->name, owner[i] ? owner[i] : '-');
    }
    ASSERT(m->tasks[0].layers[0].w_trans && !m->tasks[0].layers[1].w_trans && !m->trunk[0].w_trans);
    ASSERT_EQ_INT(m->fused_width, 4 + 2 + 5);
    ASSERT_EQ_INT(m->tasks[2].fused_col, 6);
    free(owner);
    mtl_model_destroy(m);
    return 0;
}

/* Σ_t dz_t (per-task representation gradients) equals the fused dz, and the
 * rep-weighted trunk backward with all weights 1 gives the same trunk
 * gradient as the fused path (to float rounding). */
TEST(task_representation_gradients)
{
    mtl_model *m = small_model();
    ASSERT(m);
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_blas b;
    mtli_blas_init(&b, &s);
    mtli_engine *e = NULL;
    enum { N = 7 };
    ASSERT_OK(mtli_engine_create(&e, m, &s, N));
    ASSERT_OK(mtli_engine_enable_task_grads(e));
    float x[N * 3], y[N * 4];
    for (int i = 0; i < N * 3; i++) x[i] = (float)sin(1.0 + i);
    for (int i = 0; i < N; i++) {
        y[i * 4 + 0] = (float)cos(i);
        y[i * 4 + 1] = (float)(i % 2);
        y[i * 4 + 2] = (float)((i / 2) % 2);
        y[i * 4 + 3] = (float)(i % 3);
    }
    const int64_t np = m->n_params;
    float *g1 = calloc((size_t)np, sizeof(float)), *g2 = calloc((size_t)np, sizeof(float));
    ASSERT(g1 && g2);
    double L[3];
    bool has[3];
    ASSERT_OK(mtli_engine_forward(e, m, &b, N, x, 3, false, 1, 0));
    mtli_engine_losses(e, m, y, 4, NULL, 0, NULL, L, has);
    ASSERT(has[0] && has[1] && has[2]);
    ASSERT_OK(mtli_engine_backward(e, m, &b, g1));
    /* again, through the per-task path */
    ASSERT_OK(mtli_engine_forward(e, m, &b, N, x, 3, false, 1, 0));
    mtli_engine_losses(e, m, y, 4, NULL, 0, NULL, L, has);
    ASSERT_OK(mtli_engine_backward_heads(e, m, &b, g2));
    ASSERT_OK(mtli_engine_task_rep_grads(e, m, &b));
    const double ones[3] = { 1.0, 1.0, 1.0 };
    mtli_engine_scale_head_grads(e, m, g2, ones);
    ASSERT_OK(mtli_engine_backward_fused(e, m, &b, g2));
    ASSERT_OK(mtli_engine_backward_trunk(e, m, &b, g2, ones));
    double scale = 0.0;
    for (int64_t i = 0; i < np; i++) scale = fmax(scale, fabs(g1[i]));
    ASSERT(scale > 0.0);
    for (int64_t i = 0; i < np; i++) ASSERT_NEAR(g2[i], g1[i], 1e-5, 1e-6 * scale);
    /* head gradients are identical bit for bit: only the trunk path differs */
    for (int64_t t = 0; t < m->n_tasks; t++) {
        int64_t sp[2][2];
        mtli_task_param_spans(m, t, sp);
        for (int k = 0; k < 2; k++)
            ASSERT(memcmp(g1 + sp[k][0], g2 + sp[k][0], (size_t)(sp[k][1] - sp[k][0]) * sizeof(float)) == 0);
    }
    /* weights 2, 0, 1 on z: head gradients of task t scale with head weights */
    const double hw[3] = { 2.0, 0.0, 1.0 };
    ASSERT_OK(mtli_engine_forward(e, m, &b, N, x, 3, false, 1, 0));
    mtli_engine_losses(e, m, y, 4, NULL, 0, NULL, L, has);
    ASSERT_OK(mtli_engine_backward_heads(e, m, &b, g2));
    mtli_engine_scale_head_grads(e, m, g2, hw);
    ASSERT_OK(mtli_engine_backward_fused(e, m, &b, g2));
    for (int64_t t = 0; t < m->n_tasks; t++) {
        int64_t sp[2][2];
        mtli_task_param_spans(m, t, sp);
        for (int k = 0; k < 2; k++)
            for (int64_t i = sp[k][0]; i < sp[k][1]; i++) ASSERT_NEAR(g2[i], hw[t] * g1[i], 1e-6, 1e-7 * scale);
    }
    free(g1);
    free(g2);
    mtli_engine_destroy(e);
    mtl_model_destroy(m);
    return 0;
}

/* One case of input_grad_finish_equals_two_passes: L (fan_out wide, its
 * weight transposed or not) above `below` (fan_in wide), m rows.  Returns
 * 1 if the fused call ran, 0 if it declined, -1 on a failed check. */
static int fused_case(const mtli_blas *b, int64_t m, int64_t fan_in, int64_t fan_out, bool w_trans,
                      mtl_activation act, float dropout)
{
    const int64_t ld = fan_in + 2, ldd = fan_out + 3, nw = fan_in * fan_out;
    mtli_layer L, below;
    memset(&L, 0, sizeof L);
    memset(&below, 0, sizeof below);
    L.fan_in = fan_in;
    L.fan_out = fan_out;
    L.w_trans = w_trans;
    L.ldw = w_trans ? fan_in : fan_out;
    below.fan_in = 9;
    below.fan_out = fan_in;
    below.act = act;
    below.dropout = dropout;
    below.b_off = 5; /* in grads */
    float *params = malloc((size_t)nw * sizeof(float));
    float *d = malloc((size_t)(m * ldd) * sizeof(float));
    float *pre[2], *post[2], *grads[2];
    float *scratch = malloc((size_t)(m * fan_in) * sizeof(float));
    uint8_t *mask = malloc((size_t)(m * ld));
    for (int v = 0; v < 2; v++) {
        pre[v] = malloc((size_t)(m * ld) * sizeof(float));
        post[v] = mtli_layer_needs_post(&below) ? malloc((size_t)(m * ld) * sizeof(float)) : pre[v];
        grads[v] = calloc((size_t)(fan_in + 10), sizeof(float));
    }
    for (int64_t i = 0; i < nw; i++) params[i] = (float)sin(0.7 * (double)i + 0.3);
    for (int64_t i = 0; i < m * ldd; i++) d[i] = (float)cos(1.3 * (double)i);
    for (int64_t i = 0; i < m * ld; i++) {
        mask[i] = (uint8_t)((i * 7 + 3) % 4 != 0);
        for (int v = 0; v < 2; v++) {
            pre[v][i] = (float)sin(0.37 * (double)i);            /* GELU's input */
            post[v][i] = (float)(0.9 * sin(0.37 * (double)i)); /* the activation's output */
        }
    }
    mtli_slot s[2];
    for (int v = 0; v < 2; v++) s[v] = (mtli_slot){ pre[v], post[v], post[v], NULL, dropout > 0.0f ? mask : NULL, ld };

    int result = -1;
    if (mtli_dense_input_grad(b, &L, params, m, d, ldd, 1.0f, 0.0f, scratch, fan_in) != MTL_OK) goto done;
    mtli_dense_finish_backward_to(&below, params, grads[0], m, &s[0], true, scratch, fan_in, pre[0], ld, 1);
    const bool fused = mtli_dense_input_grad_finish(&L, params, m, d, ldd, &below, grads[1], &s[1], true, pre[1], ld);
    if (fused != mtli_dense_input_grad_fuses(&L, &below, m)) {
        fprintf(stderr, "  fused %d but fuses() says %d\n", fused, !fused);
        goto done;
    }
    if (!fused) { /* declined: nothing written (pre[1] still holds what was put there) */
        for (int64_t i = 0; i < m * ld; i++)
            if (pre[1][i] != (post[1] == pre[1] ? (float)(0.9 * sin(0.37 * (double)i)) : (float)sin(0.37 * (double)i)))
                goto done;
        for (int64_t j = 0; j < fan_in + 10; j++)
            if (grads[1][j] != 0.0f) goto done;
        result = 0;
        goto done;
    }
    for (int64_t i = 0; i < m; i++)
        if (memcmp(pre[0] + i * ld, pre[1] + i * ld, (size_t)fan_in * sizeof(float))) {
            fprintf(stderr, "  row %lld of dz differs\n", (long long)i);
            goto done;
        }
    if (memcmp(grads[0], grads[1], (size_t)(fan_in + 10) * sizeof(float))) {
        fprintf(stderr, "  bias gradients differ\n");
        goto done;
    }
    result = 1;
done:
    if (result < 0)
        fprintf(stderr, "  case m %lld, fan_in %lld, fan_out %lld, w_trans %d, act %d, dropout %g\n", (long long)m,
                (long long)fan_in, (long long)fan_out, w_trans, (int)act, (double)dropout);
    for (int v = 0; v < 2; v++) {
        if (post[v] != pre[v]) free(post[v]);
        free(pre[v]);
        free(grads[v]);
    }
    free(params);
    free(d);
    free(scratch);
    free(mask);
    return result;
}

/* The training engine's fused backward step (mtli_dense_input_grad_finish:
 * a layer's input gradient turned tile by tile into the layer below's
 * dL/d(pre), no scratch matrix) against its definition in two passes
 * (mtli_dense_input_grad into a scratch matrix, then
 * mtli_dense_finish_backward_to): bitwise equal dz and bias gradient, for
 * every activation, with and without dropout, rank one and small-kernel
 * products with the weight stored either way, rows not a multiple of 4,
 * widths not a multiple of 16 or 64.  A declined case writes nothing. */
TEST(input_grad_finish_equals_two_passes)
{
    mtli_settings st;
    mtli_settings_defaults(&st);
    mtli_blas b;
    mtli_blas_init(&b, &st);
    const int64_t rows[] = { 1, 3, 37, 64 }, ins[] = { 5, 64, 70, 130 }, outs[] = { 1, 17, 64, 65 };
    int fused_gemm = 0, fused_rank_one = 0;
    for (int a = 0; a <= MTL_ACT_SOFTPLUS; a++)
        for (int drop = 0; drop < 2; drop++)
            for (int ri = 0; ri < 4; ri++)
                for (int ii = 0; ii < 4; ii++)
                    for (int oi = 0; oi < 4; oi++)
                        for (int wt = 0; wt < 2; wt++) {
                            const int r = fused_case(&b, rows[ri], ins[ii], outs[oi], wt, (mtl_activation)a,
                                                     drop ? 0.25f : 0.0f);
                            ASSERT(r >= 0);
                            if (r == 1 && outs[oi] == 1) fused_rank_one++;
                            if (r == 1 && outs[oi] > 1) fused_gemm++;
                        }
    ASSERT(fused_rank_one == 7 * 2 * 4 * 4 * 2); /* plain loops: every CPU */
    if (mtli_small_gemm_available()) ASSERT(fused_gemm > 0);
    /* Declined: the layer below normalises; a transposed product wider
     * than one packed panel (k = 65). */
    mtli_layer L = { .fan_in = 8, .fan_out = 65, .ldw = 65 }, below = { .fan_in = 3, .fan_out = 8, .layer_norm = true };
    ASSERT(!mtli_dense_input_grad_fuses(&L, &below, 4));
    below.layer_norm = false;
    ASSERT(!mtli_dense_input_grad_fuses(&L, &below, 4));
    L.fan_out = 64;
    L.ldw = 64;
    ASSERT(mtli_dense_input_grad_fuses(&L, &below, 4) == mtli_small_gemm_available());
    return 0;
}

TEST_MAIN(TEST_ENTRY(dropout_masks), TEST_ENTRY(task_param_spans), TEST_ENTRY(task_representation_gradients),
          TEST_ENTRY(input_grad_finish_equals_two_passes))
