/* context.c -- the context handle: settings that later handles copy. */
#include "mtl_internal.h"

#include <stdio.h>
#include <string.h>

struct mtl_context {
    mtli_settings settings;
};

void mtli_settings_defaults(mtli_settings *s)
{
    memset(s, 0, sizeof *s);
    s->num_threads = 1;
    s->seed = 42;
    /* Below ~4 MFLOP a second BLIS thread costs more than it gains (W1-sized
     * GEMMs are unstable with 2 threads); see docs/performance.md. */
    s->parallel_min_flops = 4000000;
    mtli_allocator_defaults(&s->allocator);
    s->log_min = MTL_LOG_WARN;
}

void mtli_settings_from(mtli_settings *s, const mtl_context *ctx)
{
    if (ctx)
        *s = ctx->settings;
    else
        mtli_settings_defaults(s);
}

mtl_status mtl_context_create(mtl_context **out, const mtl_allocator *allocator)
{
    MTLI_CHECK_ARG(out, "mtl_context_create: out must not be NULL");
    mtli_settings s;
    mtli_settings_defaults(&s);
    if (allocator) {
        /* struct_size lets a future, longer struct be told apart; today every
         * field up to `user` is required. */
        MTLI_CHECK_ARG(allocator->struct_size >= offsetof(mtl_allocator, user) + sizeof(void *),
                       "mtl_context_create: allocator->struct_size %zu too small (use MTL_ALLOCATOR_INIT)",
                       allocator->struct_size);
        MTLI_CHECK_ARG(allocator->alloc && allocator->free,
                       "mtl_context_create: allocator needs both alloc and free");
        s.allocator.alloc = allocator->alloc;
        s.allocator.free = allocator->free;
        s.allocator.user = allocator->user;
    }
    mtl_context *ctx = mtli_alloc(&s, sizeof *ctx);
    if (!ctx) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_context_create: cannot allocate %zu bytes", sizeof *ctx);
    ctx->settings = s;
    *out = ctx;
    return MTL_OK;
}

void mtl_context_destroy(mtl_context *ctx)
{
    if (!ctx) return;
    mtli_settings s = ctx->settings;
    mtli_free(&s, ctx);
}

mtl_status mtl_context_set_log(mtl_context *ctx, mtl_log_fn fn, void *user, mtl_log_level min_level)
{
    MTLI_CHECK_ARG(ctx, "mtl_context_set_log: ctx must not be NULL");
    MTLI_CHECK_ARG(min_level >= MTL_LOG_DEBUG && min_level <= MTL_LOG_ERROR,
                   "mtl_context_set_log: min_level %d is not an mtl_log_level", (int)min_level);
    ctx->settings.log_fn = fn;
    ctx->settings.log_user = user;
    ctx->settings.log_min = min_level;
    return MTL_OK;
}

mtl_status mtl_context_set_i64(mtl_context *ctx, int option, int64_t value)
{
    MTLI_CHECK_ARG(ctx, "mtl_context_set_i64: ctx must not be NULL");
    switch (option) {
    case MTL_OPT_NUM_THREADS:
    case MTL_OPT_SEED:
    case MTL_OPT_PARALLEL_MIN_FLOPS:
        break;
    default:
        if (option & MTL_OPTTYPE_F64)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x takes a double and is not a context option",
                             (unsigned)option);
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not a context option", (unsigned)option);
    }
    MTLI_TRY(mtli_option_check_i64(option, false, value));
    if (option == MTL_OPT_NUM_THREADS) ctx->settings.num_threads = value;
    if (option == MTL_OPT_SEED) ctx->settings.seed = value;
    if (option == MTL_OPT_PARALLEL_MIN_FLOPS) ctx->settings.parallel_min_flops = value;
    return MTL_OK;
}

mtl_status mtl_context_get_i64(const mtl_context *ctx, int option, int64_t *value)
{
    MTLI_CHECK_ARG(ctx && value, "mtl_context_get_i64: ctx and value must not be NULL");
    switch (option) {
    case MTL_OPT_NUM_THREADS: *value = ctx->settings.num_threads; return MTL_OK;
    case MTL_OPT_SEED: *value = ctx->settings.seed; return MTL_OK;
    case MTL_OPT_PARALLEL_MIN_FLOPS: *value = ctx->settings.parallel_min_flops; return MTL_OK;
    default:
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "option %#x is not an int64 context option", (unsigned)option);
    }
}

void mtli_log(const mtli_settings *s, mtl_log_level level, const char *fmt, ...)
{
    if (!s || !s->log_fn || level < s->log_min) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s->log_fn(s->log_user, level, buf);
}
