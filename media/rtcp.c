/*
 * rtcp.c - the RTCP codec: compound walking, report, BYE and feedback
 * parsing, builders and in-place SSRC rewriting (see rtcp.h for the
 * contracts).
 *
 * Runs on whichever thread calls it (a media worker, the tests). Every read
 * is checked against the length of the packet it belongs to, which
 * media_rtcp_next() has checked against the compound; nothing is allocated
 * and nothing is logged.
 */
#include "rtcp.h"
#include "bytes.h"

#include <string.h>

#define VERSION          2
#define SENDER_INFO_SIZE 20
#define BLOCK_SIZE       24
#define FB_HEADER_SIZE   8 /* sender SSRC and media SSRC */
#define TWCC_HEADER_SIZE 8
#define MAX_PACKET_SIZE  (65536u * 4) /* what the 16-bit length field can describe */

/* A 24-bit two's complement field as a signed value (no shift of a negative number). */
static int32_t sign24(uint32_t v)
{
    return v & 0x800000u ? (int32_t)v - 0x1000000 : (int32_t)v;
}

const char *media_rtcp_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MEDIA_RTCP_ERR_TRUNCATED:
        return "RTCP packet truncated";
    case MEDIA_RTCP_ERR_VERSION:
        return "RTCP version is not 2";
    case MEDIA_RTCP_ERR_PADDING:
        return "bad RTCP padding";
    case MEDIA_RTCP_ERR_MALFORMED:
        return "malformed RTCP packet";
    case MEDIA_RTCP_ERR_TYPE:
        return "not the expected RTCP packet type";
    case MEDIA_RTCP_ERR_NO_SPACE:
        return "RTCP packet does not fit the buffer";
    case MEDIA_RTCP_ERR_INVALID:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------------------- */
/* Compound packets                                                           */
/* ------------------------------------------------------------------------- */

void media_rtcp_iter_init(struct media_rtcp_iter *it, const uint8_t *data, size_t len)
{
    *it = (struct media_rtcp_iter){.data = data, .len = len};
}

int media_rtcp_next(struct media_rtcp_iter *it, struct media_rtcp_pkt *out)
{
    if (it->err)
        return it->err;
    size_t left = it->len - it->pos;
    if (left == 0)
        return 0;
    const uint8_t *p = it->data + it->pos;
    int err = 0;
    size_t len = 0;
    if (left < MEDIA_RTCP_HEADER_SIZE) {
        err = MEDIA_RTCP_ERR_TRUNCATED;
    } else if (p[0] >> 6 != VERSION) {
        err = MEDIA_RTCP_ERR_VERSION;
    } else {
        len = ((size_t)rd16(p + 2) + 1) * 4;
        if (len > left)
            err = MEDIA_RTCP_ERR_TRUNCATED;
    }
    if (err) {
        it->err = err;
        return err;
    }
    *out = (struct media_rtcp_pkt){
        .data = p,
        .len = len,
        .offset = it->pos,
        .count = p[0] & 0x1F,
        .type = p[1],
        .padding = (p[0] & 0x20) != 0,
        .body = p + MEDIA_RTCP_HEADER_SIZE,
        .body_len = len - MEDIA_RTCP_HEADER_SIZE,
    };
    if (out->padding) {
        /* The count includes itself, and padding never eats into the header. */
        size_t pad = p[len - 1];
        if (pad == 0 || pad > out->body_len) {
            it->err = MEDIA_RTCP_ERR_PADDING;
            return it->err;
        }
        out->body_len -= pad;
    }
    it->pos += len;
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Sender and receiver reports, BYE                                           */
/* ------------------------------------------------------------------------- */

static void read_block(const uint8_t *p, struct media_rtcp_report_block *b)
{
    b->ssrc = rd32(p);
    b->fraction_lost = p[4];
    b->cumulative_lost = sign24(rd24(p + 5));
    b->highest_seq = rd32(p + 8);
    b->jitter = rd32(p + 12);
    b->last_sr = rd32(p + 16);
    b->delay_since_sr = rd32(p + 20);
}

/* Where an SR's or RR's report blocks start in its body, or 0 for other types. */
static size_t blocks_offset(uint8_t type)
{
    if (type == MEDIA_RTCP_SR)
        return 4 + SENDER_INFO_SIZE;
    if (type == MEDIA_RTCP_RR)
        return 4;
    return 0;
}

int media_rtcp_parse_report(const struct media_rtcp_pkt *pkt, struct media_rtcp_report *out)
{
    size_t at = blocks_offset(pkt->type);
    if (!at)
        return MEDIA_RTCP_ERR_TYPE;
    if (pkt->body_len < at || (pkt->body_len - at) / BLOCK_SIZE < pkt->count)
        return MEDIA_RTCP_ERR_MALFORMED;
    const uint8_t *b = pkt->body;
    out->ssrc = rd32(b);
    out->has_sender_info = pkt->type == MEDIA_RTCP_SR;
    if (out->has_sender_info) {
        out->ntp = (uint64_t)rd32(b + 4) << 32 | rd32(b + 8);
        out->rtp_ts = rd32(b + 12);
        out->packets = rd32(b + 16);
        out->octets = rd32(b + 20);
    } else {
        out->ntp = 0;
        out->rtp_ts = out->packets = out->octets = 0;
    }
    out->block_count = pkt->count;
    for (unsigned i = 0; i < pkt->count; i++)
        read_block(b + at + (size_t)i * BLOCK_SIZE, &out->blocks[i]);
    return 0;
}

void media_rtcp_sr_sent(struct media_rtcp_sr_history *h, uint64_t ntp, uint64_t sent_us)
{
    h->lsr[h->next] = (uint32_t)(ntp >> 16);
    h->sent_us[h->next] = sent_us;
    h->next = (h->next + 1) % MEDIA_RTCP_SR_HISTORY;
}

int64_t media_rtcp_round_trip_us(const struct media_rtcp_sr_history *h, uint32_t lsr, uint32_t dlsr,
                                 uint64_t arrival_us)
{
    if (lsr == 0)
        return -1;
    /* The newest SR with that LSR: two SRs within 15 us share one, and the later is the
     * one the receiver kept. */
    for (unsigned i = 0; i < MEDIA_RTCP_SR_HISTORY; i++) {
        unsigned slot = (h->next + MEDIA_RTCP_SR_HISTORY - 1 - i) % MEDIA_RTCP_SR_HISTORY;
        if (!h->sent_us[slot] || h->lsr[slot] != lsr)
            continue;
        int64_t held_us = (int64_t)(((uint64_t)dlsr * 1000000u) >> 16);
        int64_t rtt = (int64_t)arrival_us - (int64_t)h->sent_us[slot] - held_us;
        if (rtt < -1000)
            return -1;
        return rtt < 0 ? 0 : rtt;
    }
    return -1;
}

int media_rtcp_parse_bye(const struct media_rtcp_pkt *pkt, struct media_rtcp_bye *out)
{
    if (pkt->type != MEDIA_RTCP_BYE)
        return MEDIA_RTCP_ERR_TYPE;
    if (pkt->body_len / 4 < pkt->count)
        return MEDIA_RTCP_ERR_MALFORMED;
    out->count = pkt->count;
    for (unsigned i = 0; i < pkt->count; i++)
        out->ssrcs[i] = rd32(pkt->body + (size_t)i * 4);
    size_t at = (size_t)pkt->count * 4;
    out->reason = NULL;
    out->reason_len = 0;
    if (pkt->body_len > at) {
        size_t n = pkt->body[at];
        if (n > pkt->body_len - at - 1)
            return MEDIA_RTCP_ERR_MALFORMED;
        out->reason = (const char *)pkt->body + at + 1;
        out->reason_len = n;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Feedback                                                                   */
/* ------------------------------------------------------------------------- */

int media_rtcp_parse_fb(const struct media_rtcp_pkt *pkt, struct media_rtcp_fb *out)
{
    if (pkt->type != MEDIA_RTCP_RTPFB && pkt->type != MEDIA_RTCP_PSFB)
        return MEDIA_RTCP_ERR_TYPE;
    if (pkt->body_len < FB_HEADER_SIZE)
        return MEDIA_RTCP_ERR_MALFORMED;
    *out = (struct media_rtcp_fb){
        .type = pkt->type,
        .fmt = pkt->count,
        .sender_ssrc = rd32(pkt->body),
        .media_ssrc = rd32(pkt->body + 4),
        .fci = pkt->body + FB_HEADER_SIZE,
        .fci_len = pkt->body_len - FB_HEADER_SIZE,
    };
    return 0;
}

int media_rtcp_nack_expand(const struct media_rtcp_fb *fb, uint16_t *seqs, size_t cap)
{
    if (fb->type != MEDIA_RTCP_RTPFB || fb->fmt != MEDIA_RTCP_RTPFB_NACK)
        return MEDIA_RTCP_ERR_TYPE;
    if (fb->fci_len == 0 || fb->fci_len % 4)
        return MEDIA_RTCP_ERR_MALFORMED;
    size_t n = 0;
    for (size_t at = 0; at < fb->fci_len; at += 4) {
        uint16_t pid = rd16(fb->fci + at);
        uint16_t blp = rd16(fb->fci + at + 2);
        if (n < cap)
            seqs[n] = pid;
        n++;
        for (unsigned bit = 0; bit < 16; bit++) {
            if (!(blp & (1u << bit)))
                continue;
            if (n < cap)
                seqs[n] = (uint16_t)(pid + 1 + bit);
            n++;
        }
    }
    /* At most 17 per 4 bytes of a packet under 2^18 bytes: fits an int. */
    return (int)n;
}

int media_rtcp_fir_count(const struct media_rtcp_fb *fb)
{
    if (fb->type != MEDIA_RTCP_PSFB || fb->fmt != MEDIA_RTCP_PSFB_FIR)
        return MEDIA_RTCP_ERR_TYPE;
    if (fb->fci_len == 0 || fb->fci_len % 8)
        return MEDIA_RTCP_ERR_MALFORMED;
    return (int)(fb->fci_len / 8);
}

void media_rtcp_fir_entry(const struct media_rtcp_fb *fb, unsigned i,
                          struct media_rtcp_fir_entry *out)
{
    const uint8_t *p = fb->fci + (size_t)i * 8;
    out->ssrc = rd32(p);
    out->seq = p[4];
}

static bool is_remb(const struct media_rtcp_fb *fb)
{
    return fb->type == MEDIA_RTCP_PSFB && fb->fmt == MEDIA_RTCP_PSFB_AFB && fb->fci_len >= 8 &&
           memcmp(fb->fci, "REMB", 4) == 0;
}

int media_rtcp_parse_remb(const struct media_rtcp_fb *fb, struct media_rtcp_remb *out)
{
    if (!is_remb(fb))
        return MEDIA_RTCP_ERR_TYPE;
    unsigned n = fb->fci[4];
    if ((fb->fci_len - 8) / 4 < n)
        return MEDIA_RTCP_ERR_MALFORMED;
    unsigned exp = fb->fci[5] >> 2;
    uint64_t mantissa = (uint64_t)(fb->fci[5] & 0x03) << 16 | rd16(fb->fci + 6);
    out->bitrate = mantissa > (UINT64_MAX >> exp) ? UINT64_MAX : mantissa << exp;
    out->ssrc_count = n;
    for (unsigned i = 0; i < n; i++)
        out->ssrcs[i] = rd32(fb->fci + 8 + (size_t)i * 4);
    return 0;
}

/*
 * One walk over transport-wide feedback's status chunks. The first pass
 * (deltas NULL) finds where the chunks end and how many delta bytes they
 * call for; the second reads the deltas too and fills `out`.
 */
struct twcc_walk {
    uint16_t base_seq;
    unsigned count;
    const uint8_t *deltas; /* NULL on the first pass */
    struct media_rtcp_twcc_packet *out;
    size_t cap;
    unsigned done;      /* symbols taken */
    size_t delta_bytes; /* delta bytes called for so far */
    unsigned received;
};

static int twcc_symbol(struct twcc_walk *w, unsigned status)
{
    if (status > MEDIA_RTCP_TWCC_LARGE_DELTA)
        return MEDIA_RTCP_ERR_MALFORMED; /* 3 is reserved */
    int32_t delta = 0;
    if (status == MEDIA_RTCP_TWCC_SMALL_DELTA) {
        if (w->deltas)
            delta = w->deltas[w->delta_bytes];
        w->delta_bytes += 1;
        w->received++;
    } else if (status == MEDIA_RTCP_TWCC_LARGE_DELTA) {
        if (w->deltas)
            delta = (int16_t)rd16(w->deltas + w->delta_bytes);
        w->delta_bytes += 2;
        w->received++;
    }
    if (w->done < w->cap) {
        w->out[w->done] = (struct media_rtcp_twcc_packet){
            .seq = (uint16_t)(w->base_seq + w->done),
            .status = (uint8_t)status,
            .delta_250us = delta,
        };
    }
    w->done++;
    return 0;
}

/* Walks chunks until `count` symbols are taken; returns the chunk bytes used or an error. */
static long twcc_walk_chunks(struct twcc_walk *w, const uint8_t *chunks, size_t avail)
{
    size_t at = 0;
    while (w->done < w->count) {
        if (avail - at < 2)
            return MEDIA_RTCP_ERR_MALFORMED;
        uint16_t c = rd16(chunks + at);
        at += 2;
        int rc = 0;
        if (!(c & 0x8000)) { /* run length: 2-bit status, 13-bit run */
            unsigned status = (c >> 13) & 0x03;
            for (unsigned k = 0; k < (c & 0x1FFFu) && w->done < w->count && !rc; k++)
                rc = twcc_symbol(w, status);
        } else if (!(c & 0x4000)) { /* status vector: 14 one-bit symbols */
            for (unsigned k = 0; k < 14 && w->done < w->count && !rc; k++)
                rc = twcc_symbol(w, (c >> (13 - k)) & 0x01);
        } else { /* status vector: 7 two-bit symbols */
            for (unsigned k = 0; k < 7 && w->done < w->count && !rc; k++)
                rc = twcc_symbol(w, (c >> (12 - 2 * k)) & 0x03);
        }
        if (rc)
            return rc;
    }
    return (long)at;
}

int media_rtcp_parse_twcc(const struct media_rtcp_fb *fb, struct media_rtcp_twcc *out)
{
    if (fb->type != MEDIA_RTCP_RTPFB || fb->fmt != MEDIA_RTCP_RTPFB_TWCC)
        return MEDIA_RTCP_ERR_TYPE;
    if (fb->fci_len < TWCC_HEADER_SIZE)
        return MEDIA_RTCP_ERR_MALFORMED;
    const uint8_t *f = fb->fci;
    struct twcc_walk w = {.base_seq = rd16(f), .count = rd16(f + 2)};
    long chunks_len = twcc_walk_chunks(&w, f + TWCC_HEADER_SIZE, fb->fci_len - TWCC_HEADER_SIZE);
    if (chunks_len < 0)
        return (int)chunks_len;
    size_t left = fb->fci_len - TWCC_HEADER_SIZE - (size_t)chunks_len;
    /* What follows the deltas can only be padding to a 32-bit boundary; it is not checked. */
    if (w.delta_bytes > left)
        return MEDIA_RTCP_ERR_MALFORMED;
    *out = (struct media_rtcp_twcc){
        .base_seq = w.base_seq,
        .status_count = (uint16_t)w.count,
        .reference_time = sign24(rd24(f + 4)),
        .fb_count = f[7],
        .received_count = w.received,
        .chunks = f + TWCC_HEADER_SIZE,
        .chunks_len = (size_t)chunks_len,
        .deltas = f + TWCC_HEADER_SIZE + chunks_len,
        .deltas_len = w.delta_bytes,
    };
    return 0;
}

int media_rtcp_twcc_packets(const struct media_rtcp_twcc *twcc, struct media_rtcp_twcc_packet *out,
                            size_t cap)
{
    struct twcc_walk w = {
        .base_seq = twcc->base_seq,
        .count = twcc->status_count,
        .deltas = twcc->deltas,
        .out = out,
        .cap = out ? cap : 0,
    };
    /* Parsed already, so this walk stays inside the chunks and deltas it checked. */
    long rc = twcc_walk_chunks(&w, twcc->chunks, twcc->chunks_len);
    if (rc < 0)
        return (int)rc;
    return (int)w.count;
}

/* ------------------------------------------------------------------------- */
/* Building                                                                   */
/* ------------------------------------------------------------------------- */

/* Writes the common header of a packet of `len` bytes (a multiple of 4). */
static void write_header(uint8_t *buf, uint8_t count, uint8_t type, size_t len)
{
    buf[0] = (uint8_t)(VERSION << 6 | (count & 0x1F));
    buf[1] = type;
    wr16(buf + 2, (uint16_t)(len / 4 - 1));
}

int media_rtcp_build_rr(uint32_t sender_ssrc, const struct media_rtcp_report_block *blocks,
                        unsigned n, uint8_t *buf, size_t cap)
{
    if (n > MEDIA_RTCP_MAX_COUNT || (n && !blocks))
        return MEDIA_RTCP_ERR_INVALID;
    size_t len = 8 + (size_t)n * BLOCK_SIZE;
    if (len > cap)
        return MEDIA_RTCP_ERR_NO_SPACE;
    write_header(buf, (uint8_t)n, MEDIA_RTCP_RR, len);
    wr32(buf + 4, sender_ssrc);
    for (unsigned i = 0; i < n; i++) {
        const struct media_rtcp_report_block *b = &blocks[i];
        uint8_t *p = buf + 8 + (size_t)i * BLOCK_SIZE;
        /* Clamp to the 24-bit field (RFC 3550 section 6.4.1 says saturate). */
        int32_t lost = b->cumulative_lost;
        if (lost > 0x7FFFFF)
            lost = 0x7FFFFF;
        if (lost < -0x800000)
            lost = -0x800000;
        uint32_t lost24 = (uint32_t)lost & 0xFFFFFFu;
        wr32(p, b->ssrc);
        p[4] = b->fraction_lost;
        p[5] = (uint8_t)(lost24 >> 16);
        p[6] = (uint8_t)(lost24 >> 8);
        p[7] = (uint8_t)lost24;
        wr32(p + 8, b->highest_seq);
        wr32(p + 12, b->jitter);
        wr32(p + 16, b->last_sr);
        wr32(p + 20, b->delay_since_sr);
    }
    return (int)len;
}

int media_rtcp_build_pli(uint32_t sender_ssrc, uint32_t media_ssrc, uint8_t *buf, size_t cap)
{
    if (cap < 12)
        return MEDIA_RTCP_ERR_NO_SPACE;
    write_header(buf, MEDIA_RTCP_PSFB_PLI, MEDIA_RTCP_PSFB, 12);
    wr32(buf + 4, sender_ssrc);
    wr32(buf + 8, media_ssrc);
    return 12;
}

int media_rtcp_build_fir(uint32_t sender_ssrc, const struct media_rtcp_fir_entry *entries,
                         unsigned n, uint8_t *buf, size_t cap)
{
    if (n == 0 || !entries || n > (MAX_PACKET_SIZE - 12) / 8)
        return MEDIA_RTCP_ERR_INVALID;
    size_t len = 12 + (size_t)n * 8;
    if (len > cap)
        return MEDIA_RTCP_ERR_NO_SPACE;
    write_header(buf, MEDIA_RTCP_PSFB_FIR, MEDIA_RTCP_PSFB, len);
    wr32(buf + 4, sender_ssrc);
    wr32(buf + 8, 0); /* RFC 5104 section 4.3.1.2: the media source SSRC is unused */
    for (unsigned i = 0; i < n; i++) {
        uint8_t *p = buf + 12 + (size_t)i * 8;
        wr32(p, entries[i].ssrc);
        p[4] = entries[i].seq;
        p[5] = p[6] = p[7] = 0;
    }
    return (int)len;
}

int media_rtcp_build_nack(uint32_t sender_ssrc, uint32_t media_ssrc, const uint16_t *seqs, size_t n,
                          uint8_t *buf, size_t cap)
{
    if (n == 0 || !seqs)
        return MEDIA_RTCP_ERR_INVALID;
    if (cap < 12)
        return MEDIA_RTCP_ERR_NO_SPACE;
    size_t len = 12; /* the entry being filled is at buf + len - 4 */
    uint16_t pid = 0, blp = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t d = (uint16_t)(seqs[i] - pid);
        if (len > 12 && d == 0)
            continue; /* a repeat */
        if (len > 12 && d <= 16) {
            blp |= (uint16_t)(1u << (d - 1));
            wr16(buf + len - 2, blp);
            continue;
        }
        if (len + 4 > cap)
            return MEDIA_RTCP_ERR_NO_SPACE;
        if (len + 4 > MAX_PACKET_SIZE)
            return MEDIA_RTCP_ERR_INVALID;
        pid = seqs[i];
        blp = 0;
        wr16(buf + len, pid);
        wr16(buf + len + 2, blp);
        len += 4;
    }
    write_header(buf, MEDIA_RTCP_RTPFB_NACK, MEDIA_RTCP_RTPFB, len);
    wr32(buf + 4, sender_ssrc);
    wr32(buf + 8, media_ssrc);
    return (int)len;
}

int media_rtcp_build_remb(uint32_t sender_ssrc, uint64_t bitrate, const uint32_t *ssrcs, unsigned n,
                          uint8_t *buf, size_t cap)
{
    if (n > MEDIA_RTCP_MAX_REMB || (n && !ssrcs))
        return MEDIA_RTCP_ERR_INVALID;
    size_t len = 20 + (size_t)n * 4;
    if (len > cap)
        return MEDIA_RTCP_ERR_NO_SPACE;
    unsigned exp = 0;
    while ((bitrate >> exp) > 0x3FFFF)
        exp++;
    uint32_t mantissa = (uint32_t)(bitrate >> exp);
    write_header(buf, MEDIA_RTCP_PSFB_AFB, MEDIA_RTCP_PSFB, len);
    wr32(buf + 4, sender_ssrc);
    wr32(buf + 8, 0);
    memcpy(buf + 12, "REMB", 4);
    buf[16] = (uint8_t)n;
    buf[17] = (uint8_t)(exp << 2 | mantissa >> 16);
    wr16(buf + 18, (uint16_t)mantissa);
    for (unsigned i = 0; i < n; i++)
        wr32(buf + 20 + (size_t)i * 4, ssrcs[i]);
    return (int)len;
}

/* ------------------------------------------------------------------------- */
/* Rewriting SSRCs in place                                                   */
/* ------------------------------------------------------------------------- */

int media_rtcp_set_sender_ssrc(uint8_t *compound, const struct media_rtcp_pkt *pkt, uint32_t ssrc)
{
    switch (pkt->type) {
    case MEDIA_RTCP_SR:
    case MEDIA_RTCP_RR:
    case MEDIA_RTCP_APP:
    case MEDIA_RTCP_RTPFB:
    case MEDIA_RTCP_PSFB:
        break;
    default:
        return MEDIA_RTCP_ERR_TYPE;
    }
    if (pkt->body_len < 4)
        return MEDIA_RTCP_ERR_MALFORMED;
    wr32(compound + pkt->offset + MEDIA_RTCP_HEADER_SIZE, ssrc);
    return 0;
}

/* Replaces `from` with `to` in the 32-bit word at body offset `at`; returns 1 if it did. */
static int map_word(uint8_t *body, size_t at, uint32_t from, uint32_t to)
{
    if (rd32(body + at) != from)
        return 0;
    wr32(body + at, to);
    return 1;
}

int media_rtcp_map_media_ssrc(uint8_t *compound, const struct media_rtcp_pkt *pkt, uint32_t from,
                              uint32_t to)
{
    uint8_t *body = compound + pkt->offset + MEDIA_RTCP_HEADER_SIZE;
    int n = 0;
    if (pkt->type == MEDIA_RTCP_SR || pkt->type == MEDIA_RTCP_RR) {
        size_t at = blocks_offset(pkt->type);
        if (pkt->body_len < at || (pkt->body_len - at) / BLOCK_SIZE < pkt->count)
            return MEDIA_RTCP_ERR_MALFORMED;
        for (unsigned i = 0; i < pkt->count; i++)
            n += map_word(body, at + (size_t)i * BLOCK_SIZE, from, to);
        return n;
    }
    struct media_rtcp_fb fb;
    int rc = media_rtcp_parse_fb(pkt, &fb);
    if (rc == MEDIA_RTCP_ERR_TYPE)
        return 0;
    if (rc)
        return rc;
    /* Check before changing anything, so that an error leaves the packet as it was. */
    unsigned remb_count = is_remb(&fb) ? fb.fci[4] : 0;
    if (remb_count && (fb.fci_len - 8) / 4 < remb_count)
        return MEDIA_RTCP_ERR_MALFORMED;
    n += map_word(body, 4, from, to);
    if (fb.type == MEDIA_RTCP_PSFB && fb.fmt == MEDIA_RTCP_PSFB_FIR) {
        for (size_t at = 0; at + 8 <= fb.fci_len; at += 8)
            n += map_word(body, FB_HEADER_SIZE + at, from, to);
    } else {
        for (unsigned i = 0; i < remb_count; i++)
            n += map_word(body, FB_HEADER_SIZE + 8 + (size_t)i * 4, from, to);
    }
    return n;
}

/* ------------------------------------------------------------------------- */
/* Transport-wide feedback: the receiver's side                               */
/* ------------------------------------------------------------------------- */

#define TWCC_REFERENCE_US 64000 /* the reference time counts 64 ms */
#define TWCC_DELTA_US     250   /* receive deltas count 250 us */
#define TWCC_RUN_MAX      8191  /* a run-length chunk's 13-bit length */
#define TWCC_SMALL_MAX    255
#define TWCC_LARGE_MIN    (-32768)
#define TWCC_LARGE_MAX    32767
#define TWCC_FIXED_SIZE   (MEDIA_RTCP_HEADER_SIZE + FB_HEADER_SIZE + TWCC_HEADER_SIZE)

static unsigned twcc_slot(int64_t ext_seq)
{
    return (unsigned)((uint64_t)ext_seq % MEDIA_TWCC_WINDOW);
}

void media_twcc_record(struct media_twcc_recorder *r, uint16_t seq, uint64_t arrival_us)
{
    int64_t ext;
    if (!r->started) {
        r->started = true;
        ext = seq;
        r->next_seq = ext;
        r->highest_seq = ext - 1;
    } else {
        /* Within +-2^15 of the highest seen (the numbers wrap every 65536 packets). */
        ext = r->highest_seq + (int16_t)(uint16_t)(seq - (uint16_t)r->highest_seq);
    }
    if (ext < r->next_seq)
        return; /* already reported as lost: too late to take back */
    if (ext - r->next_seq >= MEDIA_TWCC_WINDOW) {
        /* Far ahead of what was reported (no feedback went out for long): forget the oldest. */
        int64_t new_next = ext - MEDIA_TWCC_WINDOW + 1;
        for (int64_t s = r->next_seq; s < new_next && s <= r->highest_seq; s++)
            r->arrival_us[twcc_slot(s)] = 0;
        r->next_seq = new_next;
        if (r->highest_seq < new_next - 1)
            r->highest_seq = new_next - 1;
    }
    uint64_t *slot = &r->arrival_us[twcc_slot(ext)];
    if (*slot)
        return; /* a duplicate: the first arrival is the one that tells about the path */
    *slot = arrival_us ? arrival_us : 1;
    if (ext > r->highest_seq)
        r->highest_seq = ext;
}

bool media_twcc_pending(const struct media_twcc_recorder *r)
{
    return r->started && r->highest_seq >= r->next_seq;
}

/* Appends the run-length chunk of a run of `len` statuses `symbol`. */
static size_t twcc_put_run(uint8_t *p, uint8_t symbol, unsigned len)
{
    wr16(p, (uint16_t)((unsigned)symbol << 13 | len));
    return 2;
}

int media_rtcp_build_twcc(struct media_twcc_recorder *r, uint32_t sender_ssrc, uint32_t media_ssrc,
                          uint8_t *buf, size_t cap)
{
    if (!media_twcc_pending(r))
        return 0;
    /* The range always ends with a received packet: highest_seq is only set by one. */
    int64_t first_received = r->next_seq;
    while (!r->arrival_us[twcc_slot(first_received)])
        first_received++;
    uint64_t reference = r->arrival_us[twcc_slot(first_received)] / TWCC_REFERENCE_US;
    uint64_t previous = reference * TWCC_REFERENCE_US;

    /* Pass 1: how many packets fit, by bytes and by the range of their deltas. */
    size_t size = TWCC_FIXED_SIZE, chunks = 0;
    unsigned count = 0, run = 0;
    uint8_t run_symbol = 0xFF;
    uint64_t prev = previous;
    for (int64_t s = r->next_seq; s <= r->highest_seq; s++) {
        uint64_t at = r->arrival_us[twcc_slot(s)];
        uint8_t symbol = MEDIA_RTCP_TWCC_NOT_RECEIVED;
        size_t delta_bytes = 0;
        if (at) {
            int64_t d = ((int64_t)at - (int64_t)prev) / TWCC_DELTA_US;
            if (d < TWCC_LARGE_MIN || d > TWCC_LARGE_MAX)
                break; /* reported from a new reference time in the next feedback */
            symbol = d >= 0 && d <= TWCC_SMALL_MAX ? MEDIA_RTCP_TWCC_SMALL_DELTA
                                                   : MEDIA_RTCP_TWCC_LARGE_DELTA;
            delta_bytes = symbol == MEDIA_RTCP_TWCC_SMALL_DELTA ? 1 : 2;
            prev += (uint64_t)(d * TWCC_DELTA_US); /* the receiver adds up what we write */
        }
        bool new_chunk = symbol != run_symbol || run == TWCC_RUN_MAX;
        size_t need = size + (new_chunk ? 2 : 0) + delta_bytes;
        if ((need + 3) / 4 * 4 > cap)
            break;
        size = need;
        chunks += new_chunk;
        run = new_chunk ? 1 : run + 1;
        run_symbol = symbol;
        count++;
    }
    if (count == 0)
        return MEDIA_RTCP_ERR_NO_SPACE;
    size_t len = (size + 3) / 4 * 4;

    /* Pass 2: write it. */
    write_header(buf, MEDIA_RTCP_RTPFB_TWCC, MEDIA_RTCP_RTPFB, len);
    wr32(buf + 4, sender_ssrc);
    wr32(buf + 8, media_ssrc);
    uint8_t *f = buf + 12;
    wr16(f, (uint16_t)r->next_seq);
    wr16(f + 2, (uint16_t)count);
    f[4] = (uint8_t)(reference >> 16);
    f[5] = (uint8_t)(reference >> 8);
    f[6] = (uint8_t)reference;
    f[7] = r->fb_count++;
    uint8_t *chunk = f + TWCC_HEADER_SIZE, *delta = chunk + chunks * 2;
    run = 0;
    run_symbol = 0xFF;
    prev = previous;
    for (unsigned i = 0; i < count; i++) {
        int64_t s = r->next_seq + i;
        uint64_t at = r->arrival_us[twcc_slot(s)];
        uint8_t symbol = MEDIA_RTCP_TWCC_NOT_RECEIVED;
        if (at) {
            int64_t d = ((int64_t)at - (int64_t)prev) / TWCC_DELTA_US;
            prev += (uint64_t)(d * TWCC_DELTA_US);
            if (d >= 0 && d <= TWCC_SMALL_MAX) {
                symbol = MEDIA_RTCP_TWCC_SMALL_DELTA;
                *delta++ = (uint8_t)d;
            } else {
                symbol = MEDIA_RTCP_TWCC_LARGE_DELTA;
                wr16(delta, (uint16_t)(int16_t)d);
                delta += 2;
            }
        }
        if (symbol != run_symbol || run == TWCC_RUN_MAX) {
            if (run)
                chunk += twcc_put_run(chunk, run_symbol, run);
            run = 0;
            run_symbol = symbol;
        }
        run++;
        r->arrival_us[twcc_slot(s)] = 0;
    }
    twcc_put_run(chunk, run_symbol, run);
    memset(delta, 0, (size_t)(buf + len - delta)); /* padding to the 32-bit boundary */
    r->next_seq += count;
    return (int)len;
}
