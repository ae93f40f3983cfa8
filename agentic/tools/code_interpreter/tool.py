"""CodeInterpreter: Llama's built-in ``code_interpreter`` tool, run in the bubblewrap sandbox.

The model's raw Python (after ``<|python_tag|>``) runs in the session's own persistent
worker, so variables survive between calls. The turn's documents are copied into ``/work``
first; figures and files written under ``/work/outputs`` come back as artifacts. There is no
unsandboxed fallback: if the sandbox cannot start, constructing the tool fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any, Final

from agentic.errors import ToolArgumentsError
from agentic.tools.base import ToolContext, ToolResult
from agentic.tools.code_interpreter.config import SandboxConfig
from agentic.tools.code_interpreter.pool import CellRun, WorkerHandle, WorkerInfo, WorkerPool
from agentic.tools.code_interpreter.protocol import ExecReply, FileEntry
from agentic.tools.code_interpreter.result import (
    CellResult,
    artifact_mime,
    document_filename,
    human_size,
    valid_artifact_name,
)
from agentic.tools.code_interpreter.sandbox import plan_for
from agentic.types import Artifact, Document, ToolDefinition

__all__ = ["CodeInterpreter"]

CHUNK_BYTES: Final = 1024 * 1024
"""Bytes per ``put``/``get`` frame (1.4 MiB as base64, well under the frame cap)."""
_IO_TIMEOUT: Final = 30.0
_NOTES_CHARS: Final = 8192


class CodeInterpreter:
    """Runs Python for the model in a hardened sandbox, one persistent worker per session.

    ``CodeInterpreter()`` checks at once that the sandbox works here (bubblewrap, user
    namespaces, the seccomp filter: probed once per process) and raises ConfigError with the
    fix otherwise. It starts no worker: :meth:`start` (called when an agent opens) warms the
    pool, or the first call does.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._pool = WorkerPool(self.config, plan_for(self.config))

    def __repr__(self) -> str:
        return f"CodeInterpreter(pool_size={self.config.pool_size})"

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition.builtin("code_interpreter")

    @property
    def timeout(self) -> float:
        """Above the sandbox's own hard deadline, so the executor never cuts a call first."""
        cfg = self.config
        return cfg.hard_timeout + cfg.start_timeout + 2 * _IO_TIMEOUT

    @property
    def max_output_chars(self) -> int:
        """The executor's cap: the streams are already cut to ``config.max_output_chars``."""
        return self.config.max_output_chars + _NOTES_CHARS

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start warming the pool in the background (the agent calls this when it opens)."""
        await self._pool.start()

    async def close_session(self, session_id: str) -> None:
        """Kill the session's worker; its state is gone."""
        await self._pool.close_session(session_id)

    async def aclose(self) -> None:
        """Kill every worker and stop the background tasks."""
        await self._pool.aclose()

    def workers(self) -> list[WorkerInfo]:
        """The live workers (for monitoring and tests)."""
        return self._pool.workers()

    # --- calls ------------------------------------------------------------------------------

    async def call(self, arguments: dict[str, Any], ctx: ToolContext[Any]) -> ToolResult:
        """Run ``arguments["code"]`` in the session's worker; the result text and artifacts."""
        code = arguments.get("code")
        if not isinstance(code, str):
            raise ToolArgumentsError("code_interpreter", "code: a string of Python is required")
        sid = ctx.session_id
        async with self._pool.session(sid):
            try:
                return await self._run(sid, code, ctx.documents)
            except asyncio.CancelledError:
                self._pool.discard_now(sid, "the previous call was cancelled while running")
                raise

    async def _run(self, sid: str, code: str, documents: tuple[Document, ...]) -> ToolResult:
        handle, reset = await self._pool.worker_for(sid)
        not_loaded = await self._put_documents(handle, documents)
        run = await self._execute(handle, code)
        if not run.started:  # the worker was gone before the cell ran: run it on a fresh one
            await self._pool.discard(sid)
            handle, _ = await self._pool.worker_for(sid)
            reset = run.lost
            not_loaded = await self._put_documents(handle, documents)
            run = await self._execute(handle, code)
        if run.reply is None:
            await self._pool.discard(sid)
            result = CellResult(success=False, stderr=_lost_text(run), reset=True)
            result.not_loaded = not_loaded
            return ToolResult(content=result.render(self.config.max_output_chars))
        result = CellResult(
            success=run.reply.status == "ok",
            stdout=run.reply.stdout,
            stderr=run.reply.stderr,
            not_loaded=not_loaded,
            reset=bool(reset),
            reset_reason=reset,
        )
        artifacts = await self._collect(handle, run.reply, result)
        return ToolResult(
            content=result.render(self.config.max_output_chars), artifacts=tuple(artifacts)
        )

    async def _execute(self, handle: WorkerHandle, code: str) -> CellRun:
        cfg = self.config
        return await handle.run(code, cfg.timeout, cfg.kill_grace, cfg.max_output_chars)

    # --- files in and out -------------------------------------------------------------------

    async def _put_documents(
        self, handle: WorkerHandle, documents: tuple[Document, ...]
    ) -> list[str]:
        """Copy new or changed documents into /work; the ones that could not be copied."""
        problems: list[str] = []
        used: set[str] = set()
        for index, doc in enumerate(documents):
            name = _unique(document_filename(doc, index), used)
            data = doc.content.encode("utf-8")
            digest = hashlib.sha256(data).hexdigest()
            if handle.documents.get(name) == digest:
                continue
            if len(data) > self.config.max_document_bytes:
                limit = human_size(self.config.max_document_bytes)
                problems.append(f"{name} ({human_size(len(data))}, over the {limit} cap)")
                continue
            error = await self._put(handle, name, data)
            if error:
                problems.append(f"{name} ({error})")
            else:
                handle.documents[name] = digest
        return problems

    async def _put(self, handle: WorkerHandle, name: str, data: bytes) -> str:
        for offset in range(0, max(len(data), 1), CHUNK_BYTES):
            chunk = base64.b64encode(data[offset : offset + CHUNK_BYTES]).decode("ascii")
            message = {"op": "put", "name": name, "offset": offset, "data_b64": chunk}
            reply = await handle.request(message, _IO_TIMEOUT)
            if reply.status != "ok":
                return reply.message[:200] or "refused"
        return ""

    async def _collect(
        self, handle: WorkerHandle, reply: ExecReply, result: CellResult
    ) -> list[Artifact]:
        """Fetch the cell's figures and changed output files, within the caps."""
        cfg = self.config
        artifacts: list[Artifact] = []
        over_count = 0
        for entry in [*reply.figures, *reply.files]:
            reason = _refusal(entry, cfg.max_artifact_bytes)
            if reason:
                result.skipped.append(f"{_shown(entry.name)} ({reason})")
            elif len(artifacts) >= cfg.max_artifacts:
                over_count += 1
            else:
                data, problem = await self._fetch(handle, entry)
                if problem:
                    result.skipped.append(f"{_shown(entry.name)} ({problem})")
                else:
                    artifacts.append(
                        Artifact(name=entry.name, mime_type=artifact_mime(entry.name), data=data)
                    )
        if over_count:
            result.skipped.append(f"{over_count} more files (at most {cfg.max_artifacts} per call)")
        result.files = [a.name for a in artifacts]
        return artifacts

    async def _fetch(self, handle: WorkerHandle, entry: FileEntry) -> tuple[bytes, str]:
        """The bytes of one figure or file, in chunks, never more than its listed size."""
        data = bytearray()
        while len(data) < entry.size:
            want = min(CHUNK_BYTES, entry.size - len(data))
            message = {"op": "get", "name": entry.name, "offset": len(data), "length": want}
            reply = await handle.request(message, _IO_TIMEOUT)
            if reply.status != "ok":
                return b"", reply.message[:200] or "could not be read"
            chunk = _decoded(reply.data_b64, want)
            if not chunk:
                return b"", "unreadable reply"
            data += chunk
        return bytes(data), ""


def _decoded(data_b64: str, most: int) -> bytes:
    """A chunk's bytes; empty if the base64 is broken or longer than asked for."""
    try:
        chunk = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        return b""
    return chunk if len(chunk) <= most else b""


def _refusal(entry: FileEntry, cap: int) -> str:
    if entry.skip:
        return entry.skip
    if not valid_artifact_name(entry.name):
        return "not a plain file name under outputs/"
    if entry.size > cap:
        return f"{human_size(entry.size)}, over the {human_size(cap)} cap"
    return ""


def _lost_text(run: CellRun) -> str:
    kind = "TimeoutError" if run.timed_out else "Error"
    return f"{kind}: {run.lost}; the cell's output is lost.\n"


def _shown(name: str) -> str:
    """A file name as listed for the model: as is if plain, quoted if odd."""
    return name if name.isprintable() and len(name) <= 120 else repr(name[:120])


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``name`` with a counter before the extension if already taken."""
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".")
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}.{ext}" if dot and stem else f"{name}_{n}"
    used.add(candidate)
    return candidate
