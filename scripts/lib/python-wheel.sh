# Builds the `kai` wheel (release, abi3) into $KAI_CACHE/python/dist and sets `wheel` to its path.
# Source it after scripts/lib/env.sh; do not run it.
MATURIN_VERSION=1.13.0
kai_python_tools="$KAI_CACHE/python/tools"
if ! "$kai_python_tools/bin/maturin" --version 2>/dev/null | grep -q "$MATURIN_VERSION"; then
  rm -rf "$kai_python_tools"
  python3 -m venv "$kai_python_tools"
  "$kai_python_tools/bin/pip" install --quiet "maturin==$MATURIN_VERSION"
fi
kai_python_dist="$KAI_CACHE/python/dist"
rm -rf "$kai_python_dist"
"$kai_python_tools/bin/maturin" build --quiet --release --strip --locked \
  --manifest-path bindings/python/Cargo.toml --out "$kai_python_dist"
wheel=$(ls "$kai_python_dist"/kai_sdk-*-abi3-*.whl)
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
