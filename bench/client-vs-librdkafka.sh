#!/usr/bin/env bash
# Rill's own client against librdkafka on the same broker in the same run:
# 200-byte messages, one partition, acks=1, no compression.
#   - library: rill-client (`rill bench produce`/`consume`) vs librdkafka through kcat
#   - command line: `rill produce`/`rill consume` vs `kcat -P`/`kcat -C`
# A program that prints numbers, not a test.
#
#   bench/client-vs-librdkafka.sh [MESSAGES]        (default 2,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-2000000}
size=200
cargo build --release -q -p rill-cli
work=$(mktemp -d)
trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
target/release/rill serve --data-dir "$work/data" --listen 127.0.0.1:$port \
    --admin-listen 127.0.0.1:$((port + 1)) >/dev/null 2>"$work/broker.log" &
broker=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
b=127.0.0.1:$port
for topic in lib-kcat rill-lib rill-cli; do target/release/rill topic create $topic -b $b >/dev/null; done

python3 - "$work/input" "$messages" "$size" <<'PY'
import sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = (b"x" * size) + b"\n"
with open(path, "wb") as f:
    chunk = line * 10000
    for _ in range(count // 10000):
        f.write(chunk)
    f.write(line * (count % 10000))
PY

now() { date +%s.%N; }
# `rill bench ... --json` as the same line `rate` prints.
bench() {
    target/release/rill bench "$@" -b $b --json | python3 -c "import json, sys; r = json.load(sys.stdin); \
print(f\"{r['msgs_per_sec']:,.0f} msg/s  {r['mb_per_sec']:,.1f} MB/s  ({r['seconds']:.2f} s)\")"
}
rate() { python3 -c "import sys; n,b,s,e=map(float,sys.argv[1:]); t=e-s; print(f'{n/t:,.0f} msg/s  {b/t/1e6:,.1f} MB/s  ({t:.2f} s)')" "$@"; }

echo "== library"
start=$(now)
kcat -b $b -P -t lib-kcat -p 0 -X acks=1 -X linger.ms=5 -X batch.size=1000000 \
    -X queue.buffering.max.messages=1000000 -l "$work/input"
end=$(now)
echo "produce, acks=1, librdkafka (kcat -P): $(rate "$messages" $((messages * size)) "$start" "$end")"
start=$(now)
kcat -b $b -C -t lib-kcat -o beginning -e -q -X fetch.max.bytes=52428800 \
    -X fetch.message.max.bytes=10485760 -f '%o\n' | tail -1 >/dev/null
end=$(now)
echo "consume, one consumer, librdkafka (kcat -C): $(rate "$messages" $((messages * size)) "$start" "$end")"
echo "produce, acks=1, rill-client (rill bench produce): $(bench produce -t rill-lib -c "$messages" -s $size --acks 1 --linger-ms 5)"
echo "consume, one consumer, rill-client (rill bench consume): $(bench consume -t rill-lib -c "$messages")"

echo "== command line (one message per line, output to /dev/null)"
start=$(now)
target/release/rill produce rill-cli -b $b --acks 1 --file "$work/input"
end=$(now)
echo "produce, acks=1, rill produce: $(rate "$messages" $((messages * size)) "$start" "$end")"
start=$(now)
target/release/rill consume rill-cli -b $b -e >/dev/null
end=$(now)
echo "consume, rill consume -e: $(rate "$messages" $((messages * size)) "$start" "$end")"
start=$(now)
kcat -b $b -C -t rill-cli -o beginning -e -q >/dev/null
end=$(now)
echo "consume, kcat -C -e (same topic): $(rate "$messages" $((messages * size)) "$start" "$end")"
