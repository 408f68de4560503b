/*
 * fuzz_rtcp.c - hostile compounds into the RTCP codec.
 *
 * Walks the compound, parses every packet of a known type, checks that every
 * view stays inside its packet, rebuilds what it parsed with the builders
 * (the rebuilt packet must parse back to the same values), and rewrites the
 * SSRCs of a copy in place (the copy must still walk the same way, with the
 * new SSRCs where the old ones were). Nothing may crash or read out of bounds.
 */
#include "fuzz_check.h"
#include <stdint.h>
#include <string.h>

#include "rtcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PKTS 64

static void check_report(const struct media_rtcp_pkt *p)
{
    struct media_rtcp_report r;
    int rc = media_rtcp_parse_report(p, &r);
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTCP_ERR_MALFORMED);
    if (rc)
        return;
    FUZZ_CHECK(r.block_count == p->count && r.has_sender_info == (p->type == MEDIA_RTCP_SR));
    FUZZ_CHECK(4 + (r.has_sender_info ? 20u : 0u) + 24u * r.block_count <= p->body_len);
    uint8_t buf[8 + 24 * MEDIA_RTCP_MAX_COUNT];
    int len = media_rtcp_build_rr(r.ssrc, r.blocks, r.block_count, buf, sizeof(buf));
    FUZZ_CHECK(len == 8 + 24 * (int)r.block_count);
    struct media_rtcp_iter it;
    struct media_rtcp_pkt q;
    media_rtcp_iter_init(&it, buf, (size_t)len);
    FUZZ_CHECK(media_rtcp_next(&it, &q) == 1 && media_rtcp_next(&it, &q) == 0);
    struct media_rtcp_report back;
    FUZZ_CHECK(media_rtcp_parse_report(&q, &back) == 0);
    FUZZ_CHECK(back.ssrc == r.ssrc && back.block_count == r.block_count);
    for (unsigned i = 0; i < r.block_count; i++) {
        FUZZ_CHECK(back.blocks[i].ssrc == r.blocks[i].ssrc);
        FUZZ_CHECK(back.blocks[i].cumulative_lost == r.blocks[i].cumulative_lost);
        FUZZ_CHECK(back.blocks[i].highest_seq == r.blocks[i].highest_seq);
        FUZZ_CHECK(back.blocks[i].delay_since_sr == r.blocks[i].delay_since_sr);
    }
}

static void check_nack(const struct media_rtcp_fb *fb)
{
    uint16_t seqs[512];
    int n = media_rtcp_nack_expand(fb, seqs, 512);
    FUZZ_CHECK(n == MEDIA_RTCP_ERR_MALFORMED || (n > 0 && (size_t)n <= fb->fci_len / 4 * 17));
    if (n <= 0 || n > 512)
        return;
    uint8_t buf[12 + 4 * 512];
    int len = media_rtcp_build_nack(1, 2, seqs, (size_t)n, buf, sizeof(buf));
    FUZZ_CHECK(len >= 16 && (size_t)len <= 12 + 4 * (size_t)n);
    struct media_rtcp_iter it;
    struct media_rtcp_pkt q;
    struct media_rtcp_fb f2;
    media_rtcp_iter_init(&it, buf, (size_t)len);
    FUZZ_CHECK(media_rtcp_next(&it, &q) == 1 && media_rtcp_parse_fb(&q, &f2) == 0);
    uint16_t again[512 * 17];
    int m = media_rtcp_nack_expand(&f2, again, 512 * 17);
    FUZZ_CHECK(m > 0 && m <= n);
    /* The same set: every rebuilt seq was asked for, and every asked seq rebuilt. */
    for (int i = 0; i < n; i++) {
        bool found = false;
        for (int j = 0; j < m && !found; j++)
            found = again[j] == seqs[i];
        FUZZ_CHECK(found);
    }
    for (int j = 0; j < m; j++) {
        bool asked = false;
        for (int i = 0; i < n && !asked; i++)
            asked = again[j] == seqs[i];
        FUZZ_CHECK(asked);
    }
}

static void check_fb(const struct media_rtcp_pkt *p)
{
    struct media_rtcp_fb fb;
    int rc = media_rtcp_parse_fb(p, &fb);
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTCP_ERR_MALFORMED);
    if (rc)
        return;
    FUZZ_CHECK(fb.fci == p->body + 8 && fb.fci_len + 8 == p->body_len);
    if (fb.type == MEDIA_RTCP_RTPFB && fb.fmt == MEDIA_RTCP_RTPFB_NACK)
        check_nack(&fb);
    int firs = media_rtcp_fir_count(&fb);
    if (firs > 0) {
        FUZZ_CHECK((size_t)firs * 8 == fb.fci_len);
        struct media_rtcp_fir_entry e;
        for (int i = 0; i < firs; i++)
            media_rtcp_fir_entry(&fb, (unsigned)i, &e);
    }
    struct media_rtcp_remb remb;
    if (media_rtcp_parse_remb(&fb, &remb) == 0) {
        FUZZ_CHECK(8 + 4 * (size_t)remb.ssrc_count <= fb.fci_len);
        uint8_t buf[20 + 4 * MEDIA_RTCP_MAX_REMB];
        int len =
            media_rtcp_build_remb(1, remb.bitrate, remb.ssrcs, remb.ssrc_count, buf, sizeof(buf));
        FUZZ_CHECK(len == 20 + 4 * (int)remb.ssrc_count);
        struct media_rtcp_iter it;
        struct media_rtcp_pkt q;
        struct media_rtcp_fb f2;
        struct media_rtcp_remb back;
        media_rtcp_iter_init(&it, buf, (size_t)len);
        FUZZ_CHECK(media_rtcp_next(&it, &q) == 1 && media_rtcp_parse_fb(&q, &f2) == 0);
        FUZZ_CHECK(media_rtcp_parse_remb(&f2, &back) == 0);
        FUZZ_CHECK(back.bitrate <= remb.bitrate && back.ssrc_count == remb.ssrc_count);
        FUZZ_CHECK(memcmp(back.ssrcs, remb.ssrcs, 4 * remb.ssrc_count) == 0);
    }
    struct media_rtcp_twcc tw;
    rc = media_rtcp_parse_twcc(&fb, &tw);
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTCP_ERR_MALFORMED || rc == MEDIA_RTCP_ERR_TYPE);
    if (rc == 0) {
        FUZZ_CHECK(tw.chunks == fb.fci + 8 && tw.deltas == tw.chunks + tw.chunks_len);
        FUZZ_CHECK(tw.deltas + tw.deltas_len <= fb.fci + fb.fci_len);
        FUZZ_CHECK(tw.received_count <= tw.status_count);
        static struct media_rtcp_twcc_packet pk[65536];
        FUZZ_CHECK(media_rtcp_twcc_packets(&tw, pk, 65536) == tw.status_count);
        unsigned received = 0;
        size_t delta_bytes = 0;
        for (unsigned i = 0; i < tw.status_count; i++) {
            FUZZ_CHECK(pk[i].seq == (uint16_t)(tw.base_seq + i) && pk[i].status <= 2);
            received += pk[i].status != 0;
            delta_bytes += pk[i].status;
            if (pk[i].status == MEDIA_RTCP_TWCC_SMALL_DELTA)
                FUZZ_CHECK(pk[i].delta_250us >= 0 && pk[i].delta_250us < 256);
            if (pk[i].status == MEDIA_RTCP_TWCC_NOT_RECEIVED)
                FUZZ_CHECK(pk[i].delta_250us == 0);
        }
        FUZZ_CHECK(received == tw.received_count && delta_bytes == tw.deltas_len);
    }
}

static void check_rewrite(const uint8_t *data, size_t size, const struct media_rtcp_pkt *pkts,
                          int n)
{
    static uint8_t copy[65536];
    if (size > sizeof(copy))
        return;
    memcpy(copy, data, size);
    int mapped[MAX_PKTS];
    for (int i = 0; i < n; i++) {
        int rc = media_rtcp_map_media_ssrc(copy, &pkts[i], 0, 0xFFFFFFFF);
        FUZZ_CHECK(rc >= 0 || rc == MEDIA_RTCP_ERR_MALFORMED);
        mapped[i] = rc;
        rc = media_rtcp_set_sender_ssrc(copy, &pkts[i], 0xFFFFFFFE);
        FUZZ_CHECK(rc == 0 || rc == MEDIA_RTCP_ERR_TYPE || rc == MEDIA_RTCP_ERR_MALFORMED);
    }
    /* The structure is untouched: the same packets at the same places. */
    struct media_rtcp_iter it;
    struct media_rtcp_pkt q;
    media_rtcp_iter_init(&it, copy, size);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(media_rtcp_next(&it, &q) == 1);
        FUZZ_CHECK(q.offset == pkts[i].offset && q.len == pkts[i].len && q.type == pkts[i].type &&
                   q.count == pkts[i].count && q.body_len == pkts[i].body_len);
        struct media_rtcp_fb fb;
        if (media_rtcp_parse_fb(&q, &fb) == 0) {
            FUZZ_CHECK(fb.sender_ssrc == 0xFFFFFFFE);
            struct media_rtcp_fb orig;
            FUZZ_CHECK(media_rtcp_parse_fb(&pkts[i], &orig) == 0);
            /* A failed mapping (a REMB short of its SSRCs) leaves the packet alone. */
            uint32_t want = orig.media_ssrc == 0 && mapped[i] >= 0 ? 0xFFFFFFFF : orig.media_ssrc;
            FUZZ_CHECK(fb.media_ssrc == want);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct media_rtcp_iter it;
    struct media_rtcp_pkt pkts[MAX_PKTS];
    media_rtcp_iter_init(&it, data, size);
    int n = 0, rc;
    size_t covered = 0;
    struct media_rtcp_pkt p;
    while ((rc = media_rtcp_next(&it, &p)) == 1) {
        FUZZ_CHECK(p.data == data + covered && p.offset == covered);
        FUZZ_CHECK(p.len >= 4 && p.len % 4 == 0 && p.offset + p.len <= size);
        FUZZ_CHECK(p.body == p.data + 4 && p.body_len <= p.len - 4);
        FUZZ_CHECK(p.count < 32);
        covered += p.len;
        if (n < MAX_PKTS)
            pkts[n++] = p;
        switch (p.type) {
        case MEDIA_RTCP_SR:
        case MEDIA_RTCP_RR:
            check_report(&p);
            break;
        case MEDIA_RTCP_BYE: {
            struct media_rtcp_bye bye;
            if (media_rtcp_parse_bye(&p, &bye) == 0 && bye.reason)
                FUZZ_CHECK((const uint8_t *)bye.reason + bye.reason_len <= p.body + p.body_len);
            break;
        }
        case MEDIA_RTCP_RTPFB:
        case MEDIA_RTCP_PSFB:
            check_fb(&p);
            break;
        default:
            break;
        }
    }
    FUZZ_CHECK(rc == 0 || rc == MEDIA_RTCP_ERR_TRUNCATED || rc == MEDIA_RTCP_ERR_VERSION ||
               rc == MEDIA_RTCP_ERR_PADDING);
    FUZZ_CHECK(media_rtcp_next(&it, &p) == rc);
    if (rc == 0)
        FUZZ_CHECK(covered == size);
    check_rewrite(data, size, pkts, n);
    return 0;
}
