"""``agentic run`` and ``agentic chat``: agents from the command line.

Answers stream to stdout as the model writes them; steps are shown compactly on stderr, so
``agentic run agent.yaml "question" > answer.txt`` keeps only the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

from agentic.agent import (
    Agent,
    AgentConfig,
    Event,
    InferenceStep,
    MemoryRetrievalStep,
    Session,
    ShieldCallStep,
    Step,
    ToolExecutionStep,
    Turn,
)
from agentic.config import Settings
from agentic.errors import ConfigError, UnknownModelError
from agentic.inference.vllm_server import VLLMServer
from agentic.llama.models import resolve_model
from agentic.types import content_text

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
    return turn


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


async def _agent(args: argparse.Namespace, backend: VLLMServer) -> Agent:
    if args.config:
        config = AgentConfig.from_yaml(args.config)
        data = config.model_dump(exclude={"model"})
        model = args.model or config.model
    else:
        data = {}
        model = args.model or await _served_model(backend)
    config = AgentConfig.model_validate({**data, "model": model})
    return Agent(config, backend=backend, settings=Settings())


async def _session(agent: Agent, session_id: str | None) -> Session:
    if session_id:
        return await agent.get_session(session_id)
    return await agent.create_session()


async def _run(args: argparse.Namespace) -> int:
    backend = VLLMServer(args.base_url, max_retries=1)
    try:
        agent = await _agent(args, backend)
        async with agent:
            session = await _session(agent, args.session)
            turn = await _print_turn(session.turn(args.message).__aiter__(), sys.stdout, sys.stderr)
            print(f"· session {session.id}", file=sys.stderr)
            return 0 if turn is not None else 1
    finally:
        await backend.aclose()


async def _chat(args: argparse.Namespace, read: Callable[[], str | None]) -> int:
    backend = VLLMServer(args.base_url, max_retries=1)
    try:
        agent = await _agent(args, backend)
        async with agent:
            session = await _session(agent, args.session)
            print(
                f"· chatting with {agent.config.model} (session {session.id}); "
                "empty line or Ctrl-D to quit",
                file=sys.stderr,
            )
            while (line := await asyncio.to_thread(read)) is not None and line.strip():
                await _print_turn(session.turn(line.strip()).__aiter__(), sys.stdout, sys.stderr)
            return 0
    finally:
        await backend.aclose()


def _read_line() -> str | None:
    try:
        return input("> ")
    except EOFError:
        return None


def add_agent_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run`` and ``chat`` on the ``agentic`` parser."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--base-url", default=None, help="vLLM server (default http://localhost:8000/v1)"
        )
        p.add_argument("--model", default=None, help="model id (default: the server's only model)")
        p.add_argument("--session", default=None, help="continue this session id")

    run = sub.add_parser("run", help="run one turn of the agent in AGENT.yaml")
    run.add_argument("config", type=Path, metavar="AGENT.yaml")
    run.add_argument("message")
    common(run)
    run.set_defaults(func=lambda a: asyncio.run(_run(a)))
    chat = sub.add_parser("chat", help="chat with a model (or the agent in --config)")
    chat.add_argument("--config", type=Path, default=None, metavar="AGENT.yaml")
    common(chat)
    chat.set_defaults(func=lambda a: asyncio.run(_chat(a, _read_line)))
