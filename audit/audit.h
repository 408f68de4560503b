/*
 * audit.h - the audit log: one writer thread that owns the SQLite database
 * and appends events in short transactions.
 *
 * Callers on any thread enqueue an event and return at once; they never wait
 * on disk. The writer takes everything queued, writes it in one transaction
 * (group commit) and only then is an event durable. Audit depends on nothing
 * of signalling, media or server.
 */
#ifndef TABIB_AUDIT_H
#define TABIB_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "base.h"

struct audit_writer;

/*
 * Opens (creating if needed) `data_dir`/audit.db in WAL mode, brings its schema
 * up to date and starts the writer thread. Returns the writer, or NULL with
 * `err`. `log` is borrowed and must outlive the writer. Stop and free with
 * audit_writer_stop().
 */
struct audit_writer *audit_writer_start(const char *data_dir, struct base_logger *log, char *err,
                                        size_t errlen);

/*
 * Writes what is still queued, stops the thread, closes the database and
 * frees the writer. NULL does nothing.
 */
void audit_writer_stop(struct audit_writer *writer);

/*
 * One audit event as callers describe it; every string is borrowed and may be
 * NULL except `type`. docs/audit.md lists the types.
 */
struct audit_event {
    const char *type;         /* "queue_joined", "sign_in_failed", ... (<= 63 bytes) */
    const char *actor_role;   /* "patient", "doctor", "admin", "system" */
    const char *actor_id;     /* username, or the patient's consultation id */
    const char *clinic;       /* clinic id */
    const char *consultation; /* consultation id */
    const char *outcome;      /* "ok", "denied", "failed" */
    const char *source;       /* the peer's address */
    const char *detail_json;  /* a JSON object as text, e.g. {"reason":"completed"} */
};

/*
 * Queues `ev` (copied) for the writer, stamped with the current UTC time.
 * Returns 0, or -EAGAIN when the queue is full, -ENOMEM, -EINVAL for a missing
 * or over-long type. Never waits on disk.
 */
int audit_writer_append(struct audit_writer *writer, const struct audit_event *ev);

/*
 * Appends `ev` straight to `data_dir`/audit.db and waits for the commit: for
 * a command run beside the server (`tabib user`, `tabib audit export`),
 * which has no writer thread. Safe while the server's writer runs (each
 * transaction re-reads the chain's head). Returns 0, or -1 with `err`.
 */
int audit_append_once(const char *data_dir, const struct audit_event *ev, char *err, size_t errlen);

/* Shorthand for a system event with only a type and a detail object. */
int audit_writer_record(struct audit_writer *writer, const char *type, const char *detail_json);

/*
 * Sends a health probe; the writer answers BASE_MSG_PROBE_REPLY with sender
 * BASE_THREAD_AUDIT and arg = `seq` into `reply_to`. Returns 0 or -EAGAIN.
 */
int audit_writer_probe(struct audit_writer *writer, struct base_mailbox *reply_to, uint64_t seq);

/* Events committed to disk since start (any thread). */
uint64_t audit_writer_committed(const struct audit_writer *writer);

/* Events given up because the database refused them, after retries (any thread). */
uint64_t audit_writer_lost(const struct audit_writer *writer);

/*
 * The id of the newest event known committed (any thread): every event with
 * this id or a lower one is on disk. Ids count from 1 in write order.
 */
int64_t audit_writer_committed_id(const struct audit_writer *writer);

/* ------------------------------------------------------------------------- */
/* Search and export                                                          */
/* ------------------------------------------------------------------------- */

#define AUDIT_ID_MAX       64 /* clinic ids, usernames, consultation ids, event types */
#define AUDIT_TEXT_MAX     128
#define AUDIT_SCOPE_MAX    32 /* clinics a clinic-scoped admin may be given */
#define AUDIT_PAGE_DEFAULT 50
#define AUDIT_PAGE_MAX     500
#define AUDIT_EXPORT_MAX   100000 /* rows in one export: more asks for narrower filters */

enum audit_query_kind {
    AUDIT_QUERY_SESSIONS = 0, /* rows of the sessions view */
    AUDIT_QUERY_EVENTS = 1,   /* rows of the event log */
    AUDIT_QUERY_STATS = 2,    /* wait and duration figures per clinic (from, to, clinic) */
    AUDIT_QUERY_VERIFY = 3,   /* the hash chain walked: intact, or where it breaks */
};
enum audit_format { AUDIT_FORMAT_JSON = 0, AUDIT_FORMAT_CSV = 1, AUDIT_FORMAT_FHIR = 2 };

/*
 * A search of the sessions view or of the events, newest first. Empty
 * strings and zero times filter nothing. docs/audit.md describes each filter.
 */
struct audit_query {
    enum audit_query_kind kind;
    char clinic[AUDIT_ID_MAX];
    char doctor[AUDIT_ID_MAX];
    char patient[AUDIT_TEXT_MAX]; /* appointment reference, consultation id or display name */
    char consultation[AUDIT_ID_MAX];
    char type[AUDIT_ID_MAX]; /* an event type */
    char outcome[16];
    char end_reason[AUDIT_ID_MAX];
    int64_t from_ms, to_ms; /* [from, to) in UTC ms; 0 = open */
    int64_t cursor;         /* from a previous page's next_cursor; 0 = the newest */
    unsigned limit;         /* page size, 1..AUDIT_PAGE_MAX */
    /* Who may see what: every clinic, or only these (events with no clinic are not theirs). */
    bool all_clinics;
    unsigned scope_count;
    char scope[AUDIT_SCOPE_MAX][AUDIT_ID_MAX];
};

/* An empty query of `kind`: no filter, the default page, no clinic in scope. */
void audit_query_init(struct audit_query *q, enum audit_query_kind kind);

/*
 * Sets filter `key` (clinic, doctor, patient, consultation, type, outcome,
 * end_reason, from, to, cursor, limit) from text, as it comes in a URL or on
 * the command line. Times are UTC, ISO 8601 ("2026-11-27T10:00:00Z",
 * "2026-11-27") or milliseconds since 1970. Returns 0; 1 when `key` is not a
 * filter; -1 with `err` (a sentence for the caller) for a bad value.
 */
int audit_query_set(struct audit_query *q, const char *key, const char *value, char *err,
                    size_t errlen);

/* What a format is called in URLs and on the command line ("json", "csv", "fhir"); -1 unknown. */
int audit_format_parse(const char *name);

/*
 * A search or an export handed to the reader thread. The caller fills the
 * first block, the reader the second; whoever holds it frees it with
 * audit_request_free().
 */
struct audit_request {
    uint64_t id; /* the caller's, to find the asker again */
    struct audit_query query;
    enum audit_format format;
    bool export_all; /* every matching row as a file; false: one page of JSON */
    char actor_role[16];
    char actor_id[AUDIT_ID_MAX];
    char source[64]; /* the asker's address */
    /* The answer. */
    unsigned status;          /* 200, 400, 413, 500 */
    const char *content_type; /* static */
    const char *filename;     /* static; for Content-Disposition, NULL for a page */
    char *body;               /* malloc'd */
    size_t len;
    unsigned rows;
};

void audit_request_free(struct audit_request *rq); /* NULL does nothing */

/* The message the reader pushes to `reply_to` with `ptr` = the answered struct audit_request. */
enum { AUDIT_MSG_ANSWER = BASE_MSG_MODULE_FIRST + 200 };

struct audit_reader;

/*
 * Starts the reader thread on its own read-only connection to
 * `data_dir`/audit.db (WAL lets it read while the writer writes): searches
 * and exports never hold up the signalling thread or the writer. Each
 * answered request is itself recorded through `writer` (type audit_search or
 * audit_export, with the asker and the filters). Answers go to `reply_to`
 * (whose wake function tells its thread). Returns NULL with `err`.
 */
struct audit_reader *audit_reader_start(const char *data_dir, struct audit_writer *writer,
                                        struct base_mailbox *reply_to, struct base_logger *log,
                                        char *err, size_t errlen);

/* Stops the thread; requests not yet answered are freed. NULL does nothing. */
void audit_reader_stop(struct audit_reader *reader);

/* Queues `rq` (the reader owns it from now on). 0, or -EAGAIN when the queue is full. */
int audit_reader_submit(struct audit_reader *reader, struct audit_request *rq);

/*
 * `tabib audit verify|export ...`: the command line of the audit log.
 * Returns the process's exit status.
 */
int audit_main(int argc, char **argv, FILE *out, FILE *errout);

/*
 * `tabib audit verify [--data-dir D]`: walks the hash chain of D/audit.db
 * (read-only) and prints the event count and the head hash to `out`.
 * Returns 0 when every event's hash is right, 1 when one is not (printing
 * the first bad event to `errout`: changed, or something before it removed
 * or slipped in), 2 for bad usage or a database it cannot read.
 */
int audit_verify_main(int argc, char **argv, FILE *out, FILE *errout);

/* The schema version this build writes (PRAGMA user_version). */
int audit_schema_version(void);

#endif
