#!/usr/bin/env bash
# The README's second command, and what .ci/run calls: the whole test suite.
#  1. setup without the demo (dependencies, weights, photos, the -Werror build)
#  2. ctest on that build
#  3. an ASan + UBSan build and ctest on it (benchmarks excluded: they are not tests)
# Prints ctest's summary line for each build; exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/setup.sh --no-demo

printf '\n== Tests (release build)\n'
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600

printf '\n== Tests (ASan + UBSan build)\n'
cmake -S . -B build-asan -DCAPSEARCH_WERROR=ON -DCAPSEARCH_SANITIZE=ON \
      -DCAPSEARCH_TEST_PHOTOS="$PWD/build/testdata/photos" >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900 -LE slow
