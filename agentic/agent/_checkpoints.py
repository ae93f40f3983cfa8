"""Session checkpoints in SQLite, each channel value stored once per version.

LangGraph's ``SqliteSaver`` writes every checkpoint as one blob holding every channel's value,
so each step of a turn re-encodes the session's whole history: at 100 turns a step cost about
13 ms more than at the first. Here, as in LangGraph's in-memory and Postgres savers, a
checkpoint row keeps the channel versions and a value is written only in the step that changed
it; a history a turn appended to is written as the messages it added (see
:class:`SqliteCheckpointer`). All calls run on the :class:`~agentic.agent._sqlite.SqliteThread`
that owns the connection.
"""

from __future__ import annotations

import builtins
import random
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentic.agent._sqlite import SqliteThread

__all__ = ["SqliteCheckpointer"]

RunnableConfig = Any  # langchain_core's RunnableConfig (a TypedDict) without importing it here

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agentic_checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT NOT NULL,
    checkpoint BLOB NOT NULL,
    metadata_type TEXT NOT NULL,
    metadata BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS agentic_checkpoint_values (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE TABLE IF NOT EXISTS agentic_checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    task_path TEXT NOT NULL,
    channel TEXT NOT NULL,
    type TEXT NOT NULL,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
"""

_PRUNE_EVERY = 16
"""Checkpoints of a thread after which it is pruned even without a new turn's input."""
_MAX_TRACKED = 65536
"""Threads whose checkpoints since the last prune are counted at once."""

_INLINE = "agentic_inline"
"""Key, in a stored checkpoint, of the small values it holds itself (see :func:`_inlined`)."""
_INLINE_CHARS = 256
"""Longest string kept in the checkpoint row."""

_MAX_ENCODED = 256
"""Encoded write values kept for the next checkpoint, at most."""

_KEPT_BYTES = 64 << 20
"""Encoded size of the decoded values kept for reuse, at most (see ``keep_decoded``)."""
_KEPT_VALUES = 4096
"""Decoded values kept for reuse, at most."""

_TAIL = "agentic_tail:"
"""Type prefix of a growing list stored as its new tail: ``agentic_tail:<base version>:<type>``
(the base is the same channel's value at that version)."""
_MAX_TAILS = 32
"""Tails after a full value, at most: reading a value joins at most this many rows."""

_EMPTY = "empty"
"""Type of a channel that has a version but no value (it was cleared)."""

_COLUMNS = (
    "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata_type, metadata"
)


class SqliteCheckpointer(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on one SQLite connection owned by ``thread``.

    With ``prune`` (the default) a run's input checkpoint (a new turn; else every 16th
    checkpoint) drops the thread's checkpoints older than the one it follows, with their
    writes and the values no kept checkpoint refers to: a session keeps what resuming needs
    (finished turns live in the session store), and its storage grows with its history, not
    with the square of its turns.

    ``keep_decoded`` names channels whose values are never changed in place (new values
    replace them): their values are kept decoded, by version, after they are written or read,
    so a session's next turn does not decode its whole history again (3.6 ms at 100 turns).
    Versions are unique (a random part), so a kept value is never another process's. A list
    value of such a channel that starts with the very objects of the channel's last kept
    value (a history a turn appended to) is stored as its new tail, referring to that value's
    row: a turn writes what it added, not the whole history again. Every 33rd value of a
    channel is stored whole, so a read joins at most 33 rows.
    """

    def __init__(
        self,
        thread: SqliteThread,
        *,
        serde: SerializerProtocol,
        prune: bool = True,
        keep_decoded: Collection[str] = (),
    ) -> None:
        super().__init__(serde=serde)
        self._thread = thread
        self._prune = prune
        self._keep_decoded = frozenset(keep_decoded)
        self._kept: OrderedDict[tuple[str, str, str, str], _Kept] = OrderedDict()
        """Decoded values of ``keep_decoded`` channels by (thread, namespace, channel,
        version), least recently used first."""
        self._kept_bytes = 0
        self._latest: dict[tuple[str, str, str], str] = {}
        """The last version kept of each (thread, namespace, channel): a new value's base."""
        self._unpruned: dict[tuple[str, str], int] = {}
        """Checkpoints written per thread since it was last pruned."""
        self._encoded: dict[int, tuple[Any, _Encoded]] = {}
        """Values ``put_writes`` encoded since the last ``put``, by identity (with the value,
        so the id stays its own): a step's checkpoint stores the values its task just wrote,
        and encodes each of them once."""

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = self._thread.conn
        if conn is None:
            raise RuntimeError("SqliteCheckpointer used after its connection closed")
        return conn

    async def asetup(self) -> int:
        """Create the tables (idempotent); adopt sessions saved by LangGraph's ``SqliteSaver``
        (earlier versions) into an empty database. Returns how many were adopted."""
        await self._thread.run(self._conn.executescript, _SCHEMA)
        return await self._thread.run(self._adopt_sqlite_saver)

    def _adopt_sqlite_saver(self) -> int:
        """Copy the latest checkpoint of each thread in LangGraph's ``checkpoints`` table, with
        its pending writes, when none of ours exist yet (the old tables are left as they are)."""
        conn = self._conn
        old = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
        ).fetchone()
        if old is None or conn.execute("SELECT 1 FROM agentic_checkpoints LIMIT 1").fetchone():
            return 0
        from langgraph.checkpoint.sqlite import SqliteSaver

        saver = SqliteSaver(conn, serde=self.serde)
        threads = conn.execute(
            "SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoints"
        ).fetchall()
        adopted = 0
        for thread_id, ns in threads:
            found = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}})
            if found is None:
                continue
            checkpoint = found.checkpoint
            base = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
            saved = self.put(base, checkpoint, found.metadata, checkpoint["channel_versions"])
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in found.pending_writes or []:
                by_task.setdefault(task_id, []).append((channel, value))
            for task_id, writes in by_task.items():
                self.put_writes(saved, writes, task_id)
            adopted += 1
        return adopted

    # --- writing --------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store the checkpoint and the values of the channels it changed, in one transaction."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        values = checkpoint["channel_values"]
        inline = {channel: v for channel, v in values.items() if _inlined(v)}
        rows: list[tuple[str, str, str, str, str, bytes | None]] = []
        keep: list[tuple[tuple[str, str, str, str], Any, _Encoded]] = []
        for channel, version in new_versions.items():
            if channel in inline:
                continue
            if channel not in values:
                rows.append((thread_id, ns, channel, str(version), _EMPTY, None))
                continue
            value = values[channel]
            known = self._encoded.get(id(value))
            encoded = (
                known[1]
                if known is not None and known[0] is value
                else self._encode(thread_id, ns, channel, value)
            )
            rows.append((thread_id, ns, channel, str(version), encoded.kind, encoded.blob))
            if channel in self._keep_decoded:
                keep.append(((thread_id, ns, channel, str(version)), value, encoded))
        self._encoded.clear()
        head: dict[str, Any] = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        if inline:
            head[_INLINE] = inline
        meta = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO agentic_checkpoint_values VALUES (?, ?, ?, ?, ?, ?)", rows
            )
            conn.execute(
                "INSERT OR REPLACE INTO agentic_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    ns,
                    checkpoint["id"],
                    conf.get("checkpoint_id"),
                    *self.serde.dumps_typed(head),
                    *meta,
                ),
            )
            parent = conf.get("checkpoint_id")
            if self._prune and parent and self._prune_due(thread_id, ns, metadata):
                self._drop_before(conn, thread_id, ns, parent, checkpoint["channel_versions"])
        for key, value, encoded in keep:  # once committed
            self._keep(key, _Kept(value, encoded.size, encoded.depth))
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _prune_due(self, thread_id: str, ns: str, metadata: CheckpointMetadata) -> bool:
        """At a run's input checkpoint (a new turn), or every 16 checkpoints: with durability
        ``exit`` a run writes no input checkpoint, only its last one."""
        key = (thread_id, ns)
        count = self._unpruned.get(key, 0) + 1
        if metadata.get("source") == "input" or count >= _PRUNE_EVERY:
            self._unpruned.pop(key, None)
            return True
        if len(self._unpruned) >= _MAX_TRACKED:  # bounded: forgetting only delays a prune
            self._unpruned.clear()
        self._unpruned[key] = count
        return False

    def _drop_before(
        self,
        conn: sqlite3.Connection,
        thread_id: str,
        ns: str,
        parent: str,
        versions: ChannelVersions,
    ) -> None:
        """Delete checkpoints older than ``parent``, their writes, and unreferenced values."""
        key = (thread_id, ns, parent)
        for table in ("checkpoints", "checkpoint_writes"):
            conn.execute(
                f"DELETE FROM agentic_{table} "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?",
                key,
            )
        kept = {(c, str(v)) for c, v in versions.items()}
        row = conn.execute(
            "SELECT type, checkpoint FROM agentic_checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            key,
        ).fetchone()
        if row is not None:
            parent_versions = self.serde.loads_typed(row).get("channel_versions", {})
            kept |= {(c, str(v)) for c, v in parent_versions.items()}
        stored = conn.execute(
            "SELECT channel, version, type FROM agentic_checkpoint_values "
            "WHERE thread_id = ? AND checkpoint_ns = ?",
            (thread_id, ns),
        ).fetchall()
        # a kept value (or pending write) stored as a tail keeps the values it extends
        base_of = {(c, v): _tail_base(kind) for c, v, kind in stored if kind.startswith(_TAIL)}
        writes = conn.execute(
            "SELECT channel, type FROM agentic_checkpoint_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND type LIKE 'agentic_tail:%'",
            (thread_id, ns),
        ).fetchall()
        kept |= {(c, _tail_base(kind)) for c, kind in writes}
        todo = list(kept)
        while todo:
            channel, version = todo.pop()
            base = base_of.get((channel, version))
            if base is not None and (channel, base) not in kept:
                kept.add((channel, base))
                todo.append((channel, base))
        dropped = [(thread_id, ns, c, v) for c, v, _ in stored if (c, v) not in kept]
        conn.executemany(
            "DELETE FROM agentic_checkpoint_values "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
            dropped,
        )
        for value_key in dropped:
            self._forget(value_key)

    # --- decoded values kept for reuse ----------------------------------------------------

    def _keep(self, key: tuple[str, str, str, str], kept: _Kept) -> None:
        if kept.size > _KEPT_BYTES // 4:
            return
        self._forget(key)
        self._kept[key] = kept
        self._kept_bytes += kept.size
        while self._kept_bytes > _KEPT_BYTES or len(self._kept) > _KEPT_VALUES:
            _, old = self._kept.popitem(last=False)
            self._kept_bytes -= old.size
        channel_key = key[:3]
        previous = self._latest.get(channel_key)
        if previous is None and len(self._latest) >= _MAX_TRACKED:
            self._latest.clear()  # bounded: forgetting only costs a whole write
        elif previous is not None and previous != key[3]:
            self._forget((*channel_key, previous))  # one value per channel: the last one
        self._latest[channel_key] = key[3]

    def _forget(self, key: tuple[str, str, str, str]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._kept_bytes -= kept.size

    def _encode(self, thread_id: str, ns: str, channel: str, value: Any) -> _Encoded:
        """A value's row: a growing list that extends its channel's latest kept value is
        stored as its new tail."""
        if channel in self._keep_decoded and isinstance(value, list):
            tail = self._tail(thread_id, ns, channel, value)
            if tail is not None:
                return tail
        kind, blob = self.serde.dumps_typed(value)
        return _Encoded(kind, blob, len(blob), 0)

    def _tail(self, thread_id: str, ns: str, channel: str, value: list[Any]) -> _Encoded | None:
        base_version = self._latest.get((thread_id, ns, channel))
        if base_version is None:
            return None
        base = self._kept.get((thread_id, ns, channel, base_version))
        if base is None or base.depth >= _MAX_TAILS or not isinstance(base.value, list):
            return None
        old = base.value
        if len(old) > len(value) or any(a is not b for a, b in zip(old, value, strict=False)):
            return None
        stored = self._conn.execute(
            "SELECT 1 FROM agentic_checkpoint_values "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
            (thread_id, ns, channel, base_version),
        ).fetchone()
        if stored is None:  # pruned (or deleted) since it was kept
            self._forget((thread_id, ns, channel, base_version))
            return None
        kind, blob = self.serde.dumps_typed(value[len(old) :])
        return _Encoded(f"{_TAIL}{base_version}:{kind}", blob, _cost(blob, value), base.depth + 1)

    def _decoded(self, thread_id: str, ns: str, channel: str, kind: str, blob: bytes) -> _Kept:
        """A stored row's value; a tail joined to the value it extends."""
        if not kind.startswith(_TAIL):
            return _Kept(self.serde.loads_typed((kind, blob)), len(blob), 0)
        base_version, inner = kind[len(_TAIL) :].split(":", 1)
        base = self._value_at(thread_id, ns, channel, base_version)
        joined = [*base.value, *self.serde.loads_typed((inner, blob))]
        return _Kept(joined, _cost(blob, joined), base.depth + 1)

    def _value_at(self, thread_id: str, ns: str, channel: str, version: str) -> _Kept:
        key = (thread_id, ns, channel, version)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        row = self._conn.execute(
            "SELECT type, value FROM agentic_checkpoint_values "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
            key,
        ).fetchone()
        if row is None:
            raise RuntimeError(
                f"the session database lacks value {version} of {channel!r} (thread "
                f"{thread_id!r}), which a newer value extends: the file was changed outside "
                "agentic"
            )
        found = self._decoded(thread_id, ns, channel, row[0], row[1])
        if channel in self._keep_decoded:
            self._keep(key, found)
        return found

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes; LangGraph's special channels replace, the rest are kept once."""
        conf = config["configurable"]
        key = (str(conf["thread_id"]), str(conf.get("checkpoint_ns", "")), conf["checkpoint_id"])
        replace: list[tuple[Any, ...]] = []
        keep: list[tuple[Any, ...]] = []
        if len(self._encoded) > _MAX_ENCODED:  # writes without a checkpoint (async durability)
            self._encoded.clear()
        for idx, (channel, value) in enumerate(writes):
            special = WRITES_IDX_MAP.get(channel)
            row = (*key, task_id, idx if special is None else special, task_path, channel)
            encoded = self._encode(key[0], key[1], channel, value)
            if value is not None and special is None:
                self._encoded[id(value)] = (value, encoded)
            (keep if special is None else replace).append((*row, encoded.kind, encoded.blob))
        sql = "INTO agentic_checkpoint_writes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE " + sql, replace)
            conn.executemany("INSERT OR IGNORE " + sql, keep)

    def delete_thread(self, thread_id: str) -> None:
        """Forget every checkpoint, value and write of a thread."""
        with self._transaction() as conn:
            for table in ("checkpoints", "checkpoint_values", "checkpoint_writes"):
                conn.execute(f"DELETE FROM agentic_{table} WHERE thread_id = ?", (thread_id,))
        for key in [k for k in self._kept if k[0] == thread_id]:
            self._forget(key)
        for channel_key in [k for k in self._latest if k[0] == thread_id]:
            del self._latest[channel_key]
        for counted in [k for k in self._unpruned if k[0] == thread_id]:
            del self._unpruned[counted]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # --- reading --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, else the thread's latest."""
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns", ""))
        if checkpoint_id := get_checkpoint_id(config):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM agentic_checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (thread_id, ns, checkpoint_id),
            ).fetchone()
        else:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM agentic_checkpoints WHERE thread_id = ? "
                "AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1",
                (thread_id, ns),
            ).fetchone()
        return None if row is None else self._tuple(thread_id, row)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints, newest first, narrowed by thread, namespace, id, ``before``, metadata."""
        where, args = [], []
        conf = (config or {}).get("configurable", {})
        for column, value in (
            ("thread_id", conf.get("thread_id")),
            ("checkpoint_ns", conf.get("checkpoint_ns")),
            ("checkpoint_id", get_checkpoint_id(config) if config else None),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if before is not None and (before_id := get_checkpoint_id(before)):
            where.append("checkpoint_id < ?")
            args.append(before_id)
        sql = f"SELECT thread_id, {_COLUMNS} FROM agentic_checkpoints"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY checkpoint_id DESC"
        found = 0
        for thread_id, *row in self._conn.execute(sql, args).fetchall():
            if limit is not None and found >= limit:
                return
            metadata = self.serde.loads_typed((row[5], row[6]))
            if filter and any(metadata.get(k) != v for k, v in filter.items()):
                continue
            found += 1
            yield self._tuple(thread_id, tuple(row))

    def _tuple(self, thread_id: str, row: tuple[Any, ...]) -> CheckpointTuple:
        ns, checkpoint_id, parent_id, kind, blob, meta_kind, meta = row
        head = self.serde.loads_typed((kind, blob))
        inline: dict[str, Any] = head.pop(_INLINE, {})
        versions: dict[str, Any] = head.get("channel_versions", {})
        stored = {c: v for c, v in versions.items() if c not in inline}
        values = {**self._values(thread_id, ns, stored), **inline}
        checkpoint = cast(Checkpoint, {**head, "channel_values": values})

        def at(cid: str) -> RunnableConfig:
            return {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}
            }

        return CheckpointTuple(
            config=at(checkpoint_id),
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed((meta_kind, meta)),
            parent_config=at(parent_id) if parent_id else None,
            pending_writes=self._writes(thread_id, ns, checkpoint_id),
        )

    def _values(self, thread_id: str, ns: str, versions: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        missing: dict[str, str] = {}
        for channel, version in versions.items():
            key = (thread_id, ns, channel, str(version))
            kept = self._kept.get(key)
            if kept is None:
                missing[channel] = key[3]
            else:
                self._kept.move_to_end(key)
                values[channel] = kept.value
        if not missing:
            return values
        pairs = " OR ".join(["(channel = ? AND version = ?)"] * len(missing))
        args: list[str] = [thread_id, ns]
        for channel, version in missing.items():
            args += [channel, version]
        rows = self._conn.execute(
            "SELECT channel, type, value FROM agentic_checkpoint_values "
            f"WHERE thread_id = ? AND checkpoint_ns = ? AND ({pairs})",
            args,
        ).fetchall()
        for channel, kind, blob in rows:
            if kind == _EMPTY:
                continue
            found = self._decoded(thread_id, ns, channel, kind, blob)
            values[channel] = found.value
            if channel in self._keep_decoded:
                self._keep((thread_id, ns, channel, missing[channel]), found)
        return values

    def _writes(self, thread_id: str, ns: str, checkpoint_id: str) -> builtins.list[PendingWrite]:
        rows = self._conn.execute(
            "SELECT task_id, idx, task_path, channel, type, value "
            "FROM agentic_checkpoint_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, ns, checkpoint_id),
        ).fetchall()
        rows.sort(key=lambda r: writes_sort_key(r[2], r[0], r[1]))
        return [
            (task_id, ch, self._decoded(thread_id, ns, ch, kind, v).value)
            for task_id, _, _, ch, kind, v in rows
        ]

    # --- async API: on the event loop while the connection is free (SqliteThread.call) ----

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._thread.call(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def collect() -> list[CheckpointTuple]:
            return list(self.list(config, filter=filter, before=before, limit=limit))

        for item in await self._thread.call(collect):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._thread.call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._thread.call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._thread.call(self.delete_thread, thread_id)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``<counter, 32 digits>.<random>``: ordered, and unique across forked histories."""
        count = 0 if current is None else int(str(current).split(".", 1)[0])
        return f"{count + 1:032}.{random.random():016}"


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A value's stored form (``kind``, ``blob``), what keeping it decoded costs (``size``,
    in bytes: see :func:`_cost`), and how many tails it is past a whole one (0: whole)."""

    kind: str
    blob: bytes
    size: int
    depth: int


@dataclass(frozen=True, slots=True)
class _Kept:
    """A decoded value kept for reuse, with its ``size`` and ``depth`` as in :class:`_Encoded`."""

    value: Any
    size: int
    depth: int


def _cost(tail: bytes, joined: list[Any]) -> int:
    """What a value joined from a tail adds to the kept values: its new items (about their
    encoded size) and the list of references; the older items are its base's."""
    return len(tail) + 8 * len(joined)


def _tail_base(kind: str) -> str:
    return kind[len(_TAIL) :].split(":", 1)[0]


def _inlined(value: Any) -> bool:
    """Whether a channel value is small enough to live in the checkpoint row itself.

    A step changes about ten channels, most of them flags, counters and empty lists; a row
    each costs more than the values they hold. Small values are written into every checkpoint
    (changed or not), so reading one needs no row; turns and messages keep their rows.
    """
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return True
    if kind is str:
        return len(value) <= _INLINE_CHARS
    return (kind is list or kind is dict) and not value


class _Transaction:
    """``with`` block around statements on an autocommit connection: one commit, or none."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN")
        return self._conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.rollback()
