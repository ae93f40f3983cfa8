"""Record a backend's raw streams to a file and replay them: tests and demos without a model.

Each recording is keyed by a hash of the request as the model sees it (model, messages, tools,
tool choice and format, sampling, response format, raw prompt, date). Call ids are left out of
the key: they are fresh uuids on every run and never reach the prompt, so a multi-step agent run
replays step after step. ``cache_key`` is left out too: it is a session handle, not content.
Fields at their default value are left out, so a field added to the types later does not void
existing recordings.

The file is JSON lines, one recording per line, rewritten atomically after each recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from agentic.errors import ConfigError, InferenceError
from agentic.inference.base import (
    Completion,
    InferenceBackend,
    InferenceRequest,
    TextDelta,
    Timings,
)
from agentic.types import AssistantMessage, Message, StopReason, ToolMessage, Usage

__all__ = ["RecordReplayBackend", "ReplayMode", "request_key"]

ReplayMode = Literal["record", "replay", "auto"]
"""``record``: always call the wrapped backend and (re)record; ``replay``: only replay, a request
not recorded is an error; ``auto``: replay what is recorded, record the rest."""

_KEY_VERSION = 1


def _message_json(message: Message) -> dict[str, Any]:
    """A message as data, without the call ids that change on every run."""
    data = message.model_dump(mode="json", exclude_defaults=True)
    if isinstance(message, AssistantMessage):
        for call in data.get("tool_calls", []):
            call.pop("call_id", None)
    elif isinstance(message, ToolMessage):
        data.pop("call_id", None)
    return data


def _normalized(request: InferenceRequest) -> dict[str, Any]:
    """The parts of a request that decide what the model generates, as plain JSON data."""
    try:
        response_format = json.loads(json.dumps(request.response_format))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"response_format is not JSON data, so it cannot be keyed: {exc}"
        ) from exc
    fmt = request.tool_prompt_format
    images = {"images": [i.url for i in request.images]} if request.images else {}
    return {
        **images,
        "v": _KEY_VERSION,
        "model": request.model,
        "messages": [_message_json(m) for m in request.messages],
        "tools": [t.model_dump(mode="json", exclude_defaults=True) for t in request.tools],
        "tool_choice": request.tool_choice,
        "tool_prompt_format": fmt.value if fmt is not None else None,
        "sampling": request.sampling.model_dump(mode="json", exclude_defaults=True),
        "response_format": response_format,
        "prompt": request.prompt,
        "today": request.today.isoformat() if request.today is not None else None,
    }


def _digest(normalized: dict[str, Any]) -> str:
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def request_key(request: InferenceRequest) -> str:
    """The recording key of a request: sha256 of its normalized JSON, in hex."""
    return _digest(_normalized(request))


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _RecordedCompletion(_Stored):
    text: str
    stop_reason: StopReason
    usage: Usage


class _Recording(_Stored):
    key: str
    request: dict[str, Any]
    deltas: list[str]
    completion: _RecordedCompletion


def _parse_line(path: Path, number: int, line: str) -> _Recording:
    try:
        recording = _Recording.model_validate_json(line)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"]
        raise ConfigError(
            f"{path}:{number}: not a recording ({reason}); fix the line or delete the file "
            "and record again"
        ) from exc
    if _digest(recording.request) != recording.key:
        raise ConfigError(
            f"{path}:{number}: the key does not match the recorded request (was the request "
            "edited by hand?); record it again"
        )
    return recording


def _load(path: Path) -> dict[str, _Recording]:
    """The recordings in a file, by key (a later line wins over an earlier one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recordings from {path}: {exc}") from exc
    recordings: dict[str, _Recording] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            recording = _parse_line(path, number, line)
            recordings[recording.key] = recording
    return recordings


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _differences(wanted: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """The top-level fields (and first message) where two normalized requests differ."""
    out = []
    for name in sorted(wanted.keys() | recorded.keys()):
        mine, theirs = wanted.get(name), recorded.get(name)
        if mine == theirs:
            continue
        if name == "messages" and isinstance(mine, list) and isinstance(theirs, list):
            pairs = enumerate(zip(mine, theirs, strict=False))
            index = next((i for i, (a, b) in pairs if a != b), min(len(mine), len(theirs)))
            out.append(f"messages[{index}]")
        else:
            out.append(name)
    return out


class RecordReplayBackend:
    """Wrap any :class:`InferenceBackend`: record its raw streams to ``path``, or replay them.

    Replay yields the recorded text deltas and a :class:`Completion` with the recorded text,
    stop reason and usage; timings are measured anew. In ``replay`` mode ``inner`` may be None.
    A request with no recording in ``replay`` mode raises :class:`ConfigError`: the fix is to
    record it (a stale fixture, not a backend failure, so agent loops never treat it as one).
    The file is read when the backend is built, so a missing or corrupt file fails at once.
    """

    def __init__(
        self, inner: InferenceBackend | None, path: str | Path, mode: ReplayMode = "auto"
    ) -> None:
        if mode not in get_args(ReplayMode):
            raise ConfigError(f"mode must be 'record', 'replay' or 'auto', not {mode!r}")
        if inner is None and mode != "replay":
            raise ConfigError(f"mode {mode!r} records, so it needs a backend to wrap (inner=...)")
        self._inner = inner
        self._path = Path(path)
        self._mode: ReplayMode = mode
        if mode == "replay" and not self._path.exists():
            raise ConfigError(
                f"no recordings file at {self._path}; run once with mode='record' or 'auto' "
                "and a real backend to create it"
            )
        self._recordings = _load(self._path)
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def mode(self) -> ReplayMode:
        return self._mode

    def has_recording(self, request: InferenceRequest) -> bool:
        """Whether ``request`` would be replayed rather than sent to the wrapped backend."""
        return request_key(request) in self._recordings

    async def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]:
        """Replay the recording of ``request``, or run and record it (see :data:`ReplayMode`)."""
        normalized = _normalized(request)
        key = _digest(normalized)
        recording = self._recordings.get(key)
        if recording is not None and self._mode != "record":
            items = _replay(recording)
        elif self._mode == "replay" or self._inner is None:
            raise self._missing(key, normalized)
        else:
            items = self._record(self._inner, request, key, normalized)
        async with contextlib.aclosing(items):  # closing this stream stops the wrapped one now
            async for item in items:
                yield item

    async def _record(
        self,
        inner: InferenceBackend,
        request: InferenceRequest,
        key: str,
        normalized: dict[str, Any],
    ) -> AsyncGenerator[TextDelta | Completion, None]:
        """Pass the wrapped stream through, saving it once its :class:`Completion` arrives."""
        deltas: list[str] = []
        completion: Completion | None = None
        items = inner.stream(request)
        try:
            async for item in items:
                if isinstance(item, TextDelta):
                    deltas.append(item.text)
                else:
                    completion = item
                    done = _RecordedCompletion(
                        text=item.text, stop_reason=item.stop_reason, usage=item.usage
                    )
                    await self._save(
                        _Recording(key=key, request=normalized, deltas=deltas, completion=done)
                    )
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        if completion is None:
            raise InferenceError(f"{type(inner).__name__}.stream ended without a Completion")

    async def _save(self, recording: _Recording) -> None:
        async with self._lock:
            self._recordings[recording.key] = recording
            lines = [r.model_dump_json() + "\n" for r in self._recordings.values()]
            try:
                await asyncio.to_thread(_write_atomically, self._path, "".join(lines))
            except OSError as exc:
                raise ConfigError(f"cannot write recordings to {self._path}: {exc}") from exc

    def _missing(self, key: str, normalized: dict[str, Any]) -> ConfigError:
        """The error for a request never recorded, saying how it differs from the nearest one."""
        if not self._recordings:
            nearest = "The file has no recordings."
        else:
            diffs = min(
                (_differences(normalized, r.request) for r in self._recordings.values()), key=len
            )
            nearest = f"The closest recording differs in: {', '.join(diffs)}."
        return ConfigError(
            f"no recording in {self._path} for this request (key {key}, model "
            f"{normalized['model']!r}). {nearest} Record it by running once with mode='record' "
            "or 'auto' and a real backend."
        )


async def _replay(recording: _Recording) -> AsyncGenerator[TextDelta | Completion, None]:
    """The recorded deltas, then the completion, timed as they are replayed."""
    started = time.perf_counter()
    first: float | None = None
    for text in recording.deltas:
        await asyncio.sleep(0)  # let other tasks run, as a real stream would
        first = first if first is not None else time.perf_counter() - started
        yield TextDelta(text)
    done = recording.completion
    yield Completion(
        text=done.text,
        stop_reason=done.stop_reason,
        usage=done.usage,
        timings=Timings(time_to_first_token=first, total=time.perf_counter() - started),
    )
