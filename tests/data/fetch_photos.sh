#!/usr/bin/env bash
# Fetches the sample photos that Debian's darknet package ships (dog, eagle, giraffe,
# horses, kite, person, scream) into DEST, without installing darknet or its
# dependencies: `apt-get download` + `dpkg-deb -x`. Re-runnable; does nothing when the
# photos are already there.
set -euo pipefail
dest=${1:?usage: fetch_photos.sh DEST_DIR}
photos=(dog eagle giraffe horses kite person scream)

have_all=1
for p in "${photos[@]}"; do [ -s "$dest/$p.jpg" ] || have_all=0; done
[ "$have_all" = 1 ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && apt-get download darknet >/dev/null 2>&1 ) || {
    echo "fetch_photos: 'apt-get download darknet' failed (is Debian's archive reachable? run 'apt-get update')" >&2
    exit 1
}
dpkg-deb -x "$work"/darknet_*.deb "$work/root"
mkdir -p "$dest"
for p in "${photos[@]}"; do
    cp "$work/root/usr/share/darknet/data/$p.jpg" "$dest/$p.jpg"
done
echo "fetch_photos: ${#photos[@]} photos in $dest"
