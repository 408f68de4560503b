/*
 * bandwidth.h - the receiving side's limit for a sender (private to media/).
 *
 * A relay sits between two congestion controllers: the sending browser
 * estimates its path to the server from our transport-wide feedback, but
 * knows nothing of the path from the server to the receiving browser. When
 * that path is the narrow one (a phone on a weak network), the receiver's
 * transport-wide feedback about *our* packets shows it as loss, and the
 * sender must be told to slow down, or the receiver loses more and more.
 *
 * This is the loss-based half of Google Congestion Control
 * (draft-ietf-rmcat-gcc-02 section 6), run per receiving leg over windows of
 * about a second: loss over 10% lowers the limit to the rate that reached
 * the receiver times (1 - loss / 2); loss under 2% raises it by 8% a
 * window; in between it holds. No limit is set until loss first calls for
 * one, and a limit that has grown past MEDIA_BANDWIDTH_MAX_BPS is lifted.
 * The limit goes to the sending browser as REMB, which browsers take as a
 * ceiling on their own estimate.
 *
 * Pure value code: no allocation, no I/O. The worker owns one per leg.
 */
#ifndef TABIB_MEDIA_BANDWIDTH_H
#define TABIB_MEDIA_BANDWIDTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEDIA_BANDWIDTH_WINDOW_MS   1000
#define MEDIA_BANDWIDTH_MIN_REPORTS 20       /* packets a window needs to judge loss */
#define MEDIA_BANDWIDTH_MIN_BPS     100000   /* a floor: audio and a little video */
#define MEDIA_BANDWIDTH_MAX_BPS     10000000 /* past this, the limit is lifted */

struct media_bandwidth_limit {
    uint64_t limit_bps; /* 0: no limit in force */
    int64_t window_start_ms;
    uint32_t reported, lost; /* packets the receiver's feedback covered in the window */
    uint64_t sent_bytes;     /* what we sent the receiver in the window */
};

/* One transport-wide feedback from the receiver: `reported` packets, `lost` of them missing. */
void media_bandwidth_feedback(struct media_bandwidth_limit *b, unsigned reported, unsigned lost);

/* `bytes` sent to the receiver (media and retransmissions). */
void media_bandwidth_sent(struct media_bandwidth_limit *b, size_t bytes);

/*
 * Closes the window when it is due. Returns true when the sender must be
 * told `*limit_bps`: every window while a limit is in force, and once more
 * with MEDIA_BANDWIDTH_MAX_BPS when it is lifted.
 */
bool media_bandwidth_update(struct media_bandwidth_limit *b, int64_t now_ms, uint64_t *limit_bps);

#endif
