"""The orchestrator: agents whose turns run as a LangGraph graph of typed steps."""

from __future__ import annotations

from agentic.agent.agent import Agent, Session, TurnStream
from agentic.agent.config import AgentConfig, PersistenceConfig
from agentic.agent.types import (
    Event,
    InferenceStep,
    MemoryRetrievalStep,
    SessionInfo,
    ShieldCallStep,
    Step,
    StepComplete,
    StepProgress,
    StepStart,
    StepType,
    ToolExecutionStep,
    Turn,
    TurnAwaitingInput,
    TurnComplete,
    TurnStart,
    TurnStatus,
)

__all__ = [
    "Agent",
    "AgentConfig",
    "Event",
    "InferenceStep",
    "MemoryRetrievalStep",
    "PersistenceConfig",
    "Session",
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
    "TurnStream",
]
