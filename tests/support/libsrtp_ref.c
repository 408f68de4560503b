/*
 * libsrtp_ref.c - the libsrtp2 reference session; see libsrtp_ref.h.
 */
#include "libsrtp_ref.h"

#include <string.h>

srtp_t libsrtp_ref_session(const struct media_srtp_keys *k, bool outbound, bool encrypt_rtcp)
{
    srtp_policy_t p;
    memset(&p, 0, sizeof(p));
    if (k->profile == MEDIA_SRTP_PROFILE_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
    }
    if (!encrypt_rtcp)
        p.rtcp.sec_serv = sec_serv_auth;
    unsigned char master[MEDIA_SRTP_KEY_MAX + MEDIA_SRTP_SALT_MAX];
    memcpy(master, outbound ? k->local_key : k->remote_key, k->key_len);
    memcpy(master + k->key_len, outbound ? k->local_salt : k->remote_salt, k->salt_len);
    p.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    p.key = master;
    p.window_size = 128;
    p.allow_repeat_tx = outbound;
    srtp_t session = NULL;
    return srtp_create(&session, &p) == srtp_err_status_ok ? session : NULL;
}
