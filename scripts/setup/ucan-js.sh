#!/usr/bin/env bash
# Installs the UCAN implementation kai-klp is tested against (@ucans/ucans, pinned by
# kai-klp/tests/ucan/package-lock.json) into the cache, once per lock file, and prints its
# node_modules directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/env.sh

peer=kai-klp/tests/ucan
dir="$KAI_CACHE/node/ucan-$(cat "$peer/package.json" "$peer/package-lock.json" | sha256sum | cut -c1-16)"
if [ ! -f "$dir/installed" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$peer/package.json" "$peer/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  touch "$dir/installed"
fi
echo "$dir/node_modules"
