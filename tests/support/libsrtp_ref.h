/*
 * libsrtp_ref.h - Debian's libsrtp2 set up as the reference our SRTP
 * (media/srtp.h) is checked against (tests/unit/test_srtp.c) and timed
 * against (bench/srtp_speed.c). Tabib itself no longer links libsrtp2.
 */
#ifndef TABIB_TEST_LIBSRTP_REF_H
#define TABIB_TEST_LIBSRTP_REF_H

#include <stdbool.h>

#include <srtp2/srtp.h>

#include "srtp.h"

/*
 * A libsrtp session keyed like one side of `k`: `outbound` with our (local)
 * master key and salt, as a sender; otherwise with the peer's (remote), as a
 * receiver. Set up as tabib's libsrtp wrapper was before it was replaced: any
 * SSRC, a 128-packet replay window, repeats allowed when sending. With
 * `encrypt_rtcp` false SRTCP is authenticated only (the E flag clear).
 * Returns NULL when libsrtp refuses (call srtp_init() first).
 */
srtp_t libsrtp_ref_session(const struct media_srtp_keys *k, bool outbound, bool encrypt_rtcp);

#endif
