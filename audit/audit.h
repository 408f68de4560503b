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

/*
 * The id of the newest event known committed (any thread): every event with
 * this id or a lower one is on disk. Ids count from 1 in write order.
 */
int64_t audit_writer_committed_id(const struct audit_writer *writer);

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
