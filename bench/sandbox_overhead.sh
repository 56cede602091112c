#!/usr/bin/env bash
# sandbox_overhead.sh - warm throughput of examples/hello with the worker
# sandbox on and off, measured in the same run (docs/sandbox.md).
#
#   bench/sandbox_overhead.sh [BUILD_DIR]     (default: build)
#   env: ROUNDS=3 DURATION=10s CONNS=32 WORKERS=2
#
# Each round starts a fresh sofaasd with the sandbox on, then one with
# --sandbox=off (benchmark-only flag), deploys hello, warms it up for 2s and
# runs `wrk -t1 -c$CONNS -d$DURATION`. Rounds alternate so drift on a
# shared machine hits both sides alike. Prints every round, the medians and
# the ratio on/off. Standalone: needs only wrk and curl. Never fails on a
# figure; it is not a test.
set -euo pipefail

BUILD=${1:-build}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-2}
SOFAASD="$BUILD/bin/sofaasd"
HELLO="$BUILD/examples/hello.so"

for t in wrk curl; do
    command -v "$t" >/dev/null || { echo "$t not found (make deps)" >&2; exit 1; }
done
[ -x "$SOFAASD" ] && [ -f "$HELLO" ] || { echo "build first: $SOFAASD, $HELLO" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/sofaas-bench.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run_once on|off -> prints requests/s
run_once() {
    local mode=$1 port state rps
    port=$(free_port)
    state="$WORK/state-$mode-$RANDOM"
    "$SOFAASD" --listen "127.0.0.1:$port" --state-dir "$state" \
        --workers "$WORKERS" --log-level warn --sandbox "$mode" \
        2>>"$WORK/daemon-$mode.log" &
    PID=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -fs -X PUT --data-binary @"$HELLO" \
        "http://127.0.0.1:$port/v1/functions/hello" >/dev/null
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/fn/hello" >/dev/null
    rps=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/fn/hello" |
        awk '/^Requests\/sec:/ {print $2}')
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    echo "$rps"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "sofaas sandbox overhead: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, --workers $WORKERS"
on=() off=()
for r in $(seq "$ROUNDS"); do
    a=$(run_once on)
    b=$(run_once off)
    on+=("$a")
    off+=("$b")
    printf 'round %d: sandbox on %10.1f req/s   off %10.1f req/s\n' "$r" "$a" "$b"
done
mon=$(printf '%s\n' "${on[@]}" | median)
moff=$(printf '%s\n' "${off[@]}" | median)
printf 'median:  sandbox on %10.1f req/s   off %10.1f req/s\n' "$mon" "$moff"
awk -v a="$mon" -v b="$moff" 'BEGIN {printf "ratio on/off: %.3f (overhead %.1f%%)\n", a/b, (1-a/b)*100}'
# What the filters add to one system call, measured inside a sandboxed
# child (sofaas-worker --self-test); a warm invocation makes three in the
# worker (read header, read payload, writev response).
echo "per-syscall filter cost (sofaasd --check-sandbox, 3 runs):"
for _ in 1 2 3; do "$SOFAASD" --check-sandbox | grep 'cost' || true; done
