/*
 * test_mailbox.c - the inter-thread mailbox: order, capacity, wakeups, and
 * many producers racing one consumer without losing or duplicating a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base.h"

static void keeps_order_and_reports_full(void **state)
{
    (void)state;
    struct base_mailbox *mb = base_mailbox_new(5, NULL, NULL); /* rounded up to 8 */
    assert_non_null(mb);
    struct base_msg m = {.type = 100};
    for (uint64_t i = 0; i < 8; i++) {
        m.arg = i;
        assert_int_equal(base_mailbox_push(mb, &m), 0);
    }
    m.arg = 8;
    assert_int_equal(base_mailbox_push(mb, &m), -EAGAIN);
    struct base_msg out;
    for (uint64_t i = 0; i < 8; i++) {
        assert_true(base_mailbox_pop(mb, &out));
        assert_int_equal(out.arg, i);
        assert_int_equal(out.type, 100);
    }
    assert_false(base_mailbox_pop(mb, &out));
    /* After draining, the ring is reusable across many rounds. */
    for (uint64_t round = 0; round < 100; round++) {
        m.arg = round;
        assert_int_equal(base_mailbox_push(mb, &m), 0);
        assert_true(base_mailbox_pop(mb, &out));
        assert_int_equal(out.arg, round);
    }
    base_mailbox_free(mb);
    base_mailbox_free(NULL);
}

static void eventfd_wakes_the_consumer(void **state)
{
    (void)state;
    struct base_mailbox *mb = base_mailbox_new(4, NULL, NULL);
    assert_non_null(mb);
    int fd = base_mailbox_fd(mb);
    assert_true(fd >= 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    struct base_msg m = {.type = 1};
    assert_int_equal(base_mailbox_push(mb, &m), 0);
    assert_int_equal(poll(&pfd, 1, 0), 1);
    base_mailbox_clear_wakeup(mb);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    base_mailbox_free(mb);
}

static void count_wake(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void callback_wakes_the_consumer(void **state)
{
    (void)state;
    atomic_int wakes = 0;
    struct base_mailbox *mb = base_mailbox_new(4, count_wake, &wakes);
    assert_non_null(mb);
    assert_int_equal(base_mailbox_fd(mb), -1);
    struct base_msg m = {.type = 1};
    assert_int_equal(base_mailbox_push(mb, &m), 0);
    assert_int_equal(base_mailbox_push(mb, &m), 0);
    assert_int_equal(atomic_load(&wakes), 2);
    base_mailbox_free(mb);
}

static void probe_is_answered_to_the_sender(void **state)
{
    (void)state;
    struct base_mailbox *reply_to = base_mailbox_new(4, NULL, NULL);
    struct base_msg probe = {.type = BASE_MSG_PROBE, .arg = 42, .ptr = reply_to};
    assert_int_equal(base_mailbox_answer_probe(&probe, BASE_THREAD_MEDIA_FIRST + 3), 0);
    struct base_msg reply;
    assert_true(base_mailbox_pop(reply_to, &reply));
    assert_int_equal(reply.type, BASE_MSG_PROBE_REPLY);
    assert_int_equal(reply.sender, BASE_THREAD_MEDIA_FIRST + 3);
    assert_int_equal(reply.arg, 42);
    base_mailbox_free(reply_to);
}

#define PRODUCERS    4
#define PER_PRODUCER 200000

struct producer {
    struct base_mailbox *mb;
    uint32_t id;
    uint64_t full_retries;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (uint64_t i = 0; i < PER_PRODUCER; i++) {
        struct base_msg m = {.type = 7, .sender = p->id, .arg = i};
        while (base_mailbox_push(p->mb, &m) == -EAGAIN) {
            p->full_retries++;
            sched_yield();
        }
    }
    return NULL;
}

static void concurrent_producers_lose_nothing(void **state)
{
    (void)state;
    /* A small ring forces producers to meet a full queue and wrap around many times. */
    struct base_mailbox *mb = base_mailbox_new(64, NULL, NULL);
    assert_non_null(mb);
    pthread_t threads[PRODUCERS];
    struct producer producers[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        producers[i] = (struct producer){.mb = mb, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, produce, &producers[i]), 0);
    }
    uint64_t next[PRODUCERS] = {0};
    uint64_t received = 0;
    while (received < (uint64_t)PRODUCERS * PER_PRODUCER) {
        struct base_msg m;
        if (!base_mailbox_pop(mb, &m)) {
            struct pollfd pfd = {.fd = base_mailbox_fd(mb), .events = POLLIN};
            poll(&pfd, 1, 10);
            base_mailbox_clear_wakeup(mb);
            continue;
        }
        assert_int_equal(m.type, 7);
        assert_true(m.sender < PRODUCERS);
        /* Each producer's messages arrive once each, in the order it sent them. */
        assert_int_equal(m.arg, next[m.sender]);
        next[m.sender]++;
        received++;
    }
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(next[i], PER_PRODUCER);
    }
    struct base_msg extra;
    assert_false(base_mailbox_pop(mb, &extra));
    base_mailbox_free(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_order_and_reports_full),
        cmocka_unit_test(eventfd_wakes_the_consumer),
        cmocka_unit_test(callback_wakes_the_consumer),
        cmocka_unit_test(probe_is_answered_to_the_sender),
        cmocka_unit_test(concurrent_producers_lose_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
