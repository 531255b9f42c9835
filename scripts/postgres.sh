#!/usr/bin/env bash
# A PostgreSQL server for the tests: Debian's package, a cluster of our own in
# a folder of our own, listening on 127.0.0.1 only.
#
#   scripts/postgres.sh start   install if needed, init if needed, start; prints the URL
#   scripts/postgres.sh stop    stop (fast shutdown)
#   scripts/postgres.sh url     print the URL
#
# HEADRACE_PG_DIR (default .cache/postgres) holds the cluster; HEADRACE_PG_PORT
# (default 54329) the port.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${HEADRACE_PG_DIR:-$PWD/.cache/postgres}"
PORT="${HEADRACE_PG_PORT:-54329}"
DATA="$DIR/data"
URL="postgresql://headrace@127.0.0.1:$PORT/headrace"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install() {
  if [ -z "$(pg_bin)" ]; then
    echo "installing PostgreSQL (Debian package)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
}

# initdb and postgres refuse to run as root: run them as the package's user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install
  local bin; bin="$(pg_bin)"
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$DATA" -U headrace -A trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
  fi
  if ! as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=on" >/dev/null \
      || { tail -n 30 "$DIR/server.log" >&2; exit 1; }
  fi
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$PORT" -U headrace -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'headrace'" | grep -q 1; then
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U headrace headrace
  fi
  echo "$URL"
}

stop() {
  local bin; bin="$(pg_bin)"
  [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ] || return 0
  as_pg "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
