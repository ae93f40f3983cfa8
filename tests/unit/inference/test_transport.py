"""The pooled transport: our network backend is in use, and idle-connection probing still works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

from agentic.inference import _transport
from agentic.inference._transport import pooled_transport
from agentic.inference.vllm_server import VLLMServer

_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def hangup_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers one request per connection, then hangs up without saying so (keep-alive)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_REPLY)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/", connections


async def test_a_server_hangup_on_an_idle_connection_is_noticed(
    hangup_server: tuple[str, list[int]],
) -> None:
    url, connections = hangup_server
    transport = pooled_transport(httpx2.Limits(max_connections=4, max_keepalive_connections=4))
    async with httpx2.AsyncClient(transport=transport) as client:
        for _ in range(3):
            response = await client.get(url)
            assert response.text == "ok"
            await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
    # every request found its pooled connection closed by the server and opened a new one,
    # instead of failing on a dead socket
    assert len(connections) == 3


async def test_vllm_server_pools_on_our_backend() -> None:
    backend = VLLMServer("http://127.0.0.1:9/v1")
    try:
        pool = backend._client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, _transport._Backend)
    finally:
        await backend.aclose()


async def test_streams_answer_other_questions_from_the_inner_stream(
    hangup_server: tuple[str, list[int]],
) -> None:
    url, _ = hangup_server
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    stream = await _transport._Backend().connect_tcp(host, int(port))
    try:
        assert stream.get_extra_info("is_readable") is False
        assert stream.get_extra_info("server_addr") == (host, int(port))
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await stream.read(1024)).startswith(b"HTTP/1.1 200")
    finally:
        await stream.aclose()
