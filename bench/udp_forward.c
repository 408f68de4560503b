/*
 * udp_forward.c - the plain UDP forwarder: the floor the relay is measured against.
 *
 * One UDP socket on 127.0.0.1, one thread, no crypto, nothing allocated per
 * packet. A client registers its address as one side of a pair; every other
 * datagram from a registered address goes out unchanged to the other side of
 * its pair. Whatever the media relay costs beyond this program is the cost of
 * ICE, DTLS, SRTP and its own bookkeeping: this is what the kernel's UDP path
 * alone costs on the same machine.
 *
 *   udp_forward [--port P] [--segmentation on|off]
 *
 * --port: 0, the default, takes any free port. --segmentation (default on)
 * sends a run of same-size datagrams to one receiver as one UDP segmented
 * send (base_udp_send, as the media workers do), so the floor is measured
 * with the same kernel path the relay uses.
 *
 * It prints {"port":P} on one line once bound, forwards until SIGINT or
 * SIGTERM, then prints one JSON line of totals and exits 0.
 *
 * Protocol (bench/loadgen is the other end):
 *   - "FWD1", a big-endian u32 pair id (< 65536), a u8 side (0 or 1): the
 *     source address becomes that side of that pair. Registering again moves
 *     the side to the new address; an address holds at most one side.
 *   - anything else from a registered address: sent unchanged to the other
 *     side of its pair when that side is registered, else dropped (counted in
 *     dropped_unknown, as is anything from an unregistered address).
 *   - datagrams from anywhere but 127.0.0.1, truncated ones (over BUF_SIZE)
 *     and malformed registrations are rejected (counted in rejected).
 *
 * Why it is shaped this way:
 *   - Every peer is on 127.0.0.1, so an address is its port: the source to
 *     (pair, side) lookup is an array indexed by port, and a side is stored as
 *     a port. Both tables are allocated at start (256 KiB each).
 *   - recvmmsg takes up to BATCH datagrams per call; the datagrams of one
 *     receive batch that are to be forwarded go out in one base_udp_send
 *     (one sendmmsg, runs to one receiver segmented as the media workers'),
 *     straight from the receive buffers (no copy).
 *   - The receive blocks (MSG_WAITFORONE: wait for one, then take what is
 *     queued), which costs one system call per wake-up fewer than
 *     epoll_wait + recvmmsg. SIGINT and SIGTERM are blocked and read from a
 *     signalfd; a receive timeout (SIGNAL_CHECK_MS) bounds how long a stop
 *     waits when no traffic comes, and under traffic the signalfd is polled
 *     at most once per SIGNAL_CHECK_MS.
 *
 * Single-threaded.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base.h"

#define BATCH           64
#define BUF_SIZE        2048 /* larger than any RTP packet the load generator sends */
#define SOCK_BUF_BYTES  (4 * 1024 * 1024)
#define SIGNAL_CHECK_MS 100
#define PAIRS_MAX       65536
#define REG_MAGIC       "FWD1"
#define REG_LEN         9 /* magic, u32 pair, u8 side */

/* What a source port is registered as. */
struct fwd_slot {
    uint16_t pair;
    uint8_t side;
    uint8_t used;
};

struct fwd_counters {
    uint64_t received;
    uint64_t forwarded;
    uint64_t dropped_unknown;
    uint64_t rejected;
    uint64_t send_errors;
    uint64_t registrations;
    uint64_t batches;  /* recvmmsg calls that returned datagrams */
    uint64_t sends;    /* send batches (base_udp_send calls) */
    uint64_t messages; /* sendmmsg messages: a segmented run is one */
};

struct fwd {
    int fd;
    int sig_fd;
    struct fwd_slot *by_port;    /* [65536]: source port -> (pair, side) */
    uint16_t (*sides)[2];        /* [PAIRS_MAX][2]: pair, side -> port, 0 when unregistered */
    struct mmsghdr *rx;          /* [BATCH] */
    struct iovec *rx_iov;        /* [BATCH] */
    struct sockaddr_in *rx_from; /* [BATCH] */
    unsigned char *bufs;         /* [BATCH][BUF_SIZE] */
    struct mmsghdr *tx;          /* [BATCH] */
    struct iovec *tx_iov;        /* [BATCH]: points into bufs, no copy */
    struct sockaddr_in *tx_to;   /* [BATCH] */
    struct base_udp_sender *sender;
    struct fwd_counters n;
};

static void fwd_free(struct fwd *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->sig_fd >= 0)
        close(f->sig_fd);
    free(f->by_port);
    free(f->sides);
    free(f->rx);
    free(f->rx_iov);
    free(f->rx_from);
    free(f->bufs);
    free(f->tx);
    free(f->tx_iov);
    free(f->tx_to);
    base_udp_sender_free(f->sender);
}

/* Allocates every table and wires the receive and send vectors once. Returns 0 or -ENOMEM. */
static int fwd_alloc(struct fwd *f)
{
    f->by_port = calloc(65536, sizeof(*f->by_port));
    f->sides = calloc(PAIRS_MAX, sizeof(*f->sides));
    f->rx = calloc(BATCH, sizeof(*f->rx));
    f->rx_iov = calloc(BATCH, sizeof(*f->rx_iov));
    f->rx_from = calloc(BATCH, sizeof(*f->rx_from));
    f->bufs = malloc((size_t)BATCH * BUF_SIZE);
    f->tx = calloc(BATCH, sizeof(*f->tx));
    f->tx_iov = calloc(BATCH, sizeof(*f->tx_iov));
    f->tx_to = calloc(BATCH, sizeof(*f->tx_to));
    if (!f->by_port || !f->sides || !f->rx || !f->rx_iov || !f->rx_from || !f->bufs || !f->tx ||
        !f->tx_iov || !f->tx_to)
        return -ENOMEM;
    for (int i = 0; i < BATCH; i++) {
        f->rx_iov[i].iov_base = f->bufs + (size_t)i * BUF_SIZE;
        f->rx_iov[i].iov_len = BUF_SIZE;
        f->rx[i].msg_hdr.msg_iov = &f->rx_iov[i];
        f->rx[i].msg_hdr.msg_iovlen = 1;
        f->rx[i].msg_hdr.msg_name = &f->rx_from[i];
        f->tx_to[i].sin_family = AF_INET;
        f->tx_to[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f->tx[i].msg_hdr.msg_name = &f->tx_to[i];
        f->tx[i].msg_hdr.msg_namelen = sizeof(f->tx_to[i]);
        f->tx[i].msg_hdr.msg_iov = &f->tx_iov[i];
        f->tx[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

/*
 * Binds the socket to 127.0.0.1:port with large buffers and a receive timeout.
 * Returns 0 or a negative errno; *bound_port is the port actually bound.
 */
static int fwd_open(struct fwd *f, uint16_t port, uint16_t *bound_port)
{
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        return -errno;
    /* Capped by net.core.[rw]mem_max (4 MiB on Debian 12 here); the kernel doubles it. */
    int bytes = SOCK_BUF_BYTES;
    if (setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) != 0 ||
        setsockopt(f->fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)) != 0)
        return -errno;
    struct timeval tv = {.tv_sec = 0, .tv_usec = SIGNAL_CHECK_MS * 1000};
    if (setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return -errno;
    socklen_t len = sizeof(sa);
    if (getsockname(f->fd, (struct sockaddr *)&sa, &len) != 0)
        return -errno;
    *bound_port = ntohs(sa.sin_port);
    return 0;
}

/*
 * Blocks SIGINT and SIGTERM and opens a non-blocking signalfd for them. Returns 0 or -errno.
 * SIGPIPE is ignored: a parent that read the port line and closed the pipe must not turn
 * the totals printed at the stop into a death by signal.
 */
static int fwd_open_signals(struct fwd *f)
{
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        return -errno;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    f->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return f->sig_fd < 0 ? -errno : 0;
}

/* True once SIGINT or SIGTERM has arrived. */
static bool fwd_stop_requested(const struct fwd *f)
{
    struct signalfd_siginfo si;
    return read(f->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si);
}

/*
 * Makes `port` side `side` of `pair`, undoing whatever the port and the side
 * were before, so that by_port and sides always mirror each other.
 */
static void fwd_register(struct fwd *f, uint16_t port, uint16_t pair, uint8_t side)
{
    assert(port != 0 && side <= 1);
    struct fwd_slot *slot = &f->by_port[port];
    if (slot->used)
        f->sides[slot->pair][slot->side] = 0;
    uint16_t old = f->sides[pair][side];
    if (old != 0)
        f->by_port[old].used = 0;
    f->sides[pair][side] = port;
    *slot = (struct fwd_slot){.pair = pair, .side = side, .used = 1};
    f->n.registrations++;
}

/*
 * Looks at received datagram i: registers it, rejects it, drops it, or
 * queues it in the send vector. Returns 1 when it was queued, else 0.
 */
static int fwd_route(struct fwd *f, int i, int queued)
{
    assert(i < BATCH && queued <= i);
    const struct mmsghdr *m = &f->rx[i];
    const struct sockaddr_in *from = &f->rx_from[i];
    unsigned char *p = f->rx_iov[i].iov_base;
    if (m->msg_hdr.msg_namelen != sizeof(*from) || from->sin_family != AF_INET ||
        from->sin_addr.s_addr != htonl(INADDR_LOOPBACK) || (m->msg_hdr.msg_flags & MSG_TRUNC)) {
        f->n.rejected++;
        return 0;
    }
    uint16_t port = ntohs(from->sin_port);
    if (m->msg_len >= 4 && memcmp(p, REG_MAGIC, 4) == 0) {
        if (m->msg_len < REG_LEN) {
            f->n.rejected++;
            return 0;
        }
        uint32_t pair = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        if (pair >= PAIRS_MAX || p[8] > 1) {
            f->n.rejected++;
            return 0;
        }
        fwd_register(f, port, (uint16_t)pair, p[8]);
        return 0;
    }
    const struct fwd_slot *slot = &f->by_port[port];
    uint16_t to = slot->used ? f->sides[slot->pair][slot->side ^ 1] : 0;
    if (to == 0) {
        f->n.dropped_unknown++;
        return 0;
    }
    f->tx_to[queued].sin_port = htons(to);
    f->tx_iov[queued] = (struct iovec){.iov_base = p, .iov_len = m->msg_len};
    return 1;
}

/*
 * Sends the first `count` queued datagrams, joining runs to one receiver when
 * segmentation is on. A datagram the kernel refuses is counted and skipped.
 * The socket blocks on send, so a full send buffer waits rather than drops
 * (on loopback it does not fill: a datagram leaves the sender's buffer as soon
 * as it is queued at the receiver).
 */
static void fwd_send(struct fwd *f, int count)
{
    struct base_udp_sent sent;
    base_udp_send(f->sender, f->tx, (unsigned)count, &sent);
    f->n.sends++;
    f->n.forwarded += sent.datagrams;
    f->n.send_errors += sent.failed;
    f->n.messages += sent.messages;
}

/* Milliseconds on the monotonic clock. */
static int64_t fwd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The forwarding loop, until a stop signal. Returns 0 or a negative errno from recvmmsg. */
static int fwd_run(struct fwd *f)
{
    int64_t next_check = fwd_now_ms() + SIGNAL_CHECK_MS;
    for (;;) {
        /* recvmmsg overwrites the name lengths; everything else stays as fwd_alloc set it. */
        for (int i = 0; i < BATCH; i++)
            f->rx[i].msg_hdr.msg_namelen = sizeof(f->rx_from[i]);
        int n = recvmmsg(f->fd, f->rx, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            /* Out of kernel memory for a moment: not a reason to stop a benchmark. */
            if (errno == ENOMEM || errno == ENOBUFS)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
            /* The receive timed out: no traffic, a good moment to look for a stop. */
            if (fwd_stop_requested(f))
                return 0;
            next_check = fwd_now_ms() + SIGNAL_CHECK_MS;
            continue;
        }
        f->n.batches++;
        f->n.received += (uint64_t)n;
        int queued = 0;
        for (int i = 0; i < n; i++)
            queued += fwd_route(f, i, queued);
        if (queued > 0)
            fwd_send(f, queued);
        int64_t now = fwd_now_ms();
        if (now >= next_check) {
            if (fwd_stop_requested(f))
                return 0;
            next_check = now + SIGNAL_CHECK_MS;
        }
    }
}

/* The socket's buffer option as the kernel set it, or -1. */
static int fwd_sockopt(int fd, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    return getsockopt(fd, SOL_SOCKET, name, &v, &len) == 0 ? v : -1;
}

/* Datagrams the kernel dropped at this socket (receive buffer full), or -1. */
static long long fwd_kernel_drops(int fd)
{
    uint32_t mem[SK_MEMINFO_VARS] = {0};
    socklen_t len = sizeof(mem);
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
        len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
        return -1;
    return mem[SK_MEMINFO_DROPS];
}

static void usage(void)
{
    fprintf(stderr, "usage: udp_forward [--port P] [--segmentation on|off]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long port = 0;
    bool segmentation = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 0 || port > 65535)
                usage();
        } else if (strcmp(argv[i], "--segmentation") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
                usage();
            segmentation = strcmp(v, "on") == 0;
        } else {
            usage();
        }
    }

    struct fwd f = {.fd = -1, .sig_fd = -1};
    uint16_t bound = 0;
    int rc = fwd_alloc(&f);
    if (rc == 0)
        rc = fwd_open_signals(&f);
    if (rc == 0)
        rc = fwd_open(&f, (uint16_t)port, &bound);
    if (rc == 0 && !(f.sender = base_udp_sender_new(f.fd, segmentation, 0)))
        rc = -ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "udp_forward: cannot start: %s\n", strerror(-rc));
        fwd_free(&f);
        return 1;
    }
    printf("{\"port\":%u}\n", (unsigned)bound);
    fflush(stdout);

    rc = fwd_run(&f);
    if (rc != 0) {
        fprintf(stderr, "udp_forward: recvmmsg: %s\n", strerror(-rc));
        fwd_free(&f);
        return 1;
    }
    const struct fwd_counters *n = &f.n;
    printf("{\"forwarded\":%" PRIu64 ",\"dropped_unknown\":%" PRIu64 ",\"registrations\":%" PRIu64
           ",\"batches\":%" PRIu64 ",\"mean_batch\":%.2f,\"received\":%" PRIu64
           ",\"rejected\":%" PRIu64 ",\"send_errors\":%" PRIu64 ",\"send_batches\":%" PRIu64
           ",\"send_messages\":%" PRIu64
           ",\"segmentation\":%s,\"kernel_drops\":%lld,\"rcvbuf\":%d,\"sndbuf\":%d}\n",
           n->forwarded, n->dropped_unknown, n->registrations, n->batches,
           n->batches ? (double)n->received / (double)n->batches : 0.0, n->received, n->rejected,
           n->send_errors, n->sends, n->messages, base_udp_sender_gso(f.sender) ? "true" : "false",
           fwd_kernel_drops(f.fd), fwd_sockopt(f.fd, SO_RCVBUF), fwd_sockopt(f.fd, SO_SNDBUF));
    fflush(stdout);
    fwd_free(&f);
    return 0;
}
