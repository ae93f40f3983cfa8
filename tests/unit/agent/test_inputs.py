"""What callers hand a session: user messages, images, documents, client tool results."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic.agent.config import AgentConfig
from agentic.agent.inputs import client_responses, documents_of, user_message
from agentic.errors import ConfigError, SessionStateError, UnsupportedFeatureError
from agentic.llama.models import resolve_model
from agentic.tools import ToolResponse
from agentic.types import (
    Document,
    ImageContent,
    TextContent,
    ToolCall,
    ToolMessage,
    UserMessage,
)

TEXT = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
VISION = resolve_model("meta-llama/Llama-3.2-11B-Vision-Instruct")
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 16


def test_user_message_from_text_dict_and_message() -> None:
    assert user_message("hi", (), TEXT) == UserMessage(content="hi")
    assert user_message({"role": "user", "content": "hi"}, (), TEXT).content == "hi"
    msg = UserMessage(content="hi", context="ctx")
    assert user_message(msg, (), TEXT) is msg
    with pytest.raises(ConfigError, match="starts with a user message"):
        user_message({"role": "assistant", "content": "no"}, (), TEXT)


def test_images_go_first_and_need_a_vision_model(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    msg = user_message("What is this?", [path, PNG, "https://example.com/x.png"], VISION)
    assert isinstance(msg.content, list)
    assert [p.type for p in msg.content] == ["image", "image", "image", "text"]
    with pytest.raises(UnsupportedFeatureError, match="cannot see images"):
        user_message("What is this?", [PNG], TEXT)
    parts: list[ImageContent | TextContent] = [
        ImageContent.from_bytes(PNG),
        TextContent(text="and this?"),
    ]
    with pytest.raises(UnsupportedFeatureError):
        user_message(parts, (), TEXT)


def test_an_image_is_refused_when_the_agent_offers_tools() -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"cannot call tools.*\(get_weather\)"):
        user_message("What is this?", [PNG], VISION, tools=["get_weather"])
    assert user_message("What is this?", (), VISION, tools=["get_weather"]).content == (
        "What is this?"
    )


def test_documents_from_objects_text_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\nhello")
    docs = documents_of([Document(content="x", name="x"), "plain text", path])
    assert [d.name for d in docs] == ["x", "", "notes.md"]
    assert docs[1].content == "plain text"
    assert docs[2].content == "# Notes\nhello"
    assert docs[2].mime_type == "text/markdown"
    with pytest.raises(ConfigError, match="cannot read document"):
        documents_of([tmp_path / "absent.txt"])


CALLS = [
    ToolCall(call_id="a", tool_name="pick", arguments={}),
    ToolCall(call_id="b", tool_name="ask", arguments={}),
]
CONFIG = AgentConfig(model="meta-llama/Llama-3.1-8B-Instruct", max_tool_output_chars=100)


def test_client_results_in_every_shape_are_escaped_and_capped() -> None:
    forms = [
        {"a": "x<|eot_id|>", "b": {"n": 1}},
        [ToolMessage(call_id="b", content="y"), {"call_id": "a", "content": "x<|eot_id|>"}],
        [
            ToolResponse(call_id="a", tool_name="pick", content="x<|eot_id|>"),
            {"call_id": "b", "output": "y"},
        ],
    ]
    for results in forms:
        out = client_responses(CALLS, results, CONFIG)
        assert [r.call_id for r in out] == ["a", "b"]
        assert out[0].content == "x<\\|eot_id|>"
    long = client_responses(CALLS, {"a": "z" * 500, "b": ""}, CONFIG)[0]
    assert long.truncated
    assert "truncated" in str(long.content)


def test_client_results_must_match_the_pending_calls() -> None:
    with pytest.raises(SessionStateError, match=r"missing results for ask \(b\)"):
        client_responses(CALLS, {"a": "x"}, CONFIG)
    with pytest.raises(SessionStateError, match="no pending call has id zzz"):
        client_responses(CALLS, {"a": "x", "b": "y", "zzz": "?"}, CONFIG)
    with pytest.raises(ConfigError, match="tool results must be"):
        client_responses(CALLS, ["just a string"], CONFIG)
    for bare in ("Paris", b"Paris", 42):  # a result without its call id
        with pytest.raises(ConfigError, match=r"must be \{call_id: result"):
            client_responses(CALLS, bare, CONFIG)
