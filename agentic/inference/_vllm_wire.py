"""The JSON that goes to vLLM and comes back: request bodies, stop reasons, error bodies.

Pure functions, no I/O. Every field was checked against vLLM's own protocol source
(repository ``vllm-project/vllm``):

- ``vllm/entrypoints/openai/completion/protocol.py`` (``CompletionRequest``): ``prompt``,
  ``max_tokens`` (an omitted or null value becomes 16 through ``normalize_null_max_tokens``, so
  we always send one), ``stop``, ``stop_token_ids``, ``skip_special_tokens`` (default true),
  ``add_special_tokens`` (default true), ``stream_options`` (rejected unless ``stream`` is
  true), ``structured_outputs``; choices carry ``finish_reason`` and ``stop_reason`` ("the stop
  string or token id ... None if ... the EOS token").
- ``vllm/entrypoints/openai/chat_completion/protocol.py`` (``ChatCompletionRequest``): the same
  sampling extras, ``max_completion_tokens`` (``max_tokens`` is deprecated there; unset means the
  rest of the context), streamed text in ``choices[0].delta.content``.
- ``vllm/sampling_params.py`` (``StructuredOutputsParams``): ``{"json": <schema>}``; the old
  ``guided_json`` field is gone from current vLLM.
- ``vllm/v1/core/sched/utils.py`` (``check_stop``): the model's primary EOS stops with
  ``stop_reason`` None; a token from ``stop_token_ids`` stops with ``stop_reason`` = its id.
- ``vllm/v1/engine/detokenizer.py`` (``update``): the stop token's text is left out of the
  output unless ``include_stop_str_in_output``; we append it ourselves (see :func:`stop_of`).
- ``vllm/entrypoints/openai/engine/protocol.py`` (``ErrorResponse``): errors are
  ``{"error": {"message", "type", "param", "code"}}``; streams report them as a ``data:`` event
  with that shape, then ``data: [DONE]``.
- ``vllm/renderers/params.py`` and ``vllm/entrypoints/openai/engine/serving.py``: the wording of
  context-length errors (parsed by :func:`context_numbers`).
- ``vllm/entrypoints/openai/completion/serving.py``: streams are ``text/event-stream``, each
  event ``data: <json>\n\n``, the last one ``data: [DONE]\n\n`` (read by :class:`EventData`).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, assert_never

from agentic.llama.models import ModelSpec
from agentic.llama.tokens import (
    END_OF_MESSAGE,
    END_OF_TEXT,
    END_OF_TURN,
    EOM_ID,
    EOT_ID,
    PYTHON_TAG,
    SPECIAL_TOKEN_IDS,
)
from agentic.llama.tool_calls import encode_tool_call
from agentic.types import (
    AssistantMessage,
    BuiltinTool,
    Content,
    ImageContent,
    Message,
    SamplingParams,
    StopReason,
    SystemMessage,
    TextContent,
    ToolMessage,
    ToolPromptFormat,
    UserMessage,
    content_text,
)

MAX_EVENT_BYTES = 1024 * 1024
"""An unfinished event may hold this much (httpx2's default bound), so a server that never ends
an event cannot fill our memory."""

STOP_TOKEN_IDS: list[int] = [EOM_ID, EOT_ID]
"""Sent on every request, so eom/eot stop generation whatever generation config vLLM loaded."""

_TOKEN_OF_ID = {token_id: token for token, token_id in SPECIAL_TOKEN_IDS.items()}
_BODY_EXCERPT = 500


def sampling_fields(sampling: SamplingParams) -> dict[str, Any]:
    """The sampling settings that are set, under vLLM's names (``max_tokens`` is separate)."""
    fields: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p}
    for name in ("top_k", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed"):
        value = getattr(sampling, name)
        if value is not None:
            fields[name] = value
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    return fields


def _common_fields(
    model: str,
    sampling: SamplingParams,
    response_format: Mapping[str, Any] | None,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model} if model else {}
    body.update(sampling_fields(sampling))
    body["stop_token_ids"] = STOP_TOKEN_IDS
    body["skip_special_tokens"] = False  # keeps <|python_tag|> in the text
    # and no space glued after it (slow-tokenizer detokenizing), which would indent the code
    body["spaces_between_special_tokens"] = False
    body["add_special_tokens"] = False  # the prompt already starts with <|begin_of_text|>
    if response_format is not None:
        body["structured_outputs"] = {"json": dict(response_format)}
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def completion_body(
    model: str,
    prompt: str,
    sampling: SamplingParams,
    *,
    max_tokens: int | None,
    response_format: Mapping[str, Any] | None,
    stream: bool,
) -> dict[str, Any]:
    """A ``/v1/completions`` body for a fully rendered prompt."""
    body = _common_fields(model, sampling, response_format, stream)
    body["prompt"] = prompt
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def chat_body(
    model: str,
    messages: Sequence[Message],
    sampling: SamplingParams,
    *,
    response_format: Mapping[str, Any] | None,
    stream: bool,
) -> dict[str, Any]:
    """A ``/v1/chat/completions`` body (used for images, which completions cannot take)."""
    body = _common_fields(model, sampling, response_format, stream)
    body["messages"] = chat_messages(messages)
    if sampling.max_tokens is not None:
        body["max_completion_tokens"] = sampling.max_tokens
    return body


PASSTHROUGH_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
)
"""A chat template that outputs the text of the messages as is: a raw prompt rides the chat
endpoint unchanged. vLLM leaves an ``<|image|>`` already in the text in place (it adds
placeholders only for images the text lacks). vLLM 0.11 and later accept a request's
``chat_template`` only when started with ``--trust-request-chat-template``."""


def raw_prompt_chat_body(
    model: str,
    prompt: str,
    images: Sequence[ImageContent],
    sampling: SamplingParams,
    *,
    response_format: Mapping[str, Any] | None,
    stream: bool,
) -> dict[str, Any]:
    """A ``/v1/chat/completions`` body feeding ``prompt`` verbatim, with its images.

    The completions endpoint takes no images, so a raw prompt with images (Llama Guard 3
    11B-Vision) goes to the chat endpoint with :data:`PASSTHROUGH_TEMPLATE`, never through the
    model's own chat template (which would wrap the prompt a second time).
    """
    body = _common_fields(model, sampling, response_format, stream)
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image.url}} for image in images
    ]
    content.append({"type": "text", "text": prompt})
    body["messages"] = [{"role": "user", "content": content}]
    body["chat_template"] = PASSTHROUGH_TEMPLATE
    body["add_generation_prompt"] = False
    if sampling.max_tokens is not None:
        body["max_completion_tokens"] = sampling.max_tokens
    return body


def has_images(messages: Sequence[Message]) -> bool:
    """Whether any message carries an image part."""
    for message in messages:
        content = message.content
        if not isinstance(content, str) and any(isinstance(p, ImageContent) for p in content):
            return True
    return False


def _parts(content: Content, extra_text: str | None = None) -> str | list[dict[str, Any]]:
    if isinstance(content, str) and extra_text is None:
        return content
    items: list[TextContent | ImageContent]
    items = [TextContent(text=content)] if isinstance(content, str) else list(content)
    parts: list[dict[str, Any]] = []
    for part in items:
        if isinstance(part, ImageContent):
            parts.append({"type": "image_url", "image_url": {"url": part.url}})
        else:
            parts.append({"type": "text", "text": part.text})
    if extra_text:
        parts.append({"type": "text", "text": extra_text})
    return parts


def _chat_message(message: UserMessage | AssistantMessage | ToolMessage) -> dict[str, Any]:
    if isinstance(message, UserMessage):
        extra = f"\n\n{message.context}" if message.context else None
        return {"role": "user", "content": _parts(message.content, extra)}
    if isinstance(message, AssistantMessage):
        text = content_text(message.content)
        if not message.tool_calls:
            return {"role": "assistant", "content": text}
        # as Meta's ChatFormat writes history: the tag only before code, calls after the text
        code = message.tool_calls[0].builtin is BuiltinTool.code_interpreter
        calls = "".join(encode_tool_call(c, ToolPromptFormat.json) for c in message.tool_calls)
        return {"role": "assistant", "content": (PYTHON_TAG if code else "") + text + calls}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.call_id, "content": _parts(message.content)}
    assert_never(message)


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI chat messages with ``image_url`` parts (data URLs and http(s) URLs as given).

    System text is moved to the front of the first user message: the Llama 3.2 Vision chat
    template refuses a system message in a conversation that has images (see
    ``reference/llama_prompt_format.md`` §6).
    """
    system = "\n\n".join(content_text(m.content) for m in messages if isinstance(m, SystemMessage))
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        item = _chat_message(message)
        if system and item["role"] == "user":
            content = item["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            item["content"] = [{"type": "text", "text": system + "\n\n"}, *content]
            system = ""
        out.append(item)
    if system:  # no user message at all: keep the instructions as a user turn
        out.insert(0, {"role": "user", "content": system})
    return out


def eos_text(spec: ModelSpec | None) -> str:
    """The text of the model's primary EOS token: ``<|end_of_text|>`` for base models."""
    return END_OF_TEXT if spec is not None and spec.prompt_style == "base" else END_OF_TURN


def stop_of(
    finish_reason: str | None, stop_reason: int | str | None, eos: str
) -> tuple[StopReason, str] | None:
    """Our stop reason and the stop-token text vLLM left out of the output.

    ``None`` means the generation did not finish normally (``abort``, ``error``, or no reason).
    """
    if finish_reason == "length":
        return StopReason.out_of_tokens, ""
    if finish_reason != "stop":
        return None
    if stop_reason is None:  # the primary EOS
        return (StopReason.end_of_turn, eos)
    if stop_reason in (EOM_ID, END_OF_MESSAGE):
        return StopReason.end_of_message, END_OF_MESSAGE
    if isinstance(stop_reason, int):
        return StopReason.end_of_turn, _TOKEN_OF_ID.get(stop_reason, "")
    if stop_reason in SPECIAL_TOKEN_IDS:
        return StopReason.end_of_turn, stop_reason
    return StopReason.end_of_turn, ""  # a user stop string: OpenAI semantics, not in the text


def stop_text_of(text: str, suffix: str) -> str:
    """The stop token to append, unless the server already included it."""
    return "" if not suffix or text.endswith(suffix) else suffix


def token_upper_bound(prompt: str) -> int:
    """An upper bound on the Llama 3 token count: every token is at least one UTF-8 byte."""
    return len(prompt.encode("utf-8"))


def error_message(body: str) -> tuple[str, Mapping[str, Any]]:
    """The human message of an error body and its ``error`` object (empty if none)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:_BODY_EXCERPT].strip() or "(empty body)", {}
    if not isinstance(payload, dict):
        return body[:_BODY_EXCERPT], {}
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or body[:_BODY_EXCERPT]), error
    if isinstance(error, str):
        return error, {}
    message = payload.get("message") or payload.get("detail") or body[:_BODY_EXCERPT]
    return str(message), payload  # the pre-0.7 vLLM shape: {"object": "error", "message": ...}


def excerpt(body: str) -> str:
    return body[:_BODY_EXCERPT]


def is_model_missing(status: int, message: str, error: Mapping[str, Any]) -> bool:
    """vLLM's 404 for an unknown model (``The model `x` does not exist.``, param ``model``)."""
    return status == 404 and (error.get("param") == "model" or "does not exist" in message)


_CONTEXT_WORDS = ("context length", "max_model_len", "maximum context")


def is_context_error(status: int, message: str) -> bool:
    lowered = message.lower()
    return status == 400 and any(word in lowered for word in _CONTEXT_WORDS)


_MAX_LEN_PATTERNS = (
    re.compile(r"context length is (?:only )?(\d+)"),
    re.compile(r"max_model_len=(?:max_total_tokens=)?(\d+)"),
    re.compile(r"maximum context length \((\d+)\)"),
)
_PROMPT_PATTERNS = (
    re.compile(r"(\d+) input tokens"),
    re.compile(r"Input length \((\d+)\)"),
    re.compile(r"\((\d+) in the messages"),
)


def _first_int(patterns: Sequence[re.Pattern[str]], text: str) -> int | None:
    for pattern in patterns:
        if match := pattern.search(text):
            return int(match.group(1))
    return None


def context_numbers(message: str) -> tuple[int | None, int | None]:
    """``(prompt_tokens, max_model_len)`` from the wordings vLLM has used."""
    return _first_int(_PROMPT_PATTERNS, message), _first_int(_MAX_LEN_PATTERNS, message)


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def serve_hint(model: str, spec: ModelSpec | None, port: int | None) -> str:
    """How to start a server for ``model``: the ``vllm serve`` command and ours."""
    name = spec.id if spec is not None else model or "<model>"
    args = list(spec.vllm_args) if spec is not None else []
    if port is not None and port != 8000:
        args += ["--port", str(port)]
    command = " ".join(["vllm serve", name, *args])
    return f"Start one with:\n  {command}\nor: agentic model serve {name}"


# -- server-sent events -------------------------------------------------------------------


class EventStreamError(Exception):
    """The body is not a server-sent event stream we can read (turned into a typed error)."""


def check_event_stream(content_type: str | None) -> None:
    """Raise :class:`EventStreamError` unless the ``content-type`` is ``text/event-stream``."""
    media = (content_type or "").partition(";")[0].strip()
    if media.lower() != "text/event-stream":
        raise EventStreamError(f"expected content type 'text/event-stream', got {media!r}")


class EventData:
    """The ``data`` of each server-sent event in a byte stream, fed chunk by chunk.

    Follows the WHATWG event-stream rules: lines end in LF, CRLF or CR; a blank line ends an
    event; its ``data`` lines are joined with LF; comments and the other fields (``event``,
    ``id``, ``retry``) are skipped, as is an event without data; an unfinished event at the end
    of the stream is dropped. Works on bytes, not decoded text: a read holding one whole event
    (vLLM's usual chunk) costs one ``split`` and one slice.
    """

    __slots__ = ("_cr", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._cr = False  # the last chunk ended in CR: a LF starting the next one ends no line

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of the events this chunk completes."""
        if self._cr and chunk:
            self._cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            self._cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, self._pending = buffer.split(b"\n\n")
        if len(self._pending) > MAX_EVENT_BYTES:
            raise EventStreamError(f"an event is longer than {MAX_EVENT_BYTES} bytes")
        if len(blocks) == 1:  # the usual case: one event per chunk
            data = _event_data(blocks[0])
            return [] if data is None else [data]
        return [data for block in blocks if (data := _event_data(block)) is not None]


def _event_data(block: bytes) -> bytes | None:
    """The data of one event's lines (``None`` if it has no ``data`` field)."""
    if block.startswith(b"data:") and b"\n" not in block:  # vLLM's shape: one data line
        return block[6:] if block.startswith(b"data: ") else block[5:]
    values = []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        if name == b"data":
            values.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(values) if values else None


_DECODER = json.JSONDecoder()


def event_json(data: bytes) -> Any:
    """An event's JSON, as ``json.loads`` reads it, with one pass of the C scanner when it can.

    Invalid UTF-8 turns into U+FFFD, as when the stream was decoded as text.
    """
    text = data.decode("utf-8", "replace")
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:  # leading whitespace, or not JSON: json.loads decides
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
