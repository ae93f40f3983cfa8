"""ToolResponse, ToolContext and the public namespace of agentic.tools."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

import agentic.tools
from agentic import errors
from agentic.errors import ConfigError
from agentic.tools import ToolContext, ToolErrorKind, ToolResponse, ToolResult, ToolRetry, tool
from agentic.types import Artifact, ImageContent, TextContent, ToolCall, ToolMessage

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
PNG = ImageContent.from_bytes(PNG_BYTES)


def test_to_message_carries_what_the_model_sees() -> None:
    r = ToolResponse(
        call_id="c1",
        tool_name="chart",
        content=[TextContent(text="a plot"), PNG],
        started_at=T0,
        completed_at=T0 + timedelta(milliseconds=250),
    )
    assert r.to_message() == ToolMessage(
        call_id="c1", tool_name="chart", content=[TextContent(text="a plot"), PNG]
    )
    assert r.duration == pytest.approx(0.25)
    assert (r.error, r.truncated, r.artifacts) == (None, False, [])


def test_responses_round_trip_and_validate_from_dicts() -> None:
    r = ToolResponse(
        call_id="c1",
        tool_name="t",
        content="oops",
        error=ToolErrorKind.timeout,
        started_at=T0,
        completed_at=T0,
        artifacts=[Artifact(name="figure_1.png", mime_type="image/png", data=PNG_BYTES)],
    )
    assert ToolResponse.model_validate_json(r.model_dump_json()) == r
    # a client-side tool result: just the id, name and content
    client = ToolResponse.model_validate({"call_id": "c2", "tool_name": "t", "content": "ok"})
    assert client.started_at.tzinfo is not None
    assert client.error is None
    with pytest.raises(ValidationError):
        ToolResponse.model_validate(
            {"call_id": "c", "tool_name": "t", "content": "x", "error": "?"}
        )


def test_timestamps_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ToolResponse(
            call_id="c", tool_name="t", content="", started_at=datetime(2025, 1, 1), completed_at=T0
        )


def test_responses_and_contexts_are_immutable() -> None:
    r = ToolResponse(call_id="c", tool_name="t", content="x")
    with pytest.raises(ValidationError):
        r.content = "y"  # type: ignore[misc]
    ctx = ToolContext(deps=None, session_id="s", turn_id="t", call=ToolCall(tool_name="t"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.session_id = "other"  # type: ignore[misc]


def test_tool_retry_is_a_signal_outside_the_error_tree() -> None:
    signal = ToolRetry("try city='Paris'")
    assert signal.message == str(signal) == "try city='Paris'"
    assert not isinstance(signal, errors.AgenticError)
    assert issubclass(errors.ToolArgumentsError, errors.ToolError)
    assert issubclass(errors.ToolError, errors.AgenticError)
    exc = errors.ToolArgumentsError("add", "a: Field required")
    assert str(exc) == "invalid arguments for tool 'add': a: Field required"


def test_error_kinds_are_the_contracts_strings() -> None:
    assert {k.value for k in ToolErrorKind} == {
        "invalid_arguments",
        "unknown_tool",
        "exception",
        "timeout",
        "unparsable",
        "rejected",
        "retry",
    }


def test_public_namespace_is_sorted_and_complete() -> None:
    exported = agentic.tools.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(agentic.tools, name)
    for module in (agentic.tools.base, agentic.tools.executor, agentic.tools.function):
        assert set(module.__all__) <= set(exported), module.__name__


async def test_partials_are_described_by_the_wrapped_function() -> None:
    def scale(factor: int, value: int) -> int:
        return factor * value

    triple = tool(name="triple")(functools.partial(scale, 3))
    assert list(triple.definition.parameters["properties"]) == ["value"]
    ctx = ToolContext(deps=None, session_id="", turn_id="", call=ToolCall(tool_name="triple"))
    args: dict[str, Any] = {"value": "4"}
    assert await triple.call(args, ctx) == 12


def test_from_output_builds_what_the_model_sees_for_any_result() -> None:
    """The path client-side tool results can take too: normalised, escaped, capped."""
    call = ToolCall(call_id="c9", tool_name="lookup")
    r = ToolResponse.from_output(call, {"answer": "<|eot_id|>42"}, max_output_chars=20)
    assert r.content == '{"answer": "<\\|eot_i\n…[truncated: 7 more characters]'
    assert (r.call_id, r.tool_name, r.truncated, r.error) == ("c9", "lookup", True, None)
    assert r.started_at == r.completed_at
    r = ToolResponse.from_output(call, "late", error=ToolErrorKind.rejected, started_at=T0)
    assert (r.content, r.error, r.started_at) == ("late", ToolErrorKind.rejected, T0)
    assert r.duration > 0


def test_a_tool_result_carries_artifacts_beside_the_output() -> None:
    fig = Artifact(name="figure_1.png", mime_type="image/png", data=PNG_BYTES)
    call = ToolCall(call_id="c1", tool_name="code_interpreter")
    r = ToolResponse.from_output(call, ToolResult("completed <|eot_id|>", artifacts=(fig,)))
    assert r.content == "completed <\\|eot_id|>"
    assert r.artifacts == [fig]
    assert r.artifacts[0].as_image() == PNG
    assert ToolResponse.model_validate_json(r.model_dump_json()).artifacts == [fig]
    with pytest.raises(ConfigError, match="not an image"):
        Artifact(name="a.csv", mime_type="text/csv", data=b"a,b").as_image()
