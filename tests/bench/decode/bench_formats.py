#!/usr/bin/env python3
"""Decode benchmark per format (figures, never asserted): a 12 MP photo (4000x3000) to
>= 300 px by our loader (tests/image/image_probe: the engine's ce_image_load_file, one
process per decode) beside the format's own command-line decoder, in the same run.

    tests/bench/decode/bench_formats.py [--build build] [--runs 5] [--photo JPG]

The 12 MP files are made here from a darknet sample photo (ImageMagick upscale), by
heif-enc, avifenc, cwebp, ImageMagick (TIFF 8/16-bit, GIF) and make_dng (a synthetic
DNG: no Debian tool writes RAW; with a full-size JPEG preview, and without one). Both
sides are whole processes (start-up, reading the file, decoding, little output): ours
prints one line; the peers write a raw PPM/Y4M to /dev/shm so that no PNG encoder is
timed. Wall and CPU (user+sys of the child) medians; the load average is printed
because the machine is shared.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd, runs):
    walls, cpus = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((ru.ru_utime + ru.ru_stime) * 1000)
        if os.waitstatus_to_exitcode(status) != 0:
            return None
    return statistics.median(walls), statistics.median(cpus)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--photo", default=None)
    args = ap.parse_args()
    probe = os.path.join(args.build, "tests", "image", "image_probe")
    dng = os.path.join(args.build, "tests", "image", "make_dng")
    photo = args.photo or os.path.join(args.build, "testdata", "photos", "dog.jpg")
    for t in [probe, dng, photo]:
        if not os.path.exists(t):
            print("bench_formats: %s missing (build, tests/data/fetch_photos.sh)" % t)
            return 0
    work = tempfile.mkdtemp(prefix="capsearch-bench-formats.")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else work
    out = os.path.join(shm, "capsearch-bench-out")
    f = lambda n: os.path.join(work, n)
    run = lambda *c: subprocess.run([str(x) for x in c], check=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
    run("convert", photo, "-resize", "4000x3000!", "-quality", "92", f("big.jpg"))
    run("convert", f("big.jpg"), "PNG24:" + f("big.png"))
    run("heif-enc", "-q", "80", f("big.jpg"), "-o", f("big.heic"))
    run("avifenc", "-s", "8", "-j", "2", f("big.png"), f("big.avif"))
    run("cwebp", "-quiet", "-q", "85", f("big.png"), "-o", f("big.webp"))
    run("convert", f("big.jpg"), f("big8.tiff"))
    run("convert", f("big.jpg"), "-depth", "16", "-compress", "zip", f("big16.tiff"))
    run("convert", f("big.jpg"), f("big.gif"))
    run(dng, f("preview.dng"), 4000, 3000, "--preview", 4000, 3000)
    run(dng, f("sensor.dng"), 4000, 3000)
    os.unlink(f("big.png"))

    rows = [
        ("JPEG (reference)", "big.jpg", ["djpeg", "-scale", "1/8", "-outfile", out + ".ppm", "{}"]),
        ("HEIC (x265)", "big.heic", ["heif-convert", "{}", out + ".y4m"]),
        ("AVIF (aom)", "big.avif", ["avifdec", "-j", "1", "{}", out + ".y4m"]),
        ("WebP lossy", "big.webp", ["dwebp", "{}", "-ppm", "-o", out + ".ppm"]),
        ("WebP lossy, scaled", "big.webp",
         ["dwebp", "{}", "-scale", "400", "300", "-ppm", "-o", out + ".ppm"]),
        ("TIFF 8-bit", "big8.tiff", ["tiff2rgba", "{}", out + ".tiff"]),
        ("TIFF 16-bit zip", "big16.tiff", ["tiff2rgba", "{}", out + ".tiff"]),
        ("GIF", "big.gif", ["convert", "{}[0]", out + ".ppm"]),
        ("DNG, full-size JPEG preview", "preview.dng", ["simple_dcraw", "-e", "{}"]),
        ("DNG, no preview (half-size)", "sensor.dng", ["dcraw_emu", "-h", "-Z", out + ".ppm", "{}"]),
    ]
    print("# Decode to >= 300 px, 12 MP (4000x3000), %d runs, median ms" % args.runs)
    print()
    print("load average: %s; %s" % (" ".join("%.2f" % x for x in os.getloadavg()),
                                     time.strftime("%Y-%m-%d %H:%M")))
    print()
    print("| format | file MB | ours wall / CPU | peer | peer wall / CPU | ours ÷ peer (CPU) |")
    print("|---|---|---|---|---|---|")
    for what, name, peer in rows:
        path = f(name)
        ours = timed([probe, path], args.runs)
        peer_cmd = [c.replace("{}", path) for c in peer]
        theirs = timed(peer_cmd, args.runs) if shutil.which(peer_cmd[0]) else None
        fmt = lambda r: "%.0f / %.0f" % r if r else "failed"
        ratio = "%.2f" % (ours[1] / theirs[1]) if ours and theirs and theirs[1] > 0 else "—"
        print("| %s | %.1f | %s | `%s` | %s | %s |" % (
            what, os.path.getsize(path) / 1e6, fmt(ours), " ".join(os.path.basename(c) if
                                                                  c.startswith(work) or
                                                                  c.startswith(shm) else c
                                                                  for c in peer_cmd),
            fmt(theirs), ratio))
    for n in os.listdir(shm):
        if n.startswith("capsearch-bench-out"):
            os.unlink(os.path.join(shm, n))
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
