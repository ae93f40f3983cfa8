"""Python functions as tools: ``@tool`` reads the signature and docstring once, at decoration.

The schema the model sees comes from the type hints, defaults and docstring; parameters
annotated with :class:`~agentic.tools.ToolContext` are injected, not shown. Arguments are
validated by a pydantic model built once, so each call costs one ``model_validate``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Final, Generic, Literal, ParamSpec, Self, TypeVar, overload

from pydantic import BaseModel, ValidationError

from agentic._functions import FunctionSchema, arguments_by_name, function_schema
from agentic.errors import ConfigError, ToolArgumentsError
from agentic.tools._threads import run_in_thread
from agentic.tools.base import ToolContext, ToolOutput, check_limits, validation_details
from agentic.types import BUILTIN_TOOL_NAMES, ToolDefinition

__all__ = ["FunctionTool", "tool"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
_Binding = Literal["instance", "class"] | None

_BUILTIN_ARGUMENT: Final = {
    "brave_search": "query",
    "wolfram_alpha": "query",
    "photogen": "query",
    "code_interpreter": "code",
}
# The JSON-based tool-call formats carry these names; the pythonic one (Llama 3.2) needs
# identifiers that are not keywords: see agentic._functions.pythonic_name_problems.
_VALID_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class FunctionTool(Generic[P, R]):
    """A Python function (sync or async) as a :class:`~agentic.tools.Tool`.

    Still callable like the function itself, so a tool can be unit-tested directly. A tool named
    after a Llama built-in (``brave_search``, ``wolfram_alpha``, ``photogen``,
    ``code_interpreter``) gets the built-in definition: the model calls it with
    ``<|python_tag|>`` and one string argument, ``query`` (``code`` for the interpreter).

    On a method in a class body (``@tool`` above ``def m(self, ...)`` or above
    ``@classmethod``), the first parameter is not shown to the model and the tool binds like a
    method: give the agent ``instance.m`` (``Class.m`` for a class method).
    """

    __name__: str  # copied from the function, with its __doc__, __module__...
    __wrapped__: Callable[..., Any]  # ... and the function itself (bound, once bound)

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = None,
    ) -> None:
        fn, binds = _unwrap_method(fn)
        _check_callable(fn, name)
        receiver = _receiver(fn) if binds else None
        skip = () if receiver is None else (receiver,)
        schema = function_schema(fn, skip=skip, skip_types=(ToolContext,), name=name)
        check_limits(f"tool {schema.name!r}", timeout, max_output_chars)
        functools.update_wrapper(self, fn, updated=())  # __name__, __doc__, __wrapped__...
        self.fn = fn
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._binds: _Binding = binds if receiver is not None else None
        self._definition = _definition(schema, description)
        self._call: Callable[..., Any] = fn
        self._is_async = _is_async(fn)
        self._arguments: type[BaseModel] = schema.arguments
        self._params = tuple(schema.parameters["properties"])
        self._names = frozenset(self._params)
        self._context = schema.skipped
        self._positional = tuple(p for p in _positional_only(fn) if p not in skip)

    @property
    def definition(self) -> ToolDefinition:
        """The name, description and parameter schema the model sees.

        Raises :class:`~agentic.errors.ConfigError` on a method's tool that is not bound yet.
        """
        if self._binds is not None:
            raise self._unbound()
        return self._definition

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(
        self: FunctionTool[Concatenate[S, P2], R], instance: S, owner: type[Any] | None = None
    ) -> FunctionTool[P2, R]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> Self: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        """A method's tool bound to the instance (or the class, for a class method)."""
        if self._binds == "class":
            return self._bind(owner if owner is not None else type(instance))
        if self._binds == "instance" and instance is not None:
            return self._bind(instance)
        return self

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, as if it were not a tool."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self._definition.name!r})"

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
        name = self.definition.name
        problems = self._unexpected(arguments)
        try:
            values = self._arguments.model_validate(arguments)
        except ValidationError as exc:
            details = "; ".join([*problems, validation_details(exc)])
            raise ToolArgumentsError(name, details) from exc
        if problems:
            raise ToolArgumentsError(name, "; ".join(problems))
        return arguments_by_name(values)

    def _unexpected(self, arguments: Mapping[str, Any]) -> list[str]:
        """One problem per argument the function has no parameter for."""
        if arguments.keys() <= self._names:
            return []
        valid = ", ".join(self._params) or "none"
        return [
            f"{extra}: unexpected argument (valid arguments: {valid})"
            for extra in sorted(arguments.keys() - self._names)
        ]

    def _bind(self, target: object) -> FunctionTool[..., R]:
        """A copy of this tool that calls the function with ``target`` first (not cached, like
        a bound method: a cache on the instance would follow it into its copies)."""
        bound = copy.copy(self)
        bound.fn = bound._call = bound.__wrapped__ = types.MethodType(self.fn, target)
        bound._binds = None
        return bound

    def _unbound(self) -> ConfigError:
        where, _, attr = self.fn.__qualname__.rpartition(".")
        return ConfigError(
            f"tool {self._definition.name!r} is the method {where}.{attr} and needs its "
            f"instance: give the agent `instance.{attr}` (a {where} object's), not "
            f"`{where}.{attr}`; on a static or class method, put @tool above "
            "@staticmethod / @classmethod"
        )


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
    ``max_output_chars`` override the executor's defaults for this tool. The model passes
    arguments by name, and only those the schema shows it: a function with ``*args`` or
    ``**kwargs`` is refused (:class:`~agentic.errors.ConfigError`); declare each parameter.
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


def _unwrap_method(fn: Callable[P, R]) -> tuple[Callable[P, R], _Binding]:
    """The function to describe, and what it binds to when read from an instance or class.

    A plain function whose ``__qualname__`` names a class (``Svc.m``, not ``f.<locals>.g``)
    was defined in a class body: a method, bound to the instance.
    """
    if isinstance(fn, staticmethod):
        return fn.__func__, None
    if isinstance(fn, classmethod):
        return fn.__func__, "class"
    owner, _, _ = getattr(fn, "__qualname__", "").rpartition(".")
    in_class = bool(owner) and not owner.endswith("<locals>")
    return fn, "instance" if in_class and inspect.isfunction(fn) else None


def _receiver(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s first positional parameter (``self``, ``cls``), if it has one."""
    first = next(iter(inspect.signature(fn).parameters.values()), None)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return first.name if first is not None and first.kind in positional else None


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
