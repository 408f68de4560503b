/*
 * test_packet_cache.c - the outgoing packet history and the RTX builder:
 * stores and lookups across the 65535 -> 0 wrap, slots overwritten when the
 * ring is full, packets whose bytes the data arena has reached since (the
 * skipped tail at its end included, to the byte), a long run of random sizes
 * checked against what was stored, the memory the cache takes (allocated and
 * resident), packets too old to resend, the repeat guard against browsers
 * asking again for the same packet, RTX packets checked through the RTP
 * parser (CSRCs, both extension forms, padding dropped), short buffers, and
 * a NACK built and expanded by the RTCP codec driving the cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

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

/* A cache with an arena of `bytes` (0: the default). */
static struct media_packet_cache *new_cache_bytes(unsigned capacity, size_t bytes,
                                                  int64_t max_age_ms, int64_t resend_interval_ms)
{
    struct media_packet_cache_config cfg = {
        .capacity = capacity,
        .bytes = bytes,
        .max_age_ms = max_age_ms,
        .resend_interval_ms = resend_interval_ms,
    };
    int err = 0;
    struct media_packet_cache *c = media_packet_cache_new(&cfg, &err);
    assert_non_null(c);
    assert_int_equal(err, 0);
    return c;
}

static struct media_packet_cache *new_cache(unsigned capacity, int64_t max_age_ms,
                                            int64_t resend_interval_ms)
{
    return new_cache_bytes(capacity, 0, max_age_ms, resend_interval_ms);
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
        {.capacity = 256,
         .bytes = MEDIA_PACKET_CACHE_MIN_BYTES - 1,
         .max_age_ms = 1000,
         .resend_interval_ms = 50},
        {.capacity = 256,
         .bytes = MEDIA_PACKET_CACHE_MAX_BYTES + 1,
         .max_age_ms = 1000,
         .resend_interval_ms = 50},
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
    assert_int_equal(media_packet_cache_bytes(c), MEDIA_PACKET_CACHE_DEFAULT_BYTES);
    struct media_packet_cache_stats st;
    media_packet_cache_stats(c, &st);
    assert_int_equal(st.stored + st.nacked + st.too_long, 0);
    size_t len = 0;
    assert_null(media_packet_cache_lookup(c, 0, 0, 1000, &len));
    media_packet_cache_free(c);

    /* The smallest and the largest ring; 0 bytes takes the default arena. */
    c = new_cache(1, 1000, 0);
    assert_int_equal(media_packet_cache_bytes(c), MEDIA_PACKET_CACHE_DEFAULT_BYTES);
    media_packet_cache_free(c);
    c = new_cache(MEDIA_PACKET_CACHE_MAX_CAPACITY, 1000, 0);
    uint8_t pkt[100];
    size_t n = make_packet(pkt, 65535, 10);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 65535, 5), 0);
    assert_cached(c, 65535, 10, 5);
    media_packet_cache_free(c);

    /* The smallest and the largest arena. */
    c = new_cache_bytes(1, MEDIA_PACKET_CACHE_MIN_BYTES, 1000, 0);
    assert_int_equal(media_packet_cache_bytes(c), MEDIA_PACKET_CACHE_MAX_PACKET);
    assert_int_equal(media_packet_cache_store(c, pkt, n, 65535, 5), 0);
    assert_cached(c, 65535, 10, 5);
    media_packet_cache_free(c);
    c = new_cache_bytes(MEDIA_PACKET_CACHE_MAX_CAPACITY, MEDIA_PACKET_CACHE_MAX_BYTES, 1000, 0);
    assert_int_equal(media_packet_cache_bytes(c), MEDIA_PACKET_CACHE_MAX_BYTES);
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

/* Stores make_packet(seq) of exactly `size` bytes (>= 24) at `now_ms`. */
static void store_sized(struct media_packet_cache *c, uint16_t seq, size_t size, int64_t now_ms)
{
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET];
    assert_true(size >= 24 && size <= sizeof(pkt));
    size_t n = make_packet(pkt, seq, size - 24);
    assert_int_equal(media_packet_cache_store(c, pkt, n, seq, now_ms), 0);
}

/* Asserts that `seq`, stored by store_sized(), is in the cache byte for byte; returns where. */
static const uint8_t *assert_sized(const struct media_packet_cache *c, uint16_t seq, size_t size)
{
    uint8_t want[MEDIA_PACKET_CACHE_MAX_PACKET];
    size_t want_len = make_packet(want, seq, size - 24);
    size_t len = 0;
    const uint8_t *got = media_packet_cache_lookup(c, seq, 0, 1000, &len);
    assert_non_null(got);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, want_len);
    return got;
}

static void assert_gone(const struct media_packet_cache *c, uint16_t seq)
{
    size_t len = 0;
    assert_null(media_packet_cache_lookup(c, seq, 0, 1000, &len));
}

/*
 * Larger packets written over smaller ones: the seq slots of the smaller ones
 * still name them (16 slots, 4 packets), but their bytes are gone, and both
 * a lookup and a NACK say so.
 */
static void test_arena_overwritten(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache_bytes(16, 4000, 1000, 0);
    store_sized(c, 1, 500, 0);  /* [0, 500) */
    store_sized(c, 2, 1400, 0); /* [500, 1900) */
    store_sized(c, 3, 1400, 0); /* [1900, 3300) */
    assert_sized(c, 1, 500);
    assert_sized(c, 2, 1400);
    assert_sized(c, 3, 1400);

    /* 1400 more do not fit in the 700 left: [0, 1400), over all of 1 and 900 bytes of 2. */
    store_sized(c, 4, 1400, 0);
    assert_gone(c, 1);
    assert_gone(c, 2);
    assert_sized(c, 3, 1400);
    assert_sized(c, 4, 1400);
    const uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(media_packet_cache_nack(c, 2, 0, &got, &len), MEDIA_PACKET_CACHE_MISSED);
    assert_null(got);
    assert_int_equal(media_packet_cache_nack(c, 3, 0, &got, &len), MEDIA_PACKET_CACHE_RESEND);
    assert_non_null(got);
    assert_int_equal(len, 1400);
    assert_nack_counts(c, 1, 1, 0);

    /* The same seq stored again names the new copy only. */
    store_sized(c, 1, 100, 0); /* [1400, 1500) */
    assert_sized(c, 1, 100);
    media_packet_cache_free(c);
}

/*
 * The end of the arena, to the byte: a packet that does not fit before the end
 * starts over at offset 0 in one piece and the tail stays unused; one that ends
 * exactly at the end wastes nothing; a packet lasts until the arena has moved
 * on by its size, so the oldest survives while a later one ends where it
 * starts, and is gone when one byte more is written.
 */
static void test_arena_wrap(void **state)
{
    (void)state;
    struct media_packet_cache *c = new_cache_bytes(16, 3000, 1000, 0);
    store_sized(c, 100, 1400, 0); /* [0, 1400) */
    store_sized(c, 101, 1400, 0); /* [1400, 2800) */
    const uint8_t *arena = assert_sized(c, 100, 1400);
    assert_ptr_equal(assert_sized(c, 101, 1400), arena + 1400);

    /* 1000 bytes, 200 left before the end: skipped, and the packet is whole at 0. */
    store_sized(c, 102, 1000, 0);
    assert_ptr_equal(assert_sized(c, 102, 1000), arena);
    assert_gone(c, 100);
    assert_ptr_equal(assert_sized(c, 101, 1400), arena + 1400);

    /* [1000, 1400) ends where 101 starts: 101 is still whole... */
    store_sized(c, 103, 400, 0);
    assert_ptr_equal(assert_sized(c, 103, 400), arena + 1000);
    assert_sized(c, 101, 1400);
    /* ...until its first byte is written over. */
    uint8_t bare[MEDIA_RTP_HEADER_SIZE] = {0x80, VP8_PT, 0x00, 104};
    assert_int_equal(media_packet_cache_store(c, bare, sizeof(bare), 104, 0), 0);
    assert_gone(c, 101);
    assert_sized(c, 102, 1000);
    assert_sized(c, 103, 400);
    media_packet_cache_free(c);

    /* Three packets fill the arena exactly: all three are kept, nothing is skipped. */
    c = new_cache_bytes(16, 3000, 1000, 0);
    store_sized(c, 10, 1000, 0);
    store_sized(c, 11, 1000, 0);
    store_sized(c, 12, 1000, 0);
    arena = assert_sized(c, 10, 1000);
    assert_ptr_equal(assert_sized(c, 12, 1000), arena + 2000);
    store_sized(c, 13, 24, 0); /* at 0: the first byte of 10 */
    assert_ptr_equal(assert_sized(c, 13, 24), arena);
    assert_gone(c, 10);
    assert_sized(c, 11, 1000);
    assert_sized(c, 12, 1000);
    media_packet_cache_free(c);

    /*
     * The rule errs one way only. 202 lies in [2900, 3000), which the next lap
     * skips (205 does not fit after 204), so its bytes are never written over;
     * but the skipped tail counts as progress, and once the arena has moved on
     * by more than its size it is answered no more: a packet lasts `bytes` of
     * progress, whatever the tails.
     */
    c = new_cache_bytes(16, 3000, 1000, 0);
    store_sized(c, 200, 1450, 0); /* [0, 1450) */
    store_sized(c, 201, 1450, 0); /* [1450, 2900) */
    store_sized(c, 202, 100, 0);  /* [2900, 3000) */
    store_sized(c, 203, 1450, 0); /* [0, 1450) */
    store_sized(c, 204, 1449, 0); /* [1450, 2899) */
    assert_gone(c, 201);
    assert_sized(c, 202, 100);
    store_sized(c, 205, 1450, 0); /* skips [2899, 3000); [0, 1450) */
    assert_gone(c, 202);
    assert_sized(c, 204, 1449);
    assert_sized(c, 205, 1450);
    media_packet_cache_free(c);
}

/* xorshift32: the same run on every machine. */
static uint32_t next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Fills `buf` with packet number `serial` of a run: an RTP header with `seq`, then noise. */
static void fill_serial(uint8_t *buf, size_t len, uint32_t serial, uint16_t seq)
{
    uint32_t x = serial * 2654435761u + 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)next_random(&x);
    if (len >= 4) {
        buf[0] = 0x80;
        buf[1] = VP8_PT;
        buf[2] = (uint8_t)(seq >> 8);
        buf[3] = (uint8_t)seq;
    }
}

/* What the random run remembers of each packet the cache accepted. */
struct kept {
    uint32_t serial; /* fill_serial()'s */
    uint16_t seq;
    uint16_t len;
    uint64_t total; /* bytes of every accepted packet up to this one, this one included */
};

/*
 * Every packet kept in the run, from `from` to the newest (`count` - 1), looked up:
 * one answered is its slot's latest, not older than the arena, and byte for byte
 * what was stored; one whose slot still names it and that is young enough for the
 * arena's guarantee (header: `bytes`) is answered.
 */
static void check_run(const struct media_packet_cache *c, const struct kept *kept, size_t from,
                      size_t count, const uint32_t *slot_owner, size_t bytes)
{
    uint8_t want[MEDIA_PACKET_CACHE_MAX_PACKET];
    unsigned mask = media_packet_cache_capacity(c) - 1;
    uint64_t newest = kept[count - 1].total;
    for (size_t k = from; k < count; k++) {
        const struct kept *p = &kept[k];
        uint64_t since = newest - p->total + p->len; /* it and all after it */
        bool named = slot_owner[p->seq & mask] == k;
        size_t len = 0;
        const uint8_t *got = media_packet_cache_lookup(c, p->seq, 0, 1 << 30, &len);
        if (got) {
            assert_true(named);
            assert_true(since <= bytes);
            assert_int_equal(len, p->len);
            fill_serial(want, p->len, p->serial, p->seq);
            assert_memory_equal(got, want, p->len);
        } else {
            assert_false(named && since <= bytes - (MEDIA_PACKET_CACHE_MAX_PACKET - 1));
        }
    }
}

/*
 * A long run of random sizes from 1 to 1500 bytes (with a gap in the seqs now
 * and then, across 65535 -> 0, and a packet too short or too long now and
 * then, which must change nothing), in arenas small and large against slot
 * tables small and large. The newest packet is always answered; the others
 * are checked by check_run(), all of them every 16 packets.
 */
static void test_arena_random_sizes(void **state)
{
    (void)state;
    const struct {
        unsigned capacity;
        size_t bytes;
    } runs[] = {
        {256, 20000},                           /* the arena evicts first */
        {16, 30000},                            /* the slots evict first */
        {256, 0},                               /* the defaults */
        {1024, MEDIA_PACKET_CACHE_MIN_BYTES},   /* room for one packet at a time */
        {4, MEDIA_PACKET_CACHE_MAX_PACKET + 7}, /* a tail skipped nearly every time */
    };
    enum { STORES = 20000 };
    struct kept *kept = calloc(STORES, sizeof(*kept));
    uint32_t *slot_owner = calloc(1024, sizeof(*slot_owner));
    assert_non_null(kept);
    assert_non_null(slot_owner);
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET + 100];

    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        struct media_packet_cache *c = new_cache_bytes(runs[r].capacity, runs[r].bytes, 1000, 0);
        size_t bytes = media_packet_cache_bytes(c);
        unsigned mask = runs[r].capacity - 1;
        for (unsigned i = 0; i <= mask; i++)
            slot_owner[i] = UINT32_MAX;
        uint32_t x = 0x9E3779B9u + (uint32_t)r;
        uint16_t seq = 65535 - 3000;
        size_t count = 0;
        uint64_t total = 0, too_long = 0;

        for (uint32_t serial = 0; serial < STORES; serial++) {
            uint32_t dice = next_random(&x);
            if (dice % 50 == 0)
                seq = (uint16_t)(seq + 1 + dice % 7); /* a gap */
            size_t len = 1 + next_random(&x) % MEDIA_PACKET_CACHE_MAX_PACKET;
            if (dice % 97 == 1)
                len = MEDIA_PACKET_CACHE_MAX_PACKET + 1 + dice % 100;
            fill_serial(pkt, len, serial, seq);
            int rc = media_packet_cache_store(c, pkt, len, seq, 0);
            if (len < MEDIA_RTP_HEADER_SIZE) {
                assert_int_equal(rc, MEDIA_PACKET_CACHE_ERR_INVALID);
            } else if (len > MEDIA_PACKET_CACHE_MAX_PACKET) {
                assert_int_equal(rc, MEDIA_PACKET_CACHE_ERR_TOO_LONG);
                too_long++;
            } else {
                assert_int_equal(rc, 0);
                total += len;
                kept[count] = (struct kept){
                    .serial = serial, .seq = seq, .len = (uint16_t)len, .total = total};
                slot_owner[seq & mask] = (uint32_t)count;
                count++;
                seq++;
            }
            if (count == 0)
                continue;
            /* The newest is always there, refused packets or not. */
            size_t len_newest = 0;
            assert_non_null(
                media_packet_cache_lookup(c, kept[count - 1].seq, 0, 1 << 30, &len_newest));
            check_run(c, kept, count - 1, count, slot_owner, bytes);
            if (serial % 16 == 0) {
                /* Every packet a full arena could hold, and some beyond. */
                size_t reach = runs[r].capacity + bytes / MEDIA_RTP_HEADER_SIZE + 8;
                check_run(c, kept, count > reach ? count - reach : 0, count, slot_owner, bytes);
            }
        }
        check_run(c, kept, 0, count, slot_owner, bytes);

        struct media_packet_cache_stats st;
        media_packet_cache_stats(c, &st);
        assert_int_equal(st.stored, count);
        assert_int_equal(st.too_long, too_long);
        assert_true(count > STORES * 9 / 10);
        media_packet_cache_free(c);
    }
    free(slot_owner);
    free(kept);
}

/*
 * The process's anonymous resident memory in bytes (Linux), or 0 when unknown:
 * resident less file-backed, so that code paged in on a first call is not counted.
 */
static size_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0, shared = 0;
    if (!f)
        return 0;
    int n = fscanf(f, "%lu %lu %lu", &size, &resident, &shared);
    fclose(f);
    if (n != 3 || shared > resident)
        return 0;
    return (size_t)(resident - shared) * (size_t)sysconf(_SC_PAGESIZE);
}

/* Whether transparent huge pages are on for every mapping, which makes RSS jump by 2 MiB. */
static bool huge_pages_always(void)
{
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return false;
    bool always = fgets(mode, sizeof(mode), f) && strstr(mode, "[always]");
    fclose(f);
    return always;
}

/* Bytes the allocator has handed out (glibc), or 0 when it cannot tell (ASan's, others). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

/* Hands free heap pages back to the system (glibc), so that new allocations fault in fresh ones. */
static void release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/*
 * The memory bound: a cache allocates its arena, 32 bytes per slot and a small
 * header, whatever the packets' sizes, and nothing per packet; filled with
 * full-size packets its resident memory grows by no more than that, well under
 * the old layout of a full-size buffer per slot.
 */
static void test_memory_bound(void **state)
{
    (void)state;
    const struct {
        unsigned capacity;
        size_t bytes;
    } sizes[] = {
        {MEDIA_PACKET_CACHE_DEFAULT_CAPACITY, 0},
        {128, MEDIA_PACKET_CACHE_DEFAULT_BYTES}, /* as the relay makes its video caches */
        {64, 32 * 1024},
    };
    const size_t slack = 2 * 4096 + 256; /* mmap's page rounding and the chunks' headers */
    uint8_t pkt[MEDIA_PACKET_CACHE_MAX_PACKET];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        release_free_memory(); /* else it would reuse resident pages the last one freed */
        size_t rss_before = resident_bytes();
        size_t heap_before = heap_in_use();
        struct media_packet_cache *c = new_cache_bytes(sizes[i].capacity, sizes[i].bytes, 1000, 0);
        size_t heap_made = heap_in_use();
        size_t bytes = media_packet_cache_bytes(c);
        size_t bound = bytes + (size_t)sizes[i].capacity * 32;
        assert_int_equal(bytes, sizes[i].bytes ? sizes[i].bytes : MEDIA_PACKET_CACHE_DEFAULT_BYTES);
        /* Less than the old layout: a full-size buffer per slot. */
        assert_true(bound < (size_t)sizes[i].capacity * MEDIA_PACKET_CACHE_MAX_PACKET);

        /* Ten arenas' worth of full-size packets: every page of it written. */
        for (unsigned n = 0; n < 10 * bytes / MEDIA_PACKET_CACHE_MAX_PACKET; n++) {
            size_t len = make_packet(pkt, (uint16_t)n, MEDIA_PACKET_CACHE_MAX_PACKET - 24);
            assert_int_equal(media_packet_cache_store(c, pkt, len, (uint16_t)n, 0), 0);
        }
        size_t heap_filled = heap_in_use();
        size_t rss_filled = resident_bytes();

        if (heap_made != heap_before) {
            assert_true(heap_made - heap_before >= bound);
            assert_true(heap_made - heap_before <= bound + slack);
            assert_int_equal(heap_filled, heap_made); /* nothing per packet */
        }
        size_t grown = rss_filled > rss_before ? rss_filled - rss_before : 0;
        /* Room for ASan's shadow (an eighth) and stray pages of the test's own. */
        if (rss_before && rss_filled && !huge_pages_always())
            assert_true(grown < bound + bound / 8 + 64 * 1024);
        print_message("capacity %u, arena %zu: allocated %zu bytes, resident +%zu\n",
                      sizes[i].capacity, bytes, heap_made - heap_before, grown);
        media_packet_cache_free(c);
    }
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
        cmocka_unit_test(test_overwritten_slots), cmocka_unit_test(test_arena_overwritten),
        cmocka_unit_test(test_arena_wrap),        cmocka_unit_test(test_arena_random_sizes),
        cmocka_unit_test(test_memory_bound),      cmocka_unit_test(test_refused_stores),
        cmocka_unit_test(test_too_old),           cmocka_unit_test(test_repeat_guard),
        cmocka_unit_test(test_rtx_round_trip),    cmocka_unit_test(test_rtx_csrc_two_byte),
        cmocka_unit_test(test_rtx_errors),        cmocka_unit_test(test_nack_drives_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
