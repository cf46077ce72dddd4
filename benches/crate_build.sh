#!/usr/bin/env bash
# The embeddable crate's cold build against ractor alone, in the same run: a release build of
# crates/supervision (`cargo build -p supervision --release`) and of a throwaway library that
# depends on nothing but ractor, with the crate's own ractor line (same version and features),
# each from a fresh, empty target dir. What an embedder pays for the supervisor beyond the
# actor runtime it already builds: the target is a ratio of at most 1.3.
#
#   benches/crate_build.sh
#
# Environment: ROUNDS (1): rounds, each building both, alternated so that both see the same
# machine; the medians and their ratio are printed. FEATURES (none): features of the crate to
# build as well (e.g. FEATURES=process). Sources are fetched first, so downloads are not
# timed; the baseline reuses this workspace's Cargo.lock and release profile, so both build
# the same versions the same way.
# Nothing is asserted: the figures are for the closing note. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-1}"
features="${FEATURES:-}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

baseline="$scratch/baseline"
mkdir -p "$baseline/src"
ractor_line="$(grep -E '^ractor *=' crates/supervision/Cargo.toml)"
# The workspace's release profile applies to the crate: the baseline builds with it too.
release_profile="$(awk '/^\[profile\.release\]/ { on = 1; print; next } /^\[/ { on = 0 } on' Cargo.toml)"
cat >"$baseline/Cargo.toml" <<TOML
[package]
name = "ractor-baseline"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$ractor_line

[workspace]

$release_profile
TOML
echo 'pub use ractor;' >"$baseline/src/lib.rs"
cp Cargo.lock "$baseline/Cargo.lock"

crate_flags=(-p supervision --release)
[ -n "$features" ] && crate_flags+=(--features "$features")
cargo fetch >&2
cargo fetch --manifest-path "$baseline/Cargo.toml" >&2

# Seconds (with decimals) a command takes, its output kept out of the way.
timed() {
    local start=$EPOCHREALTIME
    if ! "$@" >"$scratch/log" 2>&1; then
        cat "$scratch/log" >&2
        echo "failed: $*" >&2
        exit 1
    fi
    awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

crate_times=()
ractor_times=()
for round in $(seq 1 "$rounds"); do
    rm -rf "$scratch/target-crate" "$scratch/target-ractor"
    ractor_s="$(CARGO_TARGET_DIR="$scratch/target-ractor" timed cargo build --offline --release --manifest-path "$baseline/Cargo.toml")"
    crate_s="$(CARGO_TARGET_DIR="$scratch/target-crate" timed cargo build --offline "${crate_flags[@]}")"
    echo "round $round: ractor alone ${ractor_s}s, supervision ${crate_s}s"
    crate_times+=("$crate_s")
    ractor_times+=("$ractor_s")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
crate_m="$(median "${crate_times[@]}")"
ractor_m="$(median "${ractor_times[@]}")"
echo "cold release build, median of $rounds: ractor alone ${ractor_m}s, supervision${features:+ (features: $features)} ${crate_m}s, ratio $(awk -v c="$crate_m" -v r="$ractor_m" 'BEGIN { printf "%.2f", c / r }') (target <= 1.3)"
