"""Memory banks: ingestion throughput and query latency, each against a bare floor in the same run.

1. Ingestion: ``bank.add_documents`` (chunk with the model's tokenizer, embed, upsert into
   embedded Chroma) against bare ``SentenceTransformer.encode`` of the very same chunks, in
   alternating blocks. Target: at least 0.85 of the bare throughput.
2. Query latency at 10k and 100k chunks: ``bank.query`` (vector, and hybrid) against the floor,
   bare ``encode`` of the question plus a bare ``collection.query``, interleaved question by
   question. The test corpus is embedded for real; the bulk of the index is synthetic (random
   unit vectors, random words) with the banks' metadata, written straight into Chroma (then
   ``bank.reindex()`` rebuilds the keyword index, timed). Target: p50 within 1.3x of the floor.

Prints a table and writes ``bench/results/memory.json``. ``--quick`` runs a smaller version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from _table import Row, print_rows

from agentic.memory import MemoryBank, MemoryStore
from agentic.types import Document

DATA = Path(__file__).parents[1] / "tests" / "data" / "memory"
LIMIT = 5


def _sentences() -> list[str]:
    text = " ".join(
        p.read_text() for p in sorted((DATA / "corpus").iterdir()) if p.suffix in (".md", ".txt")
    )
    text = re.sub(r"#+ [^\n]*\n", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 4]


def _documents(n: int, tag: str, rng: random.Random, sentences: list[str]) -> list[Document]:
    """``n`` documents of ~900 word pieces (about five chunks) from shuffled corpus sentences."""
    docs = []
    for i in range(n):
        picked = rng.sample(sentences, 40)
        text = f"Document {tag}-{i}. " + " ".join(picked)
        docs.append(Document(content=text, name=f"{tag}-{i}"))
    return docs


async def bench_ingest(store: MemoryStore, blocks: int, docs_per_block: int) -> list[Row]:
    """Alternating blocks: bare encode of a block's chunks, then the bank ingesting it."""
    rng = random.Random(7)
    sentences = _sentences()
    bank = store.bank("bench-ingest")
    await bank.open()
    model = bank.embedder.model
    chunks_total, bare_s, ours_s = 0, 0.0, 0.0
    for b in range(-1, blocks):  # block -1 warms both paths up (torch is slow at first)
        docs = _documents(docs_per_block, f"b{b}", rng, sentences)
        texts = [c.text for d in docs for c in bank.chunker.split(d.content)]

        def bare_run(texts: list[str] = texts) -> None:
            model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

        async def ours_run(docs: list[Document] = docs, n: int = len(texts)) -> None:
            infos = await bank.add_documents(docs)
            assert sum(i.chunk_count for i in infos) == n

        spent = {}
        for which in ("bare", "ours") if b % 2 == 0 else ("ours", "bare"):
            started = time.perf_counter()
            if which == "bare":
                bare_run()
            else:
                await ours_run()
            spent[which] = time.perf_counter() - started
        if b >= 0:
            bare_s, ours_s = bare_s + spent["bare"], ours_s + spent["ours"]
            chunks_total += len(texts)
    bare, ours = chunks_total / bare_s, chunks_total / ours_s
    return [
        (f"ingest: bare encode ({chunks_total} chunks)", bare, 0.0, "chunks/s"),
        ("ingest: bank.add_documents (chunk+embed+store)", ours, ours / bare, "chunks/s"),
    ]


def _fill(bank: MemoryBank, store: MemoryStore, target: int, rng: np.random.Generator) -> None:
    """Grow the bank's collection to ``target`` chunks with synthetic records (blocking)."""
    collection = store.client.client.get_collection(bank.bank_id)
    vocab = [
        "".join(rng.choice(list("abcdefghijklmnoprstuvwy"), size=int(n)))
        for n in rng.integers(3, 10, 4000)
    ]
    have = collection.count()
    step = 2000
    while have < target:
        n = min(step, target - have)
        vectors = rng.standard_normal((n, bank.embedder.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = [f"synthetic-{have + i}#0" for i in range(n)]
        docs = [" ".join(rng.choice(vocab, size=30)) for _ in range(n)]
        metas: list[Any] = [
            {"document_id": f"synthetic-{have + i}", "source": "synthetic", "position": 0,
             "token_count": 60, "chunk_count": 1, "mime_type": "text/plain"}
            for i in range(n)
        ]  # fmt: skip
        collection.add(ids=ids, embeddings=vectors, documents=docs, metadatas=metas)
        have += n


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples) * 1000, cuts[18] * 1000  # ms: p50, p95


async def _timed(call: Awaitable[object]) -> float:
    """Seconds the awaitable takes (a coroutine is created before, and awaited inside)."""
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def bench_query(store: MemoryStore, sizes: list[int], rounds: int) -> list[Row]:
    """Latency of vector and hybrid queries against the bare floor, at each index size."""
    bank = store.bank("bench-query")
    await bank.add_files(
        sorted((DATA / "corpus").iterdir()) + sorted((DATA / "identifiers").iterdir())
    )
    model = bank.embedder.model
    questions = [q["question"] for q in json.loads((DATA / "questions.json").read_text())]
    rng = np.random.default_rng(11)
    rows: list[Row] = []
    for size in sizes:
        await asyncio.to_thread(_fill, bank, store, size, rng)
        started = time.perf_counter()
        await bank.reindex()  # the bulk went straight into Chroma, past the keyword index
        reindex_s = time.perf_counter() - started
        collection = store.client.client.get_collection(bank.bank_id)

        def floor(q: str, collection: Any = collection) -> float:
            started = time.perf_counter()
            vec = model.encode([q], normalize_embeddings=True, show_progress_bar=False)
            collection.query(
                query_embeddings=vec,
                n_results=LIMIT,
                include=["documents", "metadatas", "distances"],
            )
            return time.perf_counter() - started

        for q in questions[:3]:  # warm up both paths
            floor(q)
            await bank.query(q, limit=LIMIT, mode="hybrid")
        bare: list[float] = []
        vector: list[float] = []
        hybrid: list[float] = []
        for _ in range(rounds):
            for q in questions:
                bare.append(floor(q))
                vector.append(await _timed(bank.query(q, limit=LIMIT)))
                hybrid.append(await _timed(bank.query(q, limit=LIMIT, mode="hybrid")))
        count = collection.count()
        (b50, b95), (v50, v95), (h50, h95) = map(_percentiles, (bare, vector, hybrid))
        label = f"{count // 1000}k"
        rows += [
            (f"query {label}: floor p50 (encode + collection.query)", b50, 0.0, "ms"),
            (f"query {label}: floor p95", b95, 0.0, "ms"),
            (f"query {label}: bank.query vector p50", v50, v50 / b50, "ms"),
            (f"query {label}: bank.query vector p95", v95, v95 / b95, "ms"),
            (f"query {label}: bank.query hybrid p50", h50, h50 / b50, "ms"),
            (f"query {label}: bank.query hybrid p95", h95, h95 / b95, "ms"),
            (f"query {label}: keyword index rebuild (bank.reindex)", reindex_s, 0.0, "s"),
        ]
    return rows


async def run(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(path=Path(tmp) / "chroma")
        await store.open()
        blocks, per_block = (2, 4) if quick else (8, 6)
        rows = await bench_ingest(store, blocks, per_block)
        sizes = [2_000, 10_000] if quick else [10_000, 100_000]
        rows += await bench_query(store, sizes, rounds=2 if quick else 5)
        await store.aclose()
    meta = {
        "quick": quick,
        "cpus": os.cpu_count(),
        "load_average_start_end": [load_start, os.getloadavg()[0]],
        "python": platform.python_version(),
        "model": store.model,
        "versions": {
            p: version(p) for p in ("llama-agentic", "chromadb", "sentence-transformers", "torch")
        },
    }
    return rows, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller corpus and index")
    args = parser.parse_args(argv)
    rows, meta = asyncio.run(run(args.quick))
    print_rows(rows)
    out = Path(__file__).parent / "results" / "memory.json"
    out.parent.mkdir(exist_ok=True)
    keys = ("name", "value", "ratio", "unit")
    body = {"meta": meta, "rows": [dict(zip(keys, r, strict=True)) for r in rows]}
    out.write_text(json.dumps(body, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
