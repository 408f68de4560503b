/*
 * audio_monitor.h - the silent-microphone detector: watches one participant's
 * incoming Opus audio while a consultation runs, says when it has been
 * digital silence, or absent, for silence_ms (5 s by default), and measures a
 * speaking level for the doctor's screen. Private to media/: the worker calls
 * it from its packet path, one monitor per leg's incoming audio; telling the
 * two sides is the worker's business.
 *
 * How it decides. Only libopus says "silent": a sampled packet is decoded
 * (48 kHz, mono) and it is silence when the mean square of its decoded
 * samples is at or below -MEDIA_AUDIO_SILENCE_DBOV dBov. A decode costs
 * 20-40 us per 20 ms packet, over ten times what relaying the packet costs,
 * so decoding every 100-200 ms would cost more than the relay itself.
 * The monitor therefore decodes a packet only
 *  - when a cheap sign says the verdict may be out of date: the RFC 6464
 *    level crossed the silence threshold; the payload length stayed the same
 *    for several packets (what a VBR encoder does on digital silence); while
 *    silent, a packet longer than any decoded as silence arrived (sound costs
 *    bytes), which is also how the first frame after a DTX pause is caught;
 *    packets came back after a pause; the monitor was just armed; and
 *  - periodically: every sample_interval_ms when packets carry no RFC 6464
 *    level, every sample_interval_level_ms when they do (browsers send it,
 *    and it shows every change, so this decode is only a safety net).
 * Sign-triggered decodes are at most one per 200 ms. DTX packets (at most
 * MEDIA_AUDIO_DTX_MAX_BYTES bytes: no audio in them) count as silence
 * without a decode.
 *
 * The RFC 6464 level, when the caller has it, wakes the decoder and drives
 * the speaking level between decodes (it is the sender's own measurement of
 * the same quantity), but never decides silence on its own.
 *
 * Every sampled decode starts from a fresh decoder state, so its verdict does
 * not depend on a packet decoded seconds earlier (with a stale state, SILK
 * limits how fast the gain may fall and digital silence decodes at about
 * -60 dBFS). That is also why the monitors of one worker share one decoder,
 * struct media_audio_decoder: it keeps no state between samples.
 *
 * Nothing here allocates, locks or logs after media_audio_decoder_new().
 *
 * Thread: a decoder and the monitors using it belong to one media worker.
 */
#ifndef TABIB_MEDIA_AUDIO_MONITOR_H
#define TABIB_MEDIA_AUDIO_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Digital silence: a decoded mean square at or below -100 dBov (full scale
 * 1.0; a third of one 16-bit step RMS). Measured with libopus 1.3 at 8 to
 * 64 kbit/s: digital silence decodes to -106 dBov (SILK narrowband) to
 * -112 dBov (wider bands), or exact zeros (CELT's silence flag); white
 * noise at -80 dBFS, quieter than any live microphone's own noise, decodes
 * to -93 dBov or louder. The same number read as an RFC 6464 level (-dBov,
 * 0..127) is where the sender's level says "silent" (browsers send 127 for
 * digital silence).
 */
#define MEDIA_AUDIO_SILENCE_DBOV 100

/* A packet of at most this many bytes (the TOC and at most one byte, which
 * libopus decodes as a lost frame) carries no audio: DTX, as libwebrtc
 * counts it too. */
#define MEDIA_AUDIO_DTX_MAX_BYTES 2

/* The speaking level: 100 at 0 dBov down to 1 at this many dB below (and for
 * any quieter sound that is not silence); 0 is silence. */
#define MEDIA_AUDIO_LEVEL_FLOOR_DBOV 60

/* Defaults for a zero field of struct media_audio_monitor_config. */
#define MEDIA_AUDIO_SILENCE_MS               5000
#define MEDIA_AUDIO_SAMPLE_INTERVAL_MS       1000
#define MEDIA_AUDIO_SAMPLE_INTERVAL_LEVEL_MS 10000

enum media_audio_state {
    MEDIA_AUDIO_OK = 0,     /* sound, or not enough evidence of silence yet */
    MEDIA_AUDIO_SILENT,     /* decoded digital silence (or DTX) for at least silence_ms */
    MEDIA_AUDIO_NO_PACKETS, /* no audio packet for at least silence_ms */
};

/* The state's name for signalling and logs: "ok", "silent", "no_packets". */
const char *media_audio_state_name(enum media_audio_state s);

/* ------------------------------------------------------------------------- */
/* The shared decoder                                                         */
/* ------------------------------------------------------------------------- */

/* One libopus decoder (48 kHz, mono) and its output buffer, about 60 KB. */
struct media_audio_decoder;

/* Returns a new decoder (free with media_audio_decoder_free), or NULL when
 * out of memory. */
struct media_audio_decoder *media_audio_decoder_new(void);

/* Frees `d`; NULL does nothing. No monitor may use it afterwards. */
void media_audio_decoder_free(struct media_audio_decoder *d);

/* How many packets `d` has tried to decode, for the metrics and the tests. */
uint64_t media_audio_decoder_count(const struct media_audio_decoder *d);

/* ------------------------------------------------------------------------- */
/* The monitor                                                                */
/* ------------------------------------------------------------------------- */

/* Settings; a zero field takes the default above. */
struct media_audio_monitor_config {
    uint32_t silence_ms;               /* silence or absence this long is reported */
    uint32_t sample_interval_ms;       /* periodic decode when packets carry no RFC 6464 level */
    uint32_t sample_interval_level_ms; /* periodic decode when they do */
};

/*
 * One participant's incoming audio. A value type with no resources of its
 * own (embed it in the leg); its fields are private: use the functions.
 * Times are the caller's monotonic clock in milliseconds.
 */
struct media_audio_monitor {
    struct media_audio_decoder *decoder; /* borrowed */
    int64_t silence_ms;
    int64_t sample_interval_ms;
    int64_t sample_interval_level_ms;
    bool armed;

    int64_t last_packet_ms;
    int64_t last_decode_ms;
    bool decode_pending; /* a sign asked for a decode */

    size_t last_len; /* payload lengths: the current run of equal ones */
    unsigned streak_packets;
    int64_t streak_start_ms;
    int8_t level_said_silent;     /* the last RFC 6464 level was silent: 1, 0, or -1 unknown */
    uint8_t level_silent_packets; /* how many in a row said so */

    enum {
        MEDIA_AUDIO_VERDICT_NONE,
        MEDIA_AUDIO_VERDICT_SOUND,
        MEDIA_AUDIO_VERDICT_SILENCE
    } verdict;
    int64_t last_sound_ms;   /* the last decode that did not find silence */
    int64_t silent_since_ms; /* when verdict is SILENCE: since when */
    size_t silent_len_max;   /* the longest payload decoded as silence since then */

    enum media_audio_state reported; /* what the last check returned */
    unsigned level_latest;           /* the latest measurement, 0..100 */
    int32_t level_shown;             /* the smoothed level, in thousandths */
    int64_t level_ms;                /* when level_shown was last moved */
};

/*
 * Sets up `m`, disarmed, to decode with `decoder` (borrowed: it must outlive
 * `m` and belong to the same thread). `cfg` may be NULL for the defaults.
 */
void media_audio_monitor_init(struct media_audio_monitor *m,
                              const struct media_audio_monitor_config *cfg,
                              struct media_audio_decoder *decoder);

/*
 * Arms `m` at `now_ms` (the consultation started, or restarted): forgets
 * everything seen so far and starts the clocks, so no audio packet within
 * silence_ms from now is NO_PACKETS. The state becomes OK without a change
 * being reported; the caller clears whatever it showed before.
 */
void media_audio_monitor_reset(struct media_audio_monitor *m, int64_t now_ms);

/* Stops watching (the consultation ended): packets are ignored and checks say
 * OK, without a change being reported. media_audio_monitor_reset() re-arms. */
void media_audio_monitor_disarm(struct media_audio_monitor *m);

/*
 * Takes one incoming audio RTP packet at `now_ms`: its Opus payload
 * (decrypted, without RTP header or padding; borrowed for the call) and
 * its RFC 6464 level in -dBov, 0..127, or -1 when the packet has none. Any
 * bytes are accepted. Decodes the payload only when a sample is due (see
 * the top of this file); a payload that does not decode (empty, malformed)
 * counts as evidence of sound, not of silence: it proves the sender is
 * sending something the monitor cannot judge, and a false "your microphone
 * is silent" is worse than a late one. Does nothing while disarmed.
 */
void media_audio_monitor_packet(struct media_audio_monitor *m, const uint8_t *payload, size_t len,
                                int audio_level, int64_t now_ms);

/*
 * The state at `now_ms`, for the caller to call every 50 ms to 1 s:
 * NO_PACKETS when no packet came for silence_ms, else SILENT when decoded
 * silence (or DTX) has lasted silence_ms with no decoded sound since, else
 * OK. The way back is immediate: one decoded packet with sound, or one
 * packet after NO_PACKETS, makes it OK again (or SILENT, if the packets
 * that resume are silence that began long ago). `*changed` (may be NULL)
 * is set when the state differs from what the previous call returned.
 * Also lets the speaking level fall when no packet comes.
 */
enum media_audio_state media_audio_monitor_check(struct media_audio_monitor *m, int64_t now_ms,
                                                 bool *changed);

/*
 * The speaking level, 0..100, for the doctor's screen: from the RFC 6464
 * level when packets carry it, else from the sampled decodes; rises at once,
 * falls by at most 100 points a second; 0 means silence or no audio.
 */
unsigned media_audio_monitor_level(const struct media_audio_monitor *m);

#endif
