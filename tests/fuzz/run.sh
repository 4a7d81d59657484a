#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time, starting from the committed seed corpus
# (copied, so new inputs found stay out of the source tree) and the regression inputs.
# A crash, leak, timeout or sanitizer report fails the run; the input that caused it is
# kept under $work/artifacts/<target>/ — copy it to tests/fuzz/regressions/<target>/ with
# the fix, and ctest replays it from then on (fuzz.replay.<target>).
#
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#   BUILD_DIR configured with CC=clang -DCAPSEARCH_FUZZ=ON and built with --target fuzz.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]}
seconds=${2:-25}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(image heif webp tiff raw gif weights query config xmp)

work=${FUZZ_WORK:-$(mktemp -d /tmp/capsearch-fuzz.XXXXXX)}
# leaks inside third-party libraries we cannot fix, each named and explained there
export LSAN_OPTIONS="suppressions=$here/../lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
status=0
for t in "${targets[@]}"; do
    bin="$build/tests/fuzz/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz: $bin missing (configure with CC=clang -DCAPSEARCH_FUZZ=ON, build --target fuzz)" >&2; exit 2; }
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    if [ -d "$here/corpus/$t" ]; then
        cp "$here/corpus/$t"/* "$work/corpus/$t"/
    else
        # the per-format targets' seeds are made now, by Debian's tools and ours
        [ -d "$work/seeds/$t" ] || "$here/make_format_seeds.sh" "$build" "$work/seeds" >/dev/null
        cp "$work/seeds/$t"/* "$work/corpus/$t"/
    fi
    cp "$here/regressions/$t"/* "$work/corpus/$t"/ 2>/dev/null || true
    dict=()
    [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
    # max_len: big enough for small images and weight files, small enough to stay fast;
    # rss/malloc limits: a decoder that allocates what a header claims is a finding.
    if nice -n 10 "$bin" "$work/corpus/$t" "${dict[@]}" -max_total_time="$seconds" \
            -max_len=8192 -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=512 \
            -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
            >"$work/$t.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
        cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
        echo "fuzz $t: ok, ${runs:-?} runs in ${seconds} s, $cov, corpus $(ls "$work/corpus/$t" | wc -l) inputs"
    else
        status=1
        echo "fuzz $t: FAILED — inputs in $work/artifacts/$t/:" >&2
        ls "$work/artifacts/$t" >&2
        grep -E -A25 '^==[0-9]+==ERROR|runtime error|^fuzz: |deadly signal|ERROR: libFuzzer' "$work/$t.log" | head -60 >&2
    fi
done
if [ "$status" = 0 ] && [ -z "${FUZZ_WORK:-}" ]; then rm -rf "$work"; fi
exit $status
