/* io_reader.c -- bounds-checked reads from an untrusted in-memory file.
 *
 * Every read checks the bytes left before touching them, and every error
 * names the absolute byte offset and the field, so a report about a broken
 * file can be checked with a hex dump. */
#include "io_buf.h"

#include <stdio.h>
#include <string.h>

#include "bytes.h"

void mtli_reader_init(mtli_reader *r, const void *base, size_t begin, size_t end, const char *where)
{
    r->base = base;
    r->pos = begin;
    r->end = end;
    r->where = where;
}

mtl_status mtli_r_fail(const mtli_reader *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mtli_fail(MTL_ERR_FORMAT, "byte %zu (%s): %s", r->pos, r->where, msg);
}

/* Point at `n` readable bytes and advance, or fail naming the field. */
static mtl_status mtli_r_take(mtli_reader *r, const char *field, size_t n, const uint8_t **p)
{
    if (n > mtli_r_left(r))
        return mtli_r_fail(r, "%s needs %zu bytes, only %zu left (truncated or corrupt)", field, n,
                           mtli_r_left(r));
    *p = r->base + r->pos;
    r->pos += n;
    return MTL_OK;
}

mtl_status mtli_r_u8(mtli_reader *r, const char *field, uint8_t *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 1, &p));
    *v = mtli_get_u8(p);
    return MTL_OK;
}

mtl_status mtli_r_u32(mtli_reader *r, const char *field, uint32_t *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 4, &p));
    *v = mtli_get_u32(p);
    return MTL_OK;
}

mtl_status mtli_r_u64(mtli_reader *r, const char *field, uint64_t *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 8, &p));
    *v = mtli_get_u64(p);
    return MTL_OK;
}

mtl_status mtli_r_i64(mtli_reader *r, const char *field, int64_t *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 8, &p));
    *v = mtli_get_i64(p);
    return MTL_OK;
}

mtl_status mtli_r_f32(mtli_reader *r, const char *field, float *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 4, &p));
    *v = mtli_get_f32(p);
    return MTL_OK;
}

mtl_status mtli_r_f64(mtli_reader *r, const char *field, double *v)
{
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, 8, &p));
    *v = mtli_get_f64(p);
    return MTL_OK;
}

mtl_status mtli_r_bool(mtli_reader *r, const char *field, bool *v)
{
    size_t at = r->pos;
    uint8_t b;
    MTLI_TRY(mtli_r_u8(r, field, &b));
    if (b > 1) {
        mtli_reader here = *r;
        here.pos = at;
        return mtli_r_fail(&here, "%s is %u, expected 0 or 1", field, (unsigned)b);
    }
    *v = b != 0;
    return MTL_OK;
}

static mtl_status mtli_r_array(mtli_reader *r, const char *field, void *dst, size_t n, size_t width)
{
    if (n > mtli_r_left(r) / width)
        return mtli_r_fail(r, "%s needs %zu values of %zu bytes, only %zu bytes left", field, n, width,
                           mtli_r_left(r));
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, n * width, &p));
    mtli_le_convert(dst, p, n, width, mtli_host_order());
    return MTL_OK;
}

mtl_status mtli_r_f32s(mtli_reader *r, const char *field, float *dst, size_t n)
{
    return mtli_r_array(r, field, dst, n, sizeof(float));
}

mtl_status mtli_r_f64s(mtli_reader *r, const char *field, double *dst, size_t n)
{
    return mtli_r_array(r, field, dst, n, sizeof(double));
}

mtl_status mtli_r_count(mtli_reader *r, const char *field, uint64_t max, size_t min_bytes_each,
                        uint64_t *n)
{
    size_t at = r->pos;
    uint64_t v;
    MTLI_TRY(mtli_r_u64(r, field, &v));
    mtli_reader here = *r;
    here.pos = at;
    if (v > max) return mtli_r_fail(&here, "%s is %llu, more than the limit %llu", field,
                                    (unsigned long long)v, (unsigned long long)max);
    if (min_bytes_each > 0 && v > mtli_r_left(r) / min_bytes_each)
        return mtli_r_fail(&here, "%s is %llu, but only %zu bytes follow (at least %zu each)", field,
                           (unsigned long long)v, mtli_r_left(r), min_bytes_each);
    *n = v;
    return MTL_OK;
}

mtl_status mtli_r_str(mtli_reader *r, const char *field, const mtli_settings *s, size_t max_bytes,
                      bool allow_absent, char **out)
{
    size_t at = r->pos;
    uint32_t len;
    MTLI_TRY(mtli_r_u32(r, field, &len));
    mtli_reader here = *r;
    here.pos = at;
    if (len == MTLI_STRING_ABSENT) {
        if (!allow_absent) return mtli_r_fail(&here, "%s is missing (absent-string marker)", field);
        *out = NULL;
        return MTL_OK;
    }
    if (len > max_bytes)
        return mtli_r_fail(&here, "%s is %u bytes long, more than the limit %zu", field, (unsigned)len,
                           max_bytes);
    const uint8_t *p = NULL;
    MTLI_TRY(mtli_r_take(r, field, len, &p));
    if (!mtli_utf8_valid((const char *)p, len))
        return mtli_r_fail(&here, "%s is not valid UTF-8 (or contains a NUL byte)", field);
    char *str = mtli_alloc(s, (size_t)len + 1);
    if (!str) return mtli_fail(MTL_ERR_OUT_OF_MEMORY, "cannot allocate %u bytes for %s", (unsigned)len + 1, field);
    memcpy(str, p, len);
    str[len] = '\0';
    *out = str;
    return MTL_OK;
}

mtl_status mtli_r_done(const mtli_reader *r, bool allow_trailing)
{
    if (r->pos != r->end && !allow_trailing)
        return mtli_r_fail(r, "%zu unexpected bytes at the end", r->end - r->pos);
    return MTL_OK;
}

bool mtli_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false; /* continuation byte first, overlong C0/C1, or F5..FF */
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}
