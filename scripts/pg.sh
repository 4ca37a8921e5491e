#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for tests.
#   scripts/pg.sh start DIR PORT   initdb and start; TCP connections need a password
#                                  (user postgres, password $PGTEST_PASSWORD, default
#                                  postgres-test-pw), the unix socket in DIR is trusted
#   scripts/pg.sh stop DIR         stop it fast; fails unless it is down afterwards
# Runs the server as the postgres user when invoked as root.
set -euo pipefail
cmd=$1 dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$1"; else bash -c "$1"; fi; }
case "$cmd" in
  start)
    port=$3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      echo "${PGTEST_PASSWORD:-postgres-test-pw}" >"$dir/pwfile"
      [ "$(id -u)" = 0 ] && chown postgres "$dir/pwfile"
      as_pg "$bin/initdb -D '$dir/data' -U postgres --pwfile='$dir/pwfile' --auth-local=trust --auth-host=scram-sha-256 >'$dir/initdb.log' 2>&1"
      rm -f "$dir/pwfile"
    fi
    as_pg "$bin/pg_ctl -D '$dir/data' -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=200\" -l '$dir/log' -w -t 120 start >/dev/null"
    ;;
  stop)
    # Nothing to stop when it never started or was stopped already; otherwise
    # the server must really be down when this returns (an outage test relies
    # on it), so a failed stop fails.
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    as_pg "$bin/pg_ctl -D '$dir/data' -m fast -w -t 120 stop >/dev/null"
    ! as_pg "$bin/pg_ctl -D '$dir/data' status >/dev/null" || { echo "PostgreSQL in $dir is still running" >&2; exit 1; }
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
