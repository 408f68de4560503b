/*
 * test_dtls.c - the DTLS-SRTP transport against a real OpenSSL DTLS client
 * in the same process (its own P-256 certificate and SSL_CTX with use_srtp),
 * datagrams carried through memory: the full handshake, the SRTP profile
 * chosen, the keys both sides derive (and SRTP working with them), a wrong
 * fingerprint, a lost flight recovered by retransmission, garbage, no common
 * profile, and close_notify both ways.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dtls.h"
#include "srtp.h"

/* ------------------------------------------------------------------------- */
/* The client: what a browser does, with OpenSSL                              */
/* ------------------------------------------------------------------------- */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio; /* owned by ssl */
    BIO *wbio; /* owned by ssl */
    X509 *cert;
    struct media_dtls_fingerprint fingerprint; /* of cert, for the server */
    bool failed;
    int alert_received; /* -1 none */
};

static int client_verify(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1; /* the test checks the server's fingerprint itself */
}

static void client_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ)) {
        struct client *c = SSL_get_app_data(ssl);
        c->alert_received = ret & 0xFF;
    }
}

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 42));
    assert_true(X509_set_version(x, 2));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_true(X509_set_pubkey(x, key));
    X509_NAME *name = X509_get_subject_name(x);
    assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                           (const unsigned char *)"browser", -1, -1, 0));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static void client_init(struct client *c, const char *profiles)
{
    memset(c, 0, sizeof(*c));
    c->alert_received = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    c->cert = self_signed(key);

    c->ctx = SSL_CTX_new(DTLS_client_method());
    assert_non_null(c->ctx);
    assert_true(SSL_CTX_set_min_proto_version(c->ctx, DTLS1_2_VERSION));
    assert_int_equal(SSL_CTX_use_certificate(c->ctx, c->cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(c->ctx, key), 1);
    assert_int_equal(SSL_CTX_set_tlsext_use_srtp(c->ctx, profiles), 0);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, client_verify);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_QUERY_MTU);
    SSL_CTX_set_info_callback(c->ctx, client_info);
    EVP_PKEY_free(key);

    c->ssl = SSL_new(c->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    assert_non_null(c->ssl);
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    assert_true(DTLS_set_link_mtu(c->ssl, 1200));

    unsigned n = 0;
    c->fingerprint.hash = MEDIA_DTLS_SHA256;
    assert_true(X509_digest(c->cert, EVP_sha256(), c->fingerprint.bytes, &n));
    c->fingerprint.len = (uint8_t)n;
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    X509_free(c->cert);
    ERR_clear_error();
}

/* Runs the client's handshake or reads what it has been sent. */
static void client_step(struct client *c)
{
    if (c->failed)
        return;
    if (!SSL_is_init_finished(c->ssl)) {
        int r = SSL_do_handshake(c->ssl);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                c->failed = true;
        }
    } else {
        uint8_t buf[2048];
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_ZERO_RETURN)
                c->failed = true;
        }
    }
    ERR_clear_error();
}

/*
 * Sends what the client has written as one datagram (a browser packs a
 * flight's records together, which DTLS allows). Returns the server's
 * result, or 1 when the client had nothing to send.
 */
static int client_to_server(struct client *c, struct media_dtls *d)
{
    uint8_t buf[16384];
    int n = BIO_read(c->wbio, buf, sizeof(buf));
    if (n <= 0)
        return 1;
    return media_dtls_handle_datagram(d, buf, (size_t)n);
}

/* Delivers (or with `drop`, loses) every datagram the server has queued. Returns how many. */
static int server_to_client(struct media_dtls *d, struct client *c, bool drop)
{
    uint8_t buf[2048];
    int count = 0, n;
    while ((n = media_dtls_next_outgoing(d, buf, sizeof(buf))) > 0) {
        assert_true(n <= MEDIA_DTLS_DEFAULT_MTU);
        count++;
        if (drop)
            continue;
        assert_int_equal(BIO_write(c->rbio, buf, n), n);
        client_step(c);
    }
    assert_int_equal(n, 0);
    return count;
}

/* Pumps both ways until neither side moves. */
static void pump(struct client *c, struct media_dtls *d)
{
    client_step(c);
    for (int i = 0; i < 20; i++) {
        int r = client_to_server(c, d);
        int sent = server_to_client(d, c, false);
        if (r == 1 && sent == 0)
            break;
    }
}

/* The client's view of the exported keys, as a struct media_srtp_keys (client: local = client). */
static struct media_srtp_keys client_keys(struct client *c)
{
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    const SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(c->ssl);
    assert_non_null(p);
    k.profile = p->id == SRTP_AEAD_AES_128_GCM ? MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM
                                               : MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80;
    size_t kl, sl;
    assert_int_equal(media_srtp_profile_lengths(k.profile, &kl, &sl), 0);
    k.key_len = (uint8_t)kl;
    k.salt_len = (uint8_t)sl;
    uint8_t m[60];
    assert_int_equal(
        SSL_export_keying_material(c->ssl, m, 2 * (kl + sl), "EXTRACTOR-dtls_srtp", 19, NULL, 0, 0),
        1);
    memcpy(k.local_key, m, kl);
    memcpy(k.remote_key, m + kl, kl);
    memcpy(k.local_salt, m + 2 * kl, sl);
    memcpy(k.remote_salt, m + 2 * kl + sl, sl);
    return k;
}

static struct media_dtls_ctx *new_ctx(unsigned initial_timeout_ms)
{
    struct media_dtls_config cfg = {.initial_timeout_ms = initial_timeout_ms};
    struct media_dtls_ctx *ctx = media_dtls_ctx_new(&cfg);
    assert_non_null(ctx);
    return ctx;
}

static struct media_dtls *new_leg(struct media_dtls_ctx *ctx,
                                  const struct media_dtls_fingerprint *fp)
{
    int err = 0;
    struct media_dtls *d = media_dtls_new(ctx, fp, &err);
    assert_non_null(d);
    assert_int_equal(err, 0);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_NEW);
    assert_int_equal(media_dtls_timeout_ms(d), -1);
    return d;
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

static void test_context(void **state)
{
    (void)state;
    struct media_dtls_ctx *a = media_dtls_ctx_new(NULL);
    struct media_dtls_ctx *b = media_dtls_ctx_new(NULL);
    assert_non_null(a);
    assert_non_null(b);
    /* A fresh certificate each time. */
    assert_memory_not_equal(media_dtls_ctx_fingerprint_sha256(a),
                            media_dtls_ctx_fingerprint_sha256(b), 32);
    const char *text = media_dtls_ctx_fingerprint_text(a);
    assert_int_equal(strlen(text), 95);
    char expect[MEDIA_DTLS_FINGERPRINT_TEXT_SIZE];
    assert_int_equal(media_dtls_fingerprint_format(media_dtls_ctx_fingerprint_sha256(a), 32, expect,
                                                   sizeof(expect)),
                     95);
    assert_string_equal(text, expect);
    for (size_t i = 0; i < 95; i++) {
        if (i % 3 == 2)
            assert_int_equal(text[i], ':');
        else
            assert_true((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'A' && text[i] <= 'F'));
    }
    media_dtls_ctx_free(a);
    media_dtls_ctx_free(b);
    media_dtls_ctx_free(NULL);

    char small[8];
    const uint8_t bytes[3] = {0xAB, 0x01, 0xFF};
    assert_int_equal(media_dtls_fingerprint_format(bytes, 3, small, sizeof(small)),
                     MEDIA_DTLS_ERR_NO_SPACE);
    assert_int_equal(small[0], '\0');
    char fits[9];
    assert_int_equal(media_dtls_fingerprint_format(bytes, 3, fits, sizeof(fits)), 8);
    assert_string_equal(fits, "AB:01:FF");

    struct media_dtls_config bad = {.mtu = 100};
    assert_null(media_dtls_ctx_new(&bad));
}

static void test_bad_fingerprint_argument(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct media_dtls_fingerprint fp = {.hash = MEDIA_DTLS_SHA256, .len = 20};
    int err = 0;
    assert_null(media_dtls_new(ctx, &fp, &err));
    assert_int_equal(err, MEDIA_DTLS_ERR_INVALID);
    fp.hash = MEDIA_DTLS_SHA512;
    fp.len = 64;
    struct media_dtls *d = media_dtls_new(ctx, &fp, NULL);
    assert_non_null(d);
    media_dtls_free(d);
    media_dtls_free(NULL);
    media_dtls_ctx_free(ctx);
}

/* A full handshake with both profiles offered; checks the keys and then SRTP with them. */
static void test_handshake_gcm(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM"); /* GCM not first: ours wins */
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);

    pump(&c, d);
    assert_false(c.failed);
    assert_true(SSL_is_init_finished(c.ssl));
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    assert_int_equal(media_dtls_failure(d), 0);
    assert_int_equal(media_dtls_timeout_ms(d), -1);
    assert_int_equal(SSL_version(c.ssl), DTLS1_2_VERSION);

    /* The client sees the certificate whose fingerprint the context advertises. */
    X509 *server_cert = SSL_get0_peer_certificate(c.ssl);
    assert_non_null(server_cert);
    uint8_t md[32];
    unsigned n = 0;
    assert_true(X509_digest(server_cert, EVP_sha256(), md, &n));
    assert_memory_equal(md, media_dtls_ctx_fingerprint_sha256(ctx), 32);
    EVP_PKEY *server_key = X509_get0_pubkey(server_cert);
    assert_true(EVP_PKEY_is_a(server_key, "EC"));

    struct media_srtp_keys sk, ck = client_keys(&c);
    assert_int_equal(media_dtls_srtp_keys(d, &sk), 0);
    assert_int_equal(sk.profile, MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    assert_int_equal(sk.key_len, 16);
    assert_int_equal(sk.salt_len, 12);
    /* The client's send keys are the server's receive keys, and the other way round. */
    assert_memory_equal(ck.local_key, sk.remote_key, 16);
    assert_memory_equal(ck.local_salt, sk.remote_salt, 12);
    assert_memory_equal(ck.remote_key, sk.local_key, 16);
    assert_memory_equal(ck.remote_salt, sk.local_salt, 12);
    assert_memory_not_equal(sk.local_key, sk.remote_key, 16);

    /* And SRTP works with them, both ways. */
    struct media_srtp *server = media_srtp_new(&sk, NULL);
    struct media_srtp *browser = media_srtp_new(&ck, NULL);
    assert_non_null(server);
    assert_non_null(browser);
    uint8_t pkt[128] = {0x80, 96, 0, 1, 0, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF, 'h', 'i'};
    int len = media_srtp_protect_rtp(browser, pkt, 14, sizeof(pkt));
    assert_true(len > 14);
    assert_int_equal(media_srtp_unprotect_rtp(server, pkt, (size_t)len), 14);
    assert_int_equal(pkt[12], 'h');
    len = media_srtp_protect_rtp(server, pkt, 14, sizeof(pkt));
    assert_int_equal(media_srtp_unprotect_rtp(browser, pkt, (size_t)len), 14);
    media_srtp_free(server);
    media_srtp_free(browser);
    OPENSSL_cleanse(&sk, sizeof(sk));

    assert_int_equal(media_dtls_out_dropped(d), 0);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void test_handshake_cm_only(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AES128_CM_SHA1_80");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    struct media_srtp_keys sk, ck = client_keys(&c);
    assert_int_equal(media_dtls_srtp_keys(d, &sk), 0);
    assert_int_equal(sk.profile, MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
    assert_int_equal(sk.key_len, 16);
    assert_int_equal(sk.salt_len, 14);
    assert_memory_equal(ck.local_key, sk.remote_key, 16);
    assert_memory_equal(ck.local_salt, sk.remote_salt, 14);
    assert_memory_equal(ck.remote_key, sk.local_key, 16);
    assert_memory_equal(ck.remote_salt, sk.local_salt, 14);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

/* A client with no profile of ours: the handshake completes but the leg fails. */
static void test_no_common_profile(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AES128_CM_SHA1_32");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_FAILED);
    assert_int_equal(media_dtls_failure(d), MEDIA_DTLS_ERR_NO_SRTP);
    struct media_srtp_keys k;
    assert_int_equal(media_dtls_srtp_keys(d, &k), MEDIA_DTLS_ERR_NOT_ACTIVE);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void test_fingerprint_mismatch(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80");
    struct media_dtls_fingerprint wrong = c.fingerprint;
    wrong.bytes[31] ^= 0x01;
    struct media_dtls *d = new_leg(ctx, &wrong);

    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_FAILED);
    assert_int_equal(media_dtls_failure(d), MEDIA_DTLS_ERR_FINGERPRINT);
    struct media_srtp_keys k;
    assert_int_equal(media_dtls_srtp_keys(d, &k), MEDIA_DTLS_ERR_NOT_ACTIVE);
    /* The client was told: bad_certificate (42), or at least never finished. */
    assert_false(SSL_is_init_finished(c.ssl));
    assert_true(c.failed);
    assert_int_equal(c.alert_received, SSL_AD_BAD_CERTIFICATE);
    /* Anything more is dropped. */
    uint8_t junk[20] = {22, 0xFE, 0xFD};
    assert_int_equal(media_dtls_handle_datagram(d, junk, sizeof(junk)), MEDIA_DTLS_ERR_NOT_ACTIVE);

    /* A SHA-384 fingerprint of the right certificate is as good as SHA-256. */
    media_dtls_free(d);
    client_free(&c);
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls_fingerprint fp384 = {.hash = MEDIA_DTLS_SHA384, .len = 48};
    unsigned n = 0;
    assert_true(X509_digest(c.cert, EVP_sha384(), fp384.bytes, &n));
    d = new_leg(ctx, &fp384);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

/* A client without a certificate is refused: the fingerprint is the only authentication. */
static void test_no_client_certificate(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    SSL_free(c.ssl); /* a new SSL without the context's certificate */
    SSL_CTX_free(c.ctx);
    c.ctx = SSL_CTX_new(DTLS_client_method());
    assert_non_null(c.ctx);
    assert_int_equal(SSL_CTX_set_tlsext_use_srtp(c.ctx, "SRTP_AEAD_AES_128_GCM"), 0);
    SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, client_verify);
    SSL_CTX_set_options(c.ctx, SSL_OP_NO_QUERY_MTU);
    SSL_CTX_set_info_callback(c.ctx, client_info);
    c.ssl = SSL_new(c.ctx);
    c.rbio = BIO_new(BIO_s_mem());
    c.wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c.rbio, -1);
    BIO_set_mem_eof_return(c.wbio, -1);
    SSL_set_bio(c.ssl, c.rbio, c.wbio);
    SSL_set_app_data(c.ssl, &c);
    SSL_set_connect_state(c.ssl);
    assert_true(DTLS_set_link_mtu(c.ssl, 1200));

    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_FAILED);
    assert_int_equal(media_dtls_failure(d), MEDIA_DTLS_ERR_NO_CERT);
    assert_false(SSL_is_init_finished(c.ssl));
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The server's first flight is lost; its retransmission timer brings it back. */
static void test_lost_flight_retransmitted(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(20);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);

    client_step(&c); /* ClientHello */
    assert_int_equal(client_to_server(&c, d), 0);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_HANDSHAKING);
    int lost = server_to_client(d, &c, true);
    assert_true(lost >= 1); /* ServerHello ... ServerHelloDone, packed up to the MTU */

    int t = media_dtls_timeout_ms(d);
    assert_true(t >= 0 && t <= 20);
    /* Too early: nothing is resent. */
    if (t > 5) {
        assert_int_equal(media_dtls_handle_timeout(d), 0);
        assert_int_equal(server_to_client(d, &c, true), 0);
    }
    sleep_ms(t + 5);
    assert_int_equal(media_dtls_timeout_ms(d), 0);
    assert_int_equal(media_dtls_handle_timeout(d), 0);
    /* The whole flight again, delivered this time; the timer has doubled. */
    int t2 = media_dtls_timeout_ms(d);
    assert_true(t2 > 20 && t2 <= 40);
    assert_true(server_to_client(d, &c, false) >= lost); /* one message a datagram */
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    assert_true(SSL_is_init_finished(c.ssl));
    struct media_srtp_keys sk, ck = client_keys(&c);
    assert_int_equal(media_dtls_srtp_keys(d, &sk), 0);
    assert_memory_equal(ck.local_key, sk.remote_key, 16);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

/* The server's last flight (ChangeCipherSpec, Finished) is lost: the client's resend recovers. */
static void test_lost_final_flight(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    client_step(&c);
    for (int i = 0; i < 10 && media_dtls_state(d) != MEDIA_DTLS_CONNECTED; i++) {
        client_to_server(&c, d);
        bool connected = media_dtls_state(d) == MEDIA_DTLS_CONNECTED;
        server_to_client(d, &c, connected); /* lose the flight that finishes */
    }
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    assert_false(SSL_is_init_finished(c.ssl));
    /* The client times out (1 s by default in OpenSSL) and resends its flight. */
    sleep_ms(1100);
    assert_true(DTLSv1_handle_timeout(c.ssl) > 0);
    pump(&c, d);
    assert_true(SSL_is_init_finished(c.ssl));
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void test_garbage(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    uint8_t buf[1500];

    assert_int_equal(media_dtls_handle_datagram(d, buf, 0), MEDIA_DTLS_ERR_INVALID);
    /* Random datagrams with a DTLS-looking first byte: never a connection, never a crash. */
    for (int i = 0; i < 500 && media_dtls_state(d) != MEDIA_DTLS_FAILED; i++) {
        size_t len = 1 + (size_t)(i * 37 % 600);
        assert_int_equal(RAND_bytes(buf, (int)len), 1);
        buf[0] = (uint8_t)(20 + i % 44);
        if (len > 2 && i % 2) {
            buf[1] = 0xFE; /* DTLS 1.2 version */
            buf[2] = 0xFD;
        }
        int r = media_dtls_handle_datagram(d, buf, len);
        assert_true(r == 0 || r == MEDIA_DTLS_ERR_MALFORMED ||
                    media_dtls_state(d) == MEDIA_DTLS_FAILED);
        assert_int_not_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
        while (media_dtls_next_outgoing(d, buf, sizeof(buf)) > 0)
            ;
    }
    assert_int_not_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    media_dtls_free(d);

    /*
     * Garbage in well-formed record headers, after a real handshake, ends
     * nothing: any epoch, any content type, any length, several records to
     * a datagram. Short protected records are refused before OpenSSL.
     */
    d = new_leg(ctx, &c.fingerprint);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    int malformed = 0;
    for (int i = 0; i < 600; i++) {
        size_t len = 0;
        int records = 1 + i % 3;
        for (int r = 0; r < records; r++) {
            size_t body = (size_t)((i * 29 + r * 7) % (i % 4 ? 60 : 400));
            uint8_t *h = buf + len;
            assert_int_equal(RAND_bytes(h, (int)(13 + body)), 1);
            h[0] = (uint8_t)(20 + (i + r) % 6);
            h[1] = 0xFE;
            h[2] = 0xFD;
            h[3] = 0;
            h[4] = (uint8_t)((i / 3) % 3); /* epochs 0, 1 (in use) and 2 */
            h[11] = (uint8_t)(body >> 8);
            h[12] = (uint8_t)body;
            len += 13 + body;
        }
        int rc = media_dtls_handle_datagram(d, buf, len);
        if (rc == MEDIA_DTLS_ERR_MALFORMED)
            malformed++;
        else
            assert_int_equal(rc, 0);
        assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    }
    assert_true(malformed > 0);
    /* Still alive: the client's close_notify is understood. */
    assert_true(SSL_shutdown(c.ssl) >= 0);
    assert_int_equal(client_to_server(&c, d), 0);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CLOSED);
    media_dtls_free(d);
    client_free(&c);

    /* A forged short protected record in the middle of a handshake does not stop it. */
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    d = new_leg(ctx, &c.fingerprint);
    client_step(&c);
    assert_int_equal(client_to_server(&c, d), 0);
    const uint8_t forged[] = {22, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xAA};
    assert_int_equal(media_dtls_handle_datagram(d, forged, sizeof(forged)),
                     MEDIA_DTLS_ERR_MALFORMED);
    server_to_client(d, &c, false);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void test_close_notify(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);

    /* Application data (there is no data channel) is read and dropped. */
    assert_int_equal(SSL_write(c.ssl, "hello", 5), 5);
    assert_int_equal(client_to_server(&c, d), 0);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);

    /* The browser closes. */
    assert_true(SSL_shutdown(c.ssl) >= 0);
    assert_int_equal(client_to_server(&c, d), 0);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CLOSED);
    assert_int_equal(media_dtls_peer_alert(d), SSL_AD_CLOSE_NOTIFY);
    assert_int_equal(media_dtls_failure(d), 0);
    media_dtls_free(d);
    client_free(&c);

    /* We close: the client reads a close_notify. */
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    d = new_leg(ctx, &c.fingerprint);
    pump(&c, d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CONNECTED);
    media_dtls_close(d);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_CLOSED);
    assert_true(server_to_client(d, &c, false) >= 1);
    assert_true(SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN);
    media_dtls_close(d); /* twice: nothing */
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

/* A fatal alert from the client in the middle of the handshake fails the leg. */
static void test_fatal_alert(void **state)
{
    (void)state;
    struct media_dtls_ctx *ctx = new_ctx(0);
    struct client c;
    client_init(&c, "SRTP_AEAD_AES_128_GCM");
    struct media_dtls *d = new_leg(ctx, &c.fingerprint);
    client_step(&c);
    assert_int_equal(client_to_server(&c, d), 0);
    server_to_client(d, &c, true);
    /* A plaintext fatal handshake_failure alert, epoch 0, sequence 5. */
    const uint8_t alert[] = {21, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 5, 0, 2, 2, 40};
    int r = media_dtls_handle_datagram(d, alert, sizeof(alert));
    assert_int_equal(r, MEDIA_DTLS_ERR_ALERT);
    assert_int_equal(media_dtls_state(d), MEDIA_DTLS_FAILED);
    assert_int_equal(media_dtls_failure(d), MEDIA_DTLS_ERR_ALERT);
    assert_int_equal(media_dtls_peer_alert(d), 40);
    media_dtls_free(d);
    client_free(&c);
    media_dtls_ctx_free(ctx);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(media_dtls_error_name(0), "ok");
    assert_string_equal(media_dtls_error_name(MEDIA_DTLS_ERR_FINGERPRINT), "fingerprint");
    assert_string_equal(media_dtls_error_name(-99), "unknown");
    for (int e = -1; e >= MEDIA_DTLS_ERR_MIN; e--) {
        assert_string_not_equal(media_dtls_error_name(e), "unknown");
        assert_string_not_equal(media_dtls_strerror(e), "unknown error");
    }
    assert_string_equal(media_dtls_state_name(MEDIA_DTLS_CONNECTED), "connected");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_bad_fingerprint_argument),
        cmocka_unit_test(test_handshake_gcm),
        cmocka_unit_test(test_handshake_cm_only),
        cmocka_unit_test(test_no_common_profile),
        cmocka_unit_test(test_fingerprint_mismatch),
        cmocka_unit_test(test_no_client_certificate),
        cmocka_unit_test(test_lost_flight_retransmitted),
        cmocka_unit_test(test_lost_final_flight),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_fatal_alert),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
