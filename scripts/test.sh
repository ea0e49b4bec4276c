#!/usr/bin/env bash
# The one command that runs every test Rill has (README, Quickstart).
# On a fresh Debian machine it first installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> test dependencies (kcat, Python clients in .venv, KafkaJS)"
scripts/install-test-deps.sh

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# rill-client reaches a broker only through its dev-dependency rill-testkit:
# an application that uses the client must not build the broker. (Not
# `! cargo tree | grep`: `set -e` ignores a negated pipeline's failure.)
client_deps=$(cargo tree -p rill-client -e normal)
if grep -q rill-broker <<<"$client_deps"; then
    echo "rill-client depends on rill-broker; tests reach it through rill-testkit" >&2
    exit 1
fi
.venv/bin/ruff format --check --quiet tests/interop
.venv/bin/ruff check --quiet tests/interop

echo "==> unit, property and integration tests"
cargo nextest run --workspace --no-fail-fast

echo "==> the rill binary (release build, for the real-client tests)"
cargo build --release -p rill-cli

echo "==> interop tests: real Kafka clients against rill serve"
# pytest exits 5 when it collected no test; under `set -e` that fails this
# script like any other failure, so an empty suite never passes as green.
# The outer timeout is a backstop for CI; each test also has its own (pytest.ini).
RILL_BIN="$PWD/target/release/rill" \
    timeout 1500 .venv/bin/python -m pytest tests/interop

echo "==> fuzzing: every fuzz target for a bounded time"
scripts/fuzz.sh
