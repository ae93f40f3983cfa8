"""The keyword side of hybrid search: terms, the FTS5 index (BM25) and rank fusion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic.memory._keyword import MAX_TERMS, fuse, query_terms, terms
from agentic.memory._keyword_index import KeywordIndex


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


CHUNKS = [
    ("hinge#0", "Order code XK-4471-B: the brass hinge."),
    ("slide#0", "Order code QT-9082-A: a drawer slide, not a hinge."),
    ("tea#0", "Green tea is steamed; black tea is oxidised. Tea, tea, tea."),
    ("both#0", "A hinge and some tea."),
]


def test_bm25_finds_exact_identifiers_and_prefers_rare_repeated_terms() -> None:
    index = KeywordIndex(None)
    index.replace_all(CHUNKS, "s1")
    assert [c for c, _ in index.search(["xk-4471-b"], 10)] == ["hinge#0"]
    assert [c for c, _ in index.search(["4471"], 10)] == ["hinge#0"]  # a part of the id
    assert index.search(["447"], 10) == []  # whole terms only
    tea = index.search(["tea"], 10)
    assert [c for c, _ in tea] == ["tea#0", "both#0"]
    assert tea[0][1] > tea[1][1] > 0
    ranked = [c for c, _ in index.search(["xk-4471-b", "hinge"], 10)]
    assert ranked[0] == "hinge#0"
    assert set(ranked) == {"hinge#0", "slide#0", "both#0"}
    assert index.search(['QUOTE"d'], 10) == []  # quotes cannot break the query syntax


def test_writes_update_in_place_and_stamps_track_the_collection(tmp_path: Path) -> None:
    path = tmp_path / "keyword" / "bank.sqlite3"
    index = KeywordIndex(path)
    assert index.stamp() is None
    index.replace_all(CHUNKS, "")
    assert index.stamp() == ""
    index.apply(
        [("hinge#0", "Now a steel hinge."), ("new#0", "XK-4471-B moved here.")], ["tea#0"], "s2"
    )
    assert index.stamp() == "s2"
    assert [c for c, _ in index.search(["xk-4471-b"], 10)] == ["new#0"]
    assert [c for c, _ in index.search(["tea"], 10)] == ["both#0"]
    assert [c for c, _ in index.search(["steel"], 10)] == ["hinge#0"]
    index.apply([], ["missing#0"], "s3")  # deleting what is not there is fine
    index.close()
    again = KeywordIndex(path)  # persisted across a restart
    assert again.stamp() == "s3"
    assert [c for c, _ in again.search(["steel"], 10)] == ["hinge#0"]
    again.invalidate()
    assert again.stamp() is None
    again.drop()
    assert not path.exists()


def test_a_failed_rebuild_leaves_the_index_as_it_was() -> None:
    index = KeywordIndex(None)
    index.replace_all(CHUNKS, "s1")

    def rows() -> Iterator[tuple[str, str]]:
        yield ("x#0", "xk-4471-b elsewhere")
        raise RuntimeError("collection read failed")

    with pytest.raises(RuntimeError):
        index.replace_all(rows(), "s2")
    assert index.stamp() == "s1"
    assert [c for c, _ in index.search(["xk-4471-b"], 10)] == ["hinge#0"]


def test_fusion_rewards_agreement_and_scales_to_one() -> None:
    fused = fuse([["a", "b", "c"], ["b", "d"]])
    assert fused["b"] > fused["a"] > fused["d"] > fused["c"]
    assert fuse([["x"], ["x"]])["x"] == pytest.approx(1.0)
    assert fuse([["x"], []])["x"] == pytest.approx(0.5)
    assert fuse([]) == {}
