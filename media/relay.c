/*
 * relay.c - moves a leg's decrypted RTP and RTCP to the leg it is linked to.
 *
 * Each leg negotiated its own payload types, header extension ids, mids and
 * our SSRCs toward it, so a relayed packet is rebuilt for its receiver, not
 * forwarded byte for byte: the fixed header gets the receiver's payload type
 * for the same codec and our outgoing SSRC, sequence number and timestamp
 * from the stream's rewriter (continuous across a change of source); the
 * header extension is rewritten with the receiver's ids (mid, our own
 * transport-wide sequence number, abs-send-time and audio level carried
 * over); the payload is copied untouched. Then it is protected with the
 * receiver's SRTP and queued for sendmmsg() in the worker's batch.
 *
 * RTCP: a sender report is re-issued for the receiver under our SSRC with
 * the timestamp mapped the same way (so lip sync survives the rewrite);
 * PLI and FIR become a PLI to the source browser, rate-limited. Receiver
 * reports, NACKs and congestion feedback are read by the next layer (loss
 * recovery and bandwidth estimation); they are not forwarded, since they
 * describe the hop to the server, not the far browser.
 *
 * The packet path: no allocation, no lock, no log. Every drop is a counter.
 */
#include "leg.h"

#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "bytes.h"
#include "rtcp.h"

#define KEY_FRAME_REQUEST_INTERVAL_US 300000 /* at most ~3 PLIs a second toward one browser */
#define ONE_BYTE_EXT_MAX_ID           14
#define RTCP_OUT_MAX                  256

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
        v = (uint32_t)base_now_ms() * 2654435761u; /* never fails in practice; any value works */
    return v;
}

void relay_leg_init(struct leg *leg)
{
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        struct leg_stream *s = &leg->streams[k];
        s->setup = leg->setup.streams[k];
        /* RFC 3550: random initial sequence numbers and timestamps. */
        media_rtp_rewriter_init(&s->rewriter, s->setup.out_ssrc, (uint16_t)random_u32(),
                                random_u32());
    }
}

/* The kind and codec of payload type `pt` as the leg negotiated it; -1 when not ours. */
static int classify_payload(const struct leg *leg, uint8_t pt, enum media_sdp_codec_id *codec,
                            bool *is_rtx)
{
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        const struct leg_stream_setup *s = &leg->streams[k].setup;
        if (!s->active)
            continue;
        for (unsigned i = 0; i < s->codec_count; i++)
            if (s->pts[i] == pt) {
                *codec = s->codecs[i];
                *is_rtx = false;
                return (int)k;
            }
        if (s->rtx_pt >= 0 && s->rtx_pt == pt) {
            *is_rtx = true;
            return (int)k;
        }
    }
    return -1;
}

/* The payload type the receiving leg uses for `codec`, or -1. */
static int payload_type_for(const struct leg_stream_setup *s, enum media_sdp_codec_id codec)
{
    for (unsigned i = 0; i < s->codec_count; i++)
        if (s->codecs[i] == codec)
            return s->pts[i];
    return -1;
}

static bool one_byte_id(uint8_t id)
{
    return id >= 1 && id <= ONE_BYTE_EXT_MAX_ID;
}

/* Appends one one-byte-form element; `value` is 1..16 bytes. */
static size_t put_element(uint8_t *p, uint8_t id, const uint8_t *value, size_t len)
{
    p[0] = (uint8_t)(id << 4 | (len - 1));
    memcpy(p + 1, value, len);
    return 1 + len;
}

/*
 * Writes the header extension block for `to` at `out` (the 0xBEDE head
 * included) and returns its length, 0 when there is nothing to carry.
 */
static size_t build_extensions(struct leg *to, const struct leg_stream *out, const struct leg *from,
                               const struct media_rtp_view *in, uint8_t *buf)
{
    const uint8_t *to_ids = to->setup.ext_id, *from_ids = from->setup.ext_id;
    uint8_t *p = buf + 4;
    size_t mid_len = strlen(out->setup.mid);
    if (one_byte_id(to_ids[MEDIA_SDP_EXT_MID]) && mid_len >= 1 && mid_len <= 16)
        p += put_element(p, to_ids[MEDIA_SDP_EXT_MID], (const uint8_t *)out->setup.mid, mid_len);
    struct media_rtp_ext ext;
    if (one_byte_id(to_ids[MEDIA_SDP_EXT_ABS_SEND_TIME]) &&
        media_rtp_ext_find(in, from_ids[MEDIA_SDP_EXT_ABS_SEND_TIME], &ext) == 0 && ext.len == 3)
        p += put_element(p, to_ids[MEDIA_SDP_EXT_ABS_SEND_TIME], ext.data, 3);
    if (one_byte_id(to_ids[MEDIA_SDP_EXT_TRANSPORT_CC])) {
        /* Our own numbering: the receiver's feedback describes the hop from us. */
        uint8_t seq[2];
        wr16(seq, ++to->twcc_out_seq);
        p += put_element(p, to_ids[MEDIA_SDP_EXT_TRANSPORT_CC], seq, 2);
    }
    if (one_byte_id(to_ids[MEDIA_SDP_EXT_AUDIO_LEVEL]) &&
        media_rtp_ext_find(in, from_ids[MEDIA_SDP_EXT_AUDIO_LEVEL], &ext) == 0 && ext.len >= 1)
        p += put_element(p, to_ids[MEDIA_SDP_EXT_AUDIO_LEVEL], ext.data, 1);
    size_t body = (size_t)(p - (buf + 4));
    if (body == 0)
        return 0;
    while (body % 4) {
        *p++ = 0; /* padding bytes */
        body++;
    }
    wr16(buf, MEDIA_RTP_EXT_ONE_BYTE);
    wr16(buf + 2, (uint16_t)(body / 4));
    return 4 + body;
}

/* A monotonic clock in microseconds, read per packet for feedback (a vDSO call, no syscall). */
static uint64_t arrival_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Once media has gone both ways on a leg, the owner hears of it (a patient is "ready"). */
static void note_flowing(struct media_worker *w, struct leg *leg)
{
    if (leg->media_in && leg->media_out_reported && !leg->reported_flowing) {
        leg->reported_flowing = true;
        worker_report(w, MEDIA_EVENT_LEG_FLOWING, leg->id, NULL);
    }
}

/* A report block about one of our streams toward `leg`: the browser receives us. */
static void note_report_blocks(struct media_worker *w, struct leg *leg,
                               const struct media_rtcp_report *report)
{
    if (leg->media_out_reported)
        return;
    for (unsigned b = 0; b < report->block_count; b++)
        for (unsigned k = 0; k < LEG_KIND_COUNT; k++)
            if (report->blocks[b].ssrc == leg->streams[k].setup.out_ssrc &&
                leg->streams[k].setup.out_ssrc) {
                leg->media_out_reported = true;
                note_flowing(w, leg);
                return;
            }
}

void relay_rtp(struct media_worker *w, struct leg *from, uint8_t *data, size_t len, uint64_t now_us)
{
    struct media_rtp_view in;
    if (media_rtp_parse(data, len, &in) != 0) {
        leg_drop(w, MEDIA_DROP_MALFORMED);
        return;
    }
    /* Every numbered packet is reported back, relayed or not (probes, RTX, no peer yet):
     * the browser's bandwidth estimate is built on these reports. */
    struct media_rtp_ext twcc;
    uint16_t twcc_seq;
    if (from->setup.ext_id[MEDIA_SDP_EXT_TRANSPORT_CC] &&
        media_rtp_ext_find(&in, from->setup.ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], &twcc) == 0 &&
        media_rtp_ext_twcc_seq(&twcc, &twcc_seq) == 0)
        media_twcc_record(&from->twcc, twcc_seq, arrival_now_us());
    enum media_sdp_codec_id codec = MEDIA_SDP_CODEC_OTHER;
    bool is_rtx = false;
    int kind = classify_payload(from, in.payload_type, &codec, &is_rtx);
    if (kind < 0) {
        leg_drop(w, MEDIA_DROP_UNKNOWN_PAYLOAD);
        return;
    }
    if (is_rtx) {
        leg_drop(w, MEDIA_DROP_RTX);
        return;
    }
    from->streams[kind].in_ssrc = in.ssrc;
    if (!from->media_in) {
        from->media_in = true;
        note_flowing(w, from);
    }
    struct leg *to = from->peer;
    if (!to) {
        leg_drop(w, MEDIA_DROP_NO_PEER);
        return;
    }
    if (!to->srtp || !to->has_address) {
        leg_drop(w, MEDIA_DROP_PEER_NOT_READY);
        return;
    }
    struct leg_stream *out = &to->streams[kind];
    int out_pt = out->setup.active && out->setup.browser_receives
                     ? payload_type_for(&out->setup, codec)
                     : -1;
    if (out_pt < 0) {
        leg_drop(w, MEDIA_DROP_UNKNOWN_PAYLOAD);
        return;
    }
    uint16_t out_seq;
    uint32_t out_ts;
    enum media_rtp_rewrite verdict =
        media_rtp_rewriter_map(&out->rewriter, in.ssrc, in.seq, in.timestamp, now_us,
                               out->setup.clock_rate, &out_seq, &out_ts);
    if (verdict == MEDIA_RTP_REWRITE_STALE) {
        leg_drop(w, MEDIA_DROP_STALE);
        return;
    }
    if (verdict == MEDIA_RTP_REWRITE_SWITCHED && kind == LEG_VIDEO)
        relay_request_key_frame(w, from, now_us); /* the new viewer starts at a key frame */

    struct out_slot *slot = worker_out_slot(w, to);
    uint8_t *o = slot->data;
    size_t csrc_bytes = (size_t)in.csrc_count * 4;
    size_t pos = MEDIA_RTP_HEADER_SIZE + csrc_bytes;
    size_t ext_len = build_extensions(to, out, from, &in, o + pos);
    size_t tail = in.payload_len + in.padding_len;
    if (pos + ext_len + tail + MEDIA_SRTP_MAX_OVERHEAD > sizeof(slot->data)) {
        leg_drop(w, MEDIA_DROP_MALFORMED); /* cannot happen with a 1500-byte input; be sure */
        return;
    }
    o[0] = (uint8_t)(MEDIA_RTP_VERSION << 6 | (in.padding ? 0x20 : 0) | (ext_len ? 0x10 : 0) |
                     in.csrc_count);
    o[1] = (uint8_t)((in.marker ? 0x80 : 0) | out_pt);
    wr16(o + 2, out_seq);
    wr32(o + 4, out_ts);
    wr32(o + 8, out->setup.out_ssrc);
    memcpy(o + MEDIA_RTP_HEADER_SIZE, in.csrc, csrc_bytes);
    pos += ext_len;
    memcpy(o + pos, in.payload, tail);
    int n = media_srtp_protect_rtp(to->srtp, o, pos + tail, sizeof(slot->data));
    if (n < 0) {
        leg_count(&w->counters.send_failures, 1);
        return;
    }
    worker_out_commit(w, (size_t)n);
    out->sent_packets++;
    out->sent_octets += (uint32_t)in.payload_len;
    leg_count(&w->counters.rtp_relayed, 1);
}

/* Protects and queues an RTCP compound of `len` bytes, built in `slot`, to `to`. */
static void send_rtcp(struct media_worker *w, struct leg *to, struct out_slot *slot, size_t len)
{
    int n = media_srtp_protect_rtcp(to->srtp, slot->data, len, sizeof(slot->data));
    if (n < 0) {
        leg_count(&w->counters.send_failures, 1);
        return;
    }
    worker_out_commit(w, (size_t)n);
    leg_count(&w->counters.rtcp_relayed, 1);
}

/* Our SSRC as the sender of RTCP toward `leg`: its video stream's, else its audio's. */
static uint32_t rtcp_sender_ssrc(const struct leg *leg)
{
    uint32_t ssrc = leg->streams[LEG_VIDEO].setup.out_ssrc;
    return ssrc ? ssrc : leg->streams[LEG_AUDIO].setup.out_ssrc;
}

void relay_request_key_frame(struct media_worker *w, struct leg *leg, uint64_t now_us)
{
    struct leg_stream *video = &leg->streams[LEG_VIDEO];
    uint32_t media_ssrc = video->in_ssrc ? video->in_ssrc : video->setup.offered_ssrc;
    if (!leg->srtp || !leg->has_address || !media_ssrc)
        return;
    if (video->last_key_frame_request_us &&
        now_us - video->last_key_frame_request_us < KEY_FRAME_REQUEST_INTERVAL_US)
        return;
    video->last_key_frame_request_us = now_us;
    struct out_slot *slot = worker_out_slot(w, leg);
    uint32_t sender = rtcp_sender_ssrc(leg);
    /* A compound starts with a report (RFC 3550 6.1): an empty RR, then the PLI. */
    int rr = media_rtcp_build_rr(sender, NULL, 0, slot->data, RTCP_OUT_MAX);
    int pli = rr > 0 ? media_rtcp_build_pli(sender, media_ssrc, slot->data + rr,
                                            RTCP_OUT_MAX - (size_t)rr)
                     : -1;
    if (pli <= 0)
        return;
    leg_count(&w->counters.key_frame_requests, 1);
    send_rtcp(w, leg, slot, (size_t)(rr + pli));
}

void relay_send_feedback(struct media_worker *w, struct leg *leg)
{
    struct leg_stream *s = &leg->streams[LEG_VIDEO];
    uint32_t media_ssrc = s->in_ssrc ? s->in_ssrc : leg->streams[LEG_AUDIO].in_ssrc;
    struct out_slot *slot = worker_out_slot(w, leg);
    uint32_t sender = rtcp_sender_ssrc(leg);
    int rr = media_rtcp_build_rr(sender, NULL, 0, slot->data, RTCP_OUT_MAX);
    size_t room = sizeof(slot->data) - MEDIA_SRTP_MAX_OVERHEAD - (size_t)rr;
    if (room > LEG_DATAGRAM_MAX - 200)
        room = LEG_DATAGRAM_MAX - 200; /* stay well under any path MTU */
    int fb =
        rr > 0 ? media_rtcp_build_twcc(&leg->twcc, sender, media_ssrc, slot->data + rr, room) : -1;
    if (fb <= 0)
        return;
    leg_count(&w->counters.feedback_sent, 1);
    send_rtcp(w, leg, slot, (size_t)(rr + fb));
}

/* Re-issues the SR of `from`'s source `kind` toward `to` under our SSRC and timeline. */
static void relay_sender_report(struct media_worker *w, struct leg *to, unsigned kind,
                                const struct media_rtcp_report *sr)
{
    struct leg_stream *out = &to->streams[kind];
    uint32_t ts;
    if (!media_rtp_rewriter_timestamp(&out->rewriter, sr->ssrc, sr->rtp_ts, &ts))
        return; /* nothing of this source went out yet */
    struct out_slot *slot = worker_out_slot(w, to);
    uint8_t *p = slot->data;
    p[0] = MEDIA_RTP_VERSION << 6; /* no report blocks: they would describe the wrong hop */
    p[1] = MEDIA_RTCP_SR;
    wr16(p + 2, 6); /* length in 32-bit words minus one: 28 bytes */
    wr32(p + 4, out->setup.out_ssrc);
    wr32(p + 8, (uint32_t)(sr->ntp >> 32));
    wr32(p + 12, (uint32_t)sr->ntp);
    wr32(p + 16, ts);
    wr32(p + 20, out->sent_packets);
    wr32(p + 24, out->sent_octets);
    send_rtcp(w, to, slot, 28);
}

void relay_rtcp(struct media_worker *w, struct leg *from, uint8_t *data, size_t len,
                uint64_t now_us)
{
    struct media_rtcp_iter it;
    struct media_rtcp_pkt pkt;
    media_rtcp_iter_init(&it, data, len);
    struct leg *to = from->peer;
    bool ready = to && to->srtp && to->has_address;
    int rc;
    while ((rc = media_rtcp_next(&it, &pkt)) == 1) {
        if (pkt.type == MEDIA_RTCP_SR || pkt.type == MEDIA_RTCP_RR) {
            struct media_rtcp_report report;
            if (media_rtcp_parse_report(&pkt, &report) != 0)
                continue;
            note_report_blocks(w, from, &report);
            for (unsigned k = 0; ready && report.has_sender_info && k < LEG_KIND_COUNT; k++)
                if (report.ssrc && report.ssrc == from->streams[k].in_ssrc)
                    relay_sender_report(w, to, k, &report);
        } else if (pkt.type == MEDIA_RTCP_PSFB && ready &&
                   (pkt.count == MEDIA_RTCP_PSFB_PLI || pkt.count == MEDIA_RTCP_PSFB_FIR)) {
            /* The browser lost the picture we send it: ask its source for a key frame. */
            relay_request_key_frame(w, to, now_us);
        }
    }
    if (rc < 0)
        leg_drop(w, MEDIA_DROP_MALFORMED);
}
