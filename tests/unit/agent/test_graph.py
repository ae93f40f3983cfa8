"""The turn graph's shape: its nodes, and conditional edges routed without trace runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from langchain_core.callbacks import AsyncCallbackHandler

from agentic.agent.graph import NODES, _Route, build_graph
from agentic.agent.steps import TurnState
from agentic.agent.types import Turn, TurnStatus


def _graph() -> Any:
    core = SimpleNamespace(retrievers=[], client_tools={"ask_user"})
    return build_graph(cast(Any, core))


def _turn(status: TurnStatus = TurnStatus.in_progress) -> Turn:
    return Turn.model_validate(
        {
            "turn_id": "t",
            "session_id": "s",
            "index": 0,
            "input_messages": [],
            "status": status,
            "started_at": "2026-01-01T00:00:00Z",
        }
    )


def test_the_graph_has_the_step_nodes_and_every_edge_decision_is_a_route() -> None:
    graph = _graph()
    assert set(NODES) <= set(graph.nodes)
    paths = [b.path for branches in graph.branches.values() for b in branches.values()]
    assert len(paths) == 3
    assert all(isinstance(p, _Route) for p in paths)


class _Runs(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.names: list[str] = []

    async def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.names.append(str(kwargs.get("name")))


def test_a_route_decides_without_a_trace_run() -> None:
    graph = _graph()
    route = graph.branches["tool_execution"][next(iter(graph.branches["tool_execution"]))].path
    runs = _Runs()
    state = cast(TurnState, {"turn": _turn(), "pending": []})
    config: Any = {"callbacks": [runs]}
    assert asyncio.run(route.ainvoke(state, config)) == "inference"
    waiting = cast(TurnState, {**state, "pending": [object()]})
    assert asyncio.run(route.ainvoke(waiting, config)) == "client_tools"
    assert runs.names == []
    assert route.name == "after_tools"


def test_a_route_refuses_synchronous_use_with_a_clear_error() -> None:
    route = _Route(_graph().branches["inference"]["after_inference"].path.route)
    with pytest.raises(TypeError, match="asyncio"):
        route.invoke(cast(TurnState, {"turn": _turn(TurnStatus.completed)}))
