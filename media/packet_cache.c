/*
 * packet_cache.c - one outgoing stream's packet history for NACKs, and the
 * RTX builder (see packet_cache.h for the contracts).
 *
 * Runs on the thread that owns the stream (one media worker); the builder on
 * any. Memory is allocated in media_packet_cache_new() and nowhere else:
 * storing copies the packet into the next bytes of the arena and notes where
 * in its slot; looking up returns a pointer into the arena.
 *
 * Positions in the arena are counted by `head`, a 64-bit count of every byte
 * the arena has advanced since the cache was made: each packet's bytes, and
 * each tail skipped at the ring's end because the next packet did not fit
 * there. Position p is byte p % bytes of the arena, a slot keeps its packet's
 * start position, and a packet stays whole while head - start <= bytes: any
 * write over its bytes would be at a position start + bytes or later (its
 * own offset one lap on), and would take head past that. A skipped tail moves
 * head without writing, so a packet lying inside a later tail is counted gone
 * a little before its bytes are reached. The rule errs only that way (never
 * a packet with overwritten bytes), and keeps the window in one plain figure:
 * a packet lasts `bytes` of the arena's progress.
 */
#include "packet_cache.h"
#include "bytes.h"
#include "rtp.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* One slot's bookkeeping; its bytes are at data + start % bytes, in one piece. */
struct slot {
    uint64_t start; /* the position of its first byte (see the top of the file) */
    int64_t stored_ms;
    int64_t resent_ms; /* meaningful when `resent` */
    uint16_t seq;
    uint16_t len; /* 0: never written */
    bool resent;
    uint8_t resends; /* how many times it went out again */
};

struct media_packet_cache {
    unsigned capacity; /* a power of two */
    unsigned mask;     /* capacity - 1 */
    size_t bytes;      /* the arena's size */
    uint64_t head;     /* positions the arena has advanced: packets and skipped tails */
    size_t tail;       /* where the next packet goes if it fits: head % bytes, or bytes */
    int64_t max_age_ms;
    int64_t resend_interval_ms;
    struct media_packet_cache_stats stats;
    /* Kept apart from the packet bytes so that a lookup's check touches one small line. */
    struct slot *slots;
    uint8_t *data; /* the arena: `bytes` bytes */
};

const char *media_packet_cache_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MEDIA_PACKET_CACHE_ERR_INVALID:
        return "invalid argument";
    case MEDIA_PACKET_CACHE_ERR_TOO_LONG:
        return "packet too long for the cache";
    case MEDIA_PACKET_CACHE_ERR_MALFORMED:
        return "not a valid RTP packet";
    case MEDIA_PACKET_CACHE_ERR_NO_SPACE:
        return "output buffer too small";
    case MEDIA_PACKET_CACHE_ERR_NO_MEMORY:
        return "out of memory";
    default:
        return "unknown error";
    }
}

const char *media_packet_cache_verdict_name(enum media_packet_cache_verdict v)
{
    switch (v) {
    case MEDIA_PACKET_CACHE_RESEND:
        return "retransmitted";
    case MEDIA_PACKET_CACHE_MISSED:
        return "missed";
    case MEDIA_PACKET_CACHE_SUPPRESSED:
        return "suppressed";
    case MEDIA_PACKET_CACHE_VERDICT_COUNT:
        break;
    }
    return "unknown";
}

struct media_packet_cache *media_packet_cache_new(const struct media_packet_cache_config *cfg,
                                                  int *err)
{
    struct media_packet_cache_config conf = cfg ? *cfg : MEDIA_PACKET_CACHE_CONFIG_DEFAULT;
    int e = MEDIA_PACKET_CACHE_ERR_INVALID;
    struct media_packet_cache *c = NULL;

    if (conf.bytes == 0)
        conf.bytes = MEDIA_PACKET_CACHE_DEFAULT_BYTES;
    if (conf.capacity == 0 || conf.capacity > MEDIA_PACKET_CACHE_MAX_CAPACITY ||
        (conf.capacity & (conf.capacity - 1)) != 0 || conf.bytes < MEDIA_PACKET_CACHE_MIN_BYTES ||
        conf.bytes > MEDIA_PACKET_CACHE_MAX_BYTES || conf.max_age_ms < 0 ||
        conf.resend_interval_ms < 0)
        goto fail;
    e = MEDIA_PACKET_CACHE_ERR_NO_MEMORY;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->capacity = conf.capacity;
    c->mask = conf.capacity - 1;
    c->bytes = conf.bytes;
    c->max_age_ms = conf.max_age_ms;
    c->resend_interval_ms = conf.resend_interval_ms;
    c->slots = calloc(conf.capacity, sizeof(*c->slots));
    /* Not zeroed: only written bytes are ever read, and untouched pages stay off the RSS. */
    c->data = malloc(conf.bytes);
    if (!c->slots || !c->data)
        goto fail;
    return c;

fail:
    media_packet_cache_free(c);
    if (err)
        *err = e;
    return NULL;
}

void media_packet_cache_free(struct media_packet_cache *c)
{
    if (!c)
        return;
    /* Only the bytes ever written can hold media, and the first lap writes from offset 0
     * up: wipe those, not the untouched rest (which would make its pages resident). */
    if (c->data)
        OPENSSL_cleanse(c->data, c->head < c->bytes ? (size_t)c->head : c->bytes);
    free(c->data);
    free(c->slots);
    free(c);
}

/* The bytes of the packet in `s`, a slot that holds one (see find()). */
static uint8_t *slot_data(const struct media_packet_cache *c, const struct slot *s)
{
    size_t offset = (size_t)(s->start % c->bytes);
    assert(offset + s->len <= c->bytes);
    return c->data + offset;
}

int media_packet_cache_store(struct media_packet_cache *c, const uint8_t *pkt, size_t len,
                             uint16_t seq, int64_t now_ms)
{
    if (len < MEDIA_RTP_HEADER_SIZE || rd16(pkt + 2) != seq)
        return MEDIA_PACKET_CACHE_ERR_INVALID;
    if (len > MEDIA_PACKET_CACHE_MAX_PACKET) {
        c->stats.too_long++;
        return MEDIA_PACKET_CACHE_ERR_TOO_LONG;
    }
    /* In one piece: if it does not fit before the end, skip the tail and start over. */
    if (len > c->bytes - c->tail) {
        c->head += c->bytes - c->tail;
        c->tail = 0;
    }
    assert(c->tail + len <= c->bytes && c->head % c->bytes == c->tail % c->bytes);
    memcpy(c->data + c->tail, pkt, len);
    c->slots[seq & c->mask] = (struct slot){
        .start = c->head,
        .stored_ms = now_ms,
        .seq = seq,
        .len = (uint16_t)len,
        .resent = false,
    };
    c->head += len;
    c->tail += len;
    c->stats.stored++;
    return 0;
}

/*
 * The slot holding `seq` if it names it, the arena still holds its bytes and it
 * is at most `max_age_ms` old; else NULL.
 */
static struct slot *find(const struct media_packet_cache *c, uint16_t seq, int64_t now_ms,
                         int64_t max_age_ms)
{
    struct slot *s = &c->slots[seq & c->mask];
    if (s->len == 0 || s->seq != seq)
        return NULL;
    /* head >= start + len: it only grows, and grew past this packet when it was stored. */
    if (c->head - s->start > c->bytes)
        return NULL;
    /* A clock never runs backwards here, but if it did the packet would count as fresh. */
    if (now_ms - s->stored_ms > max_age_ms)
        return NULL;
    return s;
}

const uint8_t *media_packet_cache_lookup(const struct media_packet_cache *c, uint16_t seq,
                                         int64_t now_ms, int64_t max_age_ms, size_t *len)
{
    const struct slot *s = find(c, seq, now_ms, max_age_ms);
    if (!s)
        return NULL;
    *len = s->len;
    return slot_data(c, s);
}

enum media_packet_cache_verdict media_packet_cache_nack(struct media_packet_cache *c, uint16_t seq,
                                                        int64_t now_ms, const uint8_t **pkt,
                                                        size_t *len)
{
    c->stats.nacked++;
    struct slot *s = find(c, seq, now_ms, c->max_age_ms);
    if (!s) {
        c->stats.missed++;
        return MEDIA_PACKET_CACHE_MISSED;
    }
    /* A NACK is ~70 bytes and can name 100+ packets: answering each without end would
     * let a browser (or one pretending) turn the server into an amplifier. */
    if ((s->resent && now_ms - s->resent_ms < c->resend_interval_ms) ||
        s->resends >= MEDIA_PACKET_CACHE_MAX_RESENDS) {
        c->stats.suppressed++;
        return MEDIA_PACKET_CACHE_SUPPRESSED;
    }
    s->resends++;
    s->resent = true;
    s->resent_ms = now_ms;
    c->stats.retransmitted++;
    *pkt = slot_data(c, s);
    *len = s->len;
    return MEDIA_PACKET_CACHE_RESEND;
}

int media_packet_cache_set_resend_interval(struct media_packet_cache *c, int64_t interval_ms)
{
    if (interval_ms < 0)
        return MEDIA_PACKET_CACHE_ERR_INVALID;
    c->resend_interval_ms = interval_ms;
    return 0;
}

void media_packet_cache_stats(const struct media_packet_cache *c,
                              struct media_packet_cache_stats *out)
{
    *out = c->stats;
}

unsigned media_packet_cache_capacity(const struct media_packet_cache *c)
{
    return c->capacity;
}

size_t media_packet_cache_bytes(const struct media_packet_cache *c)
{
    return c->bytes;
}

int media_rtx_build(const uint8_t *original, size_t len, uint8_t rtx_pt, uint32_t rtx_ssrc,
                    uint16_t rtx_seq, uint8_t *out, size_t cap)
{
    if (rtx_pt > 127)
        return MEDIA_PACKET_CACHE_ERR_INVALID;
    struct media_rtp_view v;
    if (media_rtp_parse(original, len, &v) != 0)
        return MEDIA_PACKET_CACHE_ERR_MALFORMED;
    /* header_len + payload_len <= len, so only the int return needs a bound. */
    if (len > INT_MAX - 2)
        return MEDIA_PACKET_CACHE_ERR_TOO_LONG;
    size_t rtx_len = v.header_len + 2 + v.payload_len;
    if (rtx_len > cap)
        return MEDIA_PACKET_CACHE_ERR_NO_SPACE;

    memcpy(out, original, v.header_len);
    out[0] &= (uint8_t)~0x20; /* P: the original's padding is not carried over */
    /* Each setter only fails under a fixed header, which the parse ruled out. */
    media_rtp_set_payload_type(out, rtx_len, rtx_pt);
    media_rtp_set_seq(out, rtx_len, rtx_seq);
    media_rtp_set_ssrc(out, rtx_len, rtx_ssrc);
    wr16(out + v.header_len, v.seq);
    memcpy(out + v.header_len + 2, v.payload, v.payload_len);
    return (int)rtx_len;
}
