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
# shared machine hits a round's three figures alike. It prints every
# round, the median over rounds of each round's ratio to "off" (the
# figure to quote: one disturbed round cannot move it much), the ratio of
# the means, and the meter's group-commit figures (rows per commit, mean
# commit time) from the shutdown log. A benchmark, not a test: it never
# fails on a number.
#
# usage: bench/meter_overhead.sh [BUILD_DIR]
#   env: ROUNDS (8), DURATION (3s), CONNS (32), FUNCTION (hello),
#        METER_ARGS (extra daemon flags for sync and async, e.g.
#        --meter-commit-interval-us 0)
set -eu

BUILD=${1:-build}
ROUNDS=${ROUNDS:-8}
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

# measure MODE ROUND: one wrk run; appends to results
measure() {
    mode=$1 round=$2
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
        "http://127.0.0.1:$(cat "$TMP/$mode.port")/fn/$FUNCTION")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    echo "$mode $round $rps $p50 $p99 ${non2xx:-0}" >>"$TMP/results"
}

echo "sofaas meter overhead: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds, function $FUNCTION, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $MODES; do
    start "$mode"
done
for r in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
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
printf '%-6s %-5s %12s %10s %10s %8s\n' mode round req/s p50 p99 non2xx
cat "$TMP/results" | while read -r mode round rps p50 p99 non2xx; do
    printf '%-6s %-5s %12s %10s %10s %8s\n' "$mode" "$round" "$rps" "$p50" "$p99" "$non2xx"
done

echo
for mode in sync async; do
    batch=$(sed -n 's/.*rows_per_commit=\([0-9.]*\) commit_us_avg=\([0-9]*\) .*/rows\/commit \1, commit_us_avg \2/p' "$TMP/$mode.log")
    echo "$mode group commits: ${batch:-none logged}"
done
/usr/bin/python3 - "$TMP/results" <<'EOF'
import statistics
import sys

rps = {}
for line in open(sys.argv[1]):
    mode, rnd, r = line.split()[:3]
    rps.setdefault(mode, {})[rnd] = float(r)
off = rps["off"]
print("mean req/s: " + "  ".join(
    "%s %.0f" % (m, statistics.mean(rps[m].values())) for m in rps))
for m in ("sync", "async"):
    per_round = [rps[m][k] / off[k] for k in off if k in rps[m]]
    print("%-5s / off: median of round ratios %.3f (min %.3f, max %.3f), "
          "ratio of means %.3f  (target: >= 0.90)" % (
              m, statistics.median(per_round), min(per_round),
              max(per_round),
              statistics.mean(rps[m].values()) / statistics.mean(off.values())))
EOF
