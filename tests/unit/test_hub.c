/*
 * test_hub.c - the signalling hub without a network: queues, calls,
 * priorities, transfers, grace periods and resumption, who may do what, and
 * the audit trail, with a clock the test controls and real SQLite accounts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "signaling.h"

#define MAX_PEERS  16
#define MAX_INBOX  256
#define MAX_AUDITS 512

/* A fake connection: what the hub sent it, and whether it was closed. */
struct peer {
    json_t *inbox[MAX_INBOX];
    unsigned count;
    int close_code;
};

struct world {
    char dir[64];
    struct sig_clinic_config clinics[2];
    struct sig_hub_config cfg;
    struct sig_accounts *accounts;
    struct sig_hub *hub;
    struct peer peers[MAX_PEERS];
    char audits[MAX_AUDITS][96]; /* "type outcome" */
    unsigned audit_count;
    int64_t now;
    int next_id;
    /* The fake media relay: what the hub asked of it. */
    uint64_t next_leg;
    unsigned last_placement;
    char media_log[32][48]; /* "offer 1", "link 1 2", "unlink 2", "release 1" */
    unsigned media_count;
    int link_result;
    int summary_result;      /* what the fake relay answers summary requests */
    char summaries[8][1024]; /* media_summary events: "role actor outcome source detail" */
    unsigned summary_count;
};

static void on_send(void *ctx, void *transport, const char *text, size_t len)
{
    (void)ctx;
    struct peer *p = transport;
    json_t *msg = json_loadb(text, len, 0, NULL);
    assert_non_null(msg);
    assert_true(p->count < MAX_INBOX);
    p->inbox[p->count++] = msg;
}

static void on_close(void *ctx, void *transport, int code, const char *reason)
{
    (void)ctx;
    (void)reason;
    ((struct peer *)transport)->close_code = code;
}

static void on_audit(void *ctx, const struct audit_event *ev)
{
    struct world *w = ctx;
    if (w->audit_count < MAX_AUDITS)
        snprintf(w->audits[w->audit_count++], sizeof(w->audits[0]), "%s %s", ev->type,
                 ev->outcome ? ev->outcome : "-");
    if (strcmp(ev->type, "media_summary") == 0 && w->summary_count < 8)
        snprintf(w->summaries[w->summary_count++], sizeof(w->summaries[0]), "%s %s %s %s %s",
                 ev->actor_role, ev->actor_id, ev->outcome, ev->source ? ev->source : "-",
                 ev->detail_json ? ev->detail_json : "-");
}

/* Records what the hub asked of the fake relay, e.g. "link 1 2". */
static void media_note(struct world *w, const char *verb, uint64_t a, uint64_t b)
{
    assert_true(w->media_count < 32);
    if (b)
        snprintf(w->media_log[w->media_count++], sizeof(w->media_log[0]), "%s %llu %llu", verb,
                 (unsigned long long)a, (unsigned long long)b);
    else
        snprintf(w->media_log[w->media_count++], sizeof(w->media_log[0]), "%s %llu", verb,
                 (unsigned long long)a);
}

static uint64_t on_media_offer(void *ctx, unsigned placement, const char *sdp, size_t len,
                               uint64_t replaces, char **answer, bool *bad_offer, char *err,
                               size_t errlen)
{
    struct world *w = ctx;
    if (replaces && strstr(sdp, "same connection")) {
        *answer = strdup("v=0 answer");
        return replaces; /* the relay keeps the leg */
    }
    if (len < 4 || strncmp(sdp, "v=0", 3) != 0) {
        *bad_offer = true;
        snprintf(err, errlen, "line 1: not an SDP offer");
        return 0;
    }
    uint64_t leg = ++w->next_leg;
    w->last_placement = placement;
    media_note(w, "offer", leg, 0);
    *answer = strdup("v=0 answer");
    return leg;
}

static int on_media_link(void *ctx, uint64_t a, uint64_t b)
{
    struct world *w = ctx;
    media_note(w, "link", a, b);
    return w->link_result;
}

static void on_media_unlink(void *ctx, uint64_t leg)
{
    media_note(ctx, "unlink", leg, 0);
}

static void on_media_release(void *ctx, uint64_t leg)
{
    media_note(ctx, "release", leg, 0);
}

static int on_media_leg_summary(void *ctx, uint64_t leg, uint64_t request)
{
    struct world *w = ctx;
    media_note(w, request ? "summary" : "baseline", leg, request);
    return w->summary_result;
}

/* Where the fake relay was first asked exactly `what`, or -1. */
static int media_asked_at(struct world *w, const char *what)
{
    for (unsigned i = 0; i < w->media_count; i++)
        if (strcmp(w->media_log[i], what) == 0)
            return (int)i;
    return -1;
}

/* How many times the fake relay was asked exactly `what`. */
static unsigned media_asked(struct world *w, const char *what)
{
    unsigned n = 0;
    for (unsigned i = 0; i < w->media_count; i++)
        n += strcmp(w->media_log[i], what) == 0;
    return n;
}

static unsigned audits_of(struct world *w, const char *type_outcome)
{
    unsigned n = 0;
    for (unsigned i = 0; i < w->audit_count; i++)
        n += strcmp(w->audits[i], type_outcome) == 0;
    return n;
}

/* The prestate of tests whose relay also answers media summaries (io.media_leg_summary). */
static const int with_summaries = 1;

static int setup(void **state)
{
    bool summaries = *state == &with_summaries;
    struct world *w = calloc(1, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/tabib-test-hub-XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    char err[256];
    w->accounts = sig_accounts_open(w->dir, err, sizeof(err));
    if (!w->accounts)
        return -1;
    const char *general[] = {"general"}, *both[] = {"general", "eyes"}, *eyes[] = {"eyes"};
    if (sig_accounts_add_user(w->accounts, "dr.amal", SIG_ROLE_DOCTOR, general, 1, false,
                              "correct horse battery", err, sizeof(err)) ||
        sig_accounts_add_user(w->accounts, "dr.omar", SIG_ROLE_DOCTOR, both, 2, false,
                              "correct horse battery", err, sizeof(err)) ||
        sig_accounts_add_user(w->accounts, "admin.eyes", SIG_ROLE_ADMIN, eyes, 1, false,
                              "correct horse battery", err, sizeof(err)))
        return -1;
    w->clinics[0] = (struct sig_clinic_config){
        .id = "general", .name_en = "General Practice", .name_ar = "الطب العام", .queue_limit = 5};
    w->clinics[1] = (struct sig_clinic_config){
        .id = "eyes", .name_en = "Eyes", .name_ar = "العيون", .queue_limit = 5};
    sig_hub_config_defaults(&w->cfg);
    w->cfg.clinics = w->clinics;
    w->cfg.clinic_count = 2;
    w->cfg.grace_ms = 10000;
    w->cfg.max_conns_per_address = 12;
    struct sig_hub_io io = {.ctx = w,
                            .send = on_send,
                            .close = on_close,
                            .audit = on_audit,
                            .media_offer = on_media_offer,
                            .media_link = on_media_link,
                            .media_unlink = on_media_unlink,
                            .media_release = on_media_release};
    if (summaries)
        io.media_leg_summary = on_media_leg_summary;
    w->hub = sig_hub_new(&w->cfg, w->accounts, &io, NULL);
    w->now = 1000;
    for (int i = 0; i < MAX_PEERS; i++)
        if (i < 12)
            assert_int_equal(sig_hub_connect(w->hub, &w->peers[i], "192.0.2.1", w->now), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    sig_hub_free(w->hub);
    sig_accounts_close(w->accounts);
    for (int i = 0; i < MAX_PEERS; i++)
        for (unsigned j = 0; j < w->peers[i].count; j++)
            json_decref(w->peers[i].inbox[j]);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w->dir);
    if (system(cmd) != 0)
        return -1;
    free(w);
    return 0;
}

/* Sends a message (a JSON object without id) from peer i; returns the reply to it. */
static json_t *ask(struct world *w, int i, const char *fmt, ...)
{
    char body[1024], msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    int id = ++w->next_id;
    snprintf(msg, sizeof(msg), "{\"id\":%d,%s}", id, body);
    w->now += 1;
    sig_hub_message(w->hub, &w->peers[i], msg, strlen(msg), w->now);
    struct peer *p = &w->peers[i];
    for (unsigned j = 0; j < p->count; j++)
        if (json_integer_value(json_object_get(p->inbox[j], "re")) == id)
            return p->inbox[j];
    fail_msg("no reply to %s", msg);
    return NULL;
}

static const char *type_of(json_t *m)
{
    return json_string_value(json_object_get(m, "type"));
}

static const char *code_of(json_t *m)
{
    return json_string_value(json_object_get(m, "code"));
}

/* The newest pushed event of `type` to peer i, or NULL. */
static json_t *last_event(struct world *w, int i, const char *type)
{
    struct peer *p = &w->peers[i];
    for (unsigned j = p->count; j-- > 0;)
        if (!json_object_get(p->inbox[j], "re") && strcmp(type_of(p->inbox[j]), type) == 0)
            return p->inbox[j];
    return NULL;
}

static json_t *join(struct world *w, int i, const char *clinic, const char *name)
{
    json_t *r = ask(w, i, "\"type\":\"join\",\"clinic\":\"%s\",\"name\":\"%s\"", clinic, name);
    assert_string_equal(type_of(r), "joined");
    return r;
}

static void sign_in(struct world *w, int i, const char *user)
{
    json_t *r = ask(w, i,
                    "\"type\":\"login\",\"username\":\"%s\",\"password\":\"correct horse "
                    "battery\"",
                    user);
    assert_string_equal(type_of(r), "signed_in");
}

static void go_on_duty(struct world *w, int i, const char *clinic)
{
    json_t *r = ask(w, i, "\"type\":\"duty\",\"clinic\":\"%s\",\"on\":true", clinic);
    assert_string_equal(type_of(r), "duty");
}

static const char *id_of(json_t *m)
{
    return json_string_value(json_object_get(m, "consultation"));
}

static void join_tells_position_and_resume_token(void **state)
{
    struct world *w = *state;
    json_t *a = join(w, 0, "general", "مريم الكعبي");
    assert_int_equal(json_integer_value(json_object_get(a, "position")), 1);
    assert_int_equal(strlen(json_string_value(json_object_get(a, "resume_token"))),
                     SIG_TOKEN_CHARS);
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "clinic"), "name_ar")),
                        "الطب العام");
    assert_true(json_is_null(json_object_get(a, "estimated_wait_s"))); /* no doctor on duty */
    json_t *b = join(w, 1, "general", "John");
    assert_int_equal(json_integer_value(json_object_get(b, "position")), 2);
    assert_int_equal(audits_of(w, "queue_joined ok"), 2);
    /* A doctor going on duty gives both an estimate. */
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    json_t *pos = last_event(w, 1, "position");
    assert_non_null(pos);
    assert_int_equal(json_integer_value(json_object_get(pos, "position")), 2);
    assert_int_equal(json_integer_value(json_object_get(pos, "estimated_wait_s")), 1200);
    json_t *queue = last_event(w, 5, "queue");
    assert_int_equal(json_array_size(json_object_get(queue, "patients")), 2);
}

static void call_accept_end_and_next(void **state)
{
    struct world *w = *state;
    const char *first = id_of(join(w, 0, "general", "First"));
    join(w, 1, "general", "Second");
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    json_t *called = ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    assert_string_equal(type_of(called), "called");
    assert_string_equal(id_of(called), first);
    assert_non_null(last_event(w, 0, "called"));
    assert_int_equal(json_integer_value(json_object_get(last_event(w, 1, "position"), "position")),
                     1);
    /* One consultation at a time. */
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "conflict");
    assert_string_equal(type_of(ask(w, 0, "\"type\":\"accept\"")), "consultation_started");
    assert_non_null(last_event(w, 5, "consultation_started"));
    w->now += 5 * 60 * 1000;
    json_t *end = ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", first);
    assert_string_equal(json_string_value(json_object_get(end, "reason")), "completed");
    assert_string_equal(json_string_value(json_object_get(last_event(w, 0, "ended"), "reason")),
                        "completed");
    /* The estimate now uses the five-minute consultation. */
    assert_int_equal(
        json_integer_value(json_object_get(last_event(w, 1, "position"), "estimated_wait_s")), 300);
    assert_string_equal(type_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "called");
    assert_null(code_of(ask(w, 6, "\"type\":\"ping\"")));
    /* The queue is now empty. */
    json_t *empty =
        ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(last_event(w, 1, "called")));
    assert_string_equal(json_string_value(json_object_get(empty, "reason")), "doctor_ended");
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "not_found");
    assert_int_equal(audits_of(w, "consultation_ended ok"), 2);
}

static void two_doctors_never_get_the_same_patient(void **state)
{
    struct world *w = *state;
    join(w, 0, "general", "A");
    join(w, 1, "general", "B");
    sign_in(w, 5, "dr.amal");
    sign_in(w, 6, "dr.omar");
    go_on_duty(w, 5, "general");
    go_on_duty(w, 6, "general");
    json_t *x = ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    json_t *y = ask(w, 6, "\"type\":\"call_next\",\"clinic\":\"general\"");
    assert_string_equal(type_of(x), "called");
    assert_string_equal(type_of(y), "called");
    assert_string_not_equal(id_of(x), id_of(y));
    /* Dr Omar cannot end Dr Amal's consultation. */
    assert_string_equal(code_of(ask(w, 6, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(x))),
                        "forbidden");
}

static void urgent_lane_and_return_to_place(void **state)
{
    struct world *w = *state;
    char token[SIG_TOKEN_CHARS + 1];
    struct sig_user issuer;
    assert_int_equal(sig_accounts_get(w->accounts, "dr.amal", &issuer), 0);
    struct sig_appointment appt = {
        .clinic = "general", .priority = 1, .issued_by = issuer.id, .expires_ms = INT64_MAX};
    assert_int_equal(sig_accounts_issue_appointment(w->accounts, &appt, token), 0);
    const char *routine = id_of(join(w, 0, "general", "Routine"));
    json_t *urgent =
        ask(w, 1, "\"type\":\"join\",\"appointment\":\"%s\",\"name\":\"Urgent\"", token);
    assert_string_equal(type_of(urgent), "joined");
    assert_int_equal(json_integer_value(json_object_get(urgent, "position")), 1);
    assert_int_equal(json_integer_value(json_object_get(last_event(w, 0, "position"), "position")),
                     2);
    /* The token works once. */
    assert_string_equal(
        code_of(ask(w, 2, "\"type\":\"join\",\"appointment\":\"%s\",\"name\":\"Again\"", token)),
        "not_found");
    /* Patients cannot make themselves urgent. */
    assert_string_equal(code_of(ask(w, 2,
                                    "\"type\":\"join\",\"clinic\":\"general\",\"name\":"
                                    "\"Me\",\"priority\":\"urgent\"")),
                        "forbidden");
    join(w, 3, "general", "Later");
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    assert_string_equal(id_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        id_of(urgent));
    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(urgent));
    assert_string_equal(id_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")), routine);
    /* Sent back, the routine patient is ahead of the one who came later. */
    assert_string_equal(
        type_of(ask(w, 5, "\"type\":\"return_to_queue\",\"consultation\":\"%s\"", routine)),
        "returned");
    assert_int_equal(json_integer_value(json_object_get(last_event(w, 0, "position"), "position")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(last_event(w, 3, "position"), "position")),
                     2);
}

static void transfer_moves_the_patient(void **state)
{
    struct world *w = *state;
    const char *old = id_of(join(w, 0, "general", "Moving"));
    sign_in(w, 6, "dr.omar");
    go_on_duty(w, 6, "general");
    json_t *r = ask(w, 6, "\"type\":\"transfer\",\"consultation\":\"%s\",\"clinic\":\"eyes\"", old);
    assert_string_equal(type_of(r), "transferred");
    json_t *ev = last_event(w, 0, "transferred");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "clinic"), "id")),
                        "eyes");
    assert_string_not_equal(id_of(ev), old);
    assert_int_equal(json_integer_value(json_object_get(ev, "position")), 1);
    assert_int_equal(audits_of(w, "consultation_ended ok"), 1);
    /* The patient's own operations follow them. */
    assert_string_equal(type_of(ask(w, 0, "\"type\":\"leave\"")), "left");
}

static void grace_period_resume_and_abandon(void **state)
{
    struct world *w = *state;
    json_t *a = join(w, 0, "general", "Drops");
    char token[64];
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(a, "resume_token")));
    join(w, 1, "general", "Stays");
    sig_hub_disconnect(w->hub, &w->peers[0], w->now);
    sig_hub_tick(w->hub, w->now + 9000);
    json_t *r = ask(w, 2, "\"type\":\"resume\",\"resume_token\":\"%s\"", token);
    assert_string_equal(type_of(r), "resumed");
    assert_int_equal(json_integer_value(json_object_get(r, "position")), 1);
    /* A second socket with the same token takes over; the first is closed. */
    r = ask(w, 3, "\"type\":\"resume\",\"resume_token\":\"%s\"", token);
    assert_string_equal(type_of(r), "resumed");
    assert_int_equal(w->peers[2].close_code, 4001);
    /* Gone past the grace period: abandoned, and the next patient moves up. */
    sig_hub_disconnect(w->hub, &w->peers[3], w->now);
    sig_hub_tick(w->hub, w->now + 10000);
    assert_int_equal(audits_of(w, "consultation_ended ok"), 1);
    assert_int_equal(json_integer_value(json_object_get(last_event(w, 1, "position"), "position")),
                     1);
    assert_string_equal(code_of(ask(w, 4, "\"type\":\"resume\",\"resume_token\":\"%s\"", token)),
                        "not_found");
}

static void who_may_do_what(void **state)
{
    struct world *w = *state;
    const char *c = id_of(join(w, 0, "general", "P"));
    /* Nobody signed in. */
    assert_string_equal(code_of(ask(w, 1, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "unauthorized");
    /* A patient is not staff, and sees only their own consultation. */
    assert_string_equal(code_of(ask(w, 0, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "forbidden");
    join(w, 2, "general", "Q");
    assert_string_equal(code_of(ask(w, 2, "\"type\":\"leave\",\"consultation\":\"%s\"", c)),
                        "forbidden");
    assert_string_equal(code_of(ask(w, 0, "\"type\":\"join\",\"clinic\":\"eyes\",\"name\":\"x\"")),
                        "conflict");
    /* A doctor acts only on clinics they staff and are on duty for. */
    sign_in(w, 5, "dr.amal");
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"duty\",\"clinic\":\"eyes\",\"on\":true")),
                        "forbidden");
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "forbidden");
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"call\",\"consultation\":\"%s\"", c)),
                        "forbidden");
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"overview\"")), "forbidden");
    /* An admin sees the clinics in scope, and takes no patients. */
    sign_in(w, 6, "admin.eyes");
    json_t *ov = ask(w, 6, "\"type\":\"overview\"");
    assert_string_equal(type_of(ov), "overview");
    assert_int_equal(json_array_size(json_object_get(ov, "clinics")), 1);
    assert_string_equal(code_of(ask(w, 6, "\"type\":\"queue\",\"clinic\":\"general\"")),
                        "forbidden");
    assert_string_equal(code_of(ask(w, 6, "\"type\":\"duty\",\"clinic\":\"eyes\",\"on\":true")),
                        "forbidden");
    assert_true(audits_of(w, "access_denied denied") >= 9);
}

static void disabling_an_account_ends_its_open_connection(void **state)
{
    struct world *w = *state;
    join(w, 0, "general", "Waiting");
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    assert_int_equal(sig_accounts_disable(w->accounts, "dr.amal"), 0);
    assert_string_equal(code_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"")),
                        "unauthorized");
    assert_int_equal(w->peers[5].close_code, 4003);
    /* Off duty at once: the waiting patient has no doctor again. */
    assert_true(json_is_null(json_object_get(last_event(w, 0, "position"), "estimated_wait_s")));
}

static void bad_input_is_answered(void **state)
{
    struct world *w = *state;
    const struct {
        const char *msg;
        const char *code;
    } cases[] = {
        {"{\"id\":1,\"type\":\"join\"", "bad_json"},
        {"[]", "bad_request"},
        {"{\"type\":\"ping\"}", "bad_request"},
        {"{\"id\":{},\"type\":\"ping\"}", "bad_request"},
        {"{\"id\":1}", "bad_request"},
        {"{\"id\":1,\"type\":\"fly\"}", "unknown_type"},
        {"{\"id\":1,\"type\":\"join\",\"clinic\":\"general\"}", "bad_request"},
        {"{\"id\":1,\"type\":\"join\",\"clinic\":\"nowhere\",\"name\":\"x\"}", "not_found"},
        {"{\"id\":1,\"type\":\"join\",\"clinic\":7,\"name\":\"x\"}", "bad_request"},
        {"{\"id\":1,\"type\":\"join\",\"clinic\":\"general\",\"name\":\"a\\u0007b\"}",
         "bad_request"},
        {"{\"id\":1,\"type\":\"join\",\"clinic\":\"general\",\"name\":\"   \"}", "bad_request"},
        {"{\"id\":1,\"type\":\"resume\",\"resume_token\":\"forged\"}", "not_found"},
        {"{\"id\":1,\"type\":\"auth\",\"token\":\"expired-or-forged\"}", "unauthorized"},
        {"{\"id\":1,\"type\":\"login\",\"username\":\"dr.amal\",\"password\":\"wrong\"}",
         "unauthorized"},
        {"{\"id\":1,\"type\":\"leave\"}", "unauthorized"},
        /* The parse error quotes a cut UTF-8 character; the reply must still be JSON. */
        {"{\"type\":\"join\",\"id\":\"1\",\"name\":\"\xd9\x85\\\xd8\xb1\"}", "bad_json"},
        {"{\"id\":1,\"type\":\"\xe0\x80\x80\"}", "bad_json"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct peer *p = &w->peers[7];
        unsigned before = p->count;
        sig_hub_message(w->hub, p, cases[i].msg, strlen(cases[i].msg), ++w->now);
        assert_int_equal(p->count, before + 1);
        json_t *r = p->inbox[p->count - 1];
        if (!code_of(r) || strcmp(code_of(r), cases[i].code) != 0)
            fail_msg("case %zu %s: got %s", i, cases[i].msg, json_dumps(r, 0));
    }
    assert_int_equal(audits_of(w, "sign_in_failed failed"), 1);
}

static void failed_sign_ins_are_slowed_down(void **state)
{
    struct world *w = *state;
    for (int i = 0; i < 5; i++)
        assert_string_equal(code_of(ask(w, 8,
                                        "\"type\":\"login\",\"username\":\"dr.amal\","
                                        "\"password\":\"guess %d\"",
                                        i)),
                            "unauthorized");
    /* The sixth attempt is refused without checking the password, even the right one. */
    assert_string_equal(code_of(ask(w, 9,
                                    "\"type\":\"login\",\"username\":\"dr.amal\","
                                    "\"password\":\"correct horse battery\"")),
                        "rate_limited");
    w->now += 1500;
    sign_in(w, 9, "dr.amal");
    assert_int_equal(audits_of(w, "sign_in_throttled denied"), 1);
}

static void message_floods_are_refused_then_closed(void **state)
{
    struct world *w = *state;
    struct peer *p = &w->peers[10];
    const char *ping = "{\"id\":1,\"type\":\"ping\"}";
    unsigned limited = 0;
    for (int i = 0; i < 1000 && !p->close_code; i++) {
        sig_hub_message(w->hub, p, ping, strlen(ping), w->now); /* all in the same millisecond */
        if (code_of(p->inbox[p->count - 1]) &&
            strcmp(code_of(p->inbox[p->count - 1]), "rate_limited") == 0)
            limited++;
        if (p->count >= MAX_INBOX - 1)
            break;
    }
    assert_true(limited > 0);
    /* Other connections are unaffected. */
    assert_string_equal(type_of(ask(w, 11, "\"type\":\"ping\"")), "pong");
    /* Too many connections from one address are refused. */
    int extra;
    assert_int_equal(sig_hub_connect(w->hub, &extra, "192.0.2.1", w->now), -EMFILE);
    assert_int_equal(sig_hub_connect(w->hub, &extra, "198.51.100.7", w->now), 0);
}

static void shutdown_ends_everything(void **state)
{
    struct world *w = *state;
    join(w, 0, "general", "A");
    join(w, 1, "eyes", "B");
    sig_hub_shutdown(w->hub, w->now);
    assert_string_equal(json_string_value(json_object_get(last_event(w, 0, "ended"), "reason")),
                        "server_shutdown");
    assert_int_equal(audits_of(w, "consultation_ended ok"), 2);
    struct sig_hub_stats st;
    sig_hub_get_stats(w->hub, &st);
    assert_int_equal(st.patients_waiting, 0);
}

/*
 * Legs: offers are answered through the relay, the two legs of a
 * consultation are linked once it starts (whoever offered first), the
 * doctor's leg is only unlinked at the end (it serves the next patient) and
 * the patient's is released; media events reach the right participant.
 */
static void media_legs_follow_the_consultation(void **state)
{
    struct world *w = *state;
    const char *c1 = id_of(join(w, 0, "eyes", "First"));
    sign_in(w, 5, "dr.omar");
    go_on_duty(w, 5, "eyes");
    /* A patient's offer before the call: a leg placed with its clinic (index 1), not linked. */
    json_t *a = ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient\"");
    assert_string_equal(type_of(a), "answer");
    assert_string_equal(json_string_value(json_object_get(a, "sdp")), "v=0 answer");
    assert_int_equal(w->last_placement, 1);
    assert_string_equal(code_of(ask(w, 0, "\"type\":\"offer\",\"sdp\":\"nonsense\"")), "bad_sdp");
    assert_string_equal(type_of(ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"eyes\"")), "called");
    /* The doctor's leg is placed with the consultation's clinic too. */
    assert_string_equal(type_of(ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\"")), "answer");
    assert_int_equal(w->last_placement, 1);
    assert_int_equal(media_asked(w, "link 1 2"), 0); /* called, not started: no media yet */
    assert_string_equal(type_of(ask(w, 0, "\"type\":\"accept\"")), "consultation_started");
    assert_int_equal(media_asked(w, "link 1 2"), 1);

    /* Media events go to the owner of the leg, and to the audit log. */
    sig_hub_media_event(w->hub, 1, SIG_MEDIA_CONNECTED, NULL, ++w->now);
    json_t *ev = last_event(w, 0, "media");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "state")), "connected");
    assert_string_equal(id_of(ev), c1);
    assert_null(last_event(w, 5, "media"));
    assert_int_equal(audits_of(w, "media_connected ok"), 1);

    /* An offer from the same browser connection (an ICE restart) keeps the leg as it is. */
    unsigned asked = w->media_count;
    assert_string_equal(
        type_of(ask(w, 0, "\"type\":\"ice_restart\",\"sdp\":\"v=0 same connection\"")), "answer");
    /* No release or unlink: only the link asked for again (the relay ignores a repeat). */
    assert_int_equal(w->media_count, asked + 1);
    assert_int_equal(media_asked(w, "link 1 2"), 2);
    /* A new offer from the patient replaces the leg: the old one is released, the new linked. */
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 restart\"");
    assert_int_equal(media_asked(w, "release 1"), 1);
    assert_int_equal(media_asked(w, "link 3 2"), 1);

    /* The end: the doctor's leg stays for the next patient, the patient's goes. */
    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", c1);
    assert_int_equal(media_asked(w, "unlink 2"), 2); /* the restart, then the end */
    assert_int_equal(media_asked(w, "release 3"), 1);
    assert_int_equal(media_asked(w, "release 2"), 0);

    /* A leg that dies is reported, released once (the relay forgets it) and not again. */
    sig_hub_media_event(w->hub, 2, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    ev = last_event(w, 5, "media");
    assert_string_equal(json_string_value(json_object_get(ev, "state")), "ended");
    assert_string_equal(json_string_value(json_object_get(ev, "reason")), "consent_timeout");
    assert_int_equal(audits_of(w, "media_ended failed"), 1);
    assert_int_equal(media_asked(w, "release 2"), 1);
    ask(w, 5, "\"type\":\"logout\"");
    assert_int_equal(media_asked(w, "release 2"), 1);

    /* Legs on different workers cannot be linked: the doctor is asked to offer again. */
    w->link_result = -EXDEV;
    join(w, 1, "general", "Second");
    sign_in(w, 6, "dr.amal");
    go_on_duty(w, 6, "general");
    ask(w, 6, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\"");
    ask(w, 1, "\"type\":\"offer\",\"sdp\":\"v=0 patient\"");
    ask(w, 6, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 1, "\"type\":\"accept\"");
    ev = last_event(w, 6, "media");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "state")), "reoffer");
    /* An admin sends no media. */
    sign_in(w, 7, "admin.eyes");
    assert_string_equal(code_of(ask(w, 7, "\"type\":\"offer\",\"sdp\":\"v=0\"")), "forbidden");
}

/* A transferred patient keeps their leg; the next doctor's leg is placed with it. */
static void media_leg_follows_a_transfer(void **state)
{
    struct world *w = *state;
    const char *c1 = id_of(join(w, 0, "general", "Moved"));
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient\"");
    assert_int_equal(w->last_placement, 0); /* general */
    sign_in(w, 5, "dr.omar");
    go_on_duty(w, 5, "general");
    go_on_duty(w, 5, "eyes");
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 0, "\"type\":\"accept\"");
    json_t *t = ask(w, 5, "\"type\":\"transfer\",\"consultation\":\"%s\",\"clinic\":\"eyes\"", c1);
    assert_string_equal(type_of(t), "transferred");
    assert_int_equal(media_asked(w, "release 1"), 0);
    /* In the eyes clinic now, called again: the doctor's leg goes where the patient's is. */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"eyes\"");
    ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\"");
    assert_int_equal(w->last_placement, 0);
    ask(w, 0, "\"type\":\"accept\"");
    assert_int_equal(media_asked(w, "link 1 2"), 1);
}

/* Media gone during a consultation: the other side hears it; a new leg in time saves the
 * consultation, none ends it after the grace period. */
static void lost_media_ends_the_consultation_after_grace(void **state)
{
    struct world *w = *state;
    join(w, 0, "general", "Patient");
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\"");  /* leg 1 */
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient\""); /* leg 2 */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 0, "\"type\":\"accept\"");
    sig_hub_media_event(w->hub, 2, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    json_t *peer = last_event(w, 5, "peer");
    assert_non_null(peer);
    assert_string_equal(json_string_value(json_object_get(peer, "state")), "media_lost");
    /* The patient offers again and connects within the grace period: nothing ends. */
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient again\""); /* leg 3 */
    sig_hub_media_event(w->hub, 3, SIG_MEDIA_CONNECTED, NULL, ++w->now);
    w->now += w->cfg.grace_ms + 1;
    sig_hub_tick(w->hub, w->now);
    assert_null(last_event(w, 0, "ended"));
    /* Lost again, and nobody comes back: connection_lost after the grace period. */
    sig_hub_media_event(w->hub, 1, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    assert_string_equal(json_string_value(json_object_get(last_event(w, 0, "peer"), "state")),
                        "media_lost");
    w->now += w->cfg.grace_ms - 10;
    sig_hub_tick(w->hub, w->now);
    assert_null(last_event(w, 0, "ended"));
    w->now += 20;
    sig_hub_tick(w->hub, w->now);
    json_t *ended = last_event(w, 0, "ended");
    assert_non_null(ended);
    assert_string_equal(json_string_value(json_object_get(ended, "reason")), "connection_lost");
    assert_int_equal(audits_of(w, "media_lost failed"), 1);
}

/* Media lost, then the patient returned to the queue: the grace clock does not follow them. */
static void lost_media_forgotten_when_returned(void **state)
{
    struct world *w = *state;
    const char *c1 = id_of(join(w, 0, "general", "Patient"));
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\"");  /* leg 1 */
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient\""); /* leg 2 */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 0, "\"type\":\"accept\"");
    sig_hub_media_event(w->hub, 2, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    json_t *r = ask(w, 5, "\"type\":\"return_to_queue\",\"consultation\":\"%s\"", c1);
    assert_string_equal(type_of(r), "returned");
    w->now += w->cfg.grace_ms + 1000;
    sig_hub_tick(w->hub, w->now);
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 0, "\"type\":\"accept\"");
    sig_hub_tick(w->hub, ++w->now);
    assert_null(last_event(w, 0, "ended"));
}

/* Media events for a doctor's leg between patients concern no consultation. */
static void doctor_media_events_between_patients(void **state)
{
    struct world *w = *state;
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\""); /* leg 1 */
    sig_hub_media_event(w->hub, 1, SIG_MEDIA_CONNECTED, NULL, ++w->now);
    sig_hub_media_event(w->hub, 1, SIG_MEDIA_FLOWING, NULL, ++w->now);
    json_t *ev = last_event(w, 5, "media");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "state")), "flowing");
    assert_true(json_is_null(json_object_get(ev, "consultation")) ||
                !json_object_get(ev, "consultation"));
    sig_hub_media_audio(w->hub, 1, "silent", true, 0, ++w->now); /* no consultation: ignored */
    assert_null(last_event(w, 5, "audio"));
    sig_hub_media_event(w->hub, 1, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    assert_int_equal(media_asked(w, "release 1"), 1);
}

/* The detail of media_summary event `i` (as recorded: "role actor outcome source detail"). */
static json_t *summary_detail(struct world *w, unsigned i)
{
    assert_true(i < w->summary_count);
    const char *p = w->summaries[i];
    for (int field = 0; field < 4; field++) {
        p = strchr(p, ' ');
        assert_non_null(p);
        p++;
    }
    json_t *d = json_loads(p, 0, NULL);
    assert_non_null(d);
    return d;
}

/*
 * Each participant's media summary at the end of a consultation in progress:
 * the interval starts when the consultation's media does (not during the
 * self-test or the doctor's earlier patients), the questions go before the
 * unlink and the release, each answer becomes one audit event, and every
 * way the question cannot be answered is recorded at once (no leg, relay
 * stopped) or when the server gives up waiting (flush).
 */
static void media_summary_per_participant_at_the_end(void **state)
{
    struct world *w = *state;
    const char *c1 = id_of(join(w, 0, "general", "First"));
    ask(w, 0, "\"type\":\"offer\",\"sdp\":\"v=0 patient\""); /* leg 1, self-test */
    sign_in(w, 5, "dr.amal");
    go_on_duty(w, 5, "general");
    ask(w, 5, "\"type\":\"offer\",\"sdp\":\"v=0 doctor\""); /* leg 2 */
    assert_int_equal(media_asked(w, "baseline 1"), 0);      /* the self-test is not counted */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 0, "\"type\":\"accept\"");
    assert_int_equal(media_asked(w, "baseline 1"), 1);
    assert_int_equal(media_asked(w, "baseline 2"), 1);
    assert_true(media_asked_at(w, "baseline 1") < media_asked_at(w, "link 1 2"));
    /* A renegotiation keeps the leg, and its count. */
    ask(w, 0, "\"type\":\"ice_restart\",\"sdp\":\"v=0 same connection\"");
    assert_int_equal(media_asked(w, "link 1 2"), 2);
    assert_int_equal(media_asked(w, "baseline 1"), 1);

    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", c1);
    int patient_at = media_asked_at(w, "summary 1 1"), doctor_at = media_asked_at(w, "summary 2 2");
    assert_true(patient_at >= 0 && doctor_at >= 0);
    assert_true(patient_at < media_asked_at(w, "unlink 2"));
    assert_true(doctor_at < media_asked_at(w, "unlink 2"));
    assert_true(patient_at < media_asked_at(w, "release 1"));
    assert_int_equal(w->summary_count, 0); /* the answers come later */

    struct media_leg_summary s = {.request = 1,
                                  .found = true,
                                  .duration_ms = 61234,
                                  .rtt_ms = 12.346,
                                  .local_port = 50000,
                                  .protocol = "udp",
                                  .candidate_type = "host"};
    s.audio = (struct media_leg_stream_summary){.active = true,
                                                .codec = "opus",
                                                .packets_received = 3000,
                                                .bytes_received = 300000,
                                                .packets_sent = 2990,
                                                .bytes_sent = 299000,
                                                .packets_lost = 3,
                                                .jitter_ms = 1.234,
                                                .peer_reported = true,
                                                .peer_fraction_lost_pct = 100.0 / 256,
                                                .peer_lost = 2};
    snprintf(s.remote, sizeof(s.remote), "198.51.100.7:51234");
    s.request = 99; /* not a token of ours: ignored */
    sig_hub_media_summary(w->hub, 1, &s);
    assert_int_equal(w->summary_count, 0);
    s.request = 1;
    sig_hub_media_summary(w->hub, 2, &s); /* our token, but another leg: ignored */
    assert_int_equal(w->summary_count, 0);
    sig_hub_media_summary(w->hub, 1, &s);
    assert_int_equal(audits_of(w, "media_summary ok"), 1);
    char head[128];
    snprintf(head, sizeof(head), "patient %s ok 192.0.2.1 {", c1);
    assert_true(strncmp(w->summaries[0], head, strlen(head)) == 0);
    /* Two decimals, printed as such. */
    assert_non_null(strstr(w->summaries[0], "\"jitter_ms\":1.23}"));
    json_t *d = summary_detail(w, 0);
    assert_true(json_real_value(json_object_get(d, "duration_s")) == 61.2);
    assert_true(json_real_value(json_object_get(d, "rtt_ms")) == 12.35);
    json_t *audio = json_object_get(d, "audio");
    assert_string_equal(json_string_value(json_object_get(audio, "codec")), "opus");
    json_t *in = json_object_get(audio, "received"), *out = json_object_get(audio, "sent");
    assert_int_equal(json_integer_value(json_object_get(in, "packets")), 3000);
    assert_int_equal(json_integer_value(json_object_get(in, "bytes")), 300000);
    assert_int_equal(json_integer_value(json_object_get(in, "lost")), 3);
    assert_int_equal(json_integer_value(json_object_get(out, "packets")), 2990);
    assert_int_equal(json_integer_value(json_object_get(out, "bytes")), 299000);
    assert_int_equal(json_integer_value(json_object_get(out, "peer_reported_lost")), 2);
    assert_true(json_real_value(json_object_get(out, "peer_fraction_lost_pct")) == 0.39);
    assert_true(json_is_null(json_object_get(d, "video"))); /* not negotiated */
    json_t *ice = json_object_get(d, "ice");
    assert_string_equal(json_string_value(json_object_get(ice, "remote")), "198.51.100.7:51234");
    assert_string_equal(json_string_value(json_object_get(ice, "protocol")), "udp");
    assert_string_equal(json_string_value(json_object_get(ice, "type")), "host");
    assert_int_equal(json_integer_value(json_object_get(ice, "local_port")), 50000);
    json_decref(d);
    /* The doctor's leg was gone by the time the worker looked. */
    struct media_leg_summary gone = {.request = 2, .found = false};
    sig_hub_media_summary(w->hub, 2, &gone);
    assert_string_equal(w->summaries[1], "doctor dr.amal failed 192.0.2.1 {\"leg\":\"gone\"}");
    sig_hub_media_summary(w->hub, 2, &gone); /* answered once: a repeat is ignored */
    assert_int_equal(w->summary_count, 2);

    /* No leg at all, and a relay that has stopped: recorded at once. */
    join(w, 1, "general", "Second");
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 1, "\"type\":\"accept\"");
    assert_int_equal(media_asked(w, "baseline 2"), 2); /* a new consultation: counted afresh */
    w->summary_result = -ESHUTDOWN;
    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(last_event(w, 1, "called")));
    assert_int_equal(w->summary_count, 4);
    assert_non_null(strstr(w->summaries[2], "patient "));
    assert_non_null(strstr(w->summaries[2], " failed 192.0.2.1 {\"leg\":\"none\"}"));
    assert_non_null(strstr(w->summaries[3], "doctor dr.amal failed 192.0.2.1 "
                                            "{\"leg\":\"gone\",\"reason\":\"server_shutdown\"}"));

    /* Asked, never answered (a full mailbox): the server gives up at its stop. */
    w->summary_result = 0;
    join(w, 2, "general", "Third");
    ask(w, 2, "\"type\":\"offer\",\"sdp\":\"v=0 patient\""); /* leg 3 */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 2, "\"type\":\"accept\"");
    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(last_event(w, 2, "called")));
    assert_int_equal(media_asked(w, "summary 3 4"), 1);
    assert_int_equal(media_asked(w, "summary 2 5"), 1);
    sig_hub_media_summary_flush(w->hub);
    assert_int_equal(w->summary_count, 6);
    assert_int_equal(audits_of(w, "media_summary failed"), 5);
    assert_non_null(strstr(w->summaries[5], "{\"leg\":\"gone\",\"reason\":\"no_answer\"}"));
    sig_hub_media_summary_flush(w->hub); /* nothing left */
    assert_int_equal(w->summary_count, 6);

    /* The doctor's leg ends during the next one: gone, at once. The patient's summary is
     * still awaited when the hub goes: freed with it (ASan would tell). */
    join(w, 3, "general", "Fourth");
    ask(w, 3, "\"type\":\"offer\",\"sdp\":\"v=0 patient\""); /* leg 4 */
    ask(w, 5, "\"type\":\"call_next\",\"clinic\":\"general\"");
    ask(w, 3, "\"type\":\"accept\"");
    sig_hub_media_event(w->hub, 2, SIG_MEDIA_ENDED, "consent_timeout", ++w->now);
    ask(w, 5, "\"type\":\"end\",\"consultation\":\"%s\"", id_of(last_event(w, 3, "called")));
    assert_int_equal(media_asked(w, "summary 4 6"), 1);
    assert_int_equal(w->summary_count, 7);
    assert_string_equal(w->summaries[6], "doctor dr.amal failed 192.0.2.1 {\"leg\":\"gone\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(join_tells_position_and_resume_token, setup, teardown),
        cmocka_unit_test_setup_teardown(call_accept_end_and_next, setup, teardown),
        cmocka_unit_test_setup_teardown(two_doctors_never_get_the_same_patient, setup, teardown),
        cmocka_unit_test_setup_teardown(urgent_lane_and_return_to_place, setup, teardown),
        cmocka_unit_test_setup_teardown(transfer_moves_the_patient, setup, teardown),
        cmocka_unit_test_setup_teardown(grace_period_resume_and_abandon, setup, teardown),
        cmocka_unit_test_setup_teardown(who_may_do_what, setup, teardown),
        cmocka_unit_test_setup_teardown(disabling_an_account_ends_its_open_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_input_is_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_sign_ins_are_slowed_down, setup, teardown),
        cmocka_unit_test_setup_teardown(message_floods_are_refused_then_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_ends_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(media_legs_follow_the_consultation, setup, teardown),
        cmocka_unit_test_setup_teardown(media_leg_follows_a_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_media_ends_the_consultation_after_grace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(doctor_media_events_between_patients, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_media_forgotten_when_returned, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(media_summary_per_participant_at_the_end, setup,
                                                 teardown, (void *)&with_summaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
