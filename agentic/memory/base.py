"""The retrieval interface the turn's memory step uses; memory banks implement it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RetrievedChunk", "Retriever"]


class RetrievedChunk(BaseModel):
    """One piece of retrieved text with where it came from and how well it matched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    bank_id: str
    text: str
    score: float
    document_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Something the agent can query for context: a memory bank, a search index."""

    @property
    def bank_id(self) -> str: ...

    async def retrieve(self, query: str, *, limit: int) -> list[RetrievedChunk]: ...
