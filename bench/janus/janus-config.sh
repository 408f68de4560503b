#!/bin/sh
# Writes a complete, self-contained configuration of Debian's Janus (1.1.2) for the
# benchmark into DIR, and prints the command line that starts Janus with it.
#
#   bench/janus/janus-config.sh DIR PORT [RTP_PORT_RANGE]
#   eval "exec $(bench/janus/janus-config.sh /tmp/j 8188 20000-20999)"
#
# What that Janus does, and nothing more:
# - the Janus API over plain WebSocket (subprotocol janus-protocol) on 127.0.0.1:PORT;
#   no wss, no admin API, and no other transport (HTTP, pfunix, MQTT, RabbitMQ,
#   nanomsg): DIR/transports holds the WebSocket transport alone;
# - one plugin, janus.plugin.echotest (DIR/plugins holds it alone);
# - no event handler (broadcast off, DIR/events empty) and no external logger
#   (DIR/loggers empty): logging goes to stdout only, warnings and errors (debug_level 3);
# - ICE on the loopback interface only, host candidates on 127.0.0.1 (RTP ports in
#   RTP_PORT_RANGE when given), no STUN, no TURN, no 1:1 NAT, no mDNS, no IPv6,
#   full ICE (not lite), half trickle: Janus's candidates come in its answer;
# - sessions that never time out (session_timeout 0): Janus destroys a session as
#   soon as its WebSocket closes (reclaim_session_timeout 0), so nothing is orphaned.
#
# Nothing under /etc/janus is read: configs_folder is DIR, and every plugin and
# transport reads DIR/<its package name>.jcfg.
#
# Loopback: Janus 1.1.2 skips any interface flagged IFF_LOOPBACK when it gathers
# (src/ice.c, before ice_enforce_list is even looked at), and so does libnice's own
# fallback. The command line therefore preloads lo_only.so (bench/janus/lo_only.c),
# which shows Janus the "lo" interface alone, without that flag, and refuses it raw
# sockets (usrsctp, initialised for data channels, would otherwise bind raw SCTP
# sockets to 0.0.0.0 and :: when run as root). ice_enforce_list "lo" says the same in
# the configuration. The shim is $JANUS_LO_ONLY_SO when set
# (the build makes one: build/bench/janus_lo_only.so), else it is compiled here
# into DIR with ${CC:-cc}.
#
# The printed command is shell-quoted, one line: janus in the foreground (the
# default: daemonize is off), colours off.
set -eu

usage() {
  echo "usage: $0 DIR PORT [RTP_PORT_RANGE (e.g. 20000-20999)]" >&2
  exit 2
}
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then usage; fi
dir=$1
port=$2
range=${3:-}
case "$port" in
  '' | *[!0-9]*) usage ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then usage; fi
if [ -n "$range" ]; then
  lo=${range%-*}
  hi=${range#*-}
  case "$lo$hi" in '' | *[!0-9]*) usage ;; esac
  if [ "$lo" = "$range" ] || [ "$lo" -lt 1 ] || [ "$lo" -gt "$hi" ] || [ "$hi" -gt 65535 ]; then
    usage
  fi
fi

here=$(cd "$(dirname "$0")" && pwd)
# JANUS_EVENT_LOOPS=N: N shared event loops for all handles; unset: Janus's default, a loop
# (and a thread) of its own per handle.
loops_line=
if [ -n "${JANUS_EVENT_LOOPS:-}" ]; then
  loops_line="	event_loops = ${JANUS_EVENT_LOOPS}"
fi
janus=$(command -v janus || true)
[ -n "$janus" ] || {
  echo "$0: janus is not installed (apt-get install janus)" >&2
  exit 1
}

# The package's modules: /usr/lib/<multiarch>/janus on Debian, or $JANUS_LIB_DIR.
libdir=${JANUS_LIB_DIR:-}
if [ -z "$libdir" ]; then
  for d in /usr/lib/*/janus /usr/lib/janus /usr/local/lib/janus /opt/janus/lib/janus; do
    if [ -f "$d/plugins/libjanus_echotest.so" ]; then
      libdir=$d
      break
    fi
  done
fi
for f in plugins/libjanus_echotest.so transports/libjanus_websockets.so; do
  if [ -z "$libdir" ] || [ ! -f "$libdir/$f" ]; then
    echo "$0: cannot find Janus's $f (set JANUS_LIB_DIR)" >&2
    exit 1
  fi
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/plugins" "$dir/transports" "$dir/events" "$dir/loggers"
mkdir -p "$dir/plugins" "$dir/transports" "$dir/events" "$dir/loggers"
ln -s "$libdir/plugins/libjanus_echotest.so" "$dir/plugins/libjanus_echotest.so"
ln -s "$libdir/transports/libjanus_websockets.so" "$dir/transports/libjanus_websockets.so"

shim=${JANUS_LO_ONLY_SO:-}
if [ -z "$shim" ]; then
  shim=$dir/lo_only.so
  ${CC:-cc} -O2 -Wall -Wextra -Werror -shared -fPIC -o "$shim" "$here/lo_only.c" -ldl -lpthread
fi
[ -f "$shim" ] || {
  echo "$0: no shim at $shim" >&2
  exit 1
}

rtp_line="#rtp_port_range: libnice picks any free port"
[ -z "$range" ] || rtp_line="rtp_port_range = \"$range\""

cat >"$dir/janus.jcfg" <<EOF
# Written by bench/janus/janus-config.sh: Janus for the benchmark, loopback only.
general: {
	configs_folder = "$dir"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/events"
	loggers_folder = "$dir/loggers"
	log_to_stdout = true
	debug_level = 3
	debug_colors = false
	daemonize = false
	exit_on_dl_error = true
	interface = "127.0.0.1"
	server_name = "tabib-bench"
$loops_line
	session_timeout = 0
	reclaim_session_timeout = 0
	hide_dependencies = true
}
certificates: {
	# none: Janus makes a self-signed P-256 certificate at start
}
media: {
	ipv6 = false
	ipv6_linklocal = false
	$rtp_line
	no_media_timer = 0
	slowlink_threshold = 0
}
nat: {
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "lo"
	allow_force_relay = false
}
plugins: {
}
transports: {
}
loggers: {
}
events: {
	broadcast = false
}
EOF

cat >"$dir/janus.transport.websockets.jcfg" <<EOF
general: {
	json = "compact"
	events = false
	ws = true
	ws_port = $port
	ws_ip = "127.0.0.1"
	wss = false
	ws_logging = "err"
}
admin: {
	admin_ws = false
	admin_wss = false
}
cors: {
}
certificates: {
}
EOF

cat >"$dir/janus.plugin.echotest.jcfg" <<EOF
general: {
	events = false
}
EOF

q() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
printf 'env %s %s -C %s -F %s -o\n' "$(q "LD_PRELOAD=$shim")" "$(q "$janus")" \
  "$(q "$dir/janus.jcfg")" "$(q "$dir")"
