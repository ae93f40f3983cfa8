"""Llama Guard 3 as a shield: a guard model on an inference backend, prompted byte-exact.

The prompt is rendered here (:mod:`agentic.shields.guard_prompt`) and sent as a raw completion
(``InferenceRequest.prompt``): never through a second chat template, never with a second
``<|begin_of_text|>``. 11B-Vision gets the user's image with it (``InferenceRequest.images``).
The answer is read by :func:`~agentic.shields.guard_output.parse_guard_output`, which fails closed.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from agentic.errors import BackendTimeoutError, ConfigError
from agentic.inference.base import InferenceBackend, InferenceRequest, complete
from agentic.llama.models import ModelSpec
from agentic.shields.base import ShieldStage, Violation
from agentic.shields.guard_output import GuardVerdict, parse_guard_output
from agentic.shields.guard_prompt import (
    DEFAULT_GUARD_MODEL,
    GUARD_CATEGORY_NAMES,
    GuardFormat,
    GuardPrompt,
    GuardRole,
    guard_format_of,
    guard_spec,
    render_guard_prompt,
)
from agentic.types import Message, SamplingParams

__all__ = ["LlamaGuard"]

_CODE_INTERPRETER_CATEGORY = "S14"
_ROLE_OF_STAGE: Mapping[ShieldStage, GuardRole] = {"input": "User", "output": "Agent"}
_WHOSE: Mapping[GuardRole, str] = {"User": "the user's message", "Agent": "the agent's answer"}


def _offered(spec: ModelSpec, excluded: Sequence[str], code_interpreter: bool) -> tuple[str, ...]:
    skip = {c.strip().upper() for c in excluded}
    unknown = sorted(skip - set(spec.guard_categories))
    if unknown:
        raise ConfigError(
            f"excluded_categories names {', '.join(unknown)}, which {spec.id} does not have; "
            f"its categories are {spec.guard_categories[0]}-{spec.guard_categories[-1]}"
        )
    if not code_interpreter:
        skip.add(_CODE_INTERPRETER_CATEGORY)  # abuse of a tool the agent does not have
    offered = tuple(c for c in spec.guard_categories if c not in skip)
    if not offered:
        raise ConfigError("excluded_categories leaves Llama Guard no category to check")
    return offered


class LlamaGuard:
    """Judges the user's message (``input`` stage) or the agent's answer (``output`` stage).

    ``model`` is a Llama Guard 3 model (8B: S1-S14; 1B and 11B-Vision: S1-S13) as the backend
    serves it. ``excluded_categories`` are left out of the prompt (the others keep their
    numbers); S14, code interpreter abuse, is offered only with ``code_interpreter=True`` (8B
    only has it). ``timeout`` bounds one check (:class:`BackendTimeoutError`); ``refusal`` is
    what the user is told instead (default: the agent's refusal message).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        model: str = DEFAULT_GUARD_MODEL,
        *,
        excluded_categories: Sequence[str] = (),
        code_interpreter: bool = False,
        name: str = "llama_guard",
        max_tokens: int = 20,
        timeout: float | None = 30.0,
        context_length: int | None = None,
        prompt_format: GuardFormat | None = None,
        refusal: str | None = None,
    ) -> None:
        self.spec = guard_spec(model)
        self.prompt_format = prompt_format or guard_format_of(self.spec)
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1 (got {max_tokens})")
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout must be positive seconds or None (got {timeout})")
        if context_length is not None and context_length <= max_tokens:
            raise ConfigError(f"context_length ({context_length}) must exceed max_tokens")
        self.backend = backend
        self.model = model
        self.categories = _offered(self.spec, excluded_categories, code_interpreter)
        self.code_interpreter = code_interpreter
        self._excluded = tuple(excluded_categories)
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.refusal = refusal
        self._name = name
        self._context_length = context_length
        self._not_counted = tuple(c for c in self.spec.guard_categories if c not in self.categories)

    def __repr__(self) -> str:
        return f"LlamaGuard({self.model!r}, categories={','.join(self.categories)})"

    @property
    def name(self) -> str:
        return self._name

    def with_code_interpreter(self, enabled: bool = True) -> LlamaGuard:
        """This guard for an agent with (or without) the code interpreter: S14 offered exactly
        then (unless excluded, or the model has no S14). ``self`` when nothing changes."""
        categories = _offered(self.spec, self._excluded, enabled)
        if enabled == self.code_interpreter and categories == self.categories:
            return self
        twin = copy.copy(self)
        twin.code_interpreter = enabled
        twin.categories = categories
        twin._not_counted = tuple(c for c in self.spec.guard_categories if c not in categories)
        return twin

    async def check(self, messages: Sequence[Message], *, stage: ShieldStage) -> Violation | None:
        """Judge the last message of ``messages``; a :class:`Violation` unless it is safe."""
        prompt, verdict = await self.judge(messages, stage=stage)
        return None if verdict.safe else self._violation(prompt, verdict)

    async def judge(
        self, messages: Sequence[Message], *, stage: ShieldStage
    ) -> tuple[GuardPrompt, GuardVerdict]:
        """The prompt sent and the verdict read, for callers that want more than a violation."""
        prompt = render_guard_prompt(
            messages,
            model=self.spec,
            role=_ROLE_OF_STAGE[stage],
            categories=self.categories,
            prompt_format=self.prompt_format,
            max_prompt_tokens=await self._prompt_budget(),
        )
        request = InferenceRequest(
            model=self.model,
            prompt=prompt.text,
            images=prompt.images,
            sampling=SamplingParams(temperature=0.0, top_p=1.0, max_tokens=self.max_tokens),
        )
        try:
            async with asyncio.timeout(self.timeout):
                completion = await complete(self.backend, request)
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"Llama Guard ({self.model}) did not answer within {self.timeout} s"
            ) from exc
        verdict = parse_guard_output(
            completion.text, excluded=self._not_counted, known=self.spec.guard_categories
        )
        return prompt, verdict

    async def _prompt_budget(self) -> int:
        """Tokens the prompt may take: the guard's context (as served) minus the answer."""
        if self._context_length is None:
            self._context_length = await _served_context(self.backend, self.model, self.spec)
        return self._context_length - self.max_tokens

    def _violation(self, prompt: GuardPrompt, verdict: GuardVerdict) -> Violation:
        categories: list[str]
        if verdict.error is not None:
            categories = [verdict.error]
            message = f"Llama Guard's answer is not a verdict ({verdict.error}): {verdict.raw!r}"
        else:
            categories = list(verdict.categories)
            named = [f"{c} ({GUARD_CATEGORY_NAMES[c]})" for c in verdict.categories]
            if verdict.unknown_codes:
                categories.append("unknown_category")
                named.append("unknown codes " + ", ".join(verdict.unknown_codes))
            message = f"Llama Guard flagged {_WHOSE[prompt.role]}: {'; '.join(named)}"
        metadata: dict[str, Any] = {
            "model": self.spec.id,
            "role": prompt.role,
            "raw_output": verdict.raw,
            "checked_categories": list(prompt.categories),
            "unknown_codes": list(verdict.unknown_codes),
            "suppressed_by_exclusion": list(verdict.suppressed_by_exclusion),
            "omitted": dict(prompt.omitted),
            "dropped_turns": prompt.dropped_turns,
        }
        return Violation(
            shield=self.name,
            categories=categories,
            message=message,
            metadata=metadata,
            refusal=self.refusal,
        )


async def _served_context(backend: InferenceBackend, model: str, spec: ModelSpec) -> int:
    """The context the backend serves the guard with, if it says (vLLM's ``max_model_len``)."""
    reported = getattr(backend, "context_length", None)
    if callable(reported):
        value = reported(model)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, int) and value > 0:
            return value
    return spec.context_length
