#!/usr/bin/env bash
# WebSocket fan-out: CLIENTS (1000) clients on /ws/sessions of a fresh release server, every
# event timed from its publication to its arrival at each client (examples/ws_fanout.rs).
#   1. sessions: EVENTS (20) sessions created and purged; every `sessions` event measured.
#   2. alerts: a session whose BACKEND agent (examples/fake_agent, allocating 64 MiB) is over
#      its max_memory_mb of 16 raises an alert (`memory_limit`) at each of its memory samples
#      and is restarted, for ALERT_SECONDS (15); the monitor's memory threshold is 1 %, so
#      the monitor's own alerts (`memory_usage` of the session or the host) join in. Every
#      `alert` and `alert_resolved` published after all clients subscribed is measured.
# Usage: benches/ws_fanout.sh   (CLIENTS, EVENTS, ALERT_SECONDS; SERVER: a session-manager
#   binary to measure instead of this checkout's release build; BUILD=0: use the binaries
#   as built)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-1000}"
EVENTS="${EVENTS:-20}"
ALERT_SECONDS="${ALERT_SECONDS:-15}"

[ "${BUILD:-1}" = 1 ] &&
    cargo build --quiet --release --bin session-manager --example ws_fanout --example fake_agent
target="${CARGO_TARGET_DIR:-target}/release"
server="${SERVER:-$target/session-manager}"

# Each client is a socket at both ends, and both ends run here.
ulimit -n "$(ulimit -Hn)"
need=$((CLIENTS + 256))
[ "$(ulimit -n)" -ge "$need" ] || { echo "open-file limit $(ulimit -n) < $need" >&2; exit 2; }

tmp="$(mktemp -d)"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/home"
# Every client connects from 127.0.0.1: the connection caps are raised above CLIENTS.
cat >"$tmp/config.toml" <<TOML
[server]
max_connections = $(( ${CLIENTS:-1000} + 64 ))
max_connections_per_address = $(( ${CLIENTS:-1000} + 64 ))

[agents.templates.BACKEND]
command = ["$(realpath "$target/examples/fake_agent")", "--alloc-mb", "64"]
backoff = { initial_ms = 200, max_ms = 200, multiplier = 1.0, reset_after_seconds = 60 }

[monitor.thresholds]
memory_percent = 1
TOML
HOME="$tmp/home" "$server" --config "$tmp/config.toml" --port 0 \
    --data-dir "$tmp/data" >"$tmp/server.out" 2>/dev/null &
pid=$!
url=
for _ in $(seq 1 300); do
    url="$(sed -n 's/^session-manager listening on //p' "$tmp/server.out" | head -1)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start" >&2; exit 1; }

echo "== sessions topic"
"$target/examples/ws_fanout" --url "$url" --clients "$CLIENTS" --mode sessions --events "$EVENTS"
echo "== alerts topic"
"$target/examples/ws_fanout" --url "$url" --clients "$CLIENTS" --mode alerts --seconds "$ALERT_SECONDS"
