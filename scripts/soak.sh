#!/usr/bin/env bash
# The long soak of issue 10: 50 sessions x 5 process agents, every third agent crash-looping,
# for SECONDS (default 300) against the real server; prints the server's RSS and descriptor
# slopes and fails if descriptors grow, a crash loop escapes its backoff, or the WebSocket
# misses an event. `cargo test` runs the same test for 30 s.
#   scripts/soak.sh [SECONDS] [PROFILE]     PROFILE: release (default) or dev
# Needs the examples built with the same profile (cargo test does it). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
profile="${2:-release}"
flags=()
if [ "$profile" = release ]; then flags+=(--release); fi
cargo build "${flags[@]}" --examples
SOAK_SECONDS="$seconds" cargo test "${flags[@]}" --test reliability soak_ -- --nocapture
