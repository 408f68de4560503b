/*
 * test_rtcp.c - the RTCP codec: hand-written compounds as RFC 3550, 4585,
 * 5104 and the transport-cc draft lay them out, every builder through the
 * parser, truncation at every length, lengths that overrun, padding, wrong
 * versions, NACK BLP expansion, transport-cc status chunks of every kind,
 * SSRC rewriting in place, and the round trip from LSR/DLSR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtcp.h"

/*
 * A compound as a browser sends it (RFC 3550 section 6.1): an SR with one
 * report block, an SDES with a CNAME, then a BYE with a reason.
 */
static const uint8_t sr_sdes_bye[] = {
    /* SR: RC=1, length 12 */
    0x81,
    0xC8,
    0x00,
    0x0C,
    0x11,
    0x22,
    0x33,
    0x44, /* SSRC of sender */
    0xE9,
    0x6E,
    0x1A,
    0x2B,
    0x80,
    0x00,
    0x00,
    0x00, /* NTP 0xE96E1A2B.80000000 */
    0x00,
    0x01,
    0xE2,
    0x40, /* RTP ts 123456 */
    0x00,
    0x00,
    0x00,
    0x64, /* 100 packets */
    0x00,
    0x00,
    0x3A,
    0x98, /* 15000 octets */
    0x55,
    0x66,
    0x77,
    0x88, /* block: source */
    0x40,
    0xFF,
    0xFF,
    0xFE, /* fraction 64, cumulative -2 */
    0x00,
    0x01,
    0x00,
    0x10, /* ext. highest seq 65552 */
    0x00,
    0x00,
    0x00,
    0x20, /* jitter 32 */
    0x1A,
    0x2B,
    0x80,
    0x00, /* LSR */
    0x00,
    0x01,
    0x00,
    0x00, /* DLSR 1 s */
    /* SDES: SC=1, length 3: CNAME "abcd", end, pad */
    0x81,
    0xCA,
    0x00,
    0x03,
    0x11,
    0x22,
    0x33,
    0x44,
    0x01,
    0x04,
    'a',
    'b',
    'c',
    'd',
    0x00,
    0x00,
    /* BYE: SC=1, length 3: reason "bye" */
    0x81,
    0xCB,
    0x00,
    0x03,
    0x11,
    0x22,
    0x33,
    0x44,
    0x03,
    'b',
    'y',
    'e',
    0x00,
    0x00,
    0x00,
    0x00,
};

/*
 * Transport-wide feedback: base seq 10, 5 packets, reference time -1,
 * feedback count 3; a run-length chunk (2 x small delta) and a two-bit
 * vector (large, not received, small); deltas 4, 8, -16, 12; 3 bytes of
 * padding.
 */
static const uint8_t twcc_pkt[] = {
    0x8F, 0xCD, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, /* RTPFB fmt 15 */
    0x00, 0x0A, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0x03,                         /* header */
    0x20, 0x02, 0xE1, 0x00,                                                 /* chunks */
    0x04, 0x08, 0xFF, 0xF0, 0x0C,                                           /* deltas */
    0x00, 0x00, 0x00,                                                       /* padding */
};

/* Walks a whole compound; returns the number of packets or the error. */
static int walk(const uint8_t *buf, size_t len, struct media_rtcp_pkt *pkts, size_t cap)
{
    struct media_rtcp_iter it;
    media_rtcp_iter_init(&it, buf, len);
    struct media_rtcp_pkt p;
    int n = 0, rc;
    while ((rc = media_rtcp_next(&it, &p)) == 1) {
        assert_true(p.data >= buf && p.data + p.len <= buf + len);
        assert_true(p.body_len <= p.len - 4);
        assert_int_equal(p.data - buf, (ptrdiff_t)p.offset);
        if ((size_t)n < cap)
            pkts[n] = p;
        n++;
    }
    /* An error stays. */
    if (rc < 0)
        assert_int_equal(media_rtcp_next(&it, &p), rc);
    return rc < 0 ? rc : n;
}

static void test_sr_sdes_bye(void **state)
{
    (void)state;
    struct media_rtcp_pkt p[4];
    assert_int_equal(walk(sr_sdes_bye, sizeof(sr_sdes_bye), p, 4), 3);
    assert_int_equal(p[0].type, MEDIA_RTCP_SR);
    assert_int_equal(p[1].type, MEDIA_RTCP_SDES);
    assert_int_equal(p[2].type, MEDIA_RTCP_BYE);
    assert_int_equal(p[1].offset, 52);

    struct media_rtcp_report r;
    assert_int_equal(media_rtcp_parse_report(&p[0], &r), 0);
    assert_int_equal(r.ssrc, 0x11223344u);
    assert_true(r.has_sender_info);
    assert_true(r.ntp == 0xE96E1A2B80000000ull);
    assert_int_equal(r.rtp_ts, 123456);
    assert_int_equal(r.packets, 100);
    assert_int_equal(r.octets, 15000);
    assert_int_equal(r.block_count, 1);
    assert_int_equal(r.blocks[0].ssrc, 0x55667788u);
    assert_int_equal(r.blocks[0].fraction_lost, 64);
    assert_int_equal(r.blocks[0].cumulative_lost, -2);
    assert_int_equal(r.blocks[0].highest_seq, 65552);
    assert_int_equal(r.blocks[0].jitter, 32);
    assert_int_equal(r.blocks[0].last_sr, 0x1A2B8000u);
    assert_int_equal(r.blocks[0].delay_since_sr, 65536);

    struct media_rtcp_bye bye;
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), 0);
    assert_int_equal(bye.count, 1);
    assert_int_equal(bye.ssrcs[0], 0x11223344u);
    assert_int_equal(bye.reason_len, 3);
    assert_memory_equal(bye.reason, "bye", 3);

    /* Wrong types for each parser. */
    struct media_rtcp_fb fb;
    assert_int_equal(media_rtcp_parse_report(&p[1], &r), MEDIA_RTCP_ERR_TYPE);
    assert_int_equal(media_rtcp_parse_bye(&p[0], &bye), MEDIA_RTCP_ERR_TYPE);
    assert_int_equal(media_rtcp_parse_fb(&p[0], &fb), MEDIA_RTCP_ERR_TYPE);
}

static void test_truncation_every_length(void **state)
{
    (void)state;
    struct media_rtcp_pkt p[4];
    static const size_t ends[] = {0, 52, 68, 84};
    for (size_t n = 0; n <= sizeof(sr_sdes_bye); n++) {
        int rc = walk(sr_sdes_bye, n, p, 4);
        bool boundary = false;
        for (size_t i = 0; i < 4; i++) {
            if (n == ends[i]) {
                assert_int_equal(rc, (int)i);
                boundary = true;
            }
        }
        if (!boundary)
            assert_int_equal(rc, MEDIA_RTCP_ERR_TRUNCATED);
    }
    /* A prefix of an SR whose length field claims fewer blocks than its count. */
    uint8_t buf[sizeof(sr_sdes_bye)];
    memcpy(buf, sr_sdes_bye, sizeof(buf));
    buf[3] = 6; /* 28 bytes: sender info only, but RC=1 */
    assert_int_equal(walk(buf, 28, p, 4), 1);
    struct media_rtcp_report r;
    assert_int_equal(media_rtcp_parse_report(&p[0], &r), MEDIA_RTCP_ERR_MALFORMED);
    buf[0] = 0x80; /* RC=0: fine */
    assert_int_equal(walk(buf, 28, p, 4), 1);
    assert_int_equal(media_rtcp_parse_report(&p[0], &r), 0);
    assert_int_equal(r.block_count, 0);
    buf[3] = 4; /* 20 bytes: not even the sender info */
    assert_int_equal(walk(buf, 20, p, 4), 1);
    assert_int_equal(media_rtcp_parse_report(&p[0], &r), MEDIA_RTCP_ERR_MALFORMED);
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t buf[sizeof(sr_sdes_bye)];
    struct media_rtcp_pkt p[4];

    /* A length that overruns the buffer, at every packet, and the maximum. */
    memcpy(buf, sr_sdes_bye, sizeof(buf));
    buf[55] = 8; /* SDES claims 36 bytes where 32 remain */
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_TRUNCATED);
    buf[55] = 3;
    buf[71] = 4; /* the BYE claims 20 bytes, 16 remain */
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_TRUNCATED);
    buf[70] = 0xFF, buf[71] = 0xFF;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_TRUNCATED);

    /* Wrong version in the second packet: the first stays good. */
    memcpy(buf, sr_sdes_bye, sizeof(buf));
    for (uint8_t ver = 0; ver < 4; ver++) {
        if (ver == 2)
            continue;
        buf[52] = (uint8_t)(ver << 6 | 1);
        struct media_rtcp_iter it;
        struct media_rtcp_pkt one;
        media_rtcp_iter_init(&it, buf, sizeof(buf));
        assert_int_equal(media_rtcp_next(&it, &one), 1);
        assert_int_equal(one.type, MEDIA_RTCP_SR);
        assert_int_equal(media_rtcp_next(&it, &one), MEDIA_RTCP_ERR_VERSION);
        assert_int_equal(media_rtcp_next(&it, &one), MEDIA_RTCP_ERR_VERSION);
    }

    /* Padding: on the BYE (the last packet), 4 bytes; 0; the whole body; beyond the body. */
    memcpy(buf, sr_sdes_bye, sizeof(buf));
    buf[68] |= 0x20;
    buf[83] = 4;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), 3);
    assert_true(p[2].padding);
    assert_int_equal(p[2].body_len, 8);
    struct media_rtcp_bye bye;
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), 0);
    assert_int_equal(bye.reason_len, 3);
    buf[83] = 0;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_PADDING);
    buf[83] = 12;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), 3);
    assert_int_equal(p[2].body_len, 0);
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), MEDIA_RTCP_ERR_MALFORMED);
    buf[83] = 13;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_PADDING);
    buf[83] = 255;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), MEDIA_RTCP_ERR_PADDING);

    /* A BYE whose reason overruns its packet; one with no reason. */
    memcpy(buf, sr_sdes_bye, sizeof(buf));
    buf[76] = 8;
    assert_int_equal(walk(buf, sizeof(buf), p, 4), 3);
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), MEDIA_RTCP_ERR_MALFORMED);
    buf[76] = 7;
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), 0);
    buf[71] = 1; /* just the SSRC */
    assert_int_equal(walk(buf, 76, p, 4), 3);
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), 0);
    assert_null(bye.reason);
    buf[68] = 0x82; /* two SSRCs in 4 bytes */
    assert_int_equal(walk(buf, 76, p, 4), 3);
    assert_int_equal(media_rtcp_parse_bye(&p[2], &bye), MEDIA_RTCP_ERR_MALFORMED);

    /* Fewer than 4 bytes left. */
    assert_int_equal(walk((const uint8_t[]){0x80, 0xC9, 0x00}, 3, p, 4), MEDIA_RTCP_ERR_TRUNCATED);
    /* Feedback without both SSRCs. */
    static const uint8_t short_fb[] = {0x81, 0xCE, 0x00, 0x01, 0, 0, 0, 1};
    assert_int_equal(walk(short_fb, sizeof(short_fb), p, 4), 1);
    struct media_rtcp_fb fb;
    assert_int_equal(media_rtcp_parse_fb(&p[0], &fb), MEDIA_RTCP_ERR_MALFORMED);
}

static void test_rr_round_trip(void **state)
{
    (void)state;
    struct media_rtcp_report_block blocks[MEDIA_RTCP_MAX_COUNT];
    for (unsigned i = 0; i < MEDIA_RTCP_MAX_COUNT; i++) {
        blocks[i] = (struct media_rtcp_report_block){
            .ssrc = 0x1000 + i,
            .fraction_lost = (uint8_t)(i * 8),
            .cumulative_lost = (int32_t)i * 1000 - 15000,
            .highest_seq = 0x10000u * i + 7,
            .jitter = i,
            .last_sr = 0xABCD0000u + i,
            .delay_since_sr = 0x8000u * i,
        };
    }
    blocks[0].cumulative_lost = 0x1000000;  /* saturates to 0x7FFFFF */
    blocks[1].cumulative_lost = -0x1000000; /* to -0x800000 */
    uint8_t buf[1024];
    for (unsigned n = 0; n <= MEDIA_RTCP_MAX_COUNT; n++) {
        int len = media_rtcp_build_rr(0xFEEDu, blocks, n, buf, sizeof(buf));
        assert_int_equal(len, 8 + 24 * (int)n);
        struct media_rtcp_pkt p;
        assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
        struct media_rtcp_report r;
        assert_int_equal(media_rtcp_parse_report(&p, &r), 0);
        assert_int_equal(r.ssrc, 0xFEEDu);
        assert_false(r.has_sender_info);
        assert_int_equal(r.block_count, n);
        for (unsigned i = 0; i < n; i++) {
            struct media_rtcp_report_block want = blocks[i];
            if (i == 0)
                want.cumulative_lost = 0x7FFFFF;
            if (i == 1)
                want.cumulative_lost = -0x800000;
            assert_int_equal(r.blocks[i].ssrc, want.ssrc);
            assert_int_equal(r.blocks[i].fraction_lost, want.fraction_lost);
            assert_int_equal(r.blocks[i].cumulative_lost, want.cumulative_lost);
            assert_int_equal(r.blocks[i].highest_seq, want.highest_seq);
            assert_int_equal(r.blocks[i].jitter, want.jitter);
            assert_int_equal(r.blocks[i].last_sr, want.last_sr);
            assert_int_equal(r.blocks[i].delay_since_sr, want.delay_since_sr);
        }
        assert_int_equal(media_rtcp_build_rr(0xFEEDu, blocks, n, buf, (size_t)len - 1),
                         MEDIA_RTCP_ERR_NO_SPACE);
    }
    assert_int_equal(media_rtcp_build_rr(1, blocks, 32, buf, sizeof(buf)), MEDIA_RTCP_ERR_INVALID);
}

static void test_pli_fir_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct media_rtcp_pkt p;
    struct media_rtcp_fb fb;
    int len = media_rtcp_build_pli(0xA, 0xB, buf, sizeof(buf));
    assert_int_equal(len, 12);
    assert_int_equal(media_rtcp_build_pli(0xA, 0xB, buf, 11), MEDIA_RTCP_ERR_NO_SPACE);
    assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(fb.type, MEDIA_RTCP_PSFB);
    assert_int_equal(fb.fmt, MEDIA_RTCP_PSFB_PLI);
    assert_int_equal(fb.sender_ssrc, 0xA);
    assert_int_equal(fb.media_ssrc, 0xB);
    assert_int_equal(fb.fci_len, 0);
    assert_int_equal(media_rtcp_fir_count(&fb), MEDIA_RTCP_ERR_TYPE);

    struct media_rtcp_fir_entry in[3] = {{0x111, 1}, {0x222, 255}, {0x333, 0}};
    len = media_rtcp_build_fir(0xA, in, 3, buf, sizeof(buf));
    assert_int_equal(len, 12 + 24);
    assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(fb.fmt, MEDIA_RTCP_PSFB_FIR);
    assert_int_equal(fb.media_ssrc, 0);
    assert_int_equal(media_rtcp_fir_count(&fb), 3);
    for (unsigned i = 0; i < 3; i++) {
        struct media_rtcp_fir_entry e;
        media_rtcp_fir_entry(&fb, i, &e);
        assert_int_equal(e.ssrc, in[i].ssrc);
        assert_int_equal(e.seq, in[i].seq);
    }
    assert_int_equal(media_rtcp_build_fir(0xA, in, 3, buf, 35), MEDIA_RTCP_ERR_NO_SPACE);
    assert_int_equal(media_rtcp_build_fir(0xA, in, 0, buf, sizeof(buf)), MEDIA_RTCP_ERR_INVALID);
    /* An FCI that is not whole entries. */
    buf[3] = 5; /* 24 bytes: an FCI of 12 */
    assert_int_equal(walk(buf, 24, &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_fir_count(&fb), MEDIA_RTCP_ERR_MALFORMED);
}

/* RFC 4585 section 6.2.1: PID plus the BLP bitmask of the 16 following packets. */
static void test_nack_blp_expansion(void **state)
{
    (void)state;
    static const uint8_t nack[] = {
        0x81, 0xCD, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x02, 0x00, 0x64, 0x80, 0x05, /* PID 100, BLP bits 0, 2, 15: 101, 103, 116 */
        0xFF, 0xFF, 0x00, 0x03,                   /* PID 65535, bits 0, 1: wraps to 0, 1 */
    };
    struct media_rtcp_pkt p;
    struct media_rtcp_fb fb;
    assert_int_equal(walk(nack, sizeof(nack), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    uint16_t seqs[32];
    assert_int_equal(media_rtcp_nack_expand(&fb, seqs, 32), 7);
    const uint16_t want[] = {100, 101, 103, 116, 65535, 0, 1};
    assert_memory_equal(seqs, want, sizeof(want));
    /* A small array gets the first ones and the total. */
    memset(seqs, 0, sizeof(seqs));
    assert_int_equal(media_rtcp_nack_expand(&fb, seqs, 3), 7);
    assert_memory_equal(seqs, want, 3 * sizeof(uint16_t));
    assert_int_equal(seqs[3], 0);
    assert_int_equal(media_rtcp_nack_expand(&fb, NULL, 0), 7);
    /* Not a NACK; a NACK with a partial entry. */
    struct media_rtcp_fb other = fb;
    other.fmt = 15;
    assert_int_equal(media_rtcp_nack_expand(&other, seqs, 32), MEDIA_RTCP_ERR_TYPE);
    other = fb;
    other.fci_len = 6;
    assert_int_equal(media_rtcp_nack_expand(&other, seqs, 32), MEDIA_RTCP_ERR_MALFORMED);
    other.fci_len = 0;
    assert_int_equal(media_rtcp_nack_expand(&other, seqs, 32), MEDIA_RTCP_ERR_MALFORMED);
}

static void test_nack_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct media_rtcp_pkt p;
    struct media_rtcp_fb fb;
    uint16_t out[64];
    /* Sorted across the wrap: 65534 with 65535, 0, 5 in its BLP; 20 and 37 start entries. */
    const uint16_t lost[] = {65534, 65535, 0, 5, 20, 36, 37};
    int len = media_rtcp_build_nack(1, 2, lost, 7, buf, sizeof(buf));
    assert_int_equal(len, 12 + 3 * 4);
    assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(fb.sender_ssrc, 1);
    assert_int_equal(fb.media_ssrc, 2);
    assert_int_equal(media_rtcp_nack_expand(&fb, out, 64), 7);
    assert_memory_equal(out, lost, sizeof(lost));

    /* Any order and repeats: every seq reported, each entry's PID the first of its run. */
    const uint16_t messy[] = {9, 9, 3, 4, 30, 3, 1000};
    len = media_rtcp_build_nack(1, 2, messy, 7, buf, sizeof(buf));
    assert_true(len > 0);
    assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    int n = media_rtcp_nack_expand(&fb, out, 64);
    assert_true(n > 0);
    for (size_t i = 0; i < 7; i++) {
        bool found = false;
        for (int j = 0; j < n; j++)
            found |= out[j] == messy[i];
        assert_true(found);
    }
    for (int j = 0; j < n; j++) {
        bool asked = false;
        for (size_t i = 0; i < 7; i++)
            asked |= out[j] == messy[i];
        assert_true(asked);
    }

    /* Room: a single seq needs 16 bytes. */
    assert_int_equal(media_rtcp_build_nack(1, 2, lost, 1, buf, 15), MEDIA_RTCP_ERR_NO_SPACE);
    assert_int_equal(media_rtcp_build_nack(1, 2, lost, 1, buf, 16), 16);
    assert_int_equal(media_rtcp_build_nack(1, 2, lost, 7, buf, 20), MEDIA_RTCP_ERR_NO_SPACE);
    assert_int_equal(media_rtcp_build_nack(1, 2, lost, 0, buf, sizeof(buf)),
                     MEDIA_RTCP_ERR_INVALID);
}

static void test_remb_round_trip(void **state)
{
    (void)state;
    uint8_t buf[2048];
    struct media_rtcp_pkt p;
    struct media_rtcp_fb fb;
    struct media_rtcp_remb remb;
    uint32_t ssrcs[MEDIA_RTCP_MAX_REMB];
    for (unsigned i = 0; i < MEDIA_RTCP_MAX_REMB; i++)
        ssrcs[i] = 0xC0DE0000u + i;
    /* Exact below 2^18; rounded down to 18 significant bits above. */
    const uint64_t rates[] = {0, 1, 0x3FFFF, 0x40000, 2500000, 0x3FFFFull << 46, UINT64_MAX};
    const uint64_t got[] = {
        0, 1, 0x3FFFF, 0x40000, 2500000 & ~3ull, 0x3FFFFull << 46, 0x3FFFFull << 46};
    for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
        unsigned n = k == 0 ? 0 : (unsigned)(k * 40 > 255 ? 255 : k * 40);
        int len = media_rtcp_build_remb(0x5E, rates[k], ssrcs, n, buf, sizeof(buf));
        assert_int_equal(len, 20 + 4 * (int)n);
        assert_int_equal(walk(buf, (size_t)len, &p, 1), 1);
        assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
        assert_int_equal(fb.fmt, MEDIA_RTCP_PSFB_AFB);
        assert_int_equal(media_rtcp_parse_remb(&fb, &remb), 0);
        assert_true(remb.bitrate == got[k]);
        assert_int_equal(remb.ssrc_count, n);
        assert_memory_equal(remb.ssrcs, ssrcs, n * sizeof(uint32_t));
    }
    /* draft-alvestrand-rmcat-remb's layout by hand: exp 4, mantissa 0x1E848: 2 Mbps, one SSRC. */
    static const uint8_t hand[] = {0x8F, 0xCE, 0x00, 0x05, 0,    0,    0,    1,
                                   0,    0,    0,    0,    'R',  'E',  'M',  'B',
                                   1,    0x11, 0xE8, 0x48, 0xAA, 0xBB, 0xCC, 0xDD};
    assert_int_equal(walk(hand, sizeof(hand), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_parse_remb(&fb, &remb), 0);
    assert_true(remb.bitrate == 0x1E848ull << 4);
    assert_int_equal(remb.ssrc_count, 1);
    assert_int_equal(remb.ssrcs[0], 0xAABBCCDDu);
    /* Announcing more SSRCs than it holds; another AFB; a saturating exponent. */
    uint8_t bad[sizeof(hand)];
    memcpy(bad, hand, sizeof(bad));
    bad[16] = 2;
    assert_int_equal(walk(bad, sizeof(bad), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_parse_remb(&fb, &remb), MEDIA_RTCP_ERR_MALFORMED);
    bad[16] = 1;
    bad[17] = 0xFF;
    assert_int_equal(media_rtcp_parse_remb(&fb, &remb), 0);
    assert_true(remb.bitrate == UINT64_MAX);
    bad[12] = 'X';
    assert_int_equal(media_rtcp_parse_remb(&fb, &remb), MEDIA_RTCP_ERR_TYPE);
    assert_int_equal(media_rtcp_build_remb(1, 1, ssrcs, 256, buf, sizeof(buf)),
                     MEDIA_RTCP_ERR_INVALID);
    assert_int_equal(media_rtcp_build_remb(1, 1, ssrcs, 1, buf, 23), MEDIA_RTCP_ERR_NO_SPACE);
}

static void test_twcc(void **state)
{
    (void)state;
    struct media_rtcp_pkt p;
    struct media_rtcp_fb fb;
    struct media_rtcp_twcc tw;
    assert_int_equal(walk(twcc_pkt, sizeof(twcc_pkt), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), 0);
    assert_int_equal(tw.base_seq, 10);
    assert_int_equal(tw.status_count, 5);
    assert_int_equal(tw.reference_time, -1);
    assert_int_equal(tw.fb_count, 3);
    assert_int_equal(tw.received_count, 4);
    assert_int_equal(tw.chunks_len, 4);
    assert_int_equal(tw.deltas_len, 5);
    struct media_rtcp_twcc_packet pk[8];
    assert_int_equal(media_rtcp_twcc_packets(&tw, pk, 8), 5);
    const struct media_rtcp_twcc_packet want[] = {
        {10, 1, 4}, {11, 1, 8}, {12, 2, -16}, {13, 0, 0}, {14, 1, 12}};
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(pk[i].seq, want[i].seq);
        assert_int_equal(pk[i].status, want[i].status);
        assert_int_equal(pk[i].delta_250us, want[i].delta_250us);
    }
    assert_int_equal(media_rtcp_twcc_packets(&tw, pk, 2), 5);
    assert_int_equal(media_rtcp_twcc_packets(&tw, NULL, 0), 5);

    /* A one-bit vector across the seq wrap: 14 packets, the first and last received. */
    static const uint8_t onebit[] = {
        0x8F, 0xCD, 0x00, 0x05, 0,    0,    0,    1,    0,    0,    0,    2,
        0xFF, 0xFA, 0x00, 0x0E, 0x00, 0x00, 0x10, 0x00, 0xA0, 0x01, 0x07, 0x09,
    };
    assert_int_equal(walk(onebit, sizeof(onebit), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), 0);
    assert_int_equal(tw.reference_time, 16);
    assert_int_equal(tw.received_count, 2);
    struct media_rtcp_twcc_packet many[14];
    assert_int_equal(media_rtcp_twcc_packets(&tw, many, 14), 14);
    assert_int_equal(many[0].seq, 65530);
    assert_int_equal(many[0].delta_250us, 7);
    assert_int_equal(many[1].status, 0);
    assert_int_equal(many[12].status, 0);
    assert_int_equal(many[13].seq, 7);
    assert_int_equal(many[13].status, 1);

    /* Every truncation of the FCI is refused (deltas or chunks missing). */
    for (size_t cut = 1; cut <= 8; cut++) {
        struct media_rtcp_fb f2;
        assert_int_equal(walk(twcc_pkt, sizeof(twcc_pkt), &p, 1), 1);
        assert_int_equal(media_rtcp_parse_fb(&p, &f2), 0);
        f2.fci_len = 20 - 3 - cut;
        assert_int_equal(media_rtcp_parse_twcc(&f2, &tw), MEDIA_RTCP_ERR_MALFORMED);
    }
    /* Reserved symbol 3 in a run, and in a two-bit vector. */
    uint8_t bad[sizeof(twcc_pkt)];
    memcpy(bad, twcc_pkt, sizeof(bad));
    bad[20] = 0x60;
    assert_int_equal(walk(bad, sizeof(bad), &p, 1), 1);
    assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), MEDIA_RTCP_ERR_MALFORMED);
    memcpy(bad, twcc_pkt, sizeof(bad));
    bad[22] = 0xF1;
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), MEDIA_RTCP_ERR_MALFORMED);
    /* A huge status count with one run chunk covering it needs 65535 deltas. */
    memcpy(bad, twcc_pkt, sizeof(bad));
    bad[14] = 0xFF, bad[15] = 0xFF;
    bad[20] = 0x3F, bad[21] = 0xFF;
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), MEDIA_RTCP_ERR_MALFORMED);
    /* ...but "not received" needs none; the run is 8191 per chunk, so more chunks. */
    bad[20] = 0x1F;
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), MEDIA_RTCP_ERR_MALFORMED);
    bad[14] = 0x1F, bad[15] = 0xFF; /* 8191 packets: one run */
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), 0);
    assert_int_equal(tw.received_count, 0);
    /* Not transport-cc. */
    fb.fmt = 1;
    assert_int_equal(media_rtcp_parse_twcc(&fb, &tw), MEDIA_RTCP_ERR_TYPE);
}

/* The relay's view: the doctor's feedback about the stream it sees, mapped to the patient's. */
static void test_rewrite_ssrcs(void **state)
{
    (void)state;
    const uint32_t seen = 0x0D0C0D0C, real = 0xBA7E, doctor = 0xD0C, relay = 0x5E4E;
    uint8_t buf[512];
    size_t len = 0;
    struct media_rtcp_report_block blocks[2] = {{.ssrc = seen}, {.ssrc = 0x1234}};
    struct media_rtcp_fir_entry fir[2] = {{seen, 1}, {0x1234, 2}};
    uint32_t remb_ssrcs[2] = {0x1234, seen};
    const uint16_t lost[] = {5};
    len += (size_t)media_rtcp_build_rr(doctor, blocks, 2, buf + len, sizeof(buf) - len);
    len += (size_t)media_rtcp_build_pli(doctor, seen, buf + len, sizeof(buf) - len);
    len += (size_t)media_rtcp_build_fir(doctor, fir, 2, buf + len, sizeof(buf) - len);
    len +=
        (size_t)media_rtcp_build_remb(doctor, 1000000, remb_ssrcs, 2, buf + len, sizeof(buf) - len);
    len += (size_t)media_rtcp_build_nack(doctor, seen, lost, 1, buf + len, sizeof(buf) - len);
    memcpy(buf + len, sr_sdes_bye + 52, 16); /* an SDES: names no media source here */
    len += 16;

    struct media_rtcp_pkt p[8];
    assert_int_equal(walk(buf, len, p, 8), 6);
    const int replaced[] = {1, 1, 1, 1, 1, 0};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(media_rtcp_map_media_ssrc(buf, &p[i], seen, real), replaced[i]);
        if (p[i].type != MEDIA_RTCP_SDES)
            assert_int_equal(media_rtcp_set_sender_ssrc(buf, &p[i], relay), 0);
        else
            assert_int_equal(media_rtcp_set_sender_ssrc(buf, &p[i], relay), MEDIA_RTCP_ERR_TYPE);
    }
    assert_int_equal(walk(buf, len, p, 8), 6);
    struct media_rtcp_report r;
    assert_int_equal(media_rtcp_parse_report(&p[0], &r), 0);
    assert_int_equal(r.ssrc, relay);
    assert_int_equal(r.blocks[0].ssrc, real);
    assert_int_equal(r.blocks[1].ssrc, 0x1234);
    struct media_rtcp_fb fb;
    assert_int_equal(media_rtcp_parse_fb(&p[1], &fb), 0);
    assert_int_equal(fb.sender_ssrc, relay);
    assert_int_equal(fb.media_ssrc, real);
    assert_int_equal(media_rtcp_parse_fb(&p[2], &fb), 0);
    struct media_rtcp_fir_entry e;
    media_rtcp_fir_entry(&fb, 0, &e);
    assert_int_equal(e.ssrc, real);
    assert_int_equal(e.seq, 1);
    media_rtcp_fir_entry(&fb, 1, &e);
    assert_int_equal(e.ssrc, 0x1234);
    assert_int_equal(media_rtcp_parse_fb(&p[3], &fb), 0);
    struct media_rtcp_remb remb;
    assert_int_equal(media_rtcp_parse_remb(&fb, &remb), 0);
    assert_int_equal(remb.ssrcs[0], 0x1234);
    assert_int_equal(remb.ssrcs[1], real);
    assert_true(remb.bitrate == 1000000);
    assert_int_equal(media_rtcp_parse_fb(&p[4], &fb), 0);
    assert_int_equal(fb.media_ssrc, real);
    uint16_t s;
    assert_int_equal(media_rtcp_nack_expand(&fb, &s, 1), 1);
    assert_int_equal(s, 5);
    /* The SDES came through untouched. */
    assert_memory_equal(buf + len - 16, sr_sdes_bye + 52, 16);
}

/*
 * RFC 3550 6.4.1: the receiver echoes the compact NTP time of the SR it got
 * (LSR) and how long it held it (DLSR, 1/65536 s); the sender subtracts both
 * from the report's arrival, on its own clock. Here the NTP times are another
 * machine's (a relayed SR): only the LSR is matched, never subtracted.
 */
static void test_round_trip_from_lsr_dlsr(void **state)
{
    (void)state;
    struct media_rtcp_sr_history h;
    memset(&h, 0, sizeof(h));
    uint64_t ntp1 = 0xE96E1A2B80000000ull, ntp2 = 0xE96E1A2C40000000ull;
    uint32_t lsr1 = 0x1A2B8000u, lsr2 = 0x1A2C4000u;
    /* Nothing sent yet, and LSR 0 (no SR received): unknown. */
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr1, 0, 5000000), -1);
    media_rtcp_sr_sent(&h, ntp1, 1000000);
    media_rtcp_sr_sent(&h, ntp2, 2000000);
    assert_int_equal(media_rtcp_round_trip_us(&h, 0, 0, 2500000), -1);
    /* Held 0.5 s (32768/65536), back 0.52 s after we sent it: 20 ms. */
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr2, 32768, 2520000), 20000);
    /* An older SR still counts (the receiver had not got the newer one yet). */
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr1, 65536, 2003000), 3000);
    /* An LSR we never sent: unknown. */
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr1 + 1, 0, 2003000), -1);
    /* DLSR rounding below zero is 0; far below (a lie, a clock step) is unknown. */
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr2, 32768, 2499990), 0);
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr2, 65536, 2500000), -1);
    /* The history keeps the last MEDIA_RTCP_SR_HISTORY: the first is forgotten past that. */
    for (unsigned i = 0; i < MEDIA_RTCP_SR_HISTORY - 1; i++)
        media_rtcp_sr_sent(&h, ntp2 + ((uint64_t)(i + 1) << 16), 3000000 + i);
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr1, 0, 4000000), -1);
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr2, 0, 2001000), 1000);
    /* Two SRs with one LSR (sent within 15 us): the newer is the one the receiver kept. */
    media_rtcp_sr_sent(&h, ntp1, 5000000);
    assert_int_equal(media_rtcp_round_trip_us(&h, lsr1, 0, 5000700), 700);
}

static void test_strings(void **state)
{
    (void)state;
    for (int e = 0; e >= MEDIA_RTCP_ERR_INVALID; e--)
        assert_string_not_equal(media_rtcp_strerror(e), "unknown error");
    assert_string_equal(media_rtcp_strerror(-100), "unknown error");
}

/* Parses one feedback we built: its header and every packet's status and delta. */
static unsigned parse_our_twcc(const uint8_t *buf, int len, struct media_rtcp_twcc *twcc,
                               struct media_rtcp_twcc_packet *pkts, size_t cap)
{
    assert_true(len > 0 && len % 4 == 0);
    struct media_rtcp_iter it;
    struct media_rtcp_pkt pkt;
    struct media_rtcp_fb fb;
    media_rtcp_iter_init(&it, buf, (size_t)len);
    assert_int_equal(media_rtcp_next(&it, &pkt), 1);
    assert_int_equal(pkt.len, (size_t)len);
    assert_int_equal(media_rtcp_parse_fb(&pkt, &fb), 0);
    assert_int_equal(fb.sender_ssrc, 0x11111111u);
    assert_int_equal(fb.media_ssrc, 0x22222222u);
    assert_int_equal(media_rtcp_parse_twcc(&fb, twcc), 0);
    int n = media_rtcp_twcc_packets(twcc, pkts, cap);
    assert_int_equal(n, twcc->status_count);
    return (unsigned)n;
}

/* Arrival times rebuilt from a feedback, as the sender does: reference + running deltas. */
static void check_arrivals(const struct media_rtcp_twcc *twcc,
                           const struct media_rtcp_twcc_packet *pkts, unsigned n,
                           const uint64_t *expected_us)
{
    int64_t t = (int64_t)twcc->reference_time * 64000;
    for (unsigned i = 0; i < n; i++) {
        if (!expected_us[i]) {
            assert_int_equal(pkts[i].status, MEDIA_RTCP_TWCC_NOT_RECEIVED);
            continue;
        }
        assert_int_not_equal(pkts[i].status, MEDIA_RTCP_TWCC_NOT_RECEIVED);
        t += (int64_t)pkts[i].delta_250us * 250;
        /* Within one unit of the truth, never drifting: errors do not add up. */
        assert_true(llabs(t - (int64_t)expected_us[i]) < 250);
    }
}

static void test_twcc_feedback_built(void **state)
{
    (void)state;
    static struct media_twcc_recorder r;
    memset(&r, 0, sizeof(r));
    uint8_t buf[1200];
    assert_false(media_twcc_pending(&r));
    assert_int_equal(media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, sizeof(buf)), 0);

    /* 65533..65535, 0..4 across the wrap; 65535 and 2 lost; 3 arrives before 1; a
     * 100 ms pause (a large delta); arrivals not on 250 us boundaries. */
    const uint16_t seqs[] = {65533, 65534, 0, 3, 1, 4};
    const uint64_t at[] = {5000123, 5000400, 5001001, 5002777, 5003500, 5102900};
    for (unsigned i = 0; i < 6; i++)
        media_twcc_record(&r, seqs[i], at[i]);
    media_twcc_record(&r, 65533, 9999999); /* a duplicate: the first arrival counts */
    assert_true(media_twcc_pending(&r));
    int len = media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, sizeof(buf));
    struct media_rtcp_twcc twcc;
    struct media_rtcp_twcc_packet pkts[16];
    unsigned n = parse_our_twcc(buf, len, &twcc, pkts, 16);
    assert_int_equal(twcc.base_seq, 65533);
    assert_int_equal(n, 8); /* 65533, 65534, 65535, 0, 1, 2, 3, 4 */
    assert_int_equal(twcc.fb_count, 0);
    assert_int_equal(twcc.received_count, 6);
    const uint64_t expected[] = {5000123, 5000400, 0, 5001001, 5003500, 0, 5002777, 5102900};
    check_arrivals(&twcc, pkts, n, expected);
    assert_int_equal(pkts[7].status, MEDIA_RTCP_TWCC_LARGE_DELTA);
    assert_int_equal(pkts[6].status, MEDIA_RTCP_TWCC_LARGE_DELTA); /* negative: 3 before 1 */
    assert_false(media_twcc_pending(&r));

    /* Late packets of a reported range are not taken back; the next report goes on. */
    media_twcc_record(&r, 2, 5200000);
    assert_false(media_twcc_pending(&r));
    media_twcc_record(&r, 5, 5200000);
    len = media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, sizeof(buf));
    n = parse_our_twcc(buf, len, &twcc, pkts, 16);
    assert_int_equal(twcc.base_seq, 5);
    assert_int_equal(n, 1);
    assert_int_equal(twcc.fb_count, 1);

    /* More than fits: the rest waits for the next feedback, none is lost or repeated. */
    for (unsigned i = 0; i < 400; i++)
        media_twcc_record(&r, (uint16_t)(6 + i), 6000000 + (uint64_t)i * 1000);
    len = media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, 100);
    assert_true(len > 0 && len <= 100);
    struct media_rtcp_twcc_packet many[512];
    n = parse_our_twcc(buf, len, &twcc, many, 512);
    assert_int_equal(twcc.base_seq, 6);
    unsigned first = n;
    len = media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, sizeof(buf));
    n = parse_our_twcc(buf, len, &twcc, many, 512);
    assert_int_equal(twcc.base_seq, 6 + first);
    assert_int_equal(first + n, 400);
    assert_int_equal(twcc.received_count, n);

    /* Too small for even one packet. */
    media_twcc_record(&r, 406, 7000000);
    assert_int_equal(media_rtcp_build_twcc(&r, 1, 2, buf, 16), MEDIA_RTCP_ERR_NO_SPACE);

    /* A jump past the window forgets the oldest instead of reporting thousands lost. */
    media_twcc_record(&r, 5000, 8000000);
    len = media_rtcp_build_twcc(&r, 0x11111111u, 0x22222222u, buf, sizeof(buf));
    n = parse_our_twcc(buf, len, &twcc, many, 512);
    assert_int_equal(n, MEDIA_TWCC_WINDOW);
    assert_int_equal((uint16_t)(twcc.base_seq + n - 1), 5000);
    assert_int_equal(twcc.received_count, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sr_sdes_bye),
        cmocka_unit_test(test_truncation_every_length),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_rr_round_trip),
        cmocka_unit_test(test_pli_fir_round_trip),
        cmocka_unit_test(test_nack_blp_expansion),
        cmocka_unit_test(test_nack_round_trip),
        cmocka_unit_test(test_remb_round_trip),
        cmocka_unit_test(test_twcc),
        cmocka_unit_test(test_twcc_feedback_built),
        cmocka_unit_test(test_rewrite_ssrcs),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_round_trip_from_lsr_dlsr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
