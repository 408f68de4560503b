/*
 * query.c - searches and exports of the audit log: filters from text, one
 * SQL statement with every value bound, and the answer as a JSON page, CSV
 * (RFC 4180) or a FHIR R4 Bundle of AuditEvent resources.
 *
 * Everything a filter holds comes from an admin's URL or command line: it is
 * only ever bound as an SQL parameter, never pasted into the statement.
 */
#include "query.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "chain.h"
#include "store.h"

/* ------------------------------------------------------------------------- */
/* Filters                                                                    */
/* ------------------------------------------------------------------------- */

void audit_query_init(struct audit_query *q, enum audit_query_kind kind)
{
    memset(q, 0, sizeof(*q));
    q->kind = kind;
    q->limit = AUDIT_PAGE_DEFAULT;
}

int audit_format_parse(const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, "json") == 0)
        return AUDIT_FORMAT_JSON;
    if (strcmp(name, "csv") == 0)
        return AUDIT_FORMAT_CSV;
    if (strcmp(name, "fhir") == 0)
        return AUDIT_FORMAT_FHIR;
    return -1;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (no timegm's TZ games). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly `n` digits at *p. */
static bool digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + (unsigned)((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/*
 * A UTC time: milliseconds since 1970, "YYYY-MM-DD", or
 * "YYYY-MM-DDTHH:MM[:SS[.mmm]]Z". Returns 0 or -1.
 */
static int parse_time(const char *text, int64_t *out_ms)
{
    const char *p = text;
    if (*p && strspn(p, "0123456789") == strlen(p) && strlen(p) <= 15) {
        *out_ms = strtoll(p, NULL, 10);
        return 0;
    }
    unsigned y, mo, d, h = 0, mi = 0, s = 0, ms = 0;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return -1;
    if (*p == 'T') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &s))
                return -1;
            if (*p == '.') {
                p++;
                if (!digits(&p, 3, &ms))
                    return -1;
            }
        }
        if (*p++ != 'Z')
            return -1;
    }
    static const unsigned month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || s > 59)
        return -1;
    *out_ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)s * 1000 + ms;
    return 0;
}

/* Copies a filter value: printable text only (UTF-8 letters included), within `cap`. */
static int set_text(char *dst, size_t cap, const char *key, const char *value, char *err,
                    size_t errlen)
{
    size_t n = strlen(value);
    if (n == 0 || n >= cap) {
        snprintf(err, errlen, "%s must be 1-%zu bytes", key, cap - 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
            snprintf(err, errlen, "%s holds a control character", key);
            return -1;
        }
    memcpy(dst, value, n + 1);
    return 0;
}

int audit_query_set(struct audit_query *q, const char *key, const char *value, char *err,
                    size_t errlen)
{
    static const struct {
        const char *key;
        size_t offset, size;
    } texts[] = {
        {"clinic", offsetof(struct audit_query, clinic), AUDIT_ID_MAX},
        {"doctor", offsetof(struct audit_query, doctor), AUDIT_ID_MAX},
        {"patient", offsetof(struct audit_query, patient), AUDIT_TEXT_MAX},
        {"consultation", offsetof(struct audit_query, consultation), AUDIT_ID_MAX},
        {"type", offsetof(struct audit_query, type), AUDIT_ID_MAX},
        {"outcome", offsetof(struct audit_query, outcome), 16},
        {"end_reason", offsetof(struct audit_query, end_reason), AUDIT_ID_MAX},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (strcmp(key, texts[i].key) == 0)
            return set_text((char *)q + texts[i].offset, texts[i].size, key, value, err, errlen);
    if (strcmp(key, "from") == 0 || strcmp(key, "to") == 0) {
        int64_t *slot = key[0] == 'f' ? &q->from_ms : &q->to_ms;
        if (parse_time(value, slot) != 0) {
            snprintf(err, errlen,
                     "%s must be a UTC time such as 2026-11-27T10:00:00Z, 2026-11-27 or "
                     "milliseconds since 1970",
                     key);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "cursor") == 0 || strcmp(key, "limit") == 0) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        bool is_limit = key[0] == 'l';
        if (!*value || *end || errno || v < 1 || (is_limit && v > AUDIT_PAGE_MAX)) {
            if (is_limit)
                snprintf(err, errlen, "limit must be a whole number from 1 to %d", AUDIT_PAGE_MAX);
            else
                snprintf(err, errlen, "cursor must be a next_cursor from an earlier page");
            return -1;
        }
        if (is_limit)
            q->limit = (unsigned)v;
        else
            q->cursor = v;
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------- */
/* The statement                                                              */
/* ------------------------------------------------------------------------- */

/* A statement under construction and the values it will bind, in order. */
struct sql {
    char text[4096];
    size_t len;
    const char *text_args[64];
    int64_t int_args[64];
    bool is_int[64];
    unsigned args;
};

static void sql_add(struct sql *s, const char *part)
{
    size_t n = strlen(part);
    if (s->len + n < sizeof(s->text)) {
        memcpy(s->text + s->len, part, n + 1);
        s->len += n;
    }
}

/* Adds `part` with `?` placeholders, each taking the same text value. */
static void sql_where_text(struct sql *s, const char *part, const char *value)
{
    sql_add(s, " AND ");
    sql_add(s, part);
    for (const char *p = part; (p = strchr(p, '?')); p++)
        if (s->args < 64) {
            s->is_int[s->args] = false;
            s->text_args[s->args++] = value;
        }
}

static void sql_where_int(struct sql *s, const char *part, int64_t value)
{
    sql_add(s, " AND ");
    sql_add(s, part);
    if (s->args < 64) {
        s->is_int[s->args] = true;
        s->int_args[s->args++] = value;
    }
}

/* The scope of a clinic-scoped admin: `column` in their clinics. */
static void sql_scope(struct sql *s, const struct audit_query *q, const char *column)
{
    if (q->all_clinics)
        return;
    sql_add(s, " AND ");
    sql_add(s, column);
    sql_add(s, " IN (");
    for (unsigned i = 0; i < q->scope_count && s->args < 64; i++) {
        sql_add(s, i ? ", ?" : "?");
        s->is_int[s->args] = false;
        s->text_args[s->args++] = q->scope[i];
    }
    sql_add(s, q->scope_count ? ")" : "NULL)"); /* no clinic: nothing */
}

#define SESSION_COLUMNS                                                                            \
    "seq, consultation, clinic, patient_name, patient_ref, priority, via, transferred_from, "      \
    "doctor, queued_ms, called_ms, started_ms, ended_ms, wait_ms, duration_ms, end_reason, "       \
    "drops, resumes, silent_warnings, media_losses, recovered, quality"

enum {
    S_SEQ,
    S_CONSULTATION,
    S_CLINIC,
    S_PATIENT_NAME,
    S_PATIENT_REF,
    S_PRIORITY,
    S_VIA,
    S_TRANSFERRED_FROM,
    S_DOCTOR,
    S_QUEUED,
    S_CALLED,
    S_STARTED,
    S_ENDED,
    S_WAIT,
    S_DURATION,
    S_END_REASON,
    S_DROPS,
    S_RESUMES,
    S_SILENT,
    S_MEDIA_LOSSES,
    S_RECOVERED,
    S_QUALITY
};

#define EVENT_QUERY_COLUMNS                                                                        \
    "e.id, e.ts_ms, e.type, e.actor_role, e.actor_id, e.clinic, e.consultation, e.outcome, "       \
    "e.source, e.detail, e.hash, s.patient_name, s.patient_ref, s.queued_ms"

enum {
    E_ID,
    E_TS,
    E_TYPE,
    E_ROLE,
    E_ACTOR,
    E_CLINIC,
    E_CONSULTATION,
    E_OUTCOME,
    E_SOURCE,
    E_DETAIL,
    E_HASH,
    E_PATIENT_NAME,
    E_PATIENT_REF,
    E_QUEUED
};

static void build_sql(const struct audit_query *q, unsigned limit, struct sql *s)
{
    memset(s, 0, sizeof(*s));
    if (q->kind == AUDIT_QUERY_SESSIONS) {
        sql_add(s, "SELECT " SESSION_COLUMNS " FROM sessions WHERE 1");
        sql_scope(s, q, "clinic");
        if (q->clinic[0])
            sql_where_text(s, "clinic = ?", q->clinic);
        if (q->doctor[0])
            sql_where_text(s, "doctor = ?", q->doctor);
        if (q->patient[0])
            sql_where_text(s, "(patient_ref = ? OR consultation = ? OR patient_name = ?)",
                           q->patient);
        if (q->consultation[0])
            sql_where_text(s, "consultation = ?", q->consultation);
        if (q->end_reason[0])
            sql_where_text(s, "end_reason = ?", q->end_reason);
        if (q->type[0])
            sql_where_text(s, "consultation IN (SELECT consultation FROM events WHERE type = ?)",
                           q->type);
        if (q->outcome[0])
            sql_where_text(s, "consultation IN (SELECT consultation FROM events WHERE outcome = ?)",
                           q->outcome);
        if (q->from_ms)
            sql_where_int(s, "queued_ms >= ?", q->from_ms);
        if (q->to_ms)
            sql_where_int(s, "queued_ms < ?", q->to_ms);
        if (q->cursor)
            sql_where_int(s, "seq < ?", q->cursor);
        sql_add(s, " ORDER BY seq DESC");
    } else {
        sql_add(s, "SELECT " EVENT_QUERY_COLUMNS " FROM events e LEFT JOIN sessions s "
                   "ON s.consultation = e.consultation WHERE 1");
        sql_scope(s, q, "e.clinic");
        if (q->clinic[0])
            sql_where_text(s, "e.clinic = ?", q->clinic);
        if (q->doctor[0])
            sql_where_text(s, "((e.actor_role = 'doctor' AND e.actor_id = ?) OR s.doctor = ?)",
                           q->doctor);
        if (q->patient[0])
            sql_where_text(s, "(s.patient_ref = ? OR e.consultation = ? OR s.patient_name = ?)",
                           q->patient);
        if (q->consultation[0])
            sql_where_text(s, "e.consultation = ?", q->consultation);
        if (q->end_reason[0])
            sql_where_text(s, "s.end_reason = ?", q->end_reason);
        if (q->type[0])
            sql_where_text(s, "e.type = ?", q->type);
        if (q->outcome[0])
            sql_where_text(s, "e.outcome = ?", q->outcome);
        if (q->from_ms)
            sql_where_int(s, "e.ts_ms >= ?", q->from_ms);
        if (q->to_ms)
            sql_where_int(s, "e.ts_ms < ?", q->to_ms);
        if (q->cursor)
            sql_where_int(s, "e.id < ?", q->cursor);
        sql_add(s, " ORDER BY e.id DESC");
    }
    char tail[32];
    snprintf(tail, sizeof(tail), " LIMIT %u", limit);
    sql_add(s, tail);
}

static int prepare(sqlite3 *db, const struct sql *s, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, s->text, -1, st, NULL) != SQLITE_OK)
        return -1;
    for (unsigned i = 0; i < s->args; i++) {
        if (s->is_int[i])
            sqlite3_bind_int64(*st, (int)i + 1, s->int_args[i]);
        else
            sqlite3_bind_text(*st, (int)i + 1, s->text_args[i], -1, SQLITE_STATIC);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Rendering                                                                  */
/* ------------------------------------------------------------------------- */

/* "2026-11-27T10:00:00.123Z" into `out` (>= 25 bytes). */
static void iso_time(int64_t ms, char *out, size_t outlen)
{
    if (ms < 0)
        ms = 0;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03uZ", (unsigned)(ms % 1000));
}

/* A text column; NULL for NULL and for "" (FHIR allows no empty strings; JSON says null). */
static const char *col_text(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    return text && text[0] ? text : NULL;
}

static json_t *json_text_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

static json_t *json_time_or_null(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    char iso[32];
    iso_time(sqlite3_column_int64(st, col), iso, sizeof(iso));
    return json_string(iso);
}

static json_t *json_seconds_or_null(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return json_real((double)(sqlite3_column_int64(st, col) / 100) / 10.0);
}

/* A stored JSON text as a value; a string if it is somehow not JSON. */
static json_t *json_stored(const char *text)
{
    if (!text)
        return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

static json_t *session_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "consultation", json_text_or_null(col_text(st, S_CONSULTATION)));
    json_object_set_new(o, "clinic", json_text_or_null(col_text(st, S_CLINIC)));
    json_object_set_new(o, "patient",
                        json_pack("{s:o, s:o}", "name",
                                  json_text_or_null(col_text(st, S_PATIENT_NAME)), "ref",
                                  json_text_or_null(col_text(st, S_PATIENT_REF))));
    json_object_set_new(o, "priority", json_text_or_null(col_text(st, S_PRIORITY)));
    json_object_set_new(o, "via", json_text_or_null(col_text(st, S_VIA)));
    json_object_set_new(o, "transferred_from", json_text_or_null(col_text(st, S_TRANSFERRED_FROM)));
    json_object_set_new(o, "doctor", json_text_or_null(col_text(st, S_DOCTOR)));
    json_object_set_new(o, "queued_at", json_time_or_null(st, S_QUEUED));
    json_object_set_new(o, "called_at", json_time_or_null(st, S_CALLED));
    json_object_set_new(o, "started_at", json_time_or_null(st, S_STARTED));
    json_object_set_new(o, "ended_at", json_time_or_null(st, S_ENDED));
    json_object_set_new(o, "wait_s", json_seconds_or_null(st, S_WAIT));
    json_object_set_new(o, "duration_s", json_seconds_or_null(st, S_DURATION));
    json_object_set_new(o, "end_reason", json_text_or_null(col_text(st, S_END_REASON)));
    json_object_set_new(o, "drops", json_integer(sqlite3_column_int64(st, S_DROPS)));
    json_object_set_new(o, "resumes", json_integer(sqlite3_column_int64(st, S_RESUMES)));
    json_object_set_new(o, "silent_microphone_warnings",
                        json_integer(sqlite3_column_int64(st, S_SILENT)));
    json_object_set_new(o, "media_losses", json_integer(sqlite3_column_int64(st, S_MEDIA_LOSSES)));
    json_object_set_new(o, "recovered", json_boolean(sqlite3_column_int(st, S_RECOVERED)));
    json_object_set_new(o, "quality", json_stored(col_text(st, S_QUALITY)));
    return o;
}

static json_t *event_json(sqlite3_stmt *st)
{
    char iso[32], hex[2 * AUDIT_HASH_BYTES + 1] = "";
    iso_time(sqlite3_column_int64(st, E_TS), iso, sizeof(iso));
    if (sqlite3_column_bytes(st, E_HASH) == AUDIT_HASH_BYTES)
        audit_chain_hex(sqlite3_column_blob(st, E_HASH), hex);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, E_ID)));
    json_object_set_new(o, "time", json_string(iso));
    json_object_set_new(o, "type", json_text_or_null(col_text(st, E_TYPE)));
    json_object_set_new(o, "actor",
                        json_pack("{s:o, s:o}", "role", json_text_or_null(col_text(st, E_ROLE)),
                                  "id", json_text_or_null(col_text(st, E_ACTOR))));
    json_object_set_new(o, "clinic", json_text_or_null(col_text(st, E_CLINIC)));
    json_object_set_new(o, "consultation", json_text_or_null(col_text(st, E_CONSULTATION)));
    json_object_set_new(o, "patient",
                        json_pack("{s:o, s:o}", "name",
                                  json_text_or_null(col_text(st, E_PATIENT_NAME)), "ref",
                                  json_text_or_null(col_text(st, E_PATIENT_REF))));
    json_object_set_new(o, "outcome", json_text_or_null(col_text(st, E_OUTCOME)));
    json_object_set_new(o, "source", json_text_or_null(col_text(st, E_SOURCE)));
    json_object_set_new(o, "detail", json_stored(col_text(st, E_DETAIL)));
    json_object_set_new(o, "hash", json_string(hex));
    return o;
}

/* A growing text buffer for CSV. */
struct text {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 65536;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *grown = realloc(t->buf, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->buf = grown;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/*
 * One CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF,
 * quotes doubled. A field that a spreadsheet would run as a formula (= + - @
 * or a tab first) gets a leading apostrophe: a patient's name is typed by
 * anyone. The JSON and FHIR exports carry the text exactly.
 */
static void csv_cell(struct text *t, const char *value, bool first, bool guard)
{
    if (!first)
        text_add(t, ",", 1);
    if (!value)
        return;
    bool quote = strpbrk(value, ",\"\r\n") != NULL;
    bool formula = guard && value[0] && strchr("=+-@\t\r", value[0]);
    if (quote)
        text_add(t, "\"", 1);
    if (formula)
        text_add(t, "'", 1);
    for (const char *p = value; *p; p++) {
        if (*p == '"')
            text_add(t, "\"", 1);
        text_add(t, p, 1);
    }
    if (quote)
        text_add(t, "\"", 1);
}

static void csv_field(struct text *t, const char *value, bool first)
{
    csv_cell(t, value, first, true);
}

/* A number we wrote ourselves: no formula guard, a negative stays a number. */
static void csv_number(struct text *t, const char *value)
{
    csv_cell(t, value, false, false);
}

static void csv_int(struct text *t, sqlite3_stmt *st, int col)
{
    char n[32] = "";
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
        snprintf(n, sizeof(n), "%lld", (long long)sqlite3_column_int64(st, col));
    csv_number(t, n);
}

static void csv_time(struct text *t, sqlite3_stmt *st, int col)
{
    char iso[32] = "";
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
        iso_time(sqlite3_column_int64(st, col), iso, sizeof(iso));
    csv_number(t, iso);
}

static void csv_seconds(struct text *t, sqlite3_stmt *st, int col)
{
    char n[32] = "";
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
        snprintf(n, sizeof(n), "%.1f", (double)(sqlite3_column_int64(st, col) / 100) / 10.0);
    csv_number(t, n);
}

static const char csv_session_header[] =
    "consultation,clinic,patient_name,patient_ref,priority,via,transferred_from,doctor,"
    "queued_at,called_at,started_at,ended_at,wait_s,duration_s,end_reason,drops,resumes,"
    "silent_microphone_warnings,media_losses,recovered,quality\r\n";

static void csv_session(struct text *t, sqlite3_stmt *st)
{
    csv_field(t, col_text(st, S_CONSULTATION), true);
    for (int c = S_CLINIC; c <= S_DOCTOR; c++)
        csv_field(t, col_text(st, c), false);
    for (int c = S_QUEUED; c <= S_ENDED; c++)
        csv_time(t, st, c);
    csv_seconds(t, st, S_WAIT);
    csv_seconds(t, st, S_DURATION);
    csv_field(t, col_text(st, S_END_REASON), false);
    for (int c = S_DROPS; c <= S_RECOVERED; c++)
        csv_int(t, st, c);
    csv_field(t, col_text(st, S_QUALITY), false);
    text_add(t, "\r\n", 2);
}

static const char csv_event_header[] =
    "id,time,type,actor_role,actor_id,clinic,consultation,patient_name,patient_ref,outcome,"
    "source,detail,hash\r\n";

static void csv_event(struct text *t, sqlite3_stmt *st)
{
    char id[32], iso[32], hex[2 * AUDIT_HASH_BYTES + 1] = "";
    snprintf(id, sizeof(id), "%lld", (long long)sqlite3_column_int64(st, E_ID));
    iso_time(sqlite3_column_int64(st, E_TS), iso, sizeof(iso));
    if (sqlite3_column_bytes(st, E_HASH) == AUDIT_HASH_BYTES)
        audit_chain_hex(sqlite3_column_blob(st, E_HASH), hex);
    csv_cell(t, id, true, false);
    csv_number(t, iso);
    for (int c = E_TYPE; c <= E_CONSULTATION; c++)
        csv_field(t, col_text(st, c), false);
    csv_field(t, col_text(st, E_PATIENT_NAME), false);
    csv_field(t, col_text(st, E_PATIENT_REF), false);
    csv_field(t, col_text(st, E_OUTCOME), false);
    csv_field(t, col_text(st, E_SOURCE), false);
    csv_field(t, col_text(st, E_DETAIL), false);
    csv_field(t, hex, false);
    text_add(t, "\r\n", 2);
}

/* ------------------------------------------------------------------------- */
/* FHIR R4 AuditEvent (IHE Basic Audit Log Patterns)                          */
/* ------------------------------------------------------------------------- */

#define DCM           "http://dicom.nema.org/resources/ontology/DCM"
#define TABIB_TYPES   "urn:tabib:audit-event-type"
#define TABIB_CONSULT "urn:tabib:consultation"
#define TABIB_USER    "urn:tabib:user"
#define TABIB_PAT_REF "urn:tabib:patient-reference"
#define ROLE_CLASS    "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
#define ENTITY_TYPE   "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define OBJECT_ROLE   "http://terminology.hl7.org/CodeSystem/object-role"
#define SOURCE_TYPE   "http://terminology.hl7.org/CodeSystem/security-source-type"

/* How our event types map onto DICOM's audit event types (DICOM PS3.16 CID 400/401). */
static const struct {
    const char *type;
    const char *action; /* C R U D E */
    const char *dcm_type, *dcm_type_display;
    const char *dcm_subtype, *dcm_subtype_display; /* NULL none */
} fhir_types[] = {
    {"sign_in", "E", "110114", "User Authentication", "110122", "Login"},
    {"session_resumed", "E", "110114", "User Authentication", "110122", "Login"},
    {"sign_in_failed", "E", "110114", "User Authentication", "110122", "Login"},
    {"sign_in_throttled", "E", "110114", "User Authentication", "110122", "Login"},
    {"sign_out", "E", "110114", "User Authentication", "110123", "Logout"},
    {"access_denied", "E", "110113", "Security Alert", NULL, NULL},
    {"connection_closed_for_flood", "E", "110113", "Security Alert", NULL, NULL},
    {"audit_search", "E", "110112", "Query", NULL, NULL},
    {"audit_export", "R", "110106", "Export", NULL, NULL},
    {"server_started", "E", "110100", "Application Activity", "110120", "Application Start"},
    {"server_stopped", "E", "110100", "Application Activity", "110121", "Application Stop"},
    {"user_added", "C", "110137", "User Security Attributes Changed", NULL, NULL},
    {"user_disabled", "D", "110137", "User Security Attributes Changed", NULL, NULL},
    {"password_changed", "U", "110137", "User Security Attributes Changed", NULL, NULL},
    {"queue_joined", "C", "110100", "Application Activity", NULL, NULL},
    {"appointment_issued", "C", "110100", "Application Activity", NULL, NULL},
};

static json_t *coding(const char *system, const char *code, const char *display)
{
    return json_pack("{s:s, s:s, s:s*}", "system", system, "code", code, "display", display);
}

/* FHIR's outcome codes: 0 success, 4 minor failure, 8 serious failure. */
static const char *fhir_outcome(const char *outcome)
{
    if (!outcome || strcmp(outcome, "ok") == 0)
        return "0";
    if (strcmp(outcome, "failed") == 0)
        return "8";
    return "4"; /* denied, warning */
}

static json_t *fhir_agent(sqlite3_stmt *st)
{
    const char *role = col_text(st, E_ROLE), *actor = col_text(st, E_ACTOR);
    const char *source = col_text(st, E_SOURCE);
    json_t *who;
    json_t *type;
    if (role && strcmp(role, "patient") == 0) {
        type = coding(ROLE_CLASS, "PAT", "patient");
        who = json_pack("{s:{s:s, s:s*}, s:s*}", "identifier", "system", TABIB_CONSULT, "value",
                        actor, "display", col_text(st, E_PATIENT_NAME));
    } else if (role && (strcmp(role, "doctor") == 0 || strcmp(role, "admin") == 0 ||
                        strcmp(role, "operator") == 0)) {
        type = role[0] == 'd' ? coding(ROLE_CLASS, "PROV", "healthcare provider")
                              : coding(ROLE_CLASS, "EMP", "employee");
        who = json_pack("{s:{s:s, s:s*}, s:s*}", "identifier", "system", TABIB_USER, "value", actor,
                        "display", actor);
    } else if (role && strcmp(role, "system") == 0) {
        type = coding(DCM, "110150", "Application");
        who = json_pack("{s:s}", "display", "tabib");
    } else {
        type = coding(ROLE_CLASS, "PAT", "patient"); /* not signed in: someone from outside */
        who = json_pack("{s:s}", "display", role ? role : "anonymous");
    }
    json_t *agent =
        json_pack("{s:{s:[o]}, s:o, s:b}", "type", "coding", type, "who", who, "requestor", 1);
    if (source)
        json_object_set_new(
            agent, "network",
            json_pack("{s:s, s:s}", "address", source, "type", "2")); /* 2: IP address */
    return json_pack("[o]", agent);
}

static json_t *fhir_entities(sqlite3_stmt *st)
{
    const char *type = col_text(st, E_TYPE);
    const char *consultation = col_text(st, E_CONSULTATION);
    const char *detail = col_text(st, E_DETAIL);
    json_t *entities = json_array();
    if (consultation) {
        const char *ref = col_text(st, E_PATIENT_REF);
        json_t *patient = json_pack(
            "{s:{s:{s:s, s:s}, s:s*}, s:o, s:o}", "what", "identifier", "system",
            ref ? TABIB_PAT_REF : TABIB_CONSULT, "value", ref ? ref : consultation, "display",
            col_text(st, E_PATIENT_NAME), "type", coding(ENTITY_TYPE, "1", "Person"), "role",
            coding(OBJECT_ROLE, "1", "Patient"));
        if (col_text(st, E_PATIENT_NAME))
            json_object_set_new(patient, "name", json_string(col_text(st, E_PATIENT_NAME)));
        json_array_append_new(entities, patient);
    }
    json_t *record = json_pack("{s:o, s:s}", "type", coding(ENTITY_TYPE, "2", "System Object"),
                               "description", consultation ? "consultation" : "event");
    if (consultation)
        json_object_set_new(record, "what",
                            json_pack("{s:{s:s, s:s}}", "identifier", "system", TABIB_CONSULT,
                                      "value", consultation));
    else /* what the event is about has no id of its own: the log itself, or the account */
        json_object_set_new(
            record, "what",
            json_pack("{s:s}", "display",
                      strncmp(type ? type : "", "audit_", 6) == 0 ? "audit log" : "tabib"));
    if (detail)
        json_object_set_new(
            record, "detail",
            json_pack("[{s:s, s:s}]", "type", "tabib-detail", "valueString", detail));
    json_array_append_new(entities, record);
    return entities;
}

/* A UUID-shaped name from the event's hash: the same event, the same fullUrl. */
static void uuid_from_hash(const uint8_t *hash, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        uint8_t b = hash[i];
        if (i == 6)
            b = (uint8_t)((b & 0x0f) | 0x50); /* version 5-like: derived from a hash */
        if (i == 8)
            b = (uint8_t)((b & 0x3f) | 0x80);
        out[o++] = hex[b >> 4];
        out[o++] = hex[b & 15];
    }
    out[o] = '\0';
}

static json_t *fhir_entry(sqlite3_stmt *st)
{
    const char *type = col_text(st, E_TYPE);
    const char *action = "E", *dcm = "110100", *dcm_display = "Application Activity";
    const char *sub = NULL, *sub_display = NULL;
    for (size_t i = 0; i < sizeof(fhir_types) / sizeof(fhir_types[0]); i++)
        if (type && strcmp(type, fhir_types[i].type) == 0) {
            action = fhir_types[i].action;
            dcm = fhir_types[i].dcm_type;
            dcm_display = fhir_types[i].dcm_type_display;
            sub = fhir_types[i].dcm_subtype;
            sub_display = fhir_types[i].dcm_subtype_display;
        }
    if (type && strcmp(type, "consultation_called") != 0 && strncmp(type, "consultation_", 13) == 0)
        action = "U";
    char recorded[32], start[32], id[40], uuid[40] = "00000000-0000-5000-8000-000000000000";
    int64_t ts = sqlite3_column_int64(st, E_TS);
    iso_time(ts, recorded, sizeof(recorded));
    /* A consultation's end spans it: from joining the queue to now. */
    if (type && strcmp(type, "consultation_ended") == 0 &&
        sqlite3_column_type(st, E_QUEUED) != SQLITE_NULL &&
        sqlite3_column_int64(st, E_QUEUED) <= ts)
        iso_time(sqlite3_column_int64(st, E_QUEUED), start, sizeof(start));
    else
        memcpy(start, recorded, sizeof(start));
    snprintf(id, sizeof(id), "tabib-%lld", (long long)sqlite3_column_int64(st, E_ID));
    if (sqlite3_column_bytes(st, E_HASH) == AUDIT_HASH_BYTES) {
        uuid_from_hash(sqlite3_column_blob(st, E_HASH), uuid);
    } else { /* a row without its hash (a broken chain): still a unique name */
        uint8_t from_id[16] = {0};
        int64_t event_id = sqlite3_column_int64(st, E_ID);
        for (int i = 0; i < 8; i++)
            from_id[15 - i] = (uint8_t)(event_id >> (8 * i));
        uuid_from_hash(from_id, uuid);
    }
    json_t *subtype = json_pack("[o]", coding(TABIB_TYPES, type ? type : "unknown", NULL));
    if (sub)
        json_array_insert_new(subtype, 0, coding(DCM, sub, sub_display));
    const char *clinic = col_text(st, E_CLINIC);
    json_t *event = json_pack(
        "{s:s, s:s, s:o, s:o, s:s, s:{s:s, s:s}, s:s, s:s, s:o, s:{s:s, s:{s:s}, s:[o]}, s:o}",
        "resourceType", "AuditEvent", "id", id, "type", coding(DCM, dcm, dcm_display), "subtype",
        subtype, "action", action, "period", "start", start, "end", recorded, "recorded", recorded,
        "outcome", fhir_outcome(col_text(st, E_OUTCOME)), "agent", fhir_agent(st), "source", "site",
        clinic ? clinic : "tabib", "observer", "display", "tabib", "type",
        coding(SOURCE_TYPE, "4", "Application Server"), "entity", fhir_entities(st));
    const char *outcome = col_text(st, E_OUTCOME);
    if (outcome && strcmp(outcome, "ok") != 0)
        json_object_set_new(event, "outcomeDesc", json_string(outcome));
    char full_url[64];
    snprintf(full_url, sizeof(full_url), "urn:uuid:%s", uuid);
    return json_pack("{s:s, s:o}", "fullUrl", full_url, "resource", event);
}

/* ------------------------------------------------------------------------- */
/* Answers                                                                    */
/* ------------------------------------------------------------------------- */

void audit_query_refuse(struct audit_request *rq, unsigned status, const char *code,
                        const char *message)
{
    free(rq->body);
    json_t *e = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    rq->body = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    rq->status = status;
    rq->content_type = "application/json";
    rq->filename = NULL;
    rq->len = rq->body ? strlen(rq->body) : 0;
}

/* Takes `doc` as a 200 JSON answer (a 500 when it is NULL or cannot be written). */
static void answer_document(struct audit_request *rq, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        audit_query_refuse(rq, 500, "internal", "out of memory");
        return;
    }
    free(rq->body);
    rq->body = text;
    rq->len = strlen(text);
    rq->status = 200;
    rq->content_type = "application/json";
}

/* The nearest-rank percentile `p` (0..100) of `n` sorted values. */
static double percentile(const int64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median and 90th percentile of one clinic's `n` values in ms, as seconds; null when none. */
static void add_percentiles(json_t *o, const char *median_key, const char *p90_key, int64_t *v,
                            size_t n)
{
    if (!n) {
        json_object_set_new(o, median_key, json_null());
        if (p90_key)
            json_object_set_new(o, p90_key, json_null());
        return;
    }
    qsort(v, n, sizeof(*v), compare_int64);
    json_object_set_new(o, median_key, json_real(percentile(v, n, 50)));
    if (p90_key)
        json_object_set_new(o, p90_key, json_real(percentile(v, n, 90)));
}

/*
 * Per clinic, over the sessions that joined a queue in [from, to): how many,
 * the median and 90th-percentile wait (patients called or gone), and the
 * median duration. Percentiles by nearest rank, computed here: SQLite has none.
 */
static void answer_stats(sqlite3 *db, struct audit_request *rq)
{
    struct audit_query q = rq->query;
    q.kind = AUDIT_QUERY_SESSIONS;
    q.cursor = 0;
    struct sql s;
    memset(&s, 0, sizeof(s));
    sql_add(&s, "SELECT clinic, wait_ms, duration_ms FROM sessions WHERE 1");
    sql_scope(&s, &q, "clinic");
    if (q.clinic[0])
        sql_where_text(&s, "clinic = ?", q.clinic);
    if (q.from_ms)
        sql_where_int(&s, "queued_ms >= ?", q.from_ms);
    if (q.to_ms)
        sql_where_int(&s, "queued_ms < ?", q.to_ms);
    sql_add(&s, " ORDER BY clinic LIMIT 1000001");
    sqlite3_stmt *st = NULL;
    if (prepare(db, &s, &st) != 0) {
        audit_query_refuse(rq, 500, "internal", sqlite3_errmsg(db));
        return;
    }
    json_t *clinics = json_array();
    size_t cap = 1024, n_wait = 0, n_dur = 0, sessions = 0;
    int64_t *waits = malloc(cap * sizeof(int64_t)), *durs = malloc(cap * sizeof(int64_t));
    char current[AUDIT_ID_MAX] = "";
    bool failed = !waits || !durs || !clinics;
    int step = SQLITE_DONE;
    for (bool more = true; more && !failed;) {
        step = sqlite3_step(st);
        more = step == SQLITE_ROW;
        const char *clinic = more ? col_text(st, 0) : NULL;
        if (!clinic && more)
            clinic = "";
        if (sessions && (!more || strcmp(clinic, current) != 0)) {
            json_t *o = json_pack("{s:s, s:I, s:I}", "clinic", current, "sessions",
                                  (json_int_t)sessions, "waited", (json_int_t)n_wait);
            add_percentiles(o, "median_wait_s", "p90_wait_s", waits, n_wait);
            add_percentiles(o, "median_duration_s", NULL, durs, n_dur);
            json_array_append_new(clinics, o);
            sessions = n_wait = n_dur = 0;
        }
        if (!more)
            break;
        snprintf(current, sizeof(current), "%s", clinic);
        sessions++;
        if (n_wait == cap || n_dur == cap) {
            cap *= 2;
            int64_t *w2 = realloc(waits, cap * sizeof(int64_t));
            if (w2)
                waits = w2;
            int64_t *d2 = realloc(durs, cap * sizeof(int64_t));
            if (d2)
                durs = d2;
            failed = !w2 || !d2;
            if (failed)
                break;
        }
        if (sqlite3_column_type(st, 1) != SQLITE_NULL)
            waits[n_wait++] = sqlite3_column_int64(st, 1);
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            durs[n_dur++] = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    free(waits);
    free(durs);
    if (failed || step != SQLITE_DONE) {
        json_decref(clinics);
        audit_query_refuse(rq, 500, "internal", failed ? "out of memory" : sqlite3_errmsg(db));
        return;
    }
    char from[32] = "", to[32] = "";
    if (q.from_ms)
        iso_time(q.from_ms, from, sizeof(from));
    if (q.to_ms)
        iso_time(q.to_ms, to, sizeof(to));
    json_t *doc = json_pack("{s:o, s:s?, s:s?}", "clinics", clinics, "from", from[0] ? from : NULL,
                            "to", to[0] ? to : NULL);
    rq->rows = (unsigned)json_array_size(clinics);
    answer_document(rq, doc);
}

/* The chain walked, as the admin page shows it. */
static void answer_verify(sqlite3 *db, struct audit_request *rq)
{
    struct audit_chain_walk walk;
    int rc = audit_chain_walk(db, &walk);
    if (rc < 0) {
        audit_query_refuse(rq, 500, "internal", sqlite3_errmsg(db));
        return;
    }
    char hex[2 * AUDIT_HASH_BYTES + 1], when[32];
    audit_chain_hex(walk.head, hex);
    json_t *doc;
    if (rc == 0) {
        doc = json_pack("{s:b, s:I, s:s}", "ok", 1, "events", (json_int_t)walk.count, "head", hex);
    } else {
        iso_time(walk.bad_ts_ms, when, sizeof(when));
        doc = json_pack("{s:b, s:I, s:{s:I, s:s, s:s}}", "ok", 0, "events", (json_int_t)walk.count,
                        "broken_at", "id", (json_int_t)walk.bad_id, "type", walk.bad_type, "time",
                        when);
    }
    rq->rows = (unsigned)walk.count;
    answer_document(rq, doc);
}

/* Appends `item` (taken) as JSON text, after a comma unless it is the first. */
static void text_add_json(struct text *t, json_t *item, bool first)
{
    char *one = item ? json_dumps(item, JSON_COMPACT) : NULL;
    json_decref(item);
    if (!one) {
        t->failed = true;
        return;
    }
    if (!first)
        text_add(t, ",", 1);
    text_add(t, one, strlen(one));
    free(one);
}

/*
 * Every format is written row by row into one text buffer: an export of
 * many thousand events never holds them all as JSON objects at once.
 */
void audit_query_answer(sqlite3 *db, struct audit_request *rq)
{
    const struct audit_query *q = &rq->query;
    rq->rows = 0;
    if (q->kind == AUDIT_QUERY_STATS || q->kind == AUDIT_QUERY_VERIFY) {
        if (rq->format != AUDIT_FORMAT_JSON || rq->export_all)
            audit_query_refuse(rq, 400, "bad_request", "statistics and verification are JSON");
        else if (q->kind == AUDIT_QUERY_STATS)
            answer_stats(db, rq);
        else
            answer_verify(db, rq);
        return;
    }
    if (rq->format == AUDIT_FORMAT_FHIR && q->kind != AUDIT_QUERY_EVENTS) {
        audit_query_refuse(rq, 400, "bad_request",
                           "FHIR AuditEvent exports are of events: use the events export");
        return;
    }
    unsigned limit = rq->export_all ? AUDIT_EXPORT_MAX + 1 : q->limit + 1;
    struct sql s;
    build_sql(q, limit, &s);
    sqlite3_stmt *st = NULL;
    if (prepare(db, &s, &st) != 0) {
        audit_query_refuse(rq, 500, "internal", sqlite3_errmsg(db));
        return;
    }
    bool sessions = q->kind == AUDIT_QUERY_SESSIONS;
    struct text out = {0};
    char head[256];
    if (rq->format == AUDIT_FORMAT_CSV) {
        snprintf(head, sizeof(head), "%s", sessions ? csv_session_header : csv_event_header);
    } else if (rq->format == AUDIT_FORMAT_FHIR) {
        char now[32];
        iso_time(base_wall_ms(), now, sizeof(now));
        snprintf(head, sizeof(head),
                 "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"timestamp\":\"%s\","
                 "\"entry\":[",
                 now);
    } else {
        snprintf(head, sizeof(head), "{\"%s\":[", sessions ? "sessions" : "events");
    }
    text_add(&out, head, strlen(head));
    int64_t last_key = 0;
    bool more = false;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW && !out.failed) {
        if (rq->rows + 1 == limit) {
            more = true;
            break;
        }
        bool first = rq->rows == 0;
        rq->rows++;
        last_key = sqlite3_column_int64(st, 0); /* seq or id: the first column of both */
        if (rq->format == AUDIT_FORMAT_CSV)
            sessions ? csv_session(&out, st) : csv_event(&out, st);
        else if (rq->format == AUDIT_FORMAT_FHIR)
            text_add_json(&out, fhir_entry(st), first);
        else
            text_add_json(&out, sessions ? session_json(st) : event_json(st), first);
    }
    bool read_failed = !more && !out.failed && step != SQLITE_DONE;
    if (read_failed)
        audit_query_refuse(rq, 500, "internal", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (read_failed || out.failed || (more && rq->export_all)) {
        free(out.buf);
        if (out.failed) {
            audit_query_refuse(rq, 500, "internal", "out of memory");
        } else if (!read_failed) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "more than %d rows match; narrow the filters (a time range) and export in "
                     "parts",
                     AUDIT_EXPORT_MAX);
            audit_query_refuse(rq, 413, "too_many_rows", msg);
        }
        return;
    }
    if (rq->format == AUDIT_FORMAT_CSV) {
        rq->content_type = "text/csv; charset=utf-8; header=present";
        rq->filename = sessions ? "tabib-sessions.csv" : "tabib-audit-events.csv";
    } else if (rq->format == AUDIT_FORMAT_FHIR) {
        text_add(&out, "]}", 2);
        rq->content_type = "application/fhir+json; fhirVersion=4.0";
        rq->filename = "tabib-audit-events.fhir.json";
    } else {
        char tail[64] = "],\"next_cursor\":null}";
        if (more)
            snprintf(tail, sizeof(tail), "],\"next_cursor\":\"%lld\"}", (long long)last_key);
        text_add(&out, tail, strlen(tail));
        rq->content_type = "application/json";
        rq->filename =
            rq->export_all ? (sessions ? "tabib-sessions.json" : "tabib-audit-events.json") : NULL;
    }
    if (out.failed) {
        free(out.buf);
        audit_query_refuse(rq, 500, "internal", "out of memory");
        return;
    }
    free(rq->body);
    rq->body = out.buf;
    rq->len = out.len;
    rq->status = 200;
}

char *audit_query_describe(const struct audit_request *rq)
{
    const struct audit_query *q = &rq->query;
    static const char *const formats[] = {"json", "csv", "fhir"};
    json_t *filters = json_object();
    const struct {
        const char *key, *value;
    } texts[] = {
        {"clinic", q->clinic},
        {"doctor", q->doctor},
        {"patient", q->patient},
        {"consultation", q->consultation},
        {"type", q->type},
        {"outcome", q->outcome},
        {"end_reason", q->end_reason},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].value[0])
            json_object_set_new(filters, texts[i].key, json_string(texts[i].value));
    if (q->from_ms)
        json_object_set_new(filters, "from_ms", json_integer(q->from_ms));
    if (q->to_ms)
        json_object_set_new(filters, "to_ms", json_integer(q->to_ms));
    if (q->cursor)
        json_object_set_new(filters, "cursor", json_integer(q->cursor));
    json_t *scope;
    if (q->all_clinics) {
        scope = json_string("all");
    } else {
        scope = json_array();
        for (unsigned i = 0; i < q->scope_count; i++)
            json_array_append_new(scope, json_string(q->scope[i]));
    }
    static const char *const kinds[] = {"sessions", "events", "stats", "verify"};
    json_t *d = json_pack("{s:s, s:s, s:o, s:o, s:i, s:i}", "of", kinds[q->kind], "format",
                          formats[rq->format], "filters", filters, "scope", scope, "rows",
                          (int)rq->rows, "status", (int)rq->status);
    char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    return text;
}

int audit_query_open(const char *data_dir, sqlite3 **db, char *err, size_t errlen)
{
    char path[4096];
    *db = NULL;
    if (store_path(data_dir, path, sizeof(path)) != 0) {
        snprintf(err, errlen, "audit: the data dir path is too long");
        return -1;
    }
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "audit: cannot open \"%s\": %s", path,
                 *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

void audit_request_free(struct audit_request *rq)
{
    if (!rq)
        return;
    free(rq->body);
    free(rq);
}
