"""``agentic run`` and ``agentic chat``: agents from the command line.

Answers stream to stdout as the model writes them; steps are shown compactly on stderr, so
``agentic run agent.yaml "question" > answer.txt`` keeps only the answer. A turn that failed or
was stopped stays unfinished: ``/retry`` in a chat continues it, the session's next message
gives it up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from agentic.agent import (
    Agent,
    AgentConfig,
    Event,
    InferenceStep,
    MemoryRetrievalStep,
    PersistenceConfig,
    Session,
    ShieldCallStep,
    Step,
    ToolExecutionStep,
    Turn,
    TurnStatus,
    TurnStream,
)
from agentic.agent.store import SessionStore
from agentic.cli import print_error
from agentic.config import Settings
from agentic.errors import (
    AgenticError,
    ConfigError,
    SessionNotFoundError,
    SessionStateError,
    UnknownModelError,
)
from agentic.inference.vllm_server import VLLMServer
from agentic.llama.models import resolve_model
from agentic.types import content_text, validation_message

__all__ = ["add_agent_commands"]

_EXCERPT = 80


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def describe_step(step: Step) -> str:
    """One line about a finished step."""
    took = f"({step.duration:.2f}s)"
    if isinstance(step, InferenceStep):
        calls = ", ".join(c.tool_name for c in step.model_response.tool_calls)
        what = f"calls {calls}" if calls else f"{step.usage.completion_tokens} tokens"
        return f"· inference: {what} {took}"
    if isinstance(step, ToolExecutionStep):
        parts = [
            f"{r.tool_name} → {'error: ' if r.error else ''}{_short(content_text(r.content))}"
            for r in step.tool_responses
        ]
        return f"· tools: {'; '.join(parts) or 'none'} {took}"
    if isinstance(step, ShieldCallStep):
        verdict = "blocked " + ",".join(step.violation.categories) if step.violation else "ok"
        return f"· {step.stage} shields {', '.join(step.shields)}: {verdict} {took}"
    if isinstance(step, MemoryRetrievalStep):
        banks = ", ".join(step.bank_ids) or "documents"
        return f"· memory: {len(step.chunks)} chunks from {banks} {took}"
    raise AssertionError(step)  # pragma: no cover


async def _print_turn(events: AsyncIterator[Event], out: TextIO, err: TextIO) -> Turn | None:
    turn: Turn | None = None
    for_text = False
    try:
        async for event in events:
            if event.event == "step_progress" and event.text:
                if event.replaced:  # a shield withheld the rest of the answer
                    out.write("\n[the rest was withheld by a shield] " if for_text else "")
                out.write(event.text)
                out.flush()
                for_text = True
            elif event.event == "step_complete":
                if for_text:
                    out.write("\n")
                    for_text = False
                print(describe_step(event.step), file=err, flush=True)
            elif event.event == "turn_complete":
                turn = event.turn
            elif event.event == "turn_awaiting_input":
                names = ", ".join(c.tool_name for c in event.tool_calls)
                print(f"· waiting for client tools: {names}", file=err)
                turn = event.turn
    finally:
        if for_text:  # an answer cut short (an error, Ctrl-C) still ends its line
            out.write("\n")
            out.flush()
    return turn


async def _show(stream: TurnStream) -> Turn | None:
    async with stream:  # closed (and the session freed) however the turn ends
        return await _print_turn(stream, sys.stdout, sys.stderr)


async def _ask(session: Session, message: str) -> Turn | None:
    """A turn for ``message``; the session's unfinished turn, if any, is given up first (the
    user moved on; ``/retry`` would have continued it)."""
    try:
        return await _show(session.turn(message))
    except SessionStateError:  # refused before it started: the last turn did not finish
        dropped = await session.abandon()
        print(
            f"· gave up the unfinished turn {dropped.index} ({_RETRY} before a new message "
            "continues it instead)",
            file=sys.stderr,
        )
    return await _show(session.turn(message))


async def _continue(session: Session) -> Turn | None:
    """Continue the session's unfinished turn (one that failed or was stopped)."""
    turns = await session.turns()
    if turns and turns[-1].status is TurnStatus.awaiting_input:
        names = ", ".join(c.tool_name for c in turns[-1].pending_tool_calls)
        raise SessionStateError(
            f"session {session.id} waits for the results of client tools ({names}), which "
            "the CLI cannot give; give them from Python, or leave out --session for a new one"
        )
    print("· continuing the session's unfinished turn", file=sys.stderr)
    return await _show(session.resume())


async def _served_model(backend: VLLMServer) -> str:
    """The model the server serves, when it serves exactly one."""
    served = await backend.models()
    if len(served) != 1:
        names = ", ".join(m.id for m in served) or "none"
        raise ConfigError(
            f"the server serves {len(served)} models ({names}); choose one with --model"
        )
    model = served[0]
    for name in (model.id, model.root):
        if name:
            try:
                resolve_model(name)
            except UnknownModelError:
                continue
            return name
    return model.id  # resolve_model raises the clear error when the agent is built


def _settings(path: Path) -> dict[str, Any]:
    """The settings in AGENT.yaml, read as they are (its ``model`` may be left out)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read agent config {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"agent config {str(path)!r} must be a mapping of settings")
    return data


async def _agent(args: argparse.Namespace, backend: VLLMServer) -> Agent:
    data = _settings(args.config) if args.config else {}
    model = args.model or data.get("model") or await _served_model(backend)
    try:  # the config's own mistakes and those found when the agent is built
        config = AgentConfig.from_dict({**data, "model": model})
        return Agent(config, backend=backend, settings=Settings())
    except ConfigError as exc:
        if args.config is None:
            raise
        raise ConfigError(f"{exc} (in {str(args.config)!r})") from exc


async def _open(args: argparse.Namespace, stack: AsyncExitStack) -> Session:
    """The session to talk in; ``stack`` closes the agent and its backend."""
    backend = VLLMServer(args.base_url, max_retries=1)
    stack.push_async_callback(backend.aclose)
    agent = await _agent(args, backend)
    await stack.enter_async_context(agent)
    # the server is there and serves the model: said now, not after the first message
    await backend.context_length(agent.config.model)
    if args.session:
        try:
            return await agent.get_session(args.session)
        except SessionNotFoundError as exc:
            if exc.owner is not None:
                raise
            where = f" --config {args.config}" if args.config else ""
            raise SessionNotFoundError(args.session, listing=f"'agentic sessions{where}'") from exc
    return await agent.create_session()


async def _sessions(args: argparse.Namespace) -> int:
    """List the sessions of the agent in --config (or of ``chat`` without one): newest first."""
    data = _settings(args.config) if args.config else {}
    try:
        persistence = PersistenceConfig.model_validate(data.get("persistence") or {})
    except ValidationError as exc:
        where = f" in {str(args.config)!r}" if args.config else ""
        message = validation_message(exc, PersistenceConfig)
        raise ConfigError(f"invalid persistence settings{where}: {message}") from exc
    name = data.get("name") or AgentConfig.model_fields["name"].default
    store = SessionStore(persistence, Settings().home.expanduser())
    try:
        await store.open()
        listed = await store.list_sessions(name)
    finally:
        await store.aclose()
    if not listed:
        print(f"· no sessions of agent {name!r}", file=sys.stderr)
    for info in listed:
        when = info.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
        turns = f"{info.turn_count} turn{'s' if info.turn_count != 1 else ''}"
        print("  ".join(x for x in (info.session_id, when, turns, info.name) if x))
    return 0


async def _run(args: argparse.Namespace) -> int:
    async with AsyncExitStack() as stack:
        session = await _open(args, stack)
        try:
            turn = await _ask(session, args.message)
        finally:  # also after an error or Ctrl-C: --session with this id goes on
            print(f"· session {session.id}", file=sys.stderr)
        return 0 if turn is not None else 1


def _chat(args: argparse.Namespace) -> int:
    # lines are read on the main thread, between turns, so Ctrl-C at the prompt interrupts
    # input() itself; during a turn asyncio.Runner turns it into the turn's cancellation
    stack = AsyncExitStack()
    with asyncio.Runner() as runner:
        try:
            session = runner.run(_open(args, stack))
            model = session.agent.config.model
            print(f"· chatting with {model} (session {session.id}); {_QUIT}", file=sys.stderr)
            _converse(runner, session)
        finally:
            runner.run(stack.aclose())
    return 0


def _converse(runner: asyncio.Runner, session: Session) -> None:
    """Answer line after line; a turn that fails or is stopped does not end the chat."""
    while (line := _read_line()) is not None and (line := line.strip()):
        try:
            runner.run(_continue(session) if line == _RETRY else _ask(session, line))
        except AgenticError as exc:  # this turn failed; the chat goes on
            print_error(exc)
        except KeyboardInterrupt:
            print(f"· stopped; {_RETRY} continues the answer", file=sys.stderr)


def _read_line() -> str | None:
    """The next line, or None at the end of input; the prompt is shown only at a terminal."""
    tty = sys.stdin.isatty()
    line = None
    try:
        line = input("> " if tty else "")
    except EOFError:
        pass
    finally:
        if tty and line is None:  # Ctrl-D or Ctrl-C: the shell's prompt gets a line of its own
            print(file=sys.stderr)
    return line


_RETRY = "/retry"
_QUIT = "empty line or Ctrl-D to quit"
_UNFINISHED = """\
A turn that failed or was stopped (Ctrl-C) stays unfinished in its session: the session's
next message, now or later with --session ID, gives it up (it stays listed, cancelled)."""
_CHAT_HELP = f"""\
Type one message per line; an empty line or Ctrl-D quits. Ctrl-C stops an answer (at the
prompt, it quits). {_RETRY} continues a turn that failed or was stopped.
{_UNFINISHED}"""


def add_agent_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run`` and ``chat`` on the ``agentic`` parser."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--base-url", default=None, help="vLLM server (default http://localhost:8000/v1)"
        )
        p.add_argument(
            "--model",
            default=None,
            help="model id (default: AGENT.yaml's model, else the server's only model)",
        )
        p.add_argument("--session", default=None, help="continue this session id")

    run = sub.add_parser(
        "run",
        help="run one turn of the agent in AGENT.yaml",
        epilog=_UNFINISHED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", type=Path, metavar="AGENT.yaml")
    run.add_argument("message")
    common(run)
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))
    chat = sub.add_parser(
        "chat",
        help="chat with a model (or the agent in --config)",
        epilog=_CHAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--config", type=Path, default=None, metavar="AGENT.yaml")
    common(chat)
    chat.set_defaults(func=_chat)
    sessions = sub.add_parser(
        "sessions", help="list the sessions of the agent in --config (or of chat), newest first"
    )
    sessions.add_argument("--config", type=Path, default=None, metavar="AGENT.yaml")
    sessions.set_defaults(func=lambda a: asyncio.run(_sessions(a)))
