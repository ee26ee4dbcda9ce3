/* files_common.h -- the sample model of the file tests, the golden-file
 * generator and the resume test: every feature a file must carry (layer
 * norm, dropout, three task types, non-default task options, texts,
 * feature names, metadata, fitted scalers) in ~1.4 KB. */
#ifndef MTL_FILES_COMMON_H
#define MTL_FILES_COMMON_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtl.h"

#define SAMPLE_INPUTS 3
#define SAMPLE_TARGETS 4 /* G_act (2), is_fast (1), channel (1 label) */
#define SAMPLE_OUTPUTS 6 /* G_act (2), is_fast (1), channel (3 probabilities) */
#define SAMPLE_ROWS 24

/* Deterministic pseudo-random numbers in [-0.5, 0.5) (no libmtl RNG, so
 * the data do not change when the library's RNG does). */
static inline float sample_rand(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 40) / 16777216.0 - 0.5);
}

/* Inputs and targets of the sample data (row-major). */
static inline void sample_data(float *x, float *y)
{
    uint64_t st = 2024;
    for (int r = 0; r < SAMPLE_ROWS; r++) {
        float *xr = x + r * SAMPLE_INPUTS, *yr = y + r * SAMPLE_TARGETS;
        xr[0] = 300.0f + 400.0f * (sample_rand(&st) + 0.5f); /* T / K */
        xr[1] = 1.0f + 10.0f * (sample_rand(&st) + 0.5f);    /* p / bar */
        xr[2] = sample_rand(&st);
        yr[0] = 50.0f + 0.05f * xr[0] + 2.0f * xr[2];          /* barrier > 0 (log target) */
        yr[1] = r % 5 == 3 ? NAN : 10.0f + xr[1];              /* some labels missing */
        yr[2] = xr[2] > 0.0f ? 1.0f : 0.0f;
        yr[3] = (float)(r % 3);
    }
}

/* Define, finalize and decorate the sample model; parameters are set to a
 * fixed pattern; scalers are fitted on the sample data if `fit`. */
static inline mtl_status sample_model(mtl_model **out, const mtl_context *ctx, int fit)
{
    mtl_model *m = NULL;
    mtl_status st;
#define SAMPLE_TRY(x) do { st = (x); if (st != MTL_OK) goto fail; } while (0)
    SAMPLE_TRY(mtl_model_create(&m, ctx, SAMPLE_INPUTS));
    SAMPLE_TRY(mtl_model_add_trunk_layer(m, 8, MTL_ACT_TANH, 0.1f, MTL_LAYER_NORM));
    SAMPLE_TRY(mtl_model_add_trunk_layer(m, 6, MTL_ACT_RELU, 0.0f, 0));
    int64_t t0, t1, t2;
    SAMPLE_TRY(mtl_model_add_task(m, "G_act", MTL_TASK_REGRESSION, 2, &t0));
    SAMPLE_TRY(mtl_model_add_head_layer(m, t0, 4, MTL_ACT_GELU, 0.05f, 0));
    SAMPLE_TRY(mtl_model_set_task_i64(m, t0, MTL_TASK_OPT_LOSS, MTL_LOSS_HUBER));
    SAMPLE_TRY(mtl_model_set_task_f64(m, t0, MTL_TASK_OPT_HUBER_DELTA, 0.5));
    SAMPLE_TRY(mtl_model_set_task_f64(m, t0, MTL_TASK_OPT_LOSS_WEIGHT, 2.0));
    SAMPLE_TRY(mtl_model_set_task_i64(m, t0, MTL_TASK_OPT_LOG_TARGET, 1));
    SAMPLE_TRY(mtl_model_add_task(m, "is_fast", MTL_TASK_BINARY, 1, &t1));
    SAMPLE_TRY(mtl_model_set_task_f64(m, t1, MTL_TASK_OPT_LOSS_WEIGHT, 0.25));
    SAMPLE_TRY(mtl_model_add_task(m, "channel", MTL_TASK_MULTICLASS, 3, &t2));
    SAMPLE_TRY(mtl_model_add_head_layer(m, t2, 5, MTL_ACT_SIGMOID, 0.0f, MTL_LAYER_NORM));
    SAMPLE_TRY(mtl_model_finalize(m));

    SAMPLE_TRY(mtl_model_set_task_text(m, t0, "kJ/mol", "free-energy barrier, \xc3\xa9tat de transition"));
    SAMPLE_TRY(mtl_model_set_task_text(m, t2, NULL, "dominant channel"));
    SAMPLE_TRY(mtl_model_set_feature_name(m, 0, "T / K"));
    SAMPLE_TRY(mtl_model_set_feature_name(m, 1, "p / bar"));
    SAMPLE_TRY(mtl_model_set_metadata(m, "author", "Ada"));
    SAMPLE_TRY(mtl_model_set_metadata(m, "dataset", "rxn-2024 (v3)"));
    SAMPLE_TRY(mtl_model_set_metadata(m, "note", ""));

    int64_t n = mtl_model_param_count(m);
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) { st = MTL_ERR_OUT_OF_MEMORY; goto fail; }
    uint64_t rs = 7;
    for (int64_t i = 0; i < n; i++) p[i] = sample_rand(&rs);
    st = mtl_model_set_params(m, p, n);
    free(p);
    if (st != MTL_OK) goto fail;

    if (fit) {
        float x[SAMPLE_ROWS * SAMPLE_INPUTS], y[SAMPLE_ROWS * SAMPLE_TARGETS];
        sample_data(x, y);
        mtl_dataset *ds = NULL;
        SAMPLE_TRY(mtl_dataset_create(&ds, ctx, SAMPLE_ROWS, SAMPLE_INPUTS, SAMPLE_TARGETS, x, SAMPLE_INPUTS, y,
                                      SAMPLE_TARGETS, NULL, 0, NULL, MTL_DATASET_COPY));
        st = mtl_model_fit_scalers(m, ds);
        mtl_dataset_destroy(ds);
        if (st != MTL_OK) goto fail;
    }
#undef SAMPLE_TRY
    *out = m;
    return MTL_OK;
fail:
    mtl_model_destroy(m);
    return st;
}

/* Serialise a model into a malloc'ed buffer. */
static inline mtl_status save_to_malloc(const mtl_model *m, unsigned char **buf, size_t *size)
{
    size_t n = 0;
    mtl_status st = mtl_model_save_buffer(m, NULL, 0, &n);
    if (st != MTL_OK) return st;
    *buf = malloc(n);
    if (!*buf) return MTL_ERR_OUT_OF_MEMORY;
    st = mtl_model_save_buffer(m, *buf, n, size);
    if (st != MTL_OK) free(*buf);
    return st;
}

/* Read a whole file into a malloc'ed buffer (NULL on failure). */
static inline unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* CRC-32C, bitwise: written independently of lib/crc32c.c's tables, to
 * forge checksums the way an attacker could and to check the library's. */
static inline uint32_t crc32c(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Entries of `dir` whose name starts with ".mtl-" (leftover temp files of
 * an interrupted save); -1 if it cannot be read. */
static inline int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, ".mtl-", 5) == 0) n++;
    closedir(d);
    return n;
}

#endif /* MTL_FILES_COMMON_H */
