/*
 * test_server.c - runs the real `tabib` binary for the integration tests
 * (test_server.h): a temporary directory, free ports, fork/execve, readiness
 * by polling /readyz, and a stop that measures how long SIGTERM took.
 *
 * Runs on the test's thread. The only processes ever signalled are the
 * children this file forked, by their PID.
 */
#include "test_server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "test_client.h"

#ifndef TABIB_BINARY
#error "TABIB_BINARY must name the tabib executable (tests/CMakeLists.txt defines it)"
#endif

#define MEDIA_WORKERS    "2"
#define MEDIA_PORT_COUNT 2
#define READY_POLL_MS    50
#define MAX_ARGS         64

extern char **environ;

struct ts_server {
    pid_t pid;
    bool reaped;
    int status;          /* valid once reaped */
    int64_t term_ms;     /* when the first SIGTERM was sent, 0 if never */
    int64_t exited_ms;   /* when the process was seen gone */
    uint16_t port;       /* HTTPS and WSS */
    uint16_t media_port; /* worker i binds media_port + i */
    char dir[PATH_MAX];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A shell-style status from a waitpid() status. */
static int status_of(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return -1;
}

/* Makes a new temporary directory into `out` (PATH_MAX bytes). Returns 0 or -1. */
static int make_temp_dir(char *out)
{
    snprintf(out, PATH_MAX, "/tmp/tabib-test-XXXXXX");
    if (!mkdtemp(out)) {
        fprintf(stderr, "test_server: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "test_server: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* rm -rf `dir`, unless TABIB_TEST_KEEP_TMP asks to keep it. */
static void remove_temp_dir(const char *dir)
{
    const char *keep = getenv("TABIB_TEST_KEEP_TMP");
    if (keep && keep[0] && strcmp(keep, "0") != 0) {
        fprintf(stderr, "test_server: keeping %s\n", dir);
        return;
    }
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *ts_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (cap - len - 1 == 0) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

uint16_t ts_free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

/* Binds a UDP socket to 127.0.0.1:port (0 = any); returns the fd and the port, or -1. */
static int bind_udp(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(addr.sin_port);
    return fd;
}

uint16_t ts_free_udp_ports(unsigned count)
{
    if (count == 0 || count > 64)
        return 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        int fds[64];
        uint16_t first;
        fds[0] = bind_udp(0, &first);
        if (fds[0] < 0)
            return 0;
        unsigned bound = 1;
        if (first >= 1024 && (unsigned long)first + count - 1 <= 65535) {
            for (; bound < count; bound++) {
                uint16_t got;
                fds[bound] = bind_udp((uint16_t)(first + bound), &got);
                if (fds[bound] < 0)
                    break;
            }
        }
        for (unsigned i = 0; i < bound; i++)
            close(fds[i]);
        if (bound == count && first >= 1024)
            return first;
    }
    return 0;
}

/* The caller's environment without TABIB_* variables: new array of borrowed strings. */
static char **clean_environment(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "TABIB_", 6) != 0)
            env[k++] = *e;
    env[k] = NULL;
    return env;
}

/*
 * Forks and execs TABIB_BINARY with `argv` (argv[0] included) in `dir`, with
 * stdout and stderr going to dir/stdout.log and dir/stderr.log. Returns the
 * child's PID or -1.
 */
static pid_t spawn(char *const *argv, const char *dir)
{
    char out_path[PATH_MAX + 16], err_path[PATH_MAX + 16];
    snprintf(out_path, sizeof(out_path), "%s/stdout.log", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr.log", dir);
    int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char **env = clean_environment();
    pid_t parent = getpid();
    pid_t pid = -1;
    if (out_fd < 0 || err_fd < 0 || null_fd < 0 || !env) {
        fprintf(stderr, "test_server: cannot prepare the child's files: %s\n", strerror(errno));
        goto out;
    }
    fflush(NULL); /* nothing buffered may be written twice */
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "test_server: fork: %s\n", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        /* The child: die with the test, start from default signal handling. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        if (chdir(dir) != 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(127);
        execve(TABIB_BINARY, argv, env);
        dprintf(2, "test_server: cannot execute %s: %s\n", TABIB_BINARY, strerror(errno));
        _exit(127);
    }
out:
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    if (null_fd >= 0)
        close(null_fd);
    free(env);
    return pid;
}

/* Replaces every "{tmp}" in `arg` with `dir`. Returns a new string or NULL. */
static char *substitute_tmp(const char *arg, const char *dir)
{
    static const char token[] = "{tmp}";
    size_t tlen = sizeof(token) - 1, dlen = strlen(dir), count = 0;
    for (const char *p = strstr(arg, token); p; p = strstr(p + tlen, token))
        count++;
    char *out = malloc(strlen(arg) + count * dlen + 1);
    if (!out)
        return NULL;
    char *w = out;
    for (const char *p = arg;;) {
        const char *hit = strstr(p, token);
        if (!hit) {
            strcpy(w, p);
            break;
        }
        memcpy(w, p, (size_t)(hit - p));
        w += hit - p;
        memcpy(w, dir, dlen);
        w += dlen;
        p = hit + tlen;
    }
    return out;
}

/* Looks at the child without blocking; records its end. Returns true once it has ended. */
static bool reap(struct ts_server *srv)
{
    if (srv->reaped)
        return true;
    int wstatus;
    pid_t r = waitpid(srv->pid, &wstatus, WNOHANG);
    if (r == srv->pid) {
        srv->reaped = true;
        srv->status = status_of(wstatus);
        srv->exited_ms = base_now_ms();
        return true;
    }
    if (r < 0 && errno == ECHILD) { /* not ours any more: treat as gone */
        srv->reaped = true;
        srv->status = -1;
        srv->exited_ms = base_now_ms();
        return true;
    }
    return false;
}

char *ts_server_stderr(const struct ts_server *srv)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/stderr.log", srv->dir);
    return ts_read_file(path, NULL);
}

/* Prints why the server could not start, with its stderr and stdout. */
static void report_start_failure(const struct ts_server *srv, const char *why)
{
    char *err = ts_server_stderr(srv);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/stdout.log", srv->dir);
    char *out = ts_read_file(path, NULL);
    fprintf(stderr,
            "test_server: tabib did not start (%s)\n"
            "--- tabib stderr ---\n%s\n--- tabib stdout ---\n%s\n--- end ---\n",
            why, err ? err : "(unreadable)", out ? out : "(unreadable)");
    free(err);
    free(out);
}

struct ts_server *ts_server_start(const char *const *extra_args)
{
    struct ts_server *srv = calloc(1, sizeof(*srv));
    char *argv[MAX_ARGS + 1] = {NULL};
    char listen[32], media_port[16], data_dir[PATH_MAX + 8], certs_dir[PATH_MAX + 8];
    size_t n = 0, owned_from;
    if (!srv)
        return NULL;
    srv->pid = -1;
    srv->reaped = true;
    if (make_temp_dir(srv->dir) != 0) {
        free(srv);
        return NULL;
    }
    srv->port = ts_free_tcp_port();
    srv->media_port = ts_free_udp_ports(MEDIA_PORT_COUNT);
    if (!srv->port || !srv->media_port) {
        fprintf(stderr, "test_server: no free ports on 127.0.0.1\n");
        goto fail;
    }
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", srv->port);
    snprintf(media_port, sizeof(media_port), "%u", srv->media_port);
    snprintf(data_dir, sizeof(data_dir), "%s/data", srv->dir);
    snprintf(certs_dir, sizeof(certs_dir), "%s/certs", srv->dir);
    const char *fixed[] = {TABIB_BINARY, "--listen",        listen,        "--media-port",
                           media_port,   "--media-workers", MEDIA_WORKERS, "--data-dir",
                           data_dir,     "--certs-dir",     certs_dir};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        argv[n++] = (char *)fixed[i];
    owned_from = n;
    for (size_t i = 0; extra_args && extra_args[i]; i++) {
        if (n == MAX_ARGS) {
            fprintf(stderr, "test_server: more than %d arguments\n", MAX_ARGS);
            goto fail;
        }
        argv[n] = substitute_tmp(extra_args[i], srv->dir);
        if (!argv[n])
            goto fail;
        n++;
    }
    srv->pid = spawn(argv, srv->dir);
    if (srv->pid < 0)
        goto fail;
    srv->reaped = false;

    int64_t deadline = base_now_ms() + TS_READY_TIMEOUT_MS;
    for (;;) {
        if (reap(srv)) {
            char why[64];
            snprintf(why, sizeof(why), "it exited with status %d", srv->status);
            report_start_failure(srv, why);
            goto fail;
        }
        struct tc_response resp;
        int rc = tc_https_get(srv->port, "/readyz", &resp);
        int status = resp.status;
        tc_response_free(&resp);
        if (rc == 0 && status == 200)
            break;
        if (base_now_ms() >= deadline) {
            char why[128];
            snprintf(why, sizeof(why), "/readyz gave %s %d after %d ms", rc ? "error" : "status",
                     rc ? rc : status, TS_READY_TIMEOUT_MS);
            report_start_failure(srv, why);
            goto fail;
        }
        sleep_ms(READY_POLL_MS);
    }
    for (size_t i = owned_from; i < n; i++)
        free(argv[i]);
    return srv;
fail:
    for (size_t i = owned_from; i < n; i++)
        free(argv[i]);
    ts_server_free(srv);
    return NULL;
}

uint16_t ts_server_port(const struct ts_server *srv)
{
    return srv->port;
}

uint16_t ts_server_media_port(const struct ts_server *srv)
{
    return srv->media_port;
}

const char *ts_server_dir(const struct ts_server *srv)
{
    return srv->dir;
}

pid_t ts_server_pid(const struct ts_server *srv)
{
    return srv->pid;
}

int ts_server_kill(struct ts_server *srv, int sig)
{
    if (reap(srv))
        return -1;
    if (sig == SIGTERM && !srv->term_ms)
        srv->term_ms = base_now_ms();
    return kill(srv->pid, sig) == 0 ? 0 : -1;
}

int ts_server_wait(struct ts_server *srv, int timeout_ms)
{
    int64_t deadline = base_now_ms() + timeout_ms;
    while (!reap(srv)) {
        if (base_now_ms() >= deadline)
            return -2;
        sleep_ms(1);
    }
    return srv->status;
}

int ts_server_stop(struct ts_server *srv, int64_t *elapsed_ms)
{
    if (!srv->reaped && !srv->term_ms)
        ts_server_kill(srv, SIGTERM);
    int status = ts_server_wait(srv, TS_STOP_TIMEOUT_MS);
    if (status == -2) {
        fprintf(stderr, "test_server: no exit %d ms after SIGTERM; sending SIGKILL to %d\n",
                TS_STOP_TIMEOUT_MS, (int)srv->pid);
        ts_server_kill(srv, SIGKILL);
        status = ts_server_wait(srv, TS_STOP_TIMEOUT_MS);
    }
    if (elapsed_ms)
        *elapsed_ms = srv->term_ms ? srv->exited_ms - srv->term_ms : 0;
    return status;
}

void ts_server_free(struct ts_server *srv)
{
    if (!srv)
        return;
    if (!reap(srv)) {
        kill(srv->pid, SIGKILL);
        ts_server_wait(srv, TS_STOP_TIMEOUT_MS);
    }
    if (srv->dir[0])
        remove_temp_dir(srv->dir);
    free(srv);
}

int ts_run_to_exit(const char *const *args, char **stderr_text, int timeout_ms)
{
    char dir[PATH_MAX];
    char *argv[MAX_ARGS + 1] = {TABIB_BINARY};
    size_t n = 1;
    if (stderr_text)
        *stderr_text = NULL;
    for (size_t i = 0; args && args[i]; i++) {
        if (n == MAX_ARGS) {
            fprintf(stderr, "test_server: more than %d arguments\n", MAX_ARGS);
            return -1;
        }
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    if (make_temp_dir(dir) != 0)
        return -1;
    struct ts_server run = {.reaped = true};
    snprintf(run.dir, sizeof(run.dir), "%s", dir);
    run.pid = spawn(argv, dir);
    int status = -1;
    if (run.pid > 0) {
        run.reaped = false;
        status = ts_server_wait(&run, timeout_ms);
        if (status == -2) {
            fprintf(stderr, "test_server: still running after %d ms; killing %d\n", timeout_ms,
                    (int)run.pid);
            kill(run.pid, SIGKILL);
            ts_server_wait(&run, TS_STOP_TIMEOUT_MS);
            status = -1;
        }
    }
    if (stderr_text) {
        *stderr_text = ts_server_stderr(&run);
        if (!*stderr_text)
            *stderr_text = strdup("");
    }
    remove_temp_dir(dir);
    return status;
}
