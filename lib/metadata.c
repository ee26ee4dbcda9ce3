/* metadata.c -- the host's text on a model: key/value metadata, task units
 * and descriptions, input feature names.  Saved in model files.
 *
 * Every string is a private copy, valid UTF-8 without NUL, at most
 * MTLI_MAX_STRING_BYTES long.  A setter that fails changes nothing. */
#include "io_buf.h"

#include <string.h>

/* Metadata entries are few (provenance, data set, author); the cap keeps
 * linear look-ups cheap and bounds what a file can ask us to build. */
#define MTLI_MAX_METADATA 4096

static mtl_status mtli_check_text(const char *fn, const char *what, const char *s)
{
    size_t n = strnlen(s, MTLI_MAX_STRING_BYTES + 1);
    if (n > MTLI_MAX_STRING_BYTES)
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s is longer than %zu bytes", fn, what,
                         MTLI_MAX_STRING_BYTES);
    if (!mtli_utf8_valid(s, n))
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: %s is not valid UTF-8", fn, what);
    return MTL_OK;
}

/* Copy an optional string (NULL stays NULL). */
static mtl_status mtli_dup_opt(const mtli_settings *s, const char *fn, const char *str, char **out)
{
    *out = NULL;
    if (!str) return MTL_OK;
    *out = mtli_strdup(s, str);
    if (!*out) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot copy a %zu-byte string", fn, strlen(str) + 1);
    return MTL_OK;
}

static int64_t mtli_meta_find(const mtl_model *m, const char *key)
{
    for (int64_t i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[i].key, key) == 0) return i;
    return -1;
}

/* The entry array holds 4, 8, 16, ... entries: its capacity is implied by
 * n_meta (the smallest such size >= n_meta), so the model needs no extra
 * field.  Removing entries never shrinks the allocation below that. */
static int64_t mtli_meta_capacity(int64_t n)
{
    if (n == 0) return 0;
    int64_t cap = 4;
    while (cap < n) cap *= 2;
    return cap;
}

mtl_status mtl_model_set_metadata(mtl_model *model, const char *key, const char *value)
{
    static const char fn[] = "mtl_model_set_metadata";
    MTLI_CHECK_ARG(model && key, "%s: model and key must not be NULL", fn);
    MTLI_CHECK_ARG(key[0] != '\0', "%s: key must not be empty", fn);
    MTLI_TRY(mtli_check_text(fn, "key", key));
    if (value) MTLI_TRY(mtli_check_text(fn, "value", value));
    const mtli_settings *s = &model->settings;
    int64_t at = mtli_meta_find(model, key);

    if (!value) { /* remove, keeping the others in order */
        if (at < 0) return MTL_OK;
        mtli_free(s, model->meta[at].key);
        mtli_free(s, model->meta[at].value);
        memmove(&model->meta[at], &model->meta[at + 1], (size_t)(model->n_meta - at - 1) * sizeof *model->meta);
        model->n_meta--;
        if (model->n_meta == 0) {
            mtli_free(s, model->meta);
            model->meta = NULL;
        }
        return MTL_OK;
    }

    char *v = NULL;
    MTLI_TRY(mtli_dup_opt(s, fn, value, &v));
    if (at >= 0) { /* replace in place */
        mtli_free(s, model->meta[at].value);
        model->meta[at].value = v;
        return MTL_OK;
    }
    if (model->n_meta >= MTLI_MAX_METADATA) {
        mtli_free(s, v);
        return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: a model holds at most %d metadata entries", fn,
                         MTLI_MAX_METADATA);
    }
    char *k = NULL;
    if (mtli_dup_opt(s, fn, key, &k) != MTL_OK) {
        mtli_free(s, v);
        return MTL_ERR_OUT_OF_MEMORY;
    }
    if (model->n_meta == mtli_meta_capacity(model->n_meta)) {
        int64_t cap = model->n_meta == 0 ? 4 : 2 * model->n_meta;
        mtli_kv *grown = mtli_calloc(s, (size_t)cap, sizeof *grown);
        if (!grown) {
            mtli_free(s, k);
            mtli_free(s, v);
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot grow the metadata table to %lld entries", fn,
                             (long long)cap);
        }
        if (model->n_meta > 0) memcpy(grown, model->meta, (size_t)model->n_meta * sizeof *grown);
        mtli_free(s, model->meta);
        model->meta = grown;
    }
    model->meta[model->n_meta].key = k;
    model->meta[model->n_meta].value = v;
    model->n_meta++;
    return MTL_OK;
}

mtl_status mtl_model_get_metadata(const mtl_model *model, const char *key, const char **value)
{
    MTLI_CHECK_ARG(model && key && value, "mtl_model_get_metadata: model, key and value must not be NULL");
    int64_t at = mtli_meta_find(model, key);
    if (at < 0) return mtli_fail(MTL_ERR_NOT_FOUND, "mtl_model_get_metadata: no metadata key '%.200s'", key);
    *value = model->meta[at].value;
    return MTL_OK;
}

int64_t mtl_model_metadata_count(const mtl_model *model)
{
    return model ? model->n_meta : 0;
}

mtl_status mtl_model_metadata_at(const mtl_model *model, int64_t i, const char **key, const char **value)
{
    MTLI_CHECK_ARG(model, "mtl_model_metadata_at: model must not be NULL");
    MTLI_CHECK_ARG(i >= 0 && i < model->n_meta, "mtl_model_metadata_at: index %lld outside [0, %lld)",
                   (long long)i, (long long)model->n_meta);
    if (key) *key = model->meta[i].key;
    if (value) *value = model->meta[i].value;
    return MTL_OK;
}

mtl_status mtl_model_set_task_text(mtl_model *model, int64_t task, const char *unit, const char *description)
{
    static const char fn[] = "mtl_model_set_task_text";
    MTLI_CHECK_ARG(model, "%s: model must not be NULL", fn);
    MTLI_CHECK_ARG(task >= 0 && task < model->n_tasks, "%s: task %lld outside [0, %lld)", fn,
                   (long long)task, (long long)model->n_tasks);
    if (unit) MTLI_TRY(mtli_check_text(fn, "unit", unit));
    if (description) MTLI_TRY(mtli_check_text(fn, "description", description));
    const mtli_settings *s = &model->settings;
    char *u = NULL, *d = NULL;
    MTLI_TRY(mtli_dup_opt(s, fn, unit, &u));
    if (mtli_dup_opt(s, fn, description, &d) != MTL_OK) {
        mtli_free(s, u);
        return MTL_ERR_OUT_OF_MEMORY;
    }
    mtli_task *t = &model->tasks[task];
    mtli_free(s, t->unit);
    mtli_free(s, t->description);
    t->unit = u;
    t->description = d;
    return MTL_OK;
}

mtl_status mtl_model_get_task_text(const mtl_model *model, int64_t task, const char **unit,
                                   const char **description)
{
    static const char fn[] = "mtl_model_get_task_text";
    MTLI_CHECK_ARG(model, "%s: model must not be NULL", fn);
    MTLI_CHECK_ARG(task >= 0 && task < model->n_tasks, "%s: task %lld outside [0, %lld)", fn,
                   (long long)task, (long long)model->n_tasks);
    if (unit) *unit = model->tasks[task].unit;
    if (description) *description = model->tasks[task].description;
    return MTL_OK;
}

mtl_status mtl_model_set_feature_name(mtl_model *model, int64_t feature, const char *name)
{
    static const char fn[] = "mtl_model_set_feature_name";
    MTLI_CHECK_ARG(model, "%s: model must not be NULL", fn);
    MTLI_CHECK_ARG(feature >= 0 && feature < model->n_inputs, "%s: feature %lld outside [0, %lld)", fn,
                   (long long)feature, (long long)model->n_inputs);
    if (name) MTLI_TRY(mtli_check_text(fn, "name", name));
    const mtli_settings *s = &model->settings;
    char *copy = NULL;
    MTLI_TRY(mtli_dup_opt(s, fn, name, &copy));
    if (!model->feature_names) {
        if (!copy) return MTL_OK; /* clearing a name never set */
        model->feature_names = mtli_calloc(s, (size_t)model->n_inputs, sizeof *model->feature_names);
        if (!model->feature_names) {
            mtli_free(s, copy);
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %lld name slots", fn,
                             (long long)model->n_inputs);
        }
    }
    mtli_free(s, model->feature_names[feature]);
    model->feature_names[feature] = copy;
    return MTL_OK;
}

mtl_status mtl_model_get_feature_name(const mtl_model *model, int64_t feature, const char **name)
{
    static const char fn[] = "mtl_model_get_feature_name";
    MTLI_CHECK_ARG(model && name, "%s: model and name must not be NULL", fn);
    MTLI_CHECK_ARG(feature >= 0 && feature < model->n_inputs, "%s: feature %lld outside [0, %lld)", fn,
                   (long long)feature, (long long)model->n_inputs);
    *name = model->feature_names ? model->feature_names[feature] : NULL;
    return MTL_OK;
}

void mtli_metadata_free(mtl_model *m)
{
    const mtli_settings *s = &m->settings;
    for (int64_t i = 0; i < m->n_meta; i++) {
        mtli_free(s, m->meta[i].key);
        mtli_free(s, m->meta[i].value);
    }
    mtli_free(s, m->meta);
    m->meta = NULL;
    m->n_meta = 0;
    if (m->feature_names) {
        for (int64_t i = 0; i < m->n_inputs; i++) mtli_free(s, m->feature_names[i]);
        mtli_free(s, m->feature_names);
        m->feature_names = NULL;
    }
    for (int64_t t = 0; m->tasks && t < m->n_tasks; t++) {
        mtli_free(s, m->tasks[t].unit);
        mtli_free(s, m->tasks[t].description);
        m->tasks[t].unit = m->tasks[t].description = NULL;
    }
}
