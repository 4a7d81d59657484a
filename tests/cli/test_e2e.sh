#!/usr/bin/env bash
# End to end on real photos: `capsearch index` builds an index with the real model, then
# search and similar (stored vector, and one computed for a file outside the index).
# Usage: test_e2e.sh CAPSEARCH PHOTOS_DIR MODELS_DIR WORKDIR  (exit 77: photos or model absent)
# With CAPSEARCH_TEST_PG set (tests/pg/with_pg.sh), the index is a fresh database "e2e" on
# that PostgreSQL server instead of WORKDIR/index.db.
set -u
capsearch=$1 photos=$2 models=$3 work=$4
for p in dog horses kite; do [ -s "$photos/$p.jpg" ] || { echo "no sample photos in $photos"; exit 77; }; done
[ -s "$models/ssdlite_mobilenet_v2_coco.csw" ] || { echo "no CNN weights in $models"; exit 77; }

fail=0
check() { if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi; }
rm -rf "$work" && mkdir -p "$work/lib" "$work/elsewhere"
cp "$photos/dog.jpg" "$photos/horses.jpg" "$photos/kite.jpg" "$work/lib/"
cp "$photos/horses.jpg" "$work/elsewhere/copy.jpg"
db=$work/index.db
if [ -n "${CAPSEARCH_TEST_PG:-}" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -d "$CAPSEARCH_TEST_PG" -c 'SET client_min_messages = warning' \
    -c 'DROP DATABASE IF EXISTS e2e WITH (FORCE)' -c 'CREATE DATABASE e2e' || { echo "FAIL: createdb"; exit 1; }
  db=$("$(dirname "$0")/../pg/pgtmp.sh" uri "$CAPSEARCH_TEST_PG_DIR" e2e) || exit 1
fi
export CAPSEARCH_MODELS=$models CAPSEARCH_DB=$db

"$capsearch" index --quiet --jobs 1 "$work/lib" || { echo "FAIL: index"; exit 1; }
out=$("$capsearch" -0 dog | tr '\0' '\n')
check '[ "$(printf "%s\n" "$out" | head -1)" = "$work/lib/dog.jpg" ]' "search dog finds dog.jpg first: $out"
out=$("$capsearch" similar -0 "$work/lib/dog.jpg" | tr '\0' '\n'); rc=$?
check '[ $rc = 0 ] && [ "$(printf "%s\n" "$out" | wc -l)" = 2 ]' "similar lists the two others: $out"
check '! printf "%s\n" "$out" | grep -qx "$work/lib/dog.jpg"' "similar leaves the image out"
out=$("$capsearch" similar -0 --limit 1 "$work/elsewhere/copy.jpg" | tr '\0' '\n')
check '[ "$out" = "$work/lib/horses.jpg" ]' "an unindexed copy finds its original: $out"
if [ -n "${CAPSEARCH_TEST_PG:-}" ]; then
  n=$(psql -X -A -t -d "$db" -c 'SELECT count(*) FROM capsearch.images WHERE status = 0')
  check '[ "$n" = 3 ]' "the three photos are rows of the PostgreSQL index: $n"
fi
exit $fail
