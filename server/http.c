/*
 * http.c - the HTTPS and WSS front end on libwebsockets: health and metrics
 * endpoints, static files of the web app, and the `tabib.v1` WebSocket.
 *
 * Runs on the signalling thread only (every callback comes from lws_service).
 * Replies are built in memory and sent when the socket is writable; a slow
 * client costs us its own queue, never a blocked loop.
 */
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "signaling.h"

#include <openssl/crypto.h>

#define HTTP_CHUNK       16384
#define WS_OUT_QUEUE_MAX 256
#define HEADER_BUFFER    2048
#define API_BODY_MAX     16384

/* The Content-Security-Policy of every page: nothing loads from outside the server. */
#define CSP                                                                                        \
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "                     \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

enum api_route {
    API_NONE = 0,
    API_LOGIN,        /* POST /api/login */
    API_APPOINTMENTS, /* POST /api/appointments */
    API_UNKNOWN,      /* a POST anywhere else: read the body, then 404 */
};

struct http_session {
    char *body; /* pending dynamic response body (owned), NULL when none */
    size_t len;
    size_t sent;
    enum api_route api; /* a POST whose request body is being read */
    char *req_body;     /* owned */
    size_t req_len;
    bool req_too_large;
    uint64_t audit_wait;          /* the audit search this connection waits for, 0 none */
    struct audit_request *answer; /* its answer, headers not yet written (owned) */
};

struct ws_out {
    struct ws_out *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of room, then the message */
};

struct ws_session {
    struct srv_state *st;
    struct lws *wsi;
    struct ws_session *prev, *next;
    char *rx; /* the message being reassembled from fragments */
    size_t rx_len;
    bool rx_binary;
    struct ws_out *out_head, *out_tail;
    unsigned out_count;
    bool closing;   /* close once the queued messages are written */
    int close_code; /* WebSocket close code for that */
    char close_reason[64];
};

static struct srv_state *state_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* Adds the headers every response carries. Returns 0 or 1 when out of room. */
static int add_common_headers(struct lws *wsi, unsigned char **p, unsigned char *end,
                              const char *cache_control)
{
    static const struct {
        const char *name;
        const char *value;
    } fixed[] = {
        {"x-content-type-options:", "nosniff"},
        {"referrer-policy:", "no-referrer"},
        {"x-frame-options:", "DENY"},
        {"content-security-policy:", CSP},
        {"permissions-policy:", "camera=(self), microphone=(self), geolocation=()"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)fixed[i].name,
                                        (const unsigned char *)fixed[i].value,
                                        (int)strlen(fixed[i].value), p, end))
            return 1;
    return lws_add_http_header_by_name(
        wsi, (const unsigned char *)"cache-control:", (const unsigned char *)cache_control,
        (int)strlen(cache_control), p, end);
}

/*
 * Sends headers now and queues `body` (taken: freed here or once sent) for
 * the writable callback; with a `filename`, the browser saves it as that
 * file. Returns 0, or -1 when the connection must be closed.
 */
static int respond_taking(struct lws *wsi, struct http_session *hs, unsigned status,
                          const char *ctype, const char *filename, char *body, size_t len)
{
    unsigned char headers[LWS_PRE + HEADER_BUFFER];
    unsigned char *start = headers + LWS_PRE, *p = start, *end = headers + sizeof(headers) - 1;
    free(hs->body);
    hs->body = body;
    hs->len = len;
    hs->sent = 0;
    if (!hs->body)
        return -1;
    char disposition[128];
    if (filename)
        snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s\"", filename);
    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
        add_common_headers(wsi, &p, end, "no-store") ||
        (filename && lws_add_http_header_by_name(wsi, (const unsigned char *)"content-disposition:",
                                                 (const unsigned char *)disposition,
                                                 (int)strlen(disposition), &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* As respond_taking(), with `body` copied. */
static int respond_named(struct lws *wsi, struct http_session *hs, unsigned status,
                         const char *ctype, const char *filename, const char *body, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (copy)
        memcpy(copy, body, len);
    return respond_taking(wsi, hs, status, ctype, filename, copy, len);
}

static int respond(struct lws *wsi, struct http_session *hs, unsigned status, const char *ctype,
                   const char *body, size_t len)
{
    return respond_named(wsi, hs, status, ctype, NULL, body, len);
}

/*
 * The peer's address as people write it: an IPv4 client of our dual-stack
 * socket shows as ::ffff:192.0.2.1, which we log and limit as 192.0.2.1.
 */
static void peer_address(struct lws *wsi, char *out, size_t outlen)
{
    out[0] = '\0';
    lws_get_peer_simple(wsi, out, outlen);
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out + 7, '.'))
        memmove(out, out + 7, strlen(out + 7) + 1);
}

static int respond_text(struct lws *wsi, struct http_session *hs, unsigned status, const char *text)
{
    return respond(wsi, hs, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int respond_not_found(struct lws *wsi, struct http_session *hs)
{
    state_of(wsi)->http_not_found++;
    return respond_text(wsi, hs, HTTP_STATUS_NOT_FOUND, "not found\n");
}

/* Writes the next chunk of a pending body; returns -1 to close the connection. */
static int write_body_chunk(struct lws *wsi, struct http_session *hs)
{
    if (!hs->body)
        return 0;
    unsigned char buf[LWS_PRE + HTTP_CHUNK];
    size_t chunk = hs->len - hs->sent;
    if (chunk > HTTP_CHUNK)
        chunk = HTTP_CHUNK;
    bool last = hs->sent + chunk == hs->len;
    memcpy(buf + LWS_PRE, hs->body + hs->sent, chunk);
    if (lws_write(wsi, buf + LWS_PRE, chunk, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
        (int)chunk)
        return -1;
    hs->sent += chunk;
    if (!last) {
        /* A client that stops reading a large answer is let go, not held for ever. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, 30);
        lws_callback_on_writable(wsi);
        return 0;
    }
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    free(hs->body);
    hs->body = NULL;
    /* Keep-alive: ready for the next request, or close if the client asked to. */
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int serve_readyz(struct lws *wsi, struct http_session *hs)
{
    struct srv_state *st = state_of(wsi);
    char body[4096];
    size_t n = 0;
    bool ready = srv_is_ready(st);
    int64_t now = base_now_ms();
    n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"ready\":%s,\"stopping\":%s,\"threads\":{",
                          ready ? "true" : "false", st->stopping ? "true" : "false");
    for (unsigned i = 0; i < st->health_count && n < sizeof(body); i++) {
        const struct srv_thread_health *h = &st->health[i];
        bool up = h->last_reply_ms && now - h->last_reply_ms < SRV_PROBE_STALE_MS;
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%s\":\"%s\"", i ? "," : "", h->name,
                              up ? "up" : "down");
    }
    if (n < sizeof(body))
        n += (size_t)snprintf(body + n, sizeof(body) - n, "}}\n");
    if (n >= sizeof(body))
        return respond_text(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "readyz overflow\n");
    return respond(wsi, hs, ready ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE,
                   "application/json", body, n);
}

static int serve_metrics(struct lws *wsi, struct http_session *hs)
{
    size_t len;
    char *text = srv_metrics_render(state_of(wsi), &len);
    if (!text)
        return respond_text(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory\n");
    int rc =
        respond(wsi, hs, HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
}

static int serve_static(struct lws *wsi, struct http_session *hs, const char *uri)
{
    struct srv_state *st = state_of(wsi);
    char rel[512], full[PATH_MAX + 512];
    if (srv_http_path_resolve(uri, rel, sizeof(rel)) != 0)
        return respond_not_found(wsi, hs);
    snprintf(full, sizeof(full), "%s/%s", st->cfg->web_root, rel);
    struct stat sb;
    if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
        return respond_not_found(wsi, hs);

    unsigned char extra[HEADER_BUFFER], *p = extra;
    if (add_common_headers(wsi, &p, extra + sizeof(extra) - 1, "no-cache"))
        return -1;
    int n = lws_serve_http_file(wsi, full, srv_http_content_type(rel), (const char *)extra,
                                (int)(p - extra));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

/* Appends a chunk of a POST body, up to API_BODY_MAX bytes. */
static void read_api_body(struct http_session *hs, const void *in, size_t len)
{
    if (hs->req_too_large || len > API_BODY_MAX - hs->req_len) {
        hs->req_too_large = true;
        return;
    }
    char *grown = realloc(hs->req_body, hs->req_len + len + 1);
    if (!grown) {
        hs->req_too_large = true;
        return;
    }
    hs->req_body = grown;
    memcpy(hs->req_body + hs->req_len, in, len);
    hs->req_len += len;
}

/* Answers a POST to /api/ once its body is complete. */
static int answer_api(struct lws *wsi, struct http_session *hs)
{
    struct srv_state *st = state_of(wsi);
    enum api_route api = hs->api;
    hs->api = API_NONE;
    if (hs->req_too_large) {
        char *e = sig_error_reply(NULL, "bad_request", "request body over 16 KiB");
        int rc = respond(wsi, hs, 413, "application/json", e, e ? strlen(e) : 0);
        free(e);
        return rc;
    }
    if (api == API_UNKNOWN)
        return respond_not_found(wsi, hs);
    char address[64];
    peer_address(wsi, address, sizeof(address));
    const char *body = hs->req_body ? hs->req_body : "";
    int status = 500;
    char *reply;
    if (api == API_LOGIN) {
        reply = sig_hub_http_login(st->hub, body, hs->req_len, address, base_now_ms(), &status);
    } else {
        char auth[256] = "";
        const char *bearer = NULL;
        if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
            strncmp(auth, "Bearer ", 7) == 0)
            bearer = auth + 7;
        reply = sig_hub_http_appointment(st->hub, bearer, body, hs->req_len, address, base_now_ms(),
                                         &status);
        OPENSSL_cleanse(auth, sizeof(auth));
    }
    free(hs->req_body);
    hs->req_body = NULL;
    hs->req_len = 0;
    if (!reply)
        return respond_text(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory\n");
    int rc = respond(wsi, hs, (unsigned)status, "application/json", reply, strlen(reply));
    free(reply);
    return rc;
}

/* Answers with a JSON body we own (NULL: out of memory). */
static int respond_json(struct lws *wsi, struct http_session *hs, unsigned status, char *json)
{
    if (!json)
        return respond_text(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory\n");
    int rc = respond(wsi, hs, status, "application/json", json, strlen(json));
    free(json);
    return rc;
}

static int respond_bad_request(struct lws *wsi, struct http_session *hs, const char *message)
{
    return respond_json(wsi, hs, 400, sig_error_reply(NULL, "bad_request", message));
}

/* Reads the URL's filters into `rq`. Returns 0, or -1 with a sentence in `err`. */
static int read_audit_args(struct lws *wsi, struct audit_request *rq, char *err, size_t errlen)
{
    for (int i = 0; lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
        char arg[512];
        if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) >= (int)sizeof(arg) ||
            lws_hdr_copy_fragment(wsi, arg, sizeof(arg), WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
            snprintf(err, errlen, "a URL parameter is longer than %zu bytes", sizeof(arg) - 1);
            return -1;
        }
        char *value = strchr(arg, '=');
        if (value)
            *value++ = '\0';
        else
            value = arg + strlen(arg);
        if (rq->export_all && strcmp(arg, "format") == 0) {
            int format = audit_format_parse(value);
            if (format < 0) {
                snprintf(err, errlen, "format is csv, fhir or json");
                return -1;
            }
            rq->format = (enum audit_format)format;
        } else if (rq->export_all && strcmp(arg, "of") == 0) {
            if (strcmp(value, "events") != 0 && strcmp(value, "sessions") != 0) {
                snprintf(err, errlen, "of is events or sessions");
                return -1;
            }
            rq->query.kind = value[0] == 'e' ? AUDIT_QUERY_EVENTS : AUDIT_QUERY_SESSIONS;
        } else if (!rq->export_all && (strcmp(arg, "format") == 0 || strcmp(arg, "of") == 0)) {
            snprintf(err, errlen, "%s belongs to /api/audit/export", arg);
            return -1;
        } else {
            int rc = audit_query_set(&rq->query, arg, value, err, errlen);
            if (rc > 0)
                snprintf(err, errlen,
                         "unknown filter \"%.64s\" (filters: clinic, doctor, patient, "
                         "consultation, type, outcome, end_reason, from, to, cursor, limit)",
                         arg);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

/*
 * GET /api/audit/sessions, /api/audit/events (a page of JSON),
 * /api/audit/stats (waits per clinic), /api/audit/verify (the chain) and
 * /api/audit/export (a file): admins only, within their clinics. The search
 * runs on the audit reader thread; the answer comes back through the inbox
 * (srv_http_audit_answer), so this thread never waits on the database.
 */
static int serve_audit(struct lws *wsi, struct http_session *hs, const char *uri)
{
    struct srv_state *st = state_of(wsi);
    enum audit_query_kind kind = AUDIT_QUERY_EVENTS;
    bool export_all = false;
    if (strcmp(uri, "/api/audit/sessions") == 0)
        kind = AUDIT_QUERY_SESSIONS;
    else if (strcmp(uri, "/api/audit/stats") == 0)
        kind = AUDIT_QUERY_STATS;
    else if (strcmp(uri, "/api/audit/verify") == 0)
        kind = AUDIT_QUERY_VERIFY;
    else if (strcmp(uri, "/api/audit/export") == 0)
        export_all = true;
    else if (strcmp(uri, "/api/audit/events") != 0)
        return respond_not_found(wsi, hs);
    char address[64], auth[256] = "", what[64], *error = NULL;
    peer_address(wsi, address, sizeof(address));
    const char *bearer = NULL;
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
        strncmp(auth, "Bearer ", 7) == 0)
        bearer = auth + 7;
    snprintf(what, sizeof(what), "GET %s", uri);
    struct sig_audit_reader who;
    int denied =
        sig_hub_http_audit_access(st->hub, bearer, what, address, base_now_ms(), &who, &error);
    OPENSSL_cleanse(auth, sizeof(auth));
    if (denied)
        return respond_json(wsi, hs, (unsigned)denied, error);
    struct audit_request *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return respond_text(wsi, hs, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory\n");
    audit_query_init(&rq->query, kind);
    rq->export_all = export_all;
    rq->format = AUDIT_FORMAT_JSON;
    snprintf(rq->actor_role, sizeof(rq->actor_role), "admin");
    snprintf(rq->actor_id, sizeof(rq->actor_id), "%s", who.username);
    snprintf(rq->source, sizeof(rq->source), "%s", address);
    rq->query.all_clinics = who.all_clinics;
    for (unsigned i = 0; i < who.clinic_count && i < AUDIT_SCOPE_MAX; i++)
        snprintf(rq->query.scope[rq->query.scope_count++], AUDIT_ID_MAX, "%s", who.clinics[i]);
    char err[256];
    if (read_audit_args(wsi, rq, err, sizeof(err)) != 0) {
        audit_request_free(rq);
        return respond_bad_request(wsi, hs, err);
    }
    /* Asking for a clinic outside one's scope is refused outright, and audited. */
    bool in_scope = rq->query.all_clinics || !rq->query.clinic[0];
    for (unsigned i = 0; !in_scope && i < rq->query.scope_count; i++)
        in_scope = strcmp(rq->query.scope[i], rq->query.clinic) == 0;
    if (!in_scope) {
        struct audit_event ev = {.type = "access_denied",
                                 .actor_role = "admin",
                                 .actor_id = who.username,
                                 .clinic = rq->query.clinic,
                                 .outcome = "denied",
                                 .source = address,
                                 .detail_json = "{\"request\":\"audit search outside the admin's "
                                                "clinics\"}"};
        if (audit_writer_append(st->audit, &ev) != 0)
            st->audit_dropped++;
        audit_request_free(rq);
        return respond_json(wsi, hs, 403,
                            sig_error_reply(NULL, "forbidden", "no access to that clinic"));
    }
    struct srv_audit_wait *slot = NULL;
    for (unsigned i = 0; i < SRV_AUDIT_WAITS && !slot; i++)
        if (!st->audit_waits[i].id)
            slot = &st->audit_waits[i];
    rq->id = ++st->audit_request_seq;
    if (!slot || !st->audit_reader || audit_reader_submit(st->audit_reader, rq) != 0) {
        audit_request_free(rq);
        return respond_json(
            wsi, hs, HTTP_STATUS_SERVICE_UNAVAILABLE,
            sig_error_reply(NULL, "busy", "too many audit searches at once; try again shortly"));
    }
    slot->id = st->audit_request_seq;
    slot->wsi = wsi;
    hs->audit_wait = slot->id;
    /* A large export takes a while; the connection is not idle meanwhile. */
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, 120);
    return 0;
}

void srv_http_audit_answer(struct srv_state *st, struct audit_request *rq)
{
    struct lws *wsi = NULL;
    for (unsigned i = 0; i < SRV_AUDIT_WAITS; i++)
        if (st->audit_waits[i].id == rq->id) {
            wsi = st->audit_waits[i].wsi;
            st->audit_waits[i].id = 0;
            st->audit_waits[i].wsi = NULL;
            break;
        }
    struct http_session *hs = wsi ? lws_wsi_user(wsi) : NULL;
    if (!hs) {
        audit_request_free(rq); /* the connection closed while it was searched */
        return;
    }
    hs->audit_wait = 0;
    audit_request_free(hs->answer);
    hs->answer = rq;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    lws_callback_on_writable(wsi);
}

/* Writes an audit answer's headers (the body follows on the next writable callbacks). */
static int send_audit_answer(struct lws *wsi, struct http_session *hs)
{
    struct audit_request *rq = hs->answer;
    hs->answer = NULL;
    char *body = rq->body ? rq->body : strdup("");
    size_t len = rq->body ? rq->len : 0;
    rq->body = NULL; /* an export can be large: handed over, not copied */
    int rc = respond_taking(wsi, hs, rq->status, rq->content_type, rq->filename, body, len);
    audit_request_free(rq);
    return rc;
}

/* Routes one HTTP request; `uri` is the path as lws decoded it. */
static int route(struct lws *wsi, struct http_session *hs, const char *uri)
{
    state_of(wsi)->http_requests++;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) {
        if (strcmp(uri, "/api/login") == 0)
            hs->api = API_LOGIN;
        else if (strcmp(uri, "/api/appointments") == 0)
            hs->api = API_APPOINTMENTS;
        else
            hs->api =
                API_UNKNOWN; /* answered once the body is read, so the connection stays in step */
        hs->req_len = 0;
        hs->req_too_large = false;
        /* API bodies are small JSON with a Content-Length; without one the body is empty. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            hs->api = API_NONE;
            return respond_text(wsi, hs, 411, "send the body with a Content-Length\n");
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
            return answer_api(wsi, hs);
        return 0; /* the answer follows the body: LWS_CALLBACK_HTTP_BODY_COMPLETION */
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return respond_text(wsi, hs, HTTP_STATUS_METHOD_NOT_ALLOWED,
                            "only GET, and POST to /api/, are served here\n");
    if (strcmp(uri, "/healthz") == 0)
        return respond(wsi, hs, HTTP_STATUS_OK, "application/json", "{\"status\":\"ok\"}\n", 16);
    if (strcmp(uri, "/readyz") == 0)
        return serve_readyz(wsi, hs);
    if (strcmp(uri, "/metrics") == 0)
        return serve_metrics(wsi, hs);
    if (strncmp(uri, "/api/audit/", 11) == 0)
        return serve_audit(wsi, hs, uri);
    if (strcmp(uri, "/api/clinics") == 0) {
        char *list = sig_hub_http_clinics(state_of(wsi)->hub, base_wall_ms());
        return respond_json(wsi, hs, HTTP_STATUS_OK, list);
    }
    if (strcmp(uri, "/ws") == 0)
        return respond_text(wsi, hs, HTTP_STATUS_BAD_REQUEST,
                            "/ws speaks WebSocket (subprotocol " SIG_SUBPROTOCOL ") only\n");
    /* A clinic's link, /c/<clinic>, opens the patient page, which reads the clinic from it. */
    char rel[512];
    if (strncmp(uri, "/c/", 3) == 0 && srv_http_path_resolve(uri, rel, sizeof(rel)) == 0 &&
        !strchr(uri + 3, '/'))
        return serve_static(wsi, hs, "/patient.html");
    return serve_static(wsi, hs, uri);
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct http_session *hs = user;
    struct srv_state *st;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        /* After SIGTERM new connections are refused at once. */
        st = wsi ? lws_context_user(lws_get_context(wsi)) : NULL;
        return st && st->stopping ? 1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* A WebSocket upgrade without our subprotocol lands here: refuse it. */
        state_of(wsi)->ws_refused++;
        return 1;
    case LWS_CALLBACK_HTTP:
        return route(wsi, hs, in) ? -1 : 0;
    case LWS_CALLBACK_HTTP_BODY:
        if (hs->api != API_NONE)
            read_api_body(hs, in, len);
        break;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (hs->api != API_NONE)
            return answer_api(wsi, hs) ? -1 : 0;
        break;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (hs->answer)
            return send_audit_answer(wsi, hs) ? -1 : 0;
        return write_body_chunk(wsi, hs);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (hs) {
            free(hs->body);
            hs->body = NULL;
            free(hs->req_body);
            hs->req_body = NULL;
            audit_request_free(hs->answer);
            hs->answer = NULL;
            st = state_of(wsi);
            for (unsigned i = 0; hs->audit_wait && i < SRV_AUDIT_WAITS; i++)
                if (st->audit_waits[i].id == hs->audit_wait) /* its answer will be dropped */
                    st->audit_waits[i].id = 0;
            hs->audit_wait = 0;
        }
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Another thread pushed to our inbox or the signal thread asked for attention. */
        st = lws_context_user(lws_get_context(wsi));
        if (st)
            srv_on_wakeup(st);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Asks for the connection to close with `code` once what is queued has been written. */
static void ws_close_later(struct ws_session *s, int code, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    lws_callback_on_writable(s->wsi);
}

/* Queues a text message (copied). A client that stops reading is closed, not buffered forever. */
static void ws_queue(struct ws_session *s, const char *text, size_t len)
{
    if (s->closing)
        return;
    struct ws_out *o = s->out_count < WS_OUT_QUEUE_MAX ? malloc(sizeof(*o) + LWS_PRE + len) : NULL;
    if (!o) {
        s->st->ws_closed_for_abuse++;
        ws_close_later(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "replies not read");
        return;
    }
    o->next = NULL;
    o->len = len;
    memcpy(o->data + LWS_PRE, text, len);
    if (s->out_tail)
        s->out_tail->next = o;
    else
        s->out_head = o;
    s->out_tail = o;
    s->out_count++;
    lws_callback_on_writable(s->wsi);
}

static void hub_send(void *ctx, void *transport, const char *text, size_t len)
{
    (void)ctx;
    ws_queue(transport, text, len);
}

static void hub_close(void *ctx, void *transport, int code, const char *reason)
{
    (void)ctx;
    ws_close_later(transport, code, reason);
}

static void hub_audit(void *ctx, const struct audit_event *ev)
{
    struct srv_state *st = ctx;
    if (!st->audit || audit_writer_append(st->audit, ev) != 0)
        st->audit_dropped++;
}

void srv_http_hub_io(struct srv_state *st, struct sig_hub_io *io)
{
    io->ctx = st;
    io->send = hub_send;
    io->close = hub_close;
    io->audit = hub_audit;
}

static void ws_session_free(struct ws_session *s)
{
    struct srv_state *st = s->st;
    if (s->prev)
        s->prev->next = s->next;
    else if (st->sessions == s)
        st->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    while (s->out_head) {
        struct ws_out *o = s->out_head;
        s->out_head = o->next;
        free(o);
    }
    free(s->rx);
    st->ws_open--;
}

/* Hands a complete received message to the hub. */
static void ws_handle_message(struct ws_session *s)
{
    s->st->ws_messages_received++;
    if (s->rx_binary) {
        char *e =
            sig_error_reply(NULL, "bad_request", "binary frames are not used; send JSON text");
        if (e)
            ws_queue(s, e, strlen(e));
        free(e);
    } else {
        sig_hub_message(s->st->hub, s, s->rx ? s->rx : "", s->rx_len, base_now_ms());
    }
    s->rx_len = 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct ws_session *s = user;
    struct srv_state *st;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        st = state_of(wsi);
        char uri[64];
        bool path_ok =
            lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) > 0 && strcmp(uri, "/ws") == 0;
        if (!path_ok || st->stopping || st->ws_open >= st->cfg->max_ws_connections) {
            st->ws_refused++;
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        st = state_of(wsi);
        memset(s, 0, sizeof(*s));
        s->st = st;
        s->wsi = wsi;
        s->next = st->sessions;
        if (st->sessions)
            st->sessions->prev = s;
        st->sessions = s;
        st->ws_open++;
        st->ws_accepted++;
        char address[64];
        peer_address(wsi, address, sizeof(address));
        if (sig_hub_connect(st->hub, s, address, base_now_ms()) != 0) {
            st->ws_refused++;
            ws_close_later(s, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                           "too many connections from your address");
        }
        break;
    }
    case LWS_CALLBACK_RECEIVE: {
        if (s->closing)
            break;
        if (s->rx_len == 0)
            s->rx_binary = lws_frame_is_binary(wsi);
        if (len > SIG_MESSAGE_MAX - s->rx_len) {
            /*
             * Not an immediate close: returning -1 here would reset the TCP connection
             * while the client is still sending, and it would never see the close frame.
             */
            s->st->ws_closed_for_abuse++;
            s->rx_len = 0;
            ws_close_later(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message over 64 KiB");
            break;
        }
        if (len) {
            char *grown = realloc(s->rx, s->rx_len + len + 1);
            if (!grown)
                return -1;
            s->rx = grown;
            memcpy(s->rx + s->rx_len, in, len);
            s->rx_len += len;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
            ws_handle_message(s);
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct ws_out *o = s->out_head;
        if (o) {
            if (lws_write(wsi, o->data + LWS_PRE, o->len, LWS_WRITE_TEXT) < (int)o->len)
                return -1;
            s->out_head = o->next;
            if (!s->out_head)
                s->out_tail = NULL;
            s->out_count--;
            free(o);
        }
        if (s->out_head) {
            lws_callback_on_writable(wsi);
        } else if (s->closing) {
            /* Last messages (an "ended" event, say) went out first; now the close frame. */
            lws_close_reason(wsi, (enum lws_close_status)s->close_code,
                             (unsigned char *)s->close_reason, strlen(s->close_reason));
            return -1;
        }
        break;
    }
    case LWS_CALLBACK_CLOSED:
        if (s && s->st) {
            sig_hub_disconnect(s->st->hub, s, base_now_ms());
            ws_session_free(s);
        }
        break;
    default:
        break;
    }
    return 0;
}

void srv_http_close_all(struct srv_state *st)
{
    for (struct ws_session *s = st->sessions; s; s = s->next)
        ws_close_later(s, LWS_CLOSE_STATUS_GOINGAWAY, "server is shutting down");
}

static const struct lws_protocols protocols[] = {
    {.name = "http",
     .callback = http_callback,
     .per_session_data_size = sizeof(struct http_session)},
    {.name = SIG_SUBPROTOCOL,
     .callback = ws_callback,
     .per_session_data_size = sizeof(struct ws_session),
     .rx_buffer_size = 4096},
    {.name = NULL},
};

const struct lws_protocols *srv_http_protocols(void)
{
    return protocols;
}
