"""The peer-bench scenario with Agno (OpenAILike model on the loopback server, telemetry off)."""

from __future__ import annotations

import os
import sys

os.environ["AGNO_TELEMETRY"] = "false"

from agno.agent import Agent  # noqa: E402 (telemetry is read at import)
from agno.models.openai import OpenAILike  # noqa: E402

from bench_common import measure  # noqa: E402


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


if __name__ == "__main__":
    model = OpenAILike(id="mock", base_url=sys.argv[1], api_key="sk-bench", max_retries=0)
    agent = Agent(model=model, instructions="Use the add tool.", tools=[add], telemetry=False)
    measure(lambda: str(agent.run("What is 2 + 3?").content), sys.argv[2:])
