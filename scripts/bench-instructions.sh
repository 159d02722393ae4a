#!/usr/bin/env bash
# Instruction counts per agent step under callgrind: stable on a noisy machine, unlike wall time.
# Runs the benchmark agent 0 and N times and divides the difference by the 2N steps.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kai/target}"
runs="${1:-2000}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --release -p kai-benches --bin agent_steps
bin="$CARGO_TARGET_DIR/release/agent_steps"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$bin" "$1" 2>"$out/log.$1" >/dev/null
  grep -E '^(summary|totals):' "$out/cg.$1" | head -1 | awk '{print $2}'
}
base=$(count 0)
total=$(count "$runs")
per_step=$(( (total - base) / (2 * runs) ))
echo "agent_step instructions: base=$base total($runs runs)=$total per_step=$per_step"
