/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of libmtl files.
 *
 * The iSCSI / ext4 / SSE4.2 CRC: reflected polynomial 0x82F63B78, initial
 * value and final XOR 0xFFFFFFFF.  crc32c("123456789") == 0xE3069283.
 */
#ifndef MTL_CRC32C_H
#define MTL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend `crc` (0 for an empty prefix) with `n` bytes: the CRC of a
 * concatenation is computed piecewise, crc32c(crc32c(0, a), b) ==
 * crc32c(0, a || b).  Thread-safe. */
uint32_t mtli_crc32c(uint32_t crc, const void *data, size_t n);

/* Bit-at-a-time reference implementation, for tests only. */
uint32_t mtli_crc32c_bitwise(uint32_t crc, const void *data, size_t n);

#endif /* MTL_CRC32C_H */
