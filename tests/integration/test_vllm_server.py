"""VLLMServer over real HTTP against the loopback vLLM stand-in (agentic.testing)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import gzip
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from helpers import collect
from hypothesis import example, given
from hypothesis import strategies as st

from agentic.errors import (
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    RateLimitedError,
    UnknownModelError,
    UnsupportedFeatureError,
    UserError,
)
from agentic.inference import _vllm_wire as wire
from agentic.inference.base import (
    Completion,
    InferenceRequest,
    TextDelta,
    complete,
)
from agentic.inference.vllm_server import ServedModel, VLLMServer
from agentic.llama.models import resolve_model
from agentic.llama.prompt import render_prompt
from agentic.llama.tokenizer import get_tokenizer
from agentic.testing import RecordedRequest, Reply, VLLMTestServer
from agentic.types import (
    AssistantMessage,
    ImageContent,
    SamplingParams,
    StopReason,
    TextContent,
    ToolCall,
    ToolMessage,
    UserMessage,
    as_messages,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
VISION = "meta-llama/Llama-3.2-11B-Vision-Instruct"
TODAY = dt.date(2024, 7, 23)
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def server() -> Iterator[VLLMTestServer]:
    with VLLMTestServer() as srv:
        yield srv


@pytest.fixture
async def backend(server: VLLMTestServer) -> AsyncIterator[VLLMServer]:
    async with VLLMServer(server.base_url, backoff=0.001, backoff_max=0.01) as b:
        yield b


def ask(text: str = "hi", model: str = MODEL, **kwargs: Any) -> InferenceRequest:
    return InferenceRequest.create(
        model, [{"role": "user", "content": text}], today=TODAY, **kwargs
    )


async def read_into(seen: list[str], stream: AsyncIterator[TextDelta | Completion]) -> None:
    async for item in stream:
        if isinstance(item, TextDelta):
            seen.append(item.text)


def generations(server: VLLMTestServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("completions")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- request bodies ------------------------------------------------------------------------


async def test_stream_sends_rendered_prompt_and_vllm_fields(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("Hello there")
    request = ask("What is 2+2?", cache_key="session-1")
    await collect(backend, request)
    prompt = render_prompt(request.messages, model=MODEL, today=TODAY)
    [sent] = generations(server)
    assert sent.path == "/v1/completions"
    assert sent.body == {
        "model": MODEL,
        "prompt": prompt,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 131072 - len(prompt.encode()),
        "stop_token_ids": [128008, 128009],
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "add_special_tokens": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_sampling_fields_are_sent_only_when_set(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("ok")
    sampling = SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=5,
        max_tokens=64,
        repetition_penalty=1.1,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        seed=7,
        stop=["\nUser:"],
    )
    await backend.complete(ask(sampling=sampling))
    body = generations(server)[0].body or {}
    picked = {k: body[k] for k in body if k not in ("model", "prompt")}
    assert picked == {
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 5,
        "max_tokens": 64,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "seed": 7,
        "stop": ["\nUser:"],
        "stop_token_ids": [128008, 128009],
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "add_special_tokens": False,
        "stream": False,
    }


async def test_raw_prompt_is_sent_verbatim(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.models = (MODEL, "meta-llama/Llama-Guard-3-8B")
    server.push("safe")
    guard = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: ...<|eot_id|>"
    request = InferenceRequest(model="meta-llama/Llama-Guard-3-8B", prompt=guard)
    _, final = await collect(backend, request)
    [sent] = generations(server)
    assert sent.prompt == guard
    assert (sent.body or {})["model"] == "meta-llama/Llama-Guard-3-8B"
    assert final.text == "safe<|eot_id|>"


async def test_structured_output_uses_structured_outputs_json(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    server.push('{"answer": 4}')
    final = await backend.complete(ask("2+2?", response_format=schema))
    body = generations(server)[0].body or {}
    assert body["structured_outputs"] == {"json": schema}
    assert "guided_json" not in body
    assert final.text == '{"answer": 4}<|eot_id|>'


# -- stop reasons and text -----------------------------------------------------------------


async def test_end_of_turn_streams_deltas_then_completion(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push(Reply("The answer is 4.", token_delay=0.01))
    deltas, final = await collect(backend, ask())
    assert len(deltas) > 3
    assert "".join(deltas) == final.text == "The answer is 4.<|eot_id|>"
    assert deltas[-1] == "<|eot_id|>"
    assert final.stop_reason is StopReason.end_of_turn
    assert final.usage.prompt_tokens > 10
    assert final.usage.completion_tokens == len(deltas)
    ttft = final.timings.time_to_first_token
    assert ttft is not None
    assert 0 < ttft < final.timings.total
    assert final.timings.total >= 0.01 * (len(deltas) - 2)


async def test_tool_call_keeps_python_tag_and_ends_with_eom(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    raw = '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>'
    server.push(raw)
    deltas, final = await collect(backend, ask("weather?"))
    assert deltas[0] == "<|python_tag|>"
    assert final.text == raw
    assert final.stop_reason is StopReason.end_of_message


async def test_max_tokens_gives_out_of_tokens_without_stop_token(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("one two three four five six seven eight")
    _, final = await collect(backend, ask(sampling=SamplingParams(max_tokens=3)))
    assert final.stop_reason is StopReason.out_of_tokens
    assert final.text == "one two three"
    assert final.usage.completion_tokens == 3


async def test_user_stop_string_ends_turn_without_appending(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("line one\nUser: sneaky")
    _, final = await collect(backend, ask(sampling=SamplingParams(stop=["\nUser:"])))
    assert final.text == "line one"
    assert final.stop_reason is StopReason.end_of_turn


async def test_complete_is_a_real_non_streaming_request(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push('<|python_tag|>wolfram_alpha.call(query="2+2")<|eom_id|>', "Four.")
    first = await backend.complete(ask())
    second = await complete(backend, ask())  # the protocol helper, through stream()
    bodies = [r.body or {} for r in generations(server)]
    assert [b["stream"] for b in bodies] == [False, True]
    assert "stream_options" not in bodies[0]
    assert first.text == '<|python_tag|>wolfram_alpha.call(query="2+2")<|eom_id|>'
    assert first.stop_reason is StopReason.end_of_message
    assert first.usage.completion_tokens > 0
    assert first.timings.time_to_first_token is not None
    assert second.text == "Four.<|eot_id|>"


# -- images --------------------------------------------------------------------------------


async def test_images_go_to_chat_with_image_url_parts(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.models = (VISION,)
    server.push("A receipt for 12 EUR.")
    image = ImageContent.from_bytes(PNG)
    request = InferenceRequest.create(
        VISION,
        [
            {"role": "system", "content": "Be brief."},
            UserMessage(
                content=[
                    TextContent(text="What is this?"),
                    image,
                    ImageContent.from_url("https://example.com/r.jpg"),
                ]
            ),
        ],
        response_format={"type": "object"},
    )
    _, final = await collect(backend, request)
    [sent] = generations(server)
    assert sent.path == "/v1/chat/completions"
    body = sent.body or {}
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Be brief.\n\n"},
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image.url}},
                {"type": "image_url", "image_url": {"url": "https://example.com/r.jpg"}},
            ],
        }
    ]
    assert image.url.startswith("data:image/png;base64,")
    for key, value in {
        "model": VISION,
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "stop_token_ids": [128008, 128009],
        "stream": True,
        "structured_outputs": {"json": {"type": "object"}},
    }.items():
        assert body[key] == value
    assert "max_completion_tokens" not in body
    assert "max_tokens" not in body
    assert final.text == "A receipt for 12 EUR.<|eot_id|>"
    assert final.stop_reason is StopReason.end_of_turn


async def test_chat_non_streaming_and_max_completion_tokens(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.models = (VISION,)
    server.push("A cat.")
    request = InferenceRequest.create(
        VISION,
        [
            UserMessage(content=[ImageContent.from_bytes(PNG)]),
            {"role": "assistant", "content": "A picture."},
            {"role": "user", "content": "Which animal?", "context": "Zoo notes."},
        ],
        sampling=SamplingParams(max_tokens=20),
    )
    final = await backend.complete(request)
    body = generations(server)[0].body or {}
    assert body["max_completion_tokens"] == 20
    assert body["stream"] is False
    assert body["messages"][1:] == [
        {"role": "assistant", "content": "A picture."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Which animal?"},
                {"type": "text", "text": "\n\nZoo notes."},
            ],
        },
    ]
    assert final.text == "A cat.<|eot_id|>"


async def test_images_rejected_for_text_model_before_any_http(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    request = InferenceRequest.create(
        MODEL, [UserMessage(content=[ImageContent.from_bytes(PNG), TextContent(text="?")])]
    )
    with pytest.raises(UnsupportedFeatureError, match="no vision"):
        await collect(backend, request)
    assert server.requests == []


async def test_images_with_tools_rejected(server: VLLMTestServer, backend: VLLMServer) -> None:
    from agentic.types import ToolDefinition

    request = InferenceRequest.create(
        VISION,
        [UserMessage(content=[ImageContent.from_bytes(PNG)])],
        tools=[ToolDefinition.builtin("brave_search")],
    )
    with pytest.raises(UnsupportedFeatureError, match="tools"):
        await backend.complete(request)
    assert server.requests == []


# -- errors --------------------------------------------------------------------------------


async def test_unknown_model_lists_served_models(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        await collect(backend, ask(model="meta-llama/Llama-3.3-70B-Instruct"))
    assert info.value.available == [MODEL]
    assert MODEL in str(info.value)
    assert generations(server) == []


async def test_model_removed_after_first_use_raises_model_not_found(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("ok")
    await collect(backend, ask())
    server.models = ("meta-llama/Llama-3.2-3B-Instruct",)
    with pytest.raises(ModelNotFoundError) as info:
        await collect(backend, ask())
    assert info.value.available == ["meta-llama/Llama-3.2-3B-Instruct"]


async def test_server_renamed_model_is_followed_once(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("first", "second")
    await collect(backend, ask(model="Llama3.1-8B-Instruct"))
    server.models = ("meta-llama/llama-3.1-8b-instruct",)  # restarted under another name
    _, final = await collect(backend, ask(model="Llama3.1-8B-Instruct"))
    assert final.text == "second<|eot_id|>"
    models = [(r.body or {}).get("model") for r in generations(server)]
    assert models == [MODEL, MODEL, "meta-llama/llama-3.1-8b-instruct"]


async def test_context_length_error_has_counts(server: VLLMTestServer) -> None:
    server.max_model_len = 100
    async with VLLMServer(server.base_url) as backend:
        with pytest.raises(ContextLengthError) as info:
            await collect(backend, ask("word " * 200, sampling=SamplingParams(max_tokens=10)))
    assert info.value.max_model_len == 100
    # vLLM tokenizes the prompt only up to one token past the 90 left for it: a lower bound
    assert info.value.prompt_tokens == 91
    assert "(at least 91 prompt tokens, max_model_len 100)" in str(info.value)


async def test_prompt_over_context_is_counted_and_refused_before_generation(
    server: VLLMTestServer,
) -> None:
    server.max_model_len = 100
    async with VLLMServer(server.base_url) as backend:
        with pytest.raises(ContextLengthError) as info:
            await collect(backend, ask("word " * 200))
    # vLLM's /tokenize refuses to count a prompt longer than the context: still a
    # ContextLengthError, found before any generation
    assert info.value.max_model_len == 100
    assert "longer than its context of 100 tokens" in str(info.value)
    assert [r.path for r in server.requests].count("/tokenize") == 1
    assert generations(server) == []


async def test_counting_a_text_longer_than_the_context_is_a_context_error(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.max_model_len = 100
    assert await backend.count_tokens("word " * 99, model=MODEL) == 100
    with pytest.raises(ContextLengthError, match="longer than its context of 100") as info:
        await backend.count_tokens("word " * 100, model=MODEL)
    assert (info.value.prompt_tokens, info.value.max_model_len) == (None, 100)


async def test_long_prompt_gets_exact_room_from_tokenize(server: VLLMTestServer) -> None:
    server.max_model_len = 400
    server.push("ok")
    async with VLLMServer(server.base_url) as backend:
        request = ask("word " * 70)
        count = await backend.count_tokens(request)
        assert len(render_prompt(request.messages, model=MODEL, today=TODAY).encode()) > 400
        _, final = await collect(backend, request)
    assert (generations(server)[0].body or {})["max_tokens"] == 400 - count
    assert final.text == "ok<|eot_id|>"


async def test_a_known_prompt_count_spares_the_tokenize_call(server: VLLMTestServer) -> None:
    server.max_model_len = 400
    server.push("ok")
    server.push("ok")
    prompt = render_prompt(ask("word " * 70).messages, model=MODEL, today=TODAY)
    assert len(prompt.encode()) > 400  # the byte bound alone would not fit
    async with VLLMServer(server.base_url) as backend:
        count = await backend.count_tokens(InferenceRequest(model=MODEL, prompt=prompt))
        known = InferenceRequest(model=MODEL, prompt=prompt, prompt_tokens=count + 2)
        await collect(backend, known)
        too_high = InferenceRequest(model=MODEL, prompt=prompt, prompt_tokens=500)
        await collect(backend, too_high)  # a bound that does not fit: counted exactly
    tokenize = [r for r in server.requests if r.path == "/tokenize"]
    assert len(tokenize) == 2  # count_tokens, then the bound that did not fit
    first, second = generations(server)
    assert (first.body or {})["max_tokens"] == 400 - count - 2
    assert (second.body or {})["max_tokens"] == 400 - count


async def test_server_error_status_and_body(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.fail_next(500, error="engine crashed")
    with pytest.raises(BackendResponseError) as info:
        await collect(backend, ask())
    assert info.value.status_code == 500
    assert "engine crashed" in str(info.value)
    assert "engine crashed" in info.value.body
    assert len(generations(server)) == 1  # a 500 is not retried


async def test_error_inside_stream(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.push(Reply("partial answer here", drop_after=2, error="CUDA out of memory"))
    seen: list[str] = []
    with pytest.raises(BackendResponseError, match="CUDA out of memory") as info:
        await read_into(seen, backend.stream(ask()))
    assert info.value.status_code == 500
    assert len(seen) == 2
    assert len(generations(server)) == 1


async def test_no_retry_after_first_token(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.push(Reply("this answer will be cut", drop_after=2), "unused")
    seen: list[str] = []
    with pytest.raises(BackendResponseError, match="broke after") as info:
        await read_into(seen, backend.stream(ask()))
    assert "send the request again; an agent turn continues with session.resume()" in str(
        info.value
    )
    assert len(seen) == 2
    assert len(generations(server)) == 1
    assert server.remaining == 1


async def test_drop_before_first_token_is_retried(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push(Reply("lost", drop_after=0), "kept")
    _, final = await collect(backend, ask())
    assert final.text == "kept<|eot_id|>"
    assert len(generations(server)) == 2


async def test_wrong_api_key_and_env_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with VLLMTestServer(["ok"], api_key="s3cret") as server:
        async with VLLMServer(server.base_url, api_key="wrong") as bad:
            with pytest.raises(BackendResponseError, match="VLLM_API_KEY") as info:
                await bad.models()
        assert info.value.status_code == 401
        monkeypatch.setenv("VLLM_API_KEY", "s3cret")
        async with VLLMServer(server.base_url) as good:
            _, final = await collect(good, ask())
        assert final.text == "ok<|eot_id|>"
        assert generations(server)[0].headers["authorization"] == "Bearer s3cret"


async def test_wrong_base_url_path_says_so(server: VLLMTestServer) -> None:
    async with VLLMServer(server.url) as backend:  # forgot the /v1
        with pytest.raises(BackendResponseError, match="ending in /v1") as info:
            await backend.complete(ask())
    assert info.value.status_code == 404


async def test_unreachable_server_says_how_to_start_one() -> None:
    port = free_port()
    async with VLLMServer(f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.001) as b:
        with pytest.raises(BackendUnavailableError) as info:
            await collect(b, ask(model="Llama3.1-8B-Instruct"))
    message = str(info.value)
    assert f"vllm serve {MODEL} --max-model-len 32768 --port {port}" in message
    assert f"agentic model serve {MODEL}" in message


# -- retries -------------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.fail_next(429, 1, error="too many requests", headers={"Retry-After": "1"})
    server.push("finally")
    started = time.monotonic()
    _, final = await collect(backend, ask())
    assert time.monotonic() - started >= 0.95
    assert final.text == "finally<|eot_id|>"
    assert len(generations(server)) == 2


async def test_503_is_retried_with_backoff(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.fail_next(503, 2)
    server.push("up again")
    final = await backend.complete(ask())
    assert final.text == "up again<|eot_id|>"
    assert len(generations(server)) == 3


async def test_rate_limited_after_retries_run_out(server: VLLMTestServer) -> None:
    server.fail_next(429, 10, error="slow down")
    async with VLLMServer(server.base_url, max_retries=2, backoff=0.001) as backend:
        with pytest.raises(RateLimitedError, match="slow down") as info:
            await collect(backend, ask())
    assert info.value.status_code == 429
    assert len(generations(server)) == 3


async def test_400_is_not_retried(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.fail_next(400, 3, error="bad sampling")
    with pytest.raises(BackendResponseError, match="bad sampling") as info:
        await backend.complete(ask())
    assert type(info.value) is BackendResponseError
    assert len(generations(server)) == 1


# -- cancellation and concurrency ----------------------------------------------------------


async def wait_for(predicate: Any) -> None:
    deadline = time.monotonic() + 3.0
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_closing_the_stream_disconnects(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.push(Reply("word " * 200, token_delay=0.01))
    stream = backend.stream(ask())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    await wait_for(lambda: server.cancelled == 1)
    assert server.completed == 0


async def test_cancelling_the_task_disconnects(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.push(Reply("word " * 200, token_delay=0.01))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(ask()):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: server.cancelled == 1)


async def test_fifty_concurrent_streams() -> None:
    def respond(rec: RecordedRequest) -> Reply:
        match = re.search(r"question (\d+)", rec.prompt or "")
        assert match is not None
        return Reply(f"answer {match.group(1)} is here", token_delay=0.02)

    with VLLMTestServer(respond) as server:
        async with VLLMServer(server.base_url) as backend:
            started = time.monotonic()
            results = await asyncio.gather(
                *(collect(backend, ask(f"question {i}")) for i in range(50))
            )
            elapsed = time.monotonic() - started
    assert [final.text for _, final in results] == [
        f"answer {i} is here<|eot_id|>" for i in range(50)
    ]
    assert elapsed < 2.0  # ~0.1 s each: they ran side by side, not one after another
    assert server.completed == 50
    assert [r.path for r in server.requests].count("/v1/models") == 1


# -- models and tokens ---------------------------------------------------------------------


async def test_models_lists_served_models() -> None:
    with VLLMTestServer(models=[MODEL, "meta-llama/Llama-Guard-3-8B"], max_model_len=8192) as s:
        async with VLLMServer(s.base_url) as backend:
            models = await backend.models()
    assert models == [
        ServedModel(MODEL, max_model_len=8192, root=MODEL),
        ServedModel(
            "meta-llama/Llama-Guard-3-8B", max_model_len=8192, root="meta-llama/Llama-Guard-3-8B"
        ),
    ]


async def test_count_tokens_uses_tokenize_at_server_root(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    text = "<|begin_of_text|>Hello, world!"
    count = await backend.count_tokens(text)
    assert count == len(get_tokenizer().encode(text, bos=False)) == 5
    request = ask("How many tokens is this?")
    prompt = render_prompt(request.messages, model=MODEL, today=TODAY)
    assert await backend.count_tokens(request) == len(get_tokenizer().encode(prompt, bos=False))
    tokenize = [r for r in server.requests if r.path == "/tokenize"]
    assert [r.body for r in tokenize] == [
        {"model": MODEL, "prompt": text, "add_special_tokens": False},
        {"model": MODEL, "prompt": prompt, "add_special_tokens": False},
    ]


async def test_count_tokens_of_image_request_sends_messages(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.models = (VISION,)
    request = InferenceRequest.create(VISION, [UserMessage(content="no image, just text")])
    image_request = InferenceRequest.create(
        VISION, [UserMessage(content=[TextContent(text="look"), ImageContent.from_bytes(PNG)])]
    )
    assert await backend.count_tokens(request) > 0
    assert await backend.count_tokens(image_request) > 0
    last = [r for r in server.requests if r.path == "/tokenize"][-1]
    assert (last.messages or [{}])[0]["content"][0]["text"] == "look"


async def test_model_resolution(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.push("a", "b")
    await collect(backend, ask(model="llama3.1-8b-instruct"))  # an alias of the table
    await collect(backend, ask(model=""))  # none given: the one model the server serves
    assert [(r.body or {})["model"] for r in generations(server)] == [MODEL, MODEL]
    assert [r.path for r in server.requests].count("/v1/models") == 1  # cached


async def test_model_must_be_named_when_server_serves_several() -> None:
    with VLLMTestServer(models=[MODEL, VISION]) as server:
        async with VLLMServer(server.base_url) as backend:
            with pytest.raises(ConfigError, match="serves several"):
                await backend.count_tokens("x")


async def test_unknown_served_name_cannot_be_rendered() -> None:
    with VLLMTestServer(["raw ok"], models=["my-finetune"]) as server:
        async with VLLMServer(server.base_url) as backend:
            with pytest.raises(UnknownModelError):
                await backend.complete(ask(model="my-finetune"))
            raw = InferenceRequest(model="my-finetune", prompt="<|begin_of_text|>Hi")
            final = await backend.complete(raw)
    assert final.text == "raw ok<|eot_id|>"


def test_served_name_maps_through_its_root() -> None:
    from agentic.inference.vllm_server import _match

    served = [
        ServedModel("other"),
        ServedModel("llama", max_model_len=4096, root="/models/Llama-3.1-8B-Instruct"),
    ]
    target = _match("Llama3.1-8B-Instruct", served)
    assert (target.name, target.max_model_len) == ("llama", 4096)
    assert target.spec is resolve_model(MODEL)
    assert _match("llama", served).spec is resolve_model(MODEL)
    unlisted = _match(MODEL, [])
    assert (unlisted.name, unlisted.max_model_len) == (MODEL, 131072)


# -- transport-level faults ----------------------------------------------------------------


def models_payload() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "root": MODEL, "max_model_len": 4096}]}


async def test_connect_error_is_retried_then_succeeds() -> None:
    failures = iter([httpx2.ConnectError("refused"), httpx2.ConnectError("refused")])

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json=models_payload())
        if (exc := next(failures, None)) is not None:
            raise exc
        return httpx2.Response(
            200,
            json={
                "choices": [{"text": "hi", "finish_reason": "stop", "stop_reason": None}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
        )

    transport = httpx2.MockTransport(handle)
    async with VLLMServer("http://vllm.test/v1", transport=transport, backoff=0.001) as backend:
        final = await backend.complete(ask())
    assert final.text == "hi<|eot_id|>"
    assert final.usage.prompt_tokens == 3


async def test_read_timeout_is_a_timeout_error() -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json=models_payload())
        raise httpx2.ReadTimeout("no data")

    transport = httpx2.MockTransport(handle)
    async with VLLMServer("http://vllm.test/v1", transport=transport) as backend:
        with pytest.raises(BackendTimeoutError):
            await collect(backend, ask())


async def test_injected_client_is_used_and_left_open(server: VLLMTestServer) -> None:
    server.push("ok")
    async with httpx2.AsyncClient() as client:
        async with VLLMServer(server.base_url, client=client) as backend:
            _, final = await collect(backend, ask())
        assert not client.is_closed
    assert final.text == "ok<|eot_id|>"


# -- more stop tokens, retries and failures over real HTTP ---------------------------------


async def test_end_of_text_stop_is_reported_with_its_token(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    server.push("bye<|end_of_text|>")  # a stop id from Llama's generation config
    _, final = await collect(backend, ask())
    assert final.text == "bye<|end_of_text|>"
    assert final.stop_reason is StopReason.end_of_turn


async def test_retry_after_as_http_date(server: VLLMTestServer, backend: VLLMServer) -> None:
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    server.fail_next(503, headers={"Retry-After": past})
    server.push("ok")
    _, final = await collect(backend, ask())
    assert final.text == "ok<|eot_id|>"
    assert len(generations(server)) == 2


async def test_server_closing_before_answering_is_retried_then_reported(
    server: VLLMTestServer,
) -> None:
    server.push(Reply("x", drop_after=0), Reply("x", drop_after=0))
    async with VLLMServer(server.base_url, max_retries=1, backoff=0.001) as backend:
        with pytest.raises(BackendResponseError, match="without answering"):
            await backend.complete(ask())
    assert len(generations(server)) == 2


async def test_chat_history_with_tool_calls(server: VLLMTestServer, backend: VLLMServer) -> None:
    server.models = (VISION,)
    server.push("It is sunny.")
    call = ToolCall(call_id="c1", tool_name="brave_search", arguments={"query": "weather"})
    request = InferenceRequest.create(
        VISION,
        [
            UserMessage(content=[ImageContent.from_bytes(PNG), TextContent(text="Where?")]),
            AssistantMessage(content="", tool_calls=[call]),
            ToolMessage(call_id="c1", tool_name="brave_search", content="Sunny in Paris"),
        ],
    )
    await backend.complete(request)
    messages = (generations(server)[0].body or {})["messages"]
    assert messages[1:] == [
        {"role": "assistant", "content": 'brave_search.call(query="weather")'},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny in Paris"},
    ]
    code = ToolCall(tool_name="code_interpreter", arguments={"code": "print(1)"})
    history = [AssistantMessage(content="Let me run it.", tool_calls=[code])]
    assert wire.chat_messages(history) == [
        {"role": "assistant", "content": "<|python_tag|>Let me run it.print(1)"}
    ]


async def test_request_without_messages_or_prompt(backend: VLLMServer) -> None:
    with pytest.raises(ConfigError, match="messages or a prompt"):
        await backend.complete(InferenceRequest(model=MODEL))


async def test_tokenize_for_a_model_that_went_away(
    server: VLLMTestServer, backend: VLLMServer
) -> None:
    assert await backend.count_tokens("hello", model=MODEL) == 1
    server.models = ("meta-llama/Llama-3.2-1B-Instruct",)
    with pytest.raises(ModelNotFoundError) as info:
        await backend.count_tokens("hello", model=MODEL)
    assert info.value.available == ["meta-llama/Llama-3.2-1B-Instruct"]


def test_base_url_needs_a_scheme() -> None:
    with pytest.raises(ConfigError, match="http://"):
        VLLMServer("localhost:8000/v1")


# -- replies no vLLM sends, but a broken proxy or server could (and transport faults) ------


def mock_backend(
    generate: Any, *, models: Any = None, tokenize: Any = None, **kwargs: Any
) -> VLLMServer:
    """A backend on a MockTransport: /v1/models and /tokenize answer as given."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx2.Response(200, json=models_payload()) if models is None else models
        if path == "/tokenize":
            assert tokenize is not None
            return tokenize  # type: ignore[no-any-return]
        return generate(request)  # type: ignore[no-any-return]

    return VLLMServer(
        "http://vllm.test/v1", transport=httpx2.MockTransport(handle), backoff=0.001, **kwargs
    )


def sse_response(*events: str) -> httpx2.Response:
    body = "".join(f"data: {e}\n\n" for e in events)
    return httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (sse_response("{not json"), "cannot read"),
        (sse_response('{"choices": "oops"}'), "cannot read"),
        (httpx2.Response(200, json={"choices": []}), "server-sent event"),
        (sse_response('{"choices": [{"text": "Hi", "finish_reason": null}]}', "[DONE]"), "without"),
        (sse_response('{"choices": [{"text": "Hi", "finish_reason": "abort"}]}'), "resume"),
    ],
)
async def test_unreadable_streams(response: httpx2.Response, match: str) -> None:
    async with mock_backend(lambda request: response) as backend:
        with pytest.raises(BackendResponseError, match=match):
            await collect(backend, ask())


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html>proxy page</html>"),
        httpx2.Response(200, json={"choices": []}),
        httpx2.Response(200, json={"choices": [{"message": {}}]}),
    ],
)
async def test_unreadable_answers(response: httpx2.Response) -> None:
    async with mock_backend(lambda request: response) as backend:
        with pytest.raises(BackendResponseError, match="cannot read") as info:
            await backend.complete(ask())
    assert info.value.status_code == 200


async def test_unreadable_model_list_and_token_count() -> None:
    bad = httpx2.Response(200, json={"data": [{"name": "x"}]})
    async with mock_backend(lambda request: None, models=bad) as backend:
        with pytest.raises(BackendResponseError, match="cannot read"):
            await backend.models()
    odd = httpx2.Response(200, json={"tokens": []})
    async with mock_backend(lambda request: None, tokenize=odd) as backend:
        with pytest.raises(BackendResponseError, match="cannot read"):
            await backend.count_tokens("x", model=MODEL)


async def test_context_error_in_characters_is_counted_through_tokenize() -> None:
    message = (
        "You passed 9000 input characters and requested 16 output tokens. However, the "
        "model's context length is only 2048 tokens, resulting in a maximum input length of "
        "2032 tokens (at most 8128 characters). Please reduce the length of the input prompt."
    )
    error = {"error": {"message": message, "type": "BadRequestError", "code": 400}}
    count = httpx2.Response(200, json={"count": 2500, "max_model_len": 2048, "tokens": []})
    async with mock_backend(lambda r: httpx2.Response(400, json=error), tokenize=count) as b:
        with pytest.raises(ContextLengthError) as info:
            await b.complete(ask(sampling=SamplingParams(max_tokens=16)))
    assert (info.value.prompt_tokens, info.value.max_model_len) == (2500, 2048)


async def test_without_model_list_the_request_goes_as_given() -> None:
    sent: list[dict[str, Any]] = []

    def generate(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        choice = {"text": "x", "finish_reason": "length", "stop_reason": None}
        return httpx2.Response(200, json={"choices": [choice]})

    missing = httpx2.Response(404, json={"detail": "Not Found"})
    async with mock_backend(generate, models=missing) as backend:
        final = await backend.complete(InferenceRequest(model="my-model", prompt="Once"))
    assert final.stop_reason is StopReason.out_of_tokens
    assert sent[0]["model"] == "my-model"
    assert "max_tokens" not in sent[0]  # no context length known: vLLM's default applies


async def test_proxy_error_is_unavailable() -> None:
    def generate(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ProxyError("proxy refused")

    async with mock_backend(generate) as backend:
        with pytest.raises(BackendUnavailableError, match="agentic model serve"):
            await backend.complete(ask())


class _StallingStream(httpx2.AsyncByteStream):
    """A body that sends one event, then fails (a read timeout or a reset mid-stream)."""

    def __init__(self, fault: Exception) -> None:
        self.fault = fault

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"text": "Hel", "finish_reason": null}]}\n\n'
        raise self.fault


async def test_read_timeout_mid_stream() -> None:
    def generate(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(
            200, headers=headers, stream=_StallingStream(httpx2.ReadTimeout("t"))
        )

    seen: list[str] = []
    async with mock_backend(generate) as backend:
        with pytest.raises(BackendTimeoutError):
            await read_into(seen, backend.stream(ask()))
    assert seen == ["Hel"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (httpx2.ReadTimeout("no data"), BackendTimeoutError),
        (httpx2.ReadError("reset"), BackendResponseError),
    ],
)
async def test_body_fails_after_headers_without_streaming(
    fault: Exception, error: type[Exception]
) -> None:
    def generate(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=_StallingStream(fault))

    async with mock_backend(generate) as backend:
        with pytest.raises(error):
            await backend.complete(ask())


class _Pieces(httpx2.AsyncByteStream):
    """A body sent in the given pieces, as a network cuts it."""

    def __init__(self, body: bytes, size: int) -> None:
        self.pieces = [body[i : i + size] for i in range(0, len(body), size)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def completion_events(*texts: str, newline: str = "\n") -> str:
    """vLLM's completion chunks for ``texts``, then the finishing and usage chunks."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"text": t, "finish_reason": None}]} for t in texts
    ]
    chunks.append({"choices": [{"text": "", "finish_reason": "stop", "stop_reason": None}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    events = [f"data: {json.dumps(c, ensure_ascii=False)}" for c in chunks] + ["data: [DONE]"]
    return "".join(e + newline * 2 for e in events)


async def test_stream_survives_any_chunking_line_ends_and_extra_fields() -> None:
    # CRLF line ends, a keep-alive comment, event/id fields, one JSON split over two data
    # lines, and 5-byte pieces that cut lines, CRLFs and the two bytes of "é" apart
    events = completion_events("Hé", "llo", newline="\r\n")
    first, rest = events.split("\r\n\r\n", 1)
    split_json = first.replace('"choices": ', '"choices":\r\ndata: ', 1)
    body = f": ping\r\n\r\nevent: message\r\nid: 7\r\n{split_json}\r\n\r\n{rest}"
    headers = {"content-type": "text/event-stream; charset=utf-8"}

    def generate(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=headers, stream=_Pieces(body.encode(), 5))

    async with mock_backend(generate) as backend:
        deltas, final = await collect(backend, ask())
    assert deltas == ["Hé", "llo", "<|eot_id|>"]
    assert final.text == "Héllo<|eot_id|>"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (9, 3)


async def test_compressed_stream_is_decompressed() -> None:
    # a proxy may gzip the event stream: the body is read through httpx2's decoders then
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    body = gzip.compress(completion_events("Hi", " there").encode())

    def generate(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=headers, stream=_Pieces(body, 16))

    async with mock_backend(generate) as backend:
        deltas, final = await collect(backend, ask())
    assert deltas == ["Hi", " there", "<|eot_id|>"]
    assert final.stop_reason is StopReason.end_of_turn


async def test_endless_event_is_refused_not_buffered() -> None:
    body = b"data: " + b"x" * (wire.MAX_EVENT_BYTES + 10)  # never ends its line

    def generate(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, stream=_Pieces(body, 65536))

    async with mock_backend(generate) as backend:
        with pytest.raises(BackendResponseError, match=r"server-sent event.*longer than"):
            await collect(backend, ask())


async def test_cr_line_ends_and_a_last_lone_cr() -> None:
    # the CR ending the body could start a CRLF; the event it ends is read without waiting
    body = (
        'data: {"choices": [{"text": "Hi", "finish_reason": null}]}\r\r'
        'data: {"choices": [{"text": "!", "finish_reason": "length"}]}\r\r'
    )

    def generate(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, stream=_Pieces(body.encode(), 61))

    async with mock_backend(generate) as backend:
        deltas, final = await collect(backend, ask())
    assert deltas == ["Hi", "!"]
    assert (final.text, final.stop_reason) == ("Hi!", StopReason.out_of_tokens)


_SSE_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))
_SSE_LINE = st.one_of(
    _SSE_TEXT.map(lambda v: f"data:{v}"),
    _SSE_TEXT.map(lambda v: f"data: {v}"),
    st.just("data"),
    _SSE_TEXT.map(lambda v: f":{v}"),
    _SSE_TEXT.map(lambda v: f"event: {v}"),
    st.just("id: 3"),
    st.just("retry: 10"),
)
_SSE_EVENT = st.lists(_SSE_LINE, min_size=1, max_size=4).filter(
    lambda lines: any(line.startswith("data") for line in lines)  # httpx2 sends data-less too
)


@given(
    events=st.lists(_SSE_EVENT, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    comment_blocks=st.booleans(),
    cuts=st.one_of(  # where the network cuts the body: anywhere, or into small pieces
        st.lists(st.integers(min_value=0, max_value=400), max_size=8),
        st.integers(min_value=1, max_value=5).map(lambda k: list(range(k, 400, k))),
    ),
    tail=st.sampled_from(["", "data: unfinished", "data: unfinished\n"]),
    empties=st.booleans(),
)
@example(  # a CRLF cut between its CR and LF, with an empty read in between
    events=[["data: a", "data: b"]],
    newline="\r\n",
    comment_blocks=False,
    cuts=[8],
    tail="",
    empties=True,
)
def test_event_data_matches_httpx2_event_source(
    events: list[list[str]],
    newline: str,
    comment_blocks: bool,
    cuts: list[int],
    tail: str,
    empties: bool,
) -> None:
    blocks = [newline.join(lines) + newline * 2 for lines in events]
    if comment_blocks:
        blocks = [f": keep-alive{newline}{newline}{b}" for b in blocks]
    body = ("".join(blocks) + tail).encode()
    oracle = httpx2.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=httpx2.Request("GET", "http://vllm.test/"),
    )
    expected = [event.data for event in httpx2.EventSource(oracle)]
    parser = wire.EventData()
    got: list[bytes] = []
    for start, end in zip([0, *sorted(cuts)], [*sorted(cuts), len(body)], strict=True):
        got += parser.feed(body[start:end])
        if empties:  # an empty read between two pieces changes nothing
            got += parser.feed(b"")
    assert [data.decode() for data in got] == expected


def test_event_json_reads_what_json_loads_reads() -> None:
    assert wire.event_json(b'{"a": [1, "\xc3\xa9"]}') == {"a": [1, "é"]}
    assert wire.event_json(b' {"a": 1} \n') == {"a": 1}  # whitespace around: json.loads' call
    assert wire.event_json(b'"a\xffb"') == "a\ufffdb"  # bad UTF-8 reads as U+FFFD, as before
    for bad in (b'{"a": 1} x', b"{", b""):
        with pytest.raises(json.JSONDecodeError):
            wire.event_json(bad)


# -- wire details --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish", "stop", "eos", "expected"),
    [
        ("stop", None, "<|eot_id|>", (StopReason.end_of_turn, "<|eot_id|>")),
        ("stop", None, "<|end_of_text|>", (StopReason.end_of_turn, "<|end_of_text|>")),
        ("stop", 128008, "<|eot_id|>", (StopReason.end_of_message, "<|eom_id|>")),
        ("stop", 128009, "<|eot_id|>", (StopReason.end_of_turn, "<|eot_id|>")),
        ("stop", 5, "<|eot_id|>", (StopReason.end_of_turn, "")),
        ("stop", "<|eom_id|>", "<|eot_id|>", (StopReason.end_of_message, "<|eom_id|>")),
        ("stop", "<|eot_id|>", "<|eot_id|>", (StopReason.end_of_turn, "<|eot_id|>")),
        ("stop", "\nUser:", "<|eot_id|>", (StopReason.end_of_turn, "")),
        ("length", None, "<|eot_id|>", (StopReason.out_of_tokens, "")),
        ("abort", None, "<|eot_id|>", None),
        (None, None, "<|eot_id|>", None),
    ],
)
def test_stop_of(
    finish: str | None, stop: int | str | None, eos: str, expected: tuple[StopReason, str] | None
) -> None:
    assert wire.stop_of(finish, stop, eos) == expected


def test_eos_text_and_stop_text() -> None:
    assert wire.eos_text(resolve_model("meta-llama/Llama-3.1-8B")) == "<|end_of_text|>"
    assert wire.eos_text(resolve_model(MODEL)) == wire.eos_text(None) == "<|eot_id|>"
    assert wire.stop_text_of("done<|eot_id|>", "<|eot_id|>") == ""
    assert wire.stop_text_of("done", "<|eot_id|>") == "<|eot_id|>"


@pytest.mark.parametrize(
    ("message", "numbers"),
    [
        (
            "This model's maximum context length is 4096 tokens. However, your request has "
            "5000 input tokens. Please reduce the length of the input messages.",
            (5000, 4096),
        ),
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 "
            "tokens (4000 in the messages, 1000 in the completion).",
            (4000, 4096),
        ),
        ("Input length (9000) exceeds model's maximum context length (8192).", (9000, 8192)),
        (
            "max_tokens=9000cannot be greater than max_model_len=max_total_tokens=8192. "
            "Please request fewer output tokens.",
            (None, 8192),
        ),
        ("something else", (None, None)),
    ],
)
def test_context_numbers(message: str, numbers: tuple[int | None, int | None]) -> None:
    assert wire.context_numbers(message) == numbers


def test_error_message_shapes() -> None:
    assert wire.error_message('{"error": {"message": "m", "code": 400}}')[0] == "m"
    assert wire.error_message('{"error": "Unauthorized"}') == ("Unauthorized", {})
    assert wire.error_message('{"object": "error", "message": "old"}')[0] == "old"
    assert wire.error_message('{"detail": "Not Found"}')[0] == "Not Found"
    assert wire.error_message("[1, 2]") == ("[1, 2]", {})
    assert wire.error_message("Bad gateway\n") == ("Bad gateway", {})
    assert wire.error_message("") == ("(empty body)", {})


def test_retry_after_values() -> None:
    assert wire.retry_after("2") == 2.0
    assert wire.retry_after("-3") == 0.0
    assert wire.retry_after(None) is None
    assert wire.retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 90 < (wire.retry_after(future) or 0) <= 100


def test_chat_messages_keep_system_text_without_a_user_turn() -> None:
    messages = as_messages(
        [
            {"role": "system", "content": "Describe images."},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "image", "data": PNG}]},
        ]
    )
    out = wire.chat_messages(messages)
    assert out[0] == {"role": "user", "content": "Describe images."}
    assert out[1]["content"][0]["type"] == "image_url"
    folded = wire.chat_messages(
        as_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    )
    assert folded == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Be brief.\n\n"}, {"type": "text", "text": "Hi"}],
        }
    ]


def test_serve_hint_on_the_default_port() -> None:
    hint = wire.serve_hint("Llama3.2-3B-Instruct", resolve_model("Llama3.2-3B-Instruct"), 8000)
    assert "vllm serve meta-llama/Llama-3.2-3B-Instruct --max-model-len 32768\n" in hint
    assert wire.serve_hint("", None, None).startswith("Start one with:\n  vllm serve <model>")


def test_one_backend_serves_one_event_loop_after_another() -> None:
    with VLLMTestServer(lambda request: "ok<|eot_id|>") as server:
        backend = VLLMServer(server.base_url, max_retries=0)
        request = InferenceRequest(model=server.models[0], prompt="hi")

        async def answer() -> str:
            return (await backend.complete(request)).text

        # two asyncio.run() in a row: a script's phases, a test per loop
        assert asyncio.run(answer()) == "ok<|eot_id|>"
        assert asyncio.run(answer()) == "ok<|eot_id|>"

        async def close() -> None:
            await backend.aclose()

        asyncio.run(close())


def test_an_injected_client_of_another_loop_is_a_clear_error() -> None:
    with VLLMTestServer(lambda request: "ok<|eot_id|>") as server:
        client = httpx2.AsyncClient()
        backend = VLLMServer(server.base_url, client=client, max_retries=0)
        request = InferenceRequest(model=server.models[0], prompt="hi")
        asyncio.run(backend.complete(request))
        with pytest.raises(UserError, match="belongs to another event loop"):
            asyncio.run(backend.complete(request))
