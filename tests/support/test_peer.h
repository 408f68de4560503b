/*
 * test_peer.h - a C test peer that plays a browser's part over real UDP on
 * 127.0.0.1: it writes a Chrome-like Unified Plan offer, reads the server's
 * answer, runs ICE as the controlling agent (Binding requests with
 * USE-CANDIDATE), the DTLS 1.2 handshake (pinning the server's certificate
 * to the answer's fingerprint), SRTP, and then sends an Opus sine tone and
 * VP8-shaped video whose payloads a receiving peer can check byte for byte.
 * For the integration tests and the load generator, against our server and
 * against Janus's EchoTest plugin (bench/janus_echo_check.c).
 *
 * DTLS role (RFC 5763 section 5): the offer says setup:actpass and the
 * answerer chooses. An answer with setup:passive (our server, ice-lite) or
 * without a=setup makes the peer the DTLS client: it sends the ClientHello
 * once its ICE check succeeded, and keys its outgoing SRTP with the client's
 * half of the exported keying material. An answer with setup:active (Janus,
 * which then starts the handshake itself) makes the peer the DTLS server
 * (SSL_set_accept_state): it waits for the ClientHello, asks for the client's
 * certificate and refuses a handshake without one, and keys its outgoing SRTP
 * with the server's half, the client's half being the far end's (RFC 5764
 * section 4.2). A ClientHello that arrives before the peer's own check
 * succeeded is kept and answered then, as Chrome does. actpass or holdconn in
 * an answer is refused; an ICE restart's answer may not change the role.
 *
 * ICE: the peer answers the far end's own Binding requests (a full agent such
 * as Janus's libnice checks the peer-reflexive address it learnt from our
 * checks, and takes no pair before its own check succeeds): USERNAME
 * "<our ufrag>:<its ufrag>" and MESSAGE-INTEGRITY with our password are
 * checked, and the success response (XOR-MAPPED-ADDRESS of the request's
 * source, MESSAGE-INTEGRITY with our password, FINGERPRINT) goes back to the
 * address the request came from.
 *
 * Video payloads. Each RTP payload is a 1-byte VP8 payload descriptor (0x10
 * on the first packet of a frame, else 0x00), a 16-byte header {uint32
 * magic "TPVP", uint32 tag, uint32 frame number, uint16 packet index,
 * uint16 data length} in network byte order, then `data length` bytes of a
 * generator seeded by (frame, index). A receiver checks that content, and
 * the order of (frame, index) per tag, without knowing the sender's state:
 * a relay may rewrite SSRC, sequence number, timestamp and payload type but
 * never the payload. The tag says whose video it is (tp_config.video_tag).
 * (The byte after the descriptor, the magic's "T", has VP8's P bit clear: a
 * VP8 payload parser takes every frame's first packet for a key frame. Key
 * frames here are only larger: 5x, see TP_VIDEO_KEYFRAME_EVERY.)
 *
 * Loss recovery (RFC 4585, RFC 4588), as a browser's receiver does it for
 * the video it receives: a gap in the sequence numbers of the server's
 * primary video SSRC makes the missing seqs "missing"; a generic NACK about
 * that SSRC asks for them TP_NACK_DELAY_MS after the gap shows, again every
 * TP_NACK_INTERVAL_MS up to TP_NACK_TRIES NACKs in all while any is still
 * missing, and a seq still missing TP_NACK_GIVE_UP_MS after the gap showed is
 * given up. A missing seq is recovered by an RTX packet (the answer's RTX
 * payload type for VP8 on the SSRC its a=ssrc-group:FID pairs with the
 * primary one, or on any SSRC when the answer has no FID group; payload =
 * 2-byte original seq + original payload) or by the original packet itself
 * arriving late on the primary SSRC (a plain resend). NACKs and PLIs go out
 * as reduced-size RTCP (rtcp-rsize: the one feedback packet, no report
 * before it) from our video SSRC, or our audio SSRC when we send no video.
 * Either then goes through the same payload checks as any video packet, but
 * not the (frame, index) order check: it is late by nature. Audio has no NACK
 * (the offer negotiates none for Opus, as browsers).
 *
 * Continuity, as counted in tp_stats: the primary video stream is "new"
 * packets, ones whose extended seq is above the highest so far. A new packet
 * more than 1 + TP_NACK_MAX_GAP ahead, or a packet more than
 * TP_LATE_WINDOW behind the highest, is a discontinuity: one video seq jump
 * at once, nothing NACKed, and the numbering starts afresh from it. A smaller
 * forward gap is loss: it becomes a video seq jump only when it is given up
 * (one jump per gap, however many of its seqs were given up), so a gap
 * recovered in time is no jump. A packet behind the highest that fills no gap
 * is late (a duplicate, or a seq already given up): counted in video_late,
 * not a jump. Video timestamps are compared only between new packets. RTX
 * packets never touch the primary stream's counters. Audio keeps the simple
 * rule: any audio packet whose seq is not the previous + 1 is a jump.
 *
 * Network moves: tp_peer_change_address() (a phone leaving Wi-Fi) and an ICE
 * restart (tp_peer_restart_ice(), then tp_peer_set_answer() again) keep the
 * DTLS association and the SRTP keys; the peer only runs ICE checks with
 * USE-CANDIDATE again, every 50 ms until a valid success answers one of
 * them. After an address change no media or RTCP leaves until that success
 * (no usable candidate pair yet, as in a browser), then media resumes with
 * its timestamps moved on by the time it was held; during an ICE restart
 * media goes on throughout (to the new answer's candidate once it is taken).
 *
 * Threads: tp_peer_new, _offer, _restart_ice, _set_answer, _start, _stop and
 * _free belong to one (the test's) thread; _wait_connected, _stats,
 * _set_silent, _set_audio_silent, _request_key_frame, _change_address,
 * _local_port and _send_raw may be called from any thread while the peer
 * runs. Each started peer runs one thread of its own that owns its socket,
 * ICE, DTLS and SRTP; calls from other threads leave it a request and wake it.
 *
 * Errors: functions taking `err`/`errlen` write a one-line English message
 * there on failure (`err` may be NULL). Nothing is logged.
 */
#ifndef TABIB_TEST_PEER_H
#define TABIB_TEST_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

struct media_srtp;
struct media_stun_ctx;

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

/* Loss recovery of received video (see above). */
#define TP_NACK_DELAY_MS    5    /* from a gap showing to its first NACK (lets a burst collect) */
#define TP_NACK_INTERVAL_MS 50   /* between NACKs of a seq still missing */
#define TP_NACK_TRIES       3    /* NACKs per missing seq, at most */
#define TP_NACK_GIVE_UP_MS  500  /* a missing seq is given up this long after its gap showed */
#define TP_NACK_MAX_GAP     256  /* larger forward gaps are a discontinuity, not loss */
#define TP_LATE_WINDOW      1024 /* seqs behind the highest still taken as late, not a jump */

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
    unsigned drop_video_every;    /* 0: off. Else the receiver discards every Nth new packet of
                                     the primary video stream (the Nth, 2Nth...) as if the network
                                     lost it, before SRTP sees it (so a plain resend is not a
                                     replay), and recovers it with NACKs like any loss */
    double drop_video_percent;    /* 0: off. Else each new primary video packet is lost with this
                                     probability (percent), at random (seeded by loss_seed), the
                                     same way as drop_video_every */
    uint32_t loss_seed;           /* 0: a fixed default, so a run can be repeated */
    double report_loss_percent;   /* the transport-wide feedback the peer sends the server (once
                                     a second, about all it receives) claims this share of the
                                     packets as lost, as a receiver on a lossy path would */
    bool media_off; /* connect (ICE, DTLS, SRTP) but send no RTP or RTCP, and skip encoding the
                       tone (the offer still sends what tone_hz and video_kbps say): for a
                       caller that takes the transport over with tp_peer_detach() */
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
 * tp_peer_start(): ICE credentials, fingerprints and a=setup (the DTLS
 * role, see above; actpass and holdconn are refused) of the BUNDLE
 * transport, per accepted m-line the first chosen payload type (Opus for
 * audio, VP8 for video), the header extension ids and the direction, the
 * RTX payload type of VP8 and the server's RTX SSRC (its a=ssrc-group:FID),
 * and the first "a=candidate:... udp <prio> 127.0.0.1 <port> typ host" line
 * (any other address is refused: traffic stays on loopback). Returns 0, or
 * -1 with `err`.
 *
 * After tp_peer_restart_ice() it takes the answer to the restart offer, also
 * on a running peer: the server's new ICE credentials (they must differ from
 * the previous ones), its candidate and RTX SSRC; the peer's new credentials
 * take effect with it and the peer checks again (see above). That answer must
 * carry the same fingerprints and DTLS role as the first one (the DTLS
 * association goes on) and the same payload types; otherwise it is refused
 * and nothing changes. A running peer without a restart pending refuses any answer.
 */
int tp_peer_set_answer(struct tp_peer *p, const char *sdp, char *err, size_t errlen);

/*
 * Starts the peer's thread (after tp_peer_set_answer): ICE checks every 50
 * ms until a success response with valid MESSAGE-INTEGRITY, FINGERPRINT and
 * XOR-MAPPED-ADDRESS; then the DTLS handshake as client or server
 * (retransmitted from 100 ms, doubling); then SRTP; then audio every 20 ms,
 * video frames at fps and RTCP every second (as a browser: an SR for each stream it sends, or an RR
 * when it sends none, whose report blocks echo the last SR received on each
 * stream as LSR/DLSR, so the far end can measure the round trip), while it
 * receives, decrypts and checks what arrives; consent checks every
 * consent_interval_ms. Returns 0, or -1 when
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
 * Asks the server for a key frame of the video we receive: one PLI (RFC
 * 4585) about the server's video SSRC (the primary SSRC received, else the
 * one its answer declares; none: nothing is sent), by the peer's thread as
 * soon as it is connected. Two calls before it acts send one PLI. Any
 * thread.
 */
void tp_peer_request_key_frame(struct tp_peer *p);

/*
 * With `silent`, the audio packets go on every 20 ms but carry Opus frames
 * of digital silence (encoded once at tp_peer_new, like the tone) and an
 * audio level of -127 dBov without voice activity: a browser's muted
 * microphone track. Without, the tone resumes. Any thread.
 */
void tp_peer_set_audio_silent(struct tp_peer *p, bool silent);

/*
 * Moves the peer to a new address, as a phone going from Wi-Fi to mobile
 * data: its thread opens a UDP socket on a new 127.0.0.1 port, closes the
 * old one, and sends ICE checks with USE-CANDIDATE from the new one every 50
 * ms until a success (no media meanwhile); DTLS and SRTP go on untouched.
 * Counted in address_changes once a check from the new socket succeeded.
 * Two calls before the thread acts move once. Any thread; a peer not yet
 * started moves when it starts.
 */
void tp_peer_change_address(struct tp_peer *p);

/*
 * Starts an ICE restart: new local ICE ufrag and password, and returns the
 * new offer (free with free()): tp_peer_offer()'s text with the new
 * credentials and the o= line's session version one higher, all else equal
 * (fingerprint, SSRCs, mids, codecs). Until the answer comes
 * (tp_peer_set_answer()) the peer goes on with its old credentials;
 * tp_peer_offer() returns the new offer from now on. Returns NULL when out
 * of memory or the random generator fails.
 */
char *tp_peer_restart_ice(struct tp_peer *p);

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
    bool dtls_server; /* the answer said setup:active: the peer is the DTLS server */
    uint64_t stun_sent, stun_success_received; /* checks and consent checks, and answers */
    uint64_t stun_requests_answered; /* the far end's own checks (a full ICE agent's) answered */
    uint64_t audio_sent, video_sent, video_frames_sent;     /* RTP packets, frames */
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

    /* Loss recovery of received video (all on the primary stream but rtx_received). */
    uint64_t video_dropped;     /* discarded on purpose (drop_video_every); not in video_received */
    uint64_t nacks_sent;        /* NACK packets sent */
    uint64_t nacked_seqs;       /* seqs asked for, repeats included */
    uint64_t rtx_received;      /* RTX on the server's RTX SSRC (any, without FID), padding too */
    uint64_t video_recovered;   /* missing seqs filled, by RTX or a late original */
    uint64_t video_unrecovered; /* missing seqs given up */
    uint64_t video_missing;     /* missing seqs right now, neither recovered nor given up */
    uint64_t video_late;        /* behind the highest seq and filling no gap: duplicate, too late */
    uint64_t video_recovery_max_us; /* the longest from a gap showing to its seq recovered */
    /* video_received counts the packets that reached the payload checks: new ones, recovered
     * ones (RTX included) and late ones. */

    /* Key frames. */
    uint64_t plis_sent;            /* tp_peer_request_key_frame() PLIs that went out */
    uint64_t pli_received;         /* PLIs about our video SSRC */
    uint64_t fir_received;         /* FIR entries for our video SSRC with a new command seq */
    uint64_t nacks_received;       /* NACKs about our video SSRC (the peer does not resend) */
    uint64_t key_frames_sent;      /* every key frame: periodic and requested */
    uint64_t key_frames_requested; /* of those, made early because of a PLI or FIR */

    /* Audio level of what was decoded: RMS of the last 0.5 s in dBFS (a full-scale sine is
     * -3); -120 when silent below that, or no audio for 1 s. */
    double audio_rms_dbfs;

    /* Network moves. */
    bool ice_checking;           /* ICE checks are under way: before the first success, or since an
                                    address change or ICE restart that has no success yet */
    uint64_t address_changes;    /* tp_peer_change_address() moves that a check success completed */
    uint64_t twcc_feedback_sent; /* transport-wide feedback packets the peer sent */
    uint64_t remb_received;      /* REMB about our own streams (a limit from the far side) */
    uint64_t remb_bps;           /* the last one's bitrate */
    uint64_t ice_restarts;       /* restarts whose new credentials a check success confirmed */
};

/* Fills `out` with a snapshot. Any thread. The peak frequency costs a few ms. */
void tp_peer_stats(struct tp_peer *p, struct tp_stats *out);

/* The peer's UDP port on 127.0.0.1 (for tests that send it datagrams from elsewhere); a new
 * one after an address change. Any thread. */
uint16_t tp_peer_local_port(const struct tp_peer *p);

/*
 * Sends `len` bytes (borrowed) as one datagram from the peer's own socket (the
 * current one) to the answer's candidate, even when silent. Any thread. Returns 0, -ENOTCONN
 * before tp_peer_set_answer(), or another negative errno.
 */
int tp_peer_send_raw(struct tp_peer *p, const void *data, size_t len);

/* One outgoing RTP stream and the header extensions the answer kept for its m-line: the
 * peer's own, and a detached peer's (tp_peer_detach). */
struct tp_stream {
    bool enabled; /* we offered to send and the answer accepted and lets us */
    uint8_t pt;
    uint32_t ssrc;
    uint16_t seq; /* the next to send */
    uint32_t ts;
    uint32_t packets, octets;                                      /* sent, for our SRs */
    uint8_t ext_mid, ext_abs_send_time, ext_twcc, ext_audio_level; /* ids, 0: not negotiated */
    char mid[33];                                                  /* MEDIA_SDP_MID_MAX + 1 */
};

/*
 * Writes the RTP header of the next packet of `s` at `b` (s->seq moves on),
 * with the one-byte-form extension (RFC 8285) a browser writes, holding the
 * elements the answer kept: mid, abs-send-time (from `now_us`), the
 * transport-wide sequence number (*twcc_seq, which moves on) and, for audio,
 * `audio_level` (the ssrc-audio-level byte: 0x80 for voice, and -dBov).
 * Returns the header length (at most 12 + 4 + 32 bytes).
 */
size_t tp_write_rtp_header(struct tp_stream *s, bool marker, uint8_t *b, uint64_t now_us,
                           uint16_t *twcc_seq, uint8_t audio_level);

/* The transport of a connected peer, handed to a caller that runs the media itself. */
struct tp_transport {
    int fd;                      /* the peer's UDP socket, bound to 127.0.0.1: now the caller's */
    struct sockaddr_in remote;   /* the candidate ICE chose */
    struct media_srtp *srtp;     /* the caller's: free with media_srtp_free() */
    struct media_stun_ctx *stun; /* the caller's: free with media_stun_ctx_free() */
    char local_ufrag[9], local_pwd[25];
    char remote_ufrag[257], remote_pwd[257];
    uint64_t tie_breaker;
    struct tp_stream audio, video;
    uint32_t rtx_ssrc;
};

/*
 * Takes a connected peer's transport for a caller that sends and receives by
 * itself (the load generator: one thread for thousands of legs, where a
 * thread per peer would cost more than the server it measures). Stops the
 * peer's thread without a close_notify and moves the socket, SRTP and STUN
 * state into `out`; the peer keeps nothing of them (its stats stay
 * readable, tp_peer_free() as usual). Returns 0, or -1 when the peer is not
 * connected (then nothing changes).
 */
int tp_peer_detach(struct tp_peer *p, struct tp_transport *out);

#endif
