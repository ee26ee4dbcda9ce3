/* file_path.c -- the operating-system side of files: atomic replace on
 * save, whole-file reads on load.
 *
 * Save writes "<dir>/.mtl-<random>.tmp" next to the target, fsyncs it,
 * renames it over the target and fsyncs the directory.  rename() within a
 * directory is atomic on POSIX file systems, so a crash at any moment
 * leaves either the old file or the new one, whole. */
#include "file_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* strerror is not thread-safe; _GNU_SOURCE (set by the build) selects the
 * GNU strerror_r, which returns the message. */
static const char *mtli_errstr(int e, char *buf, size_t cap)
{
    return strerror_r(e, buf, cap);
}

/* A fresh temporary name in the target's directory (`prefix_len` bytes of
 * `path`: everything up to and including the last '/').  The random part
 * mixes pid, time and a process-wide counter, so threads and processes
 * saving into one directory do not collide (O_EXCL catches the rest). */
static void mtli_temp_name(char *out, size_t cap, const char *path, size_t prefix_len)
{
    static atomic_uint_fast64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)getpid() << 32 ^ (uint64_t)ts.tv_sec * 1000000000u ^ (uint64_t)ts.tv_nsec;
    uint64_t r = mtli_rng_u64(seed, 0x7e3a, atomic_fetch_add(&counter, 1));
    snprintf(out, cap, "%.*s.mtl-%016llx.tmp", (int)prefix_len, path, (unsigned long long)r);
}

/* Make the rename durable.  A failure here cannot undo the save (the file
 * is already whole in place) and only weakens durability, so it is logged. */
static void mtli_sync_dir(const mtli_settings *s, const char *path, size_t prefix_len)
{
    char buf[256];
    char *dir = mtli_alloc(s, prefix_len + 2);
    if (!dir) return;
    snprintf(dir, prefix_len + 2, "%.*s.", (int)prefix_len, path); /* "a/b/." or "." */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP))
        mtli_log(s, MTL_LOG_WARN, "saved '%s', but cannot sync directory '%s': %s", path, dir,
                 mtli_errstr(errno, buf, sizeof buf));
    if (dfd >= 0) close(dfd);
    mtli_free(s, dir);
}

mtl_status mtli_file_save_path(const mtli_settings *s, const char *path, uint32_t kind,
                               mtli_file_body body, const void *arg)
{
    char ebuf[256];
    MTLI_CHECK_ARG(path && path[0], "path must be a non-empty string");
    const char *slash = strrchr(path, '/');
    size_t prefix_len = slash ? (size_t)(slash - path) + 1 : 0;
    size_t tmp_cap = prefix_len + 32;
    char *tmp = mtli_alloc(s, tmp_cap);
    if (!tmp) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "saving '%s': cannot allocate a %zu-byte name", path, tmp_cap);

    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        mtli_temp_name(tmp, tmp_cap, path, prefix_len);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        mtli_free(s, tmp);
        return mtli_fail(MTL_ERR_IO, "saving '%s': cannot create a temporary file in its directory: %s", path,
                         mtli_errstr(e, ebuf, sizeof ebuf));
    }
    /* Replacing a file keeps its permissions (best effort). */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) (void)fchmod(fd, st.st_mode & 07777);

    int err_no = 0;
    const char *step = "write";
    mtl_status status = mtli_file_write_fd(s, fd, kind, body, arg, &err_no);
    if (status == MTL_OK && fsync(fd) != 0) {
        status = MTL_ERR_IO, err_no = errno, step = "fsync";
    }
    if (close(fd) != 0 && status == MTL_OK) { /* e.g. NFS reports write errors here */
        status = MTL_ERR_IO, err_no = errno, step = "close";
    }
    if (status == MTL_OK && rename(tmp, path) != 0) {
        status = MTL_ERR_IO, err_no = errno, step = "rename";
    }
    if (status != MTL_OK) {
        unlink(tmp);
        if (status == MTL_ERR_IO && err_no != 0) {
            if (strcmp(step, "rename") == 0)
                mtli_fail(status, "saving '%s': cannot replace it: %s", path, mtli_errstr(err_no, ebuf, sizeof ebuf));
            else
                mtli_fail(status, "saving '%s': %s of temporary file '%s' failed: %s", path, step, tmp,
                          mtli_errstr(err_no, ebuf, sizeof ebuf));
        } else {
            mtli_fail_prefix(status, "saving '%s': ", path);
        }
        mtli_free(s, tmp);
        return status;
    }
    mtli_free(s, tmp);
    mtli_sync_dir(s, path, prefix_len);
    return MTL_OK;
}

mtl_status mtli_file_read_path(const mtli_settings *s, const char *path, uint8_t **data, size_t *size)
{
    char ebuf[256];
    MTLI_CHECK_ARG(path && path[0], "path must be a non-empty string");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return mtli_fail(MTL_ERR_IO, "cannot open '%s': %s", path, mtli_errstr(e, ebuf, sizeof ebuf));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mtli_fail(MTL_ERR_IO, "cannot stat '%s': %s", path, mtli_errstr(e, ebuf, sizeof ebuf));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mtli_fail(MTL_ERR_IO, "'%s' is not a regular file%s", path, S_ISDIR(st.st_mode) ? " (a directory)" : "");
    }
    if ((uint64_t)st.st_size > MTLI_MAX_FILE_BYTES || (uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return mtli_fail(MTL_ERR_FORMAT, "'%s' is %lld bytes, more than the %llu-byte limit of a libmtl file",
                         path, (long long)st.st_size, (unsigned long long)MTLI_MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = mtli_alloc(s, n ? n : 1);
    if (!buf) {
        close(fd);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to read '%s'", n, path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : 0;
            close(fd);
            mtli_free(s, buf);
            if (e) return mtli_fail(MTL_ERR_IO, "cannot read '%s': %s", path, mtli_errstr(e, ebuf, sizeof ebuf));
            return mtli_fail(MTL_ERR_IO, "'%s' shrank from %zu to %zu bytes while being read", path, n, got);
        }
        got += (size_t)k;
    }
    close(fd);
    *data = buf;
    *size = n;
    return MTL_OK;
}
