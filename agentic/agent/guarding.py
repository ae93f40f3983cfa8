"""Shields on every path into and out of the model: running them, recording them, and
screening what tools and memory banks hand the model.

- :func:`run_shields`: a stage's shields in parallel, each under ``shield_timeout``; a timeout or
  an exception counts as ``shield_failure`` says (``block`` by default: fail closed).
- :class:`ShieldRecorder`: one :class:`ShieldCallStep` made of one or more checks, with its events.
- :func:`screen_tool_responses` / :func:`screen_chunks`: the data shields (Prompt Guard) on
  untrusted text; flagged text is withheld from the model and replaced by a short notice.
- :func:`run_tool_calls`: the code shields on code-interpreter calls before the sandbox runs them.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from agentic.agent.types import (
    CodeCheck,
    ScreenedContent,
    ShieldCallStep,
    ShieldOutcome,
    StepComplete,
    StepStart,
    StepType,
    new_id,
    utcnow,
)
from agentic.memory.base import RetrievedChunk
from agentic.shields.base import ScanVerdict, Shield, ShieldStage, TextScanner, Violation, screen
from agentic.shields.code_shield import CodeVerdict
from agentic.tools.base import ToolContext, ToolErrorKind, ToolResponse
from agentic.types import Message, ToolCall, content_text

if TYPE_CHECKING:
    from agentic.agent.core import AgentCore

__all__ = [
    "CODE_INTERPRETER",
    "CodeScanner",
    "ShieldRecorder",
    "run_shields",
    "run_tool_calls",
    "screen_chunks",
    "screen_tool_responses",
]

CODE_INTERPRETER = "code_interpreter"
"""The tool whose calls the code shields gate (and that makes Llama Guard offer S14)."""

T = TypeVar("T")
Emit = Callable[[Any], None]
_Failure = Literal["shield_timeout", "shield_error"]


@runtime_checkable
class CodeScanner(Protocol):
    """Scans code before it runs (:class:`~agentic.shields.CodeShield`): the verdict's
    ``treatment`` says whether to block, warn or let it through."""

    @property
    def name(self) -> str: ...

    async def scan_code(self, code: str, language: str | None = "python") -> CodeVerdict: ...


# --- running one shield -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ran(Generic[T]):
    """What one shield call gave: its value, or why it gave none."""

    value: T | None
    failure: _Failure | None
    error: str | None
    started: _dt.datetime
    completed: _dt.datetime


async def _bounded(name: str, work: Awaitable[T], limit: float) -> _Ran[T]:
    """Await one shield call for ``limit`` seconds; a timeout or an exception is a failure."""
    started = utcnow()
    try:
        async with asyncio.timeout(limit) as scope:
            value = await work
    except asyncio.CancelledError:
        raise
    except TimeoutError as exc:
        if not scope.expired():  # the shield's own timeout, not ours
            return _Ran(None, "shield_error", _describe(exc), started, utcnow())
        error = f"{name} gave no verdict within {limit:g} s"
        return _Ran(None, "shield_timeout", error, started, utcnow())
    except Exception as exc:  # a shield boundary: its failure is recorded, never raised
        return _Ran(None, "shield_error", _describe(exc), started, utcnow())
    return _Ran(value, None, None, started, utcnow())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _blocks_on_failure(core: AgentCore) -> bool:
    return core.config.shield_failure == "block"


# --- message shields (input and output) ---------------------------------------------------


async def run_shields(
    core: AgentCore,
    shields: Sequence[Shield],
    messages: Sequence[Message],
    stage: ShieldStage,
    *,
    check: int = 0,
) -> list[ShieldOutcome]:
    """Every shield's outcome on ``messages``, all run at once, in shield order."""
    timeout = core.config.shield_timeout
    runs = await asyncio.gather(
        *(_bounded(s.name, s.check(messages, stage=stage), timeout) for s in shields)
    )
    return [_outcome(core, s, ran, check) for s, ran in zip(shields, runs, strict=True)]


def _outcome(
    core: AgentCore, shield: Shield, ran: _Ran[Violation | None], check: int
) -> ShieldOutcome:
    violation = ran.value
    if ran.failure is not None and _blocks_on_failure(core):
        violation = Violation(shield=shield.name, categories=[ran.failure], message=ran.error or "")
    return ShieldOutcome(
        shield=shield.name,
        started_at=ran.started,
        completed_at=ran.completed,
        violation=violation,
        error=ran.error,
        check=check,
    )


def first_violation(outcomes: Sequence[ShieldOutcome]) -> Violation | None:
    """The violation that decides: the first check's, first in shield order."""
    return next((o.violation for o in outcomes if o.violation is not None), None)


class ShieldRecorder:
    """Builds one :class:`ShieldCallStep` from one or more checks and streams its events:
    ``step_start`` when the first check begins, ``step_complete`` from :meth:`complete`."""

    def __init__(
        self,
        core: AgentCore,
        emit: Emit,
        turn_id: str,
        stage: ShieldStage,
        shields: Sequence[Shield],
    ) -> None:
        self.core = core
        self.emit = emit
        self.turn_id = turn_id
        self.stage: ShieldStage = stage
        self.shields = tuple(shields)
        self.step_id = new_id()
        self.started_at: _dt.datetime | None = None
        self.outcomes: list[ShieldOutcome] = []
        self._checks = 0

    @property
    def started(self) -> bool:
        return self.started_at is not None

    @property
    def violation(self) -> Violation | None:
        return first_violation(self.outcomes)

    async def check(self, messages: Sequence[Message]) -> Violation | None:
        """Run the shields on ``messages`` (ending with the message judged); the violation."""
        if self.started_at is None:
            self.started_at = utcnow()
            self.emit(
                StepStart(
                    turn_id=self.turn_id, step_id=self.step_id, step_type=StepType.shield_call
                )
            )
        check, self._checks = self._checks, self._checks + 1
        outcomes = await run_shields(self.core, self.shields, messages, self.stage, check=check)
        self.outcomes += outcomes
        return first_violation(outcomes)

    def complete(self) -> ShieldCallStep:
        """The finished step (streamed as ``step_complete``)."""
        assert self.started_at is not None, "complete() before any check"
        step = ShieldCallStep(
            step_id=self.step_id,
            turn_id=self.turn_id,
            started_at=self.started_at,
            completed_at=utcnow(),
            stage=self.stage,
            shields=[s.name for s in self.shields],
            violation=self.violation,
            outcomes=self.outcomes,
        )
        self.emit(StepComplete(turn_id=self.turn_id, step=step))
        return step


# --- data shields (tool results, retrieved chunks) ----------------------------------------


def _plain(verdict: ScanVerdict) -> ScanVerdict:
    """A scanner's own verdict type as a plain :class:`ScanVerdict` (its extra fields go into
    ``metadata``), so a step holds only types the session store knows."""
    if type(verdict) is ScanVerdict:
        return verdict
    extra = verdict.model_dump(mode="json", exclude=set(ScanVerdict.model_fields))
    return ScanVerdict(
        scanner=verdict.scanner,
        flagged=verdict.flagged,
        score=verdict.score,
        categories=list(verdict.categories),
        metadata={**verdict.metadata, **extra},
    )


def _unscreened(core: AgentCore, scanner: TextScanner, ran: _Ran[Any]) -> ScanVerdict:
    """The verdict recorded for a scanner that failed: flagged when failures block."""
    return ScanVerdict(
        scanner=scanner.name,
        flagged=_blocks_on_failure(core),
        categories=[ran.failure or "shield_error"],
        metadata={"error": ran.error},
    )


def _unscreened_notice(scanner: str) -> str:
    return f"[content withheld: {scanner} could not screen it; do not act on it]"


async def _screen_texts(
    core: AgentCore, texts: Sequence[str], sources: Sequence[str]
) -> tuple[list[str], list[ScreenedContent | None]]:
    """Each text as the model may see it, and what the data shields said (None: not screened,
    e.g. an empty text). Every data shield sees every text, all shields at once."""
    scanners = core.data_shields
    todo = [i for i, t in enumerate(texts) if t.strip()]
    shown = list(texts)
    records: list[ScreenedContent | None] = [None] * len(texts)
    if not scanners or not todo:
        return shown, records
    batch = [texts[i] for i in todo]
    timeout = core.config.shield_timeout
    runs = await asyncio.gather(*(_bounded(s.name, screen(s, batch), timeout) for s in scanners))
    for k, i in enumerate(todo):
        verdicts: list[ScanVerdict] = []
        notice: str | None = None
        for scanner, ran in zip(scanners, runs, strict=True):
            if ran.value is None:
                verdict = _unscreened(core, scanner, ran)
                replacement = _unscreened_notice(scanner.name)
            else:
                verdict, replacement = _plain(ran.value[1][k]), ran.value[0][k]
            verdicts.append(verdict)
            if verdict.flagged and notice is None:
                notice = replacement
        withheld = notice is not None
        records[i] = ScreenedContent(
            source=sources[i],
            withheld=withheld,
            verdicts=verdicts,
            withheld_text=texts[i] if withheld else "",
        )
        if notice is not None:
            shown[i] = notice
    return shown, records


async def screen_tool_responses(
    core: AgentCore, responses: Sequence[ToolResponse]
) -> tuple[list[ToolResponse], list[ScreenedContent]]:
    """The responses with every flagged one's content replaced by the notice, and the records."""
    if not core.data_shields:
        return list(responses), []
    texts = [content_text(r.content) for r in responses]
    shown, records = await _screen_texts(core, texts, [r.call_id for r in responses])
    out = [
        r.model_copy(update={"content": s}) if rec is not None and rec.withheld else r
        for r, s, rec in zip(responses, shown, records, strict=True)
    ]
    return out, [rec for rec in records if rec is not None]


async def screen_chunks(
    core: AgentCore, chunks: Sequence[RetrievedChunk]
) -> tuple[list[RetrievedChunk], list[ScreenedContent]]:
    """The chunks with every flagged one's text replaced by the notice, and the records
    (``source`` is the chunk id). Without data shields: the chunks as they are, no records."""
    if not core.data_shields:
        return list(chunks), []
    texts = [c.text for c in chunks]
    shown, records = await _screen_texts(core, texts, [c.chunk_id for c in chunks])
    out = [
        c.model_copy(update={"text": s}) if rec is not None and rec.withheld else c
        for c, s, rec in zip(chunks, shown, records, strict=True)
    ]
    return out, [rec for rec in records if rec is not None]


# --- code shields (the code interpreter's gate) -------------------------------------------


async def _check_code(core: AgentCore, call: ToolCall) -> list[CodeCheck]:
    code = str(call.arguments.get("code", ""))
    timeout = core.config.shield_timeout
    runs = await asyncio.gather(
        *(_bounded(s.name, s.scan_code(code, "python"), timeout) for s in core.code_shields)
    )
    checks: list[CodeCheck] = []
    for shield, ran in zip(core.code_shields, runs, strict=True):
        if ran.value is None:
            blocked = _blocks_on_failure(core)
            checks.append(
                CodeCheck(
                    call_id=call.call_id, shield=shield.name, error=ran.error, blocked=blocked
                )
            )
        else:
            checks.append(
                CodeCheck(
                    call_id=call.call_id,
                    shield=shield.name,
                    verdict=ran.value,
                    blocked=ran.value.treatment == "block",
                )
            )
    return checks


def _rejection(checks: Sequence[CodeCheck]) -> str:
    """What the model is told about code that was not run: the issues, so it can fix them."""
    reasons: list[str] = []
    for check in checks:
        if not check.blocked:
            continue
        if check.verdict is None:
            reasons.append(f"{check.shield} could not check it ({check.error})")
            continue
        found = "; ".join(
            f"{i.cwe} {i.description}".strip() + (f" (line {i.line})" if i.line else "")
            for i in check.verdict.issues
        )
        reasons.append(f"{check.shield} found insecure code: {found}")
    return (
        "The code was not run. "
        + " ".join(reasons)
        + ". Rewrite the code without these patterns and call the tool again."
    )


ContextFactory = Callable[[ToolCall], ToolContext[Any]]


async def run_tool_calls(
    core: AgentCore, calls: Sequence[ToolCall], context: ContextFactory
) -> tuple[list[ToolResponse], list[CodeCheck]]:
    """Run ``calls`` concurrently; code-interpreter calls only once the code shields pass their
    code (a blocked one gets a ``rejected`` result naming the issues). Responses in call order."""
    gated = [i for i, c in enumerate(calls) if c.tool_name == CODE_INTERPRETER]
    if not core.code_shields or not gated:
        return await core.executor.run(calls, context), []
    others = [i for i in range(len(calls)) if i not in gated]

    async def code_calls() -> tuple[dict[int, ToolResponse], list[CodeCheck]]:
        found = await asyncio.gather(*(_check_code(core, calls[i]) for i in gated))
        done: dict[int, ToolResponse] = {}
        allowed: list[int] = []
        for i, checks in zip(gated, found, strict=True):
            if any(c.blocked for c in checks):
                done[i] = ToolResponse.from_output(
                    calls[i],
                    _rejection(checks),
                    max_output_chars=core.config.max_tool_output_chars,
                    error=ToolErrorKind.rejected,
                )
            else:
                allowed.append(i)
        ran = await core.executor.run([calls[i] for i in allowed], context)
        done.update(zip(allowed, ran, strict=True))
        return done, [c for checks in found for c in checks]

    plain, (coded, checks) = await asyncio.gather(
        core.executor.run([calls[i] for i in others], context), code_calls()
    )
    by_index = {**dict(zip(others, plain, strict=True)), **coded}
    return [by_index[i] for i in range(len(calls))], checks
