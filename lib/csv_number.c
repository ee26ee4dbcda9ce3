/* csv_number.c -- one CSV cell to a float, strictly and independently of
 * the process locale.
 *
 * strtof alone would do neither: it follows LC_NUMERIC (under de_DE "1.5"
 * stops at the '.'), and it accepts hex floats, "inf", "nan(...)" and
 * leading junk such as whitespace before a sign.  So the grammar is checked
 * here first, and the conversion itself is exact: a float fast path when
 * the decimal mantissa and its power of ten are both exact floats (one
 * IEEE operation on exact operands is correctly rounded -- Clinger's
 * observation), else glibc's correctly rounded strtof_l with a "C" locale.
 */
#include "csv.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

/* 10^0 .. 10^10 are exact in binary32 (5^10 < 2^24). */
static const float exact_pow10f[] = { 1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                      1e6f, 1e7f, 1e8f, 1e9f, 1e10f };
#define FAST_MAX_MANTISSA ((uint64_t)1 << 24) /* every integer up to 2^24 is an exact float */
#define FAST_MAX_EXP10 10
#define MAX_MANTISSA_DIGITS 19 /* 10^19 - 1 < 2^64 */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ASCII case-insensitive: does [p, end) spell `word` (lowercase)? */
static bool spells(const char *p, const char *end, const char *word)
{
    for (; p < end && *word; p++, word++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != *word) return false;
    }
    return p == end && *word == '\0';
}

/* The mantissa digits seen so far: at most 19 significant ones in m; the
 * rest only move the decimal exponent and mark the value inexact. */
typedef struct decimal {
    uint64_t m;
    int n_significant;
    int64_t exp10;  /* value = m * 10^exp10 (when !truncated) */
    bool truncated; /* significant digits were dropped: m is not exact */
} decimal;

static void add_digit(decimal *d, char c, bool fraction)
{
    unsigned digit = (unsigned)(c - '0');
    if (d->n_significant == 0 && digit == 0) { /* leading zero */
        if (fraction) d->exp10--;
        return;
    }
    if (d->n_significant < MAX_MANTISSA_DIGITS) {
        d->m = d->m * 10 + digit;
        d->n_significant++;
        if (fraction) d->exp10--;
        return;
    }
    if (digit != 0) d->truncated = true;
    if (!fraction) d->exp10++; /* a dropped integer digit still scales */
}

/* Exact float result when the fast path applies; false otherwise. */
static bool fast_path(const decimal *d, bool negative, float *out)
{
#if FLT_EVAL_METHOD != 0
    /* Float operations carried out in wider precision would round twice. */
    (void)d; (void)negative; (void)out;
    return false;
#else
    if (d->m == 0) { /* all digits zero: exact whatever the exponent */
        *out = negative ? -0.0f : 0.0f;
        return true;
    }
    if (d->truncated || d->m > FAST_MAX_MANTISSA || d->exp10 < -FAST_MAX_EXP10 ||
        d->exp10 > FAST_MAX_EXP10)
        return false;
    float v = (float)d->m; /* exact: m <= 2^24 */
    if (d->exp10 < 0)
        v /= exact_pow10f[-d->exp10];
    else
        v *= exact_pow10f[d->exp10];
    *out = negative ? -v : v;
    return true;
#endif
}

mtli_csv_cell mtli_csv_parse_number(const char *text, size_t n, locale_t c_locale, float *out)
{
    const char *p = text, *end = text + n;
    while (p < end && is_blank(*p)) p++;
    while (end > p && is_blank(end[-1])) end--;
    if (p == end || spells(p, end, "nan")) return MTLI_CSV_CELL_MISSING;

    const char *q = p;
    bool negative = false;
    if (*q == '+' || *q == '-') negative = *q++ == '-';
    if (spells(q, end, "inf") || spells(q, end, "infinity")) return MTLI_CSV_CELL_NON_FINITE;

    decimal d = { 0, 0, 0, false };
    bool any_digit = false;
    for (; q < end && is_digit(*q); q++, any_digit = true) add_digit(&d, *q, false);
    if (q < end && *q == '.')
        for (q++; q < end && is_digit(*q); q++, any_digit = true) add_digit(&d, *q, true);
    if (!any_digit) return MTLI_CSV_CELL_NOT_NUMBER;
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        bool exp_negative = false;
        if (q < end && (*q == '+' || *q == '-')) exp_negative = *q++ == '-';
        if (q == end || !is_digit(*q)) return MTLI_CSV_CELL_NOT_NUMBER;
        int64_t e = 0;
        for (; q < end && is_digit(*q); q++)
            if (e < 1000000) e = e * 10 + (*q - '0'); /* saturate: far beyond any float */
        d.exp10 += exp_negative ? -e : e;
    }
    if (q != end) return MTLI_CSV_CELL_NOT_NUMBER; /* trailing junk */

    float v;
    if (!fast_path(&d, negative, &v)) {
        /* [p, end) is a plain decimal and text[n] is NUL, so strtof_l reads
         * exactly that span: what follows `end` is a blank or the NUL. */
        char *stop = NULL;
        errno = 0;
        v = strtof_l(p, &stop, c_locale);
        if (stop != end) return MTLI_CSV_CELL_NOT_NUMBER; /* cannot happen after the grammar */
        /* ERANGE with a tiny result is underflow: 0 or a subnormal, kept. */
        if (isinf(v)) return MTLI_CSV_CELL_NON_FINITE;
    }
    *out = v;
    return MTLI_CSV_CELL_NUMBER;
}
