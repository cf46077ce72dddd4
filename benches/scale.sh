#!/usr/bin/env bash
# Scale (issue 23): what sessions cost when nothing happens in them, how fast a server with
# 100,000 of them starts and stops, how fast it lists them, and — each figure beside the same
# run's baseline — whether one stuck session holds up the others.
#
#   idle      idle CPU (over WINDOW s) and RSS with 0, 1,000, 10,000 and 100,000 stored sessions
#             of 12 logical agents, and with 200 process agents (20 sessions × 10 `sleep`s);
#             the 0-session server is the baseline.
#   start     exec → `listening on`, exec → every session `active`, and SIGTERM → exit, at
#             each size (the sessions are stored, then the server is started on them).
#   list      GET /sessions?limit=100 and a filtered list at the largest size, p50/p99, beside
#             GET /health on the same connection.
#   stuck     GET p99 of an idle session while another session is stuck — stopping an agent
#             that ignores SIGTERM, navigating to a directory whose git metadata hangs, a git
#             call that hangs — against the same GET with nothing stuck, same run.
#
# The stored sessions are made once: SEED sessions over HTTP by the server measured, then
# copied in the database (each copy its own id and name) up to the size; their working
# directories are 100 directories of one file system.
#
# Usage: benches/scale.sh [PART ...]   (default: idle start list stuck; python3)
# Environment: SIZES ("0 1000 10000 100000"), WINDOW (30), SEED (200), SERVER (a binary to
#   measure instead of this checkout's release build), BUILD=0 (use the binary as built),
#   KEEP (a directory to keep a copy of each size's data directory in, for profiling).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3)" >&2; exit 2; }
[ "${BUILD:-1}" = 1 ] && cargo build --quiet --release --bin session-manager
server="$(realpath "${SERVER:-${CARGO_TARGET_DIR:-target}/release/session-manager}")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
[ "$#" -eq 0 ] && set -- idle start list stuck

python3 - "$scratch" "$server" "$@" <<'PY'
import atexit, http.client, json, os, shutil, signal, sqlite3, statistics, subprocess, sys
import threading, time, urllib.request, uuid
from concurrent.futures import ThreadPoolExecutor

scratch, server, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
sizes = [int(n) for n in os.environ.get("SIZES", "0 1000 10000 100000").split()]
window = float(os.environ.get("WINDOW", "30"))
seed_count = int(os.environ.get("SEED", "200"))
home = os.path.join(scratch, "home")
dirs = [os.path.join(scratch, "work", f"d{i}") for i in range(100)]
for d in [home] + dirs:
    os.makedirs(d)
env = dict(os.environ, HOME=home,
           SESSION_MANAGER_SESSIONS__MAX_SESSIONS="1000000",
           SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS="true",
           SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND="100000000",
           SESSION_MANAGER_SERVER__RATE_LIMIT_BURST="100000000")
TICK = os.sysconf("SC_CLK_TCK")
running = []
atexit.register(lambda: [p.kill() for p in running if p.poll() is None])

def start(data, extra=None):
    out = open(os.path.join(scratch, "server.out"), "w+")
    began = time.monotonic()
    proc = subprocess.Popen([server, "--port", "0", "--data-dir", data],
                            env=dict(env, **(extra or {})), stdout=out, stderr=subprocess.DEVNULL)
    running.append(proc)
    while True:
        out.seek(0)
        for line in out:
            if "listening on" in line:
                url = line.split("listening on ")[1].strip()
                return proc, url, began, time.monotonic() - began
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        time.sleep(0.002)

def call(url, method="GET", body=None, timeout=300):
    request = urllib.request.Request(url, None if body is None else json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)

def stop(proc):
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    return time.monotonic() - began

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def idle(pid, seconds):
    """Share of one core the process used over `seconds`, and its RSS after."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0) * 100, rss_mb(pid)

def all_active(url, n, began):
    # Polled gently: at 100,000 sessions each poll filters them all.
    pause = 0.05 if n <= 10_000 else 0.25
    while True:
        if n == 0 or call(f"{url}/api/claude/sessions?status=active&limit=1")["total"] >= n:
            return time.monotonic() - began
        time.sleep(pause)

TWELVE = [{"agent_type": t} for t in (
    "ORCHESTRATOR", "FRONTEND", "BACKEND", "DATABASE", "API", "MIDDLEWARE", "DEVOPS",
    "SECURITY", "PERFORMANCE", "QUALITY", "DOCUMENTATION", "MONITORING")]

def seed_data():
    """SEED sessions of 12 logical agents, created over HTTP; the data directory."""
    data = os.path.join(scratch, "seed")
    proc, url, _, _ = start(data)
    def one(i):
        call(f"{url}/api/claude/sessions", "POST",
             {"name": f"s-{i}", "working_directory": dirs[i % len(dirs)], "git_enabled": False,
              "max_agents": 12, "agents": TWELVE})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(seed_count)))
    stop(proc)
    return data

def data_with(n, seed):
    """A copy of the seed grown (or cut) to `n` stored sessions."""
    data = os.path.join(scratch, f"data-{n}")
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(seed, data)
    db = sqlite3.connect(os.path.join(data, "sessions", "session_manager.db"))
    rows = db.execute("SELECT id, name, status, working_directory, created_at, updated_at, "
                      "terminated_at, record FROM sessions").fetchall()
    db.execute("DELETE FROM sessions")
    copies = []
    for i in range(n):
        row = list(rows[i % len(rows)])
        record = json.loads(row[7])
        if i >= len(rows):
            record["id"] = row[0] = str(uuid.uuid4())
            record["configuration"]["name"] = row[1] = f"s-{i}"
            row[4] = record["created_at"] = row[4] + i * 1e-3
        row[7] = json.dumps(record)
        copies.append(row)
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", copies)
    db.commit()
    db.execute("VACUUM")
    db.close()
    if os.environ.get("KEEP"):
        shutil.copytree(data, os.path.join(os.environ["KEEP"], f"data-{n}"), dirs_exist_ok=True)
    return data

def latencies(url, path, n=300):
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse(); r.read()
        assert r.status == 200, (path, r.status)
        times.append((time.perf_counter() - t0) * 1000)
    c.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1]

def show(label, figures):
    print(f"{label:<52} {figures}", flush=True)

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"machine: {os.cpu_count()} cores, {cpu}; load {' '.join(load)}; {server}", flush=True)

machine()
seed = None
if "idle" in parts or "start" in parts or "list" in parts:
    t0 = time.monotonic()
    seed = seed_data()
    show(f"seed: {seed_count} sessions over HTTP", f"{time.monotonic() - t0:.1f} s")

if "idle" in parts or "start" in parts:
    for n in sizes:
        data = data_with(n, seed)
        proc, url, began, listening = start(data)
        active = all_active(url, n, began)
        time.sleep(5)
        cpu, rss = idle(proc.pid, window)
        stopped = stop(proc)
        show(f"{n:>7} sessions × 12 logical agents",
             f"listening {listening:.2f} s, all active {active:.2f} s, idle {cpu:.2f} % of a core, "
             f"RSS {rss:.0f} MB, SIGTERM → exit {stopped:.2f} s")

if "idle" in parts:
    data = os.path.join(scratch, "processes")
    proc, url, began, _ = start(data)
    for i in range(20):
        call(f"{url}/api/claude/sessions", "POST",
             {"name": f"p-{i}", "working_directory": dirs[i], "git_enabled": False,
              "agents": [{"agent_type": "BACKEND", "name": f"a{j}",
                          "command": ["sleep", "100000"]} for j in range(10)]})
    all_active(url, 20, began)
    time.sleep(5)
    cpu, rss = idle(proc.pid, window)
    stopped = stop(proc)
    show("200 process agents (20 sessions × 10 `sleep`)",
         f"idle {cpu:.2f} % of a core, RSS {rss:.0f} MB, SIGTERM → exit {stopped:.2f} s")

if "list" in parts:
    n = max(sizes)
    data = data_with(n, seed)
    proc, url, began, _ = start(data)
    all_active(url, n, began)
    health = latencies(url, "/health")
    plain = latencies(url, "/api/claude/sessions?limit=100")
    filtered = latencies(url, "/api/claude/sessions?status=active&name_pattern=s-1*"
                              "&sort=name&limit=100")
    stop(proc)
    show("GET /health (baseline), p50 / p99", f"{health[0]:.2f} / {health[1]:.2f} ms")
    show(f"GET /sessions?limit=100 at {n}, p50 / p99", f"{plain[0]:.2f} / {plain[1]:.2f} ms")
    show(f"GET /sessions filtered + sorted at {n}, p50 / p99",
         f"{filtered[0]:.2f} / {filtered[1]:.2f} ms")
if "stuck" in parts:
    # Each way stuck for longer than it is measured: a 20 s stop grace, a 60 s path deadline.
    extra = {"SESSION_MANAGER_AGENTS__STOP_GRACE_MS": "20000",
             "SESSION_MANAGER_PATHS__DEADLINE_MS": "60000"}
    hol = os.path.join(scratch, "hol")
    for d in ("idle", "a", "c", "hung", "repo"):
        os.makedirs(os.path.join(hol, d))
    def git(*args, cwd):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
    # A navigate target whose git metadata hangs: git2 blocks opening a FIFO `.git/config`.
    hung = os.path.join(hol, "hung")
    git("init", "-q", cwd=hung)
    os.remove(os.path.join(hung, ".git", "config"))
    os.mkfifo(os.path.join(hung, ".git", "config"))
    # A repository whose status hangs: git2 opens it, then blocks reading a FIFO index.
    repo = os.path.join(hol, "repo")
    git("init", "-q", cwd=repo)
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--allow-empty", "-m", "one",
        cwd=repo)
    index = os.path.join(repo, ".git", "index")
    if os.path.exists(index):
        os.remove(index)
    os.mkfifo(index)
    proc, url, began, _ = start(os.path.join(scratch, "data-stuck"), extra)
    api = f"{url}/api/claude/sessions"
    idle_id = call(api, "POST", {"name": "idle", "working_directory": os.path.join(hol, "idle"),
                                 "git_enabled": False, "max_agents": 12,
                                 "agents": TWELVE})["session"]["id"]
    path = f"/api/claude/sessions/{idle_id}"
    baseline = latencies(url, path, 500)
    show("GET of an idle session, nothing stuck (baseline), p50 / p99",
         f"{baseline[0]:.2f} / {baseline[1]:.2f} ms")
    def background(method, target, body):
        def run():
            try:
                call(target, method, body, timeout=120)
            except Exception:
                pass
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(1.0)
        return thread
    stubborn = call(api, "POST", {
        "name": "stuck-term", "working_directory": os.path.join(hol, "a"), "git_enabled": False,
        "agents": [{"agent_type": "BACKEND", "name": "stubborn",
                    "command": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]}]})
    background("POST", f"{api}/{stubborn['session']['id']}/agents/stubborn/deactivate", None)
    during = latencies(url, path, 500)
    show("… while another stops an agent that ignores SIGTERM", f"{during[0]:.2f} / {during[1]:.2f} ms")
    mover = call(api, "POST", {"name": "mover", "working_directory": os.path.join(hol, "c"),
                               "git_enabled": False})
    background("POST", f"{api}/{mover['session']['id']}/navigate", {"path": hung})
    during = latencies(url, path, 500)
    show("… while another navigates to a hung file system", f"{during[0]:.2f} / {during[1]:.2f} ms")
    background("POST", api, {"name": "in-repo", "working_directory": repo, "git_enabled": True})
    during = latencies(url, path, 500)
    show("… while a git call of another hangs", f"{during[0]:.2f} / {during[1]:.2f} ms")
    # Let the hung readers go (opening for writing ends their open), then stop.
    for fifo in (os.path.join(hung, ".git", "config"), index):
        subprocess.run(["timeout", "2", "sh", "-c", f": > '{fifo}'"])
    stop(proc)
PY
