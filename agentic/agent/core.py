"""Building an agent: resolve names, check the config against the model, fail early.

:func:`build_core` turns an :class:`AgentConfig` plus the objects passed to the agent into an
:class:`AgentCore`, the immutable bundle every step of every turn reads.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import importlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jsonschema

from agentic._functions import pythonic_name_problems
from agentic.agent.config import AgentConfig
from agentic.agent.guarding import CODE_INTERPRETER, CodeScanner
from agentic.agent.prompting import TokenCounter
from agentic.errors import ConfigError, UnsupportedFeatureError
from agentic.inference.base import InferenceBackend
from agentic.llama.models import ModelSpec, resolve_model
from agentic.llama.prompt import PromptCache, render_prompt, resolve_tool_format
from agentic.memory.base import Retriever
from agentic.shields.base import Shield, TextScanner
from agentic.tools.base import Tool
from agentic.tools.executor import ToolExecutor
from agentic.types import (
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolPromptFormat,
    UserMessage,
    json_schema_of,
)

__all__ = ["AgentCore", "build_core"]

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class AgentCore:
    """A validated agent: what the turn graph's steps need, resolved once."""

    config: AgentConfig
    spec: ModelSpec
    backend: InferenceBackend
    executor: ToolExecutor
    tool_defs: tuple[ToolDefinition, ...]
    """Every tool offered to the model (server-side, then client-side), in prompt order."""
    client_tools: frozenset[str]
    tool_format: ToolPromptFormat
    input_shields: tuple[Shield, ...]
    output_shields: tuple[Shield, ...]
    retrievers: tuple[Retriever, ...]
    response_schema: dict[str, Any] | None
    system: SystemMessage
    data_shields: tuple[TextScanner, ...] = ()
    """Scanners of tool results and retrieved chunks before they enter the prompt."""
    code_shields: tuple[CodeScanner, ...] = ()
    """Scanners of code-interpreter code before it runs."""
    response_validator: Any = None
    """Checks answers against a response format given as a JSON schema (a pydantic model
    validates them itself)."""
    deps: Any = None
    token_counter: TokenCounter | None = None
    prompts: PromptCache = field(default_factory=PromptCache)
    budget_cache: dict[str, Any] = field(default_factory=dict)
    """The context budget, found on the first inference (it may ask the server)."""
    owned_tools: tuple[Tool, ...] = ()
    """Tools the agent built from built-in names: the agent closes them."""
    client_validators: Mapping[str, Any] = field(default_factory=dict)
    """JSON-schema validators of the client tools' arguments, by tool name."""

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tool_defs]

    def client_call_problem(self, call: ToolCall) -> str | None:
        """Why a client tool's call cannot go to the caller (its arguments miss the tool's
        schema), as the model reads it; None for a valid call or another tool's."""
        validator = self.client_validators.get(call.tool_name)
        if validator is None:
            return None
        errors = sorted(validator.iter_errors(call.arguments), key=lambda e: list(e.path))
        if not errors:
            return None
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}" for e in errors
        )
        return f"Invalid arguments for tool '{call.tool_name}': {details}"

    def waits_for_client(self, call: ToolCall) -> bool:
        """Whether the turn stops for the caller to run ``call`` (a valid client tool call)."""
        return call.tool_name in self.client_tools and self.client_call_problem(call) is None


_BUILTIN_TOOLS: dict[str, tuple[str, str]] = {
    "brave_search": ("agentic.tools.brave", "BraveSearch"),
    "wolfram_alpha": ("agentic.tools.wolfram", "WolframAlpha"),
    "code_interpreter": ("agentic.tools.code_interpreter", "CodeInterpreter"),
}
"""Built-in tool names a config may use without passing an object: built with defaults
(keys from the environment), and closed by the agent that built them."""


def builtin_tool(name: str) -> Tool:
    """The built-in tool ``name`` with its defaults; its constructor checks keys and sandbox."""
    module, cls = _BUILTIN_TOOLS[name]
    made: Tool = getattr(importlib.import_module(module), cls)()
    return made


def _resolve(
    kind: str,
    items: Sequence[str | T],
    known: Mapping[str, T],
    cls: type,
    default: Callable[[str], T | None] = lambda _: None,
    builtin: Sequence[str] = (),
) -> list[T]:
    """Objects for a config list that mixes objects and names of objects in ``known``.

    A name not in ``known`` may still have a ``default`` (the ``builtin`` names).
    """
    out: list[T] = []
    for item in items:
        if isinstance(item, str):
            if item not in known and (made := default(item)) is not None:
                out.append(made)
            elif item not in known:
                raise ConfigError(_unknown(kind, item, sorted(known), builtin))
            else:
                out.append(known[item])
        elif isinstance(item, cls):
            out.append(item)
        else:
            raise ConfigError(f"{kind} {item!r} is neither a name nor a {cls.__name__}")
    return out


def _unknown(kind: str, name: str, passed: Sequence[str], builtin: Sequence[str]) -> str:
    """Why ``name`` names nothing, with the closest name that does."""
    close = difflib.get_close_matches(name, [*passed, *builtin], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    have = f"passed: {', '.join(passed) or 'none'}"
    if builtin:
        have += f"; built in: {', '.join(builtin)}"
    return (
        f"unknown {kind} {name!r} in the agent config{hint}; pass it to "
        f"Agent({kind}s=[...]) ({have})"
    )


def _by_name(kind: str, objects: Sequence[Any], key: Callable[[Any], str]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for obj in objects:
        name = key(obj)
        if name in named and named[name] is not obj:
            raise ConfigError(f"two different {kind}s are named {name!r}")
        named[name] = obj
    return named


def _check_duplicates(names: Sequence[str]) -> None:
    dupes = sorted(name for name, n in Counter(names).items() if n > 1)
    if dupes:
        raise ConfigError(f"duplicate tool names in the agent: {', '.join(dupes)}")


def _check_model(config: AgentConfig, spec: ModelSpec, defs: Sequence[ToolDefinition]) -> None:
    """Ask the prompt layer to render a probe: it raises for every tool/model mismatch."""
    if spec.is_guard or spec.prompt_style == "base":
        raise UnsupportedFeatureError(
            f"{spec.id} is not a chat model; an agent needs an instruct model "
            "(guard models are used as shields)"
        )
    if defs and not spec.tool_formats and not spec.builtin_tools:
        raise UnsupportedFeatureError(f"{spec.id} does not take tools; remove them from the agent")
    builtin = [d.name for d in defs if d.is_builtin]
    if builtin and not spec.builtin_tools:
        raise UnsupportedFeatureError(
            f"{spec.id} was not trained for the built-in tools {', '.join(builtin)}; "
            "use a Llama 3.1 / 3.3 model or define them as custom tools"
        )
    names = {d.name for d in defs}
    choice = config.tool_choice
    if choice not in ("auto", "none", "required") and choice not in names:
        have = ", ".join(sorted(names)) or "no tools"
        raise ConfigError(f"tool_choice {choice!r} is not one of the agent's tools ({have})")
    if choice == "required" and not defs:
        raise ConfigError("tool_choice 'required' needs at least one tool")
    window = config.context_length or spec.context_length
    max_tokens = config.sampling.max_tokens
    if max_tokens is not None and max_tokens >= window:
        raise ConfigError(
            f"sampling.max_tokens ({max_tokens}) leaves no room for the prompt in {spec.id}'s "
            f"context of {window} tokens; lower max_tokens (it bounds the answer's length)"
        )
    fmt = resolve_tool_format(spec, config.tool_prompt_format)
    if defs and fmt is ToolPromptFormat.python_list:
        problems = [p for d in defs if not d.is_builtin for p in pythonic_name_problems(d)]
        if problems:
            raise ConfigError(
                f"{spec.id} calls tools in Llama 3.2's pythonic format ([name(arg=...)]), "
                f"which cannot carry these names: {'; '.join(problems)}; rename them to "
                "Python identifiers that are no keywords"
            )
    render_prompt(
        [UserMessage(content="probe")],
        model=spec,
        tools=defs,
        tool_prompt_format=config.tool_prompt_format,
        tool_choice=choice,
        today=_dt.date(2024, 1, 1),
    )


def _response_schema(config: AgentConfig) -> dict[str, Any] | None:
    """The response format as a JSON schema, checked to be one (a typo such as
    ``type: objekt`` fails here, not when vLLM gets the schema)."""
    if config.response_format is None:
        return None
    schema = json_schema_of(config.response_format)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise ConfigError(
            f"response_format is no valid JSON schema: {exc.message} (at {where})"
        ) from exc
    return schema


def _client_validators(tools: Sequence[ToolDefinition]) -> dict[str, Any]:
    """A validator of each client tool's arguments, its schema checked to be one (a typo
    such as ``type: strin`` fails here, not when the model calls the tool)."""
    validators: dict[str, Any] = {}
    for tool in tools:
        cls = jsonschema.validators.validator_for(tool.parameters)
        try:
            cls.check_schema(tool.parameters)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "the top level"
            raise ConfigError(
                f"client tool {tool.name!r}: its parameters are no valid JSON schema: "
                f"{exc.message} (at {where})"
            ) from exc
        validators[tool.name] = cls(tool.parameters)
    return validators


def _shields_of(
    kind: str, items: Sequence[str | T], named: Mapping[str, Any], cls: type
) -> list[T]:
    """Shields of one kind from the config, by object or by name; a named object of the wrong
    kind is a clear error (a Llama Guard given as a data shield, say)."""
    found: list[T] = _resolve("shield", items, named, cls)
    for item, shield in zip(items, found, strict=True):
        if not isinstance(shield, cls):
            raise ConfigError(
                f"{kind} {item!r} is a {type(shield).__name__}, not a {cls.__name__} "
                f"(it needs {_NEEDS[cls]})"
            )
    return found


_NEEDS: dict[type, str] = {
    Shield: "name and async check(messages, stage=...)",
    TextScanner: "name and async scan(texts)",
    CodeScanner: "name and async scan_code(code, language)",
}


def _for_tools(shields: Sequence[Shield], code_interpreter: bool) -> dict[int, Shield]:
    """Each shield as this agent needs it: Llama Guard offers S14 (code interpreter abuse)
    exactly when the agent has the code interpreter. Keyed by the given object's id."""
    adapted: dict[int, Shield] = {}
    for shield in shields:
        adapt = getattr(shield, "with_code_interpreter", None)
        adapted[id(shield)] = adapt(code_interpreter) if callable(adapt) else shield
    return adapted


def _token_counter(backend: Any, model: str) -> TokenCounter | None:
    """Exact prompt-token counting through the backend, when it can count."""
    count = getattr(backend, "count_tokens", None)
    if not callable(count):
        return None

    async def counter(text: str) -> int:
        return int(await count(text, model=model))

    return counter


def build_core(
    config: AgentConfig,
    backend: InferenceBackend,
    *,
    tools: Sequence[Tool] = (),
    shields: Sequence[Shield | TextScanner | CodeScanner] = (),
    memory_banks: Sequence[Retriever] = (),
    deps: Any = None,
) -> AgentCore:
    """Validate ``config`` with the given objects; every mistake is a clear error here."""
    spec = resolve_model(config.model)
    owned: list[Tool] = []

    def default_tool(name: str) -> Tool | None:
        if name not in _BUILTIN_TOOLS:
            return None
        owned.append(builtin_tool(name))
        return owned[-1]

    server_tools = _resolve(
        "tool",
        config.tools,
        _by_name("tool", tools, lambda t: t.definition.name),
        Tool,
        default_tool,
        sorted(_BUILTIN_TOOLS),
    )
    defs = [t.definition for t in server_tools] + list(config.client_tools)
    _check_duplicates([d.name for d in defs])
    _check_model(config, spec, defs)
    named_shields = _by_name("shield", shields, lambda s: s.name)
    inputs = _shields_of("input shield", config.input_shields, named_shields, Shield)
    outputs = _shields_of("output shield", config.output_shields, named_shields, Shield)
    adapted = _for_tools([*inputs, *outputs], any(d.name == CODE_INTERPRETER for d in defs))
    named_banks = _by_name("memory_bank", memory_banks, lambda b: b.bank_id)
    return AgentCore(
        config=config,
        spec=spec,
        backend=backend,
        executor=ToolExecutor(
            server_tools, timeout=config.tool_timeout, max_output_chars=config.max_tool_output_chars
        ),
        tool_defs=tuple(defs),
        client_tools=frozenset(d.name for d in config.client_tools),
        client_validators=_client_validators(config.client_tools),
        tool_format=resolve_tool_format(spec, config.tool_prompt_format),
        input_shields=tuple(adapted[id(s)] for s in inputs),
        output_shields=tuple(adapted[id(s)] for s in outputs),
        data_shields=tuple(
            _shields_of("data shield", config.data_shields, named_shields, TextScanner)
        ),
        code_shields=tuple(
            _shields_of("code shield", config.code_shields, named_shields, CodeScanner)
        ),
        retrievers=tuple(_resolve("memory_bank", config.memory_banks, named_banks, Retriever)),
        response_schema=(schema := _response_schema(config)),
        response_validator=(
            jsonschema.validators.validator_for(schema)(schema)
            if schema is not None and isinstance(config.response_format, dict)
            else None
        ),
        system=SystemMessage(content=config.instructions),
        deps=deps,
        token_counter=_token_counter(backend, config.model),
        owned_tools=tuple(owned),
    )
