"""The keyword side of hybrid search: terms, BM25 and reciprocal rank fusion."""

from __future__ import annotations

import re

import pytest

from agentic.memory._keyword import BM25, MAX_TERMS, fuse, query_terms, regex_for, terms


def test_terms_keep_identifiers_whole_and_by_parts() -> None:
    assert terms("Part XK-4471-B fits v2.3.1, see ERR_QUOTA.") == [
        "part", "xk-4471-b", "xk", "4471", "b", "fits", "v2.3.1", "v2", "3", "1", "see",
        "err_quota", "err", "quota",
    ]  # fmt: skip


def test_query_terms_drop_stop_words_and_put_identifiers_first() -> None:
    assert query_terms("What is the meaning of error E-4620 in the log?") == [
        "e-4620", "meaning", "error", "4620", "log",
    ]  # fmt: skip
    assert query_terms("what is it?") == []
    assert len(query_terms(" ".join(f"word{i}" for i in range(20)))) == MAX_TERMS


def test_regex_matches_whole_words_case_insensitively() -> None:
    pattern = regex_for("xk-4471-b").removeprefix("(?i)")
    found = re.compile(pattern, re.IGNORECASE)
    assert found.search("order code XK-4471-B.")
    assert not found.search("order code XK-4471-BX")
    assert regex_for("v2.3") == r"(?i)\bv2\.3\b"


def test_bm25_prefers_rare_terms_and_repeated_matches() -> None:
    bm = BM25(n=100, df={"quokka": 2, "animal": 60})
    assert bm.idf("quokka") > bm.idf("animal") > 0
    texts = ["a quokka is an animal", "an animal", "quokka quokka quokka animal", "nothing"]
    scores = bm.scores(texts)
    assert scores[2] > scores[0] > scores[1] > scores[3] == 0


def test_fusion_rewards_agreement_and_scales_to_one() -> None:
    fused = fuse([["a", "b", "c"], ["b", "d"]])
    assert fused["b"] > fused["a"] > fused["d"] > fused["c"]
    assert fuse([["x"], ["x"]])["x"] == pytest.approx(1.0)
    assert fuse([["x"], []])["x"] == pytest.approx(0.5)
    assert fuse([]) == {}
