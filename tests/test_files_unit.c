/* test_files_unit.c -- the byte-level pieces under model files: byte-order
 * helpers on both host orders, CRC-32C vectors, the writer and the
 * bounds-checked reader, UTF-8 validation, the file framing. */
#include <unistd.h>

#include "harness.h"

#include "bytes.h"
#include "crc32c.h"
#include "file_format.h"
#include "io_buf.h"

/* ---- byte order ------------------------------------------------------------ */

TEST(scalars_known_bytes)
{
    uint8_t b[8];
    mtli_put_u16(b, 0x0102);
    ASSERT(b[0] == 0x02 && b[1] == 0x01);
    ASSERT_EQ_INT(mtli_get_u16(b), 0x0102);
    mtli_put_u32(b, 0x01020304u);
    ASSERT(b[0] == 0x04 && b[1] == 0x03 && b[2] == 0x02 && b[3] == 0x01);
    ASSERT(mtli_get_u32(b) == 0x01020304u);
    mtli_put_u64(b, 0x0102030405060708ull);
    for (int i = 0; i < 8; i++) ASSERT(b[i] == 8 - i);
    ASSERT(mtli_get_u64(b) == 0x0102030405060708ull);
    mtli_put_i64(b, -2);
    ASSERT(b[0] == 0xFE);
    for (int i = 1; i < 8; i++) ASSERT(b[i] == 0xFF);
    ASSERT(mtli_get_i64(b) == -2);
    /* IEEE-754 bit patterns: 1.0f = 0x3F800000, -2.5 = 0xC004000000000000 */
    mtli_put_f32(b, 1.0f);
    ASSERT(b[0] == 0 && b[1] == 0 && b[2] == 0x80 && b[3] == 0x3F);
    ASSERT(mtli_get_f32(b) == 1.0f);
    mtli_put_f64(b, -2.5);
    for (int i = 0; i < 6; i++) ASSERT(b[i] == 0);
    ASSERT(b[6] == 0x04 && b[7] == 0xC0);
    ASSERT(mtli_get_f64(b) == -2.5);
    /* -0 and a NaN payload survive */
    mtli_put_f32(b, -0.0f);
    ASSERT(b[3] == 0x80 && signbit(mtli_get_f32(b)));
    uint32_t nan_bits = 0x7FC01234u;
    float nanv;
    memcpy(&nanv, &nan_bits, 4);
    mtli_put_f32(b, nanv);
    float back = mtli_get_f32(b);
    uint32_t back_bits;
    memcpy(&back_bits, &back, 4);
    ASSERT(back_bits == nan_bits);
    return 0;
}

/* The memory image a host of `order` holds for 32-bit word w. */
static void native_image32(uint8_t *out, uint32_t w, mtli_byte_order order)
{
    for (int i = 0; i < 4; i++) {
        int shift = order == MTLI_LITTLE_ENDIAN ? 8 * i : 8 * (3 - i);
        out[i] = (uint8_t)(w >> shift);
    }
}

static void native_image64(uint8_t *out, uint64_t w, mtli_byte_order order)
{
    for (int i = 0; i < 8; i++) {
        int shift = order == MTLI_LITTLE_ENDIAN ? 8 * i : 8 * (7 - i);
        out[i] = (uint8_t)(w >> shift);
    }
}

/* Whatever this machine is, build the memory image each host order would
 * hold, convert it with that order, and compare with the file bytes the
 * format requires (and back). */
TEST(arrays_both_orders)
{
    const uint32_t words[3] = { 0x3F800000u, 0xC0490FDBu, 0x00000001u };
    const uint64_t dwords[2] = { 0x400921FB54442D18ull, 0x8000000000000000ull };
    for (int o = 0; o < 2; o++) {
        mtli_byte_order order = (mtli_byte_order)o;
        uint8_t image[12], file[12], back[12], expect[12];
        for (int k = 0; k < 3; k++) {
            native_image32(image + 4 * k, words[k], order);
            mtli_put_u32(expect + 4 * k, words[k]);
        }
        mtli_le_convert(file, image, 3, 4, order);
        ASSERT(memcmp(file, expect, 12) == 0);
        mtli_le_convert(back, file, 3, 4, order);
        ASSERT(memcmp(back, image, 12) == 0);

        uint8_t image8[16], file8[16], expect8[16];
        for (int k = 0; k < 2; k++) {
            native_image64(image8 + 8 * k, dwords[k], order);
            mtli_put_u64(expect8 + 8 * k, dwords[k]);
        }
        mtli_le_convert(file8, image8, 2, 8, order);
        ASSERT(memcmp(file8, expect8, 16) == 0);

        uint8_t image2[4] = { 0 }, file2[4], expect2[4];
        image2[order == MTLI_LITTLE_ENDIAN ? 0 : 1] = 0x34;
        image2[order == MTLI_LITTLE_ENDIAN ? 1 : 0] = 0x12;
        image2[order == MTLI_LITTLE_ENDIAN ? 2 : 3] = 0x78;
        image2[order == MTLI_LITTLE_ENDIAN ? 3 : 2] = 0x56;
        mtli_put_u16(expect2, 0x1234);
        mtli_put_u16(expect2 + 2, 0x5678);
        mtli_le_convert(file2, image2, 2, 2, order);
        ASSERT(memcmp(file2, expect2, 4) == 0);
    }
    /* The detected order matches this machine's real memory image. */
    uint32_t probe = 0x01020304u;
    uint8_t mem[4], img[4];
    memcpy(mem, &probe, 4);
    native_image32(img, probe, mtli_host_order());
    ASSERT(memcmp(mem, img, 4) == 0);
    /* And the host array helpers agree with the scalar ones. */
    float f[4] = { 1.0f, -3.25f, 1e-40f, 65504.0f };
    uint8_t a[16], s[16];
    mtli_put_f32s(a, f, 4);
    for (int k = 0; k < 4; k++) mtli_put_f32(s + 4 * k, f[k]);
    ASSERT(memcmp(a, s, 16) == 0);
    float g[4];
    mtli_get_f32s(g, a, 4);
    ASSERT(memcmp(f, g, sizeof f) == 0);
    return 0;
}

/* ---- CRC-32C ------------------------------------------------------------------- */

TEST(crc32c_vectors)
{
    /* Check value of the CRC catalogue and the RFC 3720 (iSCSI) B.4 vectors. */
    ASSERT(mtli_crc32c(0, "123456789", 9) == 0xE3069283u);
    uint8_t buf[32];
    memset(buf, 0, 32);
    ASSERT(mtli_crc32c(0, buf, 32) == 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    ASSERT(mtli_crc32c(0, buf, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
    ASSERT(mtli_crc32c(0, buf, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
    ASSERT(mtli_crc32c(0, buf, 32) == 0x113FDB5Cu);
    ASSERT(mtli_crc32c(0, buf, 0) == 0);
    return 0;
}

TEST(crc32c_slicing_matches_bitwise)
{
    uint8_t data[1000];
    uint64_t x = 12345;
    for (size_t i = 0; i < sizeof data; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (uint8_t)(x >> 56);
    }
    /* every alignment and many lengths, and piecewise = whole */
    for (size_t start = 0; start < 9; start++)
        for (size_t n = 0; n + start <= sizeof data; n += 37) {
            uint32_t a = mtli_crc32c(0, data + start, n);
            ASSERT(a == mtli_crc32c_bitwise(0, data + start, n));
            size_t half = n / 3;
            ASSERT(a == mtli_crc32c(mtli_crc32c(0, data + start, half), data + start + half, n - half));
        }
    return 0;
}

/* ---- writer ------------------------------------------------------------------- */

static void body_sample(mtli_writer *w, const void *arg)
{
    (void)arg;
    mtli_w_u8(w, 7);
    mtli_w_u32(w, 0xAABBCCDDu);
    mtli_w_str(w, "hé");
    mtli_w_str(w, NULL);
    float v[3] = { 1.0f, 2.0f, 3.0f };
    mtli_w_f32s(w, v, 3);
}

TEST(writer_sinks_agree)
{
    mtli_writer m;
    mtli_writer_measure(&m);
    mtli_w_section(&m, 9, body_sample, NULL);
    ASSERT_OK(mtli_writer_finish(&m));
    /* section header 12 + 1 + 4 + (4 + 3) + 4 + 12, CRC 4 */
    ASSERT_EQ_INT(m.pos, 12 + 1 + 4 + 7 + 4 + 12 + 4);

    uint8_t buf[64];
    memset(buf, 0xEE, sizeof buf);
    mtli_writer w;
    mtli_writer_memory(&w, buf, sizeof buf);
    mtli_w_section(&w, 9, body_sample, NULL);
    ASSERT_OK(mtli_writer_finish(&w));
    ASSERT_EQ_INT(w.pos, m.pos);
    ASSERT_EQ_INT(mtli_get_u32(buf), 9);
    ASSERT_EQ_INT(mtli_get_u64(buf + 4), m.pos - 16);
    ASSERT_EQ_INT(buf[12], 7);
    ASSERT(mtli_get_u32(buf + 13) == 0xAABBCCDDu);
    ASSERT_EQ_INT(mtli_get_u32(buf + 17), 3);
    ASSERT(memcmp(buf + 21, "h\xc3\xa9", 3) == 0);
    ASSERT(mtli_get_u32(buf + 24) == MTLI_STRING_ABSENT);
    ASSERT(mtli_get_f32(buf + 36) == 3.0f);
    ASSERT(mtli_get_u32(buf + 40) == mtli_crc32c(0, buf, 40));

    /* too small a buffer: an internal error, never a write past the end */
    uint8_t small[20];
    mtli_writer_memory(&w, small, 10);
    mtli_w_section(&w, 9, body_sample, NULL);
    ASSERT_STATUS(MTL_ERR_INTERNAL, mtli_writer_finish(&w));

    /* the FD sink writes the same bytes (through a pipe-sized chunk) */
    FILE *tf = tmpfile();
    ASSERT(tf);
    mtli_settings s;
    mtli_settings_defaults(&s);
    ASSERT_OK(mtli_writer_fd(&w, &s, fileno(tf)));
    mtli_w_section(&w, 9, body_sample, NULL);
    ASSERT_OK(mtli_writer_finish(&w));
    mtli_writer_close(&w);
    uint8_t back[64];
    rewind(tf);
    ASSERT_EQ_INT(fread(back, 1, sizeof back, tf), m.pos);
    ASSERT(memcmp(back, buf, (size_t)m.pos) == 0);
    fclose(tf);
    return 0;
}

/* Arrays larger than the FD chunk are split and still agree. */
TEST(writer_fd_large)
{
    size_t n = 50000; /* 200 KB: several 64 KiB chunks */
    float *v = malloc(n * sizeof *v);
    uint8_t *mem = malloc(n * 4 + 64), *back = malloc(n * 4 + 64);
    ASSERT(v && mem && back);
    for (size_t i = 0; i < n; i++) v[i] = (float)i * 0.5f;
    mtli_writer w;
    mtli_writer_memory(&w, mem, n * 4 + 64);
    mtli_w_u8(&w, 1); /* misalign the array on purpose */
    mtli_w_f32s(&w, v, n);
    ASSERT_OK(mtli_writer_finish(&w));
    size_t total = (size_t)w.pos;
    FILE *tf = tmpfile();
    mtli_settings s;
    mtli_settings_defaults(&s);
    ASSERT_OK(mtli_writer_fd(&w, &s, fileno(tf)));
    mtli_w_u8(&w, 1);
    mtli_w_f32s(&w, v, n);
    ASSERT_OK(mtli_writer_finish(&w));
    mtli_writer_close(&w);
    rewind(tf);
    ASSERT_EQ_INT(fread(back, 1, n * 4 + 64, tf), total);
    ASSERT(memcmp(back, mem, total) == 0);
    fclose(tf);
    free(v);
    free(mem);
    free(back);
    return 0;
}

/* ---- reader ----------------------------------------------------------------------- */

TEST(reader_bounds_and_offsets)
{
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    mtli_put_u32(buf + 4, 0xDEADBEEFu);
    mtli_put_u64(buf + 8, 1000); /* a count */
    mtli_reader r;
    mtli_reader_init(&r, buf, 4, 20, "section TEST");
    uint32_t v32;
    ASSERT_OK(mtli_r_u32(&r, "word", &v32));
    ASSERT(v32 == 0xDEADBEEFu);
    uint64_t n;
    /* 1000 items of 4 bytes cannot follow in 4 bytes: refused, offset 8 */
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_count(&r, "item count", 1u << 20, 4, &n));
    ASSERT_MSG_HAS("byte 8 (section TEST)");
    ASSERT_MSG_HAS("item count");
    r.pos = 8;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_count(&r, "item count", 999, 0, &n));
    ASSERT_MSG_HAS("limit 999");
    r.pos = 16;
    uint64_t v64;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_u64(&r, "tail", &v64)); /* 4 bytes left in range */
    ASSERT_MSG_HAS("byte 16");
    ASSERT_MSG_HAS("only 4 left");
    ASSERT_EQ_INT(r.pos, 16); /* a failed read does not move */
    float f[2];
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_f32s(&r, "floats", f, 2));
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_f32s(&r, "floats", f, SIZE_MAX / 2)); /* no overflow */
    ASSERT_OK(mtli_r_f32s(&r, "floats", f, 1));
    ASSERT_OK(mtli_r_done(&r, false));
    r.pos = 19;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_done(&r, false));
    ASSERT_OK(mtli_r_done(&r, true));
    /* bool must be 0/1 */
    buf[20] = 2;
    mtli_reader_init(&r, buf, 20, 21, "x");
    bool b;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_bool(&r, "flag", &b));
    ASSERT_MSG_HAS("byte 20");
    return 0;
}

TEST(reader_strings)
{
    mtli_settings s;
    mtli_settings_defaults(&s);
    uint8_t buf[64];
    char *str = NULL;
    mtli_reader r;
    /* valid */
    mtli_put_u32(buf, 3);
    memcpy(buf + 4, "abc", 3);
    mtli_reader_init(&r, buf, 0, 7, "x");
    ASSERT_OK(mtli_r_str(&r, "name", &s, 10, false, &str));
    ASSERT(strcmp(str, "abc") == 0);
    mtli_free(&s, str);
    /* over the limit, longer than the range, embedded NUL, bad UTF-8 */
    mtli_reader_init(&r, buf, 0, 7, "x");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_str(&r, "name", &s, 2, false, &str));
    mtli_put_u32(buf, 0x7FFFFFFFu);
    mtli_reader_init(&r, buf, 0, 7, "x");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_str(&r, "name", &s, 0xFFFFFFF0u, false, &str));
    mtli_put_u32(buf, 3);
    buf[5] = 0;
    mtli_reader_init(&r, buf, 0, 7, "x");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_str(&r, "name", &s, 10, false, &str));
    buf[5] = 0xC0;
    mtli_reader_init(&r, buf, 0, 7, "x");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_str(&r, "name", &s, 10, false, &str));
    /* absent */
    mtli_put_u32(buf, MTLI_STRING_ABSENT);
    mtli_reader_init(&r, buf, 0, 4, "x");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_r_str(&r, "name", &s, 10, false, &str));
    mtli_reader_init(&r, buf, 0, 4, "x");
    str = (char *)buf;
    ASSERT_OK(mtli_r_str(&r, "unit", &s, 10, true, &str));
    ASSERT(str == NULL);
    return 0;
}

TEST(utf8_validation)
{
    ASSERT(mtli_utf8_valid("", 0));
    ASSERT(mtli_utf8_valid("kJ/mol", 6));
    ASSERT(mtli_utf8_valid("\xc3\xa9", 2));             /* é */
    ASSERT(mtli_utf8_valid("\xe2\x82\xac", 3));         /* € */
    ASSERT(mtli_utf8_valid("\xf0\x9f\x98\x80", 4));     /* U+1F600 */
    ASSERT(mtli_utf8_valid("\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
    ASSERT(!mtli_utf8_valid("a\0b", 3));                /* NUL */
    ASSERT(!mtli_utf8_valid("\xc0\xaf", 2));            /* overlong '/' */
    ASSERT(!mtli_utf8_valid("\xe0\x80\xaf", 3));        /* overlong */
    ASSERT(!mtli_utf8_valid("\xed\xa0\x80", 3));        /* surrogate D800 */
    ASSERT(!mtli_utf8_valid("\xf4\x90\x80\x80", 4));    /* > U+10FFFF */
    ASSERT(!mtli_utf8_valid("\xc3", 1));                /* truncated */
    ASSERT(!mtli_utf8_valid("\x80", 1));                /* lone continuation */
    ASSERT(!mtli_utf8_valid("\xff", 1));
    return 0;
}

/* ---- framing ------------------------------------------------------------------------ */

static void body_two_sections(mtli_writer *w, const void *arg)
{
    (void)arg;
    mtli_w_section(w, MTLI_SEC_METADATA, body_sample, NULL);
    mtli_w_section(w, 4000, body_sample, NULL); /* unknown: skipped by readers */
}

/* Recompute the trailer after editing a file. */
static void fix_crc(uint8_t *buf, size_t n)
{
    mtli_put_u32(buf + n - 4, mtli_crc32c(0, buf, n - 4));
}

TEST(frame_round_trip_and_errors)
{
    size_t size = 0;
    ASSERT_OK(mtli_file_save_buffer(MTLI_FILE_MODEL, body_two_sections, NULL, NULL, 0, &size));
    uint8_t buf[256], copy[256];
    ASSERT(size <= sizeof buf);
    size_t size2 = 0;
    ASSERT_STATUS(MTL_ERR_SHAPE, mtli_file_save_buffer(MTLI_FILE_MODEL, body_two_sections, NULL, buf, size - 1, &size2));
    ASSERT_EQ_INT(size2, size);
    ASSERT_OK(mtli_file_save_buffer(MTLI_FILE_MODEL, body_two_sections, NULL, buf, sizeof buf, &size2));
    ASSERT(memcmp(buf, MTLI_FILE_MAGIC, 8) == 0);
    ASSERT_EQ_INT(mtli_get_u32(buf + 8), 0x00010000);
    ASSERT_EQ_INT(mtli_get_u32(buf + 12), 1);
    ASSERT_EQ_INT(mtli_get_u64(buf + 16), size);

    mtli_file f;
    ASSERT_OK(mtli_file_parse(&f, buf, size));
    ASSERT(f.sec[MTLI_SEC_METADATA].present);
    ASSERT_EQ_INT(f.sec[MTLI_SEC_METADATA].begin, 24 + 12);
    ASSERT(!f.sec[MTLI_SEC_ARCH].present);
    ASSERT(!f.newer_minor);

    /* a newer minor version reads; a newer major is a version error */
    memcpy(copy, buf, size);
    mtli_put_u32(copy + 8, 0x00010007);
    fix_crc(copy, size);
    ASSERT_OK(mtli_file_parse(&f, copy, size));
    ASSERT(f.newer_minor);
    mtli_put_u32(copy + 8, 0x00020000);
    fix_crc(copy, size);
    ASSERT_STATUS(MTL_ERR_VERSION, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("2.0");
    /* ... even in a file too short to hold anything else */
    ASSERT_STATUS(MTL_ERR_VERSION, mtli_file_parse(&f, copy, 12));

    /* bad magic, truncation, checksum, size field, kind */
    memcpy(copy, buf, size);
    copy[1] = 'X';
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("magic");
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, buf, size - 1));
    ASSERT_MSG_HAS("byte 16");
    memcpy(copy, buf, size);
    copy[40] ^= 1;
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("checksum");
    memcpy(copy, buf, size);
    mtli_put_u32(copy + 12, 3);
    fix_crc(copy, size);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("kind");

    /* a section longer than the file, and a duplicate section */
    memcpy(copy, buf, size);
    mtli_put_u64(copy + 24 + 4, 1u << 30);
    fix_crc(copy, size);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("byte 24");
    memcpy(copy, buf, size);
    size_t second = 24 + 12 + (size_t)mtli_get_u64(buf + 28);
    mtli_put_u32(copy + second, MTLI_SEC_METADATA);
    fix_crc(copy, size);
    ASSERT_STATUS(MTL_ERR_FORMAT, mtli_file_parse(&f, copy, size));
    ASSERT_MSG_HAS("twice");
    return 0;
}

/* ---- hostile files --------------------------------------------------------------------
 * Files built field by field, with a valid checksum, that lie about
 * counts and sizes.  Each must be refused with MTL_ERR_FORMAT (or
 * MTL_ERR_VERSION) naming a byte offset, without any large allocation. */

static size_t g_max_alloc;
static void *track_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    if (size > g_max_alloc) g_max_alloc = size;
    void *p = NULL;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}
static void track_free(void *user, void *p)
{
    (void)user;
    free(p);
}

typedef struct file_builder {
    uint8_t buf[8192];
    mtli_writer w;
    size_t section_at;
} file_builder;

static void fb_begin(file_builder *b, uint32_t version)
{
    mtli_writer_memory(&b->w, b->buf, sizeof b->buf);
    mtli_w_bytes(&b->w, MTLI_FILE_MAGIC, 8);
    mtli_w_u32(&b->w, version);
    mtli_w_u32(&b->w, MTLI_FILE_MODEL);
    mtli_w_u64(&b->w, 0); /* patched by fb_end */
}

static void fb_section(file_builder *b, uint32_t id)
{
    mtli_w_u32(&b->w, id);
    b->section_at = (size_t)b->w.pos;
    mtli_w_u64(&b->w, 0); /* patched by fb_section_end */
}

static void fb_section_end(file_builder *b)
{
    mtli_put_u64(b->buf + b->section_at, b->w.pos - b->section_at - 8);
}

static size_t fb_end(file_builder *b)
{
    mtli_put_u64(b->buf + 16, b->w.pos + 4);
    mtli_writer_finish(&b->w);
    return (size_t)b->w.pos;
}

/* What to break in the otherwise valid file written by build_file. */
typedef struct hostile {
    uint64_t n_inputs, n_trunk, units, n_tasks, n_outputs, param_count, meta_count;
    uint32_t act, name_len, version;
    float param0, scale0, min0;
    int params_short;   /* PARAMS holds fewer floats than it says */
    int no_params;      /* omit PARAMS */
    int extra_section;  /* an unknown section and trailing bytes in METADATA */
} hostile;

static hostile hostile_defaults(void)
{
    hostile h = { 2, 1, 3, 1, 1, 13, 1, MTL_ACT_RELU, 1, MTLI_FORMAT_VERSION, 0.5f, 1.0f, -1.0f, 0, 0, 0 };
    return h;
}

/* 2 inputs, trunk 3 relu, task "y" (regression, 1 output): 13 params. */
static size_t build_file(file_builder *b, const hostile *h)
{
    fb_begin(b, h->version);
    fb_section(b, MTLI_SEC_ARCH);
    mtli_w_u64(&b->w, h->n_inputs);
    mtli_w_u64(&b->w, h->n_trunk);
    mtli_w_u64(&b->w, h->units);
    mtli_w_u32(&b->w, h->act);
    mtli_w_f32(&b->w, 0.0f);
    mtli_w_u32(&b->w, 0);
    mtli_w_u64(&b->w, h->n_tasks);
    mtli_w_u32(&b->w, h->name_len); /* task name "y" */
    mtli_w_bytes(&b->w, "y", 1);
    mtli_w_u32(&b->w, MTL_TASK_REGRESSION);
    mtli_w_u64(&b->w, h->n_outputs);
    mtli_w_u32(&b->w, MTL_LOSS_MSE);
    mtli_w_f64(&b->w, 1.0);
    mtli_w_f64(&b->w, 1.0);
    mtli_w_u8(&b->w, 1);
    mtli_w_u8(&b->w, 0);
    mtli_w_str(&b->w, NULL);
    mtli_w_str(&b->w, NULL);
    mtli_w_u64(&b->w, 0);
    fb_section_end(b);
    if (!h->no_params) {
        fb_section(b, MTLI_SEC_PARAMS);
        mtli_w_u64(&b->w, h->param_count);
        mtli_w_f32(&b->w, h->param0);
        for (int i = 1; i < (h->params_short ? 5 : 13); i++) mtli_w_f32(&b->w, 0.25f);
        fb_section_end(b);
    }
    fb_section(b, MTLI_SEC_SCALERS);
    mtli_w_u64(&b->w, 2);
    mtli_w_u64(&b->w, 1);
    float ones[2] = { 1.0f, 1.0f }, zeros[2] = { 0.0f, 0.0f }, mins[2] = { h->min0, 0.0f };
    float scales[2] = { h->scale0, 1.0f };
    mtli_w_f32s(&b->w, zeros, 2);
    mtli_w_f32s(&b->w, scales, 2);
    mtli_w_f32s(&b->w, mins, 2);
    mtli_w_f32s(&b->w, ones, 2);
    mtli_w_f32s(&b->w, zeros, 1);
    mtli_w_f32s(&b->w, ones, 1);
    fb_section_end(b);
    fb_section(b, MTLI_SEC_METADATA);
    mtli_w_u64(&b->w, h->meta_count);
    mtli_w_str(&b->w, "k");
    mtli_w_str(&b->w, "v");
    if (h->extra_section) mtli_w_u32(&b->w, 0xABCDEF); /* a field from the future */
    fb_section_end(b);
    if (h->extra_section) {
        fb_section(b, 777);
        mtli_w_str(&b->w, "a section this version does not know");
        fb_section_end(b);
    }
    return fb_end(b);
}

/* Load the file described by h with an allocation-tracking context. */
static mtl_status load_hostile(const hostile *h, mtl_model **out)
{
    static file_builder b;
    size_t n = build_file(&b, h);
    mtl_allocator a = MTL_ALLOCATOR_INIT;
    a.alloc = track_alloc;
    a.free = track_free;
    mtl_context *ctx = NULL;
    if (mtl_context_create(&ctx, &a) != MTL_OK) return MTL_ERR_INTERNAL;
    g_max_alloc = 0;
    mtl_status st = mtl_model_load_buffer(out, ctx, b.buf, n);
    mtl_context_destroy(ctx);
    return st;
}

#define EXPECT_HOSTILE(status, needle, ...)                                                 \
    do {                                                                                    \
        hostile h_ = hostile_defaults();                                                    \
        __VA_ARGS__;                                                                        \
        mtl_model *m_ = NULL;                                                               \
        ASSERT_STATUS(status, load_hostile(&h_, &m_));                                      \
        ASSERT(m_ == NULL);                                                                 \
        ASSERT_MSG_HAS("byte ");                                                            \
        ASSERT_MSG_HAS(needle);                                                             \
        if (g_max_alloc > (1u << 20)) FAILF("allocated %zu bytes for a tiny file", g_max_alloc); \
    } while (0)

TEST(hostile_files)
{
    /* the valid baseline loads */
    hostile h = hostile_defaults();
    mtl_model *m = NULL;
    ASSERT_OK(load_hostile(&h, &m));
    ASSERT_EQ_INT(mtl_model_param_count(m), 13);
    float p[13];
    ASSERT_OK(mtl_model_get_params(m, p, 13));
    ASSERT(p[0] == 0.5f);
    mtl_model_destroy(m);

    EXPECT_HOSTILE(MTL_ERR_FORMAT, "n_inputs", h_.n_inputs = 1ull << 40);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "n_inputs", h_.n_inputs = 0);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "trunk layer count", h_.n_trunk = 1ull << 40);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "trunk layer", h_.n_trunk = 2); /* the second is missing */
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "units", h_.units = 1ull << 40);
    /* 16M units is a legal layer: the parameter count (not finalize)
     * must refuse it before ~200 MB are allocated */
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "parameter count", h_.units = 1u << 24);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "parameter count", h_.param_count = 14);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "parameter count", h_.param_count = 1ull << 62);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "parameter count", h_.params_short = 1);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "no PARAMS", h_.no_params = 1);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "finite", h_.param0 = NAN);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "activation", h_.act = 99);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "task count", h_.n_tasks = 300);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "no task", h_.n_tasks = 0);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "task name", h_.name_len = 0x7FFFFFF0u);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "n_outputs", h_.n_outputs = 0);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "input scale", h_.scale0 = 0.0f);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "domain", h_.min0 = 5.0f);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "metadata count", h_.meta_count = 1ull << 60);
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "metadata", h_.meta_count = 2);
    /* trailing bytes in a known section: an error at this minor version */
    EXPECT_HOSTILE(MTL_ERR_FORMAT, "unexpected bytes", h_.extra_section = 1);
    /* a newer MAJOR: version error */
    EXPECT_HOSTILE(MTL_ERR_VERSION, "version 2.0", h_.version = 2u << 16);
    /* a newer MINOR may append fields and sections: they are skipped ... */
    h = hostile_defaults();
    h.version = MTLI_FORMAT_VERSION + 1;
    h.extra_section = 1;
    ASSERT_OK(load_hostile(&h, &m));
    const char *v;
    ASSERT_OK(mtl_model_get_metadata(m, "k", &v));
    ASSERT(strcmp(v, "v") == 0);
    mtl_model_destroy(m);
    /* ... but an id it does not know is a version problem, not corruption */
    EXPECT_HOSTILE(MTL_ERR_VERSION, "activation", h_.act = 99; h_.version = MTLI_FORMAT_VERSION + 1);
    return 0;
}

/* The worked example of docs/file-format.md, byte for byte. */
TEST(worked_example_bytes)
{
    static const uint8_t expect[147] = {
        0x89, 0x4d, 0x54, 0x4c, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x93, 0, 0, 0, 0, 0, 0, 0, /* size */
        0x01, 0, 0, 0, 0x4f, 0, 0, 0, 0, 0, 0, 0, /* ARCH, 79 bytes */
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0, 0, 0, 0x79, 0x01, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x01, 0x00,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        0x02, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, /* PARAMS, 16 bytes */
        0x02, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0xbe,
        0x4e, 0x71, 0x96, 0xae, /* CRC-32C */
    };
    ASSERT(mtli_crc32c(0, expect, 143) == 0xAE96714Eu);
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, 1));
    ASSERT_OK(mtl_model_add_task(m, "y", MTL_TASK_REGRESSION, 1, NULL));
    ASSERT_OK(mtl_model_finalize(m));
    const float p[2] = { 0.5f, -0.25f };
    ASSERT_OK(mtl_model_set_params(m, p, 2));
    uint8_t buf[200];
    size_t size = 0;
    ASSERT_OK(mtl_model_save_buffer(m, buf, sizeof buf, &size));
    mtl_model_destroy(m);
    ASSERT_EQ_INT(size, sizeof expect);
    for (size_t i = 0; i < size; i++)
        if (buf[i] != expect[i]) FAILF("byte 0x%02zx is 0x%02x, the document says 0x%02x", i, buf[i], expect[i]);
    return 0;
}

/* A file the loader would refuse is never written. */
TEST(save_refuses_non_finite)
{
    mtl_model *m = NULL;
    ASSERT_OK(mtl_model_create(&m, NULL, 2));
    ASSERT_OK(mtl_model_add_task(m, "y", MTL_TASK_REGRESSION, 1, NULL));
    ASSERT_OK(mtl_model_finalize(m));
    m->params[1] = INFINITY; /* what a diverged external update could leave */
    size_t size = 0;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_save_buffer(m, NULL, 0, &size));
    ASSERT_MSG_HAS("parameter 1");
    char path[] = "/tmp/mtl-nonfinite-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_model_save(m, path));
    FILE *f = fopen(path, "rb");
    ASSERT(f && fgetc(f) == EOF); /* the existing (empty) file is untouched */
    fclose(f);
    unlink(path);
    m->params[1] = 0.5f;
    mtl_trainer *t = NULL;
    ASSERT_OK(mtl_trainer_create(&t, m, 4));
    t->opt_state.m[0] = NAN;
    ASSERT_STATUS(MTL_ERR_NON_FINITE, mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &size));
    ASSERT_MSG_HAS("first moment");
    t->opt_state.m[0] = 0.0f;
    ASSERT_OK(mtl_trainer_save_checkpoint_buffer(t, NULL, 0, &size));
    mtl_trainer_destroy(t);
    mtl_model_destroy(m);
    return 0;
}

TEST_MAIN(TEST_ENTRY(scalars_known_bytes), TEST_ENTRY(arrays_both_orders), TEST_ENTRY(crc32c_vectors),
          TEST_ENTRY(crc32c_slicing_matches_bitwise), TEST_ENTRY(writer_sinks_agree),
          TEST_ENTRY(writer_fd_large), TEST_ENTRY(reader_bounds_and_offsets), TEST_ENTRY(reader_strings),
          TEST_ENTRY(utf8_validation), TEST_ENTRY(frame_round_trip_and_errors),
          TEST_ENTRY(hostile_files), TEST_ENTRY(worked_example_bytes),
          TEST_ENTRY(save_refuses_non_finite))
