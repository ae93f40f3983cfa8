from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from agentic.errors import ConfigError
from agentic.types import (
    AssistantMessage,
    BuiltinTool,
    ImageContent,
    Message,
    SamplingParams,
    StopReason,
    SystemMessage,
    TextContent,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    Usage,
    UserMessage,
    as_message,
    as_messages,
    content_text,
    json_schema_of,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


def roundtrip(msg: Message) -> Message:
    return ADAPTER.validate_json(ADAPTER.dump_json(msg))


@pytest.mark.parametrize(
    "msg",
    [
        SystemMessage(content="be brief"),
        UserMessage(content="hi", context="ctx"),
        UserMessage(content=[TextContent(text="look"), ImageContent.from_bytes(PNG)]),
        AssistantMessage(
            content="",
            tool_calls=[ToolCall(tool_name="get_weather", arguments={"city": "Paris"})],
            stop_reason=StopReason.end_of_message,
        ),
        ToolMessage(call_id="c1", tool_name="get_weather", content='"25 C"'),
    ],
)
def test_messages_json_round_trip(msg: Message) -> None:
    assert roundtrip(msg) == msg


def test_openai_dicts_become_messages() -> None:
    msgs = as_messages(
        [
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "42"},
            {"role": "ipython", "call_id": "c2", "content": "7"},
            {"role": "assistant", "content": "done", "tool_calls": []},
        ]
    )
    assert isinstance(msgs[1], UserMessage)
    assert isinstance(msgs[1].content, list)
    assert msgs[1].content[1] == ImageContent(url="https://example.com/a.png")
    assistant = msgs[2]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content == ""
    assert assistant.tool_calls == [
        ToolCall(call_id="call_1", tool_name="lookup", arguments={"q": "x"})
    ]
    assert msgs[3] == ToolMessage(call_id="call_1", tool_name="lookup", content="42")
    assert msgs[4] == ToolMessage(call_id="c2", content="7")
    assert as_message(msgs[0]) is msgs[0]


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "wizard", "content": "x"},
        {"role": "user"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]},
        "just a string",
    ],
)
def test_bad_messages_are_config_errors(bad: Any) -> None:
    with pytest.raises(ConfigError):
        as_message(bad)


def test_images_from_path_bytes_base64_and_urls(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(PNG)
    from_path = ImageContent.from_path(path)
    assert from_path.url.startswith("data:image/png;base64,")
    assert from_path.data() == PNG
    assert ImageContent.model_validate({"path": str(path)}) == from_path
    b64 = base64.b64encode(PNG).decode()
    assert ImageContent.model_validate({"data": b64}) == from_path
    assert ImageContent.model_validate({"data": PNG, "mime": "image/png"}) == from_path
    jpeg = ImageContent.from_bytes(b"\xff\xd8\xff\xe0rest")
    assert jpeg.url.startswith("data:image/jpeg;")
    remote = ImageContent.from_url("https://example.com/cat.jpg")
    assert not remote.is_data_url
    with pytest.raises(ConfigError, match="remote URL"):
        remote.data()


def test_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read image"):
        ImageContent.from_path(tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="not PNG"):
        ImageContent.from_bytes(b"plain text")
    with pytest.raises(ValueError, match="data:image"):
        ImageContent(url="file:///etc/passwd")


def test_content_text_and_tool_call_helpers() -> None:
    assert content_text("abc") == "abc"
    parts: list[TextContent | ImageContent] = [
        TextContent(text="a"),
        ImageContent.from_bytes(PNG),
        TextContent(text="b"),
    ]
    assert content_text(parts) == "ab"
    call = ToolCall(tool_name="brave_search", arguments={"query": "q"})
    assert call.builtin is BuiltinTool.brave_search
    assert call.arguments_json() == '{"query": "q"}'
    assert ToolCall(tool_name="mine").builtin is None
    assert ToolCall(tool_name="a").call_id != ToolCall(tool_name="a").call_id


class Weather(BaseModel):
    """Get the weather for a city."""

    city: str = Field(description="The city")
    metric: str = "celsius"


def test_tool_definitions_from_schema_model_and_builtin() -> None:
    from_model = ToolDefinition.from_model(Weather, name="get_weather")
    assert from_model.description == "Get the weather for a city."
    params = from_model.params()
    assert [(p.name, p.param_type, p.required, p.default) for p in params] == [
        ("city", "string", True, None),
        ("metric", "string", False, "celsius"),
    ]
    assert params[0].description == "The city"
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "tags": {"type": ["array", "null"]},
            "mode": {"enum": ["a", "b"]},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "blob": {},
        },
        "required": ["n"],
    }
    tool = ToolDefinition.from_json_schema("t", schema, "desc")
    assert [p.param_type for p in tool.params()] == [
        "integer",
        "array | null",
        "string",
        "string | integer",
        "object",
    ]
    with pytest.raises(ConfigError, match="object schema"):
        ToolDefinition.from_json_schema("t", {"type": "string"})
    assert ToolDefinition.builtin("wolfram_alpha").is_builtin
    assert not tool.is_builtin
    assert ToolDefinition(name="empty").params() == []


def test_json_schema_of_and_sampling_defaults() -> None:
    assert json_schema_of(Weather)["properties"]["city"]["type"] == "string"
    assert json_schema_of({"type": "object"}) == {"type": "object"}
    with pytest.raises(ConfigError):
        json_schema_of(42)  # type: ignore[arg-type]  # wrong on purpose
    params = SamplingParams()
    assert (params.temperature, params.top_p, params.max_tokens) == (0.6, 0.9, None)
    with pytest.raises(ConfigError, match=r"invalid sampling params: max_tokens: .* 1"):
        SamplingParams(max_tokens=0)
    assert Usage(prompt_tokens=3, completion_tokens=4).total_tokens == 7


def test_repr_leaves_out_fields_at_their_default() -> None:
    """A printed turn shows what happened, not every None, False and []."""
    import datetime as dt

    from agentic.agent import AgentConfig, InferenceStep, Turn
    from agentic.tools.base import ToolResponse

    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    step = InferenceStep(
        step_id="s",
        turn_id="t",
        started_at=now,
        completed_at=now,
        model_response=AssistantMessage(content="Hi.", stop_reason=StopReason.end_of_turn),
    )
    turn = Turn(
        turn_id="t",
        session_id="x",
        input_messages=[UserMessage(content="Hello")],
        steps=[step],
        started_at=now,
    )
    text = repr(turn)
    assert "UserMessage(content='Hello')" in text
    assert "AssistantMessage(content='Hi.', stop_reason=" in text
    for noise in ("documents=", "pending_tool_calls=", "withheld=", "forced_prefix=", "index="):
        assert noise not in text
    assert repr(SamplingParams()) == "SamplingParams()"
    assert repr(SamplingParams(temperature=0)) == "SamplingParams(temperature=0.0)"
    assert (
        repr(AgentConfig(model="m", max_infer_iters=3))
        == "AgentConfig(model='m', max_infer_iters=3)"
    )
    response = ToolResponse(
        call_id="c", tool_name="f", content="ok", started_at=now, completed_at=now
    )
    assert "error=" not in repr(response)
    assert repr(ToolCall(call_id="c", tool_name="f")) == "ToolCall(call_id='c', tool_name='f')"


@pytest.mark.parametrize(
    "parameters",
    [{"city": {"param_type": "str", "required": True}}, {"type": "array", "items": {}}],
)
def test_tool_parameters_must_be_an_object_schema(parameters: dict[str, Any]) -> None:
    """Else the model would be offered the tool without any of its parameters."""
    with pytest.raises(ValidationError, match="parameters must be"):
        ToolDefinition(name="get_weather", parameters=parameters)
    assert ToolDefinition(name="t", parameters={}).params() == []
    assert ToolDefinition(name="t", parameters={"$defs": {}, "title": "T"}).params() == []
