#!/usr/bin/env bash
# A real PostgreSQL on loopback, for the call history's PostgreSQL setting
# (FIRSTWORD_CALL_HISTORY_URL) in the tests and for trying it by hand.
#   scripts/postgres.sh start   a cluster of its own on 127.0.0.1:$POSTGRES_PORT (default 5433),
#                               with a database and a user `firstword`; prints its URL
#   scripts/postgres.sh stop    stop the one this script started on that port
#   scripts/postgres.sh url     the URL to give FIRSTWORD_CALL_HISTORY_URL
# PostgreSQL comes from the Debian packages (installed here if missing). The cluster trusts
# connections from 127.0.0.1 without a password: it is for this machine's tests, not a
# production database (give that one a password in the URL, or a client certificate).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${POSTGRES_PORT:-5433}"
# Its data under /tmp: as root it runs as `postgres`, which cannot reach into root's folders
# (pytest's temporary folders are 0700).
STATE="/tmp/firstword-postgres-$PORT"
URL="postgresql+psycopg://firstword@127.0.0.1:$PORT/firstword"

bin_dir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$dir" ]] || { echo "postgres.sh: no /usr/lib/postgresql/*/bin after installing" >&2; exit 1; }
  echo "$dir"
}

# PostgreSQL refuses to run as root: as root (CI, containers) it runs as the `postgres` user
# the package creates.
as_owner() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

answers() { "$(bin_dir)/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

start_postgres() {
  "$ROOT/scripts/os-packages.sh" postgresql
  local bin
  bin="$(bin_dir)"
  if answers; then
    echo "postgres already answers on 127.0.0.1:$PORT: $URL"
    return 0
  fi
  mkdir -p "$STATE"
  if [[ $(id -u) == 0 ]]; then
    chown postgres "$STATE"
    chmod 700 "$STATE"
  fi
  if [[ ! -f "$STATE/data/PG_VERSION" ]]; then
    as_owner "$bin/initdb" -D "$STATE/data" -U firstword --auth=trust -E UTF8 >"$STATE/initdb.log" 2>&1 \
      || { echo "initdb failed; log: $STATE/initdb.log" >&2; exit 1; }
  fi
  as_owner "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/postgres.log" -w -t 30 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $STATE -c fsync=off" start >/dev/null \
    || { echo "postgres did not start on port $PORT; log: $STATE/postgres.log" >&2; exit 1; }
  if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PORT" -U firstword -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'firstword'" | grep -q 1; then
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U firstword firstword
  fi
  echo "postgres started on 127.0.0.1:$PORT (log: $STATE/postgres.log): $URL"
}

stop_postgres() {
  if [[ -f "$STATE/data/postmaster.pid" ]]; then
    as_owner "$(bin_dir)/pg_ctl" -D "$STATE/data" -m fast -w -t 30 stop >/dev/null || true
  fi
}

case "${1:-}" in
  start) start_postgres ;;
  stop) stop_postgres ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
