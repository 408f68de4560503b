/*
 * test_sdp.c - SDP offers from real browsers (sdp_offers.h), the answers we
 * write for them read back with our own parser, and every kind of offer the
 * server must refuse, each refusal naming its line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sdp.h"
#include "sdp_offers.h"

#define TEXT_CAP (MEDIA_SDP_MAX_SIZE + 16384)

struct fixture {
    struct media_sdp_offer offer;
    struct media_sdp_offer back;
    struct media_sdp_error err;
    char answer[MEDIA_SDP_MAX_SIZE];
    char text[TEXT_CAP];
    char text2[TEXT_CAP];
};

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fixture));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static const struct media_sdp_answer_params params = {
    .ice_ufrag = "Tbb1",
    .ice_pwd = "a1b2c3d4e5f6a7b8c9d0e1f2",
    .fingerprint_sha256 = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
                           0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                           0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
    .public_ip = "203.0.113.7",
    .port = 40000,
    .session_id = 4242,
    .session_version = 7,
    .cname = "tabib-cname",
    .stream_id = "tabib",
    .audio_track_id = "tabib-audio",
    .video_track_id = "tabib-video",
    .audio_ssrc = 1111,
    .video_ssrc = 2222,
    .video_rtx_ssrc = 3333,
};

#define FP_LINE                                                                                    \
    "a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:"  \
    "EF:01:23:45:67:89:AB:CD:EF\r\n"

/* ---- helpers -------------------------------------------------------------- */

static const struct media_sdp_offer *parse_ok(struct fixture *f, const char *sdp)
{
    int rc = media_sdp_parse(sdp, strlen(sdp), MEDIA_SDP_OFFER, &f->offer, &f->err);
    if (rc != 0)
        fail_msg("offer refused (%d): %s", rc, f->err.message);
    assert_int_equal(f->err.code, 0);
    return &f->offer;
}

static void expect_refused(struct fixture *f, const char *sdp, int code, const char *in_message)
{
    int rc = media_sdp_parse(sdp, strlen(sdp), MEDIA_SDP_OFFER, &f->offer, &f->err);
    if (rc != code)
        fail_msg("expected %d (%s), got %d: %s", code, media_sdp_strerror(code), rc,
                 f->err.message);
    assert_int_equal(f->err.code, code);
    if (in_message && !strstr(f->err.message, in_message))
        fail_msg("message \"%s\" does not mention \"%s\"", f->err.message, in_message);
    assert_int_equal(f->offer.audio, -1);
    assert_int_equal(f->offer.video, -1);
}

/* Copies `src` into `dst` with every `from` replaced by `to` (at least one). */
static const char *replace(char *dst, const char *src, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to), len = 0;
    unsigned count = 0;
    for (const char *p = src; *p;) {
        if (strncmp(p, from, nf) == 0) {
            assert_true(len + nt < TEXT_CAP);
            memcpy(dst + len, to, nt);
            len += nt;
            p += nf;
            count++;
        } else {
            assert_true(len + 1 < TEXT_CAP);
            dst[len++] = *p++;
        }
    }
    dst[len] = '\0';
    if (count == 0)
        fail_msg("\"%s\" not found", from);
    return dst;
}

/* The 1-based number of the line that starts with `prefix`. */
static unsigned line_of(const char *sdp, const char *prefix)
{
    unsigned n = 1;
    for (const char *p = sdp; *p; n++) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return n;
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    fail_msg("no line starts with \"%s\"", prefix);
    return 0;
}

/* A small offer of our own, for refusals the real ones do not show. */
static const char *small_offer(char *dst, const char *audio_m, const char *audio_attrs,
                               const char *video_m, const char *video_attrs)
{
    static const char transport[] =
        "c=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:abcd\r\n"
        "a=ice-pwd:abcdefghijklmnopqrstuv\r\n" FP_LINE "a=setup:actpass\r\n"
        "a=rtcp-mux\r\n";
    int n = snprintf(dst, TEXT_CAP,
                     "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0%s\r\n"
                     "m=audio 9 UDP/TLS/RTP/SAVPF %s\r\n%sa=mid:0\r\n%s",
                     video_m ? " 1" : "", audio_m, transport, audio_attrs);
    if (video_m)
        snprintf(dst + n, TEXT_CAP - (size_t)n, "m=video 9 UDP/TLS/RTP/SAVPF %s\r\n%sa=mid:1\r\n%s",
                 video_m, transport, video_attrs);
    return dst;
}

static const struct media_sdp_codec *codec(const struct media_sdp_mline *m, unsigned pt)
{
    for (unsigned i = 0; i < m->codec_count; i++)
        if (m->codecs[i].pt == pt)
            return &m->codecs[i];
    fail_msg("payload type %u not in m-line %s", pt, m->mid);
    return NULL;
}

static void expect_choice(const struct media_sdp_mline *m, unsigned i, enum media_sdp_codec_id id,
                          unsigned pt, int rtx)
{
    assert_true(i < m->choice_count);
    assert_int_equal(m->choices[i].codec, id);
    assert_int_equal(m->choices[i].pt, pt);
    assert_int_equal(m->choices[i].rtx_pt, rtx);
}

static void expect_fingerprint(const struct media_sdp_fingerprint *fp, const char *hex)
{
    assert_int_equal(fp->hash, MEDIA_SDP_SHA256);
    assert_int_equal(fp->len, 32);
    for (unsigned i = 0; i < 32; i++) {
        unsigned byte;
        assert_int_equal(sscanf(hex + i * 3, "%2x", &byte), 1);
        assert_int_equal(fp->bytes[i], byte);
    }
}

/* Writes the answer to the parsed offer and reads it back as an answer. */
static const char *answer_and_read_back(struct fixture *f)
{
    int len = media_sdp_write_answer(&f->offer, &params, f->answer, sizeof(f->answer));
    if (len < 0)
        fail_msg("answer not written: %s", media_sdp_strerror(len));
    assert_int_equal((size_t)len, strlen(f->answer));
    int rc = media_sdp_parse(f->answer, (size_t)len, MEDIA_SDP_ANSWER, &f->back, &f->err);
    if (rc != 0)
        fail_msg("our answer does not parse: %s\n%s", f->err.message, f->answer);
    /* CRLF everywhere, no bare LF or CR. */
    for (int i = 0; i < len; i++) {
        if (f->answer[i] == '\n')
            assert_true(i > 0 && f->answer[i - 1] == '\r');
        if (f->answer[i] == '\r')
            assert_true(f->answer[i + 1] == '\n');
    }
    assert_true(f->back.ice_lite);
    assert_int_equal(f->back.transport.setup, MEDIA_SDP_SETUP_PASSIVE);
    assert_string_equal(f->back.transport.ice_ufrag, params.ice_ufrag);
    assert_string_equal(f->back.transport.ice_pwd, params.ice_pwd);
    assert_memory_equal(f->back.transport.fingerprints[0].bytes, params.fingerprint_sha256, 32);
    assert_int_equal(f->back.mline_count, f->offer.mline_count);
    assert_int_equal(f->back.audio, f->offer.audio);
    assert_int_equal(f->back.video, f->offer.video);
    for (unsigned i = 0; i < f->offer.mline_count; i++) {
        const struct media_sdp_mline *o = &f->offer.mlines[i], *a = &f->back.mlines[i];
        assert_string_equal(o->mid, a->mid);
        assert_int_equal(o->accepted, a->accepted);
        assert_int_equal(a->port, o->accepted ? 9 : 0);
        if (!o->accepted)
            continue;
        assert_int_equal(a->direction, media_sdp_direction_answer(o->direction));
        assert_int_equal(a->choice_count, o->choice_count);
        for (unsigned c = 0; c < o->choice_count; c++)
            expect_choice(a, c, o->choices[c].codec, o->choices[c].pt, o->choices[c].rtx_pt);
        assert_int_equal(a->candidate_count, 1);
        assert_true(a->end_of_candidates);
    }
    return f->answer;
}

/* ---- the real offers ------------------------------------------------------ */

static void chrome_android_with_data_channel(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_chrome_android);
    assert_int_equal(o->mline_count, 3);
    assert_int_equal(o->bundle_count, 3);
    assert_string_equal(o->bundle[0], "0");
    assert_string_equal(o->bundle[2], "2");
    assert_string_equal(o->transport.ice_ufrag, "Wafl");
    assert_string_equal(o->transport.ice_pwd, "IS933a+6pookL48tYXASXnwW");
    assert_true(o->transport.ice_trickle);
    assert_int_equal(o->transport.setup, MEDIA_SDP_SETUP_ACTPASS);
    assert_int_equal(o->transport.fingerprint_count, 1);
    expect_fingerprint(&o->transport.fingerprints[0], "49:3C:77:6E:6B:2B:90:69:00:AE:47:4A:87:A7:"
                                                      "F4:F6:F0:B3:6D:D6:FA:7F:84:DD:A5:6E:6E:2E:"
                                                      "1F:64:D7:7F");
    assert_false(o->ice_lite);
    assert_int_equal(o->audio, 0);
    assert_int_equal(o->video, 1);

    const struct media_sdp_mline *a = &o->mlines[0];
    assert_int_equal(a->media, MEDIA_SDP_AUDIO);
    assert_string_equal(a->mid, "0");
    assert_int_equal(a->port, 9);
    assert_true(a->rtp && a->rtcp_mux && a->accepted);
    assert_int_equal(a->direction, MEDIA_SDP_SENDRECV);
    assert_int_equal(a->codec_count, 10);
    const struct media_sdp_codec *opus = codec(a, 111);
    assert_int_equal(opus->id, MEDIA_SDP_CODEC_OPUS);
    assert_int_equal(opus->clock_rate, 48000);
    assert_int_equal(opus->channels, 2);
    assert_int_equal(opus->minptime, 10);
    assert_int_equal(opus->useinbandfec, 1);
    assert_int_equal(opus->fb, MEDIA_SDP_FB_TRANSPORT_CC);
    assert_string_equal(codec(a, 0)->name, "PCMU");
    assert_string_equal(codec(a, 126)->name, "telephone-event");
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 111, -1);
    assert_int_equal(a->choice_count, 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME], 2);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], 3);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_MID], 4);
    assert_int_equal(a->extmap_count, 6);
    assert_int_equal(a->extmaps[4].ext, MEDIA_SDP_EXT_OTHER);
    assert_string_equal(a->extmaps[4].uri, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id");
    assert_string_equal(a->msid_stream, "3CXV4snScv28Bl5Ltn7V4StSDzTGKOnaaAdf");
    assert_string_equal(a->msid_track, "f94c5ff6-26b9-4315-815d-40b4dd2efdef");
    assert_int_equal(a->ssrc_count, 1);
    assert_int_equal(a->ssrcs[0].ssrc, 2261433415u);
    assert_string_equal(a->ssrcs[0].cname, "5L7rDchCDtUnZEok");
    assert_string_equal(a->ssrcs[0].msid_track, "f94c5ff6-26b9-4315-815d-40b4dd2efdef");
    assert_int_equal(a->candidate_count, 0);

    const struct media_sdp_mline *v = &o->mlines[1];
    assert_int_equal(v->media, MEDIA_SDP_VIDEO);
    assert_int_equal(v->direction, MEDIA_SDP_RECVONLY);
    assert_true(v->rtcp_rsize);
    assert_int_equal(v->codec_count, 17);
    expect_choice(v, 0, MEDIA_SDP_CODEC_VP8, 96, 97);
    /* 104 is Baseline 420015; 106 (Main) and 108 (High) are passed over. */
    expect_choice(v, 1, MEDIA_SDP_CODEC_H264, 104, 122);
    assert_int_equal(codec(v, 104)->profile_level_id, 0x420015);
    assert_int_equal(codec(v, 104)->packetization_mode, 1);
    assert_int_equal(codec(v, 104)->level_asymmetry_allowed, 1);
    assert_int_equal(codec(v, 97)->apt, 96);
    assert_int_equal(codec(v, 96)->fb, MEDIA_SDP_FB_NACK | MEDIA_SDP_FB_NACK_PLI |
                                           MEDIA_SDP_FB_CCM_FIR | MEDIA_SDP_FB_GOOG_REMB |
                                           MEDIA_SDP_FB_TRANSPORT_CC);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_MID], 4);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME], 2);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], 3);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], 0);
    assert_int_equal(v->extmap_count, 11);
    assert_int_equal(v->ssrc_count, 0);

    const struct media_sdp_mline *d = &o->mlines[2];
    assert_int_equal(d->media, MEDIA_SDP_APPLICATION);
    assert_string_equal(d->mid, "2");
    assert_false(d->accepted);
    assert_string_equal(d->proto, "UDP/DTLS/SCTP");
    assert_string_equal(d->fmt0, "webrtc-datachannel");
}

static void chrome_120_audio_video(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_chrome_120);
    assert_true(o->extmap_allow_mixed);
    assert_string_equal(o->transport.ice_ufrag, "nWnq");
    expect_fingerprint(&o->transport.fingerprints[0], "A4:67:3A:52:5C:D4:9C:65:45:9D:61:43:B2:EC:"
                                                      "31:E8:42:4E:EC:54:C9:70:E3:89:28:94:3E:5C:"
                                                      "3C:ED:FC:64");
    const struct media_sdp_mline *a = &o->mlines[0], *v = &o->mlines[1];
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 111, -1);
    assert_string_equal(codec(a, 63)->name, "red");
    assert_string_equal(a->msid_stream, "-");
    assert_int_equal(a->ssrcs[0].ssrc, 3262661846u);
    assert_string_equal(a->ssrcs[0].cname, "yFbnkIWTHwPXy6MO");
    expect_choice(v, 0, MEDIA_SDP_CODEC_VP8, 96, 97);
    expect_choice(v, 1, MEDIA_SDP_CODEC_H264, 102, 103); /* 42001f, the first with mode 1 */
    assert_int_equal(v->ssrc_count, 2);
    assert_int_equal(v->fid_count, 1);
    assert_int_equal(v->fids[0].primary, 1862494604u);
    assert_int_equal(v->fids[0].rtx, 1112104850u);
    assert_string_equal(v->ssrcs[1].msid_track, "0a874693-9ca3-44a4-8c95-d8f2e26a7179");
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_MID], 4);
    assert_int_equal(v->extmaps[0].id, 14);
    assert_string_equal(v->extmaps[0].uri, "urn:ietf:params:rtp-hdrext:toffset");
}

static void chrome_2025_with_42_payload_types(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_chrome_2025);
    const struct media_sdp_mline *v = &o->mlines[0], *a = &o->mlines[1];
    assert_int_equal(o->video, 0);
    assert_int_equal(o->audio, 1);
    assert_int_equal(v->port, 39224);
    assert_int_equal(v->codec_count, 42);
    assert_int_equal(v->candidate_count, 4);
    assert_int_equal(a->candidate_count, 4);
    assert_false(v->end_of_candidates);
    assert_int_equal(v->direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(codec(v, 49)->id, MEDIA_SDP_CODEC_OTHER);
    assert_string_equal(codec(v, 49)->name, "H265");
    assert_string_equal(codec(v, 45)->name, "AV1");
    expect_choice(v, 0, MEDIA_SDP_CODEC_VP8, 96, 97);
    expect_choice(v, 1, MEDIA_SDP_CODEC_H264, 103, 104);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_MID], 9);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], 4);
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 111, -1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], 14);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_MID], 9);
    assert_string_equal(o->transport.ice_pwd, "CQ7SY9kDBVBiofWGhjL2nEeT");
}

static void firefox_121_session_level_fingerprint(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_firefox_121);
    assert_int_equal(o->session.fingerprint_count, 1);
    assert_int_equal(o->mlines[0].transport.fingerprint_count, 0);
    expect_fingerprint(&o->transport.fingerprints[0], "75:4F:CA:8F:4F:E4:CE:5E:67:42:D3:DA:0E:E1:"
                                                      "87:2A:E5:E3:02:76:30:FC:AB:F0:B4:7E:24:71:"
                                                      "18:38:9C:6E");
    assert_string_equal(o->transport.ice_ufrag, "6c0579ea");
    assert_string_equal(o->transport.ice_pwd, "59efe498b762e472067fa5e134df8722");
    assert_true(o->transport.ice_trickle); /* session-level ice-options */

    const struct media_sdp_mline *a = &o->mlines[0], *v = &o->mlines[1];
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 109, -1);
    assert_int_equal(codec(a, 109)->minptime, -1);
    assert_int_equal(codec(a, 109)->useinbandfec, 1);
    assert_int_equal(codec(a, 9)->channels, 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_MID], 3);
    assert_int_equal(a->extmaps[1].id, 2);
    assert_true(a->extmaps[1].has_direction);
    assert_int_equal(a->extmaps[1].direction, MEDIA_SDP_RECVONLY);
    assert_string_equal(a->msid_stream, "-");
    assert_string_equal(a->msid_track, "{ba72adfe-d5b5-42bd-bf15-e8fcdcbb2ee1}");
    assert_int_equal(a->ssrcs[0].ssrc, 3772375965u);
    assert_string_equal(a->ssrcs[0].cname, "{b11da7a1-56f4-4fc1-a969-6d82236f494d}");

    expect_choice(v, 0, MEDIA_SDP_CODEC_VP8, 120, 124);
    /* 97 is H.264 without packetization-mode (so 0): 126 is chosen. */
    expect_choice(v, 1, MEDIA_SDP_CODEC_H264, 126, 127);
    assert_int_equal(codec(v, 97)->packetization_mode, 0);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_MID], 3);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME], 4);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], 7);
    assert_int_equal(v->fid_count, 1);
    assert_int_equal(v->fids[0].primary, 7463831u);
    assert_int_equal(v->fids[0].rtx, 2513307155u);
    assert_int_equal(codec(v, 126)->fb & MEDIA_SDP_FB_NACK_PLI, MEDIA_SDP_FB_NACK_PLI);
}

static void firefox_82_with_data_channel(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_firefox_82);
    assert_int_equal(o->video, 0);
    assert_int_equal(o->audio, 1);
    assert_int_equal(o->mlines[0].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[1].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[2].media, MEDIA_SDP_APPLICATION);
    assert_false(o->mlines[2].accepted);
    assert_string_equal(o->transport.ice_ufrag, "6a957b4a");
    expect_choice(&o->mlines[1], 0, MEDIA_SDP_CODEC_OPUS, 109, -1);
}

static void safari_prefers_vp8_and_skips_high_profile(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_safari);
    const struct media_sdp_mline *v = &o->mlines[0], *a = &o->mlines[1];
    assert_int_equal(codec(v, 96)->profile_level_id, 0x640c1f);
    expect_choice(v, 0, MEDIA_SDP_CODEC_VP8, 100, 101);
    expect_choice(v, 1, MEDIA_SDP_CODEC_H264, 98, 99);
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 111, -1);
    assert_int_equal(a->ssrcs[0].ssrc, 2805193976u);
    assert_string_equal(a->ssrcs[0].cname, "7QoBnlnTDjko/niB");
    assert_string_equal(o->transport.ice_ufrag, "tPim");
}

static void obs_h264_only(void **state)
{
    struct fixture *f = *state;
    const struct media_sdp_offer *o = parse_ok(f, sdp_obs_whip);
    assert_string_equal(o->transport.ice_ufrag, "v3f/");
    assert_string_equal(o->transport.ice_pwd, "4b+Ogzsq+Xx0AEkYvTvG/n");
    assert_int_equal(o->transport.setup, MEDIA_SDP_SETUP_ACTPASS);
    const struct media_sdp_mline *a = &o->mlines[0], *v = &o->mlines[1];
    expect_choice(a, 0, MEDIA_SDP_CODEC_OPUS, 111, -1); /* "OPUS" */
    assert_int_equal(a->candidate_count, 3);
    assert_true(a->end_of_candidates);
    assert_int_equal(v->choice_count, 1);
    expect_choice(v, 0, MEDIA_SDP_CODEC_H264, 96, -1);
    assert_int_equal(v->direction, MEDIA_SDP_SENDONLY);
}

/* ---- answers -------------------------------------------------------------- */

static void answer_to_chrome_android(void **state)
{
    struct fixture *f = *state;
    parse_ok(f, sdp_chrome_android);
    const char *answer = answer_and_read_back(f);
#define ICE_DTLS                                                                                   \
    "c=IN IP4 0.0.0.0\r\n"                                                                         \
    "a=ice-ufrag:Tbb1\r\n"                                                                         \
    "a=ice-pwd:a1b2c3d4e5f6a7b8c9d0e1f2\r\n" FP_LINE "a=setup:passive\r\n"
#define FB(pt)                                                                                     \
    "a=rtcp-fb:" pt " goog-remb\r\n"                                                               \
    "a=rtcp-fb:" pt " transport-cc\r\n"                                                            \
    "a=rtcp-fb:" pt " ccm fir\r\n"                                                                 \
    "a=rtcp-fb:" pt " nack\r\n"                                                                    \
    "a=rtcp-fb:" pt " nack pli\r\n"
#define CANDIDATE                                                                                  \
    "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host\r\n"                                \
    "a=end-of-candidates\r\n"
    static const char expected[] =
        "v=0\r\n"
        "o=- 4242 7 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "t=0 0\r\n"
        "a=group:BUNDLE 0 1\r\n"
        "a=ice-lite\r\n"
        "a=msid-semantic: WMS tabib\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" ICE_DTLS "a=mid:0\r\n"
        "a=sendrecv\r\n"
        "a=msid:tabib tabib-audio\r\n"
        "a=rtcp-mux\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=rtcp-fb:111 transport-cc\r\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
        "a=ssrc:1111 cname:tabib-cname\r\n"
        "a=ssrc:1111 msid:tabib tabib-audio\r\n" CANDIDATE
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 104 122\r\n" ICE_DTLS "a=mid:1\r\n"
        "a=sendonly\r\n"
        "a=msid:tabib tabib-video\r\n"
        "a=rtcp-mux\r\n"
        "a=rtpmap:96 VP8/90000\r\n" FB(
            "96") "a=rtpmap:97 rtx/90000\r\n"
                  "a=fmtp:97 apt=96\r\n"
                  "a=rtpmap:104 H264/90000\r\n" FB(
                      "104") "a=fmtp:104 "
                             "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id="
                             "420015\r\n"
                             "a=rtpmap:122 rtx/90000\r\n"
                             "a=fmtp:122 apt=104\r\n"
                             "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
                             "a=extmap:2 "
                             "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
                             "a=extmap:3 "
                             "http://www.ietf.org/id/"
                             "draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
                             "a=ssrc-group:FID 2222 3333\r\n"
                             "a=ssrc:2222 cname:tabib-cname\r\n"
                             "a=ssrc:2222 msid:tabib tabib-video\r\n"
                             "a=ssrc:3333 cname:tabib-cname\r\n"
                             "a=ssrc:3333 msid:tabib tabib-video\r\n" CANDIDATE
                             "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"
                             "c=IN IP4 0.0.0.0\r\n"
                             "a=mid:2\r\n";
    /* Line by line, so that a difference names the line. */
    const char *e = expected, *a = answer;
    for (unsigned line = 1; *e || *a; line++) {
        size_t ne = strcspn(e, "\n"), na = strcspn(a, "\n");
        if (ne != na || memcmp(e, a, ne) != 0)
            fail_msg("answer line %u: expected \"%.*s\", got \"%.*s\"", line, (int)ne, e, (int)na,
                     a);
        e += ne + (e[ne] != 0);
        a += na + (a[na] != 0);
    }
}

static void answers_to_every_offer_read_back(void **state)
{
    struct fixture *f = *state;
    const char *offers[] = {sdp_chrome_android, sdp_chrome_120, sdp_chrome_2025, sdp_firefox_121,
                            sdp_firefox_82,     sdp_safari,     sdp_obs_whip};
    for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
        parse_ok(f, offers[i]);
        answer_and_read_back(f);
    }
}

static void answer_mirrors_directions(void **state)
{
    struct fixture *f = *state;
    /* OBS only sends: we only receive, so no a=ssrc and no a=msid of ours. */
    parse_ok(f, sdp_obs_whip);
    const char *answer = answer_and_read_back(f);
    assert_int_equal(f->back.mlines[0].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(f->back.mlines[1].direction, MEDIA_SDP_RECVONLY);
    assert_null(strstr(answer, "a=ssrc:"));
    assert_null(strstr(answer, "a=msid:"));
    assert_non_null(strstr(answer, "a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;"
                                   "profile-level-id=42e01f\r\n"));

    /* Chrome 2025 only receives: we send both, with our SSRCs. */
    parse_ok(f, sdp_chrome_2025);
    answer = answer_and_read_back(f);
    assert_int_equal(f->back.mlines[0].direction, MEDIA_SDP_SENDONLY);
    assert_int_equal(f->back.mlines[1].ssrcs[0].ssrc, 1111);
    assert_int_equal(f->back.mlines[0].fids[0].rtx, 3333);
    assert_non_null(strstr(answer, "a=extmap-allow-mixed\r\n"));

    /* inactive stays inactive. */
    parse_ok(f, replace(f->text, sdp_chrome_120, "a=sendrecv\r\na=msid:- 0657",
                        "a=inactive\r\na=msid:- 0657"));
    answer_and_read_back(f);
    assert_int_equal(f->back.mlines[0].direction, MEDIA_SDP_INACTIVE);
    assert_int_equal(f->back.mlines[0].ssrc_count, 0);
}

static void answer_mirrors_one_way_extensions(void **state)
{
    struct fixture *f = *state;
    parse_ok(f, replace(f->text, sdp_firefox_121, "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
                        "a=extmap:3/sendonly urn:ietf:params:rtp-hdrext:sdes:mid"));
    const char *answer = answer_and_read_back(f);
    assert_non_null(strstr(answer, "a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:sdes:mid\r\n"));
    /* Firefox's playout-delay (6/recvonly) is not one we use. */
    assert_null(strstr(answer, "a=extmap:6"));
}

static void audio_only_and_extra_m_lines(void **state)
{
    struct fixture *f = *state;
    /* Audio only: the video m-line cut off, the BUNDLE group fixed. */
    strcpy(f->text2, sdp_chrome_120);
    *strstr(f->text2, "m=video") = '\0';
    const struct media_sdp_offer *o =
        parse_ok(f, replace(f->text, f->text2, "a=group:BUNDLE 0 1", "a=group:BUNDLE 0"));
    assert_int_equal(o->audio, 0);
    assert_int_equal(o->video, -1);
    answer_and_read_back(f);

    /* A second audio m-line: answered with port 0, left out of BUNDLE. */
    strcpy(f->text2, sdp_chrome_120);
    const char *audio = strstr(sdp_chrome_120, "m=audio");
    size_t audio_len = (size_t)(strstr(sdp_chrome_120, "m=video") - audio);
    size_t end = strlen(f->text2);
    memcpy(f->text2 + end, audio, audio_len);
    f->text2[end + audio_len] = '\0';
    replace(f->text, f->text2, "a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2");
    char *second_mid = strstr(strstr(f->text, "a=ssrc:3262661846 msid") + 1, "a=mid:0");
    second_mid[6] = '2';
    o = parse_ok(f, f->text);
    assert_int_equal(o->mline_count, 3);
    assert_true(o->mlines[0].accepted);
    assert_false(o->mlines[2].accepted);
    const char *answer = answer_and_read_back(f);
    assert_non_null(strstr(answer, "a=group:BUNDLE 0 1\r\n"));
    assert_non_null(strstr(answer, "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
                                   "a=mid:2\r\n"));

    /* An m-line the offerer itself rejected (port 0, outside BUNDLE). */
    o = parse_ok(f, replace(f->text2, sdp_firefox_82, "m=application 9", "m=application 0"));
    assert_false(o->mlines[2].accepted);
    answer_and_read_back(f);
}

static void lf_line_ends_and_blank_lines(void **state)
{
    struct fixture *f = *state;
    parse_ok(f, replace(f->text, sdp_safari, "\r\n", "\n"));
    expect_choice(&f->offer.mlines[0], 0, MEDIA_SDP_CODEC_VP8, 100, 101);
    parse_ok(f, replace(f->text, sdp_safari, "s=-\r\n", "s=-\r\n\r\n"));
}

static void extmaps_beyond_the_limit_are_counted(void **state)
{
    struct fixture *f = *state;
    char attrs[2048] = "a=rtpmap:111 opus/48000/2\r\n";
    for (unsigned id = 1; id <= 18; id++)
        snprintf(attrs + strlen(attrs), sizeof(attrs) - strlen(attrs),
                 "a=extmap:%u urn:example:ext-%u\r\n", id + 20, id);
    strcat(attrs, "a=extmap:7 urn:ietf:params:rtp-hdrext:sdes:mid\r\n");
    const struct media_sdp_offer *o = parse_ok(f, small_offer(f->text, "111", attrs, NULL, NULL));
    assert_int_equal(o->mlines[0].extmap_count, MEDIA_SDP_MAX_EXTMAPS);
    assert_int_equal(o->mlines[0].extmaps_dropped, 3);
    assert_int_equal(o->mlines[0].ext_id[MEDIA_SDP_EXT_MID], 7);
}

/* ---- refusals ------------------------------------------------------------- */

static void refuses_missing_bundle_mux_fingerprint(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=group:BUNDLE 0 1 2\r\n", ""),
                   MEDIA_SDP_ERR_BUNDLE, "no a=group:BUNDLE");
    expect_refused(f, replace(f->text, sdp_chrome_android, "BUNDLE 0 1 2", "BUNDLE 0 1"),
                   MEDIA_SDP_ERR_BUNDLE, "m-line 3 (mid \"2\"");
    expect_refused(f, replace(f->text, sdp_chrome_android, "BUNDLE 0 1 2", "BUNDLE 0 1 2 7"),
                   MEDIA_SDP_ERR_BUNDLE, "mid \"7\"");
    expect_refused(f,
                   replace(f->text, sdp_chrome_android, "a=group:BUNDLE 0 1 2\r\n",
                           "a=group:BUNDLE 0 1\r\na=group:BUNDLE 2\r\n"),
                   MEDIA_SDP_ERR_BUNDLE, "second BUNDLE");
    assert_int_equal(f->err.line, 6);

    expect_refused(f, replace(f->text, sdp_chrome_android, "a=rtcp-mux\r\n", ""),
                   MEDIA_SDP_ERR_NO_RTCP_MUX, "m-line 1 (mid \"0\", line 7)");
    assert_int_equal(f->err.line, 7);
    expect_refused(f,
                   replace(f->text, sdp_firefox_121, "a=rtcp-mux\r\na=rtcp-rsize", "a=rtcp-rsize"),
                   MEDIA_SDP_ERR_NO_RTCP_MUX, "mid \"1\"");

    /* Chrome repeats the fingerprint in every m-line, Firefox says it once. */
    replace(f->text2, sdp_chrome_android,
            "a=fingerprint:sha-256 49:3C:77:6E:6B:2B:90:69:00:AE:47:4A:87:A7:F4:F6:F0:B3:6D:D6:FA:"
            "7F:84:DD:A5:6E:6E:2E:1F:64:D7:7F\r\n",
            "");
    expect_refused(f, f->text2, MEDIA_SDP_ERR_NO_FINGERPRINT, "sha-256");
    expect_refused(
        f, replace(f->text, sdp_firefox_121, "a=fingerprint:sha-256", "a=fingerprint:sha-1"),
        MEDIA_SDP_ERR_NO_FINGERPRINT, NULL);
    expect_refused(f, replace(f->text, sdp_firefox_121, "9C:6E\r\n", "9C\r\n"),
                   MEDIA_SDP_ERR_SYNTAX, "line 5: a=fingerprint:sha-256 75:4F");
}

static void refuses_unusable_transport(void **state)
{
    struct fixture *f = *state;
    replace(f->text2, sdp_chrome_android, "a=ice-ufrag:Wafl\r\n", "");
    expect_refused(f, f->text2, MEDIA_SDP_ERR_ICE, "a=ice-ufrag");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=ice-ufrag:Wafl", "a=ice-ufrag:W\"x"),
                   MEDIA_SDP_ERR_ICE, "line 10: a=ice-ufrag:W\"x");
    expect_refused(f, replace(f->text, sdp_chrome_android, "t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n"),
                   MEDIA_SDP_ERR_ICE, "ICE-lite");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=setup:actpass", "a=setup:passive"),
                   MEDIA_SDP_ERR_SETUP, "passive");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=setup:actpass", "a=setup:sometimes"),
                   MEDIA_SDP_ERR_SYNTAX, "a=setup:sometimes");
    expect_refused(
        f, replace(f->text, sdp_chrome_android, "m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio 9 RTP/AVP"),
        MEDIA_SDP_ERR_PROTOCOL, "RTP/AVP");
}

static void refuses_codecs_we_cannot_relay(void **state)
{
    struct fixture *f = *state;
    static const char opus[] = "a=rtpmap:111 opus/48000/2\r\n";
    expect_refused(f,
                   small_offer(f->text, "111", opus, "45 49",
                               "a=rtpmap:45 AV1/90000\r\na=rtpmap:49 H265/90000\r\n"),
                   MEDIA_SDP_ERR_NO_VIDEO_CODEC, "m-line 2 (mid \"1\"");
    expect_refused(f,
                   small_offer(f->text, "111", opus, "96 97",
                               "a=rtpmap:96 H264/90000\r\n"
                               "a=fmtp:96 packetization-mode=1;profile-level-id=640c1f\r\n"
                               "a=rtpmap:97 H264/90000\r\n"
                               "a=fmtp:97 packetization-mode=0;profile-level-id=42e01f\r\n"),
                   MEDIA_SDP_ERR_NO_VIDEO_CODEC, NULL);
    expect_refused(f, small_offer(f->text, "0", "", NULL, NULL), MEDIA_SDP_ERR_NO_AUDIO_CODEC,
                   "opus/48000/2");
    expect_refused(f, small_offer(f->text, "111", "a=rtpmap:111 opus/48000\r\n", NULL, NULL),
                   MEDIA_SDP_ERR_NO_AUDIO_CODEC, NULL); /* mono Opus is not WebRTC Opus */
    /* 72..76 would look like RTCP with rtcp-mux. */
    expect_refused(f, small_offer(f->text, "72", "a=rtpmap:72 opus/48000/2\r\n", NULL, NULL),
                   MEDIA_SDP_ERR_NO_AUDIO_CODEC, NULL);
    /* Video alone is served; a data channel alone is not. */
    parse_ok(f,
             replace(f->text, small_offer(f->text2, "111", opus, "96", "a=rtpmap:96 VP8/90000\r\n"),
                     "m=audio 9", "m=audio 0"));
    assert_int_equal(f->offer.audio, -1);
    assert_int_equal(f->offer.video, 1);
    expect_refused(f,
                   replace(f->text, small_offer(f->text2, "111", opus, NULL, NULL),
                           "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                           "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
                   MEDIA_SDP_ERR_NO_MEDIA, NULL);
}

static void refuses_truncated_and_malformed_lines(void **state)
{
    struct fixture *f = *state;
    size_t half = strlen(sdp_chrome_android) / 2;
    memcpy(f->text, sdp_chrome_android, half);
    f->text[half] = '\0';
    expect_refused(f, f->text, MEDIA_SDP_ERR_TRUNCATED, "cut short");
    expect_refused(f, "", MEDIA_SDP_ERR_TRUNCATED, NULL);
    expect_refused(f, "\r\n\r\n", MEDIA_SDP_ERR_TRUNCATED, NULL);

    const char *sdp =
        replace(f->text, sdp_chrome_android, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus");
    expect_refused(f, sdp, MEDIA_SDP_ERR_SYNTAX, "a=rtpmap:111 opus: expected");
    assert_int_equal(f->err.line, line_of(sdp, "a=rtpmap:111 "));

    expect_refused(f,
                   replace(f->text, sdp_chrome_android,
                           "m=audio 9 UDP/TLS/RTP/SAVPF 111 103 9 0 8 105 13 110 113 126",
                           "m=audio 9 UDP/TLS/RTP/SAVPF"),
                   MEDIA_SDP_ERR_SYNTAX, "line 7: m=audio 9");
    expect_refused(f,
                   replace(f->text, sdp_chrome_android,
                           "a=ssrc:2261433415 label:f94c5ff6-26b9-4315-815d-40b4dd2efdef",
                           "a=ssrc:2261433415"),
                   MEDIA_SDP_ERR_SYNTAX, "a=ssrc:2261433415");
    expect_refused(f,
                   replace(f->text, sdp_chrome_android, "a=fmtp:111 minptime=10;useinbandfec=1",
                           "a=fmtp:111 minptime=10;useinbandfec=yes"),
                   MEDIA_SDP_ERR_SYNTAX, "useinbandfec must be 0 or 1");
    expect_refused(
        f, replace(f->text, sdp_chrome_android, "profile-level-id=420015", "profile-level-id=4200"),
        MEDIA_SDP_ERR_SYNTAX, "6 hex digits");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=extmap:14 ", "a=extmap:0 "),
                   MEDIA_SDP_ERR_SYNTAX, "a=extmap:0");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=extmap:14 ", "a=extmap:2 "),
                   MEDIA_SDP_ERR_SYNTAX, "used twice");
    expect_refused(f, replace(f->text, sdp_chrome_android, "v=0\r\n", "v=1\r\n"),
                   MEDIA_SDP_ERR_SYNTAX, "v=0");
    expect_refused(f, replace(f->text, sdp_chrome_android, "s=-\r\n", "s=-\r\nno equals sign\r\n"),
                   MEDIA_SDP_ERR_SYNTAX, "line 4: no equals sign");
    expect_refused(
        f,
        replace(f->text, sdp_chrome_android, "o=- 2383219383355379692 2 IN IP4 127.0.0.1\r\n", ""),
        MEDIA_SDP_ERR_SYNTAX, "no o= line");

    /* A NUL byte inside a line. */
    size_t len = strlen(sdp_chrome_android);
    memcpy(f->text, sdp_chrome_android, len);
    f->text[20] = '\0';
    assert_int_equal(media_sdp_parse(f->text, len, MEDIA_SDP_OFFER, &f->offer, &f->err),
                     MEDIA_SDP_ERR_SYNTAX);
    assert_int_equal(f->err.line, 2);
}

static void refuses_long_lines_and_large_offers(void **state)
{
    struct fixture *f = *state;
    /* A line of exactly 4096 bytes passes, one byte more does not. */
    char line[MEDIA_SDP_MAX_LINE + 8];
    memset(line, 'x', sizeof(line));
    memcpy(line, "a=x-long:", 9);
    strcpy(line + MEDIA_SDP_MAX_LINE, "\r\n");
    char with[MEDIA_SDP_MAX_LINE + 16];
    snprintf(with, sizeof(with), "s=-\r\n%s", line);
    parse_ok(f, replace(f->text, sdp_chrome_android, "s=-\r\n", with));
    line[MEDIA_SDP_MAX_LINE] = 'x';
    strcpy(line + MEDIA_SDP_MAX_LINE + 1, "\r\n");
    snprintf(with, sizeof(with), "s=-\r\n%s", line);
    expect_refused(f, replace(f->text, sdp_chrome_android, "s=-\r\n", with),
                   MEDIA_SDP_ERR_LINE_TOO_LONG, "line 4: a=x-long:xxx");
    assert_int_equal(f->err.line, 4);

    /* Exactly 64 KiB passes, one byte more does not. */
    size_t len = strlen(sdp_chrome_android);
    memcpy(f->text, sdp_chrome_android, len);
    while (len < MEDIA_SDP_MAX_SIZE) {
        size_t remain = MEDIA_SDP_MAX_SIZE - len;
        size_t n = remain <= 1000 ? remain : (remain - 1000 < 20 ? 900 : 1000);
        memset(f->text + len, 'p', n);
        memcpy(f->text + len, "a=x-pad:", 8);
        memcpy(f->text + len + n - 2, "\r\n", 2);
        len += n;
    }
    f->text[MEDIA_SDP_MAX_SIZE] = '\0';
    parse_ok(f, f->text);
    f->text[MEDIA_SDP_MAX_SIZE] = '\n';
    f->text[MEDIA_SDP_MAX_SIZE + 1] = '\0';
    expect_refused(f, f->text, MEDIA_SDP_ERR_TOO_LARGE, "65537 bytes");
}

static void refuses_bad_mids_and_payload_types(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=mid:1", "a=mid:0"), MEDIA_SDP_ERR_MID,
                   "already used");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=mid:2\r\n", ""), MEDIA_SDP_ERR_MID,
                   "m-line 3");
    expect_refused(f, replace(f->text, sdp_chrome_android, "a=mid:2\r\n", "a=mid:2\r\na=mid:3\r\n"),
                   MEDIA_SDP_ERR_MID, "second a=mid");
    expect_refused(f, replace(f->text, sdp_chrome_android, "126\r\n", "126 300\r\n"),
                   MEDIA_SDP_ERR_PAYLOAD, "\"300\"");
    expect_refused(f, replace(f->text, sdp_chrome_android, "126\r\n", "126 abc\r\n"),
                   MEDIA_SDP_ERR_PAYLOAD, "\"abc\"");
    expect_refused(f, replace(f->text, sdp_chrome_android, "126\r\n", "126 111\r\n"),
                   MEDIA_SDP_ERR_PAYLOAD, "listed twice");
    expect_refused(f,
                   replace(f->text, sdp_chrome_android, "a=rtpmap:103 ISAC", "a=rtpmap:128 ISAC"),
                   MEDIA_SDP_ERR_PAYLOAD, "a=rtpmap:128");
    expect_refused(f, replace(f->text, sdp_chrome_android, "apt=96", "apt=960"),
                   MEDIA_SDP_ERR_PAYLOAD, "apt");
    expect_refused(f,
                   replace(f->text, sdp_chrome_android, "a=rtpmap:103 ISAC/16000\r\n",
                           "a=rtpmap:103 ISAC/16000\r\na=rtpmap:103 ISAC/32000\r\n"),
                   MEDIA_SDP_ERR_PAYLOAD, "second a=rtpmap");
}

static void refuses_more_than_the_limits(void **state)
{
    struct fixture *f = *state;
    /* Nine m-lines. */
    small_offer(f->text2, "111", "a=rtpmap:111 opus/48000/2\r\n", NULL, NULL);
    for (unsigned i = 1; i <= 8; i++)
        snprintf(f->text2 + strlen(f->text2), TEXT_CAP - strlen(f->text2),
                 "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d%u\r\n", i);
    expect_refused(f, f->text2, MEDIA_SDP_ERR_LIMIT, "more than 8 m-lines");
    assert_int_equal(f->err.line, line_of(f->text2, "a=mid:d8") - 1);

    /* 65 payload types in one m-line. */
    char fmts[512] = "111";
    for (unsigned pt = 0; pt < 64; pt++)
        snprintf(fmts + strlen(fmts), sizeof(fmts) - strlen(fmts), " %u", pt);
    expect_refused(f, small_offer(f->text, fmts, "a=rtpmap:111 opus/48000/2\r\n", NULL, NULL),
                   MEDIA_SDP_ERR_LIMIT, "more than 64 payload types");

    /* Nine SSRCs in one m-line. */
    char attrs[1024] = "a=rtpmap:111 opus/48000/2\r\n";
    for (unsigned i = 1; i <= 9; i++)
        snprintf(attrs + strlen(attrs), sizeof(attrs) - strlen(attrs), "a=ssrc:%u cname:x\r\n", i);
    expect_refused(f, small_offer(f->text, "111", attrs, NULL, NULL), MEDIA_SDP_ERR_LIMIT,
                   "a=ssrc:9 cname:x");
}

/* ---- the answer writer's own errors --------------------------------------- */

static void answer_refuses_bad_params_and_small_buffers(void **state)
{
    struct fixture *f = *state;
    parse_ok(f, sdp_chrome_android);
    struct media_sdp_answer_params p = params;
    p.ice_ufrag = "abc";
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.ice_pwd = "a1b2c3d4e5f6a7b8c9d0e1 2";
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.public_ip = "203.0.113.7\r\na=evil";
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.port = 0;
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.cname = NULL;
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.video_track_id = "two words";
    assert_int_equal(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
    p = params;
    p.public_ip = "2001:db8::7";
    assert_true(media_sdp_write_answer(&f->offer, &p, f->answer, sizeof(f->answer)) > 0);
    assert_non_null(strstr(f->answer, " 2001:db8::7 40000 typ host\r\n"));

    int len = media_sdp_write_answer(&f->offer, &params, f->answer, sizeof(f->answer));
    assert_true(len > 0);
    for (size_t cap = 0; cap <= (size_t)len; cap++) {
        memset(f->text, 0x5a, (size_t)len + 2);
        assert_int_equal(media_sdp_write_answer(&f->offer, &params, f->text, cap),
                         MEDIA_SDP_ERR_BUFFER);
        assert_int_equal((unsigned char)f->text[cap], 0x5a);
        if (cap)
            assert_true(strlen(f->text) < cap);
    }
    assert_int_equal(media_sdp_write_answer(&f->offer, &params, f->text, (size_t)len + 1), len);
    assert_string_equal(f->text, f->answer);

    /* Only a successfully parsed offer can be answered. */
    expect_refused(f, "", MEDIA_SDP_ERR_TRUNCATED, NULL);
    assert_int_equal(media_sdp_write_answer(&f->offer, &params, f->answer, sizeof(f->answer)),
                     MEDIA_SDP_ERR_PARAM);
}

static void every_status_has_a_description(void **state)
{
    (void)state;
    for (int code = 0; code >= MEDIA_SDP_ERR_BUFFER; code--) {
        const char *s = media_sdp_strerror(code);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown SDP status");
    }
    assert_string_equal(media_sdp_strerror(-99), "unknown SDP status");
    assert_string_equal(media_sdp_strerror(3), "unknown SDP status");
    assert_true(sizeof(struct media_sdp_offer) < 96 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(chrome_android_with_data_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(chrome_120_audio_video, setup, teardown),
        cmocka_unit_test_setup_teardown(chrome_2025_with_42_payload_types, setup, teardown),
        cmocka_unit_test_setup_teardown(firefox_121_session_level_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(firefox_82_with_data_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(safari_prefers_vp8_and_skips_high_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(obs_h264_only, setup, teardown),
        cmocka_unit_test_setup_teardown(answer_to_chrome_android, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_to_every_offer_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(answer_mirrors_directions, setup, teardown),
        cmocka_unit_test_setup_teardown(answer_mirrors_one_way_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(audio_only_and_extra_m_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(lf_line_ends_and_blank_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(extmaps_beyond_the_limit_are_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_missing_bundle_mux_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_unusable_transport, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_codecs_we_cannot_relay, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_truncated_and_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_long_lines_and_large_offers, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_bad_mids_and_payload_types, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_more_than_the_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(answer_refuses_bad_params_and_small_buffers, setup,
                                        teardown),
        cmocka_unit_test(every_status_has_a_description),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
