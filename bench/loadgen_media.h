/*
 * loadgen_media.h - the load generator's media engine: one thread that
 * sends and receives for every leg of a benchmark run.
 *
 * A leg joins the engine already connected: its ICE, DTLS handshake and
 * SRTP keys were made by a C test peer (tests/support/test_peer.h), which
 * then hands over its socket with tp_peer_detach(). From then on the engine
 * sends what a browser in a video consultation sends, and measures what
 * comes back:
 *   - audio: Opus, 20 ms frames of a speech-like signal encoded once with
 *     libopus (DTX off), one packet every 20 ms;
 *   - video: VP8-shaped frames at `video_fps`, sized for `video_kbps` (a key
 *     frame every 2 s is 4x a delta frame), split into packets of at most
 *     LG_VIDEO_MAX_PAYLOAD payload bytes, each frame in one burst;
 *   - STUN consent checks every 2 s, and answers to the server's own checks
 *     (a full-ICE server such as Janus sends them).
 * Every RTP packet carries its send time: the last LG_STAMP_BYTES of its
 * payload are RTP padding (RFC 3550 section 5.1) holding the CLOCK_REALTIME
 * nanoseconds it was handed to the kernel, encrypted with the payload. A
 * receiver reads the kernel's arrival time of the datagram (SO_TIMESTAMPNS,
 * the same clock) and so measures the delay the server added, loopback
 * included, without its own scheduling in it. Padding keeps the Opus frames
 * decodable by a server that decodes them.
 *
 * With receiver_gro the legs' sockets take UDP_GRO: a run of datagrams the
 * server sent as one segmented send arrives in one buffer, which the engine
 * cuts into its datagrams (the control message gives the segment size).
 *
 * Plain legs (the UDP forwarder ceiling) send the same packets without
 * SRTP: LG_PLAIN_TAG zero bytes stand for the tag, so sizes are equal.
 *
 * Threads: lg_engine_add_* and lg_engine_snapshot may be called from any
 * thread while the engine runs; the rest belongs to the caller's thread.
 */
#ifndef TABIB_BENCH_LOADGEN_MEDIA_H
#define TABIB_BENCH_LOADGEN_MEDIA_H

#include <stdbool.h>
#include <stdint.h>

#include <netinet/in.h>

#include "test_peer.h"

#define LG_VIDEO_MAX_PAYLOAD 1100 /* as Chrome's VP8 packetiser on a 1200-byte budget */
#define LG_STAMP_BYTES       12   /* send time (8), zeros, padding count */
#define LG_PLAIN_TAG         16   /* what SRTP-GCM adds; plain legs add zeros instead */
#define LG_MAX_LEGS          4096

/* Delay histogram: 1 µs buckets up to 10 ms, then 100 µs buckets up to 1 s. */
#define LG_DELAY_FINE_US   10000
#define LG_DELAY_COARSE_US 100
#define LG_DELAY_MAX_US    1000000
#define LG_DELAY_BUCKETS                                                                           \
    (LG_DELAY_FINE_US + (LG_DELAY_MAX_US - LG_DELAY_FINE_US) / LG_DELAY_COARSE_US + 1)

struct lg_media_config {
    unsigned video_kbps; /* 0: no video */
    unsigned video_fps;  /* default 30 */
    bool audio;          /* send Opus */
    bool receiver_gro;   /* take UDP_GRO buffers (a segmented run in one read), cut them up */
};

/* Totals since the engine started; the driver takes differences between two snapshots. */
struct lg_totals {
    uint64_t rtp_sent, rtp_sent_bytes;
    uint64_t rtp_received, rtp_received_bytes; /* authenticated and decrypted */
    uint64_t expected;    /* per received stream: highest - first + 1 extended seqs, summed */
    uint64_t duplicates;  /* refused as replays by SRTP, or seen twice (plain) */
    uint64_t reordered;   /* arrived behind a higher seq of its stream */
    uint64_t srtp_errors; /* refused for any other reason */
    uint64_t rtcp_received;
    uint64_t stun_answered, stun_requests_sent;
    uint64_t send_failures; /* datagrams the kernel refused (full buffer...) */
    uint64_t socket_drops;  /* datagrams for us the kernel dropped: our receive buffer was full
                               (the load generator's loss, not the server's) */
    uint64_t loops, wakeups;
    unsigned legs, legs_receiving;    /* legs, and those that received media */
    uint32_t delay[LG_DELAY_BUCKETS]; /* per-packet added delay, µs (see above) */
    uint64_t delay_over;              /* beyond LG_DELAY_MAX_US, or clock skew below 0 */
};

struct lg_engine;

/* A new engine (not running). NULL when out of memory or libopus fails. */
struct lg_engine *lg_engine_new(const struct lg_media_config *cfg);

/* Starts the engine's thread. Returns 0 or -1. */
int lg_engine_start(struct lg_engine *e);

/*
 * Adds a leg taken from a test peer (`t` is consumed: the engine owns its
 * socket, SRTP and STUN state from now on). `join_ns` is when the leg's
 * participant asked to join (CLOCK_REALTIME): the engine records the time
 * from it to the first media packet the leg receives. Returns the leg's
 * index, or -1 when the engine is full (then `t` is freed).
 */
int lg_engine_add_leg(struct lg_engine *e, struct tp_transport *t, int64_t join_ns);

/*
 * Adds a plain leg for the UDP forwarder: `fd` (consumed) sends to
 * `forwarder` and first registers as `side` of `pair` there. Returns the
 * index or -1.
 */
int lg_engine_add_plain_leg(struct lg_engine *e, int fd, const struct sockaddr_in *forwarder,
                            uint32_t pair, unsigned side, int64_t join_ns);

/*
 * Copies the totals (the engine copies them between two turns of its loop).
 * `setup_ns` (may be NULL) receives, for up to `setup_cap` legs in the order
 * they were added (the index lg_engine_add_* returned), the join-to-first-media
 * time, or -1 for a leg that has received nothing yet; the number of legs
 * written is returned (0 when `setup_ns` is NULL).
 */
unsigned lg_engine_snapshot(struct lg_engine *e, struct lg_totals *out, int64_t *setup_ns,
                            unsigned setup_cap);

/* CPU seconds (user + system) the engine's thread used so far. */
double lg_engine_cpu_seconds(struct lg_engine *e);

/* Stops the thread, closes every leg, frees everything. NULL does nothing. */
void lg_engine_free(struct lg_engine *e);

/* The current CLOCK_REALTIME in nanoseconds: the clock of join times and send stamps. */
int64_t lg_realtime_ns(void);

#endif
