/*
 * writer.c - the audit writer thread and the SQLite store it owns.
 *
 * Durability reasoning: the database runs in WAL mode with synchronous=FULL,
 * so a committed transaction survives a power cut. The writer drains its
 * mailbox, writes everything it took in one transaction and commits; only
 * then does it count the events as committed. An event still in the mailbox
 * when the process is killed is lost, and was never reported as stored.
 *
 * Schema changes are forward migrations numbered by PRAGMA user_version; each
 * runs in its own transaction, so a crash mid-upgrade leaves the previous
 * version intact.
 */
#include "audit.h"
#include "chain.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#define MAILBOX_CAPACITY 4096
#define TYPE_MAX         64
#define CHECKPOINT_EVERY 1000 /* events between two head hashes written to the log */

enum { AUDIT_MSG_EVENT = BASE_MSG_MODULE_FIRST };

/* The string fields of an event, in column order after ts_ms (chain.h's order). */
enum {
    FIELD_TYPE = AUDIT_FIELD_TYPE,
    FIELD_DETAIL = AUDIT_FIELD_DETAIL,
    FIELD_COUNT = AUDIT_FIELD_COUNT
};

/*
 * An event on its way to the writer, in one allocation: the strings follow
 * the struct. Owned by the message that carries it; NULL fields stay NULL.
 */
struct pending_event {
    int64_t ts_ms;
    const char *field[FIELD_COUNT];
    char text[];
};

struct audit_writer {
    sqlite3 *db;
    sqlite3_stmt *insert;
    /* The chain's head: the last stored event's id and hash (the writer thread's). */
    int64_t last_id;
    uint8_t head[AUDIT_HASH_BYTES];
    uint64_t since_checkpoint;
    struct base_mailbox *mailbox;
    struct base_logger *log;
    pthread_t thread;
    bool thread_started;
    _Atomic uint64_t committed;
    _Atomic int64_t committed_id; /* the newest event known committed */
    sqlite3_stmt *read_head;
};

/* Migration i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
    /* 0 -> 1: the append-only event log. */
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  ts_ms INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))"
    ");"
    "CREATE INDEX events_by_time ON events (ts_ms);",
    /* 1 -> 2: who, where and with what outcome, as columns the search will filter on. */
    "ALTER TABLE events ADD COLUMN actor_role TEXT;"
    "ALTER TABLE events ADD COLUMN actor_id TEXT;"
    "ALTER TABLE events ADD COLUMN clinic TEXT;"
    "ALTER TABLE events ADD COLUMN consultation TEXT;"
    "ALTER TABLE events ADD COLUMN outcome TEXT;"
    "ALTER TABLE events ADD COLUMN source TEXT;"
    "CREATE INDEX events_by_clinic ON events (clinic, ts_ms);"
    "CREATE INDEX events_by_consultation ON events (consultation);",
    /* 2 -> 3: the hash chain (chain.h); rows from before get theirs at start-up. */
    "ALTER TABLE events ADD COLUMN hash BLOB;",
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

int audit_schema_version(void)
{
    return MIGRATION_COUNT;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "audit: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(sqlite3 *db, struct base_logger *log, char *err, size_t errlen)
{
    int v = user_version(db);
    if (v < 0) {
        snprintf(err, errlen, "audit: cannot read the schema version: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (v > MIGRATION_COUNT) {
        snprintf(err, errlen,
                 "audit: the database has schema version %d, newer than this build's %d; use a "
                 "newer tabib",
                 v, MIGRATION_COUNT);
        return -1;
    }
    for (; v < MIGRATION_COUNT; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d;", v + 1);
        if (exec(db, "BEGIN IMMEDIATE;", err, errlen))
            return -1;
        if (exec(db, migrations[v], err, errlen) || exec(db, bump, err, errlen)) {
            exec(db, "ROLLBACK;", bump, sizeof(bump));
            return -1;
        }
        if (exec(db, "COMMIT;", err, errlen))
            return -1;
        log_info(log, "audit", "schema migrated", LOG_INT("version", v + 1));
    }
    return 0;
}

/* Writes a batch in one transaction; frees every event. Returns how many were committed. */
/*
 * Writes the chain's head to the log: kept outside the database, a checkpoint
 * lets an inspector tell that events after it were removed from the end,
 * which the chain alone cannot show.
 */
static void checkpoint(struct audit_writer *w)
{
    char hex[2 * AUDIT_HASH_BYTES + 1];
    audit_chain_hex(w->head, hex);
    log_info(w->log, "audit", "checkpoint", LOG_INT("events", w->last_id), LOG_STR("head", hex));
    w->since_checkpoint = 0;
}

/*
 * Finds the chain's head, hashing rows stored before the chain existed (a
 * database from schema 2) in id order first.
 */
static int load_head(struct audit_writer *w, char *err, size_t errlen)
{
    sqlite3_stmt *rows = NULL, *set = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(w->db,
                           "SELECT id, ts_ms, type, actor_role, actor_id, clinic, consultation, "
                           "outcome, source, detail, hash FROM events ORDER BY id",
                           -1, &rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->db, "UPDATE events SET hash = ? WHERE id = ?", -1, &set, NULL) !=
            SQLITE_OK ||
        exec(w->db, "BEGIN;", err, errlen) != 0) {
        snprintf(err, errlen, "audit: cannot read the chain: %s", sqlite3_errmsg(w->db));
        goto out;
    }
    memset(w->head, 0, sizeof(w->head));
    w->last_id = 0;
    int step;
    while ((step = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(rows, 0);
        if (sqlite3_column_type(rows, 10) == SQLITE_BLOB &&
            sqlite3_column_bytes(rows, 10) == AUDIT_HASH_BYTES) {
            memcpy(w->head, sqlite3_column_blob(rows, 10), AUDIT_HASH_BYTES);
        } else {
            const char *fields[AUDIT_FIELD_COUNT];
            for (int f = 0; f < AUDIT_FIELD_COUNT; f++)
                fields[f] = (const char *)sqlite3_column_text(rows, 2 + f);
            uint8_t hash[AUDIT_HASH_BYTES];
            if (audit_chain_hash(w->head, id, sqlite3_column_int64(rows, 1), fields, hash) != 0)
                break;
            sqlite3_reset(set);
            sqlite3_bind_blob(set, 1, hash, sizeof(hash), SQLITE_TRANSIENT);
            sqlite3_bind_int64(set, 2, id);
            if (sqlite3_step(set) != SQLITE_DONE)
                break;
            memcpy(w->head, hash, sizeof(hash));
        }
        w->last_id = id;
    }
    if (step != SQLITE_DONE) {
        snprintf(err, errlen, "audit: cannot hash the stored events: %s", sqlite3_errmsg(w->db));
        exec(w->db, "ROLLBACK;", NULL, 0);
        goto out;
    }
    rc = exec(w->db, "COMMIT;", err, errlen);
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(set);
    return rc;
}

/*
 * Reads the chain's head inside the write transaction: `tabib user` appends
 * account changes from its own process, so the head in memory may be behind.
 */
static int reread_head(struct audit_writer *w)
{
    sqlite3_reset(w->read_head);
    int step = sqlite3_step(w->read_head);
    if (step == SQLITE_ROW) {
        if (sqlite3_column_bytes(w->read_head, 1) != AUDIT_HASH_BYTES)
            return -1;
        w->last_id = sqlite3_column_int64(w->read_head, 0);
        memcpy(w->head, sqlite3_column_blob(w->read_head, 1), AUDIT_HASH_BYTES);
    } else if (step == SQLITE_DONE) {
        w->last_id = 0;
        memset(w->head, 0, sizeof(w->head));
    } else {
        return -1;
    }
    sqlite3_reset(w->read_head);
    return 0;
}

static unsigned write_batch(struct audit_writer *w, struct pending_event **batch, unsigned n)
{
    char err[256];
    unsigned written = 0;
    /* The head before the batch, to go back to if it does not commit. */
    int64_t last_id = w->last_id;
    uint8_t head[AUDIT_HASH_BYTES];
    memcpy(head, w->head, sizeof(head));
    bool begun = exec(w->db, "BEGIN IMMEDIATE;", err, sizeof(err)) == 0;
    if (begun && reread_head(w) != 0) {
        snprintf(err, sizeof(err), "cannot read the chain's head: %s", sqlite3_errmsg(w->db));
        exec(w->db, "ROLLBACK;", NULL, 0);
        begun = false;
    }
    if (begun) {
        for (unsigned i = 0; i < n; i++) {
            if (!batch[i]->field[FIELD_DETAIL])
                batch[i]->field[FIELD_DETAIL] = "{}";
            uint8_t hash[AUDIT_HASH_BYTES];
            int64_t id = w->last_id + 1;
            if (audit_chain_hash(w->head, id, batch[i]->ts_ms, batch[i]->field, hash) != 0) {
                log_error(w->log, "audit", "cannot hash an event",
                          LOG_STR("type", batch[i]->field[FIELD_TYPE]));
                continue;
            }
            sqlite3_reset(w->insert);
            sqlite3_bind_int64(w->insert, 1, id);
            sqlite3_bind_int64(w->insert, 2, batch[i]->ts_ms);
            for (int f = 0; f < FIELD_COUNT; f++) {
                const char *v = batch[i]->field[f];
                if (v)
                    sqlite3_bind_text(w->insert, 3 + f, v, -1, SQLITE_STATIC);
                else
                    sqlite3_bind_null(w->insert, 3 + f);
            }
            sqlite3_bind_blob(w->insert, 3 + FIELD_COUNT, hash, sizeof(hash), SQLITE_STATIC);
            if (sqlite3_step(w->insert) == SQLITE_DONE) {
                written++;
                w->last_id = id;
                memcpy(w->head, hash, sizeof(hash));
            } else
                log_error(w->log, "audit", "event refused",
                          LOG_STR("type", batch[i]->field[FIELD_TYPE]),
                          LOG_STR("error", sqlite3_errmsg(w->db)));
        }
        sqlite3_reset(w->insert);
        if (exec(w->db, "COMMIT;", err, sizeof(err)) != 0) {
            log_error(w->log, "audit", "commit failed", LOG_STR("error", err));
            exec(w->db, "ROLLBACK;", err, sizeof(err));
            written = 0;
            w->last_id = last_id;
            memcpy(w->head, head, sizeof(head));
        } else {
            atomic_store(&w->committed_id, w->last_id);
        }
    } else {
        log_error(w->log, "audit", "cannot begin a transaction", LOG_STR("error", err));
    }
    for (unsigned i = 0; i < n; i++)
        free(batch[i]);
    w->since_checkpoint += written;
    if (w->since_checkpoint >= CHECKPOINT_EVERY)
        checkpoint(w);
    return written;
}

#define BATCH_MAX 256

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
    sqlite3_finalize(w->insert);
    sqlite3_finalize(w->read_head);
    sqlite3_close(w->db);
    free(w);
}

/* An event as one allocation: the strings copied after the struct. NULL when out of memory. */
static struct pending_event *pending_new(int64_t ts_ms, const char *const in[FIELD_COUNT])
{
    size_t total = 0;
    for (int f = 0; f < FIELD_COUNT; f++)
        if (in[f])
            total += strlen(in[f]) + 1;
    struct pending_event *pe = malloc(sizeof(*pe) + total);
    if (!pe)
        return NULL;
    pe->ts_ms = ts_ms;
    char *p = pe->text;
    for (int f = 0; f < FIELD_COUNT; f++) {
        if (!in[f]) {
            pe->field[f] = NULL;
            continue;
        }
        size_t n = strlen(in[f]) + 1;
        memcpy(p, in[f], n);
        pe->field[f] = p;
        p += n;
    }
    return pe;
}

/*
 * Consultations a crash left open (joined, never ended; a consultation id
 * named only in a refused request is not one) are
 * closed with the reason "server_restart": an event added, nothing edited,
 * so the chain and the history stay as they were. Runs at start, before the
 * writer thread: the store is ours alone.
 */
static void recover_open_consultations(struct audit_writer *w)
{
    sqlite3_stmt *open = NULL;
    if (sqlite3_prepare_v2(w->db,
                           "SELECT consultation, max(clinic) FROM events "
                           "WHERE consultation IS NOT NULL GROUP BY consultation "
                           "HAVING sum(type = 'queue_joined') > 0 "
                           "AND sum(type = 'consultation_ended') = 0 ORDER BY min(id)",
                           -1, &open, NULL) != SQLITE_OK) {
        log_error(w->log, "audit", "cannot look for open consultations",
                  LOG_STR("error", sqlite3_errmsg(w->db)));
        return;
    }
    struct pending_event *batch[256];
    unsigned n = 0, total = 0;
    while (sqlite3_step(open) == SQLITE_ROW) {
        const char *in[FIELD_COUNT] = {"consultation_ended",
                                       "system",
                                       NULL,
                                       (const char *)sqlite3_column_text(open, 1),
                                       (const char *)sqlite3_column_text(open, 0),
                                       "ok",
                                       NULL,
                                       "{\"reason\":\"server_restart\",\"recovered\":true}"};
        struct pending_event *pe = pending_new(base_wall_ms(), in);
        if (pe)
            batch[n++] = pe;
        if (n == sizeof(batch) / sizeof(batch[0])) {
            total += write_batch(w, batch, n);
            n = 0;
        }
    }
    if (n)
        total += write_batch(w, batch, n);
    sqlite3_finalize(open);
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
    char path[4096];
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir: cannot create \"%s\": %s", data_dir, strerror(errno));
        goto fail;
    }
    if (snprintf(path, sizeof(path), "%s/audit.db", data_dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "data_dir: path is too long");
        goto fail;
    }
    if (sqlite3_open_v2(path, &w->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: cannot open \"%s\": %s", path,
                 w->db ? sqlite3_errmsg(w->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(w->db, 5000);
    if (exec(w->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err, errlen) ||
        migrate(w->db, log, err, errlen) || load_head(w, err, errlen))
        goto fail;
    if (sqlite3_prepare_v2(w->db,
                           "INSERT INTO events (id, ts_ms, type, actor_role, actor_id, clinic, "
                           "consultation, outcome, source, detail, hash) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &w->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->db, "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1", -1,
                           &w->read_head, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(w->db));
        goto fail;
    }
    atomic_store(&w->committed_id, w->last_id);
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
    log_info(log, "audit", "writer started", LOG_STR("db", path),
             LOG_INT("schema", MIGRATION_COUNT));
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
    const char *in[FIELD_COUNT] = {ev->type,         ev->actor_role, ev->actor_id, ev->clinic,
                                   ev->consultation, ev->outcome,    ev->source,   ev->detail_json};
    struct pending_event *pe = pending_new(base_wall_ms(), in);
    if (!pe)
        return -ENOMEM;
    struct base_msg msg = {.type = AUDIT_MSG_EVENT, .ptr = pe};
    int rc = base_mailbox_push(w->mailbox, &msg);
    if (rc)
        free(pe);
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

int64_t audit_writer_committed_id(const struct audit_writer *w)
{
    return atomic_load_explicit(&w->committed_id, memory_order_relaxed);
}
