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
 * Queues an event of `type` (e.g. "server_started") with `detail_json`, a
 * JSON object as text (borrowed; copied). Stamped with the current UTC time.
 * Returns 0, or -EAGAIN when the queue is full, -ENOMEM, -EINVAL for a type
 * longer than 63 bytes.
 */
int audit_writer_record(struct audit_writer *writer, const char *type, const char *detail_json);

/*
 * Sends a health probe; the writer answers BASE_MSG_PROBE_REPLY with sender
 * BASE_THREAD_AUDIT and arg = `seq` into `reply_to`. Returns 0 or -EAGAIN.
 */
int audit_writer_probe(struct audit_writer *writer, struct base_mailbox *reply_to, uint64_t seq);

/* Events committed to disk since start (any thread). */
uint64_t audit_writer_committed(const struct audit_writer *writer);

/* The schema version this build writes (PRAGMA user_version). */
int audit_schema_version(void);

#endif
