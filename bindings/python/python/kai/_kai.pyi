"""Type stubs of kai's native module (checked against it by mypy's stubtest in the test command)."""

import os
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union, final

__version__: str

def _shutdown() -> None: ...

@final
class Model:
    """A chat model of a provider, chosen by a spec string such as ``"openai:gpt-4o-mini"``."""

    def __new__(
        cls,
        spec: str,
        *,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
    ) -> Model: ...
    @property
    def name(self) -> str: ...

@final
class ScriptedModel:
    """A model that replays scripted answers (``str`` texts, or the dicts ``kai.testing`` builds)."""

    def __new__(
        cls,
        responses: List[Union[str, Dict[str, Any]]],
        *,
        repeat: bool = False,
        json_schema: bool = True,
        delay: Optional[float] = None,
        record_requests: bool = True,
    ) -> ScriptedModel: ...
    def requests(self) -> List[Dict[str, Any]]: ...
    @property
    def remaining(self) -> int: ...

@final
class RunState:
    """A run's serializable state: transcript, usage and the calls waiting for approval."""

    def __new__(cls, input: str) -> RunState: ...
    @staticmethod
    def continuing(messages: List[Dict[str, Any]], input: str) -> RunState: ...
    @staticmethod
    def from_json(json: str) -> RunState: ...
    def to_json(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def steps(self) -> int: ...
    @property
    def messages(self) -> List[Dict[str, Any]]: ...
    @property
    def usage(self) -> Dict[str, int]: ...
    @property
    def pending_approvals(self) -> List[Dict[str, Any]]: ...
    def approve(self, call_id: str) -> None: ...
    def reject(self, call_id: str, reason: str) -> None: ...
    def approve_all(self) -> int: ...
    def reject_all(self, reason: str) -> int: ...
    def __reduce__(self) -> Tuple[Callable[[str], RunState], Tuple[str]]: ...

@final
class ToolContext:
    """What a tool learns about the call it serves."""

    @property
    def call_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def idempotency_key(self) -> str: ...

@final
class Tool:
    """A tool from a name, a description, a JSON Schema and ``function(arguments, context)``."""

    def __new__(
        cls,
        name: str,
        description: str,
        parameters: Mapping[str, Any],
        function: Callable[[Dict[str, Any], ToolContext], Any],
        *,
        is_async: bool,
    ) -> Tool: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> Dict[str, Any]: ...

@final
class Hook:
    """Callables run around every tool call: ``before_tool(call)`` returns a decision dict or
    ``None``; ``after_tool(call, result)`` returns new result text or ``None``."""

    def __new__(
        cls,
        *,
        before_tool: Optional[Callable[[Dict[str, Any]], Any]] = None,
        before_tool_is_async: bool = False,
        after_tool: Optional[Callable[[Dict[str, Any], Dict[str, Any]], Any]] = None,
        after_tool_is_async: bool = False,
    ) -> Hook: ...

@final
class Conversation:
    """A conversation with an agent; the history stays in Rust."""

    def __new__(cls, agent: Agent) -> Conversation: ...
    def send(self, input: str) -> Awaitable[Dict[str, Any]]: ...
    def send_sync(self, input: str) -> Dict[str, Any]: ...
    @property
    def history(self) -> List[Dict[str, Any]]: ...
    @property
    def usage(self) -> Dict[str, int]: ...

@final
class EventStream:
    """A streamed run's events as dicts; closing it stops the run."""

    def __aiter__(self) -> EventStream: ...
    def __anext__(self) -> Awaitable[Dict[str, Any]]: ...
    def aclose(self) -> Awaitable[None]: ...

@final
class Agent:
    """The native agent; ``kai.Agent`` wraps it."""

    def __new__(
        cls,
        model: Union[str, Model, ScriptedModel],
        *,
        instructions: Optional[str] = None,
        tools: Sequence[Tool] = ...,
        hooks: Sequence[Hook] = ...,
        name: Optional[str] = None,
        needs_approval: Optional[Mapping[str, str]] = None,
        max_steps: Optional[int] = None,
        step_timeout: Optional[float] = None,
        tool_timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        max_parallel_tools: Optional[int] = None,
        max_repairs: Optional[int] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        tool_choice: Optional[str] = None,
        constrained_steps: bool = False,
        answer_on_last_step: bool = False,
    ) -> Agent: ...
    @property
    def name(self) -> str: ...
    def run(
        self,
        input: Union[str, RunState],
        *,
        output_schema: Optional[Mapping[str, Any]] = None,
        output_check: Optional[Callable[[Any], object]] = None,
    ) -> Awaitable[Dict[str, Any]]: ...
    def run_sync(
        self,
        input: Union[str, RunState],
        *,
        output_schema: Optional[Mapping[str, Any]] = None,
        output_check: Optional[Callable[[Any], object]] = None,
    ) -> Dict[str, Any]: ...
    def stream(self, input: Union[str, RunState]) -> EventStream: ...

@final
class Vault:
    """An encrypted vault of secrets and records; one writer at a time."""

    @staticmethod
    def create(path: Union[str, "os.PathLike[str]"], passphrase: str, *, kdf: Optional[Mapping[str, Any]] = None) -> Vault: ...
    @staticmethod
    def open(path: Union[str, "os.PathLike[str]"], passphrase: str) -> Vault: ...
    def put_secret(self, name: str, value: str) -> None: ...
    def secret(self, name: str) -> Optional[str]: ...
    def put_record(self, name: str, record: Any) -> None: ...
    def record(self, name: str) -> Any: ...
    def remove(self, name: str) -> bool: ...
    def secret_names(self) -> List[str]: ...
    def record_names(self) -> List[str]: ...
    def change_passphrase(self, new_passphrase: str, *, kdf: Optional[Mapping[str, Any]] = None) -> None: ...
    def export(
        self, path: Union[str, "os.PathLike[str]"], passphrase: str, *, kdf: Optional[Mapping[str, Any]] = None
    ) -> None: ...
    def import_backup(self, path: Union[str, "os.PathLike[str]"], passphrase: str) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Vault: ...
    def __exit__(self, kind: object, value: object, traceback: object) -> None: ...

@final
class EmbeddingModel:
    """A model that turns texts into vectors."""

    def __new__(cls, spec: str, dimensions: int) -> EmbeddingModel: ...
    @staticmethod
    def hashing(dimensions: int) -> EmbeddingModel: ...
    @property
    def dimensions(self) -> int: ...
    def embed(self, texts: List[str]) -> Awaitable[List[List[float]]]: ...

@final
class EmbeddedStore:
    """A vector store in a local directory; methods are awaitables."""

    def __new__(
        cls,
        directory: Union[str, "os.PathLike[str]"],
        dimensions: int,
        *,
        metric: str = "cosine",
        quantization: str = "none",
    ) -> EmbeddedStore: ...
    def upsert(self, documents: List[Dict[str, Any]]) -> Awaitable[None]: ...
    def search(
        self, query: Sequence[float], k: int, *, where: Optional[Mapping[str, Any]] = None
    ) -> Awaitable[List[Dict[str, Any]]]: ...
    def get(self, id: str) -> Awaitable[Optional[Dict[str, Any]]]: ...
    def delete(self, ids: List[str]) -> Awaitable[int]: ...
    def count(self) -> Awaitable[int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> EmbeddedStore: ...
    def __exit__(self, kind: object, value: object, traceback: object) -> None: ...

@final
class VectorIndex:
    """A vector index in memory (``"hnsw"`` or exact ``"flat"``), saved to and opened from a file.

    An HNSW index may search on compressed vectors: ``quantization="int8"`` (a quarter of float32),
    ``"int4"`` (an eighth) or ``"pq<subspaces>"`` (product quantisation, e.g. ``"pq48"`` for 384 dimensions), re-ranking with
    the full vectors."""

    def __new__(
        cls,
        dimensions: int,
        *,
        metric: str = "cosine",
        kind: str = "hnsw",
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        quantization: str = "none",
    ) -> VectorIndex: ...
    @staticmethod
    def open(path: Union[str, "os.PathLike[str]"]) -> VectorIndex: ...
    def add(self, ids: Sequence[int], vectors: Sequence[Sequence[float]]) -> None: ...
    def remove(self, id: int) -> bool: ...
    def search(self, query: Sequence[float], k: int, *, ef: Optional[int] = None) -> List[Tuple[int, float]]: ...
    def save(self, path: Union[str, "os.PathLike[str]"]) -> None: ...
    def __len__(self) -> int: ...

@final
class Retriever:
    """Ingests texts into a store and retrieves the chunks nearest a query."""

    def __new__(
        cls,
        store: EmbeddedStore,
        embedder: EmbeddingModel,
        *,
        top_k: int = 4,
        max_distance: Optional[float] = None,
        mmr: Optional[float] = None,
        where: Optional[Mapping[str, Any]] = None,
    ) -> Retriever: ...
    def ingest(
        self,
        source: str,
        text: str,
        *,
        metadata: Optional[Mapping[str, Any]] = None,
        chunk_size: int = 800,
        overlap: int = 100,
        markdown: bool = False,
    ) -> Awaitable[Dict[str, int]]: ...
    def retrieve(self, query: str) -> Awaitable[List[Dict[str, Any]]]: ...
    def as_tool(self, name: str = ..., description: str = ...) -> Tool: ...

@final
class Identity:
    """An Ed25519 key pair named by its ``did:key`` DID."""

    @staticmethod
    def generate() -> Identity: ...
    @staticmethod
    def from_secret_bytes(secret: bytes) -> Identity: ...
    @staticmethod
    def load(vault: Vault, name: str) -> Optional[Identity]: ...
    def store(self, vault: Vault, name: str) -> None: ...
    def secret_bytes(self) -> bytes: ...
    @property
    def did(self) -> str: ...
    def sign(self, message: bytes) -> bytes: ...

def verify_signature(signer: str, message: bytes, signature: bytes) -> None: ...
def did_document(did: str) -> Dict[str, Any]: ...
def issue_token(
    issuer: Identity,
    audience: str,
    capabilities: List[Tuple[str, str]],
    *,
    ttl: float = 3600.0,
    proofs: List[str] = ...,
) -> str: ...
def invoke_token(
    issuer: Identity,
    audience: str,
    capabilities: List[Tuple[str, str]],
    request_id: str,
    *,
    ttl: float = 60.0,
    proofs: List[str] = ...,
) -> str: ...

@final
class Verifier:
    """Checks consent tokens presented to one agent."""

    def __new__(
        cls,
        audience: str,
        trusted_roots: List[str],
        *,
        clock_skew: float = 60.0,
        replay_file: Optional[Union[str, "os.PathLike[str]"]] = None,
    ) -> Verifier: ...
    def authorize(self, token: str, resource: str, ability: str) -> Dict[str, Any]: ...
    def admit_invocation(
        self, token: str, invoker: str, request_id: str, resource: str, ability: str
    ) -> Dict[str, Any]: ...
    def revoke(self, token: str) -> None: ...
    def revoke_id(self, token_id: str) -> None: ...

def token_id(token: str) -> str: ...
def seal(sender: Identity, to: str, body: Any, *, kind: str = "direct") -> str: ...

@final
class Mailbox:
    """Opens sealed messages addressed to one identity."""

    def __new__(cls, identity: Identity) -> Mailbox: ...
    def open(self, sealed: str) -> Dict[str, Any]: ...
    def know(self, sender: str) -> None: ...

@final
class AuditLog:
    """An append-only, hash-chained audit log signed by one identity."""

    def __new__(cls, path: Union[str, "os.PathLike[str]"], identity: Identity) -> AuditLog: ...
    def append(self, kind: str, data: Any) -> Dict[str, Any]: ...
    @property
    def head(self) -> Dict[str, Any]: ...

def verify_audit_log(
    path: Union[str, "os.PathLike[str]"], signer: str, *, expected: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]: ...

class KaiError(Exception):
    """Every error kAI raises; ``kind`` names it, ``details`` holds its fields, ``state`` the run."""

    kind: str
    details: Mapping[str, Any]
    state: Optional[RunState]

class ConfigError(KaiError):
    message: str

class ProviderError(KaiError): ...
class AuthenticationError(ProviderError):
    message: str

class PermissionDeniedError(ProviderError):
    message: str

class RateLimitError(ProviderError):
    message: str
    retry_after: Optional[float]

class ContextTooLongError(ProviderError):
    message: str

class InvalidRequestError(ProviderError):
    message: str

class ServerError(ProviderError):
    message: str
    status: Optional[int]

class ProviderTimeoutError(ProviderError): ...
class TransportError(ProviderError):
    message: str

class MalformedResponseError(ProviderError):
    message: str
    snippet: str

class UnsupportedError(ProviderError):
    message: str

class RunError(KaiError):
    state: RunState

class ApprovalRequired(RunError):
    call_ids: List[str]

class RunCancelled(RunError): ...

class MaxStepsExceeded(RunError):
    max_steps: int

class DeadlineExceeded(RunError): ...

class InvalidOutputError(RunError):
    message: str
    attempts: int

class HookError(RunError):
    message: str

class ToolError(KaiError): ...
class VaultError(KaiError): ...
class StoreError(KaiError): ...
class KlpError(KaiError): ...
class ConsentError(KlpError): ...
