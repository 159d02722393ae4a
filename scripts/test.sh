#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs on a fresh Debian 12 machine.
#   scripts/test.sh            everything
# Caches live outside the clone ($KAI_CACHE, default ~/.cache/kai) so reruns are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
scripts/setup/system-packages.sh

step "llama.cpp server (SmolLM2) and PostgreSQL + pgvector for the real-server tests"
trap 'scripts/setup/llama-server.sh stop; scripts/setup/postgres.sh stop' EXIT
KAI_LLAMA_URL=$(scripts/setup/llama-server.sh start)
KAI_PG_URL=$(scripts/setup/postgres.sh start)
export KAI_LLAMA_URL KAI_PG_URL

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests (unit, integration, doc)"
cargo test --workspace --all-features --locked

step "the main job: scripts/quickstart.sh on the local model"
KAI_MODEL="llamacpp:smollm2@$KAI_LLAMA_URL" scripts/quickstart.sh "What is 17 * 23?"

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

step "wasm32 build"
scripts/wasm-check.sh

step "wasm32 under Node: a KLP session over WebSocket to a native agent"
scripts/wasm-test.sh

step "fuzz smoke (SSE, NDJSON, tool-call assembly, KLP decoding, KLP session frames)"
scripts/fuzz.sh 10

step "instruction counts per agent step (callgrind)"
scripts/bench-instructions.sh 500

printf '\nall checks passed\n'
