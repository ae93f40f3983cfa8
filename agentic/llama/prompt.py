"""Rendering conversations into the exact Llama 3.x prompt text. Pure functions, byte-exact.

Two layers, as in Meta's reference code:

- :func:`format_dialog` is the chat format (llama-models ``ChatFormat``): it encodes the messages
  it is given and nothing else.
- :func:`assemble_messages` builds the system prompt (built-in tools, date lines, custom-tool
  descriptions, ``tool_choice``) the way llama-stack does for each model family, and
  :func:`render_prompt` formats the result.

:class:`PromptCache` gives the same strings for growing conversations while encoding only the
messages that are new since the previous call.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentic.errors import ConfigError, UnsupportedFeatureError
from agentic.llama import system_prompts as sp
from agentic.llama.models import ModelSpec, resolve_model
from agentic.llama.tokens import (
    BEGIN_OF_TEXT,
    END_HEADER,
    END_OF_MESSAGE,
    END_OF_TURN,
    IMAGE,
    PYTHON_TAG,
    START_HEADER,
)
from agentic.llama.tool_calls import encode_tool_call
from agentic.types import (
    AssistantMessage,
    BuiltinTool,
    Content,
    ContentPart,
    ImageContent,
    Message,
    StopReason,
    SystemMessage,
    TextContent,
    ToolChoice,
    ToolDefinition,
    ToolPromptFormat,
    UserMessage,
    as_message,
)

__all__ = [
    "MessageLike",
    "PromptCache",
    "PromptCacheStats",
    "assemble_messages",
    "format_base",
    "format_dialog",
    "format_message",
    "render_prompt",
    "resolve_tool_format",
]

MessageLike = Message | Mapping[str, Any]

_ROLE_HEADER = {
    "system": f"{START_HEADER}system{END_HEADER}\n\n",
    "user": f"{START_HEADER}user{END_HEADER}\n\n",
    "assistant": f"{START_HEADER}assistant{END_HEADER}\n\n",
    "tool": f"{START_HEADER}ipython{END_HEADER}\n\n",  # Llama's name for tool results
}
_GENERATION_PROMPT = _ROLE_HEADER["assistant"]


# --- chat format -------------------------------------------------------------------------------


def _content(content: Content) -> str:
    """Text parts concatenated with no separator, each image as one ``<|image|>`` in place."""
    if isinstance(content, str):
        return content
    return "".join(p.text if isinstance(p, TextContent) else IMAGE for p in content)


def _assistant_body(message: AssistantMessage, fmt: ToolPromptFormat) -> str:
    calls = message.tool_calls
    # Since llama-models b6dad01 only code_interpreter history gets the tag, whatever the docs show.
    tag = PYTHON_TAG if calls and calls[0].builtin is BuiltinTool.code_interpreter else ""
    return tag + _content(message.content) + "".join(encode_tool_call(c, fmt) for c in calls)


def _encode_message(message: Message, fmt: ToolPromptFormat) -> str:
    """One message: header, body verbatim (never trimmed), then ``<|eom_id|>`` or ``<|eot_id|>``."""
    end = END_OF_TURN
    if isinstance(message, AssistantMessage):
        body = _assistant_body(message, fmt)
        if message.stop_reason is StopReason.end_of_message:
            end = END_OF_MESSAGE
    elif isinstance(message, UserMessage) and message.context is not None:
        body = _content(message.content) + "\n\n" + message.context
    else:
        body = _content(message.content)
    return _ROLE_HEADER[message.role] + body + end


def format_message(
    message: MessageLike, *, tool_prompt_format: ToolPromptFormat = ToolPromptFormat.json
) -> str:
    """One message in the chat format, as it appears inside a dialog."""
    return _encode_message(as_message(message), tool_prompt_format)


def format_dialog(
    messages: Sequence[MessageLike],
    *,
    tool_prompt_format: ToolPromptFormat = ToolPromptFormat.json,
    add_generation_prompt: bool = True,
) -> str:
    """Meta's ChatFormat encoding of ``messages`` as given (no system prompt assembly).

    ``tool_prompt_format`` decides how custom tool calls in the assistant history are written.
    With ``add_generation_prompt`` the text ends with an open assistant header for the model.
    """
    parts = [BEGIN_OF_TEXT]
    parts.extend(_encode_message(as_message(m), tool_prompt_format) for m in messages)
    if add_generation_prompt:
        parts.append(_GENERATION_PROMPT)
    return "".join(parts)


def format_base(content: Content) -> str:
    """A base (pretrained) model prompt: ``<|begin_of_text|>`` + text, images as ``<|image|>``.

    Unlike the reference, empty list content still gives ``<|begin_of_text|>``.
    """
    return BEGIN_OF_TEXT + _content(content)


# --- tools and tool_choice ---------------------------------------------------------------------


@dataclass(frozen=True)
class _ToolPlan:
    """The validated tool options of one request."""

    tools: tuple[ToolDefinition, ...]
    """Every tool in the prompt, in request order (empty with ``tool_choice="none"``)."""
    fmt: ToolPromptFormat
    """The custom-tool format, also used to write past custom calls in the history."""
    choice_sentence: str

    @property
    def builtin(self) -> tuple[ToolDefinition, ...]:
        return tuple(t for t in self.tools if t.is_builtin)

    @property
    def custom(self) -> tuple[ToolDefinition, ...]:
        return tuple(t for t in self.tools if not t.is_builtin)


def _resolve_format(spec: ModelSpec, requested: ToolPromptFormat | None) -> ToolPromptFormat:
    if requested is None:
        return spec.default_tool_format or ToolPromptFormat.json
    try:
        fmt = ToolPromptFormat(requested)
    except ValueError:
        known = ", ".join(f.value for f in ToolPromptFormat)
        raise ConfigError(f"unknown tool prompt format {requested!r} (known: {known})") from None
    if fmt not in spec.tool_formats:
        supported = ", ".join(f.value for f in spec.tool_formats) or "none"
        raise UnsupportedFeatureError(
            f"{spec.id} does not take the {fmt.value!r} tool prompt format (supported: {supported})"
        )
    return fmt


def resolve_tool_format(
    model: str | ModelSpec, requested: ToolPromptFormat | str | None = None
) -> ToolPromptFormat:
    """The custom-tool format a model's prompts use: ``requested`` if it supports it, else its
    default. Raises :class:`UnsupportedFeatureError` for a format the model does not take."""
    spec = model if isinstance(model, ModelSpec) else resolve_model(model)
    return _resolve_format(spec, ToolPromptFormat(requested) if requested else None)


def _check_tools(spec: ModelSpec, tools: Sequence[ToolDefinition]) -> None:
    names = [t.name for t in tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"tool names must be unique; repeated: {', '.join(dupes)}")
    builtin = [t.name for t in tools if t.is_builtin]
    if builtin and not spec.builtin_tools:
        raise UnsupportedFeatureError(
            f"{spec.id} was not trained on the built-in tools ({', '.join(builtin)}); "
            "offer them as custom tools under another name, or use Llama 3.1 / 3.3"
        )
    if len(builtin) < len(tools) and not spec.tool_formats:
        raise UnsupportedFeatureError(f"{spec.id} cannot call custom tools")


def _check_tool_choice(tool_choice: ToolChoice, tools: Sequence[ToolDefinition]) -> None:
    if tool_choice in ("auto", "none"):
        return
    names = [t.name for t in tools]
    if tool_choice == "required":
        if not names:
            raise ConfigError("tool_choice='required' needs at least one tool")
        return
    if tool_choice not in names:
        valid = ", ".join(repr(n) for n in ("auto", "required", "none", *names))
        raise ConfigError(f"tool_choice {tool_choice!r} is not one of: {valid}")


def _plan_tools(
    spec: ModelSpec,
    tools: Sequence[ToolDefinition],
    tool_prompt_format: ToolPromptFormat | None,
    tool_choice: ToolChoice,
) -> _ToolPlan:
    """Validate the tool options against the model; raises ConfigError/UnsupportedFeatureError."""
    if spec.prompt_style == "guard":
        raise UnsupportedFeatureError(
            f"{spec.id} is a guard model; its prompts are rendered by agentic.shields"
        )
    fmt = _resolve_format(spec, tool_prompt_format)
    _check_tool_choice(tool_choice, tools)
    offered = () if tool_choice == "none" else tuple(tools)
    _check_tools(spec, offered)
    return _ToolPlan(offered, fmt, sp.tool_choice_prompt(tool_choice))


# --- system prompt assembly --------------------------------------------------------------------


def _split_system(messages: list[Message]) -> tuple[SystemMessage | None, list[Message]]:
    """The leading system message, if any, and the rest (later system messages stay in place)."""
    if not messages or not isinstance(messages[0], SystemMessage):
        return None, messages
    if len(messages) > 1 and isinstance(messages[1], SystemMessage):
        raise ConfigError("give at most one leading system message; merge them into one")
    return messages[0], messages[1:]


def _system_text(content: Content) -> str:
    """The user's system text. Text parts are joined with newlines.

    llama-stack's 3.1 path turns every part of a list into "<media>", text included (it checks
    ``isinstance(part, str)`` on typed items); that bug is not reproduced: both paths join
    text parts with ``\\n`` as its 3.2 path does. Images have no place in a system prompt.
    """
    if isinstance(content, str):
        return content
    if any(isinstance(p, ImageContent) for p in content):
        raise UnsupportedFeatureError("a system message cannot hold images; use a user message")
    return "\n".join(p.text for p in content if isinstance(p, TextContent))


def _head_llama3_1(plan: _ToolPlan, system: SystemMessage | None, today: _dt.date) -> list[Message]:
    """3.1 / 3.2-Vision: date lines always, custom tools in a user message of their own."""
    text = sp.builtin_tools_block(plan.tools) + "\n" if plan.tools else ""
    text += sp.date_block(today)
    if system is not None:
        text += "\n" + _system_text(system.content)
    if plan.choice_sentence:
        text += "\n" + plan.choice_sentence
    head: list[Message] = [SystemMessage(content=text)]
    if plan.custom:
        if plan.fmt is ToolPromptFormat.function_tag:
            head.append(UserMessage(content=sp.function_tag_tools_prompt(plan.custom)))
        else:
            head.append(UserMessage(content=sp.json_tools_prompt(plan.custom)))
    return head


def _head_llama3_2(plan: _ToolPlan, system: SystemMessage | None) -> list[Message]:
    """3.2 text / 3.3: no date lines, python_list tools inside the always-present system message."""
    text = ""
    if plan.builtin:
        text += sp.builtin_tools_block(plan.builtin) + "\n"
    if plan.custom:
        text += sp.python_list_tools_prompt(plan.custom) + "\n"
    if system is not None:
        text += _system_text(system.content)
    if plan.choice_sentence:
        text += "\n" + plan.choice_sentence
    return [SystemMessage(content=text.strip("\n"))]


def _base_message(messages: list[Message], response_format: Mapping[str, Any] | None) -> Message:
    """Base models take one text: every user message's content (and context), concatenated."""
    parts: list[ContentPart] = []
    for m in messages:
        if not isinstance(m, UserMessage):
            raise ConfigError(f"base models take user text only, not a {m.role!r} message")
        parts.extend([TextContent(text=m.content)] if isinstance(m.content, str) else m.content)
        if m.context is not None:
            parts.append(TextContent(text="\n\n" + m.context))
    if response_format is not None:
        parts.append(TextContent(text=sp.response_format_prompt(response_format)))
    if all(isinstance(p, TextContent) for p in parts):
        return UserMessage(content=_content(parts))
    return UserMessage(content=parts)


@dataclass(frozen=True)
class _Options:
    """Everything but the conversation that decides a prompt, resolved and validated."""

    spec: ModelSpec
    plan: _ToolPlan
    today: _dt.date
    response_format: Mapping[str, Any] | None


def _options(
    model: str | ModelSpec,
    tools: Sequence[ToolDefinition],
    tool_prompt_format: ToolPromptFormat | None,
    tool_choice: ToolChoice,
    response_format: Mapping[str, Any] | None,
    today: _dt.date | None,
) -> _Options:
    spec = resolve_model(model)
    plan = _plan_tools(spec, tools, tool_prompt_format, tool_choice)
    return _Options(spec, plan, today or _dt.date.today(), response_format)


def _head(opts: _Options, system: SystemMessage | None) -> list[Message]:
    if opts.spec.prompt_style == "llama3_1":
        return _head_llama3_1(opts.plan, system, opts.today)
    return _head_llama3_2(opts.plan, system)


def _tail(opts: _Options) -> list[Message]:
    if opts.response_format is None:
        return []
    return [UserMessage(content=sp.response_format_prompt(opts.response_format))]


def _assemble(opts: _Options, messages: list[Message]) -> list[Message]:
    if opts.spec.prompt_style == "base":
        return [_base_message(messages, opts.response_format)]
    system, rest = _split_system(messages)
    return [*_head(opts, system), *rest, *_tail(opts)]


def assemble_messages(
    messages: Sequence[MessageLike],
    *,
    model: str | ModelSpec,
    tools: Sequence[ToolDefinition] = (),
    tool_prompt_format: ToolPromptFormat | None = None,
    tool_choice: ToolChoice = "auto",
    response_format: Mapping[str, Any] | None = None,
    today: _dt.date | None = None,
) -> list[Message]:
    """The messages :func:`render_prompt` formats: system prompt and tool messages added.

    For a base model the result is one user message holding the whole prompt text.
    """
    opts = _options(model, tools, tool_prompt_format, tool_choice, response_format, today)
    return _assemble(opts, [as_message(m) for m in messages])


def _render(opts: _Options, messages: list[Message]) -> str:
    assembled = _assemble(opts, messages)
    if opts.spec.prompt_style == "base":
        return format_base(assembled[0].content)
    return format_dialog(assembled, tool_prompt_format=opts.plan.fmt)


def render_prompt(
    messages: Sequence[MessageLike],
    *,
    model: str | ModelSpec,
    tools: Sequence[ToolDefinition] = (),
    tool_prompt_format: ToolPromptFormat | None = None,
    tool_choice: ToolChoice = "auto",
    response_format: Mapping[str, Any] | None = None,
    today: _dt.date | None = None,
) -> str:
    """The full prompt the model must see, system-prompt assembly for tools included.

    ``tool_choice`` is ``"auto"``, ``"required"``, ``"none"`` (tools left out of the prompt) or
    the name of one of ``tools``. ``today`` defaults to the local date (Llama 3.1 prompts show
    it). ``response_format`` is a JSON schema the answer must follow.
    """
    opts = _options(model, tools, tool_prompt_format, tool_choice, response_format, today)
    return _render(opts, [as_message(m) for m in messages])


# --- incremental rendering ---------------------------------------------------------------------


@dataclass
class PromptCacheStats:
    """Counters of a :class:`PromptCache`: incremental renders, full renders, messages encoded."""

    hits: int = 0
    misses: int = 0
    encoded_messages: int = 0


@dataclass
class _Entry:
    signature: tuple[Any, ...]
    seen: list[MessageLike]
    """The conversation messages already in ``prefix``, as given (mappings deep-copied)."""
    prefix: str
    """``<|begin_of_text|>``, the assembled head and every message of ``seen``, encoded."""
    starts: list[int]
    """Where each message of ``seen`` starts in ``prefix`` (the head ends at the first)."""
    head: int
    """Length of ``<|begin_of_text|>`` and the assembled head in ``prefix``."""
    images: list[int] = field(default_factory=list)
    """Characters of image URLs in each message of ``seen``: held, though ``prefix`` shows
    each image as one ``<|image|>``."""
    image_chars: int = 0
    """``sum(images)``."""

    @property
    def weight(self) -> int:
        """Characters the entry holds: its prompt and the images of its messages."""
        return len(self.prefix) + self.image_chars


def _image_chars(message: Message) -> int:
    """Characters of the message's image URLs (a data URL is the whole image)."""
    content = message.content
    if isinstance(content, str):
        return 0
    return sum(len(p.url) for p in content if isinstance(p, ImageContent))


def _snapshot(message: MessageLike) -> MessageLike:
    """What to remember of a message: messages are immutable, dicts could be edited in place."""
    return copy.deepcopy(message) if isinstance(message, Mapping) else message


def _dropped(seen: list[MessageLike], messages: Sequence[MessageLike]) -> int | None:
    """How many leading messages of ``seen`` ``messages`` leaves out, when it is ``seen`` without
    them and possibly with more after (history dropped to fit the context window)."""
    if not messages:
        return None
    first = messages[0]
    for i, message in enumerate(seen):
        if (message is first or message == first) and _is_prefix(seen[i:], messages):
            return i
    return None


def _is_prefix(seen: list[MessageLike], messages: Sequence[MessageLike]) -> bool:
    """Whether ``messages`` starts with ``seen``, each compared by identity, then equality.

    List equality does exactly that per element, in C, which keeps the check for a long
    conversation far below the cost of encoding even one message.
    """
    if len(messages) < len(seen):
        return False
    head = messages[: len(seen)]
    return seen == (head if isinstance(head, list) else list(head))


class PromptCache:
    """Renders append-only conversations incrementally: only new messages are encoded.

    ``render(key, ...)`` returns exactly :func:`render_prompt`'s string. When the conversation
    under ``key`` extends the previous call's (same options, same system message, older
    messages unchanged), the encoded prefix is reused; anything else renders in full. Entries
    are evicted least recently used first beyond ``max_entries`` keys or ``max_chars``
    characters of cached prompts and of the image URLs (data URLs: the image itself) their
    messages hold (128k-token sessions are half a megabyte each).
    """

    def __init__(self, max_entries: int = 1024, max_chars: int = 64 * 2**20) -> None:
        if max_entries < 1 or max_chars < 1:
            raise ConfigError("PromptCache max_entries and max_chars must be at least 1")
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.stats = PromptCacheStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """Characters of cached prompts and of their messages' image URLs, over all entries."""
        return self._chars

    def clear(self) -> None:
        """Forget every cached conversation."""
        self._entries.clear()
        self._chars = 0

    def render(
        self,
        key: str | None,
        messages: Sequence[MessageLike],
        *,
        model: str | ModelSpec,
        tools: Sequence[ToolDefinition] = (),
        tool_prompt_format: ToolPromptFormat | None = None,
        tool_choice: ToolChoice = "auto",
        response_format: Mapping[str, Any] | None = None,
        today: _dt.date | None = None,
    ) -> str:
        """Same result as :func:`render_prompt`; ``key=None`` renders without caching."""
        opts = _options(model, tools, tool_prompt_format, tool_choice, response_format, today)
        if key is None or opts.spec.prompt_style == "base":
            return _render(opts, [as_message(m) for m in messages])
        system, rest = self._split(messages)
        signature = (opts.spec, opts.plan, opts.today, system)
        entry = self._entries.get(key)
        dropped = None
        if entry is not None and entry.signature == signature:
            dropped = 0 if _is_prefix(entry.seen, rest) else _dropped(entry.seen, rest)
        if entry is not None and dropped is not None:
            self.stats.hits += 1
            before = entry.weight
            self._drop(entry, dropped)
            self._extend(entry, rest[len(entry.seen) :], opts.plan.fmt)
            self._entries.move_to_end(key)
            self._chars += entry.weight - before
            self._evict()
        else:
            self.stats.misses += 1
            entry = self._fresh(signature, opts, system, rest)
            self._store(key, entry)
        tail = "".join(self._encode(m, opts.plan.fmt) for m in _tail(opts))
        return entry.prefix + tail + _GENERATION_PROMPT

    @staticmethod
    def _split(
        messages: Sequence[MessageLike],
    ) -> tuple[SystemMessage | None, Sequence[MessageLike]]:
        """The leading system message (converted) and the rest of the messages as given."""
        leading = [as_message(m) for m in messages[:2]]
        system, _ = _split_system(leading)
        return system, messages[1:] if system is not None else messages

    def _encode(self, message: Message, fmt: ToolPromptFormat) -> str:
        self.stats.encoded_messages += 1
        return _encode_message(message, fmt)

    @staticmethod
    def _drop(entry: _Entry, count: int) -> None:
        """Leave the first ``count`` messages out of the entry, keeping the head: no encoding."""
        if count == 0:
            return
        cut = entry.starts[count]
        shift = cut - entry.head
        entry.prefix = entry.prefix[: entry.head] + entry.prefix[cut:]
        entry.starts = [s - shift for s in entry.starts[count:]]
        del entry.seen[:count]
        entry.image_chars -= sum(entry.images[:count])
        del entry.images[:count]

    def _extend(self, entry: _Entry, new: Sequence[MessageLike], fmt: ToolPromptFormat) -> None:
        if not new:
            return
        converted = [as_message(m) for m in new]  # validate all before changing the entry
        encoded = [self._encode(m, fmt) for m in converted]
        at = len(entry.prefix)
        for text in encoded:
            entry.starts.append(at)
            at += len(text)
        entry.prefix += "".join(encoded)
        entry.seen.extend(_snapshot(m) for m in new)
        images = [_image_chars(m) for m in converted]
        entry.images += images
        entry.image_chars += sum(images)

    def _fresh(
        self,
        signature: tuple[Any, ...],
        opts: _Options,
        system: SystemMessage | None,
        rest: Sequence[MessageLike],
    ) -> _Entry:
        prefix = BEGIN_OF_TEXT + "".join(
            self._encode(m, opts.plan.fmt) for m in _head(opts, system)
        )
        entry = _Entry(signature, [], prefix, [], len(prefix))
        self._extend(entry, rest, opts.plan.fmt)
        return entry

    def _store(self, key: str, entry: _Entry) -> None:
        replaced = self._entries.get(key)
        if replaced is not None:
            self._chars -= replaced.weight
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._chars += entry.weight
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used entries beyond the bounds (the newest always stays)."""
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._chars > self.max_chars
        ):
            _, gone = self._entries.popitem(last=False)
            self._chars -= gone.weight
