#!/bin/sh
# bench/meter_overhead.sh - what metering costs in warm throughput.
#
# Runs the same daemon three ways in one run, on the same machine, in
# alternating rounds (so background noise hits all three alike):
#   off    --meter-mode off   (nothing recorded: the baseline)
#   sync   --meter-mode sync  (default: a response waits for its row's commit)
#   async  --meter-mode async (responses go out at once, rows follow)
# and prints requests/s and latency for each, the ratio to "off", and the
# meter's group-commit figures (rows per commit, mean commit time) from its
# shutdown log line. A benchmark, not a test: it never fails on a number.
#
# usage: bench/meter_overhead.sh [BUILD_DIR]
#   env: ROUNDS (3), DURATION (5s), CONNS (32), FUNCTION (hello),
#        METER_ARGS (extra daemon flags, e.g. --meter-commit-interval-us 0)
set -eu

BUILD=${1:-build}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
FUNCTION=${FUNCTION:-hello}
SOFAASD=$BUILD/bin/sofaasd
SO=$BUILD/examples/$FUNCTION.so

command -v wrk >/dev/null || { echo "wrk not found (make deps)" >&2; exit 1; }
[ -x "$SOFAASD" ] || { echo "build first: $SOFAASD missing" >&2; exit 1; }
[ -f "$SO" ] || { echo "missing $SO" >&2; exit 1; }

TMP=$(mktemp -d /tmp/sofaas-meterbench.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run MODE ROUND: one daemon, deploy, warm up, measure; appends to results
run() {
    mode=$1 round=$2
    port=$(free_port)
    state=$TMP/state-$mode-$round
    log=$TMP/$mode-$round.log
    "$SOFAASD" --listen 127.0.0.1:$port --state-dir "$state" --workers 2 \
        --meter-mode "$mode" --log-level info ${METER_ARGS:-} >"$log" 2>&1 &
    PID=$!
    i=0
    until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
        i=$((i + 1)); [ $i -gt 200 ] && { cat "$log"; exit 1; }
        sleep 0.05
    done
    curl -sf -X PUT --data-binary @"$SO" \
        "http://127.0.0.1:$port/v1/functions/$FUNCTION?min_warm=2" >/dev/null
    # warm: instances specialized, SQLite pages cached
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/fn/$FUNCTION" >/dev/null
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
        "http://127.0.0.1:$port/fn/$FUNCTION")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    batch=$(sed -n 's/.*rows_per_commit=\([0-9.]*\) commit_us_avg=\([0-9]*\) .*/\1 \2/p' "$log")
    echo "$mode $round $rps $p50 $p99 ${non2xx:-0} ${batch:-- -}" >>"$TMP/results"
}

echo "sofaas meter overhead: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, function $FUNCTION, $(nproc) cores"
for r in $(seq 1 "$ROUNDS"); do
    for mode in off sync async; do
        run "$mode" "$r"
    done
done

echo
printf '%-6s %-5s %12s %10s %10s %8s %14s %14s\n' mode round req/s p50 p99 non2xx rows/commit commit_us_avg
while read -r mode round rps p50 p99 non2xx rpc cus; do
    printf '%-6s %-5s %12s %10s %10s %8s %14s %14s\n' "$mode" "$round" "$rps" "$p50" "$p99" "$non2xx" "$rpc" "$cus"
done <"$TMP/results"

echo
# Mean and best per mode: other load on the machine only ever lowers a
# round, so the best rounds are the least disturbed comparison.
awk '
{ sum[$1] += $3; n[$1]++; if ($3 > best[$1]) best[$1] = $3 }
END {
    off = sum["off"] / n["off"]
    printf "mean req/s: off %.0f  sync %.0f  async %.0f\n", off, sum["sync"]/n["sync"], sum["async"]/n["async"]
    printf "best req/s: off %.0f  sync %.0f  async %.0f\n", best["off"], best["sync"], best["async"]
    printf "ratio to off (mean): sync %.3f  async %.3f\n", sum["sync"]/n["sync"]/off, sum["async"]/n["async"]/off
    printf "ratio to off (best): sync %.3f  async %.3f  (target: >= 0.90)\n", best["sync"]/best["off"], best["async"]/best["off"]
}' "$TMP/results"
