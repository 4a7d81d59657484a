#!/usr/bin/env bash
# Runs one command against a throw-away PostgreSQL server (tests/pg/pgtmp.sh):
#
#   with_pg.sh CMD [ARGS...]
#
# starts a server in a fresh /tmp/capsearch-pg.XXXXXX, exports
#   CAPSEARCH_TEST_PG      its libpq URI (database "capsearch")
#   CAPSEARCH_TEST_PG_DIR  the folder (socket, data/, server.log; pgtmp.sh restart takes it)
# runs CMD, then stops the server and removes the folder however CMD ends, and exits
# with CMD's status (77, ctest's "skipped", passes through). CTest runs the C test
# binaries against PostgreSQL through it.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGTMP=$HERE/pgtmp.sh

[ $# -ge 1 ] || {
  echo "usage: with_pg.sh CMD [ARGS...]" >&2
  exit 2
}

dir=$(mktemp -d /tmp/capsearch-pg.XXXXXX) || exit 1
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  "$PGTMP" stop "$dir" || "$PGTMP" stop "$dir" immediate
  rm -rf "$dir"
}
trap cleanup EXIT
# A signal ends the script through exit, so that the EXIT trap stops the server.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

uri=$("$PGTMP" start "$dir") || {
  echo "with_pg: could not start a PostgreSQL server" >&2
  exit 1
}
# ctest kills a test that runs past its timeout with SIGKILL, which no trap sees, and the
# postmaster is no child of ours by then (pg_ctl daemonises it). A reaper in its own
# session (setsid), no child of ours either (started from a subshell that exits at once), stops
# the server and removes the folder once this script is gone.
(setsid "$PGTMP" reap "$dir" $$ </dev/null >/dev/null 2>&1 &)

export CAPSEARCH_TEST_PG=$uri CAPSEARCH_TEST_PG_DIR=$dir
# Not exec: the EXIT trap must outlive CMD. In the foreground (stdin stays CMD's); a
# signal that reaches both (Ctrl-C) runs the trap once CMD has ended.
"$@"
exit $?
