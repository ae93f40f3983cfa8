"""MemoryStore: where memory banks live, and the embedding model they share."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from agentic.config import Settings
from agentic.errors import ConfigError, MemoryBankError
from agentic.memory._chroma import ChromaClient, parse_url
from agentic.memory._keyword_index import KeywordIndex
from agentic.memory.embedding import Embedder, _load_sync

if TYPE_CHECKING:
    from agentic.memory.bank import MemoryBank

__all__ = ["MemoryStore"]

MODEL_KEY = "agentic_embedding_model"
"""Collection metadata naming the embedding model a bank was built with."""


class MemoryStore:
    """One Chroma (a server at ``url``, embedded in the directory ``path``, or in-process
    when ``ephemeral``) and one embedding model, shared by every bank opened from it.

    Unset, the location comes from :class:`~agentic.config.Settings`: ``chroma_url`` when
    set, else ``<home>/memory``; the model from ``embedding_model`` / ``embedding_device``.
    Nothing is opened until first use (or :meth:`open`); the model is loaded once per
    process however many stores and banks use it. An embedded store keeps Chroma's files in
    ``<path>/chroma`` and the banks' keyword indexes in ``<path>/keyword``; with a server,
    the keyword indexes (caches, rebuilt from the server when stale) live under
    ``<home>/memory/servers``.
    """

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        ephemeral: bool = False,
        model: str | None = None,
        device: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if sum((path is not None, url is not None, ephemeral)) > 1:
            raise ConfigError("give a memory store one of path, url or ephemeral=True")
        self._settings = settings or Settings()
        self._url = url if url is not None else self._default_url(path, ephemeral)
        self._path = Path(path).expanduser() if path is not None else None
        self._ephemeral = ephemeral
        self.model = model or self._settings.embedding_model
        self.device = device if device is not None else self._settings.embedding_device
        self._client: ChromaClient | None = None
        self._embedder: Embedder | None = None
        self._indexes: dict[str, KeywordIndex] = {}
        self._lock = threading.Lock()
        self.generation = 0
        """Bumped by every :meth:`aclose`: banks reopen their collection when it changes."""

    def _default_url(self, path: str | Path | None, ephemeral: bool) -> str | None:
        return None if path is not None or ephemeral else self._settings.chroma_url

    def __repr__(self) -> str:
        return f"MemoryStore({self.location!r}, model={self.model!r})"

    @property
    def location(self) -> str:
        """Where the banks are: the server URL, the directory, or ``memory``."""
        if self._url is not None:
            return self._url
        if self._ephemeral:
            return "memory"
        return str(self._directory())

    def _directory(self) -> Path:
        return self._path or self._settings.home.expanduser() / "memory"

    def keyword_index(self, bank_id: str) -> KeywordIndex:
        """The keyword index of a bank (one per bank id and store)."""
        with self._lock:
            index = self._indexes.get(bank_id)
            if index is None:
                index = self._indexes[bank_id] = KeywordIndex(self._index_path(bank_id))
            return index

    def _index_path(self, bank_id: str) -> Path | None:
        if self._ephemeral:
            return None
        if self._url is not None:
            host, port, _ = parse_url(self._url)
            root = self._settings.home.expanduser() / "memory" / "servers" / f"{host}-{port}"
            return root / f"{bank_id}.sqlite3"
        return self._directory() / "keyword" / f"{bank_id}.sqlite3"

    async def open(self) -> Self:
        """Connect to Chroma, then load the embedding model (both off the event loop).

        An unreachable server fails here, before the model is loaded.
        """
        if self._client is None or self._embedder is None:
            await asyncio.to_thread(self._open_sync)
        return self

    def _open_sync(self) -> None:
        with self._lock:
            if self._client is None:
                path = None
                if self._url is None and not self._ephemeral:
                    path = self._directory() / "chroma"
                self._client = ChromaClient.connect(path=path, url=self._url)
            if self._embedder is None:
                self._embedder = _load_sync(self.model, self.device)

    @property
    def client(self) -> ChromaClient:
        """The Chroma client (after :meth:`open`)."""
        if self._client is None:
            raise MemoryBankError("the memory store is not open: await store.open() first")
        return self._client

    @property
    def embedder(self) -> Embedder:
        """The embedding model (after :meth:`open`)."""
        if self._embedder is None:
            raise MemoryBankError("the memory store is not open: await store.open() first")
        return self._embedder

    def bank(self, bank_id: str, **options: Any) -> MemoryBank:
        """The bank ``bank_id`` in this store (created on first use); ``options`` as for
        :class:`~agentic.memory.MemoryBank`."""
        from agentic.memory.bank import MemoryBank

        return MemoryBank(bank_id, store=self, **options)

    async def list_banks(self) -> list[str]:
        """Ids of the memory banks in this store, sorted."""
        await self.open()
        client = self.client
        collections = await client.call(client.client.list_collections)
        return sorted(c.name for c in collections if MODEL_KEY in (c.metadata or {}))

    async def delete_bank(self, bank_id: str) -> None:
        """Delete a bank and everything in it; MemoryBankError when there is none."""
        if bank_id not in await self.list_banks():
            raise MemoryBankError(f"no memory bank {bank_id!r} in {self.location}")
        await self.client.call(self.client.client.delete_collection, bank_id)
        await asyncio.to_thread(self.keyword_index(bank_id).drop)

    async def aclose(self) -> None:
        """Release the Chroma client; embedded banks stay on disk (in-process ones go).

        The store can be used again afterwards: it reconnects on next use.
        """
        client, self._client = self._client, None
        self.generation += 1
        with self._lock:
            indexes, self._indexes = list(self._indexes.values()), {}
        for index in indexes:
            await asyncio.to_thread(index.close)
        if client is not None:
            await asyncio.to_thread(client.close)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
