/*
 * test_peer.h - a C test peer that plays a browser's part over real UDP on
 * 127.0.0.1: it writes a Chrome-like Unified Plan offer, reads the server's
 * answer, runs ICE as the controlling agent (Binding requests with
 * USE-CANDIDATE), the DTLS 1.2 client handshake (pinning the server's
 * certificate to the answer's fingerprint), SRTP, and then sends an Opus
 * sine tone and VP8-shaped video whose payloads a receiving peer can check
 * byte for byte. For the integration tests and the load generator.
 *
 * Video payloads. Each RTP payload is a 1-byte VP8 payload descriptor (0x10
 * on the first packet of a frame, else 0x00), a 16-byte header {uint32
 * magic "TPVP", uint32 tag, uint32 frame number, uint16 packet index,
 * uint16 data length} in network byte order, then `data length` bytes of a
 * generator seeded by (frame, index). A receiver checks that content, and
 * the order of (frame, index) per tag, without knowing the sender's state:
 * a relay may rewrite SSRC, sequence number, timestamp and payload type but
 * never the payload. The tag says whose video it is (tp_config.video_tag).
 *
 * Threads: tp_peer_new, _offer, _set_answer, _start, _stop and _free belong
 * to one (the test's) thread; _wait_connected, _stats, _set_silent and
 * _send_raw may be called from any thread while the peer runs. Each started
 * peer runs one thread of its own that owns its socket, ICE, DTLS and SRTP.
 *
 * Errors: functions taking `err`/`errlen` write a one-line English message
 * there on failure (`err` may be NULL). Nothing is logged.
 */
#ifndef TABIB_TEST_PEER_H
#define TABIB_TEST_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The payload types and header extension ids our offer uses. */
#define TP_OFFER_OPUS_PT        111
#define TP_OFFER_VP8_PT         96
#define TP_OFFER_RTX_PT         97
#define TP_EXT_AUDIO_LEVEL      1
#define TP_EXT_ABS_SEND_TIME    2
#define TP_EXT_TRANSPORT_CC     3
#define TP_EXT_MID              4
#define TP_VIDEO_MAGIC          0x54505650u /* "TPVP" */
#define TP_VIDEO_MAX_PAYLOAD    1100        /* RTP payload bytes per video packet, at most */
#define TP_VIDEO_KEYFRAME_EVERY 30          /* every 30th frame (0, 30, ...) is 5x larger */

/* What the peer does; zero fields take the defaults given. */
struct tp_config {
    const char *name;    /* for messages: "patient", "doctor"; default "peer" (copied) */
    double tone_hz;      /* Opus (48 kHz mono, 20 ms frames) of this sine; 0: no audio (recvonly) */
    unsigned video_kbps; /* VP8-shaped video at this bitrate; 0: no video (recvonly) */
    unsigned video_fps;  /* default 30 */
    uint32_t video_tag;  /* in every video payload; 0: random. Unique per peer: a receiver
                            tracks order per tag */
    bool lie_about_fingerprint;   /* offer a fingerprint that is NOT our certificate's */
    unsigned consent_interval_ms; /* STUN consent checks once ICE succeeded; default 2000 */
};

struct tp_peer;

/*
 * Returns a new peer: a UDP socket bound to 127.0.0.1 on a free port, fresh
 * ICE credentials and SSRCs, a new P-256 certificate, and (with a tone) one
 * second of the tone already Opus-encoded, which the peer sends in a loop.
 * Nothing is sent before tp_peer_start(). Borrows `cfg` (copies it; NULL:
 * all defaults, a peer that only receives).
 * Returns NULL with `err` on failure. Free with tp_peer_free().
 */
struct tp_peer *tp_peer_new(const struct tp_config *cfg, char *err, size_t errlen);

/* Stops the peer if it runs (tp_peer_stop) and frees it. NULL does nothing. */
void tp_peer_free(struct tp_peer *p);

/*
 * Our offer, Chrome-like Unified Plan: BUNDLE 0 1; audio mid 0 (Opus 111
 * 48000/2, rtcp-mux, rtcp-rsize), video mid 1 (VP8 96, rtx 97 apt=96,
 * rtcp-fb nack / nack pli / ccm fir / transport-cc / goog-remb); extmaps
 * ssrc-audio-level (audio only), abs-send-time, transport-wide-cc and mid
 * with the TP_EXT_* ids; ICE ufrag/pwd with ice-options:trickle, our
 * sha-256 fingerprint (or the lie), setup:actpass. An m-line we send on is
 * sendrecv with a=msid and a=ssrc cname/msid lines (video adds the RTX SSRC
 * and a=ssrc-group:FID); one we do not send on is recvonly without SSRCs.
 * The same text each call. Returns new memory (free with free()), or NULL
 * when out of memory.
 */
char *tp_peer_offer(struct tp_peer *p);

/*
 * Applies the server's answer (NUL-terminated, borrowed) before
 * tp_peer_start(): ICE credentials and fingerprints of the BUNDLE
 * transport, per accepted m-line the first chosen payload type (Opus for
 * audio, VP8 for video), the header extension ids and the direction, and
 * the first "a=candidate:... udp <prio> 127.0.0.1 <port> typ host" line
 * (any other address is refused: traffic stays on loopback). Returns 0, or
 * -1 with `err`.
 */
int tp_peer_set_answer(struct tp_peer *p, const char *sdp, char *err, size_t errlen);

/*
 * Starts the peer's thread (after tp_peer_set_answer): ICE checks every 50
 * ms until a success response with valid MESSAGE-INTEGRITY, FINGERPRINT and
 * XOR-MAPPED-ADDRESS; then the DTLS client handshake (retransmitted from 100
 * ms, doubling); then SRTP; then audio every 20 ms, video frames at fps and
 * an RTCP RR every second, while it receives, decrypts and checks what
 * arrives; consent checks every consent_interval_ms. Returns 0, or -1 when
 * there is no answer yet, the peer already ran, or the thread cannot start.
 * A peer runs once: start it again and it refuses.
 */
int tp_peer_start(struct tp_peer *p);

/*
 * Waits up to `timeout_ms` for the SRTP keys. Returns 0 when connected, -1
 * when DTLS failed (at once) or the time ran out, or the peer is not started.
 */
int tp_peer_wait_connected(struct tp_peer *p, int timeout_ms);

/*
 * With `silent`, the peer sends nothing at all from now on (no media, no
 * RTCP, no STUN, no DTLS), as if its network went away, but still receives.
 * Without, it resumes; media resumes with the next frame due.
 */
void tp_peer_set_silent(struct tp_peer *p, bool silent);

/*
 * Stops the peer's thread and joins it. A connected peer that is not silent
 * first sends a DTLS close_notify, as a browser closing the
 * RTCPeerConnection does. Statistics stay readable. Does nothing when the
 * thread does not run.
 */
void tp_peer_stop(struct tp_peer *p);

/* A snapshot of what the peer has done and seen. */
struct tp_stats {
    bool connected;   /* the SRTP keys were ready (stays true after tp_peer_stop) */
    bool dtls_failed; /* the handshake failed: a bad fingerprint either way, an alert... */
    bool dtls_closed; /* the server sent close_notify after connecting */
    int dtls_alert;   /* the last alert the server sent (42 bad_certificate...), -1 none */
    uint64_t stun_sent, stun_success_received;          /* checks and consent checks, and answers */
    uint64_t audio_sent, video_sent, video_frames_sent; /* RTP packets, frames */
    uint64_t audio_received, video_received, rtcp_received; /* decrypted */
    uint64_t srtp_errors;              /* SRTP or SRTCP that failed to unprotect */
    uint64_t video_payload_mismatches; /* not byte-identical to what its sender made */
    uint64_t video_out_of_order;       /* (frame, index) below the highest seen of its tag */
    uint64_t audio_decoded_samples;    /* 48 kHz mono samples out of the Opus decoder */
    double audio_peak_hz; /* dominant frequency of the last 0.5 s decoded; 0 when none, silent,
                             or no audio for 1 s */
    uint32_t last_video_ssrc_received, last_audio_ssrc_received;
    uint32_t last_video_tag_received; /* whose video arrived last (0: none yet) */
    uint64_t video_tag_since_us;      /* when that tag's first packet arrived (CLOCK_MONOTONIC) */
    /* Continuity of what arrives, as a browser's jitter buffer sees it: a sequence number
     * that is not the previous + 1, or a timestamp that goes backwards. (The relay keeps
     * both continuous across a change of source.) */
    uint64_t audio_seq_jumps, video_seq_jumps;
    uint64_t audio_ts_backwards, video_ts_backwards;
    uint64_t ssrc_changes; /* the SSRC of either kind changed: the stream restarted */
};

/* Fills `out` with a snapshot. Any thread. The peak frequency costs a few ms. */
void tp_peer_stats(struct tp_peer *p, struct tp_stats *out);

/* The peer's UDP port on 127.0.0.1 (for tests that send it datagrams from elsewhere). */
uint16_t tp_peer_local_port(const struct tp_peer *p);

/*
 * Sends `len` bytes (borrowed) as one datagram from the peer's own socket to
 * the answer's candidate, even when silent. Any thread. Returns 0, -ENOTCONN
 * before tp_peer_set_answer(), or another negative errno.
 */
int tp_peer_send_raw(struct tp_peer *p, const void *data, size_t len);

#endif
