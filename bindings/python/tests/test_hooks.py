"""Hooks written in Python: deny, rewrite, hold for approval, rewrite results; failing hooks fail closed."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import pytest

import kai
from kai.testing import ScriptedModel, tool_call, tool_calls
from conftest import run, tool_results


def transfer(account: str, amount: int) -> str:
    """Transfers money."""
    return f"sent {amount} to {account}"


class Policy(kai.Hook):
    def __init__(self) -> None:
        self.seen: List[kai.ToolCall] = []

    def before_tool(self, call: kai.ToolCall) -> Optional[kai.Decision]:
        self.seen.append(call)
        amount = call.args["amount"]
        if amount > 1000:
            return kai.Deny("transfers over 1000 are not allowed")
        if amount > 100:
            return kai.RequireApproval("a large transfer")
        if call.args["account"] == "old":
            return kai.Rewrite({"account": "new", "amount": amount})
        return None


def test_a_hook_denies_rewrites_and_allows_calls() -> None:
    policy = Policy()
    calls = [
        ("transfer", {"account": "a", "amount": 5000}),
        ("transfer", {"account": "old", "amount": 10}),
        ("transfer", {"account": "b", "amount": 20}),
    ]
    model = ScriptedModel([tool_calls(calls), "done"])
    agent = kai.Agent(model, tools=[transfer], hooks=[policy], max_parallel_tools=1)
    assert agent.run_sync("pay").output == "done"
    assert [call.args for call in policy.seen] == [arguments for _, arguments in calls]
    by_content = sorted((r["content"], r.get("is_error", False)) for r in tool_results(model))
    assert by_content == [
        ("sent 10 to new", False),
        ("sent 20 to b", False),
        ("the call was denied: transfers over 1000 are not allowed", True),
    ]


def test_a_hook_holds_a_call_for_approval() -> None:
    model = ScriptedModel([tool_call("transfer", account="c", amount=500), "paid"])
    agent = kai.Agent(model, tools=[transfer], hooks=[Policy()])
    with pytest.raises(kai.ApprovalRequired) as raised:
        agent.run_sync("pay c 500")
    state = raised.value.state
    assert state is not None
    assert state.pending_approvals[0]["reason"] == "a large transfer"
    state.approve_all()
    assert agent.run_sync(state).output == "paid"
    assert tool_results(model)[0]["content"] == "sent 500 to c"


class Redact(kai.Hook):
    async def before_tool(self, call: kai.ToolCall) -> Optional[kai.Decision]:
        await asyncio.sleep(0)
        return None

    async def after_tool(self, call: kai.ToolCall, result: kai.ToolResult) -> Optional[str]:
        await asyncio.sleep(0)
        return result.content.replace("secret", "[redacted]")


def test_async_hooks_rewrite_results() -> None:
    def read() -> str:
        """Reads the note."""
        return "the secret is 42"

    model = ScriptedModel([tool_call("read"), "ok"])
    agent = kai.Agent(model, tools=[read], hooks=[Redact()])
    assert run(agent.run("read it")).output == "ok"
    assert tool_results(model)[0]["content"] == "the [redacted] is 42"


class Broken(kai.Hook):
    def before_tool(self, call: kai.ToolCall) -> Optional[kai.Decision]:
        raise RuntimeError("policy service down")


class WrongAnswer(kai.Hook):
    def before_tool(self, call: kai.ToolCall) -> Optional[kai.Decision]:
        return "yes"  # type: ignore[return-value]


@pytest.mark.parametrize("hook", [Broken(), WrongAnswer()])
def test_a_failing_hook_denies_the_call(hook: kai.Hook) -> None:
    ran = []

    def act() -> str:
        """Acts."""
        ran.append(True)
        return "acted"

    model = ScriptedModel([tool_call("act"), "stopped"])
    assert kai.Agent(model, tools=[act], hooks=[hook]).run_sync("act").output == "stopped"
    assert ran == []
    [result] = tool_results(model)
    assert result["is_error"] is True and "hook" in result["content"]


def test_hooks_must_be_hook_objects() -> None:
    with pytest.raises(TypeError):
        kai.Agent(ScriptedModel(["x"]), hooks=[lambda call: None])  # type: ignore[list-item]
