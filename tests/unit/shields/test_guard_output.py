"""The careful Llama Guard parser (reference/shields.md §2.3): tolerant of form, closed on doubt."""

from __future__ import annotations

from typing import Any

import pytest

from agentic.llama.models import GUARD_CATEGORIES_S1_S13
from agentic.shields import GuardVerdict, parse_guard_output

SAFE = {"safe": True}


def unsafe(*codes: str, **extra: Any) -> dict[str, Any]:
    return {"safe": False, "categories": codes, **extra}


VECTORS: list[tuple[str, dict[str, Any]]] = [
    # what the models print (CB recorded outputs), with and without the stop token
    ("safe", SAFE),
    ("\n\nsafe<|eot_id|>", SAFE),
    ("\n\nunsafe\nS7", unsafe("S7")),
    ("unsafe\nS1,S10", unsafe("S1", "S10")),
    ("unsafe\nS14<|eot_id|>", unsafe("S14")),
    ("unsafe\nS1<|eom_id|>", unsafe("S1")),
    ("safe<|end_of_text|>", SAFE),
    # whitespace and case
    ("  SAFE  \n", SAFE),
    ("Safe", SAFE),
    ("UNSAFE\ns9", unsafe("S9")),
    ("unsafe\r\nS1", unsafe("S1")),
    ("unsafe\nS1, S2", unsafe("S1", "S2")),
    ("unsafe\n\n  S3 ,S4  ", unsafe("S3", "S4")),
    # codes on several lines, repeated, out of order
    ("unsafe\nS1\nS2", unsafe("S1", "S2")),
    ("unsafe\nS10,S1,S1", unsafe("S1", "S10")),
    # the first line decides
    ("safe\nS1", {"safe": True, "ignored_trailing_lines": ("S1",)}),
    # fail closed: empty, malformed, missing or unknown codes
    ("", {"safe": False, "error": "empty_output"}),
    ("<|eot_id|>", {"safe": False, "error": "empty_output"}),
    ("   \n  ", {"safe": False, "error": "empty_output"}),
    ("safety first", {"safe": False, "error": "malformed_verdict"}),
    ("safe.", {"safe": False, "error": "malformed_verdict"}),
    ("unsafe S1", {"safe": False, "error": "malformed_verdict"}),
    ("I cannot help with that.", {"safe": False, "error": "malformed_verdict"}),
    ("unsafe", {"safe": False, "error": "missing_categories"}),
    ("unsafe\n<|eot_id|>", {"safe": False, "error": "missing_categories"}),
    ("unsafe\nS15", unsafe(unknown_codes=("S15",))),
    ("unsafe\nS2,S99", unsafe("S2", unknown_codes=("S99",))),
    ("unsafe\nS1.", unsafe(unknown_codes=("S1.",))),
]


@pytest.mark.parametrize(("raw", "expected"), VECTORS)
def test_parse_vectors(raw: str, expected: dict[str, Any]) -> None:
    verdict = parse_guard_output(raw)
    assert verdict == GuardVerdict(raw=raw, **expected)


def test_s14_is_unknown_to_a_model_without_it() -> None:
    verdict = parse_guard_output("unsafe\nS14", known=GUARD_CATEGORIES_S1_S13)
    assert not verdict.safe
    assert verdict.unknown_codes == ("S14",)


def test_excluded_codes_do_not_count_but_are_kept() -> None:
    partly = parse_guard_output("unsafe\nS1,S3", excluded=["S3"])
    assert not partly.safe
    assert partly.categories == ("S1",)
    assert partly.suppressed_by_exclusion == ("S3",)
    only = parse_guard_output("unsafe\ns3", excluded=["S3"])
    assert only.safe
    assert only.suppressed_by_exclusion == ("S3",)


def test_exclusions_never_hide_an_unknown_code() -> None:
    verdict = parse_guard_output("unsafe\nS3,S99", excluded=["S3"])
    assert not verdict.safe
    assert verdict.unknown_codes == ("S99",)
