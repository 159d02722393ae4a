#!/usr/bin/env bash
# Builds the crates that must run in browsers and on Node for wasm32-unknown-unknown.
# Uses Debian's rustc (it carries the std sources for -Zbuild-std) with its own target directory, so
# the two toolchains never share a cache.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
crates=(kai-core kai-providers kai-memory kai-klp)
args=()
for crate in "${crates[@]}"; do args+=(-p "$crate"); done
RUSTFLAGS="-D warnings" RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$KAI_CACHE/target-wasm" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-14 \
  /usr/bin/cargo build --locked --release "${args[@]}" --features kai-klp/websocket --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
echo "wasm32 build ok: ${crates[*]}"
