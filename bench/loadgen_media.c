/*
 * loadgen_media.c - the load generator's media engine (see loadgen_media.h).
 *
 * One thread, one epoll set over every leg's socket. Each turn of the loop
 * sends what is due (a leg's packets of one turn leave in one sendmmsg) and
 * then reads every socket epoll reports in batches (recvmmsg, with the
 * kernel's arrival time of each datagram). All buffers are allocated when
 * the engine is made: like the server it measures, the engine allocates
 * nothing per packet, so its own cost stays small and steady.
 */

#include "loadgen_media.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <openssl/rand.h>
#include <opus.h>

#include "base.h"
#include "srtp.h"
#include "stun.h"

#define AUDIO_RATE        48000
#define AUDIO_FRAME       960 /* 20 ms */
#define AUDIO_LOOP_FRAMES 150 /* 3 s of speech-like sound, sent in a loop */
#define AUDIO_FRAME_MAX   400
#define AUDIO_BITRATE     32000
#define AUDIO_PERIOD_NS   20000000LL
#define VIDEO_CLOCK       90000
#define KEY_EVERY         60 /* frames: a key frame every 2 s at 30 fps */
#define KEY_SCALE         4
#define CONSENT_PERIOD_NS 2000000000LL
#define DATAGRAM_MAX      1500
#define SEND_BATCH        64
#define RECV_BATCH        32
#define RECV_BUFFER       65536
#define RX_STREAMS        4
#define SETUP_UNKNOWN     INT64_MIN

/* One stream a leg receives, by SSRC. */
struct rx_stream {
    uint32_t ssrc;
    bool used;
    int64_t first, highest; /* extended sequence numbers */
    uint64_t received;
};

struct leg {
    int fd;
    bool plain;
    struct sockaddr_in remote;
    struct media_srtp *srtp;
    struct media_stun_ctx *stun;
    char local_ufrag[9], local_pwd[25];
    char remote_ufrag[257], remote_pwd[257];
    uint64_t tie_breaker;
    struct tp_stream audio, video;
    uint16_t twcc_seq;
    uint32_t frame;
    unsigned audio_next;
    int64_t next_audio, next_video, next_consent; /* CLOCK_MONOTONIC ns */
    int64_t join_ns, first_media_ns;              /* CLOCK_REALTIME ns */
    uint32_t socket_drops; /* the kernel's count for our socket (SO_RXQ_OVFL), last seen */
    uint32_t pair;
    unsigned side;
    struct rx_stream rx[RX_STREAMS];
};

struct lg_engine {
    struct lg_media_config cfg;
    int epoll_fd;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    clockid_t cpu_clock;

    /* Legs: added under `lock` into `pending`, taken into `legs` by the thread. */
    pthread_mutex_t lock;
    pthread_cond_t copied;
    struct leg *legs;
    unsigned n_legs;
    unsigned n_pending;
    struct leg *pending; /* LG_MAX_LEGS */
    atomic_bool have_pending;
    atomic_bool want_snapshot;
    bool snapshot_ready;
    struct lg_totals *shared; /* the copy for lg_engine_snapshot, under `lock` */
    int64_t *shared_setup;
    unsigned shared_setup_n;

    struct lg_totals totals; /* the thread's own */

    /* Audio, encoded once. */
    int audio_len[AUDIO_LOOP_FRAMES];
    uint8_t audio_frames[AUDIO_LOOP_FRAMES][AUDIO_FRAME_MAX];
    size_t video_delta_bytes, video_key_bytes;

    /* Buffers of the thread. */
    uint8_t (*send_buf)[DATAGRAM_MAX];
    struct mmsghdr send_msgs[SEND_BATCH];
    struct iovec send_iov[SEND_BATCH];
    uint8_t (*recv_buf)[RECV_BUFFER]; /* a UDP_GRO read holds up to 64 KiB */
    struct mmsghdr recv_msgs[RECV_BATCH];
    struct iovec recv_iov[RECV_BATCH];
    struct sockaddr_in recv_from[RECV_BATCH];
    uint8_t recv_ctl[RECV_BATCH][128]; /* timestamp, drop count, GRO segment size */
};

int64_t lg_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static void put64(uint8_t *b, uint64_t v)
{
    put32(b, (uint32_t)(v >> 32));
    put32(b + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* ------------------------------------------------------------------------- */
/* Media made once                                                            */
/* ------------------------------------------------------------------------- */

/*
 * Three seconds of something a speech codec treats as speech: a voiced
 * source (a pitch gliding between 110 and 190 Hz with its harmonics falling
 * off like a glottal pulse) shaped by syllables of about 200 ms at 4 a
 * second, with a short pause every second, and a little noise. DTX is off,
 * as the benchmark issue asks: the pauses still make packets.
 */
static int encode_speech(struct lg_engine *e)
{
    int err = 0;
    OpusEncoder *enc = opus_encoder_create(AUDIO_RATE, 1, OPUS_APPLICATION_VOIP, &err);
    if (!enc || err != OPUS_OK)
        return -1;
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(AUDIO_BITRATE));
    opus_encoder_ctl(enc, OPUS_SET_DTX(0));
    float pcm[AUDIO_FRAME];
    double phase = 0;
    uint32_t noise = 12345;
    for (unsigned f = 0; f < AUDIO_LOOP_FRAMES; f++) {
        for (unsigned i = 0; i < AUDIO_FRAME; i++) {
            double t = (double)(f * AUDIO_FRAME + i) / AUDIO_RATE;
            double pitch = 150 + 40 * sin(2 * M_PI * 0.7 * t);
            phase += 2 * M_PI * pitch / AUDIO_RATE;
            double voiced = 0;
            for (int h = 1; h <= 12; h++)
                voiced += sin(h * phase) / (h * 1.5);
            double syllable = fmax(0, sin(2 * M_PI * 4 * t));
            double pause = fmod(t, 1.0) > 0.8 ? 0 : 1;
            noise = noise * 1664525u + 1013904223u;
            double hiss = ((double)(noise >> 8) / (1 << 24) - 0.5) * 0.02;
            pcm[i] = (float)(0.25 * voiced * syllable * pause + hiss);
        }
        e->audio_len[f] = opus_encode_float(enc, pcm, AUDIO_FRAME, e->audio_frames[f],
                                            AUDIO_FRAME_MAX - LG_STAMP_BYTES);
        if (e->audio_len[f] <= 0) {
            opus_encoder_destroy(enc);
            return -1;
        }
    }
    opus_encoder_destroy(enc);
    return 0;
}

struct lg_engine *lg_engine_new(const struct lg_media_config *cfg)
{
    struct lg_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->cfg = *cfg;
    if (e->cfg.video_fps == 0)
        e->cfg.video_fps = 30;
    e->epoll_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->copied, NULL);
    e->legs = calloc(LG_MAX_LEGS, sizeof(*e->legs));
    e->pending = calloc(LG_MAX_LEGS, sizeof(*e->pending));
    e->shared = calloc(1, sizeof(*e->shared));
    e->shared_setup = calloc(LG_MAX_LEGS, sizeof(*e->shared_setup));
    e->send_buf = calloc(SEND_BATCH, DATAGRAM_MAX);
    e->recv_buf = calloc(RECV_BATCH, RECV_BUFFER);
    e->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!e->legs || !e->pending || !e->shared || !e->shared_setup || !e->send_buf || !e->recv_buf ||
        e->epoll_fd < 0 || encode_speech(e) != 0) {
        lg_engine_free(e);
        return NULL;
    }
    /* Sizes so that the average is the bitrate: (KEY_EVERY - 1) deltas and one key frame. */
    size_t per_frame = (size_t)e->cfg.video_kbps * 1000u / 8u / e->cfg.video_fps;
    e->video_delta_bytes = per_frame * KEY_EVERY / (KEY_EVERY - 1 + KEY_SCALE);
    e->video_key_bytes = e->video_delta_bytes * KEY_SCALE;
    for (unsigned i = 0; i < SEND_BATCH; i++) {
        e->send_iov[i].iov_base = e->send_buf[i];
        e->send_msgs[i].msg_hdr.msg_iov = &e->send_iov[i];
        e->send_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (unsigned i = 0; i < RECV_BATCH; i++) {
        e->recv_iov[i].iov_base = e->recv_buf[i];
        e->recv_iov[i].iov_len = RECV_BUFFER;
        e->recv_msgs[i].msg_hdr.msg_iov = &e->recv_iov[i];
        e->recv_msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return e;
}

/* ------------------------------------------------------------------------- */
/* Sending                                                                    */
/* ------------------------------------------------------------------------- */

/* A browser's RTP header (tp_write_rtp_header) with the padding bit: the send stamp. */
static size_t write_header(struct leg *l, struct tp_stream *s, bool marker, uint8_t *b,
                           int64_t mono)
{
    size_t h = tp_write_rtp_header(s, marker, b, (uint64_t)mono / 1000u, &l->twcc_seq,
                                   0x80 | 20); /* voice, -20 dBov */
    b[0] |= 0x20;
    return h;
}

/* The padding that carries the send time; its stamp is written just before sending. */
static size_t write_stamp(uint8_t *at)
{
    memset(at, 0, LG_STAMP_BYTES);
    at[LG_STAMP_BYTES - 1] = LG_STAMP_BYTES;
    return LG_STAMP_BYTES;
}

/* Queues the packet of `len` bytes in slot `n` of the send batch. */
static void queue(struct lg_engine *e, unsigned n, size_t len)
{
    e->send_iov[n].iov_len = len;
}

static unsigned build_audio(struct lg_engine *e, struct leg *l, unsigned n, int64_t mono)
{
    uint8_t *b = e->send_buf[n];
    unsigned i = l->audio_next++ % AUDIO_LOOP_FRAMES;
    size_t h = write_header(l, &l->audio, false, b, mono);
    memcpy(b + h, e->audio_frames[i], (size_t)e->audio_len[i]);
    size_t len = h + (size_t)e->audio_len[i];
    len += write_stamp(b + len);
    l->audio.ts += AUDIO_FRAME;
    queue(e, n, len);
    return n + 1;
}

/* One frame's packets into the batch from slot `n`; returns the next free slot. */
static unsigned build_video(struct lg_engine *e, struct leg *l, unsigned n, int64_t mono)
{
    uint32_t frame = l->frame++;
    bool key = frame % KEY_EVERY == 0;
    size_t size = key ? e->video_key_bytes : e->video_delta_bytes;
    size_t packets = (size + LG_VIDEO_MAX_PAYLOAD - 1) / LG_VIDEO_MAX_PAYLOAD;
    if (packets == 0)
        packets = 1;
    if (packets > SEND_BATCH - n)
        packets = SEND_BATCH - n;
    for (size_t i = 0; i < packets; i++) {
        uint8_t *b = e->send_buf[n];
        size_t h = write_header(l, &l->video, i + 1 == packets, b, mono);
        size_t data = size / packets + (i < size % packets ? 1 : 0);
        if (data < 3 + LG_STAMP_BYTES)
            data = 3 + LG_STAMP_BYTES;
        if (h + data + LG_PLAIN_TAG + MEDIA_SRTP_MAX_OVERHEAD > DATAGRAM_MAX)
            data = DATAGRAM_MAX - h - LG_PLAIN_TAG - MEDIA_SRTP_MAX_OVERHEAD; /* a frame too big
                                                                                for one batch */
        data -= LG_STAMP_BYTES;
        uint8_t *p = b + h;
        /* VP8 payload descriptor (S on a frame's first packet), then the frame header's
         * first byte: P (bit 0) clear on a key frame, as a VP8 parser looks for. */
        p[0] = i == 0 ? 0x10 : 0x00;
        p[1] = key ? 0x00 : 0x01;
        memset(p + 2, 0x5A, data - 2);
        size_t len = h + data;
        len += write_stamp(b + len);
        queue(e, n++, len);
    }
    l->video.ts += VIDEO_CLOCK / e->cfg.video_fps;
    return n;
}

static void send_batch(struct lg_engine *e, struct leg *l, unsigned count)
{
    if (!count)
        return;
    unsigned kept = 0;
    for (unsigned i = 0; i < count; i++) {
        struct iovec *v = &e->send_iov[i];
        uint8_t *b = v->iov_base;
        size_t len = v->iov_len;
        /* Stamped one by one, just before its own protection: the burst's earlier packets'
         * SRTP work is not counted as delay. */
        put64(b + len - LG_STAMP_BYTES, (uint64_t)lg_realtime_ns());
        if (l->plain) {
            memset(b + len, 0, LG_PLAIN_TAG);
            len += LG_PLAIN_TAG;
        } else {
            int n = media_srtp_protect_rtp(l->srtp, b, len, DATAGRAM_MAX);
            if (n <= 0) {
                e->totals.send_failures++; /* cannot happen with these sizes; never sent empty */
                continue;
            }
            len = (size_t)n;
        }
        /* Kept packets move down over refused ones, so the batch has no holes. */
        e->send_iov[kept].iov_base = b;
        e->send_iov[kept].iov_len = len;
        e->send_msgs[kept].msg_hdr.msg_name = &l->remote;
        e->send_msgs[kept].msg_hdr.msg_namelen = sizeof(l->remote);
        kept++;
    }
    unsigned done = 0;
    while (done < kept) {
        int n = sendmmsg(l->fd, &e->send_msgs[done], kept - done, MSG_DONTWAIT);
        if (n <= 0) {
            e->totals.send_failures += kept - done;
            break;
        }
        done += (unsigned)n;
    }
    e->totals.rtp_sent += done;
    for (unsigned i = 0; i < done; i++)
        e->totals.rtp_sent_bytes += e->send_iov[i].iov_len;
    /* The buffers moved with their packets: put every slot back on its own buffer. */
    for (unsigned i = 0; i < SEND_BATCH; i++)
        e->send_iov[i].iov_base = e->send_buf[i];
}

static void send_consent(struct lg_engine *e, struct leg *l)
{
    if (l->plain) {
        uint8_t reg[9] = {'F', 'W', 'D', '1'};
        put32(reg + 4, l->pair);
        reg[8] = (uint8_t)l->side;
        sendto(l->fd, reg, sizeof(reg), MSG_DONTWAIT, (struct sockaddr *)&l->remote,
               sizeof(l->remote));
        return;
    }
    uint8_t txid[MEDIA_STUN_TXID_SIZE];
    RAND_bytes(txid, sizeof(txid));
    struct media_stun_request_params params = {
        .txid = txid,
        .remote_ufrag = l->remote_ufrag,
        .local_ufrag = l->local_ufrag,
        .remote_pwd = l->remote_pwd,
        .priority = (110u << 24) | (65535u << 8) | 255u,
        .controlling = true,
        .tie_breaker = l->tie_breaker,
    };
    uint8_t buf[512];
    int n = media_stun_build_binding_request(l->stun, &params, buf, sizeof(buf));
    if (n > 0 && sendto(l->fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&l->remote,
                        sizeof(l->remote)) == n)
        e->totals.stun_requests_sent++;
}

/* Sends what is due on `l`; returns its next deadline. */
static int64_t run_leg(struct lg_engine *e, struct leg *l, int64_t now)
{
    unsigned n = 0;
    if (e->cfg.audio && l->audio.enabled && now >= l->next_audio) {
        n = build_audio(e, l, n, now);
        l->next_audio += AUDIO_PERIOD_NS;
        if (l->next_audio < now - 200000000LL) /* a stall: skip ahead, do not burst */
            l->next_audio = now + AUDIO_PERIOD_NS;
    }
    if (e->cfg.video_kbps && l->video.enabled && now >= l->next_video) {
        n = build_video(e, l, n, now);
        l->next_video += 1000000000LL / e->cfg.video_fps;
        if (l->next_video < now - 200000000LL)
            l->next_video = now + 1000000000LL / e->cfg.video_fps;
    }
    send_batch(e, l, n);
    if (now >= l->next_consent) {
        send_consent(e, l);
        l->next_consent = now + (l->plain ? CONSENT_PERIOD_NS / 2 : CONSENT_PERIOD_NS);
    }
    int64_t next = l->next_consent;
    if (e->cfg.audio && l->audio.enabled && l->next_audio < next)
        next = l->next_audio;
    if (e->cfg.video_kbps && l->video.enabled && l->next_video < next)
        next = l->next_video;
    return next;
}

/* ------------------------------------------------------------------------- */
/* Receiving                                                                  */
/* ------------------------------------------------------------------------- */

static int64_t extend(int64_t highest, uint16_t seq)
{
    int64_t base = highest & ~(int64_t)0xFFFF;
    int64_t v = base | seq;
    if (v > highest + 0x8000)
        v -= 0x10000;
    else if (v < highest - 0x8000)
        v += 0x10000;
    return v;
}

static struct rx_stream *rx_stream(struct leg *l, uint32_t ssrc)
{
    for (unsigned i = 0; i < RX_STREAMS; i++)
        if (l->rx[i].used && l->rx[i].ssrc == ssrc)
            return &l->rx[i];
    for (unsigned i = 0; i < RX_STREAMS; i++)
        if (!l->rx[i].used) {
            l->rx[i] = (struct rx_stream){.ssrc = ssrc, .used = true};
            return &l->rx[i];
        }
    return NULL;
}

static void record_delay(struct lg_engine *e, int64_t delay_ns)
{
    if (delay_ns < 0 || delay_ns >= (int64_t)LG_DELAY_MAX_US * 1000) {
        e->totals.delay_over++;
        return;
    }
    int64_t us = delay_ns / 1000;
    size_t bucket = us < LG_DELAY_FINE_US
                        ? (size_t)us
                        : LG_DELAY_FINE_US + (size_t)(us - LG_DELAY_FINE_US) / LG_DELAY_COARSE_US;
    e->totals.delay[bucket]++;
}

static void on_rtp(struct lg_engine *e, struct leg *l, uint8_t *b, size_t len, int64_t arrival)
{
    if (!l->plain) {
        int n = media_srtp_unprotect_rtp(l->srtp, b, len);
        if (n == MEDIA_SRTP_ERR_REPLAY) {
            e->totals.duplicates++;
            return;
        }
        if (n < 0) {
            e->totals.srtp_errors++;
            return;
        }
        len = (size_t)n;
    } else if (len > LG_PLAIN_TAG) {
        len -= LG_PLAIN_TAG;
    }
    if (len < 12 + LG_STAMP_BYTES)
        return;
    uint32_t ssrc = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
    uint16_t seq = (uint16_t)(b[2] << 8 | b[3]);
    struct rx_stream *s = rx_stream(l, ssrc);
    if (!s)
        return;
    if (s->received == 0) {
        s->first = s->highest = seq;
    } else {
        int64_t x = extend(s->highest, seq);
        if (x > s->highest) {
            s->highest = x;
        } else if (l->plain && x == s->highest) {
            e->totals.duplicates++;
            return;
        } else {
            e->totals.reordered++;
        }
        if (x < s->first)
            s->first = x;
    }
    s->received++;
    e->totals.rtp_received++;
    e->totals.rtp_received_bytes += len;
    if (l->first_media_ns == SETUP_UNKNOWN) {
        l->first_media_ns = arrival;
        e->totals.legs_receiving++;
    }
    /* The stamp is there when the padding is ours (the P bit and a count of LG_STAMP_BYTES). */
    if ((b[0] & 0x20) && b[len - 1] == LG_STAMP_BYTES)
        record_delay(e, arrival - (int64_t)get64(b + len - LG_STAMP_BYTES));
}

static void on_stun(struct lg_engine *e, struct leg *l, const uint8_t *b, size_t len,
                    const struct sockaddr_in *from)
{
    struct media_stun_msg msg;
    if (l->plain || media_stun_parse(b, len, &msg) != 0 || msg.cls != MEDIA_STUN_REQUEST)
        return;
    /* A full-ICE server's own check: answer it as a browser does. */
    struct sockaddr_storage mapped = {0};
    memcpy(&mapped, from, sizeof(*from));
    uint8_t out[512];
    int n = media_stun_build_binding_success(l->stun, msg.txid, &mapped, l->local_pwd, out,
                                             sizeof(out));
    if (n > 0 && sendto(l->fd, out, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)from,
                        sizeof(*from)) == n)
        e->totals.stun_answered++;
}

/* The kernel's arrival time of a datagram; also takes the socket's drop count along. */
static int64_t arrival_ns(struct lg_engine *e, struct leg *l, struct msghdr *h)
{
    int64_t at = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            at = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t drops;
            memcpy(&drops, CMSG_DATA(c), sizeof(drops));
            e->totals.socket_drops += (uint32_t)(drops - l->socket_drops);
            l->socket_drops = drops;
        }
    }
    return at ? at : lg_realtime_ns();
}

static void on_datagram(struct lg_engine *e, struct leg *l, uint8_t *b, size_t len, int64_t arrival,
                        const struct sockaddr_in *from)
{
    if (len < 2)
        return;
    if (b[0] <= 3) {
        on_stun(e, l, b, len, from);
    } else if (b[0] >= 128 && b[0] <= 191) {
        /* RTCP packet types 192..223 (RFC 5761 section 4) */
        if (b[1] >= 192 && b[1] <= 223) {
            if (l->plain || media_srtp_unprotect_rtcp(l->srtp, b, len) >= 0)
                e->totals.rtcp_received++;
            else
                e->totals.srtp_errors++;
        } else {
            on_rtp(e, l, b, len, arrival);
        }
    }
}

static void receive_all(struct lg_engine *e, struct leg *l)
{
    for (;;) {
        for (unsigned i = 0; i < RECV_BATCH; i++) {
            struct msghdr *h = &e->recv_msgs[i].msg_hdr;
            h->msg_name = &e->recv_from[i];
            h->msg_namelen = sizeof(e->recv_from[i]);
            h->msg_control = e->recv_ctl[i];
            h->msg_controllen = sizeof(e->recv_ctl[i]);
            e->recv_iov[i].iov_len = RECV_BUFFER;
        }
        int n = recvmmsg(l->fd, e->recv_msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            uint8_t *b = e->recv_buf[i];
            size_t len = e->recv_msgs[i].msg_len;
            const struct msghdr *h = &e->recv_msgs[i].msg_hdr;
            int64_t arrival = arrival_ns(e, l, &e->recv_msgs[i].msg_hdr);
            /* A UDP_GRO read: datagrams of `segment` bytes each, the last maybe shorter. */
            size_t segment = base_udp_gro_segment_size(h);
            if (segment == 0 || segment > len)
                segment = len;
            for (size_t at = 0; at < len; at += segment)
                on_datagram(e, l, b + at, len - at < segment ? len - at : segment, arrival,
                            &e->recv_from[i]);
        }
        if (n < RECV_BATCH)
            return;
    }
}

/* ------------------------------------------------------------------------- */
/* The thread                                                                 */
/* ------------------------------------------------------------------------- */

static void take_pending(struct lg_engine *e)
{
    pthread_mutex_lock(&e->lock);
    int64_t now = mono_ns();
    for (unsigned i = 0; i < e->n_pending; i++) {
        struct leg *l = &e->legs[e->n_legs];
        *l = e->pending[i];
        /* Start each leg at a random point of its media clocks, as independent browsers. */
        uint32_t r = 0;
        RAND_bytes((uint8_t *)&r, sizeof(r));
        l->next_audio = now + (int64_t)(r % 20000u) * 1000;
        l->next_video = now + (int64_t)(r % 33000u) * 1000;
        l->next_consent = now;
        l->first_media_ns = SETUP_UNKNOWN;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = e->n_legs};
        if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, l->fd, &ev) == 0) {
            e->n_legs++;
        } else {
            close(l->fd);
            media_srtp_free(l->srtp);
            media_stun_ctx_free(l->stun);
        }
    }
    e->n_pending = 0;
    atomic_store(&e->have_pending, false);
    e->totals.legs = e->n_legs;
    pthread_mutex_unlock(&e->lock);
}

static void copy_snapshot(struct lg_engine *e)
{
    uint64_t expected = 0;
    for (unsigned i = 0; i < e->n_legs; i++)
        for (unsigned j = 0; j < RX_STREAMS; j++)
            if (e->legs[i].rx[j].used && e->legs[i].rx[j].received)
                expected += (uint64_t)(e->legs[i].rx[j].highest - e->legs[i].rx[j].first + 1);
    e->totals.expected = expected;
    pthread_mutex_lock(&e->lock);
    *e->shared = e->totals;
    /* Every leg at its own index, so a caller can tell which step's legs a time belongs to. */
    e->shared_setup_n = e->n_legs;
    for (unsigned i = 0; i < e->n_legs; i++)
        e->shared_setup[i] = e->legs[i].first_media_ns == SETUP_UNKNOWN
                                 ? -1
                                 : e->legs[i].first_media_ns - e->legs[i].join_ns;
    e->snapshot_ready = true;
    atomic_store(&e->want_snapshot, false);
    pthread_cond_broadcast(&e->copied);
    pthread_mutex_unlock(&e->lock);
}

static void *engine_thread(void *arg)
{
    struct lg_engine *e = arg;
    pthread_getcpuclockid(pthread_self(), &e->cpu_clock);
    struct epoll_event events[256];
    while (!atomic_load(&e->stop)) {
        if (atomic_load(&e->have_pending))
            take_pending(e);
        int64_t now = mono_ns();
        int64_t next = now + 100000000LL;
        for (unsigned i = 0; i < e->n_legs; i++) {
            int64_t t = run_leg(e, &e->legs[i], now);
            if (t < next)
                next = t;
        }
        e->totals.loops++;
        now = mono_ns();
        int timeout = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
        int n = epoll_wait(e->epoll_fd, events, 256, timeout);
        if (n > 0)
            e->totals.wakeups++;
        for (int i = 0; i < n; i++)
            receive_all(e, &e->legs[events[i].data.u32]);
        if (atomic_load(&e->want_snapshot))
            copy_snapshot(e);
    }
    return NULL;
}

int lg_engine_start(struct lg_engine *e)
{
    if (e->running || pthread_create(&e->thread, NULL, engine_thread, e) != 0)
        return -1;
    e->running = true;
    return 0;
}

static int add(struct lg_engine *e, const struct leg *l)
{
    int one = 1, size = 4 << 20;
    setsockopt(l->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    setsockopt(l->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(l->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    if (e->cfg.receiver_gro)
        setsockopt(l->fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one));
    pthread_mutex_lock(&e->lock);
    int index = -1;
    if (e->n_legs + e->n_pending < LG_MAX_LEGS) {
        index = (int)(e->n_legs + e->n_pending);
        e->pending[e->n_pending++] = *l;
        atomic_store(&e->have_pending, true);
    }
    pthread_mutex_unlock(&e->lock);
    return index;
}

int lg_engine_add_leg(struct lg_engine *e, struct tp_transport *t, int64_t join_ns)
{
    struct leg l = {.fd = t->fd,
                    .remote = t->remote,
                    .srtp = t->srtp,
                    .stun = t->stun,
                    .tie_breaker = t->tie_breaker,
                    .audio = t->audio,
                    .video = t->video,
                    .join_ns = join_ns};
    memcpy(l.local_ufrag, t->local_ufrag, sizeof(l.local_ufrag));
    memcpy(l.local_pwd, t->local_pwd, sizeof(l.local_pwd));
    memcpy(l.remote_ufrag, t->remote_ufrag, sizeof(l.remote_ufrag));
    memcpy(l.remote_pwd, t->remote_pwd, sizeof(l.remote_pwd));
    int index = add(e, &l);
    if (index < 0) {
        close(t->fd);
        media_srtp_free(t->srtp);
        media_stun_ctx_free(t->stun);
    }
    memset(t, 0, sizeof(*t));
    t->fd = -1;
    return index;
}

int lg_engine_add_plain_leg(struct lg_engine *e, int fd, const struct sockaddr_in *forwarder,
                            uint32_t pair, unsigned side, int64_t join_ns)
{
    uint32_t ssrc = 0;
    RAND_bytes((uint8_t *)&ssrc, sizeof(ssrc));
    struct leg l = {
        .fd = fd,
        .plain = true,
        .remote = *forwarder,
        .pair = pair,
        .side = side,
        .join_ns = join_ns,
        .audio = {.enabled = true, .pt = 111, .ssrc = ssrc | 1, .ext_twcc = 3},
        .video = {
            .enabled = true, .pt = 96, .ssrc = ssrc & ~1u, .ext_twcc = 3, .ext_abs_send_time = 2}};
    int index = add(e, &l);
    if (index < 0)
        close(fd);
    return index;
}

unsigned lg_engine_snapshot(struct lg_engine *e, struct lg_totals *out, int64_t *setup_ns,
                            unsigned setup_cap)
{
    pthread_mutex_lock(&e->lock);
    e->snapshot_ready = false;
    atomic_store(&e->want_snapshot, true);
    while (e->running && !e->snapshot_ready)
        pthread_cond_wait(&e->copied, &e->lock);
    *out = *e->shared;
    unsigned n = e->shared_setup_n < setup_cap ? e->shared_setup_n : setup_cap;
    if (setup_ns)
        memcpy(setup_ns, e->shared_setup, n * sizeof(*setup_ns));
    pthread_mutex_unlock(&e->lock);
    return setup_ns ? n : 0;
}

double lg_engine_cpu_seconds(struct lg_engine *e)
{
    struct timespec ts;
    if (!e->running || clock_gettime(e->cpu_clock, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lg_engine_free(struct lg_engine *e)
{
    if (!e)
        return;
    if (e->running) {
        atomic_store(&e->stop, true);
        pthread_join(e->thread, NULL);
        e->running = false;
    }
    if (e->legs)
        for (unsigned i = 0; i < e->n_legs; i++) {
            close(e->legs[i].fd);
            media_srtp_free(e->legs[i].srtp);
            media_stun_ctx_free(e->legs[i].stun);
        }
    if (e->pending)
        for (unsigned i = 0; i < e->n_pending; i++) {
            close(e->pending[i].fd);
            media_srtp_free(e->pending[i].srtp);
            media_stun_ctx_free(e->pending[i].stun);
        }
    if (e->epoll_fd >= 0)
        close(e->epoll_fd);
    pthread_cond_destroy(&e->copied);
    pthread_mutex_destroy(&e->lock);
    free(e->legs);
    free(e->pending);
    free(e->shared);
    free(e->shared_setup);
    free(e->send_buf);
    free(e->recv_buf);
    free(e);
}
