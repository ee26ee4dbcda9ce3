/* crc32c.c -- CRC-32C, slice-by-8 (eight table look-ups per 8 bytes).
 *
 * Tables are built once, on first use, under pthread_once: 8 KiB that
 * would otherwise be a page of literal constants. */
#include "crc32c.h"

#include <pthread.h>

#define MTLI_CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t mtli_crc_table[8][256];
static pthread_once_t mtli_crc_once = PTHREAD_ONCE_INIT;

static void mtli_crc_build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (MTLI_CRC32C_POLY & (0u - (c & 1u)));
        mtli_crc_table[0][i] = c;
    }
    /* table[s][i]: the CRC of byte i followed by s zero bytes. */
    for (int s = 1; s < 8; s++)
        for (int i = 0; i < 256; i++) {
            uint32_t prev = mtli_crc_table[s - 1][i];
            mtli_crc_table[s][i] = (prev >> 8) ^ mtli_crc_table[0][prev & 0xFFu];
        }
}

uint32_t mtli_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&mtli_crc_once, mtli_crc_build_tables);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    /* Bytes are combined explicitly (not loaded as words), so the result is
     * the same on hosts of either byte order. */
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = mtli_crc_table[7][lo & 0xFFu] ^ mtli_crc_table[6][(lo >> 8) & 0xFFu] ^
            mtli_crc_table[5][(lo >> 16) & 0xFFu] ^ mtli_crc_table[4][lo >> 24] ^
            mtli_crc_table[3][p[4]] ^ mtli_crc_table[2][p[5]] ^ mtli_crc_table[1][p[6]] ^
            mtli_crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ mtli_crc_table[0][(c ^ *p++) & 0xFFu];
    return ~c;
}

uint32_t mtli_crc32c_bitwise(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (MTLI_CRC32C_POLY & (0u - (c & 1u)));
    }
    return ~c;
}
