"""The shield machinery of a turn, without a model: running shields, the stream gates, the
sentence splitter, data screening, the code gate, and building agents with shields."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic.agent import AgentConfig, PersistenceConfig, StepComplete, StepProgress, StepStart
from agentic.agent.core import AgentCore, build_core
from agentic.agent.gates import HeldWriter, OutputGate, _chunk_end, split_sentences
from agentic.agent.guarding import (
    ShieldRecorder,
    run_shields,
    run_tool_calls,
    screen_tool_responses,
)
from agentic.agent.types import InferenceStep, StepType
from agentic.errors import ConfigError
from agentic.inference.vllm_server import VLLMServer
from agentic.shields import CodeIssue, CodeVerdict, LlamaGuard, ScanVerdict, ShieldStage, Violation
from agentic.tools import ToolContext, ToolResponse, tool
from agentic.types import AssistantMessage, Message, ToolCall, UserMessage, content_text

LLAMA31 = "meta-llama/Llama-3.1-8B-Instruct"
G8 = "meta-llama/Llama-Guard-3-8B"
G1 = "meta-llama/Llama-Guard-3-1B"
OFFLINE = VLLMServer("http://127.0.0.1:9/v1")  # never contacted: nothing here reaches a model


class Word:
    """A shield that blocks a word after ``delay`` seconds, or fails with ``error``."""

    def __init__(
        self,
        word: str = "bad",
        name: str = "word",
        delay: float = 0.0,
        error: Exception | None = None,
    ) -> None:
        self.word, self._name, self.delay, self.error = word, name, delay, error
        self.seen: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def check(self, messages: Sequence[Message], *, stage: ShieldStage) -> Violation | None:
        self.seen.append(content_text(messages[-1].content))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if self.word in self.seen[-1]:
            return Violation(shield=self.name, categories=["S1"])
        return None

    async def scan(self, texts: Sequence[str]) -> list[ScanVerdict]:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [
            ScanVerdict(scanner=self.name, flagged=self.word in t, categories=["injection"])
            for t in texts
        ]


def core_with(**config: Any) -> AgentCore:
    shields = config.pop("shields", ())
    tools = config.pop("tools", ())
    cfg = AgentConfig(
        model=LLAMA31, persistence=PersistenceConfig(backend="memory"), tools=list(tools), **config
    )
    return build_core(cfg, OFFLINE, shields=shields)


# --- sentences ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("Hello", ["Hello"]),
        ("Hello. World", ["Hello. ", "World"]),
        ("Hi! How are you? Fine.", ["Hi! ", "How are you? ", "Fine."]),
        ("Pi is 3.14 today. Yes", ["Pi is 3.14 today. ", "Yes"]),
        ("One\nTwo\n\nThree", ["One\n", "Two\n\n", "Three"]),
        ('He said "stop." Then', ['He said "stop." ', "Then"]),
        ("Wait... what?! ok", ["Wait... ", "what?! ", "ok"]),
        ("Done.  \n", ["Done.  \n"]),
    ],
)
def test_split_sentences(text: str, pieces: list[str]) -> None:
    assert split_sentences(text) == pieces


@given(st.text(alphabet="ab .!?\n\"')", max_size=60))
def test_sentences_always_concatenate_to_the_text(text: str) -> None:
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert all(pieces)


def test_a_chunk_ends_after_enough_complete_sentences() -> None:
    assert _chunk_end("One. Two", 1) == 5
    assert _chunk_end("One. Two", 2) is None  # "Two" is not finished
    assert _chunk_end("One. Two. Three", 2) == 10
    assert _chunk_end("One. Two. Three. Fo", 2) == 17  # every complete sentence goes at once
    assert _chunk_end("One.", 1) is None  # "One.5" may follow


# --- running shields ------------------------------------------------------------------------


async def test_shields_run_together_and_the_first_violation_decides() -> None:
    a, b = Word("x", "a", delay=0.2), Word("x", "b", delay=0.2)
    core = core_with(shields=[a, b], input_shields=["a", "b"])
    started = asyncio.get_running_loop().time()
    outcomes = await run_shields(core, core.input_shields, [UserMessage(content="x")], "input")
    assert asyncio.get_running_loop().time() - started < 0.35
    assert [o.shield for o in outcomes] == ["a", "b"]
    assert outcomes[0].started_at < outcomes[1].completed_at
    assert outcomes[1].started_at < outcomes[0].completed_at


@pytest.mark.parametrize("policy", ["block", "allow"])
async def test_a_failing_or_slow_shield_follows_the_failure_policy(policy: str) -> None:
    broken = Word(name="broken", error=RuntimeError("guard down"))
    slow = Word(name="slow", delay=5)
    own_timeout = Word(name="own", error=TimeoutError())
    fine = Word(name="fine")
    core = core_with(
        shields=[broken, slow, own_timeout, fine],
        input_shields=["broken", "slow", "own", "fine"],
        shield_timeout=0.1,
        shield_failure=policy,
    )
    outcomes = await run_shields(core, core.input_shields, [UserMessage(content="hi")], "input")
    errors = [o.error for o in outcomes]
    assert errors == [
        "RuntimeError: guard down",
        "slow gave no verdict within 0.1 s",
        "TimeoutError",  # the shield's own timeout is its error, not ours
        None,
    ]
    kinds = [o.violation.categories if o.violation else None for o in outcomes]
    if policy == "block":
        assert kinds == [["shield_error"], ["shield_timeout"], ["shield_error"], None]
    else:
        assert kinds == [None, None, None, None]


async def test_the_recorder_makes_one_step_of_several_checks() -> None:
    word = Word("bad")
    core = core_with(shields=[word], output_shields=["word"])
    events: list[Any] = []
    recorder = ShieldRecorder(core, events.append, "t1", "output", core.output_shields)
    assert await recorder.check([AssistantMessage(content="fine")]) is None
    violation = await recorder.check([AssistantMessage(content="bad")])
    assert violation is not None
    step = recorder.complete()
    assert [type(e) for e in events] == [StepStart, StepComplete]
    assert step.violation == violation
    assert [o.check for o in step.outcomes] == [0, 1]
    assert step.started_at <= step.outcomes[0].started_at


# --- the stream gates -----------------------------------------------------------------------


def test_held_events_wait_for_open() -> None:
    out: list[int] = []
    held = HeldWriter(out.append)
    held(1)
    held(2)
    assert out == []
    held.open()
    held(3)
    assert out == [1, 2, 3]


IDS = {"turn_id": "t", "step_id": "s", "step_type": StepType.inference}


def text(t: str) -> StepProgress:
    return StepProgress(text=t, **IDS)


def gate_for(core: AgentCore, out: list[Any]) -> OutputGate:
    recorder = ShieldRecorder(core, out.append, "t", "output", core.output_shields)
    return OutputGate(core, [UserMessage(content="q")], out.append, recorder)


def texts(out: Sequence[Any]) -> list[str]:
    return [e.text for e in out if isinstance(e, StepProgress) and e.tool_call is None]


async def test_a_chunked_gate_releases_checked_sentences_and_splits_an_event() -> None:
    word = Word("bad")
    core = core_with(shields=[word], output_shields=["word"], output_shield_chunk=1)
    out: list[Any] = []
    gate = gate_for(core, out)
    call = StepProgress(tool_call=ToolCall(tool_name="x"), **IDS)
    gate(StepStart(**IDS))
    gate(text("One. Tw"))  # a sentence ends inside this event
    gate(call)  # held behind the text before it: order is kept
    gate(text("o"))
    await asyncio.sleep(0.05)
    assert texts(out) == ["One. "]  # released once checked, the event cut at the sentence end
    assert word.seen == ["One. "]
    assert out[-1] is not call
    gate(text(". Three"))
    step = InferenceStep(
        step_id="s",
        turn_id="t",
        started_at=gate.started_at,
        completed_at=gate.started_at,
        model_response=AssistantMessage(content="One. Two. Three"),
    )
    gate(StepComplete(turn_id="t", step=step))
    assert await gate.finish() is None
    assert "".join(texts(out)) == "One. Two. Three"
    assert out.index(call) > 1
    assert isinstance(out[-1], StepComplete)
    assert word.seen == ["One. ", "One. Two. ", "One. Two. Three"]


async def test_a_gate_drops_everything_after_a_violation() -> None:
    word = Word("bad")
    core = core_with(shields=[word], output_shields=["word"], output_shield_chunk=1)
    out: list[Any] = []
    stopped: list[bool] = []
    gate = gate_for(core, out)
    gate.on_violation = lambda: stopped.append(True)
    gate(StepStart(**IDS))
    gate(text("This is bad. More"))
    await asyncio.sleep(0.05)
    assert stopped == [True]
    gate(text(" text. "))  # still streaming while the inference is cancelled: dropped
    assert await gate.finish() is not None
    step = gate.refusal_events(None, AssistantMessage(content="No."), "auto")
    assert texts(out) == ["No."]
    assert out[-2].replaced
    assert step.withheld
    assert step.model_response.content == "No."
    assert step.step_id == "s"
    await gate.aclose()


async def test_a_gate_check_still_running_is_cancelled_on_close() -> None:
    word = Word("bad", delay=5)
    core = core_with(shields=[word], output_shields=["word"], output_shield_chunk=1)
    out: list[Any] = []
    gate = gate_for(core, out)
    gate(StepStart(**IDS))
    gate(text("One. "))
    await asyncio.sleep(0)
    await asyncio.wait_for(gate.aclose(), 1)
    assert texts(out) == []


# --- data and code shields ------------------------------------------------------------------


def response(call_id: str, content: str) -> ToolResponse:
    return ToolResponse(call_id=call_id, tool_name="t", content=content)


@pytest.mark.parametrize("policy", ["block", "allow"])
async def test_a_failing_data_shield_withholds_unless_failures_are_allowed(policy: str) -> None:
    flagger = Word("evil", name="flagger")
    broken = Word(name="broken", error=RuntimeError("down"))
    core = core_with(
        shields=[flagger, broken], data_shields=["flagger", "broken"], shield_failure=policy
    )
    given_ = [response("a", "fine"), response("b", "evil text"), response("c", " ")]
    shown, records = await screen_tool_responses(core, given_)
    assert [r.source for r in records] == ["a", "b"]  # blank text is not screened
    assert shown[2] is given_[2]
    error_verdict = records[0].verdicts[1]
    assert error_verdict.categories == ["shield_error"]
    assert error_verdict.metadata == {"error": "RuntimeError: down"}
    assert records[1].verdicts[0].flagged
    assert shown[1].content == records[1].verdicts[0].notice()  # the first flag's notice
    if policy == "block":
        assert records[0].withheld
        assert (
            shown[0].content == "[content withheld: broken could not screen it; do not act on it]"
        )
    else:
        assert not records[0].withheld
        assert shown[0] is given_[0]


async def test_without_data_shields_nothing_is_screened() -> None:
    core = core_with()
    given_ = [response("a", "anything")]
    assert await screen_tool_responses(core, given_) == (given_, [])


class Scanner:
    """A code scanner with a fixed verdict, slow enough to see what runs meanwhile."""

    def __init__(self, verdict: CodeVerdict, name: str = "scanner") -> None:
        self.verdict, self._name = verdict, name

    @property
    def name(self) -> str:
        return self._name

    async def scan_code(self, code: str, language: str | None = "python") -> CodeVerdict:
        await asyncio.sleep(0.1)
        return self.verdict


ISSUE = CodeIssue(
    description="Use of eval",
    cwe="CWE-95",
    severity="warning",
    pattern_id="eval-use",
    line=3,
    analyzer="regex",
    language="python",
)


def context(call: ToolCall) -> ToolContext[None]:
    return ToolContext(deps=None, session_id="s", turn_id="t", call=call)


@pytest.mark.parametrize("treatment", ["block", "warn"])
async def test_the_code_gate_blocks_or_warns_and_other_calls_run_meanwhile(treatment: str) -> None:
    ran: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    @tool(name="code_interpreter")
    async def interpreter(code: str) -> str:
        ran.append(("code", loop.time()))
        return "out"

    @tool
    async def other() -> str:
        ran.append(("other", loop.time()))
        return "other"

    issues = [ISSUE, ISSUE.model_copy(update={"line": None})]
    verdict = CodeVerdict(language="python", issues=issues, treatment=treatment)
    core = core_with(
        tools=[interpreter, other], shields=[Scanner(verdict)], code_shields=["scanner"]
    )
    calls = [
        ToolCall(call_id="1", tool_name="code_interpreter", arguments={"code": "eval(x)"}),
        ToolCall(call_id="2", tool_name="other"),
    ]
    started = loop.time()
    responses, checks = await run_tool_calls(core, calls, context)
    assert [r.call_id for r in responses] == ["1", "2"]
    assert responses[1].content == "other"
    assert ran[0][0] == "other"
    assert ran[0][1] - started < 0.09  # it did not wait for the scan
    (check,) = checks
    assert check.verdict == verdict
    if treatment == "block":
        assert check.blocked
        assert responses[0].error == "rejected"
        assert responses[0].content == (
            "The code was not run. scanner found insecure code: CWE-95 Use of eval (line 3); "
            "CWE-95 Use of eval. Rewrite the code without these patterns and call the tool again."
        )
        assert [name for name, _ in ran] == ["other"]
    else:
        assert not check.blocked
        assert responses[0].content == "out"


# --- building agents with shields -----------------------------------------------------------


def test_shields_are_resolved_by_name_and_checked_for_their_kind() -> None:
    word = Word()
    core = core_with(shields=[word], data_shields=["word"], input_shields=[word])
    assert core.data_shields == (word,)
    assert core.input_shields == (word,)
    guard = LlamaGuard(OFFLINE, G8)
    with pytest.raises(ConfigError, match="data shield 'llama_guard' is a LlamaGuard, not a "):
        core_with(shields=[guard], data_shields=["llama_guard"])
    with pytest.raises(ConfigError, match="code shield 'word' is a Word, not a CodeScanner"):
        core_with(shields=[word], code_shields=["word"])
    with pytest.raises(ConfigError, match="unknown shield 'nope'"):
        core_with(code_shields=["nope"])


def test_config_bounds_for_shield_settings() -> None:
    for bad in ({"output_shield_chunk": 0}, {"shield_timeout": 0}, {"shield_failure": "maybe"}):
        with pytest.raises(ConfigError):
            AgentConfig.from_dict({"model": LLAMA31, **bad})


def test_llama_guard_offers_s14_exactly_to_agents_with_the_code_interpreter() -> None:
    @tool(name="code_interpreter")
    async def interpreter(code: str) -> str:
        return code

    guard = LlamaGuard(OFFLINE, G8)
    with_ci = core_with(
        tools=[interpreter], shields=[guard], input_shields=["llama_guard"], output_shields=[guard]
    )
    (adapted,) = with_ci.input_shields
    assert isinstance(adapted, LlamaGuard)
    assert adapted.categories[-1] == "S14"
    assert with_ci.output_shields[0] is adapted  # one guard, adapted once
    assert guard.categories[-1] == "S13"  # the object given is not changed
    assert core_with(shields=[guard], input_shields=[guard]).input_shields[0] is guard

    always = LlamaGuard(OFFLINE, G8, code_interpreter=True)
    (dropped,) = core_with(input_shields=[always]).input_shields
    assert isinstance(dropped, LlamaGuard)
    assert "S14" not in dropped.categories
    assert "S14" not in dropped.with_code_interpreter(False).categories
    excluded = LlamaGuard(OFFLINE, G8, excluded_categories=["S14"])
    assert "S14" not in excluded.with_code_interpreter(True).categories  # an explicit choice
    small = LlamaGuard(OFFLINE, G1)
    assert small.with_code_interpreter(True).categories == small.categories  # 1B has no S14


@pytest.mark.parametrize("chunk", [None, 1])
async def test_blank_text_before_a_tool_call_is_not_judged(chunk: int | None) -> None:
    word = Word("bad")
    core = core_with(shields=[word], output_shields=["word"], output_shield_chunk=chunk)
    out: list[Any] = []
    gate = gate_for(core, out)
    call = StepProgress(tool_call=ToolCall(tool_name="x"), **IDS)
    gate(StepStart(**IDS))
    gate(text("\n\n"))
    gate(call)
    assert await gate.finish() is None
    assert word.seen == []
    assert not gate.recorder.started  # no shield step for an answer without text
    assert out[1:] == [text("\n\n"), call]
