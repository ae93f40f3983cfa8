"""The steps of a turn, one graph node each: shields, memory retrieval, inference, tools.

Each node reads the turn state, records one typed step, streams its events through LangGraph's
stream writer and returns the state update. A node that ends the turn calls :func:`finish`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agentic.agent.core import AgentCore
from agentic.agent.inference import InferenceResult, answer_conforms, run_inference
from agentic.agent.prompting import context_block
from agentic.agent.types import (
    MemoryRetrievalStep,
    ShieldCallStep,
    Step,
    StepComplete,
    StepStart,
    StepType,
    ToolExecutionStep,
    Turn,
    TurnComplete,
    TurnStatus,
    new_id,
    utcnow,
)
from agentic.memory.base import RetrievedChunk
from agentic.shields.base import Shield, ShieldStage, Violation
from agentic.tools.base import ToolContext, ToolResponse
from agentic.tools.executor import unparsable_response
from agentic.types import AssistantMessage, Message, ToolCall, UserMessage, content_text

__all__ = [
    "TurnContext",
    "TurnState",
    "client_tools",
    "inference",
    "input_shields",
    "memory_retrieval",
    "output_shields",
    "tool_execution",
]


class TurnState(TypedDict, total=False):
    """The graph state of a session, checkpointed after every step."""

    history: list[Message]
    """Messages of the finished turns, as the model sees them (refused turns left out)."""
    turn_starts: list[int]
    """Index in ``history`` where each finished turn starts."""
    context_start: int
    """First history message in prompts: older turns were dropped to fit the context."""
    turn: Turn
    """The current turn (the last one once it completed)."""
    messages: list[Message]
    """The current turn's conversation: user message, answers with calls, tool results."""
    pending: list[ToolCall]
    """Calls of the last inference not executed yet."""
    unparsable: str | None
    """Raw text of a tool call the parser could not read; answered with an error."""
    iteration: int
    """Inferences made in this turn."""
    reformat: bool
    """The answer missed the response format: ask again, tools off, with guided decoding."""


@dataclass(frozen=True, slots=True)
class TurnContext:
    """The static context of a graph run (LangGraph's ``context``)."""

    core: AgentCore
    session_id: str
    store: SessionRecorder


class SessionRecorder(Protocol):
    """Where finished turns go (the session store)."""

    async def save_turn(self, turn: Turn) -> None: ...


Rt = Runtime[TurnContext]


def with_step(turn: Turn, step: Step, **update: Any) -> Turn:
    """The turn with ``step`` appended."""
    return turn.model_copy(update={"steps": [*turn.steps, step], **update})


def _visible_history(state: TurnState) -> list[Message]:
    history = state.get("history") or []
    return history[state.get("context_start", 0) :]


async def finish(
    state: TurnState, rt: Rt, turn: Turn, answer: AssistantMessage, *, keep: bool = True
) -> TurnState:
    """Complete the turn with ``answer``: save it, stream ``turn_complete``, update history.

    ``keep=False`` leaves the turn out of the history the model sees (a refused input).
    """
    done = turn.model_copy(
        update={
            "output_message": answer,
            "status": TurnStatus.completed,
            "pending_tool_calls": [],
            "completed_at": utcnow(),
        }
    )
    await rt.context.store.save_turn(done)
    rt.stream_writer(TurnComplete(turn=done))
    history = state.get("history") or []
    update: TurnState = {"turn": done, "messages": [], "pending": [], "unparsable": None}
    if keep:
        update["history"] = [*history, *state.get("messages", []), answer]
        update["turn_starts"] = [*(state.get("turn_starts") or []), len(history)]
    return update


# --- shields ------------------------------------------------------------------------------


async def _check_one(
    shield: Shield, messages: Sequence[Message], stage: ShieldStage
) -> Violation | None:
    """One shield's verdict; a shield that fails blocks (fail closed)."""
    try:
        return await shield.check(messages, stage=stage)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a shield boundary: its failure must not let content through
        return Violation(
            shield=shield.name, categories=["shield_error"], message=f"{type(exc).__name__}: {exc}"
        )


async def _shield_step(
    rt: Rt, turn: Turn, shields: Sequence[Shield], messages: list[Message], stage: ShieldStage
) -> ShieldCallStep:
    step_id, started = new_id(), utcnow()
    rt.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step_id, step_type=StepType.shield_call)
    )
    verdicts = await asyncio.gather(*(_check_one(s, messages, stage) for s in shields))
    violation = next((v for v in verdicts if v is not None), None)
    step = ShieldCallStep(
        step_id=step_id,
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        stage=stage,
        shields=[s.name for s in shields],
        violation=violation,
    )
    rt.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    return step


def _refusal(core: AgentCore) -> AssistantMessage:
    return AssistantMessage(content=core.config.refusal_message)


async def input_shields(state: TurnState, runtime: Rt) -> TurnState:
    """Check the new user message (with the visible history as context)."""
    core, turn = runtime.context.core, state["turn"]
    conversation = [*_visible_history(state), *state["messages"]]
    step = await _shield_step(runtime, turn, core.input_shields, conversation, "input")
    turn = with_step(turn, step)
    if step.violation is not None:
        return await finish(state, runtime, turn, _refusal(core), keep=False)
    return {"turn": turn}


async def output_shields(state: TurnState, runtime: Rt) -> TurnState:
    """Check the answer; a violation replaces it with the refusal (in history too)."""
    core, turn = runtime.context.core, state["turn"]
    messages = state["messages"]
    answer = messages[-1]
    assert isinstance(answer, AssistantMessage)
    conversation = [*_visible_history(state), *messages]
    step = await _shield_step(runtime, turn, core.output_shields, conversation, "output")
    turn = with_step(turn, step)
    if step.violation is not None:
        answer = _refusal(core)
    state = {**state, "messages": messages[:-1]}
    return await finish(state, runtime, turn, answer)


# --- memory ------------------------------------------------------------------------------


async def memory_retrieval(state: TurnState, runtime: Rt) -> TurnState:
    """Retrieve for the user's message from every bank, add the turn's documents, and put
    the result into the user message's context."""
    core, turn = runtime.context.core, state["turn"]
    step_id, started = new_id(), utcnow()
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step_id, step_type=StepType.memory_retrieval)
    )
    messages = state["messages"]
    user = messages[0]
    assert isinstance(user, UserMessage)
    query = content_text(user.content)
    limit = core.config.retrieval_limit
    found = await asyncio.gather(*(r.retrieve(query, limit=limit) for r in core.retrievers))
    chunks: list[RetrievedChunk] = sorted(
        (c for group in found for c in group), key=lambda c: c.score, reverse=True
    )[:limit]
    block = context_block(chunks, turn.documents)
    if block:
        context = f"{user.context}\n\n{block}" if user.context else block
        messages = [user.model_copy(update={"context": context}), *messages[1:]]
    step = MemoryRetrievalStep(
        step_id=step_id,
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        bank_ids=[r.bank_id for r in core.retrievers],
        query=query,
        chunks=chunks,
        inserted_context=block,
    )
    runtime.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    return {"turn": with_step(turn, step), "messages": messages}


# --- inference ----------------------------------------------------------------------------


async def inference(state: TurnState, runtime: Rt) -> TurnState:
    """One model call; routes on to tools, shields, or ends the turn with the answer."""
    core, turn = runtime.context.core, state["turn"]
    result = await run_inference(state, runtime.context, runtime.stream_writer)
    turn = with_step(turn, result.step)
    messages = [*state["messages"], result.message]
    update: TurnState = {
        "iteration": state.get("iteration", 0) + 1,
        "context_start": result.context_start,
        "pending": list(result.message.tool_calls),
        "unparsable": result.unparsable,
        "reformat": False,
    }
    calls = result.message.tool_calls
    if _needs_reformat(core, result):
        # the non-conforming answer stays in the step, out of the conversation
        return {**update, "turn": turn, "iteration": core.config.max_infer_iters, "reformat": True}
    if calls and all(c.tool_name in core.client_tools for c in calls):
        turn = turn.model_copy(
            update={"status": TurnStatus.awaiting_input, "pending_tool_calls": list(calls)}
        )
    if calls or result.unparsable is not None:
        return {**update, "turn": turn, "messages": messages}
    if core.output_shields:
        return {**update, "turn": turn, "messages": messages}
    done = await finish({**state, **update}, runtime, turn, result.message)
    return {**update, **done}


def _needs_reformat(core: AgentCore, result: InferenceResult) -> bool:
    """A final answer that misses the response format, made without guided decoding."""
    if result.message.tool_calls or result.unparsable is not None:
        return False
    guided = result.step.tool_choice == "none" or not core.tool_defs
    return (
        core.response_schema is not None
        and not guided
        and not answer_conforms(core, result.message)
    )


# --- tools --------------------------------------------------------------------------------


async def tool_execution(state: TurnState, runtime: Rt) -> TurnState:
    """Run the server-side calls of the last answer concurrently; client calls wait."""
    ctx = runtime.context
    core, turn = ctx.core, state["turn"]
    step_id, started = new_id(), utcnow()
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step_id, step_type=StepType.tool_execution)
    )
    pending = state.get("pending") or []
    server = [c for c in pending if c.tool_name not in core.client_tools]
    client = [c for c in pending if c.tool_name in core.client_tools]
    responses: list[ToolResponse]
    raw = state.get("unparsable")
    if raw is not None:
        responses = [unparsable_response(new_id(), raw, _unparsable_reason(core))]
    else:

        def context(call: ToolCall) -> ToolContext[Any]:
            return ToolContext(
                deps=core.deps,
                session_id=ctx.session_id,
                turn_id=turn.turn_id,
                call=call,
                documents=tuple(turn.documents),
            )

        responses = await core.executor.run(server, context)
    step = ToolExecutionStep(
        step_id=step_id,
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        tool_calls=server,
        tool_responses=responses,
    )
    runtime.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    update: dict[str, Any] = {}
    if client:
        update = {"status": TurnStatus.awaiting_input, "pending_tool_calls": client}
    return {
        "turn": with_step(turn, step, **update),
        "messages": [*state["messages"], *(r.to_message() for r in responses)],
        "pending": client,
        "unparsable": None,
    }


def _unparsable_reason(core: AgentCore) -> str:
    names = ", ".join(core.tool_names) or "none"
    return (
        f"Your tool call could not be parsed. Available tools: {names}. Call a tool in "
        "exactly the format the system prompt describes, or answer without a tool."
    )


async def client_tools(state: TurnState, runtime: Rt) -> TurnState:
    """Stop the turn until the caller sends results for the client-side calls."""
    turn = state["turn"]
    calls = state.get("pending") or []
    answer: Any = interrupt({"tool_calls": [c.model_dump(mode="json") for c in calls]})
    started = utcnow()
    responses = [ToolResponse.model_validate(r) for r in answer]
    step = ToolExecutionStep(
        step_id=new_id(),
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=started,
        tool_calls=calls,
        tool_responses=responses,
        client=True,
    )
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step.step_id, step_type=StepType.tool_execution)
    )
    runtime.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    turn = with_step(turn, step, status=TurnStatus.in_progress, pending_tool_calls=[])
    return {
        "turn": turn,
        "messages": [*state["messages"], *(r.to_message() for r in responses)],
        "pending": [],
    }
