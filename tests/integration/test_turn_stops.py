"""A turn stopped early, by its consumer or by cancellation, leaves a usable session: a turn
whose ``turn_complete`` was seen belongs to the conversation, an unfinished one resumes, and
nothing runs on after the stream is closed."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from agent_helpers import agent_on, prompts

from agentic.agent import Agent, PersistenceConfig, TurnStatus
from agentic.errors import SessionExistsError, SessionStateError
from agentic.testing import Reply, VLLMTestServer
from agentic.tools import tool
from agentic.types import ToolDefinition

BACKENDS = ["memory", "sqlite"]


def _persistence(kind: str, tmp_path: Path) -> PersistenceConfig:
    if kind == "sqlite":
        return PersistenceConfig(backend="sqlite", path=tmp_path / "s.sqlite")
    return PersistenceConfig(backend="memory")


@tool
async def lookup(city: str) -> str:
    """Look a city up."""
    await asyncio.sleep(0.3)
    return f"{city}: sunny"


def _graph_tasks() -> list[asyncio.Task[object]]:
    """Tasks of a LangGraph run still alive (its nodes, its stream waiter)."""
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and "langgraph" in repr(t.get_coro())
    ]


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_consumer_that_stops_at_turn_complete_keeps_the_turn(
    kind: str, tmp_path: Path
) -> None:
    with VLLMTestServer(["Nice to meet you, Ada.<|eot_id|>", "You are Ada.<|eot_id|>"]) as server:
        async with agent_on(server, tmp_path, persistence=_persistence(kind, tmp_path)) as agent:
            session = await agent.create_session()
            async for event in session.turn("My name is Ada."):
                if event.event == "turn_complete":
                    break  # and never read on
            second = await session.run("What is my name?")
            turns = await session.turns()
    assert "My name is Ada." in prompts(server)[1]  # the first turn is in the history
    assert "Nice to meet you, Ada." in prompts(server)[1]
    assert [t.index for t in turns] == [0, 1]
    assert second.output_text == "You are Ada."


@pytest.mark.parametrize("kind", BACKENDS)
async def test_closing_a_stream_mid_turn_ends_the_run_and_leaves_it_resumable(
    kind: str, tmp_path: Path
) -> None:
    call = '<|python_tag|>{"name": "lookup", "parameters": {"city": "Oslo"}}<|eom_id|>'
    script = [call, "Sunny in Oslo.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(
            server, tmp_path, tools=[lookup], persistence=_persistence(kind, tmp_path)
        ) as agent:
            session = await agent.create_session()
            stream = session.turn("Weather in Oslo?")
            async for event in stream:
                if event.event == "step_start" and event.step_type == "tool_execution":
                    break
            await stream.aclose()
            assert _graph_tasks() == []  # the run ended before aclose() returned
            assert session.id not in agent._running  # and the session is free
            with pytest.raises(SessionStateError, match="resume"):
                await session.run("Something else?")
            turn = await session.resume()
    assert turn.status is TurnStatus.completed
    assert turn.output_text == "Sunny in Oslo."
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]


async def test_async_with_closes_the_stream(tmp_path: Path) -> None:
    with VLLMTestServer([Reply("Hello there, friend.<|eot_id|>", delay=0.2)]) as server:
        async with agent_on(server, tmp_path) as agent:
            session = await agent.create_session()
            async with session.turn("Hi") as stream:
                async for event in stream:
                    if event.event == "step_start":
                        break
            assert _graph_tasks() == []
            assert session.id not in agent._running
            resumed = await session.resume()
    assert resumed.output_text == "Hello there, friend."


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_run_cancelled_at_any_moment_leaves_a_usable_session(
    kind: str, tmp_path: Path
) -> None:
    durable = PersistenceConfig(backend=kind, path=tmp_path / "s.sqlite", durability="sync")
    persistence = durable if kind == "sqlite" else PersistenceConfig(durability="sync")
    with VLLMTestServer(lambda request: "Hello there.<|eot_id|>") as server:
        async with agent_on(server, tmp_path, persistence=persistence) as agent:
            for i in range(16):  # cancelled from before the run starts to after it ended
                session = await agent.create_session()
                await session.run("warm up")
                task = asyncio.create_task(session.run("question"))
                await asyncio.sleep(i * 0.0005)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                fresh = await agent.get_session(session.id)
                try:
                    turn = await fresh.run("next")
                except SessionStateError:
                    assert (await fresh.resume()).status is TurnStatus.completed
                    turn = await fresh.run("next")
                assert turn.status is TurnStatus.completed
                indexes = [t.index for t in await fresh.turns()]
                assert indexes == list(range(len(indexes)))


async def test_agent_aclose_cancels_the_turns_it_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with VLLMTestServer([Reply("Late answer.<|eot_id|>", delay=2.0), "Done.<|eot_id|>"]) as server:
        persistence = PersistenceConfig(backend="sqlite", path=tmp_path / "s.sqlite")
        async with agent_on(server, home, persistence=persistence) as agent:
            session = await agent.create_session()
            task = asyncio.create_task(session.run("question"))
            await asyncio.sleep(0.3)
            await agent.aclose()
            assert task.done()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert agent._running == {}
            # a new agent on the same file resumes the stopped turn
            again = Agent(agent.config, backend=agent.backend, settings=agent.settings)
            async with again:
                resumed = await (await again.get_session(session.id)).resume()
    assert resumed.output_text == "Done."


@pytest.mark.parametrize("kind", BACKENDS)
async def test_an_abandoned_turn_is_kept_cancelled_and_left_out_of_the_conversation(
    kind: str, tmp_path: Path
) -> None:
    call = '<|python_tag|>{"name": "lookup", "parameters": {"city": "Oslo"}}<|eom_id|>'
    script = ["Hello.<|eot_id|>", call, "Rome is warm.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(
            server, tmp_path, tools=[lookup], persistence=_persistence(kind, tmp_path)
        ) as agent:
            session = await agent.create_session()
            await session.run("Hi")
            async with session.turn("Weather in Oslo?") as stream:
                async for event in stream:
                    if event.event == "step_start" and event.step_type == "tool_execution":
                        break  # the user stops the answer
            with pytest.raises(SessionStateError, match=r"session.abandon\(\)"):
                await session.run("And Rome?")
            dropped = await session.abandon()
            with pytest.raises(SessionStateError, match="no unfinished turn"):
                await session.resume()
            with pytest.raises(SessionStateError, match="no unfinished turn to abandon"):
                await session.abandon()
            third = await session.run("And Rome?")
            turns = await (await agent.get_session(session.id)).turns()
    assert dropped.status is TurnStatus.cancelled
    assert [s.step_type for s in dropped.steps] == ["inference"]  # what it finished
    assert [(t.index, t.status) for t in turns] == [
        (0, TurnStatus.completed),
        (1, TurnStatus.cancelled),
        (2, TurnStatus.completed),
    ]
    assert third.output_text == "Rome is warm."
    last_prompt = prompts(server)[-1]
    assert "Hello." in last_prompt  # the finished turn stays in the conversation
    assert "Oslo" not in last_prompt  # the abandoned one does not


async def test_a_turn_waiting_for_client_results_can_be_abandoned(tmp_path: Path) -> None:
    ask = ToolDefinition.from_json_schema(
        "ask_user", {"type": "object", "properties": {"q": {"type": "string"}}}, "Ask the user"
    )
    script = ['{"name": "ask_user", "parameters": {"q": "which city?"}}<|eot_id|>', "Hi.<|eot_id|>"]
    with VLLMTestServer(script) as server:
        async with agent_on(server, tmp_path, client_tools=[ask]) as agent:
            session = await agent.create_session()
            waiting = await session.run("Weather?")
            assert waiting.status is TurnStatus.awaiting_input
            dropped = await session.abandon()
            answer = await session.run("Never mind, hello.")
    assert (dropped.status, dropped.pending_tool_calls) == (TurnStatus.cancelled, [])
    assert answer.output_text == "Hi."
    assert "which city" not in prompts(server)[-1]


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_turn_listed_as_finished_is_in_the_next_prompt_however_its_run_stopped(
    kind: str, tmp_path: Path
) -> None:
    with VLLMTestServer(lambda request: "Noted.<|eot_id|>") as server:
        async with agent_on(server, tmp_path, persistence=_persistence(kind, tmp_path)) as agent:
            for ticks in range(0, 90, 3):  # cancelled anywhere, up to just after its last step
                session = await agent.create_session()
                await session.run("My name is Ada.")
                task = asyncio.create_task(session.run("My favourite colour is teal."))
                for _ in range(ticks):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                turns = await session.turns()
                assert len({t.turn_id for t in turns}) == len(turns)  # none listed twice
                if len(turns) == 2 and turns[-1].status is TurnStatus.completed:
                    await session.run("What is my favourite colour?")
                    assert "teal" in prompts(server)[-1], ticks


async def test_two_agents_creating_one_session_id_at_once_get_one_session(
    tmp_path: Path,
) -> None:
    shared = PersistenceConfig(backend="sqlite", path=tmp_path / "s.sqlite")
    with VLLMTestServer([]) as server:
        async with (
            agent_on(server, tmp_path / "a", persistence=shared, name="alpha") as alpha,
            agent_on(server, tmp_path / "b", persistence=shared, name="beta") as beta,
        ):
            for attempt in range(10):
                sid = f"conv-{attempt}"
                results = await asyncio.gather(
                    alpha.create_session(session_id=sid),
                    beta.create_session(session_id=sid),
                    return_exceptions=True,
                )
                refused = [r for r in results if isinstance(r, SessionExistsError)]
                assert len(refused) == 1, results


async def test_agent_aclose_closes_a_stream_left_after_a_break(tmp_path: Path) -> None:
    with VLLMTestServer([Reply("A long answer here.<|eot_id|>", delay=0.3)]) as server:
        async with agent_on(server, tmp_path) as agent:
            session = await agent.create_session()
            stream = session.turn("Hi")
            async for event in stream:
                if event.event == "step_start":
                    break  # and the stream is neither closed nor collected
        assert agent._running == {}
        assert _graph_tasks() == []
    del stream
