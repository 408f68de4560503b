/*
 * rtcp.h - the RTCP codec: compound packets (RFC 3550), sender and receiver
 * reports, BYE, transport and payload-specific feedback (RFC 4585): generic
 * NACK, PLI, FIR (RFC 5104), REMB (draft-alvestrand-rmcat-remb) and
 * transport-wide congestion control feedback
 * (draft-holmer-rmcat-transport-wide-cc-extensions-01); builders for what
 * the relay sends, and in-place SSRC rewriting for what it forwards. Private
 * to media/: the worker, the relay and the tests include it.
 *
 * Pure protocol code: no sockets, no logging, no allocation. Views point
 * into the caller's packet; parsed lists go into fixed arrays in the view or
 * into the caller's bounded array; builders write into a caller's buffer and
 * return the length. Errors are negative codes (enum media_rtcp_error).
 *
 * Thread: any.
 */
#ifndef TABIB_MEDIA_RTCP_H
#define TABIB_MEDIA_RTCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEDIA_RTCP_HEADER_SIZE 4
#define MEDIA_RTCP_MAX_COUNT   31 /* the 5-bit count field */
#define MEDIA_RTCP_MAX_REMB    255

/* Packet types (RFC 3550, RFC 4585). */
enum media_rtcp_type {
    MEDIA_RTCP_SR = 200,
    MEDIA_RTCP_RR = 201,
    MEDIA_RTCP_SDES = 202,
    MEDIA_RTCP_BYE = 203,
    MEDIA_RTCP_APP = 204,
    MEDIA_RTCP_RTPFB = 205,
    MEDIA_RTCP_PSFB = 206,
};

/* Feedback message types (FMT, in the count field). */
#define MEDIA_RTCP_RTPFB_NACK 1  /* RFC 4585 generic NACK */
#define MEDIA_RTCP_RTPFB_TWCC 15 /* transport-wide congestion control */
#define MEDIA_RTCP_PSFB_PLI   1  /* RFC 4585 picture loss indication */
#define MEDIA_RTCP_PSFB_FIR   4  /* RFC 5104 full intra request */
#define MEDIA_RTCP_PSFB_AFB   15 /* application layer feedback: REMB */

/* Errors: every function here returns 0 (or a count or length) or one of these. */
enum media_rtcp_error {
    MEDIA_RTCP_ERR_TRUNCATED = -1, /* under 4 bytes, or the length field overruns the buffer */
    MEDIA_RTCP_ERR_VERSION = -2,   /* version is not 2 */
    MEDIA_RTCP_ERR_PADDING = -3,   /* padding count 0, or bigger than the packet's body */
    MEDIA_RTCP_ERR_MALFORMED = -4, /* the body is too short or inconsistent for its type */
    MEDIA_RTCP_ERR_TYPE = -5,      /* not the packet type (or FMT) this function reads */
    MEDIA_RTCP_ERR_NO_SPACE = -6,  /* the output buffer is too small */
    MEDIA_RTCP_ERR_INVALID = -7,   /* a bad argument (too many blocks, no seqs...) */
};

/* A short English description of a media_rtcp_error ("unknown error" otherwise). */
const char *media_rtcp_strerror(int err);

/* ------------------------------------------------------------------------- */
/* Compound packets                                                           */
/* ------------------------------------------------------------------------- */

/* One RTCP packet of a compound, as a view into it. */
struct media_rtcp_pkt {
    const uint8_t *data; /* the packet from its header, padding included */
    size_t len;          /* 4 * (length field + 1) */
    size_t offset;       /* of `data` in the compound */
    uint8_t count;       /* reception report count, source count or FMT (5 bits) */
    uint8_t type;        /* enum media_rtcp_type, or another value */
    bool padding;
    const uint8_t *body; /* after the 4-byte header */
    size_t body_len;     /* without padding */
};

/* A walk over a compound packet. */
struct media_rtcp_iter {
    const uint8_t *data;
    size_t len;
    size_t pos;
    int err; /* the first error met: the walk stops there */
};

/* Starts a walk over the compound `data`/`len`. Borrows `data`. */
void media_rtcp_iter_init(struct media_rtcp_iter *it, const uint8_t *data, size_t len);

/*
 * The next packet into `out`. Checks version 2, a length inside what is left
 * and, with the P bit, a padding count (the packet's last byte) from 1 to
 * the body's length. Padding is accepted on any packet of the compound (RFC
 * 3550 allows it only on the last, but it is harmless to skip elsewhere).
 * The type is not checked: unknown types are yielded for the caller to skip.
 * Returns 1, 0 at the end, or a negative error (TRUNCATED, VERSION,
 * PADDING), after which the walk returns that error again: what came before
 * stays valid, nothing after it is read.
 */
int media_rtcp_next(struct media_rtcp_iter *it, struct media_rtcp_pkt *out);

/* ------------------------------------------------------------------------- */
/* Sender and receiver reports, BYE                                           */
/* ------------------------------------------------------------------------- */

/* A reception report block (RFC 3550 section 6.4.1). */
struct media_rtcp_report_block {
    uint32_t ssrc;           /* the source it reports on */
    uint8_t fraction_lost;   /* 8-bit fixed point */
    int32_t cumulative_lost; /* 24-bit signed */
    uint32_t highest_seq;    /* extended highest sequence number received */
    uint32_t jitter;         /* interarrival jitter, timestamp units */
    uint32_t last_sr;        /* LSR: middle 32 bits of the last SR's NTP time */
    uint32_t delay_since_sr; /* DLSR: 1/65536 s */
};

/* An SR or RR. */
struct media_rtcp_report {
    uint32_t ssrc; /* the sender of the report */
    bool has_sender_info;
    uint64_t ntp;     /* SR only: NTP timestamp */
    uint32_t rtp_ts;  /* SR only */
    uint32_t packets; /* SR only: sender's packet count */
    uint32_t octets;  /* SR only: sender's octet count */
    unsigned block_count;
    struct media_rtcp_report_block blocks[MEDIA_RTCP_MAX_COUNT];
};

/*
 * Parses an SR or RR. The body must hold the sender info (SR) and `count`
 * report blocks; anything after them (profile-specific extensions) is
 * ignored. Returns 0, MEDIA_RTCP_ERR_TYPE or MEDIA_RTCP_ERR_MALFORMED.
 */
int media_rtcp_parse_report(const struct media_rtcp_pkt *pkt, struct media_rtcp_report *out);

/*
 * Round-trip time from a receiver's report (RFC 3550 section 6.4.1): the
 * sender remembers when it sent each SR, keyed by the SR's compact NTP time
 * (the middle 32 bits, which the receiver echoes as LSR); a report block
 * then gives round trip = arrival - sent(LSR) - DLSR. Keyed by LSR rather
 * than computed as now_ntp - LSR - DLSR because a relay re-issues SRs with
 * the source's NTP time (lip sync needs it), which is another machine's
 * clock: only our own send and arrival times can be subtracted. A plain
 * value (embed it, zeroed); the last MEDIA_RTCP_SR_HISTORY SRs are kept.
 */
#define MEDIA_RTCP_SR_HISTORY 8

struct media_rtcp_sr_history {
    uint32_t lsr[MEDIA_RTCP_SR_HISTORY];     /* compact NTP time of each SR sent */
    uint64_t sent_us[MEDIA_RTCP_SR_HISTORY]; /* when it went out; 0 = empty slot */
    unsigned next;
};

/* Notes that an SR with NTP time `ntp` (64-bit) went out at `sent_us` (any clock, > 0). */
void media_rtcp_sr_sent(struct media_rtcp_sr_history *h, uint64_t ntp, uint64_t sent_us);

/*
 * The round trip, in microseconds, of a report block's LSR/DLSR that arrived
 * at `arrival_us` (the clock of media_rtcp_sr_sent()), or -1 when it cannot
 * be told: LSR 0 (the receiver had no SR yet), an LSR not among the SRs
 * remembered, or a result more than 1 ms below zero (a clock step, or a
 * report that lies). Slightly negative results (DLSR is rounded to 1/65536
 * s) are 0. Pure.
 */
int64_t media_rtcp_round_trip_us(const struct media_rtcp_sr_history *h, uint32_t lsr, uint32_t dlsr,
                                 uint64_t arrival_us);

/* A BYE: the sources leaving and an optional reason (not NUL-terminated, into the packet). */
struct media_rtcp_bye {
    unsigned count;
    uint32_t ssrcs[MEDIA_RTCP_MAX_COUNT];
    const char *reason; /* NULL when absent */
    size_t reason_len;
};

/* Parses a BYE. Returns 0, MEDIA_RTCP_ERR_TYPE or MEDIA_RTCP_ERR_MALFORMED. */
int media_rtcp_parse_bye(const struct media_rtcp_pkt *pkt, struct media_rtcp_bye *out);

/* ------------------------------------------------------------------------- */
/* Feedback (RFC 4585)                                                        */
/* ------------------------------------------------------------------------- */

/* The common part of an RTPFB or PSFB message. */
struct media_rtcp_fb {
    uint8_t type; /* MEDIA_RTCP_RTPFB or MEDIA_RTCP_PSFB */
    uint8_t fmt;
    uint32_t sender_ssrc;
    uint32_t media_ssrc;
    const uint8_t *fci; /* feedback control information, into the packet */
    size_t fci_len;
};

/*
 * Parses the common part of RTPFB and PSFB messages (the body must hold the
 * two SSRCs). Returns 0, MEDIA_RTCP_ERR_TYPE or MEDIA_RTCP_ERR_MALFORMED.
 */
int media_rtcp_parse_fb(const struct media_rtcp_pkt *pkt, struct media_rtcp_fb *out);

/*
 * Expands a generic NACK's FCI entries (PID and the 16-bit BLP that follows
 * it) into the sequence numbers they report lost, in FCI order: PID first,
 * then PID + 1 + i for each bit i set in BLP (modulo 2^16). Writes the first
 * `cap` into `seqs` (which may be NULL when cap is 0) and returns how many
 * there are in all (at most 17 per entry), so a return above `cap` means
 * `seqs` holds only part. Returns MEDIA_RTCP_ERR_TYPE if `fb` is not a
 * generic NACK, MEDIA_RTCP_ERR_MALFORMED if the FCI is empty or not a
 * multiple of 4.
 */
int media_rtcp_nack_expand(const struct media_rtcp_fb *fb, uint16_t *seqs, size_t cap);

/* One FIR entry (RFC 5104 section 4.3.1). */
struct media_rtcp_fir_entry {
    uint32_t ssrc; /* the source asked for a key frame */
    uint8_t seq;   /* command sequence number: a repeat has the same one */
};

/*
 * The number of FIR entries, or MEDIA_RTCP_ERR_TYPE / _MALFORMED (empty or
 * not a multiple of 8). media_rtcp_fir_entry() reads entry `i` (< that count).
 */
int media_rtcp_fir_count(const struct media_rtcp_fb *fb);
void media_rtcp_fir_entry(const struct media_rtcp_fb *fb, unsigned i,
                          struct media_rtcp_fir_entry *out);

/* A receiver estimated maximum bitrate. */
struct media_rtcp_remb {
    uint64_t bitrate; /* bits per second: mantissa << exponent, saturated at UINT64_MAX */
    unsigned ssrc_count;
    uint32_t ssrcs[MEDIA_RTCP_MAX_REMB];
};

/*
 * Parses a REMB (a PSFB AFB whose FCI starts "REMB"). Returns 0,
 * MEDIA_RTCP_ERR_TYPE (not PSFB fmt 15, or another AFB) or
 * MEDIA_RTCP_ERR_MALFORMED (fewer SSRCs than announced).
 */
int media_rtcp_parse_remb(const struct media_rtcp_fb *fb, struct media_rtcp_remb *out);

/* Transport-wide congestion control feedback: its header, checked whole. */
struct media_rtcp_twcc {
    uint16_t base_seq;
    uint16_t status_count;   /* packets reported, from base_seq on */
    int32_t reference_time;  /* 24-bit signed, multiples of 64 ms */
    uint8_t fb_count;        /* feedback packet count, for the sender to spot lost feedback */
    unsigned received_count; /* packets reported received (each has a delta) */
    const uint8_t *chunks;   /* packet status chunks, into the packet */
    size_t chunks_len;
    const uint8_t *deltas; /* receive deltas, into the packet */
    size_t deltas_len;
};

/* Packet statuses of transport-wide feedback. */
enum media_rtcp_twcc_status {
    MEDIA_RTCP_TWCC_NOT_RECEIVED = 0,
    MEDIA_RTCP_TWCC_SMALL_DELTA = 1, /* received, delta 0..63.75 ms in one byte */
    MEDIA_RTCP_TWCC_LARGE_DELTA = 2, /* received, signed delta in two bytes */
};

/* One reported packet. */
struct media_rtcp_twcc_packet {
    uint16_t seq;
    uint8_t status;      /* enum media_rtcp_twcc_status */
    int32_t delta_250us; /* receive delta in 250 us units; 0 when not received */
};

/*
 * Parses transport-wide feedback and walks all its status chunks (run-length
 * and one- and two-bit status vectors) to check that they cover
 * status_count packets, use no reserved symbol, and that the receive deltas
 * they call for are in the FCI. Returns 0, MEDIA_RTCP_ERR_TYPE or
 * MEDIA_RTCP_ERR_MALFORMED.
 */
int media_rtcp_parse_twcc(const struct media_rtcp_fb *fb, struct media_rtcp_twcc *out);

/*
 * Decodes the packets of a parsed feedback in order: writes the first `cap`
 * into `out` (NULL when cap is 0) and returns status_count. Borrows `twcc`
 * and the packet it points into.
 */
int media_rtcp_twcc_packets(const struct media_rtcp_twcc *twcc, struct media_rtcp_twcc_packet *out,
                            size_t cap);

/* ------------------------------------------------------------------------- */
/* Transport-wide feedback: the receiver's side                               */
/* ------------------------------------------------------------------------- */

/*
 * What a receiver remembers between two feedbacks to one sender: the arrival
 * time of each transport-wide sequence number it saw, for up to
 * MEDIA_TWCC_WINDOW packets. A plain value (embed it); fields are private.
 * The sender's bandwidth estimate is built on these reports, so they must
 * cover every packet that carried a number: media, retransmissions and
 * padding probes alike.
 */
#define MEDIA_TWCC_WINDOW 512

struct media_twcc_recorder {
    bool started;
    int64_t next_seq;    /* extended number of the first packet not yet reported */
    int64_t highest_seq; /* extended highest number recorded */
    uint8_t fb_count;
    uint64_t arrival_us[MEDIA_TWCC_WINDOW]; /* by number mod window; 0 = not received */
};

/* Records that packet `seq` arrived at `arrival_us` (a monotonic clock, microseconds). */
void media_twcc_record(struct media_twcc_recorder *r, uint16_t seq, uint64_t arrival_us);

/* Whether packets were recorded since the last feedback. */
bool media_twcc_pending(const struct media_twcc_recorder *r);

/*
 * Writes one transport-wide feedback packet (RTPFB, FMT 15) reporting what
 * was recorded since the last one: run-length status chunks and receive
 * deltas in 250 us units (one byte when 0..63.75 ms, else two), the
 * reference time of the first packet received, and the feedback count. If
 * not everything fits in `cap`, or a delta does not fit its 16 bits, the
 * rest is left for the next call. Returns the length written, 0 when
 * nothing is pending, or MEDIA_RTCP_ERR_NO_SPACE.
 */
int media_rtcp_build_twcc(struct media_twcc_recorder *r, uint32_t sender_ssrc, uint32_t media_ssrc,
                          uint8_t *buf, size_t cap);

/* ------------------------------------------------------------------------- */
/* Building                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * Each writes one RTCP packet into `buf` (at most `cap` bytes) and returns
 * its length, MEDIA_RTCP_ERR_NO_SPACE or MEDIA_RTCP_ERR_INVALID. Concatenate
 * them to make a compound.
 *  - RR from `sender_ssrc` with `n` (0..31) report blocks.
 *  - PLI from `sender_ssrc` about `media_ssrc`.
 *  - FIR from `sender_ssrc` with `n` (1..) entries (the media SSRC field is
 *    0, as RFC 5104 says).
 *  - generic NACK about `media_ssrc` reporting the `n` (1..) seqs lost: each
 *    FCI entry takes a seq and the 16 after it that are in the list, so a
 *    sorted list packs best, but any order is reported whole.
 *  - REMB of `bitrate` bits per second over `n` (0..255) SSRCs; bitrates
 *    that need more than 18 bits of mantissa are rounded down.
 */
int media_rtcp_build_rr(uint32_t sender_ssrc, const struct media_rtcp_report_block *blocks,
                        unsigned n, uint8_t *buf, size_t cap);
int media_rtcp_build_pli(uint32_t sender_ssrc, uint32_t media_ssrc, uint8_t *buf, size_t cap);
int media_rtcp_build_fir(uint32_t sender_ssrc, const struct media_rtcp_fir_entry *entries,
                         unsigned n, uint8_t *buf, size_t cap);
int media_rtcp_build_nack(uint32_t sender_ssrc, uint32_t media_ssrc, const uint16_t *seqs, size_t n,
                          uint8_t *buf, size_t cap);
int media_rtcp_build_remb(uint32_t sender_ssrc, uint64_t bitrate, const uint32_t *ssrcs, unsigned n,
                          uint8_t *buf, size_t cap);

/* ------------------------------------------------------------------------- */
/* Rewriting SSRCs in place (the relay)                                       */
/* ------------------------------------------------------------------------- */

/*
 * Both take a packet `pkt` that media_rtcp_next() found in the compound
 * `compound` (the same bytes, writable) and change it in place.
 *
 * media_rtcp_set_sender_ssrc() writes the packet's own SSRC (the first word
 * of SR, RR, APP, RTPFB and PSFB). Returns 0, MEDIA_RTCP_ERR_TYPE or
 * MEDIA_RTCP_ERR_MALFORMED (a body under 4 bytes).
 *
 * media_rtcp_map_media_ssrc() replaces the media source `from` with `to`
 * everywhere a packet names one: SR/RR report blocks, the media SSRC of
 * RTPFB and PSFB, FIR entries, REMB's SSRC list. Returns how many it
 * replaced (0 for packets that name none), or MEDIA_RTCP_ERR_MALFORMED.
 */
int media_rtcp_set_sender_ssrc(uint8_t *compound, const struct media_rtcp_pkt *pkt, uint32_t ssrc);
int media_rtcp_map_media_ssrc(uint8_t *compound, const struct media_rtcp_pkt *pkt, uint32_t from,
                              uint32_t to);

#endif
