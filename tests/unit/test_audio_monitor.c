/*
 * test_audio_monitor.c - the silent-microphone detector on real Opus from
 * libopus's encoder (48 kHz mono, 20 ms frames, VOIP, 32 kbit/s, in-band FEC
 * as browsers send it; DTX and CBR where said): a tone, digital silence, quiet
 * noise, pauses, garbage, with and without RFC 6464 levels, on a simulated
 * clock (50 packets a second, a check after every packet). The cost test
 * prints nanoseconds per packet and asserts nothing about time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <opus.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "audio_monitor.h"

#define FRAME_MS      20
#define FRAME_SAMPLES 960
#define MAX_PAYLOAD   1500
#define NO_LEVEL      (-1)

/* cos and sin of 2 pi 440 / 48000: a 440 Hz tone by the recurrence
 * s[n] = 2 cos(w) s[n-1] - s[n-2], without libm. */
#define TONE_COS       0.9983418166140283
#define TONE_SIN       0.057564026959567284
#define TONE_AMPLITUDE 8000.0 /* -12 dBFS peak */

/* Uniform white noise of amplitude A has an RMS of A / sqrt(3): these give
 * an RMS of -50, -60 and -80 dB under 16-bit full scale. */
#define NOISE_50_DBFS 179.48
#define NOISE_60_DBFS 56.756
#define NOISE_80_DBFS 5.6756

enum signal { SIG_TONE, SIG_ZEROS, SIG_NOISE_50, SIG_NOISE_60, SIG_NOISE_80, SIG_GARBAGE };

/* One monitor fed by one encoder, and what the checks saw during the last
 * segment played. */
struct run {
    struct media_audio_decoder *decoder;
    struct media_audio_monitor m;
    OpusEncoder *enc;
    int64_t now;
    double tone[2]; /* the last two samples of the tone */
    uint32_t rng;

    int64_t segment_start;
    int changes;
    int64_t first_seen[3]; /* per state, ms after the segment's start; -1 never */
    unsigned min_level, max_level;
    int dtx_packets;
};

static uint32_t next_random(uint32_t *state)
{
    uint32_t x = *state; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static OpusEncoder *encoder_new(bool dtx, bool cbr)
{
    int err = 0;
    OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    assert_non_null(enc);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000)), OPUS_OK);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(9)), OPUS_OK);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(1)), OPUS_OK);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(10)), OPUS_OK);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_DTX(dtx)), OPUS_OK);
    assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_VBR(!cbr)), OPUS_OK);
    return enc;
}

static void run_start(struct run *r, const struct media_audio_monitor_config *cfg, bool dtx,
                      bool cbr)
{
    memset(r, 0, sizeof(*r));
    r->decoder = media_audio_decoder_new();
    assert_non_null(r->decoder);
    media_audio_monitor_init(&r->m, cfg, r->decoder);
    r->enc = encoder_new(dtx, cbr);
    r->now = 1000000; /* any monotonic clock */
    r->tone[0] = -TONE_AMPLITUDE * TONE_SIN;
    r->rng = 0x12345678;
    media_audio_monitor_reset(&r->m, r->now);
}

static void run_end(struct run *r)
{
    opus_encoder_destroy(r->enc);
    media_audio_decoder_free(r->decoder);
}

static void segment_begin(struct run *r)
{
    r->segment_start = r->now;
    r->changes = 0;
    for (int i = 0; i < 3; i++)
        r->first_seen[i] = -1;
    r->min_level = 100;
    r->max_level = 0;
    r->dtx_packets = 0;
}

static void observe(struct run *r)
{
    bool changed = false;
    enum media_audio_state s = media_audio_monitor_check(&r->m, r->now, &changed);
    r->changes += changed;
    if (r->first_seen[s] < 0)
        r->first_seen[s] = r->now - r->segment_start;
    unsigned level = media_audio_monitor_level(&r->m);
    if (level < r->min_level)
        r->min_level = level;
    if (level > r->max_level)
        r->max_level = level;
}

/* One 20 ms frame of `sig` encoded into `out`; returns its length. */
static int encode_frame(struct run *r, enum signal sig, uint8_t *out)
{
    if (sig == SIG_GARBAGE) {
        int len = (int)(next_random(&r->rng) % (MAX_PAYLOAD + 1));
        for (int i = 0; i < len; i++)
            out[i] = (uint8_t)next_random(&r->rng);
        return len;
    }
    opus_int16 pcm[FRAME_SAMPLES];
    for (int i = 0; i < FRAME_SAMPLES; i++) {
        double x = 0;
        double noise = (double)(int32_t)next_random(&r->rng) / 2147483648.0; /* -1..1 */
        switch (sig) {
        case SIG_TONE:
            x = 2 * TONE_COS * r->tone[1] - r->tone[0];
            r->tone[0] = r->tone[1];
            r->tone[1] = x;
            break;
        case SIG_NOISE_50:
            x = noise * NOISE_50_DBFS;
            break;
        case SIG_NOISE_60:
            x = noise * NOISE_60_DBFS;
            break;
        case SIG_NOISE_80:
            x = noise * NOISE_80_DBFS;
            break;
        default:
            break;
        }
        pcm[i] = (opus_int16)(x < 0 ? x - 0.5 : x + 0.5);
    }
    int len = opus_encode(r->enc, pcm, FRAME_SAMPLES, out, MAX_PAYLOAD);
    assert_true(len > 0);
    return len;
}

/* Plays `ms` of `sig`, one packet every 20 ms with RFC 6464 `level`,
 * checking after each. */
static void play(struct run *r, enum signal sig, int ms, int level)
{
    segment_begin(r);
    for (int t = 0; t < ms; t += FRAME_MS) {
        uint8_t payload[MAX_PAYLOAD];
        int len = encode_frame(r, sig, payload);
        r->dtx_packets += len > 0 && len <= MEDIA_AUDIO_DTX_MAX_BYTES;
        media_audio_monitor_packet(&r->m, payload, (size_t)len, level, r->now);
        observe(r);
        r->now += FRAME_MS;
    }
}

/* `ms` without packets, checking every 20 ms. */
static void pause_for(struct run *r, int ms)
{
    segment_begin(r);
    for (int t = 0; t < ms; t += FRAME_MS) {
        observe(r);
        r->now += FRAME_MS;
    }
}

/* ------------------------------------------------------------------------- */

static void test_tone_stays_ok(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_TONE, 10000, NO_LEVEL);
    assert_int_equal(r.changes, 0);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_NO_PACKETS], -1);
    assert_true(r.min_level > 0); /* from the first packet on */
    printf("tone: level %u..%u, %llu decodes in 10 s\n", r.min_level, r.max_level,
           (unsigned long long)media_audio_decoder_count(r.decoder));
    run_end(&r);
}

/* The tone, digital silence, the tone again: reported once, between 5 and
 * 6 s into the silence, and cleared at the first sampled packet of sound. */
static void silence_then_tone(bool dtx)
{
    struct run r;
    run_start(&r, NULL, dtx, false);
    play(&r, SIG_TONE, 2000, NO_LEVEL);
    assert_int_equal(r.changes, 0);

    play(&r, SIG_ZEROS, 6000, NO_LEVEL);
    printf("%s: silent reported %lld ms into the silence\n", dtx ? "dtx" : "no dtx",
           (long long)r.first_seen[MEDIA_AUDIO_SILENT]);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] >= 5000);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] < 6000);
    assert_int_equal(r.changes, 1);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_NO_PACKETS], -1);
    assert_int_equal(media_audio_monitor_level(&r.m), 0);
    if (dtx)
        assert_true(r.dtx_packets > 100);

    play(&r, SIG_TONE, 1000, NO_LEVEL);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_OK], 0); /* the first packet is decoded */
    assert_int_equal(r.changes, 1);
    assert_true(media_audio_monitor_level(&r.m) > 0);
    printf("%s: %llu decodes in 9 s\n", dtx ? "dtx" : "no dtx",
           (unsigned long long)media_audio_decoder_count(r.decoder));
    run_end(&r);
}

static void test_silence_reported_after_5s(void **state)
{
    (void)state;
    silence_then_tone(false);
}

static void test_silence_with_dtx(void **state)
{
    (void)state;
    silence_then_tone(true);
}

static void test_no_packets(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_TONE, 1000, NO_LEVEL);
    int64_t last_packet = r.now - FRAME_MS;

    pause_for(&r, 6000);
    assert_int_equal(r.segment_start + r.first_seen[MEDIA_AUDIO_NO_PACKETS], last_packet + 5000);
    assert_int_equal(r.changes, 1);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    assert_int_equal(media_audio_monitor_level(&r.m), 0);

    play(&r, SIG_TONE, 1000, NO_LEVEL);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_OK], 0);
    assert_int_equal(r.changes, 1);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    run_end(&r);
}

/* Armed with no audio at all: NO_PACKETS five seconds after arming. */
static void test_no_packets_from_the_start(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    pause_for(&r, 6000);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_NO_PACKETS], 5000);
    assert_int_equal(r.changes, 1);
    run_end(&r);
}

static void test_quiet_noise_stays_ok(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_NOISE_50, 10000, NO_LEVEL);
    assert_int_equal(r.changes, 0);
    assert_true(r.min_level > 0);
    printf("noise at -50 dBFS: level %u..%u\n", r.min_level, r.max_level);

    /* Far quieter than a live microphone's own noise, still not silence. */
    play(&r, SIG_NOISE_80, 10000, NO_LEVEL);
    assert_int_equal(r.changes, 0);
    assert_true(r.min_level > 0);
    run_end(&r);
}

/* A patient listening in a quiet room, with a sender using DTX: the encoder
 * stops sending audio but every 400 ms a comfort-noise frame carries the
 * room's noise, which the monitor decodes as sound. */
static void test_quiet_room_with_dtx_stays_ok(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, true, false);
    play(&r, SIG_TONE, 1000, NO_LEVEL);
    play(&r, SIG_NOISE_60, 10000, NO_LEVEL);
    assert_true(r.dtx_packets > 100); /* DTX did start: the test means something */
    assert_int_equal(r.changes, 0);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    run_end(&r);
}

/* Payloads that do not decode are not evidence of silence: they end a
 * silence in progress, and a stream of them is never reported silent. */
static void test_garbage_is_not_silence(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_ZEROS, 3000, NO_LEVEL);
    play(&r, SIG_GARBAGE, 6000, NO_LEVEL);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    assert_int_equal(r.changes, 0);
    run_end(&r);

    /* Every length from 0 to 1500, every packet decoded. */
    struct media_audio_monitor_config every_packet = {.sample_interval_ms = 1,
                                                      .sample_interval_level_ms = 1};
    run_start(&r, &every_packet, false, false);
    segment_begin(&r);
    uint8_t payload[MAX_PAYLOAD];
    for (size_t len = 0; len <= MAX_PAYLOAD; len++) {
        for (size_t i = 0; i < len; i++)
            payload[i] = (uint8_t)next_random(&r.rng);
        media_audio_monitor_packet(&r.m, payload, len, (int)(len % 130) - 1, r.now);
        observe(&r);
        r.now += FRAME_MS;
    }
    /* The empty payload, with and without a pointer; 1500 bytes of 0xFF. */
    media_audio_monitor_packet(&r.m, NULL, 0, NO_LEVEL, r.now);
    media_audio_monitor_packet(&r.m, payload, 0, NO_LEVEL, r.now + 1);
    memset(payload, 0xFF, sizeof(payload));
    media_audio_monitor_packet(&r.m, payload, sizeof(payload), NO_LEVEL, r.now + 2);
    observe(&r);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_NO_PACKETS], -1);
    run_end(&r);
}

/* A 1-byte packet with a valid TOC is DTX (silence); one whose TOC needs
 * more bytes is garbage (not silence). */
static void test_dtx_packets_alone(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_TONE, 1000, NO_LEVEL);
    segment_begin(&r);
    const uint8_t dtx_toc[] = {0x78}; /* hybrid fullband 20 ms, one empty frame */
    for (int t = 0; t < 6000; t += FRAME_MS) {
        media_audio_monitor_packet(&r.m, dtx_toc, sizeof(dtx_toc), NO_LEVEL, r.now);
        observe(&r);
        r.now += FRAME_MS;
    }
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], 5000);

    segment_begin(&r);
    const uint8_t truncated[] = {0x7A}; /* code 2 needs a length byte */
    for (int t = 0; t < 6000; t += FRAME_MS) {
        media_audio_monitor_packet(&r.m, truncated, sizeof(truncated), NO_LEVEL, r.now);
        observe(&r);
        r.now += FRAME_MS;
    }
    assert_int_equal(r.first_seen[MEDIA_AUDIO_OK], 0);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);
    run_end(&r);
}

/* The RFC 6464 level wakes the decoder but does not decide: a tone said to
 * be silent stays OK, silence said to be loud is reported. */
static void test_audio_level_never_decides(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_TONE, 8000, 127);
    assert_int_equal(r.changes, 0);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_SILENT], -1);

    play(&r, SIG_ZEROS, 6000, 20);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] >= 5000);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] < 6000);
    assert_int_equal(r.changes, 1);
    assert_int_equal(media_audio_monitor_level(&r.m), 0); /* silence shows as 0 */
    run_end(&r);
}

/* With truthful levels, as browsers send them: the speaking level follows
 * them, silence is found at its first packet, and few packets are decoded. */
static void test_audio_level_cues(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    play(&r, SIG_TONE, 4000, 15);
    assert_int_equal(r.changes, 0);
    /* 15 dB under full scale, with the floor at 60 dB: 75 (the decodes, which
     * measure the same tone, may say a point or two more or less). */
    assert_true(r.min_level >= 70 && r.max_level <= 80);
    assert_int_equal(media_audio_monitor_level(&r.m), 75);

    play(&r, SIG_ZEROS, 6000, 127);
    printf("levels: silent reported %lld ms into the silence\n",
           (long long)r.first_seen[MEDIA_AUDIO_SILENT]);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] >= 5000);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] <= 5100);
    assert_int_equal(r.changes, 1);
    assert_int_equal(r.min_level, 0);

    play(&r, SIG_TONE, 1000, 15);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_OK], 0);
    assert_int_equal(r.changes, 1);
    uint64_t decodes = media_audio_decoder_count(r.decoder);
    printf("levels: %llu decodes in 11 s (550 packets)\n", (unsigned long long)decodes);
    assert_true(decodes <= 10);
    run_end(&r);
}

/* Constant bit rate and no level: nothing but the periodic decode tells
 * silence from sound, so silence is reported up to one sample interval
 * late, and never early. */
static void test_cbr_without_level(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, true);
    play(&r, SIG_TONE, 3000, NO_LEVEL);
    assert_int_equal(r.changes, 0);

    play(&r, SIG_ZEROS, 8000, NO_LEVEL);
    printf("cbr: silent reported %lld ms into the silence\n",
           (long long)r.first_seen[MEDIA_AUDIO_SILENT]);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] >= 5000);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] <= 5000 + MEDIA_AUDIO_SAMPLE_INTERVAL_MS);
    assert_int_equal(r.changes, 1);

    play(&r, SIG_TONE, 2000, NO_LEVEL);
    assert_true(r.first_seen[MEDIA_AUDIO_OK] >= 0);
    assert_true(r.first_seen[MEDIA_AUDIO_OK] <= MEDIA_AUDIO_SAMPLE_INTERVAL_MS);
    assert_int_equal(r.changes, 1);
    run_end(&r);
}

static void test_disarmed_and_reset(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    media_audio_monitor_disarm(&r.m);
    play(&r, SIG_ZEROS, 3000, NO_LEVEL);
    pause_for(&r, 7000);
    assert_int_equal(r.changes, 0);
    assert_int_equal(r.first_seen[MEDIA_AUDIO_OK], 0);
    assert_int_equal(r.max_level, 0);
    assert_int_equal(media_audio_decoder_count(r.decoder), 0);

    /* Armed again: the clocks start now, not at the last packet. */
    media_audio_monitor_reset(&r.m, r.now);
    pause_for(&r, 4900);
    assert_int_equal(r.changes, 0);
    play(&r, SIG_ZEROS, 6000, NO_LEVEL);
    assert_int_equal(r.changes, 1);
    assert_true(r.first_seen[MEDIA_AUDIO_SILENT] >= 5000);

    /* Disarming clears SILENT without reporting a change. */
    media_audio_monitor_disarm(&r.m);
    bool changed = true;
    assert_int_equal(media_audio_monitor_check(&r.m, r.now, &changed), MEDIA_AUDIO_OK);
    assert_false(changed);
    assert_int_equal(media_audio_monitor_level(&r.m), 0);
    run_end(&r);
}

/* Two monitors on one decoder judge each their own stream. */
static void test_shared_decoder(void **state)
{
    (void)state;
    struct run r;
    run_start(&r, NULL, false, false);
    struct media_audio_monitor other;
    media_audio_monitor_init(&other, NULL, r.decoder);
    media_audio_monitor_reset(&other, r.now);
    OpusEncoder *other_enc = encoder_new(false, false);
    segment_begin(&r);
    int other_changes = 0;
    for (int t = 0; t < 7000; t += FRAME_MS) {
        uint8_t payload[MAX_PAYLOAD];
        int len = encode_frame(&r, SIG_TONE, payload);
        media_audio_monitor_packet(&r.m, payload, (size_t)len, NO_LEVEL, r.now);
        opus_int16 zeros[FRAME_SAMPLES] = {0};
        len = opus_encode(other_enc, zeros, FRAME_SAMPLES, payload, MAX_PAYLOAD);
        assert_true(len > 0);
        media_audio_monitor_packet(&other, payload, (size_t)len, NO_LEVEL, r.now);
        observe(&r);
        bool changed = false;
        media_audio_monitor_check(&other, r.now, &changed);
        other_changes += changed;
        r.now += FRAME_MS;
    }
    assert_int_equal(r.changes, 0);
    assert_int_equal(media_audio_monitor_check(&other, r.now, NULL), MEDIA_AUDIO_SILENT);
    assert_int_equal(other_changes, 1);
    opus_encoder_destroy(other_enc);
    run_end(&r);
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(media_audio_state_name(MEDIA_AUDIO_OK), "ok");
    assert_string_equal(media_audio_state_name(MEDIA_AUDIO_SILENT), "silent");
    assert_string_equal(media_audio_state_name(MEDIA_AUDIO_NO_PACKETS), "no_packets");
    assert_string_equal(media_audio_state_name((enum media_audio_state)42), "unknown");
}

/* ------------------------------------------------------------------------- */
/* Cost: printed, not asserted                                                */
/* ------------------------------------------------------------------------- */

#define COST_PACKETS 10000

struct encoded {
    uint8_t payload[COST_PACKETS][160];
    int len[COST_PACKETS];
};

static double monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Feeds the 10 000 packets at 50 a second, checking every 5th (100 ms); the
 * best of three runs, per packet. */
static void cost_case(const char *name, const struct encoded *e,
                      const struct media_audio_monitor_config *cfg, int level)
{
    struct media_audio_decoder *d = media_audio_decoder_new();
    assert_non_null(d);
    double best = 0;
    uint64_t decodes = 0;
    for (int round = 0; round < 3; round++) {
        struct media_audio_monitor m;
        media_audio_monitor_init(&m, cfg, d);
        int64_t now = 0;
        media_audio_monitor_reset(&m, now);
        uint64_t before = media_audio_decoder_count(d);
        double start = monotonic_ns();
        for (int i = 0; i < COST_PACKETS; i++, now += FRAME_MS) {
            media_audio_monitor_packet(&m, e->payload[i], (size_t)e->len[i], level, now);
            if (i % 5 == 0)
                media_audio_monitor_check(&m, now, NULL);
        }
        double ns = (monotonic_ns() - start) / COST_PACKETS;
        if (round == 0 || ns < best)
            best = ns;
        decodes = media_audio_decoder_count(d) - before;
    }
    printf("cost %-44s %8.0f ns/packet, %5llu decodes per %d packets\n", name, best,
           (unsigned long long)decodes, COST_PACKETS);
    media_audio_decoder_free(d);
}

static void test_cost(void **state)
{
    (void)state;
    struct encoded *tone = malloc(sizeof(*tone));
    struct encoded *speech = malloc(sizeof(*speech));
    assert_non_null(tone);
    assert_non_null(speech);
    struct run r;
    run_start(&r, NULL, false, false);
    for (int i = 0; i < COST_PACKETS; i++) {
        uint8_t payload[MAX_PAYLOAD];
        int len = encode_frame(&r, SIG_TONE, payload);
        assert_true(len <= (int)sizeof(tone->payload[i]));
        memcpy(tone->payload[i], payload, (size_t)len);
        tone->len[i] = len;
    }
    /* Speech-like: the tone and noise, in 300 ms syllables and pauses. */
    for (int i = 0; i < COST_PACKETS; i++) {
        uint8_t payload[MAX_PAYLOAD];
        int len = encode_frame(&r, (i / 15) % 3 == 2 ? SIG_NOISE_50 : SIG_TONE, payload);
        assert_true(len <= (int)sizeof(speech->payload[i]));
        memcpy(speech->payload[i], payload, (size_t)len);
        speech->len[i] = len;
    }
    run_end(&r);

    const struct media_audio_monitor_config every_packet = {.sample_interval_ms = 1,
                                                            .sample_interval_level_ms = 1};
    const struct media_audio_monitor_config every_200ms = {.sample_interval_ms = 200,
                                                           .sample_interval_level_ms = 200};
    const struct media_audio_monitor_config hourly = {.sample_interval_ms = 3600000,
                                                      .sample_interval_level_ms = 3600000};
    cost_case("tone, with level, bookkeeping only (1 decode)", tone, &hourly, 15);
    cost_case("tone, with RFC 6464 level (defaults)", tone, NULL, 15);
    cost_case("tone, without level (defaults)", tone, NULL, NO_LEVEL);
    cost_case("speech-like, with level (defaults)", speech, NULL, 15);
    cost_case("speech-like, without level (defaults)", speech, NULL, NO_LEVEL);
    cost_case("tone, a decode every 200 ms", tone, &every_200ms, NO_LEVEL);
    cost_case("tone, every packet decoded", tone, &every_packet, NO_LEVEL);
    free(tone);
    free(speech);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tone_stays_ok),
        cmocka_unit_test(test_silence_reported_after_5s),
        cmocka_unit_test(test_silence_with_dtx),
        cmocka_unit_test(test_no_packets),
        cmocka_unit_test(test_no_packets_from_the_start),
        cmocka_unit_test(test_quiet_noise_stays_ok),
        cmocka_unit_test(test_quiet_room_with_dtx_stays_ok),
        cmocka_unit_test(test_garbage_is_not_silence),
        cmocka_unit_test(test_dtx_packets_alone),
        cmocka_unit_test(test_audio_level_never_decides),
        cmocka_unit_test(test_audio_level_cues),
        cmocka_unit_test(test_cbr_without_level),
        cmocka_unit_test(test_disarmed_and_reset),
        cmocka_unit_test(test_shared_decoder),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
