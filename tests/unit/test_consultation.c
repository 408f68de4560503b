/*
 * test_consultation.c - the consultation state machine: every (state, event,
 * reason) triple against the table in docs/protocol.md, and clinic hours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "signaling.h"

#define W  SIG_STATE_WAITING
#define C  SIG_STATE_CALLED
#define I  SIG_STATE_IN_CONSULTATION
#define E  SIG_STATE_ENDED
#define NO -1

static void transitions_follow_the_table(void **state)
{
    (void)state;
    /* expected[from][event] for call, accept, return. */
    const int expected[4][3] = {
        /*          call accept return */
        [W] = {C, NO, NO},
        [C] = {NO, I, W},
        [I] = {NO, NO, W},
        [E] = {NO, NO, NO},
    };
    const enum sig_event events[3] = {SIG_EVENT_CALL, SIG_EVENT_ACCEPT, SIG_EVENT_RETURN};
    for (int from = W; from <= E; from++) {
        for (int e = 0; e < 3; e++) {
            enum sig_state to = E;
            int rc = sig_state_next((enum sig_state)from, events[e], SIG_END_NONE, &to);
            if (expected[from][e] == NO)
                assert_int_equal(rc, -1);
            else {
                assert_int_equal(rc, 0);
                assert_int_equal(to, expected[from][e]);
            }
        }
    }
}

static void end_reasons_fit_their_states(void **state)
{
    (void)state;
    /* allowed[reason] as a string of states: w c i. */
    const struct {
        enum sig_end_reason reason;
        const char *states;
    } cases[] = {
        {SIG_END_NONE, ""},
        {SIG_END_COMPLETED, "i"},
        {SIG_END_PATIENT_LEFT, "wci"},
        {SIG_END_DOCTOR_ENDED, "ci"},
        {SIG_END_ABANDONED, "wc"},
        {SIG_END_TRANSFERRED, "wci"},
        {SIG_END_CONNECTION_LOST, "i"},
        {SIG_END_SERVER_SHUTDOWN, "wci"},
    };
    const char letters[] = "wcie";
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (int from = W; from <= E; from++) {
            enum sig_state to = W;
            int rc = sig_state_next((enum sig_state)from, SIG_EVENT_END, cases[k].reason, &to);
            bool allowed = strchr(cases[k].states, letters[from]) != NULL;
            if (allowed != (rc == 0))
                fail_msg("end %s from %s: got %d", sig_end_reason_name(cases[k].reason),
                         sig_state_name((enum sig_state)from), rc);
            if (allowed)
                assert_int_equal(to, E);
        }
    }
    enum sig_state to;
    assert_int_equal(sig_state_next(W, SIG_EVENT_END, (enum sig_end_reason)99, &to), -1);
    assert_int_equal(sig_state_next((enum sig_state)9, SIG_EVENT_CALL, SIG_END_NONE, &to), -1);
}

static void names_round_trip(void **state)
{
    (void)state;
    for (unsigned r = SIG_END_COMPLETED; r <= SIG_END_SERVER_SHUTDOWN; r++) {
        enum sig_end_reason back;
        assert_int_equal(sig_end_reason_parse(sig_end_reason_name((enum sig_end_reason)r), &back),
                         0);
        assert_int_equal(back, r);
    }
    enum sig_end_reason back;
    assert_int_equal(sig_end_reason_parse("none", &back), -1);
    assert_int_equal(sig_end_reason_parse("bored", &back), -1);
    assert_string_equal(sig_state_name(SIG_STATE_IN_CONSULTATION), "in_consultation");
}

/* Seconds since the epoch for a local time on a given weekday (2026-11-22 is a Sunday). */
static int64_t local_time(int wday, int hour, int minute)
{
    struct tm tm = {.tm_year = 2026 - 1900,
                    .tm_mon = 10,
                    .tm_mday = 22 + wday,
                    .tm_hour = hour,
                    .tm_min = minute,
                    .tm_isdst = -1};
    return (int64_t)mktime(&tm);
}

static void clinic_hours(void **state)
{
    (void)state;
    setenv("TZ", "Asia/Qatar", 1);
    tzset();
    struct sig_clinic_config c;
    memset(&c, 0, sizeof(c));
    assert_true(sig_clinic_is_open(&c, local_time(5, 3, 0))); /* no hours: always open */
    assert_int_equal(sig_clinic_parse_hours(&c, "Sun-Thu 08:00-20:00"), 0);
    assert_true(sig_clinic_is_open(&c, local_time(0, 8, 0)));
    assert_true(sig_clinic_is_open(&c, local_time(4, 19, 59)));
    assert_false(sig_clinic_is_open(&c, local_time(4, 20, 0)));
    assert_false(sig_clinic_is_open(&c, local_time(5, 12, 0))); /* Friday */
    assert_false(sig_clinic_is_open(&c, local_time(1, 7, 59)));

    assert_int_equal(sig_clinic_parse_hours(&c, "Fri,Sat 20:00-02:00"), 0); /* overnight */
    assert_true(sig_clinic_is_open(&c, local_time(5, 23, 0)));
    assert_true(sig_clinic_is_open(&c, local_time(6, 1, 0)));  /* Saturday, from Friday */
    assert_true(sig_clinic_is_open(&c, local_time(0, 1, 59))); /* Sunday, from Saturday */
    assert_false(sig_clinic_is_open(&c, local_time(0, 2, 0)));
    assert_false(sig_clinic_is_open(&c, local_time(5, 1, 0))); /* Thursday opened nothing */

    assert_int_equal(sig_clinic_parse_hours(&c, "daily 00:00-24:00"), 0);
    assert_true(sig_clinic_is_open(&c, local_time(3, 23, 59)));
    assert_int_equal(sig_clinic_parse_hours(&c, "Thu-Sun 10:00-11:00"), 0); /* wraps the week */
    assert_true(sig_clinic_is_open(&c, local_time(6, 10, 30)));
    assert_false(sig_clinic_is_open(&c, local_time(2, 10, 30)));

    const char *bad[] = {"",
                         "Sun-Thu",
                         "08:00-20:00",
                         "Sun-Thu 8:00-20:00",
                         "Xyz 08:00-20:00",
                         "Sun-Thu 08:00-25:00",
                         "Sun-Thu 08:00-08:00",
                         "Sun, 08:00-09:00",
                         "Sun-Thu 08:00-20:00 extra",
                         "Sun-Thu 08:60-20:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sig_clinic_parse_hours(&c, bad[i]) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transitions_follow_the_table),
        cmocka_unit_test(end_reasons_fit_their_states),
        cmocka_unit_test(names_round_trip),
        cmocka_unit_test(clinic_hours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
