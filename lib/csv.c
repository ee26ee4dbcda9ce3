/* csv.c -- RFC 4180 records to the requested columns.
 *
 * A byte-level state machine fed chunk by chunk (the source may be a
 * decompressing stream), so the file is never held in memory: only the
 * current field and the growing output arrays are.  The first record is
 * the header; requested names are looked up in it once, giving each header
 * column a destination (an input or target index, or -1 = not read).  Then
 * each data field goes straight to its row of x or y.
 *
 * Lines: LF, CRLF and lone CR all end a record; blank lines are skipped.
 * Line numbers in messages count physical lines (1 = the header), also
 * inside quoted fields that span lines.
 */
#include "csv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum lex_state {
    ST_FIELD_START,     /* before the first byte of a field */
    ST_UNQUOTED,        /* inside a field that did not start with a quote */
    ST_QUOTED,          /* inside "..." */
    ST_QUOTE_IN_QUOTED  /* just saw a quote inside "...": end, or the first of "" */
};

/* A requested column (sorted by name for bsearch). */
typedef struct csv_request {
    const char *name;
    int64_t dest;   /* 0..n_inputs-1: input; n_inputs..: target n_inputs + t */
    int64_t column; /* 0-based header column; -1 until found */
    int64_t near;   /* a header column equal to the name but for blanks around it, or -1 */
} csv_request;

typedef struct csv_parser {
    const mtli_settings *s;
    const mtli_csv_spec *spec;
    char what[320]; /* "CSV file 'x'" or "CSV buffer": starts every message */
    locale_t c_locale;

    /* header */
    csv_request *req; /* n_inputs + n_targets, sorted by name */
    int64_t n_req;
    int64_t *dest_of_column; /* per header column: dest, or -1 */
    int64_t n_columns, columns_cap;
    bool header_done;

    /* lexer */
    enum lex_state state;
    int64_t line;        /* 1-based physical line of the current byte */
    bool prev_cr;        /* the previous byte was a CR: an LF now ends the same line */
    int64_t field_line;  /* line where the current field started */
    int64_t record_line; /* line where the current record started */
    int64_t column;      /* 0-based index of the current field in its record */
    bool keep;           /* the current field's bytes are needed */
    char *field;         /* its bytes (if kept), NUL-terminated at field_len when complete */
    size_t field_len, field_cap;
    unsigned char head[3]; /* the first bytes, held back to strip a UTF-8 BOM */
    size_t n_head;
    bool head_done;

    /* output */
    float *x, *y; /* rows_cap rows each */
    int64_t n_rows, rows_cap;
    bool row_incomplete; /* the current row has a missing input (dropped at its end) */
    int64_t n_dropped;
} csv_parser;

/* Bytes that end a run of ordinary bytes outside quotes / inside quotes. */
static bool ends_unquoted_run(unsigned char c)
{
    return c == ',' || c == '\n' || c == '\r' || c == '"' || c == '\0';
}

static bool ends_quoted_run(unsigned char c)
{
    return c == '"' || c == '\n' || c == '\r' || c == '\0';
}

/* ---- messages ------------------------------------------------------------ */

/* A printable excerpt of user bytes for a message: control bytes become
 * '?', long text is cut (at a UTF-8 character boundary) and gets "...". */
static void excerpt(char *dst, size_t cap, const char *src, size_t n)
{
    size_t limit = cap - 4; /* room for "..." and the NUL */
    size_t k = n < limit ? n : limit;
    if (k < n)
        while (k > 0 && ((unsigned char)src[k] & 0xC0) == 0x80) k--; /* continuation byte */
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    strcpy(dst + k, k < n ? "..." : "");
}

static const char *dest_name(const csv_parser *p, int64_t dest)
{
    const mtli_csv_spec *sp = p->spec;
    return dest < sp->n_inputs ? sp->input_names[dest] : sp->target_names[dest - sp->n_inputs];
}

/* "<what>, line L, column C ('name'): <detail>" for the current field. */
static mtl_status fail_field(const csv_parser *p, mtl_status status, const char *fmt, ...)
    MTLI_PRINTF(3, 4);
static mtl_status fail_field(const csv_parser *p, mtl_status status, const char *fmt, ...)
{
    char detail[256], name[80] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (p->header_done && p->column < p->n_columns && p->dest_of_column[p->column] >= 0) {
        const char *nm = dest_name(p, p->dest_of_column[p->column]);
        char ex[64];
        excerpt(ex, sizeof ex, nm, strlen(nm));
        snprintf(name, sizeof name, " ('%s')", ex);
    }
    return mtli_fail(status, "%s, line %lld, column %lld%s: %s", p->what, (long long)p->field_line,
                     (long long)p->column + 1, name, detail);
}

/* ---- the field buffer ---------------------------------------------------- */

static mtl_status field_append(csv_parser *p, const unsigned char *bytes, size_t n)
{
    size_t max = p->spec->limits.max_field_bytes;
    if (n > max - p->field_len)
        return fail_field(p, MTL_ERR_FORMAT, "field longer than the limit of %zu bytes", max);
    if (p->keep) {
        if (p->field_len + n + 1 > p->field_cap) {
            size_t cap = p->field_cap * 2;
            if (cap < p->field_len + n + 1) cap = p->field_len + n + 1;
            if (cap > max + 1) cap = max + 1;
            char *grown = mtli_alloc(p->s, cap);
            if (!grown)
                return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for a field",
                                 p->what, cap);
            memcpy(grown, p->field, p->field_len);
            mtli_free(p->s, p->field);
            p->field = grown;
            p->field_cap = cap;
        }
        memcpy(p->field + p->field_len, bytes, n);
    }
    p->field_len += n;
    return MTL_OK;
}

/* ---- header -------------------------------------------------------------- */

static int request_cmp(const void *a, const void *b)
{
    return strcmp(((const csv_request *)a)->name, ((const csv_request *)b)->name);
}

static int name_vs_request(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const csv_request *)elem)->name);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The header name in p->field matched no request exactly: if it does once
 * blanks around it are cut (" G_r" for "G_r"), remember the column for the
 * not-found message, because that mistake is common and invisible. */
static void note_near_miss(csv_parser *p)
{
    char *b = p->field, *e = p->field + p->field_len;
    while (b < e && is_blank(*b)) b++;
    while (e > b && is_blank(e[-1])) e--;
    if (b == p->field && e == p->field + p->field_len) return;
    char saved = *e;
    *e = '\0';
    csv_request *r = bsearch(b, p->req, (size_t)p->n_req, sizeof *r, name_vs_request);
    *e = saved;
    if (r && r->near < 0) r->near = p->n_columns;
}

static mtl_status header_field(csv_parser *p)
{
    if (p->n_columns == p->spec->limits.max_columns)
        return mtli_fail(MTL_ERR_FORMAT, "%s, line %lld: the header has more than %lld columns",
                         p->what, (long long)p->record_line, (long long)p->spec->limits.max_columns);
    if (p->n_columns == p->columns_cap) {
        int64_t cap = p->columns_cap ? p->columns_cap * 2 : 64;
        int64_t *grown = mtli_calloc(p->s, (size_t)cap, sizeof *grown);
        if (!grown)
            return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate the header's %lld columns",
                             p->what, (long long)cap);
        if (p->n_columns) memcpy(grown, p->dest_of_column, (size_t)p->n_columns * sizeof *grown);
        mtli_free(p->s, p->dest_of_column);
        p->dest_of_column = grown;
        p->columns_cap = cap;
    }
    p->field[p->field_len] = '\0'; /* the lexer rejects NUL bytes, so this is the whole name */
    int64_t dest = -1;
    csv_request *r = bsearch(p->field, p->req, (size_t)p->n_req, sizeof *r, name_vs_request);
    if (r) {
        if (r->column >= 0) {
            char ex[64];
            excerpt(ex, sizeof ex, r->name, strlen(r->name));
            return mtli_fail(MTL_ERR_FORMAT,
                             "%s, line %lld: column name '%s' appears twice in the header (columns "
                             "%lld and %lld), so it cannot be chosen by name",
                             p->what, (long long)p->record_line, ex, (long long)r->column + 1,
                             (long long)p->n_columns + 1);
        }
        r->column = p->n_columns;
        dest = r->dest;
    } else {
        note_near_miss(p);
    }
    p->dest_of_column[p->n_columns++] = dest;
    return MTL_OK;
}

/* After the header: every requested name must have been found. */
static mtl_status header_check(const csv_parser *p)
{
    const csv_request *missing = NULL; /* report the first in the caller's order */
    for (int64_t i = 0; i < p->n_req; i++)
        if (p->req[i].column < 0 && (!missing || p->req[i].dest < missing->dest)) missing = &p->req[i];
    if (!missing) return MTL_OK;
    bool input = missing->dest < p->spec->n_inputs;
    char ex[80], hint[96] = "";
    excerpt(ex, sizeof ex, missing->name, strlen(missing->name));
    if (missing->near >= 0)
        snprintf(hint, sizeof hint, "; column %lld has that name with blanks around it, and names "
                 "must match exactly", (long long)missing->near + 1);
    return mtli_fail(MTL_ERR_NOT_FOUND, "%s: no column named '%s' (%s %lld) in the header (%lld columns)%s",
                     p->what, ex, input ? "input" : "target",
                     (long long)(input ? missing->dest : missing->dest - p->spec->n_inputs),
                     (long long)p->n_columns, hint);
}

/* ---- data ---------------------------------------------------------------- */

/* Room for one more row in x and y (doubling, up to the row limit). */
static mtl_status reserve_row(csv_parser *p)
{
    if (p->n_rows < p->rows_cap) return MTL_OK;
    int64_t max = p->spec->limits.max_rows;
    if (p->n_rows >= max)
        return mtli_fail(MTL_ERR_FORMAT, "%s, line %lld: more than %lld data rows", p->what,
                         (long long)p->record_line, (long long)max);
    int64_t cap = p->rows_cap ? p->rows_cap * 2 : 64;
    if (cap > max) cap = max;
    size_t nx, ny = 0;
    if (!mtli_mul_size((size_t)cap, (size_t)p->spec->n_inputs * sizeof(float), &nx) ||
        !mtli_mul_size((size_t)cap, (size_t)p->spec->n_targets * sizeof(float), &ny))
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: %lld rows do not fit in memory", p->what,
                         (long long)cap);
    float *x = mtli_alloc(p->s, nx);
    float *y = ny ? mtli_alloc(p->s, ny) : NULL;
    if (!x || (ny && !y)) {
        mtli_free(p->s, x);
        mtli_free(p->s, y);
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for %lld rows", p->what,
                         nx + ny, (long long)cap);
    }
    if (p->n_rows) {
        memcpy(x, p->x, (size_t)p->n_rows * (size_t)p->spec->n_inputs * sizeof(float));
        if (y) memcpy(y, p->y, (size_t)p->n_rows * (size_t)p->spec->n_targets * sizeof(float));
    }
    mtli_free(p->s, p->x);
    mtli_free(p->s, p->y);
    p->x = x;
    p->y = y;
    p->rows_cap = cap;
    return MTL_OK;
}

static mtl_status data_field(csv_parser *p)
{
    if (p->column >= p->n_columns)
        return mtli_fail(MTL_ERR_FORMAT, "%s, line %lld: the row has more fields than the %lld of the header",
                         p->what, (long long)p->record_line, (long long)p->n_columns);
    int64_t dest = p->dest_of_column[p->column];
    if (dest < 0) return MTL_OK;
    p->field[p->field_len] = '\0';
    const mtli_csv_spec *sp = p->spec;
    bool is_input = dest < sp->n_inputs;
    char ex[48];
    float v = NAN;
    switch (mtli_csv_parse_number(p->field, p->field_len, p->c_locale, &v)) {
    case MTLI_CSV_CELL_NUMBER:
        break;
    case MTLI_CSV_CELL_MISSING:
        v = NAN; /* a target: no label */
        if (is_input) {
            if (!(sp->flags & MTL_CSV_DROP_INCOMPLETE))
                return fail_field(p, MTL_ERR_FORMAT,
                                  "missing input value (empty or NaN); pass MTL_CSV_DROP_INCOMPLETE "
                                  "to drop such rows");
            p->row_incomplete = true;
        }
        break;
    case MTLI_CSV_CELL_NOT_NUMBER:
        excerpt(ex, sizeof ex, p->field, p->field_len);
        return fail_field(p, MTL_ERR_FORMAT, "'%s' is not a number", ex);
    case MTLI_CSV_CELL_NON_FINITE:
        excerpt(ex, sizeof ex, p->field, p->field_len);
        return fail_field(p, MTL_ERR_NON_FINITE, "'%s' is infinite or beyond the float32 range", ex);
    }
    if (is_input)
        p->x[p->n_rows * sp->n_inputs + dest] = v;
    else
        p->y[p->n_rows * sp->n_targets + (dest - sp->n_inputs)] = v;
    return MTL_OK;
}

/* ---- records ------------------------------------------------------------- */

static mtl_status start_field(csv_parser *p)
{
    p->field_line = p->line;
    p->field_len = 0;
    if (p->column == 0) {
        p->record_line = p->line;
        if (p->header_done) MTLI_TRY(reserve_row(p));
    }
    p->keep = !p->header_done || (p->column < p->n_columns && p->dest_of_column[p->column] >= 0);
    return MTL_OK;
}

static mtl_status end_field(csv_parser *p)
{
    MTLI_TRY(p->header_done ? data_field(p) : header_field(p));
    p->column++;
    return MTL_OK;
}

static mtl_status end_record(csv_parser *p)
{
    int64_t n_fields = p->column;
    p->column = 0;
    if (!p->header_done) {
        p->header_done = true;
        return header_check(p);
    }
    if (n_fields < p->n_columns)
        return mtli_fail(MTL_ERR_FORMAT, "%s, line %lld: the row has %lld field%s, the header has %lld",
                         p->what, (long long)p->record_line, (long long)n_fields,
                         n_fields == 1 ? "" : "s", (long long)p->n_columns);
    if (p->row_incomplete) {
        p->row_incomplete = false; /* its slot is reused by the next row */
        p->n_dropped++;
    } else {
        p->n_rows++;
    }
    return MTL_OK;
}

/* Count a CR or LF; the LF of a CRLF does not start another line. */
static void count_newline(csv_parser *p, unsigned char c)
{
    if (c == '\n' && p->prev_cr) {
        p->prev_cr = false;
        return;
    }
    p->line++;
    p->prev_cr = c == '\r';
}

/* ---- the lexer ----------------------------------------------------------- */

static mtl_status lex(csv_parser *p, const unsigned char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = d[i];
        bool newline = c == '\n' || c == '\r';
        if (!newline) p->prev_cr = false;
        if (c == '\0')
            return mtli_fail(MTL_ERR_FORMAT, "%s, line %lld: NUL byte (not a text file?)", p->what,
                             (long long)p->line);
        switch (p->state) {
        case ST_FIELD_START:
            if (newline && p->column == 0) { /* a blank line, or the LF of a CRLF */
                count_newline(p, c);
                i++;
                break;
            }
            MTLI_TRY(start_field(p));
            if (newline) { /* "a,b," : an empty last field */
                MTLI_TRY(end_field(p));
                MTLI_TRY(end_record(p));
                count_newline(p, c);
                i++;
            } else if (c == ',') {
                MTLI_TRY(end_field(p));
                i++;
            } else if (c == '"') {
                p->state = ST_QUOTED;
                i++;
            } else {
                p->state = ST_UNQUOTED; /* this byte is the field's first */
            }
            break;
        case ST_UNQUOTED: {
            size_t j = i;
            while (j < n && !ends_unquoted_run(d[j])) j++;
            if (j > i) {
                MTLI_TRY(field_append(p, d + i, j - i));
                i = j;
                break;
            }
            if (c == '"')
                return fail_field(p, MTL_ERR_FORMAT,
                                  "quote inside an unquoted field (quote the whole field and "
                                  "double the quote: \"a\"\"b\")");
            MTLI_TRY(end_field(p));
            if (newline) {
                MTLI_TRY(end_record(p));
                count_newline(p, c);
            }
            p->state = ST_FIELD_START;
            i++;
            break;
        }
        case ST_QUOTED: {
            size_t j = i;
            while (j < n && !ends_quoted_run(d[j])) j++;
            if (j > i) {
                MTLI_TRY(field_append(p, d + i, j - i));
                i = j;
                break;
            }
            if (c == '"') {
                p->state = ST_QUOTE_IN_QUOTED;
            } else { /* a line break inside the field is part of it */
                MTLI_TRY(field_append(p, d + i, 1));
                count_newline(p, c);
            }
            i++;
            break;
        }
        case ST_QUOTE_IN_QUOTED:
            if (c == '"') { /* "" stands for one quote */
                MTLI_TRY(field_append(p, d + i, 1));
                p->state = ST_QUOTED;
            } else if (c == ',' || newline) {
                MTLI_TRY(end_field(p));
                if (newline) {
                    MTLI_TRY(end_record(p));
                    count_newline(p, c);
                }
                p->state = ST_FIELD_START;
            } else {
                return fail_field(p, MTL_ERR_FORMAT,
                                  "unexpected character after the closing quote of a quoted field");
            }
            i++;
            break;
        }
    }
    return MTL_OK;
}

/* Feed the parser, holding back the first three bytes to strip a BOM. */
static mtl_status feed(csv_parser *p, const unsigned char *d, size_t n, bool at_end)
{
    if (!p->head_done) {
        while (p->n_head < 3 && n > 0) {
            p->head[p->n_head++] = *d++;
            n--;
        }
        if (p->n_head < 3 && !at_end) return MTL_OK;
        p->head_done = true;
        static const unsigned char bom[3] = { 0xEF, 0xBB, 0xBF };
        size_t skip = p->n_head == 3 && memcmp(p->head, bom, 3) == 0 ? 3 : 0;
        MTLI_TRY(lex(p, p->head + skip, p->n_head - skip));
    }
    return lex(p, d, n);
}

/* End of input: finish the last record, then check there was something. */
static mtl_status finish(csv_parser *p)
{
    MTLI_TRY(feed(p, NULL, 0, true));
    switch (p->state) {
    case ST_FIELD_START:
        if (p->column > 0) { /* "a,b," then the end: an empty last field */
            MTLI_TRY(start_field(p));
            MTLI_TRY(end_field(p));
            MTLI_TRY(end_record(p));
        }
        break;
    case ST_UNQUOTED:
    case ST_QUOTE_IN_QUOTED:
        MTLI_TRY(end_field(p));
        MTLI_TRY(end_record(p));
        break;
    case ST_QUOTED:
        return fail_field(p, MTL_ERR_FORMAT, "unterminated quoted field (the file ends inside it)");
    }
    if (!p->header_done) return mtli_fail(MTL_ERR_FORMAT, "%s: empty (no header row)", p->what);
    if (p->n_rows == 0 && p->n_dropped > 0)
        return mtli_fail(MTL_ERR_FORMAT, "%s: all %lld data rows have a missing input and were dropped",
                         p->what, (long long)p->n_dropped);
    if (p->n_rows == 0) return mtli_fail(MTL_ERR_FORMAT, "%s: no data rows after the header", p->what);
    return MTL_OK;
}

/* ---- set-up and the driver ----------------------------------------------- */

static mtl_status check_spec(const char *what, const mtli_csv_spec *sp)
{
    MTLI_CHECK_ARG(sp->n_inputs >= 1, "%s: at least one input column is needed", what);
    MTLI_CHECK_ARG(sp->input_names, "%s: input_names is NULL", what);
    MTLI_CHECK_ARG(sp->n_targets >= 0, "%s: n_targets is negative", what);
    MTLI_CHECK_ARG(sp->n_targets == 0 || sp->target_names, "%s: target_names is NULL", what);
    MTLI_CHECK_ARG(sp->n_inputs <= sp->limits.max_columns - sp->n_targets,
                   "%s: %lld columns requested, the limit is %lld", what,
                   (long long)(sp->n_inputs + sp->n_targets), (long long)sp->limits.max_columns);
    MTLI_CHECK_ARG(sp->limits.max_field_bytes >= 1 && sp->limits.max_field_bytes < SIZE_MAX / 2 &&
                       sp->limits.max_rows >= 1,
                   "%s: bad limits", what);
    for (int64_t i = 0; i < sp->n_inputs; i++)
        MTLI_CHECK_ARG(sp->input_names[i], "%s: input_names[%lld] is NULL", what, (long long)i);
    for (int64_t i = 0; i < sp->n_targets; i++)
        MTLI_CHECK_ARG(sp->target_names[i], "%s: target_names[%lld] is NULL", what, (long long)i);
    return MTL_OK;
}

static mtl_status parser_init(csv_parser *p, const mtli_settings *s, const mtli_csv_spec *sp)
{
    p->s = s;
    p->spec = sp;
    p->line = 1;
    p->n_req = sp->n_inputs + sp->n_targets;
    p->req = mtli_calloc(s, (size_t)p->n_req, sizeof *p->req);
    p->field_cap = 256;
    p->field = mtli_alloc(s, p->field_cap);
    if (!p->req || !p->field)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot allocate the column table", p->what);
    for (int64_t i = 0; i < p->n_req; i++) {
        p->req[i].name = dest_name(p, i);
        p->req[i].dest = i;
        p->req[i].column = -1;
        p->req[i].near = -1;
    }
    qsort(p->req, (size_t)p->n_req, sizeof *p->req, request_cmp);
    for (int64_t i = 1; i < p->n_req; i++) {
        if (strcmp(p->req[i - 1].name, p->req[i].name) == 0) {
            char ex[80];
            excerpt(ex, sizeof ex, p->req[i].name, strlen(p->req[i].name));
            return mtli_fail(MTL_ERR_INVALID_ARGUMENT, "%s: column '%s' is requested twice", p->what, ex);
        }
    }
    p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (p->c_locale == (locale_t)0)
        return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "%s: cannot create a \"C\" numeric locale", p->what);
    return MTL_OK;
}

static void parser_free(csv_parser *p)
{
    if (p->c_locale != (locale_t)0) freelocale(p->c_locale);
    mtli_free(p->s, p->req);
    mtli_free(p->s, p->dest_of_column);
    mtli_free(p->s, p->field);
    mtli_free(p->s, p->x);
    mtli_free(p->s, p->y);
}

/* Give back rows_cap - n_rows rows when that is more than an eighth: the
 * arrays then live as long as the data set. */
static mtl_status shrink_to_fit(csv_parser *p)
{
    if (p->rows_cap - p->n_rows <= p->rows_cap / 8) return MTL_OK;
    size_t nx = (size_t)p->n_rows * (size_t)p->spec->n_inputs * sizeof(float);
    size_t ny = (size_t)p->n_rows * (size_t)p->spec->n_targets * sizeof(float);
    float *x = mtli_alloc(p->s, nx);
    float *y = ny ? mtli_alloc(p->s, ny) : NULL;
    if (!x || (ny && !y)) { /* keep the larger arrays: still correct */
        mtli_free(p->s, x);
        mtli_free(p->s, y);
        return MTL_OK;
    }
    memcpy(x, p->x, nx);
    if (ny) memcpy(y, p->y, ny);
    mtli_free(p->s, p->x);
    mtli_free(p->s, p->y);
    p->x = x;
    p->y = y;
    p->rows_cap = p->n_rows;
    return MTL_OK;
}

static mtl_status parse_source(const mtli_settings *s, mtli_csv_source *src, const mtli_csv_spec *sp,
                               csv_parser *p, mtli_csv_table *out)
{
    MTLI_TRY(parser_init(p, s, sp));
    for (;;) {
        const unsigned char *data;
        size_t len;
        mtl_status st = mtli_csv_source_read(src, &data, &len);
        if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", p->what);
        if (len == 0) break;
        MTLI_TRY(feed(p, data, len, false));
    }
    MTLI_TRY(finish(p));
    MTLI_TRY(shrink_to_fit(p));
    out->n_rows = p->n_rows;
    out->n_inputs = sp->n_inputs;
    out->n_targets = sp->n_targets;
    out->x = p->x;
    out->y = p->y;
    out->n_dropped = p->n_dropped;
    p->x = p->y = NULL; /* now the caller's */
    return MTL_OK;
}

void mtli_csv_limits_default(mtli_csv_limits *limits)
{
    limits->max_field_bytes = MTLI_CSV_MAX_FIELD_BYTES;
    limits->max_columns = MTLI_CSV_MAX_COLUMNS;
    limits->max_rows = MTLI_CSV_MAX_ROWS;
}

mtl_status mtli_csv_parse_file(const mtli_settings *s, const char *path, const mtli_csv_spec *spec,
                               mtli_csv_table *out)
{
    csv_parser p;
    memset(&p, 0, sizeof p);
    snprintf(p.what, sizeof p.what, "CSV file '%s'", path ? path : "(null)");
    MTLI_CHECK_ARG(path && spec && out, "mtli_csv_parse_file: NULL argument");
    MTLI_TRY(check_spec(p.what, spec));
    mtli_csv_source src;
    mtl_status st = mtli_csv_source_open_file(&src, s, path);
    if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", p.what);
    st = parse_source(s, &src, spec, &p, out);
    mtli_csv_source_close(&src);
    parser_free(&p);
    return st;
}

mtl_status mtli_csv_parse_buffer(const mtli_settings *s, const void *data, size_t size,
                                 const mtli_csv_spec *spec, mtli_csv_table *out)
{
    csv_parser p;
    memset(&p, 0, sizeof p);
    snprintf(p.what, sizeof p.what, "CSV buffer");
    MTLI_CHECK_ARG((data || size == 0) && spec && out, "mtli_csv_parse_buffer: NULL argument");
    MTLI_TRY(check_spec(p.what, spec));
    mtli_csv_source src;
    mtl_status st = mtli_csv_source_open_buffer(&src, s, data, size);
    if (st != MTL_OK) return mtli_fail_prefix(st, "%s: ", p.what);
    st = parse_source(s, &src, spec, &p, out);
    mtli_csv_source_close(&src);
    parser_free(&p);
    return st;
}

void mtli_csv_table_free(const mtli_settings *s, mtli_csv_table *t)
{
    if (!t) return;
    mtli_free(s, t->x);
    mtli_free(s, t->y);
    t->x = t->y = NULL;
    t->n_rows = 0;
}
