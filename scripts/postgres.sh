#!/usr/bin/env bash
# A throw-away local PostgreSQL server for tests (Debian's postgresql package; no Docker).
# usage: scripts/postgres.sh start|stop|status|url     env: PG_DIR (.pg, see default_pg_dir) PG_PORT (55432)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PG_PORT=${PG_PORT:-55432}

# As root the server runs as the postgres user, which must reach its data folder. A clone in a
# private folder (`git clone . "$(mktemp -d)/driftloop"`: mktemp makes it 0700) is not
# reachable, so the data then lives in /var/tmp/driftloop-pg-<hash of the clone's path>
# (owned by postgres; the same path for start, stop and status). PG_DIR set: used as it is.
reachable_by_postgres() {
  [ "$(id -u)" != 0 ] && return 0
  id postgres >/dev/null 2>&1 || return 0     # not installed yet: decided again after installing
  runuser -u postgres -- test -x "$1"
}

default_pg_dir() {
  if reachable_by_postgres "$ROOT"; then echo "$ROOT/.pg"; return; fi
  echo "/var/tmp/driftloop-pg-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
}
URL="postgresql://driftloop@127.0.0.1:${PG_PORT}/driftloop"

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do [ -x "$b/pg_ctl" ] && { echo "$b"; return 0; }; done
  return 1
}

as_pg() {  # the server refuses to run as root: run it as the postgres user when we are root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_installed() {
  if ! find_bin >/dev/null; then
    echo "postgres.sh: installing Debian's postgresql package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

cmd=${1:-status}
case "$cmd" in
  start)
    ensure_installed
    PG_DIR=${PG_DIR:-$(default_pg_dir)}
    BIN=$(find_bin)
    mkdir -p "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { echo "postgres.sh: server did not start:" >&2; tail -20 "$PG_DIR/server.log" >&2; exit 1; }
    fi
    psql_() { as_pg psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAq "$@"; }
    psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='driftloop'" | grep -q 1 || psql_ -c "CREATE ROLE driftloop LOGIN SUPERUSER"
    psql_ -c "SELECT 1 FROM pg_database WHERE datname='driftloop'" | grep -q 1 || psql_ -c "CREATE DATABASE driftloop OWNER driftloop"
    echo "postgres.sh: ready: $URL" >&2
    ;;
  stop)
    BIN=$(find_bin) || exit 0
    PG_DIR=${PG_DIR:-$(default_pg_dir)}
    [ -f "$PG_DIR/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  status)
    BIN=$(find_bin) || exit 1
    PG_DIR=${PG_DIR:-$(default_pg_dir)}
    as_pg "$BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
    ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
