"""The three ways a bank answers a query: vector, keyword (BM25) and hybrid (both, fused)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from agentic.memory._chroma import ChromaClient
from agentic.memory._keyword import BM25, fuse, query_terms, regex_for
from agentic.memory.embedding import Embedder

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["Hit", "Search"]

MAX_POSTINGS: Final = 2000
"""A term in more chunks than this says little about any of them and is not searched."""


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
        at least one term."""
        terms = query_terms(query)
        if not terms:
            return []
        total = await self.client.call(self.collection.count)
        postings = await asyncio.gather(*(self._postings(t) for t in terms))
        df = {
            t: len(ids) for t, ids in zip(terms, postings, strict=True) if len(ids) <= MAX_POSTINGS
        }
        if not df:
            return []
        bm25 = BM25(n=total, df=df)
        presence: dict[str, float] = {}
        for term, ids in zip(terms, postings, strict=True):
            if term in df:
                for chunk_id in ids:
                    presence[chunk_id] = presence.get(chunk_id, 0.0) + bm25.idf(term)
        if not presence:
            return []
        shortlist = sorted(presence, key=lambda c: -presence[c])[: max(4 * limit, 40)]
        got = await self.client.call(
            self.collection.get, ids=shortlist, include=["documents", "metadatas"]
        )
        docs = [d or "" for d in got["documents"] or []]
        metas = [dict(m or {}) for m in got["metadatas"] or []]
        scores = bm25.scores(docs)
        hits = [Hit(i, d, s, m) for i, d, s, m in zip(got["ids"], docs, scores, metas, strict=True)]
        return sorted((h for h in hits if h.score > 0), key=lambda h: -h.score)[:limit]

    async def _postings(self, term: str) -> list[str]:
        got = await self.client.call(
            self.collection.get,
            where=self.where,
            where_document={"$regex": regex_for(term)},
            limit=MAX_POSTINGS + 1,
            include=[],
        )
        return list(got["ids"])

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
