/* io_writer.c -- append little-endian fields to a counter, a buffer or a
 * file descriptor, keeping the CRC-32C of the bytes written. */
#include "io_buf.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"

#define MTLI_CHUNK_BYTES ((size_t)1 << 16)

void mtli_writer_measure(mtli_writer *w)
{
    memset(w, 0, sizeof *w);
    w->sink = MTLI_SINK_MEASURE;
    w->fd = -1;
}

void mtli_writer_memory(mtli_writer *w, void *buf, size_t cap)
{
    mtli_writer_measure(w);
    w->sink = MTLI_SINK_MEMORY;
    w->mem = buf;
    w->cap = cap;
}

mtl_status mtli_writer_fd(mtli_writer *w, const mtli_settings *s, int fd)
{
    mtli_writer_measure(w);
    w->sink = MTLI_SINK_FD;
    w->fd = fd;
    w->settings = s;
    w->chunk_cap = MTLI_CHUNK_BYTES;
    w->chunk = mtli_alloc(s, w->chunk_cap);
    if (!w->chunk)
        return w->status = mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate a %zu-byte write buffer",
                                     w->chunk_cap);
    return MTL_OK;
}

void mtli_writer_close(mtli_writer *w)
{
    if (w->sink == MTLI_SINK_FD && w->chunk) mtli_free(w->settings, w->chunk);
    w->chunk = NULL;
}

/* Write the staged chunk to the descriptor (retrying short writes). */
static void mtli_w_flush(mtli_writer *w)
{
    if (w->status != MTL_OK || w->chunk_len == 0) return;
    w->crc = mtli_crc32c(w->crc, w->chunk, w->chunk_len);
    const uint8_t *p = w->chunk;
    size_t left = w->chunk_len;
    while (left > 0) {
        ssize_t k = write(w->fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            w->err_no = k < 0 ? errno : ENOSPC;
            w->status = MTL_ERR_IO; /* the caller adds path and strerror */
            return;
        }
        p += k;
        left -= (size_t)k;
    }
    w->chunk_len = 0;
}

/* Room for `n` contiguous bytes, or NULL (nothing to copy: measuring, or a
 * failure recorded).  For FD sinks n must be <= the chunk size. */
static uint8_t *mtli_w_reserve(mtli_writer *w, size_t n)
{
    if (w->status != MTL_OK) return NULL;
    uint8_t *dst = NULL;
    switch (w->sink) {
    case MTLI_SINK_MEASURE:
        break;
    case MTLI_SINK_MEMORY:
        /* The caller measured first, so running out of room is our bug. */
        if (w->pos > w->cap || n > w->cap - w->pos) {
            w->status = mtli_fail(MTL_ERR_INTERNAL, "writer overflow at byte %llu (+%zu, capacity %zu)",
                                  (unsigned long long)w->pos, n, w->cap);
            return NULL;
        }
        dst = w->mem + w->pos;
        break;
    case MTLI_SINK_FD:
        if (w->chunk_cap - w->chunk_len < n) mtli_w_flush(w);
        if (w->status != MTL_OK) return NULL;
        dst = w->chunk + w->chunk_len;
        w->chunk_len += n;
        break;
    }
    w->pos += n;
    return dst;
}

void mtli_w_bytes(mtli_writer *w, const void *p, size_t n)
{
    const uint8_t *src = p;
    while (n > 0 && w->status == MTL_OK) {
        size_t piece = w->sink == MTLI_SINK_FD && n > w->chunk_cap ? w->chunk_cap : n;
        uint8_t *dst = mtli_w_reserve(w, piece);
        if (dst) memcpy(dst, src, piece);
        src += piece;
        n -= piece;
    }
}

void mtli_w_u8(mtli_writer *w, uint8_t v)
{
    uint8_t *d = mtli_w_reserve(w, 1);
    if (d) mtli_put_u8(d, v);
}

void mtli_w_u32(mtli_writer *w, uint32_t v)
{
    uint8_t *d = mtli_w_reserve(w, 4);
    if (d) mtli_put_u32(d, v);
}

void mtli_w_u64(mtli_writer *w, uint64_t v)
{
    uint8_t *d = mtli_w_reserve(w, 8);
    if (d) mtli_put_u64(d, v);
}

void mtli_w_i64(mtli_writer *w, int64_t v)
{
    uint8_t *d = mtli_w_reserve(w, 8);
    if (d) mtli_put_i64(d, v);
}

void mtli_w_f32(mtli_writer *w, float v)
{
    uint8_t *d = mtli_w_reserve(w, 4);
    if (d) mtli_put_f32(d, v);
}

void mtli_w_f64(mtli_writer *w, double v)
{
    uint8_t *d = mtli_w_reserve(w, 8);
    if (d) mtli_put_f64(d, v);
}

/* Arrays go in pieces that fit the chunk, converted straight into it. */
static void mtli_w_array(mtli_writer *w, const void *v, size_t n, size_t width)
{
    const uint8_t *src = v;
    size_t per_piece = w->sink == MTLI_SINK_FD ? w->chunk_cap / width : n;
    if (per_piece == 0) per_piece = 1;
    while (n > 0 && w->status == MTL_OK) {
        size_t k = n < per_piece ? n : per_piece;
        uint8_t *dst = mtli_w_reserve(w, k * width);
        if (dst) mtli_le_convert(dst, src, k, width, mtli_host_order());
        src += k * width;
        n -= k;
    }
}

void mtli_w_f32s(mtli_writer *w, const float *v, size_t n)
{
    mtli_w_array(w, v, n, sizeof(float));
}

void mtli_w_f64s(mtli_writer *w, const double *v, size_t n)
{
    mtli_w_array(w, v, n, sizeof(double));
}

void mtli_w_str(mtli_writer *w, const char *s)
{
    if (!s) {
        mtli_w_u32(w, MTLI_STRING_ABSENT);
        return;
    }
    size_t n = strlen(s);
    /* Setters cap strings at MTLI_MAX_STRING_BYTES, far below 2^32. */
    mtli_w_u32(w, (uint32_t)n);
    mtli_w_bytes(w, s, n);
}

void mtli_w_section(mtli_writer *w, uint32_t id, mtli_section_body body, const void *arg)
{
    mtli_writer counter;
    mtli_writer_measure(&counter);
    body(&counter, arg);
    mtli_w_u32(w, id);
    mtli_w_u64(w, counter.pos);
    uint64_t start = w->pos;
    body(w, arg);
    if (w->status == MTL_OK && w->pos - start != counter.pos)
        w->status = mtli_fail(MTL_ERR_INTERNAL, "section %u wrote %llu bytes, measured %llu", (unsigned)id,
                              (unsigned long long)(w->pos - start), (unsigned long long)counter.pos);
}

mtl_status mtli_writer_finish(mtli_writer *w)
{
    if (w->status != MTL_OK) return w->status;
    uint8_t crc_bytes[4];
    switch (w->sink) {
    case MTLI_SINK_MEASURE:
        w->pos += 4;
        break;
    case MTLI_SINK_MEMORY:
        mtli_put_u32(crc_bytes, mtli_crc32c(0, w->mem, (size_t)w->pos));
        mtli_w_bytes(w, crc_bytes, 4);
        break;
    case MTLI_SINK_FD:
        mtli_w_flush(w);
        mtli_put_u32(crc_bytes, w->crc);
        mtli_w_bytes(w, crc_bytes, 4);
        mtli_w_flush(w);
        break;
    }
    return w->status;
}
