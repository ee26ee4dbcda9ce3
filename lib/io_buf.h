/*
 * io_buf.h -- the byte-level writer and reader under libmtl's file format.
 *
 * The writer appends little-endian fields to one of three sinks: a counter
 * (to measure a file before writing it), a caller's fixed buffer, or a file
 * descriptor (through a small chunk buffer).  It keeps the CRC-32C of what
 * it wrote.  Errors are sticky: calls after a failure do nothing, and the
 * caller checks mtli_writer.status once at the end.
 *
 * The reader walks a byte range of an in-memory file and never reads
 * outside it.  Every failure is MTL_ERR_FORMAT with the absolute byte
 * offset and the field being read in the message.
 */
#ifndef MTL_IO_BUF_H
#define MTL_IO_BUF_H

#include "mtl_internal.h"

/* Longest string a file may hold (metadata values, descriptions, ...). */
#define MTLI_MAX_STRING_BYTES ((size_t)64 * 1024)
/* A string field whose length is this value is absent (NULL). */
#define MTLI_STRING_ABSENT 0xFFFFFFFFu

/* ---- writer --------------------------------------------------------------- */

typedef enum mtli_sink { MTLI_SINK_MEASURE, MTLI_SINK_MEMORY, MTLI_SINK_FD } mtli_sink;

typedef struct mtli_writer {
    mtli_sink sink;
    uint64_t pos;       /* bytes written so far: the offset of the next byte */
    mtl_status status;  /* first failure (sticky), MTL_OK while all is well */
    /* MEMORY */
    uint8_t *mem;
    size_t cap;
    /* FD: bytes are staged in `chunk` and written when it fills */
    int fd;
    uint8_t *chunk;
    size_t chunk_len, chunk_cap;
    uint32_t crc;       /* FD: CRC-32C of the bytes already flushed */
    int err_no;         /* FD: errno of a failed write */
    const mtli_settings *settings;
} mtli_writer;

void mtli_writer_measure(mtli_writer *w);
void mtli_writer_memory(mtli_writer *w, void *buf, size_t cap);
/* Allocates the chunk buffer; release it with mtli_writer_close. */
mtl_status mtli_writer_fd(mtli_writer *w, const mtli_settings *s, int fd);
void mtli_writer_close(mtli_writer *w);

void mtli_w_bytes(mtli_writer *w, const void *p, size_t n);
void mtli_w_u8(mtli_writer *w, uint8_t v);
void mtli_w_u32(mtli_writer *w, uint32_t v);
void mtli_w_u64(mtli_writer *w, uint64_t v);
void mtli_w_i64(mtli_writer *w, int64_t v);
void mtli_w_f32(mtli_writer *w, float v);
void mtli_w_f64(mtli_writer *w, double v);
void mtli_w_f32s(mtli_writer *w, const float *v, size_t n);
void mtli_w_f64s(mtli_writer *w, const double *v, size_t n);
/* u32 byte length (MTLI_STRING_ABSENT for NULL), then the bytes, no NUL. */
void mtli_w_str(mtli_writer *w, const char *s);

/* Write a section: u32 id, u64 length, then what `body` writes.  The body
 * runs twice, first on a counter to learn the length, so it must write the
 * same bytes each time (it only reads its argument). */
typedef void (*mtli_section_body)(mtli_writer *w, const void *arg);
void mtli_w_section(mtli_writer *w, uint32_t id, mtli_section_body body, const void *arg);

/* Stage the CRC-32C of everything written so far as the last 4 bytes and
 * flush an FD writer.  Returns w->status. */
mtl_status mtli_writer_finish(mtli_writer *w);

/* ---- reader --------------------------------------------------------------- */

typedef struct mtli_reader {
    const uint8_t *base; /* the whole file */
    size_t pos, end;     /* absolute offsets into base; reads stay in [pos, end) */
    const char *where;   /* what is being read ("section ARCH"), for messages */
} mtli_reader;

/* A reader over [begin, end) of `base`. */
void mtli_reader_init(mtli_reader *r, const void *base, size_t begin, size_t end, const char *where);
static inline size_t mtli_r_left(const mtli_reader *r) { return r->end - r->pos; }

/* MTL_ERR_FORMAT "byte <pos> (<where>): <message>". */
mtl_status mtli_r_fail(const mtli_reader *r, const char *fmt, ...) MTLI_PRINTF(2, 3);

mtl_status mtli_r_u8(mtli_reader *r, const char *field, uint8_t *v);
mtl_status mtli_r_u32(mtli_reader *r, const char *field, uint32_t *v);
mtl_status mtli_r_u64(mtli_reader *r, const char *field, uint64_t *v);
mtl_status mtli_r_i64(mtli_reader *r, const char *field, int64_t *v);
mtl_status mtli_r_f32(mtli_reader *r, const char *field, float *v);
mtl_status mtli_r_f64(mtli_reader *r, const char *field, double *v);
/* A 0/1 byte as a bool (anything else is a format error). */
mtl_status mtli_r_bool(mtli_reader *r, const char *field, bool *v);
/* `n` values into dst (checked against the bytes left before copying). */
mtl_status mtli_r_f32s(mtli_reader *r, const char *field, float *dst, size_t n);
mtl_status mtli_r_f64s(mtli_reader *r, const char *field, double *dst, size_t n);
/* A count that must be <= max and leave room for `min_bytes_each` bytes
 * per item in what is left, so no loop or allocation sized by it can run
 * away on a hostile file. */
mtl_status mtli_r_count(mtli_reader *r, const char *field, uint64_t max, size_t min_bytes_each,
                        uint64_t *n);
/* A string of at most `max_bytes` valid UTF-8 bytes without NUL, copied into
 * a new allocation (*out = NULL for an absent string when allow_absent). */
mtl_status mtli_r_str(mtli_reader *r, const char *field, const mtli_settings *s, size_t max_bytes,
                      bool allow_absent, char **out);
/* Fail unless everything in the reader's range was consumed
 * (`allow_trailing`: a newer minor version may append fields). */
mtl_status mtli_r_done(const mtli_reader *r, bool allow_trailing);

/* ---- text ----------------------------------------------------------------- */

/* True if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF) without NUL bytes. */
bool mtli_utf8_valid(const char *s, size_t n);

#endif /* MTL_IO_BUF_H */
