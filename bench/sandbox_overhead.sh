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

# CPU ticks (user+system) of the daemon and its live workers. On a busy
# shared machine wall-clock throughput swings with other load; CPU time per
# request is the steadier measure of what the sandbox costs.
cpu_ticks() {
    local total=0 p
    for p in "$1" $(ps -o pid= --ppid "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

# run_once on|off -> prints "requests/s cpu_us_per_request"
run_once() {
    local mode=$1 port state rps out c0 c1 reqs
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
    c0=$(cpu_ticks "$PID")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/fn/hello")
    c1=$(cpu_ticks "$PID")
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    awk -v r="$rps" -v t=$((c1 - c0)) -v n="$reqs" -v hz="$HZ" \
        'BEGIN {printf "%s %.1f\n", r, (n > 0 ? t * 1e6 / hz / n : 0)}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "sofaas sandbox overhead: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, --workers $WORKERS"
on=() off=() con=() coff=() rr=() rc=()
for r in $(seq "$ROUNDS"); do
    res=$(run_once on)
    read -r a ca <<<"$res"
    res=$(run_once off)
    read -r b cb <<<"$res"
    on+=("$a") con+=("$ca")
    off+=("$b") coff+=("$cb")
    # Paired ratios: adjacent runs share most of the machine's noise.
    rr+=("$(awk -v a="$a" -v b="$b" 'BEGIN {print (b > 0 ? a / b : 0)}')")
    rc+=("$(awk -v a="$ca" -v b="$cb" 'BEGIN {print (b > 0 ? a / b : 0)}')")
    printf 'round %d: sandbox on %9.1f req/s %7.1f cpu-us/req   off %9.1f req/s %7.1f cpu-us/req\n' \
        "$r" "$a" "$ca" "$b" "$cb"
done
mon=$(printf '%s\n' "${on[@]}" | median)
moff=$(printf '%s\n' "${off[@]}" | median)
mcon=$(printf '%s\n' "${con[@]}" | median)
mcoff=$(printf '%s\n' "${coff[@]}" | median)
printf 'median:  sandbox on %9.1f req/s %7.1f cpu-us/req   off %9.1f req/s %7.1f cpu-us/req\n' \
    "$mon" "$mcon" "$moff" "$mcoff"
awk -v a="$mon" -v b="$moff" 'BEGIN {printf "throughput ratio on/off: %.3f (overhead %.1f%%)\n", a/b, (1-a/b)*100}'
awk -v a="$mcon" -v b="$mcoff" 'BEGIN {printf "cpu per request ratio on/off: %.3f (overhead %.1f%%)\n", a/b, (a/b-1)*100}'
printf 'median of paired round ratios: throughput %.3f, cpu per request %.3f\n' \
    "$(printf '%s\n' "${rr[@]}" | median)" "$(printf '%s\n' "${rc[@]}" | median)"
# What the filters add to one system call, measured inside a sandboxed
# child (sofaas-worker --self-test); a warm invocation makes three in the
# worker (read header, read payload, writev response).
echo "per-syscall filter cost (sofaasd --check-sandbox, 3 runs):"
for _ in 1 2 3; do "$SOFAASD" --check-sandbox | grep 'cost' || true; done
