/*
 * test_media_relay.c - the media relay end to end with two C test peers
 * (tests/support/test_peer.h) through the real server: signalling over WSS
 * (a doctor signs in and calls, a patient joins and accepts, both send SDP
 * offers), then ICE, DTLS and SRTP over real UDP on loopback.
 *
 * Shown here: a 440 Hz tone from the patient is decoded at the doctor at
 * 440 Hz and 880 Hz goes the other way; video payloads arrive byte-identical
 * and in order; a peer whose certificate is not the one in its offer is
 * refused; a Binding request with a bad MESSAGE-INTEGRITY gets no answer;
 * garbage and truncated STUN/DTLS/RTP/RTCP datagrams are counted and
 * dropped while media keeps flowing; a silent leg ends after the consent
 * timeout and both the participant and /metrics say so; a consultation that
 * ends (by the doctor, or at the server's shutdown) leaves one media_summary
 * audit event per participant in the server's audit.db.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base.h"
#include "stun.h"
#include "test_client.h"
#include "test_peer.h"
#include "test_server.h"

#define WS_TIMEOUT_MS      5000
#define CONNECT_TIMEOUT_MS 10000
#define DOCTOR_NAME        "dr.relay"
#define DOCTOR_PASSWORD    "correct horse battery"
#define PATIENT_TAG        0x50415449u /* "PATI" */
#define DOCTOR_TAG         0x444f4354u /* "DOCT" */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------------- */
/* Signalling                                                                 */
/* ------------------------------------------------------------------------- */

/* Sends a request built by json_pack (the reference is taken). */
static void ws_send(struct tc_ws *ws, json_t *msg)
{
    assert_non_null(msg);
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    assert_non_null(text);
    assert_int_equal(tc_ws_send_text(ws, text, strlen(text)), 0);
    free(text);
}

/*
 * Receives messages until one of `type` arrives (others are skipped: queue
 * updates, events) and returns it; fails the test after `timeout_ms`. An
 * error reply fails at once, with its message.
 */
static json_t *ws_expect(struct tc_ws *ws, const char *type, int timeout_ms)
{
    int64_t deadline = base_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - base_now_ms();
        char *text = NULL;
        size_t len = 0;
        enum tc_ws_result r = left > 0 ? tc_ws_recv(ws, &text, &len, (int)left) : TC_WS_TIMEOUT;
        if (r != TC_WS_TEXT) {
            print_error("waiting for \"%s\": result %d\n", type, r);
            fail();
        }
        json_t *msg = json_loads(text, 0, NULL);
        assert_non_null(msg);
        const char *got = json_string_value(json_object_get(msg, "type"));
        if (got && strcmp(got, type) == 0) {
            free(text);
            return msg;
        }
        if (got && strcmp(got, "error") == 0) {
            print_error("waiting for \"%s\", got %s\n", type, text);
            fail();
        }
        free(text);
        json_decref(msg);
    }
}

/* Waits for {"type":"media","state":<state>} and returns its reason (new string) or NULL. */
static char *ws_expect_media(struct tc_ws *ws, const char *state, int timeout_ms)
{
    int64_t deadline = base_now_ms() + timeout_ms;
    for (;;) {
        json_t *m = ws_expect(ws, "media", (int)(deadline - base_now_ms()));
        const char *s = json_string_value(json_object_get(m, "state"));
        const char *reason = json_string_value(json_object_get(m, "reason"));
        bool match = s && strcmp(s, state) == 0;
        char *out = match && reason ? strdup(reason) : NULL;
        json_decref(m);
        if (match)
            return out;
        assert_true(base_now_ms() < deadline);
    }
}

static struct tc_ws *ws_open(struct ts_server *srv)
{
    struct tc_ws *ws = tc_ws_connect(ts_server_port(srv), "/ws", "tabib.v1", NULL);
    assert_non_null(ws);
    return ws;
}

/* Creates the doctor's account with the CLI, as an operator would. */
static void create_doctor(struct ts_server *srv)
{
    char pw_path[512], data_dir[512];
    snprintf(pw_path, sizeof(pw_path), "%s/doctor-password", ts_server_dir(srv));
    snprintf(data_dir, sizeof(data_dir), "%s/data", ts_server_dir(srv));
    FILE *f = fopen(pw_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", DOCTOR_PASSWORD);
    fclose(f);
    const char *args[] = {"user",   "add",        DOCTOR_NAME, "--role",
                          "doctor", "--clinics",  "general",   "--password-file",
                          pw_path,  "--data-dir", data_dir,    NULL};
    char *err = NULL;
    int rc = ts_run_to_exit(args, &err, 20000);
    if (rc != 0)
        print_error("tabib user add: %d: %s\n", rc, err ? err : "");
    free(err);
    assert_int_equal(rc, 0);
}

/* Sends our offer and returns the server's answer (new string). */
static char *offer_answer(struct tc_ws *ws, struct tp_peer *peer)
{
    char *offer = tp_peer_offer(peer);
    assert_non_null(offer);
    ws_send(ws, json_pack("{s:s, s:s, s:s}", "type", "offer", "id", "o1", "sdp", offer));
    free(offer);
    json_t *a = ws_expect(ws, "answer", WS_TIMEOUT_MS);
    char *sdp = strdup(json_string_value(json_object_get(a, "sdp")));
    json_decref(a);
    assert_non_null(sdp);
    char err[256] = "";
    if (tp_peer_set_answer(peer, sdp, err, sizeof(err)) != 0)
        print_error("answer refused by the peer: %s\n%s\n", err, sdp);
    return sdp;
}

/* A server, a doctor on duty and patients (the first in consultation with them, usually). */
struct call {
    struct ts_server *srv;
    char *consultation; /* the first consultation's id (call_start), or NULL */
    struct tc_ws *doctor, *patient, *patient2;
    struct tp_peer *patient_peer, *doctor_peer, *patient2_peer; /* freed with the call */
};

/* The server, and the doctor signed in and on duty at "general". */
static void clinic_open(struct call *c, const char *const *extra_args)
{
    memset(c, 0, sizeof(*c));
    c->srv = ts_server_start(extra_args);
    assert_non_null(c->srv);
    create_doctor(c->srv);
    c->doctor = ws_open(c->srv);
    ws_send(c->doctor, json_pack("{s:s, s:s, s:s, s:s}", "type", "login", "id", "d1", "username",
                                 DOCTOR_NAME, "password", DOCTOR_PASSWORD));
    json_decref(ws_expect(c->doctor, "signed_in", WS_TIMEOUT_MS));
    ws_send(c->doctor, json_pack("{s:s, s:s, s:s, s:b}", "type", "duty", "id", "d2", "clinic",
                                 "general", "on", 1));
    json_decref(ws_expect(c->doctor, "duty", WS_TIMEOUT_MS));
}

/* A patient joins the queue of "general"; returns their connection. */
static struct tc_ws *patient_join(struct call *c, const char *name)
{
    struct tc_ws *ws = ws_open(c->srv);
    ws_send(ws, json_pack("{s:s, s:i, s:s, s:s}", "type", "join", "id", 1, "clinic", "general",
                          "name", name));
    json_decref(ws_expect(ws, "joined", WS_TIMEOUT_MS));
    return ws;
}

/* The doctor calls the next patient, who is `patient` and accepts. Returns the consultation id. */
static char *call_next_and_accept(struct call *c, struct tc_ws *patient)
{
    ws_send(c->doctor,
            json_pack("{s:s, s:s, s:s}", "type", "call_next", "id", "d3", "clinic", "general"));
    json_decref(ws_expect(c->doctor, "called", WS_TIMEOUT_MS));
    json_decref(ws_expect(patient, "called", WS_TIMEOUT_MS));
    ws_send(patient, json_pack("{s:s, s:i}", "type", "accept", "id", 2));
    json_t *started = ws_expect(patient, "consultation_started", WS_TIMEOUT_MS);
    char *id = strdup(json_string_value(json_object_get(started, "consultation")));
    json_decref(started);
    json_decref(ws_expect(c->doctor, "consultation_started", WS_TIMEOUT_MS));
    return id;
}

static void call_start(struct call *c, const char *const *extra_args)
{
    clinic_open(c, extra_args);
    c->patient = patient_join(c, "مريم الكعبي");
    c->consultation = call_next_and_accept(c, c->patient);
}

/* The usual set-up: one media worker, so every counter is worker 0's. */
static void call_start_one_worker(struct call *c)
{
    const char *args[] = {"--media-workers", "1", NULL};
    call_start(c, args);
}

/* Closes everything; the server must stop cleanly (under ASan: no report, no leak). */
static void call_free(struct call *c)
{
    tp_peer_free(c->patient_peer);
    tp_peer_free(c->patient2_peer);
    tp_peer_free(c->doctor_peer);
    tc_ws_close(c->doctor);
    tc_ws_close(c->patient);
    tc_ws_close(c->patient2);
    free(c->consultation);
    int status = ts_server_stop(c->srv, NULL);
    if (status != 0) {
        char *err = ts_server_stderr(c->srv);
        print_error("the server exited with %d:\n%s\n", status, err ? err : "");
        free(err);
    }
    ts_server_free(c->srv);
    assert_int_equal(status, 0);
}

static struct tp_peer *new_peer_losing(const char *name, double tone_hz, uint32_t tag,
                                       double loss_percent)
{
    struct tp_config cfg = {.name = name,
                            .tone_hz = tone_hz,
                            .video_kbps = 600,
                            .video_fps = 30,
                            .video_tag = tag,
                            .drop_video_percent = loss_percent,
                            .loss_seed = 20261127};
    char err[256] = "";
    struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
    if (!p)
        print_error("tp_peer_new: %s\n", err);
    assert_non_null(p);
    return p;
}

static struct tp_peer *new_peer(const char *name, double tone_hz, uint32_t tag, bool lie,
                                unsigned consent_ms)
{
    struct tp_config cfg = {.name = name,
                            .tone_hz = tone_hz,
                            .video_kbps = 600,
                            .video_fps = 30,
                            .video_tag = tag,
                            .lie_about_fingerprint = lie,
                            .consent_interval_ms = consent_ms};
    char err[256] = "";
    struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
    if (!p)
        print_error("tp_peer_new: %s\n", err);
    assert_non_null(p);
    return p;
}

/* Both peers connected through the relay of a consultation in progress. */
static void connect_both(struct call *c, struct tp_peer *patient, struct tp_peer *doctor)
{
    free(offer_answer(c->patient, patient));
    free(offer_answer(c->doctor, doctor));
    assert_int_equal(tp_peer_start(patient), 0);
    assert_int_equal(tp_peer_start(doctor), 0);
    assert_int_equal(tp_peer_wait_connected(patient, CONNECT_TIMEOUT_MS), 0);
    assert_int_equal(tp_peer_wait_connected(doctor, CONNECT_TIMEOUT_MS), 0);
    free(ws_expect_media(c->patient, "connected", WS_TIMEOUT_MS));
    free(ws_expect_media(c->doctor, "connected", WS_TIMEOUT_MS));
}

/* The usual consultation: one worker, a 440 Hz patient and an 880 Hz doctor, connected. */
static void call_with_peers(struct call *c)
{
    call_start_one_worker(c);
    c->patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    c->doctor_peer = new_peer("doctor", 880, DOCTOR_TAG, false, 0);
    connect_both(c, c->patient_peer, c->doctor_peer);
}

/* ------------------------------------------------------------------------- */
/* /metrics                                                                   */
/* ------------------------------------------------------------------------- */

/* The value of the first sample whose line starts with `prefix`; fails when absent. */
static double metric(struct ts_server *srv, const char *prefix)
{
    struct tc_response r;
    assert_int_equal(tc_https_get(ts_server_port(srv), "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    double v = NAN;
    size_t n = strlen(prefix);
    for (const char *line = r.body; line && *line;) {
        if (strncmp(line, prefix, n) == 0) {
            const char *sp = strchr(line + n, ' ');
            if (sp)
                v = strtod(sp + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    if (isnan(v))
        print_error("no sample starting with %s\n", prefix);
    tc_response_free(&r);
    assert_false(isnan(v));
    return v;
}

#define DROPPED(reason) "tabib_media_packets_dropped_total{worker=\"0\",reason=\"" reason "\"}"

/* ------------------------------------------------------------------------- */
/* The audit log                                                              */
/* ------------------------------------------------------------------------- */

/*
 * The audit events of `type` about `consultation` in the server's audit.db,
 * oldest first: a JSON array of {"actor_role", "actor_id", "outcome",
 * "source", "detail" (parsed)}. Read with the sqlite3 tool, read-only (the
 * server may be writing: WAL lets a reader in). New reference.
 */
static json_t *audit_events(struct ts_server *srv, const char *type, const char *consultation)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "sqlite3 -readonly -json '%s/data/audit.db' \"SELECT actor_role, actor_id, outcome, "
             "source, detail FROM events WHERE type = '%s' AND consultation = '%s' ORDER BY id\"",
             ts_server_dir(srv), type, consultation);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char text[64 * 1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    assert_int_equal(pclose(f), 0);
    assert_true(n < sizeof(text) - 1);
    json_error_t jerr;
    json_t *rows = n ? json_loads(text, 0, &jerr) : json_array(); /* no rows: no output */
    if (!rows)
        print_error("sqlite3 -json: %s\n%s\n", jerr.text, text);
    assert_true(json_is_array(rows));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *detail = json_loads(json_string_value(json_object_get(row, "detail")), 0, NULL);
        assert_non_null(detail);
        json_object_set_new(row, "detail", detail);
    }
    return rows;
}

/* Waits up to 5 s for `count` events (the writer commits in the background); returns them. */
static json_t *wait_audit_events(struct ts_server *srv, const char *type, const char *consultation,
                                 size_t count)
{
    json_t *rows = NULL;
    for (int64_t deadline = base_now_ms() + 5000;; sleep_ms(50)) {
        json_decref(rows);
        rows = audit_events(srv, type, consultation);
        if (json_array_size(rows) >= count || base_now_ms() >= deadline)
            return rows;
    }
}

/* Checks one kind of a media_summary's detail; prints its figures into `out`. */
static void check_summary_kind(json_t *detail, const char *kind, const char *codec, char *out,
                               size_t cap)
{
    json_t *k = json_object_get(detail, kind);
    assert_true(json_is_object(k));
    json_t *in = json_object_get(k, "received"), *sent = json_object_get(k, "sent");
    json_int_t in_packets = json_integer_value(json_object_get(in, "packets"));
    json_int_t out_packets = json_integer_value(json_object_get(sent, "packets"));
    snprintf(out, cap,
             "%s %s: from the browser %lld packets / %lld bytes, lost %lld, jitter %.2f ms; to it "
             "%lld packets / %lld bytes, it reports %lld lost (last %.1f%%)",
             kind, json_string_value(json_object_get(k, "codec")), (long long)in_packets,
             (long long)json_integer_value(json_object_get(in, "bytes")),
             (long long)json_integer_value(json_object_get(in, "lost")),
             json_number_value(json_object_get(in, "jitter_ms")), (long long)out_packets,
             (long long)json_integer_value(json_object_get(sent, "bytes")),
             (long long)json_integer_value(json_object_get(sent, "peer_reported_lost")),
             json_number_value(json_object_get(sent, "peer_fraction_lost_pct")));
    assert_string_equal(json_string_value(json_object_get(k, "codec")), codec);
    assert_true(in_packets > 0);
    assert_true(out_packets > 0);
    assert_true(json_integer_value(json_object_get(in, "bytes")) > in_packets * 12);
    assert_true(json_integer_value(json_object_get(sent, "bytes")) > out_packets * 12);
    assert_true(json_number_value(json_object_get(in, "jitter_ms")) >= 0);
    /* The test peers report on what they receive (nothing lost on loopback). */
    assert_true(json_is_integer(json_object_get(sent, "peer_reported_lost")));
    assert_true(json_is_number(json_object_get(sent, "peer_fraction_lost_pct")));
}

/*
 * The two media_summary events of `consultation`: one per participant, both
 * "ok", with media both ways of both kinds, Opus and VP8 (what the test peers
 * offer), a measured round trip and the peers' loopback addresses.
 */
static void check_media_summaries(struct call *c, const char *consultation)
{
    json_t *rows = wait_audit_events(c->srv, "media_summary", consultation, 2);
    assert_int_equal(json_array_size(rows), 2);
    bool seen_patient = false, seen_doctor = false;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *role = json_string_value(json_object_get(row, "actor_role"));
        const char *actor = json_string_value(json_object_get(row, "actor_id"));
        json_t *d = json_object_get(row, "detail");
        json_t *ice = json_object_get(d, "ice");
        const char *remote = json_string_value(json_object_get(ice, "remote"));
        char audio[512], video[512];
        check_summary_kind(d, "audio", "opus", audio, sizeof(audio));
        check_summary_kind(d, "video", "VP8", video, sizeof(video));
        print_message("media_summary %s %s (%s, from %s): %.1f s, rtt %.2f ms, ice %s %s %s -> "
                      "port %lld\n  %s\n  %s\n",
                      role, actor, json_string_value(json_object_get(row, "outcome")),
                      json_string_value(json_object_get(row, "source")),
                      json_number_value(json_object_get(d, "duration_s")),
                      json_number_value(json_object_get(d, "rtt_ms")),
                      json_string_value(json_object_get(ice, "protocol")),
                      json_string_value(json_object_get(ice, "type")), remote ? remote : "-",
                      (long long)json_integer_value(json_object_get(ice, "local_port")), audio,
                      video);
        assert_string_equal(json_string_value(json_object_get(row, "outcome")), "ok");
        assert_true(json_number_value(json_object_get(d, "duration_s")) > 0);
        assert_true(json_number_value(json_object_get(d, "rtt_ms")) >= 0);
        assert_string_equal(json_string_value(json_object_get(ice, "protocol")), "udp");
        assert_string_equal(json_string_value(json_object_get(ice, "type")), "host");
        assert_non_null(remote);
        assert_true(strncmp(remote, "127.0.0.1:", 10) == 0);
        assert_int_equal(json_integer_value(json_object_get(ice, "local_port")),
                         ts_server_media_port(c->srv));
        if (strcmp(role, "patient") == 0) {
            assert_false(seen_patient);
            seen_patient = true;
            assert_string_equal(actor, consultation);
        } else {
            assert_string_equal(role, "doctor");
            assert_false(seen_doctor);
            seen_doctor = true;
            assert_string_equal(actor, DOCTOR_NAME);
        }
    }
    assert_true(seen_patient && seen_doctor);
    json_decref(rows);
    /* The sessions view carries both summaries as the consultation's quality. */
    char cmd[1024], line[256] = "";
    snprintf(cmd, sizeof(cmd),
             "sqlite3 -readonly '%s/data/audit.db' \"SELECT json_extract(quality, "
             "'$.patient.audio.codec') || ' ' || json_extract(quality, '$.doctor.video.codec') "
             "FROM sessions WHERE consultation = '%s'\"",
             ts_server_dir(c->srv), consultation);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_int_equal(pclose(f), 0);
    assert_string_equal(line, "opus VP8\n");
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

/* Waits until `peer` has decoded audio and seen at least `video` video packets. */
static void wait_media(struct tp_peer *peer, uint64_t video, struct tp_stats *st)
{
    for (int64_t deadline = base_now_ms() + 10000; base_now_ms() < deadline; sleep_ms(100)) {
        tp_peer_stats(peer, st);
        if (st->video_received >= video && st->audio_decoded_samples >= 48000 &&
            st->audio_peak_hz > 0)
            return;
    }
    print_error("media did not arrive: video %llu, audio samples %llu, peak %.1f Hz\n",
                (unsigned long long)st->video_received,
                (unsigned long long)st->audio_decoded_samples, st->audio_peak_hz);
    fail();
}

static void test_tone_and_video_cross(void **state)
{
    (void)state;
    struct call c;
    call_with_peers(&c);
    struct tp_peer *patient = c.patient_peer, *doctor = c.doctor_peer;

    struct tp_stats at_doctor, at_patient;
    wait_media(doctor, 300, &at_doctor);
    wait_media(patient, 300, &at_patient);
    sleep_ms(1000); /* a full second of steady audio for the frequency estimate */
    tp_peer_stats(doctor, &at_doctor);
    tp_peer_stats(patient, &at_patient);
    print_message("doctor hears %.1f Hz (%llu audio, %llu video packets); patient hears %.1f Hz "
                  "(%llu audio, %llu video)\n",
                  at_doctor.audio_peak_hz, (unsigned long long)at_doctor.audio_received,
                  (unsigned long long)at_doctor.video_received, at_patient.audio_peak_hz,
                  (unsigned long long)at_patient.audio_received,
                  (unsigned long long)at_patient.video_received);
    assert_true(fabs(at_doctor.audio_peak_hz - 440) <= 10);
    assert_true(fabs(at_patient.audio_peak_hz - 880) <= 10);
    /* Each receives the other's video, byte for byte, in order. */
    assert_int_equal(at_doctor.last_video_tag_received, PATIENT_TAG);
    assert_int_equal(at_patient.last_video_tag_received, DOCTOR_TAG);
    assert_int_equal(at_doctor.video_payload_mismatches, 0);
    assert_int_equal(at_patient.video_payload_mismatches, 0);
    assert_int_equal(at_doctor.video_out_of_order, 0);
    assert_int_equal(at_patient.video_out_of_order, 0);
    assert_int_equal(at_doctor.srtp_errors, 0);
    assert_int_equal(at_patient.srtp_errors, 0);
    assert_true(metric(c.srv, "tabib_media_rtp_relayed_total{worker=\"0\"}") >= 600);
    assert_true(metric(c.srv, "tabib_media_dtls_connected_total{worker=\"0\"}") == 2);

    /* The doctor ends it: each participant's media is summed up in the audit log. */
    ws_send(c.doctor, json_pack("{s:s, s:s, s:s}", "type", "end", "id", "d9", "consultation",
                                c.consultation));
    json_decref(ws_expect(c.doctor, "ended", WS_TIMEOUT_MS));
    check_media_summaries(&c, c.consultation);
    call_free(&c);
}

static void test_wrong_fingerprint_refused(void **state)
{
    (void)state;
    struct call c;
    call_start_one_worker(&c);
    struct tp_peer *liar = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, true, 0);
    free(offer_answer(c.patient, liar));
    assert_int_equal(tp_peer_start(liar), 0);
    assert_int_equal(tp_peer_wait_connected(liar, CONNECT_TIMEOUT_MS), -1);
    char *reason = ws_expect_media(c.patient, "ended", WS_TIMEOUT_MS);
    assert_non_null(reason);
    assert_string_equal(reason, "fingerprint");
    free(reason);
    struct tp_stats st;
    tp_peer_stats(liar, &st);
    assert_false(st.connected);
    assert_true(
        metric(c.srv, "tabib_media_dtls_failures_total{worker=\"0\",reason=\"fingerprint\"}") == 1);
    assert_true(metric(c.srv, "tabib_media_legs{worker=\"0\"}") == 0);
    call_free(&c);
}

/* The value of `a=<attr>:` in `sdp` into `out`. */
static void sdp_attribute(const char *sdp, const char *attr, char *out, size_t cap)
{
    const char *p = strstr(sdp, attr);
    assert_non_null(p);
    p += strlen(attr);
    size_t n = strcspn(p, "\r\n");
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Sends a Binding request keyed with `pwd` from a fresh socket; true when answered. */
static bool binding_answered(uint16_t port, const char *server_ufrag, const char *peer_ufrag,
                             const char *pwd)
{
    struct media_stun_ctx *ctx = media_stun_ctx_new();
    assert_non_null(ctx);
    uint8_t txid[MEDIA_STUN_TXID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct media_stun_request_params p = {.txid = txid,
                                          .remote_ufrag = server_ufrag,
                                          .local_ufrag = peer_ufrag,
                                          .remote_pwd = pwd,
                                          .priority = 1862270975u,
                                          .controlling = true,
                                          .tie_breaker = 42,
                                          .use_candidate = true};
    uint8_t req[512];
    int n = media_stun_build_binding_request(ctx, &p, req, sizeof(req));
    assert_true(n > 0);
    media_stun_ctx_free(ctx);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(sendto(fd, req, (size_t)n, 0, (struct sockaddr *)&to, sizeof(to)), n);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    bool answered = poll(&pfd, 1, 500) == 1;
    close(fd);
    return answered;
}

static void test_bad_message_integrity_ignored(void **state)
{
    (void)state;
    struct call c;
    call_start_one_worker(&c);
    struct tp_peer *patient = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    char *offer = tp_peer_offer(patient);
    char peer_ufrag[300];
    sdp_attribute(offer, "a=ice-ufrag:", peer_ufrag, sizeof(peer_ufrag));
    free(offer);
    char *answer = offer_answer(c.patient, patient);
    char ufrag[64], pwd[128];
    sdp_attribute(answer, "a=ice-ufrag:", ufrag, sizeof(ufrag));
    sdp_attribute(answer, "a=ice-pwd:", pwd, sizeof(pwd));
    free(answer);
    uint16_t port = ts_server_media_port(c.srv);
    double refused0 = metric(c.srv, "tabib_media_stun_refused_total{worker=\"0\"}");
    /* The right password is answered (so the check below can fail)... */
    assert_true(binding_answered(port, ufrag, peer_ufrag, pwd));
    /* ...a wrong one is not, and is counted. */
    char wrong[128];
    snprintf(wrong, sizeof(wrong), "%s", pwd);
    wrong[0] = wrong[0] == 'x' ? 'y' : 'x';
    assert_false(binding_answered(port, ufrag, peer_ufrag, wrong));
    assert_true(metric(c.srv, "tabib_media_stun_refused_total{worker=\"0\"}") == refused0 + 1);
    call_free(&c);
}

static void test_garbage_counted_and_dropped(void **state)
{
    (void)state;
    struct call c;
    call_with_peers(&c);
    struct tp_peer *patient = c.patient_peer, *doctor = c.doctor_peer;
    struct tp_stats before;
    wait_media(doctor, 100, &before);

    double short0 = metric(c.srv, DROPPED("too_short")),
           unknown0 = metric(c.srv, DROPPED("unknown_kind")),
           dtls0 = metric(c.srv, DROPPED("dtls")), srtp0 = metric(c.srv, DROPPED("srtp")),
           refused0 = metric(c.srv, "tabib_media_stun_refused_total{worker=\"0\"}");
    /* From the patient's own address, so each reaches its leg's DTLS or SRTP. */
    uint8_t junk[600];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    const uint8_t stun_truncated[] = {0x00, 0x01, 0x00, 0x50, 0x21, 0x12, 0xa4, 0x42, 1, 2};
    const uint8_t dtls_truncated[] = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x00};
    const uint8_t dtls_app_data[] = {23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4};
    const uint8_t rtp_short[] = {0x80, 0x6f, 0, 1, 0};
    uint8_t rtp_garbage[200] = {0x80, 0x6f, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef};
    memcpy(rtp_garbage + 12, junk, sizeof(rtp_garbage) - 12);
    uint8_t rtcp_garbage[64] = {0x80, 200, 0, 15, 0xde, 0xad, 0xbe, 0xef};
    memcpy(rtcp_garbage + 8, junk, sizeof(rtcp_garbage) - 8);
    uint8_t unknown[100] = {0x42};
    memcpy(unknown + 1, junk, sizeof(unknown) - 1);
    for (int round = 0; round < 5; round++) {
        assert_int_equal(tp_peer_send_raw(patient, stun_truncated, sizeof(stun_truncated)), 0);
        assert_int_equal(tp_peer_send_raw(patient, dtls_truncated, sizeof(dtls_truncated)), 0);
        assert_int_equal(tp_peer_send_raw(patient, dtls_app_data, sizeof(dtls_app_data)), 0);
        assert_int_equal(tp_peer_send_raw(patient, rtp_short, sizeof(rtp_short)), 0);
        assert_int_equal(tp_peer_send_raw(patient, rtp_garbage, sizeof(rtp_garbage)), 0);
        assert_int_equal(tp_peer_send_raw(patient, rtcp_garbage, sizeof(rtcp_garbage)), 0);
        assert_int_equal(tp_peer_send_raw(patient, unknown, sizeof(unknown)), 0);
        assert_int_equal(tp_peer_send_raw(patient, junk, 3), 0);
    }
    sleep_ms(1000);
    print_message("dropped: too_short +%.0f, unknown_kind +%.0f, dtls +%.0f, srtp +%.0f; "
                  "stun refused +%.0f\n",
                  metric(c.srv, DROPPED("too_short")) - short0,
                  metric(c.srv, DROPPED("unknown_kind")) - unknown0,
                  metric(c.srv, DROPPED("dtls")) - dtls0, metric(c.srv, DROPPED("srtp")) - srtp0,
                  metric(c.srv, "tabib_media_stun_refused_total{worker=\"0\"}") - refused0);
    assert_true(metric(c.srv, DROPPED("too_short")) >= short0 + 10); /* rtp_short and junk[3] */
    assert_true(metric(c.srv, DROPPED("unknown_kind")) >= unknown0 + 5);
    assert_true(metric(c.srv, DROPPED("srtp")) >= srtp0 + 10); /* RTP and RTCP garbage */
    assert_true(metric(c.srv, "tabib_media_stun_refused_total{worker=\"0\"}") >= refused0 + 5);
    /* DTLS garbage after the handshake: dropped by the leg (counted or silently ignored by
     * OpenSSL, RFC 6347 4.1.2.7), and the leg lives on. */
    assert_true(metric(c.srv, "tabib_media_legs{worker=\"0\"}") == 2);

    /* The server is unharmed: media still flows both ways, untouched. */
    struct tp_stats after;
    wait_media(doctor, before.video_received + 100, &after);
    assert_int_equal(after.video_payload_mismatches, 0);
    assert_true(fabs(after.audio_peak_hz - 440) <= 10);
    tp_peer_stats(patient, &after);
    assert_true(after.video_received > 0);
    struct tc_response r;
    assert_int_equal(tc_https_get(ts_server_port(c.srv), "/healthz", &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    call_free(&c);
}

static void test_silent_leg_ends_after_consent_timeout(void **state)
{
    (void)state;
    struct call c;
    const char *args[] = {"--media-workers", "1", "--consent-timeout-s", "3", NULL};
    call_start(&c, args);
    struct tp_peer *patient = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 500);
    struct tp_peer *doctor = c.doctor_peer = new_peer("doctor", 880, DOCTOR_TAG, false, 500);
    connect_both(&c, patient, doctor);
    int64_t silent_at = base_now_ms();
    tp_peer_set_silent(patient, true);
    char *reason = ws_expect_media(c.patient, "ended", 10000);
    int64_t took = base_now_ms() - silent_at;
    print_message("the silent leg ended after %lld ms (consent timeout 3000 ms)\n",
                  (long long)took);
    assert_non_null(reason);
    assert_string_equal(reason, "consent_timeout");
    free(reason);
    assert_true(took >= 2000); /* not before the timeout (less the last check's age) */
    assert_true(metric(c.srv, "tabib_media_legs_expired_total{worker=\"0\"}") == 1);
    /* The doctor, still checking, keeps their leg. */
    assert_true(metric(c.srv, "tabib_media_legs{worker=\"0\"}") == 1);
    call_free(&c);
}

/* Offers for `peer` over `ws`, starts it and waits until it is connected. */
static void connect_one(struct tc_ws *ws, struct tp_peer *peer)
{
    free(offer_answer(ws, peer));
    assert_int_equal(tp_peer_start(peer), 0);
    assert_int_equal(tp_peer_wait_connected(peer, CONNECT_TIMEOUT_MS), 0);
    free(ws_expect_media(ws, "connected", WS_TIMEOUT_MS));
}

/* Receives until a queue update lists a patient with "ready": true. */
static void expect_ready_in_queue(struct tc_ws *doctor)
{
    int64_t deadline = base_now_ms() + WS_TIMEOUT_MS;
    for (;;) {
        json_t *q = ws_expect(doctor, "queue", (int)(deadline - base_now_ms()));
        json_t *first = json_array_get(json_object_get(q, "patients"), 0);
        bool ready = json_is_true(json_object_get(first, "ready"));
        json_decref(q);
        if (ready)
            return;
    }
}

/*
 * A waiting patient's leg loops their own media back (the self-test): they
 * receive their own video and tone through the relay, the server says
 * "flowing", and the doctors watching the queue see them ready.
 */
static void test_waiting_patient_sees_themselves(void **state)
{
    (void)state;
    struct call c;
    const char *args[] = {"--media-workers", "1", NULL};
    clinic_open(&c, args);
    c.patient = patient_join(&c, "Self Test");
    struct tp_peer *patient = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    connect_one(c.patient, patient);
    free(ws_expect_media(c.patient, "flowing", WS_TIMEOUT_MS));
    expect_ready_in_queue(c.doctor);
    struct tp_stats st;
    wait_media(patient, 100, &st);
    print_message("the waiting patient hears %.1f Hz of their own and sees their own video "
                  "(%llu packets)\n",
                  st.audio_peak_hz, (unsigned long long)st.video_received);
    assert_int_equal(st.last_video_tag_received, PATIENT_TAG);
    assert_true(fabs(st.audio_peak_hz - 440) <= 10);
    assert_int_equal(st.video_payload_mismatches, 0);
    call_free(&c);
}

/*
 * The doctor's leg lives across patients: after "call next" it carries the
 * next patient's media on the same SSRCs with sequence numbers and
 * timestamps that just go on, and no renegotiation.
 */
static void test_call_next_keeps_the_doctors_streams(void **state)
{
    (void)state;
    struct call c;
    const char *args[] = {"--media-workers", "1", NULL};
    clinic_open(&c, args);
    struct tp_peer *doctor = c.doctor_peer = new_peer("doctor", 880, DOCTOR_TAG, false, 0);
    connect_one(c.doctor, doctor);
    c.patient = patient_join(&c, "First");
    c.patient2 = patient_join(&c, "Second");
    c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    c.patient2_peer = new_peer("patient2", 660, PATIENT_TAG + 1, false, 0);
    connect_one(c.patient, c.patient_peer);
    connect_one(c.patient2, c.patient2_peer);

    char *first = call_next_and_accept(&c, c.patient);
    struct tp_stats st;
    wait_media(doctor, 100, &st);
    assert_int_equal(st.last_video_tag_received, PATIENT_TAG);
    ws_send(c.doctor,
            json_pack("{s:s, s:s, s:s}", "type", "end", "id", "d4", "consultation", first));
    free(first);
    json_decref(ws_expect(c.doctor, "ended", WS_TIMEOUT_MS));
    sleep_ms(300);

    uint64_t called_at = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        called_at = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    }
    free(call_next_and_accept(&c, c.patient2));
    for (int64_t deadline = base_now_ms() + 5000; base_now_ms() < deadline; sleep_ms(5)) {
        tp_peer_stats(doctor, &st);
        if (st.last_video_tag_received == PATIENT_TAG + 1)
            break;
    }
    assert_int_equal(st.last_video_tag_received, PATIENT_TAG + 1);
    double ms = (double)(st.video_tag_since_us - called_at) / 1000.0;
    wait_media(doctor, st.video_received + 100, &st);
    print_message("call next -> the second patient's video at the doctor in %.1f ms; "
                  "doctor's streams: %llu SSRC changes, %llu/%llu video/audio sequence jumps, "
                  "%llu/%llu timestamps backwards; now hearing %.1f Hz\n",
                  ms, (unsigned long long)st.ssrc_changes, (unsigned long long)st.video_seq_jumps,
                  (unsigned long long)st.audio_seq_jumps, (unsigned long long)st.video_ts_backwards,
                  (unsigned long long)st.audio_ts_backwards, st.audio_peak_hz);
    assert_true(ms < 1000); /* the goal is 300 ms on loopback; the figure above is the measure */
    assert_int_equal(st.ssrc_changes, 0);
    assert_int_equal(st.video_seq_jumps, 0);
    assert_int_equal(st.audio_seq_jumps, 0);
    assert_int_equal(st.video_ts_backwards, 0);
    assert_int_equal(st.audio_ts_backwards, 0);
    assert_true(fabs(st.audio_peak_hz - 660) <= 10);
    assert_int_equal(st.video_payload_mismatches, 0);
    call_free(&c);
}

/*
 * Loss recovery: the doctor's peer loses 5% of its video at random on
 * purpose and NACKs it, as a browser does; the server answers from its
 * packet cache as RTX, and every loss is recovered byte for byte.
 */
static void test_lost_packets_recovered_from_the_cache(void **state)
{
    (void)state;
    struct call c;
    call_start_one_worker(&c);
    struct tp_peer *patient = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    struct tp_peer *doctor = c.doctor_peer = new_peer_losing("doctor", 880, DOCTOR_TAG, 5.0);
    connect_both(&c, patient, doctor);
    struct tp_stats st;
    wait_media(doctor, 600, &st);
    sleep_ms(600); /* the last losses' recovery */
    tp_peer_stats(doctor, &st);
    double retransmitted = metric(c.srv, "tabib_media_nack_retransmitted_total{worker=\"0\"}");
    double nacks = metric(c.srv, "tabib_media_nacks_received_total{worker=\"0\"}");
    print_message("doctor: %llu video packets, %llu lost on purpose (5%% at random), %llu "
                  "recovered (%llu by RTX, "
                  "slowest %.1f ms), %llu unrecovered; server: %.0f NACKs, %.0f retransmitted\n",
                  (unsigned long long)st.video_received, (unsigned long long)st.video_dropped,
                  (unsigned long long)st.video_recovered, (unsigned long long)st.rtx_received,
                  (double)st.video_recovery_max_us / 1000.0,
                  (unsigned long long)st.video_unrecovered, nacks, retransmitted);
    assert_true(st.video_dropped >= 20);
    assert_int_equal(st.video_unrecovered, 0);
    assert_true(st.video_recovered + st.video_missing + 1 >= st.video_dropped);
    assert_true(st.rtx_received >= st.video_recovered); /* RTX was negotiated: it is used */
    assert_int_equal(st.video_payload_mismatches, 0);
    assert_true(retransmitted >= (double)st.video_recovered);
    call_free(&c);
}

/* A key-frame request from the doctor reaches the patient's browser, which sends one. */
static void test_key_frame_request_reaches_the_source(void **state)
{
    (void)state;
    struct call c;
    call_with_peers(&c);
    struct tp_peer *patient = c.patient_peer, *doctor = c.doctor_peer;
    struct tp_stats st;
    wait_media(doctor, 100, &st);
    sleep_ms(400); /* past the relay's own key-frame requests at link time (300 ms apart) */
    tp_peer_stats(patient, &st);
    uint64_t before = st.pli_received;
    tp_peer_request_key_frame(doctor);
    for (int64_t deadline = base_now_ms() + 3000; base_now_ms() < deadline; sleep_ms(10)) {
        tp_peer_stats(patient, &st);
        if (st.pli_received > before)
            break;
    }
    print_message("PLIs at the patient: %llu before, %llu after the doctor's request; key frames "
                  "made on request: %llu\n",
                  (unsigned long long)before, (unsigned long long)st.pli_received,
                  (unsigned long long)st.key_frames_requested);
    assert_true(st.pli_received > before);
    call_free(&c);
}

/* A phone moving networks, then an ICE restart: the consultation and its media go on. */
static void test_address_change_and_ice_restart_keep_media(void **state)
{
    (void)state;
    struct call c;
    call_with_peers(&c);
    struct tp_peer *patient = c.patient_peer, *doctor = c.doctor_peer;
    struct tp_stats st;
    wait_media(doctor, 100, &st);

    tp_peer_change_address(patient);
    for (int64_t deadline = base_now_ms() + 5000; base_now_ms() < deadline; sleep_ms(10)) {
        tp_peer_stats(patient, &st);
        if (st.address_changes == 1)
            break;
    }
    assert_int_equal(st.address_changes, 1);
    tp_peer_stats(doctor, &st);
    wait_media(doctor, st.video_received + 100, &st); /* the patient's video still arrives */
    struct tp_stats at_patient;
    tp_peer_stats(patient, &at_patient);
    wait_media(patient, at_patient.video_received + 100, &at_patient); /* and reaches them */

    char *offer = tp_peer_restart_ice(patient);
    assert_non_null(offer);
    ws_send(c.patient,
            json_pack("{s:s, s:s, s:s}", "type", "ice_restart", "id", "r1", "sdp", offer));
    free(offer);
    json_t *a = ws_expect(c.patient, "answer", WS_TIMEOUT_MS);
    char err[256] = "";
    int rc =
        tp_peer_set_answer(patient, json_string_value(json_object_get(a, "sdp")), err, sizeof(err));
    if (rc != 0)
        print_error("restart answer refused: %s\n", err);
    json_decref(a);
    assert_int_equal(rc, 0);
    for (int64_t deadline = base_now_ms() + 5000; base_now_ms() < deadline; sleep_ms(10)) {
        tp_peer_stats(patient, &at_patient);
        if (at_patient.ice_restarts == 1)
            break;
    }
    assert_int_equal(at_patient.ice_restarts, 1);
    tp_peer_stats(doctor, &st);
    wait_media(doctor, st.video_received + 100, &st);
    tp_peer_stats(patient, &at_patient);
    wait_media(patient, at_patient.video_received + 100, &at_patient);
    print_message("after a move and an ICE restart: doctor %llu video packets (%llu lost for "
                  "good), patient %llu; DTLS handshakes on the server: %.0f\n",
                  (unsigned long long)st.video_received, (unsigned long long)st.video_unrecovered,
                  (unsigned long long)at_patient.video_received,
                  metric(c.srv, "tabib_media_dtls_connected_total{worker=\"0\"}"));
    assert_true(metric(c.srv, "tabib_media_dtls_connected_total{worker=\"0\"}") == 2);
    assert_true(metric(c.srv, "tabib_media_legs{worker=\"0\"}") == 2);
    assert_true(metric(c.srv, "tabib_media_ice_restarts_total") == 1);
    assert_int_equal(st.video_payload_mismatches, 0);
    call_free(&c);
}

/* Waits for {"type":"audio","who":<who>,"state":<state>}; returns when it came (ms). */
static int64_t expect_audio_state(struct tc_ws *ws, const char *who, const char *state,
                                  int timeout_ms)
{
    int64_t deadline = base_now_ms() + timeout_ms;
    for (;;) {
        json_t *m = ws_expect(ws, "audio", (int)(deadline - base_now_ms()));
        bool match = strcmp(json_string_value(json_object_get(m, "who")), who) == 0 &&
                     strcmp(json_string_value(json_object_get(m, "state")), state) == 0;
        json_decref(m);
        if (match)
            return base_now_ms();
    }
}

/*
 * A patient whose microphone sends digital silence: both sides are told
 * within 6 s, and again when the sound comes back. The doctor sees the
 * patient's speaking level meanwhile.
 */
static void test_silent_microphone_reported_to_both(void **state)
{
    (void)state;
    struct call c;
    call_with_peers(&c);
    struct tp_peer *patient = c.patient_peer;
    json_t *level = ws_expect(c.doctor, "audio_level", WS_TIMEOUT_MS);
    int speaking = (int)json_integer_value(json_object_get(level, "level"));
    json_decref(level);
    assert_true(speaking > 0);

    int64_t silent_at = base_now_ms();
    tp_peer_set_audio_silent(patient, true);
    int64_t doctor_told = expect_audio_state(c.doctor, "patient", "silent", 8000);
    int64_t patient_told = expect_audio_state(c.patient, "patient", "silent", 8000);
    print_message("speaking level %d; digital silence reported to the doctor after %lld ms, to "
                  "the patient after %lld ms; audio decodes on the server: %.0f\n",
                  speaking, (long long)(doctor_told - silent_at),
                  (long long)(patient_told - silent_at),
                  metric(c.srv, "tabib_media_audio_decodes_total{worker=\"0\"}"));
    assert_true(doctor_told - silent_at <= 6000);
    assert_true(patient_told - silent_at <= 6000);
    assert_true(doctor_told - silent_at >= 4500); /* the rule is 5 s of silence, not less */
    tp_peer_set_audio_silent(patient, false);
    expect_audio_state(c.doctor, "patient", "ok", 3000);

    /* The server stops with the consultation in progress (its peers still up): it ends with
     * server_shutdown and the media summaries still reach the audit log. */
    assert_int_equal(ts_server_stop(c.srv, NULL), 0);
    check_media_summaries(&c, c.consultation);
    call_free(&c);
}

/*
 * Limits from the receiving side: the doctor's peer reports 30% of what the
 * server sends it as lost (a weak downlink); the server tells the patient's
 * peer, the sender, to stay under what reaches the doctor (REMB).
 */
static void test_receivers_loss_limits_the_sender(void **state)
{
    (void)state;
    struct call c;
    call_start_one_worker(&c);
    struct tp_peer *patient = c.patient_peer = new_peer("patient", 440, PATIENT_TAG, false, 0);
    struct tp_config cfg = {.name = "doctor",
                            .tone_hz = 880,
                            .video_kbps = 600,
                            .video_tag = DOCTOR_TAG,
                            .report_loss_percent = 30};
    char err[256] = "";
    struct tp_peer *doctor = c.doctor_peer = tp_peer_new(&cfg, err, sizeof(err));
    assert_non_null(doctor);
    connect_both(&c, patient, doctor);
    struct tp_stats st;
    /* A few windows: the first one also holds the key frames asked for at the link. */
    for (int64_t deadline = base_now_ms() + 10000; base_now_ms() < deadline; sleep_ms(50)) {
        tp_peer_stats(patient, &st);
        if (st.remb_received >= 3)
            break;
    }
    struct tp_stats at_doctor;
    tp_peer_stats(doctor, &at_doctor);
    print_message("the doctor's feedback claims 30%% loss (%llu feedbacks); the patient was told "
                  "to stay under %.0f kbit/s (%llu REMBs); server REMBs: %.0f\n",
                  (unsigned long long)at_doctor.twcc_feedback_sent, (double)st.remb_bps / 1000.0,
                  (unsigned long long)st.remb_received,
                  metric(c.srv, "tabib_media_remb_sent_total{worker=\"0\"}"));
    assert_true(st.remb_received >= 3);
    /* ~700 kbit/s go to the doctor (600 video, key frames, audio, headers), less 15%. */
    assert_true(st.remb_bps >= 100000 && st.remb_bps < 800000);
    call_free(&c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tone_and_video_cross),
        cmocka_unit_test(test_wrong_fingerprint_refused),
        cmocka_unit_test(test_bad_message_integrity_ignored),
        cmocka_unit_test(test_garbage_counted_and_dropped),
        cmocka_unit_test(test_silent_leg_ends_after_consent_timeout),
        cmocka_unit_test(test_waiting_patient_sees_themselves),
        cmocka_unit_test(test_call_next_keeps_the_doctors_streams),
        cmocka_unit_test(test_lost_packets_recovered_from_the_cache),
        cmocka_unit_test(test_key_frame_request_reaches_the_source),
        cmocka_unit_test(test_address_change_and_ice_restart_keep_media),
        cmocka_unit_test(test_silent_microphone_reported_to_both),
        cmocka_unit_test(test_receivers_loss_limits_the_sender),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
