/*
 * chain.c - the audit log's hash chain: canonical event bytes and SHA-256
 * (see chain.h).
 */
#include "chain.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

int audit_chain_hash(const uint8_t prev[AUDIT_HASH_BYTES], int64_t id, int64_t ts_ms,
                     const char *const fields[AUDIT_FIELD_COUNT], uint8_t out[AUDIT_HASH_BYTES])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, prev, AUDIT_HASH_BYTES) == 1;
    uint8_t num[8];
    be64(num, (uint64_t)id);
    ok = ok && EVP_DigestUpdate(md, num, sizeof(num)) == 1;
    be64(num, (uint64_t)ts_ms);
    ok = ok && EVP_DigestUpdate(md, num, sizeof(num)) == 1;
    for (int f = 0; ok && f < AUDIT_FIELD_COUNT; f++) {
        uint8_t head[5] = {fields[f] != NULL};
        size_t len = fields[f] ? strlen(fields[f]) : 0;
        head[1] = (uint8_t)(len >> 24);
        head[2] = (uint8_t)(len >> 16);
        head[3] = (uint8_t)(len >> 8);
        head[4] = (uint8_t)len;
        ok = EVP_DigestUpdate(md, head, fields[f] ? 5 : 1) == 1 &&
             (!len || EVP_DigestUpdate(md, fields[f], len) == 1);
    }
    unsigned n = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &n) == 1 && n == AUDIT_HASH_BYTES;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

void audit_chain_hex(const uint8_t hash[AUDIT_HASH_BYTES], char *out)
{
    for (int i = 0; i < AUDIT_HASH_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", hash[i]);
}
