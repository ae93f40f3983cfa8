"""Shared test setup: nothing in the tests may reach the network beyond loopback; an open
SQLite thread for the persistence tests."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentic.agent._sqlite import SqliteThread

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_LOOPBACK = ("127.", "localhost", "::1", "0.0.0.0")
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
        raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
async def thread(tmp_path: Path) -> AsyncIterator[SqliteThread]:
    """An open SQLite thread on a fresh file (the session database's), closed after the test."""
    t = SqliteThread(tmp_path / "s.sqlite", busy_timeout=1.0)
    await t.open()
    yield t
    await t.aclose()
