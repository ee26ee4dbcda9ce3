/* fuzz_load_buffer.c -- the memory-buffer loaders on the input exactly as
 * given (no repair: the framing itself -- magic, version, size, checksum,
 * section table -- is what is fuzzed here), through both
 * mtl_model_load_buffer and mtl_trainer_load_checkpoint_buffer.
 * Promises checked: only FORMAT / VERSION / OUT_OF_MEMORY or success;
 * a FORMAT error gives the byte offset; out parameters stay NULL on
 * failure; a model that loads works. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan sees a read one byte past the end
     * (libFuzzer's own buffer is exact too; the replay driver's is not). */
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf, "malloc");
    memcpy(buf, data, size);

    mtl_model *m = (mtl_model *)buf; /* must be overwritten with NULL or a model */
    mtl_status st = mtl_model_load_buffer(&m, fuzz_context(), buf, size);
    FUZZ_CHECK(fuzz_load_status_ok(st), "model_load_buffer gave %d", (int)st);
    FUZZ_CHECK(st == MTL_OK ? m != NULL : m == (mtl_model *)buf, "out parameter on status %d", (int)st);
    if (st == MTL_ERR_FORMAT) FUZZ_CHECK(strstr(mtl_last_error_message(), "byte "), "format error without offset");
    if (st == MTL_OK) {
        fuzz_exercise_model(m);
        mtl_model_destroy(m);
    }

    mtl_trainer *t = NULL;
    m = NULL;
    st = mtl_trainer_load_checkpoint_buffer(&t, &m, fuzz_context(), buf, size);
    FUZZ_CHECK(fuzz_load_status_ok(st), "load_checkpoint_buffer gave %d", (int)st);
    FUZZ_CHECK((st == MTL_OK) == (t != NULL) && (t != NULL) == (m != NULL), "out parameters on status %d", (int)st);
    if (st == MTL_ERR_FORMAT) FUZZ_CHECK(strstr(mtl_last_error_message(), "byte "), "format error without offset");
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    free(buf);
    return 0;
}
