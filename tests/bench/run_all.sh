#!/usr/bin/env bash
# Every capsearch benchmark in one command; prints one Markdown report on stdout (the
# machine, a summary table against the targets of issue 6, then each benchmark's own
# table). Progress and the benchmarks' chatter go to stderr.
#
# usage: tests/bench/run_all.sh [--quick] [BUILD_DIR]
#   BUILD_DIR  a CMake build folder (default: build); configured when it has no cache,
#              and the benchmark targets are built in it (-j2)
#   --quick    a fast sanity run: 100 photos instead of 1,000, 10k query rows only, fewer
#              iterations everywhere (figures are rougher, the table is the same)
#
# Runs, in this order (each one's output is kept in BUILD_DIR/tests/bench/results/):
#   tests/bench/index/run.py   1,000 12 MP photos through `capsearch index` and capsearchd,
#                              per-stage latency, daemon peak RSS, database bytes per image
#   bench_cnn --profile        CNN latency at 300x300 and for a 12 MP JPEG, stage profile
#   bench_decode               our JPEG loader against djpeg (libjpeg-turbo-progs)
#   bench_query                query latency at 10k, 100k and 1M rows
#   tests/bench/peers/run.sh   the same CNN through ONNX Runtime and PyTorch, sgemm peak
# A benchmark that cannot run (say node or python3-torch missing for the peers) leaves
# "n/a" in the summary and its error in the report; the others still run.
#
# Example: tests/bench/run_all.sh build > tests/bench/RESULTS.md
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
QUICK=0
BUILD_DIR=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_all: unknown option $arg" >&2; exit 2 ;;
    *) BUILD_DIR="$arg" ;;
  esac
done
BUILD_DIR="$(cd "$ROOT" && realpath -m "${BUILD_DIR:-build}")"
OUT="$BUILD_DIR/tests/bench/results"
TARGETS=(capsearch capsearchd bench_cnn bench_decode bench_query make_photos bench_stages)

main() {
  build
  mkdir -p "$OUT"
  rm -f "$OUT"/*.md "$OUT"/*.log "$OUT"/*.txt
  local load_before
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  local started=$SECONDS
  export CAPSEARCH_MODELS="${CAPSEARCH_MODELS:-$ROOT/models}"

  if [ "$QUICK" = 1 ]; then
    section index python3 "$HERE/index/run.py" --build "$BUILD_DIR" --quick \
      --results "$OUT/results.txt"
    section cnn "$BUILD_DIR/tests/bench/cnn/bench_cnn" --warmup 2 --iters 10 --profile
    section decode "$BUILD_DIR/tests/bench/decode/bench_decode" "$(photos_dir)/dog.jpg" \
      "$BUILD_DIR/tests/bench/decode" 5
    section query "$BUILD_DIR/tests/bench/query/bench_query" --capsearch "$BUILD_DIR/cli/capsearch" \
      --dir "$BUILD_DIR/tests/bench/query" --rows 10000 --runs 50
    WARMUP=3 ITERS=20 ROUNDS=1 section peers "$HERE/peers/run.sh" "$BUILD_DIR"
  else
    section index python3 "$HERE/index/run.py" --build "$BUILD_DIR" --results "$OUT/results.txt"
    section cnn "$BUILD_DIR/tests/bench/cnn/bench_cnn" --warmup 5 --iters 50 --profile
    section decode "$BUILD_DIR/tests/bench/decode/bench_decode" "$(photos_dir)/dog.jpg" \
      "$BUILD_DIR/tests/bench/decode" 25
    section query "$BUILD_DIR/tests/bench/query/bench_query" --capsearch "$BUILD_DIR/cli/capsearch" \
      --dir "$BUILD_DIR/tests/bench/query" --rows 10000,100000,1000000 --runs 200
    section peers "$HERE/peers/run.sh" "$BUILD_DIR"
  fi
  # The peers keep their RESULT lines in their own work folder.
  [ -f "$HERE/peers/work/results.txt" ] && [ "$HERE/peers/work/results.txt" -nt "$OUT/index.md" ] &&
    cp "$HERE/peers/work/results.txt" "$OUT/peers-results.txt"

  {
    header "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" $((SECONDS - started))
    python3 - "$OUT" "$QUICK" <<'PY'
import os, re, sys

out, quick = sys.argv[1], sys.argv[2] == "1"


def read(name):
    p = os.path.join(out, name)
    return open(p, encoding="utf-8", errors="replace").read() if os.path.exists(p) else ""


def results(text):
    """RESULT kind k=v ... lines as (kind, dict)."""
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == "RESULT":
            yield w[1], dict(x.split("=", 1) for x in w[2:] if "=" in x)


def f(v, spec=".1f"):
    return "n/a" if v is None or v != v else format(v, spec)


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


rows = []
index = read("index.md")
runs = {k["mode"]: k for kind, k in results(index) if kind == "index"}
stages = {k["name"]: (float(k["mean_ms"]), float(k.get("cpu_ms", "nan")))
          for kind, k in results(index) if kind == "stage"}
meta = next((k for kind, k in results(index) if kind == "stages"), {})
for mode, label in (("oneshot", "`capsearch index DIR` (one-shot)"), ("daemon", "`capsearchd`")):
    r = runs.get(mode)
    if not r:
        rows.append((f"Indexing throughput, {label}", "≥ 30 images/s", "n/a", "n/a"))
        continue
    ips, cpu, w = float(r["images_per_s"]), float(r["cpu_s_per_image"]), int(r["workers"])
    ideal = w / cpu if cpu > 0 else None
    rows.append((f"Indexing throughput, {label}, {r['ok']} photos of 12 MP, {w} workers",
                 "≥ 30 images/s",
                 f"{ips:.1f} images/s measured (machine shared); {f(ideal)} CPU-bound on {w} free "
                 f"cores ({cpu * 1000:.0f} ms CPU per photo)",
                 f"{verdict(ips >= 30)} as measured; {verdict(ideal and ideal >= 30)} CPU-bound"))
def stage(name, i):
    if name == "caption" and meta.get("captioner") == "0":
        return "n/a (no captioner.csw)"
    return f(stages[name][i], ".1f") if name in stages else "n/a"


if stages:
    names = ("hash", "decode", "cnn", "caption", "database", "total")
    for i, what in ((0, "wall-clock"), (1, "CPU")):
        rows.append((f"Per-stage latency, mean {what} ms per photo on 1 thread: hash / decode / CNN / "
                     "concepts+LSTM / database (total)", "—",
                     " / ".join(stage(n, i) for n in names[:-1]) + f" ({stage('total', i)})", "—"))
d = runs.get("daemon")
if d:
    rss = int(d["vmhwm_kb"]) / 1024
    rows.append(("Daemon peak RSS while indexing (VmHWM)", "< 200 MB", f"{rss:.0f} MB", verdict(rss < 200)))
    n = int(d["ok"]) + int(d["failed"])
    if n:
        rows.append(("Database bytes per image", "—", f"{int(d['db_bytes']) / n / 1024:.1f} KiB", "—"))

peers = read("peers-results.txt")
best = {}
for kind, k in results(peers):
    if "median_ms" in k and "threads" in k:
        key = (kind, int(k["threads"]))
        best[key] = min(best.get(key, 1e99), float(k["median_ms"]))
cnn = {(kind, int(k["threads"])): k for kind, k in results(read("cnn.md")) if "threads" in k}
for peer, label, target in (("onnxruntime", "ONNX Runtime", 1.0), ("pytorch", "PyTorch", None)):
    pairs = [(best[("cnn300", t)], best[(peer, t)]) if ("cnn300", t) in best and (peer, t) in best
             else None for t in (1, 2)]
    ratios = [p and p[0] / p[1] for p in pairs]
    ok = None if None in ratios or target is None else all(r <= target for r in ratios)
    detail = "; ".join(f"{t} thread{'s' if t > 1 else ''}: {p[0]:.1f} vs {p[1]:.1f} ms"
                       for t, p in zip((1, 2), pairs) if p)
    rows.append((f"CNN at batch 1 (300×300), ours ÷ {label}, 1 / 2 threads (median latency, best round)",
                 "≤ 1.00" if target else "—",
                 f"{f(ratios[0], '.2f')} / {f(ratios[1], '.2f')}" + (f" ({detail})" if detail else ""),
                 verdict(ok) if target else "—"))
peak = {}
macs = None
for kind, k in results(peers):
    if kind == "sgemm":
        peak[int(k["threads"])] = max(peak.get(int(k["threads"]), 0.0), float(k["gflops"]))
    elif kind == "macs":
        macs = float(k["total"])
# From the peers' run when there is one (the same run as the sgemm peak), else bench_cnn's.
c1 = cnn.get(("cnn300", 1))
ms = best.get(("cnn300", 1)) or (c1 and float(c1["median_ms"]))
flops = 2 * macs if macs else (c1 and float(c1["flops"]))
if ms and flops:
    g = flops / (ms / 1e3) / 1e9
    rows.append(("CNN work and speed, 1 thread: GFLOP per image (multiply-adds × 2); achieved "
                 "GFLOP/s; OpenBLAS sgemm peak (n = 2048)", "—",
                 f"{flops / 1e9:.2f} GFLOP; {g:.1f} GFLOP/s ({ms:.1f} ms); peak "
                 f"{f(peak.get(1))} GFLOP/s" + (f" ({100 * g / peak[1]:.0f} % of it)" if peak.get(1) else ""),
                 "—"))
e1 = cnn.get(("e2e12mp", 1))
if e1:
    rows.append(("12 MP JPEG to detections (decode + CNN), 1 thread, median", "—",
                 f"{float(e1['median_ms']):.1f} ms", "—"))

# bench_query's table, read by its column titles: "| rows | ... | whole process median / p99 | ..."
targets = {100000: 5.0, 1000000: 50.0}
columns = None
for line in read("query.md").splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells and cells[0] == "rows":
        columns = cells
        continue
    if not columns or not cells[0].isdigit():
        continue
    n, t = int(cells[0]), targets.get(int(cells[0]))
    tgt = f"p50 < {t:g} ms" if t else "—"
    for title, label in (("whole process median / p99", "whole `capsearch` process"),
                         ("in-process words+concepts median / p99", "in process, words + concepts")):
        m = re.match(r"([\d.]+) / ([\d.]+) ms", cells[columns.index(title)]) if title in columns else None
        if m:
            p50, p99 = float(m.group(1)), float(m.group(2))
            rows.append((f"Query `dog beach` at {n:,} rows, p50 / p99, {label}", tgt,
                         f"{p50:.2f} / {p99:.2f} ms", verdict(p50 < t) if t else "—"))

dec = read("decode.md")
def decode_row(prefix):
    for line in dec.splitlines():
        if line.startswith("| " + prefix):
            cells = [c.strip() for c in line.strip("|").split("|")]
            return float(cells[2]), float(cells[3])
    return None
ours, djpeg = decode_row("capsearch loader, min_side 300"), decode_row("djpeg -scale 1/8")
if ours or djpeg:
    rows.append(("12 MP JPEG decode to ≥ 300 px, median / p90: ours (in process) vs `djpeg -scale 1/8` (process)",
                 "—", f"{f(ours and ours[0], '.2f')} / {f(ours and ours[1], '.2f')} ms vs "
                 f"{f(djpeg and djpeg[0], '.2f')} / {f(djpeg and djpeg[1], '.2f')} ms", "—"))

print("## Summary\n")
print("| measure | target | measured | verdict |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
PY
    for s in index cnn decode query peers; do
      echo
      case "$s" in
        index) echo "## Indexing (tests/bench/index/run.py)" ;;
        cnn) echo "## CNN latency (bench_cnn --profile)" ;;
        decode) echo "## JPEG decode (bench_decode)" ;;
        query) echo "## Query latency (bench_query)" ;;
        peers) echo "## CNN against ONNX Runtime and PyTorch (tests/bench/peers/run.sh)" ;;
      esac
      echo
      if [ -s "$OUT/$s.md" ]; then
        grep -v '^RESULT' "$OUT/$s.md"
      fi
      if [ "$(cat "$OUT/$s.rc")" != 0 ]; then
        echo
        echo "**Failed** (exit status $(cat "$OUT/$s.rc")); the end of its log:"
        echo
        echo '```'
        tail -n 15 "$OUT/$s.log"
        echo '```'
      fi
    done
  } | tee "$OUT/report.md"
}

build() {
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    log "configuring $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" >&2 || exit 1
  fi
  log "building ${TARGETS[*]} in $BUILD_DIR"
  nice -n 10 cmake --build "$BUILD_DIR" -j2 --target "${TARGETS[@]}" >&2 || {
    log "build failed"
    exit 1
  }
  "$ROOT/tests/data/fetch_photos.sh" "$(photos_dir)" >&2 || exit 1
}

photos_dir() {
  local dir
  dir="$(grep '^CAPSEARCH_TEST_PHOTOS:' "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2-)"
  echo "${dir:-$BUILD_DIR/testdata/photos}"
}

# section NAME COMMAND...: stdout to OUT/NAME.md, stderr to OUT/NAME.log (and to ours, so
# progress shows), exit status to OUT/NAME.rc.
section() {
  local name="$1"
  shift
  log "$name: $*"
  local t0=$SECONDS rc=0
  (cd "$ROOT" && "$@") > "$OUT/$name.md" 2> >(tee "$OUT/$name.log" >&2) || rc=$?
  echo "$rc" > "$OUT/$name.rc"
  log "$name: exit status $rc after $((SECONDS - t0)) s"
}

header() {
  local cpu mem
  cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  mem="$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "# capsearch benchmarks$([ "$QUICK" = 1 ] && echo ' (--quick)')"
  echo
  echo "- Machine: ${cpu:-unknown CPU}, $(nproc) cores, $mem RAM; $(uname -sr)," \
       "Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
       git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- Load average (1, 5, 15 min) before: $1; after: $2 — the machine is shared:" \
       "with a load above the core count, every wall-clock figure is slower than on an idle machine;" \
       "the benchmarks ran at niceness $(nice)"
  echo "- Command: \`tests/bench/run_all.sh$([ "$QUICK" = 1 ] && echo ' --quick') $(realpath --relative-to="$ROOT" "$BUILD_DIR")\`, $(( $3 / 60 )) min $(( $3 % 60 )) s"
  echo
}

log() { echo "run_all: $*" >&2; }

main "$@"
