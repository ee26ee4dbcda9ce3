/* small_gemm_kernels.h -- the small GEMM kernels, written once for both
 * instruction sets.  small_gemm.c includes this file twice, after defining
 * for AVX-512 and then for AVX2 + FMA:
 *   SG(name)        the function name for this instruction set
 *   SG_ATTR         its target attribute
 *   SG_V, SG_M      vector and lane-mask types; SG_LANES floats a vector
 *   SG_MR, SG_NV    rows per tile, most vectors of columns per tile
 *   SG_ZERO() SG_SET1(x) SG_FMA(a, b, c) SG_MUL SG_ADD SG_MAX
 *   SG_MASK(j, n)   the mask of columns [j, j + SG_LANES) of an n-wide row
 *   SG_LOAD(mk, p)  masked load (masked lanes 0, never touched in memory)
 *   SG_STORE(p, mk, v)  masked store
 *   SG(transpose)   an SG_LANES x SG_LANES transpose (packing Bᵀ)
 * Every C element is one fused multiply-add chain over k in order (over
 * slices of KC for op(B) = Bᵀ, added to C in order) whatever the vector
 * width, so both instruction sets give the same bits. */

#define SG_NW (SG_NV * SG_LANES) /* columns per tile (and per packed panel) */

SG_ATTR static inline void SG(store_vec)(float *c, const float *bias, SG_M mk, SG_V acc, const epilogue *e)
{
    SG_V r = SG_MUL(SG_SET1(e->alpha), acc);
    if (e->beta != 0.0f) r = SG_ADD(r, SG_MUL(SG_SET1(e->beta), SG_LOAD(mk, c)));
    if (bias) r = SG_ADD(r, SG_LOAD(mk, bias));
    if (e->relu) r = SG_MAX(r, SG_ZERO()); /* as u > 0 ? u : 0, also for -0 and NaN */
    SG_STORE(c, mk, r);
}

/* One tile: rows [i, i + R) x NV vectors of columns from j, stored from
 * ct (the tile's first element; row stride ldc).  R and NV are constants
 * in every call, so after unrolling the accumulators live in registers.
 * Rows past m re-read row i (valid memory) and are not stored; columns
 * past n are masked. */
SG_ATTR __attribute__((always_inline)) static inline void
SG(tile)(const int R, const int NV, int64_t i, int64_t j, int64_t m, int64_t n, int64_t k, const float *a,
         int64_t rsa, int64_t csa, const float *b, int64_t ldb, const epilogue *e, float *ct, int64_t ldc)
{
    const float *ar[SG_MR];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) ar[r] = a + (i + r < m ? i + r : i) * rsa;
    SG_M mk[SG_NV];
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) mk[v] = SG_MASK(j + SG_LANES * v, n);
    SG_V acc[SG_MR][SG_NV];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = SG_ZERO();
    const float *bp = b + j;
    for (int64_t p = 0; p < k; p++, bp += ldb) {
        SG_V bv[SG_NV];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) bv[v] = SG_LOAD(mk[v], bp + SG_LANES * v);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const SG_V x = SG_SET1(ar[r][p * csa]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = SG_FMA(x, bv[v], acc[r][v]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        if (i + r >= m) break;
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
            SG(store_vec)(ct + r * ldc + SG_LANES * v, e->bias ? e->bias + j + SG_LANES * v : NULL, mk[v],
                          acc[r][v], e);
    }
}

/* tile() for nv (1 to SG_NV) vectors of columns, each count a constant. */
SG_ATTR __attribute__((always_inline)) static inline void
SG(tile_nv)(const int R, int64_t nv, int64_t i, int64_t j, int64_t m, int64_t n, int64_t k, const float *a,
            int64_t rsa, int64_t csa, const float *b, int64_t ldb, const epilogue *e, float *ct, int64_t ldc)
{
#if SG_NV >= 4
    if (nv >= 4) {
        SG(tile)(R, 4, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
        return;
    }
#endif
#if SG_NV >= 3
    if (nv >= 3) {
        SG(tile)(R, 3, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
        return;
    }
#endif
    if (nv >= 2)
        SG(tile)(R, 2, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
    else
        SG(tile)(R, 1, i, j, m, n, k, a, rsa, csa, b, ldb, e, ct, ldc);
}

/* Tiles of R rows over all of [0, m) for columns [j, j + SG_LANES nv). */
SG_ATTR __attribute__((always_inline)) static inline void
SG(tiles)(const int R, int64_t nv, int64_t j, int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa,
          int64_t csa, const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i += R) SG(tile_nv)(R, nv, i, j, m, n, k, a, rsa, csa, b, ldb, e, c + i * ldc + j, ldc);
}

/* C = epilogue(A·B) with A(i, p) = a[i*rsa + p*csa] and B rows
 * contiguous, B(p, j) = b[p*ldb + j]. */
SG_ATTR static void SG(gemm_rows)(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                                  const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += SG_NW) {
        const int64_t nv = (n - j + SG_LANES - 1) / SG_LANES;
        if (m == 1) /* one row (batch-1 predict): no wasted rows */
            SG(tiles)(1, nv, j, m, n, k, a, rsa, csa, b, ldb, e, c, ldc);
        else
            SG(tiles)(SG_MR, nv, j, m, n, k, a, rsa, csa, b, ldb, e, c, ldc);
    }
}

/* pack[p * SG_NW + jj] = B(j + jj, p0 + p) for jj < w, p < kc (B stored n x k). */
SG_ATTR __attribute__((always_inline)) static inline void SG(pack_bt)(const float *b, int64_t ldb, int64_t j,
                                                                      int64_t w, int64_t p0, int64_t kc, float *pack)
{
    const int64_t T = SG_LANES, wt = w & ~(T - 1), kt = kc & ~(T - 1);
    for (int64_t jj = 0; jj < wt; jj += T)
        for (int64_t p = 0; p < kt; p += T) SG(transpose)(b + (j + jj) * ldb + p0 + p, ldb, pack + p * SG_NW + jj, SG_NW);
    for (int64_t jj = 0; jj < w; jj++) { /* the edges: columns past wt, rows past kt */
        const float *src = b + (j + jj) * ldb + p0;
        for (int64_t p = jj < wt ? kt : 0; p < kc; p++) pack[p * SG_NW + jj] = src[p];
    }
}

/* C = alpha * A·Bᵀ + beta * C (+ epilogue), B stored n x k: Bᵀ panels of
 * SG_NW columns x KC rows are copied to a stack buffer, then multiplied
 * as above; slices after the first add to C, and only the last one
 * applies the bias and activation. */
SG_ATTR static void SG(gemm_bt)(int64_t m, int64_t n, int64_t k, const float *a, int64_t rsa, int64_t csa,
                                const float *b, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    float pack[KC * SG_NW] __attribute__((aligned(64)));
    for (int64_t j = 0; j < n; j += SG_NW) {
        const int64_t w = n - j < SG_NW ? n - j : SG_NW;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            const int64_t kc = k - p0 < KC ? k - p0 : KC;
            const bool last = p0 + kc == k;
            const epilogue slice = { e->alpha, p0 == 0 ? e->beta : 1.0f, last && e->bias ? e->bias + j : NULL,
                                     last && e->relu };
            SG(pack_bt)(b, ldb, j, w, p0, kc, pack);
            SG(gemm_rows)(m, w, kc, a + p0 * csa, rsa, csa, pack, SG_NW, &slice, c + j, ldc);
        }
    }
}

/* C = A·op(B) (A row-major, lda), computed tile by tile and handed to
 * done() instead of being stored: panels of SG_NW columns in order, and
 * in each blocks of 4 tiles' rows in order, each in a stack buffer (a few
 * tiles per call keep the callback's per-call cost small).  With op(B) =
 * Bᵀ, k <= KC: one packed panel serves every row block, and each element
 * is the single chain over k that gemm_bt computes. */
SG_ATTR static void SG(gemm_tiles)(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                   const float *bm, int64_t ldb, mtli_tile_fn done, void *ctx)
{
    enum { BR = 4 * SG_MR };
    float pack[KC * SG_NW] __attribute__((aligned(64)));
    float blk[BR * SG_NW] __attribute__((aligned(64)));
    const epilogue e = { 1.0f, 0.0f, NULL, false };
    for (int64_t j = 0; j < n; j += SG_NW) {
        const int64_t w = n - j < SG_NW ? n - j : SG_NW, nv = (w + SG_LANES - 1) / SG_LANES;
        const float *b = bm + j;
        int64_t ldp = ldb;
        if (trans_b) {
            SG(pack_bt)(bm, ldb, j, w, 0, k, pack);
            b = pack;
            ldp = SG_NW;
        }
        for (int64_t i0 = 0; i0 < m; i0 += BR) {
            const int64_t rows = m - i0 < BR ? m - i0 : BR;
            for (int64_t i = i0; i < i0 + rows; i += SG_MR)
                SG(tile_nv)(SG_MR, nv, i, 0, m, w, k, a, lda, 1, b, ldp, &e, blk + (i - i0) * SG_NW, SG_NW);
            done(ctx, i0, rows, j, w, blk, SG_NW);
        }
    }
}

/* The entry point for either op(B) (op(A) = Aᵀ only changes A's strides). */
SG_ATTR static void SG(run)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                            int64_t lda, const float *bm, int64_t ldb, const epilogue *e, float *c, int64_t ldc)
{
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    if (trans_b)
        SG(gemm_bt)(m, n, k, a, rsa, csa, bm, ldb, e, c, ldc);
    else
        SG(gemm_rows)(m, n, k, a, rsa, csa, bm, ldb, e, c, ldc);
}

/* The epilogue alone over one row of n, in place: c = act(c + bias), the
 * operations store_vec does after a product (1 * c is exact), so the bits
 * of `u = c + bias; c = u > 0 ? u : 0`. */
SG_ATTR static void SG(bias_act_row)(int64_t n, const float *bias, bool relu, float *c)
{
    const epilogue e = { 1.0f, 0.0f, bias, relu };
    for (int64_t j = 0; j < n; j += SG_LANES) {
        const SG_M mk = SG_MASK(j, n);
        SG(store_vec)(c + j, bias + j, mk, SG_LOAD(mk, c + j), &e);
    }
}

/* The parameters too, for the next instantiation. */
#undef SG_NW
#undef SG
#undef SG_ATTR
#undef SG_V
#undef SG_M
#undef SG_LANES
#undef SG_MR
#undef SG_NV
#undef SG_ZERO
#undef SG_SET1
#undef SG_FMA
#undef SG_MUL
#undef SG_ADD
#undef SG_MAX
#undef SG_MASK
#undef SG_LOAD
#undef SG_STORE
