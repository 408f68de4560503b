/*
 * store.h - the audit database as the files of audit/ share it (private to
 * audit/): opening with the schema brought up to date, appending events to
 * the hash chain in a transaction, and the sessions view kept in step.
 *
 * Two kinds of process append: the server's writer thread (many events per
 * transaction) and a command such as `tabib user` or `tabib audit export`
 * (one event). Each transaction starts with BEGIN IMMEDIATE and re-reads the
 * chain's head, so whichever commits first is simply the head the other
 * builds on.
 */
#ifndef TABIB_AUDIT_STORE_H
#define TABIB_AUDIT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "base.h"
#include "chain.h"

/* An event on its way into the store: strings in chain.h's field order, NULL absent. */
struct store_event {
    int64_t ts_ms;
    const char *field[AUDIT_FIELD_COUNT];
};

struct audit_store {
    sqlite3 *db;
    sqlite3_stmt *insert;
    sqlite3_stmt *read_head;
    sqlite3_stmt **session_rules; /* one per entry of store.c's rule table */
    sqlite3_stmt *session_touch;
    /* The chain's head inside the open transaction: the newest event's id and hash. */
    int64_t last_id;
    uint8_t head[AUDIT_HASH_BYTES];
    struct base_logger *log; /* borrowed; NULL logs nothing */
    bool broken_head_logged;
};

/*
 * Opens (creating the directory and the file if needed) `data_dir`/audit.db
 * in WAL mode with synchronous=FULL, applies the forward migrations and
 * hashes any event stored before the chain existed. Returns 0, or -1 with
 * `err`. Close with store_close() even after a failure.
 */
int store_open(struct audit_store *store, const char *data_dir, struct base_logger *log, char *err,
               size_t errlen);
void store_close(struct audit_store *store);

/* BEGIN IMMEDIATE and the head re-read. 0, or -1 with `err`. */
int store_begin(struct audit_store *store, char *err, size_t errlen);

#define STORE_ABORTED (-2) /* the transaction is gone (disk full, I/O error): start again */

/*
 * Appends one event in the open transaction (NULL detail is stored as {}),
 * hashed onto the head, and applies it to the sessions view. Returns 0, or
 * -1 with `err` (nothing of it stored; the transaction may go on), or
 * STORE_ABORTED when SQLite rolled the whole transaction back (nothing of it
 * is stored; the head in `store` is stale until the next store_begin()). A
 * sessions view that cannot follow is logged, and the event kept.
 */
int store_append(struct audit_store *store, const struct store_event *ev, char *err, size_t errlen);

/* COMMIT, or ROLLBACK when `commit` is false or COMMIT fails. 0 when committed. */
int store_end(struct audit_store *store, bool commit, char *err, size_t errlen);

/* Runs `sql` (no rows) with `err` naming what failed. 0 or -1. */
int store_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/* The path of data_dir/audit.db into `out`. 0, or -1 when too long. */
int store_path(const char *data_dir, char *out, size_t outlen);

#endif
