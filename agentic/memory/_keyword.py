"""Keyword search for the hybrid mode: BM25 over Chroma's own full-text index.

Chroma indexes every chunk's text; a case-insensitive whole-word regex per query term finds the
chunks that contain it (and so its document frequency), the best of those are ranked by BM25
on their text. Nothing lives outside the collection, so keyword search is the same in embedded
and server mode, after a restart, after deletions, and across replicas sharing one server.

Terms keep identifiers whole (``XK-4471-B``, ``v2.3.1``, ``ERR_QUOTA``) and also index their
parts, so a part number matches exactly and its pieces still count.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["BM25", "fuse", "query_terms", "regex_for", "terms"]

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


def regex_for(term: str) -> str:
    """A case-insensitive whole-word pattern for ``term`` in Chroma's (Rust) regex syntax."""
    return r"(?i)\b" + re.sub(r"([.+])", r"\\\1", term) + r"\b"


@dataclass(frozen=True, slots=True)
class BM25:
    """Okapi BM25 over a collection of ``n`` chunks, given each term's document frequency."""

    n: int
    df: Mapping[str, int]
    k1: float = 1.2
    b: float = 0.75

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5))

    def scores(self, texts: Sequence[str]) -> list[float]:
        """The score of each text for the terms in ``df``; length-normalized against the
        mean length of ``texts`` (the candidates stand in for the whole collection)."""
        bags = [Counter(terms(t)) for t in texts]
        lengths = [sum(bag.values()) for bag in bags]
        avg = (sum(lengths) / len(lengths)) if lengths else 1.0
        out = []
        for bag, length in zip(bags, lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / max(avg, 1.0))
            score = 0.0
            for term in self.df:
                tf = bag.get(term, 0)
                if tf:
                    score += self.idf(term) * tf * (self.k1 + 1) / (tf + norm)
            out.append(score)
        return out


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
