#!/usr/bin/env bash
# Restoring 10,000 stored sessions, side by side: the same data directory (10,000 sessions,
# 9,000 of them with the twelve logical agents, created once over HTTP by the first server
# given) restored by each server in turn, rounds interleaved (A, B, A, B, ...) so both see the
# same machine. Each round starts from a fresh copy of the data, stops with SIGTERM, and
# measures exec → `listening on` and exec → all 10,000 `active`, and the RSS 2 s after.
# Prints each round, then the medians per server. Nothing is asserted.
#
# Usage: benches/restore.sh [SERVER ...]    (default: this checkout's release build)
#   e.g. benches/restore.sh /tmp/before/session-manager target/release/session-manager
# Environment: ROUNDS (3), SESSIONS (10000), BUILD=0 (do not build this checkout first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SESSIONS="${SESSIONS:-10000}"
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }
if [ "$#" -eq 0 ]; then
    [ "${BUILD:-1}" = 1 ] && cargo build --quiet --release --bin session-manager
    set -- "${CARGO_TARGET_DIR:-target}/release/session-manager"
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

python3 - "$scratch" "$ROUNDS" "$SESSIONS" "$@" <<'PY'
import atexit, json, os, shutil, signal, statistics, subprocess, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

scratch, rounds, sessions, servers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
servers = [os.path.realpath(s) for s in servers]
home, cwd, seed = (os.path.join(scratch, d) for d in ("home", "cwd", "seed"))
for d in (home, cwd):
    os.makedirs(d)
env = dict(os.environ, HOME=home,
           SESSION_MANAGER_SESSIONS__MAX_SESSIONS=str(sessions * 2),
           SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND="100000000",
           SESSION_MANAGER_SERVER__RATE_LIMIT_BURST="100000000")
started = []
atexit.register(lambda: [p.kill() for p in started if p.poll() is None])

def start(server, data):
    out = open(os.path.join(scratch, "server.out"), "w+")
    began = time.monotonic()
    proc = subprocess.Popen([server, "--port", "0", "--data-dir", data], env=env,
                            stdout=out, stderr=subprocess.DEVNULL)
    started.append(proc)
    while True:
        out.seek(0)
        for line in out:
            if "listening on" in line:
                return proc, line.split("listening on ")[1].strip(), began, time.monotonic() - began
        if proc.poll() is not None:
            sys.exit(f"{server} exited with {proc.returncode}")
        time.sleep(0.005)

def call(url, method="GET", body=None):
    request = urllib.request.Request(url, None if body is None else json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)

def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

TWELVE = [{"agent_type": t} for t in (
    "ORCHESTRATOR", "FRONTEND", "BACKEND", "DATABASE", "API", "MIDDLEWARE", "DEVOPS",
    "SECURITY", "PERFORMANCE", "QUALITY", "DOCUMENTATION", "MONITORING")]

# The data, once, by the first server.
proc, url, _, _ = start(servers[0], seed)
def one(i):
    call(f"{url}/api/claude/sessions", "POST",
         {"name": f"s-{i}", "working_directory": cwd, "git_enabled": False, "max_agents": 12,
          "agents": [] if i < sessions // 10 else TWELVE})
began = time.monotonic()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(one, range(sessions)))
print(f"{sessions} sessions created in {time.monotonic() - began:.1f} s by {servers[0]}", flush=True)
stop(proc)

results = {s: [] for s in servers}
for r in range(rounds):
    for server in servers:
        data = os.path.join(scratch, "data")
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(seed, data)
        proc, url, began, listening = start(server, data)
        while call(f"{url}/api/claude/sessions?status=active&limit=1")["total"] < sessions:
            time.sleep(0.01)
        ready = time.monotonic() - began
        time.sleep(2)
        rss = rss_mb(proc.pid)
        stop(proc)
        results[server].append((listening, ready, rss))
        print(f"round {r + 1} {server}: listening {listening * 1000:.0f} ms, all active "
              f"{ready:.2f} s, RSS {rss:.0f} MB", flush=True)

print("\nmedians:")
for server, rows in results.items():
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{server}: listening {med[0] * 1000:.0f} ms, all active {med[1]:.2f} s, RSS {med[2]:.0f} MB")
PY
