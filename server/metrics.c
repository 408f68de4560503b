/*
 * metrics.c - /metrics in the Prometheus text exposition format (0.0.4).
 *
 * Runs on the signalling thread. Media counters are read from the workers'
 * atomics without stopping them, so one scrape is a near-instant snapshot,
 * not a transaction; counters only ever grow, which is all Prometheus needs.
 */
#include "state.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

struct text {
    char *buf;
    size_t len;
    size_t cap;
    bool failed;
};

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *grown = realloc(t->buf, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->buf = grown;
        t->cap = cap;
    }
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-worker series with only a worker label: one table instead of a loop each. */
struct worker_series {
    const char *name, *type, *help;
    size_t offset; /* of a uint64_t in struct media_worker_stats */
};

static const struct worker_series worker_series[] = {
    {"tabib_media_receive_batches_total", "counter",
     "recvmmsg calls that returned datagrams (packets / batches = batching factor).",
     offsetof(struct media_worker_stats, receive_batches)},
    {"tabib_media_stun_answered_total", "counter",
     "ICE Binding requests answered (valid for one of the worker's legs).",
     offsetof(struct media_worker_stats, stun_answered)},
    {"tabib_media_stun_refused_total", "counter",
     "STUN requests dropped unanswered: no such leg, bad integrity or fingerprint.",
     offsetof(struct media_worker_stats, stun_refused)},
    {"tabib_media_legs", "gauge", "Legs (peer connections) on the worker.",
     offsetof(struct media_worker_stats, legs_active)},
    {"tabib_media_legs_nominated_total", "counter", "ICE nominations (USE-CANDIDATE).",
     offsetof(struct media_worker_stats, legs_nominated)},
    {"tabib_media_legs_expired_total", "counter",
     "Legs ended by consent freshness (no valid check for consent_timeout_s).",
     offsetof(struct media_worker_stats, legs_expired)},
    {"tabib_media_packets_sent_total", "counter",
     "UDP datagrams sent: relayed media, RTCP, DTLS, STUN answers.",
     offsetof(struct media_worker_stats, packets_sent)},
    {"tabib_media_bytes_sent_total", "counter", "UDP payload bytes sent.",
     offsetof(struct media_worker_stats, bytes_sent)},
    {"tabib_media_send_failures_total", "counter",
     "Datagrams not sent: the kernel refused them or SRTP could not protect them.",
     offsetof(struct media_worker_stats, send_failures)},
    {"tabib_media_send_messages_total", "counter",
     "Messages given to sendmmsg; a run of one frame's packets to one receiver, sent as one "
     "UDP segmented message, counts once (datagrams / messages = segmentation factor).",
     offsetof(struct media_worker_stats, send_messages)},
    {"tabib_media_rtp_relayed_total", "counter", "RTP packets relayed to the far leg.",
     offsetof(struct media_worker_stats, rtp_relayed)},
    {"tabib_media_rtcp_relayed_total", "counter",
     "RTCP compounds sent: relayed sender reports and key-frame requests.",
     offsetof(struct media_worker_stats, rtcp_relayed)},
    {"tabib_media_key_frame_requests_total", "counter",
     "PLIs sent to browsers (a new viewer, or a viewer that lost the picture).",
     offsetof(struct media_worker_stats, key_frame_requests)},
    {"tabib_media_feedback_sent_total", "counter",
     "Transport-wide congestion feedback packets sent to browsers (their bandwidth estimate).",
     offsetof(struct media_worker_stats, feedback_sent)},
    {"tabib_media_nacks_received_total", "counter", "NACK packets from browsers.",
     offsetof(struct media_worker_stats, nacks_received)},
    {"tabib_media_nack_retransmitted_total", "counter",
     "NACKed packets resent from the server's packet cache (as RTX when negotiated).",
     offsetof(struct media_worker_stats, nack_retransmitted)},
    {"tabib_media_nack_missed_total", "counter",
     "NACKed packets not in the cache (lost before the server, or too old).",
     offsetof(struct media_worker_stats, nack_missed)},
    {"tabib_media_nack_suppressed_total", "counter",
     "NACKed packets asked for again too soon, not resent twice.",
     offsetof(struct media_worker_stats, nack_suppressed)},
    {"tabib_media_nacks_forwarded_total", "counter",
     "NACKs passed on to the source browser for packets the server never had.",
     offsetof(struct media_worker_stats, nacks_forwarded)},
    {"tabib_media_rtx_relayed_total", "counter",
     "Retransmissions from a source browser relayed to the receiver.",
     offsetof(struct media_worker_stats, rtx_relayed)},
    {"tabib_media_remb_sent_total", "counter",
     "Bandwidth limits (REMB) sent to source browsers for a receiver's path or its own REMB.",
     offsetof(struct media_worker_stats, remb_sent)},
    {"tabib_media_audio_decodes_total", "counter",
     "Opus packets the silent-microphone monitor decoded (it samples, it does not decode all).",
     offsetof(struct media_worker_stats, audio_decodes)},
    {"tabib_media_dtls_connected_total", "counter", "DTLS handshakes completed (SRTP keyed).",
     offsetof(struct media_worker_stats, dtls_connected)},
};

/* A by-reason counter family over every worker, for reasons that have a name. */
static void reason_family(struct text *t, const char *name, const char *help,
                          const struct media_worker_stats *ws, unsigned workers, size_t offset,
                          const char *(*reason_name)(unsigned))
{
    family(t, name, "counter", help);
    for (unsigned i = 0; i < workers; i++)
        for (unsigned r = 0; r < MEDIA_FAILURE_KINDS; r++) {
            const char *reason = reason_name(r);
            if (!reason)
                continue;
            uint64_t v;
            memcpy(&v, (const char *)&ws[i] + offset + r * sizeof(uint64_t), sizeof(v));
            text_printf(t, "%s{worker=\"%u\",reason=\"%s\"} %llu\n", name, i, reason,
                        (unsigned long long)v);
        }
}

char *srv_metrics_render(const struct srv_state *st, size_t *len_out)
{
    struct text t = {.buf = malloc(8192), .cap = 8192};
    if (!t.buf)
        return NULL;
    int64_t now = base_now_ms();

    family(&t, "tabib_build_info", "gauge", "Version and libraries of this build (always 1).");
    text_printf(&t,
                "tabib_build_info{version=\"%s\",commit=\"%s\",libwebsockets=\"%s\","
                "openssl=\"%s\",sqlite=\"%s\"} 1\n",
                TABIB_VERSION, TABIB_COMMIT, lws_get_library_version(),
                OpenSSL_version(OPENSSL_VERSION), sqlite3_libversion());
    family(&t, "tabib_start_time_seconds", "gauge", "When the server started, Unix time.");
    text_printf(&t, "tabib_start_time_seconds %.3f\n", (double)st->started_wall_ms / 1000.0);
    family(&t, "tabib_uptime_seconds", "gauge", "Seconds since the server started.");
    text_printf(&t, "tabib_uptime_seconds %.3f\n", (double)(now - st->started_mono_ms) / 1000.0);
    family(&t, "tabib_ready", "gauge", "1 when every thread answers its health probes.");
    text_printf(&t, "tabib_ready %d\n", srv_is_ready(st) ? 1 : 0);
    family(&t, "tabib_thread_up", "gauge", "1 when the thread answered a recent health probe.");
    for (unsigned i = 0; i < st->health_count; i++) {
        const struct srv_thread_health *h = &st->health[i];
        bool up = h->last_reply_ms && now - h->last_reply_ms < SRV_PROBE_STALE_MS;
        text_printf(&t, "tabib_thread_up{thread=\"%s\"} %d\n", h->name, up ? 1 : 0);
    }

    family(&t, "tabib_http_requests_total", "counter", "HTTP requests received.");
    text_printf(&t, "tabib_http_requests_total %llu\n", (unsigned long long)st->http_requests);
    family(&t, "tabib_http_not_found_total", "counter",
           "HTTP requests answered 404 (including refused path traversal).");
    text_printf(&t, "tabib_http_not_found_total %llu\n", (unsigned long long)st->http_not_found);
    family(&t, "tabib_websocket_connections", "gauge", "Open WebSocket connections.");
    text_printf(&t, "tabib_websocket_connections %u\n", st->ws_open);
    family(&t, "tabib_websocket_accepted_total", "counter", "WebSocket connections accepted.");
    text_printf(&t, "tabib_websocket_accepted_total %llu\n", (unsigned long long)st->ws_accepted);
    family(&t, "tabib_websocket_refused_total", "counter",
           "WebSocket upgrades refused: wrong path, no subprotocol, full, stopping.");
    text_printf(&t, "tabib_websocket_refused_total %llu\n", (unsigned long long)st->ws_refused);
    family(&t, "tabib_websocket_messages_received_total", "counter",
           "Complete WebSocket messages received.");
    text_printf(&t, "tabib_websocket_messages_received_total %llu\n",
                (unsigned long long)st->ws_messages_received);
    struct sig_hub_stats hs;
    memset(&hs, 0, sizeof(hs));
    if (st->hub)
        sig_hub_get_stats(st->hub, &hs);
    family(&t, "tabib_websocket_error_replies_total", "counter",
           "Messages answered with an error object.");
    text_printf(&t, "tabib_websocket_error_replies_total %llu\n", (unsigned long long)hs.errors);
    family(&t, "tabib_websocket_rate_limited_total", "counter",
           "Messages and sign-ins refused for rate.");
    text_printf(&t, "tabib_websocket_rate_limited_total %llu\n",
                (unsigned long long)hs.rate_limited);
    family(&t, "tabib_queue_patients_waiting", "gauge", "Patients waiting, all clinics.");
    text_printf(&t, "tabib_queue_patients_waiting %u\n", hs.patients_waiting);
    family(&t, "tabib_consultations_called", "gauge", "Patients called, not yet connected.");
    text_printf(&t, "tabib_consultations_called %u\n", hs.consultations_called);
    family(&t, "tabib_consultations_in_progress", "gauge", "Consultations in progress.");
    text_printf(&t, "tabib_consultations_in_progress %u\n", hs.consultations_in_progress);
    family(&t, "tabib_consultations_ended_total", "counter", "Consultations ended, any reason.");
    text_printf(&t, "tabib_consultations_ended_total %llu\n",
                (unsigned long long)hs.consultations_ended);
    family(&t, "tabib_doctors_on_duty", "gauge", "Doctor-clinic duty pairs.");
    text_printf(&t, "tabib_doctors_on_duty %u\n", hs.doctors_on_duty);
    family(&t, "tabib_audit_events_dropped_total", "counter",
           "Audit events refused because the audit queue was full.");
    text_printf(&t, "tabib_audit_events_dropped_total %llu\n",
                (unsigned long long)st->audit_dropped);
    family(&t, "tabib_websocket_closed_for_abuse_total", "counter",
           "Connections closed for oversized messages or unread replies.");
    text_printf(&t, "tabib_websocket_closed_for_abuse_total %llu\n",
                (unsigned long long)st->ws_closed_for_abuse);

    unsigned workers = st->media ? media_engine_worker_count(st->media) : 0;
    family(&t, "tabib_media_workers", "gauge", "Media worker threads.");
    text_printf(&t, "tabib_media_workers %u\n", workers);
    family(&t, "tabib_media_ice_restarts_total", "counter",
           "Offers that restarted ICE on a live leg (answered in place, DTLS kept).");
    text_printf(&t, "tabib_media_ice_restarts_total %llu\n",
                (unsigned long long)(st->media ? media_engine_ice_restarts(st->media) : 0));
    struct media_worker_stats ws[workers ? workers : 1];
    for (unsigned i = 0; i < workers; i++)
        media_engine_worker_stats(st->media, i, &ws[i]);
    family(&t, "tabib_media_packets_received_total", "counter", "UDP datagrams received.");
    for (unsigned i = 0; i < workers; i++)
        text_printf(&t, "tabib_media_packets_received_total{worker=\"%u\",port=\"%u\"} %llu\n", i,
                    ws[i].port, (unsigned long long)ws[i].packets_received);
    family(&t, "tabib_media_bytes_received_total", "counter", "UDP payload bytes received.");
    for (unsigned i = 0; i < workers; i++)
        text_printf(&t, "tabib_media_bytes_received_total{worker=\"%u\",port=\"%u\"} %llu\n", i,
                    ws[i].port, (unsigned long long)ws[i].bytes_received);
    family(&t, "tabib_media_packets_dropped_total", "counter",
           "UDP datagrams dropped, by reason (see docs/media.md).");
    for (unsigned i = 0; i < workers; i++)
        for (unsigned r = 0; r < MEDIA_DROP_REASON_COUNT; r++)
            text_printf(&t, "tabib_media_packets_dropped_total{worker=\"%u\",reason=\"%s\"} %llu\n",
                        i, media_drop_reason_name((enum media_drop_reason)r),
                        (unsigned long long)ws[i].packets_dropped[r]);
    for (size_t k = 0; k < sizeof(worker_series) / sizeof(worker_series[0]); k++) {
        const struct worker_series *ser = &worker_series[k];
        family(&t, ser->name, ser->type, ser->help);
        for (unsigned i = 0; i < workers; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&ws[i] + ser->offset, sizeof(v));
            text_printf(&t, "%s{worker=\"%u\"} %llu\n", ser->name, i, (unsigned long long)v);
        }
    }
    reason_family(&t, "tabib_media_dtls_failures_total",
                  "Legs ended by DTLS, by reason (fingerprint: not the certificate of the offer).",
                  ws, workers, offsetof(struct media_worker_stats, dtls_failures),
                  media_dtls_failure_name);
    reason_family(&t, "tabib_media_srtp_failures_total",
                  "SRTP/SRTCP packets refused, by reason (auth: tampered or wrong key; replay).",
                  ws, workers, offsetof(struct media_worker_stats, srtp_failures),
                  media_srtp_failure_name);

    family(&t, "tabib_audit_events_committed_total", "counter",
           "Audit events durably committed since start.");
    text_printf(&t, "tabib_audit_events_committed_total %llu\n",
                (unsigned long long)(st->audit ? audit_writer_committed(st->audit) : 0));
    family(&t, "tabib_audit_events_lost_total", "counter",
           "Audit events given up after the database refused them (disk full, I/O errors).");
    text_printf(&t, "tabib_audit_events_lost_total %llu\n",
                (unsigned long long)(st->audit ? audit_writer_lost(st->audit) : 0));
    family(&t, "tabib_audit_committed_event_id", "gauge",
           "The id of the newest audit event on disk: every event up to it is committed.");
    text_printf(&t, "tabib_audit_committed_event_id %lld\n",
                (long long)(st->audit ? audit_writer_committed_id(st->audit) : 0));

    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    *len_out = t.len;
    return t.buf;
}
