/* layers.c -- dense layer forward and backward: matrix products through the
 * BLIS glue, elementwise work (bias, activations, layer norm, dropout) in
 * plain loops.
 *
 * Elementwise loops are branch-free (selects, not ifs) and the activation
 * switch sits outside the loops, so each loop is a straight line the
 * compiler vectorises.  GCC 12's -O2 uses the "very cheap" vectoriser cost
 * model, which refuses every loop whose trip count is not known at compile
 * time; the pragma below lets this file's loops vectorise at -O2.
 * Reductions over the batch (bias, norm gradients) run rows in order, so
 * results never depend on the thread count. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include "layers.h"
#include "small_gemm.h"

#include <math.h>
#include <string.h>

#define GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

/* d gelu(v) / dv for the tanh approximation */
static float gelu_grad(float v)
{
    const float t = tanhf(GELU_C * (v + GELU_A * v * v * v));
    return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * v * v);
}

bool mtli_layer_needs_post(const mtli_layer *L)
{
    return L->layer_norm || L->act == MTL_ACT_GELU;
}

void mtli_zero_rows(float *a, int64_t rows, int64_t cols, int64_t ld)
{
    if (ld == cols) {
        memset(a, 0, (size_t)(rows * cols) * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < rows; i++) memset(a + i * ld, 0, (size_t)cols * sizeof(float));
}

/* ---- matrix products ---------------------------------------------------------- */

/* A GEMM: libmtl's own kernel for small products, where BLIS's per-call
 * set-up costs more than the arithmetic (small_gemm.c), else BLIS. */
static mtl_status dense_gemm(const mtli_blas *b, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, const float *bm, int64_t ldb, float beta, float *c,
                             int64_t ldc)
{
    if (mtli_small_gemm(ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc)) return MTL_OK;
    return mtli_gemm(b, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}

/* One row through weights larger than this (floats) goes to BLIS's gemv:
 * the small kernel walks W in 64-column panels, which suits weights in L2
 * (256 KB here) but not weights streamed from L3 or memory. */
#define MTLI_ONE_ROW_SMALL_MAX 65536

/* Should the small kernel (small_gemm.c) take this layer's product for m
 * rows?  Not for one row through transposed weights (the kernel would
 * first copy all of Wᵀ: mtli_small_dots does it directly), nor for one row
 * through weights bigger than L2. */
static bool small_layer(const mtli_layer *L, int64_t m)
{
    if (L->fan_out < 2) return false;
    return m > 1 || (!L->w_trans && L->fan_in * L->fan_out <= MTLI_ONE_ROW_SMALL_MAX);
}

/* Small products (also one row): libmtl's kernel when the CPU has it.
 * Otherwise one row (batch-1 predict) or one output unit: BLIS gemv, never
 * a GEMM with a dimension of 1.  (Plain C loops were measured slower here
 * than BLIS's AVX-512 gemv kernels, even at 64 x 32.) */
mtl_status mtli_dense_matmul(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m,
                             const float *x, int64_t ldx, float *y, int64_t ldy)
{
    const float *W = params + L->w_off;
    const int64_t k = L->fan_in, n = L->fan_out;
    /* A small product takes libmtl's own kernel (at one row, through small
     * weights, it beats BLIS's gemv too). */
    if (small_layer(L, m) && mtli_small_gemm(false, L->w_trans, m, n, k, 1.0f, x, ldx, W, L->ldw, 0.0f, y, ldy))
        return MTL_OK;
    /* Dot products without BLIS's per-call set-up: a 1-wide layer (its
     * weights are contiguous: ldw = 1 or stored transposed), or one row
     * through transposed weights (each output a row of W dotted with x). */
    if (n == 1 && (L->w_trans || L->ldw == 1) && mtli_small_dots(m, k, x, ldx, W, y, ldy)) return MTL_OK;
    if (m == 1 && L->w_trans && mtli_small_dots(n, k, W, L->ldw, x, y, 1)) return MTL_OK;
    if (L->w_trans) { /* W is n x k */
        if (m == 1) return mtli_gemv(b, false, n, k, 1.0f, W, L->ldw, x, 1, 0.0f, y, 1);
        if (n == 1) return mtli_gemv(b, false, m, k, 1.0f, x, ldx, W, 1, 0.0f, y, ldy);
        return dense_gemm(b, false, true, m, n, k, 1.0f, x, ldx, W, L->ldw, 0.0f, y, ldy);
    }
    /* W is k x n */
    if (m == 1) return mtli_gemv(b, true, k, n, 1.0f, W, L->ldw, x, 1, 0.0f, y, 1);
    if (n == 1) return mtli_gemv(b, false, m, k, 1.0f, x, ldx, W, L->ldw, 0.0f, y, ldy);
    return dense_gemm(b, false, false, m, n, k, 1.0f, x, ldx, W, L->ldw, 0.0f, y, ldy);
}

mtl_status mtli_dense_weight_grad(const mtli_blas *b, const mtli_layer *L, float *grads, int64_t m,
                                  const float *x, int64_t ldx, const float *d, int64_t ldd)
{
    float *dW = grads + L->w_off;
    const int64_t k = L->fan_in, n = L->fan_out;
    if (n == 1) /* dw = Xᵀ·d: a gemv, not a 1-wide GEMM */
        return mtli_gemv(b, true, m, k, 1.0f, x, ldx, d, ldd, 0.0f, dW, L->w_trans ? 1 : L->ldw);
    if (L->w_trans) return dense_gemm(b, true, false, n, k, m, 1.0f, d, ldd, x, ldx, 0.0f, dW, L->ldw);
    return dense_gemm(b, true, false, k, n, m, 1.0f, x, ldx, d, ldd, 0.0f, dW, L->ldw);
}

mtl_status mtli_dense_input_grad(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m,
                                 const float *d, int64_t ldd, float alpha, float beta, float *dx,
                                 int64_t lddx)
{
    const float *W = params + L->w_off;
    const int64_t k = L->fan_in, n = L->fan_out;
    if (n == 1) { /* rank one: dx[i][j] = alpha d[i] w[j] (+ beta dx[i][j]) */
        const int64_t inc = L->w_trans ? 1 : L->ldw;
        for (int64_t i = 0; i < m; i++) {
            const float di = alpha * d[i * ldd];
            float *row = dx + i * lddx;
            if (beta == 0.0f)
                for (int64_t j = 0; j < k; j++) row[j] = di * W[j * inc];
            else
                for (int64_t j = 0; j < k; j++) row[j] = di * W[j * inc] + beta * row[j];
        }
        return MTL_OK;
    }
    if (L->w_trans) return dense_gemm(b, false, false, m, k, n, alpha, d, ldd, W, L->ldw, beta, dx, lddx);
    return dense_gemm(b, false, true, m, k, n, alpha, d, ldd, W, L->ldw, beta, dx, lddx);
}

/* ---- activations ----------------------------------------------------------------- */

/* h = act(u) over one row; u and h may be the same array. */
static void act_forward_row(mtl_activation act, int64_t n, const float *u, float *h)
{
    switch (act) {
    case MTL_ACT_IDENTITY:
        if (h != u) memcpy(h, u, (size_t)n * sizeof(float));
        break;
    case MTL_ACT_RELU:
        for (int64_t j = 0; j < n; j++) h[j] = u[j] > 0.0f ? u[j] : 0.0f;
        break;
    case MTL_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) h[j] = u[j] > 0.0f ? u[j] : MTLI_LEAKY_SLOPE * u[j];
        break;
    case MTL_ACT_TANH:
        for (int64_t j = 0; j < n; j++) h[j] = tanhf(u[j]);
        break;
    case MTL_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) h[j] = mtli_sigmoidf(u[j]);
        break;
    case MTL_ACT_GELU:
        for (int64_t j = 0; j < n; j++) {
            const float v = u[j];
            h[j] = 0.5f * v * (1.0f + tanhf(GELU_C * (v + GELU_A * v * v * v)));
        }
        break;
    case MTL_ACT_SOFTPLUS:
        for (int64_t j = 0; j < n; j++) h[j] = fmaxf(u[j], 0.0f) + log1pf(expf(-fabsf(u[j])));
        break;
    }
}

/* d *= act'(u) over one row, from the activation output h (and, for GELU
 * only, its input u). */
static void act_backward_row(mtl_activation act, int64_t n, const float *u, const float *h, float *d)
{
    switch (act) {
    case MTL_ACT_IDENTITY:
        break;
    case MTL_ACT_RELU:
        for (int64_t j = 0; j < n; j++) d[j] = h[j] > 0.0f ? d[j] : 0.0f;
        break;
    case MTL_ACT_LEAKY_RELU:
        for (int64_t j = 0; j < n; j++) d[j] *= h[j] > 0.0f ? 1.0f : MTLI_LEAKY_SLOPE;
        break;
    case MTL_ACT_TANH:
        for (int64_t j = 0; j < n; j++) d[j] *= 1.0f - h[j] * h[j];
        break;
    case MTL_ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) d[j] *= h[j] * (1.0f - h[j]);
        break;
    case MTL_ACT_GELU:
        for (int64_t j = 0; j < n; j++) d[j] *= gelu_grad(u[j]);
        break;
    case MTL_ACT_SOFTPLUS: /* softplus'(u) = sigmoid(u) = 1 - exp(-softplus(u)) */
        for (int64_t j = 0; j < n; j++) d[j] *= -expm1f(-h[j]);
        break;
    }
}

/* GELU after layer norm: its input u = g x̂ + s is rebuilt from x̂. */
static void gelu_backward_norm_row(int64_t n, const float *xh, const float *g, const float *sh, float *d)
{
    for (int64_t j = 0; j < n; j++) d[j] *= gelu_grad(g[j] * xh[j] + sh[j]);
}

/* db += d and dz = d over one row.  dz may be d itself or the layer's own
 * buffer: element j is read before dz[j] is written (no restrict, so GCC
 * versions the loop for aliasing, and the exact alias still vectorises). */
static void bias_grad_row(int64_t n, const float *d, float *restrict db, float *dz)
{
    for (int64_t j = 0; j < n; j++) {
        const float g = d[j];
        db[j] += g;
        dz[j] = g;
    }
}

/* The common case in one pass: dz = d * act'(h) and db += dz.  (ReLU's
 * derivative and the bias gradient share the read of d.)  dz may be d or
 * h, as in bias_grad_row. */
static void act_backward_bias_row(mtl_activation act, int64_t n, const float *h, float *d, float *restrict db,
                                  float *dz)
{
    switch (act) {
    case MTL_ACT_IDENTITY:
        bias_grad_row(n, d, db, dz);
        break;
    case MTL_ACT_RELU:
        for (int64_t j = 0; j < n; j++) {
            const float dj = d[j]; /* an unconditional load: the select then vectorises */
            const float g = h[j] > 0.0f ? dj : 0.0f;
            dz[j] = g;
            db[j] += g;
        }
        break;
    default:
        act_backward_row(act, n, NULL, h, d);
        bias_grad_row(n, d, db, dz);
        break;
    }
}

/* ---- dropout ------------------------------------------------------------------------- */

uint64_t mtli_dropout_key(uint64_t seed, int64_t step, int64_t layer_id)
{
    /* One key per (step, layer); layer ids are < 2^16 (see engine.c). */
    return mtli_rng_u64(seed, MTLI_STREAM_DROPOUT, ((uint64_t)step << 16) ^ (uint64_t)layer_id);
}

/* Keep probability q = 1 - p quantised to 16 bits: an element is kept when
 * a 16-bit random draw is below thr, and kept values are scaled by
 * 65536 / thr, so that E[out] = post exactly (inverted dropout).  Forward
 * and backward both take the scale from here. */
static float dropout_threshold(float p, uint32_t *thr)
{
    double t = floor((1.0 - (double)p) * 65536.0 + 0.5);
    if (t < 1.0) t = 1.0;
    *thr = (uint32_t)t;
    return (float)(65536.0 / t);
}

/* out = post * keep * scale over row i.  One 64-bit draw gives four 16-bit
 * ones (a hash per element would cost more than the layer's GEMM share);
 * draw g of row i is counter i * ceil(n / 4) + g, independent of ld. */
static void dropout_row(float p, uint64_t key, int64_t i, int64_t n, const float *post, float *out,
                        uint8_t *mask)
{
    uint32_t thr;
    const float scale = dropout_threshold(p, &thr);
    const uint64_t groups = (uint64_t)(n + 3) / 4;
    for (int64_t j0 = 0; j0 < n; j0 += 4) {
        const uint64_t r = mtli_rng_u64(key, MTLI_STREAM_DROPOUT, (uint64_t)i * groups + (uint64_t)(j0 / 4));
        const int64_t len = n - j0 < 4 ? n - j0 : 4;
        for (int64_t l = 0; l < len; l++) {
            const uint8_t keep = (uint32_t)((r >> (16 * l)) & 0xffffu) < thr;
            mask[j0 + l] = keep;
            out[j0 + l] = keep ? post[j0 + l] * scale : 0.0f;
        }
    }
}

/* ---- forward epilogue -------------------------------------------------------------------- */

/* Mean and 1/sqrt(var + eps) of a row (two passes, double accumulators, in
 * order: deterministic). */
static void row_stats(const float *a, int64_t n, float *mean, float *rstd)
{
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) s += a[j];
    const double mu = s / (double)n;
    double v = 0.0;
    for (int64_t j = 0; j < n; j++) v += ((double)a[j] - mu) * ((double)a[j] - mu);
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(v / (double)n + (double)MTLI_LN_EPS));
}

/* The forward epilogue of rows [lo, hi): every row on its own (dropout
 * draws are keyed by row), so any split of the rows gives the same bits. */
typedef struct finish_job {
    const mtli_layer *L;
    const float *params;
    const mtli_slot *s;
    bool train;
    uint64_t dropout_key;
} finish_job;

static void finish_rows(void *ctx, int64_t lo, int64_t hi)
{
    const finish_job *job = ctx;
    const mtli_layer *L = job->L;
    const float *params = job->params;
    const mtli_slot *s = job->s;
    const int64_t n = L->fan_out, ld = s->ld;
    const float *restrict bias = params + L->b_off;
    const bool drop = job->train && L->dropout > 0.0f;
    const uint64_t dropout_key = job->dropout_key;
    for (int64_t i = lo; i < hi; i++) {
        float *pre = s->pre + i * ld;
        float *post = s->post + i * ld;
        if (L->act == MTL_ACT_RELU && !L->layer_norm && post == pre) {
            /* the common case in one pass: bias and ReLU in place, in
             * libmtl's vector kernels when the CPU has them (this loop at
             * -O3 is SSE: W2's forward epilogue took twice as long) */
            if (!mtli_small_bias_act_row(n, bias, true, pre)) {
                float *restrict p = pre;
                for (int64_t j = 0; j < n; j++) {
                    const float u = p[j] + bias[j];
                    p[j] = u > 0.0f ? u : 0.0f;
                }
            }
        } else if (L->layer_norm) {
            for (int64_t j = 0; j < n; j++) pre[j] += bias[j];
            const float *restrict g = params + L->gain_off;
            const float *restrict sh = params + L->shift_off;
            float mu, rstd;
            row_stats(pre, n, &mu, &rstd);
            if (s->rstd) { /* training: keep x̂ in pre for the backward pass */
                s->rstd[i] = rstd;
                for (int64_t j = 0; j < n; j++) {
                    pre[j] = (pre[j] - mu) * rstd;
                    post[j] = g[j] * pre[j] + sh[j];
                }
            } else {
                for (int64_t j = 0; j < n; j++) post[j] = g[j] * ((pre[j] - mu) * rstd) + sh[j];
            }
            act_forward_row(L->act, n, post, post);
        } else {
            for (int64_t j = 0; j < n; j++) pre[j] += bias[j];
            act_forward_row(L->act, n, pre, post);
        }
        if (drop) dropout_row(L->dropout, dropout_key, i, n, post, s->out + i * ld, s->mask + i * ld);
    }
}

void mtli_dense_finish(const mtli_layer *L, const float *params, int64_t m, const mtli_slot *s, bool train,
                       uint64_t dropout_key, int64_t n_threads)
{
    finish_job job = { .L = L, .params = params, .s = s, .train = train, .dropout_key = dropout_key };
    mtli_run_slices(finish_rows, &job, m, mtli_elementwise_threads(m * L->fan_out, n_threads));
}

mtl_status mtli_dense_forward(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m, const float *x,
                              int64_t ldx, const mtli_slot *s, bool train, uint64_t dropout_key)
{
    const bool plain = !L->layer_norm && s->post == s->pre && (L->act == MTL_ACT_RELU || L->act == MTL_ACT_IDENTITY);
    if (plain && small_layer(L, m) &&
        mtli_small_gemm_bias_act(L->w_trans, m, L->fan_out, L->fan_in, x, ldx, params + L->w_off, L->ldw,
                                 params + L->b_off, L->act == MTL_ACT_RELU, s->pre, s->ld)) {
        if (train && L->dropout > 0.0f) mtli_dense_dropout(L, m, s, dropout_key);
        return MTL_OK;
    }
    MTLI_TRY(mtli_dense_matmul(b, L, params, m, x, ldx, s->pre, s->ld));
    mtli_dense_finish(L, params, m, s, train, dropout_key, b->num_threads);
    return MTL_OK;
}

void mtli_dense_dropout(const mtli_layer *L, int64_t m, const mtli_slot *s, uint64_t dropout_key)
{
    for (int64_t i = 0; i < m; i++)
        dropout_row(L->dropout, dropout_key, i, L->fan_out, s->post + i * s->ld, s->out + i * s->ld,
                    s->mask + i * s->ld);
}

/* Widest fused layer whose biases are gathered on the stack. */
#define MTLI_FUSED_BIAS_MAX 1024

bool mtli_fused_forward_small(const mtl_model *model, const mtli_layer *F, int64_t t0, int64_t t1, int64_t m,
                              const float *z, int64_t ldz, const mtli_slot *slots, float *out, int64_t ldo)
{
    const int64_t W = F->fan_out, col0 = model->tasks[t0].fused_col;
    /* one row: W is stored transposed, and the gemv of mtli_dense_matmul is faster */
    if (m == 1 || W > MTLI_FUSED_BIAS_MAX) return false;
    const mtl_activation act = model->tasks[t0].layers[0].act;
    if (act != MTL_ACT_RELU && act != MTL_ACT_IDENTITY) return false;
    float bias[MTLI_FUSED_BIAS_MAX]; /* the tasks' first-layer biases, side by side like their columns */
    for (int64_t t = t0; t < t1; t++) {
        const mtli_layer *L0 = &model->tasks[t].layers[0];
        if (L0->layer_norm || L0->act != act || slots[t].post != slots[t].pre) return false;
        memcpy(bias + model->tasks[t].fused_col - col0, model->params + L0->b_off,
               (size_t)L0->fan_out * sizeof(float));
    }
    return mtli_small_gemm_bias_act(true, m, W, F->fan_in, z, ldz, model->params + F->w_off, F->ldw, bias,
                                    act == MTL_ACT_RELU, out, ldo);
}

/* ---- backward epilogue ------------------------------------------------------------------- */

/* Layer-norm backward of one row: d = dL/du in (then scratch), dL/d(pre)
 * into dz, which may be d or xh's own buffer (the last pass reads xh[j]
 * and d[j] before it writes dz[j]). */
static void norm_backward_row(int64_t n, const float *xh, const float *restrict g, float rstd, float *d,
                              float *restrict dg, float *restrict ds, float *dz)
{
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < n; j++) {
        dg[j] += d[j] * xh[j];
        ds[j] += d[j];
        const float dxh = d[j] * g[j];
        s1 += dxh;
        s2 += (double)dxh * xh[j];
        d[j] = dxh;
    }
    const float m1 = (float)(s1 / (double)n), m2 = (float)(s2 / (double)n);
    for (int64_t j = 0; j < n; j++) dz[j] = rstd * (d[j] - m1 - xh[j] * m2);
}

/* The backward epilogue without layer norm over columns [c0, c1) of every
 * row: each column's bias gradient still sums the rows in order, so any
 * split of the columns gives the same bits.  (With norm a row's
 * statistics need all its columns: that path runs on one thread.) */
typedef struct finish_back_job {
    const mtli_layer *L;
    float *grads;
    int64_t m;
    const mtli_slot *s;
    bool drop;
    float scale;
    float *d, *dz;
    int64_t ldd, lddz;
} finish_back_job;

/* d *= keep / (1 - p) over one row of n: dropout's backward, with the
 * row's keep flags mk. */
static void dropout_backward_row(const uint8_t *mk, int64_t n, float scale, float *d)
{
    for (int64_t j = 0; j < n; j++) d[j] *= (float)mk[j] * scale;
}

/* Rows [r0, r1) x columns [c0, c1) of that epilogue, d pointing at
 * element (r0, c0) of dL/d(out) (row stride ldd; scaled in place).  The
 * bias gradient of a column is zeroed with row 0 and then accumulates the
 * rows in order, however the block calls cut rows and columns. */
static void finish_back_block(const finish_back_job *job, int64_t r0, int64_t r1, int64_t c0, int64_t c1, float *d,
                              int64_t ldd)
{
    const mtli_layer *L = job->L;
    const int64_t n = c1 - c0, ld = job->s->ld;
    float *db = job->grads + L->b_off + c0;
    if (r0 == 0) memset(db, 0, (size_t)n * sizeof(float));
    for (int64_t i = r0; i < r1; i++) {
        float *di = d + (i - r0) * ldd, *dzi = job->dz + i * job->lddz + c0;
        const float *pre = job->s->pre + i * ld + c0, *post = job->s->post + i * ld + c0;
        if (job->drop) dropout_backward_row(job->s->mask + i * ld + c0, n, job->scale, di);
        if (L->act == MTL_ACT_GELU) {
            act_backward_row(L->act, n, pre, post, di);
            bias_grad_row(n, di, db, dzi);
        } else {
            act_backward_bias_row(L->act, n, post, di, db, dzi);
        }
    }
}

static void finish_back_cols(void *ctx, int64_t c0, int64_t c1)
{
    const finish_back_job *job = ctx;
    finish_back_block(job, 0, job->m, c0, c1, job->d + c0, job->ldd);
}

static finish_back_job finish_back_setup(const mtli_layer *L, float *grads, int64_t m, const mtli_slot *s, bool train,
                                         float *d, int64_t ldd, float *dz, int64_t lddz)
{
    const bool drop = train && L->dropout > 0.0f;
    uint32_t thr;
    const float scale = drop ? dropout_threshold(L->dropout, &thr) : 1.0f;
    finish_back_job job = { .L = L, .grads = grads, .m = m, .s = s, .drop = drop, .scale = scale,
                            .d = d, .dz = dz, .ldd = ldd, .lddz = lddz };
    return job;
}

void mtli_dense_finish_backward_to(const mtli_layer *L, const float *params, float *grads, int64_t m,
                                   const mtli_slot *s, bool train, float *d, int64_t ldd, float *dz,
                                   int64_t lddz, int64_t n_threads)
{
    const int64_t n = L->fan_out, ld = s->ld;
    const finish_back_job job = finish_back_setup(L, grads, m, s, train, d, ldd, dz, lddz);
    if (!L->layer_norm) {
        mtli_run_slices(finish_back_cols, (void *)&job, n, mtli_elementwise_threads(m * n, n_threads));
        return;
    }
    float *db = grads + L->b_off;
    memset(db, 0, (size_t)n * sizeof(float));
    memset(grads + L->gain_off, 0, (size_t)n * sizeof(float));
    memset(grads + L->shift_off, 0, (size_t)n * sizeof(float));
    const float *g = params + L->gain_off, *sh = params + L->shift_off;
    for (int64_t i = 0; i < m; i++) {
        float *di = d + i * ldd, *dzi = dz + i * lddz;
        const float *pre = s->pre + i * ld, *post = s->post + i * ld;
        if (job.drop) dropout_backward_row(s->mask + i * ld, n, job.scale, di);
        if (L->act == MTL_ACT_GELU)
            gelu_backward_norm_row(n, pre, g, sh, di);
        else
            act_backward_row(L->act, n, NULL, post, di);
        norm_backward_row(n, pre, g, s->rstd[i], di, grads + L->gain_off, grads + L->shift_off, dzi);
        for (int64_t j = 0; j < n; j++) db[j] += dzi[j];
    }
}

/* ---- input gradient and the layer below's epilogue in one pass ---------------------- */

bool mtli_dense_input_grad_fuses(const mtli_layer *L, const mtli_layer *below, int64_t m)
{
    if (below->layer_norm || below->fan_out != L->fan_in) return false;
    if (L->fan_out == 1) return true; /* rank one: plain loops */
    return mtli_small_gemm_tiles_fit(!L->w_trans, m, L->fan_in, L->fan_out);
}

static void finish_back_tile(void *ctx, int64_t i, int64_t rows, int64_t j, int64_t cols, float *c, int64_t ldc)
{
    finish_back_block(ctx, i, i + rows, j, j + cols, c, ldc);
}

/* Rank one (a 1-wide layer above): dx[i][j] = d[i] w[j], as in
 * mtli_dense_input_grad, built 16 rows x 64 columns at a time. */
static void rank_one_finish(const mtli_layer *L, const float *params, int64_t m, const float *d, int64_t ldd,
                            const finish_back_job *job)
{
    enum { ROWS = 16, COLS = 64 };
    float blk[ROWS * COLS];
    const float *W = params + L->w_off;
    const int64_t inc = L->w_trans ? 1 : L->ldw, k = L->fan_in;
    for (int64_t c0 = 0; c0 < k; c0 += COLS) {
        const int64_t w = k - c0 < COLS ? k - c0 : COLS;
        for (int64_t i = 0; i < m; i += ROWS) {
            const int64_t rows = m - i < ROWS ? m - i : ROWS;
            for (int64_t r = 0; r < rows; r++) {
                const float di = d[(i + r) * ldd];
                for (int64_t j = 0; j < w; j++) blk[r * COLS + j] = di * W[(c0 + j) * inc];
            }
            finish_back_block(job, i, i + rows, c0, c0 + w, blk, COLS);
        }
    }
}

bool mtli_dense_input_grad_finish(const mtli_layer *L, const float *params, int64_t m, const float *d, int64_t ldd,
                                  const mtli_layer *below, float *grads, const mtli_slot *s, bool train, float *dz,
                                  int64_t lddz)
{
    if (!mtli_dense_input_grad_fuses(L, below, m)) return false;
    finish_back_job job = finish_back_setup(below, grads, m, s, train, NULL, 0, dz, lddz);
    if (L->fan_out == 1) {
        rank_one_finish(L, params, m, d, ldd, &job);
        return true;
    }
    return mtli_small_gemm_tiles(!L->w_trans, m, L->fan_in, L->fan_out, d, ldd, params + L->w_off, L->ldw,
                                 finish_back_tile, &job);
}
