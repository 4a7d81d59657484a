#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests and benchmarks: one data folder, a Unix socket
# in the same folder, no TCP port, never a system service.
#
#   pgtmp.sh start DIR            initdb DIR/data, start, create database "capsearch",
#                                 print its libpq URI on stdout (nothing else goes there)
#   pgtmp.sh stop DIR [MODE]      pg_ctl stop -m MODE (fast; "immediate" = a crash);
#                                 no server running is not an error
#   pgtmp.sh restart DIR          stop -m fast + start (a server restarted under clients)
#   pgtmp.sh uri DIR [DBNAME]     print the URI of DBNAME (default capsearch)
#   pgtmp.sh reap DIR PID         wait until process PID is gone, then stop the server and
#                                 remove DIR (with_pg.sh and pgserver.py start one, so that
#                                 a test killed by a ctest timeout leaves no server behind)
#
# DIR must exist, be empty for start (callers: mktemp -d /tmp/capsearch-pg.XXXXXX) and be
# short: the socket DIR/.s.PGSQL.5432 has to fit in sun_path (108 bytes).
#
# PostgreSQL refuses to run as root, and CI runs as root: then the server (initdb, pg_ctl,
# postgres) runs as an unprivileged user, $CAPSEARCH_PG_USER or else "nobody" (or, where
# nobody cannot run programs, a system user "capsearch-test" made with useradd), and DIR
# is chowned to it; stop, restart and reap act as the owner of DIR/data. The clients
# (psql, the tests) stay root: with --auth=trust any local user may connect as the
# database user "capsearch" through the socket.
# Extra server settings: $CAPSEARCH_PG_OPTS, appended to the -c options below.
set -euo pipefail

PORT=5432 # only names the socket file: listen_addresses='' opens no TCP port
DB_USER=capsearch

die() {
  echo "pgtmp: $*" >&2
  exit 1
}

bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then d=/usr/lib/postgresql/15/bin; fi
  [ -x "$d/initdb" ] || die "no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/15/bin): install postgresql-15"
  echo "$d"
}

# The user the server runs as, or "" for "this user" (not root).
server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if [ -n "${CAPSEARCH_PG_USER:-}" ]; then
    echo "$CAPSEARCH_PG_USER"
  elif runuser -u nobody -- true 2>/dev/null; then
    echo nobody
  else
    id -u capsearch-test >/dev/null 2>&1 ||
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin capsearch-test ||
      die "cannot create the user capsearch-test"
    echo capsearch-test
  fi
}

# The user an existing server runs as: the owner of its data folder ("" = this user).
# stop, restart and reap act as that user whatever the environment says now.
data_user() {
  local owner
  owner=$(stat -c %u "$DIR/data" 2>/dev/null) || return 0
  [ "$owner" = "$(id -u)" ] || stat -c %U "$DIR/data"
}

# Runs a server binary as $SERVER_USER. From inside DIR: a cwd the user cannot read
# (/root/...) makes initdb and postgres fail.
as_server() {
  if [ -n "$SERVER_USER" ]; then
    (cd "$DIR" && runuser -u "$SERVER_USER" -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

# libpq URI of a database on this socket; the folder is percent-encoded (RFC 3986).
uri() {
  local db=${1:-capsearch} enc='' c i
  for ((i = 0; i < ${#DIR}; i++)); do
    c=${DIR:i:1}
    case "$c" in
    [A-Za-z0-9._~/-]) enc+=$c ;;
    *) enc+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  echo "postgresql:///$db?host=$enc&port=$PORT&user=$DB_USER"
}

server_opts() {
  # fsync=off: a test server's data is thrown away, and a crash of the machine is not
  # what these tests are about; it makes initdb and the benchmarks' bulk loads faster.
  echo "-c listen_addresses='' -c unix_socket_directories='$DIR' -c port=$PORT -c fsync=off ${CAPSEARCH_PG_OPTS:-}"
}

start() {
  [ -d "$DIR/data" ] && die "$DIR/data already exists (stop and remove it, or use restart)"
  # Only a fresh, empty folder: as root it is given to the server user, which must never
  # happen to a folder that holds anything else.
  [ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty (give a fresh mktemp -d /tmp/capsearch-pg.XXXXXX)"
  local locale=C
  SERVER_USER=$(server_user)
  if [ -n "$SERVER_USER" ]; then
    chown "$SERVER_USER" "$DIR"
    runuser -u "$SERVER_USER" -- test -w "$DIR" ||
      die "$SERVER_USER cannot write $DIR (is a parent folder closed to it? use mktemp -d /tmp/capsearch-pg.XXXXXX)"
  fi
  # C.UTF-8 when libc has it: C collation (fast, stable sort order), UTF-8 character classes.
  if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi
  if ! as_server "$BIN/initdb" -D "$DIR/data" -E UTF8 --locale="$locale" --auth=trust \
    -U "$DB_USER" --no-sync >"$DIR/initdb.log" 2>&1; then
    cat "$DIR/initdb.log" >&2
    die "initdb failed"
  fi
  if ! as_server "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "$(server_opts)" start >/dev/null; then
    tail -n 20 "$DIR/server.log" >&2 || true
    die "the server did not start (log: $DIR/server.log)"
  fi
  "$BIN/createdb" -h "$DIR" -p "$PORT" -U "$DB_USER" capsearch || die "createdb failed"
  uri capsearch
}

# 1 while process PID runs; an exited process that its parent (init, for a daemon) has
# not reaped yet counts as gone.
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  # /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces, so cut after its ")".
  state=$(sed 's/.*) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

stop() {
  local mode=${1:-fast}
  # Nothing to stop: not an error, so that cleanup traps may call it unconditionally.
  [ -f "$DIR/data/postmaster.pid" ] || return 0
  local pid i
  pid=$(head -n 1 "$DIR/data/postmaster.pid")
  if ! as_server "$BIN/pg_ctl" -D "$DIR/data" -m "$mode" -w -t 60 stop >/dev/null 2>&1; then
    # pg_ctl says "no server running" after a crash: the pid file is stale.
    as_server "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1 && die "the server did not stop (log: $DIR/server.log)"
  fi
  # pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before
  # it exits: wait for the process itself, so that "stopped" means no process left.
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "postmaster $pid still running 10 s after pg_ctl stop"
}

restart() {
  [ -d "$DIR/data" ] || die "no server in $DIR (start it first)"
  stop fast
  if ! as_server "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "$(server_opts)" start >/dev/null; then
    tail -n 20 "$DIR/server.log" >&2 || true
    die "the server did not start again (log: $DIR/server.log)"
  fi
}

reap() {
  local pid=$1
  while alive "$pid"; do sleep 1; done
  stop fast || stop immediate || true
  # Only a folder this script made a server in.
  if [ -f "$DIR/data/PG_VERSION" ] || [ ! -e "$DIR/data" ]; then rm -rf "$DIR"; fi
}

[ $# -ge 2 ] || {
  sed -n '2,17s/^# \{0,1\}//p' "$0" >&2
  exit 2
}
cmd=$1
[ -d "$2" ] || die "$2: no such folder"
DIR=$(cd "$2" && pwd -P)
[ ${#DIR} -le 90 ] || die "$DIR is too long for a Unix socket path (at most 90 characters here)"
BIN=$(bindir)

SERVER_USER=$(data_user)

case "$cmd" in
start) start ;;
stop) stop "${3:-fast}" ;;
restart) restart ;;
uri) uri "${3:-capsearch}" ;;
reap) [ $# -ge 3 ] || die "reap DIR PID"; reap "$3" ;;
*) die "unknown command $cmd (start, stop, restart, uri, reap)" ;;
esac
