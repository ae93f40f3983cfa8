"""SQLite persistence on its own thread: the store API, batching, errors, closing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentic.agent._sqlite import SqliteThread, ThreadedSqliteStore
from agentic.errors import ConfigError


@pytest.fixture
async def thread(tmp_path: Path) -> AsyncIterator[SqliteThread]:
    t = SqliteThread(tmp_path / "s.sqlite", busy_timeout=1.0)
    await t.open()
    yield t
    await t.aclose()


async def test_the_store_runs_its_batches_on_the_thread(thread: SqliteThread) -> None:
    store = ThreadedSqliteStore(thread)
    await store.asetup()
    await store.aput(("sessions",), "s1", {"agent": "a", "n": 1})
    item = await store.aget(("sessions",), "s1")
    assert item is not None
    assert item.value == {"agent": "a", "n": 1}
    found = await store.asearch(("sessions",), filter={"agent": "a"})
    assert [i.key for i in found] == ["s1"]
    await store.adelete(("sessions",), "s1")
    assert await store.aget(("sessions",), "s1") is None


async def test_an_unopenable_database_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()  # a directory where the file should be
    t = SqliteThread(tmp_path / "dir.sqlite", busy_timeout=0.1)
    with pytest.raises(ConfigError, match="cannot open the session database"):
        await t.open()
    await t.aclose()


async def test_closing_twice_is_harmless(tmp_path: Path) -> None:
    t = SqliteThread(tmp_path / "s.sqlite", busy_timeout=0.1)
    await t.open()
    await t.aclose()
    await t.aclose()
    assert t.conn is None


async def test_queued_calls_resolve_to_their_own_callers(thread: SqliteThread) -> None:
    def square(n: int) -> int:
        if n == 7:
            raise ValueError("seven")
        return n * n

    results = await asyncio.gather(
        *(thread.run(square, n) for n in range(50)), return_exceptions=True
    )
    assert [r for i, r in enumerate(results) if i != 7] == [n * n for n in range(50) if n != 7]
    assert isinstance(results[7], ValueError)


async def test_a_cancelled_caller_does_not_disturb_the_others(thread: SqliteThread) -> None:
    gate = threading.Event()
    slow = asyncio.ensure_future(thread.run(gate.wait, 5))
    after = asyncio.ensure_future(thread.run(lambda: "after"))
    await asyncio.sleep(0.05)
    slow.cancel()
    gate.set()
    assert await after == "after"
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_a_closed_thread_refuses_work(tmp_path: Path) -> None:
    t = SqliteThread(tmp_path / "s.sqlite", busy_timeout=0.1)
    await t.open()
    await t.aclose()
    with pytest.raises(RuntimeError, match="after aclose"):
        await t.run(lambda: 1)
