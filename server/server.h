/*
 * server.h - the server module: configuration, TLS certificate, HTTP/WSS
 * front end and the glue that starts and stops Tabib's threads.
 *
 * Only main.c and the tests include this header; no other module may.
 */
#ifndef TABIB_SERVER_H
#define TABIB_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "signaling.h"

/* Set by CMake from project() and git; the fallbacks keep other builds compiling. */
#ifndef TABIB_VERSION
#define TABIB_VERSION "0.0.0"
#endif
#ifndef TABIB_COMMIT
#define TABIB_COMMIT "unknown"
#endif

#define SRV_HOST_MAX   256
#define SRV_IP_MAX     64
#define SRV_CLINIC_MAX 512

/* ------------------------------------------------------------------------- */
/* Configuration (config.c)                                                   */
/* ------------------------------------------------------------------------- */

/*
 * Everything `tabib` can be told. Values come from the embedded defaults, then
 * the config file, then TABIB_* environment variables, then command-line
 * flags; each later source overrides the earlier ones. docs/configuration.md
 * documents every key.
 */
struct srv_config {
    char listen_host[SRV_HOST_MAX]; /* "" = all interfaces */
    uint16_t listen_port;
    uint16_t media_port;    /* worker i binds media_port + i */
    unsigned media_workers; /* 0 until resolved: one per online CPU */
    char public_ip[SRV_IP_MAX];
    char data_dir[PATH_MAX];
    char certs_dir[PATH_MAX];
    char tls_cert[PATH_MAX]; /* "" = generate a self-signed one into certs_dir */
    char tls_key[PATH_MAX];
    char web_root[PATH_MAX];
    enum base_log_format log_format;
    enum base_log_level log_level;
    char log_file[PATH_MAX]; /* "" = standard error */
    unsigned shutdown_grace_ms;
    unsigned max_ws_connections;
    unsigned max_connections_per_address;
    unsigned grace_period_s;    /* a dropped participant keeps their place this long */
    unsigned idle_timeout_s;    /* a silent WebSocket is pinged at half this, closed at it */
    unsigned consent_timeout_s; /* a media leg without a valid ICE check this long ends */
    bool media_segmentation;    /* send a frame's packets to one receiver as one segmented send */
    unsigned session_ttl_s;     /* doctors' and admins' sign-in sessions */
    unsigned message_rate;      /* WebSocket messages per second per connection ... */
    unsigned message_burst;     /* ... and in a burst */
    char config_file[PATH_MAX]; /* the file that was read, "" if none */
    /* Clinics: [clinic ID] sections of the file, or the two demo clinics. */
    unsigned clinic_count;
    struct sig_clinic_config clinics[SRV_CLINIC_MAX];
};

/* What the command line asked for besides configuration. */
enum srv_cli_action {
    SRV_CLI_RUN = 0,
    SRV_CLI_HELP = 1,
    SRV_CLI_VERSION = 2,
};

#define SRV_CONFIG_ERR_MAX 512

/* Fills `cfg` with the embedded defaults. */
void srv_config_defaults(struct srv_config *cfg);

/*
 * Applies one `key = value` setting. `origin` names where it came from for
 * error messages ("tabib.conf:3", "TABIB_LISTEN", "--listen"). Returns 0, or
 * -1 with a message in `err` naming the key, the value and what is allowed.
 */
int srv_config_set(struct srv_config *cfg, const char *key, const char *value, const char *origin,
                   char *err, size_t errlen);

/*
 * Reads a config file (format: docs/configuration.md) into `cfg`. Returns 0,
 * or -1 with `err` naming the file, line and key of the first problem.
 */
int srv_config_load_file(struct srv_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Applies TABIB_<KEY> variables from `envp` (a NULL-terminated environ-style
 * array, borrowed). Unknown TABIB_ variables are ignored. Returns 0 or -1.
 */
int srv_config_load_env(struct srv_config *cfg, char *const *envp, char *err, size_t errlen);

/*
 * The whole start-up sequence: defaults, then the file named by --config or
 * TABIB_CONFIG, then the environment, then the flags in argv[first_arg..].
 * Finally checks the settings together (srv_config_finish). Returns 0 with
 * `*action`, or -1 with `err` (the caller prints it and exits with status 2).
 */
int srv_config_from_command_line(struct srv_config *cfg, int argc, char *const *argv, int first_arg,
                                 char *const *envp, enum srv_cli_action *action, char *err,
                                 size_t errlen);

/* Resolves defaults that depend on the machine and checks cross-key rules. */
int srv_config_finish(struct srv_config *cfg, char *err, size_t errlen);

/* Writes the --help text to `out` (a FILE *). */
void srv_config_print_help(void *out);

/* ------------------------------------------------------------------------- */
/* Static file paths (http_path.c)                                            */
/* ------------------------------------------------------------------------- */

/*
 * Turns a request path ("/doctor", "/css/app.css", "/") into a file path
 * relative to the web root ("doctor.html", "css/app.css", "index.html").
 * Percent-escapes are decoded first; any "." or ".." segment, a segment
 * starting with '.', a backslash, a NUL or another control byte is refused.
 * Returns 0, or -1 when the path must be answered with 404.
 */
int srv_http_path_resolve(const char *request_path, char *out, size_t outlen);

/* The Content-Type for a file name, by extension; application/octet-stream if unknown. */
const char *srv_http_content_type(const char *file_name);

/* ------------------------------------------------------------------------- */
/* TLS certificate (tls_cert.c)                                               */
/* ------------------------------------------------------------------------- */

/*
 * Makes sure the HTTPS certificate and key exist. With cfg->tls_cert and
 * cfg->tls_key set, checks that both can be read and that the key matches,
 * and uses them as they are. Otherwise uses certs_dir/tabib-selfsigned.crt and
 * .key, generating an ECDSA P-256 self-signed pair (SAN localhost, 127.0.0.1,
 * ::1 and the host name; key mode 0600) when they are missing, unreadable or
 * expire within a day. Writes the chosen paths to cert_out/key_out
 * (PATH_MAX bytes each). Returns 0, or -1 with `err`.
 */
int srv_tls_prepare(const struct srv_config *cfg, struct base_logger *log, char *cert_out,
                    char *key_out, char *err, size_t errlen);

/* ------------------------------------------------------------------------- */
/* The running server (server.c, http.c)                                      */
/* ------------------------------------------------------------------------- */

/*
 * Runs Tabib until SIGTERM or SIGINT: starts the audit writer, the media
 * workers and the HTTPS/WSS loop on the calling thread, then stops them in
 * reverse order. Returns the process exit status (0 after a clean stop).
 */
int srv_run(const struct srv_config *cfg, struct base_logger *log);

#endif
