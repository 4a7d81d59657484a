#!/bin/sh
# Step 3: image features by our own C CNN for the paired training images (visual7w,
# flowers) and for the validation images (coco_mini: evaluation only, never trained on).
# usage: extract_all.sh BUILD_DIR   (writes work/feat_{visual7w,flowers,coco_mini}.bin)
# FLIP=1 also writes work/feat_{visual7w,flowers}_flip.bin: the same photos flipped
# left-right (lossless `jpegtran -flip horizontal -trim` copies under work/flip/), for
# train_concepts.py --flip.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: extract_all.sh BUILD_DIR}
data=${CAPSEARCH_SHARED_DATA:-$here/../../../shared/data}
mkdir -p "$here/work"
extract() {   # extract NAME LIST_SOURCE_DIR
    out="$here/work/feat_$1.bin"
    [ -s "$out" ] && [ "${FORCE:-0}" = 0 ] && { echo "$out exists (FORCE=1 to redo)"; return 0; }
    find "$2" -maxdepth 1 -name '*.jpg' | sort > "$here/work/list_$1.txt"
    echo "$1: $(wc -l < "$here/work/list_$1.txt") images"
    "$build/models/extract_features" "$here/work/list_$1.txt" "$out.tmp"
    mv "$out.tmp" "$out"
}
for set in visual7w flowers coco_mini; do
    extract "$set" "$data/images/$set"
done
if [ "${FLIP:-0}" = 1 ]; then
    for set in visual7w flowers; do
        mkdir -p "$here/work/flip/$set"
        for f in "$data/images/$set"/*.jpg; do
            g="$here/work/flip/$set/$(basename "$f")"
            [ -s "$g" ] || jpegtran -flip horizontal -trim -outfile "$g" "$f"
        done
        extract "${set}_flip" "$here/work/flip/$set"
    done
fi
