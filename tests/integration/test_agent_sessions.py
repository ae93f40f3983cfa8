"""Sessions: persistence across restarts, resume after a kill, concurrency, context budget,
and the shield / memory steps through their protocols."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import agent_on, events_of, prompts, step_types
from pg_server import pg_bin, postgres_server

from agentic.agent import (
    Agent,
    InferenceStep,
    MemoryRetrievalStep,
    PersistenceConfig,
    SessionInfo,
    ShieldCallStep,
    Turn,
    TurnStatus,
)
from agentic.errors import (
    AnswerFormatError,
    SessionBusyError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStateError,
    TurnNotFoundError,
)
from agentic.memory import RetrievedChunk
from agentic.shields import ShieldStage, Violation
from agentic.testing import Reply, VLLMTestServer
from agentic.tools import tool
from agentic.types import Document, Message, ToolDefinition, content_text

SQLITE = PersistenceConfig(backend="sqlite")


@tool
async def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: 25C"


async def _continues_with_its_history(
    agent: Agent, server: VLLMTestServer, session_id: str, first: Turn
) -> None:
    """The session's second turn follows its first, whose messages are in the prompt."""
    again = await agent.get_session(session_id)
    second = await again.run("What is my name?")
    turns = await again.turns()
    assert second.index == 1
    assert [t.turn_id for t in turns] == [first.turn_id, second.turn_id]
    prompt = prompts(server)[-1]
    assert "My name is Ada.<|eot_id|>" in prompt
    assert "Nice to meet you, Ada.<|eot_id|>" in prompt


async def test_sessions_survive_a_restart(tmp_path: Path) -> None:
    script = ["Nice to meet you, Ada.<|eot_id|>", "Your name is Ada.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            session = await agent.create_session("intro")
            first = await session.run("My name is Ada.")
        assert (tmp_path / "sessions.sqlite").exists()
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:  # a new process
            listed = await agent.list_sessions()
            assert [(s.session_id, s.name, s.turn_count) for s in listed] == [
                (session.id, "intro", 1)
            ]
            await _continues_with_its_history(agent, server, session.id, first)


async def test_a_long_sqlite_session_keeps_only_what_resuming_needs(tmp_path: Path) -> None:
    pick = ToolDefinition.from_json_schema(
        "pick_file", {"type": "object", "properties": {}}, "Ask the user to pick a file"
    )
    script = [
        '{"name": "lookup", "parameters": {"city": "Rome"}}<|eot_id|>',
        "Rome: 25C.<|eot_id|>",
        '{"name": "pick_file", "parameters": {}}<|eot_id|>',
        "You picked a.csv.<|eot_id|>",
        *(f"Answer {i}.<|eot_id|>" for i in range(4)),
    ]
    with VLLMTestServer(script) as server:
        tools: dict[str, Any] = {"tools": [lookup], "client_tools": [pick], "persistence": SQLITE}
        async with agent_on(server, tmp_path, **tools) as agent:
            session = await agent.create_session()
            await session.run("Weather in Rome?")
            waiting = await session.run("Open my data")
            call = waiting.pending_tool_calls[0]
            await session.resume({call.call_id: "a.csv"})
            for i in range(2):
                await session.run(f"Question {i}")
        async with agent_on(server, tmp_path, **tools) as agent:  # a new process
            again = await agent.get_session(session.id)
            await again.run("Question 2")
            turns = await again.turns()
    assert [t.output_text for t in turns] == [
        "Rome: 25C.",
        "You picked a.csv.",
        "Answer 0.",
        "Answer 1.",
        "Answer 2.",
    ]
    assert "Weather in Rome?<|eot_id|>" in prompts(server)[-1]  # the history is all there
    with sqlite3.connect(tmp_path / "sessions.sqlite") as conn:
        (checkpoints,) = conn.execute("SELECT count(*) FROM agentic_checkpoints").fetchone()
    assert checkpoints <= 4  # the last turn's input, step and end, and the one before


async def test_a_long_sqlite_session_writes_each_turn_not_its_whole_history(
    tmp_path: Path,
) -> None:
    """40 turns (past the whole value every 33rd turn stores), then a restart: the history
    is read back whole from its rows, and turns stored only what they added."""
    with VLLMTestServer(lambda rec: Reply(text=f"Answer {len(prompts(server))}.")) as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            session = await agent.create_session()
            for i in range(40):
                await session.run(f"Question {i}")
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:  # a new process
            turn = await (await agent.get_session(session.id)).run("Question 40")
    assert turn.index == 40
    prompt = prompts(server)[-1]
    assert all(f"Question {i}<|eot_id|>" in prompt for i in range(41))
    with sqlite3.connect(tmp_path / "sessions.sqlite") as conn:
        rows = conn.execute(
            "SELECT type LIKE 'agentic_tail:%', max(length(value)) "
            "FROM agentic_checkpoint_values WHERE channel = 'history' GROUP BY 1"
        ).fetchall()
    sizes = dict(rows)
    assert sizes[1] * 20 < sizes[0]  # a turn's tail against the whole history


async def test_a_long_memory_session_keeps_only_what_resuming_needs(tmp_path: Path) -> None:
    script = [f"Answer {i}.<|eot_id|>" for i in range(6)]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path) as agent:  # memory backend
            session = await agent.create_session()
            other = await agent.create_session()
            await other.run("Elsewhere")
            for i in range(5):
                await session.run(f"Question {i}")
            saver: Any = agent.sessions.checkpointer
            stored = saver.storage[session.id][""]
            blobs = {k for k in saver.blobs if k[0] == session.id}
            referenced = {
                (session.id, "", channel, version)
                for saved, _, _ in stored.values()
                for channel, version in saver.serde.loads_typed(saved)["channel_versions"].items()
            }
            others = saver.storage[other.id][""]
    assert len(stored) == 2  # the last turn's end and the one before
    assert blobs == referenced  # no value only a dropped checkpoint used
    assert len(others) == 1
    assert "Question 0<|eot_id|>" in prompts(server)[-1]


async def test_sessions_saved_by_langgraphs_sqlite_saver_are_adopted(tmp_path: Path) -> None:
    """A session file from before our own checkpointer: its sessions continue, history intact."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from agentic.agent.store import SessionStore, state_serializer

    script = ["Nice to meet you, Ada.<|eot_id|>", "Your name is Ada.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path) as agent:  # memory: the state to write old-style
            session = await agent.create_session("intro")
            first = await session.run("My name is Ada.")
            config: Any = {"configurable": {"thread_id": session.id, "checkpoint_ns": ""}}
            saver: Any = agent.sessions.checkpointer
            saved = saver.get_tuple(config)
        records = SessionStore(SQLITE, tmp_path)
        await records.open()
        await records.save_session(session.info)
        await records.save_turn(first, session.info)
        await records.aclose()
        with sqlite3.connect(tmp_path / "sessions.sqlite", check_same_thread=False) as conn:
            conn.execute("DELETE FROM agentic_checkpoints")  # as if our tables were just made
            old = SqliteSaver(conn, serde=state_serializer())
            versions = saved.checkpoint["channel_versions"]
            old.put(config, saved.checkpoint, saved.metadata, versions)
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            await _continues_with_its_history(agent, server, session.id, first)


async def test_get_list_and_delete(tmp_path: Path) -> None:
    with VLLMTestServer(["One.<|eot_id|>"]) as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            a = await agent.create_session("a")
            b = await agent.create_session("b", metadata={"user": "u1"})
            turn = await a.run("hi")
            step = await a.get_step(turn.turn_id, turn.steps[0].step_id)
            assert isinstance(step, InferenceStep)
            assert (await a.get_turn(turn.turn_id)).output_text == "One."
            with pytest.raises(TurnNotFoundError, match="has no turn 'nope'"):
                await a.get_turn("nope")
            with pytest.raises(LookupError, match="has no step 'nope'"):
                await a.get_step(turn.turn_id, "nope")
            with pytest.raises(AnswerFormatError, match="not a valid SessionInfo"):
                turn.parse(SessionInfo)  # "One." is no JSON
            assert [s.session_id for s in await agent.list_sessions()] == [a.id, b.id]
            assert (await agent.get_session(b.id)).info.metadata == {"user": "u1"}
            await a.delete()
            assert [s.session_id for s in await agent.list_sessions()] == [b.id]
            with pytest.raises(SessionNotFoundError):
                await agent.get_session(a.id)


async def test_create_session_never_reuses_an_existing_id(tmp_path: Path) -> None:
    with VLLMTestServer(["One.<|eot_id|>"]) as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            alice = await agent.create_session("alice", session_id="conv-42")
            await alice.run("my account number is 9999")
            with pytest.raises(SessionExistsError, match=r"agent.get_session\('conv-42'\)"):
                await agent.create_session("bob", session_id="conv-42")
            [info] = await agent.list_sessions()
    assert (info.name, info.turn_count) == ("alice", 1)  # the record is untouched


async def test_a_deleted_session_stays_deleted(tmp_path: Path) -> None:
    with VLLMTestServer(lambda request: "One.<|eot_id|>") as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            session = await agent.create_session()
            await session.run("hi")
            stale = await agent.get_session(session.id)  # a handle from before the delete
            await agent.delete_session(session.id)
            for attempt in (stale.run("again"), session.run("again"), stale.resume()):
                with pytest.raises(SessionNotFoundError):
                    await attempt
            with pytest.raises(SessionNotFoundError):
                await stale.turns()
            assert await agent.list_sessions() == []


async def test_an_agent_sees_only_its_own_sessions(tmp_path: Path) -> None:
    with VLLMTestServer(lambda request: "One.<|eot_id|>") as server:
        async with (
            agent_on(server, tmp_path, persistence=SQLITE, name="support") as support,
            agent_on(server, tmp_path, persistence=SQLITE, name="billing") as billing,
        ):
            session = await support.create_session()
            await session.run("my card number")
            assert await billing.list_sessions() == []
            with pytest.raises(SessionNotFoundError, match="belongs to agent 'support'"):
                await billing.get_session(session.id)
            with pytest.raises(SessionNotFoundError):
                await billing.delete_session(session.id)
            assert [s.session_id for s in await support.list_sessions()] == [session.id]


async def test_two_turns_on_one_session_at_once_are_rejected(tmp_path: Path) -> None:
    with VLLMTestServer(["Slow answer.<|eot_id|>"], latency=0.3) as server:
        async with agent_on(server, tmp_path) as agent:
            session = await agent.create_session()
            first = asyncio.ensure_future(session.run("one"))
            await asyncio.sleep(0.1)
            with pytest.raises(SessionBusyError, match="already running a turn"):
                await session.run("two")
            assert (await first).output_text == "Slow answer."


async def test_hundred_sessions_run_concurrently(tmp_path: Path) -> None:
    def reply(request: object) -> str:
        return "Answer.<|eot_id|>"

    with VLLMTestServer(lambda rec: Reply(text="Answer.<|eot_id|>"), latency=0.05) as server:
        async with agent_on(server, tmp_path, persistence=SQLITE) as agent:
            sessions = [await agent.create_session() for _ in range(100)]
            turns = await asyncio.gather(*(s.run(f"question {i}") for i, s in enumerate(sessions)))
            listed = await agent.list_sessions()
    assert all(t.output_text == "Answer." for t in turns)
    assert len({t.session_id for t in turns}) == 100
    assert len(listed) == 100
    assert all(s.turn_count == 1 for s in listed)


@pytest.mark.parametrize(
    "persistence",
    [SQLITE, PersistenceConfig(backend="memory")],
    ids=["sqlite-per-step", "memory-at-exit"],
)
async def test_failed_turn_is_resumed_from_its_last_step(
    tmp_path: Path, persistence: PersistenceConfig
) -> None:
    """Per-step writes (SQLite) and the memory backend's write when the turn stops both keep
    the finished tool step."""
    calls: list[str] = []

    @tool
    async def count(city: str) -> str:
        calls.append(city)
        return "counted"

    script: list[str | Reply] = [
        '{"name": "count", "parameters": {"city": "Rome"}}<|eot_id|>',
        Reply(status=500, error="engine died"),
        "Counted.<|eot_id|>",
    ]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path, tools=[count], persistence=persistence) as agent:
            session = await agent.create_session()
            with pytest.raises(Exception, match="engine died"):
                await session.run("count Rome")
            with pytest.raises(SessionStateError, match="resume"):
                await session.run("something else")
            turn = await session.resume()
    assert turn.output_text == "Counted."
    assert calls == ["Rome"]  # the finished tool step was not run again
    assert step_types(turn) == ["inference", "tool_execution", "inference"]


CHILD = """
import asyncio, os, sys
from pathlib import Path
from typing import Any
from agentic.agent import Agent, AgentConfig, PersistenceConfig
from agentic.config import Settings
from agentic.inference.vllm_server import VLLMServer
from agentic.tools import tool

home, url, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

@tool
async def count(city: str) -> str:
    with marker.open("a") as f:
        f.write(city + "\\n")
    if city == "Paris" and os.environ.get("KILL"):
        os._exit(9)  # the process dies in the middle of the turn's second tool step
    return "counted " + city

async def main() -> None:
    agent = Agent(
        AgentConfig(model="meta-llama/Llama-3.1-8B-Instruct", tools=[count],
                    persistence=PersistenceConfig(backend="sqlite")),
        backend=VLLMServer(url, max_retries=0), settings=Settings(home=home))
    async with agent:
        if os.environ.get("KILL"):
            session = await agent.create_session("killed")
            await session.run("count Rome then Paris")
        else:
            (info,) = await agent.list_sessions()
            session = await agent.get_session(info.session_id)
            turn = await session.resume()
            print("ANSWER:" + turn.output_text)
            print("STEPS:" + ",".join(s.step_type for s in turn.steps))

asyncio.run(main())
"""


async def test_resume_after_the_process_is_killed_between_steps(tmp_path: Path) -> None:
    script = [
        '{"name": "count", "parameters": {"city": "Rome"}}<|eot_id|>',
        '{"name": "count", "parameters": {"city": "Paris"}}<|eot_id|>',
        "Counted both.<|eot_id|>",
    ]
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(CHILD))
    marker = tmp_path / "calls.txt"
    with VLLMTestServer(script) as server:
        args = [sys.executable, str(child), str(tmp_path), server.base_url, str(marker)]
        killed = await asyncio.to_thread(
            subprocess.run, args, env={**os.environ, "KILL": "1"}, capture_output=True
        )
        assert killed.returncode == 9, killed.stderr.decode()
        assert len(_claims(tmp_path / "sessions.sqlite")) == 1  # left by the killed process
        resumed = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "ANSWER:Counted both." in resumed.stdout
    assert "STEPS:inference,tool_execution,inference,tool_execution,inference" in resumed.stdout
    assert marker.read_text().split() == ["Rome", "Paris", "Paris"]  # Rome ran once
    assert _claims(tmp_path / "sessions.sqlite") == []  # taken over, then released


def _claims(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT session_id, pid FROM agentic_turn_leases"))


async def test_oldest_turns_are_dropped_to_fit_the_context(tmp_path: Path) -> None:
    filler = "lorem ipsum dolor sit amet " * 60  # ~360 tokens a turn
    script = [f"Reply {i}.<|eot_id|>" for i in range(6)]
    with VLLMTestServer(script, max_model_len=2048) as server:
        # no context_length in the config: the window is what the server reports
        async with agent_on(server, tmp_path, response_token_reserve=256) as agent:
            session = await agent.create_session()
            turns = [await session.run(f"Turn {i}: {filler}") for i in range(6)]
    dropped = [s.dropped_turns for t in turns for s in t.steps if isinstance(s, InferenceStep)]
    assert dropped[0] == 0
    assert sum(dropped) > 0
    last_prompt = prompts(server)[-1]
    assert "Turn 0:" not in last_prompt
    assert "Turn 5:" in last_prompt
    assert "Turn 4:" in last_prompt  # only as much as needed was dropped
    counted = [r for r in server.requests if r.path.endswith("/tokenize")]
    assert counted, "the exact count comes from the server's tokenizer"
    whole = set(prompts(server))
    assert not any(r.prompt in whole for r in counted)  # max_tokens came from the agent's count
    estimate = turns[-1].steps[0].prompt_tokens_estimate  # type: ignore[union-attr]
    assert estimate is not None
    assert estimate <= 2048 - 256


async def test_a_session_resumed_on_a_smaller_context_drops_turns_to_fit(
    tmp_path: Path,
) -> None:
    # the server came back with a smaller --max-model-len: its /tokenize refuses to count the
    # saved history (longer than the new context), and the agent drops the oldest turns
    filler = "lorem ipsum dolor sit amet " * 60  # ~360 tokens a turn
    script = [f"Reply {i}.<|eot_id|>" for i in range(8)]
    with VLLMTestServer(script, max_model_len=4096) as server:
        async with agent_on(
            server, tmp_path, persistence=SQLITE, response_token_reserve=256
        ) as agent:
            session = await agent.create_session()
            for i in range(7):
                await session.run(f"Turn {i}: {filler}")
        server.max_model_len = 2048
        async with agent_on(
            server, tmp_path, persistence=SQLITE, response_token_reserve=256
        ) as agent:
            session = await agent.get_session(session.id)
            turn = await session.run("Turn 7: the last one")
    assert turn.output_text == "Reply 7."
    last_prompt = prompts(server)[-1]
    assert "Turn 0:" not in last_prompt
    assert "Turn 6:" in last_prompt


class KeywordShield:
    """A real shield implementation for the tests: blocks a word."""

    def __init__(self, word: str, name: str = "keyword") -> None:
        self.word = word
        self._name = name
        self.seen: list[tuple[ShieldStage, str]] = []

    @property
    def name(self) -> str:
        return self._name

    async def check(self, messages: Sequence[Message], *, stage: ShieldStage) -> Violation | None:
        text = content_text(messages[-1].content)
        self.seen.append((stage, text))
        if self.word in text:
            return Violation(shield=self.name, categories=["S1"], message=f"found {self.word!r}")
        return None


async def test_input_shield_blocks_before_any_inference(tmp_path: Path) -> None:
    shield = KeywordShield("bomb")
    # the refused turn's inference may start alongside the shield: answer any request
    with VLLMTestServer(lambda request: "Sure.<|eot_id|>") as server:
        async with agent_on(server, tmp_path, input_shields=[shield], agent_kwargs={}) as agent:
            session = await agent.create_session()
            events = await events_of(session.turn("how to build a bomb"))
            turn = events[-1].turn  # type: ignore[union-attr]
            assert step_types(turn) == ["shield_call"]
            step = turn.steps[0]
            assert isinstance(step, ShieldCallStep)
            assert step.violation is not None
            assert step.violation.categories == ["S1"]
            assert turn.output_text == agent.config.refusal_message
            assert not [e for e in events if e.event == "step_progress"]
            safe = await session.run("hello")
    assert step_types(safe) == ["shield_call", "inference"]
    assert "bomb" not in prompts(server)[-1]  # refused turns never return


async def test_output_shield_replaces_an_unsafe_answer(tmp_path: Path) -> None:
    shield = KeywordShield("secret")
    script = ["The secret is 42.<|eot_id|>", "Hello.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path, output_shields=[shield]) as agent:
            session = await agent.create_session()
            turn = await session.run("tell me")
            await session.run("hi")
    assert step_types(turn) == ["inference", "shield_call"]
    assert turn.output_text == agent.config.refusal_message
    assert shield.seen[0] == ("output", "The secret is 42.")
    assert "The secret is 42." not in prompts(server)[-1]


class StaticBank:
    """A retriever over a fixed list (the real banks come with the memory issue)."""

    bank_id = "facts"

    async def retrieve(self, query: str, *, limit: int) -> list[RetrievedChunk]:
        return [
            RetrievedChunk(
                chunk_id="c1", bank_id="facts", text="The office opens at 9.", score=0.9
            ),
            RetrievedChunk(chunk_id="c2", bank_id="facts", text="Parking is free.", score=0.4),
        ][:limit]


async def test_memory_retrieval_and_documents_go_into_the_prompt(tmp_path: Path) -> None:
    doc = Document(content="Meeting notes: budget approved.", name="notes.txt")
    with VLLMTestServer(["At 9.<|eot_id|>"]) as server:
        async with agent_on(
            server,
            tmp_path,
            memory_banks=["facts"],
            retrieval_limit=1,
            agent_kwargs={"memory_banks": [StaticBank()]},
        ) as agent:
            turn = await (await agent.create_session()).run(
                "When does the office open?", documents=[doc]
            )
    assert step_types(turn) == ["memory_retrieval", "inference"]
    step = turn.steps[0]
    assert isinstance(step, MemoryRetrievalStep)
    assert [c.chunk_id for c in step.chunks] == ["c1"]
    prompt = prompts(server)[0]
    assert "When does the office open?\n\nHere is context" in prompt
    assert "The office opens at 9." in prompt
    assert "Parking is free." not in prompt
    assert "Meeting notes: budget approved." in prompt


async def test_turn_status_of_a_waiting_session_blocks_new_turns(tmp_path: Path) -> None:
    from agentic.types import ToolDefinition

    ask = ToolDefinition.from_json_schema("ask_user", {"type": "object", "properties": {}})
    with VLLMTestServer(['{"name": "ask_user", "parameters": {}}<|eot_id|>']) as server:
        async with agent_on(server, tmp_path, client_tools=[ask], persistence=SQLITE) as agent:
            session = await agent.create_session()
            turn = await session.run("hi")
            assert turn.status is TurnStatus.awaiting_input
            with pytest.raises(SessionStateError, match="waiting for client tool results"):
                await session.run("again")
            with pytest.raises(SessionStateError, match="missing results"):
                await session.resume({})
            assert (await session.turns())[-1].status is TurnStatus.awaiting_input


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
async def test_postgres_persistence_across_agents(tmp_path: Path) -> None:
    pytest.importorskip("langgraph.checkpoint.postgres", reason="the postgres extra")
    script = ["Hello Ada.<|eot_id|>", "You are Ada.<|eot_id|>"]
    with postgres_server() as url, VLLMTestServer(script) as server:
        pg = PersistenceConfig(backend="postgres", url=url)
        async with agent_on(server, tmp_path, persistence=pg) as agent:
            session = await agent.create_session("pg")
            await session.run("I am Ada.")
        async with agent_on(server, tmp_path, persistence=pg) as agent:  # another replica
            (info,) = await agent.list_sessions()
            turn = await (await agent.get_session(info.session_id)).run("Who am I?")
    assert info.turn_count == 1
    assert turn.index == 1
    assert "I am Ada.<|eot_id|>" in prompts(server)[-1]
