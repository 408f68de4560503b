/*
 * chain.h - the audit log's hash chain (private to audit/: the writer and
 * `tabib audit verify` share it).
 *
 * Each event stores hash = SHA-256(previous event's hash || its canonical
 * bytes), the first event's previous hash being 32 zero bytes. The
 * canonical bytes are every column in a fixed order, each self-delimiting:
 * the id and the time as 8-byte big-endian integers, then each text column
 * as a 1-byte presence flag and, when present, a 4-byte big-endian length
 * and the bytes. The id is in it, so an event moved, removed or slipped in
 * breaks the chain at that point; changing any byte of a column breaks it
 * at that event.
 */
#ifndef TABIB_AUDIT_CHAIN_H
#define TABIB_AUDIT_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_HASH_BYTES 32

/* The text columns after ts_ms, in the order they are hashed (and stored). */
enum audit_field {
    AUDIT_FIELD_TYPE,
    AUDIT_FIELD_ACTOR_ROLE,
    AUDIT_FIELD_ACTOR_ID,
    AUDIT_FIELD_CLINIC,
    AUDIT_FIELD_CONSULTATION,
    AUDIT_FIELD_OUTCOME,
    AUDIT_FIELD_SOURCE,
    AUDIT_FIELD_DETAIL,
    AUDIT_FIELD_COUNT
};

/*
 * The hash of event `id` at `ts_ms` with `fields` (NULL = absent) after the
 * event whose hash is `prev`. Returns 0, or -1 when OpenSSL fails.
 */
int audit_chain_hash(const uint8_t prev[AUDIT_HASH_BYTES], int64_t id, int64_t ts_ms,
                     const char *const fields[AUDIT_FIELD_COUNT], uint8_t out[AUDIT_HASH_BYTES]);

/* Lower-case hex of a hash into `out` (2 * AUDIT_HASH_BYTES + 1 bytes). */
void audit_chain_hex(const uint8_t hash[AUDIT_HASH_BYTES], char *out);

/* What walking the whole chain found (audit_chain_walk()). */
struct audit_chain_walk {
    uint64_t count;                 /* events whose hash is right, from the first on */
    uint8_t head[AUDIT_HASH_BYTES]; /* the last good one's hash */
    int64_t bad_id, bad_ts_ms;      /* the first bad event, when there is one */
    char bad_type[64];
};

/*
 * Recomputes every event's hash in id order on `db` (read-only is enough).
 * Returns 0 when all are right, 1 at the first that is not (filled in
 * `out`), -1 when the database cannot be read.
 */
struct sqlite3;
int audit_chain_walk(struct sqlite3 *db, struct audit_chain_walk *out);

#endif
