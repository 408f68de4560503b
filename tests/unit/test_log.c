/*
 * test_log.c - structured log lines: text and JSON shapes, quoting, levels,
 * truncation, and reopening a moved log file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"

struct log_file {
    char dir[64];
    char path[96];
};

static void make_log_file(struct log_file *lf)
{
    snprintf(lf->dir, sizeof(lf->dir), "/tmp/tabib-test-log-XXXXXX");
    assert_non_null(mkdtemp(lf->dir));
    snprintf(lf->path, sizeof(lf->path), "%s/tabib.log", lf->dir);
}

/* Reads the whole file into a new string. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void text_lines(void **state)
{
    (void)state;
    struct log_file lf;
    make_log_file(&lf);
    char err[128];
    struct base_logger *log = base_logger_new(lf.path, BASE_LOG_TEXT, BASE_LOG_INFO, err, 128);
    assert_non_null(log);
    log_info(log, "http", "listening", LOG_STR("host", "127.0.0.1"), LOG_INT("port", 8443));
    log_warn(log, "audit", "slow commit", LOG_STR("note", "took a while"), LOG_STR("empty", ""));
    log_debug(log, "media", "not written at info");
    log_error(log, "server", "no fields");
    base_logger_free(log);
    char *text = slurp(lf.path);
    assert_non_null(text);
    assert_non_null(strstr(text, "Z INFO  http: listening host=127.0.0.1 port=8443\n"));
    assert_non_null(strstr(text, "Z WARN  audit: slow commit note=\"took a while\" empty=\"\"\n"));
    assert_non_null(strstr(text, "Z ERROR server: no fields\n"));
    assert_null(strstr(text, "not written"));
    /* Every line starts with an ISO 8601 UTC timestamp with milliseconds. */
    assert_int_equal(text[4], '-');
    assert_int_equal(text[10], 'T');
    assert_int_equal(text[19], '.');
    assert_int_equal(text[23], 'Z');
    free(text);
    unlink(lf.path);
    rmdir(lf.dir);
}

static void json_lines(void **state)
{
    (void)state;
    struct log_file lf;
    make_log_file(&lf);
    char err[128];
    struct base_logger *log = base_logger_new(lf.path, BASE_LOG_JSON, BASE_LOG_DEBUG, err, 128);
    assert_non_null(log);
    log_info(log, "signaling", "patient joined", LOG_STR("name", "محمد \"Mo\"\n"),
             LOG_INT("position", 3));
    base_logger_free(log);
    char *text = slurp(lf.path);
    assert_non_null(text);
    assert_non_null(strstr(text, "\",\"level\":\"info\",\"module\":\"signaling\",\"msg\":\"patient "
                                 "joined\",\"name\":\"محمد \\\"Mo\\\"\\n\",\"position\":3}\n"));
    assert_int_equal(strncmp(text, "{\"ts\":\"", 7), 0);
    free(text);
    unlink(lf.path);
    rmdir(lf.dir);
}

static void long_json_lines_stay_valid(void **state)
{
    (void)state;
    struct log_file lf;
    make_log_file(&lf);
    char err[128];
    struct base_logger *log = base_logger_new(lf.path, BASE_LOG_JSON, BASE_LOG_DEBUG, err, 128);
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info(log, "t", "big", LOG_STR("a", big), LOG_STR("b", big), LOG_STR("c", "tail"));
    base_logger_free(log);
    char *text = slurp(lf.path);
    size_t n = strlen(text);
    assert_true(n <= 4096);
    assert_non_null(strstr(text, ",\"truncated\":true}\n"));
    assert_null(strstr(text, "\"b\":")); /* the field that did not fit is dropped whole */
    free(text);
    unlink(lf.path);
    rmdir(lf.dir);
}

static void reopen_follows_a_moved_file(void **state)
{
    (void)state;
    struct log_file lf;
    make_log_file(&lf);
    char err[128], moved[128];
    struct base_logger *log = base_logger_new(lf.path, BASE_LOG_TEXT, BASE_LOG_INFO, err, 128);
    log_info(log, "t", "before");
    snprintf(moved, sizeof(moved), "%s.1", lf.path);
    assert_int_equal(rename(lf.path, moved), 0);
    log_info(log, "t", "still old");
    assert_int_equal(base_logger_reopen(log), 0);
    log_info(log, "t", "after");
    base_logger_free(log);
    char *old = slurp(moved), *fresh = slurp(lf.path);
    assert_non_null(strstr(old, "before"));
    assert_non_null(strstr(old, "still old"));
    assert_null(strstr(old, "after"));
    assert_non_null(strstr(fresh, "after"));
    free(old);
    free(fresh);
    unlink(moved);
    unlink(lf.path);
    rmdir(lf.dir);
}

static void unopenable_file_is_reported(void **state)
{
    (void)state;
    char err[256];
    assert_null(
        base_logger_new("/nonexistent-dir/x.log", BASE_LOG_TEXT, BASE_LOG_INFO, err, sizeof(err)));
    assert_non_null(strstr(err, "log_file: cannot open \"/nonexistent-dir/x.log\""));
    enum base_log_level lvl;
    assert_int_equal(base_log_level_parse("warn", &lvl), 0);
    assert_int_equal(lvl, BASE_LOG_WARN);
    assert_int_equal(base_log_level_parse("WARN", &lvl), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_lines),
        cmocka_unit_test(json_lines),
        cmocka_unit_test(long_json_lines_stay_valid),
        cmocka_unit_test(reopen_follows_a_moved_file),
        cmocka_unit_test(unopenable_file_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
