/*
 * reader.c - the audit reader thread: admins' searches and exports run here,
 * on a read-only connection of their own, so a large export never holds up
 * the signalling thread or the writer. Each answer is recorded as an audit
 * event: reading the audit log is itself audited.
 */
#include "audit.h"
#include "query.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READER_QUEUE 64

enum { READER_MSG_REQUEST = BASE_MSG_MODULE_FIRST + 201 };

struct audit_reader {
    sqlite3 *db;
    struct audit_writer *writer;
    struct base_mailbox *inbox;
    struct base_mailbox *reply_to;
    struct base_logger *log;
    pthread_t thread;
    bool thread_started;
};

/*
 * Records the answered search. Reading the log is itself audited: if the
 * writer's queue stays full, the answer becomes a 503 rather than go out
 * unrecorded.
 */
static void record_answer(struct audit_reader *r, struct audit_request *rq)
{
    char *detail = audit_query_describe(rq);
    struct audit_event ev = {
        .type = rq->export_all ? "audit_export" : "audit_search",
        .actor_role = rq->actor_role[0] ? rq->actor_role : NULL,
        .actor_id = rq->actor_id[0] ? rq->actor_id : NULL,
        .clinic = rq->query.clinic[0] ? rq->query.clinic : NULL,
        .outcome = rq->status == 200 ? "ok" : "failed",
        .source = rq->source[0] ? rq->source : NULL,
        .detail_json = detail,
    };
    int rc = detail ? -EAGAIN : -ENOMEM;
    for (int tries = 0; detail && tries < 200 && (rc = audit_writer_append(r->writer, &ev)) != 0;
         tries++)
        usleep(5000);
    free(detail);
    if (rc != 0) {
        log_warn(r->log, "audit", "a search was refused: it could not be recorded",
                 LOG_STR("actor", rq->actor_id));
        audit_query_refuse(rq, 503, "busy",
                           "the audit log is too busy to record this search; try again shortly");
    }
}

static void *reader_main(void *arg)
{
    struct audit_reader *r = arg;
    pthread_setname_np(pthread_self(), "audit-read");
    bool running = true;
    while (running) {
        struct pollfd pfd = {.fd = base_mailbox_fd(r->inbox), .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        base_mailbox_clear_wakeup(r->inbox);
        struct base_msg msg;
        while (running && base_mailbox_pop(r->inbox, &msg)) {
            if (msg.type == BASE_MSG_STOP) {
                running = false;
                continue;
            }
            if (msg.type != READER_MSG_REQUEST)
                continue;
            struct audit_request *rq = msg.ptr;
            audit_query_answer(r->db, rq);
            record_answer(r, rq);
            struct base_msg answer = {
                .type = AUDIT_MSG_ANSWER, .sender = BASE_THREAD_AUDIT, .arg = rq->id, .ptr = rq};
            /* The signalling thread drains its inbox on every wakeup; a full one is brief. */
            int tries = 0;
            while (base_mailbox_push(r->reply_to, &answer) == -EAGAIN && tries++ < 1000)
                usleep(1000);
            if (tries > 1000) {
                log_warn(r->log, "audit", "an answer was dropped: the server's inbox stayed full");
                audit_request_free(rq);
            }
        }
    }
    return NULL;
}

static void free_queued(struct audit_reader *r)
{
    struct base_msg msg;
    while (base_mailbox_pop(r->inbox, &msg))
        if (msg.type == READER_MSG_REQUEST)
            audit_request_free(msg.ptr);
}

void audit_reader_stop(struct audit_reader *r)
{
    if (!r)
        return;
    if (r->thread_started) {
        struct base_msg stop = {.type = BASE_MSG_STOP};
        while (base_mailbox_push(r->inbox, &stop) == -EAGAIN)
            usleep(1000);
        pthread_join(r->thread, NULL);
    }
    if (r->inbox)
        free_queued(r);
    base_mailbox_free(r->inbox);
    sqlite3_close(r->db);
    free(r);
}

struct audit_reader *audit_reader_start(const char *data_dir, struct audit_writer *writer,
                                        struct base_mailbox *reply_to, struct base_logger *log,
                                        char *err, size_t errlen)
{
    struct audit_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "audit: out of memory");
        return NULL;
    }
    r->writer = writer;
    r->reply_to = reply_to;
    r->log = log;
    if (audit_query_open(data_dir, &r->db, err, errlen) != 0)
        goto fail;
    r->inbox = base_mailbox_new(READER_QUEUE, NULL, NULL);
    if (!r->inbox) {
        snprintf(err, errlen, "audit: cannot create the reader's mailbox");
        goto fail;
    }
    int rc = pthread_create(&r->thread, NULL, reader_main, r);
    if (rc != 0) {
        snprintf(err, errlen, "audit: cannot start the reader: %s", strerror(rc));
        goto fail;
    }
    r->thread_started = true;
    return r;
fail:
    audit_reader_stop(r);
    return NULL;
}

int audit_reader_submit(struct audit_reader *r, struct audit_request *rq)
{
    struct base_msg msg = {.type = READER_MSG_REQUEST, .arg = rq->id, .ptr = rq};
    return base_mailbox_push(r->inbox, &msg);
}
