/*
 * worker.c - a media worker: one thread, one UDP socket, one epoll loop, and
 * the legs pinned to it.
 *
 * Each worker owns its socket (port base_port + index), its legs, their
 * DTLS and SRTP state and its timers, so the packet path needs no lock.
 * Datagrams are read in batches with recvmmsg() into buffers allocated once
 * at start and sent in batches with sendmmsg(); nothing on that path
 * allocates, locks or logs. Counters are atomics written only by the worker
 * (relaxed stores of its own totals) and read by the signalling thread for
 * /metrics.
 *
 * Every datagram is classified by its first byte (RFC 7983):
 *  - STUN goes to the ICE-lite agent: a Binding request is matched to a leg
 *    by the USERNAME's first half (our ufrag), checked (FINGERPRINT,
 *    MESSAGE-INTEGRITY with the leg's password) and answered with
 *    XOR-MAPPED-ADDRESS. A valid check makes its source an address the leg
 *    takes media from; USE-CANDIDATE nominates it. A failed check is counted
 *    and dropped without an answer.
 *  - DTLS and SRTP are matched to a leg by source address (a small hash
 *    table rebuilt when an address changes, which is rare). DTLS runs the
 *    leg's handshake (server passive); once it connects, the exported keys
 *    make the leg's SRTP pair. SRTP is decrypted in place and handed to the
 *    relay (relay.c), which queues what goes to the linked leg.
 *
 * Timers: consent freshness (RFC 7675) once a second over all legs; DTLS
 * retransmissions at their deadlines, scanned only while a handshake runs.
 */
#include "leg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/rand.h>

#define MAILBOX_CAPACITY   256
#define SOCKET_BUFFER      (4 * 1024 * 1024)
#define CONSENT_DEFAULT_MS 30000
#define TIMER_TICK_MS      1000
#define STUN_REPLY_MAX     256
#define FEEDBACK_EVERY_MS  50  /* transport-wide feedback to each sending browser */
#define AUDIO_CHECK_MS     250 /* the audio monitors' verdicts and speaking levels */
#define AUDIO_LEVEL_STEP   5   /* a speaking level change worth telling the doctor */

struct media_engine {
    unsigned worker_count;
    struct media_worker **workers;
    struct base_logger *log;
    const char *public_ip;
    _Atomic uint64_t next_leg_serial;
    struct leg_records records; /* the signalling thread's: see answer.c */
};

static const char *const drop_reason_names[MEDIA_DROP_REASON_COUNT] = {
    [MEDIA_DROP_TOO_SHORT] = "too_short",
    [MEDIA_DROP_TOO_LARGE] = "too_large",
    [MEDIA_DROP_UNKNOWN_KIND] = "unknown_kind",
    [MEDIA_DROP_NO_LEG] = "no_leg",
    [MEDIA_DROP_NOT_CONNECTED] = "not_connected",
    [MEDIA_DROP_DTLS] = "dtls",
    [MEDIA_DROP_SRTP] = "srtp",
    [MEDIA_DROP_MALFORMED] = "malformed",
    [MEDIA_DROP_UNKNOWN_PAYLOAD] = "unknown_payload",
    [MEDIA_DROP_RTX] = "rtx",
    [MEDIA_DROP_NO_PEER] = "no_peer",
    [MEDIA_DROP_PEER_NOT_READY] = "peer_not_ready",
    [MEDIA_DROP_STALE] = "stale",
};

const char *media_drop_reason_name(enum media_drop_reason reason)
{
    return (unsigned)reason < MEDIA_DROP_REASON_COUNT ? drop_reason_names[reason] : "unknown";
}

_Static_assert(-MEDIA_DTLS_ERR_MIN < MEDIA_FAILURE_KINDS, "DTLS failure kinds fit the array");
_Static_assert(-MEDIA_SRTP_ERR_MIN < MEDIA_FAILURE_KINDS, "SRTP failure kinds fit the array");

const char *media_dtls_failure_name(unsigned index)
{
    if (index == 0 || index > (unsigned)-MEDIA_DTLS_ERR_MIN)
        return NULL;
    return media_dtls_error_name(-(int)index);
}

const char *media_srtp_failure_name(unsigned index)
{
    if (index == 0 || index > (unsigned)-MEDIA_SRTP_ERR_MIN)
        return NULL;
    return media_srtp_error_name(-(int)index);
}

enum media_packet_kind media_classify_packet(const uint8_t *data, size_t len)
{
    if (len == 0)
        return MEDIA_PACKET_UNKNOWN;
    uint8_t b = data[0];
    if (b <= 3)
        return MEDIA_PACKET_STUN;
    if (b >= 20 && b <= 63)
        return MEDIA_PACKET_DTLS;
    if (b >= 128 && b <= 191)
        return MEDIA_PACKET_RTP;
    return MEDIA_PACKET_UNKNOWN; /* ZRTP, TURN channels and the rest: not ours */
}

enum {
    MEDIA_MSG_LEG_ADD = BASE_MSG_MODULE_FIRST,
    MEDIA_MSG_LEG_REMOVE,
    MEDIA_MSG_LEG_LINK,
    MEDIA_MSG_LEG_UNLINK,
    MEDIA_MSG_LEG_UPDATE,
    MEDIA_MSG_LEG_SUMMARY, /* arg = the leg; ptr = the answer to fill, NULL: a baseline only */
};

/* The smallest datagram worth looking at: a STUN header or a minimal RTCP packet. */
#define MIN_DATAGRAM 8

static int64_t now_ms(void)
{
    return base_now_ms();
}

static uint64_t now_us(void)
{
    return (uint64_t)base_now_ms() * 1000u;
}

/* Pushes an event about a leg to the owner; -1 when it could not (no owner, mailbox full). */
static int push_event(struct media_worker *w, uint32_t type, uint64_t leg_id, void *ptr)
{
    struct base_msg m = {
        .type = type, .sender = BASE_THREAD_MEDIA_FIRST + w->index, .arg = leg_id, .ptr = ptr};
    return w->owner && base_mailbox_push(w->owner, &m) == 0 ? 0 : -1;
}

void worker_report(struct media_worker *w, uint32_t type, uint64_t leg_id, const char *reason)
{
    /* A full owner mailbox loses the event: counted there. `reason` is a static string. */
    push_event(w, type, leg_id, (void *)reason);
}

/* ------------------------------------------------------------------------- */
/* Legs by ufrag, id and address                                              */
/* ------------------------------------------------------------------------- */

static struct leg *leg_by_ufrag(struct media_worker *w, const char *ufrag, size_t len)
{
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        struct leg *l = &w->legs[i];
        if (l->in_use && strlen(l->setup.ice.local_ufrag) == len &&
            memcmp(l->setup.ice.local_ufrag, ufrag, len) == 0)
            return l;
    }
    return NULL;
}

static struct leg *leg_by_id(struct media_worker *w, uint64_t id)
{
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++)
        if (w->legs[i].in_use && w->legs[i].id == id)
            return &w->legs[i];
    return NULL;
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* FNV-1a over the address and port: cheap, and the table is rebuilt, not attacked, on change. */
static unsigned address_hash(const struct sockaddr_storage *a)
{
    const uint8_t *p;
    size_t n;
    uint16_t port;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)a;
        p = (const uint8_t *)&v4->sin_addr;
        n = sizeof(v4->sin_addr);
        port = v4->sin_port;
    } else {
        const struct sockaddr_in6 *v6 = (const void *)a;
        p = (const uint8_t *)&v6->sin6_addr;
        n = sizeof(v6->sin6_addr);
        port = v6->sin6_port;
    }
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    h = (h ^ (port >> 8)) * 16777619u;
    return h % LEG_ADDRESS_SLOTS;
}

/* Rebuilds the address table from the legs: called when a leg gains, moves or loses its address. */
static void rebuild_address_table(struct media_worker *w)
{
    memset(w->by_address, 0, sizeof(w->by_address));
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        const struct leg *l = &w->legs[i];
        if (!l->in_use || !l->has_address)
            continue;
        unsigned h = address_hash(&l->addr);
        while (w->by_address[h])
            h = (h + 1) % LEG_ADDRESS_SLOTS; /* twice as many slots as legs: always ends */
        w->by_address[h] = (uint16_t)(i + 1);
    }
}

static struct leg *leg_by_address(struct media_worker *w, const struct sockaddr_storage *from)
{
    for (unsigned h = address_hash(from), probes = 0; probes < LEG_ADDRESS_SLOTS;
         h = (h + 1) % LEG_ADDRESS_SLOTS, probes++) {
        uint16_t slot = w->by_address[h];
        if (!slot)
            return NULL;
        struct leg *l = &w->legs[slot - 1];
        if (same_address(&l->addr, from))
            return l;
    }
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Sending                                                                    */
/* ------------------------------------------------------------------------- */

void worker_flush(struct media_worker *w)
{
    if (w->out_count == 0)
        return;
    /* A datagram the kernel refuses (buffer full, address gone) is dropped and counted. */
    struct base_udp_sent sent;
    base_udp_send(w->sender, w->out_msgs, w->out_count, &sent);
    leg_count(&w->counters.packets_sent, sent.datagrams);
    leg_count(&w->counters.bytes_sent, sent.bytes);
    leg_count(&w->counters.send_failures, sent.failed);
    leg_count(&w->counters.send_messages, sent.messages);
    w->out_count = 0;
}

struct out_slot *worker_out_slot(struct media_worker *w, const struct leg *to)
{
    if (w->out_count == LEG_SEND_BATCH)
        worker_flush(w);
    struct out_slot *slot = &w->out[w->out_count];
    memcpy(&slot->addr, &to->addr, to->addr_len);
    w->out_msgs[w->out_count].msg_hdr.msg_namelen = to->addr_len;
    return slot;
}

void worker_out_commit(struct media_worker *w, size_t len)
{
    w->out_iovs[w->out_count].iov_len = len;
    w->out_count++;
}

/* ------------------------------------------------------------------------- */
/* Leg lifetime                                                               */
/* ------------------------------------------------------------------------- */

static void leg_unlink(struct media_worker *w, struct leg *l)
{
    if (l->peer) {
        /* A limit a receiver's path put on its sender ends with the pair. */
        relay_forget_receive_limit(w, l);
        relay_forget_receive_limit(w, l->peer);
        media_audio_monitor_disarm(&l->peer->audio);
        l->peer->peer = NULL;
        l->peer = NULL;
    }
    media_audio_monitor_disarm(&l->audio);
}

/* Sends what DTLS queued for the leg (handshake flights, alerts): rare, so directly. */
static void drain_dtls(struct media_worker *w, struct leg *l)
{
    uint8_t buf[LEG_DATAGRAM_MAX];
    int n;
    while ((n = media_dtls_next_outgoing(l->dtls, buf, sizeof(buf))) > 0) {
        if (sendto(w->udp_fd, buf, (size_t)n, 0, (const struct sockaddr *)&l->addr, l->addr_len) ==
            n) {
            leg_count(&w->counters.packets_sent, 1);
            leg_count(&w->counters.bytes_sent, (uint64_t)n);
        } else {
            leg_count(&w->counters.send_failures, 1);
        }
    }
}

static void worker_remove_leg(struct media_worker *w, struct leg *l)
{
    bool had_address = l->has_address;
    if (l->dtls && media_dtls_state(l->dtls) == MEDIA_DTLS_CONNECTED) {
        /* Tell the browser at once rather than leaving it to its consent timer. */
        media_dtls_close(l->dtls);
        drain_dtls(w, l);
    }
    leg_unlink(w, l);
    /* A leg linked to this one before it arrived waits for it no longer. */
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++)
        if (w->legs[i].in_use && w->legs[i].peer_id == l->id)
            w->legs[i].peer_id = 0;
    if (l->dtls_deadline_ms)
        w->handshaking--;
    media_dtls_free(l->dtls);
    media_srtp_free(l->srtp);
    relay_leg_free(l);
    memset(l, 0, sizeof(*l));
    if (had_address)
        rebuild_address_table(w);
    atomic_store_explicit(&w->counters.legs_active,
                          atomic_load_explicit(&w->counters.legs_active, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

static void link_legs(struct media_worker *w, struct leg *a, struct leg *b)
{
    if (a->peer == b)
        return;
    leg_unlink(w, a);
    leg_unlink(w, b);
    a->peer = b;
    b->peer = a;
    a->peer_id = b->peer_id = 0;
    if (a != b) {
        /* In a consultation: watch both microphones (a self-test loop is not one). */
        media_audio_monitor_reset(&a->audio, now_ms());
        media_audio_monitor_reset(&b->audio, now_ms());
        a->audio_level_reported = b->audio_level_reported = 0;
    }
    /* Each outgoing stream continues its numbering with the new source; each
     * viewer needs a key frame to start decoding. */
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        media_rtp_rewriter_switch(&a->streams[k].rewriter);
        media_rtp_rewriter_switch(&b->streams[k].rewriter);
    }
    uint64_t now = now_us();
    relay_request_key_frame(w, a, now);
    if (b != a)
        relay_request_key_frame(w, b, now);
    worker_flush(w);
}

static void worker_add_leg(struct media_worker *w, struct leg_setup *setup)
{
    struct leg *slot = NULL;
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER && !slot; i++)
        if (!w->legs[i].in_use)
            slot = &w->legs[i];
    if (!slot || leg_by_id(w, setup->ice.leg_id) ||
        leg_by_ufrag(w, setup->ice.local_ufrag, strlen(setup->ice.local_ufrag))) {
        worker_report(w, MEDIA_EVENT_LEG_REFUSED, setup->ice.leg_id, NULL);
        return;
    }
    memset(slot, 0, sizeof(*slot));
    slot->setup = *setup;
    if (setup->has_fingerprint) {
        slot->dtls = media_dtls_new(w->dtls, &setup->remote_fingerprint, NULL);
        if (!slot->dtls) {
            worker_report(w, MEDIA_EVENT_LEG_REFUSED, setup->ice.leg_id, NULL);
            return;
        }
    }
    slot->in_use = true;
    slot->id = setup->ice.leg_id;
    slot->last_check_ms = now_ms();
    slot->baseline_ms = slot->last_check_ms; /* a summary counts from here at first */
    media_audio_monitor_init(&slot->audio, NULL, w->audio_decoder);
    if (relay_leg_init(slot) != 0) {
        relay_leg_free(slot);
        media_dtls_free(slot->dtls);
        memset(slot, 0, sizeof(*slot));
        worker_report(w, MEDIA_EVENT_LEG_REFUSED, setup->ice.leg_id, NULL);
        return;
    }
    leg_count(&w->counters.legs_active, 1);
    /* A link asked for before this leg arrived. */
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        struct leg *other = &w->legs[i];
        if (other != slot && other->in_use && other->peer_id == slot->id)
            link_legs(w, other, slot);
    }
}

/*
 * A new offer from the same browser connection: new ICE credentials (an ICE
 * restart) and whatever else it changed, while DTLS, SRTP, the address, the
 * link and every stream's numbering go on.
 */
static void worker_update_leg(struct media_worker *w, const struct leg_setup *setup)
{
    struct leg *l = leg_by_id(w, setup->ice.leg_id);
    if (!l)
        return; /* gone meanwhile: the owner has heard of it */
    struct leg *clash = leg_by_ufrag(w, setup->ice.local_ufrag, strlen(setup->ice.local_ufrag));
    if (clash && clash != l) {
        worker_report(w, MEDIA_EVENT_LEG_REFUSED, setup->ice.leg_id, NULL);
        return;
    }
    l->setup.ice = setup->ice;
    memcpy(l->setup.ext_id, setup->ext_id, sizeof(l->setup.ext_id));
    for (unsigned k = 0; k < LEG_KIND_COUNT; k++) {
        l->setup.streams[k] = setup->streams[k];
        l->streams[k].setup = setup->streams[k];
    }
    /* Video added, or now received, by the renegotiation needs its packet cache. */
    if (relay_leg_ensure_cache(l) != 0)
        worker_report(w, MEDIA_EVENT_LEG_REFUSED, l->id, NULL);
    /* The browser checks the new credentials at once; consent starts over from now. */
    l->last_check_ms = now_ms();
}

/*
 * A summary request: fills `answer` (when not NULL) with what the leg did since its baseline
 * and hands it to the owner (found false when the leg is gone), then starts a new baseline.
 */
static void worker_leg_summary(struct media_worker *w, uint64_t leg_id,
                               struct media_leg_summary *answer)
{
    struct leg *l = leg_by_id(w, leg_id);
    if (l)
        relay_leg_summary(w, l, now_ms(), answer);
    else if (answer)
        answer->found = false;
    if (answer && push_event(w, MEDIA_EVENT_LEG_SUMMARY, leg_id, answer) != 0)
        free(answer); /* the owner's mailbox is full: lost, like any event then */
}

static void worker_link(struct media_worker *w, uint64_t a_id, uint64_t b_id)
{
    struct leg *a = leg_by_id(w, a_id), *b = leg_by_id(w, b_id);
    if (a && a_id == b_id)
        link_legs(w, a, a); /* the self-test loop */
    else if (a && b)
        link_legs(w, a, b);
    else if (a)
        a->peer_id = b_id; /* b is still in the mailbox behind us, or gone: wait for it */
    else if (b)
        b->peer_id = a_id;
}

/* ------------------------------------------------------------------------- */
/* ICE-lite                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * Answers a valid Binding request for one of our legs; anything else is
 * counted and dropped without an answer (an attacker learns nothing, and a
 * browser simply retries).
 */
static void worker_handle_stun(struct media_worker *w, const uint8_t *data, size_t len,
                               const struct sockaddr_storage *from, socklen_t from_len)
{
    struct media_stun_msg msg;
    const char *ufrag;
    size_t ufrag_len;
    struct leg *l = NULL;
    if (media_stun_parse(data, len, &msg) == 0 && msg.cls == MEDIA_STUN_REQUEST &&
        media_stun_local_ufrag(&msg, &ufrag, &ufrag_len) == 0)
        l = leg_by_ufrag(w, ufrag, ufrag_len);
    const struct media_leg_params *cred = l ? &l->setup.ice : NULL;
    if (!l || media_stun_check_binding(w->stun, &msg, cred->local_ufrag, cred->local_pwd,
                                       cred->remote_ufrag[0] ? cred->remote_ufrag : NULL) !=
                  MEDIA_STUN_CHECK_OK) {
        leg_count(&w->counters.stun_refused, 1);
        return;
    }
    uint8_t reply[STUN_REPLY_MAX];
    int n = media_stun_build_binding_success(w->stun, msg.txid, from, cred->local_pwd, reply,
                                             sizeof(reply));
    if (n > 0 &&
        sendto(w->udp_fd, reply, (size_t)n, 0, (const struct sockaddr *)from, from_len) == n) {
        leg_count(&w->counters.stun_answered, 1);
        leg_count(&w->counters.packets_sent, 1);
        leg_count(&w->counters.bytes_sent, (uint64_t)n);
    }
    l->last_check_ms = now_ms();
    /* Before nomination, the latest valid check's source is where DTLS comes
     * from (browsers start DTLS as soon as a pair works); after it, only a
     * new nomination moves the leg. */
    bool moved =
        !l->has_address || (!same_address(&l->addr, from) && (msg.use_candidate || !l->nominated));
    if (moved) {
        /* The address now belongs to this leg: an older leg of the same browser socket (a
         * replaced offer) stops receiving from it, and lapses by consent. */
        struct leg *previous = leg_by_address(w, from);
        if (previous && previous != l)
            previous->has_address = previous->nominated = false;
        l->addr = *from;
        l->addr_len = from_len;
        l->has_address = true;
        rebuild_address_table(w);
    }
    if (msg.use_candidate && (moved || !l->nominated)) {
        l->nominated = true;
        leg_count(&w->counters.legs_nominated, 1);
        worker_report(w, MEDIA_EVENT_LEG_NOMINATED, l->id, NULL);
    }
}

/* ------------------------------------------------------------------------- */
/* DTLS                                                                       */
/* ------------------------------------------------------------------------- */

static void schedule_dtls(struct media_worker *w, struct leg *l)
{
    int ms = l->dtls ? media_dtls_timeout_ms(l->dtls) : -1;
    bool had = l->dtls_deadline_ms != 0;
    l->dtls_deadline_ms = ms >= 0 ? now_ms() + ms : 0;
    if (!had && l->dtls_deadline_ms)
        w->handshaking++;
    else if (had && !l->dtls_deadline_ms)
        w->handshaking--;
    if (l->dtls_deadline_ms && (!w->next_dtls_ms || l->dtls_deadline_ms < w->next_dtls_ms))
        w->next_dtls_ms = l->dtls_deadline_ms;
}

/* The leg's DTLS failed or closed: count, report, and end the leg. */
static void dtls_ended(struct media_worker *w, struct leg *l)
{
    int failure = media_dtls_failure(l->dtls);
    uint64_t id = l->id;
    const char *reason = "closed";
    if (failure < 0 && failure >= MEDIA_DTLS_ERR_MIN) {
        leg_count(&w->counters.dtls_failures[-failure], 1);
        reason = media_dtls_error_name(failure);
    }
    drain_dtls(w, l); /* the alert, if any */
    worker_remove_leg(w, l);
    worker_report(w, MEDIA_EVENT_LEG_FAILED, id, reason);
}

/* After DTLS progressed: send its output, key SRTP on connection, end the leg on failure. */
static void dtls_progress(struct media_worker *w, struct leg *l)
{
    drain_dtls(w, l);
    enum media_dtls_state st = media_dtls_state(l->dtls);
    if (st == MEDIA_DTLS_FAILED || st == MEDIA_DTLS_CLOSED) {
        dtls_ended(w, l);
        return;
    }
    if (st == MEDIA_DTLS_CONNECTED && !l->srtp) {
        struct media_srtp_keys keys;
        int err = 0;
        if (media_dtls_srtp_keys(l->dtls, &keys) == 0)
            l->srtp = media_srtp_new(&keys, &err);
        memset(&keys, 0, sizeof(keys));
        if (!l->srtp) {
            uint64_t id = l->id;
            leg_count(&w->counters.dtls_failures[-MEDIA_DTLS_ERR_EXPORT], 1);
            worker_remove_leg(w, l);
            worker_report(w, MEDIA_EVENT_LEG_FAILED, id,
                          media_dtls_error_name(MEDIA_DTLS_ERR_EXPORT));
            return;
        }
        leg_count(&w->counters.dtls_connected, 1);
        worker_report(w, MEDIA_EVENT_LEG_CONNECTED, l->id, NULL);
        /* The browser behind the peer leg may have been waiting for this one. */
        if (l->peer)
            relay_request_key_frame(w, l->peer, now_us());
    }
    schedule_dtls(w, l);
}

static void worker_handle_dtls(struct media_worker *w, struct leg *l, const uint8_t *data,
                               size_t len)
{
    if (!l->dtls) {
        leg_drop(w, MEDIA_DROP_NOT_CONNECTED);
        return;
    }
    int rc = media_dtls_handle_datagram(l->dtls, data, len);
    if (rc == MEDIA_DTLS_ERR_MALFORMED || rc == MEDIA_DTLS_ERR_NOT_ACTIVE ||
        rc == MEDIA_DTLS_ERR_INVALID) {
        leg_drop(w, MEDIA_DROP_DTLS);
        return;
    }
    dtls_progress(w, l);
}

/* DTLS retransmissions whose time has come. Only runs while handshakes run. */
static void worker_dtls_timers(struct media_worker *w, int64_t now)
{
    w->next_dtls_ms = 0;
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER && w->handshaking; i++) {
        struct leg *l = &w->legs[i];
        if (!l->in_use || !l->dtls_deadline_ms)
            continue;
        if (l->dtls_deadline_ms <= now) {
            if (media_dtls_handle_timeout(l->dtls) < 0) {
                dtls_ended(w, l);
                continue;
            }
            drain_dtls(w, l);
            schedule_dtls(w, l);
        } else if (!w->next_dtls_ms || l->dtls_deadline_ms < w->next_dtls_ms) {
            w->next_dtls_ms = l->dtls_deadline_ms;
        }
    }
}

/* ------------------------------------------------------------------------- */
/* The packet path                                                            */
/* ------------------------------------------------------------------------- */

static void worker_handle_srtp(struct media_worker *w, struct leg *l, uint8_t *data, size_t len,
                               uint64_t now)
{
    if (!l->srtp) {
        leg_drop(w, MEDIA_DROP_NOT_CONNECTED);
        return;
    }
    enum media_rtp_kind kind = media_rtp_demux(data, len);
    int n;
    if (kind == MEDIA_RTP_KIND_RTP)
        n = media_srtp_unprotect_rtp(l->srtp, data, len);
    else if (kind == MEDIA_RTP_KIND_RTCP)
        n = media_srtp_unprotect_rtcp(l->srtp, data, len);
    else
        n = MEDIA_SRTP_ERR_BAD_LENGTH;
    if (n < 0) {
        leg_drop(w, MEDIA_DROP_SRTP);
        if (n >= MEDIA_SRTP_ERR_MIN)
            leg_count(&w->counters.srtp_failures[-n], 1);
        return;
    }
    if (kind == MEDIA_RTP_KIND_RTP)
        relay_rtp(w, l, data, (size_t)n, now);
    else
        relay_rtcp(w, l, data, (size_t)n, now);
}

/* Handles one received datagram. The packet path: no allocation, lock or log. */
static void worker_handle_datagram(struct media_worker *w, uint8_t *data, size_t len,
                                   const struct sockaddr_storage *from, socklen_t from_len,
                                   uint64_t now)
{
    if (len < MIN_DATAGRAM) {
        leg_drop(w, MEDIA_DROP_TOO_SHORT);
        return;
    }
    enum media_packet_kind kind = media_classify_packet(data, len);
    if (kind == MEDIA_PACKET_STUN) {
        worker_handle_stun(w, data, len, from, from_len);
        return;
    }
    if (kind == MEDIA_PACKET_UNKNOWN) {
        leg_drop(w, MEDIA_DROP_UNKNOWN_KIND);
        return;
    }
    struct leg *l = leg_by_address(w, from);
    if (!l) {
        leg_drop(w, MEDIA_DROP_NO_LEG);
        return;
    }
    if (kind == MEDIA_PACKET_DTLS)
        worker_handle_dtls(w, l, data, len);
    else
        worker_handle_srtp(w, l, data, len, now);
}

/* The kernel's receive time of a datagram, or now when it gave none. */
static uint64_t kernel_arrival_us(struct msghdr *hdr)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(hdr); c; c = CMSG_NXTHDR(hdr, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
        }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reads until the socket is empty, a batch at a time, sending what each batch produced. */
static void worker_read_socket(struct media_worker *w)
{
    for (;;) {
        for (unsigned i = 0; i < LEG_RECV_BATCH; i++) {
            w->msgs[i].msg_hdr.msg_namelen = sizeof(w->addrs[i]);
            w->msgs[i].msg_hdr.msg_controllen = sizeof(w->control[i].bytes);
            w->msgs[i].msg_len = 0;
        }
        int n = recvmmsg(w->udp_fd, w->msgs, LEG_RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN (drained) or a transient error; epoll will tell us again */
        uint64_t bytes = 0, now = now_us();
        for (int i = 0; i < n; i++) {
            size_t len = w->msgs[i].msg_len;
            bytes += len;
            /* A datagram larger than our buffer arrives truncated: never relay half a packet. */
            if (w->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                leg_drop(w, MEDIA_DROP_TOO_LARGE);
                continue;
            }
            w->arrival_us = kernel_arrival_us(&w->msgs[i].msg_hdr);
            worker_handle_datagram(w, w->buffers[i], len, &w->addrs[i],
                                   w->msgs[i].msg_hdr.msg_namelen, now);
        }
        worker_flush(w);
        leg_count(&w->counters.packets_received, (uint64_t)n);
        leg_count(&w->counters.bytes_received, bytes);
        leg_count(&w->counters.receive_batches, 1);
        if (n < LEG_RECV_BATCH)
            return;
    }
}

/* Once a second per leg: our receiver report and receive limit to a browser that sends, and
 * consent freshness (a leg without a valid check for consent_ms ends). */
static void tick_leg(struct media_worker *w, struct leg *l, int64_t now)
{
    relay_send_receiver_report(w, l, (uint64_t)now * 1000u);
    relay_send_receive_limit(w, l, now);
    if (now - l->last_check_ms >= w->consent_ms) {
        uint64_t id = l->id;
        worker_remove_leg(w, l);
        leg_count(&w->counters.legs_expired, 1);
        worker_report(w, MEDIA_EVENT_LEG_EXPIRED, id, NULL);
    }
}

/* Every FEEDBACK_EVERY_MS per leg: transport-wide feedback to a browser that sent media. */
static void feedback_leg(struct media_worker *w, struct leg *l, int64_t now)
{
    (void)now;
    if (l->srtp && l->has_address && media_twcc_pending(&l->twcc))
        relay_send_feedback(w, l);
}

typedef void (*leg_visit_fn)(struct media_worker *w, struct leg *l, int64_t now);

static void sweep_begin(struct leg_sweep *s, int64_t period_ms, int64_t now)
{
    *s = (struct leg_sweep){.period_ms = period_ms, .start_ms = now};
}

static unsigned sweep_slices(const struct leg_sweep *s)
{
    int64_t slices = s->period_ms / LEG_SWEEP_SLICE_MS;
    return slices > 0 ? (unsigned)slices : 1;
}

/* Handles the legs whose slice of the pass has begun; at the period's end, the rest, and a new
 * pass begins. */
static void sweep_turn(struct media_worker *w, struct leg_sweep *s, int64_t now, leg_visit_fn visit)
{
    unsigned active =
        (unsigned)atomic_load_explicit(&w->counters.legs_active, memory_order_relaxed);
    if (s->planned == 0 && active) {
        /* The first legs of an idle worker: a pass of their own from now, rather than all of
         * them at the end of a pass that planned none. */
        *s = (struct leg_sweep){.period_ms = s->period_ms, .start_ms = now, .planned = active};
    }
    bool pass_over = now - s->start_ms >= s->period_ms;
    unsigned due = UINT32_MAX;
    if (!pass_over) {
        uint64_t slices = sweep_slices(s),
                 begun = (uint64_t)(now - s->start_ms) / LEG_SWEEP_SLICE_MS + 1;
        due = (unsigned)((s->planned * begun + slices - 1) / slices);
    }
    for (; s->visited < due && s->slot < MEDIA_LEGS_PER_WORKER; s->slot++) {
        struct leg *l = &w->legs[s->slot];
        if (!l->in_use)
            continue;
        visit(w, l, now);
        s->visited++;
    }
    if (pass_over) {
        /* Keep the beat when on time; a worker more than a slice late starts the next pass now,
         * or the pass would begin partly over, its first slices due at once. */
        int64_t next = s->start_ms + s->period_ms;
        s->start_ms = now - next < LEG_SWEEP_SLICE_MS ? next : now;
        s->slot = 0;
        s->visited = 0;
        s->planned = active;
    }
}

/* When the pass next has legs to handle: the slice in which its due count passes `visited`; at
 * once when legs came to a pass that planned none. */
static int64_t sweep_next_ms(const struct media_worker *w, const struct leg_sweep *s)
{
    if (s->planned == 0 && atomic_load_explicit(&w->counters.legs_active, memory_order_relaxed))
        return s->start_ms;
    if (s->visited >= s->planned || s->slot >= MEDIA_LEGS_PER_WORKER)
        return s->start_ms + s->period_ms;
    uint64_t slice = (uint64_t)s->visited * sweep_slices(s) / s->planned;
    return s->start_ms + (int64_t)slice * LEG_SWEEP_SLICE_MS;
}

struct link_request {
    uint64_t a, b;
};

/* Handles control messages; returns false once asked to stop. */
static bool worker_read_mailbox(struct media_worker *w)
{
    bool keep_running = true;
    struct base_msg msg;
    base_mailbox_clear_wakeup(w->mailbox);
    while (base_mailbox_pop(w->mailbox, &msg)) {
        switch (msg.type) {
        case BASE_MSG_PROBE:
            base_mailbox_answer_probe(&msg, BASE_THREAD_MEDIA_FIRST + w->index);
            break;
        case BASE_MSG_STOP:
            keep_running = false;
            break;
        case MEDIA_MSG_LEG_ADD:
            worker_add_leg(w, msg.ptr);
            free(msg.ptr);
            break;
        case MEDIA_MSG_LEG_REMOVE: {
            struct leg *l = leg_by_id(w, msg.arg);
            if (l)
                worker_remove_leg(w, l);
            break;
        }
        case MEDIA_MSG_LEG_LINK: {
            const struct link_request *rq = msg.ptr;
            worker_link(w, rq->a, rq->b);
            free(msg.ptr);
            break;
        }
        case MEDIA_MSG_LEG_UPDATE:
            worker_update_leg(w, msg.ptr);
            free(msg.ptr);
            break;
        case MEDIA_MSG_LEG_SUMMARY:
            worker_leg_summary(w, msg.arg, msg.ptr);
            break;
        case MEDIA_MSG_LEG_UNLINK: {
            struct leg *l = leg_by_id(w, msg.arg);
            if (l) {
                leg_unlink(w, l);
                l->peer_id = 0;
            }
            break;
        }
        default:
            break;
        }
    }
    return keep_running;
}

/* The audio monitors of legs in a consultation: a microphone gone silent, or a level moved. */
static void worker_audio_check(struct media_worker *w, int64_t now)
{
    w->last_audio_check_ms = now;
    atomic_store_explicit(&w->counters.audio_decodes, media_audio_decoder_count(w->audio_decoder),
                          memory_order_relaxed);
    for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
        struct leg *l = &w->legs[i];
        if (!l->in_use || !l->peer || l->peer == l)
            continue;
        bool changed = false;
        enum media_audio_state state = media_audio_monitor_check(&l->audio, now, &changed);
        unsigned level = media_audio_monitor_level(&l->audio);
        unsigned moved = level > l->audio_level_reported ? level - l->audio_level_reported
                                                         : l->audio_level_reported - level;
        if (!changed && moved < AUDIO_LEVEL_STEP)
            continue;
        /* Rare (a few a second per consultation at most), and off the packet path. */
        struct media_audio_event *ev = malloc(sizeof(*ev));
        if (!ev)
            continue;
        *ev = (struct media_audio_event){
            .state = media_audio_state_name(state), .state_changed = changed, .level = level};
        l->audio_level_reported = level;
        if (push_event(w, MEDIA_EVENT_LEG_AUDIO, l->id, ev) != 0)
            free(ev);
    }
}

static int epoll_timeout(const struct media_worker *w, int64_t now)
{
    int64_t wait = sweep_next_ms(w, &w->tick) - now;
    if (atomic_load_explicit(&w->counters.legs_active, memory_order_relaxed) &&
        sweep_next_ms(w, &w->feedback) - now < wait)
        wait = sweep_next_ms(w, &w->feedback) - now;
    if (w->handshaking && w->next_dtls_ms && w->next_dtls_ms - now < wait)
        wait = w->next_dtls_ms - now;
    return wait < 0 ? 0 : (int)wait;
}

static void *worker_main(void *arg)
{
    struct media_worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "media-%u", w->index);
    pthread_setname_np(pthread_self(), name);

    bool running = true;
    while (running) {
        struct epoll_event events[2];
        int n = epoll_wait(w->epoll_fd, events, 2, epoll_timeout(w, now_ms()));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error(w->log, "media", "epoll_wait failed, worker stops",
                      LOG_INT("worker", w->index), LOG_STR("error", strerror(errno)));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.fd == w->udp_fd)
                worker_read_socket(w);
            else if (!worker_read_mailbox(w))
                running = false;
        }
        int64_t now = now_ms();
        if (w->handshaking && w->next_dtls_ms && now >= w->next_dtls_ms)
            worker_dtls_timers(w, now);
        if (now >= sweep_next_ms(w, &w->feedback))
            sweep_turn(w, &w->feedback, now, feedback_leg);
        if (now >= sweep_next_ms(w, &w->tick))
            sweep_turn(w, &w->tick, now, tick_leg);
        if (now - w->last_audio_check_ms >= AUDIO_CHECK_MS)
            worker_audio_check(w, now);
        worker_flush(w);
    }
    return NULL;
}

/* Binds a UDP socket on [::]:port (dual stack) or, for a v4 host, that address. */
static int bind_udp(const char *host, uint16_t port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sslen;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (host && host[0] && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        family = AF_INET;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        sslen = sizeof(*v4);
    } else {
        family = AF_INET6;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        v6->sin6_addr = in6addr_any;
        if (host && host[0] && inet_pton(AF_INET6, host, &v6->sin6_addr) != 1) {
            snprintf(err, errlen, "media: \"%s\" is not an IP address", host);
            return -1;
        }
        sslen = sizeof(*v6);
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && family == AF_INET6 && !(host && host[0])) {
        /* No IPv6 on this machine: fall back to every IPv4 interface. */
        family = AF_INET;
        memset(&ss, 0, sizeof(ss));
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        sslen = sizeof(*v4);
        fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "media: cannot create a UDP socket: %s", strerror(errno));
        return -1;
    }
    int zero = 0, buf = SOCKET_BUFFER;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    /* Larger kernel buffers absorb bursts (a key frame is dozens of packets). */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    /* Receive timestamps for congestion feedback (a CLOCK_REALTIME reading per datagram). */
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "media_port: cannot bind UDP port %u: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void worker_free(struct media_worker *w)
{
    if (!w)
        return;
    base_udp_sender_free(w->sender);
    if (w->udp_fd >= 0)
        close(w->udp_fd);
    if (w->epoll_fd >= 0)
        close(w->epoll_fd);
    if (w->mailbox) {
        struct base_msg m;
        while (base_mailbox_pop(w->mailbox, &m))
            if (m.type == MEDIA_MSG_LEG_ADD || m.type == MEDIA_MSG_LEG_LINK ||
                m.type == MEDIA_MSG_LEG_UPDATE || m.type == MEDIA_MSG_LEG_SUMMARY)
                free(m.ptr);
    }
    base_mailbox_free(w->mailbox);
    if (w->legs)
        for (unsigned i = 0; i < MEDIA_LEGS_PER_WORKER; i++) {
            media_dtls_free(w->legs[i].dtls);
            media_srtp_free(w->legs[i].srtp);
            relay_leg_free(&w->legs[i]);
        }
    media_dtls_ctx_free(w->dtls);
    media_audio_decoder_free(w->audio_decoder);
    media_stun_ctx_free(w->stun);
    free(w->legs);
    free(w);
}

static struct media_worker *worker_new(const struct media_engine_config *cfg, unsigned index,
                                       char *err, size_t errlen)
{
    struct media_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "media: out of memory");
        return NULL;
    }
    w->index = index;
    w->port = (uint16_t)(cfg->base_port + index);
    w->log = cfg->log;
    w->owner = cfg->owner;
    w->consent_ms = cfg->consent_timeout_ms ? cfg->consent_timeout_ms : CONSENT_DEFAULT_MS;
    sweep_begin(&w->tick, TIMER_TICK_MS, now_ms());
    sweep_begin(&w->feedback, FEEDBACK_EVERY_MS, now_ms());
    w->udp_fd = -1;
    w->legs = calloc(MEDIA_LEGS_PER_WORKER, sizeof(*w->legs));
    w->epoll_fd = -1;
    w->stun = media_stun_ctx_new();
    if (!w->legs || !w->stun) {
        snprintf(err, errlen, "media: out of memory for worker %u", index);
        goto fail;
    }
    /* Each worker has its own certificate: made at start-up, never written to disk. */
    w->dtls = media_dtls_ctx_new(NULL);
    w->audio_decoder = media_audio_decoder_new();
    if (!w->dtls || !w->audio_decoder) {
        snprintf(err, errlen, "media: cannot make the DTLS certificate of worker %u", index);
        goto fail;
    }
    for (unsigned i = 0; i < LEG_RECV_BATCH; i++) {
        w->iovs[i].iov_base = w->buffers[i];
        w->iovs[i].iov_len = LEG_DATAGRAM_MAX;
        w->msgs[i].msg_hdr.msg_iov = &w->iovs[i];
        w->msgs[i].msg_hdr.msg_iovlen = 1;
        w->msgs[i].msg_hdr.msg_name = &w->addrs[i];
        w->msgs[i].msg_hdr.msg_control = w->control[i].bytes;
    }
    for (unsigned i = 0; i < LEG_SEND_BATCH; i++) {
        w->out_iovs[i].iov_base = w->out[i].data;
        w->out_msgs[i].msg_hdr.msg_iov = &w->out_iovs[i];
        w->out_msgs[i].msg_hdr.msg_iovlen = 1;
        w->out_msgs[i].msg_hdr.msg_name = &w->out[i].addr;
    }
    w->udp_fd = bind_udp(cfg->bind_host, w->port, err, errlen);
    if (w->udp_fd < 0)
        goto fail;
    w->sender = base_udp_sender_new(w->udp_fd, !cfg->no_segmentation, MSG_DONTWAIT);
    if (!w->sender) {
        snprintf(err, errlen, "media: out of memory for worker %u", index);
        goto fail;
    }
    w->mailbox = base_mailbox_new(MAILBOX_CAPACITY, NULL, NULL);
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!w->mailbox || w->epoll_fd < 0) {
        snprintf(err, errlen, "media: cannot create the worker's event loop: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->udp_fd};
    struct epoll_event mev = {.events = EPOLLIN, .data.fd = base_mailbox_fd(w->mailbox)};
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->udp_fd, &ev) != 0 ||
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, mev.data.fd, &mev) != 0) {
        snprintf(err, errlen, "media: epoll_ctl failed: %s", strerror(errno));
        goto fail;
    }
    return w;
fail:
    worker_free(w);
    return NULL;
}

struct media_engine *media_engine_start(const struct media_engine_config *cfg, char *err,
                                        size_t errlen)
{
    if (cfg->worker_count == 0 || !cfg->log) {
        snprintf(err, errlen, "media: at least one worker and a logger are required");
        return NULL;
    }
    struct media_engine *e = calloc(1, sizeof(*e));
    if (!e || !(e->workers = calloc(cfg->worker_count, sizeof(*e->workers)))) {
        free(e);
        snprintf(err, errlen, "media: out of memory");
        return NULL;
    }
    e->log = cfg->log;
    e->public_ip = cfg->public_ip && cfg->public_ip[0] ? cfg->public_ip : "127.0.0.1";
    if (media_srtp_library_init() != 0) {
        snprintf(err, errlen, "media: OpenSSL cannot provide the SRTP ciphers");
        free(e->workers);
        free(e);
        return NULL;
    }
    for (unsigned i = 0; i < cfg->worker_count; i++) {
        e->workers[i] = worker_new(cfg, i, err, errlen);
        if (!e->workers[i])
            goto fail;
        e->worker_count = i + 1;
    }
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct media_worker *w = e->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "media: cannot start worker %u: %s", i, strerror(rc));
            goto fail;
        }
        w->thread_started = true;
    }
    log_info(e->log, "media", "workers started", LOG_INT("workers", e->worker_count),
             LOG_INT("first_port", cfg->base_port),
             LOG_INT("last_port", cfg->base_port + e->worker_count - 1));
    return e;
fail:
    media_engine_stop(e);
    return NULL;
}

void media_engine_stop(struct media_engine *e)
{
    if (!e)
        return;
    struct base_msg stop = {.type = BASE_MSG_STOP};
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct media_worker *w = e->workers[i];
        /* A full mailbox cannot happen at stop in practice; retry briefly if it does. */
        while (w->thread_started && base_mailbox_push(w->mailbox, &stop) == -EAGAIN)
            usleep(1000);
    }
    for (unsigned i = 0; i < e->worker_count; i++) {
        if (e->workers[i]->thread_started)
            pthread_join(e->workers[i]->thread, NULL);
        worker_free(e->workers[i]);
    }
    free(e->workers);
    leg_records_free(&e->records);
    free(e);
}

unsigned media_engine_worker_count(const struct media_engine *e)
{
    return e->worker_count;
}

int media_engine_probe(struct media_engine *e, unsigned index, struct base_mailbox *reply_to,
                       uint64_t seq)
{
    if (index >= e->worker_count)
        return -EINVAL;
    struct base_msg probe = {
        .type = BASE_MSG_PROBE, .sender = BASE_THREAD_SIGNALING, .arg = seq, .ptr = reply_to};
    return base_mailbox_push(e->workers[index]->mailbox, &probe);
}

void media_engine_worker_stats(const struct media_engine *e, unsigned index,
                               struct media_worker_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (index >= e->worker_count)
        return;
    const struct media_worker *w = e->workers[index];
    const struct worker_counters *c = &w->counters;
    out->port = w->port;
    out->packets_received = atomic_load_explicit(&c->packets_received, memory_order_relaxed);
    out->bytes_received = atomic_load_explicit(&c->bytes_received, memory_order_relaxed);
    out->receive_batches = atomic_load_explicit(&c->receive_batches, memory_order_relaxed);
    out->stun_answered = atomic_load_explicit(&c->stun_answered, memory_order_relaxed);
    out->stun_refused = atomic_load_explicit(&c->stun_refused, memory_order_relaxed);
    out->legs_active = atomic_load_explicit(&c->legs_active, memory_order_relaxed);
    out->legs_nominated = atomic_load_explicit(&c->legs_nominated, memory_order_relaxed);
    out->legs_expired = atomic_load_explicit(&c->legs_expired, memory_order_relaxed);
    out->packets_sent = atomic_load_explicit(&c->packets_sent, memory_order_relaxed);
    out->bytes_sent = atomic_load_explicit(&c->bytes_sent, memory_order_relaxed);
    out->send_failures = atomic_load_explicit(&c->send_failures, memory_order_relaxed);
    out->send_messages = atomic_load_explicit(&c->send_messages, memory_order_relaxed);
    out->rtp_relayed = atomic_load_explicit(&c->rtp_relayed, memory_order_relaxed);
    out->rtcp_relayed = atomic_load_explicit(&c->rtcp_relayed, memory_order_relaxed);
    out->key_frame_requests = atomic_load_explicit(&c->key_frame_requests, memory_order_relaxed);
    out->feedback_sent = atomic_load_explicit(&c->feedback_sent, memory_order_relaxed);
    out->nacks_received = atomic_load_explicit(&c->nacks_received, memory_order_relaxed);
    out->nack_retransmitted = atomic_load_explicit(&c->nack_retransmitted, memory_order_relaxed);
    out->nack_missed = atomic_load_explicit(&c->nack_missed, memory_order_relaxed);
    out->nack_suppressed = atomic_load_explicit(&c->nack_suppressed, memory_order_relaxed);
    out->nacks_forwarded = atomic_load_explicit(&c->nacks_forwarded, memory_order_relaxed);
    out->rtx_relayed = atomic_load_explicit(&c->rtx_relayed, memory_order_relaxed);
    out->audio_decodes = atomic_load_explicit(&c->audio_decodes, memory_order_relaxed);
    out->remb_sent = atomic_load_explicit(&c->remb_sent, memory_order_relaxed);
    out->dtls_connected = atomic_load_explicit(&c->dtls_connected, memory_order_relaxed);
    for (unsigned r = 0; r < MEDIA_DROP_REASON_COUNT; r++)
        out->packets_dropped[r] =
            atomic_load_explicit(&c->packets_dropped[r], memory_order_relaxed);
    for (unsigned r = 0; r <= (unsigned)-MEDIA_DTLS_ERR_MIN; r++)
        out->dtls_failures[r] = atomic_load_explicit(&c->dtls_failures[r], memory_order_relaxed);
    for (unsigned r = 0; r <= (unsigned)-MEDIA_SRTP_ERR_MIN; r++)
        out->srtp_failures[r] = atomic_load_explicit(&c->srtp_failures[r], memory_order_relaxed);
}

/* ICE characters (RFC 8445 section 5.3): ALPHA, DIGIT, '+', '/'. */
static bool ice_chars(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '/'))
            return false;
    return true;
}

int media_engine_leg_add(struct media_engine *e, unsigned index, const struct media_leg_params *p)
{
    if (index >= e->worker_count || !ice_chars(p->local_ufrag, 4, MEDIA_UFRAG_MAX) ||
        !ice_chars(p->local_pwd, 22, MEDIA_PWD_MAX) ||
        memchr(p->remote_ufrag, '\0', sizeof(p->remote_ufrag)) == NULL)
        return -EINVAL;
    struct leg_setup *setup = calloc(1, sizeof(*setup));
    if (!setup)
        return -ENOMEM;
    setup->ice = *p; /* an ICE-only leg: no fingerprint, so DTLS is refused */
    return media_engine_push_leg(e, index, setup);
}

/* Hands `setup` to worker `index` in a message of `type`; frees it when the mailbox is full. */
static int push_setup(struct media_engine *e, unsigned index, uint32_t type,
                      struct leg_setup *setup)
{
    struct base_msg m = {.type = type, .ptr = setup};
    int rc = base_mailbox_push(e->workers[index]->mailbox, &m);
    if (rc)
        free(setup);
    return rc;
}

int media_engine_push_leg(struct media_engine *e, unsigned index, struct leg_setup *setup)
{
    return push_setup(e, index, MEDIA_MSG_LEG_ADD, setup);
}

int media_engine_leg_remove(struct media_engine *e, unsigned index, uint64_t leg_id)
{
    if (index >= e->worker_count)
        return -EINVAL;
    struct base_msg m = {.type = MEDIA_MSG_LEG_REMOVE, .arg = leg_id};
    return base_mailbox_push(e->workers[index]->mailbox, &m);
}

/* Leg ids carry their worker in the low byte, so a leg is found from its id alone. */
#define LEG_ID_WORKER_BITS 8
_Static_assert(MEDIA_LEGS_PER_WORKER <= UINT16_MAX, "slot numbers fit the address table");
_Static_assert(LEG_SEND_BATCH <= BASE_UDP_BATCH_MAX, "a full send batch is one base_udp_send");

uint64_t media_engine_new_leg_id(struct media_engine *e, unsigned index)
{
    uint64_t serial = atomic_fetch_add(&e->next_leg_serial, 1) + 1;
    return serial << LEG_ID_WORKER_BITS | (index & ((1u << LEG_ID_WORKER_BITS) - 1));
}

unsigned media_engine_leg_worker(const struct media_engine *e, uint64_t leg_id)
{
    (void)e;
    return (unsigned)(leg_id & ((1u << LEG_ID_WORKER_BITS) - 1));
}

const char *media_engine_public_ip(const struct media_engine *e)
{
    return e->public_ip;
}

uint16_t media_engine_worker_port(const struct media_engine *e, unsigned index)
{
    return e->workers[index]->port;
}

const uint8_t *media_engine_worker_fingerprint(const struct media_engine *e, unsigned index)
{
    /* Written before the worker started, read-only since: safe from any thread. */
    return media_dtls_ctx_fingerprint_sha256(e->workers[index]->dtls);
}

int media_engine_link(struct media_engine *e, uint64_t leg_a, uint64_t leg_b)
{
    unsigned index = media_engine_leg_worker(e, leg_a);
    if (index >= e->worker_count)
        return -EINVAL;
    if (media_engine_leg_worker(e, leg_b) != index)
        return -EXDEV;
    struct link_request *rq = malloc(sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->a = leg_a;
    rq->b = leg_b;
    struct base_msg m = {.type = MEDIA_MSG_LEG_LINK, .ptr = rq};
    int rc = base_mailbox_push(e->workers[index]->mailbox, &m);
    if (rc)
        free(rq);
    return rc;
}

int media_engine_unlink(struct media_engine *e, uint64_t leg_id)
{
    unsigned index = media_engine_leg_worker(e, leg_id);
    if (index >= e->worker_count)
        return -EINVAL;
    struct base_msg m = {.type = MEDIA_MSG_LEG_UNLINK, .arg = leg_id};
    return base_mailbox_push(e->workers[index]->mailbox, &m);
}

int media_engine_leg_summary(struct media_engine *e, uint64_t leg_id, uint64_t request)
{
    unsigned index = media_engine_leg_worker(e, leg_id);
    if (index >= e->worker_count)
        return -EINVAL;
    /* The answer is allocated here, on the caller's thread: the worker only fills it. */
    struct media_leg_summary *answer = NULL;
    if (request) {
        answer = calloc(1, sizeof(*answer));
        if (!answer)
            return -ENOMEM;
        answer->request = request;
    }
    struct base_msg m = {.type = MEDIA_MSG_LEG_SUMMARY, .arg = leg_id, .ptr = answer};
    int rc = base_mailbox_push(e->workers[index]->mailbox, &m);
    if (rc)
        free(answer);
    return rc;
}

int media_engine_leg_release(struct media_engine *e, uint64_t leg_id)
{
    leg_records_forget(&e->records, leg_id);
    return media_engine_leg_remove(e, media_engine_leg_worker(e, leg_id), leg_id);
}

struct leg_records *media_engine_records(struct media_engine *e)
{
    return &e->records;
}

uint64_t media_engine_ice_restarts(const struct media_engine *e)
{
    return e->records.ice_restarts;
}

int media_engine_push_leg_update(struct media_engine *e, unsigned index, struct leg_setup *setup)
{
    return push_setup(e, index, MEDIA_MSG_LEG_UPDATE, setup);
}
