/*
 * mailbox.c - the bounded multi-producer, single-consumer queue that carries
 * every message between Tabib's threads, with an eventfd or callback wakeup.
 *
 * The ring is Dmitry Vyukov's bounded queue: each cell holds a sequence
 * number that tells producers and the consumer whose turn the cell is, so a
 * push is one compare-and-swap on the tail plus two stores, and no thread ever
 * waits for another. Producers may be any thread; exactly one thread (the
 * mailbox's owner) pops.
 */
#include "base.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct cell {
    _Atomic size_t seq;
    struct base_msg msg;
};

struct base_mailbox {
    struct cell *cells;
    size_t mask;
    /* Producers and the consumer write different counters: keep them on
     * different cache lines so they do not bounce between cores. */
    _Alignas(64) _Atomic size_t tail; /* next cell to fill */
    _Alignas(64) _Atomic size_t head; /* next cell to read (consumer only) */
    int event_fd;
    base_mailbox_wake_fn wake;
    void *wake_arg;
};

struct base_mailbox *base_mailbox_new(size_t capacity, base_mailbox_wake_fn wake, void *wake_arg)
{
    size_t cap = 2;
    while (cap < capacity)
        cap <<= 1;
    struct base_mailbox *mb = aligned_alloc(64, (sizeof(*mb) + 63) / 64 * 64);
    if (!mb)
        return NULL;
    mb->cells = calloc(cap, sizeof(*mb->cells));
    if (!mb->cells)
        goto fail;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&mb->cells[i].seq, i);
    mb->mask = cap - 1;
    atomic_init(&mb->tail, 0);
    atomic_init(&mb->head, 0);
    mb->wake = wake;
    mb->wake_arg = wake_arg;
    mb->event_fd = -1;
    if (!wake) {
        mb->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (mb->event_fd < 0)
            goto fail;
    }
    return mb;
fail:
    free(mb->cells);
    free(mb);
    return NULL;
}

void base_mailbox_free(struct base_mailbox *mb)
{
    if (!mb)
        return;
    if (mb->event_fd >= 0)
        close(mb->event_fd);
    free(mb->cells);
    free(mb);
}

int base_mailbox_fd(const struct base_mailbox *mb)
{
    return mb->event_fd;
}

int base_mailbox_push(struct base_mailbox *mb, const struct base_msg *msg)
{
    size_t pos = atomic_load_explicit(&mb->tail, memory_order_relaxed);
    struct cell *c;
    for (;;) {
        c = &mb->cells[pos & mb->mask];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t diff = (intptr_t)seq - (intptr_t)pos;
        if (diff == 0) {
            /* The cell is free for round `pos`: claim it. */
            if (atomic_compare_exchange_weak_explicit(&mb->tail, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (diff < 0) {
            return -EAGAIN; /* the consumer has not freed this cell yet: full */
        } else {
            pos = atomic_load_explicit(&mb->tail, memory_order_relaxed);
        }
    }
    c->msg = *msg;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);

    if (mb->wake) {
        mb->wake(mb->wake_arg);
    } else {
        uint64_t one = 1;
        /* EAGAIN means the counter is already huge: the consumer is awake anyway. */
        ssize_t w = write(mb->event_fd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

bool base_mailbox_pop(struct base_mailbox *mb, struct base_msg *out)
{
    size_t pos = atomic_load_explicit(&mb->head, memory_order_relaxed);
    struct cell *c = &mb->cells[pos & mb->mask];
    size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    if ((intptr_t)seq - (intptr_t)(pos + 1) < 0)
        return false; /* not yet published */
    *out = c->msg;
    atomic_store_explicit(&mb->head, pos + 1, memory_order_relaxed);
    /* Hand the cell to the producers of the next round. */
    atomic_store_explicit(&c->seq, pos + mb->mask + 1, memory_order_release);
    return true;
}

void base_mailbox_clear_wakeup(struct base_mailbox *mb)
{
    if (mb->event_fd < 0)
        return;
    uint64_t count;
    ssize_t r = read(mb->event_fd, &count, sizeof(count));
    (void)r;
}

int base_mailbox_answer_probe(const struct base_msg *probe, uint32_t self)
{
    struct base_mailbox *reply_to = probe->ptr;
    if (!reply_to)
        return 0;
    struct base_msg reply = {.type = BASE_MSG_PROBE_REPLY, .sender = self, .arg = probe->arg};
    return base_mailbox_push(reply_to, &reply);
}
