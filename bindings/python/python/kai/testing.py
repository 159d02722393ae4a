"""Testing agents offline: a model that replays scripted answers, and helpers to script them."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

from kai._kai import ScriptedModel

__all__ = ["ScriptedModel", "tool_call", "tool_calls", "error"]


def tool_call(name: str, /, **arguments: Any) -> Dict[str, Any]:
    """A scripted answer that calls one tool with these arguments."""
    return {"tool_call": name, "arguments": arguments}


def tool_calls(calls: Iterable[Tuple[str, Dict[str, Any]]]) -> Dict[str, Any]:
    """A scripted answer that calls several tools at once: ``[(name, arguments), ...]``."""
    return {"tool_calls": [[name, arguments] for name, arguments in calls]}


def error(kind: str, /, **fields: Any) -> Dict[str, Any]:
    """A scripted model failure: ``error("rate_limited", message="slow down", retry_after_ms=1500)``."""
    return {"error": {"kind": kind, **fields}}
