"""Sync tools run on threads of their own.

A sync function runs off the event loop so it cannot block it. A thread cannot be stopped, so
a call that times out leaves its thread running until the function returns. On a shared pool
(asyncio's default one has a handful of threads, shared with everything that uses
``asyncio.to_thread``) such threads would starve later calls, which would then time out
without running. So each call gets a daemon thread of its own: nothing waits behind an
abandoned call, and a hung one does not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ToolExit", "run_in_thread"]

T = TypeVar("T")


class ToolExit(RuntimeError):
    """A sync tool raised what must not leave its thread (``SystemExit``, ``StopIteration``,
    ``KeyboardInterrupt``); the tool failed like any other."""


async def run_in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new daemon thread, in a copy of the current context."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result = context.run(fn, *args, **kwargs)
        except (StopIteration, SystemExit, KeyboardInterrupt) as exc:
            # StopIteration cannot be set on a future; the other two would stop the loop
            failure = ToolExit(f"the tool raised {type(exc).__name__}({_arg(exc)})")
            failure.__cause__ = exc
            _hand_over(loop, future, None, failure)
        except BaseException as exc:
            _hand_over(loop, future, None, exc)
        else:
            _hand_over(loop, future, result, None)

    name = getattr(fn, "__name__", "tool")
    threading.Thread(target=work, name=f"agentic-tool-{name}", daemon=True).start()
    return await future


def _arg(exc: BaseException) -> str:
    return ", ".join(repr(a) for a in exc.args)


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the call timed out or was cancelled meanwhile
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(settle)
