"""JSON schemas for Python functions: from type hints, defaults and the docstring."""

from __future__ import annotations

import functools
import inspect
import keyword
import re
import types
import unicodedata
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, Field, PydanticUserError, create_model
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError

from agentic.errors import ConfigError

if TYPE_CHECKING:
    from agentic.types import ToolDefinition

__all__ = ["FunctionSchema", "arguments_by_name", "function_schema", "pythonic_name_problems"]

_PARAM_SECTIONS: Final = frozenset(
    {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
    | {"other parameters", "other args", "other arguments"}
)
_SECTIONS: Final = _PARAM_SECTIONS | {
    *("returns", "return", "yields", "yield", "receives", "raises", "raise", "warns"),
    *("note", "notes", "example", "examples", "see also", "warning", "warnings", "references"),
    *("todo", "attributes", "methods", "tip", "hint", "important", "caution", "attention"),
}
_RULE = re.compile(r"^\s*-{3,}\s*$")  # under a NumPy section name
_FIELD = re.compile(r"^:\w[^:]*:")  # a reST field: ``:param x:``, ``:returns:``
_REST_PARAM = re.compile(
    r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[\w\[\], |.]+\s+)?\*{0,2}(\w+)\s*:(.*)$"
)
_ENTRY: Final = {
    "google": re.compile(r"^(?P<names>\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:(?P<desc>.*)$"),
    "numpy": re.compile(r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$"),
}


@dataclass(frozen=True, slots=True)
class FunctionSchema:
    name: str
    description: str
    parameters: dict[str, Any]
    arguments: type[BaseModel]
    """A model of the schema's parameters: validates a call's arguments (built once). Its
    fields are aliased by parameter name; read a validated instance with
    :func:`arguments_by_name`."""
    skipped: tuple[str, ...]
    """Parameters left out because of ``skip_types`` (to be injected by the caller)."""


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The text before the first section, and per-parameter descriptions.

    Google (``Args:``, ``Keyword Args:``), NumPy (``Parameters`` over a ``----`` rule) and reST
    (``:param x:``) styles; other sections (``Returns:``, ``Raises:``, ``Note:``...) are dropped.
    """
    summary: list[str] = []
    params: dict[str, str] = {}
    for kind, body in _sections(inspect.cleandoc(doc).splitlines()):
        if kind == "summary":
            summary = body
        elif kind in _ENTRY:
            _read_entries(body, _ENTRY[kind], params)
        elif kind == "fields":
            _read_fields(body, params)
    return "\n".join(summary).strip(), params


def _sections(lines: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``(kind, lines)`` blocks: summary, google/numpy parameters, reST fields or other."""
    kind, i = "summary", 0
    body: list[str] = []
    while i < len(lines):
        header = _header(lines, i)
        starts_fields = kind != "fields" and _FIELD.match(lines[i]) is not None
        if header is not None or starts_fields:
            yield kind, body
            kind, length = header or ("fields", 0)  # a field line is the field list's first
            body, i = [], i + length
            continue
        body.append(lines[i])
        i += 1
    yield kind, body


def _header(lines: list[str], i: int) -> tuple[str, int] | None:
    """The kind of the section whose header starts at ``lines[i]``, and its header's length."""
    line = lines[i]
    if not line or line[0].isspace():
        return None  # section headers are not indented
    text = line.strip().lower()
    name = text.removesuffix(":").rstrip()
    if i + 1 < len(lines) and _RULE.match(lines[i + 1]):
        return ("numpy" if name in _PARAM_SECTIONS else "other"), 2
    if text.endswith(":") and name in _SECTIONS:
        return ("google" if name in _PARAM_SECTIONS else "other"), 1
    return None


def _read_entries(body: list[str], entry: re.Pattern[str], params: dict[str, str]) -> None:
    """Google or NumPy entries: ``name (type): text`` / ``name : type``, then deeper lines."""
    indent: int | None = None
    current: list[str] = []
    for line in body:
        text = line.strip()
        if not text:
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth <= indent and (m := entry.match(text)):
            current = [n.strip().lstrip("*") for n in m.group("names").split(",")]
            for pname in current:
                params[pname] = (m.groupdict().get("desc") or "").strip()
        elif depth > indent:
            for pname in current:
                params[pname] = f"{params[pname]} {text}".strip()
        else:
            current = []


def _read_fields(body: list[str], params: dict[str, str]) -> None:
    """reST fields: ``:param x: text`` and its continuation lines; other fields are skipped."""
    current: str | None = None
    for line in body:
        text = line.strip()
        if _FIELD.match(text):
            m = _REST_PARAM.match(text)
            current = m.group(1) if m else None
            if m:
                params[m.group(1)] = m.group(2).strip()
        elif current is not None and text:
            params[current] = f"{params[current]} {text}".strip()


def function_schema(
    fn: Callable[..., Any],
    *,
    skip: Collection[str] = (),
    skip_types: Collection[type] = (),
    name: str | None = None,
) -> FunctionSchema:
    """Describe ``fn`` for the model. Parameters named in ``skip`` or annotated with a type in
    ``skip_types`` (an injected context, say; ``Ctx[Deps]`` and ``Ctx | None`` count as
    ``Ctx``) are left out of the schema. ``name`` overrides the function's own name."""
    name = name or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ConfigError("a tool function needs a name; pass name=... for lambdas")
    try:
        hints = get_type_hints(_annotated(fn))
    except NameError as exc:
        raise ConfigError(f"tool {name!r}: cannot resolve a type hint: {exc}") from exc
    description, param_docs = _parse_docstring(_docstring(fn))
    fields: dict[str, Any] = {}
    skipped: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ConfigError(
                f"tool {name!r}: {stars}{pname} would never receive anything (the model "
                "passes only the named parameters it is shown); declare each parameter"
            )
        if pname in skip:
            continue
        annotation = hints.get(pname, Any)
        if _is_injected(annotation, skip_types):
            skipped.append(pname)
            continue
        default = ... if param.default is param.empty else param.default
        # Fields are named p0, p1... and aliased by the parameter's name, so a parameter may
        # be called anything pydantic reserves on its models (model_config, _private...).
        field = Field(default, alias=pname, description=param_docs.get(pname))
        fields[f"p{len(fields)}"] = (annotation, field)
    model, schema = _arguments_model(name, fields)
    return FunctionSchema(name, description, schema, model, tuple(skipped))


def arguments_by_name(values: BaseModel) -> dict[str, Any]:
    """A validated :attr:`FunctionSchema.arguments` instance as ``{parameter name: value}``."""
    fields = type(values).model_fields
    return {field.alias or key: getattr(values, key) for key, field in fields.items()}


def pythonic_name_problems(definition: ToolDefinition) -> list[str]:
    """What the Llama 3.2 pythonic call format (``[name(arg=...)]``) cannot carry, one line each.

    That format is parsed as Python, so the tool name and every top-level parameter name must
    be a Python identifier that is not a keyword (``get-weather``, ``import``, ``from`` are
    not). Empty when the tool can be called that way; JSON-based formats carry any name.
    """
    problems = []
    if not _is_python_name(definition.name):
        problems.append(f"tool name {definition.name!r} is not a Python identifier")
    for pname in definition.parameters.get("properties") or {}:
        if not _is_python_name(pname):
            problems.append(
                f"tool {definition.name!r}: parameter {pname!r} is not a Python identifier"
            )
    return problems


def _is_python_name(name: str) -> bool:
    # Python reads identifiers NFKC-normalised: "ﬁnd" would come back as "find".
    normal = unicodedata.normalize("NFKC", name) == name
    return name.isidentifier() and not keyword.iskeyword(name) and normal


def _is_injected(annotation: Any, skip_types: Collection[type]) -> bool:
    """Whether ``annotation`` is one of ``skip_types``, maybe subscripted or optional."""
    origin = get_origin(annotation) or annotation
    if origin is Union or origin is types.UnionType:
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return len(rest) == 1 and _is_injected(rest[0], skip_types)
    return isinstance(origin, type) and origin in skip_types


def _docstring(fn: Callable[..., Any]) -> str:
    """``fn``'s docstring, or that of what it wraps (a partial's function, ``__wrapped__``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.getdoc(fn) or inspect.getdoc(inspect.unwrap(fn)) or ""


def _annotated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Where ``fn``'s parameter annotations live (partials and callable objects delegate)."""
    if isinstance(fn, functools.partial):
        return _annotated(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return fn
    wrapped = getattr(fn, "__wrapped__", None)  # a wrapping object: its signature is this one's
    return _annotated(wrapped) if callable(wrapped) else type(fn).__call__


def _arguments_model(name: str, fields: dict[str, Any]) -> tuple[type[BaseModel], dict[str, Any]]:
    """The arguments model and its JSON schema, without pydantic's titles."""
    try:
        model: type[BaseModel] = create_model(f"{name}_arguments", **fields)
        schema = model.model_json_schema()
    except (PydanticSchemaGenerationError, PydanticInvalidForJsonSchema) as exc:
        raise ConfigError(f"tool {name!r}: a parameter type has no JSON schema: {exc}") from exc
    except PydanticUserError as exc:
        raise ConfigError(f"tool {name!r}: cannot describe its parameters: {exc}") from exc
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("required", [])
    return model, schema
