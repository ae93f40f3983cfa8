"""TransformersLocal on a tiny random-weight Llama 3 checkpoint built once per session."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import collect

from agentic.agent import Agent, AgentConfig, InferenceStep, PersistenceConfig
from agentic.config import Settings
from agentic.errors import (
    ConfigError,
    ContextLengthError,
    InferenceError,
    MissingDependencyError,
    UnknownModelError,
    UnsupportedFeatureError,
)
from agentic.inference.base import (
    InferenceBackend,
    InferenceRequest,
    TextDelta,
    complete,
)
from agentic.inference.transformers_local import TransformersLocal, logit_bias
from agentic.llama.prompt import render_prompt
from agentic.llama.tokenizer import get_tokenizer
from agentic.testing.tiny_llama import build_tiny_llama, scripted_tokens
from agentic.types import ImageContent, SamplingParams, StopReason, TextContent, UserMessage

TOK = get_tokenizer()
SPEC = "meta-llama/Llama-3.2-1B-Instruct"
GREEDY = SamplingParams(temperature=0, max_tokens=12)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # A toy model spends its time in thread hand-offs: one thread is ~7x faster on 2 cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def backend(tiny: Path) -> TransformersLocal:
    return TransformersLocal(tiny, model_spec=SPEC)


def req(prompt: str = "<|begin_of_text|>Hello", **sampling: Any) -> InferenceRequest:
    params = GREEDY.model_copy(update=sampling)
    return InferenceRequest(model=SPEC, prompt=prompt, sampling=params)


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


def generate_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "agentic-transformers-generate"}


def wait_gone(threads: set[threading.Thread], timeout: float = 5.0) -> None:
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "the generation thread kept running"


class Recorder:
    """A logits processor that records the generated ids it is shown, and can hold a step."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        self.gate.wait(10)
        self.calls.append(list(generated))
        return logits


def test_is_an_inference_backend(backend: TransformersLocal) -> None:
    assert isinstance(backend, InferenceBackend)
    assert repr(backend) == f"TransformersLocal({str(backend.model)!r}, device='cpu')"
    assert backend.context_length == 2048


async def test_greedy_is_deterministic_and_ignores_checkpoint_sampling(
    backend: TransformersLocal, tiny: Path
) -> None:
    # the checkpoint's generation_config samples at temperature 0.6; temperature 0 must win
    first = await complete(backend, req())
    second = await complete(backend, req())
    fresh = await complete(TransformersLocal(tiny, model_spec=SPEC), req())
    assert first.text == second.text == fresh.text
    assert first.text
    assert first.stop_reason is StopReason.out_of_tokens
    assert first.usage.completion_tokens == 12
    assert first.usage.prompt_tokens == TOK.count("<|begin_of_text|>Hello") == 2


async def test_deltas_concatenate_to_the_completion(backend: TransformersLocal) -> None:
    deltas, final = await collect(backend, req(max_tokens=20))
    assert len(deltas) >= 2
    assert all(deltas)
    assert "".join(deltas) == final.text
    assert final.timings.time_to_first_token is not None
    assert 0 < final.timings.time_to_first_token <= final.timings.total


async def test_seeded_sampling_repeats_and_differs_from_greedy(backend: TransformersLocal) -> None:
    one = await complete(backend, req(temperature=1.0, top_p=1.0, seed=7, max_tokens=16))
    again = await complete(backend, req(temperature=1.0, top_p=1.0, seed=7, max_tokens=16))
    other = await complete(backend, req(temperature=1.0, top_p=1.0, seed=8, max_tokens=16))
    greedy = await complete(backend, req(max_tokens=16))
    assert one.text == again.text
    assert one.text != other.text
    assert one.text != greedy.text
    # top_k=1 is greedy, whatever the temperature and seed
    top1 = await complete(backend, req(temperature=1.5, top_k=1, seed=3, max_tokens=16))
    assert top1.text == greedy.text


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ('Hi<|python_tag|>brave_search.call(query="x")<|eom_id|>', StopReason.end_of_message),
        ("The answer is 4.<|eot_id|>", StopReason.end_of_turn),
        ("base model text<|end_of_text|>", StopReason.end_of_turn),
    ],
)
async def test_stop_tokens(tiny: Path, script: str, reason: StopReason) -> None:
    backend = TransformersLocal(tiny, model_spec=SPEC, logits_processors=[scripted_tokens(script)])
    deltas, final = await collect(backend, req(max_tokens=100))
    assert final.text == script  # the stop token's text ends the raw text, as with vLLM
    assert final.stop_reason is reason
    assert final.usage.completion_tokens == len(TOK.encode(script))
    assert "".join(deltas) == script
    if "<|python_tag|>" in script:
        assert "<|python_tag|>" in deltas


async def test_sampling_cannot_change_a_script(tiny: Path) -> None:
    script = "fixed<|eot_id|>"
    backend = TransformersLocal(tiny, logits_processors=[scripted_tokens(TOK.encode(script))])
    final = await complete(backend, req(temperature=2.0, top_p=0.5, seed=1))
    assert final.text == script
    # after its script the model runs free
    opening = TransformersLocal(tiny, logits_processors=[scripted_tokens("Once upon")])
    free = await complete(opening, req(max_tokens=5))
    assert free.text.startswith("Once upon")
    assert len(free.text) > len("Once upon")


async def test_max_tokens_is_out_of_tokens(tiny: Path) -> None:
    backend = TransformersLocal(
        tiny, logits_processors=[scripted_tokens("one two three four five")]
    )
    final = await complete(backend, req(max_tokens=3))
    assert final.text == "one two three"
    assert final.stop_reason is StopReason.out_of_tokens
    assert final.usage.completion_tokens == 3


async def test_characters_split_over_tokens_stream_whole(tiny: Path) -> None:
    script = "🙂 日本語 🙂<|eot_id|>"
    assert len(TOK.encode("🙂")) == 2
    backend = TransformersLocal(tiny, logits_processors=[scripted_tokens(script)])
    deltas, final = await collect(backend, req(max_tokens=50))
    assert final.text == script
    assert not any("\ufffd" in d for d in deltas)
    assert len(deltas) < final.usage.completion_tokens


async def test_stop_strings_end_the_turn_without_their_text(tiny: Path) -> None:
    backend = TransformersLocal(tiny, logits_processors=[scripted_tokens("hello world and more")])
    # "lo wor" spans two tokens: "hello" must be held back until " world" shows it is a stop
    deltas, final = await collect(backend, req(stop=["xyz", "lo wor"], max_tokens=10))
    assert final.text == "".join(deltas) == "hel"
    assert final.stop_reason is StopReason.end_of_turn
    assert final.usage.completion_tokens == 2


async def test_held_back_text_is_released(tiny: Path) -> None:
    backend = TransformersLocal(tiny, logits_processors=[scripted_tokens("hello world<|eot_id|>")])
    final = await complete(backend, req(stop=["worlds"]))
    assert final.text == "hello world<|eot_id|>"
    assert final.stop_reason is StopReason.end_of_turn
    ended = await complete(backend, req(stop=["worlds"], max_tokens=2))
    assert ended.text == "hello world"
    assert ended.stop_reason is StopReason.out_of_tokens


async def test_penalties_stop_repetition(tiny: Path) -> None:
    recorder = Recorder()
    backend = TransformersLocal(tiny, logits_processors=[recorder])
    await complete(backend, req(max_tokens=20))
    plain = recorder.calls[-1]
    assert len(set(plain)) < len(plain)  # this toy model repeats itself when greedy
    penalties: list[dict[str, Any]] = [{"frequency_penalty": 1.0}, {"presence_penalty": 1.0}]
    for penalty in penalties:
        await complete(backend, req(max_tokens=20, **penalty))
        ids = recorder.calls[-1]
        assert len(ids) == 19
        assert len(set(ids)) == len(ids)
    await complete(backend, req(max_tokens=20, repetition_penalty=1e6))
    assert len(set(recorder.calls[-1])) == 19


async def test_logit_bias(tiny: Path, backend: TransformersLocal) -> None:
    greedy = TOK.encode((await complete(backend, req(max_tokens=1))).text)[0]
    banned = TransformersLocal(tiny, logits_processors=[logit_bias({greedy: -100.0})])
    assert TOK.encode((await complete(banned, req(max_tokens=1))).text)[0] != greedy
    forced = TransformersLocal(tiny, logits_processors=[logit_bias({15339: 100.0})])
    final = await complete(forced, req(temperature=1.0, max_tokens=4))
    assert final.text == "hello" * 4
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        logit_bias({128256: 1.0})


async def test_closing_the_stream_stops_the_thread(tiny: Path) -> None:
    recorder = Recorder()
    backend = TransformersLocal(tiny, logits_processors=[recorder])
    before = generate_threads()
    stream = backend.stream(req(max_tokens=1500))
    assert isinstance(await anext(stream), TextDelta)
    mine = generate_threads() - before
    assert len(mine) == 1
    await stream.aclose()  # type: ignore[attr-defined]
    steps_at_close = len(recorder.calls)
    wait_gone(mine)
    assert len(recorder.calls) <= steps_at_close + 2
    assert len(recorder.calls) < 100


async def test_cancelling_the_consumer_stops_the_thread(tiny: Path) -> None:
    recorder = Recorder()
    backend = TransformersLocal(tiny, logits_processors=[recorder])
    started = asyncio.Event()
    before = generate_threads()

    async def consume() -> None:
        async for _ in backend.stream(req(max_tokens=1500)):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    wait_gone(generate_threads() - before)
    assert len(recorder.calls) < 100


async def test_a_request_cancelled_while_queued_never_runs(tiny: Path) -> None:
    recorder = Recorder()
    backend = TransformersLocal(tiny, logits_processors=[recorder])
    recorder.gate.clear()  # hold the first generation at its first step
    before = generate_threads()
    running = asyncio.create_task(complete(backend, req(max_tokens=5)))
    await eventually(lambda: bool(generate_threads() - before))
    first = generate_threads() - before
    queued = asyncio.create_task(complete(backend, req(max_tokens=5)))
    await eventually(lambda: bool(generate_threads() - before - first))
    second = generate_threads() - before - first
    queued.cancel()
    recorder.gate.set()
    assert (await running).usage.completion_tokens == 5
    with pytest.raises(asyncio.CancelledError):
        await queued
    wait_gone(second)
    assert len(recorder.calls) == 5  # only the first request ever reached the model


async def test_concurrent_streams_share_the_model(tiny: Path, backend: TransformersLocal) -> None:
    alone = await complete(backend, req(max_tokens=10))
    fresh = TransformersLocal(tiny)  # three first requests race to load it
    results = await asyncio.gather(*(complete(fresh, req(max_tokens=10)) for _ in range(3)))
    assert [c.text for c in results] == [alone.text] * 3
    assert fresh.load() is fresh.load()


async def test_the_event_loop_keeps_running(backend: TransformersLocal) -> None:
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    began = time.perf_counter()
    await complete(backend, req("<|begin_of_text|>" + " word" * 500, max_tokens=200))
    took = time.perf_counter() - began
    done = True
    await task
    # run on the loop, the generation would show up as one gap as long as all of it
    assert len(gaps) > 20
    assert max(gaps) < took / 3


async def test_context_length_errors(tiny: Path) -> None:
    small = TransformersLocal(tiny, max_context=32)
    assert small.context_length == 32
    long_prompt = "<|begin_of_text|>" + " word" * 40
    assert TOK.count(long_prompt) == 41
    with pytest.raises(ContextLengthError, match="41 tokens; the model's context is 32") as info:
        await complete(small, req(long_prompt, max_tokens=None))
    assert (info.value.prompt_tokens, info.value.max_model_len) == (41, 32)
    with pytest.raises(ContextLengthError, match="21 tokens and max_tokens is 12"):
        await complete(small, req("<|begin_of_text|>" + " word" * 20))
    # without max_tokens the completion may fill the rest of the context
    fills = await complete(small, req("<|begin_of_text|>" + " word" * 20, max_tokens=None))
    assert fills.usage.completion_tokens == 32 - 21
    assert fills.stop_reason is StopReason.out_of_tokens
    assert (await complete(small, req("<|begin_of_text|>" + " word" * 20, max_tokens=11))).text
    default = TransformersLocal(tiny)  # the checkpoint's max_position_embeddings
    with pytest.raises(ContextLengthError) as info:
        await complete(default, req("<|begin_of_text|>" + " word" * 2100))
    assert info.value.max_model_len == 2048


async def test_an_agent_drops_old_turns_to_fit_the_engines_context(
    tiny: Path, tmp_path: Path
) -> None:
    # the engine's context (max_context here) is what the agent budgets with, not the
    # model's own 128k: old turns are dropped instead of the engine refusing the prompt
    backend = TransformersLocal(
        tiny, model_spec=SPEC, max_context=400, logits_processors=[scripted_tokens("Ok.<|eot_id|>")]
    )
    config = AgentConfig(
        model=SPEC,
        persistence=PersistenceConfig(backend="memory"),
        sampling=SamplingParams(temperature=0, max_tokens=8),
    )
    async with Agent(config, backend=backend, settings=Settings(home=tmp_path)) as agent:
        session = await agent.create_session()
        turns = [await session.run(f"Turn {i}: " + "word " * 60) for i in range(6)]
    assert [t.output_text for t in turns] == ["Ok."] * 6
    dropped = [s.dropped_turns for t in turns for s in t.steps if isinstance(s, InferenceStep)]
    assert sum(dropped) > 0


async def test_renders_messages_with_the_model_spec(tiny: Path, backend: TransformersLocal) -> None:
    messages = [UserMessage(content="What is 2+2?")]
    request = InferenceRequest(model="anything", messages=messages, sampling=GREEDY)
    final = await complete(backend, request)
    assert final.usage.prompt_tokens == TOK.count(render_prompt(messages, model=SPEC))
    # without a spec, the request's model names the prompt format (3.1 adds date lines)
    free = TransformersLocal(tiny)
    today = dt.date(2024, 9, 1)
    request31 = InferenceRequest(
        model="meta-llama/Llama-3.1-8B-Instruct", messages=messages, sampling=GREEDY, today=today
    )
    rendered = render_prompt(messages, model="meta-llama/Llama-3.1-8B-Instruct", today=today)
    assert "Cutting Knowledge Date" in rendered
    assert (await complete(free, request31)).usage.prompt_tokens == TOK.count(rendered)
    with pytest.raises(UnknownModelError):
        await complete(free, InferenceRequest(model="my-finetune", messages=messages))


async def test_unsupported_requests(backend: TransformersLocal) -> None:
    with pytest.raises(UnsupportedFeatureError, match="guided decoding"):
        await complete(backend, InferenceRequest(model=SPEC, prompt="x", response_format={}))
    image = UserMessage(content=[ImageContent.from_bytes(PNG), TextContent(text="what?")])
    with pytest.raises(UnsupportedFeatureError, match="text models only"):
        await complete(backend, InferenceRequest(model=SPEC, messages=[image]))
    with pytest.raises(ConfigError, match="prompt is empty"):
        await complete(backend, req(""))


async def test_errors_in_generation_reach_the_consumer(tiny: Path) -> None:
    def broken(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if len(generated) == 2:
            raise RuntimeError("CUDA out of memory (pretend)")
        return logits

    backend = TransformersLocal(tiny, logits_processors=[broken])
    deltas: list[str] = []

    async def consume() -> None:
        async for item in backend.stream(req()):
            assert isinstance(item, TextDelta)
            deltas.append(item.text)

    with pytest.raises(InferenceError, match="RuntimeError: CUDA out of memory") as info:
        await consume()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert len(deltas) == 2

    def refusing(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        raise ConfigError("bad processor settings")

    with pytest.raises(ConfigError, match="bad processor settings"):
        await complete(TransformersLocal(tiny, logits_processors=[refusing]), req())


async def test_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model checkpoint directory"):
        await complete(TransformersLocal(tmp_path / "missing"), req())
    with pytest.raises(ConfigError, match=r"cannot load model 'meta-llama/Llama-3\.2-1B'"):
        # offline in tests: a Hugging Face id that is not in the local cache cannot load
        await complete(TransformersLocal("meta-llama/Llama-3.2-1B"), req())
    with pytest.raises(ConfigError, match="max_context"):
        TransformersLocal(tmp_path, max_context=0)


async def test_rejects_a_checkpoint_without_the_llama3_vocabulary(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=1000, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="vocabulary of 1000 tokens"):
        await complete(TransformersLocal(tmp_path), req())


def test_missing_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"llama-agentic\[local\]"):
        TransformersLocal(tmp_path)
    with pytest.raises(MissingDependencyError, match=r"llama-agentic\[local\]"):
        build_tiny_llama(tmp_path)
    with pytest.raises(MissingDependencyError):
        logit_bias({1: 1.0})


def test_tiny_checkpoint_files_and_seed(tiny: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in tiny.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    again = build_tiny_llama(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    other = build_tiny_llama(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="divide"):
        build_tiny_llama(tmp_path / "bad", hidden_size=10, num_heads=3)
    with pytest.raises(ConfigError, match="outside the Llama 3 vocabulary"):
        scripted_tokens([5, 200_000])


def test_a_closed_loop_cancels_the_generation(tiny: Path) -> None:
    """A worker thread that outlives its event loop stops instead of generating on."""
    recorder = Recorder()
    backend = TransformersLocal(tiny, logits_processors=[recorder])
    loop = asyncio.new_event_loop()
    stream: AsyncIterator[Any] = backend.stream(req(max_tokens=1500))
    before = generate_threads()
    loop.run_until_complete(anext(stream))
    loop.close()  # without closing the stream: its next token finds the loop closed
    wait_gone(generate_threads() - before)
    assert len(recorder.calls) < 1000
    other = asyncio.new_event_loop()
    other.run_until_complete(stream.aclose())  # type: ignore[attr-defined]
    other.close()
