"""Run a step's tool calls concurrently and turn every outcome into a result for the model.

Nothing a tool does raises out of :meth:`ToolExecutor.run`: unknown names, bad arguments,
exceptions and timeouts all become :class:`~agentic.tools.ToolResponse` values with an
``error`` kind, so the model can read what went wrong and try again. Cancellation is the one
thing that propagates, after every running tool was cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from agentic.errors import ConfigError, ToolArgumentsError
from agentic.llama.tokens import END_OF_MESSAGE, END_OF_TURN, PYTHON_TAG
from agentic.tools._threads import ToolExit
from agentic.tools.base import (
    DEFAULT_MAX_OUTPUT_CHARS,
    Tool,
    ToolContext,
    ToolErrorKind,
    ToolOutput,
    ToolResponse,
    ToolRetry,
    check_limits,
    utcnow,
)
from agentic.types import ToolCall

__all__ = ["ToolExecutor", "unparsable_response"]

_logger = logging.getLogger("agentic.tools")
_UNPARSED_EXCERPT: Final = 200

ContextFactory = Callable[[ToolCall], ToolContext[Any]]
_Outcome = tuple[ToolOutput, ToolErrorKind | None]


class ToolExecutor:
    """Runs calls against a fixed set of tools, with a timeout and an output cap per call.

    A tool's own ``timeout`` and ``max_output_chars`` override the defaults given here. An async
    tool that overruns its timeout is cancelled. A sync tool runs on a thread of its own,
    which cannot be killed: on timeout or cancellation its result is abandoned, but the thread
    runs on until the function returns; while 32 of a tool's calls run on like that, its next
    calls fail at once.
    """

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        timeout: float | None = 60.0,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> None:
        check_limits("ToolExecutor", timeout, max_output_chars)
        by_name: dict[str, Tool] = {}
        duplicates: list[str] = []
        for t in tools:
            if not isinstance(t, Tool):
                raise ConfigError(
                    f"{t!r} is not a tool: decorate a function with @tool, or implement "
                    "agentic.tools.Tool (definition, timeout, async call)"
                )
            name = t.definition.name
            if name in by_name and name not in duplicates:
                duplicates.append(name)
            by_name[name] = t
        if duplicates:
            raise ConfigError(
                f"duplicate tool names: {', '.join(duplicates)}; each tool needs its own name "
                "(rename one with @tool(name=...))"
            )
        self._tools: Mapping[str, Tool] = MappingProxyType(by_name)
        self._timeout = timeout
        self._max_output_chars = max_output_chars

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The tools by name (read-only)."""
        return self._tools

    async def run(
        self, calls: Sequence[ToolCall], ctx: ContextFactory | None = None
    ) -> list[ToolResponse]:
        """Run all ``calls`` concurrently; the responses come back in call order.

        ``ctx`` builds the context each call's tool may ask for (default: no deps, empty ids).
        Never raises for a tool's failure. If the caller is cancelled, every running tool is
        cancelled and awaited before the cancellation propagates.
        """
        if not calls:
            return []
        make = ctx or _default_context
        first, rest = calls[0], calls[1:]
        if not rest:  # the common case: no task to create
            return [await self.run_one(first, make(first))]
        # The first call runs in this task while the others run in tasks: one task less. On
        # cancellation the group cancels and awaits the others before re-raising.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.run_one(c, make(c))) for c in rest]
            head = await self.run_one(first, make(first))
        return [head, *(t.result() for t in tasks)]

    async def run_one(self, call: ToolCall, ctx: ToolContext[Any] | None = None) -> ToolResponse:
        """Run one call to its response; see :meth:`run`."""
        started = utcnow()
        tool = self._tools.get(call.tool_name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            message = f"Unknown tool '{call.tool_name}'. Available tools: {available}."
            return ToolResponse.from_output(
                call,
                message,
                max_output_chars=self._max_output_chars,
                error=ToolErrorKind.unknown_tool,
                started_at=started,
            )
        output, error = await self._invoke(tool, call, ctx or _default_context(call))
        own_cap: int | None = getattr(tool, "max_output_chars", None)
        return ToolResponse.from_output(
            call,
            output,
            max_output_chars=own_cap if own_cap is not None else self._max_output_chars,
            error=error,
            started_at=started,
        )

    async def _invoke(self, tool: Tool, call: ToolCall, ctx: ToolContext[Any]) -> _Outcome:
        """The tool's output, or the message for the model and the error kind."""
        name = call.tool_name
        limit = tool.timeout if tool.timeout is not None else self._timeout
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                return await tool.call(call.arguments, ctx), None
        except ToolRetry as exc:
            return exc.message, ToolErrorKind.retry
        except ToolArgumentsError as exc:
            message = f"Invalid arguments for tool '{name}': {exc.details}"
            return message, ToolErrorKind.invalid_arguments
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            # cancelled from inside the tool
            return failure_message(name, exc), ToolErrorKind.exception
        except (Exception, SystemExit) as exc:  # sys.exit() in a tool (argparse...) too
            if scope.expired():
                return f"Tool '{name}' timed out after {limit:g}s", ToolErrorKind.timeout
            _logger.warning("tool %r failed", name, exc_info=exc)
            return failure_message(name, exc), ToolErrorKind.exception


def unparsable_response(call_id: str, raw: str, reason: str) -> ToolResponse:
    """The result for a tool call the parser could not read: ``reason``, then what it read
    (without the python tag and stop token around it, which the model wrote itself)."""
    excerpt = raw.strip().removeprefix(PYTHON_TAG)
    for token in (END_OF_MESSAGE, END_OF_TURN):
        excerpt = excerpt.removesuffix(token)
    excerpt = excerpt.strip()
    if len(excerpt) > _UNPARSED_EXCERPT:
        excerpt = excerpt[:_UNPARSED_EXCERPT] + "…"
    content = f"{reason}\nThe text that could not be parsed: {excerpt}" if excerpt else reason
    call = ToolCall(call_id=call_id, tool_name="")
    return ToolResponse.from_output(call, content, error=ToolErrorKind.unparsable)


def _default_context(call: ToolCall) -> ToolContext[Any]:
    return ToolContext(deps=None, session_id="", turn_id="", call=call)


def _being_cancelled() -> bool:
    """Whether the running task was asked to stop (as opposed to a tool's own CancelledError)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def failure_message(name: str, exc: BaseException) -> str:
    """What the model reads about an exception: its type and message, no traceback."""
    if isinstance(exc, ToolExit) and exc.__cause__ is not None:
        exc = exc.__cause__  # what the tool itself raised
    message = str(exc)
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"Tool '{name}' failed: {what}"
