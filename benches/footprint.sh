#!/usr/bin/env bash
# Memory and start-up of the real server, each beside a baseline measured in the same run:
#
# 1. start-up of an empty server (exec -> `listening on`): the baseline;
# 2. RSS idle, then after 1,000 sessions without agents (memory per session), then after
#    1,000 sessions with 12 logical agents each (memory per logical agent), all created over
#    HTTP by 8 clients;
# 3. 8,000 more sessions with 12 logical agents (10,000 stored in all), the server stopped with
#    SIGTERM (timed), started again on the same data: exec -> `listening on`, exec -> every
#    session `active` again, its RSS then, and its CPU and RSS range over 10 idle seconds;
# 4. the supervisor's own memory per supervised process: 50 `sleep` processes under
#    session-manager (10 sessions x 5 process agents), PM2 and supervisord, each supervisor's
#    RSS with none and with the 50 (the processes' own memory is not counted).
#
#   benches/footprint.sh [release|dev]     (default release)
#
# PM2 (npm) and supervisord (PyPI) are installed under the target dir, as by
# benches/restart_peers.sh. Needs python3 and node/npm. Prints a Markdown table; nothing is
# asserted. RSS is read from /proc/<pid>/status after the server has been idle for 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
target="${CARGO_TARGET_DIR:-target}"
flags=()
dir=debug
if [ "$profile" = release ]; then flags+=(--release); dir=release; fi
[ "${BUILD:-1}" = 1 ] && cargo build "${flags[@]}" --bin session-manager >&2
server="$(realpath "$target/$dir/session-manager")"
work="$(realpath -m "$target/restart-peers")"
source benches/peers.sh
install_peers "$work"
scratch="$(mktemp -d)"
cleanup() {
    PM2_HOME="$scratch/pm2home" "$work/pm2/node_modules/.bin/pm2" kill >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT

python3 - "$server" "$scratch" "$work" "$profile" <<'PY'
import atexit, json, os, signal, subprocess, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

server, scratch, work, profile = sys.argv[1:]
pm2 = f"{work}/pm2/node_modules/.bin/pm2"
supervisord = f"{work}/venv/bin/supervisord"
home, data, cwd = (os.path.join(scratch, d) for d in ("home", "data", "cwd"))
for d in (home, cwd):
    os.makedirs(d, exist_ok=True)
env = dict(os.environ, HOME=home,
           SESSION_MANAGER_SESSIONS__MAX_SESSIONS="20000",
           SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND="100000000",
           SESSION_MANAGER_SERVER__RATE_LIMIT_BURST="100000000",
           SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS="true",
           SESSION_MANAGER_AGENTS__STOP_GRACE_MS="500")

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

started = []
# Whatever happens to this script, no server it started outlives it.
atexit.register(lambda: [p.kill() for p in started if p.poll() is None])

def start(data_dir):
    """Starts the server; returns (process, url, seconds from exec to `listening on`)."""
    out = open(os.path.join(scratch, "server.out"), "w+")
    began = time.monotonic()
    proc = subprocess.Popen([server, "--port", "0", "--data-dir", data_dir], env=env,
                            stdout=out, stderr=subprocess.DEVNULL)
    started.append(proc)
    while True:
        out.seek(0)
        for line in out:
            if "listening on" in line:
                return proc, line.split("listening on ")[1].strip(), time.monotonic() - began
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        time.sleep(0.005)

def call(url, method="GET", body=None):
    request = urllib.request.Request(url, None if body is None else json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)

def create(url, names, agents):
    def one(name):
        call(f"{url}/api/claude/sessions", "POST",
             {"name": name, "working_directory": cwd, "git_enabled": False,
              "max_agents": 12, "agents": agents})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))

def settled_rss(pid):
    time.sleep(2)
    return rss_mb(pid)

def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)

TWELVE = [{"agent_type": t} for t in (
    "ORCHESTRATOR", "FRONTEND", "BACKEND", "DATABASE", "API", "MIDDLEWARE", "DEVOPS",
    "SECURITY", "PERFORMANCE", "QUALITY", "DOCUMENTATION", "MONITORING")]

rows = []
def row(what, figure, baseline=""):
    rows.append((what, figure, baseline))

# 1 and 2.
proc, url, empty_start = start(data)
idle = settled_rss(proc.pid)
began = time.monotonic()
create(url, [f"bare-{i}" for i in range(1000)], [])
bare_create = time.monotonic() - began
bare = settled_rss(proc.pid)
began = time.monotonic()
create(url, [f"twelve-{i}" for i in range(1000)], TWELVE)
twelve_create = time.monotonic() - began
twelve = settled_rss(proc.pid)
row("start-up, empty data dir: exec → `listening on`", f"{empty_start * 1000:.0f} ms")
row("RSS idle, no session", f"{idle:.1f} MB")
row("memory per session (1,000 without agents)", f"**{(bare - idle) * 1024 / 1000:.1f} KB**",
    f"RSS {idle:.1f} → {bare:.1f} MB; created in {bare_create:.1f} s")
row("memory per logical agent (1,000 sessions × 12)",
    f"**{(twelve - bare - (bare - idle)) * 1024 / 12000:.2f} KB**",
    f"RSS {bare:.1f} → {twelve:.1f} MB, less 1,000 sessions' own; created in {twelve_create:.1f} s")

# 3.
began = time.monotonic()
create(url, [f"more-{i}" for i in range(8000)], TWELVE)
more_create = time.monotonic() - began
before_stop = rss_mb(proc.pid)
began = time.monotonic()
stop(proc)
stopped = time.monotonic() - began
proc, url, restart_listening = start(data)
began_ready = time.monotonic() - restart_listening
while True:
    active = call(f"{url}/api/claude/sessions?status=active&limit=1")["total"]
    if active >= 10000:
        break
    time.sleep(0.01)
ready = time.monotonic() - began_ready
restored = settled_rss(proc.pid)
# Idle with 10,000 sessions: the monitor still samples (and stores) every session each second.
def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
cpu_before, idle_rss = cpu_seconds(proc.pid), []
for _ in range(20):
    time.sleep(0.5)
    idle_rss.append(rss_mb(proc.pid))
idle_cpu = (cpu_seconds(proc.pid) - cpu_before) / 10 * 100
stop(proc)
row("start-up with 10,000 stored sessions (9,000 × 12 logical agents): exec → `listening on`",
    f"**{restart_listening * 1000:.0f} ms**", f"empty: {empty_start * 1000:.0f} ms (same run)")
row("the same, exec → all 10,000 `active`", f"**{ready:.2f} s**",
    f"8,000 created in {more_create:.1f} s; SIGTERM with 10,000 sessions: {stopped:.2f} s")
row("RSS after the restore, 10,000 sessions", f"{restored:.1f} MB",
    f"{before_stop:.1f} MB in the process that created them")
row("the same server idle for 10 s: CPU, RSS range", f"{idle_cpu:.0f} % of a core, "
    f"{min(idle_rss):.0f}–{max(idle_rss):.0f} MB",
    "the monitor samples and stores all 10,000 sessions every second")

# 4. The supervisor's own memory for 50 sleeping processes.
def ours():
    proc, url, _ = start(os.path.join(scratch, "data-processes"))
    empty = settled_rss(proc.pid)
    for s in range(10):
        call(f"{url}/api/claude/sessions", "POST",
             {"name": f"p{s}", "working_directory": cwd, "git_enabled": False,
              "agents": [{"agent_type": "BACKEND", "name": f"sleeper-{a}",
                          "command": ["sleep", "600"], "depends_on": []} for a in range(5)]})
    while call(f"{url}/api/claude/sessions?status=active&limit=1")["total"] < 10:
        time.sleep(0.05)
    full = settled_rss(proc.pid)
    stop(proc)
    return empty, full

def pm2_rss():
    pm2_env = dict(os.environ, PM2_HOME=os.path.join(scratch, "pm2home"))
    subprocess.run([pm2, "ping"], env=pm2_env, check=True, capture_output=True)
    god = int(open(os.path.join(scratch, "pm2home", "pm2.pid")).read())
    empty = settled_rss(god)
    apps = [{"name": f"sleeper-{i}", "script": "sleep", "args": ["600"],
             "interpreter": "none", "autorestart": True, "pmx": False} for i in range(50)]
    config = os.path.join(scratch, "pm2.json")
    json.dump({"apps": apps}, open(config, "w"))
    subprocess.run([pm2, "start", config], env=pm2_env, check=True, capture_output=True)
    full = settled_rss(god)
    subprocess.run([pm2, "kill"], env=pm2_env, check=True, capture_output=True)
    version = json.load(open(f"{work}/pm2/node_modules/pm2/package.json"))["version"]
    return empty, full, version

def supervisord_rss(programs):
    conf = os.path.join(scratch, f"supervisord-{programs}.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={scratch}/supervisord.log\n"
                f"pidfile={scratch}/supervisord.pid\n")
        if programs:
            f.write("[program:sleeper]\ncommand=sleep 600\nnumprocs=%d\n"
                    "process_name=%%(program_name)s_%%(process_num)02d\nstartsecs=0\n"
                    "stdout_logfile=NONE\nstderr_logfile=NONE\n" % programs)
    proc = subprocess.Popen([supervisord, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while programs and time.monotonic() < deadline:
        children = subprocess.run(["pgrep", "-c", "-P", str(proc.pid)],
                                  capture_output=True, text=True).stdout.strip()
        if int(children or 0) >= programs:
            break
        time.sleep(0.1)
    rss = settled_rss(proc.pid)
    proc.terminate()
    proc.wait(timeout=60)
    return rss

ours_empty, ours_full = ours()
pm2_empty, pm2_full, pm2_version = pm2_rss()
sup_empty, sup_full = supervisord_rss(0), supervisord_rss(50)
version = subprocess.run([supervisord, "--version"], capture_output=True, text=True).stdout.strip()
for label, empty, full in [(f"session-manager ({profile})", ours_empty, ours_full),
                           (f"PM2 {pm2_version} (its daemon)", pm2_empty, pm2_full),
                           (f"supervisord {version}", sup_empty, sup_full)]:
    row(f"supervisor RSS per supervised process, 50 `sleep`s: {label}",
        f"**{(full - empty) * 1024 / 50:.0f} KB**", f"RSS {empty:.1f} → {full:.1f} MB")

print(f"| what | figure | beside it, same run |")
print(f"|---|---|---|")
for what, figure, baseline in rows:
    print(f"| {what} | {figure} | {baseline} |")
PY
