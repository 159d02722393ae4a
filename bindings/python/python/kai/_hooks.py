"""Hooks: Python code that sees every tool call of an agent and decides what happens to it."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any, Awaitable, Dict, Optional, Union

from kai import _kai
from kai._events import ToolCall, ToolResult

__all__ = ["Hook", "Allow", "Deny", "Rewrite", "RequireApproval", "Decision", "native_hook"]


@dataclasses.dataclass(frozen=True)
class Allow:
    """Run the call as it is."""


@dataclasses.dataclass(frozen=True)
class Deny:
    """Do not run the call; the model sees ``reason`` as its error."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """Run the call with these arguments instead (they are checked against the tool's schema)."""

    arguments: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RequireApproval:
    """Hold the call until a human approves it: the run raises ``kai.ApprovalRequired``."""

    reason: str


Decision = Union[Allow, Deny, Rewrite, RequireApproval]


class Hook:
    """Subclass and override ``before_tool`` and/or ``after_tool``, as plain or ``async`` methods.

    ``before_tool`` returns a ``Decision`` (``None`` allows the call); ``after_tool`` returns new text
    for the result the model sees (``None`` keeps it). A hook that raises denies the call, or turns its
    result into an error: hooks fail closed.
    """

    def before_tool(self, call: ToolCall) -> Union[Optional[Decision], Awaitable[Optional[Decision]]]:
        """Decides on a tool call before it runs."""
        return None

    def after_tool(self, call: ToolCall, result: ToolResult) -> Union[Optional[str], Awaitable[Optional[str]]]:
        """Sees (and may rewrite) a tool call's result."""
        return None


def _decision(decision: Optional[Decision]) -> Optional[Dict[str, Any]]:
    if decision is None or isinstance(decision, Allow):
        return None
    if isinstance(decision, Deny):
        return {"decision": "deny", "reason": decision.reason}
    if isinstance(decision, Rewrite):
        return {"decision": "rewrite", "arguments": decision.arguments}
    if isinstance(decision, RequireApproval):
        return {"decision": "require_approval", "reason": decision.reason}
    raise TypeError(f"before_tool returned {decision!r}, not a kai decision or None")


def _call(data: Dict[str, Any]) -> ToolCall:
    return ToolCall(data["id"], data["name"], json.dumps(data["arguments"]))


def native_hook(hook: Hook) -> _kai.Hook:
    """The native hook running a ``Hook``'s overridden methods."""
    if not isinstance(hook, Hook):
        raise TypeError(f"{hook!r} is not a kai.Hook")
    # Looked up on the instance, so a method set on it counts as well as one overridden by a subclass.
    before_method = hook.before_tool
    after_method = hook.after_tool
    before = getattr(before_method, "__func__", None) is not Hook.before_tool
    after = getattr(after_method, "__func__", None) is not Hook.after_tool
    before_async = inspect.iscoroutinefunction(before_method)
    after_async = inspect.iscoroutinefunction(after_method)

    def before_tool(call: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        return _decision(before_method(_call(call)))  # type: ignore[arg-type]

    async def before_tool_async(call: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        return _decision(await before_method(_call(call)))  # type: ignore[misc]

    def result(call: Dict[str, Any], seen: Dict[str, Any]) -> ToolResult:
        return ToolResult(call["id"], call["name"], seen["content"], seen["is_error"])

    def after_tool(call: Dict[str, Any], seen: Dict[str, Any]) -> Optional[str]:
        return after_method(_call(call), result(call, seen))  # type: ignore[return-value]

    async def after_tool_async(call: Dict[str, Any], seen: Dict[str, Any]) -> Optional[str]:
        return await after_method(_call(call), result(call, seen))  # type: ignore[no-any-return,misc]

    return _kai.Hook(
        before_tool=(before_tool_async if before_async else before_tool) if before else None,
        before_tool_is_async=before_async,
        after_tool=(after_tool_async if after_async else after_tool) if after else None,
        after_tool_is_async=after_async,
    )
