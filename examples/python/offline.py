"""A tour of the Python API that runs offline on the scripted test model: tools, streaming,
structured output into a dataclass, and an approval resumed from JSON.

    python examples/python/offline.py
"""

from __future__ import annotations

import asyncio
import dataclasses

import kai
from kai.testing import ScriptedModel, tool_call


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


async def weather(city: str) -> str:
    """The current weather in a city."""
    await asyncio.sleep(0.01)
    return f"sunny in {city}"


@dataclasses.dataclass
class City:
    name: str
    population: int


def delete_file(path: str) -> str:
    """Deletes a file."""
    return f"deleted {path}"


async def main() -> None:
    # Tools, sync and async, and the run's events as they happen.
    model = ScriptedModel([tool_call("weather", city="Oslo"), "It is sunny in Oslo."])
    agent = kai.Agent(model, instructions="Answer with the tools.", tools=[add, weather])
    async for event in agent.stream("How is the weather in Oslo?"):
        if isinstance(event, kai.ToolCallStarted):
            print(f"calling {event.call.name} with {event.call.args}")
        elif isinstance(event, kai.ToolCallFinished):
            print(f"got {event.result.content!r}")
        elif isinstance(event, kai.Finished):
            print(f"answer: {event.result.answer} ({event.result.usage.total_tokens} tokens)")

    # Structured output into a dataclass.
    model = ScriptedModel(['{"name": "Oslo", "population": 709000}'])
    city = (await kai.Agent(model, output_type=City).run("Largest city of Norway?")).output
    print(f"{city.name} has {city.population} people")

    # A call that needs approval: the run stops, its state goes to JSON and comes back approved.
    model = ScriptedModel([tool_call("delete_file", path="old.txt"), "Deleted old.txt."])
    agent = kai.Agent(model, tools=[delete_file], needs_approval={"delete_file": "deletes files"})
    try:
        await agent.run("Delete old.txt")
    except kai.ApprovalRequired as pending:
        stored = pending.state.to_json()
        state = kai.RunState.from_json(stored)
        for approval in state.pending_approvals:
            print(f"approving {approval['call']['name']}: {approval['reason']}")
        state.approve_all()
        print((await agent.run(state)).output)


if __name__ == "__main__":
    asyncio.run(main())
