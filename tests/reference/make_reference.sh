#!/usr/bin/env bash
# Dev-only: regenerates tests/reference/data/*.ref from the original TF.js graph.
#   tests/reference/make_reference.sh BUILD_DIR
# Needs node + npm (installs the pure-JS TF.js 4.22.0 packages into
# tests/reference/node_modules, git-ignored), the unpacked model
# (models/backbone/fetch_and_convert.sh) and the photos (tests/data/fetch_photos.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=$(cd "${1:?usage: make_reference.sh BUILD_DIR}" && pwd)
photos=$build/testdata/photos
golden=$build/tests/engine/cnn_golden
[ -x "$golden" ] || { echo "make_reference: build cnn_golden first (cmake --build $build --target cnn_golden)" >&2; exit 1; }
"$root/tests/data/fetch_photos.sh" "$photos"
"$root/models/backbone/fetch_and_convert.sh"
(cd "$here" && [ -d node_modules/@tensorflow/tfjs-converter ] || npm install --no-audit --no-fund --ignore-scripts)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in dog eagle giraffe horses person kite; do
    "$golden" dump-pixels "$photos/$p.jpg" "$work/$p.rgb"
done
node "$here/make_reference.js" "$root/models/backbone/package/models/coco-ssd" "$here/data" "$work"/*.rgb
du -sh "$here/data"
