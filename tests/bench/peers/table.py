"""Turns the RESULT lines of tests/bench/peers/run.sh into its Markdown table.

usage: table.py RESULTS_FILE
RESULT lines read:
  RESULT macs total=.. pointwise=.. depthwise=.. full3x3=..
  RESULT sgemm threads=T n=N gflops=G
  RESULT cnn300|onnxruntime|pytorch threads=T median_ms=M p90_ms=P [...]
"""
import datetime
import os
import platform
import sys

IMPLS = [("cnn300", "ours (C engine)"), ("onnxruntime", "ONNX Runtime"), ("pytorch", "PyTorch")]
# Rows without a peer: our engine on a camera-sized photo, decode to detections.
EXTRA = [("e2e12mp", "ours, 12 MP JPEG end to end")]
THREADS = (1, 2)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    macs, peaks, runs, versions, load, nrounds, per_round, cpu = parse(sys.argv[1])
    flops = 2 * macs["total"] if macs else None
    ours = {t: runs.get(("cnn300", t)) for t in THREADS}

    print("### CNN at batch 1: ssdlite_mobilenet_v2_coco, 300×300, same weights\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
          f"{platform.release()}; {datetime.date.today().isoformat()}"
          + (f"; 1-min load average {load[0]} before, {load[1]} after the run" if load else "")
          + ".  ")
    if macs:
        print(f"Work per image: {flops / 1e9:.3f} GFLOP ({macs['total'] / 1e6:.1f} M "
              f"multiply-adds: 1×1 {macs['pointwise'] / 1e6:.1f} M, depthwise 3×3 "
              f"{macs['depthwise'] / 1e6:.1f} M, full 3×3 {macs['full3x3'] / 1e6:.1f} M).  ")
    if peaks:
        print("Machine limit, OpenBLAS sgemm (n=2048, best of 7): " +
              ", ".join(f"{t} thread{'s' if t > 1 else ''} {g:.1f} GFLOP/s"
                        for t, g in sorted(peaks.items())) + ".\n")
    print("| implementation | threads | median ms | p90 ms | images/s | GFLOP/s "
          "| % of sgemm peak | ours ÷ this |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in IMPLS + EXTRA:
        if key in versions:
            label += f" {versions[key]}"
        for t in THREADS:
            r = runs.get((key, t))
            if r is None:
                print(f"| {label} | {t} | n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            median, p90 = r
            gflops = flops / (median / 1e3) / 1e9 if flops else None
            peak = peaks.get(t)
            ratio = ours[t][0] / median if ours[t] and key in dict(IMPLS) else None
            print(f"| {label} | {t} | {median:.2f} | {p90:.2f} | {1e3 / median:.1f} "
                  f"| {fmt(gflops, '.1f')} | {fmt(gflops and peak and 100 * gflops / peak, '.0f')} "
                  f"| {fmt(ratio, '.2f')} |")
    print()
    print("Latency of one 300×300 forward pass at batch 1, warm; each row is its best of "
          f"{nrounds} rounds (median and p90 of that round); images/s = 1000 / median ms; "
          "GFLOP/s from the work per image above. The peers run the PyTorch port (checked "
          "against the original TF.js graph to 1e-3) and its ONNX export: pre-processed input "
          "in, box encodings + class scores + pooled vector out. Ours (`bench_cnn`, "
          "`ce_cnn_run`) also decodes anchors and runs NMS, which the peers leave out. "
          "The 12 MP row adds JPEG decode and resize.\n")
    for key, label in IMPLS[1:]:
        parts = []
        for t in THREADS:
            theirs = runs.get((key, t))
            ratio = ours[t][0] / theirs[0] if ours[t] and theirs else None
            parts.append(f"{t} thread{'s' if t > 1 else ''} {fmt(ratio, '.2f')}")
        print(f"- ours / {label} (median latency; below 1.00 means ours is faster): "
              + ", ".join(parts))
    # The spread: round i of ours against round i of the peer (the rounds alternate the
    # implementations, so each pair ran under the same load).
    print()
    for key, label in IMPLS[1:]:
        parts = []
        for t in THREADS:
            a, b = per_round.get(("cnn300", t), []), per_round.get((key, t), [])
            ratios = [x / y for x, y in zip(a, b)]
            if ratios:
                parts.append(f"{t} thread{'s' if t > 1 else ''} "
                             + " / ".join(f"{r:.2f}" for r in ratios)
                             + f" (range {min(ratios):.2f}–{max(ratios):.2f})")
        if parts:
            print(f"- ours / {label}, round by round: " + "; ".join(parts))
    # CPU time is what a loaded machine distorts least (the scheduler's time given to
    # other processes is not counted); at 2 threads it also counts a helper's spinning.
    if cpu:
        print("\nCPU time per image (the process, all its threads; median of a round, best "
              "round), and ours ÷ the peer's:\n")
        print("| implementation | threads | CPU ms | ours ÷ this (best) | ours ÷ this, round by round |")
        print("|---|---:|---:|---:|---|")
        for key, label in IMPLS:
            for t in THREADS:
                c, o = cpu.get((key, t)), cpu.get(("cnn300", t))
                if not c:
                    continue
                by_round = " / ".join(f"{x / y:.2f}" for x, y in zip(o or [], c))
                print(f"| {label} | {t} | {min(c):.2f} | "
                      f"{fmt(o and min(o) / min(c), '.2f')} | {by_round or 'n/a'} |")


def parse(path):
    macs, peaks, runs, versions, load, rounds = None, {}, {}, {}, None, {}
    per_round, cpu = {}, {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) < 2 or words[0] != "RESULT":
                continue
            kv = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            kind = words[1]
            if kind == "macs":
                macs = {k: int(v) for k, v in kv.items()}
            elif kind == "load":
                load = (kv["before"], kv["after"])
            elif kind == "sgemm":
                t = int(kv["threads"])
                peaks[t] = max(peaks.get(t, 0.0), float(kv["gflops"]))
            elif "median_ms" in kv:
                key, r = (kind, int(kv["threads"])), (float(kv["median_ms"]), float(kv["p90_ms"]))
                if key not in runs or r[0] < runs[key][0]:  # best round
                    runs[key] = r
                rounds[key] = rounds.get(key, 0) + 1
                per_round.setdefault(key, []).append(r[0])
                if "cpu_ms" in kv:
                    cpu.setdefault(key, []).append(float(kv["cpu_ms"]))
                for tag in ("ort", "torch"):
                    if tag in kv:
                        versions[kind] = kv[tag]
    return macs, peaks, runs, versions, load, max(rounds.values(), default=0), per_round, cpu


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


if __name__ == "__main__":
    main()
