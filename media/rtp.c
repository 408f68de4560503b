/*
 * rtp.c - the RTP packet codec, header extensions, rtcp-mux demultiplexing,
 * in-place rewriting and the stream rewriter (see rtp.h for the contracts).
 *
 * Runs on whichever thread calls it (a media worker, the tests). Every read
 * is bounds-checked against the caller's length before it happens; nothing
 * is allocated and nothing is logged.
 */
#include "rtp.h"
#include "bytes.h"

#include <assert.h>

const char *media_rtp_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MEDIA_RTP_ERR_TRUNCATED:
        return "RTP packet truncated";
    case MEDIA_RTP_ERR_VERSION:
        return "RTP version is not 2";
    case MEDIA_RTP_ERR_PADDING:
        return "bad RTP padding";
    case MEDIA_RTP_ERR_EXTENSION:
        return "malformed RTP header extension";
    case MEDIA_RTP_ERR_NOT_FOUND:
        return "no such RTP header extension";
    case MEDIA_RTP_ERR_SIZE:
        return "RTP header extension has the wrong size";
    default:
        return "unknown error";
    }
}

enum media_rtp_kind media_rtp_demux(const uint8_t *data, size_t len)
{
    if (len < 2 || data[0] >> 6 != MEDIA_RTP_VERSION)
        return MEDIA_RTP_KIND_INVALID;
    uint8_t pt = data[1] & 0x7F;
    return pt >= 64 && pt <= 95 ? MEDIA_RTP_KIND_RTCP : MEDIA_RTP_KIND_RTP;
}

int media_rtp_parse(const uint8_t *data, size_t len, struct media_rtp_view *out)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_ERR_TRUNCATED;
    if (data[0] >> 6 != MEDIA_RTP_VERSION)
        return MEDIA_RTP_ERR_VERSION;
    *out = (struct media_rtp_view){
        .data = data,
        .len = len,
        .padding = (data[0] & 0x20) != 0,
        .extension = (data[0] & 0x10) != 0,
        .csrc_count = data[0] & 0x0F,
        .marker = (data[1] & 0x80) != 0,
        .payload_type = data[1] & 0x7F,
        .seq = rd16(data + 2),
        .timestamp = rd32(data + 4),
        .ssrc = rd32(data + 8),
    };
    size_t at = MEDIA_RTP_HEADER_SIZE;
    /* Each step compares against what is left, so no sum can overflow. */
    if ((size_t)out->csrc_count * 4 > len - at)
        return MEDIA_RTP_ERR_TRUNCATED;
    out->csrc = data + at;
    at += (size_t)out->csrc_count * 4;
    if (out->extension) {
        if (len - at < 4)
            return MEDIA_RTP_ERR_TRUNCATED;
        out->ext_profile = rd16(data + at);
        size_t ext_len = (size_t)rd16(data + at + 2) * 4;
        at += 4;
        if (ext_len > len - at)
            return MEDIA_RTP_ERR_TRUNCATED;
        out->ext = data + at;
        out->ext_len = ext_len;
        at += ext_len;
    }
    out->header_len = at;
    if (out->padding) {
        /* The count includes itself (RFC 3550 section 5.1), so 0 is impossible. */
        size_t pad = data[len - 1];
        if (pad == 0 || pad > len - at)
            return MEDIA_RTP_ERR_PADDING;
        out->padding_len = pad;
    }
    out->payload = data + at;
    out->payload_len = len - at - out->padding_len;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Header extensions                                                          */
/* ------------------------------------------------------------------------- */

void media_rtp_ext_iter_init(struct media_rtp_ext_iter *it, const struct media_rtp_view *view)
{
    it->p = view->ext;
    it->end = view->ext ? view->ext + view->ext_len : NULL;
    it->two_byte = (view->ext_profile & MEDIA_RTP_EXT_TWO_BYTE_MASK) == MEDIA_RTP_EXT_TWO_BYTE;
    it->done = !view->extension || !view->ext ||
               (view->ext_profile != MEDIA_RTP_EXT_ONE_BYTE && !it->two_byte);
}

int media_rtp_ext_next(struct media_rtp_ext_iter *it, struct media_rtp_ext *out)
{
    while (!it->done && it->p < it->end) {
        uint8_t b = *it->p;
        /*
         * Id 0 is padding in either form; in the one-byte form a nonzero
         * length nibble with id 0 is skipped the same way (as libwebrtc does),
         * never reported as an element.
         */
        if (b == 0 || (!it->two_byte && b >> 4 == 0)) {
            it->p++;
            continue;
        }
        size_t id, len, head;
        if (it->two_byte) {
            if (it->end - it->p < 2)
                break; /* an id with no length byte */
            id = b;
            len = it->p[1];
            head = 2;
        } else {
            id = b >> 4;
            if (id == 15) { /* "stop processing" (RFC 8285 section 4.2) */
                it->done = true;
                return 0;
            }
            len = (size_t)(b & 0x0F) + 1;
            head = 1;
        }
        if ((size_t)(it->end - it->p) - head < len)
            break;
        out->id = (uint8_t)id;
        out->data = it->p + head;
        out->len = len;
        it->p += head + len;
        return 1;
    }
    if (it->done || it->p >= it->end) {
        it->done = true;
        return 0;
    }
    it->done = true;
    return MEDIA_RTP_ERR_EXTENSION;
}

int media_rtp_ext_find(const struct media_rtp_view *view, uint8_t id, struct media_rtp_ext *out)
{
    if (id == 0)
        return MEDIA_RTP_ERR_NOT_FOUND;
    struct media_rtp_ext_iter it;
    media_rtp_ext_iter_init(&it, view);
    struct media_rtp_ext e;
    int rc;
    while ((rc = media_rtp_ext_next(&it, &e)) == 1) {
        if (e.id == id) {
            *out = e;
            return 0;
        }
    }
    return rc < 0 ? rc : MEDIA_RTP_ERR_NOT_FOUND;
}

int media_rtp_ext_abs_send_time(const struct media_rtp_ext *ext, uint32_t *out)
{
    if (ext->len != 3)
        return MEDIA_RTP_ERR_SIZE;
    *out = (uint32_t)ext->data[0] << 16 | (uint32_t)ext->data[1] << 8 | ext->data[2];
    return 0;
}

int media_rtp_ext_twcc_seq(const struct media_rtp_ext *ext, uint16_t *out)
{
    if (ext->len != 2)
        return MEDIA_RTP_ERR_SIZE;
    *out = rd16(ext->data);
    return 0;
}

int media_rtp_ext_audio_level(const struct media_rtp_ext *ext, bool *voice, uint8_t *level)
{
    if (ext->len < 1)
        return MEDIA_RTP_ERR_SIZE;
    *voice = (ext->data[0] & 0x80) != 0;
    *level = ext->data[0] & 0x7F;
    return 0;
}

int media_rtp_ext_mid(const struct media_rtp_ext *ext, const char **mid, size_t *len)
{
    if (ext->len < 1)
        return MEDIA_RTP_ERR_SIZE;
    *mid = (const char *)ext->data;
    *len = ext->len;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Rewriting in place                                                         */
/* ------------------------------------------------------------------------- */

int media_rtp_set_ssrc(uint8_t *data, size_t len, uint32_t ssrc)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_ERR_TRUNCATED;
    wr32(data + 8, ssrc);
    return 0;
}

int media_rtp_set_seq(uint8_t *data, size_t len, uint16_t seq)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_ERR_TRUNCATED;
    wr16(data + 2, seq);
    return 0;
}

int media_rtp_set_timestamp(uint8_t *data, size_t len, uint32_t ts)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_ERR_TRUNCATED;
    wr32(data + 4, ts);
    return 0;
}

int media_rtp_set_payload_type(uint8_t *data, size_t len, uint8_t pt)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_ERR_TRUNCATED;
    data[1] = (uint8_t)((data[1] & 0x80) | (pt & 0x7F));
    return 0;
}

int media_rtp_set_twcc_seq(uint8_t *data, size_t len, uint8_t id, uint16_t seq)
{
    struct media_rtp_view v;
    int rc = media_rtp_parse(data, len, &v);
    if (rc)
        return rc;
    struct media_rtp_ext e;
    rc = media_rtp_ext_find(&v, id, &e);
    if (rc)
        return rc;
    if (e.len != 2)
        return MEDIA_RTP_ERR_SIZE;
    /* e.data points into `data`: write through the caller's writable pointer. */
    wr16(data + (e.data - v.data), seq);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The stream rewriter                                                        */
/* ------------------------------------------------------------------------- */

const char *media_rtp_rewrite_name(enum media_rtp_rewrite r)
{
    switch (r) {
    case MEDIA_RTP_REWRITE_OK:
        return "ok";
    case MEDIA_RTP_REWRITE_SWITCHED:
        return "switched";
    case MEDIA_RTP_REWRITE_STALE:
        return "stale";
    case MEDIA_RTP_REWRITE_INVALID:
        return "invalid";
    case MEDIA_RTP_REWRITE_COUNT:
        break;
    }
    return "unknown";
}

void media_rtp_rewriter_init(struct media_rtp_rewriter *rw, uint32_t out_ssrc, uint16_t first_seq,
                             uint32_t first_ts)
{
    *rw = (struct media_rtp_rewriter){
        .out_ssrc = out_ssrc,
        .init_seq = first_seq,
        .init_ts = first_ts,
    };
}

void media_rtp_rewriter_switch(struct media_rtp_rewriter *rw)
{
    rw->has_source = false;
}

/*
 * Wall-clock microseconds as RTP ticks, modulo 2^32 (a timestamp wraps like
 * any other), at least 1. Whole seconds and the rest are converted apart so
 * that the product never overflows before the modulo: exact for any gap.
 */
static uint32_t ticks_since(uint64_t then_us, uint64_t now_us, uint32_t clock_rate)
{
    uint64_t gap = now_us > then_us ? now_us - then_us : 0;
    uint64_t ticks =
        (gap / 1000000) * clock_rate + (gap % 1000000) * (uint64_t)clock_rate / 1000000;
    return (uint32_t)ticks ? (uint32_t)ticks : 1;
}

enum media_rtp_rewrite media_rtp_rewriter_map(struct media_rtp_rewriter *rw, uint32_t ssrc,
                                              uint16_t seq, uint32_t ts, uint64_t now_us,
                                              uint32_t clock_rate, uint16_t *out_seq,
                                              uint32_t *out_ts)
{
    enum media_rtp_rewrite verdict = MEDIA_RTP_REWRITE_OK;
    int64_t ext;
    if (!rw->has_source || ssrc != rw->src_ssrc) {
        /* A new source: choose the deltas so that this packet continues the stream. */
        uint16_t next_seq;
        uint32_t next_ts;
        if (rw->started) {
            next_seq = (uint16_t)(rw->last_seq + 1);
            next_ts = rw->last_ts + ticks_since(rw->last_us, now_us, clock_rate);
            verdict = MEDIA_RTP_REWRITE_SWITCHED;
        } else {
            next_seq = rw->init_seq;
            next_ts = rw->init_ts;
        }
        rw->seq_delta = (uint16_t)(next_seq - seq);
        rw->ts_delta = next_ts - ts;
        rw->has_source = true;
        rw->src_ssrc = ssrc;
        ext = seq;
        rw->src_first = ext;
        rw->src_highest = ext - 1; /* so that this packet becomes the highest below */
    } else {
        /* Place seq within +-2^15 of the highest seen (RFC 3550 appendix A.1). */
        int16_t d = (int16_t)(uint16_t)(seq - (uint16_t)rw->src_highest);
        ext = rw->src_highest + d;
        if (ext < rw->src_first)
            return MEDIA_RTP_REWRITE_STALE;
    }
    uint16_t s = (uint16_t)(seq + rw->seq_delta);
    uint32_t t = ts + rw->ts_delta;
    if (ext > rw->src_highest) {
        rw->src_highest = ext;
        rw->last_seq = s;
        rw->last_ts = t;
        rw->last_us = now_us;
    }
    rw->started = true;
    *out_seq = s;
    *out_ts = t;
    return verdict;
}

bool media_rtp_rewriter_timestamp(const struct media_rtp_rewriter *rw, uint32_t ssrc, uint32_t ts,
                                  uint32_t *out_ts)
{
    if (!rw->has_source || rw->src_ssrc != ssrc)
        return false;
    *out_ts = ts + rw->ts_delta;
    return true;
}

bool media_rtp_rewriter_source_seq(const struct media_rtp_rewriter *rw, uint16_t out_seq,
                                   uint32_t *ssrc, uint16_t *in_seq)
{
    if (!rw->has_source)
        return false;
    *ssrc = rw->src_ssrc;
    *in_seq = (uint16_t)(out_seq - rw->seq_delta);
    return true;
}

enum media_rtp_rewrite media_rtp_rewriter_rewrite(struct media_rtp_rewriter *rw, uint8_t *data,
                                                  size_t len, uint64_t now_us, uint32_t clock_rate)
{
    if (len < MEDIA_RTP_HEADER_SIZE)
        return MEDIA_RTP_REWRITE_INVALID;
    uint16_t seq;
    uint32_t ts;
    enum media_rtp_rewrite r = media_rtp_rewriter_map(
        rw, rd32(data + 8), rd16(data + 2), rd32(data + 4), now_us, clock_rate, &seq, &ts);
    if (r != MEDIA_RTP_REWRITE_OK && r != MEDIA_RTP_REWRITE_SWITCHED)
        return r;
    wr32(data + 8, rw->out_ssrc);
    wr16(data + 2, seq);
    wr32(data + 4, ts);
    return r;
}
