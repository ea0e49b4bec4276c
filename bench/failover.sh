#!/usr/bin/env bash
# Controller failover and metadata spread on a three-node quorum on this
# machine (three `rill serve` processes sharing its cores), side by side with
# one node where the number has a single-node meaning. A program that prints
# numbers, not a test.
#
#   bench/failover.sh [RILL_BINARY] [KILLS] [PARTITIONS]   (defaults target/release/rill, 50, 1000)
#
# 1. Failover: KILLS times, kill -9 the active controller, then time until a
#    CreateTopics is accepted by the new one (the client asks every live node
#    for the controller and creates through it, every 20 ms), restart the
#    killed node and wait until all three offer each other again. Prints
#    p50, p99 and max.
# 2. Spread: one CreateTopics of PARTITIONS partitions through the active
#    controller, then the time until every node's Metadata lists the topic
#    with all its partitions; the same on one node for comparison.
set -u
rill=${1:-target/release/rill}
kills=${2:-50}
partitions=${3:-1000}
rill=$(realpath "$rill")
work=$(mktemp -d "${TMPDIR:-/tmp}/rill-failover.XXXXXX")
pids=()
finish() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap finish EXIT

base=$((22000 + RANDOM % 4000))
kafka() { echo $((base + $1)); }
quorum="1@127.0.0.1:$((base + 11)),2@127.0.0.1:$((base + 12)),3@127.0.0.1:$((base + 13))"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

start() { # start NODE [SERVE FLAGS...]: one of the quorum, or alone with flags
    local node=$1
    shift
    local flags=("$@")
    [ $# -eq 0 ] && flags=(--controller-quorum "$quorum" --data-dir "$work/d$node")
    RILL_LOG=warn RILL_BROKER_SESSION_TIMEOUT_MS=3000 RILL_BROKER_HEARTBEAT_INTERVAL_MS=500 \
        setsid "$rill" serve --node-id "$node" --listen "127.0.0.1:$(kafka "$node")" \
        --admin-listen "127.0.0.1:$((base + 20 + node))" "${flags[@]}" >>"$work/log$node" 2>&1 &
    pids[$node]=$!
}

controller() { # the controller a live node names, or nothing
    for node in 1 2 3; do
        [ -n "${pids[$node]:-}" ] || continue
        "$rill" cluster info -b "127.0.0.1:$(kafka "$node")" 2>/dev/null |
            awk '/^CONTROLLER/ { print $2; exit }' && return
    done
}

brokers_offered() { # how many brokers node $1 offers
    "$rill" cluster info -b "127.0.0.1:$(kafka "$1")" 2>/dev/null |
        awk 'seen && NF == 0 { exit } seen { n++ } /^ID / { seen = 1 } END { print n + 0 }'
}

wait_all_offered() {
    for _ in $(seq 600); do
        local ok=1
        for node in 1 2 3; do [ "$(brokers_offered "$node")" = 3 ] || ok=0; done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    echo "the cluster did not come back together" >&2
    exit 1
}

percentile() { # percentile P of the numbers in file $2
    sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int((NR - 1) * p / 100) + 1; print v[i] }'
}

for node in 1 2 3; do start "$node"; done
wait_all_offered

: >"$work/failovers"
for kill in $(seq "$kills"); do
    leader=$(controller)
    kill -9 "${pids[$leader]}"
    wait "${pids[$leader]}" 2>/dev/null
    pids[$leader]=""
    killed=$(now_ms)
    while :; do
        next=$(controller)
        if [ -n "$next" ] && [ "$next" != "$leader" ] &&
            "$rill" topic create "failover-$kill" -b "127.0.0.1:$(kafka "$next")" >/dev/null 2>&1; then
            break
        fi
        sleep 0.02
    done
    echo $(($(now_ms) - killed)) >>"$work/failovers"
    start "$leader"
    wait_all_offered
done
echo "controller failover, kill -9 to the next CreateTopics accepted ($kills kills, 3 nodes):"
echo "  p50 $(percentile 50 "$work/failovers") ms  p99 $(percentile 99 "$work/failovers") ms  max $(sort -n "$work/failovers" | tail -1) ms"

spread() { # spread NODES...: create through the controller, time until all list it
    local leader started
    leader=$(controller)
    started=$(now_ms)
    "$rill" topic create "spread-$partitions" -p "$partitions" -b "127.0.0.1:$(kafka "$leader")" >/dev/null ||
        exit 1
    for node in "$@"; do
        until "$rill" topic list -b "127.0.0.1:$(kafka "$node")" 2>/dev/null |
            awk -v t="spread-$partitions" -v p="$partitions" '$1 == t && $2 == p { found = 1 } END { exit !found }'; do
            sleep 0.01
        done
    done
    echo $(($(now_ms) - started))
}
three=$(spread 1 2 3)
for node in 1 2 3; do kill -9 "${pids[$node]}" 2>/dev/null; pids[$node]=""; done
wait 2>/dev/null
start 1 --data-dir "$work/alone"
for _ in $(seq 300); do [ "$(brokers_offered 1)" = 1 ] && break; sleep 0.1; done
one=$(spread 1)
echo "CreateTopics of $partitions partitions to listed by every node's Metadata:"
echo "  3 nodes $three ms  1 node $one ms  ratio $(awk -v a="$three" -v b="$one" 'BEGIN { printf "%.2f", a / b }')"
