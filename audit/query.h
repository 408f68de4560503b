/*
 * query.h - searches and exports of the audit log (private to audit/: the
 * reader thread and `tabib audit export` share them).
 */
#ifndef TABIB_AUDIT_QUERY_H
#define TABIB_AUDIT_QUERY_H

#include <sqlite3.h>

#include "audit.h"

/*
 * Runs `rq`'s query on `db` (read-only is enough) and fills its answer:
 * status, content type, body, rows. A page is JSON with next_cursor; an
 * export is every matching row in rq->format. Never fails without an answer:
 * a bad request or a storage error becomes a JSON error body with its status.
 */
void audit_query_answer(sqlite3 *db, struct audit_request *rq);

/* Replaces `rq`'s answer with a JSON error {code, message} and `status`. */
void audit_query_refuse(struct audit_request *rq, unsigned status, const char *code,
                        const char *message);

/*
 * The audit event that records `rq` having been answered, as JSON detail
 * (malloc'd): the filters, the format and the row count. NULL when out of memory.
 */
char *audit_query_describe(const struct audit_request *rq);

/* Opens `data_dir`/audit.db read-only. 0, or -1 with `err`. */
int audit_query_open(const char *data_dir, sqlite3 **db, char *err, size_t errlen);

#endif
