/* fuzz_csv.c -- mtl_dataset_load_csv_buffer on the input (plain or gzip).
 *
 * Column names are taken from the input's own first line (split at
 * commas, quotes stripped), so the fuzzer reaches the data rows: once
 * with every column but the last as inputs and the last as target, once
 * with the first column as input, the rest as targets and
 * MTL_CSV_DROP_INCOMPLETE.  A data set that loads must have finite inputs
 * and no infinite target.  The cell parser is also checked against
 * strtof_l in the C locale on the input's first cell. */
#include <locale.h>
#include <math.h>

#include "fuzz_common.h"
#include "csv.h"

#define MAX_NAMES 8
#define MAX_NAME 64

/* Naive split of the first line: enough to produce names that match. */
static int header_names(const uint8_t *data, size_t size, char names[MAX_NAMES][MAX_NAME])
{
    size_t i = 0;
    if (size >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF) i = 3; /* BOM */
    int n = 0;
    size_t len = 0;
    for (;; i++) {
        int end = i >= size || data[i] == '\n' || data[i] == '\r';
        if (end || data[i] == ',') {
            names[n][len] = '\0';
            if (++n == MAX_NAMES || end) break;
            len = 0;
        } else if (data[i] != '"' && len + 1 < MAX_NAME) {
            names[n][len++] = data[i] ? (char)data[i] : '?';
        }
    }
    return n;
}

static void check_loaded(mtl_dataset *ds, int64_t n_in, int64_t n_tg)
{
    int64_t rows = mtl_dataset_row_count(ds);
    FUZZ_CHECK(rows >= 1 && mtl_dataset_input_count(ds) == n_in && mtl_dataset_target_count(ds) == n_tg,
               "shape of a loaded data set");
    if (rows > 100000) return;
    float *x = malloc(sizeof(float) * (size_t)(rows * n_in));
    FUZZ_CHECK(x, "malloc");
    FUZZ_CHECK(mtl_dataset_get_inputs(ds, 0, rows, x, n_in) == MTL_OK, "get_inputs");
    for (int64_t i = 0; i < rows * n_in; i++) FUZZ_CHECK(isfinite(x[i]), "input %lld is not finite", (long long)i);
    free(x);
    if (n_tg > 0) {
        float *y = malloc(sizeof(float) * (size_t)(rows * n_tg));
        FUZZ_CHECK(y, "malloc");
        FUZZ_CHECK(mtl_dataset_get_targets(ds, 0, rows, y, n_tg) == MTL_OK, "get_targets");
        for (int64_t i = 0; i < rows * n_tg; i++) FUZZ_CHECK(!isinf(y[i]), "target %lld is infinite", (long long)i);
        free(y);
    }
}

static void load(const uint8_t *data, size_t size, const char *const *in, int64_t n_in, const char *const *tg,
                 int64_t n_tg, unsigned flags)
{
    mtl_dataset *ds = NULL;
    mtl_status st = mtl_dataset_load_csv_buffer(&ds, fuzz_context(), data, size, in, n_in, tg, n_tg, flags);
    FUZZ_CHECK(st == MTL_OK || st == MTL_ERR_FORMAT || st == MTL_ERR_NOT_FOUND || st == MTL_ERR_NON_FINITE ||
                   st == MTL_ERR_OUT_OF_MEMORY || st == MTL_ERR_INVALID_ARGUMENT,
               "load_csv_buffer gave %d", (int)st);
    FUZZ_CHECK((st == MTL_OK) == (ds != NULL), "out parameter on status %d", (int)st);
    if (ds) {
        check_loaded(ds, n_in, n_tg);
        mtl_dataset_destroy(ds);
    }
}

/* The first cell (up to a comma or line end) as a number: when libmtl
 * calls it a finite number, strtof_l in the C locale must agree bitwise. */
static void check_number(const uint8_t *data, size_t size)
{
    static locale_t c;
    if (!c) c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    char text[80];
    size_t n = 0;
    while (n < size && n < sizeof text - 1 && data[n] != ',' && data[n] != '\n' && data[n] != '\r' && data[n])
        text[n] = (char)data[n], n++;
    text[n] = '\0';
    float got = 0;
    if (mtli_csv_parse_number(text, n, c, &got) != MTLI_CSV_CELL_NUMBER) return;
    float want = strtof_l(text, NULL, c);
    FUZZ_CHECK(memcmp(&got, &want, sizeof got) == 0, "'%s' parsed as %.9g, strtof gives %.9g", text, (double)got,
               (double)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_number(data, size);
    char names[MAX_NAMES][MAX_NAME];
    const char *p[MAX_NAMES];
    int n = header_names(data, size, names);
    for (int i = 0; i < n; i++) p[i] = names[i];
    if (n == 1) {
        load(data, size, p, 1, NULL, 0, 0);
    } else {
        load(data, size, p, n - 1, p + n - 1, 1, 0);
        load(data, size, p, 1, p + 1, n - 1, MTL_CSV_DROP_INCOMPLETE);
    }
    return 0;
}
