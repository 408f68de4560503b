/*
 * test_signaling.c - the tabib.v1 message handler: ping/pong and an error
 * reply (never a crash) for every kind of bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "signaling.h"

/* Runs one message and returns the parsed reply (caller decrefs). */
static json_t *exchange(const char *msg, size_t len)
{
    char *text = sig_handle_message(msg, len);
    assert_non_null(text);
    json_error_t jerr;
    json_t *reply = json_loads(text, 0, &jerr);
    if (!reply)
        fail_msg("reply is not JSON: %s", text);
    free(text);
    return reply;
}

static void expect_error(const char *msg, const char *code, const char *message_part)
{
    json_t *r = exchange(msg, strlen(msg));
    assert_string_equal(json_string_value(json_object_get(r, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(r, "code")), code);
    const char *m = json_string_value(json_object_get(r, "message"));
    assert_non_null(m);
    if (message_part && !strstr(m, message_part))
        fail_msg("message \"%s\" lacks \"%s\"", m, message_part);
    assert_non_null(json_object_get(r, "re"));
    json_decref(r);
}

static void ping_gets_pong_with_the_same_id(void **state)
{
    (void)state;
    json_t *r = exchange("{\"type\":\"ping\",\"id\":\"abc\"}", 26);
    assert_string_equal(json_string_value(json_object_get(r, "type")), "pong");
    assert_string_equal(json_string_value(json_object_get(r, "re")), "abc");
    json_decref(r);
    r = exchange("{\"id\":7,\"type\":\"ping\"}", 22);
    assert_int_equal(json_integer_value(json_object_get(r, "re")), 7);
    json_decref(r);
}

static void bad_json_names_line_and_column(void **state)
{
    (void)state;
    expect_error("not json", "bad_json", "line 1, column");
    expect_error("{\"type\":\"ping\",\n \"id\": }", "bad_json", "line 2");
    expect_error("", "bad_json", NULL);
    expect_error("{\"id\":1,\"id\":2,\"type\":\"ping\"}", "bad_json", "duplicate");
    /* Input that is not NUL-terminated is read only up to its length. */
    char buf[] = {'{', '}', 'X'};
    char *text = sig_handle_message(buf, 2);
    assert_non_null(strstr(text, "bad_request"));
    free(text);
}

static void missing_or_wrong_fields(void **state)
{
    (void)state;
    expect_error("[1,2]", "bad_request", "JSON object");
    expect_error("{\"type\":\"ping\"}", "bad_request", "\"id\"");
    expect_error("{\"type\":\"ping\",\"id\":1.5}", "bad_request", "\"id\"");
    expect_error("{\"type\":7,\"id\":\"x\"}", "bad_request", "\"type\"");
    expect_error("{\"type\":\"launch\",\"id\":\"x\"}", "unknown_type", "launch");
    const char *launch = "{\"type\":\"launch\",\"id\":\"x\"}";
    json_t *r = exchange(launch, strlen(launch));
    assert_string_equal(json_string_value(json_object_get(r, "re")), "x");
    json_decref(r);
    r = exchange("nope", 4);
    assert_true(json_is_null(json_object_get(r, "re")));
    json_decref(r);
}

static void hostile_bytes_never_crash(void **state)
{
    (void)state;
    /* Control bytes, invalid UTF-8, deep nesting and an oversize message all get replies. */
    const char invalid_utf8[] = "{\"type\":\"\xff\xfe\",\"id\":\"1\"}";
    char *t = sig_handle_message(invalid_utf8, sizeof(invalid_utf8) - 1);
    assert_non_null(t);
    free(t);
    size_t depth = 5000;
    char *deep = malloc(depth * 2);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    t = sig_handle_message(deep, depth * 2);
    assert_non_null(strstr(t, "\"type\":\"error\""));
    free(t);
    free(deep);
    size_t big = SIG_MESSAGE_MAX + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    t = sig_handle_message(huge, big);
    assert_non_null(strstr(t, "the limit is 65536"));
    free(t);
    free(huge);
    char longid[200] = "{\"type\":\"ping\",\"id\":\"";
    size_t n = strlen(longid);
    memset(longid + n, 'a', 100);
    strcpy(longid + n + 100, "\"}");
    expect_error(longid, "bad_request", "64 bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ping_gets_pong_with_the_same_id),
        cmocka_unit_test(bad_json_names_line_and_column),
        cmocka_unit_test(missing_or_wrong_fields),
        cmocka_unit_test(hostile_bytes_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
