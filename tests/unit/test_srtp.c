/*
 * test_srtp.c - the SRTP wrapper: protect/unprotect round trips of RTP and
 * RTCP under both profiles, tampering, replay, truncation, a wrong key, the
 * room a buffer needs, and bad keys refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srtp.h"

/* Two ends of one association: `a` sends with a's local keys, `b` receives with them. */
struct pair {
    struct media_srtp *a;
    struct media_srtp *b;
};

static struct media_srtp_keys make_keys(enum media_srtp_profile profile, uint8_t seed)
{
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    size_t key_len, salt_len;
    assert_int_equal(media_srtp_profile_lengths(profile, &key_len, &salt_len), 0);
    k.profile = profile;
    k.key_len = (uint8_t)key_len;
    k.salt_len = (uint8_t)salt_len;
    for (size_t i = 0; i < key_len; i++) {
        k.local_key[i] = (uint8_t)(seed + i);
        k.remote_key[i] = (uint8_t)(seed + 0x40 + i);
    }
    for (size_t i = 0; i < salt_len; i++) {
        k.local_salt[i] = (uint8_t)(seed + 0x80 + i);
        k.remote_salt[i] = (uint8_t)(seed + 0xC0 + i);
    }
    return k;
}

/* The keys as the other end sees them. */
static struct media_srtp_keys swap_keys(const struct media_srtp_keys *k)
{
    struct media_srtp_keys s = *k;
    memcpy(s.local_key, k->remote_key, sizeof(s.local_key));
    memcpy(s.local_salt, k->remote_salt, sizeof(s.local_salt));
    memcpy(s.remote_key, k->local_key, sizeof(s.remote_key));
    memcpy(s.remote_salt, k->local_salt, sizeof(s.remote_salt));
    return s;
}

static struct pair make_pair(enum media_srtp_profile profile)
{
    struct media_srtp_keys k = make_keys(profile, 1);
    struct media_srtp_keys other = swap_keys(&k);
    int err = 1;
    struct pair p = {media_srtp_new(&k, &err), media_srtp_new(&other, &err)};
    assert_non_null(p.a);
    assert_non_null(p.b);
    assert_int_equal(err, 1); /* untouched on success */
    return p;
}

static void free_pair(struct pair *p)
{
    media_srtp_free(p->a);
    media_srtp_free(p->b);
}

/* An RTP packet: Opus payload type, `seq`, a 100-byte payload. Returns its length. */
static size_t make_rtp(uint8_t *buf, uint16_t seq, uint32_t ssrc)
{
    buf[0] = 0x80;
    buf[1] = 111;
    buf[2] = (uint8_t)(seq >> 8);
    buf[3] = (uint8_t)seq;
    uint32_t ts = 960u * seq;
    buf[4] = (uint8_t)(ts >> 24);
    buf[5] = (uint8_t)(ts >> 16);
    buf[6] = (uint8_t)(ts >> 8);
    buf[7] = (uint8_t)ts;
    buf[8] = (uint8_t)(ssrc >> 24);
    buf[9] = (uint8_t)(ssrc >> 16);
    buf[10] = (uint8_t)(ssrc >> 8);
    buf[11] = (uint8_t)ssrc;
    for (size_t i = 0; i < 100; i++)
        buf[12 + i] = (uint8_t)(i * 7 + seq);
    return 112;
}

/* An RTCP sender report without report blocks: 28 bytes. */
static size_t make_rtcp(uint8_t *buf, uint32_t ssrc)
{
    memset(buf, 0, 28);
    buf[0] = 0x80;
    buf[1] = 200;
    buf[3] = 6; /* length in words minus one */
    buf[4] = (uint8_t)(ssrc >> 24);
    buf[5] = (uint8_t)(ssrc >> 16);
    buf[6] = (uint8_t)(ssrc >> 8);
    buf[7] = (uint8_t)ssrc;
    for (size_t i = 8; i < 28; i++)
        buf[i] = (uint8_t)(i * 3);
    return 28;
}

static size_t tag_len(enum media_srtp_profile profile)
{
    return profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM ? 16 : 10;
}

static void round_trip_rtp(enum media_srtp_profile profile)
{
    struct pair p = make_pair(profile);
    uint8_t plain[200];
    for (uint16_t seq = 1000; seq < 1010; seq++) {
        size_t len = make_rtp(plain, seq, 0x11223344);
        /* Exactly the room the header promises: ASan sees any write past it. */
        size_t cap = len + MEDIA_SRTP_MAX_OVERHEAD;
        uint8_t *buf = malloc(cap);
        assert_non_null(buf);
        memcpy(buf, plain, len);
        int n = media_srtp_protect_rtp(p.a, buf, len, cap);
        assert_int_equal(n, (int)(len + tag_len(profile)));
        assert_memory_equal(buf, plain, 12);                     /* the header stays clear */
        assert_memory_not_equal(buf + 12, plain + 12, len - 12); /* the payload does not */
        int m = media_srtp_unprotect_rtp(p.b, buf, (size_t)n);
        assert_int_equal(m, (int)len);
        assert_memory_equal(buf, plain, len);
        free(buf);
    }
    free_pair(&p);
}

static void round_trip_rtcp(enum media_srtp_profile profile)
{
    struct pair p = make_pair(profile);
    uint8_t plain[64];
    for (int i = 0; i < 5; i++) {
        size_t len = make_rtcp(plain, 0x55667788);
        size_t cap = len + MEDIA_SRTP_MAX_OVERHEAD;
        uint8_t *buf = malloc(cap);
        assert_non_null(buf);
        memcpy(buf, plain, len);
        int n = media_srtp_protect_rtcp(p.a, buf, len, cap);
        assert_int_equal(n, (int)(len + 4 + tag_len(profile)));
        assert_memory_equal(buf, plain, 8);
        assert_memory_not_equal(buf + 8, plain + 8, len - 8);
        int m = media_srtp_unprotect_rtcp(p.b, buf, (size_t)n);
        assert_int_equal(m, (int)len);
        assert_memory_equal(buf, plain, len);
        free(buf);
    }
    free_pair(&p);
}

static void test_round_trip_gcm(void **state)
{
    (void)state;
    round_trip_rtp(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    round_trip_rtcp(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
}

static void test_round_trip_cm(void **state)
{
    (void)state;
    round_trip_rtp(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
    round_trip_rtcp(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
}

/* Both directions of one pair are independent: b can send to a too. */
static void test_both_directions(void **state)
{
    (void)state;
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    uint8_t buf[256], plain[256];
    size_t len = make_rtp(plain, 7, 0xABCDEF01);
    memcpy(buf, plain, len);
    int n = media_srtp_protect_rtp(p.b, buf, len, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(media_srtp_unprotect_rtp(p.a, buf, (size_t)n), (int)len);
    assert_memory_equal(buf, plain, len);
    free_pair(&p);
}

/* Protects one packet of the given kind with `p.a`; returns the protected length. */
static int protect_one(struct pair *p, bool rtcp, uint16_t seq, uint8_t *buf, size_t cap)
{
    size_t len = rtcp ? make_rtcp(buf, 0x01020304) : make_rtp(buf, seq, 0x01020304);
    int n = rtcp ? media_srtp_protect_rtcp(p->a, buf, len, cap)
                 : media_srtp_protect_rtp(p->a, buf, len, cap);
    assert_true(n > (int)len);
    return n;
}

static int unprotect(struct pair *p, bool rtcp, uint8_t *buf, size_t len)
{
    return rtcp ? media_srtp_unprotect_rtcp(p->b, buf, len)
                : media_srtp_unprotect_rtp(p->b, buf, len);
}

static void tamper(enum media_srtp_profile profile, bool rtcp)
{
    struct pair p = make_pair(profile);
    uint8_t orig[256], buf[256];
    int n = protect_one(&p, rtcp, 10, orig, sizeof(orig));
    /* Every byte of the packet is covered: header, payload, index and tag. */
    for (int i = 0; i < n; i++) {
        memcpy(buf, orig, (size_t)n);
        buf[i] ^= 0x01;
        int r = unprotect(&p, rtcp, buf, (size_t)n);
        if (!rtcp && (i == 2 || i == 3))
            /* A changed sequence number is a different index: still no valid tag. */
            assert_int_equal(r, MEDIA_SRTP_ERR_AUTH);
        else if (r != MEDIA_SRTP_ERR_AUTH)
            assert_true(r < 0);
    }
    /* The untouched packet still passes: failures did not poison the replay window. */
    memcpy(buf, orig, (size_t)n);
    assert_true(unprotect(&p, rtcp, buf, (size_t)n) > 0);
    free_pair(&p);
}

static void test_tampered_fails_auth(void **state)
{
    (void)state;
    tamper(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, false);
    tamper(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, true);
    tamper(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, false);
    tamper(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, true);

    /* A flip in the payload specifically is an authentication failure. */
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    uint8_t buf[256];
    int n = protect_one(&p, false, 11, buf, sizeof(buf));
    buf[40] ^= 0x80;
    assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, (size_t)n), MEDIA_SRTP_ERR_AUTH);
    free_pair(&p);
}

static void replay(enum media_srtp_profile profile, bool rtcp)
{
    struct pair p = make_pair(profile);
    uint8_t orig[256], buf[256];
    int n = protect_one(&p, rtcp, 20, orig, sizeof(orig));
    memcpy(buf, orig, (size_t)n);
    assert_true(unprotect(&p, rtcp, buf, (size_t)n) > 0);
    memcpy(buf, orig, (size_t)n);
    assert_int_equal(unprotect(&p, rtcp, buf, (size_t)n), MEDIA_SRTP_ERR_REPLAY);
    free_pair(&p);
}

static void test_replay_refused(void **state)
{
    (void)state;
    replay(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, false);
    replay(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, true);
    replay(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, false);
    replay(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, true);

    /* Older than the window (128 packets): refused as a replay too. */
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    uint8_t old[256], buf[256];
    int old_len = protect_one(&p, false, 1, old, sizeof(old));
    for (uint16_t seq = 2; seq < 400; seq++) {
        int n = protect_one(&p, false, seq, buf, sizeof(buf));
        assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)n) > 0);
    }
    assert_int_equal(media_srtp_unprotect_rtp(p.b, old, (size_t)old_len), MEDIA_SRTP_ERR_REPLAY);
    free_pair(&p);
}

/* Sending the same packet twice (a NACK answered from the cache) is allowed. */
static void test_repeat_send_allowed(void **state)
{
    (void)state;
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    uint8_t a[256], b[256];
    int n1 = protect_one(&p, false, 30, a, sizeof(a));
    int n2 = protect_one(&p, false, 30, b, sizeof(b));
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, (size_t)n1);
    free_pair(&p);
}

static void truncation(enum media_srtp_profile profile, bool rtcp)
{
    struct pair p = make_pair(profile);
    uint8_t orig[256];
    int n = protect_one(&p, rtcp, 40, orig, sizeof(orig));
    for (int len = 0; len < n; len++) {
        /* Its own heap copy of exactly `len` bytes, so ASan catches any over-read. */
        uint8_t *buf = malloc(len ? (size_t)len : 1);
        assert_non_null(buf);
        memcpy(buf, orig, (size_t)len);
        int r = unprotect(&p, rtcp, buf, (size_t)len);
        assert_true(r < 0);
        size_t min = rtcp ? 8 + 4 + tag_len(profile) : 12 + tag_len(profile);
        if ((size_t)len < min)
            assert_int_equal(r, MEDIA_SRTP_ERR_BAD_LENGTH);
        free(buf);
    }
    free_pair(&p);
}

static void test_truncated_refused(void **state)
{
    (void)state;
    truncation(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, false);
    truncation(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, true);
    truncation(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, false);
    truncation(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, true);

    /* Protecting something shorter than a header is refused too. */
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    uint8_t buf[64] = {0x80, 111};
    assert_int_equal(media_srtp_protect_rtp(p.a, buf, 11, sizeof(buf)), MEDIA_SRTP_ERR_BAD_LENGTH);
    assert_int_equal(media_srtp_protect_rtcp(p.a, buf, 7, sizeof(buf)), MEDIA_SRTP_ERR_BAD_LENGTH);
    free_pair(&p);
}

static void test_wrong_key_fails(void **state)
{
    (void)state;
    enum media_srtp_profile profiles[] = {MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,
                                          MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    for (size_t i = 0; i < 2; i++) {
        struct media_srtp_keys k = make_keys(profiles[i], 1);
        struct media_srtp_keys wrong = swap_keys(&k);
        wrong.remote_key[0] ^= 0x01; /* one bit of the sender's key */
        struct media_srtp *a = media_srtp_new(&k, NULL);
        struct media_srtp *b = media_srtp_new(&wrong, NULL);
        assert_non_null(a);
        assert_non_null(b);
        uint8_t buf[256];
        size_t len = make_rtp(buf, 50, 0x99);
        int n = media_srtp_protect_rtp(a, buf, len, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(media_srtp_unprotect_rtp(b, buf, (size_t)n), MEDIA_SRTP_ERR_AUTH);
        len = make_rtcp(buf, 0x99);
        n = media_srtp_protect_rtcp(a, buf, len, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(media_srtp_unprotect_rtcp(b, buf, (size_t)n), MEDIA_SRTP_ERR_AUTH);

        /* A wrong salt is as bad as a wrong key. */
        media_srtp_free(b);
        wrong = swap_keys(&k);
        wrong.remote_salt[3] ^= 0x10;
        b = media_srtp_new(&wrong, NULL);
        assert_non_null(b);
        len = make_rtp(buf, 51, 0x99);
        n = media_srtp_protect_rtp(a, buf, len, sizeof(buf));
        assert_int_equal(media_srtp_unprotect_rtp(b, buf, (size_t)n), MEDIA_SRTP_ERR_AUTH);
        media_srtp_free(a);
        media_srtp_free(b);
    }
}

static void test_no_space(void **state)
{
    (void)state;
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
    uint8_t buf[256];
    size_t len = make_rtp(buf, 1, 1);
    uint8_t copy[256];
    memcpy(copy, buf, len);
    assert_int_equal(media_srtp_protect_rtp(p.a, buf, len, len + MEDIA_SRTP_MAX_OVERHEAD - 1),
                     MEDIA_SRTP_ERR_NO_SPACE);
    assert_memory_equal(buf, copy, len); /* untouched */
    assert_int_equal(media_srtp_protect_rtcp(p.a, buf, 28, 28 + 13), MEDIA_SRTP_ERR_NO_SPACE);
    assert_int_equal(media_srtp_protect_rtp(p.a, buf, len, len - 1), MEDIA_SRTP_ERR_NO_SPACE);
    free_pair(&p);
}

static void test_bad_keys_refused(void **state)
{
    (void)state;
    int err = 0;
    struct media_srtp_keys k = make_keys(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, 3);
    k.salt_len = 14; /* CM's salt with the GCM profile */
    assert_null(media_srtp_new(&k, &err));
    assert_int_equal(err, MEDIA_SRTP_ERR_INVALID);
    k = make_keys(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, 3);
    k.profile = MEDIA_SRTP_PROFILE_NONE;
    err = 0;
    assert_null(media_srtp_new(&k, &err));
    assert_int_equal(err, MEDIA_SRTP_ERR_INVALID);
    assert_null(media_srtp_new(NULL, NULL));
    media_srtp_free(NULL);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(media_srtp_library_init(), 0);
    assert_int_equal(media_srtp_library_init(), 0);
    assert_string_equal(media_srtp_error_name(120), "ok");
    assert_string_equal(media_srtp_error_name(MEDIA_SRTP_ERR_AUTH), "auth");
    assert_string_equal(media_srtp_error_name(MEDIA_SRTP_ERR_REPLAY), "replay");
    assert_string_equal(media_srtp_error_name(-99), "unknown");
    for (int e = -1; e >= MEDIA_SRTP_ERR_MIN; e--) {
        assert_string_not_equal(media_srtp_error_name(e), "unknown");
        assert_string_not_equal(media_srtp_strerror(e), "unknown error");
    }
    assert_string_equal(media_srtp_profile_name(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM),
                        "AEAD_AES_128_GCM");
    assert_string_equal(media_srtp_profile_name(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80),
                        "AES_CM_128_HMAC_SHA1_80");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_gcm),
        cmocka_unit_test(test_round_trip_cm),
        cmocka_unit_test(test_both_directions),
        cmocka_unit_test(test_tampered_fails_auth),
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_repeat_send_allowed),
        cmocka_unit_test(test_truncated_refused),
        cmocka_unit_test(test_wrong_key_fails),
        cmocka_unit_test(test_no_space),
        cmocka_unit_test(test_bad_keys_refused),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
