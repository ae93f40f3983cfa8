"""The production backend: an async httpx2 client of vLLM's OpenAI-compatible server.

We render the Llama prompt ourselves and send it to ``/v1/completions`` (``/v1/chat/completions``
only for images), keep special tokens in the output, and read vLLM's ``stop_reason`` to tell
``<|eom_id|>`` from ``<|eot_id|>``. The wire details, with the vLLM source files they were checked
against, are in :mod:`agentic.inference._vllm_wire`; ``/v1/models`` follows
``vllm/entrypoints/openai/models/serving.py`` (``ModelCard``: ``id``, ``root``,
``max_model_len``) and ``/tokenize`` (at the server root, not under ``/v1``) follows
``vllm/entrypoints/serve/tokenize/{api_router,protocol}.py``.

Configuration from the environment: ``AGENTIC_VLLM_BASE_URL`` / ``VLLM_BASE_URL`` when no
``base_url`` is given, and ``AGENTIC_VLLM_API_KEY`` / ``VLLM_API_KEY`` (the variable ``vllm
serve`` itself reads for ``--api-key``) when no ``api_key`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx2

from agentic.errors import (
    BackendResponseError,
    ConfigError,
    InferenceError,
    ModelNotFoundError,
    UnknownModelError,
    UnsupportedFeatureError,
    UserError,
)
from agentic.inference import _vllm_errors as errors
from agentic.inference import _vllm_wire as wire
from agentic.inference._transport import pooled_transport
from agentic.inference.base import Completion, InferenceRequest, TextDelta, Timings
from agentic.llama.models import ModelSpec, known_models, resolve_model
from agentic.llama.prompt import PromptCache
from agentic.types import Usage

__all__ = ["ServedModel", "VLLMServer"]

DEFAULT_BASE_URL = "http://localhost:8000/v1"
_RETRY_STATUSES = frozenset({429, 503})
_CONNECT_ERRORS: tuple[type[Exception], ...] = (httpx2.ConnectError, httpx2.ConnectTimeout)
_DROP_ERRORS: tuple[type[Exception], ...] = (
    httpx2.RemoteProtocolError,
    httpx2.ReadError,
    httpx2.WriteError,
)
_KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is kept: below uvicorn's keep-alive in vLLM
(``VLLM_HTTP_TIMEOUT_KEEP_ALIVE``, 5 s by default), so we never reuse one the server closed."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model the server serves: its name in requests, context length and source path."""

    id: str
    max_model_len: int | None = None
    root: str | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a requested model name lands: the served name, its spec and its context."""

    name: str
    spec: ModelSpec | None
    max_model_len: int | None


@dataclass(slots=True)
class _Attempts:
    """Retries spent on one request, and the model it is for (for error messages)."""

    model: str
    count: int = 0


@dataclass(slots=True)
class _Call:
    """One generation request on its way: the body and what its errors need to say."""

    url: httpx2.URL
    body: dict[str, Any]
    target: _Target
    chat: bool
    attempts: _Attempts
    redirected: bool = False


@dataclass(slots=True)
class _Output:
    """What a generation produced so far."""

    parts: list[str] = field(default_factory=list)
    first: float | None = None
    finish: str | None = None
    stop: int | str | None = None
    usage: Mapping[str, Any] | None = None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1].lower()


def _lookup(name: str | None) -> ModelSpec | None:
    """The capability row for an id, alias or checkpoint path; ``None`` if unknown."""
    if not name:
        return None
    try:
        return resolve_model(name)
    except UnknownModelError:
        base = _basename(name)
        for model_id in known_models():
            if _basename(model_id) == base:
                return resolve_model(model_id)
    return None


def _served_names(model: ServedModel) -> set[str]:
    names = {model.id.lower(), _basename(model.id)}
    if model.root:
        names |= {model.root.lower(), _basename(model.root)}
    return names


def _match(model: str, served: list[ServedModel]) -> _Target:
    """Map a table id, alias or served name to the name the server serves."""
    spec = _lookup(model)
    if not served:  # no model list to match against: trust the caller
        name = spec.id if spec is not None and model != spec.id else model
        return _Target(name, spec, spec.context_length if spec else None)
    if not model:
        if len(served) != 1:
            ids = ", ".join(m.id for m in served)
            raise ConfigError(f"name a model: the server serves several ({ids})")
        found: ServedModel | None = served[0]
    else:
        found = next((m for m in served if m.id == model), None)
    if found is None and spec is not None:
        names = {spec.id.lower(), *(a.lower() for a in spec.aliases), _basename(spec.id)}
        found = next((m for m in served if _served_names(m) & names), None)
    if found is None:
        raise ModelNotFoundError(model, [m.id for m in served])
    spec = spec or _lookup(found.id) or _lookup(found.root)
    limit = found.max_model_len or (spec.context_length if spec else None)
    return _Target(found.id, spec, limit)


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name):
            return value
    return None


class VLLMServer:
    """An :class:`~agentic.inference.base.InferenceBackend` talking to a vLLM server over HTTP.

    One pooled ``httpx2.AsyncClient`` serves every request (sized for hundreds of concurrent
    streams); pass ``client`` or ``transport`` to inject your own. Use ``async with`` or
    :meth:`aclose`. Connection errors, 429 and 503 are retried with exponential backoff and
    jitter (``Retry-After`` honoured up to ``retry_after_max``), never once a token was streamed.
    ``timeout`` bounds the wait for each read (the gap between streamed tokens).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float | None = 300.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        max_connections: int = 1024,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 60.0,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        base = base_url or _env("AGENTIC_VLLM_BASE_URL", "VLLM_BASE_URL") or DEFAULT_BASE_URL
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https:// (got {base!r})")
        self.base_url = base.rstrip("/")
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        # parsed once: a URL string costs httpx2 ~50 us to parse, as much as the rest of a request
        self._completions_url = httpx2.URL(f"{self.base_url}/completions")
        self._chat_url = httpx2.URL(f"{self.base_url}/chat/completions")
        self._models_url = httpx2.URL(f"{self.base_url}/models")
        self._tokenize_url = httpx2.URL(f"{root}/tokenize")
        self._port = self._models_url.port
        key = api_key if api_key is not None else _env("AGENTIC_VLLM_API_KEY", "VLLM_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._max_retries = max_retries
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max
        self._owns_client = client is None
        limits = httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
        )
        self._new_client: Callable[[], httpx2.AsyncClient] = lambda: httpx2.AsyncClient(
            transport=transport or pooled_transport(limits),
            timeout=httpx2.Timeout(timeout, connect=connect_timeout),
            limits=limits,
        )
        self._client = client or self._new_client()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop the client's connections belong to (set on first use)."""
        self._prompt_cache = prompt_cache
        self._served: list[ServedModel] | None = None
        self._targets: dict[str, _Target] = {}
        self._models_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"VLLMServer({self.base_url!r})"

    async def __aenter__(self) -> VLLMServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, unless it was injected (its owner closes it)."""
        if not self._owns_client:
            return
        if self._loop is None or self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        else:  # its connections belong to another event loop, which alone can close them
            self._client = self._new_client()
            self._loop = None

    @property
    def prompts(self) -> PromptCache:
        """The prompt cache that renders this backend's conversations."""
        if self._prompt_cache is None:
            self._prompt_cache = PromptCache()
        return self._prompt_cache

    # -- generation ------------------------------------------------------------------------

    async def stream(
        self, request: InferenceRequest
    ) -> AsyncGenerator[TextDelta | Completion, None]:
        """Stream raw text deltas (special tokens kept), then one :class:`Completion`.

        The stop token vLLM leaves out of its output (``<|eot_id|>``, ``<|eom_id|>``) comes
        as a last delta, so the text is what the model emitted.
        """
        started = time.monotonic()
        call = await self._prepare(request, stream=True)
        while True:
            response = await self._open("POST", call.url, call.body, call.attempts, call)
            out = _Output()
            # one flat loop over the body's bytes: each generator layer between the socket and
            # the caller costs a few microseconds per delta, and a turn streams many
            try:
                wire.check_event_stream(response.headers.get("content-type"))
                events = wire.EventData()
                async for raw in _body(response):
                    for data in events.feed(raw):
                        if text := self._chunk(data, out, call.chat):
                            yield TextDelta(text)
            except wire.EventStreamError as exc:
                raise errors.not_sse(self.base_url, response.status_code, exc) from exc
            except httpx2.TransportError as exc:
                await self._after_break(exc, out, call.attempts)
                continue  # nothing reached the caller yet: safe to ask again
            finally:
                await response.aclose()
            completion, suffix = self._finish(out, call, started)
            if suffix:
                yield TextDelta(suffix)
            yield completion
            return

    async def complete(self, request: InferenceRequest) -> Completion:
        """Generate without streaming (``"stream": false`` on the wire)."""
        started = time.monotonic()
        call = await self._prepare(request, stream=False)
        payload = await self._json(call.url, call.body, call.attempts, call)
        try:
            choice = payload["choices"][0]
            text = (choice["message"]["content"] if call.chat else choice["text"]) or ""
            out = _Output(
                parts=[text],
                first=time.monotonic() if text else None,  # all text arrives at once
                finish=choice.get("finish_reason"),
                stop=choice.get("stop_reason"),
                usage=payload.get("usage"),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise errors.malformed(self.base_url, json.dumps(payload), exc) from exc
        completion, _ = self._finish(out, call, started)
        return completion

    async def _after_break(
        self, exc: httpx2.TransportError, out: _Output, attempts: _Attempts
    ) -> None:
        """A stream broke: wait to retry if no text was streamed yet, else raise the error."""
        if isinstance(exc, httpx2.TimeoutException):
            raise errors.timed_out(self.base_url, exc) from exc
        retry = isinstance(exc, _DROP_ERRORS) and not out.parts
        if not retry or attempts.count >= self._max_retries:
            chars = sum(len(p) for p in out.parts)
            raise errors.dropped(self.base_url, exc, chars) from exc
        await self._sleep_before_retry(attempts, None)

    def _chunk(self, data: bytes, out: _Output, chat: bool) -> str | None:
        """Read one event's JSON chunk into ``out``; returns its text, also kept in ``out``."""
        if data == b"[DONE]":
            return None  # the caller reads on to the end of the body: the connection is reused
        try:
            chunk = wire.event_json(data)
            if chunk.get("usage"):
                out.usage = chunk["usage"]
            choices = chunk.get("choices")
            if not choices:
                if "error" in chunk:
                    raise errors.in_stream(data.decode("utf-8", "replace"))
                return None
            choice = choices[0]
            if choice.get("finish_reason") is not None:
                out.finish = choice["finish_reason"]
                out.stop = choice.get("stop_reason")
            text: str | None = choice["delta"].get("content") if chat else choice.get("text")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise errors.malformed(self.base_url, data.decode("utf-8", "replace"), exc) from exc
        if text:
            if out.first is None:
                out.first = time.monotonic()
            out.parts.append(text)
        return text

    def _finish(self, out: _Output, call: _Call, started: float) -> tuple[Completion, str]:
        """The final :class:`Completion`, and the stop-token text vLLM left out of the output."""
        outcome = wire.stop_of(out.finish, out.stop, wire.eos_text(call.target.spec))
        if outcome is None:
            raise errors.unfinished(out.finish)
        reason, token = outcome
        text = "".join(out.parts)
        suffix = wire.stop_text_of(text, token)
        usage = out.usage or {}
        completion = Completion(
            text=text + suffix,
            stop_reason=reason,
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            ),
            timings=Timings(
                time_to_first_token=None if out.first is None else out.first - started,
                total=time.monotonic() - started,
            ),
        )
        return completion, suffix

    # -- building requests -----------------------------------------------------------------

    async def _prepare(self, request: InferenceRequest, *, stream: bool) -> _Call:
        """Resolve the model, render the prompt and build the request body."""
        attempts = _Attempts(request.model)
        if request.prompt is not None and request.images:
            return await self._prompt_with_images(request, request.prompt, attempts, stream)
        chat = request.prompt is None and wire.has_images(request.messages)
        if chat:
            _check_images(request, _lookup(request.model))  # before any HTTP
        target = await self._target(request.model)
        if chat:
            _check_images(request, target.spec)
            body = wire.chat_body(
                target.name,
                request.messages,
                request.sampling,
                response_format=request.response_format,
                stream=stream,
            )
            return _Call(self._chat_url, body, target, True, attempts)
        prompt = self._prompt_of(request, target)
        max_tokens = request.sampling.max_tokens
        if max_tokens is None:
            known = request.prompt_tokens if request.prompt is not None else None
            max_tokens = await self._room(prompt, target, request.model, known)
        body = wire.completion_body(
            target.name,
            prompt,
            request.sampling,
            max_tokens=max_tokens,
            response_format=request.response_format,
            stream=stream,
        )
        return _Call(self._completions_url, body, target, False, attempts)

    async def _prompt_with_images(
        self, request: InferenceRequest, prompt: str, attempts: _Attempts, stream: bool
    ) -> _Call:
        """A raw prompt with images: the chat endpoint, with a template that passes it through."""
        _check_images(request, _lookup(request.model))  # before any HTTP
        target = await self._target(request.model)
        _check_images(request, target.spec)
        body = wire.raw_prompt_chat_body(
            target.name,
            prompt,
            request.images,
            request.sampling,
            response_format=request.response_format,
            stream=stream,
        )
        return _Call(self._chat_url, body, target, True, attempts)

    def _prompt_of(self, request: InferenceRequest, target: _Target) -> str:
        """``request.prompt`` verbatim, or the rendered conversation."""
        if request.prompt is not None:
            return request.prompt
        if not request.messages:
            raise ConfigError("an InferenceRequest needs messages or a prompt")
        spec = target.spec or resolve_model(request.model)  # raises UnknownModelError
        return self.prompts.render(
            request.cache_key,
            request.messages,
            model=spec,
            tools=request.tools,
            tool_prompt_format=request.tool_prompt_format,
            tool_choice=request.tool_choice,
            response_format=request.response_format,
            today=request.today,
        )

    async def _room(
        self, prompt: str, target: _Target, model: str, known: int | None = None
    ) -> int | None:
        """``max_tokens`` when none is set: the rest of the context, as vLLM's chat does.

        vLLM's completions endpoint turns a missing ``max_tokens`` into 16, so we send one. The
        caller's count (``known``), else a byte count, bounds the prompt's tokens from above;
        only when that bound does not fit is the exact count asked from ``/tokenize``.
        """
        limit = target.max_model_len
        if limit is None:
            return None
        bound = wire.token_upper_bound(prompt)
        if known is not None:
            bound = min(bound, known)
        if bound < limit:
            return limit - bound
        count = await self._tokenize(_tokenize_body(target.name, prompt=prompt), model)
        if count >= limit:
            raise errors.prompt_too_long(model or target.name, count, limit)
        return limit - count

    # -- models and tokens -----------------------------------------------------------------

    async def models(self) -> list[ServedModel]:
        """The models the server serves (``/v1/models``); also refreshes the cached list.

        A server without the list (404) raises :class:`BackendResponseError`: a base URL
        that does not end in ``/v1``, most likely.
        """
        served = await self._fetch_models("", missing_ok=False)
        self._served = served
        self._targets.clear()
        return served

    async def context_length(self, model: str = "") -> int | None:
        """The context window the server gives ``model`` (``max_model_len``), if it says.

        A server started with ``--max-model-len`` serves less than the model's own window;
        agents budget their prompts with this number.
        """
        return (await self._target(model)).max_model_len

    async def count_tokens(
        self, request_or_text: InferenceRequest | str, *, model: str = ""
    ) -> int:
        """How many tokens vLLM makes of a text, or of a request's whole prompt (``/tokenize``).

        Text is counted as is (no ``<|begin_of_text|>`` added). ``model`` may be left out when
        the server serves one model. vLLM counts no text longer than the served context: that
        raises :class:`~agentic.errors.ContextLengthError`.
        """
        if isinstance(request_or_text, str):
            target = await self._target(model)
            body = _tokenize_body(target.name, prompt=request_or_text)
            return await self._tokenize(body, model)
        request = request_or_text
        target = await self._target(request.model)
        if request.prompt is None and wire.has_images(request.messages):
            messages = wire.chat_messages(request.messages)
            body = _tokenize_body(target.name, messages=messages)
            return await self._tokenize(body, request.model)
        body = _tokenize_body(target.name, prompt=self._prompt_of(request, target))
        return await self._tokenize(body, request.model)

    async def _tokenize(self, body: dict[str, Any], model: str) -> int:
        payload = await self._json(self._tokenize_url, body, _Attempts(model))
        try:
            return int(payload["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.malformed(self.base_url, json.dumps(payload), exc) from exc

    async def _fetch_models(self, model: str, *, missing_ok: bool = True) -> list[ServedModel]:
        try:
            payload = await self._json(self._models_url, None, _Attempts(model))
        except BackendResponseError as exc:
            if exc.status_code == 404 and missing_ok:  # not vLLM, or an old proxy: no list
                return []
            raise
        try:
            return [
                ServedModel(str(m["id"]), m.get("max_model_len"), m.get("root"))
                for m in payload["data"]
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise errors.malformed(self.base_url, json.dumps(payload), exc) from exc

    async def _target(self, model: str) -> _Target:
        target = self._targets.get(model)
        if target is None:
            if self._served is None:
                async with self._models_lock:  # one /v1/models for a burst of first requests
                    if self._served is None:
                        self._served = await self._fetch_models(model)
            target = _match(model, self._served)
            self._targets[model] = target
        return target

    # -- HTTP with retries -----------------------------------------------------------------

    async def _json(
        self,
        url: httpx2.URL,
        body: dict[str, Any] | None,
        attempts: _Attempts,
        call: _Call | None = None,
    ) -> Any:
        """POST ``body`` (GET when ``None``) and return the decoded JSON answer."""
        method = "GET" if body is None else "POST"
        response = await self._open(method, url, body, attempts, call)
        try:
            raw = await response.aread()
        except httpx2.TimeoutException as exc:
            raise errors.timed_out(self.base_url, exc) from exc
        except httpx2.TransportError as exc:
            raise errors.no_answer(self.base_url, exc) from exc
        finally:
            await response.aclose()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.malformed(self.base_url, raw.decode("utf-8", "replace"), exc) from exc

    async def _open(
        self,
        method: str,
        url: httpx2.URL,
        body: dict[str, Any] | None,
        attempts: _Attempts,
        call: _Call | None = None,
    ) -> httpx2.Response:
        """Send a request; return the open (streaming) response once it is a success."""
        if asyncio.get_running_loop() is not self._loop:
            self._bind_loop()
        while True:
            request = self._client.build_request(method, url, json=body, headers=self._headers)
            try:
                response = await self._client.send(request, stream=True)
            except (*_CONNECT_ERRORS, *_DROP_ERRORS) as exc:
                if attempts.count >= self._max_retries:
                    raise self._transport_error(exc, attempts.model) from exc
                await self._sleep_before_retry(attempts, None)
                continue
            except httpx2.TimeoutException as exc:
                raise errors.timed_out(self.base_url, exc) from exc
            except httpx2.TransportError as exc:
                raise self._transport_error(exc, attempts.model) from exc
            if response.is_success:
                return response
            try:
                raw = (await response.aread()).decode("utf-8", "replace")
            finally:
                await response.aclose()
            delay = await self._status_error(response, raw, attempts, call)
            if delay is not None:
                await self._sleep_before_retry(attempts, delay)

    def _bind_loop(self) -> None:
        """Connections belong to the event loop that opened them: a backend first used in one
        ``asyncio.run()`` and then in another gets a fresh client of its own (the old loop's
        connections went with it); an injected client cannot be replaced, so that is an error."""
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            if not self._owns_client:
                raise UserError(
                    "the httpx2 client given to VLLMServer belongs to another event loop; "
                    "give each event loop its own client (or let VLLMServer make its own)"
                )
            self._client = self._new_client()  # the old one's loop is gone or busy elsewhere
        self._loop = loop

    async def _status_error(
        self, response: httpx2.Response, raw: str, attempts: _Attempts, call: _Call | None
    ) -> float | None:
        """Return the delay before a retry (``None``: retry now), or raise the typed error."""
        status = response.status_code
        message, error = wire.error_message(raw)
        if status in _RETRY_STATUSES:
            if attempts.count >= self._max_retries:
                raise errors.rate_limited(self.base_url, status, attempts.count + 1, message, raw)
            after = wire.retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, self._retry_after_max)
            return self._delay(attempts.count)
        if wire.is_model_missing(status, message, error):
            await self._model_missing(attempts.model, call)
            return None
        if wire.is_context_error(status, message):
            if call is None:  # /tokenize: vLLM counts no text longer than the context
                limit = wire.context_numbers(message)[1]
                raise errors.too_long_to_count(attempts.model, message, limit)
            raise await self._context_error(message, call)
        raise errors.status_error(self.base_url, status, message, raw, str(response.url))

    async def _model_missing(self, model: str, call: _Call | None) -> None:
        """Refresh the model list, then redirect the call once to the served name, or raise."""
        with contextlib.suppress(InferenceError):
            await self.models()
        served = self._served or []
        if call is not None and not call.redirected and served:
            target = _match(model, served)  # raises ModelNotFoundError if nothing fits
            if target.name != call.body.get("model"):
                call.body["model"] = target.name
                call.target, call.redirected = target, True
                return
        raise ModelNotFoundError(model, [m.id for m in served])

    async def _context_error(self, message: str, call: _Call) -> InferenceError:
        prompt_tokens, limit = wire.context_numbers(message)
        if prompt_tokens is None:  # e.g. "You passed N input characters": count them
            body = _tokenize_body(
                call.target.name,
                prompt=call.body.get("prompt"),
                messages=call.body.get("messages"),
            )
            with contextlib.suppress(InferenceError):
                prompt_tokens = await self._tokenize(body, call.attempts.model)
        model = call.attempts.model or call.target.name
        limit = limit or call.target.max_model_len
        requested = call.body.get("max_tokens") or call.body.get("max_completion_tokens") or 0
        # vLLM tokenizes a prompt only up to one token past the room left for it
        at_least = (
            prompt_tokens is not None
            and limit is not None
            and prompt_tokens == limit - requested + 1
        )
        return errors.context_length(model, message, prompt_tokens, limit, at_least=at_least)

    async def _sleep_before_retry(self, attempts: _Attempts, delay: float | None) -> None:
        await asyncio.sleep(self._delay(attempts.count) if delay is None else delay)
        attempts.count += 1

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half to all of ``backoff * 2**attempt``."""
        ceiling = min(self._backoff_max, self._backoff * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    def _transport_error(self, exc: Exception, model: str) -> InferenceError:
        if isinstance(exc, _DROP_ERRORS):
            return errors.no_answer(self.base_url, exc)
        return errors.unreachable(self.base_url, exc, model, _lookup(model), self._port)


def _body(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body's bytes, skipping httpx2's decoding layer when nothing is encoded (vLLM)."""
    if response.is_stream_consumed or "content-encoding" in response.headers:
        return response.aiter_bytes()  # a body read already (a mock), or compressed (a proxy)
    return response.aiter_raw()


def _check_images(request: InferenceRequest, spec: ModelSpec | None) -> None:
    """Images need a vision model, and Llama 3.2 Vision takes no tools alongside them."""
    if spec is not None and not spec.vision:
        raise UnsupportedFeatureError(
            f"{spec.id} has no vision and cannot take images; use a vision model such as "
            "meta-llama/Llama-3.2-11B-Vision-Instruct, or send text only"
        )
    if request.tools:
        raise UnsupportedFeatureError(
            "Llama 3.2 Vision cannot call tools with an image in the prompt: ask about the "
            "image first, then call tools in a text-only request"
        )


def _tokenize_body(
    name: str, *, prompt: str | None = None, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A ``/tokenize`` body: a prompt counted as is, or chat messages."""
    body: dict[str, Any] = {"model": name} if name else {}
    if messages is not None:
        body["messages"] = messages
    else:
        body["prompt"] = prompt
        body["add_special_tokens"] = False
    return body
