/* csv_load.c -- mtl_dataset_load_csv / _buffer: parse (csv.c), then hand
 * the parsed arrays to a new data set without copying them.
 *
 * The parser allocates x and y with the handle's settings, exactly as
 * dataset.c's own copies are allocated, so the data set's store can own
 * them (owned = true: freed with the last handle, like MTL_DATASET_COPY).
 */
#include "csv.h"

#include <string.h>

/* A data set that owns the table's arrays.  On failure the arrays are
 * freed, so the caller never has to. */
static mtl_status adopt_table(mtl_dataset **out, const mtli_settings *s, mtli_csv_table *t,
                              const char *fn)
{
    mtli_dataset_store *st = mtli_calloc(s, 1, sizeof *st);
    mtl_dataset *ds = mtli_calloc(s, 1, sizeof *ds);
    if (!st || !ds) {
        mtli_free(s, st);
        mtli_free(s, ds);
        mtli_csv_table_free(s, t);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate the data set handle", fn);
    }
    /* The parser guarantees what mtl_dataset_create checks: finite inputs,
     * targets finite or NaN (missing). */
    *st = (mtli_dataset_store){
        .settings = *s, .refcount = 1, .owned = true,
        .n_rows = t->n_rows, .n_inputs = t->n_inputs, .n_targets = t->n_targets,
        .x = t->x, .ldx = t->n_inputs,
        .y = t->y, .ldy = t->n_targets,
        .mask = NULL, .ldmask = 0, .sample_weight = NULL,
    };
    ds->store = st;
    ds->n_rows = t->n_rows;
    ds->rows = NULL;
    *out = ds;
    return MTL_OK;
}

static mtl_status load(mtl_dataset **out, const mtl_context *ctx, const char *path, const void *data,
                       size_t size, const char *const *input_names, int64_t n_inputs,
                       const char *const *target_names, int64_t n_targets, unsigned flags,
                       const char *fn)
{
    MTLI_CHECK_ARG(out, "%s: out is NULL", fn);
    MTLI_CHECK_ARG((flags & ~MTL_CSV_DROP_INCOMPLETE) == 0, "%s: unknown flags %#x", fn, flags);
    mtli_settings s;
    mtli_settings_from(&s, ctx);
    mtli_csv_spec spec = {
        .input_names = input_names, .n_inputs = n_inputs,
        .target_names = target_names, .n_targets = n_targets,
        .flags = flags,
    };
    mtli_csv_limits_default(&spec.limits);
    mtli_csv_table t;
    memset(&t, 0, sizeof t);
    MTLI_TRY(path ? mtli_csv_parse_file(&s, path, &spec, &t)
                  : mtli_csv_parse_buffer(&s, data, size, &spec, &t));
    mtli_log(&s, MTL_LOG_INFO, "%s: %lld rows of %lld inputs and %lld targets; %lld rows dropped "
             "(missing input)", fn, (long long)t.n_rows, (long long)t.n_inputs,
             (long long)t.n_targets, (long long)t.n_dropped);
    return adopt_table(out, &s, &t, fn);
}

mtl_status mtl_dataset_load_csv(mtl_dataset **out, const mtl_context *ctx, const char *path,
                                const char *const *input_names, int64_t n_inputs,
                                const char *const *target_names, int64_t n_targets, unsigned flags)
{
    MTLI_CHECK_ARG(path, "mtl_dataset_load_csv: path is NULL");
    return load(out, ctx, path, NULL, 0, input_names, n_inputs, target_names, n_targets, flags,
                "mtl_dataset_load_csv");
}

mtl_status mtl_dataset_load_csv_buffer(mtl_dataset **out, const mtl_context *ctx, const void *data,
                                       size_t size, const char *const *input_names, int64_t n_inputs,
                                       const char *const *target_names, int64_t n_targets,
                                       unsigned flags)
{
    MTLI_CHECK_ARG(data || size == 0, "mtl_dataset_load_csv_buffer: data is NULL");
    return load(out, ctx, NULL, data, size, input_names, n_inputs, target_names, n_targets, flags,
                "mtl_dataset_load_csv_buffer");
}
