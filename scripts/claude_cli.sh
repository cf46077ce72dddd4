#!/usr/bin/env bash
# Installs the real Claude Code CLI from npm under the target dir (never globally, never
# touching ~/.claude) and runs, with a dummy ANTHROPIC_API_KEY and no network, the smoke test
# that starts it as a Claude agent (its welcome screen through `…/screen`) and the one that
# runs it by hand in a project after `session-manager hooks install` (its hooks attributed
# and its state moving, its OTLP exports taken: tests/claude_cli.rs).
# Usage: scripts/claude_cli.sh [npm version]   (default: the version the test was written on)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-2.1.197}"
prefix="${CARGO_TARGET_DIR:-target}/claude-cli"
command -v npm >/dev/null || { echo "npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
if ! "$prefix/node_modules/.bin/claude" --version 2>/dev/null | grep -q "^$version "; then
    npm install --no-audit --no-fund --prefix "$prefix" "@anthropic-ai/claude-code@$version"
fi
cli="$(cd "$prefix/node_modules/.bin" && pwd)/claude"
CLAUDE_CLI="$cli" cargo test --test claude -- --ignored real_claude_code
CLAUDE_CLI="$cli" cargo test --test claude_cli -- --ignored
