/*
 * test_bandwidth.c - the receiving side's limit for a sender: no limit
 * without loss, GCC's decrease on heavy loss, hold on moderate loss, the
 * increase on little loss until the limit is lifted, and windows with too
 * few reports left unjudged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include <cmocka.h>

#include "bandwidth.h"

/* One window of `reported` packets with `lost` missing and `bps` sent; returns the verdict. */
static bool window(struct media_bandwidth_limit *b, int64_t *now, unsigned reported, unsigned lost,
                   uint64_t bps, uint64_t *limit)
{
    media_bandwidth_feedback(b, reported, lost);
    media_bandwidth_sent(b, (size_t)(bps / 8));
    *now += MEDIA_BANDWIDTH_WINDOW_MS;
    return media_bandwidth_update(b, *now, limit);
}

static void test_limit_follows_the_receivers_loss(void **state)
{
    (void)state;
    struct media_bandwidth_limit b;
    memset(&b, 0, sizeof(b));
    int64_t now = 1000;
    uint64_t limit = 0;
    assert_false(media_bandwidth_update(&b, now, &limit)); /* the first window starts */
    /* A clean path: no limit at all. */
    assert_false(window(&b, &now, 100, 0, 2000000, &limit));
    /* 20% lost at 1 Mbit/s: the limit is what got through, less half the loss. */
    assert_true(window(&b, &now, 100, 20, 1000000, &limit));
    assert_int_equal(limit, 900000);
    /* 5% lost: hold (and keep telling the sender). */
    assert_true(window(&b, &now, 100, 5, 900000, &limit));
    assert_int_equal(limit, 900000);
    /* Too few reports to judge: hold. */
    assert_true(window(&b, &now, 10, 10, 900000, &limit));
    assert_int_equal(limit, 900000);
    /* Clean again: +8% a window... */
    assert_true(window(&b, &now, 100, 1, 900000, &limit));
    assert_int_equal(limit, 972000);
    /* ...never raised by more loss, only lowered... */
    assert_true(window(&b, &now, 100, 50, 2000000, &limit));
    assert_int_equal(limit, 972000); /* 2 Mbit/s x 0.75 is above the limit in force */
    /* ...down to the floor at worst. */
    assert_true(window(&b, &now, 100, 90, 100000, &limit));
    assert_int_equal(limit, MEDIA_BANDWIDTH_MIN_BPS);
    /* Recovery: the limit grows until it is lifted, and the sender is told so once. */
    unsigned windows = 0;
    while (window(&b, &now, 100, 0, 2000000, &limit) && limit < MEDIA_BANDWIDTH_MAX_BPS)
        windows++;
    assert_int_equal(limit, MEDIA_BANDWIDTH_MAX_BPS);
    assert_true(windows > 10);
    assert_false(window(&b, &now, 100, 0, 2000000, &limit));
}

static void test_windows_close_on_time(void **state)
{
    (void)state;
    struct media_bandwidth_limit b;
    memset(&b, 0, sizeof(b));
    uint64_t limit = 0;
    assert_false(media_bandwidth_update(&b, 5000, &limit));
    media_bandwidth_feedback(&b, 100, 50);
    media_bandwidth_sent(&b, 125000);
    assert_false(media_bandwidth_update(&b, 5999, &limit)); /* not a second yet */
    assert_true(media_bandwidth_update(&b, 6000, &limit));
    assert_int_equal(limit, 750000);    /* 1 Mbit/s x (1 - 0.25) */
    media_bandwidth_feedback(&b, 3, 9); /* more lost than reported: clamped */
    assert_true(media_bandwidth_update(&b, 7000, &limit));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_follows_the_receivers_loss),
        cmocka_unit_test(test_windows_close_on_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
