"""A client written with the official Python SDK (`mcp` on PyPI) against kAI's MCP server.

`python python_client.py <server command...>` starts the server over stdio (with KAI_MCP_SERVE=1 in its
environment); `python python_client.py http://...` connects to it over Streamable HTTP. Either way it
exercises the server and prints what it saw as one JSON object on stdout.
"""

import asyncio
import json
import os
import sys
import time
from typing import Any

from mcp import Client, StdioServerParameters


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


async def main() -> None:
    marker = os.environ["KAI_MCP_CANCEL_MARKER"]
    server: StdioServerParameters | str
    if sys.argv[1].startswith("http"):
        server = sys.argv[1]
    else:
        server = StdioServerParameters(
            command=sys.argv[1],
            args=sys.argv[2:],
            env={"KAI_MCP_SERVE": "1", "KAI_MCP_CANCEL_MARKER": marker},
        )
    report: dict[str, Any] = {}
    async with Client(server) as client:
        report["protocol"] = getattr(client.session, "protocol_version", None)
        tools = await client.list_tools()
        report["tools"] = {tool.name: {"description": tool.description, "schema": tool.input_schema} for tool in tools.tools}

        added = await client.call_tool("add", {"a": 17, "b": 25})
        report["add"] = {"text": text_of(added), "structured": added.structured_content, "is_error": added.is_error}
        described = await client.call_tool("describe", {"name": "kai"})
        report["describe"] = {"text": text_of(described), "structured": described.structured_content}
        bad = await client.call_tool("add", {"a": "seventeen"})
        report["bad_arguments"] = {"text": text_of(bad), "is_error": bad.is_error}
        failed = await client.call_tool("fail", {})
        report["fail"] = {"text": text_of(failed), "is_error": failed.is_error}
        try:
            await client.call_tool("no_such_tool", {})
            report["unknown"] = "answered"
        except Exception as error:  # the SDK raises the protocol error
            report["unknown"] = f"{type(error).__name__}: {error}"
        progress: list[list[Any]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append([done, total, message])

        counted = await client.call_tool("count", {}, progress_callback=on_progress)
        report["count"] = {"text": text_of(counted), "progress": progress}
        delegated = await client.call_tool("assistant", {"input": "Say hello."})
        report["assistant"] = {"text": text_of(delegated), "is_error": delegated.is_error}

        resources = await client.list_resources()
        report["resources"] = [str(resource.uri) for resource in resources.resources]
        read = await client.read_resource("notes://today")
        report["today"] = read.contents[0].text
        read = await client.read_resource("notes://day/friday")
        report["friday"] = read.contents[0].text
        prompts = await client.list_prompts()
        report["prompts"] = [prompt.name for prompt in prompts.prompts]
        prompt = await client.get_prompt("review", {"language": "Go"})
        report["prompt"] = [[message.role, message.content.type] for message in prompt.messages]
        report["prompt_text"] = prompt.messages[0].content.text

        started = time.monotonic()
        try:
            await client.call_tool("slow", {}, read_timeout_seconds=1.0)
            report["slow"] = "answered"
        except Exception as error:
            report["slow"] = type(error).__name__
        report["slow_seconds"] = round(time.monotonic() - started, 2)
        # The server is told the call was abandoned; its tool sees the cancellation.
        for _ in range(50):
            if os.path.exists(marker):
                break
            await asyncio.sleep(0.1)
        report["slow_cancelled_on_server"] = os.path.exists(marker)
    print(json.dumps(report))


asyncio.run(main())
