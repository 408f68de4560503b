#!/bin/sh
# crypto_cost.sh - what the SRTP primitives cost on this machine, as one JSON object.
#
#   bench/crypto_cost.sh > crypto.json            CPU=0 RUNS=3 bench/crypto_cost.sh
#
# Runs `openssl speed` (OpenSSL 3.0's syntax), pinned with `taskset -c ${CPU:-1}`, for an
# audio-sized (100 bytes) and a video-sized (1100 bytes) packet, and prints nanoseconds per
# operation for each primitive and size, the best of RUNS (2) runs of one second:
#
#   aes-128-gcm-seal   `-aead -evp aes-128-gcm`: per operation, set the IV, 13 bytes of AAD,
#                      the payload, the tag: what sealing one SRTP AEAD_AES_128_GCM packet
#                      does (the AAD is the RTP header). Without -aead, `speed` only times
#                      EVP_EncryptUpdate over a running stream, with no IV and no tag.
#   aes-128-gcm-open   the same with -decrypt.
#   aes-128-ctr        `-evp aes-128-ctr`: EVP_EncryptUpdate over a running stream. Per SRTP
#                      packet AES-CM also sets a fresh IV, which this leaves out.
#   hmac-sha1          `-hmac sha1`: per operation re-initialised with the same key, updated
#                      and finalised, as the SRTP authentication tag is computed.
#
# and the estimates for one 1100-byte packet:
#   srtp_gcm_ns      = aes-128-gcm-seal at 1100 (opening costs about the same, see above)
#   srtp_cm_sha1_ns  = aes-128-ctr + hmac-sha1 at 1100 (AES_CM_128_HMAC_SHA1_80)
# (the same for 100 bytes as srtp_gcm_audio_ns and srtp_cm_sha1_audio_ns).
#
# Why the best of two: `openssl speed` divides by the CPU time the process spent in user
# mode, not by wall time, so sharing the CPU with other processes does not stretch the
# figure directly; but the caches they pollute and a busy sibling hyperthread do, by up
# to half on the shared 2-vCPU VM this was written on. The fastest run is the closest to
# the cost on a quiet core. Sixteen one-second runs take about 17 s.
set -eu

CPU=${CPU:-1}
RUNS=${RUNS:-2}
SIZES="100 1100"

command -v openssl >/dev/null || { echo "crypto_cost.sh: openssl not found" >&2; exit 1; }
command -v taskset >/dev/null || { echo "crypto_cost.sh: taskset not found" >&2; exit 1; }

# ns_per_op SIZE OPENSSL-SPEED-ARGS...: nanoseconds per operation on SIZE-byte buffers, the
# best of RUNS runs. -mr prints "+F:<index>:<name>:<bytes per second>" for the one size asked.
ns_per_op() {
    size=$1
    shift
    out=""
    run=0
    while [ "$run" -lt "$RUNS" ]; do
        out="$out
$(taskset -c "$CPU" openssl speed "$@" -bytes "$size" -seconds 1 -mr 2>/dev/null)" ||
            { echo "crypto_cost.sh: openssl speed $* failed" >&2; exit 1; }
        run=$((run + 1))
    done
    echo "$out" | awk -F: -v size="$size" '
        /^\+F:/ && $NF > best { best = $NF }
        END {
            if (best + 0 <= 0) exit 1
            printf "%.1f", size * 1e9 / best
        }' || { echo "crypto_cost.sh: no result from openssl speed $*" >&2; exit 1; }
}

# primitive NAME OPENSSL-SPEED-ARGS...: one JSON member, "NAME":{"100":ns,"1100":ns}.
primitive() {
    name=$1
    shift
    members=""
    for size in $SIZES; do
        ns=$(ns_per_op "$size" "$@")
        members="${members:+$members,}\"$size\":$ns"
    done
    printf '"%s":{%s}' "$name" "$members"
}

gcm_seal=$(primitive aes-128-gcm-seal -aead -evp aes-128-gcm)
gcm_open=$(primitive aes-128-gcm-open -decrypt -aead -evp aes-128-gcm)
ctr=$(primitive aes-128-ctr -evp aes-128-ctr)
hmac=$(primitive hmac-sha1 -hmac sha1)

# pick MEMBER SIZE: the figure for SIZE in a member printed by primitive.
pick() {
    echo "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"
}
GCM_SEAL_100=$(pick "$gcm_seal" 100)
GCM_SEAL_1100=$(pick "$gcm_seal" 1100)
CTR_100=$(pick "$ctr" 100)
CTR_1100=$(pick "$ctr" 1100)
HMAC_100=$(pick "$hmac" 100)
HMAC_1100=$(pick "$hmac" 1100)

version=$(openssl version | sed 's/\\/\\\\/g; s/"/\\"/g')
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1 | sed 's/\\/\\\\/g; s/"/\\"/g')

awk -v v="$version" -v m="$cpu_model" -v cpu="$CPU" -v runs="$RUNS" \
    -v prims="$gcm_seal,$gcm_open,$ctr,$hmac" \
    -v g1100="$GCM_SEAL_1100" -v g100="$GCM_SEAL_100" \
    -v c1100="$CTR_1100" -v c100="$CTR_100" -v h1100="$HMAC_1100" -v h100="$HMAC_100" 'BEGIN {
    printf "{\"openssl\":\"%s\",\"cpu_model\":\"%s\",\"cpu\":%d,\"runs\":%d,", v, m, cpu, runs
    printf "\"ns_per_op\":{%s},", prims
    printf "\"srtp_gcm_ns\":%.1f,\"srtp_cm_sha1_ns\":%.1f,", g1100, c1100 + h1100
    printf "\"srtp_gcm_audio_ns\":%.1f,\"srtp_cm_sha1_audio_ns\":%.1f}\n", g100, c100 + h100
}'
