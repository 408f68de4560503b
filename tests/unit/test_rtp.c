/*
 * test_rtp.c - the RTP codec: hand-written packets as browsers send them,
 * one- and two-byte header extensions, truncation at every length, overrunning
 * lengths, padding, wrong versions, rtcp-mux demultiplexing, in-place
 * rewriting, and the stream rewriter's continuity across source switches and
 * 16/32-bit wraps with loss and reordering in its input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "rtp.h"

/*
 * An Opus packet as Chrome sends it: PT 111, marker, seq 0x1234, ts
 * 0xDEADBEEF, SSRC 0x11223344, one-byte extensions ssrc-audio-level (id 1:
 * voice, -42 dBov), abs-send-time (id 2), transport-wide-cc (id 3, seq 0x0102)
 * and mid (id 4, "0"), five padding bytes in the extension block, then a
 * 5-byte payload.
 */
static const uint8_t chrome_opus[] = {
    0x90, 0xEF, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x11, 0x22, 0x33, 0x44, /* fixed header */
    0xBE, 0xDE, 0x00, 0x04,                                                 /* 4 words */
    0x10, 0xAA,                                                             /* id 1, len 1 */
    0x22, 0x12, 0x34, 0x56,                                                 /* id 2, len 3 */
    0x31, 0x01, 0x02,                                                       /* id 3, len 2 */
    0x40, '0',                                                              /* id 4, len 1 */
    0x00, 0x00, 0x00, 0x00, 0x00,                                           /* padding */
    0xF8, 0xFF, 0xFE, 0x01, 0x02,                                           /* payload */
};

/* VP8 with two CSRCs, a two-byte extension (id 7, 0 bytes; id 200, 3 bytes) and 4 padding. */
static const uint8_t vp8_two_byte[] = {
    0xB2, 0x60, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x10, 0xCA, 0xFE, 0xBA, 0xBE, /* P, X, CC=2, PT 96 */
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,                         /* CSRCs */
    0x10, 0x00, 0x00, 0x02,                                                 /* 0x1000, 2 words */
    0x07, 0x00, 0xC8, 0x03, 'a',  'b',  'c',  0x00,                         /* elements + pad */
    0x90, 0xE0, 0x00,                                                       /* payload */
    0x00, 0x00, 0x00, 0x04,                                                 /* padding */
};

static void test_parse_chrome_opus(void **state)
{
    (void)state;
    struct media_rtp_view v;
    assert_int_equal(media_rtp_parse(chrome_opus, sizeof(chrome_opus), &v), 0);
    assert_true(v.marker);
    assert_false(v.padding);
    assert_true(v.extension);
    assert_int_equal(v.payload_type, 111);
    assert_int_equal(v.seq, 0x1234);
    assert_int_equal(v.timestamp, 0xDEADBEEFu);
    assert_int_equal(v.ssrc, 0x11223344u);
    assert_int_equal(v.csrc_count, 0);
    assert_int_equal(v.ext_profile, MEDIA_RTP_EXT_ONE_BYTE);
    assert_int_equal(v.ext_len, 16);
    assert_int_equal(v.header_len, 32);
    assert_int_equal(v.payload_len, 5);
    assert_ptr_equal(v.payload, chrome_opus + 32);
    assert_int_equal(v.padding_len, 0);

    struct media_rtp_ext e;
    bool voice;
    uint8_t level;
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), 0);
    assert_int_equal(media_rtp_ext_audio_level(&e, &voice, &level), 0);
    assert_true(voice);
    assert_int_equal(level, 42);
    uint32_t ast;
    assert_int_equal(media_rtp_ext_find(&v, 2, &e), 0);
    assert_int_equal(media_rtp_ext_abs_send_time(&e, &ast), 0);
    assert_int_equal(ast, 0x123456);
    uint16_t tw;
    assert_int_equal(media_rtp_ext_find(&v, 3, &e), 0);
    assert_int_equal(media_rtp_ext_twcc_seq(&e, &tw), 0);
    assert_int_equal(tw, 0x0102);
    const char *mid;
    size_t mid_len;
    assert_int_equal(media_rtp_ext_find(&v, 4, &e), 0);
    assert_int_equal(media_rtp_ext_mid(&e, &mid, &mid_len), 0);
    assert_int_equal(mid_len, 1);
    assert_memory_equal(mid, "0", 1);
    assert_int_equal(media_rtp_ext_find(&v, 5, &e), MEDIA_RTP_ERR_NOT_FOUND);
    assert_int_equal(media_rtp_ext_find(&v, 0, &e), MEDIA_RTP_ERR_NOT_FOUND);
    /* Wrong sizes for the value asked. */
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), 0);
    assert_int_equal(media_rtp_ext_twcc_seq(&e, &tw), MEDIA_RTP_ERR_SIZE);
    assert_int_equal(media_rtp_ext_abs_send_time(&e, &ast), MEDIA_RTP_ERR_SIZE);

    /* The walk yields the four in order, then ends. */
    struct media_rtp_ext_iter it;
    media_rtp_ext_iter_init(&it, &v);
    const uint8_t ids[] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof(ids); i++) {
        assert_int_equal(media_rtp_ext_next(&it, &e), 1);
        assert_int_equal(e.id, ids[i]);
    }
    assert_int_equal(media_rtp_ext_next(&it, &e), 0);
    assert_int_equal(media_rtp_ext_next(&it, &e), 0);
}

static void test_parse_two_byte_csrc_padding(void **state)
{
    (void)state;
    struct media_rtp_view v;
    assert_int_equal(media_rtp_parse(vp8_two_byte, sizeof(vp8_two_byte), &v), 0);
    assert_false(v.marker);
    assert_true(v.padding);
    assert_int_equal(v.payload_type, 96);
    assert_int_equal(v.seq, 0xFFFF);
    assert_int_equal(v.csrc_count, 2);
    assert_int_equal(v.csrc[7], 2);
    assert_int_equal(v.header_len, 12 + 8 + 4 + 8);
    assert_int_equal(v.payload_len, 3);
    assert_int_equal(v.padding_len, 4);
    assert_int_equal(v.header_len + v.payload_len + v.padding_len, v.len);

    struct media_rtp_ext e;
    assert_int_equal(media_rtp_ext_find(&v, 7, &e), 0);
    assert_int_equal(e.len, 0);
    assert_int_equal(media_rtp_ext_find(&v, 200, &e), 0);
    assert_int_equal(e.len, 3);
    assert_memory_equal(e.data, "abc", 3);
    const char *mid;
    size_t mid_len;
    assert_int_equal(media_rtp_ext_find(&v, 7, &e), 0);
    assert_int_equal(media_rtp_ext_mid(&e, &mid, &mid_len), MEDIA_RTP_ERR_SIZE);
}

/* A minimal packet: fixed header and `payload` bytes of payload. */
static size_t build(uint8_t *buf, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc,
                    size_t payload)
{
    uint8_t h[12] = {0x80,
                     pt,
                     (uint8_t)(seq >> 8),
                     (uint8_t)seq,
                     (uint8_t)(ts >> 24),
                     (uint8_t)(ts >> 16),
                     (uint8_t)(ts >> 8),
                     (uint8_t)ts,
                     (uint8_t)(ssrc >> 24),
                     (uint8_t)(ssrc >> 16),
                     (uint8_t)(ssrc >> 8),
                     (uint8_t)ssrc};
    memcpy(buf, h, sizeof(h));
    memset(buf + 12, 0x5A, payload);
    return 12 + payload;
}

static void test_truncation_every_length(void **state)
{
    (void)state;
    struct media_rtp_view v;
    /* Every prefix of the extension packet is refused: its lengths no longer fit. */
    for (size_t n = 0; n < 32; n++)
        assert_int_equal(media_rtp_parse(chrome_opus, n, &v), MEDIA_RTP_ERR_TRUNCATED);
    for (size_t n = 32; n <= sizeof(chrome_opus); n++) {
        assert_int_equal(media_rtp_parse(chrome_opus, n, &v), 0);
        assert_int_equal(v.payload_len, n - 32);
    }
    /* Prefixes of the padded one: too short for CSRCs/extension, or padding too big. */
    for (size_t n = 0; n < sizeof(vp8_two_byte); n++) {
        int rc = media_rtp_parse(vp8_two_byte, n, &v);
        if (rc == 0) {
            assert_true(v.header_len + v.padding_len <= n);
            continue;
        }
        assert_true(rc == MEDIA_RTP_ERR_TRUNCATED || rc == MEDIA_RTP_ERR_PADDING);
        if (n < 32)
            assert_int_equal(rc, MEDIA_RTP_ERR_TRUNCATED);
    }
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct media_rtp_view v;
    size_t n = build(buf, 96, 1, 2, 3, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);

    for (uint8_t ver = 0; ver < 4; ver++) {
        if (ver == 2)
            continue;
        buf[0] = (uint8_t)(ver << 6);
        assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_VERSION);
    }
    buf[0] = 0x80 | 15; /* 15 CSRCs: 60 bytes that are not there */
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_TRUNCATED);
    buf[0] = 0x82; /* 2 CSRCs: exactly the 8 bytes of payload */
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(v.payload_len, 0);

    /* An extension length that overruns. */
    buf[0] = 0x90;
    buf[12] = 0xBE, buf[13] = 0xDE, buf[14] = 0x00, buf[15] = 0x02; /* 8 bytes, only 4 left */
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_TRUNCATED);
    buf[15] = 0x01;
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    buf[14] = 0xFF, buf[15] = 0xFF;
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_TRUNCATED);

    /* Padding: zero, larger than the packet, larger than the payload, exactly the payload. */
    n = build(buf, 96, 1, 2, 3, 8);
    buf[0] = 0xA0;
    buf[n - 1] = 0;
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_PADDING);
    buf[n - 1] = 255;
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_PADDING);
    buf[n - 1] = 9;
    assert_int_equal(media_rtp_parse(buf, n, &v), MEDIA_RTP_ERR_PADDING);
    buf[n - 1] = 8;
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(v.payload_len, 0);
    assert_int_equal(v.padding_len, 8);
    /* A 12-byte packet with P set: its last byte is in the header. */
    assert_int_equal(media_rtp_parse(buf, 12, &v), MEDIA_RTP_ERR_PADDING);
}

static void test_extension_walk_errors(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct media_rtp_view v;
    struct media_rtp_ext e;
    struct media_rtp_ext_iter it;
    size_t n = build(buf, 96, 1, 2, 3, 8);
    buf[0] = 0x90;
    /* One-byte: id 1 claims 16 bytes inside a 4-byte block. */
    memcpy(buf + 12, (const uint8_t[]){0xBE, 0xDE, 0x00, 0x01, 0x1F, 0, 0, 0}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), MEDIA_RTP_ERR_EXTENSION);
    media_rtp_ext_iter_init(&it, &v);
    assert_int_equal(media_rtp_ext_next(&it, &e), MEDIA_RTP_ERR_EXTENSION);
    assert_int_equal(media_rtp_ext_next(&it, &e), 0);
    /* One-byte: id 15 stops the walk before anything after it. */
    memcpy(buf + 12, (const uint8_t[]){0xBE, 0xDE, 0x00, 0x01, 0xF0, 0x10, 0xAA, 0}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), MEDIA_RTP_ERR_NOT_FOUND);
    /* One-byte: a byte with id 0 is padding whatever its length nibble says. */
    memcpy(buf + 12, (const uint8_t[]){0xBE, 0xDE, 0x00, 0x01, 0x01, 0x10, 0xAA, 0}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    media_rtp_ext_iter_init(&it, &v);
    assert_int_equal(media_rtp_ext_next(&it, &e), 1);
    assert_int_equal(e.id, 1);
    assert_int_equal(e.data[0], 0xAA);
    assert_int_equal(media_rtp_ext_next(&it, &e), 0);
    /* Two-byte: an id in the last byte with no length. */
    memcpy(buf + 12, (const uint8_t[]){0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 5, &e), MEDIA_RTP_ERR_EXTENSION);
    /* Two-byte: a length past the block. */
    memcpy(buf + 12, (const uint8_t[]){0x10, 0x03, 0x00, 0x01, 0x05, 0x03, 0x00, 0x00}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 5, &e), MEDIA_RTP_ERR_EXTENSION);
    /* Another profile: no elements, not an error. */
    memcpy(buf + 12, (const uint8_t[]){0x12, 0x34, 0x00, 0x01, 0x10, 0xAA, 0x00, 0x00}, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), MEDIA_RTP_ERR_NOT_FOUND);
    /* No extension at all. */
    n = build(buf, 96, 1, 2, 3, 8);
    assert_int_equal(media_rtp_parse(buf, n, &v), 0);
    assert_int_equal(media_rtp_ext_find(&v, 1, &e), MEDIA_RTP_ERR_NOT_FOUND);
}

static void test_demux(void **state)
{
    (void)state;
    uint8_t p[2] = {0x80, 0};
    for (unsigned b = 0; b < 256; b++) {
        p[1] = (uint8_t)b;
        unsigned pt = b & 0x7F;
        enum media_rtp_kind want = pt >= 64 && pt <= 95 ? MEDIA_RTP_KIND_RTCP : MEDIA_RTP_KIND_RTP;
        assert_int_equal(media_rtp_demux(p, 2), want);
    }
    p[1] = 200; /* SR */
    assert_int_equal(media_rtp_demux(p, 2), MEDIA_RTP_KIND_RTCP);
    p[1] = 205; /* RTPFB */
    assert_int_equal(media_rtp_demux(p, 2), MEDIA_RTP_KIND_RTCP);
    p[1] = 111 | 0x80; /* Opus with the marker */
    assert_int_equal(media_rtp_demux(p, 2), MEDIA_RTP_KIND_RTP);
    assert_int_equal(media_rtp_demux(p, 1), MEDIA_RTP_KIND_INVALID);
    p[0] = 0x40;
    assert_int_equal(media_rtp_demux(p, 2), MEDIA_RTP_KIND_INVALID);
}

static void test_set_fields(void **state)
{
    (void)state;
    uint8_t buf[sizeof(chrome_opus)];
    memcpy(buf, chrome_opus, sizeof(buf));
    assert_int_equal(media_rtp_set_ssrc(buf, sizeof(buf), 0xA1B2C3D4), 0);
    assert_int_equal(media_rtp_set_seq(buf, sizeof(buf), 0xFFFE), 0);
    assert_int_equal(media_rtp_set_timestamp(buf, sizeof(buf), 7), 0);
    assert_int_equal(media_rtp_set_payload_type(buf, sizeof(buf), 0x80 | 109), 0);
    assert_int_equal(media_rtp_set_twcc_seq(buf, sizeof(buf), 3, 0xBEEF), 0);
    struct media_rtp_view v;
    assert_int_equal(media_rtp_parse(buf, sizeof(buf), &v), 0);
    assert_int_equal(v.ssrc, 0xA1B2C3D4u);
    assert_int_equal(v.seq, 0xFFFE);
    assert_int_equal(v.timestamp, 7);
    assert_int_equal(v.payload_type, 109);
    assert_true(v.marker);
    struct media_rtp_ext e;
    uint16_t tw;
    assert_int_equal(media_rtp_ext_find(&v, 3, &e), 0);
    assert_int_equal(media_rtp_ext_twcc_seq(&e, &tw), 0);
    assert_int_equal(tw, 0xBEEF);
    /* Only those bytes changed. */
    assert_memory_equal(buf + 12, chrome_opus + 12, 11);
    assert_memory_equal(buf + 25, chrome_opus + 25, sizeof(buf) - 25);

    assert_int_equal(media_rtp_set_twcc_seq(buf, sizeof(buf), 1, 1), MEDIA_RTP_ERR_SIZE);
    assert_int_equal(media_rtp_set_twcc_seq(buf, sizeof(buf), 9, 1), MEDIA_RTP_ERR_NOT_FOUND);
    assert_int_equal(media_rtp_set_twcc_seq(buf, 20, 3, 1), MEDIA_RTP_ERR_TRUNCATED);
    assert_int_equal(media_rtp_set_ssrc(buf, 11, 1), MEDIA_RTP_ERR_TRUNCATED);
    assert_int_equal(media_rtp_set_seq(buf, 11, 1), MEDIA_RTP_ERR_TRUNCATED);
    assert_int_equal(media_rtp_set_timestamp(buf, 11, 1), MEDIA_RTP_ERR_TRUNCATED);
    assert_int_equal(media_rtp_set_payload_type(buf, 11, 1), MEDIA_RTP_ERR_TRUNCATED);
}

static void test_strings(void **state)
{
    (void)state;
    for (int e = 0; e >= MEDIA_RTP_ERR_SIZE; e--)
        assert_string_not_equal(media_rtp_strerror(e), "unknown error");
    assert_string_equal(media_rtp_strerror(-100), "unknown error");
    for (int r = 0; r < MEDIA_RTP_REWRITE_COUNT; r++)
        assert_string_not_equal(media_rtp_rewrite_name(r), "unknown");
}

/* ------------------------------------------------------------------------- */
/* The stream rewriter                                                        */
/* ------------------------------------------------------------------------- */

#define OUT_SSRC 0x0D0C0D0Cu
#define RATE     90000u

struct sent {
    uint16_t seq;
    uint32_t ts;
};

static struct sent map(struct media_rtp_rewriter *rw, uint32_t ssrc, uint16_t seq, uint32_t ts,
                       uint64_t now_us, enum media_rtp_rewrite want)
{
    struct sent s = {0, 0};
    assert_int_equal(media_rtp_rewriter_map(rw, ssrc, seq, ts, now_us, RATE, &s.seq, &s.ts), want);
    return s;
}

/* Within a source: gaps and reordering are kept, across the 16-bit and 32-bit wraps. */
static void test_rewriter_one_source_wraps(void **state)
{
    (void)state;
    struct media_rtp_rewriter rw;
    /* Outgoing numbers start near both wraps; incoming ones near neither. */
    media_rtp_rewriter_init(&rw, OUT_SSRC, 65530, 0xFFFFF000u);
    struct sent s = map(&rw, 0xAAAA, 1000, 5000, 0, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, 65530);
    assert_int_equal(s.ts, 0xFFFFF000u);
    /* 1001 lost; 1003 before 1002; timestamps 3000 apart. */
    s = map(&rw, 0xAAAA, 1003, 5000 + 3 * 3000, 60000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, 65533);
    assert_int_equal(s.ts, 0xFFFFF000u + 9000u); /* wrapped past 2^32 */
    assert_true(s.ts < 0x10000u);
    s = map(&rw, 0xAAAA, 1002, 5000 + 2 * 3000, 60000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, 65532);
    for (uint16_t i = 4; i < 20; i++) {
        s = map(&rw, 0xAAAA, (uint16_t)(1000 + i), 5000 + i * 3000u, i * 33000u,
                MEDIA_RTP_REWRITE_OK);
        assert_int_equal(s.seq, (uint16_t)(65530 + i)); /* wraps to 0, 1, ... */
        assert_int_equal(s.ts, 0xFFFFF000u + i * 3000u);
    }
    /* A packet from before the first one is stale: its number would precede the stream. */
    map(&rw, 0xAAAA, 999, 2000, 700000, MEDIA_RTP_REWRITE_STALE);
}

/* An incoming wrap, with reordering straddling it. */
static void test_rewriter_incoming_wrap(void **state)
{
    (void)state;
    struct media_rtp_rewriter rw;
    media_rtp_rewriter_init(&rw, OUT_SSRC, 100, 1000);
    uint16_t in[] = {65533, 65535, 65534, 1, 0, 3, 2, 5};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        uint32_t its = 0xFFFFFF00u + (uint32_t)(uint16_t)(in[i] - 65533) * 160u;
        struct sent s = map(&rw, 7, in[i], its, i * 20000, MEDIA_RTP_REWRITE_OK);
        assert_int_equal(s.seq, (uint16_t)(100 + (uint16_t)(in[i] - 65533)));
        assert_int_equal(s.ts, 1000 + (uint32_t)(uint16_t)(in[i] - 65533) * 160u);
    }
    /* Far more than 2^15 packets later the extended numbering still says "newer". */
    uint16_t seq = 5;
    for (unsigned i = 0; i < 70000; i++) {
        seq++;
        struct sent s = map(&rw, 7, seq, 0, 200000 + i, MEDIA_RTP_REWRITE_OK);
        assert_int_equal(s.seq, (uint16_t)(100 + (uint16_t)(seq - 65533)));
    }
}

/*
 * "Call next patient": a new SSRC continues the outgoing numbering, with the
 * timestamp advanced by the wall-clock gap, and packets reordered around the
 * switch point from the new source are dropped rather than duplicated.
 */
static void test_rewriter_switch(void **state)
{
    (void)state;
    struct media_rtp_rewriter rw;
    media_rtp_rewriter_init(&rw, OUT_SSRC, 65534, 0xFFFFFFFFu - 3000);
    struct sent s;
    /* Patient A: 10, 11, 13 (12 lost), 12 late. The highest is 13. */
    s = map(&rw, 0xA, 10, 50000, 1000000, MEDIA_RTP_REWRITE_OK);
    s = map(&rw, 0xA, 11, 53000, 1033000, MEDIA_RTP_REWRITE_OK);
    s = map(&rw, 0xA, 13, 59000, 1100000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, 1); /* 65534, 65535, (0), 1 */
    struct sent last_a = s;
    s = map(&rw, 0xA, 12, 56000, 1110000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, 0);

    /* Patient B, 250 ms after A's highest went out, numbered anything. */
    s = map(&rw, 0xB, 40000, 123456789, 1350000, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(s.seq, (uint16_t)(last_a.seq + 1));
    assert_int_equal(s.ts, last_a.ts + 250 * 90); /* 250 ms at 90 kHz */
    struct sent first_b = s;
    /* B's own gaps and reordering carry over. */
    s = map(&rw, 0xB, 40002, 123456789 + 6000, 1400000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, (uint16_t)(first_b.seq + 2));
    assert_int_equal(s.ts, first_b.ts + 6000);
    s = map(&rw, 0xB, 40001, 123456789 + 3000, 1400000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(s.seq, (uint16_t)(first_b.seq + 1));
    /* B's packet from before its first one would reuse A's last number: dropped. */
    map(&rw, 0xB, 39999, 123456789 - 3000, 1410000, MEDIA_RTP_REWRITE_STALE);

    /* Switch back to A (a new SSRC for the rewriter): continues after B's highest. */
    s = map(&rw, 0xA, 14, 62000, 1500000, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(s.seq, (uint16_t)(first_b.seq + 3));
    assert_int_equal(s.ts, first_b.ts + 6000 + 100 * 90); /* 100 ms after B's highest */

    /* The same SSRC after an explicit switch starts afresh too; a zero gap still moves on. */
    media_rtp_rewriter_switch(&rw);
    struct sent before = map(&rw, 0xA, 15, 65000, 1600000, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(before.seq, (uint16_t)(first_b.seq + 4));
    media_rtp_rewriter_switch(&rw);
    s = map(&rw, 0xA, 900, 1, 1600000, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(s.seq, (uint16_t)(before.seq + 1));
    assert_int_equal(s.ts, before.ts + 1);
}

/* A source switch whose outgoing seq and ts cross both wraps at the switch. */
static void test_rewriter_switch_across_wraps(void **state)
{
    (void)state;
    struct media_rtp_rewriter rw;
    media_rtp_rewriter_init(&rw, OUT_SSRC, 65535, 0xFFFFFFFFu - 10);
    struct sent a = map(&rw, 1, 500, 7, 0, MEDIA_RTP_REWRITE_OK);
    struct sent b = map(&rw, 2, 65535, 0xFFFFFFFFu, 20000, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(a.seq, 65535);
    assert_int_equal(b.seq, 0);
    assert_int_equal(b.ts, (uint32_t)(0xFFFFFFFFu - 10 + 20 * 90));
    /* The new source wraps on its own side too. */
    struct sent c = map(&rw, 2, 0, 0xFFFFFFFFu + 3000u, 53000, MEDIA_RTP_REWRITE_OK);
    assert_int_equal(c.seq, 1);
    assert_int_equal(c.ts, b.ts + 3000);
    /* Wall-clock gaps of hours still convert exactly, modulo 2^32. */
    uint64_t hours = 10ull * 3600 * 1000000;
    struct sent d = map(&rw, 3, 1, 1, 53000 + hours, MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(d.ts, (uint32_t)(c.ts + (uint64_t)10 * 3600 * RATE));
}

/* The rewriter on real packets: fields written in place, the rest untouched. */
static void test_rewriter_packets(void **state)
{
    (void)state;
    struct media_rtp_rewriter rw;
    media_rtp_rewriter_init(&rw, OUT_SSRC, 7, 70);
    uint8_t buf[sizeof(chrome_opus)];
    memcpy(buf, chrome_opus, sizeof(buf));
    assert_int_equal(media_rtp_rewriter_rewrite(&rw, buf, sizeof(buf), 0, 48000),
                     MEDIA_RTP_REWRITE_OK);
    struct media_rtp_view v;
    assert_int_equal(media_rtp_parse(buf, sizeof(buf), &v), 0);
    assert_int_equal(v.ssrc, OUT_SSRC);
    assert_int_equal(v.seq, 7);
    assert_int_equal(v.timestamp, 70);
    assert_memory_equal(buf + 12, chrome_opus + 12, sizeof(buf) - 12);

    uint8_t other[32];
    size_t n = build(other, 111, 3, 3, 0x99, 20);
    assert_int_equal(media_rtp_rewriter_rewrite(&rw, other, n, 20000, 48000),
                     MEDIA_RTP_REWRITE_SWITCHED);
    assert_int_equal(media_rtp_parse(other, n, &v), 0);
    assert_int_equal(v.ssrc, OUT_SSRC);
    assert_int_equal(v.seq, 8);
    assert_int_equal(v.timestamp, 70 + 960); /* 20 ms at 48 kHz */
    /* Stale and invalid packets are left as they were. */
    n = build(other, 111, 2, 3, 0x99, 20);
    assert_int_equal(media_rtp_rewriter_rewrite(&rw, other, n, 30000, 48000),
                     MEDIA_RTP_REWRITE_STALE);
    assert_int_equal(media_rtp_parse(other, n, &v), 0);
    assert_int_equal(v.ssrc, 0x99);
    assert_int_equal(media_rtp_rewriter_rewrite(&rw, other, 11, 30000, 48000),
                     MEDIA_RTP_REWRITE_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_chrome_opus),
        cmocka_unit_test(test_parse_two_byte_csrc_padding),
        cmocka_unit_test(test_truncation_every_length),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_extension_walk_errors),
        cmocka_unit_test(test_demux),
        cmocka_unit_test(test_set_fields),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_rewriter_one_source_wraps),
        cmocka_unit_test(test_rewriter_incoming_wrap),
        cmocka_unit_test(test_rewriter_switch),
        cmocka_unit_test(test_rewriter_switch_across_wraps),
        cmocka_unit_test(test_rewriter_packets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
