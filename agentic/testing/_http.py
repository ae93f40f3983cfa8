"""A small HTTP/1.1 server on asyncio protocols, enough to stand in for vLLM in tests.

It speaks keep-alive, pipelining (requests on one connection are answered in order),
``Expect: 100-continue``, ``Content-Length`` request bodies and chunked (or, for HTTP/1.0,
close-delimited) streaming responses. It refuses what it does not support (chunked request
bodies, other ``Expect`` values, oversized heads) with a 4xx and closes the connection. A client
that goes away cancels the task answering it, so handlers see ``asyncio.CancelledError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["HttpRequest", "HttpServer", "ResponseWriter"]

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
SERVER_HEADER = ("server", "agentic-testing")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request. Header names are lower-cased."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


Handler = Callable[[HttpRequest, "ResponseWriter"], Awaitable[None]]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(slots=True)
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body_start: int
    length: int


def _parse_head(raw: bytes, body_start: int) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(400, f"malformed request line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header line {line!r}")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise _BadRequest(400, "chunked request bodies are not supported; send Content-Length")
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise _BadRequest(417, f"unsupported Expect: {expect}")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest(400, "invalid Content-Length") from None
    if length < 0:
        raise _BadRequest(400, "invalid Content-Length")
    if length > MAX_BODY:
        raise _BadRequest(413, "request body too large")
    return _Head(parts[0], parts[1], parts[2], headers, body_start, length)


def _head_bytes(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}", f"{SERVER_HEADER[0]}: {SERVER_HEADER[1]}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ResponseWriter:
    """Sends one response: either :meth:`send` a whole body, or :meth:`start` then chunks."""

    def __init__(self, conn: _Connection, request: HttpRequest) -> None:
        self._conn = conn
        self._chunked = request.version == "HTTP/1.1"
        self.keep_alive = request.keep_alive
        self.started = False
        self.finished = False

    async def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a complete response with a ``Content-Length``."""
        all_headers = [("content-type", content_type), ("content-length", str(len(body)))]
        all_headers.extend(headers)
        if not self.keep_alive:
            all_headers.append(("connection", "close"))
        self.started = self.finished = True
        await self._conn.write(_head_bytes(status, all_headers) + body)

    async def start(
        self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send the head of a streamed response."""
        all_headers = [("content-type", content_type), *headers]
        if self._chunked:
            all_headers.append(("transfer-encoding", "chunked"))
        else:
            self.keep_alive = False
        if not self.keep_alive:
            all_headers.append(("connection", "close"))
        self.started = True
        await self._conn.write(_head_bytes(status, all_headers))

    def _frame(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data

    async def write(self, *pieces: bytes) -> None:
        """Send body pieces of a streamed response (each one a chunk), in one write."""
        data = b"".join(self._frame(p) for p in pieces if p)
        if data:
            await self._conn.write(data)

    async def end(self) -> None:
        """Finish a streamed response."""
        self.finished = True
        if self._chunked:
            await self._conn.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Close the connection now, leaving the response incomplete."""
        self.keep_alive = False
        self._conn.close()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs the handler for each, in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._buf = bytearray()
        self._head: _Head | None = None
        self._continued = False
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = False
        self._paused = False
        self._drain: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._next()

    def eof_received(self) -> bool:
        return False  # a client that half-closes is gone: close, which cancels its handler

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake(ConnectionResetError("client disconnected"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)

    def _wake(self, exc: Exception | None) -> None:
        for fut in self._drain:
            if not fut.done():
                fut.set_result(None) if exc is None else fut.set_exception(exc)
        self._drain.clear()

    async def write(self, data: bytes) -> None:
        if self._lost or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("client disconnected")
        self._transport.write(data)
        if self._paused:
            fut = asyncio.get_running_loop().create_future()
            self._drain.append(fut)
            await fut

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _next(self) -> None:
        """Start the handler for the next complete request, if any and if idle."""
        if self._task is not None or self._lost:
            return
        try:
            request = self._parse()
        except _BadRequest as exc:
            self._reject(exc)
            return
        if request is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(request))
            self._server.tasks.add(self._task)
            self._task.add_done_callback(self._server.tasks.discard)

    def _parse(self) -> HttpRequest | None:
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise _BadRequest(431, "request head too large")
                return None
            self._head = _parse_head(bytes(self._buf[:end]), end + 4)
        head = self._head
        total = head.body_start + head.length
        if len(self._buf) < total:
            if "expect" in head.headers and not self._continued and self._transport is not None:
                self._continued = True
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        body = bytes(self._buf[head.body_start : total])
        del self._buf[:total]
        self._head, self._continued = None, False
        return HttpRequest(head.method, head.target, head.version, head.headers, body)

    def _reject(self, exc: _BadRequest) -> None:
        body = str(exc).encode()
        headers = [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        if self._transport is not None:
            self._transport.write(_head_bytes(exc.status, headers) + body)
        self.close()

    async def _run(self, request: HttpRequest) -> None:
        writer = ResponseWriter(self, request)
        try:
            await self._server.handler(request, writer)
        except (ConnectionResetError, BrokenPipeError):
            self.close()
            return
        except Exception as exc:  # boundary: a handler bug becomes a 500, never a hung client
            if not writer.started:
                with contextlib.suppress(ConnectionError):
                    await writer.send(500, f"internal error: {exc!r}".encode(), "text/plain")
            writer.abort()
            return
        finally:
            self._task = None
        if not writer.finished or not writer.keep_alive:
            self.close()
            return
        self._next()


class HttpServer:
    """Serves ``handler`` on a TCP socket of the running event loop."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound ``(host, port)`` (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=2048, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for the handlers to finish."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
