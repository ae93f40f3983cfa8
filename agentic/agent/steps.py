"""The steps of a turn, one graph node each: memory retrieval, inference, tools.

Each node reads the turn state, records its typed steps, streams their events through
LangGraph's stream writer and returns the state update. A node that ends the turn calls
:func:`finish`. Shields live inside the nodes they guard: input and output shields around the
inference's stream (:mod:`agentic.agent.gates`), data and code shields around the tools
(:mod:`agentic.agent.guarding`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agentic.agent.core import AgentCore
from agentic.agent.gates import guarded_inference
from agentic.agent.guarding import run_tool_calls, screen_chunks, screen_tool_responses
from agentic.agent.inference import has_images
from agentic.agent.prompting import context_block
from agentic.agent.retrieval import DocumentBanks, retrieve_for_turn
from agentic.agent.types import (
    CodeCheck,
    MemoryRetrievalStep,
    SessionInfo,
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
from agentic.tools.base import ToolContext, ToolErrorKind, ToolResponse
from agentic.tools.executor import unparsable_response
from agentic.types import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolMessage,
    UserMessage,
    content_text,
)

__all__ = [
    "TurnContext",
    "TurnState",
    "client_tools",
    "inference",
    "memory_retrieval",
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
    session_bank: bool
    """The session has a document bank (a long document was attached to one of its turns)."""
    image_until: int
    """Index in ``history`` just past its last message with an image (0: none): prompts need
    not scan the whole history to choose the endpoint."""


@dataclass(frozen=True, slots=True)
class TurnContext:
    """The static context of a graph run (LangGraph's ``context``)."""

    core: AgentCore
    session_id: str
    documents: DocumentBanks
    """Where the session's long attached documents are chunked."""
    session: SessionInfo
    """The session's record (its name and metadata; the turn counters are rewritten)."""


Rt = Runtime[TurnContext]


def with_step(turn: Turn, step: Step, **update: Any) -> Turn:
    """The turn with ``step`` appended."""
    return turn.model_copy(update={"steps": [*turn.steps, step], **update})


async def finish(
    state: TurnState, rt: Rt, turn: Turn, answer: AssistantMessage, *, keep: bool = True
) -> TurnState:
    """Complete the turn with ``answer``: stream ``turn_complete``, update history.

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
    rt.stream_writer(TurnComplete(turn=done))  # recorded once the run has committed it
    history = state.get("history") or []
    update: TurnState = {"turn": done, "messages": [], "pending": [], "unparsable": None}
    if keep:
        new = [*state.get("messages", []), answer]
        update["history"] = [*history, *new]
        update["turn_starts"] = [*(state.get("turn_starts") or []), len(history)]
        update["image_until"] = _image_until(state.get("image_until"), history, new)
    return update


def _image_until(known: int | None, history: list[Message], new: list[Message]) -> int:
    """``image_until`` once ``new`` is appended to ``history`` (scanned in full only for a
    session saved before it was kept)."""
    if end := _image_end(new):
        return len(history) + end
    return known if known is not None else _image_end(history)


def _image_end(messages: list[Message]) -> int:
    """Index just past the last message with an image (0: none)."""
    return next(
        (i + 1 for i in reversed(range(len(messages))) if has_images(messages[i : i + 1])), 0
    )


# --- memory ------------------------------------------------------------------------------


async def memory_retrieval(state: TurnState, runtime: Rt) -> TurnState:
    """Retrieve for the user's message from every bank (and the session's long documents),
    put short documents in whole, and make that the user message's context."""
    core, turn, ctx = runtime.context.core, state["turn"], runtime.context
    step_id, started = new_id(), utcnow()
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step_id, step_type=StepType.memory_retrieval)
    )
    messages = state["messages"]
    user = messages[0]
    assert isinstance(user, UserMessage)
    query = content_text(user.content)
    found = await retrieve_for_turn(
        core,
        ctx.documents,
        ctx.session_id,
        query,
        turn.documents,
        session_bank=bool(state.get("session_bank")),
    )
    chunks, screened = await screen_chunks(core, found.chunks)  # withheld when flagged
    block = context_block(chunks, found.inline)
    if block:
        context = f"{user.context}\n\n{block}" if user.context else block
        messages = [user.model_copy(update={"context": context}), *messages[1:]]
    step = MemoryRetrievalStep(
        step_id=step_id,
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        bank_ids=found.bank_ids,
        query=query,
        chunks=chunks,
        screened=screened,
        inserted_context=block,
        documents_inline=[d.name for d in found.inline],
        documents_banked=[d.name for d in found.banked],
        chunks_over_budget=found.dropped,
    )
    runtime.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    update: TurnState = {"turn": with_step(turn, step), "messages": messages}
    if found.banked:
        update["session_bank"] = True
    return update


# --- inference ----------------------------------------------------------------------------


async def inference(state: TurnState, runtime: Rt) -> TurnState:
    """One model call, guarded by the shields; routes on to tools, or ends the turn with the
    answer or the shields' refusal."""
    core, turn = runtime.context.core, state["turn"]
    guarded = await guarded_inference(state, runtime.context, runtime.stream_writer)
    turn = turn.model_copy(update={"steps": [*turn.steps, *guarded.steps]})
    iteration = state.get("iteration", 0) + 1
    result = guarded.result
    if result is None:
        assert guarded.refusal is not None
        # a refused input leaves the turn out of later prompts; a refused answer leaves the
        # answer out (the refusal stands in its place)
        keep = guarded.refused_at == "output"
        done = await finish(state, runtime, turn, guarded.refusal, keep=keep)
        return {"iteration": iteration, **done}
    messages = [*state["messages"], result.message]
    update: TurnState = {
        "iteration": iteration,
        "context_start": result.context_start,
        "pending": list(result.message.tool_calls),
        "unparsable": result.unparsable,
        "reformat": False,
    }
    calls = result.message.tool_calls
    if result.step.retracted:
        # the non-conforming answer stays in the step, out of the conversation
        return {**update, "turn": turn, "iteration": core.config.max_infer_iters, "reformat": True}
    if calls and all(core.waits_for_client(c) for c in calls):
        turn = turn.model_copy(
            update={"status": TurnStatus.awaiting_input, "pending_tool_calls": list(calls)}
        )
    if calls or result.unparsable is not None:
        return {**update, "turn": turn, "messages": messages}
    done = await finish({**state, **update}, runtime, turn, result.message)
    return {**update, **done}


# --- tools --------------------------------------------------------------------------------


async def tool_execution(state: TurnState, runtime: Rt) -> TurnState:
    """Run the server-side calls of the last answer concurrently; client calls wait (those
    with arguments that miss their tool's schema go back to the model instead)."""
    ctx = runtime.context
    core, turn = ctx.core, state["turn"]
    step_id, started = new_id(), utcnow()
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step_id, step_type=StepType.tool_execution)
    )
    pending = state.get("pending") or []
    server = [c for c in pending if not core.waits_for_client(c)]
    client = [c for c in pending if core.waits_for_client(c)]
    responses: list[ToolResponse]
    checks: list[CodeCheck] = []
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

        responses, checks = await _run_server_side(core, server, context)
    responses, screened = await screen_tool_responses(core, responses)
    step = ToolExecutionStep(
        step_id=step_id,
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        tool_calls=server,
        tool_responses=responses,
        screened=screened,
        code_checks=checks,
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


async def _run_server_side(
    core: AgentCore, calls: list[ToolCall], context: Callable[[ToolCall], ToolContext[Any]]
) -> tuple[list[ToolResponse], list[CodeCheck]]:
    """Run ``calls``; a client tool's call among them has invalid arguments, which its result
    says instead. Responses in call order."""
    refused = {i: p for i, c in enumerate(calls) if (p := core.client_call_problem(c))}
    run = [c for i, c in enumerate(calls) if i not in refused]
    ran, checks = await run_tool_calls(core, run, context)
    results = iter(ran)
    limit = core.config.max_tool_output_chars
    responses = [
        next(results)
        if i not in refused
        else ToolResponse.from_output(
            c, refused[i], max_output_chars=limit, error=ToolErrorKind.invalid_arguments
        )
        for i, c in enumerate(calls)
    ]
    return responses, checks


def _unparsable_reason(core: AgentCore) -> str:
    names = ", ".join(core.tool_names) or "none"
    return (
        f"Your tool call could not be parsed. Available tools: {names}. Call a tool in "
        "exactly the format the system prompt describes, or answer without a tool."
    )


async def client_tools(state: TurnState, runtime: Rt) -> TurnState:
    """Stop the turn until the caller sends results for the client-side calls (screened by
    the data shields like the server's own results)."""
    turn = state["turn"]
    calls = state.get("pending") or []
    answer: Any = interrupt({"tool_calls": [c.model_dump(mode="json") for c in calls]})
    started = utcnow()
    responses = [ToolResponse.model_validate(r) for r in answer]
    responses, screened = await screen_tool_responses(runtime.context.core, responses)
    step = ToolExecutionStep(
        step_id=new_id(),
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        tool_calls=calls,
        tool_responses=responses,
        client=True,
        screened=screened,
    )
    runtime.stream_writer(
        StepStart(turn_id=turn.turn_id, step_id=step.step_id, step_type=StepType.tool_execution)
    )
    runtime.stream_writer(StepComplete(turn_id=turn.turn_id, step=step))
    turn = with_step(turn, step, status=TurnStatus.in_progress, pending_tool_calls=[])
    return {
        "turn": turn,
        "messages": _in_call_order([*state["messages"], *(r.to_message() for r in responses)]),
        "pending": [],
    }


def _in_call_order(messages: list[Message]) -> list[Message]:
    """The results after the last assistant message in the order of its calls: a message
    mixing server and client calls gets the server's results first, and Llama's ``ipython``
    messages carry no call id, so the model matches results to calls by position."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, AssistantMessage):
            order = {call.call_id: n for n, call in enumerate(message.tool_calls)}
            results = messages[i + 1 :]
            if all(isinstance(m, ToolMessage) for m in results):
                late = len(order)
                results.sort(key=lambda m: order.get(getattr(m, "call_id", ""), late))
            return [*messages[: i + 1], *results]
    return messages
