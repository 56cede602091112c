#!/bin/sh
# bench/meter_overhead.sh - what metering costs in warm throughput.
#
# Starts the same daemon three ways, all three at once (an idle daemon
# costs no CPU), each with the warm hello function:
#   off    --meter-mode off   (nothing recorded: the baseline)
#   sync   --meter-mode sync  (default: a response waits for its row's commit)
#   async  --meter-mode async (responses go out at once, rows follow)
# then runs wrk against them in turn, ROUNDS times: each round measures
# the three back to back within a few seconds, so background load on this
# shared machine hits a round's three figures alike, and every other round
# runs them in reverse order, so that no mode always goes first. It prints
# every round with the CPU time the daemon's loop thread spent per request
# (from /proc: the loop thread is the gateway's bottleneck), the median
# over rounds of each round's ratio to "off" (the figure to quote: one
# disturbed round cannot move it much) with the quartiles of those ratios
# (their spread is this machine's noise), the ratio of the means, the
# meter's group-commit figures (rows per commit, mean commit time) from
# the shutdown log, and the meter's own CPU per row measured in isolation
# (sofaas-bench-meter-floor, bench/meter_floor.c) next to the loop's CPU
# per request with metering off. A benchmark, not a test: it never fails
# on a number.
#
# usage: bench/meter_overhead.sh [BUILD_DIR]
#   env: ROUNDS (12), DURATION (3s), CONNS (32), FUNCTION (hello),
#        METER_ARGS (extra daemon flags for sync and async, e.g.
#        --meter-commit-interval-us 0)
set -eu

BUILD=${1:-build}
ROUNDS=${ROUNDS:-12}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-32}
FUNCTION=${FUNCTION:-hello}
SOFAASD=$BUILD/bin/sofaasd
SO=$BUILD/examples/$FUNCTION.so
MODES="off sync async"

command -v wrk >/dev/null || { echo "wrk not found (make deps)" >&2; exit 1; }
[ -x "$SOFAASD" ] || { echo "build first: $SOFAASD missing" >&2; exit 1; }
[ -f "$SO" ] || { echo "missing $SO" >&2; exit 1; }

TMP=$(mktemp -d /tmp/sofaas-meterbench.XXXXXX)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start MODE: a daemon with the function deployed and warm; port in TMP
start() {
    mode=$1
    port=$(free_port)
    args=
    [ "$mode" != off ] && args=${METER_ARGS:-}
    # shellcheck disable=SC2086 # METER_ARGS is a list of flags
    "$SOFAASD" --listen 127.0.0.1:$port --state-dir "$TMP/state-$mode" \
        --workers 2 --meter-mode "$mode" --log-level info $args \
        >"$TMP/$mode.log" 2>&1 &
    PIDS="$PIDS $!"
    echo "$!" >"$TMP/$mode.pid"
    echo "$port" >"$TMP/$mode.port"
    i=0
    until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
        i=$((i + 1)); [ $i -gt 200 ] && { cat "$TMP/$mode.log"; exit 1; }
        sleep 0.05
    done
    curl -sf -X PUT --data-binary @"$SO" \
        "http://127.0.0.1:$port/v1/functions/$FUNCTION?min_warm=2" >/dev/null
    # warm: instances specialized, SQLite pages cached
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/fn/$FUNCTION" >/dev/null
}

HZ=$(getconf CLK_TCK)
# loop_ticks PID: CPU ticks (user + system) of PID's main thread, the loop
loop_ticks() {
    # the fields after the command name, which is in parentheses
    sed 's/.*) //' "/proc/$1/task/$1/stat" | awk '{print $12 + $13}'
}

# measure MODE ROUND: one wrk run; appends to results
measure() {
    mode=$1 round=$2
    pid=$(cat "$TMP/$mode.pid")
    cpu0=$(loop_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
        "http://127.0.0.1:$(cat "$TMP/$mode.port")/fn/$FUNCTION")
    cpu1=$(loop_ticks "$pid")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    # loop thread CPU per request, µs (over wrk's count of requests)
    cpu=$(echo "$out" | awk -v t=$((cpu1 - cpu0)) -v hz="$HZ" \
        '/requests in/ {printf "%.1f", t / hz * 1e6 / $1}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    echo "$mode $round $rps $p50 $p99 ${non2xx:-0} $cpu" >>"$TMP/results"
}

echo "sofaas meter overhead: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, function $FUNCTION, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $MODES; do
    start "$mode"
done
REVERSED=$(echo "$MODES" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
for r in $(seq 1 "$ROUNDS"); do
    order=$MODES
    [ $((r % 2)) -eq 0 ] && order=$REVERSED
    for mode in $order; do
        measure "$mode" "$r"
    done
done
# stop them (SIGTERM: the meter logs its group-commit figures on the way out)
for mode in $MODES; do
    kill "$(cat "$TMP/$mode.pid")"
done
for p in $PIDS; do wait "$p" 2>/dev/null || true; done
PIDS=

echo
printf '%-6s %-5s %12s %10s %10s %8s %12s\n' mode round req/s p50 p99 non2xx loop-us/req
sort -k2,2n -k1,1 "$TMP/results" | while read -r mode round rps p50 p99 non2xx cpu; do
    printf '%-6s %-5s %12s %10s %10s %8s %12s\n' "$mode" "$round" "$rps" "$p50" "$p99" "$non2xx" "$cpu"
done

echo
for mode in sync async; do
    batch=$(sed -n 's/.*rows_per_commit=\([0-9.]*\) commit_us_avg=\([0-9]*\) .*/rows\/commit \1, commit_us_avg \2/p' "$TMP/$mode.log")
    echo "$mode group commits: ${batch:-none logged}"
done
/usr/bin/python3 - "$TMP/results" "$TMP/off_us" <<'EOF'
import statistics
import sys

rps, cpu = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    rps.setdefault(f[0], {})[f[1]] = float(f[2])
    if len(f) > 6:
        cpu.setdefault(f[0], []).append(float(f[6]))
off = rps["off"]
print("mean req/s: " + "  ".join(
    "%s %.0f" % (m, statistics.mean(rps[m].values())) for m in rps))
print("loop thread CPU per request, median of rounds: " + "  ".join(
    "%s %.1f us" % (m, statistics.median(cpu[m])) for m in cpu))
for m in ("sync", "async"):
    per_round = sorted(rps[m][k] / off[k] for k in off if k in rps[m])
    q = (statistics.quantiles(per_round, n=4, method="inclusive")
         if len(per_round) > 1
         else per_round * 3)
    print("%-5s / off: median of round ratios %.3f (quartiles %.3f-%.3f, "
          "min %.3f, max %.3f), ratio of means %.3f  (target: >= 0.90)" % (
              m, statistics.median(per_round), q[0], q[2], per_round[0],
              per_round[-1],
              statistics.mean(rps[m].values()) / statistics.mean(off.values())))
if "off" in cpu:
    open(sys.argv[2], "w").write("%.1f\n" % statistics.median(cpu["off"]))
EOF

# The meter's own work in isolation, at the rows per commit the sync
# daemon saw (its log), against what the loop spends per request off.
FLOOR=$BUILD/bin/sofaas-bench-meter-floor
rows=$(sed -n 's/.*rows_per_commit=\([0-9]*\).*/\1/p' "$TMP/sync.log")
off_us=$(cat "$TMP/off_us" 2>/dev/null || true)
if [ -x "$FLOOR" ] && [ -n "$rows" ] && [ -n "$off_us" ]; then
    echo
    echo "the meter alone (sofaas-bench-meter-floor $rows: that many rows per loop iteration):"
    "$FLOOR" "$rows" 2>/dev/null | while read -r line; do
        echo "  $line"
        us=$(echo "$line" | sed -n 's/^metering: \([0-9.]*\) us.*/\1/p')
        [ -z "$us" ] || awk -v us="$us" -v off="$off_us" 'BEGIN {
            printf "  = %.0f%% of the %s us the loop thread spends per request with metering off\n", 100 * us / off, off }'
    done
fi
