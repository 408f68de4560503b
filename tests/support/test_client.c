/*
 * test_client.c - the HTTPS and WebSocket client of the tests (test_client.h).
 *
 * One `struct conn` is a TLS connection to 127.0.0.1 on a non-blocking
 * socket (or a plain TCP one, for tc_ws_connect_plain), plus a buffer of
 * bytes received and not yet consumed. Everything above it (the HTTP
 * response parser, the WebSocket framing) consumes that buffer and asks for
 * more with a deadline, so no call can hang a test.
 *
 * Runs on whichever thread calls it; nothing is shared between connections.
 */
#include "test_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "base.h"

#define RX_CHUNK       16384
#define HEADER_MAX     (64 * 1024)
#define BODY_MAX       (64 * 1024 * 1024)
#define WS_MESSAGE_MAX (16 * 1024 * 1024)
#define WS_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CLOSE_WAIT  1000

/* A TLS (or plain TCP) connection and the bytes received on it that nobody consumed yet. */
struct conn {
    int fd;
    SSL_CTX *ctx; /* both NULL on a plain connection */
    SSL *ssl;
    unsigned char *rx; /* rx[rx_off .. rx_len) is unconsumed */
    size_t rx_off;
    size_t rx_len;
    size_t rx_cap;
    bool eof; /* the peer ended the stream; what is buffered is all there is */
};

struct tc_ws {
    struct conn c;
    bool close_sent;
    bool close_received;
    bool broken; /* an I/O error or EOF: nothing more can be sent */
    unsigned close_code;
    char close_reason[124]; /* a close frame's reason is at most 123 bytes */
    unsigned char *msg;     /* a fragmented message being reassembled */
    size_t msg_len;
    unsigned msg_opcode; /* 0 when no fragmented message is in progress */
};

/* ------------------------------------------------------------------------- */
/* Connection                                                                 */
/* ------------------------------------------------------------------------- */

/* A test must see EPIPE from a reset connection, not die of SIGPIPE. */
static void ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - base_now_ms();
    if (left <= 0)
        return 0;
    return left > 60000 ? 60000 : (int)left;
}

/* Waits until the socket is ready for `events`. Returns 0, -ETIMEDOUT or -errno. */
static int conn_wait(const struct conn *c, short events, int64_t deadline)
{
    for (;;) {
        int left = remaining_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int n = poll(&pfd, 1, left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/*
 * Turns the result of an SSL call that did not succeed into a wait (returns 1
 * when the caller should retry) or an error: 0 for the end of the stream,
 * negative errno otherwise.
 */
static int conn_ssl_retry(struct conn *c, int ret, int64_t deadline)
{
    int saved_errno = errno;
    int err = SSL_get_error(c->ssl, ret);
    int rc;
    switch (err) {
    case SSL_ERROR_WANT_READ:
        rc = conn_wait(c, POLLIN, deadline);
        return rc ? rc : 1;
    case SSL_ERROR_WANT_WRITE:
        rc = conn_wait(c, POLLOUT, deadline);
        return rc ? rc : 1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (ret == 0 || saved_errno == 0)
            return 0;
        if (saved_errno == EAGAIN) {
            rc = conn_wait(c, POLLIN, deadline);
            return rc ? rc : 1;
        }
        return -saved_errno;
    default:
        ERR_clear_error();
        return -EIO;
    }
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        if (!c->eof) {
            ERR_clear_error();
            SSL_shutdown(c->ssl); /* best effort: one non-blocking try at close_notify */
        }
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c->rx);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    ERR_clear_error();
}

/*
 * Connects to 127.0.0.1:port and, with `tls`, completes the TLS handshake.
 * Returns 0 or negative errno.
 */
static int conn_open(struct conn *c, uint16_t port, bool tls, int64_t deadline)
{
    memset(c, 0, sizeof(*c));
    ignore_sigpipe();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        rc = conn_wait(c, POLLOUT, deadline);
        if (rc)
            goto fail;
        int soerr = 0;
        socklen_t slen = sizeof(soerr);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
            rc = soerr ? -soerr : -errno;
            goto fail;
        }
    }
    if (!tls)
        return 0;

    rc = -EIO;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        goto fail;
    /* The server's certificate is self-signed: the tests check the server, not its identity. */
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    /* A server that closes without close_notify ends the stream; it is not an error here. */
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
        goto fail;
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ret = SSL_connect(c->ssl);
        if (ret == 1)
            break;
        rc = conn_ssl_retry(c, ret, deadline);
        if (rc == 0)
            rc = -ECONNRESET;
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    conn_close(c);
    return rc;
}

/* Writes all of `data` on a plain connection. Returns 0 or negative errno. */
static int conn_write_plain(struct conn *c, const unsigned char *p, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = conn_wait(c, POLLOUT, deadline);
        if (rc)
            return rc;
    }
    return 0;
}

/* Writes all of `data`. Returns 0 or negative errno. */
static int conn_write(struct conn *c, const void *data, size_t len, int64_t deadline)
{
    const unsigned char *p = data;
    if (!c->ssl)
        return conn_write_plain(c, p, len, deadline);
    while (len) {
        ERR_clear_error();
        errno = 0;
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        int ret = SSL_write(c->ssl, p, chunk);
        if (ret > 0) {
            p += ret;
            len -= (size_t)ret;
            continue;
        }
        int rc = conn_ssl_retry(c, ret, deadline);
        if (rc == 0)
            return -EPIPE;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Unconsumed bytes. */
static size_t conn_avail(const struct conn *c)
{
    return c->rx_len - c->rx_off;
}

static unsigned char *conn_data(const struct conn *c)
{
    return c->rx + c->rx_off;
}

static void conn_consume(struct conn *c, size_t n)
{
    c->rx_off += n;
    if (c->rx_off == c->rx_len)
        c->rx_off = c->rx_len = 0;
}

/*
 * Reads whatever arrives next into the buffer. Returns the number of bytes
 * added, 0 at the end of the stream, or negative errno (-ETIMEDOUT).
 */
static int conn_fill(struct conn *c, int64_t deadline)
{
    if (c->eof)
        return 0;
    if (c->rx_off && c->rx_off == c->rx_len)
        c->rx_off = c->rx_len = 0;
    if (c->rx_cap - c->rx_len < RX_CHUNK) {
        if (c->rx_off) {
            memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
            c->rx_len -= c->rx_off;
            c->rx_off = 0;
        }
        if (c->rx_cap - c->rx_len < RX_CHUNK) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 2 * RX_CHUNK;
            unsigned char *grown = realloc(c->rx, cap);
            if (!grown)
                return -ENOMEM;
            c->rx = grown;
            c->rx_cap = cap;
        }
    }
    while (!c->ssl) {
        ssize_t n = recv(c->fd, c->rx + c->rx_len, RX_CHUNK, 0);
        if (n > 0) {
            c->rx_len += (size_t)n;
            return (int)n;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = conn_wait(c, POLLIN, deadline);
        if (rc)
            return rc;
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ret = SSL_read(c->ssl, c->rx + c->rx_len, RX_CHUNK);
        if (ret > 0) {
            c->rx_len += (size_t)ret;
            return ret;
        }
        int rc = conn_ssl_retry(c, ret, deadline);
        if (rc == 0 || rc == -ECONNRESET) {
            c->eof = true;
            return 0;
        }
        if (rc < 0)
            return rc;
    }
}

/* Finds `needle` in the unconsumed bytes; returns its offset from conn_data() or -1. */
static long conn_find(const struct conn *c, const char *needle)
{
    size_t n = strlen(needle), avail = conn_avail(c);
    const unsigned char *d = conn_data(c);
    for (size_t i = 0; i + n <= avail; i++)
        if (memcmp(d + i, needle, n) == 0)
            return (long)i;
    return -1;
}

/*
 * Reads up to and including the next "\r\n" (or "\r\n\r\n" for a header
 * block), at most `max` bytes. Returns the length including the terminator,
 * or negative errno (-EPROTO when the stream ends or the limit is hit first).
 */
static long conn_read_until(struct conn *c, const char *terminator, size_t max, int64_t deadline)
{
    for (;;) {
        long at = conn_find(c, terminator);
        if (at >= 0)
            return at + (long)strlen(terminator);
        if (conn_avail(c) > max)
            return -EPROTO;
        int rc = conn_fill(c, deadline);
        if (rc == 0)
            return -EPROTO;
        if (rc < 0)
            return rc;
    }
}

/* Makes sure `n` unconsumed bytes are buffered. Returns 0 or negative errno (-EPROTO at EOF). */
static int conn_need(struct conn *c, size_t n, int64_t deadline)
{
    while (conn_avail(c) < n) {
        int rc = conn_fill(c, deadline);
        if (rc == 0)
            return -EPROTO;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* HTTP responses                                                             */
/* ------------------------------------------------------------------------- */

/* Looks a header up in a "Name: value\r\n..." block; returns a new copy of the value or NULL. */
static char *header_dup(const char *headers, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *line = headers; *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            eol = line + strlen(line);
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            char *out = malloc((size_t)(e - v) + 1);
            if (out) {
                memcpy(out, v, (size_t)(e - v));
                out[e - v] = '\0';
            }
            return out;
        }
        line = *eol ? eol + 2 : eol;
    }
    return NULL;
}

/* True when the comma-separated header `value` lists `token` (case-insensitive). */
static bool header_has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = end;
    }
    return false;
}

/*
 * Reads the status line and headers. Fills status and a new header block
 * (lines after the status line, each ending in "\r\n"). Returns 0 or negative errno.
 */
static int read_head(struct conn *c, int *status, char **headers, int64_t deadline)
{
    long n = conn_read_until(c, "\r\n\r\n", HEADER_MAX, deadline);
    if (n < 0)
        return (int)n;
    const char *d = (const char *)conn_data(c);
    if (n < 16 || strncmp(d, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)d[7]) || d[8] != ' ' ||
        !isdigit((unsigned char)d[9]) || !isdigit((unsigned char)d[10]) ||
        !isdigit((unsigned char)d[11]) || (d[12] != ' ' && d[12] != '\r'))
        return -EPROTO;
    *status = (d[9] - '0') * 100 + (d[10] - '0') * 10 + (d[11] - '0');
    const char *first = memchr(d, '\n', (size_t)n);
    size_t skip = (size_t)(first + 1 - d);
    size_t hlen = (size_t)n - skip - 2; /* keep each line's CRLF, drop the blank line */
    *headers = malloc(hlen + 1);
    if (!*headers)
        return -ENOMEM;
    memcpy(*headers, d + skip, hlen);
    (*headers)[hlen] = '\0';
    if (memchr(*headers, '\0', hlen))
        return -EPROTO;
    conn_consume(c, (size_t)n);
    return 0;
}

/* Appends n buffered bytes to a growing body. Returns 0 or -ENOMEM / -EPROTO. */
static int body_take(struct conn *c, char **body, size_t *len, size_t n)
{
    if (*len + n > BODY_MAX)
        return -EPROTO;
    char *grown = realloc(*body, *len + n + 1);
    if (!grown)
        return -ENOMEM;
    *body = grown;
    memcpy(*body + *len, conn_data(c), n);
    *len += n;
    (*body)[*len] = '\0';
    conn_consume(c, n);
    return 0;
}

/* Decodes a chunked body (RFC 9112 section 7.1), trailers read and dropped. */
static int read_chunked(struct conn *c, char **body, size_t *len, int64_t deadline)
{
    for (;;) {
        long n = conn_read_until(c, "\r\n", 1024, deadline);
        if (n < 0)
            return (int)n;
        char line[1025];
        memcpy(line, conn_data(c), (size_t)n);
        line[n] = '\0';
        conn_consume(c, (size_t)n);
        char *end;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line || errno || (*end != '\r' && *end != ';') || size > BODY_MAX)
            return -EPROTO;
        if (size == 0)
            break;
        int rc = conn_need(c, (size_t)size + 2, deadline);
        if (rc)
            return rc;
        if (memcmp(conn_data(c) + size, "\r\n", 2) != 0)
            return -EPROTO;
        rc = body_take(c, body, len, (size_t)size);
        if (rc)
            return rc;
        conn_consume(c, 2);
    }
    for (;;) { /* trailer fields, up to the blank line */
        long n = conn_read_until(c, "\r\n", HEADER_MAX, deadline);
        if (n < 0)
            return (int)n;
        conn_consume(c, (size_t)n);
        if (n == 2)
            return 0;
    }
}

static int read_body(struct conn *c, const char *method, const struct tc_response *r, char **body,
                     size_t *len, int64_t deadline)
{
    int rc = 0;
    if (strcmp(method, "HEAD") == 0 || r->status / 100 == 1 || r->status == 204 || r->status == 304)
        return 0;
    char *te = header_dup(r->headers, "transfer-encoding");
    char *cl = header_dup(r->headers, "content-length");
    if (te && header_has_token(te, "chunked")) {
        rc = read_chunked(c, body, len, deadline);
    } else if (cl) {
        char *end;
        errno = 0;
        unsigned long long want = strtoull(cl, &end, 10);
        if (!isdigit((unsigned char)cl[0]) || *end || errno || want > BODY_MAX) {
            rc = -EPROTO;
        } else {
            rc = conn_need(c, (size_t)want, deadline);
            if (rc == 0)
                rc = body_take(c, body, len, (size_t)want);
        }
    } else {
        /* Delimited by the end of the connection. */
        for (;;) {
            rc = body_take(c, body, len, conn_avail(c));
            if (rc)
                break;
            rc = conn_fill(c, deadline);
            if (rc <= 0)
                break;
        }
    }
    free(te);
    free(cl);
    return rc;
}

int tc_https_request(uint16_t port, const char *method, const char *raw_path,
                     const char *extra_headers, const void *body, size_t body_len,
                     struct tc_response *out)
{
    memset(out, 0, sizeof(*out));
    int64_t deadline = base_now_ms() + TC_IO_TIMEOUT_MS;
    struct conn c;
    int rc = conn_open(&c, port, true, deadline);
    if (rc)
        return rc;

    char content_length[48] = "";
    if (body)
        snprintf(content_length, sizeof(content_length), "Content-Length: %zu\r\n", body_len);
    const char *extra = extra_headers ? extra_headers : "";
    size_t need = strlen(method) + strlen(raw_path) + strlen(extra) + strlen(content_length) + 80;
    char *req = malloc(need);
    if (!req) {
        rc = -ENOMEM;
        goto out;
    }
    int n =
        snprintf(req, need, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s\r\n",
                 method, raw_path, extra, content_length);
    rc = conn_write(&c, req, (size_t)n, deadline);
    free(req);
    if (rc == 0 && body && body_len)
        rc = conn_write(&c, body, body_len, deadline);
    if (rc)
        goto out;

    rc = read_head(&c, &out->status, &out->headers, deadline);
    if (rc)
        goto out;
    rc = read_body(&c, method, out, &out->body, &out->body_len, deadline);
    if (rc)
        goto out;
    if (!out->body) {
        out->body = calloc(1, 1);
        if (!out->body) {
            rc = -ENOMEM;
            goto out;
        }
    }
    out->lookup_ = strdup(out->headers);
    if (!out->lookup_) {
        rc = -ENOMEM;
        goto out;
    }
    for (char *p = out->lookup_; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = '\0';
out:
    conn_close(&c);
    if (rc)
        tc_response_free(out);
    return rc;
}

int tc_https_get(uint16_t port, const char *raw_path, struct tc_response *out)
{
    return tc_https_request(port, "GET", raw_path, NULL, NULL, 0, out);
}

const char *tc_response_header(const struct tc_response *resp, const char *name)
{
    if (!resp->lookup_ || !resp->headers)
        return NULL;
    size_t nlen = strlen(name), total = strlen(resp->headers);
    /* lookup_ has the same length as headers, with CR and LF turned into NULs. */
    for (size_t i = 0; i < total;) {
        const char *line = resp->lookup_ + i;
        size_t llen = strlen(line);
        if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            char *v = resp->lookup_ + i + nlen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            char *e = v + strlen(v);
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                *--e = '\0';
            return v;
        }
        i += llen + 1;
    }
    return NULL;
}

void tc_response_free(struct tc_response *resp)
{
    if (!resp)
        return;
    free(resp->headers);
    free(resp->body);
    free(resp->lookup_);
    memset(resp, 0, sizeof(*resp));
}

/* ------------------------------------------------------------------------- */
/* WebSocket                                                                  */
/* ------------------------------------------------------------------------- */

/* Base64 of `len` bytes into `out` (room for 4 * ceil(len / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* The Sec-WebSocket-Accept value for `key` (RFC 6455 section 4.2.2). Returns 0 or -1. */
static int ws_accept_for(const char *key, char out[29])
{
    char input[64];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int n = snprintf(input, sizeof(input), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(input))
        return -1;
    if (!EVP_Digest(input, (size_t)n, digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
        return -1;
    base64(digest, dlen, out);
    return 0;
}

/* Checks a 101 answer's headers; prints why and returns -1 when they are wrong. */
static int ws_check_upgrade(const char *headers, const char *key, const char *subprotocol)
{
    char expect[29];
    char *upgrade = header_dup(headers, "upgrade");
    char *connection = header_dup(headers, "connection");
    char *accept = header_dup(headers, "sec-websocket-accept");
    char *proto = header_dup(headers, "sec-websocket-protocol");
    const char *why = NULL;
    if (ws_accept_for(key, expect) != 0)
        why = "cannot compute Sec-WebSocket-Accept";
    else if (!upgrade || strcasecmp(upgrade, "websocket") != 0)
        why = "Upgrade is not websocket";
    else if (!connection || !header_has_token(connection, "upgrade"))
        why = "Connection does not list upgrade";
    else if (!accept || strcmp(accept, expect) != 0)
        why = "Sec-WebSocket-Accept does not match the key";
    else if (subprotocol && (!proto || strcmp(proto, subprotocol) != 0))
        why = "the server did not choose the offered subprotocol";
    else if (!subprotocol && proto)
        why = "the server chose a subprotocol that was not offered";
    if (why)
        fprintf(stderr, "test_client: WebSocket handshake refused by the client: %s\n", why);
    free(upgrade);
    free(connection);
    free(accept);
    free(proto);
    return why ? -1 : 0;
}

/* tc_ws_connect() and tc_ws_connect_plain(): the same handshake over TLS or plain TCP. */
static struct tc_ws *ws_connect(uint16_t port, bool tls, const char *path, const char *subprotocol,
                                int *http_status_out)
{
    int status_dummy;
    int *status = http_status_out ? http_status_out : &status_dummy;
    *status = -1;
    int64_t deadline = base_now_ms() + TC_IO_TIMEOUT_MS;
    struct tc_ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->c.fd = -1;
    char *headers = NULL;
    if (conn_open(&ws->c, port, tls, deadline) != 0)
        goto fail;

    unsigned char nonce[16];
    char key[25];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        goto fail;
    base64(nonce, sizeof(nonce), key);
    char proto_line[256] = "";
    if (subprotocol)
        snprintf(proto_line, sizeof(proto_line), "Sec-WebSocket-Protocol: %s\r\n", subprotocol);
    size_t need = strlen(path) + strlen(proto_line) + 256;
    char *req = malloc(need);
    if (!req)
        goto fail;
    int n = snprintf(req, need,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%u\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s\r\n",
                     path, port, key, proto_line);
    int rc = conn_write(&ws->c, req, (size_t)n, deadline);
    free(req);
    if (rc)
        goto fail;
    int http_status;
    if (read_head(&ws->c, &http_status, &headers, deadline) != 0)
        goto fail;
    if (http_status != 101) {
        *status = http_status;
        goto fail;
    }
    if (ws_check_upgrade(headers, key, subprotocol) != 0)
        goto fail;
    free(headers);
    *status = 101;
    return ws;
fail:
    free(headers);
    conn_close(&ws->c);
    free(ws);
    return NULL;
}

struct tc_ws *tc_ws_connect(uint16_t port, const char *path, const char *subprotocol,
                            int *http_status_out)
{
    return ws_connect(port, true, path, subprotocol, http_status_out);
}

struct tc_ws *tc_ws_connect_plain(uint16_t port, const char *path, const char *subprotocol,
                                  int *http_status_out)
{
    return ws_connect(port, false, path, subprotocol, http_status_out);
}

int tc_ws_send_raw(struct tc_ws *ws, const void *data, size_t len)
{
    if (ws->broken)
        return -EPIPE;
    int rc = conn_write(&ws->c, data, len, base_now_ms() + TC_IO_TIMEOUT_MS);
    if (rc)
        ws->broken = true;
    return rc;
}

int tc_ws_send_frame(struct tc_ws *ws, unsigned opcode, bool fin, const void *data, size_t len)
{
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        head[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(len >> 8);
        head[h++] = (unsigned char)len;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    unsigned char *mask = head + h;
    if (RAND_bytes(mask, 4) != 1)
        return -EIO;
    h += 4;
    unsigned char *frame = malloc(h + len);
    if (!frame)
        return -ENOMEM;
    memcpy(frame, head, h);
    const unsigned char *in = data;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = in[i] ^ mask[i & 3];
    int rc = tc_ws_send_raw(ws, frame, h + len);
    free(frame);
    return rc;
}

int tc_ws_send_text(struct tc_ws *ws, const char *text, size_t len)
{
    return tc_ws_send_frame(ws, TC_WS_OP_TEXT, true, text, len);
}

int tc_ws_send_close(struct tc_ws *ws, unsigned code, const char *reason)
{
    unsigned char payload[125];
    size_t n = 0;
    if (code) {
        payload[n++] = (unsigned char)(code >> 8);
        payload[n++] = (unsigned char)code;
        size_t rlen = reason ? strlen(reason) : 0;
        if (rlen > sizeof(payload) - n)
            rlen = sizeof(payload) - n;
        if (rlen)
            memcpy(payload + n, reason, rlen);
        n += rlen;
    }
    ws->close_sent = true;
    return tc_ws_send_frame(ws, TC_WS_OP_CLOSE, true, payload, n);
}

/* Records a close frame's payload and answers it. */
static void ws_on_close(struct tc_ws *ws, const unsigned char *p, size_t len)
{
    ws->close_received = true;
    ws->close_code = len >= 2 ? ((unsigned)p[0] << 8 | p[1]) : 1005;
    size_t rlen = len > 2 ? len - 2 : 0;
    if (rlen >= sizeof(ws->close_reason))
        rlen = sizeof(ws->close_reason) - 1;
    memcpy(ws->close_reason, p + 2 * (len >= 2), rlen);
    ws->close_reason[rlen] = '\0';
    if (!ws->close_sent && !ws->broken)
        tc_ws_send_close(ws, ws->close_code == 1005 ? 0 : ws->close_code, NULL);
}

/* Moves a finished message to the caller. */
static enum tc_ws_result ws_deliver(unsigned opcode, const unsigned char *p, size_t len,
                                    char **data, size_t *out_len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return TC_WS_ERROR;
    if (len)
        memcpy(copy, p, len);
    copy[len] = '\0';
    *data = copy;
    *out_len = len;
    return opcode == TC_WS_OP_TEXT ? TC_WS_TEXT : TC_WS_BINARY;
}

static enum tc_ws_result ws_fail(struct tc_ws *ws, const char *why)
{
    fprintf(stderr, "test_client: WebSocket protocol error from the server: %s\n", why);
    ws->broken = true;
    return TC_WS_ERROR;
}

/*
 * Handles one complete frame at the front of the buffer (`hlen` header bytes,
 * `plen` payload bytes). Returns a result for the caller, or 100 to go on reading.
 */
static int ws_handle_frame(struct tc_ws *ws, size_t hlen, size_t plen, char **data, size_t *len)
{
    const unsigned char *f = conn_data(&ws->c);
    bool fin = f[0] & 0x80;
    unsigned opcode = f[0] & 0x0f;
    const unsigned char *p = f + hlen;
    int result = 100;
    if (opcode >= 0x8) {
        if (!fin || plen > 125)
            return ws_fail(ws, "fragmented or oversized control frame");
        if (opcode == TC_WS_OP_PING && !ws->close_sent && !ws->broken)
            tc_ws_send_frame(ws, TC_WS_OP_PONG, true, p, plen);
        else if (opcode == TC_WS_OP_CLOSE) {
            ws_on_close(ws, p, plen);
            result = TC_WS_CLOSED;
        } else if (opcode != TC_WS_OP_PONG && opcode != TC_WS_OP_PING)
            return ws_fail(ws, "unknown control opcode");
    } else if (opcode == TC_WS_OP_TEXT || opcode == TC_WS_OP_BINARY) {
        if (ws->msg_opcode)
            return ws_fail(ws, "new message inside a fragmented one");
        if (fin) {
            result = ws_deliver(opcode, p, plen, data, len);
        } else {
            ws->msg = malloc(plen ? plen : 1);
            if (!ws->msg)
                return TC_WS_ERROR;
            memcpy(ws->msg, p, plen);
            ws->msg_len = plen;
            ws->msg_opcode = opcode;
        }
    } else if (opcode == TC_WS_OP_CONTINUATION) {
        if (!ws->msg_opcode)
            return ws_fail(ws, "continuation without a message");
        if (ws->msg_len + plen > WS_MESSAGE_MAX)
            return ws_fail(ws, "message over 16 MiB");
        unsigned char *grown = realloc(ws->msg, ws->msg_len + plen + 1);
        if (!grown)
            return TC_WS_ERROR;
        ws->msg = grown;
        memcpy(ws->msg + ws->msg_len, p, plen);
        ws->msg_len += plen;
        if (fin) {
            result = ws_deliver(ws->msg_opcode, ws->msg, ws->msg_len, data, len);
            free(ws->msg);
            ws->msg = NULL;
            ws->msg_len = 0;
            ws->msg_opcode = 0;
        }
    } else {
        return ws_fail(ws, "reserved data opcode");
    }
    conn_consume(&ws->c, hlen + plen);
    return result;
}

enum tc_ws_result tc_ws_recv(struct tc_ws *ws, char **data, size_t *len, int timeout_ms)
{
    *data = NULL;
    *len = 0;
    if (ws->close_received)
        return TC_WS_CLOSED;
    int64_t deadline = base_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        /* Parse a frame if a whole one is buffered (RFC 6455 section 5.2). */
        size_t avail = conn_avail(&ws->c);
        const unsigned char *f = conn_data(&ws->c);
        if (avail >= 2) {
            if (f[0] & 0x70)
                return ws_fail(ws, "reserved bits set");
            if (f[1] & 0x80)
                return ws_fail(ws, "masked frame from a server");
            size_t hlen = 2;
            uint64_t plen = f[1] & 0x7f;
            if (plen == 126) {
                hlen = 4;
                if (avail >= hlen)
                    plen = (uint64_t)f[2] << 8 | f[3];
            } else if (plen == 127) {
                hlen = 10;
                if (avail >= hlen) {
                    plen = 0;
                    for (int i = 0; i < 8; i++)
                        plen = plen << 8 | f[2 + i];
                }
            }
            if (avail >= hlen && plen > WS_MESSAGE_MAX)
                return ws_fail(ws, "frame over 16 MiB");
            if (avail >= hlen && avail - hlen >= plen) {
                int r = ws_handle_frame(ws, hlen, (size_t)plen, data, len);
                if (r != 100)
                    return (enum tc_ws_result)r;
                continue;
            }
        }
        int rc = conn_fill(&ws->c, deadline);
        if (rc == -ETIMEDOUT)
            return TC_WS_TIMEOUT;
        if (rc == 0) {
            ws->broken = true;
            ws->close_code = 1006;
            return TC_WS_EOF;
        }
        if (rc < 0) {
            ws->broken = true;
            ws->close_code = 1006;
            return TC_WS_ERROR;
        }
    }
}

unsigned tc_ws_close_code(const struct tc_ws *ws)
{
    return ws->close_code;
}

const char *tc_ws_close_reason(const struct tc_ws *ws)
{
    return ws->close_reason;
}

void tc_ws_close(struct tc_ws *ws)
{
    if (!ws)
        return;
    if (!ws->broken && !ws->close_received) {
        if (!ws->close_sent)
            tc_ws_send_close(ws, 1000, NULL);
        int64_t deadline = base_now_ms() + WS_CLOSE_WAIT;
        for (;;) {
            char *data = NULL;
            size_t len;
            int left = remaining_ms(deadline);
            enum tc_ws_result r = left ? tc_ws_recv(ws, &data, &len, left) : TC_WS_TIMEOUT;
            free(data);
            if (r != TC_WS_TEXT && r != TC_WS_BINARY)
                break;
        }
    }
    free(ws->msg);
    conn_close(&ws->c);
    free(ws);
}
