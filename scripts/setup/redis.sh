#!/usr/bin/env bash
# A real Redis on loopback, from Debian's redis-server package (installed by system-packages.sh).
#   scripts/setup/redis.sh start    start if not running, print a connection URL
#   scripts/setup/redis.sh stop
# Test data only: no snapshots, no append-only file, gone when the server stops.
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

port="${KAI_REDIS_PORT:-16379}"
home="$KAI_CACHE/redis"

start() {
  mkdir -p "$home"
  if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$port" --dir "$home" --save '' --appendonly no \
      --daemonize yes --pidfile "$home/redis.pid" --logfile "$home/redis.log" >/dev/null
    for _ in $(seq 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null
  fi
  echo "redis://127.0.0.1:$port"
}

stop() {
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
