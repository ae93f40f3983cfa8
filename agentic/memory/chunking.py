"""Chunking by the embedding model's own tokenizer.

An embedding model truncates its input (all-MiniLM-L6-v2 at 256 word pieces), silently
dropping the rest of a longer chunk. Chunks here are measured in the model's word pieces and
never exceed what it reads. They end before a heading, else at a paragraph, sentence or line
break in the second half of the chunk, else between words; each chunk repeats the tail of the
one before it (the overlap), starting at a sentence where possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from agentic.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["DEFAULT_CHUNK_TOKENS", "DEFAULT_OVERLAP_TOKENS", "Chunk", "Chunker"]

DEFAULT_CHUNK_TOKENS: Final = 192
"""Target chunk size; capped at the model's limit (254 word pieces for MiniLM)."""
DEFAULT_OVERLAP_TOKENS: Final = 32

# How good a place to cut before a token is: higher is better.
_GLUED: Final = -1  # no space before it: inside a word or a run of punctuation
_WORD: Final = 0
_LINE: Final = 1
_SENTENCE: Final = 2
_PARAGRAPH: Final = 3
_SECTION: Final = 4  # a Markdown heading starts on the next line
_SENTENCE_END: Final = frozenset(".!?…。！？")
_CLOSERS: Final = frozenset("\"'”’)]»")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, small enough for the embedding model to read whole."""

    text: str
    position: int
    """Index of the chunk in its document, from 0."""
    token_count: int
    """Word pieces of the model's tokenizer, special tokens not included."""
    start: int
    """Offset of the first character in the document's text."""
    end: int
    """Offset just past the last character."""


class Chunker:
    """Splits text into chunks of at most ``chunk_tokens`` word pieces of ``tokenizer``.

    ``max_tokens`` is the model's hard limit; ``chunk_tokens`` (default
    :data:`DEFAULT_CHUNK_TOKENS`) must not exceed it, and ``overlap_tokens`` must stay under
    half of ``chunk_tokens``. The tokenizer must not truncate (a private copy, see
    :class:`~agentic.memory.Embedder`).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_tokens: int,
        chunk_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    ) -> None:
        size = min(DEFAULT_CHUNK_TOKENS, max_tokens) if chunk_tokens is None else chunk_tokens
        if not 8 <= size <= max_tokens:
            raise ConfigError(
                f"chunk_tokens must be between 8 and the embedding model's limit of "
                f"{max_tokens} word pieces (got {size})"
            )
        if not 0 <= overlap_tokens < size // 2:
            raise ConfigError(
                f"overlap_tokens must be at least 0 and under half of chunk_tokens ({size}); "
                f"got {overlap_tokens}"
            )
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.chunk_tokens = size
        self.overlap_tokens = overlap_tokens

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``, special tokens not included."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str) -> list[Chunk]:
        """The chunks of ``text`` in order; empty when it has no tokens (blank text)."""
        offsets = list(self._tokenizer.encode(text, add_special_tokens=False).offsets)
        n = len(offsets)
        chunks: list[Chunk] = []
        if n == 0:
            return chunks
        strength = _strengths(text, offsets)
        start = 0
        while True:
            end = n if n - start <= self.chunk_tokens else self._cut(strength, start)
            chunk, end = self._fit(text, offsets, start, end, len(chunks))
            chunks.append(chunk)
            if end >= n:
                return chunks
            start = self._next_start(strength, start, end)

    def _cut(self, strength: list[int], start: int) -> int:
        """Where the chunk from ``start`` ends: the best break in its second half."""
        hi = start + self.chunk_tokens
        best, best_strength = hi, _GLUED
        for i in range(start + max(1, self.chunk_tokens // 2), hi + 1):
            if strength[i] >= best_strength:
                best, best_strength = i, strength[i]
        return best if best_strength > _GLUED else hi

    def _fit(
        self, text: str, offsets: list[tuple[int, int]], start: int, end: int, position: int
    ) -> tuple[Chunk, int]:
        """The chunk of tokens ``start:end``, shortened if its text re-tokenizes too long.

        A cut inside a word can make the pieces on either side tokenize into more pieces
        than they had in context; the count that matters is the chunk's own.
        """
        while True:
            lo, hi = offsets[start][0], offsets[end - 1][1]
            count = self.count_tokens(text[lo:hi])
            if count <= self.max_tokens or end - start == 1:
                chunk = Chunk(
                    text=text[lo:hi], position=position, token_count=count, start=lo, end=hi
                )
                return chunk, end
            end = start + max(1, end - start - (count - self.max_tokens))

    def _next_start(self, strength: list[int], start: int, end: int) -> int:
        """Where the next chunk starts: ``overlap_tokens`` back, at a sentence if one is there."""
        if self.overlap_tokens == 0:
            return end
        lo = max(start + 1, end - self.overlap_tokens)
        window = range(lo, end)
        for floor in (_LINE, _WORD):
            for i in window:
                if strength[i] >= floor:
                    return i
        return lo


def _strengths(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """For each token, how good a place to cut just before it is."""
    out = [_SECTION]
    for i in range(1, len(offsets)):
        prev_end, start = offsets[i - 1][1], offsets[i][0]
        gap = text[prev_end:start]
        if not gap:
            out.append(_GLUED)
        elif "\n" in gap and text[start] == "#":
            out.append(_SECTION)
        elif gap.count("\n") >= 2:
            out.append(_PARAGRAPH)
        elif _ends_sentence(text, prev_end):
            out.append(_SENTENCE)
        else:
            out.append(_LINE if "\n" in gap else _WORD)
    return out


def _ends_sentence(text: str, end: int) -> bool:
    """Whether the text before ``end`` closes a sentence (closing quotes and brackets skipped)."""
    j = end - 1
    while j > 0 and text[j] in _CLOSERS:
        j -= 1
    return text[j] in _SENTENCE_END
