"""Memory banks: retrieval of context for the agent's turns."""

from __future__ import annotations

from agentic.memory.base import RetrievedChunk, Retriever

__all__ = ["RetrievedChunk", "Retriever"]
