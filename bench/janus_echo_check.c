/*
 * janus_echo_check.c - checks that the C test peer does a real echo session
 * with Debian's Janus (1.1.2) on loopback, the far end the benchmark compares
 * tabib with.
 *
 * Writes a Janus configuration into a temporary directory with
 * bench/janus/janus-config.sh (WebSocket API on 127.0.0.1, EchoTest alone, ICE
 * on 127.0.0.1 alone), starts Janus with it (fork and exec, its output in
 * DIR/janus.log), waits for its WebSocket port, and opens --legs echo legs
 * (3), each a test peer (tests/support/test_peer.h: full ICE, DTLS, SRTP, an
 * Opus tone and VP8-shaped video) in a Janus session of its own
 * (bench/janus_client.h). After --seconds (5) of media it checks each peer's
 * statistics: its own video came back (packets received, every payload
 * byte-identical, the last one with its own tag), its own audio came back
 * (samples decoded, the dominant frequency within 2% of its tone), no SRTP
 * failures, and the peer was the DTLS server (Janus answers setup:active);
 * and Janus reported every PeerConnection up ("webrtcup") and none hung up.
 * It also checks that Janus stays on 127.0.0.1: every candidate of
 * every answer, and every IP socket Janus holds while the legs run (from
 * /proc/<pid>/fd and /proc/<pid>/net/{tcp,udp,raw}{,6}). Then it closes the
 * legs, stops Janus (SIGTERM to its pid, then waits) and exits 0 only if
 * everything passed.
 *
 *   janus_echo_check [--legs N] [--seconds S] [--video-kbps K] [--rtp-range MIN-MAX]
 *                    [--show-answer] [--janus-log]
 *
 * Loopback only; run it inside a network namespace of its own to be sure:
 *   unshare --net --map-root-user sh -c 'ip link set lo up && build/bench/janus_echo_check'
 *
 * Main thread only (the test peers run their own threads).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "janus_client.h"
#include "test_peer.h"

#define MAX_LEGS          64
#define JANUS_START_MS    15000
#define JANUS_STOP_MS     10000
#define CONNECT_MS        10000
#define TONE_TOLERANCE    0.02 /* the peak found may be this far from the tone, relatively */
#define MAX_JANUS_SOCKETS 4096

struct leg {
    struct tp_peer *peer;
    struct jc_leg jc;
    double tone_hz;
    uint32_t tag;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* What die() must undo from wherever it is called: the one writable static of this program. */
static struct {
    pid_t janus;   /* 0: not running */
    char dir[512]; /* the configuration directory, "": none yet */
} run;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Prints the log, if any, and removes the directory. */
static void remove_dir(bool show_log)
{
    if (!run.dir[0])
        return;
    char log[600];
    snprintf(log, sizeof(log), "%s/janus.log", run.dir);
    FILE *f = show_log ? fopen(log, "r") : NULL;
    if (f) {
        printf("--- janus log ---\n");
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, stdout);
        fclose(f);
        printf("--- end of janus log ---\n");
    }
    nftw(run.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    run.dir[0] = '\0';
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "janus_echo_check: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (run.janus > 0) {
        kill(run.janus, SIGKILL);
        waitpid(run.janus, NULL, 0);
    }
    fflush(stdout);
    remove_dir(true);
    exit(1);
}

/* A free TCP port on 127.0.0.1 (the kernel's pick; free again when this returns). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Runs the configuration script; returns the command line it printed (new, free()). */
static char *write_config(const char *dir, uint16_t port, const char *rtp_range)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "JANUS_LO_ONLY_SO='%s' sh '%s/bench/janus/janus-config.sh' '%s' %u %s",
             JANUS_LO_ONLY_SO, TABIB_SOURCE_DIR, dir, (unsigned)port, rtp_range ? rtp_range : "");
    FILE *f = popen(cmd, "r");
    if (!f)
        die("popen: %s", strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int status = pclose(f);
    if (n <= 0 || status != 0)
        die("bench/janus/janus-config.sh failed (status %d)", status);
    line[strcspn(line, "\n")] = '\0';
    return line;
}

/* Starts `command_line` (a shell command) with its output in `log`; the pid is Janus's. */
static pid_t start_janus(const char *command_line, const char *log)
{
    char *script = NULL;
    if (asprintf(&script, "exec %s", command_line) < 0)
        die("out of memory");
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    free(script);
    return pid;
}

/* Waits until 127.0.0.1:port takes connections, or Janus died, or the time ran out. */
static void wait_port(uint16_t port, pid_t pid)
{
    for (int64_t deadline = base_now_ms() + JANUS_START_MS; base_now_ms() < deadline;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            run.janus = 0;
            die("janus exited during start-up (status 0x%x): see its log", status);
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool up = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (up)
            return;
        poll(NULL, 0, 50);
    }
    die("janus did not open its WebSocket port %u in %d ms", (unsigned)port, JANUS_START_MS);
}

/* SIGTERM, then up to JANUS_STOP_MS for it to end, then SIGKILL. Returns its wait status. */
static int stop_janus(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int64_t deadline = base_now_ms() + JANUS_STOP_MS; base_now_ms() < deadline;) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        poll(NULL, 0, 20);
    }
    fprintf(stderr, "janus_echo_check: janus ignored SIGTERM for %d ms: SIGKILL\n", JANUS_STOP_MS);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

/* Every a=candidate line of `sdp` must be on 127.0.0.1. Prints them. Returns the number that
 * are not. */
static int check_candidates(const char *sdp, unsigned leg)
{
    int bad = 0;
    for (const char *line = strstr(sdp, "a=candidate:"); line;
         line = strstr(line + 1, "a=candidate:")) {
        if (line != sdp && line[-1] != '\n')
            continue;
        size_t len = strcspn(line, "\r\n");
        char ip[64] = "";
        sscanf(line, "a=candidate:%*s %*u %*s %*u %63s", ip);
        bool ok = strcmp(ip, "127.0.0.1") == 0;
        bad += !ok;
        printf("leg %u: answer %.*s%s\n", leg, (int)len, line, ok ? "" : "  <- NOT 127.0.0.1");
    }
    return bad;
}

/*
 * The IP sockets `pid` holds, from /proc: every one must be bound to
 * 127.0.0.1 (IPv4). Prints them. Returns the number that are not, or -1 when
 * /proc cannot tell.
 */
static int check_janus_sockets(pid_t pid)
{
    unsigned long inodes[MAX_JANUS_SOCKETS];
    unsigned n_inodes = 0;
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d)) && n_inodes < MAX_JANUS_SOCKETS;) {
        char link[512], target[64];
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) == 1)
            inodes[n_inodes++] = inode;
    }
    closedir(d);
    static const char *const tables[] = {"tcp", "udp", "raw", "tcp6", "udp6", "raw6"};
    int bad = 0, found = 0;
    for (unsigned t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, tables[t]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[512];
        bool v6 = strchr(tables[t], '6') != NULL;
        if (!fgets(line, sizeof(line), f)) { /* the column titles */
            fclose(f);
            continue;
        }
        while (fgets(line, sizeof(line), f)) {
            char local[64];
            unsigned state; /* tcp: 0x0A listening, 0x01 established */
            unsigned long inode;
            if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*d %*d %lu", local, &state, &inode) !=
                3)
                continue;
            bool ours = false;
            for (unsigned i = 0; i < n_inodes && !ours; i++)
                ours = inodes[i] == inode;
            if (!ours)
                continue;
            found++;
            char *colon = strchr(local, ':');
            unsigned port = colon ? (unsigned)strtoul(colon + 1, NULL, 16) : 0;
            char shown[INET6_ADDRSTRLEN] = "?";
            bool ok = false;
            if (!v6 && colon && colon - local == 8) {
                struct in_addr a;
                a.s_addr = (in_addr_t)strtoul(local, NULL, 16); /* as the kernel wrote it */
                inet_ntop(AF_INET, &a, shown, sizeof(shown));
                ok = a.s_addr == htonl(INADDR_LOOPBACK);
            } else if (v6) {
                snprintf(shown, sizeof(shown), "[%.*s]", (int)(colon ? colon - local : 0), local);
            }
            bad += !ok;
            const char *what = strncmp(tables[t], "tcp", 3) != 0 ? ""
                               : state == 0x0A                   ? " (listening)"
                               : state == 0x01                   ? " (a connection)"
                                                                 : " (another state)";
            printf("janus socket: %-4s %s:%u%s%s\n", tables[t], shown, port, what,
                   ok ? "" : "  <- NOT 127.0.0.1");
        }
        fclose(f);
    }
    return found ? bad : -1;
}

/*
 * Prints one leg's statistics and checks them: its own video and audio came
 * back whole. Returns 0 when it passed, 1 when not.
 */
static int report_leg(unsigned i, struct tp_peer *peer, double tone_hz, uint32_t tag)
{
    struct tp_stats st;
    tp_peer_stats(peer, &st);
    double off = fabs(st.audio_peak_hz - tone_hz) / tone_hz;
    bool ok = st.connected && st.dtls_server && st.video_received > 0 &&
              st.video_payload_mismatches == 0 && st.last_video_tag_received == tag &&
              st.audio_decoded_samples > 0 && off <= TONE_TOLERANCE && st.srtp_errors == 0;
    printf("leg %u %s: DTLS %s, SRTP errors %" PRIu64 "; ICE: checks sent %" PRIu64
           ", successes %" PRIu64 ", Janus's checks answered %" PRIu64 "\n",
           i, ok ? "PASS" : "FAIL", st.dtls_server ? "server" : "client", st.srtp_errors,
           st.stun_sent, st.stun_success_received, st.stun_requests_answered);
    printf("  audio: sent %" PRIu64 ", received %" PRIu64 ", %" PRIu64
           " samples decoded, peak %.1f Hz (tone %.0f Hz), seq jumps %" PRIu64 "\n",
           st.audio_sent, st.audio_received, st.audio_decoded_samples, st.audio_peak_hz, tone_hz,
           st.audio_seq_jumps);
    printf("  video: sent %" PRIu64 " (%" PRIu64 " frames), received %" PRIu64
           ", last tag %08" PRIx32 " (ours %08" PRIx32 "), mismatches %" PRIu64
           ", out of order %" PRIu64 ", seq jumps %" PRIu64 ", rtx %" PRIu64
           ", unrecovered %" PRIu64 "\n",
           st.video_sent, st.video_frames_sent, st.video_received, st.last_video_tag_received, tag,
           st.video_payload_mismatches, st.video_out_of_order, st.video_seq_jumps, st.rtx_received,
           st.video_unrecovered);
    printf("  rtcp: received %" PRIu64 "; PLI %" PRIu64 ", FIR %" PRIu64 ", NACK %" PRIu64
           ", REMB %" PRIu64 " (%" PRIu64 " bit/s); transport-cc feedback sent %" PRIu64 "\n",
           st.rtcp_received, st.pli_received, st.fir_received, st.nacks_received, st.remb_received,
           st.remb_bps, st.twcc_feedback_sent);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    unsigned n_legs = 3, seconds = 5, video_kbps = 1200;
    const char *rtp_range = NULL;
    bool show_answer = false, show_log = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--legs") == 0 && v)
            n_legs = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--seconds") == 0 && v)
            seconds = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--video-kbps") == 0 && v)
            video_kbps = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--rtp-range") == 0 && v)
            rtp_range = argv[++i];
        else if (strcmp(a, "--show-answer") == 0)
            show_answer = true;
        else if (strcmp(a, "--janus-log") == 0)
            show_log = true;
        else
            die("usage: janus_echo_check [--legs N] [--seconds S] [--video-kbps K] "
                "[--rtp-range MIN-MAX] [--show-answer] [--janus-log]");
    }
    if (n_legs == 0 || n_legs > MAX_LEGS || seconds == 0)
        die("--legs must be 1..%d and --seconds at least 1", MAX_LEGS);
    signal(SIGPIPE, SIG_IGN);

    const char *tmp = getenv("TMPDIR");
    char dir[sizeof(run.dir)];
    snprintf(dir, sizeof(dir), "%s/janus-echo.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));
    memcpy(run.dir, dir, sizeof(dir));
    char log[600];
    snprintf(log, sizeof(log), "%s/janus.log", dir);
    uint16_t port = free_port();
    char *command_line = write_config(dir, port, rtp_range);
    printf("janus: %s\n", command_line);
    fflush(stdout);
    int64_t t_start = base_now_ms();
    run.janus = start_janus(command_line, log);
    free(command_line);
    wait_port(port, run.janus);
    printf("janus: pid %d, WebSocket on 127.0.0.1:%u after %" PRId64 " ms\n", (int)run.janus,
           (unsigned)port, base_now_ms() - t_start);

    char err[512];
    struct jc *jc = jc_connect(port, err, sizeof(err));
    if (!jc)
        die("%s", err);
    struct leg legs[MAX_LEGS];
    memset(legs, 0, sizeof(legs));
    int failures = 0;
    for (unsigned i = 0; i < n_legs; i++) {
        struct leg *l = &legs[i];
        char name[32];
        snprintf(name, sizeof(name), "echo%u", i);
        l->tone_hz = 440.0 + 110.0 * i;
        l->tag = 0x4a450000u + i + 1; /* "JE" */
        struct tp_config cfg = {.name = name,
                                .tone_hz = l->tone_hz,
                                .video_kbps = video_kbps,
                                .video_fps = 30,
                                .video_tag = l->tag};
        l->peer = tp_peer_new(&cfg, err, sizeof(err));
        if (!l->peer)
            die("%s", err);
        char *offer = tp_peer_offer(l->peer);
        char *answer = NULL;
        if (!offer)
            die("out of memory");
        int64_t t0 = base_now_ms();
        if (jc_echo_leg_open(jc, offer, &l->jc, &answer, err, sizeof(err)) != 0)
            die("leg %u: %s", i, err);
        int64_t t1 = base_now_ms();
        free(offer);
        if (show_answer)
            printf("leg %u: the answer:\n%s", i, answer);
        failures += check_candidates(answer, i);
        if (tp_peer_set_answer(l->peer, answer, err, sizeof(err)) != 0)
            die("leg %u: %s", i, err);
        free(answer);
        if (tp_peer_start(l->peer) != 0)
            die("leg %u: the peer did not start", i);
        if (tp_peer_wait_connected(l->peer, CONNECT_MS) != 0)
            die("leg %u: no DTLS/SRTP within %d ms", i, CONNECT_MS);
        printf("leg %u: session %" PRIu64 " handle %" PRIu64 ", answer after %" PRId64
               " ms, connected after %" PRId64 " ms more\n",
               i, l->jc.session_id, l->jc.handle_id, t1 - t0, base_now_ms() - t1);
    }

    int bad_sockets = check_janus_sockets(run.janus);
    if (bad_sockets < 0) {
        printf("janus sockets: cannot read /proc/%d\n", (int)run.janus);
        failures++;
    } else {
        failures += bad_sockets;
    }
    fflush(stdout);

    sleep(seconds);

    for (unsigned i = 0; i < n_legs; i++)
        failures += report_leg(i, legs[i].peer, legs[i].tone_hz, legs[i].tag);

    /* Every PeerConnection came up in Janus's eyes too, and none went down. */
    if (jc_poll_events(jc, 200, err, sizeof(err)) != 0)
        die("%s", err);
    struct jc_counts counts;
    jc_counts(jc, &counts);
    bool events_ok = counts.webrtcup == n_legs && counts.hangup == 0;
    failures += !events_ok;
    printf("janus events %s: webrtcup %" PRIu64 " hangup %" PRIu64 " media %" PRIu64
           " slowlink %" PRIu64 " other %" PRIu64 "\n",
           events_ok ? "PASS" : "FAIL", counts.webrtcup, counts.hangup, counts.media,
           counts.slowlink, counts.other);

    for (unsigned i = 0; i < n_legs; i++) {
        tp_peer_stop(legs[i].peer);
        if (jc_echo_leg_close(jc, &legs[i].jc, err, sizeof(err)) != 0) {
            printf("leg %u: closing: %s\n", i, err);
            failures++;
        }
        tp_peer_free(legs[i].peer);
    }
    jc_free(jc);
    int status = stop_janus(run.janus);
    run.janus = 0;
    printf("janus: stopped, %s %d\n", WIFEXITED(status) ? "exit status" : "signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    remove_dir(show_log || failures);
    printf("%s: %u legs, %d failures\n", failures ? "FAIL" : "PASS", n_legs, failures);
    return failures ? 1 : 0;
}
