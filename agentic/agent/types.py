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

from agentic.errors import ConfigError
from agentic.memory.base import RetrievedChunk
from agentic.shields.base import Violation
from agentic.tools.base import ToolResponse
from agentic.types import (
    Artifact,
    AssistantMessage,
    Document,
    Message,
    ToolCall,
    Usage,
    content_text,
)

__all__ = [
    "Event",
    "InferenceStep",
    "MemoryRetrievalStep",
    "SessionInfo",
    "ShieldCallStep",
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


class _Frozen(BaseModel):
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


class ToolExecutionStep(_StepBase):
    """Tool calls and their results; ``client`` when the results came from the caller."""

    step_type: Literal["tool_execution"] = "tool_execution"
    tool_calls: list[ToolCall]
    tool_responses: list[ToolResponse]
    client: bool = False


class ShieldCallStep(_StepBase):
    """Shields run on the input or the output; ``violation`` is set when one blocked it."""

    step_type: Literal["shield_call"] = "shield_call"
    stage: Literal["input", "output"]
    shields: list[str]
    violation: Violation | None = None


class MemoryRetrievalStep(_StepBase):
    """What was retrieved (from banks and the turn's documents) and put into the prompt."""

    step_type: Literal["memory_retrieval"] = "memory_retrieval"
    bank_ids: list[str]
    query: str
    chunks: list[RetrievedChunk] = Field(default_factory=list)
    inserted_context: str = ""


Step = Annotated[
    InferenceStep | ToolExecutionStep | ShieldCallStep | MemoryRetrievalStep,
    Field(discriminator="step_type"),
]


class TurnStatus(StrEnum):
    in_progress = "in_progress"
    awaiting_input = "awaiting_input"
    """Stopped for client-side tool results; continue with ``Session.resume``."""
    completed = "completed"


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
        raise ConfigError(f"turn {self.turn_id} has no step {step_id!r}")

    def parse(self, model: type[ModelT]) -> ModelT:
        """The answer parsed as ``model`` (for agents with a ``response_format``)."""
        try:
            return model.model_validate_json(self.output_text)
        except ValidationError as exc:
            raise ConfigError(
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
