/*
 * hub.c - clinics, queues, consultations and the people in them: the
 * `tabib.v1` protocol's server side (docs/protocol.md).
 *
 * Runs on the signalling thread and does no I/O: connections arrive through
 * sig_hub_connect(), messages through sig_hub_message(), and everything goes
 * out through struct sig_hub_io. Because one thread owns all of this state,
 * "call next" is atomic by construction: two doctors pressing at once are two
 * messages handled one after the other, and the second finds the next patient.
 *
 * Every decision about who may do what is made here, on the server, and every
 * transition, sign-in and denial is reported as an audit event.
 */
#include "signaling.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NAME_MAX_BYTES      200 /* a display name, in UTF-8 bytes */
#define ADDRESS_MAX         64
#define ID_FIELD_MAX        64 /* a request id */
#define RECENT_DURATIONS    8  /* completed consultations used for the wait estimate */
#define DEFAULT_DURATION_MS (10 * 60 * 1000)
#define THROTTLE_SLOTS      1024
#define THROTTLE_FREE_FAILS 4 /* failed sign-ins before slowing down */
#define THROTTLE_FORGET_MS  (15 * 60 * 1000)
#define FLOOD_CLOSE_FACTOR  10 /* refused messages past this many bursts close the connection */

struct consultation;
struct staff;

struct conn {
    struct conn *next;
    void *transport;
    char address[ADDRESS_MAX];
    enum sig_role role;
    struct consultation *consultation; /* role patient */
    struct staff *staff;               /* role doctor or admin */
    double tokens;                     /* rate limit bucket */
    int64_t refilled_ms;
    unsigned refused; /* messages refused in a row for rate */
};

struct clinic {
    const struct sig_clinic_config *cfg;
    unsigned waiting;
    unsigned on_duty;
    int64_t recent_ms[RECENT_DURATIONS];
    unsigned recent_count;
    unsigned recent_next;
};

struct consultation {
    struct consultation *next;
    char id[24];
    struct clinic *clinic;
    enum sig_state state;
    int priority; /* 1 urgent, 0 routine */
    int64_t enqueued_ms;
    uint64_t seq; /* order of arrival, the tie-breaker within a lane */
    int64_t joined_ms, called_ms, started_ms;
    char name[NAME_MAX_BYTES + 1];
    char patient_ref[SIG_ID_MAX];
    unsigned char resume_hash[32];
    struct conn *patient;    /* NULL while the patient is disconnected */
    int64_t patient_gone_ms; /* when they dropped, 0 while connected */
    bool ready;              /* devices and connection reported ready */
    struct staff *doctor;    /* who called them */
    uint64_t patient_leg;    /* the patient's media leg, 0 none */
    unsigned leg_placement;  /* where it was placed: the doctor's leg goes there too */
    int64_t media_lost_ms;   /* a participant's leg ended during the consultation, 0 none */
    uint64_t baselined[2];   /* the patient's and doctor's legs whose media summary interval
                                this consultation started, 0 none */
    bool summarised;         /* its participants' media summaries were asked for */
    unsigned sent_position;  /* the last position told to the patient */
    int64_t sent_estimate_s;
};

/* A signed-in doctor or admin; lives across reconnections for the grace period. */
struct staff {
    struct staff *next;
    struct sig_user user;
    struct conn *conn;
    int64_t gone_ms;
    bool *on_duty; /* per clinic index */
    struct consultation *current;
    uint64_t leg;                    /* the doctor's media leg, 0 none; it lives across patients */
    char token[SIG_TOKEN_CHARS + 1]; /* the session in use, checked at each request */
};

/* A media summary asked for at the end of a consultation, until the relay answers. */
struct summary_wait {
    struct summary_wait *next;
    uint64_t token; /* the request given to io.media_leg_summary, never 0 */
    uint64_t leg;
    char consultation[24];
    char clinic[SIG_ID_MAX];
    const char *role;                  /* "patient" or "doctor" (static) */
    char actor[SIG_USERNAME_MAX + 24]; /* the patient's consultation id, or the doctor's name */
    char source[ADDRESS_MAX];          /* their connection's address, "" when disconnected */
};

struct throttle {
    char key[SIG_USERNAME_MAX + ADDRESS_MAX];
    unsigned failures;
    int64_t last_ms;
    int64_t blocked_until_ms;
};

struct sig_hub {
    struct sig_hub_config cfg;
    struct sig_accounts *accounts;
    struct sig_hub_io io;
    struct base_logger *log;
    struct clinic *clinics;
    struct conn *conns;
    struct consultation *consultations;
    struct staff *staff;
    uint64_t next_seq;
    struct summary_wait *summaries; /* media summaries awaited, newest first */
    uint64_t next_summary_token;
    int64_t now_ms; /* of the event being handled */
    struct throttle throttle[THROTTLE_SLOTS];
    struct sig_hub_stats stats;
};

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

void sig_hub_config_defaults(struct sig_hub_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->grace_ms = 60 * 1000;
    cfg->session_ttl_ms = 12LL * 3600 * 1000;
    cfg->max_conns_per_address = 200;
    cfg->rate_per_second = 20;
    cfg->rate_burst = 40;
    cfg->appointment_ttl_ms = 7LL * 24 * 3600 * 1000;
}

static void random_id(char *out, size_t len)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[32];
    if (len > sizeof(raw) + 1)
        len = sizeof(raw) + 1;
    if (RAND_bytes(raw, (int)(len - 1)) != 1)
        abort(); /* no randomness: nothing here may continue with guessable ids */
    for (size_t i = 0; i + 1 < len; i++)
        out[i] = alphabet[raw[i] % 36];
    out[len - 1] = '\0';
}

static void sha256(const char *text, unsigned char out[32])
{
    unsigned int n = 32;
    EVP_Digest(text, strlen(text), out, &n, EVP_sha256(), NULL);
}

static struct clinic *find_clinic(struct sig_hub *hub, const char *id)
{
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++)
        if (strcmp(hub->clinics[i].cfg->id, id) == 0)
            return &hub->clinics[i];
    return NULL;
}

static unsigned clinic_index(struct sig_hub *hub, const struct clinic *c)
{
    return (unsigned)(c - hub->clinics);
}

static struct conn *find_conn(struct sig_hub *hub, void *transport)
{
    for (struct conn *c = hub->conns; c; c = c->next)
        if (c->transport == transport)
            return c;
    return NULL;
}

static struct consultation *find_consultation(struct sig_hub *hub, const char *id)
{
    for (struct consultation *c = hub->consultations; c; c = c->next)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static void send_json(struct sig_hub *hub, struct conn *conn, json_t *msg)
{
    if (conn && msg) {
        char *text = json_dumps(msg, JSON_COMPACT);
        if (text) {
            hub->io.send(hub->io.ctx, conn->transport, text, strlen(text));
            free(text);
        }
    }
    json_decref(msg);
}

char *sig_error_reply(const char *re_json, const char *code, const char *message)
{
    json_t *re = re_json ? json_loads(re_json, JSON_DECODE_ANY, NULL) : NULL;
    json_t *reply = json_pack("{s:s, s:o?, s:s, s:s}", "type", "error", "re", re, "code", code,
                              "message", message);
    char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    return text;
}

/* The request being handled: who sent it and the id to echo. */
struct request {
    struct conn *conn;
    json_t *msg;
    json_t *id; /* borrowed from msg; NULL before the id was read */
    const char *type;
};

static void reply(struct sig_hub *hub, struct request *rq, json_t *obj)
{
    if (!obj)
        return;
    json_object_set(obj, "re", rq->id ? rq->id : json_null());
    send_json(hub, rq->conn, obj);
}

/* Records an audit event about the request's sender. */
static void audit(struct sig_hub *hub, struct conn *conn, const char *type, const char *outcome,
                  const struct consultation *c, const char *clinic, json_t *detail)
{
    char *detail_text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    const char *role = "system", *actor = NULL;
    if (conn && conn->role == SIG_ROLE_PATIENT && conn->consultation) {
        role = "patient";
        actor = conn->consultation->id;
    } else if (conn && conn->staff) {
        role = sig_role_name(conn->staff->user.role);
        actor = conn->staff->user.username;
    } else if (conn) {
        role = "anonymous";
    }
    struct audit_event ev = {
        .type = type,
        .actor_role = role,
        .actor_id = actor,
        .clinic = clinic ? clinic : (c ? c->clinic->cfg->id : NULL),
        .consultation = c ? c->id : NULL,
        .outcome = outcome,
        .source = conn ? conn->address : NULL,
        .detail_json = detail_text,
    };
    if (hub->io.audit)
        hub->io.audit(hub->io.ctx, &ev);
    free(detail_text);
    json_decref(detail);
}

/*
 * Replaces every byte that is not part of a valid UTF-8 sequence with '?', in
 * place. Error messages quote the client's input (jansson's parse errors do
 * too, byte by byte, and vsnprintf may cut a character in half), and JSON
 * text must be valid UTF-8, or the reply could not be built at all.
 */
static void utf8_sanitize(char *s)
{
    static const uint32_t min_for_length[4] = {0, 0x80, 0x800, 0x10000};
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned n = *p < 0x80             ? 0
                     : (*p & 0xe0) == 0xc0 ? 1
                     : (*p & 0xf0) == 0xe0 ? 2
                     : (*p & 0xf8) == 0xf0 ? 3
                                           : 4;
        bool ok = n < 4;
        uint32_t cp = ok ? (uint32_t)(*p & (0x7f >> n)) : 0;
        for (unsigned i = 1; ok && i <= n; i++) {
            ok = (p[i] & 0xc0) == 0x80;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        /* No overlong forms, no surrogates, nothing past U+10FFFF: what jansson accepts. */
        if (ok && (cp < min_for_length[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
            ok = false;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

/* Sends an error reply. Denials (unauthorized, forbidden) are audited. */
static void fail(struct sig_hub *hub, struct request *rq, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct sig_hub *hub, struct request *rq, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    utf8_sanitize(message);
    hub->stats.errors++;
    json_t *err = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    reply(hub, rq, err);
    if (strcmp(code, "unauthorized") == 0 || strcmp(code, "forbidden") == 0)
        audit(hub, rq->conn, "access_denied", "denied", NULL, NULL,
              json_pack("{s:s?, s:s, s:s}", "request", rq->type, "code", code, "message", message));
}

/* Reads a required string field of at most `max` bytes; fails the request otherwise. */
static const char *need_string(struct sig_hub *hub, struct request *rq, const char *field,
                               size_t max)
{
    json_t *v = json_object_get(rq->msg, field);
    if (!v) {
        fail(hub, rq, "bad_request", "field \"%s\" is missing", field);
        return NULL;
    }
    if (!json_is_string(v)) {
        fail(hub, rq, "bad_request", "field \"%s\" must be a string", field);
        return NULL;
    }
    if (json_string_length(v) == 0 || json_string_length(v) > max) {
        fail(hub, rq, "bad_request", "field \"%s\" must be 1 to %zu bytes long", field, max);
        return NULL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        fail(hub, rq, "bad_request", "field \"%s\" contains a NUL character", field);
        return NULL;
    }
    return json_string_value(v);
}

/* An optional string field: NULL when absent; `*bad` set (and the request failed) when wrong. */
static const char *opt_string(struct sig_hub *hub, struct request *rq, const char *field,
                              size_t max, bool *bad)
{
    if (!json_object_get(rq->msg, field))
        return NULL;
    const char *s = need_string(hub, rq, field, max);
    if (!s)
        *bad = true;
    return s;
}

/* ------------------------------------------------------------------------- */
/* Queues                                                                     */
/* ------------------------------------------------------------------------- */

static int queue_order(const void *a, const void *b)
{
    const struct consultation *x = *(struct consultation *const *)a;
    const struct consultation *y = *(struct consultation *const *)b;
    if (x->priority != y->priority)
        return y->priority - x->priority; /* urgent lane first */
    if (x->enqueued_ms != y->enqueued_ms)
        return x->enqueued_ms < y->enqueued_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

/* The clinic's waiting consultations in queue order. Returns a new array (free()) of *n. */
static struct consultation **waiting_list(struct sig_hub *hub, struct clinic *cl, unsigned *n)
{
    *n = 0;
    struct consultation **list = malloc(sizeof(*list) * (cl->waiting ? cl->waiting : 1));
    if (!list)
        return NULL;
    for (struct consultation *c = hub->consultations; c; c = c->next)
        if (c->clinic == cl && c->state == SIG_STATE_WAITING && *n < cl->waiting)
            list[(*n)++] = c;
    qsort(list, *n, sizeof(*list), queue_order);
    return list;
}

static int64_t average_duration_ms(const struct clinic *cl)
{
    if (!cl->recent_count)
        return DEFAULT_DURATION_MS;
    int64_t sum = 0;
    for (unsigned i = 0; i < cl->recent_count; i++)
        sum += cl->recent_ms[i];
    return sum / cl->recent_count;
}

/* Seconds until a patient at `position` is likely seen; -1 when no doctor is on duty. */
static int64_t estimate_wait_s(const struct clinic *cl, unsigned position)
{
    if (!cl->on_duty)
        return -1;
    return (int64_t)position * average_duration_ms(cl) / cl->on_duty / 1000;
}

static json_t *estimate_json(int64_t s)
{
    return s < 0 ? json_null() : json_integer(s);
}

static json_t *queue_snapshot(struct sig_hub *hub, struct clinic *cl)
{
    unsigned n;
    struct consultation **list = waiting_list(hub, cl, &n);
    json_t *patients = json_array();
    for (unsigned i = 0; list && i < n; i++) {
        struct consultation *c = list[i];
        json_array_append_new(patients,
                              json_pack("{s:s, s:s, s:s?, s:s, s:I, s:b, s:b}", "consultation",
                                        c->id, "name", c->name, "patient_ref",
                                        c->patient_ref[0] ? c->patient_ref : NULL, "priority",
                                        c->priority ? "urgent" : "routine", "waited_s",
                                        (json_int_t)((hub->now_ms - c->joined_ms) / 1000), "ready",
                                        c->ready, "connected", c->patient != NULL));
    }
    free(list);
    return json_pack("{s:s, s:s, s:o, s:i}", "type", "queue", "clinic", cl->cfg->id, "patients",
                     patients, "doctors_on_duty", cl->on_duty);
}

/*
 * After any change to a clinic's queue or staffing: tell each waiting patient
 * whose position or estimate moved, and send each doctor on duty the new queue.
 */
static void clinic_changed(struct sig_hub *hub, struct clinic *cl)
{
    unsigned n;
    struct consultation **list = waiting_list(hub, cl, &n);
    for (unsigned i = 0; list && i < n; i++) {
        struct consultation *c = list[i];
        int64_t est = estimate_wait_s(cl, i + 1);
        if (c->sent_position == i + 1 && c->sent_estimate_s == est)
            continue;
        c->sent_position = i + 1;
        c->sent_estimate_s = est;
        if (c->patient)
            send_json(hub, c->patient,
                      json_pack("{s:s, s:s, s:i, s:o, s:i}", "type", "position", "consultation",
                                c->id, "position", i + 1, "estimated_wait_s", estimate_json(est),
                                "doctors_on_duty", cl->on_duty));
    }
    free(list);
    unsigned idx = clinic_index(hub, cl);
    for (struct staff *s = hub->staff; s; s = s->next)
        if (s->conn && s->on_duty[idx])
            send_json(hub, s->conn, queue_snapshot(hub, cl));
}

/* Position of a waiting consultation (1-based), 0 when not waiting. */
static unsigned position_of(struct sig_hub *hub, struct consultation *target)
{
    if (target->state != SIG_STATE_WAITING)
        return 0;
    unsigned n, pos = 0;
    struct consultation **list = waiting_list(hub, target->clinic, &n);
    for (unsigned i = 0; list && i < n; i++)
        if (list[i] == target)
            pos = i + 1;
    free(list);
    return pos;
}

/* ------------------------------------------------------------------------- */
/* Consultation lifecycle                                                     */
/* ------------------------------------------------------------------------- */

static void set_state(struct consultation *c, enum sig_state to)
{
    if (c->state == SIG_STATE_WAITING && to != SIG_STATE_WAITING)
        c->clinic->waiting--;
    if (c->state != SIG_STATE_WAITING && to == SIG_STATE_WAITING)
        c->clinic->waiting++;
    c->state = to;
    c->sent_position = 0;
    if (to != SIG_STATE_IN_CONSULTATION)
        c->media_lost_ms = 0; /* only a consultation in progress waits for media */
}

static struct consultation *consultation_new(struct sig_hub *hub, struct clinic *cl,
                                             const char *name, const char *patient_ref,
                                             int priority)
{
    struct consultation *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    memcpy(c->id, "c_", 2);
    random_id(c->id + 2, sizeof(c->id) - 2);
    c->clinic = cl;
    c->state = SIG_STATE_WAITING;
    cl->waiting++;
    c->priority = priority;
    c->enqueued_ms = c->joined_ms = hub->now_ms;
    c->seq = hub->next_seq++;
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->patient_ref, sizeof(c->patient_ref), "%s", patient_ref ? patient_ref : "");
    c->sent_estimate_s = -2;
    c->next = hub->consultations;
    hub->consultations = c;
    return c;
}

static void unlink_consultation(struct sig_hub *hub, struct consultation *target)
{
    for (struct consultation **p = &hub->consultations; *p; p = &(*p)->next) {
        if (*p == target) {
            *p = target->next;
            return;
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Media legs                                                                 */
/* ------------------------------------------------------------------------- */

static void media_release(struct sig_hub *hub, uint64_t *leg)
{
    if (*leg && hub->io.media_release)
        hub->io.media_release(hub->io.ctx, *leg);
    *leg = 0;
}

/*
 * The media summary's interval starts now for the consultation's legs it has
 * not counted yet: a patient's self-test and a doctor's earlier patients are
 * not this consultation's. A leg kept across a renegotiation keeps counting.
 */
static void media_count_from_now(struct sig_hub *hub, struct consultation *c)
{
    uint64_t legs[2] = {c->patient_leg, c->doctor ? c->doctor->leg : 0};
    for (unsigned i = 0; i < 2 && hub->io.media_leg_summary; i++) {
        if (!legs[i] || legs[i] == c->baselined[i])
            continue;
        c->baselined[i] = legs[i];
        /* A full mailbox only lets a little more into the interval: nothing to undo. */
        hub->io.media_leg_summary(hub->io.ctx, legs[i], 0);
    }
}

/* Rounds a non-negative figure to two decimals for the audit detail (negative ones: as is). */
static double two_decimals(double x)
{
    return x < 0 ? x : (double)(int64_t)(x * 100.0 + 0.5) / 100.0;
}

/* Records the media_summary event of one participant; `detail` is taken. */
static void record_summary(struct sig_hub *hub, const struct summary_wait *sw, const char *outcome,
                           json_t *detail)
{
    /* Nine significant digits print the two-decimal figures exactly (0.23, not 0.2300000001). */
    char *text = detail ? json_dumps(detail, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    struct audit_event ev = {
        .type = "media_summary",
        .actor_role = sw->role,
        .actor_id = sw->actor,
        .clinic = sw->clinic,
        .consultation = sw->consultation,
        .outcome = outcome,
        .source = sw->source[0] ? sw->source : NULL,
        .detail_json = text,
    };
    if (hub->io.audit)
        hub->io.audit(hub->io.ctx, &ev);
    free(text);
    json_decref(detail);
}

/*
 * Asks the relay what one participant's leg did during the consultation that
 * is ending (its answer comes through sig_hub_media_summary()); when the
 * question cannot be asked, the failed event is recorded at once.
 */
static void media_summary_request(struct sig_hub *hub, const struct consultation *c,
                                  bool doctor_side)
{
    struct summary_wait sw = {.role = doctor_side ? "doctor" : "patient"};
    const struct conn *conn = doctor_side ? c->doctor->conn : c->patient;
    sw.leg = doctor_side ? c->doctor->leg : c->patient_leg;
    snprintf(sw.consultation, sizeof(sw.consultation), "%s", c->id);
    snprintf(sw.clinic, sizeof(sw.clinic), "%s", c->clinic->cfg->id);
    snprintf(sw.actor, sizeof(sw.actor), "%s", doctor_side ? c->doctor->user.username : c->id);
    snprintf(sw.source, sizeof(sw.source), "%s", conn ? conn->address : "");
    if (!sw.leg) { /* never had one, or it ended during the consultation and was released */
        record_summary(hub, &sw, "failed",
                       json_pack("{s:s}", "leg", c->baselined[doctor_side] ? "gone" : "none"));
        return;
    }
    sw.token = ++hub->next_summary_token;
    struct summary_wait *kept = malloc(sizeof(*kept));
    int rc = kept ? hub->io.media_leg_summary(hub->io.ctx, sw.leg, sw.token) : -ENOMEM;
    if (rc != 0) {
        free(kept);
        const char *why = rc == -ESHUTDOWN ? "server_shutdown"
                          : rc == -EAGAIN  ? "relay_busy"
                          : rc == -ENOMEM  ? "out_of_memory"
                                           : "error";
        record_summary(hub, &sw, "failed", json_pack("{s:s, s:s}", "leg", "gone", "reason", why));
        return;
    }
    *kept = sw;
    kept->next = hub->summaries;
    hub->summaries = kept;
}

/*
 * Both participants' media summaries of a consultation that was in progress
 * (`was`) and is ending, once, before its legs are unlinked, released or
 * handed on (the worker takes the requests in that order).
 */
static void media_summaries(struct sig_hub *hub, struct consultation *c, enum sig_state was)
{
    if (was != SIG_STATE_IN_CONSULTATION || c->summarised || !hub->io.media_leg_summary)
        return;
    c->summarised = true;
    media_summary_request(hub, c, false);
    if (c->doctor)
        media_summary_request(hub, c, true);
}

/*
 * Starts the relay of a consultation in progress once both legs exist. Legs
 * of one clinic share a worker; a doctor whose leg was placed for another
 * clinic is asked to offer again, which places it with this patient.
 */
static void media_connect(struct sig_hub *hub, struct consultation *c)
{
    struct staff *d = c->doctor;
    if (c->state != SIG_STATE_IN_CONSULTATION)
        return;
    media_count_from_now(hub, c); /* each leg as it joins, linked yet or not */
    if (!hub->io.media_link || !c->patient_leg || !d || !d->leg)
        return;
    if (hub->io.media_link(hub->io.ctx, c->patient_leg, d->leg) == -EXDEV && d->conn)
        send_json(hub, d->conn,
                  json_pack("{s:s, s:s, s:s, s:s}", "type", "media", "state", "reoffer",
                            "consultation", c->id, "message",
                            "send a new offer: this patient's media is served elsewhere"));
}

/* A patient not (yet) with a doctor sees and hears themselves through the relay. */
static void media_self_test(struct sig_hub *hub, struct consultation *c)
{
    if (hub->io.media_link && c->patient_leg &&
        (c->state == SIG_STATE_WAITING || c->state == SIG_STATE_CALLED))
        hub->io.media_link(hub->io.ctx, c->patient_leg, c->patient_leg);
}

/* The doctor's leg stops relaying this consultation (it stays up for the next patient). */
static void media_disconnect(struct sig_hub *hub, struct consultation *c)
{
    if (c->doctor && c->doctor->leg && hub->io.media_unlink)
        hub->io.media_unlink(hub->io.ctx, c->doctor->leg);
}

/*
 * Ends a consultation with `reason` (the transition must be allowed), tells
 * both participants, records it, and frees it. `by` is the connection that
 * caused it, NULL for the server itself.
 */
static void end_consultation(struct sig_hub *hub, struct consultation *c,
                             enum sig_end_reason reason, struct conn *by)
{
    enum sig_state to;
    if (sig_state_next(c->state, SIG_EVENT_END, reason, &to) != 0)
        return;
    enum sig_state was = c->state;
    set_state(c, to);
    hub->stats.consultations_ended++;
    int64_t duration = c->started_ms ? hub->now_ms - c->started_ms : 0;
    if (reason == SIG_END_COMPLETED) {
        struct clinic *cl = c->clinic;
        cl->recent_ms[cl->recent_next] = duration;
        cl->recent_next = (cl->recent_next + 1) % RECENT_DURATIONS;
        if (cl->recent_count < RECENT_DURATIONS)
            cl->recent_count++;
    }
    json_t *ended = json_pack("{s:s, s:s, s:s}", "type", "ended", "consultation", c->id, "reason",
                              sig_end_reason_name(reason));
    if (c->patient)
        send_json(hub, c->patient, json_deep_copy(ended));
    if (c->doctor && c->doctor->conn)
        send_json(hub, c->doctor->conn, json_deep_copy(ended));
    json_decref(ended);
    audit(
        hub, by, "consultation_ended", "ok", c, NULL,
        json_pack("{s:s, s:s, s:I, s:I, s:s?}", "reason", sig_end_reason_name(reason), "from",
                  sig_state_name(was), "waited_s",
                  (json_int_t)(((c->called_ms ? c->called_ms : hub->now_ms) - c->joined_ms) / 1000),
                  "duration_s", (json_int_t)(duration / 1000), "doctor",
                  c->doctor ? c->doctor->user.username : NULL));
    media_summaries(hub, c, was);
    if (was == SIG_STATE_IN_CONSULTATION)
        media_disconnect(hub, c);
    media_release(hub, &c->patient_leg);
    if (c->doctor && c->doctor->current == c)
        c->doctor->current = NULL;
    if (c->patient) {
        c->patient->consultation = NULL;
        c->patient->role = SIG_ROLE_NONE; /* may join again */
    }
    unlink_consultation(hub, c);
    /* Positions move when a waiting patient goes, and estimates when a duration is known. */
    if (was == SIG_STATE_WAITING || reason == SIG_END_COMPLETED)
        clinic_changed(hub, c->clinic);
    free(c);
}

static void do_call(struct sig_hub *hub, struct request *rq, struct consultation *c)
{
    struct staff *doc = rq->conn->staff;
    enum sig_state to;
    if (sig_state_next(c->state, SIG_EVENT_CALL, SIG_END_NONE, &to) != 0) {
        fail(hub, rq, "conflict", "consultation %s is %s, not waiting", c->id,
             sig_state_name(c->state));
        return;
    }
    set_state(c, to);
    c->doctor = doc;
    c->called_ms = hub->now_ms;
    doc->current = c;
    reply(hub, rq,
          json_pack("{s:s, s:s, s:s, s:{s:s, s:s?, s:s, s:b, s:b}, s:I}", "type", "called",
                    "consultation", c->id, "clinic", c->clinic->cfg->id, "patient", "name", c->name,
                    "patient_ref", c->patient_ref[0] ? c->patient_ref : NULL, "priority",
                    c->priority ? "urgent" : "routine", "ready", c->ready, "connected",
                    c->patient != NULL, "waited_s",
                    (json_int_t)((hub->now_ms - c->joined_ms) / 1000)));
    if (c->patient)
        send_json(hub, c->patient,
                  json_pack("{s:s, s:s, s:{s:s}}", "type", "called", "consultation", c->id,
                            "doctor", "name", doc->user.username));
    audit(hub, rq->conn, "consultation_called", "ok", c, NULL,
          json_pack("{s:I}", "waited_s", (json_int_t)((hub->now_ms - c->joined_ms) / 1000)));
    clinic_changed(hub, c->clinic);
}

/* ------------------------------------------------------------------------- */
/* Sign-in throttling                                                         */
/* ------------------------------------------------------------------------- */

static struct throttle *throttle_slot(struct sig_hub *hub, const char *key, bool create)
{
    struct throttle *free_slot = NULL, *oldest = &hub->throttle[0];
    for (unsigned i = 0; i < THROTTLE_SLOTS; i++) {
        struct throttle *t = &hub->throttle[i];
        if (t->key[0] && hub->now_ms - t->last_ms > THROTTLE_FORGET_MS &&
            hub->now_ms >= t->blocked_until_ms)
            t->key[0] = '\0';
        if (t->key[0] && strcmp(t->key, key) == 0)
            return t;
        if (!t->key[0] && !free_slot)
            free_slot = t;
        if (t->last_ms < oldest->last_ms)
            oldest = t;
    }
    if (!create)
        return NULL;
    struct throttle *t = free_slot ? free_slot : oldest;
    memset(t, 0, sizeof(*t));
    snprintf(t->key, sizeof(t->key), "%s", key);
    return t;
}

/* Milliseconds until `key` may try again; 0 when it may now. */
static int64_t throttle_wait(struct sig_hub *hub, const char *key)
{
    struct throttle *t = throttle_slot(hub, key, false);
    return t && t->blocked_until_ms > hub->now_ms ? t->blocked_until_ms - hub->now_ms : 0;
}

/* After a failure: 1 s, 2 s, 4 s ... up to a minute once the free failures are spent. */
static void throttle_failure(struct sig_hub *hub, const char *key)
{
    struct throttle *t = throttle_slot(hub, key, true);
    t->failures++;
    t->last_ms = hub->now_ms;
    if (t->failures > THROTTLE_FREE_FAILS) {
        unsigned shift = t->failures - THROTTLE_FREE_FAILS - 1;
        int64_t delay = shift >= 6 ? 60000 : 1000LL << shift;
        t->blocked_until_ms = hub->now_ms + delay;
    }
}

static void throttle_forget(struct sig_hub *hub, const char *key)
{
    struct throttle *t = throttle_slot(hub, key, false);
    if (t)
        memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------- */
/* Staff presence                                                             */
/* ------------------------------------------------------------------------- */

static json_t *user_json(const struct sig_user *u)
{
    json_t *clinics = json_array();
    for (unsigned i = 0; i < u->clinic_count; i++)
        json_array_append_new(clinics, json_string(u->clinics[i]));
    return json_pack("{s:s, s:s, s:o, s:b}", "username", u->username, "role",
                     sig_role_name(u->role), "clinics", clinics, "all_clinics", u->all_clinics);
}

static bool may_see_clinic(const struct sig_user *u, const struct clinic *cl)
{
    return sig_user_has_clinic(u, cl->cfg->id);
}

/* Attaches a signed-in account to `conn`, taking over an earlier connection of the same account. */
static struct staff *staff_attach(struct sig_hub *hub, struct conn *conn,
                                  const struct sig_user *user, const char *token)
{
    struct staff *s;
    for (s = hub->staff; s; s = s->next)
        if (s->user.id == user->id)
            break;
    if (!s) {
        s = calloc(1, sizeof(*s));
        bool *duty = calloc(hub->cfg.clinic_count ? hub->cfg.clinic_count : 1, sizeof(bool));
        if (!s || !duty) {
            free(s);
            free(duty);
            return NULL;
        }
        s->on_duty = duty;
        s->next = hub->staff;
        hub->staff = s;
    } else if (s->conn && s->conn != conn) {
        struct conn *old = s->conn;
        old->staff = NULL;
        old->role = SIG_ROLE_NONE;
        hub->io.close(hub->io.ctx, old->transport, 4001, "signed in on another connection");
    }
    s->user = *user;
    snprintf(s->token, sizeof(s->token), "%s", token);
    s->conn = conn;
    s->gone_ms = 0;
    conn->staff = s;
    conn->role = user->role;
    if (s->current) {
        struct consultation *c = s->current;
        if (c->patient)
            send_json(hub, c->patient,
                      json_pack("{s:s, s:s, s:s, s:s}", "type", "peer", "consultation", c->id,
                                "who", "doctor", "state", "connected"));
    }
    return s;
}

static void staff_set_duty(struct sig_hub *hub, struct staff *s, struct clinic *cl, bool on)
{
    unsigned idx = clinic_index(hub, cl);
    if (s->on_duty[idx] == on)
        return;
    s->on_duty[idx] = on;
    if (on)
        cl->on_duty++;
    else
        cl->on_duty--;
    clinic_changed(hub, cl);
}

/* Removes a staff presence for good: off duty everywhere, current consultation resolved. */
static void staff_remove(struct sig_hub *hub, struct staff *s, enum sig_end_reason if_running)
{
    if (s->current) {
        struct consultation *c = s->current;
        if (c->state == SIG_STATE_CALLED) {
            /* Not yet started: the patient goes back to their place in the queue. */
            enum sig_state to;
            if (sig_state_next(c->state, SIG_EVENT_RETURN, SIG_END_NONE, &to) == 0) {
                set_state(c, to);
                c->doctor = NULL;
                s->current = NULL;
                media_self_test(hub, c);
                if (c->patient)
                    send_json(hub, c->patient,
                              json_pack("{s:s, s:s}", "type", "returned", "consultation", c->id));
                audit(hub, NULL, "returned_to_queue", "ok", c, NULL,
                      json_pack("{s:s}", "why", "doctor left"));
                clinic_changed(hub, c->clinic);
            }
        } else {
            end_consultation(hub, c, if_running, NULL);
        }
    }
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++)
        staff_set_duty(hub, s, &hub->clinics[i], false);
    for (struct consultation *c = hub->consultations; c; c = c->next)
        if (c->doctor == s)
            c->doctor = NULL;
    for (struct staff **p = &hub->staff; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    if (s->conn) {
        s->conn->staff = NULL;
        s->conn->role = SIG_ROLE_NONE;
    }
    media_release(hub, &s->leg);
    free(s->on_duty);
    free(s);
}

/* ------------------------------------------------------------------------- */
/* Requests: anyone                                                           */
/* ------------------------------------------------------------------------- */

static void on_ping(struct sig_hub *hub, struct request *rq)
{
    reply(hub, rq, json_pack("{s:s}", "type", "pong"));
}

/* A display name: 1-200 bytes of UTF-8 (jansson checked the encoding), no control characters. */
static bool name_is_acceptable(const char *name)
{
    bool visible = false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p != ' ')
            visible = true;
    }
    return visible;
}

static void joined_reply(struct sig_hub *hub, struct request *rq, struct consultation *c,
                         const char *type, const char *resume_token)
{
    unsigned pos = position_of(hub, c);
    int64_t est = pos ? estimate_wait_s(c->clinic, pos) : -1;
    c->sent_position = pos;
    c->sent_estimate_s = est;
    json_t *r = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:i, s:o, s:i, s:I, s:b}", "type",
                          type, "consultation", c->id, "state", sig_state_name(c->state), "clinic",
                          "id", c->clinic->cfg->id, "name_en", c->clinic->cfg->name_en, "name_ar",
                          c->clinic->cfg->name_ar, "position", pos, "estimated_wait_s",
                          estimate_json(est), "doctors_on_duty", c->clinic->on_duty, "grace_s",
                          (json_int_t)(hub->cfg.grace_ms / 1000), "urgent", c->priority != 0);
    if (resume_token)
        json_object_set_new(r, "resume_token", json_string(resume_token));
    if (c->doctor)
        json_object_set_new(r, "doctor", json_pack("{s:s}", "name", c->doctor->user.username));
    reply(hub, rq, r);
}

static void on_join(struct sig_hub *hub, struct request *rq)
{
    bool bad = false;
    const char *name = need_string(hub, rq, "name", NAME_MAX_BYTES);
    if (!name)
        return;
    const char *clinic_id = opt_string(hub, rq, "clinic", SIG_ID_MAX - 1, &bad);
    const char *appointment = opt_string(hub, rq, "appointment", 128, &bad);
    if (bad)
        return;
    if (!name_is_acceptable(name))
        return fail(hub, rq, "bad_request",
                    "field \"name\" must have a visible character and no control characters");
    if (json_object_get(rq->msg, "priority"))
        return fail(hub, rq, "forbidden", "only staff or an appointment set a priority");
    if (!clinic_id && !appointment)
        return fail(hub, rq, "bad_request", "give field \"clinic\" or \"appointment\"");

    struct sig_appointment appt;
    memset(&appt, 0, sizeof(appt));
    if (appointment) {
        int rc = hub->accounts ? sig_accounts_redeem_appointment(hub->accounts, appointment,
                                                                 base_wall_ms(), clinic_id, &appt)
                               : -ENOENT;
        if (rc == -EXDEV)
            return fail(hub, rq, "bad_request", "the appointment is for clinic \"%s\"",
                        appt.clinic);
        if (rc != 0) {
            audit(hub, rq->conn, "appointment_refused", "denied", NULL, clinic_id, NULL);
            return fail(hub, rq, "not_found", "the appointment is unknown, used or expired");
        }
        clinic_id = appt.clinic;
    }
    struct clinic *cl = find_clinic(hub, clinic_id);
    if (!cl)
        return fail(hub, rq, "not_found", "no clinic \"%s\"", clinic_id);
    if (!sig_clinic_is_open(cl->cfg, base_wall_ms() / 1000))
        return fail(hub, rq, "clinic_closed", "clinic \"%s\" is closed now", clinic_id);
    if (cl->waiting >= cl->cfg->queue_limit) {
        audit(hub, rq->conn, "queue_full", "denied", NULL, cl->cfg->id, NULL);
        return fail(hub, rq, "queue_full", "clinic \"%s\" has %u patients waiting, its limit",
                    clinic_id, cl->cfg->queue_limit);
    }
    struct consultation *c =
        consultation_new(hub, cl, name, appt.patient_ref, appt.priority ? 1 : 0);
    if (!c)
        return fail(hub, rq, "internal", "out of memory");
    char token[SIG_TOKEN_CHARS + 1];
    if (sig_random_token(token) != 0) {
        end_consultation(hub, c, SIG_END_ABANDONED, NULL);
        return fail(hub, rq, "internal", "no randomness for a resume token");
    }
    sha256(token, c->resume_hash);
    c->patient = rq->conn;
    rq->conn->role = SIG_ROLE_PATIENT;
    rq->conn->consultation = c;
    joined_reply(hub, rq, c, "joined", token);
    OPENSSL_cleanse(token, sizeof(token));
    audit(hub, rq->conn, "queue_joined", "ok", c, NULL,
          json_pack("{s:s, s:s?, s:s, s:s}", "name", c->name, "patient_ref",
                    c->patient_ref[0] ? c->patient_ref : NULL, "priority",
                    c->priority ? "urgent" : "routine", "via",
                    appointment ? "appointment" : "link"));
    clinic_changed(hub, cl);
}

static void on_resume(struct sig_hub *hub, struct request *rq)
{
    const char *token = need_string(hub, rq, "resume_token", 128);
    if (!token)
        return;
    unsigned char hash[32];
    sha256(token, hash);
    struct consultation *c;
    for (c = hub->consultations; c; c = c->next)
        if (CRYPTO_memcmp(c->resume_hash, hash, 32) == 0)
            break;
    if (!c) {
        audit(hub, rq->conn, "resume_refused", "denied", NULL, NULL, NULL);
        return fail(hub, rq, "not_found", "no open consultation has this resume token");
    }
    if (c->patient && c->patient != rq->conn) {
        struct conn *old = c->patient;
        old->consultation = NULL;
        old->role = SIG_ROLE_NONE;
        hub->io.close(hub->io.ctx, old->transport, 4001, "resumed on another connection");
    }
    bool was_gone = c->patient_gone_ms != 0;
    c->patient = rq->conn;
    c->patient_gone_ms = 0;
    rq->conn->role = SIG_ROLE_PATIENT;
    rq->conn->consultation = c;
    joined_reply(hub, rq, c, "resumed", NULL);
    audit(hub, rq->conn, "participant_resumed", "ok", c, NULL,
          json_pack("{s:s, s:b}", "state", sig_state_name(c->state), "after_drop", was_gone));
    if (c->doctor && c->doctor->conn)
        send_json(hub, c->doctor->conn,
                  json_pack("{s:s, s:s, s:s, s:s}", "type", "peer", "consultation", c->id, "who",
                            "patient", "state", "connected"));
    clinic_changed(hub, c->clinic);
}

/* `token` is the session's; it goes back to the client only when `show_token`. */
static void signed_in(struct sig_hub *hub, struct request *rq, const struct sig_user *user,
                      const char *type, const char *token, bool show_token)
{
    if (!staff_attach(hub, rq->conn, user, token))
        return fail(hub, rq, "internal", "out of memory");
    json_t *r = json_pack("{s:s, s:o, s:I}", "type", type, "user", user_json(user), "expires_in_s",
                          (json_int_t)(hub->cfg.session_ttl_ms / 1000));
    if (show_token)
        json_object_set_new(r, "token", json_string(token));
    /* The clinics the account may see, named in both languages, so that pages can show them. */
    json_t *clinics = json_array();
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++)
        if (may_see_clinic(user, &hub->clinics[i]))
            json_array_append_new(clinics,
                                  json_pack("{s:s, s:s, s:s}", "id", hub->clinics[i].cfg->id,
                                            "name_en", hub->clinics[i].cfg->name_en, "name_ar",
                                            hub->clinics[i].cfg->name_ar));
    json_object_set_new(r, "clinics", clinics);
    /* A doctor back on a new connection finds the consultation they had open. */
    struct staff *s = rq->conn->staff;
    struct consultation *c = s ? s->current : NULL;
    if (c)
        json_object_set_new(r, "current",
                            json_pack("{s:s, s:s, s:s, s:{s:s, s:s?, s:s}}", "consultation", c->id,
                                      "state", sig_state_name(c->state), "clinic",
                                      c->clinic->cfg->id, "patient", "name", c->name, "patient_ref",
                                      c->patient_ref[0] ? c->patient_ref : NULL, "priority",
                                      c->priority ? "urgent" : "routine"));
    reply(hub, rq, r);
}

/*
 * Checks a password with throttling per account and per address. Returns
 * SIG_LOGIN_OK with the token and user, or another result with `*retry_ms`
 * set when throttled (then no password was checked).
 */
static enum sig_login_result checked_login(struct sig_hub *hub, const char *address,
                                           const char *username, const char *password, char *token,
                                           struct sig_user *user, int64_t *retry_ms)
{
    char user_key[SIG_USERNAME_MAX + 4], addr_key[ADDRESS_MAX + 4];
    snprintf(user_key, sizeof(user_key), "u:%s", username);
    snprintf(addr_key, sizeof(addr_key), "a:%s", address);
    int64_t wait_user = throttle_wait(hub, user_key), wait_addr = throttle_wait(hub, addr_key);
    *retry_ms = wait_user > wait_addr ? wait_user : wait_addr;
    if (*retry_ms) {
        struct audit_event ev = {.type = "sign_in_throttled",
                                 .actor_role = "anonymous",
                                 .actor_id = username,
                                 .outcome = "denied",
                                 .source = address};
        if (hub->io.audit)
            hub->io.audit(hub->io.ctx, &ev);
        return SIG_LOGIN_ERROR;
    }
    enum sig_login_result r =
        hub->accounts ? sig_accounts_login(hub->accounts, username, password, base_wall_ms(),
                                           hub->cfg.session_ttl_ms, token, user)
                      : SIG_LOGIN_ERROR;
    struct audit_event ev = {
        .type = r == SIG_LOGIN_OK ? "sign_in" : "sign_in_failed",
        .actor_role = r == SIG_LOGIN_OK ? sig_role_name(user->role) : "anonymous",
        .actor_id = username,
        .outcome = r == SIG_LOGIN_OK ? "ok" : "failed",
        .source = address,
        .detail_json = r == SIG_LOGIN_DISABLED ? "{\"why\":\"account disabled\"}" : NULL};
    if (hub->io.audit)
        hub->io.audit(hub->io.ctx, &ev);
    if (r == SIG_LOGIN_OK) {
        throttle_forget(hub, user_key);
    } else if (r != SIG_LOGIN_ERROR) {
        throttle_failure(hub, user_key);
        throttle_failure(hub, addr_key);
    }
    return r;
}

static void on_login(struct sig_hub *hub, struct request *rq)
{
    const char *username = need_string(hub, rq, "username", SIG_USERNAME_MAX - 1);
    const char *password = username ? need_string(hub, rq, "password", SIG_PASSWORD_MAX) : NULL;
    if (!password)
        return;
    char token[SIG_TOKEN_CHARS + 1];
    struct sig_user user;
    int64_t retry_ms;
    enum sig_login_result r =
        checked_login(hub, rq->conn->address, username, password, token, &user, &retry_ms);
    if (retry_ms) {
        hub->stats.rate_limited++;
        return fail(hub, rq, "rate_limited", "too many failed sign-ins; try again in %lld s",
                    (long long)((retry_ms + 999) / 1000));
    }
    if (r == SIG_LOGIN_ERROR)
        return fail(hub, rq, "internal", "sign-in is not available");
    if (r != SIG_LOGIN_OK)
        return fail(hub, rq, "unauthorized", "wrong username or password, or account disabled");
    signed_in(hub, rq, &user, "signed_in", token, true);
    OPENSSL_cleanse(token, sizeof(token));
}

static void on_auth(struct sig_hub *hub, struct request *rq)
{
    const char *token = need_string(hub, rq, "token", 128);
    if (!token)
        return;
    struct sig_user user;
    if (!hub->accounts || sig_accounts_session(hub->accounts, token, base_wall_ms(), &user))
        return fail(hub, rq, "unauthorized", "the session token is unknown or expired");
    signed_in(hub, rq, &user, "authenticated", token, false); /* first: the audit names them */
    audit(hub, rq->conn, "session_resumed", "ok", NULL, NULL,
          json_pack("{s:s}", "username", user.username));
}

/* ------------------------------------------------------------------------- */
/* Requests: patients                                                         */
/* ------------------------------------------------------------------------- */

/* The patient's own consultation; a "consultation" field naming another one is forbidden. */
static struct consultation *own_consultation(struct sig_hub *hub, struct request *rq)
{
    struct consultation *c = rq->conn->consultation;
    json_t *named = json_object_get(rq->msg, "consultation");
    if (named && (!json_is_string(named) || strcmp(json_string_value(named), c->id) != 0)) {
        fail(hub, rq, "forbidden", "a patient may act only on their own consultation");
        return NULL;
    }
    return c;
}

static void on_leave(struct sig_hub *hub, struct request *rq)
{
    struct consultation *c = own_consultation(hub, rq);
    if (!c)
        return;
    reply(hub, rq, json_pack("{s:s, s:s}", "type", "left", "consultation", c->id));
    end_consultation(hub, c, SIG_END_PATIENT_LEFT, rq->conn);
}

static void on_accept(struct sig_hub *hub, struct request *rq)
{
    struct consultation *c = own_consultation(hub, rq);
    if (!c)
        return;
    enum sig_state to;
    if (sig_state_next(c->state, SIG_EVENT_ACCEPT, SIG_END_NONE, &to) != 0)
        return fail(hub, rq, "conflict", "consultation is %s; only a called patient can accept",
                    sig_state_name(c->state));
    set_state(c, to);
    c->started_ms = hub->now_ms;
    json_t *started =
        json_pack("{s:s, s:s}", "type", "consultation_started", "consultation", c->id);
    reply(hub, rq, json_deep_copy(started));
    if (c->doctor && c->doctor->conn)
        send_json(hub, c->doctor->conn, json_incref(started));
    json_decref(started);
    audit(hub, rq->conn, "consultation_started", "ok", c, NULL,
          json_pack("{s:s?}", "doctor", c->doctor ? c->doctor->user.username : NULL));
    media_connect(hub, c);
}

/* The patient's readiness changed: doctors watching the queue, or the calling doctor, hear. */
static void readiness_changed(struct sig_hub *hub, struct consultation *c)
{
    unsigned idx = clinic_index(hub, c->clinic);
    for (struct staff *s = hub->staff; s; s = s->next)
        if (s->conn && s->on_duty[idx] && c->state == SIG_STATE_WAITING)
            send_json(hub, s->conn, queue_snapshot(hub, c->clinic));
    if (c->doctor && c->doctor->conn && c->state != SIG_STATE_WAITING)
        send_json(hub, c->doctor->conn,
                  json_pack("{s:s, s:s, s:b}", "type", "peer_devices", "consultation", c->id,
                            "ready", c->ready));
}

static void on_device_status(struct sig_hub *hub, struct request *rq)
{
    struct consultation *c = own_consultation(hub, rq);
    if (!c)
        return;
    json_t *ready = json_object_get(rq->msg, "ready");
    if (!json_is_boolean(ready))
        return fail(hub, rq, "bad_request", "field \"ready\" must be true or false");
    c->ready = json_is_true(ready);
    reply(hub, rq, json_pack("{s:s, s:b}", "type", "device_status", "ready", c->ready));
    readiness_changed(hub, c);
}

/* ------------------------------------------------------------------------- */
/* Requests: doctors and admins                                               */
/* ------------------------------------------------------------------------- */

/* The clinic named by `field`, checked against the sender's scope (and duty, if asked). */
static struct clinic *staff_clinic(struct sig_hub *hub, struct request *rq, const char *field,
                                   bool need_duty)
{
    const char *id = need_string(hub, rq, field, SIG_ID_MAX - 1);
    if (!id)
        return NULL;
    struct clinic *cl = find_clinic(hub, id);
    struct staff *s = rq->conn->staff;
    if (!cl) {
        fail(hub, rq, "not_found", "no clinic \"%s\"", id);
        return NULL;
    }
    if (!may_see_clinic(&s->user, cl)) {
        fail(hub, rq, "forbidden", "%s \"%s\" has no access to clinic \"%s\"",
             sig_role_name(s->user.role), s->user.username, id);
        return NULL;
    }
    if (need_duty && !s->on_duty[clinic_index(hub, cl)]) {
        fail(hub, rq, "forbidden", "not on duty for clinic \"%s\"", id);
        return NULL;
    }
    return cl;
}

static bool need_doctor(struct sig_hub *hub, struct request *rq)
{
    if (rq->conn->staff->user.role == SIG_ROLE_DOCTOR)
        return true;
    fail(hub, rq, "forbidden", "only doctors take patients");
    return false;
}

/* A consultation named in the request that this doctor may act on. */
static struct consultation *doctor_consultation(struct sig_hub *hub, struct request *rq,
                                                bool must_be_current)
{
    const char *id = need_string(hub, rq, "consultation", sizeof(((struct consultation *)0)->id));
    if (!id)
        return NULL;
    struct consultation *c = find_consultation(hub, id);
    struct staff *s = rq->conn->staff;
    if (!c) {
        fail(hub, rq, "not_found", "no open consultation \"%s\"", id);
        return NULL;
    }
    if (!may_see_clinic(&s->user, c->clinic) || !s->on_duty[clinic_index(hub, c->clinic)]) {
        fail(hub, rq, "forbidden", "not on duty for clinic \"%s\"", c->clinic->cfg->id);
        return NULL;
    }
    if (must_be_current && s->current != c) {
        if (c->doctor && c->doctor != s)
            fail(hub, rq, "forbidden", "consultation %s belongs to another doctor", c->id);
        else
            fail(hub, rq, "conflict", "consultation %s is not yours now (it is %s)", c->id,
                 sig_state_name(c->state));
        return NULL;
    }
    return c;
}

static void on_duty(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    json_t *on = json_object_get(rq->msg, "on");
    if (!json_is_boolean(on))
        return fail(hub, rq, "bad_request", "field \"on\" must be true or false");
    struct clinic *cl = staff_clinic(hub, rq, "clinic", false);
    if (!cl)
        return;
    struct staff *s = rq->conn->staff;
    if (!json_is_true(on) && s->current && s->current->clinic == cl)
        return fail(hub, rq, "conflict", "end or return consultation %s first", s->current->id);
    bool was = s->on_duty[clinic_index(hub, cl)];
    reply(hub, rq,
          json_pack("{s:s, s:s, s:b}", "type", "duty", "clinic", cl->cfg->id, "on",
                    json_is_true(on)));
    staff_set_duty(hub, s, cl, json_is_true(on));
    if (was != json_is_true(on))
        audit(hub, rq->conn, json_is_true(on) ? "duty_started" : "duty_ended", "ok", NULL,
              cl->cfg->id, NULL);
    if (json_is_true(on))
        send_json(hub, rq->conn, queue_snapshot(hub, cl));
}

static void on_queue(struct sig_hub *hub, struct request *rq)
{
    struct clinic *cl = staff_clinic(hub, rq, "clinic", false);
    if (cl)
        reply(hub, rq, queue_snapshot(hub, cl));
}

static void on_call_next(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    struct clinic *cl = staff_clinic(hub, rq, "clinic", true);
    if (!cl)
        return;
    struct staff *s = rq->conn->staff;
    if (s->current)
        return fail(hub, rq, "conflict", "end or return consultation %s first", s->current->id);
    unsigned n;
    struct consultation **list = waiting_list(hub, cl, &n);
    struct consultation *head = list && n ? list[0] : NULL;
    free(list);
    if (!head)
        return fail(hub, rq, "not_found", "no patient is waiting in clinic \"%s\"", cl->cfg->id);
    do_call(hub, rq, head);
}

static void on_call(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    struct consultation *c = doctor_consultation(hub, rq, false);
    if (!c)
        return;
    if (rq->conn->staff->current)
        return fail(hub, rq, "conflict", "end or return consultation %s first",
                    rq->conn->staff->current->id);
    do_call(hub, rq, c);
}

static void on_return(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    struct consultation *c = doctor_consultation(hub, rq, true);
    if (!c)
        return;
    enum sig_state to;
    if (sig_state_next(c->state, SIG_EVENT_RETURN, SIG_END_NONE, &to) != 0)
        return fail(hub, rq, "conflict", "consultation %s is %s", c->id, sig_state_name(c->state));
    if (c->state == SIG_STATE_IN_CONSULTATION)
        media_disconnect(hub, c);
    set_state(c, to);
    c->doctor = NULL;
    c->started_ms = 0;
    rq->conn->staff->current = NULL;
    media_self_test(hub, c);
    reply(hub, rq, json_pack("{s:s, s:s}", "type", "returned", "consultation", c->id));
    if (c->patient)
        send_json(hub, c->patient,
                  json_pack("{s:s, s:s}", "type", "returned", "consultation", c->id));
    audit(hub, rq->conn, "returned_to_queue", "ok", c, NULL, NULL);
    clinic_changed(hub, c->clinic);
}

static void on_transfer(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    struct consultation *c = doctor_consultation(hub, rq, false);
    if (!c)
        return;
    struct staff *s = rq->conn->staff;
    if (c->state != SIG_STATE_WAITING && s->current != c)
        return fail(hub, rq, "forbidden", "consultation %s belongs to another doctor", c->id);
    const char *target_id = need_string(hub, rq, "clinic", SIG_ID_MAX - 1);
    if (!target_id)
        return;
    struct clinic *target = find_clinic(hub, target_id);
    if (!target)
        return fail(hub, rq, "not_found", "no clinic \"%s\"", target_id);
    if (target == c->clinic)
        return fail(hub, rq, "bad_request", "the patient is already in clinic \"%s\"", target_id);
    if (!sig_clinic_is_open(target->cfg, base_wall_ms() / 1000))
        return fail(hub, rq, "clinic_closed", "clinic \"%s\" is closed now", target_id);
    if (target->waiting >= target->cfg->queue_limit)
        return fail(hub, rq, "queue_full", "clinic \"%s\" is full", target_id);
    struct consultation *moved =
        consultation_new(hub, target, c->name, c->patient_ref, c->priority);
    if (!moved)
        return fail(hub, rq, "internal", "out of memory");
    memcpy(moved->resume_hash, c->resume_hash, sizeof(moved->resume_hash));
    memset(c->resume_hash, 0, sizeof(c->resume_hash));
    moved->ready = c->ready;
    /* The patient's media leg goes along: they keep their camera and connection. What it did
     * in this consultation is summed up before it leaves. */
    media_summaries(hub, c, c->state);
    if (c->state == SIG_STATE_IN_CONSULTATION)
        media_disconnect(hub, c);
    moved->patient_leg = c->patient_leg;
    moved->leg_placement = c->leg_placement;
    c->patient_leg = 0;
    struct conn *patient = c->patient;
    moved->patient_gone_ms = c->patient_gone_ms;
    c->patient = NULL; /* the patient stays connected, now to the new consultation */
    if (patient) {
        patient->consultation = moved;
    }
    moved->patient = patient;
    reply(hub, rq,
          json_pack("{s:s, s:s, s:s, s:s}", "type", "transferred", "consultation", c->id,
                    "new_consultation", moved->id, "clinic", target->cfg->id));
    char from_id[sizeof(c->id)];
    memcpy(from_id, c->id, sizeof(from_id)); /* for the audit: `c` is gone after its end */
    end_consultation(hub, c, SIG_END_TRANSFERRED, rq->conn);
    if (patient) {
        unsigned pos = position_of(hub, moved);
        int64_t est = estimate_wait_s(target, pos);
        moved->sent_position = pos;
        moved->sent_estimate_s = est;
        send_json(hub, patient,
                  json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:i, s:o}", "type", "transferred",
                            "consultation", moved->id, "clinic", "id", target->cfg->id, "name_en",
                            target->cfg->name_en, "name_ar", target->cfg->name_ar, "position", pos,
                            "estimated_wait_s", estimate_json(est)));
    }
    audit(hub, rq->conn, "queue_joined", "ok", moved, NULL,
          json_pack("{s:s, s:s?, s:s, s:s, s:s}", "name", moved->name, "patient_ref",
                    moved->patient_ref[0] ? moved->patient_ref : NULL, "priority",
                    moved->priority ? "urgent" : "routine", "via", "transfer", "from_consultation",
                    from_id));
    media_self_test(hub, moved);
    clinic_changed(hub, target);
}

static void on_end(struct sig_hub *hub, struct request *rq)
{
    if (!need_doctor(hub, rq))
        return;
    struct consultation *c = doctor_consultation(hub, rq, true);
    if (!c)
        return;
    enum sig_end_reason reason =
        c->state == SIG_STATE_IN_CONSULTATION ? SIG_END_COMPLETED : SIG_END_DOCTOR_ENDED;
    json_t *given = json_object_get(rq->msg, "reason");
    if (given) {
        if (!json_is_string(given) ||
            sig_end_reason_parse(json_string_value(given), &reason) != 0 ||
            (reason != SIG_END_COMPLETED && reason != SIG_END_DOCTOR_ENDED))
            return fail(hub, rq, "bad_request",
                        "field \"reason\" must be \"completed\" or \"doctor_ended\"");
    }
    enum sig_state to;
    if (sig_state_next(c->state, SIG_EVENT_END, reason, &to) != 0)
        return fail(hub, rq, "conflict", "a %s consultation cannot end as %s",
                    sig_state_name(c->state), sig_end_reason_name(reason));
    reply(hub, rq,
          json_pack("{s:s, s:s, s:s}", "type", "ending", "consultation", c->id, "reason",
                    sig_end_reason_name(reason)));
    end_consultation(hub, c, reason, rq->conn);
}

static void on_overview(struct sig_hub *hub, struct request *rq)
{
    struct staff *s = rq->conn->staff;
    if (s->user.role != SIG_ROLE_ADMIN)
        return fail(hub, rq, "forbidden", "only admins see the overview");
    json_t *clinics = json_array();
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++) {
        struct clinic *cl = &hub->clinics[i];
        if (!may_see_clinic(&s->user, cl))
            continue;
        unsigned called = 0, running = 0;
        int64_t longest = 0;
        for (struct consultation *c = hub->consultations; c; c = c->next) {
            if (c->clinic != cl)
                continue;
            called += c->state == SIG_STATE_CALLED;
            running += c->state == SIG_STATE_IN_CONSULTATION;
            if (c->state == SIG_STATE_WAITING && hub->now_ms - c->joined_ms > longest)
                longest = hub->now_ms - c->joined_ms;
        }
        json_array_append_new(clinics,
                              json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:I}", "id",
                                        cl->cfg->id, "name_en", cl->cfg->name_en, "name_ar",
                                        cl->cfg->name_ar, "waiting", cl->waiting, "called", called,
                                        "in_consultation", running, "doctors_on_duty", cl->on_duty,
                                        "longest_wait_s", (json_int_t)(longest / 1000)));
    }
    reply(hub, rq, json_pack("{s:s, s:o}", "type", "overview", "clinics", clinics));
}

static void on_logout(struct sig_hub *hub, struct request *rq)
{
    struct staff *s = rq->conn->staff;
    if (s->current)
        return fail(hub, rq, "conflict", "end or return consultation %s first", s->current->id);
    if (hub->accounts)
        sig_accounts_logout(hub->accounts, s->token); /* this connection's session ends */
    audit(hub, rq->conn, "sign_out", "ok", NULL, NULL, NULL);
    reply(hub, rq, json_pack("{s:s}", "type", "signed_out"));
    staff_remove(hub, s, SIG_END_DOCTOR_ENDED);
}

/*
 * An SDP offer (or the offer of an ICE restart): a new leg for the sender,
 * replacing the one they had, answered by the media relay. A patient's leg
 * belongs to their consultation, a doctor's to their session (it serves one
 * patient after another).
 */
static void on_media(struct sig_hub *hub, struct request *rq)
{
    struct consultation *c = NULL;
    if (rq->conn->role == SIG_ROLE_PATIENT && !(c = own_consultation(hub, rq)))
        return;
    const char *sdp = need_string(hub, rq, "sdp", SIG_MESSAGE_MAX);
    if (!sdp)
        return;
    if (!hub->io.media_offer)
        return fail(hub, rq, "unavailable", "this server runs without a media relay");
    struct staff *s = rq->conn->staff;
    if (s && s->user.role != SIG_ROLE_DOCTOR)
        return fail(hub, rq, "forbidden", "only patients and doctors send media");
    /* Placement: by the clinic whose consultation this leg will serve; a doctor's
     * goes where their patient's leg already is (after a transfer, another clinic's). */
    struct clinic *placed = c ? c->clinic : NULL;
    if (s && s->current)
        placed = s->current->clinic;
    for (unsigned i = 0; !placed && s && i < hub->cfg.clinic_count; i++)
        if (s->on_duty[i])
            placed = &hub->clinics[i];
    unsigned placement = placed ? clinic_index(hub, placed) : 0;
    if (s && s->current && s->current->patient_leg)
        placement = s->current->leg_placement;
    char *answer = NULL, err[256] = "";
    bool bad_offer = false;
    uint64_t *slot = c ? &c->patient_leg : &s->leg;
    uint64_t leg = hub->io.media_offer(hub->io.ctx, placement, sdp, strlen(sdp), *slot, &answer,
                                       &bad_offer, err, sizeof(err));
    if (!leg)
        return fail(hub, rq, bad_offer ? "bad_sdp" : "unavailable", "%s", err);
    struct consultation *serving = c ? c : s->current;
    bool kept = leg == *slot; /* the same browser connection: its leg goes on as it is */
    if (!kept) {
        if (serving && *slot)
            media_disconnect(hub, serving);
        media_release(hub, slot);
        *slot = leg;
        if (c)
            c->leg_placement = placement;
    }
    reply(hub, rq, json_pack("{s:s, s:s}", "type", "answer", "sdp", answer));
    free(answer);
    audit(hub, rq->conn, "media_offer", "ok", serving, placed ? placed->cfg->id : NULL,
          json_pack("{s:s, s:b}", "request", rq->type, "same_connection", kept));
    if (kept) {
        if (serving)
            media_connect(hub, serving); /* a link that failed before may work now */
        return;
    }
    if (c)
        media_self_test(hub, c);
    if (serving)
        media_connect(hub, serving);
}

void sig_hub_media_audio(struct sig_hub *hub, uint64_t leg, const char *state, bool state_changed,
                         unsigned level, int64_t now_ms)
{
    hub->now_ms = now_ms;
    struct consultation *c = NULL;
    bool patient_side = false;
    for (struct consultation *it = hub->consultations; it && !c; it = it->next) {
        if (it->state != SIG_STATE_IN_CONSULTATION || !it->doctor)
            continue;
        if (it->patient_leg == leg)
            c = it, patient_side = true;
        else if (it->doctor->leg == leg)
            c = it;
    }
    if (!c || !leg)
        return;
    struct conn *doctor = c->doctor->conn;
    const char *who = patient_side ? "patient" : "doctor";
    if (state_changed) {
        json_t *msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "audio", "consultation", c->id,
                                "who", who, "state", state);
        send_json(hub, c->patient, json_deep_copy(msg));
        send_json(hub, doctor, msg);
        audit(hub, NULL, strcmp(state, "ok") == 0 ? "microphone_ok" : "microphone_silent",
              strcmp(state, "ok") == 0 ? "ok" : "warning", c, NULL,
              json_pack("{s:s, s:s}", "who", who, "state", state));
    }
    if (patient_side)
        send_json(hub, doctor,
                  json_pack("{s:s, s:s, s:s, s:i}", "type", "audio_level", "consultation", c->id,
                            "who", "patient", "level", (int)level));
}

void sig_hub_media_event(struct sig_hub *hub, uint64_t leg, enum sig_media_event event,
                         const char *reason, int64_t now_ms)
{
    hub->now_ms = now_ms;
    if (!leg)
        return;
    struct conn *to = NULL;
    struct consultation *serving = NULL;
    uint64_t *slot = NULL;
    for (struct consultation *c = hub->consultations; c && !slot; c = c->next)
        if (c->patient_leg == leg) {
            slot = &c->patient_leg;
            serving = c;
            to = c->patient;
        }
    for (struct staff *s = hub->staff; s && !slot; s = s->next)
        if (s->leg == leg) {
            slot = &s->leg;
            serving = s->current;
            to = s->conn;
        }
    if (!slot)
        return; /* a leg already replaced or released */
    const char *state = event == SIG_MEDIA_CONNECTED ? "connected"
                        : event == SIG_MEDIA_FLOWING ? "flowing"
                                                     : "ended";
    if (event == SIG_MEDIA_ENDED)
        media_release(hub, slot); /* the worker has dropped it; the rest of the relay forgets */
    /* A consultation whose media is gone waits a grace period for a new leg, then ends. */
    if (serving && serving->state == SIG_STATE_IN_CONSULTATION) {
        if (event == SIG_MEDIA_ENDED && !serving->media_lost_ms) {
            serving->media_lost_ms = now_ms;
            bool patient_side = slot == &serving->patient_leg;
            struct conn *other =
                patient_side ? (serving->doctor ? serving->doctor->conn : NULL) : serving->patient;
            send_json(hub, other,
                      json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "peer", "consultation",
                                serving->id, "who", patient_side ? "patient" : "doctor", "state",
                                "media_lost", "grace_s", (json_int_t)(hub->cfg.grace_ms / 1000)));
        }
    }
    if (serving && event == SIG_MEDIA_CONNECTED)
        serving->media_lost_ms = 0;
    if (event == SIG_MEDIA_FLOWING && serving && slot == &serving->patient_leg && !serving->ready) {
        serving->ready = true; /* camera, microphone and network path proven */
        readiness_changed(hub, serving);
    }
    send_json(hub, to,
              json_pack("{s:s, s:s, s:s?, s:s?}", "type", "media", "state", state, "consultation",
                        serving ? serving->id : NULL, "reason", reason));
    audit(hub, to,
          event == SIG_MEDIA_ENDED     ? "media_ended"
          : event == SIG_MEDIA_FLOWING ? "media_flowing"
                                       : "media_connected",
          event == SIG_MEDIA_ENDED ? "failed" : "ok", serving, NULL,
          json_pack("{s:s, s:s?}", "state", state, "reason", reason));
}

/* One kind of media of a summary as audit detail; null when the kind was not negotiated. */
static json_t *summary_stream_json(const struct media_leg_stream_summary *k)
{
    if (!k->active)
        return json_null();
    return json_pack(
        "{s:s, s:{s:I, s:I, s:I, s:f}, s:{s:I, s:I, s:o, s:o}}", "codec", k->codec, "received",
        "packets", (json_int_t)k->packets_received, "bytes", (json_int_t)k->bytes_received, "lost",
        (json_int_t)k->packets_lost, "jitter_ms", two_decimals(k->jitter_ms), "sent", "packets",
        (json_int_t)k->packets_sent, "bytes", (json_int_t)k->bytes_sent, "peer_reported_lost",
        k->peer_reported ? json_integer((json_int_t)k->peer_lost) : json_null(),
        "peer_fraction_lost_pct",
        k->peer_reported ? json_real(two_decimals(k->peer_fraction_lost_pct)) : json_null());
}

void sig_hub_media_summary(struct sig_hub *hub, uint64_t leg, const struct media_leg_summary *s)
{
    struct summary_wait **p = &hub->summaries;
    while (*p && (*p)->token != s->request)
        p = &(*p)->next;
    if (!*p || (*p)->leg != leg)
        return; /* not ours (a baseline is never answered) */
    struct summary_wait *sw = *p;
    *p = sw->next;
    if (!s->found) {
        record_summary(hub, sw, "failed", json_pack("{s:s}", "leg", "gone"));
    } else {
        json_t *rtt = s->rtt_ms >= 0 ? json_real(two_decimals(s->rtt_ms)) : json_integer(-1);
        record_summary(
            hub, sw, "ok",
            json_pack("{s:f, s:o, s:o, s:o, s:{s:s, s:s, s:s?, s:i}}", "duration_s",
                      (double)(s->duration_ms / 100) / 10.0, "audio",
                      summary_stream_json(&s->audio), "video", summary_stream_json(&s->video),
                      "rtt_ms", rtt, "ice", "protocol", s->protocol, "type", s->candidate_type,
                      "remote", s->remote[0] ? s->remote : NULL, "local_port", (int)s->local_port));
    }
    free(sw);
}

void sig_hub_media_summary_flush(struct sig_hub *hub)
{
    while (hub->summaries) {
        struct summary_wait *sw = hub->summaries;
        hub->summaries = sw->next;
        record_summary(hub, sw, "failed",
                       json_pack("{s:s, s:s}", "leg", "gone", "reason", "no_answer"));
        free(sw);
    }
}

/* ------------------------------------------------------------------------- */
/* Dispatch                                                                   */
/* ------------------------------------------------------------------------- */

#define ANYONE                                                                                     \
    (1u << SIG_ROLE_NONE | 1u << SIG_ROLE_PATIENT | 1u << SIG_ROLE_DOCTOR | 1u << SIG_ROLE_ADMIN)
#define NOBODY  (1u << SIG_ROLE_NONE)
#define PATIENT (1u << SIG_ROLE_PATIENT)
#define STAFF   (1u << SIG_ROLE_DOCTOR | 1u << SIG_ROLE_ADMIN)

struct handler {
    const char *type;
    unsigned roles; /* who may send it */
    void (*fn)(struct sig_hub *hub, struct request *rq);
};

static const struct handler handlers[] = {
    {"ping", ANYONE, on_ping},
    {"join", NOBODY, on_join},
    {"resume", NOBODY, on_resume},
    {"login", NOBODY, on_login},
    {"auth", NOBODY, on_auth},
    {"leave", PATIENT, on_leave},
    {"accept", PATIENT, on_accept},
    {"device_status", PATIENT, on_device_status},
    {"duty", STAFF, on_duty},
    {"queue", STAFF, on_queue},
    {"call_next", STAFF, on_call_next},
    {"call", STAFF, on_call},
    {"return_to_queue", STAFF, on_return},
    {"transfer", STAFF, on_transfer},
    {"end", STAFF, on_end},
    {"overview", STAFF, on_overview},
    {"logout", STAFF, on_logout},
    {"offer", PATIENT | STAFF, on_media},
    {"ice_restart", PATIENT | STAFF, on_media},
};

/*
 * A staff member's session may have ended since they signed in: the account
 * disabled or its password changed (by `tabib user`, from another process),
 * a sign-out elsewhere, or plain expiry. Checked at every request (one
 * indexed SQLite read), so all of these take effect at once on open
 * connections too.
 */
static bool staff_still_allowed(struct sig_hub *hub, struct request *rq)
{
    struct staff *s = rq->conn->staff;
    struct sig_user now;
    if (!s || !hub->accounts)
        return true;
    if (sig_accounts_session(hub->accounts, s->token, base_wall_ms(), &now) == 0 &&
        now.id == s->user.id) {
        s->user = now; /* clinics may have changed too */
        return true;
    }
    bool disabled = sig_accounts_get(hub->accounts, s->user.username, &now) == 0 && now.disabled;
    fail(hub, rq, "unauthorized", "the session of \"%s\" has ended%s", s->user.username,
         disabled ? ": the account is disabled" : "; sign in again");
    struct conn *conn = rq->conn;
    staff_remove(hub, s, SIG_END_DOCTOR_ENDED);
    hub->io.close(hub->io.ctx, conn->transport, disabled ? 4003 : 4002,
                  disabled ? "account disabled" : "session ended");
    return false;
}

static void dispatch(struct sig_hub *hub, struct request *rq)
{
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        const struct handler *h = &handlers[i];
        if (strcmp(h->type, rq->type) != 0)
            continue;
        enum sig_role role = rq->conn->role;
        if (h->roles & (1u << role)) {
            if (h->roles != ANYONE && !staff_still_allowed(hub, rq))
                return;
            return h->fn(hub, rq);
        }
        if (role == SIG_ROLE_NONE)
            return fail(hub, rq, "unauthorized", "\"%s\" needs you to join or sign in first",
                        rq->type);
        if (h->roles == NOBODY)
            return fail(hub, rq, "conflict", "this connection is already a %s",
                        sig_role_name(role));
        return fail(hub, rq, "forbidden", "a %s may not send \"%s\"", sig_role_name(role),
                    rq->type);
    }
    fail(hub, rq, "unknown_type", "unknown message type \"%.64s\"", rq->type);
}

/* Token bucket: returns false when the message must be refused for rate. */
static bool rate_allows(struct sig_hub *hub, struct conn *conn)
{
    double elapsed = (double)(hub->now_ms - conn->refilled_ms) / 1000.0;
    conn->refilled_ms = hub->now_ms;
    conn->tokens += elapsed * hub->cfg.rate_per_second;
    if (conn->tokens > hub->cfg.rate_burst)
        conn->tokens = hub->cfg.rate_burst;
    if (conn->tokens >= 1.0) {
        conn->tokens -= 1.0;
        conn->refused = 0;
        return true;
    }
    conn->refused++;
    return false;
}

void sig_hub_message(struct sig_hub *hub, void *transport, const char *data, size_t len,
                     int64_t now_ms)
{
    hub->now_ms = now_ms;
    struct conn *conn = find_conn(hub, transport);
    if (!conn)
        return;
    hub->stats.messages++;
    struct request rq = {.conn = conn};
    if (!rate_allows(hub, conn)) {
        hub->stats.rate_limited++;
        if (conn->refused > FLOOD_CLOSE_FACTOR * hub->cfg.rate_burst) {
            audit(hub, conn, "connection_closed_for_flood", "denied", NULL, NULL, NULL);
            sig_hub_disconnect(hub, transport, now_ms);
            hub->io.close(hub->io.ctx, transport, 1008, "message flood");
            return;
        }
        return fail(hub, &rq, "rate_limited", "more than %u messages a second; slow down",
                    hub->cfg.rate_per_second);
    }
    if (len > SIG_MESSAGE_MAX)
        return fail(hub, &rq, "bad_request", "message is %zu bytes, the limit is %d", len,
                    SIG_MESSAGE_MAX);
    json_error_t jerr;
    rq.msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!rq.msg)
        return fail(hub, &rq, "bad_json", "invalid JSON at line %d, column %d: %s", jerr.line,
                    jerr.column, jerr.text);
    json_t *id = json_object_get(rq.msg, "id");
    json_t *type = json_object_get(rq.msg, "type");
    if (!json_is_object(rq.msg))
        fail(hub, &rq, "bad_request", "a message must be a JSON object");
    else if (!id || !(json_is_string(id) || json_is_integer(id)))
        fail(hub, &rq, "bad_request", "field \"id\" is missing: a string or integer");
    else if (json_is_string(id) && json_string_length(id) > ID_FIELD_MAX)
        fail(hub, &rq, "bad_request", "field \"id\" is longer than %d bytes", ID_FIELD_MAX);
    else if ((rq.id = id), !json_is_string(type))
        fail(hub, &rq, "bad_request", "field \"type\" is missing or not a string");
    else if ((rq.type = json_string_value(type)), strlen(rq.type) != json_string_length(type))
        fail(hub, &rq, "bad_request", "field \"type\" contains a NUL character");
    else
        dispatch(hub, &rq);
    json_decref(rq.msg);
}

/* ------------------------------------------------------------------------- */
/* Connections and time                                                       */
/* ------------------------------------------------------------------------- */

int sig_hub_connect(struct sig_hub *hub, void *transport, const char *address, int64_t now_ms)
{
    hub->now_ms = now_ms;
    unsigned same = 0;
    for (struct conn *c = hub->conns; c; c = c->next)
        same += strcmp(c->address, address) == 0;
    if (same >= hub->cfg.max_conns_per_address)
        return -EMFILE;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->transport = transport;
    snprintf(c->address, sizeof(c->address), "%s", address);
    c->tokens = hub->cfg.rate_burst;
    c->refilled_ms = now_ms;
    c->next = hub->conns;
    hub->conns = c;
    hub->stats.connections++;
    return 0;
}

void sig_hub_disconnect(struct sig_hub *hub, void *transport, int64_t now_ms)
{
    hub->now_ms = now_ms;
    struct conn *conn = NULL;
    for (struct conn **p = &hub->conns; *p; p = &(*p)->next) {
        if ((*p)->transport == transport) {
            conn = *p;
            *p = conn->next;
            break;
        }
    }
    if (!conn)
        return;
    hub->stats.connections--;
    if (conn->consultation) {
        struct consultation *c = conn->consultation;
        c->patient = NULL;
        c->patient_gone_ms = now_ms;
        audit(hub, conn, "participant_disconnected", "ok", c, NULL,
              json_pack("{s:s}", "state", sig_state_name(c->state)));
        if (c->doctor && c->doctor->conn)
            send_json(hub, c->doctor->conn,
                      json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "peer", "consultation", c->id,
                                "who", "patient", "state", "disconnected", "grace_s",
                                (json_int_t)(hub->cfg.grace_ms / 1000)));
        clinic_changed(hub, c->clinic);
    }
    if (conn->staff) {
        struct staff *s = conn->staff;
        s->conn = NULL;
        s->gone_ms = now_ms;
        audit(hub, conn, "participant_disconnected", "ok", s->current, NULL, NULL);
        if (s->current && s->current->patient)
            send_json(hub, s->current->patient,
                      json_pack("{s:s, s:s, s:s, s:s}", "type", "peer", "consultation",
                                s->current->id, "who", "doctor", "state", "disconnected"));
    }
    free(conn);
}

void sig_hub_tick(struct sig_hub *hub, int64_t now_ms)
{
    hub->now_ms = now_ms;
    for (struct consultation *c = hub->consultations, *next; c; c = next) {
        next = c->next;
        if (!c->patient && c->patient_gone_ms && now_ms - c->patient_gone_ms >= hub->cfg.grace_ms) {
            end_consultation(hub, c,
                             c->state == SIG_STATE_IN_CONSULTATION ? SIG_END_CONNECTION_LOST
                                                                   : SIG_END_ABANDONED,
                             NULL);
        } else if (c->media_lost_ms && c->state == SIG_STATE_IN_CONSULTATION &&
                   now_ms - c->media_lost_ms >= hub->cfg.grace_ms) {
            audit(hub, NULL, "media_lost", "failed", c, NULL,
                  json_pack("{s:I}", "grace_s", (json_int_t)(hub->cfg.grace_ms / 1000)));
            end_consultation(hub, c, SIG_END_CONNECTION_LOST, NULL);
        }
    }
    for (struct staff *s = hub->staff, *next; s; s = next) {
        next = s->next;
        if (!s->conn && s->gone_ms && now_ms - s->gone_ms >= hub->cfg.grace_ms)
            staff_remove(hub, s, SIG_END_CONNECTION_LOST);
    }
}

void sig_hub_shutdown(struct sig_hub *hub, int64_t now_ms)
{
    hub->now_ms = now_ms;
    while (hub->consultations)
        end_consultation(hub, hub->consultations, SIG_END_SERVER_SHUTDOWN, NULL);
}

/* ------------------------------------------------------------------------- */
/* HTTPS API                                                                  */
/* ------------------------------------------------------------------------- */

static char *http_error(int *status, int code, const char *error_code, const char *message)
{
    *status = code;
    return sig_error_reply(NULL, error_code, message);
}

static char *dump(json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return text;
}

char *sig_hub_http_login(struct sig_hub *hub, const char *body, size_t len, const char *address,
                         int64_t now_ms, int *status)
{
    hub->now_ms = now_ms;
    json_error_t jerr;
    json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *username = json_string_value(json_object_get(req, "username"));
    const char *password = json_string_value(json_object_get(req, "password"));
    if (!username || !password || strlen(username) >= SIG_USERNAME_MAX ||
        strlen(password) > SIG_PASSWORD_MAX) {
        json_decref(req);
        return http_error(status, 400, "bad_request",
                          "send {\"username\":\"...\",\"password\":\"...\"}");
    }
    char token[SIG_TOKEN_CHARS + 1];
    struct sig_user user;
    int64_t retry_ms;
    enum sig_login_result r =
        checked_login(hub, address, username, password, token, &user, &retry_ms);
    json_decref(req);
    if (retry_ms) {
        hub->stats.rate_limited++;
        return http_error(status, 429, "rate_limited", "too many failed sign-ins; wait");
    }
    if (r == SIG_LOGIN_ERROR)
        return http_error(status, 500, "internal", "sign-in is not available");
    if (r != SIG_LOGIN_OK)
        return http_error(status, 401, "unauthorized",
                          "wrong username or password, or account disabled");
    *status = 200;
    char *text =
        dump(json_pack("{s:s, s:I, s:o}", "token", token, "expires_in_s",
                       (json_int_t)(hub->cfg.session_ttl_ms / 1000), "user", user_json(&user)));
    OPENSSL_cleanse(token, sizeof(token));
    return text;
}

char *sig_hub_http_appointment(struct sig_hub *hub, const char *bearer, const char *body,
                               size_t len, const char *address, int64_t now_ms, int *status)
{
    hub->now_ms = now_ms;
    struct sig_user user;
    struct audit_event ev = {.type = "access_denied",
                             .actor_role = "anonymous",
                             .outcome = "denied",
                             .source = address,
                             .detail_json = "{\"request\":\"POST /api/appointments\"}"};
    if (!bearer || !hub->accounts ||
        sig_accounts_session(hub->accounts, bearer, base_wall_ms(), &user) != 0) {
        if (hub->io.audit)
            hub->io.audit(hub->io.ctx, &ev);
        return http_error(status, 401, "unauthorized", "sign in and send Authorization: Bearer");
    }
    json_error_t jerr;
    json_t *req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *clinic_id = json_string_value(json_object_get(req, "clinic"));
    json_t *ref = json_object_get(req, "patient_ref");
    json_t *prio = json_object_get(req, "priority");
    char *reply_text = NULL;
    struct clinic *cl = clinic_id ? find_clinic(hub, clinic_id) : NULL;
    if (!json_is_object(req) || !clinic_id || (ref && !json_is_string(ref)) ||
        (ref && json_string_length(ref) >= SIG_ID_MAX) ||
        (prio && !(json_is_string(prio) && (strcmp(json_string_value(prio), "urgent") == 0 ||
                                            strcmp(json_string_value(prio), "routine") == 0)))) {
        reply_text = http_error(status, 400, "bad_request",
                                "send {\"clinic\":\"id\", \"patient_ref\":\"optional\", "
                                "\"priority\":\"routine\"|\"urgent\"}");
    } else if (!cl) {
        reply_text = http_error(status, 404, "not_found", "no such clinic");
    } else if (!may_see_clinic(&user, cl)) {
        ev.actor_role = sig_role_name(user.role);
        ev.actor_id = user.username;
        ev.clinic = cl->cfg->id;
        if (hub->io.audit)
            hub->io.audit(hub->io.ctx, &ev);
        reply_text = http_error(status, 403, "forbidden", "no access to that clinic");
    } else {
        struct sig_appointment appt;
        memset(&appt, 0, sizeof(appt));
        snprintf(appt.clinic, sizeof(appt.clinic), "%s", cl->cfg->id);
        snprintf(appt.patient_ref, sizeof(appt.patient_ref), "%s",
                 ref ? json_string_value(ref) : "");
        appt.priority = prio && strcmp(json_string_value(prio), "urgent") == 0;
        appt.issued_by = user.id;
        appt.expires_ms = base_wall_ms() + hub->cfg.appointment_ttl_ms;
        char token[SIG_TOKEN_CHARS + 1];
        int rc = sig_accounts_issue_appointment(hub->accounts, &appt, token);
        if (rc == -EINVAL) {
            reply_text = http_error(status, 400, "bad_request",
                                    "patient_ref must be text without control characters");
        } else if (rc != 0) {
            reply_text = http_error(status, 500, "internal", "cannot store the appointment");
        } else {
            char link[256];
            snprintf(link, sizeof(link), "/c/%s?appointment=%s", cl->cfg->id, token);
            *status = 201;
            reply_text = dump(json_pack("{s:s, s:s, s:s, s:I}", "token", token, "link", link,
                                        "clinic", cl->cfg->id, "expires_in_s",
                                        (json_int_t)(hub->cfg.appointment_ttl_ms / 1000)));
            struct audit_event issued = {
                .type = "appointment_issued",
                .actor_role = sig_role_name(user.role),
                .actor_id = user.username,
                .clinic = cl->cfg->id,
                .outcome = "ok",
                .source = address,
            };
            char detail[160];
            snprintf(detail, sizeof(detail), "{\"priority\":\"%s\",\"has_patient_ref\":%s}",
                     appt.priority ? "urgent" : "routine", appt.patient_ref[0] ? "true" : "false");
            issued.detail_json = detail;
            if (hub->io.audit)
                hub->io.audit(hub->io.ctx, &issued);
            OPENSSL_cleanse(token, sizeof(token));
        }
    }
    json_decref(req);
    return reply_text;
}

/* ------------------------------------------------------------------------- */
/* Life cycle and statistics                                                  */
/* ------------------------------------------------------------------------- */

struct sig_hub *sig_hub_new(const struct sig_hub_config *cfg, struct sig_accounts *accounts,
                            const struct sig_hub_io *io, struct base_logger *log)
{
    struct sig_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return NULL;
    hub->cfg = *cfg;
    hub->accounts = accounts;
    hub->io = *io;
    hub->log = log;
    hub->clinics = calloc(cfg->clinic_count ? cfg->clinic_count : 1, sizeof(*hub->clinics));
    if (!hub->clinics) {
        free(hub);
        return NULL;
    }
    for (unsigned i = 0; i < cfg->clinic_count; i++)
        hub->clinics[i].cfg = &cfg->clinics[i];
    return hub;
}

void sig_hub_free(struct sig_hub *hub)
{
    if (!hub)
        return;
    while (hub->consultations) {
        struct consultation *c = hub->consultations;
        hub->consultations = c->next;
        free(c);
    }
    while (hub->staff) {
        struct staff *s = hub->staff;
        hub->staff = s->next;
        free(s->on_duty);
        free(s);
    }
    while (hub->conns) {
        struct conn *c = hub->conns;
        hub->conns = c->next;
        free(c);
    }
    while (hub->summaries) {
        struct summary_wait *sw = hub->summaries;
        hub->summaries = sw->next;
        free(sw);
    }
    free(hub->clinics);
    free(hub);
}

void sig_hub_get_stats(const struct sig_hub *hub, struct sig_hub_stats *out)
{
    *out = hub->stats;
    out->patients_waiting = out->consultations_called = out->consultations_in_progress = 0;
    out->doctors_on_duty = 0;
    for (struct consultation *c = hub->consultations; c; c = c->next) {
        out->patients_waiting += c->state == SIG_STATE_WAITING;
        out->consultations_called += c->state == SIG_STATE_CALLED;
        out->consultations_in_progress += c->state == SIG_STATE_IN_CONSULTATION;
    }
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++)
        out->doctors_on_duty += hub->clinics[i].on_duty;
}

int sig_hub_http_audit_access(struct sig_hub *hub, const char *bearer, const char *what,
                              const char *address, int64_t now_ms, struct sig_audit_reader *who,
                              char **error)
{
    hub->now_ms = now_ms;
    memset(who, 0, sizeof(*who));
    json_t *detail = json_pack("{s:s}", "request", what);
    char *detail_text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    struct audit_event ev = {.type = "access_denied",
                             .actor_role = "anonymous",
                             .outcome = "denied",
                             .source = address,
                             .detail_json = detail_text};
    struct sig_user user;
    int status = 0;
    if (bearer && hub->accounts &&
        sig_accounts_session(hub->accounts, bearer, base_wall_ms(), &user) == 0) {
        if (user.role == SIG_ROLE_ADMIN) {
            snprintf(who->username, sizeof(who->username), "%s", user.username);
            who->all_clinics = user.all_clinics;
            for (unsigned i = 0; i < user.clinic_count && i < 32; i++)
                snprintf(who->clinics[who->clinic_count++], sizeof(who->clinics[0]), "%s",
                         user.clinics[i]);
        } else {
            ev.actor_role = sig_role_name(user.role);
            ev.actor_id = user.username;
            status = 403;
        }
    } else {
        /* A patient's credential is the resume token of their consultation. */
        unsigned char hash[32];
        struct consultation *c = NULL;
        if (bearer) {
            sha256(bearer, hash);
            for (c = hub->consultations; c; c = c->next)
                if (CRYPTO_memcmp(c->resume_hash, hash, 32) == 0)
                    break;
        }
        if (c) {
            ev.actor_role = "patient";
            ev.actor_id = c->id;
            ev.clinic = c->clinic->cfg->id;
            ev.consultation = c->id;
        }
        status = c ? 403 : 401;
    }
    if (status && hub->io.audit)
        hub->io.audit(hub->io.ctx, &ev);
    free(detail_text);
    if (status == 401)
        *error = sig_error_reply(NULL, "unauthorized",
                                 "sign in as an admin and send Authorization: Bearer <token>");
    else if (status == 403)
        *error = sig_error_reply(NULL, "forbidden", "only admins may read the audit log");
    return status;
}

char *sig_hub_http_clinics(struct sig_hub *hub, int64_t wall_ms)
{
    json_t *list = json_array();
    for (unsigned i = 0; i < hub->cfg.clinic_count; i++) {
        const struct sig_clinic_config *cfg = hub->clinics[i].cfg;
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:b}", "id", cfg->id, "name_en",
                                              cfg->name_en, "name_ar", cfg->name_ar, "open",
                                              sig_clinic_is_open(cfg, wall_ms / 1000)));
    }
    return dump(json_pack("{s:o}", "clinics", list));
}
