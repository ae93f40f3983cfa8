"""Bookkeeping the turn nodes keep in the state so prompts need not rescan the history."""

from __future__ import annotations

from agentic.agent.steps import _image_until
from agentic.types import AssistantMessage, ImageContent, Message, TextContent, UserMessage

PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def _text(n: int) -> list[Message]:
    return [UserMessage(content=f"q{i}") for i in range(n)]


def _image() -> Message:
    image = ImageContent.model_validate({"data": PNG, "mime": "image/png"})
    return UserMessage(content=[TextContent(text="look"), image])


def test_a_new_image_moves_the_mark_past_it() -> None:
    history = _text(3)
    new = [_image(), AssistantMessage(content="a receipt")]
    assert _image_until(0, history, new) == 4


def test_text_only_turns_keep_the_mark() -> None:
    assert _image_until(2, _text(5), _text(2)) == 2
    assert _image_until(0, _text(5), _text(2)) == 0


def test_a_session_saved_without_the_mark_is_scanned_once() -> None:
    history = [*_text(2), _image(), *_text(3)]
    assert _image_until(None, history, _text(2)) == 3
    assert _image_until(None, _text(4), _text(1)) == 0
