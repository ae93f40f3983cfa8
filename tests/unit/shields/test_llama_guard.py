"""LlamaGuard as a shield: categories, the request it sends, and violations it records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentic.errors import BackendTimeoutError, ConfigError
from agentic.inference.base import Completion, InferenceRequest, TextDelta, Timings
from agentic.shields import LlamaGuard, Shield, render_guard_prompt
from agentic.types import (
    AssistantMessage,
    ImageContent,
    Message,
    StopReason,
    TextContent,
    Usage,
    UserMessage,
)

G8 = "meta-llama/Llama-Guard-3-8B"
G1 = "meta-llama/Llama-Guard-3-1B"
G11 = "meta-llama/Llama-Guard-3-11B-Vision"


class ScriptedGuard:
    """An in-process backend that answers every request with the next scripted text."""

    def __init__(self, *answers: str, delay: float = 0.0, context: int | None = None) -> None:
        self.answers = list(answers)
        self.requests: list[InferenceRequest] = []
        self.delay = delay
        self.context = context

    async def context_length(self, model: str) -> int | None:
        return self.context

    async def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        text = self.answers.pop(0)
        yield TextDelta(text)
        yield Completion(text, StopReason.end_of_turn, Usage(), Timings(None, 0.0))


QUESTION = [UserMessage(content="How do I pick a lock?")]


def test_is_a_shield() -> None:
    assert isinstance(LlamaGuard(ScriptedGuard()), Shield)


@pytest.mark.parametrize(
    ("model", "kwargs", "expected"),
    [
        (G8, {}, [f"S{i}" for i in range(1, 14)]),  # S14 only with a code interpreter
        (G8, {"code_interpreter": True}, [f"S{i}" for i in range(1, 15)]),
        (G1, {"code_interpreter": True}, [f"S{i}" for i in range(1, 14)]),  # 1B has no S14
        (
            G8,
            {"excluded_categories": ["S2", "s6"]},
            ["S1", "S3", "S4", "S5", *[f"S{i}" for i in range(7, 14)]],
        ),
    ],
)
def test_categories(model: str, kwargs: dict[str, object], expected: list[str]) -> None:
    guard = LlamaGuard(ScriptedGuard(), model, **kwargs)  # type: ignore[arg-type]
    assert list(guard.categories) == expected


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", {}, "not a Llama Guard model"),
        (G1, {"excluded_categories": ["S14"]}, "S14, which meta-llama/Llama-Guard-3-1B does not"),
        (G8, {"excluded_categories": [f"S{i}" for i in range(1, 14)]}, "no category to check"),
        (G8, {"max_tokens": 0}, "max_tokens"),
        (G8, {"timeout": 0}, "timeout"),
        (G8, {"context_length": 10}, "context_length"),
    ],
)
def test_bad_configs_fail_at_construction(
    model: str, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        LlamaGuard(ScriptedGuard(), model, **kwargs)  # type: ignore[arg-type]


async def test_sends_the_raw_prompt_greedily_and_passes_a_safe_message() -> None:
    backend = ScriptedGuard("\n\nsafe<|eot_id|>")
    guard = LlamaGuard(backend, G8, max_tokens=12)
    assert await guard.check(QUESTION, stage="input") is None
    [request] = backend.requests
    expected = render_guard_prompt(QUESTION, model=G8, categories=guard.categories)
    assert request.prompt == expected.text
    assert request.messages == ()  # a raw completion: no second chat template
    assert request.model == G8
    assert request.sampling.temperature == 0.0
    assert request.sampling.max_tokens == 12
    assert request.images == ()


async def test_an_unsafe_input_is_a_violation_with_its_categories() -> None:
    guard = LlamaGuard(ScriptedGuard("unsafe\nS2,S1"), refusal="Not here.")
    violation = await guard.check(QUESTION, stage="input")
    assert violation is not None
    assert violation.shield == "llama_guard"
    assert violation.categories == ["S1", "S2"]
    assert violation.message == (
        "Llama Guard flagged the user's message: S1 (Violent Crimes); S2 (Non-Violent Crimes)"
    )
    assert violation.refusal == "Not here."
    assert violation.metadata["raw_output"] == "unsafe\nS2,S1"
    assert violation.metadata["role"] == "User"
    assert "S14" not in violation.metadata["checked_categories"]


async def test_the_output_stage_judges_the_answer_as_agent() -> None:
    backend = ScriptedGuard("unsafe\nS10")
    guard = LlamaGuard(backend, name="guard")
    answer: list[Message] = [*QUESTION, AssistantMessage(content="Here is how...")]
    violation = await guard.check(answer, stage="output")
    assert violation is not None
    assert violation.message == "Llama Guard flagged the agent's answer: S10 (Hate)"
    prompt = backend.requests[0].prompt or ""
    assert "ONLY THE LAST Agent message" in prompt
    assert "Agent: Here is how...\n\n<END CONVERSATION>" in prompt


@pytest.mark.parametrize(
    ("answer", "categories"),
    [
        ("", ["empty_output"]),
        ("I'm not sure", ["malformed_verdict"]),
        ("unsafe", ["missing_categories"]),
        ("unsafe\nS1,S42", ["S1", "unknown_category"]),
    ],
)
async def test_unreadable_answers_fail_closed(answer: str, categories: list[str]) -> None:
    violation = await LlamaGuard(ScriptedGuard(answer)).check(QUESTION, stage="input")
    assert violation is not None
    assert violation.categories == categories
    assert violation.metadata["raw_output"] == answer


async def test_a_category_that_was_not_offered_does_not_count() -> None:
    guard = LlamaGuard(ScriptedGuard("unsafe\nS14"), G8, excluded_categories=["S7"])
    assert await guard.check(QUESTION, stage="input") is None
    guard = LlamaGuard(ScriptedGuard("unsafe\nS7,S14"), G8, excluded_categories=["S7"])
    assert await guard.check(QUESTION, stage="input") is None


async def test_11b_vision_sends_the_users_image_with_the_prompt() -> None:
    backend = ScriptedGuard("safe")
    image = ImageContent.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    message = UserMessage(content=[image, TextContent(text="Is this a weapon?")])
    assert await LlamaGuard(backend, G11).check([message], stage="input") is None
    [request] = backend.requests
    assert request.images == (image,)
    assert request.prompt is not None
    assert request.prompt.startswith(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|> Task:"
    )


async def test_a_slow_guard_times_out_with_a_typed_error() -> None:
    guard = LlamaGuard(ScriptedGuard("safe", delay=1.0), timeout=0.05)
    with pytest.raises(BackendTimeoutError, match=r"did not answer within 0\.05 s"):
        await guard.check(QUESTION, stage="input")


async def test_the_served_context_bounds_the_prompt() -> None:
    history: list[UserMessage | AssistantMessage] = []
    for i in range(20):
        history += [
            UserMessage(content=f"q{i} " + "x " * 40),
            AssistantMessage(content=f"a{i} " + "y " * 40),
        ]
    backend = ScriptedGuard("safe", "safe", context=1000)
    guard = LlamaGuard(backend, G8)
    prompt, verdict = await guard.judge([*history, UserMessage(content="last")], stage="input")
    assert verdict.safe
    assert prompt.dropped_turns > 0
    assert "User: last" in prompt.text
    fixed = LlamaGuard(backend, G8, context_length=100_000)
    prompt, _ = await fixed.judge([*history, UserMessage(content="last")], stage="input")
    assert prompt.dropped_turns == 0
