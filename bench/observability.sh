#!/bin/sh
# bench/observability.sh - what observability costs on the invocation path.
#
# Starts two sofaasd (temp state dirs, loopback, 2 generic workers each):
# one with --access-log off, one with it on; deploys examples/hello and
# tests/functions/chatty in both, and drives them with wrk -t1 -c32. The
# configurations are measured in ROUNDS interleaved rounds (A B C ... A B C
# ...) and the median of each is printed with its ratio to the baseline of
# the same run, hello with the access log off, so that load from elsewhere
# on the machine hits all of them alike.
#   hello, access log off     baseline
#   hello, access log on      one info line per invocation
#   chatty ?n=1               2 function log lines per invocation (pipe
#                             read, line split, SQLite batch insert)
#   chatty ?n=10              11 lines per invocation
#   GET /metrics              a scrape, for its cost
# Prints numbers only; never fails on them.
#
# usage: bench/observability.sh [BUILD_DIR] [SECONDS] [ROUNDS]
set -eu
BUILD=${1:-build}
SECS=${2:-3}
ROUNDS=${3:-3}
BIN=$BUILD/bin/sofaasd
command -v wrk >/dev/null || { echo "wrk not installed"; exit 1; }
TMP=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # $1 = name, rest = flags; prints the port
    name=$1; shift
    p=$(port)
    "$BIN" --listen 127.0.0.1:$p --state-dir "$TMP/$name" --workers 2 \
        --log-level info "$@" >"$TMP/$name.log" 2>&1 &
    PIDS="$PIDS $!"
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -sf -X PUT --data-binary @"$BUILD/examples/hello.so" \
        "http://127.0.0.1:$p/v1/functions/hello" >/dev/null
    curl -sf -X PUT --data-binary @"$BUILD/tests/functions/chatty.so" \
        "http://127.0.0.1:$p/v1/functions/chatty" >/dev/null
    echo "$p"
}

QUIET=$(start quiet --access-log off)
LOUD=$(start loud --access-log on)
set -- "hello, access log off (baseline)|http://127.0.0.1:$QUIET/fn/hello" \
       "hello, access log on|http://127.0.0.1:$LOUD/fn/hello" \
       "chatty n=1 (2 log lines/call)|http://127.0.0.1:$LOUD/fn/chatty?n=1" \
       "chatty n=10 (11 log lines/call)|http://127.0.0.1:$LOUD/fn/chatty?n=10" \
       "GET /metrics|http://127.0.0.1:$LOUD/metrics"
for row in "$@"; do curl -sf "${row##*|}" >/dev/null; done # cold starts
: >"$TMP/results"
r=0
while [ $r -lt "$ROUNDS" ]; do
    i=0
    for row in "$@"; do
        v=$(wrk -t1 -c32 -d"${SECS}s" "${row##*|}" | awk '/Requests\/sec/ {print $2}')
        echo "$i $v" >>"$TMP/results"
        i=$((i + 1))
    done
    r=$((r + 1))
done
median() { awk -v k="$1" '$1 == k {print $2}' "$TMP/results" | sort -n |
    awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
BASE=$(median 0)
printf '%-36s %12s %7s   (median of %s x %ss, wrk -t1 -c32)\n' \
    "configuration" "requests/s" "ratio" "$ROUNDS" "$SECS"
i=0
for row in "$@"; do
    v=$(median $i)
    printf '%-36s %12s %7s\n' "${row%%|*}" "$v" \
        "$(awk -v a="$v" -v b="$BASE" 'BEGIN { printf "%.2f", a / b }')"
    i=$((i + 1))
done
echo "function log lines stored: $(sqlite3 "$TMP/loud/sofaas.db" \
    'SELECT COUNT(*) FROM function_logs' 2>/dev/null || echo '?')" \
    "(in sofaas.db; access lines: $(grep -c 'msg="access"' "$TMP/loud.log"))"
