"""Llama 3.1's built-in ``wolfram_alpha`` tool on Wolfram|Alpha.

The model writes ``<|python_tag|>wolfram_alpha.call(query="...")``. By default the tool asks
the Full Results API through the ``wolframalpha`` package's async client and answers with the
JSON shape Meta's prompt-format guide shows the model (``{"queryresult": {"success": true,
"inputstring": ..., "pods": [...]}}``), keeping the plaintext of every subpod. ``mode="llm_api"``
asks Wolfram's LLM API instead and passes its text answer through.

The package checks neither the HTTP status nor anything but one exact Content-Type string, and
reports failures as bare ``AssertionError`` / ``ValueError``: this module turns each of them into
an error the model can read.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final, Literal
from xml.parsers.expat import ExpatError

import httpx
import httpx2
import wolframalpha

from agentic.errors import ConfigError, SearchError
from agentic.tools._http import (
    LoopClient,
    describe,
    excerpt,
    fit_json,
    key_from_env,
    query_argument,
)
from agentic.tools.base import ToolContext, ToolRetry, check_limits
from agentic.types import ToolDefinition

__all__ = ["WolframAlpha"]

FULL_RESULTS_URL: Final = "https://api.wolframalpha.com/v2/query"
LLM_API_URL: Final = "https://www.wolframalpha.com/api/v1/llm-api"
APP_ID_ENV: Final = "WOLFRAM_ALPHA_APP_ID"
_APP_ID_PAGE: Final = "https://developer.wolframalpha.com"
_SERVICE: Final = "Wolfram|Alpha"
_MIN_OUTPUT_CHARS: Final = 500
_GRACE: Final = 5.0
"""Seconds the HTTP clients and the executor wait beyond ``timeout``: the query's own timeout
fires first, with the clearer message."""
_PACKAGE_ERROR: Final = re.compile(r"Error (\S+): (.*)", re.DOTALL)
_APP_ID_CODES: Final = frozenset({"1", "2"})  # "Invalid appid", "Appid missing"


class WolframAlpha:
    """Wolfram|Alpha as Llama 3.1's built-in ``wolfram_alpha``.

    The app id comes from ``app_id`` or ``WOLFRAM_ALPHA_APP_ID``. ``mode="full"`` (default)
    queries the Full Results API at ``base_url``; ``mode="llm_api"`` queries the LLM API at
    ``llm_api_url`` (it needs an app id of type "LLM API"). ``timeout`` bounds each query.
    ``client`` is an httpx2 client for the LLM API mode (the package opens its own per query).
    """

    def __init__(
        self,
        app_id: str | None = None,
        *,
        mode: Literal["full", "llm_api"] = "full",
        units: Literal["metric", "imperial"] = "metric",
        timeout: float = 20.0,
        base_url: str = FULL_RESULTS_URL,
        llm_api_url: str = LLM_API_URL,
        max_output_chars: int = 6000,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        _check_options(mode, units, base_url, llm_api_url, max_output_chars)
        check_limits("WolframAlpha", timeout, max_output_chars)
        self.definition = ToolDefinition.builtin("wolfram_alpha")
        self.max_output_chars = max_output_chars
        self.mode = mode
        self._app_id = key_from_env(app_id, APP_ID_ENV, "Wolfram|Alpha app id", _APP_ID_PAGE)
        self._units = units
        self._query_timeout = timeout
        self._base_url = base_url
        self._llm_url = llm_api_url
        # the package reads ``url`` and ``timeout`` from the instance: that is its endpoint hook
        self._package = wolframalpha.Client(self._app_id, url=base_url, timeout=timeout + _GRACE)
        self._http = LoopClient(lambda: httpx2.AsyncClient(timeout=timeout + _GRACE), client)

    def __repr__(self) -> str:
        url = self._llm_url if self.mode == "llm_api" else self._base_url
        return f"WolframAlpha({url!r}, mode={self.mode!r})"

    @property
    def timeout(self) -> float:
        """The executor's limit: a little over the query timeout, which reports itself."""
        return self._query_timeout + _GRACE

    async def __aenter__(self) -> WolframAlpha:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the LLM API client the tool made (an injected client is left to its owner)."""
        await self._http.aclose()

    async def call(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> str:
        """Ask Wolfram|Alpha ``arguments["query"]``."""
        query = query_argument(self.definition.name, arguments)
        try:
            async with asyncio.timeout(self._query_timeout):
                if self.mode == "llm_api":
                    return await self._llm_api(query)
                result = await self._full_results(query)
        except TimeoutError:
            raise SearchError(
                f"{_SERVICE} timed out after {self._query_timeout:g}s; try a simpler query"
            ) from None
        return _answer(result, query, self.max_output_chars)

    async def _full_results(self, query: str) -> Any:
        """The package's parsed reply (a dict subclass); SearchError for every failure mode."""
        try:
            return await self._package.aquery(
                query, format="plaintext", reinterpret="true", units=self._units
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self._base_url, exc) from None
        except ValueError as exc:  # "Error 1: Invalid appid"; also malformed attribute values
            raise _package_error(exc) from None
        except (AssertionError, KeyError, ExpatError) as exc:
            # the Content-Type assert, a missing header or root element, a body that is not XML
            raise _unexpected_reply(exc) from None

    async def _llm_api(self, query: str) -> str:
        """The LLM API's text answer; ToolRetry when it did not understand, SearchError else."""
        params = {
            "input": query,
            "appid": self._app_id,
            "maxchars": str(self.max_output_chars),
            "units": self._units,
        }
        try:
            response = await self._http.get().get(self._llm_url, params=params)
        except httpx2.HTTPError as exc:
            raise _unreachable(self._llm_url, exc) from None
        return _llm_answer(response, query)


def _check_options(mode: str, units: str, base_url: str, llm_api_url: str, cap: int) -> None:
    if mode not in ("full", "llm_api"):
        raise ConfigError(f"WolframAlpha: mode must be 'full' or 'llm_api' (got {mode!r})")
    if units not in ("metric", "imperial"):
        raise ConfigError(f"WolframAlpha: units must be 'metric' or 'imperial' (got {units!r})")
    for name, url in (("base_url", base_url), ("llm_api_url", llm_api_url)):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"WolframAlpha: {name} must start with http(s):// (got {url!r})")
    if cap < _MIN_OUTPUT_CHARS:
        raise ConfigError(f"WolframAlpha: max_output_chars must be at least {_MIN_OUTPUT_CHARS}")


# -- Full Results ------------------------------------------------------------------------------


def _answer(result: Any, query: str, cap: int) -> str:
    """The reply cleaned the way Meta's prompt guide shows it, cut to ``cap`` characters."""
    if result.get("@success") is not True:
        raise ToolRetry(_not_understood(result, query))
    pods = _pods(result)
    if not pods:
        raise ToolRetry(
            f"{_SERVICE} understood {query!r} but has no text answer for it (only images); "
            "ask for a value or a fact instead"
        )
    inputstring = result.get("@inputstring") or query
    last = len(pods) - 1
    # keep the primary pod (the answer) longest; then the first (how the input was read)
    keep = last if pods[last].get("primary") else 0
    drop_order = [i for i in range(last, -1, -1) if i != keep]
    return fit_json(
        lambda items: {"queryresult": {"success": True, "inputstring": inputstring, "pods": items}},
        pods,
        cap,
        drop_order=drop_order,
    )


def _pods(result: Any) -> list[dict[str, Any]]:
    """Pods with their titles and the plaintext of every subpod, up to the first primary pod.

    Pods without any text (plots, images) are left out.
    """
    pods: list[dict[str, Any]] = []
    for pod in result.pods:
        subpods = [
            {"title": sub.get("@title") or "", "plaintext": text.strip()}
            for sub in pod.subpods
            if isinstance(text := sub.get("plaintext"), str) and text.strip()
        ]
        if not subpods:
            continue
        entry: dict[str, Any] = {"title": pod.get("@title") or ""}
        primary = pod.get("@primary") is True
        if primary:
            entry["primary"] = True
        entry["subpods"] = subpods
        pods.append(entry)
        if primary:
            break
    return pods


def _not_understood(result: Any, query: str) -> str:
    """What to tell the model when Wolfram|Alpha did not understand, with its suggestions."""
    message = f"{_SERVICE} could not interpret the query {query!r}."
    means = [_text(d) for d in _listed(result.get("didyoumeans"), "didyoumean")]
    if means := [m for m in means if m]:
        message += " Did you mean: " + ", ".join(repr(m) for m in means) + "?"
    tips = [_text(t, "@text") for t in _listed(result.get("tips"), "tip")]
    if tips := [t for t in tips if t]:
        message += " Tip: " + " ".join(tips)
    return message + " Rephrase it (short English keywords work best)."


def _listed(container: Any, key: str) -> Iterator[Any]:
    """The ``key`` children of an XML container element, whether one or many."""
    children = container.get(key) if isinstance(container, dict) else None
    yield from children if isinstance(children, list) else [children] if children else []


def _text(element: Any, attribute: str = "#text") -> str:
    """The text of an element that may be a bare string or a dict with attributes."""
    if isinstance(element, str):
        return element.strip()
    value = element.get(attribute) if isinstance(element, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _package_error(exc: ValueError) -> SearchError:
    """The package's ``ValueError("Error <code>: <message>")`` as a clear error."""
    match = _PACKAGE_ERROR.fullmatch(str(exc))
    if match is None:
        return _unexpected_reply(exc)
    code, message = match.groups()
    if code in _APP_ID_CODES:
        return SearchError(f"invalid {_SERVICE} app id ({message}); set {APP_ID_ENV}")
    return SearchError(f"{_SERVICE} error {code}: {message}")


def _unexpected_reply(exc: BaseException) -> SearchError:
    """A reply that is not Full Results XML, described with its status when it can be found."""
    response = _package_response(exc)
    if response is None:
        return SearchError(
            f"{_SERVICE} sent a reply that is not Full Results XML ({type(exc).__name__}; HTTP "
            "status unknown: the wolframalpha package does not report it)"
        )
    status = response.status_code
    ctype = response.headers.get("content-type", "no content type")
    what = "is unavailable" if status >= 500 else "sent an unexpected reply"
    return SearchError(
        f"{_SERVICE} {what}: HTTP {status} ({ctype}) instead of Full Results XML: "
        f"{excerpt(response.text)}",
        status_code=status,
    )


def _package_response(exc: BaseException) -> httpx.Response | None:
    """The HTTP response the wolframalpha package held when ``exc`` escaped it.

    The package never raises with the response, so its status would be lost; the traceback
    still has the frame that held it. None if the package keeps it some other way.
    """
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("wolframalpha"):
            for value in frame.f_locals.values():
                if isinstance(value, httpx.Response):
                    return value
        tb = tb.tb_next
    return None


# -- LLM API -----------------------------------------------------------------------------------


def _llm_answer(response: httpx2.Response, query: str) -> str:
    status = response.status_code
    text = response.text.strip()
    ctype = response.headers.get("content-type", "")
    if status == 200 and text and "html" not in ctype:
        return text
    if status == 200:
        what = f"an HTML page: {excerpt(text)}" if text else "an empty answer"
        raise SearchError(f"{_SERVICE} sent {what}", status_code=status)
    if status == 501:
        raise ToolRetry(
            f"{_SERVICE} could not interpret the query {query!r}; rephrase it. Its reply: {text}"
        )
    detail = f"HTTP {status}: {excerpt(text)}" if text else f"HTTP {status}"
    if status in (401, 403):
        message = f"invalid {_SERVICE} app id ({detail}); set {APP_ID_ENV} to an LLM API app id"
    elif status >= 500:
        message = f"{_SERVICE} is unavailable ({detail})"
    else:
        message = f"{_SERVICE} rejected the request ({detail})"
    raise SearchError(message, status_code=status)


def _unreachable(url: str, exc: Exception) -> SearchError:
    return SearchError(f"could not reach {_SERVICE} at {url} ({describe(exc)})")
