"""Session persistence: a LangGraph checkpointer for turn state, a LangGraph store for the
session index and the finished turns.

The checkpointer holds each session's graph state (thread id = session id), written after
every step. The store holds what is listed and fetched: one record per session and one per
finished turn. Both live in one SQLite file by default, in Postgres for shared deployments, or
in memory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.store.base import BaseStore, Op, PutOp, Result
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel

from agentic.agent import types as agent_types
from agentic.agent._leases import PostgresLeases, SessionLeases, SqliteLeases
from agentic.agent._serde import StateSerializer
from agentic.agent.config import PersistenceConfig
from agentic.agent.types import SessionInfo, Turn, utcnow
from agentic.errors import (
    ConfigError,
    MissingDependencyError,
    SessionBusyError,
    SessionNotFoundError,
)

__all__ = ["SessionStore", "state_serializer"]

_SESSIONS = ("agentic", "sessions")
_PAGE = 500
_BUSY_TIMEOUT = 60.0
_GROWING = ("history", "turn_starts")
"""Turn-state channels that grow with the session: their values stay decoded between turns
(state values are replaced, never changed in place)."""


def _turns_ns(session_id: str) -> tuple[str, ...]:
    return ("agentic", "turns", session_id)


def _state_types() -> list[tuple[str, str]]:
    """Every class that can sit in checkpointed turn state (deserialization allowlist)."""
    from agentic import types as core_types
    from agentic.memory import base as memory_base
    from agentic.shields import base as shield_base
    from agentic.shields import code_shield
    from agentic.tools import base as tool_base

    names = {
        core_types: [
            "SystemMessage",
            "UserMessage",
            "AssistantMessage",
            "ToolMessage",
            "ToolCall",
            "TextContent",
            "ImageContent",
            "Usage",
            "Document",
            "StopReason",
            "Artifact",
        ],
        agent_types: [
            "Turn",
            "TurnStatus",
            "InferenceStep",
            "ToolExecutionStep",
            "ShieldCallStep",
            "MemoryRetrievalStep",
            "ShieldOutcome",
            "ScreenedContent",
            "CodeCheck",
        ],
        tool_base: ["ToolResponse", "ToolErrorKind"],
        shield_base: ["Violation", "ScanVerdict"],
        code_shield: ["CodeVerdict", "CodeIssue"],
        memory_base: ["RetrievedChunk"],
    }
    return [(module.__name__, name) for module, group in names.items() for name in group]


class _ByReference:
    """The in-memory checkpointer's serializer: keeps objects instead of encoding them.

    Turn state is immutable (frozen models, lists replaced rather than changed), so a reference
    is as good as a copy and costs nothing; the checkpoint's own bookkeeping dicts are copied,
    since LangGraph keeps working on them.
    """

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kept = _containers_copied(obj) if isinstance(obj, dict) else obj
        return "ref", cast(bytes, kept)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kept = data[1]
        return _containers_copied(kept) if isinstance(kept, dict) else kept


def _containers_copied(value: Any) -> Any:
    """Dicts and lists copied at every level, their leaves shared (10x cheaper than deepcopy)."""
    if isinstance(value, dict):
        return {k: _containers_copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_containers_copied(v) for v in value]
    return value


class _MemorySaver(InMemorySaver):
    """LangGraph's in-memory saver that keeps what resuming needs, as our SQLite one does: each
    checkpoint drops the thread's checkpoints older than the one it follows, their writes and
    the values no kept checkpoint refers to. (Memory sessions are written when a turn stops,
    so that is once per turn.)"""

    def put(
        self,
        config: Any,
        checkpoint: Any,
        metadata: Any,
        new_versions: Any,
    ) -> Any:
        saved = super().put(config, checkpoint, metadata, new_versions)
        conf = config["configurable"]
        parent = conf.get("checkpoint_id")
        if parent:
            self._drop_before(conf["thread_id"], conf.get("checkpoint_ns", ""), parent)
        return saved

    def _drop_before(self, thread_id: str, ns: str, parent: str) -> None:
        checkpoints = self.storage[thread_id][ns]
        dropped: set[tuple[str, str, str, Any]] = set()
        for old in [cid for cid in checkpoints if cid < parent]:
            dropped |= self._blob_keys(thread_id, ns, checkpoints.pop(old)[0])
            self.writes.pop((thread_id, ns, old), None)
        for saved, _, _ in checkpoints.values():
            dropped -= self._blob_keys(thread_id, ns, saved)
        for key in dropped:
            self.blobs.pop(key, None)

    def _blob_keys(self, thread_id: str, ns: str, saved: Any) -> set[tuple[str, str, str, Any]]:
        versions = self.serde.loads_typed(saved)["channel_versions"]
        return {(thread_id, ns, channel, version) for channel, version in versions.items()}


class _MemoryStore(InMemoryStore):
    """LangGraph's in-memory store that forgets a namespace once it is empty: its reads and
    deletes leave one behind for every namespace they touch, so each deleted session's turns
    namespace stayed for the life of the process."""

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        try:
            return super().batch(ops)
        finally:
            self._forget_empty(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        try:
            return await super().abatch(ops)
        finally:
            self._forget_empty(ops)

    def _forget_empty(self, ops: list[Op]) -> None:
        for op in ops:
            namespace = getattr(op, "namespace", None)
            if namespace is not None and not self._data.get(namespace):
                self._data.pop(namespace, None)
                self._vectors.pop(namespace, None)


def state_serializer() -> StateSerializer:
    """Our state types as pydantic JSON; the rest through LangGraph's serializer, allowed to
    rebuild exactly our state types (nothing else)."""
    allowed = _state_types()
    models = []
    for module_name, name in allowed:
        cls = getattr(sys.modules[module_name], name)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            models.append(cls)
    return StateSerializer(models, JsonPlusSerializer(allowed_msgpack_modules=allowed))


class SessionStore:
    """Opens the configured checkpointer and store, and reads and writes session records."""

    def __init__(
        self,
        config: PersistenceConfig,
        home: Path,
        *,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        store: BaseStore | None = None,
    ) -> None:
        self.config = config
        self._home = home
        self._given = (checkpointer, store)
        self._stack = AsyncExitStack()
        self.checkpointer: BaseCheckpointSaver[Any] | None = None
        self.store: BaseStore | None = None
        self.leases: SessionLeases | None = None
        """Turn claims shared with other processes (SQLite and Postgres we opened)."""

    @property
    def path(self) -> Path:
        """The SQLite file (sqlite backend)."""
        return (self.config.path or self._home / "sessions.sqlite").expanduser()

    async def open(self) -> None:
        """Connect and create tables (idempotent)."""
        if self.checkpointer is not None:
            return
        checkpointer, store = self._given
        if checkpointer is None or store is None:
            opened = await self._open_backend()
            checkpointer = checkpointer or opened[0]
            store = store or opened[1]
        self.checkpointer, self.store = checkpointer, store

    async def _open_backend(self) -> tuple[BaseCheckpointSaver[Any], BaseStore]:
        backend = self.config.backend
        if backend == "memory":
            return _MemorySaver(serde=_ByReference()), _MemoryStore()
        if backend == "sqlite":
            return await self._open_sqlite()
        return await self._open_postgres()

    async def _open_sqlite(self) -> tuple[BaseCheckpointSaver[Any], BaseStore]:
        from agentic.agent._checkpoints import SqliteCheckpointer
        from agentic.agent._sqlite import SqliteThread, ThreadedSqliteStore, setup_lock

        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the directory of the session database {str(path)!r}: "
                f"{exc.strerror or exc}; set persistence.path (or AGENTIC_HOME) to a writable "
                "directory"
            ) from exc
        # One connection, used by one call at a time (on the event loop, or on its thread
        # when another process holds the lock): checkpoints and records are written in turn,
        # so the records' read-then-write transactions never race a checkpoint write (two
        # connections on one file fail with "database is locked" under load).
        thread = SqliteThread(path, busy_timeout=_BUSY_TIMEOUT)
        self._stack.push_async_callback(thread.aclose)
        async with setup_lock(path):  # a new file is set up by one process at a time
            await thread.open()
            saver = SqliteCheckpointer(thread, serde=state_serializer(), keep_decoded=_GROWING)
            store = ThreadedSqliteStore(thread)
            await saver.asetup()
            await store.asetup()
            await self._open_leases(SqliteLeases(thread))
        return saver, store

    async def _open_postgres(self) -> tuple[BaseCheckpointSaver[Any], BaseStore]:
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from langgraph.store.postgres.aio import AsyncPostgresStore
        except ImportError as exc:
            raise MissingDependencyError("langgraph-checkpoint-postgres", "postgres") from exc
        url = self.config.url
        assert url is not None  # PersistenceConfig checked it
        saver = await self._stack.enter_async_context(AsyncPostgresSaver.from_conn_string(url))
        saver.serde = state_serializer()
        store = await self._stack.enter_async_context(AsyncPostgresStore.from_conn_string(url))
        await saver.setup()
        await store.setup()
        await self._open_leases(PostgresLeases(url))
        return saver, store

    async def _open_leases(self, storage: SqliteLeases | PostgresLeases) -> None:
        leases = SessionLeases(storage)
        self._stack.push_async_callback(leases.aclose)  # before the connection closes
        await leases.setup()
        self.leases = leases

    async def aclose(self) -> None:
        """Close connections this store opened (injected ones are left to their owner)."""
        await self._stack.aclose()
        self.checkpointer = self.store = None
        self.leases = None

    def _store(self) -> BaseStore:
        if self.store is None:
            raise RuntimeError("SessionStore used before open()")
        return self.store

    # --- turn claims ------------------------------------------------------------------------

    async def claim(self, session_id: str) -> None:
        """Claim the session for a turn in every process sharing this storage; raises
        :class:`SessionBusyError` while another process runs one (a no-op for storage only
        this process sees)."""
        if self.leases is not None:
            holder = await self.leases.acquire(session_id)
            if holder is not None:
                raise SessionBusyError(session_id, holder=holder.describe())

    async def unclaim(self, session_id: str) -> None:
        if self.leases is not None:
            await self.leases.release(session_id)

    # --- sessions ---------------------------------------------------------------------------

    async def save_session(self, info: SessionInfo) -> None:
        await self._store().aput(_SESSIONS, info.session_id, info.model_dump(mode="json"))

    async def load_session(self, session_id: str) -> SessionInfo:
        info = await self.find_session(session_id)
        if info is None:
            raise SessionNotFoundError(session_id)
        return info

    async def find_session(self, session_id: str) -> SessionInfo | None:
        """The session's record, or None when there is none."""
        item = await self._store().aget(_SESSIONS, session_id)
        return None if item is None else SessionInfo.model_validate(item.value)

    async def list_sessions(self, agent: str | None = None) -> list[SessionInfo]:
        """Sessions, most recently updated first; only ``agent``'s when given."""
        found = await self._all(_SESSIONS, {"agent": agent} if agent is not None else None)
        infos = [SessionInfo.model_validate(v) for v in found]
        return sorted(infos, key=lambda s: s.updated_at, reverse=True)

    async def delete_session(self, session_id: str) -> None:
        """Forget a session: its record, its turns and its checkpoints."""
        await self.load_session(session_id)
        store = self._store()
        for value in await self._all(_turns_ns(session_id), None):
            await store.adelete(_turns_ns(session_id), value["turn_id"])
        await store.adelete(_SESSIONS, session_id)
        if self.checkpointer is not None:
            await self.checkpointer.adelete_thread(session_id)

    async def _all(self, namespace: tuple[str, ...], filter: dict[str, Any] | None) -> list[Any]:
        store, out, offset = self._store(), [], 0
        while True:
            page = await store.asearch(namespace, filter=filter, limit=_PAGE, offset=offset)
            out += [item.value for item in page if item.namespace == namespace]
            if len(page) < _PAGE:
                return out
            offset += _PAGE

    # --- turns ------------------------------------------------------------------------------

    async def save_turn(self, turn: Turn, session: SessionInfo) -> None:
        """Record a finished turn and its session's counters: one batch, one round trip.

        ``session`` gives the record's fixed fields (name, metadata, creation time); the
        counters come from the turn, so a stale copy writes the same record.
        """
        count = max(session.turn_count, turn.index + 1)
        info = session.model_copy(update={"turn_count": count, "updated_at": utcnow()})
        await self._store().abatch(
            [
                PutOp(_turns_ns(turn.session_id), turn.turn_id, turn.model_dump(mode="json")),
                PutOp(_SESSIONS, info.session_id, info.model_dump(mode="json")),
            ]
        )

    async def load_turn(self, session_id: str, turn_id: str) -> Turn | None:
        item = await self._store().aget(_turns_ns(session_id), turn_id)
        return None if item is None else Turn.model_validate(item.value)

    async def list_turns(self, session_id: str) -> list[Turn]:
        """The session's finished turns, oldest first."""
        turns = [Turn.model_validate(v) for v in await self._all(_turns_ns(session_id), None)]
        return sorted(turns, key=lambda t: t.index)
