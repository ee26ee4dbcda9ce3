/* test_predict.c -- the inference workspace (lib/predict.c) against an
 * independent forward written here: each pass through the network computed
 * whole, in buffers of its own (no buffer shared between layers, no pass
 * cut into parts), from the same layer functions.  Every comparison is
 * bitwise.  Checked:
 *  - predict, predict_labels and embed, for workspaces of many sizes and
 *    row counts on both sides of every pass and part boundary, on models
 *    whose layers run on BLIS, on libmtl's small kernel, or on both (a pass
 *    cut into parts must keep each layer on the kernel the whole pass
 *    picks), with 0 to 3 trunk layers (which buffer holds what depends on
 *    their parity) and heads of 0 to 3 hidden layers;
 *  - workspaces of different sizes give the same bits for the same passes;
 *  - scalers fitted after the workspace was made: room for the scaled
 *    inputs is allocated once, by the first predict (and an allocation
 *    failure there is MTL_ERR_OUT_OF_MEMORY, `out` untouched, and the
 *    workspace still usable);
 *  - the workspace's bytes, counted by hand from its buffer layout (also
 *    for a W1-shaped model whose fused first layers run in groups of
 *    tasks, compared bitwise with the whole product by the sweeps).
 * (Under valgrind, rows are compared to rounding only: see under_valgrind.) */
#include "engine.h"
#include "losses.h"
#include "mtl_internal.h"
#include "small_gemm.h"
#include "test_network_common.h"

enum { MAX_LAYERS = 8 };

/* ---- models ---------------------------------------------------------------------------------- */

typedef struct head_spec {
    mtl_task_type type;
    int64_t n_outputs;
    int64_t hidden[3];
    int n_hidden;
    mtl_activation act;
    unsigned flags;
} head_spec;

typedef struct model_spec {
    const char *name;
    int64_t n_inputs;
    int64_t trunk[3];
    int n_trunk;
    head_spec heads[4];
    int n_heads;
} model_spec;

/* Every layer of "blis" has a product too big for the small kernel at its
 * passes' sizes except a few narrow ones, whose small-kernel limits (325,
 * 625 and 694 rows) decide how a long pass may be cut.  Deep heads widen
 * after their second layer (an output written over its input would show).  "small" is W1-sized:
 * every layer on the small kernel, passes of a few hundred rows. */
static const model_spec SPECS[] = {
    { "blis", 24, { 256, 160, 128 }, 3,
      { { MTL_TASK_REGRESSION, 1, { 96, 64 }, 2, MTL_ACT_RELU, 0 },
        { MTL_TASK_BINARY, 1, { 0 }, 0, MTL_ACT_RELU, 0 },
        { MTL_TASK_MULTICLASS, 3, { 48 }, 1, MTL_ACT_TANH, 0 },
        { MTL_TASK_REGRESSION, 2, { 80, 40, 72 }, 3, MTL_ACT_GELU, MTL_LAYER_NORM } },
      4 },
    { "small", 16, { 64, 64 }, 2,
      { { MTL_TASK_REGRESSION, 1, { 32 }, 1, MTL_ACT_RELU, 0 },
        { MTL_TASK_REGRESSION, 1, { 32 }, 1, MTL_ACT_RELU, 0 },
        { MTL_TASK_REGRESSION, 1, { 32 }, 1, MTL_ACT_RELU, 0 } },
      3 },
    { "no_trunk", 9, { 0 }, 0,
      { { MTL_TASK_REGRESSION, 2, { 6, 10, 12 }, 3, MTL_ACT_LEAKY_RELU, 0 },
        { MTL_TASK_MULTICLASS, 4, { 0 }, 0, MTL_ACT_RELU, 0 } },
      2 },
    { "one_layer", 40, { 7 }, 1,
      { { MTL_TASK_BINARY, 1, { 5, 3 }, 2, MTL_ACT_SIGMOID, 0 },
        { MTL_TASK_REGRESSION, 3, { 6 }, 1, MTL_ACT_RELU, MTL_LAYER_NORM } },
      2 },
};

static mtl_model *make_model(const model_spec *sp, mtl_context *ctx)
{
    mtl_model *m = NULL;
    if (mtl_model_create(&m, ctx, sp->n_inputs) != MTL_OK) return NULL;
    mtl_status s = MTL_OK;
    for (int i = 0; i < sp->n_trunk; i++)
        s |= mtl_model_add_trunk_layer(m, sp->trunk[i], i % 2 ? MTL_ACT_TANH : MTL_ACT_RELU, 0.2f, 0);
    for (int t = 0; t < sp->n_heads; t++) {
        const head_spec *h = &sp->heads[t];
        char name[16];
        int64_t idx = -1;
        snprintf(name, sizeof name, "t%d", t);
        s |= mtl_model_add_task(m, name, h->type, h->n_outputs, &idx);
        for (int j = 0; j < h->n_hidden; j++)
            s |= mtl_model_add_head_layer(m, idx, h->hidden[j], h->act, 0.1f, j == 0 ? 0 : h->flags);
    }
    s |= mtl_model_finalize(m);
    /* biases start at 0 and norm gains at 1: perturb every parameter */
    const int64_t np = mtl_model_param_count(m);
    float *p = malloc((size_t)np * sizeof *p);
    if (s == MTL_OK && p && mtl_model_get_params(m, p, np) == MTL_OK) {
        uint64_t rng = 77;
        for (int64_t i = 0; i < np; i++) p[i] += (float)(0.1 * tn_normal(&rng));
        s = mtl_model_set_params(m, p, np);
    } else {
        s = MTL_ERR_INTERNAL;
    }
    free(p);
    if (s != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Scalers fitted on inputs with a mean and spread far from 0 and 1. */
static int fit_scalers(mtl_model *m, mtl_context *ctx)
{
    enum { ROWS = 50 };
    const int64_t d = m->n_inputs, tw = m->target_width;
    float *x = malloc((size_t)(ROWS * d) * sizeof(float)), *y = malloc((size_t)(ROWS * tw) * sizeof(float));
    ASSERT(x && y);
    uint64_t rng = 3;
    for (int64_t i = 0; i < ROWS * d; i++) x[i] = (float)(5.0 + 3.0 * tn_normal(&rng));
    tn_targets(m, ROWS, y, tw, &rng, 0);
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, ctx, ROWS, d, tw, x, d, y, tw, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_model_fit_scalers(m, ds));
    mtl_dataset_destroy(ds);
    free(x);
    free(y);
    return 0;
}

/* ---- the reference: one pass of c rows, every layer in a buffer of its own ------------------ */

enum { PREDICT, LABELS, EMBED };

typedef struct ref_buffers {
    float *xs, *bufs[2 * MAX_LAYERS * 4 + 2];
    int n_bufs;
    mtli_slot trunk[MAX_LAYERS], fused[8], head[4 * MAX_LAYERS];
    int64_t head_first[8];
    mtli_plan plan;
} ref_buffers;

static float *ref_buf(ref_buffers *b, int64_t rows, int64_t width)
{
    float *p = malloc((size_t)(rows * width + 1) * sizeof(float));
    b->bufs[b->n_bufs++] = p;
    return p;
}

static void ref_slot(mtli_slot *s, float *buf, int64_t ld)
{
    s->pre = s->post = s->out = buf; /* inference: norm and activation in place, no dropout */
    s->rstd = NULL;
    s->mask = NULL;
    s->ld = ld;
}

static void ref_plan(ref_buffers *b, const mtl_model *m, int64_t c)
{
    memset(b, 0, sizeof *b);
    b->xs = ref_buf(b, c, m->n_inputs);
    for (int64_t i = 0; i < m->n_trunk; i++)
        ref_slot(&b->trunk[i], ref_buf(b, c, m->trunk[i].fan_out), m->trunk[i].fan_out);
    b->plan.trunk = b->trunk;
    b->plan.fused_pre = ref_buf(b, c, m->fused_width);
    b->plan.fused_ld = m->fused_width; /* the whole fused layer at once */
    b->plan.fused = b->fused;
    b->plan.head = b->head;
    b->plan.head_first = b->head_first;
    float *logits = ref_buf(b, c, m->output_width);
    int64_t k = 0;
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        ref_slot(&b->fused[t], b->plan.fused_pre + task->fused_col, m->fused_width);
        b->head_first[t] = k;
        for (int64_t j = 1; j <= task->n_hidden; j++, k++) {
            if (j == task->n_hidden)
                ref_slot(&b->head[k], logits + task->output_col, m->output_width);
            else
                ref_slot(&b->head[k], ref_buf(b, c, task->layers[j].fan_out), task->layers[j].fan_out);
        }
    }
}

static void ref_free(ref_buffers *b)
{
    for (int i = 0; i < b->n_bufs; i++) free(b->bufs[i]);
}

/* Rows [0, c) of x through the network in one pass; `what` as the API. */
static int ref_pass(const mtl_model *m, int what, int64_t c, const float *x, int64_t ldx, float *out, int64_t ldout)
{
    ref_buffers b;
    ref_plan(&b, m, c);
    for (int i = 0; i < b.n_bufs; i++) ASSERT(b.bufs[i]);
    if (m->scalers.fitted) {
        mtli_scale_inputs(m, c, x, ldx, b.xs, m->n_inputs);
        x = b.xs;
        ldx = m->n_inputs;
    }
    const float *z;
    int64_t ldz;
    ASSERT_OK(mtli_forward_trunk(m, &m->blas, &b.plan, c, x, ldx, false, 0, 0, &z, &ldz));
    if (what == EMBED) {
        for (int64_t i = 0; i < c; i++) memcpy(out + i * ldout, z + i * ldz, (size_t)m->embed_width * sizeof(float));
        ref_free(&b);
        return 0;
    }
    ASSERT_OK(mtli_forward_heads(m, &m->blas, &b.plan, c, z, ldz, false, 0, 0));
    const int64_t W = m->output_width;
    float *o = malloc((size_t)(c * W) * sizeof(float));
    ASSERT(o);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        const float *logits;
        int64_t ldl;
        mtli_plan_logits(m, &b.plan, t, &logits, &ldl);
        mtli_task_outputs(task, c, logits, ldl, o + task->output_col, W);
        if (what == LABELS && task->type != MTL_TASK_REGRESSION)
            mtli_task_labels(task, c, logits, ldl, out + task->target_col, ldout);
    }
    mtli_unscale_outputs(m, c, o, W);
    for (int64_t t = 0; t < m->n_tasks; t++) {
        const mtli_task *task = &m->tasks[t];
        if (what == LABELS && task->type != MTL_TASK_REGRESSION) continue;
        const int64_t col = what == LABELS ? task->target_col : task->output_col;
        for (int64_t i = 0; i < c; i++)
            memcpy(out + i * ldout + col, o + i * W + task->output_col, (size_t)task->n_outputs * sizeof(float));
    }
    free(o);
    ref_free(&b);
    return 0;
}

static int64_t out_width(const mtl_model *m, int what)
{
    return what == PREDICT ? m->output_width : what == LABELS ? m->target_width : m->embed_width;
}

static mtl_status api_call(const mtl_model *m, mtl_workspace *ws, int what, int64_t n, const float *x, int64_t ldx,
                           float *out, int64_t ldout)
{
    if (what == PREDICT) return mtl_model_predict(m, ws, n, x, ldx, out, ldout);
    if (what == LABELS) return mtl_model_predict_labels(m, ws, n, x, ldx, out, ldout);
    return mtl_model_embed(m, ws, n, x, ldx, out, ldout);
}

/* The workspace's n rows, bitwise, against the reference run in passes of
 * `pass` rows (what a workspace of `pass` rows does, by its contract, when
 * `pass` is at most the rows it runs in one pass).  out has a stride wider
 * than needed, and the columns beyond must stay untouched. */
/* Valgrind runs these tests for memory errors, but its arithmetic is not
 * the CPU's: some of BLIS's fused multiply-adds come out differently
 * there, so kernels that agree bit for bit natively (and the thread
 * partitions of one kernel) do not.  Under valgrind, rows need only agree
 * to rounding, and labels (a rounding can flip an argmax) not at all. */
static bool under_valgrind(void)
{
    return UNDER_VALGRIND;
}

/* Under valgrind (its CI pass looks for memory errors, which the ASan
 * build also covers with every case), counts above this are skipped:
 * thousands of rows through 2 MFLOP-per-row layers and the test's own
 * reference forward took over ten minutes there. */
#define VALGRIND_MAX_ROWS 400

static bool rows_close(const float *a, const float *b, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        if (!(fabsf(a[j] - b[j]) <= 1e-3f * (1.0f + fabsf(b[j])))) return false;
    return true;
}

static int check_rows(const mtl_model *m, mtl_workspace *ws, int64_t pass, int64_t n, const float *x, int64_t ldx,
                      const char *label)
{
    for (int what = PREDICT; what <= EMBED; what++) {
        const int64_t w = out_width(m, what), ld = w + 3;
        float *got = malloc((size_t)(n * ld) * sizeof(float)), *want = malloc((size_t)(n * ld) * sizeof(float));
        ASSERT(got && want);
        for (int64_t i = 0; i < n * ld; i++) got[i] = want[i] = -7.0f;
        ASSERT_OK(api_call(m, ws, what, n, x, ldx, got, ld));
        for (int64_t r = 0; r < n; r += pass) {
            const int64_t c = n - r < pass ? n - r : pass;
            ASSERT(ref_pass(m, what, c, x + r * ldx, ldx, want + r * ld, ld) == 0);
        }
        for (int64_t i = 0; i < n; i++) {
            if (memcmp(got + i * ld, want + i * ld, (size_t)ld * sizeof(float)) == 0) continue;
            if (under_valgrind() && what != LABELS && rows_close(got + i * ld, want + i * ld, ld)) continue;
            if (under_valgrind() && what == LABELS) continue;
            FAILF("%s, %s: %lld rows in passes of %lld: row %lld differs from the reference", label,
                  what == PREDICT ? "predict" : what == LABELS ? "labels" : "embed", (long long)n, (long long)pass,
                  (long long)i);
        }
        free(got);
        free(want);
    }
    return 0;
}

/* n rows of inputs ~ N(5, 3) (the padding past the model's inputs too). */
static float *inputs(int64_t n, int64_t ldx)
{
    float *x = malloc((size_t)(n * ldx) * sizeof(float));
    uint64_t rng = 11;
    if (x)
        for (int64_t i = 0; i < n * ldx; i++) x[i] = (float)(5.0 + 3.0 * tn_normal(&rng));
    return x;
}

/* A workspace of `size` rows and the row counts it predicts (0-terminated). */
typedef struct ws_case {
    int64_t size;
    int64_t ns[8];
} ws_case;

/* Each case's workspace predicts each of its counts (all of a count's rows
 * in passes of the workspace's size). */
static int sweep(const mtl_model *m, const ws_case *cases, int n_cases, const char *name)
{
    int64_t nmax = 0;
    for (int a = 0; a < n_cases; a++)
        for (int k = 0; k < 8 && cases[a].ns[k]; k++)
            if (cases[a].ns[k] > nmax) nmax = cases[a].ns[k];
    const int64_t d = m->n_inputs, ldx = d + 2;
    float *x = inputs(nmax, ldx);
    ASSERT(x);
    for (int a = 0; a < n_cases; a++) {
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, cases[a].size));
        for (int k = 0; k < 8 && cases[a].ns[k]; k++) {
            if (under_valgrind() && cases[a].ns[k] > VALGRIND_MAX_ROWS) continue;
            char label[96];
            snprintf(label, sizeof label, "%s%s, workspace of %lld rows", name, m->scalers.fitted ? " (scaled)" : "",
                     (long long)cases[a].size);
            if (check_rows(m, ws, cases[a].size, cases[a].ns[k], x, ldx, label)) return 1;
        }
        mtl_workspace_destroy(ws);
    }
    free(x);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------------ */

/* The BLIS-sized model: passes of the workspace's size, and long ones cut
 * into parts of 704 to 1,408 rows here (the 694-row limit of one head
 * layer, rounded up to 64; parts hold up to two of those).  Counts
 * straddle pass and part edges, including a last pass of one row (a
 * different kernel) and remainders too short to be a part of their own. */
TEST(blis_sized_layers)
{
    mtl_context *ctx = tn_context(5, 1);
    ASSERT(ctx);
    mtl_model *m = make_model(&SPECS[0], ctx);
    ASSERT(m);
    /* 1,537 rows through the 1,536-row workspace: (768 + 768) + 1; 3,100
     * = 1,408 + 832 + 860 (a remainder under 704 rows is shared with the
     * part before); 4,097 = (1,408 + 1,408 + 1,280) + 1 */
    const ws_case cases[] = {
        { 1, { 1, 2, 3, 40 } },
        { 2, { 1, 2, 3, 41 } },
        { 333, { 1, 333, 334, 1000 } },
        { 1536, { 1537 } },
        { 4096, { 3100, 4097 } },
    };
    if (sweep(m, cases, 5, "blis")) return 1;
    ASSERT(fit_scalers(m, ctx) == 0);
    const ws_case cases2[] = { { 7, { 1, 8, 29 } }, { 2500, { 5003 } } };
    if (sweep(m, cases2, 2, "blis")) return 1;
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

/* Two threads: BLIS splits the GEMMs of each part across threads.  1,537
 * rows = 768 + 769. */
TEST(blis_sized_layers_two_threads)
{
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, NULL));
    ASSERT_OK(mtl_context_set_i64(ctx, MTL_OPT_SEED, 5));
    ASSERT_OK(mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, 2));
    mtl_model *m = make_model(&SPECS[0], ctx);
    ASSERT(m);
    const ws_case cases[] = { { 1537, { 1537 } } };
    if (sweep(m, cases, 1, "blis, 2 threads")) return 1;
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

/* A pass is one call's worth of rows whatever the workspace's size beyond
 * it: workspaces of 2,300 to 8,192 rows give the same bits for 2,300 rows
 * (parts of 1,408 and 892 rows). */
TEST(workspace_size_does_not_change_a_pass)
{
    mtl_context *ctx = tn_context(5, 1);
    ASSERT(ctx);
    mtl_model *m = make_model(&SPECS[0], ctx);
    ASSERT(m);
    enum { N = 2300 };
    if (under_valgrind()) { /* see VALGRIND_MAX_ROWS */
        mtl_model_destroy(m);
        mtl_context_destroy(ctx);
        return 0;
    }
    float *x = inputs(N, m->n_inputs);
    float *a = malloc(sizeof(float) * N * 8), *b = malloc(sizeof(float) * N * 8);
    ASSERT(x && a && b);
    const int64_t sizes[] = { N, N + 1, 4096, 8192 };
    for (int k = 0; k < 4; k++) {
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, sizes[k]));
        ASSERT_OK(mtl_model_predict(m, ws, N, x, m->n_inputs, k ? b : a, m->output_width));
        if (k) ASSERT(memcmp(a, b, sizeof(float) * N * (size_t)m->output_width) == 0);
        if (k == 3 && check_rows(m, ws, N, N, x, m->n_inputs, "blis, 8192-row workspace")) return 1;
        mtl_workspace_destroy(ws);
    }
    free(x);
    free(a);
    free(b);
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

/* Every layer on the small kernel (with AVX2 or AVX-512): the workspace runs
 * passes of a few hundred rows (320 here); sizes up to that pass exactly
 * as the reference does. */
TEST(small_kernel_layers)
{
    mtl_context *ctx = tn_context(5, 1);
    ASSERT(ctx);
    mtl_model *m = make_model(&SPECS[1], ctx);
    ASSERT(m);
    const ws_case cases[] = {
        { 1, { 1, 7 } }, { 7, { 1, 7, 8, 64 } }, { 64, { 64, 65, 129 } }, { 300, { 300, 301, 700 } },
    };
    if (sweep(m, cases, 4, "small")) return 1;
    ASSERT(fit_scalers(m, ctx) == 0);
    if (sweep(m, cases, 4, "small")) return 1;
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

/* Two threads and a small model: its passes (320 rows for "small": 4
 * MFLOP / (2 x 64 x 96), rounded down to 16) run on one thread each, in
 * a lane of buffers of its own.  Row counts straddle pass edges; the
 * reference runs the same passes on one thread.  "one_layer" (passes of
 * 7,136 rows) gets its scalers fitted after the workspace was made: every
 * lane makes room for its scaled inputs. */
TEST(small_kernel_layers_two_threads)
{
    /* Lanes exist only where the small kernels run (passes of 320 rows);
     * without them this would only repeat small_kernel_layers through
     * BLIS, for minutes under valgrind. */
    if (under_valgrind() || !mtli_small_gemm_available()) return 0;
    mtl_context *ctx = tn_context(5, 2);
    ASSERT(ctx);
    mtl_model *m = make_model(&SPECS[1], ctx);
    ASSERT(m);
    const int64_t ns[] = { 1, 319, 320, 321, 641, 2000 }, d = m->n_inputs, ldx = d + 2;
    float *x = inputs(8000, 40 + 2);
    ASSERT(x);
    for (int scaled = 0; scaled < 2; scaled++) {
        if (scaled) ASSERT(fit_scalers(m, ctx) == 0);
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, 2000));
        for (int k = 0; k < 6; k++) {
            if (check_rows(m, ws, 320, ns[k], x, ldx, scaled ? "small, 2 threads (scaled)" : "small, 2 threads"))
                return 1;
        }
        mtl_workspace_destroy(ws);
    }
    mtl_model_destroy(m);

    m = make_model(&SPECS[3], ctx);
    ASSERT(m);
    mtl_workspace *ws = NULL;
    ASSERT_OK(mtl_workspace_create(&ws, m, 8192));
    float *out = malloc(sizeof(float) * 8000 * (size_t)m->output_width);
    ASSERT(out);
    ASSERT_OK(mtl_model_predict(m, ws, 8000, x, 42, out, m->output_width));
    ASSERT(fit_scalers(m, ctx) == 0);
    if (check_rows(m, ws, 7136, 8000, x, 42, "one_layer, 2 threads (scaled)")) return 1;
    free(out);
    mtl_workspace_destroy(ws);
    mtl_model_destroy(m);
    free(x);
    mtl_context_destroy(ctx);
    return 0;
}

/* Zero and one trunk layer swap which buffer holds the trunk's output, the
 * fused layer and the scaled inputs; deep heads use the third buffer. */
TEST(trunk_depths_and_deep_heads)
{
    mtl_context *ctx = tn_context(5, 1);
    ASSERT(ctx);
    const ws_case cases[] = { { 1, { 1, 3 } }, { 3, { 1, 3, 4, 10 } }, { 64, { 64, 200 } } };
    for (int k = 2; k <= 3; k++) {
        mtl_model *m = make_model(&SPECS[k], ctx);
        ASSERT(m);
        if (sweep(m, cases, 3, SPECS[k].name)) return 1;
        ASSERT(fit_scalers(m, ctx) == 0);
        if (sweep(m, cases, 3, SPECS[k].name)) return 1;
        mtl_model_destroy(m);
    }
    mtl_context_destroy(ctx);
    return 0;
}

/* ---- scalers fitted after the workspace was made ------------------------------------------ */

static struct {
    long calls, fail_at; /* fail the fail_at-th allocation from now (-1: none) */
} g_hook = { 0, -1 };

static void *hook_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (g_hook.calls++ == g_hook.fail_at) return NULL;
    void *p = NULL;
    return posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size) == 0 ? p : NULL;
}

static void hook_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* "one_layer" has 40 inputs and layers of at most 7 units: the scaled
 * inputs need room the workspace did not make; "blis" has 24 inputs and a
 * 160-unit trunk layer in the buffer they go in: no allocation at all. */
TEST(scalers_fitted_after_the_workspace)
{
    const mtl_allocator a = { sizeof(mtl_allocator), hook_alloc, hook_free, NULL };
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    for (int k = 0; k < 2; k++) {
        const model_spec *sp = k == 0 ? &SPECS[3] : &SPECS[0];
        mtl_model *m = make_model(sp, ctx);
        ASSERT(m);
        enum { N = 40 };
        const int64_t d = m->n_inputs, W = m->output_width;
        float *x = inputs(N, d), *out = malloc(sizeof(float) * N * (size_t)W);
        ASSERT(x && out);
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, 16));
        ASSERT_OK(mtl_model_predict(m, ws, N, x, d, out, W)); /* unscaled: nothing to make room for */
        ASSERT(fit_scalers(m, ctx) == 0);
        if (k == 0) {
            /* the first predict allocates once; failing, it changes nothing */
            for (int64_t i = 0; i < N * W; i++) out[i] = 42.0f;
            g_hook.calls = 0;
            g_hook.fail_at = 0;
            ASSERT_STATUS(MTL_ERR_OUT_OF_MEMORY, mtl_model_predict(m, ws, N, x, d, out, W));
            ASSERT_MSG_HAS("scalers were fitted after the workspace was created");
            for (int64_t i = 0; i < N * W; i++) ASSERT(out[i] == 42.0f);
        }
        g_hook.fail_at = -1;
        g_hook.calls = 0;
        ASSERT_OK(mtl_model_predict(m, ws, N, x, d, out, W));
        ASSERT_EQ_INT(g_hook.calls, k == 0 ? 1 : 0);
        g_hook.calls = 0;
        if (check_rows(m, ws, 16, N, x, d, sp->name)) return 1;
        ASSERT_EQ_INT(g_hook.calls, 0); /* only once (the reference itself uses malloc) */
        /* a workspace made after the fit predicts the same bits */
        mtl_workspace *fresh = NULL;
        float *again = malloc(sizeof(float) * N * (size_t)W);
        ASSERT(again);
        ASSERT_OK(mtl_workspace_create(&fresh, m, 16));
        ASSERT_OK(mtl_model_predict(m, fresh, N, x, d, again, W));
        ASSERT(memcmp(out, again, sizeof(float) * N * (size_t)W) == 0);
        mtl_workspace_destroy(fresh);
        mtl_workspace_destroy(ws);
        free(again);
        free(x);
        free(out);
        mtl_model_destroy(m);
    }
    mtl_context_destroy(ctx);
    return 0;
}

/* ---- memory ------------------------------------------------------------------------------------ */

static size_t g_live;

static void *size_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, 64, size + 64) != 0) return NULL;
    (void)alignment;
    *(size_t *)p = size;
    g_live += size;
    return (char *)p + 64;
}

static void size_free(void *user, void *p)
{
    (void)user;
    if (!p) return;
    char *b = (char *)p - 64;
    g_live -= *(size_t *)b;
    free(b);
}

/* By hand, for the "blis" model (3 trunk layers, so the fused layer goes
 * in act[1] and the trunk's output z in act[0]):
 *   act[0]    trunk 0 and 2 (256, 128), head layers 1 (64, 40), outputs (7)
 *   act[1]    trunk 1 (160), the fused layer (96 + 1 + 48 + 80 = 225)
 *   head_mid  the deep head's layer 2 (72)
 *   logits    7
 * = 560 floats a row, about half of the 952 of all layer outputs, plus
 * the slots.  Past 1,408 rows (the longest part here), no more. */
TEST(workspace_bytes)
{
    const mtl_allocator a = { sizeof(mtl_allocator), size_alloc, size_free, NULL };
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    mtl_model *m = make_model(&SPECS[0], ctx);
    ASSERT(m);
    size_t bytes[3];
    const int64_t rows[3] = { 512, 1536, 8192 };
    for (int k = 0; k < 3; k++) {
        const size_t live0 = g_live;
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, rows[k]));
        bytes[k] = g_live - live0;
        mtl_workspace_destroy(ws);
    }
    const size_t buffers = 512 * (256 + 225 + 72 + 7) * sizeof(float);
    if (bytes[0] < buffers || bytes[0] > buffers + 4096)
        FAILF("a 512-row workspace holds %zu bytes, expected %zu + slots", bytes[0], buffers);
    ASSERT_EQ_INT(bytes[2], bytes[1]);
    ASSERT(bytes[1] > bytes[0]);
    mtl_model_destroy(m);

    /* "small" (W1-shaped: trunk 64-64, heads 3 x 32 -> 1), 64 rows: the
     * fused layer (96 wide) takes turns in groups of tasks ({0, 1}: 64
     * columns, {2}: 32) in act[0], which trunk layer 0 already makes 64
     * wide; act[1] trunk 1 (64), logits 3.  Without the small kernels
     * (a CPU without AVX2, or MTL_SMALL_KERNEL=off) nothing keeps groups
     * bitwise equal to the whole product: act[0] is then 96 wide.  One
     * row: no groups (they would save 128 bytes). */
    m = make_model(&SPECS[1], ctx);
    ASSERT(m);
    const int64_t act0 = mtli_small_gemm_available() ? 64 : 96;
    const int64_t small_rows[2] = { 64, 1 }, small_width[2] = { act0 + 64 + 3, 96 + 64 + 3 };
    for (int k = 0; k < 2; k++) {
        const size_t live0 = g_live;
        mtl_workspace *ws = NULL;
        ASSERT_OK(mtl_workspace_create(&ws, m, small_rows[k]));
        const size_t got = g_live - live0, want = (size_t)(small_rows[k] * small_width[k]) * sizeof(float);
        mtl_workspace_destroy(ws);
        if (got < want || got > want + 4096)
            FAILF("a %lld-row workspace of \"small\" holds %zu bytes, expected %zu + slots", (long long)small_rows[k],
                  got, want);
    }
    mtl_model_destroy(m);
    mtl_context_destroy(ctx);
    return 0;
}

TEST_MAIN(TEST_ENTRY(blis_sized_layers), TEST_ENTRY(blis_sized_layers_two_threads),
          TEST_ENTRY(workspace_size_does_not_change_a_pass), TEST_ENTRY(small_kernel_layers),
          TEST_ENTRY(small_kernel_layers_two_threads),
          TEST_ENTRY(trunk_depths_and_deep_heads), TEST_ENTRY(scalers_fitted_after_the_workspace),
          TEST_ENTRY(workspace_bytes))
