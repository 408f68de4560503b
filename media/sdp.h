/*
 * sdp.h - SDP offers from browsers and the answers the server gives them
 * (private to media/: included by the worker, the signalling glue and tests).
 *
 * A leg is one RTCPeerConnection in Unified Plan with max-bundle and
 * rtcp-mux: one ICE-lite transport, one DTLS association, at most one audio
 * and one video m-line that carry media. media_sdp_parse() reads an offer
 * (Chrome, Firefox, Safari) into a fixed-size value, checks that we can serve
 * it, and picks what the server accepts (Opus; VP8, else H.264
 * constrained-baseline/baseline packetization-mode=1, with RTX when
 * offered; the mid, abs-send-time, transport-wide-cc and ssrc-audio-level
 * header extensions). media_sdp_write_answer() writes the answer for it.
 *
 * Pure code: no I/O, no allocation, no globals; any thread may call it.
 * Everything is bounded by the MEDIA_SDP_MAX_* limits below; an offer that
 * does not fit is refused with MEDIA_SDP_ERR_LIMIT and a message naming the
 * line, never truncated in a way that changes its meaning.
 */
#ifndef TABIB_MEDIA_SDP_H
#define TABIB_MEDIA_SDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. Each one is checked; going over it refuses the offer. */
#define MEDIA_SDP_MAX_SIZE    65536 /* bytes in a whole offer */
#define MEDIA_SDP_MAX_LINE    4096  /* bytes in one line, without its CRLF */
#define MEDIA_SDP_MAX_MLINES  8     /* m-lines (audio, video, data, ...) */
#define MEDIA_SDP_MAX_CODECS  64    /* payload types per m-line (Chrome 13x offers 42 for video) */
#define MEDIA_SDP_MAX_SSRCS   8     /* distinct a=ssrc per m-line (3 simulcast layers + RTX = 6) */
#define MEDIA_SDP_MAX_FID     4     /* a=ssrc-group:FID per m-line */
#define MEDIA_SDP_MAX_FPRINTS 4     /* a=fingerprint lines with a hash we accept, per scope */
#define MEDIA_SDP_MID_MAX     32    /* characters in a mid */
#define MEDIA_SDP_ICE_MAX     256   /* characters in ice-ufrag / ice-pwd (RFC 8839) */
#define MEDIA_SDP_ID_MAX      64    /* msid stream/track ids (RFC 8830), cnames */
#define MEDIA_SDP_PROTO_MAX   31    /* transport protocol, kept to echo in rejections */
#define MEDIA_SDP_NAME_MAX    31    /* codec names; longer ones are cut (never ours) */
/*
 * Header extensions are kept up to MEDIA_SDP_MAX_EXTMAPS per m-line, each
 * URI up to MEDIA_SDP_URI_MAX characters. These two are not refusals: the
 * four extensions we use are always recorded in ext[] whatever their
 * position, the rest are informational, so extra ones are only counted
 * (extmaps_dropped) and a longer URI is cut (uri_truncated).
 */
#define MEDIA_SDP_MAX_EXTMAPS 16
#define MEDIA_SDP_URI_MAX     127

/* Results: 0 or one of these negative codes (see media_sdp_strerror()). */
enum media_sdp_status {
    MEDIA_SDP_OK = 0,
    MEDIA_SDP_ERR_TOO_LARGE = -1,       /* over MEDIA_SDP_MAX_SIZE */
    MEDIA_SDP_ERR_LINE_TOO_LONG = -2,   /* a line over MEDIA_SDP_MAX_LINE */
    MEDIA_SDP_ERR_TRUNCATED = -3,       /* empty, or the last line has no line end */
    MEDIA_SDP_ERR_SYNTAX = -4,          /* a line we cannot read */
    MEDIA_SDP_ERR_LIMIT = -5,           /* more m-lines, codecs or ssrcs than we hold */
    MEDIA_SDP_ERR_BUNDLE = -6,          /* no BUNDLE group, or an m-line outside it */
    MEDIA_SDP_ERR_NO_RTCP_MUX = -7,     /* an audio/video m-line without a=rtcp-mux */
    MEDIA_SDP_ERR_NO_FINGERPRINT = -8,  /* no sha-256/384/512 DTLS fingerprint */
    MEDIA_SDP_ERR_ICE = -9,             /* ICE credentials missing or malformed, or ICE-lite */
    MEDIA_SDP_ERR_SETUP = -10,          /* DTLS role we cannot take (offer: passive) */
    MEDIA_SDP_ERR_PROTOCOL = -11,       /* audio/video not over UDP/TLS/RTP/SAVPF */
    MEDIA_SDP_ERR_MID = -12,            /* an m-line without a mid, or a mid used twice */
    MEDIA_SDP_ERR_PAYLOAD = -13,        /* payload type not a number in 0..127, or repeated */
    MEDIA_SDP_ERR_NO_MEDIA = -14,       /* no audio or video m-line we could accept */
    MEDIA_SDP_ERR_NO_AUDIO_CODEC = -15, /* audio offered, but no Opus 48000/2 */
    MEDIA_SDP_ERR_NO_VIDEO_CODEC = -16, /* video offered, but no VP8 nor usable H.264 */
    MEDIA_SDP_ERR_PARAM = -17,          /* write_answer: a parameter is empty or malformed */
    MEDIA_SDP_ERR_BUFFER = -18,         /* write_answer: the answer does not fit */
};

/* A short fixed description of a status ("no BUNDLE group", ...). */
const char *media_sdp_strerror(int status);

/* Why an offer was refused: the code, the 1-based line (0 when the problem is
 * not one line, e.g. a missing attribute) and a message that names the line
 * or the m-line, e.g. `line 31: a=rtpmap:111 opus: expected <name>/<clock>`. */
struct media_sdp_error {
    int code;
    unsigned line;
    char message[200];
};

enum media_sdp_kind {
    MEDIA_SDP_OFFER = 0,
    MEDIA_SDP_ANSWER, /* only to read back our own answers (tests, fuzzer) */
};

enum media_sdp_media {
    MEDIA_SDP_AUDIO = 0,
    MEDIA_SDP_VIDEO,
    MEDIA_SDP_APPLICATION, /* data channels: always rejected (port 0) */
    MEDIA_SDP_OTHER,       /* text, message, ...: rejected */
};

enum media_sdp_direction {
    MEDIA_SDP_SENDRECV = 0,
    MEDIA_SDP_SENDONLY,
    MEDIA_SDP_RECVONLY,
    MEDIA_SDP_INACTIVE,
};

enum media_sdp_setup {
    MEDIA_SDP_SETUP_NONE = 0, /* attribute absent */
    MEDIA_SDP_SETUP_ACTPASS,
    MEDIA_SDP_SETUP_ACTIVE,
    MEDIA_SDP_SETUP_PASSIVE,
    MEDIA_SDP_SETUP_HOLDCONN,
};

enum media_sdp_hash {
    MEDIA_SDP_SHA256 = 0,
    MEDIA_SDP_SHA384,
    MEDIA_SDP_SHA512,
};

struct media_sdp_fingerprint {
    enum media_sdp_hash hash;
    uint8_t len; /* 32, 48 or 64 */
    uint8_t bytes[64];
};

/* ICE and DTLS parameters, as written at one level (session or m-line). */
struct media_sdp_transport {
    char ice_ufrag[MEDIA_SDP_ICE_MAX + 1]; /* "" when absent */
    char ice_pwd[MEDIA_SDP_ICE_MAX + 1];
    bool ice_trickle;      /* a=ice-options has "trickle" */
    bool ice_renomination; /* a=ice-options has "renomination" */
    enum media_sdp_setup setup;
    unsigned fingerprint_count;
    struct media_sdp_fingerprint fingerprints[MEDIA_SDP_MAX_FPRINTS];
};

/* The codecs we know by name; everything else is MEDIA_SDP_CODEC_OTHER. */
enum media_sdp_codec_id {
    MEDIA_SDP_CODEC_OTHER = 0,
    MEDIA_SDP_CODEC_OPUS,
    MEDIA_SDP_CODEC_VP8,
    MEDIA_SDP_CODEC_H264,
    MEDIA_SDP_CODEC_RTX,
};

/* a=rtcp-fb types (bit flags). */
#define MEDIA_SDP_FB_NACK         0x01u /* "nack" */
#define MEDIA_SDP_FB_NACK_PLI     0x02u /* "nack pli" */
#define MEDIA_SDP_FB_CCM_FIR      0x04u /* "ccm fir" */
#define MEDIA_SDP_FB_GOOG_REMB    0x08u /* "goog-remb" */
#define MEDIA_SDP_FB_TRANSPORT_CC 0x10u /* "transport-cc" */

/* One payload type of an m-line: its a=rtpmap, a=fmtp and a=rtcp-fb. */
struct media_sdp_codec {
    uint8_t pt;
    bool has_rtpmap; /* static types (0, 8, 9, ...) may come without one */
    enum media_sdp_codec_id id;
    char name[MEDIA_SDP_NAME_MAX + 1];
    uint32_t clock_rate;
    uint8_t channels; /* 1 when not given */
    uint8_t fb;       /* MEDIA_SDP_FB_* offered for this type (including "*") */
    int16_t apt;      /* rtx: the payload type it repairs, -1 when none */
    /* Opus */
    int16_t minptime;    /* -1 when not given */
    int8_t useinbandfec; /* -1 when not given */
    /* H.264 (RFC 6184) */
    bool has_profile_level_id;
    uint32_t profile_level_id;      /* 0x42e01f; 0x42000a (RFC 6184 default) when not given */
    int8_t packetization_mode;      /* 0 when not given */
    int8_t level_asymmetry_allowed; /* -1 when not given */
};

/* The header extensions the relay uses; everything else is _OTHER. */
enum media_sdp_ext {
    MEDIA_SDP_EXT_MID = 0,       /* urn:ietf:params:rtp-hdrext:sdes:mid */
    MEDIA_SDP_EXT_ABS_SEND_TIME, /* http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time */
    MEDIA_SDP_EXT_TRANSPORT_CC,  /* ...draft-holmer-rmcat-transport-wide-cc-extensions-01 */
    MEDIA_SDP_EXT_AUDIO_LEVEL,   /* urn:ietf:params:rtp-hdrext:ssrc-audio-level */
    MEDIA_SDP_EXT_COUNT,
    MEDIA_SDP_EXT_OTHER = MEDIA_SDP_EXT_COUNT,
};

struct media_sdp_extmap {
    uint8_t id; /* 1..255 */
    bool has_direction;
    enum media_sdp_direction direction; /* a=extmap:<id>/<direction> */
    enum media_sdp_ext ext;
    bool uri_truncated;
    char uri[MEDIA_SDP_URI_MAX + 1];
};

struct media_sdp_ssrc {
    uint32_t ssrc;
    char cname[MEDIA_SDP_ID_MAX + 1];       /* "" when not given */
    char msid_stream[MEDIA_SDP_ID_MAX + 1]; /* from "a=ssrc:<n> msid:<stream> <track>" */
    char msid_track[MEDIA_SDP_ID_MAX + 1];
};

struct media_sdp_fid {
    uint32_t primary;
    uint32_t rtx;
};

/* What the server takes from an m-line: a codec and its RTX, if any. */
struct media_sdp_choice {
    enum media_sdp_codec_id codec; /* OPUS, VP8 or H264 */
    uint8_t pt;
    int16_t rtx_pt; /* -1 when no RTX was offered for it */
};

struct media_sdp_mline {
    enum media_sdp_media media;
    char media_name[MEDIA_SDP_PROTO_MAX + 1]; /* "audio", "application", ... as written */
    unsigned line;                            /* where its m= line is, for messages */
    uint16_t port;                            /* 0: rejected by the offerer (unless bundle_only) */
    bool bundle_only;
    bool rtp; /* protocol is UDP/TLS/RTP/SAVPF */
    char proto[MEDIA_SDP_PROTO_MAX + 1];
    char fmt0[MEDIA_SDP_PROTO_MAX + 1]; /* first format, to echo when rejecting */
    char mid[MEDIA_SDP_MID_MAX + 1];
    bool has_direction;
    enum media_sdp_direction direction; /* resolved: m-line, else session, else sendrecv */
    bool rtcp_mux;
    bool rtcp_rsize;
    char msid_stream[MEDIA_SDP_ID_MAX + 1]; /* a=msid; "-" is kept as is */
    char msid_track[MEDIA_SDP_ID_MAX + 1];
    struct media_sdp_transport transport; /* what this m-line itself says */

    unsigned codec_count; /* in m= line order, which is the offerer's preference */
    struct media_sdp_codec codecs[MEDIA_SDP_MAX_CODECS];

    uint8_t ext_id[MEDIA_SDP_EXT_COUNT]; /* offered id of each extension we use, 0 if not */
    bool ext_has_direction[MEDIA_SDP_EXT_COUNT];
    enum media_sdp_direction ext_direction[MEDIA_SDP_EXT_COUNT];
    unsigned extmap_count;
    unsigned extmaps_dropped; /* beyond MEDIA_SDP_MAX_EXTMAPS: counted only */
    struct media_sdp_extmap extmaps[MEDIA_SDP_MAX_EXTMAPS];

    unsigned ssrc_count;
    struct media_sdp_ssrc ssrcs[MEDIA_SDP_MAX_SSRCS];
    unsigned fid_count;
    struct media_sdp_fid fids[MEDIA_SDP_MAX_FID];

    unsigned candidate_count; /* a=candidate lines (not kept: ICE-lite learns addresses) */
    bool end_of_candidates;

    /* The server's decision. */
    bool accepted; /* false: answered with port 0 */
    unsigned choice_count;
    struct media_sdp_choice choices[2]; /* audio: Opus; video: VP8 then H.264, or H.264 */
};

/*
 * A parsed offer (or one of our answers read back). About 72 KiB: keep it in
 * the leg or on the heap, not on a small stack.
 */
struct media_sdp_offer {
    enum media_sdp_kind kind;
    bool ice_lite;           /* a=ice-lite (refused in offers) */
    bool extmap_allow_mixed; /* a=extmap-allow-mixed at session level */
    unsigned bundle_count;   /* mids of the BUNDLE group, in its order */
    char bundle[MEDIA_SDP_MAX_MLINES][MEDIA_SDP_MID_MAX + 1];
    /* The transport of the BUNDLE group: the values of its first (tagged)
     * m-line, each falling back to the session level. */
    struct media_sdp_transport transport;
    struct media_sdp_transport session; /* what the session level says */
    unsigned mline_count;
    struct media_sdp_mline mlines[MEDIA_SDP_MAX_MLINES];
    int audio; /* index of the accepted audio m-line, -1 when none */
    int video; /* index of the accepted video m-line, -1 when none */
};

/*
 * Parses `len` bytes of `text` (need not be NUL-terminated; CRLF or LF line
 * ends, the last line included) as an offer or answer, checks that the
 * server can serve it and records its choices in `out`. Borrows `text`;
 * fills `out` (always fully initialised, also on failure) and, when not
 * NULL, `err`. Returns MEDIA_SDP_OK or a negative enum media_sdp_status.
 *
 * Accepts: the first audio m-line with Opus 48000/2 and the first video
 * m-line with VP8 or H.264; every other m-line (data channels, further audio
 * or video, m-lines the offerer set to port 0) is answered with port 0.
 * Refuses: no BUNDLE group or an active m-line outside it, more than one
 * BUNDLE group, a missing rtcp-mux on an active audio/video m-line, no
 * fingerprint with sha-256/384/512, missing ICE credentials, an ICE-lite
 * offerer, setup:passive/holdconn in an offer, audio/video not over
 * UDP/TLS/RTP/SAVPF, audio without Opus, video without VP8 or usable H.264,
 * and anything over the limits above.
 */
int media_sdp_parse(const char *text, size_t len, enum media_sdp_kind kind,
                    struct media_sdp_offer *out, struct media_sdp_error *err);

/* What the server puts into its answer. All strings are borrowed. */
struct media_sdp_answer_params {
    const char *ice_ufrag;          /* 4..256 ICE characters (ALPHA / DIGIT / '+' / '/') */
    const char *ice_pwd;            /* 22..256 ICE characters */
    uint8_t fingerprint_sha256[32]; /* of the server's DTLS certificate */
    const char *public_ip;          /* IPv4 or IPv6 literal of the host candidate */
    uint16_t port;                  /* the worker's UDP port (not 0) */
    uint64_t session_id;            /* o= line; below 2^63 */
    uint64_t session_version;
    const char *cname;          /* RTCP CNAME of the server's streams */
    const char *stream_id;      /* msid stream id shared by our tracks */
    const char *audio_track_id; /* msid track ids */
    const char *video_track_id;
    uint32_t audio_ssrc; /* the server's outgoing SSRCs */
    uint32_t video_ssrc;
    uint32_t video_rtx_ssrc; /* 0: no a=ssrc-group:FID even when RTX was accepted */
};

/*
 * Writes the answer to `offer` (parsed as MEDIA_SDP_OFFER with success) into
 * `buf` of `cap` bytes, NUL-terminated, CRLF line ends. Returns the length
 * written (without the NUL), or MEDIA_SDP_ERR_PARAM (a parameter is empty,
 * too long or has characters that would break the SDP) or
 * MEDIA_SDP_ERR_BUFFER (does not fit; `buf` then holds a truncated,
 * NUL-terminated prefix when cap > 0). Borrows everything.
 *
 * The answer: ICE-lite, setup:passive, one BUNDLE group of the accepted
 * mids; per accepted m-line the chosen codecs with their RTX, fmtp and the
 * offered rtcp-fb we support, the used header extensions with the offered
 * ids, the direction mirrored (sendonly <-> recvonly), our SSRCs, msid and
 * FID group when we send, and one host candidate on `public_ip`:`port`.
 */
int media_sdp_write_answer(const struct media_sdp_offer *offer,
                           const struct media_sdp_answer_params *params, char *buf, size_t cap);

/* The direction an answer gives to an offered one (sendonly -> recvonly...). */
enum media_sdp_direction media_sdp_direction_answer(enum media_sdp_direction offered);

#endif
