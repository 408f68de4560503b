/*
 * consultation.c - the consultation state machine, as one table.
 *
 *   waiting --call--> called --accept--> in_consultation
 *      ^                |                     |
 *      +----return------+---------return------+
 *   any state but ended --end(reason)--> ended
 *
 * Which end reasons fit which state is part of the table too: a consultation
 * that never started cannot be "completed", and one in progress is not
 * "abandoned" but "connection_lost". Pure functions; any thread.
 */
#include "signaling.h"

#include <string.h>

static const char *const state_names[] = {
    [SIG_STATE_WAITING] = "waiting",
    [SIG_STATE_CALLED] = "called",
    [SIG_STATE_IN_CONSULTATION] = "in_consultation",
    [SIG_STATE_ENDED] = "ended",
};

static const char *const reason_names[] = {
    [SIG_END_NONE] = "none",
    [SIG_END_COMPLETED] = "completed",
    [SIG_END_PATIENT_LEFT] = "patient_left",
    [SIG_END_DOCTOR_ENDED] = "doctor_ended",
    [SIG_END_ABANDONED] = "abandoned",
    [SIG_END_TRANSFERRED] = "transferred",
    [SIG_END_CONNECTION_LOST] = "connection_lost",
    [SIG_END_SERVER_SHUTDOWN] = "server_shutdown",
};

const char *sig_state_name(enum sig_state state)
{
    return (unsigned)state <= SIG_STATE_ENDED ? state_names[state] : "unknown";
}

const char *sig_end_reason_name(enum sig_end_reason reason)
{
    return (unsigned)reason <= SIG_END_SERVER_SHUTDOWN ? reason_names[reason] : "unknown";
}

int sig_end_reason_parse(const char *name, enum sig_end_reason *out)
{
    for (unsigned r = SIG_END_COMPLETED; r <= SIG_END_SERVER_SHUTDOWN; r++) {
        if (strcmp(name, reason_names[r]) == 0) {
            *out = (enum sig_end_reason)r;
            return 0;
        }
    }
    return -1;
}

/* Bit per state in which an end reason may be given. */
#define IN(s) (1u << (s))
static const unsigned reason_allowed_in[] = {
    [SIG_END_NONE] = 0,
    [SIG_END_COMPLETED] = IN(SIG_STATE_IN_CONSULTATION),
    [SIG_END_PATIENT_LEFT] =
        IN(SIG_STATE_WAITING) | IN(SIG_STATE_CALLED) | IN(SIG_STATE_IN_CONSULTATION),
    [SIG_END_DOCTOR_ENDED] = IN(SIG_STATE_CALLED) | IN(SIG_STATE_IN_CONSULTATION),
    [SIG_END_ABANDONED] = IN(SIG_STATE_WAITING) | IN(SIG_STATE_CALLED),
    [SIG_END_TRANSFERRED] =
        IN(SIG_STATE_WAITING) | IN(SIG_STATE_CALLED) | IN(SIG_STATE_IN_CONSULTATION),
    [SIG_END_CONNECTION_LOST] = IN(SIG_STATE_IN_CONSULTATION),
    [SIG_END_SERVER_SHUTDOWN] =
        IN(SIG_STATE_WAITING) | IN(SIG_STATE_CALLED) | IN(SIG_STATE_IN_CONSULTATION),
};

int sig_state_next(enum sig_state from, enum sig_event event, enum sig_end_reason reason,
                   enum sig_state *to)
{
    if ((unsigned)from > SIG_STATE_ENDED)
        return -1;
    switch (event) {
    case SIG_EVENT_CALL:
        if (from != SIG_STATE_WAITING)
            return -1;
        *to = SIG_STATE_CALLED;
        return 0;
    case SIG_EVENT_ACCEPT:
        if (from != SIG_STATE_CALLED)
            return -1;
        *to = SIG_STATE_IN_CONSULTATION;
        return 0;
    case SIG_EVENT_RETURN:
        if (from != SIG_STATE_CALLED && from != SIG_STATE_IN_CONSULTATION)
            return -1;
        *to = SIG_STATE_WAITING;
        return 0;
    case SIG_EVENT_END:
        if ((unsigned)reason > SIG_END_SERVER_SHUTDOWN || !(reason_allowed_in[reason] & IN(from)))
            return -1;
        *to = SIG_STATE_ENDED;
        return 0;
    }
    return -1;
}
