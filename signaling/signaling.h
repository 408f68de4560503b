/*
 * signaling.h - the WebSocket protocol `tabib.v1`: JSON messages between
 * browsers and the server, and (in later issues) clinics, queues,
 * consultations and accounts.
 *
 * Protocol code here does no I/O: it takes a received message and produces
 * the reply text, so it can be unit-tested and fuzzed directly. The
 * WebSocket transport lives in server/http.c. Runs on the signalling thread.
 */
#ifndef TABIB_SIGNALING_H
#define TABIB_SIGNALING_H

#include <stddef.h>

/* The WebSocket subprotocol browsers must ask for. */
#define SIG_SUBPROTOCOL "tabib.v1"

/* Largest message accepted, in bytes (larger frames close the connection). */
#define SIG_MESSAGE_MAX (64 * 1024)

/*
 * Handles one complete text message of `len` bytes (borrowed, need not be
 * NUL-terminated). Returns a new NUL-terminated reply (free with free()),
 * which is either the answer or an error object
 *   {"type":"error","re":<id or null>,"code":"...","message":"..."}
 * Returns NULL only when out of memory. Never fails on hostile input.
 */
char *sig_handle_message(const char *data, size_t len);

#endif
