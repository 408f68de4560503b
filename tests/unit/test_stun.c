/*
 * test_stun.c - the STUN codec and the ICE-lite Binding check: RFC 5769's
 * test vectors (parsed, verified and reproduced byte for byte), tampering,
 * truncation at every length, hostile lengths, round trips through the
 * builders, unknown attributes and the 4xx answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <cmocka.h>

#include "stun.h"

/* ------------------------------------------------------------------------- */
/* RFC 5769 test vectors                                                      */
/* ------------------------------------------------------------------------- */

/* Section 2: the short-term password of every sample below. */
static const char rfc_pwd[] = "VOkJxbRl1RmTxUk/WvJxBt";

static const uint8_t rfc_txid[MEDIA_STUN_TXID_SIZE] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                                       0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* 2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME "evtj:h6vY". */
static const uint8_t rfc_request[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* 2.2: the success response, SOFTWARE "test vector", XOR-MAPPED-ADDRESS 192.0.2.1:32853. */
static const uint8_t rfc_response_v4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* 2.3: the same with XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const uint8_t rfc_response_v6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

/* Offsets in the vectors above. */
#define REQ_MI_OFFSET     76
#define REQ_FP_OFFSET     100
#define RESP_XMA_OFFSET   36
#define RESP_V4_MI_OFFSET 48
#define RESP_V6_MI_OFFSET 60

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */
/* ------------------------------------------------------------------------- */

static const uint8_t txid_a[MEDIA_STUN_TXID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static struct sockaddr_storage addr_v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage addr_v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

static void assert_same_address(const struct sockaddr_storage *got,
                                const struct sockaddr_storage *want)
{
    assert_int_equal(got->ss_family, want->ss_family);
    if (want->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)got, *b = (const void *)want;
        assert_int_equal(a->sin_port, b->sin_port);
        assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *a = (const void *)got, *b = (const void *)want;
        assert_int_equal(a->sin6_port, b->sin6_port);
        assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
    }
}

static void assert_string_view(const char *s, size_t n, const char *want)
{
    assert_non_null(s);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(s, want, n);
}

/* A browser-like request from "peer" to "srv" (password "srv-password-0123456789"). */
#define SRV_UFRAG  "srv1"
#define SRV_PWD    "srv-password-0123456789"
#define PEER_UFRAG "peer"

static size_t build_peer_request(struct media_stun_ctx *ctx, uint8_t *buf, size_t cap,
                                 bool use_candidate, bool controlling)
{
    struct media_stun_request_params p = {
        .txid = txid_a,
        .remote_ufrag = SRV_UFRAG,
        .local_ufrag = PEER_UFRAG,
        .remote_pwd = SRV_PWD,
        .priority = 0x6e7f1eff,
        .controlling = controlling,
        .tie_breaker = 0x0123456789abcdefULL,
        .use_candidate = use_candidate,
    };
    int n = media_stun_build_binding_request(ctx, &p, buf, cap);
    assert_true(n > 0);
    return (size_t)n;
}

/* ------------------------------------------------------------------------- */
/* RFC 5769                                                                   */
/* ------------------------------------------------------------------------- */

static void rfc5769_request_parses_and_verifies(void **state)
{
    struct media_stun_ctx *ctx = *state;
    struct media_stun_msg m;
    assert_int_equal(media_stun_parse(rfc_request, sizeof(rfc_request), &m), 0);
    assert_int_equal(m.len, sizeof(rfc_request));
    assert_int_equal(m.type, MEDIA_STUN_BINDING_REQUEST);
    assert_int_equal(m.method, MEDIA_STUN_METHOD_BINDING);
    assert_int_equal(m.cls, MEDIA_STUN_REQUEST);
    assert_memory_equal(m.txid, rfc_txid, MEDIA_STUN_TXID_SIZE);
    assert_string_view(m.software, m.software_len, "STUN test client");
    assert_string_view(m.username, m.username_len, "evtj:h6vY");
    assert_true(m.has_priority);
    assert_int_equal(m.priority, 0x6e0001ff);
    assert_true(m.has_ice_controlled);
    assert_true(m.ice_controlled == 0x932ff9b151263b36ULL);
    assert_false(m.has_ice_controlling);
    assert_false(m.use_candidate);
    assert_false(m.has_xor_mapped);
    assert_int_equal(m.integrity_offset, REQ_MI_OFFSET);
    assert_int_equal(m.fingerprint_offset, REQ_FP_OFFSET);
    assert_int_equal(m.unknown_total, 0);

    assert_int_equal(media_stun_verify_fingerprint(&m), 0);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, rfc_pwd), 0);
    assert_int_equal(media_stun_verify_integrity(NULL, &m, rfc_pwd), 0);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, "VOkJxbRl1RmTxUk/WvJxBT"),
                     MEDIA_STUN_ERR_BAD_INTEGRITY);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, ""), MEDIA_STUN_ERR_BAD_INTEGRITY);

    const char *ufrag;
    size_t ufrag_len;
    assert_int_equal(media_stun_local_ufrag(&m, &ufrag, &ufrag_len), 0);
    assert_string_view(ufrag, ufrag_len, "evtj");

    assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, NULL), MEDIA_STUN_CHECK_OK);
    assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, "h6vY"),
                     MEDIA_STUN_CHECK_OK);
    assert_int_equal(media_stun_check_binding(NULL, &m, "evtj", rfc_pwd, "h6vY"),
                     MEDIA_STUN_CHECK_OK);
    assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, "h6v"),
                     MEDIA_STUN_CHECK_WRONG_USERNAME);
    assert_int_equal(media_stun_check_binding(ctx, &m, "h6vY", rfc_pwd, NULL),
                     MEDIA_STUN_CHECK_WRONG_USERNAME);
    assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", "wrong", NULL),
                     MEDIA_STUN_CHECK_BAD_INTEGRITY);
}

/*
 * RFC 5769 pads with spaces where RFC 8489 asks for zeros, and our writer
 * pads with zeros. To reproduce the vectors byte for byte, the padded
 * attributes are written at their padded length (spaces included) and their
 * length field is then set back to the vector's: everything else, including
 * MESSAGE-INTEGRITY and FINGERPRINT, comes from the writer.
 */
static void set_attr_len(struct media_stun_writer *w, size_t attr_offset, uint16_t len)
{
    w->buf[attr_offset + 2] = (uint8_t)(len >> 8);
    w->buf[attr_offset + 3] = (uint8_t)len;
}

static void rfc5769_request_reproduced(void **state)
{
    struct media_stun_ctx *ctx = *state;
    uint8_t buf[256];
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_REQUEST, rfc_txid);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_SOFTWARE, "STUN test client", 16);
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, 0x6e0001ff);
    media_stun_writer_add_u64(&w, MEDIA_STUN_ATTR_ICE_CONTROLLED, 0x932ff9b151263b36ULL);
    size_t user_at = w.len;
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, "evtj:h6vY   ", 12);
    set_attr_len(&w, user_at, 9);
    int n = media_stun_writer_finish(ctx, &w, rfc_pwd, true);
    assert_int_equal(n, sizeof(rfc_request));
    assert_memory_equal(buf, rfc_request, sizeof(rfc_request));
}

static void check_response_vector(struct media_stun_ctx *ctx, const uint8_t *vec, size_t vec_len,
                                  const struct sockaddr_storage *mapped, size_t mi_offset)
{
    struct media_stun_msg m;
    assert_int_equal(media_stun_parse(vec, vec_len, &m), 0);
    assert_int_equal(m.type, MEDIA_STUN_BINDING_SUCCESS);
    assert_int_equal(m.cls, MEDIA_STUN_SUCCESS);
    assert_int_equal(m.method, MEDIA_STUN_METHOD_BINDING);
    assert_memory_equal(m.txid, rfc_txid, MEDIA_STUN_TXID_SIZE);
    assert_string_view(m.software, m.software_len, "test vector");
    assert_true(m.has_xor_mapped);
    assert_same_address(&m.xor_mapped, mapped);
    assert_int_equal(m.integrity_offset, mi_offset);
    assert_int_equal(m.fingerprint_offset, mi_offset + 24);
    assert_int_equal(media_stun_verify_fingerprint(&m), 0);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, rfc_pwd), 0);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, "x"), MEDIA_STUN_ERR_BAD_INTEGRITY);
    /* A response is not a request for the ICE-lite check. */
    assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, NULL),
                     MEDIA_STUN_CHECK_NOT_REQUEST);

    /* The writer reproduces it byte for byte (see rfc5769_request_reproduced). */
    uint8_t buf[256];
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_SUCCESS, rfc_txid);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_SOFTWARE, "test vector ", 12);
    set_attr_len(&w, MEDIA_STUN_HEADER_SIZE, 11);
    media_stun_writer_add_xor_address(&w, MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, mapped);
    assert_int_equal(media_stun_writer_finish(ctx, &w, rfc_pwd, true), (int)vec_len);
    assert_memory_equal(buf, vec, vec_len);

    /* The success builder writes the same XOR-MAPPED-ADDRESS, and its output verifies. */
    int n = media_stun_build_binding_success(ctx, rfc_txid, mapped, rfc_pwd, buf, sizeof(buf));
    size_t xma_len = mi_offset - RESP_XMA_OFFSET;
    assert_int_equal(n, (int)(MEDIA_STUN_HEADER_SIZE + xma_len + 24 + 8));
    assert_memory_equal(buf + MEDIA_STUN_HEADER_SIZE, vec + RESP_XMA_OFFSET, xma_len);
    assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
    assert_memory_equal(m.txid, rfc_txid, MEDIA_STUN_TXID_SIZE);
    assert_same_address(&m.xor_mapped, mapped);
    assert_int_equal(media_stun_verify_fingerprint(&m), 0);
    assert_int_equal(media_stun_verify_integrity(ctx, &m, rfc_pwd), 0);
}

static void rfc5769_ipv4_response(void **state)
{
    struct sockaddr_storage mapped = addr_v4("192.0.2.1", 32853);
    check_response_vector(*state, rfc_response_v4, sizeof(rfc_response_v4), &mapped,
                          RESP_V4_MI_OFFSET);
}

static void rfc5769_ipv6_response(void **state)
{
    struct sockaddr_storage mapped = addr_v6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
    check_response_vector(*state, rfc_response_v6, sizeof(rfc_response_v6), &mapped,
                          RESP_V6_MI_OFFSET);
}

/* ------------------------------------------------------------------------- */
/* Tampering                                                                  */
/* ------------------------------------------------------------------------- */

static void tampered_integrity(void **state)
{
    struct media_stun_ctx *ctx = *state;
    uint8_t buf[sizeof(rfc_request)];
    struct media_stun_msg m;
    /* Any changed byte covered by the HMAC, or in the HMAC itself, is caught. */
    for (size_t i = 0; i < REQ_FP_OFFSET; i++) {
        if (i == 2 || i == 3 || (i >= 4 && i < 8))
            continue; /* length and cookie: parsing already refuses those */
        memcpy(buf, rfc_request, sizeof(buf));
        buf[i] ^= 0x01;
        if (media_stun_parse(buf, sizeof(buf), &m) != 0)
            continue; /* e.g. an attribute type changed into one with a fixed size */
        assert_int_equal(media_stun_verify_integrity(ctx, &m, rfc_pwd),
                         m.integrity_offset ? MEDIA_STUN_ERR_BAD_INTEGRITY
                                            : MEDIA_STUN_ERR_NO_INTEGRITY);
        assert_int_not_equal(media_stun_verify_fingerprint(&m), 0);
        assert_int_not_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, NULL),
                             MEDIA_STUN_CHECK_OK);
    }

    /* A wrong HMAC behind a valid FINGERPRINT reaches the integrity check: 401. */
    uint8_t req[256];
    struct media_stun_request_params p = {.txid = txid_a,
                                          .remote_ufrag = SRV_UFRAG,
                                          .local_ufrag = PEER_UFRAG,
                                          .remote_pwd = "not-the-password",
                                          .priority = 1,
                                          .controlling = true,
                                          .tie_breaker = 7};
    int n = media_stun_build_binding_request(ctx, &p, req, sizeof(req));
    assert_true(n > 0);
    assert_int_equal(media_stun_parse(req, (size_t)n, &m), 0);
    assert_int_equal(media_stun_verify_fingerprint(&m), 0);
    enum media_stun_check c = media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, PEER_UFRAG);
    assert_int_equal(c, MEDIA_STUN_CHECK_BAD_INTEGRITY);
    assert_int_equal(media_stun_check_error_code(c), 401);
}

static void tampered_fingerprint(void **state)
{
    struct media_stun_ctx *ctx = *state;
    struct media_stun_msg m;
    for (size_t i = REQ_FP_OFFSET + 4; i < sizeof(rfc_request); i++) {
        uint8_t buf[sizeof(rfc_request)];
        memcpy(buf, rfc_request, sizeof(buf));
        buf[i] ^= 0x80;
        assert_int_equal(media_stun_parse(buf, sizeof(buf), &m), 0);
        assert_int_equal(media_stun_verify_fingerprint(&m), MEDIA_STUN_ERR_BAD_FINGERPRINT);
        /* MESSAGE-INTEGRITY does not cover FINGERPRINT ... */
        assert_int_equal(media_stun_verify_integrity(ctx, &m, rfc_pwd), 0);
        /* ... but the ICE-lite check drops the message before looking at it. */
        enum media_stun_check c = media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, NULL);
        assert_int_equal(c, MEDIA_STUN_CHECK_BAD_FINGERPRINT);
        assert_int_equal(media_stun_check_error_code(c), 0);
    }
}

/* ------------------------------------------------------------------------- */
/* Hostile lengths                                                            */
/* ------------------------------------------------------------------------- */

static void truncated_at_every_length(void **state)
{
    struct media_stun_ctx *ctx = *state;
    struct media_stun_msg m;
    const uint8_t *vectors[] = {rfc_request, rfc_response_v4, rfc_response_v6};
    size_t sizes[] = {sizeof(rfc_request), sizeof(rfc_response_v4), sizeof(rfc_response_v6)};
    for (size_t v = 0; v < 3; v++) {
        uint8_t buf[256];
        for (size_t n = 0; n < sizes[v]; n++) {
            /* Cut short: the header's length no longer matches the datagram. */
            memcpy(buf, vectors[v], n);
            int rc = media_stun_parse(buf, n, &m);
            assert_true(rc == (n < MEDIA_STUN_HEADER_SIZE ? MEDIA_STUN_ERR_NOT_STUN
                                                          : MEDIA_STUN_ERR_LENGTH));
            if (n < MEDIA_STUN_HEADER_SIZE || n % 4 != 0)
                continue;
            /* Cut short with a consistent header: parses only at attribute boundaries. */
            buf[2] = (uint8_t)((n - MEDIA_STUN_HEADER_SIZE) >> 8);
            buf[3] = (uint8_t)(n - MEDIA_STUN_HEADER_SIZE);
            rc = media_stun_parse(buf, n, &m);
            assert_true(rc == 0 || rc == MEDIA_STUN_ERR_MALFORMED);
            if (rc != 0)
                continue;
            assert_int_equal(m.len, n);
            assert_int_equal(m.fingerprint_offset, 0);
            assert_int_equal(media_stun_verify_fingerprint(&m), MEDIA_STUN_ERR_NO_FINGERPRINT);
            if (v == 0)
                assert_int_equal(media_stun_check_binding(ctx, &m, "evtj", rfc_pwd, NULL),
                                 MEDIA_STUN_CHECK_BAD_FINGERPRINT);
        }
    }
}

static void attribute_overruns(void **state)
{
    (void)state;
    struct media_stun_msg m;
    uint8_t buf[64];
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_REQUEST, txid_a);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, "abcd:efgh", 9); /* 4 + 12 bytes */
    assert_int_equal(w.err, 0);
    assert_int_equal(w.len, 36);
    assert_int_equal(media_stun_parse(buf, w.len, &m), 0);

    /* Each declared attribute length whose padded value passes the end is refused. */
    for (unsigned n = 13; n <= 0xFFFF; n += (n < 64 ? 1 : 251)) {
        buf[22] = (uint8_t)(n >> 8);
        buf[23] = (uint8_t)n;
        assert_int_equal(media_stun_parse(buf, w.len, &m), MEDIA_STUN_ERR_MALFORMED);
    }
    /* 9..12 fit in the 12 padded bytes. */
    for (unsigned n = 9; n <= 12; n++) {
        buf[23] = (uint8_t)n;
        buf[22] = 0;
        assert_int_equal(media_stun_parse(buf, w.len, &m), 0);
        assert_int_equal(m.username_len, n);
    }
    /* Padding is part of the message: a 9-byte value with no room for its padding. */
    buf[23] = 9;
    buf[2] = 0;
    buf[3] = 13;
    assert_int_equal(media_stun_parse(buf, 33, &m), MEDIA_STUN_ERR_LENGTH);
    buf[3] = 12;
    assert_int_equal(media_stun_parse(buf, 32, &m), MEDIA_STUN_ERR_MALFORMED);
}

static void odd_lengths(void **state)
{
    (void)state;
    struct media_stun_msg m;
    uint8_t buf[32] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
    assert_int_equal(media_stun_parse(buf, 20, &m), 0);
    assert_int_equal(m.len, 20);
    for (unsigned declared = 1; declared < 12; declared++) {
        if (declared % 4 == 0)
            continue;
        buf[3] = (uint8_t)declared;
        assert_int_equal(media_stun_parse(buf, 20 + declared, &m), MEDIA_STUN_ERR_LENGTH);
    }
    /* A well-formed header in a longer datagram: trailing bytes are not ignored. */
    buf[3] = 0;
    for (size_t len = 21; len < sizeof(buf); len++)
        assert_int_equal(media_stun_parse(buf, len, &m), MEDIA_STUN_ERR_LENGTH);
}

static void non_stun_first_bytes(void **state)
{
    (void)state;
    struct media_stun_msg m;
    uint8_t buf[20];
    memcpy(buf, rfc_request, 20);
    buf[3] = 0;
    assert_int_equal(media_stun_parse(buf, 20, &m), 0);
    /*
     * STUN's two top bits are zero (RFC 8489 section 5): TURN channels (64..79),
     * RTP/RTCP (128..191) and the rest are refused. The narrower RFC 7983 rule
     * (0..3) is media_classify_packet()'s; this parser accepts any method.
     */
    const uint8_t firsts[] = {0x40, 0x4f, 0x80, 0xbe, 0xc0, 0xff};
    for (size_t i = 0; i < sizeof(firsts); i++) {
        buf[0] = firsts[i];
        assert_int_equal(media_stun_parse(buf, 20, &m), MEDIA_STUN_ERR_NOT_STUN);
    }
    /* A DTLS record header (20..63) is caught by the missing magic cookie. */
    const uint8_t dtls[20] = {0x16, 0xfe, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(media_stun_parse(dtls, sizeof(dtls), &m), MEDIA_STUN_ERR_NOT_STUN);
    /* An RFC 3489 header (no magic cookie) is not ours either. */
    buf[0] = 0x00;
    buf[4] = 0x21;
    buf[7] = 0x43;
    assert_int_equal(media_stun_parse(buf, 20, &m), MEDIA_STUN_ERR_NOT_STUN);
    assert_int_equal(media_stun_parse(buf, 0, &m), MEDIA_STUN_ERR_NOT_STUN);
}

static void huge_declared_length(void **state)
{
    (void)state;
    struct media_stun_msg m;
    uint8_t buf[1500];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, rfc_request, 20);
    buf[2] = 0xff;
    buf[3] = 0xfc;
    assert_int_equal(media_stun_parse(buf, sizeof(buf), &m), MEDIA_STUN_ERR_LENGTH);
    assert_int_equal(media_stun_parse(buf, 20, &m), MEDIA_STUN_ERR_LENGTH);
    buf[3] = 0xff;
    assert_int_equal(media_stun_parse(buf, sizeof(buf), &m), MEDIA_STUN_ERR_LENGTH);
    /* A 1480-byte body of zeros: 370 empty attributes of type 0, all unknown. */
    buf[2] = (uint8_t)((sizeof(buf) - 20) >> 8);
    buf[3] = (uint8_t)(sizeof(buf) - 20);
    assert_int_equal(media_stun_parse(buf, sizeof(buf), &m), 0);
    assert_int_equal(m.unknown_count, MEDIA_STUN_MAX_UNKNOWN);
    assert_int_equal(m.unknown_total, (sizeof(buf) - 20) / 4);
}

/* ------------------------------------------------------------------------- */
/* Round trips                                                                */
/* ------------------------------------------------------------------------- */

static void xor_mapped_address_round_trip(void **state)
{
    struct media_stun_ctx *ctx = *state;
    struct sockaddr_storage cases[] = {
        addr_v4("203.0.113.7", 50000),      addr_v4("0.0.0.0", 0),
        addr_v4("255.255.255.255", 65535),  addr_v6("2001:db8::1", 443),
        addr_v6("fe80::1234:5678:9abc", 1), addr_v6("ffff:ffff:ffff:ffff::", 65535),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[128];
        struct media_stun_msg m;
        int n = media_stun_build_binding_success(ctx, txid_a, &cases[i], SRV_PWD, buf, sizeof(buf));
        assert_int_equal(n, cases[i].ss_family == AF_INET ? 64 : 76);
        assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
        assert_int_equal(m.type, MEDIA_STUN_BINDING_SUCCESS);
        assert_memory_equal(m.txid, txid_a, MEDIA_STUN_TXID_SIZE);
        assert_true(m.has_xor_mapped);
        assert_same_address(&m.xor_mapped, &cases[i]);
        assert_int_equal(media_stun_verify_fingerprint(&m), 0);
        assert_int_equal(media_stun_verify_integrity(ctx, &m, SRV_PWD), 0);
    }

    /* What a dual-stack socket reports for an IPv4 peer is answered as IPv4. */
    struct sockaddr_storage mapped = addr_v6("::ffff:198.51.100.20", 40000);
    uint8_t buf[128];
    struct media_stun_msg m;
    int n = media_stun_build_binding_success(ctx, txid_a, &mapped, SRV_PWD, buf, sizeof(buf));
    assert_int_equal(n, 64);
    assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
    struct sockaddr_storage want = addr_v4("198.51.100.20", 40000);
    assert_same_address(&m.xor_mapped, &want);

    /* Other families are refused. */
    struct sockaddr_storage unix_addr = {.ss_family = AF_UNIX};
    assert_int_equal(
        media_stun_build_binding_success(ctx, txid_a, &unix_addr, SRV_PWD, buf, sizeof(buf)),
        MEDIA_STUN_ERR_INVALID);
}

static void request_round_trip(void **state)
{
    struct media_stun_ctx *ctx = *state;
    for (int use = 0; use <= 1; use++) {
        for (int controlling = 0; controlling <= 1; controlling++) {
            uint8_t buf[256];
            size_t n = build_peer_request(ctx, buf, sizeof(buf), use, controlling);
            struct media_stun_msg m;
            assert_int_equal(media_stun_parse(buf, n, &m), 0);
            assert_int_equal(m.type, MEDIA_STUN_BINDING_REQUEST);
            assert_string_view(m.username, m.username_len, SRV_UFRAG ":" PEER_UFRAG);
            assert_true(m.has_priority);
            assert_int_equal(m.priority, 0x6e7f1eff);
            assert_int_equal(m.use_candidate, use);
            assert_int_equal(m.has_ice_controlling, controlling);
            assert_int_equal(m.has_ice_controlled, !controlling);
            assert_true((controlling ? m.ice_controlling : m.ice_controlled) ==
                        0x0123456789abcdefULL);
            assert_null(m.software);
            assert_int_equal(m.fingerprint_offset, n - 8);
            assert_int_equal(m.integrity_offset, n - 32);
            assert_int_equal(media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, PEER_UFRAG),
                             MEDIA_STUN_CHECK_OK);
            assert_int_equal(media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, NULL),
                             MEDIA_STUN_CHECK_OK);
            const char *ufrag;
            size_t len;
            assert_int_equal(media_stun_local_ufrag(&m, &ufrag, &len), 0);
            assert_string_view(ufrag, len, SRV_UFRAG);

            /* The answer echoes the transaction id and verifies at the peer. */
            struct sockaddr_storage from = addr_v4("10.0.0.2", 61000);
            uint8_t resp[128];
            int rn =
                media_stun_build_binding_success(ctx, m.txid, &from, SRV_PWD, resp, sizeof(resp));
            struct media_stun_msg r;
            assert_int_equal(media_stun_parse(resp, (size_t)rn, &r), 0);
            assert_memory_equal(r.txid, txid_a, MEDIA_STUN_TXID_SIZE);
            assert_int_equal(media_stun_verify_integrity(ctx, &r, SRV_PWD), 0);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Unknown attributes, checks and errors                                      */
/* ------------------------------------------------------------------------- */

static void unknown_comprehension_required(void **state)
{
    struct media_stun_ctx *ctx = *state;
    uint8_t buf[256];
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_REQUEST, txid_a);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, SRV_UFRAG ":" PEER_UFRAG, 9);
    media_stun_writer_add_u32(&w, 0x0003, 0x00000006);        /* CHANGE-REQUEST (RFC 5780) */
    media_stun_writer_add(&w, 0xC057, "\x00\x01\x00\x0a", 4); /* GOOG-NETWORK-INFO: optional */
    media_stun_writer_add(&w, 0x7FFF, "x", 1);
    int n = media_stun_writer_finish(ctx, &w, SRV_PWD, true);
    assert_true(n > 0);

    struct media_stun_msg m;
    assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
    assert_int_equal(m.unknown_count, 2);
    assert_int_equal(m.unknown_total, 2);
    assert_int_equal(m.unknown[0], 0x0003);
    assert_int_equal(m.unknown[1], 0x7FFF);
    enum media_stun_check c = media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, PEER_UFRAG);
    assert_int_equal(c, MEDIA_STUN_CHECK_UNKNOWN_ATTRIBUTE);
    assert_int_equal(media_stun_check_error_code(c), 420);
    /* Unauthenticated, it is a 401 first: unknown attributes are not worth an answer. */
    assert_int_equal(media_stun_check_binding(ctx, &m, SRV_UFRAG, "other", PEER_UFRAG),
                     MEDIA_STUN_CHECK_BAD_INTEGRITY);

    uint8_t resp[256];
    int rn = media_stun_build_error(ctx, &m, 420, SRV_PWD, resp, sizeof(resp));
    assert_true(rn > 0);
    struct media_stun_msg r;
    assert_int_equal(media_stun_parse(resp, (size_t)rn, &r), 0);
    assert_int_equal(r.type, MEDIA_STUN_BINDING_ERROR);
    assert_int_equal(r.cls, MEDIA_STUN_ERROR);
    assert_memory_equal(r.txid, txid_a, MEDIA_STUN_TXID_SIZE);
    assert_int_equal(r.error_code, 420);
    assert_string_view(r.error_reason, r.error_reason_len, "Unknown Attribute");
    /* UNKNOWN-ATTRIBUTES follows ERROR-CODE (4 + 4 + 17 bytes, padded to 28). */
    const uint8_t list[] = {0x00, 0x0a, 0x00, 0x04, 0x00, 0x03, 0x7f, 0xff};
    assert_memory_equal(resp + 20 + 28, list, sizeof(list));
    assert_int_equal(media_stun_verify_integrity(ctx, &r, SRV_PWD), 0);
    assert_int_equal(media_stun_verify_fingerprint(&r), 0);
}

static void error_responses(void **state)
{
    struct media_stun_ctx *ctx = *state;
    struct media_stun_msg req;
    assert_int_equal(media_stun_parse(rfc_request, sizeof(rfc_request), &req), 0);
    const struct {
        int code;
        const char *reason;
        const char *pwd;
    } cases[] = {
        {400, "Bad Request", NULL},
        {401, "Unauthenticated", NULL},
        {487, "Role Conflict", rfc_pwd},
        {500, "Server Error", rfc_pwd},
        {300, "", NULL},
        {699, "", rfc_pwd},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[128];
        int n = media_stun_build_error(ctx, &req, cases[i].code, cases[i].pwd, buf, sizeof(buf));
        assert_true(n > 0);
        struct media_stun_msg r;
        assert_int_equal(media_stun_parse(buf, (size_t)n, &r), 0);
        assert_int_equal(r.type, MEDIA_STUN_BINDING_ERROR);
        assert_memory_equal(r.txid, rfc_txid, MEDIA_STUN_TXID_SIZE);
        assert_int_equal(r.error_code, cases[i].code);
        assert_string_view(r.error_reason, r.error_reason_len, cases[i].reason);
        assert_int_equal(media_stun_verify_fingerprint(&r), 0);
        assert_int_equal(media_stun_verify_integrity(ctx, &r, rfc_pwd),
                         cases[i].pwd ? 0 : MEDIA_STUN_ERR_NO_INTEGRITY);
        assert_int_equal(media_stun_check_binding(ctx, &r, "evtj", rfc_pwd, NULL),
                         MEDIA_STUN_CHECK_NOT_REQUEST);
    }
    uint8_t buf[128];
    assert_int_equal(media_stun_build_error(ctx, &req, 200, NULL, buf, sizeof(buf)),
                     MEDIA_STUN_ERR_INVALID);
    assert_int_equal(media_stun_build_error(ctx, &req, 700, NULL, buf, sizeof(buf)),
                     MEDIA_STUN_ERR_INVALID);
    /* Only requests are answered. */
    struct media_stun_msg resp;
    assert_int_equal(media_stun_parse(rfc_response_v4, sizeof(rfc_response_v4), &resp), 0);
    assert_int_equal(media_stun_build_error(ctx, &resp, 400, NULL, buf, sizeof(buf)),
                     MEDIA_STUN_ERR_INVALID);
}

/* Builds a Binding request with USERNAME `user` (none if NULL), and MI and FP as asked. */
static int custom_request(struct media_stun_ctx *ctx, uint16_t type, const char *user, bool mi,
                          bool fp, uint8_t *buf, size_t cap)
{
    struct media_stun_writer w;
    media_stun_writer_init(&w, buf, cap, type, txid_a);
    if (user)
        media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, user, strlen(user));
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, 1);
    return media_stun_writer_finish(ctx, &w, mi ? SRV_PWD : NULL, fp);
}

static void binding_check_results(void **state)
{
    struct media_stun_ctx *ctx = *state;
    const struct {
        uint16_t type;
        const char *user;
        bool mi, fp;
        const char *remote;
        enum media_stun_check want;
    } cases[] = {
        {MEDIA_STUN_BINDING_REQUEST, "srv1:peer", true, true, "peer", MEDIA_STUN_CHECK_OK},
        {MEDIA_STUN_BINDING_INDICATION, "srv1:peer", true, true, NULL,
         MEDIA_STUN_CHECK_NOT_REQUEST},
        {MEDIA_STUN_BINDING_SUCCESS, "srv1:peer", true, true, NULL, MEDIA_STUN_CHECK_NOT_REQUEST},
        {0x0003, "srv1:peer", true, true, NULL, MEDIA_STUN_CHECK_NOT_REQUEST}, /* Allocate */
        {MEDIA_STUN_BINDING_REQUEST, "srv1:peer", true, false, NULL,
         MEDIA_STUN_CHECK_BAD_FINGERPRINT},
        {MEDIA_STUN_BINDING_REQUEST, NULL, true, true, NULL, MEDIA_STUN_CHECK_MISSING_AUTH},
        {MEDIA_STUN_BINDING_REQUEST, "srv1:peer", false, true, NULL, MEDIA_STUN_CHECK_MISSING_AUTH},
        {MEDIA_STUN_BINDING_REQUEST, "srv1", true, true, NULL, MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv1:", true, true, NULL, MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, ":peer", true, true, NULL, MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "", true, true, NULL, MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv:peer", true, true, NULL, MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv12:peer", true, true, NULL,
         MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv1:peer2", true, true, "peer",
         MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv1:pee", true, true, "peer",
         MEDIA_STUN_CHECK_WRONG_USERNAME},
        {MEDIA_STUN_BINDING_REQUEST, "srv1:peer:x", true, true, NULL, MEDIA_STUN_CHECK_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[128];
        int n =
            custom_request(ctx, cases[i].type, cases[i].user, cases[i].mi, cases[i].fp, buf, 128);
        assert_true(n > 0);
        struct media_stun_msg m;
        assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
        enum media_stun_check got =
            media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, cases[i].remote);
        if (got != cases[i].want)
            fail_msg("case %zu: got %s, want %s", i, media_stun_check_name(got),
                     media_stun_check_name(cases[i].want));
    }
    assert_int_equal(media_stun_check_error_code(MEDIA_STUN_CHECK_MISSING_AUTH), 400);
    assert_int_equal(media_stun_check_error_code(MEDIA_STUN_CHECK_WRONG_USERNAME), 401);
    assert_int_equal(media_stun_check_error_code(MEDIA_STUN_CHECK_OK), 0);
    assert_int_equal(media_stun_check_error_code(MEDIA_STUN_CHECK_NOT_REQUEST), 0);
    for (int c = 0; c < MEDIA_STUN_CHECK_COUNT; c++)
        assert_string_not_equal(media_stun_check_name((enum media_stun_check)c), "unknown");
    assert_string_equal(media_stun_check_name(MEDIA_STUN_CHECK_COUNT), "unknown");
}

static void attributes_after_integrity_and_fingerprint(void **state)
{
    struct media_stun_ctx *ctx = *state;
    uint8_t buf[256];
    struct media_stun_writer w;
    /* Anything but FINGERPRINT after MESSAGE-INTEGRITY is skipped unread. */
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_REQUEST, txid_a);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, "srv1:peer", 9);
    assert_true(media_stun_writer_finish(ctx, &w, SRV_PWD, false) > 0);
    media_stun_writer_add(&w, 0x0003, "abcd", 4);
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, 5);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_PRIORITY, "abc", 3); /* malformed, but unread */
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USE_CANDIDATE, NULL, 0);
    int n = media_stun_writer_finish(ctx, &w, NULL, true);
    assert_true(n > 0);
    struct media_stun_msg m;
    assert_int_equal(media_stun_parse(buf, (size_t)n, &m), 0);
    assert_int_equal(m.unknown_total, 0);
    assert_false(m.has_priority);
    assert_false(m.use_candidate);
    assert_int_equal(m.integrity_offset, 36);
    assert_int_equal(m.fingerprint_offset, (size_t)n - 8);
    assert_int_equal(media_stun_check_binding(ctx, &m, SRV_UFRAG, SRV_PWD, PEER_UFRAG),
                     MEDIA_STUN_CHECK_OK);

    /* Nothing may follow FINGERPRINT. */
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_SOFTWARE, "late", 4);
    assert_int_equal(w.err, 0);
    assert_int_equal(media_stun_parse(buf, w.len, &m), MEDIA_STUN_ERR_MALFORMED);
}

static void duplicates_and_malformed_values(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct media_stun_writer w;
    struct media_stun_msg m;
    /* The first occurrence counts. */
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_REQUEST, txid_a);
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, 1);
    media_stun_writer_add_u32(&w, MEDIA_STUN_ATTR_PRIORITY, 2);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, "a:b", 3);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_USERNAME, "c:d", 3);
    assert_int_equal(media_stun_parse(buf, w.len, &m), 0);
    assert_int_equal(m.priority, 1);
    assert_string_view(m.username, m.username_len, "a:b");

    /* Known attributes with impossible sizes or values. */
    const struct {
        uint16_t type;
        const char *value;
        size_t len;
    } bad[] = {
        {MEDIA_STUN_ATTR_PRIORITY, "abc", 3},
        {MEDIA_STUN_ATTR_PRIORITY, "abcde", 5},
        {MEDIA_STUN_ATTR_USE_CANDIDATE, "a", 1},
        {MEDIA_STUN_ATTR_ICE_CONTROLLING, "1234567", 7},
        {MEDIA_STUN_ATTR_ICE_CONTROLLED, "123456789", 9},
        {MEDIA_STUN_ATTR_MESSAGE_INTEGRITY, "0123456789012345678", 19},
        {MEDIA_STUN_ATTR_FINGERPRINT, "abc", 3},
        {MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, "\x00\x03\x00\x00\x01\x02\x03\x04", 8},
        {MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, "\x00\x01\x00\x00\x01\x02\x03\x04\x05", 9},
        {MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, "\x00\x02\x00\x00\x01\x02\x03\x04", 8},
        {MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS, "\x00\x01", 2},
        {MEDIA_STUN_ATTR_ERROR_CODE, "\x00\x00\x07\x00", 4},
        {MEDIA_STUN_ATTR_ERROR_CODE, "\x00\x00\x02\x00", 4},
        {MEDIA_STUN_ATTR_ERROR_CODE, "\x00\x00\x04\x64", 4},
        {MEDIA_STUN_ATTR_ERROR_CODE, "\x00\x00\x04", 3},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_SUCCESS, txid_a);
        media_stun_writer_add(&w, bad[i].type, bad[i].value, bad[i].len);
        assert_int_equal(w.err, 0);
        if (media_stun_parse(buf, w.len, &m) != MEDIA_STUN_ERR_MALFORMED)
            fail_msg("case %zu (attribute 0x%04x) parsed", i, bad[i].type);
    }
    /* ERROR-CODE's reserved bits are ignored; 699 is the largest code. */
    media_stun_writer_init(&w, buf, sizeof(buf), MEDIA_STUN_BINDING_ERROR, txid_a);
    media_stun_writer_add(&w, MEDIA_STUN_ATTR_ERROR_CODE, "\xff\xff\xfe\x63", 4);
    assert_int_equal(media_stun_parse(buf, w.len, &m), 0);
    assert_int_equal(m.error_code, 699);
    assert_int_equal(m.error_reason_len, 0);
}

static void builders_respect_capacity(void **state)
{
    struct media_stun_ctx *ctx = *state;
    uint8_t buf[128];
    struct sockaddr_storage v6 = addr_v6("2001:db8::7", 9);
    int need = media_stun_build_binding_success(ctx, txid_a, &v6, SRV_PWD, buf, sizeof(buf));
    assert_int_equal(need, 76);
    for (int cap = 0; cap < need; cap++) {
        memset(buf, 0xAA, sizeof(buf));
        assert_int_equal(
            media_stun_build_binding_success(ctx, txid_a, &v6, SRV_PWD, buf, (size_t)cap),
            MEDIA_STUN_ERR_NO_SPACE);
        for (size_t i = (size_t)cap; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 0xAA); /* nothing written past the capacity */
    }
    struct media_stun_request_params p = {
        .txid = txid_a, .remote_ufrag = "r", .local_ufrag = "l", .remote_pwd = "p"};
    int req = media_stun_build_binding_request(ctx, &p, buf, sizeof(buf));
    assert_true(req > 0);
    for (int cap = 0; cap < req; cap++)
        assert_int_equal(media_stun_build_binding_request(ctx, &p, buf, (size_t)cap),
                         MEDIA_STUN_ERR_NO_SPACE);
    p.local_ufrag = NULL;
    assert_int_equal(media_stun_build_binding_request(ctx, &p, buf, sizeof(buf)),
                     MEDIA_STUN_ERR_INVALID);

    /* The writer refuses more than a STUN length field can say. */
    static uint8_t big[70000];
    static uint8_t value[0xFFFF];
    struct media_stun_writer w;
    media_stun_writer_init(&w, big, sizeof(big), MEDIA_STUN_BINDING_REQUEST, txid_a);
    media_stun_writer_add(&w, 0x8001, value, 0xFFF0);
    assert_int_equal(w.err, 0);
    media_stun_writer_add(&w, 0x8001, value, 16);
    assert_int_equal(w.err, MEDIA_STUN_ERR_NO_SPACE);
    assert_int_equal(media_stun_writer_finish(ctx, &w, NULL, true), MEDIA_STUN_ERR_NO_SPACE);
    media_stun_writer_init(&w, big, sizeof(big), 0x4001, txid_a);
    assert_int_equal(w.err, MEDIA_STUN_ERR_INVALID);
}

static void message_types(void **state)
{
    (void)state;
    assert_int_equal(media_stun_type(MEDIA_STUN_METHOD_BINDING, MEDIA_STUN_REQUEST), 0x0001);
    assert_int_equal(media_stun_type(MEDIA_STUN_METHOD_BINDING, MEDIA_STUN_INDICATION), 0x0011);
    assert_int_equal(media_stun_type(MEDIA_STUN_METHOD_BINDING, MEDIA_STUN_SUCCESS), 0x0101);
    assert_int_equal(media_stun_type(MEDIA_STUN_METHOD_BINDING, MEDIA_STUN_ERROR), 0x0111);
    /* Every method and class survives the interleaving and a parse. */
    for (unsigned method = 0; method < 0x1000; method += 7) {
        for (int cls = 0; cls < 4; cls++) {
            uint8_t buf[20];
            struct media_stun_writer w;
            media_stun_writer_init(&w, buf, sizeof(buf),
                                   media_stun_type((uint16_t)method, (enum media_stun_class)cls),
                                   txid_a);
            struct media_stun_msg m;
            assert_int_equal(media_stun_parse(buf, w.len, &m), 0);
            assert_int_equal(m.method, method);
            assert_int_equal(m.cls, cls);
        }
    }
    for (int e = 0; e >= MEDIA_STUN_ERR_CRYPTO; e--)
        assert_string_not_equal(media_stun_strerror(e), "unknown error");
    assert_string_equal(media_stun_strerror(-100), "unknown error");
}

static int setup(void **state)
{
    *state = media_stun_ctx_new();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    media_stun_ctx_free(*state);
    media_stun_ctx_free(NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc5769_request_parses_and_verifies),
        cmocka_unit_test(rfc5769_request_reproduced),
        cmocka_unit_test(rfc5769_ipv4_response),
        cmocka_unit_test(rfc5769_ipv6_response),
        cmocka_unit_test(tampered_integrity),
        cmocka_unit_test(tampered_fingerprint),
        cmocka_unit_test(truncated_at_every_length),
        cmocka_unit_test(attribute_overruns),
        cmocka_unit_test(odd_lengths),
        cmocka_unit_test(non_stun_first_bytes),
        cmocka_unit_test(huge_declared_length),
        cmocka_unit_test(xor_mapped_address_round_trip),
        cmocka_unit_test(request_round_trip),
        cmocka_unit_test(unknown_comprehension_required),
        cmocka_unit_test(error_responses),
        cmocka_unit_test(binding_check_results),
        cmocka_unit_test(attributes_after_integrity_and_fingerprint),
        cmocka_unit_test(duplicates_and_malformed_values),
        cmocka_unit_test(builders_respect_capacity),
        cmocka_unit_test(message_types),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
