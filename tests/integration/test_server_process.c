/*
 * test_server_process.c - the real `tabib` binary, started as a process and
 * spoken to over HTTPS, WSS and UDP on 127.0.0.1: health, readiness and
 * metrics endpoints (with a strict Prometheus text-format check), static
 * files and path traversal, the tabib.v1 WebSocket and its limits, bad
 * configurations, media datagrams, SIGTERM and SIGHUP.
 *
 * Read-only checks share one server (the group fixture); tests that change
 * the server's state or signal it start their own, held in the fixture so
 * that the teardown stops it even when an assertion fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "test_client.h"
#include "test_server.h"

#define WS_TIMEOUT_MS   5000
#define STOP_BUDGET_MS  5000
#define POLL_BUDGET_MS  3000
#define WS_MESSAGE_MAX  (64 * 1024)
#define PROM_FAMILY_MAX 512

struct suite {
    struct ts_server *shared; /* started once, for read-only checks */
    struct ts_server *own;    /* a test's own server; the teardown frees it */
    struct tc_ws *ws;         /* a test's connection; the teardown closes it */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------- */
/* A strict checker of the Prometheus text exposition format (0.0.4)          */
/* ------------------------------------------------------------------------- */

struct prom_family {
    char name[256];
    char type[16]; /* "" until a TYPE line */
    bool helped;
    bool sampled;
    bool closed; /* another family's lines came after this one's */
};

struct prom_check {
    struct prom_family fam[PROM_FAMILY_MAX];
    size_t nfam;
    long current; /* index of the family of the previous line, -1 at the start */
    char **series;
    size_t nseries;
    char *err;
    size_t errlen;
    unsigned lineno;
};

static int prom_fail(struct prom_check *pc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int prom_fail(struct prom_check *pc, const char *fmt, ...)
{
    int n = snprintf(pc->err, pc->errlen, "line %u: ", pc->lineno);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < pc->errlen)
        vsnprintf(pc->err + n, pc->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Length of a metric name at `s` ([a-zA-Z_:][a-zA-Z0-9_:]*), 0 if none. */
static size_t prom_metric_name(const char *s)
{
    size_t n = 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == ':')
        n++;
    return n;
}

/* Length of a label name at `s` ([a-zA-Z_][a-zA-Z0-9_]*), 0 if none. */
static size_t prom_label_name(const char *s)
{
    size_t n = 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_')
        n++;
    return n;
}

/* A sample value: a decimal float, +Inf, -Inf or NaN, exactly `n` bytes. */
static bool prom_value_ok(const char *s, size_t n)
{
    if ((n == 4 && (strncmp(s, "+Inf", 4) == 0 || strncmp(s, "-Inf", 4) == 0)) ||
        (n == 3 && strncmp(s, "NaN", 3) == 0))
        return true;
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && isdigit((unsigned char)s[i]))
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && isdigit((unsigned char)s[i]))
            i++, digits++;
    }
    if (!digits)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp = 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++, exp++;
        if (!exp)
            return false;
    }
    return i == n;
}

/* Finds or adds a family. Returns its index or -1 when the table is full. */
static long prom_family_get(struct prom_check *pc, const char *name, size_t len)
{
    for (size_t i = 0; i < pc->nfam; i++)
        if (strlen(pc->fam[i].name) == len && strncmp(pc->fam[i].name, name, len) == 0)
            return (long)i;
    if (pc->nfam == PROM_FAMILY_MAX || len >= sizeof(pc->fam[0].name))
        return -1;
    struct prom_family *f = &pc->fam[pc->nfam];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, len);
    return (long)pc->nfam++;
}

/* Makes `idx` the current family; a family's lines must form one group. */
static int prom_enter(struct prom_check *pc, long idx)
{
    if (idx == pc->current)
        return 0;
    if (pc->fam[idx].closed)
        return prom_fail(pc, "lines of %s are not in one group", pc->fam[idx].name);
    if (pc->current >= 0)
        pc->fam[pc->current].closed = true;
    pc->current = idx;
    return 0;
}

/* "# HELP name text" or "# TYPE name type", `s` after the "# ". */
static int prom_comment(struct prom_check *pc, const char *s, size_t len)
{
    bool help = len > 5 && strncmp(s, "HELP ", 5) == 0;
    bool type = len > 5 && strncmp(s, "TYPE ", 5) == 0;
    if (!help && !type)
        return prom_fail(pc, "a comment that is neither # HELP nor # TYPE");
    const char *name = s + 5;
    size_t nlen = prom_metric_name(name);
    if (!nlen)
        return prom_fail(pc, "bad metric name after %.4s", s);
    const char *rest = name + nlen, *end = s + len;
    if (rest >= end || *rest != ' ')
        return prom_fail(pc, "%.4s %.*s needs a space and a text", s, (int)nlen, name);
    rest++;
    long idx = prom_family_get(pc, name, nlen);
    if (idx < 0)
        return prom_fail(pc, "too many families");
    if (prom_enter(pc, idx))
        return -1;
    struct prom_family *f = &pc->fam[idx];
    if (help) {
        if (f->helped)
            return prom_fail(pc, "second HELP for %s", f->name);
        f->helped = true;
        for (const char *p = rest; p < end; p++)
            if (*p == '\\' && (p + 1 == end || (p[1] != '\\' && p[1] != 'n')))
                return prom_fail(pc, "bad escape in HELP of %s", f->name);
            else if (*p == '\\')
                p++;
        return 0;
    }
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    size_t tlen = (size_t)(end - rest);
    bool known = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i]) == tlen && strncmp(types[i], rest, tlen) == 0)
            known = true;
    if (!known)
        return prom_fail(pc, "unknown type \"%.*s\" for %s", (int)tlen, rest, f->name);
    if (f->type[0])
        return prom_fail(pc, "second TYPE for %s", f->name);
    if (f->sampled)
        return prom_fail(pc, "TYPE of %s after its samples", f->name);
    memcpy(f->type, rest, tlen);
    f->type[tlen] = '\0';
    return 0;
}

/* The typed family a sample name belongs to (suffixes of histograms and summaries), or -1. */
static long prom_family_of_sample(struct prom_check *pc, const char *name, size_t nlen,
                                  bool *bucket)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    *bucket = false;
    for (size_t i = 0; i < pc->nfam; i++)
        if (strlen(pc->fam[i].name) == nlen && strncmp(pc->fam[i].name, name, nlen) == 0 &&
            pc->fam[i].type[0])
            return (strcmp(pc->fam[i].type, "histogram") == 0) ? -1 : (long)i;
    for (size_t s = 0; s < sizeof(suffixes) / sizeof(suffixes[0]); s++) {
        size_t slen = strlen(suffixes[s]);
        if (nlen <= slen || strncmp(name + nlen - slen, suffixes[s], slen) != 0)
            continue;
        for (size_t i = 0; i < pc->nfam; i++) {
            const struct prom_family *f = &pc->fam[i];
            if (strlen(f->name) != nlen - slen || strncmp(f->name, name, nlen - slen) != 0)
                continue;
            bool hist = strcmp(f->type, "histogram") == 0, summ = strcmp(f->type, "summary") == 0;
            if (hist || (summ && s > 0)) {
                *bucket = s == 0;
                return (long)i;
            }
        }
    }
    return -1;
}

/* name{label="value",...} value [timestamp] */
static int prom_sample_line(struct prom_check *pc, const char *s, size_t len)
{
    const char *end = s + len;
    size_t nlen = prom_metric_name(s);
    if (!nlen)
        return prom_fail(pc, "a sample must start with a metric name");
    const char *p = s + nlen;
    char labels[16][128];
    size_t nlabels = 0;
    bool has_le = false;
    if (p < end && *p == '{') {
        p++;
        while (p < end && *p != '}') {
            size_t llen = prom_label_name(p);
            if (!llen)
                return prom_fail(pc, "bad label name in %.*s", (int)nlen, s);
            if (llen >= 2 && p[0] == '_' && p[1] == '_')
                return prom_fail(pc, "reserved label name %.*s", (int)llen, p);
            if (llen >= sizeof(labels[0]) || nlabels == 16)
                return prom_fail(pc, "label too long or too many labels");
            for (size_t i = 0; i < nlabels; i++)
                if (strlen(labels[i]) == llen && strncmp(labels[i], p, llen) == 0)
                    return prom_fail(pc, "label %.*s twice", (int)llen, p);
            memcpy(labels[nlabels], p, llen);
            labels[nlabels++][llen] = '\0';
            if (llen == 2 && strncmp(p, "le", 2) == 0)
                has_le = true;
            p += llen;
            if (p + 1 >= end || p[0] != '=' || p[1] != '"')
                return prom_fail(pc, "label %s needs =\"value\"", labels[nlabels - 1]);
            p += 2;
            for (;;) {
                if (p >= end)
                    return prom_fail(pc, "unterminated label value");
                if (*p == '"')
                    break;
                if (*p == '\\') {
                    if (p + 1 >= end || (p[1] != '\\' && p[1] != '"' && p[1] != 'n'))
                        return prom_fail(pc, "bad escape in label value");
                    p++;
                }
                p++;
            }
            p++; /* the closing quote */
            if (p < end && *p == ',')
                p++;
            else if (p >= end || *p != '}')
                return prom_fail(pc, "expected , or } after a label value");
        }
        if (p >= end)
            return prom_fail(pc, "unterminated label set");
        p++;
    }
    size_t key_len = (size_t)(p - s);
    if (p >= end || *p != ' ')
        return prom_fail(pc, "expected a space before the value");
    p++;
    const char *v = p;
    while (p < end && *p != ' ')
        p++;
    if (!prom_value_ok(v, (size_t)(p - v)))
        return prom_fail(pc, "bad value \"%.*s\"", (int)(p - v), v);
    if (p < end) { /* an optional timestamp in milliseconds */
        p++;
        const char *t = p;
        if (p < end && *p == '-')
            p++;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p != end || p == t || (p == t + 1 && *t == '-'))
            return prom_fail(pc, "bad timestamp");
    }

    bool bucket;
    long idx = prom_family_of_sample(pc, s, nlen, &bucket);
    if (idx < 0)
        return prom_fail(pc, "sample %.*s has no TYPE line before it", (int)nlen, s);
    if (bucket && !has_le)
        return prom_fail(pc, "histogram bucket without le");
    if (prom_enter(pc, idx))
        return -1;
    pc->fam[idx].sampled = true;
    for (size_t i = 0; i < pc->nseries; i++)
        if (strlen(pc->series[i]) == key_len && strncmp(pc->series[i], s, key_len) == 0)
            return prom_fail(pc, "series %.*s twice", (int)key_len, s);
    char **grown = realloc(pc->series, (pc->nseries + 1) * sizeof(*grown));
    if (!grown)
        return prom_fail(pc, "out of memory");
    pc->series = grown;
    pc->series[pc->nseries] = strndup(s, key_len);
    if (!pc->series[pc->nseries])
        return prom_fail(pc, "out of memory");
    pc->nseries++;
    return 0;
}

/*
 * Checks `text` strictly: every line a # HELP, a # TYPE or a sample; every
 * sample's family TYPE'd before it, no family TYPE'd or HELP'd twice, a
 * family's lines in one group, no series twice, valid names, escapes and
 * values, a final newline. Returns 0, or -1 with "line N: why" in `err`.
 */
static int prom_validate(const char *text, char *err, size_t errlen)
{
    struct prom_check *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pc->current = -1;
    pc->err = err;
    pc->errlen = errlen;
    err[0] = '\0';
    int rc = 0;
    size_t total = strlen(text);
    if (total == 0 || text[total - 1] != '\n')
        rc = prom_fail(pc, "the text must end with a newline");
    for (const char *line = text; rc == 0 && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = (size_t)(nl - line);
        pc->lineno++;
        if (len == 0)
            rc = prom_fail(pc, "empty line");
        else if (memchr(line, '\r', len) || memchr(line, '\t', len))
            rc = prom_fail(pc, "carriage return or tab");
        else if (line[0] == '#')
            rc = len > 2 && line[1] == ' ' ? prom_comment(pc, line + 2, len - 2)
                                           : prom_fail(pc, "a comment must start with \"# \"");
        else
            rc = prom_sample_line(pc, line, len);
        line = nl + 1;
    }
    for (size_t i = 0; i < pc->nseries; i++)
        free(pc->series[i]);
    free(pc->series);
    free(pc);
    return rc;
}

/*
 * The value of the first sample whose text (name and labels) starts with
 * `prefix`, e.g. "tabib_uptime_seconds " or "x_total{worker=\"0\",". Returns
 * 0, or -1 when there is none.
 */
static int prom_find(const char *text, const char *prefix, double *out)
{
    size_t plen = strlen(prefix);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line);
        if (strncmp(line, prefix, plen) == 0 && line[0] != '#') {
            const char *p = line;
            bool quoted = false;
            while (p < nl && (quoted || *p != ' ')) {
                if (*p == '\\' && quoted)
                    p++;
                else if (*p == '"')
                    quoted = !quoted;
                p++;
            }
            char *end;
            *out = strtod(p, &end);
            return end == p ? -1 : 0;
        }
        line = *nl ? nl + 1 : nl;
    }
    return -1;
}

/* ------------------------------------------------------------------------- */
/* Fixtures and helpers                                                       */
/* ------------------------------------------------------------------------- */

static int suite_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct suite *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->shared = ts_server_start(NULL);
    *state = s;
    return s->shared ? 0 : -1;
}

static int suite_teardown(void **state)
{
    struct suite *s = *state;
    if (s) {
        tc_ws_close(s->ws);
        ts_server_free(s->own);
        ts_server_free(s->shared);
        free(s);
    }
    return 0;
}

/* Frees whatever a test left in the fixture, passed or failed. */
static int test_teardown(void **state)
{
    struct suite *s = *state;
    tc_ws_close(s->ws);
    s->ws = NULL;
    ts_server_free(s->own);
    s->own = NULL;
    return 0;
}

/* GET that must succeed at the transport level. */
static void get(uint16_t port, const char *path, struct tc_response *r)
{
    int rc = tc_https_get(port, path, r);
    if (rc != 0)
        print_error("GET %s: %s\n", path, strerror(-rc));
    assert_int_equal(rc, 0);
}

/* GET /metrics, checked against the format; returns the body (free with free()). */
static char *get_metrics(uint16_t port)
{
    struct tc_response r;
    get(port, "/metrics", &r);
    assert_int_equal(r.status, 200);
    char *text = r.body;
    r.body = NULL;
    tc_response_free(&r);
    return text;
}

static double metric(uint16_t port, const char *prefix)
{
    char *text = get_metrics(port);
    double v = NAN;
    if (prom_find(text, prefix, &v) != 0)
        print_error("no sample starting with %s in:\n%s\n", prefix, text);
    free(text);
    assert_false(isnan(v));
    return v;
}

/* Receives one text message that must arrive; returns it (free with free()). */
static char *ws_expect_text(struct tc_ws *ws)
{
    char *msg = NULL;
    size_t len = 0;
    enum tc_ws_result r = tc_ws_recv(ws, &msg, &len, WS_TIMEOUT_MS);
    if (r != TC_WS_TEXT)
        print_error("expected a text message, got result %d (close code %u, \"%s\")\n", r,
                    tc_ws_close_code(ws), tc_ws_close_reason(ws));
    assert_int_equal(r, TC_WS_TEXT);
    return msg;
}

/* Sends {"type":"ping","id":"<id>"} and expects the pong that echoes it. */
static void ws_ping(struct tc_ws *ws, const char *id)
{
    char req[128], re[64];
    snprintf(req, sizeof(req), "{\"type\":\"ping\",\"id\":\"%s\"}", id);
    snprintf(re, sizeof(re), "\"re\":\"%s\"", id);
    assert_int_equal(tc_ws_send_text(ws, req, strlen(req)), 0);
    char *reply = ws_expect_text(ws);
    if (!strstr(reply, "pong") || !strstr(reply, re))
        print_error("unexpected reply to %s: %s\n", req, reply);
    assert_non_null(strstr(reply, "\"pong\""));
    assert_non_null(strstr(reply, re));
    free(reply);
}

/* Waits for the close frame and returns its code (0 when none came). */
static unsigned ws_expect_close(struct tc_ws *ws)
{
    for (;;) {
        char *msg = NULL;
        size_t len;
        enum tc_ws_result r = tc_ws_recv(ws, &msg, &len, WS_TIMEOUT_MS);
        if (r == TC_WS_TEXT || r == TC_WS_BINARY) {
            print_message("(message before the close: %.200s)\n", msg);
            free(msg);
            continue;
        }
        if (r != TC_WS_CLOSED)
            print_error("expected a close frame, got result %d (code %u)\n", r,
                        tc_ws_close_code(ws));
        return r == TC_WS_CLOSED ? tc_ws_close_code(ws) : 0;
    }
}

/* ------------------------------------------------------------------------- */
/* The format checker itself                                                  */
/* ------------------------------------------------------------------------- */

static void test_prom_validator(void **state)
{
    (void)state;
    char err[256];
    static const char good[] =
        "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n"
        "a_total{x=\"2\"} 4 1700000000000\n"
        "# TYPE g gauge\ng -1.5e-3\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\n"
        "h_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n# TYPE s summary\n"
        "s{quantile=\"0.9\"} NaN\ns_sum +Inf\ns_count 0\n";
    if (prom_validate(good, err, sizeof(err)) != 0)
        print_error("valid input refused: %s\n", err);
    assert_int_equal(prom_validate(good, err, sizeof(err)), 0);

    static const char *const bad[] = {
        "a 1\n",                                           /* no TYPE */
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",           /* TYPE twice */
        "# TYPE a gauge\na 1\n# TYPE a gauge\n",           /* TYPE twice, after samples */
        "# TYPE a gauge\na 1",                             /* no final newline */
        "# TYPE a gauge\n\na 1\n",                         /* empty line */
        "# TYPE 1a gauge\n1a 1\n",                         /* bad metric name */
        "# TYPE a-b gauge\na-b 1\n",                       /* bad metric name */
        "# TYPE a colour\na 1\n",                          /* unknown type */
        "# TYPE a gauge\na one\n",                         /* bad value */
        "# TYPE a gauge\na 1.2.3\n",                       /* bad value */
        "# TYPE a gauge\na inf\n",                         /* bad value */
        "# TYPE a gauge\na\n",                             /* no value */
        "# TYPE a gauge\na  1\n",                          /* two spaces */
        "# TYPE a gauge\na{x=\"1\"\"} 1\n",                /* stray quote */
        "# TYPE a gauge\na{x=\"a\\qb\"} 1\n",              /* bad escape */
        "# TYPE a gauge\na{x=1} 1\n",                      /* unquoted value */
        "# TYPE a gauge\na{1x=\"1\"} 1\n",                 /* bad label name */
        "# TYPE a gauge\na{__x=\"1\"} 1\n",                /* reserved label */
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",          /* label twice */
        "# TYPE a gauge\na{x=\"1\" 1\n",                   /* unterminated labels */
        "# TYPE a gauge\na 1\na 2\n",                      /* series twice */
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n", /* not grouped */
        "# TYPE a gauge\n# HELP a x\n# HELP a y\na 1\n",   /* HELP twice */
        "# TYPE a gauge\n# a comment\na 1\n",              /* other comment */
        "#TYPE a gauge\na 1\n",                            /* no space after # */
        "# TYPE a gauge\na 1 12x\n",                       /* bad timestamp */
        "# TYPE h histogram\nh 1\n",                       /* bare histogram name */
        "# TYPE h histogram\nh_bucket 1\n",                /* bucket without le */
        "# TYPE a gauge\r\na 1\n",                         /* CR */
        "# TYPE c counter\nc_total 1\n",                   /* other family, untyped */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = prom_validate(bad[i], err, sizeof(err));
        if (rc == 0)
            print_error("bad input %zu accepted: %s\n", i, bad[i]);
        assert_int_equal(rc, -1);
        assert_true(strncmp(err, "line ", 5) == 0);
    }
}

/* ------------------------------------------------------------------------- */
/* Endpoints on the shared server                                             */
/* ------------------------------------------------------------------------- */

static void test_healthz(void **state)
{
    struct suite *s = *state;
    struct tc_response r;
    get(ts_server_port(s->shared), "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "ok"));
    tc_response_free(&r);
}

static void test_readyz(void **state)
{
    struct suite *s = *state;
    struct tc_response r;
    get(ts_server_port(s->shared), "/readyz", &r);
    assert_int_equal(r.status, 200);
    const char *ctype = tc_response_header(&r, "content-type");
    assert_non_null(ctype);
    assert_true(strncmp(ctype, "application/json", 16) == 0);
    static const char *const want[] = {"\"ready\":true", "\"audit\":\"up\"", "\"media-0\":\"up\"",
                                       "\"media-1\":\"up\""};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(r.body, want[i]))
            print_error("/readyz lacks %s: %s\n", want[i], r.body);
        assert_non_null(strstr(r.body, want[i]));
    }
    tc_response_free(&r);
}

static void test_metrics_format(void **state)
{
    struct suite *s = *state;
    struct tc_response r;
    get(ts_server_port(s->shared), "/metrics", &r);
    assert_int_equal(r.status, 200);
    const char *ctype = tc_response_header(&r, "content-type");
    assert_non_null(ctype);
    assert_true(strncmp(ctype, "text/plain", 10) == 0);
    char err[512];
    int rc = prom_validate(r.body, err, sizeof(err));
    if (rc != 0)
        print_error("/metrics is not valid exposition format: %s\n%s\n", err, r.body);
    assert_int_equal(rc, 0);
    static const char *const want[] = {"tabib_build_info{", "tabib_uptime_seconds ",
                                       "tabib_websocket_connections "};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        double v;
        if (prom_find(r.body, want[i], &v) != 0)
            print_error("/metrics lacks %s\n", want[i]);
        assert_int_equal(prom_find(r.body, want[i], &v), 0);
    }
    double build = 0;
    prom_find(r.body, "tabib_build_info{", &build);
    assert_true(build == 1.0);
    tc_response_free(&r);
}

static void check_page(uint16_t port, const char *path)
{
    struct tc_response r;
    get(port, path, &r);
    if (r.status != 200)
        print_error("GET %s answered %d: %s\n", path, r.status, r.body);
    assert_int_equal(r.status, 200);
    const char *ctype = tc_response_header(&r, "content-type");
    if (!ctype || strncmp(ctype, "text/html", 9) != 0)
        print_error("GET %s: Content-Type %s\n", path, ctype ? ctype : "(none)");
    assert_non_null(ctype);
    assert_true(strncmp(ctype, "text/html", 9) == 0);
    assert_true(r.body_len > 0);
    tc_response_free(&r);
}

static void test_static_pages(void **state)
{
    struct suite *s = *state;
    check_page(ts_server_port(s->shared), "/");
    check_page(ts_server_port(s->shared), "/doctor");
}

static void test_path_traversal(void **state)
{
    struct suite *s = *state;
    static const char *const paths[] = {
        "/../etc/passwd",        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd", "/%252e%252e/etc/passwd",
        "/.git/config",          "/css/../../server/main.c",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct tc_response r;
        get(ts_server_port(s->shared), paths[i], &r);
        if (r.status != 404)
            print_error("GET %s answered %d, not 404\n", paths[i], r.status);
        assert_int_equal(r.status, 404);
        assert_null(strstr(r.body, "root:"));
        tc_response_free(&r);
    }
}

static void test_media_packets_counted(void **state)
{
    struct suite *s = *state;
    uint16_t port = ts_server_port(s->shared);
    const char *received = "tabib_media_packets_received_total{worker=\"0\",";
    const char *too_short = "tabib_media_packets_dropped_total{worker=\"0\",reason=\"too_short\"}";
    const char *no_leg = "tabib_media_packets_dropped_total{worker=\"0\",reason=\"no_leg\"}";
    double received0 = metric(port, received), short0 = metric(port, too_short),
           no_leg0 = metric(port, no_leg);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(ts_server_media_port(s->shared)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const unsigned char tiny[3] = {1, 2, 3};
    unsigned char rtp[20] = {0x80, 0x60, 0x00, 0x01};
    assert_int_equal(sendto(fd, tiny, sizeof(tiny), 0, (struct sockaddr *)&to, sizeof(to)),
                     (ssize_t)sizeof(tiny));
    assert_int_equal(sendto(fd, rtp, sizeof(rtp), 0, (struct sockaddr *)&to, sizeof(to)),
                     (ssize_t)sizeof(rtp));
    close(fd);

    double now = received0;
    for (int64_t deadline = base_now_ms() + POLL_BUDGET_MS; base_now_ms() < deadline;) {
        now = metric(port, received);
        if (now >= received0 + 2)
            break;
        sleep_ms(20);
    }
    if (now < received0 + 2)
        print_error("packets received went from %.0f to %.0f only\n", received0, now);
    assert_true(now >= received0 + 2);
    assert_true(metric(port, too_short) >= short0 + 1);
    assert_true(metric(port, no_leg) >= no_leg0 + 1);
}

/* ------------------------------------------------------------------------- */
/* WebSocket                                                                  */
/* ------------------------------------------------------------------------- */

/*
 * Upgrades without our subprotocol or to another path are refused (lws drops
 * the connection without an HTTP status). `counted` says whether http.c sees
 * the refusal: lws 4.1 turns down an offered but unknown subprotocol in its
 * own handshake code, before any callback, so tabib_websocket_refused_total
 * misses that case.
 */
static void test_ws_refused(void **state)
{
    struct suite *s = *state;
    uint16_t port = ts_server_port(s->shared);
    static const struct {
        const char *path;
        const char *proto;
        bool counted;
    } cases[] = {
        {"/ws", NULL, true},
        {"/ws", "tabib.v0", false},
        {"/other", "tabib.v1", true},
        {"/", "tabib.v1", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *proto = cases[i].proto ? cases[i].proto : "no subprotocol";
        double before = metric(port, "tabib_websocket_refused_total ");
        int status = 0;
        struct tc_ws *ws = tc_ws_connect(port, cases[i].path, cases[i].proto, &status);
        if (ws)
            print_error("WebSocket to %s with %s was accepted\n", cases[i].path, proto);
        tc_ws_close(ws);
        assert_null(ws);
        assert_true(status != 101);
        double after = metric(port, "tabib_websocket_refused_total ");
        print_message("refused %s (%s): HTTP status %d, refused_total %.0f -> %.0f\n",
                      cases[i].path, proto, status, before, after);
        if (cases[i].counted)
            assert_true(after == before + 1);
    }
    /* The server is still fine afterwards. */
    struct tc_response r;
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
}

static void test_ws_oversized(void **state)
{
    struct suite *s = *state;
    uint16_t port = ts_server_port(s->shared);
    size_t big_len = WS_MESSAGE_MAX + 1;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 'a', big_len);

    /* One frame over 64 KiB. */
    s->ws = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
    assert_non_null(s->ws);
    int rc = tc_ws_send_text(s->ws, big, big_len);
    unsigned code = ws_expect_close(s->ws);
    print_message("one %zu-byte frame: send %d, close code %u \"%s\"\n", big_len, rc, code,
                  tc_ws_close_reason(s->ws));
    tc_ws_close(s->ws);
    s->ws = NULL;
    assert_int_equal(code, 1009);

    /* The same size in two fragments. */
    s->ws = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
    assert_non_null(s->ws);
    size_t half = big_len / 2;
    tc_ws_send_frame(s->ws, TC_WS_OP_TEXT, false, big, half);
    tc_ws_send_frame(s->ws, TC_WS_OP_CONTINUATION, true, big + half, big_len - half);
    code = ws_expect_close(s->ws);
    print_message("two fragments of %zu bytes in all: close code %u\n", big_len, code);
    tc_ws_close(s->ws);
    s->ws = NULL;
    free(big);
    assert_int_equal(code, 1009);

    /* Exactly 64 KiB is allowed (and answered, here with bad_json). */
    s->ws = tc_ws_connect(port, "/ws", "tabib.v1", NULL);
    assert_non_null(s->ws);
    char *max = malloc(WS_MESSAGE_MAX);
    assert_non_null(max);
    memset(max, ' ', WS_MESSAGE_MAX);
    assert_int_equal(tc_ws_send_text(s->ws, max, WS_MESSAGE_MAX), 0);
    free(max);
    char *reply = ws_expect_text(s->ws);
    assert_non_null(strstr(reply, "\"type\":\"error\""));
    free(reply);
    ws_ping(s->ws, "after-64k");
}

/* The JSON API's edges: no body, a chunked body, an oversized body, wrong path and method. */
static void test_api_bodies(void **state)
{
    struct suite *s = *state;
    uint16_t port = ts_server_port(s->shared);
    struct {
        const char *method, *path, *headers, *body;
        size_t body_len;
        int status;
        const char *needle;
    } cases[] = {
        {"POST", "/api/login", NULL, NULL, 0, 400, "bad_request"},
        {"POST", "/api/login", "Content-Type: application/json\r\n",
         "{\"username\":\"admin\",\"password\":\"not the password\"}", 0, 401, "unauthorized"},
        /* Refused before any chunk is read, so the test sends none. */
        {"POST", "/api/login", "Transfer-Encoding: chunked\r\n", NULL, 0, 411, "Content-Length"},
        {"POST", "/api/appointments", NULL, "{\"clinic\":\"general\"}", 0, 401, "unauthorized"},
        {"POST", "/api/nothing", NULL, "{}", 0, 404, "not found"},
        {"PUT", "/api/login", NULL, NULL, 0, 405, "only GET"},
        {"DELETE", "/", NULL, NULL, 0, 405, "only GET"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tc_response r;
        const char *body = cases[i].body;
        size_t len = body ? strlen(body) : 0;
        int rc =
            tc_https_request(port, cases[i].method, cases[i].path, cases[i].headers, body, len, &r);
        if (rc != 0)
            fail_msg("case %zu: %s %s: client error %d", i, cases[i].method, cases[i].path, rc);
        if (r.status != cases[i].status || !r.body || !strstr(r.body, cases[i].needle))
            fail_msg("case %zu: %s %s got %d %s", i, cases[i].method, cases[i].path, r.status,
                     r.body ? r.body : "(no body)");
        tc_response_free(&r);
    }
    size_t big_len = 20000;
    char *big = malloc(big_len);
    memset(big, 'a', big_len);
    struct tc_response r;
    assert_int_equal(tc_https_request(port, "POST", "/api/login", NULL, big, big_len, &r), 0);
    assert_int_equal(r.status, 413);
    tc_response_free(&r);
    free(big);
    /* The server still answers. */
    get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
}

static void test_ws_ping_and_errors(void **state)
{
    struct suite *s = *state;
    s->own = ts_server_start(NULL);
    assert_non_null(s->own);
    uint16_t port = ts_server_port(s->own);
    int status = 0;
    s->ws = tc_ws_connect(port, "/ws", "tabib.v1", &status);
    assert_non_null(s->ws);
    assert_int_equal(status, 101);

    ws_ping(s->ws, "1");

    const char junk[] = "not json";
    assert_int_equal(tc_ws_send_text(s->ws, junk, sizeof(junk) - 1), 0);
    char *reply = ws_expect_text(s->ws);
    if (!strstr(reply, "\"code\":\"bad_json\""))
        print_error("reply to not json: %s\n", reply);
    assert_non_null(strstr(reply, "\"type\":\"error\""));
    assert_non_null(strstr(reply, "\"code\":\"bad_json\""));
    free(reply);

    ws_ping(s->ws, "2"); /* the connection survived the error */

    /* A control frame between messages (the server answers our ping) changes nothing. */
    assert_int_equal(tc_ws_send_frame(s->ws, TC_WS_OP_PING, true, "hi", 2), 0);
    ws_ping(s->ws, "3");

    assert_true(metric(port, "tabib_websocket_connections ") == 1.0);
    assert_true(metric(port, "tabib_websocket_error_replies_total ") >= 1.0);

    tc_ws_close(s->ws);
    s->ws = NULL;
    double open = 1;
    for (int64_t deadline = base_now_ms() + POLL_BUDGET_MS; base_now_ms() < deadline;) {
        open = metric(port, "tabib_websocket_connections ");
        if (open == 0)
            break;
        sleep_ms(20);
    }
    assert_true(open == 0);
}

/* ------------------------------------------------------------------------- */
/* Bad configuration                                                          */
/* ------------------------------------------------------------------------- */

/* Runs tabib expecting exit status 2 and every one of `needles` in its stderr. */
static void expect_config_error(const char *const *args, const char *const *needles)
{
    char *err = NULL;
    int status = ts_run_to_exit(args, &err, 10000);
    print_message("status %d, stderr: %s", status, err ? err : "(none)\n");
    assert_non_null(err);
    assert_int_equal(status, 2);
    for (size_t i = 0; needles[i]; i++) {
        if (!strstr(err, needles[i]))
            print_error("stderr does not name %s\n", needles[i]);
        assert_non_null(strstr(err, needles[i]));
    }
    free(err);
}

static void test_bad_listen(void **state)
{
    (void)state;
    const char *const args[] = {"--listen", ":70000", NULL};
    const char *const needles[] = {"listen", "70000", NULL};
    expect_config_error(args, needles);
}

static void test_bad_config_key(void **state)
{
    (void)state;
    char path[] = "/tmp/tabib-test-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# a config with a key Tabib does not have\ncolour = blue\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    char listen[32], media[16];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", ts_free_tcp_port());
    snprintf(media, sizeof(media), "%u", ts_free_udp_ports(1));
    const char *const args[] = {"--config", path, "--listen", listen, "--media-port", media, NULL};
    const char *const needles[] = {"colour", NULL};
    expect_config_error(args, needles);
    unlink(path);
}

static void test_bad_log_format(void **state)
{
    (void)state;
    char listen[32], media[16];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", ts_free_tcp_port());
    snprintf(media, sizeof(media), "%u", ts_free_udp_ports(1));
    const char *const args[] = {"--log-format", "xml", "--listen", listen,
                                "--media-port", media, NULL};
    const char *const needles[] = {"log_format", "xml", NULL};
    expect_config_error(args, needles);
}

/* ------------------------------------------------------------------------- */
/* Signals                                                                    */
/* ------------------------------------------------------------------------- */

static void test_sigterm_closes_websockets(void **state)
{
    struct suite *s = *state;
    s->own = ts_server_start(NULL);
    assert_non_null(s->own);
    s->ws = tc_ws_connect(ts_server_port(s->own), "/ws", "tabib.v1", NULL);
    assert_non_null(s->ws);
    ws_ping(s->ws, "before-sigterm");

    assert_int_equal(ts_server_kill(s->own, SIGTERM), 0);
    unsigned code = ws_expect_close(s->ws);
    print_message("close frame after SIGTERM: %u \"%s\"\n", code, tc_ws_close_reason(s->ws));
    assert_int_equal(code, 1001);

    int64_t elapsed = -1;
    int status = ts_server_stop(s->own, &elapsed);
    print_message("SIGTERM to exit: %lld ms, status %d\n", (long long)elapsed, status);
    if (status != 0) {
        char *err = ts_server_stderr(s->own);
        print_error("tabib stderr:\n%s\n", err ? err : "(unreadable)");
        free(err);
    }
    assert_int_equal(status, 0);
    assert_true(elapsed >= 0 && elapsed < STOP_BUDGET_MS);
}

static void test_sighup_reopens_log(void **state)
{
    struct suite *s = *state;
    const char *const args[] = {"--log-file", "{tmp}/tabib.log", NULL};
    s->own = ts_server_start(args);
    assert_non_null(s->own);
    char log_path[PATH_MAX], rotated[PATH_MAX + 8];
    snprintf(log_path, sizeof(log_path), "%s/tabib.log", ts_server_dir(s->own));
    snprintf(rotated, sizeof(rotated), "%s.1", log_path);
    char *before = ts_read_file(log_path, NULL);
    assert_non_null(before);
    assert_non_null(strstr(before, "listening"));
    free(before);

    assert_int_equal(rename(log_path, rotated), 0);
    assert_int_equal(ts_server_kill(s->own, SIGHUP), 0);
    char *after = NULL;
    for (int64_t deadline = base_now_ms() + POLL_BUDGET_MS; base_now_ms() < deadline;) {
        free(after);
        after = ts_read_file(log_path, NULL);
        if (after && strstr(after, "reopened"))
            break;
        sleep_ms(20);
    }
    if (!after || !strstr(after, "reopened"))
        print_error("no \"reopened\" line in a new %s: %s\n", log_path,
                    after ? after : "(missing)");
    assert_non_null(after);
    assert_non_null(strstr(after, "reopened"));
    free(after);

    /* Later lines go to the new file too, and the server still stops cleanly. */
    struct tc_response r;
    get(ts_server_port(s->own), "/healthz", &r);
    tc_response_free(&r);
    int64_t elapsed;
    assert_int_equal(ts_server_stop(s->own, &elapsed), 0);
    char *final = ts_read_file(log_path, NULL);
    assert_non_null(final);
    assert_non_null(strstr(final, "stopped"));
    free(final);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_prom_validator, test_teardown),
        cmocka_unit_test_teardown(test_healthz, test_teardown),
        cmocka_unit_test_teardown(test_readyz, test_teardown),
        cmocka_unit_test_teardown(test_metrics_format, test_teardown),
        cmocka_unit_test_teardown(test_static_pages, test_teardown),
        cmocka_unit_test_teardown(test_path_traversal, test_teardown),
        cmocka_unit_test_teardown(test_media_packets_counted, test_teardown),
        cmocka_unit_test_teardown(test_ws_refused, test_teardown),
        cmocka_unit_test_teardown(test_ws_oversized, test_teardown),
        cmocka_unit_test_teardown(test_ws_ping_and_errors, test_teardown),
        cmocka_unit_test_teardown(test_api_bodies, test_teardown),
        cmocka_unit_test_teardown(test_bad_listen, test_teardown),
        cmocka_unit_test_teardown(test_bad_config_key, test_teardown),
        cmocka_unit_test_teardown(test_bad_log_format, test_teardown),
        cmocka_unit_test_teardown(test_sigterm_closes_websockets, test_teardown),
        cmocka_unit_test_teardown(test_sighup_reopens_log, test_teardown),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
