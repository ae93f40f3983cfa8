"""A bank's keyword index: SQLite FTS5 (BM25) over its chunks' terms, a cache of the collection.

Chroma stays the source of truth. Every write to a bank gives its collection a new random
*stamp* (in the collection's metadata); the index records the stamp it reflects. When they
differ (another process wrote, the cache file is new or was lost), the index is rebuilt from
the collection before it answers. A bank's own writes update the index in place when nothing
else wrote in between. Results are read back from Chroma by id, so a chunk deleted there is
never returned from here. Chroma's own document filters scan every chunk (50+ ms per term at
100k chunks); this answers in milliseconds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agentic.memory._chroma import ChromaClient
from agentic.memory._keyword import terms

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["STAMP_KEY", "KeywordIndex"]

STAMP_KEY: Final = "agentic_keyword_stamp"
_PAGE: Final = 2000
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ids (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5(
    body, tokenize="unicode61 tokenchars '-./:#+_'"
);
"""


class KeywordIndex:
    """The FTS5 index of one bank, on disk at ``path`` (or in memory when None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # --- blocking primitives (run on worker threads, one at a time) ------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path) if self.path is not None else ":memory:"
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def stamp(self) -> str | None:
        """The collection stamp this index reflects: None when never built, ``""`` when
        built from a collection no bank has written to."""
        with self._lock:
            row = self._conn().execute("SELECT value FROM state WHERE key='stamp'").fetchone()
            return None if row is None else str(row[0])

    def replace_all(self, rows: Iterable[tuple[str, str]], stamp: str) -> None:
        """Rebuild from ``(chunk_id, text)`` rows, as of collection stamp ``stamp``."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            try:
                db.execute("DELETE FROM ids")
                db.execute("DELETE FROM terms")
                self._insert(db, rows)
                self._set_stamp(db, stamp)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def apply(self, upserts: Sequence[tuple[str, str]], deletes: Sequence[str], stamp: str) -> None:
        """Apply one write of the bank: chunks added or replaced, chunks deleted."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            try:
                self._delete(db, [*deletes, *(chunk_id for chunk_id, _ in upserts)])
                self._insert(db, upserts)
                self._set_stamp(db, stamp)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def invalidate(self) -> None:
        """Forget which stamp the index reflects: the next search rebuilds it."""
        with self._lock:
            self._conn().execute("DELETE FROM state WHERE key='stamp'")

    def search(self, query_terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        """``(chunk_id, BM25 score)`` of the best chunks with any of ``query_terms``."""
        expr = " OR ".join('"' + t.replace('"', '""') + '"' for t in query_terms)
        with self._lock:
            rows = self._conn().execute(
                "SELECT ids.chunk_id, bm25(terms) FROM terms JOIN ids ON ids.rowid = terms.rowid "
                "WHERE terms MATCH ? ORDER BY bm25(terms) LIMIT ?",
                (expr, limit),
            )
            return [(str(chunk_id), -float(score)) for chunk_id, score in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def drop(self) -> None:
        """Close and delete the index file."""
        self.close()
        if self.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> None:
        for chunk_id, text in rows:
            rowid = db.execute("INSERT INTO ids(chunk_id) VALUES (?)", (chunk_id,)).lastrowid
            db.execute(
                "INSERT INTO terms(rowid, body) VALUES (?, ?)", (rowid, " ".join(terms(text)))
            )

    @staticmethod
    def _delete(db: sqlite3.Connection, chunk_ids: Sequence[str]) -> None:
        for chunk_id in chunk_ids:
            row = db.execute("SELECT rowid FROM ids WHERE chunk_id = ?", (chunk_id,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM ids WHERE rowid = ?", (row[0],))
                db.execute("DELETE FROM terms WHERE rowid = ?", (row[0],))

    @staticmethod
    def _set_stamp(db: sqlite3.Connection, stamp: str) -> None:
        db.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('stamp', ?)", (stamp,))

    # --- in sync with the collection --------------------------------------------------------

    async def ensure_fresh(self, client: ChromaClient, name: str, *, force: bool = False) -> None:
        """Rebuild from the collection when it changed since the index was last in sync."""
        remote = await remote_stamp(client, name)
        if not force and remote == await asyncio.to_thread(self.stamp):
            return
        collection = await client.call(client.client.get_collection, name)
        rows: list[tuple[str, str]] = []
        while True:
            page = await client.call(
                collection.get, include=["documents"], limit=_PAGE, offset=len(rows)
            )
            rows.extend(zip(page["ids"], (d or "" for d in page["documents"] or []), strict=True))
            if len(page["ids"]) < _PAGE:
                break
        await asyncio.to_thread(self.replace_all, rows, remote)

    async def record_write(
        self,
        client: ChromaClient,
        collection: Collection,
        before: str,
        upserts: Sequence[tuple[str, str]],
        deletes: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> None:
        """After a write to the collection: give it a new stamp, and update the index in
        place if it was in sync with ``before`` (the stamp read before the write) and no one
        else stamped the collection since; otherwise leave it to be rebuilt."""
        current = await remote_stamp(client, collection.name)
        stamp = uuid.uuid4().hex
        await client.call(collection.modify, metadata={**metadata, STAMP_KEY: stamp})
        mine = await asyncio.to_thread(self.stamp)
        if mine == before == current:
            await asyncio.to_thread(self.apply, upserts, deletes, stamp)
        elif mine is not None:
            await asyncio.to_thread(self.invalidate)


async def remote_stamp(client: ChromaClient, name: str) -> str:
    """The collection's current stamp, ``""`` if it has none (fresh from Chroma, not from a
    cached collection object)."""
    collection = await client.call(client.client.get_collection, name)
    return str((collection.metadata or {}).get(STAMP_KEY, ""))
