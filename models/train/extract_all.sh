#!/bin/sh
# Step 3: image features by our own C CNN for the paired training images (visual7w,
# flowers) and for the validation images (coco_mini: evaluation only, never trained on).
# usage: extract_all.sh BUILD_DIR   (writes work/feat_{visual7w,flowers,coco_mini}.bin)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: extract_all.sh BUILD_DIR}
data=${CAPSEARCH_SHARED_DATA:-$here/../../../shared/data}
mkdir -p "$here/work"
for set in visual7w flowers coco_mini; do
    out="$here/work/feat_$set.bin"
    [ -s "$out" ] && [ "${FORCE:-0}" = 0 ] && { echo "$out exists (FORCE=1 to redo)"; continue; }
    find "$data/images/$set" -maxdepth 1 -name '*.jpg' | sort > "$here/work/list_$set.txt"
    echo "$set: $(wc -l < "$here/work/list_$set.txt") images"
    "$build/models/extract_features" "$here/work/list_$set.txt" "$out.tmp"
    mv "$out.tmp" "$out"
done
