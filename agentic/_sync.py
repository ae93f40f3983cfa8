"""The one sync wrapper: run a coroutine on a private event loop in a background thread.

Clients (HTTP pools, database connections) bind to the loop that first used them, so every
sync call of the process goes through the same long-lived loop instead of a fresh
``asyncio.run`` each time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from typing import TypeVar

from agentic.errors import UserError

__all__ = ["run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="agentic-sync-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


async def _wait(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_sync(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` (a coroutine, or e.g. the stream of ``session.resume(...)``) from
    synchronous code and return its result.

    Inside a running event loop (Jupyter, an async web handler) this is an error, since it
    would block the loop: ``await`` it there instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if isinstance(awaitable, Coroutine):
            awaitable.close()  # never awaited: no "never awaited" warning for the caller's call
        raise UserError(
            "run_sync() was called inside a running event loop (Jupyter, an async function): "
            "await the call instead of wrapping it in run_sync()"
        )
    coro = awaitable if isinstance(awaitable, Coroutine) else _wait(awaitable)
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()
