"""``knowledge_search``: the agent's memory banks as a tool the model calls when it wants to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Final

from agentic.errors import ConfigError
from agentic.llama.tokens import escape_special_tokens
from agentic.memory.base import RetrievedChunk, Retriever
from agentic.tools._http import query_argument
from agentic.tools.base import ToolContext, check_limits
from agentic.types import ToolDefinition

__all__ = ["KnowledgeSearch"]

DESCRIPTION: Final = (
    "Search the knowledge base (the user's documents) for passages relevant to a question. "
    "Returns the best passages with their document and a relevance score."
)
_MAX_QUERY_CHARS: Final = 1000


class KnowledgeSearch:
    """A tool over one or more banks (any :class:`~agentic.memory.Retriever`): the model
    passes a ``query``, gets the ``limit`` best chunks of all banks as compact JSON.

    Retrieved text is data from outside: the tool executor escapes special tokens in it, and
    the results are labelled as passages, not instructions. A bank that fails raises, so the
    executor reports the error to the model.
    """

    def __init__(
        self,
        banks: Sequence[Retriever],
        *,
        limit: int = 5,
        name: str = "knowledge_search",
        description: str = DESCRIPTION,
        timeout: float | None = 30.0,
    ) -> None:
        if not banks:
            raise ConfigError("KnowledgeSearch needs at least one memory bank")
        if limit < 1:
            raise ConfigError("KnowledgeSearch: limit must be at least 1")
        check_limits(name, timeout, None)
        self.banks = tuple(banks)
        self.limit = limit
        self._timeout = timeout
        self._definition = ToolDefinition.from_json_schema(
            name,
            {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What to look for, as a question or keywords",
                    }
                },
                "required": ["query"],
            },
            description,
        )

    @property
    def definition(self) -> ToolDefinition:
        return self._definition

    @property
    def timeout(self) -> float | None:
        return self._timeout

    async def call(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> str:
        """The best chunks of every bank for the call's ``query``, as JSON."""
        query = query_argument(self._definition.name, arguments, max_chars=_MAX_QUERY_CHARS)
        found = await asyncio.gather(*(b.retrieve(query, limit=self.limit) for b in self.banks))
        chunks = sorted((c for group in found for c in group), key=lambda c: -c.score)
        return _render_results(query, chunks[: self.limit])


def _render_results(query: str, chunks: Sequence[RetrievedChunk]) -> str:
    """Results as one compact JSON object: the query and each passage with its source.

    Special tokens in passages are escaped here, before encoding, so that the executor's own
    escaping finds nothing to change and the JSON stays valid.
    """
    results = [
        {
            "bank": c.bank_id,
            "document": c.document_id,
            "score": round(c.score, 3),
            "text": escape_special_tokens(c.text),
        }
        for c in chunks
    ]
    body: dict[str, Any] = {"query": query, "results": results}
    if not results:
        body["note"] = "nothing in the knowledge base matches; try other words"
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
