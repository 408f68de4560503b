/*
 * protocol.c - parses and answers `tabib.v1` messages.
 *
 * Every request is a JSON object with a string "type" and an "id" (string or
 * integer) that the reply echoes as "re". Anything else gets an error reply
 * with a documented code (docs/protocol.md); the connection survives it.
 * Runs on the signalling thread.
 */
#include "signaling.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* Builds {"type":"error","re":re,"code":code,"message":message}; `re` is borrowed. */
static char *error_reply(json_t *re, const char *code, const char *message)
{
    json_t *reply = json_pack("{s:s, s:O?, s:s, s:s}", "type", "error", "re", re, "code", code,
                              "message", message);
    if (reply && !json_object_get(reply, "re"))
        json_object_set_new(reply, "re", json_null());
    char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    return text;
}

static char *reply_pong(json_t *id)
{
    json_t *reply = json_pack("{s:s, s:O}", "type", "pong", "re", id);
    char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    return text;
}

char *sig_handle_message(const char *data, size_t len)
{
    json_error_t jerr;
    char message[256];
    if (len > SIG_MESSAGE_MAX) {
        snprintf(message, sizeof(message), "message is %zu bytes, the limit is %d", len,
                 SIG_MESSAGE_MAX);
        return error_reply(NULL, "bad_request", message);
    }
    json_t *req = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        snprintf(message, sizeof(message), "invalid JSON at line %d, column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return error_reply(NULL, "bad_json", message);
    }
    char *reply = NULL;
    json_t *id = json_object_get(req, "id");
    json_t *type = json_object_get(req, "type");
    if (!json_is_object(req)) {
        reply = error_reply(NULL, "bad_request", "a message must be a JSON object");
    } else if (!id || !(json_is_string(id) || json_is_integer(id))) {
        reply = error_reply(NULL, "bad_request", "field \"id\" is missing: a string or integer");
    } else if (json_is_string(id) && json_string_length(id) > 64) {
        reply = error_reply(NULL, "bad_request", "field \"id\" is longer than 64 bytes");
    } else if (!json_is_string(type)) {
        reply = error_reply(id, "bad_request", "field \"type\" is missing or not a string");
    } else if (strcmp(json_string_value(type), "ping") == 0) {
        reply = reply_pong(id);
    } else {
        snprintf(message, sizeof(message), "unknown message type \"%.64s\"",
                 json_string_value(type));
        reply = error_reply(id, "unknown_type", message);
    }
    json_decref(req);
    return reply;
}
