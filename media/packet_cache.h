/*
 * packet_cache.h - the history of one outgoing RTP stream that answers a
 * browser's generic NACKs (RFC 4585 section 6.2.1), and the builder of the
 * RTX retransmissions (RFC 4588) sent in answer. Private to media/: the
 * relay and the tests include it; nothing outside media/ may.
 *
 * The relay rebuilds every packet it sends to a browser (our SSRC, our
 * sequence numbers, rewritten header extensions) and then protects it with
 * SRTP, so the bytes a NACK asks for exist only for the moment between the
 * two. media_packet_cache_store() keeps a copy of that plaintext; a NACK for
 * the packet then finds it with media_packet_cache_nack(), and the relay
 * sends it again: wrapped by media_rtx_build() when RTX was negotiated for
 * the stream, else as it is (the outbound SRTP session allows the same
 * index twice; see srtp.h).
 *
 * The cache is two rings, both allocated once by media_packet_cache_new():
 * nothing is allocated, locked or logged per packet.
 *  - A table of slots indexed by seq: packet `seq` is named by slot
 *    seq % capacity, which keeps the seq it names, so a slot taken by a later
 *    packet, or never written, answers "not here". The capacity is a power
 *    of two so that seq % capacity stays continuous across the 65535 -> 0
 *    wrap (any other capacity would evict packets early there).
 *  - A ring of bytes (the data arena) holding the packets themselves, each
 *    in one piece, one after the other: a packet that does not fit before
 *    the ring's end starts again at its beginning, and the tail it skipped
 *    stays unused for that lap. Memory is thus paid for the bytes sent, not
 *    for the largest packet in every slot (a 1150-byte video packet in a
 *    1500-byte slot wasted a quarter of the cache).
 * A packet is answered only while both still hold it: its slot names it, and
 * the arena has not moved on by more than its size since the packet was
 * written there (see `bytes` below).
 *
 * Thread: any; a cache belongs to the thread that owns its stream (one media
 * worker). media_rtx_build() is pure and may run anywhere.
 */
#ifndef TABIB_MEDIA_PACKET_CACHE_H
#define TABIB_MEDIA_PACKET_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The largest packet kept: what a browser's datagram can hold. A rebuilt
 * packet can be a little longer (leg.h leaves room for a longer header
 * extension); store refuses it and counts it in `too_long`, and a NACK for it
 * is then missed.
 */
#define MEDIA_PACKET_CACHE_MAX_PACKET 1500

/*
 * Capacity: 256 packets hold about a second of 2 Mbit/s video in 1200-byte
 * packets, the age beyond which a retransmission arrives too late to be
 * played. A slot is 32 bytes of bookkeeping, so slots are cheap: the arena
 * below is what bounds the memory, and it usually evicts first. The maximum
 * is the sequence space itself: with more slots than seqs, some would never
 * be used.
 */
#define MEDIA_PACKET_CACHE_DEFAULT_CAPACITY 256u
#define MEDIA_PACKET_CACHE_MAX_CAPACITY     65536u

/*
 * A packet older than this is not resent: the receiver's jitter buffer has
 * given up on it by then, so resending it would only cost bandwidth.
 */
#define MEDIA_PACKET_CACHE_DEFAULT_MAX_AGE_MS 1000

/*
 * The data arena: 144 KiB, allocated once per cache (one per outgoing video
 * stream), and all of the cache's memory but 32 bytes per slot. It holds the
 * last 0.98 s of 1.2 Mbit/s video (what the load generator sends): about
 * MEDIA_PACKET_CACHE_DEFAULT_MAX_AGE_MS, which would keep nothing older
 * anyway. It is also room for 128 packets of 1150 bytes, the usual video
 * packet, so the relay's 128-slot video caches keep about as many of those as
 * the old layout of a 1500-byte buffer per slot did, in 44 KiB less per leg
 * (the load generator's tabib-echo at 40 units: 247 KiB of RSS per waiting
 * patient, against 289 with the old layout and 263 with a 160 KiB arena).
 * At higher rates it keeps less than the max age: 0.69 s at 1.7 Mbit/s (a
 * browser's ceiling for the 640x480 we ask for), 0.59 s at 2 Mbit/s. That is
 * enough: a resend is only worth sending while the receiver still waits for
 * it. A browser NACKs as soon as the next packet shows the gap, so the
 * request reaches us about one round trip after the loss and its repeat one
 * more round trip later, and a packet answered after the receiver's jitter
 * buffer has given up on it (the reason for the max age) is bandwidth spent
 * for nothing; 0.59 s still covers a request and its repeat over a round
 * trip of nearly 300 ms. The smallest arena holds one packet of the largest
 * size; the largest costs what the old layout, MEDIA_PACKET_CACHE_MAX_CAPACITY
 * slots of MEDIA_PACKET_CACHE_MAX_PACKET bytes, did.
 */
#define MEDIA_PACKET_CACHE_DEFAULT_BYTES ((size_t)144 * 1024)
#define MEDIA_PACKET_CACHE_MIN_BYTES     ((size_t)MEDIA_PACKET_CACHE_MAX_PACKET)
#define MEDIA_PACKET_CACHE_MAX_BYTES                                                               \
    ((size_t)MEDIA_PACKET_CACHE_MAX_CAPACITY * MEDIA_PACKET_CACHE_MAX_PACKET)

/*
 * The same packet is not resent again sooner than this. A browser asks again
 * for a packet still missing after about its estimate of the round trip, and
 * a NACK list often repeats seqs it asked for in the previous one: answering
 * each request would send the packet several times while the first resend is
 * still on its way. About a round trip; on the low side, since an interval
 * longer than the real round trip would ignore a genuine second request after
 * a lost resend.
 */
#define MEDIA_PACKET_CACHE_DEFAULT_RESEND_INTERVAL_MS 50

/* A packet goes out again at most this many times, however often it is NACKed. */
#define MEDIA_PACKET_CACHE_MAX_RESENDS 3

/* Errors: every function here returns 0 (or a length) or one of these. */
enum media_packet_cache_error {
    MEDIA_PACKET_CACHE_ERR_INVALID = -1,   /* a bad argument (see each function) */
    MEDIA_PACKET_CACHE_ERR_TOO_LONG = -2,  /* longer than MEDIA_PACKET_CACHE_MAX_PACKET */
    MEDIA_PACKET_CACHE_ERR_MALFORMED = -3, /* not an RTP packet media_rtp_parse() accepts */
    MEDIA_PACKET_CACHE_ERR_NO_SPACE = -4,  /* the output buffer is too small */
    MEDIA_PACKET_CACHE_ERR_NO_MEMORY = -5, /* allocation failed (creation only) */
};

/* A short English description of a media_packet_cache_error ("unknown error" otherwise). */
const char *media_packet_cache_strerror(int err);

/*
 * How a cache is made. Start from MEDIA_PACKET_CACHE_CONFIG_DEFAULT and
 * change what differs.
 *  - capacity: slots, the most packets kept, a power of two from 1 to
 *    MEDIA_PACKET_CACHE_MAX_CAPACITY. Each costs 32 bytes of bookkeeping.
 *  - bytes: the size of the data arena, from MEDIA_PACKET_CACHE_MIN_BYTES
 *    to MEDIA_PACKET_CACHE_MAX_BYTES; 0 takes MEDIA_PACKET_CACHE_DEFAULT_BYTES
 *    (so a config filled in field by field without it gets the default). A
 *    packet is kept until the arena has advanced `bytes` past its first byte:
 *    its own bytes, the packets written after it and the tails skipped at
 *    the ring's end all count. So every packet whose slot still names it and
 *    which, with all the packets stored after it, adds up to at most
 *    bytes - (MEDIA_PACKET_CACHE_MAX_PACKET - 1) is still there (at most one
 *    tail, shorter than a packet, was skipped since); older ones may not be.
 *  - max_age_ms: media_packet_cache_nack() does not resend packets stored
 *    longer ago than this (>= 0).
 *  - resend_interval_ms: media_packet_cache_nack() does not resend a packet
 *    again sooner than this after its last resend (>= 0; 0 resends on every
 *    request).
 */
struct media_packet_cache_config {
    unsigned capacity;
    size_t bytes;
    int64_t max_age_ms;
    int64_t resend_interval_ms;
};

#define MEDIA_PACKET_CACHE_CONFIG_DEFAULT                                                          \
    ((struct media_packet_cache_config){                                                           \
        .capacity = MEDIA_PACKET_CACHE_DEFAULT_CAPACITY,                                           \
        .bytes = MEDIA_PACKET_CACHE_DEFAULT_BYTES,                                                 \
        .max_age_ms = MEDIA_PACKET_CACHE_DEFAULT_MAX_AGE_MS,                                       \
        .resend_interval_ms = MEDIA_PACKET_CACHE_DEFAULT_RESEND_INTERVAL_MS,                       \
    })

/*
 * What the cache did since it was made. A plain copy (media_packet_cache_
 * stats()); the relay adds these to its counters. For NACKs, nacked ==
 * retransmitted + missed + suppressed.
 */
struct media_packet_cache_stats {
    uint64_t stored;        /* packets stored */
    uint64_t too_long;      /* packets refused by store for their size (not kept) */
    uint64_t nacked;        /* seqs asked for through media_packet_cache_nack() */
    uint64_t retransmitted; /* handed back for resending */
    uint64_t missed;        /* never stored, overwritten since, or older than max_age_ms */
    uint64_t suppressed;    /* in the cache, but resent less than resend_interval_ms ago */
};

struct media_packet_cache;

/*
 * Returns a new, empty cache made as `cfg` says (NULL: the defaults), with
 * all of its memory allocated; free with media_packet_cache_free(). Returns
 * NULL with `*err` (when `err` is not NULL) set to
 * MEDIA_PACKET_CACHE_ERR_INVALID (capacity not a power of two in range,
 * bytes out of range, a negative interval) or MEDIA_PACKET_CACHE_ERR_NO_MEMORY.
 * Allocates the arena (`bytes`), the slots (32 bytes each) and a small header;
 * its pages become resident as packets are written. Borrows `cfg`.
 */
struct media_packet_cache *media_packet_cache_new(const struct media_packet_cache_config *cfg,
                                                  int *err);

/*
 * Frees the cache and wipes the plaintext it held (patients' media should
 * not linger in freed memory). NULL does nothing.
 */
void media_packet_cache_free(struct media_packet_cache *c);

/*
 * Keeps a copy of the packet `pkt`/`len`, sent as `seq` at `now_ms` (a
 * monotonic clock, milliseconds), in slot seq % capacity: whatever was there
 * is forgotten, and the packet has not been resent yet. Its bytes go next in
 * the arena, evicting the oldest packets whose bytes they cover. Store the
 * plaintext exactly as it goes to SRTP, after every rewrite. `seq` must be
 * the packet's own sequence number (a mismatch would resend a packet under
 * the wrong number, so it is refused). Returns 0, MEDIA_PACKET_CACHE_ERR_INVALID
 * (shorter than an RTP header, or `seq` is not the packet's) or
 * MEDIA_PACKET_CACHE_ERR_TOO_LONG (counted in `too_long`); on error the
 * cache is unchanged. Borrows `pkt` (copied).
 */
int media_packet_cache_store(struct media_packet_cache *c, const uint8_t *pkt, size_t len,
                             uint16_t seq, int64_t now_ms);

/*
 * The stored packet `seq` if it is in the cache and was stored at most
 * `max_age_ms` before `now_ms`, with its length in `*len`; NULL otherwise
 * (never stored, its slot taken by a later packet, its bytes reached by the
 * arena since, or too old). Changes nothing and counts nothing:
 * media_packet_cache_nack() is the NACK path.
 *
 * Borrows: the pointer is into the cache, valid until the next store or
 * free. Copy the packet out before protecting it; SRTP works in place.
 *
 * The age check also keeps out a packet exactly 65536 seqs older that was
 * never overwritten (possible when the outgoing stream has gaps): at any
 * real packet rate it is far older than any useful max_age_ms.
 */
const uint8_t *media_packet_cache_lookup(const struct media_packet_cache *c, uint16_t seq,
                                         int64_t now_ms, int64_t max_age_ms, size_t *len);

/* What media_packet_cache_nack() decided for one NACKed seq; each has a counter name. */
enum media_packet_cache_verdict {
    MEDIA_PACKET_CACHE_RESEND = 0, /* here it is: resend it (as RTX or as is) */
    MEDIA_PACKET_CACHE_MISSED,     /* not in the cache, or too old: nothing to send */
    MEDIA_PACKET_CACHE_SUPPRESSED, /* resent too recently: ignore this request */
    MEDIA_PACKET_CACHE_VERDICT_COUNT,
};

/* The counter name of a verdict ("retransmitted", "missed", "suppressed"). */
const char *media_packet_cache_verdict_name(enum media_packet_cache_verdict v);

/*
 * Answers a request for `seq` (one seq of media_rtcp_nack_expand()) at
 * `now_ms`: MEDIA_PACKET_CACHE_RESEND with the packet in `*pkt`/`*len` (as
 * media_packet_cache_lookup() with the configured max_age_ms) when it is in
 * the cache and was not resent in the last resend_interval_ms; the packet is
 * then marked resent at `now_ms`. Otherwise MISSED or SUPPRESSED, and
 * `*pkt`/`*len` are left alone. Counts `nacked` and the verdict. A RESEND is
 * counted as retransmitted when handed back, so the caller should not fail
 * to send it except for want of a socket.
 *
 * Borrows, as for media_packet_cache_lookup(): copy before protecting.
 */
enum media_packet_cache_verdict media_packet_cache_nack(struct media_packet_cache *c, uint16_t seq,
                                                        int64_t now_ms, const uint8_t **pkt,
                                                        size_t *len);

/*
 * Changes the resend interval (>= 0), for a relay that measures the round
 * trip to the browser (RTCP receiver reports) and wants the interval to
 * follow it. Returns 0 or MEDIA_PACKET_CACHE_ERR_INVALID.
 */
int media_packet_cache_set_resend_interval(struct media_packet_cache *c, int64_t interval_ms);

/* Copies the counts into `out`. */
void media_packet_cache_stats(const struct media_packet_cache *c,
                              struct media_packet_cache_stats *out);

/* The number of slots (the configured capacity). */
unsigned media_packet_cache_capacity(const struct media_packet_cache *c);

/* The size of the data arena in bytes (the configured bytes, or the default for 0). */
size_t media_packet_cache_bytes(const struct media_packet_cache *c);

/*
 * Writes into `out` (`cap` bytes) the RTX packet (RFC 4588 section 4) that
 * retransmits `original`/`len`: the original header with its CSRCs, header
 * extension and marker bit as they are, but payload type `rtx_pt` (0..127:
 * the "rtx" type whose apt= is the original's), SSRC `rtx_ssrc` and sequence number
 * `rtx_seq` (the RTX stream's own, which the caller counts up from a random
 * start); then the payload: the original sequence number (OSN, 2 bytes) and
 * the original payload. The timestamp stays the original's. The original's
 * padding is dropped and the P bit cleared: padding belongs to the packet it
 * padded, and the RTX payload must end with the media.
 *
 * The extension is copied as is: a caller that numbers transport-wide-cc per
 * packet sent must renumber the RTX afterwards (media_rtp_set_twcc_seq() on
 * `out`), since it is a new packet on the transport.
 *
 * Returns the RTX length (the original's header + 2 + payload, at most the
 * original's length + 2), MEDIA_PACKET_CACHE_ERR_MALFORMED (the original
 * does not parse), MEDIA_PACKET_CACHE_ERR_INVALID (rtx_pt over 127),
 * MEDIA_PACKET_CACHE_ERR_TOO_LONG (a length an int cannot return) or
 * MEDIA_PACKET_CACHE_ERR_NO_SPACE (`out` is written only when everything
 * fits). Leave room after it in `out` for SRTP's tag. Borrows both buffers,
 * which must not overlap.
 */
int media_rtx_build(const uint8_t *original, size_t len, uint8_t rtx_pt, uint32_t rtx_ssrc,
                    uint16_t rtx_seq, uint8_t *out, size_t cap);

#endif
