/* small_gemm.h -- a hand-written GEMM for the small products where BLIS's
 * per-call cost (~3-5 µs: object set-up, control tree, packing) is larger
 * than the arithmetic.  See small_gemm.c and docs/performance.md. */
#ifndef MTL_SMALL_GEMM_H
#define MTL_SMALL_GEMM_H

#include "mtl_internal.h"

/* Largest product (2*m*n*k flops) the small kernel takes; larger ones go
 * to BLIS, which blocks for the caches and can use threads. */
#define MTLI_SMALL_GEMM_MAX_FLOPS ((double)(1 << 24))

/* Row-major C[m x n] = alpha * op(A) op(B) + beta * C, as mtli_gemm.
 * Computes it and returns true when the product is small (below both
 * MTLI_SMALL_GEMM_MAX_FLOPS and the handle's parallel_min_flops, so the
 * choice never depends on the thread count), this CPU has AVX-512 and the
 * shape is one it handles (not op(A) and op(B) both transposed); otherwise
 * returns false without touching C, and the caller uses mtli_gemm.
 * Deterministic: each element is one fused multiply-add chain over k in
 * order, whatever the thread count. */
bool mtli_small_gemm(const mtli_blas *b, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *bm, int64_t ldb, float beta, float *c, int64_t ldc);

#endif /* MTL_SMALL_GEMM_H */
