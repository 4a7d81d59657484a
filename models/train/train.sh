#!/bin/sh
# The whole captioner training pipeline, one command, fixed seeds:
#   models/train/train.sh BUILD_DIR
# BUILD_DIR holds the built extract_features (cmake --build BUILD_DIR --target
# extract_features) and models/ssdlite_mobilenet_v2_coco.csw must exist. About 1-2.5
# hours on 2 cores (models/README.md has the measured times); run it with nice in the
# background. Every step logs to
# models/train/work/<step>.log; the results are models/captioner.csw,
# tests/caption/golden.csw and work/baseline/captioner.csw (the Show-and-Tell baseline).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: train.sh BUILD_DIR}" && pwd)
py=${PYTHON:-/usr/bin/python3}
cd "$here"
mkdir -p work/baseline
step() { name=$1; shift; echo "== $name: $*"; "$@" > "work/$name.log" 2>&1 || { tail -20 "work/$name.log"; exit 1; }; tail -3 "work/$name.log"; }
step vocab "$py" build_vocab.py
step decoder "$py" train_decoder.py --epochs "${DECODER_EPOCHS:-3}"
step extract ./extract_all.sh "$build"
step concepts "$py" train_concepts.py
step calibrate "$py" calibrate.py
step export "$py" export.py
step baseline "$py" train_baseline.py
ln -sf "$here/../ssdlite_mobilenet_v2_coco.csw" work/baseline/ssdlite_mobilenet_v2_coco.csw
step export_baseline "$py" export.py --decoder baseline_decoder.pt --head baseline_head.pt \
    --gamma 1 --out work/baseline/captioner.csw --golden work/baseline/golden.csw
