"""JSON schemas for Python functions: from type hints, defaults and the docstring."""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, get_origin, get_type_hints

from pydantic import BaseModel, Field, PydanticUserError, create_model

from agentic.errors import ConfigError

__all__ = ["FunctionSchema", "function_schema"]

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$", re.IGNORECASE)
_OTHER_SECTION = re.compile(r"^\s*(Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$", re.IGNORECASE)
_GOOGLE_PARAM = re.compile(r"^\s+(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[\w\[\], |]+\s+)?(\w+)\s*:\s*(.*)$")


@dataclass(frozen=True, slots=True)
class FunctionSchema:
    name: str
    description: str
    parameters: dict[str, Any]
    arguments: type[BaseModel]
    """A model of the schema's parameters: validates a call's arguments (built once)."""
    skipped: tuple[str, ...]
    """Parameters left out because of ``skip_types`` (to be injected by the caller)."""


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary paragraph and per-parameter descriptions (Google or Sphinx style)."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        if m := _SPHINX_PARAM.match(line):
            current, params[m.group(1)] = m.group(1), m.group(2).strip()
            continue
        if _SECTION.match(line):
            in_args, current = True, None
            continue
        if _OTHER_SECTION.match(line) or line.strip().startswith(":"):
            in_args, current = False, None
            continue
        if in_args and (m := _GOOGLE_PARAM.match(line)):
            current = m.group(1).lstrip("*")
            params[current] = m.group(3).strip()
        elif current is not None and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
        elif not params and not in_args:
            summary.append(line)
    return "\n".join(summary).strip(), params


def function_schema(
    fn: Callable[..., Any],
    *,
    skip: Collection[str] = (),
    skip_types: Collection[type] = (),
    name: str | None = None,
) -> FunctionSchema:
    """Describe ``fn`` for the model. Parameters named in ``skip`` or annotated with a type in
    ``skip_types`` (an injected context, say; subscripted generics like ``Ctx[Deps]`` count as
    ``Ctx``) are left out of the schema. ``name`` overrides the function's own name."""
    name = name or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ConfigError("a tool function needs a name; pass name=... for lambdas")
    try:
        hints = get_type_hints(_annotated(fn))
    except NameError as exc:
        raise ConfigError(f"tool {name!r}: cannot resolve a type hint: {exc}") from exc
    description, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
    fields: dict[str, Any] = {}
    skipped: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname in skip:
            continue
        annotation = hints.get(pname, Any)
        origin = get_origin(annotation) or annotation
        if isinstance(origin, type) and origin in skip_types:
            skipped.append(pname)
            continue
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, Field(default, description=param_docs.get(pname)))
    model, schema = _arguments_model(name, fields)
    return FunctionSchema(name, description, schema, model, tuple(skipped))


def _annotated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Where ``fn``'s parameter annotations live (partials and callable objects delegate)."""
    if isinstance(fn, functools.partial):
        return _annotated(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return fn
    return type(fn).__call__  # a callable object


def _arguments_model(name: str, fields: dict[str, Any]) -> tuple[type[BaseModel], dict[str, Any]]:
    """The arguments model and its JSON schema, without pydantic's titles."""
    try:
        with warnings.catch_warnings():
            # A parameter named like a BaseModel attribute (``json``, ``copy``) shadows it;
            # harmless here, since the model only validates and its fields are read by name.
            warnings.filterwarnings("ignore", "Field name .* shadows", UserWarning)
            model: type[BaseModel] = create_model(f"{name}_arguments", **fields)
        schema = model.model_json_schema()
    except PydanticUserError as exc:
        raise ConfigError(f"tool {name!r}: a parameter type has no JSON schema: {exc}") from exc
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("required", [])
    return model, schema
