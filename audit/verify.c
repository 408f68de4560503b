/*
 * verify.c - `tabib audit verify`: the hash chain checked end to end.
 *
 * Opens the database read-only, recomputes each event's hash from the one
 * before it (chain.h) in id order, and stops at the first that differs:
 * that event was changed, or the one before it was removed, or it was put
 * in. Removing events from the end leaves a shorter, valid chain: the head
 * hash printed here is compared with the checkpoints in the server's log.
 */
#include "audit.h"
#include "chain.h"

#include <inttypes.h>
#include <string.h>

#include <sqlite3.h>

static const char usage[] = "usage: tabib audit verify [--data-dir DIR]\n";

int audit_chain_walk(sqlite3 *db, struct audit_chain_walk *out)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *rows = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, ts_ms, type, actor_role, actor_id, clinic, consultation, "
                           "outcome, source, detail, hash FROM events ORDER BY id",
                           -1, &rows, NULL) != SQLITE_OK)
        return -1;
    int rc = -1, step;
    while ((step = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(rows, 0);
        const char *fields[AUDIT_FIELD_COUNT];
        for (int f = 0; f < AUDIT_FIELD_COUNT; f++)
            fields[f] = (const char *)sqlite3_column_text(rows, 2 + f);
        uint8_t want[AUDIT_HASH_BYTES];
        if (audit_chain_hash(out->head, id, sqlite3_column_int64(rows, 1), fields, want) != 0)
            goto done;
        const void *stored = sqlite3_column_blob(rows, 10);
        if (sqlite3_column_bytes(rows, 10) != AUDIT_HASH_BYTES ||
            memcmp(stored, want, AUDIT_HASH_BYTES) != 0) {
            out->bad_id = id;
            out->bad_ts_ms = sqlite3_column_int64(rows, 1);
            snprintf(out->bad_type, sizeof(out->bad_type), "%s",
                     fields[AUDIT_FIELD_TYPE] ? fields[AUDIT_FIELD_TYPE] : "(none)");
            rc = 1;
            goto done;
        }
        memcpy(out->head, want, sizeof(out->head));
        out->count++;
    }
    rc = step == SQLITE_DONE ? 0 : -1;
done:
    sqlite3_finalize(rows);
    return rc;
}

int audit_verify_main(int argc, char **argv, FILE *out, FILE *errout)
{
    const char *data_dir = "data";
    if (argc < 1 || strcmp(argv[0], "verify") != 0) {
        fputs(usage, errout);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else {
            fprintf(errout, "tabib audit: unexpected argument \"%s\"\n%s", argv[i], usage);
            return 2;
        }
    }
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/audit.db", data_dir) >= (int)sizeof(path)) {
        fprintf(errout, "tabib audit: the data dir path is too long\n");
        return 2;
    }
    sqlite3 *db = NULL;
    int status = 2;
    struct audit_chain_walk walk;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(errout, "tabib audit: cannot read \"%s\": %s\n", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    int rc = audit_chain_walk(db, &walk);
    if (rc < 0) {
        fprintf(errout, "tabib audit: cannot read \"%s\": %s\n", path, sqlite3_errmsg(db));
        goto out;
    }
    if (rc == 1) {
        fprintf(out, "events verified: %" PRIu64 "\n", walk.count);
        fprintf(errout,
                "tabib audit: the chain breaks at event %" PRId64 " (type %s, time %" PRId64
                " ms): it was changed, or an event before it was "
                "removed, or it was put in\n",
                walk.bad_id, walk.bad_type, walk.bad_ts_ms);
        status = 1;
        goto out;
    }
    char hex[2 * AUDIT_HASH_BYTES + 1];
    audit_chain_hex(walk.head, hex);
    fprintf(out, "events verified: %" PRIu64 "\nhead: %s\n", walk.count, hex);
    status = 0;
out:
    sqlite3_close(db);
    return status;
}
