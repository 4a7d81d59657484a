#!/usr/bin/env bash
# valgrind memcheck on the real binaries: no errors, no definite leaks.
#
#   caption  `capsearch caption` on a photo (`capsearch detect` without the captioner)
#   search   searches and `capsearch status` on an index of two photos
#   daemon   a short capsearchd run: --once over broken files, and a watching run that
#            indexes a photo arriving and follows its rename, stopped by SIGTERM
#
# Usage: run_memcheck.sh BUILD_DIR MODELS_DIR PHOTOS_DIR WORK_DIR NATIVE SANITIZE SCENARIO
# Exits 77 (skipped) without photos or weights, and for builds valgrind cannot run:
# -march=native code on an AVX-512 machine (valgrind has no AVX-512) or sanitizer builds.
set -euo pipefail
build=$1 models=$2 photos=$3 work=$4 native=$5 sanitize=$6 scenario=$7

skip() { echo "skipped: $*"; exit 77; }
command -v valgrind >/dev/null || skip "valgrind is not installed"
[ -s "$photos/dog.jpg" ] && [ -s "$photos/horses.jpg" ] || skip "no sample photos in $photos"
[ -s "$models/ssdlite_mobilenet_v2_coco.csw" ] || skip "no backbone weights in $models"
case "$sanitize" in ON|on|1|TRUE|true) skip "sanitizer build (configure without CAPSEARCH_SANITIZE)";; esac
if grep -qw avx512f /proc/cpuinfo; then
    case "$native" in ON|on|1|TRUE|true)
        skip "built with -march=native on an AVX-512 CPU, which valgrind cannot run (configure with -DCAPSEARCH_NATIVE=OFF)";;
    esac
fi

# capsearch runs searches itself and hands the rest to capsearch-full (cli/front.c):
# each command is checked in the program that does its work.
capsearch=$build/cli/capsearch
capsearch_full=$build/cli/capsearch-full
capsearchd=$build/daemon/capsearchd
dir=$work/$scenario
rm -rf "$dir"
mkdir -p "$dir/photos" "$dir/home"
cp "$photos/dog.jpg" "$photos/horses.jpg" "$dir/photos/"
db=$dir/index.db
export HOME=$dir/home CAPSEARCH_MODELS=$models NO_COLOR=1
unset XDG_CONFIG_HOME XDG_DATA_HOME CAPSEARCH_DB JOURNAL_STREAM
# OpenBLAS picks its kernels at run time; its AVX-512 ones would stop valgrind.
export OPENBLAS_CORETYPE=Haswell

status=0
# memcheck LOG -- CMD...: runs CMD under memcheck; the command's own exit status is
# returned, 99 means memcheck found errors or definite leaks (printed from LOG).
memcheck() {
    local log=$1
    shift 2
    local rc=0
    valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
             --errors-for-leak-kinds=definite --show-leak-kinds=definite \
             --num-callers=30 --log-file="$log" "$@" || rc=$?
    if [ "$rc" = 99 ] || grep -q "Process terminating" "$log" || ! grep -q "ERROR SUMMARY" "$log"; then
        echo "memcheck: errors in: $*" >&2
        cat "$log" >&2
        return 99
    fi
    grep -E "ERROR SUMMARY|definitely lost" "$log" | sed "s|^==[0-9]*==|  $(basename "$log" .log):|"
    return "$rc"
}

check() {   # check EXPECTED_RC NAME -- CMD...
    local want=$1 name=$2
    shift 2
    local rc=0
    memcheck "$dir/$name.log" "$@" >"$dir/$name.out" 2>"$dir/$name.err" || rc=$?
    cat "$dir/$name.out"
    if [ "$rc" != "$want" ]; then
        echo "FAIL $name: exit $rc, expected $want" >&2
        cat "$dir/$name.err" >&2
        status=1
    fi
}

case "$scenario" in
caption)
    if [ ! -s "$models/captioner.csw" ] || "$capsearch" caption --help 2>&1 | grep -q "not built yet"; then
        echo "no captioner (weights or command): memcheck on capsearch detect"
        check 0 detect -- "$capsearch_full" detect "$dir/photos/dog.jpg"
        grep -q "dog" "$dir/detect.out" || { echo "FAIL: detect did not find the dog" >&2; status=1; }
    else
        check 0 caption -- "$capsearch_full" caption "$dir/photos/dog.jpg"
        [ -s "$dir/caption.out" ] || { echo "FAIL: no caption printed" >&2; status=1; }
    fi
    # a file that is not an image: the error path frees what it took
    printf 'not an image' >"$dir/bad.jpg"
    check 2 detect-bad -- "$capsearch_full" detect "$dir/bad.jpg"
    ;;
search)
    # the index is built without valgrind (the CNN under memcheck is the caption test's)
    "$capsearch" index --db "$db" --jobs 2 --quiet "$dir/photos"
    check 0 search -- "$capsearch" --db "$db" dog
    grep -q "dog.jpg" "$dir/search.out" || { echo "FAIL: search did not find dog.jpg" >&2; status=1; }
    check 0 search-json -- "$capsearch" --db "$db" --json --dir "$dir/photos" dog horse
    check 0 status -- "$capsearch_full" status --db "$db"
    ;;
daemon)
    # --once over files that fail (no model run: the CNN under memcheck is the caption
    # test's): the walk, the queue, decoding errors, failure rows, the crash marker
    mkdir -p "$dir/once/sub"
    printf 'not an image' >"$dir/once/bad.jpg"
    head -c 300 "$dir/photos/dog.jpg" >"$dir/once/sub/truncated.jpg"
    check 0 daemon-once -- "$capsearchd" --db "$db" --root "$dir/once" --workers 2 --once
    rm -f "$db" "$db-wal" "$db-shm"
    # the watching daemon: one photo arrives and is indexed, one is renamed, then SIGTERM
    mkdir -p "$dir/watched"
    valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
             --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 \
             --log-file="$dir/daemon-watch.log" \
             "$capsearchd" --db "$db" --root "$dir/watched" --workers 1 --batch-ms 200 \
             --time-limit 3600 >"$dir/daemon-watch.out" 2>&1 &
    pid=$!
    rows() { python3 -c "import sqlite3,sys; c=sqlite3.connect('file:$db?mode=ro',uri=True,timeout=30); print(c.execute(\"select count(*) from images where status=0 and path like '%$1'\").fetchone()[0])" 2>/dev/null || echo 0; }
    wait_row() {
        for _ in $(seq 1200); do
            [ "$(rows "$1")" -ge 1 ] && return 0
            kill -0 "$pid" 2>/dev/null || return 1
            sleep 0.5
        done
        return 1
    }
    sleep 5     # the watches are set up
    cp "$dir/photos/dog.jpg" "$dir/watched/"
    wait_row /dog.jpg || { echo "FAIL: the watching daemon under valgrind did not index dog.jpg" >&2; status=1; }
    mv "$dir/watched/dog.jpg" "$dir/watched/renamed.jpg"
    wait_row /renamed.jpg || { echo "FAIL: the rename did not reach the index" >&2; status=1; }
    kill -TERM "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
    grep -E "ERROR SUMMARY|definitely lost" "$dir/daemon-watch.log" | sed "s|^==[0-9]*==|  daemon-watch:|"
    if [ "$rc" != 0 ] || ! grep -q "ERROR SUMMARY" "$dir/daemon-watch.log"; then
        echo "FAIL daemon-watch: exit $rc" >&2
        cat "$dir/daemon-watch.log" "$dir/daemon-watch.out" >&2
        status=1
    fi
    ;;
*)
    echo "unknown scenario $scenario" >&2
    exit 2
    ;;
esac
[ "$status" = 0 ] && echo "ok memcheck $scenario" && rm -rf "$dir"
exit "$status"
