"""kAI for Python: agents, tools and models on kAI's Rust core.

>>> import kai
>>> def add(a: int, b: int) -> int:
...     '''Adds two integers.'''
...     return a + b
>>> agent = kai.Agent(kai.testing.ScriptedModel([kai.testing.tool_call("add", a=2, b=3), "5"]), tools=[add])
>>> agent.run_sync("What is 2 + 3?").output
'5'
"""

import atexit
from types import MappingProxyType

from kai import _kai, klp, memory, testing
from kai._agent import Agent, Conversation, EventStream
from kai._events import (
    AgentEvent,
    Finished,
    ReasoningDelta,
    RunResult,
    StepFinished,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    ToolResult,
    Usage,
)
from kai._hooks import Allow, Decision, Deny, Hook, RequireApproval, Rewrite
from kai._kai import (
    ApprovalRequired,
    AuthenticationError,
    ConfigError,
    ConsentError,
    ContextTooLongError,
    DeadlineExceeded,
    HookError,
    InvalidOutputError,
    InvalidRequestError,
    KaiError,
    KlpError,
    MalformedResponseError,
    MaxStepsExceeded,
    Model,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RunCancelled,
    RunError,
    RunState,
    ServerError,
    StoreError,
    Tool,
    ToolContext,
    ToolError,
    TransportError,
    UnsupportedError,
    VaultError,
    __version__,
)
from kai._tools import FunctionTool, tool

# Before the interpreter finalizes, kAI's threads stop entering Python (one that did then would abort it).
atexit.register(_kai._shutdown)

# Exceptions raised by kAI carry these per instance; ones raised by user code (`raise kai.ToolError(...)`)
# fall back to the class's.
KaiError.kind = "kai"
KaiError.details = MappingProxyType({})
KaiError.state = None

__all__ = [
    "Agent",
    "Allow",
    "Decision",
    "Deny",
    "Hook",
    "RequireApproval",
    "Rewrite",
    "AgentEvent",
    "ApprovalRequired",
    "AuthenticationError",
    "ConfigError",
    "ConsentError",
    "ContextTooLongError",
    "Conversation",
    "DeadlineExceeded",
    "EventStream",
    "Finished",
    "FunctionTool",
    "HookError",
    "InvalidOutputError",
    "InvalidRequestError",
    "KaiError",
    "KlpError",
    "MalformedResponseError",
    "MaxStepsExceeded",
    "Model",
    "PermissionDeniedError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ReasoningDelta",
    "RunCancelled",
    "RunError",
    "RunResult",
    "RunState",
    "ServerError",
    "StoreError",
    "StepFinished",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "TransportError",
    "UnsupportedError",
    "Usage",
    "VaultError",
    "__version__",
    "klp",
    "memory",
    "testing",
    "tool",
]
