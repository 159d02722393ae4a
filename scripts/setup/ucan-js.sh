#!/usr/bin/env bash
# Installs the UCAN implementation kai-klp is tested against (@ucans/ucans, pinned by
# kai-klp/tests/ucan/package-lock.json) into the cache, once per lock file, and prints its
# node_modules directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/env.sh
source scripts/lib/npm-peer.sh

install_npm_peer kai-klp/tests/ucan ucan
