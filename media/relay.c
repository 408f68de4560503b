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
 * Per leg and kind, plain counters (the leg is the worker's own) feed the
 * summary the owner asks for at the end of a consultation
 * (relay_leg_summary()): packets and bytes each way, loss from the sequence
 * numbers, the browser's own reports, and a round trip from its reports'
 * LSR/DLSR against the SRs we re-issued to it.
 *
 * The packet path: no allocation, no lock, no log. Every drop is a counter.
 */
#include "leg.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "bytes.h"
#include "packet_cache.h"
#include "rtcp.h"

#define KEY_FRAME_REQUEST_INTERVAL_US 300000 /* at most ~3 PLIs a second toward one browser */
#define VIDEO_CACHE_PACKETS           128 /* ~1 s of 1.2 Mbit/s video: longer than any useful RTT */
#define NACK_SEQS_MAX                 128
#define ONE_BYTE_EXT_MAX_ID           14
#define RTCP_OUT_MAX                  256

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
        v = (uint32_t)base_now_ms() * 2654435761u; /* never fails in practice; any value works */
    return v;
}

int relay_leg_init(struct leg *leg)
{
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        struct leg_stream *s = &leg->streams[k];
        s->setup = leg->setup.streams[k];
        /* RFC 3550: random initial sequence numbers and timestamps. */
        media_rtp_rewriter_init(&s->rewriter, s->setup.out_ssrc, (uint16_t)random_u32(),
                                random_u32());
        s->rtx_seq = (uint16_t)random_u32();
    }
    return relay_leg_ensure_cache(leg);
}

int relay_leg_ensure_cache(struct leg *leg)
{
    struct leg_stream *video = &leg->streams[LEG_VIDEO];
    if (video->cache || !video->setup.active || !video->setup.browser_receives)
        return 0;
    struct media_packet_cache_config cfg = MEDIA_PACKET_CACHE_CONFIG_DEFAULT;
    cfg.capacity = VIDEO_CACHE_PACKETS;
    cfg.resend_interval_ms = 30; /* below a browser's re-NACK interval (~50 ms) */
    video->cache = media_packet_cache_new(&cfg, NULL);
    return video->cache ? 0 : -1;
}

void relay_leg_free(struct leg *leg)
{
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        media_packet_cache_free(leg->streams[k].cache);
        leg->streams[k].cache = NULL;
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

/* Protects and queues an RTCP compound of `len` bytes, built in `slot`, to `to`. False when
 * SRTP refused it (counted). */
static bool send_rtcp(struct media_worker *w, struct leg *to, struct out_slot *slot, size_t len)
{
    int n = media_srtp_protect_rtcp(to->srtp, slot->data, len, sizeof(slot->data));
    if (n < 0) {
        leg_count(&w->counters.send_failures, 1);
        return false;
    }
    worker_out_commit(w, (size_t)n);
    leg_count(&w->counters.rtcp_relayed, 1);
    return true;
}

/* Our SSRC as the sender of RTCP toward `leg`: its video stream's, else its audio's. */
static uint32_t rtcp_sender_ssrc(const struct leg *leg)
{
    uint32_t ssrc = leg->streams[LEG_VIDEO].setup.out_ssrc;
    return ssrc ? ssrc : leg->streams[LEG_AUDIO].setup.out_ssrc;
}

/*
 * Starts an RTCP compound to `leg` in the next send slot: a compound begins
 * with a report (RFC 3550 6.1), so an empty RR from us, which is `*rr` bytes;
 * the caller appends its feedback packet at slot->data + *rr and sends with
 * send_rtcp(). `*sender` is our SSRC for the feedback. NULL if none fits.
 */
static struct out_slot *begin_compound(struct media_worker *w, struct leg *leg, uint32_t *sender,
                                       size_t *rr)
{
    struct out_slot *slot = worker_out_slot(w, leg);
    *sender = rtcp_sender_ssrc(leg);
    int n = media_rtcp_build_rr(*sender, NULL, 0, slot->data, RTCP_OUT_MAX);
    if (n <= 0)
        return NULL;
    *rr = (size_t)n;
    return slot;
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

/*
 * What the browser's reports say about our streams to it, for the leg's
 * summary: its loss figures, and a round trip when the block echoes an SR we
 * sent (`arrival_us`: the report's, on the clock of the SRs' send times).
 */
static void note_peer_reports(struct leg *leg, const struct media_rtcp_report *report,
                              uint64_t arrival_us)
{
    for (unsigned b = 0; b < report->block_count; b++) {
        const struct media_rtcp_report_block *block = &report->blocks[b];
        for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
            struct leg_stream *s = &leg->streams[k];
            if (!s->setup.out_ssrc || block->ssrc != s->setup.out_ssrc)
                continue;
            s->totals.peer_reported = true;
            s->totals.peer_lost = block->cumulative_lost;
            s->totals.peer_fraction_lost = block->fraction_lost;
            int64_t rtt = media_rtcp_round_trip_us(&s->sent_srs, block->last_sr,
                                                   block->delay_since_sr, arrival_us);
            if (rtt >= 0) {
                leg->rtt_sum_us += (uint64_t)rtt;
                leg->rtt_samples++;
            }
        }
    }
}

/* Packets the browser's sequence numbers say it sent on `s` so far (RFC 3550 A.3). */
static uint32_t rx_expected(const struct leg_stream *s)
{
    return s->rx.started ? s->rx.cycles + s->rx.max_seq - s->rx.base_seq + 1 : 0;
}

static void resend_from_cache(struct media_worker *w, struct leg *leg, struct leg_stream *out,
                              const uint8_t *pkt, size_t len);

/* Receiver-report bookkeeping of one received packet (RFC 3550 A.1 and A.8, simplified). */
static void note_received(struct leg_stream *s, const struct media_rtp_view *in,
                          uint64_t arrival_us)
{
    if (!s->rx.started) {
        s->rx.started = true;
        s->rx.base_seq = in->seq;
        s->rx.max_seq = in->seq;
        s->rx.last_transit =
            (int64_t)(arrival_us * s->setup.clock_rate / 1000000u) - (int64_t)in->timestamp;
    }
    uint16_t ahead = (uint16_t)(in->seq - s->rx.max_seq);
    if (ahead && ahead < 0x8000) {
        if (in->seq < s->rx.max_seq)
            s->rx.cycles += 65536;
        s->rx.max_seq = in->seq;
    }
    s->rx.received++;
    int64_t transit =
        (int64_t)(arrival_us * s->setup.clock_rate / 1000000u) - (int64_t)in->timestamp;
    int64_t d = transit - s->rx.last_transit;
    s->rx.last_transit = transit;
    if (d < 0)
        d = -d;
    if (d < (int64_t)s->setup.clock_rate) /* a source switch or a wrap is not jitter */
        s->rx.jitter_q4 += (uint32_t)(d - ((s->rx.jitter_q4 + 8) >> 4));
}

void relay_rtp(struct media_worker *w, struct leg *from, uint8_t *data, size_t len, uint64_t now_us)
{
    struct media_rtp_view in;
    if (media_rtp_parse(data, len, &in) != 0) {
        leg_drop(w, MEDIA_DROP_MALFORMED);
        return;
    }
    /* Every numbered packet is reported back, relayed or not (probes, RTX, no peer yet),
     * with the kernel's arrival time: the browser's bandwidth estimate is built on these. */
    struct media_rtp_ext twcc;
    uint16_t twcc_seq;
    if (from->setup.ext_id[MEDIA_SDP_EXT_TRANSPORT_CC] &&
        media_rtp_ext_find(&in, from->setup.ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], &twcc) == 0 &&
        media_rtp_ext_twcc_seq(&twcc, &twcc_seq) == 0)
        media_twcc_record(&from->twcc, twcc_seq, w->arrival_us);
    enum media_sdp_codec_id codec = MEDIA_SDP_CODEC_OTHER;
    bool is_rtx = false;
    int kind = classify_payload(from, in.payload_type, &codec, &is_rtx);
    if (kind < 0) {
        leg_drop(w, MEDIA_DROP_UNKNOWN_PAYLOAD);
        return;
    }
    from->streams[kind].totals.packets_in++;
    from->streams[kind].totals.bytes_in += len;
    if (!is_rtx)
        from->streams[kind].totals.codec = codec;
    bool retransmission = false;
    if (is_rtx) {
        /* A retransmission the source made for a NACK we passed on: back to the original
         * packet (RFC 4588: a 2-byte original sequence number, then the payload), relayed
         * like any other. One carrying no payload is a bandwidth probe: it ends here. */
        struct leg_stream *src = &from->streams[kind];
        if (in.payload_len <= 2 || !src->in_ssrc || src->setup.codec_count == 0) {
            leg_drop(w, MEDIA_DROP_RTX);
            return;
        }
        uint16_t osn = rd16(in.payload);
        uint8_t *payload = data + in.header_len;
        memmove(payload, payload + 2, in.payload_len - 2 + in.padding_len);
        len -= 2;
        data[1] = (uint8_t)((data[1] & 0x80) | src->setup.pts[0]);
        wr16(data + 2, osn);
        wr32(data + 8, src->in_ssrc);
        if (media_rtp_parse(data, len, &in) != 0) {
            leg_drop(w, MEDIA_DROP_MALFORMED);
            return;
        }
        codec = src->setup.codecs[0];
        retransmission = true;
        leg_count(&w->counters.rtx_relayed, 1);
    }
    from->streams[kind].in_ssrc = in.ssrc;
    if (!retransmission)
        note_received(&from->streams[kind], &in, w->arrival_us);
    if (kind == LEG_AUDIO && !retransmission) {
        int level = -1;
        struct media_rtp_ext ext;
        bool voice;
        uint8_t dbov;
        if (from->setup.ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL] &&
            media_rtp_ext_find(&in, from->setup.ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], &ext) == 0 &&
            media_rtp_ext_audio_level(&ext, &voice, &dbov) == 0)
            level = dbov;
        media_audio_monitor_packet(&from->audio, in.payload, in.payload_len, level,
                                   (int64_t)(now_us / 1000));
    }
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
    bool sent_any = out->rewriter.started;
    uint16_t highest_sent = out->rewriter.last_seq;
    enum media_rtp_rewrite verdict =
        media_rtp_rewriter_map(&out->rewriter, in.ssrc, in.seq, in.timestamp, now_us,
                               out->setup.clock_rate, &out_seq, &out_ts);
    if (verdict == MEDIA_RTP_REWRITE_STALE) {
        leg_drop(w, MEDIA_DROP_STALE);
        return;
    }
    if (retransmission && !(out->setup.rtx_pt >= 0 && out->setup.out_rtx_ssrc) && sent_any &&
        (int16_t)(out_seq - highest_sent) <= 0) {
        /* A repair for a receiver without RTX goes out under its original SRTP index, which
         * may have gone out already: protecting it again with other header bytes (a new
         * transport-wide number) would reuse a GCM nonce and give the authentication key
         * away. Only the cached bytes, identical to what went out, may go again. */
        size_t cached_len = 0;
        const uint8_t *cached =
            out->cache
                ? media_packet_cache_lookup(out->cache, out_seq, (int64_t)(now_us / 1000),
                                            MEDIA_PACKET_CACHE_DEFAULT_MAX_AGE_MS, &cached_len)
                : NULL;
        if (cached)
            resend_from_cache(w, to, out, cached, cached_len);
        else
            leg_drop(w, MEDIA_DROP_RTX);
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
    size_t plain = pos + tail;
    if (out->cache)
        media_packet_cache_store(out->cache, o, plain, out_seq, (int64_t)(now_us / 1000));
    if (retransmission && out->setup.rtx_pt >= 0 && out->setup.out_rtx_ssrc) {
        /* Repaired loss goes out on the receiver's RTX stream, as it expects. */
        memcpy(w->scratch, o, plain);
        int rtx =
            media_rtx_build(w->scratch, plain, (uint8_t)out->setup.rtx_pt, out->setup.out_rtx_ssrc,
                            ++out->rtx_seq, o, sizeof(slot->data) - MEDIA_SRTP_MAX_OVERHEAD);
        if (rtx < 0) {
            leg_drop(w, MEDIA_DROP_MALFORMED);
            return;
        }
        plain = (size_t)rtx;
    }
    int n = media_srtp_protect_rtp(to->srtp, o, plain, sizeof(slot->data));
    if (n < 0) {
        leg_count(&w->counters.send_failures, 1);
        return;
    }
    worker_out_commit(w, (size_t)n);
    media_bandwidth_sent(&to->receive_limit, (size_t)n);
    out->totals.packets_out++;
    out->totals.bytes_out += plain;
    if (!retransmission) {
        out->sent_packets++;
        out->sent_octets += (uint32_t)in.payload_len;
    }
    leg_count(&w->counters.rtp_relayed, 1);
}

/* Resends one cached packet to `leg`: as RTX with a fresh transport-wide number when negotiated,
 * else the same packet byte for byte. */
static void resend_from_cache(struct media_worker *w, struct leg *leg, struct leg_stream *out,
                              const uint8_t *pkt, size_t len)
{
    struct out_slot *slot = worker_out_slot(w, leg);
    size_t cap = sizeof(slot->data) - MEDIA_SRTP_MAX_OVERHEAD;
    int n;
    bool rtx = out->setup.rtx_pt >= 0 && out->setup.out_rtx_ssrc;
    if (rtx) {
        n = media_rtx_build(pkt, len, (uint8_t)out->setup.rtx_pt, out->setup.out_rtx_ssrc,
                            ++out->rtx_seq, slot->data, cap);
    } else {
        n = len <= cap ? (int)len : -1;
        if (n > 0)
            memcpy(slot->data, pkt, len); /* the same packet again: SRTP allows the repeat */
    }
    if (n <= 0)
        return;
    /* Only an RTX packet (a new index of its own) gets a fresh transport-wide number. A plain
     * resend goes out byte for byte as before: the same SRTP index with a changed header would
     * reuse a GCM nonce on different data, which gives the authentication key away. */
    uint8_t twcc_id = leg->setup.ext_id[MEDIA_SDP_EXT_TRANSPORT_CC];
    if (rtx && one_byte_id(twcc_id))
        media_rtp_set_twcc_seq(slot->data, (size_t)n, twcc_id, ++leg->twcc_out_seq);
    size_t plain = (size_t)n;
    n = media_srtp_protect_rtp(leg->srtp, slot->data, plain, sizeof(slot->data));
    if (n < 0) {
        leg_count(&w->counters.send_failures, 1);
        return;
    }
    worker_out_commit(w, (size_t)n);
    media_bandwidth_sent(&leg->receive_limit, (size_t)n);
    out->totals.packets_out++;
    out->totals.bytes_out += plain;
}

/*
 * A browser lost some of the video we sent it: resend what the cache holds;
 * ask the source browser for the rest (it was lost before it reached us), in
 * the source's own numbering.
 */
static void answer_nack(struct media_worker *w, struct leg *from, const struct media_rtcp_fb *fb,
                        int64_t now_ms)
{
    struct leg_stream *out = &from->streams[LEG_VIDEO];
    if (!out->cache || fb->media_ssrc != out->setup.out_ssrc)
        return;
    leg_count(&w->counters.nacks_received, 1);
    uint16_t seqs[NACK_SEQS_MAX], missing[NACK_SEQS_MAX];
    int n = media_rtcp_nack_expand(fb, seqs, NACK_SEQS_MAX);
    unsigned n_missing = 0;
    uint32_t source_ssrc = 0;
    for (int i = 0; i < n && i < NACK_SEQS_MAX; i++) {
        const uint8_t *pkt;
        size_t len;
        switch (media_packet_cache_nack(out->cache, seqs[i], now_ms, &pkt, &len)) {
        case MEDIA_PACKET_CACHE_RESEND:
            leg_count(&w->counters.nack_retransmitted, 1);
            resend_from_cache(w, from, out, pkt, len);
            break;
        case MEDIA_PACKET_CACHE_SUPPRESSED:
            leg_count(&w->counters.nack_suppressed, 1);
            break;
        default:
            leg_count(&w->counters.nack_missed, 1);
            if (media_rtp_rewriter_source_seq(&out->rewriter, seqs[i], &source_ssrc,
                                              &missing[n_missing]))
                n_missing++;
            break;
        }
    }
    struct leg *source = from->peer;
    if (!n_missing || !source || !source->srtp || !source->has_address ||
        source->streams[LEG_VIDEO].in_ssrc != source_ssrc)
        return;
    uint32_t sender;
    size_t rr;
    struct out_slot *slot = begin_compound(w, source, &sender, &rr);
    int nack = slot ? media_rtcp_build_nack(sender, source_ssrc, missing, n_missing,
                                            slot->data + rr, RTCP_OUT_MAX - rr)
                    : -1;
    if (nack <= 0)
        return;
    leg_count(&w->counters.nacks_forwarded, 1);
    send_rtcp(w, source, slot, rr + (size_t)nack);
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
    uint32_t sender;
    size_t rr;
    struct out_slot *slot = begin_compound(w, leg, &sender, &rr);
    int pli =
        slot ? media_rtcp_build_pli(sender, media_ssrc, slot->data + rr, RTCP_OUT_MAX - rr) : -1;
    if (pli <= 0)
        return;
    leg_count(&w->counters.key_frame_requests, 1);
    send_rtcp(w, leg, slot, rr + (size_t)pli);
}

void relay_send_feedback(struct media_worker *w, struct leg *leg)
{
    struct leg_stream *s = &leg->streams[LEG_VIDEO];
    uint32_t media_ssrc = s->in_ssrc ? s->in_ssrc : leg->streams[LEG_AUDIO].in_ssrc;
    uint32_t sender;
    size_t rr;
    struct out_slot *slot = begin_compound(w, leg, &sender, &rr);
    if (!slot)
        return;
    size_t room = sizeof(slot->data) - MEDIA_SRTP_MAX_OVERHEAD - rr;
    if (room > LEG_DATAGRAM_MAX - 200)
        room = LEG_DATAGRAM_MAX - 200; /* stay well under any path MTU */
    int fb = media_rtcp_build_twcc(&leg->twcc, sender, media_ssrc, slot->data + rr, room);
    if (fb <= 0)
        return;
    leg_count(&w->counters.feedback_sent, 1);
    send_rtcp(w, leg, slot, rr + (size_t)fb);
}

void relay_send_receiver_report(struct media_worker *w, struct leg *leg, uint64_t now_us)
{
    if (!leg->srtp || !leg->has_address)
        return;
    struct media_rtcp_report_block blocks[LEG_KIND_COUNT];
    unsigned n = 0;
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        struct leg_stream *s = &leg->streams[k];
        if (!s->rx.started || !s->in_ssrc)
            continue;
        uint32_t extended_max = s->rx.cycles + s->rx.max_seq;
        uint32_t expected = extended_max - s->rx.base_seq + 1;
        uint32_t expected_interval = expected - s->rx.expected_prior;
        uint32_t received_interval = s->rx.received - s->rx.received_prior;
        s->rx.expected_prior = expected;
        s->rx.received_prior = s->rx.received;
        int64_t lost_interval = (int64_t)expected_interval - (int64_t)received_interval;
        uint32_t dlsr = 0;
        if (s->rx.last_sr_us && now_us > s->rx.last_sr_us)
            dlsr = (uint32_t)((now_us - s->rx.last_sr_us) * 65536u / 1000000u);
        blocks[n++] = (struct media_rtcp_report_block){
            .ssrc = s->in_ssrc,
            .fraction_lost = expected_interval && lost_interval > 0
                                 ? (uint8_t)((lost_interval << 8) / expected_interval)
                                 : 0,
            .cumulative_lost = (int32_t)((int64_t)expected - (int64_t)s->rx.received),
            .highest_seq = extended_max,
            .jitter = s->rx.jitter_q4 >> 4,
            .last_sr = s->rx.last_sr,
            .delay_since_sr = s->rx.last_sr ? dlsr : 0,
        };
    }
    if (!n)
        return;
    struct out_slot *slot = worker_out_slot(w, leg);
    int len = media_rtcp_build_rr(rtcp_sender_ssrc(leg), blocks, n, slot->data, RTCP_OUT_MAX);
    if (len > 0)
        send_rtcp(w, leg, slot, (size_t)len);
}

/* Tells the browser of `to` to keep its sending under `bitrate` (REMB about its streams). */
static void send_remb(struct media_worker *w, struct leg *to, uint64_t bitrate)
{
    uint32_t ssrcs[LEG_KIND_COUNT];
    unsigned n = 0;
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++)
        if (to->streams[k].in_ssrc)
            ssrcs[n++] = to->streams[k].in_ssrc;
    if (!n || !to->srtp || !to->has_address)
        return;
    uint32_t sender;
    size_t rr;
    struct out_slot *slot = begin_compound(w, to, &sender, &rr);
    int len =
        slot ? media_rtcp_build_remb(sender, bitrate, ssrcs, n, slot->data + rr, RTCP_OUT_MAX - rr)
             : -1;
    if (len <= 0)
        return;
    leg_count(&w->counters.remb_sent, 1);
    send_rtcp(w, to, slot, rr + (size_t)len);
}

/* A receiving browser's own bandwidth limit (REMB) goes to the source. */
static void relay_remb(struct media_worker *w, struct leg *to, const struct media_rtcp_fb *fb)
{
    struct media_rtcp_remb remb;
    if (media_rtcp_parse_remb(fb, &remb) == 0)
        send_remb(w, to, remb.bitrate);
}

void relay_forget_receive_limit(struct media_worker *w, struct leg *receiver)
{
    if (receiver->receive_limit.limit_bps && receiver->peer && receiver->peer != receiver)
        send_remb(w, receiver->peer, MEDIA_BANDWIDTH_MAX_BPS);
    memset(&receiver->receive_limit, 0, sizeof(receiver->receive_limit));
}

void relay_send_receive_limit(struct media_worker *w, struct leg *leg, int64_t now_ms)
{
    uint64_t limit;
    if (media_bandwidth_update(&leg->receive_limit, now_ms, &limit) && leg->peer &&
        leg->peer != leg)
        send_remb(w, leg->peer, limit);
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
    /* Sent with this batch, within the same receive pass: its arrival time is ours to
     * subtract from the browser's report that echoes it. */
    if (send_rtcp(w, to, slot, 28))
        media_rtcp_sr_sent(&out->sent_srs, sr->ntp, w->arrival_us);
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
            note_peer_reports(from, &report, w->arrival_us);
            for (unsigned k = 0; report.has_sender_info && k < LEG_KIND_COUNT; k++) {
                if (!report.ssrc || report.ssrc != from->streams[k].in_ssrc)
                    continue;
                /* For the LSR/DLSR of our reports: the browser measures its round trip. */
                from->streams[k].rx.last_sr = (uint32_t)(report.ntp >> 16);
                from->streams[k].rx.last_sr_us = now_us; /* the clock of our reports */
                if (ready)
                    relay_sender_report(w, to, k, &report);
            }
        } else if (pkt.type == MEDIA_RTCP_RTPFB && pkt.count == MEDIA_RTCP_RTPFB_TWCC) {
            /* The browser's feedback about what we sent it: its path's loss. */
            struct media_rtcp_fb fb;
            struct media_rtcp_twcc twcc;
            if (media_rtcp_parse_fb(&pkt, &fb) == 0 && media_rtcp_parse_twcc(&fb, &twcc) == 0)
                media_bandwidth_feedback(&from->receive_limit, twcc.status_count,
                                         twcc.status_count - twcc.received_count);
        } else if (pkt.type == MEDIA_RTCP_RTPFB && pkt.count == MEDIA_RTCP_RTPFB_NACK) {
            struct media_rtcp_fb fb;
            if (media_rtcp_parse_fb(&pkt, &fb) == 0)
                answer_nack(w, from, &fb, (int64_t)(now_us / 1000));
        } else if (pkt.type == MEDIA_RTCP_PSFB && ready && pkt.count == MEDIA_RTCP_PSFB_AFB &&
                   to != from) {
            struct media_rtcp_fb fb;
            if (media_rtcp_parse_fb(&pkt, &fb) == 0)
                relay_remb(w, to, &fb);
        } else if (pkt.type == MEDIA_RTCP_PSFB && ready &&
                   (pkt.count == MEDIA_RTCP_PSFB_PLI || pkt.count == MEDIA_RTCP_PSFB_FIR)) {
            /* The browser lost the picture we send it: ask its source for a key frame. */
            relay_request_key_frame(w, to, now_us);
        }
    }
    if (rc < 0)
        leg_drop(w, MEDIA_DROP_MALFORMED);
}

static const char *codec_name(enum media_sdp_codec_id id)
{
    switch (id) {
    case MEDIA_SDP_CODEC_OPUS:
        return "opus";
    case MEDIA_SDP_CODEC_VP8:
        return "VP8";
    case MEDIA_SDP_CODEC_H264:
        return "H264";
    default:
        return "";
    }
}

/* An address as text: IPv4 (also mapped into IPv6, as a dual-stack socket sees it) as
 * a.b.c.d:port, IPv6 as [..]:port, "" for none. */
static void address_text(const struct sockaddr_storage *a, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "";
    out[0] = '\0';
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, ntohs(v4->sin_port));
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)a;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], host, sizeof(host));
            snprintf(out, cap, "%s:%u", host, ntohs(v6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
            snprintf(out, cap, "[%s]:%u", host, ntohs(v6->sin6_port));
        }
    }
}

void relay_leg_summary(const struct media_worker *w, struct leg *leg, int64_t now_ms,
                       struct media_leg_summary *out)
{
    if (out) {
        out->found = true;
        out->duration_ms = now_ms - leg->baseline_ms;
        for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
            const struct leg_stream *s = &leg->streams[k];
            struct media_leg_stream_summary *o = k == LEG_AUDIO ? &out->audio : &out->video;
            enum media_sdp_codec_id codec = s->totals.codec;
            if (codec == MEDIA_SDP_CODEC_OTHER && s->setup.codec_count)
                codec = s->setup.codecs[0];
            uint32_t expected = rx_expected(s) - s->totals.expected_at_base;
            uint32_t received = s->rx.received - s->totals.received_at_base;
            *o = (struct media_leg_stream_summary){
                .active = s->setup.active,
                .codec = codec_name(codec),
                .packets_received = s->totals.packets_in,
                .bytes_received = s->totals.bytes_in,
                .packets_sent = s->totals.packets_out,
                .bytes_sent = s->totals.bytes_out,
                .packets_lost = expected > received ? expected - received : 0,
                .jitter_ms = s->setup.clock_rate
                                 ? (double)s->rx.jitter_q4 / 16.0 * 1000.0 / s->setup.clock_rate
                                 : 0,
                .peer_reported = s->totals.peer_reported,
                .peer_fraction_lost_pct = s->totals.peer_fraction_lost * 100.0 / 256.0,
                .peer_lost = (int64_t)s->totals.peer_lost - s->totals.peer_lost_at_base,
            };
        }
        out->rtt_ms = leg->rtt_samples ? (double)leg->rtt_sum_us / leg->rtt_samples / 1000.0 : -1.0;
        if (leg->has_address)
            address_text(&leg->addr, out->remote, sizeof(out->remote));
        else
            out->remote[0] = '\0';
        out->local_port = w->port;
        out->protocol = "udp";
        out->candidate_type = "host"; /* ICE-lite: our one host candidate */
    }
    /* The new baseline. */
    leg->baseline_ms = now_ms;
    leg->rtt_sum_us = 0;
    leg->rtt_samples = 0;
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        struct leg_stream *s = &leg->streams[k];
        s->totals.packets_in = s->totals.bytes_in = 0;
        s->totals.packets_out = s->totals.bytes_out = 0;
        s->totals.expected_at_base = rx_expected(s);
        s->totals.received_at_base = s->rx.received;
        s->totals.peer_lost_at_base = s->totals.peer_lost;
        s->totals.peer_reported = false;
    }
}
