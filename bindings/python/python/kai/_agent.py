"""The Pythonic ``Agent``: construction from plain Python values, typed results and events."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Generic, Iterable, List, Mapping, Optional, TypeVar, Union, overload

from kai import _kai
from kai._events import AgentEvent, RunResult, Usage, event, run_result
from kai._hooks import Hook, native_hook
from kai._schema import from_json, type_schema
from kai._tools import ToolLike, native_tool

__all__ = ["Agent", "Conversation", "EventStream"]

OutputT = TypeVar("OutputT")
ModelLike = Union[str, _kai.Model, _kai.ScriptedModel]
RunInput = Union[str, _kai.RunState]


@dataclasses.dataclass(frozen=True)
class _OutputSchema:
    """The schema sent for an output type, and whether the value is wrapped in ``{"value": ...}``
    (the answer's top level must be an object)."""

    schema: Dict[str, Any]
    wrapped: bool

    @classmethod
    def of(cls, output_type: Any) -> _OutputSchema:
        schema = type_schema(output_type)
        if schema.get("type") == "object" and "properties" in schema:
            return cls(schema, False)
        defs = schema.pop("$defs", None)
        wrapper: Dict[str, Any] = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
        if defs:
            wrapper["$defs"] = defs
        return cls(wrapper, True)

    def value(self, data: Any, output_type: Any) -> Any:
        return from_json(data["value"] if self.wrapped else data, output_type)


class Agent(Generic[OutputT]):
    """An agent: a model, instructions and tools, run in a loop on kAI's Rust core until the model
    answers.

    ``model`` is a spec string (``"openai:gpt-4o-mini"``, ``"llamacpp:qwen@http://127.0.0.1:8080/v1"``),
    a ``kai.Model`` or a ``kai.testing.ScriptedModel``. ``tools`` are plain functions (sync or async),
    ``kai.tool`` objects or ``kai.Tool``s. With ``output_type`` (a dataclass, Pydantic model,
    TypedDict or any supported type) the result's ``output`` is a value of that type.
    ``hooks`` (``kai.Hook`` subclasses) see every tool call and may deny, rewrite or hold it.
    ``needs_approval`` maps tool names to the reason a human must approve their calls: a run that
    reaches one raises ``kai.ApprovalRequired`` whose ``state`` is approved and passed back to ``run``.
    """

    @overload
    def __init__(
        self: Agent[str],
        model: ModelLike,
        *,
        instructions: Optional[str] = None,
        tools: Iterable[ToolLike] = (),
        hooks: Iterable[Hook] = (),
        output_type: None = None,
        name: Optional[str] = None,
        needs_approval: Optional[Mapping[str, str]] = None,
        max_steps: Optional[int] = None,
        step_timeout: Optional[float] = None,
        tool_timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        max_parallel_tools: Optional[int] = None,
        max_repairs: Optional[int] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        tool_choice: Optional[str] = None,
        constrained_steps: bool = False,
        answer_on_last_step: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Agent[OutputT],
        model: ModelLike,
        *,
        instructions: Optional[str] = None,
        tools: Iterable[ToolLike] = (),
        hooks: Iterable[Hook] = (),
        output_type: type[OutputT],
        name: Optional[str] = None,
        needs_approval: Optional[Mapping[str, str]] = None,
        max_steps: Optional[int] = None,
        step_timeout: Optional[float] = None,
        tool_timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        max_parallel_tools: Optional[int] = None,
        max_repairs: Optional[int] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        tool_choice: Optional[str] = None,
        constrained_steps: bool = False,
        answer_on_last_step: bool = False,
    ) -> None: ...

    def __init__(
        self,
        model: ModelLike,
        *,
        tools: Iterable[ToolLike] = (),
        hooks: Iterable[Hook] = (),
        output_type: Optional[Any] = None,
        needs_approval: Optional[Mapping[str, str]] = None,
        **options: Any,
    ) -> None:
        # The other options (instructions, name, limits, sampling) go to the native agent as they are;
        # the overloads above list them.
        self.output_type = output_type
        self._output = _OutputSchema.of(output_type) if output_type is not None else None
        self._native = _kai.Agent(
            model,
            tools=[native_tool(item) for item in tools],
            hooks=[native_hook(hook) for hook in hooks],
            needs_approval=dict(needs_approval) if needs_approval else None,
            **options,
        )

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._native.name

    def __repr__(self) -> str:
        return repr(self._native)

    async def run(self, input: RunInput) -> RunResult[OutputT]:
        """Runs the agent on a message (or resumes a ``RunState``) until it answers.

        Cancelling the awaiting task cancels the run; coroutine tools in flight are cancelled too.
        Raises a ``kai.RunError`` subclass carrying the run's ``state`` when the run stops early.
        """
        return self._result(await self._native.run(input, **self._output_options()))

    def run_sync(self, input: RunInput) -> RunResult[OutputT]:
        """``run`` from sync code: blocks the calling thread (not the GIL) until the run ends."""
        return self._result(self._native.run_sync(input, **self._output_options()))

    def stream(self, input: RunInput) -> EventStream:
        """Runs the agent, yielding its events as they happen; ``Finished`` comes last.

        Use as ``async for event in agent.stream(...)``; leaving the loop early (or ``aclose()``) stops
        the run.
        """
        if self._output is not None:
            raise _kai.ConfigError("stream() gives text events; use run() for structured output")
        return EventStream(self._native.stream(input))

    def conversation(self) -> Conversation:
        """A conversation with this agent: each message is sent with the history so far."""
        if self._output is not None:
            raise _kai.ConfigError("a conversation gives text answers; use run() for structured output")
        return Conversation(_kai.Conversation(self._native))

    def _output_options(self) -> Dict[str, Any]:
        """The schema of the output type, and its own validation (a Pydantic model's validators) as a
        check whose error the model gets to repair."""
        output = self._output
        if output is None:
            return {}
        output_type = self.output_type
        return {"output_schema": output.schema, "output_check": lambda data: output.value(data, output_type)}

    def _result(self, data: Dict[str, Any]) -> RunResult[OutputT]:
        if self._output is None:
            return typing.cast(RunResult[OutputT], run_result(data, data["answer"]))
        return run_result(data, self._output.value(data["value"], self.output_type))


class Conversation:
    """A conversation with an agent. The history is kept in Rust (about 1.7 KiB for ten messages), and
    read as message dicts through ``history``."""

    __slots__ = ("_native",)

    def __init__(self, native: _kai.Conversation) -> None:
        self._native = native

    async def send(self, input: str) -> RunResult[str]:
        """Sends a message and runs the agent to its answer."""
        data = await self._native.send(input)
        return run_result(data, data["answer"])

    def send_sync(self, input: str) -> RunResult[str]:
        """``send`` from sync code: blocks the calling thread (not the GIL); Ctrl-C cancels it."""
        data = self._native.send_sync(input)
        return run_result(data, data["answer"])

    @property
    def history(self) -> List[Dict[str, Any]]:
        """The messages so far."""
        return self._native.history

    @property
    def usage(self) -> Usage:
        """Tokens used by every message so far."""
        return Usage._from(self._native.usage)


class EventStream:
    """The events of a streamed run, as an async iterator; closing it (or leaving ``async with``)
    stops the run."""

    def __init__(self, native: _kai.EventStream) -> None:
        self._native = native

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> AgentEvent:
        while True:
            data = await self._native.__anext__()
            typed = event(data)
            if typed is not None:
                return typed

    async def aclose(self) -> None:
        """Stops the run: model and tool calls in flight are dropped, coroutine tools cancelled."""
        await self._native.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
