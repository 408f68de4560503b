/*
 * stun.c - the STUN message codec and the ICE-lite Binding check (see
 * stun.h for the contracts).
 *
 * Runs on whichever thread calls it (the media workers, the tests, the C test
 * peer). Parsing reads the datagram in place and fills a view; building
 * writes big-endian fields into a bounded caller's buffer. The only state
 * kept between calls is the OpenSSL HMAC in a struct media_stun_ctx that the
 * caller owns, so two threads never share anything here.
 */
#include "stun.h"
#include "bytes.h"

#include <assert.h>
#include <netinet/in.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define ATTR_HEADER_SIZE    4
#define MAX_MESSAGE_LENGTH  0xFFFC /* largest length field that is a multiple of 4 */
#define XOR_ADDRESS_V4_SIZE 8
#define XOR_ADDRESS_V6_SIZE 20
#define FAMILY_IPV4         0x01
#define FAMILY_IPV6         0x02

/* ------------------------------------------------------------------------- */
/* Byte order                                                                 */
/* ------------------------------------------------------------------------- */

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

const char *media_stun_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MEDIA_STUN_ERR_NOT_STUN:
        return "not a STUN message";
    case MEDIA_STUN_ERR_LENGTH:
        return "STUN length does not match the datagram";
    case MEDIA_STUN_ERR_MALFORMED:
        return "malformed STUN attribute";
    case MEDIA_STUN_ERR_NO_INTEGRITY:
        return "no MESSAGE-INTEGRITY";
    case MEDIA_STUN_ERR_BAD_INTEGRITY:
        return "MESSAGE-INTEGRITY does not match";
    case MEDIA_STUN_ERR_NO_FINGERPRINT:
        return "no FINGERPRINT";
    case MEDIA_STUN_ERR_BAD_FINGERPRINT:
        return "FINGERPRINT does not match";
    case MEDIA_STUN_ERR_NO_SPACE:
        return "STUN message does not fit the buffer";
    case MEDIA_STUN_ERR_INVALID:
        return "invalid argument";
    case MEDIA_STUN_ERR_CRYPTO:
        return "OpenSSL HMAC failed";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------------------- */
/* CRC-32 (FINGERPRINT)                                                       */
/* ------------------------------------------------------------------------- */

/*
 * The IEEE 802.3 CRC-32 (reflected polynomial 0xEDB88320), the one zlib
 * computes, four bits at a time from a 16-entry constant table: a quarter of
 * the work of the bitwise loop for 64 bytes of table, where the usual 1 KiB
 * byte table would buy little on messages of about 100 bytes.
 */
static const uint32_t crc32_nibble[16] = {
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
    0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
};

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc32_nibble[crc & 0x0F];
        crc = (crc >> 4) ^ crc32_nibble[crc & 0x0F];
    }
    return crc ^ 0xFFFFFFFFu;
}

/* The FINGERPRINT value of a message whose first `n` bytes precede the attribute. */
static uint32_t fingerprint_value(const uint8_t *msg, size_t n)
{
    return crc32_ieee(msg, n) ^ MEDIA_STUN_FINGERPRINT_XOR;
}

/* ------------------------------------------------------------------------- */
/* HMAC-SHA1 (MESSAGE-INTEGRITY)                                              */
/* ------------------------------------------------------------------------- */

struct media_stun_ctx {
    EVP_MAC *mac;
    EVP_MAC_CTX *mac_ctx; /* digest set once; keyed again for each message */
};

struct media_stun_ctx *media_stun_ctx_new(void)
{
    struct media_stun_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (!ctx->mac)
        goto fail;
    ctx->mac_ctx = EVP_MAC_CTX_new(ctx->mac);
    if (!ctx->mac_ctx)
        goto fail;
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(ctx->mac_ctx, params))
        goto fail;
    return ctx;
fail:
    media_stun_ctx_free(ctx);
    return NULL;
}

void media_stun_ctx_free(struct media_stun_ctx *ctx)
{
    if (!ctx)
        return;
    EVP_MAC_CTX_free(ctx->mac_ctx);
    EVP_MAC_free(ctx->mac);
    OPENSSL_free(ctx);
}

/*
 * The MESSAGE-INTEGRITY value of `msg` for an attribute at `mi_offset`: the
 * HMAC covers the header with its length field set to end right after the
 * attribute (RFC 5389 section 15.4), then the attributes before it. The
 * message itself is not modified: the header goes through the HMAC in parts.
 */
static int integrity_value(struct media_stun_ctx *ctx, const char *password, const uint8_t *msg,
                           size_t mi_offset, uint8_t out[MEDIA_STUN_HMAC_SIZE])
{
    struct media_stun_ctx *own = NULL;
    if (!ctx) {
        own = media_stun_ctx_new();
        if (!own)
            return MEDIA_STUN_ERR_CRYPTO;
        ctx = own;
    }
    size_t adjusted = mi_offset + ATTR_HEADER_SIZE + MEDIA_STUN_HMAC_SIZE - MEDIA_STUN_HEADER_SIZE;
    uint8_t head[4] = {msg[0], msg[1], (uint8_t)(adjusted >> 8), (uint8_t)adjusted};
    /* OpenSSL wants a non-NULL key even when it is empty. */
    static const uint8_t empty_key[1] = {0};
    size_t key_len = strlen(password);
    const uint8_t *key = key_len ? (const uint8_t *)password : empty_key;
    size_t out_len = 0;
    int ok = EVP_MAC_init(ctx->mac_ctx, key, key_len, NULL) &&
             EVP_MAC_update(ctx->mac_ctx, head, sizeof(head)) &&
             EVP_MAC_update(ctx->mac_ctx, msg + 4, mi_offset - 4) &&
             EVP_MAC_final(ctx->mac_ctx, out, &out_len, MEDIA_STUN_HMAC_SIZE) &&
             out_len == MEDIA_STUN_HMAC_SIZE;
    media_stun_ctx_free(own);
    return ok ? 0 : MEDIA_STUN_ERR_CRYPTO;
}

/* ------------------------------------------------------------------------- */
/* Parsing                                                                    */
/* ------------------------------------------------------------------------- */

uint16_t media_stun_type(uint16_t method, enum media_stun_class cls)
{
    /* Type bits: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 figure 3). */
    unsigned m = method & 0x0FFFu, c = (unsigned)cls & 3u;
    return (uint16_t)((m & 0x000F) | (m & 0x0070) << 1 | (m & 0x0F80) << 2 | (c & 1) << 4 |
                      (c & 2) << 7);
}

/* Decodes an XOR-MAPPED-ADDRESS-style value; the txid follows the cookie in `msg`. */
static int parse_xor_address(const uint8_t *msg, const uint8_t *v, size_t n,
                             struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 4)
        return MEDIA_STUN_ERR_MALFORMED;
    uint16_t port = rd16(v + 2) ^ (uint16_t)(MEDIA_STUN_MAGIC_COOKIE >> 16);
    /* v[0] is reserved and ignored. */
    if (v[1] == FAMILY_IPV4 && n == XOR_ADDRESS_V4_SIZE) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        uint32_t a = rd32(v + 4) ^ MEDIA_STUN_MAGIC_COOKIE;
        sin->sin_addr.s_addr = htonl(a);
        return 0;
    }
    if (v[1] == FAMILY_IPV6 && n == XOR_ADDRESS_V6_SIZE) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        /* XOR with the cookie and the transaction id: bytes 4..19 of the header. */
        for (int i = 0; i < 16; i++)
            sin6->sin6_addr.s6_addr[i] = v[4 + i] ^ msg[4 + i];
        return 0;
    }
    return MEDIA_STUN_ERR_MALFORMED;
}

/* Reads one attribute we process into `out`. Returns 0 or MEDIA_STUN_ERR_MALFORMED. */
static int parse_attribute(struct media_stun_msg *out, uint16_t type, size_t offset,
                           const uint8_t *v, size_t n)
{
    switch (type) {
    case MEDIA_STUN_ATTR_USERNAME:
        if (!out->username) {
            out->username = (const char *)v;
            out->username_len = n;
        }
        return 0;
    case MEDIA_STUN_ATTR_SOFTWARE:
        if (!out->software) {
            out->software = (const char *)v;
            out->software_len = n;
        }
        return 0;
    case MEDIA_STUN_ATTR_MESSAGE_INTEGRITY:
        if (n != MEDIA_STUN_HMAC_SIZE)
            return MEDIA_STUN_ERR_MALFORMED;
        out->integrity_offset = offset;
        return 0;
    case MEDIA_STUN_ATTR_FINGERPRINT:
        if (n != 4)
            return MEDIA_STUN_ERR_MALFORMED;
        out->fingerprint_offset = offset;
        return 0;
    case MEDIA_STUN_ATTR_PRIORITY:
        if (n != 4)
            return MEDIA_STUN_ERR_MALFORMED;
        if (!out->has_priority) {
            out->has_priority = true;
            out->priority = rd32(v);
        }
        return 0;
    case MEDIA_STUN_ATTR_USE_CANDIDATE:
        if (n != 0)
            return MEDIA_STUN_ERR_MALFORMED;
        out->use_candidate = true;
        return 0;
    case MEDIA_STUN_ATTR_ICE_CONTROLLING:
        if (n != 8)
            return MEDIA_STUN_ERR_MALFORMED;
        if (!out->has_ice_controlling) {
            out->has_ice_controlling = true;
            out->ice_controlling = rd64(v);
        }
        return 0;
    case MEDIA_STUN_ATTR_ICE_CONTROLLED:
        if (n != 8)
            return MEDIA_STUN_ERR_MALFORMED;
        if (!out->has_ice_controlled) {
            out->has_ice_controlled = true;
            out->ice_controlled = rd64(v);
        }
        return 0;
    case MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS: {
        struct sockaddr_storage addr;
        if (parse_xor_address(out->data, v, n, &addr) != 0)
            return MEDIA_STUN_ERR_MALFORMED;
        if (!out->has_xor_mapped) {
            out->has_xor_mapped = true;
            out->xor_mapped = addr;
        }
        return 0;
    }
    case MEDIA_STUN_ATTR_ERROR_CODE: {
        /* 21 reserved bits, a 3-bit class (3..6), an 8-bit number (0..99), a reason. */
        if (n < 4 || (v[2] & 7) < 3 || (v[2] & 7) > 6 || v[3] > 99)
            return MEDIA_STUN_ERR_MALFORMED;
        if (!out->error_code) {
            out->error_code = (uint16_t)((v[2] & 7) * 100 + v[3]);
            out->error_reason = (const char *)v + 4;
            out->error_reason_len = n - 4;
        }
        return 0;
    }
    case MEDIA_STUN_ATTR_MAPPED_ADDRESS:
    case MEDIA_STUN_ATTR_UNKNOWN_ATTRIBUTES:
    case MEDIA_STUN_ATTR_REALM:
    case MEDIA_STUN_ATTR_NONCE:
    case MEDIA_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    case MEDIA_STUN_ATTR_PASSWORD_ALGORITHM:
    case MEDIA_STUN_ATTR_USERHASH:
        /* Understood but of no use to ICE-lite: long-term credentials, SHA-256, 3489 clients. */
        return 0;
    default:
        if (type < 0x8000) {
            if (out->unknown_count < MEDIA_STUN_MAX_UNKNOWN)
                out->unknown[out->unknown_count++] = type;
            out->unknown_total++;
        }
        return 0; /* comprehension-optional: ignored */
    }
}

int media_stun_parse(const uint8_t *data, size_t len, struct media_stun_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (len < MEDIA_STUN_HEADER_SIZE || (data[0] & 0xC0) != 0 ||
        rd32(data + 4) != MEDIA_STUN_MAGIC_COOKIE)
        return MEDIA_STUN_ERR_NOT_STUN;
    size_t declared = rd16(data + 2);
    if ((declared & 3) != 0 || declared != len - MEDIA_STUN_HEADER_SIZE)
        return MEDIA_STUN_ERR_LENGTH;

    out->data = data;
    out->len = len;
    out->type = rd16(data);
    out->method =
        (uint16_t)((out->type & 0x000F) | (out->type & 0x00E0) >> 1 | (out->type & 0x3E00) >> 2);
    out->cls = (enum media_stun_class)((out->type >> 4 & 1) | (out->type >> 7 & 2));
    out->txid = data + 8;

    bool integrity_seen = false;
    size_t off = MEDIA_STUN_HEADER_SIZE;
    while (off < len) {
        /* off and len are multiples of 4, so a whole attribute header is there. */
        uint16_t type = rd16(data + off);
        size_t n = rd16(data + off + 2);
        if (pad4(n) > len - off - ATTR_HEADER_SIZE)
            goto malformed;
        /* FINGERPRINT is the last attribute when present (RFC 8489 section 14.7). */
        if (out->fingerprint_offset)
            goto malformed;
        const uint8_t *value = data + off + ATTR_HEADER_SIZE;
        if (!integrity_seen || type == MEDIA_STUN_ATTR_FINGERPRINT) {
            if (parse_attribute(out, type, off, value, n) != 0)
                goto malformed;
            if (type == MEDIA_STUN_ATTR_MESSAGE_INTEGRITY ||
                type == MEDIA_STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
                integrity_seen = true;
        }
        off += ATTR_HEADER_SIZE + pad4(n);
    }
    return 0;
malformed:
    memset(out, 0, sizeof(*out));
    return MEDIA_STUN_ERR_MALFORMED;
}

/* ------------------------------------------------------------------------- */
/* Verification                                                               */
/* ------------------------------------------------------------------------- */

int media_stun_verify_fingerprint(const struct media_stun_msg *msg)
{
    size_t at = msg->fingerprint_offset;
    if (!at)
        return MEDIA_STUN_ERR_NO_FINGERPRINT;
    /* The parser made sure FINGERPRINT is last, so the length field already covers it. */
    uint32_t want = fingerprint_value(msg->data, at);
    return rd32(msg->data + at + ATTR_HEADER_SIZE) == want ? 0 : MEDIA_STUN_ERR_BAD_FINGERPRINT;
}

int media_stun_verify_integrity(struct media_stun_ctx *ctx, const struct media_stun_msg *msg,
                                const char *password)
{
    assert(password);
    size_t at = msg->integrity_offset;
    if (!at)
        return MEDIA_STUN_ERR_NO_INTEGRITY;
    uint8_t want[MEDIA_STUN_HMAC_SIZE];
    int rc = integrity_value(ctx, password, msg->data, at, want);
    if (rc != 0)
        return rc;
    /* Constant time: a timing difference must not reveal how many bytes matched. */
    if (CRYPTO_memcmp(want, msg->data + at + ATTR_HEADER_SIZE, sizeof(want)) != 0)
        return MEDIA_STUN_ERR_BAD_INTEGRITY;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* ICE-lite Binding check                                                     */
/* ------------------------------------------------------------------------- */

int media_stun_local_ufrag(const struct media_stun_msg *msg, const char **ufrag, size_t *len)
{
    if (!msg->username)
        return MEDIA_STUN_ERR_INVALID;
    const char *colon = memchr(msg->username, ':', msg->username_len);
    if (!colon || colon == msg->username)
        return MEDIA_STUN_ERR_INVALID;
    *ufrag = msg->username;
    *len = (size_t)(colon - msg->username);
    return 0;
}

/* Whether USERNAME is "local:remote", or "local:" and anything when remote is NULL. */
static bool username_matches(const struct media_stun_msg *msg, const char *local,
                             const char *remote)
{
    const char *ufrag;
    size_t n;
    if (media_stun_local_ufrag(msg, &ufrag, &n) != 0)
        return false;
    if (n != strlen(local) || memcmp(ufrag, local, n) != 0)
        return false;
    const char *rest = msg->username + n + 1;
    size_t rest_len = msg->username_len - n - 1;
    if (!remote)
        return rest_len > 0;
    return rest_len == strlen(remote) && memcmp(rest, remote, rest_len) == 0;
}

enum media_stun_check media_stun_check_binding(struct media_stun_ctx *ctx,
                                               const struct media_stun_msg *msg,
                                               const char *local_ufrag, const char *local_pwd,
                                               const char *remote_ufrag)
{
    assert(local_ufrag && local_pwd);
    if (msg->method != MEDIA_STUN_METHOD_BINDING || msg->cls != MEDIA_STUN_REQUEST)
        return MEDIA_STUN_CHECK_NOT_REQUEST;
    /* A FINGERPRINT failure means "not STUN after all" (RFC 8489 section 7): no answer. */
    if (media_stun_verify_fingerprint(msg) != 0)
        return MEDIA_STUN_CHECK_BAD_FINGERPRINT;
    if (!msg->username || !msg->integrity_offset)
        return MEDIA_STUN_CHECK_MISSING_AUTH;
    if (!username_matches(msg, local_ufrag, remote_ufrag))
        return MEDIA_STUN_CHECK_WRONG_USERNAME;
    int rc = media_stun_verify_integrity(ctx, msg, local_pwd);
    if (rc == MEDIA_STUN_ERR_CRYPTO)
        return MEDIA_STUN_CHECK_CRYPTO;
    if (rc != 0)
        return MEDIA_STUN_CHECK_BAD_INTEGRITY;
    /* Unknown attributes are answered only once the request is known to be authentic. */
    if (msg->unknown_total > 0)
        return MEDIA_STUN_CHECK_UNKNOWN_ATTRIBUTE;
    return MEDIA_STUN_CHECK_OK;
}

static const char *const check_names[MEDIA_STUN_CHECK_COUNT] = {
    [MEDIA_STUN_CHECK_OK] = "ok",
    [MEDIA_STUN_CHECK_NOT_REQUEST] = "not_request",
    [MEDIA_STUN_CHECK_BAD_FINGERPRINT] = "bad_fingerprint",
    [MEDIA_STUN_CHECK_MISSING_AUTH] = "missing_auth",
    [MEDIA_STUN_CHECK_WRONG_USERNAME] = "wrong_username",
    [MEDIA_STUN_CHECK_BAD_INTEGRITY] = "bad_integrity",
    [MEDIA_STUN_CHECK_UNKNOWN_ATTRIBUTE] = "unknown_attribute",
    [MEDIA_STUN_CHECK_CRYPTO] = "crypto",
};

const char *media_stun_check_name(enum media_stun_check check)
{
    return (unsigned)check < MEDIA_STUN_CHECK_COUNT ? check_names[check] : "unknown";
}

int media_stun_check_error_code(enum media_stun_check check)
{
    switch (check) {
    case MEDIA_STUN_CHECK_MISSING_AUTH:
        return 400;
    case MEDIA_STUN_CHECK_WRONG_USERNAME:
    case MEDIA_STUN_CHECK_BAD_INTEGRITY:
        return 401;
    case MEDIA_STUN_CHECK_UNKNOWN_ATTRIBUTE:
        return 420;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------- */
/* Building                                                                   */
/* ------------------------------------------------------------------------- */

void media_stun_writer_init(struct media_stun_writer *w, uint8_t *buf, size_t cap, uint16_t type,
                            const uint8_t *txid)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
    if (type > 0x3FFF || !txid) {
        w->err = MEDIA_STUN_ERR_INVALID;
        return;
    }
    if (cap < MEDIA_STUN_HEADER_SIZE) {
        w->err = MEDIA_STUN_ERR_NO_SPACE;
        return;
    }
    wr16(buf, type);
    wr16(buf + 2, 0);
    wr32(buf + 4, MEDIA_STUN_MAGIC_COOKIE);
    memcpy(buf + 8, txid, MEDIA_STUN_TXID_SIZE);
    w->len = MEDIA_STUN_HEADER_SIZE;
}

/*
 * Appends an attribute header and `n` bytes of zeroed, padded value; returns
 * where the value goes, or NULL (and sets w->err) when it does not fit.
 */
static uint8_t *writer_reserve(struct media_stun_writer *w, uint16_t attr, size_t n)
{
    if (w->err)
        return NULL;
    if (n > 0xFFFF) {
        w->err = MEDIA_STUN_ERR_INVALID;
        return NULL;
    }
    size_t total = ATTR_HEADER_SIZE + pad4(n);
    if (w->cap - w->len < total || w->len + total - MEDIA_STUN_HEADER_SIZE > MAX_MESSAGE_LENGTH) {
        w->err = MEDIA_STUN_ERR_NO_SPACE;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    wr16(p, attr);
    wr16(p + 2, (uint16_t)n);
    memset(p + ATTR_HEADER_SIZE, 0, pad4(n)); /* RFC 8489: padding is sent as zeros */
    w->len += total;
    wr16(w->buf + 2, (uint16_t)(w->len - MEDIA_STUN_HEADER_SIZE));
    return p + ATTR_HEADER_SIZE;
}

void media_stun_writer_add(struct media_stun_writer *w, uint16_t attr, const void *value,
                           size_t value_len)
{
    uint8_t *p = writer_reserve(w, attr, value_len);
    if (p && value_len)
        memcpy(p, value, value_len);
}

void media_stun_writer_add_u32(struct media_stun_writer *w, uint16_t attr, uint32_t value)
{
    uint8_t *p = writer_reserve(w, attr, 4);
    if (p)
        wr32(p, value);
}

void media_stun_writer_add_u64(struct media_stun_writer *w, uint16_t attr, uint64_t value)
{
    uint8_t *p = writer_reserve(w, attr, 8);
    if (p)
        wr64(p, value);
}

void media_stun_writer_add_xor_address(struct media_stun_writer *w, uint16_t attr,
                                       const struct sockaddr_storage *addr)
{
    if (w->err)
        return;
    uint16_t port;
    uint8_t family;
    const uint8_t *ip;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
    if (addr->ss_family == AF_INET) {
        family = FAMILY_IPV4;
        port = ntohs(sin->sin_port);
        ip = (const uint8_t *)&sin->sin_addr;
    } else if (addr->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
        /* A dual-stack socket's view of an IPv4 peer: tell the peer its IPv4 address. */
        family = FAMILY_IPV4;
        port = ntohs(sin6->sin6_port);
        ip = sin6->sin6_addr.s6_addr + 12;
    } else if (addr->ss_family == AF_INET6) {
        family = FAMILY_IPV6;
        port = ntohs(sin6->sin6_port);
        ip = sin6->sin6_addr.s6_addr;
    } else {
        w->err = MEDIA_STUN_ERR_INVALID;
        return;
    }
    size_t ip_len = family == FAMILY_IPV4 ? 4 : 16;
    uint8_t *p = writer_reserve(w, attr, 4 + ip_len);
    if (!p)
        return;
    p[0] = 0;
    p[1] = family;
    wr16(p + 2, port ^ (uint16_t)(MEDIA_STUN_MAGIC_COOKIE >> 16));
    /* Bytes 4..19 of the header are the cookie then the transaction id: the XOR key. */
    for (size_t i = 0; i < ip_len; i++)
        p[4 + i] = ip[i] ^ w->buf[4 + i];
}

int media_stun_writer_finish(struct media_stun_ctx *ctx, struct media_stun_writer *w,
                             const char *password, bool fingerprint)
{
    if (w->err)
        return w->err;
    if (password) {
        size_t at = w->len;
        uint8_t *p = writer_reserve(w, MEDIA_STUN_ATTR_MESSAGE_INTEGRITY, MEDIA_STUN_HMAC_SIZE);
        if (!p)
            return w->err;
        /* The length field now ends right after MESSAGE-INTEGRITY, as the HMAC wants. */
        int rc = integrity_value(ctx, password, w->buf, at, p);
        if (rc != 0)
            return w->err = rc;
    }
    if (fingerprint) {
        size_t at = w->len;
        uint8_t *p = writer_reserve(w, MEDIA_STUN_ATTR_FINGERPRINT, 4);
        if (!p)
            return w->err;
        wr32(p, fingerprint_value(w->buf, at));
    }
    return (int)w->len;
}

int media_stun_build_binding_success(struct media_stun_ctx *ctx, const uint8_t *txid,
                                     const struct sockaddr_storage *mapped, const char *password,
                                     uint8_t *buf, size_t cap)
{
    if (!mapped || !password)
        return MEDIA_STUN_ERR_INVALID;
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, cap, MEDIA_STUN_BINDING_SUCCESS, txid);
    media_stun_writer_add_xor_address(&w, MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, mapped);
    return media_stun_writer_finish(ctx, &w, password, true);
}

int media_stun_build_binding_request(struct media_stun_ctx *ctx,
                                     const struct media_stun_request_params *p, uint8_t *buf,
                                     size_t cap)
{
    if (!p->remote_ufrag || !p->local_ufrag || !p->remote_pwd)
        return MEDIA_STUN_ERR_INVALID;
    size_t rn = strlen(p->remote_ufrag), ln = strlen(p->local_ufrag);
    if (rn > 0xFFFF || ln > 0xFFFF - rn - 1)
        return MEDIA_STUN_ERR_INVALID;
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, cap, MEDIA_STUN_BINDING_REQUEST, p->txid);
    uint8_t *user = writer_reserve(&w, MEDIA_STUN_ATTR_USERNAME, rn + 1 + ln);
    if (user) {
        memcpy(user, p->remote_ufrag, rn);
        user[rn] = ':';
        memcpy(user + rn + 1, p->local_ufrag, ln);
    }
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, p->priority);
    media_stun_writer_add_u64(
        &w, p->controlling ? MEDIA_STUN_ATTR_ICE_CONTROLLING : MEDIA_STUN_ATTR_ICE_CONTROLLED,
        p->tie_breaker);
    if (p->use_candidate)
        media_stun_writer_add(&w, MEDIA_STUN_ATTR_USE_CANDIDATE, NULL, 0);
    return media_stun_writer_finish(ctx, &w, p->remote_pwd, true);
}

static const char *error_reason(int code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthenticated"; /* RFC 8489's name; RFC 5389 said "Unauthorized" */
    case 420:
        return "Unknown Attribute";
    case 487:
        return "Role Conflict";
    case 500:
        return "Server Error";
    default:
        return "";
    }
}

int media_stun_build_error(struct media_stun_ctx *ctx, const struct media_stun_msg *request,
                           int code, const char *password, uint8_t *buf, size_t cap)
{
    if (code < 300 || code > 699 || request->cls != MEDIA_STUN_REQUEST || !request->txid)
        return MEDIA_STUN_ERR_INVALID;
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, cap, media_stun_type(request->method, MEDIA_STUN_ERROR),
                           request->txid);
    const char *reason = error_reason(code);
    size_t reason_len = strlen(reason);
    uint8_t *p = writer_reserve(&w, MEDIA_STUN_ATTR_ERROR_CODE, 4 + reason_len);
    if (p) {
        p[2] = (uint8_t)(code / 100);
        p[3] = (uint8_t)(code % 100);
        memcpy(p + 4, reason, reason_len);
    }
    if (code == 420) {
        uint8_t *list = writer_reserve(&w, MEDIA_STUN_ATTR_UNKNOWN_ATTRIBUTES,
                                       2 * (size_t)request->unknown_count);
        for (unsigned i = 0; list && i < request->unknown_count; i++)
            wr16(list + 2 * i, request->unknown[i]);
    }
    return media_stun_writer_finish(ctx, &w, password, true);
}
