/*
 * fuzz_hub.c - hostile WebSocket traffic into the signalling hub. Each input
 * is split at newlines into messages from one connection (so sequences such
 * as join, then leave, then resume are reached), followed by a drop and the
 * grace period's expiry. Every message must be answered with a JSON object;
 * nothing may crash or leak.
 */
#include "fuzz_check.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "signaling.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_send(void *ctx, void *transport, const char *text, size_t len)
{
    (void)transport;
    FUZZ_CHECK(len > 1 && text[0] == '{' && text[len - 1] == '}');
    (*(unsigned *)ctx)++;
}

static void on_close(void *ctx, void *transport, int code, const char *reason)
{
    (void)ctx;
    (void)transport;
    FUZZ_CHECK(code >= 1000 && reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct sig_clinic_config clinics[2] = {
        {.id = "general", .name_en = "General", .name_ar = "عام", .queue_limit = 3},
        {.id = "eyes", .name_en = "Eyes", .name_ar = "عيون", .queue_limit = 3},
    };
    struct sig_hub_config cfg;
    sig_hub_config_defaults(&cfg);
    cfg.clinics = clinics;
    cfg.clinic_count = 2;
    cfg.rate_burst = 1000;
    unsigned replies = 0;
    struct sig_hub_io io = {.ctx = &replies, .send = on_send, .close = on_close};
    struct sig_hub *hub = sig_hub_new(&cfg, NULL, &io, NULL);
    int transport = 0, other = 0;
    sig_hub_connect(hub, &transport, "127.0.0.1", 0);
    sig_hub_connect(hub, &other, "127.0.0.1", 0);
    static const char first[] =
        "{\"type\":\"join\",\"id\":1,\"clinic\":\"general\",\"name\":\"x\"}";
    sig_hub_message(hub, &other, first, sizeof(first) - 1, 0);
    const char *p = (const char *)data, *end = p + size;
    unsigned sent = 0;
    while (p < end && sent < 64) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        unsigned before = replies;
        sig_hub_message(hub, &transport, p, len, 1 + sent);
        FUZZ_CHECK(replies > before); /* every message gets an answer */
        sent++;
        p += len + 1;
    }
    sig_hub_disconnect(hub, &transport, 100);
    sig_hub_tick(hub, 100 + cfg.grace_ms);
    sig_hub_shutdown(hub, 200 + cfg.grace_ms);
    sig_hub_free(hub);
    return 0;
}
