"""SQLite persistence on one connection, owned by one thread, used from the event loop.

LangGraph's aiosqlite-based saver and store send every statement, fetch and commit to
aiosqlite's thread separately: about 15 thread round trips per step of a turn, each a
cross-thread wake-up. Here whole calls (of our checkpointer, of LangGraph's sync
:class:`SqliteStore`) run at once: on the event loop while the connection is free and the
database not locked by another process (:meth:`SqliteThread.call`), else on the dedicated
thread, which waits out the lock. Calls are serialized on the connection, which also keeps the
records' read-then-write transactions from racing a checkpoint write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from langgraph.store.base import Op, Result
from langgraph.store.sqlite import SqliteStore

from agentic.errors import ConfigError

__all__ = ["SqliteThread", "ThreadedSqliteStore", "setup_lock"]

P = ParamSpec("P")
T = TypeVar("T")
RunnableConfig = Any  # langchain_core's RunnableConfig (a TypedDict) without importing it here


@contextlib.asynccontextmanager
async def setup_lock(path: Path) -> AsyncIterator[None]:
    """Hold while creating or migrating the tables of the database at ``path``: processes
    opening a new file at once (a service's workers on their first start) would otherwise
    both run LangGraph's store migrations and one fail on the other's version row.

    The lock is ``flock`` on the file's directory: it never touches the database file, whose
    POSIX locks SQLite owns (closing another descriptor of that file would drop them).
    """
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class SqliteThread:
    """One thread that owns one SQLite connection; ``run`` executes a call on it.

    Each wake-up, in either direction, costs more than a small SQLite call (0.1-0.2 ms on a
    virtual machine), so they are shared: calls made within two event-loop iterations (a
    step's writes and its checkpoint) go to the thread together, and the thread runs
    everything queued before it resolves the callers' futures with one wake-up of their loop.
    """

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._thread: threading.Thread | None = None
        self.conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        """Held while a call runs on the connection, on the thread or in :meth:`call`."""
        self._queued = 0
        """Calls handed to the thread (gathering or queued) and not run yet."""
        self._count = threading.Lock()

    async def open(self) -> sqlite3.Connection:
        """Connect (WAL, autocommit) on the thread; ``synchronous=NORMAL`` survives a killed
        process (not a power cut)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="agentic-sqlite", daemon=True)
            self._thread.start()
        self.conn = await self.run(self._connect)
        return self.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self._path),
                isolation_level=None,
                timeout=self._busy_timeout,
                check_same_thread=False,  # created here, used only here; closed from here too
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # a write that changes nothing, rolled back: a read-only file fails here, not at
            # the first save
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            hint = ""
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
                hint = "; make the file and its directory writable, or set persistence.path"
            raise ConfigError(
                f"cannot open the session database {str(self._path)!r}: {exc}{hint}"
            ) from exc
        return conn

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` right here when the connection is free and nothing waits
        for the thread; else on the thread, behind what is queued.

        With ``synchronous=NORMAL`` in WAL mode a small transaction is a few hundred
        microseconds of work that writes the page cache, and waits on nothing unless another
        process holds the write lock. A hop to the thread and back costs about half of that
        again, and a turn that saves after every step waits for each one. So the call runs on
        the event loop, with SQLite's busy timeout off: if another connection holds the lock,
        it fails at once without having written anything, and goes to the thread, which
        waits the configured busy timeout. ``fn`` must be safe to run again after such a
        failure: one transaction that writes after its reads, as every checkpoint and store
        call is.
        """
        conn = self.conn
        if conn is not None and not self._queued and self._lock.acquire(blocking=False):
            try:
                if not self._queued:  # nothing slipped in from another thread's loop
                    conn.execute("PRAGMA busy_timeout = 0")
                    try:
                        return fn(*args, **kwargs)
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode & 0xFF not in _BUSY:
                            raise
                        if conn.in_transaction:
                            conn.rollback()
                    finally:
                        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            finally:
                self._lock.release()
        return await self.run(fn, *args, **kwargs)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the SQLite thread."""
        if self._thread is None:
            raise RuntimeError("SqliteThread used before open() or after aclose()")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(functools.partial(fn, *args, **kwargs), future, loop)
        with self._count:
            self._queued += 1
        gathering = self._gathering.get(loop)
        if gathering is None:
            # send after the next iteration too: LangGraph saves a step's writes and its
            # checkpoint from tasks that start one iteration apart
            gathering = self._gathering[loop] = []
            loop.call_soon(loop.call_soon, self._send, loop)
        gathering.append(job)
        return await future

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.put(self._gathering.pop(loop))

    def _serve(self) -> None:
        """The thread: run queued jobs in order; resolve each batch with one wake-up."""
        while (jobs := self._jobs.get()) is not None:
            batch = self._run_all(jobs)
            stop = False
            while not stop:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch += self._run_all(more)
            _resolve(batch)
            if stop:
                return

    def _run_all(self, jobs: list[_Job]) -> list[_Job]:
        with self._lock:
            done = [job.run() for job in jobs]
        with self._count:
            self._queued -= len(jobs)
        return done

    async def aclose(self) -> None:
        """Close the connection on its thread, then stop the thread."""
        conn, self.conn = self.conn, None
        if conn is not None:
            await self.run(conn.close)
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None


_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
"""Primary result codes of a connection that found the database locked by another."""


@dataclass(slots=True)
class _Job:
    """One call for the SQLite thread, and where its result goes."""

    call: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    result: Any = None
    error: BaseException | None = None

    def run(self) -> _Job:
        try:
            self.result = self.call()
        except BaseException as exc:  # handed to the caller, never lost in the thread
            self.error = exc
        return self


def _resolve(batch: list[_Job]) -> None:
    """Hand results to their futures: one ``call_soon_threadsafe`` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in batch:
        by_loop.setdefault(job.loop, []).append(job)
    for loop, jobs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, jobs)


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.cancelled():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


class ThreadedSqliteStore(SqliteStore):
    """LangGraph's sync SQLite store with ``abatch`` run on the SQLite thread."""

    def __init__(self, thread: SqliteThread) -> None:
        assert thread.conn is not None, "open the SqliteThread first"
        super().__init__(thread.conn)
        self._thread = thread

    async def asetup(self) -> None:
        await self._thread.run(self.setup)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self._thread.call(self.batch, list(ops))
