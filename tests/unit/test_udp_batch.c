/*
 * test_udp_batch.c - base_udp_send over real loopback sockets: runs to one
 * address go out as one segmented send and arrive as the same datagrams, in
 * order, whether the receiver takes them one by one or as a UDP_GRO buffer;
 * what may not be joined is not; refused datagrams are counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"

#define MAX_DGRAMS 64
#define DGRAM_MAX  1400

struct endpoint {
    int fd;
    struct sockaddr_in addr;
};

static struct endpoint open_endpoint(bool gro)
{
    struct endpoint e = {.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    assert_true(e.fd >= 0);
    int size = 4 << 20, one = 1;
    setsockopt(e.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (gro)
        assert_int_equal(setsockopt(e.fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)), 0);
    e.addr.sin_family = AF_INET;
    e.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(e.fd, (struct sockaddr *)&e.addr, sizeof(e.addr)), 0);
    socklen_t len = sizeof(e.addr);
    assert_int_equal(getsockname(e.fd, (struct sockaddr *)&e.addr, &len), 0);
    return e;
}

/* Datagrams to send: destination and length each; datagram i's bytes are all (i + 1). */
struct batch {
    unsigned count;
    struct mmsghdr msgs[MAX_DGRAMS];
    struct iovec iovs[MAX_DGRAMS];
    struct sockaddr_in to[MAX_DGRAMS];
    uint8_t data[MAX_DGRAMS][DGRAM_MAX];
};

static void add(struct batch *b, const struct sockaddr_in *to, size_t len)
{
    unsigned i = b->count++;
    memset(b->data[i], (int)(i + 1), len);
    b->to[i] = *to;
    b->iovs[i] = (struct iovec){.iov_base = b->data[i], .iov_len = len};
    b->msgs[i].msg_hdr = (struct msghdr){.msg_name = &b->to[i],
                                         .msg_namelen = sizeof(b->to[i]),
                                         .msg_iov = &b->iovs[i],
                                         .msg_iovlen = 1};
}

/* Reads what arrived at `e` into datagrams (cutting UDP_GRO buffers); returns how many, and in
 * *coalesced the reads that held more than one. */
static unsigned receive(struct endpoint *e, size_t *lens, uint8_t *firsts, unsigned max,
                        unsigned *coalesced)
{
    static uint8_t buf[65536];
    unsigned n = 0;
    *coalesced = 0;
    struct pollfd p = {.fd = e->fd, .events = POLLIN};
    while (n < max && poll(&p, 1, 200) == 1) {
        union {
            struct cmsghdr align;
            uint8_t bytes[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr h = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.bytes,
                           .msg_controllen = sizeof(control.bytes)};
        ssize_t got = recvmsg(e->fd, &h, MSG_DONTWAIT);
        assert_true(got >= 0);
        size_t segment = base_udp_gro_segment_size(&h);
        if (segment == 0 || segment > (size_t)got)
            segment = (size_t)got;
        else if ((size_t)got > segment)
            (*coalesced)++;
        for (size_t at = 0; at < (size_t)got && n < max; at += segment) {
            size_t len = (size_t)got - at < segment ? (size_t)got - at : segment;
            for (size_t k = 1; k < len; k++)
                assert_int_equal(buf[at + k], buf[at]); /* one datagram's bytes, not two */
            lens[n] = len;
            firsts[n] = buf[at];
            n++;
        }
    }
    return n;
}

static void expect_received(struct endpoint *e, const size_t *lens, const uint8_t *marks,
                            unsigned count, unsigned *coalesced)
{
    size_t got_lens[MAX_DGRAMS];
    uint8_t got_marks[MAX_DGRAMS];
    assert_int_equal(receive(e, got_lens, got_marks, MAX_DGRAMS, coalesced), count);
    for (unsigned i = 0; i < count; i++) {
        assert_int_equal(got_lens[i], lens[i]);
        assert_int_equal(got_marks[i], marks[i]);
    }
}

/* A sender, one receiver that takes datagrams one by one, and a batch to fill. */
struct rig {
    struct endpoint sender, receiver;
    struct base_udp_sender *s;
    struct batch *batch;
};

static struct rig rig_open(int send_flags)
{
    struct rig r = {.sender = open_endpoint(false), .receiver = open_endpoint(false)};
    r.s = base_udp_sender_new(r.sender.fd, true, send_flags);
    r.batch = calloc(1, sizeof(*r.batch));
    assert_non_null(r.s);
    assert_non_null(r.batch);
    return r;
}

static void rig_close(struct rig *r)
{
    free(r->batch);
    base_udp_sender_free(r->s);
    close(r->sender.fd);
    close(r->receiver.fd);
}

/* A (takes datagrams one by one) and B (takes UDP_GRO buffers), runs of every shape. */
static void send_mixed(bool want_gso, unsigned expect_messages)
{
    struct endpoint sender = open_endpoint(false), a = open_endpoint(false),
                    b = open_endpoint(true);
    struct base_udp_sender *s = base_udp_sender_new(sender.fd, want_gso, 0);
    assert_non_null(s);
    assert_int_equal(base_udp_sender_gso(s), want_gso);
    struct batch *batch = calloc(1, sizeof(*batch));
    assert_non_null(batch);
    add(batch, &a.addr, 1000); /* 1: a run of three, the last shorter */
    add(batch, &a.addr, 1000);
    add(batch, &a.addr, 600);
    add(batch, &a.addr, 1000); /* 4: alone, the next goes elsewhere */
    add(batch, &b.addr, 400);  /* 5: alone, the next is longer */
    add(batch, &b.addr, 500);  /* 6: a run of four */
    add(batch, &b.addr, 500);
    add(batch, &b.addr, 500);
    add(batch, &b.addr, 500);
    add(batch, &b.addr, 700); /* 10: longer than the run before it: alone */
    struct base_udp_sent sent;
    base_udp_send(s, batch->msgs, batch->count, &sent);
    assert_int_equal(sent.datagrams, 10);
    assert_int_equal(sent.failed, 0);
    assert_int_equal(sent.bytes, 1000 * 3 + 600 + 400 + 500 * 4 + 700);
    assert_int_equal(sent.messages, expect_messages);

    unsigned coalesced;
    size_t a_lens[] = {1000, 1000, 600, 1000};
    uint8_t a_marks[] = {1, 2, 3, 4};
    expect_received(&a, a_lens, a_marks, 4, &coalesced);
    assert_int_equal(coalesced, 0); /* no UDP_GRO: the kernel cuts the run before us */
    size_t b_lens[] = {400, 500, 500, 500, 500, 700};
    uint8_t b_marks[] = {5, 6, 7, 8, 9, 10};
    expect_received(&b, b_lens, b_marks, 6, &coalesced);
    /* With UDP_GRO, the run of four arrives as one buffer (loopback keeps the segmented send
     * whole up to the socket); without joining, nothing is coalesced on loopback. */
    assert_int_equal(coalesced, want_gso ? 1 : 0);

    free(batch);
    base_udp_sender_free(s);
    close(sender.fd);
    close(a.fd);
    close(b.fd);
}

static void joins_runs_and_every_datagram_arrives(void **state)
{
    (void)state;
    send_mixed(true, 5);
}

static void without_segmentation_sends_one_by_one(void **state)
{
    (void)state;
    send_mixed(false, 10);
}

/* 64 datagrams of 1200 bytes are more than one segmented send may carry (64 KB). */
static void a_run_stops_at_the_size_limit(void **state)
{
    (void)state;
    struct rig r = rig_open(0);
    for (unsigned i = 0; i < MAX_DGRAMS; i++)
        add(r.batch, &r.receiver.addr, 1200);
    struct base_udp_sent sent;
    base_udp_send(r.s, r.batch->msgs, r.batch->count, &sent);
    assert_int_equal(sent.datagrams, 64);
    assert_int_equal(sent.messages, 2); /* 54 (64 800 bytes) and 10 */
    size_t lens[MAX_DGRAMS];
    uint8_t marks[MAX_DGRAMS];
    for (unsigned i = 0; i < MAX_DGRAMS; i++) {
        lens[i] = 1200;
        marks[i] = (uint8_t)(i + 1);
    }
    unsigned coalesced;
    expect_received(&r.receiver, lens, marks, MAX_DGRAMS, &coalesced);
    rig_close(&r);
}

/* Datagrams whose iovecs are not consecutive entries of one array are never joined. */
static void scattered_iovecs_are_not_joined(void **state)
{
    (void)state;
    struct rig r = rig_open(0);
    for (unsigned i = 0; i < 3; i++)
        add(r.batch, &r.receiver.addr, 300);
    r.batch->iovs[5] = r.batch->iovs[1];
    r.batch->msgs[1].msg_hdr.msg_iov = &r.batch->iovs[5];
    struct base_udp_sent sent;
    base_udp_send(r.s, r.batch->msgs, r.batch->count, &sent);
    assert_int_equal(sent.datagrams, 3);
    assert_int_equal(sent.messages, 3); /* 0 cannot take 1; 1 cannot take 2 */
    size_t lens[] = {300, 300, 300};
    uint8_t marks[] = {1, 2, 3};
    unsigned coalesced;
    expect_received(&r.receiver, lens, marks, 3, &coalesced);
    rig_close(&r);
}

/* A destination the kernel refuses costs its datagrams, not the rest of the batch; a refused
 * run is tried again datagram by datagram. */
static void refused_datagrams_are_counted_and_skipped(void **state)
{
    (void)state;
    struct rig r = rig_open(MSG_DONTWAIT);
    struct sockaddr_in nowhere = r.receiver.addr;
    add(r.batch, &r.receiver.addr, 200);
    add(r.batch, &nowhere, 200); /* a run of two with an address too short to be one */
    add(r.batch, &nowhere, 200);
    r.batch->msgs[1].msg_hdr.msg_namelen = 3;
    r.batch->msgs[2].msg_hdr.msg_namelen = 3;
    add(r.batch, &r.receiver.addr, 200);
    struct base_udp_sent sent;
    base_udp_send(r.s, r.batch->msgs, r.batch->count, &sent);
    assert_int_equal(sent.datagrams, 2);
    assert_int_equal(sent.failed, 2);
    assert_int_equal(sent.bytes, 400);
    assert_true(base_udp_sender_gso(r.s)); /* a run's refusal never turns segmentation off */
    size_t lens[] = {200, 200};
    uint8_t marks[] = {1, 4};
    unsigned coalesced;
    expect_received(&r.receiver, lens, marks, 2, &coalesced);
    rig_close(&r);
}

/* A run whose segments do not fit the path's MTU (EMSGSIZE; EINVAL on older kernels) goes
 * again one by one, and the kernel fragments each datagram as it would have without joining.
 * IPV6_MTU gives the sending socket a 1280-byte path on ::1. */
static void a_run_over_the_mtu_goes_one_by_one(void **state)
{
    (void)state;
    int tx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0),
        rx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(tx >= 0 && rx >= 0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof(to);
    assert_int_equal(bind(rx, (struct sockaddr *)&to, sizeof(to)), 0);
    assert_int_equal(getsockname(rx, (struct sockaddr *)&to, &len), 0);
    int mtu = 1280;
    assert_int_equal(setsockopt(tx, IPPROTO_IPV6, IPV6_MTU, &mtu, sizeof(mtu)), 0);
    static uint8_t data[3][1400];
    struct iovec iovs[3];
    struct mmsghdr msgs[3];
    for (unsigned i = 0; i < 3; i++) {
        memset(data[i], (int)(i + 1), sizeof(data[i]));
        iovs[i] = (struct iovec){.iov_base = data[i], .iov_len = sizeof(data[i])};
        msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = &iovs[i], .msg_iovlen = 1};
    }
    struct base_udp_sender *s = base_udp_sender_new(tx, true, 0);
    assert_non_null(s);
    struct base_udp_sent sent;
    base_udp_send(s, msgs, 3, &sent);
    assert_int_equal(sent.failed, 0);
    assert_int_equal(sent.datagrams, 3);
    assert_int_equal(sent.messages, 3);
    assert_true(base_udp_sender_gso(s));
    struct endpoint receiver = {.fd = rx};
    size_t lens[] = {1400, 1400, 1400};
    uint8_t marks[] = {1, 2, 3};
    unsigned coalesced;
    expect_received(&receiver, lens, marks, 3, &coalesced);
    base_udp_sender_free(s);
    close(tx);
    close(rx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(joins_runs_and_every_datagram_arrives),
        cmocka_unit_test(without_segmentation_sends_one_by_one),
        cmocka_unit_test(a_run_stops_at_the_size_limit),
        cmocka_unit_test(scattered_iovecs_are_not_joined),
        cmocka_unit_test(refused_datagrams_are_counted_and_skipped),
        cmocka_unit_test(a_run_over_the_mtu_goes_one_by_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
