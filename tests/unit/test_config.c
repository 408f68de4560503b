/*
 * test_config.c - configuration: defaults, the file format, precedence of
 * file < environment < flags, and the error message of every refusal.
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

#include "server.h"

static char *const no_env[] = {NULL};

/* Writes `text` to a new temporary file; returns its path (static buffer per call site). */
static void write_temp(char *path, size_t pathlen, const char *text)
{
    snprintf(path, pathlen, "/tmp/tabib-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Runs the whole command-line path; returns its result and leaves the message in err. */
static int parse_args(struct srv_config *cfg, char *const *env, char *err, int argc, ...)
{
    char *argv[32] = {"tabib"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    enum srv_cli_action action;
    err[0] = '\0';
    return srv_config_from_command_line(cfg, argc + 1, argv, 1, env, &action, err,
                                        SRV_CONFIG_ERR_MAX);
}

static void defaults_work_for_a_local_browser(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 0), 0);
    assert_string_equal(cfg.listen_host, "");
    assert_int_equal(cfg.listen_port, 8443);
    assert_int_equal(cfg.media_port, 40000);
    assert_true(cfg.media_workers >= 1); /* resolved to the CPU count */
    assert_string_equal(cfg.public_ip, "127.0.0.1");
    assert_int_equal(cfg.log_format, BASE_LOG_TEXT);
    assert_string_equal(cfg.tls_cert, "");
}

static void listen_port_out_of_range_names_key_and_range(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", ":70000"), -1);
    assert_string_equal(err, "listen: port 70000 is out of range 1-65535");
    assert_int_equal(parse_args(&cfg, no_env, err, 1, "--listen=:0"), -1);
    assert_string_equal(err, "listen: port 0 is out of range 1-65535");
}

static void listen_forms(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "127.0.0.1:9000"), 0);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 9000);
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "[::1]:9001"), 0);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 9001);
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "*:9002"), 0);
    assert_string_equal(cfg.listen_host, "");

    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "8443"), -1);
    assert_non_null(strstr(err, "listen: \"8443\" is not HOST:PORT"));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "example.org:443"), -1);
    assert_non_null(strstr(err, "listen: host \"example.org\" is not an IP address"));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", ":84x3"), -1);
    assert_non_null(strstr(err, "listen: port \"84x3\" is not a whole number"));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", "::1:8443"), -1);
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", ":-1"), -1);
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--listen", ":99999999999"), -1);
}

static void every_key_refuses_bad_values(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--media-port", "80"), -1);
    assert_string_equal(err, "media_port: port 80 is out of range 1024-65535");
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--media-workers", "0"), -1);
    assert_non_null(strstr(err, "media_workers: \"0\" is not \"auto\""));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--public-ip", "localhost"), -1);
    assert_string_equal(err, "public_ip: \"localhost\" is not an IPv4 or IPv6 address");
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--log-format", "xml"), -1);
    assert_string_equal(err, "log_format: \"xml\" is not one of: text, json");
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--log-level", "loud"), -1);
    assert_non_null(strstr(err, "log_level: \"loud\""));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--data-dir", ""), -1);
    assert_non_null(strstr(err, "data_dir: an empty path"));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--shutdown-grace-ms", "9000"), -1);
    assert_non_null(strstr(err, "shutdown_grace_ms: milliseconds 9000 is out of range 0-4000"));
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--tls-cert", "/x.pem"), -1);
    assert_non_null(strstr(err, "set tls_cert and tls_key together"));
}

static void media_ports_must_fit(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(
        parse_args(&cfg, no_env, err, 4, "--media-port", "65535", "--media-workers", "2"), -1);
    assert_non_null(strstr(err, "media_port: 65535 with 2 workers"));
    assert_int_equal(
        parse_args(&cfg, no_env, err, 4, "--media-port", "65534", "--media-workers", "2"), 0);
    assert_int_equal(cfg.media_workers, 2);
}

static void unknown_option_and_stray_argument(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 1, "--colour"), -1);
    assert_non_null(strstr(err, "unknown option --colour"));
    assert_int_equal(parse_args(&cfg, no_env, err, 1, "serve"), -1);
    assert_non_null(strstr(err, "unexpected argument \"serve\""));
    assert_int_equal(parse_args(&cfg, no_env, err, 1, "--listen"), -1);
    assert_non_null(strstr(err, "needs a value"));
}

static void help_and_version(void **state)
{
    (void)state;
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    char *argv[] = {"tabib", "--listen", ":70000", "--help"};
    enum srv_cli_action action;
    /* --help wins over a bad value so that a confused user can always get help. */
    assert_int_equal(
        srv_config_from_command_line(&cfg, 4, argv, 1, no_env, &action, err, sizeof(err)), 0);
    assert_int_equal(action, SRV_CLI_HELP);
    char *argv2[] = {"tabib", "--version"};
    assert_int_equal(
        srv_config_from_command_line(&cfg, 2, argv2, 1, no_env, &action, err, sizeof(err)), 0);
    assert_int_equal(action, SRV_CLI_VERSION);
}

static void file_format(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, sizeof(path),
               "# Tabib test configuration\n"
               "\n"
               "listen = 127.0.0.1:9443   \n"
               "  media_port=41000\n"
               "log_format = json\n"
               "data_dir = \"/tmp/with spaces \\\"quoted\\\"\"\n"
               "media_workers = auto\n");
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    srv_config_defaults(&cfg);
    assert_int_equal(srv_config_load_file(&cfg, path, err, sizeof(err)), 0);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 9443);
    assert_int_equal(cfg.media_port, 41000);
    assert_int_equal(cfg.log_format, BASE_LOG_JSON);
    assert_string_equal(cfg.data_dir, "/tmp/with spaces \"quoted\"");
    assert_string_equal(cfg.config_file, path);
    unlink(path);
}

static void file_unknown_key_is_named(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, sizeof(path), "listen = :8443\ncolour = blue\n");
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    srv_config_defaults(&cfg);
    assert_int_equal(srv_config_load_file(&cfg, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 2: unknown key \"colour\""));
    assert_non_null(strstr(err, "known keys: listen, media_port"));
    unlink(path);
}

static void file_errors(void **state)
{
    (void)state;
    struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"listen = :70000\n", "listen ("},
        {"just words\n", "line 1: expected key = value"},
        {"[clinic x]\n", "clinic x ("},
        {"[pharmacy]\n", "line 1: unknown section [pharmacy]"},
        {"[clinic Bad!]\nname_en = a\n", "clinic id \"Bad!\" must be"},
        {"[clinic a]\nname_en = A\nname_ar = ب\n[clinic a]\n", "defined twice"},
        {"[clinic a]\nname_en = A\nname_ar = ب\nhours = sometimes\n", "hours ("},
        {"[clinic a]\nname_en = A\nname_ar = ب\nqueue_limit = 0\n", "queue_limit ("},
        {"[clinic a]\nname_en = A\nname_ar = ب\ncolour = red\n", "unknown key \"colour\""},
        {"data_dir = \"open\n", "data_dir ("},
        {"listen = :1\nlisten = :2\n", "set twice, first on line 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[64];
        write_temp(path, sizeof(path), cases[i].text);
        struct srv_config cfg;
        char err[SRV_CONFIG_ERR_MAX];
        srv_config_defaults(&cfg);
        assert_int_equal(srv_config_load_file(&cfg, path, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].expect))
            fail_msg("case %zu: \"%s\" does not contain \"%s\"", i, err, cases[i].expect);
        unlink(path);
    }
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(srv_config_load_file(&cfg, "/nonexistent/tabib.conf", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read \"/nonexistent/tabib.conf\""));
}

static void clinics_come_from_the_file(void **state)
{
    (void)state;
    struct srv_config cfg;
    srv_config_defaults(&cfg);
    /* The embedded default: two demo clinics with English and Arabic names. */
    assert_int_equal(cfg.clinic_count, 2);
    assert_string_equal(cfg.clinics[0].id, "general");
    assert_string_equal(cfg.clinics[0].name_ar, "الطب العام");
    char path[64];
    write_temp(path, sizeof(path),
               "listen = :8443\n"
               "[clinic cardiology]\n"
               "name_en = Cardiology\n"
               "name_ar = أمراض القلب\n"
               "queue_limit = 30\n"
               "hours = Sun-Thu 07:00-15:00\n"
               "[clinic mental-health]\n"
               "name_en = Mental Health\n"
               "name_ar = الصحة النفسية\n");
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(srv_config_load_file(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.clinic_count, 2); /* the file's clinics replace the demo ones */
    assert_string_equal(cfg.clinics[0].id, "cardiology");
    assert_string_equal(cfg.clinics[0].name_ar, "أمراض القلب");
    assert_int_equal(cfg.clinics[0].queue_limit, 30);
    assert_true(cfg.clinics[0].has_hours);
    assert_int_equal(cfg.clinics[0].open_minute, 7 * 60);
    assert_string_equal(cfg.clinics[1].id, "mental-health");
    assert_false(cfg.clinics[1].has_hours);
    unlink(path);
}

static void precedence_file_then_env_then_flags(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, sizeof(path), "listen = :1111\nmedia_port = 2222\npublic_ip = 10.0.0.1\n");
    char config_env[96];
    snprintf(config_env, sizeof(config_env), "TABIB_CONFIG=%s", path);
    char *env[] = {config_env, "TABIB_MEDIA_PORT=3333", "TABIB_PUBLIC_IP=192.0.2.7",
                   "TABIB_UNRELATED_THING=x", NULL};
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, env, err, 2, "--public-ip", "::1"), 0);
    assert_int_equal(cfg.listen_port, 1111);   /* from the file */
    assert_int_equal(cfg.media_port, 3333);    /* the environment beats the file */
    assert_string_equal(cfg.public_ip, "::1"); /* the flag beats both */

    char *bad_env[] = {"TABIB_MEDIA_PORT=1", NULL};
    assert_int_equal(parse_args(&cfg, bad_env, err, 0), -1);
    assert_string_equal(err, "media_port (TABIB_MEDIA_PORT): port 1 is out of range 1024-65535");
    unlink(path);
}

static void config_flag_reads_the_file(void **state)
{
    (void)state;
    char path[64];
    write_temp(path, sizeof(path), "listen = :4444\n");
    struct srv_config cfg;
    char err[SRV_CONFIG_ERR_MAX];
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--config", path), 0);
    assert_int_equal(cfg.listen_port, 4444);
    char flag[96];
    snprintf(flag, sizeof(flag), "--config=%s", path);
    assert_int_equal(parse_args(&cfg, no_env, err, 3, flag, "--listen", ":5555"), 0);
    assert_int_equal(cfg.listen_port, 5555);
    unlink(path);
    assert_int_equal(parse_args(&cfg, no_env, err, 2, "--config", path), -1);
    assert_non_null(strstr(err, "config: cannot read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_work_for_a_local_browser),
        cmocka_unit_test(listen_port_out_of_range_names_key_and_range),
        cmocka_unit_test(listen_forms),
        cmocka_unit_test(every_key_refuses_bad_values),
        cmocka_unit_test(media_ports_must_fit),
        cmocka_unit_test(unknown_option_and_stray_argument),
        cmocka_unit_test(help_and_version),
        cmocka_unit_test(file_format),
        cmocka_unit_test(file_unknown_key_is_named),
        cmocka_unit_test(file_errors),
        cmocka_unit_test(clinics_come_from_the_file),
        cmocka_unit_test(precedence_file_then_env_then_flags),
        cmocka_unit_test(config_flag_reads_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
