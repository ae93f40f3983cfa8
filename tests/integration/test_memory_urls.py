"""Ingesting URLs over real HTTP (a loopback server): types, limits and failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from agentic.errors import DocumentError
from agentic.memory import MemoryStore, fetch_url
from agentic.testing._http import HttpRequest, HttpServer, ResponseWriter

DATA = Path(__file__).parents[1] / "data" / "memory"
PDF = (DATA / "corpus" / "volcanoes.pdf").read_bytes()
HTML = (DATA / "corpus" / "printing-press.html").read_bytes()


async def handler(request: HttpRequest, out: ResponseWriter) -> None:
    path = request.path
    if path == "/page":
        await out.send(200, HTML, "text/html; charset=utf-8")
    elif path == "/doc.pdf":
        await out.send(200, PDF, "application/octet-stream")
    elif path == "/report":
        await out.send(200, PDF, "application/pdf")
    elif path == "/notes":
        await out.send(
            200, "# Notes\n\nÉté à Paris.".encode("latin-1"), "text/markdown; charset=latin-1"
        )
    elif path == "/moved":
        await out.send(302, b"", "text/plain", headers=[("location", "/page")])
    elif path == "/photo":
        await out.send(200, b"\x89PNG" + bytes(4000), "image/png")
    elif path == "/big":
        await out.send(200, b"word " * 5000, "text/plain")
    elif path == "/stream":  # no Content-Length: only counting the body catches it
        await out.start(200, "text/plain")
        for _ in range(50):
            await out.write(b"word " * 200)
        await out.end()
    elif path == "/empty":
        await out.send(200, b"<html><body><script>x()</script></body></html>", "text/html")
    else:
        await out.send(404, b"not here", "text/plain")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    server = HttpServer(handler)
    host, port = await server.start("127.0.0.1", 0)
    yield f"http://{host}:{port}"
    await server.close()


async def test_pages_and_pdfs_by_declared_type_or_by_their_bytes(site: str) -> None:
    page = await fetch_url(f"{site}/page")
    assert (page.mime_type, page.title, page.source) == (
        "text/html",
        "The printing press",
        f"{site}/page",
    )
    assert "Johannes Gutenberg" in page.text
    assert "console.log" not in page.text
    for path in ("/report", "/doc.pdf"):
        pdf = await fetch_url(f"{site}{path}")
        assert pdf.mime_type == "application/pdf"
        assert pdf.text.startswith("Volcanoes form")
    notes = await fetch_url(f"{site}/notes")
    assert (notes.mime_type, notes.text) == ("text/markdown", "# Notes\n\nÉté à Paris.")
    moved = await fetch_url(f"{site}/moved")
    assert moved.title == "The printing press"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/photo", "unsupported document type image/png"),
        ("/big", "is too large: 0.0 MB, the limit is 0.0 MB"),
        ("/stream", "is too large: more than that"),
        ("/missing", "answered HTTP 404"),
        ("/empty", "has no text to ingest"),
    ],
)
async def test_bad_urls_are_clear_errors(site: str, path: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as info:
        await fetch_url(f"{site}{path}", max_bytes=10_000)
    assert info.value.source == f"{site}{path}"


async def test_unreachable_and_non_http_urls(unused_tcp_port: int) -> None:
    with pytest.raises(DocumentError, match=r"cannot fetch http://127\.0\.0\.1.*ConnectError"):
        await fetch_url(f"http://127.0.0.1:{unused_tcp_port}/x")
    with pytest.raises(DocumentError, match="only http and https"):
        await fetch_url("file:///etc/passwd")


async def test_a_bank_ingests_a_url_with_its_own_client(site: str, tmp_path: Path) -> None:
    async with httpx2.AsyncClient(follow_redirects=True) as client:
        store = MemoryStore(path=tmp_path / "chroma")
        bank = store.bank("pages", http_client=client)
        info = await bank.add_url(f"{site}/moved", metadata={"site": "local"})
        assert (info.document_id, info.title) == (f"{site}/moved", "The printing press")
        hit = (await bank.query("who invented movable type?", limit=1))[0]
        assert "Gutenberg" in hit.text
        assert hit.metadata["site"] == "local"
        small = store.bank("pages", max_document_bytes=100, http_client=client)
        with pytest.raises(DocumentError, match="too large"):
            await small.add_url(f"{site}/report")
        assert await bank.count() == info.chunk_count
        await store.aclose()
