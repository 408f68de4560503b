/*
 * stun.h - the STUN message codec (RFC 8489, RFC 5389) and the ICE-lite
 * Binding check (RFC 8445) for the media workers. Private to media/: the
 * worker and the tests include it; nothing outside media/ may.
 *
 * Pure protocol code: no sockets, no logging, and this code allocates nothing
 * per message. media_stun_parse() returns a view whose pointers point into
 * the caller's datagram (nothing is copied); builders write into a caller's
 * bounded buffer and return the length. The only state is a struct
 * media_stun_ctx holding OpenSSL's HMAC, made once per thread and passed in
 * (so the HMAC algorithm is fetched once, not per packet); every function
 * taking one also accepts NULL and then sets up HMAC-SHA1 for that one call
 * (about twice as slow: fine for tests and the C test peer, not the packet
 * path). OpenSSL 3.0 itself still makes a few small allocations each time it
 * is keyed, that is per MESSAGE-INTEGRITY computed or checked.
 *
 * Thread: any; a struct media_stun_ctx belongs to one thread at a time (each
 * media worker makes its own).
 */
#ifndef TABIB_MEDIA_STUN_H
#define TABIB_MEDIA_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define MEDIA_STUN_HEADER_SIZE     20
#define MEDIA_STUN_MAGIC_COOKIE    0x2112A442u
#define MEDIA_STUN_TXID_SIZE       12
#define MEDIA_STUN_FINGERPRINT_XOR 0x5354554Eu
#define MEDIA_STUN_HMAC_SIZE       20 /* MESSAGE-INTEGRITY: HMAC-SHA1 */
#define MEDIA_STUN_MAX_UNKNOWN     8  /* unknown attributes a parsed view remembers */

/* The class of a message: bits C1 C0 of the message type. */
enum media_stun_class {
    MEDIA_STUN_REQUEST = 0,
    MEDIA_STUN_INDICATION = 1,
    MEDIA_STUN_SUCCESS = 2,
    MEDIA_STUN_ERROR = 3,
};

#define MEDIA_STUN_METHOD_BINDING 0x001

/* Whole message types (method and class combined) for Binding. */
#define MEDIA_STUN_BINDING_REQUEST    0x0001
#define MEDIA_STUN_BINDING_INDICATION 0x0011
#define MEDIA_STUN_BINDING_SUCCESS    0x0101
#define MEDIA_STUN_BINDING_ERROR      0x0111

/*
 * Attribute types. Below 0x8000 an attribute is comprehension-required: a
 * receiver that does not understand it must not process the message as if it
 * were absent (RFC 8489 section 14).
 */
enum media_stun_attr {
    MEDIA_STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    MEDIA_STUN_ATTR_USERNAME = 0x0006,
    MEDIA_STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    MEDIA_STUN_ATTR_ERROR_CODE = 0x0009,
    MEDIA_STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    MEDIA_STUN_ATTR_REALM = 0x0014,
    MEDIA_STUN_ATTR_NONCE = 0x0015,
    MEDIA_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    MEDIA_STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
    MEDIA_STUN_ATTR_USERHASH = 0x001E,
    MEDIA_STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    MEDIA_STUN_ATTR_PRIORITY = 0x0024,
    MEDIA_STUN_ATTR_USE_CANDIDATE = 0x0025,
    MEDIA_STUN_ATTR_SOFTWARE = 0x8022,
    MEDIA_STUN_ATTR_FINGERPRINT = 0x8028,
    MEDIA_STUN_ATTR_ICE_CONTROLLED = 0x8029,
    MEDIA_STUN_ATTR_ICE_CONTROLLING = 0x802A,
};

/* Errors: every function here returns 0 (or a length) or one of these. */
enum media_stun_error {
    MEDIA_STUN_ERR_NOT_STUN = -1,        /* under 20 bytes, top bits set, or no magic cookie */
    MEDIA_STUN_ERR_LENGTH = -2,          /* length not a multiple of 4, or not the datagram's */
    MEDIA_STUN_ERR_MALFORMED = -3,       /* an attribute overruns or has an impossible value */
    MEDIA_STUN_ERR_NO_INTEGRITY = -4,    /* no MESSAGE-INTEGRITY to verify */
    MEDIA_STUN_ERR_BAD_INTEGRITY = -5,   /* MESSAGE-INTEGRITY does not match the password */
    MEDIA_STUN_ERR_NO_FINGERPRINT = -6,  /* no FINGERPRINT to verify */
    MEDIA_STUN_ERR_BAD_FINGERPRINT = -7, /* FINGERPRINT does not match the message */
    MEDIA_STUN_ERR_NO_SPACE = -8,        /* the output buffer (or 64 KiB) is too small */
    MEDIA_STUN_ERR_INVALID = -9,         /* a bad argument (address family, error code...) */
    MEDIA_STUN_ERR_CRYPTO = -10,         /* OpenSSL failed */
};

/* A short English description of a media_stun_error ("unknown error" otherwise). */
const char *media_stun_strerror(int err);

/* ------------------------------------------------------------------------- */
/* Parsing                                                                    */
/* ------------------------------------------------------------------------- */

/*
 * A parsed message: a view into the datagram it was parsed from, valid as
 * long as that buffer is unchanged. Strings are not NUL-terminated. Offsets
 * count from the start of the message; 0 means "absent" (no attribute can
 * start inside the 20-byte header).
 *
 * Only the first occurrence of an attribute counts (RFC 8489 section 14).
 * Attributes after MESSAGE-INTEGRITY (or MESSAGE-INTEGRITY-SHA256) other than
 * FINGERPRINT are skipped without being looked at (section 14.5).
 */
struct media_stun_msg {
    const uint8_t *data; /* the whole message */
    size_t len;          /* 20 + the header's length field: the datagram's length */
    uint16_t type;       /* method and class as on the wire */
    uint16_t method;     /* 12 bits: MEDIA_STUN_METHOD_BINDING */
    enum media_stun_class cls;
    const uint8_t *txid; /* MEDIA_STUN_TXID_SIZE bytes */

    const char *username; /* USERNAME, or NULL */
    size_t username_len;
    const char *software; /* SOFTWARE, or NULL */
    size_t software_len;
    size_t integrity_offset;   /* of the MESSAGE-INTEGRITY attribute's header, or 0 */
    size_t fingerprint_offset; /* of the FINGERPRINT attribute's header, or 0 */

    bool has_priority;
    uint32_t priority;
    bool use_candidate;
    bool has_ice_controlling;
    uint64_t ice_controlling; /* tie-breaker */
    bool has_ice_controlled;
    uint64_t ice_controlled; /* tie-breaker */

    bool has_xor_mapped;
    struct sockaddr_storage xor_mapped; /* AF_INET or AF_INET6, port and address decoded */

    uint16_t error_code;      /* ERROR-CODE (300..699), or 0 */
    const char *error_reason; /* its reason phrase (may be empty), or NULL */
    size_t error_reason_len;

    /*
     * Comprehension-required attributes this codec does not understand, in
     * message order (the first MEDIA_STUN_MAX_UNKNOWN; unknown_total counts
     * all). A request with any deserves a 420 (media_stun_build_error).
     */
    unsigned unknown_count;
    unsigned unknown_total;
    uint16_t unknown[MEDIA_STUN_MAX_UNKNOWN];
};

/*
 * Parses one datagram `data`/`len` as a STUN message into `out`. Checks the
 * header (top two bits zero, magic cookie, length a multiple of 4 and equal
 * to len - 20), then walks the attributes with bounds checks and decodes the
 * ones above. Verifies neither FINGERPRINT nor MESSAGE-INTEGRITY: see below.
 * Returns 0, MEDIA_STUN_ERR_NOT_STUN, MEDIA_STUN_ERR_LENGTH or
 * MEDIA_STUN_ERR_MALFORMED (an attribute runs past the end; a known
 * attribute has the wrong size or an impossible value; anything follows
 * FINGERPRINT). On error `out` holds nothing useful. Borrows `data`: `out`
 * points into it.
 */
int media_stun_parse(const uint8_t *data, size_t len, struct media_stun_msg *out);

/* The message type for `method` and `cls` (RFC 8489 section 5). */
uint16_t media_stun_type(uint16_t method, enum media_stun_class cls);

/* ------------------------------------------------------------------------- */
/* Verification                                                               */
/* ------------------------------------------------------------------------- */

struct media_stun_ctx;

/*
 * Returns a new context holding OpenSSL's HMAC-SHA1, fetched once, or NULL if
 * OpenSSL cannot provide it. Free with media_stun_ctx_free(). One per thread.
 */
struct media_stun_ctx *media_stun_ctx_new(void);

/* Frees the context. NULL does nothing. */
void media_stun_ctx_free(struct media_stun_ctx *ctx);

/*
 * Checks FINGERPRINT: CRC-32 of the message up to that attribute, XOR
 * 0x5354554e. Returns 0, MEDIA_STUN_ERR_NO_FINGERPRINT or
 * MEDIA_STUN_ERR_BAD_FINGERPRINT. Borrows `msg`.
 */
int media_stun_verify_fingerprint(const struct media_stun_msg *msg);

/*
 * Checks MESSAGE-INTEGRITY with a short-term credential: HMAC-SHA1 keyed with
 * `password` (an ICE password: ASCII, so no OpaqueString/SASLprep step) over
 * the message up to that attribute, with the header's length field set as if
 * the message ended right after it (RFC 5389 section 15.4). Compared in
 * constant time. `ctx` may be NULL (see the top of this file). Returns 0,
 * MEDIA_STUN_ERR_NO_INTEGRITY, MEDIA_STUN_ERR_BAD_INTEGRITY or
 * MEDIA_STUN_ERR_CRYPTO. Borrows everything. MESSAGE-INTEGRITY-SHA256 is not
 * checked.
 */
int media_stun_verify_integrity(struct media_stun_ctx *ctx, const struct media_stun_msg *msg,
                                const char *password);

/* ------------------------------------------------------------------------- */
/* ICE-lite Binding check                                                     */
/* ------------------------------------------------------------------------- */

/* What to do with an incoming message on an ICE-lite leg; each has a counter. */
enum media_stun_check {
    MEDIA_STUN_CHECK_OK = 0,            /* a valid Binding request: answer success */
    MEDIA_STUN_CHECK_NOT_REQUEST,       /* not a Binding request: not ours to answer, drop */
    MEDIA_STUN_CHECK_BAD_FINGERPRINT,   /* FINGERPRINT missing or wrong: drop silently */
    MEDIA_STUN_CHECK_MISSING_AUTH,      /* no USERNAME or no MESSAGE-INTEGRITY: answer 400 */
    MEDIA_STUN_CHECK_WRONG_USERNAME,    /* USERNAME is not "our_ufrag:peer_ufrag": answer 401 */
    MEDIA_STUN_CHECK_BAD_INTEGRITY,     /* MESSAGE-INTEGRITY fails with our password: answer 401 */
    MEDIA_STUN_CHECK_UNKNOWN_ATTRIBUTE, /* authentic, but has unknown required attributes: 420 */
    MEDIA_STUN_CHECK_CRYPTO,            /* OpenSSL failed: drop */
    MEDIA_STUN_CHECK_COUNT,
};

/*
 * Checks a parsed message against one leg's credentials, in the order of RFC
 * 8489 section 6.3 and RFC 8445 section 7.3: a Binding request, FINGERPRINT
 * (mandatory in ICE), USERNAME and MESSAGE-INTEGRITY present, USERNAME equal
 * to "local_ufrag:remote_ufrag" (the part after ':' is checked only when
 * `remote_ufrag` is not NULL: the peer's ufrag may be unknown until its SDP
 * arrives), MESSAGE-INTEGRITY keyed with `local_pwd`, and no unknown
 * comprehension-required attribute. Role conflicts (487) are the ICE agent's
 * business, not checked here. `ctx` may be NULL. Borrows everything.
 */
enum media_stun_check media_stun_check_binding(struct media_stun_ctx *ctx,
                                               const struct media_stun_msg *msg,
                                               const char *local_ufrag, const char *local_pwd,
                                               const char *remote_ufrag);

/* The counter name of a check result for /metrics ("ok", "bad_integrity", ...). */
const char *media_stun_check_name(enum media_stun_check check);

/*
 * The error response a check result calls for: 400, 401 or 420; 0 for
 * MEDIA_STUN_CHECK_OK (answer success) and for results to drop silently.
 */
int media_stun_check_error_code(enum media_stun_check check);

/*
 * Finds the local ufrag in a request's USERNAME ("local:remote" as the
 * recipient sees it) so that a worker can find the leg before it knows which
 * password to check with. Sets `*ufrag` (into the message, not
 * NUL-terminated) and `*len`. Returns 0, or MEDIA_STUN_ERR_INVALID when there
 * is no USERNAME, no ':' or nothing before it.
 */
int media_stun_local_ufrag(const struct media_stun_msg *msg, const char **ufrag, size_t *len);

/* ------------------------------------------------------------------------- */
/* Building                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * A message under construction in a caller's buffer. The builders below use
 * it; tests and the C test peer may use it to write unusual messages. After
 * the first failure (MEDIA_STUN_ERR_NO_SPACE or _INVALID, kept in `err`)
 * every call does nothing, so a sequence of adds needs one check at the end.
 * The header's length field is kept up to date after every add.
 */
struct media_stun_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
};

/* Starts a message of `type` with transaction id `txid` (12 bytes, borrowed) in `buf`. */
void media_stun_writer_init(struct media_stun_writer *w, uint8_t *buf, size_t cap, uint16_t type,
                            const uint8_t *txid);

/* Appends attribute `attr` with `value_len` bytes of `value`, zero-padded to 4. */
void media_stun_writer_add(struct media_stun_writer *w, uint16_t attr, const void *value,
                           size_t value_len);
void media_stun_writer_add_u32(struct media_stun_writer *w, uint16_t attr, uint32_t value);
void media_stun_writer_add_u64(struct media_stun_writer *w, uint16_t attr, uint64_t value);

/*
 * Appends an XOR-MAPPED-ADDRESS-style attribute for `addr` (AF_INET or
 * AF_INET6). An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack
 * socket reports for an IPv4 peer) is written as IPv4, which is what the peer
 * knows itself as. Any other family sets MEDIA_STUN_ERR_INVALID.
 */
void media_stun_writer_add_xor_address(struct media_stun_writer *w, uint16_t attr,
                                       const struct sockaddr_storage *addr);

/*
 * Appends MESSAGE-INTEGRITY keyed with `password` (none when NULL), then
 * FINGERPRINT when `fingerprint` is true. Returns the message length, or the
 * first error of this writer (MEDIA_STUN_ERR_NO_SPACE, _INVALID, _CRYPTO).
 * `ctx` may be NULL.
 */
int media_stun_writer_finish(struct media_stun_ctx *ctx, struct media_stun_writer *w,
                             const char *password, bool fingerprint);

/*
 * Writes a Binding success response to the request with transaction id
 * `txid`: XOR-MAPPED-ADDRESS = `mapped` (the request's source address),
 * MESSAGE-INTEGRITY keyed with `password` (our ICE password), FINGERPRINT.
 * Returns the length written into `buf` (at most `cap`) or a negative error.
 */
int media_stun_build_binding_success(struct media_stun_ctx *ctx, const uint8_t *txid,
                                     const struct sockaddr_storage *mapped, const char *password,
                                     uint8_t *buf, size_t cap);

/* What the peer playing the browser puts in a Binding request. */
struct media_stun_request_params {
    const uint8_t *txid;      /* MEDIA_STUN_TXID_SIZE bytes: fresh random per request */
    const char *remote_ufrag; /* the agent being checked (the server) */
    const char *local_ufrag;  /* ours: USERNAME is "remote_ufrag:local_ufrag" */
    const char *remote_pwd;   /* the key of MESSAGE-INTEGRITY */
    uint32_t priority;        /* PRIORITY: of the peer-reflexive candidate it would make */
    bool controlling;         /* ICE-CONTROLLING if true, else ICE-CONTROLLED */
    uint64_t tie_breaker;
    bool use_candidate; /* add USE-CANDIDATE (nominate this pair) */
};

/*
 * Writes a Binding request: USERNAME, PRIORITY, ICE-CONTROLLING or
 * ICE-CONTROLLED, USE-CANDIDATE if asked, MESSAGE-INTEGRITY, FINGERPRINT.
 * Returns the length written into `buf` or a negative error. Borrows `p`.
 */
int media_stun_build_binding_request(struct media_stun_ctx *ctx,
                                     const struct media_stun_request_params *p, uint8_t *buf,
                                     size_t cap);

/*
 * Writes an error response to `request` (which must be a request) with
 * ERROR-CODE `code` (300..699; 400, 401, 420, 487 and 500 get their reason
 * phrase), UNKNOWN-ATTRIBUTES listing the request's unknown attributes when
 * `code` is 420, MESSAGE-INTEGRITY keyed with `password` unless NULL (pass
 * NULL for 400 and 401: the request could not be authenticated), and
 * FINGERPRINT. Returns the length or a negative error.
 */
int media_stun_build_error(struct media_stun_ctx *ctx, const struct media_stun_msg *request,
                           int code, const char *password, uint8_t *buf, size_t cap);

#endif
