/* layers.h -- one dense layer, forward and backward, shared by training
 * (engine.c) and inference (predict.c).
 *
 * A layer computes, row by row,
 *     pre  = X·W + b                      (matrix product: BLIS)
 *     u    = g ⊙ norm(pre) + s            (optional layer normalisation)
 *     post = act(u)
 *     out  = dropout(post)                (training only)
 * and the next layer reads `out`.  Where a buffer is not needed the slot's
 * pointers alias (post == pre: activation in place; out == post: no
 * dropout), so ReLU layers without norm or dropout keep one buffer.
 *
 * Backward turns dL/d(out) into dL/d(pre), in place or into another buffer
 * (one pass per row that also accumulates the bias gradient, in a fixed
 * row order), then the weight gradient dW = Xᵀ·d and input gradient
 * dX = d·Wᵀ are GEMMs.
 * Weights stored transposed (mtli_layer.w_trans: the fused first head
 * layers) swap the transposes; BLIS packs either way at no cost. */
#ifndef MTL_LAYERS_H
#define MTL_LAYERS_H

#include "mtl_internal.h"

#define MTLI_LN_EPS 1e-5f
#define MTLI_LEAKY_SLOPE 0.01f

/* Buffers of one layer for m rows (row stride ld).  Inference: pre == post
 * == out and no rstd/mask.  Training: pre holds x̂ (the normalised value)
 * when the layer normalises; rstd[i] = 1/sqrt(var_i + eps). */
typedef struct mtli_slot {
    float *pre;
    float *post;
    float *out;
    float *rstd;   /* m, layer norm in training; else NULL */
    uint8_t *mask; /* m x ld, dropout keep flags in training; else NULL */
    int64_t ld;
} mtli_slot;

/* Does this layer, in training, need post separate from pre?  (Layer norm
 * keeps x̂ in pre; GELU's derivative needs its input.) */
bool mtli_layer_needs_post(const mtli_layer *L);

/* y[m x fan_out] = X·W, X m x fan_in with row stride ldx.  A GEMM, or a
 * gemv when m == 1 (batch-1 predict) or fan_out == 1 (1-unit outputs: no
 * 1-wide GEMM). */
mtl_status mtli_dense_matmul(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m,
                             const float *x, int64_t ldx, float *y, int64_t ldy);

/* Per-(seed, step, layer) key of a dropout mask; element e of the mask is
 * then a pure function of (key, e): reproducible, thread-count independent. */
uint64_t mtli_dropout_key(uint64_t seed, int64_t step, int64_t layer_id);

/* After mtli_dense_matmul wrote s->pre: bias, norm, activation and, when
 * `train` and L->dropout > 0, dropout (s->out, s->mask).  Without dropout
 * s->out must equal s->post.  Big passes run on up to n_threads threads
 * (mtli_elementwise_threads), split by rows: the same bits on any count. */
void mtli_dense_finish(const mtli_layer *L, const float *params, int64_t m, const mtli_slot *s, bool train,
                       uint64_t dropout_key, int64_t n_threads);

/* d (m x fan_out, row stride ldd): dL/d(out) in; dL/d(pre) is written to
 * dz (row stride lddz), and d is then scratch.  Writes the bias gradient
 * (and norm gain/shift gradients) of L into grads (assigned, not
 * accumulated).  `train` must match the forward pass.  dz may be d, or one
 * of the slot's own buffers (the training engine puts each layer's
 * gradient over its pre buffer, dead by then): each element of the slot is
 * read before dz's is written.  d must not overlap the slot's buffers.
 * Big passes run on up to n_threads threads, split by columns (each bias
 * gradient sums its rows in order: the same bits on any count); layers
 * with norm run on one. */
void mtli_dense_finish_backward_to(const mtli_layer *L, const float *params, float *grads, int64_t m,
                                   const mtli_slot *s, bool train, float *d, int64_t ldd, float *dz,
                                   int64_t lddz, int64_t n_threads);

/* mtli_dense_matmul into s->pre, then mtli_dense_finish; for small ReLU or
 * identity layers without norm, the bias and activation are applied as the
 * product is stored (small_gemm.c), with the same bits. */
mtl_status mtli_dense_forward(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m, const float *x,
                              int64_t ldx, const mtli_slot *s, bool train, uint64_t dropout_key);

/* Dropout alone (training): s->out and s->mask from s->post, as the end of
 * mtli_dense_finish does. */
void mtli_dense_dropout(const mtli_layer *L, int64_t m, const mtli_slot *s, uint64_t dropout_key);

/* The fused first layers of tasks [t0, t1) (F = mtli_fused_layer_of) for
 * m rows into out (row stride ldo), bias and activation included, when
 * the small kernel takes the product and each of these tasks' first layer
 * is a plain layer (no norm, post == pre) with the same ReLU or identity
 * activation.  Returns false, having done nothing, otherwise.  Dropout is
 * left to the caller. */
bool mtli_fused_forward_small(const mtl_model *model, const mtli_layer *F, int64_t t0, int64_t t1, int64_t m,
                              const float *z, int64_t ldz, const mtli_slot *slots, float *out, int64_t ldo);

/* grads[W] = Xᵀ·d (assigned). */
mtl_status mtli_dense_weight_grad(const mtli_blas *b, const mtli_layer *L, float *grads, int64_t m,
                                  const float *x, int64_t ldx, const float *d, int64_t ldd);

/* dx (m x fan_in, row stride lddx) = d·Wᵀ, scaled: dx = alpha·d·Wᵀ + beta·dx. */
mtl_status mtli_dense_input_grad(const mtli_blas *b, const mtli_layer *L, const float *params, int64_t m,
                                 const float *d, int64_t ldd, float alpha, float beta, float *dx,
                                 int64_t lddx);

/* The input gradient of L (dX = d·Wᵀ, m x fan_in) turned at once, tile by
 * tile, into the layer below's dL/d(pre), as mtli_dense_input_grad into
 * a scratch matrix followed by mtli_dense_finish_backward_to(below, ...)
 * would, with the same bits, but without the m x fan_in scratch: the
 * training engine needs none when every layer's input gradient fuses.
 * dz may be one of the slot's buffers (each element is read before it is
 * written); it must not overlap d.  One thread.  Returns false, having
 * done nothing, unless mtli_dense_input_grad_fuses(L, below, m). */
bool mtli_dense_input_grad_finish(const mtli_layer *L, const float *params, int64_t m, const float *d, int64_t ldd,
                                  const mtli_layer *below, float *grads, const mtli_slot *s, bool train, float *dz,
                                  int64_t lddz);
/* Does that fuse for m rows (and so for fewer)?  Below without layer
 * norm, and L 1-wide (plain loops) or its product one the small kernel
 * hands over in tiles (mtli_small_gemm_tiles_fit). */
bool mtli_dense_input_grad_fuses(const mtli_layer *L, const mtli_layer *below, int64_t m);

/* Zero a rows x cols block with row stride ld. */
void mtli_zero_rows(float *a, int64_t rows, int64_t cols, int64_t ld);

#endif /* MTL_LAYERS_H */
