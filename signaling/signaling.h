/*
 * signaling.h - the WebSocket protocol `tabib.v1`, clinics and their queues,
 * consultations, and the accounts of doctors and admins.
 *
 * The hub (hub.c) holds all of it and does no I/O: the transport hands it
 * connections and messages, and it answers through the callbacks in
 * struct sig_hub_io, so it is unit-tested and fuzzed directly. The WebSocket
 * and HTTP transport lives in server/http.c. Everything here runs on the
 * signalling thread; nothing is thread-safe. docs/protocol.md is the
 * protocol's specification.
 */
#ifndef TABIB_SIGNALING_H
#define TABIB_SIGNALING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "audit.h"
#include "base.h"
#include "media.h"

/* The WebSocket subprotocol browsers must ask for. */
#define SIG_SUBPROTOCOL "tabib.v1"

/* Largest message accepted, in bytes (larger frames close the connection). */
#define SIG_MESSAGE_MAX (64 * 1024)

/* ------------------------------------------------------------------------- */
/* Consultation state machine (consultation.c)                               */
/* ------------------------------------------------------------------------- */

enum sig_state {
    SIG_STATE_WAITING = 0,
    SIG_STATE_CALLED = 1,
    SIG_STATE_IN_CONSULTATION = 2,
    SIG_STATE_ENDED = 3,
};

enum sig_end_reason {
    SIG_END_NONE = 0,
    SIG_END_COMPLETED,       /* the doctor finished the consultation */
    SIG_END_PATIENT_LEFT,    /* the patient left the queue or the call */
    SIG_END_DOCTOR_ENDED,    /* the doctor ended it before it started */
    SIG_END_ABANDONED,       /* the patient's connection stayed away past the grace period */
    SIG_END_TRANSFERRED,     /* moved to another clinic's queue (a new consultation) */
    SIG_END_CONNECTION_LOST, /* a participant of a running consultation did not come back */
    SIG_END_SERVER_SHUTDOWN,
};

enum sig_event {
    SIG_EVENT_CALL,   /* a doctor calls the patient */
    SIG_EVENT_ACCEPT, /* the patient answers the call */
    SIG_EVENT_RETURN, /* the doctor sends the patient back to the queue */
    SIG_EVENT_END,    /* with a reason */
};

/*
 * The transition table: writes the next state for `event` (and `reason` for
 * SIG_EVENT_END) and returns 0, or returns -1 when the transition is not
 * allowed (answered to clients as `conflict`).
 */
int sig_state_next(enum sig_state from, enum sig_event event, enum sig_end_reason reason,
                   enum sig_state *to);

const char *sig_state_name(enum sig_state state);
const char *sig_end_reason_name(enum sig_end_reason reason);
int sig_end_reason_parse(const char *name, enum sig_end_reason *out);

/* ------------------------------------------------------------------------- */
/* Clinics                                                                    */
/* ------------------------------------------------------------------------- */

#define SIG_CLINIC_NAME_MAX 192

struct sig_clinic_config {
    char id[SIG_ID_MAX]; /* [a-z0-9_-], used in links: /c/<id> */
    char name_en[SIG_CLINIC_NAME_MAX];
    char name_ar[SIG_CLINIC_NAME_MAX];
    unsigned queue_limit;  /* patients waiting at most */
    bool has_hours;        /* false: always open */
    uint8_t open_days;     /* bit 0 Sunday .. bit 6 Saturday */
    uint16_t open_minute;  /* minutes after local midnight */
    uint16_t close_minute; /* exclusive; may be < open_minute (overnight) */
};

/* True when the clinic takes patients at local time `t` (seconds since the epoch). */
bool sig_clinic_is_open(const struct sig_clinic_config *clinic, int64_t t);

/* Parses "Sun-Thu 08:00-20:00" (days: Sun..Sat, a range or a comma list). 0 or -1. */
int sig_clinic_parse_hours(struct sig_clinic_config *clinic, const char *text);

/* ------------------------------------------------------------------------- */
/* The hub (hub.c)                                                            */
/* ------------------------------------------------------------------------- */

struct sig_hub_config {
    const struct sig_clinic_config *clinics; /* borrowed; outlives the hub */
    unsigned clinic_count;
    int64_t grace_ms;       /* a dropped participant keeps their place this long */
    int64_t session_ttl_ms; /* sign-in sessions last this long */
    unsigned max_conns_per_address;
    unsigned rate_per_second;   /* messages per connection, sustained */
    unsigned rate_burst;        /* ... and in a burst */
    int64_t appointment_ttl_ms; /* appointment tokens expire after this */
};

/* Fills `cfg` with the defaults documented in docs/configuration.md (no clinics). */
void sig_hub_config_defaults(struct sig_hub_config *cfg);

/*
 * How the hub reaches the outside world. `transport` is the caller's pointer
 * for a connection, given to sig_hub_connect(). Every callback is called on
 * the signalling thread, never re-entrantly into the hub.
 */
struct sig_hub_io {
    void *ctx;
    /* Queue a text message to a connection (copied). */
    void (*send)(void *ctx, void *transport, const char *text, size_t len);
    /* Close a connection with a WebSocket close code and reason; the hub has already forgotten it.
     */
    void (*close)(void *ctx, void *transport, int code, const char *reason);
    /* Record an audit event (borrowed for the call). */
    void (*audit)(void *ctx, const struct audit_event *event);

    /*
     * Media legs. All NULL when there is no media relay: `offer` is then
     * answered `unavailable`. A leg id is never 0.
     *
     * media_offer answers the SDP offer `sdp` (`len` bytes) with a leg
     * placed by `placement` (a clinic index: a clinic's legs share a media
     * worker, so a consultation relays inside one thread). `replaces` is the
     * sender's current leg (0 none): when the offer comes from the same
     * browser connection (renegotiation, ICE restart) that leg is kept and
     * its id returned. Returns the leg id and sets *answer (malloc'd SDP, the
     * hub frees it), or returns 0 with `err` set and *bad_offer telling the
     * offer's fault from the server's.
     */
    uint64_t (*media_offer)(void *ctx, unsigned placement, const char *sdp, size_t len,
                            uint64_t replaces, char **answer, bool *bad_offer, char *err,
                            size_t errlen);
    /* Relay between two legs (the same leg twice: loop it back to its browser, the waiting
     * patient's self-test); returns 0, or -EXDEV when they are on different workers. */
    int (*media_link)(void *ctx, uint64_t leg_a, uint64_t leg_b);
    /* Stop relaying to and from a leg (it stays up). */
    void (*media_unlink)(void *ctx, uint64_t leg);
    /* End a leg. */
    void (*media_release)(void *ctx, uint64_t leg);
    /*
     * Ask what a leg did since its previous request (or its creation) and start a new
     * baseline; `request` 0 only starts the baseline. A non-zero `request` is answered later,
     * once, through sig_hub_media_summary(). Returns 0, or a negative errno when nothing
     * will come: -ESHUTDOWN (the relay has stopped), -EAGAIN, -ENOMEM, -EINVAL. NULL: the hub
     * records no media summaries.
     */
    int (*media_leg_summary)(void *ctx, uint64_t leg, uint64_t request);
};

/* What the media relay reports about a leg (see sig_hub_media_event()). */
enum sig_media_event {
    SIG_MEDIA_CONNECTED = 0, /* DTLS done: media flows */
    SIG_MEDIA_ENDED,         /* the leg is gone: consent timeout, DTLS failure, refused */
    SIG_MEDIA_FLOWING,       /* media went both ways: a waiting patient's self-test passed */
};

struct sig_hub;

/*
 * Returns a new hub. `accounts` and `log` are borrowed and must outlive it;
 * `accounts` may be NULL in tests that need no sign-in. Free with
 * sig_hub_free().
 */
struct sig_hub *sig_hub_new(const struct sig_hub_config *cfg, struct sig_accounts *accounts,
                            const struct sig_hub_io *io, struct base_logger *log);
void sig_hub_free(struct sig_hub *hub); /* NULL does nothing */

/*
 * A new WebSocket connection from `address` (text, borrowed). Returns 0, or
 * -EMFILE when the address already has max_conns_per_address connections
 * (the caller refuses the connection).
 */
int sig_hub_connect(struct sig_hub *hub, void *transport, const char *address, int64_t now_ms);

/* One complete text message (borrowed). Replies and events go out through io.send. */
void sig_hub_message(struct sig_hub *hub, void *transport, const char *data, size_t len,
                     int64_t now_ms);

/* The connection is gone (closed by either side). Starts the grace period of its participant. */
void sig_hub_disconnect(struct sig_hub *hub, void *transport, int64_t now_ms);

/*
 * The media relay reports on leg `leg` (`reason` names why it ended:
 * "consent_timeout", "fingerprint", ...; borrowed). Tells the participant
 * and records it.
 */
void sig_hub_media_event(struct sig_hub *hub, uint64_t leg, enum sig_media_event event,
                         const char *reason, int64_t now_ms);

/*
 * The audio monitor on leg `leg`, in a consultation: `state` ("ok",
 * "silent", "no_packets") when `state_changed` (both participants are told,
 * and a warning audited), and the speaking level 0..100 (the doctor sees the
 * patient's).
 */
void sig_hub_media_audio(struct sig_hub *hub, uint64_t leg, const char *state, bool state_changed,
                         unsigned level, int64_t now_ms);

/*
 * The media relay's answer to a summary the hub asked for when a consultation
 * ended (`s->request` is the hub's token; borrowed). Records the audit event
 * `media_summary` for that participant: outcome "ok" with the figures, or
 * "failed" with {"leg":"gone"} when the relay no longer had the leg. An
 * unknown token is ignored.
 */
void sig_hub_media_summary(struct sig_hub *hub, uint64_t leg, const struct media_leg_summary *s);

/*
 * Records every media summary still awaited as "failed" ({"leg":"gone",
 * "reason":"no_answer"}) and forgets it. For the server once the media
 * engine has stopped and its last answers were handed over: an answer lost
 * to a full mailbox never comes, and each participant still gets one event.
 */
void sig_hub_media_summary_flush(struct sig_hub *hub);

/* Expires grace periods; call about once a second. */
void sig_hub_tick(struct sig_hub *hub, int64_t now_ms);

/* Ends every open consultation with reason server_shutdown (and tells the participants). */
void sig_hub_shutdown(struct sig_hub *hub, int64_t now_ms);

/*
 * HTTPS API: POST /api/login and POST /api/appointments. `body` is the
 * request body (borrowed), `bearer` the token from "Authorization: Bearer"
 * (or NULL). Writes the HTTP status and returns a new JSON reply body
 * (free with free()), or NULL when out of memory.
 */
char *sig_hub_http_login(struct sig_hub *hub, const char *body, size_t len, const char *address,
                         int64_t now_ms, int *status);
char *sig_hub_http_appointment(struct sig_hub *hub, const char *bearer, const char *body,
                               size_t len, const char *address, int64_t now_ms, int *status);

/*
 * GET /api/clinics: the clinics as a patient's page may show them before
 * anyone signs in (ids, names in both languages, open now or not). Public:
 * the same names are on every clinic's link. New JSON text (free()), or NULL.
 */
char *sig_hub_http_clinics(struct sig_hub *hub, int64_t wall_ms);

/* An admin cleared to read the audit log, and over which clinics. */
struct sig_audit_reader {
    char username[64];
    bool all_clinics;
    unsigned clinic_count;
    char clinics[32][64];
};

/*
 * Clears a read of the audit log (`what`, e.g. "GET /api/audit/sessions")
 * for the holder of `bearer`. Returns 0 with `who` filled for an admin.
 * Otherwise returns the HTTP status, 401 (no valid token) or 403 (a doctor's
 * session, or a patient's resume token: only admins read the log), with a
 * JSON error body in *error (free with free()); the denial is audited.
 */
int sig_hub_http_audit_access(struct sig_hub *hub, const char *bearer, const char *what,
                              const char *address, int64_t now_ms, struct sig_audit_reader *who,
                              char **error);

struct sig_hub_stats {
    unsigned connections;
    unsigned patients_waiting;
    unsigned consultations_called;
    unsigned consultations_in_progress;
    unsigned doctors_on_duty;
    uint64_t consultations_ended;
    uint64_t messages;
    uint64_t errors;
    uint64_t rate_limited;
};

void sig_hub_get_stats(const struct sig_hub *hub, struct sig_hub_stats *out);

/*
 * Builds {"type":"error","re":<re>,"code":code,"message":message}. `re_json`
 * is the request's id as JSON text ("\"abc\"", "7") or NULL for null.
 * Returns new text (free with free()).
 */
char *sig_error_reply(const char *re_json, const char *code, const char *message);

#endif
