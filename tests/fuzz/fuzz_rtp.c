/*
 * fuzz_rtp.c - hostile packets into the RTP codec and the stream rewriter.
 *
 * Each input is used twice:
 *  1. as one packet: parsed, its extension elements walked and decoded, its
 *     fields rewritten in place on a copy (which must parse the same but for
 *     those fields). Every view must stay inside the packet.
 *  2. as a script for the rewriter: each 8 bytes are one incoming packet
 *     (source, seq, timestamp, time step). Within a source the offsets
 *     between incoming and outgoing numbers never change; a switch continues
 *     right after the highest outgoing seq, with a timestamp that moved on.
 * Nothing may crash or read out of bounds.
 */
#include "fuzz_check.h"
#include <stdint.h>
#include <string.h>

#include "rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_view(const struct media_rtp_view *v, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(v->data == data && v->len == size);
    FUZZ_CHECK(v->header_len >= MEDIA_RTP_HEADER_SIZE);
    FUZZ_CHECK(v->header_len + v->payload_len + v->padding_len == size);
    FUZZ_CHECK(v->payload == data + v->header_len);
    FUZZ_CHECK(v->csrc_count <= 15 && v->csrc == data + MEDIA_RTP_HEADER_SIZE);
    FUZZ_CHECK(v->payload_type < 128);
    FUZZ_CHECK(v->padding == (v->padding_len > 0));
    if (v->extension) {
        FUZZ_CHECK(v->ext >= data + MEDIA_RTP_HEADER_SIZE + 4 &&
                   v->ext + v->ext_len <= data + v->header_len);
        FUZZ_CHECK(v->ext_len % 4 == 0);
    } else {
        FUZZ_CHECK(v->ext == NULL && v->ext_len == 0);
    }
}

static void fuzz_packet(const uint8_t *data, size_t size)
{
    enum media_rtp_kind kind = media_rtp_demux(data, size);
    FUZZ_CHECK(kind == MEDIA_RTP_KIND_INVALID || kind == MEDIA_RTP_KIND_RTP ||
               kind == MEDIA_RTP_KIND_RTCP);
    struct media_rtp_view v;
    int rc = media_rtp_parse(data, size, &v);
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTP_ERR_TRUNCATED || rc == MEDIA_RTP_ERR_VERSION ||
               rc == MEDIA_RTP_ERR_PADDING);
    if (rc != 0)
        return;
    FUZZ_CHECK(kind != MEDIA_RTP_KIND_INVALID);
    check_view(&v, data, size);

    /* Every element lies inside the extension block; the walk ends. */
    struct media_rtp_ext_iter it;
    struct media_rtp_ext e;
    media_rtp_ext_iter_init(&it, &v);
    unsigned n = 0;
    while ((rc = media_rtp_ext_next(&it, &e)) == 1) {
        FUZZ_CHECK(e.id != 0 && e.data >= v.ext && e.data + e.len <= v.ext + v.ext_len);
        if (v.ext_profile == MEDIA_RTP_EXT_ONE_BYTE)
            FUZZ_CHECK(e.id < 15 && e.len >= 1 && e.len <= 16);
        FUZZ_CHECK(++n <= v.ext_len);
    }
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTP_ERR_EXTENSION);
    FUZZ_CHECK(media_rtp_ext_next(&it, &e) == 0);

    for (unsigned id = 1; id < 256; id++) {
        if (media_rtp_ext_find(&v, (uint8_t)id, &e) != 0)
            continue;
        FUZZ_CHECK(e.id == id);
        uint32_t ast;
        uint16_t tw;
        bool voice;
        uint8_t level;
        const char *mid;
        size_t mid_len;
        if (media_rtp_ext_abs_send_time(&e, &ast) == 0)
            FUZZ_CHECK(ast < (1u << 24));
        (void)media_rtp_ext_twcc_seq(&e, &tw);
        if (media_rtp_ext_audio_level(&e, &voice, &level) == 0)
            FUZZ_CHECK(level < 128);
        if (media_rtp_ext_mid(&e, &mid, &mid_len) == 0)
            FUZZ_CHECK((const uint8_t *)mid + mid_len <= data + size);
    }

    /* Rewrite a copy: it parses to the same shape with the new fields. */
    uint8_t copy[2048];
    if (size > sizeof(copy))
        return;
    memcpy(copy, data, size);
    FUZZ_CHECK(media_rtp_set_ssrc(copy, size, 0x01020304) == 0);
    FUZZ_CHECK(media_rtp_set_seq(copy, size, 0xFFFF) == 0);
    FUZZ_CHECK(media_rtp_set_timestamp(copy, size, 0xFFFFFFFF) == 0);
    FUZZ_CHECK(media_rtp_set_payload_type(copy, size, 0xFF) == 0);
    int tw_rc = media_rtp_set_twcc_seq(copy, size, data[size - 1] % 16, 0xABCD);
    FUZZ_CHECK(tw_rc == 0 || tw_rc == MEDIA_RTP_ERR_NOT_FOUND || tw_rc == MEDIA_RTP_ERR_SIZE ||
               tw_rc == MEDIA_RTP_ERR_EXTENSION);
    struct media_rtp_view w;
    FUZZ_CHECK(media_rtp_parse(copy, size, &w) == 0);
    FUZZ_CHECK(w.ssrc == 0x01020304 && w.seq == 0xFFFF && w.timestamp == 0xFFFFFFFF);
    FUZZ_CHECK(w.payload_type == 0x7F && w.marker == v.marker);
    FUZZ_CHECK(w.header_len == v.header_len && w.payload_len == v.payload_len);
    if (tw_rc == 0) {
        uint16_t got;
        FUZZ_CHECK(media_rtp_ext_find(&w, data[size - 1] % 16, &e) == 0);
        FUZZ_CHECK(media_rtp_ext_twcc_seq(&e, &got) == 0 && got == 0xABCD);
    }
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void fuzz_rewriter(const uint8_t *data, size_t size)
{
    struct media_rtp_rewriter rw;
    media_rtp_rewriter_init(&rw, 0xFEEDFACE, size >= 2 ? rd16(data) : 0, 0xFFFFFF00u);
    uint64_t now = 0;
    bool have = false;
    uint32_t cur_ssrc = 0;
    uint16_t seq_delta = 0;
    uint32_t ts_delta = 0;
    for (size_t at = 2; at + 8 <= size; at += 8) {
        const uint8_t *r = data + at;
        uint32_t ssrc = r[0] & 0x03;
        if (r[0] & 0x04)
            media_rtp_rewriter_switch(&rw);
        uint16_t seq = rd16(r + 1);
        uint32_t ts = (uint32_t)r[3] << 24 | (uint32_t)r[4] << 16 | rd16(r + 5);
        now += (uint64_t)r[7] << (r[0] >> 4); /* steps up to 255 << 15 us */
        uint16_t prev_last_seq = rw.last_seq;
        uint32_t prev_last_ts = rw.last_ts;
        bool started = rw.started;
        uint16_t os = 0;
        uint32_t ot = 0;
        enum media_rtp_rewrite res =
            media_rtp_rewriter_map(&rw, ssrc, seq, ts, now, 90000, &os, &ot);
        FUZZ_CHECK((unsigned)res < MEDIA_RTP_REWRITE_COUNT && res != MEDIA_RTP_REWRITE_INVALID);
        bool new_source = !have || ssrc != cur_ssrc || (r[0] & 0x04);
        if (new_source) {
            FUZZ_CHECK(res == (started ? MEDIA_RTP_REWRITE_SWITCHED : MEDIA_RTP_REWRITE_OK));
            if (started) {
                FUZZ_CHECK(os == (uint16_t)(prev_last_seq + 1));
                FUZZ_CHECK(ot != prev_last_ts);
            }
            have = true;
            cur_ssrc = ssrc;
            seq_delta = (uint16_t)(os - seq);
            ts_delta = ot - ts;
            continue;
        }
        FUZZ_CHECK(res == MEDIA_RTP_REWRITE_OK || res == MEDIA_RTP_REWRITE_STALE);
        if (res == MEDIA_RTP_REWRITE_OK) {
            FUZZ_CHECK((uint16_t)(os - seq) == seq_delta);
            FUZZ_CHECK(ot - ts == ts_delta);
        }
    }
    /* And on a real buffer: only SSRC, seq and timestamp change. */
    uint8_t pkt[64];
    if (size < sizeof(pkt))
        return;
    memcpy(pkt, data, sizeof(pkt));
    enum media_rtp_rewrite res = media_rtp_rewriter_rewrite(&rw, pkt, sizeof(pkt), now, 48000);
    FUZZ_CHECK(memcmp(pkt + 12, data + 12, sizeof(pkt) - 12) == 0 && pkt[0] == data[0] &&
               pkt[1] == data[1]);
    if (res == MEDIA_RTP_REWRITE_STALE)
        FUZZ_CHECK(memcmp(pkt, data, sizeof(pkt)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_packet(data, size);
    fuzz_rewriter(data, size);
    return 0;
}
