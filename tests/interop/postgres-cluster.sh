#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests of the PostgreSQL backend.
#
# Usage:
#   tests/interop/postgres-cluster.sh start DIR [PORT]
#       initdb in DIR (as a non-root user: PostgreSQL refuses root), start
#       the server on 127.0.0.1:PORT (default 55433, socket in DIR), create
#       the database `tocsin_test`, and print its URL on stdout, the one to
#       put in TOCSIN_TEST_POSTGRES_URL.
#   tests/interop/postgres-cluster.sh stop DIR
#       stop the server and remove DIR.
#
# Debian's postgresql package is expected (binaries in
# /usr/lib/postgresql/*/bin; PG_BIN overrides). Run as root, the cluster
# belongs to the user `pgtest`, created if missing.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
port="${3:-55433}"
[[ -n "$cmd" && -n "$dir" ]] || {
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
}

if [[ -z "${PG_BIN:-}" ]]; then
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
fi
[[ -x "$PG_BIN/initdb" ]] || {
    echo "no PostgreSQL binaries (install Debian's postgresql, or set PG_BIN)" >&2
    exit 1
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        id pgtest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pgtest
        runuser -u pgtest -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    mkdir -p "$dir"
    [[ $(id -u) -eq 0 ]] && { id pgtest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pgtest; chown pgtest "$dir"; }
    chmod 700 "$dir"
    as_owner "$PG_BIN/initdb" -D "$dir/data" -U tocsin --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # fsync stays on: the tests check durability, not just SQL.
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || {
        cat "$dir/server.log" >&2
        exit 1
    }
    as_owner "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U tocsin tocsin_test
    echo "postgres://tocsin@127.0.0.1:$port/tocsin_test"
    ;;
stop)
    if [[ -d "$dir/data" ]]; then
        as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
