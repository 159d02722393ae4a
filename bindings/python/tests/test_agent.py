"""Agents with Python tools: sync and async tools, run and run_sync, streaming, errors in tools."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import pytest

import kai
from kai.testing import ScriptedModel, tool_call, tool_calls
from conftest import run, tool_results


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


async def multiply(a: float, b: float) -> float:
    """Multiplies two numbers."""
    await asyncio.sleep(0.01)
    return a * b


def test_sync_and_async_tools_run_from_asyncio() -> None:
    model = ScriptedModel([tool_calls([("add", {"a": 2, "b": 3}), ("multiply", {"a": 4, "b": 2.5})]), "5 and 10"])
    agent = kai.Agent(model, instructions="Use the tools.", tools=[add, multiply])
    result = run(agent.run("2 + 3 and 4 * 2.5?"))
    assert result.output == "5 and 10"
    assert result.answer == "5 and 10"
    assert result.steps == 2
    assert sorted((r["name"], r["content"], r.get("is_error", False)) for r in tool_results(model)) == [
        ("add", "5", False),
        ("multiply", "10.0", False),
    ]
    assert model.requests()[0]["tools"][0]["name"] == "add"


def test_run_sync_runs_coroutine_tools_on_a_loop_of_its_own() -> None:
    model = ScriptedModel([tool_call("multiply", a=3, b=4), "12"])
    agent = kai.Agent(model, tools=[multiply])
    result = agent.run_sync("3 * 4?")
    assert result.output == "12"
    assert tool_results(model)[0]["content"] == "12.0"


def test_coroutine_tools_run_on_the_callers_loop() -> None:
    seen = []

    async def where() -> str:
        """Names the running loop."""
        seen.append(asyncio.get_running_loop())
        return "here"

    async def main() -> asyncio.AbstractEventLoop:
        agent = kai.Agent(ScriptedModel([tool_call("where"), "done"]), tools=[where])
        await agent.run("where?")
        return asyncio.get_running_loop()

    assert asyncio.run(main()) is seen[0]


def test_run_sync_releases_the_gil_while_it_waits() -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        agent = kai.Agent(ScriptedModel(["slow answer"], delay=0.3))
        before = ticks
        assert agent.run_sync("hi").output == "slow answer"
        during = ticks - before
    finally:
        stop.set()
        counter.join()
    # About 300 ticks in 0.3 s when the GIL is free; none if run_sync held it.
    assert during > 50


def test_an_exception_in_a_tool_becomes_a_tool_error_the_model_sees() -> None:
    def divide(a: float, b: float) -> float:
        """Divides a by b."""
        return a / b

    def lookup(city: str) -> str:
        """Finds a city."""
        raise kai.ToolError(f"no city named {city}")

    model = ScriptedModel([tool_calls([("divide", {"a": 1, "b": 0}), ("lookup", {"city": "Atlantis"})]), "sorry"])
    agent = kai.Agent(model, tools=[divide, lookup])
    assert agent.run_sync("go").output == "sorry"
    by_name = {result["name"]: result for result in tool_results(model)}
    divided, looked_up = by_name["divide"], by_name["lookup"]
    assert divided["is_error"] is True
    assert divided["content"] == "ZeroDivisionError: float division by zero"
    assert looked_up["is_error"] is True
    assert looked_up["content"] == "no city named Atlantis"


def test_async_tool_exceptions_and_non_json_results_are_tool_errors() -> None:
    async def broken() -> str:
        """Fails."""
        raise RuntimeError("boom")

    def opaque() -> object:
        """Returns something that is not JSON."""
        return object()

    model = ScriptedModel([tool_calls([("broken", {}), ("opaque", {})]), "ok"])
    agent = kai.Agent(model, tools=[broken, opaque])
    assert run(agent.run("go")).output == "ok"
    # Results are listed as the calls finish, in either order here.
    by_name = {result["name"]: result for result in tool_results(model)}
    broken_result, opaque_result = by_name["broken"], by_name["opaque"]
    assert broken_result["content"] == "RuntimeError: boom"
    assert opaque_result["is_error"] is True
    assert "not JSON" in opaque_result["content"]


def test_arguments_that_do_not_match_the_schema_never_reach_the_function() -> None:
    calls = []

    def record(count: int) -> int:
        """Records a count."""
        calls.append(count)
        return count

    model = ScriptedModel([tool_call("record", count="many"), "gave up"])
    agent = kai.Agent(model, tools=[record])
    assert agent.run_sync("go").output == "gave up"
    assert calls == []
    assert tool_results(model)[0]["is_error"] is True


def test_the_tool_context_names_the_call() -> None:
    contexts = []

    def remember(note: str, context: kai.ToolContext) -> str:
        """Remembers a note."""
        contexts.append((context.call_id, context.run_id, context.step, context.cancelled, context.idempotency_key))
        return "ok"

    model = ScriptedModel([tool_call("remember", note="milk"), "noted"])
    kai.Agent(model, tools=[remember]).run_sync("remember milk")
    [(call_id, run_id, step, cancelled, key)] = contexts
    assert call_id and run_id and step == 1 and cancelled is False
    assert key == f"{run_id}/{call_id}"
    assert "context" not in model.requests()[0]["tools"][0]["parameters"]["properties"]


def test_streamed_events_come_in_order() -> None:
    async def main() -> List[kai.AgentEvent]:
        model = ScriptedModel([tool_call("add", a=1, b=2), "three"])
        agent = kai.Agent(model, tools=[add])
        return [event async for event in agent.stream("1 + 2?")]

    events = run(main())
    kinds = [type(event).__name__ for event in events]
    assert kinds == [
        "ToolCallStarted",
        "ToolCallFinished",
        "StepFinished",
        "TextDelta",
        "StepFinished",
        "Finished",
    ]
    started, finished = events[0], events[1]
    assert isinstance(started, kai.ToolCallStarted) and started.call.name == "add" and started.call.args == {"a": 1, "b": 2}
    assert isinstance(finished, kai.ToolCallFinished) and finished.result.content == "3"
    assert isinstance(events[3], kai.TextDelta) and events[3].text == "three"
    assert isinstance(events[4], kai.StepFinished) and events[4].step == 2
    last = events[-1]
    assert isinstance(last, kai.Finished) and last.result.answer == "three" and last.result.steps == 2


def test_a_failed_stream_raises_the_runs_error() -> None:
    async def main() -> None:
        agent = kai.Agent(ScriptedModel([kai.testing.error("server", status=503, message="down")]))
        async for _ in agent.stream("hi"):
            pass

    with pytest.raises(kai.ServerError) as raised:
        run(main())
    assert raised.value.status == 503
    assert isinstance(raised.value.state, kai.RunState)


def test_tools_are_described_by_their_docstrings_and_type_hints() -> None:
    @kai.tool
    def search(query: str, limit: int = 5) -> List[str]:
        """Searches the notes.

        Args:
            query: What to look for.
            limit: The most results to return.
        """
        return [query] * limit

    assert search.name == "search"
    assert search.description == "Searches the notes."
    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "description": "The most results to return.", "default": 5},
        },
        "required": ["query"],
    }
    # The decorated function is still callable as it was.
    assert search("x", limit=2) == ["x", "x"]


def test_bad_configuration_raises_config_error() -> None:
    with pytest.raises(kai.ConfigError):
        kai.Agent(ScriptedModel(["x"]), tools=[add, kai.tool(name="add")(multiply)])
    with pytest.raises(kai.ConfigError):
        kai.Agent("no-colon-here")
    with pytest.raises(kai.ConfigError):
        kai.Agent("nosuchprovider:model")
    with pytest.raises(kai.ConfigError):
        kai.Agent(ScriptedModel(["x"]), deadline=-1.0)
    assert issubclass(kai.ConfigError, kai.KaiError)


def test_a_model_spec_with_its_key_never_shows_the_key() -> None:
    model = kai.Model("openai:gpt-4o-mini", api_key="sk-secret-value", base_url="http://127.0.0.1:9/v1")
    assert model.name == "gpt-4o-mini"
    assert "sk-secret" not in repr(model)
    agent = kai.Agent(model, max_steps=1)
    assert "sk-secret" not in repr(agent)
    with pytest.raises(kai.TransportError) as raised:
        kai.Agent(kai.Model("openai:gpt-4o-mini", api_key="sk-secret-value", base_url="http://127.0.0.1:9/v1", max_retries=0)).run_sync("hi")
    state = raised.value.state
    assert state is not None
    assert "sk-secret" not in str(raised.value) and "sk-secret" not in state.to_json()


def test_a_conversation_keeps_its_history_and_usage() -> None:
    model = ScriptedModel([tool_call("add", a=2, b=3), "5", "You are welcome."])
    chat = kai.Agent(model, tools=[add]).conversation()
    assert chat.send_sync("What is 2 + 3?").output == "5"
    assert run(chat.send("Thanks!")).output == "You are welcome."
    assert [message["role"] for message in chat.history] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    # The second request carried the whole first exchange.
    assert len(model.requests()[-1]["messages"]) == 5
    assert chat.usage.total_tokens > 0
