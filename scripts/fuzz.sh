#!/usr/bin/env bash
# Runs each fuzz target (SSE, NDJSON, tool-call assembly, provider error and stream parsing, KLP decoding, KLP session frames, index and vault files) for a while (default 20 s each; first argument overrides).
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
seconds="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$KAI_CACHE/target-fuzz"
corpus="$KAI_CACHE/fuzz-corpus"
for target in sse ndjson tool_call_assembly provider_responses klp_decode klp_session_frames memory_files; do
  mkdir -p "$corpus/$target"
  cargo fuzz run --fuzz-dir fuzz "$target" "$corpus/$target" -- -max_total_time="$seconds" -max_len=4096 2>&1 | tail -n 3
done
