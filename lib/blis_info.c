/* blis_info.c -- what BLIS runs, and the opt-in choice of its kernels. */
#include "mtl_internal.h"

#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

const char *mtl_blis_version(void)
{
    return bli_info_get_version_str();
}

const char *mtl_blis_arch(void)
{
    mtli_blis_ensure_init(); /* bli_arch_query_id() before bli_init() aborts */
    return bli_arch_string(bli_arch_query_id());
}

const char *mtl_blis_threading(void)
{
    if (bli_info_get_enable_openmp()) return "openmp";
    if (bli_info_get_enable_pthreads()) return "pthreads";
    return "none";
}

typedef struct mtli_cpu {
    bool amd;
    unsigned family;
    bool avx2_fma, avx512;
} mtli_cpu;

static mtli_cpu mtli_cpu_query(void)
{
    mtli_cpu c = { false, 0, false, false };
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, cx, d;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
    c.amd = (b == 0x68747541u); /* "Auth"enticAMD */
    unsigned max_leaf = a;
    if (__get_cpuid(1, &a, &b, &cx, &d)) {
        unsigned base = (a >> 8) & 0xf, ext = (a >> 20) & 0xff;
        c.family = base == 0xf ? base + ext : base;
    }
    __builtin_cpu_init();
    c.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    c.avx512 = max_leaf >= 7 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512cd");
#endif
    return c;
}

int mtl_blis_is_fallback(void)
{
    mtli_cpu c = mtli_cpu_query();
    mtli_blis_ensure_init();
    return bli_arch_query_id() == BLIS_ARCH_GENERIC && (c.avx2_fma || c.avx512);
}

/* The kernel set to ask for, or BLIS_NUM_ARCHS to let BLIS decide.  BLIS
 * 0.9 detects Intel CPUs by features but AMD ones by family (Zen 1-3 =
 * 0x17, 0x19), so it is AMD families it has never seen that fall back to
 * generic; for those pick skx (AVX-512) or zen3 (AVX2). */
static arch_t mtli_best_arch(const mtli_cpu *c)
{
    if (c->amd && c->family > 0x19) {
        if (c->avx512) return BLIS_ARCH_SKX;
        if (c->avx2_fma) return BLIS_ARCH_ZEN3;
    }
    return BLIS_NUM_ARCHS;
}

static bool mtli_blis_inited_by_us;

mtl_status mtl_blis_select_best_arch(const char **chosen)
{
    mtli_cpu c = mtli_cpu_query();
    arch_t want = mtli_best_arch(&c);
    const char *user = getenv("BLIS_ARCH_TYPE");
    bool set_env = false;
    if (want != BLIS_NUM_ARCHS && !user && !mtli_blis_inited_by_us) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)want);
        if (setenv("BLIS_ARCH_TYPE", id, 0) != 0)
            return mtli_fail(MTL_ERR_IO, "mtl_blis_select_best_arch: setenv(BLIS_ARCH_TYPE) failed");
        set_env = true;
    }
    mtli_blis_ensure_init();
    mtli_blis_inited_by_us = true;
    arch_t have = bli_arch_query_id();
    if (chosen) *chosen = bli_arch_string(have);
    if (set_env && have != want) {
        unsetenv("BLIS_ARCH_TYPE");
        return mtli_fail(MTL_ERR_STATE,
                         "mtl_blis_select_best_arch: BLIS was already initialised (arch '%s') before the "
                         "choice of '%s' could take effect; call this first thing in the process",
                         bli_arch_string(have), bli_arch_string(want));
    }
    if (user == NULL && want != BLIS_NUM_ARCHS && have != want)
        return mtli_fail(MTL_ERR_STATE,
                         "mtl_blis_select_best_arch: BLIS already runs '%s'; '%s' would be faster but BLIS "
                         "chooses its kernels once per process", bli_arch_string(have), bli_arch_string(want));
    return MTL_OK;
}
