/*
 * test_packet_cache.c - the outgoing packet history and the RTX builder:
 * stores and lookups across the 65535 -> 0 wrap, slots overwritten when the
 * ring is full, packets too old to resend, the repeat guard against browsers
 * asking again for the same packet, RTX packets checked through the RTP
 * parser (CSRCs, both extension forms, padding dropped), short buffers, and
 * a NACK built and expanded by the RTCP codec driving the cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "packet_cache.h"
#include "rtcp.h"
#include "rtp.h"

#define OUR_SSRC 0x0A0B0C0Du
#define RTX_SSRC 0x1A1B1C1Du
#define VP8_PT   96
#define RTX_PT   97

/*
 * A VP8 packet as the relay sends it: PT 96, our SSRC, timestamp derived
 * from `seq`, one-byte extensions transport-wide-cc (id 3, 0x0102) and mid
 * (id 4, "1") padded to 8 bytes, then `payload_len` bytes that differ from
 * one seq to the next. Returns its length (24 + payload_len).
 */
static size_t make_packet(uint8_t *buf, uint16_t seq, size_t payload_len)
{
    const uint8_t head[] = {
        0x90,         VP8_PT, (uint8_t)(seq >> 8),
        (uint8_t)seq, 0x00,   0x01,
        0x00,         0x00, /* ts 0x10000 */
        0x0A,         0x0B,   0x0C,
        0x0D, /* SSRC */
        0xBE,         0xDE,   0x00,
        0x02, /* 2 words */
        0x31,         0x01,   0x02,
        0x40,         '1',    0x00,
        0x00,         0x00, /* twcc, mid */
    };
    memcpy(buf, head, sizeof(head));
    for (size_t i = 0; i < payload_len; i++)
        buf[sizeof(head) + i] = (uint8_t)(seq * 7u + i);
    return sizeof(head) + payload_len;
}

static struct media_packet_cache *new_cache(unsigned capacity, int64_t max_age_ms,
                                            int64_t resend_interval_ms)
{
    struct media_packet_cache_config cfg = {
        .capacity = capacity,
        .max_age_ms = max_age_ms,
        .resend_interval_ms = resend_interval_ms,
    };
    int err = 0;
    struct media_packet_cache *c = media_packet_cache_new(&cfg, &err);
    assert_non_null(c);
    assert_int_equal(err, 0);
    return c;
}

/* Asserts that `seq` is in the cache as make_packet(seq, payload_len) built it. */
static void assert_cached(const struct media_packet_cache *c, uint16_t seq, size_t payload_len,
                          int64_t now_ms)
{
    uint8_t want[MEDIA_PACKET_CACHE_MAX_PACKET];
    size_t want_len = make_packet(want, seq, payload_len);
    size_t len = 0;
    const uint8_t *got = media_packet_cache_lookup(c, seq, now_ms, 1000, &len);
    assert_non_null(got);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, want_len);
}

/* Asserts the NACK counts, which always add up: nacked = retransmitted + missed + suppressed. */
static void assert_nack_counts(const struct media_packet_cache *c, uint64_t retransmitted,
                               uint64_t missed, uint64_t suppressed)
{
    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.retransmitted, retransmitted);
    assert_int_equal(st.missed, missed);
    assert_int_equal(st.suppressed, suppressed);
    assert_int_equal(st.nacked, retransmitted + missed + suppressed);
}

static void test_new_and_free(void **state)
{
    (void)state;
    const struct media_packet_cache_config bad[] = {
        {.capacity = 0, .max_age_ms = 1000, .resend_interval_ms = 50},
        {.capacity = 3, .max_age_ms = 1000, .resend_interval_ms = 50},
        {.capacity = 257, .max_age_ms = 1000, .resend_interval_ms = 50},
        {.capacity = 131072, .max_age_ms = 1000, .resend_interval_ms = 50},
        {.capacity = 256, .max_age_ms = -1, .resend_interval_ms = 50},
        {.capacity = 256, .max_age_ms = 1000, .resend_interval_ms = -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int err = 0;
        assert_null(media_packet_cache_new(&bad[i], &err));
        assert_int_equal(err, MEDIA_PACKET_CACHE_ERR_INVALID);
        assert_null(media_packet_cache_new(&bad[i], NULL));
    }

    /* NULL: the defaults. */
    struct media_packet_cache *c = media_packet_cache_new(NULL, NULL);
    assert_non_null(c);
    assert_int_equal(media_packet_cache_capacity(c), MEDIA_PACKET_CACHE_DEFAULT_CAPACITY);
    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.stored + st.nacked + st.too_long, 0);
    size_t len = 0;
    assert_null(media_packet_cache_lookup(c, 0, 0, 1000, &len));
    media_packet_cache_free(c);

    /* The smallest and the largest ring. */
    c = new_cache(1, 1000, 0);
    media_packet_cache_free(c);
    c = new_cache(MEDIA_PACKET_CACHE_MAX_CAPACITY, 1000, 0);
    uint8_t pkt[100];
    size_t n = make_packet(pkt, 65535, 10);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 65535, 5), 0);
    assert_cached(c, 65535, 10, 5);
    media_packet_cache_free(c);

    media_packet_cache_free(NULL);
}

static void test_store_lookup_across_wrap(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(16, 1000, 50);
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET];
    /* 16 packets, 65528..65535 then 0..7, of different sizes, one per ms. */
    for (unsigned i = 0; i < 16; i++) {
        uint16_t seq = (uint16_t)(65528u + i);
        size_t n = make_packet(pkt, seq, 100 + i * 50);
        assert_int_equal(media_packet_cache_store(c, pkt, n, seq, 1000 + i), 0);
    }
    for (unsigned i = 0; i < 16; i++)
        assert_cached(c, (uint16_t)(65528u + i), 100 + i * 50, 1100);
    /* Seqs never stored, whose slots hold others. */
    size_t len = 0;
    assert_null(media_packet_cache_lookup(c, 8, 1100, 1000, &len));
    assert_null(media_packet_cache_lookup(c, 65527, 1100, 1000, &len));
    assert_null(media_packet_cache_lookup(c, 32768, 1100, 1000, &len));

    /* Largest and smallest packets. */
    size_t n = make_packet(pkt, 8, MEDIA_PACKET_CACHE_MAX_PACKET - 24);
    assert_int_equal(n, MEDIA_PACKET_CACHE_MAX_PACKET);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 8, 1100), 0);
    assert_cached(c, 8, MEDIA_PACKET_CACHE_MAX_PACKET - 24, 1100);
    uint8_t bare[MEDIA_RTP_HEADER_SIZE] = {0x80, VP8_PT, 0x00, 0x09};
    assert_int_equal(media_packet_cache_store(c, bare, sizeof(bare), 9, 1100), 0);
    const uint8_t *got = media_packet_cache_lookup(c, 9, 1100, 1000, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof(bare));
    assert_memory_equal(got, bare, sizeof(bare));

    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.stored, 18);
    assert_int_equal(st.nacked, 0); /* lookups are not NACKs */
    media_packet_cache_free(c);
}

static void test_overwritten_slots(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(8, 1000, 50);
    uint8_t pkt[200];
    /* 20 packets into 8 slots, across the wrap: only the last 8 remain. */
    for (unsigned i = 0; i < 20; i++) {
        uint16_t seq = (uint16_t)(65530u + i);
        size_t n = make_packet(pkt, seq, 40);
        assert_int_equal(media_packet_cache_store(c, pkt, n, seq, 10), 0);
    }
    size_t len = 0;
    for (unsigned i = 0; i < 12; i++)
        assert_null(media_packet_cache_lookup(c, (uint16_t)(65530u + i), 10, 1000, &len));
    for (unsigned i = 12; i < 20; i++)
        assert_cached(c, (uint16_t)(65530u + i), 40, 10);

    /* A gap in the outgoing seqs: 100 then 108 share a slot; 100 is gone. */
    size_t n = make_packet(pkt, 100, 40);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 100, 20), 0);
    assert_cached(c, 100, 40, 20);
    n = make_packet(pkt, 108, 40);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 108, 20), 0);
    assert_null(media_packet_cache_lookup(c, 100, 20, 1000, &len));
    assert_cached(c, 108, 40, 20);

    /* The NACK path says missed for an overwritten packet. */
    const uint8_t *got = NULL;
    assert_int_equal(media_packet_cache_nack(c, 100, 20, &got, &len), MEDIA_PACKET_CACHE_MISSED);
    assert_null(got);
    media_packet_cache_free(c);
}

static void test_refused_stores(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(8, 1000, 50);
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET + 8];
    size_t n = make_packet(pkt, 3, 50);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 3, 0), 0);

    /* Each refusal leaves slot 3 as it was. */
    n = make_packet(pkt, 11, MEDIA_PACKET_CACHE_MAX_PACKET + 1 - 24);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 11, 1), MEDIA_PACKET_CACHE_ERR_TOO_LONG);
    n = make_packet(pkt, 11, 50);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 12, 1), MEDIA_PACKET_CACHE_ERR_INVALID);
    assert_int_equal(media_packet_cache_store(c, pkt, MEDIA_RTP_HEADER_SIZE - 1, 11, 1),
                     MEDIA_PACKET_CACHE_ERR_INVALID);
    assert_cached(c, 3, 50, 1);
    size_t len = 0;
    assert_null(media_packet_cache_lookup(c, 11, 1, 1000, &len));

    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.stored, 1);
    assert_int_equal(st.too_long, 1);

    assert_string_equal(media_packet_cache_strerror(MEDIA_PACKET_CACHE_ERR_TOO_LONG),
                        "packet too long for the cache");
    assert_string_equal(media_packet_cache_strerror(0), "success");
    assert_string_equal(media_packet_cache_strerror(-99), "unknown error");
    assert_string_equal(media_packet_cache_verdict_name(MEDIA_PACKET_CACHE_RESEND),
                        "retransmitted");
    assert_string_equal(media_packet_cache_verdict_name(MEDIA_PACKET_CACHE_MISSED), "missed");
    assert_string_equal(media_packet_cache_verdict_name(MEDIA_PACKET_CACHE_SUPPRESSED),
                        "suppressed");
    assert_string_equal(media_packet_cache_verdict_name(MEDIA_PACKET_CACHE_VERDICT_COUNT),
                        "unknown");
    media_packet_cache_free(c);
}

static void test_too_old(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(8, 1000, 50);
    uint8_t pkt[200];
    size_t n = make_packet(pkt, 7, 60);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 7, 5000), 0);

    size_t len = 0;
    assert_non_null(media_packet_cache_lookup(c, 7, 6000, 1000, &len)); /* exactly max_age */
    assert_null(media_packet_cache_lookup(c, 7, 6001, 1000, &len));
    assert_non_null(media_packet_cache_lookup(c, 7, 6001, 2000, &len)); /* the caller's limit */
    assert_null(media_packet_cache_lookup(c, 7, 5001, 0, &len));

    /* The NACK path uses the configured max_age_ms. */
    const uint8_t *got = NULL;
    assert_int_equal(media_packet_cache_nack(c, 7, 6001, &got, &len), MEDIA_PACKET_CACHE_MISSED);
    assert_int_equal(media_packet_cache_nack(c, 7, 6000, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_non_null(got);

    /*
     * A seq that comes round again 65536 packets later without its slot being
     * overwritten in between (gaps) is caught by its age.
     */
    assert_null(media_packet_cache_lookup(c, 7, 5000 + 65536 * 10, 1000, &len));

    assert_nack_counts(c, 1, 1, 0);
    media_packet_cache_free(c);
}

static void test_repeat_guard(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(16, 1000, 100);
    uint8_t pkt[200];
    for (uint16_t seq = 1; seq <= 3; seq++) {
        size_t n = make_packet(pkt, seq, 30);
        assert_int_equal(media_packet_cache_store(c, pkt, n, seq, 0), 0);
    }
    const uint8_t *got = NULL;
    size_t len = 0;
    /* First request: resent. Again within 100 ms: suppressed; at 100 ms: resent. */
    assert_int_equal(media_packet_cache_nack(c, 2, 10, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_int_equal(len, 24 + 30);
    got = NULL;
    assert_int_equal(media_packet_cache_nack(c, 2, 10, &got, &len), MEDIA_PACKET_CACHE_SUPPRESSED);
    assert_null(got);
    assert_int_equal(media_packet_cache_nack(c, 2, 109, &got, &len), MEDIA_PACKET_CACHE_SUPPRESSED);
    /* Other packets are not held back by it. */
    assert_int_equal(media_packet_cache_nack(c, 1, 109, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_int_equal(media_packet_cache_nack(c, 2, 110, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_non_null(got);
    /* The interval runs from the last resend, not the first. */
    assert_int_equal(media_packet_cache_nack(c, 2, 150, &got, &len), MEDIA_PACKET_CACHE_SUPPRESSED);
    assert_int_equal(media_packet_cache_nack(c, 2, 210, &got, &len), MEDIA_PACKET_CACHE_RESEND);

    /* A new packet in the slot starts unsent. */
    size_t n = make_packet(pkt, 18, 30);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 18, 215), 0);
    assert_int_equal(media_packet_cache_nack(c, 18, 216, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_int_equal(media_packet_cache_nack(c, 2, 216, &got, &len), MEDIA_PACKET_CACHE_MISSED);

    /* Following the round trip: a shorter interval, then none. */
    assert_int_equal(media_packet_cache_set_resend_interval(c, -5), MEDIA_PACKET_CACHE_ERR_INVALID);
    assert_int_equal(media_packet_cache_set_resend_interval(c, 20), 0);
    assert_int_equal(media_packet_cache_nack(c, 18, 235, &got, &len),
                     MEDIA_PACKET_CACHE_SUPPRESSED);
    assert_int_equal(media_packet_cache_nack(c, 18, 236, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_int_equal(media_packet_cache_set_resend_interval(c, 0), 0);
    assert_int_equal(media_packet_cache_nack(c, 18, 236, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    /* However often it is asked for, a packet goes out again MAX_RESENDS times at most. */
    assert_int_equal(MEDIA_PACKET_CACHE_MAX_RESENDS, 3);
    assert_int_equal(media_packet_cache_nack(c, 18, 236, &got, &len),
                     MEDIA_PACKET_CACHE_SUPPRESSED);

    assert_nack_counts(c, 7, 1, 5);
    media_packet_cache_free(c);
}

/* Checks `rtx` against `orig` as RFC 4588 section 4 lays it out. */
static void assert_rtx_of(const uint8_t *rtx, size_t rtx_len, const uint8_t *orig, size_t len,
                          uint16_t rtx_seq)
{
    struct media_rtp_view o, r;
    assert_int_equal(media_rtp_parse(orig, len, &o), 0);
    assert_int_equal(media_rtp_parse(rtx, rtx_len, &r), 0);
    assert_int_equal(rtx_len, o.header_len + 2 + o.payload_len);
    /* Changed: PT, SSRC, seq, and the padding gone. */
    assert_int_equal(r.payload_type, RTX_PT);
    assert_int_equal(r.ssrc, RTX_SSRC);
    assert_int_equal(r.seq, rtx_seq);
    assert_false(r.padding);
    assert_int_equal(r.padding_len, 0);
    /* Kept: marker, timestamp, CSRCs and the extension block byte for byte. */
    assert_int_equal(r.marker, o.marker);
    assert_int_equal(r.timestamp, o.timestamp);
    assert_int_equal(r.extension, o.extension);
    assert_int_equal(r.csrc_count, o.csrc_count);
    assert_int_equal(r.header_len, o.header_len);
    assert_memory_equal(rtx + 12, orig + 12, o.header_len - 12);
    /* The payload: OSN, then the original payload. */
    assert_int_equal(r.payload_len, 2 + o.payload_len);
    assert_int_equal(r.payload[0] << 8 | r.payload[1], o.seq);
    if (o.payload_len)
        assert_memory_equal(r.payload + 2, o.payload, o.payload_len);
}

static void test_rtx_round_trip(void **state)
{
    (void)state;
    uint8_t orig[300];
    uint8_t rtx[320];
    /* With marker and padding (4 bytes) after a 100-byte payload. */
    size_t len = make_packet(orig, 0xFFFE, 100);
    orig[0] |= 0x20;
    orig[1] |= 0x80;
    memset(orig + len, 0, 3);
    orig[len + 3] = 4;
    len += 4;

    int n = media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 0x0001, rtx, sizeof(rtx));
    assert_int_equal(n, 24 + 2 + 100);
    assert_rtx_of(rtx, (size_t)n, orig, len, 0x0001);
    struct media_rtp_view r;
    assert_int_equal(media_rtp_parse(rtx, (size_t)n, &r), 0);
    assert_true(r.marker);
    assert_int_equal(r.timestamp, 0x10000);
    assert_int_equal(r.payload[0], 0xFF);
    assert_int_equal(r.payload[1], 0xFE);
    /* The extensions still read as before. */
    struct media_rtp_ext e;
    uint16_t tw = 0;
    assert_int_equal(media_rtp_ext_find(&r, 3, &e), 0);
    assert_int_equal(media_rtp_ext_twcc_seq(&e, &tw), 0);
    assert_int_equal(tw, 0x0102);
    const char *mid = NULL;
    size_t mid_len = 0;
    assert_int_equal(media_rtp_ext_find(&r, 4, &e), 0);
    assert_int_equal(media_rtp_ext_mid(&e, &mid, &mid_len), 0);
    assert_int_equal(mid_len, 1);
    assert_int_equal(mid[0], '1');
    /* ...and can be renumbered for the transport, as the relay will. */
    assert_int_equal(media_rtp_set_twcc_seq(rtx, (size_t)n, 3, 0x0BAD), 0);

    /* Without marker and padding; an empty payload (OSN alone). */
    len = make_packet(orig, 1234, 0);
    n = media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 65535, rtx, sizeof(rtx));
    assert_int_equal(n, 24 + 2);
    assert_rtx_of(rtx, (size_t)n, orig, len, 65535);
    assert_int_equal(media_rtp_parse(rtx, (size_t)n, &r), 0);
    assert_false(r.marker);

    /* The padding-only packet of a bandwidth probe: OSN alone, no padding. */
    orig[0] |= 0x20;
    memset(orig + len, 0, 200);
    orig[len + 199] = 200;
    n = media_rtx_build(orig, len + 200, RTX_PT, RTX_SSRC, 9, rtx, sizeof(rtx));
    assert_int_equal(n, 24 + 2);
    assert_rtx_of(rtx, (size_t)n, orig, len + 200, 9);
}

static void test_rtx_csrc_two_byte(void **state)
{
    (void)state;
    /* VP8 with two CSRCs, a two-byte extension (id 7, 0 bytes; id 200, 3 bytes) and 4 padding. */
    const uint8_t orig[] = {
        0xB2, 0xE0, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x10, 0xCA, 0xFE, 0xBA, 0xBE, /* P X CC=2 M */
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,                         /* CSRCs */
        0x10, 0x00, 0x00, 0x02,                                                 /* two-byte */
        0x07, 0x00, 0xC8, 0x03, 'a',  'b',  'c',  0x00,                         /* elements */
        0x90, 0xE0, 0x00,                                                       /* payload */
        0x00, 0x00, 0x00, 0x04,                                                 /* padding */
    };
    uint8_t rtx[64];
    int n = media_rtx_build(orig, sizeof(orig), RTX_PT, RTX_SSRC, 0x4242, rtx, sizeof(rtx));
    assert_int_equal(n, 32 + 2 + 3);
    assert_rtx_of(rtx, (size_t)n, orig, sizeof(orig), 0x4242);

    struct media_rtp_view r;
    assert_int_equal(media_rtp_parse(rtx, (size_t)n, &r), 0);
    assert_int_equal(rtx[0], 0x92); /* V=2, X, CC=2; P cleared */
    assert_int_equal(rtx[1], 0x80 | RTX_PT);
    assert_int_equal(r.csrc_count, 2);
    assert_memory_equal(r.csrc, orig + 12, 8);
    assert_int_equal(r.ext_profile, MEDIA_RTP_EXT_TWO_BYTE);
    struct media_rtp_ext e;
    assert_int_equal(media_rtp_ext_find(&r, 200, &e), 0);
    assert_int_equal(e.len, 3);
    assert_memory_equal(e.data, "abc", 3);
    assert_int_equal(media_rtp_ext_find(&r, 7, &e), 0);
    assert_int_equal(e.len, 0);
    const uint8_t payload[] = {0xFF, 0xFF, 0x90, 0xE0, 0x00};
    assert_int_equal(r.payload_len, sizeof(payload));
    assert_memory_equal(r.payload, payload, sizeof(payload));
}

static void test_rtx_errors(void **state)
{
    (void)state;
    uint8_t orig[200];
    uint8_t rtx[200];
    size_t len = make_packet(orig, 5, 50);
    size_t need = len + 2;

    /* Every buffer short of the need is refused and left untouched. */
    for (size_t cap = 0; cap < need; cap++) {
        memset(rtx, 0xA5, sizeof(rtx));
        assert_int_equal(media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 1, rtx, cap),
                         MEDIA_PACKET_CACHE_ERR_NO_SPACE);
        for (size_t i = 0; i < sizeof(rtx); i++)
            assert_int_equal(rtx[i], 0xA5);
    }
    /* Exactly the need fits, and nothing after it is touched. */
    memset(rtx, 0xA5, sizeof(rtx));
    assert_int_equal(media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 1, rtx, need), (int)need);
    for (size_t i = need; i < sizeof(rtx); i++)
        assert_int_equal(rtx[i], 0xA5);

    /* Padding counts against the original, not the RTX: the RTX may be shorter. */
    orig[0] |= 0x20;
    memset(orig + len, 0, 9);
    orig[len + 9] = 10;
    assert_int_equal(media_rtx_build(orig, len + 10, RTX_PT, RTX_SSRC, 1, rtx, need), (int)need);
    orig[0] &= (uint8_t)~0x20;

    /* Originals that do not parse. */
    assert_int_equal(media_rtx_build(orig, 11, RTX_PT, RTX_SSRC, 1, rtx, sizeof(rtx)),
                     MEDIA_PACKET_CACHE_ERR_MALFORMED);
    assert_int_equal(media_rtx_build(orig, 20, RTX_PT, RTX_SSRC, 1, rtx, sizeof(rtx)),
                     MEDIA_PACKET_CACHE_ERR_MALFORMED); /* extension overruns */
    orig[0] = 0x50;                                     /* version 1 */
    assert_int_equal(media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 1, rtx, sizeof(rtx)),
                     MEDIA_PACKET_CACHE_ERR_MALFORMED);
    orig[0] = 0xB0; /* P set, last byte 0 */
    orig[len - 1] = 0;
    assert_int_equal(media_rtx_build(orig, len, RTX_PT, RTX_SSRC, 1, rtx, sizeof(rtx)),
                     MEDIA_PACKET_CACHE_ERR_MALFORMED);

    /* A payload type outside 7 bits. */
    len = make_packet(orig, 5, 50);
    assert_int_equal(media_rtx_build(orig, len, 128, RTX_SSRC, 1, rtx, sizeof(rtx)),
                     MEDIA_PACKET_CACHE_ERR_INVALID);
    assert_int_equal(media_rtx_build(orig, len, 127, RTX_SSRC, 1, rtx, sizeof(rtx)), (int)need);
}

/*
 * The pieces together: the relay has sent 65530..65535, 0..9 (with 3 never
 * sent: the outgoing stream has a gap where the incoming one had a loss);
 * the browser's NACK, built and expanded by the RTCP codec, asks for some
 * of them across the wrap, one never sent and one already overwritten. Each
 * seq the cache answers becomes an RTX packet carrying the right OSN and
 * payload; the same NACK again a little later is suppressed whole.
 */
static void test_nack_drives_lookups(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache(16, 1000, 50);
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET];
    /* 65520 first: overwritten later by 0 (same slot of 16). */
    size_t n = make_packet(pkt, 65520, 500);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 65520, 0), 0);
    for (unsigned i = 0; i < 16; i++) {
        uint16_t seq = (uint16_t)(65530u + i);
        if (seq == 3)
            continue;
        n = make_packet(pkt, seq, 200 + i);
        assert_int_equal(media_packet_cache_store(c, pkt, n, seq, 100 + i), 0);
    }

    const uint16_t lost[] = {65520, 65533, 65534, 65535, 0, 3, 4, 9};
    uint8_t nack[64];
    int nack_len = media_rtcp_build_nack(0xB0B0B0B0u, OUR_SSRC, lost, 8, nack, sizeof(nack));
    assert_true(nack_len > 0);

    for (int pass = 0; pass < 2; pass++) {
        int64_t now = 150 + pass * 20;
        struct media_rtcp_iter it;
        struct media_rtcp_pkt p;
        struct media_rtcp_fb fb;
        media_rtcp_iter_init(&it, nack, (size_t)nack_len);
        assert_int_equal(media_rtcp_next(&it, &p), 1);
        assert_int_equal(media_rtcp_parse_fb(&p, &fb), 0);
        assert_int_equal(fb.media_ssrc, OUR_SSRC);
        uint16_t seqs[64];
        int count = media_rtcp_nack_expand(&fb, seqs, 64);
        assert_int_equal(count, 8);

        unsigned resent = 0, missed = 0, suppressed = 0;
        uint16_t rtx_seq = 777;
        for (int i = 0; i < count; i++) {
            const uint8_t *orig = NULL;
            size_t len = 0;
            enum media_packet_cache_verdict v =
                media_packet_cache_nack(c, seqs[i], now, &orig, &len);
            bool sent = seqs[i] != 65520 && seqs[i] != 3;
            if (!sent) {
                assert_int_equal(v, MEDIA_PACKET_CACHE_MISSED);
                missed++;
                continue;
            }
            if (pass == 1) {
                assert_int_equal(v, MEDIA_PACKET_CACHE_SUPPRESSED);
                suppressed++;
                continue;
            }
            assert_int_equal(v, MEDIA_PACKET_CACHE_RESEND);
            resent++;
            /* Stored as the relay sent it... */
            size_t payload = 200 + (uint16_t)(seqs[i] - 65530u);
            uint8_t want[MEDIA_PACKET_CACHE_MAX_PACKET];
            size_t want_len = make_packet(want, seqs[i], payload);
            assert_int_equal(len, want_len);
            assert_memory_equal(orig, want, len);
            /* ...and retransmitted as RTX with its OSN. */
            uint8_t rtx[MEDIA_PACKET_CACHE_MAX_PACKET + 2];
            int rtx_len = media_rtx_build(orig, len, RTX_PT, RTX_SSRC, rtx_seq, rtx, sizeof(rtx));
            assert_int_equal(rtx_len, (int)len + 2);
            assert_rtx_of(rtx, (size_t)rtx_len, orig, len, rtx_seq);
            rtx_seq++;
        }
        assert_int_equal(resent, pass == 0 ? 6 : 0);
        assert_int_equal(suppressed, pass == 0 ? 0 : 6);
        assert_int_equal(missed, 2);
    }

    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.stored, 16);
    assert_nack_counts(c, 6, 4, 6);
    media_packet_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_free),      cmocka_unit_test(test_store_lookup_across_wrap),
        cmocka_unit_test(test_overwritten_slots), cmocka_unit_test(test_refused_stores),
        cmocka_unit_test(test_too_old),           cmocka_unit_test(test_repeat_guard),
        cmocka_unit_test(test_rtx_round_trip),    cmocka_unit_test(test_rtx_csrc_two_byte),
        cmocka_unit_test(test_rtx_errors),        cmocka_unit_test(test_nack_drives_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
