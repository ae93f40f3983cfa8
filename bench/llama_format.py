"""Cost of the Llama format layer and of the vLLM client, each against a baseline in the same run.

1. Render: a typical prompt (3 turns, 4 tools) and turn 50 of a long session, rendered in full
   (what peers do every call) and incrementally through ``PromptCache`` (what a session does).
2. Parse: ``parse_completion`` and the streaming parser on typical model outputs.
3. Client latency: ``VLLMServer.stream`` against a bare httpx2 streaming request with the same
   body, sequentially, over the loopback test server (in another process) at zero model latency.
4. CPU per request with 200 concurrent streams (50 ms model latency), client process only; this
   includes httpx2's connection pool, whose scans grow with the number of connections.
5. The same 200 streams over an in-memory transport (no sockets, no pool): the client's own CPU.

Prints a table and writes ``bench/results/llama_format.json``. ``--quick`` runs fewer rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing as mp
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from _table import Row, print_rows

from agentic.inference.base import Completion, InferenceRequest, TextDelta
from agentic.inference.vllm_server import VLLMServer
from agentic.llama.prompt import PromptCache, render_prompt
from agentic.llama.tool_calls import StreamingToolCallParser, parse_completion
from agentic.types import (
    AssistantMessage,
    Message,
    SamplingParams,
    StopReason,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolMessage,
    UserMessage,
)

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ANSWER = "The weather in Paris is 25 C and sunny, a fine day for a walk by the Seine.<|eot_id|>"


def _tools() -> list[ToolDefinition]:
    def tool(name: str, desc: str, **params: str) -> ToolDefinition:
        props = {k: {"type": "string", "description": v} for k, v in params.items()}
        schema = {"type": "object", "properties": props, "required": list(params)[:1]}
        return ToolDefinition.from_json_schema(name, schema, desc)

    return [
        tool("get_weather", "Current weather for a city", city="City name", unit="c or f"),
        tool("search_flights", "Find flights", origin="From", dest="To", date="Day"),
        tool("book_hotel", "Book a hotel room", city="City", nights="How many nights"),
        tool("convert_currency", "Convert money", amount="Amount", to="Target currency"),
    ]


def _turn(i: int) -> list[Message]:
    call = ToolCall(call_id=f"c{i}", tool_name="get_weather", arguments={"city": f"City {i}"})
    return [
        UserMessage(content=f"Question {i}: what is the weather in city number {i} today?"),
        AssistantMessage(tool_calls=[call], stop_reason=StopReason.end_of_message),
        ToolMessage(call_id=f"c{i}", tool_name="get_weather", content=f'{{"temp_c": {i % 30}}}'),
        AssistantMessage(content=f"It is {i % 30} C in city {i}.", stop_reason=None),
    ]


def _conversation(turns: int) -> list[Message]:
    msgs: list[Message] = [SystemMessage(content="You are a helpful travel assistant.")]
    for i in range(turns):
        msgs += _turn(i)
    return msgs


def _per_call(fn: Callable[[], object], *, rounds: int) -> float:
    """Median seconds per call over ``rounds`` timed batches."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_render(rounds: int) -> list[Row]:
    tools = _tools()
    rows: list[Row] = []
    for label, turns in (("3 turns, 4 tools", 3), ("turn 50, 4 tools", 50)):
        history = _conversation(turns - 1)
        last = [*history, *_turn(turns - 1)[:1]]

        def full(msgs: list[Message] = last) -> str:
            return render_prompt(msgs, model=MODEL, tools=tools)

        cache = PromptCache()
        cache.render("s", history, model=MODEL, tools=tools)
        grow = [*history]

        def incremental(cache: PromptCache = cache, grow: list[Message] = grow) -> str:
            # one new user message onto the cached prefix, as a session's next step does
            grow.append(UserMessage(content="and tomorrow?"))
            return cache.render("s", grow, model=MODEL, tools=tools)

        t_full = _per_call(full, rounds=rounds)
        t_inc = _per_call(incremental, rounds=rounds)
        rows.append((f"render {label}: full (baseline)", t_full * 1e6, 1.0, "us/call"))
        rows.append((f"render {label}: PromptCache", t_inc * 1e6, t_inc / t_full, "us/call"))
    return rows


def bench_growth() -> list[Row]:
    """Per-call render cost at turn 10 and turn 50: full grows, incremental stays flat."""
    tools = _tools()
    rows: list[Row] = []
    cost: dict[tuple[str, int], float] = {}
    for turns in (10, 50):
        msgs = _conversation(turns)
        full = functools.partial(render_prompt, msgs, model=MODEL, tools=tools)
        cost[("full", turns)] = _per_call(full, rounds=30)
        cache = PromptCache()
        cache.render("s", msgs, model=MODEL, tools=tools)
        grow = list(msgs)

        def step(c: PromptCache = cache, g: list[Message] = grow) -> str:
            g.extend(_turn(len(g)))
            return c.render("s", g, model=MODEL, tools=tools)

        cost[("cache", turns)] = _per_call(step, rounds=30)
    for kind in ("full", "cache"):
        per_turn = (cost[(kind, 50)] - cost[(kind, 10)]) / 40 * 1e6
        rows.append((f"render growth per earlier turn: {kind}", per_turn, 0.0, "us/turn"))
    return rows


OUTPUTS = {
    "plain answer": ANSWER,
    "json call": '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>',
    "2 pythonic calls": '[get_weather(city="Paris"), book_hotel(city="Paris", nights=2)]<|eot_id|>',
    "builtin call": '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>',
}


def bench_parse(rounds: int) -> list[Row]:
    rows: list[Row] = []
    for label, text in OUTPUTS.items():
        t_parse = _per_call(functools.partial(parse_completion, text, model=MODEL), rounds=rounds)
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]

        def streamed(p: list[str] = pieces) -> AssistantMessage:
            parser = StreamingToolCallParser()
            for piece in p:
                parser.feed(piece)
            return parser.finish(StopReason.end_of_turn)

        t_stream = _per_call(streamed, rounds=rounds)
        rows.append((f"parse {label}", t_parse * 1e6, 0.0, "us/call"))
        rows.append((f"stream-parse {label} ({len(pieces)} deltas)", t_stream * 1e6, 0.0, "us"))
    return rows


# -- the loopback server in its own process, so client CPU is measured alone -----------------


def _serve(conn: Any, latency: float) -> None:
    from agentic.testing import VLLMTestServer

    server = VLLMTestServer(lambda _req: ANSWER, models=[MODEL], latency=latency).start()
    conn.send(server.base_url)
    conn.recv()  # wait for the parent to say stop
    server.stop()


@contextmanager
def _server_process(latency: float) -> Iterator[str]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)
    proc.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        proc.join(10)


def _request(i: int) -> InferenceRequest:
    return InferenceRequest(
        model=MODEL,
        messages=[UserMessage(content=f"What is the weather in Paris? ({i})")],
        sampling=SamplingParams(temperature=0, max_tokens=64),
    )


async def _via_client(backend: VLLMServer, request: InferenceRequest) -> str:
    text = ""
    async for item in backend.stream(request):
        if isinstance(item, TextDelta):
            text += item.text
        elif isinstance(item, Completion):
            return item.text
    return text


async def _via_bare(client: httpx2.AsyncClient, url: str, body: dict[str, Any]) -> str:
    text = ""
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["text"]
    return text


def _bare_body(i: int) -> dict[str, Any]:
    """The body ``VLLMServer`` sends for ``_request(i)``: the same HTTP call, made bare."""
    prompt = render_prompt(_request(i).messages, model=MODEL)
    return {
        "model": MODEL,
        "temperature": 0.0,
        "top_p": 0.9,
        "stop_token_ids": [128008, 128009],
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "add_special_tokens": False,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": prompt,
        "max_tokens": 64,
    }


async def _latency(base_url: str, n: int) -> tuple[float, float]:
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client, VLLMServer(base_url) as be:
        url = f"{base_url}/completions"
        for i in range(20):  # warm both paths (connections, model discovery)
            await _via_bare(client, url, _bare_body(i))
            await _via_client(be, _request(i))
        bare, ours = [], []
        for i in range(n):
            # both inputs are built outside the timer; the bare one is even pre-rendered
            body, request = _bare_body(i), _request(i)
            t0 = time.perf_counter()
            await _via_bare(client, url, body)
            t1 = time.perf_counter()
            await _via_client(be, request)
            t2 = time.perf_counter()
            bare.append(t1 - t0)
            ours.append(t2 - t1)
    return statistics.median(bare), statistics.median(ours)


async def _concurrent(base_url: str, sessions: int, rounds: int, ours: bool) -> tuple[float, float]:
    """CPU seconds per request and requests/s for ``sessions`` concurrent streams."""
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as client, VLLMServer(base_url) as be:
        url = f"{base_url}/completions"
        bodies = [_bare_body(i) for i in range(sessions)]
        requests = [_request(i) for i in range(sessions)]

        async def one(i: int) -> str:
            return await (
                _via_client(be, requests[i]) if ours else _via_bare(client, url, bodies[i])
            )

        await asyncio.gather(*(one(i) for i in range(sessions)))  # warm-up: open the pool
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            results = await asyncio.gather(*(one(i) for i in range(sessions)))
            assert all(r.startswith("The weather") for r in results), results[:1]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    total = sessions * rounds
    return cpu / total, total / wall


# -- the same streams over an in-memory transport: no sockets, no connection pool -----------


def _vllm_events() -> list[bytes]:
    """The SSE events vLLM streams for ``ANSWER``: one per token, finish, usage, ``[DONE]``."""
    head = {"id": "cmpl-0", "object": "text_completion", "created": 0, "model": MODEL}
    choice = {"index": 0, "logprobs": None, "finish_reason": None, "stop_reason": None}
    tokens = re.findall(r"\s*\S+", ANSWER.removesuffix("<|eot_id|>"))
    chunks: list[dict[str, Any]] = [{**head, "choices": [{**choice, "text": t}]} for t in tokens]
    chunks.append({**head, "choices": [{**choice, "text": "", "finish_reason": "stop"}]})
    done = len(tokens) + 1  # and the stop token, left out of the text
    usage = {"prompt_tokens": 44, "total_tokens": 44 + done, "completion_tokens": done}
    chunks.append({**head, "choices": [], "usage": usage})
    events = [f"data: {json.dumps(c, separators=(',', ':'))}\n\n".encode() for c in chunks]
    return [*events, b"data: [DONE]\n\n"]


class _EventBody(httpx2.AsyncByteStream):
    """A streamed body that lets other streams run between its events, as a socket would."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self.events:
            await asyncio.sleep(0)
            yield event


def _memory_transport() -> httpx2.MockTransport:
    events = _vllm_events()
    models = {"object": "list", "data": [{"id": MODEL, "max_model_len": 131072}]}
    headers = {"content-type": "text/event-stream; charset=utf-8"}

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/models"):
            return httpx2.Response(200, json=models)
        return httpx2.Response(200, headers=headers, stream=_EventBody(events))

    return httpx2.MockTransport(handle)


async def _in_memory(sessions: int, rounds: int, ours: bool) -> float:
    """CPU seconds per request for ``sessions`` concurrent streams over the memory transport."""
    transport, url = _memory_transport(), "http://vllm.memory/v1"
    async with (
        httpx2.AsyncClient(transport=transport) as client,
        VLLMServer(url, transport=transport) as be,
    ):
        bodies = [_bare_body(i) for i in range(sessions)]
        requests = [_request(i) for i in range(sessions)]

        async def one(i: int) -> str:
            if ours:
                return await _via_client(be, requests[i])
            return await _via_bare(client, f"{url}/completions", bodies[i])

        await asyncio.gather(*(one(i) for i in range(sessions)))  # warm-up
        cpu0 = time.process_time()
        for _ in range(rounds):
            results = await asyncio.gather(*(one(i) for i in range(sessions)))
            assert all(r.startswith("The weather") for r in results), results[:1]
        return (time.process_time() - cpu0) / (sessions * rounds)


def bench_client(quick: bool) -> list[Row]:
    rows: list[Row] = []
    with _server_process(latency=0.0) as base_url:
        bare, ours = asyncio.run(_latency(base_url, 100 if quick else 400))
    rows.append(("request latency: bare httpx2 (baseline)", bare * 1e3, 1.0, "ms"))
    rows.append(("request latency: VLLMServer", ours * 1e3, ours / bare, "ms"))
    rows.append(("  added by the client", (ours - bare) * 1e3, 0.0, "ms"))
    rounds = 2 if quick else 5
    with _server_process(latency=0.05) as base_url:
        cpu_bare, rps_bare = asyncio.run(_concurrent(base_url, 200, rounds, ours=False))
        cpu_ours, rps_ours = asyncio.run(_concurrent(base_url, 200, rounds, ours=True))
    rows.append(("200 streams: CPU/request bare httpx2", cpu_bare * 1e3, 1.0, "ms CPU"))
    rows.append(
        ("200 streams: CPU/request VLLMServer", cpu_ours * 1e3, cpu_ours / cpu_bare, "ms CPU")
    )
    rows.append(("200 streams: requests/s bare httpx2", rps_bare, 1.0, "req/s"))
    rows.append(("200 streams: requests/s VLLMServer", rps_ours, rps_ours / rps_bare, "req/s"))
    samples: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3 if quick else 5):  # alternated, then the medians: noise is shared evenly
        for ours in (False, True):
            samples[ours].append(asyncio.run(_in_memory(200, 5 if quick else 10, ours)))
    mem_bare, mem_ours = statistics.median(samples[False]), statistics.median(samples[True])
    rows.append(("200 streams in memory: CPU/request bare", mem_bare * 1e3, 1.0, "ms CPU"))
    rows.append(
        (
            "200 streams in memory: CPU/request VLLMServer",
            mem_ours * 1e3,
            mem_ours / mem_bare,
            "ms CPU",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds = 50 if args.quick else 300
    rows = bench_render(rounds) + bench_growth() + bench_parse(rounds) + bench_client(args.quick)
    print_rows(rows)
    out = Path(__file__).parent / "results" / "llama_format.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps([dict(zip(("name", "value", "ratio", "unit"), r, strict=True)) for r in rows])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
