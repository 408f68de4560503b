/*
 * srtp.c - one leg's SRTP/SRTCP protection over libsrtp2 (see srtp.h for
 * the contracts).
 *
 * Runs on the media worker that owns the leg (and in the tests). Two libsrtp
 * sessions per leg, because a libsrtp session holds a single wildcard-SSRC
 * template: one for ssrc_any_outbound, one for ssrc_any_inbound.
 */
#include "srtp.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <srtp2/srtp.h>

#define RTP_HEADER_MIN   12 /* V/P/X/CC, M/PT, sequence, timestamp, SSRC */
#define RTCP_HEADER_MIN  8  /* V/P/RC, PT, length, SSRC */
#define SRTCP_INDEX_SIZE 4  /* E flag and 31-bit SRTCP index */
#define PACKET_MAX       65535

struct media_srtp {
    srtp_t outbound;
    srtp_t inbound;
    size_t tag_len; /* authentication tag length of the profile */
};

const char *media_srtp_strerror(int err)
{
    if (err >= 0)
        return "success";
    switch (err) {
    case MEDIA_SRTP_ERR_INVALID:
        return "invalid argument";
    case MEDIA_SRTP_ERR_BAD_LENGTH:
        return "packet too short or too long";
    case MEDIA_SRTP_ERR_NO_SPACE:
        return "no room in the buffer for the authentication tag";
    case MEDIA_SRTP_ERR_AUTH:
        return "authentication failed";
    case MEDIA_SRTP_ERR_REPLAY:
        return "replayed or too old packet";
    case MEDIA_SRTP_ERR_INIT:
        return "libsrtp initialisation failed";
    case MEDIA_SRTP_ERR_FAILED:
        return "libsrtp failed";
    default:
        return "unknown error";
    }
}

const char *media_srtp_error_name(int err)
{
    if (err >= 0)
        return "ok";
    switch (err) {
    case MEDIA_SRTP_ERR_INVALID:
        return "invalid";
    case MEDIA_SRTP_ERR_BAD_LENGTH:
        return "bad_length";
    case MEDIA_SRTP_ERR_NO_SPACE:
        return "no_space";
    case MEDIA_SRTP_ERR_AUTH:
        return "auth";
    case MEDIA_SRTP_ERR_REPLAY:
        return "replay";
    case MEDIA_SRTP_ERR_INIT:
        return "init";
    case MEDIA_SRTP_ERR_FAILED:
        return "failed";
    default:
        return "unknown";
    }
}

const char *media_srtp_profile_name(enum media_srtp_profile profile)
{
    switch (profile) {
    case MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM:
        return "AEAD_AES_128_GCM";
    case MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80:
        return "AES_CM_128_HMAC_SHA1_80";
    case MEDIA_SRTP_PROFILE_NONE:
        break;
    }
    return "none";
}

int media_srtp_profile_lengths(enum media_srtp_profile profile, size_t *key_len, size_t *salt_len)
{
    switch (profile) {
    case MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM:
        *key_len = 16;
        *salt_len = 12;
        return 0;
    case MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80:
        *key_len = 16;
        *salt_len = 14;
        return 0;
    case MEDIA_SRTP_PROFILE_NONE:
        break;
    }
    return MEDIA_SRTP_ERR_INVALID;
}

/*
 * libsrtp keeps its crypto kernel in process globals and srtp_init() is not
 * safe to race, so this is the one process-wide state of this file: a
 * pthread_once guard and the result of the single srtp_init() call.
 */
static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status = MEDIA_SRTP_ERR_INIT;

static void library_init_once(void)
{
    library_status = srtp_init() == srtp_err_status_ok ? 0 : MEDIA_SRTP_ERR_INIT;
}

int media_srtp_library_init(void)
{
    if (pthread_once(&library_once, library_init_once) != 0)
        return MEDIA_SRTP_ERR_INIT;
    return library_status;
}

/* Maps a libsrtp status to our errors; the cases a worker counts get their own. */
static int map_status(srtp_err_status_t st)
{
    switch (st) {
    case srtp_err_status_ok:
        return 0;
    case srtp_err_status_auth_fail:
    case srtp_err_status_cipher_fail: /* an AEAD tag that does not verify */
        return MEDIA_SRTP_ERR_AUTH;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old:
        return MEDIA_SRTP_ERR_REPLAY;
    case srtp_err_status_bad_param: /* header fields (CSRC count, extension) overrun */
    case srtp_err_status_parse_err:
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    default:
        return MEDIA_SRTP_ERR_FAILED;
    }
}

/* Fills a policy for one direction: crypto policy of the profile, key||salt. */
static void fill_policy(srtp_policy_t *p, enum media_srtp_profile profile, srtp_ssrc_type_t type,
                        unsigned char *master)
{
    memset(p, 0, sizeof(*p));
    if (profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtcp);
    }
    p->ssrc.type = type;
    p->key = master;
    p->window_size = 0; /* libsrtp's default (128) */
    /* Resending a cached packet to answer a NACK protects the same index again. */
    p->allow_repeat_tx = type == ssrc_any_outbound;
    p->next = NULL;
}

struct media_srtp *media_srtp_new(const struct media_srtp_keys *keys, int *err)
{
    int e = MEDIA_SRTP_ERR_INVALID;
    unsigned char master[MEDIA_SRTP_KEY_MAX + MEDIA_SRTP_SALT_MAX];
    struct media_srtp *s = NULL;
    size_t key_len, salt_len;

    if (!keys || media_srtp_profile_lengths(keys->profile, &key_len, &salt_len) != 0 ||
        keys->key_len != key_len || keys->salt_len != salt_len)
        goto fail;
    e = media_srtp_library_init();
    if (e != 0)
        goto fail;
    e = MEDIA_SRTP_ERR_FAILED;
    s = calloc(1, sizeof(*s));
    if (!s)
        goto fail;
    s->tag_len = keys->profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM ? 16 : 10;

    srtp_policy_t policy;
    memcpy(master, keys->local_key, key_len);
    memcpy(master + key_len, keys->local_salt, salt_len);
    fill_policy(&policy, keys->profile, ssrc_any_outbound, master);
    if (srtp_create(&s->outbound, &policy) != srtp_err_status_ok) {
        s->outbound = NULL;
        goto fail;
    }
    memcpy(master, keys->remote_key, key_len);
    memcpy(master + key_len, keys->remote_salt, salt_len);
    fill_policy(&policy, keys->profile, ssrc_any_inbound, master);
    if (srtp_create(&s->inbound, &policy) != srtp_err_status_ok) {
        s->inbound = NULL;
        goto fail;
    }
    OPENSSL_cleanse(master, sizeof(master));
    return s;

fail:
    OPENSSL_cleanse(master, sizeof(master));
    media_srtp_free(s);
    if (err)
        *err = e;
    return NULL;
}

void media_srtp_free(struct media_srtp *s)
{
    if (!s)
        return;
    if (s->outbound)
        srtp_dealloc(s->outbound);
    if (s->inbound)
        srtp_dealloc(s->inbound);
    free(s);
}

/* Common checks before protecting: a header's worth of bytes and room for the trailer. */
static int check_protect(size_t len, size_t cap, size_t header_min)
{
    if (len < header_min || len > PACKET_MAX)
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    if (cap < len || cap - len < MEDIA_SRTP_MAX_OVERHEAD)
        return MEDIA_SRTP_ERR_NO_SPACE;
    return 0;
}

int media_srtp_protect_rtp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap)
{
    assert(s && buf);
    int e = check_protect(len, cap, RTP_HEADER_MIN);
    if (e)
        return e;
    int n = (int)len;
    e = map_status(srtp_protect(s->outbound, buf, &n));
    return e ? e : n;
}

int media_srtp_protect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap)
{
    assert(s && buf);
    int e = check_protect(len, cap, RTCP_HEADER_MIN);
    if (e)
        return e;
    int n = (int)len;
    e = map_status(srtp_protect_rtcp(s->outbound, buf, &n));
    return e ? e : n;
}

/*
 * Checked here rather than left to libsrtp: a packet shorter than header and
 * tag is counted as a bad length, not as an authentication failure.
 */
int media_srtp_unprotect_rtp(struct media_srtp *s, uint8_t *buf, size_t len)
{
    assert(s && buf);
    if (len < RTP_HEADER_MIN + s->tag_len || len > PACKET_MAX)
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    int n = (int)len;
    int e = map_status(srtp_unprotect(s->inbound, buf, &n));
    return e ? e : n;
}

int media_srtp_unprotect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len)
{
    assert(s && buf);
    if (len < RTCP_HEADER_MIN + SRTCP_INDEX_SIZE + s->tag_len || len > PACKET_MAX)
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    int n = (int)len;
    int e = map_status(srtp_unprotect_rtcp(s->inbound, buf, &n));
    return e ? e : n;
}
