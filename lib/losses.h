/* losses.h -- per-task losses with missing labels, their gradient on the
 * logits, and the output transforms of predict.
 *
 * A label is observed when its mask byte (if a mask is given) is non-zero
 * AND its target is not NaN.  A task's loss is the weighted mean over its
 * observed labels in the batch,
 *     L_t = sum_obs w_i l(p, y) / sum_obs w_i      (w_i = sample weight, default 1)
 * so a task with few labels in a batch is not drowned out by one with
 * many; a task with no observed label (or zero total weight) has L_t = 0
 * and a zero gradient.  Regression and binary tasks count every output
 * column as a label; a multiclass task has one label per row (the class
 * index in its single target column). */
#ifndef MTL_LOSSES_H
#define MTL_LOSSES_H

#include "mtl_internal.h"

/* Loss of task `t` on m rows.
 *   logits: m x n_outputs (row stride ldl); y, mask: the task's target
 *   columns (pointers already offset by target_col); sw: m weights or NULL.
 *   dy (m x n_outputs, row stride lddy) receives dL_t/dlogits (zero for
 *   missing labels).  *wsum receives the total weight of the observed
 *   labels (0: no label, loss 0, dy all zero).
 * Targets must have passed mtli_check_batch (class indices valid). */
double mtli_task_loss(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, const float *y,
                      int64_t ldy, const uint8_t *mask, int64_t ldmask, const float *sw, float *dy,
                      int64_t lddy, double *wsum);

/* One label's loss (MSE r^2, MAE |r|, Huber with `delta`, BCE on the
 * logit p) with r = p - y, and its derivative in *grad: the losses above,
 * and the metrics' loss in scaled units (metrics.c). */
double mtli_element_loss(mtl_loss loss, double delta, double p, double y, double *grad);

/* Predict's outputs of task t from its logits: regression values (still
 * scaled), binary probabilities, multiclass probabilities (softmax). */
void mtli_task_outputs(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, float *out, int64_t ldo);

/* Predict's labels of task t: regression values (still scaled), binary
 * 0/1, multiclass argmax class index (lowest index on ties). */
void mtli_task_labels(const mtli_task *t, int64_t m, const float *logits, int64_t ldl, float *out, int64_t ldo);

#endif /* MTL_LOSSES_H */
