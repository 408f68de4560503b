/*
 * loadgen.c - the benchmark's load generator: N consultations (or echo
 * sessions) of real ICE/DTLS/SRTP legs against a media server, ramped until
 * the server (or the load generator) gives out.
 *
 *   loadgen --target tabib-relay|tabib-echo|janus-echo|udp-forward
 *           [--ramp 1,10,50,100,200,...] [--warmup S] [--seconds S]
 *           [--video-kbps K] [--server-cpu C] [--loadgen-cpu C]
 *           [--janus-port P --janus-pid PID] [--json FILE] [--label TEXT]
 *           [--perf FILE --perf-units N]  (perf record of the server during step N)
 *           [--segmentation on|off] [--receiver-gro on|off]
 *           [--repeat N]  (each step measured N times; every delay p99 is kept)
 *
 * Targets:
 *   tabib-relay  starts tabib (one media worker) and makes each unit a
 *                consultation through the real signalling: a patient joins,
 *                a doctor calls the next patient, both offer; two legs.
 *   tabib-echo   each unit a waiting patient whose leg is in the pre-call
 *                self-test: the server sends the patient's media back.
 *   janus-echo   each unit an EchoTest session of a running Janus
 *                (bench/run starts it; --janus-port, --janus-pid).
 *   udp-forward  starts bench/udp_forward and makes each unit a pair of
 *                plain legs: the same packets with no crypto at all.
 * Each leg is set up by a C test peer (tests/support/test_peer.h: offer,
 * ICE, DTLS, SRTP keys), then handed to the media engine
 * (loadgen_media.h), which sends Opus and VP8-shaped video both ways and
 * measures what it receives.
 *
 * At each step of the ramp it adds units up to the step's count, waits
 * --warmup seconds, then measures for --seconds: packets and bits the server
 * relayed per second (what the legs received), loss, duplicates and
 * reordering, the delay added per packet (p50/p99/p99.9, from the send stamp
 * in each packet to the kernel's arrival time), the set-up time of the new
 * legs (join to first media packet received), the server's CPU time (the sum
 * of its threads' run time from /proc/PID/task/TID/schedstat, and utime +
 * stime) and its resident memory. The ramp stops after a step whose loss is
 * above 0.1% or whose delay p99 is above 10 ms, or when the load generator's
 * media thread itself is saturated (then the server's limit was not reached,
 * and the step says so).
 *
 * --segmentation (default on) is the server's: Tabib's media_segmentation
 * and the forwarder's --segmentation, sending a run of one frame's packets
 * to one receiver as one UDP segmented send; Janus has no such option.
 * --receiver-gro (default on) is ours: the legs' sockets take UDP_GRO, so a
 * segmented run arrives as one buffer that the engine cuts into its
 * datagrams, and the receive path of the load generator's sockets is not
 * paid per datagram on the server's CPU (on loopback the receiver's kernel
 * path runs on the sender's CPU; over a real network it runs on the
 * receiving machine).
 *
 * The server and the load generator are pinned to different cores
 * (sched_setaffinity on every thread of the server, and on this process
 * before it starts a thread), so CPU figures are per server core.
 * Everything runs on 127.0.0.1.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "base.h"
#include "janus_client.h"
#include "loadgen_media.h"
#include "test_client.h"
#include "test_peer.h"
#include "test_server.h"

#define WS_TIMEOUT_MS   15000
#define PASSWORD        "correct horse battery"
#define MAX_STEPS       32
#define MAX_REPEATS     9
#define LOSS_LIMIT      0.001
#define DELAY_P99_LIMIT 10000.0 /* µs */
#define SATURATED_SHARE 0.97    /* the media thread busy this share of the time: it is the limit */

enum target { TABIB_RELAY, TABIB_ECHO, JANUS_ECHO, UDP_FORWARD };

static const char *const target_names[] = {"tabib-relay", "tabib-echo", "janus-echo",
                                           "udp-forward"};
static const char *const target_labels[] = {"Tabib relay", "Tabib echo (self-test)",
                                            "Janus EchoTest", "UDP forwarder (no crypto)"};

struct options {
    enum target target;
    unsigned ramp[MAX_STEPS];
    unsigned n_steps;
    double warmup_s, seconds;
    unsigned video_kbps;
    int server_cpu, loadgen_cpu;
    uint16_t janus_port;
    pid_t janus_pid;
    const char *json_path;
    const char *label;
    const char *forwarder;
    const char *perf_path; /* perf record of the server during the step of perf_units */
    unsigned perf_units;
    bool segmentation, receiver_gro;
    unsigned repeat; /* measurements per step (the delay p99 of each is kept) */
};

/* What a ramp step measured. */
struct step {
    unsigned units;
    double seconds;
    double relayed_pps, relayed_bps;
    double loss, duplicates, reordered;
    double undelivered; /* 1 - RTP received / RTP sent in the window: loss against what was sent */
    double delay_p50, delay_p99, delay_p999; /* µs */
    double setup_p50_ms, setup_p99_ms;
    unsigned setups;
    unsigned legs; /* in the engine at the end of the step */
    double server_cpu_s, server_cpu_share, server_utime_stime_s;
    double cpu_us_per_packet;
    double rss_mib, rss_per_unit_kib;
    double rss_marginal_kib; /* growth since the previous step, per unit added */
    double loadgen_cpu_share;
    double steal_share;   /* of the server's CPU: the hypervisor ran something else */
    unsigned legs_silent; /* legs that have received no media at all (the server drops them) */
    uint64_t srtp_errors, send_failures, socket_drops;
    bool loadgen_saturated;
    unsigned repeats;                   /* further measurements of the same load */
    double repeat_p99[MAX_REPEATS - 1]; /* their delay p99, µs */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------------------- */
/* The server's process                                                       */
/* ------------------------------------------------------------------------- */

static void pin_process(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        die("cannot list the threads of %d", (int)pid);
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.' && sched_setaffinity(atoi(de->d_name), sizeof(set), &set) != 0)
            die("cannot pin thread %s to CPU %d: %s", de->d_name, cpu, strerror(errno));
    closedir(d);
}

/* Run time of all the threads of `pid`, in seconds (schedstat: nanoseconds on a CPU). */
static double run_seconds(pid_t pid)
{
    char path[320];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    double total = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
        char *text = ts_read_file(path, NULL);
        if (text)
            total += strtod(text, NULL) / 1e9;
        free(text);
    }
    closedir(d);
    return total;
}

/* utime + stime of `pid` (all threads, ended ones included), in seconds. */
static double utime_stime_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = ts_read_file(path, NULL);
    if (!text)
        return -1;
    char *p = strrchr(text, ')');
    long long utime = 0, stime = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime);
    free(text);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Time the hypervisor ran something else while `cpu` wanted to run (steal), in seconds. */
static double steal_seconds(int cpu)
{
    char *text = ts_read_file("/proc/stat", NULL);
    char name[16];
    snprintf(name, sizeof(name), "\ncpu%d ", cpu);
    const char *at = text ? strstr(text, name) : NULL;
    unsigned long long v[8] = {0};
    if (at)
        sscanf(at + strlen(name), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7]);
    free(text);
    return (double)v[7] / (double)sysconf(_SC_CLK_TCK);
}

/* Resident memory of `pid` in MiB (VmRSS). */
static double rss_mib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *text = ts_read_file(path, NULL);
    double kib = -1;
    const char *at = text ? strstr(text, "VmRSS:") : NULL;
    if (at)
        kib = strtod(at + 6, NULL);
    free(text);
    return kib / 1024.0;
}

/* ------------------------------------------------------------------------- */
/* Tabib's signalling                                                         */
/* ------------------------------------------------------------------------- */

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
            die("no %s from the server", type);
        json_t *msg = json_loads(text, 0, NULL);
        const char *got = json_string_value(json_object_get(msg, "type"));
        if (got && strcmp(got, type) == 0) {
            free(text);
            return msg;
        }
        if (got && strcmp(got, "error") == 0)
            die("waiting for %s: %s", type, text);
        free(text);
        json_decref(msg);
    }
}

/* A test peer that connects and then hands its transport over (media_off). */
static struct tp_peer *new_peer(const char *name, unsigned video_kbps)
{
    struct tp_config cfg = {.name = name,
                            .tone_hz = 440,
                            .video_kbps = video_kbps,
                            .media_off = true,
                            .consent_interval_ms = 2000};
    char err[256];
    struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
    if (!p)
        die("%s", err);
    return p;
}

/* Applies `answer_sdp` to `p`, connects it and gives its transport to the engine. */
static void connect_and_add(struct lg_engine *e, struct tp_peer *p, const char *answer_sdp,
                            int64_t join_ns)
{
    char err[256];
    if (tp_peer_set_answer(p, answer_sdp, err, sizeof(err)) != 0)
        die("answer refused: %s", err);
    if (tp_peer_start(p) != 0 || tp_peer_wait_connected(p, 10000) != 0)
        die("a leg did not connect (ICE or DTLS)");
    struct tp_transport t;
    if (tp_peer_detach(p, &t) != 0)
        die("cannot take the leg's transport");
    if (lg_engine_add_leg(e, &t, join_ns) < 0)
        die("the media engine is full");
    tp_peer_free(p);
}

/* Offers for a new leg over `ws` and hands it to the engine once connected. */
static void tabib_leg(struct lg_engine *e, struct tc_ws *ws, const char *name, unsigned kbps,
                      int64_t join_ns)
{
    struct tp_peer *p = new_peer(name, kbps);
    char *sdp = tp_peer_offer(p);
    ws_send(ws, json_pack("{s:s, s:s, s:s}", "type", "offer", "id", "o", "sdp", sdp));
    free(sdp);
    json_t *a = ws_expect(ws, "answer");
    connect_and_add(e, p, json_string_value(json_object_get(a, "sdp")), join_ns);
    json_decref(a);
}

struct tabib {
    struct ts_server *srv;
    uint16_t port;
    char pw_path[512], data_dir[512];
    struct tc_ws **sockets; /* kept open: a closed socket would end its consultation */
    unsigned n_sockets;
};

static void tabib_start(struct tabib *t, unsigned max_units, bool segmentation)
{
    /* One clinic whose queue holds every waiting patient of the echo ramp (200 by default). */
    char conf[] = "/tmp/loadgen-tabib-XXXXXX";
    int fd = mkstemp(conf);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f)
        die("cannot write a configuration file");
    fprintf(f, "[clinic general]\nname_en = General Practice\nname_ar = General\n"
               "queue_limit = 100000\n");
    fclose(f);
    const char *args[] = {"--config",
                          conf,
                          "--media-workers",
                          "1",
                          "--max-connections-per-address",
                          "100000",
                          "--message-rate",
                          "1000",
                          "--message-burst",
                          "1000",
                          "--media-segmentation",
                          segmentation ? "on" : "off",
                          NULL};
    t->srv = ts_server_start(args);
    unlink(conf);
    if (!t->srv)
        die("tabib did not start");
    t->port = ts_server_port(t->srv);
    snprintf(t->pw_path, sizeof(t->pw_path), "%s/pw", ts_server_dir(t->srv));
    snprintf(t->data_dir, sizeof(t->data_dir), "%s/data", ts_server_dir(t->srv));
    f = fopen(t->pw_path, "w");
    if (!f)
        die("cannot write the password file");
    fprintf(f, "%s\n", PASSWORD);
    fclose(f);
    t->sockets = calloc(2 * (size_t)max_units, sizeof(*t->sockets));
}

static struct tc_ws *tabib_socket(struct tabib *t)
{
    struct tc_ws *ws = tc_ws_connect(t->port, "/ws", "tabib.v1", NULL);
    if (!ws)
        die("cannot open a WebSocket to tabib");
    t->sockets[t->n_sockets++] = ws;
    return ws;
}

/* Unit `i` of tabib-echo: a waiting patient in the self-test. */
static void tabib_echo_unit(struct tabib *t, struct lg_engine *e, unsigned i, unsigned kbps)
{
    struct tc_ws *patient = tabib_socket(t);
    char name[32];
    snprintf(name, sizeof(name), "Patient %u", i);
    int64_t join_ns = lg_realtime_ns();
    ws_send(patient, json_pack("{s:s, s:s, s:s, s:s}", "type", "join", "id", "j", "clinic",
                               "general", "name", name));
    json_decref(ws_expect(patient, "joined"));
    tabib_leg(e, patient, "patient", kbps, join_ns);
}

/* Makes doctor accounts dr.load<from> .. dr.load<to - 1>, two `tabib user add` at a time. */
static void tabib_accounts(struct tabib *t, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; i += 2) {
        pid_t pids[2] = {0, 0};
        for (unsigned k = 0; k < 2 && i + k < to; k++) {
            char name[32];
            snprintf(name, sizeof(name), "dr.load%u", i + k);
            pids[k] = fork();
            if (pids[k] == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 1);
                execl(TABIB_BINARY, TABIB_BINARY, "user", "add", name, "--role", "doctor",
                      "--clinics", "general", "--password-file", t->pw_path, "--data-dir",
                      t->data_dir, (char *)NULL);
                _exit(127);
            }
        }
        for (unsigned k = 0; k < 2; k++) {
            int status = 0;
            if (pids[k] > 0 && (waitpid(pids[k], &status, 0) < 0 || status != 0))
                die("tabib user add failed");
        }
    }
}

/* Unit `i` of tabib-relay: a consultation through the real signalling, both legs. */
static void tabib_relay_unit(struct tabib *t, struct lg_engine *e, unsigned i, unsigned kbps)
{
    struct tc_ws *doctor = tabib_socket(t);
    struct tc_ws *patient = tabib_socket(t);
    char name[32];
    snprintf(name, sizeof(name), "dr.load%u", i);
    ws_send(doctor, json_pack("{s:s, s:s, s:s, s:s}", "type", "login", "id", "l", "username", name,
                              "password", PASSWORD));
    json_decref(ws_expect(doctor, "signed_in"));
    ws_send(doctor, json_pack("{s:s, s:s, s:s, s:b}", "type", "duty", "id", "d", "clinic",
                              "general", "on", 1));
    json_decref(ws_expect(doctor, "duty"));
    int64_t join_ns = lg_realtime_ns();
    ws_send(patient, json_pack("{s:s, s:s, s:s, s:s}", "type", "join", "id", "j", "clinic",
                               "general", "name", "Load"));
    json_decref(ws_expect(patient, "joined"));
    ws_send(doctor,
            json_pack("{s:s, s:s, s:s}", "type", "call_next", "id", "c", "clinic", "general"));
    json_decref(ws_expect(doctor, "called"));
    json_decref(ws_expect(patient, "called"));
    ws_send(patient, json_pack("{s:s, s:s}", "type", "accept", "id", "a"));
    json_decref(ws_expect(patient, "consultation_started"));
    tabib_leg(e, patient, "patient", kbps, join_ns);
    tabib_leg(e, doctor, "doctor", kbps, join_ns);
}

static void tabib_stop(struct tabib *t)
{
    for (unsigned i = 0; i < t->n_sockets; i++)
        tc_ws_close(t->sockets[i]);
    free(t->sockets);
    if (ts_server_stop(t->srv, NULL) != 0)
        fprintf(stderr, "loadgen: tabib did not stop cleanly\n");
    ts_server_free(t->srv);
}

/* ------------------------------------------------------------------------- */
/* Janus and the UDP forwarder                                                */
/* ------------------------------------------------------------------------- */

/* An EchoTest session of its own (a browser page's), on the one API connection. */
static void janus_unit(struct jc *jc, struct lg_engine *e, unsigned kbps)
{
    struct tp_peer *p = new_peer("janus-echo", kbps);
    char *offer = tp_peer_offer(p);
    int64_t join_ns = lg_realtime_ns();
    char err[256];
    struct jc_leg leg;
    char *answer = NULL;
    if (jc_echo_leg_open(jc, offer, &leg, &answer, err, sizeof(err)) != 0)
        die("Janus: %s", err);
    free(offer);
    connect_and_add(e, p, answer, join_ns);
    free(answer);
    /* Read the events Janus sent meanwhile (webrtcup...), so they never pile up. */
    if (jc_poll_events(jc, 0, err, sizeof(err)) != 0)
        die("Janus: %s", err);
}

struct forwarder {
    pid_t pid;
    struct sockaddr_in addr;
};

static void forwarder_start(struct forwarder *f, const char *path, bool segmentation)
{
    int out[2];
    if (pipe(out) != 0)
        die("pipe");
    f->pid = fork();
    if (f->pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(path, path, "--port", "0", "--segmentation", segmentation ? "on" : "off",
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[128] = {0};
    ssize_t n = read(out[0], line, sizeof(line) - 1);
    close(out[0]);
    const char *at = n > 0 ? strstr(line, "\"port\":") : NULL;
    if (!at)
        die("the UDP forwarder (%s) did not start", path);
    f->addr = (struct sockaddr_in){.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)atoi(at + 7)),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static int loopback_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0)
        die("cannot open a UDP socket on 127.0.0.1");
    return fd;
}

static void forward_unit(struct forwarder *f, struct lg_engine *e, unsigned i)
{
    int64_t join_ns = lg_realtime_ns();
    for (unsigned side = 0; side < 2; side++)
        if (lg_engine_add_plain_leg(e, loopback_socket(), &f->addr, i, side, join_ns) < 0)
            die("the media engine is full");
}

/* ------------------------------------------------------------------------- */
/* Measuring                                                                  */
/* ------------------------------------------------------------------------- */

/* The value at quantile `q` of the delay histogram `h` (counts of a difference). */
static double delay_quantile(const uint64_t *h, uint64_t total, double q)
{
    if (total == 0)
        return NAN;
    uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
    for (size_t i = 0; i < LG_DELAY_BUCKETS; i++) {
        seen += h[i];
        if (seen >= rank && h[i])
            return i < LG_DELAY_FINE_US ? (double)i + 0.5
                                        : LG_DELAY_FINE_US + (double)(i - LG_DELAY_FINE_US + 0.5) *
                                                                 LG_DELAY_COARSE_US;
    }
    return LG_DELAY_MAX_US;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Measures one step: `units` are running; legs [first_leg..] are the ones this step added. */
/* Starts `perf record` of `pid` into `path` (cpu-clock: this VM has no hardware counters). */
static pid_t perf_start(pid_t pid, const char *path)
{
    char pid_text[16];
    snprintf(pid_text, sizeof(pid_text), "%d", (int)pid);
    pid_t perf = fork();
    if (perf == 0) {
        execlp("perf", "perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-g", "-o", path,
               "-p", pid_text, (char *)NULL);
        _exit(127);
    }
    sleep_s(0.3); /* perf attaches */
    return perf;
}

static void measure(struct lg_engine *e, pid_t server, int server_cpu, double seconds,
                    unsigned units, double rss_base, unsigned legs_before, const char *perf_path,
                    struct step *s)
{
    pid_t perf = perf_path ? perf_start(server, perf_path) : 0;
    static struct lg_totals a, b;
    static int64_t setup[LG_MAX_LEGS];
    lg_engine_snapshot(e, &a, NULL, 0);
    double run0 = run_seconds(server), ut0 = utime_stime_seconds(server);
    double lg0 = lg_engine_cpu_seconds(e), steal0 = steal_seconds(server_cpu);
    int64_t t0 = base_now_ms();
    sleep_s(seconds);
    unsigned n_setup = lg_engine_snapshot(e, &b, setup, LG_MAX_LEGS);
    double run1 = run_seconds(server), ut1 = utime_stime_seconds(server);
    double lg1 = lg_engine_cpu_seconds(e), steal1 = steal_seconds(server_cpu);
    double secs = (double)(base_now_ms() - t0) / 1000.0;
    if (perf > 0) {
        kill(perf, SIGINT);
        waitpid(perf, NULL, 0);
    }

    memset(s, 0, sizeof(*s));
    s->units = units;
    s->seconds = secs;
    double received = (double)(b.rtp_received - a.rtp_received);
    double expected = (double)(b.expected - a.expected);
    s->relayed_pps = received / secs;
    s->relayed_bps = (double)(b.rtp_received_bytes - a.rtp_received_bytes) * 8.0 / secs;
    s->loss = expected > 0 && expected > received ? (expected - received) / expected : 0;
    /* Against what the legs sent in the same window: a stream the server never relays leaves no
     * sequence gap to see. Packets in flight at the window's ends make this a few in 10^5. */
    double sent = (double)(b.rtp_sent - a.rtp_sent);
    s->undelivered = sent > received ? (sent - received) / sent : 0;
    s->duplicates = received > 0 ? (double)(b.duplicates - a.duplicates) / received : 0;
    s->reordered = received > 0 ? (double)(b.reordered - a.reordered) / received : 0;
    static uint64_t h[LG_DELAY_BUCKETS];
    uint64_t total = 0;
    for (size_t i = 0; i < LG_DELAY_BUCKETS; i++) {
        h[i] = b.delay[i] - a.delay[i];
        total += h[i];
    }
    total += b.delay_over - a.delay_over;
    s->delay_p50 = delay_quantile(h, total, 0.5);
    s->delay_p99 = delay_quantile(h, total, 0.99);
    s->delay_p999 = delay_quantile(h, total, 0.999);
    /* Set-up times of the legs this step added (indices from legs_before), those with media. */
    unsigned n = 0;
    for (unsigned i = legs_before; i < n_setup; i++)
        if (setup[i] >= 0)
            setup[legs_before + n++] = setup[i];
    s->legs = n_setup;
    if (n) {
        int64_t *mine = setup + legs_before;
        qsort(mine, n, sizeof(*mine), compare_i64);
        s->setups = n;
        s->setup_p50_ms = (double)mine[(n - 1) / 2] / 1e6;
        s->setup_p99_ms = (double)mine[(size_t)ceil(0.99 * n) - 1] / 1e6;
    }
    s->server_cpu_s = run1 - run0;
    s->server_cpu_share = s->server_cpu_s / secs;
    s->server_utime_stime_s = ut1 - ut0;
    s->cpu_us_per_packet = received > 0 ? s->server_cpu_s * 1e6 / received : 0;
    s->rss_mib = rss_mib(server);
    s->rss_per_unit_kib = units ? (s->rss_mib - rss_base) * 1024.0 / units : 0;
    s->loadgen_cpu_share = (lg1 - lg0) / secs;
    s->steal_share = (steal1 - steal0) / secs;
    s->legs_silent = b.legs - b.legs_receiving;
    s->srtp_errors = b.srtp_errors - a.srtp_errors;
    s->send_failures = b.send_failures - a.send_failures;
    s->socket_drops = b.socket_drops - a.socket_drops;
    s->loadgen_saturated = s->loadgen_cpu_share > SATURATED_SHARE;
}

static void print_header(void)
{
    printf("%-22s %6s %10s %9s %7s %7s %8s %8s %8s %8s %8s %7s %7s %8s %7s %6s\n", "target",
           "units", "pkt/s", "Mbit/s", "loss%", "undel%", "p50us", "p99us", "p999us", "setup50",
           "setup99", "cpu%", "us/pkt", "KiB/unit", "lg-cpu%", "steal%");
    printf("# undel%%: RTP sent by the legs and not received in the window (in flight included)\n");
    printf("# KiB/unit: the server's resident memory added per unit since the previous step\n");
}

static void print_step(const char *name, const struct step *s)
{
    printf("%-22s %6u %10.0f %9.1f %7.3f %7.3f %8.0f %8.0f %8.0f %8.1f %8.1f %7.1f %7.2f %8.0f "
           "%7.1f %6.1f%s\n",
           name, s->units, s->relayed_pps, s->relayed_bps / 1e6, s->loss * 100,
           s->undelivered * 100, s->delay_p50, s->delay_p99, s->delay_p999, s->setup_p50_ms,
           s->setup_p99_ms, s->server_cpu_share * 100, s->cpu_us_per_packet, s->rss_marginal_kib,
           s->loadgen_cpu_share * 100, s->steal_share * 100,
           s->loadgen_saturated ? "  (load generator saturated)" : "");
    fflush(stdout);
}

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *step_json(const struct step *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "units", json_integer(s->units));
    json_object_set_new(o, "seconds", num(s->seconds));
    json_object_set_new(o, "relayed_pps", num(s->relayed_pps));
    json_object_set_new(o, "relayed_bps", num(s->relayed_bps));
    json_object_set_new(o, "loss", num(s->loss));
    json_object_set_new(o, "duplicates", num(s->duplicates));
    json_object_set_new(o, "reordered", num(s->reordered));
    json_object_set_new(o, "undelivered", num(s->undelivered));
    json_object_set_new(o, "delay_us",
                        json_pack("{s:o, s:o, s:o}", "p50", num(s->delay_p50), "p99",
                                  num(s->delay_p99), "p999", num(s->delay_p999)));
    json_object_set_new(o, "setup_ms",
                        json_pack("{s:o, s:o, s:i}", "p50", num(s->setup_p50_ms), "p99",
                                  num(s->setup_p99_ms), "count", (int)s->setups));
    json_object_set_new(o, "server_cpu_s", num(s->server_cpu_s));
    json_object_set_new(o, "server_cpu_share", num(s->server_cpu_share));
    json_object_set_new(o, "server_utime_stime_s", num(s->server_utime_stime_s));
    json_object_set_new(o, "cpu_us_per_packet", num(s->cpu_us_per_packet));
    json_object_set_new(o, "rss_mib", num(s->rss_mib));
    json_object_set_new(o, "rss_per_unit_kib", num(s->rss_per_unit_kib));
    json_object_set_new(o, "rss_marginal_kib", num(s->rss_marginal_kib));
    json_object_set_new(o, "loadgen_cpu_share", num(s->loadgen_cpu_share));
    json_object_set_new(o, "steal_share", num(s->steal_share));
    json_object_set_new(o, "legs_silent", json_integer(s->legs_silent));
    json_object_set_new(o, "srtp_errors", json_integer((json_int_t)s->srtp_errors));
    json_object_set_new(o, "send_failures", json_integer((json_int_t)s->send_failures));
    json_object_set_new(o, "loadgen_socket_drops", json_integer((json_int_t)s->socket_drops));
    json_object_set_new(o, "loadgen_saturated", json_boolean(s->loadgen_saturated));
    if (s->repeats) {
        json_t *p99 = json_array();
        json_array_append_new(p99, num(s->delay_p99));
        for (unsigned i = 0; i < s->repeats; i++)
            json_array_append_new(p99, num(s->repeat_p99[i]));
        json_object_set_new(o, "delay_p99_measurements_us", p99);
    }
    return o;
}

/* ------------------------------------------------------------------------- */
/* main                                                                       */
/* ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --target tabib-relay|tabib-echo|janus-echo|udp-forward\n"
            "               [--ramp 1,10,50,...] [--warmup S] [--seconds S] [--video-kbps K]\n"
            "               [--server-cpu C] [--loadgen-cpu C] [--janus-port P --janus-pid PID]\n"
            "               [--forwarder PATH] [--json FILE] [--label TEXT]\n"
            "               [--perf FILE --perf-units N]\n"
            "               [--segmentation on|off] [--receiver-gro on|off] [--repeat N]\n");
    exit(2);
}

static bool on_off(const char *v)
{
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
        usage();
    return strcmp(v, "on") == 0;
}

static void parse_ramp(struct options *o, const char *text)
{
    o->n_steps = 0;
    for (const char *p = text; *p && o->n_steps < MAX_STEPS;) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v == 0 || v > LG_MAX_LEGS / 2)
            usage();
        if (o->n_steps && v <= o->ramp[o->n_steps - 1])
            usage();
        o->ramp[o->n_steps++] = (unsigned)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            usage();
    }
}

static struct options parse(int argc, char **argv)
{
    struct options o = {.warmup_s = 2,
                        .seconds = 5,
                        .video_kbps = 1200,
                        .server_cpu = 0,
                        .loadgen_cpu = 1,
                        .segmentation = true,
                        .receiver_gro = true,
                        .repeat = 1,
                        .target = -1};
    parse_ramp(&o, "1,10,50,100,200,300,400,500,600,800,1000");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--target") == 0) {
            for (unsigned t = 0; t < 4; t++)
                if (strcmp(v, target_names[t]) == 0)
                    o.target = t;
        } else if (strcmp(a, "--ramp") == 0) {
            parse_ramp(&o, v);
        } else if (strcmp(a, "--warmup") == 0) {
            o.warmup_s = atof(v);
        } else if (strcmp(a, "--seconds") == 0) {
            o.seconds = atof(v);
        } else if (strcmp(a, "--video-kbps") == 0) {
            o.video_kbps = (unsigned)atoi(v);
        } else if (strcmp(a, "--server-cpu") == 0) {
            o.server_cpu = atoi(v);
        } else if (strcmp(a, "--loadgen-cpu") == 0) {
            o.loadgen_cpu = atoi(v);
        } else if (strcmp(a, "--janus-port") == 0) {
            o.janus_port = (uint16_t)atoi(v);
        } else if (strcmp(a, "--janus-pid") == 0) {
            o.janus_pid = (pid_t)atoi(v);
        } else if (strcmp(a, "--forwarder") == 0) {
            o.forwarder = v;
        } else if (strcmp(a, "--perf") == 0) {
            o.perf_path = v;
        } else if (strcmp(a, "--perf-units") == 0) {
            o.perf_units = (unsigned)atoi(v);
        } else if (strcmp(a, "--json") == 0) {
            o.json_path = v;
        } else if (strcmp(a, "--label") == 0) {
            o.label = v;
        } else if (strcmp(a, "--segmentation") == 0) {
            o.segmentation = on_off(v);
        } else if (strcmp(a, "--receiver-gro") == 0) {
            o.receiver_gro = on_off(v);
        } else if (strcmp(a, "--repeat") == 0) {
            o.repeat = (unsigned)atoi(v);
        } else {
            usage();
        }
    }
    if ((int)o.target < 0 || o.n_steps == 0 || o.seconds <= 0 || o.video_kbps > 4000 ||
        o.repeat < 1 || o.repeat > MAX_REPEATS ||
        (o.target == JANUS_ECHO && (!o.janus_port || o.janus_pid <= 0)))
        usage();
    return o;
}

int main(int argc, char **argv)
{
    struct options o = parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(o.loadgen_cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("cannot pin the load generator to CPU %d", o.loadgen_cpu);

    unsigned max_units = o.ramp[o.n_steps - 1];
    struct tabib tabib = {0};
    struct forwarder fwd = {0};
    struct jc *jc = NULL;
    pid_t server = 0;
    char fwd_path[1024];
    if (o.target == TABIB_RELAY || o.target == TABIB_ECHO) {
        tabib_start(&tabib, max_units, o.segmentation);
        server = ts_server_pid(tabib.srv);
    } else if (o.target == JANUS_ECHO) {
        char err[256];
        jc = jc_connect(o.janus_port, err, sizeof(err));
        if (!jc)
            die("Janus: %s", err);
        server = o.janus_pid;
    } else {
        if (!o.forwarder) {
            /* Beside this program, in the same build. */
            snprintf(fwd_path, sizeof(fwd_path), "%s", argv[0]);
            char *slash = strrchr(fwd_path, '/');
            snprintf(slash ? slash + 1 : fwd_path,
                     sizeof(fwd_path) - (size_t)(slash ? slash + 1 - fwd_path : 0), "%s",
                     "udp_forward");
            o.forwarder = fwd_path;
        }
        forwarder_start(&fwd, o.forwarder, o.segmentation);
        server = fwd.pid;
    }
    pin_process(server, o.server_cpu);

    struct lg_media_config mc = {
        .video_kbps = o.video_kbps, .audio = true, .receiver_gro = o.receiver_gro};
    struct lg_engine *e = lg_engine_new(&mc);
    if (!e || lg_engine_start(e) != 0)
        die("the media engine did not start");
    sleep_s(0.5);
    double rss_base = rss_mib(server);
    const char *label = o.label ? o.label : target_labels[o.target];
    printf("# %s, pinned: server CPU %d, load generator CPU %d; video %u kbit/s, audio Opus; "
           "server segmentation %s, receiver GRO %s\n",
           label, o.server_cpu, o.loadgen_cpu, o.video_kbps,
           o.target == JANUS_ECHO ? "n/a"
           : o.segmentation       ? "on"
                                  : "off",
           o.receiver_gro ? "on" : "off");
    print_header();

    json_t *steps = json_array();
    unsigned units = 0, legs_before = 0, prev_units = 0;
    double prev_rss = rss_base;
    for (unsigned k = 0; k < o.n_steps; k++) {
        unsigned want = o.ramp[k];
        if (o.target == TABIB_RELAY)
            tabib_accounts(&tabib, units, want);
        for (; units < want; units++) {
            if (o.target == TABIB_RELAY)
                tabib_relay_unit(&tabib, e, units, o.video_kbps);
            else if (o.target == TABIB_ECHO)
                tabib_echo_unit(&tabib, e, units, o.video_kbps);
            else if (o.target == JANUS_ECHO)
                janus_unit(jc, e, o.video_kbps);
            else
                forward_unit(&fwd, e, units);
        }
        sleep_s(o.warmup_s);
        struct step s;
        measure(e, server, o.server_cpu, o.seconds, units, rss_base, legs_before,
                o.perf_path && units == o.perf_units ? o.perf_path : NULL, &s);
        /* A delay p99 over the limit once may be the hypervisor's: on this kind of VM it stops a
         * vCPU for 10-40 ms now and then, at any load (the plain forwarder shows it too). The
         * same load is measured once more, and the second measurement is the step's. */
        if (s.delay_p99 > DELAY_P99_LIMIT) {
            struct step again;
            printf("# step of %u units: delay p99 %.0f us (steal %.1f%%), measured again\n", units,
                   s.delay_p99, s.steal_share * 100);
            measure(e, server, o.server_cpu, o.seconds, units, rss_base, legs_before, NULL, &again);
            again.setups = s.setups;
            again.setup_p50_ms = s.setup_p50_ms;
            again.setup_p99_ms = s.setup_p99_ms;
            s = again;
        }
        legs_before = s.legs;
        s.rss_marginal_kib = (s.rss_mib - prev_rss) * 1024.0 / (units - prev_units);
        prev_rss = s.rss_mib;
        prev_units = units;
        print_step(target_names[o.target], &s);
        /* --repeat: the same load measured again, for the spread of the delay p99 (the VM's
         * hypervisor adds bursts of its own); the step's other figures are the first's. */
        for (unsigned r = 1; r < o.repeat; r++) {
            struct step again;
            measure(e, server, o.server_cpu, o.seconds, units, rss_base, legs_before, NULL, &again);
            print_step(target_names[o.target], &again);
            s.repeat_p99[s.repeats++] = again.delay_p99;
        }
        json_array_append_new(steps, step_json(&s));
        if (s.loss > LOSS_LIMIT || s.delay_p99 > DELAY_P99_LIMIT || s.loadgen_saturated ||
            s.legs_silent)
            break;
    }

    if (o.json_path) {
        json_t *doc =
            json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:b, s:b, s:o}", "target",
                      target_names[o.target], "label", label, "streams_per_unit",
                      o.target == JANUS_ECHO || o.target == TABIB_ECHO ? 1 : 2, "video_kbps",
                      (int)o.video_kbps, "server_cpu", o.server_cpu, "loadgen_cpu", o.loadgen_cpu,
                      "segmentation", o.target != JANUS_ECHO && o.segmentation, "receiver_gro",
                      o.receiver_gro, "steps", steps);
        if (json_dump_file(doc, o.json_path, JSON_INDENT(1)) != 0)
            die("cannot write %s", o.json_path);
        json_decref(doc);
    } else {
        json_decref(steps);
    }
    lg_engine_free(e);
    if (o.target == TABIB_RELAY || o.target == TABIB_ECHO) {
        tabib_stop(&tabib);
    } else if (o.target == JANUS_ECHO) {
        jc_free(jc);
    } else {
        kill(fwd.pid, SIGTERM);
        waitpid(fwd.pid, NULL, 0);
    }
    return 0;
}
