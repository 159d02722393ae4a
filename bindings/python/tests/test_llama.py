"""The agent on the real local model (the llama.cpp server scripts/test.sh starts)."""

from __future__ import annotations

import os
from typing import List, Tuple

import pytest

import kai

calls: List[Tuple[int, int]] = []


def multiply(a: int, b: int) -> int:
    """Multiplies two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    calls.append((a, b))
    return a * b


@pytest.mark.skipif("KAI_LOCAL_MODEL" not in os.environ, reason="needs the llama.cpp server of scripts/test.sh")
def test_the_local_model_answers_with_a_python_tool() -> None:
    agent = kai.Agent(
        os.environ["KAI_LOCAL_MODEL"],
        instructions="You are a helpful assistant. For multiplication, call multiply. Answer briefly.",
        tools=[multiply],
        temperature=0.0,
        max_tokens=256,
        max_steps=4,
        answer_on_last_step=True,
        constrained_steps=True,
        tool_choice="required",
        deadline=300,
    )
    result = agent.run_sync("What is 17 * 23?")
    assert calls and calls[0] in [(17, 23), (23, 17)]
    assert "391" in result.answer
