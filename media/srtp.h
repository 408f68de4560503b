/*
 * srtp.h - one leg's SRTP/SRTCP protection (RFC 3711, RFC 7714) over
 * libsrtp2. Private to media/: the worker, dtls.c and the tests include it;
 * nothing outside media/ may.
 *
 * A struct media_srtp holds two libsrtp sessions made from the keys that
 * the DTLS handshake exported (dtls.h): an outbound one keyed with our
 * (server) master key, for what we send, and an inbound one keyed with the
 * peer's (client) master key, for what we receive. Each accepts any SSRC
 * (libsrtp clones a stream per SSRC the first time it sees one), with replay
 * protection on (libsrtp's default window of 128 packets). Packets are
 * protected and unprotected in place, in the caller's buffer; nothing here
 * allocates per packet (libsrtp allocates once per new SSRC).
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
    MEDIA_SRTP_ERR_INIT = -6,       /* libsrtp could not be initialised */
    MEDIA_SRTP_ERR_FAILED = -7,     /* any other libsrtp failure */
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
 * Initialises libsrtp (srtp_init()) once per process; later calls return the
 * first call's result at once. Safe from any thread and concurrently
 * (pthread_once). media_srtp_new() calls it too, so a worker need not, but
 * calling it at worker start moves the one-off cost (libsrtp's self-tests)
 * out of the first handshake. libsrtp is never shut down: it lives as long
 * as the process. Returns 0 or MEDIA_SRTP_ERR_INIT.
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
 * The outbound side allows sending the same packet twice (libsrtp's
 * allow_repeat_tx), so a NACK can be answered by resending a cached packet
 * unchanged: identical plaintext under the same index gives identical
 * ciphertext, which reveals nothing.
 */
struct media_srtp *media_srtp_new(const struct media_srtp_keys *keys, int *err);

/* Frees both sessions. NULL does nothing. */
void media_srtp_free(struct media_srtp *s);

/*
 * Protects the RTP (or RTCP) packet of `len` bytes at `buf` in place: `buf`
 * has `cap` bytes, and needs `len` + MEDIA_SRTP_MAX_OVERHEAD of them.
 * Returns the protected length, or MEDIA_SRTP_ERR_NO_SPACE,
 * MEDIA_SRTP_ERR_BAD_LENGTH (shorter than a header), MEDIA_SRTP_ERR_FAILED.
 * On error `buf` may have been changed and must not be sent.
 */
int media_srtp_protect_rtp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap);
int media_srtp_protect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len, size_t cap);

/*
 * Checks and decrypts the SRTP (or SRTCP) packet of `len` bytes at `buf` in
 * place. Returns the plain length (shorter than `len`), or
 * MEDIA_SRTP_ERR_AUTH, MEDIA_SRTP_ERR_REPLAY, MEDIA_SRTP_ERR_BAD_LENGTH or
 * MEDIA_SRTP_ERR_FAILED; the packet is then to be dropped (and counted).
 */
int media_srtp_unprotect_rtp(struct media_srtp *s, uint8_t *buf, size_t len);
int media_srtp_unprotect_rtcp(struct media_srtp *s, uint8_t *buf, size_t len);

#endif
