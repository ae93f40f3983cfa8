"""The SQLite checkpointer, held to LangGraph's in-memory saver as the reference behaviour,
and the state serializer's round trips."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    create_checkpoint,
    empty_checkpoint,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt

from agentic.agent._checkpoints import SqliteCheckpointer
from agentic.agent._sqlite import SqliteThread
from agentic.agent.store import state_serializer
from agentic.agent.types import InferenceStep, ToolExecutionStep, Turn, TurnStatus
from agentic.tools.base import ToolResponse
from agentic.types import (
    Artifact,
    AssistantMessage,
    ImageContent,
    StopReason,
    SystemMessage,
    TextContent,
    ToolCall,
    ToolMessage,
    UserMessage,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "reference"])
async def saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "reference":
        yield InMemorySaver(serde=state_serializer())
        return
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    cp = SqliteCheckpointer(thread, serde=state_serializer())
    await cp.asetup()
    await cp.asetup()  # idempotent
    yield cp
    await thread.aclose()


def _config(thread_id: str, checkpoint_id: str | None = None, ns: str = "") -> Any:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _turn(n: int) -> Turn:
    return Turn(
        turn_id=f"t{n}",
        session_id="s",
        index=n,
        input_messages=[UserMessage(content=f"question {n}")],
        started_at=NOW,
    )


async def _put(
    saver: BaseCheckpointSaver[Any],
    config: Any,
    previous: Checkpoint,
    values: dict[str, Any],
    step: int,
    source: Literal["input", "loop"] = "loop",
) -> tuple[Any, Checkpoint]:
    """Write ``values`` as the next checkpoint, bumping the version of each channel given."""
    checkpoint = create_checkpoint(previous, None, step)
    versions = dict(previous["channel_versions"])
    new: dict[str, Any] = {}
    for channel in values:
        new[channel] = versions[channel] = saver.get_next_version(versions.get(channel), None)
    checkpoint["channel_versions"] = versions
    kept = {k: v for k, v in previous["channel_values"].items() if k in versions}
    checkpoint["channel_values"] = {**kept, **values}
    saved = await saver.aput(config, checkpoint, {"step": step, "source": source}, new)
    return saved, checkpoint


async def test_latest_by_id_parents_and_unchanged_channels(saver: Any) -> None:
    history = [UserMessage(content="hi"), AssistantMessage(content="hello")]
    c1, cp1 = await _put(saver, _config("a"), empty_checkpoint(), {"history": history}, 0)
    c2, cp2 = await _put(saver, c1, cp1, {"turn": _turn(1), "iteration": 1}, 1)
    c3, _ = await _put(saver, c2, cp2, {"turn": _turn(2), "iteration": 2}, 2)

    latest = await saver.aget_tuple(_config("a"))
    assert latest.config == c3
    assert latest.parent_config == c2
    assert latest.checkpoint["channel_values"] == {
        "history": history,
        "turn": _turn(2),
        "iteration": 2,
    }
    assert latest.metadata["step"] == 2
    first = await saver.aget_tuple(c1)
    assert first.checkpoint["channel_values"] == {"history": history}
    assert first.parent_config is None
    assert await saver.aget_tuple(_config("b")) is None
    assert await saver.aget_tuple(_config("a", "no-such-id")) is None


async def test_a_cleared_channel_has_no_value(saver: Any) -> None:
    c1, cp1 = await _put(saver, _config("a"), empty_checkpoint(), {"unparsable": "x"}, 0)
    cp2 = create_checkpoint(cp1, None, 1)
    version = saver.get_next_version(cp1["channel_versions"]["unparsable"], None)
    cp2["channel_versions"] = {"unparsable": version}
    cp2["channel_values"] = {}
    await saver.aput(c1, cp2, {"step": 1}, {"unparsable": version})
    latest = await saver.aget_tuple(_config("a"))
    assert latest.checkpoint["channel_values"] == {}


async def test_list_newest_first_with_before_limit_and_filter(saver: Any) -> None:
    config, cp = _config("a"), empty_checkpoint()
    ids = []
    for step in range(4):
        config, cp = await _put(saver, config, cp, {"iteration": step}, step)
        ids.append(cp["id"])
    await _put(saver, _config("b"), empty_checkpoint(), {"iteration": 9}, 0)

    listed = [t.checkpoint["id"] async for t in saver.alist(_config("a"))]
    assert listed == ids[::-1]
    assert [t.checkpoint["id"] async for t in saver.alist(_config("a"), limit=2)] == ids[:1:-1]
    older = saver.alist(_config("a"), before=_config("a", ids[2]))
    before = [t.checkpoint["id"] async for t in older]
    assert before == [ids[1], ids[0]]
    odd = [t.metadata["step"] async for t in saver.alist(_config("a"), filter={"step": 1})]
    assert odd == [1]
    assert len([t async for t in saver.alist(None)]) == 5
    one = [t.checkpoint["id"] async for t in saver.alist(_config("a", ids[1]))]
    assert one == [ids[1]]


async def test_pending_writes_keep_task_order_and_special_writes_replace(saver: Any) -> None:
    config, _ = await _put(saver, _config("a"), empty_checkpoint(), {"iteration": 0}, 0)
    calls = [ToolCall(call_id="c1", tool_name="f", arguments={"x": 1})]
    await saver.aput_writes(config, [("pending", calls), ("iteration", 1)], "task-b", "~b")
    await saver.aput_writes(config, [("messages", [UserMessage(content="m")])], "task-a", "~a")
    await saver.aput_writes(config, [("iteration", 5)], "task-b", "~b")  # kept once
    await saver.aput_writes(config, [("__interrupt__", [Interrupt(value=1)])], "task-c", "~c")
    await saver.aput_writes(config, [("__interrupt__", [Interrupt(value=2)])], "task-c", "~c")

    writes = (await saver.aget_tuple(_config("a"))).pending_writes
    assert [(task, channel) for task, channel, _ in writes] == [
        ("task-a", "messages"),
        ("task-b", "pending"),
        ("task-b", "iteration"),
        ("task-c", "__interrupt__"),
    ]
    values = {(task, channel): value for task, channel, value in writes}
    assert values["task-b", "pending"] == calls
    assert values["task-b", "iteration"] == 1
    assert values["task-c", "__interrupt__"][0].value == 2


async def test_delete_thread_leaves_other_threads(saver: Any) -> None:
    config, _ = await _put(saver, _config("a"), empty_checkpoint(), {"iteration": 0}, 0)
    await saver.aput_writes(config, [("iteration", 1)], "t")
    await _put(saver, _config("b"), empty_checkpoint(), {"iteration": 0}, 0)
    await saver.adelete_thread("a")
    assert await saver.aget_tuple(_config("a")) is None
    assert await saver.aget_tuple(_config("b")) is not None


async def test_namespaces_are_separate(saver: Any) -> None:
    await _put(saver, _config("a", ns="inner"), empty_checkpoint(), {"iteration": 7}, 0)
    assert await saver.aget_tuple(_config("a")) is None
    inner = await saver.aget_tuple(_config("a", ns="inner"))
    assert inner.checkpoint["channel_values"] == {"iteration": 7}


def test_versions_increase() -> None:
    saver = SqliteCheckpointer.__new__(SqliteCheckpointer)
    versions = [saver.get_next_version(None, None)]
    for _ in range(11):
        versions.append(saver.get_next_version(versions[-1], None))
    assert versions == sorted(versions)
    assert versions[-1].startswith(f"{12:032}.")
    assert saver.get_next_version(3, None).startswith(f"{4:032}.")  # type: ignore[arg-type]


async def test_a_value_is_stored_once_however_many_checkpoints_follow(tmp_path: Path) -> None:
    """The point of the design: a step writes what it changed, not the session's history."""
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer(), prune=False)
    await saver.asetup()
    history = [UserMessage(content=f"message {i}") for i in range(200)]
    config, cp = await _put(saver, _config("a"), empty_checkpoint(), {"history": history}, 0)
    for step in range(1, 20):
        config, cp = await _put(saver, config, cp, {"turn": _turn(step)}, step)
    await thread.aclose()
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        rows = dict(
            conn.execute(
                "SELECT channel, count(*) FROM agentic_checkpoint_values GROUP BY channel"
            ).fetchall()
        )
    assert rows == {"history": 1, "turn": 19}


def _value_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(
            conn.execute(
                "SELECT channel, count(*) FROM agentic_checkpoint_values GROUP BY channel"
            ).fetchall()
        )


async def test_small_values_live_in_the_checkpoint_row(tmp_path: Path) -> None:
    """Flags, counters, short strings and empty lists need no row of their own; a later
    checkpoint that leaves them unchanged still reads them, and a value may grow and shrink."""
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer(), prune=False)
    await saver.asetup()
    small = {"iteration": 3, "pending": [], "unparsable": None, "reformat": True, "x": 0.5}
    config, cp = await _put(saver, _config("a"), empty_checkpoint(), {"turn": _turn(0), **small}, 0)
    assert _value_rows(tmp_path / "c.sqlite") == {"turn": 1}
    config, cp = await _put(saver, config, cp, {"turn": _turn(1)}, 1)
    got = await saver.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"] == {"turn": _turn(1), **small}
    calls = [ToolCall(call_id="c1", tool_name="lookup", arguments={"city": "Paris"})]
    long_text = "x" * 1000
    config, cp = await _put(saver, config, cp, {"pending": calls, "unparsable": long_text}, 2)
    got = await saver.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"]["pending"] == calls
    assert got.checkpoint["channel_values"]["unparsable"] == long_text
    config, cp = await _put(saver, config, cp, {"pending": []}, 3)
    got = await saver.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"] == {
        "turn": _turn(1),
        **small,
        "unparsable": long_text,
    }
    await thread.aclose()


async def test_checkpoints_with_every_value_in_rows_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions saved before small values moved into the checkpoint row read as before."""
    import agentic.agent._checkpoints as module

    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await saver.asetup()
    values = {"turn": _turn(0), "iteration": 2, "pending": [], "unparsable": None}
    with monkeypatch.context() as patched:
        patched.setattr(module, "_inlined", lambda value: False)
        config, _ = await _put(saver, _config("a"), empty_checkpoint(), values, 0)
    assert set(_value_rows(tmp_path / "c.sqlite")) == set(values)
    got = await saver.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"] == values
    await thread.aclose()


class _CountingSerde:
    """The state serializer, counting the values it encodes by type."""

    def __init__(self) -> None:
        self.inner = state_serializer()
        self.encoded: list[str] = []
        self.decoded: list[str] = []

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        self.encoded.append(type(obj).__name__)
        return self.inner.dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        value = self.inner.loads_typed(data)
        self.decoded.append(type(value).__name__)
        return value


async def test_a_step_encodes_the_values_its_task_wrote_once(tmp_path: Path) -> None:
    """A task's writes, then the checkpoint holding them: each value is encoded once, and
    both come back whole; a value not among the writes is encoded by the checkpoint."""
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    serde = _CountingSerde()
    saver = SqliteCheckpointer(thread, serde=serde)
    await saver.asetup()
    config, cp = await _put(saver, _config("a"), empty_checkpoint(), {"turn": _turn(0)}, 0)
    turn = _turn(1)
    messages = [UserMessage(content="hi"), AssistantMessage(content="hello")]
    await saver.aput_writes(config, [("turn", turn), ("messages", messages)], "task-1")
    serde.encoded.clear()
    other = [UserMessage(content="not written by the task")]
    values = {"turn": turn, "messages": messages, "history": other}
    saved, _ = await _put(saver, config, cp, values, 1)
    assert sorted(serde.encoded) == ["dict", "dict", "list"]  # head, metadata, history
    got = await saver.aget_tuple(saved)
    assert got is not None
    assert got.checkpoint["channel_values"] == values
    # the next checkpoint encodes afresh: what the last task wrote is no longer remembered
    serde.encoded.clear()
    await _put(saver, saved, got.checkpoint, {"turn": turn}, 2)
    assert "Turn" in serde.encoded
    await thread.aclose()


async def _kept_saver(path: Path, serde: Any = None) -> tuple[SqliteThread, SqliteCheckpointer]:
    """A checkpointer on ``path`` keeping the history decoded (and stored as tails)."""
    thread = SqliteThread(path, busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=serde or state_serializer(), keep_decoded=["history"])
    await saver.asetup()
    return thread, saver


async def test_growing_values_stay_decoded_between_turns(tmp_path: Path) -> None:
    """A kept channel's value written (or read once) comes back as the same object, without
    decoding; another connection (another process) decodes its own copy."""
    serde = _CountingSerde()
    thread, saver = await _kept_saver(tmp_path / "c.sqlite", serde)
    history = [UserMessage(content="first"), AssistantMessage(content="answer " * 100)]
    values = {"history": history, "turn": _turn(1)}
    config, _ = await _put(saver, _config("s"), empty_checkpoint(), values, 0)
    serde.decoded.clear()
    got = await saver.aget_tuple(config)
    assert got is not None
    assert got.checkpoint["channel_values"]["history"] is history
    assert got.checkpoint["channel_values"]["turn"] == _turn(1)
    assert "list" not in serde.decoded  # the turn was decoded, the history was not

    other_serde = _CountingSerde()
    other_thread, other = await _kept_saver(tmp_path / "c.sqlite", other_serde)
    first = await other.aget_tuple(config)
    again = await other.aget_tuple(config)
    assert first is not None
    assert again is not None
    assert first.checkpoint["channel_values"]["history"] == history
    assert first.checkpoint["channel_values"]["history"] is not history
    assert (
        again.checkpoint["channel_values"]["history"]
        is (first.checkpoint["channel_values"]["history"])
    )
    assert other_serde.decoded.count("list") == 1
    await other_thread.aclose()
    await thread.aclose()


async def test_kept_values_are_forgotten_with_their_rows_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, saver = await _kept_saver(tmp_path / "c.sqlite")
    config, cp = await _put(
        saver, _config("s"), empty_checkpoint(), {"history": [UserMessage(content="a")]}, -1
    )
    config, cp = await _put(saver, config, cp, {"history": [UserMessage(content="b")]}, 0)
    latest = cp["channel_versions"]["history"]
    assert [k[3] for k in saver._kept] == [latest]  # a channel's last value only
    # a new turn's input checkpoint prunes the first value; the last one stays kept
    config, cp = await _put(saver, config, cp, {"turn": _turn(1)}, 1, "input")
    assert [k[3] for k in saver._kept] == [latest]
    await _put(saver, config, cp, {"iteration": 1}, 2)
    assert saver._unpruned
    assert saver._latest
    await saver.adelete_thread("s")
    # a deleted session leaves nothing behind, not even a counter until the next clear-out
    assert not saver._kept
    assert saver._kept_bytes == 0
    assert not saver._latest
    assert not saver._unpruned

    monkeypatch.setattr("agentic.agent._checkpoints._KEPT_BYTES", 4000)
    await _put(
        saver, _config("big"), empty_checkpoint(), {"history": [UserMessage(content="x" * 2000)]}, 0
    )
    assert not saver._kept  # larger than a quarter of the bound: not kept
    for i in range(8):
        history = [UserMessage(content=f"{i}" * 500)]
        await _put(saver, _config(f"t{i}"), empty_checkpoint(), {"history": history}, 0)
    assert 0 < saver._kept_bytes <= 4000
    assert ("t0", "", "history") not in {k[:3] for k in saver._kept}  # the oldest went first
    got = await saver.aget_tuple(_config("t0"))
    assert got is not None
    assert got.checkpoint["channel_values"]["history"] == [UserMessage(content="0" * 500)]
    await thread.aclose()


async def test_a_new_turn_drops_what_resuming_no_longer_needs(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await saver.asetup()
    history = [UserMessage(content="first")]
    # turn 1: an input checkpoint, then two steps
    config, cp = await _put(
        saver, _config("s"), empty_checkpoint(), {"turn": _turn(1)}, -1, "input"
    )
    first_input = config
    config, cp = await _put(saver, config, cp, {"turn": _turn(2), "iteration": 1}, 0)
    config, cp = await _put(saver, config, cp, {"history": history, "iteration": 2}, 1)
    last_of_turn_1 = config
    await saver.aput_writes(config, [("iteration", 3)], "leftover")
    await _put(saver, _config("other"), empty_checkpoint(), {"iteration": 1}, 0)  # untouched
    # turn 2 starts: its input checkpoint follows the last one of turn 1
    config, cp = await _put(saver, config, cp, {"turn": _turn(3)}, 2, "input")

    kept = [t.config async for t in saver.alist(_config("s"))]
    assert kept == [config, last_of_turn_1]
    assert await saver.aget_tuple(first_input) is None
    latest = await saver.aget_tuple(_config("s"))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {
        "turn": _turn(3),
        "iteration": 2,
        "history": history,
    }
    parent = await saver.aget_tuple(last_of_turn_1)
    assert parent is not None
    assert [(w[1], w[2]) for w in parent.pending_writes or []] == [("iteration", 3)]
    assert parent.checkpoint["channel_values"]["turn"] == _turn(2)
    assert await saver.aget_tuple(_config("other")) is not None
    await thread.aclose()
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        turns = conn.execute(
            "SELECT count(*) FROM agentic_checkpoint_values WHERE thread_id = 's' "
            "AND channel = 'turn'"
        ).fetchone()
    assert turns == (2,)  # turn 1's first value went with the checkpoints that used it


async def test_without_new_turns_every_sixteenth_checkpoint_prunes(tmp_path: Path) -> None:
    """Durability ``exit`` writes no input checkpoints: pruning still happens."""
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await saver.asetup()
    config, cp = _config("s"), empty_checkpoint()
    for step in range(20):
        config, cp = await _put(saver, config, cp, {"iteration": step}, step)
    kept = [t.metadata["step"] async for t in saver.alist(_config("s"))]
    assert kept == [19, 18, 17, 16, 15]  # pruned at the 17th: its parent and what followed
    latest = await saver.aget_tuple(_config("s"))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"iteration": 19}
    await thread.aclose()


async def test_the_prune_counters_stay_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentic.agent._checkpoints._MAX_TRACKED", 2)
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await saver.asetup()
    for name in ("a", "b", "c", "d"):
        config, cp = await _put(saver, _config(name), empty_checkpoint(), {"iteration": 0}, 0)
        await _put(saver, config, cp, {"iteration": 1}, 1)
    assert 0 < len(saver._unpruned) <= 2
    await thread.aclose()


async def test_without_pruning_every_checkpoint_stays(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer(), prune=False)
    await saver.asetup()
    config, cp = await _put(saver, _config("s"), empty_checkpoint(), {"iteration": 0}, -1, "input")
    config, cp = await _put(saver, config, cp, {"iteration": 1}, 0)
    config, cp = await _put(saver, config, cp, {"iteration": 2}, 1, "input")
    assert len([t async for t in saver.alist(_config("s"))]) == 3
    await thread.aclose()


async def test_checkpoints_of_langgraphs_sqlite_saver_are_adopted_once(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    with sqlite3.connect(tmp_path / "c.sqlite", check_same_thread=False) as conn:
        old = SqliteSaver(conn, serde=state_serializer())
        cp = create_checkpoint(empty_checkpoint(), None, 0)
        cp["channel_versions"] = {"iteration": "1", "turn": "1"}
        cp["channel_values"] = {"iteration": 4, "turn": _turn(7)}
        config = old.put(_config("old"), cp, {"step": 0, "source": "loop"}, {})
        old.put_writes(config, [("pending", []), ("iteration", 5)], "task-1")
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    assert await saver.asetup() == 1
    assert await saver.asetup() == 0  # ours exist now: never adopted twice
    adopted = await saver.aget_tuple(_config("old"))
    assert adopted is not None
    assert adopted.checkpoint["id"] == cp["id"]
    assert adopted.checkpoint["channel_values"] == {"iteration": 4, "turn": _turn(7)}
    assert [(w[1], w[2]) for w in adopted.pending_writes or []] == [
        ("pending", []),
        ("iteration", 5),
    ]
    await thread.aclose()


async def test_a_closed_connection_is_a_clear_error(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await thread.aclose()
    with pytest.raises(RuntimeError, match="connection closed"):
        saver.get_tuple(_config("a"))


async def test_a_failed_put_writes_nothing(tmp_path: Path) -> None:
    thread = SqliteThread(tmp_path / "c.sqlite", busy_timeout=1.0)
    await thread.open()
    saver = SqliteCheckpointer(thread, serde=state_serializer())
    await saver.asetup()
    checkpoint = create_checkpoint(empty_checkpoint(), None, 0)
    checkpoint["channel_values"] = {"bad": object()}  # no serializer takes it
    with pytest.raises(TypeError):
        await saver.aput(_config("a"), checkpoint, {}, {"bad": "1", "iteration": "1"})
    assert await saver.aget_tuple(_config("a")) is None
    await thread.aclose()


# --- the serializer ---------------------------------------------------------------------------


def _rich_turn() -> Turn:
    answer = AssistantMessage(
        content="",
        tool_calls=[ToolCall(call_id="c", tool_name="f", arguments={"a": [1, {"b": None}]})],
        stop_reason=StopReason.end_of_message,
    )
    step = InferenceStep(
        step_id="s1",
        turn_id="t",
        started_at=NOW,
        completed_at=NOW,
        model_response=answer,
        raw_text='{"name": "f"}<|eom_id|>',
    )
    image = ImageContent.model_validate(
        {"data": b"\x89PNG\r\n\x1a\n" + bytes(8), "mime": "image/png"}
    )
    figure = Artifact(name="a.png", mime_type="image/png", data=b"\x00\xff")
    response = ToolResponse(call_id="c", tool_name="f", content="done", artifacts=[figure])
    tools = ToolExecutionStep(
        step_id="s2",
        turn_id="t",
        started_at=NOW,
        completed_at=NOW,
        tool_calls=list(answer.tool_calls),
        tool_responses=[response],
    )
    return Turn(
        turn_id="t",
        session_id="s",
        index=3,
        input_messages=[UserMessage(content=[TextContent(text="look"), image])],
        steps=[step, tools],
        status=TurnStatus.awaiting_input,
        started_at=NOW,
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (_rich_turn(), "agentic-model"),
        (
            [
                SystemMessage(content="sys"),
                UserMessage(content="u"),
                AssistantMessage(content="a", stop_reason=StopReason.end_of_turn),
                ToolMessage(call_id="c", tool_name="f", content="r"),
            ],
            "agentic-messages",
        ),
        ([ToolCall(call_id="c", tool_name="f", arguments={})], "agentic-tool-calls"),
        ({"turn": _rich_turn(), "n": 1}, "msgpack"),
        ([], "msgpack"),
        ([1, 2], "msgpack"),
        (None, "null"),
        (GraphInterrupt([Interrupt(value={"x": 1})]).args[0], "msgpack"),
    ],
)
def test_state_values_round_trip(value: Any, kind: str) -> None:
    serde = state_serializer()
    dumped = serde.dumps_typed(value)
    assert dumped[0] == kind
    assert serde.loads_typed(dumped) == value


def test_an_unregistered_model_name_is_refused() -> None:
    serde = state_serializer()
    with pytest.raises(ValueError, match="unregistered type 'Secret'"):
        serde.loads_typed(("agentic-model", b'Secret\0{"x": 1}'))


def test_two_models_with_one_name_are_refused() -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from pydantic import BaseModel

    from agentic.agent._serde import StateSerializer

    class Turn(BaseModel):  # shadows the real Turn's name
        x: int = 0

    with pytest.raises(ValueError, match="share a class name"):
        StateSerializer([Turn, _rich_turn().__class__], JsonPlusSerializer())


def _history_rows(path: Path, thread_id: str = "s") -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return list(
            conn.execute(
                "SELECT type, length(value) FROM agentic_checkpoint_values "
                "WHERE thread_id = ? AND channel = 'history' ORDER BY version",
                (thread_id,),
            )
        )


async def _turns(
    saver: SqliteCheckpointer, n: int, config: Any, cp: Checkpoint, history: list[Any]
) -> tuple[Any, Checkpoint, list[Any]]:
    """``n`` turns as the graph writes them: an input checkpoint, then the last step's write
    of the history extended by the turn's messages, then its checkpoint."""
    for _ in range(n):
        config, cp = await _put(saver, config, cp, {"turn": _turn(len(history))}, 0, "input")
        history = [*history, UserMessage(content=f"q{len(history)}"), AssistantMessage(content="a")]
        await saver.aput_writes(config, [("history", history)], f"task-{len(history)}")
        config, cp = await _put(saver, config, cp, {"history": history}, 1)
    return config, cp, history


async def test_a_growing_history_is_stored_as_its_new_tails(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    thread, saver = await _kept_saver(path)
    _, _, history = await _turns(saver, 3, _config("s"), empty_checkpoint(), [])
    rows = _history_rows(path)
    assert [kind.startswith("agentic_tail:") for kind, _ in rows] == [False, True, True]
    whole = rows[0][1]
    assert all(size <= whole + 10 for _, size in rows[1:])  # a turn's two messages each
    # another connection (a restarted process) joins the rows
    other_thread, other = await _kept_saver(path)
    got = await other.aget_tuple(_config("s"))
    assert got is not None
    assert got.checkpoint["channel_values"]["history"] == history
    # and extends what it read (the graph's state holds the value read) with tails of its own
    read = got.checkpoint["channel_values"]["history"]
    _, _, history = await _turns(other, 1, got.config, got.checkpoint, read)
    assert _history_rows(path)[-1][0].startswith("agentic_tail:")
    again = await saver.aget_tuple(_config("s"))
    assert again is not None
    assert again.checkpoint["channel_values"]["history"] == history
    await other_thread.aclose()
    await thread.aclose()


async def test_every_33rd_history_is_whole_and_pruning_keeps_what_the_tails_extend(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.sqlite"
    thread, saver = await _kept_saver(path)
    _, _, history = await _turns(saver, 40, _config("s"), empty_checkpoint(), [])
    rows = _history_rows(path)
    # pruned to the chain the latest value needs: its whole value and the tails after it
    assert [kind.startswith("agentic_tail:") for kind, _ in rows] == [False] + [True] * 6
    other_thread, other = await _kept_saver(path)
    got = await other.aget_tuple(_config("s"))
    assert got is not None
    assert got.checkpoint["channel_values"]["history"] == history
    assert len(history) == 80
    await other_thread.aclose()
    await thread.aclose()


async def test_pending_writes_stored_as_tails_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    thread, saver = await _kept_saver(path)
    config, cp, history = await _turns(saver, 2, _config("s"), empty_checkpoint(), [])
    longer = [*history, UserMessage(content="crashed before its checkpoint")]
    await saver.aput_writes(config, [("history", longer)], "task-x")
    other_thread, other = await _kept_saver(path)
    got = await other.aget_tuple(config)
    assert got is not None
    assert [(w[1], w[2]) for w in got.pending_writes or []][-1] == ("history", longer)
    # a new turn prunes: the pending write's base stays readable
    await _put(saver, config, cp, {"turn": _turn(9)}, 2, "input")
    third_thread, third = await _kept_saver(path)
    parent = await third.aget_tuple(config)
    assert parent is not None
    assert [(w[1], w[2]) for w in parent.pending_writes or []][-1] == ("history", longer)
    for t in (third_thread, other_thread, thread):
        await t.aclose()


async def test_a_history_not_extending_the_last_one_is_stored_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    thread, saver = await _kept_saver(path)
    config, cp, history = await _turns(saver, 2, _config("s"), empty_checkpoint(), [])
    rewritten = [UserMessage(content="q0"), *history[1:]]  # equal, but not the same objects
    config, cp = await _put(saver, config, cp, {"history": rewritten}, 3)
    assert not _history_rows(path)[-1][0].startswith("agentic_tail:")
    # a base removed behind the checkpointer's back is noticed before a tail refers to it
    with sqlite3.connect(path) as conn:
        conn.execute(
            "DELETE FROM agentic_checkpoint_values WHERE channel = 'history' AND version = ?",
            (cp["channel_versions"]["history"],),
        )
    longer = [*rewritten, AssistantMessage(content="more")]
    config, cp = await _put(saver, config, cp, {"history": longer}, 4)
    assert not _history_rows(path)[-1][0].startswith("agentic_tail:")
    await thread.aclose()


async def test_a_tail_whose_base_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    thread, saver = await _kept_saver(path)
    await _turns(saver, 2, _config("s"), empty_checkpoint(), [])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "DELETE FROM agentic_checkpoint_values WHERE channel = 'history' "
            "AND type NOT LIKE 'agentic_tail:%'"
        )
    other_thread, other = await _kept_saver(path)
    with pytest.raises(RuntimeError, match=r"lacks value .* of 'history'.*changed outside"):
        await other.aget_tuple(_config("s"))
    await other_thread.aclose()
    await thread.aclose()
