/*
 * test_tls_cert.c - the HTTPS certificate: generated once with the right key
 * type, names and file modes, reused after, and an operator's pair used as is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "server.h"

struct fixture {
    char dir[64];
    struct srv_config cfg;
    struct base_logger *log;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tabib-test-tls-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    srv_config_defaults(&f->cfg);
    snprintf(f->cfg.certs_dir, sizeof(f->cfg.certs_dir), "%s/certs", f->dir);
    char err[128];
    f->log = base_logger_new(NULL, BASE_LOG_TEXT, BASE_LOG_ERROR, err, sizeof(err));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    base_logger_free(f->log);
    free(f);
    return 0;
}

static X509 *load_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static void generates_p256_with_local_names(void **state)
{
    struct fixture *f = *state;
    char cert[PATH_MAX], key[PATH_MAX], err[512];
    assert_int_equal(srv_tls_prepare(&f->cfg, f->log, cert, key, err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(key, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    X509 *x = load_cert(cert);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    char group[32];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    if (host[0])
        assert_int_equal(X509_check_host(x, host, 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "example.org", 0, 0, NULL), 0);
    assert_int_equal(X509_verify(x, pub), 1); /* self-signed */

    /* A second start reuses the same pair rather than making a new one. */
    ASN1_INTEGER *serial = ASN1_INTEGER_dup(X509_get0_serialNumber(x));
    X509_free(x);
    assert_int_equal(srv_tls_prepare(&f->cfg, f->log, cert, key, err, sizeof(err)), 0);
    x = load_cert(cert);
    assert_int_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(x)), 0);
    X509_free(x);

    /* A damaged certificate is replaced. */
    FILE *fp = fopen(cert, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    assert_int_equal(srv_tls_prepare(&f->cfg, f->log, cert, key, err, sizeof(err)), 0);
    x = load_cert(cert);
    assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(x)), 0);
    X509_free(x);
    ASN1_INTEGER_free(serial);
}

static void configured_pair_is_used_as_is(void **state)
{
    struct fixture *f = *state;
    char cert[PATH_MAX], key[PATH_MAX], err[512];
    /* Make a pair in one directory, then configure it explicitly. */
    assert_int_equal(srv_tls_prepare(&f->cfg, f->log, cert, key, err, sizeof(err)), 0);
    struct srv_config cfg = f->cfg;
    snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s", cert);
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", key);
    snprintf(cfg.certs_dir, sizeof(cfg.certs_dir), "%s/unused", f->dir);
    char cert2[PATH_MAX], key2[PATH_MAX];
    assert_int_equal(srv_tls_prepare(&cfg, f->log, cert2, key2, err, sizeof(err)), 0);
    assert_string_equal(cert2, cert);
    assert_string_equal(key2, key);
    struct stat sb;
    assert_int_not_equal(stat(cfg.certs_dir, &sb), 0); /* nothing generated */

    /* A key that does not belong to the certificate is refused. */
    struct srv_config other = f->cfg;
    snprintf(other.certs_dir, sizeof(other.certs_dir), "%s/other", f->dir);
    char cert3[PATH_MAX], key3[PATH_MAX];
    assert_int_equal(srv_tls_prepare(&other, f->log, cert3, key3, err, sizeof(err)), 0);
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", key3);
    assert_int_equal(srv_tls_prepare(&cfg, f->log, cert2, key2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "tls_cert:"));
    snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s/missing.pem", f->dir);
    assert_int_equal(srv_tls_prepare(&cfg, f->log, cert2, key2, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(generates_p256_with_local_names, setup, teardown),
        cmocka_unit_test_setup_teardown(configured_pair_is_used_as_is, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
