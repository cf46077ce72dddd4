#!/usr/bin/env bash
# The embeddable crate's dependency budget (issue 20): what a program depending on
# `supervision` (feature `process`) builds beyond what a program depending on ractor alone
# builds, at most 5 crates. Both programs are generated in a temp dir, outside this workspace
# (whose server would otherwise unify tokio's features into both counts), with this
# workspace's Cargo.lock so the versions are the same, and counted with `cargo tree`
# (normal dependencies, unique names). Fails naming the extra crates when over the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${BUDGET:-5}"
root="$(pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ractor_line="$(grep -E '^ractor *=' crates/supervision/Cargo.toml)"
program() { # name, dependency line
    mkdir -p "$tmp/$1/src"
    printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s\n\n[workspace]\n' \
        "$1" "$2" >"$tmp/$1/Cargo.toml"
    echo 'fn main() {}' >"$tmp/$1/src/main.rs"
    cp Cargo.lock "$tmp/$1/"
    (cd "$tmp/$1" && cargo tree -e normal --prefix none --no-dedupe) | awk '{print $1}' \
        | grep -vx "$1" | sort -u
}
alone="$(program ractor-alone "$ractor_line")"
ours="$(program with-supervision "supervision = { path = \"$root/crates/supervision\", features = [\"process\"] }")"
extra="$(comm -13 <(echo "$alone") <(echo "$ours") | grep -vx supervision || true)"
count="$(echo "$extra" | grep -c . || true)"
echo "ractor alone: $(echo "$alone" | grep -c .) crates; with supervision (feature process): $(echo "$ours" | grep -c .)"
echo "beyond ractor's: ${extra//$'\n'/, } ($count; budget $BUDGET)"
[ "$count" -le "$BUDGET" ] || { echo "supervision is over its dependency budget" >&2; exit 1; }
