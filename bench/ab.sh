#!/usr/bin/env bash
# Two `rill serve` binaries side by side in one sitting: the Rill part of
# bench/paper (produce batch 1 and batch 50 with acks=0, then consume, 200 B
# messages), each broker fresh per round, rounds interleaved A/B so the
# machine's drift falls on both. The client is B's `rill bench` for both.
# A program that prints numbers, not a test.
#
#   bench/ab.sh A_BINARY B_BINARY [MESSAGES] [ROUNDS]   (defaults 5,000,000 and 3)
#
# Batch 1 sends MESSAGES / 5. Prints msg/s per round and each broker's peak RSS.
set -u
a=$1
b=$2
messages=${3:-5000000}
rounds=${4:-3}
client=$b
for round in $(seq "$rounds"); do
    for side in A B; do
        bin=$a
        [ "$side" = B ] && bin=$b
        work=$(mktemp -d)
        port=$((21000 + RANDOM % 5000))
        setsid "$bin" serve --data-dir "$work/d" --listen 127.0.0.1:$port \
            --admin-listen 127.0.0.1:$((port + 1)) >"$work/log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
        bench() { "$client" bench "$@" -b 127.0.0.1:$port -d 60s --json; }
        b1=$(bench produce -t b1 -c $((messages / 5)) -s 200 --acks 0 --batch-size 1 --linger-ms 0)
        b50=$(bench produce -t b50 -c "$messages" -s 200 --acks 0 --batch-size 11050 --linger-ms 5)
        # consume -c waits for every message, also those acks=0 left in flight.
        consume=$(bench consume -t b50 -c "$messages" --partition-max-bytes 200000)
        rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        kill "$pid"
        wait "$pid" 2>/dev/null
        rm -rf "$work"
        python3 - "$side" "$round" "$b1" "$b50" "$consume" "$rss_kib" <<'PY'
import json, sys
side, rnd, b1, b50, consume, rss = sys.argv[1:]
rate = lambda s: round(json.loads(s)["msgs_per_sec"])
print(f"round {rnd} {side}: produce b1 {rate(b1):,}  b50 {rate(b50):,}  consume {rate(consume):,}  rss {int(rss) // 1024} MiB", flush=True)
PY
    done
done
