/*
 * test_server.h - starts and stops the real `tabib` binary (TABIB_BINARY) for
 * integration tests.
 *
 * Each server gets its own temporary directory (/tmp/tabib-test-XXXXXX) that
 * is its working directory and holds its data, certificates, stdout.log and
 * stderr.log; free TCP and UDP ports on 127.0.0.1; and a clean environment
 * (no TABIB_* variables leak in from the caller). The child dies with the
 * thread that started it (PR_SET_PDEATHSIG), so a crashed test leaves no
 * server behind. Only the child's own PID is ever signalled.
 *
 * Status values returned here are the child's exit code (0-255), or 128 plus
 * the signal number when a signal ended it (as a shell reports it), or -1
 * when it could not be started or waited for.
 *
 * Call from one thread; the functions block until done or timed out. Set
 * TABIB_TEST_KEEP_TMP=1 to keep the temporary directories for inspection.
 */
#ifndef TABIB_TEST_SERVER_H
#define TABIB_TEST_SERVER_H

#include <stdint.h>
#include <sys/types.h>

/* How long ts_server_start() waits for /readyz to answer 200. */
#define TS_READY_TIMEOUT_MS 10000
/* How long ts_server_stop() waits after SIGTERM before it sends SIGKILL. */
#define TS_STOP_TIMEOUT_MS 10000

struct ts_server;

/*
 * Starts TABIB_BINARY with
 *   --listen 127.0.0.1:PORT --media-port P --media-workers 2
 *   --data-dir TMP/data --certs-dir TMP/certs
 * followed by `extra_args` (a NULL-terminated list, may be NULL; borrowed), in
 * which every "{tmp}" is replaced by the temporary directory. Waits until
 * GET /readyz answers 200. Returns the new server (stop with
 * ts_server_stop(), free with ts_server_free()), or NULL after printing why
 * and the server's stderr, with nothing left running.
 */
struct ts_server *ts_server_start(const char *const *extra_args);

uint16_t ts_server_port(const struct ts_server *srv);       /* HTTPS and WSS */
uint16_t ts_server_media_port(const struct ts_server *srv); /* worker i: this + i */
const char *ts_server_dir(const struct ts_server *srv);     /* borrowed */
pid_t ts_server_pid(const struct ts_server *srv);

/*
 * Sends `sig` to the server's process if it is still running. The time of
 * the first SIGTERM is remembered for ts_server_stop(). Returns 0, or -1 when
 * the process has already been reaped.
 */
int ts_server_kill(struct ts_server *srv, int sig);

/*
 * Waits up to `timeout_ms` for the process to end. Returns its status, or -2
 * when it is still running at the deadline.
 */
int ts_server_wait(struct ts_server *srv, int timeout_ms);

/*
 * Stops the server: SIGTERM (unless ts_server_kill() already sent one), then
 * waits up to TS_STOP_TIMEOUT_MS, then SIGKILL. Returns the status. With
 * `elapsed_ms` not NULL, stores the time from the first SIGTERM to the
 * process's end (measured by polling every millisecond).
 */
int ts_server_stop(struct ts_server *srv, int64_t *elapsed_ms);

/* The server's stderr so far: new string, free with free(); NULL when unreadable. */
char *ts_server_stderr(const struct ts_server *srv);

/*
 * Kills the process (SIGKILL) if it is still running, removes the temporary
 * directory recursively and frees `srv`. NULL does nothing.
 */
void ts_server_free(struct ts_server *srv);

/*
 * Runs TABIB_BINARY with `args` (NULL-terminated, without argv[0]; borrowed)
 * in a fresh temporary directory and waits up to `timeout_ms` for it to exit,
 * killing it past that. Returns its status (-1 if it had to be killed). With
 * `stderr_text` not NULL, stores what it wrote to stderr (new string, free
 * with free(); "" when nothing).
 */
int ts_run_to_exit(const char *const *args, char **stderr_text, int timeout_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago, or 0. */
uint16_t ts_free_tcp_port(void);

/* A UDP port P >= 1024 on 127.0.0.1 such that P .. P+count-1 were free a moment ago, or 0. */
uint16_t ts_free_udp_ports(unsigned count);

/* Reads a whole file: new NUL-terminated string (free with free()) and its length, or NULL. */
char *ts_read_file(const char *path, size_t *len_out);

#endif
