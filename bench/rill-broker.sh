# Shared by the bench scripts: starts `target/release/rill serve` on free
# ports with a data directory under a temporary $work, and stops it (and
# removes $work) on exit, printing the broker's log when the script failed.
#
#   . bench/rill-broker.sh; start_rill [EXTRA SERVE FLAGS...]
#
# Sets $work, $port, $admin_port and $broker (the pid).

work=$(mktemp -d "${TMPDIR:-/tmp}/rill-bench.XXXXXX")
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

start_rill() {
    local attempt
    for attempt in 1 2 3 4 5; do
        read -r port admin_port < <(free_ports)
        target/release/rill serve --data-dir "$work/data" --listen 127.0.0.1:$port \
            --admin-listen 127.0.0.1:$admin_port "$@" >/dev/null 2>"$work/broker.log" &
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
}
