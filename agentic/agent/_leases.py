"""Which process is running a turn on a session: a claim ("lease") kept in the session database.

Processes that share a SQLite file or a Postgres database share their sessions, so the check
that keeps two turns off one session at once must be shared too. A turn claims its session
with one atomic upsert that succeeds only when nobody else holds an unexpired claim, and drops
the claim when it ends. A claim lasts :data:`LEASE_SECONDS` and the holding process renews all
of its claims every :data:`RENEW_SECONDS`, so a process that died on another machine blocks its
sessions for at most a minute. One that died on this machine (and in this PID namespace)
blocks nothing: its claims are taken over as soon as its process is seen to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentic.agent._sqlite import SqliteThread

__all__ = [
    "LEASE_SECONDS",
    "RENEW_SECONDS",
    "Holder",
    "PostgresLeases",
    "SessionLeases",
    "SqliteLeases",
]

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""How long a claim lasts without renewal."""
RENEW_SECONDS = 15.0
"""How often a process renews the claims it holds."""

_TABLE = "agentic_turn_leases"
_COLUMNS = "session_id, owner, place, pid, started, expires_at"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a session's claim."""

    owner: str
    """The claiming session store's token (one per opened store)."""
    place: str
    """Host name and PID namespace: where ``pid`` means something."""
    pid: int
    started: str
    """When the process started (Linux clock ticks since boot; empty when unknown): tells a
    live process from a later one that reuses its PID."""
    expires_at: float
    """Unix time the claim lapses unless renewed."""

    def describe(self) -> str:
        host = self.place.split("/", 1)[0]
        until = datetime.fromtimestamp(self.expires_at, UTC).strftime("%H:%M:%S UTC")
        return f"process {self.pid} on {host}; if that process died, its claim lapses by {until}"


def _place() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def _process_start(pid: int) -> str:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot), or ``""``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _gone(holder: Holder, place: str) -> bool:
    """Whether ``holder``'s process has certainly exited (known only for this machine's
    processes in this PID namespace)."""
    if holder.place != place or holder.pid == os.getpid():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return bool(holder.started) and _process_start(holder.pid) not in ("", holder.started)


class _Storage(Protocol):
    """The SQL a lease table needs, on one backend."""

    async def setup(self) -> None: ...

    async def claim(self, session_id: str, me: Holder, now: float) -> Holder | None:
        """Take the claim unless someone else holds an unexpired one (then return them)."""
        ...

    async def drop(self, session_id: str, owner: str) -> None: ...

    async def renew(self, session_ids: Sequence[str], owner: str, until: float) -> None: ...

    async def close(self) -> None: ...


class SessionLeases:
    """The claims of one opened session store (one owner token), on shared storage."""

    def __init__(self, storage: _Storage, *, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._clock = clock
        self._place = _place()
        self.owner = uuid.uuid4().hex
        pid = os.getpid()
        self._pid, self._started = pid, _process_start(pid)
        self._held: set[str] = set()
        self._renewal: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        await self._storage.setup()

    def _me(self, now: float) -> Holder:
        return Holder(self.owner, self._place, self._pid, self._started, now + LEASE_SECONDS)

    async def acquire(self, session_id: str) -> Holder | None:
        """Claim the session for a turn; the holder when another process has it."""
        now = self._clock()
        holder = await self._storage.claim(session_id, self._me(now), now)
        if holder is not None and _gone(holder, self._place):
            log.warning(
                "taking over session %s from process %d, which exited during a turn",
                session_id,
                holder.pid,
            )
            await self._storage.drop(session_id, holder.owner)
            holder = await self._storage.claim(session_id, self._me(now), now)
        if holder is None:
            self._held.add(session_id)
            self._keep_renewing()
        return holder

    async def release(self, session_id: str) -> None:
        """Drop the claim. A failure is logged, not raised: the turn is over and saved, and
        the claim, no longer renewed, lapses by itself (this process may claim it again)."""
        self._held.discard(session_id)
        try:
            await self._storage.drop(session_id, self.owner)
        except Exception:
            log.warning(
                "could not drop the turn claim of session %s; it lapses within %.0f s",
                session_id,
                LEASE_SECONDS,
                exc_info=True,
            )

    def _keep_renewing(self) -> None:
        loop = asyncio.get_running_loop()
        renewal = self._renewal
        if renewal is None or renewal.done() or renewal.get_loop() is not loop:
            self._renewal = loop.create_task(self._renew(), name="agentic-lease-renewal")

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(RENEW_SECONDS)
            held = sorted(self._held)
            if not held:
                return
            try:
                await self._storage.renew(held, self.owner, self._clock() + LEASE_SECONDS)
            except Exception:  # the next round tries again; a lapsed claim is only a risk
                log.exception("could not renew the turn claims of %d sessions", len(held))

    async def aclose(self) -> None:
        """Stop renewing and drop every claim still held (turns cut off by the close)."""
        renewal, self._renewal = self._renewal, None
        if renewal is not None and not renewal.done():
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await renewal
        for session_id in sorted(self._held):
            with contextlib.suppress(Exception):
                await self._storage.drop(session_id, self.owner)
        self._held.clear()
        await self._storage.close()


def _upsert(mark: str) -> str:
    """Insert the claim, or take over one that lapsed or is already ours; nothing else."""
    return (
        f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES ({', '.join([mark] * 6)}) "
        "ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, "
        "place = excluded.place, pid = excluded.pid, started = excluded.started, "
        f"expires_at = excluded.expires_at WHERE {_TABLE}.expires_at < {mark} "
        f"OR {_TABLE}.owner = excluded.owner"
    )


def _select(mark: str) -> str:
    return f"SELECT owner, place, pid, started, expires_at FROM {_TABLE} WHERE session_id = {mark}"


_UPSERT_QMARK, _SELECT_QMARK = _upsert("?"), _select("?")
_UPSERT_FORMAT, _SELECT_FORMAT = _upsert("%s"), _select("%s")


def _claim_row(session_id: str, me: Holder, now: float) -> tuple[Any, ...]:
    return (session_id, me.owner, me.place, me.pid, me.started, me.expires_at, now)


# --- SQLite ---------------------------------------------------------------------------------


class SqliteLeases:
    """The lease table in the session SQLite file, on its connection."""

    def __init__(self, thread: SqliteThread) -> None:
        self._thread = thread

    def _conn(self) -> sqlite3.Connection:
        conn = self._thread.conn
        if conn is None:
            raise RuntimeError("the session database is closed")
        return conn

    async def setup(self) -> None:
        def create() -> None:
            self._conn().execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (session_id TEXT PRIMARY KEY, "
                "owner TEXT NOT NULL, place TEXT NOT NULL, pid INTEGER NOT NULL, "
                "started TEXT NOT NULL, expires_at REAL NOT NULL)"
            )

        await self._thread.run(create)

    async def claim(self, session_id: str, me: Holder, now: float) -> Holder | None:
        return await self._thread.call(self._claim, session_id, me, now)

    def _claim(self, session_id: str, me: Holder, now: float) -> Holder | None:
        conn = self._conn()
        while True:  # again only if the holder let go between the two statements
            taken = conn.execute(_UPSERT_QMARK, _claim_row(session_id, me, now)).rowcount
            if taken:
                return None
            row = conn.execute(_SELECT_QMARK, (session_id,)).fetchone()
            if row is not None:
                return Holder(*row)

    async def drop(self, session_id: str, owner: str) -> None:
        def delete() -> None:
            self._conn().execute(
                f"DELETE FROM {_TABLE} WHERE session_id = ? AND owner = ?", (session_id, owner)
            )

        await self._thread.call(delete)

    async def renew(self, session_ids: Sequence[str], owner: str, until: float) -> None:
        def update() -> None:  # one statement per claim: each is safe to run again
            self._conn().executemany(
                f"UPDATE {_TABLE} SET expires_at = ? WHERE session_id = ? AND owner = ?",
                [(until, s, owner) for s in session_ids],
            )

        await self._thread.call(update)

    async def close(self) -> None:
        """The connection belongs to the session store."""


# --- Postgres -------------------------------------------------------------------------------


class PostgresLeases:
    """The lease table in the sessions' Postgres database, on a connection of its own."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None

    async def setup(self) -> None:
        import psycopg

        self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        await self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (session_id TEXT PRIMARY KEY, "
            "owner TEXT NOT NULL, place TEXT NOT NULL, pid INTEGER NOT NULL, "
            "started TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
        )

    async def claim(self, session_id: str, me: Holder, now: float) -> Holder | None:
        while True:  # again only if the holder let go between the two statements
            cursor = await self._conn.execute(_UPSERT_FORMAT, _claim_row(session_id, me, now))
            if cursor.rowcount:
                return None
            cursor = await self._conn.execute(_SELECT_FORMAT, (session_id,))
            row = await cursor.fetchone()
            if row is not None:
                return Holder(*row)

    async def drop(self, session_id: str, owner: str) -> None:
        await self._conn.execute(
            f"DELETE FROM {_TABLE} WHERE session_id = %s AND owner = %s", (session_id, owner)
        )

    async def renew(self, session_ids: Sequence[str], owner: str, until: float) -> None:
        await self._conn.execute(
            f"UPDATE {_TABLE} SET expires_at = %s WHERE owner = %s AND session_id = ANY(%s)",
            (until, owner, list(session_ids)),
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
