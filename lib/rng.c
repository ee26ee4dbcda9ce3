/* rng.c -- counter-based random numbers: a pure function of
 * (seed, stream, counter), so draws never depend on call order or threads. */
#include "mtl_internal.h"

#include <math.h>

/* splitmix64 finaliser: a strong 64-bit mixer (Steele et al. 2014). */
static uint64_t mtli_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t mtli_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* Two rounds so that nearby (stream, counter) pairs decorrelate. */
    uint64_t k = mtli_mix64(seed + 0x9e3779b97f4a7c15ULL * (stream + 1));
    return mtli_mix64(k ^ mtli_mix64(counter + 0x632be59bd9b4e019ULL));
}

double mtli_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* 53 random bits, shifted by half an ulp: strictly inside (0, 1). */
    uint64_t r = mtli_rng_u64(seed, stream, counter) >> 11;
    return ((double)r + 0.5) * (1.0 / 9007199254740992.0);
}

double mtli_rng_normal(uint64_t seed, uint64_t stream, uint64_t counter)
{
    double u1 = mtli_rng_uniform(seed, stream, 2 * counter);
    double u2 = mtli_rng_uniform(seed, stream, 2 * counter + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
