/* small_gemm.h -- a hand-written GEMM for the small products where BLIS's
 * per-call cost (~3-5 µs: object set-up, control tree, packing) is larger
 * than the arithmetic.  See small_gemm.c and docs/performance.md. */
#ifndef MTL_SMALL_GEMM_H
#define MTL_SMALL_GEMM_H

#include "mtl_internal.h"

/* Largest product (2*m*n*k flops) the small kernel takes; larger ones go
 * to BLIS, which blocks for the caches and can use threads.  Equal to the
 * default MTL_OPT_PARALLEL_MIN_FLOPS, below which BLIS would run on one
 * thread anyway. */
#define MTLI_SMALL_GEMM_MAX_FLOPS 4000000.0

/* Does this CPU run the small kernel (AVX-512F, or AVX2 + FMA; the
 * environment variable MTL_SMALL_KERNEL=avx2 or =off, read once, picks
 * AVX2 or none)?  Cheap; any thread. */
bool mtli_small_gemm_available(void);
/* "avx512", "avx2" or "none": the kernels in use. */
const char *mtli_small_gemm_isa_name(void);
/* Tests only: use the kernels named ("avx512", "avx2", "off"; NULL: the
 * best), process-wide, if this CPU has them (else false, no change).  Not
 * while other threads run products. */
bool mtli_small_gemm_select(const char *name);

/* Row-major C[m x n] = alpha * op(A) op(B) + beta * C, as mtli_gemm.
 * Computes it and returns true when the product is small (at most
 * MTLI_SMALL_GEMM_MAX_FLOPS), this CPU has the kernels and the shape is
 * one they handle (not op(A) and op(B) both transposed); otherwise returns false
 * without touching C, and the caller uses mtli_gemm.  The choice depends
 * on the shape only, never on the thread settings, and each element is
 * one fused multiply-add chain over k in order: results are the same
 * whatever the thread count.  Small products run on one thread. */
bool mtli_small_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *bm, int64_t ldb, float beta, float *c, int64_t ldc);

/* As mtli_small_gemm with alpha 1, beta 0 and op(A) = A, then a layer's
 * epilogue on each element before it is stored:
 *     C = act(A op(B) + bias),  act = ReLU if relu, else identity,
 * bias one float per column (not NULL).  The bits equal a GEMM followed by
 * `u = c + bias; c = u > 0 ? u : 0`, without a second pass over C. */
bool mtli_small_gemm_bias_act(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const float *bm, int64_t ldb, const float *bias, bool relu, float *c, int64_t ldc);

/* The same epilogue alone, in place over one row of n (a layer's output
 * that BLIS computed): c = act(c + bias), the bits of the scalar loop.
 * False, touching nothing, without the kernels. */
bool mtli_small_bias_act_row(int64_t n, const float *bias, bool relu, float *c);

/* C = A·op(B) (A m x k, row-major) without storing C: each tile of at
 * most 24 rows x 64 columns goes to done(ctx, i, rows, j, cols, c, ldc) as
 * soon as it is finished, c pointing at element (i, j) in a buffer on the
 * stack that done may overwrite.  Column panels come in order and, within
 * one, row blocks in order, so done sees each column's rows in order.
 * The bits of every element equal mtli_small_gemm's.  A caller that
 * turns each tile into something else at once (the layer below's
 * backward epilogue, layers.c) needs no m x n buffer for C.
 * Returns false, having called nothing, unless
 * mtli_small_gemm_tiles_fit(trans_b, m, n, k) and the arguments are sane. */
typedef void (*mtli_tile_fn)(void *ctx, int64_t i, int64_t rows, int64_t j, int64_t cols, float *c, int64_t ldc);
bool mtli_small_gemm_tiles(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                           const float *bm, int64_t ldb, mtli_tile_fn done, void *ctx);
/* Would mtli_small_gemm_tiles take this shape?  A small product (as
 * mtli_small_gemm), and k <= 64 when op(B) = Bᵀ (one packed panel for all
 * rows).  Depends on the shape and the CPU only; true for m rows means
 * true for fewer. */
bool mtli_small_gemm_tiles_fit(bool trans_b, int64_t m, int64_t n, int64_t k);

/* m dot products y[i * incy] = a_i · x, a_i = a + i*lda of length k, x
 * contiguous: a 1-wide layer (its weight column dotted with every row), or
 * one row through a layer whose weight is stored transposed.  No size
 * limit (like BLIS's level-2 calls, it runs on one thread).  Returns false
 * when this CPU lacks the kernels or the arguments are odd. */
bool mtli_small_dots(int64_t m, int64_t k, const float *a, int64_t lda, const float *x, float *y, int64_t incy);

#endif /* MTL_SMALL_GEMM_H */
