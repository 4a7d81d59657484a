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
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900 -LE slow

# ---- issue 6: fuzzing and valgrind memcheck (tests/fuzz/README.md, tests/valgrind/) ----
# One clang build for both: the libFuzzer targets, each run for a bounded time from the
# committed seeds; and valgrind on the real binaries, which needs code without AVX-512
# (CAPSEARCH_NATIVE=OFF) and DWARF 4 debug info (valgrind 3.19 cannot read clang's DWARF 5).
printf '\n== Fuzzing (libFuzzer, %s s per target) and valgrind memcheck\n' "${CAPSEARCH_FUZZ_SECONDS:-15}"
CC=clang cmake -S . -B build-fuzz -DCAPSEARCH_FUZZ=ON -DCAPSEARCH_NATIVE=OFF \
      -DCMAKE_C_FLAGS=-gdwarf-4 -DCAPSEARCH_TEST_PHOTOS="$PWD/build/testdata/photos" >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz capsearch capsearch-full capsearchd
tests/fuzz/run.sh build-fuzz "${CAPSEARCH_FUZZ_SECONDS:-15}"
ctest --test-dir build-fuzz --output-on-failure -j"$jobs" -L valgrind --timeout 900
