/*
 * srtp_speed.c - what one SRTP protect and one unprotect cost, ours
 * (media/srtp.c, on OpenSSL) against Debian's libsrtp2 (on NSS), for an
 * audio-sized (100-byte payload) and a video-sized (1100-byte payload) RTP
 * packet under both profiles. One thread; run it pinned:
 *
 *   taskset -c 1 ./build/bench/srtp_speed [--packets N] [--runs R]
 *
 * Each figure is CPU time per packet (CLOCK_THREAD_CPUTIME_ID, so time the
 * thread spends descheduled on a shared machine does not count) over N
 * packets (200 000 by default) after a warm-up, the best of R runs (3): the
 * fastest run is the closest to the cost on a quiet core. Protect times the
 * sender alone, in place, the sequence number advancing (so the rollover
 * counter moves too). Unprotect times the receiver on batches protected
 * beforehand, untimed, since a packet can be unprotected only once. Prints
 * a table, then the same as one JSON line.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <srtp2/srtp.h>

#include "libsrtp_ref.h"
#include "srtp.h"

#define HEADER_SIZE     12
#define PACKET_CAP      (HEADER_SIZE + 1100 + MEDIA_SRTP_MAX_OVERHEAD)
#define BATCH           1024 /* packets protected ahead of a timed unprotect batch */
#define WARMUP          10000
#define SSRC            0x5EED5EEDu
#define PACKETS_DEFAULT 200000
#define RUNS_DEFAULT    3

enum impl { OURS, LIBSRTP };

/* One sender and one receiver of the same key, from either implementation. */
struct endpoints {
    enum impl impl;
    struct media_srtp *ours_tx, *ours_rx;
    srtp_t lib_tx, lib_rx;
};

static void die(const char *what)
{
    fprintf(stderr, "srtp_speed: %s\n", what);
    exit(1);
}

static double thread_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static struct media_srtp_keys bench_keys(enum media_srtp_profile profile)
{
    struct media_srtp_keys k;
    memset(&k, 0, sizeof(k));
    size_t key_len, salt_len;
    if (media_srtp_profile_lengths(profile, &key_len, &salt_len) != 0)
        die("unknown profile");
    k.profile = profile;
    k.key_len = (uint8_t)key_len;
    k.salt_len = (uint8_t)salt_len;
    for (size_t i = 0; i < key_len; i++)
        k.local_key[i] = k.remote_key[i] = (uint8_t)(0x11 * i + 3);
    for (size_t i = 0; i < salt_len; i++)
        k.local_salt[i] = k.remote_salt[i] = (uint8_t)(0x07 * i + 5);
    return k;
}

/* The libsrtp2 reference session (tests/support/libsrtp_ref.h); the bench keys both sides alike. */
static srtp_t lib_session(const struct media_srtp_keys *k, bool outbound)
{
    srtp_t s = libsrtp_ref_session(k, outbound, true);
    if (!s)
        die("srtp_create failed");
    return s;
}

static struct endpoints endpoints_new(enum impl impl, enum media_srtp_profile profile)
{
    struct media_srtp_keys k = bench_keys(profile);
    struct endpoints e = {.impl = impl};
    if (impl == OURS) {
        e.ours_tx = media_srtp_new(&k, NULL);
        e.ours_rx = media_srtp_new(&k, NULL); /* local and remote keys are the same here */
        if (!e.ours_tx || !e.ours_rx)
            die("media_srtp_new failed");
    } else {
        e.lib_tx = lib_session(&k, true);
        e.lib_rx = lib_session(&k, false);
    }
    return e;
}

static void endpoints_free(struct endpoints *e)
{
    media_srtp_free(e->ours_tx);
    media_srtp_free(e->ours_rx);
    if (e->lib_tx)
        srtp_dealloc(e->lib_tx);
    if (e->lib_rx)
        srtp_dealloc(e->lib_rx);
}

static int protect(struct endpoints *e, uint8_t *buf, size_t len)
{
    if (e->impl == OURS)
        return media_srtp_protect_rtp(e->ours_tx, buf, len, PACKET_CAP);
    int n = (int)len;
    return srtp_protect(e->lib_tx, buf, &n) == srtp_err_status_ok ? n : -1;
}

static int unprotect(struct endpoints *e, uint8_t *buf, size_t len)
{
    if (e->impl == OURS)
        return media_srtp_unprotect_rtp(e->ours_rx, buf, len);
    int n = (int)len;
    return srtp_unprotect(e->lib_rx, buf, &n) == srtp_err_status_ok ? n : -1;
}

/* An RTP packet with an Opus-like header and `payload` bytes of a pattern; its length. */
static size_t make_packet(uint8_t *buf, uint16_t seq, size_t payload)
{
    buf[0] = 0x80;
    buf[1] = 96;
    buf[2] = (uint8_t)(seq >> 8);
    buf[3] = (uint8_t)seq;
    memset(buf + 4, 0x42, 4);
    buf[8] = (uint8_t)(SSRC >> 24);
    buf[9] = (uint8_t)(SSRC >> 16);
    buf[10] = (uint8_t)(SSRC >> 8);
    buf[11] = (uint8_t)SSRC;
    for (size_t i = 0; i < payload; i++)
        buf[HEADER_SIZE + i] = (uint8_t)(i * 31 + 7);
    return HEADER_SIZE + payload;
}

/* CPU ns per protect over `packets` packets, in place in one buffer. */
static double time_protect(enum impl impl, enum media_srtp_profile profile, size_t payload,
                           unsigned packets)
{
    struct endpoints e = endpoints_new(impl, profile);
    uint8_t buf[PACKET_CAP];
    size_t len = make_packet(buf, 0, payload);
    uint16_t seq = 0;
    for (unsigned i = 0; i < WARMUP; i++, seq++) {
        buf[2] = (uint8_t)(seq >> 8);
        buf[3] = (uint8_t)seq;
        if (protect(&e, buf, len) <= 0)
            die("protect failed");
    }
    double start = thread_ns();
    for (unsigned i = 0; i < packets; i++, seq++) {
        buf[2] = (uint8_t)(seq >> 8);
        buf[3] = (uint8_t)seq;
        if (protect(&e, buf, len) <= 0)
            die("protect failed");
    }
    double ns = (thread_ns() - start) / packets;
    endpoints_free(&e);
    return ns;
}

/* CPU ns per unprotect over `packets` packets, protected BATCH at a time beforehand. */
static double time_unprotect(enum impl impl, enum media_srtp_profile profile, size_t payload,
                             unsigned packets)
{
    struct endpoints e = endpoints_new(impl, profile);
    uint8_t(*batch)[PACKET_CAP] = malloc(BATCH * sizeof(*batch));
    if (!batch)
        die("out of memory");
    int lens[BATCH];
    uint16_t seq = 0;
    double spent = 0;
    unsigned done = 0, warm = 0;
    while (done < packets) {
        unsigned n = BATCH;
        for (unsigned i = 0; i < n; i++) {
            size_t len = make_packet(batch[i], seq++, payload);
            if ((lens[i] = protect(&e, batch[i], len)) <= 0)
                die("protect failed");
        }
        double start = thread_ns();
        for (unsigned i = 0; i < n; i++)
            if (unprotect(&e, batch[i], (size_t)lens[i]) != (int)(HEADER_SIZE + payload))
                die("unprotect failed");
        double t = thread_ns() - start;
        if (warm < WARMUP) {
            warm += n;
            continue;
        }
        spent += t;
        done += n;
    }
    free(batch);
    endpoints_free(&e);
    return spent / done;
}

struct result {
    enum media_srtp_profile profile;
    size_t payload;
    const char *op;
    double ns[2]; /* by enum impl */
};

int main(int argc, char **argv)
{
    unsigned packets = PACKETS_DEFAULT, runs = RUNS_DEFAULT;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--packets") == 0)
            packets = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--runs") == 0)
            runs = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else
            die("usage: srtp_speed [--packets N] [--runs R]");
    }
    if ((argc - 1) % 2 || packets < BATCH || runs < 1)
        die("usage: srtp_speed [--packets N >= 1024] [--runs R >= 1]");
    if (srtp_init() != srtp_err_status_ok || media_srtp_library_init() != 0)
        die("cannot initialise libsrtp2 or OpenSSL");

    const enum media_srtp_profile profiles[] = {MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM,
                                                MEDIA_SRTP_PROFILE_AES_CM_128_HMAC_SHA1_80};
    const size_t payloads[] = {100, 1100};
    struct result results[8];
    size_t count = 0;
    for (size_t p = 0; p < 2; p++) {
        for (size_t s = 0; s < 2; s++) {
            for (int op = 0; op < 2; op++) {
                struct result *r = &results[count++];
                r->profile = profiles[p];
                r->payload = payloads[s];
                r->op = op ? "unprotect" : "protect";
                for (int impl = OURS; impl <= LIBSRTP; impl++) {
                    r->ns[impl] = 1e300;
                    for (unsigned run = 0; run < runs; run++) {
                        double ns = op ? time_unprotect(impl, r->profile, r->payload, packets)
                                       : time_protect(impl, r->profile, r->payload, packets);
                        if (ns < r->ns[impl])
                            r->ns[impl] = ns;
                    }
                }
            }
        }
    }

    printf("SRTP per RTP packet, CPU ns, best of %u runs of %u packets; OpenSSL %s, %s\n\n", runs,
           packets, OpenSSL_version(OPENSSL_VERSION_STRING), srtp_get_version_string());
    printf("%-24s %8s %-10s %9s %12s %8s\n", "profile", "payload", "operation", "ours", "libsrtp2",
           "ratio");
    for (size_t i = 0; i < count; i++) {
        const struct result *r = &results[i];
        printf("%-24s %8zu %-10s %9.0f %12.0f %7.1fx\n", media_srtp_profile_name(r->profile),
               r->payload, r->op, r->ns[OURS], r->ns[LIBSRTP], r->ns[LIBSRTP] / r->ns[OURS]);
    }
    printf("\n{\"bench\":\"srtp_speed\",\"packets\":%u,\"runs\":%u,\"openssl\":\"%s\","
           "\"libsrtp\":\"%s\",\"results\":[",
           packets, runs, OpenSSL_version(OPENSSL_VERSION_STRING), srtp_get_version_string());
    for (size_t i = 0; i < count; i++) {
        const struct result *r = &results[i];
        printf("%s{\"profile\":\"%s\",\"payload\":%zu,\"op\":\"%s\",\"ours_ns\":%.1f,"
               "\"libsrtp2_ns\":%.1f}",
               i ? "," : "", media_srtp_profile_name(r->profile), r->payload, r->op, r->ns[OURS],
               r->ns[LIBSRTP]);
    }
    printf("]}\n");
    srtp_shutdown();
    return 0;
}
