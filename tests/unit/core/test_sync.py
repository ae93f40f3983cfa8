"""run_sync: the one sync wrapper, for coroutines and the awaitable turn streams."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from typing import Any

import pytest

from agentic import UserError, run_sync


class _Answer:
    """An awaitable that is not a coroutine, like the stream ``session.resume()`` returns."""

    def __await__(self) -> Generator[Any, None, int]:
        return self._value().__await__()

    async def _value(self) -> int:
        await asyncio.sleep(0)
        return 42


async def _double(x: int) -> int:
    return 2 * x


def test_runs_coroutines_and_other_awaitables() -> None:
    assert run_sync(_double(21)) == 42
    assert run_sync(_Answer()) == 42


def test_inside_a_running_loop_it_says_to_await() -> None:
    async def main() -> None:
        coro = _double(1)
        with pytest.raises(UserError, match="await the call"):
            run_sync(coro)
        assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"  # no "never awaited" warning
        with pytest.raises(UserError, match="running event loop"):
            run_sync(_Answer())

    asyncio.run(main())
