#!/usr/bin/env bash
# Rill's own client against librdkafka, through the `rdkafka` crate, on the
# same broker in the same run: producer and consumer msgs/s, 200-byte
# messages, one partition, acks=1, no compression, alternating clients over
# several rounds (bench/client-vs-rdkafka/src/main.rs says how each client
# is driven and with which settings). A program that prints numbers, not a
# test.
#
#   bench/client-vs-librdkafka.sh [MESSAGES [ROUNDS]]   (default 5,000,000 and 3)
#
# One command: installs librdkafka-dev and pkg-config from Debian if they
# are missing (as root, or through sudo), builds `rill` and the bench
# program (its own workspace, outside CI), starts `rill serve` on free
# ports with a temporary data directory, runs, and stops it. Exits non-zero
# when any step fails; the broker's log is printed then.
# The client and the broker share the machine's cores: run it on a quiet
# machine (the header prints the load average) or read the figures as noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-5000000}
rounds=${2:-3}

if ! pkg-config --exists rdkafka 2>/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y librdkafka-dev pkg-config >/dev/null
fi
cargo build --release -q -p rill-cli
(cd bench/client-vs-rdkafka && cargo build --release -q)
bench=target/client-vs-rdkafka/release/rill-client-vs-rdkafka

. bench/rill-broker.sh
start_rill

echo "rill $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ modified)'), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg)"
"$bench" --brokers 127.0.0.1:$port --messages "$messages" --rounds "$rounds" --size 200
