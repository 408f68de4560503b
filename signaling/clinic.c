/*
 * clinic.c - clinic opening hours: parsing "Sun-Thu 08:00-20:00" and telling
 * whether a clinic takes patients now. Pure functions; any thread.
 *
 * Hours are in the server's local time zone (TZ), which is how a clinic
 * states them; a closing time before the opening time means overnight.
 */
#include "signaling.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static int day_index(const char *s, size_t len)
{
    if (len != 3)
        return -1;
    for (int i = 0; i < 7; i++)
        if (strncasecmp(s, day_names[i], 3) == 0)
            return i;
    return -1;
}

/* "Sun-Thu", "Mon,Wed,Fri", "Fri" or "daily" into a bit mask. */
static int parse_days(const char *s, size_t len, uint8_t *mask)
{
    *mask = 0;
    if (len == 5 && strncasecmp(s, "daily", 5) == 0) {
        *mask = 0x7f;
        return 0;
    }
    while (len > 0) {
        size_t item = 0;
        while (item < len && s[item] != ',')
            item++;
        const char *dash = memchr(s, '-', item);
        if (dash) {
            int from = day_index(s, (size_t)(dash - s));
            int to = day_index(dash + 1, item - (size_t)(dash - s) - 1);
            if (from < 0 || to < 0)
                return -1;
            for (int d = from;; d = (d + 1) % 7) { /* Thu-Sun wraps over the week's end */
                *mask |= (uint8_t)(1u << d);
                if (d == to)
                    break;
            }
        } else {
            int d = day_index(s, item);
            if (d < 0)
                return -1;
            *mask |= (uint8_t)(1u << d);
        }
        if (item == len)
            break;
        s += item + 1;
        len -= item + 1;
        if (len == 0)
            return -1; /* trailing comma */
    }
    return 0;
}

/* "08:00" into minutes; 24:00 is allowed as a closing time. */
static int parse_clock(const char *s, unsigned *minutes)
{
    unsigned h, m;
    char extra;
    if (strlen(s) != 5 || sscanf(s, "%2u:%2u%c", &h, &m, &extra) != 2 || s[2] != ':')
        return -1;
    if (h > 24 || m > 59 || (h == 24 && m != 0))
        return -1;
    *minutes = h * 60 + m;
    return 0;
}

int sig_clinic_parse_hours(struct sig_clinic_config *clinic, const char *text)
{
    const char *space = strchr(text, ' ');
    if (!space || strchr(space + 1, ' '))
        return -1;
    uint8_t days;
    if (parse_days(text, (size_t)(space - text), &days) != 0)
        return -1;
    const char *range = space + 1;
    const char *dash = strchr(range, '-');
    if (!dash || dash - range != 5)
        return -1;
    char open[6], close[8];
    memcpy(open, range, 5);
    open[5] = '\0';
    snprintf(close, sizeof(close), "%s", dash + 1);
    unsigned o, c;
    if (parse_clock(open, &o) || parse_clock(close, &c) || o == c || o >= 24 * 60)
        return -1;
    clinic->has_hours = true;
    clinic->open_days = days;
    clinic->open_minute = (uint16_t)o;
    clinic->close_minute = (uint16_t)c;
    return 0;
}

bool sig_clinic_is_open(const struct sig_clinic_config *clinic, int64_t t)
{
    if (!clinic->has_hours)
        return true;
    time_t secs = (time_t)t;
    struct tm tm;
    localtime_r(&secs, &tm);
    unsigned now = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
    int today = tm.tm_wday, yesterday = (tm.tm_wday + 6) % 7;
    if (clinic->open_minute < clinic->close_minute)
        return (clinic->open_days >> today & 1) && now >= clinic->open_minute &&
               now < clinic->close_minute;
    /* Overnight: open from open_minute today, or still open from yesterday's opening. */
    return ((clinic->open_days >> today & 1) && now >= clinic->open_minute) ||
           ((clinic->open_days >> yesterday & 1) && now < clinic->close_minute);
}
