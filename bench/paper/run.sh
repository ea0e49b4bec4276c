#!/usr/bin/env bash
# The paper's experiment (Kreps, Narkhede, Rao, NetDB 2011, §5) on this
# machine: Rill, RabbitMQ and ActiveMQ side by side, and the machine's limits
# measured in the same run. One command on a fresh Debian 12 machine:
#
#   bench/paper/run.sh [--messages N] [--peer-seconds S] [--no-docs]
#
# - installs rabbitmq-server and activemq from Debian when missing (apt-get),
#   builds `rill` and the peers' load generators (bench/paper/loadgen, its own
#   cargo workspace);
# - starts each broker as a process of this script (no systemd), on free
#   local ports, with its data in a temporary directory, and stops it at the
#   end;
# - producer test: N 200-byte messages (default 10 million), batch 1 and
#   batch 50, the producer not waiting for acknowledgements; consumer test:
#   one consumer reads what batch 50 wrote, prefetching ~1,000 messages
#   (200 KB) per pull; every run stops after --peer-seconds (default 60) if
#   the count is not reached, and the report says so;
# - bytes stored per message, the load generators against fake brokers that
#   discard (their own ceiling), disk write / loopback TCP / page-cache read;
# - writes the table and chart (bench/paper/report.py) into
#   docs/BENCHMARKS.md between the "paper:begin/end" markers, and
#   bench/paper/chart.svg; --no-docs prints the table only.
#
# A program that prints numbers, not a test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

messages=10000000
peer_seconds=60
write_docs=1
while [ $# -gt 0 ]; do
    case "$1" in
    --messages) messages=$2; shift 2 ;;
    --peer-seconds) peer_seconds=$2; shift 2 ;;
    --no-docs) write_docs=0; shift ;;
    *) echo "usage: $0 [--messages N] [--peer-seconds S] [--no-docs]" >&2; exit 2 ;;
    esac
done
size=200
# Persistent messages stored to measure bytes per message on the peers.
store_messages=200000

fail() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

# --- install ---------------------------------------------------------------
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v java >/dev/null || [ ! -e /usr/lib/rabbitmq/bin/rabbitmq-server ] \
    || [ ! -e /usr/share/activemq/bin/activemq.jar ]; then
    say "installing rabbitmq-server and activemq from Debian"
    # No init system: policy-rc.d keeps the packages from starting services.
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y \
        rabbitmq-server activemq default-jre-headless >&2 \
        || fail "apt-get install rabbitmq-server activemq failed"
fi
command -v python3 >/dev/null || fail "python3 is needed for the report"

say "building rill and the load generators"
cargo build --release -q -p rill-cli || fail "cargo build -p rill-cli failed"
(cd "$here/loadgen" && cargo build --release -q) || fail "building bench/paper/loadgen failed"
rill=$root/target/release/rill
load=$here/loadgen/target/release/rill-paper-loadgen

# --- processes and cleanup ---------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/rill-paper.XXXXXX")
results=$work/results.jsonl
pids=()
failures=()
epmd_port=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        # Each broker runs in its own session (setsid): stop the whole group.
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    # Erlang starts epmd as a daemon of its own; it listens on our port only.
    if [ -n "$epmd_port" ]; then ERL_EPMD_PORT=$epmd_port epmd -kill >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT SECONDS WHAT LOG
    for _ in $(seq $(($2 * 5))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    tail -30 "$4" >&2
    fail "$3 did not listen on port $1 within $2 s (log above: $4)"
}
record() { # SYSTEM TEST JSON
    [ -n "$3" ] || fail "$1 $2 printed nothing"
    printf '{"system":"%s","test":"%s","result":%s}\n' "$1" "$2" "$3" >>"$results"
    echo "$1 $2: $3" >&2
}
# A peer's run that fails is reported as failed, and the run goes on.
try_record() { # SYSTEM TEST LOG COMMAND...
    local system=$1 test=$2 log=$3 out
    shift 3
    if out=$("$@" 2>"$work/error"); then
        record "$system" "$test" "$out"
    else
        [ -s "$work/error" ] || echo "no answer within $peer_timeout s" >"$work/error"
        echo "$system $test FAILED: $(cat "$work/error")" >&2
        tail -5 "$log" >&2
        error=$(python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()))' <"$work/error")
        printf '{"system":"%s","test":"%s","result":{"error":%s}}\n' "$system" "$test" "$error" >>"$results"
        failures+=("$system $test")
    fi
}
# The message count of the last recorded run (0 if it failed).
last_messages() {
    tail -1 "$results" | python3 -c 'import json, sys; print(json.load(sys.stdin)["result"].get("messages", 0))'
}
bytes_used() { du -sB1 "$1" | cut -f1; } # allocated bytes, as the disk sees them
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

say "work directory $work, load average $(loadavg)"
printf '{"system":"machine","test":"info","result":{"cores":%s,"date":"%s","load":"%s","commit":"%s"}}\n' \
    "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(loadavg)" "$(git rev-parse --short HEAD)" >>"$results"

# --- the machine's limits ----------------------------------------------------
say "limits"
mkdir -p "$work/limits"
record machine disk-write "$("$load" disk-write --dir "$work/limits" --mib 2048 --sync none)"
record machine disk-write-fdatasync "$("$load" disk-write --dir "$work/limits" --mib 1024 --sync end)"
record machine tcp-loopback "$("$load" tcp-loopback --mib 4096)"
record machine cache-read "$("$load" cache-read --dir "$work/limits" --mib 1024)"

# --- the load generators against fake brokers --------------------------------
say "load generators against fake brokers (their own ceiling)"
sink_messages=200000
for proto in amqp stomp; do
    record "$proto-sink" produce-b1 "$("$load" $proto-produce --sink --messages $sink_messages --burst 1)"
    record "$proto-sink" produce-b50 "$("$load" $proto-produce --sink --messages $sink_messages --burst 50)"
    record "$proto-sink" consume "$("$load" $proto-consume --sink --messages $sink_messages --prefetch 1000)"
done

# --- Rill ----------------------------------------------------------------------
say "rill"
port=$(free_port)
admin=$(free_port)
setsid "$rill" serve --data-dir "$work/rill" --listen 127.0.0.1:"$port" \
    --admin-listen 127.0.0.1:"$admin" >"$work/rill.log" 2>&1 &
pids+=($!)
wait_port "$port" 30 "rill serve" "$work/rill.log"
bench() { "$rill" bench "$@" -b 127.0.0.1:"$port" --json; }
# Batch 1: every message its own batch and request. Batch 50: the client's
# size estimate is 221 bytes per 200-byte message, so 11,050 bytes close a
# batch at 50 messages. acks=0: the producer does not wait for acks.
record rill produce-b1 "$(bench produce -t b1 -c "$messages" -d "${peer_seconds}s" -s $size \
    --acks 0 --batch-size 1 --linger-ms 0)"
record rill produce-b50 "$(bench produce -t b50 -c "$messages" -d "${peer_seconds}s" -s $size \
    --acks 0 --batch-size 11050 --linger-ms 5)"
# Sleep a moment so the broker has appended what acks=0 left in flight.
sleep 1
produced=$(last_messages)
record rill consume "$(bench consume -t b50 -c "$produced" -d "${peer_seconds}s" --partition-max-bytes 200000)"
for topic in b1 b50; do
    logs=$(find "$work/rill" -path "*$topic-0*" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    record rill "storage-$topic" "{\"bytes\":$logs}"
done
rss=$(grep VmHWM "/proc/${pids[-1]}/status" | awk '{print $2 * 1024}')
record rill rss "{\"bytes\":$rss}"

# --- RabbitMQ --------------------------------------------------------------------
say "rabbitmq"
rabbit=$work/rabbitmq
mkdir -p "$rabbit"
amqp_port=$(free_port)
dist_port=$(free_port)
epmd_port=$(free_port)
cat >"$rabbit/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$amqp_port
loopback_users = none
EOF
echo '[].' >"$rabbit/enabled_plugins"
(
    export HOME=$rabbit RABBITMQ_MNESIA_BASE=$rabbit/mnesia RABBITMQ_LOG_BASE=$rabbit/log \
        RABBITMQ_NODENAME=rillpaper@localhost RABBITMQ_DIST_PORT=$dist_port \
        ERL_EPMD_PORT=$epmd_port RABBITMQ_CONFIG_FILE=$rabbit/rabbitmq.conf \
        RABBITMQ_ENABLED_PLUGINS_FILE=$rabbit/enabled_plugins RABBITMQ_PID_FILE=$rabbit/pid
    exec setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$rabbit/out.log" 2>&1
) &
pids+=($!)
wait_port "$amqp_port" 120 "rabbitmq-server" "$rabbit/out.log"
url=amqp://guest:guest@127.0.0.1:$amqp_port/%2f
# A broker that stops answering must not hang the run.
peer_timeout=$((2 * peer_seconds + 120))
amqp() { timeout --kill-after=10 "$peer_timeout" "$load" "$@" --target "$url" --seconds-max "$peer_seconds"; }
rlog=$rabbit/out.log
try_record rabbitmq produce-b1 "$rlog" amqp amqp-produce --queue b1 --persistent --messages "$messages" --burst 1
try_record rabbitmq produce-b50 "$rlog" amqp amqp-produce --queue b50 --persistent --messages "$messages" --burst 50
try_record rabbitmq consume "$rlog" amqp amqp-consume --queue b50 --persistent --messages "$messages" --prefetch 1000
before=$(bytes_used "$rabbit/mnesia")
try_record rabbitmq storage-run "$rlog" amqp amqp-produce --queue stored --persistent \
    --messages $store_messages --burst 50
stored=$(last_messages)
sleep 2 # the queue index is written in the background
record rabbitmq storage "{\"bytes\":$(($(bytes_used "$rabbit/mnesia") - before)),\"messages\":$stored}"

# --- ActiveMQ --------------------------------------------------------------------
say "activemq"
amq=$work/activemq
stomp_port=$(free_port)
amq_pid=""
# ActiveMQ reset the producer's connection when a second queue was filled
# after a first one held ~700,000 persistent messages (its log says nothing
# without a log4j setup), so each test gets a fresh broker and data
# directory: batch 1; batch 50 and the consumer reading it; the storage run.
start_activemq() {
    if [ -n "$amq_pid" ]; then
        kill -TERM -- "-$amq_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 -- "-$amq_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$amq_pid" 2>/dev/null || true
    fi
    rm -rf "$amq"
    mkdir -p "$amq/conf" "$amq/data" "$amq/tmp"
    cat >"$amq/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="rillpaper"
          dataDirectory="$amq/data" persistent="true">
    <persistenceAdapter>
      <!-- Asynchronous flushing, as in the paper: no fsync per message. -->
      <kahaDB directory="$amq/data/kahadb" enableJournalDiskSyncs="false"/>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp+nio://127.0.0.1:$stomp_port"/>
    </transportConnectors>
  </broker>
</beans>
EOF
    # The JVM directly, as root and in the foreground: /usr/bin/activemq
    # would switch to the activemq user and write /run/activemq.pid.
    setsid java -Xms1G -Xmx1G -Djava.awt.headless=true -Djava.io.tmpdir="$amq/tmp" \
        -Dactivemq.home=/usr/share/activemq -Dactivemq.base="$amq" -Dactivemq.conf="$amq/conf" \
        -Dactivemq.data="$amq/data" -Dactivemq.classpath="$amq/conf" \
        -jar /usr/share/activemq/bin/activemq.jar start "xbean:file:$amq/conf/activemq.xml" \
        >"$work/activemq.log" 2>&1 &
    amq_pid=$!
    pids+=("$amq_pid")
    wait_port "$stomp_port" 120 "activemq" "$work/activemq.log"
}
stomp() {
    timeout --kill-after=10 "$peer_timeout" "$load" "$@" --target 127.0.0.1:"$stomp_port" \
        --seconds-max "$peer_seconds"
}
alog=$work/activemq.log
start_activemq
try_record activemq produce-b1 "$alog" stomp stomp-produce --queue b1 --persistent --messages "$messages" --burst 1
start_activemq
try_record activemq produce-b50 "$alog" stomp stomp-produce --queue b50 --persistent --messages "$messages" --burst 50
try_record activemq consume "$alog" stomp stomp-consume --queue b50 --messages "$messages" --prefetch 1000
start_activemq
before=$(bytes_used "$amq/data")
try_record activemq storage-run "$alog" stomp stomp-produce --queue stored --persistent \
    --messages $store_messages --burst 50
stored=$(last_messages)
sleep 2
record activemq storage "{\"bytes\":$(($(bytes_used "$amq/data") - before)),\"messages\":$stored}"

# --- report ----------------------------------------------------------------------
say "report"
report_args=(--results "$results" --messages "$messages" --peer-seconds "$peer_seconds"
    --chart "$here/chart.svg")
[ "$write_docs" = 1 ] && report_args+=(--docs "$root/docs/BENCHMARKS.md")
cp "$results" "$here/results.jsonl"
python3 "$here/report.py" "${report_args[@]}"
if [ ${#failures[@]} -gt 0 ]; then
    fail "these runs failed (see above; the report marks them): ${failures[*]}"
fi
