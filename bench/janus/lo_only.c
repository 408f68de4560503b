/*
 * lo_only.c - an LD_PRELOAD shim for Janus that shows it the loopback
 * interface alone, as an ordinary interface, so that its ICE agent gathers on
 * 127.0.0.1 and on nothing else.
 *
 * Why a shim: Janus 1.1.2 builds its list of ICE addresses itself
 * (janus_ice_setup_local in src/ice.c): it walks getifaddrs() and skips every
 * interface with IFF_LOOPBACK before it even looks at ice_enforce_list, then
 * hands the rest to libnice with nice_agent_add_local_address(). With no
 * address at all, libnice 0.1.21 falls back to nice_interfaces_get_local_ips
 * (FALSE), which skips loopback interfaces too. No configuration makes either
 * gather on 127.0.0.1, and nat_1_1_mapping (rewriting another interface's
 * candidates to 127.0.0.1) would still bind Janus to that other interface.
 *
 * So getifaddrs() here returns only the entries of the interface named "lo",
 * with IFF_LOOPBACK cleared: Janus's ICE code adds 127.0.0.1 (and, if its IPv6
 * candidates were enabled, ::1), its "interface" and "ws_ip" lookups find
 * 127.0.0.1 on "lo", and no other address of the machine is ever offered to
 * libnice (nor to usrsctp, which lists interfaces too). freeifaddrs() is
 * wrapped to match.
 *
 * And socket() refuses raw IPv4 and IPv6 sockets (EPERM, as without
 * CAP_NET_RAW): at start Janus initialises usrsctp for data channels, which
 * opens raw SCTP sockets bound to the wildcard address 0.0.0.0 and :: when it
 * may (as root). Janus never sends on them (its SCTP runs over DTLS, through
 * usrsctp's AF_CONN callbacks), but they would listen on every interface.
 * Nothing else is changed.
 *
 * The entries returned are copies in a block of our own (their address
 * pointers still point into glibc's list, which the block keeps and frees
 * with it): glibc's list is one allocation freed through its first entry,
 * which may not be lo's.
 *
 * Any thread (getifaddrs is reentrant; the real functions are looked up once,
 * with pthread_once).
 */
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LOOPBACK_NAME "lo"

/* What getifaddrs() returned: the real list, kept for freeifaddrs(), and our copies. */
struct lo_block {
    struct ifaddrs *real;
    struct ifaddrs entries[];
};

static int (*real_getifaddrs)(struct ifaddrs **);
static void (*real_freeifaddrs)(struct ifaddrs *);
static int (*real_socket)(int, int, int);
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
    real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    real_freeifaddrs = (void (*)(struct ifaddrs *))dlsym(RTLD_NEXT, "freeifaddrs");
    real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
}

static int is_loopback(const struct ifaddrs *ifa)
{
    return ifa->ifa_name && strcmp(ifa->ifa_name, LOOPBACK_NAME) == 0;
}

/* The real list filtered down to "lo", IFF_LOOPBACK cleared. Free with freeifaddrs(). */
int getifaddrs(struct ifaddrs **ifap)
{
    pthread_once(&resolve_once, resolve);
    if (!real_getifaddrs || !real_freeifaddrs) {
        errno = ENOSYS;
        return -1;
    }
    struct ifaddrs *real = NULL;
    if (real_getifaddrs(&real) != 0)
        return -1;
    size_t n = 0;
    for (const struct ifaddrs *ifa = real; ifa; ifa = ifa->ifa_next)
        n += is_loopback(ifa) ? 1 : 0;
    if (n == 0) {
        real_freeifaddrs(real);
        *ifap = NULL;
        return 0;
    }
    struct lo_block *block = malloc(sizeof(*block) + n * sizeof(block->entries[0]));
    if (!block) {
        real_freeifaddrs(real);
        errno = ENOMEM;
        return -1;
    }
    block->real = real;
    size_t i = 0;
    for (const struct ifaddrs *ifa = real; ifa; ifa = ifa->ifa_next) {
        if (!is_loopback(ifa))
            continue;
        block->entries[i] = *ifa;
        block->entries[i].ifa_flags &= ~(unsigned)IFF_LOOPBACK;
        block->entries[i].ifa_next = i + 1 < n ? &block->entries[i + 1] : NULL;
        i++;
    }
    *ifap = block->entries;
    return 0;
}

/* Frees what getifaddrs() above returned. NULL does nothing. */
void freeifaddrs(struct ifaddrs *ifa)
{
    if (!ifa)
        return;
    struct lo_block *block = (struct lo_block *)((char *)ifa - offsetof(struct lo_block, entries));
    pthread_once(&resolve_once, resolve);
    if (real_freeifaddrs)
        real_freeifaddrs(block->real);
    free(block);
}

/* socket(), except raw IPv4 and IPv6 sockets: EPERM. */
int socket(int domain, int type, int protocol)
{
    pthread_once(&resolve_once, resolve);
    if ((domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_RAW) {
        errno = EPERM;
        return -1;
    }
    if (!real_socket) {
        errno = ENOSYS;
        return -1;
    }
    return real_socket(domain, type, protocol);
}
