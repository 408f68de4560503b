/*
 * media.h - the media engine: N worker threads, each with one UDP socket,
 * one epoll loop and the legs pinned to it.
 *
 * Media knows nothing of clinics or people. Others talk to a worker only
 * through its mailbox; a worker reports upward by pushing messages to the
 * mailbox given at start. Counters are plain per-worker atomics that any
 * thread may read without locking the worker.
 */
#ifndef TABIB_MEDIA_H
#define TABIB_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

struct media_engine;

struct media_engine_config {
    const char *bind_host;       /* IP literal to bind, or NULL / "" for every interface */
    uint16_t base_port;          /* worker i binds base_port + i */
    unsigned worker_count;       /* >= 1 */
    struct base_logger *log;     /* borrowed; must outlive the engine */
    struct base_mailbox *owner;  /* borrowed; where workers report (probe replies, leg events) */
    unsigned consent_timeout_ms; /* a leg without a valid STUN check this long ends;
                                    0 = 30000 (RFC 7675) */
    const char *public_ip;       /* the address put in answers' host candidates; NULL =
                                    "127.0.0.1". Borrowed: must outlive the engine */
    bool no_segmentation;        /* send every datagram alone, never a UDP segmented run */
};

/* Size of the by-reason failure arrays below; see media_dtls_failure_name(). */
#define MEDIA_FAILURE_KINDS 16

/* Why a received datagram was dropped; each reason has its own counter. */
enum media_drop_reason {
    MEDIA_DROP_TOO_SHORT = 0,   /* fewer bytes than any protocol we speak */
    MEDIA_DROP_TOO_LARGE,       /* longer than the 1500-byte receive buffer: truncated */
    MEDIA_DROP_UNKNOWN_KIND,    /* first byte is not STUN, DTLS or RTP/RTCP (RFC 7983) */
    MEDIA_DROP_NO_LEG,          /* well-formed, but no leg expects it from that address */
    MEDIA_DROP_NOT_CONNECTED,   /* SRTP before the leg's DTLS handshake ended, or DTLS to a
                                   leg that takes none */
    MEDIA_DROP_DTLS,            /* a DTLS datagram the leg refused (malformed, or the leg failed) */
    MEDIA_DROP_SRTP,            /* SRTP/SRTCP that did not authenticate or was a replay */
    MEDIA_DROP_MALFORMED,       /* decrypted RTP/RTCP that does not parse */
    MEDIA_DROP_UNKNOWN_PAYLOAD, /* a payload type the leg did not negotiate, or that the far
                                   leg cannot take */
    MEDIA_DROP_RTX,             /* retransmissions and padding probes: not relayed yet */
    MEDIA_DROP_NO_PEER,         /* the leg is not linked to another */
    MEDIA_DROP_PEER_NOT_READY,  /* the far leg has no address or no SRTP keys yet */
    MEDIA_DROP_STALE,           /* older than the first packet relayed from its source */
    MEDIA_DROP_REASON_COUNT,
};

/* A consistent-enough snapshot of one worker's counters (each read is atomic). */
struct media_worker_stats {
    uint16_t port;
    uint64_t packets_received;
    uint64_t bytes_received;
    uint64_t packets_dropped[MEDIA_DROP_REASON_COUNT];
    uint64_t receive_batches; /* recvmmsg calls that returned at least one datagram */
    uint64_t packets_sent;    /* datagrams sent: relayed media, RTCP, DTLS, STUN answers */
    uint64_t bytes_sent;
    uint64_t send_failures;      /* datagrams the kernel refused (buffer full, address gone) */
    uint64_t send_messages;      /* sendmmsg messages: a UDP segmented run is one message */
    uint64_t rtp_relayed;        /* RTP packets forwarded to the far leg */
    uint64_t rtcp_relayed;       /* RTCP packets (SR, PLI, FIR) forwarded or made for it */
    uint64_t key_frame_requests; /* PLIs sent to a browser (new viewer, lost picture) */
    uint64_t feedback_sent;      /* transport-wide congestion feedback packets sent */
    uint64_t nacks_received;     /* NACK packets from browsers */
    uint64_t nack_retransmitted; /* NACKed packets resent from the packet cache */
    uint64_t nack_missed;        /* NACKed packets not in the cache (lost before the server) */
    uint64_t nack_suppressed;    /* NACKed again too soon: not resent twice */
    uint64_t nacks_forwarded;    /* NACKs passed on to the source browser for what we lacked */
    uint64_t rtx_relayed;        /* retransmissions from a source browser relayed on */
    uint64_t audio_decodes;      /* Opus packets the audio monitor decoded (a sample) */
    uint64_t remb_sent; /* bandwidth limits (REMB) sent to source browsers for their receivers */
    uint64_t dtls_connected;                     /* handshakes completed */
    uint64_t dtls_failures[MEDIA_FAILURE_KINDS]; /* legs ended by DTLS, by reason */
    uint64_t srtp_failures[MEDIA_FAILURE_KINDS]; /* packets refused by SRTP, by reason */
    uint64_t stun_answered;                      /* valid Binding requests answered with success */
    uint64_t stun_refused;   /* STUN requests dropped: bad integrity, fingerprint, username... */
    uint64_t legs_active;    /* gauge */
    uint64_t legs_nominated; /* USE-CANDIDATE seen for a new address */
    uint64_t legs_expired;   /* ended by consent freshness */
};

/* ------------------------------------------------------------------------- */
/* Legs: one participant's peer connection, pinned to one worker              */
/* ------------------------------------------------------------------------- */

#define MEDIA_UFRAG_MAX       32 /* our ufrags: 4-32 ICE characters */
#define MEDIA_PWD_MAX         64 /* our passwords: 22-64 ICE characters */
#define MEDIA_LEGS_PER_WORKER 1024

struct media_leg_params {
    uint64_t leg_id;                            /* the caller's, unique in the engine */
    char local_ufrag[MEDIA_UFRAG_MAX + 1];      /* ours, put in the SDP answer */
    char local_pwd[MEDIA_PWD_MAX + 1];          /* ours */
    char remote_ufrag[MEDIA_UFRAG_MAX * 8 + 1]; /* the offer's (<= 256), "" = not checked */
};

/*
 * Messages workers push to the owner mailbox about legs: `arg` is the leg id,
 * `sender` the worker's thread id. No `ptr`.
 */
enum media_event {
    MEDIA_EVENT_LEG_NOMINATED = BASE_MSG_MODULE_FIRST + 100, /* ICE selected a (new) address */
    MEDIA_EVENT_LEG_EXPIRED,   /* consent freshness ran out: the leg is gone */
    MEDIA_EVENT_LEG_REFUSED,   /* could not add: the worker's table is full or the id is taken */
    MEDIA_EVENT_LEG_CONNECTED, /* DTLS done, SRTP keyed: media can flow */
    MEDIA_EVENT_LEG_FAILED,    /* DTLS failed (wrong fingerprint, alert, timeout...): the leg is
                                  gone. `ptr` is a static string naming the reason (do not free) */
    MEDIA_EVENT_LEG_FLOWING,   /* media flowed both ways: the browser sent RTP and reported
                                  receiving ours (sent once per leg) */
    MEDIA_EVENT_LEG_AUDIO,     /* in a consultation, the browser's microphone went silent or
                                  came back, or its speaking level moved: `ptr` is a
                                  struct media_audio_event the owner frees */
    MEDIA_EVENT_LEG_SUMMARY,   /* the answer to media_engine_leg_summary(): `ptr` is a
                                  struct media_leg_summary the owner frees */
};

/* What MEDIA_EVENT_LEG_AUDIO carries. */
struct media_audio_event {
    const char *state; /* "ok", "silent" (digital silence), "no_packets"; static */
    bool state_changed;
    unsigned level; /* speaking level 0..100 */
};

/* What one kind of media (audio or video) did on a leg over a summary's interval. */
struct media_leg_stream_summary {
    bool active;       /* the kind was negotiated on the leg; nothing below counts otherwise */
    const char *codec; /* "opus", "VP8", "H264": of the last packet the browser sent, else the
                          first negotiated; "" none. Static */
    /* From the browser: RTP packets (retransmissions and padding probes included) and their
     * bytes as decrypted (header, extensions, payload, padding; no SRTP tag, no UDP/IP). */
    uint64_t packets_received, bytes_received;
    /* To the browser: relayed RTP and retransmissions from the packet cache, counted the
     * same way. */
    uint64_t packets_sent, bytes_sent;
    /* Lost on the way to us: packets the browser's sequence numbers say it sent over the
     * interval minus those that arrived (RFC 3550 A.3; retransmissions not counted as
     * arrivals), never below 0. */
    uint64_t packets_lost;
    double jitter_ms; /* our interarrival jitter estimate (RFC 3550 A.8) at the end, ms */
    /* What the browser's own receiver reports said about our stream to it: whether one came
     * during the interval, the fraction lost in its last one (0..100 %), and how much its
     * cumulative lost grew over the interval (may be negative: duplicates, RFC 3550 6.4.1). */
    bool peer_reported;
    double peer_fraction_lost_pct;
    int64_t peer_lost;
};

/* Room for an address as text: "[" IPv6 "]:" port. */
#define MEDIA_ADDRESS_TEXT_MAX 56

/*
 * What a leg did between two media_engine_leg_summary() requests (or its
 * creation and the first): the answer carried by MEDIA_EVENT_LEG_SUMMARY.
 */
struct media_leg_summary {
    uint64_t request;    /* the caller's token, as given */
    bool found;          /* false: the worker had no such leg (ended meanwhile); nothing below */
    int64_t duration_ms; /* from the baseline to this request */
    struct media_leg_stream_summary audio, video;
    /* Round trip between us and the browser, ms: the mean over the interval of what its
     * receiver reports' LSR/DLSR give against the SRs we sent it (RFC 3550 6.4.1); -1 when
     * none could be measured (no SR relayed to it, or no report back). */
    double rtt_ms;
    /* The ICE path: the selected pair's remote side (the browser's address, "" none yet;
     * IPv4 without the ::ffff: prefix) and ours. We are ICE-lite with one host candidate
     * over UDP, so `protocol` is "udp" and `candidate_type` "host" (static strings). */
    char remote[MEDIA_ADDRESS_TEXT_MAX];
    uint16_t local_port;
    const char *protocol;
    const char *candidate_type;
};

/* ------------------------------------------------------------------------- */
/* Offers, answers and the relay                                              */
/* ------------------------------------------------------------------------- */

/*
 * Answers a browser's SDP offer (`len` bytes, Unified Plan, BUNDLE,
 * rtcp-mux) with a leg: fresh ICE credentials, the worker's DTLS
 * fingerprint, our SSRCs and msids, one host candidate at public_ip and the
 * worker's port. On success sets `*leg_id` (unique in the engine) and
 * `*answer` (malloc'd SDP; the caller frees it) and returns 0. Otherwise
 * returns -EINVAL with `err` naming what the offer lacks (e.g. "line 31:
 * a=rtpmap:111 opus: expected <name>/<clock>") or -ENOMEM / -EAGAIN (the
 * worker's mailbox is full) with `err` saying so. Signalling thread.
 *
 * `replaces` is the sender's current leg (0 when none). When the offer comes
 * from the same RTCPeerConnection (the same DTLS certificate fingerprint),
 * the leg is kept: its DTLS association, SRTP keys, SSRCs and numbering go on,
 * and only what the offer changed is taken, in particular new ICE
 * credentials (an ICE restart: a browser keeps its DTLS across one, so the
 * server must too); `*leg_id` is then `replaces` itself, on its own worker.
 * Otherwise a new leg is made on worker `index` and the caller releases the
 * old one.
 */
int media_engine_answer_offer(struct media_engine *engine, unsigned index, const char *sdp,
                              size_t len, uint64_t replaces, uint64_t *leg_id, char **answer,
                              char *err, size_t errlen);

/* The worker a leg of media_engine_answer_offer() lives on. */
unsigned media_engine_leg_worker(const struct media_engine *engine, uint64_t leg_id);

/*
 * Relays between two legs on the same worker, both ways (or, when leg_a ==
 * leg_b, loops a leg's media back to its own browser: the waiting patient's
 * self-test): each one's audio and
 * video go out to the other under the other's SSRCs, with continuous
 * sequence numbers and timestamps, and each one's key-frame requests reach
 * the other. A leg has at most one peer: linking replaces an older link of
 * either. Returns 0, -EXDEV (the legs are on different workers), -EINVAL or
 * -EAGAIN.
 */
int media_engine_link(struct media_engine *engine, uint64_t leg_a, uint64_t leg_b);

/* Ends the relay of `leg_id` (and of its peer toward it). Returns 0, -EINVAL or -EAGAIN. */
int media_engine_unlink(struct media_engine *engine, uint64_t leg_id);

/*
 * Asks the worker of `leg_id` (through its mailbox, so in order with links,
 * unlinks and removals) what happened on the leg since its baseline (its
 * creation, or the previous request) and starts a new baseline. With
 * `request` 0 it only starts the new baseline and reports nothing (a
 * consultation starting: what came before is not counted). Otherwise the
 * worker answers exactly once with MEDIA_EVENT_LEG_SUMMARY (arg = the leg,
 * ptr = a struct media_leg_summary the owner frees, `request` as given),
 * `found` false when the leg is gone; the answer is lost only if the owner's
 * mailbox is full. Signalling thread. Returns 0, -EINVAL (no such worker),
 * -ENOMEM or -EAGAIN (the worker's mailbox is full): then nothing comes.
 */
int media_engine_leg_summary(struct media_engine *engine, uint64_t leg_id, uint64_t request);

/*
 * Ends a leg of media_engine_answer_offer() (on whichever worker it is) and
 * forgets what the signalling side kept of it. Signalling thread. Also to be
 * called for a leg the workers reported gone. Returns 0, -EINVAL or -EAGAIN.
 */
int media_engine_leg_release(struct media_engine *engine, uint64_t leg_id);

/* ICE restarts answered in place since start (signalling thread's counter). */
uint64_t media_engine_ice_restarts(const struct media_engine *engine);

/*
 * Adds a leg to worker `index` (asynchronously, through its mailbox; `p` is
 * copied). From then on the worker answers ICE checks for it. Returns 0,
 * -EINVAL (bad credentials or index), -ENOMEM or -EAGAIN (mailbox full).
 */
int media_engine_leg_add(struct media_engine *engine, unsigned index,
                         const struct media_leg_params *p);

/* Removes a leg (asynchronously). Returns 0, -EINVAL or -EAGAIN. */
int media_engine_leg_remove(struct media_engine *engine, unsigned index, uint64_t leg_id);

/*
 * Binds one UDP socket per worker and starts the workers. Returns the new
 * engine, or NULL with `err` naming the port that failed (nothing is left
 * running). Stop and free with media_engine_stop().
 */
struct media_engine *media_engine_start(const struct media_engine_config *cfg, char *err,
                                        size_t errlen);

/* Asks every worker to stop, joins them, closes the sockets, frees. NULL does nothing. */
void media_engine_stop(struct media_engine *engine);

unsigned media_engine_worker_count(const struct media_engine *engine);

/*
 * Sends a health probe to worker `index`; it answers BASE_MSG_PROBE_REPLY with
 * sender BASE_THREAD_MEDIA_FIRST + index and arg = `seq` into `reply_to`.
 * Returns 0 or -EAGAIN (the worker's mailbox is full: it is not keeping up).
 */
int media_engine_probe(struct media_engine *engine, unsigned index, struct base_mailbox *reply_to,
                       uint64_t seq);

/* Reads worker `index`'s counters into `out` (any thread). */
void media_engine_worker_stats(const struct media_engine *engine, unsigned index,
                               struct media_worker_stats *out);

/* The counter name of a drop reason for /metrics ("too_short", ...). */
const char *media_drop_reason_name(enum media_drop_reason reason);

/*
 * The counter names of the entries of dtls_failures[] and srtp_failures[]
 * ("fingerprint", "timeout", ...; "auth", "replay", ...), or NULL for an
 * index that is not used.
 */
const char *media_dtls_failure_name(unsigned index);
const char *media_srtp_failure_name(unsigned index);

/*
 * The kind of a datagram by its first byte (RFC 7983 section 7). Pure; used
 * by the worker's demultiplexer and by the tests.
 */
enum media_packet_kind {
    MEDIA_PACKET_UNKNOWN = 0,
    MEDIA_PACKET_STUN,
    MEDIA_PACKET_DTLS,
    MEDIA_PACKET_RTP, /* RTP or RTCP: told apart later by payload type */
};

enum media_packet_kind media_classify_packet(const uint8_t *data, size_t len);

#endif
