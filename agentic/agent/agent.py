"""The user-facing entry points: :class:`Agent` (build, sessions) and :class:`Session` (turns).

```python
agent = Agent(AgentConfig(model="Llama-3.1-8B-Instruct", tools=[get_weather]))
async with agent:
    session = await agent.create_session()
    async for event in session.turn("Weather in Paris?"):
        ...
    turn = await session.run("And in Rome?")
```
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command

from agentic._sync import run_sync
from agentic.agent.config import AgentConfig
from agentic.agent.core import AgentCore, build_core
from agentic.agent.graph import build_graph
from agentic.agent.guarding import CodeScanner
from agentic.agent.inputs import client_responses, documents_of, user_message
from agentic.agent.retrieval import DocumentBanks
from agentic.agent.steps import TurnContext, TurnState
from agentic.agent.store import SessionStore
from agentic.agent.types import (
    Event,
    SessionInfo,
    Step,
    Turn,
    TurnAwaitingInput,
    TurnComplete,
    TurnStart,
    TurnStatus,
    new_id,
    utcnow,
)
from agentic.config import Settings
from agentic.errors import (
    ConfigError,
    SessionBusyError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStateError,
    TurnNotFoundError,
    UserError,
)
from agentic.inference.base import InferenceBackend
from agentic.memory.base import Retriever
from agentic.shields.base import Shield, TextScanner
from agentic.tools.base import Tool
from agentic.types import Content, Document, ImageContent, UserMessage

__all__ = ["Agent", "Session", "TurnStream"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

Graph = CompiledStateGraph[TurnState, TurnContext, Any, Any]
_Start = tuple[Any, Turn, TurnStart | None]
"""What a run starts from: the graph input, the turn, and the event that opens the stream."""


def _load_config(config: AgentConfig | Mapping[str, Any] | str | Path) -> AgentConfig:
    if isinstance(config, AgentConfig):
        return config
    if isinstance(config, Mapping):
        return AgentConfig.from_dict(config)
    return AgentConfig.from_yaml(config)


class Agent:
    """An agent: a validated config plus the backend, tools, shields and banks it uses.

    Everything is checked here (unknown tool names, duplicates, a tool format or built-in
    tools the model does not support...), so a bad agent fails before its first turn. Use
    ``async with agent`` (or :meth:`aclose`) to release connections.
    """

    def __init__(
        self,
        config: AgentConfig | Mapping[str, Any] | str | Path,
        *,
        backend: InferenceBackend | None = None,
        tools: Sequence[Tool] = (),
        shields: Sequence[Shield | TextScanner | CodeScanner] = (),
        memory_banks: Sequence[Retriever] = (),
        deps: Any = None,
        settings: Settings | None = None,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        store: BaseStore | None = None,
    ) -> None:
        self.config = _load_config(config)
        self.settings = settings or Settings()
        self._owns_backend = backend is None
        if backend is None:
            from agentic.inference.vllm_server import VLLMServer

            backend = VLLMServer(self.settings.vllm_base_url, self.settings.vllm_api_key)
        self.backend = backend
        try:
            self.core: AgentCore = build_core(
                self.config,
                backend,
                tools=tools,
                shields=shields,
                memory_banks=memory_banks,
                deps=deps,
            )
        except UserError as exc:
            if not isinstance(config, str | Path):
                raise
            # a mistake found only now (a tool name, a model capability) names the file too
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{exc} (in {str(config)!r})") from exc
            exc.add_note(f"(agent config {str(config)!r})")
            raise
        self.sessions = SessionStore(
            self.config.persistence,
            self.settings.home.expanduser(),
            checkpointer=checkpointer,
            store=store,
        )
        self.documents = DocumentBanks(self.settings, self.core.retrievers)
        self._graph: Graph | None = None
        self._open_lock = asyncio.Lock()
        self._streams: weakref.WeakSet[AsyncGenerator[Any, None]] = weakref.WeakSet()
        """Turn streams not finished yet: closed by :meth:`aclose`."""
        self._running: dict[str, asyncio.Task[Any] | None] = {}
        """Sessions running a turn (or being deleted) here, with the task that runs it."""

    def __repr__(self) -> str:
        return f"Agent({self.config.name!r}, model={self.config.model!r})"

    @property
    def name(self) -> str:
        return self.config.name

    async def _stop_turns(self, grace: float) -> None:
        current = asyncio.current_task()
        tasks = {t for t in self._running.values() if t is not None and t is not current}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for events in list(self._streams):  # suspended at an event, e.g. left by a `break`
            if not getattr(events, "ag_running", True):
                with contextlib.suppress(Exception):
                    await events.aclose()

    async def __aenter__(self) -> Agent:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, *, grace: float = 10.0) -> None:
        """Close the session store, the tools the agent built, and its own backend.

        Turns still running are cancelled first (each stops like a stopped process: its
        finished steps stay saved, and a persistent session resumes it later); this waits up
        to ``grace`` seconds for them to end.
        """
        await self._stop_turns(grace)
        await self.sessions.aclose()
        self._graph = None
        for tool in self.core.owned_tools:
            close = getattr(tool, "aclose", None)
            if close is not None:
                await close()
        await self.documents.aclose()
        if self._owns_backend:
            close = getattr(self.backend, "aclose", None)
            if close is not None:
                await close()

    def _shield_objects(self) -> list[Any]:
        """Every shield and scanner of the agent, once each."""
        core = self.core
        found = [*core.input_shields, *core.output_shields, *core.data_shields, *core.code_shields]
        return list({id(s): s for s in found}.values())

    async def _ensure_open(self) -> Graph:
        if self._graph is None:
            async with self._open_lock:
                if self._graph is None:
                    await self.sessions.open()
                    for part in (*self.core.executor.tools.values(), *self._shield_objects()):
                        start = getattr(part, "start", None)
                        if start is not None:  # the code interpreter warms its workers,
                            await start()  # CodeShield checks its scanner works
                    self._graph = build_graph(self.core).compile(
                        checkpointer=self.sessions.checkpointer,
                        store=self.sessions.store,
                        name=self.config.name,
                    )
        return self._graph

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(
        self,
        name: str = "",
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Start a new session (persisted at once, so it can be listed and resumed)."""
        await self._ensure_open()
        sid = session_id or new_id()
        if not _SESSION_ID.match(sid):
            raise ConfigError(f"session id {sid!r} must be 1-128 letters, digits, '_' or '-'")
        now = utcnow()
        info = SessionInfo(
            session_id=sid,
            agent=self.config.name,
            name=name,
            created_at=now,
            updated_at=now,
            metadata=dict(metadata or {}),
        )
        if session_id is None:
            await self.sessions.save_session(info)
        else:  # never a new record on someone else's history, also against a racing creator
            try:
                async with _Exclusive(self._running, self.sessions, sid):
                    if await self.sessions.find_session(sid) is not None:
                        raise SessionExistsError(sid)
                    await self.sessions.save_session(info)
            except SessionBusyError as exc:  # another creator (or a turn) holds the id
                raise SessionExistsError(sid) from exc
        # a generated id is new: no state to read before the first turn
        return Session(self, info, new=session_id is None)

    async def get_session(self, session_id: str) -> Session:
        """An existing session of this agent, to continue it (also after a restart)."""
        await self._ensure_open()
        return Session(self, await self._own_session(session_id))

    async def _own_session(self, session_id: str) -> SessionInfo:
        """The session's record; raises :class:`SessionNotFoundError` when it does not exist
        or belongs to another agent (agents sharing a database see only their own)."""
        info = await self.sessions.load_session(session_id)
        if info.agent != self.name:
            raise SessionNotFoundError(session_id, agent=self.name, owner=info.agent)
        return info

    async def list_sessions(self) -> list[SessionInfo]:
        """This agent's sessions, most recently used first."""
        await self._ensure_open()
        return await self.sessions.list_sessions(self.config.name)

    async def delete_session(self, session_id: str) -> None:
        """Delete a session with its turns and checkpoints (not while it runs a turn, in this
        process or another)."""
        graph = await self._ensure_open()
        await self._own_session(session_id)
        async with _Exclusive(self._running, self.sessions, session_id):
            state = await graph.aget_state({"configurable": {"thread_id": session_id}})
            await self.sessions.delete_session(session_id)
        if state.values.get("session_bank"):  # its long documents' bank goes with it
            await self.documents.drop(session_id)
        for tool in self.core.executor.tools.values():
            close = getattr(tool, "close_session", None)
            if close is not None:  # e.g. the session's code-interpreter worker
                await close(session_id)


class TurnStream:
    """The events of a turn as they happen; ``await`` it for the finished :class:`Turn`."""

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events
        self.turn: Turn | None = None
        """The turn once it completed or stopped for client tool results."""

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.__anext__()
        if isinstance(event, TurnComplete | TurnAwaitingInput):
            self.turn = event.turn
        return event

    async def aclose(self) -> None:
        """Stop early: the run ends before this returns (a turn stopped before its
        ``turn_complete`` is left unfinished, its finished steps saved: resume it with
        :meth:`Session.resume`). A ``break`` out of ``async for`` alone leaves the run
        suspended (and the session busy) until the stream is closed or garbage collected;
        ``async with session.turn(...) as stream`` closes it for you."""
        await self._events.aclose()

    async def __aenter__(self) -> TurnStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _drain(self) -> Turn:
        async for _ in self:
            pass
        if self.turn is None:  # pragma: no cover - a run always ends with one of the two
            raise SessionStateError("the turn ended without completing")
        return self.turn

    def __await__(self) -> Generator[Any, None, Turn]:
        return self._drain().__await__()


class Session:
    """A conversation with an agent: a sequence of turns, persisted after every step."""

    def __init__(self, agent: Agent, info: SessionInfo, *, new: bool = False) -> None:
        self.agent = agent
        self.info = info
        self._config: Any = {"configurable": {"thread_id": info.session_id}}
        self._context = TurnContext(agent.core, info.session_id, agent.documents, info)
        self._last: Turn | None = None
        self._known = new
        """Whether ``_last`` is the session's last turn (else read it from the checkpoint)."""

    def __repr__(self) -> str:
        return f"Session({self.id!r}, agent={self.agent.name!r})"

    @property
    def id(self) -> str:
        return self.info.session_id

    # --- turns ------------------------------------------------------------------------------

    def turn(
        self,
        message: str | Content | UserMessage | Mapping[str, Any],
        *,
        images: Sequence[ImageContent | str | Path | bytes] = (),
        documents: Sequence[Document | str | Path] = (),
    ) -> TurnStream:
        """Run a turn, streaming its events; ``await`` the result for the :class:`Turn`.

        ``images``: :class:`ImageContent`, bytes, or a path or URL (``str`` or ``Path``).
        ``documents``: :class:`Document`, a ``Path`` of a file to read, or a ``str`` that *is*
        the document's text (for a file name, pass ``Path(name)`` or ``Document.from_path``).
        """
        core = self.agent.core
        offered = core.tool_names if core.config.tool_choice != "none" else []
        user = user_message(message, images, core.spec, tools=offered)
        docs = documents_of(documents)
        self.agent.documents.check(docs, self.agent.config.inline_document_tokens)
        return TurnStream(self._new_turn(user, docs))

    async def run(
        self,
        message: str | Content | UserMessage | Mapping[str, Any],
        *,
        images: Sequence[ImageContent | str | Path | bytes] = (),
        documents: Sequence[Document | str | Path] = (),
    ) -> Turn:
        """Run a turn to its end and return it."""
        return await self.turn(message, images=images, documents=documents)

    def run_sync(
        self,
        message: str | Content | UserMessage | Mapping[str, Any],
        *,
        images: Sequence[ImageContent | str | Path | bytes] = (),
        documents: Sequence[Document | str | Path] = (),
    ) -> Turn:
        """:meth:`run` for synchronous code."""
        return run_sync(self.run(message, images=images, documents=documents))

    def resume(self, tool_results: Any = None) -> TurnStream:
        """Continue the last turn: with client tool results when it awaits them, or after a
        crash or a backend error (from the last finished step)."""
        return TurnStream(self._resume(tool_results))

    def _new_turn(self, user: UserMessage, docs: list[Document]) -> AsyncGenerator[Event, None]:
        async def start(graph: Graph) -> _Start:
            last = await self._last_turn(graph)
            if last is not None and last.status.unfinished:
                raise SessionStateError(_unfinished(last))
            turn = Turn(
                turn_id=new_id(),
                session_id=self.id,
                index=0 if last is None else last.index + 1,
                input_messages=[user],
                documents=docs,
                started_at=utcnow(),
            )
            graph_input: TurnState = {
                "turn": turn,
                "messages": [user],
                "pending": [],
                "unparsable": None,
                "iteration": 0,
                "reformat": False,
            }
            return graph_input, turn, TurnStart(session_id=self.id, turn_id=turn.turn_id)

        return self._track(self._run(start))

    def _resume(self, tool_results: Any) -> AsyncGenerator[Event, None]:
        async def start(graph: Graph) -> _Start:
            snapshot = await graph.aget_state(self._config)
            turn: Turn | None = snapshot.values.get("turn")
            # a run stopped in its first moments has no next node yet, only its input: an
            # unfinished turn all the same, which a run from that checkpoint continues
            if turn is None or (not snapshot.next and not turn.status.unfinished):
                raise SessionStateError(f"session {self.id!r} has no unfinished turn to resume")
            if snapshot.interrupts:
                if tool_results is None:
                    raise SessionStateError(_unfinished(turn))
                pending = snapshot.values.get("pending") or []
                responses = client_responses(pending, tool_results, self.agent.config)
                graph_input: Any = Command(resume=[r.model_dump(mode="json") for r in responses])
            elif tool_results is not None:
                raise SessionStateError(
                    f"the turn of session {self.id!r} is not awaiting tool results"
                )
            else:
                graph_input = None
            return graph_input, turn, None

        return self._track(self._run(start))

    def _track(self, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
        self.agent._streams.add(events)
        return events

    async def _run(
        self, start: Callable[[Graph], Awaitable[_Start]]
    ) -> AsyncGenerator[Event, None]:
        """A run of the turn graph while holding the session: ``start`` checks the session's
        state and says what to run."""
        graph = await self.agent._ensure_open()
        last_event: TurnComplete | TurnAwaitingInput | None = None
        async with self._exclusive():
            await self._check_exists()
            graph_input, turn, opening = await start(graph)
            if opening is not None:
                yield opening
            async with aclosing(self._stream(graph, graph_input, turn)) as events:
                async for event in events:
                    if isinstance(event, TurnComplete | TurnAwaitingInput):
                        last_event = event
                    else:
                        yield event
        # the last event comes once the session is free again: a consumer that stops there
        # (without closing the stream) leaves nothing held
        if last_event is not None:
            yield last_event

    async def _stream(
        self, graph: Graph, graph_input: Any, turn: Turn
    ) -> AsyncGenerator[Event, None]:
        self._known = False  # until the run ends cleanly
        done: TurnComplete | None = None
        run = cast(  # an async generator (typed as an iterator)
            AsyncGenerator[Any, None],
            graph.astream(
                graph_input,
                self._config,
                context=self._context,
                stream_mode="custom",
                durability=self.agent.config.persistence.step_durability,
            ),
        )
        async with aclosing(run):
            async for chunk in run:
                event = cast(Event, chunk)  # nodes write nothing but events
                if isinstance(event, TurnComplete):
                    # held until the run has ended: the last node's state is committed then,
                    # so a consumer that stops at turn_complete keeps the turn in the session
                    done = event
                else:
                    yield event
        if done is not None:
            turn = done.turn
            # the turn's record follows its checkpoint: a run stopped before it committed
            # leaves neither, never a record of a turn the conversation does not have
            await self.agent.sessions.save_turn(turn, self.info)
            self._last, self._known = turn, True
            yield done
            return
        # the run stopped at the client-tools interrupt
        snapshot = await graph.aget_state(self._config)
        turn = snapshot.values.get("turn", turn)
        if snapshot.interrupts:
            yield TurnAwaitingInput(turn=turn, tool_calls=turn.pending_tool_calls)
        self._last, self._known = turn, True

    async def abandon(self) -> Turn:
        """Give up the session's unfinished turn (stopped by an error, a crash or a consumer
        that closed its stream, or waiting for client tool results) instead of resuming it.

        The turn is kept, ``cancelled``, with the steps it finished; its messages stay out of
        later prompts, as if it had not been asked; and the session takes new turns again.
        Returns the cancelled turn. Raises :class:`SessionStateError` when no turn is
        unfinished.
        """
        graph = await self.agent._ensure_open()
        async with self._exclusive():
            await self._check_exists()
            snapshot = await graph.aget_state(self._config)
            turn: Turn | None = snapshot.values.get("turn")
            if turn is None or not (turn.status.unfinished or snapshot.next):
                raise SessionStateError(f"session {self.id!r} has no unfinished turn to abandon")
            done = turn.model_copy(
                update={
                    "status": TurnStatus.cancelled,
                    "pending_tool_calls": [],
                    "completed_at": utcnow(),
                }
            )
            # recorded as the inference step's outcome: nothing pending, so the run ends
            # there; then the record (a stop between the two leaves the checkpoint's word,
            # which turns() lists)
            await graph.aupdate_state(
                self._config,
                {
                    "turn": done,
                    "messages": [],
                    "pending": [],
                    "unparsable": None,
                    "reformat": False,
                },
                as_node="inference",
            )
            await self.agent.sessions.save_turn(done, self.info)
        self._last, self._known = done, True
        return done

    async def _check_exists(self) -> None:
        """Raise :class:`SessionNotFoundError` if the session was deleted (by this handle,
        another one, or another process) since this handle was made: a turn must not bring a
        deleted session back."""
        if await self.agent.sessions.find_session(self.id) is None:
            raise SessionNotFoundError(self.id)

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self.agent._running, self.agent.sessions, self.id)

    async def _last_turn(self, graph: Graph) -> Turn | None:
        if not self._known:
            snapshot = await graph.aget_state(self._config)
            self._last = snapshot.values.get("turn")
            if self._last is not None and snapshot.next:
                if self._last.status is TurnStatus.completed:
                    self._last = self._last.model_copy(update={"status": TurnStatus.in_progress})
            elif self._last is not None and not self._last.status.unfinished:
                await self._commit_leftovers(graph)
                sessions = self.agent.sessions
                if await sessions.load_turn(self.id, self._last.turn_id) is None:
                    await sessions.save_turn(self._last, self.info)  # stopped before its record
            self._known = True
        return self._last

    async def _commit_leftovers(self, graph: Graph) -> None:
        """Commit what the last step of a finished run wrote if the run was stopped before
        LangGraph saved it (a cancel right at the end): the state read applies such writes,
        but a new run would start from the checkpoint without them, losing the turn from the
        history. A run from the checkpoint commits them; no node runs again."""
        saver = self.agent.sessions.checkpointer
        saved = None if saver is None else await saver.aget_tuple(self._config)
        if saved is None or not saved.pending_writes:
            return
        async for _ in graph.astream(
            None,
            self._config,
            context=self._context,
            stream_mode="custom",
            durability=self.agent.config.persistence.step_durability,
        ):
            pass

    # --- reading ----------------------------------------------------------------------------

    async def turns(self) -> list[Turn]:
        """Every turn of the session, oldest first, the unfinished one (if any) last."""
        graph = await self.agent._ensure_open()
        await self._check_exists()
        done = await self.agent.sessions.list_turns(self.id)
        snapshot = await graph.aget_state(self._config)
        current: Turn | None = snapshot.values.get("turn")
        if current is None:
            return done
        stored = any(t.turn_id == current.turn_id for t in done)
        if current.status.unfinished:  # the checkpoint is the truth while a turn runs
            done = [t for t in done if t.turn_id != current.turn_id]
            done.append(current)
        elif not stored:  # stopped between the checkpoint and the record
            done.append(current)
        return done

    async def get_turn(self, turn_id: str) -> Turn:
        """One turn by id."""
        for turn in reversed(await self.turns()):
            if turn.turn_id == turn_id:
                return turn
        raise TurnNotFoundError(f"session {self.id!r} has no turn {turn_id!r}")

    async def get_step(self, turn_id: str, step_id: str) -> Step:
        """One step of a turn by id."""
        return (await self.get_turn(turn_id)).step(step_id)

    async def refresh(self) -> SessionInfo:
        """Reload the session record (turn count, last update)."""
        self.info = await self.agent.sessions.load_session(self.id)
        return self.info

    async def delete(self) -> None:
        """Delete the session with its turns and checkpoints."""
        await self.agent.delete_session(self.id)


class _Exclusive:
    """Marks a session as running a turn for the duration of an ``async with`` block: in this
    process, then in the session database for processes that share it."""

    def __init__(
        self,
        running: dict[str, asyncio.Task[Any] | None],
        sessions: SessionStore,
        session_id: str,
    ) -> None:
        self._running = running
        self._sessions = sessions
        self._id = session_id

    async def __aenter__(self) -> None:
        if self._id in self._running:
            raise SessionBusyError(self._id)
        self._running[self._id] = asyncio.current_task()
        try:
            await self._sessions.claim(self._id)
        except BaseException:
            self._running.pop(self._id, None)
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._sessions.unclaim(self._id)
        finally:
            self._running.pop(self._id, None)


def _unfinished(turn: Turn) -> str:
    if turn.status is TurnStatus.awaiting_input:
        calls = ", ".join(f"{c.tool_name} ({c.call_id})" for c in turn.pending_tool_calls)
        return (
            f"turn {turn.turn_id} is waiting for client tool results ({calls}); "
            "call session.resume({call_id: result, ...}) first, or session.abandon()"
        )
    return (
        f"turn {turn.turn_id} did not finish (an error or a stopped process); "
        "call session.resume() to continue it, or session.abandon() to give it up"
    )
