/*
 * udp_batch.c - sending a batch of datagrams with one sendmmsg, runs to one
 * destination joined into segmented sends (UDP generic segmentation offload).
 *
 * Why: on the relay's send path most of the kernel's cost is per datagram
 * (route lookup, netfilter, the device queue, and on loopback the receiver's
 * whole input path). A video frame is several packets of one size to one
 * receiver, so one segmented send per run pays those once per frame.
 *
 * Nothing here allocates or logs after base_udp_sender_new(): the caller's
 * packet path stays allocation-free.
 */
#include "base.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The kernel's limits for one segmented send (UDP_MAX_SEGMENTS is 64 on every
 * kernel that has UDP_SEGMENT; the payload must fit one IPv6 or IPv4 packet). */
#define RUN_SEGMENTS_MAX 64
#define RUN_BYTES_MAX    (65535 - 40 - 8)

_Static_assert(BASE_UDP_BATCH_MAX <= RUN_SEGMENTS_MAX, "a batch never needs two messages per run");

struct base_udp_sender {
    int fd;
    int flags;
    bool gso;
    struct mmsghdr messages[BASE_UDP_BATCH_MAX];
    unsigned first[BASE_UDP_BATCH_MAX]; /* the index of each message's first datagram */
    union {
        struct cmsghdr align;
        uint8_t bytes[CMSG_SPACE(sizeof(uint16_t))];
    } control[BASE_UDP_BATCH_MAX];
};

struct base_udp_sender *base_udp_sender_new(int fd, bool want_gso, int send_flags)
{
    struct base_udp_sender *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = fd;
    s->flags = send_flags;
    if (want_gso) {
        /* A kernel without UDP_SEGMENT (before 4.18) refuses the option. */
        int size = 0;
        socklen_t len = sizeof(size);
        s->gso = getsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &size, &len) == 0;
    }
    return s;
}

void base_udp_sender_free(struct base_udp_sender *s)
{
    free(s);
}

bool base_udp_sender_gso(const struct base_udp_sender *s)
{
    return s->gso;
}

static bool same_destination(const struct msghdr *a, const struct msghdr *b)
{
    return a->msg_namelen == b->msg_namelen &&
           memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0;
}

/* How many datagrams from `first` make one run. */
static unsigned run_length(const struct mmsghdr *d, unsigned first, unsigned count)
{
    const struct msghdr *head = &d[first].msg_hdr;
    size_t segment = head->msg_iov[0].iov_len, total = segment;
    unsigned n = 1;
    if (segment == 0)
        return 1;
    while (first + n < count && n < RUN_SEGMENTS_MAX) {
        const struct msghdr *next = &d[first + n].msg_hdr;
        size_t len = next->msg_iov[0].iov_len;
        if (next->msg_iov != head->msg_iov + n || len == 0 || len > segment ||
            total + len > RUN_BYTES_MAX || !same_destination(head, next))
            break;
        total += len;
        n++;
        if (len < segment)
            break; /* only the last segment may be shorter */
    }
    return n;
}

/* Sends datagrams [first, first + n) one message each, counting into `sent`. */
static void send_one_by_one(struct base_udp_sender *s, struct mmsghdr *d, unsigned first,
                            unsigned n, struct base_udp_sent *sent)
{
    unsigned done = 0;
    while (done < n) {
        int r = sendmmsg(s->fd, &d[first + done], n - done, s->flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            sent->messages++;
            sent->failed++;
            done++;
            continue;
        }
        for (int i = 0; i < r; i++)
            sent->bytes += d[first + done + (unsigned)i].msg_hdr.msg_iov[0].iov_len;
        sent->datagrams += (unsigned)r;
        sent->messages += (unsigned)r;
        done += (unsigned)r;
    }
}

void base_udp_send(struct base_udp_sender *s, struct mmsghdr *datagrams, unsigned count,
                   struct base_udp_sent *sent)
{
    *sent = (struct base_udp_sent){0};
    if (count > BASE_UDP_BATCH_MAX) {
        sent->failed = count - BASE_UDP_BATCH_MAX; /* a caller's bug, but never silent */
        count = BASE_UDP_BATCH_MAX;
    }
    if (!s->gso) {
        send_one_by_one(s, datagrams, 0, count, sent);
        return;
    }
    /* Join runs into messages whose iovecs are the run's datagrams. */
    unsigned m = 0;
    for (unsigned i = 0; i < count; m++) {
        unsigned n = run_length(datagrams, i, count);
        struct msghdr *h = &s->messages[m].msg_hdr;
        *h = datagrams[i].msg_hdr;
        h->msg_iovlen = n;
        h->msg_control = NULL;
        h->msg_controllen = 0;
        h->msg_flags = 0;
        if (n > 1) {
            h->msg_control = s->control[m].bytes;
            h->msg_controllen = sizeof(s->control[m].bytes);
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = IPPROTO_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)datagrams[i].msg_hdr.msg_iov[0].iov_len;
            memcpy(CMSG_DATA(c), &segment, sizeof(segment));
        }
        s->first[m] = i;
        i += n;
    }
    unsigned done = 0;
    while (done < m) {
        int r = sendmmsg(s->fd, &s->messages[done], m - done, s->flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0) {
            for (unsigned k = done; k < done + (unsigned)r; k++) {
                const struct msghdr *h = &s->messages[k].msg_hdr;
                for (size_t j = 0; j < h->msg_iovlen; j++)
                    sent->bytes += h->msg_iov[j].iov_len;
                sent->datagrams += (unsigned)h->msg_iovlen;
            }
            sent->messages += (unsigned)r;
            done += (unsigned)r;
            continue;
        }
        /* The kernel refused message `done`. A run it will not segment goes again one by one:
         * EMSGSIZE when a segment does not fit the path's MTU (alone, it may be fragmented),
         * EIO on a route through IPsec, EINVAL for anything else about the run. */
        int err = r < 0 ? errno : EIO;
        unsigned n = (unsigned)s->messages[done].msg_hdr.msg_iovlen;
        if (n > 1 && (err == EMSGSIZE || err == EIO || err == EINVAL)) {
            send_one_by_one(s, datagrams, s->first[done], n, sent);
        } else {
            sent->messages++;
            sent->failed += n;
        }
        done++;
    }
}

size_t base_udp_gro_segment_size(const struct msghdr *received)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(received); c;
         c = CMSG_NXTHDR((struct msghdr *)received, c))
        if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
            int size = 0;
            memcpy(&size, CMSG_DATA(c), sizeof(size));
            return size > 0 ? (size_t)size : 0;
        }
    return 0;
}
