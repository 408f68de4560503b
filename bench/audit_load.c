/*
 * audit_load.c - the audit writer under load, and the signalling thread's
 * latency while the writer is busy.
 *
 * In one process, on the real disk (a temporary data dir under $TMPDIR or
 * /tmp, removed at the end), each phase starts a fresh real audit writer
 * (audit_writer_start) and measures:
 *
 *   commit      events appended one at a time, each waited for: the time from
 *               append to committed, i.e. one WAL + synchronous=FULL commit;
 *   throughput  P producer threads append realistic events as fast as the
 *               queue accepts (-EAGAIN: back off 50 us and retry, counted);
 *               committed events/s, cross-checked by counting rows after stop;
 *   paced       the same producers at a fixed total rate: does the writer keep
 *               up (the backlog, appended - committed, sampled every 100 ms)?
 *   saturated   a real signalling hub (sig_hub, its io.audit calling
 *               audit_writer_append as server/http.c does) on this thread,
 *               fed patients leaving and joining a clinic queue at a fixed
 *               rate, each request timed. A and B slices alternate every
 *               second (so both see the same noise from the rest of the
 *               machine): in A the writer has only the hub's events, in B the
 *               P producers saturate it as in "throughput";
 *   paced-busy  the same, B with one producer paced at half the writer's
 *               measured maximum: the writer commits continuously while the
 *               producer leaves the cores mostly to the signalling thread.
 *
 * A timing VFS (the default VFS wrapped, xSync timed) counts the WAL and
 * database fdatasync()s of each phase: their number and duration give the
 * cost of a commit and the group-commit batch size. The writer thread's CPU
 * and run-queue time come from /proc/self/task/<tid>/schedstat.
 *
 *   audit_load [--seconds D] [--producers P] [--rate R] [--hub-rate H]
 *              [--busy-rate B] [--commits N] [--json FILE] [--only PHASE]
 *              [--cpu-hub C] [--cpu-producers C] [--cpu-writer C]
 *
 * Threads: main is the signalling thread (and the sampler); the producers
 * are their own threads; the writer is the audit module's.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"
#include "base.h"
#include "signaling.h"

#define MAX_PRODUCERS    16
#define HUB_PATIENTS     32 /* waiting in the clinic's queue during the hub phases */
#define SAMPLE_PERIOD_NS 100000000LL
#define BACKOFF_NS       50000L
#define PAUSE_POLL_NS    1000000L
#define SLICE_NS         1000000000LL /* hub phases: A and B alternate every second */
#define SETTLE_NS        300000000LL  /* ... measured after this (a full queue drains) */
#define NS_PER_S         1000000000LL

static void die(const char *what)
{
    fprintf(stderr, "audit_load: %s\n", what);
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Sleeps until the CLOCK_MONOTONIC time `at_ns`. */
static void sleep_until(int64_t at_ns)
{
    struct timespec ts = {.tv_sec = at_ns / NS_PER_S, .tv_nsec = at_ns % NS_PER_S};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
    nanosleep(&ts, NULL);
}

/* Pins thread `tid` (0: the caller) to `cpu`; a negative cpu pins nothing. */
static void pin(pid_t tid, int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(tid, sizeof(set), &set) != 0)
        die("cannot pin a thread (--cpu-*)");
}

/* Lets thread `tid` (0: the caller) run on every CPU in `all` again. */
static void unpin(pid_t tid, const cpu_set_t *all)
{
    if (sched_setaffinity(tid, sizeof(*all), all) != 0)
        die("cannot unpin a thread");
}

/* ------------------------------------------------------------------------- */
/* The timing VFS: the default VFS with xSync timed per file kind            */
/* ------------------------------------------------------------------------- */

struct sync_stat {
    _Atomic uint64_t count;
    _Atomic uint64_t total_ns;
    _Atomic uint64_t max_ns;
    _Atomic uint64_t written; /* bytes written to the file (not synced: all writes) */
};

struct sync_stats {
    struct sync_stat wal; /* the -wal file: one sync per commit, one more per checkpoint */
    struct sync_stat db;  /* the database file: synced by checkpoints */
};

/* A sync_stat read at one moment. */
struct sync_total {
    uint64_t count, total_ns, max_ns, written;
};

struct timed_vfs {
    sqlite3_vfs base; /* a copy of the real VFS with xOpen and szOsFile replaced */
    sqlite3_vfs *real;
    struct sync_stats *stats;
};

/* An open file: the real VFS's file follows this struct in the same allocation. */
struct timed_file {
    sqlite3_file base;
    struct sync_stat *stat; /* NULL: syncs not counted */
    sqlite3_file *real;
};

#define REAL(f) (((struct timed_file *)(f))->real)

static int tf_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int tf_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int tf_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    struct timed_file *tf = (struct timed_file *)f;
    if (tf->stat)
        atomic_fetch_add_explicit(&tf->stat->written, (uint64_t)n, memory_order_relaxed);
    return tf->real->pMethods->xWrite(tf->real, buf, n, off);
}

static int tf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

/* The one method that does more than forward: it times the sync. */
static int tf_sync(sqlite3_file *f, int flags)
{
    struct timed_file *tf = (struct timed_file *)f;
    int64_t t0 = now_ns();
    int rc = tf->real->pMethods->xSync(tf->real, flags);
    uint64_t took = (uint64_t)(now_ns() - t0);
    if (tf->stat) {
        atomic_fetch_add(&tf->stat->count, 1);
        atomic_fetch_add(&tf->stat->total_ns, took);
        uint64_t max = atomic_load(&tf->stat->max_ns);
        while (took > max && !atomic_compare_exchange_weak(&tf->stat->max_ns, &max, took))
            ;
    }
    return rc;
}

static int tf_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int tf_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int tf_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int tf_check_reserved_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int tf_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int tf_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int tf_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int tf_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, out);
}

static int tf_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void tf_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int tf_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int tf_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

static int tf_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods timed_methods = {
    3,
    tf_close,
    tf_read,
    tf_write,
    tf_truncate,
    tf_sync,
    tf_file_size,
    tf_lock,
    tf_unlock,
    tf_check_reserved_lock,
    tf_file_control,
    tf_sector_size,
    tf_device_characteristics,
    tf_shm_map,
    tf_shm_lock,
    tf_shm_barrier,
    tf_shm_unmap,
    tf_fetch,
    tf_unfetch,
};

static int tv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
    struct timed_vfs *tv = (struct timed_vfs *)vfs;
    struct timed_file *tf = (struct timed_file *)file;
    tf->real = (sqlite3_file *)(tf + 1);
    tf->stat = (flags & SQLITE_OPEN_WAL)       ? &tv->stats->wal
               : (flags & SQLITE_OPEN_MAIN_DB) ? &tv->stats->db
                                               : NULL;
    int rc = tv->real->xOpen(tv->real, name, tf->real, flags, out_flags);
    if (!tf->real->pMethods) {
        tf->base.pMethods = NULL;
        return rc;
    }
    /* Forwarding to methods the real file lacks would crash; the unix VFS has all of them. */
    if (tf->real->pMethods->iVersion < 3)
        die("the default SQLite VFS is older than this benchmark expects");
    tf->base.pMethods = &timed_methods;
    return rc;
}

/* Wraps the default VFS and makes the wrapper the default (every later open uses it). */
static void timed_vfs_install(struct timed_vfs *tv, struct sync_stats *stats)
{
    tv->real = sqlite3_vfs_find(NULL);
    if (!tv->real)
        die("no default SQLite VFS");
    tv->stats = stats;
    /*
     * The copy keeps the real VFS's pAppData and methods (the unix VFS reads
     * pAppData and mxPathname through whichever VFS pointer it is given);
     * only xOpen, which wraps the file, is ours.
     */
    tv->base = *tv->real;
    tv->base.pNext = NULL;
    tv->base.zName = "tabib-bench-timed";
    tv->base.szOsFile = (int)sizeof(struct timed_file) + tv->real->szOsFile;
    tv->base.xOpen = tv_open;
    if (sqlite3_vfs_register(&tv->base, 1) != SQLITE_OK)
        die("cannot register the timing VFS");
}

static void sync_stats_reset(struct sync_stats *s)
{
    struct sync_stat *all[] = {&s->wal, &s->db};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        atomic_store(&all[i]->count, 0);
        atomic_store(&all[i]->total_ns, 0);
        atomic_store(&all[i]->max_ns, 0);
        atomic_store(&all[i]->written, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* Statistics                                                                 */
/* ------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct latency {
    uint64_t count;
    double p50_us, p99_us, p999_us, max_us, mean_us;
};

/* Sorts `ns` in place and summarises it. */
static struct latency latency_of(uint64_t *ns, size_t n)
{
    struct latency l = {.count = n};
    if (n == 0)
        return l;
    qsort(ns, n, sizeof(*ns), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    /* The nearest-rank percentile: the smallest value with at least p of the samples at or below.
     */
    double ps[] = {0.50, 0.99, 0.999};
    double *out[] = {&l.p50_us, &l.p99_us, &l.p999_us};
    for (int i = 0; i < 3; i++) {
        size_t rank = (size_t)(ps[i] * (double)n + 0.999999);
        if (rank < 1)
            rank = 1;
        *out[i] = (double)ns[rank - 1] / 1000.0;
    }
    l.max_us = (double)ns[n - 1] / 1000.0;
    l.mean_us = sum / (double)n / 1000.0;
    return l;
}

/* On-CPU and run-queue (waiting for a CPU) time of thread `tid`, in ns. */
struct sched_time {
    uint64_t cpu_ns;
    uint64_t runq_ns;
};

static struct sched_time sched_time_of(pid_t tid)
{
    struct sched_time t = {0, 0};
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return t;
    unsigned long long cpu = 0, runq = 0;
    if (fscanf(f, "%llu %llu", &cpu, &runq) == 2) {
        t.cpu_ns = cpu;
        t.runq_ns = runq;
    }
    fclose(f);
    return t;
}

/*
 * CPU time, in clock ticks, the whole machine spent busy (/proc/stat) and
 * this process spent (/proc/self/stat): their difference over a phase is what
 * other processes took, the noise of a shared machine.
 */
struct cpu_ticks {
    long long machine;
    long long self;
};

static struct cpu_ticks cpu_ticks_now(void)
{
    struct cpu_ticks t = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        long long v[8] = {0};
        if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            t.machine = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle and iowait */
        fclose(f);
    }
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        /* Fields after the command name (which may hold spaces) start after the last ')'. */
        char *p = strrchr(buf, ')');
        long long utime = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime,
                        &stime) == 2)
            t.self = utime + stime;
        fclose(f);
    }
    return t;
}

/* The id of the audit writer thread (named "audit"), 0 when not found. */
static pid_t writer_tid(void)
{
    /* The writer names itself as it starts: give it a moment. */
    for (int attempt = 0; attempt < 1000; attempt++) {
        DIR *d = opendir("/proc/self/task");
        if (!d)
            return 0;
        pid_t found = 0;
        struct dirent *e;
        while (!found && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[300], comm[32] = "";
            snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
            FILE *f = fopen(path, "r");
            if (f) {
                if (fgets(comm, sizeof(comm), f) && strcmp(comm, "audit\n") == 0)
                    found = (pid_t)atoi(e->d_name);
                fclose(f);
            }
        }
        closedir(d);
        if (found)
            return found;
        sleep_ns(1000000);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* One writer's life: producers, samples, results                             */
/* ------------------------------------------------------------------------- */

struct options {
    unsigned seconds;
    unsigned producers;
    double rate;      /* paced phase: events/s from all producers */
    double hub_rate;  /* hub phases: requests/s on the signalling thread */
    double busy_rate; /* paced-busy: the producer's events/s; 0: half the measured maximum */
    unsigned commits; /* commit phase: single-event commits */
    const char *json;
    const char *only; /* run this phase alone; NULL: all */
    int cpu_hub, cpu_producers, cpu_writer;
};

struct bench {
    struct options opt;
    char root[256]; /* the temporary data dirs live under it */
    struct base_logger *log;
    struct sync_stats sync;
    struct timed_vfs vfs;
    cpu_set_t all_cpus; /* the process's CPUs at start, to unpin the signalling thread */
    unsigned runs;
};

struct run;

struct producer {
    struct run *run;
    pthread_t thread;
    unsigned index;
    double rate; /* events/s; 0: as fast as the queue accepts */
};

struct sample {
    int64_t t_ns;
    uint64_t appended;
    uint64_t committed;
};

struct run {
    struct bench *b;
    char dir[320];
    struct audit_writer *w;
    pid_t writer;
    struct sched_time writer_at_start;
    _Atomic uint64_t appended; /* accepted by the queue, from every source */
    _Atomic uint64_t retries;  /* producers' appends refused with -EAGAIN, retried */
    _Atomic bool stop;
    _Atomic bool paused; /* the producers wait (the A slices of a hub phase) */
    struct producer prod[MAX_PRODUCERS];
    unsigned nprod;
    struct sample *samples;
    size_t nsamples, sample_cap;
    int64_t t_start, t_end;
    uint64_t committed_at_end;
    struct sched_time writer_at_end;
    struct sync_total wal, db;
    struct cpu_ticks cpu_at_start, cpu_at_end;
};

/* What a phase measured (the fields that do not apply stay 0). */
struct result {
    char name[32];
    double seconds;
    unsigned producers;
    double producer_rate; /* events/s in total; 0: unpaced */
    uint64_t appended, retries, committed, rows;
    double appended_per_s, committed_per_s;
    double first_1s_per_s, last_1s_per_s; /* committed in the first and the last second */
    uint64_t max_backlog;
    double drain_ms;
    double db_bytes, bytes_per_event;                   /* the files at the end */
    double wal_written_per_event, db_written_per_event; /* bytes written while the load ran */
    uint64_t wal_syncs, db_syncs;
    double wal_sync_mean_us, wal_sync_max_us, db_sync_mean_us;
    double events_per_wal_sync;
    double writer_cpu, writer_sync; /* shares of the phase's wall time */
    double writer_runq_ms;          /* waiting for a CPU */
    double self_cores, other_cores; /* CPUs used by this process, and by every other */
    /* The commit phase: append -> committed, one event per transaction. */
    struct latency commit;
    /* The hub phases: A (producers paused) and B (producers on), interleaved. */
    double hub_rate;
    struct mode_result {
        double measured_s;
        struct latency request, append;
        uint64_t events, dropped; /* the hub's audit events; refused (queue full) */
        double committed_per_s;
        double hub_cpu, hub_runq; /* the signalling thread: shares of the measured time */
        double writer_cpu, writer_sync;
        double other_cores;
    } mode[2];
    /* Appended and committed every 100 ms (owned; freed with the results). */
    struct sample *samples;
    size_t nsamples;
    int64_t t_start;
};

/*
 * A realistic event, as the hub writes them: the type, who, where, the
 * peer's address and a detail of ~150 bytes naming the patient in Arabic.
 */
struct event_text {
    char consultation[40];
    char detail[256];
    struct audit_event ev;
};

static void event_make(struct event_text *e, unsigned producer, uint64_t n)
{
    static const char *const types[] = {"queue_joined", "consultation_called",
                                        "consultation_started", "consultation_ended"};
    static const char *const names[] = {"مريم عبد الله الكعبي", "عبد الرحمن الهاشمي",
                                        "فاطمة الزهراء بن علي", "يوسف الشمري"};
    snprintf(e->consultation, sizeof(e->consultation), "c_%08x%024" PRIx64,
             0x9e3779b9u * (producer + 1), (uint64_t)(n * UINT64_C(0x9e3779b97f4a7c15)) >> 8);
    snprintf(e->detail, sizeof(e->detail),
             "{\"name\":\"%s\",\"reason\":\"completed\",\"from\":\"in_consultation\","
             "\"waited_s\":%u,\"duration_s\":%u,\"doctor\":\"dr.amal\",\"via\":\"link\"}",
             names[n % 4], (unsigned)(n % 1800), (unsigned)(n % 3600));
    e->ev = (struct audit_event){
        .type = types[n % 4],
        .actor_role = "doctor",
        .actor_id = "dr.amal",
        .clinic = "general",
        .consultation = e->consultation,
        .outcome = "ok",
        .source = "198.51.100.23",
        .detail_json = e->detail,
    };
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct run *r = p->run;
    pin(0, r->b->opt.cpu_producers);
    int64_t period = p->rate > 0 ? (int64_t)((double)NS_PER_S / p->rate) : 0;
    int64_t next = now_ns();
    struct event_text e;
    for (uint64_t n = 0; !atomic_load_explicit(&r->stop, memory_order_relaxed); n++) {
        if (atomic_load_explicit(&r->paused, memory_order_relaxed)) {
            sleep_ns(PAUSE_POLL_NS);
            next = now_ns();
            continue;
        }
        event_make(&e, p->index, n);
        int rc;
        while ((rc = audit_writer_append(r->w, &e.ev)) == -EAGAIN &&
               !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&r->retries, 1, memory_order_relaxed);
            sleep_ns(BACKOFF_NS);
        }
        if (rc == -EAGAIN)
            break;
        if (rc != 0)
            die("audit_writer_append failed");
        atomic_fetch_add_explicit(&r->appended, 1, memory_order_relaxed);
        if (period) {
            next += period;
            int64_t now = now_ns();
            if (next < now - SAMPLE_PERIOD_NS)
                next = now; /* far behind (descheduled): no burst to catch up */
            if (next > now)
                sleep_until(next);
        }
    }
    return NULL;
}

/*
 * Starts a fresh writer in its own data dir and `nprod` producers at `rate`
 * events/s in all (0: as fast as the queue accepts), `paused` or not.
 */
static void run_start(struct run *r, struct bench *b, const char *name, unsigned nprod, double rate,
                      bool paused)
{
    memset(r, 0, sizeof(*r));
    r->b = b;
    atomic_store(&r->paused, paused);
    snprintf(r->dir, sizeof(r->dir), "%s/%u-%s", b->root, ++b->runs, name);
    r->sample_cap = (size_t)b->opt.seconds * 10 + 64;
    r->samples = calloc(r->sample_cap, sizeof(*r->samples));
    if (!r->samples)
        die("out of memory");
    sync_stats_reset(&b->sync);
    char err[256];
    r->w = audit_writer_start(r->dir, b->log, err, sizeof(err));
    if (!r->w)
        die(err);
    r->writer = writer_tid();
    if (!r->writer)
        die("cannot find the audit writer thread");
    pin(r->writer, b->opt.cpu_writer);
    r->writer_at_start = sched_time_of(r->writer);
    r->cpu_at_start = cpu_ticks_now();
    r->t_start = now_ns();
    r->nprod = nprod;
    for (unsigned i = 0; i < nprod; i++) {
        r->prod[i] = (struct producer){.run = r, .index = i, .rate = rate / nprod};
        if (pthread_create(&r->prod[i].thread, NULL, producer_main, &r->prod[i]) != 0)
            die("cannot start a producer");
    }
}

/* Records appended and committed now (the sampler: every 100 ms). */
static void run_sample(struct run *r)
{
    if (r->nsamples == r->sample_cap)
        return;
    struct sample *s = &r->samples[r->nsamples++];
    /* Committed first: an event cannot be committed before it was appended. */
    s->committed = audit_writer_committed(r->w);
    s->appended = atomic_load(&r->appended);
    s->t_ns = now_ns();
}

/* Runs the sampler until `seconds` after the start. */
static void run_sample_for(struct run *r, unsigned seconds)
{
    for (int64_t at = r->t_start + SAMPLE_PERIOD_NS; at <= r->t_start + (int64_t)seconds * NS_PER_S;
         at += SAMPLE_PERIOD_NS) {
        sleep_until(at);
        run_sample(r);
    }
}

/* Stops the producers (what they appended stays queued) and notes the committed count. */
static void run_stop_producers(struct run *r)
{
    atomic_store(&r->stop, true);
    for (unsigned i = 0; i < r->nprod; i++)
        pthread_join(r->prod[i].thread, NULL);
    r->t_end = now_ns();
    r->committed_at_end = audit_writer_committed(r->w);
    /* The writer's time and syncs while the load ran (the drain's come after). */
    r->writer_at_end = sched_time_of(r->writer);
    r->cpu_at_end = cpu_ticks_now();
    struct sync_stats *s = &r->b->sync;
    r->wal = (struct sync_total){atomic_load(&s->wal.count), atomic_load(&s->wal.total_ns),
                                 atomic_load(&s->wal.max_ns), atomic_load(&s->wal.written)};
    r->db = (struct sync_total){atomic_load(&s->db.count), atomic_load(&s->db.total_ns),
                                atomic_load(&s->db.max_ns), atomic_load(&s->db.written)};
}

static uint64_t count_rows(const char *dir)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/audit.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (n < 0)
        die("cannot count the stored events");
    return (uint64_t)n;
}

static double file_size(const char *dir, const char *name)
{
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

/*
 * Stops the writer (it writes what is still queued), checks that every
 * accepted event is stored, and fills `res` with the run's figures.
 */
static void run_finish(struct run *r, struct result *res)
{
    double elapsed = (double)(r->t_end - r->t_start) / NS_PER_S;
    struct sched_time wt = r->writer_at_end;
    uint64_t wal_syncs = r->wal.count, wal_ns = r->wal.total_ns;
    uint64_t db_syncs = r->db.count, db_ns = r->db.total_ns;
    int64_t t0 = now_ns();
    audit_writer_stop(r->w);
    r->w = NULL;
    res->drain_ms = (double)(now_ns() - t0) / 1e6;
    res->seconds = elapsed;
    res->producers = r->nprod;
    res->appended = atomic_load(&r->appended);
    res->retries = atomic_load(&r->retries);
    res->committed = r->committed_at_end;
    res->appended_per_s = (double)res->appended / elapsed;
    res->committed_per_s = (double)res->committed / elapsed;
    res->rows = count_rows(r->dir);
    /* The hub's shutdown and the writer's own events come on top of what was counted. */
    if (res->rows < res->appended)
        die("fewer rows stored than events accepted");
    res->db_bytes = file_size(r->dir, "audit.db") + file_size(r->dir, "audit.db-wal");
    res->bytes_per_event = res->rows ? res->db_bytes / (double)res->rows : 0;
    res->wal_syncs = wal_syncs;
    res->db_syncs = db_syncs;
    res->wal_sync_mean_us = wal_syncs ? (double)wal_ns / (double)wal_syncs / 1000.0 : 0;
    res->wal_sync_max_us = (double)r->wal.max_ns / 1000.0;
    res->db_sync_mean_us = db_syncs ? (double)db_ns / (double)db_syncs / 1000.0 : 0;
    res->events_per_wal_sync = wal_syncs ? (double)res->committed / (double)wal_syncs : 0;
    if (res->committed) {
        res->wal_written_per_event = (double)r->wal.written / (double)res->committed;
        res->db_written_per_event = (double)r->db.written / (double)res->committed;
    }
    double cpu_ns = (double)(wt.cpu_ns - r->writer_at_start.cpu_ns);
    res->writer_cpu = cpu_ns / (elapsed * 1e9);
    /*
     * Time in fdatasync, WAL and checkpoints (only the writer syncs). It overlaps
     * writer_cpu by the CPU the kernel spends inside the call, so the two add up
     * to a little more than the time the writer was busy.
     */
    res->writer_sync = (double)(wal_ns + db_ns) / (elapsed * 1e9);
    res->writer_runq_ms = (double)(wt.runq_ns - r->writer_at_start.runq_ns) / 1e6;
    double hz = (double)sysconf(_SC_CLK_TCK);
    res->self_cores = (double)(r->cpu_at_end.self - r->cpu_at_start.self) / hz / elapsed;
    res->other_cores =
        (double)(r->cpu_at_end.machine - r->cpu_at_start.machine) / hz / elapsed - res->self_cores;
    if (res->other_cores < 0)
        res->other_cores = 0;
    /* The largest backlog, and the rate of the first and the last second. */
    for (size_t i = 0; i < r->nsamples; i++) {
        int64_t backlog = (int64_t)r->samples[i].appended - (int64_t)r->samples[i].committed;
        if (backlog > (int64_t)res->max_backlog)
            res->max_backlog = (uint64_t)backlog;
    }
    if (r->nsamples >= 20) {
        const struct sample *first = &r->samples[9];
        const struct sample *a = &r->samples[r->nsamples - 11], *z = &r->samples[r->nsamples - 1];
        res->first_1s_per_s = (double)first->committed * 1e9 / (double)(first->t_ns - r->t_start);
        res->last_1s_per_s =
            (double)(z->committed - a->committed) * 1e9 / (double)(z->t_ns - a->t_ns);
    }
    res->samples = r->samples;
    res->nsamples = r->nsamples;
    res->t_start = r->t_start;
}

/* ------------------------------------------------------------------------- */
/* Phases                                                                     */
/* ------------------------------------------------------------------------- */

/* One event at a time, each waited for until committed: the cost of one commit. */
static void phase_commit(struct bench *b, struct result *res)
{
    snprintf(res->name, sizeof(res->name), "commit");
    unsigned n = b->opt.commits;
    uint64_t *ns = calloc(n, sizeof(*ns));
    if (!ns)
        die("out of memory");
    struct run r;
    run_start(&r, b, "commit", 0, 0, false);
    struct event_text e;
    for (unsigned i = 0; i < n; i++) {
        event_make(&e, 0, i);
        int64_t t0 = now_ns();
        if (audit_writer_append(r.w, &e.ev) != 0)
            die("audit_writer_append failed");
        atomic_fetch_add(&r.appended, 1);
        while (audit_writer_committed(r.w) < i + 1)
            sleep_ns(10000);
        ns[i] = (uint64_t)(now_ns() - t0);
    }
    run_stop_producers(&r);
    run_finish(&r, res);
    res->commit = latency_of(ns, n);
    free(ns);
}

/* P producers as fast as the queue accepts (rate 0), or paced at `rate` events/s in all. */
static void phase_producers(struct bench *b, const char *name, unsigned nprod, double rate,
                            struct result *res)
{
    snprintf(res->name, sizeof(res->name), "%s", name);
    struct run r;
    run_start(&r, b, name, nprod, rate, false);
    run_sample_for(&r, b->opt.seconds);
    run_stop_producers(&r);
    run_finish(&r, res);
    res->producer_rate = rate;
}

enum { MODE_A = 0, MODE_B = 1 };

/* What one mode's measured windows add up to. */
struct mode_acc {
    uint64_t *lat, *app; /* request and append times, ns */
    size_t nlat, napp, cap;
    uint64_t events, dropped;
    int64_t ns;
    uint64_t committed;
    struct sched_time self, writer;
    uint64_t sync_ns;
    long long other_ticks;
};

/* The state at the start of a measured window. */
struct window {
    int64_t t;
    uint64_t committed;
    struct sched_time self, writer;
    uint64_t sync_ns;
    struct cpu_ticks cpu;
};

/* The signalling side: a real hub whose io.audit appends to the run's writer. */
struct hub_side {
    struct run *run;
    struct sig_hub *hub;
    struct sig_clinic_config clinic;
    int patient[HUB_PATIENTS]; /* the transports: only their addresses matter */
    struct mode_acc acc[2];
    struct mode_acc *measuring; /* NULL between windows */
    uint64_t sends, errors;
    char outbox[SIG_MESSAGE_MAX]; /* where sent messages are copied, as a transport would */
};

static void hub_send(void *ctx, void *transport, const char *text, size_t len)
{
    struct hub_side *h = ctx;
    (void)transport;
    if (len > sizeof(h->outbox))
        len = sizeof(h->outbox);
    memcpy(h->outbox, text, len);
    h->sends++;
    if (memmem(text, len, "\"type\":\"error\"", 14))
        h->errors++;
}

static void hub_close(void *ctx, void *transport, int code, const char *reason)
{
    (void)ctx;
    (void)transport;
    (void)code;
    (void)reason;
}

/* As server/http.c's hub_audit: append, and count an event the queue refused as dropped. */
static void hub_audit(void *ctx, const struct audit_event *ev)
{
    struct hub_side *h = ctx;
    int64_t t0 = now_ns();
    int rc = audit_writer_append(h->run->w, ev);
    int64_t took = now_ns() - t0;
    if (rc == 0)
        atomic_fetch_add_explicit(&h->run->appended, 1, memory_order_relaxed);
    struct mode_acc *m = h->measuring;
    if (!m)
        return;
    if (m->napp < m->cap)
        m->app[m->napp++] = (uint64_t)took;
    m->events++;
    m->dropped += rc != 0;
}

/* Sends one request from patient `i` and returns how long the hub took, in ns. */
static uint64_t hub_request(struct hub_side *h, unsigned i, const char *msg)
{
    int64_t now_ms = base_now_ms();
    size_t len = strlen(msg);
    int64_t t0 = now_ns();
    sig_hub_message(h->hub, &h->patient[i], msg, len, now_ms);
    return (uint64_t)(now_ns() - t0);
}

/* Request `step`: the patient at the head of the queue leaves (even), then joins again (odd). */
static uint64_t hub_step(struct hub_side *h, uint64_t step, uint64_t id)
{
    static const char *const names[] = {"مريم الكعبي", "عبد الرحمن الهاشمي", "فاطمة بن علي",
                                        "يوسف الشمري"};
    char msg[256];
    if (step % 2 == 0)
        snprintf(msg, sizeof(msg), "{\"id\":%" PRIu64 ",\"type\":\"leave\"}", id);
    else
        snprintf(msg, sizeof(msg),
                 "{\"id\":%" PRIu64 ",\"type\":\"join\",\"clinic\":\"general\",\"name\":\"%s\"}",
                 id, names[id % 4]);
    return hub_request(h, (unsigned)(step / 2 % HUB_PATIENTS), msg);
}

static struct window window_open(struct hub_side *h, pid_t self)
{
    struct sync_stats *s = &h->run->b->sync;
    return (struct window){
        .t = now_ns(),
        .committed = audit_writer_committed(h->run->w),
        .self = sched_time_of(self),
        .writer = sched_time_of(h->run->writer),
        .sync_ns = atomic_load(&s->wal.total_ns) + atomic_load(&s->db.total_ns),
        .cpu = cpu_ticks_now(),
    };
}

/* Adds what happened since `w` opened to `m`. */
static void window_close(struct hub_side *h, pid_t self, const struct window *w, struct mode_acc *m)
{
    struct window now = window_open(h, self);
    m->ns += now.t - w->t;
    m->committed += now.committed - w->committed;
    m->self.cpu_ns += now.self.cpu_ns - w->self.cpu_ns;
    m->self.runq_ns += now.self.runq_ns - w->self.runq_ns;
    m->writer.cpu_ns += now.writer.cpu_ns - w->writer.cpu_ns;
    m->sync_ns += now.sync_ns - w->sync_ns;
    m->other_ticks += (now.cpu.machine - w->cpu.machine) - (now.cpu.self - w->cpu.self);
}

static void mode_result_of(struct mode_acc *m, struct mode_result *out)
{
    double s = (double)m->ns / 1e9;
    out->measured_s = s;
    out->request = latency_of(m->lat, m->nlat);
    out->append = latency_of(m->app, m->napp);
    out->events = m->events;
    out->dropped = m->dropped;
    if (s <= 0)
        return;
    out->committed_per_s = (double)m->committed / s;
    out->hub_cpu = (double)m->self.cpu_ns / (double)m->ns;
    out->hub_runq = (double)m->self.runq_ns / (double)m->ns;
    out->writer_cpu = (double)m->writer.cpu_ns / (double)m->ns;
    out->writer_sync = (double)m->sync_ns / (double)m->ns;
    out->other_cores = (double)m->other_ticks / (double)sysconf(_SC_CLK_TCK) / s;
    if (out->other_cores < 0)
        out->other_cores = 0;
}

/*
 * A hub phase: this thread is the signalling thread. HUB_PATIENTS patients
 * wait in one clinic's queue; at `hub_rate` requests/s the one at the head
 * leaves (consultation_ended, and a position update to each of the others)
 * and joins again at the back (queue_joined), each request timed.
 *
 * A and B alternate every second: in A slices the producers wait and the
 * writer has only the hub's events; in B slices `nprod` producers append at
 * `rate` (0: as fast as the queue accepts). Interleaving puts both under the
 * same noise from the rest of the machine. Each slice is measured after
 * SETTLE_NS, once a queue the B slice left full has drained.
 */
static void phase_hub(struct bench *b, const char *name, unsigned nprod, double rate,
                      struct result *res)
{
    snprintf(res->name, sizeof(res->name), "%s", name);
    struct hub_side *h = calloc(1, sizeof(*h));
    if (!h)
        die("out of memory");
    for (int m = 0; m < 2; m++) {
        struct mode_acc *a = &h->acc[m];
        a->cap = (size_t)((double)b->opt.seconds * b->opt.hub_rate) + 1024;
        a->lat = calloc(a->cap, sizeof(*a->lat));
        a->app = calloc(a->cap, sizeof(*a->app));
        if (!a->lat || !a->app)
            die("out of memory");
    }
    h->clinic = (struct sig_clinic_config){.id = "general",
                                           .name_en = "General Practice",
                                           .name_ar = "الطب العام",
                                           .queue_limit = 4 * HUB_PATIENTS};
    struct sig_hub_config cfg;
    sig_hub_config_defaults(&cfg);
    cfg.clinics = &h->clinic;
    cfg.clinic_count = 1;
    cfg.max_conns_per_address = HUB_PATIENTS;
    /* One connection sends far more than a browser would: no rate limit here. */
    cfg.rate_per_second = 1000000;
    cfg.rate_burst = 1000000;
    struct sig_hub_io io = {.ctx = h, .send = hub_send, .close = hub_close, .audit = hub_audit};
    pid_t self = gettid();

    struct run r;
    run_start(&r, b, name, nprod, rate, true);
    /* After the writer and the producers exist: threads inherit their creator's CPUs. */
    pin(0, b->opt.cpu_hub);
    h->run = &r;
    h->hub = sig_hub_new(&cfg, NULL, &io, NULL);
    if (!h->hub)
        die("cannot create the hub");
    /* The queue fills: patient i joins as the odd step 2i + 1 would have it join. */
    uint64_t id = 0;
    for (unsigned i = 0; i < HUB_PATIENTS; i++) {
        if (sig_hub_connect(h->hub, &h->patient[i], "198.51.100.23", base_now_ms()) != 0)
            die("the hub refused a connection");
        hub_step(h, 2 * i + 1, ++id);
    }
    int64_t period = (int64_t)((double)NS_PER_S / b->opt.hub_rate);
    int64_t start = now_ns(), end = start + (int64_t)b->opt.seconds * NS_PER_S;
    int64_t next = start, next_sample = r.t_start + SAMPLE_PERIOD_NS;
    int64_t slice_start = start;
    int mode = MODE_A;
    struct window win;
    for (uint64_t step = 0;; step++) {
        sleep_until(next);
        int64_t now = now_ns();
        if (now >= end)
            break;
        if (now >= slice_start + SLICE_NS) {
            if (h->measuring)
                window_close(h, self, &win, h->measuring);
            h->measuring = NULL;
            mode = mode == MODE_A ? MODE_B : MODE_A;
            atomic_store(&r.paused, mode == MODE_A);
            slice_start = now;
        }
        if (!h->measuring && now >= slice_start + SETTLE_NS) {
            win = window_open(h, self);
            h->measuring = &h->acc[mode];
        }
        uint64_t took = hub_step(h, step, ++id);
        struct mode_acc *m = h->measuring;
        if (m && m->nlat < m->cap)
            m->lat[m->nlat++] = took;
        now = now_ns();
        if (now >= next_sample) {
            run_sample(&r);
            next_sample += SAMPLE_PERIOD_NS;
        }
        next += period;
        if (next < now)
            next = now; /* behind: carry on at the rate, no burst */
    }
    if (h->measuring)
        window_close(h, self, &win, h->measuring);
    h->measuring = NULL;
    run_stop_producers(&r);
    sig_hub_shutdown(h->hub, base_now_ms());
    for (unsigned i = 0; i < HUB_PATIENTS; i++)
        sig_hub_disconnect(h->hub, &h->patient[i], base_now_ms());
    sig_hub_free(h->hub);
    run_finish(&r, res);
    if (h->errors)
        die("the hub answered a request with an error");
    res->producer_rate = rate;
    res->hub_rate = b->opt.hub_rate;
    for (int m = 0; m < 2; m++) {
        mode_result_of(&h->acc[m], &res->mode[m]);
        free(h->acc[m].lat);
        free(h->acc[m].app);
    }
    unpin(0, &b->all_cpus);
    free(h);
}

/* ------------------------------------------------------------------------- */
/* Output                                                                     */
/* ------------------------------------------------------------------------- */

static void print_tables(const struct result *res, size_t n)
{
    printf("\nwriter: events/s; WAL syncs (one per commit) while the load ran; its CPU, time in "
           "fdatasync and waiting for a CPU, as shares of the phase; others = CPUs other processes "
           "used meanwhile\n");
    printf("%-12s %4s %4s %7s %10s %11s %7s %7s %8s %7s %5s %6s %7s %7s %7s %7s %5s %5s %5s "
           "%6s\n",
           "phase", "s", "prod", "paced/s", "appended/s", "committed/s", "1st_s/s", "last_s/s",
           "retries", "backlog", "B/ev", "walB/ev", "walsync", "ev/sync", "sync_us", "ckpt_us",
           "cpu", "sync", "runq", "others");
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        printf("%-12s %4.1f %4u %7.0f %10.0f %11.0f %7.0f %8.0f %8" PRIu64 " %7" PRIu64
               " %5.0f %7.0f %7" PRIu64 " %7.1f %7.0f %7.0f %4.0f%% %4.0f%% %4.0f%% %6.2f\n",
               r->name, r->seconds, r->producers, r->producer_rate, r->appended_per_s,
               r->committed_per_s, r->first_1s_per_s, r->last_1s_per_s, r->retries, r->max_backlog,
               r->bytes_per_event, r->wal_written_per_event, r->wal_syncs, r->events_per_wal_sync,
               r->wal_sync_mean_us, r->db_sync_mean_us, 100 * r->writer_cpu, 100 * r->writer_sync,
               r->writer_runq_ms / 10 / r->seconds, r->other_cores);
    }
    for (size_t i = 0; i < n; i++)
        if (res[i].commit.count)
            printf("\ncommit: %" PRIu64 " single-event commits, append -> committed p50 %.0f us, "
                   "p99 %.0f us, max %.0f us; WAL fdatasync mean %.0f us, max %.0f us\n",
                   res[i].commit.count, res[i].commit.p50_us, res[i].commit.p99_us,
                   res[i].commit.max_us, res[i].wal_sync_mean_us, res[i].wal_sync_max_us);
    printf("\nsignalling thread, one hub request (a join or a leave), us. A and B slices "
           "alternate each second; app_ = inside audit_writer_append; dropped = the hub's events "
           "refused (queue full); cpu, runq (waiting for a CPU), writer cpu and sync: shares of "
           "the measured time; others = CPUs used by other processes\n");
    printf("%-16s %6s %6s %6s %7s %8s %5s %7s %7s %7s %7s %6s %5s %5s %6s %5s %6s\n", "phase",
           "reqs", "p50", "p99", "p99.9", "max", "B/A", "app_p50", "app_p99", "app_max", "dropped",
           "ev/s", "cpu", "runq", "w_cpu", "sync", "others");
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        if (!r->mode[MODE_A].request.count)
            continue;
        for (int m = 0; m < 2; m++) {
            const struct mode_result *x = &r->mode[m];
            char label[48];
            snprintf(label, sizeof(label), "%.20s %s", r->name, m == MODE_A ? "A" : "B");
            printf("%-16s %6" PRIu64 " %6.1f %6.1f %7.1f %8.1f %5.2f %7.2f %7.2f %7.1f %7" PRIu64
                   " %6.0f %4.0f%% %4.0f%% %5.0f%% %4.0f%% %6.2f\n",
                   label, x->request.count, x->request.p50_us, x->request.p99_us,
                   x->request.p999_us, x->request.max_us,
                   x->request.p99_us / r->mode[MODE_A].request.p99_us, x->append.p50_us,
                   x->append.p99_us, x->append.max_us, x->dropped, x->committed_per_s,
                   100 * x->hub_cpu, 100 * x->hub_runq, 100 * x->writer_cpu, 100 * x->writer_sync,
                   x->other_cores);
        }
    }
}

static void json_latency(FILE *f, const char *key, const struct latency *l)
{
    fprintf(f,
            ",\"%s\":{\"count\":%" PRIu64 ",\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,"
            "\"max_us\":%.2f,\"mean_us\":%.2f}",
            key, l->count, l->p50_us, l->p99_us, l->p999_us, l->max_us, l->mean_us);
}

static void write_json(const char *path, const struct bench *b, const struct result *res, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the --json file");
    char date[32];
    base_format_utc(base_wall_ms(), date, sizeof(date));
    fprintf(f,
            "{\"benchmark\":\"audit_load\",\"date\":\"%s\",\"sqlite\":\"%s\",\"options\":{"
            "\"seconds\":%u,\"producers\":%u,\"rate\":%.0f,\"hub_rate\":%.0f,\"busy_rate\":%.0f,"
            "\"commits\":%u},\"phases\":[",
            date, sqlite3_libversion(), b->opt.seconds, b->opt.producers, b->opt.rate,
            b->opt.hub_rate, b->opt.busy_rate, b->opt.commits);
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        fprintf(f,
                "%s{\"name\":\"%s\",\"seconds\":%.3f,\"producers\":%u,\"producer_rate\":%.0f,"
                "\"appended\":%" PRIu64 ",\"committed\":%" PRIu64 ",\"rows\":%" PRIu64
                ",\"retries\":%" PRIu64 ",\"appended_per_s\":%.0f,\"committed_per_s\":%.0f,"
                "\"first_1s_per_s\":%.0f,\"last_1s_per_s\":%.0f,\"max_backlog\":%" PRIu64
                ",\"drain_ms\":%.1f,"
                "\"db_bytes\":%.0f,\"bytes_per_event\":%.1f,\"wal_written_per_event\":%.0f,"
                "\"db_written_per_event\":%.0f,\"wal_syncs\":%" PRIu64 ",\"db_syncs\":%" PRIu64
                ",\"wal_sync_mean_us\":%.1f,\"wal_sync_max_us\":%.1f,"
                "\"db_sync_mean_us\":%.1f,\"events_per_wal_sync\":%.2f,\"writer_cpu\":%.4f,"
                "\"writer_sync\":%.4f,\"writer_runq_ms\":%.1f,\"self_cores\":%.3f,"
                "\"other_cores\":%.3f",
                i ? "," : "", r->name, r->seconds, r->producers, r->producer_rate, r->appended,
                r->committed, r->rows, r->retries, r->appended_per_s, r->committed_per_s,
                r->first_1s_per_s, r->last_1s_per_s, r->max_backlog, r->drain_ms, r->db_bytes,
                r->bytes_per_event, r->wal_written_per_event, r->db_written_per_event, r->wal_syncs,
                r->db_syncs, r->wal_sync_mean_us, r->wal_sync_max_us, r->db_sync_mean_us,
                r->events_per_wal_sync, r->writer_cpu, r->writer_sync, r->writer_runq_ms,
                r->self_cores, r->other_cores);
        if (r->commit.count)
            json_latency(f, "commit", &r->commit);
        if (r->mode[MODE_A].request.count) {
            fprintf(f, ",\"hub_rate\":%.0f", r->hub_rate);
            for (int m = 0; m < 2; m++) {
                const struct mode_result *x = &r->mode[m];
                fprintf(f, ",\"%s\":{\"measured_s\":%.3f", m == MODE_A ? "A" : "B", x->measured_s);
                json_latency(f, "request", &x->request);
                json_latency(f, "append", &x->append);
                fprintf(f,
                        ",\"events\":%" PRIu64 ",\"dropped\":%" PRIu64
                        ",\"committed_per_s\":%.0f,\"hub_cpu\":%.4f,\"hub_runq\":%.4f,"
                        "\"writer_cpu\":%.4f,\"writer_sync\":%.4f,\"other_cores\":%.3f}",
                        x->events, x->dropped, x->committed_per_s, x->hub_cpu, x->hub_runq,
                        x->writer_cpu, x->writer_sync, x->other_cores);
            }
        }
        /* Every 100 ms: [seconds since the start, appended, committed]. */
        fprintf(f, ",\"samples\":[");
        for (size_t j = 0; j < r->nsamples; j++)
            fprintf(f, "%s[%.1f,%" PRIu64 ",%" PRIu64 "]", j ? "," : "",
                    (double)(r->samples[j].t_ns - r->t_start) / 1e9, r->samples[j].appended,
                    r->samples[j].committed);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0)
        die("cannot write the --json file");
}

static bool wanted(const struct options *o, const char *phase)
{
    return !o->only || strcmp(o->only, phase) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    if (!b)
        die("out of memory");
    b->opt = (struct options){.seconds = 10,
                              .producers = 2,
                              .rate = 2000,
                              .hub_rate = 2000,
                              .commits = 200,
                              .cpu_hub = -1,
                              .cpu_producers = -1,
                              .cpu_writer = -1};
    struct options *o = &b->opt;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            die("every option takes a value");
        if (strcmp(argv[i], "--seconds") == 0)
            o->seconds = (unsigned)atoi(v);
        else if (strcmp(argv[i], "--producers") == 0)
            o->producers = (unsigned)atoi(v);
        else if (strcmp(argv[i], "--rate") == 0)
            o->rate = atof(v);
        else if (strcmp(argv[i], "--hub-rate") == 0)
            o->hub_rate = atof(v);
        else if (strcmp(argv[i], "--busy-rate") == 0)
            o->busy_rate = atof(v);
        else if (strcmp(argv[i], "--commits") == 0)
            o->commits = (unsigned)atoi(v);
        else if (strcmp(argv[i], "--json") == 0)
            o->json = v;
        else if (strcmp(argv[i], "--only") == 0)
            o->only = v;
        else if (strcmp(argv[i], "--cpu-hub") == 0)
            o->cpu_hub = atoi(v);
        else if (strcmp(argv[i], "--cpu-producers") == 0)
            o->cpu_producers = atoi(v);
        else if (strcmp(argv[i], "--cpu-writer") == 0)
            o->cpu_writer = atoi(v);
        else
            die("usage: audit_load [--seconds D] [--producers P] [--rate R] [--hub-rate H] "
                "[--busy-rate B] [--commits N] [--json FILE] [--only PHASE] [--cpu-hub C] "
                "[--cpu-producers C] [--cpu-writer C]");
    }
    if (o->seconds < 2 || o->producers < 1 || o->producers > MAX_PRODUCERS || o->rate <= 0 ||
        o->hub_rate <= 0 || o->commits < 1)
        die("bad option value (--seconds >= 2, 1 <= --producers <= 16, rates > 0)");

    if (sched_getaffinity(0, sizeof(b->all_cpus), &b->all_cpus) != 0)
        die("cannot read the CPU affinity");
    const char *tmp = getenv("TMPDIR");
    snprintf(b->root, sizeof(b->root), "%s/tabib-audit-load-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(b->root))
        die("cannot create the temporary data dir");
    char err[256], log_path[300];
    snprintf(log_path, sizeof(log_path), "%s/tabib.log", b->root);
    /* The writer's checkpoint lines (one per 1000 events) go here, as in the server. */
    b->log = base_logger_new(log_path, BASE_LOG_TEXT, BASE_LOG_INFO, err, sizeof(err));
    if (!b->log)
        die(err);
    timed_vfs_install(&b->vfs, &b->sync);
    fprintf(stderr, "audit_load: data under %s, %u s per phase\n", b->root, o->seconds);

    struct result res[5];
    memset(res, 0, sizeof(res));
    size_t n = 0;
    if (wanted(o, "commit"))
        phase_commit(b, &res[n++]);
    if (wanted(o, "throughput")) {
        phase_producers(b, "throughput", o->producers, 0, &res[n]);
        /*
         * Enough to keep the writer committing without a pause, with room to
         * spare: the signalling thread and the producer take CPU the writer
         * had to itself here.
         */
        if (o->busy_rate <= 0)
            o->busy_rate = 0.5 * res[n].committed_per_s - o->hub_rate;
        if (o->busy_rate < 1)
            o->busy_rate = 1;
        n++;
    }
    if (wanted(o, "paced"))
        phase_producers(b, "paced", o->producers, o->rate, &res[n++]);
    if (wanted(o, "saturated"))
        phase_hub(b, "saturated", o->producers, 0, &res[n++]);
    if (wanted(o, "paced-busy")) {
        if (o->busy_rate <= 0)
            die("--only paced-busy needs --busy-rate");
        phase_hub(b, "paced-busy", 1, o->busy_rate, &res[n++]);
    }
    if (n == 0)
        die("--only: no such phase (commit, throughput, paced, saturated, paced-busy)");

    print_tables(res, n);
    if (o->json)
        write_json(o->json, b, res, n);
    sqlite3_vfs_unregister(&b->vfs.base);
    base_logger_free(b->log);
    for (size_t i = 0; i < n; i++)
        free(res[i].samples);
    if (nftw(b->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "audit_load: could not remove %s\n", b->root);
    free(b);
    return 0;
}
