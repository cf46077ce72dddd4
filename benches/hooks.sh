#!/usr/bin/env bash
# What a Claude Code hook costs: Claude Code waits for each of its hooks (PreToolUse and
# PostToolUse around every tool call), so POST /api/claude/hooks's latency is added to its
# work. Measured on a release build, in one run, beside its floor: GET /health over the same
# kept-alive connection (the HTTP path alone) and an fsync of the same file system (the
# price of an acknowledged hook being durable). Then the throughput of 1 and of 8 Claude
# sessions posting at once: their writes share the storage writer's batches, so 8 should
# take more than 1 per second, not wait in line.
#
# Usage: benches/hooks.sh    (python3; N hooks per measure: N=2000)
# Environment: SERVER (a binary to measure instead of this checkout's release build),
#   BUILD=0 (use the binary as built), N (hooks per measure).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-2000}"
command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3)" >&2; exit 2; }
[ "${BUILD:-1}" = 1 ] && cargo build --quiet --release --bin session-manager
server="${SERVER:-${CARGO_TARGET_DIR:-target}/release/session-manager}"

tmp="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/home"
HOME="$tmp/home" \
SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND=100000000 \
SESSION_MANAGER_SERVER__RATE_LIMIT_BURST=100000000 \
    "$server" --port 0 --data-dir "$tmp/data" >"$tmp/out" 2>/dev/null &
pid=$!
url=""
for _ in $(seq 1 300); do
    url="$(sed -n 's/^.* listening on //p' "$tmp/out" | head -1)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start" >&2; exit 1; }

python3 - "$url" "$N" "$tmp/data" <<'PY'
import http.client, json, os, sys, threading, time
url, n, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = url.removeprefix("http://").split(":")

def connection():
    return http.client.HTTPConnection(host, int(port))

def hook(c, claude, i):
    name = ("PreToolUse", "PostToolUse")[i % 2]
    body = json.dumps({"hook_event_name": name, "session_id": claude, "cwd": "/nowhere",
                       "tool_name": "Bash", "tool_use_id": f"t{i // 2}",
                       "tool_input": {"command": "true"}})
    c.request("POST", "/api/claude/hooks", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status

def health(c, claude, i):
    c.request("GET", "/health"); r = c.getresponse(); r.read()
    assert r.status == 200, r.status

def latencies(call, claude):
    c, out = connection(), []
    for i in range(n):
        t = time.perf_counter(); call(c, claude, i); out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2] * 1e3, out[int(len(out) * 0.99)] * 1e3

def fsyncs():
    path = os.path.join(data, "fsync-probe")
    fd, out = os.open(path, os.O_WRONLY | os.O_CREAT), []
    for _ in range(200):
        os.write(fd, b"x" * 512); t = time.perf_counter(); os.fsync(fd)
        out.append(time.perf_counter() - t)
    os.close(fd); os.unlink(path); out.sort()
    return out[100] * 1e3, out[198] * 1e3

def throughput(clients):
    per = n // clients
    def run(k):
        c = connection()
        for i in range(per): hook(c, f"bench-{clients}-{k}", i)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t = time.perf_counter()
    for th in threads: th.start()
    for th in threads: th.join()
    return per * clients / (time.perf_counter() - t)

print("%-34s p50 %7.2f ms   p99 %7.2f ms" % ("GET /health (baseline)", *latencies(health, None)))
print("%-34s p50 %7.2f ms   p99 %7.2f ms" % ("fsync of the data dir (floor)", *fsyncs()))
print("%-34s p50 %7.2f ms   p99 %7.2f ms" % ("POST /api/claude/hooks", *latencies(hook, "bench-latency")))
one, eight = throughput(1), throughput(8)
print("%-34s %8.0f hooks/s" % ("1 Claude session", one))
print("%-34s %8.0f hooks/s (%.1f x)" % ("8 Claude sessions at once", eight, eight / one))
PY
