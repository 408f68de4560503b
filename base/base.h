/*
 * base.h - what every Tabib module may use: structured logging, the
 * inter-thread mailbox and batched UDP sending.
 *
 * This is the only module that all others depend on; it depends on nothing of
 * Tabib. Everything here is safe to call from any thread unless a function's
 * contract says otherwise.
 */
#ifndef TABIB_BASE_H
#define TABIB_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------- */
/* Logging                                                                    */
/* ------------------------------------------------------------------------- */

enum base_log_level {
    BASE_LOG_DEBUG = 0,
    BASE_LOG_INFO = 1,
    BASE_LOG_WARN = 2,
    BASE_LOG_ERROR = 3,
};

enum base_log_format {
    BASE_LOG_TEXT = 0, /* 2026-11-26T10:00:00.123Z INFO  http: listening port=8443 */
    BASE_LOG_JSON = 1, /* {"ts":"...","level":"info","module":"http","msg":"listening",...} */
};

enum base_log_field_kind {
    BASE_LOG_FIELD_STR = 0,
    BASE_LOG_FIELD_INT = 1,
};

/* One key=value field of a log line. Build them with LOG_STR / LOG_INT. */
struct base_log_field {
    const char *key;
    enum base_log_field_kind kind;
    const char *str;
    long long num;
};

#define LOG_STR(k, v) ((struct base_log_field){.key = (k), .kind = BASE_LOG_FIELD_STR, .str = (v)})
#define LOG_INT(k, v)                                                                              \
    ((struct base_log_field){.key = (k), .kind = BASE_LOG_FIELD_INT, .num = (long long)(v)})

struct base_logger;

/*
 * Returns a new logger writing to `path` (appending, created 0640), or to
 * standard error when `path` is NULL or empty. Returns NULL and fills `err`
 * when the file cannot be opened. Free with base_logger_free().
 */
struct base_logger *base_logger_new(const char *path, enum base_log_format format,
                                    enum base_log_level min_level, char *err, size_t errlen);

/* Closes the log file (if any) and frees the logger. NULL does nothing. */
void base_logger_free(struct base_logger *log);

/*
 * Reopens the log file by name (after logrotate moved it). The descriptor is
 * swapped with dup2(), so lines written concurrently by other threads go to
 * either the old or the new file, never to a closed descriptor. Returns 0, or a
 * negative errno value (the old file stays in use). Does nothing for stderr.
 */
int base_logger_reopen(struct base_logger *log);

/* True when a line at `level` would be written. */
bool base_logger_enabled(const struct base_logger *log, enum base_log_level level);

/*
 * Writes one line: timestamp (UTC, milliseconds), level, module, message and
 * `nfields` fields, as text or JSON. Each line is a single write(), so lines
 * from different threads never interleave. Lines longer than 4 KiB are cut.
 * Never call this on the packet path.
 */
void base_log_emit(struct base_logger *log, enum base_log_level level, const char *module,
                   const char *msg, const struct base_log_field *fields, size_t nfields);

/*
 * base_log(log, level, module, msg, fields...): the fields are zero or more
 * LOG_STR()/LOG_INT() values. The array's first element is a placeholder so
 * that the macro also works with no fields at all.
 */
#define base_log(log, level, module, msg, ...)                                                     \
    do {                                                                                           \
        const struct base_log_field base_log_fields_[] = {{.key = NULL}, __VA_ARGS__};             \
        base_log_emit((log), (level), (module), (msg), base_log_fields_ + 1,                       \
                      sizeof(base_log_fields_) / sizeof(base_log_fields_[0]) - 1);                 \
    } while (0)

#define log_debug(log, module, ...) base_log((log), BASE_LOG_DEBUG, (module), __VA_ARGS__)
#define log_info(log, module, ...)  base_log((log), BASE_LOG_INFO, (module), __VA_ARGS__)
#define log_warn(log, module, ...)  base_log((log), BASE_LOG_WARN, (module), __VA_ARGS__)
#define log_error(log, module, ...) base_log((log), BASE_LOG_ERROR, (module), __VA_ARGS__)

/* "debug", "info", "warn", "error"; NULL for an unknown level. */
const char *base_log_level_name(enum base_log_level level);

/* Parses a level name; returns 0 or -1 when the name is unknown. */
int base_log_level_parse(const char *name, enum base_log_level *out);

/* ------------------------------------------------------------------------- */
/* Mailbox: a bounded multi-producer, single-consumer message queue           */
/* ------------------------------------------------------------------------- */

/*
 * Threads talk only through mailboxes. A message is a small value; when it
 * carries `ptr`, ownership of what `ptr` points to moves with the message
 * (the message type's documentation says how to free it).
 *
 * Pushing never blocks and never takes a lock: the queue is a ring of cells
 * with sequence numbers (Vyukov's bounded queue). After a push the consumer is
 * woken, either through the mailbox's own eventfd (for threads with an epoll
 * loop) or through a wake callback (lws_cancel_service for the signalling
 * thread).
 */
struct base_msg {
    uint32_t type;   /* BASE_MSG_* or a module's own type (>= BASE_MSG_MODULE_FIRST) */
    uint32_t sender; /* a thread id: BASE_THREAD_* */
    uint64_t arg;    /* small payload: a sequence number, an id, a count */
    void *ptr;       /* larger payload; owned by the receiver once popped */
};

/* Message types every thread understands. */
enum base_msg_type {
    BASE_MSG_PROBE = 1,       /* health probe: ptr = struct base_mailbox * to reply to */
    BASE_MSG_PROBE_REPLY = 2, /* answer to a probe: arg = the probe's arg */
    BASE_MSG_STOP = 3,        /* finish what is queued, then leave the thread's loop */
    BASE_MSG_MODULE_FIRST = 64,
};

/* Thread ids used as `sender`. Media worker i is BASE_THREAD_MEDIA_FIRST + i. */
enum base_thread_id {
    BASE_THREAD_SIGNALING = 0,
    BASE_THREAD_AUDIT = 1,
    BASE_THREAD_MEDIA_FIRST = 16,
};

struct base_mailbox;

typedef void (*base_mailbox_wake_fn)(void *arg);

/*
 * Returns a new mailbox holding up to `capacity` messages (rounded up to a
 * power of two, at least 2). With `wake` NULL the mailbox owns an eventfd that
 * becomes readable after each push (see base_mailbox_fd); otherwise `wake(arg)`
 * is called after each push, from the pushing thread. Returns NULL on failure.
 * Free with base_mailbox_free().
 */
struct base_mailbox *base_mailbox_new(size_t capacity, base_mailbox_wake_fn wake, void *wake_arg);

/*
 * Frees the mailbox. Messages still queued are dropped without looking at
 * their `ptr`: drain first if they own memory. NULL does nothing.
 */
void base_mailbox_free(struct base_mailbox *mb);

/* The eventfd to poll for readability, or -1 for a mailbox with a wake callback. */
int base_mailbox_fd(const struct base_mailbox *mb);

/*
 * Queues a copy of `msg` (any thread). Returns 0, or -EAGAIN when the mailbox
 * is full (the message is not queued and the caller still owns `msg->ptr`).
 */
int base_mailbox_push(struct base_mailbox *mb, const struct base_msg *msg);

/*
 * Takes the oldest message into `out` (consumer thread only). Returns true
 * when a message was taken, false when the mailbox is empty.
 */
bool base_mailbox_pop(struct base_mailbox *mb, struct base_msg *out);

/* Resets the eventfd after a wakeup (consumer thread only); then pop until empty. */
void base_mailbox_clear_wakeup(struct base_mailbox *mb);

/* Answers a BASE_MSG_PROBE on behalf of thread `self`. Returns 0 or -EAGAIN. */
int base_mailbox_answer_probe(const struct base_msg *probe, uint32_t self);

/* ------------------------------------------------------------------------- */
/* UDP batches: sendmmsg with generic segmentation offload                    */
/* ------------------------------------------------------------------------- */

/*
 * A media server sends most of its datagrams in runs: the packets of one video
 * frame, to one receiver, all of one size but the last. With UDP generic
 * segmentation offload (UDP_SEGMENT, Linux 4.18) such a run goes down the
 * stack once as one large buffer and is cut into datagrams at the bottom (by
 * the network card, or just before the driver), so the per-datagram cost of
 * routing, netfilter and the device queue is paid once per run. The
 * datagrams on the wire are exactly the ones we would have sent one by one.
 */
#define BASE_UDP_BATCH_MAX 64 /* datagrams per base_udp_send() call */

struct mmsghdr;
struct msghdr;
struct base_udp_sender;

/* What one base_udp_send() did. */
struct base_udp_sent {
    unsigned datagrams; /* handed to the kernel */
    unsigned failed;    /* refused by the kernel (buffer full, address gone), skipped */
    unsigned messages;  /* sendmmsg messages after joining runs: datagrams + failed without GSO */
    uint64_t bytes;     /* of the datagrams handed to the kernel */
};

/*
 * Returns a sender for the UDP socket `fd` (not owned), or NULL when out of
 * memory. It joins runs when `want_gso` is true and the kernel knows
 * UDP_SEGMENT; `send_flags` go to every sendmmsg (MSG_DONTWAIT, or 0 for a
 * blocking socket). Free with base_udp_sender_free(). Allocates once; sending
 * allocates nothing.
 */
struct base_udp_sender *base_udp_sender_new(int fd, bool want_gso, int send_flags);
void base_udp_sender_free(struct base_udp_sender *s);

/* Whether runs are joined: asked for, and the kernel knows UDP_SEGMENT. */
bool base_udp_sender_gso(const struct base_udp_sender *s);

/*
 * Sends `count` (<= BASE_UDP_BATCH_MAX) datagrams, in order. Each message of
 * `datagrams` has its destination and exactly one iovec, and the iovecs are
 * consecutive entries of one array (datagrams[k].msg_hdr.msg_iov ==
 * datagrams[0].msg_hdr.msg_iov + k): a run is then sent as one message whose
 * iovecs are the run's. A run is consecutive datagrams to the same address,
 * each as long as the first except a shorter last one, at most 64 and 64 KB.
 * A datagram the kernel refuses is counted in `sent->failed` and skipped; a
 * run the kernel will not segment (EMSGSIZE: a segment over the path's MTU;
 * EIO: a route through IPsec; EINVAL) is sent again datagram by datagram.
 * Datagrams beyond BASE_UDP_BATCH_MAX are counted failed, not sent.
 */
void base_udp_send(struct base_udp_sender *s, struct mmsghdr *datagrams, unsigned count,
                   struct base_udp_sent *sent);

/*
 * For a socket with UDP_GRO on: the segment size of a received buffer that
 * holds several datagrams of one sender (the UDP_GRO control message), or 0
 * when the buffer is one datagram. Every segment is that long but the last.
 */
size_t base_udp_gro_segment_size(const struct msghdr *received);

/* ------------------------------------------------------------------------- */
/* Time                                                                       */
/* ------------------------------------------------------------------------- */

/* Monotonic clock in milliseconds (for timeouts and durations). */
int64_t base_now_ms(void);

/* Wall clock in milliseconds since the Unix epoch, UTC (for timestamps). */
int64_t base_wall_ms(void);

/* Formats a wall-clock time as 2026-11-26T10:00:00.123Z into `out` (>= 25 bytes). */
void base_format_utc(int64_t wall_ms, char *out, size_t outlen);

#endif
