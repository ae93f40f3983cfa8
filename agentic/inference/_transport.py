"""The HTTP transport VLLMServer pools its connections in, tuned for hundreds of streams.

httpcore2's pool re-checks every idle keep-alive connection each time a request starts or
ends, asking the socket whether the server hung up. Through anyio that question costs a fresh
attribute table, two ``getpeername`` calls and an import per connection: at 200 concurrent
sessions it was a fifth of the client's CPU. Our streams keep the raw socket from the
connect and answer the question with one ``poll``: same behaviour, a fraction of the cost.
"""

from __future__ import annotations

import select
import ssl
import typing
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

# ruff: noqa: ASYNC109 -- httpcore2's stream and backend interfaces take ``timeout`` arguments

__all__ = ["pooled_transport"]


def _readable(fd: int) -> bool:
    """Whether an idle socket has data (for a keep-alive connection: the server closed it)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore2.AsyncNetworkStream):
    """A network stream that remembers its socket, for a cheap ``is_readable``."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")  # asyncio hands out a TransportSocket
        fileno = getattr(sock, "fileno", None)
        self._fd: int | None = fileno() if callable(fileno) else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return await self._inner.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._fd is not None:
            return _readable(self._fd)
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.AsyncNetworkBackend):
    """httpcore2's own backend, with every TCP stream wrapped in :class:`_Stream`."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pooled_transport(limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    """httpx2's transport, its pool built on :class:`_Backend` (same settings otherwise).

    httpx2 does not take a network backend, so the pool it builds is replaced by an equal one
    that has ours. If a future httpx2 keeps its pool elsewhere, its own is kept (correct, and
    only slower), which a test notices.
    """
    transport = httpx2.AsyncHTTPTransport(limits=limits)
    if isinstance(getattr(transport, "_pool", None), httpcore2.AsyncConnectionPool):
        pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )
        typing.cast(Any, transport)._pool = pool
    return transport
