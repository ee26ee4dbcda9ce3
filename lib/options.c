/* options.c -- the table of every option: type (encoded in its number),
 * bounds and default.  Setters of every handle validate through here, and
 * mtl_option_bounds_* reads it, so bounds are stated once. */
#include "mtl_internal.h"

#include <math.h>

typedef struct mtli_option_info {
    int id;
    const char *name;
    double min, max; /* inclusive; integer options hold exact integers */
    bool min_open;   /* (min, max]: min itself not allowed */
    bool task;       /* an mtl_task_option (numbers overlap with mtl_option) */
} mtli_option_info;

#define I64MAX 9223372036854775807.0

static const mtli_option_info mtli_options[] = {
    { MTL_OPT_NUM_THREADS, "MTL_OPT_NUM_THREADS", 1, 256, false, false },
    { MTL_OPT_SEED, "MTL_OPT_SEED", 0, I64MAX, false, false },
    { MTL_OPT_PARALLEL_MIN_FLOPS, "MTL_OPT_PARALLEL_MIN_FLOPS", 0, I64MAX, false, false },

    { MTL_OPT_OPTIMIZER, "MTL_OPT_OPTIMIZER", MTL_OPTIMIZER_SGD, MTL_OPTIMIZER_ADAMW, false, false },
    { MTL_OPT_LEARNING_RATE, "MTL_OPT_LEARNING_RATE", 0, 10, true, false },
    { MTL_OPT_MOMENTUM, "MTL_OPT_MOMENTUM", 0, 0.999999, false, false },
    { MTL_OPT_NESTEROV, "MTL_OPT_NESTEROV", 0, 1, false, false },
    { MTL_OPT_BETA1, "MTL_OPT_BETA1", 0, 0.999999, false, false },
    { MTL_OPT_BETA2, "MTL_OPT_BETA2", 0, 0.999999999, false, false },
    { MTL_OPT_EPSILON, "MTL_OPT_EPSILON", 0, 1, true, false },
    { MTL_OPT_WEIGHT_DECAY, "MTL_OPT_WEIGHT_DECAY", 0, 1, false, false },
    { MTL_OPT_CLIP_NORM, "MTL_OPT_CLIP_NORM", 0, 1e30, false, false },

    { MTL_OPT_SCHEDULE, "MTL_OPT_SCHEDULE", MTL_SCHEDULE_CONSTANT, MTL_SCHEDULE_PLATEAU, false, false },
    { MTL_OPT_SCHEDULE_STEP_EPOCHS, "MTL_OPT_SCHEDULE_STEP_EPOCHS", 1, 1e9, false, false },
    { MTL_OPT_SCHEDULE_GAMMA, "MTL_OPT_SCHEDULE_GAMMA", 0, 1, true, false },
    { MTL_OPT_WARMUP_STEPS, "MTL_OPT_WARMUP_STEPS", 0, 1e12, false, false },
    { MTL_OPT_MIN_LEARNING_RATE, "MTL_OPT_MIN_LEARNING_RATE", 0, 10, false, false },
    { MTL_OPT_PLATEAU_PATIENCE, "MTL_OPT_PLATEAU_PATIENCE", 1, 1e9, false, false },

    { MTL_OPT_BATCH_SIZE, "MTL_OPT_BATCH_SIZE", 1, I64MAX, false, false },
    { MTL_OPT_EPOCHS, "MTL_OPT_EPOCHS", 1, 1e9, false, false },
    { MTL_OPT_EARLY_STOP_PATIENCE, "MTL_OPT_EARLY_STOP_PATIENCE", 0, 1e9, false, false },
    { MTL_OPT_EARLY_STOP_MIN_DELTA, "MTL_OPT_EARLY_STOP_MIN_DELTA", 0, 1e30, false, false },
    { MTL_OPT_CALLBACK_EVERY_STEPS, "MTL_OPT_CALLBACK_EVERY_STEPS", 0, 1e12, false, false },

    { MTL_OPT_WEIGHTING, "MTL_OPT_WEIGHTING", MTL_WEIGHTING_FIXED, MTL_WEIGHTING_UPGRAD, false, false },
    { MTL_OPT_DWA_TEMPERATURE, "MTL_OPT_DWA_TEMPERATURE", 0, 1e6, true, false },
    { MTL_OPT_GRADNORM_ALPHA, "MTL_OPT_GRADNORM_ALPHA", 0, 100, false, false },
    { MTL_OPT_CAGRAD_C, "MTL_OPT_CAGRAD_C", 0, 100, false, false },
    { MTL_OPT_WEIGHTING_LR, "MTL_OPT_WEIGHTING_LR", 0, 10, true, false },
    { MTL_OPT_DIAGNOSTICS, "MTL_OPT_DIAGNOSTICS", 0, 1, false, false },
    { MTL_OPT_AFFINITY, "MTL_OPT_AFFINITY", 0, 1, false, false },

    { MTL_TASK_OPT_LOSS_WEIGHT, "MTL_TASK_OPT_LOSS_WEIGHT", 0, 1e6, false, true },
    { MTL_TASK_OPT_HUBER_DELTA, "MTL_TASK_OPT_HUBER_DELTA", 0, 1e30, true, true },
    { MTL_TASK_OPT_LOSS, "MTL_TASK_OPT_LOSS", MTL_LOSS_MSE, MTL_LOSS_CROSS_ENTROPY, false, true },
    { MTL_TASK_OPT_STANDARDIZE, "MTL_TASK_OPT_STANDARDIZE", 0, 1, false, true },
    { MTL_TASK_OPT_LOG_TARGET, "MTL_TASK_OPT_LOG_TARGET", 0, 1, false, true },
    { MTL_TASK_OPT_LR_MULTIPLIER, "MTL_TASK_OPT_LR_MULTIPLIER", 0, 1e6, false, true },
};

/* Task options share numbers with handle options only within their own
 * enum, so look-ups name the family they search. */
static const mtli_option_info *mtli_option_find(int option, bool task_family)
{
    size_t n = sizeof mtli_options / sizeof mtli_options[0];
    for (size_t i = 0; i < n; i++) {
        if (mtli_options[i].id == option && mtli_options[i].task == task_family) return &mtli_options[i];
    }
    return NULL;
}

static mtl_status mtli_option_lookup(int option, int type, bool task_family,
                                     const mtli_option_info **out)
{
    const mtli_option_info *info = mtli_option_find(option, task_family);
    if (!info) {
        /* Give a better message when the caller mixed up the families. */
        if (mtli_option_find(option, !task_family))
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is a %s option, not a %s option",
                             (unsigned)option, task_family ? "handle" : "per-task",
                             task_family ? "per-task" : "handle");
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "unknown option %#x", (unsigned)option);
    }
    if ((option & (MTL_OPTTYPE_I64 | MTL_OPTTYPE_F64)) != type)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s takes %s, not %s", info->name,
                         (option & MTL_OPTTYPE_I64) ? "an int64 (use the _i64 setter)"
                                                    : "a double (use the _f64 setter)",
                         type == MTL_OPTTYPE_I64 ? "an int64" : "a double");
    *out = info;
    return MTL_OK;
}

static mtl_status mtli_option_range(const mtli_option_info *info, double v, bool finite)
{
    if (!finite || v < info->min || v > info->max || (info->min_open && v == info->min))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: value %.17g outside %s%.17g, %.17g]",
                         info->name, v, info->min_open ? "(" : "[", info->min, info->max);
    return MTL_OK;
}

mtl_status mtli_option_check_i64(int option, bool task_family, int64_t value)
{
    const mtli_option_info *info;
    MTLI_TRY(mtli_option_lookup(option, MTL_OPTTYPE_I64, task_family, &info));
    /* Compare in integers where the double bound is exact enough. */
    if ((double)value < info->min || (double)value > info->max)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: value %lld outside [%.0f, %.0f]", info->name,
                         (long long)value, info->min, info->max);
    return MTL_OK;
}

mtl_status mtli_option_check_f64(int option, bool task_family, double value)
{
    const mtli_option_info *info;
    MTLI_TRY(mtli_option_lookup(option, MTL_OPTTYPE_F64, task_family, &info));
    return mtli_option_range(info, value, isfinite(value));
}

/* Task and handle option numbers overlap, so the bounds query searches the
 * handle family first, then the task family. */
static const mtli_option_info *mtli_option_any(int option)
{
    const mtli_option_info *info = mtli_option_find(option, false);
    return info ? info : mtli_option_find(option, true);
}

mtl_status mtl_option_bounds_i64(int option, int64_t *min, int64_t *max)
{
    MTLI_CHECK_ARG(min && max, "mtl_option_bounds_i64: min and max must not be NULL");
    const mtli_option_info *info = mtli_option_any(option);
    if (!info) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "unknown option %#x", (unsigned)option);
    if (!(option & MTL_OPTTYPE_I64))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s is a double option: use mtl_option_bounds_f64",
                         info->name);
    *min = (int64_t)info->min;
    *max = info->max >= I64MAX ? INT64_MAX : (int64_t)info->max;
    return MTL_OK;
}

mtl_status mtl_option_bounds_f64(int option, double *min, double *max)
{
    MTLI_CHECK_ARG(min && max, "mtl_option_bounds_f64: min and max must not be NULL");
    const mtli_option_info *info = mtli_option_any(option);
    if (!info) return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "unknown option %#x", (unsigned)option);
    if (!(option & MTL_OPTTYPE_F64))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s is an int64 option: use mtl_option_bounds_i64",
                         info->name);
    *min = info->min;
    *max = info->max;
    return MTL_OK;
}
