#!/usr/bin/env bash
# Debian packages the tests need: the wasm toolchain (Debian's rustc ships the std sources that
# -Zbuild-std needs, which rustup cannot add here), lld for linking wasm, valgrind, and bubblewrap for the
# execution worker's sandbox, and redis-server for the Redis job queue.
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

packages=(rustc-web cargo-web rust-web-src lld valgrind bubblewrap redis-server)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages present"
  exit 0
fi
echo "installing: ${missing[*]}"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
