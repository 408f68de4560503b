/*
 * cli.c - `tabib audit ...`: the audit log from the command line, for an
 * operator on the server's machine. `verify` checks the chain; `export`
 * writes what an admin could export over HTTPS, and is itself recorded in
 * the log (actor "operator", the system user's name) before anything is
 * written out: an export that cannot be recorded is not made.
 */
#include "audit.h"
#include "query.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: tabib audit verify [--data-dir DIR]\n"
    "       tabib audit export --format csv|fhir|json [--of events|sessions] [--data-dir DIR]\n"
    "                          [--output FILE] [--clinic ID] [--doctor USER] [--patient REF]\n"
    "                          [--consultation ID] [--type TYPE] [--outcome OUTCOME]\n"
    "                          [--end-reason REASON] [--from TIME] [--to TIME]\n"
    "TIME is UTC: 2026-11-27T10:00:00Z, 2026-11-27, or milliseconds since 1970.\n";

static int export_main(int argc, char **argv, FILE *out, FILE *errout)
{
    struct audit_request *rq = calloc(1, sizeof(*rq));
    if (!rq) {
        fputs("tabib audit: out of memory\n", errout);
        return 2;
    }
    const char *data_dir = "data", *output = NULL;
    int format = -1;
    audit_query_init(&rq->query, AUDIT_QUERY_EVENTS);
    rq->query.all_clinics = true; /* the operator of the machine sees the whole log */
    rq->export_all = true;
    int status = 2;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strncmp(opt, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(errout, "tabib audit export: unexpected argument \"%s\"\n%s", opt, usage);
            goto out;
        }
        const char *value = argv[++i];
        char key[32], err[256];
        snprintf(key, sizeof(key), "%s", opt + 2);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        if (strcmp(key, "data_dir") == 0) {
            data_dir = value;
        } else if (strcmp(key, "output") == 0) {
            output = value;
        } else if (strcmp(key, "format") == 0) {
            if ((format = audit_format_parse(value)) < 0) {
                fprintf(errout, "tabib audit export: --format is csv, fhir or json\n");
                goto out;
            }
        } else if (strcmp(key, "of") == 0) {
            if (strcmp(value, "events") != 0 && strcmp(value, "sessions") != 0) {
                fprintf(errout, "tabib audit export: --of is events or sessions\n");
                goto out;
            }
            rq->query.kind = value[0] == 'e' ? AUDIT_QUERY_EVENTS : AUDIT_QUERY_SESSIONS;
        } else {
            int rc = strcmp(key, "cursor") == 0 || strcmp(key, "limit") == 0
                         ? 1
                         : audit_query_set(&rq->query, key, value, err, sizeof(err));
            if (rc != 0) {
                fprintf(errout, "tabib audit export: %s\n%s", rc > 0 ? "unknown option" : err,
                        rc > 0 ? usage : "");
                goto out;
            }
        }
    }
    if (format < 0) {
        fprintf(errout, "tabib audit export: say --format csv, fhir or json\n%s", usage);
        goto out;
    }
    rq->format = (enum audit_format)format;
    char err[512];
    sqlite3 *db = NULL;
    if (audit_query_open(data_dir, &db, err, sizeof(err)) != 0) {
        fprintf(errout, "tabib %s\n", err);
        goto out;
    }
    audit_query_answer(db, rq);
    sqlite3_close(db);
    struct passwd *pw = getpwuid(getuid());
    snprintf(rq->actor_role, sizeof(rq->actor_role), "operator");
    snprintf(rq->actor_id, sizeof(rq->actor_id), "%s", pw ? pw->pw_name : "unknown");
    char *detail = audit_query_describe(rq);
    struct audit_event ev = {.type = "audit_export",
                             .actor_role = rq->actor_role,
                             .actor_id = rq->actor_id,
                             .clinic = rq->query.clinic[0] ? rq->query.clinic : NULL,
                             .outcome = rq->status == 200 ? "ok" : "failed",
                             .source = NULL, /* the machine itself */
                             .detail_json = detail};
    int recorded = audit_append_once(data_dir, &ev, err, sizeof(err));
    free(detail);
    if (recorded != 0) {
        fprintf(errout,
                "tabib audit export: the export could not be recorded in the log, so it "
                "was not made: %s\n",
                err);
        goto out;
    }
    if (rq->status != 200) {
        fprintf(errout, "tabib audit export: %.*s\n", (int)rq->len, rq->body ? rq->body : "");
        status = 1;
        goto out;
    }
    /* Patients' names are in it: readable by its owner only. */
    int fd = output ? open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    FILE *dest = output ? (fd >= 0 ? fdopen(fd, "wb") : NULL) : out;
    if (output && fd >= 0 && !dest)
        close(fd);
    bool written = dest && fwrite(rq->body, 1, rq->len, dest) == rq->len;
    if (dest && (output ? fclose(dest) : fflush(dest)) != 0)
        written = false;
    if (!written) {
        fprintf(errout, "tabib audit export: cannot write %s\n", output ? output : "the output");
        goto out;
    }
    fprintf(errout, "tabib audit export: %u %s\n", rq->rows,
            rq->query.kind == AUDIT_QUERY_EVENTS ? "events" : "sessions");
    status = 0;
out:
    audit_request_free(rq);
    return status;
}

int audit_main(int argc, char **argv, FILE *out, FILE *errout)
{
    if (argc >= 1 && strcmp(argv[0], "verify") == 0)
        return audit_verify_main(argc, argv, out, errout);
    if (argc >= 1 && strcmp(argv[0], "export") == 0)
        return export_main(argc, argv, out, errout);
    fputs(usage, errout);
    return 2;
}
