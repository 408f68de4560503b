/*
 * bandwidth.c - the receiving side's limit for a sender: the loss-based half
 * of Google Congestion Control over one-second windows (see bandwidth.h).
 */
#include "bandwidth.h"

void media_bandwidth_feedback(struct media_bandwidth_limit *b, unsigned reported, unsigned lost)
{
    b->reported += reported;
    b->lost += lost <= reported ? lost : reported;
}

void media_bandwidth_sent(struct media_bandwidth_limit *b, size_t bytes)
{
    b->sent_bytes += bytes;
}

bool media_bandwidth_update(struct media_bandwidth_limit *b, int64_t now_ms, uint64_t *limit_bps)
{
    if (!b->window_start_ms) {
        b->window_start_ms = now_ms;
        return false;
    }
    int64_t span = now_ms - b->window_start_ms;
    if (span < MEDIA_BANDWIDTH_WINDOW_MS)
        return false;
    uint64_t rate = b->sent_bytes * 8u * 1000u / (uint64_t)span;
    bool judged = b->reported >= MEDIA_BANDWIDTH_MIN_REPORTS;
    double loss = judged ? (double)b->lost / (double)b->reported : 0.0;
    uint64_t was = b->limit_bps;
    if (judged && loss > 0.10) {
        /* What reached the receiver, less half the loss: GCC's multiplicative decrease. */
        uint64_t cut = (uint64_t)((double)rate * (1.0 - 0.5 * loss));
        if (cut < MEDIA_BANDWIDTH_MIN_BPS)
            cut = MEDIA_BANDWIDTH_MIN_BPS;
        b->limit_bps = b->limit_bps && b->limit_bps < cut ? b->limit_bps : cut;
    } else if (judged && loss < 0.02 && b->limit_bps) {
        b->limit_bps = b->limit_bps + b->limit_bps * 8 / 100;
        if (b->limit_bps > MEDIA_BANDWIDTH_MAX_BPS)
            b->limit_bps = 0; /* recovered: no ceiling any more */
    }
    b->window_start_ms = now_ms;
    b->reported = b->lost = 0;
    b->sent_bytes = 0;
    if (b->limit_bps) {
        *limit_bps = b->limit_bps;
        return true;
    }
    if (was) {
        *limit_bps = MEDIA_BANDWIDTH_MAX_BPS; /* lift the ceiling the sender still holds */
        return true;
    }
    return false;
}
