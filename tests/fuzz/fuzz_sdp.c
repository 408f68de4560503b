/*
 * fuzz_sdp.c - SDP offers from the network. Any input is parsed; when it is
 * accepted, the answer must be written, must read back with our own parser
 * (as an answer) and must keep the offer's m-lines, mids and chosen codecs.
 */
#include "fuzz_check.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct media_sdp_answer_params answer_params = {
    .ice_ufrag = "Tbb1",
    .ice_pwd = "a1b2c3d4e5f6a7b8c9d0e1f2",
    .fingerprint_sha256 = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
                           0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                           0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
    .public_ip = "203.0.113.7",
    .port = 40000,
    .session_id = 4242424242424242424u,
    .session_version = 2,
    .cname = "tabib",
    .stream_id = "tabib-stream",
    .audio_track_id = "tabib-audio",
    .video_track_id = "tabib-video",
    .audio_ssrc = 1111,
    .video_ssrc = 2222,
    .video_rtx_ssrc = 3333,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The structs are large (see sdp.h): heap, not the fuzzer's stack. */
    struct media_sdp_offer *offer = malloc(sizeof(*offer));
    struct media_sdp_offer *back = malloc(sizeof(*back));
    char *answer = malloc(MEDIA_SDP_MAX_SIZE);
    struct media_sdp_error err;
    FUZZ_CHECK(offer && back && answer);

    int rc = media_sdp_parse((const char *)data, size, MEDIA_SDP_OFFER, offer, &err);
    FUZZ_CHECK(rc == err.code && rc <= 0);
    FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
    if (rc != 0) {
        FUZZ_CHECK(err.message[0] != '\0');
        goto done;
    }
    FUZZ_CHECK(offer->audio >= 0 || offer->video >= 0);

    int len = media_sdp_write_answer(offer, &answer_params, answer, MEDIA_SDP_MAX_SIZE);
    FUZZ_CHECK(len > 0 && (size_t)len < MEDIA_SDP_MAX_SIZE && strlen(answer) == (size_t)len);

    rc = media_sdp_parse(answer, (size_t)len, MEDIA_SDP_ANSWER, back, &err);
    if (rc != 0)
        fprintf(stderr, "answer refused: %s\n%s", err.message, answer);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(back->ice_lite && back->transport.setup == MEDIA_SDP_SETUP_PASSIVE);
    FUZZ_CHECK(strcmp(back->transport.ice_ufrag, answer_params.ice_ufrag) == 0);
    FUZZ_CHECK(back->mline_count == offer->mline_count);
    FUZZ_CHECK(back->audio == offer->audio && back->video == offer->video);
    for (unsigned i = 0; i < offer->mline_count; i++) {
        const struct media_sdp_mline *o = &offer->mlines[i];
        const struct media_sdp_mline *a = &back->mlines[i];
        FUZZ_CHECK(strcmp(o->mid, a->mid) == 0);
        FUZZ_CHECK(o->accepted == a->accepted);
        FUZZ_CHECK(a->accepted == (a->port != 0));
        if (!o->accepted)
            continue;
        FUZZ_CHECK(o->media == a->media);
        FUZZ_CHECK(a->direction == media_sdp_direction_answer(o->direction));
        FUZZ_CHECK(o->choice_count == a->choice_count);
        for (unsigned c = 0; c < o->choice_count; c++) {
            FUZZ_CHECK(o->choices[c].codec == a->choices[c].codec);
            FUZZ_CHECK(o->choices[c].pt == a->choices[c].pt);
            FUZZ_CHECK(o->choices[c].rtx_pt == a->choices[c].rtx_pt);
        }
        for (unsigned e = 0; e < MEDIA_SDP_EXT_COUNT; e++)
            if (a->ext_id[e])
                FUZZ_CHECK(a->ext_id[e] == o->ext_id[e]);
    }

    /* Any shorter buffer is refused without writing past it. */
    size_t cap = (size_t)len * (data[0] % 8) / 8;
    memset(answer, 0x5a, MEDIA_SDP_MAX_SIZE);
    FUZZ_CHECK(media_sdp_write_answer(offer, &answer_params, answer, cap) == MEDIA_SDP_ERR_BUFFER);
    FUZZ_CHECK(cap == 0 || strlen(answer) < cap);
    FUZZ_CHECK(answer[cap] == 0x5a);

done:
    free(answer);
    free(back);
    free(offer);
    return 0;
}
