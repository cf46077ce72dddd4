#!/usr/bin/env bash
# GET /api/claude/sessions/{id} on session-manager against a bare warp route serving the
# same bytes (examples/bare_warp.rs), measured side by side with wrk: release builds, the
# same connections, the rounds interleaved (bare, ours, bare, ours, ...) so both see the same
# machine. Prints each round, then the medians and the ratios ours/bare.
#
# Usage: benches/http.sh            (needs wrk: apt-get install wrk)
# Environment: CONNECTIONS (64), THREADS (wrk threads, 2), DURATION (seconds per run, 10),
#   ROUNDS (3), GIT=1 (the session works in a git repository, as Claude Code sessions do:
#   each GET then reads the repository's state), TOKEN (run the server with this bearer
#   token and send it), SERVER (a session-manager binary to measure instead of this
#   checkout's release build: before/after comparisons), BUILD=0 (use the binaries as built),
#   HISTORY=N (N monitor samples of the session stored first, one per second back from now:
#   3600 is an hour of history at the default interval; needs sqlite3).
# The server runs with its default configuration but for the rate limit, raised so that the
# limiter still runs on every request but never refuses the load; any non-2xx answer fails
# the bench.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
GIT="${GIT:-0}"
TOKEN="${TOKEN:-}"
HISTORY="${HISTORY:-0}"
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 2; }

[ "${BUILD:-1}" = 1 ] && cargo build --quiet --release --bin session-manager --example bare_warp
target="${CARGO_TARGET_DIR:-target}/release"
server="${SERVER:-$target/session-manager}"

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Waits for "<name> listening on URL" in a log file; prints URL.
listening() {
    for _ in $(seq 1 300); do
        url="$(sed -n 's/^.* listening on //p' "$1" | head -1)"
        [ -n "$url" ] && { echo "$url"; return; }
        sleep 0.1
    done
    echo "nothing listens: $(cat "$1")" >&2
    exit 1
}

mkdir -p "$tmp/home" "$tmp/work"
auth=()
[ -n "$TOKEN" ] && auth=(-H "Authorization: Bearer $TOKEN")
HOME="$tmp/home" \
SESSION_MANAGER_SERVER__TOKEN="$TOKEN" \
SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND=100000000 \
SESSION_MANAGER_SERVER__RATE_LIMIT_BURST=100000000 \
    "$server" --port 0 --data-dir "$tmp/data" >"$tmp/ours.out" 2>/dev/null &
ours_pid=$!
pids+=($ours_pid)
ours="$(listening "$tmp/ours.out")"

project="$tmp/work/project"
mkdir -p "$project"
if [ "$GIT" = 1 ]; then
    git -C "$project" init --quiet
    for i in $(seq 1 50); do echo "file $i" >"$project/file$i.txt"; done
    git -C "$project" add .
    git -C "$project" -c user.name=bench -c user.email=bench@localhost commit --quiet -m init
fi
id="$(curl -sf "${auth[@]}" "$ours/api/claude/sessions" -H 'content-type: application/json' \
    -d "{\"name\": \"bench\", \"working_directory\": \"$project\",
         \"agents\": [{\"agent_type\": \"ORCHESTRATOR\"}, {\"agent_type\": \"BACKEND\"}]}" \
    | jq -r .session.id)"
path="/api/claude/sessions/$id"
if [ "$HISTORY" -gt 0 ]; then
    # HISTORY monitor samples of this session, one a second back from now, as the monitor
    # stores them (two agents in each sample's detail): the GET's summary covers them.
    sqlite3 "$tmp/data/sessions/session_manager.db" "
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $HISTORY)
        INSERT INTO metrics (session_id, at, cpu_percent, memory_mb, memory_percent,
            disk_percent, agents_running, agents_total, restarts, errors, detail)
        SELECT '$id', (julianday('now') - 2440587.5) * 86400.0 - i, i % 50, 100 + i % 30, 1.5, 40.0, 2, 2, 0, 0,
            '[{\"name\":\"master-orchestrator\",\"pid\":1,\"processes\":1,\"cpu_percent\":1.0,\"memory_mb\":50.0,\"threads\":4,\"open_files\":12},{\"name\":\"backend-services\",\"pid\":2,\"processes\":3,\"cpu_percent\":2.0,\"memory_mb\":60.0,\"threads\":8,\"open_files\":20}]'
        FROM n;"
fi
curl -sf "${auth[@]}" "$ours$path" >"$tmp/body.json"

"$target/examples/bare_warp" "$tmp/body.json" >"$tmp/bare.out" 2>/dev/null &
bare_pid=$!
pids+=($bare_pid)
bare="$(listening "$tmp/bare.out")"

# CPU time (user + system) a process has used, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# One wrk run against URL, served by PID; prints "req/s p99_ms cpu_us_per_request".
measure() {
    local out="$tmp/wrk.txt" before after
    before="$(ticks "$2")"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${auth[@]}" "$1$path" >"$out"
    after="$(ticks "$2")"
    if grep -q "Non-2xx" "$out"; then
        echo "non-2xx answers from $1:" >&2
        cat "$out" >&2
        exit 1
    fi
    awk -v ticks=$((after - before)) -v hz="$hz" '
        /Requests\/sec:/ { rps = $2 }
        /requests in/ { n = $1 }
        $1 == "99%" {
            v = $2
            if (v ~ /us$/) { sub(/us$/, "", v); p99 = v / 1000 }
            else if (v ~ /ms$/) { sub(/ms$/, "", v); p99 = v }
            else if (v ~ /s$/) { sub(/s$/, "", v); p99 = v * 1000 }
        }
        END { printf "%.0f %.3f %.1f\n", rps, p99, ticks * 1e6 / hz / n }
    ' "$out"
}

echo "GET $path ($(wc -c <"$tmp/body.json") bytes), $CONNECTIONS connections, $THREADS wrk threads, ${DURATION}s per run, $ROUNDS rounds, git=$GIT, token=$([ -n "$TOKEN" ] && echo yes || echo no)"
echo "$(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-5s %12s %10s %12s\n' round who req/s p99_ms cpu_us/req
: >"$tmp/results"
for round in $(seq 1 "$ROUNDS"); do
    for who in bare ours; do
        url="$bare" pid="$bare_pid"
        [ "$who" = ours ] && url="$ours" pid="$ours_pid"
        read -r rps p99 cpu < <(measure "$url" "$pid")
        printf '%-6s %-5s %12s %10s %12s\n' "$round" "$who" "$rps" "$p99" "$cpu"
        echo "$who $rps $p99 $cpu" >>"$tmp/results"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
bare_rps="$(awk '$1 == "bare" { print $2 }' "$tmp/results" | median)"
ours_rps="$(awk '$1 == "ours" { print $2 }' "$tmp/results" | median)"
bare_p99="$(awk '$1 == "bare" { print $3 }' "$tmp/results" | median)"
ours_p99="$(awk '$1 == "ours" { print $3 }' "$tmp/results" | median)"
bare_cpu="$(awk '$1 == "bare" { print $4 }' "$tmp/results" | median)"
ours_cpu="$(awk '$1 == "ours" { print $4 }' "$tmp/results" | median)"
awk -v br="$bare_rps" -v ourr="$ours_rps" -v bp="$bare_p99" -v op="$ours_p99" \
    -v bc="$bare_cpu" -v oc="$ours_cpu" 'BEGIN {
    printf "median  bare %.0f req/s, p99 %.2f ms, %.1f us CPU/req | ours %.0f req/s, p99 %.2f ms, %.1f us CPU/req\n", br, bp, bc, ourr, op, oc
    printf "ratios  throughput ours/bare %.2f (target >= 0.70 %s), p99 ours/bare %.2f (target <= 2 %s)\n",
        ourr / br, (ourr / br >= 0.70) ? "met" : "MISSED", op / bp, (op / bp <= 2) ? "met" : "MISSED"
}'
