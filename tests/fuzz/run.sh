#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, in build-fuzz) and runs
# each for a bounded time, starting from the checked-in seed corpus. Exits
# non-zero on the first crash, sanitizer report, leak or hang (an input
# taking over 10 s), leaving the input in build-fuzz/fuzz-artifacts/TARGET/.
#
#   tests/fuzz/run.sh                      every target, 60 s each
#   SOFAAS_FUZZ_SECONDS=600 tests/fuzz/run.sh http
#   tests/fuzz/run.sh ipc -- -jobs=2       extra arguments go to libFuzzer
#
# Environment: SOFAAS_FUZZ_SECONDS (per target, default 60),
# SOFAAS_FUZZ_BUILD_DIR (default build-fuzz), CC (default clang).
# New inputs the fuzzer finds go to build-fuzz/fuzz-work/TARGET/, never into
# the checked-in corpus; docs/testing.md says how to keep useful ones.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${SOFAAS_FUZZ_SECONDS:-60}
bdir=${SOFAAS_FUZZ_BUILD_DIR:-build-fuzz}
all="http ipc fnconfig config"
targets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    targets+=("$1")
    shift
done
[ $# -gt 0 ] && shift # the "--"
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$all"

CC=${CC:-clang} cmake -S . -B "$bdir" -DSOFAAS_FUZZ=ON -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
cmake --build "$bdir" -j "$(nproc)" --target "${build_targets[@]}"

for t in "${targets[@]}"; do
    work="$bdir/fuzz-work/$t"
    art="$bdir/fuzz-artifacts/$t"
    mkdir -p "$work" "$art"
    extra=()
    [ "$t" = http ] && extra+=(-max_len=20000) # room for the 16 KiB limits
    echo "== fuzz_$t for ${secs}s =="
    if ! "$bdir/bin/fuzz_$t" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -dict="tests/fuzz/$t.dict" \
        -artifact_prefix="$art/" -print_final_stats=1 "${extra[@]}" "$@" \
        "$work" "tests/fuzz/corpus/$t" 2>"$bdir/fuzz-$t.log"; then
        tail -n 60 "$bdir/fuzz-$t.log"
        echo "fuzz_$t FAILED; the input is in $art/ (reproduce with:" \
            "$bdir/bin/fuzz_$t $art/<file>)" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^Done" "$bdir/fuzz-$t.log" || true
done
echo "== fuzzing passed: ${targets[*]} =="
