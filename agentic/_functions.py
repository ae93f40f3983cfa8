"""JSON schemas for Python functions: from type hints, defaults and the docstring."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import Field, create_model

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
    fn: Callable[..., Any], *, skip: Collection[str] = (), skip_types: Collection[type] = ()
) -> FunctionSchema:
    """Describe ``fn`` for the model. Parameters named in ``skip`` or annotated with a type in
    ``skip_types`` (an injected context, say) are left out of the schema."""
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ConfigError("a tool function needs a name; pass name=... for lambdas")
    try:
        hints = get_type_hints(fn)
    except NameError as exc:
        raise ConfigError(f"tool {name!r}: cannot resolve a type hint: {exc}") from exc
    description, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname in skip:
            continue
        annotation = hints.get(pname, Any)
        if isinstance(annotation, type) and annotation in skip_types:
            continue
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, Field(default, description=param_docs.get(pname)))
    model = create_model(f"{name}_arguments", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("required", [])
    return FunctionSchema(name=name, description=description, parameters=schema)
