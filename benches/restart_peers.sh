#!/usr/bin/env bash
# Restart latency side by side, in one run, on one program: how soon after a crash each
# supervisor has the program running again. The program is examples/fake_agent, which stamps
# `exit <pid> <ns>` as its last act and `start <pid> <ns>` as its first; a restart's latency
# is the gap between one run's exit stamp and the next run's start stamp.
#
#   benches/restart_peers.sh [RESTARTS] [release|dev]      (default 30, release)
#
# Supervisors: a plain `sh` while loop; PM2 (npm, installed under the target dir,
# restart_delay 0, min_uptime 0); supervisord (PyPI, in a venv under the target dir, startsecs=0,
# autorestart); session-manager itself (the real server, one session with one agent, backoff
# 0 ms) driven over HTTP. Each program run lives RUN_MS (default 100) ms, then exits 1.
# BUILD=0 uses the binaries as built.
# Prints median / p90 / max per supervisor. Needs node/npm and python3; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
restarts="${1:-30}"
profile="${2:-release}"
run_ms="${RUN_MS:-100}"
target="${CARGO_TARGET_DIR:-target}"
flags=()
dir=debug
if [ "$profile" = release ]; then flags+=(--release); dir=release; fi
[ "${BUILD:-1}" = 1 ] && cargo build "${flags[@]}" --bin session-manager --example fake_agent >&2
fake="$(realpath "$target/$dir/examples/fake_agent")"
server="$(realpath "$target/$dir/session-manager")"
work="$(realpath -m "$target/restart-peers")"
source benches/peers.sh
install_peers "$work"
scratch="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -x "$work/pm2/node_modules/.bin/pm2" ]; then
        PM2_HOME="$scratch/pm2home" "$work/pm2/node_modules/.bin/pm2" kill >/dev/null 2>&1 || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

starts() { local n; n="$(grep -c '^start' "$1" 2>/dev/null)" || true; echo "${n:-0}"; }
wait_starts() { # FILE COUNT
    local deadline=$((SECONDS + 120))
    while [ "$(starts "$1")" -lt "$2" ]; do
        if [ $SECONDS -gt $deadline ]; then echo "timed out waiting for $2 starts in $1" >&2; return 1; fi
        sleep 0.1
    done
}
args=(--exit-after-ms "$run_ms" --code 1)

# 1. A plain shell loop.
stamp="$scratch/sh.stamp"
sh -c "while :; do '$fake' --stamp '$stamp' ${args[*]} >/dev/null; done" &
pids+=($!)
wait_starts "$stamp" $((restarts + 1))
kill "${pids[-1]}"

# 2. PM2.
pm2="$work/pm2/node_modules/.bin/pm2"
stamp="$scratch/pm2.stamp"
# min_uptime 0 and no restart limit: every quick exit is restarted at once, not counted as
# an unstable start (PM2 stops a program after 15 of those by default).
cat > "$scratch/pm2.json" <<JSON
{"apps": [{"name": "fake", "script": "$fake", "interpreter": "none",
           "args": ["--stamp", "$stamp", "--exit-after-ms", "$run_ms", "--code", "1"],
           "autorestart": true, "restart_delay": 0, "min_uptime": 0,
           "max_restarts": 1000000, "pmx": false}]}
JSON
PM2_HOME="$scratch/pm2home" "$pm2" start "$scratch/pm2.json" >/dev/null
wait_starts "$stamp" $((restarts + 1))
PM2_HOME="$scratch/pm2home" "$pm2" kill >/dev/null
pm2_version="$(node -p "require('$work/pm2/node_modules/pm2/package.json').version")"

# 3. supervisord.
stamp="$scratch/supervisord.stamp"
cat > "$scratch/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
logfile=$scratch/supervisord.log
pidfile=$scratch/supervisord.pid
[program:fake]
command=$fake --stamp $stamp ${args[*]}
autorestart=true
startsecs=0
startretries=1000000
stdout_logfile=NONE
stderr_logfile=NONE
CONF
"$work/venv/bin/supervisord" -c "$scratch/supervisord.conf" >/dev/null 2>&1 &
pids+=($!)
wait_starts "$stamp" $((restarts + 1))
kill "${pids[-1]}"
supervisord_version="$("$work/venv/bin/supervisord" --version)"

# 4. session-manager.
stamp="$scratch/sm.stamp"
mkdir -p "$scratch/home" "$scratch/data" "$scratch/cwd"
HOME="$scratch/home" SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS=true \
    "$server" --port 0 --data-dir "$scratch/data" > "$scratch/sm.out" 2>/dev/null &
pids+=($!)
until grep -q 'listening on' "$scratch/sm.out"; do sleep 0.05; done
url="$(sed -n 's/.*listening on //p' "$scratch/sm.out" | head -1)"
python3 - "$url" "$fake" "$stamp" "$run_ms" "$scratch/cwd" <<'PY'
import json, sys, urllib.request
url, fake, stamp, run_ms, cwd = sys.argv[1:]
agent = {"agent_type": "BACKEND", "retry_attempts": 100000,
         "command": [fake, "--stamp", stamp, "--exit-after-ms", run_ms, "--code", "1"],
         "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "reset_after_seconds": 1}}
body = json.dumps({"name": "restart-peers", "working_directory": cwd, "git_enabled": False,
                   "agents": [agent]}).encode()
request = urllib.request.Request(url + "/api/claude/sessions", body,
                                 {"Content-Type": "application/json"})
urllib.request.urlopen(request).read()
PY
wait_starts "$stamp" $((restarts + 1))
kill "${pids[-1]}"

python3 - "$scratch" "$restarts" "$pm2_version" "$supervisord_version" "$profile" <<'PY'
import statistics, sys
scratch, restarts, pm2_v, sup_v, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def gaps(name):
    out, last_exit = [], None
    for line in open(f"{scratch}/{name}.stamp"):
        what, _pid, ns = line.split()
        if what == "exit":
            last_exit = int(ns)
        elif last_exit is not None:
            out.append((int(ns) - last_exit) / 1e6)
            last_exit = None
    return out[:restarts]
print(f"restart latency, exit stamp -> next start stamp, ms ({restarts} restarts each)")
print(f"| supervisor | median | p90 | max |")
print(f"|---|---|---|---|")
for name, label in [("sh", "sh while loop"), ("pm2", f"PM2 {pm2_v}"),
                    ("supervisord", f"supervisord {sup_v}"),
                    ("sm", f"session-manager ({profile})")]:
    g = sorted(gaps(name))
    p90 = g[min(len(g) - 1, int(0.9 * len(g)))]
    print(f"| {label} | {statistics.median(g):.2f} | {p90:.2f} | {g[-1]:.2f} |")
PY
