/*
 * test_peer_loopback.c - the C test peer (tests/support/test_peer.h) over
 * real UDP on 127.0.0.1 against a small responder made of the media
 * library's own server parts: ICE-lite Binding checks (stun.h), the passive
 * DTLS side (dtls.h), SRTP (srtp.h) and an SDP answer from
 * media_sdp_write_answer(). The responder echoes every RTP packet it
 * decrypts back to the peer, re-encrypted under its own SSRCs as a relay
 * would, so the peer hears its own tone and sees its own video. Like the
 * relay it keeps a history of the video it sent and answers the peer's NACKs
 * from it (as RTX, or as plain resends), turns the peer's PLI into a PLI (or
 * FIR) about the peer's own video, follows the peer to a new address on a
 * valid check, and answers an ICE restart with new credentials.
 *
 * The active variant (responder_make_active) answers as Janus does: a full
 * ICE agent (it checks the peer's address itself) and the DTLS client
 * (setup:active), made of OpenSSL directly since media/dtls is passive only;
 * its ClientHello leaves before it answers the peer's first check, so the
 * peer, then the DTLS server, must keep it until its own check succeeds.
 *
 * Threads: each responder and each peer runs one thread; the test's thread
 * reads their counters (atomics, and tp_peer_stats()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dtls.h"
#include "rtcp.h"
#include "rtp.h"
#include "sdp.h"
#include "srtp.h"
#include "stun.h"
#include "test_peer.h"

#define CONNECT_BUDGET_MS 5000
#define MEDIA_BUDGET_MS   5000
#define FAIL_BUDGET_MS    3000
#define ANSWER_MAX        16384
#define DATAGRAM_MAX      2048
#define BAD_CERTIFICATE   42  /* TLS AlertDescription */
#define HISTORY           256 /* video packets the responder keeps for NACKs */
#define RESPONDER_RTX_PT  97

static const char responder_ufrag[] = "tpResp01";
static const char responder_pwd[] = "tpResponderPassword0123";
static const char restart_ufrag[] = "tpResp02";
static const char restart_pwd[] = "tpResponderRestarted456";

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------- */
/* The responder: the server's side of one leg, echoing media                 */
/* ------------------------------------------------------------------------- */

/* How the responder answers NACKs. */
enum resend {
    RESEND_RTX = 0, /* RTX (RFC 4588) on the FID SSRC its answer declares */
    RESEND_PLAIN,   /* the packet again as it was; the answer declares no FID */
    RESEND_NONE,    /* not at all: the peer must give up */
};

struct sent_packet {
    bool used;
    uint16_t seq;
    size_t len;
    uint8_t data[DATAGRAM_MAX]; /* plaintext, as it went to SRTP */
};

struct responder {
    int fd;
    uint16_t port;
    struct media_stun_ctx *stun;
    struct media_dtls_ctx *dtls_ctx;
    struct media_dtls *dtls;
    struct media_srtp *srtp;
    struct media_sdp_offer *offer; /* the peer's, for the answers */
    pthread_mutex_t ice_lock;      /* the ICE credentials: an ICE restart changes them */
    const char *ufrag, *pwd;
    char remote_ufrag[MEDIA_SDP_ICE_MAX + 1];
    struct sockaddr_storage peer;
    int audio_pt, video_pt;
    uint32_t audio_ssrc, video_ssrc, rtx_ssrc;
    uint32_t peer_video_ssrc; /* the peer's primary video SSRC, from its offer */
    enum resend resend;
    uint16_t rtx_seq;
    uint8_t fir_seq;
    struct sent_packet history[HISTORY]; /* by seq % HISTORY */
    char answer[ANSWER_MAX];
    pthread_t thread;
    bool running;
    atomic_bool stop;
    atomic_bool pli_as_fir; /* forward the peer's PLI as a FIR, sent twice (a repeat) */
    atomic_bool mute;       /* echo no more RTP (RTCP is still read and echoed) */
    /* Read by the test's thread. */
    atomic_int dtls_failure; /* media_dtls_failure() once failed, else 0 */
    atomic_int peer_alert;   /* media_dtls_peer_alert() */
    atomic_bool connected;
    atomic_uint stun_answered, rtp_echoed, rtcp_echoed, others;
    atomic_uint dtls_datagrams;        /* DTLS records received: a handshake, a close_notify */
    atomic_uint nacks, nacked, resent; /* NACK packets about our video, seqs asked, resent */
    atomic_uint plis, plis_forwarded;  /* PLIs about our video; PLIs or FIRs sent to the peer */
    atomic_uint peer_port;             /* where media goes: the last valid check's port */
    atomic_int audio_level;            /* the last echoed audio's level byte (V << 7 | -dBov) */
    uint8_t fingerprint[32];           /* what the answer names: the passive or the active cert */

    /* The active variant (responder_make_active): full ICE and the DTLS client, as Janus. */
    bool active;
    EVP_PKEY *client_key;
    X509 *client_cert;
    SSL_CTX *client_ctx;
    SSL *client;
    BIO *client_rbio, *client_wbio; /* owned by `client` */
    char peer_pwd[MEDIA_SDP_ICE_MAX + 1];
    unsigned checks_seen;
    uint8_t own_txid[MEDIA_STUN_TXID_SIZE];
    atomic_bool hello_early;  /* our ClientHello left before we answered any check */
    atomic_bool own_check_ok; /* the peer answered our own check: integrity, address, all */
};

static void responder_send(struct responder *r, const uint8_t *data, size_t len)
{
    sendto(r->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&r->peer,
           sizeof(struct sockaddr_in));
}

static void responder_drain_dtls(struct responder *r)
{
    uint8_t buf[DATAGRAM_MAX];
    int n;
    while ((n = media_dtls_next_outgoing(r->dtls, buf, sizeof(buf))) > 0)
        responder_send(r, buf, (size_t)n);
    enum media_dtls_state state = media_dtls_state(r->dtls);
    if (state == MEDIA_DTLS_CONNECTED && !r->srtp) {
        struct media_srtp_keys keys;
        if (media_dtls_srtp_keys(r->dtls, &keys) == 0) {
            r->srtp = media_srtp_new(&keys, NULL);
            OPENSSL_cleanse(&keys, sizeof(keys));
            atomic_store(&r->connected, r->srtp != NULL);
        }
    }
    atomic_store(&r->peer_alert, media_dtls_peer_alert(r->dtls));
    if (state == MEDIA_DTLS_FAILED)
        atomic_store(&r->dtls_failure, media_dtls_failure(r->dtls));
}

/* ------------------------------------------------------------------------- */
/* The active variant: full ICE and the DTLS client, as Janus answers          */
/* ------------------------------------------------------------------------- */

/* Our own Binding request to the peer, as a controlled full agent sends it. */
static void responder_send_own_check(struct responder *r)
{
    assert_int_equal(RAND_bytes(r->own_txid, sizeof(r->own_txid)), 1);
    struct media_stun_request_params params = {
        .txid = r->own_txid,
        .remote_ufrag = r->remote_ufrag,
        .local_ufrag = r->ufrag,
        .remote_pwd = r->peer_pwd,
        .priority = 0x6EFFFFFFu,
        .controlling = false,
        .tie_breaker = 0x1234,
    };
    uint8_t buf[512];
    int n = media_stun_build_binding_request(r->stun, &params, buf, sizeof(buf));
    if (n > 0)
        responder_send(r, buf, (size_t)n);
}

/* The peer's answer to our check: ours, FINGERPRINT and MESSAGE-INTEGRITY (the peer's
 * password) valid, XOR-MAPPED-ADDRESS our own address. */
static void responder_own_check_answered(struct responder *r, const struct media_stun_msg *m)
{
    const struct sockaddr_in *mapped = (const struct sockaddr_in *)&m->xor_mapped;
    if (memcmp(m->txid, r->own_txid, sizeof(r->own_txid)) != 0 ||
        media_stun_verify_fingerprint(m) != 0 ||
        media_stun_verify_integrity(r->stun, m, r->peer_pwd) != 0 || !m->has_xor_mapped ||
        mapped->sin_family != AF_INET || mapped->sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
        ntohs(mapped->sin_port) != r->port)
        return;
    atomic_store(&r->own_check_ok, true);
}

/* Sends what the DTLS client wrote, as one datagram (a flight here fits in one). */
static void responder_client_flush(struct responder *r)
{
    uint8_t buf[4 * DATAGRAM_MAX];
    int n = BIO_read(r->client_wbio, buf, sizeof(buf));
    if (n > 0)
        responder_send(r, buf, (size_t)n);
}

/* The handshake is done: the peer's certificate must be its offer's, keys as the client. */
static void responder_client_connected(struct responder *r)
{
    const struct media_sdp_fingerprint *fp = &r->offer->transport.fingerprints[0];
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    X509 *cert = SSL_get0_peer_certificate(r->client);
    if (!cert || !X509_digest(cert, EVP_sha256(), digest, &dlen) || dlen != fp->len ||
        memcmp(digest, fp->bytes, dlen) != 0) {
        atomic_store(&r->dtls_failure, MEDIA_DTLS_ERR_FINGERPRINT);
        return;
    }
    const SRTP_PROTECTION_PROFILE *sp = SSL_get_selected_srtp_profile(r->client);
    struct media_srtp_keys k = {.profile = sp && sp->id == SRTP_AEAD_AES_128_GCM
                                               ? MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM
                                               : MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    size_t kl, sl;
    uint8_t m[2 * (MEDIA_SRTP_KEY_MAX + MEDIA_SRTP_SALT_MAX)];
    assert_int_equal(media_srtp_profile_lengths(k.profile, &kl, &sl), 0);
    assert_int_equal(SSL_export_keying_material(r->client, m, 2 * (kl + sl), "EXTRACTOR-dtls_srtp",
                                                19, NULL, 0, 0),
                     1);
    k.key_len = (uint8_t)kl;
    k.salt_len = (uint8_t)sl;
    memcpy(k.local_key, m, kl); /* client key, server key, client salt, server salt */
    memcpy(k.remote_key, m + kl, kl);
    memcpy(k.local_salt, m + 2 * kl, sl);
    memcpy(k.remote_salt, m + 2 * kl + sl, sl);
    r->srtp = media_srtp_new(&k, NULL);
    atomic_store(&r->connected, r->srtp != NULL);
}

/* Feeds a datagram (NULL: none, to start) to the DTLS client and sends what it answers. */
static void responder_client_step(struct responder *r, const uint8_t *data, size_t len)
{
    if (data)
        BIO_write(r->client_rbio, data, (int)len);
    if (!SSL_is_init_finished(r->client)) {
        int rc = SSL_do_handshake(r->client);
        int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(r->client, rc);
        if (rc == 1)
            responder_client_connected(r);
        else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            atomic_store(&r->dtls_failure, MEDIA_DTLS_ERR_HANDSHAKE);
    } else {
        uint8_t scratch[DATAGRAM_MAX];
        while (SSL_read(r->client, scratch, sizeof(scratch)) > 0)
            ;
    }
    responder_client_flush(r);
    ERR_clear_error();
}

/* The DTLS client's retransmission timer: ms until it is due (-1: none), run when due. */
static int responder_client_timer(struct responder *r)
{
    struct timeval tv;
    if (!r->active || SSL_is_init_finished(r->client) || DTLSv1_get_timeout(r->client, &tv) != 1)
        return -1;
    if (tv.tv_sec == 0 && tv.tv_usec == 0) {
        DTLSv1_handle_timeout(r->client);
        responder_client_flush(r);
        return responder_client_timer(r);
    }
    return (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

/* OpenSSL checks nothing: the fingerprint is compared once the handshake is done. */
static int responder_client_verify(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 1;
}

/* A self-signed P-256 certificate for the DTLS client. */
static X509 *responder_client_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 7) == 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600));
    X509_NAME *name = X509_get_subject_name(x);
    assert_true(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                           (const unsigned char *)"janus-like", -1, -1, 0) == 1);
    assert_true(X509_set_issuer_name(x, name) == 1);
    assert_true(X509_set_pubkey(x, key) == 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

/* A valid check, from any address, moves the media there (as an ICE-lite server). */
static void responder_stun(struct responder *r, const uint8_t *data, size_t len,
                           const struct sockaddr_storage *from)
{
    struct media_stun_msg m;
    if (media_stun_parse(data, len, &m) != 0)
        return;
    if (r->active && m.type == MEDIA_STUN_BINDING_SUCCESS) {
        responder_own_check_answered(r, &m);
        return;
    }
    uint8_t buf[512];
    int n = -1;
    pthread_mutex_lock(&r->ice_lock);
    if (media_stun_check_binding(r->stun, &m, r->ufrag, r->pwd, r->remote_ufrag) ==
        MEDIA_STUN_CHECK_OK)
        n = media_stun_build_binding_success(r->stun, m.txid, from, r->pwd, buf, sizeof(buf));
    pthread_mutex_unlock(&r->ice_lock);
    if (n <= 0)
        return;
    r->peer = *from;
    atomic_store(&r->peer_port, ntohs(((const struct sockaddr_in *)from)->sin_port));
    if (r->active && r->checks_seen++ == 0) {
        /* As libnice does on a check from an unknown address: check it back (a triggered
         * check). And, as Janus, start the handshake; this first check stays unanswered, so
         * the ClientHello reaches the peer before its ICE has succeeded. */
        responder_send_own_check(r);
        responder_client_step(r, NULL, 0);
        atomic_store(&r->hello_early, true);
        return;
    }
    responder_send(r, buf, (size_t)n);
    atomic_fetch_add(&r->stun_answered, 1);
}

/* Protects and sends one plaintext RTCP packet (in a DATAGRAM_MAX buffer). */
static void responder_send_rtcp(struct responder *r, uint8_t *buf, int len)
{
    if (len > 0 && (len = media_srtp_protect_rtcp(r->srtp, buf, (size_t)len, DATAGRAM_MAX)) > 0)
        responder_send(r, buf, (size_t)len);
}

/* Resends `seq` from the history: RTX (original seq, then payload) or the packet itself. */
static void responder_resend(struct responder *r, uint16_t seq)
{
    struct sent_packet *h = &r->history[seq % HISTORY];
    struct media_rtp_view v;
    if (!h->used || h->seq != seq || media_rtp_parse(h->data, h->len, &v) != 0)
        return;
    uint8_t buf[DATAGRAM_MAX];
    size_t len = h->len;
    memcpy(buf, h->data, h->len);
    if (r->resend == RESEND_RTX) {
        media_rtp_set_payload_type(buf, len, RESPONDER_RTX_PT);
        media_rtp_set_ssrc(buf, len, r->rtx_ssrc);
        media_rtp_set_seq(buf, len, r->rtx_seq++);
        buf[v.header_len] = (uint8_t)(seq >> 8);
        buf[v.header_len + 1] = (uint8_t)seq;
        memcpy(buf + v.header_len + 2, v.payload, v.payload_len);
        len = v.header_len + 2 + v.payload_len; /* (our packets have no padding) */
    }
    int n = media_srtp_protect_rtp(r->srtp, buf, len, sizeof(buf));
    if (n > 0) {
        responder_send(r, buf, (size_t)n);
        atomic_fetch_add(&r->resent, 1);
    }
}

/* The peer's feedback: NACKs about our video answered from the history, a PLI about it
 * turned into a PLI (or FIR) about the peer's own video, as the relay does. */
static void responder_feedback(struct responder *r, const uint8_t *data, size_t len)
{
    struct media_rtcp_iter it;
    struct media_rtcp_pkt pkt;
    media_rtcp_iter_init(&it, data, len);
    while (media_rtcp_next(&it, &pkt) == 1) {
        struct media_rtcp_fb fb;
        if ((pkt.type != MEDIA_RTCP_RTPFB && pkt.type != MEDIA_RTCP_PSFB) ||
            media_rtcp_parse_fb(&pkt, &fb) != 0 || fb.media_ssrc != r->video_ssrc)
            continue;
        if (fb.type == MEDIA_RTCP_RTPFB && fb.fmt == MEDIA_RTCP_RTPFB_NACK) {
            uint16_t seqs[256];
            int n = media_rtcp_nack_expand(&fb, seqs, 256);
            atomic_fetch_add(&r->nacks, 1);
            for (int i = 0; i < n && i < 256; i++) {
                atomic_fetch_add(&r->nacked, 1);
                if (r->resend != RESEND_NONE)
                    responder_resend(r, seqs[i]);
            }
        } else if (fb.type == MEDIA_RTCP_PSFB && fb.fmt == MEDIA_RTCP_PSFB_PLI) {
            atomic_fetch_add(&r->plis, 1);
            uint8_t buf[DATAGRAM_MAX];
            if (atomic_load(&r->pli_as_fir)) {
                struct media_rtcp_fir_entry e = {.ssrc = r->peer_video_ssrc, .seq = r->fir_seq++};
                for (int k = 0; k < 2; k++) /* the same command twice: one key frame */
                    responder_send_rtcp(
                        r, buf, media_rtcp_build_fir(r->video_ssrc, &e, 1, buf, sizeof(buf)));
            } else {
                responder_send_rtcp(
                    r, buf,
                    media_rtcp_build_pli(r->video_ssrc, r->peer_video_ssrc, buf, sizeof(buf)));
            }
            atomic_fetch_add(&r->plis_forwarded, 1);
        }
    }
}

/*
 * Echoes one SRTP or SRTCP packet: decrypt, take our SSRC (RTP), encrypt
 * with our keys. RTCP is read for feedback first, then echoed whole (its
 * PLIs and NACKs name our SSRCs, not the peer's: the peer must ignore them).
 */
static void responder_media(struct responder *r, uint8_t *buf, size_t len)
{
    if (media_rtp_demux(buf, len) == MEDIA_RTP_KIND_RTCP) {
        int n = media_srtp_unprotect_rtcp(r->srtp, buf, len);
        if (n > 0)
            responder_feedback(r, buf, (size_t)n);
        if (n > 0 && (n = media_srtp_protect_rtcp(r->srtp, buf, (size_t)n, DATAGRAM_MAX)) > 0) {
            responder_send(r, buf, (size_t)n);
            atomic_fetch_add(&r->rtcp_echoed, 1);
        }
        return;
    }
    int n = media_srtp_unprotect_rtp(r->srtp, buf, len);
    struct media_rtp_view v;
    if (n <= 0 || media_rtp_parse(buf, (size_t)n, &v) != 0 || atomic_load(&r->mute))
        return;
    uint32_t ssrc = v.payload_type == r->audio_pt ? r->audio_ssrc : r->video_ssrc;
    media_rtp_set_ssrc(buf, (size_t)n, ssrc);
    if (v.payload_type == r->video_pt) {
        struct sent_packet *h = &r->history[v.seq % HISTORY];
        h->used = true;
        h->seq = v.seq;
        h->len = (size_t)n;
        memcpy(h->data, buf, (size_t)n);
    } else {
        struct media_rtp_ext ext;
        bool voice;
        uint8_t level;
        if (media_rtp_ext_find(&v, TP_EXT_AUDIO_LEVEL, &ext) == 0 &&
            media_rtp_ext_audio_level(&ext, &voice, &level) == 0)
            atomic_store(&r->audio_level, (voice ? 0x80 : 0) | level);
    }
    n = media_srtp_protect_rtp(r->srtp, buf, (size_t)n, DATAGRAM_MAX);
    if (n > 0) {
        responder_send(r, buf, (size_t)n);
        atomic_fetch_add(&r->rtp_echoed, 1);
    }
}

static void *responder_thread(void *arg)
{
    struct responder *r = arg;
    uint8_t buf[DATAGRAM_MAX];
    while (!atomic_load(&r->stop)) {
        int timeout = 20; /* how soon a stop is noticed */
        int dtls_ms = r->active ? responder_client_timer(r) : media_dtls_timeout_ms(r->dtls);
        if (dtls_ms >= 0 && dtls_ms < timeout)
            timeout = dtls_ms;
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        poll(&pfd, 1, timeout);
        for (;;) {
            struct sockaddr_storage from;
            socklen_t from_len = sizeof(from);
            ssize_t n = recvfrom(r->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from,
                                 &from_len);
            if (n <= 0)
                break;
            uint8_t b = buf[0];
            if (b <= 3) {
                responder_stun(r, buf, (size_t)n, &from);
            } else if (b >= 20 && b <= 63) {
                atomic_fetch_add(&r->dtls_datagrams, 1);
                if (r->active) {
                    responder_client_step(r, buf, (size_t)n);
                } else {
                    media_dtls_handle_datagram(r->dtls, buf, (size_t)n);
                    responder_drain_dtls(r);
                }
            } else if (b >= 128 && b <= 191 && r->srtp) {
                responder_media(r, buf, (size_t)n);
            } else {
                atomic_fetch_add(&r->others, 1);
            }
        }
        if (!r->active && media_dtls_timeout_ms(r->dtls) == 0) {
            media_dtls_handle_timeout(r->dtls);
            responder_drain_dtls(r);
        }
    }
    return NULL;
}

/*
 * Writes into `out` our answer to the parsed offer `o` with ICE credentials
 * `ufrag`/`pwd`, session version `version`; with `wrong_fingerprint` it
 * names a certificate that is not the responder's. RTX is declared (a FID
 * group) unless the responder resends plainly.
 */
static void responder_write_answer(const struct responder *r, const struct media_sdp_offer *o,
                                   const char *ufrag, const char *pwd, uint64_t version,
                                   bool wrong_fingerprint, char *out)
{
    struct media_sdp_answer_params params = {
        .ice_ufrag = ufrag,
        .ice_pwd = pwd,
        .public_ip = "127.0.0.1",
        .port = r->port,
        .session_id = 4242,
        .session_version = version,
        .cname = "responder",
        .stream_id = "echo",
        .audio_track_id = "echo-audio",
        .video_track_id = "echo-video",
        .audio_ssrc = r->audio_ssrc,
        .video_ssrc = r->video_ssrc,
        .video_rtx_ssrc = r->resend == RESEND_PLAIN ? 0 : r->rtx_ssrc,
    };
    memcpy(params.fingerprint_sha256, r->fingerprint, 32);
    if (wrong_fingerprint)
        params.fingerprint_sha256[7] ^= 0x5A;
    assert_true(media_sdp_write_answer(o, &params, out, ANSWER_MAX) > 0);
}

static struct media_sdp_offer *parse_offer(const char *offer)
{
    struct media_sdp_offer *o = malloc(sizeof(*o));
    assert_non_null(o);
    struct media_sdp_error err;
    int rc = media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &err);
    if (rc != MEDIA_SDP_OK)
        fail_msg("the peer's offer is refused: %s", err.message);
    return o;
}

/*
 * A responder for `offer` on a fresh 127.0.0.1 port, its answer written
 * into r->answer; with `wrong_fingerprint` the answer names a certificate
 * that is not the responder's. Not yet running: responder_start().
 */
static struct responder *responder_new(const char *offer, bool wrong_fingerprint,
                                       enum resend resend)
{
    struct responder *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    atomic_init(&r->peer_alert, -1);
    atomic_init(&r->audio_level, -1);
    pthread_mutex_init(&r->ice_lock, NULL);
    r->resend = resend;
    r->ufrag = responder_ufrag;
    r->pwd = responder_pwd;
    r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t local_len = sizeof(local);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&local, sizeof(local)), 0);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&local, &local_len), 0);
    r->port = ntohs(local.sin_port);
    int size = 1 << 20;
    setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));

    struct media_sdp_offer *o = r->offer = parse_offer(offer);
    snprintf(r->remote_ufrag, sizeof(r->remote_ufrag), "%s", o->transport.ice_ufrag);
    r->audio_pt = o->audio >= 0 ? o->mlines[o->audio].choices[0].pt : -1;
    r->video_pt = o->video >= 0 ? o->mlines[o->video].choices[0].pt : -1;
    if (o->video >= 0 && o->mlines[o->video].fid_count > 0)
        r->peer_video_ssrc = o->mlines[o->video].fids[0].primary;
    r->audio_ssrc = 0x11110001u;
    r->video_ssrc = 0x22220002u;
    r->rtx_ssrc = 0x33330003u;
    r->rtx_seq = 0xFFF0; /* wraps soon: the peer must not care */

    r->stun = media_stun_ctx_new();
    struct media_dtls_config cfg = {.initial_timeout_ms = 100};
    r->dtls_ctx = media_dtls_ctx_new(&cfg);
    assert_non_null(r->stun);
    assert_non_null(r->dtls_ctx);
    const struct media_sdp_fingerprint *ofp = &o->transport.fingerprints[0];
    struct media_dtls_fingerprint fp = {.hash = (enum media_dtls_hash)ofp->hash, .len = ofp->len};
    memcpy(fp.bytes, ofp->bytes, ofp->len);
    r->dtls = media_dtls_new(r->dtls_ctx, &fp, NULL);
    assert_non_null(r->dtls);
    memcpy(r->fingerprint, media_dtls_ctx_fingerprint_sha256(r->dtls_ctx), 32);
    responder_write_answer(r, o, responder_ufrag, responder_pwd, 1, wrong_fingerprint, r->answer);
    return r;
}

/* Replaces every `from` in `text` (ANSWER_MAX bytes) with `to`. */
static void answer_replace(char *text, const char *from, const char *to)
{
    char out[ANSWER_MAX];
    size_t o = 0, flen = strlen(from), tlen = strlen(to);
    for (const char *p = text; *p;) {
        if (strncmp(p, from, flen) == 0) {
            assert_true(o + tlen < sizeof(out));
            memcpy(out + o, to, tlen);
            o += tlen;
            p += flen;
        } else {
            assert_true(o + 1 < sizeof(out));
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    memcpy(text, out, o + 1);
}

/*
 * Makes a responder (not yet started) answer as Janus does: a full ICE agent
 * (no a=ice-lite; it checks the peer itself), the DTLS client (a=setup:active)
 * with a certificate of its own, named in the answer.
 */
static void responder_make_active(struct responder *r)
{
    r->active = true;
    snprintf(r->peer_pwd, sizeof(r->peer_pwd), "%s", r->offer->transport.ice_pwd);
    r->client_key = EVP_EC_gen("P-256");
    assert_non_null(r->client_key);
    r->client_cert = responder_client_cert(r->client_key);
    unsigned n = 0;
    assert_true(X509_digest(r->client_cert, EVP_sha256(), r->fingerprint, &n) == 1 && n == 32);
    r->client_ctx = SSL_CTX_new(DTLS_client_method());
    assert_non_null(r->client_ctx);
    assert_int_equal(SSL_CTX_use_certificate(r->client_ctx, r->client_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(r->client_ctx, r->client_key), 1);
    assert_int_equal(SSL_CTX_set_tlsext_use_srtp(r->client_ctx, "SRTP_AES128_CM_SHA1_80"), 0);
    SSL_CTX_set_verify(r->client_ctx, SSL_VERIFY_PEER, responder_client_verify);
    SSL_CTX_set_options(r->client_ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET);
    r->client = SSL_new(r->client_ctx);
    r->client_rbio = BIO_new(BIO_s_mem());
    r->client_wbio = BIO_new(BIO_s_mem());
    assert_true(r->client && r->client_rbio && r->client_wbio);
    BIO_set_mem_eof_return(r->client_rbio, -1);
    BIO_set_mem_eof_return(r->client_wbio, -1);
    SSL_set_bio(r->client, r->client_rbio, r->client_wbio);
    SSL_set_connect_state(r->client);
    assert_true(DTLS_set_link_mtu(r->client, 1200) == 1);
    responder_write_answer(r, r->offer, responder_ufrag, responder_pwd, 1, false, r->answer);
    answer_replace(r->answer, "a=setup:passive", "a=setup:active");
    answer_replace(r->answer, "a=ice-lite\r\n", "");
    assert_non_null(strstr(r->answer, "a=setup:active"));
}

/*
 * The peer's ICE restart offer: checks that only its ICE credentials and
 * version changed, takes new credentials of our own at once (as an ICE-lite
 * server does) and writes the answer into r->answer.
 */
static void responder_restart(struct responder *r, const char *offer)
{
    struct media_sdp_offer *o = parse_offer(offer);
    const struct media_sdp_transport *was = &r->offer->transport, *now = &o->transport;
    assert_int_equal(now->fingerprint_count, was->fingerprint_count);
    assert_memory_equal(now->fingerprints[0].bytes, was->fingerprints[0].bytes,
                        was->fingerprints[0].len);
    assert_string_not_equal(now->ice_ufrag, was->ice_ufrag);
    assert_string_not_equal(now->ice_pwd, was->ice_pwd);
    assert_int_equal(o->mlines[o->video].fids[0].primary, r->peer_video_ssrc);
    pthread_mutex_lock(&r->ice_lock);
    r->ufrag = restart_ufrag;
    r->pwd = restart_pwd;
    snprintf(r->remote_ufrag, sizeof(r->remote_ufrag), "%s", now->ice_ufrag);
    pthread_mutex_unlock(&r->ice_lock);
    responder_write_answer(r, o, restart_ufrag, restart_pwd, 2, false, r->answer);
    free(r->offer);
    r->offer = o;
}

static void responder_start(struct responder *r)
{
    assert_int_equal(pthread_create(&r->thread, NULL, responder_thread, r), 0);
    r->running = true;
}

static void responder_free(struct responder *r)
{
    if (!r)
        return;
    if (r->running) {
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
    }
    media_srtp_free(r->srtp);
    SSL_free(r->client); /* and its BIOs */
    SSL_CTX_free(r->client_ctx);
    X509_free(r->client_cert);
    EVP_PKEY_free(r->client_key);
    media_dtls_free(r->dtls);
    media_dtls_ctx_free(r->dtls_ctx);
    media_stun_ctx_free(r->stun);
    pthread_mutex_destroy(&r->ice_lock);
    free(r->offer);
    close(r->fd);
    free(r);
}

/* ------------------------------------------------------------------------- */
/* A peer and its responder, held by the fixture so a failed test frees them  */
/* ------------------------------------------------------------------------- */

struct pair {
    struct tp_peer *peer;
    struct responder *responder;
};

#define MAX_PAIRS 3

struct fixture {
    struct pair pairs[MAX_PAIRS];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < MAX_PAIRS; i++) {
        tp_peer_free(f->pairs[i].peer);
        responder_free(f->pairs[i].responder);
    }
    free(f);
    return 0;
}

/* Makes a peer from `cfg` and a responder to its offer. */
static struct pair *pair_new(struct fixture *f, int i, const struct tp_config *cfg,
                             bool wrong_server_fingerprint, enum resend resend)
{
    struct pair *pr = &f->pairs[i];
    char err[256] = "";
    pr->peer = tp_peer_new(cfg, err, sizeof(err));
    if (!pr->peer)
        fail_msg("tp_peer_new: %s", err);
    char *offer = tp_peer_offer(pr->peer);
    assert_non_null(offer);
    pr->responder = responder_new(offer, wrong_server_fingerprint, resend);
    free(offer);
    return pr;
}

/* Makes a peer and its responder, exchanges offer and answer, and starts both. */
static struct pair *pair_start_resend(struct fixture *f, int i, const struct tp_config *cfg,
                                      bool wrong_server_fingerprint, enum resend resend)
{
    struct pair *pr = pair_new(f, i, cfg, wrong_server_fingerprint, resend);
    char err[256] = "";
    if (tp_peer_set_answer(pr->peer, pr->responder->answer, err, sizeof(err)) != 0)
        fail_msg("tp_peer_set_answer: %s", err);
    responder_start(pr->responder);
    assert_int_equal(tp_peer_start(pr->peer), 0);
    assert_int_equal(tp_peer_start(pr->peer), -1); /* a peer runs once */
    return pr;
}

static struct pair *pair_start(struct fixture *f, int i, const struct tp_config *cfg,
                               bool wrong_server_fingerprint)
{
    return pair_start_resend(f, i, cfg, wrong_server_fingerprint, RESEND_RTX);
}

/* Like pair_new() with the active responder (responder_make_active): neither is started, and
 * the peer has not taken the answer yet. */
static struct pair *pair_new_active(struct fixture *f, int i, const struct tp_config *cfg)
{
    struct pair *pr = pair_new(f, i, cfg, false, RESEND_RTX);
    responder_make_active(pr->responder);
    return pr;
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

/* The offer is what a browser sends and what the server's parser accepts. */
static void test_offer(void **state)
{
    (void)state;
    struct tp_config cfg = {.name = "patient", .tone_hz = 440, .video_kbps = 300};
    char err[256] = "";
    struct tp_peer *p = tp_peer_new(&cfg, err, sizeof(err));
    assert_non_null(p);
    assert_true(tp_peer_local_port(p) != 0);
    assert_int_equal(tp_peer_send_raw(p, "x", 1), -ENOTCONN);
    char *offer = tp_peer_offer(p);
    assert_non_null(offer);

    struct media_sdp_offer *o = malloc(sizeof(*o));
    assert_non_null(o);
    struct media_sdp_error perr;
    assert_int_equal(media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &perr), 0);
    assert_int_equal(o->bundle_count, 2);
    assert_true(o->transport.ice_trickle);
    assert_int_equal(o->transport.setup, MEDIA_SDP_SETUP_ACTPASS);
    assert_int_equal(o->transport.fingerprint_count, 1);
    const struct media_sdp_mline *a = &o->mlines[o->audio];
    const struct media_sdp_mline *v = &o->mlines[o->video];
    assert_int_equal(a->choices[0].pt, TP_OFFER_OPUS_PT);
    assert_true(a->rtcp_rsize);
    assert_int_equal(a->direction, MEDIA_SDP_SENDRECV);
    assert_int_equal(a->ssrc_count, 1);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL], TP_EXT_AUDIO_LEVEL);
    assert_int_equal(a->ext_id[MEDIA_SDP_EXT_MID], TP_EXT_MID);
    assert_int_equal(v->choices[0].codec, MEDIA_SDP_CODEC_VP8);
    assert_int_equal(v->choices[0].pt, TP_OFFER_VP8_PT);
    assert_int_equal(v->choices[0].rtx_pt, TP_OFFER_RTX_PT);
    assert_int_equal(v->codecs[0].fb, MEDIA_SDP_FB_NACK | MEDIA_SDP_FB_NACK_PLI |
                                          MEDIA_SDP_FB_CCM_FIR | MEDIA_SDP_FB_GOOG_REMB |
                                          MEDIA_SDP_FB_TRANSPORT_CC);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC], TP_EXT_TRANSPORT_CC);
    assert_int_equal(v->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME], TP_EXT_ABS_SEND_TIME);
    assert_int_equal(v->ssrc_count, 2);
    assert_int_equal(v->fid_count, 1);
    assert_int_equal(v->fids[0].primary, v->ssrcs[0].ssrc);
    assert_string_equal(v->ssrcs[0].cname, a->ssrcs[0].cname);

    /* An answer whose candidate is not on loopback is refused. */
    struct media_sdp_answer_params params = {
        .ice_ufrag = responder_ufrag,
        .ice_pwd = responder_pwd,
        .public_ip = "192.0.2.1",
        .port = 4000,
        .session_id = 1,
        .session_version = 1,
        .cname = "c",
        .stream_id = "s",
        .audio_track_id = "a",
        .video_track_id = "v",
        .audio_ssrc = 1,
        .video_ssrc = 2,
    };
    char answer[ANSWER_MAX];
    assert_true(media_sdp_write_answer(o, &params, answer, sizeof(answer)) > 0);
    assert_int_equal(tp_peer_set_answer(p, answer, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "192.0.2.1"));
    assert_int_equal(tp_peer_start(p), -1); /* no answer taken */
    free(o);
    free(offer);

    /* A peer that sends nothing only receives: recvonly m-lines without SSRCs. */
    struct tp_config quiet = {.name = "viewer"};
    struct tp_peer *q = tp_peer_new(&quiet, err, sizeof(err));
    assert_non_null(q);
    offer = tp_peer_offer(q);
    assert_non_null(offer);
    o = malloc(sizeof(*o));
    assert_non_null(o);
    assert_int_equal(media_sdp_parse(offer, strlen(offer), MEDIA_SDP_OFFER, o, &perr), 0);
    assert_int_equal(o->mlines[o->audio].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[o->video].direction, MEDIA_SDP_RECVONLY);
    assert_int_equal(o->mlines[o->video].ssrc_count, 0);
    free(o);
    free(offer);
    tp_peer_free(q);
    tp_peer_free(p);
    tp_peer_free(NULL);
}

/* Waits until every pair's peer has decoded `samples` and received `video` packets. */
static void wait_media(struct fixture *f, int n, uint64_t samples, uint64_t video)
{
    uint64_t deadline = now_ms() + MEDIA_BUDGET_MS;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++) {
            struct tp_stats s;
            tp_peer_stats(f->pairs[i].peer, &s);
            all &= s.audio_decoded_samples >= samples && s.video_received >= video;
        }
        if (all)
            return;
        if (now_ms() > deadline)
            fail_msg("the echoed media did not arrive in %d ms", MEDIA_BUDGET_MS);
        sleep_ms(50);
    }
}

/*
 * Two peers at once, each with its own responder: 440 Hz and 880 Hz come
 * back as themselves, video byte-identical and in order under the
 * responder's SSRCs, consent checks answered; silence stops everything.
 */
static void test_echo(void **state)
{
    struct fixture *f = *state;
    struct tp_config patient = {.name = "patient",
                                .tone_hz = 440,
                                .video_kbps = 500,
                                .video_tag = 1,
                                .consent_interval_ms = 200};
    struct tp_config doctor = {.name = "doctor", .tone_hz = 880, .video_kbps = 300, .video_tag = 2};
    pair_start(f, 0, &patient, false);
    pair_start(f, 1, &doctor, false);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tp_peer_wait_connected(f->pairs[i].peer, CONNECT_BUDGET_MS), 0);

    /* A raw datagram from the peer's own socket reaches the server. */
    assert_int_equal(tp_peer_send_raw(f->pairs[0].peer, "\xFF\xFF\xFF\xFF", 4), 0);

    wait_media(f, 2, 48000 * 3 / 4, 60);
    const double tones[2] = {440, 880};
    const uint32_t tags[2] = {1, 2};
    for (int i = 0; i < 2; i++) {
        struct pair *pr = &f->pairs[i];
        struct tp_stats s;
        tp_peer_stats(pr->peer, &s);
        assert_true(s.connected);
        assert_false(s.dtls_failed);
        assert_int_equal(s.dtls_alert, -1);
        assert_true(s.stun_success_received >= 1);
        assert_true(s.audio_sent > 0);
        assert_true(s.video_sent > s.video_frames_sent); /* key frames take several packets */
        assert_true(s.audio_received > 0);
        assert_true(s.video_received > 0);
        assert_int_equal(s.srtp_errors, 0);
        assert_int_equal(s.video_payload_mismatches, 0);
        assert_int_equal(s.video_out_of_order, 0);
        assert_int_equal(s.last_audio_ssrc_received, pr->responder->audio_ssrc);
        assert_int_equal(s.last_video_ssrc_received, pr->responder->video_ssrc);
        assert_int_equal(s.last_video_tag_received, tags[i]);
        if (fabs(s.audio_peak_hz - tones[i]) > 10)
            fail_msg("peer %d: sent %.0f Hz, heard %.1f Hz", i, tones[i], s.audio_peak_hz);
        assert_true(atomic_load(&pr->responder->rtp_echoed) > 0);
    }
    assert_true(atomic_load(&f->pairs[0].responder->others) >= 1);

    /* Consent every 200 ms: several checks answered by now. RTCP RRs came back. */
    struct tp_stats s0;
    tp_peer_stats(f->pairs[0].peer, &s0);
    assert_true(s0.stun_sent >= 3);
    assert_true(s0.stun_success_received >= 3);
    assert_true(s0.rtcp_received >= 1);

    /* Silent: nothing more goes out. */
    tp_peer_set_silent(f->pairs[0].peer, true);
    sleep_ms(60); /* lets a packet already on its way land */
    struct tp_stats before, after;
    tp_peer_stats(f->pairs[0].peer, &before);
    unsigned echoed = atomic_load(&f->pairs[0].responder->rtp_echoed);
    sleep_ms(300);
    tp_peer_stats(f->pairs[0].peer, &after);
    assert_int_equal(after.audio_sent, before.audio_sent);
    assert_int_equal(after.video_sent, before.video_sent);
    assert_int_equal(after.stun_sent, before.stun_sent);
    assert_int_equal(atomic_load(&f->pairs[0].responder->rtp_echoed), echoed);

    for (int i = 0; i < 2; i++) {
        tp_peer_stop(f->pairs[i].peer);
        struct tp_stats s;
        tp_peer_stats(f->pairs[i].peer, &s);
        assert_true(s.connected); /* readable after the stop */
    }
}

/* Waits for the responder's DTLS leg to fail; returns why. */
static int wait_responder_failure(struct responder *r)
{
    uint64_t deadline = now_ms() + FAIL_BUDGET_MS;
    while (atomic_load(&r->dtls_failure) == 0 && now_ms() < deadline)
        sleep_ms(10);
    return atomic_load(&r->dtls_failure);
}

/* The peer offers a fingerprint that is not its certificate's: the server must refuse it. */
static void test_peer_lies_about_fingerprint(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "liar", .tone_hz = 440, .lie_about_fingerprint = true};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, FAIL_BUDGET_MS), -1);
    assert_int_equal(wait_responder_failure(pr->responder), MEDIA_DTLS_ERR_FINGERPRINT);
    assert_false(atomic_load(&pr->responder->connected));
    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_false(s.connected);
    assert_true(s.dtls_failed);
    assert_int_equal(s.dtls_alert, BAD_CERTIFICATE);
    assert_true(s.stun_success_received >= 1); /* ICE worked; DTLS did not */
    assert_int_equal(s.audio_sent, 0);
    assert_int_equal(s.audio_received, 0);
}

/* The answer names a certificate the server does not have: the peer must refuse it. */
static void test_server_fingerprint_wrong(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "careful", .tone_hz = 440, .video_kbps = 100};
    struct pair *pr = pair_start(f, 0, &cfg, true);
    assert_int_equal(tp_peer_wait_connected(pr->peer, FAIL_BUDGET_MS), -1);
    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_false(s.connected);
    assert_true(s.dtls_failed);
    assert_int_equal(s.audio_sent, 0);
    /* The peer said why: a bad_certificate alert ends the server's leg. */
    assert_int_equal(wait_responder_failure(pr->responder), MEDIA_DTLS_ERR_ALERT);
    assert_int_equal(atomic_load(&pr->responder->peer_alert), BAD_CERTIFICATE);
    assert_false(atomic_load(&pr->responder->connected));
}

/* ------------------------------------------------------------------------- */
/* Loss recovery, key frames, silence, network moves                          */
/* ------------------------------------------------------------------------- */

/* Polls every 10 ms until `done` says so for the peer's stats, or fails after `budget_ms`. */
static void wait_stats(struct tp_peer *p, struct tp_stats *s, int budget_ms,
                       bool (*done)(const struct tp_stats *s, const void *arg), const void *arg,
                       const char *what)
{
    uint64_t deadline = now_ms() + (uint64_t)budget_ms;
    for (;;) {
        tp_peer_stats(p, s);
        if (done(s, arg))
            return;
        if (now_ms() > deadline)
            fail_msg("%s did not happen in %d ms", what, budget_ms);
        sleep_ms(10);
    }
}

/* Everything dropped so far is recovered, and at least *arg was dropped. */
static bool all_recovered(const struct tp_stats *s, const void *arg)
{
    uint64_t at_least = *(const uint64_t *)arg;
    return s->video_dropped >= at_least && s->video_recovered == s->video_dropped &&
           s->video_missing == 0;
}

/* At least *arg given up. */
static bool given_up(const struct tp_stats *s, const void *arg)
{
    return s->video_unrecovered >= *(const uint64_t *)arg;
}

/* Nothing missing any more: every NACK try was made. */
static bool none_missing(const struct tp_stats *s, const void *arg)
{
    (void)arg;
    return s->video_missing == 0;
}

/*
 * drop_video_every = 10 on three peers at once: one whose responder answers
 * NACKs with RTX, one with plain resends, one that does not answer at all.
 * The first two recover every dropped packet byte for byte with no
 * sequence jump; the third gives each up after TP_NACK_TRIES NACKs.
 */
static void test_nack_recovery(void **state)
{
    struct fixture *f = *state;
    const enum resend how[3] = {RESEND_RTX, RESEND_PLAIN, RESEND_NONE};
    const char *names[3] = {"rtx", "plain", "deaf"};
    for (int i = 0; i < 3; i++) {
        struct tp_config cfg = {.name = names[i],
                                .tone_hz = 440,
                                .video_kbps = 600,
                                .video_tag = 10u + (uint32_t)i,
                                .drop_video_every = 10};
        pair_start_resend(f, i, &cfg, false, how[i]);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_peer_wait_connected(f->pairs[i].peer, CONNECT_BUDGET_MS), 0);

    uint64_t want = 20;
    for (int i = 0; i < 2; i++) {
        struct pair *pr = &f->pairs[i];
        struct tp_stats s;
        wait_stats(pr->peer, &s, MEDIA_BUDGET_MS, all_recovered, &want, "recovery");
        print_message("%s: %llu video packets received, %llu dropped, %llu recovered, "
                      "%llu unrecovered; %llu NACKs for %llu seqs, %llu RTX received, "
                      "responder resent %u; %llu late, %llu seq jumps; slowest recovery %.1f ms\n",
                      names[i], (unsigned long long)s.video_received,
                      (unsigned long long)s.video_dropped, (unsigned long long)s.video_recovered,
                      (unsigned long long)s.video_unrecovered, (unsigned long long)s.nacks_sent,
                      (unsigned long long)s.nacked_seqs, (unsigned long long)s.rtx_received,
                      atomic_load(&pr->responder->resent), (unsigned long long)s.video_late,
                      (unsigned long long)s.video_seq_jumps,
                      (double)s.video_recovery_max_us / 1000);
        assert_int_equal(s.video_unrecovered, 0);
        assert_true(s.video_recovery_max_us < 1000u * TP_NACK_GIVE_UP_MS);
        assert_int_equal(s.video_payload_mismatches, 0);
        assert_int_equal(s.video_out_of_order, 0);
        assert_int_equal(s.video_seq_jumps, 0);
        assert_int_equal(s.video_ts_backwards, 0);
        assert_int_equal(s.ssrc_changes, 0);
        assert_int_equal(s.srtp_errors, 0);
        assert_int_equal(s.last_video_ssrc_received, pr->responder->video_ssrc);
        /* Each loss asked for, normally once (the resend comes back before the next try,
         * TP_NACK_INTERVAL_MS later; a slow machine may ask again). */
        assert_true(s.nacks_sent >= 1);
        assert_true(s.nacked_seqs >= s.video_dropped);
        assert_true(s.nacked_seqs <= (uint64_t)TP_NACK_TRIES * s.video_dropped);
        assert_true(atomic_load(&pr->responder->nacked) >= s.nacked_seqs); /* (goes on) */
        if (how[i] == RESEND_RTX)
            assert_true(s.rtx_received >= s.video_recovered); /* (a repeat is late) */
        else
            assert_int_equal(s.rtx_received, 0);
    }

    /* Nobody answers: each loss is asked for TP_NACK_TRIES times, then given up, one jump per
     * gap (here each gap is one packet). Once a few are given up, the responder stops the
     * video so that no new loss comes, and the last ones run their course. */
    struct pair *deaf = &f->pairs[2];
    struct tp_stats s;
    uint64_t some = 3;
    wait_stats(deaf->peer, &s, MEDIA_BUDGET_MS, given_up, &some, "giving up");
    atomic_store(&deaf->responder->mute, true);
    wait_stats(deaf->peer, &s, 2 * TP_NACK_GIVE_UP_MS, none_missing, NULL, "the last give-up");
    print_message("deaf: %llu dropped, %llu unrecovered, %llu NACKs for %llu seqs, "
                  "%llu seq jumps\n",
                  (unsigned long long)s.video_dropped, (unsigned long long)s.video_unrecovered,
                  (unsigned long long)s.nacks_sent, (unsigned long long)s.nacked_seqs,
                  (unsigned long long)s.video_seq_jumps);
    assert_int_equal(s.video_recovered, 0);
    /* (The last packet dropped may have been the last sent: then no gap showed it.) */
    assert_true(s.video_unrecovered == s.video_dropped ||
                s.video_unrecovered + 1 == s.video_dropped);
    assert_int_equal(s.video_seq_jumps, s.video_unrecovered);
    assert_int_equal(s.nacked_seqs, (uint64_t)TP_NACK_TRIES * s.video_unrecovered);
    assert_int_equal(s.video_payload_mismatches, 0);
    assert_int_equal(s.video_out_of_order, 0);
}

/* pli_received reached *arg. */
static bool plis_in(const struct tp_stats *s, const void *arg)
{
    return s->pli_received + s->fir_received >= *(const uint64_t *)arg &&
           s->key_frames_requested >= *(const uint64_t *)arg;
}

/*
 * The peer's PLI reaches the responder, which asks the peer for a key frame
 * of its own video: PLI about the peer's SSRC, then FIR (sent twice with
 * one command seq: one key frame). The responder's echo of the peer's own
 * PLI names the responder's SSRC and must not count.
 */
static void test_key_frames(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "viewer", .tone_hz = 440, .video_kbps = 300, .video_tag = 7};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, CONNECT_BUDGET_MS), 0);
    wait_media(f, 1, 0, 10);

    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_int_equal(s.pli_received, 0);
    uint64_t periodic = s.key_frames_sent;
    assert_true(periodic >= 1); /* frame 0 */
    uint64_t t0 = now_ms();
    tp_peer_request_key_frame(pr->peer);
    uint64_t one = 1;
    wait_stats(pr->peer, &s, 1000, plis_in, &one, "the PLI round trip");
    uint64_t ms = now_ms() - t0;
    sleep_ms(100); /* the echoed PLI (about the responder's SSRC) has come back by now */
    tp_peer_stats(pr->peer, &s);
    print_message("PLI -> responder -> PLI about the peer's video -> key frame in %llu ms; "
                  "%llu key frames sent in all\n",
                  (unsigned long long)ms, (unsigned long long)s.key_frames_sent);
    assert_int_equal(s.plis_sent, 1);
    assert_int_equal(atomic_load(&pr->responder->plis), 1);
    assert_int_equal(s.pli_received, 1);
    assert_int_equal(s.key_frames_requested, 1);
    assert_true(s.key_frames_sent >= periodic + 1);
    assert_int_equal(s.nacks_received, 0);

    atomic_store(&pr->responder->pli_as_fir, true);
    tp_peer_request_key_frame(pr->peer);
    uint64_t two = 2;
    wait_stats(pr->peer, &s, 1000, plis_in, &two, "the FIR round trip");
    sleep_ms(100);
    tp_peer_stats(pr->peer, &s);
    assert_int_equal(s.plis_sent, 2);
    assert_int_equal(s.pli_received, 1);
    assert_int_equal(s.fir_received, 1); /* the repeat of the same command is not another */
    assert_int_equal(s.key_frames_requested, 2);
    assert_int_equal(s.video_payload_mismatches, 0);
    assert_int_equal(s.video_out_of_order, 0);
}

/* Waits ~0.6 s (more than the 0.5 s the level and frequency look at) and reads the stats. */
static void settle_audio(struct tp_peer *p, struct tp_stats *s)
{
    sleep_ms(600);
    tp_peer_stats(p, s);
}

/* A muted microphone: Opus frames of silence go on every 20 ms and decode to silence. */
static void test_audio_silence(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "muted", .tone_hz = 440};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, CONNECT_BUDGET_MS), 0);
    wait_media(f, 1, 48000 / 2, 0);
    struct tp_stats tone, silent, back;
    tp_peer_stats(pr->peer, &tone);
    assert_true(fabs(tone.audio_peak_hz - 440) < 10);
    assert_int_equal(atomic_load(&pr->responder->audio_level), 0x80 | 10);

    tp_peer_set_audio_silent(pr->peer, true);
    settle_audio(pr->peer, &silent);
    int level = atomic_load(&pr->responder->audio_level);
    tp_peer_set_audio_silent(pr->peer, false);
    settle_audio(pr->peer, &back);
    print_message("tone %.1f Hz at %.1f dBFS; muted: %.1f Hz at %.1f dBFS, %llu packets in "
                  "0.6 s, level byte 0x%02x; unmuted: %.1f Hz at %.1f dBFS\n",
                  tone.audio_peak_hz, tone.audio_rms_dbfs, silent.audio_peak_hz,
                  silent.audio_rms_dbfs,
                  (unsigned long long)(silent.audio_received - tone.audio_received), level,
                  back.audio_peak_hz, back.audio_rms_dbfs);
    assert_true(tone.audio_rms_dbfs > -20 && tone.audio_rms_dbfs < -5); /* 0.3 full scale */
    assert_true(silent.audio_peak_hz == 0);
    assert_true(silent.audio_rms_dbfs < -80);
    assert_true(silent.audio_received - tone.audio_received >= 25); /* still every 20 ms */
    assert_true(silent.audio_decoded_samples > tone.audio_decoded_samples);
    assert_int_equal(level, 127); /* -127 dBov, no voice activity */
    assert_true(fabs(back.audio_peak_hz - 440) < 10);
    assert_true(back.audio_rms_dbfs > -20);
    assert_int_equal(back.audio_seq_jumps, 0);
}

/* address_changes reached 1 and video_received went past *arg. */
static bool moved(const struct tp_stats *s, const void *arg)
{
    return s->address_changes >= 1 && s->video_received >= *(const uint64_t *)arg &&
           s->video_missing == 0;
}

/*
 * The peer moves to a new port mid-call: checks from the new socket, the
 * responder follows it, media goes on with the same DTLS and SRTP. What was
 * in flight to the old port is lost and comes back by NACK and RTX.
 */
static void test_address_change(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "phone", .tone_hz = 440, .video_kbps = 400, .video_tag = 5};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, CONNECT_BUDGET_MS), 0);
    wait_media(f, 1, 48000 / 4, 20);
    struct tp_stats before, after;
    tp_peer_stats(pr->peer, &before);
    uint16_t old_port = tp_peer_local_port(pr->peer);
    unsigned dtls = atomic_load(&pr->responder->dtls_datagrams);
    assert_int_equal(atomic_load(&pr->responder->peer_port), old_port);
    assert_false(before.ice_checking);

    uint64_t t0 = now_ms();
    tp_peer_change_address(pr->peer);
    uint64_t none = 0;
    wait_stats(pr->peer, &after, 1000, moved, &none, "the move");
    uint64_t move_ms = now_ms() - t0;
    uint64_t want = after.video_received + 60;
    wait_stats(pr->peer, &after, MEDIA_BUDGET_MS, moved, &want, "video after the move");
    uint16_t new_port = tp_peer_local_port(pr->peer);
    print_message("moved from port %u to %u, confirmed within %llu ms after %llu check(s); "
                  "then 60 more video packets; %llu lost in flight and recovered\n",
                  old_port, new_port, (unsigned long long)move_ms,
                  (unsigned long long)(after.stun_sent - before.stun_sent),
                  (unsigned long long)after.video_recovered);
    assert_true(new_port != old_port);
    assert_int_equal(atomic_load(&pr->responder->peer_port), new_port);
    assert_int_equal(after.address_changes, 1);
    assert_false(after.ice_checking);
    assert_true(after.stun_sent > before.stun_sent);
    assert_true(after.connected);
    assert_false(after.dtls_failed);
    assert_int_equal(atomic_load(&pr->responder->dtls_datagrams), dtls); /* no new handshake */
    assert_true(after.audio_received > before.audio_received);
    assert_int_equal(after.srtp_errors, 0);
    assert_int_equal(after.video_payload_mismatches, 0);
    assert_int_equal(after.video_out_of_order, 0);
    assert_int_equal(after.video_unrecovered, 0);
    assert_int_equal(after.video_seq_jumps, 0);
    assert_int_equal(after.ssrc_changes, 0);
    /* A raw datagram now leaves from the new socket. */
    unsigned others = atomic_load(&pr->responder->others);
    assert_int_equal(tp_peer_send_raw(pr->peer, "\xFF\xFF", 2), 0);
    sleep_ms(50);
    assert_int_equal(atomic_load(&pr->responder->others), others + 1);
}

/* ice_restarts reached 1 and video_received went past *arg. */
static bool restarted(const struct tp_stats *s, const void *arg)
{
    return s->ice_restarts >= 1 && s->video_received >= *(const uint64_t *)arg;
}

/*
 * An ICE restart: a new offer with new credentials (the rest unchanged),
 * answers that change the fingerprint or keep the old credentials refused,
 * the good one taken on the running peer; checks with the new credentials,
 * media throughout, no new handshake.
 */
static void test_ice_restart(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {.name = "restarter",
                            .tone_hz = 440,
                            .video_kbps = 300,
                            .video_tag = 6,
                            .consent_interval_ms = 100};
    struct pair *pr = pair_start(f, 0, &cfg, false);
    assert_int_equal(tp_peer_wait_connected(pr->peer, CONNECT_BUDGET_MS), 0);
    wait_media(f, 1, 48000 / 4, 20);
    char err[256] = "";
    char *first = tp_peer_offer(pr->peer);
    assert_non_null(first);
    char *offer = tp_peer_restart_ice(pr->peer);
    assert_non_null(offer);
    char *again = tp_peer_offer(pr->peer);
    assert_string_equal(again, offer);
    free(again);
    struct media_sdp_offer *was = parse_offer(first), *now = parse_offer(offer);
    assert_string_not_equal(now->transport.ice_ufrag, was->transport.ice_ufrag);
    assert_int_equal(now->mline_count, was->mline_count);
    assert_int_equal(now->mlines[now->video].fids[0].rtx, was->mlines[was->video].fids[0].rtx);
    assert_int_equal(now->mlines[now->audio].ssrcs[0].ssrc, was->mlines[was->audio].ssrcs[0].ssrc);
    free(was);
    free(now);
    const char *o1 = strstr(first, "o=- "), *o2 = strstr(offer, "o=- ");
    unsigned long long id1, id2, v1, v2;
    assert_int_equal(sscanf(o1, "o=- %llu %llu", &id1, &v1), 2);
    assert_int_equal(sscanf(o2, "o=- %llu %llu", &id2, &v2), 2);
    assert_true(id1 == id2 && v2 == v1 + 1);

    /* An answer naming another certificate is refused, and so is one with the old
     * credentials (not an answer to a restart). */
    char *bad = malloc(ANSWER_MAX);
    assert_non_null(bad);
    struct media_sdp_offer *o = parse_offer(offer);
    responder_write_answer(pr->responder, o, restart_ufrag, restart_pwd, 2, true, bad);
    assert_int_equal(tp_peer_set_answer(pr->peer, bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fingerprint"));
    responder_write_answer(pr->responder, o, responder_ufrag, responder_pwd, 2, false, bad);
    assert_int_equal(tp_peer_set_answer(pr->peer, bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "old ICE credentials"));
    free(o);
    free(bad);

    struct tp_stats before, after;
    tp_peer_stats(pr->peer, &before);
    unsigned dtls = atomic_load(&pr->responder->dtls_datagrams);
    responder_restart(pr->responder, offer);
    uint64_t t0 = now_ms();
    if (tp_peer_set_answer(pr->peer, pr->responder->answer, err, sizeof(err)) != 0)
        fail_msg("the restart's answer: %s", err);
    /* Once taken, the peer wants no other answer until the next restart. */
    assert_int_equal(tp_peer_set_answer(pr->peer, pr->responder->answer, err, sizeof(err)), -1);
    uint64_t none = 0;
    wait_stats(pr->peer, &after, 1000, restarted, &none, "the ICE restart");
    uint64_t ms = now_ms() - t0;
    uint64_t want = after.video_received + 60;
    wait_stats(pr->peer, &after, MEDIA_BUDGET_MS, restarted, &want, "video after the restart");
    sleep_ms(300); /* consent checks with the new credentials */
    tp_peer_stats(pr->peer, &after);
    print_message("ICE restart confirmed within %llu ms of the answer; %llu video packets "
                  "since the restart began; STUN successes %llu -> %llu\n",
                  (unsigned long long)ms,
                  (unsigned long long)(after.video_received - before.video_received),
                  (unsigned long long)before.stun_success_received,
                  (unsigned long long)after.stun_success_received);
    assert_int_equal(after.ice_restarts, 1);
    assert_false(after.ice_checking);
    assert_true(after.stun_success_received >= before.stun_success_received + 3);
    assert_int_equal(atomic_load(&pr->responder->dtls_datagrams), dtls);
    assert_int_equal(after.address_changes, 0);
    assert_int_equal(after.srtp_errors, 0);
    assert_int_equal(after.video_payload_mismatches, 0);
    assert_int_equal(after.video_seq_jumps, 0);
    assert_int_equal(after.audio_seq_jumps, 0);
    free(first);
    free(offer);
}

/*
 * Answered as Janus answers (setup:active, full ICE): the peer is the DTLS
 * server, keeps the ClientHello that came before its check succeeded, answers
 * the responder's own check, and the echo works with the keys the other way
 * round. An answer that leaves the choice open (actpass) is refused.
 */
static void test_dtls_server(void **state)
{
    struct fixture *f = *state;
    struct tp_config cfg = {
        .name = "janus-like", .tone_hz = 440, .video_kbps = 300, .video_tag = 8};
    struct pair *pr = pair_new_active(f, 0, &cfg);
    char err[256] = "";
    char *open_choice = malloc(ANSWER_MAX);
    assert_non_null(open_choice);
    memcpy(open_choice, pr->responder->answer, ANSWER_MAX);
    answer_replace(open_choice, "a=setup:active", "a=setup:actpass");
    assert_int_equal(tp_peer_set_answer(pr->peer, open_choice, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "a=setup"));
    free(open_choice);

    if (tp_peer_set_answer(pr->peer, pr->responder->answer, err, sizeof(err)) != 0)
        fail_msg("tp_peer_set_answer: %s", err);
    responder_start(pr->responder);
    uint64_t t0 = now_ms();
    assert_int_equal(tp_peer_start(pr->peer), 0);
    assert_int_equal(tp_peer_wait_connected(pr->peer, CONNECT_BUDGET_MS), 0);
    uint64_t took = now_ms() - t0;
    print_message("connected as the DTLS server in %llu ms\n", (unsigned long long)took);
    /* Had the early ClientHello been dropped, only the client's retransmission (OpenSSL's
     * first timer: 1 s) would have started the handshake. */
    assert_true(took < 900);
    wait_media(f, 1, 48000 * 3 / 4, 60);
    struct responder *r = pr->responder;
    assert_true(atomic_load(&r->connected));
    assert_true(atomic_load(&r->hello_early));
    assert_true(atomic_load(&r->own_check_ok));
    assert_int_equal(atomic_load(&r->dtls_failure), 0);
    struct tp_stats s;
    tp_peer_stats(pr->peer, &s);
    assert_true(s.connected);
    assert_true(s.dtls_server);
    assert_false(s.dtls_failed);
    assert_true(s.stun_requests_answered >= 1);
    assert_true(s.stun_success_received >= 1);
    assert_int_equal(s.srtp_errors, 0);
    assert_int_equal(s.video_payload_mismatches, 0);
    assert_int_equal(s.last_video_tag_received, 8);
    assert_int_equal(s.last_video_ssrc_received, r->video_ssrc);
    if (fabs(s.audio_peak_hz - 440) > 10)
        fail_msg("sent 440 Hz, heard %.1f Hz", s.audio_peak_hz);
    tp_peer_stop(pr->peer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer),
        cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_lies_about_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_fingerprint_wrong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audio_silence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ice_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtls_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
