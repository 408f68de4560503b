/*
 * test_audit_chain.c - the audit log's hash chain against real tampering:
 * the real server writes events, then the sqlite3 command-line tool edits,
 * deletes, reorders and inserts rows, and `tabib audit verify` must catch
 * each one and name the first bad event. An untouched log verifies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tampering_is_caught),
        cmocka_unit_test(test_crash_recovery_closes_open_consultations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
