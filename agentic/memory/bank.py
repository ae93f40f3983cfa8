"""MemoryBank: documents chunked, embedded and kept in one Chroma collection, and queried.

```python
bank = MemoryBank("handbook")                       # embedded Chroma under ~/.agentic/memory
await bank.add_file("docs/returns.pdf")
await bank.add_text("Part XK-4471-B is the brass hinge.", metadata={"kind": "parts"})
hits = await bank.query("which hinge is brass?", limit=3, mode="hybrid")
```
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias, get_args

import httpx2
from pydantic import AwareDatetime, BaseModel, ConfigDict

from agentic.errors import (
    ConfigError,
    DocumentError,
    DocumentNotFoundError,
    EmbeddingMismatchError,
    MemoryBankError,
)
from agentic.memory import _search
from agentic.memory._keyword_index import remote_stamp
from agentic.memory.base import RetrievedChunk
from agentic.memory.chunking import DEFAULT_OVERLAP_TOKENS, Chunk, Chunker
from agentic.memory.embedding import Embedder
from agentic.memory.loaders import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    LoadedDocument,
    fetch_url,
    read_file,
    text_of,
)
from agentic.memory.store import MODEL_KEY, MemoryStore
from agentic.types import Document

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["DocumentInfo", "MemoryBank", "MetadataValue", "SearchMode"]

SearchMode: TypeAlias = Literal["vector", "keyword", "hybrid"]
MetadataValue: TypeAlias = str | int | float | bool
DIMENSION_KEY: Final = "agentic_embedding_dimension"
_UPSERT_BATCH: Final = 64
"""Chunks embedded per step; each step's upsert runs while the next one is embedded."""
_BANK_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")
_RESERVED: Final = frozenset(
    {
        "document_id", "source", "mime_type", "title", "position", "token_count",
        "chunk_count", "document_tokens", "content_hash", "chunking", "added_at",
    }
)  # fmt: skip
_PUBLIC: Final = ("source", "position", "token_count", "title")
"""Chunk bookkeeping shown in RetrievedChunk.metadata next to the user's own metadata."""


class DocumentInfo(BaseModel):
    """One document in a bank: where it came from, how it was chunked, its metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: str
    source: str
    mime_type: str
    title: str | None = None
    chunk_count: int
    token_count: int
    content_hash: str
    added_at: AwareDatetime
    metadata: dict[str, MetadataValue]


@dataclass(slots=True)
class _Input:
    """A document on its way in: its text and where it came from."""

    document_id: str
    source: str
    mime_type: str
    text: str
    metadata: dict[str, MetadataValue]
    title: str | None = None
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.content_hash = hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:32]


class MemoryBank:
    """A named collection of chunked documents that the agent can query for context.

    Without a ``store`` the bank opens its own from :class:`~agentic.config.Settings` (and
    closes it in :meth:`aclose`); banks of one :class:`MemoryStore` share its Chroma client
    and its embedding model. ``mode`` and ``min_score`` are what :meth:`retrieve` (the
    agent's turn) uses; :meth:`query` takes them per call. Chunks hold at most
    ``chunk_tokens`` word pieces of the embedding model (its own limit by default capped at
    192), consecutive chunks share ``overlap_tokens``. Files and downloads over
    ``max_document_bytes`` are refused.
    """

    def __init__(
        self,
        bank_id: str,
        *,
        store: MemoryStore | None = None,
        mode: SearchMode = "vector",
        min_score: float | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        _check_bank_id(bank_id)
        _check_mode(mode)
        if max_document_bytes < 1:
            raise ConfigError("max_document_bytes must be at least 1")
        self._bank_id = bank_id
        self._own_store = store is None
        self.store = store or MemoryStore()
        self.mode: SearchMode = mode
        self.min_score = min_score
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens
        self.max_document_bytes = max_document_bytes
        self._http = http_client
        self._collection: Collection | None = None
        self._generation = -1
        self._chunker: Chunker | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBank({self._bank_id!r}, store={self.store!r})"

    @property
    def bank_id(self) -> str:
        return self._bank_id

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Self:
        """Open the store and the bank's collection (created on first use).

        Raises EmbeddingMismatchError when the bank was built with another embedding model,
        MemoryStoreUnavailableError when the Chroma server cannot be reached.
        """
        if self._collection is None or self._generation != self.store.generation:
            await self.store.open()
            await asyncio.to_thread(self._open_sync)
        return self

    def _open_sync(self) -> None:
        with self._lock:
            generation = self.store.generation
            if self._collection is not None and self._generation == generation:
                return
            client, embedder = self.store.client, self.store.embedder
            chunker = Chunker(
                embedder.tokenizer,
                max_tokens=embedder.max_tokens,
                chunk_tokens=self._chunk_tokens,
                overlap_tokens=self._overlap_tokens,
            )
            try:
                collection = client.client.get_or_create_collection(
                    self._bank_id,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={MODEL_KEY: embedder.name, DIMENSION_KEY: embedder.dimension},
                    embedding_function=None,
                )
            except Exception as exc:
                raise client.translate(exc) from exc
            _check_model(self._bank_id, collection.metadata or {}, embedder)
            self._collection, self._chunker = collection, chunker
            self._generation = generation

    async def aclose(self) -> None:
        """Forget the collection; close the store too when the bank opened its own."""
        self._collection = None
        if self._own_store:
            await self.store.aclose()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _ready(self) -> tuple[Collection, Chunker]:
        await self.open()
        assert self._collection is not None
        assert self._chunker is not None
        return self._collection, self._chunker

    @property
    def embedder(self) -> Embedder:
        """The bank's embedding model (after :meth:`open`)."""
        return self.store.embedder

    @property
    def chunker(self) -> Chunker:
        """How the bank cuts documents (after :meth:`open`)."""
        if self._chunker is None:
            raise MemoryBankError(f"memory bank {self._bank_id!r} is not open: await bank.open()")
        return self._chunker

    async def count_tokens(self, text: str) -> int:
        """Word pieces of the bank's embedding model in ``text`` (special tokens excluded)."""
        await self.open()
        return await self.embedder.count_tokens(text)

    async def chunk(self, text: str) -> list[Chunk]:
        """The chunks the bank would store for ``text`` (nothing is stored)."""
        _, chunker = await self._ready()
        return await asyncio.to_thread(chunker.split, text)

    async def count(self) -> int:
        """How many chunks the bank holds."""
        collection, _ = await self._ready()
        return await self.store.client.call(collection.count)

    # --- ingestion ----------------------------------------------------------------------

    async def add_text(
        self,
        text: str,
        *,
        document_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        mime_type: str = "text/plain",
    ) -> DocumentInfo:
        """Add (or replace) one document given as text; HTML is reduced to its text.

        Without ``document_id`` the id is a hash of the text, so adding the same text twice
        keeps one copy. Adding a document id again replaces it (unchanged text and metadata
        are not re-embedded).
        """
        doc_id = document_id or _hash_id(text)
        name = source or doc_id
        plain = text_of(text, mime_type, source=name)
        item = _Input(doc_id, name, _base_type(mime_type), plain, _user_metadata(metadata, name))
        return (await self._ingest([item]))[0]

    async def add_documents(self, documents: Sequence[Document]) -> list[DocumentInfo]:
        """Add documents (``agentic.types.Document``), embedded together in batches.

        A document's id is ``metadata["document_id"]``, else its name, else a hash of its
        text; the rest of its metadata is kept with every chunk.
        """
        items = []
        for doc in documents:
            meta = dict(doc.metadata)
            doc_id = str(meta.pop("document_id", None) or doc.name or _hash_id(doc.content))
            name = doc.name or doc_id
            text = text_of(doc.content, doc.mime_type, source=name)
            mime = _base_type(doc.mime_type)
            items.append(_Input(doc_id, name, mime, text, _user_metadata(meta, name)))
        return await self._ingest(items)

    async def add_file(
        self,
        path: str | Path,
        *,
        document_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> DocumentInfo:
        """Add a text, Markdown, HTML or PDF file; its id defaults to its path."""
        loaded = await asyncio.to_thread(read_file, path, max_bytes=self.max_document_bytes)
        return (await self._add_loaded([loaded], [document_id], metadata))[0]

    async def add_files(
        self,
        paths: Sequence[str | Path],
        *,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> list[DocumentInfo]:
        """Add several files, embedded together in batches; each one's id is its path.

        Every file is read and checked before anything is stored: one bad file stores none.
        """
        loaded = await asyncio.to_thread(
            lambda: [read_file(p, max_bytes=self.max_document_bytes) for p in paths]
        )
        return await self._add_loaded(loaded, [None] * len(loaded), metadata)

    async def add_url(
        self,
        url: str,
        *,
        document_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> DocumentInfo:
        """Download and add a page or file (http/https); its id defaults to the URL."""
        loaded = await fetch_url(url, max_bytes=self.max_document_bytes, client=self._http)
        return (await self._add_loaded([loaded], [document_id], metadata))[0]

    async def _add_loaded(
        self,
        loaded: Sequence[LoadedDocument],
        document_ids: Sequence[str | None],
        metadata: Mapping[str, MetadataValue] | None,
    ) -> list[DocumentInfo]:
        items = [
            _Input(
                doc_id or doc.source,
                doc.source,
                doc.mime_type,
                doc.text,
                _user_metadata(metadata, doc.source),
                title=doc.title,
            )
            for doc, doc_id in zip(loaded, document_ids, strict=True)
        ]
        return await self._ingest(items)

    async def _ingest(self, items: Sequence[_Input]) -> list[DocumentInfo]:
        """Chunk, embed and store ``items``; unchanged documents are left alone."""
        collection, chunker = await self._ready()
        _check_unique(items)
        heads = await self._heads([i.document_id for i in items])
        chunking = f"{chunker.chunk_tokens}/{chunker.overlap_tokens}"
        todo = [i for i in items if not _unchanged(heads.get(i.document_id), i, chunking)]
        if not todo:
            return [_info(heads[i.document_id]) for i in items]
        pieces = await asyncio.to_thread(_split_all, chunker, todo)
        before = await remote_stamp(self.store.client, self._bank_id)
        now = datetime.now(UTC).isoformat()
        records = [
            (
                f"{item.document_id}#{c.position}",
                c.text,
                _chunk_metadata(item, c, chunks, chunking, now, heads.get(item.document_id)),
            )
            for item, chunks in zip(todo, pieces, strict=True)
            for c in chunks
        ]
        await self._store_records(collection, records)
        stale = [
            f"{item.document_id}#{p}"
            for item, chunks in zip(todo, pieces, strict=True)
            for p in range(len(chunks), int(heads.get(item.document_id, {}).get("chunk_count", 0)))
        ]
        if stale:
            await self.store.client.call(collection.delete, ids=stale)
        await self._record_write(collection, before, [(r[0], r[1]) for r in records], stale)
        fresh = await self._heads([i.document_id for i in todo])
        return [_info({**heads, **fresh}[i.document_id]) for i in items]

    async def _record_write(
        self,
        collection: Collection,
        before: str,
        upserts: Sequence[tuple[str, str]],
        deletes: Sequence[str],
    ) -> None:
        """Stamp the collection and bring the keyword index along."""
        embedder = self.embedder
        model = {MODEL_KEY: embedder.name, DIMENSION_KEY: embedder.dimension}
        index = self.store.keyword_index(self._bank_id)
        await index.record_write(self.store.client, collection, before, upserts, deletes, model)

    async def _store_records(
        self,
        collection: Collection,
        records: Sequence[tuple[str, str, dict[str, MetadataValue | None]]],
    ) -> None:
        """Embed in batches and upsert each batch while the next one is embedded."""
        client = self.store.client
        pending: asyncio.Future[None] | None = None
        try:
            for lo in range(0, len(records), _UPSERT_BATCH):
                batch = records[lo : lo + _UPSERT_BATCH]
                vectors = await self.embedder.embed([text for _, text, _ in batch])
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(
                    client.call(
                        collection.upsert,
                        ids=[r[0] for r in batch],
                        embeddings=vectors,
                        documents=[r[1] for r in batch],
                        metadatas=[r[2] for r in batch],
                    )
                )
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])  # a thread cannot be stopped: let it land

    async def _heads(self, document_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The first chunk's metadata of each of ``document_ids`` that the bank holds."""
        collection, _ = await self._ready()
        if not document_ids:
            return {}
        where = {"$and": [{"position": 0}, {"document_id": {"$in": list(document_ids)}}]}
        got = await self.store.client.call(collection.get, where=where, include=["metadatas"])
        return {str(m["document_id"]): dict(m) for m in got["metadatas"] or []}

    # --- documents ----------------------------------------------------------------------

    async def list_documents(self) -> list[DocumentInfo]:
        """Every document in the bank, by id."""
        collection, _ = await self._ready()
        got = await self.store.client.call(
            collection.get, where={"position": 0}, include=["metadatas"]
        )
        infos = [_info(dict(m)) for m in got["metadatas"] or []]
        return sorted(infos, key=lambda d: d.document_id)

    async def get_document(self, document_id: str) -> DocumentInfo:
        """One document's record; DocumentNotFoundError when the bank has no such id."""
        head = (await self._heads([document_id])).get(document_id)
        if head is None:
            raise DocumentNotFoundError(self._bank_id, document_id)
        return _info(head)

    async def delete_document(self, document_id: str) -> int:
        """Delete a document's chunks and return how many there were.

        DocumentNotFoundError when the bank has no such document.
        """
        collection, _ = await self._ready()
        client = self.store.client
        got = await client.call(collection.get, where={"document_id": document_id}, include=[])
        if not got["ids"]:
            raise DocumentNotFoundError(self._bank_id, document_id)
        before = await remote_stamp(client, self._bank_id)
        await client.call(collection.delete, ids=got["ids"])
        await self._record_write(collection, before, [], got["ids"])
        return len(got["ids"])

    async def reindex(self) -> None:
        """Rebuild the bank's keyword index from its collection.

        Never needed for writes made through banks (they keep it in sync, and an index that
        missed a write rebuilds itself); call it after writing to the collection directly.
        """
        collection, _ = await self._ready()
        index = self.store.keyword_index(self._bank_id)
        await index.ensure_fresh(self.store.client, collection.name, force=True)

    # --- queries ------------------------------------------------------------------------

    async def query(
        self,
        query: str,
        *,
        limit: int = 5,
        where: Mapping[str, Any] | None = None,
        min_score: float | None = None,
        mode: SearchMode | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks that best match ``query``, best first.

        ``vector``: cosine similarity of the embeddings, the score in [-1, 1] (1: same
        meaning). ``keyword``: BM25 on the words, for exact names, codes and numbers.
        ``hybrid``: both lists fused by reciprocal rank, the score in (0, 1] (1: first in
        both). ``min_score`` drops vector matches below that similarity (keyword matches
        are exact, so they stay). ``where`` filters on metadata in Chroma's syntax
        (``{"kind": "parts"}``, ``{"year": {"$gte": 2020}}``; several keys mean all of them).
        """
        mode = mode or self.mode
        _check_mode(mode)
        if not query.strip():
            raise MemoryBankError("the query is empty: say what to look for")
        if limit < 1:
            raise MemoryBankError(f"limit must be at least 1 (got {limit})")
        collection, _ = await self._ready()
        search = _search.Search(
            self.store.client,
            collection,
            self.embedder,
            _where(where),
            self.store.keyword_index(self._bank_id),
        )
        threshold = self.min_score if min_score is None else min_score
        if mode == "vector":
            hits = await search.vector(query, limit, threshold)
        elif mode == "keyword":
            hits = await search.keyword(query, limit)
        else:
            hits = await search.hybrid(query, limit, threshold)
        return [self._chunk(h) for h in hits]

    async def retrieve(self, query: str, *, limit: int) -> list[RetrievedChunk]:
        """The agent's retrieval: :meth:`query` with the bank's mode and threshold; a blank
        query (an image-only message) finds nothing."""
        if not query.strip():
            return []
        return await self.query(query, limit=limit)

    def _chunk(self, hit: _search.Hit) -> RetrievedChunk:
        meta = hit.metadata
        public = {k: v for k, v in meta.items() if k not in _RESERVED or k in _PUBLIC}
        return RetrievedChunk(
            chunk_id=hit.chunk_id,
            bank_id=self._bank_id,
            text=hit.text,
            score=hit.score,
            document_id=str(meta.get("document_id", "")) or None,
            metadata=public,
        )


# --- helpers ------------------------------------------------------------------------------


def _check_bank_id(bank_id: str) -> None:
    if not _BANK_ID.fullmatch(bank_id) or ".." in bank_id:
        raise ConfigError(
            f"invalid memory bank id {bank_id!r}: use 3-512 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )


def _check_mode(mode: str) -> None:
    if mode not in get_args(SearchMode):
        raise ConfigError(
            f"search mode must be one of {', '.join(get_args(SearchMode))} (got {mode!r})"
        )


def _check_model(bank_id: str, meta: Mapping[str, Any], embedder: Embedder) -> None:
    """The bank's recorded model must be the one we embed with."""
    model, dim = meta.get(MODEL_KEY), meta.get(DIMENSION_KEY)
    if model is None:
        raise EmbeddingMismatchError(
            f"Chroma collection {bank_id!r} was not made by a memory bank (no embedding model "
            "recorded); use another bank id"
        )
    if model != embedder.name or dim != embedder.dimension:
        raise EmbeddingMismatchError(
            f"memory bank {bank_id!r} was built with embedding model {model!r} ({dim} "
            f"dimensions) but is opened with {embedder.name!r} ({embedder.dimension} "
            f"dimensions). Open it with model={model!r}, or use a new bank for the new model"
        )


def _check_unique(items: Sequence[_Input]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.document_id in seen:
            raise DocumentError(
                f"document id {item.document_id!r} is given twice in one call",
                source=item.source,
            )
        seen.add(item.document_id)


def _hash_id(text: str) -> str:
    return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _base_type(mime_type: str) -> str:
    return mime_type.split(";")[0].strip().lower() or "text/plain"


def _user_metadata(metadata: Mapping[str, Any] | None, source: str) -> dict[str, MetadataValue]:
    """The caller's metadata, checked: scalar values only, no reserved keys."""
    out: dict[str, MetadataValue] = {}
    for key, value in (metadata or {}).items():
        if key in _RESERVED:
            raise DocumentError(
                f"{source}: metadata key {key!r} is reserved for the bank's own bookkeeping "
                f"({', '.join(sorted(_RESERVED))}); rename it",
                source=source,
            )
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise DocumentError(
                f"{source}: metadata {key!r} must map a string to a str, int, float or bool "
                f"(got {type(value).__name__})",
                source=source,
            )
        out[key] = value
    return out


def _unchanged(head: Mapping[str, Any] | None, item: _Input, chunking: str) -> bool:
    if head is None or head.get("content_hash") != item.content_hash:
        return False
    if head.get("chunking") != chunking or head.get("source") != item.source:
        return False
    old = {k: v for k, v in head.items() if k not in _RESERVED}
    return old == item.metadata


def _split_all(chunker: Chunker, items: Sequence[_Input]) -> list[list[Chunk]]:
    out = []
    for item in items:
        chunks = chunker.split(item.text)
        if not chunks:
            raise DocumentError(f"{item.source} has no text to ingest", source=item.source)
        out.append(chunks)
    return out


def _chunk_metadata(
    item: _Input,
    chunk: Chunk,
    chunks: Sequence[Chunk],
    chunking: str,
    added_at: str,
    old: Mapping[str, Any] | None,
) -> dict[str, MetadataValue | None]:
    """A chunk's metadata; keys the replaced version had and this one lacks are set to None,
    which is how an upsert removes them (it merges metadata otherwise)."""
    meta: dict[str, MetadataValue | None] = dict.fromkeys(old or ())
    meta |= {
        **item.metadata,
        "document_id": item.document_id,
        "source": item.source,
        "mime_type": item.mime_type,
        "position": chunk.position,
        "token_count": chunk.token_count,
        "chunk_count": len(chunks),
        "document_tokens": sum(c.token_count for c in chunks),
        "content_hash": item.content_hash,
        "chunking": chunking,
        "added_at": added_at,
    }
    if item.title:
        meta["title"] = item.title
    return meta


def _info(meta: Mapping[str, Any]) -> DocumentInfo:
    return DocumentInfo(
        document_id=str(meta["document_id"]),
        source=str(meta["source"]),
        mime_type=str(meta["mime_type"]),
        title=meta.get("title"),
        chunk_count=int(meta["chunk_count"]),
        token_count=int(meta["document_tokens"]),
        content_hash=str(meta["content_hash"]),
        added_at=datetime.fromisoformat(str(meta["added_at"])),
        metadata={k: v for k, v in meta.items() if k not in _RESERVED},
    )


def _where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Chroma's filter; several plain keys become their ``$and``."""
    if not where:
        return None
    plain = [k for k in where if not k.startswith("$")]
    if len(where) > 1 and len(plain) == len(where):
        return {"$and": [{k: v} for k, v in where.items()]}
    return dict(where)
