/*
 * run.c - starts Tabib's threads, watches their health, stops them in order.
 *
 * The calling (main) thread becomes the signalling thread: it runs the
 * libwebsockets loop. Beside it run the audit writer, the media workers and a
 * small signal thread. Signals are blocked in every thread and taken by the
 * signal thread with sigwaitinfo(), which only sets a flag and wakes the
 * loop with lws_cancel_service(): no work happens in signal context.
 *
 * Stop order (SIGTERM/SIGINT): refuse new connections, ask WebSockets to
 * close ("going away"), wait up to shutdown_grace_ms for them, stop the
 * media workers (and hand the hub the media summaries they answered last),
 * record "server_stopped" and stop the audit writer (which commits what is
 * queued), then tear down the HTTP loop.
 */
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "signaling.h"

#include <openssl/crypto.h>

#define INBOX_CAPACITY 1024

/* The signal thread: turns SIGTERM/SIGINT/SIGHUP into flags and a loop wakeup. */
struct signal_thread {
    pthread_t thread;
    struct srv_state *st;
    sigset_t set;
};

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1); /* sent by run() itself to end the signal thread */
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void *signal_main(void *arg)
{
    struct signal_thread *t = arg;
    pthread_setname_np(pthread_self(), "signals");
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&t->set, &info);
        if (sig < 0)
            continue; /* EINTR */
        if (sig == SIGUSR1)
            break;
        if (sig == SIGHUP)
            atomic_store(&t->st->reopen_log_requested, true);
        else
            atomic_store(&t->st->stop_requested, true);
        lws_cancel_service(t->st->lws);
    }
    return NULL;
}

/* The inbox's wake callback: makes lws_service return and call srv_on_wakeup. */
/*
 * Other threads' pushes to the inbox wake the loop. The lock keeps a late
 * push (a probe answered as the server stops) from touching a context being
 * destroyed: pushes are events and answers, never packets.
 */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;

static void wake_loop(void *arg)
{
    struct srv_state *st = arg;
    pthread_mutex_lock(&wake_lock);
    if (st->lws_awake)
        lws_cancel_service(st->lws);
    pthread_mutex_unlock(&wake_lock);
}

static void set_wakeable(struct srv_state *st, bool on)
{
    pthread_mutex_lock(&wake_lock);
    st->lws_awake = on;
    pthread_mutex_unlock(&wake_lock);
}

bool srv_is_ready(const struct srv_state *st)
{
    if (st->stopping)
        return false;
    int64_t now = base_now_ms();
    for (unsigned i = 0; i < st->health_count; i++)
        if (!st->health[i].last_reply_ms || now - st->health[i].last_reply_ms >= SRV_PROBE_STALE_MS)
            return false;
    return true;
}

/* Sends a probe to every watched thread; replies arrive in the inbox. */
static void send_probes(struct srv_state *st)
{
    st->probe_seq++;
    if (audit_writer_probe(st->audit, st->inbox, st->probe_seq) != 0)
        log_warn(st->log, "server", "audit writer mailbox full");
    for (unsigned i = 0; i < media_engine_worker_count(st->media); i++)
        if (media_engine_probe(st->media, i, st->inbox, st->probe_seq) != 0)
            log_warn(st->log, "server", "media worker mailbox full", LOG_INT("worker", i));
}

static void probe_timer_fired(lws_sorted_usec_list_t *sul)
{
    struct srv_state *st = lws_container_of(sul, struct srv_state, probe_timer);
    if (st->stopping)
        return;
    send_probes(st);
    lws_sul_schedule(st->lws, 0, &st->probe_timer, probe_timer_fired,
                     SRV_PROBE_INTERVAL_MS * LWS_US_PER_MS);
}

/* Grace periods expire here, once a second. */
static void hub_timer_fired(lws_sorted_usec_list_t *sul)
{
    struct srv_state *st = lws_container_of(sul, struct srv_state, hub_timer);
    sig_hub_tick(st->hub, base_now_ms());
    lws_sul_schedule(st->lws, 0, &st->hub_timer, hub_timer_fired, LWS_US_PER_SEC);
}

static void stop_timer_fired(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* only wakes the loop so that it sees the deadline */
}

static void handle_probe_reply(struct srv_state *st, const struct base_msg *msg)
{
    unsigned index;
    if (msg->sender == BASE_THREAD_AUDIT)
        index = 0;
    else if (msg->sender >= BASE_THREAD_MEDIA_FIRST)
        index = 1 + (msg->sender - BASE_THREAD_MEDIA_FIRST);
    else
        return;
    if (index >= st->health_count)
        return;
    bool was_ready = srv_is_ready(st);
    st->health[index].last_reply_ms = base_now_ms();
    if (!was_ready && srv_is_ready(st))
        log_info(st->log, "server", "ready", LOG_INT("threads", st->health_count));
}

/* What a media worker reported about a leg, passed on to the hub. */
static void handle_media_event(struct srv_state *st, const struct base_msg *msg)
{
    const char *reason = NULL;
    enum sig_media_event event = SIG_MEDIA_ENDED;
    switch (msg->type) {
    case MEDIA_EVENT_LEG_CONNECTED:
        event = SIG_MEDIA_CONNECTED;
        break;
    case MEDIA_EVENT_LEG_EXPIRED:
        reason = "consent_timeout";
        break;
    case MEDIA_EVENT_LEG_REFUSED:
        reason = "refused";
        break;
    case MEDIA_EVENT_LEG_FAILED:
        reason = msg->ptr; /* a static string */
        break;
    case MEDIA_EVENT_LEG_FLOWING:
        event = SIG_MEDIA_FLOWING;
        break;
    default:
        return; /* nominations: ICE found (or moved to) an address; nothing to tell */
    }
    if (st->hub)
        sig_hub_media_event(st->hub, msg->arg, event, reason, base_now_ms());
}

void srv_on_wakeup(struct srv_state *st)
{
    struct base_msg msg;
    while (base_mailbox_pop(st->inbox, &msg)) {
        if (msg.type == BASE_MSG_PROBE_REPLY) {
            handle_probe_reply(st, &msg);
        } else if (msg.type == AUDIT_MSG_ANSWER) {
            srv_http_audit_answer(st, msg.ptr);
        } else if (msg.type == MEDIA_EVENT_LEG_AUDIO) {
            const struct media_audio_event *ev = msg.ptr;
            if (st->hub)
                sig_hub_media_audio(st->hub, msg.arg, ev->state, ev->state_changed, ev->level,
                                    base_now_ms());
            free(msg.ptr);
        } else if (msg.type == MEDIA_EVENT_LEG_SUMMARY) {
            if (st->hub)
                sig_hub_media_summary(st->hub, msg.arg, msg.ptr);
            free(msg.ptr);
        } else if (msg.type >= MEDIA_EVENT_LEG_NOMINATED && msg.type <= MEDIA_EVENT_LEG_FLOWING) {
            handle_media_event(st, &msg);
        }
    }
    if (atomic_exchange(&st->reopen_log_requested, false)) {
        int rc = base_logger_reopen(st->log);
        if (rc)
            log_error(st->log, "server", "cannot reopen the log file",
                      LOG_STR("error", strerror(-rc)));
        else
            log_info(st->log, "server", "log file reopened");
    }
    if (atomic_load(&st->stop_requested) && !st->stopping) {
        st->stopping = true;
        st->stop_deadline_ms = base_now_ms() + st->cfg->shutdown_grace_ms;
        log_info(st->log, "server", "stopping", LOG_INT("websockets", st->ws_open),
                 LOG_INT("grace_ms", st->cfg->shutdown_grace_ms));
        /* Participants hear "ended: server_shutdown" before their close frame. */
        sig_hub_shutdown(st->hub, base_now_ms());
        srv_http_close_all(st);
        lws_sul_schedule(st->lws, 0, &st->stop_timer, stop_timer_fired,
                         (lws_usec_t)st->cfg->shutdown_grace_ms * LWS_US_PER_MS);
    }
}

/* ------------------------------------------------------------------------- */
/* The hub's media legs, served by the media engine                           */
/* ------------------------------------------------------------------------- */

static uint64_t hub_media_offer(void *ctx, unsigned placement, const char *sdp, size_t len,
                                uint64_t replaces, char **answer, bool *bad_offer, char *err,
                                size_t errlen)
{
    struct srv_state *st = ctx;
    if (!st->media) {
        snprintf(err, errlen, "the media relay is stopping");
        *bad_offer = false;
        return 0;
    }
    unsigned worker = placement % media_engine_worker_count(st->media);
    uint64_t leg = 0;
    int rc =
        media_engine_answer_offer(st->media, worker, sdp, len, replaces, &leg, answer, err, errlen);
    *bad_offer = rc == -EINVAL;
    return rc == 0 ? leg : 0;
}

/* At shutdown the engine stops before the last connections close (see the end of
 * srv_run): a call from the hub then finds st->media NULL and does nothing. */
static int hub_media_link(void *ctx, uint64_t a, uint64_t b)
{
    struct srv_state *st = ctx;
    return st->media ? media_engine_link(st->media, a, b) : -EINVAL;
}

static void hub_media_unlink(void *ctx, uint64_t leg)
{
    struct srv_state *st = ctx;
    if (st->media)
        media_engine_unlink(st->media, leg);
}

static void hub_media_release(void *ctx, uint64_t leg)
{
    struct srv_state *st = ctx;
    if (st->media)
        media_engine_leg_release(st->media, leg);
}

static int hub_media_leg_summary(void *ctx, uint64_t leg, uint64_t request)
{
    struct srv_state *st = ctx;
    return st->media ? media_engine_leg_summary(st->media, leg, request) : -ESHUTDOWN;
}

/*
 * After the workers stopped: what they reported last and nobody read. Media
 * summaries go to the hub while it and the audit writer are still there
 * (`to_hub`); the rest is only freed (the participants are leaving).
 */
static void drain_inbox(struct srv_state *st, bool to_hub)
{
    struct base_msg msg;
    while (base_mailbox_pop(st->inbox, &msg)) {
        if (msg.type == MEDIA_EVENT_LEG_SUMMARY && to_hub && st->hub)
            sig_hub_media_summary(st->hub, msg.arg, msg.ptr);
        if (msg.type == MEDIA_EVENT_LEG_AUDIO || msg.type == MEDIA_EVENT_LEG_SUMMARY)
            free(msg.ptr);
        else if (msg.type == AUDIT_MSG_ANSWER) /* its asker is gone with the connections */
            audit_request_free(msg.ptr);
    }
}

/*
 * On a fresh data dir, creates the first admin and shows its password once on
 * standard output (never in the log, never on disk).
 */
static int announce_first_admin(struct srv_state *st)
{
    char password[64];
    int rc = sig_accounts_ensure_first_admin(st->accounts, password, sizeof(password));
    if (rc < 0) {
        log_error(st->log, "server", "cannot create the first admin account");
        return -1;
    }
    if (rc == 1) {
        printf("\nCreated the first admin account. It is shown once, here only:\n"
               "  username: admin\n  password: %s\n"
               "Change it with: tabib user passwd admin --data-dir %s\n",
               password, st->cfg->data_dir);
        fflush(stdout);
        log_info(st->log, "server", "created the first admin account",
                 LOG_STR("username", "admin"));
        struct audit_event ev = {
            .type = "user_added",
            .actor_role = "system",
            .outcome = "ok",
            .detail_json =
                "{\"username\":\"admin\",\"role\":\"admin\",\"clinics\":\"all\",\"first\":true}"};
        if (audit_writer_append(st->audit, &ev) != 0)
            st->audit_dropped++;
    }
    OPENSSL_cleanse(password, sizeof(password));
    return 0;
}

/* Prints where to point a browser, on standard output whatever the log format. */
static void print_urls(const struct srv_config *cfg)
{
    const char *host = cfg->listen_host[0] ? cfg->listen_host : "localhost";
    bool v6 = strchr(host, ':') != NULL;
    char base[SRV_HOST_MAX + 32];
    snprintf(base, sizeof(base), "https://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             cfg->listen_port);
    printf("\nTabib %s is running. Open in a browser (the certificate is self-signed unless you "
           "configured one):\n"
           "  Home     %s/\n"
           "  Patient  %s/c/general   (each clinic has its link: /c/<clinic>)\n"
           "  Doctor   %s/doctor\n"
           "  Admin    %s/admin\n"
           "  Health   %s/healthz   Metrics %s/metrics\n"
           "Stop with Ctrl-C.\n\n",
           TABIB_VERSION, base, base, base, base, base, base);
    fflush(stdout);
}

/*
 * Routes libwebsockets' own warnings and errors into our log. lws 4.1's log
 * hook takes no user pointer, so this one file-level pointer is unavoidable;
 * it is set while srv_run() runs and cleared before it returns.
 */
static struct base_logger *lws_log_target;

static void lws_log_emit(int level, const char *line)
{
    char text[512];
    snprintf(text, sizeof(text), "%s", line);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    base_log(lws_log_target, level == LLL_ERR ? BASE_LOG_ERROR : BASE_LOG_WARN, "lws",
             "libwebsockets says", LOG_STR("text", text));
}

static struct lws_context *create_lws(struct srv_state *st, const char *cert, const char *key)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = st->cfg->listen_port;
    info.iface = st->cfg->listen_host[0] ? st->cfg->listen_host : NULL;
    info.protocols = srv_http_protocols();
    info.user = st;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.ssl_cert_filepath = cert;
    info.ssl_private_key_filepath = key;
    /* HTTP/1.1 only for now: WebSockets over HTTP/2 would add a path no test covers yet. */
    info.alpn = "http/1.1";
    info.ka_time = 0;
    info.timeout_secs = 10;
    info.max_http_header_pool = 64;
    info.vhost_name = "tabib";
    /*
     * Keepalive: a WebSocket silent for half the idle timeout gets a PING; one
     * silent for all of it (no PONG either) is closed, so a phone that vanished
     * frees its slot and its participant's grace period starts.
     */
    st->idle_policy.secs_since_valid_ping = (uint16_t)(st->cfg->idle_timeout_s / 2);
    st->idle_policy.secs_since_valid_hangup = (uint16_t)st->cfg->idle_timeout_s;
    info.retry_and_idle_policy = &st->idle_policy;
    info.server_string = "tabib";
    return lws_create_context(&info);
}

int srv_run(const struct srv_config *cfg, struct base_logger *log)
{
    struct srv_state st;
    memset(&st, 0, sizeof(st));
    st.cfg = cfg;
    st.log = log;
    st.started_wall_ms = base_wall_ms();
    st.started_mono_ms = base_now_ms();
    atomic_init(&st.stop_requested, false);
    atomic_init(&st.reopen_log_requested, false);
    int status = 1;
    char err[SRV_CONFIG_ERR_MAX];
    char cert[PATH_MAX], key[PATH_MAX];
    struct signal_thread sig = {.st = &st};
    bool sig_started = false;
    char detail[256];
    int64_t stop_started = 0;

    /* Every thread created from here on inherits the blocked mask. */
    block_signals(&sig.set);
    signal(SIGPIPE, SIG_IGN);

    if (srv_tls_prepare(cfg, log, cert, key, err, sizeof(err)) != 0) {
        log_error(log, "server", "cannot prepare TLS", LOG_STR("error", err));
        return 1;
    }
    lws_log_target = log;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    st.inbox = base_mailbox_new(INBOX_CAPACITY, wake_loop, &st);
    st.health_count = 1 + cfg->media_workers;
    st.health = calloc(st.health_count, sizeof(*st.health));
    if (!st.inbox || !st.health) {
        log_error(log, "server", "out of memory");
        goto out;
    }
    snprintf(st.health[0].name, sizeof(st.health[0].name), "audit");
    for (unsigned i = 0; i < cfg->media_workers; i++)
        snprintf(st.health[1 + i].name, sizeof(st.health[1 + i].name), "media-%u", i);

    st.lws = create_lws(&st, cert, key);
    set_wakeable(&st, st.lws != NULL);
    if (!st.lws) {
        log_error(log, "server", "cannot listen (is the port in use, or the address not local?)",
                  LOG_STR("host", cfg->listen_host), LOG_INT("port", cfg->listen_port));
        goto out;
    }
    st.audit = audit_writer_start(cfg->data_dir, log, err, sizeof(err));
    if (!st.audit) {
        log_error(log, "server", "cannot start the audit writer", LOG_STR("error", err));
        goto out;
    }
    st.audit_reader = audit_reader_start(cfg->data_dir, st.audit, st.inbox, log, err, sizeof(err));
    if (!st.audit_reader) {
        log_error(log, "server", "cannot start the audit reader", LOG_STR("error", err));
        goto out;
    }
    struct media_engine_config mcfg = {
        .bind_host = cfg->listen_host,
        .base_port = cfg->media_port,
        .worker_count = cfg->media_workers,
        .log = log,
        .owner = st.inbox,
        .public_ip = cfg->public_ip,
        .consent_timeout_ms = cfg->consent_timeout_s * 1000,
        .no_segmentation = !cfg->media_segmentation,
    };
    st.media = media_engine_start(&mcfg, err, sizeof(err));
    if (!st.media) {
        log_error(log, "server", "cannot start the media workers", LOG_STR("error", err));
        goto out;
    }
    st.accounts = sig_accounts_open(cfg->data_dir, err, sizeof(err));
    if (!st.accounts) {
        log_error(log, "server", "cannot open the accounts", LOG_STR("error", err));
        goto out;
    }
    if (announce_first_admin(&st) != 0)
        goto out;
    sig_hub_config_defaults(&st.hub_cfg);
    st.hub_cfg.clinics = cfg->clinics;
    st.hub_cfg.clinic_count = cfg->clinic_count;
    st.hub_cfg.grace_ms = (int64_t)cfg->grace_period_s * 1000;
    st.hub_cfg.session_ttl_ms = (int64_t)cfg->session_ttl_s * 1000;
    st.hub_cfg.max_conns_per_address = cfg->max_connections_per_address;
    st.hub_cfg.rate_per_second = cfg->message_rate;
    st.hub_cfg.rate_burst = cfg->message_burst;
    struct sig_hub_io io;
    srv_http_hub_io(&st, &io);
    io.media_offer = hub_media_offer;
    io.media_link = hub_media_link;
    io.media_unlink = hub_media_unlink;
    io.media_release = hub_media_release;
    io.media_leg_summary = hub_media_leg_summary;
    st.hub = sig_hub_new(&st.hub_cfg, st.accounts, &io, log);
    if (!st.hub) {
        log_error(log, "server", "out of memory");
        goto out;
    }
    int rc = pthread_create(&sig.thread, NULL, signal_main, &sig);
    if (rc != 0) {
        log_error(log, "server", "cannot start the signal thread", LOG_STR("error", strerror(rc)));
        goto out;
    }
    sig_started = true;

    snprintf(detail, sizeof(detail), "{\"version\":\"%s\",\"media_workers\":%u}", TABIB_VERSION,
             cfg->media_workers);
    audit_writer_record(st.audit, "server_started", detail);
    log_info(log, "server", "listening",
             LOG_STR("host", cfg->listen_host[0] ? cfg->listen_host : "*"),
             LOG_INT("port", cfg->listen_port), LOG_STR("public_ip", cfg->public_ip),
             LOG_STR("web_root", cfg->web_root), LOG_STR("data_dir", cfg->data_dir));
    print_urls(cfg);
    send_probes(&st);
    lws_sul_schedule(st.lws, 0, &st.probe_timer, probe_timer_fired,
                     SRV_PROBE_INTERVAL_MS * LWS_US_PER_MS);
    lws_sul_schedule(st.lws, 0, &st.hub_timer, hub_timer_fired, LWS_US_PER_SEC);

    for (;;) {
        if (lws_service(st.lws, 0) < 0)
            break;
        if (st.stopping && (st.ws_open == 0 || base_now_ms() >= st.stop_deadline_ms))
            break;
    }
    stop_started = base_now_ms();
    status = 0;

out:
    if (st.lws) {
        lws_sul_cancel(&st.probe_timer);
        lws_sul_cancel(&st.hub_timer);
        lws_sul_cancel(&st.stop_timer);
    }
    if (sig_started) {
        pthread_kill(sig.thread, SIGUSR1); /* before lws goes: it wakes lws on signals */
        pthread_join(sig.thread, NULL);
    }
    /* The workers first: they wake the lws loop when they report (wake_loop), so they
     * must be gone before it is. The hub's media calls see st.media NULL from here. */
    media_engine_stop(st.media);
    st.media = NULL;
    /* The reader too pushes answers that wake the loop; it records searches, so the writer
     * is still there. Answers it leaves in the inbox are freed by the drain below. */
    audit_reader_stop(st.audit_reader);
    st.audit_reader = NULL;
    /* The consultations ended at "stopping" asked for their media summaries; the answers are
     * in the inbox now (the workers are joined), or were lost to a full one. Either way each
     * participant gets its media_summary event while the audit writer is there. Ended from
     * here on, a consultation's summary fails at once (the engine is gone: -ESHUTDOWN). */
    if (st.inbox && st.hub) {
        drain_inbox(&st, true);
        sig_hub_media_summary_flush(st.hub);
    }
    /* Closes what is left; the hub hears each close and audits it, so the audit
     * writer must still be there. */
    set_wakeable(&st, false);
    if (st.lws)
        lws_context_destroy(st.lws);
    st.lws = NULL;
    if (st.audit) {
        snprintf(detail, sizeof(detail), "{\"status\":%d}", status);
        audit_writer_record(st.audit, "server_stopped", detail);
    }
    audit_writer_stop(st.audit);
    st.audit = NULL;
    sig_hub_free(st.hub);
    sig_accounts_close(st.accounts);
    lws_log_target = NULL;
    if (st.inbox) /* events the workers sent after the last wake-up */
        drain_inbox(&st, false);
    base_mailbox_free(st.inbox);
    free(st.health);
    if (status == 0)
        log_info(log, "server", "stopped", LOG_INT("stop_ms", base_now_ms() - stop_started));
    return status;
}
