/*
 * packet_cache.c - one outgoing stream's packet history for NACKs, and the
 * RTX builder (see packet_cache.h for the contracts).
 *
 * Runs on the thread that owns the stream (one media worker); the builder on
 * any. Memory is allocated in media_packet_cache_new() and nowhere else:
 * storing copies into a fixed slot, looking up returns a pointer into it.
 */
#include "packet_cache.h"
#include "bytes.h"
#include "rtp.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* One slot's bookkeeping; its bytes are at data + index * MEDIA_PACKET_CACHE_MAX_PACKET. */
struct slot {
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
    int64_t max_age_ms;
    int64_t resend_interval_ms;
    struct media_packet_cache_stats stats;
    /* Kept apart from the packet bytes so that a lookup's check touches one small line. */
    struct slot *slots;
    uint8_t *data;
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

    if (conf.capacity == 0 || conf.capacity > MEDIA_PACKET_CACHE_MAX_CAPACITY ||
        (conf.capacity & (conf.capacity - 1)) != 0 || conf.max_age_ms < 0 ||
        conf.resend_interval_ms < 0)
        goto fail;
    e = MEDIA_PACKET_CACHE_ERR_NO_MEMORY;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->capacity = conf.capacity;
    c->mask = conf.capacity - 1;
    c->max_age_ms = conf.max_age_ms;
    c->resend_interval_ms = conf.resend_interval_ms;
    c->slots = calloc(conf.capacity, sizeof(*c->slots));
    /* At most 65536 * 1500 bytes: no overflow. Only written bytes are ever read. */
    c->data = malloc((size_t)conf.capacity * MEDIA_PACKET_CACHE_MAX_PACKET);
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
    if (c->data) {
        /* Only the bytes ever written can hold media: wipe those, not the untouched rest. */
        for (unsigned i = 0; i < c->capacity; i++) {
            if (c->slots && c->slots[i].len)
                OPENSSL_cleanse(c->data + (size_t)i * MEDIA_PACKET_CACHE_MAX_PACKET,
                                MEDIA_PACKET_CACHE_MAX_PACKET);
        }
    }
    free(c->data);
    free(c->slots);
    free(c);
}

static uint8_t *slot_data(const struct media_packet_cache *c, unsigned index)
{
    return c->data + (size_t)index * MEDIA_PACKET_CACHE_MAX_PACKET;
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
    unsigned index = seq & c->mask;
    memcpy(slot_data(c, index), pkt, len);
    c->slots[index] = (struct slot){
        .stored_ms = now_ms,
        .seq = seq,
        .len = (uint16_t)len,
        .resent = false,
    };
    c->stats.stored++;
    return 0;
}

/* The slot holding `seq` if it is there and at most `max_age_ms` old, else NULL. */
static struct slot *find(const struct media_packet_cache *c, uint16_t seq, int64_t now_ms,
                         int64_t max_age_ms)
{
    struct slot *s = &c->slots[seq & c->mask];
    if (s->len == 0 || s->seq != seq)
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
    return slot_data(c, (unsigned)(s - c->slots));
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
    *pkt = slot_data(c, (unsigned)(s - c->slots));
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
