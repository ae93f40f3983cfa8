"""Reading Llama Guard's answer: tolerant of form, strict on meaning, closed on failure.

The policy is ``reference/shields.md`` §2.3: stop tokens and surrounding whitespace are ignored,
the first non-blank line decides (``safe`` / ``unsafe``, any case), codes may sit on any later line
separated by commas or whitespace. Anything else (empty output, another first line, ``unsafe``
without a code, a code the model does not have) is *not safe*, with the reason kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from agentic.llama.models import GUARD_CATEGORIES_S1_S14
from agentic.llama.tokens import END_OF_MESSAGE, END_OF_TEXT, END_OF_TURN

__all__ = ["GuardError", "GuardVerdict", "parse_guard_output"]

GuardError = Literal["empty_output", "malformed_verdict", "missing_categories"]
"""Why an answer could not be read as a verdict (each one counts as unsafe)."""

_STOP_TEXTS = (END_OF_TURN, END_OF_MESSAGE, END_OF_TEXT)
_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class GuardVerdict:
    """What Llama Guard said, read by the careful parser."""

    safe: bool
    categories: tuple[str, ...] = ()
    """Violated codes the check counts (exclusions removed), sorted by number."""
    error: GuardError | None = None
    unknown_codes: tuple[str, ...] = ()
    """Tokens after ``unsafe`` that are not one of the model's codes (each makes it unsafe)."""
    suppressed_by_exclusion: tuple[str, ...] = ()
    """Codes the model named that the check does not count."""
    ignored_trailing_lines: tuple[str, ...] = ()
    """Lines after ``safe`` (the first line decides)."""
    raw: str = ""


def _code_number(code: str) -> int:
    return int(code[1:])


def _codes(lines: Iterable[str], known: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known codes, de-duplicated and sorted; unknown tokens in order of appearance)."""
    allowed = {c.upper() for c in known}
    found: set[str] = set()
    unknown: list[str] = []
    for line in lines:
        for token in _SEPARATORS.split(line):
            if not token:
                continue
            code = token.upper()
            if code in allowed:
                found.add(code)
            elif token not in unknown:
                unknown.append(token)
    return tuple(sorted(found, key=_code_number)), tuple(unknown)


def parse_guard_output(
    text: str,
    *,
    excluded: Iterable[str] = (),
    known: Sequence[str] = GUARD_CATEGORIES_S1_S14,
) -> GuardVerdict:
    """Read a raw Llama Guard completion (special tokens may be included).

    ``known`` are the model's codes; ``excluded`` are codes that do not count: an answer naming
    only excluded codes is safe, with them in ``suppressed_by_exclusion``.
    """
    cleaned = text
    for stop in _STOP_TEXTS:
        cleaned = cleaned.replace(stop, "")
    lines = [line.strip() for line in cleaned.strip().splitlines() if line.strip()]
    if not lines:
        return GuardVerdict(safe=False, error="empty_output", raw=text)
    head = lines[0].lower()
    if head == "safe":
        return GuardVerdict(safe=True, ignored_trailing_lines=tuple(lines[1:]), raw=text)
    if head != "unsafe":
        return GuardVerdict(safe=False, error="malformed_verdict", raw=text)
    codes, unknown = _codes(lines[1:], known)
    if not codes and not unknown:
        return GuardVerdict(safe=False, error="missing_categories", raw=text)
    skip = {c.strip().upper() for c in excluded}
    counted = tuple(c for c in codes if c not in skip)
    suppressed = tuple(c for c in codes if c in skip)
    return GuardVerdict(
        safe=not counted and not unknown,
        categories=counted,
        unknown_codes=unknown,
        suppressed_by_exclusion=suppressed,
        raw=text,
    )
