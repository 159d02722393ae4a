"""Shared helpers of the kai test suite."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, List, TypeVar

from kai.testing import ScriptedModel

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    """Runs a coroutine on a fresh event loop (the suite needs no pytest plugin for asyncio)."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def tool_results(model: ScriptedModel) -> List[Dict[str, Any]]:
    """The tool results the model saw in its last request, in the order they were listed."""
    messages = model.requests()[-1]["messages"]
    return [part for message in messages for part in message["content"] if part["type"] == "tool_result"]


class SlowTool:
    """A coroutine tool `slow` that waits 30 s, recording in `outcome` whether it was cancelled."""

    def __init__(self) -> None:
        self.outcome: List[str] = []
        self.started = asyncio.Event()

    @property
    def tool(self) -> Callable[[], Awaitable[str]]:
        async def slow() -> str:
            """Works slowly."""
            self.started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.outcome.append("cancelled")
                raise
            self.outcome.append("finished")
            return "done"

        return slow

    async def settled(self) -> None:
        """Waits up to a second for the tool to record how it ended."""
        for _ in range(100):
            if self.outcome:
                return
            await asyncio.sleep(0.01)
