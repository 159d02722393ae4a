#!/usr/bin/env bash
# Jaeger (v2, an OpenTelemetry Collector distribution) on loopback as a real OTLP receiver, built with
# `go` from its module on the Go module proxy once per cache.
#   scripts/setup/jaeger.sh start    build if needed, start, print "<OTLP/HTTP endpoint> <query API URL>"
#   scripts/setup/jaeger.sh stop
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

JAEGER_VERSION="v1.75.0"
home="$KAI_CACHE/jaeger"
binary="$home/bin/jaeger-$JAEGER_VERSION"
config="$(cd "$(dirname "$0")" && pwd)/jaeger.yaml"
export KAI_JAEGER_OTLP_PORT="${KAI_JAEGER_OTLP_PORT:-14318}"
export KAI_JAEGER_QUERY_PORT="${KAI_JAEGER_QUERY_PORT:-16687}"
export KAI_JAEGER_GRPC_PORT="${KAI_JAEGER_GRPC_PORT:-16688}"

build() {
  [ -x "$binary" ] && return 0
  echo "building Jaeger $JAEGER_VERSION (once per cache)" >&2
  export GOPATH="$KAI_CACHE/go" GOMODCACHE="$KAI_CACHE/go/mod" GOCACHE="$KAI_CACHE/go/build" GOFLAGS=-mod=mod
  local module="$home/module"
  rm -rf "$module"
  mkdir -p "$module" "$home/bin"
  (
    cd "$module"
    go mod init kai-jaeger >/dev/null 2>&1
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2
    go build -o "$binary.partial" github.com/jaegertracing/jaeger/cmd/jaeger
  )
  mv "$binary.partial" "$binary"
}

ready() {
  curl -sf "http://127.0.0.1:$KAI_JAEGER_QUERY_PORT/api/services" >/dev/null 2>&1
}

start() {
  build
  if ! ready; then
    "$binary" --config "$config" >"$home/jaeger.log" 2>&1 &
    echo $! >"$home/jaeger.pid"
    for _ in $(seq 200); do
      ready && break
      sleep 0.05
    done
    ready || { cat "$home/jaeger.log" >&2; exit 1; }
  fi
  echo "http://127.0.0.1:$KAI_JAEGER_OTLP_PORT http://127.0.0.1:$KAI_JAEGER_QUERY_PORT"
}

stop() {
  [ -f "$home/jaeger.pid" ] || return 0
  kill "$(cat "$home/jaeger.pid")" 2>/dev/null || true
  rm -f "$home/jaeger.pid"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
