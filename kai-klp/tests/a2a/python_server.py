"""An A2A server written with the official A2A Python SDK (a2a-sdk), for kai-klp's A2A client.

Run by kai-klp/tests/a2a_python.rs as `python_server.py <port> <log file>`. Its agent answers
"echo: <text>", asks for input when the text starts with "ask", and works for a minute on "slow"
(until it is cancelled). It appends what happened to the log file, one line each.
"""

import asyncio
import sys

import uvicorn
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from starlette.applications import Starlette

PORT = int(sys.argv[1])
LOG = sys.argv[2]


def log(line: str) -> None:
    with open(LOG, "a", encoding="utf-8") as file:
        file.write(line + "\n")


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, queue: EventQueue) -> None:
        if context.current_task is None:
            await queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[context.message],
                )
            )
        updater = TaskUpdater(queue, context.task_id, context.context_id)
        text = context.get_user_input()
        log(f"execute {text}")
        if text.startswith("ask"):
            await updater.requires_input(updater.new_agent_message([Part(text="Which file?")]))
            return
        if text.startswith("slow"):
            await updater.start_work()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                log("slow interrupted")
                raise
        await updater.add_artifact([Part(text=f"echo: {text}")], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, queue: EventQueue) -> None:
        log(f"cancel {context.task_id}")
        await TaskUpdater(queue, context.task_id, context.context_id).cancel()


card = AgentCard(
    name="python-echo",
    description="Echoes what it is told.",
    version="1.0.0",
    capabilities=AgentCapabilities(streaming=True),
    default_input_modes=["text/plain"],
    default_output_modes=["text/plain"],
    skills=[AgentSkill(id="echo", name="echo", description="Echoes text.", tags=["echo"])],
    supported_interfaces=[
        AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0", url=f"http://127.0.0.1:{PORT}/")
    ],
)
handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
app = Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, rpc_url="/"))

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
