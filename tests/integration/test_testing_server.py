"""VLLMTestServer over real loopback HTTP: vLLM's wire format, stop semantics, errors, load."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from agentic.errors import ConfigError, UserError
from agentic.llama.tokenizer import get_tokenizer
from agentic.testing import RecordedRequest, Reply, VLLMTestServer

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TAG_CALL = '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>'
EOM_ID, EOT_ID, PYTHON_TAG_ID = 128008, 128009, 128010


@pytest.fixture
def server() -> Iterator[VLLMTestServer]:
    with VLLMTestServer() as srv:
        yield srv


@pytest.fixture
async def client(server: VLLMTestServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as c:
        yield c


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "<|begin_of_text|>Hi", "max_tokens": 100, **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}


async def stream_raw(client: httpx2.AsyncClient, path: str, body: dict[str, Any]) -> str:
    async with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return (await response.aread()).decode()


def parse_sse(raw: str) -> list[Any]:
    """Events of an SSE body; asserts vLLM's framing (``data: ...`` + blank line, [DONE] last)."""
    assert raw.endswith("data: [DONE]\n\n")
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    events: list[Any] = []
    for block in blocks[:-1]:
        assert block.startswith("data: ")
        assert "\n" not in block
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def stream_events(
    client: httpx2.AsyncClient, path: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    events = parse_sse(await stream_raw(client, path, body))
    assert events[-1] == "[DONE]"
    return events[:-1]


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- /v1/completions -----------------------------------------------------------------------


async def test_completion_whole_reports_text_usage_and_stop(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("Hello there!<|eot_id|>")
    response = await client.post("/v1/completions", json=completion())
    assert response.status_code == 200
    data = response.json()
    tok = get_tokenizer()
    assert data["object"] == "text_completion"
    assert data["id"].startswith("cmpl-")
    assert data["model"] == MODEL
    choice = data["choices"][0]
    assert (choice["text"], choice["finish_reason"], choice["stop_reason"]) == (
        "Hello there!",
        "stop",
        None,
    )
    # add_special_tokens defaults to true: vLLM prepends a second BOS.
    prompt_tokens = tok.count("<|begin_of_text|>Hi") + 1
    completion_tokens = tok.count("Hello there!<|eot_id|>")
    assert data["usage"] == {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }
    assert server.completed == 1


async def test_completion_stream_framing_matches_vllm(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("Hello there, friend.<|eot_id|>")
    body = completion(stream_options={"include_usage": True}, add_special_tokens=False)
    events = await stream_events(client, "/v1/completions", body)
    *chunks, usage = events
    tok = get_tokenizer()
    pieces = [tok.decode([t]) for t in tok.encode("Hello there, friend.")]
    assert [c["choices"][0]["text"] for c in chunks] == [*pieces, ""]
    assert all(c["object"] == "text_completion" for c in events)
    assert len({c["id"] for c in events}) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * len(pieces) + ["stop"]
    assert set(chunks[0]["choices"][0]) == {
        "index",
        "text",
        "logprobs",
        "finish_reason",
        "stop_reason",
        "prompt_token_ids",
        "token_ids",
    }
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": tok.count("<|begin_of_text|>Hi"),
        "total_tokens": tok.count("<|begin_of_text|>Hi") + len(pieces) + 1,
        "completion_tokens": len(pieces) + 1,
    }


async def test_stream_without_include_usage_has_no_usage_chunk(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("Hi")
    events = await stream_events(client, "/v1/completions", completion())
    assert all(e["choices"] for e in events)
    assert "usage" not in events[-1]


@pytest.mark.parametrize(
    ("script", "extra", "text", "stop_reason"),
    [
        ("Done.<|eot_id|>", {}, "Done.", None),
        ("Done.<|eot_id|>", {"stop_token_ids": [EOT_ID]}, "Done.", None),  # EOS wins
        ("Done.", {}, "Done.", None),  # no stop token: the model ends on <|eot_id|>
        (TAG_CALL, {}, '<|python_tag|>brave_search.call(query="weather in Paris")', EOM_ID),
        ("Done.<|end_of_text|>", {}, "Done.", 128001),
        ("a<|python_tag|>b<|eot_id|>", {"stop_token_ids": [PYTHON_TAG_ID]}, "a", PYTHON_TAG_ID),
        ("Done.<|eot_id|>never<|eot_id|>", {}, "Done.", None),
    ],
)
async def test_stop_token_reports_stop_reason_and_is_not_in_text(
    server: VLLMTestServer,
    client: httpx2.AsyncClient,
    script: str,
    extra: dict[str, Any],
    text: str,
    stop_reason: int | None,
) -> None:
    server.push(script, script)
    body = completion(skip_special_tokens=False, **extra)
    whole = (await client.post("/v1/completions", json=body)).json()["choices"][0]
    assert (whole["text"], whole["finish_reason"], whole["stop_reason"]) == (
        text,
        "stop",
        stop_reason,
    )
    events = await stream_events(client, "/v1/completions", body)
    assert "".join(e["choices"][0]["text"] for e in events) == text
    assert events[-1]["choices"][0]["stop_reason"] == stop_reason


async def test_include_stop_str_in_output_keeps_the_stop_token_text(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(TAG_CALL, TAG_CALL)
    body = completion(include_stop_str_in_output=True, skip_special_tokens=False)
    text = (await client.post("/v1/completions", json=body)).json()["choices"][0]["text"]
    assert text == TAG_CALL
    body["skip_special_tokens"] = True
    text = (await client.post("/v1/completions", json=body)).json()["choices"][0]["text"]
    assert text == 'brave_search.call(query="weather in Paris")'


async def test_skip_special_tokens_defaults_to_true_and_drops_python_tag(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(TAG_CALL, TAG_CALL)
    lossy = (await client.post("/v1/completions", json=completion())).json()["choices"][0]
    assert lossy["text"] == 'brave_search.call(query="weather in Paris")'
    events = await stream_events(client, "/v1/completions", completion())
    assert events[0]["choices"][0]["text"] == ""  # the skipped <|python_tag|> still streams
    assert lossy["stop_reason"] == EOM_ID


async def test_max_tokens_truncates_with_length(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    long_text = " ".join(f"word{i}" for i in range(40))
    server.push("one two three four", long_text)
    data = (await client.post("/v1/completions", json=completion(max_tokens=2))).json()
    assert data["choices"][0]["text"] == "one two"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["stop_reason"] is None
    assert data["usage"]["completion_tokens"] == 2
    # max_tokens omitted (or null) on /v1/completions means 16, as in vLLM.
    data = (await client.post("/v1/completions", json=completion(max_tokens=None))).json()
    assert data["usage"]["completion_tokens"] == 16
    assert data["choices"][0]["finish_reason"] == "length"


async def test_stop_token_as_last_allowed_token_is_a_stop(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("Hi<|eom_id|>")
    data = (await client.post("/v1/completions", json=completion(max_tokens=2))).json()
    assert (data["choices"][0]["finish_reason"], data["choices"][0]["stop_reason"]) == (
        "stop",
        EOM_ID,
    )


async def test_stop_strings_truncate_and_hold_back_partial_matches(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    script = "The answer is 42. END of story"
    server.push(script, script, script)
    body = completion(stop=["END", "never"])
    whole = (await client.post("/v1/completions", json=body)).json()["choices"][0]
    assert (whole["text"], whole["finish_reason"], whole["stop_reason"]) == (
        "The answer is 42. ",
        "stop",
        "END",
    )
    events = await stream_events(client, "/v1/completions", body)
    texts = [e["choices"][0]["text"] for e in events]
    assert "".join(texts) == "The answer is 42. "
    assert events[-1]["choices"][0]["stop_reason"] == "END"
    kept = await client.post("/v1/completions", json={**body, "include_stop_str_in_output": True})
    assert kept.json()["choices"][0]["text"] == "The answer is 42. END"


async def test_explicit_chunks_are_the_stream_deltas(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply(chunks=["Hel", "lo wor", "ld<|eom_id|>"]))
    events = await stream_events(client, "/v1/completions", completion())
    assert [e["choices"][0]["text"] for e in events] == ["Hel", "lo wor", "ld", ""]
    assert events[-1]["choices"][0]["stop_reason"] == EOM_ID


async def test_multibyte_characters_stream_whole(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("日本語のテキスト 🎉")
    events = await stream_events(client, "/v1/completions", completion())
    texts = [e["choices"][0]["text"] for e in events]
    assert "".join(texts) == "日本語のテキスト 🎉"
    assert all("\ufffd" not in t for t in texts)


async def test_reply_prompt_tokens_override_usage(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply("ok", prompt_tokens=1234))
    data = (await client.post("/v1/completions", json=completion())).json()
    assert data["usage"]["prompt_tokens"] == 1234


# -- /v1/chat/completions ------------------------------------------------------------------


async def test_chat_whole_and_stream(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    server.push("Bonjour !<|eot_id|>", "Bonjour !<|eot_id|>")
    data = (await client.post("/v1/chat/completions", json=chat())).json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    message = data["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"] == "Bonjour !"
    assert "tool_calls" not in message
    assert data["choices"][0]["finish_reason"] == "stop"
    events = await stream_events(
        client, "/v1/chat/completions", chat(stream_options={"include_usage": True})
    )
    *chunks, usage = events
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in events)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Bonjour !"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] == {k: v for k, v in data["usage"].items() if v is not None}


async def test_chat_max_completion_tokens(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("one two three")
    body = chat(max_completion_tokens=1, max_tokens=50)
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"] == "one"
    assert data["choices"][0]["finish_reason"] == "length"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
JSON_CALL = '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'


async def test_chat_tool_calls_whole(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    server.push(JSON_CALL, JSON_CALL)
    data = (await client.post("/v1/chat/completions", json=chat(tools=[WEATHER_TOOL]))).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("chatcmpl-tool-")
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    # tool_choice "none" turns parsing off: the JSON comes back as content.
    body = chat(tools=[WEATHER_TOOL], tool_choice="none")
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"].startswith('{"name": "get_weather"')
    assert data["choices"][0]["finish_reason"] == "stop"


async def test_chat_tool_calls_stream(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    server.push(JSON_CALL)
    events = await stream_events(client, "/v1/chat/completions", chat(tools=[WEATHER_TOOL]))
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[0] == {"role": "assistant", "content": ""}
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["function"] == {"name": "get_weather"}
    assert calls[0]["type"] == "function"
    assert calls[0]["id"].startswith("chatcmpl-tool-")
    arguments = "".join(c["function"].get("arguments", "") for c in calls)
    assert json.loads(arguments) == {"city": "Paris"}
    assert all(c["index"] == 0 for c in calls)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(d.get("content") for d in deltas)


# -- errors --------------------------------------------------------------------------------


async def test_unknown_model_is_404_with_vllm_message(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    response = await client.post("/v1/completions", json=completion(model="nope"))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `nope` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    assert server.remaining == 0
    assert not server.errors


async def test_missing_model_uses_the_served_model(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("ok")
    body = completion()
    del body["model"]
    response = await client.post("/v1/completions", json=body)
    assert response.json()["model"] == MODEL


async def test_context_too_long_is_400_with_vllm_message() -> None:
    with VLLMTestServer(["unused"], max_model_len=20) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            prompt = "word " * 30
            assert get_tokenizer().count(prompt) == 31
            body = completion(prompt=prompt, max_tokens=5, add_special_tokens=False)
            response = await client.post("/v1/completions", json=body)
            assert response.status_code == 400
            # vLLM tokenizes only up to one token past the room left, and says that many
            assert response.json()["error"] == {
                "message": "You passed 16 input tokens and requested 5 output tokens. "
                "However, the model's context length is only 20 tokens, resulting in a "
                "maximum input length of 15 tokens. Please reduce the length of the input "
                "prompt.",
                "type": "BadRequestError",
                "param": "input_tokens",
                "code": 400,
            }
            response = await client.post("/v1/completions", json=completion(max_tokens=21))
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "max_tokens"
            assert server.remaining == 1
            # /tokenize counts nothing longer than the context either
            exact = {"prompt": "word " * 19, "add_special_tokens": False}
            assert (await client.post("/tokenize", json=exact)).json()["count"] == 20
            refused = await client.post("/tokenize", json={"prompt": prompt})
            assert refused.status_code == 400
            assert refused.json()["error"]["message"].startswith(
                "You passed 21 input tokens and requested 0 output tokens. However, the "
                "model's context length is only 20 tokens"
            )


async def test_generation_is_capped_by_the_context_left() -> None:
    with VLLMTestServer([" ".join(["w"] * 50)], max_model_len=14) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            body = chat(messages=[{"role": "user", "content": "x"}])
            prompt_tokens = get_tokenizer().count(
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n"
            )
            data = (await client.post("/v1/chat/completions", json=body)).json()
            assert data["usage"]["prompt_tokens"] == prompt_tokens
            assert data["usage"]["completion_tokens"] == 14 - prompt_tokens
            assert data["choices"][0]["finish_reason"] == "length"


async def test_api_key_guards_v1_only() -> None:
    with VLLMTestServer(["ok"], api_key="sekret") as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            response = await client.post("/v1/completions", json=completion())
            assert (response.status_code, response.json()) == (401, {"error": "Unauthorized"})
            wrong = {"Authorization": "Bearer nope"}
            response = await client.get("/v1/models", headers=wrong)
            assert response.status_code == 401
            assert (await client.get("/health")).status_code == 200
            good = {"Authorization": "bearer sekret"}
            response = await client.post("/v1/completions", json=completion(), headers=good)
            assert response.status_code == 200
            assert server.requests[-1].headers["authorization"] == "bearer sekret"


async def test_malformed_requests_are_400(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/v1/completions", content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "Bad Request"
    assert server.requests[-1].body is None
    response = await client.post("/v1/completions", content=b"[1, 2]", headers=headers)
    assert response.status_code == 400
    response = await client.post("/v1/completions", content=b"{}", headers={"content-type": "x"})
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]["message"]
    bad_bodies = [
        completion(stream_options={"include_usage": True}),  # without stream
        completion(prompt=""),
        completion(prompt=["a", "b"]),
        completion(n=2),
        completion(stop=[""]),
        completion(stop_token_ids=["x"]),
        completion(max_tokens="many"),
        chat(messages="hi"),
        chat(tools=[]),
        chat(tool_choice="auto"),
        chat(tools=[WEATHER_TOOL], tool_choice="sometimes"),
        completion(structured_outputs={"json": {}, "regex": "a+"}),
        chat(response_format={"type": "json_schema"}),
    ]
    for body in bad_bodies:
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        response = await client.post(path, json=body)
        assert response.status_code == 400, body
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert server.remaining == 0
    assert not server.errors


async def test_structured_output_requests_get_the_scripted_text(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push('{"city": "Paris"}', '{"city": "Paris"}')
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = completion(structured_outputs={"json": schema})
    data = (await client.post("/v1/completions", json=body)).json()
    assert json.loads(data["choices"][0]["text"]) == {"city": "Paris"}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    data = (
        await client.post("/v1/chat/completions", json=chat(response_format=response_format))
    ).json()
    assert json.loads(data["choices"][0]["message"]["content"]) == {"city": "Paris"}
    assert server.requests[0].body is not None
    assert server.requests[0].body["structured_outputs"] == {"json": schema}


async def test_stream_options_message(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/completions", json=completion(stream_options={}))
    assert (
        "Stream options can only be defined when `stream=True`."
        in (response.json()["error"]["message"])
    )


async def test_exhausted_script_is_a_visible_500(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "InternalServerError"
    assert error["code"] == 500
    assert "script is exhausted" in error["message"]
    assert server.errors == [error["message"]]


async def test_fail_next_then_the_script(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("finally")
    server.fail_next(503, 2, error="overloaded", headers={"Retry-After": "1"})
    for _ in range(2):
        response = await client.post("/v1/completions", json=completion())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["message"] == "overloaded"
        assert response.json()["error"]["code"] == 503
    response = await client.post("/v1/completions", json=completion())
    assert response.json()["choices"][0]["text"] == "finally"


async def test_scripted_error_reply(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    server.push(Reply(status=429, headers={"Retry-After": "2"}), Reply(status=400, error="bad"))
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["type"] == "Too Many Requests"
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.json()["error"] == {
        "message": "bad",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }


async def test_unknown_path_and_method(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/v2/nothing")).status_code == 404
    response = await client.get("/v1/completions")
    assert (response.status_code, response.json()) == (405, {"detail": "Method Not Allowed"})


# -- failures mid-stream, cancellation, timing ---------------------------------------------


async def test_drop_after_closes_mid_stream(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply("one two three four five", drop_after=2, token_delay=0.001))
    received: list[str] = []

    async def read() -> None:
        async with client.stream("POST", "/v1/completions", json=completion(stream=True)) as r:
            async for line in r.aiter_lines():
                if line:
                    received.append(line)

    with pytest.raises(httpx2.RemoteProtocolError):
        await read()
    assert len(received) == 2
    assert server.completed == 0


async def test_drop_after_without_streaming_sends_nothing(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply("hello", drop_after=0))
    with pytest.raises(httpx2.RemoteProtocolError):
        await client.post("/v1/completions", json=completion())


async def test_in_stream_error_after_drop_after(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply("one two three", drop_after=1, error="engine died"))
    events = await stream_events(client, "/v1/completions", completion())
    assert events[0]["choices"][0]["text"] == "one"
    assert events[1] == {
        "error": {
            "message": "engine died",
            "type": "InternalServerError",
            "param": None,
            "code": 500,
        }
    }
    server.push(Reply("one", error="engine died"))
    response = await client.post("/v1/completions", json=completion())
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "engine died"


async def test_client_disconnect_mid_stream_is_counted(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply(" ".join(["tok"] * 200), token_delay=0.01))
    async with client.stream("POST", "/v1/completions", json=completion(stream=True)) as r:
        async for _ in r.aiter_lines():
            break
    await wait_for(lambda: server.cancelled == 1)
    assert server.completed == 0


async def test_client_giving_up_while_waiting_is_counted(server: VLLMTestServer) -> None:
    server.push(Reply("late", delay=5))
    async with httpx2.AsyncClient(base_url=server.url, timeout=0.1) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post("/v1/completions", json=completion())
    await wait_for(lambda: server.cancelled == 1)


async def test_latency_and_token_delay() -> None:
    with VLLMTestServer(latency=0.3, token_delay=0.05) as server:
        server.push("a b c d", Reply("x", delay=0.0, token_delay=0.0))
        async with httpx2.AsyncClient(base_url=server.url) as client:
            start = time.monotonic()
            arrivals: list[float] = []
            body = completion(stream=True)
            async with client.stream("POST", "/v1/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        arrivals.append(time.monotonic() - start)
            assert arrivals[0] >= 0.3
            assert arrivals[-1] - arrivals[0] >= 0.05 * (len(arrivals) - 1) * 0.9
            start = time.monotonic()
            await client.post("/v1/completions", json=completion())
            assert time.monotonic() - start < 0.25  # the reply's delay=0 overrides latency


async def test_whole_answer_waits_for_the_whole_generation() -> None:
    with VLLMTestServer(["a b c d e"], latency=0.05, token_delay=0.04) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            start = time.monotonic()
            await client.post("/v1/completions", json=completion())
            assert time.monotonic() - start >= 0.05 + 5 * 0.04


# -- responders ----------------------------------------------------------------------------


async def test_sync_responder_sees_the_request() -> None:
    def respond(request: RecordedRequest) -> str:
        return f"you said {request.prompt or request.messages}"

    with VLLMTestServer(respond) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            body = completion(prompt="ping", add_special_tokens=False)
            data = (await client.post("/v1/completions", json=body)).json()
            assert data["choices"][0]["text"] == "you said ping"
            data = (await client.post("/v1/chat/completions", json=chat())).json()
            assert "'content': 'Hi'" in data["choices"][0]["message"]["content"]


async def test_async_responder_and_its_failures() -> None:
    async def respond(request: RecordedRequest) -> Reply:
        await asyncio.sleep(0.01)
        if request.prompt == "boom":
            raise RuntimeError("responder bug")
        return Reply("pong<|eom_id|>")

    with VLLMTestServer(respond) as server:
        async with httpx2.AsyncClient(base_url=server.url) as client:
            data = (await client.post("/v1/completions", json=completion())).json()
            assert data["choices"][0]["stop_reason"] == EOM_ID
            response = await client.post("/v1/completions", json=completion(prompt="boom"))
            assert response.status_code == 500
            assert "responder bug" in response.json()["error"]["message"]
            assert len(server.errors) == 1


def test_responder_returning_garbage_is_a_500() -> None:
    with VLLMTestServer(lambda request: 42) as server:  # type: ignore[arg-type, return-value]
        response = httpx2.post(f"{server.base_url}/completions", json=completion())
        assert response.status_code == 500
        assert "str or a Reply" in response.json()["error"]["message"]


# -- other endpoints -----------------------------------------------------------------------


async def test_models_endpoint(client: httpx2.AsyncClient) -> None:
    data = (await client.get("/v1/models")).json()
    assert data["object"] == "list"
    (card,) = data["data"]
    assert card["id"] == MODEL
    assert card["max_model_len"] == 131072
    assert card["object"] == "model"
    assert card["owned_by"] == "vllm"


async def test_tokenize_and_detokenize_match_the_tokenizer(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    tok = get_tokenizer()
    text = "<|begin_of_text|>Hello, wörld! <|python_tag|>"
    data = (await client.post("/tokenize", json={"prompt": text})).json()
    assert data["tokens"] == [tok.bos_id, *tok.encode(text)]  # add_special_tokens defaults on
    assert data["count"] == len(data["tokens"])
    assert data["max_model_len"] == 131072
    assert data["token_strs"] is None
    body = {"model": MODEL, "prompt": text, "add_special_tokens": False, "return_token_strs": True}
    data = (await client.post("/tokenize", json=body)).json()
    assert data["tokens"] == tok.encode(text)
    assert "".join(data["token_strs"]) == text
    detok = await client.post("/detokenize", json={"tokens": data["tokens"]})
    assert detok.json() == {"prompt": text}
    messages = [{"role": "user", "content": "Hi"}]
    data = (await client.post("/tokenize", json={"messages": messages})).json()
    assert data["tokens"][0] == tok.bos_id
    assert data["count"] > 5
    bad = await client.post("/detokenize", json={"tokens": [-1]})
    assert bad.status_code == 400
    assert (await client.post("/tokenize", json={"prompt": 3})).status_code == 400
    assert (await client.post("/tokenize", json={"model": "x", "prompt": "a"})).status_code == 404


async def test_requests_are_recorded_in_order(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("a", "b")
    await client.get("/health")
    await client.post("/v1/completions", json=completion(prompt="first"))
    await client.post("/v1/chat/completions", json=chat())
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/health"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert server.requests[0].body is None
    assert server.requests[0].prompt is None
    assert server.requests[1].prompt == "first"
    assert server.requests[1].messages is None
    assert server.requests[2].messages == [{"role": "user", "content": "Hi"}]


# -- load, lifecycle, raw HTTP -------------------------------------------------------------


async def test_two_hundred_concurrent_streams_complete() -> None:
    text = " ".join(f"w{i}" for i in range(8))
    with VLLMTestServer(lambda request: text, token_delay=0.01) as server:
        limits = httpx2.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx2.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:

            async def one() -> str:
                events = await stream_events(client, "/v1/completions", completion())
                return "".join(e["choices"][0]["text"] for e in events)

            results = await asyncio.gather(*(one() for _ in range(200)))
    assert results == [text] * 200
    assert (server.completed, server.cancelled) == (200, 0)


def test_sync_use_and_lifecycle() -> None:
    server = VLLMTestServer(["hello"])
    with pytest.raises(UserError):
        _ = server.base_url
    with server:
        with pytest.raises(UserError):
            server.start()
        with httpx2.Client(base_url=server.base_url) as client:
            data = client.post("/completions", json=completion()).json()
        assert data["choices"][0]["text"] == "hello"
    server.stop()  # idempotent
    with pytest.raises(UserError):
        _ = server.url


def test_invalid_configuration() -> None:
    with pytest.raises(ConfigError):
        Reply("x", status=99)
    with pytest.raises(ConfigError):
        Reply("x", drop_after=-1)
    with pytest.raises(ConfigError):
        Reply("x", chunks="abc")
    with pytest.raises(ConfigError):
        VLLMTestServer(models=())
    with pytest.raises(ConfigError):
        VLLMTestServer([1])  # type: ignore[list-item]


def raw_exchange(server: VLLMTestServer, data: bytes, expect_close: bool = True) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                assert not expect_close
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def http_request(path: str, body: bytes = b"", *extra: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: x", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order(server: VLLMTestServer) -> None:
    server.push("first", "second")
    body = json.dumps(completion()).encode()
    last = http_request("/v1/completions", body, "Connection: close")
    raw = raw_exchange(server, http_request("/v1/completions", body) + last)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert raw.index(b'"text":"first"') < raw.index(b'"text":"second"')


def test_expect_100_continue(server: VLLMTestServer) -> None:
    server.push("ok")
    body = json.dumps(completion()).encode()
    head = http_request("/v1/completions", b"", "Expect: 100-continue", "Connection: close")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b'"text":"ok"' in answer


def test_http_1_0_stream_is_close_delimited(server: VLLMTestServer) -> None:
    server.push("ok")
    body = json.dumps(completion(stream=True)).encode()
    raw = raw_exchange(server, http_request("/v1/completions", body, version="1.0"))
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert parse_sse(payload.decode())[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /v1/completions HTTP/1.1\r\nExpect: magic\r\n\r\n", 417),
        (b"POST /v1/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST /v1/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /v1/completions HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", 413),
        (b"POST /v1/completions HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000, 431),
    ],
)
def test_unsupported_http_is_rejected(server: VLLMTestServer, data: bytes, status: int) -> None:
    raw = raw_exchange(server, data)
    assert raw.startswith(f"HTTP/1.1 {status} ".encode())


# -- less common request shapes ------------------------------------------------------------


async def test_request_variants(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    tok = get_tokenizer()
    server.push("a b END", "ok", "ok", "plain answer")
    body = completion(stop="END", include_stop_str_in_output=True)
    data = (await client.post("/v1/completions", json=body)).json()
    assert data["choices"][0]["text"] == "a b END"  # a stop string at the very end stays
    body = completion(prompt=["Hello"], add_special_tokens=False)
    data = (await client.post("/v1/completions", json=body)).json()
    assert data["usage"]["prompt_tokens"] == tok.count("Hello")
    data = (await client.post("/v1/completions", json=completion(prompt=[1, 2, 3]))).json()
    assert data["usage"]["prompt_tokens"] == 3
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]
    body = chat(messages=messages, tools=[WEATHER_TOOL])
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"] == "plain answer"  # no call in the text
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] > tok.count("Be brief.Weather?sunny")


async def test_ignore_eos_runs_past_the_end_of_turn(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push("a<|eot_id|>b", Reply(chunks=["x", "<|notatoken|>"]))
    body = completion(ignore_eos=True, skip_special_tokens=False)
    choice = (await client.post("/v1/completions", json=body)).json()["choices"][0]
    assert choice["text"] == "a<|eot_id|>b<|eot_id|>"
    assert choice["finish_reason"] == "length"
    events = await stream_events(client, "/v1/completions", completion())
    assert [e["choices"][0]["text"] for e in events] == ["x", "<|notatoken|>", ""]


async def test_unusual_error_status(server: VLLMTestServer, client: httpx2.AsyncClient) -> None:
    server.push(Reply(status=599))
    response = await client.post("/v1/completions", json=completion())
    assert response.status_code == 599
    assert response.json()["error"]["type"] == "Error"


async def test_stream_error_before_any_token(
    server: VLLMTestServer, client: httpx2.AsyncClient
) -> None:
    server.push(Reply("never seen", error="engine died"))
    events = await stream_events(client, "/v1/chat/completions", chat())
    assert events == [
        {
            "error": {
                "message": "engine died",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
        }
    ]


async def test_async_context_manager() -> None:
    async with (
        VLLMTestServer(["hi"]) as server,
        httpx2.AsyncClient(base_url=server.base_url) as client,
    ):
        data = (await client.post("/completions", json=completion())).json()
    assert data["choices"][0]["text"] == "hi"
    with pytest.raises(UserError):
        _ = server.base_url


def test_port_in_use_fails_cleanly(server: VLLMTestServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    other = VLLMTestServer(port=port)
    with pytest.raises(OSError, match="in use"):
        other.start()
    with pytest.raises(UserError):
        _ = other.url
    other.stop()


async def test_stopping_the_server_ends_open_streams_without_counting_them() -> None:
    server = VLLMTestServer([Reply("a b c", delay=10)]).start()
    async with httpx2.AsyncClient(base_url=server.url) as client:

        async def read() -> None:
            async with client.stream("POST", "/v1/completions", json=completion(stream=True)) as r:
                await r.aread()

        task = asyncio.create_task(read())
        await wait_for(lambda: len(server.requests) == 1)
        await asyncio.to_thread(server.stop)
        with pytest.raises(httpx2.RemoteProtocolError):
            await task
    assert (server.cancelled, server.completed) == (0, 0)


# -- HTTP layer: flow control and handler failures -----------------------------------------


def test_slow_reader_gets_everything(server: VLLMTestServer) -> None:
    big = "x" * 60_000
    server.push(Reply(chunks=[big] * 300))  # 18 MB: more than the socket buffers hold
    body = json.dumps(completion(stream=True, max_tokens=1000)).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(http_request("/v1/completions", body, "Connection: close"))
        time.sleep(0.3)  # the server's buffers fill: it must pause writing, then resume
        raw = b""
        while chunk := sock.recv(1 << 20):
            raw += chunk
    assert raw.count(big.encode()) == 300
    assert raw.endswith(b"0\r\n\r\n")
    assert server.completed == 1


async def test_slow_reader_that_leaves_is_cancelled(server: VLLMTestServer) -> None:
    server.push(Reply(chunks=["y" * 60_000] * 300))
    body = json.dumps(completion(stream=True, max_tokens=1000)).encode()
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(http_request("/v1/completions", body))
    await asyncio.sleep(0.3)
    sock.close()
    await wait_for(lambda: server.cancelled == 1)


async def test_handler_bugs_become_500_or_a_closed_connection() -> None:
    from agentic.testing._http import HttpRequest, HttpServer, ResponseWriter

    async def handler(request: HttpRequest, out: ResponseWriter) -> None:
        if request.path == "/late":
            await out.start(200, "text/plain")
            await out.write(b"partial")
        raise RuntimeError("handler bug")

    server = HttpServer(handler)
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with httpx2.AsyncClient(base_url=f"http://{host}:{port}") as client:
            response = await client.get("/early")
            assert response.status_code == 500
            assert "handler bug" in response.text
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.get("/late")
    finally:
        await server.close()


def test_public_names() -> None:
    import agentic.testing

    assert agentic.testing.__all__ == sorted(agentic.testing.__all__)
    for name in agentic.testing.__all__:
        assert getattr(agentic.testing, name) is not None
