/* fuzz_model_file.c -- mtl_model_load on a file holding the input, with
 * its size field and checksum repaired so the section parsers are reached.
 * A model that loads must predict, and save to a file that loads back and
 * saves to the same bytes (fuzz_exercise_model). */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz_common.h"

/* One file per process (libFuzzer -jobs/-workers run several). */
static const char *fuzz_path(void)
{
    static char path[128];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        if (!dir || !dir[0]) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof path, "%s/mtl-fuzz-model-%ld.mtl", dir, (long)getpid());
    }
    return path;
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "cannot create %s", path);
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, data + done, size - done);
        FUZZ_CHECK(k > 0, "cannot write %s", path);
        done += (size_t)k;
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf, "malloc");
    memcpy(buf, data, size);
    fuzz_repair_frame(buf, size);
    const char *path = fuzz_path();
    write_file(path, buf, size);
    free(buf);

    mtl_model *m = NULL;
    mtl_status st = mtl_model_load(&m, fuzz_context(), path);
    unlink(path);
    FUZZ_CHECK(fuzz_load_status_ok(st), "mtl_model_load gave %d", (int)st);
    FUZZ_CHECK((st == MTL_OK) == (m != NULL), "out parameter on status %d", (int)st);
    if (st == MTL_ERR_FORMAT)
        FUZZ_CHECK(strstr(mtl_last_error_message(), "byte ") && strstr(mtl_last_error_message(), path),
                   "a format error names the path and the byte offset");
    if (m) {
        fuzz_exercise_model(m);
        mtl_model_destroy(m);
    }
    return 0;
}
