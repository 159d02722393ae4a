"""An MCP server written with the official Python SDK (`mcp` on PyPI), for kai-core's client tests.

Run with `python python_server.py`; it speaks MCP over stdin and stdout. Besides well-behaved tools, a
resource and a prompt, it has tools that misbehave the ways real servers do: one hangs, one crashes
the process, one writes garbage into the protocol stream.
"""

import os
import signal
import sys

import anyio

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("python-peer", version="1.0")


@server.tool()
def multiply(a: int, b: int) -> int:
    """Multiplies two integers."""
    return a * b


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason given (as a tool error, whose message the SDK passes on)."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
async def hang() -> str:
    """Never answers; when the call is cancelled, writes `cancelled` to $KAI_MCP_CANCEL_MARKER."""
    try:
        await anyio.sleep(3600)
    except anyio.get_cancelled_exc_class():
        marker = os.environ.get("KAI_MCP_CANCEL_MARKER")
        if marker:
            with open(marker, "a") as file:
                file.write("cancelled\n")
        raise
    return "unreachable"


@server.tool()
async def count(steps: int, ctx: Context) -> str:
    """Counts to `steps`, reporting progress at each step."""
    for step in range(1, steps + 1):
        await anyio.sleep(0.1)
        await ctx.report_progress(step, steps, f"step {step}")
    return "counted"


@server.tool()
async def slow() -> str:
    """Answers after two seconds."""
    await anyio.sleep(2)
    return "done"


@server.tool()
def environment() -> list[str]:
    """The names of this process's environment variables."""
    return sorted(os.environ)


@server.tool()
def freeze() -> str:
    """Stops this process (SIGSTOP): it hangs with its pipes open."""
    os.kill(os.getpid(), signal.SIGSTOP)
    return "thawed"


@server.tool()
def pid() -> int:
    """This process's id."""
    return os.getpid()


@server.tool()
def crash() -> str:
    """Kills the server process mid-call."""
    os._exit(3)


@server.tool()
def garble() -> str:
    """Writes lines that are not JSON-RPC into the protocol stream, then answers."""
    sys.stdout.write("this is not json\n{\"jsonrpc\": \"2.0\", \"id\": \"nobody\"}\n")
    sys.stdout.flush()
    return "garbled"


def late() -> str:
    """A tool added while the server runs."""
    return "late"


@server.tool()
async def add_tool(ctx: Context) -> str:
    """Adds the tool `late` and announces that the tool list changed."""
    server.add_tool(late, name="late")
    await ctx.notify_tools_changed()
    return "added"


@server.resource("notes://today", name="today", description="Today's note.", mime_type="text/plain")
def today() -> str:
    return "Buy milk."


@server.prompt()
def review(language: str) -> str:
    """Asks for a code review."""
    return f"Review this {language} code."


if __name__ == "__main__":
    server.run("stdio")
