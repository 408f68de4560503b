/*
 * fuzz_http_path.c - request paths from the network. Whatever is accepted
 * must be a relative path with no dot segment, no leading dot and no
 * backslash: the properties that keep requests inside the web root.
 */
#include "fuzz_check.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = malloc(size + 1);
    memcpy(path, data, size);
    path[size] = '\0';
    char out[512];
    if (srv_http_path_resolve(path, out, sizeof(out)) == 0) {
        FUZZ_CHECK(out[0] != '/' && out[0] != '.');
        FUZZ_CHECK(!strstr(out, "/.") && !strchr(out, '\\') && !strstr(out, "//"));
        for (const char *p = out; *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    free(path);
    return 0;
}
