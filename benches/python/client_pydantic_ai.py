"""The peer-bench scenario with PydanticAI (OpenAI Chat model on the loopback provider)."""

from __future__ import annotations

import sys

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from bench_common import measure

if __name__ == "__main__":
    model = OpenAIChatModel("mock", provider=OpenAIProvider(base_url=sys.argv[1], api_key="sk-bench"))
    agent = Agent(model, instructions="Use the add tool.")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    measure(lambda: agent.run_sync("What is 2 + 3?").output, sys.argv[2:])
