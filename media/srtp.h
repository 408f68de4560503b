/*
 * srtp.h - one leg's SRTP/SRTCP protection (RFC 3711, RFC 7714), our own
 * implementation on OpenSSL. Private to media/: the worker, dtls.c and the
 * tests include it; nothing outside media/ may.
 *
 * A struct media_srtp holds both directions of one leg, keyed from what the
 * DTLS handshake exported (dtls.h): outbound with our (server) master key,
 * for what we send, inbound with the peer's (client) master key, for what we
 * receive. The session keys are derived once (RFC 3711 section 4.3, key
 * derivation rate 0) into OpenSSL cipher contexts kept for the life of the
 * leg: AES-128-GCM for AEAD_AES_128_GCM, AES-128 in counter mode plus
 * HMAC-SHA1 (from precomputed SHA-1 states) for AES_CM_128_HMAC_SHA1_80,
 * one set per direction for RTP and one for RTCP.
 *
 * Each direction accepts any SSRC and keeps a small fixed table of them
 * (16): the rollover counter and highest sequence number, a 128-packet
 * replay window for SRTP and one for SRTCP inbound, the SRTCP index
 * outbound. When the inbound table is full, the least recently used SSRC is
 * forgotten to make room; an SSRC only enters it once one of its packets has
 * authenticated. The outbound table never forgets (forgetting would reuse a
 * keystream), so a 17th SSRC sent on one leg is refused. Packets are
 * protected and unprotected in place, in the caller's buffer; nothing here
 * allocates, locks or logs per packet.
 *
 * Thread: any; a struct media_srtp belongs to one thread at a time (the
 * worker that owns its leg). media_srtp_library_init() may be called from
 * any thread, any number of times.
 */
#ifndef TABIB_MEDIA_SRTP_H
#define TABIB_MEDIA_SRTP_H

#include <stddef.h>
#include <stdint.h>

/* The DTLS-SRTP protection profiles we offer (RFC 5764, RFC 7714), best first. */
enum media_srtp_profile {
    MEDIA_SRTP_PROFILE_NONE = 0,
    MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,        /* 16-byte key, 12-byte salt, 16-byte tag */
    MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80, /* 16-byte key, 14-byte salt, 10-byte tag */
};

#define MEDIA_SRTP_KEY_MAX  16 /* master key: both profiles use AES-128 */
#define MEDIA_SRTP_SALT_MAX 14 /* master salt: 14 (CM) or 12 (GCM) bytes */

/*
 * The most protection adds to a packet, so the room a caller's buffer must
 * have after the packet: RTP grows by the tag (16 bytes with GCM, 10 with
 * CM+HMAC-SHA1-80); RTCP by the tag plus the 4-byte SRTCP index (20 or 14).
 * No MKI is ever used.
 */
#define MEDIA_SRTP_MAX_OVERHEAD 20

/*
 * The keys of one DTLS-SRTP association as one side sees them: `local_*`
 * protect what this side sends, `remote_*` check what it receives. As the
 * DTLS server, local is the exporter's server half and remote its client
 * half (RFC 5764 section 4.2).
 */
struct media_srtp_keys {
    enum media_srtp_profile profile;
    uint8_t key_len;  /* 16 */
    uint8_t salt_len; /* 12 (GCM) or 14 (CM) */
    uint8_t local_key[MEDIA_SRTP_KEY_MAX];
    uint8_t local_salt[MEDIA_SRTP_SALT_MAX];
    uint8_t remote_key[MEDIA_SRTP_KEY_MAX];
    uint8_t remote_salt[MEDIA_SRTP_SALT_MAX];
};

/* Errors: every function here returns 0 (or a length) or one of these. */
enum media_srtp_error {
    MEDIA_SRTP_ERR_INVALID = -1,    /* a bad argument: unknown profile, wrong key sizes */
    MEDIA_SRTP_ERR_BAD_LENGTH = -2, /* too short to be an (S)RTP/(S)RTCP packet, or too long */
    MEDIA_SRTP_ERR_NO_SPACE = -3,   /* the buffer has no room for the tag (protect) */
    MEDIA_SRTP_ERR_AUTH = -4,       /* authentication failed: tampered, or the wrong key */
    MEDIA_SRTP_ERR_REPLAY = -5,     /* a packet already received, or older than the window */
    MEDIA_SRTP_ERR_INIT = -6,       /* OpenSSL cannot provide AES-128-GCM, AES-128-CTR or SHA-1 */
    MEDIA_SRTP_ERR_FAILED = -7,     /* any other failure: OpenSSL, or an SSRC or index used up */
    MEDIA_SRTP_ERR_MIN = -7,
};

/* A short English description of a media_srtp_error ("unknown error" otherwise). */
const char *media_srtp_strerror(int err);

/*
 * The counter name of a result for /metrics: "ok" for 0 (or any length),
 * "auth", "replay", "bad_length", ... and "unknown" for anything else.
 */
const char *media_srtp_error_name(int err);

/* "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80" or "none". */
const char *media_srtp_profile_name(enum media_srtp_profile profile);

/* The master key and salt lengths of `profile`. Returns 0, or MEDIA_SRTP_ERR_INVALID. */
int media_srtp_profile_lengths(enum media_srtp_profile profile, size_t *key_len, size_t *salt_len);

/*
 * Checks once that OpenSSL can provide what SRTP needs (its default
 * provider's AES-128-GCM, AES-128-CTR and SHA-1), which also pays OpenSSL's
 * one-off cost of loading them: calling it at worker start moves that cost
 * out of the first handshake. media_srtp_new() needs no call before it.
 * Keeps no state of its own (OpenSSL's initialisation is thread-safe), so it
 * is safe from any thread, concurrently, any number of times. Returns 0 or
 * MEDIA_SRTP_ERR_INIT.
 */
int media_srtp_library_init(void);

struct media_srtp;

/*
 * Returns a new SRTP pair (outbound keyed with keys->local_*, inbound with
 * keys->remote_*), or NULL with `*err` (when not NULL) set to
 * MEDIA_SRTP_ERR_INVALID (unknown profile, key_len/salt_len not the
 * profile's) or MEDIA_SRTP_ERR_INIT / _FAILED. Copies what it needs from
 * `keys` (borrowed; the caller may wipe it afterwards). Free with
 * media_srtp_free().
 *
 * The outbound side has no replay check: it protects the same packet twice
 * (libsrtp's allow_repeat_tx), so a NACK can be answered by resending a
 * cached packet unchanged: identical plaintext under the same index gives
 * identical ciphertext, which reveals nothing. The caller must resend it
 * byte for byte, header included: the same index with any other bytes
 * reuses a keystream, and with GCM gives away the authentication key.
 */
struct media_srtp *media_srtp_new(const struct media_srtp_keys *keys, int *err);

/* Frees both directions and wipes their keys. NULL does nothing. */
void media_srtp_free(struct media_srtp *s);

/*
 * Protects the RTP (or RTCP) packet of `len` bytes at `buf` in place: `buf`
 * has `cap` bytes, and needs `len` + MEDIA_SRTP_MAX_OVERHEAD of them.
 * Returns the protected length, or MEDIA_SRTP_ERR_NO_SPACE,
 * MEDIA_SRTP_ERR_BAD_LENGTH (shorter than a header, or CSRCs or a header
 * extension that overrun the packet), MEDIA_SRTP_ERR_FAILED (a 17th SSRC on
 * this leg, an SSRC that has used up its SRTP or SRTCP indices under this
 * key, or OpenSSL failed).
 * On error `buf` may have been changed and must not be sent.
 */
int media_srtp_protect_rtp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap);
int media_srtp_protect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap);

/*
 * Checks and decrypts the SRTP (or SRTCP) packet of `len` bytes at `buf` in
 * place. Returns the plain length (shorter than `len`), or
 * MEDIA_SRTP_ERR_AUTH, MEDIA_SRTP_ERR_REPLAY, MEDIA_SRTP_ERR_BAD_LENGTH or
 * MEDIA_SRTP_ERR_FAILED; the packet is then to be dropped (and counted).
 * The rollover counter and the replay window move only for a packet that
 * authenticated. SRTCP sent unencrypted (E flag clear) is accepted when its
 * tag verifies, as RFC 3711 allows. After a failure the payload bytes are
 * unspecified (with GCM they are wiped, so no unauthenticated plaintext is
 * left in the buffer).
 */
int media_srtp_unprotect_rtp(struct media_srtp *s, uint8_t *buf, size_t len);
int media_srtp_unprotect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len);

/*
 * Test seams: the RFC test vectors start below the DTLS keys. Nothing but
 * tests/unit/test_srtp.c calls these.
 *
 * media_srtp_kdf() is RFC 3711's key derivation (section 4.3.3, the AES-CM
 * PRF, key derivation rate 0): it writes `out_len` bytes (at most 1 MiB) of
 * the keystream for `label` (0-2: SRTP encryption key, authentication key,
 * salt; 3-5: the same for SRTCP) under the 16-byte master key and the
 * master salt: 14 bytes, or GCM's 12, which take two zero bytes on the
 * right (RFC 7714 section 11 as corrected by erratum 4938). Borrows all
 * buffers. Returns 0, MEDIA_SRTP_ERR_INVALID or MEDIA_SRTP_ERR_FAILED.
 *
 * media_srtp_new_with_session_keys() is media_srtp_new() for
 * AEAD_AES_128_GCM without the key derivation: the local and remote key and
 * salt in `keys` are taken as the session key and salt themselves, for SRTP
 * and SRTCP alike, as RFC 7714's vectors give them. Other profiles are
 * refused with MEDIA_SRTP_ERR_INVALID. Free what it returns with
 * media_srtp_free().
 */
int media_srtp_kdf(const uint8_t *master_key, size_t key_len, const uint8_t *master_salt,
                   size_t salt_len, unsigned label, uint8_t *out, size_t out_len);
struct media_srtp *media_srtp_new_with_session_keys(const struct media_srtp_keys *keys, int *err);

#endif
