#!/usr/bin/env bash
# Installs every Debian package capsearch needs to build, run, train and test.
# Re-runnable: apt-get skips what is already installed.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # runtime libraries
  libsqlite3-dev libuv1-dev libjpeg62-turbo-dev libpng-dev libopenblas-dev libsystemd-dev
  # model fetch (npm pack) and reference tooling
  nodejs ca-certificates
  # training and evaluation tools (never needed at run time)
  python3 python3-numpy python3-torch
  # tests and benchmarks
  sqlite3 libjpeg-turbo-progs hyperfine valgrind systemd inotify-tools python3-onnx strace
  # capsearch serve: the HTTP server library; its tests drive Debian's headless Chromium
  libmicrohttpd-dev chromium
  # image formats (README "Image formats"): HEIC/AVIF, WebP, TIFF, RAW, GIF decoders
  libheif-dev libwebp-dev libtiff-dev libraw-dev libgif-dev
  # ... and the tools the format tests and the decode benchmark make and read files with
  libheif-examples webp libtiff-tools imagemagick libraw-bin libavif-bin
  # metadata: XMP in and out (Exempi); ExifTool is the tests' independent reader
  libexempi-dev libimage-exiftool-perl
  # PostgreSQL backend: libpq to build; the server for the tests and benchmarks (tests/pg/)
  postgresql-15 libpq-dev
)

missing=()
# npm: Debian ships it as its own package; NodeSource's nodejs bundles it (and conflicts
# with Debian's), so ask for the package only when no npm is on the PATH.
command -v npm >/dev/null || missing+=(npm)
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
