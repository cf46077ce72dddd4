#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI, installed into a venv under target/) reads the
# server's own /openapi.json, generates requests for every operation (valid and invalid ones,
# then chains them through the document's links: create a session, then use its id) and
# checks every answer: no 5xx, a status the document lists, the documented content type and
# headers, a body matching the documented schema.
#
# The server is a fresh session-manager with a throwaway data dir, HOME and a bearer token,
# on a free port, stopped at the end. Sessions may only work under "$tmp/work"
# (paths.allowed_roots), so whatever working_directory schemathesis invents, nothing is
# created or changed outside the temp dir; no route deletes files.
#
# Usage: scripts/schemathesis.sh [path/to/session-manager]   (default: target/debug build)
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 25 per operation), SCHEMATHESIS_SEED
# (default 1: the same run every time), SCHEMATHESIS_ARGS (extra arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-${CARGO_TARGET_DIR:-target}/debug/session-manager}"
venv="${CARGO_TARGET_DIR:-target}/schemathesis-venv"
version="4.32.5"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ "$("$venv/bin/python" -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$version" ]; then
    "$venv/bin/python" -m pip install --quiet "schemathesis==$version"
fi

tmp="$(mktemp -d)"
mkdir -p "$tmp/work" "$tmp/home"
token="schemathesis-$RANDOM$RANDOM"
cat >"$tmp/config.toml" <<EOF
[server]
token = "$token"
# schemathesis is one client sending as fast as it can; 429s would only hide answers.
rate_limit_per_second = 0

[paths]
allowed_roots = ["$tmp/work"]
EOF
# Most invented working directories are refused (422 path_refused): give schemathesis some
# inside the allowed root as well, so it gets past creation and on to the session routes.
cat >"$tmp/schemathesis.toml" <<EOF
[dictionaries.directories]
values = ["$tmp/work/a", "$tmp/work/b/c", "$tmp/work/new", "$tmp/work"]

[parameters]
"body.working_directory" = { dictionary = "directories", probability = 0.6 }
"body.new_working_directory" = { dictionary = "directories", probability = 0.6 }
"body.path" = { dictionary = "directories", probability = 0.5 }
EOF
log="$tmp/stdout"
cleanup() {
    if [ -n "${pid:-}" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
HOME="$tmp/home" "$binary" --config "$tmp/config.toml" --port 0 --data-dir "$tmp/data" \
    >"$log" 2>"$tmp/stderr" &
pid=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$log" 2>/dev/null && break
    sleep 0.1
done
url="$(sed -n 's/^session-manager listening on //p' "$log" | head -1)"
[ -n "$url" ] || { echo "the server did not start:"; cat "$tmp/stderr"; exit 1; }

# Bounded: a few minutes at most on 2 cores (the examples per operation, and a hard stop).
# One worker: with two, Python 3.11 failed inside hypothesis ("SystemError: AST constructor
# recursion depth mismatch", ast.parse run from two threads at once).
status=0
report="$(realpath -m "${CARGO_TARGET_DIR:-target}/schemathesis-report")"
venv="$(realpath "$venv")"
# Run from the temp dir: schemathesis keeps a cache (.schemathesis/) in its working directory.
cd "$tmp"
# shellcheck disable=SC2086
timeout 600 "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" run "$url/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --workers 1 \
    --request-timeout 30 \
    --suppress-health-check too_slow,filter_too_much \
    --report junit --report-dir "$report" \
    ${SCHEMATHESIS_ARGS:-} || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
    echo "the server died during the run; its stderr:"
    tail -50 "$tmp/stderr"
    exit 1
fi
if grep -q "panicked" "$tmp/stderr"; then
    echo "the server panicked during the run:"
    grep -A5 "panicked" "$tmp/stderr"
    exit 1
fi
exit "$status"
