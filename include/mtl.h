/*
 * mtl.h -- libmtl, multi-task neural networks for chemical kinetics.
 *
 * SPDX-License-Identifier: MIT
 *
 * A worked example: two related tasks (a barrier and a reaction energy)
 * share a trunk; each has its own head.  Error handling is shortened to
 * CHECK(); every function that can fail returns an mtl_status.
 *
 *     #define CHECK(x) do { mtl_status s_ = (x); if (s_ != MTL_OK) {     \
 *         fprintf(stderr, "%s: %s\n", mtl_status_string(s_),               \
 *                 mtl_last_error_message()); return 1; } } while (0)
 *
 *     mtl_model *m = NULL;
 *     CHECK(mtl_model_create(&m, NULL, n_features));       // NULL = default context
 *     CHECK(mtl_model_add_trunk_layer(m, 256, MTL_ACT_RELU, 0.1f, 0));
 *     int64_t t_act, t_r;
 *     CHECK(mtl_model_add_task(m, "G_act", MTL_TASK_REGRESSION, 1, &t_act));
 *     CHECK(mtl_model_add_head_layer(m, t_act, 64, MTL_ACT_RELU, 0.0f, 0));
 *     CHECK(mtl_model_add_task(m, "G_r", MTL_TASK_REGRESSION, 1, &t_r));
 *     CHECK(mtl_model_add_head_layer(m, t_r, 64, MTL_ACT_RELU, 0.0f, 0));
 *     CHECK(mtl_model_finalize(m));
 *
 *     mtl_dataset *train = NULL;                            // zero-copy view of host arrays;
 *     CHECK(mtl_dataset_create(&train, NULL, n, n_features, 2,  // NaN target = no label
 *                              x, n_features, y, 2, NULL, 0, NULL, 0));
 *     CHECK(mtl_model_fit_scalers(m, train));
 *
 *     mtl_trainer *tr = NULL;
 *     CHECK(mtl_trainer_create(&tr, m, 128));
 *     CHECK(mtl_trainer_set_i64(tr, MTL_OPT_OPTIMIZER, MTL_OPTIMIZER_ADAMW));
 *     CHECK(mtl_trainer_set_f64(tr, MTL_OPT_LEARNING_RATE, 1e-3));
 *     CHECK(mtl_trainer_fit(tr, train, NULL, NULL, NULL));
 *
 *     mtl_workspace *ws = NULL;                             // one per predicting thread
 *     CHECK(mtl_workspace_create(&ws, m, 1));
 *     float out[2];
 *     CHECK(mtl_model_predict(m, ws, 1, x, n_features, out, 2));
 *     CHECK(mtl_model_save(m, "barrier.mtl"));
 *
 *     mtl_workspace_destroy(ws); mtl_trainer_destroy(tr);
 *     mtl_dataset_destroy(train); mtl_model_destroy(m);
 *
 * Conventions used throughout (see docs/errors.md, docs/threading.md):
 * - Handles are opaque.  `*_create(&out, ...)` sets *out on success and
 *   leaves it NULL on failure; `*_destroy(NULL)` is a no-op.
 * - On failure a function returns a non-zero mtl_status, leaves its out
 *   parameters and caller buffers untouched (unless documented), leaves
 *   every handle usable, and sets a thread-local message readable with
 *   mtl_last_error_message().
 * - Matrices are row-major float32 with an explicit leading dimension
 *   (`ld*`, counted in elements, >= the number of columns).
 * - Sizes and indices are int64_t.  Strings are NUL-terminated UTF-8.
 * - The library never aborts, exits or prints.  Diagnostics go to the
 *   optional log callback of the context.
 * - Thread safety: one thread at a time per handle, unless a function says
 *   otherwise.  Distinct handles are independent.
 */
#ifndef MTL_H
#define MTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Export macro and versions
 * ---------------------------------------------------------------------- */

#if defined(MTL_BUILDING_LIBRARY) && defined(__GNUC__)
#define MTL_API __attribute__((visibility("default")))
#else
#define MTL_API
#endif

/* The single source of truth for the version: meson reads these lines. */
#define MTL_VERSION_MAJOR 0
#define MTL_VERSION_MINOR 1
#define MTL_VERSION_PATCH 0
#define MTL_VERSION_NUMBER \
    (MTL_VERSION_MAJOR * 10000 + MTL_VERSION_MINOR * 100 + MTL_VERSION_PATCH)

/** @return MTL_VERSION_NUMBER of the library actually linked (compare it
 *  with the header's MTL_VERSION_NUMBER to detect a mismatch).
 *  @thread_safety any thread. */
MTL_API int mtl_version_number(void);
/** @return the library version as "MAJOR.MINOR.PATCH" (static storage). */
MTL_API const char *mtl_version_string(void);

/* ------------------------------------------------------------------------
 * Status codes.  Values are part of the ABI: never renumbered, only added.
 * ---------------------------------------------------------------------- */

typedef enum mtl_status {
    MTL_OK = 0,
    MTL_ERR_INVALID_ARGUMENT = 1, /**< NULL pointer, bad enum, out-of-range value */
    MTL_ERR_OUT_OF_MEMORY = 2,    /**< an allocation failed; nothing changed */
    MTL_ERR_SHAPE = 3,            /**< dimensions or leading dimensions disagree */
    MTL_ERR_STATE = 4,            /**< wrong call order (e.g. define after finalize) */
    MTL_ERR_IO = 5,               /**< the OS refused a file operation */
    MTL_ERR_FORMAT = 6,           /**< a file or buffer is malformed or corrupted */
    MTL_ERR_VERSION = 7,          /**< file or library version not supported */
    MTL_ERR_NON_FINITE = 8,       /**< NaN/Inf where a finite number is needed */
    MTL_ERR_UNSUPPORTED = 9,      /**< valid request this build cannot do */
    MTL_ERR_INTERNAL = 10,        /**< a bug in libmtl; please report it */
    MTL_ERR_NOT_FOUND = 11        /**< a named item (task, column, key) does not exist */
} mtl_status;

/** @return a static description of a status code; never NULL (unknown
 *  codes give "unknown status").  @thread_safety any thread. */
MTL_API const char *mtl_status_string(mtl_status status);

/** @return the detailed message of the last failure on the calling thread
 *  ("" if none).  Never NULL; valid until this thread's next libmtl call.
 *  @thread_safety thread-local. */
MTL_API const char *mtl_last_error_message(void);

/* ------------------------------------------------------------------------
 * Options.  The value type is encoded in the option number (curl style):
 * a setter of the wrong type returns MTL_ERR_INVALID_ARGUMENT.
 * ---------------------------------------------------------------------- */

#define MTL_OPTTYPE_I64 0x10000
#define MTL_OPTTYPE_F64 0x20000

typedef enum mtl_option {
    /* context */
    MTL_OPT_NUM_THREADS = MTL_OPTTYPE_I64 | 1,      /**< threads per call (BLIS GEMMs, and the trainer's optimiser
                                                       and gradient passes on big models), 1..256, default 1 */
    MTL_OPT_SEED = MTL_OPTTYPE_I64 | 2,             /**< RNG seed, 0..INT64_MAX, default 42 */
    MTL_OPT_PARALLEL_MIN_FLOPS = MTL_OPTTYPE_I64 | 3, /**< GEMMs below this many flops run on 1 thread */

    /* trainer: optimiser */
    MTL_OPT_OPTIMIZER = MTL_OPTTYPE_I64 | 100,      /**< mtl_optimizer, default ADAMW */
    MTL_OPT_LEARNING_RATE = MTL_OPTTYPE_F64 | 101,  /**< (0, 10], default 1e-3 */
    MTL_OPT_MOMENTUM = MTL_OPTTYPE_F64 | 102,       /**< SGD momentum [0, 1), default 0 */
    MTL_OPT_NESTEROV = MTL_OPTTYPE_I64 | 103,       /**< 0/1, default 0 */
    MTL_OPT_BETA1 = MTL_OPTTYPE_F64 | 104,          /**< [0, 1), default 0.9 */
    MTL_OPT_BETA2 = MTL_OPTTYPE_F64 | 105,          /**< [0, 1), default 0.999 */
    MTL_OPT_EPSILON = MTL_OPTTYPE_F64 | 106,        /**< (0, 1], default 1e-8 */
    MTL_OPT_WEIGHT_DECAY = MTL_OPTTYPE_F64 | 107,   /**< [0, 1], default 0 (AdamW: decoupled) */
    MTL_OPT_CLIP_NORM = MTL_OPTTYPE_F64 | 108,      /**< global grad-norm clip, 0 = off (docs/training.md) */

    /* trainer: learning-rate schedule */
    MTL_OPT_SCHEDULE = MTL_OPTTYPE_I64 | 120,       /**< mtl_schedule, default CONSTANT */
    MTL_OPT_SCHEDULE_STEP_EPOCHS = MTL_OPTTYPE_I64 | 121, /**< STEP: decay every N epochs */
    MTL_OPT_SCHEDULE_GAMMA = MTL_OPTTYPE_F64 | 122, /**< STEP/PLATEAU factor (0, 1) */
    MTL_OPT_WARMUP_STEPS = MTL_OPTTYPE_I64 | 123,   /**< COSINE: linear warm-up steps */
    MTL_OPT_MIN_LEARNING_RATE = MTL_OPTTYPE_F64 | 124, /**< COSINE floor / PLATEAU floor */
    MTL_OPT_PLATEAU_PATIENCE = MTL_OPTTYPE_I64 | 125, /**< PLATEAU: epochs without gain */

    /* trainer: fit loop */
    MTL_OPT_BATCH_SIZE = MTL_OPTTYPE_I64 | 140,     /**< rows per step, 1..max_batch, default min(32, max_batch) */
    MTL_OPT_EPOCHS = MTL_OPTTYPE_I64 | 141,         /**< maximum epochs, default 100 */
    MTL_OPT_EARLY_STOP_PATIENCE = MTL_OPTTYPE_I64 | 142, /**< 0 = off, default 0 */
    MTL_OPT_EARLY_STOP_MIN_DELTA = MTL_OPTTYPE_F64 | 143, /**< required improvement, default 0 */
    MTL_OPT_CALLBACK_EVERY_STEPS = MTL_OPTTYPE_I64 | 144, /**< 0 = only after epochs */

    /* trainer: loss weighting (see docs/loss-weighting.md) */
    MTL_OPT_WEIGHTING = MTL_OPTTYPE_I64 | 160,      /**< mtl_weighting, default FIXED */
    MTL_OPT_DWA_TEMPERATURE = MTL_OPTTYPE_F64 | 161,
    MTL_OPT_GRADNORM_ALPHA = MTL_OPTTYPE_F64 | 162,
    MTL_OPT_CAGRAD_C = MTL_OPTTYPE_F64 | 163,
    MTL_OPT_WEIGHTING_LR = MTL_OPTTYPE_F64 | 164,   /**< lr of learned weights (uncertainty, GradNorm) */
    MTL_OPT_DIAGNOSTICS = MTL_OPTTYPE_I64 | 165,    /**< 0/1: compute task-gradient diagnostics every step */
    MTL_OPT_AFFINITY = MTL_OPTTYPE_I64 | 166        /**< 0/1: compute lookahead task affinity */
} mtl_option;

/** Per-task options, on a model (mtl_model_set_task_*) or a trainer
 *  (mtl_trainer_set_task_*). */
typedef enum mtl_task_option {
    MTL_TASK_OPT_LOSS_WEIGHT = MTL_OPTTYPE_F64 | 1,   /**< model: >= 0, default 1 */
    MTL_TASK_OPT_HUBER_DELTA = MTL_OPTTYPE_F64 | 2,   /**< model: > 0, default 1 */
    MTL_TASK_OPT_LOSS = MTL_OPTTYPE_I64 | 3,          /**< model: mtl_loss */
    MTL_TASK_OPT_STANDARDIZE = MTL_OPTTYPE_I64 | 4,   /**< model: 0/1 target standardisation (regression, default 1) */
    MTL_TASK_OPT_LOG_TARGET = MTL_OPTTYPE_I64 | 5,    /**< model: 0/1 learn ln(y) (y > 0), predict exp */
    MTL_TASK_OPT_LR_MULTIPLIER = MTL_OPTTYPE_F64 | 6  /**< trainer: head lr multiplier, default 1 */
} mtl_task_option;

/** Valid range of an integer option (for enum options: the id range). */
MTL_API mtl_status mtl_option_bounds_i64(int option, int64_t *min, int64_t *max);
/** Valid range of a floating-point option. */
MTL_API mtl_status mtl_option_bounds_f64(int option, double *min, double *max);

/* ------------------------------------------------------------------------
 * Context: threads, seed, allocator, log.  NULL wherever a context is
 * taken means defaults.  Handles copy the context's settings when they are
 * created, so a context may be destroyed (or changed) afterwards.
 * ---------------------------------------------------------------------- */

typedef struct mtl_context mtl_context;

/** Optional allocator hook.  `alloc` must return memory aligned to
 *  `alignment` (a power of two, <= 4096) or NULL.  Fields are only ever
 *  appended; set struct_size = sizeof(mtl_allocator) (MTL_ALLOCATOR_INIT). */
typedef struct mtl_allocator {
    size_t struct_size;
    void *(*alloc)(void *user, size_t size, size_t alignment);
    void (*free)(void *user, void *ptr);
    void *user;
} mtl_allocator;
#define MTL_ALLOCATOR_INIT { sizeof(mtl_allocator), NULL, NULL, NULL }

typedef enum mtl_log_level {
    MTL_LOG_DEBUG = 0,
    MTL_LOG_INFO = 1,
    MTL_LOG_WARN = 2,
    MTL_LOG_ERROR = 3
} mtl_log_level;

/** Log callback; `message` is valid only during the call.  It may be
 *  called from whichever thread calls into libmtl.  Handles copy the
 *  function pointer and `user` when they are created, so both must stay
 *  valid until every handle made from the context is destroyed. */
typedef void (*mtl_log_fn)(void *user, mtl_log_level level, const char *message);

/** Create a context.  @param allocator NULL for malloc/free; copied.
 *  @return MTL_ERR_INVALID_ARGUMENT if the allocator is incomplete. */
MTL_API mtl_status mtl_context_create(mtl_context **out, const mtl_allocator *allocator);
MTL_API void mtl_context_destroy(mtl_context *ctx);
/** Set the log callback (NULL disables logging) and minimum level. */
MTL_API mtl_status mtl_context_set_log(mtl_context *ctx, mtl_log_fn fn, void *user,
                                       mtl_log_level min_level);
MTL_API mtl_status mtl_context_set_i64(mtl_context *ctx, int option, int64_t value);
MTL_API mtl_status mtl_context_get_i64(const mtl_context *ctx, int option, int64_t *value);

/* ------------------------------------------------------------------------
 * BLIS runtime configuration
 * ---------------------------------------------------------------------- */

/** BLIS version string, e.g. "0.9.0" (static). */
MTL_API const char *mtl_blis_version(void);
/** Name of the kernel set BLIS runs, e.g. "skx", "zen3", "generic". */
MTL_API const char *mtl_blis_arch(void);
/** @return 1 when BLIS runs its generic kernels although this CPU has
 *  AVX2 or AVX-512 (the Debian BLIS 0.9 / new-CPU trap), else 0. */
MTL_API int mtl_blis_is_fallback(void);
/** Threading model BLIS was built with: "openmp", "pthreads" or "none". */
MTL_API const char *mtl_blis_threading(void);
/** Instruction set of libmtl's own kernels for small products (under
 *  4 MFLOP: a small network's GEMMs, 1-wide layers, batch-1 predict):
 *  "avx512", "avx2" or "none" (then BLIS computes everything).  Chosen
 *  once per process from the CPU; the environment variable
 *  MTL_SMALL_KERNEL=avx2 or =off overrides it (diagnostics).  Both kernel
 *  sets give the same bits (static string). */
MTL_API const char *mtl_small_kernels(void);

/** Opt in to the fastest kernel set compiled into BLIS for this CPU.
 *
 *  BLIS chooses its kernels once per process, when it initialises, from
 *  the environment variable BLIS_ARCH_TYPE.  This function sets that
 *  variable (to the best set this CPU can run) if and only if the user has
 *  not set it and BLIS has not yet been initialised by libmtl, then
 *  initialises BLIS.  It is a process-wide choice: call it at start-up,
 *  before any thread uses BLIS.  It is never done implicitly.
 *  @param chosen if not NULL, receives the arch name in effect afterwards
 *  (also on MTL_ERR_STATE, the one failure that reports what runs).
 *  @return MTL_ERR_STATE if BLIS was already initialised with another set
 *  (the message says which), MTL_OK otherwise (also when nothing needed
 *  doing). */
MTL_API mtl_status mtl_blis_select_best_arch(const char **chosen);

/* ------------------------------------------------------------------------
 * Model definition
 * ---------------------------------------------------------------------- */

typedef struct mtl_model mtl_model;

/** Stable ids (also stored in files): never renumbered. */
typedef enum mtl_activation {
    MTL_ACT_IDENTITY = 0,
    MTL_ACT_RELU = 1,
    MTL_ACT_LEAKY_RELU = 2, /**< slope 0.01 for x < 0 */
    MTL_ACT_TANH = 3,
    MTL_ACT_SIGMOID = 4,
    MTL_ACT_GELU = 5,       /**< tanh approximation */
    MTL_ACT_SOFTPLUS = 6
} mtl_activation;

typedef enum mtl_task_type {
    MTL_TASK_REGRESSION = 1, /**< n_outputs real values */
    MTL_TASK_BINARY = 2,     /**< n_outputs independent 0/1 labels (sigmoid + BCE) */
    MTL_TASK_MULTICLASS = 3  /**< one label in 0..K-1 (softmax + cross-entropy); n_outputs = K */
} mtl_task_type;

typedef enum mtl_loss {
    MTL_LOSS_MSE = 1,
    MTL_LOSS_MAE = 2,
    MTL_LOSS_HUBER = 3,
    MTL_LOSS_BCE = 4,          /**< binary tasks (only choice) */
    MTL_LOSS_CROSS_ENTROPY = 5 /**< multiclass tasks (only choice) */
} mtl_loss;

/** Layer flags for mtl_model_add_trunk_layer / mtl_model_add_head_layer. */
#define MTL_LAYER_NORM 1u /**< layer normalisation before the activation */

/** Start defining a model with `n_inputs` input features. */
MTL_API mtl_status mtl_model_create(mtl_model **out, const mtl_context *ctx, int64_t n_inputs);
MTL_API void mtl_model_destroy(mtl_model *model);

/** Append a dense layer to the shared trunk.
 *  @param dropout in [0, 1); applied to this layer's output in training. */
MTL_API mtl_status mtl_model_add_trunk_layer(mtl_model *model, int64_t units, mtl_activation act,
                                             float dropout, unsigned flags);

/** Add a task.  Its head starts with no hidden layer; its output layer
 *  (identity activation; logits for classification) is implicit.
 *  @param name unique, non-empty UTF-8, at most 255 bytes.
 *  @param n_outputs regression/binary: number of outputs (>= 1);
 *         multiclass: number of classes K (>= 2).
 *  @param task_index if not NULL, receives the new task's index. */
MTL_API mtl_status mtl_model_add_task(mtl_model *model, const char *name, mtl_task_type type,
                                      int64_t n_outputs, int64_t *task_index);

/** Append a hidden dense layer to task `task`'s head. */
MTL_API mtl_status mtl_model_add_head_layer(mtl_model *model, int64_t task, int64_t units,
                                            mtl_activation act, float dropout, unsigned flags);

MTL_API mtl_status mtl_model_set_task_f64(mtl_model *model, int64_t task, int option, double value);
MTL_API mtl_status mtl_model_set_task_i64(mtl_model *model, int64_t task, int option, int64_t value);
MTL_API mtl_status mtl_model_get_task_f64(const mtl_model *model, int64_t task, int option, double *value);
MTL_API mtl_status mtl_model_get_task_i64(const mtl_model *model, int64_t task, int option, int64_t *value);

/** How mtl_model_finalize initialises dense layers.  Stable ids: never
 *  renumbered.  MTL_INIT_HE_GLOROT, the default: weights He normal (std
 *  sqrt(2 / fan_in)) for the ReLU family (ReLU, leaky ReLU, GELU,
 *  softplus), Glorot uniform (+-sqrt(6 / (fan_in + fan_out))) otherwise;
 *  biases 0.  MTL_INIT_UNIFORM_FAN_IN: weights and biases uniform in
 *  +-1/sqrt(fan_in), as PyTorch's nn.Linear, whatever the activation.
 *  Layer-norm gains and shifts always start at 1 and 0. */
typedef enum mtl_init {
    MTL_INIT_HE_GLOROT = 0,     /**< the default: He for the ReLU family, Glorot otherwise */
    MTL_INIT_UNIFORM_FAN_IN = 1 /**< +-1/sqrt(fan_in), as PyTorch's nn.Linear */
} mtl_init;

/** Choose how mtl_model_finalize initialises the parameters (default
 *  MTL_INIT_HE_GLOROT).  Draws are a pure function of the context seed, so
 *  a given seed and choice always give bitwise the same parameters.  Not
 *  stored in model files: a loaded model is never re-initialised.
 *  @param init an mtl_init value.
 *  @return MTL_ERR_INVALID_ARGUMENT for a NULL model or an unknown `init`;
 *          MTL_ERR_STATE once the model is finalized.
 *  @thread_safety one thread at a time per model (a definition call). */
MTL_API mtl_status mtl_model_set_init(mtl_model *model, mtl_init init);

/** Check the definition, allocate the parameters and initialise them
 *  (as mtl_model_set_init chose; by default He for the ReLU family,
 *  Glorot otherwise) from the context seed. */
MTL_API mtl_status mtl_model_finalize(mtl_model *model);

/* Read-back (valid before and after finalize unless said). */
MTL_API int64_t mtl_model_input_count(const mtl_model *model);
MTL_API int64_t mtl_model_task_count(const mtl_model *model);
/** Dense layers in total (trunk + every head hidden layer + output layers). */
MTL_API int64_t mtl_model_layer_count(const mtl_model *model);
/** Number of float parameters (0 before finalize). */
MTL_API int64_t mtl_model_param_count(const mtl_model *model);
/** Width of the shared trunk output (the embedding); n_inputs if no trunk. */
MTL_API int64_t mtl_model_embedding_width(const mtl_model *model);
/** Target-matrix columns: regression/binary n_outputs each, multiclass 1. */
MTL_API int64_t mtl_model_target_width(const mtl_model *model);
/** Prediction-matrix columns: regression/binary n_outputs, multiclass K. */
MTL_API int64_t mtl_model_output_width(const mtl_model *model);
MTL_API int mtl_model_is_finalized(const mtl_model *model);

MTL_API mtl_status mtl_model_task_name(const mtl_model *model, int64_t task, const char **name);
MTL_API mtl_status mtl_model_task_type(const mtl_model *model, int64_t task, mtl_task_type *type);
MTL_API mtl_status mtl_model_task_outputs(const mtl_model *model, int64_t task, int64_t *n_outputs);
/** First column of the task in the target matrix and in the output matrix. */
MTL_API mtl_status mtl_model_task_columns(const mtl_model *model, int64_t task,
                                          int64_t *target_col, int64_t *output_col);
/** @return MTL_ERR_NOT_FOUND if no task has this name. */
MTL_API mtl_status mtl_model_find_task(const mtl_model *model, const char *name, int64_t *task);

/* Parameter access (finalized models).  All parameters live in one flat
 * buffer; blocks describe the matrices in it. */
MTL_API mtl_status mtl_model_get_params(const mtl_model *model, float *out, int64_t n);
MTL_API mtl_status mtl_model_set_params(mtl_model *model, const float *params, int64_t n);
MTL_API int64_t mtl_model_param_block_count(const mtl_model *model);
/** Block `i`: a rows x cols row-major matrix at `offset` with leading
 *  dimension `ld` in the flat buffer.  Names look like "trunk.0.weight",
 *  "task.G_act.hidden.0.bias", "task.G_act.out.weight",
 *  "trunk.1.norm.gain".  A weight is fan_in x fan_out (y = x W + b),
 *  except the first layer of each head ("hidden.0", or "out" when the head
 *  has no hidden layer): it is stored fan_out x fan_in (y = x W^T + b), so
 *  that the first layers of all heads form one matrix and run as one
 *  product.  Biases and norm gains/shifts are 1 x units. */
MTL_API mtl_status mtl_model_param_block(const mtl_model *model, int64_t i, const char **name,
                                         int64_t *offset, int64_t *rows, int64_t *cols, int64_t *ld);

/* ------------------------------------------------------------------------
 * Data sets: host arrays bound zero-copy (or copied), and row views.
 * ---------------------------------------------------------------------- */

typedef struct mtl_dataset mtl_dataset;

#define MTL_DATASET_COPY 1u /**< copy the arrays instead of binding them */

/** Describe `n_rows` examples.  Without MTL_DATASET_COPY the arrays are
 *  bound, not copied: they must stay valid and unchanged while the data set
 *  (or any view of it) is used.
 *  @param y targets (n_rows x n_targets, NaN = no label); may be NULL for
 *         input-only data.  @param mask optional uint8 (non-zero = label
 *  observed), same shape as y.  @param sample_weight optional, n_rows, >= 0.
 *  Inputs are checked for NaN/Inf here (MTL_ERR_NON_FINITE names row and
 *  column), targets for +-Inf. */
MTL_API mtl_status mtl_dataset_create(mtl_dataset **out, const mtl_context *ctx, int64_t n_rows,
                                      int64_t n_inputs, int64_t n_targets, const float *x,
                                      int64_t ldx, const float *y, int64_t ldy,
                                      const uint8_t *mask, int64_t ldmask,
                                      const float *sample_weight, unsigned flags);
/** A view of `n` rows of `parent` (indices into the parent, repeats
 *  allowed) sharing its storage.  The view keeps the storage alive: the
 *  parent handle may be destroyed first. */
MTL_API mtl_status mtl_dataset_view(mtl_dataset **out, const mtl_dataset *parent, int64_t n,
                                    const int64_t *rows);
MTL_API void mtl_dataset_destroy(mtl_dataset *ds);
MTL_API int64_t mtl_dataset_row_count(const mtl_dataset *ds);
MTL_API int64_t mtl_dataset_input_count(const mtl_dataset *ds);
MTL_API int64_t mtl_dataset_target_count(const mtl_dataset *ds);
/** Copy rows [first, first+n) of the inputs / targets into caller buffers. */
MTL_API mtl_status mtl_dataset_get_inputs(const mtl_dataset *ds, int64_t first, int64_t n,
                                          float *x, int64_t ldx);
MTL_API mtl_status mtl_dataset_get_targets(const mtl_dataset *ds, int64_t first, int64_t n,
                                           float *y, int64_t ldy);

/** CSV loader flags. */
#define MTL_CSV_DROP_INCOMPLETE 1u /**< drop rows with an empty/NaN input cell instead of failing */

/** Load a CSV file (header row; comma separated; RFC 4180 quoting; LF or
 *  CRLF; UTF-8 with optional BOM; gzip-compressed files are read
 *  transparently).  Numbers are parsed independently of the C locale.
 *  Inputs and targets are chosen by column name; an empty or "NaN" target
 *  cell is a missing label.  Errors name the line and column.
 *  The data set owns the parsed arrays.  See docs/csv-and-data.md.
 *  @param target_names may be NULL when n_targets is 0.
 *  @return MTL_ERR_NOT_FOUND (a name not in the header), MTL_ERR_FORMAT
 *  (malformed text, a missing input, no data rows, a limit exceeded),
 *  MTL_ERR_NON_FINITE (inf or beyond the float range), MTL_ERR_IO. */
MTL_API mtl_status mtl_dataset_load_csv(mtl_dataset **out, const mtl_context *ctx, const char *path,
                                        const char *const *input_names, int64_t n_inputs,
                                        const char *const *target_names, int64_t n_targets,
                                        unsigned flags);
/** The same from a memory buffer (not NUL-terminated). */
MTL_API mtl_status mtl_dataset_load_csv_buffer(mtl_dataset **out, const mtl_context *ctx,
                                               const void *data, size_t size,
                                               const char *const *input_names, int64_t n_inputs,
                                               const char *const *target_names, int64_t n_targets,
                                               unsigned flags);

/* ------------------------------------------------------------------------
 * Scalers and domain
 * ---------------------------------------------------------------------- */

/** Fit input standardisation, per-task target standardisation (and log
 *  transforms) and the training-data domain (per-feature min/max) on
 *  `train`.  Stored in the model; predict applies them, so callers see
 *  original units.  Zero-variance columns get scale 1.  Call after
 *  finalize and before training.  A data set without targets fits the
 *  input scalers and domain only; the target scalers are then the
 *  identity (and MTL_TASK_OPT_STANDARDIZE / LOG_TARGET no longer change). */
MTL_API mtl_status mtl_model_fit_scalers(mtl_model *model, const mtl_dataset *train);
/** For each of `n` rows, out[i] = number of features outside the
 *  training-data domain (0 = inside).  MTL_ERR_STATE if no domain. */
MTL_API mtl_status mtl_model_check_domain(const mtl_model *model, int64_t n, const float *x,
                                          int64_t ldx, int64_t *out);

/* ------------------------------------------------------------------------
 * Inference
 * ---------------------------------------------------------------------- */

typedef struct mtl_workspace mtl_workspace;

/** Scratch for predict, sized for `max_batch` rows (larger calls are
 *  processed in chunks).  One workspace per predicting thread.  With
 *  MTL_OPT_NUM_THREADS > 1 BLIS threads each big product; a small model's
 *  passes (a few hundred rows on libmtl's own kernel) instead run on
 *  separate threads, and the workspace holds one set of pass buffers per
 *  thread (never more sets than max_batch needs).  Destroy it
 *  before its model (a workspace used with any other model, or after its
 *  model was destroyed and another created, is MTL_ERR_INVALID_ARGUMENT).
 *  Create it after mtl_model_fit_scalers: after a later fit, the first
 *  predict may allocate room for the scaled inputs, once
 *  (MTL_ERR_OUT_OF_MEMORY if it cannot). */
MTL_API mtl_status mtl_workspace_create(mtl_workspace **out, const mtl_model *model, int64_t max_batch);
MTL_API void mtl_workspace_destroy(mtl_workspace *ws);

/** Predict `n` rows.  `out` is n x mtl_model_output_width(): regression
 *  values in original target units, binary probabilities, multiclass class
 *  probabilities.  Allocates nothing (but see mtl_workspace_create on
 *  scalers fitted after the workspace).
 *  @thread_safety many threads may predict with one model at once, each
 *  with its own workspace. */
MTL_API mtl_status mtl_model_predict(const mtl_model *model, mtl_workspace *ws, int64_t n,
                                     const float *x, int64_t ldx, float *out, int64_t ldout);
/** Like predict, but in the target layout (n x mtl_model_target_width()):
 *  regression values, binary 0/1 labels, multiclass argmax class index. */
MTL_API mtl_status mtl_model_predict_labels(const mtl_model *model, mtl_workspace *ws, int64_t n,
                                            const float *x, int64_t ldx, float *out, int64_t ldout);
/** The shared trunk output (n x mtl_model_embedding_width()). */
MTL_API mtl_status mtl_model_embed(const mtl_model *model, mtl_workspace *ws, int64_t n,
                                   const float *x, int64_t ldx, float *out, int64_t ldout);

/* ------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------- */

typedef enum mtl_metric {
    MTL_METRIC_LOSS = 1,          /**< the task's training loss (scaled units) */
    MTL_METRIC_MAE = 2,           /**< regression, original units */
    MTL_METRIC_RMSE = 3,
    MTL_METRIC_R2 = 4,
    MTL_METRIC_ACCURACY = 5,      /**< binary and multiclass */
    MTL_METRIC_CROSS_ENTROPY = 6, /**< binary and multiclass, nats */
    MTL_METRIC_ROC_AUC = 7        /**< binary */
} mtl_metric;

/** Evaluate `metric` for every task on `data` (missing labels skipped).
 *  out[t] is NaN when the metric does not apply to task t or it has no
 *  labels.  Multi-output tasks average over their outputs. */
MTL_API mtl_status mtl_model_evaluate(const mtl_model *model, mtl_workspace *ws,
                                      const mtl_dataset *data, mtl_metric metric, double *out);

/** Multi-task gain: delta_m = 100/T * sum_t s_t (single_t - multi_t) / single_t,
 *  s_t = +1 when lower is better, -1 when higher is better.  In percent. */
MTL_API mtl_status mtl_delta_m(int64_t n_tasks, const double *multi, const double *single,
                               const int *higher_is_better, double *out);

/* ------------------------------------------------------------------------
 * Training
 * ---------------------------------------------------------------------- */

typedef struct mtl_trainer mtl_trainer;

typedef enum mtl_optimizer {
    MTL_OPTIMIZER_SGD = 1,
    MTL_OPTIMIZER_ADAM = 2,
    MTL_OPTIMIZER_ADAMW = 3
} mtl_optimizer;

typedef enum mtl_schedule {
    MTL_SCHEDULE_CONSTANT = 1,
    MTL_SCHEDULE_STEP = 2,
    MTL_SCHEDULE_COSINE = 3,  /**< linear warm-up, then cosine to the floor over all steps */
    MTL_SCHEDULE_PLATEAU = 4  /**< reduce on validation plateau */
} mtl_schedule;

typedef enum mtl_weighting {
    MTL_WEIGHTING_FIXED = 1,       /**< the tasks' loss weights (equal by default) */
    MTL_WEIGHTING_UNCERTAINTY = 2, /**< Kendall et al. 2018 */
    MTL_WEIGHTING_DWA = 3,         /**< Liu et al. 2019 */
    MTL_WEIGHTING_GLS = 4,         /**< geometric mean of losses */
    MTL_WEIGHTING_RLW = 5,         /**< random loss weights */
    MTL_WEIGHTING_GRADNORM = 6,    /**< Chen et al. 2018 */
    MTL_WEIGHTING_PCGRAD = 7,      /**< Yu et al. 2020 */
    MTL_WEIGHTING_MGDA = 8,        /**< Sener & Koltun 2018 */
    MTL_WEIGHTING_CAGRAD = 9,      /**< Liu et al. 2021 */
    MTL_WEIGHTING_IMTL_G = 10,     /**< Liu et al. 2021 */
    MTL_WEIGHTING_UPGRAD = 11      /**< Quinton & Rey 2024 */
} mtl_weighting;

/** Create a trainer for a finalized model, with buffers for batches of up
 *  to `max_batch` rows.  The trainer updates the model's parameters; the
 *  model must outlive it and must not be predicted from concurrently with
 *  a step.  Options take their defaults; the seed comes from the model's
 *  context. */
MTL_API mtl_status mtl_trainer_create(mtl_trainer **out, mtl_model *model, int64_t max_batch);
MTL_API void mtl_trainer_destroy(mtl_trainer *trainer);
MTL_API mtl_status mtl_trainer_set_i64(mtl_trainer *trainer, int option, int64_t value);
MTL_API mtl_status mtl_trainer_set_f64(mtl_trainer *trainer, int option, double value);
MTL_API mtl_status mtl_trainer_get_i64(const mtl_trainer *trainer, int option, int64_t *value);
MTL_API mtl_status mtl_trainer_get_f64(const mtl_trainer *trainer, int option, double *value);
MTL_API mtl_status mtl_trainer_set_task_f64(mtl_trainer *trainer, int64_t task, int option, double value);
MTL_API mtl_status mtl_trainer_get_task_f64(const mtl_trainer *trainer, int64_t task, int option, double *value);

/** Gradient of the weighted loss on one batch without an update (the flat
 *  gradient is then readable with mtl_trainer_get_gradients).  Targets are
 *  in original units: the model's scalers are applied.  Dropout is active.
 *  @param task_losses if not NULL, receives T per-task losses (each the
 *  mean over that task's observed labels in the batch; 0 if none). */
MTL_API mtl_status mtl_trainer_compute_gradients(mtl_trainer *trainer, int64_t n, const float *x,
                                                 int64_t ldx, const float *y, int64_t ldy,
                                                 const uint8_t *mask, int64_t ldmask,
                                                 const float *sample_weight, double *task_losses);
/** Copy the flat gradient (n = mtl_model_param_count) of the last
 *  mtl_trainer_compute_gradients or mtl_trainer_step.  After a step it is
 *  the gradient before clipping: MTL_OPT_CLIP_NORM scales it inside the
 *  update.  MTL_ERR_STATE before any gradient. */
MTL_API mtl_status mtl_trainer_get_gradients(const mtl_trainer *trainer, float *out, int64_t n);

/** One optimiser step on a batch the host supplies (gradients as above,
 *  then loss weighting, clipping, the update, the schedule).  Allocates
 *  nothing.  On MTL_ERR_NON_FINITE the parameters are unchanged. */
MTL_API mtl_status mtl_trainer_step(mtl_trainer *trainer, int64_t n, const float *x, int64_t ldx,
                                    const float *y, int64_t ldy, const uint8_t *mask,
                                    int64_t ldmask, const float *sample_weight, double *task_losses);

/** Progress callback: called after each epoch (step == -1) and, if
 *  MTL_OPT_CALLBACK_EVERY_STEPS > 0, every that many steps.  Query the
 *  trainer for losses and metrics.  Return non-zero to stop training
 *  cleanly (fit then returns MTL_OK). */
typedef int (*mtl_progress_fn)(void *user, const mtl_trainer *trainer, int64_t epoch, int64_t step);

/** Train until the trainer has completed MTL_OPT_EPOCHS epochs in total
 *  (the count continues across fit calls and checkpoints, so a resumed
 *  trainer finishes the same run; raise MTL_OPT_EPOCHS to train more)
 *  over `train` (seeded shuffling,
 *  mini-batches of MTL_OPT_BATCH_SIZE), evaluating on `val` after each
 *  epoch if given.  With early stopping (needs `val`), training stops
 *  after `patience` epochs without improvement of the weighted validation
 *  loss and the best epoch's weights are restored.  A non-finite loss
 *  returns MTL_ERR_NON_FINITE naming task and epoch and leaves the model
 *  at its last good weights. */
MTL_API mtl_status mtl_trainer_fit(mtl_trainer *trainer, const mtl_dataset *train,
                                   const mtl_dataset *val, mtl_progress_fn progress, void *user);

typedef enum mtl_split { MTL_SPLIT_TRAIN = 0, MTL_SPLIT_VALIDATION = 1 } mtl_split;

/* Progress queries (valid inside a callback and after fit). */
MTL_API int64_t mtl_trainer_epoch(const mtl_trainer *trainer);        /**< epochs completed */
MTL_API int64_t mtl_trainer_step_count(const mtl_trainer *trainer);   /**< optimiser steps taken */
MTL_API double mtl_trainer_learning_rate(const mtl_trainer *trainer); /**< current base lr */
MTL_API double mtl_trainer_elapsed_seconds(const mtl_trainer *trainer); /**< wall time in fit */
/** Last epoch's per-task mean losses (T values) on a split (NaN if none). */
MTL_API mtl_status mtl_trainer_epoch_losses(const mtl_trainer *trainer, mtl_split split, double *out);
/** Last epoch's per-task metric on a split (as mtl_model_evaluate). */
MTL_API mtl_status mtl_trainer_epoch_metric(const mtl_trainer *trainer, mtl_split split,
                                            mtl_metric metric, double *out);
/** Best epoch (1-based) by validation loss: task = -1 for the weighted
 *  total (the early-stopping criterion), else that task's own loss. */
MTL_API mtl_status mtl_trainer_best_epoch(const mtl_trainer *trainer, int64_t task, int64_t *epoch,
                                          double *loss);

/* ------------------------------------------------------------------------
 * Task-conflict diagnostics (see docs/loss-weighting.md)
 * ---------------------------------------------------------------------- */

typedef enum mtl_diagnostic {
    MTL_DIAG_TASK_WEIGHTS = 1,   /**< T effective weights */
    MTL_DIAG_GRAD_NORMS = 2,     /**< T norms of dL_t/dz on the shared representation */
    MTL_DIAG_GRAD_COSINE = 3,    /**< T x T cosine similarities (row-major) */
    MTL_DIAG_CONFLICTS = 4,      /**< 1 value: pairs with negative cosine */
    MTL_DIAG_AFFINITY = 5        /**< T x T lookahead affinity (Fifty et al. 2021) */
} mtl_diagnostic;

typedef enum mtl_scope { MTL_SCOPE_STEP = 0, MTL_SCOPE_EPOCH = 1 } mtl_scope;

/** Copy a diagnostic of the last step or the mean over the last epoch into
 *  `out` (capacity `cap` doubles).  Sizes: T for TASK_WEIGHTS and
 *  GRAD_NORMS, T*T for GRAD_COSINE and AFFINITY, 1 for CONFLICTS (T =
 *  mtl_model_task_count); a smaller `cap` is MTL_ERR_SHAPE.
 *  MTL_ERR_STATE if not computed yet. */
MTL_API mtl_status mtl_trainer_diagnostic(const mtl_trainer *trainer, mtl_diagnostic kind,
                                          mtl_scope scope, double *out, int64_t cap);

/* ------------------------------------------------------------------------
 * Files: models and checkpoints (docs/file-format.md)
 * ---------------------------------------------------------------------- */

/** Metadata.  Keys and values are UTF-8, at most 64 KiB each; keys are
 *  non-empty, at most 4096 per model.  Setting an existing key replaces its
 *  value in place; value NULL removes the key (absent: no-op).  Kept in the
 *  order keys were first added (mtl_model_metadata_at). */
MTL_API mtl_status mtl_model_set_metadata(mtl_model *model, const char *key, const char *value);
/** @return MTL_ERR_NOT_FOUND if the key is absent.  *value stays valid
 *  until the model is changed or destroyed. */
MTL_API mtl_status mtl_model_get_metadata(const mtl_model *model, const char *key, const char **value);
MTL_API int64_t mtl_model_metadata_count(const mtl_model *model);
MTL_API mtl_status mtl_model_metadata_at(const mtl_model *model, int64_t i, const char **key,
                                         const char **value);
/** A task's unit (e.g. "kJ/mol") and description; NULL clears one.  The
 *  getter's outputs may be NULL (not wanted) and receive NULL when unset. */
MTL_API mtl_status mtl_model_set_task_text(mtl_model *model, int64_t task, const char *unit,
                                           const char *description);
MTL_API mtl_status mtl_model_get_task_text(const mtl_model *model, int64_t task, const char **unit,
                                           const char **description);
/** Name of input `feature` (NULL clears it); *name receives NULL when unset. */
MTL_API mtl_status mtl_model_set_feature_name(mtl_model *model, int64_t feature, const char *name);
MTL_API mtl_status mtl_model_get_feature_name(const mtl_model *model, int64_t feature, const char **name);

/** Save an inference model atomically (temporary file, fsync, rename,
 *  directory fsync): a crash leaves the old file whole.  On failure
 *  (MTL_ERR_IO with the path and the system's reason) an existing file is
 *  untouched.  MTL_ERR_STATE if the model is not finalized,
 *  MTL_ERR_NON_FINITE if a parameter is NaN or infinite.  The format is
 *  little-endian binary, independent of host and locale
 *  (docs/file-format.md). */
MTL_API mtl_status mtl_model_save(const mtl_model *model, const char *path);
/** Serialise into `buf` of `cap` bytes; *size receives the size needed.
 *  With buf == NULL (or cap too small: MTL_ERR_SHAPE) only *size is set. */
MTL_API mtl_status mtl_model_save_buffer(const mtl_model *model, void *buf, size_t cap, size_t *size);
/** Load a model (also the model of a checkpoint file), finalized, with the
 *  settings of `ctx`.  The file is never trusted: a corrupt, truncated or
 *  hostile file gives MTL_ERR_FORMAT with the byte offset in the message; a
 *  file of a newer major format version gives MTL_ERR_VERSION. */
MTL_API mtl_status mtl_model_load(mtl_model **out, const mtl_context *ctx, const char *path);
MTL_API mtl_status mtl_model_load_buffer(mtl_model **out, const mtl_context *ctx, const void *buf,
                                         size_t size);

/** A checkpoint: the model plus everything needed to resume training
 *  bitwise identically (optimiser moments, counters, schedule, RNG,
 *  early-stopping and loss-weighting state). */
MTL_API mtl_status mtl_trainer_save_checkpoint(const mtl_trainer *trainer, const char *path);
MTL_API mtl_status mtl_trainer_save_checkpoint_buffer(const mtl_trainer *trainer, void *buf,
                                                      size_t cap, size_t *size);
/** Recreate model and trainer from a checkpoint.  Destroy the trainer
 *  before the model.  Options (the seed included) come from the file;
 *  `ctx` supplies only the allocator, log and thread settings. */
MTL_API mtl_status mtl_trainer_load_checkpoint(mtl_trainer **out, mtl_model **model_out,
                                               const mtl_context *ctx, const char *path);
MTL_API mtl_status mtl_trainer_load_checkpoint_buffer(mtl_trainer **out, mtl_model **model_out,
                                                      const mtl_context *ctx, const void *buf,
                                                      size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MTL_H */
