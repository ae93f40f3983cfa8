"""The tool seam: what a tool is, what it may ask for, and what one call of it produced.

A :class:`Tool` is tiny on purpose (a definition, a timeout, an async ``call``); the executor
adds concurrency, timeouts, error reporting, escaping and truncation around any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from agentic.errors import ConfigError
from agentic.llama.tokens import escape_special_tokens
from agentic.types import (
    Artifact,
    Content,
    ContentPart,
    Document,
    ImageContent,
    TextContent,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    _CompactRepr,
)

__all__ = [
    "Tool",
    "ToolContext",
    "ToolErrorKind",
    "ToolLifecycle",
    "ToolOutput",
    "ToolResponse",
    "ToolResult",
    "ToolRetry",
]

DepsT = TypeVar("DepsT")
DEFAULT_MAX_OUTPUT_CHARS: Final = 20_000
_PARTS: Final = (TextContent, ImageContent)

ToolOutput: TypeAlias = object
"""What a tool may return: text, content parts, an image, a pydantic model or anything
JSON-able. The executor turns it into :data:`~agentic.types.Content` for the model."""


@dataclass(frozen=True, slots=True)
class ToolContext(Generic[DepsT]):
    """What a tool may ask for by annotating a parameter with ToolContext (or ToolContext[X])."""

    deps: DepsT
    """The object passed as ``Agent(deps=...)`` (None if none): clients, settings, user data."""
    session_id: str
    turn_id: str
    call: ToolCall
    """The call being executed."""
    documents: tuple[Document, ...] = ()
    """The documents attached to the turn (the code interpreter can load them as files)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returns when it has files to hand back besides its output.

    ``content`` goes to the model like any other output; ``artifacts`` ride on the
    :class:`ToolResponse` and the turn for the caller, never into the prompt.
    """

    content: ToolOutput
    artifacts: tuple[Artifact, ...] = ()


class ToolRetry(Exception):
    """Raised by a tool to send its message back to the model verbatim, so it can try again.

    A signal, not an error: say what was wrong and how to call the tool instead
    (``raise ToolRetry("no city named 'Pariss'; did you mean 'Paris'?")``).
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@runtime_checkable
class Tool(Protocol):
    """Anything with a definition and an async call. Tiny on purpose.

    ``call`` raises :class:`~agentic.errors.ToolArgumentsError` when the arguments do not
    validate, :class:`ToolRetry` to tell the model something, and anything else on failure.
    """

    @property
    def definition(self) -> ToolDefinition:
        """The name, description and parameter schema the model sees."""
        ...

    @property
    def timeout(self) -> float | None:
        """Seconds a call may take; None leaves it to the executor's default."""
        ...

    async def call(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> ToolOutput:
        """Run the tool on the model's (unvalidated) arguments."""
        ...


@runtime_checkable
class ToolLifecycle(Protocol):
    """Optional hooks for tools that hold resources (sandbox workers, connections).

    The agent calls ``close_session`` when a session is deleted, and ``aclose`` when it closes
    a tool it created from a built-in name. A tool you construct yourself is yours to close.
    """

    async def close_session(self, session_id: str) -> None:
        """Release what the tool keeps for one session."""
        ...

    async def aclose(self) -> None:
        """Release everything."""
        ...


class ToolErrorKind(StrEnum):
    """Why a tool call produced an error result instead of the tool's output."""

    invalid_arguments = "invalid_arguments"
    unknown_tool = "unknown_tool"
    exception = "exception"
    timeout = "timeout"
    unparsable = "unparsable"
    rejected = "rejected"
    retry = "retry"
    """The tool raised :class:`ToolRetry`: its message is the content."""


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class ToolResponse(_CompactRepr):
    """What one call produced, as recorded in a ToolExecutionStep and sent back to the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str
    tool_name: str
    content: Content
    """Exactly what the model will see: special tokens escaped, truncated to the cap."""
    error: ToolErrorKind | None = None
    truncated: bool = False
    started_at: AwareDatetime = Field(default_factory=utcnow)
    completed_at: AwareDatetime = Field(default_factory=utcnow)
    artifacts: list[Artifact] = Field(default_factory=list)
    """Files the tool made that are not part of ``content`` (code-interpreter figures)."""

    @property
    def duration(self) -> float:
        """Seconds from start to completion."""
        return (self.completed_at - self.started_at).total_seconds()

    def to_message(self) -> ToolMessage:
        """The tool message that carries this result to the model."""
        return ToolMessage(call_id=self.call_id, tool_name=self.tool_name, content=self.content)

    @classmethod
    def from_output(
        cls,
        call: ToolCall,
        output: ToolOutput,
        *,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        error: ToolErrorKind | None = None,
        started_at: datetime | None = None,
    ) -> ToolResponse:
        """The response carrying ``output`` (or an error message) for ``call``.

        The output becomes content (see :func:`to_content`), every text in it has its special
        tokens escaped, and the text is cut to ``max_output_chars`` with a visible marker.
        """
        artifacts: list[Artifact] = []
        if isinstance(output, ToolResult):
            artifacts = list(output.artifacts)
            output = output.content
        content, truncated = _fit(to_content(output), max_output_chars)
        completed = utcnow()
        return cls(
            artifacts=artifacts,
            call_id=call.call_id,
            tool_name=call.tool_name,
            content=content,
            error=error,
            truncated=truncated,
            started_at=started_at or completed,
            completed_at=completed,
        )


def validation_details(exc: ValidationError) -> str:
    """A pydantic error as one compact line per field, for a model to read and fix its call."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        detail = f"{where}: {err['msg']}"
        if err["type"] not in ("missing", "extra_forbidden"):
            detail += f" (got {_short_repr(err.get('input'))})"
        parts.append(detail)
    return "; ".join(parts)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_limits(owner: str, timeout: float | None, max_output_chars: int | None) -> None:
    """Reject a timeout or output cap that would make every call fail."""
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"{owner}: timeout must be a positive number of seconds or None")
    if max_output_chars is not None and max_output_chars < 1:
        raise ConfigError(f"{owner}: max_output_chars must be at least 1")


def to_content(output: ToolOutput) -> Content:
    """A tool's return value as content: text and parts kept, anything else as JSON."""
    if isinstance(output, str):
        return output
    if output is None:
        return ""
    if isinstance(output, _PARTS):
        return [output]
    if isinstance(output, list) and _is_parts(output):
        return [TextContent(text=p) if isinstance(p, str) else p for p in output]
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    try:
        return json.dumps(output, ensure_ascii=False, default=_jsonable)
    except (TypeError, ValueError, RecursionError):  # circular, or keys JSON cannot have
        return str(output)


def _is_parts(items: list[Any]) -> bool:
    """A list of content parts (plain strings allowed among them as text parts)."""
    return any(isinstance(p, _PARTS) for p in items) and all(
        isinstance(p, (str, *_PARTS)) for p in items
    )


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, fallback=str)


def _fit(content: Content, cap: int) -> tuple[Content, bool]:
    """Escape special tokens in every text, then cut the text to ``cap`` characters."""
    if isinstance(content, str):
        text = escape_special_tokens(content)
        return (text, False) if len(text) <= cap else (_cut(text, cap, len(text) - cap), True)
    parts: list[ContentPart] = [_escape_part(p) for p in content]
    total = sum(len(p.text) for p in parts if isinstance(p, TextContent))
    if total <= cap:
        return parts, False
    kept: list[ContentPart] = []
    budget = cap
    for part in parts:
        if isinstance(part, ImageContent):
            kept.append(part)
        elif budget >= len(part.text):
            kept.append(part)
            budget -= len(part.text)
        elif budget >= 0:
            kept.append(TextContent(text=_cut(part.text, budget, total - cap)))
            budget = -1  # the marker is placed; later text parts are dropped
    return kept, True


def _escape_part(part: ContentPart) -> ContentPart:
    if isinstance(part, TextContent) and "<|" in part.text:
        return TextContent(text=escape_special_tokens(part.text))
    return part


def _cut(text: str, keep: int, dropped: int) -> str:
    return f"{text[:keep]}\n…[truncated: {dropped} more characters]"
