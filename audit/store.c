/*
 * store.c - the audit database: schema, migrations, the hash chain's head,
 * appends, and the sessions view.
 *
 * Durability reasoning: WAL mode with synchronous=FULL, so a committed
 * transaction survives a power cut. Schema changes are forward migrations
 * numbered by PRAGMA user_version; each runs in its own transaction, so a
 * crash mid-upgrade leaves the previous version intact.
 *
 * The sessions view (one row per consultation) is derived from the events
 * by the rules below, applied in the same transaction as the event, so the
 * two never disagree; a database that had events before the view existed
 * gets it by replaying them through the same rules.
 */
#include "store.h"
#include "audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A consultation a crash left open (its end is added at the next start). */
#define RECOVERED "coalesce(json_extract(:detail, '$.recovered'), 0)"

/*
 * How each event type moves its consultation's row. Parameters: :id, :ts,
 * :type, :role, :actor, :clinic, :consultation, :outcome, :source, :detail.
 */
static const struct {
    const char *type;
    const char *sql;
} session_rules[] = {
    {"queue_joined",
     "INSERT OR IGNORE INTO sessions (consultation, clinic, patient_name, patient_ref, priority, "
     "via, transferred_from, queued_ms) VALUES (:consultation, :clinic, "
     "json_extract(:detail, '$.name'), json_extract(:detail, '$.patient_ref'), "
     "json_extract(:detail, '$.priority'), json_extract(:detail, '$.via'), "
     "json_extract(:detail, '$.from_consultation'), :ts)"},
    {"consultation_called",
     "UPDATE sessions SET called_ms = coalesce(called_ms, :ts), "
     "wait_ms = coalesce(wait_ms, :ts - queued_ms), doctor = coalesce(:actor, doctor) "
     "WHERE consultation = :consultation"},
    {"consultation_started", "UPDATE sessions SET started_ms = coalesce(started_ms, :ts), "
                             "doctor = coalesce(json_extract(:detail, '$.doctor'), doctor) "
                             "WHERE consultation = :consultation"},
    /* For one a crash left open, the end is the last thing the log saw of it, and how long
     * it waited or lasted is not known: NULL, and the row says `recovered`. */
    {"consultation_ended",
     "UPDATE sessions SET recovered = " RECOVERED ", "
     "ended_ms = CASE WHEN " RECOVERED " THEN coalesce(last_ms, :ts) ELSE :ts END, "
     "wait_ms = CASE WHEN wait_ms IS NOT NULL OR " RECOVERED " THEN wait_ms "
     "ELSE :ts - queued_ms END, "
     "duration_ms = CASE WHEN started_ms IS NULL OR " RECOVERED " THEN NULL "
     "ELSE :ts - started_ms END, "
     "end_reason = json_extract(:detail, '$.reason'), "
     "doctor = coalesce(doctor, json_extract(:detail, '$.doctor')) "
     "WHERE consultation = :consultation AND ended_ms IS NULL"},
    {"participant_disconnected",
     "UPDATE sessions SET drops = drops + 1 WHERE consultation = :consultation"},
    {"participant_resumed",
     "UPDATE sessions SET resumes = resumes + 1 WHERE consultation = :consultation"},
    {"microphone_silent", "UPDATE sessions SET silent_warnings = silent_warnings + 1 "
                          "WHERE consultation = :consultation"},
    {"media_lost",
     "UPDATE sessions SET media_losses = media_losses + 1 WHERE consultation = :consultation"},
    {"media_summary",
     "UPDATE sessions SET quality = json_set(quality, '$.' || coalesce(:role, 'unknown'), "
     "json(:detail)) WHERE consultation = :consultation AND json_valid(:detail)"},
};

#define SESSION_RULE_COUNT (sizeof(session_rules) / sizeof(session_rules[0]))

/* Every event of a consultation: when the log last saw it. Runs after the rule. */
static const char session_touch_sql[] =
    "UPDATE sessions SET last_ms = :ts, last_event_id = :id WHERE consultation = :consultation";

static int hash_unchained(struct audit_store *s, char *err, size_t errlen);
static int replay_sessions(struct audit_store *s, char *err, size_t errlen);

/* Migration i brings the schema from version i to i + 1; `then` runs in its transaction. */
static const struct {
    const char *sql;
    int (*then)(struct audit_store *s, char *err, size_t errlen);
} migrations[] = {
    /* 0 -> 1: the append-only event log. */
    {"CREATE TABLE events ("
     "  id INTEGER PRIMARY KEY,"
     "  ts_ms INTEGER NOT NULL,"
     "  type TEXT NOT NULL,"
     "  detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))"
     ");"
     "CREATE INDEX events_by_time ON events (ts_ms);",
     NULL},
    /* 1 -> 2: who, where and with what outcome, as columns the search will filter on. */
    {"ALTER TABLE events ADD COLUMN actor_role TEXT;"
     "ALTER TABLE events ADD COLUMN actor_id TEXT;"
     "ALTER TABLE events ADD COLUMN clinic TEXT;"
     "ALTER TABLE events ADD COLUMN consultation TEXT;"
     "ALTER TABLE events ADD COLUMN outcome TEXT;"
     "ALTER TABLE events ADD COLUMN source TEXT;"
     "CREATE INDEX events_by_clinic ON events (clinic, ts_ms);"
     "CREATE INDEX events_by_consultation ON events (consultation);",
     NULL},
    /* 2 -> 3: the hash chain (chain.h); rows from before get theirs at start-up. */
    {"ALTER TABLE events ADD COLUMN hash BLOB;", hash_unchained},
    /* 3 -> 4: the sessions view, and indexes for the admins' search. */
    {"CREATE TABLE sessions ("
     "  seq INTEGER PRIMARY KEY,"
     "  consultation TEXT NOT NULL UNIQUE,"
     "  clinic TEXT,"
     "  patient_name TEXT,"
     "  patient_ref TEXT,"
     "  priority TEXT,"
     "  via TEXT,"
     "  transferred_from TEXT,"
     "  doctor TEXT,"
     "  queued_ms INTEGER,"
     "  called_ms INTEGER,"
     "  started_ms INTEGER,"
     "  ended_ms INTEGER,"
     "  wait_ms INTEGER,"
     "  duration_ms INTEGER,"
     "  end_reason TEXT,"
     "  drops INTEGER NOT NULL DEFAULT 0,"
     "  resumes INTEGER NOT NULL DEFAULT 0,"
     "  silent_warnings INTEGER NOT NULL DEFAULT 0,"
     "  media_losses INTEGER NOT NULL DEFAULT 0,"
     "  recovered INTEGER NOT NULL DEFAULT 0,"
     "  quality TEXT NOT NULL DEFAULT '{}',"
     "  last_ms INTEGER,"
     "  last_event_id INTEGER"
     ");"
     "CREATE INDEX sessions_by_clinic ON sessions (clinic, seq);"
     "CREATE INDEX sessions_by_doctor ON sessions (doctor, seq);"
     "CREATE INDEX sessions_by_patient_ref ON sessions (patient_ref);"
     "CREATE INDEX sessions_by_queued ON sessions (queued_ms);"
     "CREATE INDEX sessions_open ON sessions (seq) WHERE ended_ms IS NULL;"
     "CREATE INDEX events_by_type ON events (type, id);"
     "CREATE INDEX events_by_actor ON events (actor_id, id);",
     replay_sessions},
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

int audit_schema_version(void)
{
    return MIGRATION_COUNT;
}

int store_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "audit: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int store_path(const char *data_dir, char *out, size_t outlen)
{
    return snprintf(out, outlen, "%s/audit.db", data_dir) >= (int)outlen ? -1 : 0;
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

/* Binds what an event's statement names (:id, :ts, :type, ...) from `ev`. */
static void bind_event(sqlite3_stmt *st, int64_t id, const struct store_event *ev)
{
    static const char *const names[AUDIT_FIELD_COUNT] = {
        [AUDIT_FIELD_TYPE] = ":type",
        [AUDIT_FIELD_ACTOR_ROLE] = ":role",
        [AUDIT_FIELD_ACTOR_ID] = ":actor",
        [AUDIT_FIELD_CLINIC] = ":clinic",
        [AUDIT_FIELD_CONSULTATION] = ":consultation",
        [AUDIT_FIELD_OUTCOME] = ":outcome",
        [AUDIT_FIELD_SOURCE] = ":source",
        [AUDIT_FIELD_DETAIL] = ":detail",
    };
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    int i = sqlite3_bind_parameter_index(st, ":id");
    if (i)
        sqlite3_bind_int64(st, i, id);
    if ((i = sqlite3_bind_parameter_index(st, ":ts")))
        sqlite3_bind_int64(st, i, ev->ts_ms);
    for (int f = 0; f < AUDIT_FIELD_COUNT; f++)
        if ((i = sqlite3_bind_parameter_index(st, names[f])) && ev->field[f])
            sqlite3_bind_text(st, i, ev->field[f], -1, SQLITE_STATIC);
}

static int prepare_session_rules(struct audit_store *s, char *err, size_t errlen)
{
    if (s->session_rules)
        return 0;
    s->session_rules = calloc(SESSION_RULE_COUNT, sizeof(*s->session_rules));
    if (!s->session_rules) {
        snprintf(err, errlen, "audit: out of memory");
        return -1;
    }
    for (size_t r = 0; r < SESSION_RULE_COUNT; r++)
        if (sqlite3_prepare_v2(s->db, session_rules[r].sql, -1, &s->session_rules[r], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "audit: session rule %s: %s", session_rules[r].type,
                     sqlite3_errmsg(s->db));
            return -1;
        }
    if (sqlite3_prepare_v2(s->db, session_touch_sql, -1, &s->session_touch, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

/* Moves the sessions view by one stored event. */
static int apply_to_sessions(struct audit_store *s, int64_t id, const struct store_event *ev,
                             char *err, size_t errlen)
{
    if (!ev->field[AUDIT_FIELD_CONSULTATION])
        return 0;
    for (size_t r = 0; r < SESSION_RULE_COUNT; r++) {
        if (strcmp(session_rules[r].type, ev->field[AUDIT_FIELD_TYPE]) != 0)
            continue;
        bind_event(s->session_rules[r], id, ev);
        int rc = sqlite3_step(s->session_rules[r]);
        sqlite3_reset(s->session_rules[r]);
        if (rc != SQLITE_DONE)
            goto failed;
        break;
    }
    bind_event(s->session_touch, id, ev);
    int rc = sqlite3_step(s->session_touch);
    sqlite3_reset(s->session_touch);
    if (rc == SQLITE_DONE)
        return 0;
failed:
    snprintf(err, errlen, "audit: sessions view: %s", sqlite3_errmsg(s->db));
    return -1;
}

/* Reads event rows (id, ts_ms, then the fields) into `ev`; the strings live until the next step. */
static void read_event_row(sqlite3_stmt *rows, struct store_event *ev)
{
    ev->ts_ms = sqlite3_column_int64(rows, 1);
    for (int f = 0; f < AUDIT_FIELD_COUNT; f++)
        ev->field[f] = (const char *)sqlite3_column_text(rows, 2 + f);
}

#define EVENT_COLUMNS                                                                              \
    "id, ts_ms, type, actor_role, actor_id, clinic, consultation, outcome, source, detail, hash"

/* Migration 3 -> 4: the events stored so far, through the session rules in id order. */
static int replay_sessions(struct audit_store *s, char *err, size_t errlen)
{
    if (prepare_session_rules(s, err, errlen) != 0)
        return -1;
    sqlite3_stmt *rows = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " EVENT_COLUMNS " FROM events WHERE consultation IS NOT NULL "
                           "ORDER BY id",
                           -1, &rows, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(rows)) == SQLITE_ROW) {
        struct store_event ev;
        read_event_row(rows, &ev);
        rc = apply_to_sessions(s, sqlite3_column_int64(rows, 0), &ev, err, errlen);
    }
    if (rc == 0 && step != SQLITE_DONE) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(rows);
    return rc;
}

static int migrate(struct audit_store *s, char *err, size_t errlen)
{
    int v = user_version(s->db);
    if (v < 0) {
        snprintf(err, errlen, "audit: cannot read the schema version: %s", sqlite3_errmsg(s->db));
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
        if (store_exec(s->db, "BEGIN IMMEDIATE;", err, errlen))
            return -1;
        /* Another process may have migrated while we waited for the lock. */
        if (user_version(s->db) > v) {
            store_exec(s->db, "COMMIT;", NULL, 0);
            continue;
        }
        if (store_exec(s->db, migrations[v].sql, err, errlen) ||
            (migrations[v].then && migrations[v].then(s, err, errlen)) ||
            store_exec(s->db, bump, err, errlen)) {
            store_exec(s->db, "ROLLBACK;", NULL, 0);
            return -1;
        }
        if (store_exec(s->db, "COMMIT;", err, errlen))
            return -1;
        if (s->log)
            log_info(s->log, "audit", "schema migrated", LOG_INT("version", v + 1));
    }
    return 0;
}

/*
 * Migration 2 -> 3: hashes the rows stored before the chain existed, in id
 * order. Only then: afterwards a row without its hash is a break that
 * `tabib audit verify` reports, never something to mend.
 */
static int hash_unchained(struct audit_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *rows = NULL, *set = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT " EVENT_COLUMNS " FROM events ORDER BY id", -1, &rows,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "UPDATE events SET hash = ? WHERE id = ?", -1, &set, NULL) !=
            SQLITE_OK) {
        snprintf(err, errlen, "audit: cannot read the chain: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    uint8_t head[AUDIT_HASH_BYTES] = {0};
    int step;
    while ((step = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(rows, 0);
        if (sqlite3_column_type(rows, 10) == SQLITE_BLOB &&
            sqlite3_column_bytes(rows, 10) == AUDIT_HASH_BYTES) {
            memcpy(head, sqlite3_column_blob(rows, 10), AUDIT_HASH_BYTES);
            continue;
        }
        struct store_event ev;
        read_event_row(rows, &ev);
        uint8_t hash[AUDIT_HASH_BYTES];
        if (audit_chain_hash(head, id, ev.ts_ms, ev.field, hash) != 0)
            break;
        sqlite3_reset(set);
        sqlite3_bind_blob(set, 1, hash, sizeof(hash), SQLITE_TRANSIENT);
        sqlite3_bind_int64(set, 2, id);
        if (sqlite3_step(set) != SQLITE_DONE)
            break;
        memcpy(head, hash, sizeof(hash));
    }
    if (step != SQLITE_DONE) {
        snprintf(err, errlen, "audit: cannot hash the stored events: %s", sqlite3_errmsg(s->db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(set);
    return rc;
}

int store_open(struct audit_store *s, const char *data_dir, struct base_logger *log, char *err,
               size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->log = log;
    char path[4096];
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir: cannot create \"%s\": %s", data_dir, strerror(errno));
        return -1;
    }
    if (store_path(data_dir, path, sizeof(path)) != 0) {
        snprintf(err, errlen, "data_dir: path is too long");
        return -1;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: cannot open \"%s\": %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (store_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err, errlen) ||
        migrate(s, err, errlen) || prepare_session_rules(s, err, errlen))
        return -1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO events (" EVENT_COLUMNS ") "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &s->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1", -1,
                           &s->read_head, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    /* The head as it is now, for a reader of last_id before the first transaction. */
    if (store_begin(s, err, errlen) != 0)
        return -1;
    store_end(s, false, err, errlen);
    return 0;
}

void store_close(struct audit_store *s)
{
    if (s->session_rules)
        for (size_t r = 0; r < SESSION_RULE_COUNT; r++)
            sqlite3_finalize(s->session_rules[r]);
    free(s->session_rules);
    sqlite3_finalize(s->session_touch);
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->read_head);
    sqlite3_close(s->db);
    memset(s, 0, sizeof(*s));
}

int store_begin(struct audit_store *s, char *err, size_t errlen)
{
    if (store_exec(s->db, "BEGIN IMMEDIATE;", err, errlen) != 0)
        return -1;
    sqlite3_reset(s->read_head);
    int step = sqlite3_step(s->read_head);
    if (step == SQLITE_ROW && sqlite3_column_bytes(s->read_head, 1) == AUDIT_HASH_BYTES) {
        s->last_id = sqlite3_column_int64(s->read_head, 0);
        memcpy(s->head, sqlite3_column_blob(s->read_head, 1), AUDIT_HASH_BYTES);
    } else if (step == SQLITE_ROW) {
        /* The newest row lost its hash: tampering, which verify reports. The clinics go on;
         * new events chain on zeros from here, and nothing is mended. */
        s->last_id = sqlite3_column_int64(s->read_head, 0);
        memset(s->head, 0, sizeof(s->head));
        if (!s->broken_head_logged && s->log)
            log_error(s->log, "audit", "the newest event has no hash: the chain is broken there",
                      LOG_INT("event", s->last_id));
        s->broken_head_logged = true;
    } else if (step == SQLITE_DONE) {
        s->last_id = 0;
        memset(s->head, 0, sizeof(s->head));
    } else {
        snprintf(err, errlen, "audit: cannot read the chain's head: %s", sqlite3_errmsg(s->db));
        sqlite3_reset(s->read_head);
        store_exec(s->db, "ROLLBACK;", NULL, 0);
        return -1;
    }
    sqlite3_reset(s->read_head);
    return 0;
}

int store_append(struct audit_store *s, const struct store_event *in, char *err, size_t errlen)
{
    struct store_event ev = *in;
    if (!ev.field[AUDIT_FIELD_DETAIL])
        ev.field[AUDIT_FIELD_DETAIL] = "{}";
    int64_t id = s->last_id + 1;
    uint8_t hash[AUDIT_HASH_BYTES];
    if (audit_chain_hash(s->head, id, ev.ts_ms, ev.field, hash) != 0) {
        snprintf(err, errlen, "audit: cannot hash the event");
        return -1;
    }
    sqlite3_reset(s->insert);
    sqlite3_bind_int64(s->insert, 1, id);
    sqlite3_bind_int64(s->insert, 2, ev.ts_ms);
    for (int f = 0; f < AUDIT_FIELD_COUNT; f++) {
        if (ev.field[f])
            sqlite3_bind_text(s->insert, 3 + f, ev.field[f], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s->insert, 3 + f);
    }
    sqlite3_bind_blob(s->insert, 3 + AUDIT_FIELD_COUNT, hash, sizeof(hash), SQLITE_STATIC);
    int rc = sqlite3_step(s->insert);
    sqlite3_reset(s->insert);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "audit: %s", sqlite3_errmsg(s->db)); /* one statement: all or none */
        /* A full disk or an I/O error rolls the whole transaction back, not just this. */
        return sqlite3_get_autocommit(s->db) ? STORE_ABORTED : -1;
    }
    /* The event is the record; the view is derived from it. A view that cannot follow is
     * logged, never a reason to lose the event (each statement is all or nothing), unless
     * the transaction itself went with it. */
    char view_err[256];
    if (apply_to_sessions(s, id, &ev, view_err, sizeof(view_err)) != 0) {
        if (sqlite3_get_autocommit(s->db)) {
            snprintf(err, errlen, "%s", view_err);
            return STORE_ABORTED;
        }
        if (s->log)
            log_error(s->log, "audit", "sessions view not updated", LOG_INT("event", id),
                      LOG_STR("error", view_err));
    }
    s->last_id = id;
    memcpy(s->head, hash, sizeof(hash));
    return 0;
}

int store_end(struct audit_store *s, bool commit, char *err, size_t errlen)
{
    if (commit && store_exec(s->db, "COMMIT;", err, errlen) == 0)
        return 0;
    store_exec(s->db, "ROLLBACK;", NULL, 0);
    return -1;
}
