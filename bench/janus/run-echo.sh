#!/usr/bin/env bash
# Janus's side of bench/run: starts Debian's Janus with the benchmark's own
# configuration (janus-config.sh: loopback only, EchoTest alone), waits for its
# WebSocket API, runs the load generator's janus-echo ramp against it, stops it.
# bench/run calls this inside a network namespace that has only loopback.
#
# Environment: LOADGEN (the load generator's command line, without --target),
# RAMP, OUT (the results folder), JANUS_LO_ONLY_SO (the loopback shim).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
janus_pid=
cleanup() {
  if [ -n "$janus_pid" ] && kill -0 "$janus_pid" 2>/dev/null; then
    kill -TERM "$janus_pid"
    wait "$janus_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

port=8188
cmd=$("$here/janus-config.sh" "$dir/config" "$port" 20000-39999)
# exec: the background job becomes Janus itself, so $! is Janus's PID.
eval "exec $cmd" >"$dir/janus.log" 2>&1 &
janus_pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  if ! kill -0 "$janus_pid" 2>/dev/null; then
    echo "run-echo: Janus did not start:" >&2
    cat "$dir/janus.log" >&2
    exit 1
  fi
  sleep 0.1
done
# shellcheck disable=SC2086 # LOADGEN is a command line
$LOADGEN --target janus-echo --janus-port "$port" --janus-pid "$janus_pid" --ramp "$RAMP" \
  --json "$OUT/janus-echo.json"
