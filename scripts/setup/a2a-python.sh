#!/usr/bin/env bash
# The official A2A Python SDK (`a2a-sdk` from PyPI) in a venv of its own, made once per cache: the
# peer the A2A interop tests talk to. Prints the venv's python.
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

A2A_SDK_VERSION="1.3.0"
venv="$KAI_CACHE/a2a-python/venv-$A2A_SDK_VERSION"
if ! "$venv/bin/python" -c "import a2a.client, a2a.server, uvicorn" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "a2a-sdk[http-server]==$A2A_SDK_VERSION" "uvicorn==0.38.0" >&2
fi
echo "$venv/bin/python"
