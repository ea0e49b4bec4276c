#!/usr/bin/env bash
# Recovery time after a crash: writes GIB GiB to one partition (1,000-byte
# messages, the default 1 GiB segments), kills the broker with SIGKILL,
# starts it again and prints the time from start to /ready (recovery runs
# before the broker is ready), with the broker's own ready_ms.
#
#   bench/recovery.sh [RILL_BINARY] [GIB]     (defaults: target/release/rill, 10)
#   COLD=1 bench/recovery.sh ...              evict the data's page cache first
#
# - the data goes to target/recovery-data (the disk the repo is on) and is
#   deleted at the end;
# - before the kill the script waits (up to 45 s) for the recovery-point
#   checkpoint to reach the last segment, the steady state of a broker that
#   flushes a segment 30 s after it rolls (one that does not never gets there);
# - COLD=1 writes back and drops only this data's cached pages (sync, then
#   dd iflag=nocache), not the machine's whole page cache: recovery then
#   reads from the disk, as after a power loss.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-target/release/rill}
GIB=${2:-10}
DATA=$PWD/target/recovery-data
PORT=19392
ADMIN=19393
rm -rf "$DATA"
mkdir -p "$DATA"
: >"$DATA.log"
start() {
  "$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN >>"$DATA.log" 2>&1 &
  PID=$!
  T0=$(date +%s.%N)
  until curl -sf http://127.0.0.1:$ADMIN/ready >/dev/null; do sleep 0.05; done
  T1=$(date +%s.%N)
}
start
"$BIN" bench produce -b 127.0.0.1:$PORT -t big -s 1000 -c $((GIB * 1024 * 1024)) --json | tail -1
LAST=$(ls "$DATA"/big-0/*.log | tail -1 | xargs basename | sed -e 's/\.log$//' -e 's/^0*//')
for _ in $(seq 450); do
  CP=$(sed -n 3p "$DATA/big-0/recovery-point-offset-checkpoint" 2>/dev/null)
  [ "${CP:-x}" = "${LAST:-0}" ] && break
  sleep 0.1
done
echo "segments: $(ls "$DATA"/big-0/*.log | wc -l), bytes: $(du -sb "$DATA/big-0" | cut -f1)," \
  "recovery-point checkpoint: ${CP:-none}, last segment base: ${LAST:-0}"
kill -9 $PID
wait $PID 2>/dev/null
if [ "${COLD:-0}" = 1 ]; then
  find "$DATA" -type f -exec sync {} +
  find "$DATA" -type f -exec dd if={} iflag=nocache count=0 status=none \;
  echo "the data's cached pages evicted"
fi
start
echo "restart to ready: $(echo "$T1 - $T0" | bc) s"
grep -E "ready_ms|truncat" "$DATA.log" | tail -3
kill $PID
wait $PID 2>/dev/null
rm -rf "$DATA" "$DATA.log"
