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
    unsigned consent_timeout_ms; /* a nominated leg without a valid STUN check this long ends;
                                    0 = 30000 (RFC 7675) */
};

/* Why a received datagram was dropped; each reason has its own counter. */
enum media_drop_reason {
    MEDIA_DROP_TOO_SHORT = 0, /* fewer bytes than any protocol we speak */
    MEDIA_DROP_TOO_LARGE,     /* longer than the 1500-byte receive buffer: truncated */
    MEDIA_DROP_UNKNOWN_KIND,  /* first byte is not STUN, DTLS or RTP/RTCP (RFC 7983) */
    MEDIA_DROP_NO_LEG,        /* well-formed, but no leg expects it from that address */
    MEDIA_DROP_REASON_COUNT,
};

/* A consistent-enough snapshot of one worker's counters (each read is atomic). */
struct media_worker_stats {
    uint16_t port;
    uint64_t packets_received;
    uint64_t bytes_received;
    uint64_t packets_dropped[MEDIA_DROP_REASON_COUNT];
    uint64_t receive_batches; /* recvmmsg calls that returned at least one datagram */
    uint64_t stun_answered;   /* valid Binding requests answered with success */
    uint64_t stun_refused;    /* STUN requests dropped: bad integrity, fingerprint, username... */
    uint64_t legs_active;     /* gauge */
    uint64_t legs_nominated;  /* USE-CANDIDATE seen for a new address */
    uint64_t legs_expired;    /* ended by consent freshness */
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
    MEDIA_EVENT_LEG_EXPIRED, /* consent freshness ran out: the leg is gone */
    MEDIA_EVENT_LEG_REFUSED, /* could not add: the worker's table is full or the id is taken */
};

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
