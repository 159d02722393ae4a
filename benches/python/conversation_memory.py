"""Memory an idle 10-message conversation holds in a Python program using kai: two tool-using exchanges
(four messages each) and a plain one, on the scripted model, as kai-core's `tests/memory.rs` measures
the Rust core holding them. Resident memory grows by the heap of N conversations; divided by N.

    python benches/python/conversation_memory.py [N]
"""

from __future__ import annotations

import gc
import sys
from typing import List

import kai
from kai.testing import ScriptedModel, tool_call


def add(a: int, b: int) -> int:
    """Adds."""
    return a + b


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    model = ScriptedModel(
        [tool_call("add", a=2, b=3), "2 + 3 = 5", tool_call("add", a=5, b=5), "5 + 5 = 10", "You are welcome."],
        repeat=True,
        record_requests=False,
    )
    agent = kai.Agent(model, instructions="You are a calculator.", tools=[add])

    def conversation() -> kai.Conversation:
        chat = agent.conversation()
        for message in ["What is 2 + 3?", "And 5 + 5?", "Thanks!"]:
            chat.send_sync(message)
        return chat

    assert len(conversation().history) == 10
    kept: List[kai.Conversation] = [conversation() for _ in range(200)]  # warm the allocator
    kept.clear()
    gc.collect()
    before = resident_bytes()
    kept = [conversation() for _ in range(count)]
    gc.collect()
    per_conversation = (resident_bytes() - before) / count
    print(f"{count} idle 10-message conversations: {per_conversation:.0f} B each ({per_conversation / 1024:.2f} KiB)")


if __name__ == "__main__":
    main()
