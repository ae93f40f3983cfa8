"""The orchestrator: agents whose turns run as a LangGraph graph of typed steps."""

from __future__ import annotations

from agentic.agent.agent import Agent, Session, TurnStream
from agentic.agent.config import AgentConfig, PersistenceConfig
from agentic.agent.guarding import CodeScanner
from agentic.agent.retrieval import DocumentBanks
from agentic.agent.types import (
    CodeCheck,
    Event,
    InferenceStep,
    MemoryRetrievalStep,
    ScreenedContent,
    SessionInfo,
    ShieldCallStep,
    ShieldOutcome,
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
    "CodeCheck",
    "CodeScanner",
    "DocumentBanks",
    "Event",
    "InferenceStep",
    "MemoryRetrievalStep",
    "PersistenceConfig",
    "ScreenedContent",
    "Session",
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
    "TurnStream",
]
