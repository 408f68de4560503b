/*
 * fuzz_config_file.c - an operator's config file is trusted more than the
 * network, but a typo or a truncated copy must still give a clean error, not
 * a crash. Each input is written to a memory file and loaded.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("tabib-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        struct srv_config cfg;
        char err[SRV_CONFIG_ERR_MAX];
        srv_config_defaults(&cfg);
        if (srv_config_load_file(&cfg, path, err, sizeof(err)) == 0)
            srv_config_finish(&cfg, err, sizeof(err));
    }
    close(fd);
    return 0;
}
