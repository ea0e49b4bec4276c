#!/usr/bin/env bash
# Scale of one broker, in one run: produce and consume throughput
# with 1, 100 and 10,000 partitions; consume throughput of the newest data
# with 1 GiB and with 50 GiB retained (the paper: performance does not
# degrade with the amount of data kept). A program that prints numbers, not
# a test.
#
#   bench/scale.sh [--messages N] [--large-gib G] [--tail-messages N]
#
# Defaults: 2,000,000 messages per partition-count run, 50 GiB for the large
# log, the newest 5,000,000 messages (1 GB of payload) read from each log.
# Writes about G + 1 GiB under $TMPDIR (default /tmp): check `df` first.
# Workload: 200-byte messages, acks=1, 16 KiB batches (the Java client's
# default, so that 10,000 partitions all get batches), up to 5 batches per
# partition in flight, one producer and one consumer (partitions assigned).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=2000000
large_gib=50
tail_messages=5000000
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) messages=$2; shift 2 ;;
        --large-gib) large_gib=$2; shift 2 ;;
        --tail-messages) tail_messages=$2; shift 2 ;;
        *) echo "usage: bench/scale.sh [--messages N] [--large-gib G] [--tail-messages N]" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p rill-cli
. bench/rill-broker.sh
start_rill
rill() { target/release/rill "$@" -b 127.0.0.1:$port; }
# One figure from a `rill bench --json` summary.
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
rss() { awk '/VmRSS/ {r = $2} /RssAnon/ {a = $2} /RssFile/ {f = $2} END {printf "broker RSS %.0f MiB (anonymous %.0f, file-backed %.0f)", r / 1024, a / 1024, f / 1024}' /proc/$broker/status; }
rate() { python3 -c "import sys; print(f\"{float(sys.argv[1]):,.0f}\")" "$1"; }

echo "rill $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ modified)'), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg)"
echo "== partitions: $messages messages of 200 B each way, acks=1, 16 KiB batches"
for partitions in 1 100 10000; do
    topic=scale-$partitions
    # In steps of 1,000: a new partition costs this VM's filesystem a few
    # milliseconds (a directory and three files created), and one request
    # must be answered within the client's 10 s timeout.
    started=$(date +%s.%N)
    rill topic create "$topic" --partitions $(( partitions < 1000 ? partitions : 1000 )) >/dev/null
    for (( have = 1000; have < partitions; have += 1000 )); do
        rill topic alter "$topic" --partitions $(( have + 1000 < partitions ? have + 1000 : partitions )) >/dev/null
    done
    created=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
    produced=$(rill bench produce -t "$topic" -c "$messages" --batch-size 16384 --json)
    consumed=$(rill bench consume -t "$topic" -c "$messages" --json)
    printf "%6d partitions (created in %5s s): produce %12s msg/s   consume %12s msg/s\n" "$partitions" "$created" \
        "$(rate "$(field msgs_per_sec <<<"$produced")")" "$(rate "$(field msgs_per_sec <<<"$consumed")")"
    echo "        $(rss)"
    rill topic delete "$topic" >/dev/null
done

echo "== retained: 1 GiB and $large_gib GiB logs (one partition each), the newest $tail_messages messages read from each"
# 210 bytes stored per 200-byte message in 512 KiB batches (BENCHMARKS).
for spec in "small 1" "large $large_gib"; do
    read -r name gib <<<"$spec"
    count=$(( gib * 1024 * 1024 * 1024 / 210 ))
    started=$(date +%s)
    rill bench produce -t "retained-$name" -c "$count" --acks 1 --json >/dev/null
    stored=$(du -sb "$work/data/retained-$name-0" | cut -f1)
    echo "retained-$name: $count messages, $(( stored / 1024 / 1024 )) MiB on disk, written in $(( $(date +%s) - started )) s; $(rss)"
done
small=()
large=()
for round in 1 2 3; do
    for name in small large; do
        consumed=$(rill bench consume -t "retained-$name" --last "$tail_messages" --json)
        figure=$(field msgs_per_sec <<<"$consumed")
        echo "round $round consume the newest $tail_messages of retained-$name: $(rate "$figure") msg/s"
        if [ "$name" = small ]; then small+=("$figure"); else large+=("$figure"); fi
    done
done
python3 - "${small[@]}" "${large[@]}" <<'PY'
import statistics, sys
figures = [float(f) for f in sys.argv[1:]]
small, large = figures[:3], figures[3:]
s, l = statistics.median(small), statistics.median(large)
print(f"median: 1 GiB {s:,.0f} msg/s, large {l:,.0f} msg/s, large/small {l / s:.2f}")
PY
echo "broker peak RSS: $(grep VmHWM /proc/$broker/status | awk '{print $2 / 1024 " MiB"}')"
