"""The one interface every inference backend implements, and the data it speaks."""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentic.errors import InferenceError
from agentic.types import (
    ImageContent,
    Message,
    SamplingParams,
    StopReason,
    ToolChoice,
    ToolDefinition,
    ToolPromptFormat,
    Usage,
    as_messages,
)

__all__ = [
    "Completion",
    "InferenceBackend",
    "InferenceRequest",
    "TextDelta",
    "Timings",
    "complete",
]


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """What to generate: a conversation to render (or a raw prompt) plus sampling settings.

    ``prompt`` bypasses rendering: guard models and base models get exactly that text.
    ``images`` travel with a raw ``prompt`` whose text already holds one ``<|image|>`` per image
    (Llama Guard 3 11B-Vision); images inside ``messages`` stay in their messages.
    ``cache_key`` names a conversation whose prompts grow append-only (a session id), so the
    backend renders only the new messages onto the cached prefix.
    """

    model: str
    messages: Sequence[Message] = ()
    tools: Sequence[ToolDefinition] = ()
    tool_choice: ToolChoice = "auto"
    tool_prompt_format: ToolPromptFormat | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_format: Mapping[str, Any] | None = None
    """A JSON schema the answer must follow (vLLM guided decoding)."""
    prompt: str | None = None
    today: _dt.date | None = None
    cache_key: str | None = None
    images: Sequence[ImageContent] = ()
    prompt_tokens: int | None = None
    """At least the token count of ``prompt``, when the caller has it (the agent counted for its
    context budget): the backend then sizes ``max_tokens`` without counting again."""

    @classmethod
    def create(
        cls, model: str, messages: Sequence[Message | Mapping[str, Any]] = (), **kwargs: Any
    ) -> InferenceRequest:
        """Build a request, converting OpenAI-style message dicts."""
        return cls(model=model, messages=as_messages(messages), **kwargs)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of raw model text, special tokens included."""

    text: str


@dataclass(frozen=True, slots=True)
class Timings:
    time_to_first_token: float | None
    """Seconds from sending the request to the first text delta (None if no text came)."""
    total: float


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of a generation: all raw text, why it stopped, token usage and timings."""

    text: str
    stop_reason: StopReason
    usage: Usage
    timings: Timings


@runtime_checkable
class InferenceBackend(Protocol):
    """Stream raw text: any number of :class:`TextDelta`, then one :class:`Completion`.

    Cancelling the consumer (closing the async generator) must stop the generation.
    """

    def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]: ...


async def complete(backend: InferenceBackend, request: InferenceRequest) -> Completion:
    """Run a request to its end and return the :class:`Completion`."""
    final: Completion | None = None
    async for item in backend.stream(request):
        if isinstance(item, Completion):
            final = item
    if final is None:
        raise InferenceError(f"{type(backend).__name__}.stream ended without a Completion")
    return final
