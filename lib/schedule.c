/* schedule.c -- the learning-rate schedule.
 *
 * lr_now (the rate the next step uses) is a pure function of the options
 * and a little state (steps taken, epochs completed, the plateau scale),
 * recomputed whenever one of them changes.  Closed forms, with base = the
 * learning rate, s = steps taken, e = epochs completed:
 *   CONSTANT  base
 *   STEP      base * gamma^floor(e / step_epochs)
 *   COSINE    s < W:  base * (s + 1) / W                     (linear warm-up)
 *             else:   floor + (base - floor) * (1 + cos(pi * p)) / 2,
 *                     p = min(1, (s - W) / (total - W))
 *             where W = warm-up steps and total = the number of steps fit
 *             will take (trainer->total_steps_hint); with no hint (a host
 *             loop calling mtl_trainer_step) the rate stays at base after
 *             the warm-up.
 *   PLATEAU   max(floor, base * plateau_scale); the scale is multiplied by
 *             gamma once the monitored loss has not improved for more than
 *             `patience` epochs (PyTorch ReduceLROnPlateau, mode "min",
 *             threshold 0), after which the count restarts.
 */
#include "mtl_internal.h"

#include <math.h>

static double mtli_cosine_lr(const mtl_trainer *t)
{
    const double base = t->learning_rate, floor_lr = t->min_learning_rate;
    const int64_t s = t->step_count, w = t->warmup_steps;
    if (s < w) return base * (double)(s + 1) / (double)w;
    if (t->total_steps_hint <= w) return base;
    double p = (double)(s - w) / (double)(t->total_steps_hint - w);
    if (p > 1.0) p = 1.0;
    return floor_lr + (base - floor_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * p));
}

void mtli_schedule_refresh(mtl_trainer *t)
{
    const double base = t->learning_rate;
    switch (t->schedule) {
    case MTL_SCHEDULE_STEP:
        t->lr_now = base * pow(t->schedule_gamma, (double)(t->epoch / t->schedule_step_epochs));
        break;
    case MTL_SCHEDULE_COSINE:
        t->lr_now = mtli_cosine_lr(t);
        break;
    case MTL_SCHEDULE_PLATEAU:
        t->lr_now = fmax(t->min_learning_rate, base * t->lr_plateau_scale);
        break;
    case MTL_SCHEDULE_CONSTANT:
    default:
        t->lr_now = base;
        break;
    }
}

void mtli_schedule_after_step(mtl_trainer *t)
{
    t->step_count++;
    mtli_schedule_refresh(t);
}

void mtli_schedule_after_epoch(mtl_trainer *t, double monitored_loss)
{
    if (t->schedule == MTL_SCHEDULE_PLATEAU && isfinite(monitored_loss)) {
        if (monitored_loss < t->plateau_best) {
            t->plateau_best = monitored_loss;
            t->plateau_bad_epochs = 0;
        } else if (++t->plateau_bad_epochs > t->plateau_patience) {
            t->lr_plateau_scale *= t->schedule_gamma;
            t->plateau_bad_epochs = 0;
        }
    }
    mtli_schedule_refresh(t);
}
