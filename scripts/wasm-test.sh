#!/usr/bin/env bash
# Runs the wasm32 tests under Node: kai-memory's (FlatIndex and the other file-free parts), then
# kai-klp's WebSocket test against a native KLP agent on loopback.
# Node 20 needs --experimental-websocket for a global WebSocket; wasm-bindgen-test-runner comes from
# wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock, built once into the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh

version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)
tools="$KAI_CACHE/tools"
if [[ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $version" ]]; then
  cargo install wasm-bindgen-cli --version "$version" --root "$tools"
fi

wasm_cargo() {
  RUSTFLAGS="-D warnings" RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$KAI_CACHE/target-wasm" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-14 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$tools/bin/wasm-bindgen-test-runner" \
    /usr/bin/cargo "$@" --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
}

wasm_cargo test --locked -p kai-memory --test wasm

cargo build --locked -q -p kai-klp --features websocket --example ws_echo
log=$(mktemp)
"$CARGO_TARGET_DIR/debug/examples/ws_echo" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^listening' "$log" && break
  sleep 0.1
done
read -r _ url did < <(grep '^listening' "$log")

KAI_KLP_WS_URL="$url" KAI_KLP_WS_DID="$did" NODE_OPTIONS=--experimental-websocket \
  wasm_cargo test --locked -p kai-klp --features websocket --test websocket_web
