#!/usr/bin/env bash
# Runs the original service's three README examples (Python, aiohttp) unchanged against a
# fresh session-manager: a throwaway data dir, a free port, stopped at the end.
# Usage: scripts/seed_examples.sh [path/to/session-manager]   (default: target/debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-${CARGO_TARGET_DIR:-target}/debug/session-manager}"
venv="${CARGO_TARGET_DIR:-target}/seed-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import aiohttp' 2>/dev/null || "$venv/bin/python" -m pip install --quiet aiohttp

data="$(mktemp -d)"
log="$data/stdout"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
HOME="$data" "$binary" --port 0 --data-dir "$data/data" >"$log" 2>/dev/null &
pid=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$log" 2>/dev/null && break
    sleep 0.1
done
url="$(sed -n 's/^session-manager listening on //p' "$log" | head -1)"
[ -n "$url" ] || { echo "the server did not start"; exit 1; }
SEED_BASE_URL="$url" "$venv/bin/python" scripts/seed_examples.py
