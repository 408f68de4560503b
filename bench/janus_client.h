/*
 * janus_client.h - a small blocking client of the Janus JSON API over plain
 * WebSocket (subprotocol "janus-protocol"), for the benchmark: Janus's EchoTest
 * plugin as the far end of a C test peer (tests/support/test_peer.h).
 *
 * One connection carries many echo legs. Each leg is its own Janus session with
 * one janus.plugin.echotest handle, as N browsers would have: a session per
 * page. Sessions cost Janus nothing on the media path (every handle has its ICE
 * agent, DTLS, SRTP and by default its own event loop thread whichever session
 * it sits in), and a leg's own session keeps legs apart: destroying one never
 * touches another, and Janus's per-session lock and handle table are never
 * shared. The configuration of bench/janus/janus-config.sh has no session
 * timeout, so no keepalives are needed; jc_keepalive() is there for a Janus
 * that has one (one keepalive per session and timeout period).
 *
 * Every request carries a fresh transaction id; the client waits for the reply
 * with that id (skipping Janus's "ack"s where a result follows, and anything
 * else that arrives meanwhile: the asynchronous "webrtcup", "media", "hangup",
 * "slowlink" and "detached" events, or late replies to other transactions).
 * Those skipped events are counted (jc_counts); between requests they wait in
 * the socket until the next request or jc_poll_events() reads them. One
 * request at a time: the calls block the calling thread, and a client belongs
 * to one thread at a time.
 *
 * Errors: functions returning int give 0, or a negative errno value with a
 * one-line English message in `err` (`err` may be NULL): -ETIMEDOUT when no
 * reply came within the client's timeout, -EPROTO for a reply that is not what
 * the API promises or a Janus error reply (its code and reason in `err`), -EPIPE
 * when the connection is gone, -ENOMEM. Nothing is logged.
 */
#ifndef TABIB_JANUS_CLIENT_H
#define TABIB_JANUS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define JC_PLUGIN_ECHOTEST "janus.plugin.echotest"
#define JC_TIMEOUT_MS      10000 /* per request, unless jc_set_timeout() says otherwise */

struct jc;

/* One echo leg: a session and its EchoTest handle. */
struct jc_leg {
    uint64_t session_id;
    uint64_t handle_id;
};

/* What the client skipped while it waited for replies (see above). */
struct jc_counts {
    uint64_t webrtcup; /* "webrtcup": a handle's PeerConnection is up (ICE and DTLS done) */
    uint64_t hangup;   /* "hangup": a handle's PeerConnection went down */
    uint64_t media;    /* "media": Janus started or stopped receiving a medium */
    uint64_t slowlink; /* "slowlink": Janus saw losses */
    uint64_t other;    /* anything else: "detached", late replies, plugin events... */
};

/*
 * Opens ws://127.0.0.1:`port`/ with subprotocol janus-protocol. Returns a new
 * client (free with jc_free()), or NULL with `err`.
 */
struct jc *jc_connect(uint16_t port, char *err, size_t errlen);

/* Closes the WebSocket (Janus then destroys the sessions left on it) and frees `jc`. NULL does
 * nothing. */
void jc_free(struct jc *jc);

/* The per-request timeout from now on (JC_TIMEOUT_MS by default). */
void jc_set_timeout(struct jc *jc, int timeout_ms);

/* Copies the counts of the events read so far into `out`. */
void jc_counts(const struct jc *jc, struct jc_counts *out);

/*
 * Reads and counts whatever Janus sends for `timeout_ms` (asynchronous events
 * between requests). Returns 0, or -EPIPE with `err` when the connection is
 * gone.
 */
int jc_poll_events(struct jc *jc, int timeout_ms, char *err, size_t errlen);

/* "create": a new session. Sets *session_id. */
int jc_create_session(struct jc *jc, uint64_t *session_id, char *err, size_t errlen);

/* "attach": a new handle of `plugin` (borrowed, e.g. JC_PLUGIN_ECHOTEST) in the session. Sets
 * *handle_id. */
int jc_attach(struct jc *jc, uint64_t session_id, const char *plugin, uint64_t *handle_id,
              char *err, size_t errlen);

/*
 * "message" to an EchoTest handle: body {"audio":true,"video":true} with the
 * JSEP offer `offer_sdp` (borrowed); waits past the ack for the plugin's event
 * on the same transaction and returns its JSEP answer in *answer_sdp (new,
 * free with free()). An event without a JSEP, or whose plugin data carries an
 * "error", is -EPROTO (the plugin's error in `err`).
 */
int jc_echo_offer(struct jc *jc, uint64_t session_id, uint64_t handle_id, const char *offer_sdp,
                  char **answer_sdp, char *err, size_t errlen);

/* "trickle" with {"completed":true}: we have no more candidates (our offer had none: Janus
 * learns our address from our checks, a peer-reflexive candidate). Waits for the ack. */
int jc_trickle_completed(struct jc *jc, uint64_t session_id, uint64_t handle_id, char *err,
                         size_t errlen);

/* "keepalive" for the session. Waits for the ack. */
int jc_keepalive(struct jc *jc, uint64_t session_id, char *err, size_t errlen);

/* "detach" the handle (Janus hangs its PeerConnection up). Waits for the success. */
int jc_detach(struct jc *jc, uint64_t session_id, uint64_t handle_id, char *err, size_t errlen);

/* "destroy" the session and whatever handles it still has. Waits for the success. */
int jc_destroy_session(struct jc *jc, uint64_t session_id, char *err, size_t errlen);

/*
 * A whole echo leg up to the answer: create a session, attach EchoTest, send
 * the offer, take the answer, trickle "completed". Fills `leg` and
 * *answer_sdp (new, free with free()). On failure the session, if made, is
 * destroyed again and `leg` zeroed.
 */
int jc_echo_leg_open(struct jc *jc, const char *offer_sdp, struct jc_leg *leg, char **answer_sdp,
                     char *err, size_t errlen);

/* Detaches the leg's handle and destroys its session. A zeroed leg does nothing. */
int jc_echo_leg_close(struct jc *jc, struct jc_leg *leg, char *err, size_t errlen);

#endif
