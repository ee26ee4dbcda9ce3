/* test_csv.c -- the CSV loader: mtl_dataset_load_csv(_buffer) and, through
 * the internal header, the number parser and the limits.
 *
 * Truths used: hand-written tables with their values spelled out; glibc's
 * strtof in the "C" locale (correctly rounded) for the number parser; and
 * for random tables, floats printed with "%.9g" (which round-trips every
 * float exactly), so a correct loader returns the very same bits.
 *
 * Linked as a unit test (library objects + zlib) so that it can also write
 * gzip files with zlib's own gzwrite and lower the limits. */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"
#include "csv.h"

/* ---- helpers ------------------------------------------------------------- */

#define CHECK(call)                                                                \
    do {                                                                           \
        if ((call) != 0) FAILF("%s failed", #call);                                \
    } while (0)

static char g_dir[64];

/* A fresh path in this run's temporary directory. */
static const char *tmp_path(const char *name)
{
    static char path[8][256]; /* a ring: each test uses fewer than 8 at once */
    static int which;
    if (!g_dir[0]) {
        strcpy(g_dir, "/tmp/mtl_test_csv_XXXXXX");
        if (!mkdtemp(g_dir)) return NULL;
    }
    which = (which + 1) % 8;
    snprintf(path[which], sizeof path[which], "%s/%s", g_dir, name);
    return path[which];
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) != 0 || w != n) ? 1 : 0;
}

/* gzip with zlib (a writer independent of the loader's inflate code);
 * mode "wb" or "ab" (append another gzip member). */
static int write_gz(const char *path, const void *data, size_t n, const char *mode)
{
    gzFile g = gzopen(path, mode);
    if (!g) return 1;
    int w = gzwrite(g, data, (unsigned)n);
    return (gzclose(g) != Z_OK || w != (int)n) ? 1 : 0;
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static mtl_status load_str(mtl_dataset **ds, const char *csv, const char *const *in, int64_t n_in,
                           const char *const *tg, int64_t n_tg, unsigned flags)
{
    return mtl_dataset_load_csv_buffer(ds, NULL, csv, strlen(csv), in, n_in, tg, n_tg, flags);
}

/* The data set's inputs and targets equal `x` / `y` bit for bit (NaN = NaN). */
static int same_floats(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            fprintf(stderr, "  element %zu: %.9g != %.9g\n", i, (double)a[i], (double)b[i]);
            return 1;
        }
    }
    return 0;
}

static int expect_data(const mtl_dataset *ds, int64_t n_rows, int64_t n_in, int64_t n_tg,
                       const float *x, const float *y)
{
    ASSERT_EQ_INT(mtl_dataset_row_count(ds), n_rows);
    ASSERT_EQ_INT(mtl_dataset_input_count(ds), n_in);
    ASSERT_EQ_INT(mtl_dataset_target_count(ds), n_tg);
    float *bx = malloc(sizeof(float) * (size_t)(n_rows * n_in));
    float *by = malloc(sizeof(float) * (size_t)(n_rows * (n_tg ? n_tg : 1)));
    ASSERT(bx && by);
    int bad = mtl_dataset_get_inputs(ds, 0, n_rows, bx, n_in) != MTL_OK ||
              same_floats(bx, x, (size_t)(n_rows * n_in)) != 0;
    if (!bad && n_tg)
        bad = mtl_dataset_get_targets(ds, 0, n_rows, by, n_tg) != MTL_OK ||
              same_floats(by, y, (size_t)(n_rows * n_tg)) != 0;
    free(bx);
    free(by);
    if (bad) FAILF("data set contents differ (%s)", mtl_last_error_message());
    return 0;
}

/* Loading `csv` (n bytes) fails with `want`; the message has both needles. */
static int expect_fail_n(const char *csv, size_t n, const char *const *in, int64_t n_in,
                         const char *const *tg, int64_t n_tg, unsigned flags, mtl_status want,
                         const char *needle1, const char *needle2)
{
    mtl_dataset *ds = NULL;
    mtl_status st = mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, in, n_in, tg, n_tg, flags);
    if (st != want)
        FAILF("status %d (%s), expected %d; message: %s", (int)st, mtl_status_string(st), (int)want,
              mtl_last_error_message());
    ASSERT(ds == NULL);
    if (needle1) ASSERT_MSG_HAS(needle1);
    if (needle2) ASSERT_MSG_HAS(needle2);
    return 0;
}

static int expect_fail(const char *csv, const char *const *in, int64_t n_in, const char *const *tg,
                       int64_t n_tg, unsigned flags, mtl_status want, const char *needle1,
                       const char *needle2)
{
    return expect_fail_n(csv, strlen(csv), in, n_in, tg, n_tg, flags, want, needle1, needle2);
}

static const char *const AB[] = { "a", "b" };
static const char *const A[] = { "a" };
static const char *const B[] = { "b" };
static const char *const Y[] = { "y" };

/* ---- columns, values, missing labels ------------------------------------- */

TEST(columns_by_name_in_any_order)
{
    const char *csv = "id,y,b,note,a\n"
                      "1,10.5,2,hello,1\n"
                      "2,,4,x,3\n"
                      "3,NaN,6,,5\n";
    const char *const in[] = { "a", "b" };
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, in, 2, Y, 1, 0));
    const float x[] = { 1, 2, 3, 4, 5, 6 };
    const float y[] = { 10.5f, NAN, NAN };
    CHECK(expect_data(ds, 3, 2, 1, x, y));
    mtl_dataset_destroy(ds);

    /* reversed request order; the target first in the file; no targets */
    const char *const in2[] = { "b", "id", "a" };
    ASSERT_OK(load_str(&ds, csv, in2, 3, NULL, 0, 0));
    const float x2[] = { 2, 1, 1, 4, 2, 3, 6, 3, 5 };
    CHECK(expect_data(ds, 3, 3, 0, x2, NULL));
    mtl_dataset_destroy(ds);

    /* two targets, one of them missing everywhere */
    const char *csv2 = "a,t1,t2\n1,,5\n2,nan,6\n";
    const char *const tg[] = { "t2", "t1" };
    ASSERT_OK(load_str(&ds, csv2, A, 1, tg, 2, 0));
    const float x3[] = { 1, 2 };
    const float y3[] = { 5, NAN, 6, NAN };
    CHECK(expect_data(ds, 2, 1, 2, x3, y3));
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(missing_targets_are_nan)
{
    /* Every spelling of a missing label, quoted or not, with blanks. */
    const char *csv = "a,y\n1,\n2,NaN\n3,nan\n4,NAN\n5,\"\"\n6, \n7,\" nan \"\n8,0\n";
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, A, 1, Y, 1, 0));
    const float x[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    const float y[] = { NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0 };
    CHECK(expect_data(ds, 8, 1, 1, x, y));
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(missing_input_is_an_error)
{
    CHECK(expect_fail("a,b,y\n1,2,3\n4,,6\n", AB, 2, Y, 1, 0, MTL_ERR_FORMAT, "line 3, column 2 ('b')",
                      "missing input"));
    CHECK(expect_fail("a,b,y\n1,2,3\n4,5,6\nNaN,5,6\n", AB, 2, Y, 1, 0, MTL_ERR_FORMAT,
                      "line 4, column 1 ('a')", "MTL_CSV_DROP_INCOMPLETE"));
    /* a missing cell in a column nobody asked for is fine */
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, "a,junk,y\n1,,3\n", A, 1, Y, 1, 0));
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(drop_incomplete)
{
    const char *csv = "a,b,y\n"
                      "1,2,3\n"
                      "4,,6\n"      /* dropped */
                      "NaN,8,9\n"   /* dropped */
                      "10,11,\n"    /* kept: only the label is missing */
                      "13,nan,15\n"; /* dropped, and the last row */
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, AB, 2, Y, 1, MTL_CSV_DROP_INCOMPLETE));
    const float x[] = { 1, 2, 10, 11 };
    const float y[] = { 3, NAN };
    CHECK(expect_data(ds, 2, 2, 1, x, y));
    mtl_dataset_destroy(ds);
    /* Dropping is about missing inputs only: junk is still an error. */
    CHECK(expect_fail("a,b,y\n1,,x\n", AB, 2, Y, 1, MTL_CSV_DROP_INCOMPLETE, MTL_ERR_FORMAT,
                      "line 2, column 3 ('y')", "'x' is not a number"));
    CHECK(expect_fail("a,b,y\n1,,3\n,2,3\n", AB, 2, Y, 1, MTL_CSV_DROP_INCOMPLETE, MTL_ERR_FORMAT,
                      "all 2 data rows", "dropped"));
    return 0;
}

/* ---- the format: quoting, line ends, BOM, UTF-8 --------------------------- */

TEST(rfc4180_quoting)
{
    /* header names with a comma, doubled quotes and a line break */
    const char *csv = "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",plain\n"
                      "\"1\",\"2.5\",\"3\",\"text, with \"\"quotes\"\"\nand a line\"\n"
                      "4,5,6,x\n";
    const char *const in[] = { "two\nlines", "a,b" };
    const char *const tg[] = { "say \"hi\"" };
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, in, 2, tg, 1, 0));
    const float x[] = { 3, 1, 6, 4 };
    const float y[] = { 2.5f, 5 };
    CHECK(expect_data(ds, 2, 2, 1, x, y));
    mtl_dataset_destroy(ds);
    /* Line numbers count physical lines, also inside quoted fields:
     * the header spans lines 1-2, the first row 3-4, the bad cell is on 5. */
    const char *bad = "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",plain\n"
                      "1,2,3,\"x\ny\"\n"
                      "4,5,oops,z\n";
    CHECK(expect_fail(bad, in, 2, tg, 1, 0, MTL_ERR_FORMAT, "line 5, column 3 ('two?lines')",
                      "'oops' is not a number"));
    return 0;
}

TEST(line_endings)
{
    const char *lf = "a,b,y\n1,2,3\n4,5,6\n";
    const char *crlf = "a,b,y\r\n1,2,3\r\n4,5,6\r\n";
    const char *cr = "a,b,y\r1,2,3\r4,5,6";
    const char *mixed_blank = "\r\n\na,b,y\r\n\r\n1,2,3\n\n\r4,5,6\r\n\r\n";
    const char *no_final = "a,b,y\n1,2,3\n4,5,6";
    const char *texts[] = { lf, crlf, cr, mixed_blank, no_final };
    const float x[] = { 1, 2, 4, 5 };
    const float y[] = { 3, 6 };
    for (int i = 0; i < 5; i++) {
        mtl_dataset *ds = NULL;
        ASSERT_OK(load_str(&ds, texts[i], AB, 2, Y, 1, 0));
        CHECK(expect_data(ds, 2, 2, 1, x, y));
        mtl_dataset_destroy(ds);
    }
    /* CRLF counts as one line in messages */
    CHECK(expect_fail("a,b,y\r\n1,2,3\r\n4,5,z\r\n", AB, 2, Y, 1, 0, MTL_ERR_FORMAT,
                      "line 3, column 3 ('y')", "'z'"));
    /* a CRLF inside quotes stays in the field (here an unused text column) */
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, "a,t\r\n1,\"x\r\ny\"\r\n2,z\r\n", A, 1, NULL, 0, 0));
    ASSERT_EQ_INT(mtl_dataset_row_count(ds), 2);
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(bom_and_utf8_names)
{
    const char *csv = "\xEF\xBB\xBF" "T/\xC2\xB0" "C,\xCE\x94G\xE2\x80\xA1 (kcal/mol),\"\xE5\x90\x8D\"\n"
                      "25,10.5,1\n";
    const char *const in[] = { "T/\xC2\xB0" "C", "\xE5\x90\x8D" };
    const char *const tg[] = { "\xCE\x94G\xE2\x80\xA1 (kcal/mol)" };
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, in, 2, tg, 1, 0));
    const float x[] = { 25, 1 };
    const float y[] = { 10.5f };
    CHECK(expect_data(ds, 1, 2, 1, x, y));
    mtl_dataset_destroy(ds);
    /* the BOM is not part of the first name; names match bytes exactly */
    CHECK(expect_fail("\xEF\xBB\xBF" "a,b\n1,2\n", (const char *const[]){ "\xEF\xBB\xBF" "a" }, 1,
                      NULL, 0, 0, MTL_ERR_NOT_FOUND, "no column named", NULL));
    CHECK(expect_fail("A,b\n1,2\n", A, 1, NULL, 0, 0, MTL_ERR_NOT_FOUND, "'a'", NULL));
    /* a BOM-only file is empty */
    CHECK(expect_fail("\xEF\xBB\xBF", A, 1, NULL, 0, 0, MTL_ERR_FORMAT, "empty", NULL));
    return 0;
}

TEST(blanks_and_quoted_numbers)
{
    /* spaces/tabs around a number are trimmed, quoted numbers are numbers;
     * but blanks outside the quotes of a quoted field are malformed */
    CHECK(expect_fail("a,b\n1,\"2\" \n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "after the closing quote",
                      NULL));
    CHECK(expect_fail("a,b\n1, \"2\"\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "quote inside an unquoted",
                      NULL));
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, "a,b\n  1.5\t,\" -2e1 \"\n", AB, 2, NULL, 0, 0));
    const float x[] = { 1.5f, -20 };
    CHECK(expect_data(ds, 1, 2, 0, x, NULL));
    mtl_dataset_destroy(ds);
    return 0;
}

/* ---- malformed input ------------------------------------------------------ */

TEST(malformed)
{
    CHECK(expect_fail("a,b\n1,2\n3,\"4\n5,6\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT,
                      "line 3, column 2 ('b')", "unterminated quoted field"));
    CHECK(expect_fail("\"a,b\n1,2\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 1, column 1",
                      "unterminated"));
    CHECK(expect_fail("a,b\n1,2\n3\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 3",
                      "the row has 1 field, the header has 2"));
    CHECK(expect_fail("a,b\n1,2\n3,4,5\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 3",
                      "more fields than the 2 of the header"));
    CHECK(expect_fail("a,b\n1,2,\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 2", "more fields"));
    CHECK(expect_fail("a,b\n1,2\n3,abc\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT,
                      "line 3, column 2 ('b')", "'abc' is not a number"));
    CHECK(expect_fail("a,b\n1,1.5x\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "column 2 ('b')",
                      "'1.5x' is not a number"));
    CHECK(expect_fail("a,b\n1,1.5 2\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 2", "not a number"));
    CHECK(expect_fail("a,b\n1,\"1,5\"\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "'1,5'", NULL));
    CHECK(expect_fail("a,b\n1,0x10\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "not a number", NULL));
    CHECK(expect_fail("a,b\n1,inf\n", AB, 2, NULL, 0, 0, MTL_ERR_NON_FINITE, "line 2, column 2 ('b')",
                      "'inf'"));
    CHECK(expect_fail("a,y\n1,-Infinity\n", A, 1, Y, 1, 0, MTL_ERR_NON_FINITE, "('y')", NULL));
    CHECK(expect_fail("a,b\n1,1e39\n", AB, 2, NULL, 0, 0, MTL_ERR_NON_FINITE, "float32 range", NULL));
    CHECK(expect_fail("a,y\n1,-3.5e38\n", A, 1, Y, 1, 0, MTL_ERR_NON_FINITE, "line 2", NULL));
    CHECK(expect_fail("a,b\n1,2\"\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "quote inside an unquoted",
                      NULL));
    CHECK(expect_fail("a,b\n1,\"2\"x\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "after the closing quote",
                      NULL));
    CHECK(expect_fail_n("a,b\n1,2\0\n", 9, AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "line 2", "NUL byte"));
    /* malformed text in an unused column is still malformed */
    CHECK(expect_fail("a,t\n1,x\"y\n", A, 1, NULL, 0, 0, MTL_ERR_FORMAT, "line 2, column 2", "quote"));
    /* long junk is cut in the message, control bytes shown as '?' */
    CHECK(expect_fail("a\n\"ab\tcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\"\n", A, 1, NULL,
                      0, 0, MTL_ERR_FORMAT, "'ab?cdefghijklmnopqrstuvwxyzabcdefghijklmnopq...'", NULL));
    return 0;
}

TEST(empty_inputs)
{
    CHECK(expect_fail_n("", 0, A, 1, NULL, 0, 0, MTL_ERR_FORMAT, "CSV buffer", "empty (no header row)"));
    CHECK(expect_fail("\n\r\n\n", A, 1, NULL, 0, 0, MTL_ERR_FORMAT, "empty", NULL));
    CHECK(expect_fail("a,b\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "no data rows", NULL));
    CHECK(expect_fail("a,b", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "no data rows", NULL));
    CHECK(expect_fail("a,b\n\n\n", AB, 2, NULL, 0, 0, MTL_ERR_FORMAT, "no data rows", NULL));
    /* unknown names are reported before the missing rows */
    CHECK(expect_fail("a,b\n", (const char *const[]){ "c" }, 1, NULL, 0, 0, MTL_ERR_NOT_FOUND, "'c'",
                      NULL));
    /* a one-character file */
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, "a\n7", A, 1, NULL, 0, 0));
    const float x[] = { 7 };
    CHECK(expect_data(ds, 1, 1, 0, x, NULL));
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(names_unknown_and_duplicate)
{
    const char *csv = "a,b,a,y\n1,2,3,4\n";
    CHECK(expect_fail(csv, A, 1, Y, 1, 0, MTL_ERR_FORMAT, "'a' appears twice", "columns 1 and 3"));
    /* a duplicated name nobody asks for is harmless */
    mtl_dataset *ds = NULL;
    ASSERT_OK(load_str(&ds, csv, B, 1, Y, 1, 0));
    const float x[] = { 2 };
    const float y[] = { 4 };
    CHECK(expect_data(ds, 1, 1, 1, x, y));
    mtl_dataset_destroy(ds);
    CHECK(expect_fail(csv, (const char *const[]){ "b", "nope" }, 2, Y, 1, 0, MTL_ERR_NOT_FOUND,
                      "no column named 'nope' (input 1)", "4 columns"));
    CHECK(expect_fail(csv, B, 1, (const char *const[]){ "Y" }, 1, 0, MTL_ERR_NOT_FOUND,
                      "'Y' (target 0)", NULL));
    /* blanks around a header name are kept, but the message points at them */
    CHECK(expect_fail("a, y\n1,2\n", A, 1, Y, 1, 0, MTL_ERR_NOT_FOUND, "no column named 'y'",
                      "column 2 has that name with blanks around it"));
    ASSERT_OK(load_str(&ds, "a, y\n1,2\n", A, 1, (const char *const[]){ " y" }, 1, 0));
    mtl_dataset_destroy(ds);
    /* one column asked for twice */
    CHECK(expect_fail(csv, B, 1, B, 1, 0, MTL_ERR_INVALID_ARGUMENT, "'b' is requested twice", NULL));
    CHECK(expect_fail(csv, (const char *const[]){ "y", "b", "y" }, 3, NULL, 0, 0,
                      MTL_ERR_INVALID_ARGUMENT, "requested twice", NULL));
    return 0;
}

TEST(arguments)
{
    mtl_dataset *ds = NULL;
    const char *csv = "a,y\n1,2\n";
    size_t n = strlen(csv);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(NULL, NULL, csv, n, A, 1, Y, 1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, NULL, n, A, 1, Y, 1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, A, 0, Y, 1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, NULL, 1, Y, 1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, A, 1, NULL, 1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, A, 1, Y, -1, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, A, 1, Y, 1, 4));
    ASSERT_MSG_HAS("unknown flags");
    const char *const with_null[] = { "a", NULL };
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT,
                  mtl_dataset_load_csv_buffer(&ds, NULL, csv, n, with_null, 2, Y, 1, 0));
    ASSERT_MSG_HAS("input_names[1] is NULL");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_load_csv(&ds, NULL, NULL, A, 1, Y, 1, 0));
    ASSERT_STATUS(MTL_ERR_IO, mtl_dataset_load_csv(&ds, NULL, "/nonexistent/dir/x.csv", A, 1, Y, 1, 0));
    ASSERT_MSG_HAS("CSV file '/nonexistent/dir/x.csv': cannot open: No such file");
    ASSERT_STATUS(MTL_ERR_IO, mtl_dataset_load_csv(&ds, NULL, "/", A, 1, Y, 1, 0)); /* a directory */
    ASSERT(ds == NULL);
    /* size 0 with a NULL pointer is an empty buffer, not a bad argument */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_dataset_load_csv_buffer(&ds, NULL, NULL, 0, A, 1, Y, 1, 0));
    return 0;
}

/* ---- limits --------------------------------------------------------------- */

TEST(huge_fields)
{
    /* 1 MiB is the documented cap: a field of exactly 1 MiB (blanks around
     * a number) loads, one byte more fails -- also in an unused column. */
    size_t cap = MTLI_CSV_MAX_FIELD_BYTES;
    size_t n = cap + 64;
    char *csv = malloc(n + 16);
    ASSERT(csv);
    for (int over = 0; over <= 1; over++) {
        for (int unused = 0; unused <= 1; unused++) {
            size_t len = cap + (size_t)over;
            size_t k = (size_t)sprintf(csv, "a,b\n1,");
            memset(csv + k, ' ', len - 1);
            csv[k + len - 1] = '7';
            k += len;
            csv[k++] = '\n';
            const char *const *in = unused ? A : AB;
            mtl_dataset *ds = NULL;
            mtl_status st = mtl_dataset_load_csv_buffer(&ds, NULL, csv, k, in, unused ? 1 : 2, NULL, 0, 0);
            if (!over) {
                if (st != MTL_OK) {
                    free(csv);
                    FAILF("field of %zu bytes: %s", len, mtl_last_error_message());
                }
                float x[2];
                ASSERT_OK(mtl_dataset_get_inputs(ds, 0, 1, x, 2));
                if (!unused) ASSERT(x[1] == 7.0f);
                mtl_dataset_destroy(ds);
            } else if (st != MTL_ERR_FORMAT || !strstr(mtl_last_error_message(), "1048576 bytes") ||
                       !strstr(mtl_last_error_message(), "line 2, column 2")) {
                free(csv);
                FAILF("field of %zu bytes: status %d, %s", len, (int)st, mtl_last_error_message());
            }
        }
    }
    free(csv);
    return 0;
}

TEST(row_and_column_limits)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    mtli_csv_spec spec = { .input_names = A, .n_inputs = 1 };
    mtli_csv_limits_default(&spec.limits);
    ASSERT(spec.limits.max_field_bytes == ((size_t)1 << 20));
    ASSERT(spec.limits.max_columns == ((int64_t)1 << 20));
    ASSERT(spec.limits.max_rows == INT32_MAX);
    mtli_csv_table t;
    memset(&t, 0, sizeof t);

    spec.limits.max_rows = 3;
    const char *three = "a\n1\n2\n3\n";
    const char *four = "a\n1\n2\n3\n4\n";
    ASSERT_OK(mtli_csv_parse_buffer(&s, three, strlen(three), &spec, &t));
    ASSERT_EQ_INT(t.n_rows, 3);
    ASSERT(t.x[0] == 1 && t.x[1] == 2 && t.x[2] == 3 && t.y == NULL);
    mtli_csv_table_free(&s, &t);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_csv_parse_buffer(&s, four, strlen(four), &spec, &t));
    ASSERT_MSG_HAS("line 5: more than 3 data rows");
    ASSERT(t.x == NULL); /* untouched */

    mtli_csv_limits_default(&spec.limits);
    spec.limits.max_columns = 3;
    const char *wide = "a,b,c,d\n1,2,3,4\n";
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_csv_parse_buffer(&s, wide, strlen(wide), &spec, &t));
    ASSERT_MSG_HAS("more than 3 columns");
    const char *narrow = "a,b,c\n1,2,3\n";
    ASSERT_OK(mtli_csv_parse_buffer(&s, narrow, strlen(narrow), &spec, &t));
    ASSERT(t.n_rows == 1 && t.x[0] == 1);
    mtli_csv_table_free(&s, &t);
    return 0;
}

/* ---- gzip ------------------------------------------------------------------ */

/* A random table written as CSV text: random column order, an unused text
 * column full of quotes, commas and line breaks, CRLF or LF, quoted or
 * bare numbers, missing labels in three spellings.  Values are printed with
 * %.9g in the C locale, which round-trips every float exactly. */
typedef struct random_table {
    int64_t n_rows;
    float x[300 * 4];
    float y[300 * 2];
    char *text;
    size_t len;
} random_table;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* A float of random sign, magnitude 1e-40 .. 1e38, or a small integer. */
static float random_float(void)
{
    uint64_t r = next_u64();
    if (r % 4 == 0) return (float)((int)(r >> 8) % 2001 - 1000);
    float v;
    do {
        uint32_t bits = (uint32_t)(next_u64() >> 11);
        memcpy(&v, &bits, sizeof v);
    } while (!isfinite(v));
    return v;
}

static int make_random_table(random_table *t, int64_t n_rows)
{
    const char *order = "x0,\"y 1\",notes,x2,x1,y0,x3";
    size_t cap = 256 + (size_t)n_rows * 400;
    t->text = malloc(cap);
    if (!t->text) return 1;
    t->n_rows = n_rows;
    size_t k = 0;
    bool crlf = next_u64() & 1;
    k += (size_t)sprintf(t->text + k, "%s%s", order, crlf ? "\r\n" : "\n");
    for (int64_t r = 0; r < n_rows; r++) {
        for (int c = 0; c < 4; c++) t->x[r * 4 + c] = random_float();
        for (int c = 0; c < 2; c++) t->y[r * 2 + c] = (next_u64() % 5 == 0) ? NAN : random_float();
        /* file order: x0, y1, notes, x2, x1, y0, x3 */
        float row[7] = { t->x[r * 4], t->y[r * 2 + 1], 0, t->x[r * 4 + 2], t->x[r * 4 + 1], t->y[r * 2],
                         t->x[r * 4 + 3] };
        for (int c = 0; c < 7; c++) {
            if (c) t->text[k++] = ',';
            if (c == 2) {
                k += (size_t)sprintf(t->text + k, "\"row %lld, \"\"quoted\"\"\r\nsecond line\"",
                                     (long long)r);
                continue;
            }
            bool quote = next_u64() % 3 == 0;
            if (quote) t->text[k++] = '"';
            if (isnan(row[c])) {
                static const char *const spellings[] = { "", "NaN", "nan" };
                k += (size_t)sprintf(t->text + k, "%s", spellings[next_u64() % 3]);
            } else {
                k += (size_t)sprintf(t->text + k, "%.9g", (double)row[c]);
            }
            if (quote) t->text[k++] = '"';
        }
        k += (size_t)sprintf(t->text + k, "%s", crlf ? "\r\n" : "\n");
    }
    t->len = k;
    return 0;
}

static const char *const RT_IN[] = { "x0", "x1", "x2", "x3" };
static const char *const RT_TG[] = { "y0", "y 1" };

TEST(random_tables_round_trip)
{
    static random_table t;
    for (int rep = 0; rep < 20; rep++) {
        CHECK(make_random_table(&t, 300));
        mtl_dataset *ds = NULL;
        mtl_status st = mtl_dataset_load_csv_buffer(&ds, NULL, t.text, t.len, RT_IN, 4, RT_TG, 2, 0);
        if (st != MTL_OK) {
            free(t.text);
            FAILF("rep %d: %s", rep, mtl_last_error_message());
        }
        int bad = expect_data(ds, 300, 4, 2, t.x, t.y);
        mtl_dataset_destroy(ds);
        free(t.text);
        if (bad) FAILF("rep %d", rep);
    }
    return 0;
}

TEST(gzip_and_plain_identical)
{
    static random_table t;
    CHECK(make_random_table(&t, 300));
    const char *plain = tmp_path("table.csv");
    const char *gz = tmp_path("table.csv.gz");
    ASSERT(plain && gz);
    int bad = write_file(plain, t.text, t.len) || write_gz(gz, t.text, t.len, "wb");
    ASSERT(!bad);

    mtl_dataset *d1 = NULL, *d2 = NULL, *d3 = NULL, *d4 = NULL;
    ASSERT_OK(mtl_dataset_load_csv(&d1, NULL, plain, RT_IN, 4, RT_TG, 2, 0));
    ASSERT_OK(mtl_dataset_load_csv(&d2, NULL, gz, RT_IN, 4, RT_TG, 2, 0));
    size_t gz_len = 0;
    unsigned char *gz_bytes = read_file(gz, &gz_len);
    ASSERT(gz_bytes && gz_len > 2 && gz_bytes[0] == 0x1f && gz_bytes[1] == 0x8b);
    ASSERT_OK(mtl_dataset_load_csv_buffer(&d3, NULL, gz_bytes, gz_len, RT_IN, 4, RT_TG, 2, 0));
    ASSERT_OK(mtl_dataset_load_csv_buffer(&d4, NULL, t.text, t.len, RT_IN, 4, RT_TG, 2, 0));
    mtl_dataset *all[] = { d1, d2, d3, d4 };
    for (int i = 0; i < 4; i++) CHECK(expect_data(all[i], 300, 4, 2, t.x, t.y));
    for (int i = 0; i < 4; i++) mtl_dataset_destroy(all[i]);

    /* a truncated or corrupted gzip file is a format error */
    mtl_dataset *ds = NULL;
    ASSERT_STATUS(MTL_ERR_FORMAT,
                  mtl_dataset_load_csv_buffer(&ds, NULL, gz_bytes, gz_len - 9, RT_IN, 4, RT_TG, 2, 0));
    ASSERT_MSG_HAS("truncated gzip");
    const char *cut = tmp_path("cut.csv.gz");
    CHECK(write_file(cut, gz_bytes, gz_len / 2));
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_dataset_load_csv(&ds, NULL, cut, RT_IN, 4, RT_TG, 2, 0));
    ASSERT_MSG_HAS("cut.csv.gz");
    gz_bytes[gz_len / 2] ^= 0x55;
    gz_bytes[gz_len / 2 + 1] ^= 0xAA;
    mtl_status st = mtl_dataset_load_csv_buffer(&ds, NULL, gz_bytes, gz_len, RT_IN, 4, RT_TG, 2, 0);
    /* zlib sees corrupt data (or, rarely, a CRC mismatch): either way FORMAT */
    ASSERT_EQ_INT(st, MTL_ERR_FORMAT);
    ASSERT(ds == NULL);
    free(gz_bytes);
    unlink(cut);
    unlink(plain);
    unlink(gz);
    free(t.text);
    return 0;
}

TEST(gzip_members_and_small_files)
{
    /* two gzip members (as `cat a.gz b.gz` makes) read as one text */
    const char *gz = tmp_path("members.csv.gz");
    const char *part1 = "a,y\n1,2\n3,";
    const char *part2 = "4\n5,6\n";
    CHECK(write_gz(gz, part1, strlen(part1), "wb"));
    CHECK(write_gz(gz, part2, strlen(part2), "ab"));
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_load_csv(&ds, NULL, gz, A, 1, Y, 1, 0));
    const float x[] = { 1, 3, 5 };
    const float y[] = { 2, 4, 6 };
    CHECK(expect_data(ds, 3, 1, 1, x, y));
    mtl_dataset_destroy(ds);
    /* trailing garbage after the gzip data is an error, not ignored */
    FILE *f = fopen(gz, "ab");
    ASSERT(f);
    fputs("junk", f);
    fclose(f);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_dataset_load_csv(&ds, NULL, gz, A, 1, Y, 1, 0));
    ASSERT_MSG_HAS("gzip");
    /* an empty gzip file and an empty plain file */
    CHECK(write_gz(gz, "", 0, "wb"));
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_dataset_load_csv(&ds, NULL, gz, A, 1, Y, 1, 0));
    ASSERT_MSG_HAS("empty");
    const char *plain = tmp_path("empty.csv");
    CHECK(write_file(plain, "", 0));
    ASSERT_STATUS(MTL_ERR_FORMAT, mtl_dataset_load_csv(&ds, NULL, plain, A, 1, Y, 1, 0));
    ASSERT_MSG_HAS("empty.csv': empty");
    /* a one-byte file: too short to sniff, still read */
    CHECK(write_file(plain, "a", 1));
    ASSERT_STATUS(MTL_ERR_NOT_FOUND, mtl_dataset_load_csv(&ds, NULL, plain, A, 1, Y, 1, 0));
    ASSERT_MSG_HAS("no column named 'y'");
    /* a file larger than one read chunk, with records across chunk ends */
    size_t n = 0, cap = 600000;
    char *big = malloc(cap);
    ASSERT(big);
    n += (size_t)sprintf(big, "a,y\n");
    int64_t rows = 0;
    while (n + 40 < cap) {
        n += (size_t)sprintf(big + n, "%lld,\"%lld.5\"\r\n", (long long)rows, (long long)rows * 3);
        rows++;
    }
    CHECK(write_file(plain, big, n));
    CHECK(write_gz(gz, big, n, "wb"));
    free(big);
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(mtl_dataset_load_csv(&ds, NULL, i ? gz : plain, A, 1, Y, 1, 0));
        ASSERT_EQ_INT(mtl_dataset_row_count(ds), rows);
        float xy[2];
        for (int64_t r = 0; r < rows; r += 997) {
            ASSERT_OK(mtl_dataset_get_inputs(ds, r, 1, xy, 1));
            ASSERT_OK(mtl_dataset_get_targets(ds, r, 1, xy + 1, 1));
            ASSERT(xy[0] == (float)r && xy[1] == (float)((double)r * 3 + 0.5));
        }
        mtl_dataset_destroy(ds);
    }
    unlink(gz);
    unlink(plain);
    return 0;
}

/* ---- numbers and locales --------------------------------------------------- */

TEST(number_grammar)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    ASSERT(c != (locale_t)0);
    struct {
        const char *text;
        float value;
    } good[] = {
        { "0", 0.0f }, { "+1", 1.0f }, { "1.", 1.0f }, { ".5", 0.5f }, { "-.5", -0.5f },
        { "1e3", 1000.0f }, { "1E+3", 1000.0f }, { "25e-1", 2.5f }, { "  7\t", 7.0f },
        { "0001.2500", 1.25f }, { "123456789", 123456792.0f }, /* nearest float */
        { "16777217", 16777216.0f },                            /* tie: to even */
        { "16777219", 16777220.0f },                            /* tie: to even (up) */
        { "0.1", 0.1f }, { "-51.881526", -51.881526f }, { "15.875896", 15.875896f },
        { "3.4028235e38", FLT_MAX },
        { "3.40282356779733661637539395458142568447e38", FLT_MAX }, /* just below the overflow tie */
        { "1e-46", 0.0f },                                          /* underflow */
        { "1.4e-45", 1.40129846e-45f },                             /* smallest subnormal */
        { "0.1000000000000000000000000000000000001", 0.1f },
        { "100000000000000000000000", 1e23f }, /* > 19 digits, all significant zeros */
        { "0.000000000000000000000000000000000000000000001", 1.40129846e-45f },
        { "1e-0000000000000000000000000000000000000000000000000003", 1e-3f },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        float v = -12345.0f;
        mtli_csv_cell cell = mtli_csv_parse_number(good[i].text, strlen(good[i].text), c, &v);
        if (cell != MTLI_CSV_CELL_NUMBER || memcmp(&v, &good[i].value, sizeof v) != 0)
            FAILF("'%s': cell %d value %.9g, expected %.9g", good[i].text, (int)cell, (double)v,
                  (double)good[i].value);
    }
    float v = 1.0f;
    ASSERT(mtli_csv_parse_number("-0", 2, c, &v) == MTLI_CSV_CELL_NUMBER && v == 0.0f && signbit(v));
    ASSERT(mtli_csv_parse_number("-0e999", 6, c, &v) == MTLI_CSV_CELL_NUMBER && v == 0.0f && signbit(v));

    struct {
        const char *text;
        mtli_csv_cell cell;
    } bad[] = {
        { "", MTLI_CSV_CELL_MISSING }, { " \t ", MTLI_CSV_CELL_MISSING }, { "NaN", MTLI_CSV_CELL_MISSING },
        { "nan", MTLI_CSV_CELL_MISSING }, { " NAN ", MTLI_CSV_CELL_MISSING },
        { "-nan", MTLI_CSV_CELL_NOT_NUMBER }, { "nan(1)", MTLI_CSV_CELL_NOT_NUMBER },
        { "NA", MTLI_CSV_CELL_NOT_NUMBER }, { "abc", MTLI_CSV_CELL_NOT_NUMBER },
        { "1.5x", MTLI_CSV_CELL_NOT_NUMBER }, { "1,5", MTLI_CSV_CELL_NOT_NUMBER },
        { "1 5", MTLI_CSV_CELL_NOT_NUMBER }, { "--1", MTLI_CSV_CELL_NOT_NUMBER },
        { "+-1", MTLI_CSV_CELL_NOT_NUMBER }, { "- 1", MTLI_CSV_CELL_NOT_NUMBER },
        { ".", MTLI_CSV_CELL_NOT_NUMBER }, { "-.", MTLI_CSV_CELL_NOT_NUMBER },
        { "e5", MTLI_CSV_CELL_NOT_NUMBER }, { "1e", MTLI_CSV_CELL_NOT_NUMBER },
        { "1e+", MTLI_CSV_CELL_NOT_NUMBER }, { "1e 5", MTLI_CSV_CELL_NOT_NUMBER },
        { "0x10", MTLI_CSV_CELL_NOT_NUMBER }, { "0x1p3", MTLI_CSV_CELL_NOT_NUMBER },
        { "1..2", MTLI_CSV_CELL_NOT_NUMBER }, { "1.2.3", MTLI_CSV_CELL_NOT_NUMBER },
        { "1d5", MTLI_CSV_CELL_NOT_NUMBER }, { "\xD9\xA1", MTLI_CSV_CELL_NOT_NUMBER }, /* Arabic one */
        { "1\xC2\xA0", MTLI_CSV_CELL_NOT_NUMBER }, /* no-break space is not trimmed */
        { "\xE2\x88\x9E", MTLI_CSV_CELL_NOT_NUMBER }, /* the infinity sign */
        { "inf", MTLI_CSV_CELL_NON_FINITE }, { "-INF", MTLI_CSV_CELL_NON_FINITE },
        { "+Infinity", MTLI_CSV_CELL_NON_FINITE }, { "infinit", MTLI_CSV_CELL_NOT_NUMBER },
        { "1e39", MTLI_CSV_CELL_NON_FINITE }, { "-1e39", MTLI_CSV_CELL_NON_FINITE },
        { "3.40282356779733661637539395458142568448e38", MTLI_CSV_CELL_NON_FINITE }, /* the tie */
        { "1e999999999999999999999", MTLI_CSV_CELL_NON_FINITE },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float w = -12345.0f;
        mtli_csv_cell cell = mtli_csv_parse_number(bad[i].text, strlen(bad[i].text), c, &w);
        if (cell != bad[i].cell || w != -12345.0f)
            FAILF("'%s': cell %d (value %g), expected cell %d", bad[i].text, (int)cell, (double)w,
                  (int)bad[i].cell);
    }
    freelocale(c);
    return 0;
}

/* Random decimal strings (short ones take the exact fast path, long ones
 * strtof_l) against glibc's strtof in the C locale. */
TEST(number_rounding_matches_strtof)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    ASSERT(c != (locale_t)0);
    char text[64];
    for (int i = 0; i < 200000; i++) {
        uint64_t r = next_u64();
        int n_int = (int)(r % 9), n_frac = (int)((r >> 4) % 9);
        size_t k = 0;
        if ((r >> 8) & 1) text[k++] = '-';
        for (int d = 0; d < n_int; d++) text[k++] = (char)('0' + next_u64() % 10);
        if (n_frac || !n_int) {
            text[k++] = '.';
            for (int d = 0; d < (n_frac ? n_frac : 1); d++) text[k++] = (char)('0' + next_u64() % 10);
        }
        if ((r >> 9) % 3 == 0) k += (size_t)sprintf(text + k, "e%d", (int)((r >> 12) % 31) - 15);
        text[k] = '\0';
        float want = strtof_l(text, NULL, c), got = 0;
        mtli_csv_cell cell = mtli_csv_parse_number(text, k, c, &got);
        if (cell != MTLI_CSV_CELL_NUMBER || memcmp(&got, &want, sizeof got) != 0)
            FAILF("'%s': cell %d, %.9g, strtof gives %.9g", text, (int)cell, (double)got, (double)want);
    }
    freelocale(c);
    return 0;
}

/* Make a comma-decimal locale current: an installed one, or one compiled
 * with localedef into the temporary directory (LOCPATH).  NULL if none. */
static const char *use_comma_locale(void)
{
    static const char *const names[] = { "de_DE.UTF-8", "de_DE.utf8", "de_DE", "fr_FR.UTF-8",
                                         "fr_FR.utf8", "nl_NL.UTF-8", "ru_RU.UTF-8", "es_ES.UTF-8" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (setlocale(LC_ALL, names[i]) && localeconv()->decimal_point[0] == ',') return names[i];
    const char *dir = tmp_path("locales");
    if (!dir || access("/usr/bin/localedef", X_OK) != 0) return NULL;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && /usr/bin/localedef -i de_DE -f ISO-8859-1 '%s/de_DE.ISO-8859-1' "
             ">/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0) return NULL;
    setenv("LOCPATH", dir, 1);
    if (setlocale(LC_ALL, "de_DE.ISO-8859-1") && localeconv()->decimal_point[0] == ',')
        return "de_DE.ISO-8859-1 (compiled with localedef into a temporary LOCPATH)";
    return NULL;
}

TEST(locale_independent)
{
    const char *csv = "a,b,y\n1.5,-51.881526,2.25e-3\n0.1,1e10,\"-3.125e2\"\n";
    /* the truth, computed in the C locale before switching */
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    ASSERT(c != (locale_t)0);
    const float x[] = { 1.5f, strtof_l("-51.881526", NULL, c), strtof_l("0.1", NULL, c), 1e10f };
    const float y[] = { strtof_l("2.25e-3", NULL, c), -312.5f };
    freelocale(c);

    char *saved = strdup(setlocale(LC_ALL, NULL));
    ASSERT(saved);
    const char *name = use_comma_locale();
    if (name) {
        printf("  testing under LC_ALL=%s: decimal point '%s'\n", name, localeconv()->decimal_point);
        /* the locale is really in effect for the process's strtod */
        ASSERT(strtod("1.5", NULL) == 1.0);
    } else {
        printf("  NOTE: no comma-decimal locale is installed and localedef failed; the loader is "
               "checked in the current locale only\n");
    }
    mtl_dataset *ds = NULL;
    mtl_status st = load_str(&ds, csv, AB, 2, Y, 1, 0);
    int bad = st != MTL_OK || expect_data(ds, 2, 2, 1, x, y) != 0;
    mtl_dataset_destroy(ds);
    /* a German-style cell is not a number, whatever the locale */
    mtl_status st2 = load_str(&ds, "a,b\n\"1,5\",2\n", AB, 2, NULL, 0, 0);
    setlocale(LC_ALL, saved);
    free(saved);
    unsetenv("LOCPATH");
    if (st != MTL_OK) FAILF("load under the locale: %s", mtl_last_error_message());
    ASSERT(!bad);
    ASSERT_EQ_INT(st2, MTL_ERR_FORMAT);
    return 0;
}

/* ---- memory ----------------------------------------------------------------- */

typedef struct alloc_counter {
    long calls, fail_at, live;
} alloc_counter;

static void *counting_alloc(void *user, size_t size, size_t alignment)
{
    alloc_counter *a = user;
    if (a->calls++ == a->fail_at) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    a->live++;
    return p;
}

static void counting_free(void *user, void *p)
{
    alloc_counter *a = user;
    a->live--;
    free(p);
}

/* Fail the 1st, 2nd, ... allocation until the load succeeds: each failure
 * is MTL_ERR_OUT_OF_MEMORY, leaves *out NULL and leaks nothing. */
TEST(allocation_failures)
{
    static random_table t;
    CHECK(make_random_table(&t, 100));
    const char *gz = tmp_path("torture.csv.gz");
    CHECK(write_gz(gz, t.text, t.len, "wb"));
    size_t gz_len = 0;
    unsigned char *gz_bytes = read_file(gz, &gz_len);
    ASSERT(gz_bytes);
    for (int source = 0; source < 3; source++) {
        alloc_counter counter = { 0, -1, 0 };
        mtl_allocator al = MTL_ALLOCATOR_INIT;
        al.alloc = counting_alloc;
        al.free = counting_free;
        al.user = &counter;
        mtl_context *ctx = NULL;
        ASSERT_OK(mtl_context_create(&ctx, &al));
        long ctx_allocs = counter.live;
        int failures = 0;
        for (long fail_at = 0;; fail_at++) {
            counter.calls = 0;
            counter.fail_at = fail_at;
            mtl_dataset *ds = NULL;
            mtl_status st = source == 0 ? mtl_dataset_load_csv_buffer(&ds, ctx, t.text, t.len, RT_IN, 4, RT_TG, 2, 0)
                          : source == 1 ? mtl_dataset_load_csv_buffer(&ds, ctx, gz_bytes, gz_len, RT_IN, 4, RT_TG, 2, 0)
                                        : mtl_dataset_load_csv(&ds, ctx, gz, RT_IN, 4, RT_TG, 2, 0);
            if (st == MTL_OK) {
                CHECK(expect_data(ds, 100, 4, 2, t.x, t.y));
                mtl_dataset_destroy(ds);
                ASSERT_EQ_INT(counter.live, ctx_allocs);
                break;
            }
            if (st != MTL_ERR_OUT_OF_MEMORY || ds != NULL || counter.live != ctx_allocs)
                FAILF("source %d, failing allocation %ld: status %d, %ld blocks live (%s)", source,
                      fail_at, (int)st, counter.live - ctx_allocs, mtl_last_error_message());
            failures++;
        }
        ASSERT(failures >= 3);
        mtl_context_destroy(ctx);
        ASSERT_EQ_INT(counter.live, 0);
    }
    free(gz_bytes);
    unlink(gz);
    free(t.text);
    return 0;
}

TEST(views_outlive_the_loaded_set)
{
    mtl_dataset *ds = NULL, *view = NULL;
    ASSERT_OK(load_str(&ds, "a,y\n1,2\n3,4\n5,6\n", A, 1, Y, 1, 0));
    ASSERT_OK(mtl_dataset_view(&view, ds, 2, (const int64_t[]){ 2, 0 }));
    mtl_dataset_destroy(ds); /* the view keeps the loaded arrays alive */
    float x[2], y[2];
    ASSERT_OK(mtl_dataset_get_inputs(view, 0, 2, x, 1));
    ASSERT_OK(mtl_dataset_get_targets(view, 0, 2, y, 1));
    ASSERT(x[0] == 5 && x[1] == 1 && y[0] == 6 && y[1] == 2);
    mtl_dataset_destroy(view);
    return 0;
}

/* The demo data (examples/data, 5,269 rows x 1,046 columns, gzip): every
 * value was checked bit for bit against numpy (np.float32 of Python's csv
 * reader's text); here the sums of that reference, computed in float64. */
TEST(demo_data_matches_numpy)
{
    const char *root = getenv("MTL_SOURCE_ROOT");
    if (!root) FAILF("MTL_SOURCE_ROOT is not set (run through meson test)");
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/data/cycloadd_features.csv.gz", root);
    static char fp[1024][16];
    const char *names[1042];
    for (int i = 0; i < 1024; i++) {
        snprintf(fp[i], sizeof fp[i], "fp_%d", i);
        names[i] = fp[i];
    }
    static const char *const rest[] = { "fp_other", "d_n_heavy", "d_n_C", "d_n_N", "d_n_O", "d_n_H",
                                        "d_n_reac_mols", "d_n_prod_mols", "d_bonds_broken",
                                        "d_bonds_formed", "d_bonds_order_changed", "d_delta_rings",
                                        "d_delta_arom_atoms", "d_delta_abs_charge",
                                        "d_delta_radical_e", "d_delta_logp", "d_delta_mr",
                                        "d_delta_tpsa" };
    for (int i = 0; i < 18; i++) names[1024 + i] = rest[i];
    const char *const tg[] = { "G_act", "G_r" };
    mtl_dataset *ds = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT_OK(mtl_dataset_load_csv(&ds, NULL, path, names, 1042, tg, 2, 0));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  demo data loaded in %.0f ms (information only)\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6);
    ASSERT_EQ_INT(mtl_dataset_row_count(ds), 5269);
    ASSERT_EQ_INT(mtl_dataset_input_count(ds), 1042);
    float *x = malloc(sizeof(float) * 5269 * 1042), *y = malloc(sizeof(float) * 5269 * 2);
    ASSERT(x && y);
    int bad = mtl_dataset_get_inputs(ds, 0, 5269, x, 1042) != MTL_OK ||
              mtl_dataset_get_targets(ds, 0, 5269, y, 2) != MTL_OK;
    mtl_dataset_destroy(ds);
    double sx = 0, s_last = 0, s_act = 0, s_r = 0;
    for (size_t i = 0; i < (size_t)5269 * 1042; i++) sx += x[i];
    for (size_t r = 0; r < 5269; r++) {
        s_last += x[r * 1042 + 1041];
        s_act += y[2 * r];
        s_r += y[2 * r + 1];
    }
    float first[2] = { y[0], y[1] }, last_tpsa = x[(size_t)5268 * 1042 + 1041];
    free(x);
    free(y);
    ASSERT(!bad);
    ASSERT_NEAR(sx, 356750.47875301633, 1e-12, 0);
    ASSERT_NEAR(s_last, -15776.280126228929, 1e-12, 0);
    ASSERT_NEAR(s_act, 110858.1390107274, 1e-12, 0);
    ASSERT_NEAR(s_r, -141363.45766547183, 1e-12, 0);
    ASSERT(first[0] == 15.875896f && first[1] == -51.881526f && last_tpsa == 0.23f);
    return 0;
}

static void cleanup_dir(void)
{
    if (!g_dir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
    int rc = run(argc, argv);
    cleanup_dir();
    return rc;
}

static int run(int argc, char **argv)
{
    static const test_case tests[] = {
        TEST_ENTRY(columns_by_name_in_any_order),
        TEST_ENTRY(missing_targets_are_nan),
        TEST_ENTRY(missing_input_is_an_error),
        TEST_ENTRY(drop_incomplete),
        TEST_ENTRY(rfc4180_quoting),
        TEST_ENTRY(line_endings),
        TEST_ENTRY(bom_and_utf8_names),
        TEST_ENTRY(blanks_and_quoted_numbers),
        TEST_ENTRY(malformed),
        TEST_ENTRY(empty_inputs),
        TEST_ENTRY(names_unknown_and_duplicate),
        TEST_ENTRY(arguments),
        TEST_ENTRY(huge_fields),
        TEST_ENTRY(row_and_column_limits),
        TEST_ENTRY(random_tables_round_trip),
        TEST_ENTRY(gzip_and_plain_identical),
        TEST_ENTRY(gzip_members_and_small_files),
        TEST_ENTRY(number_grammar),
        TEST_ENTRY(number_rounding_matches_strtof),
        TEST_ENTRY(locale_independent),
        TEST_ENTRY(allocation_failures),
        TEST_ENTRY(views_outlive_the_loaded_set),
        TEST_ENTRY(demo_data_matches_numpy),
    };
    return test_main(argc, argv, tests, (int)(sizeof tests / sizeof tests[0]));
}
