/*
 * test_http_path.c - request paths to files under the web root: what is
 * served, and every traversal form that must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server.h"

static void expect_file(const char *request, const char *file)
{
    char out[256];
    if (srv_http_path_resolve(request, out, sizeof(out)) != 0)
        fail_msg("\"%s\" was refused, expected \"%s\"", request, file);
    assert_string_equal(out, file);
}

static void expect_refused(const char *request)
{
    char out[256];
    if (srv_http_path_resolve(request, out, sizeof(out)) == 0)
        fail_msg("\"%s\" was allowed as \"%s\"", request, out);
}

static void serves_pages_and_assets(void **state)
{
    (void)state;
    expect_file("/", "index.html");
    expect_file("/index.html", "index.html");
    expect_file("/doctor", "doctor.html");
    expect_file("/css/tabib.css", "css/tabib.css");
    expect_file("/js/status.js?v=2", "js/status.js");
    expect_file("/%63ss/tabib.css", "css/tabib.css"); /* an escaped letter is still the letter */
    expect_file("/c/general", "c/general.html");
}

static void refuses_traversal_in_every_form(void **state)
{
    (void)state;
    const char *attacks[] = {
        "/../etc/passwd",
        "/..",
        "/.",
        "/css/../../server/main.c",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/%2e%2e%2fetc%2fpasswd",
        "/%252e%252e/etc/passwd", /* double encoding: the decoded '%' is refused */
        "/..\\..\\windows",
        "/%5c..%5cetc",
        "/.git/config",
        "/css/.hidden",
        "/index.html%00.png",
        "/a//b",
        "/css/",
        "//etc/passwd",
        "/%",
        "/%zz",
        "/%2",
        "relative/path",
        "",
        "/line%0abreak",
        "/c:/windows",
    };
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
        expect_refused(attacks[i]);
    assert_int_equal(srv_http_path_resolve(NULL, (char[8]){0}, 8), -1);
}

static void refuses_what_does_not_fit(void **state)
{
    (void)state;
    char small[8];
    assert_int_equal(srv_http_path_resolve("/doctor", small, sizeof(small)), -1);
    char longpath[2048];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    char out[4096];
    assert_int_equal(srv_http_path_resolve(longpath, out, sizeof(out)), -1);
}

static void content_types(void **state)
{
    (void)state;
    assert_string_equal(srv_http_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(srv_http_content_type("css/tabib.css"), "text/css; charset=utf-8");
    assert_string_equal(srv_http_content_type("js/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(srv_http_content_type("icon.svg"), "image/svg+xml");
    assert_string_equal(srv_http_content_type("blob"), "application/octet-stream");
    assert_string_equal(srv_http_content_type("dir.d/blob"), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serves_pages_and_assets),
        cmocka_unit_test(refuses_traversal_in_every_form),
        cmocka_unit_test(refuses_what_does_not_fit),
        cmocka_unit_test(content_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
