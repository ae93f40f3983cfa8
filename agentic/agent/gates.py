"""Shields around the inference node's stream, so nothing unchecked reaches the client.

Input shields run concurrently with the turn's first inference: its events are held
(:class:`HeldWriter`) until they pass, and the inference is cancelled (its HTTP stream closed)
when they fail, so a safe turn pays max(shield, inference) and a blocked one streams nothing.
Output shields check the model's text before it is released (:class:`OutputGate`): all of it at
the end, or every N sentences while it streams; a violation stops the stream and replaces the
rest with the refusal.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic.agent.guarding import ShieldRecorder
from agentic.agent.inference import InferenceResult, run_inference, tool_choice_for
from agentic.agent.types import (
    InferenceStep,
    ShieldCallStep,
    Step,
    StepComplete,
    StepProgress,
    StepStart,
    utcnow,
)
from agentic.shields.base import ShieldStage, Violation
from agentic.types import AssistantMessage, Message

if TYPE_CHECKING:
    from agentic.agent.core import AgentCore
    from agentic.agent.guarding import Emit
    from agentic.agent.steps import TurnContext, TurnState

__all__ = ["Guarded", "HeldWriter", "OutputGate", "guarded_inference", "split_sentences"]

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*")


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end: ``.``, ``!`` or ``?`` followed by white space, or a
    line break (the white space stays with the sentence). The pieces concatenate to ``text``;
    the last one is an unfinished sentence when ``text`` does not end on a sentence end."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _chunk_end(text: str, sentences: int) -> int | None:
    """Where the complete sentences of ``text`` end, if there are at least ``sentences``."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return ends[-1] if len(ends) >= sentences else None


class HeldWriter:
    """A stream writer that holds every event until :meth:`open` (the input shields passed)."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._held: list[Any] | None = []

    def __call__(self, event: Any) -> None:
        if self._held is None:
            self._emit(event)
        else:
            self._held.append(event)

    def open(self) -> None:
        """Release what was held, and let later events straight through."""
        held, self._held = self._held or [], None
        for event in held:
            self._emit(event)


@dataclass
class OutputGate:
    """The writer an inference streams through when the agent has output shields.

    Text is held until the shields pass it (whole, or ``core.config.output_shield_chunk``
    sentences at a time); tool calls pass unless text is held before them (order is kept); the
    step's ``step_complete`` waits for the last check. On a violation the held text is dropped,
    the inference cancelled, and :meth:`refusal_events` replaces the rest.
    """

    core: AgentCore
    conversation: list[Message]
    """What the answer is judged with: the visible history and this turn's messages."""
    emit: Emit
    recorder: ShieldRecorder
    on_violation: Callable[[], object] | None = None
    """Called on the violation: cancels the inference."""
    start: StepStart | None = None
    started_at: _dt.datetime | None = None
    complete_event: StepComplete | None = None
    released: str = ""
    pending: str = ""
    violation: Violation | None = None
    _held: list[StepProgress] = field(default_factory=list)
    _checking: asyncio.Task[None] | None = None
    _finishing: bool = False

    def __call__(self, event: Any) -> None:
        if self.violation is not None:
            return  # the rest of the answer is withheld
        if isinstance(event, StepStart):
            self.start, self.started_at = event, utcnow()
            self.emit(event)
        elif isinstance(event, StepComplete):
            self.complete_event = event
        elif isinstance(event, StepProgress) and (event.text or self._held):
            self._held.append(event)
            self.pending += event.text
            self._maybe_check()
        else:
            self.emit(event)

    def _maybe_check(self) -> None:
        chunk = self.core.config.output_shield_chunk
        if chunk is None or self._checking is not None or self._finishing:
            return
        end = _chunk_end(self.pending, chunk)
        if end is not None and not self.pending[:end].strip():
            self._release(end)  # blank lines: nothing to judge
        elif end is not None:
            self._checking = asyncio.create_task(self._check_chunk(end))

    async def _check_chunk(self, end: int) -> None:
        violation = await self._check(self.pending[:end])
        self._checking = None
        if violation is None and self.violation is None:
            self._release(end)
            self._maybe_check()

    async def _check(self, text: str) -> Violation | None:
        candidate = AssistantMessage(content=self.released + text)
        violation = await self.recorder.check([*self.conversation, candidate])
        if violation is not None and self.violation is None:
            self.violation = violation
            self._held.clear()
            self.pending = ""
            if self.on_violation is not None:
                self.on_violation()
        return violation

    def _release(self, end: int) -> None:
        """Stream the held events up to text offset ``end`` (splitting one that straddles it)."""
        self.released += self.pending[:end]
        self.pending = self.pending[end:]
        left = end
        while self._held:
            event = self._held[0]
            if len(event.text) <= left:  # tool calls have no text: they go when reached
                self.emit(self._held.pop(0))
                left -= len(event.text)
                continue
            if left > 0:
                self.emit(event.model_copy(update={"text": event.text[:left]}))
                self._held[0] = event.model_copy(update={"text": event.text[left:]})
            break

    async def finish(self) -> Violation | None:
        """After the stream: check what is still held, then release it and the step's end.

        A chunk check still running goes on alongside the last check, which covers everything
        not released yet (so the stream's end waits for one check, not two in a row)."""
        self._finishing = True
        checks: list[Awaitable[Any]] = [] if self._checking is None else [self._checking]
        if self.violation is None and self.pending.strip():
            checks.append(self._check(self.pending))
        await asyncio.gather(*checks)
        if self.violation is not None:
            return self.violation
        self._release(len(self.pending))
        if self.complete_event is not None:
            self.emit(self.complete_event)
        return None

    async def aclose(self) -> None:
        """Stop a check still running (the inference failed or the turn was cancelled)."""
        task, self._checking = self._checking, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def refusal_events(
        self, result: InferenceResult | None, refusal: AssistantMessage, tool_choice: str
    ) -> InferenceStep:
        """Stream the refusal in place of the answer and the withheld step's end; the step."""
        assert self.start is not None
        assert self.started_at is not None
        text = refusal.content if isinstance(refusal.content, str) else ""
        ids = {"turn_id": self.start.turn_id, "step_id": self.start.step_id}
        self.emit(StepProgress(step_type=self.start.step_type, text=text, replaced=True, **ids))
        withheld = {"model_response": refusal, "raw_text": "", "withheld": True}
        if result is not None:
            step = result.step.model_copy(update={**withheld, "completed_at": utcnow()})
        else:  # cancelled mid-stream: no completion to report
            step = InferenceStep(
                started_at=self.started_at,
                completed_at=utcnow(),
                tool_choice=tool_choice,
                **ids,
                **withheld,
            )
        self.emit(StepComplete(turn_id=step.turn_id, step=step))
        return step


@dataclass(frozen=True, slots=True)
class Guarded:
    """What the guarded inference produced: the steps to record, in order, and either the
    inference's result or the refusal that ends the turn."""

    steps: list[Step]
    result: InferenceResult | None
    refusal: AssistantMessage | None = None
    refused_at: ShieldStage | None = None


def _refusal(core: AgentCore, violation: Violation) -> AssistantMessage:
    return AssistantMessage(content=violation.refusal or core.config.refusal_message)


def _input_due(core: AgentCore, state: TurnState) -> bool:
    """Input shields run with the first inference of a turn, once."""
    if not core.input_shields or state.get("iteration", 0) != 0:
        return False
    steps = state["turn"].steps
    return not any(isinstance(s, ShieldCallStep) and s.stage == "input" for s in steps)


def _visible(state: TurnState) -> list[Message]:
    history = state.get("history") or []
    return history[state.get("context_start", 0) :]


async def guarded_inference(state: TurnState, ctx: TurnContext, emit: Emit) -> Guarded:
    """The inference of :func:`run_inference` with the agent's input and output shields."""
    core, turn = ctx.core, state["turn"]
    check_input = _input_due(core, state)
    if not check_input and not core.output_shields:
        result = await run_inference(state, ctx, emit)
        return Guarded([result.step], result)
    held = HeldWriter(emit) if check_input else None
    downstream: Emit = held if held is not None else emit
    gate: OutputGate | None = None
    if core.output_shields:
        recorder = ShieldRecorder(core, downstream, turn.turn_id, "output", core.output_shields)
        conversation = [*_visible(state), *state["messages"]]
        gate = OutputGate(core, conversation, downstream, recorder)
    task = asyncio.create_task(run_inference(state, ctx, gate if gate is not None else downstream))
    if gate is not None:
        gate.on_violation = task.cancel
    try:
        steps: list[Step] = []
        if held is not None:
            step = await _check_input(core, state, emit)
            steps.append(step)
            if step.violation is not None:
                return Guarded(steps, None, _refusal(core, step.violation), "input")
            held.open()
        return await _after_inference(core, state, task, gate, steps)
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if gate is not None:
            await gate.aclose()


async def _check_input(core: AgentCore, state: TurnState, emit: Emit) -> ShieldCallStep:
    turn = state["turn"]
    recorder = ShieldRecorder(core, emit, turn.turn_id, "input", core.input_shields)
    await recorder.check([*_visible(state), *turn.input_messages])
    return recorder.complete()


async def _after_inference(
    core: AgentCore,
    state: TurnState,
    task: asyncio.Task[InferenceResult],
    gate: OutputGate | None,
    steps: list[Step],
) -> Guarded:
    """Wait for the inference (and the output shields); the steps and the result or refusal."""
    try:
        result: InferenceResult | None = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if gate is None or gate.violation is None or (current and current.cancelling()):
            raise
        result = None  # the output shields stopped it mid-stream
    if gate is None:
        assert result is not None
        return Guarded([*steps, result.step], result)
    violation = await gate.finish()
    if violation is None:
        assert result is not None
        shield_steps = [gate.recorder.complete()] if gate.recorder.started else []
        return Guarded([*steps, result.step, *shield_steps], result)
    refusal = _refusal(core, violation)
    withheld = gate.refusal_events(result, refusal, tool_choice_for(core, state))
    return Guarded([*steps, withheld, gate.recorder.complete()], None, refusal, "output")
