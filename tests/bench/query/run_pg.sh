#!/usr/bin/env bash
# The query benchmark on SQLite and PostgreSQL side by side, with a throw-away PostgreSQL
# server (tests/pg/pgtmp.sh: Unix socket only; as root the server runs as nobody).
#
#   tests/bench/query/run_pg.sh [--build BUILD_DIR] [--keep DIR] [bench_query options...]
#   tests/bench/query/run_pg.sh --rows 100000                 # what the README's table is
#   tests/bench/query/run_pg.sh --rows 1000000 --no-sqlite --keep /tmp/capsearch-pg.bench
#
# BUILD_DIR defaults to build/ (configured already; bench_query and capsearch are built
# here). SQLite files stay in BUILD_DIR/tests/bench/query/ as with run_all.sh. The server
# folder is a fresh /tmp/capsearch-pg.XXXXXX removed at the end, unless --keep DIR names
# one to keep between runs (its database then is not built again; DIR must be short: it
# holds the socket). Every other option goes to bench_query (--rows, --runs, --no-sqlite).
#
# Server settings beyond pgtmp.sh's: $CAPSEARCH_PG_OPTS when set, else the ones below.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
PGTMP=$SRC/tests/pg/pgtmp.sh
BUILD=$SRC/build
KEEP=
ARGS=() # for bench_query: everything but --build and --keep, wherever those come
while [ $# -gt 0 ]; do
  case "$1" in
  --build | --keep)
    [ $# -ge 2 ] || { echo "run_pg: $1 needs a folder" >&2; exit 2; }
    if [ "$1" = --build ]; then BUILD=$(cd "$2" && pwd); else KEEP=$2; fi
    shift 2
    ;;
  *) ARGS+=("$1"); shift ;;
  esac
done

# A server as one would set it up for an index of a million photos on this machine:
# 1 GiB of shared buffers instead of 128 MiB (the 1M-row index is 2 to 3 GiB), and WAL
# room for a bulk load without a checkpoint every few seconds. fsync=off (pgtmp.sh)
# flatters the build rate, not the query timings.
export CAPSEARCH_PG_OPTS=${CAPSEARCH_PG_OPTS:--c shared_buffers=1GB -c max_wal_size=8GB}

cmake --build "$BUILD" -j2 --target bench_query capsearch >&2

if [ -n "$KEEP" ]; then
  dir=$KEEP
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
else
  dir=$(mktemp -d /tmp/capsearch-pg.XXXXXX)
fi
cleanup() {
  "$PGTMP" stop "$dir" || "$PGTMP" stop "$dir" immediate || true
  [ -n "$KEEP" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -d "$dir/data" ]; then
  "$PGTMP" restart "$dir" # a kept server: start it again (stop is a no-op)
  uri=$("$PGTMP" uri "$dir")
else
  uri=$("$PGTMP" start "$dir")
fi
echo "run_pg: PostgreSQL at $uri (server settings: $CAPSEARCH_PG_OPTS)" >&2

"$BUILD/tests/bench/query/bench_query" --capsearch "$BUILD/cli/capsearch" \
  --dir "$BUILD/tests/bench/query" --pg "$uri" "${ARGS[@]}"
