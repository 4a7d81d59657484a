#!/usr/bin/env bash
# `capsearch detect` end to end: real photos, the real model, a bad file in the middle.
#   test_detect.sh CAPSEARCH MODELS_DIR PHOTOS_DIR
set -uo pipefail
bin=$1 models=$2 photos=$3
[ -s "$models/ssdlite_mobilenet_v2_coco.csw" ] || { echo "SKIP: no converted model in $models"; exit 77; }
[ -s "$photos/dog.jpg" ] && [ -s "$photos/eagle.jpg" ] || { echo "SKIP: no photos in $photos"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

out=$("$bin" detect --models "$models" "$photos/dog.jpg" "$photos/eagle.jpg"); rc=$?
[ $rc = 0 ] || fail "exit $rc on good photos"
grep -Eq '^  dog +0\.[5-9]' <<<"$out" || fail "no dog in dog.jpg: $out"
grep -Eq '^  bicycle +0\.[5-9]' <<<"$out" || fail "no bicycle in dog.jpg: $out"
grep -Eq '^  bird +0\.9' <<<"$out" || fail "no bird in eagle.jpg: $out"

# A broken file between two good ones: reported, the others still processed, exit 2.
head -c 1000 "$photos/dog.jpg" > "$work/truncated.jpg"
printf 'not an image' > "$work/text.jpg"
"$bin" detect --json --models "$models" "$photos/eagle.jpg" "$work/truncated.jpg" "$work/text.jpg" \
    "$photos/dog.jpg" > "$work/out.jsonl" 2> "$work/err"; rc=$?
[ $rc = 2 ] || fail "exit $rc with broken files, expected 2"
[ "$(wc -l < "$work/out.jsonl")" = 4 ] || fail "expected 4 JSON lines: $(cat "$work/out.jsonl")"
grep -q truncated.jpg "$work/err" || fail "no error message for the truncated file"
python3 - "$work/out.jsonl" <<'PY' || fail "bad JSON Lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["file"].rsplit("/", 1)[-1] for l in lines] == ["eagle.jpg", "truncated.jpg", "text.jpg", "dog.jpg"]
assert "error" in lines[1] and "error" in lines[2]
labels = [d["label"] for d in lines[3]["detections"]]
assert "dog" in labels and "bicycle" in labels, labels
for d in lines[3]["detections"]:
    b = d["box"]
    assert 0 <= b["xmin"] < b["xmax"] <= 1 and 0 <= b["ymin"] < b["ymax"] <= 1, b
    assert 0.3 <= d["score"] <= 1
PY

# Nothing detected is exit 1; no model is a clear error.
if [ -s "$photos/scream.jpg" ]; then
    "$bin" detect --models "$models" "$photos/scream.jpg" > "$work/out"; rc=$?
    [ $rc = 1 ] || fail "scream.jpg: exit $rc, expected 1 (nothing detected): $(cat "$work/out")"
fi
"$bin" detect --models "$work" "$photos/dog.jpg" 2> "$work/err"; rc=$?
[ $rc = 2 ] && grep -q fetch_and_convert "$work/err" || fail "missing model: exit $rc, $(cat "$work/err")"
echo "PASS"
