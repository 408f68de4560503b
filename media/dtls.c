/*
 * dtls.c - the DTLS-SRTP transport of a leg over OpenSSL memory BIOs (see
 * dtls.h for the contracts).
 *
 * Runs on the media worker that owns the context and its legs (and in the
 * tests). Incoming datagrams go into a plain memory BIO, one at a time, and
 * OpenSSL is run until it has consumed it. Outgoing records go through a BIO
 * of our own whose write callback copies each write into the leg's outgoing
 * queue as one datagram: OpenSSL packs a flight's records into datagrams of
 * at most the MTU (in the buffering BIO it puts on top of ours during a
 * handshake) and writes each datagram with one call, whereas a memory BIO
 * would run the datagrams together.
 */
#include "dtls.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define DEFAULT_CERT_VALID_DAYS 30
#define MIN_MTU                 256
#define EXPORTER_LABEL          "EXTRACTOR-dtls_srtp" /* RFC 5764 section 4.2 */

/*
 * AES-GCM with ECDHE-ECDSA only: every browser offers it (and our
 * certificate is ECDSA, so only ECDHE-ECDSA suites could be chosen anyway).
 * Keeping to one AEAD family also gives every protected record one minimum
 * length, which media_dtls_handle_datagram() enforces (see there).
 */
#define CIPHER_LIST "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
/* A GCM record: 8-byte explicit nonce and 16-byte tag around 0 or more bytes. */
#define MIN_PROTECTED_RECORD 24
#define RECORD_HEADER_SIZE   13 /* type, version, epoch, sequence number, length */
#define GROUPS_LIST          "X25519:P-256:P-384"
#define SRTP_PROFILES        "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"

struct media_dtls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *out_method; /* the outgoing-queue BIO (see the top of this file) */
    struct media_dtls_config config;
    uint8_t fingerprint[32];
    char fingerprint_text[MEDIA_DTLS_FINGERPRINT_TEXT_SIZE];
};

struct media_dtls {
    struct media_dtls_ctx *ctx; /* borrowed */
    SSL *ssl;
    BIO *rbio; /* owned by ssl */
    enum media_dtls_state state;
    int failure;               /* 0, or the media_dtls_error that failed the leg */
    int peer_alert;            /* last alert description received, -1 when none */
    bool fingerprint_mismatch; /* set by the verify callback */
    struct media_dtls_fingerprint remote;
    struct media_srtp_keys keys; /* valid when CONNECTED */

    /* Outgoing datagrams, back to back in `out`, their lengths in `out_len`. */
    size_t out_head;  /* first queued datagram */
    size_t out_count; /* queued datagrams */
    size_t out_read;  /* bytes of `out` already taken */
    size_t out_used;  /* bytes of `out` written */
    unsigned out_dropped;
    uint16_t out_len[MEDIA_DTLS_OUT_DATAGRAMS];
    uint8_t out[MEDIA_DTLS_OUT_BYTES];
};

/* ------------------------------------------------------------------------- */
/* Names                                                                      */
/* ------------------------------------------------------------------------- */

const char *media_dtls_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MEDIA_DTLS_ERR_INVALID:
        return "invalid argument";
    case MEDIA_DTLS_ERR_NOT_ACTIVE:
        return "the DTLS association has failed or closed";
    case MEDIA_DTLS_ERR_MALFORMED:
        return "datagram dropped: a protected record too short to decrypt";
    case MEDIA_DTLS_ERR_HANDSHAKE:
        return "DTLS handshake failed";
    case MEDIA_DTLS_ERR_ALERT:
        return "the peer sent a fatal alert";
    case MEDIA_DTLS_ERR_NO_CERT:
        return "the peer sent no certificate";
    case MEDIA_DTLS_ERR_FINGERPRINT:
        return "the peer's certificate does not match its SDP fingerprint";
    case MEDIA_DTLS_ERR_NO_SRTP:
        return "no SRTP protection profile in common";
    case MEDIA_DTLS_ERR_EXPORT:
        return "exporting the SRTP keys failed";
    case MEDIA_DTLS_ERR_TIMEOUT:
        return "too many DTLS retransmissions";
    case MEDIA_DTLS_ERR_NO_SPACE:
        return "buffer too small";
    case MEDIA_DTLS_ERR_CRYPTO:
        return "OpenSSL failed";
    default:
        return "unknown error";
    }
}

const char *media_dtls_error_name(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case MEDIA_DTLS_ERR_INVALID:
        return "invalid";
    case MEDIA_DTLS_ERR_NOT_ACTIVE:
        return "not_active";
    case MEDIA_DTLS_ERR_MALFORMED:
        return "malformed";
    case MEDIA_DTLS_ERR_HANDSHAKE:
        return "handshake";
    case MEDIA_DTLS_ERR_ALERT:
        return "alert";
    case MEDIA_DTLS_ERR_NO_CERT:
        return "no_cert";
    case MEDIA_DTLS_ERR_FINGERPRINT:
        return "fingerprint";
    case MEDIA_DTLS_ERR_NO_SRTP:
        return "no_srtp";
    case MEDIA_DTLS_ERR_EXPORT:
        return "export";
    case MEDIA_DTLS_ERR_TIMEOUT:
        return "timeout";
    case MEDIA_DTLS_ERR_NO_SPACE:
        return "no_space";
    case MEDIA_DTLS_ERR_CRYPTO:
        return "crypto";
    default:
        return "unknown";
    }
}

const char *media_dtls_state_name(enum media_dtls_state state)
{
    switch (state) {
    case MEDIA_DTLS_NEW:
        return "new";
    case MEDIA_DTLS_HANDSHAKING:
        return "handshaking";
    case MEDIA_DTLS_CONNECTED:
        return "connected";
    case MEDIA_DTLS_FAILED:
        return "failed";
    case MEDIA_DTLS_CLOSED:
        return "closed";
    }
    return "unknown";
}

int media_dtls_fingerprint_format(const uint8_t *bytes, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t need = len ? 3 * len : 1; /* pairs, separators and the NUL */

    if (cap < need) {
        if (cap > 0)
            out[0] = '\0';
        return MEDIA_DTLS_ERR_NO_SPACE;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (i > 0)
            out[n++] = ':';
        out[n++] = hex[bytes[i] >> 4];
        out[n++] = hex[bytes[i] & 0x0F];
    }
    out[n] = '\0';
    return (int)n;
}

/* ------------------------------------------------------------------------- */
/* The outgoing-queue BIO                                                     */
/* ------------------------------------------------------------------------- */

/*
 * Appends one datagram. When the queue is full the datagram is dropped and
 * counted, as the network would drop it: DTLS retransmits. The write still
 * "succeeds", because a failed write is fatal to OpenSSL's handshake.
 */
static void out_push(struct media_dtls *d, const uint8_t *data, size_t len)
{
    if (d->out_count == 0) {
        d->out_head = 0;
        d->out_read = 0;
        d->out_used = 0;
    }
    if (d->out_count == MEDIA_DTLS_OUT_DATAGRAMS || len > UINT16_MAX ||
        len > sizeof(d->out) - d->out_used) {
        d->out_dropped++;
        return;
    }
    size_t slot = (d->out_head + d->out_count) % MEDIA_DTLS_OUT_DATAGRAMS;
    d->out_len[slot] = (uint16_t)len;
    memcpy(d->out + d->out_used, data, len);
    d->out_used += len;
    d->out_count++;
}

static int out_bio_write(BIO *b, const char *data, int len)
{
    struct media_dtls *d = BIO_get_data(b);
    if (!d || len < 0)
        return -1;
    out_push(d, (const uint8_t *)data, (size_t)len);
    return len;
}

/*
 * The controls OpenSSL's DTLS code sends to its write BIO. The MTU is set
 * on the SSL itself (SSL_OP_NO_QUERY_MTU), so most of these are answered
 * "not supported" (0), which OpenSSL tolerates; a flush has nothing to do.
 */
static long out_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct media_dtls *d = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return d ? (long)d->ctx->config.mtu : 0;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return 0;
    default:
        return 0;
    }
}

static int out_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    BIO_set_data(b, NULL);
    return 1;
}

static int out_bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *out_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tabib dtls out");
    if (!m)
        return NULL;
    if (!BIO_meth_set_write(m, out_bio_write) || !BIO_meth_set_ctrl(m, out_bio_ctrl) ||
        !BIO_meth_set_create(m, out_bio_create) || !BIO_meth_set_destroy(m, out_bio_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------------- */
/* Fingerprints and callbacks                                                 */
/* ------------------------------------------------------------------------- */

static const EVP_MD *hash_md(enum media_dtls_hash hash)
{
    switch (hash) {
    case MEDIA_DTLS_SHA256:
        return EVP_sha256();
    case MEDIA_DTLS_SHA384:
        return EVP_sha384();
    case MEDIA_DTLS_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

static size_t hash_len(enum media_dtls_hash hash)
{
    switch (hash) {
    case MEDIA_DTLS_SHA256:
        return 32;
    case MEDIA_DTLS_SHA384:
        return 48;
    case MEDIA_DTLS_SHA512:
        return 64;
    }
    return 0;
}

/* True when `cert`'s digest under the expected hash is the expected one (constant time). */
static bool fingerprint_matches(X509 *cert, const struct media_dtls_fingerprint *expected)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    const EVP_MD *type = hash_md(expected->hash);

    if (!cert || !type || !X509_digest(cert, type, md, &n) || n != expected->len)
        return false;
    return CRYPTO_memcmp(md, expected->bytes, n) == 0;
}

/*
 * The peer's certificate is self-signed, so chain verification is
 * meaningless: WebRTC authenticates it by its fingerprint alone (RFC 8827
 * section 6.5). So every chain error is accepted, and the leaf (depth 0) is
 * checked against the expected fingerprint here, during the handshake, so
 * that a wrong certificate is refused with a bad_certificate alert before
 * any key is derived. The check is made again once connected.
 */
static int verify_callback(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct media_dtls *d = ssl ? SSL_get_app_data(ssl) : NULL;
    if (!d)
        return 0;
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return 1;
    if (!fingerprint_matches(X509_STORE_CTX_get_current_cert(store), &d->remote)) {
        d->fingerprint_mismatch = true;
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
}

/* Remembers the alerts the peer sends: close_notify ends the leg, others explain a failure. */
static void info_callback(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
        return;
    struct media_dtls *d = SSL_get_app_data(ssl);
    if (d)
        d->peer_alert = ret & 0xFF;
}

/* The retransmission timer: the configured first timeout, doubled up to 60 s. */
static unsigned int timer_callback(SSL *ssl, unsigned int previous_us)
{
    struct media_dtls *d = SSL_get_app_data(ssl);
    unsigned int first = d ? d->ctx->config.initial_timeout_ms * 1000u : 1000000u;
    if (previous_us == 0)
        return first;
    if (previous_us >= MEDIA_DTLS_MAX_TIMEOUT_MS * 1000u / 2)
        return MEDIA_DTLS_MAX_TIMEOUT_MS * 1000u;
    return previous_us * 2;
}

/* ------------------------------------------------------------------------- */
/* The context                                                                */
/* ------------------------------------------------------------------------- */

/* A self-signed certificate for `key`: random serial, CN "tabib", short validity. */
static X509 *make_certificate(EVP_PKEY *key, unsigned valid_days)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    unsigned char rnd[8];

    if (!x || !serial || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto fail;
    rnd[0] &= 0x7F; /* a positive serial */
    if (!BN_bin2bn(rnd, sizeof(rnd), serial) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
        goto fail;
    if (!X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)valid_days * 24 * 3600) ||
        !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tabib", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_sign(x, key, EVP_sha256()))
        goto fail;
    BN_free(serial);
    return x;

fail:
    BN_free(serial);
    X509_free(x);
    return NULL;
}

struct media_dtls_ctx *media_dtls_ctx_new(const struct media_dtls_config *config)
{
    struct media_dtls_ctx *ctx = calloc(1, sizeof(*ctx));
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;

    if (!ctx)
        return NULL;
    if (config)
        ctx->config = *config;
    if (!ctx->config.mtu)
        ctx->config.mtu = MEDIA_DTLS_DEFAULT_MTU;
    if (!ctx->config.initial_timeout_ms)
        ctx->config.initial_timeout_ms = MEDIA_DTLS_DEFAULT_TIMEOUT_MS;
    if (!ctx->config.cert_valid_days)
        ctx->config.cert_valid_days = DEFAULT_CERT_VALID_DAYS;
    if (ctx->config.mtu < MIN_MTU || ctx->config.mtu > MEDIA_DTLS_OUT_BYTES ||
        ctx->config.initial_timeout_ms > MEDIA_DTLS_MAX_TIMEOUT_MS ||
        ctx->config.cert_valid_days > 3650)
        goto fail;

    key = EVP_EC_gen("P-256");
    cert = key ? make_certificate(key, ctx->config.cert_valid_days) : NULL;
    if (!cert)
        goto fail;
    unsigned n = 0;
    if (!X509_digest(cert, EVP_sha256(), ctx->fingerprint, &n) || n != sizeof(ctx->fingerprint))
        goto fail;
    media_dtls_fingerprint_format(ctx->fingerprint, n, ctx->fingerprint_text,
                                  sizeof(ctx->fingerprint_text));

    ctx->out_method = out_method_new();
    ctx->ssl_ctx = SSL_CTX_new(DTLS_method());
    if (!ctx->out_method || !ctx->ssl_ctx)
        goto fail;
    SSL_CTX *s = ctx->ssl_ctx;
    /* A few bytes of session state we never resume; no renegotiation (RFC 8827 6.5). */
    if (!SSL_CTX_set_min_proto_version(s, DTLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(s, DTLS1_2_VERSION) ||
        SSL_CTX_use_certificate(s, cert) != 1 || SSL_CTX_use_PrivateKey(s, key) != 1 ||
        SSL_CTX_check_private_key(s) != 1 || SSL_CTX_set_cipher_list(s, CIPHER_LIST) != 1 ||
        SSL_CTX_set1_groups_list(s, GROUPS_LIST) != 1 ||
        /* Returns 0 on success, unlike almost everything else in OpenSSL. */
        SSL_CTX_set_tlsext_use_srtp(s, SRTP_PROFILES) != 0)
        goto fail;
    SSL_CTX_set_options(s, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(s,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE,
                       verify_callback);
    SSL_CTX_set_info_callback(s, info_callback);

    /* The SSL_CTX holds its own references to both. */
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;

fail:
    X509_free(cert);
    EVP_PKEY_free(key);
    media_dtls_ctx_free(ctx);
    ERR_clear_error();
    return NULL;
}

void media_dtls_ctx_free(struct media_dtls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->out_method);
    free(ctx);
}

const uint8_t *media_dtls_ctx_fingerprint_sha256(const struct media_dtls_ctx *ctx)
{
    return ctx->fingerprint;
}

const char *media_dtls_ctx_fingerprint_text(const struct media_dtls_ctx *ctx)
{
    return ctx->fingerprint_text;
}

/* ------------------------------------------------------------------------- */
/* A leg                                                                      */
/* ------------------------------------------------------------------------- */

struct media_dtls *media_dtls_new(struct media_dtls_ctx *ctx,
                                  const struct media_dtls_fingerprint *remote, int *err)
{
    int e = MEDIA_DTLS_ERR_INVALID;
    struct media_dtls *d = NULL;
    BIO *wbio = NULL;

    assert(ctx);
    if (!remote || !hash_md(remote->hash) || remote->len != hash_len(remote->hash))
        goto fail;
    e = MEDIA_DTLS_ERR_CRYPTO;
    d = calloc(1, sizeof(*d));
    if (!d)
        goto fail;
    d->ctx = ctx;
    d->remote = *remote;
    d->peer_alert = -1;
    d->state = MEDIA_DTLS_NEW;

    d->ssl = SSL_new(ctx->ssl_ctx);
    d->rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(ctx->out_method);
    if (!d->ssl || !d->rbio || !wbio) {
        BIO_free(d->rbio);
        d->rbio = NULL;
        goto fail;
    }
    BIO_set_mem_eof_return(d->rbio, -1); /* empty means "wait for more", not EOF */
    BIO_set_data(wbio, d);
    SSL_set_bio(d->ssl, d->rbio, wbio); /* ssl owns both from here */
    wbio = NULL;
    SSL_set_app_data(d->ssl, d);
    SSL_set_accept_state(d->ssl);
    DTLS_set_timer_cb(d->ssl, timer_callback);
    if (!DTLS_set_link_mtu(d->ssl, (long)ctx->config.mtu))
        goto fail;
    return d;

fail:
    BIO_free(wbio);
    media_dtls_free(d);
    ERR_clear_error();
    if (err)
        *err = e;
    return NULL;
}

void media_dtls_free(struct media_dtls *d)
{
    if (!d)
        return;
    SSL_free(d->ssl); /* frees both BIOs */
    OPENSSL_cleanse(&d->keys, sizeof(d->keys));
    free(d);
}

/*
 * Fails a leg whose handshake has completed (wrong certificate, no SRTP
 * profile): OpenSSL has no call to send a fatal alert now, so a close_notify
 * tells the peer that the association is over.
 */
static int fail_connected(struct media_dtls *d, int reason)
{
    SSL_shutdown(d->ssl);
    d->state = MEDIA_DTLS_FAILED;
    d->failure = reason;
    ERR_clear_error();
    return reason;
}

/* Moves to FAILED for `reason` (the first reason sticks) and returns it. */
static int fail_with(struct media_dtls *d, int reason)
{
    if (d->state != MEDIA_DTLS_FAILED) {
        d->state = MEDIA_DTLS_FAILED;
        d->failure = reason;
    }
    ERR_clear_error();
    return d->failure;
}

/*
 * The handshake has completed: check the certificate again, take the
 * profile and export the keys. The exporter output is, in this order, the
 * client's master key, the server's master key, the client's master salt
 * and the server's master salt (RFC 5764 section 4.2).
 */
static int on_connected(struct media_dtls *d)
{
    X509 *peer = SSL_get0_peer_certificate(d->ssl);
    if (!peer)
        return fail_connected(d, MEDIA_DTLS_ERR_NO_CERT);
    if (!fingerprint_matches(peer, &d->remote))
        return fail_connected(d, MEDIA_DTLS_ERR_FINGERPRINT);

    const SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(d->ssl);
    enum media_srtp_profile profile = MEDIA_SRTP_PROFILE_NONE;
    if (p && p->id == SRTP_AEAD_AES_128_GCM)
        profile = MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM;
    else if (p && p->id == SRTP_AES128_CM_SHA1_80)
        profile = MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80;
    size_t key_len, salt_len;
    if (media_srtp_profile_lengths(profile, &key_len, &salt_len) != 0)
        return fail_connected(d, MEDIA_DTLS_ERR_NO_SRTP);

    uint8_t material[2 * (MEDIA_SRTP_KEY_MAX + MEDIA_SRTP_SALT_MAX)];
    size_t total = 2 * (key_len + salt_len);
    if (SSL_export_keying_material(d->ssl, material, total, EXPORTER_LABEL,
                                   sizeof(EXPORTER_LABEL) - 1, NULL, 0, 0) != 1) {
        OPENSSL_cleanse(material, sizeof(material));
        return fail_connected(d, MEDIA_DTLS_ERR_EXPORT);
    }
    const uint8_t *client_key = material;
    const uint8_t *server_key = material + key_len;
    const uint8_t *client_salt = material + 2 * key_len;
    const uint8_t *server_salt = material + 2 * key_len + salt_len;

    struct media_srtp_keys *k = &d->keys;
    k->profile = profile;
    k->key_len = (uint8_t)key_len;
    k->salt_len = (uint8_t)salt_len;
    memcpy(k->local_key, server_key, key_len);
    memcpy(k->local_salt, server_salt, salt_len);
    memcpy(k->remote_key, client_key, key_len);
    memcpy(k->remote_salt, client_salt, salt_len);
    OPENSSL_cleanse(material, sizeof(material));
    d->state = MEDIA_DTLS_CONNECTED;
    return 0;
}

/* Why an SSL call failed with SSL_ERROR_SSL, as one of our errors. */
static int handshake_failure(struct media_dtls *d)
{
    if (d->fingerprint_mismatch)
        return MEDIA_DTLS_ERR_FINGERPRINT;
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        int reason = ERR_GET_REASON(e);
        if (reason >= SSL_AD_REASON_OFFSET)
            return MEDIA_DTLS_ERR_ALERT; /* SSL_R_SSLV3_ALERT_* / SSL_R_TLSV1_ALERT_*: received */
        if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
            return MEDIA_DTLS_ERR_NO_CERT;
    }
    return MEDIA_DTLS_ERR_HANDSHAKE;
}

/* Reads (and discards) what the connection has, noticing close_notify and fatal alerts. */
static int read_connected(struct media_dtls *d)
{
    uint8_t scratch[2048];
    for (;;) {
        int n = SSL_read(d->ssl, scratch, sizeof(scratch));
        if (n > 0)
            continue; /* no data channel: application data has nowhere to go */
        switch (SSL_get_error(d->ssl, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            return 0;
        case SSL_ERROR_ZERO_RETURN:
            /* close_notify: answer it (into the queue) and stop. */
            SSL_shutdown(d->ssl);
            d->state = MEDIA_DTLS_CLOSED;
            ERR_clear_error();
            return 0;
        default:
            return fail_with(d, handshake_failure(d));
        }
    }
}

/*
 * True when a record of the datagram is protected (epoch above 0) yet too
 * short to hold a GCM nonce and tag. OpenSSL 3.0 does not drop such a record
 * as it drops other undecryptable ones: it fails the whole connection, so a
 * single forged 14-byte datagram would end a call. No real peer sends one.
 */
static bool has_short_protected_record(const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (len - off >= RECORD_HEADER_SIZE) {
        const uint8_t *r = data + off;
        unsigned epoch = (unsigned)(r[3] << 8 | r[4]);
        size_t rlen = (size_t)(r[11] << 8 | r[12]);
        if (epoch != 0 && rlen < MIN_PROTECTED_RECORD)
            return true;
        if (rlen > len - off - RECORD_HEADER_SIZE)
            break; /* runs past the datagram: OpenSSL drops it */
        off += RECORD_HEADER_SIZE + rlen;
    }
    return false;
}

int media_dtls_handle_datagram(struct media_dtls *d, const uint8_t *data, size_t len)
{
    assert(d);
    if (d->state == MEDIA_DTLS_FAILED || d->state == MEDIA_DTLS_CLOSED)
        return MEDIA_DTLS_ERR_NOT_ACTIVE;
    if (!data || len == 0 || len > INT32_MAX)
        return MEDIA_DTLS_ERR_INVALID;
    if (has_short_protected_record(data, len))
        return MEDIA_DTLS_ERR_MALFORMED;

    /*
     * One datagram at a time: a memory BIO would hand two datagrams to
     * OpenSSL as one, and DTLS drops the rest of a datagram after a bad
     * record. So feed, run until OpenSSL wants more, and throw away
     * anything it left.
     */
    if (BIO_write(d->rbio, data, (int)len) != (int)len) {
        (void)BIO_reset(d->rbio);
        ERR_clear_error();
        return MEDIA_DTLS_ERR_CRYPTO;
    }
    int rc = 0;
    if (d->state == MEDIA_DTLS_NEW)
        d->state = MEDIA_DTLS_HANDSHAKING;
    if (d->state == MEDIA_DTLS_HANDSHAKING) {
        int r = SSL_do_handshake(d->ssl);
        if (r == 1) {
            rc = on_connected(d);
            /* A record after the Finished in the same datagram (close_notify...). */
            if (rc == 0)
                rc = read_connected(d);
        } else {
            switch (SSL_get_error(d->ssl, r)) {
            case SSL_ERROR_WANT_READ:
            case SSL_ERROR_WANT_WRITE:
                ERR_clear_error();
                break;
            default:
                rc = fail_with(d, handshake_failure(d));
                break;
            }
        }
    } else {
        rc = read_connected(d);
    }
    (void)BIO_reset(d->rbio);
    return rc;
}

int media_dtls_next_outgoing(struct media_dtls *d, uint8_t *buf, size_t cap)
{
    assert(d);
    if (d->out_count == 0)
        return 0;
    size_t len = d->out_len[d->out_head];
    if (cap < len)
        return MEDIA_DTLS_ERR_NO_SPACE;
    memcpy(buf, d->out + d->out_read, len);
    d->out_read += len;
    d->out_head = (d->out_head + 1) % MEDIA_DTLS_OUT_DATAGRAMS;
    d->out_count--;
    return (int)len;
}

int media_dtls_timeout_ms(struct media_dtls *d)
{
    assert(d);
    struct timeval tv;
    if (d->state != MEDIA_DTLS_HANDSHAKING || DTLSv1_get_timeout(d->ssl, &tv) != 1)
        return -1;
    long long ms = (long long)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    return ms > MEDIA_DTLS_MAX_TIMEOUT_MS ? MEDIA_DTLS_MAX_TIMEOUT_MS : (int)ms;
}

int media_dtls_handle_timeout(struct media_dtls *d)
{
    assert(d);
    if (d->state != MEDIA_DTLS_HANDSHAKING)
        return 0;
    if (DTLSv1_handle_timeout(d->ssl) < 0)
        return fail_with(d, MEDIA_DTLS_ERR_TIMEOUT);
    ERR_clear_error();
    return 0;
}

void media_dtls_close(struct media_dtls *d)
{
    assert(d);
    if (d->state == MEDIA_DTLS_FAILED || d->state == MEDIA_DTLS_CLOSED)
        return;
    /* A close_notify means something only on an established connection. */
    if (d->state == MEDIA_DTLS_CONNECTED)
        SSL_shutdown(d->ssl);
    ERR_clear_error();
    d->state = MEDIA_DTLS_CLOSED;
}

enum media_dtls_state media_dtls_state(const struct media_dtls *d)
{
    return d->state;
}

int media_dtls_failure(const struct media_dtls *d)
{
    return d->failure;
}

int media_dtls_peer_alert(const struct media_dtls *d)
{
    return d->peer_alert;
}

int media_dtls_srtp_keys(const struct media_dtls *d, struct media_srtp_keys *out)
{
    if (d->state != MEDIA_DTLS_CONNECTED)
        return MEDIA_DTLS_ERR_NOT_ACTIVE;
    *out = d->keys;
    return 0;
}

unsigned media_dtls_out_dropped(const struct media_dtls *d)
{
    return d->out_dropped;
}
