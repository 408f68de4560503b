/*
 * fuzz_stun.c - hostile datagrams into the STUN codec and the ICE-lite check.
 *
 * Each input is used twice:
 *  1. as a datagram: parsed, verified with a fixed password, checked as an
 *     ICE-lite Binding request, and answered (success, or the error the
 *     check calls for). Every view must stay inside the datagram and every
 *     answer must parse and verify.
 *  2. as the attributes of a request that is then signed (MESSAGE-INTEGRITY
 *     and FINGERPRINT appended), so that the fuzzer also reaches the paths
 *     behind a valid signature: if our appended attributes are the ones the
 *     parser finds, they must verify.
 * Nothing may crash, read out of bounds or leak.
 */
#include "fuzz_check.h"
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UFRAG "evtj"
#define PWD   "VOkJxbRl1RmTxUk/WvJxBt"

/* Every pointer and offset of a parsed view lies inside its message. */
static void check_view(const struct media_stun_msg *m, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(m->data == data && m->len == size);
    FUZZ_CHECK(m->txid == data + 8);
    FUZZ_CHECK(m->method <= 0x0FFF && (unsigned)m->cls <= 3);
    FUZZ_CHECK(media_stun_type(m->method, m->cls) == m->type);
    const uint8_t *end = data + size;
    if (m->username)
        FUZZ_CHECK((const uint8_t *)m->username >= data + MEDIA_STUN_HEADER_SIZE + 4 &&
                   (const uint8_t *)m->username + m->username_len <= end);
    if (m->software)
        FUZZ_CHECK((const uint8_t *)m->software + m->software_len <= end);
    if (m->error_reason)
        FUZZ_CHECK((const uint8_t *)m->error_reason + m->error_reason_len <= end);
    if (m->error_code)
        FUZZ_CHECK(m->error_code >= 300 && m->error_code <= 699);
    if (m->integrity_offset)
        FUZZ_CHECK(m->integrity_offset >= MEDIA_STUN_HEADER_SIZE &&
                   m->integrity_offset + 4 + MEDIA_STUN_HMAC_SIZE <= size);
    if (m->fingerprint_offset)
        FUZZ_CHECK(m->fingerprint_offset + 8 == size);
    if (m->has_xor_mapped)
        FUZZ_CHECK(m->xor_mapped.ss_family == AF_INET || m->xor_mapped.ss_family == AF_INET6);
    FUZZ_CHECK(m->unknown_count <= MEDIA_STUN_MAX_UNKNOWN && m->unknown_count <= m->unknown_total);
    for (unsigned i = 0; i < m->unknown_count; i++)
        FUZZ_CHECK(m->unknown[i] < 0x8000);
}

/* An answer we built must parse, carry the request's transaction id and verify. */
static void check_answer(struct media_stun_ctx *ctx, const struct media_stun_msg *req,
                         const uint8_t *buf, int n, int code, bool signed_answer)
{
    FUZZ_CHECK(n >= MEDIA_STUN_HEADER_SIZE + 8);
    struct media_stun_msg r;
    FUZZ_CHECK(media_stun_parse(buf, (size_t)n, &r) == 0);
    FUZZ_CHECK(memcmp(r.txid, req->txid, MEDIA_STUN_TXID_SIZE) == 0);
    FUZZ_CHECK(r.method == req->method);
    FUZZ_CHECK(r.cls == (code ? MEDIA_STUN_ERROR : MEDIA_STUN_SUCCESS));
    FUZZ_CHECK(r.error_code == code);
    FUZZ_CHECK(media_stun_verify_fingerprint(&r) == 0);
    FUZZ_CHECK(media_stun_verify_integrity(ctx, &r, PWD) ==
               (signed_answer ? 0 : MEDIA_STUN_ERR_NO_INTEGRITY));
    if (code == 420)
        FUZZ_CHECK(r.unknown_total == 0); /* UNKNOWN-ATTRIBUTES is itself understood */
}

static void fuzz_datagram(struct media_stun_ctx *ctx, const uint8_t *data, size_t size)
{
    struct media_stun_msg m;
    int rc = media_stun_parse(data, size, &m);
    FUZZ_CHECK(rc == 0 || rc == MEDIA_STUN_ERR_NOT_STUN || rc == MEDIA_STUN_ERR_LENGTH ||
               rc == MEDIA_STUN_ERR_MALFORMED);
    if (rc != 0)
        return;
    check_view(&m, data, size);

    int fp = media_stun_verify_fingerprint(&m);
    FUZZ_CHECK(fp == 0 || fp == MEDIA_STUN_ERR_NO_FINGERPRINT ||
               fp == MEDIA_STUN_ERR_BAD_FINGERPRINT);
    FUZZ_CHECK((fp == MEDIA_STUN_ERR_NO_FINGERPRINT) == (m.fingerprint_offset == 0));
    int mi = media_stun_verify_integrity(ctx, &m, PWD);
    FUZZ_CHECK(mi == 0 || mi == MEDIA_STUN_ERR_NO_INTEGRITY || mi == MEDIA_STUN_ERR_BAD_INTEGRITY);
    FUZZ_CHECK((mi == MEDIA_STUN_ERR_NO_INTEGRITY) == (m.integrity_offset == 0));

    const char *ufrag;
    size_t ufrag_len;
    if (media_stun_local_ufrag(&m, &ufrag, &ufrag_len) == 0)
        FUZZ_CHECK(ufrag == m.username && ufrag_len > 0 && ufrag_len < m.username_len &&
                   ufrag[ufrag_len] == ':');

    enum media_stun_check check = media_stun_check_binding(ctx, &m, UFRAG, PWD, NULL);
    FUZZ_CHECK((unsigned)check < MEDIA_STUN_CHECK_COUNT && check != MEDIA_STUN_CHECK_CRYPTO);
    if (check == MEDIA_STUN_CHECK_OK)
        FUZZ_CHECK(fp == 0 && mi == 0 && m.unknown_total == 0);
    if (m.cls != MEDIA_STUN_REQUEST)
        return;

    /* Answer every request as a worker would (and a success even when it would not). */
    if (m.method != MEDIA_STUN_METHOD_BINDING) {
        /* Only errors keep the request's method; a success is always a Binding one. */
        uint8_t err[256];
        int en = media_stun_build_error(ctx, &m, 400, NULL, err, sizeof(err));
        check_answer(ctx, &m, err, en, 400, false);
        return;
    }
    uint8_t out[256];
    struct sockaddr_storage peer;
    if (m.has_xor_mapped) {
        peer = m.xor_mapped;
    } else {
        memset(&peer, 0, sizeof(peer));
        struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(50000);
        sin->sin_addr.s_addr = htonl(0xC0000201);
    }
    int n = media_stun_build_binding_success(ctx, m.txid, &peer, PWD, out, sizeof(out));
    check_answer(ctx, &m, out, n, 0, true);
    struct media_stun_msg r;
    FUZZ_CHECK(media_stun_parse(out, (size_t)n, &r) == 0 && r.has_xor_mapped);
    if (r.xor_mapped.ss_family == peer.ss_family) {
        /* Same family (not an IPv4-mapped IPv6 answered as IPv4): the same address. */
        size_t addr_len =
            peer.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        FUZZ_CHECK(memcmp(&r.xor_mapped, &peer, addr_len) == 0);
    }

    int code = media_stun_check_error_code(check);
    if (code) {
        const char *key = code == 420 ? PWD : NULL;
        n = media_stun_build_error(ctx, &m, code, key, out, sizeof(out));
        check_answer(ctx, &m, out, n, code, key != NULL);
    }
    n = media_stun_build_error(ctx, &m, 487, PWD, out, sizeof(out));
    check_answer(ctx, &m, out, n, 487, true);
}

static void fuzz_signed(struct media_stun_ctx *ctx, const uint8_t *data, size_t size)
{
    static const uint8_t txid[MEDIA_STUN_TXID_SIZE] = {'f', 'u', 'z', 'z', 's', 't',
                                                       'u', 'n', 't', 'x', 'i', 'd'};
    uint8_t buf[1500];
    size_t body = size > 1400 ? 1400 : size & ~(size_t)3;
    memcpy(buf, (const uint8_t[]){0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, 8);
    memcpy(buf + 8, txid, sizeof(txid));
    memcpy(buf + MEDIA_STUN_HEADER_SIZE, data, body);
    struct media_stun_writer w = {
        .buf = buf, .cap = sizeof(buf), .len = MEDIA_STUN_HEADER_SIZE + body};
    int n = media_stun_writer_finish(ctx, &w, PWD, true);
    FUZZ_CHECK(n == (int)(MEDIA_STUN_HEADER_SIZE + body + 24 + 8));

    struct media_stun_msg m;
    if (media_stun_parse(buf, (size_t)n, &m) != 0)
        return; /* the input's own attributes are malformed, or end with a FINGERPRINT */
    check_view(&m, buf, (size_t)n);
    /*
     * The input's last attribute may claim our MESSAGE-INTEGRITY and FINGERPRINT
     * as its value; otherwise the walk lands on them and they must verify.
     */
    size_t mi_at = MEDIA_STUN_HEADER_SIZE + body;
    if (m.integrity_offset == mi_at)
        FUZZ_CHECK(media_stun_verify_integrity(ctx, &m, PWD) == 0);
    enum media_stun_check check = media_stun_check_binding(ctx, &m, UFRAG, PWD, NULL);
    FUZZ_CHECK(check != MEDIA_STUN_CHECK_NOT_REQUEST);
    if (m.fingerprint_offset) {
        FUZZ_CHECK(m.fingerprint_offset == mi_at + 24);
        FUZZ_CHECK(media_stun_verify_fingerprint(&m) == 0);
        FUZZ_CHECK(check != MEDIA_STUN_CHECK_BAD_FINGERPRINT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A context per input keeps inputs independent; the worker keeps one for its life. */
    struct media_stun_ctx *ctx = media_stun_ctx_new();
    FUZZ_CHECK(ctx);
    fuzz_datagram(ctx, data, size);
    fuzz_signed(ctx, data, size);
    media_stun_ctx_free(ctx);
    return 0;
}
