/*
 * state.h - private to server/: the running server's state, shared by run.c
 * (thread lifecycle), http.c (HTTP and WebSocket callbacks) and metrics.c.
 *
 * Everything here is owned and touched by the signalling thread (the one that
 * runs the libwebsockets loop), except the two atomics set by the signal
 * thread. Other threads reach it only through `inbox`.
 */
#ifndef TABIB_SERVER_STATE_H
#define TABIB_SERVER_STATE_H

#include <stdatomic.h>

#include <libwebsockets.h>

#include "audit.h"
#include "media.h"
#include "server.h"
#include "signaling.h"

/* A thread is "up" while its last probe reply is younger than this. */
#define SRV_PROBE_INTERVAL_MS 1000
#define SRV_PROBE_STALE_MS    3000
#define SRV_AUDIT_WAITS       64 /* audit searches in flight at once */

struct ws_session;

/* Health of one thread watched through probes: the audit writer or a media worker. */
struct srv_thread_health {
    char name[24];         /* "audit", "media-0", ... */
    int64_t last_reply_ms; /* monotonic; 0 = never answered */
};

struct srv_state {
    const struct srv_config *cfg;
    struct base_logger *log;
    struct lws_context *lws;
    bool lws_awake;             /* other threads may wake `lws` (under run.c's wake lock) */
    struct base_mailbox *inbox; /* to this thread; woken with lws_cancel_service */
    struct audit_writer *audit;
    struct audit_reader *audit_reader; /* admins' searches and exports */
    uint64_t audit_request_seq;
    /* Searches waiting for the reader's answer: which connection asked. */
    struct srv_audit_wait {
        uint64_t id; /* 0 = free */
        struct lws *wsi;
    } audit_waits[SRV_AUDIT_WAITS];
    struct media_engine *media;
    struct sig_accounts *accounts;
    struct sig_hub *hub;
    struct sig_hub_config hub_cfg;
    lws_sorted_usec_list_t hub_timer;
    lws_retry_bo_t idle_policy; /* keepalive; lws keeps a pointer to it */

    int64_t started_wall_ms;
    int64_t started_mono_ms;

    /* health[0] is the audit writer, health[1 + i] media worker i. */
    struct srv_thread_health *health;
    unsigned health_count;
    uint64_t probe_seq;
    lws_sorted_usec_list_t probe_timer;

    /* Set by the signal thread, acted upon by this thread. */
    atomic_bool stop_requested;
    atomic_bool reopen_log_requested;
    bool stopping;
    int64_t stop_deadline_ms;
    lws_sorted_usec_list_t stop_timer;

    struct ws_session *sessions; /* open WebSocket connections, a doubly linked list */
    unsigned ws_open;

    uint64_t http_requests;
    uint64_t http_not_found;
    uint64_t ws_accepted;
    uint64_t ws_refused;
    uint64_t ws_messages_received;
    uint64_t ws_closed_for_abuse;
    uint64_t audit_dropped; /* events refused by a full audit queue */
};

/* http.c: the protocols array for the lws context (terminated by a zeroed entry). */
const struct lws_protocols *srv_http_protocols(void);

/* http.c: fills the callbacks through which the hub sends, closes and audits. */
void srv_http_hub_io(struct srv_state *st, struct sig_hub_io *io);

/* http.c: sends the reader's answer to the connection that asked, if still open; takes `rq`. */
void srv_http_audit_answer(struct srv_state *st, struct audit_request *rq);

/* http.c: asks every open WebSocket to close with "going away". */
void srv_http_close_all(struct srv_state *st);

/* run.c: drains the inbox and acts on signals; called on every lws wakeup. */
void srv_on_wakeup(struct srv_state *st);

/* run.c: true when every watched thread answered a recent probe and we are not stopping. */
bool srv_is_ready(const struct srv_state *st);

/* metrics.c: returns new Prometheus text (free with free()) and its length, or NULL. */
char *srv_metrics_render(const struct srv_state *st, size_t *len_out);

#endif
