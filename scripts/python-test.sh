#!/usr/bin/env bash
# The Python package: builds the abi3 wheel with maturin, installs it into a fresh venv (as a user
# would), checks the type stubs against the module and the examples and tests with mypy --strict, and
# runs the pytest suite and the Python examples against it.
#   scripts/python-test.sh [pytest args...]
# KAI_LOCAL_MODEL (a model spec of a running llama.cpp server) enables the test on the real local model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh

source scripts/lib/python-wheel.sh

# The Rust side of the cross-language consent-token test.
cargo build --quiet --locked -p kai-examples --example klp_token
export KAI_KLP_TOKEN="$CARGO_TARGET_DIR/debug/examples/klp_token"

venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$wheel" pytest==9.2.0 pytest-timeout==2.4.0 pydantic==2.14.4 mypy==2.4.1

echo "type stubs against the native module (stubtest), examples and tests (mypy --strict)"
"$venv/bin/python" -m mypy.stubtest --ignore-missing-stub --allowlist bindings/python/stubtest-allowlist.txt kai._kai
"$venv/bin/python" -m mypy --strict --no-incremental --cache-dir=/dev/null bindings/python/tests examples/python

"$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout 120 bindings/python/tests "$@"
"$venv/bin/python" -c "import doctest, sys, kai; sys.exit(doctest.testmod(kai).failed)"

echo "examples/python/offline.py"
offline=$("$venv/bin/python" examples/python/offline.py)
echo "$offline"
grep -qx "Deleted old.txt." <<<"$offline"
if [ -n "${KAI_LOCAL_MODEL:-}" ]; then
  echo "examples/python/quickstart.py on the local model"
  answer=$(KAI_MODEL="$KAI_LOCAL_MODEL" "$venv/bin/python" examples/python/quickstart.py "What is 17 * 23?")
  echo "$answer"
  tail -n 1 <<<"$answer" | grep -Eq '(^|[^0-9])391([^0-9]|$)'
fi
