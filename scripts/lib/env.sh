# Shared environment for the project's scripts. Source it; do not run it.
export KAI_CACHE="${KAI_CACHE:-$HOME/.cache/kai}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KAI_CACHE/target}"
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
mkdir -p "$KAI_CACHE"

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
