/*
 * test_peer_loopback.c - the C test peer (tests/support/test_peer.h) over
 * real UDP on 127.0.0.1 against a small responder made of the media
 * library's own server parts: ICE-lite Binding checks (stun.h), the passive
 * DTLS side (dtls.h), SRTP (srtp.h) and an SDP answer from
 * media_sdp_write_answer(). The responder echoes every RTP packet it
 * decrypts back to the peer, re-encrypted under its own SSRCs as a relay
 * would, so the peer hears its own tone and sees its own video.
 *
 * Threads: each responder and each peer runs one thread; the test's thread
 * reads their counters (atomics, and tp_peer_stats()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "dtls.h"
#include "rtp.h"
#include "sdp.h"
#include "srtp.h"
#include "stun.h"
#include "test_peer.h"

#define CONNECT_BUDGET_MS 5000
#define MEDIA_BUDGET_MS   5000
#define FAIL_BUDGET_MS    3000
#define ANSWER_MAX        16384
#define DATAGRAM_MAX      2048
#define BAD_CERTIFICATE   42 /* TLS AlertDescription */

static const char responder_ufrag[] = "tpResp01";
static const char responder_pwd[] = "tpResponderPassword0123";

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------- */
/* The responder: the server's side of one leg, echoing media                 */
/* ------------------------------------------------------------------------- */

struct responder {
    int fd;
    uint16_t port;
    struct media_stun_ctx *stun;
    struct media_dtls_ctx *dtls_ctx;
    struct media_dtls *dtls;
    struct media_srtp *srtp;
    char remote_ufrag[MEDIA_SDP_ICE_MAX + 1];
    struct sockaddr_storage peer;
    int audio_pt, video_pt;
    uint32_t audio_ssrc, video_ssrc, rtx_ssrc;
    char answer[ANSWER_MAX];
    pthread_t thread;
    bool running;
    atomic_bool stop;
    /* Read by the test's thread. */
    atomic_int dtls_failure; /* media_dtls_failure() once failed, else 0 */
    atomic_int peer_alert;   /* media_dtls_peer_alert() */
    atomic_bool connected;
    atomic_uint stun_answered, rtp_echoed, rtcp_echoed, others;
};

static void responder_send(struct responder *r, const uint8_t *data, size_t len)
{
    sendto(r->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&r->peer,
           sizeof(struct sockaddr_in));
}

static void responder_drain_dtls(struct responder *r)
{
    uint8_t buf[DATAGRAM_MAX];
    int n;
    while ((n = media_dtls_next_outgoing(r->dtls, buf, sizeof(buf))) > 0)
        responder_send(r, buf, (size_t)n);
    enum media_dtls_state state = media_dtls_state(r->dtls);
    if (state == MEDIA_DTLS_CONNECTED && !r->srtp) {
        struct media_srtp_keys keys;
        if (media_dtls_srtp_keys(r->dtls, &keys) == 0) {
            r->srtp = media_srtp_new(&keys, NULL);
            OPENSSL_cleanse(&keys, sizeof(keys));
            atomic_store(&r->connected, r->srtp != NULL);
        }
    }
    atomic_store(&r->peer_alert, media_dtls_peer_alert(r->dtls));
    if (state == MEDIA_DTLS_FAILED)
        atomic_store(&r->dtls_failure, media_dtls_failure(r->dtls));
}

static void responder_stun(struct responder *r, const uint8_t *data, size_t len,
                           const struct sockaddr_storage *from)
{
    struct media_stun_msg m;
    if (media_stun_parse(data, len, &m) != 0 ||
        media_stun_check_binding(r->stun, &m, responder_ufrag, responder_pwd, r->remote_ufrag) !=
            MEDIA_STUN_CHECK_OK)
        return;
    uint8_t buf[512];
    int n =
        media_stun_build_binding_success(r->stun, m.txid, from, responder_pwd, buf, sizeof(buf));
    if (n <= 0)
        return;
    r->peer = *from;
    responder_send(r, buf, (size_t)n);
    atomic_fetch_add(&r->stun_answered, 1);
}

/* Echoes one SRTP or SRTCP packet: decrypt, take our SSRC (RTP), encrypt with our keys. */
static void responder_media(struct responder *r, uint8_t *buf, size_t len)
{
    if (media_rtp_demux(buf, len) == MEDIA_RTP_KIND_RTCP) {
        int n = media_srtp_unprotect_rtcp(r->srtp, buf, len);
        if (n > 0 && (n = media_srtp_protect_rtcp(r->srtp, buf, (size_t)n, DATAGRAM_MAX)) > 0) {
            responder_send(r, buf, (size_t)n);
            atomic_fetch_add(&r->rtcp_echoed, 1);
        }
        return;
    }
    int n = media_srtp_unprotect_rtp(r->srtp, buf, len);
    struct media_rtp_view v;
    if (n <= 0 || media_rtp_parse(buf, (size_t)n, &v) != 0)
        return;
    uint32_t ssrc = v.payload_type == r->audio_pt ? r->audio_ssrc : r->video_ssrc;
    media_rtp_set_ssrc(buf, (size_t)n, ssrc);
    n = media_srtp_protect_rtp(r->srtp, buf, (size_t)n, DATAGRAM_MAX);
    if (n > 0) {
        responder_send(r, buf, (size_t)n);
        atomic_fetch_add(&r->rtp_echoed, 1);
    }
}

static void *responder_thread(void *arg)
{
    struct responder *r = arg;
    uint8_t buf[DATAGRAM_MAX];
    while (!atomic_load(&r->stop)) {
        int timeout = 20; /* how soon a stop is noticed */
        int dtls_ms = media_dtls_timeout_ms(r->dtls);
        if (dtls_ms >= 0 && dtls_ms < timeout)
            timeout = dtls_ms;
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        poll(&pfd, 1, timeout);
        for (;;) {
            struct sockaddr_storage from;
            socklen_t from_len = sizeof(from);
            ssize_t n = recvfrom(r->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from,
                                 &from_len);
            if (n <= 0)
                break;
            uint8_t b = buf[0];
            if (b <= 3) {
                responder_stun(r, buf, (size_t)n, &from);
            } else if (b >= 20 && b <= 63) {
                media_dtls_handle_datagram(r->dtls, buf, (size_t)n);
                responder_drain_dtls(r);
            } else if (b >= 128 && b <= 191 && r->srtp) {
                responder_media(r, buf, (size_t)n);
            } else {
                atomic_fetch_add(&r->others, 1);
            }
        }
        if (media_dtls_timeout_ms(r->dtls) == 0) {
            media_dtls_handle_timeout(r->dtls);
            responder_drain_dtls(r);
        }
    }
    return NULL;
}

/*
 * A responder for `offer` on a fresh 127.0.0.1 port, its answer written
 * into r->answer; with `wrong_fingerprint` the answer names a certificate
 * that is not the responder's. Not yet running: responder_start().
 */
static struct responder *responder_new(const char *offer, bool wrong_fingerprint)
{
    struct responder *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    atomic_init(&r->peer_alert, -1);
    r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t local_len = sizeof(local);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&local, sizeof(local)), 0);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&local, &local_len), 0);
    r->port = ntohs(local.sin_port);
    int size = 1 << 20;
    setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));

    struct media_sdp_offer *o = malloc(sizeof(*o));
    assert_non_null(o);
    struct media_sdp_error err;
    int rc = media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &err);
    if (rc != MEDIA_SDP_OK)
        fail_msg("the peer's offer is refused: %s", err.message);
    snprintf(r->remote_ufrag, sizeof(r->remote_ufrag), "%s", o->transport.ice_ufrag);
    r->audio_pt = o->audio >= 0 ? o->mlines[o->audio].choices[0].pt : -1;
    r->video_pt = o->video >= 0 ? o->mlines[o->video].choices[0].pt : -1;
    r->audio_ssrc = 0x11110001u;
    r->video_ssrc = 0x22220002u;
    r->rtx_ssrc = 0x33330003u;

    r->stun = media_stun_ctx_new();
    struct media_dtls_config cfg = {.initial_timeout_ms = 100};
    r->dtls_ctx = media_dtls_ctx_new(&cfg);
    assert_non_null(r->stun);
    assert_non_null(r->dtls_ctx);
    const struct media_sdp_fingerprint *ofp = &o->transport.fingerprints[0];
    struct media_dtls_fingerprint fp = {.hash = (enum media_dtls_hash)ofp->hash, .len = ofp->len};
    memcpy(fp.bytes, ofp->bytes, ofp->len);
    r->dtls = media_dtls_new(r->dtls_ctx, &fp, NULL);
    assert_non_null(r->dtls);

    struct media_sdp_answer_params params = {
        .ice_ufrag = responder_ufrag,
        .ice_pwd = responder_pwd,
        .public_ip = "127.0.0.1",
        .port = r->port,
        .session_id = 4242,
        .session_version = 1,
        .cname = "responder",
        .stream_id = "echo",
        .audio_track_id = "echo-audio",
        .video_track_id = "echo-video",
        .audio_ssrc = r->audio_ssrc,
        .video_ssrc = r->video_ssrc,
        .video_rtx_ssrc = r->rtx_ssrc,
    };
    memcpy(params.fingerprint_sha256, media_dtls_ctx_fingerprint_sha256(r->dtls_ctx), 32);
    if (wrong_fingerprint)
        params.fingerprint_sha256[7] ^= 0x5A;
    assert_true(media_sdp_write_answer(o, &params, r->answer, sizeof(r->answer)) > 0);
    free(o);
    return r;
}

static void responder_start(struct responder *r)
{
    assert_int_equal(pthread_create(&r->thread, NULL, responder_thread, r), 0);
    r->running = true;
}

static void responder_free(struct responder *r)
{
    if (!r)
        return;
    if (r->running) {
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
    }
    media_srtp_free(r->srtp);
    media_dtls_free(r->dtls);
    media_dtls_ctx_free(r->dtls_ctx);
    media_stun_ctx_free(r->stun);
    close(r->fd);
    free(r);
}

/* ------------------------------------------------------------------------- */
/* A peer and its responder, held by the fixture so a failed test frees them  */
/* ------------------------------------------------------------------------- */

struct pair {
    struct tp_peer *peer;
    struct responder *responder;
};

#define MAX_PAIRS 2

struct fixture {
    struct pair pairs[MAX_PAIRS];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < MAX_PAIRS; i++) {
        tp_peer_free(f->pairs[i].peer);
        responder_free(f->pairs[i].responder);
    }
    free(f);
    return 0;
}

/* Makes a peer and its responder, exchanges offer and answer, and starts both. */
static struct pair *pair_start(struct fixture *f, int i, const struct tp_config *cfg,
                               bool wrong_server_fingerprint)
{
    struct pair *pr = &f->pairs[i];
    char err[256] = "";
    pr->peer = tp_peer_new(cfg, err, sizeof(err));
    if (!pr->peer)
        fail_msg("tp_peer_new: %s", err);
    char *offer = tp_peer_offer(pr->peer);
    assert_non_null(offer);
    pr->responder = responder_new(offer, wrong_server_fingerprint);
    free(offer);
    if (tp_peer_set_answer(pr->peer, pr->responder->answer, err, sizeof(err)) != 0)
        fail_msg("tp_peer_set_answer: %s", err);
    responder_start(pr->responder);
    assert_int_equal(tp_peer_start(pr->peer), 0);
    assert_int_equal(tp_peer_start(pr->peer), -1); /* a peer runs once */
    return pr;
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

/* The offer is what a browser sends and what the server's parser accepts. */
static void test_offer(void **state)
{
    (void)state;
    struct tp_config cfg = {.name = "patient", .tone_hz = 440, .video_kbps = 300};
    char err[256] = "";
    struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
    assert_non_null(p);
    assert_true(tp_peer_local_port(p) != 0);
    assert_int_equal(tp_peer_send_raw(p, "x", 1), -ENOTCONN);
    char *offer = tp_peer_offer(p);
    assert_non_null(offer);

    struct media_sdp_offer *o = malloc(sizeof(*o));
    assert_non_null(o);
    struct media_sdp_error perr;
    assert_int_equal(media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &perr), 0);
    assert_int_equal(o->bundle_count, 2);
    assert_true(o->transport.ice_trickle);
    assert_int_equal(o->transport.setup, MEDIA_SDP_SETUP_ACTPASS);
    assert_int_equal(o->transport.fingerprint_count, 1);
    const struct media_sdp_mline *a = &o->mlines[o->audio];
    const struct media_sdp_mline *v = &o->mlines[o->video];
    assert_int_equal(a->choices[0].pt, TP_OFFER_OPUS_PT);
    assert_true(a->rtcp_rsize);
    assert_int_equal(a->direction, MEDIA_SDP_SENDRECV);
    assert_int_equal(a->ssrc_count, 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], TP_EXT_AUDIO_LEVEL);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_MID], TP_EXT_MID);
    assert_int_equal(v->choices[0].codec, MEDIA_SDP_CODEC_VP8);
    assert_int_equal(v->choices[0].pt, TP_OFFER_VP8_PT);
    assert_int_equal(v->choices[0].rtx_pt, TP_OFFER_RTX_PT);
    assert_int_equal(v->codecs[0].fb, MEDIA_SDP_FB_NACK | MEDIA_SDP_FB_NACK_PLI |
                                          MEDIA_SDP_FB_CCM_FIR | MEDIA_SDP_FB_GOOG_REMB |
                                          MEDIA_SDP_FB_TRANSPORT_CC);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], TP_EXT_TRANSPORT_CC);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME], TP_EXT_ABS_SEND_TIME);
    assert_int_equal(v->ssrc_count, 2);
    assert_int_equal(v->fid_count, 1);
    assert_int_equal(v->fids[0].primary, v->ssrcs[0].ssrc);
    assert_string_equal(v->ssrcs[0].cname, a->ssrcs[0].cname);

    /* An answer whose candidate is not on loopback is refused. */
    struct media_sdp_answer_params params = {
        .ice_ufrag = responder_ufrag,
        .ice_pwd = responder_pwd,
        .public_ip = "192.0.2.1",
        .port = 4000,
        .session_id = 1,
        .session_version = 1,
        .cname = "c",
        .stream_id = "s",
        .audio_track_id = "a",
        .video_track_id = "v",
        .audio_ssrc = 1,
        .video_ssrc = 2,
    };
    char answer[ANSWER_MAX];
    assert_true(media_sdp_write_answer(o, &params, answer, sizeof(answer)) > 0);
    assert_int_equal(tp_peer_set_answer(p, answer, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "192.0.2.1"));
    assert_int_equal(tp_peer_start(p), -1); /* no answer taken */
    free(o);
    free(offer);

    /* A peer that sends nothing only receives: recvonly m-lines without SSRCs. */
    struct tp_config quiet = {.name = "viewer"};
    struct tp_peer *q = tp_peer_new(&quiet, err, sizeof(err));
    assert_non_null(q);
    offer = tp_peer_offer(q);
    assert_non_null(offer);
    o = malloc(sizeof(*o));
    assert_non_null(o);
    assert_int_equal(media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &perr), 0);
    assert_int_equal(o->mlines[o->audio].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[o->video].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[o->video].ssrc_count, 0);
    free(o);
    free(offer);
    tp_peer_free(q);
    tp_peer_free(p);
    tp_peer_free(NULL);
}

/* Waits until every pair's peer has decoded `samples` and received `video` packets. */
static void wait_media(struct fixture *f, int n, uint64_t samples, uint64_t video)
{
    uint64_t deadline = now_ms() + MEDIA_BUDGET_MS;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++) {
            struct tp_stats s;
            tp_peer_stats(f->pairs[i].peer, &s);
            all &= s.audio_decoded_samples >= samples && s.video_received >= video;
        }
        if (all)
            return;
        if (now_ms() > deadline)
            fail_msg("the echoed media did not arrive in %d ms", MEDIA_BUDGET_MS);
        sleep_ms(50);
    }
}

/*
 * Two peers at once, each with its own responder: 440 Hz and 880 Hz come
 * back as themselves, video byte-identical and in order under the
 * responder's SSRCs, consent checks answered; silence stops everything.
 */
static void test_echo(void **state)
{
    struct fixture *f = *state;
    struct tp_config patient = {.name = "patient",
                                .tone_hz = 440,
                                .video_kbps = 500,
                                .video_tag = 1,
                                .consent_interval_ms = 200};
    struct tp_config doctor = {.name = "doctor", .tone_hz = 880, .video_kbps = 300, .video_tag = 2};
    pair_start(f, 0, &patient, false);
    pair_start(f, 1, &doctor, false);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tp_peer_wait_connected(f->pairs[i].peer, CONNECT_BUDGET_MS), 0);

    /* A raw datagram from the peer's own socket reaches the server. */
    assert_int_equal(tp_peer_send_raw(f->pairs[0].peer, "\xFF\xFF\xFF\xFF", 4), 0);

    wait_media(f, 2, 48000 * 3 / 4, 60);
    const double tones[2] = {440, 880};
    const uint32_t tags[2] = {1, 2};
    for (int i = 0; i < 2; i++) {
        struct pair *pr = &f->pairs[i];
        struct tp_stats s;
        tp_peer_stats(pr->peer, &s);
        assert_true(s.connected);
        assert_false(s.dtls_failed);
        assert_int_equal(s.dtls_alert, -1);
        assert_true(s.stun_success_received >= 1);
        assert_true(s.audio_sent > 0);
        assert_true(s.video_sent > s.video_frames_sent); /* key frames take several packets */
        assert_true(s.audio_received > 0);
        assert_true(s.video_received > 0);
        assert_int_equal(s.srtp_errors, 0);
        assert_int_equal(s.video_payload_mismatches, 0);
        assert_int_equal(s.video_out_of_order, 0);
        assert_int_equal(s.last_audio_ssrc_received, pr->responder->audio_ssrc);
        assert_int_equal(s.last_video_ssrc_received, pr->responder->video_ssrc);
        assert_int_equal(s.last_video_tag_received, tags[i]);
        if (fabs(s.audio_peak_hz - tones[i]) > 10)
            fail_msg("peer %d: sent %.0f Hz, heard %.1f Hz", i, tones[i], s.audio_peak_hz);
        assert_true(atomic_load(&pr->responder->rtp_echoed) > 0);
    }
    assert_true(atomic_load(&f->pairs[0].responder->others) >= 1);

    /* Consent every 200 ms: several checks answered by now. RTCP RRs came back. */
    struct tp_stats s0;
    tp_peer_stats(f->pairs[0].peer, &s0);
    assert_true(s0.stun_sent >= 3);
    assert_true(s0.stun_success_received >= 3);
    assert_true(s0.rtcp_received >= 1);

    /* Silent: nothing more goes out. */
    tp_peer_set_silent(f->pairs[0].peer, true);
    sleep_ms(60); /* lets a packet already on its way land */
    struct tp_stats before, after;
    tp_peer_stats(f->pairs[0].peer, &before);
    unsigned echoed = atomic_load(&f->pairs[0].responder->rtp_echoed);
    sleep_ms(300);
    tp_peer_stats(f->pairs[0].peer, &after);
    assert_int_equal(after.audio_sent, before.audio_sent);
    assert_int_equal(after.video_sent, before.video_sent);
    assert_int_equal(after.stun_sent, before.stun_sent);
    assert_int_equal(atomic_load(&f->pairs[0].responder->rtp_echoed), echoed);

    for (int i = 0; i < 2; i++) {
        tp_peer_stop(f->pairs[i].peer);
        struct tp_stats s;
        tp_peer_stats(f->pairs[i].peer, &s);
        assert_true(s.connected); /* readable after the stop */
    }
}

/* Waits for the responder's DTLS leg to fail; returns why. */
static int wait_responder_failure(struct responder *r)
{
    uint64_t deadline = now_ms() + FAIL_BUDGET_MS;
    while (atomic_load(&r->dtls_failure) == 0 && now_ms() < deadline)
        sleep_ms(10);
    return atomic_load(&r->dtls_failure);
}

/* The peer offers a fingerprint that is not its certificate's: the server must refuse it. */
static void test_peer_lies_about_fingerprint(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "liar", .tone_hz = 440, .lie_about_fingerprint = true};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, FAIL_BUDGET_MS), -1);
    assert_int_equal(wait_responder_failure(pr->responder), MEDIA_DTLS_ERR_FINGERPRINT);
    assert_false(atomic_load(&pr->responder->connected));
    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_false(s.connected);
    assert_true(s.dtls_failed);
    assert_int_equal(s.dtls_alert, BAD_CERTIFICATE);
    assert_true(s.stun_success_received >= 1); /* ICE worked; DTLS did not */
    assert_int_equal(s.audio_sent, 0);
    assert_int_equal(s.audio_received, 0);
}

/* The answer names a certificate the server does not have: the peer must refuse it. */
static void test_server_fingerprint_wrong(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "careful", .tone_hz = 440, .video_kbps = 100};
    struct pair *pr = pair_start(f, 0, &cfg, true);
    assert_int_equal(tp_peer_wait_connected(pr->peer, FAIL_BUDGET_MS), -1);
    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_false(s.connected);
    assert_true(s.dtls_failed);
    assert_int_equal(s.audio_sent, 0);
    /* The peer said why: a bad_certificate alert ends the server's leg. */
    assert_int_equal(wait_responder_failure(pr->responder), MEDIA_DTLS_ERR_ALERT);
    assert_int_equal(atomic_load(&pr->responder->peer_alert), BAD_CERTIFICATE);
    assert_false(atomic_load(&pr->responder->connected));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer),
        cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_lies_about_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_fingerprint_wrong, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
