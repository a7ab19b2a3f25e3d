#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the tests and bench/chaos.py.
#
#   scripts/postgres.sh start DIR   initdb into DIR (created), start the server, print its URL
#   scripts/postgres.sh stop DIR    stop the server and delete DIR
#
# The server listens on 127.0.0.1 only, on a free port, with its unix socket inside DIR, trust
# authentication for the superuser `postgres`, and fsync off (its data is thrown away). As root
# it runs as the `postgres` user (initdb refuses root). Binaries: $PG_BIN, else the newest
# /usr/lib/postgresql/*/bin (Debian's `postgresql` package), else initdb on the PATH.
set -euo pipefail

pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    echo "$PG_BIN"
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ]; then
      echo "$d"
      return
    fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  echo "error: no PostgreSQL binaries (initdb): apt-get install postgresql, or set PG_BIN" >&2
  exit 2
}

# Run a server binary as the owner of the data: `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 bin port
  bin=$(pg_bin)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "error: user postgres cannot reach $dir (a parent folder is private); start it under /tmp" >&2
      exit 2
    fi
  fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql://postgres@127.0.0.1:$port/postgres" | tee "$dir/url"
}

stop() {
  local dir=$1
  if [ ! -e "$dir" ]; then
    return
  fi
  # Only a folder `start` made is deleted (it wrote initdb.log first).
  if [ ! -f "$dir/initdb.log" ]; then
    echo "error: $dir is not a folder that scripts/postgres.sh start made; not deleting it" >&2
    exit 2
  fi
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:?usage: scripts/postgres.sh start DIR}" ;;
  stop) stop "${2:?usage: scripts/postgres.sh stop DIR}" ;;
  *)
    echo "usage: scripts/postgres.sh start DIR | stop DIR" >&2
    exit 2
    ;;
esac
