/*
 * csv.h -- the CSV reader behind mtl_dataset_load_csv (internal).
 *
 * Three layers, one file each:
 *   csv_source.c  bytes: a memory buffer or a file, gzip decompressed if it
 *                 starts with the gzip magic (zlib inflate, our allocator);
 *   csv_number.c  one cell -> float, strict and locale independent;
 *   csv.c         RFC 4180 records -> the requested columns, as row-major
 *                 float arrays allocated with the caller's settings.
 * csv_load.c turns the arrays into an owning mtl_dataset.
 * The accepted format is documented in docs/csv-and-data.md.
 */
#ifndef MTL_CSV_H
#define MTL_CSV_H

#include "mtl_internal.h"

#include <locale.h>
#include <zlib.h>

/* ---- limits against hostile or broken input ------------------------------ */

#define MTLI_CSV_MAX_FIELD_BYTES ((size_t)1 << 20) /* 1 MiB per field, quotes excluded */
#define MTLI_CSV_MAX_COLUMNS ((int64_t)1 << 20)    /* fields per record */
#define MTLI_CSV_MAX_ROWS ((int64_t)INT32_MAX)     /* data rows kept */

typedef struct mtli_csv_limits {
    size_t max_field_bytes;
    int64_t max_columns;
    int64_t max_rows;
} mtli_csv_limits;

/* The documented defaults above (unit tests lower them). */
void mtli_csv_limits_default(mtli_csv_limits *limits);

/* ---- byte source (csv_source.c) ------------------------------------------ */

typedef struct mtli_csv_source {
    const mtli_settings *settings;
    /* raw bytes: a file descriptor (>= 0) or a memory buffer */
    int fd;
    const unsigned char *mem;
    size_t mem_size, mem_pos;
    unsigned char *raw; /* file read buffer */
    bool raw_eof;       /* every raw byte has been handed out */
    /* gzip: decompressed on the fly */
    bool gzip;
    bool zs_live;     /* inflateInit2 succeeded */
    bool member_done; /* a gzip member ended; another may follow */
    z_stream zs;
    unsigned char *out; /* decompressed chunk */
    /* the first raw chunk, read by open to sniff the gzip magic */
    const unsigned char *pending;
    size_t pending_len;
} mtli_csv_source;

/* Open `path` (MTL_ERR_IO with the OS reason on failure).  Messages of the
 * source functions do not name the input: callers prefix them. */
mtl_status mtli_csv_source_open_file(mtli_csv_source *src, const mtli_settings *s, const char *path);
/* Read from memory (not copied; must outlive the source). */
mtl_status mtli_csv_source_open_buffer(mtli_csv_source *src, const mtli_settings *s, const void *data,
                                       size_t size);
/* The next chunk of (decompressed) bytes, valid until the next call;
 * *len == 0 at the end.  Corrupt or truncated gzip: MTL_ERR_FORMAT. */
mtl_status mtli_csv_source_read(mtli_csv_source *src, const unsigned char **data, size_t *len);
/* Release everything; safe on a zeroed or failed-to-open source. */
void mtli_csv_source_close(mtli_csv_source *src);

/* ---- one cell (csv_number.c) --------------------------------------------- */

typedef enum mtli_csv_cell {
    MTLI_CSV_CELL_NUMBER = 0,    /* *out is a finite float */
    MTLI_CSV_CELL_MISSING = 1,   /* empty, blanks only, or NaN in any case */
    MTLI_CSV_CELL_NOT_NUMBER = 2,/* anything outside the grammar */
    MTLI_CSV_CELL_NON_FINITE = 3 /* inf/infinity, or beyond the float range */
} mtli_csv_cell;

/* Parse the `n` bytes of `text`; text[n] must be '\0' (other bytes may be
 * anything).  Grammar, after trimming spaces and tabs on both sides:
 *   [+-]? ( digits [ '.' digits* ] | '.' digits ) [ [eE] [+-]? digits ]
 * The result is the float nearest to the decimal value (round half to
 * even), the same whatever the process locale: short inputs take an exact
 * float fast path, others strtof_l with `c_locale` (a "C" LC_NUMERIC
 * locale from newlocale).  Underflow gives 0 or a subnormal; *out is
 * written only for MTLI_CSV_CELL_NUMBER. */
mtli_csv_cell mtli_csv_parse_number(const char *text, size_t n, locale_t c_locale, float *out);

/* ---- records -> arrays (csv.c) ------------------------------------------- */

/* What to read: columns by header name, in the caller's order. */
typedef struct mtli_csv_spec {
    const char *const *input_names;
    int64_t n_inputs; /* >= 1 */
    const char *const *target_names;
    int64_t n_targets; /* >= 0; target_names may be NULL when 0 */
    unsigned flags;    /* MTL_CSV_* */
    mtli_csv_limits limits;
} mtli_csv_spec;

/* The parsed table.  x and y are allocated with the settings passed to the
 * parser (mtli_alloc, MTLI_ALIGN-aligned) and owned by the caller. */
typedef struct mtli_csv_table {
    int64_t n_rows, n_inputs, n_targets;
    float *x;          /* n_rows x n_inputs, ld = n_inputs */
    float *y;          /* n_rows x n_targets, ld = n_targets, NaN = missing; NULL if no targets */
    int64_t n_dropped; /* rows dropped by MTL_CSV_DROP_INCOMPLETE */
} mtli_csv_table;

/* Parse a CSV from a file or a buffer.  On failure *out is untouched and
 * nothing is left allocated; messages start with `what` ("CSV file 'x'"). */
mtl_status mtli_csv_parse_file(const mtli_settings *s, const char *path, const mtli_csv_spec *spec,
                               mtli_csv_table *out);
mtl_status mtli_csv_parse_buffer(const mtli_settings *s, const void *data, size_t size,
                                 const mtli_csv_spec *spec, mtli_csv_table *out);
void mtli_csv_table_free(const mtli_settings *s, mtli_csv_table *t);

#endif /* MTL_CSV_H */
