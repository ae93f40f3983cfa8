"""The host side of the worker protocol: newline-delimited JSON on a dedicated socket.

Every request carries a fresh random id; only a reply with that id is accepted. Anything
else the sandbox writes on the channel (a cell forging replies, a stray background thread) is
dropped, and so is any line longer than the frame cap. Replies are parsed with ``json`` and
validated by pydantic models, never unpickled or evaluated.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "MAX_FRAME_BYTES",
    "Channel",
    "ExecReply",
    "FileEntry",
    "FrameDecoder",
    "GetReply",
    "PingReply",
    "ProtocolError",
    "WorkerGone",
    "encode_frame",
    "new_request_id",
]

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Longest line accepted from a worker; file data comes in chunks well below it."""
READ_SIZE: Final = 256 * 1024
_TEXT_CAP: Final = MAX_FRAME_BYTES
_NAME_CAP: Final = 512

ReplyT = TypeVar("ReplyT", bound="_Reply")


class WorkerGone(Exception):
    """The worker's channel closed: the process died or was killed."""


class ProtocolError(Exception):
    """A reply carried the right id but not the right shape."""


def new_request_id() -> str:
    """A random id a cell cannot guess."""
    return secrets.token_hex(16)


def encode_frame(message: dict[str, Any]) -> bytes:
    """One request as a line of ASCII JSON (newlines inside strings are escaped)."""
    return json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"


class FrameDecoder:
    """Splits a byte stream into lines of at most ``max_frame`` bytes; longer ones are dropped."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._max = max_frame
        self._buf = bytearray()
        self._discarding = False
        self.dropped = 0
        """Oversized frames dropped so far."""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete frames ``data`` finishes, in order."""
        frames: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._discarding:
                self._discarding = False
            elif len(self._buf) + end - start <= self._max:
                frames.append(bytes(self._buf) + data[start:end] if self._buf else data[start:end])
            else:
                self.dropped += 1
            self._buf.clear()
            start = end + 1
        if not self._discarding:
            self._buf += data[start:]
            if len(self._buf) > self._max:
                self._buf.clear()
                self._discarding = True
                self.dropped += 1
        return frames


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    message: str = Field(default="", max_length=_TEXT_CAP)
    """What went wrong, for ``status == "error"`` on non-exec requests."""


class PingReply(_Reply):
    """The worker is up; ``missing`` lists preload modules it could not import."""

    missing: list[str] = Field(default_factory=list, max_length=64)


class FileEntry(BaseModel):
    """A figure or output file the cell produced, or one that will not be returned (``skip``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=_NAME_CAP)
    size: int = Field(ge=0)
    skip: str = Field(default="", max_length=200)


class ExecReply(_Reply):
    """The outcome of one cell. ``stdout``/``stderr`` are already cut to the requested size."""

    status: Literal["ok", "error", "timeout"]
    stdout: str = Field(default="", max_length=_TEXT_CAP)
    stderr: str = Field(default="", max_length=_TEXT_CAP)
    stdout_size: int = Field(default=0, ge=0)
    stderr_size: int = Field(default=0, ge=0)
    figures: list[FileEntry] = Field(default_factory=list, max_length=10_000)
    files: list[FileEntry] = Field(default_factory=list, max_length=10_000)
    elapsed: float = 0.0


class GetReply(_Reply):
    """One chunk of a figure or file, base64."""

    data_b64: str = Field(default="", max_length=_TEXT_CAP)
    size: int = Field(default=0, ge=0)


class Channel:
    """Request/reply over the host end of the worker's socket, one request at a time.

    It uses the running loop's socket methods, so a worker outlives any one event loop (a
    script calling ``asyncio.run`` per question keeps its variables).
    """

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME_BYTES) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._decoder = FrameDecoder(max_frame)
        self._frames: list[bytes] = []
        self.unmatched = 0
        """Frames dropped because their id matched no request (forgeries, strays)."""

    @property
    def dropped(self) -> int:
        """Frames dropped for any reason: unmatched ids and oversized lines."""
        return self.unmatched + self._decoder.dropped

    async def send(self, message: dict[str, Any]) -> None:
        """Write one request; WorkerGone if the worker is gone."""
        try:
            await asyncio.get_running_loop().sock_sendall(self._sock, encode_frame(message))
        except OSError as exc:  # EPIPE, ECONNRESET, EBADF once closed
            raise WorkerGone(str(exc)) from exc

    async def receive(self, request_id: str) -> dict[str, Any]:
        """The next frame whose id is ``request_id``; every other frame is dropped."""
        while True:
            while self._frames:
                frame = _parse(self._frames.pop(0))
                if frame is not None and frame.get("id") == request_id:
                    return frame
                self.unmatched += 1
            await self._fill()

    async def request(self, message: dict[str, Any], model: type[ReplyT]) -> ReplyT:
        """Send ``message`` (its ``id`` set here) and return the matching reply as ``model``."""
        request_id = new_request_id()
        await self.send({**message, "id": request_id})
        return validate(await self.receive(request_id), model)

    async def _fill(self) -> None:
        try:
            data = await asyncio.get_running_loop().sock_recv(self._sock, READ_SIZE)
        except OSError as exc:
            raise WorkerGone(str(exc)) from exc
        if not data:
            raise WorkerGone("the worker closed its channel")
        self._frames.extend(self._decoder.feed(data))

    def close(self) -> None:
        """Close the host end (the worker sees EOF)."""
        self._sock.close()


def validate(frame: dict[str, Any], model: type[ReplyT]) -> ReplyT:
    """``frame`` as ``model``; ProtocolError if it does not fit."""
    try:
        return model.model_validate(frame)
    except ValidationError as exc:
        raise ProtocolError(f"malformed {model.__name__} from the worker: {exc}") from exc


def _parse(frame: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
