"""Runs that stop early: cancellation, provider errors, limits, approvals resumed in another process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kai
from kai.testing import ScriptedModel, error, tool_call
from conftest import SlowTool, run, tool_results


def test_cancelling_the_task_cancels_the_run_and_its_coroutine_tools() -> None:
    slow = SlowTool()

    async def main() -> None:
        agent = kai.Agent(ScriptedModel([tool_call("slow"), "never"]), tools=[slow.tool])
        task = asyncio.ensure_future(agent.run("look it up"))
        await asyncio.wait_for(slow.started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await slow.settled()

    run(main())
    assert slow.outcome == ["cancelled"]


def test_closing_a_stream_cancels_the_run_and_its_coroutine_tools() -> None:
    slow = SlowTool()

    async def main() -> None:
        agent = kai.Agent(ScriptedModel([tool_call("slow"), "never"]), tools=[slow.tool])
        async for event in agent.stream("go"):
            if isinstance(event, kai.ToolCallStarted):
                break
        await slow.settled()

    run(main())
    assert slow.outcome == ["cancelled"]


def test_provider_errors_raise_their_own_classes_with_their_fields() -> None:
    agent = kai.Agent(ScriptedModel([error("rate_limited", message="slow down", retry_after_ms=1500)]))
    with pytest.raises(kai.RateLimitError) as raised:
        agent.run_sync("hi")
    failure = raised.value
    assert isinstance(failure, kai.ProviderError) and isinstance(failure, kai.KaiError)
    assert failure.kind == "rate_limited"
    assert failure.retry_after == 1.5
    assert failure.message == "slow down"
    assert failure.details == {"message": "slow down", "retry_after_ms": 1500}
    assert isinstance(failure.state, kai.RunState)
    assert failure.state.messages[0]["role"] == "user"

    agent = kai.Agent(ScriptedModel([error("authentication", message="bad key")]))
    with pytest.raises(kai.AuthenticationError):
        run(agent.run("hi"))


def test_limits_raise_run_errors_whose_state_resumes() -> None:
    model = ScriptedModel([tool_call("add", a=1, b=1), tool_call("add", a=2, b=2), "4"])

    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    agent = kai.Agent(model, tools=[add], max_steps=1)
    with pytest.raises(kai.MaxStepsExceeded) as raised:
        agent.run_sync("count")
    assert raised.value.max_steps == 1
    assert isinstance(raised.value, kai.RunError)
    state = raised.value.state
    assert state is not None
    assert state.steps == 1
    # With more steps the same state finishes the run.
    more = kai.Agent(model, tools=[add], max_steps=5)
    assert more.run_sync(state).output == "4"


def test_an_approval_is_resumed_in_another_process(tmp_path: Path) -> None:
    deleted = tmp_path / "deleted.txt"
    script = tmp_path / "resume.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import kai
            from kai.testing import ScriptedModel

            def delete_file(path: str) -> str:
                '''Deletes a file.'''
                with open({str(deleted)!r}, "a") as out:
                    out.write(path + "\\n")
                return "deleted " + path

            state = kai.RunState.from_json(sys.stdin.read())
            [pending] = state.pending_approvals
            state.approve(pending["call"]["id"])
            agent = kai.Agent(ScriptedModel(["Deleted old.txt."]), tools=[delete_file],
                              needs_approval={{"delete_file": "deletes files"}})
            print(agent.run_sync(state).output)
            """
        )
    )

    def delete_file(path: str) -> str:
        """Deletes a file."""
        raise AssertionError("must not run before approval")

    agent = kai.Agent(
        ScriptedModel([tool_call("delete_file", path="old.txt")]),
        tools=[delete_file],
        needs_approval={"delete_file": "deletes files"},
    )
    with pytest.raises(kai.ApprovalRequired) as raised:
        agent.run_sync("delete old.txt")
    state = raised.value.state
    assert state is not None
    assert raised.value.call_ids == [state.pending_approvals[0]["call"]["id"]]
    assert state.pending_approvals[0]["reason"] == "deletes files"
    assert state.pending_approvals[0]["call"]["name"] == "delete_file"

    resumed = subprocess.run(
        [sys.executable, str(script)],
        input=state.to_json(),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "Deleted old.txt."
    assert deleted.read_text() == "old.txt\n"


def test_a_rejected_call_reaches_the_model_as_an_error() -> None:
    model = ScriptedModel([tool_call("wipe"), "I was not allowed to."])

    def wipe() -> str:
        """Wipes everything."""
        raise AssertionError("rejected calls never run")

    agent = kai.Agent(model, tools=[wipe], needs_approval={"wipe": "destructive"})
    with pytest.raises(kai.ApprovalRequired) as raised:
        agent.run_sync("wipe it")
    state = raised.value.state
    assert state is not None
    assert state.reject_all("not today") == 1
    assert agent.run_sync(state).output == "I was not allowed to."
    contents = tool_results(model)
    assert contents[0]["is_error"] is True and "not today" in contents[0]["content"]


def test_a_run_state_refuses_garbage_and_round_trips() -> None:
    with pytest.raises(kai.ConfigError):
        kai.RunState.from_json("{not json")
    with pytest.raises(kai.ConfigError):
        kai.RunState.from_json('{"version": 99, "messages": [], "steps": 0, "usage": {"input_tokens": 0, "output_tokens": 0}}')
    state = kai.RunState("hello")
    again = kai.RunState.from_json(state.to_json())
    assert again.id == state.id and again.messages == state.messages and again.steps == 0
