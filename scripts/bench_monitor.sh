#!/usr/bin/env bash
# The monitor's cost: CPU time of the server process (all its threads) over a window while it
# supervises AGENTS idle agent processes (examples/fake_agent --sleep-forever), once sampled
# every second and once with monitor.interval_seconds = 3600 (no tick inside the window, the
# baseline). Prints both and the difference as a percentage of one core.
#
#   cargo build --release --bin session-manager --example fake_agent
#   scripts/bench_monitor.sh                       # 200 agents, 60 s
#   AGENTS=50 SECONDS_=20 BUILD=debug scripts/bench_monitor.sh
#
# Timings are printed, never asserted (STYLE 10).
set -euo pipefail

AGENTS=${AGENTS:-200}
WINDOW=${SECONDS_:-60}
BUILD=${BUILD:-release}
PER_SESSION=10
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$BUILD/session-manager
FAKE=$TARGET/$BUILD/examples/fake_agent
[[ -x $BIN && -x $FAKE ]] || { echo "build first: $BIN and $FAKE are needed" >&2; exit 1; }
TICK=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of the whole process
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

run() {
    local interval=$1 data out pid addr
    data=$(mktemp -d)
    out=$data/stdout
    HOME=$data SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS=true \
        SESSION_MANAGER_MONITOR__INTERVAL_SECONDS=$interval \
        "$BIN" --port 0 --data-dir "$data/d" --log-level warn >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
    addr=$(sed -n 's|.*listening on http://||p' "$out")
    local sessions=$(((AGENTS + PER_SESSION - 1) / PER_SESSION)) s a agents
    for s in $(seq "$sessions"); do
        agents=""
        for a in $(seq "$PER_SESSION"); do
            agents+="${agents:+,}{\"agent_type\":\"BACKEND\",\"name\":\"a$a\",\"command\":[\"$FAKE\",\"--sleep-forever\"]}"
        done
        mkdir -p "$data/w$s"
        curl -sf -o /dev/null "http://$addr/api/claude/sessions" -H 'content-type: application/json' \
            -d "{\"name\":\"s$s\",\"working_directory\":\"$data/w$s\",\"git_enabled\":false,\"max_agents\":$PER_SESSION,\"agents\":[$agents]}"
    done
    local running=0
    for _ in $(seq 300); do
        running=$(curl -sf "http://$addr/api/claude/system-status" |
            sed -n 's/.*"active_agents":\([0-9]*\).*/\1/p' | head -1)
        [[ ${running:-0} -ge $((sessions * PER_SESSION)) ]] && break
        sleep 0.2
    done
    sleep 3
    local t0 t1
    t0=$(cpu_ticks "$pid")
    sleep "$WINDOW"
    t1=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$data"
    echo "$running $((t1 - t0))"
}

read -r running_idle idle < <(run 3600)
read -r running_busy busy < <(run 1)
pct() { awk -v t="$1" -v hz="$TICK" -v w="$WINDOW" 'BEGIN { printf "%.2f", t / hz / w * 100 }'; }
echo "agents running: baseline $running_idle, sampled $running_busy; window ${WINDOW}s; build $BUILD"
echo "baseline (no tick):    $(pct "$idle") % of one core"
echo "sampled every second:  $(pct "$busy") % of one core"
echo "monitor cost:          $(pct $((busy - idle))) % of one core"
