#!/usr/bin/env bash
# Fuzzes the path validator for a bounded time (default 60 s): `scripts/fuzz.sh [SECONDS]`.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); not part of
# `cargo test`. A crash leaves its input under fuzz/artifacts/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
cargo +nightly fuzz run validate_path -- -max_total_time="$seconds"
