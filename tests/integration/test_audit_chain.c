/*
 * test_audit_chain.c - the audit log's hash chain against real tampering:
 * the real server writes events, then the sqlite3 command-line tool edits,
 * deletes, reorders and inserts rows, and `tabib audit verify` must catch
 * each one and name the first bad event. An untouched log verifies.
 *
 * And the log across crashes: the server killed with SIGKILL, first with one
 * patient waiting, then with 50 consultations running and audited requests
 * pouring in; every event /metrics reported committed before the kill is on
 * disk, the chain verifies, and the next start closes exactly the
 * consultations left open, once each, with "server_restart".
 *
 * Runs on the test's main thread, but for the one noise thread of the
 * SIGKILL test, which owns its own connections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "base.h"
#include "test_client.h"
#include "test_server.h"

struct chain {
    char data_dir[512];
    char db[600];
    char pristine[600];
};

/* Runs a shell command; returns its exit status. */
static int shell(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* `tabib audit verify`: its status, and its stderr in `errors` (free it). */
static int verify(const struct chain *c, char **errors)
{
    const char *args[] = {"audit", "verify", "--data-dir", c->data_dir, NULL};
    return ts_run_to_exit(args, errors, 20000);
}

/* Puts the untouched database back, then applies `sql` with the sqlite3 tool. */
static void tamper(const struct chain *c, const char *sql)
{
    assert_int_equal(shell("cp '%s' '%s'", c->pristine, c->db), 0);
    assert_int_equal(shell("sqlite3 '%s' \"%s\"", c->db, sql), 0);
}

/* Verification fails (1) and names `event` as the first bad one. */
static void expect_broken_at(const struct chain *c, const char *event)
{
    char *errors = NULL;
    int status = verify(c, &errors);
    print_message("  -> status %d: %s", status, errors ? errors : "");
    assert_int_equal(status, 1);
    char want[64];
    snprintf(want, sizeof(want), "breaks at event %s ", event);
    assert_non_null(strstr(errors, want));
    free(errors);
}

static void test_tampering_is_caught(void **state)
{
    (void)state;
    struct ts_server *srv = ts_server_start(NULL);
    assert_non_null(srv);
    /* Some events: patients joining and leaving, each audited. */
    for (int i = 0; i < 4; i++) {
        struct tc_ws *ws = tc_ws_connect(ts_server_port(srv), "/ws", "tabib.v1", NULL);
        assert_non_null(ws);
        const char *join = "{\"type\":\"join\",\"id\":1,\"clinic\":\"general\",\"name\":\"Chain\"}";
        assert_int_equal(tc_ws_send_text(ws, join, strlen(join)), 0);
        char *reply = NULL;
        size_t len = 0;
        assert_int_equal(tc_ws_recv(ws, &reply, &len, 5000), TC_WS_TEXT);
        free(reply);
        tc_ws_close(ws);
    }
    struct chain c;
    snprintf(c.data_dir, sizeof(c.data_dir), "%s/data", ts_server_dir(srv));
    snprintf(c.db, sizeof(c.db), "%s/audit.db", c.data_dir);
    snprintf(c.pristine, sizeof(c.pristine), "%s/pristine.db", ts_server_dir(srv));
    assert_int_equal(ts_server_stop(srv, NULL), 0);
    assert_int_equal(shell("cp '%s' '%s'", c.db, c.pristine), 0);

    char *errors = NULL;
    assert_int_equal(verify(&c, &errors), 0);
    free(errors);
    /* The untouched log: every event verified, and the head hash printed for checkpoints. */
    assert_int_equal(shell("'%s' audit verify --data-dir '%s' | grep -q '^head: [0-9a-f]\\{64\\}$'",
                           TABIB_BINARY, c.data_dir),
                     0);
    assert_int_equal(shell("test $(sqlite3 '%s' 'SELECT count(*) FROM events') -ge 10", c.db), 0);
    /* And the server wrote its head to its log at the clean stop (a checkpoint). */
    assert_int_equal(shell("grep -q 'audit: checkpoint' '%s/stderr.log'", ts_server_dir(srv)), 0);

    print_message("a detail changed:\n");
    tamper(&c, "UPDATE events SET detail = '{\\\"reason\\\":\\\"other\\\"}' WHERE id = 3");
    expect_broken_at(&c, "3");
    print_message("an event deleted:\n");
    tamper(&c, "DELETE FROM events WHERE id = 4");
    expect_broken_at(&c, "5");
    print_message("two events swapped:\n");
    tamper(&c, "UPDATE events SET id = -6 WHERE id = 6; UPDATE events SET id = 6 WHERE id = 7; "
               "UPDATE events SET id = 7 WHERE id = -6");
    expect_broken_at(&c, "6");
    print_message("an event put in, with a made-up hash:\n");
    tamper(&c, "INSERT INTO events (id, ts_ms, type, detail, hash) SELECT max(id) + 1, "
               "1795000000000, 'sign_in', '{}', zeroblob(32) FROM events");
    char last[32];
    FILE *q = NULL;
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'SELECT max(id) FROM events'", c.db);
    q = popen(cmd, "r");
    assert_non_null(q);
    assert_non_null(fgets(last, sizeof(last), q));
    pclose(q);
    last[strcspn(last, "\n")] = '\0';
    expect_broken_at(&c, last);
    print_message("a time moved:\n");
    tamper(&c, "UPDATE events SET ts_ms = ts_ms + 1 WHERE id = 2");
    expect_broken_at(&c, "2");
    ts_server_free(srv);
}

/* A crash leaves a consultation open; the next start closes it with "server_restart". */
static void test_crash_recovery_closes_open_consultations(void **state)
{
    (void)state;
    struct ts_server *first = ts_server_start(NULL);
    assert_non_null(first);
    struct tc_ws *ws = tc_ws_connect(ts_server_port(first), "/ws", "tabib.v1", NULL);
    assert_non_null(ws);
    const char *join = "{\"type\":\"join\",\"id\":1,\"clinic\":\"general\",\"name\":\"Crash\"}";
    assert_int_equal(tc_ws_send_text(ws, join, strlen(join)), 0);
    char *reply = NULL;
    size_t len = 0;
    assert_int_equal(tc_ws_recv(ws, &reply, &len, 5000), TC_WS_TEXT);
    free(reply);
    /* Its audit event is committed a moment after the reply: wait until it is on disk. */
    char data_dir[512];
    snprintf(data_dir, sizeof(data_dir), "%s/data", ts_server_dir(first));
    for (int i = 0; i < 200; i++) {
        if (shell("test $(sqlite3 '%s/audit.db' \"SELECT count(*) FROM events WHERE type = "
                  "'queue_joined'\") -eq 1",
                  data_dir) == 0)
            break;
        struct timespec ts = {.tv_nsec = 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(ts_server_kill(first, SIGKILL), 0);
    ts_server_wait(first, 5000);
    tc_ws_close(ws);

    const char *args[] = {"--data-dir", data_dir, NULL};
    struct ts_server *second = ts_server_start(args);
    assert_non_null(second);
    assert_int_equal(ts_server_stop(second, NULL), 0);
    ts_server_free(second);
    assert_int_equal(shell("test $(sqlite3 '%s/audit.db' \"SELECT count(*) FROM events WHERE "
                           "type = 'consultation_ended' AND json_extract(detail, '$.reason') = "
                           "'server_restart' AND consultation = (SELECT consultation FROM events "
                           "WHERE type = 'queue_joined')\") -eq 1",
                           data_dir),
                     0);
    struct chain c;
    snprintf(c.data_dir, sizeof(c.data_dir), "%s", data_dir);
    char *errors = NULL;
    assert_int_equal(verify(&c, &errors), 0);
    free(errors);
    ts_server_free(first);
}

/* ------------------------------------------------------------------------- */
/* SIGKILL with 50 consultations running                                      */
/* ------------------------------------------------------------------------- */

#define CRASH_DOCTORS     10                   /* 0-4 on duty at "general", 5-9 at "paediatrics" */
#define CRASH_PATIENTS    50                   /* 10 taken into a consultation, 40 left waiting */
#define CRASH_OPEN        (CRASH_PATIENTS + 1) /* and the transferred patient's new consultation */
#define CRASH_PASSWORD    "correct horse battery"
#define CRASH_WS_MS       10000
#define NOISE_CONNS       4
#define NOISE_WINDOW      16   /* requests in flight per noise connection */
#define NOISE_BEFORE_KILL 3000 /* noise events answered before /metrics is read */

/* The first "key":"value" string in a compact JSON text, copied to `out`; false if absent. */
static bool json_str(const char *json, const char *key, char *out, size_t outlen)
{
    char pattern[80];
    snprintf(pattern, sizeof(pattern), "\"%s\":\"", key);
    const char *p = strstr(json, pattern);
    if (!p)
        return false;
    p += strlen(pattern);
    const char *end = strchr(p, '"');
    if (!end || (size_t)(end - p) >= outlen)
        return false;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return true;
}

/* Sends one text message, formatted; fails the test if it cannot. */
__attribute__((format(printf, 2, 3))) static void ws_sendf(struct tc_ws *ws, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    assert_int_equal(tc_ws_send_text(ws, text, (size_t)n), 0);
}

/*
 * Receives until a message of `type` arrives (events and other replies on
 * the way are skipped) and returns it (free it). An error reply, a close or
 * CRASH_WS_MS of silence fails the test.
 */
static char *ws_wait(struct tc_ws *ws, const char *type)
{
    int64_t deadline = base_now_ms() + CRASH_WS_MS;
    for (;;) {
        int64_t left = deadline - base_now_ms();
        char *text = NULL;
        size_t len = 0;
        enum tc_ws_result r = left > 0 ? tc_ws_recv(ws, &text, &len, (int)left) : TC_WS_TIMEOUT;
        if (r != TC_WS_TEXT) {
            print_error("waiting for \"%s\": result %d\n", type, r);
            fail();
        }
        char got[64] = "";
        json_str(text, "type", got, sizeof(got));
        if (strcmp(got, type) == 0)
            return text;
        if (strcmp(got, "error") == 0) {
            print_error("waiting for \"%s\", got %s\n", type, text);
            fail();
        }
        free(text);
    }
}

/* Waits for a message of `type` and copies its string field `key` to `out`. */
static void ws_wait_str(struct tc_ws *ws, const char *type, const char *key, char *out,
                        size_t outlen)
{
    char *msg = ws_wait(ws, type);
    bool found = json_str(msg, key, out, outlen);
    if (!found)
        print_error("no \"%s\" in %s\n", key, msg);
    free(msg);
    assert_true(found);
}

static struct tc_ws *ws_open_at(uint16_t port)
{
    struct tc_ws *ws = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
    assert_non_null(ws);
    return ws;
}

/* A patient joins `clinic`; returns the connection and the consultation id in `id`. */
static struct tc_ws *crash_join(uint16_t port, const char *clinic, const char *name, char *id,
                                size_t idlen)
{
    struct tc_ws *ws = ws_open_at(port);
    ws_sendf(ws, "{\"type\":\"join\",\"id\":1,\"clinic\":\"%s\",\"name\":\"%s\"}", clinic, name);
    ws_wait_str(ws, "joined", "consultation", id, idlen);
    return ws;
}

/*
 * The integer on the first line the sqlite3 tool prints for `sql` (written
 * to a file under `dir` first, so no shell quoting gets in the way) on
 * database `db`. Fails the test when the tool fails or prints no integer.
 */
__attribute__((format(printf, 3, 4))) static long long sql_int(const char *dir, const char *db,
                                                               const char *fmt, ...)
{
    char path[600], cmd[1400];
    snprintf(path, sizeof(path), "%s/query.sql", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputs(";\n", f);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), "sqlite3 -batch '%s' < '%s'", db, path);
    FILE *q = popen(cmd, "r");
    assert_non_null(q);
    char line[64] = "";
    bool got = fgets(line, sizeof(line), q) != NULL;
    int status = pclose(q);
    char *end = NULL;
    long long v = got ? strtoll(line, &end, 10) : 0;
    if (!got || end == line || status != 0)
        print_error("sqlite3 on %s: status %d, output \"%s\"\n", db, status, line);
    assert_true(got && end != line && status == 0);
    return v;
}

/* A sample's value in a /metrics text; fails the test when it is missing. */
static long long metric_in(const char *body, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = body; line && *line;) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return strtoll(line + n + 1, NULL, 10);
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    print_error("no sample %s in /metrics\n", name);
    fail();
    return -1;
}

/* `tabib audit verify --data-dir dir`: its exit status, and the count it printed in *events. */
static int verify_count(const char *data_dir, long long *events)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' audit verify --data-dir '%s'", TABIB_BINARY, data_dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256];
    *events = -1;
    while (fgets(line, sizeof(line), p))
        sscanf(line, "events verified: %lld", events);
    int status = pclose(p);
    return status == -1 || !WIFEXITED(status) ? -1 : WEXITSTATUS(status);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Audited requests kept flowing on connections of its own until the server
 * dies: `resume` with tokens nobody holds, each written to the log as
 * `resume_refused` before its answer is sent, so every `not_found` answer
 * received is an event the server had appended.
 */
struct noise {
    struct tc_ws *ws[NOISE_CONNS]; /* owned by the thread while it runs */
    pthread_t thread;
    atomic_bool stop;
    atomic_ullong refused; /* not_found answers received */
    atomic_ullong other;   /* any other answer (rate_limited, say): not expected */
};

static void *noise_main(void *arg)
{
    struct noise *n = arg;
    unsigned long long seq = 0;
    while (!atomic_load(&n->stop)) {
        for (int c = 0; c < NOISE_CONNS; c++)
            for (int k = 0; k < NOISE_WINDOW; k++) {
                char req[128];
                int len = snprintf(
                    req, sizeof(req),
                    "{\"type\":\"resume\",\"id\":%llu,\"resume_token\":\"nobody-%llu\"}", seq, seq);
                seq++;
                if (tc_ws_send_text(n->ws[c], req, (size_t)len) != 0)
                    return NULL;
            }
        for (int c = 0; c < NOISE_CONNS; c++)
            for (int k = 0; k < NOISE_WINDOW; k++) {
                char *text = NULL;
                size_t len = 0;
                if (tc_ws_recv(n->ws[c], &text, &len, CRASH_WS_MS) != TC_WS_TEXT)
                    return NULL; /* the server is gone */
                if (strstr(text, "\"code\":\"not_found\""))
                    atomic_fetch_add(&n->refused, 1);
                else
                    atomic_fetch_add(&n->other, 1);
                free(text);
            }
    }
    return NULL;
}

/*
 * The audit issue's crash point: with 50 consultations running (10 in
 * progress, 40 waiting) and audited requests still pouring in, /metrics is
 * read (N = the newest event id reported committed) and the server is
 * killed with SIGKILL at once. What the kill left must hold every event up
 * to N with an unbroken chain; the next start must close exactly the
 * consultations left open, each once, with "server_restart", and nothing
 * that had already ended (a completed consultation, a transferred one).
 */
static void test_sigkill_with_50_consultations_running(void **state)
{
    (void)state;
    int64_t started_ms = base_now_ms();
    const char *first_args[] = {"--message-rate", "10000", "--message-burst", "10000", NULL};
    struct ts_server *first = ts_server_start(first_args);
    assert_non_null(first);
    uint16_t port = ts_server_port(first);
    const char *dir = ts_server_dir(first);
    char data_dir[512], db[600], pw_path[600];
    snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
    snprintf(db, sizeof(db), "%s/audit.db", data_dir);
    snprintf(pw_path, sizeof(pw_path), "%s/doctor-password", dir);
    FILE *f = fopen(pw_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", CRASH_PASSWORD);
    assert_int_equal(fclose(f), 0);

    /* Ten doctors staffing both clinics, created with the CLI as an operator would. */
    struct tc_ws *doctor[CRASH_DOCTORS];
    for (int d = 0; d < CRASH_DOCTORS; d++) {
        char name[32];
        snprintf(name, sizeof(name), "dr.crash%d", d);
        const char *args[] = {"user",
                              "add",
                              name,
                              "--role",
                              "doctor",
                              "--clinics",
                              "general,paediatrics",
                              "--password-file",
                              pw_path,
                              "--data-dir",
                              data_dir,
                              NULL};
        char *err = NULL;
        int rc = ts_run_to_exit(args, &err, 20000);
        if (rc != 0)
            print_error("tabib user add: %d: %s\n", rc, err ? err : "");
        free(err);
        assert_int_equal(rc, 0);
        doctor[d] = ws_open_at(port);
        ws_sendf(doctor[d],
                 "{\"type\":\"login\",\"id\":\"d1\",\"username\":\"%s\",\"password\":\"%s\"}", name,
                 CRASH_PASSWORD);
        free(ws_wait(doctor[d], "signed_in"));
        ws_sendf(doctor[d], "{\"type\":\"duty\",\"id\":\"d2\",\"clinic\":\"%s\",\"on\":true}",
                 d < CRASH_DOCTORS / 2 ? "general" : "paediatrics");
        free(ws_wait(doctor[d], "duty"));
    }

    /* One consultation that ends before the kill: it must not be closed again. */
    char ended_id[64], got[64];
    struct tc_ws *ended = crash_join(port, "general", "Ended", ended_id, sizeof(ended_id));
    ws_sendf(doctor[0], "{\"type\":\"call_next\",\"id\":\"d3\",\"clinic\":\"general\"}");
    ws_wait_str(doctor[0], "called", "consultation", got, sizeof(got));
    assert_string_equal(got, ended_id);
    free(ws_wait(ended, "called"));
    ws_sendf(ended, "{\"type\":\"accept\",\"id\":2}");
    free(ws_wait(ended, "consultation_started"));
    free(ws_wait(doctor[0], "consultation_started"));
    ws_sendf(doctor[0], "{\"type\":\"end\",\"id\":\"d4\",\"consultation\":\"%s\"}", ended_id);
    free(ws_wait(doctor[0], "ending"));
    free(ws_wait(ended, "ended"));
    tc_ws_close(ended);

    /* Fifty patients, alternately in the two clinics' queues. */
    struct tc_ws *patient[CRASH_PATIENTS];
    char id[CRASH_OPEN][64];
    for (int p = 0; p < CRASH_PATIENTS; p++) {
        char name[32];
        snprintf(name, sizeof(name), "Patient %d", p);
        patient[p] =
            crash_join(port, p % 2 ? "paediatrics" : "general", name, id[p], sizeof(id[p]));
    }
    /* One more, transferred while waiting: the old consultation ends, the new one waits. */
    char moved_from[64];
    struct tc_ws *moved = crash_join(port, "paediatrics", "Moved", moved_from, sizeof(moved_from));
    ws_sendf(doctor[CRASH_DOCTORS - 1],
             "{\"type\":\"transfer\",\"id\":\"d5\",\"consultation\":\"%s\",\"clinic\":\"general\"}",
             moved_from);
    ws_wait_str(doctor[CRASH_DOCTORS - 1], "transferred", "new_consultation", id[CRASH_PATIENTS],
                sizeof(id[CRASH_PATIENTS]));
    ws_wait_str(moved, "transferred", "consultation", got, sizeof(got));
    assert_string_equal(got, id[CRASH_PATIENTS]);

    /* Each doctor calls the head of their queue (one of the fifty) and the patient accepts. */
    for (int d = 0; d < CRASH_DOCTORS; d++) {
        ws_sendf(doctor[d], "{\"type\":\"call_next\",\"id\":\"d6\",\"clinic\":\"%s\"}",
                 d < CRASH_DOCTORS / 2 ? "general" : "paediatrics");
        ws_wait_str(doctor[d], "called", "consultation", got, sizeof(got));
        int p = 0;
        while (p < CRASH_PATIENTS && strcmp(id[p], got) != 0)
            p++;
        assert_true(p < CRASH_PATIENTS);
        free(ws_wait(patient[p], "called"));
        ws_sendf(patient[p], "{\"type\":\"accept\",\"id\":2}");
        free(ws_wait(patient[p], "consultation_started"));
        free(ws_wait(doctor[d], "consultation_started"));
    }

    /*
     * The 51 open consultations as an SQL list. Wait until every one's
     * queue_joined and all eleven consultation_started are on disk (the
     * events before them too, the two endings among them), so that which
     * consultations the restart must close does not depend on timing.
     */
    char open_list[CRASH_OPEN * 70] = "";
    size_t used = 0;
    for (int i = 0; i < CRASH_OPEN; i++)
        used += (size_t)snprintf(open_list + used, sizeof(open_list) - used, "%s'%s'", i ? "," : "",
                                 id[i]);
    assert_true(used < sizeof(open_list));
    for (int64_t deadline = base_now_ms() + CRASH_WS_MS;;) {
        long long joined = sql_int(dir, db,
                                   "SELECT count(DISTINCT consultation) FROM events WHERE type = "
                                   "'queue_joined' AND consultation IN (%s)",
                                   open_list);
        long long begun =
            sql_int(dir, db, "SELECT count(*) FROM events WHERE type = 'consultation_started'");
        if (joined == CRASH_OPEN && begun == CRASH_DOCTORS + 1)
            break;
        assert_true(base_now_ms() < deadline);
        struct timespec ts = {.tv_nsec = 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    int64_t setup_ms = base_now_ms() - started_ms;

    /*
     * Audited requests flowing, /metrics read while they do, then the kill at
     * once. Nothing fails the test while the noise thread runs (it uses
     * `noise` on this stack): the checks come after it is joined.
     */
    struct noise noise = {0};
    for (int c = 0; c < NOISE_CONNS; c++)
        noise.ws[c] = ws_open_at(port);
    assert_int_equal(pthread_create(&noise.thread, NULL, noise_main, &noise), 0);
    int64_t deadline = base_now_ms() + 20000;
    while (atomic_load(&noise.refused) < NOISE_BEFORE_KILL && base_now_ms() < deadline) {
        struct timespec ts = {.tv_nsec = 1000000L};
        nanosleep(&ts, NULL);
    }
    unsigned long long noise_before = atomic_load(&noise.refused);
    struct tc_response metrics;
    int64_t asked_us = now_us();
    int rc = tc_https_get(port, "/metrics", &metrics);
    int64_t read_us = now_us();
    int killed = ts_server_kill(first, SIGKILL);
    int64_t killed_us = now_us();
    int died = ts_server_wait(first, 5000);
    atomic_store(&noise.stop, true);
    assert_int_equal(pthread_join(noise.thread, NULL), 0);
    assert_true(noise_before >= NOISE_BEFORE_KILL);
    assert_int_equal(killed, 0);
    assert_int_equal(died, 128 + SIGKILL);
    assert_int_equal(rc, 0);
    assert_int_equal(metrics.status, 200);
    long long n = metric_in(metrics.body, "tabib_audit_committed_event_id");
    long long committed_total = metric_in(metrics.body, "tabib_audit_events_committed_total");
    long long dropped = metric_in(metrics.body, "tabib_audit_events_dropped_total");
    tc_response_free(&metrics);
    /* Every answer read, even after the kill, was sent, so its event appended, before it. */
    unsigned long long noise_appended = atomic_load(&noise.refused);
    assert_int_equal(atomic_load(&noise.other), 0);
    for (int c = 0; c < NOISE_CONNS; c++)
        tc_ws_close(noise.ws[c]);
    for (int p = 0; p < CRASH_PATIENTS; p++)
        tc_ws_close(patient[p]);
    for (int d = 0; d < CRASH_DOCTORS; d++)
        tc_ws_close(doctor[d]);
    tc_ws_close(moved);
    assert_true(n > 0);

    /*
     * What the kill left, before any restart: a copy of the database and its
     * WAL, opened by the sqlite3 tool (which replays the WAL, as a restart
     * would), so the data directory stays exactly as the kill left it.
     */
    char after_kill[600], copy[700];
    snprintf(after_kill, sizeof(after_kill), "%s/after-kill", dir);
    snprintf(copy, sizeof(copy), "%s/audit.db", after_kill);
    assert_int_equal(shell("mkdir '%s' && cp '%s' '%s/' && if [ -e '%s-wal' ]; then cp '%s-wal' "
                           "'%s/'; fi",
                           after_kill, db, after_kill, db, db, after_kill),
                     0);
    long long kept = sql_int(dir, copy, "SELECT count(*) FROM events WHERE id <= %lld", n);
    long long rows = sql_int(dir, copy, "SELECT count(*) FROM events");
    long long max_id = sql_int(dir, copy, "SELECT max(id) FROM events");
    long long noise_kept =
        sql_int(dir, copy, "SELECT count(*) FROM events WHERE type = 'resume_refused'");
    long long open_at_kill = sql_int(dir, copy,
                                     "SELECT count(*) FROM (SELECT consultation FROM events "
                                     "WHERE consultation IS NOT NULL GROUP BY consultation "
                                     "HAVING sum(type = 'queue_joined') > 0 AND "
                                     "sum(type = 'consultation_ended') = 0)");
    long long ours_open = sql_int(dir, copy,
                                  "SELECT count(*) FROM (SELECT consultation FROM events WHERE "
                                  "consultation IN (%s) GROUP BY consultation HAVING "
                                  "sum(type = 'queue_joined') = 1 AND "
                                  "sum(type = 'consultation_ended') = 0)",
                                  open_list);
    long long verified_after_kill = -1;
    int verify_after_kill = verify_count(after_kill, &verified_after_kill);
    long long lost = (long long)noise_appended - noise_kept;

    print_message("set-up %lld ms (10 doctors, 51 patients); /metrics answered in %lld us, "
                  "SIGKILL %lld us after the answer\n",
                  (long long)setup_ms, (long long)(read_us - asked_us),
                  (long long)(killed_us - read_us));
    print_message("reported committed: id N = %lld (%lld committed since start, %lld dropped); "
                  "on disk after the kill: %lld rows, max id %lld, %lld of ids 1..N, %lld "
                  "committed after the metric was read\n",
                  n, committed_total, dropped, rows, max_id, kept, max_id - n);
    print_message("noise: %llu resume_refused answered (%llu before /metrics was read), %lld "
                  "on disk: %lld appended but never committed (at least)\n",
                  noise_appended, noise_before, noise_kept, lost > 0 ? lost : 0);
    print_message("after the kill: chain verify %d (%lld events); %lld consultations open, "
                  "%lld of our 51\n",
                  verify_after_kill, verified_after_kill, open_at_kill, ours_open);

    assert_int_equal(kept, n);      /* every event reported committed is there */
    assert_true(max_id >= n);       /* and ids have no gap below the newest */
    assert_int_equal(max_id, rows); /* ids 1, 2, 3, ... with no hole anywhere */
    assert_int_equal(verify_after_kill, 0);
    assert_int_equal(verified_after_kill, rows);
    assert_int_equal(ours_open, CRASH_OPEN);
    assert_int_equal(open_at_kill, CRASH_OPEN);

    /* The restart, on the same data directory, then a clean stop. */
    const char *second_args[] = {"--data-dir", data_dir, NULL};
    struct ts_server *second = ts_server_start(second_args);
    assert_non_null(second);
    struct tc_response again;
    assert_int_equal(tc_https_get(ts_server_port(second), "/metrics", &again), 0);
    long long restart_id = metric_in(again.body, "tabib_audit_committed_event_id");
    tc_response_free(&again);
    int status = ts_server_stop(second, NULL);
    if (status != 0) {
        char *err = ts_server_stderr(second);
        print_error("the restarted server exited with %d:\n%s\n", status, err ? err : "");
        free(err);
    }
    ts_server_free(second);
    assert_int_equal(status, 0);

    long long events = -1;
    int verified = verify_count(data_dir, &events);
    long long restarted =
        sql_int(dir, db,
                "SELECT count(*) FROM events WHERE type = 'consultation_ended' AND "
                "json_extract(detail, '$.reason') = 'server_restart'");
    long long ours_restarted =
        sql_int(dir, db,
                "SELECT count(DISTINCT e.consultation) FROM events e WHERE e.type = "
                "'consultation_ended' AND json_extract(e.detail, '$.reason') = 'server_restart' "
                "AND e.actor_role = 'system' AND e.consultation IN (%s) AND e.clinic = (SELECT "
                "j.clinic FROM events j WHERE j.type = 'queue_joined' AND j.consultation = "
                "e.consultation)",
                open_list);
    long long ours_ended = sql_int(dir, db,
                                   "SELECT count(*) FROM events WHERE type = "
                                   "'consultation_ended' AND consultation IN (%s)",
                                   open_list);
    long long twice = sql_int(dir, db,
                              "SELECT count(*) FROM (SELECT consultation FROM events WHERE type "
                              "= 'consultation_ended' GROUP BY consultation HAVING count(*) > 1)");
    long long still_open = sql_int(dir, db,
                                   "SELECT count(*) FROM (SELECT consultation FROM events WHERE "
                                   "consultation IS NOT NULL GROUP BY consultation HAVING "
                                   "sum(type = 'queue_joined') > 0 AND "
                                   "sum(type = 'consultation_ended') = 0)");
    print_message("after the restart: verify %d, %lld events (newest id %lld while running); "
                  "%lld closed with server_restart, %lld of our 51 once each; %lld ended "
                  "twice, %lld still open\n",
                  verified, events, restart_id, restarted, ours_restarted, twice, still_open);

    assert_int_equal(verified, 0);
    assert_true(events >= n);
    assert_int_equal(sql_int(dir, db, "SELECT count(*) FROM events WHERE id <= %lld", n), n);
    assert_int_equal(restarted, open_at_kill);
    assert_int_equal(ours_restarted, CRASH_OPEN);
    assert_int_equal(ours_ended, CRASH_OPEN);
    assert_int_equal(twice, 0);
    assert_int_equal(still_open, 0);
    /* What ended before the kill kept its one ending. */
    assert_int_equal(sql_int(dir, db,
                             "SELECT count(*) FROM events WHERE type = 'consultation_ended' AND "
                             "consultation = '%s' AND json_extract(detail, '$.reason') = "
                             "'completed'",
                             ended_id),
                     1);
    assert_int_equal(sql_int(dir, db,
                             "SELECT count(*) FROM events WHERE type = 'consultation_ended' AND "
                             "consultation = '%s' AND json_extract(detail, '$.reason') = "
                             "'transferred'",
                             moved_from),
                     1);
    ts_server_free(first);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tampering_is_caught),
        cmocka_unit_test(test_crash_recovery_closes_open_consultations),
        cmocka_unit_test(test_sigkill_with_50_consultations_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
