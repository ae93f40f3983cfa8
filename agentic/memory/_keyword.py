"""Words for keyword search, and reciprocal rank fusion for the hybrid mode.

Terms keep identifiers whole (``XK-4471-B``, ``v2.3.1``, ``ERR_QUOTA``) and also index their
parts, so a part number matches exactly and its pieces still count. The index that ranks
chunks by these terms (BM25) is :mod:`agentic.memory._keyword_index`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["fuse", "query_terms", "terms"]

_TERM: Final = re.compile(r"\w+(?:[-./:#+]\w+)*")
_SPLIT: Final = re.compile(r"[-./:#+_]")
MAX_TERMS: Final = 8
RRF_K: Final = 60
_STOPWORDS: Final = frozenset(
    {
        "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
        "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have",
        "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no",
        "not", "of", "on", "or", "our", "she", "should", "so", "some", "than", "that", "the",
        "their", "them", "then", "there", "these", "they", "this", "those", "to", "was", "we",
        "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would",
        "you", "your",
    }
)  # fmt: skip


def terms(text: str) -> list[str]:
    """Lower-cased words of ``text``; compound identifiers as a whole and by their parts."""
    out: list[str] = []
    for match in _TERM.finditer(text.lower()):
        word = match.group()
        out.append(word)
        if _SPLIT.search(word):
            out.extend(p for p in _SPLIT.split(word) if p)
    return out


def query_terms(query: str) -> list[str]:
    """The distinct terms worth searching for: no stop words, no single letters; whole
    identifiers first, at most :data:`MAX_TERMS`."""
    seen: dict[str, None] = {}
    for term in terms(query):
        if term in _STOPWORDS or (len(term) < 2 and not term.isdigit()):
            continue
        seen.setdefault(term, None)
    ranked = sorted(seen, key=lambda t: not _SPLIT.search(t))  # stable: compounds first
    return ranked[:MAX_TERMS]


def fuse(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each id scores ``sum(1 / (k + rank))`` over the rankings it is
    in (rank from 1), scaled so that first place in every ranking scores 1."""
    lists = list(rankings)
    fused: dict[str, float] = {}
    for ranking in lists:
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    top = len(lists) / (k + 1) if lists else 1.0
    return {key: score / top for key, score in fused.items()}
