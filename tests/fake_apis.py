"""A fake web API for the Brave / Wolfram|Alpha tool tests: a real HTTP server on 127.0.0.1.

It runs in a thread (so sync and async tests, on any event loop, can use it). Each path answers
from its own queue of canned replies, the last one repeating, so a test can script "429, then
200"; a reply may be delayed or cut off. Every request is recorded. The reply bodies come from
``tests/fixtures/web`` (copies of the API-shape fixtures of the shared reference).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Canned", "FakeAPI", "Seen", "fixture", "fixture_json", "refused_url"]

FIXTURES = Path(__file__).parent / "fixtures" / "web"
XML = "text/xml; charset=utf-8"


def fixture(name: str) -> bytes:
    """The bytes of a fixture file in tests/fixtures/web."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    """A JSON fixture, parsed."""
    return json.loads(fixture(name))


@dataclass(frozen=True)
class Canned:
    """One reply: bytes and str are sent as they are, anything else as JSON."""

    status: int = 200
    body: Any = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a timeout test sets it above the client's timeout)."""
    drop: bool = False
    """Close the connection without answering."""

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Seen:
    """One request the server got. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    peer: int
    """The client's port: requests with the same peer came over one kept-alive connection."""

    def param(self, name: str) -> str | None:
        """The (first) value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


class FakeAPI:
    """Serves canned replies per path on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._routes: dict[str, list[Canned]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        # a short poll interval: stopping the server waits for one poll
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, *replies: Canned) -> None:
        """Answer ``path`` with ``replies`` in order; the last one answers every later request."""
        with self._lock:
            self._routes[path] = list(replies)

    def next_reply(self, path: str) -> Canned:
        with self._lock:
            queue = self._routes.get(path)
            if not queue:
                return Canned(404, {"detail": f"no route for {path}"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def wait(self, seconds: float) -> None:
        """Sleep in a handler, but wake up when the server stops."""
        self._stop.wait(seconds)

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected: no traceback on stderr."""


def _handler_for(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # head and body go out in two writes: no 40 ms stall

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            api.record(
                Seen(
                    method="GET",
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    peer=int(self.client_address[1]),
                )
            )
            reply = api.next_reply(parts.path)
            if reply.delay:
                api.wait(reply.delay)
            if reply.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = reply.payload()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read ``api.requests`` instead."""

    return Handler


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
