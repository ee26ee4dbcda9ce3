/*
 * bytes.h -- little-endian fixed-width encoding, identical on every host.
 *
 * Files store every number little-endian.  Scalars are encoded with shifts,
 * which mean the same thing whatever the host's byte order.  Arrays take a
 * fast path: on a little-endian host the file bytes ARE the memory image,
 * so one memcpy; elsewhere each element is reversed.  The array helpers
 * take the host order as a parameter so a test on a little-endian machine
 * can feed them a big-endian memory image and check both paths.
 *
 * Floats travel as their IEEE-754 bit patterns (memcpy to a same-width
 * integer), so NaN payloads, -0 and subnormals survive unchanged.
 */
#ifndef MTL_BYTES_H
#define MTL_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- scalars ------------------------------------------------------------- */

static inline void mtli_put_u8(uint8_t *p, uint8_t v) { p[0] = v; }
static inline uint8_t mtli_get_u8(const uint8_t *p) { return p[0]; }

static inline void mtli_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t mtli_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline void mtli_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t mtli_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void mtli_put_u64(uint8_t *p, uint64_t v)
{
    mtli_put_u32(p, (uint32_t)v);
    mtli_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t mtli_get_u64(const uint8_t *p)
{
    return (uint64_t)mtli_get_u32(p) | (uint64_t)mtli_get_u32(p + 4) << 32;
}

/* Two's complement on every host we support (C23 requires it; C11 hosts
 * all use it).  The conversion back goes through memcpy, which is defined
 * for every bit pattern. */
static inline void mtli_put_i64(uint8_t *p, int64_t v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    mtli_put_u64(p, u);
}

static inline int64_t mtli_get_i64(const uint8_t *p)
{
    uint64_t u = mtli_get_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline void mtli_put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    mtli_put_u32(p, u);
}

static inline float mtli_get_f32(const uint8_t *p)
{
    uint32_t u = mtli_get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline void mtli_put_f64(uint8_t *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    mtli_put_u64(p, u);
}

static inline double mtli_get_f64(const uint8_t *p)
{
    uint64_t u = mtli_get_u64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* ---- arrays -------------------------------------------------------------- */

typedef enum mtli_byte_order { MTLI_LITTLE_ENDIAN = 0, MTLI_BIG_ENDIAN = 1 } mtli_byte_order;

/* The byte order of this host, found at run time (compilers fold it). */
static inline mtli_byte_order mtli_host_order(void)
{
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first ? MTLI_LITTLE_ENDIAN : MTLI_BIG_ENDIAN;
}

/* Convert `n` elements of `width` bytes (2, 4 or 8) between a memory image
 * in `host` order and little-endian file bytes.  The conversion is its own
 * inverse, so encoding and decoding are the same call.  `dst` and `src`
 * must not overlap. */
static inline void mtli_le_convert(void *dst, const void *src, size_t n, size_t width,
                                   mtli_byte_order host)
{
    if (n == 0) return;
    memcpy(dst, src, n * width);
    if (host == MTLI_LITTLE_ENDIAN) return;
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++, d += width) {
        for (size_t a = 0, b = width - 1; a < b; a++, b--) {
            uint8_t t = d[a];
            d[a] = d[b];
            d[b] = t;
        }
    }
}

/* float32 arrays to and from little-endian bytes on this host. */
static inline void mtli_put_f32s(uint8_t *dst, const float *src, size_t n)
{
    mtli_le_convert(dst, src, n, sizeof(float), mtli_host_order());
}

static inline void mtli_get_f32s(float *dst, const uint8_t *src, size_t n)
{
    mtli_le_convert(dst, src, n, sizeof(float), mtli_host_order());
}

#endif /* MTL_BYTES_H */
