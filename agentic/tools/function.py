"""Python functions as tools: ``@tool`` reads the signature and docstring once, at decoration.

The schema the model sees comes from the type hints, defaults and docstring; parameters
annotated with :class:`~agentic.tools.ToolContext` are injected, not shown. Arguments are
validated by a pydantic model built once, so each call costs one ``model_validate``.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, ParamSpec, TypeVar, overload

from pydantic import BaseModel, ValidationError

from agentic._functions import FunctionSchema, function_schema
from agentic.errors import ConfigError, ToolArgumentsError
from agentic.tools._threads import run_in_thread
from agentic.tools.base import ToolContext, ToolOutput, check_limits, validation_details
from agentic.types import BUILTIN_TOOL_NAMES, ToolDefinition

__all__ = ["FunctionTool", "tool"]

P = ParamSpec("P")
R = TypeVar("R")

_BUILTIN_ARGUMENT: Final = {
    "brave_search": "query",
    "wolfram_alpha": "query",
    "photogen": "query",
    "code_interpreter": "code",
}
# Every tool-call format can carry these names (the python_list format needs identifiers).
_VALID_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class FunctionTool(Generic[P, R]):
    """A Python function (sync or async) as a :class:`~agentic.tools.Tool`.

    Still callable like the function itself, so a tool can be unit-tested directly. A tool named
    after a Llama built-in (``brave_search``, ``wolfram_alpha``, ``photogen``,
    ``code_interpreter``) gets the built-in definition: the model calls it with
    ``<|python_tag|>`` and one string argument, ``query`` (``code`` for the interpreter).
    """

    __name__: str  # copied from the function, with its __doc__, __module__ and __wrapped__

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = None,
    ) -> None:
        _check_callable(fn, name)
        schema = function_schema(fn, skip_types=(ToolContext,), name=name)
        check_limits(f"tool {schema.name!r}", timeout, max_output_chars)
        functools.update_wrapper(self, fn, updated=())  # __name__, __doc__, __wrapped__...
        self.fn = fn
        self.definition = _definition(schema, description)
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._call: Callable[..., Any] = fn
        self._is_async = _is_async(fn)
        self._arguments: type[BaseModel] = schema.arguments
        self._names = frozenset(schema.arguments.model_fields)
        self._context = schema.skipped
        self._positional = _positional_only(fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, as if it were not a tool."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.definition.name!r})"

    async def call(self, arguments: Mapping[str, Any], ctx: ToolContext[Any]) -> ToolOutput:
        """Validate the model's arguments, inject the context and run the function.

        A sync function runs on a thread of its own so it cannot block the event loop; such a
        thread cannot be stopped, only abandoned, when the call times out (and then holds up
        no other call). A sync function that returns an awaitable (a plain decorator around an
        async function) has it awaited.
        """
        kwargs = self.validate(arguments)
        for pname in self._context:
            kwargs[pname] = ctx
        args = [kwargs.pop(p) for p in self._positional] if self._positional else ()
        if self._is_async:
            return await self._call(*args, **kwargs)
        result = await run_in_thread(self._call, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The validated arguments by parameter name (``"3"`` becomes ``3`` for an ``int``).

        Raises :class:`~agentic.errors.ToolArgumentsError` with one line per wrong field.
        """
        problems = self._unexpected(arguments)
        try:
            values = self._arguments.model_validate(arguments)
        except ValidationError as exc:
            details = "; ".join([*problems, validation_details(exc)])
            raise ToolArgumentsError(self.definition.name, details) from exc
        if problems:
            raise ToolArgumentsError(self.definition.name, "; ".join(problems))
        return dict(values.__dict__)

    def _unexpected(self, arguments: Mapping[str, Any]) -> list[str]:
        """One problem per argument the function has no parameter for."""
        if arguments.keys() <= self._names:
            return []
        valid = ", ".join(self._arguments.model_fields) or "none"
        return [
            f"{extra}: unexpected argument (valid arguments: {valid})"
            for extra in sorted(arguments.keys() - self._names)
        ]


@overload
def tool(fn: Callable[P, R]) -> FunctionTool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output_chars: int | None = None,
) -> Callable[[Callable[P, R]], FunctionTool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output_chars: int | None = None,
) -> FunctionTool[P, R] | Callable[[Callable[P, R]], FunctionTool[P, R]]:
    """Make a function a tool: ``@tool`` or ``@tool(name=..., timeout=...)``.

    ``description`` replaces the docstring's summary; ``timeout`` (seconds) and
    ``max_output_chars`` override the executor's defaults for this tool.
    """

    def wrap(f: Callable[P, R]) -> FunctionTool[P, R]:
        return FunctionTool(
            f,
            name=name,
            description=description,
            timeout=timeout,
            max_output_chars=max_output_chars,
        )

    return wrap if fn is None else wrap(fn)


def _check_callable(fn: Callable[..., Any], name: str | None) -> None:
    shown = name or getattr(fn, "__name__", repr(fn))
    if not callable(fn):
        raise ConfigError(f"@tool needs a function, not {type(fn).__name__}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigError(f"tool {shown!r} is a generator; a tool must return its result")
    if name is not None and not _VALID_NAME.fullmatch(name):
        raise ConfigError(
            f"tool name {name!r} is not usable in a tool call: use letters, digits, _ and -, "
            "not starting with a digit"
        )


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (async functions and async ``__call__``)."""
    call = getattr(fn, "__call__", None)  # noqa: B004 -- we want the bound __call__ itself
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _positional_only(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.POSITIONAL_ONLY)


def _definition(schema: FunctionSchema, description: str | None) -> ToolDefinition:
    """The custom definition from the schema, or the built-in one for a built-in name."""
    if schema.name not in BUILTIN_TOOL_NAMES:
        summary = schema.description if description is None else description
        return ToolDefinition(name=schema.name, description=summary, parameters=schema.parameters)
    key = _BUILTIN_ARGUMENT[schema.name]
    prop = schema.parameters["properties"].get(key)
    if prop is None or prop.get("type", "string") != "string":
        raise ConfigError(
            f"the built-in tool {schema.name!r} is called with one string argument {key!r}: "
            f"its function must accept `{key}: str`"
        )
    others = [p for p in schema.parameters["required"] if p != key]
    if others:
        raise ConfigError(
            f"the built-in tool {schema.name!r} only receives {key!r}; give the other "
            f"parameters defaults: {', '.join(others)}"
        )
    if description is not None:
        raise ConfigError(
            f"the built-in tool {schema.name!r} has no description in the prompt (the model "
            "was trained on it); drop description="
        )
    return ToolDefinition.builtin(schema.name)
