"""A loopback HTTP server that speaks vLLM's OpenAI-compatible protocol with scripted replies.

Tests and benchmarks point a real client at :class:`VLLMTestServer` and script what "the model"
says, as raw text with its special tokens, e.g. ``'<|python_tag|>x.call(query="y")<|eom_id|>'``.
The server answers as vLLM would: it splits the text into Llama 3 tokens, applies the request's
stop settings (``stop``, ``stop_token_ids``, ``skip_special_tokens``,
``include_stop_str_in_output``, ``max_tokens``) and reports ``finish_reason``, ``stop_reason``
and usage the way vLLM does. It records every request. It runs its own event loop on a daemon
thread, so sync tests, async tests and benchmarks can all use it.

Followed, in vLLM's source (github.com/vllm-project/vllm): ``vllm/entrypoints/openai/completion/``,
``chat_completion/``, ``engine/`` (protocol and serving), ``vllm/entrypoints/serve/tokenize/``,
``vllm/entrypoints/serve/utils/server_utils.py`` (API-key middleware), ``vllm/renderers/params.py``,
``vllm/v1/engine/detokenizer.py``, ``vllm/v1/core/sched/utils.py``, ``vllm/sampling_params.py``,
``vllm/tool_parsers/llama_tool_parser.py`` and ``pythonic_tool_parser.py``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from agentic.errors import ConfigError, UserError
from agentic.llama.tokenizer import get_tokenizer
from agentic.testing import _protocol as proto
from agentic.testing._generation import Generation, generate, pieces_from_chunks, pieces_from_text
from agentic.testing._http import HttpRequest, HttpServer, ResponseWriter

__all__ = ["RecordedRequest", "Reply", "Responder", "VLLMTestServer"]

_GUARDED = ("/v1", "/v2", "/inference")
_SSE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """One scripted model answer, and how to deliver it.

    ``text`` is the raw model output, special tokens included. If it does not end on a stop token
    (``<|eot_id|>``, ``<|eom_id|>``, ``<|end_of_text|>``) the model is taken to stop on
    ``<|eot_id|>`` right after it.
    """

    text: str = ""
    chunks: Sequence[str] | None = None
    """Explicit stream deltas, one token each (default: the Llama 3 tokens of ``text``)."""
    delay: float | None = None
    """Seconds before the first token (default: the server's ``latency``)."""
    token_delay: float | None = None
    """Seconds between tokens (default: the server's ``token_delay``)."""
    status: int = 200
    """Answer with vLLM's error body and this HTTP status instead (when not 200)."""
    error: str | None = None
    """The error message; with status 200, an error sent inside the stream after ``drop_after``."""
    drop_after: int | None = None
    """Close the connection after this many stream events (or, with ``error``, send the error)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. ``{"Retry-After": "1"}``."""
    prompt_tokens: int | None = None
    """Report this many prompt tokens instead of counting them."""

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ConfigError(f"Reply.status must be an HTTP status, not {self.status}")
        if self.drop_after is not None and self.drop_after < 0:
            raise ConfigError("Reply.drop_after must be >= 0")
        if self.chunks is not None and isinstance(self.chunks, str):
            raise ConfigError("Reply.chunks must be a sequence of strings, not one string")


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received: method, path, headers (lower-cased names), JSON body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any] | None

    @property
    def prompt(self) -> str | None:
        """The ``prompt`` of a completions request."""
        value = (self.body or {}).get("prompt")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]] | None:
        """The ``messages`` of a chat request."""
        value = (self.body or {}).get("messages")
        return value if isinstance(value, list) else None


Responder: TypeAlias = Callable[[RecordedRequest], "str | Reply | Awaitable[str | Reply]"]
"""Computes the reply to a generation request (may be async; runs on the server's loop)."""


def _as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(value)
    raise ConfigError(f"a scripted reply must be a str or a Reply, not {type(value).__name__}")


def _tool_calls(gen: Generation) -> list[dict[str, Any]] | None:
    """OpenAI-style tool calls in the generated text, as vLLM's auto tool choice reports them."""
    from agentic.llama.tool_calls import parse_completion

    calls = parse_completion(gen.raw_text).tool_calls
    if not calls:
        return None
    return [
        {
            "id": f"chatcmpl-tool-{call.call_id}",
            "type": "function",
            "function": {
                "name": call.tool_name,
                "arguments": json.dumps(call.arguments, ensure_ascii=False),
            },
        }
        for call in calls
    ]


class VLLMTestServer:
    """A scripted stand-in for ``vllm serve`` on 127.0.0.1 (see the module docstring).

    ``script`` is a list of replies handed out in order to generation requests (completions and
    chat), or a responder function called for each. Use as a context manager (sync or async) or
    call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        script: Iterable[str | Reply] | Responder = (),
        *,
        models: Sequence[str] = ("meta-llama/Llama-3.1-8B-Instruct",),
        max_model_len: int = 131072,
        latency: float = 0.0,
        token_delay: float = 0.0,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not models:
            raise ConfigError("VLLMTestServer needs at least one model name")
        self.models = tuple(models)
        self.max_model_len = max_model_len
        self.latency = latency
        self.token_delay = token_delay
        self.api_key = api_key
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        """Every request received, in arrival order."""
        self.errors: list[str] = []
        """Problems on the server side (script exhausted, responder raised), in order."""
        self.cancelled = 0
        """Generation requests whose client went away before the answer was complete."""
        self.completed = 0
        """Generation requests answered in full with status 200."""
        self._lock = threading.Lock()
        self._script: collections.deque[Reply] = collections.deque()
        self._failures: collections.deque[Reply] = collections.deque()
        self._responder: Responder | None = None
        if callable(script):
            self._responder = script
        else:
            self.push(*script)
        self._created = int(time.time())
        self._http = HttpServer(self._handle)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._url: str | None = None
        self._routes: dict[tuple[str, str], Callable[[RecordedRequest, ResponseWriter], Any]] = {
            ("GET", "/health"): self._health,
            ("GET", "/v1/models"): self._models,
            ("POST", "/tokenize"): self._tokenize,
            ("POST", "/detokenize"): self._detokenize,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/chat/completions"): self._chat,
        }

    # -- scripting ---------------------------------------------------------------------------

    def push(self, *replies: str | Reply) -> None:
        """Append replies to the script (first in, first out)."""
        items = [_as_reply(r) for r in replies]
        with self._lock:
            self._script.extend(items)

    def fail_next(
        self,
        status: int,
        n: int = 1,
        *,
        error: str = "injected failure",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``n`` generation requests fail with ``status`` (before the script)."""
        failure = Reply(status=status, error=error, headers=dict(headers or {}))
        with self._lock:
            self._failures.extend([failure] * n)

    @property
    def remaining(self) -> int:
        """Scripted replies not handed out yet."""
        with self._lock:
            return len(self._script)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` (the server must be started)."""
        if self._url is None:
            raise UserError("VLLMTestServer is not started; use it as a context manager")
        return self._url

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://host:port/v1``."""
        return f"{self.url}/v1"

    def start(self) -> VLLMTestServer:
        """Bind the socket and serve on a daemon thread; returns ``self``."""
        if self._thread is not None:
            raise UserError("VLLMTestServer is already started")
        get_tokenizer()  # load it here, not inside the first request
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="VLLMTestServer", daemon=True)
        thread.start()
        self._loop, self._thread, self._stopping = loop, thread, False
        future = asyncio.run_coroutine_threadsafe(self._http.start(self.host, self.port), loop)
        try:
            host, port = future.result(timeout=10)
        except BaseException:
            self.stop()
            raise
        self._url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._stopping = True
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._http.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._url = None

    def __enter__(self) -> VLLMTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> VLLMTestServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- request handling (on the server's loop) ---------------------------------------------

    async def _handle(self, request: HttpRequest, out: ResponseWriter) -> None:
        body, problem = _decode_body(request)
        recorded = RecordedRequest(request.method, request.path, dict(request.headers), body)
        with self._lock:
            self.requests.append(recorded)
        guarded = self.api_key is not None and request.path.startswith(_GUARDED)
        if guarded and not self._authorized(request.headers.get("authorization", "")):
            await _json(out, 401, {"error": "Unauthorized"})
            return
        route = self._routes.get((request.method, request.path))
        if route is None:
            known = any(path == request.path for _, path in self._routes)
            status, detail = (405, "Method Not Allowed") if known else (404, "Not Found")
            await _json(out, status, {"detail": detail})
            return
        try:
            if problem is not None and request.method == "POST":
                raise problem
            await route(recorded, out)
        except proto.ApiError as exc:
            await _json(out, exc.status, exc.body())

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and token == self.api_key

    def _check_model(self, model: str | None) -> str:
        if model is None:
            return self.models[0]
        if model not in self.models:
            raise proto.ApiError(
                404, f"The model `{model}` does not exist.", "NotFoundError", "model"
            )
        return model

    async def _health(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        await out.send(200, b"", "text/plain")

    async def _models(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        await _json(out, 200, proto.model_list(self.models, self.max_model_len, self._created))

    async def _tokenize(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        body = rec.body or {}
        self._check_model(body.get("model"))
        tok = get_tokenizer()
        if isinstance(body.get("messages"), list):
            text = proto.chat_prompt(body["messages"], body.get("tools"))
            bos = bool(body.get("add_special_tokens", False))
        elif isinstance(body.get("prompt"), str):
            text, bos = body["prompt"], bool(body.get("add_special_tokens", True))
        else:
            raise proto.ApiError(
                400, "`prompt` (a string) or `messages` is required", param="prompt"
            )
        tokens = tok.encode(text, bos=bos)
        proto.check_input_length(len(tokens), 0, self.max_model_len)  # vLLM counts no more
        strs = [tok.decode([t]) for t in tokens] if body.get("return_token_strs") else None
        payload = {"count": len(tokens), "max_model_len": self.max_model_len}
        await _json(out, 200, {**payload, "tokens": tokens, "token_strs": strs})

    async def _detokenize(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        body = rec.body or {}
        self._check_model(body.get("model"))
        tokens = body.get("tokens")
        tok = get_tokenizer()
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and 0 <= t < tok.vocab_size for t in tokens
        ):
            raise proto.ApiError(400, "`tokens` must be a list of token ids", param="tokens")
        await _json(out, 200, {"prompt": tok.decode(tokens)})

    async def _completions(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        await self._generate(rec, out, chat=False)

    async def _chat(self, rec: RecordedRequest, out: ResponseWriter) -> None:
        await self._generate(rec, out, chat=True)

    async def _next_reply(self, rec: RecordedRequest) -> Reply:
        with self._lock:
            if self._failures:
                return self._failures.popleft()
            if self._responder is None:
                if self._script:
                    return self._script.popleft()
                message = (
                    f"VLLMTestServer: the script is exhausted; no reply left for {rec.method} "
                    f"{rec.path} (request #{len(self.requests)}). Add replies with push()."
                )
                self.errors.append(message)
                raise proto.ApiError(500, message)
        try:
            result = self._responder(rec)
            return _as_reply(await result if inspect.isawaitable(result) else result)
        except Exception as exc:  # boundary: a responder bug becomes a visible 500
            message = f"VLLMTestServer: the responder raised {exc!r}"
            with self._lock:
                self.errors.append(message)
            raise proto.ApiError(500, message) from exc

    async def _generate(self, rec: RecordedRequest, out: ResponseWriter, chat: bool) -> None:
        greq = proto.parse_gen_request(rec.body or {}, chat)
        model = self._check_model(greq.model)
        cfg = greq.checked(self.max_model_len)
        reply = await self._next_reply(rec)
        delay = self.latency if reply.delay is None else reply.delay
        headers = list(reply.headers.items())
        if reply.status != 200:
            await _sleep(delay)
            error = reply.error or proto.error_type(reply.status)
            body = proto.error_body(error, proto.error_type(reply.status), reply.status)
            await _json(out, reply.status, body, headers)
            return
        if reply.chunks is None:
            gen = generate(pieces_from_text(reply.text), cfg)
        else:
            gen = generate(pieces_from_chunks(reply.chunks), cfg)
        counted: list[bool] = []

        def complete() -> None:  # before the last bytes: a client that has them sees the count
            with self._lock:
                self.completed += 1
            counted.append(True)

        answer = _Answer(greq, model, gen, reply, delay, self.token_delay, complete)
        try:
            await (answer.stream(out) if greq.stream else answer.respond(out))
        except (asyncio.CancelledError, ConnectionError):
            if not self._stopping:
                with self._lock:
                    self.cancelled += 1
                    self.completed -= len(counted)  # the last bytes never went out
            raise


@dataclass
class _Answer:
    """Delivers one successful generation, streamed or whole, with the scripted timing."""

    req: proto.GenRequest
    model: str
    gen: Generation
    reply: Reply
    delay: float
    default_token_delay: float
    complete: Callable[[], None]
    """Counts the generation as delivered; called right before its last bytes are written."""

    @property
    def token_delay(self) -> float:
        return (
            self.default_token_delay if self.reply.token_delay is None else self.reply.token_delay
        )

    @property
    def prompt_tokens(self) -> int:
        return (
            self.reply.prompt_tokens
            if self.reply.prompt_tokens is not None
            else self.req.prompt_tokens
        )

    def _tool_calls(self) -> tuple[list[dict[str, Any]] | None, str]:
        """Tool calls (chat with tools only) and the finish_reason vLLM reports with them."""
        calls = _tool_calls(self.gen) if self.req.tools else None
        if (
            calls
            and not self.req.named_tool
            and (not self.req.stream or self.gen.finish_reason == "stop")
        ):
            return calls, "tool_calls"
        return calls, self.gen.finish_reason

    async def respond(self, out: ResponseWriter) -> bool:
        """A whole JSON answer after the generation time; False if dropped."""
        await _sleep(self.delay + self.token_delay * max(len(self.gen.deltas) - 1, 0))
        if self.reply.drop_after is not None and self.reply.error is None:
            out.abort()
            return False
        headers = list(self.reply.headers.items())
        if self.reply.error is not None:
            body = proto.error_body(self.reply.error, "InternalServerError", 500)
            await _json(out, 500, body, headers)
            return False
        rid = proto.new_id(self.req.chat)
        if self.req.chat:
            calls, finish = self._tool_calls()
            payload = proto.chat_response(
                rid, self.model, self.gen, self.prompt_tokens, calls, finish
            )
        else:
            payload = proto.completion_response(rid, self.model, self.gen, self.prompt_tokens)
        self.complete()
        await _json(out, 200, payload, headers)
        return True

    def _steps(self) -> list[list[bytes]]:
        rid = proto.new_id(self.req.chat)
        args = (rid, self.model, self.gen, self.prompt_tokens, self.req.include_usage)
        if self.req.chat:
            calls, finish = self._tool_calls()
            return proto.chat_stream(*args, calls, finish)
        return proto.completion_stream(*args)

    async def stream(self, out: ResponseWriter) -> bool:
        """Server-sent events, one step per token; False if the stream was cut or errored."""
        steps = self._steps()
        await out.start(200, _SSE, list(self.reply.headers.items()))
        await _sleep(self.delay)
        limit = self.reply.drop_after if self.reply.drop_after is not None else -1
        if self.reply.error is not None and limit < 0:
            limit = 0
        if self.token_delay <= 0:  # nothing to pace: one write
            steps = [[event for step in steps for event in step]]
        sent = 0
        for index, step in enumerate(steps):
            if index:
                await _sleep(self.token_delay)
            if 0 <= limit < sent + len(step):
                await out.write(*step[: limit - sent])
                return await self._cut(out)
            if index == len(steps) - 1:
                self.complete()
            await out.write(*step)
            sent += len(step)
        await out.end()
        return True

    async def _cut(self, out: ResponseWriter) -> bool:
        """After ``drop_after`` events: an in-stream error, or an abrupt close."""
        if self.reply.error is None:
            out.abort()
            return False
        error = proto.error_body(self.reply.error, "InternalServerError", 500)
        await out.write(proto.sse(error), proto.DONE)
        await out.end()
        return False


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _json(
    out: ResponseWriter, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()
) -> None:
    await out.send(status, proto.dumps(payload).encode(), "application/json", headers)


def _decode_body(request: HttpRequest) -> tuple[dict[str, Any] | None, proto.ApiError | None]:
    """The JSON object body, or the 400 vLLM answers for a missing or malformed one."""
    if request.method != "POST":
        return None, None
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        message = "Unsupported Media Type: Only 'application/json' is allowed"
        return None, proto.ApiError(400, f"1 validation error:\n  {message}", "Bad Request")
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"1 validation error:\n  JSON decode error: {exc}"
        return None, proto.ApiError(400, message, "Bad Request", "body")
    if not isinstance(body, dict):
        message = "1 validation error:\n  Input should be a valid dictionary or object"
        return None, proto.ApiError(400, message, "Bad Request", "body")
    return body, None
