/*
 * test_audit_writer.c - the audit writer against a real SQLite file: events
 * from many threads all committed, WAL mode, migrations, probes, and a
 * database from a newer build refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "audit.h"

struct fixture {
    char dir[64];
    char db[128];
    struct base_logger *log;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tabib-test-audit-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->db, sizeof(f->db), "%s/audit.db", f->dir);
    char err[128];
    f->log = base_logger_new(NULL, BASE_LOG_TEXT, BASE_LOG_ERROR, err, sizeof(err));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char path[160];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", f->db, suffixes[i]);
        unlink(path);
    }
    rmdir(f->dir);
    base_logger_free(f->log);
    free(f);
    return 0;
}

static long long query_int(const char *db_path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

#define THREADS    4
#define PER_THREAD 500

struct recorder {
    struct audit_writer *w;
    int id;
};

static void *record_many(void *arg)
{
    struct recorder *r = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char detail[64];
        snprintf(detail, sizeof(detail), "{\"thread\":%d,\"n\":%d}", r->id, i);
        while (audit_writer_record(r->w, "test_event", detail) == -EAGAIN)
            usleep(100);
    }
    return NULL;
}

static void events_from_many_threads_are_all_committed(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    if (!w)
        fail_msg("start: %s", err);
    pthread_t t[THREADS];
    struct recorder r[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct recorder){.w = w, .id = i};
        pthread_create(&t[i], NULL, record_many, &r[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    audit_writer_stop(w); /* commits everything queued before returning */

    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events"), THREADS * PER_THREAD);
    assert_int_equal(query_int(f->db, "SELECT count(DISTINCT detail) FROM events"),
                     THREADS * PER_THREAD);
    assert_int_equal(query_int(f->db, "PRAGMA user_version"), audit_schema_version());
    /* Timestamps are UTC milliseconds of this decade. */
    assert_true(query_int(f->db, "SELECT min(ts_ms) FROM events") > 1700000000000LL);
    sqlite3 *db;
    sqlite3_open(f->db, &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void restart_keeps_events_and_counts_commits(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(audit_writer_record(w, "first", NULL), 0);
    assert_int_equal(audit_writer_record(w, "bad_detail", "{not json"), 0);
    char long_type[80];
    memset(long_type, 't', sizeof(long_type) - 1);
    long_type[sizeof(long_type) - 1] = '\0';
    assert_int_equal(audit_writer_record(w, long_type, "{}"), -EINVAL);
    for (int i = 0; i < 200 && audit_writer_committed(w) < 1; i++)
        usleep(10000);
    assert_int_equal(audit_writer_committed(w), 1); /* the malformed detail was refused */
    audit_writer_stop(w);
    w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(audit_writer_record(w, "second", "{}"), 0);
    audit_writer_stop(w);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events"), 2);
}

static void event_columns_are_stored(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    assert_non_null(w);
    struct audit_event ev = {.type = "queue_joined",
                             .actor_role = "patient",
                             .actor_id = "c-123",
                             .clinic = "general",
                             .consultation = "c-123",
                             .outcome = "ok",
                             .source = "127.0.0.1",
                             .detail_json = "{\"name\":\"مريم\"}"};
    assert_int_equal(audit_writer_append(w, &ev), 0);
    struct audit_event bare = {.type = "server_started"};
    assert_int_equal(audit_writer_append(w, &bare), 0);
    struct audit_event untyped = {.clinic = "general"};
    assert_int_equal(audit_writer_append(w, &untyped), -EINVAL);
    audit_writer_stop(w);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events WHERE type='queue_joined' AND "
                                      "actor_role='patient' AND actor_id='c-123' AND "
                                      "clinic='general' AND consultation='c-123' AND "
                                      "outcome='ok' AND source='127.0.0.1' AND "
                                      "json_extract(detail,'$.name')='مريم'"),
                     1);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events WHERE type='server_started' "
                                      "AND clinic IS NULL AND detail='{}'"),
                     1);
}

static void probe_is_answered(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    struct base_mailbox *reply = base_mailbox_new(4, NULL, NULL);
    assert_int_equal(audit_writer_probe(w, reply, 9), 0);
    struct base_msg m;
    int tries = 0;
    while (!base_mailbox_pop(reply, &m) && tries++ < 300)
        usleep(10000);
    assert_int_equal(m.type, BASE_MSG_PROBE_REPLY);
    assert_int_equal(m.sender, BASE_THREAD_AUDIT);
    assert_int_equal(m.arg, 9);
    audit_writer_stop(w);
    base_mailbox_free(reply);
}

static void newer_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[256];
    assert_null(audit_writer_start(f->dir, f->log, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 99, newer than this build's"));
}

static void unwritable_data_dir_is_reported(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_null(audit_writer_start("/proc/no-such-dir/tabib", f->log, err, sizeof(err)));
    assert_non_null(strstr(err, "data_dir: cannot create"));
    audit_writer_stop(NULL);
}

/*
 * A database from schema 2 (events with actors, no hash, no sessions view)
 * is brought up to date at start: every row hashed in id order, the view
 * built by replaying the events, and the consultation the log shows open
 * closed with server_restart.
 */
static void schema_2_gets_its_chain_and_sessions(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    const char *v2 =
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, type TEXT NOT NULL,"
        " detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)));"
        "CREATE INDEX events_by_time ON events (ts_ms);"
        "ALTER TABLE events ADD COLUMN actor_role TEXT; ALTER TABLE events ADD COLUMN actor_id "
        "TEXT;"
        "ALTER TABLE events ADD COLUMN clinic TEXT; ALTER TABLE events ADD COLUMN consultation "
        "TEXT;"
        "ALTER TABLE events ADD COLUMN outcome TEXT; ALTER TABLE events ADD COLUMN source TEXT;"
        "CREATE INDEX events_by_clinic ON events (clinic, ts_ms);"
        "CREATE INDEX events_by_consultation ON events (consultation);"
        "INSERT INTO events (ts_ms, type, actor_role, actor_id, clinic, consultation, detail) "
        "VALUES"
        " (1000, 'queue_joined', 'patient', 'c_1', 'general', 'c_1', '{\"name\":\"Amal\"}'),"
        " (4000, 'consultation_called', 'doctor', 'dr.a', 'general', 'c_1', '{}'),"
        " (5000, 'consultation_started', 'patient', 'c_1', 'general', 'c_1', "
        "'{\"doctor\":\"dr.a\"}'),"
        " (65000, 'consultation_ended', 'doctor', 'dr.a', 'general', 'c_1', "
        "'{\"reason\":\"completed\"}'),"
        " (70000, 'queue_joined', 'patient', 'c_2', 'general', 'c_2', '{\"name\":\"Open\"}');"
        "PRAGMA user_version = 2;";
    assert_int_equal(sqlite3_exec(db, v2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    if (!w)
        fail_msg("start: %s", err);
    audit_writer_stop(w);
    assert_int_equal(query_int(f->db, "PRAGMA user_version"), audit_schema_version());
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events WHERE length(hash) = 32"),
                     query_int(f->db, "SELECT count(*) FROM events"));
    assert_int_equal(query_int(f->db, "SELECT wait_ms FROM sessions WHERE consultation = 'c_1'"),
                     3000);
    assert_int_equal(
        query_int(f->db, "SELECT duration_ms FROM sessions WHERE consultation = 'c_1'"), 60000);
    assert_int_equal(query_int(f->db, "SELECT end_reason = 'completed' AND doctor = 'dr.a' "
                                      "FROM sessions WHERE consultation = 'c_1'"),
                     1);
    /* The open one is closed at this start, flagged, its wait unknown. */
    assert_int_equal(query_int(f->db, "SELECT end_reason = 'server_restart' AND recovered = 1 AND "
                                      "wait_ms IS NULL AND ended_ms = 70000 "
                                      "FROM sessions WHERE consultation = 'c_2'"),
                     1);
    const char *args[] = {"verify", "--data-dir", f->dir, NULL};
    FILE *out = tmpfile(), *errout = tmpfile();
    assert_int_equal(audit_main(3, (char **)args, out, errout), 0);
    fclose(out);
    fclose(errout);
}

/* A hash removed is reported by verify, and opening the store again does not put it back. */
static void a_missing_hash_is_never_mended(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_writer *w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    if (!w)
        fail_msg("start: %s", err);
    for (int i = 0; i < 5; i++)
        while (audit_writer_record(w, "test_event", "{}") == -EAGAIN)
            usleep(100);
    audit_writer_stop(w);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE events SET detail = '{\"x\":1}', hash = NULL WHERE id >= 3", NULL,
                     NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    w = audit_writer_start(f->dir, f->log, err, sizeof(err));
    if (!w)
        fail_msg("restart: %s", err);
    audit_writer_stop(w);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM events WHERE hash IS NULL"), 3);
    const char *args[] = {"verify", "--data-dir", f->dir, NULL};
    FILE *out = tmpfile(), *errout = tmpfile();
    assert_int_equal(audit_main(3, (char **)args, out, errout), 1);
    fclose(out);
    fclose(errout);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(events_from_many_threads_are_all_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(restart_keeps_events_and_counts_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(event_columns_are_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(probe_is_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(schema_2_gets_its_chain_and_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_hash_is_never_mended, setup, teardown),
        cmocka_unit_test_setup_teardown(unwritable_data_dir_is_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
