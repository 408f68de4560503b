/*
 * tls_cert.c - the HTTPS certificate: use the operator's PEM files as they
 * are, or make a self-signed ECDSA P-256 one on first start.
 *
 * Runs on the main thread before the HTTPS listener starts. The generated key
 * is written to a temporary file created with mode 0600 and renamed into
 * place, so a crash never leaves a half-written or world-readable key.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CERT_FILE          "tabib-selfsigned.crt"
#define KEY_FILE           "tabib-selfsigned.key"
#define CERT_VALID_DAYS    365
#define CERT_MIN_LEFT_SECS (24 * 3600)

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char ssl_reason[256] = "";
    if (e)
        ERR_error_string_n(e, ssl_reason, sizeof(ssl_reason));
    snprintf(err, errlen, "%s \"%s\"%s%s", what, path, e || errno ? ": " : "",
             e ? ssl_reason : (errno ? strerror(errno) : ""));
    ERR_clear_error();
    return -1;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* True when the pair on disk is usable: both parse, they match, and the cert is not about to
 * expire. */
static bool pair_is_usable(const char *cert_path, const char *key_path, bool check_expiry)
{
    X509 *x = read_cert(cert_path);
    EVP_PKEY *k = x ? read_key(key_path) : NULL;
    bool ok = x && k && X509_check_private_key(x, k) == 1;
    if (ok && check_expiry) {
        time_t soon = time(NULL) + CERT_MIN_LEFT_SECS;
        ok = X509_cmp_time(X509_get0_notAfter(x), &soon) > 0;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Builds the certificate for `key`: CN and SANs name this machine. Returns new X509 or NULL. */
static X509 *make_cert(EVP_PKEY *key)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';

    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    if (!x || !serial)
        goto fail;
    /* A random 127-bit serial: browsers reject two certificates with one issuer and serial. */
    if (!BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
        goto fail;
    if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)CERT_VALID_DAYS * 24 * 3600) ||
        !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Tabib", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name))
        goto fail;
    char san[512];
    if (strcmp(host, "localhost") == 0)
        snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1");
    else
        snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:%s", host);
    if (add_ext(x, NID_subject_alt_name, san) || add_ext(x, NID_basic_constraints, "CA:FALSE") ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") ||
        add_ext(x, NID_ext_key_usage, "serverAuth") ||
        add_ext(x, NID_subject_key_identifier, "hash"))
        goto fail;
    if (!X509_sign(x, key, EVP_sha256()))
        goto fail;
    BN_free(serial);
    return x;
fail:
    BN_free(serial);
    X509_free(x);
    return NULL;
}

/* Writes `cert`, or else `key`, as PEM to a temporary file of `mode`, then renames it to `path`. */
static int write_pem_file(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    int ok =
        cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int generate_pair(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key)
        return fail(err, errlen, "tls: cannot generate a P-256 key for", cert_path);
    X509 *cert = make_cert(key);
    int rc = 0;
    if (!cert)
        rc = fail(err, errlen, "tls: cannot build a certificate for", cert_path);
    else if (write_pem_file(key_path, 0600, NULL, key))
        rc = fail(err, errlen, "tls: cannot write the key", key_path);
    else if (write_pem_file(cert_path, 0644, cert, NULL))
        rc = fail(err, errlen, "tls: cannot write the certificate", cert_path);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int srv_tls_prepare(const struct srv_config *cfg, struct base_logger *log, char *cert_out,
                    char *key_out, char *err, size_t errlen)
{
    if (cfg->tls_cert[0]) {
        if (!pair_is_usable(cfg->tls_cert, cfg->tls_key, false)) {
            snprintf(err, errlen,
                     "tls_cert: \"%s\" and tls_key \"%s\" must be readable PEM files of one "
                     "certificate and its private key",
                     cfg->tls_cert, cfg->tls_key);
            return -1;
        }
        snprintf(cert_out, PATH_MAX, "%s", cfg->tls_cert);
        snprintf(key_out, PATH_MAX, "%s", cfg->tls_key);
        log_info(log, "tls", "using the configured certificate", LOG_STR("cert", cert_out));
        return 0;
    }
    if (mkdir(cfg->certs_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "certs_dir: cannot create \"%s\": %s", cfg->certs_dir,
                 strerror(errno));
        return -1;
    }
    if (snprintf(cert_out, PATH_MAX, "%s/%s", cfg->certs_dir, CERT_FILE) >= PATH_MAX ||
        snprintf(key_out, PATH_MAX, "%s/%s", cfg->certs_dir, KEY_FILE) >= PATH_MAX) {
        snprintf(err, errlen, "certs_dir: path is too long");
        return -1;
    }
    if (pair_is_usable(cert_out, key_out, true)) {
        log_info(log, "tls", "using the generated certificate", LOG_STR("cert", cert_out));
        return 0;
    }
    errno = 0;
    if (generate_pair(cert_out, key_out, err, errlen))
        return -1;
    log_info(log, "tls", "generated a self-signed certificate", LOG_STR("cert", cert_out),
             LOG_STR("key", key_out), LOG_INT("valid_days", CERT_VALID_DAYS));
    return 0;
}
