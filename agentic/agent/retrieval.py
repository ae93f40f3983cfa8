"""Retrieval for a turn: the agent's memory banks, the turn's documents, one token budget.

Short documents attached to a turn go into the prompt whole. Long ones are chunked into the
session's own document bank (created on first use, deleted with the session) and retrieved
from with the user's message like any bank, so a 300-page PDF never blows the context.
Retrieved chunks are kept best-first while they fit ``retrieval_token_budget`` (counted with
the Llama tokenizer).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic.errors import MissingDependencyError
from agentic.llama.tokenizer import get_tokenizer
from agentic.memory.base import RetrievedChunk, Retriever
from agentic.types import Document

if TYPE_CHECKING:
    from agentic.agent.core import AgentCore
    from agentic.config import Settings
    from agentic.memory.bank import MemoryBank
    from agentic.memory.store import MemoryStore

__all__ = ["DocumentBanks"]


def count_tokens(text: str) -> int:
    """Llama 3 tokens in ``text`` (the local tokenizer: no round trip to the server)."""
    return get_tokenizer().count(text)


def split_documents(
    documents: Sequence[Document], inline_tokens: int
) -> tuple[list[Document], list[Document]]:
    """(documents short enough to go inline, documents to chunk into the session's bank)."""
    inline: list[Document] = []
    long: list[Document] = []
    for doc in documents:
        # a token is at least one character: a cheap bound before counting exactly
        short = len(doc.content) <= inline_tokens or count_tokens(doc.content) <= inline_tokens
        (inline if short else long).append(doc)
    return inline, long


class DocumentBanks:
    """The per-session banks that hold the long documents attached to a session's turns.

    They live in the store of the agent's first :class:`~agentic.memory.MemoryBank` (same
    Chroma, same embedding model), else in a :class:`~agentic.memory.MemoryStore` under the
    agent's home directory. Nothing is opened until a long document arrives.
    """

    def __init__(self, settings: Settings, retrievers: Sequence[Retriever] = ()) -> None:
        self._settings = settings
        self._retrievers = tuple(retrievers)
        self._store: MemoryStore | None = None
        self._owns_store = False
        self._lock = asyncio.Lock()

    @staticmethod
    def bank_id(session_id: str) -> str:
        """The session's bank name: fixed length and Chroma-safe for any session id."""
        return "session-" + hashlib.sha256(session_id.encode()).hexdigest()[:24]

    def _memory_store(self) -> MemoryStore:
        if self._store is None:
            try:
                from agentic.memory.bank import MemoryBank
                from agentic.memory.store import MemoryStore
            except ImportError as exc:  # chromadb / sentence-transformers missing
                raise MissingDependencyError(
                    "chromadb and sentence-transformers", "memory"
                ) from exc
            shared = next((r.store for r in self._retrievers if isinstance(r, MemoryBank)), None)
            self._owns_store = shared is None
            self._store = shared or MemoryStore(settings=self._settings)
        return self._store

    def check(self, documents: Sequence[Document], inline_tokens: int) -> None:
        """Fail before the turn starts if a long document could not be banked here."""
        if split_documents(documents, inline_tokens)[1]:
            self._memory_store()

    def bank(self, session_id: str) -> MemoryBank:
        """The session's document bank (nothing is created until documents are added)."""
        return self._memory_store().bank(self.bank_id(session_id))

    async def add(self, session_id: str, documents: Sequence[Document]) -> MemoryBank:
        """Chunk and embed ``documents`` into the session's bank (again: no duplicates)."""
        async with self._lock:
            bank = self.bank(session_id)
        await bank.add_documents(documents)
        return bank

    async def drop(self, session_id: str) -> None:
        """Delete the session's bank, if it has one."""
        store = self._memory_store()
        if self.bank_id(session_id) in await store.list_banks():
            await store.delete_bank(self.bank_id(session_id))

    async def aclose(self) -> None:
        """Close the store this object opened (a shared one belongs to its bank)."""
        if self._store is not None and self._owns_store:
            await self._store.aclose()
        self._store = None


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What one turn's retrieval found and kept."""

    chunks: list[RetrievedChunk]
    """Kept chunks, best first, within the token budget."""
    inline: list[Document]
    banked: list[Document]
    dropped: int = 0
    """Chunks found but left out: over the token budget."""
    bank_ids: list[str] = field(default_factory=list)


async def retrieve_for_turn(
    core: AgentCore,
    banks: DocumentBanks,
    session_id: str,
    query: str,
    documents: Sequence[Document],
    *,
    session_bank: bool = False,
) -> Retrieval:
    """Query every bank (and the session's document bank) and keep what fits the budget.

    ``session_bank``: the session already has a document bank (long documents of earlier
    turns stay searchable for the rest of the session).
    """
    config = core.config
    inline, long = split_documents(documents, config.inline_document_tokens)
    retrievers: list[Any] = list(core.retrievers)
    if long:
        retrievers.append(await banks.add(session_id, long))
    elif session_bank:
        retrievers.append(banks.bank(session_id))
    limit = config.retrieval_limit
    found = await asyncio.gather(*(r.retrieve(query, limit=limit) for r in retrievers))
    ranked = sorted((c for group in found for c in group), key=lambda c: c.score, reverse=True)
    kept, dropped = _within_budget(ranked[:limit], config.retrieval_token_budget)
    return Retrieval(
        chunks=kept,
        inline=inline,
        banked=long,
        dropped=dropped + max(len(ranked) - limit, 0),
        bank_ids=[r.bank_id for r in retrievers],
    )


def _within_budget(
    chunks: Sequence[RetrievedChunk], budget: int
) -> tuple[list[RetrievedChunk], int]:
    """The best chunks whose text fits ``budget`` tokens together, and how many did not."""
    kept: list[RetrievedChunk] = []
    used = 0
    for chunk in chunks:
        cost = count_tokens(chunk.text)
        if used + cost <= budget:
            kept.append(chunk)
            used += cost
    return kept, len(chunks) - len(kept)
