/* engine.h -- forward and backward of the whole network over a batch.
 *
 * Data path of one training step (trainer.c drives it):
 *
 *   x ─▶ trunk layers ─▶ z ─▶ ONE fused GEMM z·W_fusedᵀ (the first layers of
 *   all heads) ─▶ per-task epilogues on column blocks ─▶ remaining head
 *   layers ─▶ logits ─▶ losses (mtli_engine_losses: L_t and dY_t)
 *
 *   backward: dY_t ─▶ head layers ─▶ dA_fused (m x F, task t in columns
 *   [fused_col, +h_t)) ─▶ dW_fused = dA_fusedᵀ·z (one GEMM)
 *                        ─▶ dz = dA_fused·W_fused (one GEMM) = Σ_t dz_t ─▶ trunk
 *   (dA_fused here is the fused layer's dL/d(pre), e->dfused.)
 *
 * Where the backward pass keeps its gradients: the arena holds one batch
 * of activations and at most ONE scratch matrix (e->dscratch); a layer's
 * own buffers become its gradient's once its epilogue has read them.
 *   dL/d(out)  output layers: dY_t, in e->dlogits (the loss writes it);
 *              every other layer: dX = d·Wᵀ of the layer above it (for the
 *              top trunk layer, of the fused layer), either never stored
 *              whole (mtli_dense_input_grad_finish: 1-wide layers above,
 *              and small products on AVX2/AVX-512 CPUs, hand it over in tiles
 *              to this layer's epilogue) or written to e->dscratch, sized
 *              for the widest layer that needs it (none at W1).
 *   dL/d(pre)  over the layer's own pre buffer.  So e->dfused IS
 *              plan.fused_pre.  Two exceptions: an output layer of its own
 *              (a task with hidden layers) keeps it in e->dlogits (identity:
 *              it equals dY_t); the top trunk layer's goes to e->dz_top when
 *              per-task gradients are enabled (its pre buffer is z itself
 *              unless it has norm, GELU or dropout, and the affinity
 *              lookahead re-runs the heads from z after the backward pass).
 * Hence after mtli_engine_backward_heads the head activations are gone (a
 * new mtli_forward_heads remakes them), and after the trunk's backward so
 * are the trunk's: z survives only with per-task gradients enabled.
 *
 * Loss weighting hooks.  Methods that only rescale losses (FIXED,
 * uncertainty, DWA, ...) call mtli_engine_scale_dy(head_w) and then
 * mtli_engine_backward(): rep and head weights are then the same.
 * Gradient-based methods need each task's gradient on z separately:
 *     mtli_engine_enable_task_grads()         once, outside the step (allocates)
 *     mtli_engine_backward_heads()            dY unscaled
 *     mtli_engine_task_rep_grads()            dz_t = dA_t·W_t into task_grad(t)
 *     ... Gram matrix, weights ...
 *     mtli_engine_scale_head_grads(head_w)    task t's head gradients *= head_w[t]
 *     mtli_engine_backward_fused()
 *     mtli_engine_backward_trunk(rep_w)       dz = Σ_t rep_w[t] dz_t
 * All buffers live in one arena sized for max_batch; nothing here
 * allocates except mtli_engine_create, mtli_engine_enable_task_grads and
 * (once, if the scalers are fitted after creation) mtli_engine_scaled_inputs. */
#ifndef MTL_ENGINE_H
#define MTL_ENGINE_H

#include "layers.h"
#include "mtl_internal.h"

/* Where each layer of a forward pass keeps its buffers.  The training
 * engine gives every layer its own; predict's workspace reuses two. */
typedef struct mtli_plan {
    mtli_slot *trunk;     /* n_trunk */
    float *fused_pre;     /* max_batch x fused_ld: the fused GEMM's output */
    int64_t fused_ld;     /* fused_width; or, in a workspace, less: the first layers then run in
                           * groups of tasks (mtli_plan_group_end) that take turns in fused_pre */
    mtli_slot *fused;     /* T: each task's column block of the fused layer (ld fused_ld) */
    mtli_slot *head;      /* layers 1..n_hidden of every task */
    int64_t *head_first;  /* T: index in `head` of task t's layer 1 */
} mtli_plan;

/* The fused first head layers of all tasks as one (view) layer: weight
 * F x E transposed at fused_w_off, no bias of its own (biases stay per task). */
mtli_layer mtli_fused_layer(const mtl_model *m);
/* The same for tasks [t0, t1) only: their columns of the fused layer. */
mtli_layer mtli_fused_layer_of(const mtl_model *m, int64_t t0, int64_t t1);
/* One past the last task of the group that starts at task t0: as many
 * tasks as fit fused_ld columns (all of them when fused_ld is the fused
 * width), at least one.  Each element of the fused product is computed
 * alone (a chain over k), so groups give the bits of the whole product
 * when the same kernel takes both: predict.c groups only then. */
int64_t mtli_plan_group_end(const mtl_model *m, int64_t fused_ld, int64_t t0);

/* Unique id of a layer (dropout keys): trunk i -> i, task t layer j ->
 * MTLI_MAX_LAYERS * (1 + t) + j;  all < 2^16. */
int64_t mtli_layer_id(int64_t task, int64_t j);

/* Output of a layer in a forward pass (dropout's buffer when it was applied). */
static inline float *mtli_slot_output(const mtli_layer *L, const mtli_slot *s, bool dropout_on)
{
    return dropout_on && L->dropout > 0.0f ? s->out : s->post;
}

/* Trunk forward: writes *z, *ldz (the representation; x itself without
 * a trunk).  Heads forward from z. */
mtl_status mtli_forward_trunk(const mtl_model *m, const mtli_blas *b, const mtli_plan *p, int64_t n,
                              const float *x, int64_t ldx, bool dropout_on, uint64_t seed, int64_t step,
                              const float **z, int64_t *ldz);
mtl_status mtli_forward_heads(const mtl_model *m, const mtli_blas *b, const mtli_plan *p, int64_t n,
                              const float *z, int64_t ldz, bool dropout_on, uint64_t seed, int64_t step);
/* Task t's logits after mtli_forward_heads (m x n_outputs at *ptr, row stride *ld). */
void mtli_plan_logits(const mtl_model *m, const mtli_plan *p, int64_t t, const float **ptr, int64_t *ld);

struct mtli_engine {
    mtli_settings settings;
    int64_t max_batch;
    int64_t n_inputs, n_tasks, n_trunk, embed_width, fused_width;
    void *arena;
    size_t arena_bytes;

    float *ys;            /* scaled targets (max_batch x target_width) */
    float *xs;            /* scaled inputs (max_batch x n_inputs), NULL until the model's
                           * scalers are fitted: see mtli_engine_scaled_inputs */
    bool xs_allocated;    /* xs is its own allocation, not in the arena */
    mtli_plan plan;

    /* state of the last forward pass */
    int64_t n;            /* rows */
    bool dropout_on;
    const float *x;       /* its input */
    int64_t ldx;
    const float *z;       /* the representation */
    int64_t ldz;

    /* losses */
    float *dlogits;       /* max_batch x output_width: dY of every task */
    float **dy;           /* T: task t's block of dlogits */
    int64_t *lddy;        /* T */
    double *loss, *wsum;  /* T: last losses, total weight of observed labels */
    bool *active;         /* T: gets a backward pass (has labels, non-zero weight) */

    /* backward (see "Where the backward pass keeps its gradients" above) */
    float *dscratch;      /* max_batch x scratch_width: dL/d(out) of the layer in hand when its
                           * gradient cannot be finished tile by tile (NULL when none needs it) */
    int64_t scratch_width;
    float *dfused;        /* = plan.fused_pre: dL/d(pre) of the fused layer after backward_heads */
    float *dz_task;       /* T x max_batch x E (NULL until mtli_engine_enable_task_grads) */
    float *dz_top;        /* max_batch x E, after dz_task: the top trunk layer's dL/d(pre)
                           * when per-task gradients are on (NULL otherwise) */
};

mtl_status mtli_engine_create(mtli_engine **out, const mtl_model *m, const mtli_settings *s, int64_t max_batch);
void mtli_engine_destroy(mtli_engine *e);
/* Bytes held by the engine (arena, task gradients, scaled inputs). */
size_t mtli_engine_bytes(const mtli_engine *e);

/* Make sure e->xs exists, for a model whose scalers are fitted.  The arena
 * has it when they were fitted before mtli_engine_create; a host may call
 * mtl_model_fit_scalers later (nothing forbids it), and then the first
 * gradient pass allocates it here, once, and keeps it until destroy.
 * MTL_ERR_OUT_OF_MEMORY leaves the engine as it was. */
mtl_status mtli_engine_scaled_inputs(mtli_engine *e);

/* Forward over n <= max_batch rows (x already scaled).  dropout_on: apply
 * each layer's dropout with masks keyed by (seed, step, layer). */
mtl_status mtli_engine_forward(mtli_engine *e, const mtl_model *m, const mtli_blas *b, int64_t n,
                               const float *x, int64_t ldx, bool dropout_on, uint64_t seed, int64_t step);

/* Per-task losses of the last forward pass (y, mask in target layout, y
 * already scaled), unweighted dY_t, and has_label[t] (may be NULL). */
void mtli_engine_losses(mtli_engine *e, const mtl_model *m, const float *y, int64_t ldy, const uint8_t *mask,
                        int64_t ldmask, const float *sw, double *losses, bool *has_label);

/* dY_t *= head_w[t]; tasks with weight 0 get no backward pass. */
void mtli_engine_scale_dy(mtli_engine *e, const mtl_model *m, const double *head_w);

/* Everything above z except the fused weight gradient: head layer
 * gradients, first-layer bias/norm gradients, and dfused = dL/dA_fused
 * (over the fused layer's pre-activations).  Inactive tasks get exactly
 * zero head gradients. */
mtl_status mtli_engine_backward_heads(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads);
/* grads[fused weights] = dfusedᵀ·z. */
mtl_status mtli_engine_backward_fused(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads);
/* dz (rep_w NULL: dfused·W_fused; else Σ_t rep_w[t]·dz_t) through the
 * trunk.  No-op without a trunk (the input's gradient is never needed). */
mtl_status mtli_engine_backward_trunk(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads,
                                      const double *rep_w);
/* heads + fused + trunk(NULL). */
mtl_status mtli_engine_backward(mtli_engine *e, const mtl_model *m, const mtli_blas *b, float *grads);

/* Per-task representation gradients (gradient-based loss weighting,
 * diagnostics, affinity); also keeps z intact through the backward pass
 * (e->dz_top). */
mtl_status mtli_engine_enable_task_grads(mtli_engine *e);
/* dz_t = dA_t·W_t for every task (zero for inactive ones), after
 * mtli_engine_backward_heads; each n x E with row stride E. */
mtl_status mtli_engine_task_rep_grads(mtli_engine *e, const mtl_model *m, const mtli_blas *b);
static inline float *mtli_engine_task_grad(const mtli_engine *e, int64_t t)
{
    return e->dz_task + t * e->max_batch * e->embed_width;
}
/* Multiply task t's head gradients (its two parameter spans) and its
 * dfused block by head_w[t]. */
void mtli_engine_scale_head_grads(mtli_engine *e, const mtl_model *m, float *grads, const double *head_w);

#endif /* MTL_ENGINE_H */
