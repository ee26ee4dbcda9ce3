/* fuzz_common.h -- shared by the libFuzzer targets in tests/fuzz/.
 *
 * Each target defines LLVMFuzzerTestOneInput.  It is linked either with
 * libFuzzer (clang -fsanitize=fuzzer, tests/fuzz/run_fuzz.sh) or with
 * replay_main.c, which feeds it every file of the committed corpus and
 * regression directories (the fuzz_replay_* tests of every build).
 *
 * A target aborts (FUZZ_CHECK) only when libmtl breaks a documented
 * promise; everything else it must survive is a sanitizer report. */
#ifndef MTL_FUZZ_COMMON_H
#define MTL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtl.h"
#include "crc32c.h"

#define FUZZ_CHECK(cond, ...)                                                     \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: broken promise: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, " (last message: %s)\n", mtl_last_error_message());  \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* A host-like allocator that refuses single requests above 64 MiB: a
 * hostile file asking for more gets MTL_ERR_OUT_OF_MEMORY (which must be
 * handled cleanly) instead of exhausting the fuzzer's memory limit. */
#define FUZZ_MAX_ALLOC ((size_t)64 << 20)

static void *fuzz_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    void *p = NULL;
    if (size > FUZZ_MAX_ALLOC) return NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void fuzz_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* One context for the whole run (created on first use, never freed:
 * LeakSanitizer sees it as reachable). */
static inline const mtl_context *fuzz_context(void)
{
    static mtl_context *ctx;
    if (!ctx) {
        mtl_allocator a = MTL_ALLOCATOR_INIT;
        a.alloc = fuzz_alloc;
        a.free = fuzz_free;
        if (mtl_context_create(&ctx, &a) != MTL_OK) abort();
    }
    return ctx;
}

static inline void fuzz_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void fuzz_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Make a mutated file pass the framing checks the fuzzer cannot easily
 * satisfy (size field at byte 16, CRC-32C trailer), so the section parsers
 * behind them get fuzzed.  Magic, version and kind stay as mutated. */
static inline void fuzz_repair_frame(uint8_t *buf, size_t size)
{
    if (size < 28) return;
    fuzz_put64(buf + 16, (uint64_t)size);
    fuzz_put32(buf + size - 4, mtli_crc32c(0, buf, size - 4));
}

/* A status a loader may return for hostile bytes. */
static inline int fuzz_load_status_ok(mtl_status st)
{
    return st == MTL_OK || st == MTL_ERR_FORMAT || st == MTL_ERR_VERSION || st == MTL_ERR_OUT_OF_MEMORY;
}

/* Inputs in a range that exercises every activation, deterministically. */
static inline void fuzz_inputs(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 37) % 23) * 0.25f - 2.5f;
}

/* Everything a host does with a model that loaded must work: predict
 * (in chunks), labels, embedding, domain check; and saving it must give a
 * file that loads back and saves to the same bytes.  The model's sizes
 * are bounded by the file that produced it. */
static inline void fuzz_exercise_model(const mtl_model *m)
{
    int64_t d = mtl_model_input_count(m), ow = mtl_model_output_width(m), tw = mtl_model_target_width(m),
            ew = mtl_model_embedding_width(m);
    FUZZ_CHECK(mtl_model_is_finalized(m) && d >= 1 && ow >= 1 && tw >= 1 && ew >= 1, "loaded model shape");
    enum { ROWS = 5 };
    float *x = malloc(sizeof(float) * ROWS * (size_t)d);
    float *o = malloc(sizeof(float) * ROWS * (size_t)(ow > ew ? ow : ew));
    int64_t dom[ROWS];
    FUZZ_CHECK(x && o, "malloc");
    fuzz_inputs(x, ROWS * d);
    mtl_workspace *ws = NULL;
    mtl_status st = mtl_workspace_create(&ws, m, 2); /* 5 rows = chunks of 2, 2, 1 */
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_OUT_OF_MEMORY, "workspace_create gave %d", (int)st);
    if (st == MTL_OK) {
        st = mtl_model_predict(m, ws, ROWS, x, d, o, ow);
        FUZZ_CHECK(st == MTL_OK, "predict gave %d", (int)st);
        st = mtl_model_predict_labels(m, ws, ROWS, x, d, o, tw);
        FUZZ_CHECK(st == MTL_OK, "predict_labels gave %d", (int)st);
        st = mtl_model_embed(m, ws, ROWS, x, d, o, ew);
        FUZZ_CHECK(st == MTL_OK, "embed gave %d", (int)st);
        mtl_workspace_destroy(ws);
    }
    st = mtl_model_check_domain(m, ROWS, x, d, dom);
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_STATE, "check_domain gave %d", (int)st);
    for (int64_t i = 0; i < mtl_model_metadata_count(m); i++) {
        const char *k, *v;
        FUZZ_CHECK(mtl_model_metadata_at(m, i, &k, &v) == MTL_OK && k[0], "metadata %lld", (long long)i);
    }
    free(x);
    free(o);

    size_t n1 = 0, n2 = 0, n3 = 0;
    FUZZ_CHECK(mtl_model_save_buffer(m, NULL, 0, &n1) == MTL_OK, "measure");
    uint8_t *a = malloc(n1), *b = NULL;
    FUZZ_CHECK(a, "malloc");
    FUZZ_CHECK(mtl_model_save_buffer(m, a, n1, &n2) == MTL_OK && n2 == n1, "save_buffer");
    mtl_model *again = NULL;
    st = mtl_model_load_buffer(&again, fuzz_context(), a, n1);
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_OUT_OF_MEMORY, "a saved model does not load back: %d", (int)st);
    if (st == MTL_OK) {
        b = malloc(n1);
        FUZZ_CHECK(b, "malloc");
        FUZZ_CHECK(mtl_model_save_buffer(again, b, n1, &n3) == MTL_OK && n3 == n1, "second save");
        FUZZ_CHECK(memcmp(a, b, n1) == 0, "save(load(save(m))) != save(m)");
        mtl_model_destroy(again);
    }
    free(a);
    free(b);
}

#endif /* MTL_FUZZ_COMMON_H */
