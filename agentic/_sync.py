"""The one sync wrapper: run a coroutine on a private event loop in a background thread.

Clients (HTTP pools, database connections) bind to the loop that first used them, so every
sync call of the process goes through the same long-lived loop instead of a fresh
``asyncio.run`` each time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

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


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result.

    Inside a running event loop this is an error (it would block the loop): await the async
    method instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise UserError(
            "run_sync() was called inside a running event loop; await the async method instead"
        )
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()
