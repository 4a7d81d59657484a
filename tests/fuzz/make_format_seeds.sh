#!/usr/bin/env bash
# Writes the seed corpora of the per-format fuzz targets at test time (nothing of these
# formats is committed): small valid files of each flavour the decoders take, made by
# Debian's tools and by our generators (make_heif, make_dng; no Debian tool writes irot
# or RAW), each under the 8 KiB that tests/fuzz/run.sh fuzzes.
#
# Usage: tests/fuzz/make_format_seeds.sh BUILD_DIR OUT_DIR
#   writes OUT_DIR/heif, OUT_DIR/webp, OUT_DIR/tiff, OUT_DIR/raw, OUT_DIR/gif.
#   Exits 77 (skipped) when a tool is missing (scripts/deps.sh installs them).
set -euo pipefail
build=${1:?usage: make_format_seeds.sh BUILD_DIR OUT_DIR}
out=${2:?usage: make_format_seeds.sh BUILD_DIR OUT_DIR}
for t in convert cwebp img2webp avifenc tiffcp; do
    command -v "$t" >/dev/null || { echo "make_format_seeds: $t missing" >&2; exit 77; }
done
# x265 leaks 1 KiB per encoder (its own): no leak check for the generator in ASan builds
heif() { ASAN_OPTIONS=detect_leaks=0 "$build/tests/image/make_heif" "$@"; }
dng=$build/tests/image/make_dng
mkdir -p "$out"/{heif,webp,tiff,raw,gif}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
convert -size 16x12 xc:red xc:lime +append \( -size 16x12 xc:blue xc:white +append \) -append \
    "PNG24:$tmp/q.png"
convert "$tmp/q.png" -alpha set -region 8x8+0+0 -alpha transparent +region "PNG32:$tmp/qa.png"
convert -size 32x24 xc:black "PNG24:$tmp/k.png"

heif "$out/heif/irot6.heic" 32 24 --orientation 6 --quality 30
heif "$out/heif/imir5.heic" 32 24 --orientation 5 --quality 30
heif "$out/heif/irot8.avif" 32 24 --avif --orientation 8 --quality 30
avifenc -s 10 "$tmp/qa.png" "$out/heif/alpha.avif" >/dev/null

cwebp -quiet -q 50 "$tmp/q.png" -o "$out/webp/lossy.webp"
cwebp -quiet -lossless "$tmp/qa.png" -o "$out/webp/lossless_alpha.webp"
cwebp -quiet -q 50 -alpha_q 50 "$tmp/qa.png" -o "$out/webp/lossy_alpha.webp"
cwebp -quiet -q 50 -metadata exif "$tmp/q.png" -o "$out/webp/exif.webp" 2>/dev/null || true
img2webp -loop 0 -lossy "$tmp/q.png" -d 50 "$tmp/k.png" -o "$out/webp/animated.webp" >/dev/null

convert "$tmp/q.png" "$out/tiff/rgb8.tiff"
convert "$tmp/q.png" -depth 16 "$out/tiff/rgb16.tiff"
convert "$tmp/q.png" -colorspace CMYK "$out/tiff/cmyk.tiff"
convert "$tmp/q.png" -colorspace Gray "$out/tiff/gray.tiff"
convert "$tmp/q.png" -compress lzw "$out/tiff/lzw.tiff"
convert "$tmp/q.png" -compress jpeg "$out/tiff/jpeg.tiff"
convert "$tmp/qa.png" "$out/tiff/alpha.tiff"
convert "$tmp/q.png" -colors 4 -type Palette "$out/tiff/palette.tiff"
convert "$tmp/q.png" -endian MSB "$out/tiff/big_endian.tiff"
tiffcp "$out/tiff/rgb8.tiff" "$out/tiff/gray.tiff" "$out/tiff/two_pages.tiff"

"$dng" "$out/raw/sensor.dng" 16 12 --orientation 3
"$dng" "$out/raw/preview.dng" 32 24 --preview 16 12 --orientation 6

convert "$tmp/q.png" "$out/gif/still.gif"
convert "$tmp/q.png" -interlace GIF "$out/gif/interlaced.gif"
convert "$tmp/qa.png" "$out/gif/transparent.gif"
convert -delay 10 "$tmp/q.png" "$tmp/k.png" -loop 0 "$out/gif/animated.gif"
convert -delay 10 "$tmp/q.png" \( "$tmp/k.png" -crop 8x8+4+4 \) -loop 0 "$out/gif/subframe.gif"

for d in "$out"/*; do
    for f in "$d"/*; do
        [ "$(stat -c %s "$f")" -le 8192 ] || { echo "make_format_seeds: $f over 8 KiB" >&2; exit 1; }
    done
done
echo "make_format_seeds: $(ls "$out"/* | grep -vc ':$\|^$') seeds in $out"
