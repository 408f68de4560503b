/*
 * sdp.c - reads browsers' SDP offers and writes the server's answers.
 *
 * Pure: no I/O, no allocation, no globals, so any thread may call it (the
 * signalling glue parses an offer before it hands the leg to a worker;
 * tests and the fuzzer call it directly). The offer is read in one pass,
 * line by line, into the fixed arrays of struct media_sdp_offer; a second
 * step (finish()) checks what can only be checked on the whole offer
 * (BUNDLE, transport, rtcp-mux) and picks the codecs.
 *
 * Every refusal names the line or the m-line, because the person reading
 * the log is usually looking at an offer from a browser version we have not
 * seen yet.
 */
#include "sdp.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A piece of the input: not NUL-terminated. */
struct span {
    const char *p;
    size_t n;
};

struct parser {
    enum media_sdp_kind kind;
    struct media_sdp_offer *out;
    struct media_sdp_error *err;
    unsigned line_no;
    struct span line;          /* the whole current line, for messages */
    struct media_sdp_mline *m; /* current m-line, NULL at session level */
    bool seen_version;
    bool seen_origin;
    bool session_has_direction;
    enum media_sdp_direction session_direction;
    unsigned bundle_groups;
    int8_t pt_index[128];                 /* current m-line: payload type -> codecs[] */
    uint8_t ext_seen[32];                 /* current m-line: extmap ids used (bitmap) */
    uint8_t fb_all[MEDIA_SDP_MAX_MLINES]; /* a=rtcp-fb:* per m-line */
    bool fmtp_seen[MEDIA_SDP_MAX_CODECS]; /* current m-line: a=fmtp given per codec */
};

static const char *const status_text[] = {
    [0] = "ok",
    [-MEDIA_SDP_ERR_TOO_LARGE] = "SDP larger than 64 KiB",
    [-MEDIA_SDP_ERR_LINE_TOO_LONG] = "SDP line longer than 4 KiB",
    [-MEDIA_SDP_ERR_TRUNCATED] = "SDP empty or cut short",
    [-MEDIA_SDP_ERR_SYNTAX] = "malformed SDP line",
    [-MEDIA_SDP_ERR_LIMIT] = "SDP has more than the server holds",
    [-MEDIA_SDP_ERR_BUNDLE] = "m-lines not all in one BUNDLE group",
    [-MEDIA_SDP_ERR_NO_RTCP_MUX] = "no rtcp-mux",
    [-MEDIA_SDP_ERR_NO_FINGERPRINT] = "no usable DTLS fingerprint",
    [-MEDIA_SDP_ERR_ICE] = "unusable ICE parameters",
    [-MEDIA_SDP_ERR_SETUP] = "unusable DTLS role (a=setup)",
    [-MEDIA_SDP_ERR_PROTOCOL] = "media not over UDP/TLS/RTP/SAVPF",
    [-MEDIA_SDP_ERR_MID] = "missing or repeated mid",
    [-MEDIA_SDP_ERR_PAYLOAD] = "bad payload type",
    [-MEDIA_SDP_ERR_NO_MEDIA] = "no audio or video to accept",
    [-MEDIA_SDP_ERR_NO_AUDIO_CODEC] = "no Opus audio",
    [-MEDIA_SDP_ERR_NO_VIDEO_CODEC] = "no VP8 or H.264 video",
    [-MEDIA_SDP_ERR_PARAM] = "bad answer parameter",
    [-MEDIA_SDP_ERR_BUFFER] = "answer does not fit the buffer",
};

const char *media_sdp_strerror(int status)
{
    if (status > 0 || -status >= (int)(sizeof(status_text) / sizeof(status_text[0])))
        return "unknown SDP status";
    return status_text[-status];
}

enum media_sdp_direction media_sdp_direction_answer(enum media_sdp_direction offered)
{
    switch (offered) {
    case MEDIA_SDP_SENDONLY:
        return MEDIA_SDP_RECVONLY;
    case MEDIA_SDP_RECVONLY:
        return MEDIA_SDP_SENDONLY;
    case MEDIA_SDP_INACTIVE:
        return MEDIA_SDP_INACTIVE;
    case MEDIA_SDP_SENDRECV:
    default:
        return MEDIA_SDP_SENDRECV;
    }
}

static const char *direction_name(enum media_sdp_direction d)
{
    static const char *const names[] = {"sendrecv", "sendonly", "recvonly", "inactive"};
    return (unsigned)d < 4 ? names[d] : "sendrecv";
}

/* ---- spans ---------------------------------------------------------------- */

static struct span span_of(const char *s)
{
    return (struct span){s, strlen(s)};
}

static bool span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool span_ieq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(s.p[i]) != ascii_lower(lit[i]))
            return false;
    return true;
}

/* The next space-separated token of *s (leading spaces skipped); empty at end. */
static struct span span_token(struct span *s)
{
    while (s->n && s->p[0] == ' ') {
        s->p++;
        s->n--;
    }
    size_t i = 0;
    while (i < s->n && s->p[i] != ' ')
        i++;
    struct span t = {s->p, i};
    s->p += i;
    s->n -= i;
    return t;
}

/* Splits *s at the first `sep`: returns what is before it, leaves the rest
 * (without `sep`) in *s; when there is no `sep`, returns all of it. */
static struct span span_split(struct span *s, char sep, bool *found)
{
    const char *at = s->n ? memchr(s->p, sep, s->n) : NULL;
    struct span head = {s->p, at ? (size_t)(at - s->p) : s->n};
    if (found)
        *found = at != NULL;
    if (at) {
        s->n -= head.n + 1;
        s->p = at + 1;
    } else {
        s->p += s->n;
        s->n = 0;
    }
    return head;
}

static struct span span_trim(struct span s)
{
    while (s.n && s.p[0] == ' ') {
        s.p++;
        s.n--;
    }
    while (s.n && s.p[s.n - 1] == ' ')
        s.n--;
    return s;
}

/* Decimal digits only (no sign, no spaces), value <= max. */
static bool span_u32(struct span s, uint32_t max, uint32_t *out)
{
    if (s.n == 0 || s.n > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    if (v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Visible ASCII only (no space, no control, no byte >= 0x80), 1..max chars. */
static bool span_visible(struct span s, size_t max)
{
    if (s.n == 0 || s.n > max)
        return false;
    for (size_t i = 0; i < s.n; i++)
        if ((unsigned char)s.p[i] <= 0x20 || (unsigned char)s.p[i] >= 0x7f)
            return false;
    return true;
}

/* Copies a span that the caller has checked fits (n < cap). */
static void span_copy(struct span s, char *dst, size_t cap)
{
    assert(s.n < cap);
    (void)cap;
    memcpy(dst, s.p, s.n);
    dst[s.n] = '\0';
}

/* ICE characters (RFC 8839): ALPHA / DIGIT / "+" / "/". */
static bool ice_chars(struct span s, size_t min, size_t max)
{
    if (s.n < min || s.n > max)
        return false;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok)
            return false;
    }
    return true;
}

/* ---- errors --------------------------------------------------------------- */

/* A printable excerpt of a line for messages: at most 60 bytes, anything
 * outside printable ASCII shown as '?'. */
static void excerpt(struct span s, char *dst, size_t cap)
{
    size_t keep = s.n > 60 ? 57 : s.n;
    size_t j = 0;
    for (size_t i = 0; i < keep && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)s.p[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (keep < s.n)
        for (int k = 0; k < 3 && j + 1 < cap; k++)
            dst[j++] = '.';
    dst[j] = '\0';
}

static int report(struct parser *ps, int code, unsigned line, const char *prefix, const char *fmt,
                  va_list ap) __attribute__((format(printf, 5, 0)));

static int report(struct parser *ps, int code, unsigned line, const char *prefix, const char *fmt,
                  va_list ap)
{
    if (!ps->err)
        return code;
    ps->err->code = code;
    ps->err->line = line;
    int n = snprintf(ps->err->message, sizeof(ps->err->message), "%s", prefix);
    if (n < 0 || (size_t)n >= sizeof(ps->err->message))
        return code;
    vsnprintf(ps->err->message + n, sizeof(ps->err->message) - (size_t)n, fmt, ap);
    return code;
}

/* Refuses because of the current line: "line 12: a=rtpmap:1...: <why>". */
static int fail_line(struct parser *ps, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_line(struct parser *ps, int code, const char *fmt, ...)
{
    char ex[64];
    char prefix[96];
    excerpt(ps->line, ex, sizeof(ex));
    snprintf(prefix, sizeof(prefix), "line %u: %s: ", ps->line_no, ex);
    va_list ap;
    va_start(ap, fmt);
    report(ps, code, ps->line_no, prefix, fmt, ap);
    va_end(ap);
    return code;
}

/* Refuses because of an m-line as a whole: "m-line 2 (mid "1", line 40): <why>". */
static int fail_mline(struct parser *ps, int code, const struct media_sdp_mline *m, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static int fail_mline(struct parser *ps, int code, const struct media_sdp_mline *m, const char *fmt,
                      ...)
{
    char prefix[96];
    unsigned number = (unsigned)(m - ps->out->mlines) + 1;
    snprintf(prefix, sizeof(prefix), "m-line %u (mid \"%s\", line %u): ", number, m->mid, m->line);
    va_list ap;
    va_start(ap, fmt);
    report(ps, code, m->line, prefix, fmt, ap);
    va_end(ap);
    return code;
}

/* Refuses because of something missing from the whole SDP. */
static int fail_sdp(struct parser *ps, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_sdp(struct parser *ps, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ps, code, 0, ps->kind == MEDIA_SDP_OFFER ? "offer: " : "answer: ", fmt, ap);
    va_end(ap);
    return code;
}

/* ---- attributes ----------------------------------------------------------- */

static struct media_sdp_transport *scope_transport(struct parser *ps)
{
    return ps->m ? &ps->m->transport : &ps->out->session;
}

static bool parse_direction(struct span s, enum media_sdp_direction *out)
{
    static const char *const names[] = {"sendrecv", "sendonly", "recvonly", "inactive"};
    for (unsigned i = 0; i < 4; i++) {
        if (span_eq(s, names[i])) {
            *out = (enum media_sdp_direction)i;
            return true;
        }
    }
    return false;
}

static int attr_group(struct parser *ps, struct span v)
{
    struct span semantics = span_token(&v);
    if (semantics.n == 0)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected a=group:<semantics> <mid>...");
    if (!span_eq(semantics, "BUNDLE"))
        return MEDIA_SDP_OK; /* LS and others: nothing for us */
    if (ps->m)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "a=group belongs at session level");
    if (++ps->bundle_groups > 1)
        return fail_line(ps, MEDIA_SDP_ERR_BUNDLE,
                         "a second BUNDLE group: the server has one transport per leg");
    struct media_sdp_offer *o = ps->out;
    for (struct span mid = span_token(&v); mid.n; mid = span_token(&v)) {
        if (!span_visible(mid, MEDIA_SDP_MID_MAX))
            return fail_line(ps, MEDIA_SDP_ERR_MID, "mid longer than %d characters or not visible",
                             MEDIA_SDP_MID_MAX);
        if (o->bundle_count == MEDIA_SDP_MAX_MLINES)
            return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d mids", MEDIA_SDP_MAX_MLINES);
        span_copy(mid, o->bundle[o->bundle_count++], MEDIA_SDP_MID_MAX + 1);
    }
    if (o->bundle_count == 0)
        return fail_line(ps, MEDIA_SDP_ERR_BUNDLE, "BUNDLE group without mids");
    return MEDIA_SDP_OK;
}

static int attr_ice(struct parser *ps, struct span v, bool is_pwd)
{
    struct media_sdp_transport *t = scope_transport(ps);
    char *dst = is_pwd ? t->ice_pwd : t->ice_ufrag;
    /* RFC 8839: ufrag 4..256 characters, pwd 22..256. */
    if (!ice_chars(v, is_pwd ? 22 : 4, MEDIA_SDP_ICE_MAX))
        return fail_line(ps, MEDIA_SDP_ERR_ICE, "expected %s ICE characters (A-Z a-z 0-9 + /)",
                         is_pwd ? "22 to 256" : "4 to 256");
    if (dst[0])
        return fail_line(ps, MEDIA_SDP_ERR_ICE, "repeated");
    span_copy(v, dst, MEDIA_SDP_ICE_MAX + 1);
    return MEDIA_SDP_OK;
}

static int attr_ice_options(struct parser *ps, struct span v)
{
    struct media_sdp_transport *t = scope_transport(ps);
    for (struct span o = span_token(&v); o.n; o = span_token(&v)) {
        if (span_eq(o, "trickle"))
            t->ice_trickle = true;
        else if (span_eq(o, "renomination"))
            t->ice_renomination = true;
    }
    return MEDIA_SDP_OK;
}

static int attr_fingerprint(struct parser *ps, struct span v)
{
    struct span hash = span_token(&v);
    struct span hex = span_token(&v);
    if (hash.n == 0 || hex.n == 0 || span_token(&v).n != 0)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected a=fingerprint:<hash> <hex>");
    enum media_sdp_hash h;
    uint8_t len;
    if (span_ieq(hash, "sha-256")) {
        h = MEDIA_SDP_SHA256;
        len = 32;
    } else if (span_ieq(hash, "sha-384")) {
        h = MEDIA_SDP_SHA384;
        len = 48;
    } else if (span_ieq(hash, "sha-512")) {
        h = MEDIA_SDP_SHA512;
        len = 64;
    } else {
        return MEDIA_SDP_OK; /* sha-1, md5...: too weak to verify a peer with; skip */
    }
    struct media_sdp_fingerprint fp = {.hash = h, .len = len};
    /* "AB:CD:...": exactly len pairs of hex digits separated by ':'. */
    if (hex.n != (size_t)len * 3 - 1)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected %u hex bytes separated by ':'", len);
    for (unsigned i = 0; i < len; i++) {
        int hi = hex_digit(hex.p[i * 3]);
        int lo = hex_digit(hex.p[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i + 1 < len && hex.p[i * 3 + 2] != ':'))
            return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected %u hex bytes separated by ':'",
                             len);
        fp.bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    struct media_sdp_transport *t = scope_transport(ps);
    if (t->fingerprint_count == MEDIA_SDP_MAX_FPRINTS)
        return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d fingerprints",
                         MEDIA_SDP_MAX_FPRINTS);
    t->fingerprints[t->fingerprint_count++] = fp;
    return MEDIA_SDP_OK;
}

static int attr_setup(struct parser *ps, struct span v)
{
    struct media_sdp_transport *t = scope_transport(ps);
    if (span_eq(v, "actpass"))
        t->setup = MEDIA_SDP_SETUP_ACTPASS;
    else if (span_eq(v, "active"))
        t->setup = MEDIA_SDP_SETUP_ACTIVE;
    else if (span_eq(v, "passive"))
        t->setup = MEDIA_SDP_SETUP_PASSIVE;
    else if (span_eq(v, "holdconn"))
        t->setup = MEDIA_SDP_SETUP_HOLDCONN;
    else
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected actpass, active, passive or holdconn");
    return MEDIA_SDP_OK;
}

static int attr_mid(struct parser *ps, struct span v)
{
    struct media_sdp_mline *m = ps->m;
    if (!m)
        return fail_line(ps, MEDIA_SDP_ERR_MID, "a=mid before any m= line");
    if (!span_visible(v, MEDIA_SDP_MID_MAX))
        return fail_line(ps, MEDIA_SDP_ERR_MID, "mid empty, longer than %d or not visible ASCII",
                         MEDIA_SDP_MID_MAX);
    if (m->mid[0])
        return fail_line(ps, MEDIA_SDP_ERR_MID, "second a=mid in one m-line");
    for (struct media_sdp_mline *other = ps->out->mlines; other < m; other++)
        if (span_eq(v, other->mid))
            return fail_line(ps, MEDIA_SDP_ERR_MID, "mid already used by the m-line of line %u",
                             other->line);
    span_copy(v, m->mid, sizeof(m->mid));
    return MEDIA_SDP_OK;
}

/* "<stream> [<track>]" into two MEDIA_SDP_ID_MAX buffers. */
static int parse_msid(struct parser *ps, struct span v, char *stream, char *track)
{
    struct span s = span_token(&v);
    struct span t = span_token(&v);
    if (!span_visible(s, MEDIA_SDP_ID_MAX) || (t.n && !span_visible(t, MEDIA_SDP_ID_MAX)) ||
        span_token(&v).n)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX,
                         "expected msid <stream> [<track>], each 1..%d characters",
                         MEDIA_SDP_ID_MAX);
    span_copy(s, stream, MEDIA_SDP_ID_MAX + 1);
    span_copy(t, track, MEDIA_SDP_ID_MAX + 1);
    return MEDIA_SDP_OK;
}

static struct media_sdp_ssrc *find_ssrc(struct media_sdp_mline *m, uint32_t ssrc)
{
    for (unsigned i = 0; i < m->ssrc_count; i++)
        if (m->ssrcs[i].ssrc == ssrc)
            return &m->ssrcs[i];
    return NULL;
}

static int attr_ssrc(struct parser *ps, struct span v)
{
    struct media_sdp_mline *m = ps->m;
    uint32_t id;
    struct span num = span_token(&v);
    struct span rest = span_trim(v);
    if (!span_u32(num, UINT32_MAX, &id) || rest.n == 0)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX,
                         "expected a=ssrc:<number> <attribute>[:<value>]");
    if (!m)
        return MEDIA_SDP_OK;
    struct media_sdp_ssrc *s = find_ssrc(m, id);
    if (!s) {
        if (m->ssrc_count == MEDIA_SDP_MAX_SSRCS)
            return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d SSRCs in one m-line",
                             MEDIA_SDP_MAX_SSRCS);
        s = &m->ssrcs[m->ssrc_count++];
        s->ssrc = id;
    }
    struct span attr = span_split(&rest, ':', NULL);
    if (span_eq(attr, "cname")) {
        if (!span_visible(rest, MEDIA_SDP_ID_MAX))
            return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "cname empty or longer than %d characters",
                             MEDIA_SDP_ID_MAX);
        span_copy(rest, s->cname, sizeof(s->cname));
    } else if (span_eq(attr, "msid")) {
        return parse_msid(ps, rest, s->msid_stream, s->msid_track);
    }
    return MEDIA_SDP_OK;
}

static int attr_ssrc_group(struct parser *ps, struct span v)
{
    struct span semantics = span_token(&v);
    uint32_t ssrcs[2] = {0, 0};
    unsigned count = 0;
    for (struct span t = span_token(&v); t.n; t = span_token(&v)) {
        uint32_t id;
        if (!span_u32(t, UINT32_MAX, &id))
            return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "SSRC \"%.*s\" is not a 32-bit number",
                             (int)(t.n > 16 ? 16 : t.n), t.p);
        if (count < 2)
            ssrcs[count] = id;
        count++;
    }
    if (semantics.n == 0 || count == 0)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected a=ssrc-group:<semantics> <ssrc>...");
    if (!span_eq(semantics, "FID") || !ps->m)
        return MEDIA_SDP_OK; /* SIM, FEC-FR: we relay one layer without FEC */
    if (count != 2)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "FID group needs exactly 2 SSRCs");
    struct media_sdp_mline *m = ps->m;
    if (m->fid_count == MEDIA_SDP_MAX_FID)
        return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d FID groups", MEDIA_SDP_MAX_FID);
    m->fids[m->fid_count++] = (struct media_sdp_fid){ssrcs[0], ssrcs[1]};
    return MEDIA_SDP_OK;
}

/* The codec of payload type `t` in the current m-line, or NULL (not listed
 * in its m= line: such attributes are ignored). Refuses non-numbers. */
static int codec_for(struct parser *ps, struct span t, struct media_sdp_codec **out)
{
    uint32_t pt;
    *out = NULL;
    if (!span_u32(t, 127, &pt))
        return fail_line(ps, MEDIA_SDP_ERR_PAYLOAD, "payload type is not a number in 0..127");
    if (ps->m && ps->pt_index[pt] >= 0)
        *out = &ps->m->codecs[ps->pt_index[pt]];
    return MEDIA_SDP_OK;
}

static enum media_sdp_codec_id codec_id(struct span name)
{
    if (span_ieq(name, "opus"))
        return MEDIA_SDP_CODEC_OPUS;
    if (span_ieq(name, "VP8"))
        return MEDIA_SDP_CODEC_VP8;
    if (span_ieq(name, "H264"))
        return MEDIA_SDP_CODEC_H264;
    if (span_ieq(name, "rtx"))
        return MEDIA_SDP_CODEC_RTX;
    return MEDIA_SDP_CODEC_OTHER;
}

static int attr_rtpmap(struct parser *ps, struct span v)
{
    struct media_sdp_codec *c;
    int rc = codec_for(ps, span_token(&v), &c);
    if (rc)
        return rc;
    struct span enc = span_trim(v);
    bool has_clock, has_channels;
    struct span name = span_split(&enc, '/', &has_clock);
    struct span clock = span_split(&enc, '/', &has_channels);
    uint32_t rate, channels = 1;
    if (name.n == 0 || !span_visible(name, MEDIA_SDP_MAX_LINE) || !has_clock ||
        !span_u32(clock, UINT32_MAX, &rate) || rate == 0 ||
        (has_channels && (!span_u32(enc, 255, &channels) || channels == 0)))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX,
                         "expected a=rtpmap:<type> <name>/<clock>[/<channels>]");
    if (!c)
        return MEDIA_SDP_OK;
    if (c->has_rtpmap)
        return fail_line(ps, MEDIA_SDP_ERR_PAYLOAD, "second a=rtpmap for payload type %u", c->pt);
    c->has_rtpmap = true;
    c->id = codec_id(name);
    size_t keep = name.n > MEDIA_SDP_NAME_MAX ? MEDIA_SDP_NAME_MAX : name.n;
    memcpy(c->name, name.p, keep);
    c->name[keep] = '\0';
    c->clock_rate = rate;
    c->channels = (uint8_t)channels;
    return MEDIA_SDP_OK;
}

static int fmtp_flag(struct parser *ps, struct span key, struct span value, int8_t *out)
{
    uint32_t v;
    if (!span_u32(value, 1, &v))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "%.*s must be 0 or 1", (int)key.n, key.p);
    *out = (int8_t)v;
    return MEDIA_SDP_OK;
}

static int attr_fmtp(struct parser *ps, struct span v)
{
    struct media_sdp_codec *c;
    int rc = codec_for(ps, span_token(&v), &c);
    if (rc)
        return rc;
    if (!c)
        return MEDIA_SDP_OK;
    size_t slot = (size_t)(c - ps->m->codecs);
    if (ps->fmtp_seen[slot])
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "second a=fmtp for payload type %u", c->pt);
    ps->fmtp_seen[slot] = true;
    struct span params = span_trim(v);
    while (params.n) {
        struct span item = span_trim(span_split(&params, ';', NULL));
        bool has_value;
        struct span key = span_trim(span_split(&item, '=', &has_value));
        struct span value = span_trim(item);
        if (!has_value)
            continue; /* "0-15" (telephone-event), "111/111" (red): not ours */
        uint32_t n;
        if (span_ieq(key, "apt")) {
            if (!span_u32(value, 127, &n))
                return fail_line(ps, MEDIA_SDP_ERR_PAYLOAD, "apt is not a number in 0..127");
            c->apt = (int16_t)n;
        } else if (span_ieq(key, "minptime")) {
            if (!span_u32(value, 1000, &n))
                return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "minptime is not a number of ms");
            c->minptime = (int16_t)n;
        } else if (span_ieq(key, "useinbandfec")) {
            rc = fmtp_flag(ps, key, value, &c->useinbandfec);
        } else if (span_ieq(key, "level-asymmetry-allowed")) {
            rc = fmtp_flag(ps, key, value, &c->level_asymmetry_allowed);
        } else if (span_ieq(key, "packetization-mode")) {
            if (!span_u32(value, 2, &n))
                return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "packetization-mode must be 0, 1 or 2");
            c->packetization_mode = (int8_t)n;
        } else if (span_ieq(key, "profile-level-id")) {
            uint32_t plid = 0;
            bool ok = value.n == 6;
            for (size_t i = 0; ok && i < 6; i++) {
                int d = hex_digit(value.p[i]);
                ok = d >= 0;
                plid = plid << 4 | (uint32_t)(d & 0xf);
            }
            if (!ok)
                return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "profile-level-id must be 6 hex digits");
            c->has_profile_level_id = true;
            c->profile_level_id = plid;
        }
        if (rc)
            return rc;
    }
    return MEDIA_SDP_OK;
}

static int attr_rtcp_fb(struct parser *ps, struct span v)
{
    struct span pt = span_token(&v);
    struct span type = span_token(&v);
    struct span param = span_token(&v);
    if (pt.n == 0 || type.n == 0)
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected a=rtcp-fb:<type> <feedback>");
    uint8_t flag = 0;
    if (span_eq(type, "nack") && param.n == 0)
        flag = MEDIA_SDP_FB_NACK;
    else if (span_eq(type, "nack") && span_eq(param, "pli"))
        flag = MEDIA_SDP_FB_NACK_PLI;
    else if (span_eq(type, "ccm") && span_eq(param, "fir"))
        flag = MEDIA_SDP_FB_CCM_FIR;
    else if (span_eq(type, "goog-remb"))
        flag = MEDIA_SDP_FB_GOOG_REMB;
    else if (span_eq(type, "transport-cc"))
        flag = MEDIA_SDP_FB_TRANSPORT_CC;
    if (span_eq(pt, "*")) {
        if (ps->m)
            ps->fb_all[ps->m - ps->out->mlines] |= flag;
        return MEDIA_SDP_OK;
    }
    struct media_sdp_codec *c;
    int rc = codec_for(ps, pt, &c);
    if (rc == MEDIA_SDP_OK && c)
        c->fb |= flag;
    return rc;
}

static const struct {
    enum media_sdp_ext ext;
    const char *uri;
} known_extensions[] = {
    {MEDIA_SDP_EXT_MID, "urn:ietf:params:rtp-hdrext:sdes:mid"},
    {MEDIA_SDP_EXT_ABS_SEND_TIME, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"},
    {MEDIA_SDP_EXT_TRANSPORT_CC,
     "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"},
    {MEDIA_SDP_EXT_AUDIO_LEVEL, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"},
};

static const char *extension_uri(enum media_sdp_ext ext)
{
    for (size_t i = 0; i < sizeof(known_extensions) / sizeof(known_extensions[0]); i++)
        if (known_extensions[i].ext == ext)
            return known_extensions[i].uri;
    return NULL;
}

static int attr_extmap(struct parser *ps, struct span v)
{
    struct span head = span_token(&v);
    struct span uri = span_token(&v);
    bool has_direction;
    struct span num = span_split(&head, '/', &has_direction);
    uint32_t id;
    enum media_sdp_direction direction = MEDIA_SDP_SENDRECV;
    /* RFC 8285: 1..14 with one-byte headers, up to 255 with two-byte ones. */
    if (!span_u32(num, 255, &id) || id == 0 ||
        (has_direction && !parse_direction(head, &direction)))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX,
                         "expected a=extmap:<1..255>[/<direction>] <uri>");
    if (!span_visible(uri, MEDIA_SDP_MAX_LINE))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "extmap without a URI");
    struct media_sdp_mline *m = ps->m;
    if (!m)
        return MEDIA_SDP_OK; /* session-level extmaps: no browser sends them */
    if (ps->ext_seen[id / 8] & (1u << (id % 8)))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "extmap id %" PRIu32 " used twice", id);
    ps->ext_seen[id / 8] |= (uint8_t)(1u << (id % 8));

    enum media_sdp_ext ext = MEDIA_SDP_EXT_OTHER;
    for (size_t i = 0; i < sizeof(known_extensions) / sizeof(known_extensions[0]); i++)
        if (span_eq(uri, known_extensions[i].uri))
            ext = known_extensions[i].ext;
    if (ext != MEDIA_SDP_EXT_OTHER && m->ext_id[ext] == 0) {
        m->ext_id[ext] = (uint8_t)id;
        m->ext_has_direction[ext] = has_direction;
        m->ext_direction[ext] = direction;
    }
    if (m->extmap_count == MEDIA_SDP_MAX_EXTMAPS) {
        m->extmaps_dropped++;
        return MEDIA_SDP_OK;
    }
    struct media_sdp_extmap *e = &m->extmaps[m->extmap_count++];
    e->id = (uint8_t)id;
    e->has_direction = has_direction;
    e->direction = direction;
    e->ext = ext;
    size_t keep = uri.n;
    if (keep > MEDIA_SDP_URI_MAX) {
        keep = MEDIA_SDP_URI_MAX;
        e->uri_truncated = true;
    }
    memcpy(e->uri, uri.p, keep);
    e->uri[keep] = '\0';
    return MEDIA_SDP_OK;
}

static int parse_attribute(struct parser *ps, struct span a)
{
    bool has_value;
    struct span name = span_split(&a, ':', &has_value);
    struct span v = a;
    struct media_sdp_mline *m = ps->m;
    enum media_sdp_direction direction;

    if (!has_value && parse_direction(name, &direction)) {
        if (m) {
            m->has_direction = true;
            m->direction = direction;
        } else {
            ps->session_has_direction = true;
            ps->session_direction = direction;
        }
        return MEDIA_SDP_OK;
    }
    if (span_eq(name, "group"))
        return attr_group(ps, v);
    if (span_eq(name, "ice-ufrag"))
        return attr_ice(ps, v, false);
    if (span_eq(name, "ice-pwd"))
        return attr_ice(ps, v, true);
    if (span_eq(name, "ice-options"))
        return attr_ice_options(ps, v);
    if (span_eq(name, "ice-lite")) {
        ps->out->ice_lite = true;
        return MEDIA_SDP_OK;
    }
    if (span_eq(name, "fingerprint"))
        return attr_fingerprint(ps, v);
    if (span_eq(name, "setup"))
        return attr_setup(ps, v);
    if (span_eq(name, "mid"))
        return attr_mid(ps, v);
    if (span_eq(name, "extmap-allow-mixed")) {
        ps->out->extmap_allow_mixed = true;
        return MEDIA_SDP_OK;
    }
    if (!m)
        return MEDIA_SDP_OK; /* msid-semantic and the like */
    if (span_eq(name, "msid"))
        return parse_msid(ps, v, m->msid_stream, m->msid_track);
    if (span_eq(name, "ssrc"))
        return attr_ssrc(ps, v);
    if (span_eq(name, "ssrc-group"))
        return attr_ssrc_group(ps, v);
    if (span_eq(name, "rtcp-mux"))
        m->rtcp_mux = true;
    else if (span_eq(name, "rtcp-rsize"))
        m->rtcp_rsize = true;
    else if (span_eq(name, "bundle-only"))
        m->bundle_only = true;
    else if (span_eq(name, "rtpmap"))
        return attr_rtpmap(ps, v);
    else if (span_eq(name, "fmtp"))
        return attr_fmtp(ps, v);
    else if (span_eq(name, "rtcp-fb"))
        return attr_rtcp_fb(ps, v);
    else if (span_eq(name, "extmap"))
        return attr_extmap(ps, v);
    else if (span_eq(name, "candidate"))
        m->candidate_count++;
    else if (span_eq(name, "end-of-candidates"))
        m->end_of_candidates = true;
    return MEDIA_SDP_OK;
}

/* ---- m= lines ------------------------------------------------------------- */

/* Static payload types that browsers list without an a=rtpmap. */
static void static_codec(struct media_sdp_codec *c)
{
    static const struct {
        uint8_t pt;
        const char *name;
        uint32_t clock;
    } table[] = {{0, "PCMU", 8000}, {8, "PCMA", 8000}, {9, "G722", 8000}, {13, "CN", 8000}};
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].pt == c->pt) {
            snprintf(c->name, sizeof(c->name), "%s", table[i].name);
            c->clock_rate = table[i].clock;
        }
    }
}

static int parse_media(struct parser *ps, struct span v)
{
    struct media_sdp_offer *o = ps->out;
    if (o->mline_count == MEDIA_SDP_MAX_MLINES)
        return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d m-lines", MEDIA_SDP_MAX_MLINES);
    struct media_sdp_mline *m = &o->mlines[o->mline_count++];
    ps->m = m;
    m->line = ps->line_no;
    memset(ps->pt_index, -1, sizeof(ps->pt_index));
    memset(ps->ext_seen, 0, sizeof(ps->ext_seen));
    memset(ps->fmtp_seen, 0, sizeof(ps->fmtp_seen));

    struct span media = span_token(&v);
    struct span port = span_token(&v);
    struct span proto = span_token(&v);
    struct span fmt0 = v;
    fmt0 = span_token(&fmt0);
    bool has_count;
    struct span port_num = span_split(&port, '/', &has_count);
    uint32_t p, count;
    if (!span_visible(media, MEDIA_SDP_PROTO_MAX) || !span_u32(port_num, 65535, &p) ||
        (has_count && !span_u32(port, 65535, &count)) ||
        !span_visible(proto, MEDIA_SDP_PROTO_MAX) || !span_visible(fmt0, MEDIA_SDP_PROTO_MAX))
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected m=<media> <port> <proto> <format>...");
    span_copy(media, m->media_name, sizeof(m->media_name));
    span_copy(proto, m->proto, sizeof(m->proto));
    span_copy(fmt0, m->fmt0, sizeof(m->fmt0));
    m->port = (uint16_t)p;
    if (span_eq(media, "audio"))
        m->media = MEDIA_SDP_AUDIO;
    else if (span_eq(media, "video"))
        m->media = MEDIA_SDP_VIDEO;
    else if (span_eq(media, "application"))
        m->media = MEDIA_SDP_APPLICATION;
    else
        m->media = MEDIA_SDP_OTHER;
    m->rtp = span_eq(proto, "UDP/TLS/RTP/SAVPF");
    bool rtp_media = m->media == MEDIA_SDP_AUDIO || m->media == MEDIA_SDP_VIDEO;
    if (!m->rtp || !rtp_media)
        return MEDIA_SDP_OK; /* formats are not payload types: kept as text only */

    for (struct span t = span_token(&v); t.n; t = span_token(&v)) {
        uint32_t pt;
        if (!span_u32(t, 127, &pt))
            return fail_line(ps, MEDIA_SDP_ERR_PAYLOAD,
                             "payload type \"%.*s\" is not a number in 0..127",
                             (int)(t.n > 16 ? 16 : t.n), t.p);
        if (ps->pt_index[pt] >= 0)
            return fail_line(ps, MEDIA_SDP_ERR_PAYLOAD, "payload type %" PRIu32 " listed twice",
                             pt);
        if (m->codec_count == MEDIA_SDP_MAX_CODECS)
            return fail_line(ps, MEDIA_SDP_ERR_LIMIT, "more than %d payload types",
                             MEDIA_SDP_MAX_CODECS);
        ps->pt_index[pt] = (int8_t)m->codec_count;
        struct media_sdp_codec *c = &m->codecs[m->codec_count++];
        *c = (struct media_sdp_codec){
            .pt = (uint8_t)pt,
            .channels = 1,
            .apt = -1,
            .minptime = -1,
            .useinbandfec = -1,
            .profile_level_id = 0x42000a,
            .level_asymmetry_allowed = -1,
        };
        static_codec(c);
    }
    return MEDIA_SDP_OK;
}

/* ---- the whole offer ------------------------------------------------------ */

static int parse_line(struct parser *ps)
{
    struct span l = ps->line;
    if (l.n < 2 || l.p[1] != '=' || l.p[0] < 'a' || l.p[0] > 'z')
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "expected <letter>=<value>");
    struct span v = {l.p + 2, l.n - 2};
    if (!ps->seen_version) {
        if (!span_eq(l, "v=0"))
            return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "an SDP starts with v=0");
        ps->seen_version = true;
        return MEDIA_SDP_OK;
    }
    switch (l.p[0]) {
    case 'v':
        return fail_line(ps, MEDIA_SDP_ERR_SYNTAX, "second v= line");
    case 'o': {
        unsigned fields = 0;
        while (span_token(&v).n)
            fields++;
        if (ps->m || ps->seen_origin || fields != 6)
            return fail_line(ps, MEDIA_SDP_ERR_SYNTAX,
                             "expected one o=<user> <id> <version> IN <IP4|IP6> <address> "
                             "before the m-lines");
        ps->seen_origin = true;
        return MEDIA_SDP_OK;
    }
    case 'm':
        return parse_media(ps, v);
    case 'a':
        return parse_attribute(ps, v);
    default:
        return MEDIA_SDP_OK; /* s=, t=, c=, b=, i=...: nothing we need */
    }
}

static bool mline_active(const struct parser *ps, const struct media_sdp_mline *m)
{
    /* In an offer port 0 means "rejected by the offerer" unless bundle-only
     * (RFC 8843); in an answer it only means rejected. */
    return m->port != 0 || (ps->kind == MEDIA_SDP_OFFER && m->bundle_only);
}

static struct media_sdp_mline *mline_by_mid(struct media_sdp_offer *o, const char *mid)
{
    for (unsigned i = 0; i < o->mline_count; i++)
        if (strcmp(o->mlines[i].mid, mid) == 0)
            return &o->mlines[i];
    return NULL;
}

/* Payload types 64..95 look like RTCP (200..223 with the marker bit) once
 * RTP and RTCP share a port (RFC 5761 section 4): never choose them. */
static bool pt_usable(unsigned pt)
{
    return pt < 64 || pt > 95;
}

/* RFC 6184 profile-level-id: Baseline or Constrained Baseline, as libwebrtc
 * reads it (profile_idc 0x42 any; 0x4D and 0x58 with constraint_set0). */
static bool h264_baseline(uint32_t plid)
{
    unsigned idc = (plid >> 16) & 0xff;
    unsigned iop = (plid >> 8) & 0xff;
    if (iop & 0x0f)
        return false;
    if (idc == 0x42)
        return true;
    if (idc == 0x4d || idc == 0x58)
        return (iop & 0x80) != 0;
    return false;
}

static struct media_sdp_choice choose(const struct media_sdp_mline *m,
                                      const struct media_sdp_codec *c)
{
    struct media_sdp_choice ch = {.codec = c->id, .pt = c->pt, .rtx_pt = -1};
    for (unsigned i = 0; i < m->codec_count; i++) {
        const struct media_sdp_codec *r = &m->codecs[i];
        if (r->id == MEDIA_SDP_CODEC_RTX && r->apt == c->pt && r->clock_rate == c->clock_rate &&
            pt_usable(r->pt)) {
            ch.rtx_pt = r->pt;
            break;
        }
    }
    return ch;
}

static bool choose_audio(struct media_sdp_mline *m)
{
    for (unsigned i = 0; i < m->codec_count; i++) {
        const struct media_sdp_codec *c = &m->codecs[i];
        if (c->id == MEDIA_SDP_CODEC_OPUS && c->clock_rate == 48000 && c->channels == 2 &&
            pt_usable(c->pt)) {
            m->choices[m->choice_count++] = choose(m, c);
            return true;
        }
    }
    return false;
}

static bool choose_video(struct media_sdp_mline *m)
{
    const struct media_sdp_codec *vp8 = NULL, *h264 = NULL;
    for (unsigned i = 0; i < m->codec_count; i++) {
        const struct media_sdp_codec *c = &m->codecs[i];
        if (!pt_usable(c->pt) || c->clock_rate != 90000)
            continue;
        if (!vp8 && c->id == MEDIA_SDP_CODEC_VP8)
            vp8 = c;
        if (!h264 && c->id == MEDIA_SDP_CODEC_H264 && c->packetization_mode == 1 &&
            h264_baseline(c->profile_level_id))
            h264 = c;
    }
    /* VP8 first: every browser has it and both legs of a consultation must
     * agree; H.264 second so that a leg which only has it still works. */
    if (vp8)
        m->choices[m->choice_count++] = choose(m, vp8);
    if (h264)
        m->choices[m->choice_count++] = choose(m, h264);
    return m->choice_count > 0;
}

/* The transport of the BUNDLE group: the tagged m-line's values, each
 * falling back to the session level. */
static void resolve_transport(struct media_sdp_offer *o, const struct media_sdp_mline *tagged)
{
    const struct media_sdp_transport *mt = &tagged->transport;
    struct media_sdp_transport *t = &o->transport;
    *t = o->session;
    if (mt->ice_ufrag[0])
        memcpy(t->ice_ufrag, mt->ice_ufrag, sizeof(t->ice_ufrag));
    if (mt->ice_pwd[0])
        memcpy(t->ice_pwd, mt->ice_pwd, sizeof(t->ice_pwd));
    t->ice_trickle |= mt->ice_trickle;
    t->ice_renomination |= mt->ice_renomination;
    if (mt->setup != MEDIA_SDP_SETUP_NONE)
        t->setup = mt->setup;
    if (mt->fingerprint_count) {
        t->fingerprint_count = mt->fingerprint_count;
        memcpy(t->fingerprints, mt->fingerprints, sizeof(t->fingerprints));
    }
}

static int finish(struct parser *ps)
{
    struct media_sdp_offer *o = ps->out;
    if (!ps->seen_origin)
        return fail_sdp(ps, MEDIA_SDP_ERR_SYNTAX, "no o= line");
    if (o->mline_count == 0)
        return fail_sdp(ps, MEDIA_SDP_ERR_NO_MEDIA, "no m-lines");

    for (unsigned i = 0; i < o->mline_count; i++) {
        struct media_sdp_mline *m = &o->mlines[i];
        if (!m->mid[0])
            return fail_mline(ps, MEDIA_SDP_ERR_MID, m, "no a=mid (Unified Plan needs one)");
        if (!m->has_direction)
            m->direction = ps->session_has_direction ? ps->session_direction : MEDIA_SDP_SENDRECV;
        for (unsigned c = 0; c < m->codec_count; c++)
            m->codecs[c].fb |= ps->fb_all[i];
    }

    if (o->bundle_count == 0)
        return fail_sdp(ps, MEDIA_SDP_ERR_BUNDLE,
                        "no a=group:BUNDLE: all m-lines must share one transport");
    const struct media_sdp_mline *tagged = NULL;
    for (unsigned i = 0; i < o->bundle_count; i++) {
        const struct media_sdp_mline *m = mline_by_mid(o, o->bundle[i]);
        if (!m)
            return fail_sdp(ps, MEDIA_SDP_ERR_BUNDLE,
                            "BUNDLE names mid \"%s\" but no m-line has it", o->bundle[i]);
        if (!tagged && mline_active(ps, m))
            tagged = m;
    }
    for (unsigned i = 0; i < o->mline_count; i++) {
        struct media_sdp_mline *m = &o->mlines[i];
        bool bundled = false;
        for (unsigned b = 0; b < o->bundle_count; b++)
            bundled |= strcmp(o->bundle[b], m->mid) == 0;
        if (mline_active(ps, m) && !bundled)
            return fail_mline(ps, MEDIA_SDP_ERR_BUNDLE, m, "not in the BUNDLE group");
    }
    if (!tagged)
        return fail_sdp(ps, MEDIA_SDP_ERR_NO_MEDIA, "every bundled m-line has port 0");

    resolve_transport(o, tagged);
    const struct media_sdp_transport *t = &o->transport;
    if (!t->ice_ufrag[0] || !t->ice_pwd[0])
        return fail_mline(ps, MEDIA_SDP_ERR_ICE, tagged,
                          "no a=ice-ufrag and a=ice-pwd for the BUNDLE transport");
    if (t->fingerprint_count == 0)
        return fail_mline(ps, MEDIA_SDP_ERR_NO_FINGERPRINT, tagged,
                          "no a=fingerprint with sha-256, sha-384 or sha-512");
    if (ps->kind == MEDIA_SDP_OFFER) {
        if (o->ice_lite)
            return fail_sdp(ps, MEDIA_SDP_ERR_ICE,
                            "a=ice-lite: the server is ICE-lite too, nobody would check");
        /* We are always DTLS passive: the offerer must be able to connect. */
        if (t->setup == MEDIA_SDP_SETUP_PASSIVE || t->setup == MEDIA_SDP_SETUP_HOLDCONN)
            return fail_mline(ps, MEDIA_SDP_ERR_SETUP, tagged,
                              "a=setup:%s, but the server only takes the passive role",
                              t->setup == MEDIA_SDP_SETUP_PASSIVE ? "passive" : "holdconn");
    } else if (t->setup != MEDIA_SDP_SETUP_ACTIVE && t->setup != MEDIA_SDP_SETUP_PASSIVE) {
        return fail_mline(ps, MEDIA_SDP_ERR_SETUP, tagged,
                          "an answer must say a=setup:active or passive");
    }

    o->audio = -1;
    o->video = -1;
    const struct media_sdp_mline *audio_offered = NULL, *video_offered = NULL;
    for (unsigned i = 0; i < o->mline_count; i++) {
        struct media_sdp_mline *m = &o->mlines[i];
        if (!mline_active(ps, m) || (m->media != MEDIA_SDP_AUDIO && m->media != MEDIA_SDP_VIDEO))
            continue;
        if (!m->rtp)
            return fail_mline(ps, MEDIA_SDP_ERR_PROTOCOL, m,
                              "%s over %s; the server only serves UDP/TLS/RTP/SAVPF", m->media_name,
                              m->proto);
        if (!m->rtcp_mux)
            return fail_mline(ps, MEDIA_SDP_ERR_NO_RTCP_MUX, m,
                              "no a=rtcp-mux: RTP and RTCP must share the port");
        if (m->media == MEDIA_SDP_AUDIO) {
            audio_offered = audio_offered ? audio_offered : m;
            if (o->audio < 0 && choose_audio(m))
                o->audio = (int)i;
        } else {
            video_offered = video_offered ? video_offered : m;
            if (o->video < 0 && choose_video(m))
                o->video = (int)i;
        }
    }
    if (audio_offered && o->audio < 0)
        return fail_mline(ps, MEDIA_SDP_ERR_NO_AUDIO_CODEC, audio_offered,
                          "none of its %u payload types is opus/48000/2",
                          audio_offered->codec_count);
    if (video_offered && o->video < 0)
        return fail_mline(ps, MEDIA_SDP_ERR_NO_VIDEO_CODEC, video_offered,
                          "none of its %u payload types is VP8/90000 or H264/90000 with "
                          "packetization-mode=1 and a baseline profile",
                          video_offered->codec_count);
    if (o->audio < 0 && o->video < 0)
        return fail_sdp(ps, MEDIA_SDP_ERR_NO_MEDIA, "no audio or video m-line");
    if (o->audio >= 0)
        o->mlines[o->audio].accepted = true;
    if (o->video >= 0)
        o->mlines[o->video].accepted = true;
    return MEDIA_SDP_OK;
}

int media_sdp_parse(const char *text, size_t len, enum media_sdp_kind kind,
                    struct media_sdp_offer *out, struct media_sdp_error *err)
{
    assert(out && (text || len == 0));
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->audio = -1;
    out->video = -1;
    if (err)
        memset(err, 0, sizeof(*err));
    struct parser ps = {.kind = kind, .out = out, .err = err};

    if (len > MEDIA_SDP_MAX_SIZE)
        return fail_sdp(&ps, MEDIA_SDP_ERR_TOO_LARGE, "%zu bytes, more than %d", len,
                        MEDIA_SDP_MAX_SIZE);
    if (len == 0)
        return fail_sdp(&ps, MEDIA_SDP_ERR_TRUNCATED, "empty");

    size_t pos = 0;
    while (pos < len) {
        const char *start = text + pos;
        size_t rest = len - pos;
        const char *nl = memchr(start, '\n', rest);
        size_t n = nl ? (size_t)(nl - start) : rest;
        ps.line_no++;
        ps.line = (struct span){start, n};
        if (n > 0 && start[n - 1] == '\r')
            ps.line.n = --n;
        if (n > MEDIA_SDP_MAX_LINE)
            return fail_line(&ps, MEDIA_SDP_ERR_LINE_TOO_LONG, "%zu bytes, more than %d", n,
                             MEDIA_SDP_MAX_LINE);
        if (!nl)
            return fail_line(&ps, MEDIA_SDP_ERR_TRUNCATED,
                             "the last line has no line end: the SDP was cut short");
        pos += (size_t)(nl - start) + 1;
        if (memchr(start, '\0', n) || memchr(start, '\r', n))
            return fail_line(&ps, MEDIA_SDP_ERR_SYNTAX, "NUL or CR inside a line");
        if (n == 0)
            continue; /* tolerated: some signalling code adds blank lines */
        int rc = parse_line(&ps);
        if (rc)
            return rc;
    }
    if (!ps.seen_version)
        return fail_sdp(&ps, MEDIA_SDP_ERR_TRUNCATED, "only blank lines");
    int rc = finish(&ps);
    if (rc) {
        /* Nothing of a refused offer may be answered. */
        out->audio = -1;
        out->video = -1;
        for (unsigned i = 0; i < out->mline_count; i++)
            out->mlines[i].accepted = false;
    }
    return rc;
}

/* ---- the answer ----------------------------------------------------------- */

struct writer {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

static void put(struct writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct writer *w, const char *fmt, ...)
{
    if (w->overflow)
        return;
    size_t room = w->cap - w->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->buf + w->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        w->overflow = true;
        return;
    }
    w->len += (size_t)n;
}

static bool param_ok(const char *s, size_t max)
{
    return s && span_visible(span_of(s), max);
}

static bool ip_ok(const char *s)
{
    if (!s || !s[0] || strlen(s) > 45)
        return false;
    bool dot = false, colon = false;
    for (const char *p = s; *p; p++) {
        dot |= *p == '.';
        colon |= *p == ':';
        if (hex_digit(*p) < 0 && *p != '.' && *p != ':')
            return false;
    }
    return dot || colon;
}

static bool params_ok(const struct media_sdp_answer_params *p)
{
    return ice_chars(span_of(p->ice_ufrag ? p->ice_ufrag : ""), 4, MEDIA_SDP_ICE_MAX) &&
           ice_chars(span_of(p->ice_pwd ? p->ice_pwd : ""), 22, MEDIA_SDP_ICE_MAX) &&
           ip_ok(p->public_ip) && p->port != 0 && p->session_id < (UINT64_C(1) << 63) &&
           param_ok(p->cname, MEDIA_SDP_ID_MAX) && param_ok(p->stream_id, MEDIA_SDP_ID_MAX) &&
           param_ok(p->audio_track_id, MEDIA_SDP_ID_MAX) &&
           param_ok(p->video_track_id, MEDIA_SDP_ID_MAX);
}

static void put_feedback(struct writer *w, unsigned pt, uint8_t fb)
{
    static const struct {
        uint8_t flag;
        const char *text;
    } order[] = {
        {MEDIA_SDP_FB_GOOG_REMB, "goog-remb"}, {MEDIA_SDP_FB_TRANSPORT_CC, "transport-cc"},
        {MEDIA_SDP_FB_CCM_FIR, "ccm fir"},     {MEDIA_SDP_FB_NACK, "nack"},
        {MEDIA_SDP_FB_NACK_PLI, "nack pli"},
    };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (fb & order[i].flag)
            put(w, "a=rtcp-fb:%u %s\r\n", pt, order[i].text);
}

static const struct media_sdp_codec *codec_by_pt(const struct media_sdp_mline *m, unsigned pt)
{
    for (unsigned i = 0; i < m->codec_count; i++)
        if (m->codecs[i].pt == pt)
            return &m->codecs[i];
    return NULL;
}

static void put_codecs(struct writer *w, const struct media_sdp_mline *m)
{
    for (unsigned i = 0; i < m->choice_count; i++) {
        const struct media_sdp_choice *ch = &m->choices[i];
        const struct media_sdp_codec *c = codec_by_pt(m, ch->pt);
        assert(c);
        switch (ch->codec) {
        case MEDIA_SDP_CODEC_OPUS:
            put(w, "a=rtpmap:%u opus/48000/2\r\n", c->pt);
            put_feedback(w, c->pt, c->fb & (MEDIA_SDP_FB_TRANSPORT_CC | MEDIA_SDP_FB_NACK));
            /* In-band FEC asked for whatever the offer says: patients are on
             * weak mobile networks and the relay does not repair audio. */
            put(w, "a=fmtp:%u minptime=%d;useinbandfec=1\r\n", c->pt,
                c->minptime >= 0 ? c->minptime : 10);
            break;
        case MEDIA_SDP_CODEC_VP8:
            put(w, "a=rtpmap:%u VP8/90000\r\n", c->pt);
            put_feedback(w, c->pt, c->fb);
            break;
        case MEDIA_SDP_CODEC_H264:
            put(w, "a=rtpmap:%u H264/90000\r\n", c->pt);
            put_feedback(w, c->pt, c->fb);
            put(w, "a=fmtp:%u %spacketization-mode=1", c->pt,
                c->level_asymmetry_allowed == 1 ? "level-asymmetry-allowed=1;" : "");
            if (c->has_profile_level_id)
                put(w, ";profile-level-id=%06" PRIx32, c->profile_level_id);
            put(w, "\r\n");
            break;
        default:
            assert(!"unexpected codec choice");
            break;
        }
        if (ch->rtx_pt >= 0) {
            put(w, "a=rtpmap:%d rtx/%" PRIu32 "\r\n", ch->rtx_pt, c->clock_rate);
            put(w, "a=fmtp:%d apt=%u\r\n", ch->rtx_pt, c->pt);
        }
    }
}

static void put_extmaps(struct writer *w, const struct media_sdp_mline *m)
{
    for (unsigned e = 0; e < MEDIA_SDP_EXT_COUNT; e++) {
        if (!m->ext_id[e] || (e == MEDIA_SDP_EXT_AUDIO_LEVEL && m->media != MEDIA_SDP_AUDIO))
            continue;
        const char *dir = "";
        if (m->ext_has_direction[e]) {
            /* RFC 8285 section 6: the answer mirrors a one-way extension. */
            switch (m->ext_direction[e]) {
            case MEDIA_SDP_SENDONLY:
                dir = "/recvonly";
                break;
            case MEDIA_SDP_RECVONLY:
                dir = "/sendonly";
                break;
            case MEDIA_SDP_INACTIVE:
                continue;
            case MEDIA_SDP_SENDRECV:
                break;
            }
        }
        put(w, "a=extmap:%u%s %s\r\n", m->ext_id[e], dir, extension_uri((enum media_sdp_ext)e));
    }
}

static void put_fingerprint(struct writer *w, const uint8_t fp[32])
{
    put(w, "a=fingerprint:sha-256 ");
    for (unsigned i = 0; i < 32; i++)
        put(w, "%02X%s", fp[i], i + 1 < 32 ? ":" : "\r\n");
}

static void put_accepted(struct writer *w, const struct media_sdp_mline *m,
                         const struct media_sdp_answer_params *p)
{
    bool audio = m->media == MEDIA_SDP_AUDIO;
    put(w, "m=%s 9 UDP/TLS/RTP/SAVPF", audio ? "audio" : "video");
    for (unsigned i = 0; i < m->choice_count; i++) {
        put(w, " %u", m->choices[i].pt);
        if (m->choices[i].rtx_pt >= 0)
            put(w, " %d", m->choices[i].rtx_pt);
    }
    put(w, "\r\nc=IN IP4 0.0.0.0\r\n");
    put(w, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", p->ice_ufrag, p->ice_pwd);
    put_fingerprint(w, p->fingerprint_sha256);
    put(w, "a=setup:passive\r\n");
    put(w, "a=mid:%s\r\n", m->mid);
    enum media_sdp_direction dir = media_sdp_direction_answer(m->direction);
    bool sending = dir == MEDIA_SDP_SENDRECV || dir == MEDIA_SDP_SENDONLY;
    const char *track = audio ? p->audio_track_id : p->video_track_id;
    put(w, "a=%s\r\n", direction_name(dir));
    if (sending)
        put(w, "a=msid:%s %s\r\n", p->stream_id, track);
    put(w, "a=rtcp-mux\r\n");
    put_codecs(w, m);
    put_extmaps(w, m);
    if (sending) {
        uint32_t ssrc = audio ? p->audio_ssrc : p->video_ssrc;
        bool rtx = !audio && m->choices[0].rtx_pt >= 0 && p->video_rtx_ssrc != 0;
        if (rtx)
            put(w, "a=ssrc-group:FID %" PRIu32 " %" PRIu32 "\r\n", ssrc, p->video_rtx_ssrc);
        put(w, "a=ssrc:%" PRIu32 " cname:%s\r\n", ssrc, p->cname);
        put(w, "a=ssrc:%" PRIu32 " msid:%s %s\r\n", ssrc, p->stream_id, track);
        if (rtx) {
            put(w, "a=ssrc:%" PRIu32 " cname:%s\r\n", p->video_rtx_ssrc, p->cname);
            put(w, "a=ssrc:%" PRIu32 " msid:%s %s\r\n", p->video_rtx_ssrc, p->stream_id, track);
        }
    }
    /* ICE-lite: our one host candidate, complete from the start. */
    put(w, "a=candidate:1 1 udp 2130706431 %s %u typ host\r\n", p->public_ip, p->port);
    put(w, "a=end-of-candidates\r\n");
}

int media_sdp_write_answer(const struct media_sdp_offer *offer,
                           const struct media_sdp_answer_params *params, char *buf, size_t cap)
{
    assert(offer && params && (buf || cap == 0));
    if (offer->kind != MEDIA_SDP_OFFER || (offer->audio < 0 && offer->video < 0) ||
        !params_ok(params))
        return MEDIA_SDP_ERR_PARAM;
    struct writer w = {.buf = buf, .cap = cap, .overflow = cap == 0};

    put(&w, "v=0\r\no=- %" PRIu64 " %" PRIu64 " IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        params->session_id, params->session_version);
    put(&w, "a=group:BUNDLE");
    for (unsigned i = 0; i < offer->mline_count; i++)
        if (offer->mlines[i].accepted)
            put(&w, " %s", offer->mlines[i].mid);
    put(&w, "\r\na=ice-lite\r\n");
    if (offer->extmap_allow_mixed)
        put(&w, "a=extmap-allow-mixed\r\n");
    put(&w, "a=msid-semantic: WMS %s\r\n", params->stream_id);
    for (unsigned i = 0; i < offer->mline_count; i++) {
        const struct media_sdp_mline *m = &offer->mlines[i];
        if (m->accepted) {
            put_accepted(&w, m, params);
        } else {
            /* RFC 8829 section 5.3.1: a rejected m-line keeps its media,
             * protocol and a format, with port 0 and its mid. */
            put(&w, "m=%s 0 %s %s\r\nc=IN IP4 0.0.0.0\r\na=mid:%s\r\n", m->media_name, m->proto,
                m->fmt0, m->mid);
        }
    }
    if (w.overflow)
        return MEDIA_SDP_ERR_BUFFER;
    return (int)w.len;
}
