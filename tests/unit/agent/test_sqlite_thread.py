"""SQLite persistence on one connection: calls on the event loop or its thread, the store API,
batching, a locked database, errors, closing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from agentic.agent._sqlite import SqliteThread, ThreadedSqliteStore
from agentic.errors import ConfigError


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


def _insert(conn_holder: SqliteThread, value: int, ran_on: list[str]) -> int:
    """One write transaction, recording the thread it ran on."""
    ran_on.append(threading.current_thread().name)
    conn = conn_holder.conn
    assert conn is not None
    conn.execute("BEGIN")
    try:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")
    return value


async def _table(thread: SqliteThread) -> None:
    assert thread.conn is not None
    await thread.run(thread.conn.execute, "CREATE TABLE t (v INTEGER)")


async def _values(thread: SqliteThread) -> list[int]:
    assert thread.conn is not None
    rows = await thread.run(lambda: thread.conn.execute("SELECT v FROM t").fetchall())  # type: ignore[union-attr]
    return [v for (v,) in rows]


async def test_a_call_on_a_free_connection_runs_on_the_event_loop(thread: SqliteThread) -> None:
    await _table(thread)
    ran_on: list[str] = []
    assert await thread.call(_insert, thread, 1, ran_on) == 1
    assert ran_on == [threading.current_thread().name]
    assert await _values(thread) == [1]


async def test_a_call_behind_queued_work_keeps_its_place_on_the_thread(
    thread: SqliteThread,
) -> None:
    await _table(thread)
    ran_on: list[str] = []
    gate = threading.Event()
    first = asyncio.ensure_future(thread.run(gate.wait, 5))
    await asyncio.sleep(0)  # the first call is queued for the thread
    second = asyncio.ensure_future(thread.call(_insert, thread, 2, ran_on))
    await asyncio.sleep(0.05)
    assert not second.done()  # it did not overtake the queued call
    gate.set()
    assert await first is True
    assert await second == 2
    assert ran_on == ["agentic-sqlite"]


async def test_a_database_locked_by_another_connection_is_waited_for_on_the_thread(
    thread: SqliteThread, tmp_path: Path
) -> None:
    """The loop never blocks on the lock: the call fails at once there, writes nothing, and
    the thread waits the busy timeout for the other writer to finish."""
    await _table(thread)
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    other.execute("INSERT INTO t VALUES (0)")
    asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
    ran_on: list[str] = []
    started = time.monotonic()
    assert await thread.call(_insert, thread, 3, ran_on) == 3
    assert time.monotonic() - started >= 0.15
    assert ran_on == [threading.current_thread().name, "agentic-sqlite"]
    assert await _values(thread) == [0, 3]
    # the connection's own busy timeout is back for the thread's calls
    assert thread.conn is not None
    timeout = await thread.run(lambda: thread.conn.execute("PRAGMA busy_timeout").fetchone())  # type: ignore[union-attr]
    assert timeout == (1000,)
    other.close()


async def test_other_errors_of_a_call_reach_the_caller(thread: SqliteThread) -> None:
    assert thread.conn is not None
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await thread.call(thread.conn.execute, "SELECT * FROM missing")


async def test_after_closing_a_call_is_refused(tmp_path: Path) -> None:
    t = SqliteThread(tmp_path / "s.sqlite", busy_timeout=0.1)
    await t.open()
    await t.aclose()
    with pytest.raises(RuntimeError, match="after aclose"):
        await t.call(lambda: 1)


async def test_a_call_locked_out_inside_its_transaction_leaves_none_open(
    thread: SqliteThread, tmp_path: Path
) -> None:
    """A call that does not roll back its own failed transaction: the fallback does, before
    the thread runs the call again."""
    await _table(thread)
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.1, other.execute, "COMMIT")
    attempts: list[bool] = []

    def careless() -> str:
        conn = thread.conn
        assert conn is not None
        attempts.append(conn.in_transaction)  # never inside a transaction left over
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (9)")  # locked on the event loop: raises
        conn.execute("COMMIT")
        return "written"

    assert await thread.call(careless) == "written"
    assert attempts == [False, False]
    assert await _values(thread) == [9]
    other.close()


def _chattr(flag: str, path: Path) -> bool:
    import shutil
    import subprocess

    chattr = shutil.which("chattr")
    return (
        chattr is not None
        and subprocess.run([chattr, flag, str(path)], check=False).returncode == 0
    )


async def test_a_read_only_database_is_a_config_error_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    # root writes through permission bits: only an immutable file is read-only to it
    if not _chattr("+i", path):
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        with pytest.raises(ConfigError, match="readonly database; make the file"):
            await SqliteThread(path, busy_timeout=0.1).open()
    finally:
        assert _chattr("-i", path)


async def test_stores_opening_one_new_file_at_once_set_it_up_once(tmp_path: Path) -> None:
    from agentic.agent import PersistenceConfig
    from agentic.agent.store import SessionStore

    for attempt in range(4):  # a service's workers starting together on a fresh file
        config = PersistenceConfig(backend="sqlite", path=tmp_path / f"s{attempt}.sqlite")
        stores = [SessionStore(config, tmp_path) for _ in range(6)]
        await asyncio.gather(*(s.open() for s in stores))
        for store in stores:
            assert await store.list_sessions() == []
            await store.aclose()


async def test_a_session_directory_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    from agentic.agent import PersistenceConfig
    from agentic.agent.store import SessionStore
    from agentic.config import Settings

    (tmp_path / "file").write_text("not a directory")
    config = PersistenceConfig(backend="sqlite", path=tmp_path / "file" / "sub" / "s.sqlite")
    with pytest.raises(ConfigError, match=r"Not a directory; set persistence\.path"):
        await SessionStore(config, tmp_path).open()
    with pytest.raises(ConfigError, match="set AGENTIC_HOME to a writable directory"):
        Settings(home=tmp_path / "file").home_dir()
