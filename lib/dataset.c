/* dataset.c -- data sets: host arrays bound zero-copy (or copied), and
 * row views sharing one reference-counted store.
 *
 * A view holds a reference to the store, not to its parent handle, so
 * views outlive the handle they were made from; the store (and, for
 * copies, the arrays) go when the last handle is destroyed. */
#include "mtl_internal.h"

#include <math.h>
#include <string.h>

static void mtli_store_ref(mtli_dataset_store *st)
{
#if defined(__GNUC__)
    __atomic_fetch_add(&st->refcount, 1, __ATOMIC_RELAXED);
#else
    st->refcount++;
#endif
}

/* Drop one reference; frees the store with the last one.  Handles sharing
 * a store may be destroyed from different threads, hence the atomics. */
static void mtli_store_unref(mtli_dataset_store *st)
{
#if defined(__GNUC__)
    if (__atomic_sub_fetch(&st->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
#else
    if (--st->refcount != 0) return;
#endif
    const mtli_settings s = st->settings; /* the store holds the allocator */
    if (st->owned) {
        mtli_free(&s, (void *)st->x);
        mtli_free(&s, (void *)st->y);
        mtli_free(&s, (void *)st->mask);
        mtli_free(&s, (void *)st->sample_weight);
    }
    mtli_free(&s, st);
}

static mtl_status mtli_check_arrays(int64_t n_rows, int64_t n_inputs, int64_t n_targets,
                                    const float *x, int64_t ldx, const float *y, int64_t ldy,
                                    const float *w)
{
    int64_t bad_row, bad_col;
    if (mtli_find_non_finite(x, n_rows, n_inputs, ldx, 1, &bad_row, &bad_col))
        return mtli_fail(MTL_ERR_NON_FINITE, "mtl_dataset_create: input row %lld, column %lld is %g",
                         (long long)bad_row, (long long)bad_col, (double)x[bad_row * ldx + bad_col]);
    for (int64_t r = 0; r < n_rows; r++) {
        if (y) {
            const float *yr = y + r * ldy;
            for (int64_t c = 0; c < n_targets; c++)
                if (isinf(yr[c]))
                    return mtli_fail(MTL_ERR_NON_FINITE, "mtl_dataset_create: target row %lld, column "
                                     "%lld is %g (use NaN for a missing label)", (long long)r,
                                     (long long)c, (double)yr[c]);
        }
        if (w && !(w[r] >= 0.0f && isfinite(w[r])))
            return mtli_fail(isfinite(w[r]) ? MTL_ERR_INVALID_ARGUMENT : MTL_ERR_NON_FINITE,
                             "mtl_dataset_create: sample weight of row %lld is %g (need finite, >= 0)",
                             (long long)r, (double)w[r]);
    }
    return MTL_OK;
}

/* Copy an n x cols block with row stride ld into a packed array. */
static void *mtli_copy_rows(const mtli_settings *s, const void *src, int64_t n, int64_t cols,
                            int64_t ld, size_t elem)
{
    size_t row_bytes = (size_t)cols * elem, total;
    if (!mtli_mul_size(row_bytes, (size_t)n, &total)) return NULL;
    unsigned char *dst = mtli_alloc(s, total);
    if (!dst) return NULL;
    for (int64_t r = 0; r < n; r++)
        memcpy(dst + (size_t)r * row_bytes, (const unsigned char *)src + (size_t)r * (size_t)ld * elem,
               row_bytes);
    return dst;
}

static mtl_status mtli_store_copy(mtli_dataset_store *st)
{
    const mtli_settings *s = &st->settings;
    const int64_t n = st->n_rows;
    float *x = mtli_copy_rows(s, st->x, n, st->n_inputs, st->ldx, sizeof(float));
    float *y = st->y ? mtli_copy_rows(s, st->y, n, st->n_targets, st->ldy, sizeof(float)) : NULL;
    uint8_t *mask = st->mask ? mtli_copy_rows(s, st->mask, n, st->n_targets, st->ldmask, 1) : NULL;
    float *w = st->sample_weight ? mtli_copy_rows(s, st->sample_weight, n, 1, 1, sizeof(float)) : NULL;
    if (!x || (st->y && !y) || (st->mask && !mask) || (st->sample_weight && !w)) {
        mtli_free(s, x);
        mtli_free(s, y);
        mtli_free(s, mask);
        mtli_free(s, w);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_dataset_create: copy of %lld rows", (long long)n);
    }
    st->x = x;
    st->ldx = st->n_inputs;
    st->y = y;
    st->ldy = st->n_targets;
    st->mask = mask;
    st->ldmask = st->n_targets;
    st->sample_weight = w;
    st->owned = true;
    return MTL_OK;
}

mtl_status mtl_dataset_create(mtl_dataset **out, const mtl_context *ctx, int64_t n_rows,
                              int64_t n_inputs, int64_t n_targets, const float *x, int64_t ldx,
                              const float *y, int64_t ldy, const uint8_t *mask, int64_t ldmask,
                              const float *sample_weight, unsigned flags)
{
    MTLI_CHECK_ARG(out, "mtl_dataset_create: out is NULL");
    MTLI_CHECK_ARG(n_rows >= 1, "mtl_dataset_create: n_rows = %lld (need >= 1)", (long long)n_rows);
    MTLI_CHECK_ARG(n_inputs >= 1, "mtl_dataset_create: n_inputs = %lld (need >= 1)",
                   (long long)n_inputs);
    MTLI_CHECK_ARG(n_targets >= 0, "mtl_dataset_create: n_targets = %lld", (long long)n_targets);
    MTLI_CHECK_ARG(x, "mtl_dataset_create: x is NULL");
    MTLI_CHECK_ARG((flags & ~MTL_DATASET_COPY) == 0, "mtl_dataset_create: unknown flags %#x", flags);
    MTLI_CHECK_ARG(!y || n_targets >= 1, "mtl_dataset_create: y given but n_targets is 0");
    MTLI_CHECK_ARG(y || n_targets == 0, "mtl_dataset_create: n_targets = %lld but y is NULL",
                   (long long)n_targets);
    MTLI_CHECK_ARG(!mask || y, "mtl_dataset_create: a mask needs targets");
    if (ldx < n_inputs)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_dataset_create: ldx %lld < n_inputs %lld",
                         (long long)ldx, (long long)n_inputs);
    if (y && ldy < n_targets)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_dataset_create: ldy %lld < n_targets %lld",
                         (long long)ldy, (long long)n_targets);
    if (mask && ldmask < n_targets)
        return mtli_fail(MTL_ERR_SHAPE, "mtl_dataset_create: ldmask %lld < n_targets %lld",
                         (long long)ldmask, (long long)n_targets);
    MTLI_TRY(mtli_check_arrays(n_rows, n_inputs, n_targets, x, ldx, y, ldy, sample_weight));

    mtli_settings s;
    mtli_settings_from(&s, ctx);
    mtli_dataset_store *st = mtli_calloc(&s, 1, sizeof *st);
    mtl_dataset *ds = mtli_calloc(&s, 1, sizeof *ds);
    if (!st || !ds) {
        mtli_free(&s, st);
        mtli_free(&s, ds);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_dataset_create: handle");
    }
    *st = (mtli_dataset_store){
        .settings = s, .refcount = 1, .owned = false,
        .n_rows = n_rows, .n_inputs = n_inputs, .n_targets = n_targets,
        .x = x, .ldx = ldx, .y = y, .ldy = ldy, .mask = mask, .ldmask = ldmask,
        .sample_weight = sample_weight,
    };
    if (flags & MTL_DATASET_COPY) {
        mtl_status status = mtli_store_copy(st);
        if (status != MTL_OK) {
            mtli_free(&s, st);
            mtli_free(&s, ds);
            return status;
        }
    }
    ds->store = st;
    ds->n_rows = n_rows;
    ds->rows = NULL;
    *out = ds;
    return MTL_OK;
}

mtl_status mtl_dataset_view(mtl_dataset **out, const mtl_dataset *parent, int64_t n,
                            const int64_t *rows)
{
    MTLI_CHECK_ARG(out && parent && rows, "mtl_dataset_view: out, parent and rows must not be NULL");
    MTLI_CHECK_ARG(n >= 1, "mtl_dataset_view: n = %lld (need >= 1)", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= parent->n_rows)
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT,
                             "mtl_dataset_view: rows[%lld] = %lld outside [0, %lld)", (long long)i,
                             (long long)rows[i], (long long)parent->n_rows);
    const mtli_settings *s = &parent->store->settings;
    mtl_dataset *ds = mtli_calloc(s, 1, sizeof *ds);
    int64_t *map = mtli_alloc(s, (size_t)n * sizeof *map);
    if (!ds || !map) {
        mtli_free(s, ds);
        mtli_free(s, map);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "mtl_dataset_view: %lld rows", (long long)n);
    }
    /* Map straight to store rows, so a view of a view costs no extra hop. */
    for (int64_t i = 0; i < n; i++) map[i] = mtli_dataset_row(parent, rows[i]);
    mtli_store_ref(parent->store);
    ds->store = parent->store;
    ds->n_rows = n;
    ds->rows = map;
    *out = ds;
    return MTL_OK;
}

void mtl_dataset_destroy(mtl_dataset *ds)
{
    if (!ds) return;
    mtli_dataset_store *st = ds->store;
    const mtli_settings s = st->settings;
    mtli_free(&s, ds->rows);
    mtli_free(&s, ds);
    mtli_store_unref(st);
}

int64_t mtl_dataset_row_count(const mtl_dataset *ds) { return ds ? ds->n_rows : 0; }
int64_t mtl_dataset_input_count(const mtl_dataset *ds) { return ds ? ds->store->n_inputs : 0; }
int64_t mtl_dataset_target_count(const mtl_dataset *ds) { return ds ? ds->store->n_targets : 0; }

static mtl_status mtli_check_range(const mtl_dataset *ds, int64_t first, int64_t n, const void *buf,
                                   int64_t ld, int64_t cols, const char *fn)
{
    MTLI_CHECK_ARG(ds, "%s: data set is NULL", fn);
    MTLI_CHECK_ARG(n >= 0 && first >= 0 && first <= ds->n_rows && n <= ds->n_rows - first,
                   "%s: rows [%lld, %lld) outside [0, %lld)", fn, (long long)first,
                   (long long)(first + n), (long long)ds->n_rows);
    MTLI_CHECK_ARG(buf || n == 0, "%s: output buffer is NULL", fn);
    if (ld < cols)
        return mtli_fail(MTL_ERR_SHAPE, "%s: leading dimension %lld < %lld columns", fn,
                         (long long)ld, (long long)cols);
    return MTL_OK;
}

mtl_status mtl_dataset_get_inputs(const mtl_dataset *ds, int64_t first, int64_t n, float *x,
                                  int64_t ldx)
{
    MTLI_TRY(mtli_check_range(ds, first, n, x, ldx, ds ? ds->store->n_inputs : 0,
                              "mtl_dataset_get_inputs"));
    const mtli_dataset_store *st = ds->store;
    for (int64_t i = 0; i < n; i++)
        memcpy(x + i * ldx, st->x + mtli_dataset_row(ds, first + i) * st->ldx,
               (size_t)st->n_inputs * sizeof(float));
    return MTL_OK;
}

mtl_status mtl_dataset_get_targets(const mtl_dataset *ds, int64_t first, int64_t n, float *y,
                                   int64_t ldy)
{
    MTLI_TRY(mtli_check_range(ds, first, n, y, ldy, ds ? ds->store->n_targets : 0,
                              "mtl_dataset_get_targets"));
    const mtli_dataset_store *st = ds->store;
    if (!st->y) return mtli_fail(MTL_ERR_STATE, "mtl_dataset_get_targets: the data set has no targets");
    for (int64_t i = 0; i < n; i++) {
        const int64_t row = mtli_dataset_row(ds, first + i);
        const float *src = st->y + row * st->ldy;
        float *dst = y + i * ldy;
        /* A masked-out label reads as NaN: the caller sees one convention. */
        for (int64_t c = 0; c < st->n_targets; c++)
            dst[c] = mtli_label_is_observed(st->mask, st->ldmask, st->y, st->ldy, row, c) ? src[c] : NAN;
    }
    return MTL_OK;
}
