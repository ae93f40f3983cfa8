"""The one exception tree of llama-agentic.

```
AgenticError
├── UserError                      a mistake in how the framework is used; fix the code or config
│   ├── ConfigError                invalid configuration (message says how to fix it)
│   ├── UnknownModelError          a model the capability table does not know
│   ├── UnsupportedFeatureError    a model asked for what it cannot do (vision, tool format...)
│   ├── MissingDependencyError     an optional extra is not installed (also an ImportError)
│   ├── SessionNotFoundError       no session with that id (it was never created or was deleted)
│   ├── SessionExistsError         create_session was given the id of an existing session
│   ├── SessionBusyError           a turn is already running on that session
│   ├── SessionStateError          the session cannot do that now (e.g. awaiting tool results)
│   └── TurnNotFoundError          no turn (or step) with that id in the session (a LookupError)
├── AnswerFormatError              an answer does not fit the response format asked for
├── ToolError                      a tool could not run as called (the executor tells the model)
│   ├── ToolArgumentsError         the call's arguments do not fit the tool's parameters
│   └── SearchError                a search / knowledge API (Brave, Wolfram|Alpha) failed
├── MemoryBankError                a memory bank could not do what was asked
│   ├── DocumentError              input that cannot be ingested: unsupported, empty, too large
│   ├── DocumentNotFoundError      no document with that id in the bank
│   ├── EmbeddingMismatchError     the bank was built with another embedding model or dimension
│   └── MemoryStoreUnavailableError  the Chroma server cannot be reached (says how to start one)
└── InferenceError                 talking to a model backend failed
    ├── BackendUnavailableError    server unreachable / connection refused (says how to start one)
    ├── BackendTimeoutError        no answer in time
    ├── ModelNotFoundError         the server does not serve that model (lists what it has)
    ├── ContextLengthError         the prompt does not fit the model's context (with the counts)
    └── BackendResponseError       any other error status or malformed reply (with status and body)
        └── RateLimitedError       429 / 503 after the retries ran out
```

Exceptions are plain values: no logging, no I/O in constructors. Signals that user code raises
to steer a run (``agentic.tools.ToolRetry``) are not errors and live outside this tree.
"""

from __future__ import annotations

import os

__all__ = [
    "AgenticError",
    "AnswerFormatError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigError",
    "ContextLengthError",
    "DocumentError",
    "DocumentNotFoundError",
    "EmbeddingMismatchError",
    "InferenceError",
    "MemoryBankError",
    "MemoryStoreUnavailableError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "RateLimitedError",
    "SearchError",
    "SessionBusyError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionStateError",
    "ToolArgumentsError",
    "ToolError",
    "TurnNotFoundError",
    "UnknownModelError",
    "UnsupportedFeatureError",
    "UserError",
]


class AgenticError(Exception):
    """Root of every exception raised by llama-agentic."""


class UserError(AgenticError):
    """The framework was used in a way that cannot work; the message says how to fix it."""


class ConfigError(UserError):
    """Invalid configuration, found when it is read or when an agent is built."""


class UnknownModelError(UserError):
    """A model id that the capability table does not know."""

    def __init__(self, model: str, known: list[str], closest: str | None = None) -> None:
        self.model = model
        self.known = known
        self.closest = closest
        hint = f" Did you mean {closest!r}?" if closest else ""
        super().__init__(
            f"unknown model {model!r}.{hint} Known models: {', '.join(known)}. "
            "Declare others with agentic.llama.models.register_model(ModelSpec(...))."
        )


class UnsupportedFeatureError(UserError):
    """A model was asked for a capability it does not have."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed. Install it with: pip install 'llama-agentic[{extra}]'"
        )


class SessionNotFoundError(UserError):
    """No session with that id exists in the agent's store."""

    def __init__(
        self,
        session_id: str,
        *,
        agent: str | None = None,
        owner: str | None = None,
        listing: str = "agent.list_sessions()",
    ) -> None:
        self.session_id = session_id
        self.owner = owner
        if owner is not None:
            message = (
                f"session {session_id!r} belongs to agent {owner!r}, not {agent!r}: open it "
                f"with an agent named {owner!r} (an agent sees only its own sessions)"
            )
        else:
            message = f"no session {session_id!r}; list sessions with {listing}"
        super().__init__(message)


class SessionExistsError(UserError):
    """``create_session`` was given the id of a session that already exists."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} already exists: continue it with "
            f"agent.get_session({session_id!r}), or create the new one with another id"
        )


class SessionBusyError(UserError):
    """A second turn was started on a session while one was running (in this process or in
    another one sharing the session database)."""

    def __init__(self, session_id: str, *, holder: str | None = None) -> None:
        self.session_id = session_id
        self.holder = holder
        """Which other process runs the turn (None: this one)."""
        if holder is None:
            where = ""
        elif holder.startswith(f"process {os.getpid()} "):
            where = f" in another Agent of this process, on the same database ({holder})"
        else:
            where = f" in another process ({holder})"
        super().__init__(
            f"session {session_id!r} is already running a turn{where}; turns on one session "
            "run one at a time (wait for it, or use another session)"
        )


class SessionStateError(UserError):
    """The session is not in a state that allows the call (the message says what to do)."""


class TurnNotFoundError(UserError, LookupError):
    """No turn (or no step of a turn) with that id."""


class AnswerFormatError(AgenticError, ValueError):
    """A turn's answer does not parse as the response format asked for (``Turn.parse``)."""


class ToolError(AgenticError):
    """A tool call could not be run; the tool executor turns it into a result for the model."""


class ToolArgumentsError(ToolError):
    """The arguments of a tool call do not validate; ``details`` says which and why."""

    def __init__(self, tool_name: str, details: str) -> None:
        self.tool_name = tool_name
        self.details = details
        super().__init__(f"invalid arguments for tool {tool_name!r}: {details}")


class SearchError(ToolError):
    """A web-search or knowledge API call failed; the message is written for the model to read.

    ``status_code`` is the HTTP status when the service answered, None when it did not (or
    when the client library hid it).
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class MemoryBankError(AgenticError):
    """A memory bank could not ingest, list, delete or query as asked."""


class DocumentError(MemoryBankError):
    """A document that cannot be ingested: unsupported type, no text, too large, unreadable.

    ``source`` names the file, URL or document id the message is about.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(message)


class DocumentNotFoundError(MemoryBankError):
    """No document with that id in the bank (list them with ``bank.list_documents()``)."""

    def __init__(self, bank_id: str, document_id: str) -> None:
        self.bank_id = bank_id
        self.document_id = document_id
        super().__init__(
            f"memory bank {bank_id!r} has no document {document_id!r}; "
            "list them with bank.list_documents()"
        )


class EmbeddingMismatchError(MemoryBankError):
    """A bank built with one embedding model was opened or queried with another."""


class MemoryStoreUnavailableError(MemoryBankError):
    """The Chroma server holding the banks cannot be reached."""


class InferenceError(AgenticError):
    """A model backend could not produce a completion."""


class BackendUnavailableError(InferenceError):
    """The inference server could not be reached."""


class BackendTimeoutError(InferenceError):
    """The inference server did not answer in time."""


class ModelNotFoundError(InferenceError):
    """The server does not serve the requested model."""

    def __init__(self, model: str, available: list[str]) -> None:
        self.model = model
        self.available = available
        have = ", ".join(available) if available else "none"
        super().__init__(f"the server does not serve model {model!r}; it serves: {have}")


class ContextLengthError(InferenceError):
    """The prompt plus the requested completion does not fit the model's context."""

    def __init__(
        self, message: str, *, prompt_tokens: int | None = None, max_model_len: int | None = None
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_model_len = max_model_len
        super().__init__(message)


class BackendResponseError(InferenceError):
    """The server answered with an error status or a reply we cannot read."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class RateLimitedError(BackendResponseError):
    """The server kept answering 429/503 after every retry."""
