#!/usr/bin/env bash
# The side-by-side benchmarks of BENCHMARKS.md in one run, release builds, each beside its
# peer or baseline measured in the same run: restart latency (a shell loop, PM2, supervisord,
# ours), HTTP throughput (a bare warp route, ours), memory per session, per logical agent and
# per supervised process (PM2, supervisord, ours), start-up with 10,000 stored sessions (an
# empty data dir). Prints the machine, its load before and after each part, and each part's
# table; the whole report is also written to $CARGO_TARGET_DIR/side-by-side.md.
#
#   benches/side_by_side.sh          (needs wrk, jq, python3, node/npm; about 10 minutes)
#
# Environment: RESTARTS (30), DURATION (seconds per wrk run, 8), ROUNDS (wrk rounds, 3).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
report="$target/side-by-side.md"
cargo build --release --bin session-manager --example fake_agent --example bare_warp >&2

load() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"; }
{
    echo "# Side by side, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
    echo
    echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); $(load)"
    echo
    echo "## Restart latency"
    BUILD=0 benches/restart_peers.sh "${RESTARTS:-30}" release
    echo "$(load)"
    echo
    echo "## HTTP: GET /api/claude/sessions/{id} against a bare warp route"
    BUILD=0 DURATION="${DURATION:-8}" ROUNDS="${ROUNDS:-3}" benches/http.sh
    echo
    echo "## Memory and start-up"
    BUILD=0 benches/footprint.sh release
    echo "$(load)"
} 2>&1 | tee "$report"
