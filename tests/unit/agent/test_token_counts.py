"""Incremental exact prompt-token counting: equal to a full count, asking only about new text."""

from __future__ import annotations

import random

import pytest

from agentic.agent.prompting import Budget, TokenCounts, fit_history
from agentic.llama.prompt import render_prompt
from agentic.llama.tokenizer import get_tokenizer
from agentic.types import (
    AssistantMessage,
    Message,
    StopReason,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    UserMessage,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
WEATHER = ToolDefinition.from_json_schema(
    "get_weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
WORDS = ["Paris", " weather", "<|eot_id|>", "é", " 42", "\n\n", "  ", "<|start_header_id|>", "ok"]


class Counter:
    """The real Llama 3 tokenizer behind an async counter that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, text: str) -> int:
        self.asked.append(text)
        return get_tokenizer().count(text)

    def take(self) -> int:
        """Characters asked about since the last call."""
        chars = sum(map(len, self.asked))
        self.asked.clear()
        return chars


def _text(rng: random.Random) -> str:
    return "".join(rng.choices(WORDS, k=rng.randint(1, 12)))


def _turn(rng: random.Random, n: int) -> list[Message]:
    """One user turn: a question, zero to two tool calls with results, an answer."""
    turn: list[Message] = [UserMessage(content=f"question {n}: {_text(rng)}")]
    for i in range(rng.randint(0, 2)):
        call = ToolCall(call_id=f"c{n}.{i}", tool_name="get_weather", arguments={"city": "Oslo"})
        turn.append(
            AssistantMessage(content="", tool_calls=[call], stop_reason=StopReason.end_of_message)
        )
        turn.append(ToolMessage(call_id=call.call_id, content=_text(rng)))
    turn.append(AssistantMessage(content=_text(rng)))
    return turn


def _render(messages: list[Message], schema: bool) -> str:
    return render_prompt(
        [SystemMessage(content="Be brief."), *messages],
        model=MODEL,
        tools=[WEATHER],
        response_format=SCHEMA if schema else None,
    )


@pytest.mark.parametrize(("seed", "schema"), [(1, False), (2, True), (3, False)])
async def test_counts_equal_full_counts_and_cost_only_new_text(seed: int, schema: bool) -> None:
    rng = random.Random(seed)
    counts, counter = TokenCounts(), Counter()
    history: list[Message] = []
    for n in range(25):
        for message in _turn(rng, n):
            history.append(message)
            prompt = _render(history, schema)
            assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)
            new = len(_render([message], schema)) - len(_render([], schema))
            if n or len(history) > 1:  # after the first count, only new messages are asked
                assert counter.take() <= new + 200
            counter.take()


async def test_a_prompt_with_turns_left_out_costs_the_dropped_text_only() -> None:
    rng = random.Random(4)
    counter = Counter()
    counts = TokenCounts()
    history = [m for n in range(10) for m in _turn(rng, n)]
    full = _render(history, False)
    full_count = await counts.count(full, counter)
    starts = [i for i, m in enumerate(history) if isinstance(m, UserMessage)]
    trimmed = _render(history[starts[3] :], False)
    counter.take()
    tokens = await counts.count(trimmed, counter, after=(full, full_count))
    assert tokens == get_tokenizer().count(trimmed)
    assert counter.take() <= len(full) - len(trimmed) + 200


async def test_identical_turns_and_unrelated_prompts_still_count_exactly() -> None:
    counts, counter = TokenCounts(), Counter()
    turn: list[Message] = [UserMessage(content="same"), AssistantMessage(content="answer")]
    prompts = [_render(turn * k, False) for k in range(1, 8)]
    for prompt in prompts:
        assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)
    # counted before: the remembered prefix is used, whatever ``after`` says
    real = get_tokenizer().count(prompts[2])
    assert await counts.count(prompts[2], counter, after=(prompts[6], 1)) == real
    # nothing remembered: the previous count minus the turns left out
    fresh = TokenCounts()
    generation = prompts[6][prompts[6].rindex("<|start_header_id|>") :]
    removed = prompts[6][len(prompts[2]) - len(generation) : len(prompts[6]) - len(generation)]
    tokens = await fresh.count(prompts[2], counter, after=(prompts[6], 10_000))
    assert tokens == 10_000 - get_tokenizer().count(removed)
    assert await counts.count("no headers at all", counter) == 4
    other = _render([UserMessage(content="different")], False)
    assert await fresh.count(other, counter, after=(prompts[0], 3)) == get_tokenizer().count(other)


async def test_many_sessions_stay_within_the_bounds() -> None:
    counts, counter = TokenCounts(max_prefixes=20, max_chunk_chars=2_000), Counter()
    for session in range(60):
        history: list[Message] = [UserMessage(content=f"session {session} " * 30)]
        prompt = _render(history, False)
        assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)
    assert len(counts) <= 2 * 20 + 1


async def test_fit_history_counts_a_growing_session_incrementally() -> None:
    rng = random.Random(5)
    counter = Counter()
    budget = Budget(limit=400, count=counter)
    history: list[Message] = []
    turn_starts: list[int] = []
    start = 0
    for n in range(30):
        turn_starts.append(len(history))
        history.extend(_turn(rng, n))

        def render(i: int) -> str:
            return _render(history[i:], False)

        fit = await fit_history(render, turn_starts, start, budget, turn_starts[-1])
        assert fit.tokens == get_tokenizer().count(fit.prompt) <= 400
        if start and fit.start == start:
            assert counter.take() < len(fit.prompt) // 2  # only the new turn was asked about
        counter.take()
        # the reference: the first turn start whose full count fits
        expected = next(
            s
            for s in [start, *(t for t in turn_starts if t > start)]
            if get_tokenizer().count(render(s)) <= 400
        )
        assert fit.start == expected
        start = fit.start


async def test_an_evicted_generation_still_answers_once_and_moves_back() -> None:
    counts, counter = TokenCounts(max_prefixes=4), Counter()
    first: list[Message] = [UserMessage(content="first session"), AssistantMessage(content="hello")]
    await counts.count(_render(first, False), counter)
    for other in ("second", "third"):
        await counts.count(_render([UserMessage(content=other)], False), counter)
    counter.take()
    grown: list[Message] = [*first, UserMessage(content="more")]
    prompt = _render(grown, False)
    assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)
    assert counter.take() < 60  # the remembered prefix served, though it had aged


async def test_many_prefixes_of_one_length_keep_counts_exact() -> None:
    counts, counter = TokenCounts(), Counter()
    for digit in range(10, 30):  # same lengths, different texts
        prompt = _render([UserMessage(content=f"q{digit}"), AssistantMessage(content="a")], False)
        assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)
        assert await counts.count(prompt, counter) == get_tokenizer().count(prompt)


async def test_texts_that_are_not_a_shortened_previous_prompt_are_counted_in_full() -> None:
    counter = Counter()
    cut = "<|start_header_id|>"
    longer = f"y{cut}b{cut}c"
    for previous in (f"x{cut}a{cut}b{cut}c", "short"):  # different start; not longer
        counts = TokenCounts()
        assert await counts.count(longer, counter, after=(previous, 1)) == (
            get_tokenizer().count(longer)
        )
