/*
 * config.c - Tabib's settings: embedded defaults, config file, environment and
 * command-line flags, in that order of precedence, each value checked.
 *
 * Runs on the main thread before any other thread starts. Every key is
 * described once, in config_keys[]: its parser, its help text, and from its
 * name follow the environment variable (TABIB_MEDIA_PORT) and the flag
 * (--media-port). A bad value stops start-up with a message that begins with
 * the key, says what was given and what is allowed.
 */
#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TABIB_DEFAULT_WEB_ROOT
#define TABIB_DEFAULT_WEB_ROOT "web"
#endif

#define CONFIG_LINE_MAX  4096
#define MEDIA_WORKER_MAX 256

typedef int (*key_parser)(struct srv_config *cfg, const char *value, char *err, size_t errlen);

struct config_key {
    const char *name;
    const char *meta; /* placeholder for the value in --help */
    const char *help;
    key_parser parse;
};

/* Formats a problem with a value; the caller prefixes the key and origin. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Parses a whole decimal number in [min, max]; no sign, no spaces, no suffix. */
static int parse_uint_range(const char *value, unsigned long min, unsigned long max,
                            const char *what, unsigned long *out, char *err, size_t errlen)
{
    if (!value[0] || strlen(value) > 10)
        goto not_a_number;
    for (const char *p = value; *p; p++)
        if (!isdigit((unsigned char)*p))
            goto not_a_number;
    unsigned long v = strtoul(value, NULL, 10);
    if (v < min || v > max)
        return fail(err, errlen, "%s %s is out of range %lu-%lu", what, value, min, max);
    *out = v;
    return 0;
not_a_number:
    return fail(err, errlen, "%s \"%s\" is not a whole number (allowed: %lu-%lu)", what, value, min,
                max);
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int copy_value(char *dst, size_t dstlen, const char *value, char *err, size_t errlen)
{
    size_t n = strlen(value);
    if (n >= dstlen)
        return fail(err, errlen, "value is %zu bytes long, the limit is %zu", n, dstlen - 1);
    memcpy(dst, value, n + 1);
    return 0;
}

static int copy_path(char *dst, size_t dstlen, const char *value, char *err, size_t errlen)
{
    if (!value[0])
        return fail(err, errlen, "an empty path is not allowed");
    return copy_value(dst, dstlen, value, err, errlen);
}

/*
 * listen = HOST:PORT, [IPV6]:PORT or :PORT. HOST is an IP literal; an empty
 * host, "*" or "::" means every interface.
 */
static int parse_listen(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    char host[SRV_HOST_MAX];
    const char *port;
    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        if (!close || close[1] != ':')
            goto bad_form;
        size_t n = (size_t)(close - value - 1);
        if (n >= sizeof(host))
            goto bad_form;
        memcpy(host, value + 1, n);
        host[n] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(value, ':');
        if (!colon || strchr(value, ':') != colon)
            goto bad_form;
        size_t n = (size_t)(colon - value);
        if (n >= sizeof(host))
            goto bad_form;
        memcpy(host, value, n);
        host[n] = '\0';
        port = colon + 1;
    }
    unsigned long p;
    if (parse_uint_range(port, 1, 65535, "port", &p, err, errlen))
        return -1;
    if (strcmp(host, "*") == 0 || strcmp(host, "::") == 0)
        host[0] = '\0';
    if (host[0] && !is_ip_literal(host))
        return fail(err, errlen,
                    "host \"%s\" is not an IP address (use e.g. 127.0.0.1, [::1], or leave it "
                    "empty as in :8443 for all interfaces)",
                    host);
    strcpy(cfg->listen_host, host);
    cfg->listen_port = (uint16_t)p;
    return 0;
bad_form:
    return fail(err, errlen,
                "\"%s\" is not HOST:PORT (allowed: 0.0.0.0:8443, [::1]:8443, :8443 for all "
                "interfaces)",
                value);
}

static int parse_media_port(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    unsigned long p;
    if (parse_uint_range(value, 1024, 65535, "port", &p, err, errlen))
        return -1;
    cfg->media_port = (uint16_t)p;
    return 0;
}

static int parse_media_workers(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    if (strcmp(value, "auto") == 0) {
        cfg->media_workers = 0;
        return 0;
    }
    unsigned long n;
    if (parse_uint_range(value, 1, MEDIA_WORKER_MAX, "worker count", &n, err, errlen))
        return fail(err, errlen, "\"%s\" is not \"auto\" or a number of workers 1-%d", value,
                    MEDIA_WORKER_MAX);
    cfg->media_workers = (unsigned)n;
    return 0;
}

static int parse_public_ip(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    if (!is_ip_literal(value))
        return fail(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", value);
    return copy_value(cfg->public_ip, sizeof(cfg->public_ip), value, err, errlen);
}

static int parse_data_dir(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_path(cfg->data_dir, sizeof(cfg->data_dir), value, err, errlen);
}

static int parse_certs_dir(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_path(cfg->certs_dir, sizeof(cfg->certs_dir), value, err, errlen);
}

static int parse_tls_cert(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_value(cfg->tls_cert, sizeof(cfg->tls_cert), value, err, errlen);
}

static int parse_tls_key(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_value(cfg->tls_key, sizeof(cfg->tls_key), value, err, errlen);
}

static int parse_web_root(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_path(cfg->web_root, sizeof(cfg->web_root), value, err, errlen);
}

static int parse_log_format(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    if (strcmp(value, "text") == 0)
        cfg->log_format = BASE_LOG_TEXT;
    else if (strcmp(value, "json") == 0)
        cfg->log_format = BASE_LOG_JSON;
    else
        return fail(err, errlen, "\"%s\" is not one of: text, json", value);
    return 0;
}

static int parse_media_segmentation(struct srv_config *cfg, const char *value, char *err,
                                    size_t errlen)
{
    if (strcmp(value, "on") == 0)
        cfg->media_segmentation = true;
    else if (strcmp(value, "off") == 0)
        cfg->media_segmentation = false;
    else
        return fail(err, errlen, "\"%s\" is not one of: on, off", value);
    return 0;
}

static int parse_log_level(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    if (base_log_level_parse(value, &cfg->log_level))
        return fail(err, errlen, "\"%s\" is not one of: debug, info, warn, error", value);
    return 0;
}

static int parse_log_file(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return copy_value(cfg->log_file, sizeof(cfg->log_file), value, err, errlen);
}

static int parse_shutdown_grace(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    unsigned long ms;
    /* The whole stop must fit in 5 s; closing connections gets at most 4 of them. */
    if (parse_uint_range(value, 0, 4000, "milliseconds", &ms, err, errlen))
        return -1;
    cfg->shutdown_grace_ms = (unsigned)ms;
    return 0;
}

static int parse_max_ws(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    unsigned long n;
    if (parse_uint_range(value, 1, 1000000, "connection count", &n, err, errlen))
        return -1;
    cfg->max_ws_connections = (unsigned)n;
    return 0;
}

static int parse_uint_key(unsigned *out, const char *value, unsigned long min, unsigned long max,
                          const char *what, char *err, size_t errlen)
{
    unsigned long v;
    if (parse_uint_range(value, min, max, what, &v, err, errlen))
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_max_per_address(struct srv_config *cfg, const char *value, char *err,
                                 size_t errlen)
{
    return parse_uint_key(&cfg->max_connections_per_address, value, 1, 1000000, "connection count",
                          err, errlen);
}

static int parse_grace(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return parse_uint_key(&cfg->grace_period_s, value, 1, 3600, "seconds", err, errlen);
}

static int parse_idle_timeout(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return parse_uint_key(&cfg->idle_timeout_s, value, 4, 3600, "seconds", err, errlen);
}

static int parse_consent_timeout(struct srv_config *cfg, const char *value, char *err,
                                 size_t errlen)
{
    return parse_uint_key(&cfg->consent_timeout_s, value, 2, 3600, "seconds", err, errlen);
}

static int parse_session_ttl(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return parse_uint_key(&cfg->session_ttl_s, value, 60, 30 * 24 * 3600, "seconds", err, errlen);
}

static int parse_message_rate(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return parse_uint_key(&cfg->message_rate, value, 1, 10000, "messages a second", err, errlen);
}

static int parse_message_burst(struct srv_config *cfg, const char *value, char *err, size_t errlen)
{
    return parse_uint_key(&cfg->message_burst, value, 1, 100000, "messages", err, errlen);
}

static const struct config_key config_keys[] = {
    {"listen", "HOST:PORT", "HTTPS and WSS address (default :8443, all interfaces)", parse_listen},
    {"media_port", "PORT", "first UDP media port; worker i binds PORT+i (default 40000)",
     parse_media_port},
    {"media_workers", "N|auto", "media worker threads (default auto: one per CPU)",
     parse_media_workers},
    {"media_segmentation", "on|off",
     "send runs of same-size packets to one receiver as one UDP segmented send (default on)",
     parse_media_segmentation},
    {"public_ip", "IP", "address put in ICE candidates (default 127.0.0.1)", parse_public_ip},
    {"data_dir", "DIR", "where the database lives (default ./data)", parse_data_dir},
    {"certs_dir", "DIR", "where a generated certificate is kept (default ./certs)",
     parse_certs_dir},
    {"tls_cert", "FILE", "PEM certificate chain to use instead of a generated one", parse_tls_cert},
    {"tls_key", "FILE", "PEM private key for tls_cert", parse_tls_key},
    {"web_root", "DIR", "static files of the web app", parse_web_root},
    {"log_format", "text|json", "log line format (default text)", parse_log_format},
    {"log_level", "LEVEL", "debug, info, warn or error (default info)", parse_log_level},
    {"log_file", "FILE", "append logs here instead of standard error; SIGHUP reopens it",
     parse_log_file},
    {"shutdown_grace_ms", "MS", "time given to connections to close on SIGTERM (default 1000)",
     parse_shutdown_grace},
    {"max_ws_connections", "N", "open WebSocket connections allowed (default 10000)", parse_max_ws},
    {"max_connections_per_address", "N", "WebSocket connections from one address (default 200)",
     parse_max_per_address},
    {"grace_period_s", "S", "a dropped patient or doctor keeps their place S seconds (default 60)",
     parse_grace},
    {"idle_timeout_s", "S",
     "a silent WebSocket is pinged after S/2 and closed after S (default 60)", parse_idle_timeout},
    {"consent_timeout_s", "S",
     "a media leg without a valid ICE consent check for S seconds ends (default 30)",
     parse_consent_timeout},
    {"session_ttl_s", "S", "doctors' and admins' sign-ins last S seconds (default 43200)",
     parse_session_ttl},
    {"message_rate", "N", "WebSocket messages a second per connection (default 20)",
     parse_message_rate},
    {"message_burst", "N", "... and in a burst (default 40)", parse_message_burst},
};

#define CONFIG_KEY_COUNT (sizeof(config_keys) / sizeof(config_keys[0]))

static const struct config_key *find_key(const char *name)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

/* "listen, media_port, ..." for messages about unknown keys. */
static void list_keys(char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < CONFIG_KEY_COUNT && len < outlen; i++) {
        int n = snprintf(out + len, outlen - len, "%s%s", i ? ", " : "", config_keys[i].name);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

static void add_clinic(struct srv_config *cfg, const char *id, const char *name_en,
                       const char *name_ar, unsigned queue_limit)
{
    struct sig_clinic_config *c = &cfg->clinics[cfg->clinic_count++];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->name_en, sizeof(c->name_en), "%s", name_en);
    snprintf(c->name_ar, sizeof(c->name_ar), "%s", name_ar);
    c->queue_limit = queue_limit;
}

/* The embedded default: two demo clinics, replaced by any [clinic] section of a config file. */
static void add_demo_clinics(struct srv_config *cfg)
{
    cfg->clinic_count = 0;
    add_clinic(cfg, "general", "General Practice", "الطب العام", 200);
    add_clinic(cfg, "paediatrics", "Paediatrics", "طب الأطفال", 100);
}

/* Clinic ids appear in links (/c/<id>) and logs: [a-z0-9_-], 1-63 bytes. */
static bool is_clinic_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= SIG_ID_MAX)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Applies one key of a [clinic ID] section. */
static int set_clinic_key(struct sig_clinic_config *c, const char *key, const char *value,
                          const char *origin, char *err, size_t errlen)
{
    char why[SRV_CONFIG_ERR_MAX];
    if (strcmp(key, "name_en") == 0 || strcmp(key, "name_ar") == 0) {
        char *dst = key[5] == 'e' ? c->name_en : c->name_ar;
        if (!value[0] || strlen(value) >= SIG_CLINIC_NAME_MAX)
            return fail(err, errlen, "clinic %s: %s (%s): give a name of 1-%d bytes", c->id, key,
                        origin, SIG_CLINIC_NAME_MAX - 1);
        strcpy(dst, value);
        return 0;
    }
    if (strcmp(key, "queue_limit") == 0) {
        unsigned long n;
        if (parse_uint_range(value, 1, 100000, "patients", &n, why, sizeof(why)))
            return fail(err, errlen, "clinic %s: queue_limit (%s): %s", c->id, origin, why);
        c->queue_limit = (unsigned)n;
        return 0;
    }
    if (strcmp(key, "hours") == 0) {
        if (sig_clinic_parse_hours(c, value) != 0)
            return fail(err, errlen,
                        "clinic %s: hours (%s): \"%s\" is not DAYS HH:MM-HH:MM (e.g. Sun-Thu "
                        "08:00-20:00, Mon,Wed 09:00-13:00, daily 00:00-24:00)",
                        c->id, origin, value);
        return 0;
    }
    return fail(err, errlen,
                "clinic %s: unknown key \"%s\" (%s; known keys: name_en, name_ar, queue_limit, "
                "hours)",
                c->id, key, origin);
}

/* Starts a [clinic ID] section; the first one drops the demo clinics. */
static int begin_clinic(struct srv_config *cfg, bool *file_has_clinics, const char *header,
                        const char *origin, char *err, size_t errlen)
{
    char id[SIG_ID_MAX + 16];
    size_t n = strlen(header);
    if (n < 10 || header[n - 1] != ']' || strncmp(header, "[clinic ", 8) != 0)
        return fail(err, errlen, "%s: unknown section %s (allowed: [clinic ID])", origin, header);
    snprintf(id, sizeof(id), "%.*s", (int)(n - 9), header + 8);
    if (!is_clinic_id(id))
        return fail(err, errlen, "%s: clinic id \"%s\" must be 1-63 of a-z, 0-9, _ and -", origin,
                    id);
    if (!*file_has_clinics) {
        cfg->clinic_count = 0;
        *file_has_clinics = true;
    }
    for (unsigned i = 0; i < cfg->clinic_count; i++)
        if (strcmp(cfg->clinics[i].id, id) == 0)
            return fail(err, errlen, "%s: clinic \"%s\" is defined twice", origin, id);
    if (cfg->clinic_count >= SRV_CLINIC_MAX)
        return fail(err, errlen, "%s: more than %d clinics", origin, SRV_CLINIC_MAX);
    add_clinic(cfg, id, "", "", 200);
    return 0;
}

static int check_clinic(const struct sig_clinic_config *c, const char *path, char *err,
                        size_t errlen)
{
    if (!c->name_en[0] || !c->name_ar[0])
        return fail(err, errlen, "clinic %s (%s): set both name_en and name_ar", c->id, path);
    return 0;
}

void srv_config_defaults(struct srv_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_port = 8443;
    cfg->media_port = 40000;
    cfg->media_workers = 0;
    strcpy(cfg->public_ip, "127.0.0.1");
    strcpy(cfg->data_dir, "data");
    strcpy(cfg->certs_dir, "certs");
    snprintf(cfg->web_root, sizeof(cfg->web_root), "%s", TABIB_DEFAULT_WEB_ROOT);
    cfg->log_format = BASE_LOG_TEXT;
    cfg->log_level = BASE_LOG_INFO;
    cfg->shutdown_grace_ms = 1000;
    cfg->max_ws_connections = 10000;
    cfg->max_connections_per_address = 200;
    cfg->grace_period_s = 60;
    cfg->idle_timeout_s = 60;
    cfg->consent_timeout_s = 30;
    cfg->media_segmentation = true;
    cfg->session_ttl_s = 12 * 3600;
    cfg->message_rate = 20;
    cfg->message_burst = 40;
    add_demo_clinics(cfg);
}

int srv_config_set(struct srv_config *cfg, const char *key, const char *value, const char *origin,
                   char *err, size_t errlen)
{
    const struct config_key *k = find_key(key);
    char why[SRV_CONFIG_ERR_MAX];
    if (!k) {
        char keys[SRV_CONFIG_ERR_MAX];
        list_keys(keys, sizeof(keys));
        return fail(err, errlen, "%s: unknown key \"%s\" (known keys: %s)", origin, key, keys);
    }
    if (k->parse(cfg, value, why, sizeof(why)) == 0)
        return 0;
    if (origin && origin[0] != '-')
        return fail(err, errlen, "%s (%s): %s", key, origin, why);
    return fail(err, errlen, "%s: %s", key, why);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Unquotes "..." in place (escapes \" and \\); returns NULL when malformed. */
static char *unquote(char *v)
{
    if (v[0] != '"')
        return v;
    char *out = v, *in = v + 1;
    for (; *in && *in != '"'; in++) {
        if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
            in++;
        *out++ = *in;
    }
    if (*in != '"' || in[1] != '\0')
        return NULL;
    *out = '\0';
    return v;
}

int srv_config_load_file(struct srv_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, errlen, "config: cannot read \"%s\": %s", path, strerror(errno));
    char line[CONFIG_LINE_MAX + 2];
    unsigned first_seen[CONFIG_KEY_COUNT] = {0};
    unsigned lineno = 0;
    int rc = 0;
    bool in_clinic = false, file_has_clinics = false;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char origin[PATH_MAX + 32];
        snprintf(origin, sizeof(origin), "%s line %u", path, lineno);
        if (strlen(line) > CONFIG_LINE_MAX) {
            rc = fail(err, errlen, "%s: line is longer than %d bytes", origin, CONFIG_LINE_MAX);
            break;
        }
        char *s = trim(line);
        if (!s[0] || s[0] == '#')
            continue;
        if (s[0] == '[') {
            if (in_clinic &&
                (rc = check_clinic(&cfg->clinics[cfg->clinic_count - 1], path, err, errlen)) != 0)
                break;
            if ((rc = begin_clinic(cfg, &file_has_clinics, s, origin, err, errlen)) != 0)
                break;
            in_clinic = true;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = fail(err, errlen, "%s: expected key = value, got \"%s\"", origin, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = unquote(trim(eq + 1));
        if (!value) {
            rc = fail(err, errlen, "%s (%s): unterminated or malformed quoted value", key, origin);
            break;
        }
        if (in_clinic) {
            if ((rc = set_clinic_key(&cfg->clinics[cfg->clinic_count - 1], key, value, origin, err,
                                     errlen)) != 0)
                break;
            continue;
        }
        const struct config_key *k = find_key(key);
        if (k) {
            size_t idx = (size_t)(k - config_keys);
            if (first_seen[idx]) {
                rc = fail(err, errlen, "%s (%s): set twice, first on line %u", key, origin,
                          first_seen[idx]);
                break;
            }
            first_seen[idx] = lineno;
        }
        if (srv_config_set(cfg, key, value, origin, err, errlen)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = fail(err, errlen, "config: error reading \"%s\"", path);
    if (rc == 0 && in_clinic)
        rc = check_clinic(&cfg->clinics[cfg->clinic_count - 1], path, err, errlen);
    fclose(f);
    if (rc == 0)
        snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", path);
    return rc;
}

/* TABIB_MEDIA_PORT for media_port. */
static void env_name(const char *key, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "TABIB_");
    for (const char *p = key; *p && n + 1 < outlen; p++)
        out[n++] = (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

int srv_config_load_env(struct srv_config *cfg, char *const *envp, char *err, size_t errlen)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        char name[64];
        env_name(config_keys[i].name, name, sizeof(name));
        size_t n = strlen(name);
        for (char *const *e = envp; e && *e; e++) {
            if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
                if (srv_config_set(cfg, config_keys[i].name, *e + n + 1, name, err, errlen))
                    return -1;
            }
        }
    }
    return 0;
}

/* --media-port for media_port; returns the key for a flag name, or NULL. */
static const struct config_key *key_for_flag(const char *flag, size_t len)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const char *name = config_keys[i].name;
        if (strlen(name) != len)
            continue;
        size_t j = 0;
        while (j < len && (name[j] == flag[j] || (name[j] == '_' && flag[j] == '-')))
            j++;
        if (j == len)
            return &config_keys[i];
    }
    return NULL;
}

/* Splits "--name=value" or "--name value"; returns the value or NULL when missing. */
static const char *flag_value(int argc, char *const *argv, int *i, const char *eq)
{
    if (eq)
        return eq + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static const char *find_env(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

int srv_config_from_command_line(struct srv_config *cfg, int argc, char *const *argv, int first_arg,
                                 char *const *envp, enum srv_cli_action *action, char *err,
                                 size_t errlen)
{
    *action = SRV_CLI_RUN;
    srv_config_defaults(cfg);

    /* First pass: --help, --version and --config, which decide what else is read. */
    const char *config_path = find_env(envp, "TABIB_CONFIG");
    for (int i = first_arg; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = SRV_CLI_HELP;
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            *action = SRV_CLI_VERSION;
            return 0;
        }
        if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
            config_path = flag_value(argc, argv, &i, a[8] == '=' ? a + 8 : NULL);
            if (!config_path || !config_path[0])
                return fail(err, errlen, "config: --config needs a file name");
        }
    }
    if (config_path && config_path[0] && srv_config_load_file(cfg, config_path, err, errlen))
        return -1;
    if (srv_config_load_env(cfg, envp, err, errlen))
        return -1;

    for (int i = first_arg; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return fail(err, errlen, "unexpected argument \"%s\" (see tabib --help)", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) {
            flag_value(argc, argv, &i, eq);
            continue;
        }
        const struct config_key *k = key_for_flag(name, len);
        if (!k)
            return fail(err, errlen, "unknown option --%.*s (see tabib --help)", (int)len, name);
        const char *value = flag_value(argc, argv, &i, eq);
        if (!value)
            return fail(err, errlen, "%s: --%.*s needs a value (%s)", k->name, (int)len, name,
                        k->meta);
        char origin[80];
        snprintf(origin, sizeof(origin), "--%.*s", (int)len, name);
        if (srv_config_set(cfg, k->name, value, origin, err, errlen))
            return -1;
    }
    return srv_config_finish(cfg, err, errlen);
}

int srv_config_finish(struct srv_config *cfg, char *err, size_t errlen)
{
    if (cfg->media_workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->media_workers = n < 1 ? 1 : (n > MEDIA_WORKER_MAX ? MEDIA_WORKER_MAX : (unsigned)n);
    }
    if ((unsigned long)cfg->media_port + cfg->media_workers - 1 > 65535)
        return fail(err, errlen,
                    "media_port: %u with %u workers needs ports up to %lu, past 65535 (lower "
                    "media_port or media_workers)",
                    cfg->media_port, cfg->media_workers,
                    (unsigned long)cfg->media_port + cfg->media_workers - 1);
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return fail(err, errlen, "%s: set tls_cert and tls_key together (only %s is set)",
                    cfg->tls_cert[0] ? "tls_key" : "tls_cert",
                    cfg->tls_cert[0] ? "tls_cert" : "tls_key");
    return 0;
}

void srv_config_print_help(void *out)
{
    FILE *f = out;
    fprintf(f, "Usage: tabib [OPTIONS]\n\n"
               "Serves Tabib's clinics over HTTPS and WSS and relays their consultations.\n\n"
               "Options (each also a config file key and a TABIB_<KEY> variable):\n");
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", config_keys[i].name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        char left[96];
        snprintf(left, sizeof(left), "%s %s", flag, config_keys[i].meta);
        fprintf(f, "  %-28s %s\n", left, config_keys[i].help);
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n  %-28s %s\n\n", "--config FILE",
            "read settings from FILE (or TABIB_CONFIG); flags and environment win", "--help",
            "show this help", "--version", "show the version and build");
    fprintf(f, "Precedence: defaults < config file < TABIB_* environment < flags.\n"
               "See docs/configuration.md for the file format.\n");
}
