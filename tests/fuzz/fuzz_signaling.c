/*
 * fuzz_signaling.c - every byte string is a possible WebSocket message: the
 * handler must answer each with a JSON object and never crash or leak.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "signaling.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *reply = sig_handle_message((const char *)data, size);
    assert(reply && reply[0] == '{'); /* out of memory aside, there is always a reply */
    free(reply);
    return 0;
}
