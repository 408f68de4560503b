/*
 * test_client.h - a tiny blocking HTTPS and WebSocket (RFC 6455) client over
 * OpenSSL, for the integration tests and the C test peer; WebSocket also over
 * plain TCP (ws://), for the benchmark's Janus client (bench/janus_client.h).
 *
 * It talks to 127.0.0.1 only and never verifies the server's certificate (the
 * server under test uses a self-signed one). Requests are sent exactly as
 * given, without normalising the path, so that tests can send what a browser
 * never would. Every operation has a deadline (TC_IO_TIMEOUT_MS unless the
 * call takes its own), so a silent server fails a test instead of hanging it.
 *
 * Sockets are non-blocking underneath and waited on with poll(); the calls
 * block the calling thread until done or timed out. A connection belongs to
 * one thread at a time. OpenSSL writes with write(2), so the first connection
 * sets SIGPIPE to SIG_IGN if it is still at its default: a test must see
 * EPIPE, not die.
 *
 * Errors are negative errno values (-ECONNREFUSED, -ETIMEDOUT, -EPROTO for a
 * malformed answer, -EIO for a TLS failure); strerror(-rc) describes them.
 */
#ifndef TABIB_TEST_CLIENT_H
#define TABIB_TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default deadline of one connect, handshake, request or frame write. */
#define TC_IO_TIMEOUT_MS 5000

/* ------------------------------------------------------------------------- */
/* HTTPS                                                                      */
/* ------------------------------------------------------------------------- */

/* A received HTTP response. Free with tc_response_free(). */
struct tc_response {
    int status;      /* 200, 404, ... */
    char *headers;   /* the header lines after the status line, "Name: value\r\n" each */
    char *body;      /* body_len bytes plus a terminating NUL (the body may hold NULs) */
    size_t body_len; /* after removing any chunked transfer coding */
    char *lookup_;   /* private: a copy of headers split into NUL-terminated lines */
};

/*
 * Sends `GET <raw_path> HTTP/1.1` with `Host: 127.0.0.1` and
 * `Connection: close` to 127.0.0.1:`port` over TLS and reads the whole
 * response (Content-Length, chunked or close-delimited) into `out`. `raw_path`
 * is sent byte for byte. Returns 0 (any HTTP status), or a negative errno
 * value with `out` zeroed. Free `out` with tc_response_free() either way.
 */
int tc_https_get(uint16_t port, const char *raw_path, struct tc_response *out);

/*
 * Like tc_https_get() with any method, extra header lines (each ending in
 * "\r\n", may be NULL) and a body (`body_len` bytes, sent with a
 * Content-Length when `body` is not NULL). Everything is borrowed.
 */
int tc_https_request(uint16_t port, const char *method, const char *raw_path,
                     const char *extra_headers, const void *body, size_t body_len,
                     struct tc_response *out);

/*
 * The value of the first header named `name` (case-insensitive), without
 * surrounding spaces, or NULL. The pointer is borrowed from `resp` and valid
 * until tc_response_free().
 */
const char *tc_response_header(const struct tc_response *resp, const char *name);

/* Frees what `resp` holds and zeroes it; the struct itself is the caller's. */
void tc_response_free(struct tc_response *resp);

/* ------------------------------------------------------------------------- */
/* WebSocket                                                                  */
/* ------------------------------------------------------------------------- */

/* Frame opcodes (RFC 6455 section 5.2). */
enum tc_ws_opcode {
    TC_WS_OP_CONTINUATION = 0x0,
    TC_WS_OP_TEXT = 0x1,
    TC_WS_OP_BINARY = 0x2,
    TC_WS_OP_CLOSE = 0x8,
    TC_WS_OP_PING = 0x9,
    TC_WS_OP_PONG = 0xA,
};

/* What tc_ws_recv() got. */
enum tc_ws_result {
    TC_WS_TEXT = 0,     /* a complete text message */
    TC_WS_BINARY = 1,   /* a complete binary message */
    TC_WS_CLOSED = 2,   /* a close frame arrived (now or earlier): see tc_ws_close_code() */
    TC_WS_ERROR = -1,   /* I/O or TLS failure, or the server broke the framing rules */
    TC_WS_TIMEOUT = -2, /* nothing complete within the timeout; the connection is still usable */
    TC_WS_EOF = -3,     /* the connection ended without a close frame (close code 1006) */
};

struct tc_ws;

/*
 * Opens wss://127.0.0.1:`port``path` with the RFC 6455 handshake: a random
 * Sec-WebSocket-Key, and `subprotocol` offered in Sec-WebSocket-Protocol
 * unless NULL. Checks the 101 answer: Upgrade, Connection, the
 * Sec-WebSocket-Accept value and that the server chose exactly `subprotocol`
 * (or none when NULL). Returns a new connection (close and free with
 * tc_ws_close()), or NULL with *http_status_out set to the refusing HTTP
 * status, or to -1 when the server sent no status or a 101 that fails the
 * checks (the reason is printed to stderr). `http_status_out` may be NULL.
 */
struct tc_ws *tc_ws_connect(uint16_t port, const char *path, const char *subprotocol,
                            int *http_status_out);

/*
 * Like tc_ws_connect() over plain TCP: ws://127.0.0.1:`port``path`, no TLS
 * (Janus's WebSocket transport in the benchmark). Everything else, the
 * handshake's checks and all the tc_ws_* calls on the connection, is the same.
 */
struct tc_ws *tc_ws_connect_plain(uint16_t port, const char *path, const char *subprotocol,
                                  int *http_status_out);

/* Sends one masked text message in a single frame. Returns 0 or a negative errno value. */
int tc_ws_send_text(struct tc_ws *ws, const char *text, size_t len);

/*
 * Sends one masked frame with any opcode and FIN bit, `len` bytes of `data`
 * (borrowed, may be NULL when len is 0), for fragmentation and abuse tests.
 * Nothing is checked: a 200-byte ping or a lone continuation goes out as asked.
 * Returns 0 or a negative errno value.
 */
int tc_ws_send_frame(struct tc_ws *ws, unsigned opcode, bool fin, const void *data, size_t len);

/* Writes `len` raw bytes to the connection (a frame built by hand). Returns 0 or negative. */
int tc_ws_send_raw(struct tc_ws *ws, const void *data, size_t len);

/*
 * Sends a close frame with `code` (0 for one without a status code) and
 * `reason` (may be NULL). Further messages can still be received until the
 * server's close frame. Returns 0 or a negative errno value.
 */
int tc_ws_send_close(struct tc_ws *ws, unsigned code, const char *reason);

/*
 * Waits up to `timeout_ms` for the next complete message and returns it in
 * *data (new, NUL-terminated, free with free()) and *len, with TC_WS_TEXT or
 * TC_WS_BINARY. Pings are answered with pongs and pongs ignored on the way.
 * A close frame is answered (once) with a close frame carrying the same code,
 * and gives TC_WS_CLOSED, as does every later call. On any other result *data
 * is NULL and *len 0.
 */
enum tc_ws_result tc_ws_recv(struct tc_ws *ws, char **data, size_t *len, int timeout_ms);

/*
 * The status code of the server's close frame: 1005 when it had none, 1006
 * when the connection ended without one, 0 while neither happened.
 */
unsigned tc_ws_close_code(const struct tc_ws *ws);

/* The reason text of the server's close frame ("" if none); borrowed from `ws`. */
const char *tc_ws_close_reason(const struct tc_ws *ws);

/*
 * Sends a close frame (1000) unless one was already exchanged, waits up to a
 * second for the server's close frame, then closes the connection and frees
 * `ws`. NULL does nothing.
 */
void tc_ws_close(struct tc_ws *ws);

#endif
