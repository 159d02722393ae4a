#!/usr/bin/env bash
# A real PostgreSQL 16 with pgvector on loopback, from the PyPI package pgserver (which ships both).
#   scripts/setup/postgres.sh start    install if needed, start, print a connection URL
#   scripts/setup/postgres.sh stop
# initdb refuses to run as root; as root this script runs the server as the system user `kaipg`, from a
# copy of the binaries under /var/tmp/kai-postgres (a home directory like /root is closed to other users).
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

PGSERVER_VERSION="0.1.4"
venv="$KAI_CACHE/postgres/venv"
data="$KAI_CACHE/postgres/data"
port="${KAI_PG_PORT:-15432}"
owner="$(id -un)"

install() {
  if ! "$venv/bin/python" -c "import pgserver" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "pgserver==$PGSERVER_VERSION"
  fi
}

bin_dir() {
  XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" "$venv/bin/python" -W ignore -c "import pathlib, pgserver; print(next(pathlib.Path(pgserver.__file__).parent.glob('pginstall/bin')))"
}

as_owner() {
  if [ "$owner" = "root" ]; then runuser -u kaipg -- "$@"; else "$@"; fi
}

root_home="/var/tmp/kai-postgres"

# Sets `bin` and `data` for this user: the venv's binaries, or, as root, a copy kaipg can reach.
locate() {
  bin=$(bin_dir)
  if [ "$(id -u)" -eq 0 ]; then
    owner=root
    data="$root_home/data"
    # The binaries find their bundled libraries at $ORIGIN/../../../pgserver.libs: copy both.
    local packages
    packages=$(dirname "$(dirname "$(dirname "$bin")")")
    if [ ! -x "$root_home/site/pgserver/pginstall/bin/postgres" ]; then
      rm -rf "$root_home/site"
      mkdir -p "$root_home/site"
      cp -a "$packages/pgserver" "$packages/pgserver.libs" "$root_home/site/"
    fi
    bin="$root_home/site/pgserver/pginstall/bin"
  fi
}

start() {
  install
  if [ "$(id -u)" -eq 0 ]; then
    id kaipg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin kaipg
  fi
  local bin
  locate
  mkdir -p "$data"
  if [ "$owner" = "root" ]; then
    chown -R kaipg "$root_home"
    chmod 700 "$data"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bin/initdb" --auth=trust --username=kai --encoding=UTF8 -D "$data" >/dev/null
  fi
  if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -w -l "$data/server.log" \
      -o "-h 127.0.0.1 -p $port -k $data" start >/dev/null
  fi
  as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U kai -d postgres -qc "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
  echo "postgres://kai@127.0.0.1:$port/postgres"
}

stop() {
  "$venv/bin/python" -c "import pgserver" 2>/dev/null || return 0
  local bin
  locate
  [ -f "$data/PG_VERSION" ] || return 0
  as_owner "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
