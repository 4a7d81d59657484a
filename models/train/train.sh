#!/bin/sh
# The whole captioner training pipeline, one command, fixed seeds:
#   models/train/train.sh BUILD_DIR
# BUILD_DIR holds the built extract_features (cmake --build BUILD_DIR --target
# extract_features) and models/ssdlite_mobilenet_v2_coco.csw must exist. About 1-2.5
# hours on 2 cores (models/README.md has the measured times); run it with nice in the
# background. Every step logs to
# models/train/work/<step>.log; the results are models/captioner.csw,
# tests/caption/golden.csw and work/baseline/captioner.csw (the Show-and-Tell baseline).
# HEAD_ONLY=1 FROM_CSW=FILE [DECODER_MORE=...]: the decoder and vocabulary are taken from
# FILE (see below) and only the concept head is retrained; CONCEPT_ARGS / CALIBRATE_ARGS
# pass options to train_concepts.py / calibrate.py, COMPLETION_ARGS to train_completion.py
# (models/README.md has the committed run's).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: train.sh BUILD_DIR}" && pwd)
py=${PYTHON:-/usr/bin/python3}
cd "$here"
mkdir -p work/baseline
step() { name=$1; shift; echo "== $name: $*"; "$@" > "work/$name.log" 2>&1 || { tail -20 "work/$name.log"; exit 1; }; tail -3 "work/$name.log"; }
if [ "${HEAD_ONLY:-0}" = 1 ]; then
    # Retrain only the concept head against the decoder and vocabulary of an existing
    # captioner.csw (FROM_CSW; recovered by from_csw.py: no 91-minute decoder run from
    # scratch, no vocabulary drift). DECODER_MORE="--epochs N --lr X" first continues
    # training that decoder for N more epochs.
    step from_csw "$py" from_csw.py --csw "${FROM_CSW:?HEAD_ONLY=1 needs FROM_CSW=captioner.csw to start from}"
    if [ -n "${DECODER_MORE:-}" ]; then
        step decoder_more "$py" train_decoder.py --threads 1 --init decoder.pt $DECODER_MORE --out decoder.pt
    fi
else
    step vocab "$py" build_vocab.py
    step decoder "$py" train_decoder.py --epochs "${DECODER_EPOCHS:-3}"
fi
step extract ./extract_all.sh "$build"
step concepts "$py" train_concepts.py ${CONCEPT_ARGS:-}
step calibrate "$py" calibrate.py ${CALIBRATE_ARGS:-}
step completion "$py" train_completion.py ${COMPLETION_ARGS:-}
step export "$py" export.py --head head_cal.pt
[ "${HEAD_ONLY:-0}" = 1 ] && exit 0
step baseline "$py" train_baseline.py
ln -sf "$here/../ssdlite_mobilenet_v2_coco.csw" work/baseline/ssdlite_mobilenet_v2_coco.csw
step export_baseline "$py" export.py --decoder baseline_decoder.pt --head baseline_head.pt --completion none \
    --gamma 1 --out work/baseline/captioner.csw --golden work/baseline/golden.csw
