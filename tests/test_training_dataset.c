/* test_training_dataset.c -- data sets through the public API: zero-copy
 * binding vs copies, views (of views) outliving their parent, accessors,
 * and validation messages naming row and column. */
#include "harness.h"

#include <stdint.h>

/* 4 rows x 3 inputs with ld 4 (a padding column), 2 targets with ld 2. */
static float X[4 * 4] = { 0, 1, 2, -1, 10, 11, 12, -1, 20, 21, 22, -1, 30, 31, 32, -1 };
static float Y[4 * 2] = { 0.5f, 1, 1.5f, NAN, 2.5f, 0, 3.5f, 1 };

TEST(bind_and_copy)
{
    mtl_dataset *bound = NULL, *copy = NULL;
    ASSERT_OK(mtl_dataset_create(&bound, NULL, 4, 3, 2, X, 4, Y, 2, NULL, 0, NULL, 0));
    ASSERT_OK(mtl_dataset_create(&copy, NULL, 4, 3, 2, X, 4, Y, 2, NULL, 0, NULL, MTL_DATASET_COPY));
    ASSERT_EQ_INT(mtl_dataset_row_count(bound), 4);
    ASSERT_EQ_INT(mtl_dataset_input_count(copy), 3);
    ASSERT_EQ_INT(mtl_dataset_target_count(copy), 2);

    float x[2 * 5], y[2 * 2];
    ASSERT_OK(mtl_dataset_get_inputs(copy, 1, 2, x, 5));
    ASSERT(x[0] == 10 && x[2] == 12 && x[5] == 20 && x[7] == 22);
    ASSERT_OK(mtl_dataset_get_targets(copy, 0, 2, y, 2));
    ASSERT(y[0] == 0.5f && y[2] == 1.5f && isnan(y[3]));

    /* Zero-copy sees a change of the host array; the copy does not. */
    X[4] = 99;
    ASSERT_OK(mtl_dataset_get_inputs(bound, 1, 1, x, 3));
    ASSERT(x[0] == 99);
    ASSERT_OK(mtl_dataset_get_inputs(copy, 1, 1, x, 3));
    ASSERT(x[0] == 10);
    X[4] = 10;

    mtl_dataset_destroy(bound);
    mtl_dataset_destroy(copy);
    mtl_dataset_destroy(NULL);
    ASSERT_EQ_INT(mtl_dataset_row_count(NULL), 0);
    return 0;
}

TEST(views_outlive_parent)
{
    mtl_dataset *parent = NULL, *v1 = NULL, *v2 = NULL;
    ASSERT_OK(mtl_dataset_create(&parent, NULL, 4, 3, 2, X, 4, Y, 2, NULL, 0, NULL, MTL_DATASET_COPY));
    const int64_t rows1[3] = { 3, 1, 1 }; /* repeats allowed */
    ASSERT_OK(mtl_dataset_view(&v1, parent, 3, rows1));
    const int64_t rows2[2] = { 2, 0 };   /* into v1: parent rows 1, 3 */
    ASSERT_OK(mtl_dataset_view(&v2, v1, 2, rows2));
    mtl_dataset_destroy(parent);
    mtl_dataset_destroy(v1);
    ASSERT_EQ_INT(mtl_dataset_row_count(v2), 2);
    float x[2 * 3];
    ASSERT_OK(mtl_dataset_get_inputs(v2, 0, 2, x, 3));
    ASSERT(x[0] == 10 && x[3] == 30 && x[5] == 32);
    mtl_dataset_destroy(v2); /* last reference: frees the copied arrays */

    ASSERT_OK(mtl_dataset_create(&parent, NULL, 4, 3, 2, X, 4, Y, 2, NULL, 0, NULL, 0));
    const int64_t bad[2] = { 0, 4 };
    mtl_dataset *v = (mtl_dataset *)0x1;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_view(&v, parent, 2, bad));
    ASSERT_MSG_HAS("rows[1] = 4");
    ASSERT(v == (mtl_dataset *)0x1); /* untouched on failure */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_view(&v, parent, 0, bad));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_get_inputs(parent, 3, 2, x, 3));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_dataset_get_inputs(parent, 0, 1, x, 2));
    mtl_dataset_destroy(parent);
    return 0;
}

TEST(mask_reads_as_missing)
{
    const uint8_t mask[4 * 2] = { 1, 0, 1, 1, 1, 1, 0, 1 };
    mtl_dataset *ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 4, 3, 2, X, 4, Y, 2, mask, 2, NULL, MTL_DATASET_COPY));
    float y[4 * 2];
    ASSERT_OK(mtl_dataset_get_targets(ds, 0, 4, y, 2));
    ASSERT(y[0] == 0.5f && isnan(y[1]) && isnan(y[3]) && isnan(y[6]) && y[7] == 1);
    mtl_dataset_destroy(ds);

    /* No targets: input-only data. */
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 4, 3, 0, X, 4, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_STATE, mtl_dataset_get_targets(ds, 0, 1, y, 2));
    mtl_dataset_destroy(ds);
    return 0;
}

TEST(validation_names_row_and_column)
{
    mtl_dataset *ds = (mtl_dataset *)0x1;
    float x[2 * 3] = { 1, 2, 3, 4, NAN, 6 };
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_dataset_create(&ds, NULL, 2, 3, 0, x, 3, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_MSG_HAS("row 1, column 1");
    x[4] = INFINITY;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_dataset_create(&ds, NULL, 2, 3, 0, x, 3, NULL, 0, NULL, 0, NULL, 0));
    x[4] = 5;
    float y[2] = { 1, -INFINITY };
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 3, y, 1, NULL, 0, NULL, 0));
    ASSERT_MSG_HAS("target row 1, column 0");
    y[1] = 2;
    float w[2] = { 1, -0.5f };
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 3, y, 1, NULL, 0, w, 0));
    ASSERT_MSG_HAS("row 1");
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 2, y, 1, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_SHAPE, mtl_dataset_create(&ds, NULL, 2, 3, 2, x, 3, y, 1, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 3, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 3, y, 1, NULL, 0, NULL, 8u));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_create(&ds, NULL, 0, 3, 1, x, 3, y, 1, NULL, 0, NULL, 0));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_dataset_create(NULL, NULL, 2, 3, 1, x, 3, y, 1, NULL, 0, NULL, 0));
    ASSERT(ds == (mtl_dataset *)0x1);
    /* NaN targets are missing labels, not errors. */
    y[0] = NAN;
    ds = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, NULL, 2, 3, 1, x, 3, y, 1, NULL, 0, NULL, 0));
    mtl_dataset_destroy(ds);
    return 0;
}

/* A counting allocator: every byte the data sets take comes back. */
static int64_t live_blocks;
static void *count_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    live_blocks++;
    return p;
}
static void count_free(void *user, void *p)
{
    (void)user;
    live_blocks--;
    free(p);
}

TEST(allocator_hook_balances)
{
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    a.alloc = count_alloc;
    a.free = count_free;
    mtl_context *ctx = NULL;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    int64_t before = live_blocks;
    mtl_dataset *ds = NULL, *v = NULL;
    ASSERT_OK(mtl_dataset_create(&ds, ctx, 4, 3, 2, X, 4, Y, 2, NULL, 0, NULL, MTL_DATASET_COPY));
    const int64_t rows[1] = { 2 };
    ASSERT_OK(mtl_dataset_view(&v, ds, 1, rows));
    ASSERT(live_blocks > before);
    mtl_dataset_destroy(ds);
    mtl_dataset_destroy(v);
    ASSERT_EQ_INT(live_blocks, before);
    mtl_context_destroy(ctx);
    return 0;
}

TEST_MAIN(TEST_ENTRY(bind_and_copy), TEST_ENTRY(views_outlive_parent), TEST_ENTRY(mask_reads_as_missing),
          TEST_ENTRY(validation_names_row_and_column), TEST_ENTRY(allocator_hook_balances))
