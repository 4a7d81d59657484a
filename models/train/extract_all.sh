#!/bin/sh
# Step 3: image features by our own C CNN for the paired training images (visual7w,
# flowers) and for the validation images (coco_mini: evaluation only, never trained on).
# usage: extract_all.sh BUILD_DIR   (writes work/feat_{visual7w,flowers,coco_mini}.bin)
# FLIP=1 also writes work/feat_{visual7w,flowers}_flip.bin: the same photos flipped
# left-right (lossless `jpegtran -flip horizontal -trim` copies under work/flip/), for
# train_concepts.py --flip.
# GRID=1 / CROP=1 also write work/grid_<set>.f32 (every photo's 10x10x1280 Conv_1 map, 4 GB
# for both sets) / work/crop_<set>.bin (the CNN run again on each photo's most confident
# person or animal), for compare_head_inputs.py; visual7w and flowers only.
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
extract_extra() {   # extract_extra NAME SOURCE_DIR: the grid and/or crop file of one set
    # Every step checked by hand: set -e does not hold inside a function called from a list.
    name=$1 src=$2
    list="$here/work/list_$name.txt"
    find "$src" -maxdepth 1 -name '*.jpg' | sort > "$list" || return 1
    set --
    [ "${GRID:-0}" = 1 ] && set -- "$@" --grid "$here/work/grid_$name.f32.tmp"
    [ "${CROP:-0}" = 1 ] && set -- "$@" --crop "$here/work/crop_$name.bin.tmp"
    "$build/models/extract_features" "$@" "$list" "$here/work/feat_$name.extra.tmp" || return 1
    rm -f "$here/work/feat_$name.extra.tmp"
    if [ "${GRID:-0}" = 1 ]; then mv "$here/work/grid_$name.f32.tmp" "$here/work/grid_$name.f32" || return 1; fi
    if [ "${CROP:-0}" = 1 ]; then mv "$here/work/crop_$name.bin.tmp" "$here/work/crop_$name.bin" || return 1; fi
    return 0
}
for set in visual7w flowers coco_mini; do
    extract "$set" "$data/images/$set"
done
if [ "${GRID:-0}" = 1 ] || [ "${CROP:-0}" = 1 ]; then
    # Both sets at once, one core each; a failure of either fails the step.
    extract_extra visual7w "$data/images/visual7w" & first=$!
    if ! extract_extra flowers "$data/images/flowers"; then
        kill "$first" 2>/dev/null
        exit 1
    fi
    wait "$first" || exit 1
fi
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
