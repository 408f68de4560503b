/*
 * worker.c - a media worker: one thread, one UDP socket, one epoll loop.
 *
 * Each worker owns its socket (port base_port + index), its receive buffers
 * and (in later issues) the legs pinned to it, so the packet path needs no
 * lock. Datagrams are read in batches with recvmmsg() into buffers allocated
 * once at start; nothing on that path allocates, locks or logs. Counters are
 * atomics written only by the worker (relaxed stores of its own totals) and
 * read by the signalling thread for /metrics.
 *
 * Every datagram is classified by its first byte (RFC 7983). STUN goes to
 * the ICE-lite agent: a Binding request is matched to a leg by the USERNAME's
 * first half (our ufrag), checked (FINGERPRINT, MESSAGE-INTEGRITY with the
 * leg's password) and answered with XOR-MAPPED-ADDRESS; USE-CANDIDATE selects
 * the request's source as the leg's address. A failed check is counted and
 * dropped without an answer, as is anything else for now: DTLS and RTP
 * attach here in the rest of the media issue.
 *
 * Consent freshness (RFC 7675): a nominated leg that sees no valid check for
 * consent_timeout_ms is removed and reported to the owner.
 */
#include "media.h"
#include "stun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_BATCH         32
#define DATAGRAM_MAX       1500
#define MAILBOX_CAPACITY   256
#define SOCKET_BUFFER      (4 * 1024 * 1024)
#define CONSENT_DEFAULT_MS 30000
#define TIMER_TICK_MS      1000
#define STUN_REPLY_MAX     256

struct worker_counters {
    _Atomic uint64_t packets_received;
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t packets_dropped[MEDIA_DROP_REASON_COUNT];
    _Atomic uint64_t receive_batches;
    _Atomic uint64_t stun_answered;
    _Atomic uint64_t stun_refused;
    _Atomic uint64_t legs_active;
    _Atomic uint64_t legs_nominated;
    _Atomic uint64_t legs_expired;
};

/* A leg as its worker sees it. The table is allocated once; `in_use` marks live slots. */
struct leg {
    bool in_use;
    bool nominated;
    uint64_t id;
    struct media_leg_params cred;
    struct sockaddr_storage addr; /* the selected address, once nominated */
    socklen_t addr_len;
    int64_t last_check_ms; /* the last valid Binding request */
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
    struct leg *legs; /* MEDIA_LEGS_PER_WORKER slots */
    int64_t consent_ms;
    int64_t last_tick_ms;
    pthread_t thread;
    bool thread_started;
    struct worker_counters counters;
    /* Receive buffers, allocated once: the packet path never allocates. */
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iovs[RECV_BATCH];
    struct sockaddr_storage addrs[RECV_BATCH];
    uint8_t buffers[RECV_BATCH][DATAGRAM_MAX];
};

struct media_engine {
    unsigned worker_count;
    struct media_worker **workers;
    struct base_logger *log;
};

static const char *const drop_reason_names[MEDIA_DROP_REASON_COUNT] = {
    [MEDIA_DROP_TOO_SHORT] = "too_short",
    [MEDIA_DROP_TOO_LARGE] = "too_large",
    [MEDIA_DROP_UNKNOWN_KIND] = "unknown_kind",
    [MEDIA_DROP_NO_LEG] = "no_leg",
};

const char *media_drop_reason_name(enum media_drop_reason reason)
{
    return (unsigned)reason < MEDIA_DROP_REASON_COUNT ? drop_reason_names[reason] : "unknown";
}

enum media_packet_kind media_classify_packet(const uint8_t *data, size_t len)
{
    if (len == 0)
        return MEDIA_PACKET_UNKNOWN;
    uint8_t b = data[0];
    if (b <= 3)
        return MEDIA_PACKET_STUN;
    if (b >= 20 && b <= 63)
        return MEDIA_PACKET_DTLS;
    if (b >= 128 && b <= 191)
        return MEDIA_PACKET_RTP;
    return MEDIA_PACKET_UNKNOWN; /* ZRTP, TURN channels and the rest: not ours */
}

enum { MEDIA_MSG_LEG_ADD = BASE_MSG_MODULE_FIRST, MEDIA_MSG_LEG_REMOVE };

/* The smallest datagram worth looking at: a STUN header or a minimal RTCP packet. */
#define MIN_DATAGRAM 8

static void count_add(_Atomic uint64_t *c, uint64_t n)
{
    /* Only the worker writes its counters: a relaxed load + store needs no locked instruction. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static int64_t now_ms(void)
{
    return base_now_ms();
}

static void report(struct media_worker *w, uint32_t type, uint64_t leg_id)
{
    if (!w->owner)
        return;
    struct base_msg m = {.type = type, .sender = BASE_THREAD_MEDIA_FIRST + w->index, .arg = leg_id};
    base_mailbox_push(w->owner, &m); /* a full owner mailbox loses the event: counted there */
}

static struct leg *leg_by_ufrag(struct media_worker *w, const char *ufrag, size_t len)
{
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        struct leg *l = &w->legs[i];
        if (l->in_use && strlen(l->cred.local_ufrag) == len &&
            memcmp(l->cred.local_ufrag, ufrag, len) == 0)
            return l;
    }
    return NULL;
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/*
 * ICE-lite: answers a valid Binding request for one of our legs; anything
 * else is counted and dropped without an answer (an attacker learns nothing,
 * and a browser simply retries).
 */
static void worker_handle_stun(struct media_worker *w, const uint8_t *data, size_t len,
                               const struct sockaddr_storage *from, socklen_t from_len)
{
    struct media_stun_msg msg;
    const char *ufrag;
    size_t ufrag_len;
    struct leg *l = NULL;
    if (media_stun_parse(data, len, &msg) == 0 && msg.cls == MEDIA_STUN_REQUEST &&
        media_stun_local_ufrag(&msg, &ufrag, &ufrag_len) == 0)
        l = leg_by_ufrag(w, ufrag, ufrag_len);
    if (!l || media_stun_check_binding(w->stun, &msg, l->cred.local_ufrag, l->cred.local_pwd,
                                       l->cred.remote_ufrag[0] ? l->cred.remote_ufrag : NULL) !=
                  MEDIA_STUN_CHECK_OK) {
        count_add(&w->counters.stun_refused, 1);
        return;
    }
    uint8_t reply[STUN_REPLY_MAX];
    int n = media_stun_build_binding_success(w->stun, msg.txid, from, l->cred.local_pwd, reply,
                                             sizeof(reply));
    if (n > 0 &&
        sendto(w->udp_fd, reply, (size_t)n, 0, (const struct sockaddr *)from, from_len) == n)
        count_add(&w->counters.stun_answered, 1);
    l->last_check_ms = now_ms();
    if (msg.use_candidate && (!l->nominated || !same_address(&l->addr, from))) {
        l->nominated = true;
        l->addr = *from;
        l->addr_len = from_len;
        count_add(&w->counters.legs_nominated, 1);
        report(w, MEDIA_EVENT_LEG_NOMINATED, l->id);
    }
}

/* Handles one received datagram. The packet path: no allocation, lock or log. */
static void worker_handle_datagram(struct media_worker *w, const uint8_t *data, size_t len,
                                   const struct sockaddr_storage *from, socklen_t from_len)
{
    if (len < MIN_DATAGRAM) {
        count_add(&w->counters.packets_dropped[MEDIA_DROP_TOO_SHORT], 1);
        return;
    }
    switch (media_classify_packet(data, len)) {
    case MEDIA_PACKET_STUN:
        worker_handle_stun(w, data, len, from, from_len);
        break;
    case MEDIA_PACKET_DTLS:
    case MEDIA_PACKET_RTP:
        /* No legs yet: ICE, DTLS and the relay attach here in the media issue. */
        count_add(&w->counters.packets_dropped[MEDIA_DROP_NO_LEG], 1);
        break;
    default:
        count_add(&w->counters.packets_dropped[MEDIA_DROP_UNKNOWN_KIND], 1);
    }
}

/* Reads until the socket is empty, a batch at a time. */
static void worker_read_socket(struct media_worker *w)
{
    for (;;) {
        for (unsigned i = 0; i < RECV_BATCH; i++) {
            w->msgs[i].msg_hdr.msg_namelen = sizeof(w->addrs[i]);
            w->msgs[i].msg_len = 0;
        }
        int n = recvmmsg(w->udp_fd, w->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN (drained) or a transient error; epoll will tell us again */
        uint64_t bytes = 0;
        for (int i = 0; i < n; i++) {
            size_t len = w->msgs[i].msg_len;
            bytes += len;
            /* A datagram larger than our buffer arrives truncated: never relay half a packet. */
            if (w->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                count_add(&w->counters.packets_dropped[MEDIA_DROP_TOO_LARGE], 1);
                continue;
            }
            worker_handle_datagram(w, w->buffers[i], len, &w->addrs[i],
                                   w->msgs[i].msg_hdr.msg_namelen);
        }
        count_add(&w->counters.packets_received, (uint64_t)n);
        count_add(&w->counters.bytes_received, bytes);
        count_add(&w->counters.receive_batches, 1);
        if (n < RECV_BATCH)
            return;
    }
}

static struct leg *leg_by_id(struct media_worker *w, uint64_t id)
{
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++)
        if (w->legs[i].in_use && w->legs[i].id == id)
            return &w->legs[i];
    return NULL;
}

static void worker_add_leg(struct media_worker *w, const struct media_leg_params *p)
{
    struct leg *slot = NULL;
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER && !slot; i++)
        if (!w->legs[i].in_use)
            slot = &w->legs[i];
    if (!slot || leg_by_id(w, p->leg_id) ||
        leg_by_ufrag(w, p->local_ufrag, strlen(p->local_ufrag))) {
        report(w, MEDIA_EVENT_LEG_REFUSED, p->leg_id);
        return;
    }
    memset(slot, 0, sizeof(*slot));
    slot->in_use = true;
    slot->id = p->leg_id;
    slot->cred = *p;
    slot->last_check_ms = now_ms();
    count_add(&w->counters.legs_active, 1);
}

static void worker_remove_leg(struct media_worker *w, uint64_t id)
{
    struct leg *l = leg_by_id(w, id);
    if (!l)
        return;
    memset(l, 0, sizeof(*l));
    atomic_store_explicit(&w->counters.legs_active,
                          atomic_load_explicit(&w->counters.legs_active, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

/* Once a second: consent freshness of nominated legs. */
static void worker_tick(struct media_worker *w, int64_t now)
{
    w->last_tick_ms = now;
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        struct leg *l = &w->legs[i];
        if (l->in_use && l->nominated && now - l->last_check_ms >= w->consent_ms) {
            uint64_t id = l->id;
            worker_remove_leg(w, id);
            count_add(&w->counters.legs_expired, 1);
            report(w, MEDIA_EVENT_LEG_EXPIRED, id);
        }
    }
}

/* Handles control messages; returns false once asked to stop. */
static bool worker_read_mailbox(struct media_worker *w)
{
    bool keep_running = true;
    struct base_msg msg;
    base_mailbox_clear_wakeup(w->mailbox);
    while (base_mailbox_pop(w->mailbox, &msg)) {
        switch (msg.type) {
        case BASE_MSG_PROBE:
            base_mailbox_answer_probe(&msg, BASE_THREAD_MEDIA_FIRST + w->index);
            break;
        case BASE_MSG_STOP:
            keep_running = false;
            break;
        case MEDIA_MSG_LEG_ADD:
            worker_add_leg(w, msg.ptr);
            free(msg.ptr);
            break;
        case MEDIA_MSG_LEG_REMOVE:
            worker_remove_leg(w, msg.arg);
            break;
        default:
            break;
        }
    }
    return keep_running;
}

static void *worker_main(void *arg)
{
    struct media_worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "media-%u", w->index);
    pthread_setname_np(pthread_self(), name);

    bool running = true;
    while (running) {
        struct epoll_event events[2];
        int n = epoll_wait(w->epoll_fd, events, 2, TIMER_TICK_MS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error(w->log, "media", "epoll_wait failed, worker stops",
                      LOG_INT("worker", w->index), LOG_STR("error", strerror(errno)));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.fd == w->udp_fd)
                worker_read_socket(w);
            else if (!worker_read_mailbox(w))
                running = false;
        }
        int64_t now = now_ms();
        if (now - w->last_tick_ms >= TIMER_TICK_MS)
            worker_tick(w, now);
    }
    return NULL;
}

/* Binds a UDP socket on [::]:port (dual stack) or, for a v4 host, that address. */
static int bind_udp(const char *host, uint16_t port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sslen;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (host && host[0] && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        family = AF_INET;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        sslen = sizeof(*v4);
    } else {
        family = AF_INET6;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        v6->sin6_addr = in6addr_any;
        if (host && host[0] && inet_pton(AF_INET6, host, &v6->sin6_addr) != 1) {
            snprintf(err, errlen, "media: \"%s\" is not an IP address", host);
            return -1;
        }
        sslen = sizeof(*v6);
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && family == AF_INET6 && !(host && host[0])) {
        /* No IPv6 on this machine: fall back to every IPv4 interface. */
        family = AF_INET;
        memset(&ss, 0, sizeof(ss));
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        sslen = sizeof(*v4);
        fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "media: cannot create a UDP socket: %s", strerror(errno));
        return -1;
    }
    int zero = 0, buf = SOCKET_BUFFER;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    /* Larger kernel buffers absorb bursts (a key frame is dozens of packets). */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "media_port: cannot bind UDP port %u: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void worker_free(struct media_worker *w)
{
    if (!w)
        return;
    if (w->udp_fd >= 0)
        close(w->udp_fd);
    if (w->epoll_fd >= 0)
        close(w->epoll_fd);
    if (w->mailbox) {
        struct base_msg m;
        while (base_mailbox_pop(w->mailbox, &m))
            if (m.type == MEDIA_MSG_LEG_ADD)
                free(m.ptr);
    }
    base_mailbox_free(w->mailbox);
    media_stun_ctx_free(w->stun);
    free(w->legs);
    free(w);
}

static struct media_worker *worker_new(const struct media_engine_config *cfg, unsigned index,
                                       char *err, size_t errlen)
{
    struct media_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "media: out of memory");
        return NULL;
    }
    w->index = index;
    w->port = (uint16_t)(cfg->base_port + index);
    w->log = cfg->log;
    w->owner = cfg->owner;
    w->consent_ms = cfg->consent_timeout_ms ? cfg->consent_timeout_ms : CONSENT_DEFAULT_MS;
    w->last_tick_ms = now_ms();
    w->udp_fd = -1;
    w->legs = calloc(MEDIA_LEGS_PER_WORKER, sizeof(*w->legs));
    w->stun = media_stun_ctx_new();
    if (!w->legs || !w->stun) {
        snprintf(err, errlen, "media: out of memory for worker %u", index);
        goto fail;
    }
    w->epoll_fd = -1;
    for (unsigned i = 0; i < RECV_BATCH; i++) {
        w->iovs[i].iov_base = w->buffers[i];
        w->iovs[i].iov_len = DATAGRAM_MAX;
        w->msgs[i].msg_hdr.msg_iov = &w->iovs[i];
        w->msgs[i].msg_hdr.msg_iovlen = 1;
        w->msgs[i].msg_hdr.msg_name = &w->addrs[i];
    }
    w->udp_fd = bind_udp(cfg->bind_host, w->port, err, errlen);
    if (w->udp_fd < 0)
        goto fail;
    w->mailbox = base_mailbox_new(MAILBOX_CAPACITY, NULL, NULL);
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!w->mailbox || w->epoll_fd < 0) {
        snprintf(err, errlen, "media: cannot create the worker's event loop: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->udp_fd};
    struct epoll_event mev = {.events = EPOLLIN, .data.fd = base_mailbox_fd(w->mailbox)};
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->udp_fd, &ev) != 0 ||
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, mev.data.fd, &mev) != 0) {
        snprintf(err, errlen, "media: epoll_ctl failed: %s", strerror(errno));
        goto fail;
    }
    return w;
fail:
    worker_free(w);
    return NULL;
}

struct media_engine *media_engine_start(const struct media_engine_config *cfg, char *err,
                                        size_t errlen)
{
    if (cfg->worker_count == 0 || !cfg->log) {
        snprintf(err, errlen, "media: at least one worker and a logger are required");
        return NULL;
    }
    struct media_engine *e = calloc(1, sizeof(*e));
    if (!e || !(e->workers = calloc(cfg->worker_count, sizeof(*e->workers)))) {
        free(e);
        snprintf(err, errlen, "media: out of memory");
        return NULL;
    }
    e->log = cfg->log;
    for (unsigned i = 0; i < cfg->worker_count; i++) {
        e->workers[i] = worker_new(cfg, i, err, errlen);
        if (!e->workers[i])
            goto fail;
        e->worker_count = i + 1;
    }
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct media_worker *w = e->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "media: cannot start worker %u: %s", i, strerror(rc));
            goto fail;
        }
        w->thread_started = true;
    }
    log_info(e->log, "media", "workers started", LOG_INT("workers", e->worker_count),
             LOG_INT("first_port", cfg->base_port),
             LOG_INT("last_port", cfg->base_port + e->worker_count - 1));
    return e;
fail:
    media_engine_stop(e);
    return NULL;
}

void media_engine_stop(struct media_engine *e)
{
    if (!e)
        return;
    struct base_msg stop = {.type = BASE_MSG_STOP};
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct media_worker *w = e->workers[i];
        /* A full mailbox cannot happen at stop in practice; retry briefly if it does. */
        while (w->thread_started && base_mailbox_push(w->mailbox, &stop) == -EAGAIN)
            usleep(1000);
    }
    for (unsigned i = 0; i < e->worker_count; i++) {
        if (e->workers[i]->thread_started)
            pthread_join(e->workers[i]->thread, NULL);
        worker_free(e->workers[i]);
    }
    free(e->workers);
    free(e);
}

unsigned media_engine_worker_count(const struct media_engine *e)
{
    return e->worker_count;
}

int media_engine_probe(struct media_engine *e, unsigned index, struct base_mailbox *reply_to,
                       uint64_t seq)
{
    if (index >= e->worker_count)
        return -EINVAL;
    struct base_msg probe = {
        .type = BASE_MSG_PROBE, .sender = BASE_THREAD_SIGNALING, .arg = seq, .ptr = reply_to};
    return base_mailbox_push(e->workers[index]->mailbox, &probe);
}

void media_engine_worker_stats(const struct media_engine *e, unsigned index,
                               struct media_worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (index >= e->worker_count)
        return;
    const struct media_worker *w = e->workers[index];
    const struct worker_counters *c = &w->counters;
    out->port = w->port;
    out->packets_received = atomic_load_explicit(&c->packets_received, memory_order_relaxed);
    out->bytes_received = atomic_load_explicit(&c->bytes_received, memory_order_relaxed);
    out->receive_batches = atomic_load_explicit(&c->receive_batches, memory_order_relaxed);
    out->stun_answered = atomic_load_explicit(&c->stun_answered, memory_order_relaxed);
    out->stun_refused = atomic_load_explicit(&c->stun_refused, memory_order_relaxed);
    out->legs_active = atomic_load_explicit(&c->legs_active, memory_order_relaxed);
    out->legs_nominated = atomic_load_explicit(&c->legs_nominated, memory_order_relaxed);
    out->legs_expired = atomic_load_explicit(&c->legs_expired, memory_order_relaxed);
    for (unsigned r = 0; r < MEDIA_DROP_REASON_COUNT; r++)
        out->packets_dropped[r] =
            atomic_load_explicit(&c->packets_dropped[r], memory_order_relaxed);
}

/* ICE characters (RFC 8445 section 5.3): ALPHA, DIGIT, '+', '/'. */
static bool ice_chars(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '/'))
            return false;
    return true;
}

int media_engine_leg_add(struct media_engine *e, unsigned index, const struct media_leg_params *p)
{
    if (index >= e->worker_count || !ice_chars(p->local_ufrag, 4, MEDIA_UFRAG_MAX) ||
        !ice_chars(p->local_pwd, 22, MEDIA_PWD_MAX) ||
        memchr(p->remote_ufrag, '\0', sizeof(p->remote_ufrag)) == NULL)
        return -EINVAL;
    struct media_leg_params *copy = malloc(sizeof(*copy));
    if (!copy)
        return -ENOMEM;
    *copy = *p;
    struct base_msg m = {.type = MEDIA_MSG_LEG_ADD, .ptr = copy};
    int rc = base_mailbox_push(e->workers[index]->mailbox, &m);
    if (rc)
        free(copy);
    return rc;
}

int media_engine_leg_remove(struct media_engine *e, unsigned index, uint64_t leg_id)
{
    if (index >= e->worker_count)
        return -EINVAL;
    struct base_msg m = {.type = MEDIA_MSG_LEG_REMOVE, .arg = leg_id};
    return base_mailbox_push(e->workers[index]->mailbox, &m);
}
