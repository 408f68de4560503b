#!/bin/sh
# Runs the browser tests (default: media.test.js, flow.test.js, app.test.js) inside a
# private network namespace whose only interface is loopback, so that neither
# Chromium nor tabib can see, advertise or send to any address but 127.0.0.1 and ::1.
#
#   tests/browser/run-in-netns.sh [node --test arguments, e.g. test files]
#   TABIB_BINARY=build/tabib tests/browser/run-in-netns.sh media.test.js flow.test.js
#
# Test files run one after the other (--test-concurrency=1): each starts two
# Chromium processes and a server, and flow.test.js measures latencies and
# bandwidth estimates that another file's browsers would disturb.
#
# `unshare --map-root-user` makes a user namespace too, so this works without
# root where unprivileged user namespaces are enabled (Debian's default). As
# root there, Chromium runs with --no-sandbox (playwright-core's default).
set -eu

# A relative TABIB_BINARY is relative to the caller's working directory.
if [ -n "${TABIB_BINARY:-}" ]; then
  case "$TABIB_BINARY" in
    /*) ;;
    *) TABIB_BINARY="$(pwd)/$TABIB_BINARY" ;;
  esac
  export TABIB_BINARY
fi

cd "$(dirname "$0")"

for tool in unshare ip node; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run-in-netns: \"$tool\" is missing (scripts/install-deps installs it)" >&2
    exit 1
  fi
done

if [ "$#" -eq 0 ]; then
  set -- media.test.js flow.test.js app.test.js
fi

# --pid --fork --kill-child: the shell is process 1 of a new PID namespace, so when
# it ends, or unshare is killed, the kernel ends everything started inside (node,
# tabib, Chromium) and nothing outside. unshare itself ignores SIGTERM, so this
# script passes a SIGINT, SIGTERM or SIGHUP on as a SIGKILL to it (its own child).
# Everything temporary (tabib's data, Chromium's HOME and profile, the WAV files)
# goes under one directory, removed at the end even when the run was interrupted.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/tabib-browser-run.XXXXXX")
export TMPDIR="$run_tmp"

unshare --net --map-root-user --pid --fork --kill-child --mount-proc \
  sh -c 'ip link set lo up && node --test --test-concurrency=1 --test-reporter=spec "$@"' run-in-netns "$@" &
child=$!
trap 'kill -KILL "$child" 2>/dev/null || true' INT TERM HUP
status=0
wait "$child" || status=$?
if [ "$status" -gt 128 ]; then
  wait "$child" 2>/dev/null || true # interrupted by the trap: reap unshare
fi
rm -rf "$run_tmp"
exit "$status"
