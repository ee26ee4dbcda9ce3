/* file_frame.c -- header, section table and checksum of libmtl files.
 *
 * Loading checks, in this order: magic, major version, total size,
 * checksum, then the section table.  Only after the checksum matches are
 * section contents looked at, so random corruption is reported as such. */
#include "file_format.h"

#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"

const char *mtli_section_name(uint32_t id)
{
    switch (id) {
    case MTLI_SEC_ARCH: return "section ARCH";
    case MTLI_SEC_PARAMS: return "section PARAMS";
    case MTLI_SEC_SCALERS: return "section SCALERS";
    case MTLI_SEC_FEATURES: return "section FEATURES";
    case MTLI_SEC_METADATA: return "section METADATA";
    case MTLI_SEC_TRAINER_OPTIONS: return "section TRAINER_OPTIONS";
    case MTLI_SEC_OPTIMIZER: return "section OPTIMIZER";
    case MTLI_SEC_PROGRESS: return "section PROGRESS";
    case MTLI_SEC_EARLY_STOP: return "section EARLY_STOP";
    case MTLI_SEC_WEIGHTING: return "section WEIGHTING";
    default: return "unknown section";
    }
}

/* ---- writing --------------------------------------------------------------- */

static void mtli_write_file(mtli_writer *w, uint32_t kind, uint64_t total, mtli_file_body body,
                            const void *arg)
{
    mtli_w_bytes(w, MTLI_FILE_MAGIC, MTLI_FILE_MAGIC_BYTES);
    mtli_w_u32(w, MTLI_FORMAT_VERSION);
    mtli_w_u32(w, kind);
    mtli_w_u64(w, total);
    body(w, arg);
    mtli_writer_finish(w);
}

/* Total bytes of the file `body` describes. */
static uint64_t mtli_file_measure(uint32_t kind, mtli_file_body body, const void *arg)
{
    mtli_writer counter;
    mtli_writer_measure(&counter);
    mtli_write_file(&counter, kind, 0, body, arg);
    return counter.pos;
}

mtl_status mtli_file_save_buffer(uint32_t kind, mtli_file_body body, const void *arg, void *buf,
                                 size_t cap, size_t *size)
{
    uint64_t total = mtli_file_measure(kind, body, arg);
    if (total > MTLI_MAX_FILE_BYTES || total > SIZE_MAX)
        return mtli_fail(MTL_ERR_UNSUPPORTED, "the file would be %llu bytes, more than the %llu-byte limit",
                         (unsigned long long)total, (unsigned long long)MTLI_MAX_FILE_BYTES);
    *size = (size_t)total;
    if (!buf) return MTL_OK;
    if (cap < total)
        return mtli_fail(MTL_ERR_SHAPE, "buffer of %zu bytes is too small: the file needs %llu bytes", cap,
                         (unsigned long long)total);
    mtli_writer w;
    mtli_writer_memory(&w, buf, cap);
    mtli_write_file(&w, kind, total, body, arg);
    if (w.status == MTL_OK && w.pos != total)
        return mtli_fail(MTL_ERR_INTERNAL, "wrote %llu bytes, measured %llu", (unsigned long long)w.pos,
                         (unsigned long long)total);
    return w.status;
}

mtl_status mtli_file_write_fd(const mtli_settings *s, int fd, uint32_t kind, mtli_file_body body,
                              const void *arg, int *err_no)
{
    *err_no = 0;
    uint64_t total = mtli_file_measure(kind, body, arg);
    if (total > MTLI_MAX_FILE_BYTES)
        return mtli_fail(MTL_ERR_UNSUPPORTED, "the file would be %llu bytes, more than the %llu-byte limit",
                         (unsigned long long)total, (unsigned long long)MTLI_MAX_FILE_BYTES);
    mtli_writer w;
    MTLI_TRY(mtli_writer_fd(&w, s, fd));
    mtli_write_file(&w, kind, total, body, arg);
    mtli_writer_close(&w);
    *err_no = w.err_no;
    if (w.status == MTL_OK && w.pos != total)
        return mtli_fail(MTL_ERR_INTERNAL, "wrote %llu bytes, measured %llu", (unsigned long long)w.pos,
                         (unsigned long long)total);
    return w.status;
}

/* ---- reading --------------------------------------------------------------- */

mtl_status mtli_file_parse(mtli_file *f, const void *data, size_t size)
{
    memset(f, 0, sizeof *f);
    f->data = data;
    f->size = size;
    const uint8_t *p = data;
    size_t magic_have = size < MTLI_FILE_MAGIC_BYTES ? size : MTLI_FILE_MAGIC_BYTES;
    if (memcmp(p, MTLI_FILE_MAGIC, magic_have) != 0)
        return mtli_fail(MTL_ERR_FORMAT, "byte 0: not a libmtl file (bad magic number)");
    /* The version is checked before the size: a short file of a future
     * major version is still a version problem. */
    if (size < 12)
        return mtli_fail(MTL_ERR_FORMAT, "byte %zu: file is truncated (%zu bytes; the header alone is %d)", size,
                         size, MTLI_HEADER_BYTES);
    uint32_t version = mtli_get_u32(p + 8);
    f->major = version >> 16;
    f->minor = version & 0xFFFFu;
    if (f->major != MTLI_FORMAT_MAJOR)
        return mtli_fail(MTL_ERR_VERSION, "byte 8: file format version %u.%u; this library reads %u.x (up to %u.%u)",
                         f->major, f->minor, MTLI_FORMAT_MAJOR, MTLI_FORMAT_MAJOR, MTLI_FORMAT_MINOR);
    f->newer_minor = f->minor > MTLI_FORMAT_MINOR;
    if (size < MTLI_HEADER_BYTES + MTLI_TRAILER_BYTES)
        return mtli_fail(MTL_ERR_FORMAT, "byte %zu: file is truncated (%zu bytes; at least %d expected)", size,
                         size, MTLI_HEADER_BYTES + MTLI_TRAILER_BYTES);
    uint64_t declared = mtli_get_u64(p + 16);
    if (declared != size)
        return mtli_fail(MTL_ERR_FORMAT, "byte 16: header says the file is %llu bytes, but it is %zu (%s)",
                         (unsigned long long)declared, size, declared > size ? "truncated" : "extra bytes or corrupt");
    size_t body_end = size - MTLI_TRAILER_BYTES;
    uint32_t stored = mtli_get_u32(p + body_end);
    uint32_t computed = mtli_crc32c(0, p, body_end);
    if (stored != computed)
        return mtli_fail(MTL_ERR_FORMAT, "byte %zu: checksum mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt",
                         body_end, stored, computed);
    f->kind = mtli_get_u32(p + 12);
    if (f->kind != MTLI_FILE_MODEL && f->kind != MTLI_FILE_CHECKPOINT)
        return mtli_fail(f->newer_minor ? MTL_ERR_VERSION : MTL_ERR_FORMAT,
                         "byte 12: unknown file kind %u (1 = model, 2 = checkpoint)", f->kind);

    size_t pos = MTLI_HEADER_BYTES;
    while (pos < body_end) {
        if (body_end - pos < MTLI_SECTION_HEADER_BYTES)
            return mtli_fail(MTL_ERR_FORMAT, "byte %zu: %zu stray bytes where a section header (%d bytes) should start",
                             pos, body_end - pos, MTLI_SECTION_HEADER_BYTES);
        uint32_t id = mtli_get_u32(p + pos);
        uint64_t len = mtli_get_u64(p + pos + 4);
        size_t begin = pos + MTLI_SECTION_HEADER_BYTES;
        if (len > body_end - begin)
            return mtli_fail(MTL_ERR_FORMAT, "byte %zu: %s (id %u) claims %llu bytes, only %zu remain", pos,
                             mtli_section_name(id), (unsigned)id, (unsigned long long)len, body_end - begin);
        if (id < MTLI_SEC_LIMIT) {
            if (f->sec[id].present)
                return mtli_fail(MTL_ERR_FORMAT, "byte %zu: %s (id %u) appears twice", pos, mtli_section_name(id),
                                 (unsigned)id);
            f->sec[id].present = true;
            f->sec[id].begin = begin;
            f->sec[id].end = begin + (size_t)len;
        }
        /* Unknown ids (a newer minor version's additions) are skipped. */
        pos = begin + (size_t)len;
    }
    return MTL_OK;
}

bool mtli_file_section_reader(const mtli_file *f, uint32_t id, mtli_reader *r)
{
    if (id >= MTLI_SEC_LIMIT || !f->sec[id].present) return false;
    mtli_reader_init(r, f->data, f->sec[id].begin, f->sec[id].end, mtli_section_name(id));
    return true;
}

mtl_status mtli_file_section_done(const mtli_file *f, const mtli_reader *r)
{
    return mtli_r_done(r, f->newer_minor);
}
