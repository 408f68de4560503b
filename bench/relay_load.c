/*
 * relay_load.c - N consultations through a real tabib, for CPU figures.
 *
 * Starts the server (one media worker), creates a doctor account per
 * consultation, and for each consultation a patient and a doctor C test
 * peer (tests/support/test_peer.h: real ICE, DTLS, SRTP, an Opus tone and
 * VP8-shaped video both ways) through the real signalling. After a warm-up
 * it measures for a while: the server's CPU time (utime + stime from
 * /proc/<pid>/stat), the packets it relayed (/metrics), and prints the CPU
 * per relayed packet. With --perf it also samples the server with
 * `perf record` so the script can say where that time goes (the audio
 * monitor's share, say). Loopback only.
 *
 *   relay_load [--consultations N] [--seconds S] [--video-kbps K] [--perf FILE]
 *
 * This is the seed of the benchmark issue's load generator, not it: there
 * is no ramp, no delay measurement and no Janus here.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"
#include "test_client.h"
#include "test_peer.h"
#include "test_server.h"

#define WS_TIMEOUT_MS 5000
#define PASSWORD      "correct horse battery"

static void die(const char *what)
{
    fprintf(stderr, "relay_load: %s\n", what);
    exit(1);
}

static void ws_send(struct tc_ws *ws, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text || tc_ws_send_text(ws, text, strlen(text)) != 0)
        die("cannot send on the WebSocket");
    free(text);
}

/* The next message of `type` (others skipped); dies on an error reply or a timeout. */
static json_t *ws_expect(struct tc_ws *ws, const char *type)
{
    for (int64_t deadline = base_now_ms() + WS_TIMEOUT_MS;;) {
        int64_t left = deadline - base_now_ms();
        char *text = NULL;
        size_t len = 0;
        if (left <= 0 || tc_ws_recv(ws, &text, &len, (int)left) != TC_WS_TEXT)
            die("no reply from the server");
        json_t *msg = json_loads(text, 0, NULL);
        const char *got = json_string_value(json_object_get(msg, "type"));
        if (got && strcmp(got, type) == 0) {
            free(text);
            return msg;
        }
        if (got && strcmp(got, "error") == 0) {
            fprintf(stderr, "relay_load: waiting for %s: %s\n", type, text);
            exit(1);
        }
        free(text);
        json_decref(msg);
    }
}

/* Offers for `peer` over `ws` and applies the answer. */
static void offer(struct tc_ws *ws, struct tp_peer *peer)
{
    char *sdp = tp_peer_offer(peer);
    ws_send(ws, json_pack("{s:s, s:s, s:s}", "type", "offer", "id", "o", "sdp", sdp));
    free(sdp);
    json_t *a = ws_expect(ws, "answer");
    char err[256];
    if (tp_peer_set_answer(peer, json_string_value(json_object_get(a, "sdp")), err, sizeof(err)))
        die(err);
    json_decref(a);
}

/* utime + stime of `pid`, in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = ts_read_file(path, NULL);
    if (!text)
        return -1;
    /* Fields after the command name (which may hold spaces) start after the last ')'. */
    char *p = strrchr(text, ')');
    long long utime = 0, stime = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime);
    free(text);
    return utime + stime;
}

/* The value of the /metrics sample line starting with `prefix`. */
static double metric(uint16_t port, const char *prefix)
{
    struct tc_response r;
    double v = -1;
    if (tc_https_get(port, "/metrics", &r) != 0)
        return v;
    const char *at = strstr(r.body, prefix);
    if (at)
        v = strtod(strchr(at, ' ') + 1, NULL);
    tc_response_free(&r);
    return v;
}

int main(int argc, char **argv)
{
    unsigned consultations = 10, seconds = 10, video_kbps = 1200;
    const char *perf_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--consultations") == 0)
            consultations = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--video-kbps") == 0)
            video_kbps = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--perf") == 0)
            perf_file = argv[i + 1];
        else
            die("usage: relay_load [--consultations N] [--seconds S] [--video-kbps K] [--perf F]");
    }
    signal(SIGPIPE, SIG_IGN);
    const char *args[] = {"--media-workers",
                          "1",
                          "--max-connections-per-address",
                          "10000",
                          "--message-rate",
                          "1000",
                          "--message-burst",
                          "1000",
                          NULL};
    struct ts_server *srv = ts_server_start(args);
    if (!srv)
        die("the server did not start");
    uint16_t port = ts_server_port(srv);
    char pw_path[512], data_dir[512];
    snprintf(pw_path, sizeof(pw_path), "%s/pw", ts_server_dir(srv));
    snprintf(data_dir, sizeof(data_dir), "%s/data", ts_server_dir(srv));
    FILE *f = fopen(pw_path, "w");
    if (!f)
        die("cannot write the password file");
    fprintf(f, "%s\n", PASSWORD);
    fclose(f);

    struct tc_ws **doctors = calloc(consultations, sizeof(*doctors));
    struct tc_ws **patients = calloc(consultations, sizeof(*patients));
    struct tp_peer **peers = calloc(2 * (size_t)consultations, sizeof(*peers));
    for (unsigned i = 0; i < consultations; i++) {
        char name[32];
        snprintf(name, sizeof(name), "dr.load%u", i);
        const char *add[] = {"user",   "add",        name,      "--role",
                             "doctor", "--clinics",  "general", "--password-file",
                             pw_path,  "--data-dir", data_dir,  NULL};
        if (ts_run_to_exit(add, NULL, 20000) != 0)
            die("tabib user add failed");
        doctors[i] = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
        patients[i] = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
        if (!doctors[i] || !patients[i])
            die("cannot open a WebSocket");
        ws_send(doctors[i], json_pack("{s:s, s:s, s:s, s:s}", "type", "login", "id", "l",
                                      "username", name, "password", PASSWORD));
        json_decref(ws_expect(doctors[i], "signed_in"));
        ws_send(doctors[i], json_pack("{s:s, s:s, s:s, s:b}", "type", "duty", "id", "d", "clinic",
                                      "general", "on", 1));
        json_decref(ws_expect(doctors[i], "duty"));
        ws_send(patients[i], json_pack("{s:s, s:s, s:s, s:s}", "type", "join", "id", "j", "clinic",
                                       "general", "name", "Load"));
        json_decref(ws_expect(patients[i], "joined"));
        ws_send(doctors[i],
                json_pack("{s:s, s:s, s:s}", "type", "call_next", "id", "c", "clinic", "general"));
        json_decref(ws_expect(doctors[i], "called"));
        json_decref(ws_expect(patients[i], "called"));
        ws_send(patients[i], json_pack("{s:s, s:s}", "type", "accept", "id", "a"));
        json_decref(ws_expect(patients[i], "consultation_started"));
        for (unsigned side = 0; side < 2; side++) {
            struct tp_config cfg = {.name = side ? "doctor" : "patient",
                                    .tone_hz = side ? 880 : 440,
                                    .video_kbps = video_kbps,
                                    .video_fps = 30};
            char err[256];
            struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
            if (!p)
                die(err);
            peers[2 * i + side] = p;
            offer(side ? doctors[i] : patients[i], p);
            if (tp_peer_start(p) != 0 || tp_peer_wait_connected(p, 10000) != 0)
                die("a peer did not connect");
        }
    }
    sleep(2); /* warm-up: key frames, bandwidth feedback settled */
    pid_t pid = ts_server_pid(srv);
    pid_t perf = 0;
    if (perf_file) {
        char pid_text[16];
        snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
        perf = fork();
        if (perf == 0) {
            execlp("perf", "perf", "record", "-q", "-F", "2999", "-g", "-o", perf_file, "-p",
                   pid_text, (char *)NULL);
            _exit(127);
        }
    }
    double relayed0 = metric(port, "tabib_media_rtp_relayed_total{worker=\"0\"}");
    double decodes0 = metric(port, "tabib_media_audio_decodes_total{worker=\"0\"}");
    long long ticks0 = cpu_ticks(pid);
    int64_t t0 = base_now_ms();
    sleep(seconds);
    long long ticks1 = cpu_ticks(pid);
    int64_t t1 = base_now_ms();
    double relayed1 = metric(port, "tabib_media_rtp_relayed_total{worker=\"0\"}");
    double decodes1 = metric(port, "tabib_media_audio_decodes_total{worker=\"0\"}");
    if (perf > 0) {
        kill(perf, SIGINT);
        waitpid(perf, NULL, 0);
    }
    double secs = (double)(t1 - t0) / 1000.0;
    double cpu_s = (double)(ticks1 - ticks0) / (double)sysconf(_SC_CLK_TCK);
    double pkts = relayed1 - relayed0;
    uint64_t lost = 0, mismatches = 0;
    for (unsigned i = 0; i < 2 * consultations; i++) {
        struct tp_stats st;
        tp_peer_stats(peers[i], &st);
        mismatches += st.video_payload_mismatches;
        lost += st.video_unrecovered;
    }
    printf(
        "{\"consultations\":%u,\"video_kbps\":%u,\"seconds\":%.2f,\"relayed_packets_per_s\":%.0f,"
        "\"server_cpu_s\":%.3f,\"server_cpu_share\":%.3f,\"cpu_us_per_relayed_packet\":%.3f,"
        "\"audio_decodes_per_s\":%.1f,\"video_unrecovered\":%" PRIu64
        ",\"video_mismatches\":%" PRIu64 "}\n",
        consultations, video_kbps, secs, pkts / secs, cpu_s, cpu_s / secs,
        pkts > 0 ? cpu_s * 1e6 / pkts : 0.0, (decodes1 - decodes0) / secs, lost, mismatches);
    for (unsigned i = 0; i < 2 * consultations; i++)
        tp_peer_free(peers[i]);
    for (unsigned i = 0; i < consultations; i++) {
        tc_ws_close(doctors[i]);
        tc_ws_close(patients[i]);
    }
    int status = ts_server_stop(srv, NULL);
    ts_server_free(srv);
    free(peers);
    free(doctors);
    free(patients);
    return status == 0 ? 0 : 1;
}
