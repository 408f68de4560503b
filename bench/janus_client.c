/*
 * janus_client.c - the blocking Janus API client of the benchmark (janus_client.h):
 * requests as JSON text over tests/support's plain WebSocket client, replies
 * matched by transaction id.
 *
 * Runs on whichever thread calls it; one thread at a time per client.
 */
#include "janus_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base.h"
#include "test_client.h"

#define JC_SUBPROTOCOL "janus-protocol"

struct jc {
    struct tc_ws *ws;
    uint64_t next_transaction;
    int timeout_ms;
    struct jc_counts counts;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

struct jc *jc_connect(uint16_t port, char *err, size_t errlen)
{
    struct jc *jc = calloc(1, sizeof(*jc));
    if (!jc) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    int status = 0;
    jc->ws = tc_ws_connect_plain(port, "/", JC_SUBPROTOCOL, &status);
    if (!jc->ws) {
        set_err(err, errlen, "cannot open ws://127.0.0.1:%u/ (%s): HTTP status %d", (unsigned)port,
                JC_SUBPROTOCOL, status);
        free(jc);
        return NULL;
    }
    jc->timeout_ms = JC_TIMEOUT_MS;
    return jc;
}

void jc_free(struct jc *jc)
{
    if (!jc)
        return;
    tc_ws_close(jc->ws);
    free(jc);
}

void jc_set_timeout(struct jc *jc, int timeout_ms)
{
    jc->timeout_ms = timeout_ms > 0 ? timeout_ms : JC_TIMEOUT_MS;
}

void jc_counts(const struct jc *jc, struct jc_counts *out)
{
    *out = jc->counts;
}

/* Counts a message that is not the reply being waited for. */
static void count_other(struct jc *jc, const char *type)
{
    if (!type)
        jc->counts.other++;
    else if (strcmp(type, "webrtcup") == 0)
        jc->counts.webrtcup++;
    else if (strcmp(type, "hangup") == 0)
        jc->counts.hangup++;
    else if (strcmp(type, "media") == 0)
        jc->counts.media++;
    else if (strcmp(type, "slowlink") == 0)
        jc->counts.slowlink++;
    else
        jc->counts.other++;
}

int jc_poll_events(struct jc *jc, int timeout_ms, char *err, size_t errlen)
{
    for (int64_t deadline = base_now_ms() + timeout_ms;;) {
        int64_t left = deadline - base_now_ms();
        if (left <= 0)
            return 0;
        char *data = NULL;
        size_t len = 0;
        enum tc_ws_result r = tc_ws_recv(jc->ws, &data, &len, (int)left);
        if (r == TC_WS_TIMEOUT)
            return 0;
        if (r != TC_WS_TEXT) {
            free(data);
            set_err(err, errlen, "janus: the connection ended (WebSocket close code %u)",
                    tc_ws_close_code(jc->ws));
            return -EPIPE;
        }
        json_t *in = json_loadb(data, len, 0, NULL);
        free(data);
        if (in)
            count_other(jc, json_string_value(json_object_get(in, "janus")));
        json_decref(in);
    }
}

/*
 * Sends `msg` (takes ownership) with a new transaction id, and waits for the
 * reply on that transaction whose "janus" is `expect` ("success", "ack",
 * "event"); an "ack" before it is skipped when `expect` is not "ack". Returns
 * 0 with the reply in *reply (free with json_decref; NULL: not wanted), or a
 * negative errno value with `err`.
 */
static int request(struct jc *jc, json_t *msg, const char *expect, json_t **reply, char *err,
                   size_t errlen)
{
    if (reply)
        *reply = NULL;
    if (!msg) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char transaction[32];
    snprintf(transaction, sizeof(transaction), "jc%" PRIu64, ++jc->next_transaction);
    const char *what = json_string_value(json_object_get(msg, "janus"));
    char request_name[16];
    snprintf(request_name, sizeof(request_name), "%s", what ? what : "?");
    json_object_set_new(msg, "transaction", json_string(transaction));
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = tc_ws_send_text(jc->ws, text, strlen(text));
    free(text);
    if (rc != 0) {
        set_err(err, errlen, "janus %s: cannot send: %s", request_name, strerror(-rc));
        return rc;
    }
    int64_t deadline = base_now_ms() + jc->timeout_ms;
    for (;;) {
        int64_t left = deadline - base_now_ms();
        if (left <= 0) {
            set_err(err, errlen, "janus %s: no reply within %d ms", request_name, jc->timeout_ms);
            return -ETIMEDOUT;
        }
        char *data = NULL;
        size_t len = 0;
        enum tc_ws_result r = tc_ws_recv(jc->ws, &data, &len, (int)left);
        if (r == TC_WS_TIMEOUT)
            continue;
        if (r != TC_WS_TEXT) {
            free(data);
            set_err(err, errlen, "janus %s: the connection ended (WebSocket close code %u)",
                    request_name, tc_ws_close_code(jc->ws));
            return -EPIPE;
        }
        json_t *in = json_loadb(data, len, 0, NULL);
        free(data);
        const char *type = json_string_value(json_object_get(in, "janus"));
        const char *txn = json_string_value(json_object_get(in, "transaction"));
        if (!in || !type || !txn || strcmp(txn, transaction) != 0 ||
            (strcmp(type, "ack") == 0 && strcmp(expect, "ack") != 0)) {
            if (in && !(type && txn && strcmp(txn, transaction) == 0))
                count_other(jc, type);
            json_decref(in);
            continue;
        }
        if (strcmp(type, "error") == 0) {
            json_t *e = json_object_get(in, "error");
            set_err(err, errlen, "janus %s: error %" JSON_INTEGER_FORMAT ": %s", request_name,
                    json_integer_value(json_object_get(e, "code")),
                    json_string_value(json_object_get(e, "reason"))
                        ? json_string_value(json_object_get(e, "reason"))
                        : "(no reason)");
            json_decref(in);
            return -EPROTO;
        }
        if (strcmp(type, expect) != 0) {
            set_err(err, errlen, "janus %s: \"%s\" where \"%s\" was expected", request_name, type,
                    expect);
            json_decref(in);
            return -EPROTO;
        }
        if (reply)
            *reply = in;
        else
            json_decref(in);
        return 0;
    }
}

/* The integer data.id of a "success" reply (create, attach). */
static int success_id(json_t *reply, uint64_t *id, const char *what, char *err, size_t errlen)
{
    json_t *v = json_object_get(json_object_get(reply, "data"), "id");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        set_err(err, errlen, "janus %s: the success has no data.id", what);
        return -EPROTO;
    }
    *id = (uint64_t)json_integer_value(v);
    return 0;
}

int jc_create_session(struct jc *jc, uint64_t *session_id, char *err, size_t errlen)
{
    json_t *reply;
    int rc = request(jc, json_pack("{s:s}", "janus", "create"), "success", &reply, err, errlen);
    if (rc == 0)
        rc = success_id(reply, session_id, "create", err, errlen);
    json_decref(reply);
    return rc;
}

int jc_attach(struct jc *jc, uint64_t session_id, const char *plugin, uint64_t *handle_id,
              char *err, size_t errlen)
{
    json_t *reply;
    int rc = request(jc,
                     json_pack("{s:s, s:I, s:s}", "janus", "attach", "session_id",
                               (json_int_t)session_id, "plugin", plugin),
                     "success", &reply, err, errlen);
    if (rc == 0)
        rc = success_id(reply, handle_id, "attach", err, errlen);
    json_decref(reply);
    return rc;
}

int jc_echo_offer(struct jc *jc, uint64_t session_id, uint64_t handle_id, const char *offer_sdp,
                  char **answer_sdp, char *err, size_t errlen)
{
    *answer_sdp = NULL;
    json_t *reply;
    int rc = request(jc,
                     json_pack("{s:s, s:I, s:I, s:{s:b, s:b}, s:{s:s, s:s}}", "janus", "message",
                               "session_id", (json_int_t)session_id, "handle_id",
                               (json_int_t)handle_id, "body", "audio", 1, "video", 1, "jsep",
                               "type", "offer", "sdp", offer_sdp),
                     "event", &reply, err, errlen);
    if (rc != 0)
        return rc;
    json_t *data = json_object_get(json_object_get(reply, "plugindata"), "data");
    json_t *jsep = json_object_get(reply, "jsep");
    const char *plugin_error = json_string_value(json_object_get(data, "error"));
    const char *type = json_string_value(json_object_get(jsep, "type"));
    const char *sdp = json_string_value(json_object_get(jsep, "sdp"));
    if (plugin_error) {
        set_err(err, errlen, "janus message: the EchoTest plugin refused the offer: %s",
                plugin_error);
        rc = -EPROTO;
    } else if (!type || strcmp(type, "answer") != 0 || !sdp) {
        set_err(err, errlen, "janus message: the plugin's event has no JSEP answer");
        rc = -EPROTO;
    } else if (!(*answer_sdp = strdup(sdp))) {
        set_err(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    json_decref(reply);
    return rc;
}

int jc_trickle_completed(struct jc *jc, uint64_t session_id, uint64_t handle_id, char *err,
                         size_t errlen)
{
    return request(jc,
                   json_pack("{s:s, s:I, s:I, s:{s:b}}", "janus", "trickle", "session_id",
                             (json_int_t)session_id, "handle_id", (json_int_t)handle_id,
                             "candidate", "completed", 1),
                   "ack", NULL, err, errlen);
}

int jc_keepalive(struct jc *jc, uint64_t session_id, char *err, size_t errlen)
{
    return request(
        jc, json_pack("{s:s, s:I}", "janus", "keepalive", "session_id", (json_int_t)session_id),
        "ack", NULL, err, errlen);
}

int jc_detach(struct jc *jc, uint64_t session_id, uint64_t handle_id, char *err, size_t errlen)
{
    return request(jc,
                   json_pack("{s:s, s:I, s:I}", "janus", "detach", "session_id",
                             (json_int_t)session_id, "handle_id", (json_int_t)handle_id),
                   "success", NULL, err, errlen);
}

int jc_destroy_session(struct jc *jc, uint64_t session_id, char *err, size_t errlen)
{
    return request(
        jc, json_pack("{s:s, s:I}", "janus", "destroy", "session_id", (json_int_t)session_id),
        "success", NULL, err, errlen);
}

int jc_echo_leg_open(struct jc *jc, const char *offer_sdp, struct jc_leg *leg, char **answer_sdp,
                     char *err, size_t errlen)
{
    memset(leg, 0, sizeof(*leg));
    *answer_sdp = NULL;
    uint64_t session = 0, handle = 0;
    int rc = jc_create_session(jc, &session, err, errlen);
    if (rc != 0)
        return rc;
    rc = jc_attach(jc, session, JC_PLUGIN_ECHOTEST, &handle, err, errlen);
    if (rc == 0)
        rc = jc_echo_offer(jc, session, handle, offer_sdp, answer_sdp, err, errlen);
    if (rc == 0)
        rc = jc_trickle_completed(jc, session, handle, err, errlen);
    if (rc != 0) {
        free(*answer_sdp);
        *answer_sdp = NULL;
        jc_destroy_session(jc, session, NULL, 0); /* best effort: the first error is the one */
        return rc;
    }
    leg->session_id = session;
    leg->handle_id = handle;
    return 0;
}

int jc_echo_leg_close(struct jc *jc, struct jc_leg *leg, char *err, size_t errlen)
{
    if (leg->session_id == 0)
        return 0;
    int rc = jc_detach(jc, leg->session_id, leg->handle_id, err, errlen);
    int rc2 = jc_destroy_session(jc, leg->session_id, rc ? NULL : err, errlen);
    memset(leg, 0, sizeof(*leg));
    return rc ? rc : rc2;
}
