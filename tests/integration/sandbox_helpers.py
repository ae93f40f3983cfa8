"""Host-side checks for the sandbox tests: which processes a sandbox uid still has."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable


def live_pids(uid: int) -> list[int]:
    """Host pids of running (non-zombie) processes owned by ``uid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # exited while we looked
            continue
        state = fields.get("State", "").split()
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid and state and state[0] != "Z":
            found.append(int(entry))
    return found


async def wait_gone(uid: int, within: float = 5.0) -> bool:
    """True once no live process of ``uid`` is left (within ``within`` seconds)."""
    deadline = time.monotonic() + within
    while live_pids(uid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def existing(paths: Iterable[str]) -> list[str]:
    """The host paths among ``paths`` that exist."""
    return [p for p in paths if os.path.lexists(p)]
