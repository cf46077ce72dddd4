#!/usr/bin/env bash
# Fuzzes for a bounded time each (default 60 s): `scripts/fuzz.sh [SECONDS] [TARGET...]`.
# Targets (fuzz/fuzz_targets/): validate_path (the path validator), import_document (the
# import snapshot), request_body (every route's JSON body); all three by default.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); not part of
# `cargo test`. A crash leaves its input under fuzz/artifacts/<target>/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(validate_path import_document request_body)
fi
for target in "${targets[@]}"; do
    echo "== $target, ${seconds} s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds"
done
