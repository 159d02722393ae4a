"""Typed results and events of agent runs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Generic, List, Optional, TypeVar, Union

__all__ = [
    "Usage",
    "ToolCall",
    "ToolResult",
    "RunResult",
    "TextDelta",
    "ReasoningDelta",
    "ToolCallStarted",
    "ToolCallFinished",
    "StepFinished",
    "Finished",
    "AgentEvent",
]

OutputT = TypeVar("OutputT")


@dataclasses.dataclass(frozen=True)
class Usage:
    """Tokens used."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def _from(cls, data: Dict[str, Any]) -> Usage:
        return cls(data.get("input_tokens", 0), data.get("output_tokens", 0), data.get("cached_input_tokens", 0))


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for; ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str

    @property
    def args(self) -> Any:
        """The arguments, parsed."""
        return json.loads(self.arguments)

    @classmethod
    def _from(cls, data: Dict[str, Any]) -> ToolCall:
        return cls(data["id"], data["name"], data["arguments"])


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """What the model sees of a tool call: its output, or its error when ``is_error``."""

    call_id: str
    name: str
    content: str
    is_error: bool = False

    @classmethod
    def _from(cls, data: Dict[str, Any]) -> ToolResult:
        return cls(data["call_id"], data["name"], data["content"], data.get("is_error", False))


@dataclasses.dataclass(frozen=True)
class RunResult(Generic[OutputT]):
    """A finished run: its output (the answer text, or the structured value), the answer text, the
    whole transcript (message dicts), the tokens used and the model calls made."""

    output: OutputT
    answer: str
    messages: List[Dict[str, Any]]
    usage: Usage
    steps: int


@dataclasses.dataclass(frozen=True)
class TextDelta:
    """More of the model's answer text."""

    text: str


@dataclasses.dataclass(frozen=True)
class ReasoningDelta:
    """More of the model's visible reasoning."""

    text: str


@dataclasses.dataclass(frozen=True)
class ToolCallStarted:
    """A tool call is about to run, with the arguments it runs with."""

    call: ToolCall


@dataclasses.dataclass(frozen=True)
class ToolCallFinished:
    """A tool call has a result, successful or not."""

    result: ToolResult


@dataclasses.dataclass(frozen=True)
class StepFinished:
    """A step (one model call and its tool calls) is done."""

    step: int
    usage: Usage


@dataclasses.dataclass(frozen=True)
class Finished:
    """The run is complete; always the last event."""

    result: RunResult[str]


AgentEvent = Union[TextDelta, ReasoningDelta, ToolCallStarted, ToolCallFinished, StepFinished, Finished]


def run_result(data: Dict[str, Any], output: Any) -> RunResult[Any]:
    """A ``RunResult`` from the native output dict."""
    return RunResult(output, data["answer"], data["messages"], Usage._from(data["usage"]), data["steps"])


def event(data: Dict[str, Any]) -> Optional[AgentEvent]:
    """A typed event from the native event dict; ``None`` for a kind this version does not know (a
    newer core may add some), which streams skip."""
    kind = data["type"]
    if kind == "text_delta":
        return TextDelta(data["text"])
    if kind == "reasoning_delta":
        return ReasoningDelta(data["text"])
    if kind == "tool_call_started":
        return ToolCallStarted(ToolCall._from(data["call"]))
    if kind == "tool_call_finished":
        return ToolCallFinished(ToolResult._from(data["result"]))
    if kind == "step_finished":
        return StepFinished(data["step"], Usage._from(data["usage"]))
    if kind == "finished":
        output = data["output"]
        return Finished(run_result(output, output["answer"]))
    return None
