/*
 * test_peer.c - the C test peer (see test_peer.h): a browser's part of a
 * WebRTC leg over one UDP socket on 127.0.0.1, built from the media
 * library's protocol code (STUN, SDP, SRTP, RTP, RTCP) plus its own DTLS
 * (client or server, as the answer's a=setup says) over OpenSSL memory BIOs,
 * and libopus.
 *
 * Threads: the public calls run on the test's thread; tp_peer_start() makes
 * one thread per peer (peer_thread) that alone touches the socket's receive
 * side, the SSL object, the SRTP sessions and the Opus decoder, sleeping in
 * poll() until a datagram or the next deadline (ICE retry, DTLS timer,
 * consent, audio, video, RTCP, NACK). What other threads read (statistics,
 * the decoded audio) sits behind one mutex; so do the socket and the
 * server's address, which the thread alone changes once it runs but
 * tp_peer_send_raw() uses from anywhere. Requests from other threads (stop,
 * silent, a PLI to send, an address change, an ICE restart's credentials)
 * are atomics, the restart's data under the mutex, and an eventfd wakes the
 * thread to act on them.
 */
#include "test_peer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <opus.h>

#include "dtls.h"
#include "rtcp.h"
#include "rtp.h"
#include "sdp.h"
#include "srtp.h"
#include "stun.h"

#define DTLS_MTU            1200 /* as the server's default: below any path MTU */
#define DTLS_FIRST_TIMER_US 100000
#define DTLS_MAX_TIMER_US   60000000u
#define DATAGRAM_MAX        2048
#define ICE_RETRY_US        50000
#define RTCP_INTERVAL_US    1000000
#define RESYNC_LATE_US      200000 /* further behind than this, a media clock skips ahead */
#define TXID_RING           16     /* recent Binding transaction ids we accept answers to */
#define SOCKET_BUFFER       (1 << 20)

#define AUDIO_RATE        48000
#define AUDIO_FRAME       960 /* 20 ms */
#define AUDIO_LOOP_FRAMES 50  /* one second of tone, sent in a loop */
#define AUDIO_FRAME_BYTES 400
#define AUDIO_AMPLITUDE   0.3
#define AUDIO_LEVEL_DBOV  10         /* -dBov of that amplitude, for ssrc-audio-level */
#define PCM_KEEP          AUDIO_RATE /* the last second of decoded audio */
#define PCM_DECODE_MAX    5760       /* samples of the longest Opus packet (120 ms) */

/* The dominant frequency search: decimate to 8 kHz, look at 0.5 s, 100..2000 Hz. */
#define PEAK_DECIMATE  6
#define PEAK_RATE      (AUDIO_RATE / PEAK_DECIMATE)
#define PEAK_WINDOW    (PEAK_RATE / 2)
#define PEAK_MIN_HZ    100
#define PEAK_MAX_HZ    2000
#define PEAK_STEP_HZ   2
#define PEAK_MIN_RMS   30.0 /* int16 units: quieter than about -60 dBFS is silence */
#define AUDIO_STALE_US 1000000

#define VIDEO_HEADER    16 /* after the 1-byte descriptor: magic, tag, frame, index, length */
#define VIDEO_OVERHEAD  (1 + VIDEO_HEADER)
#define VIDEO_CLOCK     90000
#define VIDEO_KEY_SCALE 5

#define AUDIO_SILENCE_LEVEL 127 /* -dBov of digital silence, for ssrc-audio-level */
#define RMS_FLOOR_DBFS      -120.0

#define MISSING_MAX     512 /* missing video seqs tracked at once; the oldest go first */
#define NACK_PER_PACKET 128 /* seqs per NACK packet (at most 512 bytes of FCI) */
#define NACK_DELAY_US   ((uint64_t)TP_NACK_DELAY_MS * 1000u)
#define NACK_RETRY_US   ((uint64_t)TP_NACK_INTERVAL_MS * 1000u)
#define NACK_GIVE_UP_US ((uint64_t)TP_NACK_GIVE_UP_MS * 1000u)

enum phase {
    PHASE_ICE = 0, /* checking */
    PHASE_DTLS,    /* ICE succeeded, handshake under way */
    PHASE_CONNECTED,
    PHASE_FAILED, /* DTLS failed or was closed: nothing more is sent but STUN */
};

_Static_assert(sizeof(((struct tp_stream *)0)->mid) == MEDIA_SDP_MID_MAX + 1,
               "tp_stream.mid holds any mid the SDP parser accepts");

/* A received video seq the peer waits for: lost, or dropped on purpose. */
struct missing_seq {
    int64_t seq;           /* extended */
    uint64_t shown_us;     /* when its gap showed: it is given up NACK_GIVE_UP_US later */
    uint64_t next_nack_us; /* when to ask (again) */
    unsigned tries;        /* NACKs that asked for it */
    uint32_t gap;          /* which gap it belongs to: one seq jump per gap given up */
};

/* An ICE restart's credentials and address, from set_answer to the peer's thread. */
struct ice_update {
    char local_ufrag[9];
    char local_pwd[25];
    char remote_ufrag[MEDIA_SDP_ICE_MAX + 1];
    char remote_pwd[MEDIA_SDP_ICE_MAX + 1];
    struct sockaddr_in remote;
    uint32_t rx_rtx_ssrc;
};

struct tp_peer {
    struct tp_config cfg;
    char name[32];
    int fd; /* changed by the peer's thread alone once it runs, under `lock` */
    int wake_fd;
    _Atomic uint16_t local_port;
    struct sockaddr_in remote; /* as fd */
    bool have_answer;
    bool ran; /* tp_peer_start() was called once */
    bool thread_running;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool detaching; /* tp_peer_detach(): the thread ends without a close_notify */
    atomic_bool silent;
    atomic_bool audio_silent;  /* send the silence loop instead of the tone */
    atomic_bool want_pli;      /* tp_peer_request_key_frame() */
    atomic_bool want_move;     /* tp_peer_change_address() */
    atomic_bool restart_ready; /* `restart` holds an answered ICE restart */
    struct ice_update restart; /* under `lock` */

    /* The offer, on the test's thread: the credentials it carries (the current ones, or an ICE
     * restart's that wait for their answer) and the o= line's version. */
    char offer_ufrag[9];
    char offer_pwd[25];
    uint64_t session_version;
    bool restart_offered; /* tp_peer_restart_ice() was called: an answer to it may come */
    char remote_ufrag_offered[MEDIA_SDP_ICE_MAX + 1]; /* the server's in its last answer */
    char remote_pwd_offered[MEDIA_SDP_ICE_MAX + 1];

    /* ICE */
    char local_ufrag[9];
    char local_pwd[25];
    char remote_ufrag[MEDIA_SDP_ICE_MAX + 1];
    char remote_pwd[MEDIA_SDP_ICE_MAX + 1];
    uint64_t tie_breaker;
    struct media_stun_ctx *stun;
    uint8_t txids[TXID_RING][MEDIA_STUN_TXID_SIZE];
    unsigned txid_gen[TXID_RING]; /* the ice_gen each request was sent in */
    unsigned txid_next;
    /* Checking again after an address change or ICE restart (peer's thread). A success to a
     * request of the current generation ends it. */
    unsigned ice_gen;
    bool rechecking;       /* connected (or handshaking) and checking again */
    bool media_paused;     /* after an address change, until a check succeeds */
    bool move_checking;    /* a success completes an address change */
    bool restart_checking; /* a success completes an ICE restart */
    uint64_t paused_since_us;

    /* DTLS: the client unless the answer says setup:active (then the server) */
    bool dtls_server;
    uint8_t early_dtls[DATAGRAM_MAX]; /* a ClientHello that came before our ICE check succeeded */
    size_t early_dtls_len;
    EVP_PKEY *key;
    X509 *cert;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    BIO *rbio;                       /* owned by ssl */
    BIO *wbio;                       /* owned by ssl */
    uint8_t fingerprint[32];         /* of our certificate */
    uint8_t offered_fingerprint[32]; /* what the offer says: ours, or the lie */
    unsigned remote_fp_count;
    struct media_sdp_fingerprint remote_fps[MEDIA_SDP_MAX_FPRINTS];
    struct media_srtp *srtp;

    /* Identity in the offer */
    uint64_t session_id;
    char cname[17];
    char stream_id[17];
    char audio_track[17];
    char video_track[17];
    uint32_t audio_ssrc, video_ssrc, rtx_ssrc;

    /* What the answer says we receive */
    int rx_audio_pt; /* -1: none */
    int rx_video_pt;
    int rx_rtx_pt;                   /* VP8's RTX, -1: none */
    uint32_t rx_rtx_ssrc;            /* the server's RTX SSRC (FID), 0: not declared */
    uint32_t rx_video_ssrc_declared; /* the server's primary video SSRC in its answer, or 0 */

    /* Sending, on the peer's thread */
    enum phase phase;
    struct tp_stream audio, video;
    uint16_t twcc_seq;
    uint32_t video_frame;
    unsigned audio_loop_next;
    int audio_loop_len[AUDIO_LOOP_FRAMES];
    uint8_t audio_loop[AUDIO_LOOP_FRAMES][AUDIO_FRAME_BYTES];
    int silence_loop_len[AUDIO_LOOP_FRAMES];
    uint8_t silence_loop[AUDIO_LOOP_FRAMES][AUDIO_FRAME_BYTES];
    bool force_key; /* a PLI or FIR asked for a key frame: the next frame is one */
    bool fir_any;   /* a FIR for us arrived: fir_seq is its command seq */
    uint8_t fir_seq;
    uint64_t next_check_us, next_consent_us, next_audio_us, next_video_us, next_rtcp_us;

    /* Receiving, on the peer's thread */
    OpusDecoder *decoder;
    bool rx_video_any;
    uint32_t rx_video_tag;
    uint64_t rx_video_highest;           /* (frame << 16 | index) of rx_video_tag */
    uint16_t rx_audio_seq, rx_video_seq; /* the last RTP sequence numbers received, for RRs */
    struct {
        uint32_t ssrc;  /* the stream the SR was about (its sender's SSRC), 0: free */
        uint32_t lsr;   /* the middle 32 bits of its NTP time */
        uint64_t at_us; /* when it arrived */
    } rx_srs[4];        /* the last SR received per stream, for our reports' LSR/DLSR */
    uint32_t rx_audio_ts, rx_video_ts;
    /* The primary video stream received (see "Continuity" in test_peer.h). */
    bool rx_primary_any;
    uint32_t rx_primary_ssrc;
    int64_t rx_video_ext;                    /* extended highest seq */
    uint64_t rx_video_new;                   /* new packets seen, for drop_video_every */
    uint32_t loss_state;                     /* xorshift32, for drop_video_percent */
    struct media_twcc_recorder twcc;         /* arrivals of what the server sends us */
    struct missing_seq missing[MISSING_MAX]; /* in the order the gaps showed (= seq order) */
    unsigned n_missing;
    uint32_t gap_next;   /* the last gap's number */
    uint32_t gap_jumped; /* the last gap counted as a jump */
    int16_t decoded[PCM_DECODE_MAX];
    uint8_t expect[TP_VIDEO_MAX_PAYLOAD];

    /* Shared with other threads, under `lock` */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* connected or failed */
    struct tp_stats stats;
    int16_t pcm[PCM_KEEP]; /* a ring of the last second decoded */
    size_t pcm_pos;
    uint64_t last_audio_us;
};

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

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

static uint16_t get16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
    put16(b, (uint16_t)(v >> 16));
    put16(b + 2, (uint16_t)v);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Fills `out` with `len` random letters and digits (ICE characters), NUL-terminated. */
static int random_token(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t raw[64];
    if (len > sizeof(raw) || RAND_bytes(raw, (int)len) != 1)
        return -1;
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[len] = '\0';
    return 0;
}

static uint32_t random_nonzero_u32(void)
{
    uint32_t v = 0;
    while (v == 0)
        if (RAND_bytes((uint8_t *)&v, sizeof(v)) != 1)
            return 0x5eed1234u; /* RAND_bytes does not fail on Linux; stay usable anyway */
    return v;
}

/* The video payload generator: splitmix64 seeded by (frame, index). */
static void video_fill(uint8_t *out, size_t len, uint32_t frame, uint16_t index)
{
    uint64_t state = ((uint64_t)frame << 16 | index) ^ 0x9E3779B97F4A7C15ull;
    size_t i = 0;
    while (i < len) {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        for (unsigned b = 0; b < 8 && i < len; b++, z >>= 8)
            out[i++] = (uint8_t)z;
    }
}

/* ------------------------------------------------------------------------- */
/* Sending datagrams                                                          */
/* ------------------------------------------------------------------------- */

/* Wakes the peer's thread to act on a request. */
static void wake(struct tp_peer *p)
{
    uint64_t one = 1;
    ssize_t woken = write(p->wake_fd, &one, sizeof(one)); /* cannot fail: one write of 1 */
    (void)woken;
}

/* Sends one datagram to `to`, unless silent. Returns true when it went out. */
static bool send_datagram_to(struct tp_peer *p, const uint8_t *data, size_t len,
                             const struct sockaddr *to, socklen_t to_len)
{
    if (atomic_load(&p->silent))
        return false;
    ssize_t n = sendto(p->fd, data, len, MSG_DONTWAIT, to, to_len);
    return n == (ssize_t)len;
}

/* Sends one datagram to the server, unless silent. Returns true when it went out. */
static bool send_datagram(struct tp_peer *p, const uint8_t *data, size_t len)
{
    return send_datagram_to(p, data, len, (const struct sockaddr *)&p->remote, sizeof(p->remote));
}

/*
 * Sends what OpenSSL wrote, split at record boundaries into datagrams of at
 * most DTLS_MTU bytes. A memory BIO loses OpenSSL's datagram boundaries, so
 * the records are found again by their 13-byte headers; several records of
 * a flight share a datagram where they fit, as browsers do.
 */
static void dtls_flush(struct tp_peer *p)
{
    size_t pending = BIO_ctrl_pending(p->wbio);
    if (pending == 0)
        return;
    uint8_t *buf = malloc(pending);
    if (!buf)
        return;
    int n = BIO_read(p->wbio, buf, (int)pending);
    size_t total = n > 0 ? (size_t)n : 0, start = 0, off = 0;
    while (off < total) {
        size_t record = total - off;
        if (record >= 13 && 13u + get16(buf + off + 11) <= record)
            record = 13u + get16(buf + off + 11);
        if (off > start && off + record - start > DTLS_MTU) {
            send_datagram(p, buf + start, off - start);
            start = off;
        }
        off += record;
    }
    if (off > start)
        send_datagram(p, buf + start, off - start);
    free(buf);
}

/* A Binding request to the server: the nominating check, or a consent check. */
static void send_binding_request(struct tp_peer *p, bool use_candidate)
{
    p->txid_gen[p->txid_next % TXID_RING] = p->ice_gen;
    uint8_t *txid = p->txids[p->txid_next++ % TXID_RING];
    if (RAND_bytes(txid, MEDIA_STUN_TXID_SIZE) != 1)
        return;
    /* The priority of the peer-reflexive candidate this check could make:
     * type preference 110, local preference 65535, component 1 (RFC 8445). */
    struct media_stun_request_params params = {
        .txid = txid,
        .remote_ufrag = p->remote_ufrag,
        .local_ufrag = p->local_ufrag,
        .remote_pwd = p->remote_pwd,
        .priority = (110u << 24) | (65535u << 8) | 255u,
        .controlling = true,
        .tie_breaker = p->tie_breaker,
        .use_candidate = use_candidate,
    };
    uint8_t buf[512];
    int n = media_stun_build_binding_request(p->stun, &params, buf, sizeof(buf));
    if (n > 0 && send_datagram(p, buf, (size_t)n)) {
        pthread_mutex_lock(&p->lock);
        p->stats.stun_sent++;
        pthread_mutex_unlock(&p->lock);
    }
}

size_t tp_write_rtp_header(struct tp_stream *s, bool marker, uint8_t *b, uint64_t now_us,
                           uint16_t *twcc_seq, uint8_t audio_level)
{
    b[0] = 0x80;
    b[1] = (uint8_t)((marker ? 0x80 : 0) | s->pt);
    put16(b + 2, s->seq++);
    put32(b + 4, s->ts);
    put32(b + 8, s->ssrc);
    size_t pos = 16; /* the 4-byte extension head comes first */
    size_t mid_len = strlen(s->mid);
    if (s->ext_mid && mid_len >= 1 && mid_len <= 16) {
        b[pos++] = (uint8_t)(s->ext_mid << 4 | (mid_len - 1));
        memcpy(b + pos, s->mid, mid_len);
        pos += mid_len;
    }
    if (s->ext_abs_send_time) {
        uint32_t abs = (uint32_t)(((now_us << 18) / 1000000u) & 0xFFFFFFu);
        b[pos++] = (uint8_t)(s->ext_abs_send_time << 4 | 2);
        b[pos++] = (uint8_t)(abs >> 16);
        b[pos++] = (uint8_t)(abs >> 8);
        b[pos++] = (uint8_t)abs;
    }
    if (s->ext_twcc) {
        b[pos++] = (uint8_t)(s->ext_twcc << 4 | 1);
        put16(b + pos, (*twcc_seq)++);
        pos += 2;
    }
    if (s->ext_audio_level) {
        b[pos++] = (uint8_t)(s->ext_audio_level << 4);
        b[pos++] = audio_level;
    }
    if (pos == 16)
        return 12;
    while (pos % 4)
        b[pos++] = 0;
    b[0] |= 0x10;
    put16(b + 12, MEDIA_RTP_EXT_ONE_BYTE);
    put16(b + 14, (uint16_t)((pos - 16) / 4));
    return pos;
}

/* Our header: the tone's level with voice activity, or silence's without. */
static size_t write_rtp_header(struct tp_peer *p, struct tp_stream *s, bool marker, uint8_t *b,
                               uint64_t now, bool silent)
{
    return tp_write_rtp_header(s, marker, b, now, &p->twcc_seq,
                               silent ? AUDIO_SILENCE_LEVEL
                                      : 0x80 | AUDIO_LEVEL_DBOV); /* 0x80: voice */
}

/* Protects and sends one RTP packet of `len` bytes in `buf` (DATAGRAM_MAX bytes). */
static bool send_rtp(struct tp_peer *p, uint8_t *buf, size_t len)
{
    int n = media_srtp_protect_rtp(p->srtp, buf, len, DATAGRAM_MAX);
    return n > 0 && send_datagram(p, buf, (size_t)n);
}

static void send_audio_frame(struct tp_peer *p, uint64_t now)
{
    uint8_t buf[DATAGRAM_MAX];
    unsigned i = p->audio_loop_next++ % AUDIO_LOOP_FRAMES;
    bool silent = atomic_load(&p->audio_silent);
    const uint8_t *frame = silent ? p->silence_loop[i] : p->audio_loop[i];
    size_t len = (size_t)(silent ? p->silence_loop_len[i] : p->audio_loop_len[i]);
    size_t h = write_rtp_header(p, &p->audio, false, buf, now, silent);
    memcpy(buf + h, frame, len);
    p->audio.ts += AUDIO_FRAME;
    if (send_rtp(p, buf, h + len)) {
        p->audio.packets++;
        p->audio.octets += (uint32_t)len;
        pthread_mutex_lock(&p->lock);
        p->stats.audio_sent++;
        pthread_mutex_unlock(&p->lock);
    }
}

/*
 * One VP8-shaped frame: kbps*1000/8/fps bytes of RTP payload (5x on key
 * frames: every TP_VIDEO_KEYFRAME_EVERY-th, and the first after a PLI or
 * FIR), split into packets of at most TP_VIDEO_MAX_PAYLOAD bytes, the marker
 * bit on the last, all with the frame's 90 kHz timestamp.
 */
static void send_video_frame(struct tp_peer *p, uint64_t now)
{
    uint32_t frame = p->video_frame++;
    size_t size = (size_t)p->cfg.video_kbps * 1000u / 8u / p->cfg.video_fps;
    bool requested = p->force_key;
    bool key = requested || frame % TP_VIDEO_KEYFRAME_EVERY == 0;
    p->force_key = false;
    if (key)
        size *= VIDEO_KEY_SCALE;
    size_t packets = (size + TP_VIDEO_MAX_PAYLOAD - 1) / TP_VIDEO_MAX_PAYLOAD;
    if (packets == 0)
        packets = 1;
    size_t data_total = size > packets * VIDEO_OVERHEAD ? size - packets * VIDEO_OVERHEAD : 0;
    uint64_t sent = 0;
    for (size_t i = 0; i < packets; i++) {
        size_t data_len = data_total / packets + (i < data_total % packets ? 1 : 0);
        uint8_t buf[DATAGRAM_MAX];
        size_t h = write_rtp_header(p, &p->video, i + 1 == packets, buf, now, false);
        uint8_t *payload = buf + h;
        payload[0] = i == 0 ? 0x10 : 0x00; /* VP8 descriptor: S bit on a frame's start */
        put32(payload + 1, TP_VIDEO_MAGIC);
        put32(payload + 5, p->cfg.video_tag);
        put32(payload + 9, frame);
        put16(payload + 13, (uint16_t)i);
        put16(payload + 15, (uint16_t)data_len);
        video_fill(payload + VIDEO_OVERHEAD, data_len, frame, (uint16_t)i);
        if (send_rtp(p, buf, h + VIDEO_OVERHEAD + data_len)) {
            sent++;
            p->video.packets++;
            p->video.octets += (uint32_t)(VIDEO_OVERHEAD + data_len);
        }
    }
    p->video.ts += VIDEO_CLOCK / p->cfg.video_fps;
    pthread_mutex_lock(&p->lock);
    p->stats.video_sent += sent;
    if (sent) {
        p->stats.video_frames_sent++;
        p->stats.key_frames_sent += key;
        p->stats.key_frames_requested += requested;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Our SSRC as the sender of RTCP: the video stream's when we send video, else the audio's. */
static uint32_t rtcp_sender(const struct tp_peer *p)
{
    return p->video.enabled ? p->video_ssrc : p->audio_ssrc;
}

/* Protects and sends one RTCP packet of `len` bytes in `buf` (DATAGRAM_MAX bytes). */
static bool send_rtcp(struct tp_peer *p, uint8_t *buf, size_t len)
{
    int n = media_srtp_protect_rtcp(p->srtp, buf, len, DATAGRAM_MAX);
    return n > 0 && send_datagram(p, buf, (size_t)n);
}

/* A PLI about the server's video (tp_peer_request_key_frame), reduced-size (rtcp-rsize). */
static void send_pli(struct tp_peer *p)
{
    uint32_t media_ssrc = p->rx_primary_any ? p->rx_primary_ssrc : p->rx_video_ssrc_declared;
    uint8_t buf[DATAGRAM_MAX];
    int n = media_ssrc ? media_rtcp_build_pli(rtcp_sender(p), media_ssrc, buf, sizeof(buf)) : -1;
    if (n > 0 && send_rtcp(p, buf, (size_t)n)) {
        pthread_mutex_lock(&p->lock);
        p->stats.plis_sent++;
        pthread_mutex_unlock(&p->lock);
    }
}

/* A generic NACK about the server's primary video SSRC for `n` seqs. */
static void send_nack(struct tp_peer *p, const uint16_t *seqs, size_t n)
{
    uint8_t buf[DATAGRAM_MAX];
    int len = media_rtcp_build_nack(rtcp_sender(p), p->rx_primary_ssrc, seqs, n, buf, sizeof(buf));
    if (len > 0 && send_rtcp(p, buf, (size_t)len)) {
        pthread_mutex_lock(&p->lock);
        p->stats.nacks_sent++;
        p->stats.nacked_seqs += n;
        pthread_mutex_unlock(&p->lock);
    }
}

/* Notes an SR that arrived (a relay's re-issue of the far browser's) for our reports' LSR. */
static void note_sr(struct tp_peer *p, const struct media_rtcp_report *sr)
{
    unsigned slot = 0; /* the stream's own, else a free one, else the oldest */
    for (unsigned i = 0; i < 4; i++) {
        if (p->rx_srs[i].ssrc == sr->ssrc) {
            slot = i;
            break;
        }
        if (p->rx_srs[i].at_us < p->rx_srs[slot].at_us)
            slot = i; /* a free slot has 0 */
    }
    p->rx_srs[slot].ssrc = sr->ssrc;
    p->rx_srs[slot].lsr = (uint32_t)(sr->ntp >> 16);
    p->rx_srs[slot].at_us = now_us();
}

/* A report block about the stream `ssrc` we receive: LSR and DLSR (RFC 3550 6.4.1) when an SR
 * about it arrived. */
static struct media_rtcp_report_block report_block(const struct tp_peer *p, uint32_t ssrc,
                                                   uint16_t highest_seq, uint64_t now)
{
    struct media_rtcp_report_block b = {.ssrc = ssrc, .highest_seq = highest_seq};
    for (unsigned i = 0; i < 4; i++)
        if (p->rx_srs[i].ssrc == ssrc) {
            b.last_sr = p->rx_srs[i].lsr;
            b.delay_since_sr = (uint32_t)(((now - p->rx_srs[i].at_us) << 16) / 1000000u);
        }
    return b;
}

/*
 * An SR from our stream `s` carrying `n` report blocks, as browsers send one
 * per stream they send: sender info with the wall clock's NTP time (RFC 3550
 * 6.4.1), the stream's current RTP timestamp and its counts. Returns the
 * length, or -1 when it does not fit.
 */
static int build_sr(const struct tp_stream *s, const struct media_rtcp_report_block *blocks,
                    unsigned n, uint8_t *buf, size_t cap)
{
    uint8_t rr[8 + 31 * 24];
    int rr_len = media_rtcp_build_rr(s->ssrc, blocks, n, rr, sizeof(rr));
    if (rr_len < 8 || (size_t)rr_len + 20 > cap)
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ntp =
        (uint64_t)(ts.tv_sec + 2208988800u) << 32 | (((uint64_t)ts.tv_nsec << 32) / 1000000000u);
    size_t len = (size_t)rr_len + 20;
    buf[0] = (uint8_t)(0x80 | n);
    buf[1] = 200; /* SR */
    put16(buf + 2, (uint16_t)(len / 4 - 1));
    memcpy(buf + 4, rr + 4, 4); /* our SSRC */
    put32(buf + 8, (uint32_t)(ntp >> 32));
    put32(buf + 12, (uint32_t)ntp);
    put32(buf + 16, s->ts);
    put32(buf + 20, s->packets);
    put32(buf + 24, s->octets);
    memcpy(buf + 28, rr + 8, (size_t)rr_len - 8);
    return (int)len;
}

/* Our RTCP of the second (as a browser sends): an SR per stream we send, the first with a
 * block for each stream we receive (or an RR with them when we send nothing): it tells the
 * server that its media reaches us, and echoes its SRs for its round trip. */
static void send_rtcp_report(struct tp_peer *p)
{
    uint8_t buf[DATAGRAM_MAX];
    struct media_rtcp_report_block blocks[2];
    unsigned n_blocks = 0;
    uint64_t now = now_us();
    pthread_mutex_lock(&p->lock);
    if (p->stats.last_audio_ssrc_received)
        blocks[n_blocks++] =
            report_block(p, p->stats.last_audio_ssrc_received, p->rx_audio_seq, now);
    if (p->stats.last_video_ssrc_received)
        blocks[n_blocks++] =
            report_block(p, p->stats.last_video_ssrc_received, p->rx_video_seq, now);
    pthread_mutex_unlock(&p->lock);
    int n = p->audio.enabled
                ? build_sr(&p->audio, blocks, n_blocks, buf, sizeof(buf))
                : media_rtcp_build_rr(p->audio_ssrc, blocks, n_blocks, buf, sizeof(buf));
    if (n > 0 && p->video.enabled) {
        int v = build_sr(&p->video, NULL, 0, buf + n, sizeof(buf) - (size_t)n);
        if (v > 0)
            n += v;
    }
    /* And transport-wide feedback about what arrived since the last report, as a browser
     * sends (more often; once a second is enough for the server's one-second windows). */
    bool feedback = false;
    if (n > 0 && media_twcc_pending(&p->twcc)) {
        int fb = media_rtcp_build_twcc(&p->twcc, p->audio_ssrc, 0, buf + n,
                                       sizeof(buf) - (size_t)n - 64);
        if (fb > 0) {
            n += fb;
            feedback = true;
        }
    }
    if (n <= 0)
        return;
    n = media_srtp_protect_rtcp(p->srtp, buf, (size_t)n, sizeof(buf));
    if (n > 0)
        send_datagram(p, buf, (size_t)n);
    if (n > 0 && feedback) {
        pthread_mutex_lock(&p->lock);
        p->stats.twcc_feedback_sent++;
        pthread_mutex_unlock(&p->lock);
    }
}

/* ------------------------------------------------------------------------- */
/* DTLS                                                                       */
/* ------------------------------------------------------------------------- */

static bool fingerprint_matches(const struct tp_peer *p, X509 *cert)
{
    for (unsigned i = 0; i < p->remote_fp_count; i++) {
        const struct media_sdp_fingerprint *fp = &p->remote_fps[i];
        const EVP_MD *md = fp->hash == MEDIA_SDP_SHA512   ? EVP_sha512()
                           : fp->hash == MEDIA_SDP_SHA384 ? EVP_sha384()
                                                          : EVP_sha256();
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        if (cert && X509_digest(cert, md, digest, &len) && len == fp->len &&
            CRYPTO_memcmp(digest, fp->bytes, len) == 0)
            return true;
    }
    return false;
}

/*
 * The far end's certificate is self-signed: only its fingerprint counts
 * (RFC 8827). Checking it here, during the handshake, makes OpenSSL refuse
 * a wrong one with a bad_certificate alert, as a browser does. As the DTLS
 * server the peer asks for the client's certificate and refuses a handshake
 * without one (SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
 */
static int verify_remote(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tp_peer *p = ssl ? SSL_get_app_data(ssl) : NULL;
    if (!p)
        return 0;
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return 1;
    if (!fingerprint_matches(p, X509_STORE_CTX_get_current_cert(store))) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
}

static void dtls_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
        return;
    struct tp_peer *p = SSL_get_app_data(ssl);
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stats.dtls_alert = ret & 0xFF;
    pthread_mutex_unlock(&p->lock);
}

/* Retransmission: from 100 ms (a browser starts near 50 ms), doubling up to 60 s. */
static unsigned int dtls_timer(SSL *ssl, unsigned int previous_us)
{
    (void)ssl;
    if (previous_us == 0)
        return DTLS_FIRST_TIMER_US;
    if (previous_us >= DTLS_MAX_TIMER_US / 2)
        return DTLS_MAX_TIMER_US;
    return previous_us * 2;
}

static void dtls_fail(struct tp_peer *p)
{
    p->phase = PHASE_FAILED;
    pthread_mutex_lock(&p->lock);
    p->stats.dtls_failed = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

/*
 * The handshake is done: check the certificate once more, export the keys
 * (client key, server key, client salt, server salt: RFC 5764 section 4.2)
 * and make the SRTP sessions, ours keyed with our half: the client's as the
 * DTLS client, the server's as the DTLS server.
 */
static void dtls_connected(struct tp_peer *p)
{
    if (!fingerprint_matches(p, SSL_get0_peer_certificate(p->ssl))) {
        dtls_fail(p);
        return;
    }
    const SRTP_PROTECTION_PROFILE *sp = SSL_get_selected_srtp_profile(p->ssl);
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    if (sp && sp->id == SRTP_AEAD_AES_128_GCM)
        k.profile = MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM;
    else if (sp && sp->id == SRTP_AES128_CM_SHA1_80)
        k.profile = MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80;
    size_t kl, sl;
    uint8_t m[2 * (MEDIA_SRTP_KEY_MAX + MEDIA_SRTP_SALT_MAX)];
    if (media_srtp_profile_lengths(k.profile, &kl, &sl) != 0 ||
        SSL_export_keying_material(p->ssl, m, 2 * (kl + sl), "EXTRACTOR-dtls_srtp", 19, NULL, 0,
                                   0) != 1) {
        dtls_fail(p);
        return;
    }
    k.key_len = (uint8_t)kl;
    k.salt_len = (uint8_t)sl;
    const uint8_t *client_key = m, *server_key = m + kl;
    const uint8_t *client_salt = m + 2 * kl, *server_salt = m + 2 * kl + sl;
    memcpy(k.local_key, p->dtls_server ? server_key : client_key, kl);
    memcpy(k.remote_key, p->dtls_server ? client_key : server_key, kl);
    memcpy(k.local_salt, p->dtls_server ? server_salt : client_salt, sl);
    memcpy(k.remote_salt, p->dtls_server ? client_salt : server_salt, sl);
    p->srtp = media_srtp_new(&k, NULL);
    OPENSSL_cleanse(m, sizeof(m));
    OPENSSL_cleanse(&k, sizeof(k));
    if (!p->srtp) {
        dtls_fail(p);
        return;
    }
    p->phase = PHASE_CONNECTED;
    uint64_t now = now_us();
    p->next_audio_us = now;
    p->next_video_us = now;
    p->next_rtcp_us = now;
    pthread_mutex_lock(&p->lock);
    p->stats.connected = true;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

/* Runs the handshake, or reads what the connection has (alerts, close_notify). */
static void dtls_step(struct tp_peer *p)
{
    if (p->phase == PHASE_DTLS) {
        int r = SSL_do_handshake(p->ssl);
        if (r == 1) {
            dtls_connected(p);
        } else {
            int e = SSL_get_error(p->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                dtls_fail(p);
        }
    } else if (p->phase == PHASE_CONNECTED) {
        uint8_t scratch[DATAGRAM_MAX];
        for (;;) {
            int r = SSL_read(p->ssl, scratch, sizeof(scratch));
            if (r > 0)
                continue; /* no data channel: application data has nowhere to go */
            int e = SSL_get_error(p->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) {
                p->phase = PHASE_FAILED;
                pthread_mutex_lock(&p->lock);
                p->stats.dtls_closed = true;
                pthread_mutex_unlock(&p->lock);
            } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                dtls_fail(p);
            }
            break;
        }
    }
    dtls_flush(p);
    ERR_clear_error();
}

static void dtls_timeout(struct tp_peer *p)
{
    if (DTLSv1_handle_timeout(p->ssl) < 0)
        dtls_fail(p);
    dtls_flush(p);
    ERR_clear_error();
}

/* ------------------------------------------------------------------------- */
/* Receiving                                                                  */
/* ------------------------------------------------------------------------- */

/* The slot of our request `txid` in the ring, or -1. */
static int txid_slot(const struct tp_peer *p, const uint8_t *txid)
{
    for (unsigned i = 0; i < TXID_RING && i < p->txid_next; i++)
        if (memcmp(p->txids[i], txid, MEDIA_STUN_TXID_SIZE) == 0)
            return (int)i;
    return -1;
}

static void on_stun(struct tp_peer *p, const uint8_t *data, size_t len,
                    const struct sockaddr_storage *from)
{
    struct media_stun_msg m;
    if (media_stun_parse(data, len, &m) != 0)
        return;
    if (m.type == MEDIA_STUN_BINDING_REQUEST) {
        /* Our server is ICE-lite and never checks; a full agent (Janus) checks the
         * peer-reflexive address it learnt from our checks, and its pair works only once we
         * answer: success with XOR-MAPPED-ADDRESS = where the check came from, sent back there,
         * signed with our password. */
        if (media_stun_check_binding(p->stun, &m, p->local_ufrag, p->local_pwd, p->remote_ufrag) !=
            MEDIA_STUN_CHECK_OK)
            return;
        uint8_t buf[512];
        int n =
            media_stun_build_binding_success(p->stun, m.txid, from, p->local_pwd, buf, sizeof(buf));
        socklen_t from_len =
            from->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        if (n > 0 && send_datagram_to(p, buf, (size_t)n, (const struct sockaddr *)from, from_len)) {
            pthread_mutex_lock(&p->lock);
            p->stats.stun_requests_answered++;
            pthread_mutex_unlock(&p->lock);
        }
        return;
    }
    int slot = m.type == MEDIA_STUN_BINDING_SUCCESS ? txid_slot(p, m.txid) : -1;
    if (slot < 0 || !m.has_xor_mapped || media_stun_verify_fingerprint(&m) != 0 ||
        media_stun_verify_integrity(p->stun, &m, p->remote_pwd) != 0)
        return;
    /* A success to a request of the current generation: the pair in use (the new socket, the
     * new credentials) works. */
    bool current = p->txid_gen[slot] == p->ice_gen;
    pthread_mutex_lock(&p->lock);
    p->stats.stun_success_received++;
    if (current) {
        p->stats.ice_checking = false;
        p->stats.address_changes += p->move_checking;
        p->stats.ice_restarts += p->restart_checking;
    }
    pthread_mutex_unlock(&p->lock);
    if (current) {
        p->move_checking = p->restart_checking = false;
        if (p->rechecking) {
            uint64_t now = now_us();
            p->rechecking = false;
            p->next_consent_us = now + (uint64_t)p->cfg.consent_interval_ms * 1000u;
            if (p->media_paused) {
                /* Media resumes now, its clocks moved on by the time it was held. */
                uint64_t held = now - p->paused_since_us;
                p->media_paused = false;
                p->audio.ts += (uint32_t)(held * AUDIO_RATE / 1000000u / AUDIO_FRAME * AUDIO_FRAME);
                p->video.ts += (uint32_t)(held * VIDEO_CLOCK / 1000000u);
                p->next_audio_us = p->next_video_us = p->next_rtcp_us = now;
            }
        }
    }
    if (p->phase == PHASE_ICE) {
        p->phase = PHASE_DTLS;
        p->next_consent_us = now_us() + (uint64_t)p->cfg.consent_interval_ms * 1000u;
        if (p->early_dtls_len) {
            BIO_write(p->rbio, p->early_dtls, (int)p->early_dtls_len);
            p->early_dtls_len = 0;
        }
        dtls_step(p); /* the client sends its ClientHello; the server answers an early one */
    }
}

/*
 * Checks one received video payload against what its sender's generator
 * makes; with `ordered` (a new packet of the primary stream) also its
 * (frame, index) against the highest seen of its tag.
 */
static void check_video(struct tp_peer *p, const uint8_t *payload, size_t len, bool ordered,
                        uint64_t *mismatch, uint64_t *out_of_order, uint32_t *tag)
{
    if (len < VIDEO_OVERHEAD || get32(payload + 1) != TP_VIDEO_MAGIC) {
        (*mismatch)++;
        return;
    }
    *tag = get32(payload + 5);
    uint32_t frame = get32(payload + 9);
    uint16_t index = get16(payload + 13);
    size_t data_len = get16(payload + 15);
    uint8_t descriptor = index == 0 ? 0x10 : 0x00;
    if (payload[0] != descriptor || data_len != len - VIDEO_OVERHEAD ||
        data_len > sizeof(p->expect)) {
        (*mismatch)++;
        return;
    }
    video_fill(p->expect, data_len, frame, index);
    if (memcmp(p->expect, payload + VIDEO_OVERHEAD, data_len) != 0)
        (*mismatch)++;
    if (!ordered)
        return; /* late by nature: recovered, or a duplicate */
    uint64_t key = (uint64_t)frame << 16 | index;
    if (p->rx_video_any && *tag == p->rx_video_tag) {
        if (key < p->rx_video_highest)
            (*out_of_order)++;
        else
            p->rx_video_highest = key;
    } else {
        /* Another sender (the relay switched sources): its numbering starts afresh. */
        p->rx_video_any = true;
        p->rx_video_tag = *tag;
        p->rx_video_highest = key;
    }
}

/* Counts breaks in one received stream's numbering (called under the lock). */
static void check_continuity(struct tp_peer *p, const struct media_rtp_view *v, uint32_t *last_ssrc,
                             uint16_t *last_seq, uint32_t *last_ts, uint64_t *seq_jumps,
                             uint64_t *ts_backwards)
{
    if (*last_ssrc) {
        if (v->ssrc != *last_ssrc)
            p->stats.ssrc_changes++;
        else {
            if ((uint16_t)(v->seq - *last_seq) != 1)
                (*seq_jumps)++;
            if ((int32_t)(v->timestamp - *last_ts) < 0)
                (*ts_backwards)++;
        }
    }
    *last_ssrc = v->ssrc;
    *last_seq = v->seq;
    *last_ts = v->timestamp;
}

/* `seq` extended to the one nearest `highest` (RFC 3550 appendix A.1). */
static int64_t extend_seq(int64_t highest, uint16_t seq)
{
    return highest + (int16_t)(uint16_t)(seq - (uint16_t)highest);
}

/* The following run under `lock`: the missing list is the peer thread's, its counters shared. */

/* Gives up missing seq `i`: unrecovered, and its gap a seq jump unless counted already. */
static void give_up_missing(struct tp_peer *p, unsigned i)
{
    p->stats.video_unrecovered++;
    if (p->missing[i].gap != p->gap_jumped) {
        p->gap_jumped = p->missing[i].gap;
        p->stats.video_seq_jumps++;
    }
    memmove(&p->missing[i], &p->missing[i + 1], (p->n_missing - i - 1) * sizeof(p->missing[0]));
    p->n_missing--;
    p->stats.video_missing = p->n_missing;
}

static void give_up_all(struct tp_peer *p)
{
    while (p->n_missing)
        give_up_missing(p, 0);
}

/* Seqs `from`..`to` (extended, inclusive) are a new gap: NACK them soon. */
static void add_gap(struct tp_peer *p, int64_t from, int64_t to, uint64_t now)
{
    uint32_t gap = ++p->gap_next;
    if (gap == p->gap_jumped)
        gap = ++p->gap_next; /* (after 2^32 gaps) */
    for (int64_t seq = from; seq <= to; seq++) {
        if (p->n_missing == MISSING_MAX)
            give_up_missing(p, 0);
        p->missing[p->n_missing++] = (struct missing_seq){
            .seq = seq, .shown_us = now, .next_nack_us = now + NACK_DELAY_US, .gap = gap};
    }
    p->stats.video_missing = p->n_missing;
}

/* Whether `seq` (extended) was missing; it is not any more. */
static bool fill_missing(struct tp_peer *p, int64_t seq)
{
    for (unsigned i = 0; i < p->n_missing; i++) {
        if (p->missing[i].seq != seq)
            continue;
        uint64_t took = now_us() - p->missing[i].shown_us;
        if (took > p->stats.video_recovery_max_us)
            p->stats.video_recovery_max_us = took;
        memmove(&p->missing[i], &p->missing[i + 1], (p->n_missing - i - 1) * sizeof(p->missing[0]));
        p->n_missing--;
        p->stats.video_missing = p->n_missing;
        p->stats.video_recovered++;
        return true;
    }
    return false;
}

/* A late packet of the primary stream (`seq` extended, at or behind the highest), or a
 * retransmission of it: recovered if missing, else late. */
static void late_video(struct tp_peer *p, int64_t seq)
{
    if (!fill_missing(p, seq))
        p->stats.video_late++;
}

/*
 * Places a packet of the server's primary video stream (see "Continuity" in
 * test_peer.h). Returns whether it is new, that is in order: only those go
 * through the (frame, index) order check. Under `lock`.
 */
static bool place_video(struct tp_peer *p, const struct media_rtp_view *v, uint64_t now)
{
    bool fresh = false;
    if (!p->rx_primary_any || v->ssrc != p->rx_primary_ssrc) {
        if (p->rx_primary_any) {
            p->stats.ssrc_changes++;
            give_up_all(p);
        }
        fresh = true;
    } else {
        int64_t seq = extend_seq(p->rx_video_ext, v->seq);
        int64_t ahead = seq - p->rx_video_ext;
        if (ahead > 1 + TP_NACK_MAX_GAP || -ahead >= TP_LATE_WINDOW) {
            /* A discontinuity: the numbering starts afresh here. */
            p->stats.video_seq_jumps++;
            give_up_all(p);
            if ((int32_t)(v->timestamp - p->rx_video_ts) < 0)
                p->stats.video_ts_backwards++;
            p->rx_video_ext = seq;
            p->rx_video_seq = v->seq;
            p->rx_video_ts = v->timestamp;
            return true;
        }
        if (ahead <= 0) {
            late_video(p, seq);
            return false;
        }
        if (ahead > 1)
            add_gap(p, p->rx_video_ext + 1, seq - 1, now);
        if ((int32_t)(v->timestamp - p->rx_video_ts) < 0)
            p->stats.video_ts_backwards++;
        p->rx_video_ext = seq;
        p->rx_video_ts = v->timestamp;
        p->rx_video_seq = v->seq;
        return true;
    }
    /* The first packet of a stream. */
    p->rx_primary_any = true;
    p->rx_primary_ssrc = v->ssrc;
    p->stats.last_video_ssrc_received = v->ssrc;
    p->rx_video_ext = v->seq;
    p->rx_video_seq = v->seq;
    p->rx_video_ts = v->timestamp;
    return fresh;
}

/*
 * drop_video_every: whether to discard this packet, still protected, as if
 * the network had lost it. Only new packets of the primary stream count
 * (not the first, not resends), read from the RTP header, which SRTP leaves
 * in the clear; dropping before SRTP sees the packet keeps its index out of
 * the replay window, so a plain resend of it is still accepted.
 */
/* A uniform draw in [0, 1) from the peer's own generator (xorshift32): repeatable per seed. */
static double loss_draw(struct tp_peer *p)
{
    uint32_t x =
        p->loss_state ? p->loss_state : (p->cfg.loss_seed ? p->cfg.loss_seed : 2463534242u);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p->loss_state = x;
    return (double)x / 4294967296.0;
}

static bool drop_on_purpose(struct tp_peer *p, const uint8_t *data, size_t len)
{
    if ((!p->cfg.drop_video_every && p->cfg.drop_video_percent <= 0) || !p->rx_primary_any ||
        len < MEDIA_RTP_HEADER_SIZE || (data[1] & 0x7F) != p->rx_video_pt ||
        get32(data + 8) != p->rx_primary_ssrc)
        return false;
    int64_t ahead = extend_seq(p->rx_video_ext, get16(data + 2)) - p->rx_video_ext;
    if (ahead <= 0 || ahead > 1 + TP_NACK_MAX_GAP)
        return false;
    ++p->rx_video_new;
    bool drop = p->cfg.drop_video_every ? p->rx_video_new % p->cfg.drop_video_every == 0
                                        : loss_draw(p) * 100.0 < p->cfg.drop_video_percent;
    if (!drop)
        return false;
    pthread_mutex_lock(&p->lock);
    p->stats.video_dropped++;
    pthread_mutex_unlock(&p->lock);
    return true;
}

/* Checks a video payload (of a primary packet or inside an RTX) and counts what it found. */
static void take_video(struct tp_peer *p, const uint8_t *payload, size_t len, bool ordered)
{
    uint64_t mismatch = 0, out_of_order = 0;
    uint32_t tag = 0;
    check_video(p, payload, len, ordered, &mismatch, &out_of_order, &tag);
    pthread_mutex_lock(&p->lock);
    p->stats.video_payload_mismatches += mismatch;
    p->stats.video_out_of_order += out_of_order;
    if (ordered && tag && tag != p->stats.last_video_tag_received) {
        p->stats.last_video_tag_received = tag;
        p->stats.video_tag_since_us = now_us();
    }
    pthread_mutex_unlock(&p->lock);
}

/* An RTX packet (RFC 4588): the original seq (OSN), then the original payload. */
static void on_rtx(struct tp_peer *p, const struct media_rtp_view *v)
{
    if (p->rx_rtx_ssrc && v->ssrc != p->rx_rtx_ssrc)
        return; /* not the stream the answer paired with our video */
    bool media = v->payload_len >= 2 && p->rx_primary_any;
    pthread_mutex_lock(&p->lock);
    p->stats.rtx_received++;
    if (media) {
        p->stats.video_received++;
        late_video(p, extend_seq(p->rx_video_ext, get16(v->payload)));
    }
    pthread_mutex_unlock(&p->lock);
    if (media)
        take_video(p, v->payload + 2, v->payload_len - 2, false);
    /* (Without media it is padding, a bandwidth probe.) */
}

static void on_rtp(struct tp_peer *p, uint8_t *data, size_t len)
{
    if (drop_on_purpose(p, data, len))
        return;
    int n = media_srtp_unprotect_rtp(p->srtp, data, len);
    struct media_rtp_view v;
    if (n < 0 || media_rtp_parse(data, (size_t)n, &v) != 0) {
        pthread_mutex_lock(&p->lock);
        p->stats.srtp_errors += n < 0;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    /* The server numbers what it sends with our transport-cc id; a receiver on a lossy
     * path (report_loss_percent) would not have seen some of it. */
    struct media_rtp_ext twcc;
    uint16_t twcc_seq;
    if (media_rtp_ext_find(&v, TP_EXT_TRANSPORT_CC, &twcc) == 0 &&
        media_rtp_ext_twcc_seq(&twcc, &twcc_seq) == 0 &&
        !(p->cfg.report_loss_percent > 0 && loss_draw(p) * 100.0 < p->cfg.report_loss_percent))
        media_twcc_record(&p->twcc, twcc_seq, now_us());
    if (v.payload_type == p->rx_audio_pt && v.payload_len > 0) {
        /* (An empty payload would make the decoder conceal a loss: not audio we received.) */
        int samples = opus_decode(p->decoder, v.payload, (opus_int32)v.payload_len, p->decoded,
                                  PCM_DECODE_MAX, 0);
        uint64_t now = now_us();
        pthread_mutex_lock(&p->lock);
        p->stats.audio_received++;
        check_continuity(p, &v, &p->stats.last_audio_ssrc_received, &p->rx_audio_seq,
                         &p->rx_audio_ts, &p->stats.audio_seq_jumps, &p->stats.audio_ts_backwards);
        for (int i = 0; i < samples; i++) {
            p->pcm[p->pcm_pos] = p->decoded[i];
            p->pcm_pos = (p->pcm_pos + 1) % PCM_KEEP;
        }
        if (samples > 0) {
            p->stats.audio_decoded_samples += (uint64_t)samples;
            p->last_audio_us = now;
        }
        pthread_mutex_unlock(&p->lock);
    } else if (v.payload_type == p->rx_video_pt) {
        pthread_mutex_lock(&p->lock);
        p->stats.video_received++;
        bool ordered = place_video(p, &v, now_us());
        pthread_mutex_unlock(&p->lock);
        take_video(p, v.payload, v.payload_len, ordered);
    } else if (p->rx_rtx_pt >= 0 && v.payload_type == p->rx_rtx_pt) {
        on_rtx(p, &v);
    }
    /* Anything else (unknown payload types) is not ours to check. */
}

/* Feedback about what we send: a PLI or a new FIR for our video makes the next frame a key
 * frame; NACKs are counted (the peer keeps no history to answer them). */
static void on_feedback(struct tp_peer *p, const uint8_t *data, size_t len)
{
    struct media_rtcp_iter it;
    struct media_rtcp_pkt pkt;
    media_rtcp_iter_init(&it, data, len);
    while (media_rtcp_next(&it, &pkt) == 1) {
        struct media_rtcp_report sr;
        if (pkt.type == MEDIA_RTCP_SR && media_rtcp_parse_report(&pkt, &sr) == 0 &&
            sr.has_sender_info) {
            note_sr(p, &sr);
            continue;
        }
        struct media_rtcp_fb fb;
        if ((pkt.type != MEDIA_RTCP_PSFB && pkt.type != MEDIA_RTCP_RTPFB) ||
            media_rtcp_parse_fb(&pkt, &fb) != 0)
            continue;
        uint64_t pli = 0, fir = 0, nack = 0;
        if (fb.type == MEDIA_RTCP_PSFB && fb.fmt == MEDIA_RTCP_PSFB_PLI) {
            pli = fb.media_ssrc == p->video_ssrc;
        } else if (fb.type == MEDIA_RTCP_PSFB && fb.fmt == MEDIA_RTCP_PSFB_FIR) {
            int count = media_rtcp_fir_count(&fb);
            for (int i = 0; i < count; i++) {
                struct media_rtcp_fir_entry e;
                media_rtcp_fir_entry(&fb, (unsigned)i, &e);
                if (e.ssrc != p->video_ssrc || (p->fir_any && e.seq == p->fir_seq))
                    continue; /* not ours, or a repeat of a request already served */
                p->fir_any = true;
                p->fir_seq = e.seq;
                fir++;
            }
        } else if (fb.type == MEDIA_RTCP_RTPFB && fb.fmt == MEDIA_RTCP_RTPFB_NACK) {
            nack = fb.media_ssrc == p->video_ssrc;
        } else if (fb.type == MEDIA_RTCP_PSFB && fb.fmt == MEDIA_RTCP_PSFB_AFB) {
            struct media_rtcp_remb remb;
            bool ours = false;
            if (media_rtcp_parse_remb(&fb, &remb) == 0)
                for (unsigned i = 0; i < remb.ssrc_count; i++)
                    ours = ours || remb.ssrcs[i] == p->video_ssrc || remb.ssrcs[i] == p->audio_ssrc;
            if (ours) {
                pthread_mutex_lock(&p->lock);
                p->stats.remb_received++;
                p->stats.remb_bps = remb.bitrate;
                pthread_mutex_unlock(&p->lock);
            }
        }
        if (pli || fir)
            p->force_key = true;
        if (pli || fir || nack) {
            pthread_mutex_lock(&p->lock);
            p->stats.pli_received += pli;
            p->stats.fir_received += fir;
            p->stats.nacks_received += nack;
            pthread_mutex_unlock(&p->lock);
        }
    }
}

static void on_rtcp(struct tp_peer *p, uint8_t *data, size_t len)
{
    int n = media_srtp_unprotect_rtcp(p->srtp, data, len);
    pthread_mutex_lock(&p->lock);
    if (n < 0)
        p->stats.srtp_errors++;
    else
        p->stats.rtcp_received++;
    pthread_mutex_unlock(&p->lock);
    if (n > 0)
        on_feedback(p, data, (size_t)n);
}

static bool from_server(const struct tp_peer *p, const struct sockaddr_storage *from)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)from;
    return from->ss_family == AF_INET && in->sin_port == p->remote.sin_port &&
           in->sin_addr.s_addr == p->remote.sin_addr.s_addr;
}

/*
 * Reads every datagram waiting and classifies each by its first byte (RFC
 * 7983): STUN from anyone (ICE learns addresses from checks), DTLS and SRTP
 * only from the server's candidate, like a browser on its selected pair.
 */
static void receive_all(struct tp_peer *p)
{
    uint8_t buf[DATAGRAM_MAX];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        ssize_t n =
            recvfrom(p->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &from_len);
        if (n <= 0)
            return;
        uint8_t b = buf[0];
        if (b <= 3) {
            on_stun(p, buf, (size_t)n, &from);
        } else if (!from_server(p, &from)) {
            continue;
        } else if (b >= 20 && b <= 63) {
            if (p->phase == PHASE_DTLS || p->phase == PHASE_CONNECTED) {
                BIO_write(p->rbio, buf, (int)n);
                dtls_step(p);
            } else if (p->phase == PHASE_ICE && p->dtls_server) {
                /* The DTLS client (Janus) may start as soon as its own check succeeds, before
                 * ours does: keep its ClientHello for then, as Chrome does. */
                memcpy(p->early_dtls, buf, (size_t)n);
                p->early_dtls_len = (size_t)n;
            }
        } else if (b >= 128 && b <= 191 && p->phase == PHASE_CONNECTED) {
            enum media_rtp_kind kind = media_rtp_demux(buf, (size_t)n);
            if (kind == MEDIA_RTP_KIND_RTCP)
                on_rtcp(p, buf, (size_t)n);
            else if (kind == MEDIA_RTP_KIND_RTP)
                on_rtp(p, buf, (size_t)n);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* The peer's thread                                                          */
/* ------------------------------------------------------------------------- */

/* Moves a media clock on by `period`; a clock far behind (a stall) skips ahead. */
static void advance(uint64_t *deadline, uint64_t period, uint64_t now)
{
    *deadline += period;
    if (*deadline + RESYNC_LATE_US < now)
        *deadline = now + period;
}

/*
 * The missing video seqs: gives up those whose gap showed NACK_GIVE_UP_US
 * ago, and (when `can_send`) NACKs those due, all in one packet where they
 * fit. Returns the next deadline (UINT64_MAX: none).
 */
static uint64_t run_nacks(struct tp_peer *p, uint64_t now, bool can_send)
{
    pthread_mutex_lock(&p->lock);
    while (p->n_missing && p->missing[0].shown_us + NACK_GIVE_UP_US <= now)
        give_up_missing(p, 0);
    pthread_mutex_unlock(&p->lock);
    uint16_t seqs[NACK_PER_PACKET];
    size_t n = 0;
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < p->n_missing; i++) {
        struct missing_seq *m = &p->missing[i];
        if (can_send && m->tries < TP_NACK_TRIES && m->next_nack_us <= now && n < NACK_PER_PACKET) {
            seqs[n++] = (uint16_t)m->seq;
            m->tries++;
            m->next_nack_us = now + NACK_RETRY_US;
        }
        if (can_send && m->tries < TP_NACK_TRIES && m->next_nack_us < next)
            next = m->next_nack_us;
        if (m->shown_us + NACK_GIVE_UP_US < next)
            next = m->shown_us + NACK_GIVE_UP_US;
    }
    if (n)
        send_nack(p, seqs, n);
    return next;
}

/* Runs whatever is due; returns the next deadline (UINT64_MAX: none). */
static uint64_t run_timers(struct tp_peer *p, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (p->phase == PHASE_ICE || p->rechecking) {
        if (now >= p->next_check_us) {
            send_binding_request(p, true);
            advance(&p->next_check_us, ICE_RETRY_US, now);
        }
        next = p->next_check_us;
    }
    if (p->phase == PHASE_DTLS) {
        struct timeval tv;
        if (DTLSv1_get_timeout(p->ssl, &tv) == 1) {
            if (tv.tv_sec == 0 && tv.tv_usec == 0)
                dtls_timeout(p);
            if (p->phase == PHASE_DTLS && DTLSv1_get_timeout(p->ssl, &tv) == 1)
                next = now + (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
        }
    }
    if (p->phase != PHASE_ICE && !p->rechecking) {
        if (now >= p->next_consent_us) {
            send_binding_request(p, false);
            advance(&p->next_consent_us, (uint64_t)p->cfg.consent_interval_ms * 1000u, now);
        }
        if (p->next_consent_us < next)
            next = p->next_consent_us;
    }
    bool media = p->phase == PHASE_CONNECTED && !p->media_paused && !p->cfg.media_off;
    if (p->phase == PHASE_CONNECTED) {
        uint64_t nack = run_nacks(p, now, media);
        if (nack < next)
            next = nack;
    }
    if (media && atomic_exchange(&p->want_pli, false))
        send_pli(p);
    if (media) {
        if (p->audio.enabled) {
            if (now >= p->next_audio_us) {
                send_audio_frame(p, now);
                advance(&p->next_audio_us, 20000, now);
            }
            if (p->next_audio_us < next)
                next = p->next_audio_us;
        }
        if (p->video.enabled) {
            if (now >= p->next_video_us) {
                send_video_frame(p, now);
                advance(&p->next_video_us, 1000000u / p->cfg.video_fps, now);
            }
            if (p->next_video_us < next)
                next = p->next_video_us;
        }
        if (now >= p->next_rtcp_us) {
            send_rtcp_report(p);
            advance(&p->next_rtcp_us, RTCP_INTERVAL_US, now);
        }
        if (p->next_rtcp_us < next)
            next = p->next_rtcp_us;
    }
    return next;
}

/* Opens a socket on a new 127.0.0.1 port: the fd, or -1. */
static int open_socket(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t local_len = sizeof(local);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(local.sin_port);
    /* Key frames leave in one burst; without room the kernel would drop some. */
    int size = SOCKET_BUFFER;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    return fd;
}

/* ICE checks with USE-CANDIDATE again, now, for a new generation of requests. */
static void check_again(struct tp_peer *p)
{
    p->ice_gen++;
    p->next_check_us = now_us();
    if (p->phase != PHASE_ICE)
        p->rechecking = true; /* (while in PHASE_ICE the checks simply go on) */
    pthread_mutex_lock(&p->lock);
    p->stats.ice_checking = true;
    pthread_mutex_unlock(&p->lock);
}

/* tp_peer_change_address(): a new socket, the old one closed; check from the new one. */
static void move_socket(struct tp_peer *p)
{
    uint16_t port = 0;
    int fd = open_socket(&port);
    if (fd < 0)
        return; /* stays where it is: address_changes does not move */
    pthread_mutex_lock(&p->lock);
    int old = p->fd;
    p->fd = fd;
    atomic_store(&p->local_port, port);
    pthread_mutex_unlock(&p->lock);
    close(old);
    p->move_checking = true;
    if (p->phase != PHASE_ICE && !p->media_paused) {
        p->media_paused = true;
        p->paused_since_us = now_us();
    }
    check_again(p);
}

/* An answered ICE restart: the new credentials (and address) from now on; check with them. */
static void apply_restart(struct tp_peer *p)
{
    struct ice_update u;
    pthread_mutex_lock(&p->lock);
    u = p->restart;
    OPENSSL_cleanse(&p->restart, sizeof(p->restart));
    p->remote = u.remote;
    pthread_mutex_unlock(&p->lock);
    memcpy(p->local_ufrag, u.local_ufrag, sizeof(p->local_ufrag));
    memcpy(p->local_pwd, u.local_pwd, sizeof(p->local_pwd));
    memcpy(p->remote_ufrag, u.remote_ufrag, sizeof(p->remote_ufrag));
    memcpy(p->remote_pwd, u.remote_pwd, sizeof(p->remote_pwd));
    p->rx_rtx_ssrc = u.rx_rtx_ssrc;
    OPENSSL_cleanse(&u, sizeof(u));
    p->restart_checking = true;
    check_again(p);
}

static void *peer_thread(void *arg)
{
    struct tp_peer *p = arg;
    p->next_check_us = now_us();
    pthread_mutex_lock(&p->lock);
    p->stats.ice_checking = true;
    pthread_mutex_unlock(&p->lock);
    while (!atomic_load(&p->stop)) {
        if (atomic_exchange(&p->want_move, false))
            move_socket(p);
        if (atomic_exchange(&p->restart_ready, false))
            apply_restart(p);
        uint64_t now = now_us();
        uint64_t next = run_timers(p, now);
        int timeout = -1;
        if (next != UINT64_MAX) {
            now = now_us();
            /* Rounded up: waking a little early would only spin until the deadline. */
            timeout = next <= now ? 0 : (int)((next - now + 999) / 1000);
        }
        struct pollfd fds[2] = {{.fd = p->fd, .events = POLLIN},
                                {.fd = p->wake_fd, .events = POLLIN}};
        if (poll(fds, 2, timeout) < 0 && errno != EINTR)
            break;
        if (fds[1].revents & POLLIN) {
            uint64_t count;
            ssize_t got = read(p->wake_fd, &count, sizeof(count)); /* rearms it; acted on above */
            (void)got;
        }
        if (fds[0].revents & POLLIN)
            receive_all(p);
    }
    if (p->phase == PHASE_CONNECTED && !atomic_load(&p->detaching)) {
        SSL_shutdown(p->ssl); /* close_notify, dropped by dtls_flush when silent */
        dtls_flush(p);
    }
    ERR_clear_error();
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Set-up                                                                     */
/* ------------------------------------------------------------------------- */

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    uint8_t serial[8];
    BIGNUM *bn = NULL;
    if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7F;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 30L * 24 * 3600) || !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"WebRTC", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name) || X509_sign(x, key, EVP_sha256()) <= 0)
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static int dtls_setup(struct tp_peer *p)
{
    p->key = EVP_EC_gen("P-256");
    p->cert = p->key ? self_signed(p->key) : NULL;
    if (!p->cert)
        return -1;
    unsigned n = 0;
    if (!X509_digest(p->cert, EVP_sha256(), p->fingerprint, &n) || n != 32)
        return -1;
    p->ssl_ctx = SSL_CTX_new(DTLS_method()); /* client or server: the answer decides */
    if (!p->ssl_ctx || !SSL_CTX_set_min_proto_version(p->ssl_ctx, DTLS1_2_VERSION) ||
        SSL_CTX_use_certificate(p->ssl_ctx, p->cert) != 1 ||
        SSL_CTX_use_PrivateKey(p->ssl_ctx, p->key) != 1 ||
        SSL_CTX_set_tlsext_use_srtp(p->ssl_ctx, "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80") !=
            0)
        return -1;
    SSL_CTX_set_verify(p->ssl_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       verify_remote);
    SSL_CTX_set_options(p->ssl_ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET);
    SSL_CTX_set_info_callback(p->ssl_ctx, dtls_info);

    p->ssl = SSL_new(p->ssl_ctx);
    if (!p->ssl)
        return -1;
    p->rbio = BIO_new(BIO_s_mem());
    p->wbio = BIO_new(BIO_s_mem());
    if (!p->rbio || !p->wbio) {
        BIO_free(p->rbio);
        BIO_free(p->wbio);
        p->rbio = p->wbio = NULL;
        return -1;
    }
    BIO_set_mem_eof_return(p->rbio, -1);
    BIO_set_mem_eof_return(p->wbio, -1);
    SSL_set_bio(p->ssl, p->rbio, p->wbio);
    SSL_set_app_data(p->ssl, p);
    SSL_set_connect_state(p->ssl); /* until an answer with setup:active makes it the server */
    DTLS_set_timer_cb(p->ssl, dtls_timer);
    if (!DTLS_set_link_mtu(p->ssl, DTLS_MTU))
        return -1;

    memcpy(p->offered_fingerprint, p->fingerprint, sizeof(p->fingerprint));
    if (p->cfg.lie_about_fingerprint) {
        if (RAND_bytes(p->offered_fingerprint, sizeof(p->offered_fingerprint)) != 1)
            return -1;
        if (memcmp(p->offered_fingerprint, p->fingerprint, sizeof(p->fingerprint)) == 0)
            p->offered_fingerprint[0] ^= 0xFF;
    }
    return 0;
}

/*
 * Encodes one second of the tone (or of digital silence, when `tone_hz` is
 * 0) after one second of warm-up, so that the loop starts from the
 * encoder's steady state; an integer frequency is then phase-continuous
 * where the loop wraps. Encoding once keeps a load generator's peers cheap.
 */
static int encode_loop(double tone_hz, uint8_t loop[AUDIO_LOOP_FRAMES][AUDIO_FRAME_BYTES],
                       int loop_len[AUDIO_LOOP_FRAMES])
{
    int err = 0;
    OpusEncoder *enc = opus_encoder_create(AUDIO_RATE, 1, OPUS_APPLICATION_AUDIO, &err);
    if (!enc || err != OPUS_OK)
        return -1;
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000));
    int16_t pcm[AUDIO_FRAME];
    uint64_t sample = 0;
    int rc = 0;
    for (unsigned f = 0; f < 2 * AUDIO_LOOP_FRAMES && rc == 0; f++) {
        for (unsigned i = 0; i < AUDIO_FRAME; i++, sample++) {
            double t = (double)(sample % AUDIO_RATE) / AUDIO_RATE;
            pcm[i] = (int16_t)lrint(AUDIO_AMPLITUDE * 32767.0 * sin(2.0 * M_PI * tone_hz * t));
        }
        uint8_t scratch[AUDIO_FRAME_BYTES];
        bool keep = f >= AUDIO_LOOP_FRAMES;
        uint8_t *out = keep ? loop[f - AUDIO_LOOP_FRAMES] : scratch;
        int n = opus_encode(enc, pcm, AUDIO_FRAME, out, AUDIO_FRAME_BYTES);
        if (n <= 0)
            rc = -1;
        else if (keep)
            loop_len[f - AUDIO_LOOP_FRAMES] = n;
    }
    opus_encoder_destroy(enc);
    return rc;
}

/* The tone's loop and the silence's (tp_peer_set_audio_silent). */
static int audio_setup(struct tp_peer *p)
{
    if (encode_loop(p->cfg.tone_hz, p->audio_loop, p->audio_loop_len) != 0)
        return -1;
    return encode_loop(0, p->silence_loop, p->silence_loop_len);
}

struct tp_peer *tp_peer_new(const struct tp_config *cfg, char *err, size_t errlen)
{
    static const struct tp_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    struct tp_peer *p = calloc(1, sizeof(*p));
    if (!p) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    p->fd = -1;
    p->wake_fd = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->changed, &attr);
    pthread_condattr_destroy(&attr);
    p->stats.dtls_alert = -1;
    p->rx_audio_pt = -1;
    p->rx_video_pt = -1;
    p->rx_rtx_pt = -1;
    p->stats.audio_rms_dbfs = RMS_FLOOR_DBFS;

    p->cfg = *cfg;
    snprintf(p->name, sizeof(p->name), "%s", cfg->name ? cfg->name : "peer");
    p->cfg.name = p->name;
    if (p->cfg.video_fps == 0)
        p->cfg.video_fps = 30;
    if (p->cfg.consent_interval_ms == 0)
        p->cfg.consent_interval_ms = 2000;
    if (p->cfg.video_tag == 0)
        p->cfg.video_tag = random_nonzero_u32();
    if (!(p->cfg.tone_hz >= 0.0 && p->cfg.tone_hz < AUDIO_RATE / 2) || p->cfg.video_fps > 1000) {
        set_err(err, errlen, "%s: tone_hz or video_fps out of range", p->name);
        goto fail;
    }

    uint16_t port = 0;
    p->fd = open_socket(&port);
    if (p->fd < 0) {
        set_err(err, errlen, "%s: UDP socket on 127.0.0.1: %s", p->name, strerror(errno));
        goto fail;
    }
    atomic_init(&p->local_port, port);
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wake_fd < 0) {
        set_err(err, errlen, "%s: eventfd: %s", p->name, strerror(errno));
        goto fail;
    }

    p->stun = media_stun_ctx_new();
    if (!p->stun || random_token(p->local_ufrag, 8) != 0 || random_token(p->local_pwd, 24) != 0 ||
        random_token(p->cname, 16) != 0 || random_token(p->stream_id, 16) != 0 ||
        random_token(p->audio_track, 16) != 0 || random_token(p->video_track, 16) != 0 ||
        RAND_bytes((uint8_t *)&p->tie_breaker, sizeof(p->tie_breaker)) != 1 ||
        RAND_bytes((uint8_t *)&p->session_id, sizeof(p->session_id)) != 1) {
        set_err(err, errlen, "%s: OpenSSL (HMAC or random) failed", p->name);
        goto fail;
    }
    p->session_id &= INT64_MAX;
    p->session_version = 2;
    memcpy(p->offer_ufrag, p->local_ufrag, sizeof(p->offer_ufrag));
    memcpy(p->offer_pwd, p->local_pwd, sizeof(p->offer_pwd));
    p->audio_ssrc = random_nonzero_u32();
    do
        p->video_ssrc = random_nonzero_u32();
    while (p->video_ssrc == p->audio_ssrc);
    do
        p->rtx_ssrc = random_nonzero_u32();
    while (p->rtx_ssrc == p->audio_ssrc || p->rtx_ssrc == p->video_ssrc);

    if (dtls_setup(p) != 0) {
        set_err(err, errlen, "%s: DTLS set-up failed", p->name);
        goto fail;
    }
    int opus_err = 0;
    p->decoder = opus_decoder_create(AUDIO_RATE, 1, &opus_err);
    if (!p->decoder || opus_err != OPUS_OK ||
        (p->cfg.tone_hz > 0 && !p->cfg.media_off && audio_setup(p) != 0)) {
        set_err(err, errlen, "%s: Opus set-up failed", p->name);
        goto fail;
    }
    ERR_clear_error();
    return p;
fail:
    ERR_clear_error();
    tp_peer_free(p);
    return NULL;
}

void tp_peer_free(struct tp_peer *p)
{
    if (!p)
        return;
    tp_peer_stop(p);
    SSL_free(p->ssl); /* and its BIOs */
    SSL_CTX_free(p->ssl_ctx);
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
    media_srtp_free(p->srtp);
    media_stun_ctx_free(p->stun);
    if (p->decoder)
        opus_decoder_destroy(p->decoder);
    if (p->fd >= 0)
        close(p->fd);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    pthread_cond_destroy(&p->changed);
    pthread_mutex_destroy(&p->lock);
    OPENSSL_cleanse(p->local_pwd, sizeof(p->local_pwd));
    OPENSSL_cleanse(p->offer_pwd, sizeof(p->offer_pwd));
    OPENSSL_cleanse(p->remote_pwd, sizeof(p->remote_pwd));
    OPENSSL_cleanse(&p->restart, sizeof(p->restart));
    ERR_clear_error();
    free(p);
}

/* ------------------------------------------------------------------------- */
/* Offer and answer                                                           */
/* ------------------------------------------------------------------------- */

/* The transport lines every m-line repeats (Chrome writes them on each). */
static void put_transport(FILE *f, const struct tp_peer *p, const char *fingerprint, int mid)
{
    fprintf(f,
            "c=IN IP4 0.0.0.0\r\n"
            "a=rtcp:9 IN IP4 0.0.0.0\r\n"
            "a=ice-ufrag:%s\r\n"
            "a=ice-pwd:%s\r\n"
            "a=ice-options:trickle\r\n"
            "a=fingerprint:sha-256 %s\r\n"
            "a=setup:actpass\r\n"
            "a=mid:%d\r\n",
            p->offer_ufrag, p->offer_pwd, fingerprint, mid);
}

static void put_ssrc(FILE *f, const struct tp_peer *p, uint32_t ssrc, const char *track)
{
    fprintf(f, "a=ssrc:%" PRIu32 " cname:%s\r\n", ssrc, p->cname);
    fprintf(f, "a=ssrc:%" PRIu32 " msid:%s %s\r\n", ssrc, p->stream_id, track);
}

char *tp_peer_offer(struct tp_peer *p)
{
    char fingerprint[MEDIA_DTLS_FINGERPRINT_TEXT_SIZE];
    if (media_dtls_fingerprint_format(p->offered_fingerprint, 32, fingerprint,
                                      sizeof(fingerprint)) < 0)
        return NULL;
    bool send_audio = p->cfg.tone_hz > 0, send_video = p->cfg.video_kbps > 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f,
            "v=0\r\n"
            "o=- %" PRIu64 " %" PRIu64 " IN IP4 127.0.0.1\r\n"
            "s=-\r\n"
            "t=0 0\r\n"
            "a=group:BUNDLE 0 1\r\n"
            "a=extmap-allow-mixed\r\n"
            "a=msid-semantic: WMS %s\r\n",
            p->session_id, p->session_version, p->stream_id);

    fprintf(f, "m=audio 9 UDP/TLS/RTP/SAVPF %d\r\n", TP_OFFER_OPUS_PT);
    put_transport(f, p, fingerprint, 0);
    fprintf(f,
            "a=extmap:%d urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
            "a=extmap:%d http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
            "a=extmap:%d "
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
            "a=extmap:%d urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
            TP_EXT_AUDIO_LEVEL, TP_EXT_ABS_SEND_TIME, TP_EXT_TRANSPORT_CC, TP_EXT_MID);
    if (send_audio)
        fprintf(f, "a=sendrecv\r\na=msid:%s %s\r\n", p->stream_id, p->audio_track);
    else
        fprintf(f, "a=recvonly\r\n");
    fprintf(f,
            "a=rtcp-mux\r\n"
            "a=rtcp-rsize\r\n"
            "a=rtpmap:%d opus/48000/2\r\n"
            "a=rtcp-fb:%d transport-cc\r\n"
            "a=fmtp:%d minptime=10;useinbandfec=1\r\n",
            TP_OFFER_OPUS_PT, TP_OFFER_OPUS_PT, TP_OFFER_OPUS_PT);
    if (send_audio)
        put_ssrc(f, p, p->audio_ssrc, p->audio_track);

    fprintf(f, "m=video 9 UDP/TLS/RTP/SAVPF %d %d\r\n", TP_OFFER_VP8_PT, TP_OFFER_RTX_PT);
    put_transport(f, p, fingerprint, 1);
    fprintf(f,
            "a=extmap:%d http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
            "a=extmap:%d "
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
            "a=extmap:%d urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
            TP_EXT_ABS_SEND_TIME, TP_EXT_TRANSPORT_CC, TP_EXT_MID);
    if (send_video)
        fprintf(f, "a=sendrecv\r\na=msid:%s %s\r\n", p->stream_id, p->video_track);
    else
        fprintf(f, "a=recvonly\r\n");
    fprintf(f,
            "a=rtcp-mux\r\n"
            "a=rtcp-rsize\r\n"
            "a=rtpmap:%d VP8/90000\r\n"
            "a=rtcp-fb:%d goog-remb\r\n"
            "a=rtcp-fb:%d transport-cc\r\n"
            "a=rtcp-fb:%d ccm fir\r\n"
            "a=rtcp-fb:%d nack\r\n"
            "a=rtcp-fb:%d nack pli\r\n"
            "a=rtpmap:%d rtx/90000\r\n"
            "a=fmtp:%d apt=%d\r\n",
            TP_OFFER_VP8_PT, TP_OFFER_VP8_PT, TP_OFFER_VP8_PT, TP_OFFER_VP8_PT, TP_OFFER_VP8_PT,
            TP_OFFER_VP8_PT, TP_OFFER_RTX_PT, TP_OFFER_RTX_PT, TP_OFFER_VP8_PT);
    if (send_video) {
        fprintf(f, "a=ssrc-group:FID %" PRIu32 " %" PRIu32 "\r\n", p->video_ssrc, p->rtx_ssrc);
        put_ssrc(f, p, p->video_ssrc, p->video_track);
        put_ssrc(f, p, p->rtx_ssrc, p->video_track);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/*
 * Finds the first "a=candidate:<foundation> <component> udp <priority> <ip>
 * <port> typ <type>" line. Returns 0, or -1 with `err`.
 */
static int find_candidate(const struct tp_peer *p, const char *sdp, struct sockaddr_in *out,
                          char *err, size_t errlen)
{
    for (const char *line = strstr(sdp, "a=candidate:"); line;
         line = strstr(line + 1, "a=candidate:")) {
        if (line != sdp && line[-1] != '\n')
            continue;
        char transport[16], ip[64], typ[8];
        unsigned component = 0, port = 0;
        if (sscanf(line, "a=candidate:%*s %u %15s %*u %63s %u %7s", &component, transport, ip,
                   &port, typ) != 5 ||
            component != 1 || strcasecmp(transport, "udp") != 0 || strcmp(typ, "typ") != 0)
            continue;
        struct in_addr addr;
        if (inet_pton(AF_INET, ip, &addr) != 1 || addr.s_addr != htonl(INADDR_LOOPBACK)) {
            set_err(err, errlen,
                    "%s: the answer's candidate is %s; the test peer only talks to "
                    "127.0.0.1",
                    p->name, ip);
            return -1;
        }
        if (port == 0 || port > 65535) {
            set_err(err, errlen, "%s: the answer's candidate has port %u", p->name, port);
            return -1;
        }
        *out = (struct sockaddr_in){
            .sin_family = AF_INET, .sin_addr = addr, .sin_port = htons((uint16_t)port)};
        return 0;
    }
    set_err(err, errlen, "%s: the answer has no UDP host candidate", p->name);
    return -1;
}

/* Takes what we send and receive on one accepted m-line of the answer. */
static void take_mline(struct tp_stream *s, const struct media_sdp_mline *m, bool we_send,
                       uint32_t ssrc, int *rx_pt)
{
    *rx_pt = m->choices[0].pt;
    s->pt = m->choices[0].pt;
    s->ssrc = ssrc;
    /* The answer's direction is the server's: it receives what we send. */
    s->enabled =
        we_send && (m->direction == MEDIA_SDP_SENDRECV || m->direction == MEDIA_SDP_RECVONLY);
    s->ext_mid = m->ext_id[MEDIA_SDP_EXT_MID];
    s->ext_abs_send_time = m->ext_id[MEDIA_SDP_EXT_ABS_SEND_TIME];
    s->ext_twcc = m->ext_id[MEDIA_SDP_EXT_TRANSPORT_CC];
    s->ext_audio_level = m->media == MEDIA_SDP_AUDIO ? m->ext_id[MEDIA_SDP_EXT_AUDIO_LEVEL] : 0;
    /* The one-byte form carries ids 1..14 only. */
    if (s->ext_mid > 14)
        s->ext_mid = 0;
    if (s->ext_abs_send_time > 14)
        s->ext_abs_send_time = 0;
    if (s->ext_twcc > 14)
        s->ext_twcc = 0;
    if (s->ext_audio_level > 14)
        s->ext_audio_level = 0;
    memcpy(s->mid, m->mid, sizeof(s->mid));
}

/* The server's primary video SSRC in its answer (the first not an RTX of a FID group), and the
 * RTX SSRC paired with it. */
static void answer_video_ssrcs(const struct media_sdp_mline *m, uint32_t *primary, uint32_t *rtx)
{
    *primary = *rtx = 0;
    for (unsigned i = 0; i < m->ssrc_count && !*primary; i++) {
        bool is_rtx = false;
        for (unsigned f = 0; f < m->fid_count; f++)
            is_rtx = is_rtx || m->fids[f].rtx == m->ssrcs[i].ssrc;
        if (!is_rtx)
            *primary = m->ssrcs[i].ssrc;
    }
    for (unsigned f = 0; f < m->fid_count; f++)
        if (m->fids[f].primary == *primary && *primary)
            *rtx = m->fids[f].rtx;
}

/* Whether every fingerprint of `a` is among `b`'s and the other way round. */
static bool same_fingerprints(const struct media_sdp_fingerprint *a, unsigned na,
                              const struct media_sdp_fingerprint *b, unsigned nb)
{
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < na; i++) {
            bool found = false;
            for (unsigned j = 0; j < nb && !found; j++)
                found = a[i].hash == b[j].hash && a[i].len == b[j].len &&
                        memcmp(a[i].bytes, b[j].bytes, a[i].len) == 0;
            if (!found)
                return false;
        }
        const struct media_sdp_fingerprint *t = a;
        unsigned nt = na;
        a = b;
        na = nb;
        b = t;
        nb = nt;
    }
    return true;
}

/*
 * The answer to an ICE restart: the DTLS association and the media go on,
 * so only the ICE credentials, the candidate and the RTX SSRC may change,
 * and the credentials must. Returns 0, or -1 with `err`.
 */
static int check_restart_answer(const struct tp_peer *p, const struct media_sdp_offer *a,
                                bool dtls_server, char *err, size_t errlen)
{
    if (dtls_server != p->dtls_server) {
        set_err(err, errlen, "%s: the ICE restart's answer changes the DTLS role", p->name);
        return -1;
    }
    if (!same_fingerprints(a->transport.fingerprints, a->transport.fingerprint_count, p->remote_fps,
                           p->remote_fp_count)) {
        set_err(err, errlen,
                "%s: the ICE restart's answer has another fingerprint: the DTLS association "
                "would not be the same",
                p->name);
        return -1;
    }
    if (strcmp(a->transport.ice_ufrag, p->remote_ufrag_offered) == 0 ||
        strcmp(a->transport.ice_pwd, p->remote_pwd_offered) == 0) {
        set_err(err, errlen, "%s: the ICE restart's answer keeps the old ICE credentials", p->name);
        return -1;
    }
    int audio_pt = a->audio >= 0 ? a->mlines[a->audio].choices[0].pt : -1;
    int video_pt = a->video >= 0 ? a->mlines[a->video].choices[0].pt : -1;
    int rtx_pt = a->video >= 0 ? a->mlines[a->video].choices[0].rtx_pt : -1;
    if (audio_pt != p->rx_audio_pt || video_pt != p->rx_video_pt || rtx_pt != p->rx_rtx_pt) {
        set_err(err, errlen, "%s: the ICE restart's answer changes the payload types", p->name);
        return -1;
    }
    return 0;
}

int tp_peer_set_answer(struct tp_peer *p, const char *sdp, char *err, size_t errlen)
{
    bool restart = p->restart_offered && p->have_answer;
    if (p->ran && !restart) {
        set_err(err, errlen,
                "%s: the answer must come before tp_peer_start(), or answer "
                "tp_peer_restart_ice()",
                p->name);
        return -1;
    }
    struct media_sdp_offer *a = malloc(sizeof(*a));
    struct media_sdp_error perr;
    if (!a) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = media_sdp_parse(sdp, strlen(sdp), MEDIA_SDP_ANSWER, a, &perr);
    if (rc != MEDIA_SDP_OK) {
        set_err(err, errlen, "%s: the answer does not parse: %s", p->name, perr.message);
        goto fail;
    }
    if (a->transport.fingerprint_count == 0 || !a->transport.ice_ufrag[0] ||
        !a->transport.ice_pwd[0]) {
        set_err(err, errlen, "%s: the answer has no ICE credentials or fingerprint", p->name);
        goto fail;
    }
    if (a->audio >= 0 && a->mlines[a->audio].choices[0].codec != MEDIA_SDP_CODEC_OPUS) {
        set_err(err, errlen, "%s: the answer's audio codec is not Opus", p->name);
        goto fail;
    }
    if (a->video >= 0 && a->mlines[a->video].choices[0].codec != MEDIA_SDP_CODEC_VP8) {
        set_err(err, errlen, "%s: the answer's video codec is not VP8", p->name);
        goto fail;
    }
    /* Who is the DTLS client: the answerer says (RFC 5763 section 5). Our server answers
     * passive; Janus answers active. Without the attribute the peer stays the client. */
    enum media_sdp_setup setup = a->transport.setup;
    if (setup == MEDIA_SDP_SETUP_ACTPASS || setup == MEDIA_SDP_SETUP_HOLDCONN) {
        set_err(err, errlen, "%s: the answer's a=setup must be active or passive", p->name);
        goto fail;
    }
    bool dtls_server = setup == MEDIA_SDP_SETUP_ACTIVE;
    struct sockaddr_in remote;
    if (find_candidate(p, sdp, &remote, err, errlen) != 0)
        goto fail;
    uint32_t video_ssrc = 0, rtx_ssrc = 0;
    if (a->video >= 0)
        answer_video_ssrcs(&a->mlines[a->video], &video_ssrc, &rtx_ssrc);

    if (restart) {
        if (check_restart_answer(p, a, dtls_server, err, errlen) != 0)
            goto fail;
        memcpy(p->remote_ufrag_offered, a->transport.ice_ufrag, sizeof(p->remote_ufrag_offered));
        memcpy(p->remote_pwd_offered, a->transport.ice_pwd, sizeof(p->remote_pwd_offered));
        p->restart_offered = false;
        if (p->ran) {
            /* The peer's thread takes it over (apply_restart). */
            pthread_mutex_lock(&p->lock);
            memcpy(p->restart.local_ufrag, p->offer_ufrag, sizeof(p->restart.local_ufrag));
            memcpy(p->restart.local_pwd, p->offer_pwd, sizeof(p->restart.local_pwd));
            memcpy(p->restart.remote_ufrag, a->transport.ice_ufrag,
                   sizeof(p->restart.remote_ufrag));
            memcpy(p->restart.remote_pwd, a->transport.ice_pwd, sizeof(p->restart.remote_pwd));
            p->restart.remote = remote;
            p->restart.rx_rtx_ssrc = rtx_ssrc;
            pthread_mutex_unlock(&p->lock);
            atomic_store(&p->restart_ready, true);
            wake(p);
            free(a);
            return 0;
        }
        /* Not started yet: taken whole below, as a first answer. */
    }

    memcpy(p->local_ufrag, p->offer_ufrag, sizeof(p->local_ufrag));
    memcpy(p->local_pwd, p->offer_pwd, sizeof(p->local_pwd));
    memcpy(p->remote_ufrag, a->transport.ice_ufrag, sizeof(p->remote_ufrag));
    memcpy(p->remote_pwd, a->transport.ice_pwd, sizeof(p->remote_pwd));
    memcpy(p->remote_ufrag_offered, a->transport.ice_ufrag, sizeof(p->remote_ufrag_offered));
    memcpy(p->remote_pwd_offered, a->transport.ice_pwd, sizeof(p->remote_pwd_offered));
    p->remote_fp_count = a->transport.fingerprint_count;
    memcpy(p->remote_fps, a->transport.fingerprints, sizeof(p->remote_fps));
    p->dtls_server = dtls_server;
    if (dtls_server)
        SSL_set_accept_state(p->ssl);
    else
        SSL_set_connect_state(p->ssl);
    pthread_mutex_lock(&p->lock);
    p->remote = remote;
    p->stats.dtls_server = dtls_server;
    pthread_mutex_unlock(&p->lock);
    memset(&p->audio, 0, sizeof(p->audio));
    memset(&p->video, 0, sizeof(p->video));
    p->rx_audio_pt = p->rx_video_pt = p->rx_rtx_pt = -1;
    if (a->audio >= 0)
        take_mline(&p->audio, &a->mlines[a->audio], p->cfg.tone_hz > 0, p->audio_ssrc,
                   &p->rx_audio_pt);
    if (a->video >= 0) {
        take_mline(&p->video, &a->mlines[a->video], p->cfg.video_kbps > 0, p->video_ssrc,
                   &p->rx_video_pt);
        p->rx_rtx_pt = a->mlines[a->video].choices[0].rtx_pt;
    }
    p->rx_video_ssrc_declared = video_ssrc;
    p->rx_rtx_ssrc = rtx_ssrc;
    /* RFC 3550 wants random initial numbers. */
    uint8_t r[12];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        set_err(err, errlen, "%s: RAND_bytes failed", p->name);
        goto fail;
    }
    p->audio.seq = get16(r);
    p->video.seq = get16(r + 2);
    p->audio.ts = get32(r + 4);
    p->video.ts = get32(r + 8);
    p->have_answer = true;
    p->restart_offered = false;
    free(a);
    return 0;
fail:
    free(a);
    return -1;
}

char *tp_peer_restart_ice(struct tp_peer *p)
{
    char ufrag[sizeof(p->offer_ufrag)], pwd[sizeof(p->offer_pwd)];
    if (random_token(ufrag, sizeof(ufrag) - 1) != 0 || random_token(pwd, sizeof(pwd) - 1) != 0)
        return NULL;
    memcpy(p->offer_ufrag, ufrag, sizeof(ufrag));
    memcpy(p->offer_pwd, pwd, sizeof(pwd));
    OPENSSL_cleanse(pwd, sizeof(pwd));
    p->session_version++;
    p->restart_offered = true;
    return tp_peer_offer(p);
}

/* ------------------------------------------------------------------------- */
/* Running                                                                    */
/* ------------------------------------------------------------------------- */

int tp_peer_start(struct tp_peer *p)
{
    if (!p->have_answer || p->ran)
        return -1;
    p->ran = true;
    if (pthread_create(&p->thread, NULL, peer_thread, p) != 0)
        return -1;
    p->thread_running = true;
    return 0;
}

int tp_peer_wait_connected(struct tp_peer *p, int timeout_ms)
{
    if (timeout_ms < 0)
        timeout_ms = 0;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    while (p->ran && !p->stats.connected && !p->stats.dtls_failed && rc == 0)
        rc = pthread_cond_timedwait(&p->changed, &p->lock, &deadline);
    bool connected = p->stats.connected;
    pthread_mutex_unlock(&p->lock);
    return connected ? 0 : -1;
}

void tp_peer_set_silent(struct tp_peer *p, bool silent)
{
    atomic_store(&p->silent, silent);
}

void tp_peer_request_key_frame(struct tp_peer *p)
{
    atomic_store(&p->want_pli, true);
    wake(p);
}

void tp_peer_set_audio_silent(struct tp_peer *p, bool silent)
{
    atomic_store(&p->audio_silent, silent);
}

void tp_peer_change_address(struct tp_peer *p)
{
    atomic_store(&p->want_move, true);
    wake(p);
}

void tp_peer_stop(struct tp_peer *p)
{
    if (!p->thread_running)
        return;
    atomic_store(&p->stop, true);
    wake(p);
    pthread_join(p->thread, NULL);
    p->thread_running = false;
}

int tp_peer_detach(struct tp_peer *p, struct tp_transport *out)
{
    pthread_mutex_lock(&p->lock);
    bool connected = p->stats.connected && !p->stats.dtls_failed;
    pthread_mutex_unlock(&p->lock);
    if (!connected || !p->srtp)
        return -1;
    atomic_store(&p->detaching, true);
    tp_peer_stop(p);
    memset(out, 0, sizeof(*out));
    out->fd = p->fd;
    out->remote = p->remote;
    out->srtp = p->srtp;
    out->stun = p->stun;
    memcpy(out->local_ufrag, p->local_ufrag, sizeof(out->local_ufrag));
    memcpy(out->local_pwd, p->local_pwd, sizeof(out->local_pwd));
    snprintf(out->remote_ufrag, sizeof(out->remote_ufrag), "%s", p->remote_ufrag);
    snprintf(out->remote_pwd, sizeof(out->remote_pwd), "%s", p->remote_pwd);
    out->tie_breaker = p->tie_breaker;
    out->audio = p->audio;
    out->video = p->video;
    out->rtx_ssrc = p->rtx_ssrc;
    p->fd = -1;
    p->srtp = NULL;
    p->stun = NULL;
    return 0;
}

/*
 * The dominant frequency of `n` samples at PEAK_RATE: Goertzel power over
 * 100..2000 Hz in 2 Hz steps on a Hann window, then a parabola through the
 * best bin and its neighbours. 0 when the signal is silence.
 */
static double dominant_hz(float *x, size_t n)
{
    double mean = 0, energy = 0;
    for (size_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        x[i] -= (float)mean;
        energy += (double)x[i] * x[i];
        x[i] *= (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)i / (double)(n - 1)));
    }
    if (sqrt(energy / (double)n) < PEAK_MIN_RMS)
        return 0;
    enum { BINS = (PEAK_MAX_HZ - PEAK_MIN_HZ) / PEAK_STEP_HZ + 1 };
    double power[BINS];
    unsigned best = 0;
    for (unsigned b = 0; b < BINS; b++) {
        double f = PEAK_MIN_HZ + (double)b * PEAK_STEP_HZ;
        float coeff = (float)(2.0 * cos(2.0 * M_PI * f / PEAK_RATE));
        float s1 = 0, s2 = 0;
        for (size_t i = 0; i < n; i++) {
            float s0 = x[i] + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        power[b] = (double)s1 * s1 + (double)s2 * s2 - (double)coeff * s1 * s2;
        if (power[b] > power[best])
            best = b;
    }
    double offset = 0;
    if (best > 0 && best + 1 < BINS) {
        double l = sqrt(power[best - 1]), c = sqrt(power[best]), r = sqrt(power[best + 1]);
        double denom = l - 2 * c + r;
        if (denom < 0)
            offset = 0.5 * (l - r) / denom;
    }
    return PEAK_MIN_HZ + ((double)best + offset) * PEAK_STEP_HZ;
}

void tp_peer_stats(struct tp_peer *p, struct tp_stats *out)
{
    enum { TAKE = PEAK_WINDOW * PEAK_DECIMATE };
    float *x = malloc(PEAK_WINDOW * sizeof(*x));
    double squares = 0;
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    bool fresh = p->stats.audio_decoded_samples >= TAKE && p->last_audio_us != 0 &&
                 now_us() - p->last_audio_us < AUDIO_STALE_US;
    if (fresh) {
        /* The newest TAKE samples of the ring, averaged by PEAK_DECIMATE. */
        size_t pos = (p->pcm_pos + PCM_KEEP - TAKE) % PCM_KEEP;
        for (size_t i = 0; i < PEAK_WINDOW; i++) {
            int sum = 0;
            for (unsigned k = 0; k < PEAK_DECIMATE; k++) {
                sum += p->pcm[pos];
                squares += (double)p->pcm[pos] * p->pcm[pos];
                pos = (pos + 1) % PCM_KEEP;
            }
            if (x)
                x[i] = (float)sum / PEAK_DECIMATE;
        }
    }
    pthread_mutex_unlock(&p->lock);
    out->audio_peak_hz = x && fresh ? dominant_hz(x, PEAK_WINDOW) : 0;
    double rms = sqrt(squares / TAKE) / 32768.0;
    out->audio_rms_dbfs = RMS_FLOOR_DBFS;
    if (fresh && rms > 0 && 20.0 * log10(rms) > RMS_FLOOR_DBFS)
        out->audio_rms_dbfs = 20.0 * log10(rms);
    free(x);
}

uint16_t tp_peer_local_port(const struct tp_peer *p)
{
    return atomic_load(&p->local_port);
}

int tp_peer_send_raw(struct tp_peer *p, const void *data, size_t len)
{
    if (!p->have_answer)
        return -ENOTCONN;
    /* Under the lock: the peer's thread may be changing the socket or the address. */
    pthread_mutex_lock(&p->lock);
    ssize_t n = sendto(p->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&p->remote,
                       sizeof(p->remote));
    int e = errno;
    pthread_mutex_unlock(&p->lock);
    if (n < 0)
        return -e;
    return n == (ssize_t)len ? 0 : -EMSGSIZE;
}
