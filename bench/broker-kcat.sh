#!/usr/bin/env bash
# Broker figures: librdkafka (through kcat) producing and
# consuming 200-byte messages against a real `rill serve`, and the broker's
# peak RSS. A program that prints numbers, not a test.
#
#   bench/broker-kcat.sh [MESSAGES]        (default 2,000,000)
#
# Needs kcat (scripts/install-test-deps.sh installs it) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-2000000}
size=200
cargo build --release -p rill-cli -q
work=$(mktemp -d)
trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
target/release/rill serve --data-dir "$work/data" --listen 127.0.0.1:$port \
    --admin-listen 127.0.0.1:$((port + 1)) >/dev/null 2>"$work/broker.log" &
broker=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

# The input file: one 199-character value plus the newline kcat strips.
python3 - "$work/input" "$messages" "$size" <<'PY'
import sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = (b"x" * (size - 1)) + b"\n"
with open(path, "wb") as f:
    chunk = line * 10000
    for _ in range(count // 10000):
        f.write(chunk)
    f.write(line * (count % 10000))
PY

now() { date +%s.%N; }
# rate MESSAGES BYTES START END
rate() { python3 -c "import sys; n,b,s,e=map(float,sys.argv[1:]); t=e-s; print(f'{n/t:,.0f} msg/s  {b/t/1e6:,.1f} MB/s  ({t:.2f} s)')" "$@"; }

kcat -b 127.0.0.1:$port -L -t bench >/dev/null 2>&1 || true
start=$(now)
kcat -b 127.0.0.1:$port -P -t bench -X acks=1 -X linger.ms=5 -X batch.size=1000000 \
    -X queue.buffering.max.messages=1000000 -l "$work/input"
end=$(now)
echo "produce, acks=1, librdkafka (kcat): $(rate "$messages" $((messages * size)) "$start" "$end")"

start=$(now)
kcat -b 127.0.0.1:$port -C -t bench -o beginning -e -q -X fetch.max.bytes=52428800 \
    -X fetch.message.max.bytes=10485760 -f '%o\n' | tail -1 > "$work/last"
end=$(now)
echo "consume, one consumer, librdkafka (kcat): $(rate "$messages" $((messages * size)) "$start" "$end") last offset $(cat "$work/last")"

rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$broker/status)
echo "broker peak RSS: $((rss_kb / 1024)) MiB"
