/*
 * file_format.h -- the framing of libmtl model and checkpoint files
 * (docs/file-format.md describes every byte).
 *
 *   header   24 bytes: magic, format version, file kind, file size
 *   sections (u32 id, u64 length, content) ... in any order
 *   trailer  4 bytes: CRC-32C of every byte before it
 *
 * A reader skips sections it does not know, so a newer MINOR version may
 * add sections (or append fields to a section); anything else bumps MAJOR.
 */
#ifndef MTL_FILE_FORMAT_H
#define MTL_FILE_FORMAT_H

#include "io_buf.h"

#define MTLI_FILE_MAGIC "\x89MTL\r\n\x1a\n" /* 8 bytes; the NUL is not part of it */
#define MTLI_FILE_MAGIC_BYTES 8
#define MTLI_FORMAT_MAJOR 1u
#define MTLI_FORMAT_MINOR 0u
#define MTLI_FORMAT_VERSION (MTLI_FORMAT_MAJOR << 16 | MTLI_FORMAT_MINOR)
#define MTLI_HEADER_BYTES 24
#define MTLI_SECTION_HEADER_BYTES 12
#define MTLI_TRAILER_BYTES 4
/* Files are read whole into memory; larger ones are refused up front. */
#define MTLI_MAX_FILE_BYTES ((uint64_t)1 << 36)

typedef enum mtli_file_kind {
    MTLI_FILE_MODEL = 1,     /* inference model */
    MTLI_FILE_CHECKPOINT = 2 /* model + training state */
} mtli_file_kind;

/* Section ids: stable, never reused.  1..15 model, 16..31 training. */
typedef enum mtli_section_id {
    MTLI_SEC_ARCH = 1,            /* inputs, trunk, tasks and heads */
    MTLI_SEC_PARAMS = 2,          /* the parameters, canonical order */
    MTLI_SEC_SCALERS = 3,         /* input/target scalers, domain */
    MTLI_SEC_FEATURES = 4,        /* input feature names */
    MTLI_SEC_METADATA = 5,        /* host key/value pairs */
    MTLI_SEC_TRAINER_OPTIONS = 16, /* trainer options, seed, max batch */
    MTLI_SEC_OPTIMIZER = 17,      /* optimiser moments and step count */
    MTLI_SEC_PROGRESS = 18,       /* counters, learning-rate schedule state */
    MTLI_SEC_EARLY_STOP = 19,     /* best epoch/loss, best parameters */
    MTLI_SEC_WEIGHTING = 20,      /* loss-weighting method state (reserved) */
    MTLI_SEC_LIMIT = 32           /* known ids are below this */
} mtli_section_id;

typedef struct mtli_file_section {
    bool present;
    size_t begin, end; /* content bytes [begin, end) */
} mtli_file_section;

/* A parsed, verified file held in memory (not owned). */
typedef struct mtli_file {
    const uint8_t *data;
    size_t size;
    uint32_t kind;
    uint32_t major, minor;
    bool newer_minor; /* written by a later minor: known sections may carry extra fields */
    mtli_file_section sec[MTLI_SEC_LIMIT];
} mtli_file;

/* Check magic, version (MTL_ERR_VERSION for another major), size and
 * checksum, then index the sections.  Nothing else is trusted yet. */
mtl_status mtli_file_parse(mtli_file *f, const void *data, size_t size);
/* A reader over section `id` (false if the file has none). */
bool mtli_file_section_reader(const mtli_file *f, uint32_t id, mtli_reader *r);
/* Short name of a section id, for messages ("ARCH", "section 77"). */
const char *mtli_section_name(uint32_t id);
/* After reading a known section: fail on leftover bytes, unless the file
 * comes from a newer minor version (which may append fields). */
mtl_status mtli_file_section_done(const mtli_file *f, const mtli_reader *r);

/* Writes every section of a file. */
typedef void (*mtli_file_body)(mtli_writer *w, const void *arg);

/* Serialise into a caller buffer (see mtl_model_save_buffer for the
 * contract on buf == NULL and a too small cap). */
mtl_status mtli_file_save_buffer(uint32_t kind, mtli_file_body body, const void *arg, void *buf,
                                 size_t cap, size_t *size);
/* Atomic save: temporary file in the target's directory, fsync, rename,
 * fsync of the directory.  On failure the temporary file is removed and an
 * existing file at `path` is untouched. */
mtl_status mtli_file_save_path(const mtli_settings *s, const char *path, uint32_t kind,
                               mtli_file_body body, const void *arg);
/* Write a whole file to `fd` (used by mtli_file_save_path); on
 * MTL_ERR_IO *err_no is the errno of the failed write. */
mtl_status mtli_file_write_fd(const mtli_settings *s, int fd, uint32_t kind, mtli_file_body body,
                              const void *arg, int *err_no);
/* Read a whole regular file into a new allocation (MTL_ERR_IO with path
 * and strerror on failure). */
mtl_status mtli_file_read_path(const mtli_settings *s, const char *path, uint8_t **data, size_t *size);

#endif /* MTL_FILE_FORMAT_H */
