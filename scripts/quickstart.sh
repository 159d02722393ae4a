#!/usr/bin/env bash
# The main job: an agent with tools answering a question, on the local llama.cpp server by default.
#   scripts/quickstart.sh ["question"]        (KAI_MODEL=openai:gpt-4o-mini … to use another provider)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
if [ -z "${KAI_MODEL:-}" ]; then
  KAI_MODEL=$(scripts/setup/llama-server.sh spec)
  export KAI_MODEL
fi
cargo run --quiet --release --locked -p kai-examples --example quickstart -- "$@"
