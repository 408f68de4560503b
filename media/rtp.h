/*
 * rtp.h - the RTP packet codec (RFC 3550), header extensions (RFC 8285),
 * rtcp-mux demultiplexing (RFC 5761), in-place header rewriting and the
 * per-stream rewriter that keeps an outgoing stream continuous when the relay
 * switches sources ("call next patient"). Private to media/: the worker, the
 * relay and the tests include it; nothing outside media/ may.
 *
 * Pure protocol code: no sockets, no logging, no allocation. A parsed view
 * points into the caller's packet (nothing is copied); writers change the
 * caller's packet in place and never move bytes. Errors are negative codes
 * (enum media_rtp_error); the rewriter's verdicts are an enum with counter
 * names.
 *
 * Thread: any; a struct media_rtp_rewriter belongs to the thread that owns
 * its stream (one media worker).
 */
#ifndef TABIB_MEDIA_RTP_H
#define TABIB_MEDIA_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEDIA_RTP_HEADER_SIZE 12 /* the fixed header, without CSRCs or extension */
#define MEDIA_RTP_VERSION     2

/* Header extension profiles (RFC 8285 section 4). */
#define MEDIA_RTP_EXT_ONE_BYTE      0xBEDE
#define MEDIA_RTP_EXT_TWO_BYTE      0x1000 /* the top 12 bits; the low 4 are "appbits" */
#define MEDIA_RTP_EXT_TWO_BYTE_MASK 0xFFF0

/* Errors: every function here returns 0 (or a count) or one of these. */
enum media_rtp_error {
    MEDIA_RTP_ERR_TRUNCATED = -1, /* shorter than its header, CSRCs or extension say */
    MEDIA_RTP_ERR_VERSION = -2,   /* version is not 2 */
    MEDIA_RTP_ERR_PADDING = -3,   /* padding count 0 or larger than what follows the header */
    MEDIA_RTP_ERR_EXTENSION = -4, /* an extension element overruns the extension block */
    MEDIA_RTP_ERR_NOT_FOUND = -5, /* no extension element with that id */
    MEDIA_RTP_ERR_SIZE = -6,      /* an extension element has the wrong size for its value */
};

/* A short English description of a media_rtp_error ("unknown error" otherwise). */
const char *media_rtp_strerror(int err);

/* ------------------------------------------------------------------------- */
/* Demultiplexing (rtcp-mux)                                                  */
/* ------------------------------------------------------------------------- */

enum media_rtp_kind {
    MEDIA_RTP_KIND_INVALID = 0, /* under 2 bytes, or version not 2 */
    MEDIA_RTP_KIND_RTP,
    MEDIA_RTP_KIND_RTCP,
};

/*
 * Tells RTP from RTCP on a muxed port (RFC 5761 section 4): the second byte
 * with the marker bit masked off is 64..95 for RTCP (packet types 192..223),
 * which is why those RTP payload types must never be negotiated. Looks at
 * the first two bytes only; it says nothing of the rest. Borrows `data`.
 */
enum media_rtp_kind media_rtp_demux(const uint8_t *data, size_t len);

/* ------------------------------------------------------------------------- */
/* Parsing                                                                    */
/* ------------------------------------------------------------------------- */

/*
 * A parsed RTP packet: a view into the buffer it was parsed from, valid as
 * long as that buffer is unchanged. header_len + payload_len + padding_len
 * == len always.
 */
struct media_rtp_view {
    const uint8_t *data; /* the whole packet */
    size_t len;
    bool padding;
    bool extension;
    bool marker;
    uint8_t csrc_count; /* 0..15 */
    uint8_t payload_type;
    uint16_t seq;
    uint32_t timestamp;
    uint32_t ssrc;
    const uint8_t *csrc; /* csrc_count big-endian 32-bit CSRCs */

    /* The header extension when `extension`: its profile and its body (without the 4-byte head). */
    uint16_t ext_profile;
    const uint8_t *ext;
    size_t ext_len; /* a multiple of 4 */

    size_t header_len; /* fixed header, CSRCs and extension */
    const uint8_t *payload;
    size_t payload_len;
    size_t padding_len; /* the trailing padding count byte's value, or 0 */
};

/*
 * Parses `data`/`len` as one RTP packet into `out`: version 2, the CSRC list
 * and the extension block inside the packet, padding (when the P bit is set,
 * the last byte counts the padding including itself: it must be at least 1
 * and leave the header whole). The extension's elements are not walked here
 * (see media_rtp_ext_next). The payload type is not checked against the RTCP
 * range: demultiplex first. Returns 0, MEDIA_RTP_ERR_TRUNCATED,
 * MEDIA_RTP_ERR_VERSION or MEDIA_RTP_ERR_PADDING; on error `out` holds
 * nothing useful. Borrows `data`: `out` points into it.
 */
int media_rtp_parse(const uint8_t *data, size_t len, struct media_rtp_view *out);

/* ------------------------------------------------------------------------- */
/* Header extensions (RFC 8285)                                               */
/* ------------------------------------------------------------------------- */

/* One extension element: its id and value, inside the packet. */
struct media_rtp_ext {
    uint8_t id;          /* 1..14 in the one-byte form, 1..255 in the two-byte form */
    const uint8_t *data; /* the value */
    size_t len;          /* 1..16 (one-byte form), 0..255 (two-byte form) */
};

/* A walk over the elements of one packet's extension block. */
struct media_rtp_ext_iter {
    const uint8_t *p;
    const uint8_t *end;
    bool two_byte;
    bool done;
};

/*
 * Starts a walk over `view`'s extension elements. A packet without an
 * extension, or with a profile other than the one-byte (0xBEDE) and
 * two-byte (0x100X) forms, yields no element. Borrows `view`'s packet.
 */
void media_rtp_ext_iter_init(struct media_rtp_ext_iter *it, const struct media_rtp_view *view);

/*
 * The next element into `out`: returns 1, 0 at the end (bytes with id 0
 * are padding and skipped; in the one-byte form id 15 ends the walk), or
 * MEDIA_RTP_ERR_EXTENSION when an element overruns the block (the walk then
 * stays ended).
 */
int media_rtp_ext_next(struct media_rtp_ext_iter *it, struct media_rtp_ext *out);

/*
 * Finds the first element with `id` (as negotiated by a=extmap) into `out`.
 * Returns 0, MEDIA_RTP_ERR_NOT_FOUND (also for id 0), or
 * MEDIA_RTP_ERR_EXTENSION when the walk meets a malformed element first.
 */
int media_rtp_ext_find(const struct media_rtp_view *view, uint8_t id, struct media_rtp_ext *out);

/*
 * Values of the extensions a relay reads. Each checks the element's size and
 * returns 0 or MEDIA_RTP_ERR_SIZE.
 *  - abs-send-time: 24 bits, 6.18 fixed-point seconds (3 bytes).
 *  - transport-wide-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01):
 *    a 16-bit transport sequence number (2 bytes).
 *  - ssrc-audio-level (RFC 6464): the V (voice activity) bit and the level
 *    in -dBov, 0..127 (1 byte; a longer element is accepted, as some senders
 *    pad it).
 *  - mid (RFC 8843): a string of 1..255 bytes, not NUL-terminated; `*mid`
 *    points into the packet.
 */
int media_rtp_ext_abs_send_time(const struct media_rtp_ext *ext, uint32_t *out);
int media_rtp_ext_twcc_seq(const struct media_rtp_ext *ext, uint16_t *out);
int media_rtp_ext_audio_level(const struct media_rtp_ext *ext, bool *voice, uint8_t *level);
int media_rtp_ext_mid(const struct media_rtp_ext *ext, const char **mid, size_t *len);

/* ------------------------------------------------------------------------- */
/* Rewriting in place                                                         */
/* ------------------------------------------------------------------------- */

/*
 * Each writes one field of the packet `data`/`len` in place and returns 0,
 * or MEDIA_RTP_ERR_TRUNCATED when `len` is under the fixed header. They do
 * not validate the rest of the packet: parse it first. set_payload_type keeps
 * the marker bit (`pt` is masked to 7 bits).
 */
int media_rtp_set_ssrc(uint8_t *data, size_t len, uint32_t ssrc);
int media_rtp_set_seq(uint8_t *data, size_t len, uint16_t seq);
int media_rtp_set_timestamp(uint8_t *data, size_t len, uint32_t ts);
int media_rtp_set_payload_type(uint8_t *data, size_t len, uint8_t pt);

/*
 * Writes `seq` into the packet's existing transport-wide-cc element `id`
 * (the relay numbers each outgoing packet of a transport afresh). Parses the
 * packet first. Returns 0, a parse error, MEDIA_RTP_ERR_NOT_FOUND,
 * MEDIA_RTP_ERR_EXTENSION or MEDIA_RTP_ERR_SIZE (the element is not 2 bytes).
 */
int media_rtp_set_twcc_seq(uint8_t *data, size_t len, uint8_t id, uint16_t seq);

/* ------------------------------------------------------------------------- */
/* The stream rewriter                                                        */
/* ------------------------------------------------------------------------- */

/*
 * What the rewriter did with one packet; each has a counter name.
 */
enum media_rtp_rewrite {
    MEDIA_RTP_REWRITE_OK = 0,   /* rewritten: forward it */
    MEDIA_RTP_REWRITE_SWITCHED, /* the first packet of a new source, rewritten: forward it
                                   (and ask that source for a key frame) */
    MEDIA_RTP_REWRITE_STALE,    /* older than the first packet taken from this source: drop,
                                   its outgoing numbers would collide with the previous source */
    MEDIA_RTP_REWRITE_INVALID,  /* shorter than an RTP header: drop */
    MEDIA_RTP_REWRITE_COUNT,
};

/* The counter name of a rewrite verdict ("ok", "switched", "stale", "invalid"). */
const char *media_rtp_rewrite_name(enum media_rtp_rewrite r);

/*
 * One outgoing stream's numbering. A small value type with no resources
 * (embed it in the stream); its fields are private: use the functions.
 *
 * Outgoing seq = incoming seq + seq_delta (mod 2^16) and outgoing ts =
 * incoming ts + ts_delta (mod 2^32), with the deltas fixed while a source
 * lasts, so losses stay gaps and reordering stays reordering. When the source
 * changes (another SSRC arrives, or media_rtp_rewriter_switch() was called),
 * the deltas are chosen afresh: the new source's first packet goes out as the
 * highest outgoing seq so far + 1, and with the timestamp of that highest
 * packet plus the wall-clock time since it went out, converted to the clock
 * rate (at least 1 tick, so a frame never shares a timestamp with the
 * previous source's last one).
 *
 * Wrap-around: all seq and ts arithmetic is modular, so wraps of either
 * counter, incoming or outgoing, need no special case. Only ordering needs
 * care: incoming seqs of the current source are extended to 64 bits (each
 * new seq is placed within +-2^15 of the highest seen, RFC 3550 appendix
 * A.1), which tells a late packet from before the source's first one (stale)
 * from a packet after a wrap. The highest outgoing packet is the one with
 * the highest extended incoming seq of its source.
 */
struct media_rtp_rewriter {
    uint32_t out_ssrc;
    uint16_t init_seq;
    uint32_t init_ts;
    bool started;    /* a packet has gone out */
    bool has_source; /* src_* describe the current source */
    uint32_t src_ssrc;
    int64_t src_first; /* extended incoming seq of the source's first packet */
    int64_t src_highest;
    uint16_t seq_delta;
    uint32_t ts_delta;
    uint16_t last_seq; /* the highest outgoing packet: seq, ts, when it went out */
    uint32_t last_ts;
    uint64_t last_us;
};

/*
 * Sets up a rewriter whose stream goes out as `out_ssrc`, its first packet
 * numbered `first_seq` and stamped `first_ts` (RFC 3550 wants both random).
 */
void media_rtp_rewriter_init(struct media_rtp_rewriter *rw, uint32_t out_ssrc, uint16_t first_seq,
                             uint32_t first_ts);

/*
 * Makes the next packet start a new source even if its SSRC is the one
 * already seen (a source that was replaced by a new participant reusing an
 * SSRC, or a sender that restarted its numbering).
 */
void media_rtp_rewriter_switch(struct media_rtp_rewriter *rw);

/*
 * The numbers for one incoming packet (`ssrc`, `seq`, `ts`) arriving at
 * `now_us` (a monotonic clock, microseconds) on a stream with clock rate
 * `clock_rate` Hz (used only on a source switch). Sets `*out_seq` and
 * `*out_ts` unless the verdict is MEDIA_RTP_REWRITE_STALE.
 */
enum media_rtp_rewrite media_rtp_rewriter_map(struct media_rtp_rewriter *rw, uint32_t ssrc,
                                              uint16_t seq, uint32_t ts, uint64_t now_us,
                                              uint32_t clock_rate, uint16_t *out_seq,
                                              uint32_t *out_ts);

/*
 * The outgoing timestamp of the incoming timestamp `ts` of source `ssrc`,
 * for the sender reports relayed on the source's behalf: true with
 * `*out_ts` set when `ssrc` is the current source, false otherwise (no
 * packet of it went out yet, or another source took over). Changes nothing.
 */
bool media_rtp_rewriter_timestamp(const struct media_rtp_rewriter *rw, uint32_t ssrc, uint32_t ts,
                                  uint32_t *out_ts);

/*
 * The reverse of the numbering, for a NACK the server cannot answer itself:
 * which packet of the current source went out as `out_seq`. True with
 * `*ssrc` and `*in_seq` set; false when no source was relayed yet.
 */
bool media_rtp_rewriter_source_seq(const struct media_rtp_rewriter *rw, uint16_t out_seq,
                                   uint32_t *ssrc, uint16_t *in_seq);

/*
 * media_rtp_rewriter_map() on the packet `data`/`len` itself: reads its
 * SSRC, seq and timestamp and, unless the verdict is to drop, writes the
 * outgoing SSRC, seq and timestamp in place. The caller has parsed it.
 */
enum media_rtp_rewrite media_rtp_rewriter_rewrite(struct media_rtp_rewriter *rw, uint8_t *data,
                                                  size_t len, uint64_t now_us, uint32_t clock_rate);

#endif
