#!/usr/bin/env bash
# Runs every coverage-guided fuzz target for a bounded time (part of the test
# command; FUZZ_SECONDS per target, default 60). A crash, an abort, a hang
# (-timeout) or an allocation past -rss_limit_mb fails the run, and libFuzzer
# leaves the input under fuzz/artifacts/<target>/.
#
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build them (the machine has no nightly).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}

if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
# Each target with its seed folder: what comes from the network (a frame, a
# pipelined run with restarts) and what comes from the disk (a partition's
# files after a crash, the metadata log).
for entry in decode_any:seeds broker_request:seeds/broker log_recovery:seeds/log \
    metadata_replay:seeds/metadata; do
    target=${entry%%:*}
    seeds=${entry#*:}
    corpus=$(mktemp -d)
    echo "fuzzing $target for ${seconds}s"
    log=$(mktemp)
    if cargo fuzz run "$target" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        grep -E "^Done [0-9]+ runs" "$log" || true
        rm -rf "$corpus" "$log"
    else
        tail -60 "$log"
        echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/"
        exit 1
    fi
done
