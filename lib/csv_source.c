/* csv_source.c -- the bytes of a CSV: a memory buffer or a file, gzip
 * decompressed on the fly when they start with the gzip magic (1f 8b).
 *
 * zlib's inflate is used directly rather than gzopen/gzread so that every
 * allocation goes through the handle's allocator hook (gzopen mallocs) and
 * a buffer and a file take the same path.  Files are read with open/read
 * for the same reason (fopen mallocs).  Concatenated gzip members are read
 * one after the other, as gzip -d does.
 */
#include "csv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RAW_CHUNK ((size_t)1 << 16)  /* bytes per read() */
#define OUT_CHUNK ((size_t)1 << 18)  /* decompressed bytes per chunk */
#define MEM_CHUNK ((size_t)1 << 30)  /* z_stream counts are 32-bit */

/* zlib's allocations through the handle's allocator. */
static voidpf zalloc_hook(voidpf opaque, uInt items, uInt size)
{
    return mtli_calloc((const mtli_settings *)opaque, items, size);
}

static void zfree_hook(voidpf opaque, voidpf address)
{
    mtli_free((const mtli_settings *)opaque, address);
}

/* Read until `cap` bytes or the end of the file, so that only the last
 * chunk is short (and the gzip magic is never split by a short read). */
static mtl_status read_full(mtli_csv_source *src, size_t *got)
{
    size_t n = 0;
    while (n < RAW_CHUNK) {
        ssize_t r = read(src->fd, src->raw + n, RAW_CHUNK - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            char reason[128];
            return mtli_fail(MTL_ERR_IO, "cannot read: %s",
                             strerror_r(errno, reason, sizeof reason));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *got = n;
    return MTL_OK;
}

/* The next raw (possibly compressed) bytes; len 0 once everything is out. */
static mtl_status raw_next(mtli_csv_source *src, const unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (src->pending_len > 0) { /* the chunk open() sniffed */
        *data = src->pending;
        *len = src->pending_len;
        src->pending_len = 0;
        return MTL_OK;
    }
    if (src->raw_eof) return MTL_OK;
    if (src->fd >= 0) {
        size_t got = 0;
        MTLI_TRY(read_full(src, &got));
        if (got < RAW_CHUNK) src->raw_eof = true;
        *data = src->raw;
        *len = got;
        return MTL_OK;
    }
    size_t left = src->mem_size - src->mem_pos;
    size_t n = left < MEM_CHUNK ? left : MEM_CHUNK;
    *data = src->mem + src->mem_pos;
    *len = n;
    src->mem_pos += n;
    if (src->mem_pos == src->mem_size) src->raw_eof = true;
    return MTL_OK;
}

/* Take the first raw chunk, sniff the gzip magic, set up inflate. */
static mtl_status start(mtli_csv_source *src)
{
    const unsigned char *first;
    size_t n;
    MTLI_TRY(raw_next(src, &first, &n));
    src->pending = first;
    src->pending_len = n;
    src->gzip = n >= 2 && first[0] == 0x1f && first[1] == 0x8b;
    if (!src->gzip) return MTL_OK;

    src->out = mtli_alloc(src->settings, OUT_CHUNK);
    if (!src->out)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for gzip decompression",
                         OUT_CHUNK);
    memset(&src->zs, 0, sizeof src->zs);
    src->zs.zalloc = zalloc_hook;
    src->zs.zfree = zfree_hook;
    src->zs.opaque = (voidpf)src->settings;
    int rc = inflateInit2(&src->zs, 16 + MAX_WBITS); /* 16: gzip wrapper only */
    if (rc != Z_OK)
        return mtli_fail(rc == Z_MEM_ERROR ? MTL_ERR_OUT_OF_MEMORY : MTL_ERR_INTERNAL,
                         "cannot start gzip decompression (zlib %s)", zError(rc));
    src->zs_live = true;
    return MTL_OK;
}

static void source_init(mtli_csv_source *src, const mtli_settings *s)
{
    memset(src, 0, sizeof *src);
    src->settings = s;
    src->fd = -1;
}

mtl_status mtli_csv_source_open_file(mtli_csv_source *src, const mtli_settings *s, const char *path)
{
    source_init(src, s);
    src->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0) {
        char reason[128];
        return mtli_fail(MTL_ERR_IO, "cannot open: %s", strerror_r(errno, reason, sizeof reason));
    }
    src->raw = mtli_alloc(s, RAW_CHUNK);
    mtl_status st = src->raw ? start(src)
                             : mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to read it",
                                         RAW_CHUNK);
    if (st != MTL_OK) mtli_csv_source_close(src);
    return st;
}

mtl_status mtli_csv_source_open_buffer(mtli_csv_source *src, const mtli_settings *s, const void *data,
                                       size_t size)
{
    source_init(src, s);
    src->mem = data;
    src->mem_size = size;
    src->raw_eof = size == 0;
    mtl_status st = start(src);
    if (st != MTL_OK) mtli_csv_source_close(src);
    return st;
}

/* The next decompressed chunk. */
static mtl_status inflate_next(mtli_csv_source *src, const unsigned char **data, size_t *len)
{
    for (;;) {
        if (src->zs.avail_in == 0) {
            const unsigned char *in;
            size_t n;
            MTLI_TRY(raw_next(src, &in, &n));
            src->zs.next_in = (Bytef *)in; /* zlib does not write through it */
            src->zs.avail_in = (uInt)n;
        }
        if (src->member_done) {
            if (src->zs.avail_in == 0) { /* the last member ended with the data */
                *len = 0;
                return MTL_OK;
            }
            inflateReset(&src->zs); /* another member follows */
            src->member_done = false;
        }
        src->zs.next_out = src->out;
        src->zs.avail_out = (uInt)OUT_CHUNK;
        int rc = inflate(&src->zs, Z_NO_FLUSH);
        size_t produced = OUT_CHUNK - src->zs.avail_out;
        if (rc == Z_STREAM_END) {
            src->member_done = true;
        } else if (rc == Z_MEM_ERROR) {
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "out of memory in gzip decompression");
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
            return mtli_fail(MTL_ERR_FORMAT, "corrupt gzip data (%s)",
                             src->zs.msg ? src->zs.msg : zError(rc));
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return mtli_fail(MTL_ERR_INTERNAL, "gzip decompression failed (zlib %s)", zError(rc));
        } else if (produced == 0 && src->zs.avail_in == 0 && src->raw_eof) {
            return mtli_fail(MTL_ERR_FORMAT, "truncated gzip data (the stream ends early)");
        }
        if (produced > 0) {
            *data = src->out;
            *len = produced;
            return MTL_OK;
        }
    }
}

mtl_status mtli_csv_source_read(mtli_csv_source *src, const unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (src->gzip) return inflate_next(src, data, len);
    return raw_next(src, data, len);
}

void mtli_csv_source_close(mtli_csv_source *src)
{
    if (src->zs_live) inflateEnd(&src->zs);
    if (src->fd >= 0) close(src->fd);
    mtli_free(src->settings, src->out);
    mtli_free(src->settings, src->raw);
    source_init(src, src->settings);
}
