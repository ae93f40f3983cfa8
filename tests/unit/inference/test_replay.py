"""Recording a backend's raw streams to a file and replaying them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
from helpers import collect

from agentic.errors import ConfigError, InferenceError
from agentic.inference.base import (
    Completion,
    InferenceBackend,
    InferenceRequest,
    TextDelta,
    Timings,
    complete,
)
from agentic.inference.replay import RecordReplayBackend, request_key
from agentic.types import (
    AssistantMessage,
    Message,
    SamplingParams,
    StopReason,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    Usage,
    UserMessage,
    content_text,
)


class EchoBackend:
    """The wrapped dependency: echoes the last message in 4-character deltas, counting calls."""

    def __init__(self, *, completes: bool = True, fail_at: int | None = None) -> None:
        self.requests: list[InferenceRequest] = []
        self.closed = 0
        self.completes = completes
        self.fail_at = fail_at

    async def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]:
        self.requests.append(request)
        last = request.messages[-1].content if request.messages else request.prompt or ""
        text = f"You said: {content_text(last)}<|eot_id|>"
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        try:
            for number, piece in enumerate(pieces):
                if number == self.fail_at:
                    raise InferenceError("the server went away")
                yield TextDelta(piece)
            if self.completes:
                yield Completion(
                    text=text,
                    stop_reason=StopReason.end_of_turn,
                    usage=Usage(prompt_tokens=11, completion_tokens=len(pieces)),
                    timings=Timings(time_to_first_token=123.0, total=456.0),
                )
        finally:
            self.closed += 1


def ask(text: str, **kwargs: object) -> InferenceRequest:
    return InferenceRequest.create(
        "meta-llama/Llama-3.1-8B-Instruct", [{"role": "user", "content": text}], **kwargs
    )


async def test_record_then_replay_without_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "recordings.jsonl"
    inner = EchoBackend()
    recorder = RecordReplayBackend(inner, path, mode="record")
    live_deltas, live = await collect(recorder, ask("hello there"))
    assert "".join(live_deltas) == "You said: hello there<|eot_id|>"
    assert live.timings.total == 456.0  # recording passes the live stream through untouched

    replayer = RecordReplayBackend(None, path, mode="replay")
    deltas, replayed = await collect(replayer, ask("hello there"))
    assert deltas == live_deltas
    assert (replayed.text, replayed.stop_reason, replayed.usage) == (
        live.text,
        live.stop_reason,
        live.usage,
    )
    assert replayed.timings.total < 5
    assert replayed.timings.time_to_first_token is not None
    assert len(inner.requests) == 1
    assert isinstance(replayer, InferenceBackend)
    assert (await complete(replayer, ask("hello there"))).text == live.text


async def test_auto_replays_what_it_has_and_records_the_rest(tmp_path: Path) -> None:
    inner = EchoBackend()
    backend = RecordReplayBackend(inner, tmp_path / "r.jsonl")
    assert backend.mode == "auto"
    await collect(backend, ask("one"))
    await collect(backend, ask("one"))
    assert len(inner.requests) == 1
    assert backend.has_recording(ask("one"))
    assert not backend.has_recording(ask("two"))
    _, two = await collect(backend, ask("two"))
    assert two.text == "You said: two<|eot_id|>"
    assert len(inner.requests) == 2
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["deltas"][:3] == ["You ", "said", ": tw"]


async def test_record_mode_records_again_and_keeps_one_line_per_request(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    first = EchoBackend()
    await collect(RecordReplayBackend(first, path, mode="record"), ask("x"))
    second = EchoBackend()
    backend = RecordReplayBackend(second, path, mode="record")
    await collect(backend, ask("x"))
    assert len(second.requests) == 1
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


async def test_replaying_an_unrecorded_request_names_key_path_and_difference(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.jsonl"
    recorded = ask("hi", today=dt.date(2024, 9, 21))
    await collect(RecordReplayBackend(EchoBackend(), path, mode="record"), recorded)
    backend = RecordReplayBackend(EchoBackend(), path, mode="replay")  # never calls it
    other = ask("hi", today=dt.date(2024, 9, 22))
    with pytest.raises(ConfigError) as caught:
        await collect(backend, other)
    message = str(caught.value)
    assert request_key(other) in message
    assert str(path) in message
    assert "differs in: today" in message
    with pytest.raises(ConfigError, match=r"differs in: messages\[0\]"):
        await collect(backend, ask("bye", today=dt.date(2024, 9, 21)))


async def test_replay_needs_an_existing_file_and_says_when_it_is_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no recordings file"):
        RecordReplayBackend(None, tmp_path / "missing.jsonl", mode="replay")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    backend = RecordReplayBackend(None, tmp_path / "empty.jsonl", mode="replay")
    with pytest.raises(ConfigError, match="has no recordings"):
        await collect(backend, ask("hi"))


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a backend"):
        RecordReplayBackend(None, tmp_path / "r.jsonl", mode="auto")
    with pytest.raises(ConfigError, match="mode must be"):
        RecordReplayBackend(EchoBackend(), tmp_path / "r.jsonl", mode="play")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not a recording"),
        ('{"key": "k", "request": {}, "deltas": []}', "not a recording"),
        ('{"key": "k", "request": {}, "deltas": [], "completion": '
         '{"text": "", "stop_reason": "end_of_turn", "usage": {}}}', "does not match"),
    ],
)  # fmt: skip
async def test_a_corrupt_file_is_reported_with_its_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "r.jsonl"
    await collect(RecordReplayBackend(EchoBackend(), path, mode="record"), ask("fine"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    with pytest.raises(ConfigError, match=rf"r\.jsonl:2: .*{problem}"):
        RecordReplayBackend(None, path, mode="replay")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_bytes(b"\xff\xfe broken")
    with pytest.raises(ConfigError, match="cannot read recordings"):
        RecordReplayBackend(None, tmp_path / "r.jsonl", mode="replay")


def test_the_key_ignores_call_ids_and_cache_key_but_not_content() -> None:
    def history(call_id: str) -> list[Message]:
        return [
            UserMessage(content="weather?"),
            AssistantMessage(
                tool_calls=[ToolCall(call_id=call_id, tool_name="w", arguments={"c": "P"})],
                stop_reason=StopReason.end_of_message,
            ),
            ToolMessage(call_id=call_id, content="25 C"),
        ]

    def key(call_id: str = "a", **kwargs: object) -> str:
        return request_key(InferenceRequest.create("m", history(call_id), **kwargs))

    assert key("a") == key("b") == key("a", cache_key="session-1")
    tool = ToolDefinition(name="w")
    different = [
        key(today=dt.date(2024, 1, 1)),
        key(sampling=SamplingParams(temperature=0)),
        key(tools=[tool]),
        key(tool_choice="required"),
        key(response_format={"type": "object"}),
        key(prompt="raw"),
        request_key(InferenceRequest.create("other-model", history("a"))),
    ]
    assert len({key(), *different}) == len(different) + 1


def test_a_response_format_that_is_not_json_cannot_be_keyed() -> None:
    with pytest.raises(ConfigError, match="response_format"):
        request_key(ask("hi", response_format={"type": object()}))


async def test_concurrent_recordings_all_land_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "r.jsonl"
    backend = RecordReplayBackend(EchoBackend(), path)
    await asyncio.gather(*(collect(backend, ask(f"q{i}")) for i in range(8)))
    assert len(path.read_text(encoding="utf-8").splitlines()) == 8
    assert names(path.parent) == ["r.jsonl"]  # no temporary files left
    replayer = RecordReplayBackend(None, path, mode="replay")
    for i in range(8):
        assert (await complete(replayer, ask(f"q{i}"))).text == f"You said: q{i}<|eot_id|>"


async def test_a_failed_or_abandoned_stream_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    failing = EchoBackend(fail_at=2)
    with pytest.raises(InferenceError, match="went away"):
        await collect(RecordReplayBackend(failing, path), ask("hi"))
    unfinished = EchoBackend(completes=False)
    with pytest.raises(InferenceError, match="without a Completion"):
        await collect(RecordReplayBackend(unfinished, path), ask("hi"))
    abandoned = EchoBackend()
    stream = RecordReplayBackend(abandoned, path).stream(ask("hi"))
    assert isinstance(await anext(stream), TextDelta)
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()
    assert abandoned.closed == 1  # the wrapped generation was stopped
    assert not path.exists()


class OneShotIterator:
    """A wrapped stream that is a plain async iterator (no ``aclose``), as the protocol allows."""

    def __init__(self, items: list[TextDelta | Completion]) -> None:
        self.items = items

    def __aiter__(self) -> OneShotIterator:
        return self

    async def __anext__(self) -> TextDelta | Completion:
        if not self.items:
            raise StopAsyncIteration
        return self.items.pop(0)


class PlainIteratorBackend:
    def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]:
        done = Completion("ok", StopReason.end_of_message, Usage(), Timings(None, 0.0))
        return OneShotIterator([TextDelta("o"), TextDelta("k"), done])


async def test_wraps_backends_whose_streams_are_plain_iterators(tmp_path: Path) -> None:
    backend = RecordReplayBackend(PlainIteratorBackend(), tmp_path / "r.jsonl")
    assert backend.path == tmp_path / "r.jsonl"
    await collect(backend, ask("x"))
    deltas, done = await collect(RecordReplayBackend(None, backend.path, "replay"), ask("x"))
    assert (deltas, done.text, done.stop_reason) == (["o", "k"], "ok", StopReason.end_of_message)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_an_unwritable_recordings_path_is_a_config_error(tmp_path: Path) -> None:
    backend = RecordReplayBackend(EchoBackend(), tmp_path / "r.jsonl", mode="record")
    (tmp_path / "r.jsonl").mkdir()  # a directory appears where the file should go
    with pytest.raises(ConfigError, match="cannot write recordings"):
        await collect(backend, ask("x"))
    assert names(tmp_path) == ["r.jsonl"]  # the temporary file is gone


def test_a_directory_instead_of_a_file_is_refused_early(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").mkdir()
    with pytest.raises(ConfigError, match="cannot read recordings"):
        RecordReplayBackend(EchoBackend(), tmp_path / "r.jsonl")
