#!/usr/bin/env bash
# The Python peer bench: one scenario (an agent with one tool; per run, the loopback mock server asks for
# the tool, then answers: two model calls) through kai and through the OpenAI Agents SDK, PydanticAI,
# LangGraph and Agno, each in a venv of its own. Prints client CPU per step, wall time per run and cold
# start (a new interpreter importing the framework and finishing one run), with ratios to kai.
#   scripts/bench-python-peers.sh [runs per batch, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh
runs=${1:-200}

peers="$KAI_CACHE/python/peers"
mkdir -p "$peers"
install() {
  local name=$1 check=$2
  shift 2
  if ! "$peers/$name/bin/python" -c "import $check" 2>/dev/null; then
    rm -rf "${peers:?}/$name"
    python3 -m venv "$peers/$name"
    "$peers/$name/bin/pip" install --quiet "$@"
  fi
}
install openai-agents agents "openai-agents==0.24.0"
install pydantic-ai pydantic_ai "pydantic-ai-slim[openai]==2.78.0"
install langgraph "langgraph, langchain_openai" "langgraph==1.2.24" "langchain-openai==1.8.1"
install agno agno "agno==3.1.10" "openai==3.63.0"

source scripts/lib/python-wheel.sh
rm -rf "${peers:?}/kai"
python3 -m venv "$peers/kai"
"$peers/kai/bin/pip" install --quiet "$wheel"

port=18556
python3 benches/python/mock_openai.py "$port" &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1])" "http://127.0.0.1:$port/v1/models" 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/v1"

cd benches/python
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(python3 --version); runs per batch: $runs"
printf '%-14s %16s %16s %16s\n' framework "CPU per step" "wall per run" "cold start"
results=()
for framework in kai openai-agents pydantic-ai langgraph agno; do
  client="client_${framework//-/_}.py"
  python="$peers/$framework/bin/python"
  measured=$("$python" "$client" "$url" "$runs")
  cold=$("$python" - "$python" "$client" "$url" <<'PY'
import statistics, subprocess, sys, time
python, client, url = sys.argv[1:4]
times = []
for _ in range(5):
    start = time.perf_counter()
    subprocess.run([python, client, url, "--once"], check=True, capture_output=True)
    times.append((time.perf_counter() - start) * 1e3)
print(statistics.median(times))
PY
)
  read -r cpu wall < <(python3 -c "import json, sys; d = json.loads(sys.argv[1]); print(d['cpu_us_per_run'] / 2, d['wall_us_per_run'])" "$measured")
  results+=("$framework $cpu $wall $cold")
  printf '%-14s %13.1f µs %13.1f µs %13.1f ms\n' "$framework" "$cpu" "$wall" "$cold"
done
echo
echo "ratios to kai (CPU per step, cold start):"
read -r _ kai_cpu _ kai_cold <<<"${results[0]}"
for line in "${results[@]:1}"; do
  read -r name cpu _ cold <<<"$line"
  python3 -c "import sys; n, c, k, co, kc = sys.argv[1:]; print(f'{n:14s} {float(c)/float(k):6.1f}x CPU  {float(co)/float(kc):6.1f}x cold start')" \
    "$name" "$cpu" "$kai_cpu" "$cold" "$kai_cold"
done
