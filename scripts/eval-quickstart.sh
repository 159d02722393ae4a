#!/usr/bin/env bash
# How often the main job answers right: the quickstart agent on the fixed questions of
# examples/quickstart_eval.json (arithmetic, listing and reading the notes), printing each answer and
# how many were right. On the local llama.cpp server by default.
#   scripts/eval-quickstart.sh [--min N]      fails if fewer than N are right
#   KAI_MODEL=openai:gpt-4o-mini scripts/eval-quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
if [ -z "${KAI_MODEL:-}" ]; then
  KAI_MODEL=$(scripts/setup/llama-server.sh spec)
  export KAI_MODEL
fi
cargo run --quiet --release --locked -p kai-examples --example quickstart -- --eval examples/quickstart_eval.json "$@"
