"""The capability table of the Llama 3.x family: one row of facts per model.

Per-model quirks live here as data, never as ``isinstance`` or name checks elsewhere.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from agentic.errors import UnknownModelError
from agentic.types import ToolPromptFormat

__all__ = [
    "GUARD_CATEGORIES_S1_S13",
    "GUARD_CATEGORIES_S1_S14",
    "ModelSpec",
    "known_models",
    "register_model",
    "resolve_model",
]

PromptStyle = Literal["llama3_1", "llama3_2", "guard", "base"]
"""How the system prompt is assembled: 3.1 and 3.2-Vision (date lines, tools in a user
message), 3.2 text and 3.3 (python_list in the system message, no dates), guard models and base
models (no assembly)."""

GUARD_CATEGORIES_S1_S14: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 15))
GUARD_CATEGORIES_S1_S13: tuple[str, ...] = GUARD_CATEGORIES_S1_S14[:13]

_JSON_TAG = (ToolPromptFormat.json, ToolPromptFormat.function_tag)
_PYLIST = (ToolPromptFormat.python_list,)


@dataclass(frozen=True)
class ModelSpec:
    """What the framework needs to know about one model."""

    id: str
    """The Hugging Face id, which is also what vLLM serves it as by default."""
    family: Literal["llama3.1", "llama3.2", "llama3.3", "llama-guard-3", "prompt-guard"]
    prompt_style: PromptStyle
    context_length: int = 131_072
    vision: bool = False
    tool_formats: tuple[ToolPromptFormat, ...] = ()
    """Supported custom-tool formats, the default first; empty when the model takes no tools."""
    builtin_tools: bool = False
    guard_categories: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    vllm_args: tuple[str, ...] = field(default=())
    """Extra ``vllm serve`` flags this model needs (``agentic model serve``)."""

    @property
    def default_tool_format(self) -> ToolPromptFormat | None:
        return self.tool_formats[0] if self.tool_formats else None

    @property
    def is_guard(self) -> bool:
        return bool(self.guard_categories)


def _instruct(
    hf: str,
    family: Literal["llama3.1", "llama3.2", "llama3.3"],
    short: str,
    *,
    style: PromptStyle,
    formats: tuple[ToolPromptFormat, ...],
    builtin: bool,
    vision: bool = False,
    vllm_args: tuple[str, ...] = (),
) -> ModelSpec:
    return ModelSpec(
        id=hf,
        family=family,
        prompt_style=style,
        vision=vision,
        tool_formats=formats,
        builtin_tools=builtin,
        aliases=(short, short.lower(), hf.lower(), hf.split("/", 1)[1]),
        vllm_args=vllm_args,
    )


_VISION_ARGS = ("--max-model-len", "8192", "--max-num-seqs", "16", "--enforce-eager")
_LONG = ("--max-model-len", "32768")

_TABLE: list[ModelSpec] = [
    _instruct(
        "meta-llama/Llama-3.1-8B-Instruct",
        "llama3.1",
        "Llama3.1-8B-Instruct",
        style="llama3_1",
        formats=_JSON_TAG,
        builtin=True,
        vllm_args=_LONG,
    ),
    _instruct(
        "meta-llama/Llama-3.1-70B-Instruct",
        "llama3.1",
        "Llama3.1-70B-Instruct",
        style="llama3_1",
        formats=_JSON_TAG,
        builtin=True,
        vllm_args=(*_LONG, "--tensor-parallel-size", "4"),
    ),
    _instruct(
        "meta-llama/Llama-3.1-405B-Instruct-FP8",
        "llama3.1",
        "Llama3.1-405B-Instruct",
        style="llama3_1",
        formats=_JSON_TAG,
        builtin=True,
        vllm_args=(*_LONG, "--tensor-parallel-size", "8"),
    ),
    _instruct(
        "meta-llama/Llama-3.2-1B-Instruct",
        "llama3.2",
        "Llama3.2-1B-Instruct",
        style="llama3_2",
        formats=_PYLIST,
        builtin=False,
        vllm_args=_LONG,
    ),
    _instruct(
        "meta-llama/Llama-3.2-3B-Instruct",
        "llama3.2",
        "Llama3.2-3B-Instruct",
        style="llama3_2",
        formats=_PYLIST,
        builtin=False,
        vllm_args=_LONG,
    ),
    _instruct(
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "llama3.2",
        "Llama3.2-11B-Vision-Instruct",
        style="llama3_1",
        formats=_JSON_TAG,
        builtin=True,
        vision=True,
        vllm_args=_VISION_ARGS,
    ),
    _instruct(
        "meta-llama/Llama-3.2-90B-Vision-Instruct",
        "llama3.2",
        "Llama3.2-90B-Vision-Instruct",
        style="llama3_1",
        formats=_JSON_TAG,
        builtin=True,
        vision=True,
        vllm_args=(*_VISION_ARGS, "--tensor-parallel-size", "8"),
    ),
    _instruct(
        "meta-llama/Llama-3.3-70B-Instruct",
        "llama3.3",
        "Llama3.3-70B-Instruct",
        style="llama3_2",
        formats=_PYLIST,
        builtin=True,
        vllm_args=(*_LONG, "--tensor-parallel-size", "4"),
    ),
    ModelSpec(
        id="meta-llama/Llama-3.1-8B",
        family="llama3.1",
        prompt_style="base",
        aliases=("Llama3.1-8B", "llama3.1-8b", "meta-llama/llama-3.1-8b", "Llama-3.1-8B"),
    ),
    ModelSpec(
        id="meta-llama/Llama-3.2-1B",
        family="llama3.2",
        prompt_style="base",
        aliases=("Llama3.2-1B", "llama3.2-1b", "meta-llama/llama-3.2-1b", "Llama-3.2-1B"),
    ),
    ModelSpec(
        id="meta-llama/Llama-3.2-3B",
        family="llama3.2",
        prompt_style="base",
        aliases=("Llama3.2-3B", "llama3.2-3b", "meta-llama/llama-3.2-3b", "Llama-3.2-3B"),
    ),
    ModelSpec(
        id="meta-llama/Llama-Guard-3-8B",
        family="llama-guard-3",
        prompt_style="guard",
        guard_categories=GUARD_CATEGORIES_S1_S14,
        aliases=("Llama-Guard-3-8B", "llama-guard-3-8b", "meta-llama/llama-guard-3-8b"),
    ),
    ModelSpec(
        id="meta-llama/Llama-Guard-3-1B",
        family="llama-guard-3",
        prompt_style="guard",
        guard_categories=GUARD_CATEGORIES_S1_S13,
        aliases=("Llama-Guard-3-1B", "llama-guard-3-1b", "meta-llama/llama-guard-3-1b"),
    ),
    ModelSpec(
        id="meta-llama/Llama-Guard-3-11B-Vision",
        family="llama-guard-3",
        prompt_style="guard",
        vision=True,
        guard_categories=GUARD_CATEGORIES_S1_S13,
        aliases=(
            "Llama-Guard-3-11B-Vision",
            "llama-guard-3-11b-vision",
            "meta-llama/llama-guard-3-11b-vision",
        ),
        vllm_args=_VISION_ARGS,
    ),
]

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Declare a model the table does not know (a fine-tune, a local path); returns it."""
    for key in (spec.id, *spec.aliases):
        _REGISTRY[key] = spec
        _REGISTRY[key.lower()] = spec
    return spec


for _spec in _TABLE:
    register_model(_spec)


def known_models() -> list[str]:
    """The ids of every known model, in table order (then user-registered ones)."""
    return list(dict.fromkeys(spec.id for spec in _REGISTRY.values()))


def resolve_model(model: str | ModelSpec) -> ModelSpec:
    """The :class:`ModelSpec` for an id or alias; :class:`UnknownModelError` if none."""
    if isinstance(model, ModelSpec):
        return model
    spec = _REGISTRY.get(model) or _REGISTRY.get(model.lower())
    if spec is None:
        known = known_models()
        names = {key.lower(): spec.id for key, spec in _REGISTRY.items()}
        close = difflib.get_close_matches(model.lower(), list(names), n=1, cutoff=0.8)
        raise UnknownModelError(model, known, names[close[0]] if close else None)
    return spec
