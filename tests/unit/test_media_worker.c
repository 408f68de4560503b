/*
 * test_media_worker.c - media workers over real UDP sockets on loopback:
 * binding, first-byte demultiplexing (RFC 7983), drop counters, probes, and
 * a clean stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "media.h"
#include "stun.h"

/* Finds a base port p where UDP p and p+1 are both free on every interface. */
static uint16_t free_udp_pair(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET6, SOCK_DGRAM, 0);
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any};
        socklen_t alen = sizeof(a);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        getsockname(fd, (struct sockaddr *)&a, &alen);
        uint16_t p = ntohs(a.sin6_port);
        int fd2 = socket(AF_INET6, SOCK_DGRAM, 0);
        struct sockaddr_in6 b = {
            .sin6_family = AF_INET6, .sin6_addr = in6addr_any, .sin6_port = htons(p + 1)};
        int ok = p < 65535 && bind(fd2, (struct sockaddr *)&b, sizeof(b)) == 0;
        close(fd);
        close(fd2);
        if (ok)
            return p;
    }
    fail_msg("no free UDP port pair");
    return 0;
}

static void send_to(uint16_t port, const void *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(sendto(fd, data, len, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)len);
    close(fd);
}

/* Polls worker stats until `received` datagrams were counted (or 3 s pass). */
static void wait_for_packets(struct media_engine *e, unsigned worker, uint64_t received,
                             struct media_worker_stats *out)
{
    for (int i = 0; i < 300; i++) {
        media_engine_worker_stats(e, worker, out);
        if (out->packets_received >= received)
            return;
        usleep(10000);
    }
    fail_msg("worker %u counted %llu datagrams, expected %llu", worker,
             (unsigned long long)out->packets_received, (unsigned long long)received);
}

static void classifies_by_first_byte(void **state)
{
    (void)state;
    uint8_t b[1];
    struct {
        uint8_t first;
        enum media_packet_kind kind;
    } cases[] = {
        {0, MEDIA_PACKET_STUN},     {3, MEDIA_PACKET_STUN},      {4, MEDIA_PACKET_UNKNOWN},
        {19, MEDIA_PACKET_UNKNOWN}, {20, MEDIA_PACKET_DTLS},     {63, MEDIA_PACKET_DTLS},
        {64, MEDIA_PACKET_UNKNOWN}, {127, MEDIA_PACKET_UNKNOWN}, {128, MEDIA_PACKET_RTP},
        {191, MEDIA_PACKET_RTP},    {192, MEDIA_PACKET_UNKNOWN}, {255, MEDIA_PACKET_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        b[0] = cases[i].first;
        assert_int_equal(media_classify_packet(b, 1), cases[i].kind);
    }
    assert_int_equal(media_classify_packet(b, 0), MEDIA_PACKET_UNKNOWN);
}

static void workers_count_and_drop_real_datagrams(void **state)
{
    (void)state;
    char err[256];
    struct base_logger *log = base_logger_new(NULL, BASE_LOG_TEXT, BASE_LOG_WARN, err, 256);
    struct base_mailbox *owner = base_mailbox_new(16, NULL, NULL);
    uint16_t port = free_udp_pair();
    struct media_engine_config cfg = {
        .base_port = port, .worker_count = 2, .log = log, .owner = owner};
    struct media_engine *e = media_engine_start(&cfg, err, sizeof(err));
    if (!e)
        fail_msg("start: %s", err);
    assert_int_equal(media_engine_worker_count(e), 2);

    uint8_t short_pkt[3] = {0x80, 0, 0};
    uint8_t rtp[20] = {0x80, 111};
    uint8_t stun[20] = {0x00, 0x01};
    uint8_t junk[20] = {0x40};
    static uint8_t jumbo[2000] = {0x80};
    send_to(port, short_pkt, sizeof(short_pkt));
    send_to(port, rtp, sizeof(rtp));
    send_to(port, stun, sizeof(stun));
    send_to(port, junk, sizeof(junk));
    send_to(port, jumbo, sizeof(jumbo));
    send_to(port + 1, rtp, sizeof(rtp));

    struct media_worker_stats s0, s1;
    wait_for_packets(e, 0, 5, &s0);
    wait_for_packets(e, 1, 1, &s1);
    assert_int_equal(s0.port, port);
    assert_int_equal(s1.port, port + 1);
    assert_int_equal(s0.packets_received, 5);
    assert_int_equal(s0.packets_dropped[MEDIA_DROP_TOO_SHORT], 1);
    assert_int_equal(s0.packets_dropped[MEDIA_DROP_UNKNOWN_KIND], 1);
    assert_int_equal(s0.packets_dropped[MEDIA_DROP_TOO_LARGE], 1);
    assert_int_equal(s0.packets_dropped[MEDIA_DROP_NO_LEG], 1); /* the RTP one */
    assert_int_equal(s0.stun_refused, 1);                       /* STUN for no leg */
    assert_int_equal(s1.packets_dropped[MEDIA_DROP_NO_LEG], 1);
    assert_true(s0.bytes_received >= 3 + 20 + 20 + 20 + 1500);
    assert_true(s0.receive_batches >= 1);
    assert_string_equal(media_drop_reason_name(MEDIA_DROP_NO_LEG), "no_leg");

    /* Each worker answers a probe through its mailbox. */
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(media_engine_probe(e, i, owner, 100 + i), 0);
    unsigned answered = 0;
    for (int tries = 0; tries < 300 && answered < 2; tries++) {
        struct base_msg m;
        while (base_mailbox_pop(owner, &m)) {
            assert_int_equal(m.type, BASE_MSG_PROBE_REPLY);
            assert_int_equal(m.arg, 100 + (m.sender - BASE_THREAD_MEDIA_FIRST));
            answered++;
        }
        usleep(10000);
    }
    assert_int_equal(answered, 2);
    assert_int_equal(media_engine_probe(e, 2, owner, 1), -EINVAL);

    media_engine_stop(e);
    media_engine_stop(NULL);
    base_mailbox_free(owner);
    base_logger_free(log);
}

/* Sends `req` from `fd` to the worker and waits up to 1 s for an answer; returns its length or 0.
 */
static ssize_t exchange(int fd, uint16_t port, const uint8_t *req, size_t len, uint8_t *reply,
                        size_t cap)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(sendto(fd, req, len, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)len);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 1000) != 1)
        return 0;
    return recv(fd, reply, cap, 0);
}

/* Waits for a leg event of `type` from the owner mailbox (3 s at most). */
static bool wait_event(struct base_mailbox *owner, uint32_t type, uint64_t leg_id, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        struct base_msg m;
        while (base_mailbox_pop(owner, &m))
            if (m.type == type && m.arg == leg_id)
                return true;
        usleep(10000);
    }
    return false;
}

static void ice_lite_answers_checks_and_expires_silent_legs(void **state)
{
    (void)state;
    char err[256];
    struct base_logger *log = base_logger_new(NULL, BASE_LOG_TEXT, BASE_LOG_WARN, err, 256);
    struct base_mailbox *owner = base_mailbox_new(64, NULL, NULL);
    uint16_t port = free_udp_pair();
    struct media_engine_config cfg = {.base_port = port,
                                      .worker_count = 1,
                                      .log = log,
                                      .owner = owner,
                                      .consent_timeout_ms = 1500};
    struct media_engine *e = media_engine_start(&cfg, err, sizeof(err));
    assert_non_null(e);
    struct media_leg_params leg = {.leg_id = 7,
                                   .local_ufrag = "srvU",
                                   .local_pwd = "serverpasswordserverpass",
                                   .remote_ufrag = "brws"};
    assert_int_equal(media_engine_leg_add(e, 0, &leg), 0);
    struct media_leg_params bad = leg;
    strcpy(bad.local_pwd, "short");
    assert_int_equal(media_engine_leg_add(e, 0, &bad), -EINVAL);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &me.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    socklen_t melen = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &melen);

    uint8_t txid[MEDIA_STUN_TXID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct media_stun_request_params rp = {.txid = txid,
                                           .remote_ufrag = "srvU",
                                           .local_ufrag = "brws",
                                           .remote_pwd = "wrong password, attacker",
                                           .priority = 1845501695,
                                           .controlling = true,
                                           .tie_breaker = 42,
                                           .use_candidate = true};
    uint8_t req[256], reply[256];
    int n = media_stun_build_binding_request(NULL, &rp, req, sizeof(req));
    assert_true(n > 0);
    /* A bad MESSAGE-INTEGRITY is ignored: no answer, no nomination. */
    assert_int_equal(exchange(fd, port, req, (size_t)n, reply, sizeof(reply)), 0);

    rp.remote_pwd = leg.local_pwd;
    n = media_stun_build_binding_request(NULL, &rp, req, sizeof(req));
    ssize_t got = exchange(fd, port, req, (size_t)n, reply, sizeof(reply));
    assert_true(got > 0);
    struct media_stun_msg msg;
    assert_int_equal(media_stun_parse(reply, (size_t)got, &msg), 0);
    assert_int_equal(msg.type, MEDIA_STUN_BINDING_SUCCESS);
    assert_memory_equal(msg.txid, txid, sizeof(txid));
    assert_int_equal(media_stun_verify_integrity(NULL, &msg, leg.local_pwd), 0);
    assert_int_equal(media_stun_verify_fingerprint(&msg), 0);
    assert_true(msg.has_xor_mapped);
    const struct sockaddr_in *mapped = (const struct sockaddr_in *)&msg.xor_mapped;
    assert_int_equal(mapped->sin_port, me.sin_port); /* the browser learns its own address */
    assert_true(wait_event(owner, MEDIA_EVENT_LEG_NOMINATED, 7, 3000));

    struct media_worker_stats st;
    media_engine_worker_stats(e, 0, &st);
    assert_int_equal(st.stun_answered, 1);
    assert_int_equal(st.stun_refused, 1);
    assert_int_equal(st.legs_active, 1);
    assert_int_equal(st.legs_nominated, 1);

    /* Silent past the consent timeout: the leg ends and the owner hears of it. */
    assert_true(wait_event(owner, MEDIA_EVENT_LEG_EXPIRED, 7, 4000));
    media_engine_worker_stats(e, 0, &st);
    assert_int_equal(st.legs_active, 0);
    assert_int_equal(st.legs_expired, 1);
    assert_int_equal(exchange(fd, port, req, (size_t)n, reply, sizeof(reply)), 0);

    close(fd);
    media_engine_stop(e);
    base_mailbox_free(owner);
    base_logger_free(log);
}

static void busy_port_is_reported(void **state)
{
    (void)state;
    char err[256];
    struct base_logger *log = base_logger_new(NULL, BASE_LOG_TEXT, BASE_LOG_ERROR, err, 256);
    uint16_t port = free_udp_pair();
    int blocker = socket(AF_INET6, SOCK_DGRAM, 0);
    int zero = 0;
    setsockopt(blocker, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    struct sockaddr_in6 a = {
        .sin6_family = AF_INET6, .sin6_addr = in6addr_any, .sin6_port = htons(port + 1)};
    assert_int_equal(bind(blocker, (struct sockaddr *)&a, sizeof(a)), 0);
    struct media_engine_config cfg = {.base_port = port, .worker_count = 2, .log = log};
    assert_null(media_engine_start(&cfg, err, sizeof(err)));
    char expect[64];
    snprintf(expect, sizeof(expect), "cannot bind UDP port %u", port + 1);
    assert_non_null(strstr(err, expect));
    close(blocker);
    base_logger_free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classifies_by_first_byte),
        cmocka_unit_test(workers_count_and_drop_real_datagrams),
        cmocka_unit_test(ice_lite_answers_checks_and_expires_silent_legs),
        cmocka_unit_test(busy_port_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
