"""One turn at a time per session, also across processes that share the session database."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest
from agent_helpers import agent_on
from pg_server import pg_bin, postgres_server

from agentic.agent import PersistenceConfig, TurnStatus
from agentic.agent._leases import PostgresLeases, SessionLeases
from agentic.errors import SessionBusyError
from agentic.testing import Reply, VLLMTestServer


async def test_agents_sharing_a_file_run_one_turn_per_session_at_a_time(tmp_path: Path) -> None:
    """Two agents on one SQLite file stand for two processes: each has its own claims."""
    path = tmp_path / "shared.sqlite"
    shared = PersistenceConfig(backend="sqlite", path=path)
    script: list[str | Reply] = [
        Reply(text="Slow answer.<|eot_id|>", delay=0.6),
        "Second.<|eot_id|>",
    ]
    with VLLMTestServer(script) as server:
        async with (
            agent_on(server, tmp_path / "a", persistence=shared) as a,
            agent_on(server, tmp_path / "b", persistence=shared) as b,
        ):
            session = await a.create_session()
            first = asyncio.ensure_future(session.run("one"))
            await asyncio.sleep(0.3)
            other = await b.get_session(session.id)
            with pytest.raises(SessionBusyError, match="in another Agent of this process") as busy:
                await other.run("two")
            assert busy.value.holder is not None
            assert f"process {os.getpid()} on " in busy.value.holder
            with pytest.raises(SessionBusyError, match="in another Agent of this process"):
                await b.delete_session(session.id)
            free = await b.create_session()  # other sessions are not held up
            assert (await first).output_text == "Slow answer."
            second = await other.run("two")
            assert await free.turns() == []
    assert second.index == 1
    assert second.output_text == "Second."
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM agentic_turn_leases").fetchone() == (0,)


HOLDER = """
import asyncio, sys
from pathlib import Path
from agentic.agent import Agent, AgentConfig, PersistenceConfig
from agentic.inference.vllm_server import VLLMServer

path, url = Path(sys.argv[1]), sys.argv[2]

async def main() -> None:
    agent = Agent(
        AgentConfig(model="meta-llama/Llama-3.1-8B-Instruct",
                    persistence=PersistenceConfig(backend="sqlite", path=path)),
        backend=VLLMServer(url, max_retries=0))
    async with agent:
        session = await agent.create_session("held")
        await session.run("take your time")

asyncio.run(main())
"""


def _claims(path: Path) -> list[tuple[str, int]]:
    try:
        with sqlite3.connect(path) as conn:
            return list(conn.execute("SELECT session_id, pid FROM agentic_turn_leases"))
    except sqlite3.OperationalError:  # not created yet
        return []


async def test_a_turn_in_another_process_holds_the_session_until_that_process_dies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite"
    child = tmp_path / "holder.py"
    child.write_text(textwrap.dedent(HOLDER))
    script: list[str | Reply] = [
        Reply(text="Never sent.<|eot_id|>", delay=60),
        "Resumed here.<|eot_id|>",
    ]
    with VLLMTestServer(script) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(child), str(path), server.base_url
        )
        try:
            deadline = time.monotonic() + 60
            while not (claims := _claims(path)):
                assert proc.returncode is None, "the holding process exited early"
                assert time.monotonic() < deadline, "the holding process never claimed"
                await asyncio.sleep(0.05)
            ((session_id, pid),) = claims
            assert pid == proc.pid
            shared = PersistenceConfig(backend="sqlite", path=path)
            async with agent_on(server, tmp_path, persistence=shared) as agent:
                session = await agent.get_session(session_id)
                with pytest.raises(SessionBusyError, match=f"process {proc.pid} on ") as busy:
                    await session.resume()
                assert "its claim lapses by" in str(busy.value)
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 30)
                turn = await session.resume()  # taken over at once: its holder is gone
                assert turn.output_text == "Resumed here."
                assert turn.status is TurnStatus.completed
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert _claims(path) == []


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
async def test_replicas_on_one_postgres_run_one_turn_per_session_at_a_time(
    tmp_path: Path,
) -> None:
    pytest.importorskip("langgraph.checkpoint.postgres", reason="the postgres extra")
    script: list[str | Reply] = [
        Reply(text="Slow answer.<|eot_id|>", delay=0.6),
        "Second.<|eot_id|>",
    ]
    with postgres_server() as url, VLLMTestServer(script) as server:
        pg = PersistenceConfig(backend="postgres", url=url)
        async with (
            agent_on(server, tmp_path, persistence=pg) as a,
            agent_on(server, tmp_path, persistence=pg) as b,
        ):
            session = await a.create_session()
            first = asyncio.ensure_future(session.run("one"))
            await asyncio.sleep(0.3)
            with pytest.raises(SessionBusyError, match="in another Agent of this process"):
                await (await b.get_session(session.id)).run("two")
            assert (await first).output_text == "Slow answer."
            second = await (await b.get_session(session.id)).run("two")
    assert (second.index, second.output_text) == (1, "Second.")


@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
async def test_postgres_claims_are_renewed_and_dropped_on_close() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra")
    with postgres_server() as url:
        a, b = SessionLeases(PostgresLeases(url)), SessionLeases(PostgresLeases(url))
        await a.setup()
        await b.setup()
        try:
            assert await a.acquire("s1") is None
            until = time.time() + 3600
            await a._storage.renew(["s1"], a.owner, until)
            holder = await b.acquire("s1")
            assert holder is not None
            assert (holder.owner, holder.pid, holder.expires_at) == (a.owner, os.getpid(), until)
            await a.aclose()  # drops what it still holds
            assert await b.acquire("s1") is None
        finally:
            await b.aclose()
