"""What kai costs a Python program, on the scripted model (no network, no model):

- cold start: a new interpreter importing kai, building an agent and finishing one run;
- one agent step (a model call answered by the scripted model), in process CPU time (all threads);
- one Python tool call from the Rust loop, sync and async: a run whose step calls the tool, beside the
  same run whose call names a tool that does not exist (the same two steps and messages, no Python).

    python benches/python/kai_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Callable, List

import kai
from kai.testing import ScriptedModel, tool_call


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


async def add_async(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


def cpu_per_run(make_run: Callable[[], None], runs: int) -> float:
    """Median CPU microseconds per run over five batches of `runs`."""
    make_run()  # warm up
    batches = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(runs):
            make_run()
        batches.append((time.process_time() - start) / runs * 1e6)
    return statistics.median(batches)


def cold_start(samples: int) -> float:
    """Median wall milliseconds for a new interpreter to import kai and finish one run."""
    script = (
        "import kai\n"
        "from kai.testing import ScriptedModel\n"
        "kai.Agent(ScriptedModel(['hi'])).run_sync('hi')\n"
    )
    times: List[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def interpreter_start(samples: int) -> float:
    """Median wall milliseconds for a new interpreter doing nothing, the floor under cold start."""
    times: List[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    runs = parser.parse_args().runs

    one_step = kai.Agent(ScriptedModel(["done"], repeat=True, record_requests=False))
    step_us = cpu_per_run(lambda: one_step.run_sync("hi"), runs)

    call = tool_call("add", a=2, b=3)
    missing = tool_call("no_such_tool", a=2, b=3)
    baseline = kai.Agent(ScriptedModel([missing, "5"], repeat=True, record_requests=False), tools=[add])
    sync_tool = kai.Agent(ScriptedModel([call, "5"], repeat=True, record_requests=False), tools=[add])
    async_tool = kai.Agent(ScriptedModel([tool_call("add_async", a=2, b=3), "5"], repeat=True, record_requests=False), tools=[add_async])
    baseline_us = cpu_per_run(lambda: baseline.run_sync("2 + 3?"), runs)
    sync_us = cpu_per_run(lambda: sync_tool.run_sync("2 + 3?"), runs)

    async def awaited_cpu_per_run(agent: kai.Agent[str]) -> float:
        """`cpu_per_run` for `await agent.run(...)` inside one event loop."""
        await agent.run("2 + 3?")
        batches = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(runs):
                await agent.run("2 + 3?")
            batches.append((time.process_time() - start) / runs * 1e6)
        return statistics.median(batches)

    async_us = asyncio.run(awaited_cpu_per_run(async_tool))
    async_baseline_us = asyncio.run(awaited_cpu_per_run(baseline))

    cold_ms = cold_start(10)
    floor_ms = interpreter_start(10)

    print(f"one agent step (run_sync, scripted model):     {step_us:8.1f} us CPU")
    print(f"two steps, call of a missing tool (run_sync):  {baseline_us:8.1f} us CPU")
    print(f"two steps, call of a sync Python tool:         {sync_us:8.1f} us CPU  (tool call: {sync_us - baseline_us:+.1f} us)")
    print(f"two steps, call of a missing tool (await run): {async_baseline_us:8.1f} us CPU")
    print(f"two steps, call of an async Python tool:       {async_us:8.1f} us CPU  (tool call: {async_us - async_baseline_us:+.1f} us)")
    print(f"cold start (import, agent, one run):           {cold_ms:8.1f} ms wall (interpreter alone: {floor_ms:.1f} ms)")


if __name__ == "__main__":
    main()
