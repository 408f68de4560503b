/*
 * fuzz_check.h - FUZZ_CHECK(cond): like assert(), but also in builds with
 * NDEBUG, because the fuzz drivers run as corpus replays in every build.
 */
#ifndef TABIB_FUZZ_CHECK_H
#define TABIB_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
