/*
 * test_srtp.c - our SRTP (media/srtp.c): protect/unprotect round trips of
 * RTP and RTCP under both profiles, tampering, replay, truncation, a wrong
 * key, the room a buffer needs, bad keys refused; the RFC 3711 (B.2, B.3)
 * and RFC 7714 (16, 17) test vectors; a cross-check against libsrtp2 both
 * ways with random packets; the rollover counter and replay window moved
 * only by authentic packets; the SSRC tables; hostile input; and no
 * allocation per packet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <srtp2/srtp.h>

#include "libsrtp_ref.h"
#include "srtp.h"

/*
 * The allocation count: this program's own malloc family, which the dynamic
 * linker also binds OpenSSL's and libc's internal calls to (linking with
 * -Wl,--wrap would only see calls made from our static objects, not those
 * inside libcrypto.so). It forwards to glibc's allocator. AddressSanitizer
 * replaces the allocator itself, so under it the count is off and
 * test_no_allocation_per_packet is skipped.
 */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef COUNT_ALLOCATIONS
#define COUNT_ALLOCATIONS 1
#endif

#if COUNT_ALLOCATIONS
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

/* Process-wide by nature: every allocation in the process, from any library. */
static unsigned long allocations;

void *malloc(size_t size)
{
    allocations++;
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    allocations++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    allocations++;
    return __libc_realloc(p, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    allocations++;
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size)
{
    allocations++;
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **p, size_t alignment, size_t size)
{
    allocations++;
    *p = __libc_memalign(alignment, size);
    return *p ? 0 : 12; /* ENOMEM */
}

void free(void *p)
{
    if (p)
        allocations++;
    __libc_free(p);
}
#endif

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

/* ------------------------------------------------------------------------- */
/* Helpers for the vectors and the cross-check                               */
/* ------------------------------------------------------------------------- */

/* Decodes hex digits (spaces allowed) into `out`; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int high = -1;
    for (const char *c = hex; *c; c++) {
        int v;
        if (*c >= '0' && *c <= '9')
            v = *c - '0';
        else if (*c >= 'a' && *c <= 'f')
            v = *c - 'a' + 10;
        else if (*c >= 'A' && *c <= 'F')
            v = *c - 'A' + 10;
        else
            continue;
        if (high < 0) {
            high = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(high << 4 | v);
            high = -1;
        }
    }
    assert_int_equal(high, -1);
    return n;
}

static void assert_hex(const uint8_t *got, const char *expected_hex)
{
    uint8_t expected[128];
    size_t n = unhex(expected_hex, expected, sizeof(expected));
    assert_memory_equal(got, expected, n);
}

/* xorshift64*: a fixed-seed generator, so a failure can be replayed. */
struct rng {
    uint64_t state;
};

static uint32_t rng_next(struct rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void rng_fill(struct rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next(r);
}

/* ------------------------------------------------------------------------- */
/* RFC test vectors                                                           */
/* ------------------------------------------------------------------------- */

/*
 * RFC 3711 B.2. With SSRC, ROC and SEQ zero the packet IV is the session
 * salt * 2^16, which is also the IV of the key derivation's label 0 with
 * that salt as master salt: so the PRF gives B.2's whole keystream segment
 * (65282 blocks), and its last blocks are checked too.
 */
static void test_rfc3711_b2_aes_cm_keystream(void **state)
{
    (void)state;
    uint8_t key[16], salt[14];
    unhex("2B7E151628AED2A6ABF7158809CF4F3C", key, sizeof(key));
    unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD", salt, sizeof(salt));
    size_t len = 65282 * 16;
    uint8_t *ks = malloc(len);
    assert_non_null(ks);
    assert_int_equal(media_srtp_kdf(key, 16, salt, 14, 0, ks, len), 0);
    assert_hex(ks + 0x0000 * 16, "E03EAD0935C95E80E166B16DD92B4EB4");
    assert_hex(ks + 0x0001 * 16, "D23513162B02D0F72A43A2FE4A5F97AB");
    assert_hex(ks + 0x0002 * 16, "41E95B3BB0A2E8DD477901E4FCA894C0");
    assert_hex(ks + 0xFEFF * 16, "EC8CDF7398607CB0F2D21675EA9EA1E4");
    assert_hex(ks + 0xFF00 * 16, "362B7C3C6773516318A077D7FC5073AE");
    assert_hex(ks + 0xFF01 * 16, "6A2CC3787889374FBEB4C81B17BA6C44");
    free(ks);
}

/* RFC 3711 B.3: the session encryption key, salt and (94 bytes of) authentication key. */
static void test_rfc3711_b3_key_derivation(void **state)
{
    (void)state;
    uint8_t key[16], salt[14], out[94];
    unhex("E1F97A0D3E018BE0D64FA32C06DE4139", key, sizeof(key));
    unhex("0EC675AD498AFEEBB6960B3AABE6", salt, sizeof(salt));
    assert_int_equal(media_srtp_kdf(key, 16, salt, 14, 0, out, 16), 0);
    assert_hex(out, "C61E7A93744F39EE10734AFE3FF7A087");
    assert_int_equal(media_srtp_kdf(key, 16, salt, 14, 2, out, 14), 0);
    assert_hex(out, "30CBBC08863D8C85D49DB34A9AE1");
    assert_int_equal(media_srtp_kdf(key, 16, salt, 14, 1, out, 94), 0);
    assert_hex(out, "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE"
                    "E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25"
                    "6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2");

    /* GCM's 12-byte master salt is the 14-byte one with two zero bytes on the right. */
    uint8_t padded[14] = {0}, a[16], b[16];
    memcpy(padded, salt, 12);
    assert_int_equal(media_srtp_kdf(key, 16, salt, 12, 0, a, 16), 0);
    assert_int_equal(media_srtp_kdf(key, 16, padded, 14, 0, b, 16), 0);
    assert_memory_equal(a, b, 16);

    assert_int_equal(media_srtp_kdf(key, 15, salt, 14, 0, out, 16), MEDIA_SRTP_ERR_INVALID);
    assert_int_equal(media_srtp_kdf(key, 16, salt, 13, 0, out, 16), MEDIA_SRTP_ERR_INVALID);
}

/* RFC 7714's session key and salt ("Quid pro quo"), both directions. */
static struct media_srtp *rfc7714_session(void)
{
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    k.profile = MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM;
    k.key_len = 16;
    k.salt_len = 12;
    unhex("000102030405060708090a0b0c0d0e0f", k.local_key, 16);
    unhex("517569642070726f2071756f", k.local_salt, 12);
    memcpy(k.remote_key, k.local_key, 16);
    memcpy(k.remote_salt, k.local_salt, 12);
    struct media_srtp *s = media_srtp_new_with_session_keys(&k, NULL);
    assert_non_null(s);
    return s;
}

#define RFC7714_RTP_PLAIN                                                                          \
    "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976"                      \
    "69736120 696e2070 61727465 73207472 6573"
#define RFC7714_SRTP                                                                               \
    "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5"                      \
    "0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce"
#define RFC7714_RTCP_PLAIN                                                                         \
    "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"                      \
    "deadbeef deadbeef deadbeef deadbeef deadbeef"
#define RFC7714_SRTCP                                                                              \
    "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d"                      \
    "c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872"                      \
    "45d9eade 800005d4"
#define RFC7714_SRTCP_UNENCRYPTED                                                                  \
    "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"                      \
    "deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790"                      \
    "125f62b3 000005d4"

/* RFC 7714 section 16: SRTP with AEAD_AES_128_GCM (SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b). */
static void test_rfc7714_srtp_vectors(void **state)
{
    (void)state;
    uint8_t plain[64], sealed[128], buf[128];
    size_t plain_len = unhex(RFC7714_RTP_PLAIN, plain, sizeof(plain));
    size_t sealed_len = unhex(RFC7714_SRTP, sealed, sizeof(sealed));
    assert_int_equal(plain_len, 50);
    assert_int_equal(sealed_len, 66);

    struct media_srtp *sender = rfc7714_session();
    memcpy(buf, plain, plain_len);
    assert_int_equal(media_srtp_protect_rtp(sender, buf, plain_len, sizeof(buf)), (int)sealed_len);
    assert_memory_equal(buf, sealed, sealed_len);

    struct media_srtp *receiver = rfc7714_session();
    memcpy(buf, sealed, sealed_len);
    assert_int_equal(media_srtp_unprotect_rtp(receiver, buf, sealed_len), (int)plain_len);
    assert_memory_equal(buf, plain, plain_len);

    /* A flipped tag bit: refused, and the payload is wiped rather than left decrypted. */
    media_srtp_free(receiver);
    receiver = rfc7714_session();
    memcpy(buf, sealed, sealed_len);
    buf[sealed_len - 1] ^= 0x01;
    assert_int_equal(media_srtp_unprotect_rtp(receiver, buf, sealed_len), MEDIA_SRTP_ERR_AUTH);
    assert_memory_not_equal(buf + 12, plain + 12, plain_len - 12);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left on OpenSSL's error queue */
    media_srtp_free(sender);
    media_srtp_free(receiver);
}

/*
 * RFC 7714 section 17: SRTCP with AEAD_AES_128_GCM, SRTCP index 0x5d4,
 * encrypted (17.1, 17.2) and authenticated only, E flag clear (17.3, 17.4).
 */
static void test_rfc7714_srtcp_vectors(void **state)
{
    (void)state;
    uint8_t plain[64], sealed[128], clear[128], buf[128];
    size_t plain_len = unhex(RFC7714_RTCP_PLAIN, plain, sizeof(plain));
    size_t sealed_len = unhex(RFC7714_SRTCP, sealed, sizeof(sealed));
    size_t clear_len = unhex(RFC7714_SRTCP_UNENCRYPTED, clear, sizeof(clear));
    assert_int_equal(plain_len, 52);
    assert_int_equal(sealed_len, 72);
    assert_int_equal(clear_len, 72);

    /* Our SRTCP index starts at 0 per SSRC: 0x5d4 packets first make the vector's index. */
    struct media_srtp *sender = rfc7714_session();
    for (unsigned i = 0; i < 0x5d4; i++) {
        memcpy(buf, plain, plain_len);
        assert_int_equal(media_srtp_protect_rtcp(sender, buf, plain_len, sizeof(buf)),
                         (int)sealed_len);
    }
    memcpy(buf, plain, plain_len);
    assert_int_equal(media_srtp_protect_rtcp(sender, buf, plain_len, sizeof(buf)), (int)sealed_len);
    assert_memory_equal(buf, sealed, sealed_len);

    struct media_srtp *receiver = rfc7714_session();
    memcpy(buf, sealed, sealed_len);
    assert_int_equal(media_srtp_unprotect_rtcp(receiver, buf, sealed_len), (int)plain_len);
    assert_memory_equal(buf, plain, plain_len);
    /* The unencrypted form has the same index: a replay to this receiver. */
    memcpy(buf, clear, clear_len);
    assert_int_equal(media_srtp_unprotect_rtcp(receiver, buf, clear_len), MEDIA_SRTP_ERR_REPLAY);
    media_srtp_free(receiver);

    receiver = rfc7714_session();
    memcpy(buf, clear, clear_len);
    assert_int_equal(media_srtp_unprotect_rtcp(receiver, buf, clear_len), (int)plain_len);
    assert_memory_equal(buf, plain, plain_len);
    media_srtp_free(receiver);

    /* Setting the E flag on the unencrypted form breaks its tag. */
    receiver = rfc7714_session();
    memcpy(buf, clear, clear_len);
    buf[clear_len - 4] |= 0x80;
    assert_int_equal(media_srtp_unprotect_rtcp(receiver, buf, clear_len), MEDIA_SRTP_ERR_AUTH);
    media_srtp_free(receiver);
    media_srtp_free(sender);
}

/* ------------------------------------------------------------------------- */
/* Cross-check against libsrtp2                                               */
/* ------------------------------------------------------------------------- */

/* libsrtp_ref_session(), which must succeed. */
static srtp_t libsrtp_session(const struct media_srtp_keys *k, bool outbound, bool encrypt_rtcp)
{
    srtp_t session = libsrtp_ref_session(k, outbound, encrypt_rtcp);
    assert_non_null(session);
    return session;
}

/*
 * A random RTP packet of 12 to 1200 bytes: CSRCs, a header extension and
 * padding, each sometimes. Returns its length.
 */
static size_t random_rtp(struct rng *r, uint8_t *buf, uint32_t ssrc, uint16_t seq)
{
    unsigned cc = rng_next(r) % 3 ? 0 : rng_next(r) % 16;
    bool ext = rng_next(r) % 2;
    unsigned ext_words = rng_next(r) % 8;
    size_t header = 12 + 4 * cc + (ext ? 4 + 4 * ext_words : 0);
    size_t len = header + rng_next(r) % (1201 - header);
    bool padding = len > header && rng_next(r) % 4 == 0;
    rng_fill(r, buf, len);
    buf[0] = (uint8_t)(0x80 | (padding ? 0x20 : 0) | (ext ? 0x10 : 0) | cc);
    buf[1] = (uint8_t)(buf[1] & 0xFF);
    buf[2] = (uint8_t)(seq >> 8);
    buf[3] = (uint8_t)seq;
    buf[8] = (uint8_t)(ssrc >> 24);
    buf[9] = (uint8_t)(ssrc >> 16);
    buf[10] = (uint8_t)(ssrc >> 8);
    buf[11] = (uint8_t)ssrc;
    if (ext) {
        uint8_t *x = buf + 12 + 4 * cc;
        x[0] = 0xBE;
        x[1] = 0xDE;
        x[2] = 0;
        x[3] = (uint8_t)ext_words;
    }
    if (padding) {
        size_t room = len - header;
        buf[len - 1] = (uint8_t)(1 + rng_next(r) % (room < 255 ? room : 255));
    }
    return len;
}

/* A random RTCP packet (8 to 244 bytes) from `ssrc`. Returns its length. */
static size_t random_rtcp(struct rng *r, uint8_t *buf, uint32_t ssrc)
{
    size_t words = 1 + rng_next(r) % 60;
    size_t len = 4 * (words + 1);
    rng_fill(r, buf, len);
    buf[0] = (uint8_t)(0x80 | (buf[0] & 0x1F));
    buf[1] = (uint8_t)(200 + rng_next(r) % 7);
    buf[2] = (uint8_t)(words >> 8);
    buf[3] = (uint8_t)words;
    buf[4] = (uint8_t)(ssrc >> 24);
    buf[5] = (uint8_t)(ssrc >> 16);
    buf[6] = (uint8_t)(ssrc >> 8);
    buf[7] = (uint8_t)ssrc;
    return len;
}

#define CROSS_SSRCS  3
#define CROSS_BATCH  24 /* shuffled within a batch: out of order, inside the 128-packet window */
#define CROSS_ROUNDS 25 /* 600 packets per SSRC, across a sequence number wrap */
#define PACKET_CAP   1300

struct sent {
    uint8_t plain[PACKET_CAP];
    uint8_t ours[PACKET_CAP];   /* protected by media_srtp */
    uint8_t theirs[PACKET_CAP]; /* protected by libsrtp */
    size_t plain_len;
    int ours_len;
    int theirs_len;
};

static void shuffle(struct rng *r, struct sent **v, size_t n)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(r) % (i + 1);
        struct sent *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/*
 * Delivers each packet of the batch, in its (shuffled) order, to both
 * receivers: what we protected to libsrtp, what libsrtp protected to us.
 */
static void deliver(struct sent **order, size_t n, bool rtcp, struct media_srtp *ours_rx,
                    srtp_t theirs_rx)
{
    uint8_t buf[PACKET_CAP];
    for (size_t i = 0; i < n; i++) {
        struct sent *p = order[i];
        memcpy(buf, p->ours, (size_t)p->ours_len);
        int len = p->ours_len;
        srtp_err_status_t st =
            rtcp ? srtp_unprotect_rtcp(theirs_rx, buf, &len) : srtp_unprotect(theirs_rx, buf, &len);
        assert_int_equal(st, srtp_err_status_ok);
        assert_int_equal(len, (int)p->plain_len);
        assert_memory_equal(buf, p->plain, p->plain_len);

        memcpy(buf, p->theirs, (size_t)p->theirs_len);
        int n2 = rtcp ? media_srtp_unprotect_rtcp(ours_rx, buf, (size_t)p->theirs_len)
                      : media_srtp_unprotect_rtp(ours_rx, buf, (size_t)p->theirs_len);
        assert_int_equal(n2, (int)p->plain_len);
        assert_memory_equal(buf, p->plain, p->plain_len);
    }
}

/* Protects p->plain with ours and with libsrtp (RTP or SRTCP); both must give the same bytes. */
static void protect_both(struct sent *p, bool rtcp, struct media_srtp *ours_tx, srtp_t theirs_tx)
{
    memcpy(p->ours, p->plain, p->plain_len);
    memcpy(p->theirs, p->plain, p->plain_len);
    p->ours_len = rtcp ? media_srtp_protect_rtcp(ours_tx, p->ours, p->plain_len, PACKET_CAP)
                       : media_srtp_protect_rtp(ours_tx, p->ours, p->plain_len, PACKET_CAP);
    p->theirs_len = (int)p->plain_len;
    assert_int_equal(rtcp ? srtp_protect_rtcp(theirs_tx, p->theirs, &p->theirs_len)
                          : srtp_protect(theirs_tx, p->theirs, &p->theirs_len),
                     srtp_err_status_ok);
    assert_int_equal(p->ours_len, p->theirs_len);
    assert_memory_equal(p->ours, p->theirs, (size_t)p->ours_len);
}

static void cross_check(enum media_srtp_profile profile, uint64_t seed)
{
    struct rng r = {seed};
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    size_t key_len, salt_len;
    assert_int_equal(media_srtp_profile_lengths(profile, &key_len, &salt_len), 0);
    k.profile = profile;
    k.key_len = (uint8_t)key_len;
    k.salt_len = (uint8_t)salt_len;
    rng_fill(&r, k.local_key, key_len);
    rng_fill(&r, k.local_salt, salt_len);
    rng_fill(&r, k.remote_key, key_len);
    rng_fill(&r, k.remote_salt, salt_len);
    struct media_srtp_keys peer = swap_keys(&k);

    /* Ours and libsrtp's, sending with k's local key; receivers with the same key as remote. */
    struct media_srtp *ours_tx = media_srtp_new(&k, NULL);
    struct media_srtp *ours_rx = media_srtp_new(&peer, NULL);
    assert_non_null(ours_tx);
    assert_non_null(ours_rx);
    srtp_t theirs_tx = libsrtp_session(&k, true, true);
    srtp_t theirs_rx = libsrtp_session(&peer, false, true);

    struct sent *batch = calloc(CROSS_BATCH, sizeof(*batch));
    struct sent *order[CROSS_BATCH];
    assert_non_null(batch);
    uint32_t ssrcs[CROSS_SSRCS];
    uint16_t seqs[CROSS_SSRCS];
    for (unsigned i = 0; i < CROSS_SSRCS; i++) {
        ssrcs[i] = rng_next(&r);
        seqs[i] = (uint16_t)(65536 - 20 - rng_next(&r) % 100); /* wraps within the run */
    }

    /* RTP: identical bytes from both (the index is the sequence number's), then decrypted across.
     */
    unsigned wrapped = 0;
    for (unsigned round = 0; round < CROSS_ROUNDS; round++) {
        for (unsigned i = 0; i < CROSS_BATCH; i++) {
            struct sent *p = &batch[i];
            unsigned which = rng_next(&r) % CROSS_SSRCS;
            wrapped += seqs[which] == 0;
            p->plain_len = random_rtp(&r, p->plain, ssrcs[which], seqs[which]++);
            protect_both(p, false, ours_tx, theirs_tx);
            order[i] = p;
        }
        shuffle(&r, order, CROSS_BATCH);
        deliver(order, CROSS_BATCH, false, ours_rx, theirs_rx);
    }
    assert_int_equal(wrapped, CROSS_SSRCS); /* each SSRC went from ROC 0 to ROC 1 */

    /*
     * RTCP: libsrtp's first SRTCP index is 1, ours (RFC 3711 section 3.4) is
     * 0; after one packet of ours that goes nowhere they number alike, so
     * the bytes can be compared too.
     */
    uint8_t scratch[PACKET_CAP];
    for (unsigned i = 0; i < CROSS_SSRCS; i++) {
        size_t len = random_rtcp(&r, scratch, ssrcs[i]);
        assert_true(media_srtp_protect_rtcp(ours_tx, scratch, len, PACKET_CAP) > 0);
    }
    for (unsigned round = 0; round < 10; round++) {
        for (unsigned i = 0; i < CROSS_BATCH; i++) {
            struct sent *p = &batch[i];
            p->plain_len = random_rtcp(&r, p->plain, ssrcs[rng_next(&r) % CROSS_SSRCS]);
            protect_both(p, true, ours_tx, theirs_tx);
            order[i] = p;
        }
        shuffle(&r, order, CROSS_BATCH);
        deliver(order, CROSS_BATCH, true, ours_rx, theirs_rx);
    }

    /* SRTCP that libsrtp sends unencrypted (E flag clear, authenticated only) passes ours. */
    srtp_t theirs_auth_only = libsrtp_session(&k, true, false);
    struct media_srtp *ours_rx2 = media_srtp_new(&peer, NULL);
    assert_non_null(ours_rx2);
    for (unsigned i = 0; i < 20; i++) {
        struct sent *p = &batch[0];
        p->plain_len = random_rtcp(&r, p->plain, ssrcs[0]);
        memcpy(p->theirs, p->plain, p->plain_len);
        p->theirs_len = (int)p->plain_len;
        assert_int_equal(srtp_protect_rtcp(theirs_auth_only, p->theirs, &p->theirs_len),
                         srtp_err_status_ok);
        assert_int_equal(
            p->theirs[p->theirs_len - (profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM ? 4 : 14)] &
                0x80,
            0);
        assert_memory_equal(p->theirs + 8, p->plain + 8, p->plain_len - 8); /* in clear */
        assert_int_equal(media_srtp_unprotect_rtcp(ours_rx2, p->theirs, (size_t)p->theirs_len),
                         (int)p->plain_len);
        assert_memory_equal(p->theirs, p->plain, p->plain_len);
    }
    srtp_dealloc(theirs_auth_only);
    media_srtp_free(ours_rx2);

    free(batch);
    srtp_dealloc(theirs_tx);
    srtp_dealloc(theirs_rx);
    media_srtp_free(ours_tx);
    media_srtp_free(ours_rx);
}

static void test_cross_check_libsrtp_gcm(void **state)
{
    (void)state;
    cross_check(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, 0x7abb1b0001ULL);
    cross_check(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, 0x7abb1b0002ULL);
}

static void test_cross_check_libsrtp_cm(void **state)
{
    (void)state;
    cross_check(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, 0x7abb1b0003ULL);
    cross_check(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, 0x7abb1b0004ULL);
}

/* ------------------------------------------------------------------------- */
/* State moved only by authentic packets; the SSRC tables; hostile input     */
/* ------------------------------------------------------------------------- */

/* An RTP packet of `p.a` with `seq` (SSRC 0x01020304), protected into `buf`; its length. */
static int sealed_rtp(struct pair *p, uint16_t seq, uint8_t *buf, size_t cap)
{
    return protect_one(p, false, seq, buf, cap);
}

static void forgery_moves_nothing(enum media_srtp_profile profile)
{
    struct pair p = make_pair(profile);
    uint8_t held[256], forged[256], buf[256];

    /* The window: a forged packet far ahead must not make an older authentic one "too old". */
    for (uint16_t seq = 100; seq < 110; seq++) {
        int n = sealed_rtp(&p, seq, buf, sizeof(buf));
        assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)n) > 0);
    }
    int held_len = sealed_rtp(&p, 110, held, sizeof(held));
    int forged_len = sealed_rtp(&p, 110 + 300, forged, sizeof(forged));
    forged[20] ^= 0x04;
    assert_int_equal(media_srtp_unprotect_rtp(p.b, forged, (size_t)forged_len),
                     MEDIA_SRTP_ERR_AUTH);
    assert_true(media_srtp_unprotect_rtp(p.b, held, (size_t)held_len) > 0);

    /* The rollover counter: a forged packet "after the wrap" must not move it. */
    for (unsigned seq = 111; seq <= 64111; seq += 1000) {
        int n = sealed_rtp(&p, (uint16_t)seq, buf, sizeof(buf));
        assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)n) > 0);
    }
    int before_wrap_len = sealed_rtp(&p, 64112, held, sizeof(held));
    int after_wrap_len = sealed_rtp(&p, 5, buf, sizeof(buf)); /* ROC 1 at the sender */
    memcpy(forged, buf, (size_t)after_wrap_len);
    forged[after_wrap_len - 1] ^= 0x01;
    assert_int_equal(media_srtp_unprotect_rtp(p.b, forged, (size_t)after_wrap_len),
                     MEDIA_SRTP_ERR_AUTH);
    assert_true(media_srtp_unprotect_rtp(p.b, held, (size_t)before_wrap_len) > 0);
    assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)after_wrap_len) > 0);
    free_pair(&p);
}

static void test_forgery_moves_no_state(void **state)
{
    (void)state;
    forgery_moves_nothing(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    forgery_moves_nothing(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
}

/* Old SRTCP: 128 indices behind is refused as a replay, like RTP. */
static void rtcp_too_old(enum media_srtp_profile profile)
{
    struct pair p = make_pair(profile);
    uint8_t old[256], buf[256];
    int old_len = protect_one(&p, true, 0, old, sizeof(old));
    for (int i = 0; i < 200; i++) {
        int n = protect_one(&p, true, 0, buf, sizeof(buf));
        assert_true(media_srtp_unprotect_rtcp(p.b, buf, (size_t)n) > 0);
    }
    assert_int_equal(media_srtp_unprotect_rtcp(p.b, old, (size_t)old_len), MEDIA_SRTP_ERR_REPLAY);
    free_pair(&p);
}

static void test_too_old_refused(void **state)
{
    (void)state;
    rtcp_too_old(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    rtcp_too_old(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);

    /* RTP with CM too (test_replay_refused has GCM), and the window's edge: 127 back is in. */
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
    uint8_t edge[256], old[256], buf[256];
    int old_len = sealed_rtp(&p, 1000, old, sizeof(old));
    int edge_len = sealed_rtp(&p, 1001, edge, sizeof(edge));
    int n = sealed_rtp(&p, 1128, buf, sizeof(buf));
    assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)n) > 0);
    assert_int_equal(media_srtp_unprotect_rtp(p.b, old, (size_t)old_len), MEDIA_SRTP_ERR_REPLAY);
    assert_true(media_srtp_unprotect_rtp(p.b, edge, (size_t)edge_len) > 0);
    free_pair(&p);
}

/* One RTP packet of `ssrc` with `seq` from `from`, protected into `buf`; its length. */
static int sealed_ssrc(struct media_srtp *from, uint32_t ssrc, uint16_t seq, uint8_t *buf)
{
    size_t len = make_rtp(buf, seq, ssrc);
    int n = media_srtp_protect_rtp(from, buf, len, 256);
    assert_true(n > 0);
    return n;
}

static void test_ssrc_tables(void **state)
{
    (void)state;
    struct pair p = make_pair(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM);
    static uint8_t kept[17][256];
    int kept_len[17];
    uint8_t buf[256];

    /* Inbound: 16 SSRCs fill the table. */
    for (uint32_t i = 0; i < 16; i++) {
        kept_len[i] = sealed_ssrc(p.a, 0x1000 + i, 1, kept[i]);
        memcpy(buf, kept[i], (size_t)kept_len[i]);
        assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)kept_len[i]) > 0);
    }
    /* Forgeries under new SSRCs take no place in it. */
    for (uint32_t i = 0; i < 100; i++) {
        int n = sealed_ssrc(p.a, 0x1000 + i % 16, (uint16_t)(100 + i), buf);
        buf[8] = 0x77; /* another SSRC */
        assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, (size_t)n), MEDIA_SRTP_ERR_AUTH);
    }
    for (uint32_t i = 0; i < 16; i++) {
        memcpy(buf, kept[i], (size_t)kept_len[i]);
        assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, (size_t)kept_len[i]),
                         MEDIA_SRTP_ERR_REPLAY);
    }
    /* SSRC 0 is the least recently used after the replays above... make it the most recent. */
    int n = sealed_ssrc(p.a, 0x1000, 2, buf);
    assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)n) > 0);
    /*
     * A 17th SSRC pushes out the least recently used one, SSRC 0x1001, and
     * nothing else. It comes from a second sender with a's keys, as a's own
     * table of SSRCs to send is full.
     */
    struct media_srtp_keys k = make_keys(MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM, 1);
    struct media_srtp *a2 = media_srtp_new(&k, NULL);
    assert_non_null(a2);
    kept_len[16] = sealed_ssrc(a2, 0x2000, 1, kept[16]);
    media_srtp_free(a2);
    memcpy(buf, kept[16], (size_t)kept_len[16]);
    assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)kept_len[16]) > 0);
    for (uint32_t i = 0; i < 17; i++) {
        memcpy(buf, kept[i], (size_t)kept_len[i]);
        if (i != 1)
            assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, (size_t)kept_len[i]),
                             MEDIA_SRTP_ERR_REPLAY);
    }
    /* Forgotten, so accepted again: the documented cost of a full table (checked last, as
     * it takes a place again). */
    memcpy(buf, kept[1], (size_t)kept_len[1]);
    assert_true(media_srtp_unprotect_rtp(p.b, buf, (size_t)kept_len[1]) > 0);

    /* Outbound: 16 SSRCs, and the 17th is refused rather than one of them forgotten. */
    struct pair q = make_pair(MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80);
    for (uint32_t i = 0; i < 16; i++)
        sealed_ssrc(q.a, 0x3000 + i, 1, buf);
    size_t len = make_rtp(buf, 1, 0x4000);
    assert_int_equal(media_srtp_protect_rtp(q.a, buf, len, sizeof(buf)), MEDIA_SRTP_ERR_FAILED);
    len = make_rtcp(buf, 0x4000);
    assert_int_equal(media_srtp_protect_rtcp(q.a, buf, len, sizeof(buf)), MEDIA_SRTP_ERR_FAILED);
    for (uint32_t i = 0; i < 16; i++) {
        n = sealed_ssrc(q.a, 0x3000 + i, 2, buf);
        assert_true(media_srtp_unprotect_rtp(q.b, buf, (size_t)n) > 0);
    }
    free_pair(&q);
    free_pair(&p);
}

/* CSRCs or a header extension that overrun the packet are a bad length, both ways. */
static void test_header_overrun(void **state)
{
    (void)state;
    enum media_srtp_profile profiles[] = {MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,
                                          MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    for (size_t i = 0; i < 2; i++) {
        struct pair p = make_pair(profiles[i]);
        uint8_t buf[256];
        make_rtp(buf, 1, 5);
        buf[0] = 0x8F; /* 15 CSRCs: 72 bytes of header in a 40-byte packet */
        assert_int_equal(media_srtp_protect_rtp(p.a, buf, 40, sizeof(buf)),
                         MEDIA_SRTP_ERR_BAD_LENGTH);
        make_rtp(buf, 1, 5);
        buf[0] = 0x90; /* an extension of 100 words */
        buf[12] = 0xBE;
        buf[13] = 0xDE;
        buf[14] = 0;
        buf[15] = 100;
        assert_int_equal(media_srtp_protect_rtp(p.a, buf, 112, sizeof(buf)),
                         MEDIA_SRTP_ERR_BAD_LENGTH);
        buf[0] = 0x90; /* its 4-byte head cut off */
        assert_int_equal(media_srtp_protect_rtp(p.a, buf, 14, sizeof(buf)),
                         MEDIA_SRTP_ERR_BAD_LENGTH);
        assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, 112), MEDIA_SRTP_ERR_BAD_LENGTH);
        /* A header that fits the packet but reaches into the tag. */
        buf[0] = 0x80 | 15;
        assert_int_equal(media_srtp_unprotect_rtp(p.b, buf, 12 + 60 + 8),
                         MEDIA_SRTP_ERR_BAD_LENGTH);
        free_pair(&p);
    }
}

/* Random bytes of every length up to 300, each in a heap block of its own size for ASan. */
static void test_hostile_input(void **state)
{
    (void)state;
    struct rng r = {0x5eed};
    enum media_srtp_profile profiles[] = {MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,
                                          MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    for (size_t i = 0; i < 2; i++) {
        struct pair p = make_pair(profiles[i]);
        for (unsigned round = 0; round < 20; round++) {
            for (size_t len = 0; len <= 300; len++) {
                uint8_t *buf = malloc(len ? len : 1);
                assert_non_null(buf);
                rng_fill(&r, buf, len);
                if (round % 2)
                    buf[0] = (uint8_t)(0x80 | (len ? buf[0] & 0x3F : 0)); /* version 2 */
                int a = media_srtp_unprotect_rtp(p.b, buf, len);
                rng_fill(&r, buf, len);
                int b = media_srtp_unprotect_rtcp(p.b, buf, len);
                assert_true(a < 0 && a >= MEDIA_SRTP_ERR_MIN);
                assert_true(b < 0 && b >= MEDIA_SRTP_ERR_MIN);
                free(buf);
            }
        }
        free_pair(&p);
    }
    assert_int_equal(ERR_peek_error(), 0);
}

/* ------------------------------------------------------------------------- */
/* No allocation per packet                                                  */
/* ------------------------------------------------------------------------- */

#define NO_ALLOC_PACKETS 10000

/*
 * Protects and unprotects `NO_ALLOC_PACKETS` RTP and as many RTCP packets
 * (audio- and video-sized) with `p`, with a tampered packet and a replay
 * every 100 so the failure paths run too. Returns the number of packets
 * that did not behave.
 */
static unsigned packet_loop(struct pair *p, uint16_t first_seq)
{
    uint8_t buf[1300], copy[1300];
    unsigned bad = 0;
    for (unsigned i = 0; i < NO_ALLOC_PACKETS; i++) {
        uint16_t seq = (uint16_t)(first_seq + i); /* wraps: the ROC moves too */
        size_t len = make_rtp(buf, seq, 0xA0D10);
        if (i % 2) {
            memset(buf + len, 0x5A, 1000); /* video-sized: 1100 bytes of payload */
            len += 1000;
        }
        int n = media_srtp_protect_rtp(p->a, buf, len, sizeof(buf));
        if (i % 100 == 0)
            memcpy(copy, buf, (size_t)n);
        bad += media_srtp_unprotect_rtp(p->b, buf, (size_t)n) != (int)len;
        if (i % 100 == 0) {
            bad += media_srtp_unprotect_rtp(p->b, copy, (size_t)n) != MEDIA_SRTP_ERR_REPLAY;
            uint16_t ahead = (uint16_t)(seq + 1000); /* a sequence number not seen yet */
            copy[2] = (uint8_t)(ahead >> 8);
            copy[3] = (uint8_t)ahead;
            bad += media_srtp_unprotect_rtp(p->b, copy, (size_t)n) != MEDIA_SRTP_ERR_AUTH;
        }
        len = make_rtcp(buf, 0xA0D11);
        n = media_srtp_protect_rtcp(p->a, buf, len, sizeof(buf));
        if (i % 100 == 0) {
            memcpy(copy, buf, (size_t)n);
            copy[10] ^= 1;
            bad += media_srtp_unprotect_rtcp(p->b, copy, (size_t)n) != MEDIA_SRTP_ERR_AUTH;
        }
        bad += media_srtp_unprotect_rtcp(p->b, buf, (size_t)n) != (int)len;
    }
    return bad;
}

/*
 * 10 000 RTP and 10 000 RTCP packets of each profile, after a warm-up, with
 * no allocation at all. Under AddressSanitizer the packets still run (and
 * must behave) but nothing is counted, and the test reports itself skipped.
 */
static void test_no_allocation_per_packet(void **state)
{
    (void)state;
    enum media_srtp_profile profiles[] = {MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,
                                          MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    for (size_t i = 0; i < 2; i++) {
        struct pair p = make_pair(profiles[i]);
        assert_int_equal(packet_loop(&p, 60000), 0); /* warm-up: OpenSSL's one-off state */
#if COUNT_ALLOCATIONS
        unsigned long before = allocations;
#endif
        unsigned bad = packet_loop(&p, (uint16_t)(60000 + NO_ALLOC_PACKETS));
#if COUNT_ALLOCATIONS
        unsigned long during = allocations - before;
        assert_int_equal(during, 0);
#endif
        assert_int_equal(bad, 0);
        free_pair(&p);
    }
    assert_int_equal(ERR_peek_error(), 0);
#if COUNT_ALLOCATIONS
    /* The count does see allocations made inside libcrypto.so. */
    unsigned long before = allocations;
    EVP_CIPHER_CTX_free(EVP_CIPHER_CTX_new());
    assert_true(allocations - before >= 2);
#else
    skip(); /* under AddressSanitizer, which owns the allocator */
#endif
}

static int setup_libsrtp(void **state)
{
    (void)state;
    return srtp_init() == srtp_err_status_ok ? 0 : -1;
}

static int teardown_libsrtp(void **state)
{
    (void)state;
    return srtp_shutdown() == srtp_err_status_ok ? 0 : -1;
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
        cmocka_unit_test(test_rfc3711_b2_aes_cm_keystream),
        cmocka_unit_test(test_rfc3711_b3_key_derivation),
        cmocka_unit_test(test_rfc7714_srtp_vectors),
        cmocka_unit_test(test_rfc7714_srtcp_vectors),
        cmocka_unit_test(test_cross_check_libsrtp_gcm),
        cmocka_unit_test(test_cross_check_libsrtp_cm),
        cmocka_unit_test(test_forgery_moves_no_state),
        cmocka_unit_test(test_too_old_refused),
        cmocka_unit_test(test_ssrc_tables),
        cmocka_unit_test(test_header_overrun),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_no_allocation_per_packet),
    };
    return cmocka_run_group_tests(tests, setup_libsrtp, teardown_libsrtp);
}
