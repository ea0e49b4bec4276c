#!/usr/bin/env bash
# What the background scrub costs a broker: CPU and disk reads while it
# re-checks closed segments after a restart (its first pass starts then), on
# a log of one-record batches (a producer with batch size 1, the worst case
# for a per-batch reader) and a log of ordinary 512 KiB batches. A program
# that prints numbers, not a test.
#
#   bench/scrub.sh [--seconds S]
#
# Writes about 1.5 GiB under $TMPDIR (default /tmp). The scrub reads at
# most 16 MiB/s (BackgroundConfig::scrub_bytes_per_second), which is the
# limit its disk reads are printed against.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        *) echo "usage: bench/scrub.sh [--seconds S]" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p rill-cli
. bench/rill-broker.sh
rill() { target/release/rill "$@" -b 127.0.0.1:$port; }
ticks() { awk '{print $14 + $15}' /proc/$broker/stat; }
disk_read() { awk '/^read_bytes/ {print $2}' /proc/$broker/io; }

echo "rill $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ modified)'), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg)"
# Each log on a broker of its own, so that the figure is that log's.
for topic in tiny large; do
    rm -rf "$work/data"
    start_rill
    # Segments small enough that the data fills closed ones (the scrub
    # leaves the active segment to recovery).
    if [ "$topic" = tiny ]; then
        rill topic create tiny -c segment.bytes=67108864 >/dev/null
        rill bench produce -t tiny -c 2000000 -s 200 --acks 0 --batch-size 1 --linger-ms 0 --json >/dev/null
    else
        rill topic create large -c segment.bytes=268435456 >/dev/null
        rill bench produce -t large -c 5000000 -s 200 --acks 1 --json >/dev/null
    fi
    sleep 2
    kill "$broker"; wait "$broker" 2>/dev/null || true
    segments=$(ls "$work/data/$topic-0" | grep -c '\.log$')
    # The restart starts a scrub pass over the closed segments.
    start_rill
    sleep 1
    t0=$(ticks); r0=$(disk_read)
    sleep "$seconds"
    t1=$(ticks); r1=$(disk_read)
    kill "$broker"; wait "$broker" 2>/dev/null || true
    broker=""
    python3 - "$topic" "$segments" "$seconds" "$t0" "$t1" "$r0" "$r1" <<'PY'
import os, sys
topic, segments, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t0, t1, r0, r1 = map(int, sys.argv[4:])
hz = os.sysconf("SC_CLK_TCK")
cpu = (t1 - t0) / hz
mib = (r1 - r0) / 2**20
print(f"scrub of '{topic}' ({segments} segments): {cpu:.2f} s of broker CPU in {seconds:.0f} s "
      f"({cpu / seconds:.3f} of a core), {mib:.0f} MiB read from disk "
      f"({mib / seconds / 16:.2f} of the 16 MiB/s limit)")
PY
done
