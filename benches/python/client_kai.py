"""The peer-bench scenario with kai: an agent with one tool, two steps per run, against the loopback mock."""

from __future__ import annotations

import sys

import kai

from bench_common import measure


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


def make_agent(base_url: str) -> kai.Agent[str]:
    model = kai.Model("openai:mock", base_url=base_url, api_key="sk-bench", max_retries=0)
    return kai.Agent(model, instructions="Use the add tool.", tools=[add])


if __name__ == "__main__":
    base_url = sys.argv[1]
    agent = make_agent(base_url)
    measure(lambda: agent.run_sync("What is 2 + 3?").output, sys.argv[2:])
