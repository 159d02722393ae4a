#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs on a fresh Debian 12 machine.
#   scripts/test.sh            everything
# Caches live outside the clone ($KAI_CACHE, default ~/.cache/kai) so reruns are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
# A test run rebuilds from scratch or from the cache, never from incremental state, which only grows.
export CARGO_INCREMENTAL=0
# Artifacts of every earlier build pile up in the shared target directory; past a bound it starts over
# (one cold build) rather than fill the disk.
if [ -d "$CARGO_TARGET_DIR/debug" ] && [ "$(du -sm "$CARGO_TARGET_DIR/debug" | cut -f1)" -gt 20000 ]; then
  echo "the build cache is over 20 GB: clearing $CARGO_TARGET_DIR/debug"
  rm -rf "$CARGO_TARGET_DIR/debug"
fi

# Each stage's wall time is printed when the next one starts, so a slow stage shows the day it arrives.
stage=""
stage_started=$SECONDS
step() {
  if [ -n "$stage" ]; then printf '    [%s: %d s]\n' "$stage" $((SECONDS - stage_started)); fi
  stage="$*"
  stage_started=$SECONDS
  printf '\n==> %s\n' "$*"
}

step "system packages"
scripts/setup/system-packages.sh

step "real servers and peers for the tests: llama.cpp (Qwen2.5-Coder-1.5B), PostgreSQL + pgvector, Redis, Jaeger (OTLP), the A2A Python SDK"
trap 'scripts/setup/llama-server.sh stop; scripts/setup/postgres.sh stop; scripts/setup/redis.sh stop; scripts/setup/jaeger.sh stop' EXIT
KAI_LLAMA_URL=$(scripts/setup/llama-server.sh start)
KAI_PG_URL=$(scripts/setup/postgres.sh start)
KAI_REDIS_URL=$(scripts/setup/redis.sh start)
jaeger_urls=$(scripts/setup/jaeger.sh start)
read -r KAI_OTLP_ENDPOINT KAI_JAEGER_URL <<<"$jaeger_urls"
KAI_A2A_PYTHON=$(scripts/setup/a2a-python.sh)
export KAI_LLAMA_URL KAI_PG_URL KAI_REDIS_URL KAI_OTLP_ENDPOINT KAI_JAEGER_URL KAI_A2A_PYTHON

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests (unit, integration, doc)"
cargo test --workspace --all-features --locked

local_model=$(scripts/setup/llama-server.sh spec)

step "the main job: scripts/quickstart.sh on the local model, whose answer must be right"
# The answer is the text after the last tool result, without the closing summary line.
main_job_output=$(mktemp)
KAI_MODEL="$local_model" scripts/quickstart.sh "What is 17 * 23?" |
  tee "$main_job_output"
awk '/^(←|✗) / { answer = ""; next } !/^\[/ { answer = answer $0 }
  END { if (answer !~ /(^|[^0-9])391([^0-9]|$)/) { print "the main job answered wrong" > "/dev/stderr"; exit 1 } }' \
  "$main_job_output"
rm -f "$main_job_output"

step "the main job on 20 questions: at least 16 answered right (scripts/eval-quickstart.sh)"
KAI_MODEL="$local_model" scripts/eval-quickstart.sh --min 16

step "Python: the wheel in a fresh venv, stubs and mypy --strict, pytest, examples/python (scripts/python-test.sh)"
KAI_LOCAL_MODEL="$local_model" scripts/python-test.sh

step "examples: 100 concurrent runs on a multi-threaded runtime"
cargo run --locked -q -p kai-examples --example many_runs

step "examples: an agent calls another over KLP, on TCP and on WebSocket"
cargo run --locked -q -p kai-examples --example klp_call

step "examples: two processes talking A2A (an agent served, another calling it as a tool)"
cargo run --locked -q -p kai-examples --example a2a

step "examples: RAG end to end (store, ingestion, retrieval, the retrieval tool in an agent)"
cargo run --locked -q -p kai-examples --example rag

step "examples: metrics served to Prometheus (agent runs and jobs, scraped over HTTP)"
cargo run --locked -q -p kai-examples --example metrics

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

step "crates.io packages: each published crate packs and builds from its package alone"
# Cargo unpacks each packed crate into its registry sources, and builds it, under its name and version,
# and takes an unpacked or built copy of the same version as current. Drop ours, sources and builds (in a
# target directory of the packing's own), so the check builds the crates as they are now.
package_target="$KAI_CACHE/target-package"
for crate in kai-macros kai-core kai-providers kai-memory kai-klp kai-exec kai-jobs; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate"-[0-9]* \
    "$package_target"/debug/.fingerprint/"$crate"-* "$package_target"/debug/build/"$crate"-* \
    "$package_target"/debug/deps/lib"${crate//-/_}"-* "$package_target"/debug/deps/"${crate//-/_}"-*
done
rm -rf "$package_target/package"
CARGO_TARGET_DIR="$package_target" cargo package --workspace --exclude kai-benches --exclude kai-examples --exclude kai-python --locked --allow-dirty

step "wasm32 build"
scripts/wasm-check.sh

step "wasm32 under Node: a KLP session over WebSocket to a native agent"
scripts/wasm-test.sh

step "fuzz smoke (SSE, NDJSON, tool-call assembly, provider responses, KLP decoding, KLP session frames, index and vault files)"
scripts/fuzz.sh 10

step "instruction counts per agent step (callgrind)"
scripts/bench-instructions.sh 500

step "done"
printf '\nall checks passed in %d s\n' "$SECONDS"
