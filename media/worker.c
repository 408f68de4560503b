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
 * Until legs exist every datagram is classified (RFC 7983) and dropped with a
 * reason; the loop, the batching and the counters are the ones the relay will
 * use.
 */
#include "media.h"

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

#define RECV_BATCH       32
#define DATAGRAM_MAX     1500
#define MAILBOX_CAPACITY 256
#define SOCKET_BUFFER    (4 * 1024 * 1024)

struct worker_counters {
    _Atomic uint64_t packets_received;
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t packets_dropped[MEDIA_DROP_REASON_COUNT];
    _Atomic uint64_t receive_batches;
};

struct media_worker {
    unsigned index;
    uint16_t port;
    int udp_fd;
    int epoll_fd;
    struct base_mailbox *mailbox;
    struct base_logger *log;
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

/* The smallest datagram worth looking at: a STUN header or a minimal RTCP packet. */
#define MIN_DATAGRAM 8

static void count_add(_Atomic uint64_t *c, uint64_t n)
{
    /* Only the worker writes its counters: a relaxed load + store needs no locked instruction. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Handles one received datagram. The packet path: no allocation, lock or log. */
static void worker_handle_datagram(struct media_worker *w, const uint8_t *data, size_t len)
{
    if (len < MIN_DATAGRAM) {
        count_add(&w->counters.packets_dropped[MEDIA_DROP_TOO_SHORT], 1);
        return;
    }
    switch (media_classify_packet(data, len)) {
    case MEDIA_PACKET_STUN:
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
            worker_handle_datagram(w, w->buffers[i], len);
        }
        count_add(&w->counters.packets_received, (uint64_t)n);
        count_add(&w->counters.bytes_received, bytes);
        count_add(&w->counters.receive_batches, 1);
        if (n < RECV_BATCH)
            return;
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
        int n = epoll_wait(w->epoll_fd, events, 2, -1);
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
    base_mailbox_free(w->mailbox);
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
    w->udp_fd = -1;
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
    for (unsigned r = 0; r < MEDIA_DROP_REASON_COUNT; r++)
        out->packets_dropped[r] =
            atomic_load_explicit(&c->packets_dropped[r], memory_order_relaxed);
}
