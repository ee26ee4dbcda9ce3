/* test_foundation.c -- versions, status strings, the thread-local message,
 * the context and its options, BLIS configuration. */
#include <pthread.h>

#include "harness.h"

TEST(version)
{
    ASSERT_EQ_INT(mtl_version_number(), MTL_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", MTL_VERSION_MAJOR, MTL_VERSION_MINOR, MTL_VERSION_PATCH);
    ASSERT(strcmp(mtl_version_string(), expect) == 0);
    return 0;
}

TEST(status_strings)
{
    for (int s = 0; s <= 11; s++) {
        const char *txt = mtl_status_string((mtl_status)s);
        ASSERT(txt != NULL && txt[0] != '\0');
        ASSERT(strcmp(txt, "unknown status") != 0);
    }
    ASSERT(strcmp(mtl_status_string((mtl_status)9999), "unknown status") == 0);
    ASSERT(strcmp(mtl_status_string((mtl_status)-1), "unknown status") == 0);
    /* never-renumbered values */
    ASSERT_EQ_INT(MTL_ERR_INVALID_ARGUMENT, 1);
    ASSERT_EQ_INT(MTL_ERR_OUT_OF_MEMORY, 2);
    ASSERT_EQ_INT(MTL_ERR_SHAPE, 3);
    ASSERT_EQ_INT(MTL_ERR_STATE, 4);
    ASSERT_EQ_INT(MTL_ERR_IO, 5);
    ASSERT_EQ_INT(MTL_ERR_FORMAT, 6);
    ASSERT_EQ_INT(MTL_ERR_VERSION, 7);
    ASSERT_EQ_INT(MTL_ERR_NON_FINITE, 8);
    ASSERT_EQ_INT(MTL_ERR_UNSUPPORTED, 9);
    ASSERT_EQ_INT(MTL_ERR_INTERNAL, 10);
    ASSERT_EQ_INT(MTL_ERR_NOT_FOUND, 11);
    return 0;
}

TEST(context_options)
{
    mtl_context *ctx = NULL;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_create(NULL, NULL));
    ASSERT_OK(mtl_context_create(&ctx, NULL));
    int64_t v = 0;
    ASSERT_OK(mtl_context_get_i64(ctx, MTL_OPT_NUM_THREADS, &v));
    ASSERT_EQ_INT(v, 1);
    ASSERT_OK(mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, 2));
    ASSERT_OK(mtl_context_get_i64(ctx, MTL_OPT_NUM_THREADS, &v));
    ASSERT_EQ_INT(v, 2);
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, 0));
    ASSERT_MSG_HAS("MTL_OPT_NUM_THREADS");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, MTL_OPT_NUM_THREADS, 257));
    ASSERT_OK(mtl_context_get_i64(ctx, MTL_OPT_NUM_THREADS, &v));
    ASSERT_EQ_INT(v, 2); /* unchanged after a rejected set */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, MTL_OPT_SEED, -1));
    ASSERT_OK(mtl_context_set_i64(ctx, MTL_OPT_SEED, 7));
    ASSERT_OK(mtl_context_get_i64(ctx, MTL_OPT_SEED, &v));
    ASSERT_EQ_INT(v, 7);
    /* a double option through the int setter, a trainer option on a context */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, MTL_OPT_LEARNING_RATE, 1));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, MTL_OPT_EPOCHS, 3));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(ctx, 12345, 3));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_i64(NULL, MTL_OPT_SEED, 3));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_set_log(ctx, NULL, NULL, (mtl_log_level)9));
    mtl_context_destroy(ctx);
    mtl_context_destroy(NULL);
    return 0;
}

TEST(option_bounds)
{
    int64_t lo, hi;
    ASSERT_OK(mtl_option_bounds_i64(MTL_OPT_NUM_THREADS, &lo, &hi));
    ASSERT_EQ_INT(lo, 1);
    ASSERT_EQ_INT(hi, 256);
    ASSERT_OK(mtl_option_bounds_i64(MTL_OPT_OPTIMIZER, &lo, &hi));
    ASSERT_EQ_INT(lo, MTL_OPTIMIZER_SGD);
    ASSERT_EQ_INT(hi, MTL_OPTIMIZER_ADAMW);
    double dlo, dhi;
    ASSERT_OK(mtl_option_bounds_f64(MTL_OPT_LEARNING_RATE, &dlo, &dhi));
    ASSERT(dlo == 0.0 && dhi == 10.0);
    ASSERT_OK(mtl_option_bounds_f64(MTL_TASK_OPT_LOSS_WEIGHT, &dlo, &dhi));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_option_bounds_f64(MTL_OPT_NUM_THREADS, &dlo, &dhi));
    ASSERT_MSG_HAS("mtl_option_bounds_i64");
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_option_bounds_i64(0x7777, &lo, &hi));
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_option_bounds_i64(MTL_OPT_SEED, NULL, &hi));
    return 0;
}

/* The message is thread-local: two threads failing differently each see
 * their own text. */
static void *thread_fail(void *arg)
{
    int64_t bad = (int64_t)(intptr_t)arg;
    mtl_context *ctx = NULL;
    static _Thread_local char seen[256];
    if (mtl_context_create(&ctx, NULL) != MTL_OK) return NULL;
    for (int i = 0; i < 1000; i++) {
        mtl_context_set_i64(ctx, bad == 0 ? MTL_OPT_NUM_THREADS : MTL_OPT_SEED, bad == 0 ? 0 : -1);
        snprintf(seen, sizeof seen, "%s", mtl_last_error_message());
        if (!strstr(seen, bad == 0 ? "MTL_OPT_NUM_THREADS" : "MTL_OPT_SEED")) {
            mtl_context_destroy(ctx);
            return NULL;
        }
    }
    mtl_context_destroy(ctx);
    return (void *)1;
}

TEST(thread_local_message)
{
    pthread_t a, b;
    void *ra = NULL, *rb = NULL;
    ASSERT(pthread_create(&a, NULL, thread_fail, (void *)(intptr_t)0) == 0);
    ASSERT(pthread_create(&b, NULL, thread_fail, (void *)(intptr_t)1) == 0);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    ASSERT(ra == (void *)1 && rb == (void *)1);
    /* this thread's message is untouched by theirs */
    mtl_context_set_i64(NULL, MTL_OPT_SEED, 1);
    ASSERT_MSG_HAS("ctx must not be NULL");
    return 0;
}

static int g_allocs, g_frees;
static void *count_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    g_allocs++;
    void *p = NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}
static void count_free(void *user, void *ptr)
{
    (void)user;
    g_frees++;
    free(ptr);
}

TEST(allocator_hook)
{
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    mtl_context *ctx = NULL;
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_create(&ctx, &a)); /* no functions */
    ASSERT(ctx == NULL);
    a.alloc = count_alloc;
    a.free = count_free;
    a.struct_size = 4; /* too small */
    ASSERT_STATUS(MTL_ERR_INVALID_ARGUMENT, mtl_context_create(&ctx, &a));
    a.struct_size = sizeof a;
    ASSERT_OK(mtl_context_create(&ctx, &a));
    ASSERT(g_allocs == 1);
    mtl_context_destroy(ctx);
    ASSERT(g_frees == 1);
    return 0;
}

TEST(blis_config)
{
    ASSERT(mtl_blis_version() && mtl_blis_version()[0]);
    const char *arch = mtl_blis_arch();
    ASSERT(arch && arch[0]);
    const char *thr = mtl_blis_threading();
    ASSERT(strcmp(thr, "openmp") == 0 || strcmp(thr, "pthreads") == 0 || strcmp(thr, "none") == 0);
    int fb = mtl_blis_is_fallback();
    ASSERT(fb == 0 || fb == 1);
    if (fb) ASSERT(strcmp(arch, "generic") == 0);
    const char *sk = mtl_small_kernels();
    ASSERT(strcmp(sk, "avx512") == 0 || strcmp(sk, "avx2") == 0 || strcmp(sk, "none") == 0);
    const char *want = getenv("MTL_SMALL_KERNEL");
    if (want && strcmp(want, "off") == 0) ASSERT(strcmp(sk, "none") == 0);
    if (want && strcmp(want, "avx2") == 0) ASSERT(strcmp(sk, "avx512") != 0);
    return 0;
}

TEST_MAIN(TEST_ENTRY(version), TEST_ENTRY(status_strings), TEST_ENTRY(context_options),
          TEST_ENTRY(option_bounds), TEST_ENTRY(thread_local_message), TEST_ENTRY(allocator_hook),
          TEST_ENTRY(blis_config))
