#!/usr/bin/env bash
# Group commit: produce msgs/s with an fsync before every acknowledgement
# (log_flush_messages=1) as a ratio to the rate without flushing, measured
# in the same run, and the disk's fdatasync rate.
#
#   bench/flush.sh [RILL_BINARY] [SECONDS]     (defaults: target/release/rill, 10)
#   BATCH=524288 bench/flush.sh ...            the producers' batch size (default
#                                              16384, the Java client's batch.size)
#
# - each rate is a fresh broker with its data in target/flush-data (the disk
#   the repo is on): 16 producers (one connection each), 16 partitions,
#   acks=1, 200-byte messages, batches of BATCH bytes, for SECONDS; small
#   batches make more appends, so more syncs to share;
# - the fdatasync rate is 2,000 writes of 200 bytes to one file in the same
#   directory with O_DSYNC (dd oflag=dsync: a write and its fdatasync), the
#   most syncs a second the disk gives one writer.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-target/release/rill}
SECS=${2:-10}
DATA=$PWD/target/flush-data
PORT=19492
ADMIN=19493
rate() { # serve flags...; prints msgs/s
  rm -rf "$DATA"
  mkdir -p "$DATA"
  "$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN "$@" >"$DATA.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    curl -sf http://127.0.0.1:$ADMIN/ready >/dev/null && break
    sleep 0.05
  done
  "$BIN" bench produce -b 127.0.0.1:$PORT -t flush --partitions 16 --producers 16 --acks 1 \
    --size 200 --batch-size "${BATCH:-16384}" -d "${SECS}s" --json | tail -1 |
    sed -n 's/.*"msgs_per_sec": *\([0-9.]*\).*/\1/p'
  kill $pid
  wait $pid 2>/dev/null
}
UNFLUSHED=$(rate)
FLUSHED=$(rate --set log_flush_messages=1)
mkdir -p "$DATA"
DD=$(dd if=/dev/zero of="$DATA/dsync" bs=200 count=2000 oflag=dsync 2>&1 | tail -1)
SYNCS=$(echo "$DD" | awk '{for (i = 1; i < NF; i++) if ($(i + 1) ~ /^s,?$/) s = $i} END {printf "%.0f", 2000 / s}')
rm -rf "$DATA" "$DATA.log"
echo "unflushed: ${UNFLUSHED} msg/s"
echo "log_flush_messages=1: ${FLUSHED} msg/s"
awk -v f="$FLUSHED" -v u="$UNFLUSHED" 'BEGIN { if (u > 0) printf "ratio: %.3f\n", f / u }'
echo "disk fdatasync rate: ${SYNCS}/s (dd: ${DD})"
