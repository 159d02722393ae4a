"""The official A2A Python SDK (a2a-sdk) as a client of a kAI agent served over A2A.

Run by kai-klp/tests/a2a_python.rs with the server's URL; each scenario asserts what it gets and the
script prints one JSON line of what it saw. Exits non-zero on the first failure.
"""

import asyncio
import json
import sys
import uuid

import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict


def user(text: str, task_id: str = "", context_id: str = "") -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    if task_id:
        message.task_id = task_id
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


def answer_of(task) -> str:
    return "".join(part.text for artifact in task.artifacts for part in artifact.parts)


async def main(url: str) -> None:
    seen = {}
    http = httpx.AsyncClient(timeout=30)
    blocking = await create_client(url, ClientConfig(streaming=False, httpx_client=http))
    streaming = await create_client(url, ClientConfig(streaming=True, httpx_client=http))

    # The card, as the SDK's resolver reads it.
    card = await A2ACardResolver(http, url).get_agent_card()
    assert card.name == "calculator", card
    assert card.capabilities.streaming
    seen["skills"] = sorted(skill.id for skill in card.skills)

    # SendMessage: the task comes back done, with the answer as its artifact.
    events = [event async for event in blocking.send_message(user("add 2 and 3"))]
    assert len(events) == 1 and events[0].HasField("task"), events
    task = events[0].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    seen["blocking_answer"] = answer_of(task)

    # The same conversation goes on in a second task of its context.
    events = [event async for event in blocking.send_message(user("and what did I ask?", context_id=task.context_id))]
    follow_up = events[0].task
    assert follow_up.context_id == task.context_id and follow_up.id != task.id
    seen["follow_up_answer"] = answer_of(follow_up)

    # GetTask reads it back.
    again = await blocking.get_task(GetTaskRequest(id=task.id))
    assert again.status.state == TaskState.TASK_STATE_COMPLETED and answer_of(again) == seen["blocking_answer"]

    # SendStreamingMessage: the task, working, the answer in chunks, then completed.
    kinds, chunks, states, updates = [], [], [], 0
    async for event in streaming.send_message(user("add 2 and 3")):
        kind = event.WhichOneof("payload")
        kinds.append(kind)
        if kind == "artifact_update":
            updates += 1
            update = event.artifact_update
            if not update.append:
                chunks.clear()
            chunks.extend(part.text for part in update.artifact.parts)
        if kind == "status_update":
            states.append(TaskState.Name(event.status_update.status.state))
    assert kinds[0] == "task", kinds
    assert states[0] == "TASK_STATE_WORKING" and states[-1] == "TASK_STATE_COMPLETED", states
    seen["streamed_answer"] = "".join(chunks)
    seen["chunks"] = updates
    seen["stream_kinds"] = sorted(set(kinds))

    # An approval round trip: the tool call waits for input; "approve" on the task runs it.
    events = [event async for event in blocking.send_message(user("delete the file notes.txt"))]
    waiting = events[0].task
    assert waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, waiting
    status = MessageToDict(waiting.status.message)
    approvals = [part["data"]["approvals"] for part in status["parts"] if "data" in part][0]
    assert approvals[0]["tool"] == "delete", approvals
    seen["approval_asked_for"] = approvals[0]["arguments"]
    events = [event async for event in blocking.send_message(user("approve", task_id=waiting.id))]
    approved = events[0].task
    assert approved.id == waiting.id and approved.status.state == TaskState.TASK_STATE_COMPLETED, approved
    seen["approved_answer"] = answer_of(approved)

    # A rejection: the model is told why, and the task completes without the call.
    events = [event async for event in blocking.send_message(user("delete the file notes.txt"))]
    waiting = events[0].task
    events = [event async for event in blocking.send_message(user("not today", task_id=waiting.id))]
    seen["rejected_answer"] = answer_of(events[0].task)

    # Cancel: a slow tool is under way when the task is cancelled.
    slow_task_id = None
    async for event in streaming.send_message(user("run the slow job")):
        if event.HasField("task"):
            slow_task_id = event.task.id
        if event.HasField("status_update") and event.status_update.status.HasField("message"):
            # "Calling the tool `slow`.": cancel it while it runs.
            cancelled = await blocking.cancel_task(CancelTaskRequest(id=slow_task_id))
            assert cancelled.status.state == TaskState.TASK_STATE_CANCELED, cancelled
            seen["cancelled"] = TaskState.Name(cancelled.status.state)
    final = await blocking.get_task(GetTaskRequest(id=slow_task_id))
    assert final.status.state == TaskState.TASK_STATE_CANCELED, final
    try:
        await blocking.cancel_task(CancelTaskRequest(id=slow_task_id))
        raise AssertionError("a cancelled task was cancelled again")
    except TaskNotCancelableError:
        seen["cancel_again"] = "TaskNotCancelable"

    # Errors map to the SDK's own types.
    try:
        await blocking.get_task(GetTaskRequest(id="no-such-task"))
        raise AssertionError("an unknown task was found")
    except TaskNotFoundError:
        seen["unknown_task"] = "TaskNotFound"

    await http.aclose()
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
