#!/usr/bin/env bash
# capsearch as two programs (cli/front.c): the search front links SQLite and the C
# library only, never OpenBLAS, libpq or the image, HTTP and metadata libraries (issue
# 14: they cost a search process more than the search); no program links OpenBLAS or
# libpq (engine/blas.h, db/pg/libpq.h: loaded when first needed); every other command
# line reaches capsearch-full unchanged, and a front without it says so.
#
# usage: test_front.sh CAPSEARCH CAPSEARCH_FULL CAPSEARCHD LIBEXEC_DIR LIBEXEC_FROM_BIN WORK_DIR
#   LIBEXEC_FROM_BIN: where capsearch-full is installed relative to capsearch's folder
set -euo pipefail
front=$1 full=$2 daemon=$3 libexec=$4 from_bin=$5 work=$6
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# 1. What the front links: SQLite, libm, libc (and a sanitizer build's runtimes).
while read -r lib; do
    case "$lib" in
    libsqlite3.so.*|libm.so.*|libc.so.*|libasan.so.*|libubsan.so.*|libgcc_s.so.*) ;;
    *) bad "capsearch links $lib" ;;
    esac
done < <(needed "$front")
# ... and what those pull in, as the loader resolves it
if ldd "$front" | grep -E 'openblas|libpq|heif|microhttpd|exempi|libuv|libsystemd|jpeg|png'; then
    bad "capsearch loads a library a search does not need (above)"
fi

# 2. Nothing links OpenBLAS or libpq.
for prog in "$front" "$full" "$daemon"; do
    if needed "$prog" | grep -E '^(libopenblas|libpq)'; then bad "$(basename "$prog") links the above"; fi
done

# 3. Everything else reaches capsearch-full, arguments and exit status unchanged.
[ "$("$front" --version)" = "$("$full" --version)" ] || bad "--version differs"
"$front" --help | grep -q "^  serve " || bad "--help does not list serve"
rc=0; "$front" caption >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || bad "capsearch caption without files: exit $rc, expected 2"
rc=0; "$front" --no-such-option status >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || bad "an unknown option before status: exit $rc, expected 2"
# every subcommand --help lists, reached through the front, answers its own --help
for sub in $("$front" --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
    "$front" "$sub" --help >/dev/null 2>&1 || bad "capsearch $sub --help failed"
    "$front" "$sub" --help 2>&1 | grep -q "Usage: capsearch" || bad "capsearch $sub --help: no usage"
done

# 4. A front alone (capsearch-full neither beside it nor installed) still searches, and
#    says what is missing for the rest.
rm -rf "$work" && mkdir -p "$work"
cp "$front" "$work/capsearch"
rc=0; "$work/capsearch" --db "$work/none.db" dog >/dev/null 2>"$work/search.err" || rc=$?
[ "$rc" = 2 ] && grep -q "no index at" "$work/search.err" || bad "search without capsearch-full: exit $rc: $(cat "$work/search.err")"
rc=0; "$work/capsearch" status >/dev/null 2>"$work/status.err" || rc=$?
if [ ! -x "$libexec/capsearch-full" ]; then   # (an installed copy would be found)
    [ "$rc" = 2 ] && grep -q "cannot run .*capsearch-full" "$work/status.err" ||
        bad "status without capsearch-full: exit $rc: $(cat "$work/status.err")"
fi

# 5. An installation under another prefix, or moved: capsearch-full is found relative to
#    the front (bin/ and its libexec/capsearch/).
mkdir -p "$work/moved/bin" "$work/moved/bin/$from_bin"
cp "$front" "$work/moved/bin/capsearch"
cp "$full" "$work/moved/bin/$from_bin/capsearch-full"
[ "$("$work/moved/bin/capsearch" --version 2>&1)" = "$("$full" --version)" ] ||
    bad "a moved installation does not find capsearch-full: $("$work/moved/bin/capsearch" --version 2>&1)"

[ "$fail" = 0 ] && echo "ok: capsearch links $(needed "$front" | tr '\n' ' ')"
exit "$fail"
