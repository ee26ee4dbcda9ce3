/*
 * mtl_internal.h -- definitions shared by the library's modules (not installed).
 *
 * Non-static internal functions are prefixed mtli_ so the linker version
 * script (libmtl.map, which exports mtl_* only) can never export them.
 */
#ifndef MTL_INTERNAL_H
#define MTL_INTERNAL_H

#define MTL_BUILDING_LIBRARY 1
#include "mtl.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- attributes ---------------------------------------------------------- */
#if defined(__GNUC__)
#define MTLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MTLI_UNUSED __attribute__((unused))
#else
#define MTLI_PRINTF(f, a)
#define MTLI_UNUSED
#endif

#define MTLI_ALIGN 64 /* every buffer: cache line / AVX-512 aligned */

/* ---- errors (error.c) ---------------------------------------------------- */

/* Set the thread-local message and return `status`, so every failure path
 * is one statement:  return mtli_fail(MTL_ERR_SHAPE, "task '%s': ...", ...); */
mtl_status mtli_fail(mtl_status status, const char *fmt, ...) MTLI_PRINTF(2, 3);
/* Prefix the current thread-local message with a context string
 * ("loading 'x.mtl': ") and return `status` unchanged. */
mtl_status mtli_fail_prefix(mtl_status status, const char *fmt, ...) MTLI_PRINTF(2, 3);

/* Shorthand for argument checks. */
#define MTLI_CHECK_ARG(cond, ...)                                                \
    do {                                                                         \
        if (!(cond)) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, __VA_ARGS__);   \
    } while (0)
#define MTLI_TRY(expr)                                                           \
    do {                                                                         \
        mtl_status mtli_s_ = (expr);                                             \
        if (mtli_s_ != MTL_OK) return mtli_s_;                                   \
    } while (0)

/* ---- settings copied from a context into every handle (context.c) -------- */

typedef struct mtli_settings {
    int64_t num_threads;
    int64_t seed;
    int64_t parallel_min_flops;
    mtl_allocator allocator; /* alloc/free never NULL after mtli_settings_from */
    mtl_log_fn log_fn;
    void *log_user;
    mtl_log_level log_min;
} mtli_settings;

/* Fill `s` from ctx (NULL = defaults). */
void mtli_settings_from(mtli_settings *s, const mtl_context *ctx);
void mtli_settings_defaults(mtli_settings *s);
void mtli_allocator_defaults(mtl_allocator *a);

/* ---- options (options.c): the one table of types, bounds ----------------- */
/* Validate a value for `option` (task_family: an mtl_task_option). */
mtl_status mtli_option_check_i64(int option, bool task_family, int64_t value);
mtl_status mtli_option_check_f64(int option, bool task_family, double value);

/* ---- memory (alloc.c) ---------------------------------------------------- */

/* MTLI_ALIGN-aligned allocation through the settings' allocator.  Returns
 * NULL on failure (and on size 0); callers turn that into
 * MTL_ERR_OUT_OF_MEMORY with a message naming what was being allocated. */
void *mtli_alloc(const mtli_settings *s, size_t size);
void *mtli_calloc(const mtli_settings *s, size_t count, size_t size); /* overflow-checked, zeroed */
void mtli_free(const mtli_settings *s, void *p);
char *mtli_strdup(const mtli_settings *s, const char *str);
/* `array` (capacity *cap elements of `elem` bytes) with room for `need`:
 * the same pointer, or a copy of twice the capacity (from 4; new elements
 * zeroed; the old one freed).  NULL when out of memory: `array` and *cap
 * are then unchanged.  For definition tables that grow one entry at a time. */
void *mtli_reserve(const mtli_settings *s, void *array, int64_t *cap, int64_t need, size_t elem);
/* Arena carving (engine and workspace): a first pass with base == NULL only
 * adds up the bytes, the second hands out MTLI_ALIGN-aligned pieces of
 * base; the same code runs both times, so size and layout cannot disagree. */
typedef struct mtli_carver {
    char *base;
    size_t off;
    bool overflow;
} mtli_carver;
void *mtli_carve(mtli_carver *c, size_t count, size_t size);
/* A process-unique, never-zero number for a new handle (thread-safe). */
uint64_t mtli_next_serial(void);
/* Checked size arithmetic: false on overflow. */
bool mtli_mul_size(size_t a, size_t b, size_t *out);
bool mtli_add_size(size_t a, size_t b, size_t *out);

/* ---- logging (context.c) ------------------------------------------------- */
void mtli_log(const mtli_settings *s, mtl_log_level level, const char *fmt, ...) MTLI_PRINTF(3, 4);

/* ---- counter-based RNG (rng.c) -------------------------------------------
 * Every draw is a pure function of (seed, stream, counter), so a result
 * never depends on call order or thread count.  Streams are assigned in
 * the constants below. */
uint64_t mtli_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform in (0, 1), never 0 or 1. */
double mtli_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);
/* Standard normal (Box-Muller on two counters 2c, 2c+1). */
double mtli_rng_normal(uint64_t seed, uint64_t stream, uint64_t counter);

enum {
    MTLI_STREAM_INIT = 0x1000,     /* + parameter block index */
    MTLI_STREAM_DROPOUT = 0x2000,  /* + layer index; counter = step * stride + element */
    MTLI_STREAM_SHUFFLE = 0x3000,  /* counter = epoch << 32 | i */
    MTLI_STREAM_WEIGHTING = 0x4000 /* RLW weights, PCGrad order */
};
/* Steps (and any other training counter) stay below this, so RNG counters
 * derived from them cannot wrap; the loss weighting refuses later steps
 * and checkpoint loading refuses larger counters. */
#define MTLI_MAX_STEPS ((int64_t)1 << 47)

/* ---- BLIS glue (blis_glue.c): every BLIS call goes through here ----------
 * Row-major semantics: C[m x n] = alpha * op(A) * op(B) + beta * C, with
 * op(A) m x k, op(B) k x n; ld* are row strides in elements.  Dimensions
 * and strides are validated before BLIS sees them (BLIS aborts on bad
 * arguments).  The thread count comes from the handle's settings, via a
 * per-call rntm_t, and GEMMs under parallel_min_flops run on one thread. */
typedef struct mtli_blas {
    int64_t num_threads;
    int64_t parallel_min_flops;
    bool warm_weights; /* read the B operand (a layer's weights) once before
                        * BLIS packs it (the training forward pass: see
                        * mtli_gemm); false after init */
} mtli_blas;

void mtli_blas_init(mtli_blas *b, const mtli_settings *s);
mtl_status mtli_gemm(const mtli_blas *b, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, const float *bm, int64_t ldb,
                     float beta, float *c, int64_t ldc);
/* y[m] = alpha * op(A) x + beta * y, A row-major m x n (op = A or A^T). */
mtl_status mtli_gemv(const mtli_blas *b, bool trans_a, int64_t m, int64_t n, float alpha,
                     const float *a, int64_t lda, const float *x, int64_t incx, float beta,
                     float *y, int64_t incy);
/* Make sure bli_init() ran (idempotent, thread-safe). */
void mtli_blis_ensure_init(void);

/* ---- model (model.c and friends) ----------------------------------------- */

#define MTLI_MAX_NAME 255
#define MTLI_MAX_UNITS ((int64_t)1 << 24)
#define MTLI_MAX_LAYERS 64   /* per trunk or head */
#define MTLI_MAX_TASKS 256

/* Definition of one dense layer (what the user asked for; saved in files). */
typedef struct mtli_layer_spec {
    int64_t units;
    mtl_activation act;
    float dropout;
    unsigned flags; /* MTL_LAYER_NORM */
} mtli_layer_spec;

/* Where a finalized dense layer lives in the flat parameter buffer. */
typedef struct mtli_layer {
    int64_t fan_in, fan_out;
    mtl_activation act;
    float dropout;
    bool layer_norm;
    int64_t w_off, ldw; /* weight: fan_in x fan_out view, row stride ldw */
    int64_t b_off;      /* bias: fan_out */
    int64_t gain_off, shift_off; /* layer norm (if layer_norm), fan_out each */
    /* true for the first layer of every head: its weight is stored
     * TRANSPOSED, fan_out x fan_in, contiguous (ldw = fan_in), and the
     * first layers of all tasks follow each other, so together they form
     * one (sum of widths) x embed_width matrix: the fused head GEMM reads
     * it with trans_b, and each task's block stays contiguous (see
     * mtli_task_param_spans). */
    bool w_trans;
} mtli_layer;

typedef struct mtli_task {
    char *name;
    char *unit;        /* may be NULL */
    char *description; /* may be NULL */
    mtl_task_type type;
    mtl_loss loss;
    int64_t n_outputs;  /* regression/binary: outputs; multiclass: K */
    int64_t n_targets;  /* target columns: n_outputs, or 1 for multiclass */
    int64_t target_col; /* first column in the target matrix */
    int64_t output_col; /* first column in the output matrix */
    double loss_weight;
    double huber_delta;
    bool standardize;
    bool log_target;
    int64_t n_hidden;
    mtli_layer_spec *hidden_spec; /* n_hidden (capacity hidden_cap) */
    int64_t hidden_cap;
    /* finalized */
    mtli_layer *layers; /* n_hidden + 1 (last = output layer) */
    int64_t fused_col;  /* first column of layers[0]'s block in the fused layer */
    int64_t head_begin, head_end; /* [begin, end): every head parameter except layers[0]'s weight */
} mtli_task;

/* Fitted scalers and domain (all NULL until mtl_model_fit_scalers). */
typedef struct mtli_scalers {
    bool fitted;
    float *x_mean, *x_scale;      /* n_inputs: x' = (x - mean) / scale */
    float *x_min, *x_max;         /* n_inputs: training-data domain */
    float *y_mean, *y_scale;      /* target_width: y' = (f(y) - mean) / scale, f = ln if log_target */
} mtli_scalers;

typedef struct mtli_kv {
    char *key, *value;
} mtli_kv;

struct mtl_model {
    mtli_settings settings;
    uint64_t serial; /* process-unique: a workspace checks it still serves this model */
    mtli_blas blas;
    bool finalized;
    int64_t n_inputs;
    /* How finalize draws the parameters (mtl_model_set_init).  Not saved in
     * model files or checkpoints: the loaders finalize without drawing and
     * then overwrite every parameter, so a loaded model never needs it. */
    mtl_init init;

    int64_t n_trunk;
    mtli_layer_spec *trunk_spec;   /* n_trunk (capacity trunk_cap <= MTLI_MAX_LAYERS) */
    int64_t trunk_cap;
    int64_t n_tasks;
    mtli_task *tasks;              /* n_tasks (capacity task_cap <= MTLI_MAX_TASKS) */
    int64_t task_cap;
    int64_t target_width, output_width;

    /* finalized: one 64-byte aligned flat buffer; layers are views */
    float *params;
    int64_t n_params;
    mtli_layer *trunk;             /* n_trunk */
    int64_t embed_width;           /* trunk output width */
    int64_t fused_width;           /* sum over tasks of their first head layer's width */

    mtli_scalers scalers;
    char **feature_names;          /* n_inputs entries, each may be NULL; array may be NULL */
    int64_t n_meta;
    mtli_kv *meta;

    /* finalized (model.c): the layout, described block by block */
    int64_t fused_w_off;           /* fused first-head-layer weights: fused_width x embed_width */
    int64_t n_blocks;
    struct mtli_param_block *blocks; /* n_blocks, in buffer order */
};

/* Free the model's metadata, feature names and task units/descriptions and
 * set them to NULL (metadata.c; mtl_model_destroy calls it). */
void mtli_metadata_free(mtl_model *m);

/* One named matrix of the flat parameter buffer (mtl_model_param_block). */
typedef struct mtli_param_block {
    char *name;
    int64_t offset, rows, cols, ld;
} mtli_param_block;

/* Parameter layout (model.c), in buffer order:
 *   trunk layer 0: weight (fan_in x fan_out), bias, [norm.gain, norm.shift]; layer 1 ...
 *   fused block:   task 0's first head layer weight (h_0 x E, transposed), task 1's, ...
 *   task 0 rest:   first-layer bias [, norm], hidden layer 1 weight, bias [, norm], ..., out
 *   task 1 rest ...
 * So task t owns exactly two contiguous spans: its rows of the fused block
 * and [head_begin, head_end).  Writes them to spans[0..1] (begin, end) and
 * returns 2. */
int64_t mtli_task_param_spans(const mtl_model *m, int64_t task, int64_t spans[2][2]);


/* ---- data sets (dataset.c) ------------------------------------------------ */

/* Is the label at (row i, column j) observed?  Not if it is NaN or its mask
 * byte is 0 (mask may be NULL).  The one definition of a missing label:
 * validation, scalers, losses and metrics all skip the same cells. */
static inline bool mtli_label_is_observed(const uint8_t *mask, int64_t ldmask, const float *y, int64_t ldy,
                                          int64_t i, int64_t j)
{
    return (!mask || mask[i * ldmask + j] != 0) && y[i * ldy + j] == y[i * ldy + j]; /* y == y: not NaN */
}

/* The logistic function without overflow (exp of a non-positive number
 * only): the sigmoid activation and binary tasks' predicted probabilities. */
static inline float mtli_sigmoidf(float u)
{
    const float e = expf(-fabsf(u));
    return (u >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* Is an observed multiclass label a class index, an integer in [0, K)?
 * The one rule for training, losses and metrics. */
static inline bool mtli_is_class_index(float v, int64_t K)
{
    return v >= 0.0f && v < (float)K && v == (float)(int64_t)v;
}

/* Storage shared by a data set and its views (reference counted). */
typedef struct mtli_dataset_store {
    mtli_settings settings;
    int64_t refcount;          /* handles using it; freed at 0 */
    bool owned;                /* arrays below were allocated by libmtl */
    int64_t n_rows, n_inputs, n_targets;
    const float *x; int64_t ldx;
    const float *y; int64_t ldy;           /* may be NULL */
    const uint8_t *mask; int64_t ldmask;   /* may be NULL */
    const float *sample_weight;            /* may be NULL */
} mtli_dataset_store;

struct mtl_dataset {
    mtli_dataset_store *store;
    int64_t n_rows;
    int64_t *rows; /* NULL = identity view of the store; else n_rows indices */
};

/* Row r of a data set (through the view's index map). */
static inline int64_t mtli_dataset_row(const mtl_dataset *ds, int64_t r)
{
    return ds->rows ? ds->rows[r] : r;
}

/* ---- optimisers (optim.c) -------------------------------------------------
 * Updates run over the flat parameter buffer in vectorisable loops; a
 * range list carries per-task learning-rate multipliers. */
typedef struct mtli_optim_config {
    mtl_optimizer kind;
    double momentum;
    bool nesterov;
    double beta1, beta2, eps;
    double weight_decay;
} mtli_optim_config;

typedef struct mtli_range {
    int64_t begin, end; /* [begin, end) in the flat buffer */
    float lr_scale;
} mtli_range;

typedef struct mtli_optim_state {
    float *m; /* first moment / SGD velocity, n_params (NULL if unused) */
    float *v; /* second moment, n_params (NULL if unused) */
    int64_t t; /* updates applied (Adam bias correction) */
} mtli_optim_state;

mtl_status mtli_optim_state_create(mtli_optim_state *st, const mtli_settings *s, int64_t n_params);
void mtli_optim_state_destroy(mtli_optim_state *st, const mtli_settings *s);
/* One update with base learning rate `lr` over every range. */
void mtli_optim_update(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                       const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges);
/* The same with a chosen instruction set (tests compare the paths; every
 * path gives bitwise the same result).  mtli_optim_best_isa: this CPU's. */
enum { MTLI_ISA_BASELINE = 0, MTLI_ISA_AVX2 = 1, MTLI_ISA_AVX512 = 2 };
int mtli_optim_best_isa(void);
void mtli_optim_update_isa(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                           const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges,
                           int isa);
/* libmtl's own passes over the flat buffers (this update, the gradient
 * finite check) run on n_threads OpenMP threads, each on one contiguous
 * slice; elementwise, so bitwise the same for any n_threads.
 * mtli_pass_threads: how many a pass over n floats should use given the
 * handle's num_threads (1 without OpenMP or below 2 slices of
 * MTLI_PASS_MIN_PER_THREAD, measured in docs/threading.md). */
#define MTLI_PASS_MIN_PER_THREAD ((int64_t)1 << 17)
int64_t mtli_pass_threads(int64_t n, int64_t num_threads);
/* The same for a layer's bias / activation pass over n elements, which
 * runs between two GEMMs that have just used the threads (OpenMP's idle
 * threads still spin: a cheaper start than the optimiser's). */
#define MTLI_ELEMENTWISE_MIN_PER_THREAD ((int64_t)1 << 15)
int64_t mtli_elementwise_threads(int64_t n, int64_t num_threads);
/* Run body(ctx, lo, hi) over [0, n) on n_threads threads (parallel.c),
 * each taking one contiguous slice starting at a multiple of 16 elements
 * (fewer threads if OpenMP gives fewer; serially when n_threads <= 1). */
typedef void (*mtli_slice_fn)(void *ctx, int64_t lo, int64_t hi);
void mtli_run_slices(mtli_slice_fn body, void *ctx, int64_t n, int64_t n_threads);
/* Threads for n_tasks independent tasks of similar size (predict's passes
 * of a small model): min(num_threads, n_tasks), 1 without OpenMP. */
int64_t mtli_task_threads(int64_t n_tasks, int64_t num_threads);
/* Run body(ctx, k, lo, hi) on up to n_threads threads, thread k taking
 * tasks [lo, hi) of [0, n) in an even contiguous split (no rounding);
 * k < n_threads indexes per-thread state.  Serially (k = 0) when
 * n_threads <= 1 or n <= 1. */
typedef void (*mtli_part_fn)(void *ctx, int64_t k, int64_t lo, int64_t hi);
void mtli_run_parts(mtli_part_fn body, void *ctx, int64_t n, int64_t n_threads);
/* The update with the gradient taken as grad_scale * grads (clipping; 1 =
 * as is), on up to n_threads threads: the same bits for any n_threads. */
void mtli_optim_update_par(const mtli_optim_config *cfg, mtli_optim_state *st, float *params,
                           const float *grads, double lr, const mtli_range *ranges, int64_t n_ranges,
                           int isa, int64_t n_threads, float grad_scale);
/* Is every one of x[0..n) finite (no Inf, no NaN)? */
bool mtli_all_finite(const float *x, int64_t n, int isa, int64_t n_threads);
/* Sum of x[i]^2 in double (gradient clipping): the same bits for any
 * n_threads and isa (optim.c); NaN or Inf exactly when some x[i] is. */
double mtli_sum_squares(const float *x, int64_t n, int isa, int64_t n_threads);

/* The first non-Inf/NaN element, in row order, of a rows x cols matrix with
 * row stride ld: false if there is none, else true with *row and *col set
 * (for the caller's message).  A vector pass first (on up to num_threads
 * threads when the matrix is big, see mtli_pass_threads); the scalar scan
 * that finds the cell runs only when it fails. */
bool mtli_find_non_finite(const float *x, int64_t rows, int64_t cols, int64_t ld, int64_t num_threads,
                          int64_t *row, int64_t *col);

/* ---- loss weighting (weighting.c) -----------------------------------------
 * Every method turns T per-task signals into coefficients: rep_weights[t]
 * multiplies task t's gradient on the shared representation z,
 * head_weights[t] multiplies the gradient reaching task t's own head.
 * Gradient-based methods need only the T x T Gram matrix of the per-task
 * representation gradients (PCGrad, CAGrad, MGDA, ... are all linear
 * combinations of the task gradients). */
typedef struct mtli_weighting mtli_weighting; /* defined in weighting.c */

typedef struct mtli_weighting_params {
    mtl_weighting method;
    double dwa_temperature;   /* default 2 */
    double gradnorm_alpha;    /* default 1.5 */
    double cagrad_c;          /* default 0.4 */
    double learning_rate;     /* learned weights, default 0.025 (GradNorm) / 1e-3 ... */
    uint64_t seed;
} mtli_weighting_params;

mtl_status mtli_weighting_create(mtli_weighting **out, const mtli_settings *s,
                                 const mtli_weighting_params *p, int64_t n_tasks,
                                 const double *loss_weights);
void mtli_weighting_destroy(mtli_weighting *w, const mtli_settings *s);
bool mtli_weighting_needs_gram(const mtli_weighting *w);
bool mtli_weighting_method_needs_gram(mtl_weighting method);
/* losses: T current per-task losses (unweighted); gram: T x T or NULL;
 * has_label[t]: task t has labels in this batch (others get weight 0). */
mtl_status mtli_weighting_step(mtli_weighting *w, int64_t step, const double *losses,
                               const double *gram, const bool *has_label,
                               double *rep_weights, double *head_weights);
/* The weights the next step would use, without moving any learned state
 * (mtl_trainer_compute_gradients). */
mtl_status mtli_weighting_peek(mtli_weighting *w, int64_t step, const double *losses,
                               const double *gram, const bool *has_label, double *rep_weights,
                               double *head_weights);
/* Move the learned state as mtli_weighting_step would have, with the same
 * losses, gram and has_label given to the mtli_weighting_peek before it:
 * peek + commit == step.  The trainer commits only a step that succeeds. */
mtl_status mtli_weighting_commit(mtli_weighting *w, const double *losses, const double *gram,
                                 const bool *has_label);
/* Called with each finished epoch's mean training losses (DWA history). */
void mtli_weighting_epoch_end(mtli_weighting *w, const double *epoch_losses);
/* Take new method and hyper-parameters.  Every method's learned state is
 * kept (a method switched back to resumes where it was). */
mtl_status mtli_weighting_set_params(mtli_weighting *w, const mtli_weighting_params *p);
/* Take new task loss weights (T values, finite, >= 0). */
mtl_status mtli_weighting_set_loss_weights(mtli_weighting *w, const double *loss_weights);
/* Uncertainty weighting: use Kendall's classification form for this task
 * (loss L e^{-s} + s/2 instead of L e^{-s}/2 + s/2). */
mtl_status mtli_weighting_set_classification(mtli_weighting *w, int64_t task, bool classification);
/* The learned state for checkpoints (little-endian, fixed width; layout in
 * weighting.c and docs/loss-weighting.md).  save: MTL_ERR_SHAPE if
 * cap < state_size.  load: validates everything (MTL_ERR_FORMAT names the
 * field; the task count must match) before changing w. */
size_t mtli_weighting_state_size(const mtli_weighting *w);
mtl_status mtli_weighting_save(const mtli_weighting *w, uint8_t *buf, size_t cap);
mtl_status mtli_weighting_load(mtli_weighting *w, const uint8_t *buf, size_t n);

/* ---- task-conflict diagnostics (diagnostics.c) -----------------------------
 * A record holds one step's diagnostics, or an epoch's sums or means:
 *   [0] steps with weights, [1] steps with gradient statistics,
 *   [2] steps with affinity, [3] the trainer's epoch count when the
 *   record's epoch began, then weights[T], grad norms[T], cosines[T*T],
 *   conflicting pairs[1], affinity[T*T].
 * trainer->diag_step is one record; trainer->diag_epoch two: the running
 * epoch's sums, then the last finished epoch's means.  An epoch is
 * finished when trainer->epoch has moved past the running record's. */
size_t mtli_diag_record_size(int64_t n_tasks);
mtl_status mtli_diag_create(mtl_trainer *t);  /* allocates diag_step and diag_epoch */
void mtli_diag_destroy(mtl_trainer *t);
/* cos_ij = G_ij / sqrt(G_ii G_jj); 0 for pairs with a zero gradient
 * (the diagonal is 1 for a non-zero gradient). */
void mtli_diag_cosine(int64_t n, const double *gram, double *cos);
/* Pairs i < j with G_ij < 0 (a negative cosine) among non-zero gradients. */
int64_t mtli_diag_conflicts(int64_t n, const double *gram);
/* Record a step: weights (the step's rep weights), gram (may be NULL) for
 * norms, cosines and conflicts, affinity (may be NULL). */
void mtli_diag_record_step(mtl_trainer *t, const double *weights, const double *gram,
                           const double *affinity);

/* ---- the weighting stage of a step (trainer_weighting.c) ------------------ */
/* mtl_trainer_create / destroy: the weighting state, diagnostics, scratch. */
mtl_status mtli_trainer_weighting_init(mtl_trainer *t);
void mtli_trainer_weighting_free(mtl_trainer *t);
/* After the forward pass and the losses (t->last_losses, t->has_label):
 * choose rep/head weights with the configured method and run the backward
 * into t->grads, moving no state.  step: a real optimiser step (also the
 * diagnostics' Gram and affinity scratch for mtli_trainer_weighting_commit);
 * else mtl_trainer_compute_gradients.
 * mask/ldmask/sw: the batch's, for the affinity lookahead's losses. */
mtl_status mtli_trainer_weighted_backward(mtl_trainer *t, bool step, const uint8_t *mask,
                                          int64_t ldmask, const float *sw);
/* After a step's gradient passed the finiteness check: move the learned
 * weights and record the diagnostics of the weighted_backward just run (a
 * failed step changes neither). */
mtl_status mtli_trainer_weighting_commit(mtl_trainer *t);
/* Make now every buffer the steps need with the current options (else the
 * first step that needs one makes it), so a fit cannot run out of memory
 * once it has started (fit.c). */
mtl_status mtli_trainer_step_buffers(mtl_trainer *t);


/* ---- trainer options, schedule (trainer_options.c, schedule.c) ----------- */
/* Set every option of a new trainer to its documented default. */
void mtli_trainer_options_defaults(mtl_trainer *t);
/* After each optimiser step: advance counters, update lr_now. */
void mtli_schedule_after_step(mtl_trainer *t);
/* After each epoch, once trainer->epoch counts it.  monitored_loss: the
 * weighted validation loss, or the training loss without a validation set
 * (NaN: no information, the plateau state is left alone). */
void mtli_schedule_after_epoch(mtl_trainer *t, double monitored_loss);
/* Recompute lr_now from the options and the schedule state. */
void mtli_schedule_refresh(mtl_trainer *t);
/* Rebuild trainer->ranges from task_lr_mult and the model layout. */
mtl_status mtli_trainer_build_ranges(mtl_trainer *t);
/* The training modules' share of a trainer (fit.c).  mtl_trainer_create
 * calls mtli_trainer_training_init once model, settings, blas, max_batch
 * and n_tasks are set: it sets every option to its default and allocates
 * task_lr_mult, ranges, opt_state and the per-task fit-loop fields (the
 * fit-only buffers wait for the first fit).
 * mtl_trainer_destroy calls mtli_trainer_training_free (safe on a zeroed
 * or partly initialised trainer). */
mtl_status mtli_trainer_training_init(mtl_trainer *t);
void mtli_trainer_training_free(mtl_trainer *t);
/* Allocate t->best_params (zeroed) if it is not there yet: the first fit
 * makes it, or loading a checkpoint that holds best weights (fit.c). */
mtl_status mtli_trainer_best_params_alloc(mtl_trainer *t);

/* ---- scalers (scalers.c) --------------------------------------------------
 * Apply the model's fitted scalers (identity when not fitted).  Inputs:
 * x' = (x - mean) / scale.  Targets: t' = (f(t) - mean) / scale with
 * f = ln for log-target tasks; NaN (missing) stays NaN; regression only
 * (class labels pass through).  Outputs: the inverse, regression columns
 * of the output layout only, in place. */
void mtli_scale_inputs(const mtl_model *m, int64_t n, const float *x, int64_t ldx, float *out, int64_t ldo);
/* Fails (MTL_ERR_INVALID_ARGUMENT naming row, column and task) on a
 * non-positive observed target of a log-target task.  A regression cell
 * whose mask byte is 0 (mask may be NULL) is missing: NaN in out. */
mtl_status mtli_scale_targets(const mtl_model *m, int64_t n, const float *y, int64_t ldy, const uint8_t *mask,
                              int64_t ldmask, float *out, int64_t ldo);
void mtli_unscale_outputs(const mtl_model *m, int64_t n, float *out, int64_t ldo);
/* The error for an observed label y <= 0 of a
 * log-target task at (row, target column): one message for every caller. */
mtl_status mtli_fail_log_target(const mtli_task *task, int64_t row, int64_t col, double y);
/* Free the fitted scalers (mtl_model_destroy calls it). */
void mtli_scalers_free(mtl_model *m);

/* ---- metrics (metrics.c) ---------------------------------------------------
 * Per-task metrics from predictions already made (output layout, original
 * units, as mtl_model_predict writes them) and the matching targets. */
typedef struct mtli_eval_arrays {
    int64_t n;
    const float *pred; int64_t ldp;      /* n x output_width */
    const float *y; int64_t ldy;         /* n x target_width, NaN = missing */
    const uint8_t *mask; int64_t ldmask; /* may be NULL */
    const float *w;                      /* sample weights, may be NULL (loss only) */
} mtli_eval_arrays;
/* out[T] as mtl_model_evaluate.  scratch: n * 16 bytes for ROC-AUC, may be
 * NULL for every other metric. */
mtl_status mtli_metric_compute(const mtl_model *m, const mtli_eval_arrays *a, mtl_metric metric,
                               void *scratch, double *out);
/* Predictions and targets of a data set, kept for several metrics.  The
 * buffers are sized for `ds` at creation; run predicts every row (through
 * `ws`, chunk by chunk) and gathers the targets. */
typedef struct mtli_evaluator mtli_evaluator;
mtl_status mtli_evaluator_create(mtli_evaluator **out, const mtl_model *m, const mtl_dataset *ds);
void mtli_evaluator_destroy(mtli_evaluator *ev);
mtl_status mtli_evaluator_run(mtli_evaluator *ev, const mtl_model *m, mtl_workspace *ws,
                              const mtl_dataset *ds);
mtl_status mtli_evaluator_metric(const mtli_evaluator *ev, const mtl_model *m, mtl_metric metric,
                                 double *out);
/* A data set fits the model (inputs, target columns; targets required if asked). */
mtl_status mtli_check_dataset(const mtl_model *m, const mtl_dataset *ds, bool need_targets,
                              const char *fn);

/* ---- trainer --------------------------------------------------------------
 * Sections are owned by the module named; add fields only in your section. */
typedef struct mtli_engine mtli_engine; /* forward/backward buffers, network code */

struct mtl_trainer {
    mtl_model *model;
    mtli_settings settings;
    mtli_blas blas;
    int64_t max_batch;
    int64_t n_tasks;

    /* options (trainer_options.c) */
    mtli_optim_config optim;
    double learning_rate;
    double clip_norm;
    mtl_schedule schedule;
    int64_t schedule_step_epochs;
    double schedule_gamma;
    int64_t warmup_steps;
    double min_learning_rate;
    int64_t plateau_patience;
    int64_t batch_size, epochs;
    int64_t early_stop_patience;
    double early_stop_min_delta;
    int64_t callback_every_steps;
    mtli_weighting_params weighting_params;
    bool diagnostics_on, affinity_on;
    double *task_lr_mult; /* T */

    /* engine (network code: trainer.c, forward/backward) */
    mtli_engine *engine;
    float *grads;          /* n_params, aligned */
    mtli_range *ranges;    /* per-task lr ranges (task t's parameters: mtli_task_param_spans;
                            * its first-layer weight is stored transposed, mtli_layer.w_trans) */
    int64_t n_ranges;
    double *last_losses;   /* T, last step */
    double *rep_weights;   /* T: weights of the last step on the shared representation */
    double *head_weights;  /* T: ... on each task's own head (FIXED: both = loss weights) */
    bool *has_label;       /* T: task had observed labels in the last batch */
    bool grads_valid;      /* grads hold the gradient of the last batch */

    /* optimiser and schedule state (optim.c, schedule.c) */
    mtli_optim_state opt_state;
    double lr_now;             /* learning rate used by the next step */
    double plateau_best;
    int64_t plateau_bad_epochs;
    double lr_plateau_scale;
    int64_t step_count;        /* optimiser steps taken */
    int64_t total_steps_hint;  /* cosine schedule length, set by fit */

    /* fit loop (fit.c) */
    int64_t epoch;             /* epochs completed */
    double elapsed_seconds;
    double *epoch_losses[2];   /* [split][T] */
    double *epoch_metrics;     /* [split][metric][T] cache; see fit.c */
    int64_t metrics_epoch[2];  /* epoch whose metrics the cache holds, per split (-1: none) */
    int64_t best_epoch;        /* weighted validation loss */
    double best_loss;
    int64_t *task_best_epoch;  /* T */
    double *task_best_loss;    /* T */
    int64_t bad_epochs;
    /* Fit-only buffers: NULL until the first fit (best_params also made by
     * loading a checkpoint that holds best weights); see fit.c. */
    float *best_params;        /* n_params */
    float *epoch_params;       /* n_params: weights at the start of the current epoch */
    float *batch_x, *batch_y;  /* max_batch x n_inputs / target_width: gathered mini-batch */
    uint8_t *batch_mask;       /* max_batch x target_width (when the data set has a mask) */
    float *batch_w;            /* max_batch (when the data set has sample weights) */
    mtl_workspace *eval_ws;    /* validation passes (created by the first fit) */
    const mtl_dataset *fit_data[2]; /* [split] during fit, for lazy metrics; else NULL */

    /* loss weighting and diagnostics (weighting.c, diagnostics.c, trainer_weighting.c) */
    mtli_weighting *weighting;
    double *diag_step;         /* see diagnostics.c */
    double *diag_epoch;
    double *step_gram;         /* T x T: Gram of the step's per-task representation gradients */
    double *step_affinity;     /* T x T: lookahead affinity of the step */
    double *lookahead_losses;  /* T */
    bool *lookahead_labels;    /* T */
    float *lookahead_z;        /* max_batch x embed width, allocated when affinity is first used */
};

/* mtl_model_finalize; initialise = false leaves the parameters zero (for
 * the loader, which overwrites them all). */
mtl_status mtli_model_finalize(mtl_model *m, bool initialise);

/* Validate a batch (shapes, NaN/Inf inputs, Inf targets) for `model`. */
mtl_status mtli_check_batch(const mtl_model *model, int64_t n, const float *x, int64_t ldx,
                            const float *y, int64_t ldy, const uint8_t *mask, int64_t ldmask,
                            const float *sample_weight);

#endif /* MTL_INTERNAL_H */
