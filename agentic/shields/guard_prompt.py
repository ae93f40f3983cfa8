"""Llama Guard 3 prompts, byte for byte as the model's own chat templates render them.

Two templates exist (``reference/shields.md`` §1.2): the 8B one (a space before
``<|begin_of_text|>``, one line per message, nothing before ``<|eot_id|>``) and the one shared by
1B and 11B-Vision (one line per text part, ``<|image|> `` before ``Task:`` when there is an
image, a space before ``<|eot_id|>``). Where the templates leave a case undefined we follow the
policy of §1.3: system messages, tool results and retrieved context are left out (and counted in
:attr:`GuardPrompt.omitted`), consecutive messages of one role are merged with a blank line,
assistant tool calls are written as text, and special-token text inside messages is escaped so a
message cannot forge the end of the conversation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, assert_never

from agentic.errors import ConfigError, ContextLengthError
from agentic.llama.models import ModelSpec, resolve_model
from agentic.llama.tokenizer import get_tokenizer
from agentic.llama.tokens import (
    BEGIN_OF_TEXT,
    END_HEADER,
    END_OF_TURN,
    IMAGE,
    START_HEADER,
    escape_special_tokens,
)
from agentic.llama.tool_calls import encode_tool_call
from agentic.types import (
    AssistantMessage,
    ImageContent,
    Message,
    SystemMessage,
    TextContent,
    ToolMessage,
    ToolPromptFormat,
    UserMessage,
    as_messages,
)

__all__ = [
    "DEFAULT_GUARD_MODEL",
    "GUARD_CATEGORY_NAMES",
    "GuardFormat",
    "GuardPrompt",
    "GuardRole",
    "guard_categories",
    "guard_format_of",
    "guard_spec",
    "render_guard_prompt",
]

DEFAULT_GUARD_MODEL = "meta-llama/Llama-Guard-3-8B"

GuardRole = Literal["User", "Agent"]
"""Whose message is judged: ``User`` (the input) or ``Agent`` (the answer)."""

GUARD_CATEGORY_NAMES: Mapping[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
"""The category names as the prompt spells them (the model cards' display names differ)."""


class GuardFormat(StrEnum):
    """Which Llama Guard 3 chat template a model was trained with."""

    llama_guard_3_8b = "llama_guard_3_8b"
    llama_guard_3_1b = "llama_guard_3_1b"
    """Shared by Llama Guard 3 1B and 11B-Vision."""


_FORMATS: dict[str, GuardFormat] = {
    "meta-llama/Llama-Guard-3-8B": GuardFormat.llama_guard_3_8b,
    "meta-llama/Llama-Guard-3-1B": GuardFormat.llama_guard_3_1b,
    "meta-llama/Llama-Guard-3-11B-Vision": GuardFormat.llama_guard_3_1b,
}

_TASK = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our "
    "safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}"
    "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{conversation}<END CONVERSATION>"
    "\n\nProvide your safety assessment for ONLY THE LAST {role} message in the above "
    "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line "
    "must include a comma-separated list of violated categories."
)
_USER_HEADER = f"{START_HEADER}user{END_HEADER}\n\n"
_ASSISTANT_HEADER = f"{START_HEADER}assistant{END_HEADER}"


def guard_spec(model: str | ModelSpec) -> ModelSpec:
    """The capability row of a Llama Guard model; :class:`ConfigError` for any other model."""
    spec = resolve_model(model)
    if not spec.is_guard:
        raise ConfigError(
            f"{spec.id} is not a Llama Guard model; use meta-llama/Llama-Guard-3-8B, -1B or "
            "-11B-Vision"
        )
    return spec


def guard_format_of(model: str | ModelSpec) -> GuardFormat:
    """The template a known guard model was trained with (:class:`ConfigError` if unknown)."""
    spec = guard_spec(model)
    found = _FORMATS.get(spec.id)
    if found is None:
        raise ConfigError(
            f"no Llama Guard prompt format is known for {spec.id}; pass prompt_format="
            "GuardFormat.llama_guard_3_8b or GuardFormat.llama_guard_3_1b (the template it was "
            "fine-tuned with)"
        )
    return found


@dataclass(frozen=True)
class GuardPrompt:
    """A rendered Llama Guard prompt, ready for a raw completion (``add_special_tokens`` off)."""

    text: str
    role: GuardRole
    categories: tuple[str, ...]
    images: tuple[ImageContent, ...] = ()
    """The image that travels with the prompt (11B-Vision only; its text has ``<|image|>``)."""
    omitted: Mapping[str, int] = field(default_factory=dict)
    """What was left out of the conversation, by kind (system, tool_results, context, images)."""
    dropped_turns: int = 0
    """Oldest turns dropped so the prompt fits the guard's context."""


@dataclass(frozen=True)
class _Message:
    """One message as the guard sees it: its text parts and its tool calls as text."""

    parts: tuple[str, ...]
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Turn:
    """Consecutive messages of one role, merged (never dropped)."""

    role: GuardRole
    messages: tuple[_Message, ...]


@dataclass
class _Collected:
    turns: list[_Turn] = field(default_factory=list)
    images: list[ImageContent] = field(default_factory=list)
    omitted: Counter[str] = field(default_factory=Counter)


def _content(content: str | Sequence[TextContent | ImageContent], out: _Collected) -> list[str]:
    if isinstance(content, str):
        return [escape_special_tokens(content)]
    parts = []
    for part in content:
        if isinstance(part, ImageContent):
            out.images.append(part)
        else:
            parts.append(escape_special_tokens(part.text))
    return parts


def _as_guard_message(message: Message, out: _Collected) -> tuple[GuardRole, _Message] | None:
    if isinstance(message, SystemMessage):
        out.omitted["system"] += 1
        return None
    if isinstance(message, ToolMessage):
        out.omitted["tool_results"] += 1
        return None
    if isinstance(message, UserMessage):
        if message.context:
            out.omitted["context"] += 1
        return "User", _Message(tuple(_content(message.content, out)))
    if isinstance(message, AssistantMessage):
        calls = tuple(
            escape_special_tokens(encode_tool_call(c, ToolPromptFormat.json))
            for c in message.tool_calls
        )
        parts = _content(message.content, out)
        if calls and parts == [""]:
            parts = []  # a bare tool call: no empty text line before it
        return "Agent", _Message(tuple(parts), calls)
    assert_never(message)


def _collect(messages: Sequence[Message]) -> _Collected:
    out = _Collected()
    for message in messages:
        item = _as_guard_message(message, out)
        if item is None:
            continue
        role, guard_message = item
        if out.turns and out.turns[-1].role == role:
            last = out.turns[-1]
            out.turns[-1] = _Turn(role, (*last.messages, guard_message))
        else:
            out.turns.append(_Turn(role, (guard_message,)))
    return out


def _turn_8b(turn: _Turn) -> str:
    texts = ("\n\n".join(p for p in ("".join(m.parts), *m.calls) if p) for m in turn.messages)
    merged = "\n\n".join(t.strip() for t in texts)
    return f"{turn.role}: {merged.strip()}\n\n"


def _turn_1b(turn: _Turn) -> str:
    lines = (p for m in turn.messages for p in (*m.parts, *m.calls))
    return "".join(f"{turn.role}: {line.strip()}\n\n" for line in lines)


def _categories_block(categories: Sequence[str]) -> str:
    return "".join(f"{code}: {GUARD_CATEGORY_NAMES[code]}.\n" for code in categories)


@dataclass(frozen=True)
class _Template:
    fmt: GuardFormat
    role: GuardRole
    categories: str
    image: bool

    def turn(self, turn: _Turn) -> str:
        if self.fmt is GuardFormat.llama_guard_3_8b:
            return _turn_8b(turn)
        return _turn_1b(turn)

    def render(self, conversation: str) -> str:
        task = _TASK.format(role=self.role, categories=self.categories, conversation=conversation)
        if self.fmt is GuardFormat.llama_guard_3_8b:
            return f" {BEGIN_OF_TEXT}{_USER_HEADER}{task}{END_OF_TURN}{_ASSISTANT_HEADER}"
        image = f"{IMAGE} " if self.image else ""
        return f"{BEGIN_OF_TEXT}{_USER_HEADER}{image}{task} {END_OF_TURN}{_ASSISTANT_HEADER}"


def guard_categories(spec: ModelSpec, categories: Sequence[str] | None) -> tuple[str, ...]:
    """The codes to offer, in canonical order; every code must be one of the model's own."""
    allowed = spec.guard_categories
    if categories is None:
        return allowed
    codes = {c.strip().upper() for c in categories}
    unknown = sorted(codes - set(allowed))
    if unknown:
        raise ConfigError(
            f"{spec.id} has no categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(unknown)}; its categories are {allowed[0]}-{allowed[-1]}"
        )
    if not codes:
        raise ConfigError("a Llama Guard check needs at least one category")
    return tuple(c for c in allowed if c in codes)


def _judged_role(turns: Sequence[_Turn], role: GuardRole | None) -> GuardRole:
    if not turns:
        raise ConfigError("Llama Guard needs a user or assistant message to judge")
    last = turns[-1].role
    if role is not None and role != last:
        raise ConfigError(
            f"the judged message must come last: role={role!r} was asked, but the last "
            f"message is from {last!r}"
        )
    return last


def _next_start(turns: Sequence[_Turn], start: int, limit: int) -> int | None:
    """Where the conversation starts once its oldest pair is dropped (on a user turn)."""
    index = start + 1
    while index < limit and turns[index].role != "User":
        index += 1
    return index if index <= limit else None


def _fit(template: _Template, turns: Sequence[_Turn], budget: int | None) -> tuple[str, int]:
    """The prompt, dropping the oldest user+agent pairs until it fits ``budget`` tokens."""
    text = template.render("".join(map(template.turn, turns)))
    if budget is None or len(text.encode("utf-8")) <= budget:  # a token is at least one byte
        return text, 0
    count: Callable[[str], int] = get_tokenizer().count
    sizes = [count(template.turn(t)) for t in turns]
    fixed = count(template.render(""))
    keep = 2 if template.role == "Agent" and len(turns) > 1 else 1
    start: int | None = 0
    while start is not None:
        if fixed + sum(sizes[start:]) <= budget:
            text = template.render("".join(map(template.turn, turns[start:])))
            if (total := count(text)) <= budget:
                return text, start
        start = _next_start(turns, start, len(turns) - keep)
    kept = template.render("".join(map(template.turn, turns[len(turns) - keep :])))
    total = count(kept)
    raise ContextLengthError(
        f"the Llama Guard prompt needs {total} tokens for the judged message alone, more than "
        f"the {budget} the guard model has room for",
        prompt_tokens=total,
        max_model_len=budget,
    )


def _images(
    spec: ModelSpec, fmt: GuardFormat, found: Sequence[ImageContent], omitted: Counter[str]
) -> tuple[ImageContent, ...]:
    """11B-Vision takes one image (the most recent); text-only guards take none."""
    if not found:
        return ()
    if spec.vision and fmt is GuardFormat.llama_guard_3_1b:
        omitted["images"] += len(found) - 1
        return (found[-1],)
    omitted["images"] += len(found)
    return ()


def render_guard_prompt(
    messages: Sequence[Message | Mapping[str, Any]],
    *,
    model: str | ModelSpec = DEFAULT_GUARD_MODEL,
    role: GuardRole | None = None,
    categories: Sequence[str] | None = None,
    prompt_format: GuardFormat | None = None,
    max_prompt_tokens: int | None = None,
) -> GuardPrompt:
    """Render the Llama Guard prompt that judges the last message of ``messages``.

    ``role`` is checked against the last message (``User`` for a user message, ``Agent`` for an
    answer); ``categories`` are the codes to offer (default: all of the model's). Codes keep
    their numbers when others are left out. ``max_prompt_tokens`` drops the oldest user+agent
    pairs until the prompt fits (:class:`ContextLengthError` if the judged message alone does
    not).
    """
    spec = guard_spec(model)
    fmt = guard_format_of(spec) if prompt_format is None else prompt_format
    codes = guard_categories(spec, categories)
    collected = _collect(as_messages(messages))
    judged = _judged_role(collected.turns, role)
    images = _images(spec, fmt, collected.images, collected.omitted)
    template = _Template(fmt, judged, _categories_block(codes), bool(images))
    text, dropped = _fit(template, collected.turns, max_prompt_tokens)
    return GuardPrompt(
        text=text,
        role=judged,
        categories=codes,
        images=images,
        omitted={k: v for k, v in sorted(collected.omitted.items()) if v},
        dropped_turns=dropped,
    )
