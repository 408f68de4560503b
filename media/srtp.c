/*
 * srtp.c - one leg's SRTP/SRTCP protection on OpenSSL (see srtp.h for the
 * contracts): RFC 3711 (AES_CM_128_HMAC_SHA1_80) and RFC 7714
 * (AEAD_AES_128_GCM), with RFC 3711's key derivation.
 *
 * Runs on the media worker that owns the leg (and in the tests). Everything
 * a packet needs is made in media_srtp_new(): per direction, and within it
 * for RTP and for RTCP, one OpenSSL cipher context keyed with the session
 * key (AES-128-GCM, or AES-128-CTR), the session salt and, for CM, the
 * HMAC-SHA1 key as precomputed inner and outer SHA-1 states. A packet then
 * only sets the IV on its context, runs the cipher in place and copies a
 * SHA-1 state on the stack: no allocation, no lock.
 *
 * Debian's libsrtp2, which this replaces, runs on NSS and allocated, locked
 * and freed per packet (bench/README.md).
 */
#include "srtp.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "bytes.h"

#define RTP_HEADER_MIN     12 /* V/P/X/CC, M/PT, sequence, timestamp, SSRC */
#define RTCP_HEADER_MIN    8  /* V/P/RC, PT, length, SSRC: left clear by SRTCP */
#define SRTCP_TRAILER_SIZE 4  /* E flag and 31-bit SRTCP index */
#define SRTCP_E_FLAG       0x80000000u
#define SRTCP_INDEX_MAX    0x7FFFFFFFu
#define PACKET_MAX         65535

#define SESSION_KEY_SIZE 16 /* AES-128 for both profiles */
#define CM_SALT_SIZE     14
#define GCM_SALT_SIZE    12
#define GCM_IV_SIZE      12
#define GCM_TAG_SIZE     16
#define CM_IV_SIZE       16
#define HMAC_KEY_SIZE    20 /* RFC 3711 section 8.2: n_a = 160 bits */
#define HMAC_TAG_SIZE    10 /* the 80 of HMAC_SHA1_80 */
#define SHA1_BLOCK_SIZE  64
#define KDF_OUT_MAX      (1u << 20)

/* RFC 3711 section 4.3.2: what each key derivation label makes. */
enum kdf_label {
    LABEL_RTP_ENCRYPTION = 0,
    LABEL_RTP_AUTH = 1,
    LABEL_RTP_SALT = 2,
    LABEL_RTCP_ENCRYPTION = 3,
    LABEL_RTCP_AUTH = 4,
    LABEL_RTCP_SALT = 5,
};

/*
 * Sixteen SSRCs per direction cover a leg many times over: we send audio,
 * video and RTX under our own SSRCs, a browser sends as many plus one for
 * its receiver reports.
 */
#define SSRC_SLOTS    16
#define REPLAY_WINDOW 128 /* packets: libsrtp's default, twice RFC 3711's minimum of 64 */

/*
 * The indices received at and below `top`, the highest index seen: bit k of
 * `seen` (seen[0] holds bits 0-63, seen[1] 64-127) is set when index top - k
 * has authenticated. For SRTP the index is ROC * 65536 + SEQ (48 bits); for
 * SRTCP it is the 31-bit SRTCP index.
 */
struct replay_window {
    uint64_t top;
    uint64_t seen[2];
};

/* What one direction knows of one SSRC. */
struct ssrc_state {
    bool rtp_started;          /* an RTP packet of this SSRC has been protected or authenticated */
    bool rtcp_started;         /* inbound: an SRTCP packet has authenticated */
    struct replay_window rtp;  /* outbound uses only `top`, for the rollover counter */
    struct replay_window rtcp; /* inbound only */
    uint32_t rtcp_next_index;  /* outbound only: the next SRTCP index, from 0 (RFC 3711 3.4) */
};

/*
 * The SSRCs one direction has seen. `ssrc` and `last_used` are apart from
 * `state` so that the search per packet reads one cache line.
 */
struct ssrc_table {
    uint32_t ssrc[SSRC_SLOTS];
    uint64_t last_used[SSRC_SLOTS]; /* a tick of `clock`: the least is evicted first */
    struct ssrc_state state[SSRC_SLOTS];
    unsigned count; /* slots 0..count-1 are in use; they are never emptied, only reused */
    uint64_t clock;
};

/* The session keys of one direction for RTP or for RTCP, ready for use. */
struct session {
    EVP_CIPHER_CTX *cipher;     /* AES-128-GCM or AES-128-CTR, keyed with the session key */
    uint8_t salt[CM_SALT_SIZE]; /* 12 bytes used with GCM */
    SHA_CTX hmac_inner;         /* CM: SHA-1 after (auth key ^ ipad), see hmac_sha1_init() */
    SHA_CTX hmac_outer;         /* CM: SHA-1 after (auth key ^ opad) */
};

struct direction {
    struct session rtp;
    struct session rtcp;
    struct ssrc_table ssrcs;
};

struct media_srtp {
    bool gcm; /* AEAD_AES_128_GCM; otherwise AES_CM_128_HMAC_SHA1_80 */
    size_t tag_len;
    struct direction out;
    struct direction in;
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
        return "OpenSSL cannot provide the SRTP ciphers";
    case MEDIA_SRTP_ERR_FAILED:
        return "SRTP failed";
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
        *key_len = SESSION_KEY_SIZE;
        *salt_len = GCM_SALT_SIZE;
        return 0;
    case MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80:
        *key_len = SESSION_KEY_SIZE;
        *salt_len = CM_SALT_SIZE;
        return 0;
    case MEDIA_SRTP_PROFILE_NONE:
        break;
    }
    return MEDIA_SRTP_ERR_INVALID;
}

int media_srtp_library_init(void)
{
    if (OPENSSL_init_crypto(0, NULL) != 1)
        return MEDIA_SRTP_ERR_INIT;
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    EVP_CIPHER *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
    EVP_MD *sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    int e = gcm && ctr && sha1 ? 0 : MEDIA_SRTP_ERR_INIT;
    EVP_CIPHER_free(gcm);
    EVP_CIPHER_free(ctr);
    EVP_MD_free(sha1);
    return e;
}

/* ------------------------------------------------------------------------- */
/* HMAC-SHA1                                                                  */
/* ------------------------------------------------------------------------- */

/*
 * HMAC-SHA1 from SHA-1 states precomputed over the key's inner and outer
 * pads: a packet copies them (plain structs) and hashes on. OpenSSL 3.0
 * deprecates the SHA1_* functions, but each of its replacements allocates
 * per message: EVP_MAC_init() with no key, HMAC_Init_ex() with no key and
 * EVP_MD_CTX_copy_ex() all duplicate the provider's digest context, two
 * malloc/free pairs per tag (measured on 3.0.19), and were 2.3x slower on a
 * 100-byte packet. SHA1_* are in every 3.x and use the same SHA-NI code, so
 * the deprecation warning is silenced here and only here.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* Keys `s` with the 20-byte HMAC key `key` (RFC 2104; shorter than a block, so used as is). */
static void hmac_sha1_init(struct session *s, const uint8_t key[HMAC_KEY_SIZE])
{
    uint8_t pad[SHA1_BLOCK_SIZE];
    memset(pad, 0x36, sizeof(pad));
    for (size_t i = 0; i < HMAC_KEY_SIZE; i++)
        pad[i] ^= key[i];
    SHA1_Init(&s->hmac_inner);
    SHA1_Update(&s->hmac_inner, pad, sizeof(pad));
    memset(pad, 0x5c, sizeof(pad));
    for (size_t i = 0; i < HMAC_KEY_SIZE; i++)
        pad[i] ^= key[i];
    SHA1_Init(&s->hmac_outer);
    SHA1_Update(&s->hmac_outer, pad, sizeof(pad));
    OPENSSL_cleanse(pad, sizeof(pad));
}

/*
 * Writes HMAC-SHA1(`data` || `suffix`) into `digest` (20 bytes); `suffix`
 * is the ROC for SRTP (RFC 3711 section 4.2), NULL for SRTCP.
 */
static void hmac_sha1(const struct session *s, const uint8_t *data, size_t len,
                      const uint8_t suffix[4], uint8_t digest[SHA_DIGEST_LENGTH])
{
    SHA_CTX c = s->hmac_inner;
    SHA1_Update(&c, data, len);
    if (suffix)
        SHA1_Update(&c, suffix, 4);
    SHA1_Final(digest, &c);
    c = s->hmac_outer;
    SHA1_Update(&c, digest, SHA_DIGEST_LENGTH);
    SHA1_Final(digest, &c);
    /* A copied state is as good as the key for making tags: leave none on the stack. */
    OPENSSL_cleanse(&c, sizeof(c));
}

#pragma GCC diagnostic pop

/* ------------------------------------------------------------------------- */
/* Ciphers                                                                    */
/* ------------------------------------------------------------------------- */

/* AES-CM (RFC 3711 section 4.1.1): XORs the keystream for `iv` into `data` in place. */
static int ctr_crypt(const struct session *s, const uint8_t iv[CM_IV_SIZE], uint8_t *data,
                     size_t len)
{
    int n;
    if (EVP_EncryptInit_ex(s->cipher, NULL, NULL, NULL, iv) != 1)
        return MEDIA_SRTP_ERR_FAILED;
    if (len && EVP_EncryptUpdate(s->cipher, data, &n, data, (int)len) != 1)
        return MEDIA_SRTP_ERR_FAILED;
    return 0;
}

/*
 * AES-GCM over `text` in place, authenticating aad1 || aad2 as well
 * (RFC 7714 sections 8 and 9: the RTP header; or SRTCP's first 8 bytes and
 * its trailer). Sealing writes the tag to `tag`.
 */
static int gcm_seal(const struct session *s, const uint8_t iv[GCM_IV_SIZE], const uint8_t *aad1,
                    size_t aad1_len, const uint8_t *aad2, size_t aad2_len, uint8_t *text,
                    size_t text_len, uint8_t tag[GCM_TAG_SIZE])
{
    int n;
    if (EVP_EncryptInit_ex(s->cipher, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(s->cipher, NULL, &n, aad1, (int)aad1_len) != 1 ||
        (aad2_len && EVP_EncryptUpdate(s->cipher, NULL, &n, aad2, (int)aad2_len) != 1) ||
        (text_len && EVP_EncryptUpdate(s->cipher, text, &n, text, (int)text_len) != 1) ||
        EVP_EncryptFinal_ex(s->cipher, tag, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_SIZE, tag) != 1)
        return MEDIA_SRTP_ERR_FAILED;
    return 0;
}

/*
 * The opposite of gcm_seal(): decrypts `text` in place and checks `tag`.
 * Returns 0 or MEDIA_SRTP_ERR_AUTH; on failure `text` is wiped, since it
 * holds plaintext that did not authenticate.
 */
static int gcm_open(const struct session *s, const uint8_t iv[GCM_IV_SIZE], const uint8_t *aad1,
                    size_t aad1_len, const uint8_t *aad2, size_t aad2_len, uint8_t *text,
                    size_t text_len, uint8_t tag[GCM_TAG_SIZE])
{
    int n;
    uint8_t none[GCM_TAG_SIZE]; /* GCM's final writes nothing, but wants somewhere to */
    if (EVP_DecryptInit_ex(s->cipher, NULL, NULL, NULL, iv) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_SIZE, tag) != 1 ||
        EVP_DecryptUpdate(s->cipher, NULL, &n, aad1, (int)aad1_len) != 1 ||
        (aad2_len && EVP_DecryptUpdate(s->cipher, NULL, &n, aad2, (int)aad2_len) != 1) ||
        (text_len && EVP_DecryptUpdate(s->cipher, text, &n, text, (int)text_len) != 1))
        return MEDIA_SRTP_ERR_FAILED;
    /* OpenSSL compares the tag in constant time (CRYPTO_memcmp) inside the final call. */
    if (EVP_DecryptFinal_ex(s->cipher, none, &n) != 1) {
        OPENSSL_cleanse(text, text_len);
        return MEDIA_SRTP_ERR_AUTH;
    }
    return 0;
}

/* RFC 7714 section 8.1: 00 00 || SSRC || ROC || SEQ, XOR the 12-byte session salt. */
static void gcm_rtp_iv(uint8_t iv[GCM_IV_SIZE], const uint8_t *salt, uint32_t ssrc, uint64_t index)
{
    iv[0] = 0;
    iv[1] = 0;
    wr32(iv + 2, ssrc);
    wr32(iv + 6, (uint32_t)(index >> 16));
    wr16(iv + 10, (uint16_t)index);
    for (size_t i = 0; i < GCM_IV_SIZE; i++)
        iv[i] ^= salt[i];
}

/* RFC 7714 section 9.1: 00 00 || SSRC || 00 00 || 0 || SRTCP index, XOR the session salt. */
static void gcm_rtcp_iv(uint8_t iv[GCM_IV_SIZE], const uint8_t *salt, uint32_t ssrc, uint32_t index)
{
    iv[0] = 0;
    iv[1] = 0;
    wr32(iv + 2, ssrc);
    iv[6] = 0;
    iv[7] = 0;
    wr32(iv + 8, index);
    for (size_t i = 0; i < GCM_IV_SIZE; i++)
        iv[i] ^= salt[i];
}

/*
 * RFC 3711 section 4.1.1: (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16),
 * the index being the 48-bit SRTP index or the SRTCP index.
 */
static void cm_iv(uint8_t iv[CM_IV_SIZE], const uint8_t *salt, uint32_t ssrc, uint64_t index)
{
    memset(iv, 0, CM_IV_SIZE);
    wr32(iv + 4, ssrc);
    wr16(iv + 8, (uint16_t)(index >> 32));
    wr32(iv + 10, (uint32_t)index);
    for (size_t i = 0; i < CM_SALT_SIZE; i++)
        iv[i] ^= salt[i];
}

/* ------------------------------------------------------------------------- */
/* Key derivation and set-up                                                  */
/* ------------------------------------------------------------------------- */

/*
 * RFC 3711 section 4.3.3 with a key derivation rate of 0: the AES-CM
 * keystream of the master key from IV = (master salt XOR label * 2^48) * 2^16.
 * `prf` is AES-128-CTR keyed with the master key; `salt` has 14 bytes (GCM's
 * 12 already padded with zeros).
 */
static int kdf_derive(EVP_CIPHER_CTX *prf, const uint8_t salt[CM_SALT_SIZE], unsigned label,
                      uint8_t *out, size_t out_len)
{
    uint8_t iv[CM_IV_SIZE] = {0};
    int n;
    memcpy(iv, salt, CM_SALT_SIZE);
    iv[7] ^= (uint8_t)label; /* key_id = label || r (48 bits), right-aligned in the 112-bit salt */
    memset(out, 0, out_len);
    if (EVP_EncryptInit_ex(prf, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(prf, out, &n, out, (int)out_len) != 1)
        return MEDIA_SRTP_ERR_FAILED;
    return 0;
}

/*
 * Keys one session: `cipher` with `key` for encrypting or decrypting, the
 * salt, and the HMAC key when there is one (CM).
 */
static int session_init(struct session *s, const EVP_CIPHER *cipher, bool encrypt,
                        const uint8_t key[SESSION_KEY_SIZE], const uint8_t *salt, size_t salt_len,
                        const uint8_t *auth_key)
{
    s->cipher = EVP_CIPHER_CTX_new();
    if (!s->cipher)
        return MEDIA_SRTP_ERR_FAILED;
    int ok = encrypt ? EVP_EncryptInit_ex2(s->cipher, cipher, key, NULL, NULL)
                     : EVP_DecryptInit_ex2(s->cipher, cipher, key, NULL, NULL);
    if (ok != 1)
        return MEDIA_SRTP_ERR_FAILED;
    memcpy(s->salt, salt, salt_len);
    if (auth_key)
        hmac_sha1_init(s, auth_key);
    return 0;
}

/*
 * Derives one direction's six session values from its master key and salt
 * and keys its two sessions. `ctr` and `cipher` are fetched by the caller
 * (the same when the profile is CM).
 */
static int direction_init(struct direction *d, bool gcm, bool outbound, const EVP_CIPHER *ctr,
                          const EVP_CIPHER *cipher, const uint8_t *master_key,
                          const uint8_t *master_salt, size_t salt_len)
{
    uint8_t salt14[CM_SALT_SIZE] = {0};
    uint8_t rtp_key[SESSION_KEY_SIZE], rtcp_key[SESSION_KEY_SIZE];
    uint8_t rtp_salt[CM_SALT_SIZE], rtcp_salt[CM_SALT_SIZE];
    uint8_t rtp_auth[HMAC_KEY_SIZE], rtcp_auth[HMAC_KEY_SIZE];
    size_t session_salt_len = gcm ? GCM_SALT_SIZE : CM_SALT_SIZE;
    int e = MEDIA_SRTP_ERR_FAILED;
    memcpy(salt14, master_salt, salt_len);

    EVP_CIPHER_CTX *prf = EVP_CIPHER_CTX_new();
    if (!prf || EVP_EncryptInit_ex2(prf, ctr, master_key, NULL, NULL) != 1)
        goto done;
    if ((e = kdf_derive(prf, salt14, LABEL_RTP_ENCRYPTION, rtp_key, sizeof(rtp_key))) ||
        (e = kdf_derive(prf, salt14, LABEL_RTP_SALT, rtp_salt, session_salt_len)) ||
        (e = kdf_derive(prf, salt14, LABEL_RTCP_ENCRYPTION, rtcp_key, sizeof(rtcp_key))) ||
        (e = kdf_derive(prf, salt14, LABEL_RTCP_SALT, rtcp_salt, session_salt_len)))
        goto done;
    if (!gcm && ((e = kdf_derive(prf, salt14, LABEL_RTP_AUTH, rtp_auth, sizeof(rtp_auth))) ||
                 (e = kdf_derive(prf, salt14, LABEL_RTCP_AUTH, rtcp_auth, sizeof(rtcp_auth)))))
        goto done;
    if ((e = session_init(&d->rtp, cipher, outbound, rtp_key, rtp_salt, session_salt_len,
                          gcm ? NULL : rtp_auth)) ||
        (e = session_init(&d->rtcp, cipher, outbound, rtcp_key, rtcp_salt, session_salt_len,
                          gcm ? NULL : rtcp_auth)))
        goto done;
    e = 0;

done:
    EVP_CIPHER_CTX_free(prf);
    OPENSSL_cleanse(salt14, sizeof(salt14));
    OPENSSL_cleanse(rtp_key, sizeof(rtp_key));
    OPENSSL_cleanse(rtcp_key, sizeof(rtcp_key));
    OPENSSL_cleanse(rtp_salt, sizeof(rtp_salt));
    OPENSSL_cleanse(rtcp_salt, sizeof(rtcp_salt));
    OPENSSL_cleanse(rtp_auth, sizeof(rtp_auth));
    OPENSSL_cleanse(rtcp_auth, sizeof(rtcp_auth));
    return e;
}

int media_srtp_kdf(const uint8_t *master_key, size_t key_len, const uint8_t *master_salt,
                   size_t salt_len, unsigned label, uint8_t *out, size_t out_len)
{
    if (!master_key || !master_salt || !out || key_len != SESSION_KEY_SIZE ||
        (salt_len != CM_SALT_SIZE && salt_len != GCM_SALT_SIZE) || label > 0xFF ||
        out_len > KDF_OUT_MAX)
        return MEDIA_SRTP_ERR_INVALID;
    uint8_t salt14[CM_SALT_SIZE] = {0};
    memcpy(salt14, master_salt, salt_len);
    EVP_CIPHER *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
    EVP_CIPHER_CTX *prf = EVP_CIPHER_CTX_new();
    int e = MEDIA_SRTP_ERR_FAILED;
    if (ctr && prf && EVP_EncryptInit_ex2(prf, ctr, master_key, NULL, NULL) == 1)
        e = kdf_derive(prf, salt14, label, out, out_len);
    EVP_CIPHER_CTX_free(prf);
    EVP_CIPHER_free(ctr);
    return e;
}

/* Checks `keys` against its profile; returns 0 or MEDIA_SRTP_ERR_INVALID. */
static int check_keys(const struct media_srtp_keys *keys)
{
    size_t key_len, salt_len;
    if (!keys || media_srtp_profile_lengths(keys->profile, &key_len, &salt_len) != 0 ||
        keys->key_len != key_len || keys->salt_len != salt_len)
        return MEDIA_SRTP_ERR_INVALID;
    return 0;
}

/* The common part of both constructors: the struct, and the ciphers fetched for it. */
static struct media_srtp *pair_alloc(const struct media_srtp_keys *keys, EVP_CIPHER **ctr,
                                     EVP_CIPHER **gcm, int *e)
{
    struct media_srtp *s = calloc(1, sizeof(*s));
    if (!s) {
        *e = MEDIA_SRTP_ERR_FAILED;
        return NULL;
    }
    s->gcm = keys->profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM;
    s->tag_len = s->gcm ? GCM_TAG_SIZE : HMAC_TAG_SIZE;
    *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
    *gcm = s->gcm ? EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL) : NULL;
    if (!*ctr || (s->gcm && !*gcm)) {
        *e = MEDIA_SRTP_ERR_INIT;
        media_srtp_free(s);
        return NULL;
    }
    return s;
}

struct media_srtp *media_srtp_new(const struct media_srtp_keys *keys, int *err)
{
    EVP_CIPHER *ctr = NULL, *gcm = NULL;
    struct media_srtp *s = NULL;
    int e = check_keys(keys);
    if (e)
        goto fail;
    s = pair_alloc(keys, &ctr, &gcm, &e);
    if (!s)
        goto fail;
    const EVP_CIPHER *cipher = s->gcm ? gcm : ctr;
    if ((e = direction_init(&s->out, s->gcm, true, ctr, cipher, keys->local_key, keys->local_salt,
                            keys->salt_len)) ||
        (e = direction_init(&s->in, s->gcm, false, ctr, cipher, keys->remote_key, keys->remote_salt,
                            keys->salt_len)))
        goto fail;
    EVP_CIPHER_free(ctr);
    EVP_CIPHER_free(gcm);
    return s;

fail:
    EVP_CIPHER_free(ctr);
    EVP_CIPHER_free(gcm);
    media_srtp_free(s);
    if (err)
        *err = e;
    return NULL;
}

struct media_srtp *media_srtp_new_with_session_keys(const struct media_srtp_keys *keys, int *err)
{
    EVP_CIPHER *ctr = NULL, *gcm = NULL;
    struct media_srtp *s = NULL;
    int e = check_keys(keys);
    if (!e && keys->profile != MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM)
        e = MEDIA_SRTP_ERR_INVALID;
    if (e)
        goto fail;
    s = pair_alloc(keys, &ctr, &gcm, &e);
    if (!s)
        goto fail;
    if ((e = session_init(&s->out.rtp, gcm, true, keys->local_key, keys->local_salt, GCM_SALT_SIZE,
                          NULL)) ||
        (e = session_init(&s->out.rtcp, gcm, true, keys->local_key, keys->local_salt, GCM_SALT_SIZE,
                          NULL)) ||
        (e = session_init(&s->in.rtp, gcm, false, keys->remote_key, keys->remote_salt,
                          GCM_SALT_SIZE, NULL)) ||
        (e = session_init(&s->in.rtcp, gcm, false, keys->remote_key, keys->remote_salt,
                          GCM_SALT_SIZE, NULL)))
        goto fail;
    EVP_CIPHER_free(ctr);
    EVP_CIPHER_free(gcm);
    return s;

fail:
    EVP_CIPHER_free(ctr);
    EVP_CIPHER_free(gcm);
    media_srtp_free(s);
    if (err)
        *err = e;
    return NULL;
}

static void direction_free(struct direction *d)
{
    EVP_CIPHER_CTX_free(d->rtp.cipher);
    EVP_CIPHER_CTX_free(d->rtcp.cipher);
}

void media_srtp_free(struct media_srtp *s)
{
    if (!s)
        return;
    direction_free(&s->out);
    direction_free(&s->in);
    /* The salts and the HMAC states are key material. */
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

/* ------------------------------------------------------------------------- */
/* Per-SSRC state: the table, the index estimate and the replay window        */
/* ------------------------------------------------------------------------- */

/* The state of `ssrc` in `t`, or NULL. Marks it used. */
static struct ssrc_state *ssrc_find(struct ssrc_table *t, uint32_t ssrc)
{
    for (unsigned i = 0; i < t->count; i++) {
        if (t->ssrc[i] == ssrc) {
            t->last_used[i] = ++t->clock;
            return &t->state[i];
        }
    }
    return NULL;
}

/*
 * A zeroed state for `ssrc`, which `t` does not hold yet: a free slot, or
 * when `evict` the least recently used one; NULL when the table is full and
 * may not evict.
 */
static struct ssrc_state *ssrc_add(struct ssrc_table *t, uint32_t ssrc, bool evict)
{
    unsigned slot = t->count;
    if (slot == SSRC_SLOTS) {
        if (!evict)
            return NULL;
        slot = 0;
        for (unsigned i = 1; i < SSRC_SLOTS; i++)
            if (t->last_used[i] < t->last_used[slot])
                slot = i;
    } else {
        t->count++;
    }
    t->ssrc[slot] = ssrc;
    t->last_used[slot] = ++t->clock;
    memset(&t->state[slot], 0, sizeof(t->state[slot]));
    return &t->state[slot];
}

/*
 * The 48-bit SRTP index of sequence number `seq` (RFC 3711 section 3.3.1
 * and Appendix A): the rollover counter that puts it closest to the highest
 * index seen. Before the first packet the index is `seq` itself (ROC 0), and
 * a guess below ROC 0 stays at 0: a stream starts at ROC 0, so a number just
 * "before" 0 is a late packet of that first cycle (as libsrtp decides).
 */
static uint64_t rtp_index_estimate(const struct ssrc_state *st, uint16_t seq)
{
    if (!st->rtp_started)
        return seq;
    int64_t roc = (int64_t)(st->rtp.top >> 16);
    int32_t s_l = (int32_t)(st->rtp.top & 0xFFFF);
    int64_t v = roc;
    if (s_l < 32768) {
        if ((int32_t)seq - s_l > 32768)
            v = roc - 1;
    } else if (s_l - 32768 > (int32_t)seq) {
        v = roc + 1;
    }
    if (v < 0)
        v = 0;
    else if (v > (int64_t)UINT32_MAX)
        v = UINT32_MAX; /* never reached: protect stops a stream before (rtp_used_up()) */
    return (uint64_t)v << 16 | seq;
}

/*
 * RFC 3711 section 9.2: 2^48 SRTP packets per key. A stream that reached the
 * last rollover count may send no more, so that its index never wraps to an
 * IV used before.
 */
static bool rtp_used_up(const struct ssrc_state *st)
{
    return st->rtp_started && st->rtp.top >> 16 == UINT32_MAX;
}

/* 0 when `index` may be accepted by `w`, else MEDIA_SRTP_ERR_REPLAY (seen, or too old). */
static int replay_check(const struct replay_window *w, uint64_t index)
{
    if (index > w->top)
        return 0;
    uint64_t age = w->top - index;
    if (age >= REPLAY_WINDOW)
        return MEDIA_SRTP_ERR_REPLAY;
    return (w->seen[age / 64] >> (age % 64)) & 1 ? MEDIA_SRTP_ERR_REPLAY : 0;
}

/* Starts `w` at its first authenticated index. */
static void replay_start(struct replay_window *w, uint64_t index)
{
    w->top = index;
    w->seen[0] = 1;
    w->seen[1] = 0;
}

/* Records an authenticated `index`, which replay_check() accepted. */
static void replay_add(struct replay_window *w, uint64_t index)
{
    if (index <= w->top) {
        uint64_t age = w->top - index;
        assert(age < REPLAY_WINDOW);
        w->seen[age / 64] |= (uint64_t)1 << (age % 64);
        return;
    }
    uint64_t shift = index - w->top;
    if (shift >= REPLAY_WINDOW) {
        w->seen[0] = 0;
        w->seen[1] = 0;
    } else if (shift >= 64) {
        w->seen[1] = w->seen[0] << (shift - 64);
        w->seen[0] = 0;
    } else {
        w->seen[1] = w->seen[1] << shift | w->seen[0] >> (64 - shift);
        w->seen[0] <<= shift;
    }
    w->seen[0] |= 1;
    w->top = index;
}

/* ------------------------------------------------------------------------- */
/* The packet path                                                            */
/* ------------------------------------------------------------------------- */

/*
 * The length of the RTP header at `p` (fixed part, CSRCs, header extension)
 * into `*header_len`; false when it does not fit in `len` bytes.
 */
static bool rtp_header_length(const uint8_t *p, size_t len, size_t *header_len)
{
    size_t n = RTP_HEADER_MIN + 4 * (size_t)(p[0] & 0x0F);
    if (n > len)
        return false;
    if (p[0] & 0x10) {
        if (len - n < 4)
            return false;
        n += 4 + 4 * (size_t)rd16(p + n + 2);
        if (n > len)
            return false;
    }
    *header_len = n;
    return true;
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

/* The outbound state of `ssrc`, added when new; NULL when the table is full. */
static struct ssrc_state *outbound_state(struct media_srtp *s, uint32_t ssrc)
{
    struct ssrc_state *st = ssrc_find(&s->out.ssrcs, ssrc);
    /*
     * Never evict here: a forgotten SSRC would start again at ROC 0 and SRTCP
     * index 0, and protect new packets under an IV it has already used.
     */
    return st ? st : ssrc_add(&s->out.ssrcs, ssrc, false);
}

int media_srtp_protect_rtp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap)
{
    assert(s && buf);
    size_t header_len;
    int e = check_protect(len, cap, RTP_HEADER_MIN);
    if (e)
        return e;
    if (!rtp_header_length(buf, len, &header_len))
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    uint32_t ssrc = rd32(buf + 8);
    struct ssrc_state *st = outbound_state(s, ssrc);
    if (!st || rtp_used_up(st))
        return MEDIA_SRTP_ERR_FAILED;
    uint64_t index = rtp_index_estimate(st, rd16(buf + 2));
    const struct session *ses = &s->out.rtp;
    if (s->gcm) {
        uint8_t iv[GCM_IV_SIZE];
        gcm_rtp_iv(iv, ses->salt, ssrc, index);
        e = gcm_seal(ses, iv, buf, header_len, NULL, 0, buf + header_len, len - header_len,
                     buf + len);
    } else {
        uint8_t iv[CM_IV_SIZE], roc[4], digest[SHA_DIGEST_LENGTH];
        cm_iv(iv, ses->salt, ssrc, index);
        e = ctr_crypt(ses, iv, buf + header_len, len - header_len);
        if (!e) {
            wr32(roc, (uint32_t)(index >> 16));
            hmac_sha1(ses, buf, len, roc, digest);
            memcpy(buf + len, digest, HMAC_TAG_SIZE);
        }
    }
    if (e)
        return e;
    /* No replay check outbound: a repeat (a NACK answered from the cache) is allowed. */
    if (!st->rtp_started || index > st->rtp.top) {
        st->rtp.top = index;
        st->rtp_started = true;
    }
    return (int)(len + s->tag_len);
}

int media_srtp_protect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap)
{
    assert(s && buf);
    int e = check_protect(len, cap, RTCP_HEADER_MIN);
    if (e)
        return e;
    uint32_t ssrc = rd32(buf + 4);
    struct ssrc_state *st = outbound_state(s, ssrc);
    if (!st || st->rtcp_next_index > SRTCP_INDEX_MAX)
        return MEDIA_SRTP_ERR_FAILED; /* 2^31 SRTCP packets: the key is used up (RFC 3711 9.2) */
    uint32_t index = st->rtcp_next_index;
    const struct session *ses = &s->out.rtcp;
    uint8_t *trailer;
    if (s->gcm) {
        /* RFC 7714 section 9: header || ciphertext || tag || E+index; the trailer is AAD. */
        uint8_t iv[GCM_IV_SIZE];
        trailer = buf + len + GCM_TAG_SIZE;
        wr32(trailer, SRTCP_E_FLAG | index);
        gcm_rtcp_iv(iv, ses->salt, ssrc, index);
        e = gcm_seal(ses, iv, buf, RTCP_HEADER_MIN, trailer, SRTCP_TRAILER_SIZE,
                     buf + RTCP_HEADER_MIN, len - RTCP_HEADER_MIN, buf + len);
    } else {
        /* RFC 3711 section 3.4: header || ciphertext || E+index || tag over all before it. */
        uint8_t iv[CM_IV_SIZE], digest[SHA_DIGEST_LENGTH];
        trailer = buf + len;
        cm_iv(iv, ses->salt, ssrc, index);
        e = ctr_crypt(ses, iv, buf + RTCP_HEADER_MIN, len - RTCP_HEADER_MIN);
        if (!e) {
            wr32(trailer, SRTCP_E_FLAG | index);
            hmac_sha1(ses, buf, len + SRTCP_TRAILER_SIZE, NULL, digest);
            memcpy(trailer + SRTCP_TRAILER_SIZE, digest, HMAC_TAG_SIZE);
        }
    }
    if (e)
        return e;
    st->rtcp_next_index++;
    return (int)(len + SRTCP_TRAILER_SIZE + s->tag_len);
}

/*
 * The inbound state of `ssrc` to check a packet against: the table's, or
 * `fresh` (zeroed) for an SSRC not seen yet, which enters the table only
 * once its packet has authenticated (inbound_commit()), so forged packets
 * cannot push real SSRCs out.
 */
static struct ssrc_state *inbound_state(struct media_srtp *s, uint32_t ssrc,
                                        struct ssrc_state *fresh)
{
    struct ssrc_state *st = ssrc_find(&s->in.ssrcs, ssrc);
    if (st)
        return st;
    memset(fresh, 0, sizeof(*fresh));
    return fresh;
}

/* The table's state for `ssrc` after its packet authenticated: `st`, or a new slot. */
static struct ssrc_state *inbound_commit(struct media_srtp *s, uint32_t ssrc, struct ssrc_state *st,
                                         const struct ssrc_state *fresh)
{
    return st == fresh ? ssrc_add(&s->in.ssrcs, ssrc, true) : st;
}

/*
 * Checked here, before any parsing: a packet shorter than header and tag is
 * counted as a bad length, not as an authentication failure.
 */
int media_srtp_unprotect_rtp(struct media_srtp *s, uint8_t *buf, size_t len)
{
    assert(s && buf);
    if (len < RTP_HEADER_MIN + s->tag_len || len > PACKET_MAX)
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    size_t body = len - s->tag_len, header_len;
    if (!rtp_header_length(buf, body, &header_len))
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    uint32_t ssrc = rd32(buf + 8);
    struct ssrc_state fresh;
    struct ssrc_state *st = inbound_state(s, ssrc, &fresh);
    uint64_t index = rtp_index_estimate(st, rd16(buf + 2));
    if (st->rtp_started && replay_check(&st->rtp, index))
        return MEDIA_SRTP_ERR_REPLAY;
    const struct session *ses = &s->in.rtp;
    int e;
    if (s->gcm) {
        uint8_t iv[GCM_IV_SIZE];
        gcm_rtp_iv(iv, ses->salt, ssrc, index);
        e = gcm_open(ses, iv, buf, header_len, NULL, 0, buf + header_len, body - header_len,
                     buf + body);
    } else {
        uint8_t iv[CM_IV_SIZE], roc[4], digest[SHA_DIGEST_LENGTH];
        wr32(roc, (uint32_t)(index >> 16));
        hmac_sha1(ses, buf, body, roc, digest);
        e = CRYPTO_memcmp(digest, buf + body, HMAC_TAG_SIZE) ? MEDIA_SRTP_ERR_AUTH : 0;
        if (!e) {
            cm_iv(iv, ses->salt, ssrc, index);
            e = ctr_crypt(ses, iv, buf + header_len, body - header_len);
        }
    }
    if (e)
        return e;
    st = inbound_commit(s, ssrc, st, &fresh);
    if (st->rtp_started) {
        replay_add(&st->rtp, index);
    } else {
        replay_start(&st->rtp, index);
        st->rtp_started = true;
    }
    return (int)body;
}

int media_srtp_unprotect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len)
{
    assert(s && buf);
    if (len < RTCP_HEADER_MIN + SRTCP_TRAILER_SIZE + s->tag_len || len > PACKET_MAX)
        return MEDIA_SRTP_ERR_BAD_LENGTH;
    size_t body = len - SRTCP_TRAILER_SIZE - s->tag_len;
    uint8_t *trailer = s->gcm ? buf + len - SRTCP_TRAILER_SIZE : buf + body;
    uint8_t *tag = s->gcm ? buf + body : buf + len - HMAC_TAG_SIZE;
    uint32_t word = rd32(trailer);
    bool encrypted = (word & SRTCP_E_FLAG) != 0;
    uint32_t index = word & SRTCP_INDEX_MAX;
    uint32_t ssrc = rd32(buf + 4);
    struct ssrc_state fresh;
    struct ssrc_state *st = inbound_state(s, ssrc, &fresh);
    if (st->rtcp_started && replay_check(&st->rtcp, index))
        return MEDIA_SRTP_ERR_REPLAY;
    const struct session *ses = &s->in.rtcp;
    int e;
    if (s->gcm) {
        uint8_t iv[GCM_IV_SIZE];
        gcm_rtcp_iv(iv, ses->salt, ssrc, index);
        /* RFC 7714 section 9.2: unencrypted, the whole packet is AAD and nothing is decrypted. */
        size_t clear = encrypted ? RTCP_HEADER_MIN : body;
        e = gcm_open(ses, iv, buf, clear, trailer, SRTCP_TRAILER_SIZE, buf + clear, body - clear,
                     tag);
    } else {
        uint8_t iv[CM_IV_SIZE], digest[SHA_DIGEST_LENGTH];
        hmac_sha1(ses, buf, body + SRTCP_TRAILER_SIZE, NULL, digest);
        e = CRYPTO_memcmp(digest, tag, HMAC_TAG_SIZE) ? MEDIA_SRTP_ERR_AUTH : 0;
        if (!e && encrypted) {
            cm_iv(iv, ses->salt, ssrc, index);
            e = ctr_crypt(ses, iv, buf + RTCP_HEADER_MIN, body - RTCP_HEADER_MIN);
        }
    }
    if (e)
        return e;
    st = inbound_commit(s, ssrc, st, &fresh);
    if (st->rtcp_started) {
        replay_add(&st->rtcp, index);
    } else {
        replay_start(&st->rtcp, index);
        st->rtcp_started = true;
    }
    return (int)body;
}
