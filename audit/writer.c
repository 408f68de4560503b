/*
 * writer.c - the audit writer thread: it owns the server's connection to the
 * audit store (store.c) and appends events in short transactions.
 *
 * Durability reasoning: the writer drains its mailbox, writes everything it
 * took in one transaction and commits; only then does it count the events
 * as committed. An event still in the mailbox when the process is killed is
 * lost, and was never reported as stored.
 */
#include "audit.h"
#include "store.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAILBOX_CAPACITY 4096
#define TYPE_MAX         64
#define CHECKPOINT_EVERY 1000 /* events between two head hashes written to the log */
#define BATCH_MAX        256

enum { AUDIT_MSG_EVENT = BASE_MSG_MODULE_FIRST };

/*
 * An event on its way to the writer, in one allocation: the strings follow
 * the struct. Owned by the message that carries it; NULL fields stay NULL.
 */
struct pending_event {
    struct store_event ev;
    char text[];
};

struct audit_writer {
    struct audit_store store; /* the writer thread's once started */
    uint64_t since_checkpoint;
    struct base_mailbox *mailbox;
    struct base_logger *log;
    pthread_t thread;
    bool thread_started;
    _Atomic uint64_t committed;
    _Atomic int64_t committed_id; /* the newest event known committed */
    _Atomic uint64_t lost;        /* given up after the database refused them */
};

/*
 * Writes the chain's head to the log: kept outside the database, a checkpoint
 * lets an inspector tell that events after it were removed from the end,
 * which the chain alone cannot show.
 */
static void checkpoint(struct audit_writer *w)
{
    char hex[2 * AUDIT_HASH_BYTES + 1];
    audit_chain_hex(w->store.head, hex);
    log_info(w->log, "audit", "checkpoint", LOG_INT("events", w->store.last_id),
             LOG_STR("head", hex));
    w->since_checkpoint = 0;
}

#define BATCH_ATTEMPTS 5

/*
 * Writes a batch in one transaction and frees every event. Returns how many
 * were committed. A transaction that cannot start (the database busy beyond
 * the busy timeout) or that SQLite rolls back (disk full, I/O error) is tried
 * again from the start, a few times with a growing pause; only then are the
 * events given up, counted and logged.
 */
static unsigned write_batch(struct audit_writer *w, struct pending_event **batch, unsigned n)
{
    char err[256] = "";
    unsigned written = 0;
    bool committed = false;
    for (int attempt = 0; attempt < BATCH_ATTEMPTS && !committed; attempt++) {
        if (attempt)
            usleep(100000u << attempt); /* 0.2, 0.4, 0.8, 1.6 s */
        /* The head before the batch, to go back to if it does not commit. */
        int64_t last_id = w->store.last_id;
        uint8_t head[AUDIT_HASH_BYTES];
        memcpy(head, w->store.head, sizeof(head));
        if (store_begin(&w->store, err, sizeof(err)) != 0) {
            log_error(w->log, "audit", "cannot begin a transaction", LOG_STR("error", err),
                      LOG_INT("attempt", attempt + 1));
            continue;
        }
        written = 0;
        bool aborted = false;
        for (unsigned i = 0; i < n && !aborted; i++) {
            int rc = store_append(&w->store, &batch[i]->ev, err, sizeof(err));
            if (rc == 0)
                written++;
            else if (rc == STORE_ABORTED)
                aborted = true;
            else
                log_error(w->log, "audit", "event refused",
                          LOG_STR("type", batch[i]->ev.field[AUDIT_FIELD_TYPE]),
                          LOG_STR("error", err));
        }
        if (aborted || store_end(&w->store, true, err, sizeof(err)) != 0) {
            if (aborted)
                store_end(&w->store, false, NULL, 0);
            log_error(w->log, "audit", aborted ? "transaction rolled back" : "commit failed",
                      LOG_STR("error", err), LOG_INT("attempt", attempt + 1));
            w->store.last_id = last_id;
            memcpy(w->store.head, head, sizeof(head));
            written = 0;
            continue;
        }
        committed = true;
        atomic_store(&w->committed_id, w->store.last_id);
    }
    if (!committed) {
        atomic_fetch_add(&w->lost, n);
        log_error(w->log, "audit", "events lost: the database refused them", LOG_INT("events", n),
                  LOG_STR("error", err));
    }
    for (unsigned i = 0; i < n; i++)
        free(batch[i]);
    w->since_checkpoint += written;
    if (w->since_checkpoint >= CHECKPOINT_EVERY)
        checkpoint(w);
    return written;
}

static void *writer_main(void *arg)
{
    struct audit_writer *w = arg;
    pthread_setname_np(pthread_self(), "audit");
    struct pending_event *batch[BATCH_MAX];
    bool running = true;
    while (running) {
        struct pollfd pfd = {.fd = base_mailbox_fd(w->mailbox), .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        base_mailbox_clear_wakeup(w->mailbox);
        unsigned n = 0;
        struct base_msg msg;
        while (base_mailbox_pop(w->mailbox, &msg)) {
            if (msg.type == AUDIT_MSG_EVENT) {
                batch[n++] = msg.ptr;
                if (n == BATCH_MAX) {
                    atomic_fetch_add(&w->committed, write_batch(w, batch, n));
                    n = 0;
                }
            } else if (msg.type == BASE_MSG_PROBE) {
                base_mailbox_answer_probe(&msg, BASE_THREAD_AUDIT);
            } else if (msg.type == BASE_MSG_STOP) {
                running = false; /* keep draining: what was queued before STOP is written */
            }
        }
        if (n)
            atomic_fetch_add(&w->committed, write_batch(w, batch, n));
    }
    return NULL;
}

static void free_queued(struct audit_writer *w)
{
    struct base_msg msg;
    while (base_mailbox_pop(w->mailbox, &msg))
        if (msg.type == AUDIT_MSG_EVENT)
            free(msg.ptr);
}

static void writer_free(struct audit_writer *w)
{
    if (!w)
        return;
    if (w->mailbox)
        free_queued(w);
    base_mailbox_free(w->mailbox);
    store_close(&w->store);
    free(w);
}

/* An event as one allocation: the strings copied after the struct. NULL when out of memory. */
static struct pending_event *pending_new(int64_t ts_ms, const char *const in[AUDIT_FIELD_COUNT])
{
    size_t total = 0;
    for (int f = 0; f < AUDIT_FIELD_COUNT; f++)
        if (in[f])
            total += strlen(in[f]) + 1;
    struct pending_event *pe = malloc(sizeof(*pe) + total);
    if (!pe)
        return NULL;
    pe->ev.ts_ms = ts_ms;
    char *p = pe->text;
    for (int f = 0; f < AUDIT_FIELD_COUNT; f++) {
        if (!in[f]) {
            pe->ev.field[f] = NULL;
            continue;
        }
        size_t n = strlen(in[f]) + 1;
        memcpy(p, in[f], n);
        pe->ev.field[f] = p;
        p += n;
    }
    return pe;
}

/* The fields of `ev` in the store's order. */
static void event_fields(const struct audit_event *ev, const char *out[AUDIT_FIELD_COUNT])
{
    out[AUDIT_FIELD_TYPE] = ev->type;
    out[AUDIT_FIELD_ACTOR_ROLE] = ev->actor_role;
    out[AUDIT_FIELD_ACTOR_ID] = ev->actor_id;
    out[AUDIT_FIELD_CLINIC] = ev->clinic;
    out[AUDIT_FIELD_CONSULTATION] = ev->consultation;
    out[AUDIT_FIELD_OUTCOME] = ev->outcome;
    out[AUDIT_FIELD_SOURCE] = ev->source;
    out[AUDIT_FIELD_DETAIL] = ev->detail_json;
}

/*
 * Consultations a crash left open (in the sessions view: joined a queue,
 * never ended) are closed with the reason "server_restart": an event added, nothing edited,
 * so the chain and the history stay as they were. Runs at start, before the
 * writer thread: the store is ours alone.
 */
static void recover_open_consultations(struct audit_writer *w)
{
    /* Read them all first, then write: a read never runs across our own writes. */
    sqlite3_stmt *open = NULL;
    if (sqlite3_prepare_v2(w->store.db,
                           "SELECT consultation, clinic FROM sessions WHERE ended_ms IS NULL "
                           "ORDER BY seq",
                           -1, &open, NULL) != SQLITE_OK) {
        log_error(w->log, "audit", "cannot look for open consultations",
                  LOG_STR("error", sqlite3_errmsg(w->store.db)));
        return;
    }
    struct pending_event **closes = NULL;
    size_t count = 0, cap = 0;
    while (sqlite3_step(open) == SQLITE_ROW) {
        if (count == cap) {
            size_t more = cap ? 2 * cap : 256;
            struct pending_event **grown = realloc(closes, more * sizeof(*grown));
            if (!grown)
                break;
            closes = grown;
            cap = more;
        }
        const char *in[AUDIT_FIELD_COUNT] = {"consultation_ended",
                                             "system",
                                             NULL,
                                             (const char *)sqlite3_column_text(open, 1),
                                             (const char *)sqlite3_column_text(open, 0),
                                             "ok",
                                             NULL,
                                             "{\"reason\":\"server_restart\",\"recovered\":true}"};
        struct pending_event *pe = pending_new(base_wall_ms(), in);
        if (!pe)
            break;
        closes[count++] = pe;
    }
    sqlite3_finalize(open);
    unsigned total = 0;
    for (size_t i = 0; i < count; i += BATCH_MAX) {
        unsigned n = count - i < BATCH_MAX ? (unsigned)(count - i) : BATCH_MAX;
        unsigned written = write_batch(w, closes + i, n); /* frees them */
        atomic_fetch_add(&w->committed, written);
        total += written;
    }
    free(closes);
    if (total)
        log_info(w->log, "audit", "closed consultations a crash left open",
                 LOG_INT("consultations", total), LOG_STR("reason", "server_restart"));
}

struct audit_writer *audit_writer_start(const char *data_dir, struct base_logger *log, char *err,
                                        size_t errlen)
{
    struct audit_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "audit: out of memory");
        return NULL;
    }
    w->log = log;
    if (store_open(&w->store, data_dir, log, err, errlen) != 0)
        goto fail;
    atomic_store(&w->committed_id, w->store.last_id);
    recover_open_consultations(w);
    w->mailbox = base_mailbox_new(MAILBOX_CAPACITY, NULL, NULL);
    if (!w->mailbox) {
        snprintf(err, errlen, "audit: cannot create the writer's mailbox");
        goto fail;
    }
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc != 0) {
        snprintf(err, errlen, "audit: cannot start the writer: %s", strerror(rc));
        goto fail;
    }
    w->thread_started = true;
    log_info(log, "audit", "writer started", LOG_STR("data_dir", data_dir),
             LOG_INT("schema", audit_schema_version()));
    return w;
fail:
    writer_free(w);
    return NULL;
}

void audit_writer_stop(struct audit_writer *w)
{
    if (!w)
        return;
    if (w->thread_started) {
        struct base_msg stop = {.type = BASE_MSG_STOP};
        while (base_mailbox_push(w->mailbox, &stop) == -EAGAIN)
            usleep(1000);
        pthread_join(w->thread, NULL);
        checkpoint(w); /* the writer has ended: its head is ours to read */
    }
    writer_free(w);
}

int audit_writer_append(struct audit_writer *w, const struct audit_event *ev)
{
    if (!ev->type || !ev->type[0] || strlen(ev->type) >= TYPE_MAX)
        return -EINVAL;
    const char *in[AUDIT_FIELD_COUNT];
    event_fields(ev, in);
    struct pending_event *pe = pending_new(base_wall_ms(), in);
    if (!pe)
        return -ENOMEM;
    struct base_msg msg = {.type = AUDIT_MSG_EVENT, .ptr = pe};
    int rc = base_mailbox_push(w->mailbox, &msg);
    if (rc)
        free(pe);
    return rc;
}

int audit_append_once(const char *data_dir, const struct audit_event *ev, char *err, size_t errlen)
{
    if (!ev->type || !ev->type[0] || strlen(ev->type) >= TYPE_MAX) {
        snprintf(err, errlen, "audit: an event needs a type of 1-63 bytes");
        return -1;
    }
    struct store_event in = {.ts_ms = base_wall_ms()};
    event_fields(ev, in.field);
    struct audit_store store;
    int rc = -1;
    if (store_open(&store, data_dir, NULL, err, errlen) == 0 &&
        store_begin(&store, err, errlen) == 0) {
        rc = store_append(&store, &in, err, errlen);
        if (store_end(&store, rc == 0, err, errlen) != 0)
            rc = -1;
    }
    store_close(&store);
    return rc;
}

int audit_writer_record(struct audit_writer *w, const char *type, const char *detail_json)
{
    struct audit_event ev = {
        .type = type, .actor_role = "system", .outcome = "ok", .detail_json = detail_json};
    return audit_writer_append(w, &ev);
}

int audit_writer_probe(struct audit_writer *w, struct base_mailbox *reply_to, uint64_t seq)
{
    struct base_msg probe = {
        .type = BASE_MSG_PROBE, .sender = BASE_THREAD_SIGNALING, .arg = seq, .ptr = reply_to};
    return base_mailbox_push(w->mailbox, &probe);
}

uint64_t audit_writer_committed(const struct audit_writer *w)
{
    return atomic_load_explicit(&w->committed, memory_order_relaxed);
}

uint64_t audit_writer_lost(const struct audit_writer *w)
{
    return atomic_load_explicit(&w->lost, memory_order_relaxed);
}

int64_t audit_writer_committed_id(const struct audit_writer *w)
{
    return atomic_load_explicit(&w->committed_id, memory_order_relaxed);
}
