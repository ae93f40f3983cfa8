"""What callers hand a session, checked and converted: user messages, images, documents and
client-side tool results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agentic.agent.config import AgentConfig
from agentic.errors import ConfigError, SessionStateError, UnsupportedFeatureError
from agentic.llama.models import ModelSpec
from agentic.tools.base import ToolErrorKind, ToolResponse, ToolResult
from agentic.tools.executor import failure_message
from agentic.types import (
    Content,
    ContentPart,
    Document,
    ImageContent,
    TextContent,
    ToolCall,
    ToolMessage,
    UserMessage,
    as_message,
)

__all__ = ["client_responses", "documents_of", "user_message"]


def _image(value: ImageContent | str | Path | bytes) -> ImageContent:
    if isinstance(value, ImageContent):
        return value
    if isinstance(value, bytes):
        return ImageContent.from_bytes(value)
    if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
        return ImageContent.from_url(value)
    return ImageContent.from_path(value)


def _parts(content: Content) -> list[ContentPart]:
    return [TextContent(text=content)] if isinstance(content, str) else list(content)


def user_message(
    message: str | Content | UserMessage | Mapping[str, Any],
    images: Sequence[ImageContent | str | Path | bytes],
    spec: ModelSpec,
    *,
    tools: Sequence[str] = (),
) -> UserMessage:
    """The turn's user message, images first (as Llama 3.2 Vision expects them).

    ``tools``: the tools the agent offers the model; Llama 3.2 Vision cannot call tools with
    an image in the prompt, so an image is refused here rather than by the server mid-turn.
    """
    if isinstance(message, UserMessage):
        user = message
    elif isinstance(message, Mapping):
        converted = as_message(message)
        if not isinstance(converted, UserMessage):
            raise ConfigError(f"a turn starts with a user message, not a {converted.role!r} one")
        user = converted
    else:
        user = UserMessage(content=message)
    if images:
        pictures: list[ContentPart] = [_image(i) for i in images]
        user = user.model_copy(update={"content": [*pictures, *_parts(user.content)]})
    has_image = not isinstance(user.content, str) and any(
        isinstance(p, ImageContent) for p in user.content
    )
    if has_image and not spec.vision:
        raise UnsupportedFeatureError(
            f"{spec.id} cannot see images; use a vision model such as "
            "meta-llama/Llama-3.2-11B-Vision-Instruct"
        )
    if has_image and tools:
        raise UnsupportedFeatureError(
            f"{spec.id} cannot call tools with an image in the prompt, and this agent offers "
            f"tools ({', '.join(tools)}); ask an agent without tools (or with "
            "tool_choice='none') about the image, then give what it found to this one"
        )
    return user


def documents_of(documents: Sequence[Document | str | Path]) -> list[Document]:
    """Documents from objects, text, or paths of text files."""
    out = []
    for doc in documents:
        if isinstance(doc, Document):
            out.append(doc)
        elif isinstance(doc, Path):
            out.append(Document.from_path(doc))
        else:
            out.append(Document(content=doc))
    return out


_Given = tuple[Any, ToolErrorKind | None]
"""A client's result for one call: the output, and the error kind when the tool failed."""


def _given(value: Any, name: str) -> _Given:
    """A result value as the caller gave it: a :class:`ToolResponse` keeps its error kind, a
    :class:`ToolMessage` gives its content, and an exception says the tool failed."""
    if isinstance(value, ToolResponse):
        return ToolResult(value.content, tuple(value.artifacts)), value.error
    if isinstance(value, ToolMessage):
        return value.content, None
    if isinstance(value, BaseException):
        return failure_message(name, value), ToolErrorKind.exception
    return value, None


def _given_dict(item: Mapping[str, Any]) -> _Given:
    """A ``{'call_id', 'content' | 'output', 'error'}`` result: ``error`` is an error kind,
    or the message of a failure (the content when there is none)."""
    error = item.get("error")
    content = item.get("content", item.get("output"))
    if not error:
        return ("" if content is None else content), None
    kinds = {k.value for k in ToolErrorKind}
    if isinstance(error, str) and error in kinds:
        return ("" if content is None else content), ToolErrorKind(error)
    return (error if content is None else content), ToolErrorKind.exception


def _by_call(results: Any, names: Mapping[str, str]) -> dict[str, _Given]:
    """Results keyed by call id, from a mapping or a list of messages / responses / dicts."""
    if isinstance(results, Mapping):
        return {str(k): _given(v, names.get(str(k), "")) for k, v in results.items()}
    if isinstance(results, str | bytes) or not isinstance(results, Iterable):
        raise ConfigError(
            "tool results must be {call_id: result, ...} (the ids of the turn's "
            f"pending_tool_calls) or a list of ToolMessage; got {results!r}"
        )
    out: dict[str, _Given] = {}
    for item in results:
        if isinstance(item, ToolMessage | ToolResponse):
            call_id = item.call_id
            given = _given(item, names.get(call_id, ""))
        elif isinstance(item, Mapping) and "call_id" in item:
            call_id = str(item["call_id"])
            given = _given_dict(item)
        else:
            raise ConfigError(
                "tool results must be {call_id: result} or a list of ToolMessage / "
                f"{{'call_id': ..., 'content': ...}}; got {item!r}"
            )
        if call_id in out:
            raise SessionStateError(f"cannot resume: two results for {call_id}")
        out[call_id] = given
    return out


def client_responses(
    pending: Sequence[ToolCall], results: Any, config: AgentConfig
) -> list[ToolResponse]:
    """Client tool results as responses in call order; every pending call needs one."""
    given = _by_call(results, {c.call_id: c.tool_name for c in pending})
    expected = {c.call_id for c in pending}
    missing = [f"{c.tool_name} ({c.call_id})" for c in pending if c.call_id not in given]
    unknown = sorted(set(given) - expected)
    if missing or unknown:
        detail = []
        if missing:
            detail.append(f"missing results for {', '.join(missing)}")
        if unknown:
            detail.append(f"no pending call has id {', '.join(unknown)}")
        raise SessionStateError("cannot resume: " + "; ".join(detail))
    limit = config.max_tool_output_chars
    return [
        ToolResponse.from_output(
            call, given[call.call_id][0], max_output_chars=limit, error=given[call.call_id][1]
        )
        for call in pending
    ]
