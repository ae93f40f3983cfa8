"""Sync tools run on threads of their own.

A sync function runs off the event loop so it cannot block it. A thread cannot be stopped, so
a call that times out leaves its thread running until the function returns. On a shared pool
(asyncio's default one has a handful of threads, shared with everything that uses
``asyncio.to_thread``) such threads would starve later calls, which would then time out
without running. So each call gets a daemon thread of its own: nothing waits behind an
abandoned call, and a hung one does not keep the process from exiting.

A function that hangs for good would leave a thread behind at every call, for the life of
the process, until it can start no more threads. So once :data:`MAX_ABANDONED` calls of one
function were abandoned and still run, its next calls fail at once (:class:`ToolOverrun`)
until some of those return.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_ABANDONED", "ToolExit", "ToolOverrun", "run_in_thread"]

T = TypeVar("T")

MAX_ABANDONED = 32
"""Abandoned calls (timed out or cancelled) of one function that may still run on their
threads; past that, its calls fail without starting one."""

_abandoned: dict[object, int] = {}
"""Abandoned calls still running, by function (a bound method by its function)."""
_lock = threading.Lock()


class ToolExit(RuntimeError):
    """A sync tool raised what must not leave its thread (``SystemExit``, ``StopIteration``,
    ``KeyboardInterrupt``); the tool failed like any other."""


class ToolOverrun(RuntimeError):
    """A sync tool was not called: too many of its earlier calls still run after timing out."""


class _Call:
    """Whether a call's thread has returned and whether its caller stopped waiting (under
    ``_lock``): the one that happens second settles the count of abandoned calls."""

    __slots__ = ("abandoned", "returned")

    def __init__(self) -> None:
        self.returned = False
        self.abandoned = False


async def run_in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new daemon thread, in a copy of the current context."""
    key = getattr(fn, "__func__", fn)
    name = getattr(fn, "__name__", "tool")
    with _lock:
        if _abandoned.get(key, 0) >= MAX_ABANDONED:
            raise ToolOverrun(
                f"{MAX_ABANDONED} earlier calls of {name} are still running after they timed "
                "out; it was not called again"
            )
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()
    state = _Call()

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
        finally:
            with _lock:
                state.returned = True
                if state.abandoned:
                    _release(key)

    threading.Thread(target=work, name=f"agentic-tool-{name}", daemon=True).start()
    try:
        return await future
    except asyncio.CancelledError:  # a timeout or a cancel: the thread runs on, abandoned
        with _lock:
            if not state.returned:
                state.abandoned = True
                _abandoned[key] = _abandoned.get(key, 0) + 1
        raise


def _release(key: object) -> None:
    """One abandoned call of ``key`` returned (under ``_lock``)."""
    left = _abandoned.pop(key) - 1
    if left:
        _abandoned[key] = left


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
