"""Rendering conversations into the exact Llama 3.x prompt text. Pure functions, byte-exact.

CONTRACT (implementation in progress): the signatures below are fixed; other modules import
them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from agentic.llama.models import ModelSpec
from agentic.types import Content, Message, ToolChoice, ToolDefinition, ToolPromptFormat

MessageLike = Message | Mapping[str, Any]


def format_dialog(
    messages: Sequence[MessageLike],
    *,
    tool_prompt_format: ToolPromptFormat = ToolPromptFormat.json,
    add_generation_prompt: bool = True,
) -> str:
    """Meta's ChatFormat encoding of ``messages`` as given (no system prompt assembly)."""
    raise NotImplementedError


def format_base(content: Content) -> str:
    """A base (pretrained) model prompt: ``<|begin_of_text|>`` + text, images as ``<|image|>``."""
    raise NotImplementedError


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
    """The full prompt the model must see, system-prompt assembly for tools included."""
    raise NotImplementedError


class PromptCache:
    """Renders append-only conversations incrementally: only new messages are encoded."""

    def __init__(self, max_entries: int = 1024) -> None:
        raise NotImplementedError

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
        raise NotImplementedError
