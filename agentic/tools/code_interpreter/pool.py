"""Workers on the host side: one persistent sandbox per session, plus a pre-warmed pool.

A session's worker keeps its variables between calls and is never shared. New sessions take a
pooled worker that already imported numpy, pandas and matplotlib (refilled in the background),
or start a bare one when the pool is empty. Workers stop with their session, after
``idle_ttl`` without a call, after ``max_lifetime``, and when a cell overruns its hard deadline;
the session's next result then says its state was reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from agentic.errors import ToolError
from agentic.tools.code_interpreter.config import SandboxConfig
from agentic.tools.code_interpreter.protocol import (
    Channel,
    ExecReply,
    GetReply,
    PingReply,
    ProtocolError,
    WorkerGone,
    new_request_id,
    validate,
)
from agentic.tools.code_interpreter.sandbox import (
    UIDS,
    LaunchPlan,
    kill_tree,
    spawner,
    start_worker,
)

__all__ = ["CellRun", "WorkerHandle", "WorkerInfo", "WorkerPool"]

_logger = logging.getLogger("agentic.tools.code_interpreter")
_MAX_PENDING_RESETS: Final = 10_000
_REFILL_BACKOFF: Final = 5.0
_STDERR_EXCERPT: Final = 2000
_EXIT_WAIT: Final = 5.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, for monitoring: its session (None while pooled), host ids and ages."""

    session_id: str | None
    pid: int
    """The launcher's pid, which is also the process group of the whole sandbox."""
    uid: int | None
    """The dedicated host uid (None when the host does not run as root)."""
    age: float
    idle: float
    calls: int
    preloaded: bool
    dropped_frames: int
    """Frames from the sandbox dropped as forged, stray or oversized."""


@dataclass(slots=True)
class CellRun:
    """What happened to one cell: the worker's reply, or why there is none."""

    reply: ExecReply | None = None
    started: bool = False
    """The worker acknowledged the cell (False: it never ran, so it may run elsewhere)."""
    lost: str = ""
    """Why the worker is gone (hard timeout, died mid-cell); empty if it is fine."""
    timed_out: bool = False
    """The worker was killed at the hard deadline."""


@dataclass(eq=False)
class WorkerHandle:
    """One sandboxed worker process and its channel."""

    process: subprocess.Popen[bytes]
    channel: Channel
    uid: int | None
    preloaded: bool
    cpu_budget: int = 0
    """The worker's RLIMIT_CPU, to explain a death by SIGXCPU."""
    started_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    calls: int = 0
    documents: dict[str, str] = field(default_factory=dict)
    """Documents already copied in: file name -> content digest."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def info(self, session_id: str | None) -> WorkerInfo:
        now = time.monotonic()
        return WorkerInfo(
            session_id=session_id,
            pid=self.pid,
            uid=self.uid,
            age=now - self.started_at,
            idle=now - self.last_used,
            calls=self.calls,
            preloaded=self.preloaded,
            dropped_frames=self.channel.dropped,
        )

    def terminate(self) -> None:
        """SIGKILL the sandbox's process group now (synchronous, safe under cancellation)."""
        if self.alive:
            kill_tree(self.pid)
        self.channel.close()

    async def stop(self) -> None:
        """Kill the sandbox, wait for it to exit, then give its uid back."""
        self.terminate()
        try:
            await self.wait_exit(_EXIT_WAIT)
        finally:
            if self.process.stderr is not None:
                self.process.stderr.close()
            UIDS.release(self.uid)
            self.uid = None

    async def wait_exit(self, within: float) -> int | None:
        """The launcher's exit status, polled for up to ``within`` seconds (None: still up)."""
        deadline = time.monotonic() + within
        delay = 0.001
        while (code := self.process.poll()) is None and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    async def run(self, code: str, limit: float, grace: float, max_output: int) -> CellRun:
        """Run one cell; past ``limit + grace`` seconds the whole sandbox is killed."""
        outcome = CellRun()
        request_id = new_request_id()
        message: dict[str, Any] = {"id": request_id, "op": "exec", "code": code}
        message |= {"timeout": limit, "max_output": max_output}
        self.calls += 1
        try:
            async with asyncio.timeout(limit + grace):
                await self.channel.send(message)
                await self.channel.receive(request_id)  # the acknowledgement
                outcome.started = True
                outcome.reply = validate(await self.channel.receive(request_id), ExecReply)
        except TimeoutError:
            outcome.started = outcome.timed_out = True
            outcome.lost = (
                f"the cell did not stop within its {limit:g} s limit, so the interpreter was killed"
            )
        except WorkerGone:
            outcome.lost = await self.death_reason()
        except ProtocolError as exc:
            outcome.started = True
            outcome.lost = f"the interpreter sent a malformed reply ({exc})"
        finally:
            self.last_used = time.monotonic()
        return outcome

    async def request(self, message: dict[str, Any], limit: float) -> GetReply:
        """A ``put`` or ``get`` round trip (ToolError if the worker does not answer)."""
        try:
            async with asyncio.timeout(limit):
                return await self.channel.request(message, GetReply)
        except (TimeoutError, WorkerGone, ProtocolError) as exc:
            raise ToolError(f"the interpreter stopped answering ({type(exc).__name__})") from exc

    async def death_reason(self) -> str:
        """Why the worker is gone, from its exit status."""
        code = await self.wait_exit(_EXIT_WAIT)
        if code is None:
            return "the interpreter closed its channel"
        if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
            return "the interpreter was killed by SIGKILL"
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return f"the interpreter used up its CPU time budget ({self.cpu_budget} s)"
        return f"the interpreter exited (status {code})"

    def stderr_excerpt(self) -> str:
        """What bubblewrap or Python printed before the worker exited (launch failures)."""
        stream = self.process.stderr
        if stream is None or stream.closed:
            return ""
        os.set_blocking(stream.fileno(), False)
        try:
            data = os.read(stream.fileno(), _STDERR_EXCERPT)
        except OSError:  # nothing written (yet)
            return ""
        return data.decode(errors="replace").strip()


class _Launch:
    """One worker launch on the spawner thread, handed over to the event loop exactly once.

    If the waiting caller is cancelled, whichever side comes second (the thread finishing the
    launch, or the loop giving up) kills the new sandbox; no event loop needs to be alive for
    that, so a launch abandoned when its loop closes leaves nothing behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._started: tuple[subprocess.Popen[bytes], socket.socket] | None = None

    def run(self, *args: Any) -> tuple[subprocess.Popen[bytes], socket.socket] | None:
        started = start_worker(*args)
        with self._lock:
            if not self._abandoned:
                self._started = started
                return started
        _kill_started(started)
        return None

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            started, self._started = self._started, None
        if started is not None:
            _kill_started(started)


def _kill_started(started: tuple[subprocess.Popen[bytes], socket.socket]) -> None:
    """Kill a worker nobody will use (its launch was abandoned)."""
    process, sock = started
    sock.close()
    kill_tree(process.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(1.0)  # SIGKILLed: gone at once
    if process.stderr is not None:
        process.stderr.close()


class WorkerPool:
    """Per-session workers, a warm pool, and the background tasks that keep both tidy."""

    def __init__(self, config: SandboxConfig, plan: LaunchPlan) -> None:
        self.config = config
        self.plan = plan
        self._sessions: OrderedDict[str, WorkerHandle] = OrderedDict()
        self._warm: deque[WorkerHandle] = deque()
        self._starting = 0
        self._resets: OrderedDict[str, str] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._warned_missing = False

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start warming the pool and reaping idle workers on the running loop.

        Workers do not belong to a loop; the background tasks do, so a new loop (a script
        calling ``asyncio.run`` again) gets new tasks and keeps the sessions' workers.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._tasks:
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._tasks = [
            loop.create_task(self._refill(), name="code-interpreter-refill"),
            loop.create_task(self._reap(), name="code-interpreter-reaper"),
        ]

    async def aclose(self) -> None:
        """Stop the background tasks and every worker."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks and self._loop is asyncio.get_running_loop():
            await asyncio.gather(*tasks, return_exceptions=True)
        handles = [*self._sessions.values(), *self._warm]
        self._sessions.clear()
        self._warm.clear()
        self._resets.clear()
        await asyncio.gather(*(h.stop() for h in handles), return_exceptions=True)

    # --- sessions ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's lock: its calls run one at a time."""
        lock = self._locks.get(session_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[session_id] = lock
        async with lock:
            yield

    async def worker_for(self, session_id: str) -> tuple[WorkerHandle, str]:
        """The session's worker (new if needed) and why its state was reset ("" if it was not)."""
        if self._loop is not asyncio.get_running_loop() or not self._tasks:
            await self.start()
        handle = self._sessions.get(session_id)
        if handle is None:
            handle = await self._take()
            self._sessions[session_id] = handle
        self._sessions.move_to_end(session_id)
        return handle, self._resets.pop(session_id, "")

    async def discard(self, session_id: str) -> None:
        """Stop the session's worker (its result says why, so no note is kept)."""
        handle = self._sessions.pop(session_id, None)
        if handle is not None:
            self._poke()
            await handle.stop()

    def discard_now(self, session_id: str, reason: str) -> None:
        """Kill the session's worker without awaiting (for a cancelled call)."""
        handle = self._sessions.pop(session_id, None)
        self._note_reset(session_id, reason)
        if handle is not None:
            self._poke()
            handle.terminate()
            task = asyncio.get_running_loop().create_task(handle.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close_session(self, session_id: str) -> None:
        """The session ended: stop its worker and forget it."""
        self._resets.pop(session_id, None)
        handle = self._sessions.pop(session_id, None)
        if handle is not None:
            self._poke()
            await handle.stop()

    def workers(self) -> list[WorkerInfo]:
        """Every live worker: sessions' first, then the pooled ones."""
        infos = [h.info(sid) for sid, h in self._sessions.items()]
        return infos + [h.info(None) for h in self._warm]

    def _forget(self, session_id: str, reason: str) -> None:
        self._sessions.pop(session_id, None)
        self._note_reset(session_id, reason)
        self._poke()

    def _poke(self) -> None:
        """Wake the refill: a worker was taken or room was freed."""
        if self._wake is not None:
            self._wake.set()

    def _note_reset(self, session_id: str, reason: str) -> None:
        self._resets[session_id] = reason
        self._resets.move_to_end(session_id)
        while len(self._resets) > _MAX_PENDING_RESETS:
            self._resets.popitem(last=False)

    # --- getting workers --------------------------------------------------------------------

    def _live(self) -> int:
        return len(self._sessions) + len(self._warm) + self._starting

    async def _take(self) -> WorkerHandle:
        """A pooled worker if one is ready, else a fresh bare one (evicting if full)."""
        while self._warm:
            handle = self._warm.popleft()
            self._poke()
            if handle.alive:
                return handle
            await handle.stop()
        if self._live() >= self.config.max_workers:
            await self._evict()
        return await self.spawn(preload=False)

    async def _evict(self) -> None:
        """Stop the least recently used idle session worker to make room."""
        for sid, handle in self._sessions.items():
            lock = self._locks.get(sid)
            if lock is None or not lock.locked():
                self._forget(sid, "the interpreter was stopped to make room for other sessions")
                await handle.stop()
                return
        raise ToolError(
            f"all {self.config.max_workers} code-interpreter sandboxes are busy; try again "
            "shortly (or raise SandboxConfig.max_workers)"
        )

    async def spawn(self, *, preload: bool) -> WorkerHandle:
        """Start one worker and wait until it answers (with ``preload`` imported)."""
        uid = UIDS.acquire(self.config.uid_range) if self.plan.as_root else None
        modules = self.config.preload if preload else ()
        self._starting += 1
        try:
            handle = await self._launch(uid, modules, preload)
        except BaseException:
            self._starting -= 1
            UIDS.release(uid)
            raise
        try:
            async with asyncio.timeout(self.config.start_timeout):
                ping = await handle.channel.request({"op": "ping"}, PingReply)
        except BaseException as exc:
            detail = await self._start_failure(handle, exc)
            await handle.stop()
            if isinstance(exc, Exception):
                raise ToolError(f"the sandbox did not start: {detail}") from exc
            raise
        finally:
            self._starting -= 1
        if ping.missing and not self._warned_missing:
            self._warned_missing = True
            _logger.warning("the sandbox's python cannot import %s", ", ".join(ping.missing))
        return handle

    async def _start_failure(self, handle: WorkerHandle, exc: BaseException) -> str:
        """Why a new worker did not answer its first ping, with what it printed, if anything."""
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.config.start_timeout:g} s"
        if not isinstance(exc, WorkerGone):
            return repr(exc)
        reason = await handle.death_reason()
        excerpt = handle.stderr_excerpt()
        return f"{reason}: {excerpt}" if excerpt else reason

    async def _launch(
        self, uid: int | None, modules: tuple[str, ...], preload: bool
    ) -> WorkerHandle:
        """Fork the sandbox on the spawner thread; if the caller is cancelled meanwhile, kill
        what started."""
        launch = _Launch()
        args = (self.config, self.plan, uid, modules)
        try:
            started = await asyncio.get_running_loop().run_in_executor(spawner(), launch.run, *args)
        except asyncio.CancelledError:
            launch.abandon()
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            raise ToolError(f"the sandbox did not start: {exc}") from exc
        assert started is not None  # only an abandoned launch returns None
        process, sock = started
        return WorkerHandle(process, Channel(sock), uid, preload, self.config.cpu_seconds)

    # --- background tasks -------------------------------------------------------------------

    async def _refill(self) -> None:
        """Keep ``pool_size`` warm workers ready."""
        assert self._wake is not None
        while True:
            while (
                len(self._warm) < self.config.pool_size and self._live() < self.config.max_workers
            ):
                try:
                    self._warm.append(await self.spawn(preload=True))
                except ToolError as exc:
                    _logger.warning("could not warm a code-interpreter worker: %s", exc)
                    await asyncio.sleep(_REFILL_BACKOFF)
            self._wake.clear()
            await self._wake.wait()

    async def _reap(self) -> None:
        """Stop idle, old and dead workers."""
        cfg = self.config
        interval = max(0.05, min(30.0, cfg.idle_ttl / 4, cfg.max_lifetime / 4))
        while True:
            await asyncio.sleep(interval)
            await self.reap_once(time.monotonic())

    async def reap_once(self, now: float) -> None:
        """One pass of the reaper (idle, too old, or dead)."""
        cfg = self.config
        for sid, handle in list(self._sessions.items()):
            lock = self._locks.get(sid)
            if lock is not None and lock.locked():
                continue
            reason = ""
            if not handle.alive:
                reason = "the interpreter process had exited"
            elif now - handle.last_used > cfg.idle_ttl:
                reason = f"the interpreter was idle for more than {cfg.idle_ttl:g} s"
            elif now - handle.started_at > cfg.max_lifetime:
                reason = f"the interpreter reached its maximum lifetime ({cfg.max_lifetime:g} s)"
            if reason:
                self._forget(sid, reason)
                await handle.stop()
        stale = [h for h in self._warm if not h.alive or now - h.started_at > cfg.max_lifetime]
        for handle in stale:
            self._warm.remove(handle)
            self._poke()
            await handle.stop()
