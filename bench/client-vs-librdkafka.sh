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

work=$(mktemp -d)
broker=""
finish() {
    status=$?
    if [ -n "$broker" ]; then
        kill "$broker" 2>/dev/null || true
        wait "$broker" 2>/dev/null || true
    fi
    if [ $status -ne 0 ] && [ -s "$work/broker.log" ]; then
        echo "--- broker log (last 30 lines)" >&2
        tail -30 "$work/broker.log" >&2
    fi
    rm -rf "$work"
    exit $status
}
trap finish EXIT

# Free ports below the ephemeral range (32768 and up on Linux), so no
# outgoing connection takes one between the check and the bind; a few tries
# in case another program binds it meanwhile.
free_ports() {
    python3 -c '
import random, socket
while True:
    port = random.randrange(20000, 32000, 2)
    try:
        for p in (port, port + 1):
            socket.socket().bind(("127.0.0.1", p))
    except OSError:
        continue
    print(port, port + 1)
    break'
}
for attempt in 1 2 3 4 5; do
    read -r port admin_port < <(free_ports)
    target/release/rill serve --data-dir "$work/data" --listen 127.0.0.1:$port \
        --admin-listen 127.0.0.1:$admin_port >/dev/null 2>"$work/broker.log" &
    broker=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        kill -0 "$broker" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$broker" 2>/dev/null && break
    broker=""
    grep -q "Address already in use" "$work/broker.log" || { echo "rill serve exited at start" >&2; exit 1; }
done
[ -n "$broker" ] || { echo "rill serve found no free port in 5 tries" >&2; exit 1; }
(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || { echo "rill serve is not listening on $port" >&2; exit 1; }

echo "rill $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ modified)'), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg)"
"$bench" --brokers 127.0.0.1:$port --messages "$messages" --rounds "$rounds" --size 200
