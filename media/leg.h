/*
 * leg.h - a worker's legs and the worker itself, as the files of the worker
 * see them (private to media/: worker.c runs the loop, ICE-lite and DTLS;
 * relay.c moves RTP and RTCP between linked legs; answer.c turns an offer
 * into a leg set-up on the signalling thread).
 *
 * Everything in a struct media_worker belongs to its thread, except the
 * counters (atomics read by /metrics) and the fields set before the thread
 * starts. The packet path touches only preallocated memory.
 */
#ifndef TABIB_MEDIA_LEG_H
#define TABIB_MEDIA_LEG_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "dtls.h"
#include "audio_monitor.h"
#include "bandwidth.h"
#include "media.h"
#include "packet_cache.h"
#include "rtcp.h"
#include "rtp.h"
#include "sdp.h"
#include "srtp.h"
#include "stun.h"

#define LEG_RECV_BATCH   32
#define LEG_SEND_BATCH   64
#define LEG_DATAGRAM_MAX 1500
/* Room for a relayed packet: the largest datagram we accept, a rebuilt header
 * extension that may be longer than the one received, and the SRTP tag. */
#define LEG_SEND_BUFFER   (LEG_DATAGRAM_MAX + 64 + MEDIA_SRTP_MAX_OVERHEAD)
#define LEG_ADDRESS_SLOTS (2 * MEDIA_LEGS_PER_WORKER)

enum leg_kind { LEG_AUDIO = 0, LEG_VIDEO = 1, LEG_KIND_COUNT };

/* What the offer of one kind (audio or video) settled on this leg. */
struct leg_stream_setup {
    bool active;           /* the m-line was accepted */
    bool browser_sends;    /* sendrecv or sendonly: the browser sends on it */
    bool browser_receives; /* sendrecv or recvonly: we may send on it */
    unsigned codec_count;  /* choices, best first */
    enum media_sdp_codec_id codecs[2];
    uint8_t pts[2];        /* the payload type of each, both directions */
    int16_t rtx_pt;        /* of the first choice, -1 none */
    uint32_t clock_rate;   /* 48000 (Opus) or 90000 (video) */
    uint32_t out_ssrc;     /* ours toward the browser, declared in the answer */
    uint32_t out_rtx_ssrc; /* declared in the answer's FID group, 0 none */
    uint32_t offered_ssrc; /* the browser's from its a=ssrc, 0 when not declared */
    char mid[MEDIA_SDP_MID_MAX + 1];
};

/*
 * Everything a worker needs to add a leg, built on the signalling thread
 * (answer.c) or by media_engine_leg_add() for ICE-only legs, and handed over
 * through the mailbox.
 */
struct leg_setup {
    struct media_leg_params ice;
    bool has_fingerprint; /* false: an ICE-only leg, DTLS is refused */
    struct media_dtls_fingerprint remote_fingerprint;
    uint8_t ext_id[MEDIA_SDP_EXT_COUNT]; /* the offer's ids, 0 = not negotiated */
    struct leg_stream_setup streams[LEG_KIND_COUNT];
};

/* One kind of media on a leg while it runs. */
struct leg_stream {
    struct leg_stream_setup setup;
    uint32_t in_ssrc;                   /* the browser's, learned from its packets; 0 none */
    struct media_rtp_rewriter rewriter; /* our stream toward the browser */
    uint64_t last_key_frame_request_us; /* rate limit of PLIs toward the browser */
    /* For the SR we send on the browser's behalf: the last SR its source sent. */
    uint32_t sent_packets, sent_octets;
    struct media_packet_cache *cache; /* video: what we sent, to answer the browser's NACKs */
    /* What we received from the browser on this kind, for our receiver reports (RFC 3550
     * 6.4.1, A.1, A.3, A.8). */
    struct {
        bool started;
        uint16_t max_seq;
        uint32_t cycles; /* wraps of max_seq, times 65536 */
        uint32_t base_seq;
        uint32_t received;
        uint32_t expected_prior, received_prior;
        int64_t last_transit; /* arrival (clock units) - RTP timestamp */
        uint32_t jitter_q4;   /* interarrival jitter, clock units, times 16 */
        uint32_t last_sr;     /* middle 32 bits of the NTP time of the browser's last SR */
        uint64_t last_sr_us;  /* when it arrived */
    } rx;
    uint16_t rtx_seq;                      /* our RTX stream's numbering toward the browser */
    struct media_rtcp_sr_history sent_srs; /* the SRs we sent the browser: its LSR -> when */
    /* For media_engine_leg_summary(): counted since the leg's baseline (zeroed then) or, for
     * the *_at_base fields, the running totals at the baseline. */
    struct {
        uint64_t packets_in, bytes_in, packets_out, bytes_out;
        uint32_t expected_at_base, received_at_base; /* rx's, for the loss over the interval */
        int32_t peer_lost_at_base;                   /* the browser's cumulative lost then */
        int32_t peer_lost;                           /* ... in its latest report */
        uint8_t peer_fraction_lost;                  /* ... in its latest report */
        bool peer_reported;                          /* a report on us came since the baseline */
        enum media_sdp_codec_id codec;               /* of the last packet received */
    } totals;
};

struct leg {
    bool in_use;
    bool has_address;        /* a valid check arrived: media may come from `addr` */
    bool nominated;          /* USE-CANDIDATE selected `addr` */
    bool media_in;           /* RTP arrived from the browser */
    bool media_out_reported; /* the browser's reports say our RTP reaches it */
    bool reported_flowing;
    uint64_t id;
    struct leg_setup setup;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int64_t last_check_ms; /* the last valid Binding request (consent) */
    struct media_dtls *dtls;
    int64_t dtls_deadline_ms;         /* next retransmission, 0 none */
    struct media_srtp *srtp;          /* once DTLS is connected */
    struct leg *peer;                 /* the leg we relay to and from, NULL none */
    uint64_t peer_id;                 /* asked for by a link that found it missing; 0 none */
    uint16_t twcc_out_seq;            /* transport-wide numbering of what we send this browser */
    struct media_twcc_recorder twcc;  /* arrivals of what the browser sends, for its feedback */
    struct media_audio_monitor audio; /* its microphone, armed while in a consultation */
    struct media_bandwidth_limit receive_limit; /* what its path from us takes, from its feedback */
    unsigned audio_level_reported;              /* the speaking level last told to the owner */
    struct leg_stream streams[LEG_KIND_COUNT];
    int64_t baseline_ms; /* when the summary's interval began */
    uint64_t rtt_sum_us; /* round trips measured since then, for the summary's mean */
    uint32_t rtt_samples;
};

struct worker_counters {
    _Atomic uint64_t packets_received;
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t packets_dropped[MEDIA_DROP_REASON_COUNT];
    _Atomic uint64_t receive_batches;
    _Atomic uint64_t packets_sent;
    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t send_failures;
    _Atomic uint64_t send_messages;
    _Atomic uint64_t rtp_relayed;
    _Atomic uint64_t rtcp_relayed;
    _Atomic uint64_t key_frame_requests;
    _Atomic uint64_t feedback_sent;
    _Atomic uint64_t nacks_received;     /* NACK packets from browsers */
    _Atomic uint64_t nack_retransmitted; /* NACKed packets resent from the cache */
    _Atomic uint64_t nack_missed;        /* not in the cache (never had it, or too old) */
    _Atomic uint64_t nack_suppressed;    /* asked again too soon: not resent twice */
    _Atomic uint64_t nacks_forwarded;    /* NACKs passed on to the source for what we lacked */
    _Atomic uint64_t rtx_relayed;        /* retransmissions from a source relayed on */
    _Atomic uint64_t audio_decodes;      /* copied from the shared decoder's count */
    _Atomic uint64_t remb_sent;          /* bandwidth limits sent to source browsers */
    _Atomic uint64_t stun_answered;
    _Atomic uint64_t stun_refused;
    _Atomic uint64_t legs_active;
    _Atomic uint64_t legs_nominated;
    _Atomic uint64_t legs_expired;
    _Atomic uint64_t dtls_connected;
    _Atomic uint64_t dtls_failures[-MEDIA_DTLS_ERR_MIN + 1]; /* by -error */
    _Atomic uint64_t srtp_failures[-MEDIA_SRTP_ERR_MIN + 1]; /* by -error */
};

/* One outgoing datagram waiting for sendmmsg(). */
struct out_slot {
    struct sockaddr_storage addr;
    uint8_t data[LEG_SEND_BUFFER];
};

/*
 * A pass over the leg table that repeats every period_ms, spread over the
 * period in slices of LEG_SWEEP_SLICE_MS: each slice handles its share of the
 * legs that were in use when the pass began. Why: building 300 legs' feedback
 * or receiver reports in one go stalls the worker for a millisecond, and
 * every packet that arrives meanwhile waits behind it.
 */
#define LEG_SWEEP_SLICE_MS 5
struct leg_sweep {
    int64_t period_ms;
    int64_t start_ms; /* when the current pass began */
    unsigned slot;    /* the next slot to look at in this pass */
    unsigned visited; /* legs handled in this pass */
    unsigned planned; /* legs in use when the pass began */
};

struct media_worker {
    unsigned index;
    uint16_t port;
    int udp_fd;
    int epoll_fd;
    struct base_mailbox *mailbox;
    struct base_logger *log;
    struct base_mailbox *owner;
    struct media_stun_ctx *stun;
    struct media_dtls_ctx *dtls;
    struct leg *legs; /* MEDIA_LEGS_PER_WORKER slots */
    /* Legs by source address: open addressing, slot index + 1, 0 empty; rebuilt on change. */
    uint16_t by_address[LEG_ADDRESS_SLOTS];
    unsigned handshaking; /* legs with a DTLS timer */
    int64_t consent_ms;
    struct leg_sweep tick;     /* consent, receiver reports, receive limits: every TIMER_TICK_MS */
    int64_t next_dtls_ms;      /* the earliest DTLS deadline, 0 none */
    struct leg_sweep feedback; /* transport-wide feedback: every FEEDBACK_EVERY_MS */
    int64_t last_audio_check_ms;
    struct media_audio_decoder *audio_decoder; /* shared by the legs' audio monitors */
    pthread_t thread;
    bool thread_started;
    struct worker_counters counters;
    /* Receive buffers, allocated once: the packet path never allocates. */
    struct mmsghdr msgs[LEG_RECV_BATCH];
    struct iovec iovs[LEG_RECV_BATCH];
    struct sockaddr_storage addrs[LEG_RECV_BATCH];
    uint8_t buffers[LEG_RECV_BATCH][LEG_DATAGRAM_MAX];
    /* The kernel's receive timestamp of each datagram (SO_TIMESTAMPNS): arrival times for
     * congestion feedback that do not depend on when the worker got round to the packet. */
    union {
        struct cmsghdr align;
        uint8_t bytes[CMSG_SPACE(sizeof(struct timespec))];
    } control[LEG_RECV_BATCH];
    uint64_t arrival_us; /* of the datagram being handled */
    /* Send batch, and room to rebuild one packet as a retransmission. */
    uint8_t scratch[LEG_SEND_BUFFER];
    unsigned out_count;
    struct base_udp_sender *sender; /* joins a frame's packets to one receiver (UDP GSO) */
    struct mmsghdr out_msgs[LEG_SEND_BATCH];
    struct iovec out_iovs[LEG_SEND_BATCH];
    struct out_slot out[LEG_SEND_BATCH];
};

/* Relaxed add to a counter only this worker writes: no locked instruction. */
static inline void leg_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void leg_drop(struct media_worker *w, enum media_drop_reason reason)
{
    leg_count(&w->counters.packets_dropped[reason], 1);
}

/* worker.c: the next free outgoing slot to `to` (flushing a full batch first). */
struct out_slot *worker_out_slot(struct media_worker *w, const struct leg *to);
/* worker.c: commits the slot taken last with `len` bytes. */
void worker_out_commit(struct media_worker *w, size_t len);
/* worker.c: sends what is queued. */
void worker_flush(struct media_worker *w);

/* worker.c: pushes an event about a leg to the owner's mailbox. */
void worker_report(struct media_worker *w, uint32_t type, uint64_t leg_id, const char *reason);

/*
 * What the signalling side keeps of each leg it answered (answer.c, signalling
 * thread only): enough to answer a later offer of the same browser connection
 * in place.
 */
struct leg_record {
    uint64_t id;
    unsigned worker;
    struct leg_setup setup;
};

struct leg_records {
    struct leg_record *items;
    size_t count, cap;
    uint64_t ice_restarts;
};

/* answer.c: forgets leg `id` (if kept), and frees the lot. */
void leg_records_forget(struct leg_records *records, uint64_t id);
void leg_records_free(struct leg_records *records);

/* worker.c: engine internals for answer.c. */
struct leg_records *media_engine_records(struct media_engine *engine);
int media_engine_push_leg_update(struct media_engine *engine, unsigned index,
                                 struct leg_setup *setup);
uint64_t media_engine_new_leg_id(struct media_engine *engine, unsigned index);
int media_engine_push_leg(struct media_engine *engine, unsigned index, struct leg_setup *setup);
const char *media_engine_public_ip(const struct media_engine *engine);
uint16_t media_engine_worker_port(const struct media_engine *engine, unsigned index);
const uint8_t *media_engine_worker_fingerprint(const struct media_engine *engine, unsigned index);

/* relay.c: a decrypted RTP packet from `from` (in place, `len` bytes). */
void relay_rtp(struct media_worker *w, struct leg *from, uint8_t *data, size_t len,
               uint64_t now_us);
/* relay.c: a decrypted RTCP compound from `from`. */
void relay_rtcp(struct media_worker *w, struct leg *from, uint8_t *data, size_t len,
                uint64_t now_us);
/* relay.c: asks the browser of `leg` for a key frame of its video, rate-limited. */
void relay_request_key_frame(struct media_worker *w, struct leg *leg, uint64_t now_us);
/* relay.c: sends the browser of `leg` its transport-wide feedback, if any is due. */
void relay_send_feedback(struct media_worker *w, struct leg *leg);
/* relay.c: sends the browser of `leg` our receiver report on what it sends (once a second). */
void relay_send_receiver_report(struct media_worker *w, struct leg *leg, uint64_t now_us);
/* relay.c: once a second, tells the source browser the limit `leg`'s path calls for, if any. */
void relay_send_receive_limit(struct media_worker *w, struct leg *leg, int64_t now_ms);
/* relay.c: prepares a new leg's outgoing streams (random sequence and timestamp bases) and
 * its video packet cache. Returns 0, or -1 when out of memory. */
int relay_leg_init(struct leg *leg);
/* relay.c: makes the video packet cache if the leg now needs one (after a renegotiation). */
int relay_leg_ensure_cache(struct leg *leg);
/* relay.c: a receiving leg's limit on its sender is lifted (the sender is told) and forgotten. */
void relay_forget_receive_limit(struct media_worker *w, struct leg *receiver);
/* relay.c: frees what relay_leg_init() made. */
void relay_leg_free(struct leg *leg);
/* relay.c: writes what `leg` did since its baseline into `out` (found, duration, streams, round
 * trip, ICE path; `request` is the caller's), when `out` is not NULL; then starts a new
 * baseline at `now_ms`. Off the packet path: on a summary request. */
void relay_leg_summary(const struct media_worker *w, struct leg *leg, int64_t now_ms,
                       struct media_leg_summary *out);

#endif
