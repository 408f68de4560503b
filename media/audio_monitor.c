/*
 * audio_monitor.c - the silent-microphone detector (see audio_monitor.h for
 * the contracts and for when a packet is decoded).
 *
 * Runs on the media worker that owns the monitors and their shared decoder.
 * After media_audio_decoder_new() nothing is allocated: a sampled decode
 * copies a pristine decoder state over the working one and decodes into a
 * buffer of the decoder's own; nothing is logged.
 */
#include "audio_monitor.h"

#include <assert.h>
#include <opus.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_RATE 48000
/* The longest Opus packet lasts 120 ms (RFC 6716 section 3.2.5). */
#define MAX_PACKET_SAMPLES (DECODE_RATE / 1000 * 120)
/* -MEDIA_AUDIO_SILENCE_DBOV dBov as a mean square (full scale 1.0). */
#define SILENCE_MEAN_SQUARE 1e-10f
/* Equal payload lengths in a row before a VBR stream looks like an encoder
 * coding silence: its silence frames all have one size, sound's vary. Ten
 * (200 ms at 20 ms a packet), because a steady tone's sizes, a byte or two
 * apart, repeat five times by chance once in a hundred packets; the wait
 * costs no precision, since the silence is dated from the run's start. */
#define STREAK_PACKETS 10
/* Packets in a row whose RFC 6464 level says silent before one is decoded:
 * the first packets after the sound stopped still carry its last
 * milliseconds (the encoder's look-ahead), and would decode as sound. */
#define LEVEL_SILENT_PACKETS 3
/* At most one sign-triggered decode per this long, whatever the sender does. */
#define SIGN_MIN_GAP_MS 200
/* The first packet after a pause this long is decoded at once. */
#define RESUME_GAP_MS 1000
/* The shown speaking level falls by this many points a second... */
#define LEVEL_RELEASE_PER_S 100
/* ...and the latest measurement counts as 0 once no packet came for this long. */
#define LEVEL_HOLD_MS 500
/* A time long before any caller's clock, for "never" (subtracting it from a
 * real time cannot overflow). */
#define NEVER (INT64_MIN / 4)

struct media_audio_decoder {
    /* Two decoder states of opus_decoder_get_size(1) bytes: `pristine` as
     * opus_decoder_init() left it, never decoded with, and `work`, which a
     * sample overwrites with it. libopus keeps its state in one block with
     * offsets, not pointers, into itself (that is what lets callers allocate
     * it), so a copy is a decoder; it decodes bit for bit as one reset with
     * OPUS_RESET_STATE, which costs 30 us here (it calls CPUID, which traps in
     * a virtual machine) where the copy costs under 1 us. */
    OpusDecoder *pristine;
    OpusDecoder *work;
    size_t state_size;
    uint64_t count;
    float pcm[MAX_PACKET_SAMPLES];
};

const char *media_audio_state_name(enum media_audio_state s)
{
    switch (s) {
    case MEDIA_AUDIO_OK:
        return "ok";
    case MEDIA_AUDIO_SILENT:
        return "silent";
    case MEDIA_AUDIO_NO_PACKETS:
        return "no_packets";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------- */
/* The shared decoder                                                         */
/* ------------------------------------------------------------------------- */

struct media_audio_decoder *media_audio_decoder_new(void)
{
    struct media_audio_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    int size = opus_decoder_get_size(1);
    if (size <= 0)
        goto fail;
    d->state_size = (size_t)size;
    d->pristine = malloc(d->state_size);
    d->work = malloc(d->state_size);
    if (!d->pristine || !d->work || opus_decoder_init(d->pristine, DECODE_RATE, 1) != OPUS_OK)
        goto fail;
    return d;
fail:
    media_audio_decoder_free(d);
    return NULL;
}

void media_audio_decoder_free(struct media_audio_decoder *d)
{
    if (!d)
        return;
    free(d->pristine);
    free(d->work);
    free(d);
}

uint64_t media_audio_decoder_count(const struct media_audio_decoder *d)
{
    return d->count;
}

/*
 * Decodes one packet from a fresh state and returns the mean square of the
 * second half of its samples (full scale 1.0), or -1 when it does not
 * decode. Only the second half: from a fresh state the first 5-10 ms ramp
 * up (measured: -9 dB in the first 5 ms, within 2 dB after 10 ms), and
 * silence is silent throughout anyway.
 */
static float decode_mean_square(struct media_audio_decoder *d, const uint8_t *payload, size_t len)
{
    /* An empty payload would make libopus conceal a loss, not decode. */
    if (len == 0 || len > INT32_MAX)
        return -1;
    memcpy(d->work, d->pristine, d->state_size);
    d->count++;
    int n = opus_decode_float(d->work, payload, (opus_int32)len, d->pcm, MAX_PACKET_SAMPLES, 0);
    if (n <= 0)
        return -1;
    float sum = 0;
    for (int i = n / 2; i < n; i++)
        sum += d->pcm[i] * d->pcm[i];
    return sum / (float)(n - n / 2);
}

/* True for a DTX packet: a valid Opus packet too short to carry audio. */
static bool is_dtx(const uint8_t *payload, size_t len)
{
    if (len == 0 || len > MEDIA_AUDIO_DTX_MAX_BYTES)
        return false;
    const unsigned char *frames[48];
    opus_int16 sizes[48];
    return opus_packet_parse(payload, (opus_int32)len, NULL, frames, sizes, NULL) > 0;
}

/* ------------------------------------------------------------------------- */
/* The speaking level                                                         */
/* ------------------------------------------------------------------------- */

/*
 * log2 of a positive normal float, within 0.01 (0.03 dB once scaled): the
 * exponent from the bits, the mantissa's log by a quadratic through its
 * ends. The media library does not link libm, and this costs a few
 * instructions.
 */
static float approx_log2(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    int exponent = (int)((bits >> 23) & 0xff) - 127;
    bits = (bits & 0x7fffffu) | 0x3f800000u;
    float mantissa;
    memcpy(&mantissa, &bits, sizeof(mantissa));
    float f = mantissa - 1.0f; /* 0..1 */
    return (float)exponent + f * (1.34f - 0.34f * f);
}

/* Points (1..100) for a sound `below_dbov` dB under full scale. */
static unsigned level_points(float below_dbov)
{
    const float floor_db = MEDIA_AUDIO_LEVEL_FLOOR_DBOV;
    if (below_dbov <= 0)
        return 100;
    if (below_dbov >= floor_db)
        return 1;
    unsigned points = (unsigned)((floor_db - below_dbov) * 100.0f / floor_db + 0.5f);
    return points < 1 ? 1 : points;
}

/* The shown level at `now`: fallen at LEVEL_RELEASE_PER_S since it was last
 * moved, but never below the latest measurement. */
static void level_advance(struct media_audio_monitor *m, int64_t now)
{
    int64_t elapsed = now - m->level_ms;
    if (elapsed > 0) {
        /* Thousandths of a point per millisecond are points per second. */
        int64_t shown = m->level_shown - elapsed * LEVEL_RELEASE_PER_S;
        m->level_shown = shown > 0 ? (int32_t)shown : 0;
        m->level_ms = now;
    }
    int32_t latest = (int32_t)m->level_latest * 1000;
    if (m->level_shown < latest)
        m->level_shown = latest;
}

static void level_measured(struct media_audio_monitor *m, unsigned points, int64_t now)
{
    m->level_latest = points;
    level_advance(m, now);
}

/* ------------------------------------------------------------------------- */
/* Evidence                                                                   */
/* ------------------------------------------------------------------------- */

static void found_sound(struct media_audio_monitor *m, int64_t now)
{
    m->verdict = MEDIA_AUDIO_VERDICT_SOUND;
    m->last_sound_ms = now;
}

/* Silence since `onset` (unless already silent since earlier), seen in a
 * payload of `len` bytes (0 for DTX, which says nothing of frame sizes). */
static void found_silence(struct media_audio_monitor *m, int64_t onset, size_t len)
{
    if (m->verdict != MEDIA_AUDIO_VERDICT_SILENCE) {
        m->verdict = MEDIA_AUDIO_VERDICT_SILENCE;
        m->silent_since_ms = onset;
        m->silent_len_max = 0;
    }
    if (len > m->silent_len_max)
        m->silent_len_max = len;
}

static void sample(struct media_audio_monitor *m, const uint8_t *payload, size_t len, int64_t now)
{
    m->decode_pending = false;
    m->last_decode_ms = now;
    float mean_square = decode_mean_square(m->decoder, payload, len);
    if (mean_square < 0) {
        found_sound(m, now); /* cannot judge: not evidence of silence (see the header) */
        level_measured(m, 0, now);
    } else if (mean_square <= SILENCE_MEAN_SQUARE) {
        /* The silence began when the payloads took their present length, if
         * that was after the last sound heard; otherwise (a constant-size
         * stream) all that is known is that it began by now. */
        int64_t onset = m->streak_start_ms > m->last_sound_ms ? m->streak_start_ms : now;
        found_silence(m, onset, len);
        level_measured(m, 0, now);
    } else {
        found_sound(m, now);
        /* -10 log10(x) = -3.0103 log2(x) */
        level_measured(m, level_points(-3.0103f * approx_log2(mean_square)), now);
    }
}

/* ------------------------------------------------------------------------- */
/* The monitor                                                                */
/* ------------------------------------------------------------------------- */

void media_audio_monitor_init(struct media_audio_monitor *m,
                              const struct media_audio_monitor_config *cfg,
                              struct media_audio_decoder *decoder)
{
    assert(decoder);
    struct media_audio_monitor_config c = cfg ? *cfg : (struct media_audio_monitor_config){0};
    *m = (struct media_audio_monitor){
        .decoder = decoder,
        .silence_ms = c.silence_ms ? c.silence_ms : MEDIA_AUDIO_SILENCE_MS,
        .sample_interval_ms =
            c.sample_interval_ms ? c.sample_interval_ms : MEDIA_AUDIO_SAMPLE_INTERVAL_MS,
        .sample_interval_level_ms = c.sample_interval_level_ms
                                        ? c.sample_interval_level_ms
                                        : MEDIA_AUDIO_SAMPLE_INTERVAL_LEVEL_MS,
        .reported = MEDIA_AUDIO_OK,
    };
}

void media_audio_monitor_reset(struct media_audio_monitor *m, int64_t now_ms)
{
    m->armed = true;
    m->last_packet_ms = now_ms;
    m->last_decode_ms = NEVER;
    m->decode_pending = true; /* judge the first packet at once */
    m->last_len = SIZE_MAX;   /* no payload is this long: the first starts a run */
    m->streak_packets = 0;
    m->streak_start_ms = NEVER;
    m->level_said_silent = -1;
    m->level_silent_packets = 0;
    m->verdict = MEDIA_AUDIO_VERDICT_NONE;
    m->last_sound_ms = NEVER;
    m->silent_since_ms = NEVER;
    m->silent_len_max = 0;
    m->reported = MEDIA_AUDIO_OK;
    m->level_latest = 0;
    m->level_shown = 0;
    m->level_ms = now_ms;
}

void media_audio_monitor_disarm(struct media_audio_monitor *m)
{
    m->armed = false;
    m->reported = MEDIA_AUDIO_OK;
    m->level_latest = 0;
    m->level_shown = 0;
}

void media_audio_monitor_packet(struct media_audio_monitor *m, const uint8_t *payload, size_t len,
                                int audio_level, int64_t now_ms)
{
    assert(m->decoder);
    assert(payload || len == 0);
    if (!m->armed)
        return;
    if (now_ms - m->last_packet_ms >= RESUME_GAP_MS)
        m->decode_pending = true;
    m->last_packet_ms = now_ms;

    if (is_dtx(payload, len)) {
        found_silence(m, now_ms, 0);
        level_measured(m, 0, now_ms);
        return;
    }

    if (len == m->last_len) {
        if (m->streak_packets <= STREAK_PACKETS) /* stops counting once past it */
            m->streak_packets++;
    } else {
        m->last_len = len;
        m->streak_packets = 1;
        m->streak_start_ms = now_ms;
    }
    bool silent = m->verdict == MEDIA_AUDIO_VERDICT_SILENCE;
    if (m->verdict == MEDIA_AUDIO_VERDICT_SOUND && m->streak_packets == STREAK_PACKETS)
        m->decode_pending = true;
    if (silent && len > m->silent_len_max)
        m->decode_pending = true;

    /* The level wakes the decoder only on its own transitions, so a sender
     * whose level keeps disagreeing with the decoder costs one decode, not
     * one per packet. */
    bool has_level = audio_level >= 0 && audio_level <= 127;
    if (has_level) {
        bool level_silent = audio_level >= MEDIA_AUDIO_SILENCE_DBOV;
        if (level_silent) {
            if (m->level_silent_packets < UINT8_MAX)
                m->level_silent_packets++;
            if (m->level_silent_packets == LEVEL_SILENT_PACKETS && !silent)
                m->decode_pending = true;
        } else {
            if (m->level_said_silent != 0 && silent)
                m->decode_pending = true;
            m->level_silent_packets = 0;
        }
        m->level_said_silent = (int8_t)level_silent;
        level_measured(m, (silent || level_silent) ? 0 : level_points((float)audio_level), now_ms);
    }

    int64_t since = now_ms - m->last_decode_ms;
    int64_t interval = has_level ? m->sample_interval_level_ms : m->sample_interval_ms;
    if (since >= interval || (m->decode_pending && since >= SIGN_MIN_GAP_MS))
        sample(m, payload, len, now_ms);
}

enum media_audio_state media_audio_monitor_check(struct media_audio_monitor *m, int64_t now_ms,
                                                 bool *changed)
{
    enum media_audio_state state = MEDIA_AUDIO_OK;
    if (m->armed) {
        if (now_ms - m->last_packet_ms >= m->silence_ms)
            state = MEDIA_AUDIO_NO_PACKETS;
        else if (m->verdict == MEDIA_AUDIO_VERDICT_SILENCE &&
                 now_ms - m->silent_since_ms >= m->silence_ms)
            state = MEDIA_AUDIO_SILENT;
        if (now_ms - m->last_packet_ms >= LEVEL_HOLD_MS)
            m->level_latest = 0;
        level_advance(m, now_ms);
    }
    if (changed)
        *changed = state != m->reported;
    m->reported = state;
    return state;
}

unsigned media_audio_monitor_level(const struct media_audio_monitor *m)
{
    /* Rounded up, so a level only reads 0 once it has fallen all the way. */
    return (unsigned)((m->level_shown + 999) / 1000);
}
