# Installs an npm peer (a directory holding package.json and package-lock.json) into the cache, once
# per lock file, and prints its node_modules directory. Source it; call `install_npm_peer <dir> <name>`.
install_npm_peer() {
  local peer=$1 name=$2
  local dir
  dir="$KAI_CACHE/node/$name-$(cat "$peer/package.json" "$peer/package-lock.json" | sha256sum | cut -c1-16)"
  if [ ! -f "$dir/installed" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$peer/package.json" "$peer/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$dir/installed"
  fi
  echo "$dir/node_modules"
}
