/*
 * dtls.h - the DTLS-SRTP transport of a leg (RFC 5764, RFC 8827): DTLS 1.2,
 * the server always passive (the answer says a=setup:passive), the peer's
 * certificate pinned by the fingerprint from its SDP, SRTP keys from the
 * DTLS exporter. Private to media/: the worker and the tests include it;
 * nothing outside media/ may.
 *
 * No sockets: OpenSSL reads from a memory BIO that media_dtls_handle_datagram()
 * fills, and writes each DTLS datagram into a small per-leg queue that the
 * caller drains with media_dtls_next_outgoing() after every call here (and
 * sends to the leg's address). Retransmission is the caller's timer:
 * media_dtls_timeout_ms() says when, media_dtls_handle_timeout() does it. No
 * logging: results are error codes with counter names.
 *
 * A struct media_dtls_ctx is made once per worker: an ECDSA P-256 self-signed
 * certificate, generated at start-up and never written anywhere, and the
 * SSL_CTX. Its SHA-256 fingerprint goes into every SDP answer.
 *
 * Thread: any; a context and its legs belong to one thread at a time (a
 * media worker makes its own context, and its legs live on it).
 */
#ifndef TABIB_MEDIA_DTLS_H
#define TABIB_MEDIA_DTLS_H

#include <stddef.h>
#include <stdint.h>

#include "srtp.h"

#define MEDIA_DTLS_FINGERPRINT_MAX 64 /* bytes of a SHA-512 digest */
/* "AB:CD:..." of a SHA-256 digest, with its NUL. */
#define MEDIA_DTLS_FINGERPRINT_TEXT_SIZE (32 * 3)

#define MEDIA_DTLS_DEFAULT_MTU        1200 /* bytes of a DTLS datagram, below any path MTU */
#define MEDIA_DTLS_DEFAULT_TIMEOUT_MS 1000 /* first retransmission timeout (RFC 6347 4.2.4.1) */
#define MEDIA_DTLS_MAX_TIMEOUT_MS     60000
#define MEDIA_DTLS_OUT_BYTES          8192 /* the per-leg outgoing queue: bytes... */
#define MEDIA_DTLS_OUT_DATAGRAMS      24   /* ...and datagrams */

/* The hash of a certificate fingerprint (a=fingerprint in SDP). */
enum media_dtls_hash {
    MEDIA_DTLS_SHA256 = 0,
    MEDIA_DTLS_SHA384,
    MEDIA_DTLS_SHA512,
};

/* A certificate fingerprint: `len` (32, 48 or 64, as `hash` says) bytes of digest. */
struct media_dtls_fingerprint {
    enum media_dtls_hash hash;
    uint8_t len;
    uint8_t bytes[MEDIA_DTLS_FINGERPRINT_MAX];
};

/* Where a leg is. Only HANDSHAKING runs a timer; FAILED and CLOSED are final. */
enum media_dtls_state {
    MEDIA_DTLS_NEW = 0,     /* nothing received yet (we are passive: we wait for a ClientHello) */
    MEDIA_DTLS_HANDSHAKING, /* ClientHello seen, handshake under way */
    MEDIA_DTLS_CONNECTED,   /* keys exported: media_dtls_srtp_keys() may be called */
    MEDIA_DTLS_FAILED,      /* see media_dtls_failure() */
    MEDIA_DTLS_CLOSED,      /* close_notify received, or media_dtls_close() called */
};

/*
 * Errors, also the reason a leg failed. Contiguous from -1 to
 * MEDIA_DTLS_ERR_MIN so that a worker can keep one counter per error.
 */
enum media_dtls_error {
    MEDIA_DTLS_ERR_INVALID = -1,     /* a bad argument (fingerprint length, config) */
    MEDIA_DTLS_ERR_NOT_ACTIVE = -2,  /* datagram for a failed or closed leg: dropped */
    MEDIA_DTLS_ERR_MALFORMED = -3,   /* datagram dropped, the leg goes on (see below) */
    MEDIA_DTLS_ERR_HANDSHAKE = -4,   /* the handshake failed (bad message, nothing in common) */
    MEDIA_DTLS_ERR_ALERT = -5,       /* the peer sent a fatal alert */
    MEDIA_DTLS_ERR_NO_CERT = -6,     /* the peer sent no certificate */
    MEDIA_DTLS_ERR_FINGERPRINT = -7, /* the peer's certificate is not the one in its SDP */
    MEDIA_DTLS_ERR_NO_SRTP = -8,     /* no SRTP protection profile in common */
    MEDIA_DTLS_ERR_EXPORT = -9,      /* exporting the SRTP keying material failed */
    MEDIA_DTLS_ERR_TIMEOUT = -10,    /* too many retransmissions without an answer */
    MEDIA_DTLS_ERR_NO_SPACE = -11,   /* the caller's buffer is smaller than the next datagram */
    MEDIA_DTLS_ERR_CRYPTO = -12,     /* OpenSSL failed (out of memory, no P-256...) */
    MEDIA_DTLS_ERR_MIN = -12,
};

/* A short English description of a media_dtls_error ("unknown error" otherwise). */
const char *media_dtls_strerror(int err);

/* The counter name of a result for /metrics: "ok" for 0, "fingerprint", "alert", ... */
const char *media_dtls_error_name(int err);

/* "new", "handshaking", "connected", "failed", "closed". */
const char *media_dtls_state_name(enum media_dtls_state state);

/* ------------------------------------------------------------------------- */
/* The per-worker context                                                     */
/* ------------------------------------------------------------------------- */

/* Settings of a context; zero fields take the defaults above. */
struct media_dtls_config {
    unsigned mtu;                /* largest datagram we send; at least 256 */
    unsigned initial_timeout_ms; /* first retransmission timeout, doubled on each one */
    unsigned cert_valid_days;    /* certificate validity; default 30 */
};

struct media_dtls_ctx;

/*
 * Returns a new context: a fresh ECDSA P-256 key and self-signed certificate
 * (random 64-bit serial, valid from an hour ago for `cert_valid_days`), an
 * SSL_CTX for DTLS 1.2 only, ECDHE-ECDSA with AES-GCM, the SRTP profiles
 * AEAD_AES_128_GCM then AES_CM_128_HMAC_SHA1_80 (our order wins), no
 * session tickets, no renegotiation, and a peer certificate required but
 * checked only against the expected fingerprint (self-signed is the norm in
 * WebRTC). `config` may be NULL (defaults); it is copied. Returns NULL if
 * OpenSSL fails or the config is invalid. Free with media_dtls_ctx_free()
 * after every leg made from it.
 */
struct media_dtls_ctx *media_dtls_ctx_new(const struct media_dtls_config *config);

/* Frees the context. NULL does nothing. */
void media_dtls_ctx_free(struct media_dtls_ctx *ctx);

/* The SHA-256 fingerprint of our certificate: 32 bytes, valid while `ctx` lives. */
const uint8_t *media_dtls_ctx_fingerprint_sha256(const struct media_dtls_ctx *ctx);

/* The same in SDP form: "AB:CD:...:EF" (95 characters), valid while `ctx` lives. */
const char *media_dtls_ctx_fingerprint_text(const struct media_dtls_ctx *ctx);

/*
 * Writes `len` bytes as uppercase hex pairs joined by ':' into `out` of
 * `cap` bytes, NUL-terminated. Returns the length written (3 * len - 1, or 0
 * for len 0) or MEDIA_DTLS_ERR_NO_SPACE (`out` then holds "" when cap > 0).
 */
int media_dtls_fingerprint_format(const uint8_t *bytes, size_t len, char *out, size_t cap);

/* ------------------------------------------------------------------------- */
/* A leg's DTLS association                                                   */
/* ------------------------------------------------------------------------- */

struct media_dtls;

/*
 * Returns a new association in the server role, state MEDIA_DTLS_NEW,
 * expecting a peer certificate whose `remote->hash` digest is
 * `remote->bytes` (copied; its length must match the hash). Borrows `ctx`,
 * which must outlive it. Returns NULL (and sets `*err` when not NULL to
 * MEDIA_DTLS_ERR_INVALID or _CRYPTO) on failure. Free with media_dtls_free().
 */
struct media_dtls *media_dtls_new(struct media_dtls_ctx *ctx,
                                  const struct media_dtls_fingerprint *remote, int *err);

/* Frees the association, wiping its keys; sends nothing. NULL does nothing. */
void media_dtls_free(struct media_dtls *d);

/*
 * Feeds one received DTLS datagram (borrowed) and runs the handshake or
 * reads the connection. Returns:
 *   0                          taken (progress or not; look at the state and
 *                              drain the outgoing queue);
 *   MEDIA_DTLS_ERR_NOT_ACTIVE  the leg has failed or closed: dropped;
 *   MEDIA_DTLS_ERR_INVALID     len is 0;
 *   MEDIA_DTLS_ERR_MALFORMED   dropped unread, the leg unchanged: a record
 *                              with a nonzero epoch is shorter than a GCM
 *                              nonce and tag (OpenSSL 3.0 would fail the
 *                              connection on it instead of ignoring it);
 *   another negative error     the leg failed on this datagram, for this
 *                              reason (now MEDIA_DTLS_FAILED); an alert to
 *                              the peer may be in the queue.
 * Records that do not authenticate or parse are dropped silently by OpenSSL
 * (RFC 6347 4.1.2.7), so stray garbage does not end a leg. Application data
 * after the handshake (there is no data channel) is read and discarded.
 * A close_notify moves the leg to MEDIA_DTLS_CLOSED and returns 0.
 */
int media_dtls_handle_datagram(struct media_dtls *d, const uint8_t *data, size_t len);

/*
 * Takes the next datagram to send out of the queue into `buf` of `cap`
 * bytes. Returns its length, 0 when the queue is empty, or
 * MEDIA_DTLS_ERR_NO_SPACE when `cap` is too small (the datagram stays
 * queued; a `cap` of the context's MTU is always enough).
 */
int media_dtls_next_outgoing(struct media_dtls *d, uint8_t *buf, size_t cap);

/*
 * Milliseconds until media_dtls_handle_timeout() should be called (0: now),
 * or -1 when no retransmission timer runs (not handshaking, or waiting for
 * the peer's first flight).
 */
int media_dtls_timeout_ms(struct media_dtls *d);

/*
 * Retransmits our last flight if its timer has expired (nothing otherwise).
 * Returns 0, or MEDIA_DTLS_ERR_TIMEOUT when the retransmission limit is
 * reached (the leg is then MEDIA_DTLS_FAILED).
 */
int media_dtls_handle_timeout(struct media_dtls *d);

/*
 * Ends the association: queues a close_notify when connected (a handshake
 * in progress is simply abandoned) and moves to MEDIA_DTLS_CLOSED. Does
 * nothing on a failed or closed leg.
 */
void media_dtls_close(struct media_dtls *d);

enum media_dtls_state media_dtls_state(const struct media_dtls *d);

/* Why the leg failed (a negative media_dtls_error), or 0 when it has not. */
int media_dtls_failure(const struct media_dtls *d);

/*
 * The last alert the peer sent (its TLS AlertDescription, 0 close_notify,
 * 42 bad_certificate...), or -1 when none.
 */
int media_dtls_peer_alert(const struct media_dtls *d);

/*
 * Copies the SRTP profile and keys negotiated into `out` (local: the server
 * half, ours to send with; remote: the client half). Returns 0, or
 * MEDIA_DTLS_ERR_NOT_ACTIVE when the leg is not CONNECTED. The caller should
 * wipe its copy (OPENSSL_cleanse) once the SRTP sessions are made.
 */
int media_dtls_srtp_keys(const struct media_dtls *d, struct media_srtp_keys *out);

/* Outgoing datagrams dropped because the queue was full (the caller did not drain it). */
unsigned media_dtls_out_dropped(const struct media_dtls *d);

#endif
