/* harness.h -- a tiny test harness (libuv TEST_IMPL / ASSERT_* style).
 *
 * Each test file defines tests with TEST(name) and lists them in a
 * TEST_LIST; main() runs them all, or the one named on the command line,
 * and prints "N passed, N failed". */
#ifndef MTL_TEST_HARNESS_H
#define MTL_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtl.h"

/* UNDER_VALGRIND: true when the test runs under valgrind (whose CI pass
 * looks for memory errors: a few tests skip what it cannot emulate, such
 * as floating-point traps, or what would take it minutes). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND false
#endif

typedef struct test_case {
    const char *name;
    int (*fn)(void);
} test_case;

#define TEST(name) static int test_##name(void)
#define TEST_ENTRY(name) { #name, test_##name }

#define FAILF(...)                                                                 \
    do {                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                          \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        return 1;                                                                  \
    } while (0)

#define ASSERT(cond)                                                               \
    do {                                                                           \
        if (!(cond)) FAILF("assertion failed: %s", #cond);                         \
    } while (0)

/* Expect a libmtl call to return `expected`; show the message otherwise. */
#define ASSERT_STATUS(expected, call)                                              \
    do {                                                                           \
        mtl_status st_ = (call);                                                   \
        if (st_ != (expected))                                                     \
            FAILF("%s returned %d (%s: %s), expected %d", #call, (int)st_,          \
                  mtl_status_string(st_), mtl_last_error_message(), (int)(expected)); \
    } while (0)
#define ASSERT_OK(call) ASSERT_STATUS(MTL_OK, call)

/* The message of the last failure must mention `needle`. */
#define ASSERT_MSG_HAS(needle)                                                     \
    do {                                                                           \
        if (!strstr(mtl_last_error_message(), (needle)))                           \
            FAILF("message \"%s\" lacks \"%s\"", mtl_last_error_message(), (needle)); \
    } while (0)

#define ASSERT_EQ_INT(a, b)                                                        \
    do {                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                        \
        if (a_ != b_) FAILF("%s == %lld, expected %s == %lld", #a, a_, #b, b_);     \
    } while (0)

/* |a - b| <= atol + rtol * |b| */
#define ASSERT_NEAR(a, b, rtol, atol)                                              \
    do {                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                 \
        if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_)))                        \
            FAILF("%s = %.9g, expected %s = %.9g (rtol %g, atol %g)", #a, a_, #b, b_, \
                  (double)(rtol), (double)(atol));                                 \
    } while (0)

static inline int test_main(int argc, char **argv, const test_case *tests, int n)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        int r = tests[i].fn();
        printf("%s %s\n", r == 0 ? "ok  " : "FAIL", tests[i].name);
        fflush(stdout);
        if (r == 0)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

#define TEST_MAIN(...)                                                             \
    int main(int argc, char **argv)                                                \
    {                                                                              \
        static const test_case tests_[] = { __VA_ARGS__ };                         \
        return test_main(argc, argv, tests_, (int)(sizeof tests_ / sizeof tests_[0])); \
    }

#endif
