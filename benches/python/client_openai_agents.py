"""The peer-bench scenario with the OpenAI Agents SDK (Chat Completions model, tracing off)."""

from __future__ import annotations

import sys

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from bench_common import measure


@function_tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


if __name__ == "__main__":
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=sys.argv[1], api_key="sk-bench", max_retries=0)
    agent = Agent(
        name="bench",
        instructions="Use the add tool.",
        tools=[add],
        model=OpenAIChatCompletionsModel(model="mock", openai_client=client),
    )
    measure(lambda: str(Runner.run_sync(agent, "What is 2 + 3?").final_output), sys.argv[2:])
