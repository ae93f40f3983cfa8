"""The three ways a bank answers a query: vector, keyword (BM25) and hybrid (both, fused)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from agentic.memory._chroma import ChromaClient
from agentic.memory._keyword import fuse, query_terms
from agentic.memory._keyword_index import KeywordIndex
from agentic.memory.embedding import Embedder

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["Hit", "Search"]

FILTERED_DEPTH: Final = 500
"""Keyword matches read from the index when a metadata filter will drop some of them."""


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    text: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Search:
    """One query's view of a bank's collection."""

    client: ChromaClient
    collection: Collection
    embedder: Embedder
    where: dict[str, Any] | None
    index: KeywordIndex

    async def vector(self, query: str, limit: int, min_score: float | None) -> list[Hit]:
        """Nearest chunks by cosine similarity (the score), at least ``min_score``."""
        vectors = await self.embedder.embed([query])
        got = await self.client.call(
            self.collection.query,
            query_embeddings=vectors,
            n_results=limit,
            where=self.where,
            include=["documents", "metadatas", "distances"],
        )
        ids, docs = got["ids"][0], (got["documents"] or [[]])[0]
        metas, dists = (got["metadatas"] or [[]])[0], (got["distances"] or [[]])[0]
        hits = [
            Hit(i, d or "", 1.0 - float(dist), dict(m or {}))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]
        return [h for h in hits if min_score is None or h.score >= min_score]

    async def keyword(self, query: str, limit: int) -> list[Hit]:
        """Chunks ranked by BM25 for the query's terms (the score); only chunks that contain
        at least one term. Under a ``where`` filter, from the best ``FILTERED_DEPTH``."""
        terms = query_terms(query)
        if not terms:
            return []
        await self.index.ensure_fresh(self.client, self.collection.name)
        depth = FILTERED_DEPTH if self.where else limit
        ranked = await asyncio.to_thread(self.index.search, terms, depth)
        if not ranked:
            return []
        got = await self.client.call(
            self.collection.get,
            ids=[chunk_id for chunk_id, _ in ranked],
            where=self.where,
            include=["documents", "metadatas"],
        )
        scores = dict(ranked)
        docs = [d or "" for d in got["documents"] or []]
        metas = [dict(m or {}) for m in got["metadatas"] or []]
        hits = [Hit(i, d, scores[i], m) for i, d, m in zip(got["ids"], docs, metas, strict=True)]
        return sorted(hits, key=lambda h: -h.score)[:limit]

    async def hybrid(self, query: str, limit: int, min_score: float | None) -> list[Hit]:
        """Vector and keyword results fused by reciprocal rank; the fused score in (0, 1]."""
        depth = max(4 * limit, 20)
        by_vector, by_keyword = await asyncio.gather(
            self.vector(query, depth, min_score), self.keyword(query, depth)
        )
        fused = fuse([_ids(by_vector), _ids(by_keyword)])
        hits = {h.chunk_id: h for h in (*by_keyword, *by_vector)}
        best = sorted(fused, key=lambda c: -fused[c])[:limit]
        return [Hit(c, hits[c].text, fused[c], hits[c].metadata) for c in best]


def _ids(hits: Sequence[Hit]) -> list[str]:
    return [h.chunk_id for h in hits]
