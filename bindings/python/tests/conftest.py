"""Shared helpers of the kai test suite."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Dict, List, TypeVar

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
