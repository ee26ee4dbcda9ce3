/* test_network_init.c -- mtl_model_set_init: the default (He normal for the
 * ReLU family, Glorot uniform otherwise, biases 0) is unchanged draw for
 * draw; MTL_INIT_UNIFORM_FAN_IN draws weights and biases in
 * +-1/sqrt(fan_in) as PyTorch's nn.Linear does; both are reproducible by
 * seed; wrong calls fail cleanly.
 *
 * A unit test: it re-derives every parameter from the documented formula
 * with the counter-based RNG (block i of the buffer draws from stream
 * MTLI_STREAM_INIT + i, element e from counter e), and checks the
 * distributions against their closed-form moments. */
#include "mtl_internal.h"
#include "test_network_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* One dense layer of a test model, by its weight block's name. */
typedef struct {
    const char *prefix; /* "trunk.0", "task.barrier.hidden.0", ... */
    int64_t fan_in, fan_out;
    bool he;            /* ReLU family: He normal under the default */
} layer_spec;

/* The model of test_network_model.c's layout tests: every activation
 * family, layer norm, a fused head with and without hidden layers. */
static const layer_spec mixed_layers[] = {
    { "trunk.0", 6, 16, true },                  /* relu */
    { "trunk.1", 16, 8, false },                 /* tanh, layer norm */
    { "task.barrier.hidden.0", 8, 5, true },     /* gelu, fused (5 x 8) */
    { "task.barrier.out", 5, 2, false },
    { "task.fast.out", 8, 1, false },            /* fused, no hidden layer */
    { "task.class.hidden.0", 8, 4, true },       /* relu, layer norm, fused */
    { "task.class.hidden.1", 4, 3, false },      /* sigmoid */
    { "task.class.out", 3, 3, false },
};
enum { N_MIXED = (int)(sizeof mixed_layers / sizeof mixed_layers[0]) };

/* Define the mixed model; set_init is called when init >= 0. */
static mtl_model *mixed_model(int64_t seed, int init)
{
    mtl_context *ctx = tn_context(seed, 1);
    mtl_model *m = NULL;
    if (!ctx || mtl_model_create(&m, ctx, 6) != MTL_OK) {
        mtl_context_destroy(ctx);
        return NULL;
    }
    mtl_context_destroy(ctx); /* the model keeps a copy of the settings */
    tn_define_mixed(m);
    if (init >= 0 && mtl_model_set_init(m, (mtl_init)init) != MTL_OK) {
        mtl_model_destroy(m);
        return NULL;
    }
    return m;
}

/* Finalize and copy out the parameters (malloc'ed; *np their count). */
static float *finalized_params(mtl_model *m, int64_t *np)
{
    if (!m || mtl_model_finalize(m) != MTL_OK) return NULL;
    *np = mtl_model_param_count(m);
    float *p = malloc((size_t)*np * sizeof *p);
    if (p && mtl_model_get_params(m, p, *np) != MTL_OK) {
        free(p);
        return NULL;
    }
    return p;
}

static const layer_spec *spec_of(const char *block_name)
{
    for (int i = 0; i < N_MIXED; i++) {
        size_t n = strlen(mixed_layers[i].prefix);
        if (strncmp(block_name, mixed_layers[i].prefix, n) == 0 && block_name[n] == '.') return &mixed_layers[i];
    }
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Element e of block `block` as the documented formula draws it. */
static float uniform_draw(double bound, uint64_t seed, int64_t block, int64_t e)
{
    uint64_t stream = (uint64_t)MTLI_STREAM_INIT + (uint64_t)block;
    return (float)(bound * (2.0 * mtli_rng_uniform(seed, stream, (uint64_t)e) - 1.0));
}

static float normal_draw(double sd, uint64_t seed, int64_t block, int64_t e)
{
    uint64_t stream = (uint64_t)MTLI_STREAM_INIT + (uint64_t)block;
    return (float)(sd * mtli_rng_normal(seed, stream, (uint64_t)e));
}

/* Every parameter of the finalized mixed model `m` equals the formula of
 * `init`, bit for bit; every parameter is covered by exactly one block. */
static int check_formula(const mtl_model *m, const float *p, int64_t np, mtl_init init, uint64_t seed)
{
    int64_t covered = 0;
    for (int64_t b = 0; b < mtl_model_param_block_count(m); b++) {
        const char *name;
        int64_t off, rows, cols, ld;
        ASSERT_OK(mtl_model_param_block(m, b, &name, &off, &rows, &cols, &ld));
        ASSERT_EQ_INT(ld, cols); /* contiguous: element e is p[off + e] */
        const layer_spec *L = spec_of(name);
        if (!L) FAILF("block %s is not in the test's table", name);
        const int64_t n = rows * cols;
        covered += n;
        for (int64_t e = 0; e < n; e++) {
            float want;
            if (ends_with(name, ".norm.gain"))
                want = 1.0f;
            else if (ends_with(name, ".norm.shift"))
                want = 0.0f;
            else if (init == MTL_INIT_UNIFORM_FAN_IN) /* weight and bias alike */
                want = uniform_draw(1.0 / sqrt((double)L->fan_in), seed, b, e);
            else if (ends_with(name, ".bias"))
                want = 0.0f;
            else if (L->he)
                want = normal_draw(sqrt(2.0 / (double)L->fan_in), seed, b, e);
            else
                want = uniform_draw(sqrt(6.0 / (double)(L->fan_in + L->fan_out)), seed, b, e);
            if (memcmp(&p[off + e], &want, sizeof want) != 0)
                FAILF("%s[%lld] = %.9g, the formula gives %.9g", name, (long long)e, p[off + e], want);
        }
    }
    ASSERT_EQ_INT(covered, np);
    return 0;
}

TEST(default_is_he_glorot_draw_for_draw)
{
    for (int64_t seed = 1; seed <= 3; seed++) {
        int64_t n0 = 0, n1 = 0;
        mtl_model *implicit = mixed_model(seed, -1), *explicit_ = mixed_model(seed, MTL_INIT_HE_GLOROT);
        float *p0 = finalized_params(implicit, &n0), *p1 = finalized_params(explicit_, &n1);
        ASSERT(p0 && p1);
        ASSERT_EQ_INT(n0, n1);
        /* Not calling set_init and choosing the default are the same model. */
        ASSERT(memcmp(p0, p1, (size_t)n0 * sizeof *p0) == 0);
        ASSERT(check_formula(implicit, p0, n0, MTL_INIT_HE_GLOROT, (uint64_t)seed) == 0);
        free(p0);
        free(p1);
        mtl_model_destroy(implicit);
        mtl_model_destroy(explicit_);
    }
    return 0;
}

TEST(uniform_fan_in_draw_for_draw)
{
    for (int64_t seed = 1; seed <= 3; seed++) {
        int64_t np;
        mtl_model *m = mixed_model(seed, MTL_INIT_UNIFORM_FAN_IN);
        float *p = finalized_params(m, &np);
        ASSERT(p);
        ASSERT(check_formula(m, p, np, MTL_INIT_UNIFORM_FAN_IN, (uint64_t)seed) == 0);
        free(p);
        mtl_model_destroy(m);
    }
    return 0;
}

/* A model with big layers for the distribution checks: 400 -> 300 (relu)
 * -> head 200 (tanh) -> 1. */
static mtl_model *big_model(int64_t seed, mtl_init init)
{
    mtl_context *ctx = tn_context(seed, 1);
    mtl_model *m = NULL;
    int64_t t;
    if (!ctx || mtl_model_create(&m, ctx, 400) != MTL_OK) {
        mtl_context_destroy(ctx);
        return NULL;
    }
    mtl_context_destroy(ctx);
    mtl_model_add_trunk_layer(m, 300, MTL_ACT_RELU, 0.0f, 0);
    mtl_model_add_task(m, "a", MTL_TASK_REGRESSION, 1, &t);
    mtl_model_add_head_layer(m, t, 200, MTL_ACT_TANH, 0.0f, 0);
    mtl_model_set_init(m, init);
    return m;
}

typedef struct {
    double mean, var, max_abs;
    int64_t n;
} moments;

static moments block_moments(const mtl_model *m, const float *p, const char *name)
{
    int64_t rows = 0, cols = 0, off = tn_block(m, name, &rows, &cols);
    moments r = { 0, 0, 0, rows * cols };
    double s = 0, s2 = 0;
    for (int64_t i = 0; off >= 0 && i < r.n; i++) {
        s += p[off + i];
        s2 += (double)p[off + i] * p[off + i];
        r.max_abs = fmax(r.max_abs, fabs(p[off + i]));
    }
    r.mean = s / (double)r.n;
    r.var = s2 / (double)r.n - r.mean * r.mean;
    return r;
}

TEST(default_statistics_he_and_glorot)
{
    int64_t np;
    mtl_model *m = big_model(5, MTL_INIT_HE_GLOROT);
    float *p = finalized_params(m, &np);
    ASSERT(p);
    /* He: N(0, 2/400), 120000 draws; sd of the sd estimate ~ sd/sqrt(2n). */
    moments he = block_moments(m, p, "trunk.0.weight");
    const double sd_he = sqrt(2.0 / 400);
    ASSERT_EQ_INT(he.n, 120000);
    ASSERT_NEAR(sqrt(he.var), sd_he, 5.0 / sqrt(2.0 * (double)he.n), 0);
    ASSERT(fabs(he.mean) < 5.0 * sd_he / sqrt((double)he.n));
    ASSERT(he.max_abs > 3.5 * sd_he); /* normal tails: P(|z| > 3.5) * 120000 ~ 56 draws */
    /* Glorot uniform for tanh: +-sqrt(6/(300+200)), var a^2/3. */
    moments gl = block_moments(m, p, "task.a.hidden.0.weight");
    const double a = sqrt(6.0 / 500);
    ASSERT(gl.max_abs <= a && gl.max_abs > 0.99 * a);
    ASSERT_NEAR(gl.var, a * a / 3, 5.0 * 0.894 / sqrt((double)gl.n), 0);
    int64_t rows = 0, cols = 0, off = tn_block(m, "trunk.0.bias", &rows, &cols);
    ASSERT(off >= 0 && cols == 300);
    for (int64_t i = 0; i < cols; i++) ASSERT(p[off + i] == 0.0f);
    free(p);
    mtl_model_destroy(m);
    return 0;
}

TEST(uniform_fan_in_statistics)
{
    int64_t np;
    mtl_model *m = big_model(5, MTL_INIT_UNIFORM_FAN_IN);
    float *p = finalized_params(m, &np);
    ASSERT(p);
    static const struct {
        const char *name;
        int64_t fan_in;
    } blocks[] = {
        { "trunk.0.weight", 400 }, { "trunk.0.bias", 400 }, { "task.a.hidden.0.weight", 300 },
        { "task.a.hidden.0.bias", 300 }, { "task.a.out.weight", 200 }, { "task.a.out.bias", 200 },
    };
    for (size_t k = 0; k < sizeof blocks / sizeof blocks[0]; k++) {
        moments s = block_moments(m, p, blocks[k].name);
        const double bound = 1.0 / sqrt((double)blocks[k].fan_in);
        ASSERT(s.n > 0);
        /* every value inside the bound; the float rounding of bound*(2u-1)
         * cannot leave [-bound, bound] by more than half an ulp */
        if (s.max_abs > bound * (1 + 1e-7)) FAILF("%s: |value| %.9g > 1/sqrt(fan_in) %.9g", blocks[k].name, s.max_abs, bound);
        if (s.n >= 200) {
            /* Var U(-b, b) = b^2/3 = 1/(3 fan_in); the relative sd of the
             * estimate is sqrt(4/5 - 4/9) * 3 / sqrt(n) / 2 ~ 0.894/sqrt(n):
             * allow 5 of them (about 1.3 % for the 120000 trunk weights). */
            ASSERT_NEAR(s.var, 1.0 / (3.0 * (double)blocks[k].fan_in), 5.0 * 0.894 / sqrt((double)s.n), 0);
            ASSERT(s.max_abs > 0.9 * bound); /* not a narrower law */
        } else {
            ASSERT(s.max_abs > 0.0); /* the one output bias is drawn, not 0 */
        }
    }
    free(p);
    mtl_model_destroy(m);
    return 0;
}

TEST(reproducible_by_seed)
{
    int64_t na = 0, nb = 0, nc = 0, nd = 0;
    mtl_model *ma = mixed_model(7, MTL_INIT_UNIFORM_FAN_IN), *mb = mixed_model(7, MTL_INIT_UNIFORM_FAN_IN);
    mtl_model *mc = mixed_model(8, MTL_INIT_UNIFORM_FAN_IN), *md = mixed_model(7, MTL_INIT_HE_GLOROT);
    float *a = finalized_params(ma, &na), *b = finalized_params(mb, &nb);
    float *c = finalized_params(mc, &nc), *d = finalized_params(md, &nd);
    ASSERT(a && b && c && d);
    ASSERT(na == nb && na == nc && na == nd);
    ASSERT(memcmp(a, b, (size_t)na * sizeof *a) == 0);
    ASSERT(memcmp(a, c, (size_t)na * sizeof *a) != 0); /* another seed */
    ASSERT(memcmp(a, d, (size_t)na * sizeof *a) != 0); /* another law */

    /* Saved and loaded: the loader keeps the drawn values (it never
     * re-initialises, so files need not record the choice). */
    size_t size = 0;
    ASSERT_OK(mtl_model_save_buffer(ma, NULL, 0, &size));
    void *buf = malloc(size);
    ASSERT(buf);
    ASSERT_OK(mtl_model_save_buffer(ma, buf, size, &size));
    mtl_model *loaded = NULL;
    ASSERT_OK(mtl_model_load_buffer(&loaded, NULL, buf, size));
    int64_t nl;
    float *l = malloc((size_t)na * sizeof *l);
    ASSERT(l);
    ASSERT_OK(mtl_model_get_params(loaded, l, na));
    nl = mtl_model_param_count(loaded);
    ASSERT_EQ_INT(nl, na);
    ASSERT(memcmp(a, l, (size_t)na * sizeof *a) == 0);
    free(l);
    free(buf);
    mtl_model_destroy(loaded);
    free(a);
    free(b);
    free(c);
    free(d);
    mtl_model_destroy(ma);
    mtl_model_destroy(mb);
    mtl_model_destroy(mc);
    mtl_model_destroy(md);
    return 0;
}

TEST(wrong_calls_change_nothing)
{
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_init(NULL, MTL_INIT_HE_GLOROT));
    ASSERT_MSG_HAS("mtl_model_set_init");

    /* An unknown id is refused and the earlier choice stays. */
    mtl_model *m = mixed_model(3, MTL_INIT_UNIFORM_FAN_IN), *ref = mixed_model(3, MTL_INIT_UNIFORM_FAN_IN);
    ASSERT(m && ref);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_init(m, (mtl_init)2));
    ASSERT_MSG_HAS("unknown initialisation 2");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_model_set_init(m, (mtl_init)-1));
    int64_t n = 0, nr = 0;
    float *p = finalized_params(m, &n), *pr = finalized_params(ref, &nr);
    ASSERT(p && pr && n == nr);
    ASSERT(memcmp(p, pr, (size_t)n * sizeof *p) == 0);

    /* After finalize: MTL_ERR_STATE (a bad id too), parameters untouched. */
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_set_init(m, MTL_INIT_HE_GLOROT));
    ASSERT_MSG_HAS("mtl_model_set_init");
    ASSERT_MSG_HAS("finalized");
    ASSERT_STATUS(MTL_ERR_STATE, mtl_model_set_init(m, (mtl_init)7));
    ASSERT_OK(mtl_model_get_params(m, p, n));
    ASSERT(memcmp(p, pr, (size_t)n * sizeof *p) == 0);
    free(p);
    free(pr);
    mtl_model_destroy(m);
    mtl_model_destroy(ref);
    return 0;
}

TEST_MAIN(TEST_ENTRY(default_is_he_glorot_draw_for_draw), TEST_ENTRY(uniform_fan_in_draw_for_draw),
          TEST_ENTRY(default_statistics_he_and_glorot), TEST_ENTRY(uniform_fan_in_statistics),
          TEST_ENTRY(reproducible_by_seed), TEST_ENTRY(wrong_calls_change_nothing))
