/*
 * fuzz_audit_query.c - an admin's audit search from the network: URL
 * filters as "key=value&key=value", the first byte choosing what is searched
 * (sessions or events), the format, a page or an export, and the admin's
 * scope. The search runs for real on a small audit store. Whatever comes
 * in, the answer has a status and a body; a 200 in JSON or FHIR parses as
 * JSON; a clinic-scoped admin's answer never names the other clinic.
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audit.h"
#include "query.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct audit_store store;
static bool opened;
static char dir[] = "/tmp/tabib-fuzz-audit-XXXXXX";

/* The store lives for the process; its files go with it. */
static void remove_store(void)
{
    static const char *const files[] = {"audit.db", "audit.db-wal", "audit.db-shm"};
    store_close(&store);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* A store with a few consultations in two clinics, made once per process. */
static void open_store(void)
{
    char err[256];
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    atexit(remove_store);
    FUZZ_CHECK(store_open(&store, dir, NULL, err, sizeof(err)) == 0);
    FUZZ_CHECK(store_begin(&store, err, sizeof(err)) == 0);
    static const char *const clinics[] = {"alpha", "beta"};
    static const char *const types[] = {"queue_joined", "consultation_called",
                                        "consultation_started", "consultation_ended"};
    for (int c = 0; c < 6; c++) {
        char id[32];
        snprintf(id, sizeof(id), "c_%d", c);
        for (int t = 0; t < 4; t++) {
            struct store_event ev = {.ts_ms = 1795752800000 + c * 1000 + t * 100};
            ev.field[AUDIT_FIELD_TYPE] = types[t];
            ev.field[AUDIT_FIELD_ACTOR_ROLE] = t == 1 ? "doctor" : "patient";
            ev.field[AUDIT_FIELD_ACTOR_ID] = t == 1 ? "dr.a" : id;
            ev.field[AUDIT_FIELD_CLINIC] = clinics[c % 2];
            ev.field[AUDIT_FIELD_CONSULTATION] = id;
            ev.field[AUDIT_FIELD_OUTCOME] = "ok";
            ev.field[AUDIT_FIELD_DETAIL] = t == 0   ? "{\"name\":\"مريم, \\\"x\\\"\"}"
                                           : t == 3 ? "{\"reason\":\"completed\"}"
                                                    : "{}";
            FUZZ_CHECK(store_append(&store, &ev, err, sizeof(err)) == 0);
        }
    }
    FUZZ_CHECK(store_end(&store, true, err, sizeof(err)) == 0);
    opened = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!opened)
        open_store();
    if (size < 1)
        return 0;
    uint8_t choice = data[0];
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct audit_request *rq = calloc(1, sizeof(*rq));
    audit_query_init(&rq->query, choice & 1 ? AUDIT_QUERY_EVENTS : AUDIT_QUERY_SESSIONS);
    rq->format = (enum audit_format)((choice >> 1) % 3);
    rq->export_all = choice & 8;
    bool scoped = choice & 16;
    rq->query.all_clinics = !scoped;
    if (scoped) {
        snprintf(rq->query.scope[0], AUDIT_ID_MAX, "alpha");
        rq->query.scope_count = 1;
    }
    bool refused = false;
    char *save = NULL;
    for (char *pair = strtok_r(text, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *value = strchr(pair, '=');
        if (value)
            *value++ = '\0';
        char err[256];
        int rc = audit_query_set(&rq->query, pair, value ? value : "", err, sizeof(err));
        if (rc < 0)
            FUZZ_CHECK(err[0] != '\0');
        refused |= rc != 0;
    }
    if (!refused) {
        audit_query_answer(store.db, rq);
        FUZZ_CHECK(rq->status == 200 || rq->status == 400 || rq->status == 413 ||
                   rq->status == 500);
        FUZZ_CHECK(rq->body && rq->len == strlen(rq->body) && rq->content_type);
        if (rq->format != AUDIT_FORMAT_CSV || rq->status != 200) {
            json_t *doc = json_loadb(rq->body, rq->len, 0, NULL);
            FUZZ_CHECK(doc != NULL);
            json_decref(doc);
        }
        if (scoped && rq->status == 200)
            FUZZ_CHECK(!strstr(rq->body, "beta"));
    }
    audit_request_free(rq);
    free(text);
    return 0;
}
