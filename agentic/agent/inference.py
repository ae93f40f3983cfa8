"""The inference step: build the prompt within the context budget, stream the model's answer,
parse tool calls as they become certain, and record an :class:`InferenceStep`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.types import StreamWriter
from pydantic import ValidationError

from agentic.agent.prompting import (
    Budget,
    context_window,
    fit_history,
    forced_prefix,
)
from agentic.agent.types import (
    InferenceStep,
    StepComplete,
    StepProgress,
    StepStart,
    StepType,
    ToolExecutionStep,
    new_id,
    utcnow,
)
from agentic.errors import ConfigError, InferenceError
from agentic.inference.base import Completion, InferenceRequest, TextDelta
from agentic.llama.tool_calls import StreamingToolCallParser, TextChunk, opens_like_call
from agentic.types import (
    AssistantMessage,
    BuiltinTool,
    ImageContent,
    Message,
    StopReason,
    ToolCall,
    ToolDefinition,
    content_text,
)

if TYPE_CHECKING:
    from agentic.agent.core import AgentCore
    from agentic.agent.steps import TurnContext, TurnState

__all__ = ["InferenceResult", "answer_conforms", "has_images", "run_inference", "tool_choice_for"]


@dataclass(frozen=True, slots=True)
class InferenceResult:
    step: InferenceStep
    message: AssistantMessage
    unparsable: str | None
    """Raw text of a call the model meant to make but that could not be read."""
    context_start: int


def tool_choice_for(core: AgentCore, state: TurnState) -> str:
    """The tool choice of the turn's next inference.

    ``required`` and named choices hold until the model made a call this turn (after a tool
    result it must be free to answer; an answer that made no call, such as a botched one, is
    asked again); past ``max_infer_iters`` tools are off, so it answers.
    """
    choice = core.config.tool_choice
    if state.get("iteration", 0) >= core.config.max_infer_iters:
        return "none"
    if choice in ("auto", "none"):
        return choice
    called = any(isinstance(s, ToolExecutionStep) and s.tool_calls for s in state["turn"].steps)
    return "auto" if called else choice


def has_images(messages: Sequence[Message]) -> bool:
    """Whether any of ``messages`` holds an image (they go through the chat endpoint)."""
    for m in messages:
        if not isinstance(m.content, str) and any(isinstance(p, ImageContent) for p in m.content):
            return True
    return False


async def _budget(core: AgentCore) -> Budget:
    cached = core.budget_cache.get("budget")
    if cached is None:
        window = await context_window(
            core.backend, core.config.model, core.spec, core.config.context_length
        )
        max_tokens = core.config.sampling.max_tokens
        reserve = max_tokens or core.config.response_token_reserve
        if reserve >= window:
            knob = "sampling.max_tokens" if max_tokens else "response_token_reserve"
            raise ConfigError(
                f"{knob} ({reserve}) leaves no room for the prompt: {core.config.model} is "
                f"served with a context of {window} tokens; lower {knob}"
            )
        cached = Budget(limit=window - reserve, count=core.token_counter)
        core.budget_cache["budget"] = cached
    return cached


@dataclass(frozen=True, slots=True)
class _Plan:
    choice: str
    tools: tuple[ToolDefinition, ...]
    prefix: str
    structured: dict[str, Any] | None


def _plan(core: AgentCore, state: TurnState) -> _Plan:
    choice = tool_choice_for(core, state)
    tools = core.tool_defs if choice != "none" else ()
    structured = core.response_schema if not tools else None
    return _Plan(choice, tools, forced_prefix(choice, tools, core.tool_format), structured)


async def _request(
    core: AgentCore, ctx: TurnContext, state: TurnState, plan: _Plan
) -> tuple[InferenceRequest, int, int | None]:
    """The request, the history start used and the prompt-token estimate."""
    history = state.get("history") or []
    current = state["messages"]
    start = state.get("context_start", 0)
    common: dict[str, Any] = {
        "model": core.config.model,
        "tools": plan.tools,
        "tool_choice": plan.choice,
        "tool_prompt_format": core.tool_format,
        "sampling": core.config.sampling,
        "response_format": plan.structured,
    }
    turn_starts = state.get("turn_starts") or []
    budget = await _budget(core)
    image_until = state.get("image_until")  # None: a session saved before it was kept

    def images_from(i: int) -> bool:
        old = has_images(history[i:]) if image_until is None else image_until > i
        return old or has_images(current)

    def prompt_from(key: str) -> Callable[[int], str]:
        def render(i: int) -> str:
            # the forced call prefix is part of the prompt the server gets: counted too
            return (
                core.prompts.render(
                    key,
                    [core.system, *history[i:], *current],
                    model=core.spec,
                    tools=plan.tools,
                    tool_prompt_format=core.tool_format,
                    # the forced call opening enforces a required or named choice; the system
                    # prompt stays the same in every prompt of the session (prefix cache)
                    tool_choice="auto" if plan.prefix else plan.choice,
                    response_format=core.response_schema,
                )
                + plan.prefix
            )

        return render

    if images_from(start):
        # images go through the chat endpoint as messages; the budget counts the conversation
        # in the Llama format (each image one <|image|>, as in the prompt vLLM builds)
        images = prompt_from(f"{ctx.session_id}:images")
        fit = await fit_history(images, turn_starts, start, budget, len(history))
        start = fit.start
        if images_from(start):
            messages = [core.system, *history[start:], *current]
            request = InferenceRequest(messages=messages, cache_key=ctx.session_id, **common)
            return request, start, fit.tokens
    key = f"{ctx.session_id}:{'tools' if plan.tools else 'plain'}"
    fit = await fit_history(prompt_from(key), turn_starts, start, budget, len(history))
    # the fit's count (exact, or its byte bound): the backend sizes max_tokens without
    # counting again
    request = InferenceRequest(prompt=fit.prompt, prompt_tokens=fit.tokens, **common)
    return request, fit.start, fit.tokens


async def _stream(
    core: AgentCore, request: InferenceRequest, plan: _Plan, emit: StreamWriter, ids: dict[str, Any]
) -> tuple[AssistantMessage, Completion, str | None]:
    """The parsed answer, the completion, and the raw text of a botched call (see
    :func:`_unparsable`)."""
    # with tools off for this answer, call syntax is still read as calls (so it never streams
    # as answer text), and the calls are dropped from the answer (see _without_calls)
    guided = plan.structured is not None
    parser = StreamingToolCallParser(
        model=core.spec,
        tools=bool(plan.tools) or (bool(core.tool_defs) and not guided),
        code_interpreter=any(t.name == BuiltinTool.code_interpreter.value for t in plan.tools),
    )
    calls = bool(plan.tools)
    # an answer made to start a call (tool_choice required or named) is held until it ends:
    # text in it is a botched call, which goes back to the model
    held: list[Any] | None = [] if plan.prefix else None

    def progress(events: list[Any]) -> None:
        for event in events:
            if held is not None and isinstance(event, TextChunk):
                held.append(event)
            elif isinstance(event, TextChunk) or _chosen(plan, event.call):
                _progress(emit, ids, event, calls)

    progress(parser.feed(plan.prefix))
    completion: Completion | None = None
    async for item in core.backend.stream(request):
        if isinstance(item, TextDelta):
            progress(parser.feed(item.text))
        else:
            completion = item
    if completion is None:
        raise InferenceError(f"{type(core.backend).__name__}.stream ended without a Completion")
    ending = [*(held or []), *parser.end(completion.stop_reason)]
    held = None
    message = parser.finish(completion.stop_reason)
    unparsable = _unparsable(message, plan.prefix + completion.text, plan)
    if unparsable is not None:
        # a call the model botched was held back as possible call syntax: it goes back to the
        # model (the tool step says so), not to the reader as answer text
        ending = [e for e in ending if not isinstance(e, TextChunk)]
    progress(ending)
    return message, completion, unparsable


def _progress(emit: StreamWriter, ids: dict[str, Any], event: Any, calls: bool) -> None:
    if isinstance(event, TextChunk):
        emit(StepProgress(text=event.text, **ids))
    elif calls:
        emit(StepProgress(tool_call=event.call, **ids))


def _without_calls(
    core: AgentCore, message: AssistantMessage, plan: _Plan, emit: StreamWriter, ids: dict[str, Any]
) -> AssistantMessage:
    """The answer without the calls the model wrote while tools were off; a notice in place
    of an answer that was nothing else (a turn never ends on an unexecuted call)."""
    if plan.tools or not message.tool_calls:
        return message
    text = content_text(message.content)
    if not text.strip():
        if core.config.tool_choice == "none":
            text = (
                "No answer: the model asked for a tool, but this agent's tools are off "
                "(tool_choice='none')."
            )
        else:
            text = (
                "No answer: the model still asked for a tool after the last tool round this "
                f"turn allows (max_infer_iters={core.config.max_infer_iters})."
            )
        emit(StepProgress(text=text, **ids))
    return message.model_copy(
        update={"content": text, "tool_calls": [], "stop_reason": StopReason.end_of_turn}
    )


def _chosen(plan: _Plan, call: ToolCall) -> bool:
    """Whether ``call`` may run under the plan's tool choice: a named one runs its tool only."""
    return plan.choice in ("auto", "required", "none") or call.tool_name == plan.choice


def _only_chosen(message: AssistantMessage, plan: _Plan) -> AssistantMessage:
    """The answer without calls of other tools than a named tool choice's (the model wrote
    them after the forced call): never run, never streamed."""
    kept = [c for c in message.tool_calls if _chosen(plan, c)]
    if not kept or len(kept) == len(message.tool_calls):
        return message
    return message.model_copy(update={"tool_calls": kept})


def _unparsable(message: AssistantMessage, raw: str, plan: _Plan) -> str | None:
    """The raw text of a call the model meant to make but we cannot read: it stopped on
    ``<|eom_id|>`` (a call follows), it was made to start a call (``required`` or a named
    tool), or its text opens like a call (Llama 3.2's pythonic calls end on ``<|eot_id|>``).
    Such text goes back to the model with the parse error instead of ending the turn."""
    if not plan.tools or message.tool_calls:
        return None
    if message.stop_reason is StopReason.end_of_message or plan.prefix or opens_like_call(raw):
        return raw
    return None


async def run_inference(state: TurnState, ctx: TurnContext, emit: StreamWriter) -> InferenceResult:
    """Make the turn's next model call and record it."""
    core, turn = ctx.core, state["turn"]
    plan = _plan(core, state)
    ids = {"turn_id": turn.turn_id, "step_id": new_id(), "step_type": StepType.inference}
    started = utcnow()
    emit(StepStart(**ids))
    request, start, estimate = await _request(core, ctx, state, plan)
    said, completion, unparsable = await _stream(core, request, plan, emit, ids)
    message = _without_calls(core, said, plan, emit, ids)  # (tools off: nothing unparsable)
    message = _only_chosen(message, plan)
    raw = plan.prefix + completion.text
    retracted = _misses_format(core, message, unparsable, plan)
    if retracted:  # the reader learns the streamed answer is withdrawn before the step ends
        emit(StepProgress(text="", replaced=True, **ids))
    step = InferenceStep(
        step_id=ids["step_id"],
        turn_id=turn.turn_id,
        started_at=started,
        completed_at=utcnow(),
        model_response=message,
        raw_text=raw,
        usage=completion.usage,
        time_to_first_token=completion.timings.time_to_first_token,
        tool_choice=plan.choice,
        forced_prefix=plan.prefix,
        dropped_turns=_turns_between(
            state.get("turn_starts") or [], state.get("context_start", 0), start
        ),
        prompt_tokens_estimate=estimate,
        unexecuted_calls=[c for c in said.tool_calls if c not in message.tool_calls],
        retracted=retracted,
    )
    emit(StepComplete(turn_id=turn.turn_id, step=step))
    return InferenceResult(step, message, unparsable, start)


def _misses_format(
    core: AgentCore, message: AssistantMessage, unparsable: str | None, plan: _Plan
) -> bool:
    """A final answer that misses the response format, made without guided decoding (with
    tools offered, the answer is free text): it is asked for again."""
    if message.tool_calls or unparsable is not None:
        return False
    guided = plan.choice == "none" or not core.tool_defs
    return core.response_schema is not None and not guided and not answer_conforms(core, message)


def _turns_between(turn_starts: Sequence[int], old: int, new: int) -> int:
    """How many turns this step newly dropped from the prompt."""
    return sum(1 for s in turn_starts if old <= s < new)


def answer_conforms(core: AgentCore, message: AssistantMessage) -> bool:
    """Whether an answer follows the agent's response format (always, without one)."""
    fmt = core.config.response_format
    if fmt is None:
        return True
    text = content_text(message.content)
    if isinstance(fmt, dict):
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return core.response_validator is None or core.response_validator.is_valid(value)
    try:
        fmt.model_validate_json(text)
    except ValidationError:
        return False
    return True
