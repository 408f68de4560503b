/*
 * log.c - structured logging: one line per event, as text or JSON.
 *
 * Any thread may log; a line is built in a stack buffer and written with one
 * write() so concurrent lines never interleave (O_APPEND for files). There is
 * no lock and no allocation per line. Nothing on the packet path logs: media
 * code counts instead, and the counters are read through /metrics.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

struct base_logger {
    int fd;
    bool owns_fd;
    char path[PATH_MAX];
    enum base_log_format format;
    enum base_log_level min_level;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *base_log_level_name(enum base_log_level level)
{
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return NULL;
    return level_names[level];
}

int base_log_level_parse(const char *name, enum base_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum base_log_level)i;
            return 0;
        }
    }
    return -1;
}

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

struct base_logger *base_logger_new(const char *path, enum base_log_format format,
                                    enum base_log_level min_level, char *err, size_t errlen)
{
    struct base_logger *log = calloc(1, sizeof(*log));
    if (!log) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log->format = format;
    log->min_level = min_level;
    log->fd = STDERR_FILENO;
    if (path && path[0]) {
        if (strlen(path) >= sizeof(log->path)) {
            snprintf(err, errlen, "log_file: path is too long");
            goto fail;
        }
        strcpy(log->path, path);
        log->fd = open_log_file(path);
        if (log->fd < 0) {
            snprintf(err, errlen, "log_file: cannot open \"%s\": %s", path, strerror(errno));
            goto fail;
        }
        log->owns_fd = true;
    }
    return log;
fail:
    free(log);
    return NULL;
}

void base_logger_free(struct base_logger *log)
{
    if (!log)
        return;
    if (log->owns_fd)
        close(log->fd);
    free(log);
}

int base_logger_reopen(struct base_logger *log)
{
    if (!log->owns_fd)
        return 0;
    int fd = open_log_file(log->path);
    if (fd < 0)
        return -errno;
    /* dup2 replaces the descriptor atomically: writers never see a closed fd. */
    if (dup3(fd, log->fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

bool base_logger_enabled(const struct base_logger *log, enum base_log_level level)
{
    return log && level >= log->min_level;
}

/* A growing line in a fixed buffer; once full, further appends are ignored. */
struct line {
    char *buf;
    size_t len;
    size_t cap; /* excludes room kept for the final newline */
};

static void put_bytes(struct line *l, const char *s, size_t n)
{
    if (l->len >= l->cap)
        return;
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_str(struct line *l, const char *s)
{
    put_bytes(l, s, strlen(s));
}

static void put_int(struct line *l, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    if (n > 0)
        put_bytes(l, tmp, (size_t)n);
}

/* JSON string body: escapes quotes, backslashes and control bytes; UTF-8 passes through. */
static void put_json_escaped(struct line *l, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            put_str(l, "\\\"");
            break;
        case '\\':
            put_str(l, "\\\\");
            break;
        case '\n':
            put_str(l, "\\n");
            break;
        case '\r':
            put_str(l, "\\r");
            break;
        case '\t':
            put_str(l, "\\t");
            break;
        default:
            if (*p < 0x20) {
                char esc[8];
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                put_str(l, esc);
            } else
                put_bytes(l, (const char *)p, 1);
        }
    }
}

/*
 * Text values are written bare when they are a single plain token, and quoted
 * (with JSON escapes) otherwise, so that a line always splits unambiguously
 * into key=value pairs.
 */
static void put_text_value(struct line *l, const char *s)
{
    bool plain = s[0] != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        plain = *p > 0x20 && *p != '"' && *p != '=' && *p != '\\' && *p != 0x7f;
    if (plain) {
        put_str(l, s);
        return;
    }
    put_str(l, "\"");
    put_json_escaped(l, s);
    put_str(l, "\"");
}

void base_format_utc(int64_t wall_ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}

void base_log_emit(struct base_logger *log, enum base_log_level level, const char *module,
                   const char *msg, const struct base_log_field *fields, size_t nfields)
{
    if (!base_logger_enabled(log, level))
        return;
    char buf[LOG_LINE_MAX];
    struct line l = {.buf = buf, .len = 0, .cap = sizeof(buf) - 1};
    char ts[32];
    base_format_utc(base_wall_ms(), ts, sizeof(ts));
    const char *lvl = base_log_level_name(level);
    if (!lvl)
        lvl = "info";

    if (log->format == BASE_LOG_JSON) {
        put_str(&l, "{\"ts\":\"");
        put_str(&l, ts);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, lvl);
        put_str(&l, "\",\"module\":\"");
        put_json_escaped(&l, module);
        put_str(&l, "\",\"msg\":\"");
        put_json_escaped(&l, msg);
        put_str(&l, "\"");
        size_t last_whole = l.len;
        for (size_t i = 0; i < nfields && l.len < l.cap; i++) {
            last_whole = l.len;
            put_str(&l, ",\"");
            put_json_escaped(&l, fields[i].key);
            put_str(&l, "\":");
            if (fields[i].kind == BASE_LOG_FIELD_INT) {
                put_int(&l, fields[i].num);
            } else {
                put_str(&l, "\"");
                put_json_escaped(&l, fields[i].str ? fields[i].str : "");
                put_str(&l, "\"");
            }
        }
        /* A line that ran out of room drops its last field rather than end as broken JSON. */
        static const char cut_tail[] = ",\"truncated\":true}";
        if (l.len + sizeof(cut_tail) > l.cap) {
            l.len = last_whole;
            if (l.len + sizeof(cut_tail) > l.cap)
                l.len = l.cap - sizeof(cut_tail);
            put_str(&l, cut_tail);
        } else {
            put_str(&l, "}");
        }
    } else {
        char upper[8];
        size_t n = strlen(lvl);
        for (size_t i = 0; i < n && i < sizeof(upper) - 1; i++)
            upper[i] = (char)(lvl[i] - 'a' + 'A');
        upper[n < sizeof(upper) - 1 ? n : sizeof(upper) - 1] = '\0';
        put_str(&l, ts);
        put_str(&l, " ");
        put_str(&l, upper);
        put_str(&l, n < 5 ? "  " : " ");
        put_str(&l, module);
        put_str(&l, ": ");
        put_str(&l, msg);
        for (size_t i = 0; i < nfields; i++) {
            put_str(&l, " ");
            put_str(&l, fields[i].key);
            put_str(&l, "=");
            if (fields[i].kind == BASE_LOG_FIELD_INT)
                put_int(&l, fields[i].num);
            else
                put_text_value(&l, fields[i].str ? fields[i].str : "");
        }
    }
    buf[l.len++] = '\n';
    /* One write per line; a short write to a full disk is not retried. */
    ssize_t w = write(log->fd, buf, l.len);
    (void)w;
}

int64_t base_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t base_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
