"""What a session records and streams: typed steps, turns, session info and turn events.

Steps are a discriminated union on ``step_type``, events on ``event``. All are frozen pydantic
models, so they serialize for persistence and for the HTTP API as they are.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentic.errors import AnswerFormatError, TurnNotFoundError
from agentic.memory.base import RetrievedChunk
from agentic.shields.base import ScanVerdict, Violation
from agentic.shields.code_shield import CodeVerdict
from agentic.tools.base import ToolResponse
from agentic.types import (
    Artifact,
    AssistantMessage,
    Document,
    Message,
    ToolCall,
    Usage,
    _CompactRepr,
    content_text,
)

__all__ = [
    "CodeCheck",
    "Event",
    "InferenceStep",
    "MemoryRetrievalStep",
    "ScreenedContent",
    "SessionInfo",
    "ShieldCallStep",
    "ShieldOutcome",
    "Step",
    "StepComplete",
    "StepProgress",
    "StepStart",
    "StepType",
    "ToolExecutionStep",
    "Turn",
    "TurnAwaitingInput",
    "TurnComplete",
    "TurnStart",
    "TurnStatus",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


def new_id() -> str:
    """A fresh random id (hex, 32 characters)."""
    return uuid.uuid4().hex


def utcnow() -> _dt.datetime:
    """The current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.UTC)


class _Frozen(_CompactRepr):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepType(StrEnum):
    shield_call = "shield_call"
    memory_retrieval = "memory_retrieval"
    inference = "inference"
    tool_execution = "tool_execution"


class _StepBase(_Frozen):
    step_id: str
    turn_id: str
    started_at: _dt.datetime
    completed_at: _dt.datetime

    @property
    def duration(self) -> float:
        """Seconds the step took."""
        return (self.completed_at - self.started_at).total_seconds()


class InferenceStep(_StepBase):
    """One model call: what it answered, with usage, timings and how the prompt was built."""

    step_type: Literal["inference"] = "inference"
    model_response: AssistantMessage
    raw_text: str = ""
    """The completion as the model wrote it, special tokens included."""
    usage: Usage = Usage()
    time_to_first_token: float | None = None
    tool_choice: str = "auto"
    """The tool choice this call ran with (``none`` for the last call at ``max_infer_iters``)."""
    forced_prefix: str = ""
    """Text the answer was made to start with, to enforce ``tool_choice``."""
    dropped_turns: int = 0
    """Oldest turns left out of the prompt so it fits the context window."""
    prompt_tokens_estimate: int | None = None
    withheld: bool = False
    """An output shield refused the answer: ``model_response`` is the refusal, and the model's
    text was neither kept nor streamed past the last checked chunk."""
    unexecuted_calls: list[ToolCall] = Field(default_factory=list)
    """Calls the model wrote although tools were off for this answer (``tool_choice`` none,
    or the last call at ``max_infer_iters``), or calls of other tools than a named
    ``tool_choice``: never run, never streamed, left out of ``model_response``; an answer
    that was nothing but calls is replaced by a notice."""
    retracted: bool = False
    """The answer missed the agent's response format: withdrawn (a ``step_progress`` with
    ``replaced`` and no text said so while streaming) and asked for again, guided."""


class ScreenedContent(_Frozen):
    """The data shields' verdicts on one untrusted text (a tool result, a retrieved chunk)
    before it reached the model; ``withheld`` when the model got a notice instead."""

    source: str
    """The tool call id, or the retrieved chunk's id."""
    withheld: bool
    verdicts: list[ScanVerdict]
    """One per data shield, in order; a shield that failed has ``shield_error`` /
    ``shield_timeout`` in its categories and the error in ``metadata["error"]``."""
    withheld_text: str = ""
    """The withheld text itself, for inspection (never sent to the model); empty otherwise."""


class CodeCheck(_Frozen):
    """A code shield's verdict on a code-interpreter call before it ran."""

    call_id: str
    shield: str
    verdict: CodeVerdict | None = None
    error: str | None = None
    """Why the shield gave no verdict (it timed out or failed)."""
    blocked: bool = False
    """This check kept the call from running (insecure code, or a failure with
    ``shield_failure="block"``)."""


class ToolExecutionStep(_StepBase):
    """Tool calls and their results; ``client`` when the results came from the caller."""

    step_type: Literal["tool_execution"] = "tool_execution"
    tool_calls: list[ToolCall]
    tool_responses: list[ToolResponse]
    client: bool = False
    screened: list[ScreenedContent] = Field(default_factory=list)
    """What the data shields said about each result (empty without data shields)."""
    code_checks: list[CodeCheck] = Field(default_factory=list)
    """The code shields' verdicts on code-interpreter calls (empty without code shields)."""


class ShieldOutcome(_Frozen):
    """One shield's part in one check of a shield step."""

    shield: str
    started_at: _dt.datetime
    completed_at: _dt.datetime
    violation: Violation | None = None
    error: str | None = None
    """Why the shield gave no verdict: a timeout or an exception (the policy,
    ``shield_failure``, decides whether that blocked)."""
    check: int = 0
    """Which check of the step: output shields on a chunked answer check several times."""


class ShieldCallStep(_StepBase):
    """Shields run on the input or the output; ``violation`` is set when one blocked it.

    Input shields run while the first inference already streams (its tokens are held until
    they pass), so this step and that inference overlap in time; output shields check the
    answer before it is released, in one check or one per chunk (``outcomes``)."""

    step_type: Literal["shield_call"] = "shield_call"
    stage: Literal["input", "output"]
    shields: list[str]
    violation: Violation | None = None
    outcomes: list[ShieldOutcome] = Field(default_factory=list)
    """Every shield's verdict, error and timing, per check."""


class MemoryRetrievalStep(_StepBase):
    """What was retrieved (from banks and the turn's documents) and put into the prompt."""

    step_type: Literal["memory_retrieval"] = "memory_retrieval"
    bank_ids: list[str]
    query: str
    chunks: list[RetrievedChunk] = Field(default_factory=list)
    """The chunks put into the prompt, best first (bank, chunk id, score, text)."""
    inserted_context: str = ""
    documents_inline: list[str] = Field(default_factory=list)
    """Names of the turn's documents put into the prompt whole."""
    documents_banked: list[str] = Field(default_factory=list)
    """Names of the turn's long documents chunked into the session's bank."""
    chunks_over_budget: int = 0
    """Chunks found but left out: past ``retrieval_limit`` or the token budget."""
    screened: list[ScreenedContent] = Field(default_factory=list)
    """What the data shields said about each chunk (empty without data shields)."""


Step = Annotated[
    InferenceStep | ToolExecutionStep | ShieldCallStep | MemoryRetrievalStep,
    Field(discriminator="step_type"),
]


class TurnStatus(StrEnum):
    in_progress = "in_progress"
    awaiting_input = "awaiting_input"
    """Stopped for client-side tool results; continue with ``Session.resume``."""
    completed = "completed"
    cancelled = "cancelled"
    """Given up unfinished (``Session.abandon``): its finished steps are kept, its messages
    stay out of later prompts."""

    @property
    def unfinished(self) -> bool:
        """Whether the turn still runs or waits, so the session takes no new turn."""
        return self in (TurnStatus.in_progress, TurnStatus.awaiting_input)


class Turn(_Frozen):
    """One user turn: its input, every step it took, and the answer."""

    turn_id: str
    session_id: str
    index: int = 0
    """Position of the turn in its session, from 0."""
    input_messages: list[Message]
    documents: list[Document] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    output_message: AssistantMessage | None = None
    status: TurnStatus = TurnStatus.in_progress
    pending_tool_calls: list[ToolCall] = Field(default_factory=list)
    """Client-side tool calls waiting for results (status ``awaiting_input``)."""
    started_at: _dt.datetime
    completed_at: _dt.datetime | None = None

    @property
    def output_text(self) -> str:
        """The answer's text ('' before the turn completes)."""
        return "" if self.output_message is None else content_text(self.output_message.content)

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion (None while the turn runs)."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @property
    def artifacts(self) -> list[Artifact]:
        """Every file the turn's tools handed back (code-interpreter figures), in order."""
        return [
            artifact
            for step in self.steps
            if isinstance(step, ToolExecutionStep)
            for response in step.tool_responses
            for artifact in response.artifacts
        ]

    def step(self, step_id: str) -> Step:
        """The step with that id."""
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise TurnNotFoundError(f"turn {self.turn_id} has no step {step_id!r}")

    def parse(self, model: type[ModelT]) -> ModelT:
        """The answer parsed as ``model`` (for agents with a ``response_format``)."""
        try:
            return model.model_validate_json(self.output_text)
        except ValidationError as exc:
            raise AnswerFormatError(
                f"the answer of turn {self.turn_id} is not a valid {model.__name__}: {exc}"
            ) from exc


class SessionInfo(_Frozen):
    """A session as listed: id, name, agent and counters (turns are fetched separately)."""

    session_id: str
    agent: str
    name: str = ""
    created_at: _dt.datetime
    updated_at: _dt.datetime
    turn_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


# --- events -------------------------------------------------------------------------------


class TurnStart(_Frozen):
    event: Literal["turn_start"] = "turn_start"
    session_id: str
    turn_id: str


class StepStart(_Frozen):
    event: Literal["step_start"] = "step_start"
    turn_id: str
    step_id: str
    step_type: StepType


class StepProgress(_Frozen):
    """A piece of a running step: answer text, or a tool call once it is certain."""

    event: Literal["step_progress"] = "step_progress"
    turn_id: str
    step_id: str
    step_type: StepType
    text: str = ""
    tool_call: ToolCall | None = None
    replaced: bool = False
    """``text`` replaces what this step streamed so far, and nothing more of the answer
    follows: an output shield's refusal, or no text at all for an answer withdrawn because
    it missed the response format (the next inference answers again)."""


class StepComplete(_Frozen):
    event: Literal["step_complete"] = "step_complete"
    turn_id: str
    step: Step


class TurnComplete(_Frozen):
    event: Literal["turn_complete"] = "turn_complete"
    turn: Turn


class TurnAwaitingInput(_Frozen):
    """The turn stopped for client-side tool results; resume the session with them."""

    event: Literal["turn_awaiting_input"] = "turn_awaiting_input"
    turn: Turn
    tool_calls: list[ToolCall]


Event = Annotated[
    TurnStart | StepStart | StepProgress | StepComplete | TurnComplete | TurnAwaitingInput,
    Field(discriminator="event"),
]
