"""Llama 3.1's built-in ``brave_search`` tool on the Brave Search web-search API.

The model writes ``<|python_tag|>brave_search.call(query="...")``; this tool asks Brave, keeps
what a model can use (web, news, FAQ, discussions, videos and infobox entries: title, URL,
description, extra snippets), strips HTML, and returns compact JSON that fits
``max_output_chars``. Every failure, an empty result set included, reaches the model as an
error it can read, never as an empty success.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from agentic.errors import ConfigError, SearchError
from agentic.tools._http import (
    LoopClient,
    clean_text,
    describe,
    excerpt,
    fit_json,
    human_seconds,
    key_from_env,
    query_argument,
)
from agentic.tools.base import ToolContext, ToolRetry, check_limits
from agentic.types import ToolDefinition

__all__ = ["BraveSearch"]

DEFAULT_BASE_URL: Final = "https://api.search.brave.com/res/v1"
API_KEY_ENV: Final = "BRAVE_SEARCH_API_KEY"
MAX_QUERY_CHARS: Final = 400
MAX_QUERY_WORDS: Final = 50
_KEY_PAGE: Final = "https://api-dashboard.search.brave.com"
_SAFESEARCH: Final = ("off", "moderate", "strict")
_FRESHNESS: Final = re.compile(r"p[dwmy]|\d{4}-\d{2}-\d{2}to\d{4}-\d{2}-\d{2}")
_MIN_OUTPUT_CHARS: Final = 1000
_EXTRAS: Final = ("extra_snippets", "attributes", "top_comment")
_KEY_CODES: Final = frozenset({"SUBSCRIPTION_TOKEN_INVALID", "SUBSCRIPTION_NOT_FOUND"})
_SERVICE: Final = "Brave Search"


class BraveSearch:
    """Web search through the Brave Search API, as Llama 3.1's built-in ``brave_search``.

    The key comes from ``api_key`` or ``BRAVE_SEARCH_API_KEY``. ``count`` is the number of web
    results (Brave adds news, FAQ, discussions, videos and an infobox when it has them).
    ``timeout`` bounds each HTTP request. A 429 is retried up to ``max_retries`` times after
    the wait Brave asks for (``Retry-After`` or the per-second ``X-RateLimit-Reset``, at least
    ``retry_wait_min``); a longer wait than ``retry_wait_max``, or a used-up monthly quota,
    fails at once. One pooled httpx2 client serves all calls: ``await tool.aclose()`` when
    done, or pass your own ``client`` (then closing it is yours).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        count: int = 5,
        country: str | None = None,
        search_lang: str | None = None,
        safesearch: Literal["off", "moderate", "strict"] = "moderate",
        freshness: str | None = None,
        extra_snippets: bool = True,
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 5.0,
        max_output_chars: int = 6000,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        self._check_options(count, safesearch, freshness, max_retries, max_output_chars)
        check_limits("BraveSearch", timeout, max_output_chars)
        if not 0 <= retry_wait_min <= retry_wait_max:
            raise ConfigError("BraveSearch: need 0 <= retry_wait_min <= retry_wait_max (seconds)")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"BraveSearch: base_url must start with http(s):// (got {base_url!r})"
            )
        self.definition = ToolDefinition.builtin("brave_search")
        self.max_output_chars = max_output_chars
        self._url = f"{base_url.rstrip('/')}/web/search"
        self._headers = {
            "Accept": "application/json",
            "X-Subscription-Token": key_from_env(
                api_key, API_KEY_ENV, "Brave Search API key", _KEY_PAGE
            ),
        }
        options = {"country": country, "search_lang": search_lang, "freshness": freshness}
        self._params: dict[str, str] = {
            "count": str(count),
            "safesearch": safesearch,
            "text_decorations": "false",
            "extra_snippets": "true" if extra_snippets else "false",
            **{k: v for k, v in options.items() if v},
        }
        self._request_timeout = timeout
        self._max_retries = max_retries
        self._wait_min = retry_wait_min
        self._wait_max = retry_wait_max
        self._client = LoopClient(lambda: httpx2.AsyncClient(timeout=timeout), client)

    @staticmethod
    def _check_options(
        count: int, safesearch: str, freshness: str | None, retries: int, cap: int
    ) -> None:
        if not 1 <= count <= 20:
            raise ConfigError(f"BraveSearch: count must be 1 to 20 (got {count})")
        if safesearch not in _SAFESEARCH:
            raise ConfigError(
                f"BraveSearch: safesearch must be one of {', '.join(_SAFESEARCH)} "
                f"(got {safesearch!r})"
            )
        if freshness is not None and not _FRESHNESS.fullmatch(freshness):
            raise ConfigError(
                "BraveSearch: freshness must be pd, pw, pm, py or YYYY-MM-DDtoYYYY-MM-DD "
                f"(got {freshness!r})"
            )
        if retries < 0:
            raise ConfigError(f"BraveSearch: max_retries must be 0 or more (got {retries})")
        if cap < _MIN_OUTPUT_CHARS:
            raise ConfigError(f"BraveSearch: max_output_chars must be at least {_MIN_OUTPUT_CHARS}")

    def __repr__(self) -> str:
        return f"BraveSearch({self._url!r})"

    @property
    def timeout(self) -> float:
        """The whole call's budget: every attempt plus the longest waits between them."""
        attempts = self._max_retries + 1
        return self._request_timeout * attempts + self._wait_max * 1.1 * self._max_retries + 1.0

    async def __aenter__(self) -> BraveSearch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client the tool made (an injected client is left to its owner)."""
        await self._client.aclose()

    async def call(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> str:
        """Search for ``arguments["query"]``; compact JSON of the cleaned results."""
        query = query_argument(
            self.definition.name, arguments, max_chars=MAX_QUERY_CHARS, max_words=MAX_QUERY_WORDS
        )
        reply = await self._search(query)
        results = list(_entries(reply))
        if not results:
            raise ToolRetry(f"search failed: no results for {query!r}; try other or fewer words")
        return fit_json(
            lambda items: {"query": query, "results": items},
            results,
            self.max_output_chars,
            extras=_EXTRAS,
        )

    async def _search(self, query: str) -> _Reply:
        """Brave's parsed reply, after waiting out rate limits; SearchError otherwise."""
        attempt = 0
        while True:
            response = await self._get(query)
            if response.status_code != 429:
                return _parse(response)
            await asyncio.sleep(self._rate_limit_wait(response, attempt))
            attempt += 1

    async def _get(self, query: str) -> httpx2.Response:
        client = self._client.get()
        try:
            return await client.get(
                self._url, params={"q": query, **self._params}, headers=self._headers
            )
        except httpx2.TimeoutException:
            raise SearchError(
                f"search failed: {_SERVICE} did not answer within {self._request_timeout:g}s"
            ) from None
        except httpx2.HTTPError as exc:
            raise SearchError(
                f"search failed: could not reach {_SERVICE} at {self._url} ({describe(exc)})"
            ) from None

    def _rate_limit_wait(self, response: httpx2.Response, attempt: int) -> float:
        """Seconds to wait before retrying a 429, or SearchError when waiting is pointless."""
        detail = _error_detail(response)
        remaining = _numbers(response.headers.get("x-ratelimit-remaining"))
        reset = _numbers(response.headers.get("x-ratelimit-reset"))
        for window in range(1, min(len(remaining), len(reset))):
            if remaining[window] <= 0:  # the monthly (or other long) quota is used up
                raise SearchError(
                    f"search failed: the {_SERVICE} quota is used up ({detail}); it resets in "
                    f"{human_seconds(reset[window])}",
                    status_code=429,
                )
        hint = _numbers(response.headers.get("retry-after")) or reset[:1]
        wait = max(hint[0] if hint else 0.0, self._wait_min)
        if wait > self._wait_max:
            raise SearchError(
                f"search failed: rate limited by {_SERVICE} ({detail}); the limit resets in "
                f"{human_seconds(wait)}",
                status_code=429,
            )
        if attempt >= self._max_retries:
            raise SearchError(
                f"search failed: rate limited by {_SERVICE} ({detail}), "
                f"still after {attempt + 1} attempts",
                status_code=429,
            )
        return wait + random.uniform(0, wait / 10)  # jitter: parallel calls do not retry in step


def _numbers(header: str | None) -> list[float]:
    """The numbers of a comma-separated header (``"1, 1419704"``); [] if absent or unreadable."""
    if not header:
        return []
    try:
        return [float(part) for part in header.split(",")]
    except ValueError:
        return []


# -- the reply -----------------------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Result(_Lenient):
    title: str = ""
    url: str = ""
    description: str = ""
    age: str | None = None
    extra_snippets: list[str] = []


class _Faq(_Lenient):
    question: str = ""
    answer: str = ""
    title: str = ""
    url: str = ""


class _DiscussionData(_Lenient):
    forum_name: str | None = None
    num_answers: int | None = None
    question: str | None = None
    top_comment: str | None = None


class _Discussion(_Result):
    data: _DiscussionData | None = None


class _Infobox(_Lenient):
    label: str | None = None
    title: str = ""
    url: str = ""
    website_url: str | None = None
    description: str = ""
    long_desc: str | None = None
    attributes: list[list[Any]] = []


ItemT = TypeVar("ItemT", bound=_Lenient)


class _Block(_Lenient, Generic[ItemT]):
    results: list[ItemT] = []


class _MixedRef(_Lenient):
    type: str
    index: int | None = None
    all: bool = False


class _Mixed(_Lenient):
    top: list[_MixedRef] = []
    main: list[_MixedRef] = []
    side: list[_MixedRef] = []


class _Reply(_Lenient):
    web: _Block[_Result] | None = None
    infobox: _Block[_Infobox] | None = None
    faq: _Block[_Faq] | None = None
    news: _Block[_Result] | None = None
    discussions: _Block[_Discussion] | None = None
    videos: _Block[_Result] | None = None
    mixed: _Mixed | None = None

    def blocks(self) -> dict[str, Sequence[_Lenient]]:
        """The result lists by block name, in the order used when ``mixed`` says nothing."""
        named = {
            "infobox": self.infobox,
            "web": self.web,
            "faq": self.faq,
            "news": self.news,
            "discussions": self.discussions,
            "videos": self.videos,
        }
        return {name: block.results for name, block in named.items() if block is not None}


def _parse(response: httpx2.Response) -> _Reply:
    """The reply of a non-429 response; SearchError for an error status or an unreadable body."""
    status = response.status_code
    if status != 200:
        raise SearchError(_status_message(response), status_code=status)
    ctype = response.headers.get("content-type", "no content type")
    try:
        return _Reply.model_validate_json(response.content)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise SearchError(
                f"search failed: {_SERVICE} sent a reply that is not JSON (HTTP {status}, "
                f"{ctype}): {excerpt(response.text)}",
                status_code=status,
            ) from None
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SearchError(
            f"search failed: {_SERVICE} sent a reply of an unexpected shape ({where}: "
            f"{first['msg']})",
            status_code=status,
        ) from None


def _status_message(response: httpx2.Response) -> str:
    status = response.status_code
    detail = _error_detail(response)
    code = _error_code(response)
    if status in (401, 403) or code in _KEY_CODES:
        return f"search failed: {_SERVICE} rejected the API key ({detail}); check {API_KEY_ENV}"
    if status >= 500:
        return f"search failed: {_SERVICE} is unavailable ({detail})"
    return f"search failed: {_SERVICE} rejected the request ({detail})"


def _envelope_error(response: httpx2.Response) -> Mapping[str, Any]:
    """The ``error`` object of Brave's ErrorResponse envelope, or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(response: httpx2.Response) -> str | None:
    code = _envelope_error(response).get("code")
    return code if isinstance(code, str) else None


def _error_detail(response: httpx2.Response) -> str:
    """``HTTP 422 VALIDATION: Unable to validate ...``, or the status and a body excerpt."""
    error = _envelope_error(response)
    parts = [f"HTTP {response.status_code}"]
    if code := error.get("code"):
        parts.append(f" {code}")
    text = error.get("detail") if error else excerpt(response.text)
    if text:
        parts.append(f": {text}")
    return "".join(parts)


# -- cleaning ------------------------------------------------------------------------------------


def _entries(reply: _Reply) -> Iterator[dict[str, Any]]:
    """Cleaned results in Brave's ranking (``mixed`` top, main, side), then any left over."""
    blocks = reply.blocks()
    seen: set[tuple[str, int]] = set()
    mixed = reply.mixed or _Mixed()
    for ref in (*mixed.top, *mixed.main, *mixed.side):
        results = blocks.get(ref.type, ())
        picked = range(len(results)) if ref.all or ref.index is None else [ref.index]
        for i in picked:
            if 0 <= i < len(results) and (ref.type, i) not in seen:
                seen.add((ref.type, i))
                yield _clean(ref.type, results[i])
    for name, results in blocks.items():
        for i, item in enumerate(results):
            if (name, i) not in seen:
                yield _clean(name, item)


def _clean(block: str, item: _Lenient) -> dict[str, Any]:
    """One result as the model sees it: text fields tag-free, empty fields left out."""
    if isinstance(item, _Faq):
        entry: dict[str, Any] = {
            "type": "faq",
            "question": item.question,
            "answer": item.answer,
            "title": item.title,
            "url": item.url,
        }
    elif isinstance(item, _Infobox):
        entry = {
            "type": "infobox",
            "title": item.label or item.title,
            "url": item.website_url or item.url,
            "description": item.long_desc or item.description,
            "attributes": [": ".join(str(p) for p in pair if p) for pair in item.attributes],
        }
    else:
        assert isinstance(item, _Result)
        entry = _result_entry(block, item)
    return {k: v for k, v in ((k, _cleaned(v)) for k, v in entry.items()) if v}


def _result_entry(block: str, item: _Result) -> dict[str, Any]:
    kind = {"news": "news", "discussions": "discussion", "videos": "video"}.get(block, "web")
    entry: dict[str, Any] = {
        "type": kind,
        "title": item.title,
        "url": item.url,
        "description": item.description,
        "age": item.age,
        "extra_snippets": item.extra_snippets,
    }
    if isinstance(item, _Discussion) and item.data is not None:
        data = item.data
        entry["forum"] = data.forum_name
        entry["answers"] = data.num_answers
        entry["description"] = data.question or item.description
        entry["top_comment"] = data.top_comment
    return entry


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [text for v in value if (text := clean_text(v))]
    return value
