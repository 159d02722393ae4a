#!/usr/bin/env bash
# kAI's HnswIndex beside hnswlib (PyPI) on the same data, parameters and threads, in one run.
#   scripts/bench-ann.sh [compare.py options]      e.g. --n 100000 --dims 128 --metric l2
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
venv="$KAI_CACHE/bench-venv"
if ! "$venv/bin/python" -c "import hnswlib, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "numpy<3" "hnswlib==0.8.0"
fi
cargo build --quiet --release --locked -p kai-benches --bin ann_compare
"$venv/bin/python" benches/ann/compare.py --binary "$CARGO_TARGET_DIR/release/ann_compare" "$@"
