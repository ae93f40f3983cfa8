"""Shared pieces of the agent integration tests: agents on the loopback vLLM server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agentic.agent import Agent, AgentConfig, Event, PersistenceConfig, Turn
from agentic.config import Settings
from agentic.inference.vllm_server import VLLMServer
from agentic.testing import VLLMTestServer

LLAMA31 = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA32 = "meta-llama/Llama-3.2-3B-Instruct"


@asynccontextmanager
async def agent_on(
    server: VLLMTestServer,
    home: Path,
    *,
    tools: Sequence[Any] = (),
    persistence: PersistenceConfig | None = None,
    agent_kwargs: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[Agent]:
    """An agent talking to ``server``, its sessions under ``home`` (in memory by default)."""
    config.setdefault("model", server.models[0])
    cfg = AgentConfig(
        persistence=persistence or PersistenceConfig(backend="memory"), tools=list(tools), **config
    )
    backend = VLLMServer(server.base_url, max_retries=0)
    agent = Agent(cfg, backend=backend, settings=Settings(home=home), **(agent_kwargs or {}))
    try:
        async with agent:
            yield agent
    finally:
        await backend.aclose()


async def events_of(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def kinds(events: Sequence[Event]) -> list[str]:
    """Event names, consecutive step_progress events collapsed into one."""
    out: list[str] = []
    for e in events:
        if e.event == "step_progress" and out and out[-1] == "step_progress":
            continue
        out.append(e.event)
    return out


def generations(server: VLLMTestServer) -> list[dict[str, Any]]:
    """Bodies of the generation requests the server got, in order."""
    return [r.body for r in server.requests if r.body and r.path.endswith("completions")]


def prompts(server: VLLMTestServer) -> list[str]:
    """Prompts of the completion requests the server got, in order."""
    return [str(b["prompt"]) for b in generations(server) if "prompt" in b]


def step_types(turn: Turn) -> list[str]:
    return [s.step_type for s in turn.steps]
