"""Shared pieces of the web-API tools (Brave Search, Wolfram|Alpha).

Keys from the environment, the one ``query`` argument, one httpx2 client per event loop, text
cleaning, and JSON cut to a size cap by dropping whole entries, never mid-way.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import httpx2
from pydantic import BaseModel, ConfigDict, ValidationError

from agentic.errors import ConfigError, ToolArgumentsError
from agentic.tools.base import validation_details

__all__ = [
    "LoopClient",
    "clean_text",
    "describe",
    "excerpt",
    "fit_json",
    "human_seconds",
    "key_from_env",
    "query_argument",
]

_TAG: Final = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_SPACE: Final = re.compile(r"\s+")
_MIN_CUT: Final = 24
"""Strings this short are not shortened further when JSON must shrink to fit its cap."""


def key_from_env(value: str | None, env_var: str, what: str, where: str) -> str:
    """``value``, else the environment variable; a clear ConfigError when neither is set."""
    key = (value if value is not None else os.environ.get(env_var, "")).strip()
    if not key:
        raise ConfigError(
            f"no {what}: set the {env_var} environment variable (get one at {where}) "
            "or pass it to the constructor"
        )
    return key


class _QueryArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str


def query_argument(
    tool_name: str,
    arguments: Mapping[str, Any],
    *,
    max_chars: int | None = None,
    max_words: int | None = None,
) -> str:
    """The call's ``query``, stripped; ToolArgumentsError if missing, empty or too long."""
    try:
        query = _QueryArguments.model_validate(arguments).query.strip()
    except ValidationError as exc:
        raise ToolArgumentsError(tool_name, validation_details(exc)) from None
    if not query:
        raise ToolArgumentsError(tool_name, "query: must not be empty")
    if max_chars is not None and len(query) > max_chars:
        raise ToolArgumentsError(
            tool_name, f"query: at most {max_chars} characters (got {len(query)}); shorten it"
        )
    words = len(query.split())
    if max_words is not None and words > max_words:
        raise ToolArgumentsError(
            tool_name, f"query: at most {max_words} words (got {words}); shorten it"
        )
    return query


class LoopClient:
    """One ``httpx2.AsyncClient`` per event loop, created on first use.

    Pooled connections belong to the loop that opened them, so a tool used from a new loop
    (each ``asyncio.run``, each pytest-asyncio test) gets a new client. An injected client is
    always used as is and never closed here: its owner closes it.
    """

    def __init__(
        self, make: Callable[[], httpx2.AsyncClient], client: httpx2.AsyncClient | None = None
    ) -> None:
        self._make = make
        self._injected = client
        self._client: httpx2.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx2.AsyncClient:
        """The client for the running loop."""
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # a client left on another loop cannot be closed from this one; its sockets go with it
            self._client, self._loop = self._make(), loop
        return self._client

    async def aclose(self) -> None:
        """Close the client this object made, if it was made on the running loop."""
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


def clean_text(text: str) -> str:
    """HTML tags removed, entities unescaped, runs of whitespace collapsed."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", text))).strip()


def describe(exc: BaseException) -> str:
    """An exception as ``Type: message`` (or just the type when it has no message)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def excerpt(text: str, limit: int = 200) -> str:
    """A short, single-line, tag-free excerpt of a reply body (an HTML error page, say)."""
    text = clean_text(_TAG.sub(" ", text))  # tags as spaces: block elements separate words
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_seconds(seconds: float) -> str:
    """A duration as a person would say it: ``45 s``, ``12 min``, ``3 h``, ``16 days``."""
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _size(value: Any) -> int:
    """Characters the model will see: the executor escapes each ``<|`` to ``<\\|``."""
    text = _dump(value)
    return len(text) + text.count("<|")


def fit_json(
    envelope: Callable[[list[dict[str, Any]]], Any],
    items: Sequence[Mapping[str, Any]],
    cap: int,
    *,
    extras: Sequence[str] = (),
    drop_order: Sequence[int] | None = None,
) -> str:
    """Compact JSON of ``envelope(items)`` in at most ``cap`` characters, still valid JSON.

    To fit, it drops the ``extras`` keys from the last entries first, then whole entries in
    ``drop_order`` (default: from the last to the second), then halves the longest strings of
    what is left. ``envelope`` must place the list exactly once in what it returns. When even
    that cannot fit (a cap smaller than the envelope), the JSON comes back over the cap and the
    executor's visible cut applies.
    """
    kept = [dict(item) for item in items]
    sizes = [_size(item) for item in kept]
    alive = [True] * len(kept)
    base = _size(envelope([]))

    def total() -> int:
        present = [s for s, on in zip(sizes, alive, strict=True) if on]
        return base + sum(present) + max(len(present) - 1, 0)

    for i in reversed(range(len(kept))):
        if total() <= cap:
            break
        if any(key in kept[i] for key in extras):
            kept[i] = {k: v for k, v in kept[i].items() if k not in extras}
            sizes[i] = _size(kept[i])
    order = drop_order if drop_order is not None else range(len(kept) - 1, 0, -1)
    for i in order:
        if total() <= cap or sum(alive) <= 1:
            break
        alive[i] = False
    left = [item for item, on in zip(kept, alive, strict=True) if on]
    text = _dump(envelope(left))
    while _size(envelope(left)) > cap and _halve_longest(left):
        text = _dump(envelope(left))
    return text


def _halve_longest(value: Any) -> bool:
    """Cut the longest string inside ``value`` to half its length; False if none is long."""
    best: tuple[int, Any, Any] | None = None
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        slots = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in slots:
            if isinstance(item, str) and len(item) > _MIN_CUT:
                if best is None or len(item) > best[0]:
                    best = (len(item), node, key)
            elif isinstance(item, dict | list):
                stack.append(item)
    if best is None:
        return False
    length, node, key = best
    node[key] = node[key][: length // 2] + "…"
    return True
