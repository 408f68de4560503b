/*
 * answer.c - from a browser's SDP offer to a leg on a worker and the SDP
 * answer that leads the browser to it. Runs on the signalling thread; the
 * worker learns of the leg through its mailbox, before the answer can reach
 * the browser, so the browser's first ICE check always finds its leg.
 *
 * What is decided here: fresh random ICE credentials (8-character ufrag,
 * 24-character password, RFC 8445 5.3 asks for at least 24 bits and 128
 * bits), the peer's certificate fingerprint the DTLS handshake must match
 * (the strongest hash the offer gives), our SSRCs toward the browser
 * (random, RFC 3550 8), and per kind the payload types, mids and header
 * extension ids the relay will use. The SDP text itself is media/sdp.c's.
 */
#include "leg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define ANSWER_MAX  16384
#define UFRAG_CHARS 8
#define PWD_CHARS   24

static int random_bytes(void *out, size_t n)
{
    return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

/* `n` random ICE characters (ALPHA / DIGIT / '+' / '/') and a NUL. */
static int random_ice_string(char *out, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[64];
    if (n > sizeof(raw) || random_bytes(raw, n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[raw[i] % 64]; /* 64 symbols: no bias */
    out[n] = '\0';
    return 0;
}

/* A random nonzero SSRC different from the ones already taken. */
static uint32_t random_ssrc(const uint32_t *taken, unsigned n)
{
    for (;;) {
        uint32_t v;
        if (random_bytes(&v, sizeof(v)) != 0)
            return 0;
        bool clash = v == 0;
        for (unsigned i = 0; i < n; i++)
            clash = clash || taken[i] == v;
        if (!clash)
            return v;
    }
}

/* The fingerprint the handshake must match: SHA-512 over SHA-384 over SHA-256. */
static void pick_fingerprint(const struct media_sdp_transport *t,
                             struct media_dtls_fingerprint *out)
{
    const struct media_sdp_fingerprint *best = &t->fingerprints[0];
    for (unsigned i = 1; i < t->fingerprint_count; i++)
        if (t->fingerprints[i].hash > best->hash)
            best = &t->fingerprints[i];
    switch (best->hash) {
    case MEDIA_SDP_SHA512:
        out->hash = MEDIA_DTLS_SHA512;
        break;
    case MEDIA_SDP_SHA384:
        out->hash = MEDIA_DTLS_SHA384;
        break;
    default:
        out->hash = MEDIA_DTLS_SHA256;
        break;
    }
    out->len = best->len;
    memcpy(out->bytes, best->bytes, best->len);
}

static bool direction_sends(enum media_sdp_direction d)
{
    return d == MEDIA_SDP_SENDRECV || d == MEDIA_SDP_SENDONLY;
}

static bool direction_receives(enum media_sdp_direction d)
{
    return d == MEDIA_SDP_SENDRECV || d == MEDIA_SDP_RECVONLY;
}

/* The browser's primary SSRC on an m-line: the first one not an RTX of a FID group. */
static uint32_t offered_primary_ssrc(const struct media_sdp_mline *m)
{
    for (unsigned i = 0; i < m->ssrc_count; i++) {
        bool is_rtx = false;
        for (unsigned f = 0; f < m->fid_count; f++)
            is_rtx = is_rtx || m->fids[f].rtx == m->ssrcs[i].ssrc;
        if (!is_rtx)
            return m->ssrcs[i].ssrc;
    }
    return 0;
}

static void setup_stream(const struct media_sdp_mline *m, struct leg_stream_setup *s)
{
    s->active = true;
    s->browser_sends = direction_sends(m->direction);
    s->browser_receives = direction_receives(m->direction);
    s->codec_count = m->choice_count;
    for (unsigned i = 0; i < m->choice_count && i < 2; i++) {
        s->codecs[i] = m->choices[i].codec;
        s->pts[i] = m->choices[i].pt;
    }
    s->rtx_pt = m->choice_count ? m->choices[0].rtx_pt : -1;
    s->clock_rate = m->media == MEDIA_SDP_AUDIO ? 48000 : 90000;
    s->offered_ssrc = offered_primary_ssrc(m);
    snprintf(s->mid, sizeof(s->mid), "%s", m->mid);
}

/* Fills everything of a leg's set-up that the offer decides. */
static int setup_from_offer(const struct media_sdp_offer *offer, struct leg_setup *setup)
{
    pick_fingerprint(&offer->transport, &setup->remote_fingerprint);
    setup->has_fingerprint = true;
    snprintf(setup->ice.remote_ufrag, sizeof(setup->ice.remote_ufrag), "%s",
             offer->transport.ice_ufrag);
    int index[LEG_KIND_COUNT] = {[LEG_AUDIO] = offer->audio, [LEG_VIDEO] = offer->video};
    uint32_t taken[3 * LEG_KIND_COUNT];
    unsigned n_taken = 0;
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++)
        if (index[k] >= 0) {
            uint32_t offered = offered_primary_ssrc(&offer->mlines[index[k]]);
            if (offered)
                taken[n_taken++] = offered;
        }
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        if (index[k] < 0)
            continue;
        const struct media_sdp_mline *m = &offer->mlines[index[k]];
        struct leg_stream_setup *s = &setup->streams[k];
        setup_stream(m, s);
        s->out_ssrc = random_ssrc(taken, n_taken);
        taken[n_taken++] = s->out_ssrc;
        if (k == LEG_VIDEO && s->rtx_pt >= 0) {
            s->out_rtx_ssrc = random_ssrc(taken, n_taken);
            taken[n_taken++] = s->out_rtx_ssrc;
        }
        if (!s->out_ssrc || (k == LEG_VIDEO && s->rtx_pt >= 0 && !s->out_rtx_ssrc))
            return -1;
        /* BUNDLE makes an extension's id the same on every m-line (RFC 8843 9.2). */
        for (unsigned e = 0; e < MEDIA_SDP_EXT_COUNT; e++)
            if (!setup->ext_id[e])
                setup->ext_id[e] = m->ext_id[e];
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* What the signalling side keeps of each leg                                 */
/* ------------------------------------------------------------------------- */

static struct leg_record *record_find(struct leg_records *r, uint64_t id)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->items[i].id == id)
            return &r->items[i];
    return NULL;
}

static int record_keep(struct leg_records *r, uint64_t id, unsigned worker,
                       const struct leg_setup *setup)
{
    struct leg_record *rec = record_find(r, id);
    if (!rec) {
        if (r->count == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 64;
            struct leg_record *items = realloc(r->items, cap * sizeof(*items));
            if (!items)
                return -ENOMEM;
            r->items = items;
            r->cap = cap;
        }
        rec = &r->items[r->count++];
    }
    rec->id = id;
    rec->worker = worker;
    rec->setup = *setup;
    return 0;
}

void leg_records_forget(struct leg_records *r, uint64_t id)
{
    struct leg_record *rec = record_find(r, id);
    if (rec)
        *rec = r->items[--r->count]; /* order does not matter */
}

void leg_records_free(struct leg_records *r)
{
    free(r->items);
    memset(r, 0, sizeof(*r));
}

static bool same_fingerprint(const struct media_dtls_fingerprint *a,
                             const struct media_dtls_fingerprint *b)
{
    return a->hash == b->hash && a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

/*
 * The same browser connection offers again (its certificate did not change):
 * keep our ICE credentials unless it restarts ICE (a new ufrag of its own),
 * and our SSRCs, so that DTLS, SRTP and every stream simply go on.
 */
static void carry_over(const struct leg_record *previous, struct leg_setup *setup)
{
    bool restart = strcmp(previous->setup.ice.remote_ufrag, setup->ice.remote_ufrag) != 0;
    if (!restart) {
        memcpy(setup->ice.local_ufrag, previous->setup.ice.local_ufrag,
               sizeof(setup->ice.local_ufrag));
        memcpy(setup->ice.local_pwd, previous->setup.ice.local_pwd, sizeof(setup->ice.local_pwd));
    }
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        const struct leg_stream_setup *was = &previous->setup.streams[k];
        struct leg_stream_setup *now = &setup->streams[k];
        if (was->out_ssrc)
            now->out_ssrc = was->out_ssrc;
        if (was->out_rtx_ssrc && now->rtx_pt >= 0)
            now->out_rtx_ssrc = was->out_rtx_ssrc;
    }
}

int media_engine_answer_offer(struct media_engine *e, unsigned index, const char *sdp, size_t len,
                              uint64_t replaces, uint64_t *leg_id, char **answer, char *err,
                              size_t errlen)
{
    *answer = NULL;
    *leg_id = 0;
    if (index >= media_engine_worker_count(e)) {
        snprintf(err, errlen, "no media worker %u", index);
        return -EINVAL;
    }
    struct leg_records *records = media_engine_records(e);
    struct media_sdp_offer *offer = malloc(sizeof(*offer)); /* ~72 KiB: not on the stack */
    struct leg_setup *setup = calloc(1, sizeof(*setup));
    char *text = malloc(ANSWER_MAX);
    int rc = -ENOMEM;
    if (!offer || !setup || !text) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    struct media_sdp_error perr;
    if (media_sdp_parse(sdp, len, MEDIA_SDP_OFFER, offer, &perr) != MEDIA_SDP_OK) {
        snprintf(err, errlen, "%s", perr.message[0] ? perr.message : media_sdp_strerror(perr.code));
        rc = -EINVAL;
        goto out;
    }
    if (random_ice_string(setup->ice.local_ufrag, UFRAG_CHARS) != 0 ||
        random_ice_string(setup->ice.local_pwd, PWD_CHARS) != 0 ||
        setup_from_offer(offer, setup) != 0) {
        snprintf(err, errlen, "no randomness for the ICE credentials");
        rc = -EAGAIN;
        goto out;
    }
    const struct leg_record *previous = replaces ? record_find(records, replaces) : NULL;
    /* In place only where the hub wants the leg: a doctor asked to re-offer for a patient
     * on another worker gets a new leg there (from a new RTCPeerConnection). */
    bool in_place =
        previous && previous->worker == index &&
        same_fingerprint(&previous->setup.remote_fingerprint, &setup->remote_fingerprint);
    uint64_t id;
    if (in_place) {
        bool restart = strcmp(previous->setup.ice.remote_ufrag, setup->ice.remote_ufrag) != 0;
        carry_over(previous, setup);
        id = replaces;
        records->ice_restarts += restart;
    } else {
        id = media_engine_new_leg_id(e, index);
    }
    setup->ice.leg_id = id;
    char cname[24], stream_id[32], audio_track[40], video_track[40];
    snprintf(cname, sizeof(cname), "tabib-%" PRIx64, id);
    snprintf(stream_id, sizeof(stream_id), "tabib-%" PRIx64, id);
    snprintf(audio_track, sizeof(audio_track), "%s-audio", stream_id);
    snprintf(video_track, sizeof(video_track), "%s-video", stream_id);
    uint64_t session_id;
    if (random_bytes(&session_id, sizeof(session_id)) != 0)
        session_id = id;
    struct media_sdp_answer_params params = {
        .ice_ufrag = setup->ice.local_ufrag,
        .ice_pwd = setup->ice.local_pwd,
        .public_ip = media_engine_public_ip(e),
        .port = media_engine_worker_port(e, index),
        .session_id = session_id >> 1, /* below 2^63 */
        .session_version = 1,
        .cname = cname,
        .stream_id = stream_id,
        .audio_track_id = audio_track,
        .video_track_id = video_track,
        .audio_ssrc = setup->streams[LEG_AUDIO].out_ssrc,
        .video_ssrc = setup->streams[LEG_VIDEO].out_ssrc,
        .video_rtx_ssrc = setup->streams[LEG_VIDEO].out_rtx_ssrc,
    };
    memcpy(params.fingerprint_sha256, media_engine_worker_fingerprint(e, index), 32);
    int n = media_sdp_write_answer(offer, &params, text, ANSWER_MAX);
    if (n < 0) {
        snprintf(err, errlen, "cannot write the answer: %s", media_sdp_strerror(n));
        rc = -EINVAL;
        goto out;
    }
    if (record_keep(records, id, index, setup) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    /* Both take `setup`, also on failure. */
    rc = in_place ? media_engine_push_leg_update(e, index, setup)
                  : media_engine_push_leg(e, index, setup);
    setup = NULL;
    if (rc != 0) {
        if (!in_place)
            leg_records_forget(records, id);
        snprintf(err, errlen, "the media worker is overloaded; try again");
        goto out;
    }
    *leg_id = id;
    *answer = text;
    text = NULL;
out:
    free(offer);
    free(setup);
    free(text);
    return rc;
}
