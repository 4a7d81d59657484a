#!/usr/bin/env python3
"""Every image format capsearch reads, through the real engine and the real binaries.

    test_formats.py --bin BUILD_DIR --models DIR decode|binaries

Files are made at test time by Debian's own tools (ImageMagick `convert`, `cwebp`,
`img2webp`, `avifenc`, `tiffcp`, `tiffset`) and by two generators of ours on the
libraries' own encoders where no Debian tool writes what a camera or phone writes:
make_heif (HEIC/AVIF with irot/imir, like an iPhone portrait) and make_dng (a DNG, with
or without a JPEG preview; no Debian 12 tool writes RAW). Every good picture shows, once
oriented, four quarters: red, green, blue, white.

decode:   image_probe (the engine's public loader) on each file: format found by content,
          size, orientation (quarter colours), date; bad and hostile files of every
          format (zero bytes, truncated, huge dimensions claimed, wrong extension,
          garbage named as the format) fail with the right code.
binaries: the real `capsearch caption --json` on each good file (exit 0, a caption) and
          each bad one (exit 2, a message naming the file), then `capsearchd --once` on
          a folder of all of them: a row per file, good ones captioned, bad ones
          recorded as failures, the JPEG beside them unharmed; a second --once changes
          nothing (failures are not retried while the file is unchanged).
Exit 0 pass, 1 fail, 77 skipped (a tool or the model missing).
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

SKIP = 77
EBADMSG, E2BIG, ENOTSUP = -74, -7, -95
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
UPRIGHT = [RED, GREEN, BLUE, WHITE]
TOOLS = ["convert", "cwebp", "img2webp", "avifenc", "tiffcp", "tiffset"]


class Failure(Exception):
    pass


def run(*cmd, check=True, **kw):
    if str(cmd[0]).endswith("make_heif"):
        kw["env"] = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if check and p.returncode != 0:
        raise Failure("%s failed (%d): %s" % (" ".join(map(str, cmd)), p.returncode,
                                              p.stderr.strip()[-400:]))
    return p


# ------------------------------------------------------------------ making the files

def make_files(args, d):
    """Returns {name: expectation}; expectation is a dict with format, size, quarters,
    or rc for a bad file."""
    tools = os.path.join(args.bin, "tests", "image")
    # x265 leaks 1 KiB per encoder (its own, not ours): the generator is not what an
    # ASan build tests, so its leak check is off
    heif = os.path.join(tools, "make_heif")
    dng = os.path.join(tools, "make_dng")
    p = lambda n: os.path.join(d, n)
    # the upright picture 640x480, and the same stored turned for EXIF orientation 6
    run("convert", "-size", "320x240", "xc:red", "xc:lime", "+append", "(", "-size",
        "320x240", "xc:blue", "xc:white", "+append", ")", "-append", "PNG24:" + p("src.png"))
    run("convert", p("src.png"), "-quality", "95", p("src.jpg"))
    run("convert", p("src.png"), "-rotate", "-90", "PNG24:" + p("stored6.png"))
    other = p("other.png")  # a second frame for the animations: all black
    run("convert", "-size", "640x480", "xc:black", "PNG24:" + other)
    exp = {}

    def good(name, fmt, w=640, h=480, quarters=UPRIGHT, date=None):
        exp[name] = {"format": fmt, "size": (w, h), "quarters": quarters, "date": date}

    # HEIC like an iPhone portrait: stored turned, irot to show it upright, and an EXIF
    # Orientation that must NOT be applied on top of irot
    run(heif, p("iphone.heic"), 640, 480, "--orientation", 6, "--exif-orientation", 6)
    good("iphone.heic", "HEIF", date=1623760496)
    run(heif, p("mirrored.heic"), 640, 480, "--orientation", 5)
    good("mirrored.heic", "HEIF", date=1623760496)
    run(heif, p("plain.heic"), 640, 480)
    good("plain.heic", "HEIF")
    run(heif, p("turned.avif"), 640, 480, "--avif", "--orientation", 8)
    good("turned.avif", "AVIF")
    run("avifenc", "-s", "10", p("src.png"), p("avifenc.avif"))
    good("avifenc.avif", "AVIF")
    # WebP: lossy, lossless with alpha (transparent quarter -> white), animated, EXIF-turned
    run("cwebp", "-quiet", "-q", "90", p("src.png"), "-o", p("lossy.webp"))
    good("lossy.webp", "WebP")
    run("convert", p("src.png"), "-alpha", "set", "-region", "320x240+320+240", "-alpha",
        "transparent", "+region", "PNG32:" + p("alpha.png"))
    run("cwebp", "-quiet", "-lossless", "-exact", p("alpha.png"), "-o", p("alpha.webp"))
    good("alpha.webp", "WebP")
    run("img2webp", "-loop", "0", "-lossless", p("src.png"), "-d", "100", other,
        "-o", p("animated.webp"))
    good("animated.webp", "WebP")
    # TIFF: 16-bit RGB, CMYK, LZW + Orientation 6 tag, multi-page (first page read)
    run("convert", p("src.png"), "-depth", "16", p("rgb16.tiff"))
    good("rgb16.tiff", "TIFF")
    run("convert", p("src.png"), "-colorspace", "CMYK", p("cmyk.tiff"))
    good("cmyk.tiff", "TIFF")
    run("convert", p("stored6.png"), "-compress", "lzw", p("turned.tiff"))
    run("tiffset", "-s", "274", "6", p("turned.tiff"))
    good("turned.tiff", "TIFF")
    run("convert", p("src.png"), p("page1.tiff"))
    run("tiffcp", p("page1.tiff"), other, p("pages.tiff"), check=False)
    if not os.path.exists(p("pages.tiff")):
        run("convert", p("src.png"), other, p("pages.tiff"))
    good("pages.tiff", "TIFF")
    # GIF: still, and animated (first frame read)
    run("convert", p("src.png"), p("still.gif"))
    good("still.gif", "GIF")
    run("convert", "-delay", "10", p("src.png"), other, "-loop", "0", p("animated.gif"))
    good("animated.gif", "GIF")
    # RAW: DNG with a large JPEG preview (used), with a small one (half-size decode), none
    run(dng, p("preview.dng"), 640, 480, "--preview", 640, 480, "--orientation", 6)
    good("preview.dng", "RAW", 480, 640, [BLUE, RED, WHITE, GREEN])
    run(dng, p("small_preview.dng"), 640, 480, "--preview", 160, 120, "--orientation", 6)
    good("small_preview.dng", "RAW", 480, 640, [BLUE, RED, WHITE, GREEN])
    run(dng, p("sensor.dng"), 640, 480)
    good("sensor.dng", "RAW")
    # wrong extension: content decides
    shutil.copy(p("lossy.webp"), p("webp_named.jpg"))
    good("webp_named.jpg", "WebP")
    shutil.copy(p("iphone.heic"), p("heic_named.png"))
    good("heic_named.png", "HEIF", date=1623760496)
    shutil.copy(p("src.jpg"), p("jpeg_named.heic"))
    good("jpeg_named.heic", "JPEG")

    # ---- bad and hostile files of every new format
    def bad(name, rc):
        exp[name] = {"rc": rc}

    sources = {"heic": "iphone.heic", "avif": "turned.avif", "webp": "lossy.webp",
               "tiff": "rgb16.tiff", "gif": "still.gif", "dng": "preview.dng",
               "awebp": "animated.webp", "agif": "animated.gif", "sdng": "sensor.dng"}
    for tag, src in sources.items():
        ext = {"awebp": "webp", "agif": "gif", "sdng": "dng"}.get(tag, tag)
        data = open(p(src), "rb").read()
        open(p("truncated_%s.%s" % (tag, ext)), "wb").write(data[:len(data) // 2])
        bad("truncated_%s.%s" % (tag, ext), EBADMSG)
        open(p("header_only_%s.%s" % (tag, ext)), "wb").write(data[:40])
        bad("header_only_%s.%s" % (tag, ext), EBADMSG)
    for ext in ["heic", "avif", "webp", "tiff", "gif", "dng", "cr2", "nef"]:
        open(p("zero.%s" % ext), "wb").close()
        bad("zero.%s" % ext, EBADMSG)
        open(p("text.%s" % ext), "wb").write(b"this is not an image at all\n" * 20)
        bad("text.%s" % ext, ENOTSUP)
    # huge dimensions claimed in the header (the cap is 100 MP)
    huge_heic(p("iphone.heic"), p("huge.heic"))
    bad("huge.heic", E2BIG)
    huge_heic(p("turned.avif"), p("huge.avif"))
    bad("huge.avif", E2BIG)
    huge_webp(p("lossy.webp"), p("huge.webp"))
    bad("huge.webp", E2BIG)
    huge_webp(p("animated.webp"), p("huge_animated.webp"))
    bad("huge_animated.webp", E2BIG)
    shutil.copy(p("rgb16.tiff"), p("huge.tiff"))
    run("tiffset", "-s", "256", "60000", p("huge.tiff"))
    run("tiffset", "-s", "257", "60000", p("huge.tiff"))
    bad("huge.tiff", E2BIG)
    data = bytearray(open(p("still.gif"), "rb").read())
    data[6:10] = b"\xff\xff\xff\xff"
    open(p("huge.gif"), "wb").write(data)
    bad("huge.gif", E2BIG)
    shutil.copy(p("sensor.dng"), p("huge.dng"))
    run("tiffset", "-s", "256", "60000", p("huge.dng"))
    run("tiffset", "-s", "257", "60000", p("huge.dng"))
    bad("huge.dng", E2BIG)
    for n in ["src.png", "stored6.png", "other.png", "alpha.png", "page1.tiff"]:
        os.unlink(p(n))
    return exp


def huge_heic(src, dst):
    """Every ispe property (the image's stored size) claims 50000 x 50000."""
    data = bytearray(open(src, "rb").read())
    at = data.find(b"ispe")
    if at < 0:
        raise Failure("no ispe box in " + src)
    while at >= 0:
        data[at + 8:at + 16] = (50000).to_bytes(4, "big") * 2
        at = data.find(b"ispe", at + 4)
    open(dst, "wb").write(data)


def huge_webp(src, dst):
    """A header claiming 16383 x 16383: the VP8X canvas of an extended file, or the
    lossy VP8 frame header's 14-bit sides of a simple one."""
    data = bytearray(open(src, "rb").read())
    if data[12:16] == b"VP8X":
        data[24:27] = (16382).to_bytes(3, "little")  # canvas width - 1
        data[27:30] = (16382).to_bytes(3, "little")  # canvas height - 1
    elif data[12:16] == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        data[26:28] = (16383).to_bytes(2, "little")
        data[28:30] = (16383).to_bytes(2, "little")
    else:
        raise Failure("unexpected WebP layout in " + src)
    open(dst, "wb").write(data)


# ------------------------------------------------------------------ checks

def close(a, b, tol=40):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def check_decode(args, d, exp):
    probe = os.path.join(args.bin, "tests", "image", "image_probe")
    names = sorted(exp)
    out = run(probe, *[os.path.join(d, n) for n in names]).stdout.splitlines()
    failures = []
    for name, line in zip(names, out):
        r = json.loads(line)
        e = exp[name]
        if "rc" in e:
            ok = r["rc"] == e["rc"] and r.get("error")
            detail = "rc %d (%s)" % (r["rc"], r.get("error") or r.get("format"))
        else:
            ok = (r["rc"] == 0 and r["format"] == e["format"] and
                  (r["source_width"], r["source_height"]) == e["size"] and
                  min(r["width"], r["height"]) >= min(300, *e["size"]) and
                  all(close(q, c) for q, c in zip(r["quadrants"], e["quarters"])) and
                  (e["date"] is None or r["taken_time"] == e["date"]))
            detail = ("rc %d %s" % (r["rc"], r.get("error"))) if r["rc"] else (
                "%s %dx%d (from %dx%d) quarters %s date %d" % (
                    r["format"], r["width"], r["height"], r["source_width"],
                    r["source_height"], r["quadrants"], r["taken_time"]))
        print("  %-4s %-26s %s" % ("ok" if ok else "FAIL", name, detail))
        if not ok:
            failures.append(name)
    if failures:
        raise Failure("decode: %d files wrong: %s" % (len(failures), " ".join(failures)))


def check_binaries(args, d, exp):
    capsearch = os.path.join(args.bin, "cli", "capsearch")
    capsearchd = os.path.join(args.bin, "daemon", "capsearchd")
    env = dict(os.environ, CAPSEARCH_MODELS=args.models, HOME=d)
    env.pop("XDG_CONFIG_HOME", None)
    good = sorted(n for n in exp if "rc" not in exp[n])
    bad = sorted(n for n in exp if "rc" in exp[n])
    # caption: good files in one run (one model load), then each bad one alone
    p = run(capsearch, "caption", "--json", *[os.path.join(d, n) for n in good], env=env,
            check=False)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or len(lines) != len(good):
        raise Failure("capsearch caption on the good files: exit %d, %d lines for %d files: %s"
                      % (p.returncode, len(lines), len(good), p.stderr[-500:]))
    for n, obj in zip(good, lines):
        if not obj.get("caption"):
            raise Failure("no caption for %s: %s" % (n, obj))
    print("  capsearch caption: %d good files captioned" % len(good))
    for n in bad:
        p = run(capsearch, "caption", "--json", os.path.join(d, n), env=env, check=False)
        if p.returncode != 2 or n not in p.stderr or "Traceback" in p.stderr:
            raise Failure("capsearch caption %s: exit %d, stderr %r" % (n, p.returncode,
                                                                       p.stderr[-300:]))
    print("  capsearch caption: %d bad files exit 2 with a message" % len(bad))

    # the daemon, once, on the whole folder; a JPEG among them must be unharmed
    root = os.path.join(d, "library")
    os.makedirs(root)
    for n in exp:
        shutil.copy(os.path.join(d, n), os.path.join(root, n))
    shutil.copy(os.path.join(d, "src.jpg"), os.path.join(root, "reference.jpg"))
    db = os.path.join(d, "index.db")
    for attempt in (1, 2):
        p = run(capsearchd, "--db", db, "--root", root, "--once", "--workers", "2",
                "--log-level", "info", env=env, check=False)
        if p.returncode != 0:
            raise Failure("capsearchd --once (run %d): exit %d: %s" % (attempt, p.returncode,
                                                                        p.stderr[-800:]))
        con = sqlite3.connect(db)
        rows = {os.path.basename(r[0]): r[1:] for r in con.execute(
            "SELECT path, status, error, caption, width, height FROM images")}
        con.close()
        missing = [n for n in list(exp) + ["reference.jpg"] if n not in rows]
        if missing:
            raise Failure("run %d: no row for %s" % (attempt, " ".join(missing)))
        wrong = []
        for n in good + ["reference.jpg"]:
            status, error, caption, w, h = rows[n]
            if status != 0 or not caption:
                wrong.append("%s (status %s, %s)" % (n, status, error))
        for n in bad:
            status, error, caption, w, h = rows[n]
            if status != 1 or not error:
                wrong.append("%s (status %s, no failure recorded)" % (n, status))
        if wrong:
            raise Failure("run %d: %s" % (attempt, "; ".join(wrong)))
        if attempt == 1:
            first = rows
        elif rows != first:
            raise Failure("the second --once changed rows")
        print("  capsearchd --once run %d: %d rows, %d captioned, %d failed as expected" % (
            attempt, len(rows), len(good) + 1, len(bad)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("part", choices=["decode", "binaries"])
    args = ap.parse_args()
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        print("skipped: missing tools %s (scripts/deps.sh installs them)" % " ".join(missing))
        return SKIP
    if args.part == "binaries" and not os.path.exists(
            os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skipped: no backbone in %s" % args.models)
        return SKIP
    d = tempfile.mkdtemp(prefix="capsearch-formats.")
    try:
        exp = make_files(args, d)
        if args.part == "decode":
            check_decode(args, d, exp)
        else:
            check_binaries(args, d, exp)
    except Failure as e:
        print("FAIL: %s (files kept in %s)" % (e, d))
        return 1
    shutil.rmtree(d)
    print("formats %s: passed" % args.part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
