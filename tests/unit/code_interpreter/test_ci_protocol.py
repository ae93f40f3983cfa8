"""The worker protocol on the host side: framing, id matching, caps, and a dead peer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from agentic.tools.code_interpreter.protocol import (
    Channel,
    ExecReply,
    FrameDecoder,
    PingReply,
    ProtocolError,
    WorkerGone,
    encode_frame,
    new_request_id,
)


def test_frames_split_on_newlines_across_chunks() -> None:
    decoder = FrameDecoder(max_frame=100)
    assert decoder.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert decoder.feed(b":2}\n\n") == [b'{"b":2}', b""]
    assert decoder.feed(b"partial") == []
    assert decoder.feed(b" end\n") == [b"partial end"]
    assert decoder.dropped == 0


def test_oversized_frames_are_dropped_and_the_stream_recovers() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(b"x" * 25) == []  # too long already: discard until the newline
    assert decoder.feed(b"yyyy") == []
    assert decoder.feed(b"zz\nok\n") == [b"ok"]
    assert decoder.feed(b"0123456789A\nfine\n") == [b"fine"]  # too long when it completes
    assert decoder.feed(b"12345" + b"67890" + b"\n") == [b"1234567890"]  # exactly the cap
    assert decoder.dropped == 2


def test_requests_are_single_ascii_lines_with_random_ids() -> None:
    frame = encode_frame({"op": "exec", "code": "print('é')\nx = 1"})
    assert frame.endswith(b"\n")
    assert frame.count(b"\n") == 1
    assert json.loads(frame) == {"op": "exec", "code": "print('é')\nx = 1"}
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 for i in ids)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Channel, socket.socket]]:
    """A channel on one end of a socket pair; the test plays the worker on the other."""
    host, worker = socket.socketpair()
    channel = Channel(host, max_frame=1024)
    try:
        yield channel, worker
    finally:
        channel.close()
        worker.close()


async def reply_after(worker: socket.socket, lines: list[bytes]) -> dict[str, object]:
    """Read one request from the channel, then answer with ``lines`` (ID → its id)."""
    request = json.loads(await asyncio.to_thread(worker.makefile("rb").readline))
    for line in lines:
        worker.sendall(line.replace(b"ID", request["id"].encode()) + b"\n")
    return dict(request)


async def test_forged_unmatched_and_oversized_frames_are_dropped(
    peer: tuple[Channel, socket.socket],
) -> None:
    channel, worker = peer
    forged = [
        b'{"id": "0000", "status": "ok"}',  # a guessed id
        b"not json at all",
        b"[1, 2, 3]",
        b'{"id": "ID"' + b" " * 2000 + b', "status": "ok"}',  # the right id, but too long
        b'{"id": "ID", "status": "ok", "missing": ["x"]}',
    ]
    answer, reply = await asyncio.gather(
        reply_after(worker, forged), channel.request({"op": "ping"}, PingReply)
    )
    assert answer["op"] == "ping"
    assert reply.id == answer["id"]
    assert reply.missing == ["x"]
    assert channel.unmatched == 3
    assert channel.dropped == 4


async def test_a_reply_with_the_right_id_but_wrong_shape_is_a_protocol_error(
    peer: tuple[Channel, socket.socket],
) -> None:
    channel, worker = peer
    bad = [b'{"id": "ID", "status": "ok", "stdout": 5}']
    with pytest.raises(ProtocolError, match="malformed ExecReply"):
        await asyncio.gather(reply_after(worker, bad), channel.request({"op": "x"}, ExecReply))


async def fill(channel: Channel) -> None:
    for _ in range(50):
        await channel.send({"op": "ping", "pad": "x" * 65536})


async def test_a_closed_peer_is_worker_gone(peer: tuple[Channel, socket.socket]) -> None:
    channel, worker = peer
    worker.close()
    with pytest.raises(WorkerGone):
        await channel.receive("anything")
    with pytest.raises(WorkerGone):  # the first writes may still land in the socket buffer
        await fill(channel)


async def test_a_closed_channel_is_worker_gone() -> None:
    host, worker = socket.socketpair()
    channel = Channel(host)
    channel.close()
    assert host.fileno() == -1
    with pytest.raises(WorkerGone):
        await channel.send({"op": "ping"})
    with pytest.raises(WorkerGone):
        await channel.receive("x")
    worker.close()
