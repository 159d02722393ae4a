"""How runs fit into Python programs: event loops, contextvars, garbage collection, pickling."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import pickle
import subprocess
import sys
import weakref
from typing import List, Optional, Union

import pydantic
import pytest

import kai
from kai._events import event
from kai.testing import ScriptedModel, tool_call, tool_calls
from conftest import SlowTool, run, tool_results

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_run_sync_inside_a_running_loop_runs_coroutine_tools_elsewhere() -> None:
    async def ping() -> str:
        """Answers pong."""
        await asyncio.sleep(0)
        return "pong"

    async def main() -> str:
        # As in a notebook cell: sync code called while a loop runs on this thread.
        agent = kai.Agent(ScriptedModel([tool_call("ping"), "done"]), tools=[ping], deadline=10)
        return agent.run_sync("ping").output

    assert run(main()) == "done"


def test_tools_see_the_callers_contextvars() -> None:
    def sync_tool() -> str:
        """Reads the request id."""
        return request_id.get()

    async def async_tool() -> str:
        """Reads the request id."""
        return request_id.get()

    async def main() -> List[str]:
        request_id.set("req-42")
        model = ScriptedModel([tool_calls([("sync_tool", {}), ("async_tool", {})]), "ok"])
        await kai.Agent(model, tools=[sync_tool, async_tool]).run("go")
        return sorted(result["content"] for result in tool_results(model))

    assert run(main()) == ["req-42", "req-42"]

    request_id.set("sync-7")
    model = ScriptedModel([tool_calls([("sync_tool", {}), ("async_tool", {})]), "ok"])
    kai.Agent(model, tools=[sync_tool, async_tool]).run_sync("go")
    assert sorted(result["content"] for result in tool_results(model)) == ["sync-7", "sync-7"]


def test_aclose_from_another_task_cancels_a_tool_in_flight() -> None:
    slow = SlowTool()

    async def main() -> None:
        stream = kai.Agent(ScriptedModel([tool_call("slow"), "never"]), tools=[slow.tool]).stream("go")

        async def consume() -> None:
            async for _ in stream:
                pass

        consumer = asyncio.ensure_future(consume())
        await asyncio.wait_for(slow.started.wait(), 5)
        await asyncio.wait_for(stream.aclose(), 5)
        # The consumer's loop ends quietly, as after closing an async generator.
        await asyncio.wait_for(consumer, 5)

    run(main())
    assert slow.outcome == ["cancelled"]


class Booking(pydantic.BaseModel):
    nights: int

    @pydantic.field_validator("nights")
    @classmethod
    def at_least_one(cls, nights: int) -> int:
        if nights < 1:
            raise ValueError("a booking is for at least one night")
        return nights


def test_pydantic_validators_send_bad_answers_back_for_repair() -> None:
    model = ScriptedModel(['{"nights": 0}', '{"nights": 2}'])
    result = kai.Agent(model, output_type=Booking).run_sync("Book it")
    assert result.output == Booking(nights=2)
    repair = model.requests()[1]["messages"][-1]["content"][0]["text"]
    assert "at least one night" in repair

    model = ScriptedModel(['{"nights": 0}'], repeat=True)
    with pytest.raises(kai.InvalidOutputError) as raised:
        kai.Agent(model, output_type=Booking, max_repairs=1).run_sync("Book it")
    assert raised.value.state is not None


def test_arguments_convert_to_exactly_the_hinted_types() -> None:
    received: List[object] = []

    def tag(names: Union[List[str], str], count: int, limit: Optional[int] = None) -> str:
        """Tags things."""
        received.extend([names, count, limit])
        return "ok"

    model = ScriptedModel([tool_call("tag", names="abc", count=2.0), "done"])
    kai.Agent(model, tools=[tag]).run_sync("tag")
    assert received == ["abc", 2, None]
    assert type(received[1]) is int


def test_a_hook_method_set_on_an_instance_is_used() -> None:
    hook = kai.Hook()
    hook.before_tool = lambda call: kai.Deny("not on this instance")  # type: ignore[method-assign]
    ran: List[bool] = []

    def act() -> str:
        """Acts."""
        ran.append(True)
        return "acted"

    model = ScriptedModel([tool_call("act"), "stopped"])
    kai.Agent(model, tools=[act], hooks=[hook]).run_sync("act")
    assert ran == []
    assert "not on this instance" in tool_results(model)[0]["content"]


def test_agents_and_their_tools_are_garbage_collected() -> None:
    class Service:
        def lookup(self, query: str) -> str:
            """Looks something up."""
            return query

    service = Service()
    alive = weakref.ref(service)
    agent = kai.Agent(ScriptedModel([tool_call("lookup", query="x"), "ok"]), tools=[service.lookup])
    agent.run_sync("go")
    del agent, service
    gc.collect()
    assert alive() is None


def test_errors_pickle_as_their_class_and_unknown_events_are_skipped() -> None:
    error = pickle.loads(pickle.dumps(kai.RateLimitError("slow down")))
    assert type(error) is kai.RateLimitError and str(error) == "slow down"
    assert event({"type": "a_kind_from_a_newer_core"}) is None


EXIT_AFTER_CLOSE = """
import asyncio, kai
from kai.testing import ScriptedModel, tool_call

started = asyncio.Event()

async def slow() -> str:
    '''Works slowly.'''
    started.set()
    await asyncio.sleep(30)
    return "done"

async def main() -> None:
    stream = kai.Agent(ScriptedModel([tool_call("slow"), "never"]), tools=[slow]).stream("go")
    async def consume() -> None:
        async for _ in stream:
            pass
    consumer = asyncio.ensure_future(consume())
    await started.wait()
    await stream.aclose()
    await consumer

asyncio.run(main())
"""


def test_the_interpreter_exits_cleanly_right_after_a_run_is_cancelled() -> None:
    # Threads of the runtime entering Python while the interpreter finalizes would abort it; this
    # exit raced them about once in twenty runs.
    for _ in range(20):
        done = subprocess.run([sys.executable, "-c", EXIT_AFTER_CLOSE], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_run_errors_pickle_with_their_state_and_user_errors_have_the_fields() -> None:
    wipe = kai.tool(name="wipe")(wipe_everything)
    agent = kai.Agent(ScriptedModel([tool_call("wipe")]), tools=[wipe], needs_approval={"wipe": "destructive"})
    with pytest.raises(kai.ApprovalRequired) as raised:
        agent.run_sync("wipe")
    state = raised.value.state
    assert state is not None
    again = pickle.loads(pickle.dumps(state))
    assert again.to_json() == state.to_json()
    raised_by_user = kai.ToolError("not found")
    assert raised_by_user.kind == "kai" and dict(raised_by_user.details) == {} and raised_by_user.state is None


def wipe_everything() -> str:
    """Wipes everything."""
    return "wiped"
